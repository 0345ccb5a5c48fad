//! `pkic check -m MANIFEST`: compares the tree with a manifest's intent. Every
//! declared output must be present, and each CA and certificate must match its
//! specification: subject, SANs, extended key usage, key algorithm and issuer.
//!
//! NOTE: validity lengths, key formats, bundle order and the text of rendered
//! kubeconfigs and flag files are not compared; `pkic plan` and
//! `pkic build --check` cover those.

use std::path::Path;

use super::Prior;
use super::findings::{self, Finding};
use super::store::KnownFiles;
use super::x509::CertInfo;
use crate::model::rotation::Stage;
use crate::model::{KeyAlgorithm, Model, OutputFile, San, Subject, Usage};
use crate::state::expected_subject;

/// Lowers to warnings the findings about choices that `model` declares on purpose and
/// that its own validation already warns about: an admin certificate declared without a
/// group (it may rely on a binding to its user name) and an etcd certificate declared for
/// server use only (etcd's gateway then cannot use it as a client).
pub fn lower_declared_choices(findings: &mut [Finding], model: &Model) {
    for finding in findings.iter_mut() {
        let Some(cert) = finding.file.as_deref().and_then(|f| cert_of_file(model, f)) else {
            continue;
        };
        let declared = match finding.id {
            id if id == findings::ADMIN_NO_GROUP.id => cert.subject.organizations.is_empty(),
            id if id == findings::ETCD_CERT_NOT_CLIENT.id => cert.usage == Usage::Server,
            _ => false,
        };
        if declared {
            finding.level = findings::Level::Warning;
            finding.message.push_str(", as the manifest declares");
        }
    }
}

/// Returns the certificate that a finding's file label names: a certificate file, or
/// the client certificate embedded in a kubeconfig (`admin.conf: client-certificate-data`).
fn cert_of_file<'m>(model: &'m Model, label: &str) -> Option<&'m crate::model::Cert> {
    let (file, embedded) = match label.split_once(": ") {
        Some((file, _)) => (file, true),
        None => (label, false),
    };
    if embedded {
        let kubeconfig = model
            .kubeconfigs
            .iter()
            .find(|k| k.file.relative == Path::new(file))?;
        return model.cert(&kubeconfig.user);
    }
    model
        .certs
        .iter()
        .find(|c| c.cert_file.relative == Path::new(file))
}

/// Checks the tree under `root` against `model`, with the facts in `prior` from the
/// build that wrote it.
pub fn check(root: &Path, model: &Model, prior: &Prior) -> Vec<Finding> {
    let mut intent = Intent {
        root,
        files: &prior.files,
        found: Vec::new(),
    };
    for ca in &model.cas {
        let object = format!("CA `{}`", ca.id);
        if !crate::csr::key_unavailable(ca) {
            intent.present(&ca.key_file, &object);
        }
        // During `add-new` the manifest describes the staged CA; the current one may
        // still have the old subject and key algorithm.
        let staged = ca
            .rotation
            .as_ref()
            .filter(|r| r.stage == Stage::AddNew)
            .and(ca.rotation_files.staged_cert.as_ref());
        let described = match staged {
            Some(staged) => {
                intent.present(&ca.cert_file, &object);
                staged
            }
            None => &ca.cert_file,
        };
        if let Some(cert) = intent.cert(described, &object) {
            intent.subject(described, &object, &cert, &ca.subject);
            intent.algorithm(described, &object, &cert, ca.key.algorithm);
        }
    }
    for leaf in &model.certs {
        let object = format!("certificate `{}`", leaf.id);
        intent.present(&leaf.key_file, &object);
        let Some(cert) = intent.cert(&leaf.cert_file, &object) else {
            continue;
        };
        intent.subject(&leaf.cert_file, &object, &cert, &leaf.subject);
        intent.algorithm(&leaf.cert_file, &object, &cert, leaf.key.algorithm);
        intent.sans(&leaf.cert_file, &object, &cert, &leaf.sans);
        intent.usage(&leaf.cert_file, &object, &cert, leaf.usage);
        if let Some(issuer) = model.ca(&leaf.issuer)
            && let Some(issuer_cert) = intent.read(&issuer.cert_file)
            && !prior.signed(&cert, &issuer_cert)
        {
            intent.differs(
                &leaf.cert_file,
                format!(
                    "{object} is not signed by the current certificate of its issuer `{}` ({})",
                    leaf.issuer,
                    issuer.cert_file.relative.display()
                ),
            );
        }
    }
    for bundle in &model.bundles {
        intent.present(&bundle.file, &format!("bundle `{}`", bundle.id));
    }
    for account in &model.service_accounts {
        let object = format!("service-account key `{}`", account.id);
        intent.present(&account.key_file, &object);
        intent.present(&account.public_key_file, &object);
    }
    for kubeconfig in &model.kubeconfigs {
        intent.present(&kubeconfig.file, &format!("kubeconfig `{}`", kubeconfig.id));
    }
    for flags in &model.flag_files {
        intent.present(&flags.file, &format!("flag file `{}`", flags.id));
    }
    intent.found
}

struct Intent<'a> {
    root: &'a Path,
    files: &'a KnownFiles,
    found: Vec<Finding>,
}

impl Intent<'_> {
    fn label(file: &OutputFile) -> String {
        file.relative.to_string_lossy().to_string()
    }

    fn present(&mut self, file: &OutputFile, object: &str) -> bool {
        if self.files.is_file(self.root, &file.relative) {
            return true;
        }
        let label = Self::label(file);
        self.found.push(Finding::new(
            findings::OUTPUT_MISSING,
            Some(&label),
            format!("{label} of {object} is declared by the manifest but not in the tree"),
            "run `pkic build` with this manifest, or remove the object from the manifest",
        ));
        false
    }

    fn read(&self, file: &OutputFile) -> Option<CertInfo> {
        if let Some(known) = self.files.certs(&file.relative) {
            return known.certs.first().cloned();
        }
        let bytes = self.files.read(self.root, &file.relative).ok()?;
        let block = pem::parse(bytes).ok()?;
        CertInfo::parse(block.contents()).ok()
    }

    fn cert(&mut self, file: &OutputFile, object: &str) -> Option<CertInfo> {
        if !self.present(file, object) {
            return None;
        }
        self.read(file)
    }

    fn differs(&mut self, file: &OutputFile, message: String) {
        let label = Self::label(file);
        self.found.push(Finding::new(
            findings::OUTPUT_DIFFERS,
            Some(&label),
            message,
            "run `pkic plan` to see the change, then `pkic build` to reissue it",
        ));
    }

    fn subject(&mut self, file: &OutputFile, object: &str, cert: &CertInfo, subject: &Subject) {
        let expected: Vec<String> = expected_subject(subject)
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let expected = expected.join(", ");
        if cert.subject != expected {
            self.differs(
                file,
                format!(
                    "{object} has subject \"{}\", the manifest expects \"{expected}\"",
                    cert.subject
                ),
            );
        }
    }

    fn algorithm(
        &mut self,
        file: &OutputFile,
        object: &str,
        cert: &CertInfo,
        algorithm: KeyAlgorithm,
    ) {
        let expected = match algorithm {
            KeyAlgorithm::Rsa(bits) => format!("RSA {bits}"),
            KeyAlgorithm::EcdsaP256 => "ECDSA P-256".into(),
            KeyAlgorithm::EcdsaP384 => "ECDSA P-384".into(),
            KeyAlgorithm::Ed25519 => "Ed25519".into(),
        };
        if cert.public_key.algorithm != expected {
            self.differs(
                file,
                format!(
                    "{object} has a {} key, the manifest expects {algorithm}",
                    cert.public_key.algorithm
                ),
            );
        }
    }

    fn sans(&mut self, file: &OutputFile, object: &str, cert: &CertInfo, expected: &[San]) {
        let lacking: Vec<String> = expected
            .iter()
            .filter(|s| !cert.sans.contains(s))
            .map(San::to_string)
            .collect();
        let extra: Vec<String> = cert
            .sans
            .iter()
            .filter(|s| !expected.contains(s))
            .map(San::to_string)
            .collect();
        if !lacking.is_empty() {
            self.differs(
                file,
                format!(
                    "{object} lacks the SANs {} that the manifest gives it",
                    lacking.join(", ")
                ),
            );
        }
        if !extra.is_empty() {
            self.differs(
                file,
                format!(
                    "{object} has SANs {} that the manifest does not give it",
                    extra.join(", ")
                ),
            );
        }
    }

    fn usage(&mut self, file: &OutputFile, object: &str, cert: &CertInfo, usage: Usage) {
        let (server, client) = cert
            .eku
            .map_or((false, false), |e| (e.server_auth, e.client_auth));
        if usage.serves() != server || usage.authenticates_client() != client {
            let found = match (server, client) {
                (true, true) => "serverAuth and clientAuth",
                (true, false) => "serverAuth only",
                (false, true) => "clientAuth only",
                (false, false) => "neither serverAuth nor clientAuth",
            };
            self.differs(
                file,
                format!("{object} allows {found}, the manifest expects usage {usage:?}"),
            );
        }
    }
}
