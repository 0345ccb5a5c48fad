//! Emit stage: writes the output tree.
//!
//! Every file is first written into a staging directory inside the output directory,
//! then renamed into place, so a failed build leaves no half-written file and, unless
//! a rename itself fails, the tree as it was. Private keys get mode 0600, every other
//! file 0644, and directories that pkic creates 0700.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use thiserror::Error;

#[derive(Debug, Error)]
#[error("{action} {path}: {source}")]
pub struct EmitError {
    pub action: &'static str,
    pub path: PathBuf,
    pub source: io::Error,
}

/// One file to write.
#[derive(Debug, Clone)]
pub struct OutFile {
    pub relative: PathBuf,
    pub contents: Vec<u8>,
    /// True for private keys and anything that embeds one: mode 0600.
    pub secret: bool,
}

impl OutFile {
    pub fn mode(&self) -> u32 {
        if self.secret { 0o600 } else { 0o644 }
    }
}

fn error<'p>(action: &'static str, path: &'p Path) -> impl FnOnce(io::Error) -> EmitError + 'p {
    move |source| EmitError {
        action,
        path: path.to_path_buf(),
        source,
    }
}

/// Creates `dir` and its missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), EmitError> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(error("creating directory", dir))
}

/// Writes `files` under `out` through a staging directory, then renames each into place.
pub fn write_all(out: &Path, files: &[OutFile]) -> Result<(), EmitError> {
    create_private_dir(out)?;
    let staging = out.join(format!(".pkic-staging-{}", std::process::id()));
    let result = stage(&staging, files).and_then(|()| commit(out, &staging, files));
    let _ = fs::remove_dir_all(&staging);
    result
}

fn stage(staging: &Path, files: &[OutFile]) -> Result<(), EmitError> {
    for file in files {
        let path = staging.join(&file.relative);
        if let Some(parent) = path.parent() {
            create_private_dir(parent)?;
        }
        let mut handle = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode())
            .open(&path)
            .map_err(error("creating", &path))?;
        handle
            .write_all(&file.contents)
            .map_err(error("writing", &path))?;
        handle.sync_all().map_err(error("syncing", &path))?;
        // The umask may have cleared bits of the requested mode.
        fs::set_permissions(&path, fs::Permissions::from_mode(file.mode()))
            .map_err(error("setting the mode of", &path))?;
    }
    Ok(())
}

fn commit(out: &Path, staging: &Path, files: &[OutFile]) -> Result<(), EmitError> {
    for file in files {
        let target = out.join(&file.relative);
        if let Some(parent) = target.parent() {
            create_private_dir(parent)?;
        }
        fs::rename(staging.join(&file.relative), &target)
            .map_err(error("renaming into place", &target))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_written_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let files = [
            OutFile {
                relative: "pki/a.key".into(),
                contents: b"k".to_vec(),
                secret: true,
            },
            OutFile {
                relative: "pki/a.crt".into(),
                contents: b"c".to_vec(),
                secret: false,
            },
        ];
        write_all(dir.path(), &files).unwrap();
        let mode = |p: &str| {
            fs::metadata(dir.path().join(p))
                .unwrap()
                .permissions()
                .mode()
                & 0o777
        };
        assert_eq!(mode("pki/a.key"), 0o600);
        assert_eq!(mode("pki/a.crt"), 0o644);
        assert_eq!(mode("pki"), 0o700);
        let leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(leftovers, vec![std::ffi::OsString::from("pki")]);
    }
}
