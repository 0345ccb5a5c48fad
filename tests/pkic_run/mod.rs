//! Runs the pkic binary on a manifest in a temporary directory and reads what it built.
//!
//! Every test crate that declares `mod pkic_run;` compiles its own copy and uses only
//! part of it, so unused items are expected.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use tempfile::TempDir;

/// A temporary directory holding `pki.toml`, with the output directory `out` beside it.
pub struct Workspace {
    directory: TempDir,
}

/// Exit code and output of one pkic run.
#[derive(Debug)]
pub struct Outcome {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Workspace {
    /// Creates a workspace whose `pki.toml` contains `manifest`.
    pub fn new(manifest: &str) -> Self {
        let directory = tempfile::tempdir().expect("failed to create a temporary directory");
        fs::write(directory.path().join("pki.toml"), manifest).expect("failed to write pki.toml");
        Workspace { directory }
    }

    /// Creates a workspace from a manifest under `tests/fixtures/`.
    pub fn from_fixture(relative: &str) -> Self {
        Workspace::new(&fixture(relative))
    }

    pub fn path(&self) -> &Path {
        self.directory.path()
    }

    pub fn manifest(&self) -> PathBuf {
        self.path().join("pki.toml")
    }

    pub fn out(&self) -> PathBuf {
        self.path().join("out")
    }

    /// Runs `pkic build -m pki.toml -o out` with `extra` arguments after `build`.
    pub fn build(&self, extra: &[&str]) -> Outcome {
        self.build_into(&self.out(), extra)
    }

    /// Runs `pkic build` into another output directory.
    pub fn build_into(&self, out: &Path, extra: &[&str]) -> Outcome {
        let mut args: Vec<String> = vec!["build".into()];
        args.extend(extra.iter().map(|a| a.to_string()));
        args.push("-m".into());
        args.push(self.manifest().display().to_string());
        args.push("-o".into());
        args.push(out.display().to_string());
        run(&args)
    }

    /// Runs a build that must succeed, and returns its output.
    pub fn build_ok(&self) -> Outcome {
        let outcome = self.build(&[]);
        assert_eq!(outcome.code, 0, "pkic build failed:\n{}", outcome.stderr);
        outcome
    }

    /// Reads a built file as text.
    pub fn read(&self, relative: &str) -> String {
        let path = self.out().join(relative);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
    }
}

/// Runs the pkic binary with `args`, without the caller's environment variables that a
/// manifest might expand.
pub fn run(args: &[String]) -> Outcome {
    let output = Command::new(env!("CARGO_BIN_EXE_pkic"))
        .args(args)
        .output()
        .expect("failed to start pkic");
    Outcome {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// Reads a file under `tests/fixtures/`.
pub fn fixture(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(relative);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Returns every file under `dir` by relative path, with its bytes.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1) {
        let entry = entry.expect("failed to walk the output directory");
        let relative = entry.path().strip_prefix(dir).unwrap().to_path_buf();
        let bytes = if entry.file_type().is_file() {
            fs::read(entry.path()).expect("failed to read an output file")
        } else {
            Vec::new()
        };
        files.insert(relative, bytes);
    }
    files
}

/// Asserts that `text` contains `needle`, showing the whole text when it does not.
#[track_caller]
pub fn assert_contains(text: &str, needle: &str) {
    assert!(text.contains(needle), "expected {needle:?} in:\n{text}");
}

/// Asserts that `text` does not contain `needle`.
#[track_caller]
pub fn assert_lacks(text: &str, needle: &str) {
    assert!(
        !text.contains(needle),
        "did not expect {needle:?} in:\n{text}"
    );
}

/// Returns `file:line:column` of the first occurrence of `needle` in `manifest`, as pkic
/// prints it for a manifest named `pki.toml`.
pub fn location(manifest: &str, needle: &str) -> String {
    let offset = manifest
        .find(needle)
        .unwrap_or_else(|| panic!("{needle:?} is not in the manifest"));
    location_at(manifest, offset)
}

/// Returns `file:line:column` of a byte offset in `manifest`, as pkic prints it.
pub fn location_at(manifest: &str, offset: usize) -> String {
    let before = &manifest[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = manifest[line_start..offset].chars().count() + 1;
    format!("pki.toml:{line}:{column}")
}
