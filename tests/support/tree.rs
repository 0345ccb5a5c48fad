//! Runs the pkic binary and openssl for tests that build output trees, and reads,
//! copies and checks those trees.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use crate::support::peers::{describe_output, peer_command, run_with_timeout};

/// Variables that `tests/fixtures/small-ecdsa.toml` expands. Tests pass them with
/// `--set` or not at all, so a value in the environment of `cargo test` must not reach
/// pkic.
const MANIFEST_VARIABLES: [&str; 2] = ["EXTRA_SAN", "SECOND_NODE"];

/// Returns the path of the small ECDSA manifest that most build tests start from.
pub fn small_manifest_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/small-ecdsa.toml")
}

/// Reads the small ECDSA manifest.
pub fn small_manifest() -> String {
    let path = small_manifest_path();
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Creates a command for the pkic binary without the manifest variables of the
/// environment.
pub fn pkic_command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_pkic"));
    for variable in MANIFEST_VARIABLES {
        command.env_remove(variable);
    }
    command
}

/// Runs `pkic COMMAND -m MANIFEST -o OUT`, with `--set NAME=VALUE` for each of `vars`
/// and the environment variables `env`.
pub fn run_pkic(
    command: &str,
    manifest: &Path,
    out: &Path,
    vars: &[(&str, &str)],
    env: &[(&str, &str)],
) -> Output {
    let mut pkic = pkic_command();
    pkic.arg(command).arg("-m").arg(manifest).arg("-o").arg(out);
    for (name, value) in vars {
        pkic.arg("--set").arg(format!("{name}={value}"));
    }
    for (name, value) in env {
        pkic.env(name, value);
    }
    pkic.output().expect("failed to run pkic")
}

/// Returns the stderr of a finished process as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Runs openssl in `dir` and returns its output. Panics when openssl is missing or fails.
pub fn openssl_in(dir: &Path, args: &[&str]) -> Output {
    let mut command = peer_command("openssl");
    command.args(args).current_dir(dir);
    let output = run_with_timeout(&mut command, Duration::from_secs(60));
    assert!(
        output.status.success(),
        "openssl {} failed: {}",
        args.join(" "),
        describe_output(&output)
    );
    output
}

/// Returns the path of every file below `dir`.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.expect("failed to walk the directory"))
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .collect()
}

/// Returns every file under `out` except backups and staging, as relative path to bytes.
pub fn snapshot(out: &Path) -> BTreeMap<String, Vec<u8>> {
    walkdir::WalkDir::new(out)
        .into_iter()
        .map(|e| e.expect("failed to walk the output directory"))
        .filter(|e| e.file_type().is_file())
        .map(|e| e.path().strip_prefix(out).unwrap().display().to_string())
        .filter(|p| !p.starts_with(".backup") && !p.starts_with(".pkic-staging"))
        .map(|p| {
            let bytes = fs::read(out.join(&p)).unwrap();
            (p, bytes)
        })
        .collect()
}

/// Returns every file under `dir`, backups and staging included, as relative path to
/// bytes and permission bits.
pub fn snapshot_with_modes(dir: &Path) -> BTreeMap<String, (Vec<u8>, u32)> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.expect("failed to walk the directory"))
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let relative = e.path().strip_prefix(dir).unwrap().display().to_string();
            (relative, (fs::read(e.path()).unwrap(), mode(e.path())))
        })
        .collect()
}

/// Returns the permission bits of a file.
pub fn mode(path: &Path) -> u32 {
    fs::metadata(path)
        .unwrap_or_else(|e| panic!("cannot stat {}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// Copies the directory `from` with everything below it to `to`.
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.expect("failed to walk a tree");
        let target = to.join(entry.path().strip_prefix(from).unwrap());
        if entry.file_type().is_dir() {
            fs::create_dir_all(&target).expect("failed to create a directory");
        } else {
            fs::copy(entry.path(), &target).expect("failed to copy a file");
        }
    }
}

/// Asserts that every certificate, key and public key file under `out` (backups and
/// staging aside) contains at least one complete PEM block.
pub fn assert_complete_pem_files(out: &Path, context: &str) {
    for (path, bytes) in snapshot(out) {
        if path.ends_with(".crt") || path.ends_with(".key") || path.ends_with(".pub") {
            let parsed = pem::parse_many(&bytes).unwrap_or_default();
            assert!(!parsed.is_empty(), "{context}: {path} is not complete PEM");
        }
    }
}
