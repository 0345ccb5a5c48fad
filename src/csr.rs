//! Certificates signed outside pkic, by a CA imported with `import-cert` alone (an
//! offline root or an HSM), in the way `kubeadm certs generate-csr` works.
//!
//! For each certificate such a CA signs, leaves and intermediate CAs alike, a build
//! keeps or generates the key and writes a PKCS#10 CSR beside it (`NAME.csr`, mode
//! 0644). The CSR carries the subject, the SANs and the keyUsage, extendedKeyUsage and
//! basicConstraints extensions that pkic would have written itself. The operator signs
//! it and places the certificate at the certificate's path in the output directory.
//!
//! The next build verifies a certificate it has not accepted before: the signature by
//! the CA, the public key, the subject, SANs, usages and lifetime against the manifest,
//! and the validity against the CA's. A certificate that fails stops the build before
//! anything is written. Accepted certificates are recorded by SHA-256 digest in
//! [`SIGNED_FILE`], so that a later manifest change or the renewal window requires a
//! new signature (a new CSR for the same key) instead of rejecting the old certificate.
//!
//! While any certificate awaits its signature, a build writes only keys and CSRs, and
//! exits with [`Failure::AwaitingSignature`](crate::pipeline::Failure): kubeconfigs,
//! flag files, bundles and certificates are written, and the tree verified, only by the
//! build that finds every certificate signed.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::{CertificateParams, KeyPair};
use time::OffsetDateTime;
use x509_parser::certification_request::X509CertificationRequest;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::diag::Diagnostic;
use crate::emit::OutFile;
use crate::issue::{self, IssueError};
use crate::model::values::format_duration;
use crate::model::{Ca, Cert, KeySpec, Model, OutputFile, Subject};
use crate::state::{self, Action, Decision, Plan, Renewal};
use crate::x509::{key_algorithm_of, key_matches, public_key_of_pem};

/// File in the output directory that lists the SHA-256 digests of the externally
/// signed certificates that a build accepted.
pub const SIGNED_FILE: &str = ".pkic-signed";

/// Start of the message of a rejected certificate, which the pipeline maps to exit 1.
const REJECTED: &str = "rejected the signed certificate ";

/// Returns true when `ca` was imported without its key, so pkic cannot sign with it.
pub fn key_unavailable(ca: &Ca) -> bool {
    ca.imported.as_ref().is_some_and(|i| i.key_pem.is_none())
}

/// Returns true when a state diagnostic rejects a certificate placed by the operator.
pub fn is_rejection(diagnostic: &Diagnostic) -> bool {
    diagnostic.message.starts_with(REJECTED)
}

/// Returns true when some certificate of `plan` waits for a signature.
pub fn is_waiting(plan: &Plan) -> bool {
    plan.decisions
        .values()
        .any(|d| d.action == Action::AwaitSignature)
}

/// A key and certificate that a CA without a key in pkic signs.
#[derive(Clone, Copy)]
enum Target<'m> {
    Leaf(&'m Cert),
    Ca(&'m Ca),
}

impl<'m> Target<'m> {
    /// Returns the target of a graph key, with its issuer, when that issuer is a CA
    /// imported without its key.
    fn of(model: &'m Model, key: &str) -> Option<(Target<'m>, &'m Ca)> {
        let target = match key.split_once(':')? {
            ("cert", id) => Target::Leaf(model.cert(id)?),
            ("ca", id) => Target::Ca(model.ca(id).filter(|ca| ca.imported.is_none())?),
            _ => return None,
        };
        let issuer = model.ca(target.issuer()?)?;
        Some((target, issuer))
    }

    fn issuer(&self) -> Option<&'m str> {
        match self {
            Target::Leaf(cert) => Some(&cert.issuer),
            Target::Ca(ca) => ca.issuer.as_deref(),
        }
    }

    fn name(&self) -> String {
        match self {
            Target::Leaf(cert) => format!("certificate `{}`", cert.id),
            Target::Ca(ca) => format!("CA `{}`", ca.id),
        }
    }

    fn origin(&self) -> String {
        match self {
            Target::Leaf(cert) => cert.origin.clone(),
            Target::Ca(ca) => format!("ca.{}", ca.id),
        }
    }

    fn cert_file(&self) -> &'m OutputFile {
        match self {
            Target::Leaf(cert) => &cert.cert_file,
            Target::Ca(ca) => &ca.cert_file,
        }
    }

    fn key_file(&self) -> &'m OutputFile {
        match self {
            Target::Leaf(cert) => &cert.key_file,
            Target::Ca(ca) => &ca.key_file,
        }
    }

    fn key(&self) -> KeySpec {
        match self {
            Target::Leaf(cert) => cert.key,
            Target::Ca(ca) => ca.key,
        }
    }

    fn subject(&self) -> &'m Subject {
        match self {
            Target::Leaf(cert) => &cert.subject,
            Target::Ca(ca) => &ca.subject,
        }
    }

    fn validity(&self) -> Duration {
        match self {
            Target::Leaf(cert) => cert.validity,
            Target::Ca(ca) => ca.validity,
        }
    }

    /// Returns what the CSR requests: the subject and the extensions, without the
    /// validity, serial and key identifiers that the signer sets.
    fn request_params(&self) -> Result<CertificateParams, IssueError> {
        let mut params = CertificateParams::default();
        params.distinguished_name = issue::distinguished_name(self.subject());
        match self {
            Target::Leaf(cert) => issue::set_leaf_extensions(&mut params, cert, &self.name())?,
            Target::Ca(ca) => issue::set_ca_extensions(&mut params, ca),
        }
        Ok(params)
    }

    /// Returns how the certificate's contents differ from the manifest, besides the
    /// key and the signature.
    fn content_changes(&self, cert: &X509Certificate) -> Vec<String> {
        let mut changes = Vec::new();
        changes.extend(state::algorithm_change(cert, self.key().algorithm));
        changes.extend(state::subject_change(cert, self.subject()));
        let constraints = cert.basic_constraints().ok().flatten().map(|c| c.value);
        let key_usage = cert.key_usage().ok().flatten().map(|u| u.value);
        match self {
            Target::Leaf(leaf) => {
                changes.extend(state::san_difference(
                    cert,
                    &leaf.sans,
                    ["SANs missing", "SANs not declared"],
                ));
                changes.extend(state::usage_change(cert, leaf.usage));
                if constraints.is_some_and(|c| c.ca) {
                    changes.push("it is a CA certificate (basicConstraints CA:TRUE)".into());
                }
                if key_usage.is_some_and(|u| !u.digital_signature()) {
                    changes.push("its keyUsage lacks digitalSignature".into());
                }
            }
            Target::Ca(ca) => {
                match constraints {
                    Some(c) if c.ca => {
                        let found = c.path_len_constraint.map(|n| n.min(255) as u8);
                        if found != ca.path_len {
                            changes.push(format!(
                                "path length changed from {} to {}",
                                path_len_text(found),
                                path_len_text(ca.path_len)
                            ));
                        }
                    }
                    _ => changes.push("it is not a CA (basicConstraints CA:TRUE missing)".into()),
                }
                if key_usage.is_some_and(|u| !u.key_cert_sign()) {
                    changes.push("its keyUsage lacks keyCertSign".into());
                }
            }
        }
        changes
    }
}

fn path_len_text(path_len: Option<u8>) -> String {
    path_len.map_or("none".into(), |n| n.to_string())
}

/// Returns the CSR file of a key file: the same path with the extension `.csr`.
pub fn request_file(key_file: &OutputFile) -> PathBuf {
    key_file.relative.with_extension("csr")
}

/// Returns the CSR file of the object with graph key `key`, when a CA without a key in
/// pkic signs it.
pub fn request_file_of(model: &Model, key: &str) -> Option<PathBuf> {
    let (target, issuer) = Target::of(model, key)?;
    key_unavailable(issuer).then(|| request_file(target.key_file()))
}

/// Decides the certificates that a CA without a key in pkic signs, and those below a
/// certificate that still awaits its signature. `state::decide` calls it first.
pub struct External<'a> {
    model: &'a Model,
    out: &'a Path,
    now: OffsetDateTime,
    renewal: Renewal,
    /// Digests of the certificates accepted by earlier builds.
    accepted: HashSet<String>,
}

impl<'a> External<'a> {
    /// Reads the digests of the certificates accepted by earlier builds under `out`.
    pub fn read(model: &'a Model, out: &'a Path, now: OffsetDateTime, renewal: Renewal) -> Self {
        let text = std::fs::read_to_string(out.join(SIGNED_FILE)).unwrap_or_default();
        External {
            model,
            out,
            now,
            renewal,
            accepted: text.lines().map(str::to_string).collect(),
        }
    }

    /// Returns the decision for graph key `key`, or `None` when pkic signs it itself.
    pub fn decide(&self, key: &str, plan: &Plan) -> Option<Result<Decision, Diagnostic>> {
        if let Some((target, issuer)) = Target::of(self.model, key)
            && key_unavailable(issuer)
        {
            return Some(self.decide_signed(target, issuer, plan));
        }
        let issuer = match key.split_once(':')? {
            ("cert", id) => self.model.cert(id)?.issuer.as_str(),
            ("ca", id) => self.model.ca(id)?.issuer.as_deref()?,
            _ => return None,
        };
        let waiting = plan
            .get(&format!("ca:{issuer}"))
            .is_some_and(|d| d.action == Action::AwaitSignature);
        waiting.then(|| {
            Ok(decision(
                Action::AwaitSignature,
                vec![format!(
                    "its issuer `{issuer}` awaits its signed certificate"
                )],
                None,
                None,
            ))
        })
    }

    fn decide_signed(
        &self,
        target: Target,
        issuer: &Ca,
        plan: &Plan,
    ) -> Result<Decision, Diagnostic> {
        let cert_path = self.out.join(&target.cert_file().relative);
        let key_path = self.out.join(&target.key_file().relative);
        let read_error = |message| Diagnostic::error(target.origin(), message);
        let key_text = state::read_text(&key_path).map_err(read_error)?;
        let cert_text =
            match std::fs::read(&cert_path) {
                Ok(bytes) => match String::from_utf8(bytes) {
                    Ok(text) => Some(text),
                    Err(_) => {
                        return Err(self.reject(
                        target,
                        issuer,
                        &cert_path,
                        &["it is not PEM text; a DER certificate converts with `openssl x509 \
                           -inform DER -outform PEM`"
                            .to_string()],
                    ));
                    }
                },
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                Err(e) => {
                    return Err(read_error(format!(
                        "cannot read {}: {e}",
                        cert_path.display()
                    )));
                }
            };
        let algorithm = target.key().algorithm;
        let (key, mut waiting) = match key_text {
            Some(pem) if key_algorithm_of(Some(&pem)) == Some(algorithm) => (Some(pem), vec![]),
            Some(pem) if public_key_of_pem(&pem).is_some() || KeyPair::from_pem(&pem).is_ok() => {
                let found = key_algorithm_of(Some(&pem));
                let reason = format!(
                    "key algorithm changed from {} to {algorithm} (new key)",
                    found.map_or("unknown".to_string(), |a| a.to_string())
                );
                (None, vec![reason])
            }
            Some(_) => (None, vec!["key unreadable (new key)".to_string()]),
            None => (None, vec![]),
        };
        let Some(cert_text) = cert_text else {
            let reason = match &key {
                Some(_) => "not signed yet; its key is kept",
                None => "not on disk",
            };
            waiting.push(reason.into());
            return Ok(decision(Action::AwaitSignature, waiting, key, None));
        };
        if key.is_none() && matches!(target, Target::Ca(_)) && waiting.is_empty() {
            return Err(Diagnostic::error(
                target.origin(),
                format!(
                    "{}: {} exists but its key {} is missing; pkic never replaces a CA \
                     implicitly",
                    target.name(),
                    cert_path.display(),
                    key_path.display()
                ),
            )
            .with_help("restore the key from a backup in the output directory's .backup/"));
        }
        let found = first_certificate(&cert_text);
        let digest = found.as_deref().map(sha256_hex);
        let accepted = digest.as_ref().is_some_and(|d| self.accepted.contains(d));
        let Some((der, cert)) = found
            .as_deref()
            .and_then(|der| Some((der, state::parse(der).ok()?)))
        else {
            return Err(self.reject(
                target,
                issuer,
                &cert_path,
                &["it is not a PEM CERTIFICATE that can be read".to_string()],
            ));
        };
        let Some(key) = key else {
            waiting.push("key missing (new key)".into());
            return Ok(decision(Action::AwaitSignature, waiting, None, None));
        };

        let mut content = Vec::new();
        if !key_matches(&key, &cert) {
            content.push(format!(
                "its public key is not the key in {}",
                key_path.display()
            ));
        }
        content.extend(target.content_changes(&cert));
        if !signed_by(&cert, issuer) {
            content.push(format!(
                "it is not signed by CA `{}` ({})",
                issuer.id,
                issuer_source(issuer)
            ));
        }
        let (lifetime, aging) = self.check_validity(target, issuer, &cert);
        let issuer_changed = plan
            .get(&format!("ca:{}", issuer.id))
            .is_some_and(|d| d.action != Action::Keep);

        if accepted {
            if issuer_changed {
                waiting.push(format!("CA `{}` changed", issuer.id));
            }
            waiting.extend(content);
            waiting.extend(lifetime);
            waiting.extend(aging);
            if waiting.is_empty() {
                return Ok(decision(
                    Action::Keep,
                    vec![],
                    Some(key),
                    Some(der.to_vec()),
                ));
            }
            return Ok(decision(Action::AwaitSignature, waiting, Some(key), None));
        }
        let problems: Vec<String> = content.into_iter().chain(lifetime).chain(aging).collect();
        if !problems.is_empty() {
            return Err(self.reject(target, issuer, &cert_path, &problems));
        }
        let reason = format!(
            "signed certificate {} verified against CA `{}`",
            target.cert_file().relative.display(),
            issuer.id
        );
        Ok(decision(
            Action::Accept,
            vec![reason],
            Some(key),
            Some(der.to_vec()),
        ))
    }

    /// Returns the lifetime problems of `cert` (against the manifest and the CA) and
    /// its age (expired, or due for renewal).
    fn check_validity(
        &self,
        target: Target,
        issuer: &Ca,
        cert: &X509Certificate,
    ) -> (Vec<String>, Vec<String>) {
        let not_before = cert.validity().not_before.timestamp();
        let not_after = cert.validity().not_after.timestamp();

        let mut lifetime = Vec::new();
        let span = Duration::from_secs((not_after - not_before).max(0) as u64);
        let declared = target.validity();
        if span > declared + self.model.backdate {
            lifetime.push(format!(
                "it is valid for {}, longer than the declared validity {}",
                format_duration(span),
                format_duration(declared)
            ));
        }
        if span <= self.renewal.renew_before {
            lifetime.push(format!(
                "it is valid for {}, not longer than defaults.renew-before {}",
                format_duration(span),
                format_duration(self.renewal.renew_before)
            ));
        }

        let now = self.now.unix_timestamp();
        if not_before > now {
            lifetime.push(format!(
                "it is not valid before {}",
                cert.validity().not_before
            ));
        }
        if let Some(ca) = issuer_certificate(issuer) {
            if not_after > ca.validity().not_after.timestamp() {
                lifetime.push(format!(
                    "it is valid until {}, past CA `{}`, which expires at {}",
                    cert.validity().not_after,
                    issuer.id,
                    ca.validity().not_after
                ));
            }
            if not_before < ca.validity().not_before.timestamp() {
                lifetime.push(format!(
                    "it is valid from {}, before CA `{}` ({})",
                    cert.validity().not_before,
                    issuer.id,
                    ca.validity().not_before
                ));
            }
        }

        let mut aging = Vec::new();
        let left = not_after - now;
        if left <= 0 {
            aging.push(format!("expired at {}", cert.validity().not_after));
        } else if left < self.renewal.renew_before.as_secs() as i64 {
            aging.push(format!(
                "expires in {} (renew-before {})",
                state::format_remaining(left),
                format_duration(self.renewal.renew_before)
            ));
        }
        (lifetime, aging)
    }

    fn reject(
        &self,
        target: Target,
        issuer: &Ca,
        cert_path: &Path,
        problems: &[String],
    ) -> Diagnostic {
        let request = self.out.join(request_file(target.key_file()));
        let days = target.validity().as_secs().div_ceil(86_400);
        Diagnostic::error(
            target.origin(),
            format!(
                "{REJECTED}{} for {}: {}; nothing was written",
                cert_path.display(),
                target.name(),
                problems.join("; ")
            ),
        )
        .with_help(format!(
            "sign {} with the key of CA `{}` ({}), keeping the request's subject, SANs and \
             extensions (`openssl x509 -req -copy_extensions copy -days {days}`), and place \
             the certificate at {}; or delete {} to wait for it",
            request.display(),
            issuer.id,
            issuer_source(issuer),
            cert_path.display(),
            cert_path.display()
        ))
    }
}

fn decision(
    action: Action,
    reasons: Vec<String>,
    reuse_key: Option<String>,
    keep_cert: Option<Vec<u8>>,
) -> Decision {
    Decision {
        action,
        reasons,
        reuse_key,
        keep_cert,
    }
}

fn issuer_source(issuer: &Ca) -> String {
    issuer
        .imported
        .as_ref()
        .map(|i| i.source.display().to_string())
        .unwrap_or_default()
}

fn issuer_certificate(issuer: &Ca) -> Option<X509Certificate<'_>> {
    let der = issuer.imported.as_ref()?.cert_der.as_slice();
    X509Certificate::from_der(der).ok().map(|(_, cert)| cert)
}

/// Returns true when the signature on `cert` verifies with the public key of `issuer`'s
/// certificate and `cert` names it as its issuer.
fn signed_by(cert: &X509Certificate, issuer: &Ca) -> bool {
    let Some(ca) = issuer_certificate(issuer) else {
        return false;
    };
    cert.issuer().as_raw() == ca.subject().as_raw()
        && cert.verify_signature(Some(ca.public_key())).is_ok()
}

/// Returns the DER of the first CERTIFICATE block of a PEM text, which may carry text
/// around it or further certificates (a chain) after it.
fn first_certificate(text: &str) -> Option<Vec<u8>> {
    pem::parse_many(text)
        .ok()?
        .into_iter()
        .find(|block| block.tag() == "CERTIFICATE")
        .map(|block| block.into_contents())
}

fn sha256_hex(der: &[u8]) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, der)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Returns the text of [`SIGNED_FILE`]: the digest of every externally signed
/// certificate that `plan` keeps or accepts, sorted.
pub fn signed_list(model: &Model, plan: &Plan) -> String {
    let mut digests: Vec<String> = plan
        .decisions
        .iter()
        .filter(|(key, _)| {
            Target::of(model, key).is_some_and(|(_, issuer)| key_unavailable(issuer))
        })
        .filter_map(|(_, d)| d.keep_cert.as_deref().map(sha256_hex))
        .collect();
    digests.sort();
    digests.into_iter().map(|d| format!("{d}\n")).collect()
}

/// The key and CSR of one certificate that a CA without a key in pkic signs.
pub struct Request {
    /// Graph key of the certificate, such as `cert:apiserver`.
    pub object: String,
    pub issuer: String,
    pub action: Action,
    pub key: OutFile,
    pub csr: OutFile,
    pub cert_file: PathBuf,
}

/// Returns the key and CSR of every certificate that a CA without a key in pkic signs.
/// A certificate without a usable key gets a new one. An existing CSR is kept when it
/// requests the same subject, key and extensions, so a rebuild rewrites nothing.
pub fn requests(model: &Model, plan: &Plan, out: &Path) -> Result<Vec<Request>, IssueError> {
    let mut requests = Vec::new();
    for (object, decision) in &plan.decisions {
        let Some((target, issuer)) = Target::of(model, object) else {
            continue;
        };
        if !key_unavailable(issuer) {
            continue;
        }
        let name = target.name();
        let (key, key_pem) = issue::obtain_key(&name, decision.reuse_key.as_deref(), target.key())?;
        let request = target
            .request_params()?
            .serialize_request(&key)
            .map_err(|e| IssueError {
                object: name.clone(),
                message: format!("writing the CSR failed: {e}"),
            })?;
        let csr_file = request_file(target.key_file());
        let existing = std::fs::read_to_string(out.join(&csr_file)).ok();
        let csr_text = match existing {
            Some(text) if same_request(&text, request.der()) => text,
            _ => issue::pem_text("CERTIFICATE REQUEST", request.der().to_vec()),
        };
        requests.push(Request {
            object: object.clone(),
            issuer: issuer.id.clone(),
            action: decision.action,
            key: OutFile {
                relative: target.key_file().relative.clone(),
                contents: key_pem.into_bytes(),
                secret: true,
            },
            csr: OutFile {
                relative: csr_file,
                contents: csr_text.into_bytes(),
                secret: false,
            },
            cert_file: target.cert_file().relative.clone(),
        });
    }
    Ok(requests)
}

/// Returns true when the PEM CSR `text` has a valid signature and requests exactly what the CSR
/// `der` requests: the same subject, public key and attributes.
fn same_request(text: &str, der: &[u8]) -> bool {
    let Ok(block) = pem::parse(text) else {
        return false;
    };
    if block.tag() != "CERTIFICATE REQUEST" {
        return false;
    }
    let (Ok((_, existing)), Ok((_, expected))) = (
        X509CertificationRequest::from_der(block.contents()),
        X509CertificationRequest::from_der(der),
    ) else {
        return false;
    };
    existing.certification_request_info.raw == expected.certification_request_info.raw
        && existing.verify_signature().is_ok()
}

/// Returns the operator's steps while certificates await signature: which CSR to
/// sign with which CA and where to place each certificate, then the next build.
pub fn signing_steps(plan: &Plan, requests: &[Request], out: &Path) -> Vec<String> {
    let mut steps = Vec::new();
    for request in requests
        .iter()
        .filter(|r| r.action == Action::AwaitSignature)
    {
        let reasons = plan
            .get(&request.object)
            .map(|d| d.reasons.join("; "))
            .unwrap_or_default();
        steps.push(format!(
            "{} ({reasons}): sign {} with CA `{}`, then place the certificate at {}",
            request.object,
            out.join(&request.csr.relative).display(),
            request.issuer,
            out.join(&request.cert_file).display()
        ));
    }
    let blocked: Vec<&str> = plan
        .decisions
        .iter()
        .filter(|(key, d)| {
            d.action == Action::AwaitSignature && !requests.iter().any(|r| &r.object == *key)
        })
        .map(|(key, _)| key.as_str())
        .collect();
    if !blocked.is_empty() {
        steps.push(format!(
            "pkic signs {} once the intermediate CAs above them are signed",
            blocked.join(", ")
        ));
    }
    steps.push(
        "run `pkic build` again: it verifies the signed certificates, then writes the \
         certificates, bundles, kubeconfigs and flag files"
            .into(),
    );
    steps
}

/// Returns the message of a build that wrote keys and CSRs and waits for certificates.
pub fn waiting_message(plan: &Plan, requests: &[Request], out: &Path) -> String {
    let steps: Vec<String> = signing_steps(plan, requests, out)
        .into_iter()
        .map(|step| format!("  {step}"))
        .collect();
    format!(
        "[build] certificates await signature by a CA whose key pkic does not have; this \
         build wrote only keys and CSRs:\n{}",
        steps.join("\n")
    )
}
