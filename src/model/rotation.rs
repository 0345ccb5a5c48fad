//! Staged rotation of a CA or of a service-account key: the stage the manifest
//! declares, the overlap before the old key may go, and the files that hold the staged
//! key and the trust set while both keys are trusted.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

use super::{Checker, OutputFile, hint, values};
use crate::manifest::RawRotation;

/// The stages of a rotation, in the order they are built.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Stage {
    /// A new key (and CA certificate) is made beside the old one. Every trust file
    /// contains both, and the old key still signs.
    AddNew,
    /// The new key signs: every certificate of a CA is reissued, and tokens are signed
    /// with the new service-account key. Trust files still contain both.
    UseNew,
    /// The old CA certificate or public key leaves the trust files.
    DropOld,
}

impl Stage {
    pub const NAMES: [&'static str; 3] = ["add-new", "use-new", "drop-old"];

    pub fn parse(text: &str) -> Option<Stage> {
        match text {
            "add-new" => Some(Stage::AddNew),
            "use-new" => Some(Stage::UseNew),
            "drop-old" => Some(Stage::DropOld),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        Stage::NAMES[self as usize]
    }

    /// Returns true while trust files contain both the old and the new key.
    pub fn trusts_both(self) -> bool {
        self != Stage::DropOld
    }
}

/// A declared rotation.
#[derive(Debug, Clone)]
pub struct Rotation {
    pub stage: Stage,
    /// Shortest time from the first `use-new` build to the `drop-old` build.
    pub overlap: Duration,
}

/// Files beside a CA's or service-account key's own files that hold a rotation's
/// state. Their paths exist whether or not a rotation is declared, so that a build
/// notices a rotation left half-done on disk.
#[derive(Debug, Clone)]
pub struct RotationFiles {
    /// The new key, made by `add-new`, until `use-new` moves it into the key file.
    pub staged_key: OutputFile,
    /// The new CA certificate beside `staged_key` (CAs only).
    pub staged_cert: Option<OutputFile>,
    /// The file of the old and new CA certificates, which every trust reference to the
    /// CA names during the rotation (CAs only). A service-account key's public-key file
    /// itself contains both public keys.
    pub trust: Option<OutputFile>,
}

impl RotationFiles {
    pub(super) fn for_ca(cert_file: &OutputFile, key_file: &OutputFile) -> RotationFiles {
        RotationFiles {
            staged_key: sibling(key_file, "new"),
            staged_cert: Some(sibling(cert_file, "new")),
            trust: Some(sibling(cert_file, "trust")),
        }
    }

    pub(super) fn for_service_account(key_file: &OutputFile) -> RotationFiles {
        RotationFiles {
            staged_key: sibling(key_file, "new"),
            staged_cert: None,
            trust: None,
        }
    }

    /// Returns every file of the set, for checks that no two objects write one file.
    pub fn all(&self) -> Vec<&OutputFile> {
        let mut files = vec![&self.staged_key];
        files.extend(self.staged_cert.iter());
        files.extend(self.trust.iter());
        files
    }
}

/// Returns `pki/ca.crt` as `pki/ca.INFIX.crt`, for both the output and the install path.
fn sibling(file: &OutputFile, infix: &str) -> OutputFile {
    OutputFile {
        relative: with_infix(&file.relative, infix),
        install: with_infix(Path::new(&file.install), infix)
            .display()
            .to_string(),
    }
}

fn with_infix(path: &Path, infix: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let name = match path.extension() {
        Some(extension) => format!("{stem}.{infix}.{}", extension.to_string_lossy()),
        None => format!("{stem}.{infix}"),
    };
    path.with_file_name(name)
}

/// Reads the `rotation` table of a CA or service-account key at `path`.
pub(super) fn check_rotation(
    checker: &mut Checker,
    path: &str,
    raw: Option<&RawRotation>,
    what: &str,
) -> Option<Rotation> {
    let raw = raw?;
    let stage_path = format!("{path}.rotation.stage");
    let Some(stage) = Stage::parse(&raw.stage) else {
        let help = hint(&raw.stage, &Stage::NAMES);
        checker
            .error(
                stage_path,
                format!("unknown rotation stage `{}`", raw.stage),
            )
            .help = Some(format!(
            "{help}; stages are built in this order, one build each"
        ));
        return None;
    };
    let overlap_path = format!("{path}.rotation.overlap");
    let Some(text) = &raw.overlap else {
        checker
            .error(
                format!("{path}.rotation"),
                format!("the rotation of {what} states no overlap"),
            )
            .help = Some(
            "set `overlap`, the shortest time between the first `use-new` build and \
             `drop-old`, such as `overlap = \"24h\"`: long enough for every host to get \
             the files that `use-new` makes"
                .into(),
        );
        return None;
    };
    let overlap = match values::parse_duration(text) {
        Ok(overlap) => overlap,
        Err(message) => {
            checker.error(overlap_path, message).help =
                Some("write a duration such as `24h` or `7d`".into());
            return None;
        }
    };
    Some(Rotation { stage, overlap })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sibling_inserts_the_infix_before_the_extension() {
        let file = OutputFile {
            relative: PathBuf::from("pki/etcd/ca.crt"),
            install: "/etc/kubernetes/pki/etcd/ca.crt".into(),
        };
        let staged = sibling(&file, "new");
        assert_eq!(staged.relative, PathBuf::from("pki/etcd/ca.new.crt"));
        assert_eq!(staged.install, "/etc/kubernetes/pki/etcd/ca.new.crt");
        let bare = OutputFile {
            relative: PathBuf::from("pki/ca"),
            install: "/etc/kubernetes/pki/ca".into(),
        };
        assert_eq!(
            sibling(&bare, "trust").relative,
            PathBuf::from("pki/ca.trust")
        );
    }

    #[test]
    fn stages_keep_their_build_order() {
        let parsed: Vec<Stage> = Stage::NAMES
            .iter()
            .filter_map(|n| Stage::parse(n))
            .collect();
        assert_eq!(parsed, vec![Stage::AddNew, Stage::UseNew, Stage::DropOld]);
        assert!(parsed.iter().all(|s| s.name() == Stage::NAMES[*s as usize]));
        assert!(Stage::UseNew.trusts_both());
        assert!(!Stage::DropOld.trusts_both());
    }
}
