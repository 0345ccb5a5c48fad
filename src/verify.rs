//! Verify stage: checks what `issue` made, before anything is written.
//!
//! Each leaf is verified with rustls-webpki (an implementation independent of rcgen)
//! against its issuer chain, for the usage it declares and for every name it serves.
//! Then each TLS connection of the cluster is checked in both directions with the trust
//! files the kubeconfigs and flag files point at: the certificate one side presents
//! must verify with the CA file the other side reads.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rayon::prelude::*;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use webpki::{EndEntityCert, KeyUsage};
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::diag::Severity;
use crate::issue::Issued;
use crate::model::{Cert, Component, FlagFile, Kubeconfig, Model, San};
use crate::x509::SignatureProofs;

/// One problem found in a built PKI, with a stable id.
#[derive(Debug, Clone)]
pub struct Finding {
    pub id: &'static str,
    pub severity: Severity,
    pub subject: String,
    pub message: String,
    pub help: Option<String>,
}

impl Finding {
    fn error(id: &'static str, subject: impl Into<String>, message: impl Into<String>) -> Finding {
        Finding {
            id,
            severity: Severity::Error,
            subject: subject.into(),
            message: message.into(),
            help: None,
        }
    }

    fn help(mut self, help: impl Into<String>) -> Finding {
        self.help = Some(help.into());
        self
    }
}

/// Requirement of one side of a connection on the other side's certificate.
enum Purpose<'a> {
    Server(&'a San),
    Client,
}

impl Purpose<'_> {
    fn label(&self) -> String {
        match self {
            Purpose::Server(name) => format!("server {name}"),
            Purpose::Client => "client".into(),
        }
    }
}

struct Verifier<'a> {
    model: &'a Model,
    issued: &'a Issued,
    time: UnixTime,
    findings: Vec<Finding>,
    cache: Mutex<HashMap<String, Result<(), String>>>,
    known: &'a Verified,
    passed: Mutex<HashSet<String>>,
    /// The subject (DER) of every CA certificate, by CA id.
    ca_subjects: HashMap<&'a str, Vec<u8>>,
    proofs: Mutex<SignatureProofs>,
}

/// Digests of verifications that succeeded: the leaf, its trust anchors, the purpose and
/// the day. A rebuild that finds a digest here skips the signature checks it stands for,
/// so a no-op rebuild of thousands of nodes needs no public-key operation.
#[derive(Debug, Default, Clone)]
pub struct Verified(HashSet<String>);

impl Verified {
    /// Reads the digests from a file written by [`Verified::to_text`]; a missing or
    /// unreadable file gives an empty set.
    pub fn read(path: &Path) -> Verified {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        Verified(text.lines().map(str::to_string).collect())
    }

    /// Returns the digests, one per line, sorted so that an unchanged set gives the same text.
    pub fn to_text(&self) -> String {
        let mut lines: Vec<&String> = self.0.iter().collect();
        lines.sort();
        lines.into_iter().map(|l| format!("{l}\n")).collect()
    }
}

/// The findings of the verify stage, and the verifications and signatures it proved.
pub struct Verification {
    pub findings: Vec<Finding>,
    /// Digests of every verification that succeeded, those of `known` included.
    pub verified: Verified,
    /// The signatures that the verified chains are made of.
    pub proofs: SignatureProofs,
}

/// Runs every check at time `now`.
pub fn verify(model: &Model, issued: &Issued, now: SystemTime, known: &Verified) -> Verification {
    let since_epoch = now.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let ca_subjects = issued
        .cas
        .iter()
        .filter_map(|(id, ca)| {
            let (_, cert) = X509Certificate::from_der(&ca.der).ok()?;
            Some((id.as_str(), cert.subject().as_raw().to_vec()))
        })
        .collect();
    let mut verifier = Verifier {
        model,
        issued,
        time: UnixTime::since_unix_epoch(since_epoch),
        findings: Vec::new(),
        cache: Mutex::new(HashMap::new()),
        known,
        passed: Mutex::new(HashSet::new()),
        ca_subjects,
        proofs: Mutex::new(SignatureProofs::default()),
    };
    verifier.check_chains();
    verifier.check_kubeconfigs();
    verifier.check_flag_connections();
    Verification {
        findings: verifier.findings,
        verified: Verified(verifier.passed.into_inner().expect("no panic while locked")),
        proofs: verifier.proofs.into_inner().expect("no panic while locked"),
    }
}

impl Verifier<'_> {
    /// Returns an error text when `leaf` does not verify with the CAs of `trust` (a CA or
    /// bundle id) for `purpose`.
    /// Verifies like [`Self::verify_uncached`], remembering each result: every kubeconfig
    /// of a cluster checks the same apiserver certificate against the same CA.
    fn verify_leaf(&self, leaf: &str, trust: &[String], purpose: &Purpose) -> Result<(), String> {
        let key = format!("{leaf}|{}|{}", trust.join(","), purpose.label());
        if let Some(result) = self.cache.lock().expect("no panic while locked").get(&key) {
            return result.clone();
        }
        let digest = self.digest(leaf, trust, purpose);
        let result = if self.known.0.contains(&digest) {
            Ok(())
        } else {
            self.verify_uncached(leaf, trust, purpose)
        };
        if result.is_ok() {
            self.passed
                .lock()
                .expect("no panic while locked")
                .insert(digest);
        }
        self.cache
            .lock()
            .expect("no panic while locked")
            .insert(key, result.clone());
        result
    }

    /// Returns the SHA-256 of what a verification depends on: the leaf's DER, each trust
    /// anchor's DER, each intermediate's DER, the purpose and the UTC day.
    fn digest(&self, leaf: &str, trust: &[String], purpose: &Purpose) -> String {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        context.update(&self.issued.certs[leaf].der);
        for ca in trust.iter().chain(self.chain_of(leaf).iter()) {
            context.update(b"|");
            context.update(&self.issued.cas[ca].der);
        }
        let day = self.time.as_secs() / 86_400;
        context.update(format!("|{}|{day}", purpose.label()).as_bytes());
        context
            .finish()
            .as_ref()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }

    fn verify_uncached(
        &self,
        leaf: &str,
        trust: &[String],
        purpose: &Purpose,
    ) -> Result<(), String> {
        let der = CertificateDer::from(self.issued.certs[leaf].der.as_slice());
        let cert =
            EndEntityCert::try_from(&der).map_err(|e| format!("unparsable certificate: {e}"))?;
        let anchor_ders: Vec<CertificateDer> = trust
            .iter()
            .map(|ca| CertificateDer::from(self.issued.cas[ca].der.as_slice()))
            .collect();
        let anchors = anchor_ders
            .iter()
            .map(|d| {
                webpki::anchor_from_trusted_cert(d).map_err(|e| format!("bad trust anchor: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let intermediates: Vec<CertificateDer> = self
            .chain_of(leaf)
            .iter()
            .map(|ca| CertificateDer::from(self.issued.cas[ca].der.as_slice()))
            .collect();
        let usage = match purpose {
            Purpose::Server(_) => KeyUsage::server_auth(),
            Purpose::Client => KeyUsage::client_auth(),
        };
        cert.verify_for_usage(
            webpki::ALL_VERIFICATION_ALGS,
            &anchors,
            &intermediates,
            self.time,
            usage,
            None,
            None,
        )
        .map_err(|e| format!("{e:?}"))?;
        if let Purpose::Server(name) = purpose {
            let server_name = match name {
                San::Dns(dns) => ServerName::try_from(dns.as_str()).map_err(|e| e.to_string())?,
                San::Ip(ip) => ServerName::from(*ip),
                San::Uri(uri) => return Err(format!("cannot dial URI {uri}")),
            };
            cert.verify_is_valid_for_subject_name(&server_name)
                .map_err(|_| format!("not valid for {name}"))?;
        }
        Ok(())
    }

    /// Returns the CA ids from a leaf's issuer up to its root.
    fn chain_of(&self, leaf: &str) -> Vec<String> {
        let mut chain = Vec::new();
        let mut next = self.model.cert(leaf).map(|c| c.issuer.clone());
        while let Some(id) = next {
            if chain.contains(&id) {
                break;
            }
            next = self.model.ca(&id).and_then(|c| c.issuer.clone());
            chain.push(id);
        }
        chain
    }

    fn check_chains(&mut self) {
        let findings: Vec<Finding> = self
            .model
            .certs
            .par_iter()
            .flat_map_iter(|cert| self.chain_findings(cert))
            .collect();
        self.findings.extend(findings);
    }

    fn chain_findings(&self, cert: &Cert) -> Vec<Finding> {
        let root = self.chain_of(&cert.id).last().cloned().unwrap_or_default();
        // A wildcard SAN is checked with a name it covers, since that is what clients dial.
        let names: Vec<San> = cert
            .sans
            .iter()
            .filter_map(|san| match san {
                San::Uri(_) => None,
                San::Dns(name) => Some(San::Dns(name.replacen("*.", "wildcard-check.", 1))),
                San::Ip(_) => Some(san.clone()),
            })
            .collect();
        let mut purposes = Vec::new();
        if cert.usage.serves() {
            purposes.extend(names.iter().map(Purpose::Server));
        }
        if cert.usage.authenticates_client() {
            purposes.push(Purpose::Client);
        }
        let findings: Vec<Finding> = purposes
            .iter()
            .filter_map(|purpose| {
                let error = self
                    .verify_leaf(&cert.id, std::slice::from_ref(&root), purpose)
                    .err()?;
                Some(Finding::error(
                    "chain-invalid",
                    format!("certificate `{}`", cert.id),
                    format!("does not verify against its root `{root}`: {error}"),
                ))
            })
            .collect();
        if findings.is_empty() && !purposes.is_empty() {
            self.prove_links(cert);
        }
        findings
    }

    /// Records each signature of the chain that a leaf just verified along. The chain
    /// is certain only when its CAs' subjects differ: with two CAs of one name, the
    /// verifier may have taken either.
    fn prove_links(&self, cert: &Cert) {
        let chain = self.chain_of(&cert.id);
        let subjects: Option<Vec<&Vec<u8>>> = chain
            .iter()
            .map(|id| self.ca_subjects.get(id.as_str()))
            .collect();
        let Some(subjects) = subjects else {
            return;
        };
        let distinct = subjects
            .iter()
            .enumerate()
            .all(|(i, subject)| !subjects[i + 1..].contains(subject));
        if !distinct {
            return;
        }
        let mut ders = vec![self.issued.certs[&cert.id].der.as_slice()];
        ders.extend(chain.iter().map(|id| self.issued.cas[id].der.as_slice()));
        let mut proofs = self.proofs.lock().expect("no panic while locked");
        for link in ders.windows(2) {
            proofs.insert(link[0], link[1]);
        }
    }

    fn apiserver_flags(&self) -> Option<&FlagFile> {
        self.model
            .flag_files
            .iter()
            .find(|f| f.component == Component::KubeApiserver)
    }

    /// kubectl, kubelets, the controller-manager and the scheduler dial the apiserver.
    fn check_kubeconfigs(&mut self) {
        let Some(apiserver) = self.apiserver_flags() else {
            return;
        };
        let serving = apiserver.refs.get("tls-cert").cloned();
        let client_ca = apiserver.refs.get("client-ca").cloned();
        let findings: Vec<Finding> = self
            .model
            .kubeconfigs
            .par_iter()
            .flat_map_iter(|kubeconfig| {
                self.kubeconfig_findings(kubeconfig, serving.as_deref(), client_ca.as_deref())
            })
            .collect();
        self.findings.extend(findings);
    }

    fn kubeconfig_findings(
        &self,
        kubeconfig: &Kubeconfig,
        serving: Option<&str>,
        client_ca: Option<&str>,
    ) -> Vec<Finding> {
        let mut findings = Vec::new();
        let subject = format!("kubeconfig `{}`", kubeconfig.id);
        let host = server_url_host(&kubeconfig.server);
        if let (Some(serving), Some(host)) = (serving, &host) {
            let trust = self.model.trusted_cas(&kubeconfig.ca);
            if let Err(error) = self.verify_leaf(serving, &trust, &Purpose::Server(host)) {
                findings.push(
                    Finding::error(
                        "server-untrusted",
                        subject.clone(),
                        format!(
                            "the apiserver's certificate `{serving}` does not verify with CA \
                             `{}` for {host}: {error}",
                            kubeconfig.ca
                        ),
                    )
                    .help(format!(
                        "point `ca` at the CA that signed `{serving}`, or add {host} to its SANs"
                    )),
                );
            }
        }
        if let Some(client_ca) = client_ca {
            let trust = self.model.trusted_cas(client_ca);
            if let Err(error) = self.verify_leaf(&kubeconfig.user, &trust, &Purpose::Client) {
                findings.push(
                    Finding::error(
                        "client-untrusted",
                        subject,
                        format!(
                            "client certificate `{}` does not verify with the apiserver's \
                             --client-ca-file `{client_ca}`: {error}",
                            kubeconfig.user
                        ),
                    )
                    .help(format!(
                        "add the CA of `{}` to bundle `{client_ca}`",
                        kubeconfig.user
                    )),
                );
            }
        }
        findings
    }

    fn check_flag_connections(&mut self) {
        let apiserver = self
            .apiserver_flags()
            .map(|f| f.refs.clone())
            .unwrap_or_default();
        let files: Vec<FlagFile> = self.model.flag_files.clone();
        for file in &files {
            match file.component {
                Component::Kubelet => self.check_kubelet(&apiserver, file),
                Component::Etcd => self.check_etcd(&apiserver, file, &files),
                Component::KubeApiserver => self.check_front_proxy(file),
                Component::KubeControllerManager => self.check_root_ca(&apiserver, file),
                _ => {}
            }
        }
    }

    fn check_kubelet(&mut self, apiserver: &BTreeMap<String, String>, kubelet: &FlagFile) {
        let node_name = kubelet.node.clone().unwrap_or_default();
        let subject = format!("kubelet on `{node_name}`");
        if let (Some(client), Some(ca)) = (
            apiserver.get("kubelet-client"),
            kubelet.refs.get("client-ca"),
        ) {
            self.expect(
                client,
                ca,
                &Purpose::Client,
                &subject,
                "apiserver -> kubelet: the apiserver's --kubelet-client-certificate",
                "--client-ca-file",
            );
        }
        let Some(serving) = kubelet.refs.get("tls-cert") else {
            return;
        };
        match apiserver.get("kubelet-ca") {
            Some(ca) => {
                let node = self.model.node(&node_name);
                let mut names = vec![San::Dns(node_name.clone())];
                names.extend(
                    node.into_iter()
                        .flat_map(|n| n.ips.iter().copied().map(San::Ip)),
                );
                for name in names {
                    self.expect(
                        serving,
                        ca,
                        &Purpose::Server(&name),
                        &subject,
                        "apiserver -> kubelet: the kubelet's --tls-cert-file",
                        "--kubelet-certificate-authority",
                    );
                }
            }
            None => self.findings.push(Finding {
                id: "one-way-tls",
                severity: Severity::Warning,
                subject,
                message: "apiserver -> kubelet is one-way TLS: the apiserver does not verify the \
                          kubelet's serving certificate"
                    .into(),
                help: Some(
                    "set `kubelet-ca` in [flags.kube-apiserver] (--kubelet-certificate-authority)"
                        .into(),
                ),
            }),
        }
    }

    fn check_etcd(
        &mut self,
        apiserver: &BTreeMap<String, String>,
        member: &FlagFile,
        all: &[FlagFile],
    ) {
        let name = member.node.clone().unwrap_or_default();
        let subject = format!("etcd member `{name}`");
        let node = self.model.node(&name).cloned();
        let address = node
            .as_ref()
            .and_then(|n| n.ips.first().copied())
            .map(San::Ip);
        if let (Some(client), Some(ca)) =
            (apiserver.get("etcd-client"), member.refs.get("trusted-ca"))
        {
            self.expect(
                client,
                ca,
                &Purpose::Client,
                &subject,
                "apiserver -> etcd: --etcd-certfile",
                "--trusted-ca-file",
            );
        }
        if let (Some(server), Some(ca), Some(address)) = (
            member.refs.get("server-cert"),
            apiserver.get("etcd-ca"),
            &address,
        ) {
            self.expect(
                server,
                ca,
                &Purpose::Server(address),
                &subject,
                "apiserver -> etcd: the member's --cert-file",
                "the apiserver's --etcd-cafile",
            );
        }
        let Some(peer) = member.refs.get("peer-cert") else {
            return;
        };
        for other in all.iter().filter(|f| f.component == Component::Etcd) {
            let Some(ca) = other.refs.get("peer-trusted-ca") else {
                continue;
            };
            self.expect(
                peer,
                ca,
                &Purpose::Client,
                &subject,
                "etcd peer: --peer-cert-file",
                "the other member's --peer-trusted-ca-file",
            );
            if let Some(address) = &address {
                self.expect(
                    peer,
                    ca,
                    &Purpose::Server(address),
                    &subject,
                    "etcd peer: --peer-cert-file",
                    "the other member's --peer-trusted-ca-file",
                );
            }
        }
    }

    /// Pods verify the apiserver with the `ca.crt` that the controller-manager's
    /// `--root-ca-file` puts into every service-account token volume.
    fn check_root_ca(&mut self, apiserver: &BTreeMap<String, String>, manager: &FlagFile) {
        let (Some(serving), Some(root_ca)) =
            (apiserver.get("tls-cert"), manager.refs.get("root-ca"))
        else {
            return;
        };
        let name = San::Dns("kubernetes.default.svc".into());
        let (serving, root_ca) = (serving.clone(), root_ca.clone());
        self.expect(
            &serving,
            &root_ca,
            &Purpose::Server(&name),
            "pods (service-account ca.crt)",
            "the apiserver's --tls-cert-file",
            "kube-controller-manager's --root-ca-file",
        );
    }

    fn check_front_proxy(&mut self, apiserver: &FlagFile) {
        if let (Some(client), Some(ca)) = (
            apiserver.refs.get("front-proxy-client"),
            apiserver.refs.get("requestheader-ca"),
        ) {
            let (client, ca) = (client.clone(), ca.clone());
            self.expect(
                &client,
                &ca,
                &Purpose::Client,
                "front proxy",
                "front-proxy -> aggregated API server: --proxy-client-cert-file",
                "--requestheader-client-ca-file",
            );
        }
    }

    fn expect(
        &mut self,
        leaf: &str,
        trust: &str,
        purpose: &Purpose,
        subject: &str,
        presented: &str,
        verified_by: &str,
    ) {
        let cas = self.model.trusted_cas(trust);
        if let Err(error) = self.verify_leaf(leaf, &cas, purpose) {
            let (id, what) = match purpose {
                Purpose::Server(name) => ("server-untrusted", format!(" for {name}")),
                Purpose::Client => ("client-untrusted", String::new()),
            };
            self.findings.push(Finding::error(
                id,
                subject.to_string(),
                format!("{presented} `{leaf}` does not verify with {verified_by} `{trust}`{what}: {error}"),
            ));
        }
    }
}

fn server_url_host(url: &str) -> Option<San> {
    let authority = url.strip_prefix("https://")?.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(rest) => rest.split(']').next()?,
        None => authority.split(':').next()?,
    };
    San::parse(host).ok()
}
