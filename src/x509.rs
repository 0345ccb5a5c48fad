//! Reading certificates and keys back: subjects, SANs, key algorithms and whether a key
//! belongs to a certificate. Shared by the stages that look at files on disk.

use rcgen::{KeyPair, PublicKeyData};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::model::{KeyAlgorithm, San};

/// Returns the algorithm of a PEM private key, if it is readable and supported.
/// True when the PEM private key is the key of `cert`.
pub fn key_matches(key_pem: &str, cert: &X509Certificate) -> bool {
    KeyPair::from_pem(key_pem)
        .is_ok_and(|key| key.der_bytes() == cert.public_key().subject_public_key.data.as_ref())
}

pub fn key_algorithm_of(key_pem: Option<&str>) -> Option<KeyAlgorithm> {
    let key = KeyPair::from_pem(key_pem?).ok()?;
    let spki = key.subject_public_key_info();
    let (_, info) = x509_parser::x509::SubjectPublicKeyInfo::from_der(&spki).ok()?;
    algorithm_of_spki(&info)
}

pub fn algorithm_of_spki(spki: &x509_parser::x509::SubjectPublicKeyInfo) -> Option<KeyAlgorithm> {
    match spki.parsed().ok()? {
        PublicKey::RSA(rsa) => Some(KeyAlgorithm::Rsa(rsa.key_size() as u32)),
        PublicKey::EC(_) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()?
                .as_oid()
                .ok()?
                .to_id_string();
            match curve.as_str() {
                "1.2.840.10045.3.1.7" => Some(KeyAlgorithm::EcdsaP256),
                "1.3.132.0.34" => Some(KeyAlgorithm::EcdsaP384),
                _ => None,
            }
        }
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => {
            Some(KeyAlgorithm::Ed25519)
        }
        _ => None,
    }
}

pub fn found_subject(cert: &X509Certificate) -> Vec<(&'static str, String)> {
    cert.subject()
        .iter_attributes()
        .map(|attr| {
            let name = match attr.attr_type().to_id_string().as_str() {
                "2.5.4.6" => "C",
                "2.5.4.8" => "ST",
                "2.5.4.7" => "L",
                "2.5.4.10" => "O",
                "2.5.4.11" => "OU",
                "2.5.4.3" => "CN",
                _ => "?",
            };
            (name, attr.as_str().unwrap_or("").to_string())
        })
        .collect()
}

/// Returns the SANs of a certificate as model values.
pub fn found_sans(cert: &X509Certificate) -> Vec<San> {
    let Ok(Some(extension)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    extension
        .value
        .general_names
        .iter()
        .filter_map(|name| match name {
            GeneralName::DNSName(dns) => Some(San::Dns(dns.to_string())),
            GeneralName::URI(uri) => Some(San::Uri(uri.to_string())),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => <[u8; 4]>::try_from(*bytes).ok().map(|b| San::Ip(b.into())),
                16 => <[u8; 16]>::try_from(*bytes).ok().map(|b| San::Ip(b.into())),
                _ => None,
            },
            _ => None,
        })
        .collect()
}
