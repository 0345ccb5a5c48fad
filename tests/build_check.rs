//! `pkic build` runs the rules of `pkic check` on the tree it wrote: an error fails the
//! build, and keeps failing builds of the unchanged tree, until a build finds none.
//! Choices that the manifest declares on purpose are reported as warnings.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn fixture(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative);
    fs::read_to_string(path).unwrap()
}

/// Writes `manifest` into `dir` and builds it into `dir/out`.
fn build(dir: &Path, manifest: &str) -> Output {
    let path = dir.join("pki.toml");
    fs::write(&path, manifest).unwrap();
    Command::new(env!("CARGO_BIN_EXE_pkic"))
        .arg("build")
        .arg("-m")
        .arg(&path)
        .arg("-o")
        .arg(dir.join("out"))
        .env_remove("EXTRA_SAN")
        .env_remove("SECOND_NODE")
        .output()
        .expect("pkic runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn errors_file(dir: &Path) -> PathBuf {
    dir.join("out/.pkic-check-errors")
}

/// The small manifest with a super-admin kubeconfig whose certificate has `group`.
fn with_super_admin(group: &str) -> String {
    format!(
        "{}\n[cert.root-admin]\nissuer = \"client-ca\"\nrole = \"super-admin\"\n\
         subject = {{ cn = \"root\", o = \"{group}\" }}\n\n\
         [kubeconfig.super-admin]\nuser = \"root-admin\"\nca = \"server-ca\"\n\
         file = \"super-admin.conf\"\n",
        fixture("small-ecdsa.toml")
    )
}

#[test]
fn check_error_fails_the_build() {
    let dir = tempfile::tempdir().unwrap();

    let first = build(dir.path(), &with_super_admin("ops"));

    assert_eq!(first.status.code(), Some(1), "{}", stderr(&first));
    let text = stderr(&first);
    assert!(
        text.contains("[check] error[admin-no-group] pki/root-admin.crt"),
        "{text}"
    );
    assert!(
        text.contains("pkic check found 1 error in the tree written to"),
        "{text}"
    );
    assert!(dir.path().join("out/super-admin.conf").is_file());
    assert!(errors_file(dir.path()).is_file());

    let again = build(dir.path(), &with_super_admin("ops"));
    assert_eq!(
        again.status.code(),
        Some(1),
        "an unchanged faulty tree passed"
    );
    assert!(stderr(&again).contains("error[admin-no-group]"));

    let fixed = build(dir.path(), &with_super_admin("system:masters"));
    assert!(fixed.status.success(), "{}", stderr(&fixed));
    assert!(
        !errors_file(dir.path()).exists(),
        "the error list outlived the fix"
    );
}

#[test]
fn declared_choice_is_a_warning() {
    let dir = tempfile::tempdir().unwrap();

    let output = build(dir.path(), &fixture("cases/admin-cert-without-group.toml"));

    assert!(output.status.success(), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(text.contains("[check] warning[admin-no-group]"), "{text}");
    assert!(text.contains("as the manifest declares"), "{text}");
    assert!(!errors_file(dir.path()).exists());
}

#[test]
fn error_list_rechecked_when_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture("small-ecdsa.toml");
    assert!(build(dir.path(), &manifest).status.success());
    fs::write(
        errors_file(dir.path()),
        "[check] error[example] left by a build\n",
    )
    .unwrap();

    let output = build(dir.path(), &manifest);

    assert!(output.status.success(), "{}", stderr(&output));
    assert!(stderr(&output).contains("up to date: no file changed"));
    assert!(
        !errors_file(dir.path()).exists(),
        "a clean tree kept the error list"
    );
}

/// The check after a build takes the files the build wrote from memory, and reads the
/// rest of the tree from disk: a certificate and key put there by hand are checked too.
#[test]
fn files_the_build_did_not_write_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture("small-ecdsa.toml");
    assert!(build(dir.path(), &manifest).status.success());
    let pki = dir.path().join("out/pki");
    fs::copy(pki.join("admin.crt"), pki.join("extra.crt")).unwrap();
    fs::copy(pki.join("apiserver.key"), pki.join("extra.key")).unwrap();
    let renamed = manifest.replace("${SECOND_NODE:-node-b}", "node-c");

    let output = build(dir.path(), &renamed);

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("[check] error[key-mismatch] pki/extra.key"),
        "{text}"
    );
    fs::remove_file(pki.join("extra.key")).unwrap();
    let fixed = build(dir.path(), &renamed);
    assert!(fixed.status.success(), "{}", stderr(&fixed));
}

/// A node's key replaced by hand with another node's makes the build reissue the node's
/// certificate for that key, and the check of the written tree rejects the shared key.
#[test]
fn key_copied_from_another_node_fails() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = fixture("small-ecdsa.toml");
    assert!(build(dir.path(), &manifest).status.success());
    let nodes = dir.path().join("out/nodes");
    fs::copy(
        nodes.join("node-a/pki/kubelet-client.key"),
        nodes.join("node-b/pki/kubelet-client.key"),
    )
    .unwrap();

    let output = build(dir.path(), &manifest);

    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    let text = stderr(&output);
    assert!(
        text.contains("[check] error[key-shared] nodes/node-b/pki/kubelet-client.crt"),
        "{text}"
    );
    fs::remove_file(nodes.join("node-b/pki/kubelet-client.key")).unwrap();
    let fixed = build(dir.path(), &manifest);
    assert!(fixed.status.success(), "{}", stderr(&fixed));
}
