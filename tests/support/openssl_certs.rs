//! Makes test certificates with the openssl CLI, independently of pkic, so that the
//! peer helpers can be shown to accept good files and reject bad ones.

use std::fs;
use std::path::{Path, PathBuf};

use super::peers::{describe_output, peer_command, run_with_timeout};

/// A certificate and its private key, as PEM files.
#[derive(Clone, Debug)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Algorithm of a generated private key.
#[derive(Clone, Copy, Debug)]
pub enum KeyType {
    EcP256,
    Rsa2048,
}

impl KeyType {
    fn newkey_args(self) -> &'static [&'static str] {
        match self {
            KeyType::EcP256 => &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
            KeyType::Rsa2048 => &["-newkey", "rsa:2048"],
        }
    }
}

/// Extensions of a CA, in openssl's extension config syntax.
pub const CA_EXTENSIONS: &str = "\
basicConstraints = critical,CA:TRUE
keyUsage = critical,keyCertSign,cRLSign,digitalSignature
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid:always
";

/// Extensions of a TLS server certificate for 127.0.0.1 and localhost.
pub const SERVER_EXTENSIONS: &str = "\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// Extensions of a TLS client certificate.
pub const CLIENT_EXTENSIONS: &str = "\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = clientAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// Extensions of an etcd peer certificate, which both serves and connects.
pub const PEER_EXTENSIONS: &str = "\
basicConstraints = critical,CA:FALSE
keyUsage = critical,digitalSignature,keyEncipherment
extendedKeyUsage = serverAuth,clientAuth
subjectAltName = IP:127.0.0.1,DNS:localhost
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
";

/// A config with an empty distinguished name section, so that `openssl req` reads
/// the subject from `-subj` and nothing from the system's openssl.cnf.
const REQ_CONFIG: &str = "\
[req]
distinguished_name = distinguished_name
[distinguished_name]
";

/// Makes a self-signed CA as `NAME.crt` and `NAME.key` in `directory`, valid for one
/// day. `subject` is in openssl's `/CN=...` form.
pub fn make_ca(directory: &Path, name: &str, subject: &str) -> CertFiles {
    let files = cert_files(directory, name);
    let config = directory.join(format!("{name}.cnf"));
    fs::write(
        &config,
        format!("{REQ_CONFIG}[ca_extensions]\n{CA_EXTENSIONS}"),
    )
    .expect("failed to write an openssl config");

    let mut args: Vec<&str> = vec!["req", "-x509", "-new", "-noenc", "-days", "1"];
    args.extend_from_slice(KeyType::EcP256.newkey_args());
    args.extend_from_slice(&["-extensions", "ca_extensions", "-subj", subject]);
    run_openssl(
        &args,
        &[
            ("-config", &config),
            ("-keyout", &files.key),
            ("-out", &files.cert),
        ],
    );
    files
}

/// Makes `NAME.crt` and `NAME.key` in `directory`, signed by `issuer` and valid for
/// one day, with `extensions` in openssl's extension config syntax.
pub fn make_cert(
    directory: &Path,
    name: &str,
    issuer: &CertFiles,
    subject: &str,
    extensions: &str,
    key_type: KeyType,
) -> CertFiles {
    let files = cert_files(directory, name);
    let config = directory.join(format!("{name}.cnf"));
    fs::write(&config, REQ_CONFIG).expect("failed to write an openssl config");
    let request = directory.join(format!("{name}.csr"));
    let extensions_file = directory.join(format!("{name}.ext"));
    fs::write(&extensions_file, extensions).expect("failed to write an extensions file");

    let mut args: Vec<&str> = vec!["req", "-new", "-noenc", "-subj", subject];
    args.extend_from_slice(key_type.newkey_args());
    run_openssl(
        &args,
        &[
            ("-config", &config),
            ("-keyout", &files.key),
            ("-out", &request),
        ],
    );

    // Without -CAserial, openssl 3.0 gives each certificate a random serial number.
    run_openssl(
        &["x509", "-req", "-days", "1"],
        &[
            ("-in", &request),
            ("-CA", &issuer.cert),
            ("-CAkey", &issuer.key),
            ("-extfile", &extensions_file),
            ("-out", &files.cert),
        ],
    );
    files
}

/// Makes an intermediate CA signed by `issuer`.
pub fn make_intermediate_ca(
    directory: &Path,
    name: &str,
    issuer: &CertFiles,
    subject: &str,
) -> CertFiles {
    make_cert(
        directory,
        name,
        issuer,
        subject,
        CA_EXTENSIONS,
        KeyType::EcP256,
    )
}

fn cert_files(directory: &Path, name: &str) -> CertFiles {
    CertFiles {
        cert: directory.join(format!("{name}.crt")),
        key: directory.join(format!("{name}.key")),
    }
}

fn run_openssl(args: &[&str], path_options: &[(&str, &Path)]) {
    let mut command = peer_command("openssl");
    command.args(args);
    for (option, path) in path_options {
        command.arg(option).arg(path);
    }
    let output = run_with_timeout(&mut command, std::time::Duration::from_secs(30));
    assert!(
        output.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        describe_output(&output)
    );
}
