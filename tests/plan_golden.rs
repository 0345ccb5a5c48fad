//! Golden tests of `pkic plan`'s runbook for the changes operators make most: a SAN
//! change, a node added and a node removed. The expected runbooks live in
//! `tests/fixtures/plan/`; after an intended change, rerun with `PKIC_UPDATE_PLAN=1`
//! and review `git diff tests/fixtures/plan`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn pkic(args: &[&str], vars: &[&str]) -> std::process::Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pkic"));
    command
        .args(args)
        .arg("-m")
        .arg(repo().join("tests/fixtures/small-ecdsa.toml"));
    for var in vars {
        command.arg("--set").arg(var);
    }
    command.env_remove("EXTRA_SAN").env_remove("SECOND_NODE");
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
    let text = fs::read_to_string(repo().join("tests/fixtures/small-ecdsa.toml")).unwrap();
    let added = text.replace(
        "[per-node.cert.kubelet-client]",
        "[[node]]\nname = \"node-z\"\nips = [\"192.0.2.29\"]\n\n[per-node.cert.kubelet-client]",
    );
    fs::write(&manifest, added).unwrap();
    let out = dir.path().join("out");
    let run = |command: &str, manifest: &Path| {
        Command::new(env!("CARGO_BIN_EXE_pkic"))
            .args([
                command,
                "-m",
                manifest.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ])
            .env_remove("EXTRA_SAN")
            .env_remove("SECOND_NODE")
            .output()
            .unwrap()
    };
    let built = run("build", &repo().join("tests/fixtures/small-ecdsa.toml"));
    assert!(built.status.success());

    let plan = run("plan", &manifest);

    assert_eq!(plan.status.code(), Some(4));
    let golden = repo().join("tests/fixtures/plan/node-added.txt");
    compare(&golden, &String::from_utf8(plan.stdout).unwrap());
}
