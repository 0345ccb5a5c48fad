//! TLS verification of one presented certificate chain against one CA file, with
//! rustls-webpki (as `verify` does for a fresh build), and name matching.
//!
//! rustls-webpki rejects X.509 v1 end-entity certificates, which Go's crypto/x509
//! still accepts. For such a leaf the verdict comes from a signature check by a CA of
//! the file and the validity period instead, and the verdict states that.

use std::net::IpAddr;
use std::time::Duration;

use rustls_pki_types::{CertificateDer, ServerName, UnixTime};
use webpki::{EndEntityCert, KeyUsage};

use super::inventory::Needs;
use super::x509::CertInfo;
use crate::model::San;

/// The reason a presented chain fails verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    Expired,
    NotYetValid,
    /// The certificate does not cover the dialed name.
    Name(String),
    /// The extended key usage does not allow the connection's side.
    Usage,
    /// A CA of the file has the issuer's name, but another key signed the certificate.
    Stale {
        ca_subject: String,
    },
    /// No CA of the file issued the chain; the text is the verifier's reason.
    Untrusted(String),
}

impl Failure {
    pub fn describe(&self) -> String {
        match self {
            Failure::Expired => "the certificate has expired".into(),
            Failure::NotYetValid => "the certificate is not valid yet".into(),
            Failure::Name(name) => format!("the certificate does not cover {name}"),
            Failure::Usage => "the extended key usage does not allow this side of TLS".into(),
            Failure::Stale { ca_subject } => format!(
                "the CA file contains a CA named \"{ca_subject}\", but another key with that name \
                 signed the certificate (stale certificate or regenerated CA)"
            ),
            Failure::Untrusted(reason) => format!("no CA of the file issued it ({reason})"),
        }
    }
}

/// The kind of verification a chain passed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// rustls-webpki built and checked the chain.
    Chain,
    /// An X.509 v1 leaf, checked by signature and validity only.
    SignatureOnly,
}

/// Verifies `presented` (leaf first, then intermediates) with the CAs of `anchors` at
/// `now` (Unix seconds), for `needs`, and for `name` when it is a server's.
pub fn verify(
    presented: &[CertInfo],
    anchors: &[CertInfo],
    needs: Needs,
    name: Option<&str>,
    now: i64,
) -> Result<Verified, Failure> {
    let Some(leaf) = presented.first() else {
        return Err(Failure::Untrusted("no certificate presented".into()));
    };
    if leaf.version == 1 {
        return verify_v1(leaf, anchors, name, now);
    }

    let leaf_der = CertificateDer::from(leaf.der.as_slice());
    let end_entity = EndEntityCert::try_from(&leaf_der)
        .map_err(|e| Failure::Untrusted(format!("rustls-webpki cannot parse it: {e:?}")))?;
    let anchor_ders: Vec<CertificateDer> = anchors
        .iter()
        .map(|c| CertificateDer::from(c.der.as_slice()))
        .collect();
    let trust_anchors: Vec<_> = anchor_ders
        .iter()
        .filter_map(|d| webpki::anchor_from_trusted_cert(d).ok())
        .collect();
    let intermediates: Vec<CertificateDer> = presented[1..]
        .iter()
        .map(|c| CertificateDer::from(c.der.as_slice()))
        .collect();

    let usage = match needs {
        Needs::Server => KeyUsage::server_auth(),
        Needs::Client => KeyUsage::client_auth(),
    };
    let time = UnixTime::since_unix_epoch(Duration::from_secs(now.max(0) as u64));
    let result = end_entity.verify_for_usage(
        webpki::ALL_VERIFICATION_ALGS,
        &trust_anchors,
        &intermediates,
        time,
        usage,
        None,
        None,
    );

    if let Err(error) = result {
        return Err(classify(error, presented, anchors));
    }

    match name {
        Some(name) if !covers(&leaf.sans, name) => Err(Failure::Name(name.to_string())),
        Some(name) => {
            let server_name = server_name(name).ok_or_else(|| Failure::Name(name.to_string()))?;
            end_entity
                .verify_is_valid_for_subject_name(&server_name)
                .map(|()| Verified::Chain)
                .map_err(|_| Failure::Name(name.to_string()))
        }
        None => Ok(Verified::Chain),
    }
}

fn classify(error: webpki::Error, presented: &[CertInfo], anchors: &[CertInfo]) -> Failure {
    match error {
        webpki::Error::CertExpired { .. } => Failure::Expired,
        webpki::Error::CertNotValidYet { .. } => Failure::NotYetValid,
        webpki::Error::RequiredEkuNotFoundContext(_) => Failure::Usage,
        #[allow(deprecated)]
        webpki::Error::RequiredEkuNotFound => Failure::Usage,
        other => {
            let top = presented.last().expect("presented is not empty");
            match anchors.iter().find(|a| a.subject_der == top.issuer_der) {
                Some(ca) if !top.is_signed_by(ca) => Failure::Stale {
                    ca_subject: ca.subject.clone(),
                },
                _ => Failure::Untrusted(format!("{other:?}")),
            }
        }
    }
}

/// Verifies an X.509 v1 leaf: a CA of the file signed it and it is valid now.
fn verify_v1(
    leaf: &CertInfo,
    anchors: &[CertInfo],
    name: Option<&str>,
    now: i64,
) -> Result<Verified, Failure> {
    if !anchors.iter().any(|a| leaf.is_signed_by(a)) {
        return Err(
            match anchors.iter().find(|a| a.subject_der == leaf.issuer_der) {
                Some(ca) => Failure::Stale {
                    ca_subject: ca.subject.clone(),
                },
                None => {
                    Failure::Untrusted("X.509 v1 certificate signed by no CA of the file".into())
                }
            },
        );
    }
    if now > leaf.not_after {
        return Err(Failure::Expired);
    }
    if now < leaf.not_before {
        return Err(Failure::NotYetValid);
    }
    match name {
        Some(name) if !covers(&leaf.sans, name) => Err(Failure::Name(name.to_string())),
        _ => Ok(Verified::SignatureOnly),
    }
}

fn server_name(name: &str) -> Option<ServerName<'static>> {
    match name.parse::<IpAddr>() {
        Ok(ip) => Some(ServerName::from(ip)),
        Err(_) => ServerName::try_from(name.to_string()).ok(),
    }
}

/// True when the SANs cover a host name or IP address, with `*.` wildcards matching
/// one label, as Go's crypto/x509 matches them (the CN is never consulted).
pub fn covers(sans: &[San], name: &str) -> bool {
    if let Ok(ip) = name.trim_matches(['[', ']']).parse::<IpAddr>() {
        return sans
            .iter()
            .any(|s| matches!(s, San::Ip(found) if *found == ip));
    }
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    sans.iter().any(|san| {
        let San::Dns(pattern) = san else {
            return false;
        };
        let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
        match pattern.strip_prefix("*.") {
            Some(suffix) => name
                .split_once('.')
                .is_some_and(|(first, rest)| !first.is_empty() && rest == suffix),
            None => pattern == name,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sans() -> Vec<San> {
        vec![
            San::Dns("kubernetes.default.svc".into()),
            San::Dns("*.example.test".into()),
            San::Ip("10.96.0.1".parse().unwrap()),
        ]
    }

    #[test]
    fn covers_exact_dns_name() {
        assert!(covers(&sans(), "kubernetes.default.svc"));
        assert!(covers(&sans(), "Kubernetes.Default.Svc."));
        assert!(!covers(&sans(), "kubernetes.default"));
    }

    #[test]
    fn wildcard_matches_one_label() {
        assert!(covers(&sans(), "api.example.test"));
        assert!(!covers(&sans(), "a.b.example.test"));
        assert!(!covers(&sans(), "example.test"));
    }

    #[test]
    fn ip_needs_ip_san() {
        assert!(covers(&sans(), "10.96.0.1"));
        assert!(!covers(&sans(), "10.0.0.1"));
        assert!(!covers(&[San::Dns("10.0.0.1".into())], "10.0.0.1"));
    }
}
