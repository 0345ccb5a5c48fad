//! Golden tests of `pkic plan`'s runbook for the changes operators make most: a SAN
//! change, a node added, a node removed, and each stage of a CA rotation and of a
//! service-account key rotation. The expected runbooks live in
//! `tests/fixtures/plan/`; after an intended change, rerun with `PKIC_UPDATE_PLAN=1`
//! and review `git diff tests/fixtures/plan`.

mod support;

use std::fs;
use std::path::{Path, PathBuf};

use support::tree::{pkic_command, run_pkic, small_manifest, small_manifest_path};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pkic(args: &[&str], vars: &[&str]) -> std::process::Output {
    let mut command = pkic_command();
    command.args(args).arg("-m").arg(small_manifest_path());
    for var in vars {
        command.arg("--set").arg(var);
    }
    command.output().expect("pkic runs")
}

/// Builds the base tree, then compares the plan for `vars` with a golden runbook.
fn check_plan(name: &str, vars: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let out_arg = out.to_str().unwrap();
    let built = pkic(&["build", "-o", out_arg], &[]);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );

    let plan = pkic(&["plan", "-o", out_arg], vars);

    assert_eq!(
        plan.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let runbook = String::from_utf8(plan.stdout).unwrap();
    let golden = repo()
        .join("tests/fixtures/plan")
        .join(format!("{name}.txt"));
    compare(&golden, &runbook);
}

fn compare(golden: &Path, actual: &str) {
    if std::env::var_os("PKIC_UPDATE_PLAN").is_some() {
        fs::create_dir_all(golden.parent().unwrap()).unwrap();
        fs::write(golden, actual).unwrap();
        return;
    }
    let expected = fs::read_to_string(golden)
        .unwrap_or_else(|e| panic!("{}: {e}; run with PKIC_UPDATE_PLAN=1", golden.display()));
    assert_eq!(
        actual,
        expected,
        "runbook differs from {}",
        golden.display()
    );
}

#[test]
fn plan_for_san_change() {
    check_plan("san-change", &["EXTRA_SAN=192.0.2.99"]);
}

#[test]
fn plan_for_node_replaced() {
    check_plan("node-replaced", &["SECOND_NODE=node-c"]);
}

#[test]
fn plan_for_node_added() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = dir.path().join("pki.toml");
    let added = small_manifest().replace(
        "[per-node.cert.kubelet-client]",
        "[[node]]\nname = \"node-z\"\nips = [\"192.0.2.29\"]\n\n[per-node.cert.kubelet-client]",
    );
    fs::write(&manifest, added).unwrap();
    let out = dir.path().join("out");
    let run = |command: &str, manifest: &Path| run_pkic(command, manifest, &out, &[], &[]);
    let built = run("build", &small_manifest_path());
    assert!(built.status.success());

    let plan = run("plan", &manifest);

    assert_eq!(plan.status.code(), Some(4));
    let golden = repo().join("tests/fixtures/plan/node-added.txt");
    compare(&golden, &String::from_utf8(plan.stdout).unwrap());
}

/// Runs pkic with `manifest` (text) on the output directory `out`.
fn run_text(command: &str, dir: &Path, manifest: &str) -> std::process::Output {
    let path = dir.join("pki.toml");
    fs::write(&path, manifest).unwrap();
    run_pkic(command, &path, &dir.join("out"), &[], &[])
}

/// Replaces every RFC 3339 time (`2026-12-04T20:00:00Z`) with `<time>`.
fn without_times(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_inclusive([' ', '\n']) {
        let trimmed = word.trim_end_matches([' ', '\n', ',', '.', '"']);
        let bytes = trimmed.as_bytes();
        let is_time =
            bytes.len() >= 20 && bytes[4] == b'-' && bytes[10] == b'T' && trimmed.ends_with('Z');
        if is_time {
            out.push_str(&word.replacen(trimmed, "<time>", 1));
        } else {
            out.push_str(word);
        }
    }
    out
}

/// Builds the small manifest, then each stage of a rotation of `section` before
/// `stage`, and compares the plan of `stage` with a golden runbook.
fn check_rotation_plan(name: &str, section: &str, stage: &str) {
    let dir = tempfile::tempdir().unwrap();
    let base = small_manifest();
    let stages = ["add-new", "use-new", "drop-old"];
    let manifest = |stage: &str| support::pkic_build::with_rotation(&base, section, stage, "1s");
    let built = run_text("build", dir.path(), &base);
    assert!(
        built.status.success(),
        "{}",
        String::from_utf8_lossy(&built.stderr)
    );
    for earlier in stages.iter().take_while(|s| **s != stage) {
        let built = run_text("build", dir.path(), &manifest(earlier));
        assert!(
            built.status.success(),
            "{}",
            String::from_utf8_lossy(&built.stderr)
        );
    }
    if stage == "drop-old" {
        // The overlap of one second counts from the use-new build's recorded second.
        std::thread::sleep(std::time::Duration::from_millis(2100));
    }

    let plan = run_text("plan", dir.path(), &manifest(stage));

    assert_eq!(
        plan.status.code(),
        Some(4),
        "{}",
        String::from_utf8_lossy(&plan.stderr)
    );
    let runbook = without_times(&String::from_utf8(plan.stdout).unwrap());
    compare(
        &repo().join(format!("tests/fixtures/plan/{name}.txt")),
        &runbook,
    );
}

#[test]
fn plan_for_ca_rotation_add_new() {
    check_rotation_plan("ca-rotation-add-new", "ca.server-ca", "add-new");
}

#[test]
fn plan_for_ca_rotation_use_new() {
    check_rotation_plan("ca-rotation-use-new", "ca.server-ca", "use-new");
}

#[test]
fn plan_for_ca_rotation_drop_old() {
    check_rotation_plan("ca-rotation-drop-old", "ca.server-ca", "drop-old");
}

#[test]
fn plan_for_service_account_rotation_add_new() {
    check_rotation_plan("sa-rotation-add-new", "service-account.sa", "add-new");
}

#[test]
fn plan_for_service_account_rotation_use_new() {
    check_rotation_plan("sa-rotation-use-new", "service-account.sa", "use-new");
}

#[test]
fn plan_for_service_account_rotation_drop_old() {
    check_rotation_plan("sa-rotation-drop-old", "service-account.sa", "drop-old");
}
