//! Builds PKI trees for `pkic check` tests with the openssl CLI, independently of
//! pkic: keys in each encoding, certificates with any extensions, dates and serials,
//! and kubeconfigs that name files or embed them.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine;

use crate::support::peers::{describe_output, peer_command, run_with_timeout};
use crate::support::tree::copy_tree;

/// Extensions of a CA.
pub const CA: &str = "basicConstraints = critical,CA:TRUE\n\
keyUsage = critical,keyCertSign,cRLSign,digitalSignature\n";

/// Extensions of a client certificate.
pub const CLIENT: &str = "basicConstraints = critical,CA:FALSE\n\
keyUsage = critical,digitalSignature,keyEncipherment\n\
extendedKeyUsage = clientAuth\n";

/// Extensions of a serving certificate, without SANs: append a subjectAltName line.
pub const SERVER: &str = "basicConstraints = critical,CA:FALSE\n\
keyUsage = critical,digitalSignature,keyEncipherment\n\
extendedKeyUsage = serverAuth\n";

/// Extensions of an etcd server or peer certificate, without SANs.
pub const SERVER_CLIENT: &str = "basicConstraints = critical,CA:FALSE\n\
keyUsage = critical,digitalSignature,keyEncipherment\n\
extendedKeyUsage = serverAuth,clientAuth\n";

const REQ_CONFIG: &str = "[req]\ndistinguished_name = dn\n[dn]\n";

/// The key of a new certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// ECDSA P-256 in PKCS#8.
    Ec,
    /// RSA of this many bits in PKCS#8.
    Rsa(u32),
}

/// A directory under construction.
pub struct Tree {
    pub root: PathBuf,
    work: PathBuf,
}

/// Runs openssl and panics with its output when it fails.
pub fn openssl(args: &[&str]) {
    let mut command = peer_command("openssl");
    command.args(args);
    let output = run_with_timeout(&mut command, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        describe_output(&output)
    );
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("test paths are UTF-8")
}

impl Tree {
    /// Creates `root` and a scratch directory beside it.
    pub fn new(root: &Path) -> Tree {
        let work = root.with_extension("work");
        for dir in [root, &work] {
            if dir.exists() {
                fs::remove_dir_all(dir).expect("failed to remove an earlier tree");
            }
            fs::create_dir_all(dir).expect("failed to create a tree directory");
        }
        Tree {
            root: root.to_path_buf(),
            work,
        }
    }

    /// Opens an existing directory, with a fresh scratch directory beside it.
    pub fn open(root: &Path) -> Tree {
        let work = root.with_extension("work");
        fs::create_dir_all(&work).expect("failed to create the scratch directory");
        Tree {
            root: root.to_path_buf(),
            work,
        }
    }

    /// Returns the path of a file in the tree.
    pub fn path(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// Returns the path of a file in the tree as text, for openssl arguments.
    pub fn path_string(&self, relative: &str) -> String {
        path_str(&self.path(relative)).to_string()
    }

    pub fn write(&self, relative: &str, contents: &str) {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().expect("a file has a parent"))
            .expect("failed to create a directory");
        fs::write(&path, contents)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    }

    pub fn read(&self, relative: &str) -> String {
        fs::read_to_string(self.path(relative))
            .unwrap_or_else(|e| panic!("cannot read {relative}: {e}"))
    }

    pub fn remove(&self, relative: &str) {
        fs::remove_file(self.path(relative))
            .unwrap_or_else(|e| panic!("cannot remove {relative}: {e}"));
    }

    /// Starts a certificate at `stem.crt` with its key at `stem.key`.
    pub fn cert<'t>(&'t self, stem: &str, subject: &str) -> Issue<'t> {
        Issue {
            tree: self,
            stem: stem.to_string(),
            subject: subject.to_string(),
            issuer: None,
            extensions: CA.to_string(),
            key: Key::Ec,
            days: 3650,
            dates: None,
            serial: None,
            digest: "sha256",
            existing_key: false,
        }
    }

    /// Generates a PKCS#8 private key at `relative`.
    pub fn key(&self, relative: &str, key: Key) {
        let path = self.path(relative);
        fs::create_dir_all(path.parent().expect("a file has a parent"))
            .expect("failed to create a directory");
        match key {
            Key::Ec => openssl(&[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-out",
                path_str(&path),
            ]),
            Key::Rsa(bits) => openssl(&[
                "genpkey",
                "-algorithm",
                "RSA",
                "-pkeyopt",
                &format!("rsa_keygen_bits:{bits}"),
                "-out",
                path_str(&path),
            ]),
        }
    }

    /// Writes the public key of a private key file.
    pub fn public_key(&self, private: &str, public: &str) {
        self.transform(private, public, &["pkey", "-pubout"]);
    }

    /// Runs `openssl ARGS -in INPUT -out OUTPUT`; `output` may be `input`, because
    /// openssl writes to a scratch file first.
    pub fn transform(&self, input: &str, output: &str, args: &[&str]) {
        let scratch = self.work.join(format!("{}.pem", next_id()));
        let mut all = args.to_vec();
        let input = self.path_string(input);
        all.extend(["-in", &input, "-out", path_str(&scratch)]);
        openssl(&all);
        fs::copy(&scratch, self.path(output)).expect("failed to copy openssl's output");
    }

    /// Concatenates files into one, such as a CA bundle.
    pub fn concat(&self, target: &str, parts: &[&str]) {
        let text: String = parts.iter().map(|p| self.read(p)).collect();
        self.write(target, &text);
    }

    /// Writes a kubeconfig that names its files, or embeds them when `embed` is set.
    pub fn kubeconfig(
        &self,
        relative: &str,
        server: &str,
        ca: &str,
        cert: &str,
        key: &str,
        embed: bool,
    ) {
        let data = |file: &str| base64::engine::general_purpose::STANDARD.encode(self.read(file));
        let (ca_line, user_lines) = if embed {
            (
                format!("    certificate-authority-data: {}", data(ca)),
                format!(
                    "    client-certificate-data: {}\n    client-key-data: {}",
                    data(cert),
                    data(key)
                ),
            )
        } else {
            (
                format!("    certificate-authority: /etc/kubernetes/{ca}"),
                format!(
                    "    client-certificate: /etc/kubernetes/{cert}\n    client-key: \
                     /etc/kubernetes/{key}"
                ),
            )
        };
        let lines = [
            "apiVersion: v1",
            "kind: Config",
            "clusters:",
            "- name: kubernetes",
            "  cluster:",
            &format!("    server: {server}"),
            &ca_line,
            "users:",
            "- name: user",
            "  user:",
            &user_lines,
            "contexts:",
            "- name: user@kubernetes",
            "  context:",
            "    cluster: kubernetes",
            "    user: user",
            "current-context: user@kubernetes",
        ];
        let text = lines.join("\n") + "\n";
        self.write(relative, &text);
    }
}

/// One certificate to make.
pub struct Issue<'t> {
    tree: &'t Tree,
    stem: String,
    subject: String,
    issuer: Option<String>,
    extensions: String,
    key: Key,
    days: u32,
    dates: Option<(String, String)>,
    serial: Option<String>,
    digest: &'static str,
    /// Signs the key already at `stem.key` instead of generating one.
    existing_key: bool,
}

impl Issue<'_> {
    /// Signs with the CA at `stem.crt` and `stem.key` instead of self-signing.
    pub fn issuer(mut self, stem: &str) -> Self {
        self.issuer = Some(stem.to_string());
        self
    }

    /// Sets the extensions, in openssl's extension config syntax.
    pub fn ext(mut self, extensions: &str) -> Self {
        self.extensions = extensions.to_string();
        self
    }

    pub fn key(mut self, key: Key) -> Self {
        self.key = key;
        self
    }

    pub fn days(mut self, days: u32) -> Self {
        self.days = days;
        self
    }

    /// Sets notBefore and notAfter, as `YYYYMMDDHHMMSSZ`.
    pub fn dates(mut self, not_before: &str, not_after: &str) -> Self {
        self.dates = Some((not_before.to_string(), not_after.to_string()));
        self
    }

    /// Sets the serial, in openssl's `-set_serial` syntax (decimal, may be negative).
    pub fn serial(mut self, serial: &str) -> Self {
        self.serial = Some(serial.to_string());
        self
    }

    pub fn digest(mut self, digest: &'static str) -> Self {
        self.digest = digest;
        self
    }

    /// Signs the key already at `stem.key` instead of generating a new one.
    pub fn existing_key(mut self) -> Self {
        self.existing_key = true;
        self
    }

    /// Writes a new key, unless [`Issue::existing_key`] was called, and the certificate.
    pub fn write(self) {
        let tree = self.tree;
        if !self.existing_key {
            tree.key(&format!("{}.key", self.stem), self.key);
        }
        let files = self.request();

        if let Some((start, end)) = &self.dates {
            self.sign_with_ca_app(&files, start, end);
        } else {
            self.sign_with_x509(&files);
        }
    }

    /// Writes the scratch files and the certificate request.
    fn request(&self) -> Files {
        let tree = self.tree;
        let id = next_id();
        let files = Files {
            id,
            key: tree.path_string(&format!("{}.key", self.stem)),
            cert: tree.path_string(&format!("{}.crt", self.stem)),
            config: path_str(&tree.work.join(format!("{id}.cnf"))).to_string(),
            request: path_str(&tree.work.join(format!("{id}.csr"))).to_string(),
            extensions: path_str(&tree.work.join(format!("{id}.ext"))).to_string(),
        };
        fs::write(&files.config, REQ_CONFIG).expect("failed to write a config");
        fs::write(&files.extensions, &self.extensions).expect("failed to write extensions");
        openssl(&[
            "req",
            "-new",
            "-key",
            &files.key,
            "-subj",
            &self.subject,
            "-config",
            &files.config,
            "-out",
            &files.request,
        ]);
        files
    }

    /// Returns the issuer's certificate and key paths, or `None` to self-sign.
    fn issuer_files(&self) -> Option<(String, String)> {
        let issuer = self.issuer.as_ref()?;
        Some((
            self.tree.path_string(&format!("{issuer}.crt")),
            self.tree.path_string(&format!("{issuer}.key")),
        ))
    }

    fn sign_with_x509(&self, files: &Files) {
        let days = self.days.to_string();
        let digest = format!("-{}", self.digest);
        let mut args = vec![
            "x509",
            "-req",
            "-in",
            &files.request,
            "-days",
            &days,
            &digest,
            "-extfile",
            &files.extensions,
            "-out",
            &files.cert,
        ];
        let issuer = self.issuer_files();
        match &issuer {
            Some((cert, key)) => args.extend(["-CA", cert, "-CAkey", key]),
            None => args.extend(["-signkey", &files.key]),
        }
        if let Some(serial) = &self.serial {
            args.extend(["-set_serial", serial]);
        }
        openssl(&args);
    }

    /// Signs with `openssl ca`, the one openssl 3.0 command that sets both dates.
    fn sign_with_ca_app(&self, files: &Files, start: &str, end: &str) {
        let dir = self.tree.work.join(format!("ca-{}", files.id));
        fs::create_dir_all(&dir).expect("failed to create a CA directory");
        fs::write(dir.join("index.txt"), "").expect("failed to write the CA database");
        fs::write(dir.join("serial"), format!("{:016X}\n", 0x1000 + files.id))
            .expect("failed to write the serial file");

        let dir_text = path_str(&dir);
        let config = [
            "[ca]".to_string(),
            "default_ca = local".into(),
            "[local]".into(),
            format!("database = {dir_text}/index.txt"),
            format!("new_certs_dir = {dir_text}"),
            format!("serial = {dir_text}/serial"),
            format!("default_md = {}", self.digest),
            "policy = any".into(),
            "unique_subject = no".into(),
            "[any]".into(),
            "countryName = optional".into(),
            "stateOrProvinceName = optional".into(),
            "localityName = optional".into(),
            "organizationName = optional".into(),
            "organizationalUnitName = optional".into(),
            "commonName = optional".into(),
        ]
        .join("\n")
            + "\n";
        let config_path = dir.join("ca.cnf");
        fs::write(&config_path, config).expect("failed to write the CA config");

        let mut args = vec![
            "ca",
            "-batch",
            "-notext",
            "-preserveDN",
            "-config",
            path_str(&config_path),
            "-in",
            &files.request,
            "-out",
            &files.cert,
            "-startdate",
            start,
            "-enddate",
            end,
            "-extfile",
            &files.extensions,
        ];
        let issuer = self.issuer_files();
        match &issuer {
            Some((cert, key)) => args.extend(["-cert", cert, "-keyfile", key]),
            None => args.extend(["-selfsign", "-keyfile", &files.key]),
        }
        openssl(&args);
    }
}

/// The files of one certificate being made.
struct Files {
    id: u64,
    key: String,
    cert: String,
    config: String,
    request: String,
    extensions: String,
}

fn next_id() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::SeqCst)
}

/// Replaces `to` with a copy of the directory `from`.
pub fn copy_dir(from: &Path, to: &Path) {
    if to.exists() {
        fs::remove_dir_all(to).expect("failed to remove an earlier copy");
    }
    copy_tree(from, to);
}
