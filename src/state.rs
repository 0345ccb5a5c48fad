//! State stage: reads the existing output tree and decides, for each key and
//! certificate, whether a build keeps it, creates it, reissues it or renews it, and why.
//!
//! The tree on disk is the state: the certificates and keys themselves are read back
//! and compared with the manifest, so a hand-edited, deleted or mismatched file is
//! noticed. A CA is never replaced implicitly: a CA whose certificate no longer matches
//! the manifest, or whose key is missing, stops the build.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

use rayon::prelude::*;
use rcgen::KeyPair;
use time::OffsetDateTime;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::diag::Diagnostic;
use crate::emit::Seen;
use crate::model::{KeyAlgorithm, Model, San, Subject, Usage, values::format_duration};
use crate::x509::{algorithm_of_spki, found_subject, key_algorithm_of, public_key_of_pem};
pub use crate::x509::{found_sans, key_matches};

pub mod rotation;
pub use rotation::{Record, RotationPlan};

/// Action of a build on one key or certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Action {
    Keep,
    Create,
    Reissue,
    Renew,
    /// A certificate that a CA without a key in pkic must sign: pkic writes its CSR
    /// and waits for the signed certificate (see `csr`).
    AwaitSignature,
    /// A certificate signed outside pkic, found in the tree and verified.
    Accept,
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Action::Keep => "keep",
            Action::Create => "create",
            Action::Reissue => "reissue",
            Action::Renew => "renew",
            Action::AwaitSignature => "await-signature",
            Action::Accept => "accept",
        })
    }
}

/// The decision for one object, with the files found on disk.
#[derive(Debug, Clone)]
pub struct Decision {
    pub action: Action,
    pub reasons: Vec<String>,
    /// The private key on disk, in PEM, when the build keeps using it.
    pub reuse_key: Option<String>,
    /// The certificate on disk, in DER, when the build keeps it.
    pub keep_cert: Option<Vec<u8>>,
}

impl Decision {
    fn new(action: Action, reason: impl Into<String>) -> Decision {
        Decision {
            action,
            reasons: vec![reason.into()],
            reuse_key: None,
            keep_cert: None,
        }
    }
}

/// Decisions by graph key (`ca:ID`, `cert:ID`, `service-account:ID`), and the
/// declared rotations by the key of the CA or service-account key they rotate.
#[derive(Debug, Default)]
pub struct Plan {
    pub decisions: BTreeMap<String, Decision>,
    pub rotations: BTreeMap<String, RotationPlan>,
    /// Leaf certificate and key files as read while deciding, for the write to compare
    /// with instead of reading them again.
    pub seen: Seen,
}

impl Plan {
    pub fn get(&self, key: &str) -> Option<&Decision> {
        self.decisions.get(key)
    }

    /// True when every key and certificate is kept.
    pub fn is_noop(&self) -> bool {
        self.decisions.values().all(|d| d.action == Action::Keep)
            && self
                .rotations
                .values()
                .all(|r| r.staged.as_ref().is_none_or(|d| d.action == Action::Keep))
    }

    /// Returns the plan of a build into an empty directory: everything is created, and a
    /// rotation in stage `add-new` stages its new key too.
    pub fn fresh(model: &Model, now: OffsetDateTime) -> Plan {
        let mut plan = Plan::default();
        let staged = || Decision::new(Action::Create, "staged for rotation (stage add-new)");
        let rotations = model
            .cas
            .iter()
            .filter_map(|ca| Some((format!("ca:{}", ca.id), ca.rotation.as_ref()?)))
            .chain(model.service_accounts.iter().filter_map(|account| {
                Some((
                    format!("service-account:{}", account.id),
                    account.rotation.as_ref()?,
                ))
            }));
        for (key, rotation) in rotations {
            let add_new = rotation.stage == crate::model::rotation::Stage::AddNew;
            plan.rotations.insert(
                key,
                RotationPlan {
                    stage: rotation.stage,
                    staged: add_new.then(staged),
                    retired_certs: Vec::new(),
                    retired_keys: Vec::new(),
                    since: now,
                    drop_after: None,
                },
            );
        }
        plan
    }
}

/// The settings that decide when a kept certificate is renewed.
#[derive(Debug, Clone, Copy)]
pub struct Renewal {
    pub renew_before: Duration,
}

/// Reads the tree under `out` and decides every key and certificate of `model`.
pub fn decide(
    model: &Model,
    order: &[String],
    out: &Path,
    now: OffsetDateTime,
    renewal: Renewal,
) -> Result<Plan, Vec<Diagnostic>> {
    let mut plan = Plan::default();
    let mut errors = Vec::new();
    let reader = Reader {
        out,
        now,
        renewal,
        backdate: model.backdate,
        seen: Mutex::new(Seen::default()),
    };
    let record = Record::read(out);
    let external = crate::csr::External::read(model, out, now, renewal);
    // CAs first, in order, since leaves depend on their decisions; then the leaves,
    // which depend only on CAs, in parallel.
    for key in order {
        let decision = if let Some(id) = key.strip_prefix("ca:") {
            let ca = model.ca(id).expect("graph holds only declared CAs");
            if let Some(decision) = external.decide(key, &plan) {
                decision
            } else if let Some(rotation) = &ca.rotation {
                reader.decide_rotating_ca(ca, rotation, &plan, &record).map(
                    |(decision, rotation)| {
                        plan.rotations.insert(key.clone(), rotation);
                        decision
                    },
                )
            } else {
                reader.decide_ca(model, id, &plan)
            }
        } else if let Some(id) = key.strip_prefix("service-account:") {
            let account = model
                .service_accounts
                .iter()
                .find(|a| a.id == id)
                .expect("graph holds only declared service accounts");
            match &account.rotation {
                Some(rotation) => reader
                    .decide_rotating_service_account(account, rotation, &record)
                    .map(|(decision, rotation)| {
                        plan.rotations.insert(key.clone(), rotation);
                        decision
                    }),
                None => reader.decide_service_account(model, id),
            }
        } else {
            continue;
        };
        match decision {
            Ok(decision) => {
                plan.decisions.insert(key.clone(), decision);
            }
            Err(error) => errors.push(error),
        }
    }
    let leaves: Vec<(String, Result<Decision, Diagnostic>)> = order
        .par_iter()
        .filter_map(|key| {
            let id = key.strip_prefix("cert:")?;
            let decision = external
                .decide(key, &plan)
                .unwrap_or_else(|| reader.decide_leaf(model, id, &plan));
            Some((key.clone(), decision))
        })
        .collect();
    for (key, decision) in leaves {
        match decision {
            Ok(decision) => {
                plan.decisions.insert(key, decision);
            }
            Err(error) => errors.push(error),
        }
    }
    plan.seen = reader.seen.into_inner().expect("no panic while locked");
    if errors.is_empty() {
        Ok(plan)
    } else {
        Err(errors)
    }
}

struct Reader<'a> {
    out: &'a Path,
    now: OffsetDateTime,
    renewal: Renewal,
    backdate: Duration,
    seen: Mutex<Seen>,
}

/// A certificate and key as found on disk.
#[derive(Clone)]
struct Found {
    cert: Option<Vec<u8>>,
    key: Option<String>,
}

impl Reader<'_> {
    /// Reads a certificate and its key; a file that exists but cannot be read is an error,
    /// never mistaken for a missing one.
    fn read(&self, cert: &Path, key: &Path) -> Result<Found, String> {
        let cert = self
            .read_seen(cert)?
            .and_then(|text| pem::parse(text).ok())
            .filter(|p| p.tag() == "CERTIFICATE")
            .map(|p| p.contents().to_vec());
        let key = self.read_seen(key)?;
        Ok(Found { cert, key })
    }

    /// Reads a file like [`read_text`] and keeps its bytes and mode in `seen`.
    fn read_seen(&self, relative: &Path) -> Result<Option<String>, String> {
        let mut seen = Seen::default();
        let path = self.out.join(relative);
        let bytes = seen
            .read(self.out, relative)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        self.seen
            .lock()
            .expect("no panic while locked")
            .extend(seen);
        let Some(bytes) = bytes else {
            return Ok(None);
        };
        String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))
    }

    fn decide_ca(&self, model: &Model, id: &str, plan: &Plan) -> Result<Decision, Diagnostic> {
        let ca = model.ca(id).expect("graph holds only declared CAs");
        let path = format!("ca.{id}");
        if let Some(imported) = &ca.imported {
            // The output's copy is the CA the tree was built with. A different imported
            // certificate is a new CA, and the plan reports it as one.
            let copy = read_text(&self.out.join(&ca.cert_file.relative))
                .ok()
                .flatten()
                .and_then(|text| pem::parse(text).ok())
                .map(|p| p.contents().to_vec());
            let (action, reason) = match copy {
                Some(der) if der != imported.cert_der => (
                    Action::Create,
                    format!(
                        "imported CA {} differs from the one the tree was built with",
                        imported.source.display()
                    ),
                ),
                _ => (
                    Action::Keep,
                    format!("imported from {}", imported.source.display()),
                ),
            };
            return Ok(Decision {
                action,
                reasons: vec![reason],
                reuse_key: imported.key_pem.clone(),
                keep_cert: Some(imported.cert_der.clone()),
            });
        }
        let what = format!("CA `{id}`");
        self.check_no_rotation_left(&path, &what, &ca.rotation_files, None)?;
        let found = self
            .read(&ca.cert_file.relative, &ca.key_file.relative)
            .map_err(|message| Diagnostic::error(path.clone(), message))?;
        self.decide_ca_on_disk(ca, found, plan)
    }

    /// Decides a CA from its files: kept when they match the manifest, created when
    /// absent, and an error when they differ, since a CA is never replaced implicitly.
    fn decide_ca_on_disk(
        &self,
        ca: &crate::model::Ca,
        found: Found,
        plan: &Plan,
    ) -> Result<Decision, Diagnostic> {
        let id = &ca.id;
        let path = format!("ca.{id}");
        let (der, key_pem) = match (found.cert, found.key) {
            (None, None) => return Ok(Decision::new(Action::Create, "not on disk")),
            (None, Some(_)) if self.out.join(&ca.cert_file.relative).exists() => {
                return Err(Diagnostic::error(
                    path,
                    format!(
                        "CA `{id}`: {} is not a readable certificate; pkic never replaces a \
                         CA implicitly",
                        ca.cert_file.relative.display()
                    ),
                )
                .with_help(
                    "restore the certificate from a backup in the output directory's .backup/",
                ));
            }
            (None, Some(_)) => {
                // A key without its certificate was never trusted by anything: an
                // interrupted first build leaves this, since the key is written first.
                return Ok(Decision::new(
                    Action::Create,
                    "key without certificate (interrupted build)",
                ));
            }
            (Some(_), None) => {
                return Err(Diagnostic::error(
                    path,
                    format!(
                        "CA `{id}`: {} exists but its key {} is missing; pkic never replaces \
                         a CA implicitly",
                        ca.cert_file.relative.display(),
                        ca.key_file.relative.display()
                    ),
                )
                .with_help("restore the key from a backup in the output directory's .backup/"));
            }
            (Some(der), Some(key)) => (der, key),
        };
        let cert =
            parse(&der).map_err(|e| Diagnostic::error(path.clone(), format!("CA `{id}`: {e}")))?;
        let key_matches = key_matches(&key_pem, &cert);
        let mut problems = Vec::new();
        if !key_matches {
            problems.push(format!(
                "{} does not match its certificate",
                ca.key_file.relative.display()
            ));
        }
        if let Some(change) = subject_change(&cert, &ca.subject) {
            problems.push(change);
        }
        if let Some(change) = algorithm_change(&cert, ca.key.algorithm) {
            problems.push(change);
        }
        if !problems.is_empty() {
            return Err(Diagnostic::error(
                path,
                format!(
                    "CA `{id}` on disk differs from the manifest: {}; pkic never replaces a CA \
                     key implicitly, since every certificate and kubeconfig that trusts it \
                     would break",
                    problems.join("; ")
                ),
            )
            .with_help(format!(
                "restore the manifest to match the CA, or move {} and its key out of the \
                 output directory to create a new CA (every certificate it signed is then \
                 reissued)",
                ca.cert_file.relative.display()
            )));
        }
        let mut decision = Decision {
            action: Action::Keep,
            reasons: Vec::new(),
            reuse_key: Some(key_pem),
            keep_cert: None,
        };
        if let Some(parent) = &ca.issuer {
            self.check_issuer(&cert, parent, plan, &mut decision);
        }
        self.check_lifetime(&cert, ca.validity, &mut decision);
        if decision.action == Action::Keep {
            decision.keep_cert = Some(der);
        }
        Ok(decision)
    }

    fn decide_leaf(&self, model: &Model, id: &str, plan: &Plan) -> Result<Decision, Diagnostic> {
        let leaf = model
            .cert(id)
            .expect("graph holds only declared certificates");
        let found = match self.read(&leaf.cert_file.relative, &leaf.key_file.relative) {
            Ok(found) => found,
            Err(message) => return Err(Diagnostic::error(leaf.origin.clone(), message)),
        };
        let key = found
            .key
            .filter(|pem| public_key_of_pem(pem).is_some() || KeyPair::from_pem(pem).is_ok());
        let Some(der) = found.cert else {
            let mut decision = Decision::new(Action::Create, "not on disk");
            if key_algorithm_of(key.as_deref()) == Some(leaf.key.algorithm) {
                decision.reasons = vec!["certificate not on disk".into()];
                decision.reuse_key = key;
            }
            return Ok(decision);
        };
        let Ok(cert) = parse(&der) else {
            return Ok(Decision::new(
                Action::Reissue,
                "certificate on disk is not readable",
            ));
        };
        let mut decision = Decision {
            action: Action::Keep,
            reasons: Vec::new(),
            reuse_key: None,
            keep_cert: None,
        };
        match &key {
            Some(pem) if key_matches(pem, &cert) => decision.reuse_key = key.clone(),
            Some(_) => {
                decision.reissue("certificate does not match its key");
                decision.reuse_key = key.clone();
            }
            None => decision.reissue("key missing"),
        }
        if let Some(change) = algorithm_change(&cert, leaf.key.algorithm) {
            decision.reissue(format!("{change} (new key)"));
            decision.reuse_key = None;
        }
        if let Some(change) = subject_change(&cert, &leaf.subject) {
            decision.reissue(change);
        }
        if let Some(change) = san_change(&cert, &leaf.sans) {
            decision.reissue(change);
        }
        if let Some(change) = usage_change(&cert, leaf.usage) {
            decision.reissue(change);
        }
        self.check_issuer(&cert, &leaf.issuer, plan, &mut decision);
        self.check_lifetime(&cert, leaf.validity, &mut decision);
        if decision.action == Action::Keep {
            decision.keep_cert = Some(der);
        }
        Ok(decision)
    }

    fn decide_service_account(&self, model: &Model, id: &str) -> Result<Decision, Diagnostic> {
        let account = model
            .service_accounts
            .iter()
            .find(|a| a.id == id)
            .expect("graph holds only declared service accounts");
        let path = format!("service-account.{id}");
        let what = format!("service-account key `{id}`");
        self.check_no_rotation_left(
            &path,
            &what,
            &account.rotation_files,
            Some(&account.public_key_file),
        )?;
        let key = read_text(&self.out.join(&account.key_file.relative))
            .map_err(|message| Diagnostic::error(path.clone(), message))?;
        let Some(key) = key else {
            if self.out.join(&account.public_key_file.relative).exists() {
                return Err(Diagnostic::error(
                    path,
                    format!(
                        "service-account key `{id}`: {} exists but its private key {} is \
                         missing; a new pair would invalidate every service-account token",
                        account.public_key_file.relative.display(),
                        account.key_file.relative.display()
                    ),
                )
                .with_help("restore the key from a backup in the output directory's .backup/"));
            }
            return Ok(Decision::new(Action::Create, "not on disk"));
        };
        match key_algorithm_of(Some(&key)) {
            Some(algorithm) if algorithm == account.key.algorithm => Ok(Decision {
                action: Action::Keep,
                reasons: Vec::new(),
                reuse_key: Some(key),
                keep_cert: None,
            }),
            found => Err(Diagnostic::error(
                format!("service-account.{id}"),
                format!(
                    "service-account key `{id}` on disk is {}, the manifest says {}; replacing \
                     it would invalidate every service-account token",
                    found.map_or("unreadable".to_string(), |a| a.to_string()),
                    account.key.algorithm
                ),
            )
            .with_help(
                "restore the manifest's key-algorithm, or move the key out of the output directory",
            )),
        }
    }

    fn check_issuer(
        &self,
        cert: &X509Certificate,
        issuer: &str,
        plan: &Plan,
        decision: &mut Decision,
    ) {
        let parent = plan.get(&format!("ca:{issuer}"));
        // An accepted CA certificate signed outside pkic may be a renewal for the same
        // key, which still verifies what the CA signed before.
        match parent.map(|p| p.action) {
            Some(Action::Keep | Action::Accept) | None => {}
            Some(action) => {
                decision.reissue(format!(
                    "issuer `{issuer}` is being {}",
                    action_past(action)
                ));
                return;
            }
        }
        let parent_der = parent.and_then(|p| p.keep_cert.as_ref());
        let signed = parent_der
            .and_then(|der| X509Certificate::from_der(der).ok())
            .is_some_and(|(_, issuer_cert)| issued_by(cert, &issuer_cert));
        if !signed {
            decision.reissue(format!("not signed by the current `{issuer}` certificate"));
        }
    }

    fn check_lifetime(&self, cert: &X509Certificate, validity: Duration, decision: &mut Decision) {
        let not_before = cert.validity().not_before.timestamp();
        let not_after = cert.validity().not_after.timestamp();
        let span = Duration::from_secs((not_after - not_before).max(0) as u64);
        // pkic backdates `notBefore` by `backdate`, while openssl and kubeadm write
        // certificates whose span is the validity alone or carries a shorter backdate.
        // Any span from `validity` to `validity + backdate` is the declared validity.
        if span < validity || span > validity + self.backdate {
            decision.reissue(format!(
                "validity changed from {} to {}",
                format_duration(span.saturating_sub(self.backdate)),
                format_duration(validity)
            ));
        }
        let left = not_after - self.now.unix_timestamp();
        if decision.action == Action::Keep && left < self.renewal.renew_before.as_secs() as i64 {
            decision.action = Action::Renew;
            decision.reasons.push(if left <= 0 {
                "expired".to_string()
            } else {
                format!(
                    "expires in {} (renew-before {})",
                    format_remaining(left),
                    format_duration(self.renewal.renew_before)
                )
            });
        }
    }
}

/// Returns a file's text, `None` when it does not exist, or an error naming the file.
pub(crate) fn read_text(path: &Path) -> Result<Option<String>, String> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(text)),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// True when `issuer` signed `cert`. A CA key never changes unless the CA's decision
/// changes too, so matching names and key identifiers (the leaf's authority key
/// identifier equal to the CA's subject key identifier) identify the signer without a
/// signature check. Without key identifiers, the signature is verified.
fn issued_by(cert: &X509Certificate, issuer: &X509Certificate) -> bool {
    if cert.issuer().as_raw() != issuer.subject().as_raw() {
        return false;
    }
    let authority = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(id) => id.key_identifier.as_ref().map(|k| k.0),
            _ => None,
        });
    let subject = issuer
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0),
            _ => None,
        });
    match (authority, subject) {
        (Some(authority), Some(subject)) => authority == subject,
        _ => cert.verify_signature(Some(issuer.public_key())).is_ok(),
    }
}

/// Formats a positive number of seconds as whole days, or hours when under a day.
pub(crate) fn format_remaining(seconds: i64) -> String {
    match seconds / 86_400 {
        0 => format!("{} hours", seconds / 3600),
        1 => "1 day".to_string(),
        days => format!("{days} days"),
    }
}

impl Decision {
    fn reissue(&mut self, reason: impl Into<String>) {
        if self.action == Action::Keep || self.action == Action::Renew {
            self.action = Action::Reissue;
        }
        self.reasons.push(reason.into());
    }
}

pub(crate) fn action_past(action: Action) -> &'static str {
    match action {
        Action::Create => "created",
        Action::Reissue => "reissued",
        Action::Renew => "renewed",
        Action::Keep => "kept",
        Action::AwaitSignature => "signed outside pkic",
        Action::Accept => "accepted",
    }
}

pub(crate) fn parse(der: &[u8]) -> Result<X509Certificate<'_>, String> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| format!("unparsable certificate: {e}"))
}

pub(crate) fn algorithm_change(cert: &X509Certificate, expected: KeyAlgorithm) -> Option<String> {
    let found = algorithm_of_spki(cert.public_key());
    (found != Some(expected)).then(|| {
        format!(
            "key algorithm changed from {} to {expected}",
            found.map_or("unknown".to_string(), |a| a.to_string())
        )
    })
}

/// Returns the subject attributes in the order `issue` writes them.
pub fn expected_subject(subject: &Subject) -> Vec<(&'static str, String)> {
    let mut attributes = Vec::new();
    attributes.extend(subject.country.iter().map(|v| ("C", v.clone())));
    attributes.extend(subject.state.iter().map(|v| ("ST", v.clone())));
    attributes.extend(subject.locality.iter().map(|v| ("L", v.clone())));
    attributes.extend(subject.organizations.iter().map(|v| ("O", v.clone())));
    attributes.extend(
        subject
            .organizational_units
            .iter()
            .map(|v| ("OU", v.clone())),
    );
    attributes.extend(subject.common_name.iter().map(|v| ("CN", v.clone())));
    attributes
}

fn format_subject(attributes: &[(&str, String)]) -> String {
    attributes
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Compares the subject attributes regardless of their order: openssl writes them in
/// the order of `-subj` (often CN first), and the order changes no identity that
/// Kubernetes reads. A kept CA's subject is copied in its own order by `issue`.
pub(crate) fn subject_change(cert: &X509Certificate, subject: &Subject) -> Option<String> {
    let expected = expected_subject(subject);
    let found = found_subject(cert);
    let mut expected_sorted = expected.clone();
    let mut found_sorted = found.clone();
    expected_sorted.sort();
    found_sorted.sort();
    (expected_sorted != found_sorted).then(|| {
        format!(
            "subject changed from \"{}\" to \"{}\"",
            format_subject(&found),
            format_subject(&expected)
        )
    })
}

fn san_change(cert: &X509Certificate, expected: &[San]) -> Option<String> {
    san_difference(cert, expected, ["SANs added", "SANs removed"])
}

/// Describes how the SANs of `cert` differ from `expected`: `labels[0]` lists the SANs
/// that `cert` lacks, `labels[1]` those it has beyond `expected`.
pub(crate) fn san_difference(
    cert: &X509Certificate,
    expected: &[San],
    labels: [&str; 2],
) -> Option<String> {
    let found = found_sans(cert);
    let lacking: Vec<String> = expected
        .iter()
        .filter(|s| !found.contains(s))
        .map(San::to_string)
        .collect();
    let beyond: Vec<String> = found
        .iter()
        .filter(|s| !expected.contains(s))
        .map(San::to_string)
        .collect();
    let parts: Vec<String> = [lacking, beyond]
        .iter()
        .zip(labels)
        .filter(|(sans, _)| !sans.is_empty())
        .map(|(sans, label)| format!("{label}: {}", sans.join(", ")))
        .collect();
    (!parts.is_empty()).then(|| parts.join("; "))
}

pub(crate) fn usage_change(cert: &X509Certificate, usage: Usage) -> Option<String> {
    let (server, client) = match cert.extended_key_usage() {
        Ok(Some(eku)) => (eku.value.server_auth, eku.value.client_auth),
        _ => (false, false),
    };
    let found = match (server, client) {
        (true, true) => Some(Usage::Both),
        (true, false) => Some(Usage::Server),
        (false, true) => Some(Usage::Client),
        (false, false) => None,
    };
    (found != Some(usage)).then(|| {
        let name = |u: Option<Usage>| match u {
            Some(Usage::Server) => "server",
            Some(Usage::Client) => "client",
            Some(Usage::Both) => "both",
            None => "none",
        };
        format!(
            "usage changed from {} to {}",
            name(found),
            name(Some(usage))
        )
    })
}
