//! Reading certificates and keys back: subjects, SANs, key algorithms and whether a key
//! belongs to a certificate. Shared by the stages that look at files on disk.

use rcgen::{KeyPair, PublicKeyData};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::model::{KeyAlgorithm, San, Subject};

/// Returns the algorithm of a PEM private key, if it is readable and supported.
/// True when the PEM private key is the key of `cert`.
///
/// The public key is read from the key file where its encoding carries it (RSA keys, and
/// EC keys with their public point), which needs no scalar multiplication; other keys
/// are loaded with aws-lc-rs.
pub fn key_matches(key_pem: &str, cert: &X509Certificate) -> bool {
    let cert_key = cert.public_key().subject_public_key.data.as_ref();
    if let Some(public) = public_key_of_pem(key_pem) {
        return public == cert_key;
    }
    KeyPair::from_pem(key_pem).is_ok_and(|key| key.der_bytes() == cert_key)
}

/// Returns the subjectPublicKey bits that a PEM private key implies, when the key's
/// encoding contains them: the RSAPublicKey of an RSA key, the point of an EC key.
pub fn public_key_of_pem(key_pem: &str) -> Option<Vec<u8>> {
    let block = pem::parse(key_pem).ok()?;
    let der = block.contents();
    match block.tag() {
        "RSA PRIVATE KEY" => rsa_public_key(der),
        "EC PRIVATE KEY" => ec_public_point(der),
        "PRIVATE KEY" => {
            let (_, info, _) = der_element(der)?;
            let (_, _, rest) = der_element(info)?; // version
            let (_, algorithm, rest) = der_element(rest)?;
            let (_, oid, _) = der_element(algorithm)?;
            let (tag, private_key, _) = der_element(rest)?;
            if tag != 0x04 {
                return None;
            }
            match oid {
                RSA_ENCRYPTION => rsa_public_key(private_key),
                EC_PUBLIC_KEY => ec_public_point(private_key),
                _ => None,
            }
        }
        _ => None,
    }
}

/// OID contents of rsaEncryption (1.2.840.113549.1.1.1).
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// OID contents of id-ecPublicKey (1.2.840.10045.2.1).
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// Builds the RSAPublicKey (RFC 8017) of an RSAPrivateKey: its modulus and exponent.
fn rsa_public_key(der: &[u8]) -> Option<Vec<u8>> {
    let (_, key, _) = der_element(der)?;
    let (_, _, rest) = der_element(key)?; // version
    let (_, _, after_modulus) = der_element(rest)?;
    let (_, _, after_exponent) = der_element(after_modulus)?;
    let fields = &rest[..rest.len() - after_exponent.len()];
    let mut out = vec![0x30];
    out.extend(der_length(fields.len()));
    out.extend_from_slice(fields);
    Some(out)
}

/// Returns the public point of an ECPrivateKey (RFC 5915), when it carries one.
fn ec_public_point(der: &[u8]) -> Option<Vec<u8>> {
    let (_, key, _) = der_element(der)?;
    let mut rest = key;
    while !rest.is_empty() {
        let (tag, body, next) = der_element(rest)?;
        if tag == 0xa1 {
            let (bit_tag, bits, _) = der_element(body)?;
            // The first byte of a BIT STRING counts its unused bits, zero for a point.
            return (bit_tag == 0x03 && bits.first() == Some(&0)).then(|| bits[1..].to_vec());
        }
        rest = next;
    }
    None
}

fn der_length(length: usize) -> Vec<u8> {
    if length < 0x80 {
        return vec![length as u8];
    }
    let bytes: Vec<u8> = length
        .to_be_bytes()
        .into_iter()
        .skip_while(|b| *b == 0)
        .collect();
    let mut out = vec![0x80 | bytes.len() as u8];
    out.extend(bytes);
    out
}

/// Splits one DER element into its tag, contents and the bytes after it.
pub(crate) fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first = *input.get(1)? as usize;
    let (length, header) = if first < 0x80 {
        (first, 2)
    } else {
        let count = first & 0x7f;
        if count == 0 || count > 4 {
            return None;
        }
        let bytes = input.get(2..2 + count)?;
        (
            bytes.iter().fold(0usize, |n, b| (n << 8) | *b as usize),
            2 + count,
        )
    };
    let body = input.get(header..header + length)?;
    Some((tag, body, &input[header + length..]))
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

/// Returns the subject of a certificate as a model value. Attributes other than C, ST,
/// L, O, OU and CN are dropped; [`found_subject`] lists them as `?`.
pub fn subject_of(cert: &X509Certificate) -> Subject {
    let mut subject = Subject::default();
    for (name, value) in found_subject(cert) {
        match name {
            "CN" => subject.common_name = Some(value),
            "O" => subject.organizations.push(value),
            "OU" => subject.organizational_units.push(value),
            "C" => subject.country = Some(value),
            "ST" => subject.state = Some(value),
            "L" => subject.locality = Some(value),
            _ => {}
        }
    }
    subject
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

/// Signatures proven earlier in the same process: pairs of a certificate and the
/// certificate whose key signed it, each pair kept as the SHA-256 of both DER
/// encodings. The build's verify stage fills the set, and the check of the tree the
/// build wrote skips the signature checks the set contains.
#[derive(Debug, Default)]
pub struct SignatureProofs(std::collections::HashSet<[u8; 32]>);

impl SignatureProofs {
    fn link(child: &[u8], issuer: &[u8]) -> [u8; 32] {
        let mut context = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
        context.update(&(child.len() as u64).to_be_bytes());
        context.update(child);
        context.update(issuer);
        let mut link = [0; 32];
        link.copy_from_slice(context.finish().as_ref());
        link
    }

    /// Records that the key of the certificate `issuer` (DER) signed `child` (DER).
    pub fn insert(&mut self, child: &[u8], issuer: &[u8]) {
        self.0.insert(Self::link(child, issuer));
    }

    /// True when the signature of `child` by `issuer` was proven.
    pub fn contains(&self, child: &[u8], issuer: &[u8]) -> bool {
        !self.0.is_empty() && self.0.contains(&Self::link(child, issuer))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generated(algorithm: &'static rcgen::SignatureAlgorithm) -> (String, Vec<u8>) {
        let key = if algorithm == &rcgen::PKCS_RSA_SHA256 {
            KeyPair::generate_rsa_for(algorithm, rcgen::RsaKeySize::_2048).unwrap()
        } else {
            KeyPair::generate_for(algorithm).unwrap()
        };
        (key.serialize_pem(), key.der_bytes().to_vec())
    }

    #[test]
    fn public_key_read_from_rsa_and_ec_keys() {
        for algorithm in [
            &rcgen::PKCS_RSA_SHA256,
            &rcgen::PKCS_ECDSA_P256_SHA256,
            &rcgen::PKCS_ECDSA_P384_SHA384,
        ] {
            let (pem, public) = generated(algorithm);
            assert_eq!(public_key_of_pem(&pem), Some(public), "{algorithm:?}");
        }
    }

    #[test]
    fn proofs_keep_direction_and_boundary() {
        let mut proofs = SignatureProofs::default();
        proofs.insert(b"leaf", b"ca");
        assert!(proofs.contains(b"leaf", b"ca"));
        assert!(!proofs.contains(b"ca", b"leaf"));
        assert!(!proofs.contains(b"lea", b"fca"));
        assert!(!proofs.contains(b"leaf", b"other-ca"));
    }
}
