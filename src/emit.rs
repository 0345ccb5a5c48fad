//! Emit stage: writes the output tree.
//!
//! Only files whose bytes or mode differ from what is on disk are written. Each is
//! first written into one flat staging directory inside the output directory, under a
//! number instead of its path, then renamed into place in the order given (keys before
//! their certificates), so a failed or killed build leaves no half-written file and
//! the directories of the tree are created once, not also inside the staging directory. A file about to be replaced is first
//! hard-linked into `.backup/<UTC time>/` under the output directory. Private keys get
//! mode 0600, every other file 0644, and directories that pkic creates 0700.
//!
//! For crash tests, the environment variable `PKIC_TEST_ABORT_AFTER=N` makes the process
//! abort, with no cleanup, right after its Nth file operation (a write, link or rename).

use std::collections::{HashMap, HashSet};
use std::fs::{self, DirBuilder, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use rayon::prelude::*;
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

/// Counts file operations and aborts the process at the one `PKIC_TEST_ABORT_AFTER` names.
fn fault_point() {
    static COUNT: AtomicUsize = AtomicUsize::new(0);
    static LIMIT: OnceLock<Option<usize>> = OnceLock::new();
    let limit = LIMIT.get_or_init(|| {
        std::env::var("PKIC_TEST_ABORT_AFTER")
            .ok()
            .and_then(|v| v.parse().ok())
    });
    let count = COUNT.fetch_add(1, Ordering::SeqCst) + 1;
    if *limit == Some(count) {
        std::process::abort();
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

/// Creates `dir` and its missing parents with mode 0700, skipping those in `existing`,
/// and adds each to `existing`, so that a write of many files calls mkdir once per
/// directory.
fn create_dirs(dir: &Path, existing: &mut HashSet<PathBuf>) -> Result<(), EmitError> {
    if existing.contains(dir) {
        return Ok(());
    }
    if let Some(parent) = dir.parent()
        && !parent.as_os_str().is_empty()
    {
        create_dirs(parent, existing)?;
    }
    match DirBuilder::new().mode(0o700).create(dir) {
        Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
            return Err(error("creating directory", dir)(e));
        }
        _ => {}
    }
    existing.insert(dir.to_path_buf());
    Ok(())
}

/// Changes made by one write.
#[derive(Debug, Default)]
pub struct Written {
    /// Files created or replaced, in write order.
    pub changed: Vec<PathBuf>,
    /// Files of an earlier build that this build no longer makes, moved to the backup.
    pub removed: Vec<PathBuf>,
    /// Files whose bytes and mode already matched.
    pub unchanged: usize,
    /// Directory holding the previous versions of replaced files, if any was replaced.
    pub backup: Option<PathBuf>,
    /// True when files were renamed into place or moved to the backup and the file
    /// system has not been flushed since, so that a crash could still undo the renames.
    pub unflushed: bool,
}

/// Bytes and permission bits of output files read earlier in the same run, by path
/// relative to the output directory, so that comparing an output with the tree does not
/// read those files a second time.
#[derive(Debug, Default)]
pub struct Seen(HashMap<PathBuf, SeenFile>);

#[derive(Debug)]
struct SeenFile {
    bytes: Vec<u8>,
    mode: u32,
}

impl Seen {
    /// Reads `relative` under `out` and remembers its bytes and mode. Returns `None` when
    /// the file does not exist.
    pub fn read(&mut self, out: &Path, relative: &Path) -> io::Result<Option<Vec<u8>>> {
        let path = out.join(relative);
        let mut handle = match fs::File::open(&path) {
            Ok(handle) => handle,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                ) =>
            {
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let metadata = handle.metadata()?;
        let mut bytes = Vec::with_capacity(metadata.len() as usize);
        handle.read_to_end(&mut bytes)?;
        if metadata.is_file() {
            let mode = metadata.permissions().mode() & 0o777;
            let file = SeenFile {
                bytes: bytes.clone(),
                mode,
            };
            self.0.insert(relative.to_path_buf(), file);
        }
        Ok(Some(bytes))
    }

    /// Adds the files that `other` read.
    pub fn extend(&mut self, other: Seen) {
        self.0.extend(other.0);
    }
}

/// Returns the files of `files` whose bytes or mode differ from the tree under `out`.
/// A file in `seen` is compared with the bytes and mode read then, without new I/O.
pub fn changed_files<'f>(out: &Path, files: &'f [OutFile], seen: &Seen) -> Vec<&'f OutFile> {
    files
        .par_iter()
        .filter(|file| match seen.0.get(&file.relative) {
            Some(found) => found.mode != file.mode() || found.bytes != file.contents,
            None => !matches_disk(&out.join(&file.relative), file),
        })
        .collect()
}

/// True when `path` is a regular file with the mode and bytes of `file`. The size and
/// mode come from one fstat of the open file, so a file of another size is never read.
fn matches_disk(path: &Path, file: &OutFile) -> bool {
    let Ok(mut handle) = fs::File::open(path) else {
        return false;
    };
    let Ok(metadata) = handle.metadata() else {
        return false;
    };
    if !metadata.is_file()
        || metadata.permissions().mode() & 0o777 != file.mode()
        || metadata.len() != file.contents.len() as u64
    {
        return false;
    }
    let mut bytes = Vec::with_capacity(file.contents.len());
    handle.read_to_end(&mut bytes).is_ok() && bytes == file.contents
}

/// Name of the file, inside the output directory, that lists the files a build wrote.
pub const OUTPUT_LIST: &str = ".pkic-outputs";

/// Returns the text of [`OUTPUT_LIST`] for `files`: one relative path per line.
pub fn output_list(files: &[OutFile]) -> String {
    let mut list = files
        .iter()
        .map(|f| f.relative.display().to_string())
        .collect::<Vec<_>>()
        .join("\n");
    list.push('\n');
    list
}

/// Returns the files that an earlier build wrote under `out` and that `files` no
/// longer includes, such as those of a removed node. `reserved` names files that only
/// pkic writes, such as a rotation's staged key: they are stale whenever they exist
/// and `files` lacks them, even when a killed build already dropped them from the list.
pub fn stale_files(out: &Path, files: &[OutFile], reserved: &[PathBuf]) -> Vec<PathBuf> {
    let list = fs::read_to_string(out.join(OUTPUT_LIST)).unwrap_or_default();
    let current: HashSet<&Path> = files.iter().map(|f| f.relative.as_path()).collect();
    let mut stale: Vec<PathBuf> = list
        .lines()
        .filter_map(|line| crate::model::values::check_relative_path(line).ok())
        .chain(reserved.iter().cloned())
        .filter(|p| !current.contains(p.as_path()))
        .filter(|p| out.join(p).is_file())
        .collect();
    let mut seen = HashSet::new();
    stale.retain(|p| seen.insert(p.clone()));
    stale
}

/// Writes the changed `files` under `out` through a staging directory, backing up each
/// file it replaces and moving stale files of an earlier build into the backup.
/// `stamp` names the backup directory. Every staged file is flushed to disk before its
/// rename, but the renames are not: call [`flush`] when `unflushed` is set.
pub fn write_all(
    out: &Path,
    files: &[OutFile],
    reserved: &[PathBuf],
    stamp: &str,
    seen: &Seen,
) -> Result<Written, EmitError> {
    write_files(out, files, reserved, stamp, Some(seen))
}

/// Flushes the file system of `out` after [`write_all`], which leaves its renames
/// unflushed so that the caller can overlap the flush with other work.
pub fn flush(out: &Path) -> Result<(), EmitError> {
    sync_file_system(out)
}

/// Writes the changed `files` under `out` like [`write_all`], but leaves every other
/// file in place: the list of outputs gains these files and loses none, and no stale
/// file is removed. A build that waits for signed certificates writes its keys and CSRs
/// with it.
pub fn write_some(out: &Path, files: &[OutFile], stamp: &str) -> Result<Written, EmitError> {
    let mut written = write_files(out, files, &[], stamp, None)?;
    if written.unflushed {
        sync_file_system(out)?;
        written.unflushed = false;
    }
    Ok(written)
}

/// Writes `files`. When `complete` is `Some`, it contains the files read earlier in the run,
/// and `files` are every output of the build, so files of an earlier build missing from
/// them are stale.
fn write_files(
    out: &Path,
    files: &[OutFile],
    reserved: &[PathBuf],
    stamp: &str,
    complete: Option<&Seen>,
) -> Result<Written, EmitError> {
    create_private_dir(out)?;
    let _lock = lock(out)?;
    remove_stale_staging(out);
    // In an output directory that is empty under the lock, every file is new: nothing
    // is compared with the disk, backed up, or checked for symbolic links.
    let fresh = fs::read_dir(out)
        .map_err(error("reading", out))?
        .next()
        .is_none();
    let nothing_seen = Seen::default();
    let seen = complete.unwrap_or(&nothing_seen);
    let complete = complete.is_some();
    let changed: Vec<&OutFile> = match fresh {
        true => files.iter().collect(),
        false => changed_files(out, files, seen),
    };
    let stale = match complete {
        true => stale_files(out, files, reserved),
        false => Vec::new(),
    };
    let mut written = Written {
        unchanged: files.len() - changed.len(),
        ..Written::default()
    };
    let backup = unique_backup_dir(out, stamp);
    let mut listed: Vec<String> = match complete {
        true => Vec::new(),
        false => fs::read_to_string(out.join(OUTPUT_LIST))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect(),
    };
    let mut seen: HashSet<String> = listed.iter().cloned().collect();
    for file in files {
        let line = file.relative.display().to_string();
        if seen.insert(line.clone()) {
            listed.push(line);
        }
    }
    let mut list = listed.join("\n");
    list.push('\n');
    let list_file = OutFile {
        relative: OUTPUT_LIST.into(),
        contents: list.into_bytes(),
        secret: false,
    };
    // Every directory that a rename or a move to the backup goes through is checked
    // before the first file is written, so a symbolic link leaves the tree untouched.
    if !fresh {
        let mut checked = HashSet::new();
        let targets = changed.iter().map(|f| f.relative.as_path());
        for relative in targets.chain(stale.iter().map(PathBuf::as_path)) {
            if let Some(parent) = relative.parent()
                && checked.insert(parent)
            {
                check_no_symlink(out, &out.join(relative))?;
            }
        }
    }
    let mut staged = changed.clone();
    if fs::read(out.join(OUTPUT_LIST)).ok().as_deref() != Some(list_file.contents.as_slice()) {
        staged.push(&list_file);
    }
    if !staged.is_empty() {
        let staging = out.join(format!(".pkic-staging-{}", std::process::id()));
        // One flush of the file system after staging makes every staged file durable
        // before any rename exposes it, at the cost of one sync instead of one per file.
        let result = stage(&staging, &staged)
            .and_then(|()| sync_file_system(&staging))
            .and_then(|()| commit(out, &staging, &backup, &staged, fresh));
        let _ = fs::remove_dir_all(&staging);
        let replaced = result?;
        written.backup = (replaced > 0).then(|| backup.clone());
    }
    for path in &stale {
        let saved = backup.join(path);
        if let Some(parent) = saved.parent() {
            create_private_dir(parent)?;
        }
        fs::rename(out.join(path), &saved).map_err(error("moving a stale file to", &saved))?;
        fault_point();
        written.backup = Some(backup.clone());
    }
    written.unflushed = !staged.is_empty() || !stale.is_empty();
    written.changed = changed.into_iter().map(|f| f.relative.clone()).collect();
    written.removed = stale;
    Ok(written)
}

/// Flushes the file system that holds `dir` to its disk (syncfs(2)): file contents,
/// and the renames of directory entries.
fn sync_file_system(dir: &Path) -> Result<(), EmitError> {
    let handle = fs::File::open(dir).map_err(error("opening", dir))?;
    rustix::fs::syncfs(&handle).map_err(|e| error("syncing the file system of", dir)(e.into()))
}

/// Replaces a state file of pkic's own under `out`, atomically, when its text changed.
pub fn write_state(out: &Path, name: &str, text: &str) -> Result<(), EmitError> {
    let path = out.join(name);
    if fs::read_to_string(&path).ok().as_deref() == Some(text) {
        return Ok(());
    }
    let temporary = out.join(format!("{name}.{}.tmp", std::process::id()));
    fs::write(&temporary, text).map_err(error("writing", &temporary))?;
    fs::rename(&temporary, &path).map_err(error("renaming into place", &path))
}

/// Takes an exclusive lock on the output directory for the rest of a write, so two
/// builds never write into one tree at once. The lock ends when the handle is dropped.
fn lock(out: &Path) -> Result<fs::File, EmitError> {
    // The lock is on the directory itself, so a build leaves no lock file behind.
    let directory = fs::File::open(out).map_err(error("opening for locking", out))?;
    directory.try_lock().map_err(|e| EmitError {
        action: "locking",
        path: out.to_path_buf(),
        source: io::Error::other(format!("another pkic build is writing this tree ({e})")),
    })?;
    Ok(directory)
}

/// Returns `.backup/<stamp>` under `out`, or `<stamp>.N` when a build in the same second
/// already used that name.
fn unique_backup_dir(out: &Path, stamp: &str) -> PathBuf {
    let base = out.join(".backup");
    let mut candidate = base.join(stamp);
    let mut n = 1;
    while candidate.exists() {
        candidate = base.join(format!("{stamp}.{n}"));
        n += 1;
    }
    candidate
}

/// Fails when a directory between `out` and `path` is a symbolic link, which would send
/// keys outside the output directory.
fn check_no_symlink(out: &Path, path: &Path) -> Result<(), EmitError> {
    let mut current = out.to_path_buf();
    let relative = path.strip_prefix(out).unwrap_or(path);
    let parent_components = relative
        .parent()
        .map(|p| p.components().collect::<Vec<_>>())
        .unwrap_or_default();
    for component in parent_components {
        current.push(component);
        if fs::symlink_metadata(&current).is_ok_and(|m| m.file_type().is_symlink()) {
            return Err(EmitError {
                action: "refusing to write through the symbolic link",
                path: current,
                source: io::Error::other("output directories must be real directories"),
            });
        }
    }
    Ok(())
}

/// Removes staging directories left by a build that was killed.
fn remove_stale_staging(out: &Path) {
    let Ok(entries) = fs::read_dir(out) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(".pkic-staging-")
        {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// Returns the path of staged file number `index`. Staged files sit side by side in the
/// staging directory, so staging creates no directory but the staging directory itself.
fn staged_name(staging: &Path, index: usize) -> PathBuf {
    staging.join(index.to_string())
}

fn stage(staging: &Path, files: &[&OutFile]) -> Result<(), EmitError> {
    create_private_dir(staging)?;
    files.par_iter().enumerate().try_for_each(|(index, file)| {
        let path = staged_name(staging, index);
        let mut handle = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(file.mode())
            .open(&path)
            .map_err(error("creating", &path))?;
        handle
            .write_all(&file.contents)
            .map_err(error("writing", &path))?;
        fault_point();
        // The umask may have cleared bits of the requested mode.
        let mode = handle
            .metadata()
            .map_err(error("reading the mode of", &path))?
            .permissions()
            .mode();
        if mode & 0o777 != file.mode() {
            handle
                .set_permissions(fs::Permissions::from_mode(file.mode()))
                .map_err(error("setting the mode of", &path))?;
        }
        Ok(())
    })
}

/// Moves staged files into place; returns how many replaced an existing file.
fn commit(
    out: &Path,
    staging: &Path,
    backup: &Path,
    files: &[&OutFile],
    fresh: bool,
) -> Result<usize, EmitError> {
    let mut replaced = 0;
    let mut dirs = HashSet::from([out.to_path_buf()]);
    let mut backup_dirs = HashSet::new();
    for (index, file) in files.iter().enumerate() {
        let target = out.join(&file.relative);
        if let Some(parent) = target.parent()
            && !dirs.contains(parent)
        {
            create_dirs(parent, &mut dirs)?;
        }
        if !fresh && target.exists() {
            let saved = backup.join(&file.relative);
            if let Some(parent) = saved.parent()
                && backup_dirs.insert(parent.to_path_buf())
            {
                create_private_dir(parent)?;
            }
            if fs::hard_link(&target, &saved).is_err() {
                fs::copy(&target, &saved).map_err(error("backing up", &target))?;
            }
            fault_point();
            replaced += 1;
        }
        fs::rename(staged_name(staging, index), &target)
            .map_err(error("renaming into place", &target))?;
        fault_point();
    }
    Ok(replaced)
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
        write_all(dir.path(), &files, &[], "t1", &Seen::default()).unwrap();
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
        let mut leftovers: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        leftovers.sort();
        assert_eq!(
            leftovers,
            [OUTPUT_LIST, "pki"].map(std::ffi::OsString::from)
        );
    }

    #[test]
    fn unchanged_file_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let files = [OutFile {
            relative: "a.crt".into(),
            contents: b"c".to_vec(),
            secret: false,
        }];
        write_all(dir.path(), &files, &[], "t1", &Seen::default()).unwrap();
        let written = write_all(dir.path(), &files, &[], "t2", &Seen::default()).unwrap();
        assert!(written.changed.is_empty());
        assert_eq!(written.unchanged, 1);
        assert!(written.backup.is_none());
    }

    #[test]
    fn seen_file_with_other_mode_is_changed() {
        let dir = tempfile::tempdir().unwrap();
        let public = OutFile {
            relative: "pki/a.key".into(),
            contents: b"k".to_vec(),
            secret: false,
        };
        write_all(
            dir.path(),
            std::slice::from_ref(&public),
            &[],
            "t1",
            &Seen::default(),
        )
        .unwrap();
        let mut seen = Seen::default();
        let read = seen.read(dir.path(), Path::new("pki/a.key")).unwrap();
        assert_eq!(read.as_deref(), Some(&b"k"[..]));
        let secret = OutFile {
            secret: true,
            ..public.clone()
        };
        assert_eq!(changed_files(dir.path(), &[public], &seen).len(), 0);
        assert_eq!(changed_files(dir.path(), &[secret], &seen).len(), 1);
    }

    #[test]
    fn missing_file_is_not_seen() {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = Seen::default();
        let read = seen.read(dir.path(), Path::new("pki/none.crt")).unwrap();
        assert!(read.is_none());
        let file = OutFile {
            relative: "pki/none.crt".into(),
            contents: Vec::new(),
            secret: false,
        };
        assert_eq!(changed_files(dir.path(), &[file], &seen).len(), 1);
    }

    #[test]
    fn files_in_many_directories_land_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let files: Vec<OutFile> = (0..20)
            .map(|i| OutFile {
                relative: format!("nodes/node-{i}/pki/kubelet.key").into(),
                contents: format!("key {i}").into_bytes(),
                secret: true,
            })
            .collect();
        let written = write_all(dir.path(), &files, &[], "t1", &Seen::default()).unwrap();
        assert_eq!(written.changed.len(), 20);
        for (i, file) in files.iter().enumerate() {
            let bytes = fs::read(dir.path().join(&file.relative)).unwrap();
            assert_eq!(bytes, format!("key {i}").into_bytes());
        }
        let staging = fs::read_dir(dir.path())
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with(".pkic-staging"));
        assert!(!staging, "staging directory left behind");
    }

    #[test]
    fn replaced_file_kept_in_backup() {
        let dir = tempfile::tempdir().unwrap();
        let old = [OutFile {
            relative: "pki/a.crt".into(),
            contents: b"old".to_vec(),
            secret: false,
        }];
        let new = [OutFile {
            relative: "pki/a.crt".into(),
            contents: b"new".to_vec(),
            secret: false,
        }];
        write_all(dir.path(), &old, &[], "t1", &Seen::default()).unwrap();
        let written = write_all(dir.path(), &new, &[], "t2", &Seen::default()).unwrap();
        let backup = written.backup.expect("a file was replaced");
        assert_eq!(fs::read(backup.join("pki/a.crt")).unwrap(), b"old");
        assert_eq!(fs::read(dir.path().join("pki/a.crt")).unwrap(), b"new");
    }
}
