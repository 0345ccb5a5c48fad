//! Golden tests: the public outputs of the shipped manifests match `golden/`, and a
//! one-SAN change makes `pkic build --check` fail with a diff.
//!
//! To update the golden files after an intended change, run `scripts/update-golden.sh`
//! and review `git diff golden/`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const EXAMPLE_VARS: [&str; 6] = [
    "--set",
    "MASTER_IP=192.0.2.10",
    "--set",
    "WORKER1_IP=192.0.2.21",
    "--set",
    "WORKER2_IP=192.0.2.22",
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pkic(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pkic"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("pkic runs")
}

fn check(manifest: &Path, golden: &str, out: &Path) -> Output {
    let mut args = vec![
        "build",
        "-m",
        manifest.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ];
    args.extend(EXAMPLE_VARS);
    args.extend(["--check", golden]);
    pkic(&args)
}

#[test]
fn example_matches_golden() {
    let out = tempfile::tempdir().unwrap();
    let output = check(
        &repo().join("pki.toml.example"),
        "golden/example",
        out.path(),
    );
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn kubeadm_example_matches_golden() {
    let out = tempfile::tempdir().unwrap();
    let manifest = repo().join("examples/kubeadm.pki.toml");
    let output = pkic(&[
        "build",
        "-m",
        manifest.to_str().unwrap(),
        "-o",
        out.path().to_str().unwrap(),
        "--check",
        "golden/kubeadm",
    ]);
    assert!(
        output.status.success(),
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn one_san_change_fails_check() {
    let dir = tempfile::tempdir().unwrap();
    let text = std::fs::read_to_string(repo().join("pki.toml.example")).unwrap();
    let changed = text.replace(
        r#"sans = ["127.0.0.1"]"#,
        r#"sans = ["127.0.0.1", "192.0.2.99"]"#,
    );
    assert_ne!(text, changed, "the example's apiserver SAN line moved");
    let manifest = dir.path().join("pki.toml");
    std::fs::write(&manifest, changed).unwrap();
    let out = dir.path().join("out");

    let output = check(&manifest, "golden/example", &out);

    assert_eq!(output.status.code(), Some(1));
    let diff = String::from_utf8_lossy(&output.stdout);
    assert!(diff.contains("--- expected/certificates.txt"), "{diff}");
    assert!(diff.contains("+sans = DNS:kubernetes"), "{diff}");
    assert!(diff.contains("IP:192.0.2.99"), "{diff}");
    assert!(!out.exists(), "--check wrote the output directory");
}

#[test]
fn golden_files_hold_no_key_material() {
    for entry in walkdir::WalkDir::new(repo().join("golden")) {
        let entry = entry.unwrap();
        if !entry.file_type().is_file() {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        let path = entry.path().display();
        assert!(!text.contains("PRIVATE KEY"), "{path} holds a private key");
        assert!(!text.contains("client-key-data"), "{path} embeds a key");
        assert!(
            !text.contains("BEGIN CERTIFICATE"),
            "{path} holds certificate bytes"
        );
    }
}
