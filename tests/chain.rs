//! Leaves signed by an intermediate CA are written with their chain, leaf first and
//! root left out, so a peer that trusts only the root accepts them.

mod support;

use std::fs;
use std::process::Command;

use support::peers::openssl_verify;

const MANIFEST: &str = r#"
[cluster]
name = "chain"
servers = ["https://192.0.2.10:6443"]

[defaults]
key-algorithm = "ecdsa-p256"

[ca.root]
subject = { cn = "Root CA" }

[ca.intermediate]
subject = { cn = "Intermediate CA" }
issuer = "root"
path-len = 0
validity = "5y"

[cert.server]
issuer = "intermediate"
usage = "server"
subject = { cn = "server" }
sans = ["server.example.test"]
"#;

#[test]
fn intermediate_chain_written_leaf_first() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("pki.toml");
    fs::write(&manifest, MANIFEST).unwrap();
    let out = dir.path().join("out");

    let output = Command::new(env!("CARGO_BIN_EXE_pkic"))
        .args([
            "build",
            "-m",
            manifest.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
        ])
        .output()
        .unwrap();

    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let server = out.join("pki/server.crt");
    let blocks = pem::parse_many(fs::read(&server).unwrap()).unwrap();
    assert_eq!(blocks.len(), 2, "leaf and intermediate, without the root");
    let intermediate = pem::parse(fs::read(out.join("pki/intermediate.crt")).unwrap()).unwrap();
    assert_eq!(blocks[1].contents(), intermediate.contents());
    let root = out.join("pki/root.crt");
    openssl_verify(&[&root], &[&server], &server, "sslserver").unwrap();
}
