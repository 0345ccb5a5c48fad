//! An owned summary of one X.509 certificate: every field the rules of `pkic check`
//! read, taken out of x509-parser's borrowed types once, plus signature checks.

use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::model::San;
use crate::state::found_sans;

/// Key usage bits that the rules look at (RFC 5280 section 4.2.1.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyUsageBits {
    pub digital_signature: bool,
    pub key_encipherment: bool,
    pub key_cert_sign: bool,
    pub crl_sign: bool,
}

/// Extended key usages that TLS cares about (RFC 5280 section 4.2.1.12).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtendedKeyUsage {
    pub server_auth: bool,
    pub client_auth: bool,
    pub any: bool,
}

/// A public key: its algorithm name, RSA size, and the subjectPublicKey bits that key
/// comparisons use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKeyInfo {
    pub algorithm: String,
    pub rsa_bits: Option<usize>,
    pub bits: Vec<u8>,
}

/// One parsed certificate.
#[derive(Debug, Clone)]
pub struct CertInfo {
    pub der: Vec<u8>,
    /// X.509 version as written on paper: 1, 2 or 3.
    pub version: u32,
    pub subject: String,
    pub subject_der: Vec<u8>,
    pub issuer: String,
    pub issuer_der: Vec<u8>,
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
    /// Content octets of the serial number INTEGER, sign bit included.
    pub serial: Vec<u8>,
    pub not_before: i64,
    pub not_after: i64,
    /// `Some(ca)` from basicConstraints, `None` when the extension is absent.
    pub basic_ca: Option<bool>,
    pub path_len: Option<u32>,
    pub key_usage: Option<KeyUsageBits>,
    pub eku: Option<ExtendedKeyUsage>,
    pub sans: Vec<San>,
    pub skid: Option<Vec<u8>>,
    pub akid: Option<Vec<u8>>,
    pub signature_oid: String,
    pub public_key: PublicKeyInfo,
}

/// Signature algorithm OIDs that hash with SHA-1: sha1WithRSAEncryption, the older
/// sha1WithRSA of OIW, ecdsa-with-SHA1 and dsa-with-sha1.
const SHA1_SIGNATURES: [&str; 4] = [
    "1.2.840.113549.1.1.5",
    "1.3.14.3.2.29",
    "1.2.840.10045.4.1",
    "1.2.840.10040.4.3",
];

impl CertInfo {
    /// Parses a DER certificate.
    pub fn parse(der: &[u8]) -> Result<CertInfo, String> {
        let (_, cert) = X509Certificate::from_der(der).map_err(|e| e.to_string())?;
        let (skid, akid) = key_identifiers(&cert);
        Ok(CertInfo {
            der: der.to_vec(),
            version: cert.version().0 + 1,
            subject: cert.subject().to_string(),
            subject_der: cert.subject().as_raw().to_vec(),
            issuer: cert.issuer().to_string(),
            issuer_der: cert.issuer().as_raw().to_vec(),
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|a| a.as_str().ok())
                .map(str::to_string),
            organizations: cert
                .subject()
                .iter_organization()
                .filter_map(|a| a.as_str().ok())
                .map(str::to_string)
                .collect(),
            serial: cert.raw_serial().to_vec(),
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            basic_ca: basic_constraints(&cert).map(|(ca, _)| ca),
            path_len: basic_constraints(&cert).and_then(|(_, len)| len),
            key_usage: key_usage(&cert),
            eku: extended_key_usage(&cert),
            sans: found_sans(&cert),
            skid,
            akid,
            signature_oid: cert.signature_algorithm.algorithm.to_id_string(),
            public_key: public_key_info(cert.public_key()),
        })
    }

    /// True when the certificate may act as a CA: basicConstraints marks it, or it is a
    /// self-signed certificate without extensions (an X.509 v1 root).
    pub fn is_ca(&self) -> bool {
        match self.basic_ca {
            Some(ca) => ca,
            None => self.version == 1 && self.subject_der == self.issuer_der,
        }
    }

    pub fn is_self_issued(&self) -> bool {
        self.subject_der == self.issuer_der
    }

    pub fn uses_sha1(&self) -> bool {
        SHA1_SIGNATURES.contains(&self.signature_oid.as_str())
    }

    /// True when the serial's DER INTEGER is zero or negative (RFC 5280 section 4.1.2.2
    /// requires a positive integer).
    pub fn serial_not_positive(&self) -> bool {
        match self.serial.first() {
            None => true,
            Some(first) if *first >= 0x80 => true,
            Some(_) => self.serial.iter().all(|b| *b == 0),
        }
    }

    pub fn serial_hex(&self) -> String {
        self.serial
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// True when the key of `issuer` verifies this certificate's signature.
    pub fn is_signed_by(&self, issuer: &CertInfo) -> bool {
        let Ok((_, cert)) = X509Certificate::from_der(&self.der) else {
            return false;
        };
        let Ok((_, issuer_cert)) = X509Certificate::from_der(&issuer.der) else {
            return false;
        };
        cert.verify_signature(Some(issuer_cert.public_key()))
            .is_ok()
    }

    /// Returns the subject's common name, or the whole subject when there is none.
    pub fn display_name(&self) -> String {
        self.common_name
            .clone()
            .unwrap_or_else(|| self.subject.clone())
    }
}

fn basic_constraints(cert: &X509Certificate) -> Option<(bool, Option<u32>)> {
    let extension = cert.basic_constraints().ok()??;
    Some((extension.value.ca, extension.value.path_len_constraint))
}

fn key_usage(cert: &X509Certificate) -> Option<KeyUsageBits> {
    let extension = cert.key_usage().ok()??;
    let usage = extension.value;
    Some(KeyUsageBits {
        digital_signature: usage.digital_signature(),
        key_encipherment: usage.key_encipherment(),
        key_cert_sign: usage.key_cert_sign(),
        crl_sign: usage.crl_sign(),
    })
}

fn extended_key_usage(cert: &X509Certificate) -> Option<ExtendedKeyUsage> {
    let extension = cert.extended_key_usage().ok()??;
    Some(ExtendedKeyUsage {
        server_auth: extension.value.server_auth,
        client_auth: extension.value.client_auth,
        any: extension.value.any,
    })
}

fn key_identifiers(cert: &X509Certificate) -> (Option<Vec<u8>>, Option<Vec<u8>>) {
    let mut skid = None;
    let mut akid = None;
    for extension in cert.iter_extensions() {
        match extension.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => skid = Some(id.0.to_vec()),
            ParsedExtension::AuthorityKeyIdentifier(id) => {
                akid = id.key_identifier.as_ref().map(|k| k.0.to_vec());
            }
            _ => {}
        }
    }
    (skid, akid)
}

/// Summarises a SubjectPublicKeyInfo.
pub fn public_key_info(spki: &SubjectPublicKeyInfo) -> PublicKeyInfo {
    let bits = spki.subject_public_key.data.to_vec();
    let (algorithm, rsa_bits) = match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => (format!("RSA {}", rsa.key_size()), Some(rsa.key_size())),
        Ok(PublicKey::EC(_)) => (ec_curve_name(spki).to_string(), None),
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            ("Ed25519".to_string(), None)
        }
        _ => (spki.algorithm.algorithm.to_id_string(), None),
    };
    PublicKeyInfo {
        algorithm,
        rsa_bits,
        bits,
    }
}

fn ec_curve_name(spki: &SubjectPublicKeyInfo) -> &'static str {
    let curve = spki
        .algorithm
        .parameters
        .as_ref()
        .and_then(|p| p.as_oid().ok())
        .map(|oid| oid.to_id_string());
    match curve.as_deref() {
        Some("1.2.840.10045.3.1.7") => "ECDSA P-256",
        Some("1.3.132.0.34") => "ECDSA P-384",
        Some("1.3.132.0.35") => "ECDSA P-521",
        _ => "ECDSA",
    }
}

/// Parses a DER SubjectPublicKeyInfo (a `PUBLIC KEY` PEM block).
pub fn parse_spki(der: &[u8]) -> Option<PublicKeyInfo> {
    let (_, spki) = SubjectPublicKeyInfo::from_der(der).ok()?;
    Some(public_key_info(&spki))
}
