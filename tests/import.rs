//! Imported CAs: an existing CA certificate and key, made with the openssl CLI in every
//! key encoding operators have, signs pkic's leaves and is never rewritten; a key that
//! does not match, a certificate that is not a CA, an expired CA and an encrypted key
//! are rejected with the field named.

mod support;

use std::fs;
use std::path::Path;
use std::process::Output;

use support::tree::{openssl_in, pkic_command, stderr};

/// Makes `ca.crt` and a key in `ca.key` with the given `openssl req -newkey` argument.
fn make_ca(dir: &Path, newkey: &[&str]) {
    let mut args = vec![
        "req", "-x509", "-nodes", "-keyout", "ca.key", "-out", "ca.crt",
    ];
    args.extend(newkey);
    args.extend([
        "-subj",
        "/O=Example Org/CN=Existing CA",
        "-days",
        "3650",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    ]);
    openssl_in(dir, &args);
}

const MANIFEST: &str = r#"
[cluster]
name = "imported"
servers = ["https://192.0.2.10:6443"]

[defaults]
key-algorithm = "ecdsa-p256"

[ca.cluster-ca]
import-cert = "ca.crt"
import-key = "ca.key"

[cert.apiserver]
issuer = "cluster-ca"
role = "apiserver"

[cert.admin]
issuer = "cluster-ca"
role = "admin"
"#;

fn build(dir: &Path) -> Output {
    fs::write(dir.join("pki.toml"), MANIFEST).unwrap();
    pkic_command()
        .args(["build", "-o", "out"])
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Builds with the CA in `dir` and returns stderr, asserting that the build failed with
/// exit code 2.
fn rejected(dir: &Path) -> String {
    let output = build(dir);
    assert_eq!(output.status.code(), Some(2));
    stderr(&output)
}

/// Rewrites `ca.key` with `openssl COMMAND -in ca.key -out converted.key`.
fn convert_ca_key(dir: &Path, command: &[&str]) {
    let mut args = command.to_vec();
    args.extend(["-in", "ca.key", "-out", "converted.key"]);
    openssl_in(dir, &args);
    fs::rename(dir.join("converted.key"), dir.join("ca.key")).unwrap();
}

fn assert_ca_key_begins(dir: &Path, header: &str) {
    assert!(
        fs::read_to_string(dir.join("ca.key"))
            .unwrap()
            .starts_with(header)
    );
}

fn assert_signs_and_stays(dir: &Path) {
    let cert_before = fs::read(dir.join("ca.crt")).unwrap();
    let key_before = fs::read(dir.join("ca.key")).unwrap();

    let first = build(dir);

    assert!(first.status.success(), "{}", stderr(&first));
    for (leaf, purpose) in [("apiserver", "sslserver"), ("admin", "sslclient")] {
        let leaf = format!("out/pki/{leaf}.crt");
        openssl_in(
            dir,
            &[
                "verify",
                "-x509_strict",
                "-purpose",
                purpose,
                "-CAfile",
                "ca.crt",
                &leaf,
            ],
        );
    }
    assert_eq!(
        fs::read(dir.join("out/pki/cluster-ca.key")).unwrap(),
        key_before
    );
    let second = build(dir);
    assert!(
        stderr(&second).contains("no file changed"),
        "{}",
        stderr(&second)
    );
    assert_eq!(fs::read(dir.join("ca.crt")).unwrap(), cert_before);
    assert_eq!(fs::read(dir.join("ca.key")).unwrap(), key_before);
}

#[test]
fn rsa_pkcs8_ca_signs_leaves() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), &["-newkey", "rsa:2048"]);
    assert_ca_key_begins(dir.path(), "-----BEGIN PRIVATE KEY-----");
    assert_signs_and_stays(dir.path());
}

#[test]
fn rsa_pkcs1_ca_signs_leaves() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), &["-newkey", "rsa:2048"]);
    convert_ca_key(dir.path(), &["rsa", "-traditional"]);
    assert_ca_key_begins(dir.path(), "-----BEGIN RSA PRIVATE KEY-----");
    assert_signs_and_stays(dir.path());
}

#[test]
fn ecdsa_sec1_ca_signs_leaves() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(
        dir.path(),
        &["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    convert_ca_key(dir.path(), &["ec"]);
    assert_ca_key_begins(dir.path(), "-----BEGIN EC PRIVATE KEY-----");
    assert_signs_and_stays(dir.path());
}

#[test]
fn mismatched_ca_key_rejected() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), &["-newkey", "rsa:2048"]);
    openssl_in(
        dir.path(),
        &["genpkey", "-algorithm", "RSA", "-out", "ca.key"],
    );

    let message = rejected(dir.path());

    assert!(message.contains("ca.cluster-ca.import-key"), "{message}");
    assert!(message.contains("is not the key of"), "{message}");
    assert!(!dir.path().join("out").exists());
}

#[test]
fn leaf_certificate_rejected_as_ca() {
    let dir = tempfile::tempdir().unwrap();
    openssl_in(
        dir.path(),
        &[
            "req",
            "-x509",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-subj",
            "/CN=not-a-ca",
            "-days",
            "30",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ],
    );

    let message = rejected(dir.path());

    assert!(message.contains("ca.cluster-ca.import-cert"), "{message}");
    assert!(message.contains("is not a CA certificate"), "{message}");
}

#[test]
fn expired_ca_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::create_dir(d.join("db")).unwrap();
    fs::write(d.join("db/index.txt"), "").unwrap();
    fs::write(d.join("db/serial"), "01\n").unwrap();
    fs::write(
        d.join("ca.cnf"),
        "[ca]\ndefault_ca = old\n[old]\ndatabase = db/index.txt\nserial = db/serial\n\
         new_certs_dir = db\ndefault_md = sha256\npolicy = any\nunique_subject = no\n\
         [any]\ncommonName = supplied\n[ext]\nbasicConstraints = critical,CA:TRUE\n\
         keyUsage = critical,keyCertSign,cRLSign\n",
    )
    .unwrap();
    openssl_in(
        d,
        &[
            "req",
            "-new",
            "-nodes",
            "-newkey",
            "rsa:2048",
            "-keyout",
            "ca.key",
            "-out",
            "ca.csr",
            "-subj",
            "/CN=Old CA",
        ],
    );
    openssl_in(
        d,
        &[
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-selfsign",
            "-keyfile",
            "ca.key",
            "-in",
            "ca.csr",
            "-out",
            "ca.crt",
            "-startdate",
            "20200101000000Z",
            "-enddate",
            "20210101000000Z",
            "-extensions",
            "ext",
            "-notext",
        ],
    );

    let message = rejected(d);

    assert!(message.contains("ca.cluster-ca.import-cert"), "{message}");
    assert!(message.contains("expired at"), "{message}");
}

#[test]
fn encrypted_ca_key_rejected_as_encrypted() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), &["-newkey", "rsa:2048"]);
    convert_ca_key(dir.path(), &["pkey", "-aes256", "-passout", "pass:secret"]);

    let message = rejected(dir.path());

    assert!(message.contains("is an encrypted private key"), "{message}");
    assert!(message.contains("openssl pkey"), "{message}");
}

#[test]
fn bundle_rejected_as_signer_certificate() {
    let dir = tempfile::tempdir().unwrap();
    make_ca(dir.path(), &["-newkey", "rsa:2048"]);
    let cert = fs::read_to_string(dir.path().join("ca.crt")).unwrap();
    fs::write(dir.path().join("ca.crt"), format!("{cert}{cert}")).unwrap();

    let message = rejected(dir.path());

    assert!(message.contains("holds several certificates"), "{message}");
}
