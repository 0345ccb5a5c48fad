//! The files of a checked tree, read once: certificate files (and certificates
//! embedded in kubeconfigs), private key files, and service-account public keys.
//! Every entry is keyed by its label: the path relative to the checked directory, or
//! `FILE: FIELD` for data embedded in a kubeconfig.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use super::keys::{KeyRead, read_private_key, read_public_keys};
use super::x509::{CertInfo, PublicKeyInfo};

/// A problem found while reading a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    Missing,
    /// Not PEM, or no certificate in it.
    NotPem(String),
    /// A certificate that x509-parser rejects; the index is its position in the file.
    Unparsable(usize, String),
}

/// A file of PEM certificates.
#[derive(Debug, Clone)]
pub struct CertFile {
    /// Shared, so that a parse of a known file serves the store and the intent check.
    pub certs: Arc<[CertInfo]>,
    pub problem: Option<Problem>,
    /// The first flag or kubeconfig field that names the file, for messages.
    pub origin: Option<String>,
}

/// A private key file; `read` is `None` when the file is missing.
#[derive(Debug, Clone)]
pub struct KeyFile {
    pub read: Option<KeyRead>,
    pub origin: Option<String>,
}

/// Files whose bytes are known without reading them. The build passes the check of its
/// tree the files it has just written or compared byte for byte with the disk, so the
/// check opens only the files the build did not make.
#[derive(Debug, Default, Clone)]
pub struct KnownFiles(Arc<Known>);

#[derive(Debug, Default)]
struct Known {
    files: HashMap<PathBuf, Vec<u8>>,
    parsed: OnceLock<Parsed>,
}

/// Known files parsed as certificates or as a private key, by label.
#[derive(Debug, Default)]
struct Parsed {
    certs: HashMap<String, CertFile>,
    keys: HashMap<String, KeyRead>,
}

impl KnownFiles {
    pub fn new(files: impl IntoIterator<Item = (PathBuf, Vec<u8>)>) -> KnownFiles {
        KnownFiles(Arc::new(Known {
            files: files.into_iter().collect(),
            parsed: OnceLock::new(),
        }))
    }

    /// Returns the certificates of a known file, parsed once for every reader.
    pub fn certs(&self, relative: &Path) -> Option<&CertFile> {
        self.parsed().certs.get(relative.to_string_lossy().as_ref())
    }

    /// Parses the known certificates and keys now, on all cores, rather than on the
    /// first lookup.
    pub fn parse_ahead(&self) {
        self.parsed();
    }

    fn parsed(&self) -> &Parsed {
        self.0.parsed.get_or_init(|| self.parse_all())
    }

    /// Returns the bytes of `relative` under `root`, known or read from disk.
    pub fn read(&self, root: &Path, relative: &Path) -> std::io::Result<Cow<'_, [u8]>> {
        match self.0.files.get(relative) {
            Some(bytes) => Ok(Cow::Borrowed(bytes)),
            None => std::fs::read(root.join(relative)).map(Cow::Owned),
        }
    }

    /// Returns the text of `relative` under `root`, known or read from disk.
    pub fn read_to_string(&self, root: &Path, relative: &Path) -> std::io::Result<String> {
        let bytes = self.read(root, relative)?;
        String::from_utf8(bytes.into_owned())
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Parses, on all cores, every known file whose name ends in `.crt`, `.pem`, `.cer`
    /// or `.key`: as certificates when it has a certificate block, else as a private
    /// key when it has one.
    fn parse_all(&self) -> Parsed {
        let parsed: Vec<(String, Result<CertFile, KeyRead>)> = self
            .0
            .files
            .par_iter()
            .filter(|(path, _)| {
                let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("");
                matches!(extension, "crt" | "pem" | "cer" | "key")
            })
            .filter_map(|(path, bytes)| {
                let label = path.to_string_lossy().into_owned();
                let text = String::from_utf8_lossy(bytes);
                if text.contains("-----BEGIN CERTIFICATE-----") {
                    Some((label, Ok(parse_cert_pem(bytes))))
                } else if text.contains("PRIVATE KEY-----") {
                    Some((label, Err(read_private_key(&text))))
                } else {
                    None
                }
            })
            .collect();
        let mut known = Parsed::default();
        for (label, file) in parsed {
            match file {
                Ok(file) => {
                    known.certs.insert(label, file);
                }
                Err(key) => {
                    known.keys.insert(label, key);
                }
            }
        }
        known
    }

    /// True when `relative` is a known file, or a regular file under `root`.
    pub fn is_file(&self, root: &Path, relative: &Path) -> bool {
        self.0.files.contains_key(relative) || root.join(relative).is_file()
    }
}

/// Every file read for a check.
#[derive(Debug, Default)]
pub struct Store {
    pub root: PathBuf,
    pub known: KnownFiles,
    pub cert_files: BTreeMap<String, CertFile>,
    pub key_files: BTreeMap<String, KeyFile>,
    /// Public key sets of `--service-account-key-file` values.
    pub public_keys: BTreeMap<String, Result<Vec<PublicKeyInfo>, String>>,
    /// Positions of the CA certificates (file label, position in the file), computed on
    /// first use, after the tree is loaded, so rules over thousands of leaves stay linear.
    ca_positions: std::sync::OnceLock<Vec<(String, usize)>>,
    /// Issuer names that some certificate of the tree carries.
    issuer_names: std::sync::OnceLock<std::collections::HashSet<Vec<u8>>>,
}

impl Store {
    pub fn new(root: &Path, known: KnownFiles) -> Store {
        Store {
            root: root.to_path_buf(),
            known,
            ..Store::default()
        }
    }

    fn read(&self, label: &str) -> Option<Vec<u8>> {
        self.known
            .read(&self.root, Path::new(label))
            .ok()
            .map(Cow::into_owned)
    }

    /// Reads a certificate file once; `origin` names what refers to it.
    pub fn add_cert_file(&mut self, label: &str, origin: Option<&str>) {
        if let Some(file) = self.cert_files.get_mut(label) {
            if file.origin.is_none() {
                file.origin = origin.map(str::to_string);
            }
            return;
        }
        let parsed = self.known.parsed().certs.get(label).cloned();
        let file = match parsed.or_else(|| self.read(label).map(|bytes| parse_cert_pem(&bytes))) {
            Some(file) => file,
            None => CertFile {
                certs: Arc::from([]),
                problem: Some(Problem::Missing),
                origin: None,
            },
        };
        self.insert_cert_file(label, file, origin);
    }

    /// Adds certificate data embedded in a kubeconfig under `label`.
    pub fn add_cert_bytes(&mut self, label: &str, bytes: &[u8], origin: Option<&str>) {
        self.insert_cert_file(label, parse_cert_pem(bytes), origin);
    }

    fn insert_cert_file(&mut self, label: &str, mut file: CertFile, origin: Option<&str>) {
        file.origin = origin.map(str::to_string);
        self.cert_files.insert(label.to_string(), file);
    }

    /// Reads a private key file once.
    pub fn add_key_file(&mut self, label: &str, origin: Option<&str>) {
        if self.key_files.contains_key(label) {
            return;
        }
        let parsed = self.known.parsed().keys.get(label).cloned();
        let read = parsed.or_else(|| {
            self.read(label)
                .map(|bytes| read_private_key(&String::from_utf8_lossy(&bytes)))
        });
        self.key_files.insert(
            label.to_string(),
            KeyFile {
                read,
                origin: origin.map(str::to_string),
            },
        );
    }

    /// Adds private key data embedded in a kubeconfig under `label`.
    pub fn add_key_bytes(&mut self, label: &str, bytes: &[u8], origin: Option<&str>) {
        let read = Some(read_private_key(&String::from_utf8_lossy(bytes)));
        self.key_files.insert(
            label.to_string(),
            KeyFile {
                read,
                origin: origin.map(str::to_string),
            },
        );
    }

    /// Reads the public keys of a service-account key file once.
    pub fn add_public_keys(&mut self, label: &str) {
        if self.public_keys.contains_key(label) {
            return;
        }
        let keys = match self.read(label) {
            Some(bytes) => read_public_keys(&String::from_utf8_lossy(&bytes)),
            None => Err("the file does not exist".into()),
        };
        self.public_keys.insert(label.to_string(), keys);
    }

    /// Returns the certificates of a file, empty when it could not be read.
    pub fn certs(&self, label: &str) -> &[CertInfo] {
        self.cert_files.get(label).map_or(&[], |f| &f.certs[..])
    }

    /// Returns the public key of a readable private key file.
    pub fn private_key(&self, label: &str) -> Option<&PublicKeyInfo> {
        match self.key_files.get(label)?.read.as_ref()? {
            KeyRead::Readable { public, .. } => Some(public),
            _ => None,
        }
    }

    /// Returns the certificate files in order of preference for naming a certificate:
    /// files on disk before kubeconfig data, single certificates before bundles.
    pub fn preferred_files(&self) -> Vec<(&String, &CertFile)> {
        let mut files: Vec<(&String, &CertFile)> = self.cert_files.iter().collect();
        files.sort_by_key(|(label, file)| {
            (label.contains(": "), file.certs.len() > 1, label.as_str())
        });
        files
    }

    /// Returns each distinct certificate with the preferred file that contains it.
    pub fn unique_certs(&self) -> Vec<(&str, &CertInfo)> {
        let mut seen: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
        let mut out = Vec::new();
        for (label, file) in self.preferred_files() {
            for cert in file.certs.iter() {
                if seen.insert(cert.der.as_slice()) {
                    out.push((label.as_str(), cert));
                }
            }
        }
        out
    }

    /// Returns every distinct CA certificate of the tree with its file.
    pub fn cas(&self) -> Vec<(&str, &CertInfo)> {
        let positions = self.ca_positions.get_or_init(|| {
            self.unique_certs()
                .into_iter()
                .filter(|(_, c)| c.is_ca())
                .filter_map(|(label, cert)| {
                    let file = self.cert_files.get(label)?;
                    let index = file.certs.iter().position(|c| c.der == cert.der)?;
                    Some((label.to_string(), index))
                })
                .collect()
        });
        positions
            .iter()
            .filter_map(|(label, index)| {
                let (label, file) = self.cert_files.get_key_value(label)?;
                Some((label.as_str(), file.certs.get(*index)?))
            })
            .collect()
    }

    /// True when some certificate of the tree names `subject` as its issuer.
    pub fn is_issuer_name(&self, subject: &[u8]) -> bool {
        self.issuer_names
            .get_or_init(|| {
                self.cert_files
                    .values()
                    .flat_map(|f| f.certs.iter())
                    .map(|c| c.issuer_der.clone())
                    .collect()
            })
            .contains(subject)
    }
}

/// Parses the PEM certificates of a file.
fn parse_cert_pem(bytes: &[u8]) -> CertFile {
    let mut file = CertFile {
        certs: Arc::from([]),
        problem: None,
        origin: None,
    };
    let blocks = match pem::parse_many(bytes) {
        Ok(blocks) => blocks,
        Err(e) => {
            file.problem = Some(Problem::NotPem(format!("invalid PEM: {e}")));
            return file;
        }
    };
    let certs: Vec<&pem::Pem> = blocks.iter().filter(|b| b.tag() == "CERTIFICATE").collect();
    if certs.is_empty() {
        let tags: Vec<&str> = blocks.iter().map(|b| b.tag()).collect();
        let found = if tags.is_empty() {
            "no PEM block".to_string()
        } else {
            format!("only {}", tags.join(", "))
        };
        file.problem = Some(Problem::NotPem(format!("no CERTIFICATE block, {found}")));
        return file;
    }
    let mut parsed = Vec::with_capacity(certs.len());
    for (index, block) in certs.iter().enumerate() {
        match CertInfo::parse(block.contents()) {
            Ok(cert) => parsed.push(cert),
            Err(e) => {
                file.problem.get_or_insert(Problem::Unparsable(index, e));
            }
        }
    }
    file.certs = parsed.into();
    file
}
