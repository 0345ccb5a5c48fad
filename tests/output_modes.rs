//! What `pkic` prints under `-q` and `-v`, and the progress bar of a large build, which
//! appears only when stderr is a terminal.

use std::fmt::Write as _;
use std::fs;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const MANIFEST: &str = include_str!("fixtures/small-ecdsa.toml");

fn pkic(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_pkic"))
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("failed to run pkic")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Writes the small ECDSA manifest with `extra_nodes` more nodes. Each node adds a
/// kubelet client certificate and a kubeconfig, two objects.
fn write_manifest(dir: &Path, extra_nodes: usize) {
    let mut manifest = MANIFEST.to_string();
    for index in 0..extra_nodes {
        let _ = write!(
            manifest,
            "\n[[node]]\nname = \"extra-{index}\"\nips = [\"198.51.{}.{}\"]\n",
            index / 250,
            index % 250 + 1
        );
    }
    fs::write(dir.join("pki.toml"), manifest).expect("failed to write the manifest");
}

#[test]
fn quiet_build_prints_nothing() {
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), 0);
    let output = pkic(dir.path(), &["-q", "build"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout), "", "stdout under -q");
    assert_eq!(text(&output.stderr), "", "stderr under -q");
    assert!(dir.path().join("out/pki/apiserver.crt").exists());
}

#[test]
fn normal_build_lists_files_on_stdout() {
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), 0);
    let output = pkic(dir.path(), &["build"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(
        stdout.lines().any(|line| line == "pki/apiserver.crt"),
        "{stdout}"
    );
}

#[test]
fn plan_rejects_verbose() {
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), 0);
    let output = pkic(dir.path(), &["plan", "-v"]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("`pkic plan` has no `-v`"), "{stderr}");
    assert_eq!(text(&output.stdout), "");
}

#[test]
fn graph_verbose_lists_dependencies() {
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), 0);
    let plain = pkic(dir.path(), &["graph"]);
    assert!(plain.status.success(), "{}", text(&plain.stderr));
    let plain = text(&plain.stdout);
    assert!(
        plain.lines().any(|line| line == "cert:apiserver"),
        "{plain}"
    );
    assert!(!plain.contains("<-"), "{plain}");

    let verbose = pkic(dir.path(), &["graph", "-v"]);
    assert!(verbose.status.success(), "{}", text(&verbose.stderr));
    let verbose = text(&verbose.stdout);
    let lines: Vec<&str> = verbose.lines().collect();
    assert!(lines.contains(&"ca:server-ca"), "{verbose}");
    assert!(
        lines.contains(&"cert:apiserver <- ca:server-ca"),
        "{verbose}"
    );
    assert!(
        lines.contains(&"bundle:client-bundle <- ca:client-ca, ca:server-ca"),
        "{verbose}"
    );
    assert_eq!(lines.len(), plain.lines().count(), "one line per object");
}

/// Runs `pkic ARGS` with stdout in `stdout.txt` and stderr on a pseudo-terminal that
/// `script` from util-linux provides; returns what the terminal received.
fn pkic_on_terminal(dir: &Path, args: &str) -> String {
    let command = format!(
        "'{}' {args} >stdout.txt",
        env!("CARGO_BIN_EXE_pkic").replace('\'', r"'\''")
    );
    let output = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| {
            panic!("cannot run `script` (util-linux), which this test needs: {error}")
        });
    let terminal = text(&output.stdout);
    assert!(
        output.status.success(),
        "pkic {args} failed on a terminal: {terminal}{}",
        text(&output.stderr)
    );
    terminal
}

#[test]
fn progress_bar_on_terminal_only() {
    let dir = tempfile::tempdir().unwrap();
    // The manifest has 12 objects and each node adds 2: 214, above the threshold of 200.
    write_manifest(dir.path(), 101);

    let terminal = pkic_on_terminal(dir.path(), "build -o out-terminal");
    assert!(terminal.contains("issuing"), "{terminal}");
    assert!(
        terminal.contains("reading existing keys and certificates"),
        "{terminal}"
    );
    assert!(!terminal.contains("PRIVATE KEY"), "{terminal}");

    let quiet = pkic_on_terminal(dir.path(), "-q build -o out-quiet");
    assert_eq!(quiet, "", "a -q build on a terminal prints nothing");

    let piped = pkic(dir.path(), &["build", "-o", "out-piped"]);
    assert!(piped.status.success(), "{}", text(&piped.stderr));
    let stderr = text(&piped.stderr);
    assert!(!stderr.contains("issuing"), "{stderr}");
    assert!(
        !stderr.contains('\u{1b}'),
        "no escape sequence off a terminal"
    );
}

#[test]
fn small_build_on_terminal_has_no_bar() {
    let dir = tempfile::tempdir().unwrap();
    write_manifest(dir.path(), 0);
    let terminal = pkic_on_terminal(dir.path(), "build");
    assert!(terminal.contains("[build] wrote"), "{terminal}");
    assert!(!terminal.contains("issuing"), "{terminal}");
}
