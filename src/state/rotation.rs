//! Staged rotations read back from the tree: which key signs, which key is staged,
//! which old certificates or public keys the trust files still contain, and whether the
//! declared stage may follow the one on disk.
//!
//! The files show the stage of a rotation. A staged key (`NAME.new.key`, with
//! `NAME.new.crt` for a CA) exists from `add-new` until `use-new` moves it into place.
//! A CA's trust file (`NAME.trust.crt`), and a service-account public-key file with more
//! than one key, exist until `drop-old`. The rotation record (`.pkic-rotation`) keeps
//! when each stage was first built, so that `drop-old` can wait for the overlap.

use std::collections::BTreeMap;
use std::path::Path;

use rcgen::{KeyPair, PublicKeyData};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::X509Certificate;

use super::{Action, Decision, Plan, Reader, algorithm_change, parse, read_text, subject_change};
use crate::diag::Diagnostic;
use crate::model::rotation::{Rotation, RotationFiles, Stage};
use crate::model::values::format_duration;
use crate::model::{Ca, ServiceAccount};
use crate::x509::{key_algorithm_of, key_matches};

/// Name of the rotation record inside the output directory.
pub const RECORD_FILE: &str = ".pkic-rotation";

/// Decisions of one build for a declared rotation.
#[derive(Debug, Clone)]
pub struct RotationPlan {
    pub stage: Stage,
    /// The new key (and CA certificate) that `add-new` makes or keeps.
    pub staged: Option<Decision>,
    /// Old CA certificates (DER) that the CA's trust file keeps beside the current one.
    pub retired_certs: Vec<Vec<u8>>,
    /// Old public keys (SubjectPublicKeyInfo DER) that the public-key file keeps.
    pub retired_keys: Vec<Vec<u8>>,
    /// When a build of this stage first ran.
    pub since: OffsetDateTime,
    /// During `use-new`, the earliest time `drop-old` may be built.
    pub drop_after: Option<OffsetDateTime>,
}

/// When each rotation's stage was first built, by graph key.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Record {
    pub stages: BTreeMap<String, (Stage, OffsetDateTime)>,
}

impl Record {
    /// Reads the record under `out`; a missing or unreadable record is empty.
    pub fn read(out: &Path) -> Record {
        let text = std::fs::read_to_string(out.join(RECORD_FILE)).unwrap_or_default();
        let stages = text
            .lines()
            .filter_map(|line| {
                let mut fields = line.split_whitespace();
                let key = fields.next()?;
                let stage = Stage::parse(fields.next()?)?;
                let since = OffsetDateTime::parse(fields.next()?, &Rfc3339).ok()?;
                Some((key.to_string(), (stage, since)))
            })
            .collect();
        Record { stages }
    }

    /// Returns the record of `plan`'s rotations.
    pub fn of(plan: &Plan) -> Record {
        Record {
            stages: plan
                .rotations
                .iter()
                .map(|(key, rotation)| (key.clone(), (rotation.stage, rotation.since)))
                .collect(),
        }
    }

    pub fn to_text(&self) -> String {
        let mut text = String::from(
            "# pkic: when each declared rotation stage was first built; drop-old waits for \
             the overlap after use-new\n",
        );
        for (key, (stage, since)) in &self.stages {
            let since = since.format(&Rfc3339).unwrap_or_default();
            text.push_str(&format!("{key} {} {since}\n", stage.name()));
        }
        text
    }

    fn since(&self, key: &str, stage: Stage, now: OffsetDateTime) -> OffsetDateTime {
        match self.stages.get(key) {
            Some((recorded, since)) if *recorded == stage => *since,
            _ => whole_second(now),
        }
    }
}

/// Returns `now` without its fraction of a second, as the record keeps it.
fn whole_second(now: OffsetDateTime) -> OffsetDateTime {
    now.replace_nanosecond(0).unwrap_or(now)
}

/// Reads the PEM blocks tagged `tag` (such as `CERTIFICATE` or `PUBLIC KEY`) of a
/// file, as DER in file order. A missing file has none.
fn read_blocks(path: &Path, tag: &str) -> Result<Vec<Vec<u8>>, String> {
    let Some(text) = read_text(path)? else {
        return Ok(Vec::new());
    };
    let blocks = pem::parse_many(text).unwrap_or_default();
    Ok(blocks
        .into_iter()
        .filter(|p| p.tag() == tag)
        .map(|p| p.contents().to_vec())
        .collect())
}

/// Returns the SubjectPublicKeyInfo DER of a PEM private key.
fn public_key_info(key_pem: &str) -> Option<Vec<u8>> {
    KeyPair::from_pem(key_pem)
        .ok()
        .map(|key| key.subject_public_key_info())
}

fn exists(out: &Path, file: &crate::model::OutputFile) -> bool {
    out.join(&file.relative).exists()
}

fn stage_help(id_path: &str, stage: Stage) -> String {
    format!("set `{id_path}.rotation.stage = \"{}\"`", stage.name())
}

impl Reader<'_> {
    /// Fails when a CA or service-account key without a declared rotation has one left
    /// half-done on disk.
    pub(super) fn check_no_rotation_left(
        &self,
        path: &str,
        what: &str,
        files: &RotationFiles,
        public_keys: Option<&crate::model::OutputFile>,
    ) -> Result<(), Diagnostic> {
        let mut left: Vec<String> = files
            .all()
            .into_iter()
            .filter(|f| exists(self.out, f))
            .map(|f| f.relative.display().to_string())
            .collect();
        if let Some(file) = public_keys {
            let keys = read_blocks(&self.out.join(&file.relative), "PUBLIC KEY")
                .map_err(|m| Diagnostic::error(path, m))?;
            if keys.len() > 1 {
                left.push(format!(
                    "{} (contains {} public keys)",
                    file.relative.display(),
                    keys.len()
                ));
            }
        }
        if left.is_empty() {
            return Ok(());
        }
        Err(Diagnostic::error(
            path,
            format!(
                "{what} is in the middle of a rotation on disk ({}), but the manifest declares \
                 none",
                left.join(", ")
            ),
        )
        .with_help(format!(
            "declare the stage it is in with `[{path}.rotation]` (`stage` and `overlap`) and \
             finish it; to abandon an `add-new` rotation, move the staged `.new` files out of \
             the output directory"
        )))
    }

    /// Decides a CA with a declared rotation: the decision for the CA that signs in this
    /// build, and the rotation's plan.
    pub(super) fn decide_rotating_ca(
        &self,
        ca: &Ca,
        rotation: &Rotation,
        plan: &Plan,
        record: &Record,
    ) -> Result<(Decision, RotationPlan), Diagnostic> {
        let id = &ca.id;
        let path = format!("ca.{id}");
        let key = format!("ca:{id}");
        let files = &ca.rotation_files;
        let staged_cert_file = files.staged_cert.as_ref().expect("CAs have a staged cert");
        let trust_file = files.trust.as_ref().expect("CAs have a trust file");
        let error = |message: String| Diagnostic::error(path.clone(), message);
        let stage_error =
            |message: String| Diagnostic::error(format!("{path}.rotation.stage"), message);
        let current = self
            .read(&ca.cert_file.relative, &ca.key_file.relative)
            .map_err(error)?;
        let staged = self
            .read(&staged_cert_file.relative, &files.staged_key.relative)
            .map_err(error)?;
        let trusted =
            read_blocks(&self.out.join(&trust_file.relative), "CERTIFICATE").map_err(error)?;

        let mut rotation_plan = RotationPlan {
            stage: rotation.stage,
            staged: None,
            retired_certs: Vec::new(),
            retired_keys: Vec::new(),
            since: record.since(&key, rotation.stage, self.now),
            drop_after: None,
        };

        let nothing_on_disk = current.cert.is_none()
            && current.key.is_none()
            && staged.cert.is_none()
            && staged.key.is_none()
            && trusted.is_empty();
        if nothing_on_disk {
            // A first build: the CA is made as declared; `add-new` also stages its
            // successor, so that the next build of the same manifest changes nothing.
            if rotation.stage == Stage::AddNew {
                rotation_plan.staged = Some(Decision::new(
                    Action::Create,
                    "staged for rotation (stage add-new)",
                ));
            }
            return Ok((Decision::new(Action::Create, "not on disk"), rotation_plan));
        }

        let staged_on_disk = staged.cert.is_some() || staged.key.is_some();

        match rotation.stage {
            Stage::AddNew => {
                let other_trusted = trusted.iter().any(|der| Some(der) != current.cert.as_ref());
                if staged.cert.is_none() && other_trusted {
                    return Err(stage_error(format!(
                        "CA `{id}`: {} trusts a CA besides the current one, but no staged CA \
                         is on disk: either use-new was built, and going back to add-new would \
                         drop the CA it replaced before the overlap, or the staged {} was lost \
                         after hosts received the trust file",
                        trust_file.relative.display(),
                        staged_cert_file.relative.display()
                    ))
                    .with_help(format!(
                        "after use-new, {} once the overlap has passed; if the staged files \
                         were lost, restore them from a backup in the output directory's \
                         .backup/",
                        stage_help(&path, Stage::DropOld)
                    )));
                }
                let decision = self.decide_old_ca(ca, current, plan)?;
                let staged_decision = self.decide_staged_ca(ca, staged.cert, staged.key)?;
                rotation_plan.staged = Some(staged_decision);
                Ok((decision, rotation_plan))
            }
            Stage::UseNew => {
                let (decision, new_der) = match staged.cert {
                    Some(new_der) => {
                        let decision =
                            self.promote_staged_ca(ca, &new_der, staged.key, &current, plan)?;
                        if decision.action != Action::Keep {
                            // This build starts use-new, even when the record names an
                            // earlier use-new build that was rolled back since.
                            rotation_plan.since = whole_second(self.now);
                        }
                        (decision, new_der)
                    }
                    None => {
                        let decision = self.decide_ca_on_disk(ca, current.clone(), plan)?;
                        let der = current.cert.clone().unwrap_or_default();
                        (decision, der)
                    }
                };

                let mut retired: Vec<Vec<u8>> = Vec::new();
                for der in current.cert.iter().chain(trusted.iter()) {
                    if *der != new_der && !retired.contains(der) {
                        retired.push(der.clone());
                    }
                }
                if retired.is_empty() && !staged_on_disk {
                    return Err(stage_error(format!(
                        "CA `{id}`: stage use-new needs the new CA that stage add-new stages, \
                         and {} contains no old CA",
                        trust_file.relative.display()
                    ))
                    .with_help(format!(
                        "{} first and distribute the trust files it writes, or restore {} from \
                         a backup in the output directory's .backup/",
                        stage_help(&path, Stage::AddNew),
                        trust_file.relative.display()
                    )));
                }

                rotation_plan.retired_certs = retired;
                rotation_plan.drop_after = Some(rotation_plan.since + rotation.overlap);
                Ok((decision, rotation_plan))
            }
            Stage::DropOld => {
                if staged_on_disk {
                    return Err(stage_error(format!(
                        "CA `{id}`: stage drop-old follows use-new, but the CA staged by \
                         add-new ({}) is not in use yet",
                        staged_cert_file.relative.display()
                    ))
                    .with_help(format!(
                        "{}, distribute what it writes, and wait for the overlap",
                        stage_help(&path, Stage::UseNew)
                    )));
                }
                let decision = self.decide_ca_on_disk(ca, current.clone(), plan)?;
                let old_trusted = trusted.iter().any(|der| Some(der) != current.cert.as_ref());
                if old_trusted {
                    self.check_overlap(&path, &key, rotation, record)?;
                }
                Ok((decision, rotation_plan))
            }
        }
    }

    /// Decides the CA that `add-new` staged as the one that signs from `use-new` on.
    /// Its key is the staged key file, or the CA's key file when a killed build already
    /// moved it there.
    fn promote_staged_ca(
        &self,
        ca: &Ca,
        new_der: &[u8],
        staged_key: Option<String>,
        current: &super::Found,
        plan: &Plan,
    ) -> Result<Decision, Diagnostic> {
        let files = &ca.rotation_files;
        let staged_cert_file = files.staged_cert.as_ref().expect("CAs have a staged cert");
        let error = |message: String| Diagnostic::error(format!("ca.{}", ca.id), message);
        let cert = parse(new_der).map_err(error)?;
        let new_key = [staged_key.as_ref(), current.key.as_ref()]
            .into_iter()
            .flatten()
            .find(|pem| key_matches(pem, &cert))
            .cloned()
            .ok_or_else(|| {
                error(format!(
                    "CA `{}`: the staged certificate {} matches neither {} nor {}",
                    ca.id,
                    staged_cert_file.relative.display(),
                    files.staged_key.relative.display(),
                    ca.key_file.relative.display()
                ))
                .with_help(
                    "restore the staged key from a backup in the output directory's .backup/",
                )
            })?;
        self.check_staged_matches(ca, &cert)?;

        let moved =
            current.cert.as_deref() == Some(new_der) && current.key.as_ref() == Some(&new_key);
        let mut decision = Decision {
            action: Action::Reissue,
            reasons: vec![
                "rotation stage use-new: the CA staged by add-new signs from now on".into(),
            ],
            reuse_key: Some(new_key),
            keep_cert: None,
        };
        if let Some(parent) = &ca.issuer {
            self.check_issuer(&cert, parent, plan, &mut decision);
        }
        if decision.reasons.len() == 1 {
            decision.keep_cert = Some(new_der.to_vec());
            if moved {
                // A build killed after moving the staged CA into place: only the staged
                // files are left to remove.
                decision.action = Action::Keep;
                decision.reasons.clear();
            }
        }
        Ok(decision)
    }

    /// Decides the old CA during `add-new`. It keeps signing even where the manifest's
    /// subject or key algorithm, which describe the new CA, differ from it.
    fn decide_old_ca(
        &self,
        ca: &Ca,
        current: super::Found,
        plan: &Plan,
    ) -> Result<Decision, Diagnostic> {
        let path = format!("ca.{}", ca.id);
        let (Some(der), Some(key)) = (current.cert, current.key) else {
            return Err(Diagnostic::error(
                path,
                format!(
                    "CA `{}`: stage add-new needs the CA to rotate from, but {} or {} is \
                     missing",
                    ca.id,
                    ca.cert_file.relative.display(),
                    ca.key_file.relative.display()
                ),
            )
            .with_help("restore both from a backup in the output directory's .backup/"));
        };
        let cert = parse(&der).map_err(|e| Diagnostic::error(path.clone(), e))?;
        if !key_matches(&key, &cert) {
            return Err(Diagnostic::error(
                path,
                format!(
                    "CA `{}`: {} does not match its certificate",
                    ca.id,
                    ca.key_file.relative.display()
                ),
            )
            .with_help("restore the key from a backup in the output directory's .backup/"));
        }
        let mut decision = Decision {
            action: Action::Keep,
            reasons: Vec::new(),
            reuse_key: Some(key),
            keep_cert: None,
        };
        if let Some(parent) = &ca.issuer {
            self.check_issuer(&cert, parent, plan, &mut decision);
        }
        if decision.action == Action::Keep {
            decision.keep_cert = Some(der);
        }
        Ok(decision)
    }

    /// Decides the CA that `add-new` stages: kept when its files match the manifest,
    /// else made.
    fn decide_staged_ca(
        &self,
        ca: &Ca,
        cert: Option<Vec<u8>>,
        key: Option<String>,
    ) -> Result<Decision, Diagnostic> {
        let files = &ca.rotation_files;
        let staged_cert_file = files.staged_cert.as_ref().expect("CAs have a staged cert");
        let abandon = format!(
            "move {}, {} and {} out of the output directory to abandon the rotation and \
             start it again",
            staged_cert_file.relative.display(),
            files.staged_key.relative.display(),
            files
                .trust
                .as_ref()
                .map_or(String::new(), |t| t.relative.display().to_string())
        );
        let error = |message: String, help: String| {
            Err(Diagnostic::error(format!("ca.{}", ca.id), message).with_help(help))
        };
        let (der, key) = match (cert, key) {
            (Some(der), Some(key)) => (der, key),
            (None, key) => {
                // The staged key is written before its certificate, so a key alone is
                // left by an interrupted build, and no host trusts a CA of it yet.
                let mut decision =
                    Decision::new(Action::Create, "staged for rotation (stage add-new)");
                decision.reuse_key =
                    key.filter(|pem| key_algorithm_of(Some(pem)) == Some(ca.key.algorithm));
                return Ok(decision);
            }
            (Some(_), None) => {
                return error(
                    format!(
                        "CA `{}`: the staged certificate {} exists but its key {} is missing",
                        ca.id,
                        staged_cert_file.relative.display(),
                        files.staged_key.relative.display()
                    ),
                    format!(
                        "restore the key from a backup in the output directory's .backup/, or \
                         {abandon}"
                    ),
                );
            }
        };
        let cert = parse(&der).map_err(|e| Diagnostic::error(format!("ca.{}", ca.id), e))?;
        let problem = if key_matches(&key, &cert) {
            subject_change(&cert, &ca.subject).or_else(|| algorithm_change(&cert, ca.key.algorithm))
        } else {
            Some(format!(
                "{} is not its key",
                files.staged_key.relative.display()
            ))
        };
        if let Some(problem) = problem {
            return error(
                format!(
                    "CA `{}`: the CA staged by add-new ({}) differs from the manifest: \
                     {problem}; hosts may already trust it through the trust files",
                    ca.id,
                    staged_cert_file.relative.display()
                ),
                format!("restore the manifest as it was for add-new, or {abandon}"),
            );
        }
        Ok(Decision {
            action: Action::Keep,
            reasons: vec!["staged for rotation (stage add-new)".into()],
            reuse_key: Some(key),
            keep_cert: Some(der),
        })
    }

    fn check_staged_matches(&self, ca: &Ca, cert: &X509Certificate) -> Result<(), Diagnostic> {
        let change =
            subject_change(cert, &ca.subject).or_else(|| algorithm_change(cert, ca.key.algorithm));
        match change {
            None => Ok(()),
            Some(change) => Err(Diagnostic::error(
                format!("ca.{}", ca.id),
                format!(
                    "CA `{}`: the CA staged by add-new differs from the manifest ({change}); \
                     the trust files that hosts hold name the staged CA",
                    ca.id
                ),
            )
            .with_help(format!(
                "restore the manifest as it was for add-new, or move the staged `.new` files \
                 out of the output directory and {} again",
                stage_help(&format!("ca.{}", ca.id), Stage::AddNew)
            ))),
        }
    }

    /// Fails when `drop-old` comes before the overlap after the first `use-new` build.
    fn check_overlap(
        &self,
        path: &str,
        key: &str,
        rotation: &Rotation,
        record: &Record,
    ) -> Result<(), Diagnostic> {
        let stage_path = format!("{path}.rotation.stage");
        let since = match record.stages.get(key) {
            Some((Stage::UseNew, since)) => *since,
            Some((Stage::DropOld, _)) => return Ok(()),
            _ => {
                return Err(Diagnostic::error(
                    stage_path,
                    format!(
                        "stage drop-old needs the time use-new was first built, and the \
                         rotation record {RECORD_FILE} in the output directory has none"
                    ),
                )
                .with_help(format!(
                    "{}, build, and wait for the overlap ({})",
                    stage_help(path, Stage::UseNew),
                    format_duration(rotation.overlap)
                )));
            }
        };
        let earliest = since + rotation.overlap;
        if self.now < earliest {
            let format = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
            return Err(Diagnostic::error(
                stage_path,
                format!(
                    "stage drop-old is not allowed before {}: use-new was first built at {} \
                     and the overlap is {}",
                    format(earliest),
                    format(since),
                    format_duration(rotation.overlap)
                ),
            )
            .with_help(format!(
                "keep {} until then; hosts may still present certificates or tokens of the \
                 old key",
                stage_help(path, Stage::UseNew)
            )));
        }
        Ok(())
    }

    /// Decides a service-account key with a declared rotation.
    pub(super) fn decide_rotating_service_account(
        &self,
        account: &ServiceAccount,
        rotation: &Rotation,
        record: &Record,
    ) -> Result<(Decision, RotationPlan), Diagnostic> {
        let id = &account.id;
        let path = format!("service-account.{id}");
        let key = format!("service-account:{id}");
        let error = |message: String| Diagnostic::error(path.clone(), message);
        let stage_error =
            |message: String| Diagnostic::error(format!("{path}.rotation.stage"), message);
        let current = read_text(&self.out.join(&account.key_file.relative)).map_err(error)?;
        let staged = read_text(&self.out.join(&account.rotation_files.staged_key.relative))
            .map_err(error)?;
        let published = read_blocks(
            &self.out.join(&account.public_key_file.relative),
            "PUBLIC KEY",
        )
        .map_err(error)?;

        let mut rotation_plan = RotationPlan {
            stage: rotation.stage,
            staged: None,
            retired_certs: Vec::new(),
            retired_keys: Vec::new(),
            since: record.since(&key, rotation.stage, self.now),
            drop_after: None,
        };

        let staged_name = account.rotation_files.staged_key.relative.display();
        let Some(current) = current else {
            if staged.is_some() || !published.is_empty() {
                return Err(error(format!(
                    "service-account key `{id}`: {} is missing in the middle of a rotation",
                    account.key_file.relative.display()
                ))
                .with_help("restore it from a backup in the output directory's .backup/"));
            }
            if rotation.stage == Stage::AddNew {
                rotation_plan.staged = Some(Decision::new(
                    Action::Create,
                    "staged for rotation (stage add-new)",
                ));
            }
            return Ok((Decision::new(Action::Create, "not on disk"), rotation_plan));
        };

        let current_info = public_key_info(&current).ok_or_else(|| {
            error(format!(
                "service-account key `{id}`: {} is not a readable private key",
                account.key_file.relative.display()
            ))
        })?;
        let keep = |pem: String| Decision {
            action: Action::Keep,
            reasons: Vec::new(),
            reuse_key: Some(pem),
            keep_cert: None,
        };

        match rotation.stage {
            Stage::AddNew => {
                let staged_decision = match staged {
                    Some(pem) if key_algorithm_of(Some(&pem)) == Some(account.key.algorithm) => {
                        Decision {
                            reasons: vec!["staged for rotation (stage add-new)".into()],
                            ..keep(pem)
                        }
                    }
                    Some(_) => {
                        return Err(error(format!(
                            "service-account key `{id}`: the staged key {staged_name} is not a \
                             readable {} key as the manifest declares; kube-apiserver may \
                             already trust it through {}",
                            account.key.algorithm,
                            account.public_key_file.relative.display()
                        ))
                        .with_help(format!(
                            "restore the manifest as it was for add-new, or move \
                             {staged_name} out of the output directory to start again"
                        )));
                    }
                    None if published.iter().any(|info| *info != current_info) => {
                        return Err(stage_error(format!(
                            "service-account key `{id}`: {} lists a key besides the current \
                             one, but no staged key is on disk: either use-new was built, and \
                             going back to add-new would drop the key it replaced before the \
                             overlap, or the staged {staged_name} was lost",
                            account.public_key_file.relative.display()
                        ))
                        .with_help(format!(
                            "after use-new, {} once the overlap has passed; if the staged key \
                             was lost, restore it from a backup in the output directory's \
                             .backup/",
                            stage_help(&path, Stage::DropOld)
                        )));
                    }
                    None => Decision::new(Action::Create, "staged for rotation (stage add-new)"),
                };
                rotation_plan.staged = Some(staged_decision);
                Ok((keep(current), rotation_plan))
            }
            Stage::UseNew => {
                let (decision, new_info) = match staged {
                    Some(pem) => {
                        let info = public_key_info(&pem).ok_or_else(|| {
                            error(format!(
                                "service-account key `{id}`: the staged key {staged_name} is \
                                 not a readable private key"
                            ))
                        })?;
                        let decision = Decision {
                            action: Action::Reissue,
                            reasons: vec![
                                "rotation stage use-new: the key staged by add-new signs \
                                 tokens from now on"
                                    .into(),
                            ],
                            reuse_key: Some(pem),
                            keep_cert: None,
                        };
                        if info != current_info {
                            // This build starts use-new, as for CAs.
                            rotation_plan.since = whole_second(self.now);
                        }
                        (decision, info)
                    }
                    None => (keep(current), current_info.clone()),
                };

                let mut retired: Vec<Vec<u8>> = Vec::new();
                for info in std::iter::once(&current_info).chain(published.iter()) {
                    if *info != new_info && !retired.contains(info) {
                        retired.push(info.clone());
                    }
                }
                if retired.is_empty() {
                    return Err(stage_error(format!(
                        "service-account key `{id}`: stage use-new needs the new key that \
                         stage add-new stages, and {} contains only the current key",
                        account.public_key_file.relative.display()
                    ))
                    .with_help(format!(
                        "{} first and restart kube-apiserver with the public-key file it \
                         writes",
                        stage_help(&path, Stage::AddNew)
                    )));
                }

                rotation_plan.retired_keys = retired;
                rotation_plan.drop_after = Some(rotation_plan.since + rotation.overlap);
                Ok((decision, rotation_plan))
            }
            Stage::DropOld => {
                if staged.is_some() {
                    return Err(stage_error(format!(
                        "service-account key `{id}`: stage drop-old follows use-new, but the \
                         key staged by add-new ({staged_name}) is not in use yet"
                    ))
                    .with_help(stage_help(&path, Stage::UseNew)));
                }
                if published.iter().any(|info| *info != current_info) {
                    self.check_overlap(&path, &key, rotation, record)?;
                }
                Ok((keep(current), rotation_plan))
            }
        }
    }
}
