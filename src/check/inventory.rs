//! The inventory of a checked tree: which certificate plays which role, which key
//! belongs to which certificate, and which files are CA files or a signer's. It comes
//! from the component flags, the map file and the files on disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rayon::prelude::*;

use super::findings::Finding;
use super::layout::{Component, Layout, Resolved};
use super::store::Store;
use crate::model::Role;

/// The usage a role demands of a certificate's extended key usage.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    Server,
    Client,
}

/// A certificate in a role, such as the apiserver's serving certificate.
#[derive(Debug, Clone)]
pub struct CertUse {
    pub label: String,
    pub role: Option<Role>,
    pub needs: Needs,
    pub node: Option<String>,
    /// The flag or field that gives the role, for messages.
    pub origin: String,
}

/// A certificate and the private key it is used with.
#[derive(Debug, Clone)]
pub struct PairUse {
    pub cert: String,
    pub key: String,
    pub origin: String,
}

/// A file read as a set of trusted CAs, or as a signer's certificate.
#[derive(Debug, Clone)]
pub struct TrustUse {
    pub label: String,
    pub origin: String,
}

#[derive(Debug, Default)]
pub struct Inventory {
    pub uses: Vec<CertUse>,
    pub pairs: Vec<PairUse>,
    pub trusts: Vec<TrustUse>,
    pub signers: Vec<PairUse>,
    /// Files of `--service-account-key-file`: the keys that verify tokens.
    pub sa_verify: Vec<TrustUse>,
    /// Private keys that sign service-account tokens.
    pub sa_sign: Vec<TrustUse>,
    pub notes: Vec<Finding>,
    /// Positions in `uses` by file, made on the first lookup once loading is done.
    uses_by_label: OnceLock<HashMap<String, Vec<usize>>>,
}

/// Returns the regular files under `root` (paths relative to it) below the directory
/// `relative`, sorted by path, leaving out names that begin with a dot and symbolic
/// links. Directories are read on all cores: a tree of 10,000 nodes has 20,000.
fn regular_files(root: &Path, relative: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(root.join(relative)) else {
        return Vec::new();
    };
    let mut files = Vec::new();
    let mut dirs = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let name = entry.file_name();
        if name.to_string_lossy().starts_with('.') {
            continue;
        }
        match entry.file_type() {
            Ok(kind) if kind.is_file() => files.push(relative.join(name)),
            Ok(kind) if kind.is_dir() => dirs.push(relative.join(name)),
            _ => {}
        }
    }
    let nested: Vec<Vec<PathBuf>> = dirs
        .par_iter()
        .map(|dir| regular_files(root, dir))
        .collect();
    files.extend(nested.into_iter().flatten());
    if relative.as_os_str().is_empty() {
        files.sort();
    }
    files
}

/// Certificate flags: component, certificate flag, key flag, role and usage.
const CERT_FLAGS: &[(&str, &str, &str, Role, Needs)] = &[
    (
        "kube-apiserver",
        "tls-cert-file",
        "tls-private-key-file",
        Role::Apiserver,
        Needs::Server,
    ),
    (
        "kube-apiserver",
        "kubelet-client-certificate",
        "kubelet-client-key",
        Role::ApiserverKubeletClient,
        Needs::Client,
    ),
    (
        "kube-apiserver",
        "etcd-certfile",
        "etcd-keyfile",
        Role::ApiserverEtcdClient,
        Needs::Client,
    ),
    (
        "kube-apiserver",
        "proxy-client-cert-file",
        "proxy-client-key-file",
        Role::FrontProxyClient,
        Needs::Client,
    ),
    (
        "kubelet",
        "tls-cert-file",
        "tls-private-key-file",
        Role::KubeletServing,
        Needs::Server,
    ),
    (
        "etcd",
        "cert-file",
        "key-file",
        Role::EtcdServer,
        Needs::Server,
    ),
    (
        "etcd",
        "peer-cert-file",
        "peer-key-file",
        Role::EtcdPeer,
        Needs::Server,
    ),
];

/// Flags whose file is a set of trusted CA certificates.
const TRUST_FLAGS: &[(&str, &str)] = &[
    ("kube-apiserver", "client-ca-file"),
    ("kube-apiserver", "kubelet-certificate-authority"),
    ("kube-apiserver", "etcd-cafile"),
    ("kube-apiserver", "requestheader-client-ca-file"),
    ("kube-controller-manager", "root-ca-file"),
    ("kube-controller-manager", "client-ca-file"),
    ("kube-controller-manager", "requestheader-client-ca-file"),
    ("kubelet", "client-ca-file"),
    ("etcd", "trusted-ca-file"),
    ("etcd", "peer-trusted-ca-file"),
];

impl Inventory {
    /// Maps a flag's path into the tree, or records a note when it lies outside.
    pub fn resolve(
        &mut self,
        layout: &Layout,
        component: &Component,
        flag: &str,
    ) -> Option<String> {
        let value = component.get(flag)?;
        match layout.resolve(value, component.node.as_deref()) {
            Resolved::InTree(label) => Some(label),
            Resolved::Outside(path) => {
                self.notes
                    .push(super::discover::outside(&component.origin(flag), &path));
                None
            }
        }
    }

    /// Adds the certificates, keys and CA files that the component flags name.
    pub fn add_flags(&mut self, layout: &Layout, store: &mut Store) {
        for component in layout.components() {
            for (name, cert_flag, key_flag, role, needs) in CERT_FLAGS {
                if component.name != *name {
                    continue;
                }
                let Some(cert) = self.resolve(layout, component, cert_flag) else {
                    continue;
                };
                let origin = component.origin(cert_flag);
                store.add_cert_file(&cert, Some(&origin));
                self.uses.push(CertUse {
                    label: cert.clone(),
                    role: Some(*role),
                    needs: *needs,
                    node: component.node.clone(),
                    origin: origin.clone(),
                });
                if let Some(key) = self.resolve(layout, component, key_flag) {
                    store.add_key_file(&key, Some(&component.origin(key_flag)));
                    self.pairs.push(PairUse { cert, key, origin });
                }
            }
            for (name, flag) in TRUST_FLAGS {
                if component.name == *name
                    && let Some(label) = self.resolve(layout, component, flag)
                {
                    let origin = component.origin(flag);
                    store.add_cert_file(&label, Some(&origin));
                    self.trusts.push(TrustUse { label, origin });
                }
            }
            self.add_signer(layout, component, store);
            self.add_service_account(layout, component, store);
        }
    }

    fn add_service_account(&mut self, layout: &Layout, component: &Component, store: &mut Store) {
        let signing_flag = match component.name {
            "kube-apiserver" => "service-account-signing-key-file",
            "kube-controller-manager" => "service-account-private-key-file",
            _ => return,
        };
        if let Some(label) = self.resolve(layout, component, signing_flag) {
            let origin = component.origin(signing_flag);
            store.add_key_file(&label, Some(&origin));
            self.sa_sign.push(TrustUse { label, origin });
        }
        if component.name != "kube-apiserver" {
            return;
        }
        for value in component.all("service-account-key-file") {
            let origin = component.origin("service-account-key-file");
            match layout.resolve(value, None) {
                Resolved::InTree(label) => {
                    store.add_public_keys(&label);
                    self.sa_verify.push(TrustUse { label, origin });
                }
                Resolved::Outside(path) => {
                    self.notes.push(super::discover::outside(&origin, &path))
                }
            }
        }
    }

    fn add_signer(&mut self, layout: &Layout, component: &Component, store: &mut Store) {
        if component.name != "kube-controller-manager" {
            return;
        }
        let Some(cert) = self.resolve(layout, component, "cluster-signing-cert-file") else {
            return;
        };
        let origin = component.origin("cluster-signing-cert-file");
        store.add_cert_file(&cert, Some(&origin));
        if let Some(key) = self.resolve(layout, component, "cluster-signing-key-file") {
            store.add_key_file(&key, Some(&component.origin("cluster-signing-key-file")));
            self.signers.push(PairUse { cert, key, origin });
        } else {
            self.signers.push(PairUse {
                cert,
                key: String::new(),
                origin,
            });
        }
    }

    /// Adds the certificates that the map file names outside any flag.
    pub fn add_loose_certs(&mut self, layout: &Layout, store: &mut Store) {
        for loose in &layout.loose_certs {
            let origin = format!("cert.{} in the map file", loose.name);
            let Resolved::InTree(cert) = layout.resolve(&loose.cert, loose.node.as_deref()) else {
                self.notes
                    .push(super::discover::outside(&origin, &loose.cert));
                continue;
            };
            store.add_cert_file(&cert, Some(&origin));
            let needs = match loose.role {
                Some(
                    Role::Apiserver | Role::KubeletServing | Role::EtcdServer | Role::EtcdPeer,
                ) => Needs::Server,
                _ => Needs::Client,
            };
            self.uses.push(CertUse {
                label: cert.clone(),
                role: loose.role,
                needs,
                node: loose.node.clone(),
                origin: origin.clone(),
            });
            if let Some(Resolved::InTree(key)) = loose
                .key
                .as_ref()
                .map(|k| layout.resolve(k, loose.node.as_deref()))
            {
                store.add_key_file(&key, Some(&origin));
                self.pairs.push(PairUse { cert, key, origin });
            }
        }
    }

    /// Reads every other certificate and key file under the root, pairing keys with
    /// certificates by name (`x.crt` and `x.key`, `x.pem` and `x-key.pem`).
    pub fn add_other_files(&mut self, store: &mut Store) {
        let root = store.root.clone();
        let mut keys = Vec::new();
        for relative in regular_files(&root, Path::new("")) {
            let relative = relative.as_path();
            let label = relative.to_string_lossy().to_string();
            let extension = relative.extension().and_then(|e| e.to_str()).unwrap_or("");
            if !matches!(extension, "crt" | "pem" | "cer" | "key") {
                continue;
            }
            // A file already read with certificates in it needs no second read.
            if store
                .cert_files
                .get(&label)
                .is_some_and(|f| !f.certs.is_empty())
            {
                continue;
            }
            let text = store
                .known
                .read(&root, relative)
                .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
                .unwrap_or_default();
            if text.contains("-----BEGIN CERTIFICATE-----") {
                store.add_cert_file(&label, None);
            } else if text.contains("PRIVATE KEY-----") {
                store.add_key_file(&label, None);
                keys.push(label);
            }
        }
        let paired: std::collections::HashSet<String> = self
            .pairs
            .iter()
            .chain(&self.signers)
            .map(|p| p.key.clone())
            .collect();
        for key in keys {
            if paired.contains(&key) {
                continue;
            }
            let candidates = [
                key.strip_suffix(".key").map(|s| format!("{s}.crt")),
                key.strip_suffix(".key").map(|s| format!("{s}.pem")),
                key.strip_suffix("-key.pem").map(|s| format!("{s}.pem")),
            ];
            if let Some(cert) = candidates
                .into_iter()
                .flatten()
                .find(|c| store.cert_files.contains_key(c))
            {
                self.pairs.push(PairUse {
                    cert,
                    key: key.clone(),
                    origin: "the file names".into(),
                });
            }
        }
    }

    /// Returns the uses of one certificate file.
    pub fn uses_of<'a>(&'a self, label: &'a str) -> impl Iterator<Item = &'a CertUse> + 'a {
        let index = self.uses_by_label.get_or_init(|| {
            let mut index: HashMap<String, Vec<usize>> = HashMap::new();
            for (position, cert_use) in self.uses.iter().enumerate() {
                index
                    .entry(cert_use.label.clone())
                    .or_default()
                    .push(position);
            }
            index
        });
        index
            .get(label)
            .into_iter()
            .flatten()
            .map(|&position| &self.uses[position])
    }

    pub fn is_trusted_file(&self, label: &str) -> bool {
        self.trusts.iter().any(|t| t.label == label)
    }

    pub fn is_signer_file(&self, label: &str) -> bool {
        self.signers.iter().any(|s| s.cert == label)
    }
}
