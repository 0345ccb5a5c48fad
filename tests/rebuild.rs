//! Rebuilds over an existing tree: idempotence, minimal reissue, repair of edited files,
//! protection of CAs, backups, `pkic plan`, and convergence after builds killed at
//! every file operation.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::Duration;

use support::peers::describe_output;
use support::tree::{
    assert_complete_pem_files, copy_tree, pkic_command, run_pkic, small_manifest,
    small_manifest_path, snapshot,
};

/// Runs `pkic COMMAND` on the small manifest and the output directory `out`.
fn pkic(out: &Path, command: &str, vars: &[(&str, &str)], env: &[(&str, &str)]) -> Output {
    run_pkic(command, &small_manifest_path(), out, vars, env)
}

fn build(out: &Path, vars: &[(&str, &str)]) -> Output {
    let output = pkic(out, "build", vars, &[]);
    assert!(
        output.status.success(),
        "build failed: {}",
        describe_output(&output)
    );
    output
}

fn written(output: &Output) -> Vec<String> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn second_build_changes_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    build(&out, &[]);
    let before = snapshot(&out);

    let second = build(&out, &[]);

    assert_eq!(snapshot(&out), before);
    assert!(written(&second).is_empty(), "{}", describe_output(&second));
    assert!(
        describe_output(&second).contains("no file changed"),
        "{}",
        describe_output(&second)
    );
    assert!(!out.join(".backup").exists());
}

#[test]
fn san_change_reissues_only_apiserver() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    build(&out, &[]);
    let before = snapshot(&out);

    let second = build(&out, &[("EXTRA_SAN", "192.0.2.99")]);

    assert_eq!(written(&second), vec!["pki/apiserver.crt"]);
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("SANs added: IP:192.0.2.99"), "{stderr}");
    assert!(stderr.contains("removed: IP:127.0.0.1"), "{stderr}");
    let after = snapshot(&out);
    assert_eq!(
        after["pki/apiserver.key"], before["pki/apiserver.key"],
        "key was replaced"
    );
    let backup = fs::read_dir(out.join(".backup"))
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    assert_eq!(
        fs::read(backup.join("pki/apiserver.crt")).unwrap(),
        before["pki/apiserver.crt"]
    );
}

#[test]
fn node_change_touches_only_its_files() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    build(&out, &[]);

    let second = build(&out, &[("SECOND_NODE", "node-c")]);

    let mut changed = written(&second);
    changed.sort();
    assert_eq!(
        changed,
        vec![
            "nodes/node-c/kubelet.conf",
            "nodes/node-c/pki/kubelet-client.crt",
            "nodes/node-c/pki/kubelet-client.key",
        ]
    );
    assert!(!out.join("nodes/node-b").join("kubelet.conf").exists());
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("moved nodes/node-b/kubelet.conf to the backup"),
        "{stderr}"
    );
}

#[test]
fn deleted_certificate_recreated_with_same_key() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    build(&out, &[]);
    let before = snapshot(&out);
    fs::remove_file(out.join("pki/admin.crt")).unwrap();

    let second = build(&out, &[]);

    let mut changed = written(&second);
    changed.sort();
    // admin.conf embeds the admin certificate, so it follows the new certificate.
    assert_eq!(changed, vec!["admin.conf", "pki/admin.crt"]);
    assert_eq!(snapshot(&out)["pki/admin.key"], before["pki/admin.key"]);
}

#[test]
fn mismatched_key_gets_new_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let other = dir.path().join("other");
    build(&out, &[]);
    build(&other, &[]);
    // A key from another tree: a key of this tree's own certificates would be shared by
    // two subjects after the reissue, which the check of the written tree rejects.
    fs::copy(other.join("pki/admin.key"), out.join("pki/admin.key")).unwrap();

    let second = build(&out, &[]);

    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(
        stderr.contains("certificate does not match its key"),
        "{stderr}"
    );
    assert!(written(&second).contains(&"pki/admin.crt".to_string()));
    let plan = pkic(&out, "plan", &[], &[]);
    assert_eq!(plan.status.code(), Some(0), "{}", describe_output(&plan));
}

#[test]
fn ca_subject_change_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    build(&out, &[]);
    let before = snapshot(&out);
    let changed = small_manifest().replace("cn = \"Client CA\"", "cn = \"Client CA 2\"");
    let edited = dir.path().join("pki.toml");
    fs::write(&edited, changed).unwrap();

    let output = run_pkic("build", &edited, &out, &[], &[]);

    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        describe_output(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("ca.client-ca"), "{stderr}");
    assert!(
        stderr.contains("subject changed from \"CN=Client CA\" to \"CN=Client CA 2\""),
        "{stderr}"
    );
    assert!(
        stderr.contains("never replaces a CA key implicitly"),
        "{stderr}"
    );
    assert_eq!(snapshot(&out), before);
}

#[test]
fn ca_without_key_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    build(&out, &[]);
    fs::remove_file(out.join("pki/server-ca.key")).unwrap();

    let output = pkic(&out, "build", &[], &[]);

    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        describe_output(&output)
    );
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("its key pki/server-ca.key is missing")
    );
    assert!(!out.join("pki/server-ca.key").exists());
}

#[test]
fn plan_at_later_date_renews() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    build(&out, &[]);
    let later =
        time::OffsetDateTime::now_utc() + time::Duration::days(340) - time::Duration::hours(1);
    let at = later
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();

    let output = pkic_command()
        .args(["plan", "--at", &at, "-m"])
        .arg(small_manifest_path())
        .arg("-o")
        .arg(&out)
        .output()
        .unwrap();

    assert_eq!(
        output.status.code(),
        Some(4),
        "{}",
        describe_output(&output)
    );
    let runbook = String::from_utf8_lossy(&output.stdout);
    assert!(
        runbook.contains("renew    cert:admin: expires in 25 days (renew-before 30d)"),
        "{runbook}"
    );
    assert!(runbook.contains("keep     ca:server-ca"), "{runbook}");
    assert!(runbook.contains("copy pki/admin.crt ->"), "{runbook}");
}

#[test]
fn plan_reports_changes_without_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    build(&out, &[]);
    let before = snapshot(&out);

    let unchanged = pkic(&out, "plan", &[], &[]);
    let changed = pkic(&out, "plan", &[("EXTRA_SAN", "192.0.2.99")], &[]);

    assert_eq!(
        unchanged.status.code(),
        Some(0),
        "{}",
        describe_output(&unchanged)
    );
    assert!(String::from_utf8_lossy(&unchanged.stdout).contains("No file would change."));
    assert_eq!(
        changed.status.code(),
        Some(4),
        "{}",
        describe_output(&changed)
    );
    let runbook = String::from_utf8_lossy(&changed.stdout);
    assert!(
        runbook.contains("reissue  cert:apiserver: SANs added: IP:192.0.2.99"),
        "{runbook}"
    );
    assert!(
        runbook.contains(
            "copy pki/apiserver.crt -> control-plane hosts:/etc/kubernetes/pki/apiserver.crt"
        ),
        "{runbook}"
    );
    assert!(
        runbook.contains("restart kube-apiserver on control-plane hosts"),
        "{runbook}"
    );
    assert_eq!(snapshot(&out), before);
}

#[test]
fn plan_json_lists_actions() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    build(&out, &[]);
    let output = pkic_command()
        .args(["plan", "--format", "json", "-m"])
        .arg(small_manifest_path())
        .arg("-o")
        .arg(&out)
        .args(["--set", "SECOND_NODE=node-c"])
        .output()
        .unwrap();

    assert_eq!(
        output.status.code(),
        Some(4),
        "{}",
        describe_output(&output)
    );
    let plan: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let objects = plan["objects"].as_array().unwrap();
    let created: Vec<&str> = objects
        .iter()
        .filter(|o| o["action"] == "create")
        .map(|o| o["object"].as_str().unwrap())
        .collect();
    assert_eq!(created, vec!["cert:node-c/kubelet-client"]);
    let removed: Vec<&str> = plan["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|f| f["change"] == "remove")
        .map(|f| f["host"].as_str().unwrap())
        .collect();
    assert!(removed.iter().all(|h| *h == "node-b"), "{removed:?}");
    assert_eq!(removed.len(), 3);
    let restarts = plan["restarts"].as_array().unwrap();
    assert!(restarts.is_empty(), "{restarts:?}");
}

/// Checks that every certificate and key file under `out` is complete.
fn assert_no_partial_file(out: &Path, context: &str) {
    assert_complete_pem_files(out, context);
    for (path, bytes) in snapshot(out) {
        let text = String::from_utf8_lossy(&bytes);
        if path.ends_with(".conf") {
            assert!(
                text.contains("current-context:"),
                "{context}: {path} is cut short"
            );
        }
    }
}

/// Runs one build that aborts after `operations` file operations, then a normal build,
/// and checks the tree converged: complete files, nothing left to do, CAs kept.
fn kill_and_recover(
    out: &Path,
    operations: usize,
    vars: &[(&str, &str)],
    cas: &BTreeMap<String, Vec<u8>>,
) -> bool {
    let limit = operations.to_string();
    let killed = pkic(out, "build", vars, &[("PKIC_TEST_ABORT_AFTER", &limit)]);
    let context = format!("abort after {operations} operations");
    assert_no_partial_file(out, &context);
    let recovered = pkic(out, "build", vars, &[]);
    assert!(
        recovered.status.success(),
        "{context}: {}",
        describe_output(&recovered)
    );
    let plan = pkic(out, "plan", vars, &[]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "{context}: {}",
        describe_output(&plan)
    );
    let after = snapshot(out);
    for (path, bytes) in cas {
        assert_eq!(&after[path], bytes, "{context}: CA file {path} changed");
    }
    let staging = fs::read_dir(out)
        .unwrap()
        .flatten()
        .any(|e| e.file_name().to_string_lossy().starts_with(".pkic-staging"));
    assert!(!staging, "{context}: staging directory left behind");
    killed.status.success()
}

#[test]
fn killed_first_build_converges() {
    for operations in 1.. {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let finished = kill_and_recover(&out, operations, &[], &BTreeMap::new());
        if finished {
            assert!(
                operations > 30,
                "the build made only {operations} file operations"
            );
            break;
        }
    }
}

#[test]
fn killed_rebuild_converges_and_keeps_cas() {
    let base = tempfile::tempdir().unwrap();
    let base_out = base.path().join("out");
    build(&base_out, &[]);
    let cas: BTreeMap<String, Vec<u8>> = snapshot(&base_out)
        .into_iter()
        .filter(|(p, _)| p.contains("-ca."))
        .collect();
    assert_eq!(cas.len(), 4);
    let vars = [("EXTRA_SAN", "192.0.2.99"), ("SECOND_NODE", "node-c")];
    for operations in 1.. {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        copy_tree(&base_out, &out);
        if kill_and_recover(&out, operations, &vars, &cas) {
            assert!(
                operations > 5,
                "the rebuild made only {operations} file operations"
            );
            break;
        }
    }
}

#[test]
fn sigkilled_builds_converge() {
    for delay_ms in [0, 5, 10, 20, 30, 45, 60, 90] {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let mut child = pkic_command()
            .arg("build")
            .arg("-m")
            .arg(small_manifest_path())
            .arg("-o")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        kill_and_recover(&out, usize::MAX, &[], &BTreeMap::new());
    }
}
