//! Inputs and trees that once got past pkic: each is now rejected or handled, and each
//! test fails if the hole opens again.

mod support;

use std::fs;
use std::path::Path;
use std::process::Output;

use support::tree::{pkic_command, small_manifest, stderr};
use tempfile::TempDir;

fn run(dir: &Path, args: &[&str], manifest: &str) -> Output {
    fs::write(dir.join("pki.toml"), manifest).unwrap();
    pkic_command().args(args).current_dir(dir).output().unwrap()
}

/// Builds the small manifest into `out` of a new directory, which must succeed.
fn built() -> (TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let manifest = small_manifest();
    assert!(
        run(dir.path(), &["build", "-o", "out"], &manifest)
            .status
            .success()
    );
    (dir, manifest)
}

fn rejected(manifest: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let output = run(dir.path(), &["build", "-o", "out"], manifest);
    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(!dir.path().join("out").exists());
    stderr(&output)
}

#[test]
fn update_golden_refuses_output_directory() {
    let (dir, manifest) = built();

    let output = run(dir.path(), &["build", "--update-golden", "out"], &manifest);

    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("is not a directory of golden files"));
    assert!(dir.path().join("out/pki/server-ca.key").exists());
}

#[test]
fn output_list_cannot_move_files_outside() {
    let (dir, manifest) = built();
    fs::write(dir.path().join("victim.txt"), "keep me").unwrap();
    let list = dir.path().join("out/.pkic-outputs");
    let mut text = fs::read_to_string(&list).unwrap();
    text.push_str("../victim.txt\n");
    fs::write(&list, text).unwrap();

    let output = run(dir.path(), &["build", "-o", "out"], &manifest);

    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        fs::read_to_string(dir.path().join("victim.txt")).unwrap(),
        "keep me"
    );
}

#[test]
fn service_account_key_never_replaced_implicitly() {
    let (dir, manifest) = built();
    fs::remove_file(dir.path().join("out/pki/sa.key")).unwrap();

    let output = run(dir.path(), &["build", "-o", "out"], &manifest);

    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("would invalidate every service-account token"));
    assert!(!dir.path().join("out/pki/sa.key").exists());
}

#[test]
fn ipv6_service_range_gives_first_address() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = small_manifest().replace(
        "advertise-address = \"192.0.2.10\"",
        "advertise-address = \"192.0.2.10\"\nservice-cidr = \"fd00::/108\"",
    );

    let output = run(dir.path(), &["build", "-o", "out"], &manifest);

    assert!(output.status.success(), "{}", stderr(&output));
    let flags = fs::read_to_string(dir.path().join("out/flags/kube-apiserver.flags")).unwrap();
    assert!(
        flags.contains("--service-cluster-ip-range=fd00::/108"),
        "{flags}"
    );
    let golden = run(
        dir.path(),
        &["build", "--update-golden", "golden"],
        &manifest,
    );
    assert!(golden.status.success());
    let profile = fs::read_to_string(dir.path().join("golden/certificates.txt")).unwrap();
    assert!(profile.contains("IP:fd00::1,"), "{profile}");
    assert!(!profile.contains("IP:fd00::,"), "{profile}");
}

#[test]
fn oversized_and_paired_service_ranges_rejected() {
    let base = small_manifest();
    let too_large = base.replace(
        "advertise-address = \"192.0.2.10\"",
        "advertise-address = \"192.0.2.10\"\nservice-cidr = \"10.0.0.0/8\"",
    );
    assert!(rejected(&too_large).contains("is too large"));
    let two_ipv4 = base.replace(
        "advertise-address = \"192.0.2.10\"",
        "advertise-address = \"192.0.2.10\"\nservice-cidr = \"10.96.0.0/12,10.112.0.0/16\"",
    );
    assert!(rejected(&two_ipv4).contains("one IPv4 and one IPv6 range"));
}

#[test]
fn control_characters_rejected_with_location() {
    let manifest = small_manifest().replace("cn = \"Client CA\"", "cn = \"Client\\nCA\"");
    let message = rejected(&manifest);
    assert!(message.contains("ca.client-ca.subject.cn"), "{message}");
    assert!(message.contains("U+000A"), "{message}");
}

#[test]
fn server_url_with_user_name_rejected() {
    let manifest = small_manifest().replace(
        "servers = [\"https://192.0.2.10:6443\"]",
        "servers = [\"https://user:pw@192.0.2.10:6443\"]",
    );
    assert!(rejected(&manifest).contains("carries a user name"));
}

#[test]
fn san_with_port_rejected() {
    let manifest = small_manifest().replace("${EXTRA_SAN:-127.0.0.1}", "localhost:6443");
    let message = rejected(&manifest);
    assert!(message.contains("cert.apiserver.sans[0]"), "{message}");
    assert!(
        message.contains("neither an IP address, a DNS name nor a URI"),
        "{message}"
    );
}

#[test]
fn output_path_inside_pkic_state_rejected() {
    let manifest = small_manifest().replace(
        "[cert.admin]\nissuer = \"client-ca\"",
        "[cert.admin]\ncert-file = \".backup/admin.crt\"\nissuer = \"client-ca\"",
    );
    assert!(rejected(&manifest).contains("inside pkic's own state"));
}

#[test]
fn validity_within_renewal_window_rejected() {
    let manifest = small_manifest().replace(
        "[cert.admin]\nissuer = \"client-ca\"",
        "[cert.admin]\nvalidity = \"20d\"\nissuer = \"client-ca\"",
    );
    let message = rejected(&manifest);
    assert!(message.contains("cert.admin.validity"), "{message}");
    assert!(
        message.contains("not longer than defaults.renew-before"),
        "{message}"
    );
}

#[test]
fn client_role_with_server_usage_rejected() {
    let manifest = small_manifest().replace(
        "[per-node.cert.kubelet-client]\nissuer = \"client-ca\"",
        "[per-node.cert.kubelet-client]\nusage = \"server\"\nissuer = \"client-ca\"",
    );
    let message = rejected(&manifest);
    assert!(
        message.contains("per-node.cert.kubelet-client.usage"),
        "{message}"
    );
    assert!(message.contains("does not allow client use"), "{message}");
}

#[cfg(unix)]
#[test]
fn symlinked_output_directory_refused() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir(&elsewhere).unwrap();
    fs::create_dir(dir.path().join("out")).unwrap();
    std::os::unix::fs::symlink(&elsewhere, dir.path().join("out/pki")).unwrap();

    let output = run(dir.path(), &["build", "-o", "out"], &small_manifest());

    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("symbolic link"));
    assert_eq!(
        fs::read_dir(&elsewhere).unwrap().count(),
        0,
        "keys were written through the link"
    );
}

#[test]
fn corrupt_ca_certificate_never_replaced() {
    let (dir, manifest) = built();
    let key_before = fs::read(dir.path().join("out/pki/server-ca.key")).unwrap();
    fs::write(
        dir.path().join("out/pki/server-ca.crt"),
        "-----BEGIN CERTIFICATE-----\ntrunc",
    )
    .unwrap();

    let output = run(dir.path(), &["build", "-o", "out"], &manifest);

    assert_eq!(output.status.code(), Some(2), "{}", stderr(&output));
    assert!(stderr(&output).contains("is not a readable certificate"));
    assert_eq!(
        fs::read(dir.path().join("out/pki/server-ca.key")).unwrap(),
        key_before
    );
}

/// Replaces `out/nodes/node-b` of a built tree with a symbolic link to a copy of it
/// outside the tree, and returns the copy.
#[cfg(unix)]
fn node_b_behind_link(dir: &Path) -> std::path::PathBuf {
    let node = dir.join("out/nodes/node-b");
    let elsewhere = dir.join("elsewhere");
    fs::rename(&node, &elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, &node).unwrap();
    elsewhere
}

#[cfg(unix)]
#[test]
fn symlink_rejected_before_any_file_changes() {
    let (dir, manifest) = built();
    fs::remove_file(dir.path().join("out/pki/admin.crt")).unwrap();
    let elsewhere = node_b_behind_link(dir.path());
    fs::remove_file(elsewhere.join("kubelet.conf")).unwrap();

    let output = run(dir.path(), &["build", "-o", "out"], &manifest);

    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("symbolic link"));
    assert!(
        !dir.path().join("out/pki/admin.crt").exists(),
        "a file was renamed into place before the link was found"
    );
    assert!(!elsewhere.join("kubelet.conf").exists());
}

#[cfg(unix)]
#[test]
fn stale_files_not_moved_through_symlink() {
    let (dir, manifest) = built();
    let elsewhere = node_b_behind_link(dir.path());
    let renamed = manifest.replace("${SECOND_NODE:-node-b}", "node-c");

    let output = run(dir.path(), &["build", "-o", "out"], &renamed);

    assert_eq!(output.status.code(), Some(3), "{}", stderr(&output));
    assert!(stderr(&output).contains("symbolic link"));
    assert!(elsewhere.join("kubelet.conf").is_file());
    assert!(elsewhere.join("pki/kubelet-client.key").is_file());
    assert!(!dir.path().join("out/nodes/node-c").exists());
}
