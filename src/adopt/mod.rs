//! Adopt stage, `pkic init --from DIR`: reads an existing PKI tree, writes a manifest
//! that describes it, and copies its files into an output directory, so that the next
//! `pkic build` of that manifest keeps every key and certificate and changes no file.
//!
//! `scan` reads the tree with `pkic check`'s reader and drafts one manifest object per
//! certificate, key pair and kubeconfig. The files are then copied, and `prove` runs the
//! build's stages on the copy, demoting any object whose build would change a byte.
//! A failed init leaves no manifest, because the manifest is moved into place last. It
//! removes the output directory when it created it, and empties it when it found it empty.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::Reporter;
use crate::emit::{self, OUTPUT_LIST};
use crate::pipeline::Failure;

mod draft;
mod prove;
mod scan;

use draft::Draft;

/// Options of `pkic init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The tree to adopt.
    pub from: PathBuf,
    /// The manifest to write; it must not exist.
    pub manifest: PathBuf,
    /// The output directory to copy the files into; it must be missing or empty.
    pub out: PathBuf,
}

/// Runs `pkic init`.
pub fn run(options: &InitOptions, reporter: &Reporter) -> Result<(), Failure> {
    check_targets(options)?;
    check_no_rotation(&options.from)?;
    let mut draft = scan::scan(&options.from).map_err(Failure::Input)?;
    let created_out = !options.out.exists();
    let temporary = temporary_manifest(&options.manifest);
    let result = adopt(options, &mut draft, &temporary);
    let _ = fs::remove_file(&temporary);
    if let Err(failure) = result {
        clean_out(&options.out, created_out);
        return Err(failure);
    }
    for line in draft.left_out_lines() {
        reporter.warn(&format!("[init] not adopted: {line}"));
    }
    let count = |n: usize, what: &str| format!("{n} {what}");
    reporter.summary(&format!(
        "[init] wrote {} and copied {} files into {}: {}, {}, {}, {}",
        options.manifest.display(),
        draft
            .copies()
            .iter()
            .filter(|(_, declared)| *declared)
            .count(),
        options.out.display(),
        count(
            draft.cas.iter().filter(|c| c.left_out.is_none()).count(),
            "CAs"
        ),
        count(
            draft
                .leaves
                .iter()
                .filter(|l| l.left_out.is_none())
                .map(|l| l.instances.len())
                .sum(),
            "certificates"
        ),
        count(
            draft
                .accounts
                .iter()
                .filter(|a| a.left_out.is_none())
                .count(),
            "service-account keys"
        ),
        count(
            draft
                .kubeconfigs
                .iter()
                .filter(|k| k.left_out.is_none())
                .map(|k| k.instances.len())
                .sum(),
            "kubeconfigs"
        ),
    ));
    Ok(())
}

/// Copies the files, proves the manifest and moves it into place.
fn adopt(options: &InitOptions, draft: &mut Draft, temporary: &Path) -> Result<(), Failure> {
    emit::create_private_dir(&options.out).map_err(|e| Failure::Io(e.to_string()))?;
    for (copy, _) in draft.copies() {
        copy_file(
            &options.from.join(&copy.source),
            &options.out.join(&copy.out),
            copy.secret,
        )?;
    }
    let manifest_name = options.manifest.display().to_string();
    let out_name = options.out.display().to_string();
    let files = prove::prove(draft, temporary, &options.out, |draft| {
        draft.render(&manifest_name, &out_name)
    })?;
    if !draft.copies().iter().any(|(_, declared)| *declared) {
        let reasons: Vec<String> = draft
            .left_out_lines()
            .into_iter()
            .map(|line| format!("\n  {line}"))
            .collect();
        return Err(Failure::Input(format!(
            "pkic init: nothing in {} can be adopted without a change{}",
            options.from.display(),
            reasons.concat()
        )));
    }
    for (copy, declared) in draft.copies() {
        if !declared {
            let path = options.out.join(&copy.out);
            fs::remove_file(&path)
                .map_err(|e| Failure::Io(format!("cannot remove {}: {e}", path.display())))?;
            remove_empty_parents(&options.out, &path);
        }
    }
    emit::write_state(&options.out, OUTPUT_LIST, &emit::output_list(&files))
        .map_err(|e| Failure::Io(e.to_string()))?;
    if options.manifest.exists() {
        return Err(manifest_exists(&options.manifest));
    }
    fs::rename(temporary, &options.manifest).map_err(|e| {
        Failure::Io(format!(
            "cannot move the manifest into place at {}: {e}",
            options.manifest.display()
        ))
    })
}

/// Rejects a pkic output in the middle of a CA or service-account key rotation, whose
/// staged keys and trust files a manifest of one CA per file cannot describe.
fn check_no_rotation(from: &Path) -> Result<(), Failure> {
    // Backups (`.backup/`) keep the rotation files of finished rotations.
    let staged = walkdir::WalkDir::new(from)
        .into_iter()
        .filter_entry(|e| e.depth() == 0 || !e.file_name().to_string_lossy().starts_with('.'))
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|name| name.contains(".new.") || name.contains(".trust."));
    match staged {
        Some(name) => Err(Failure::Input(format!(
            "pkic init: {} is in the middle of a rotation ({name}); finish it with stage \
             drop-old, or abandon it, before adopting the tree",
            from.display()
        ))),
        None => Ok(()),
    }
}

/// Rejects an existing manifest, an output path that is a file or a non-empty
/// directory, and a source that is missing or not a directory.
fn check_targets(options: &InitOptions) -> Result<(), Failure> {
    if !options.from.is_dir() {
        let problem = if options.from.exists() {
            "is not a directory"
        } else {
            "does not exist"
        };
        return Err(Failure::Input(format!(
            "--from {}: the directory {problem}; give the PKI directory to adopt, such as \
             /etc/kubernetes or /etc/kubernetes/pki",
            options.from.display()
        )));
    }
    if options.manifest.exists() {
        return Err(manifest_exists(&options.manifest));
    }
    if options.out.exists() {
        let empty = fs::read_dir(&options.out)
            .map(|mut entries| entries.next().is_none())
            .unwrap_or(false);
        if !options.out.is_dir() || !empty {
            return Err(Failure::Input(format!(
                "output directory {} is not empty; pkic init copies into a new or empty \
                 directory only: remove its contents, or name another directory with -o DIR",
                options.out.display()
            )));
        }
    }
    Ok(())
}

fn manifest_exists(path: &Path) -> Failure {
    Failure::Input(format!(
        "manifest {} already exists; pkic init never overwrites a manifest: move it away, \
         or name another file with -m FILE",
        path.display()
    ))
}

/// Returns a hidden file beside the manifest, where each draft is written and proven.
fn temporary_manifest(manifest: &Path) -> PathBuf {
    let name = manifest
        .file_name()
        .map(|n| n.to_string_lossy().to_string())
        .unwrap_or_else(|| "pki.toml".into());
    manifest.with_file_name(format!(".{name}.pkic-init-{}", std::process::id()))
}

/// Copies one file with mode 0600 for secrets and 0644 otherwise, the modes a build
/// gives them, creating missing directories with mode 0700.
fn copy_file(from: &Path, to: &Path, secret: bool) -> Result<(), Failure> {
    let bytes =
        fs::read(from).map_err(|e| Failure::Io(format!("cannot read {}: {e}", from.display())))?;
    if let Some(parent) = to.parent() {
        emit::create_private_dir(parent).map_err(|e| Failure::Io(e.to_string()))?;
    }
    let mode = if secret { 0o600 } else { 0o644 };
    let write = || -> std::io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(to)?;
        file.write_all(&bytes)?;
        file.sync_all()?;
        // The umask may have cleared bits of the requested mode.
        fs::set_permissions(to, fs::Permissions::from_mode(mode))
    };
    write().map_err(|e| Failure::Io(format!("cannot write {}: {e}", to.display())))
}

fn remove_empty_parents(out: &Path, path: &Path) {
    let mut current = path.parent();
    while let Some(directory) = current {
        if directory == out || fs::remove_dir(directory).is_err() {
            return;
        }
        current = directory.parent();
    }
}

/// Removes what init wrote into the output directory: the directory itself when init
/// created it, else its contents, since init accepts only an empty one.
fn clean_out(out: &Path, created: bool) {
    if created {
        let _ = fs::remove_dir_all(out);
        return;
    }
    let Ok(entries) = fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let _ = if path.is_dir() {
            fs::remove_dir_all(&path)
        } else {
            fs::remove_file(&path)
        };
    }
}
