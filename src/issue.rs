//! Issue stage: generates key pairs and signs certificates with rcgen, CAs first in
//! dependency order, then every leaf in parallel.
//!
//! Every field is set here rather than left to rcgen's defaults: a random positive
//! 127-bit serial, `notBefore` backdated against clock skew, basicConstraints (critical)
//! on every certificate, keyCertSign and cRLSign on CAs, digitalSignature (plus
//! keyEncipherment for RSA) on leaves, and subject and authority key identifiers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use rayon::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use thiserror::Error;
use time::OffsetDateTime;

use crate::model::{Ca, Cert, KeyAlgorithm, KeyFormat, KeySpec, Model, San, Subject, Usage};

/// A failure to generate a key or sign a certificate, naming the object.
#[derive(Debug, Error)]
#[error("{object}: {message}")]
pub struct IssueError {
    pub object: String,
    pub message: String,
}

fn failed(object: &str, what: &str, error: impl fmt::Display) -> IssueError {
    IssueError {
        object: object.to_string(),
        message: format!("{what} failed: {error}"),
    }
}

/// A private key in PEM. Its `Debug` output hides the key.
pub struct PrivateKey {
    pub algorithm: KeyAlgorithm,
    pub pem: String,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, redacted)", self.algorithm)
    }
}

/// A signed certificate with its key.
#[derive(Debug)]
pub struct IssuedCert {
    pub der: Vec<u8>,
    pub pem: String,
    pub key: PrivateKey,
}

/// A service-account key pair.
#[derive(Debug)]
pub struct IssuedKeyPair {
    pub key: PrivateKey,
    pub public_pem: String,
}

/// Everything the issue stage made, by object id.
#[derive(Debug, Default)]
pub struct Issued {
    pub cas: BTreeMap<String, IssuedCert>,
    pub certs: BTreeMap<String, IssuedCert>,
    pub service_accounts: BTreeMap<String, IssuedKeyPair>,
}

/// A CA ready to sign: its parameters and key pair.
struct Signer {
    params: CertificateParams,
    key: KeyPair,
}

/// Issues every key and certificate of `model`. `order` is the graph's topological order.
pub fn issue_all(
    model: &Model,
    order: &[String],
    now: OffsetDateTime,
) -> Result<Issued, IssueError> {
    let mut issued = Issued::default();
    let mut signers: BTreeMap<String, Signer> = BTreeMap::new();
    let ca_order = order.iter().filter_map(|key| key.strip_prefix("ca:"));
    for id in ca_order {
        let ca = model.ca(id).expect("graph holds only declared CAs");
        let (signer, cert) = issue_ca(
            ca,
            signers.get(ca.issuer.as_deref().unwrap_or("")),
            model,
            now,
        )?;
        signers.insert(id.to_string(), signer);
        issued.cas.insert(id.to_string(), cert);
    }

    let leaves: Vec<Result<(String, IssuedCert), IssueError>> = model
        .certs
        .par_iter()
        .map(|cert| {
            let signer = &signers[&cert.issuer];
            issue_leaf(cert, signer, model, now).map(|issued| (cert.id.clone(), issued))
        })
        .collect();
    for leaf in leaves {
        let (id, cert) = leaf?;
        issued.certs.insert(id, cert);
    }

    let accounts: Vec<Result<(String, IssuedKeyPair), IssueError>> = model
        .service_accounts
        .par_iter()
        .map(|account| {
            let object = format!("service-account `{}`", account.id);
            let key = generate_key(&object, account.key)?;
            let public_pem = key.public_key_pem();
            let key = private_key(&object, &key, account.key)?;
            Ok((account.id.clone(), IssuedKeyPair { key, public_pem }))
        })
        .collect();
    for account in accounts {
        let (id, pair) = account?;
        issued.service_accounts.insert(id, pair);
    }
    Ok(issued)
}

fn issue_ca(
    ca: &Ca,
    parent: Option<&Signer>,
    model: &Model,
    now: OffsetDateTime,
) -> Result<(Signer, IssuedCert), IssueError> {
    let object = format!("CA `{}`", ca.id);
    let key = generate_key(&object, ca.key)?;
    let mut params = base_params(&object, &ca.subject, ca.validity, model.backdate, now)?;
    params.is_ca = IsCa::Ca(match ca.path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let certificate = match parent {
        Some(parent) => {
            params.use_authority_key_identifier_extension = true;
            let issuer = Issuer::from_params(&parent.params, &parent.key);
            params.signed_by(&key, &issuer)
        }
        None => params.self_signed(&key),
    }
    .map_err(|e| failed(&object, "signing the certificate", e))?;
    let issued = IssuedCert {
        der: certificate.der().to_vec(),
        pem: certificate.pem(),
        key: private_key(&object, &key, ca.key)?,
    };
    Ok((Signer { params, key }, issued))
}

fn issue_leaf(
    cert: &Cert,
    signer: &Signer,
    model: &Model,
    now: OffsetDateTime,
) -> Result<IssuedCert, IssueError> {
    let object = format!("certificate `{}`", cert.id);
    let key = generate_key(&object, cert.key)?;
    let mut params = base_params(&object, &cert.subject, cert.validity, model.backdate, now)?;
    params.is_ca = IsCa::ExplicitNoCa;
    params.use_authority_key_identifier_extension = true;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    if cert.key.algorithm.is_rsa() {
        params.key_usages.push(KeyUsagePurpose::KeyEncipherment);
    }
    params.extended_key_usages = match cert.usage {
        Usage::Server => vec![ExtendedKeyUsagePurpose::ServerAuth],
        Usage::Client => vec![ExtendedKeyUsagePurpose::ClientAuth],
        Usage::Both => vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ],
    };
    params.subject_alt_names = cert
        .sans
        .iter()
        .map(|san| san_type(&object, san))
        .collect::<Result<_, _>>()?;
    let issuer = Issuer::from_params(&signer.params, &signer.key);
    let certificate = params
        .signed_by(&key, &issuer)
        .map_err(|e| failed(&object, "signing the certificate", e))?;
    Ok(IssuedCert {
        der: certificate.der().to_vec(),
        pem: certificate.pem(),
        key: private_key(&object, &key, cert.key)?,
    })
}

fn base_params(
    object: &str,
    subject: &Subject,
    validity: Duration,
    backdate: Duration,
    now: OffsetDateTime,
) -> Result<CertificateParams, IssueError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name(subject);
    params.not_before = now - backdate;
    params.not_after = now + validity;
    params.serial_number =
        Some(random_serial().map_err(|e| failed(object, "drawing a serial", e))?);
    params.key_identifier_method = rcgen::KeyIdMethod::Sha256;
    Ok(params)
}

/// Returns 16 random bytes as a positive serial: the top bit is cleared so the DER
/// INTEGER is never negative (Go 1.23 rejects those), and the next bit is set so the
/// encoding needs no leading zero byte and keeps 126 random bits.
fn random_serial() -> Result<SerialNumber, aws_lc_rs::error::Unspecified> {
    let mut bytes = [0u8; 16];
    aws_lc_rs::rand::fill(&mut bytes)?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// Builds the subject in the conventional order C, ST, L, O, OU, CN.
///
/// rcgen keys a distinguished name by attribute type, so a second O or OU is added as a
/// custom attribute with the same OID; the model allows at most two of each.
fn distinguished_name(subject: &Subject) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    if let Some(c) = &subject.country {
        dn.push(DnType::CountryName, c.as_str());
    }
    if let Some(st) = &subject.state {
        dn.push(DnType::StateOrProvinceName, st.as_str());
    }
    if let Some(l) = &subject.locality {
        dn.push(DnType::LocalityName, l.as_str());
    }
    for (i, o) in subject.organizations.iter().enumerate() {
        let ty = if i == 0 {
            DnType::OrganizationName
        } else {
            DnType::CustomDnType(vec![2, 5, 4, 10])
        };
        dn.push(ty, o.as_str());
    }
    for (i, ou) in subject.organizational_units.iter().enumerate() {
        let ty = if i == 0 {
            DnType::OrganizationalUnitName
        } else {
            DnType::CustomDnType(vec![2, 5, 4, 11])
        };
        dn.push(ty, ou.as_str());
    }
    if let Some(cn) = &subject.common_name {
        dn.push(DnType::CommonName, cn.as_str());
    }
    dn
}

fn san_type(object: &str, san: &San) -> Result<SanType, IssueError> {
    Ok(match san {
        San::Dns(name) => SanType::DnsName(
            name.clone()
                .try_into()
                .map_err(|e| failed(object, "encoding a DNS SAN", e))?,
        ),
        San::Ip(ip) => SanType::IpAddress(*ip),
        San::Uri(uri) => SanType::URI(
            uri.clone()
                .try_into()
                .map_err(|e| failed(object, "encoding a URI SAN", e))?,
        ),
    })
}

/// Generates a key pair. RSA keys come from aws-lc-rs, the only rcgen backend that can
/// generate them.
fn generate_key(object: &str, spec: KeySpec) -> Result<KeyPair, IssueError> {
    let result = match spec.algorithm {
        KeyAlgorithm::Rsa(bits) => {
            let size = match bits {
                2048 => rcgen::RsaKeySize::_2048,
                3072 => rcgen::RsaKeySize::_3072,
                _ => rcgen::RsaKeySize::_4096,
            };
            KeyPair::generate_rsa_for(&rcgen::PKCS_RSA_SHA256, size)
        }
        KeyAlgorithm::EcdsaP256 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256),
        KeyAlgorithm::EcdsaP384 => KeyPair::generate_for(&rcgen::PKCS_ECDSA_P384_SHA384),
        KeyAlgorithm::Ed25519 => KeyPair::generate_for(&rcgen::PKCS_ED25519),
    };
    result.map_err(|e| failed(object, &format!("generating a {} key", spec.algorithm), e))
}

fn private_key(object: &str, key: &KeyPair, spec: KeySpec) -> Result<PrivateKey, IssueError> {
    let pkcs8 = key.serialize_der();
    let pem = match spec.format {
        KeyFormat::Pkcs8 => pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8)),
        KeyFormat::Pkcs1 => {
            let inner = pkcs8_inner_key(&pkcs8).ok_or_else(|| {
                failed(object, "converting the key to PKCS#1", "malformed PKCS#8")
            })?;
            pem::encode(&pem::Pem::new("RSA PRIVATE KEY", inner))
        }
    };
    Ok(PrivateKey {
        algorithm: spec.algorithm,
        pem,
    })
}

/// Returns the `privateKey` OCTET STRING of a PKCS#8 PrivateKeyInfo (RFC 5208), which
/// for RSA is the PKCS#1 RSAPrivateKey.
fn pkcs8_inner_key(der: &[u8]) -> Option<Vec<u8>> {
    let (tag, body, _) = der_element(der)?;
    if tag != 0x30 {
        return None;
    }
    let (_, _, rest) = der_element(body)?; // version
    let (_, _, rest) = der_element(rest)?; // algorithm
    let (tag, key, _) = der_element(rest)?;
    (tag == 0x04).then(|| key.to_vec())
}

/// Splits one DER element into its tag, contents and the bytes after it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_positive_and_full_length() {
        for _ in 0..2000 {
            let serial = random_serial().unwrap().to_bytes();
            assert_eq!(serial.len(), 16);
            assert!(serial[0] < 0x80, "negative serial {serial:02x?}");
            assert!(
                serial[0] >= 0x40,
                "serial with a leading zero bit pattern {serial:02x?}"
            );
        }
    }

    #[test]
    fn pkcs1_extracted_from_pkcs8() {
        let spec = KeySpec {
            algorithm: KeyAlgorithm::Rsa(2048),
            format: KeyFormat::Pkcs1,
        };
        let key = generate_key("test", spec).unwrap();
        let pem = private_key("test", &key, spec).unwrap().pem;
        assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"));
        let parsed = pem::parse(&pem).unwrap();
        let (tag, _, rest) = der_element(parsed.contents()).unwrap();
        assert_eq!(tag, 0x30);
        assert!(rest.is_empty());
    }

    #[test]
    fn private_key_debug_hides_key() {
        let key = PrivateKey {
            algorithm: KeyAlgorithm::EcdsaP256,
            pem: "-----BEGIN PRIVATE KEY-----secret".into(),
        };
        assert!(!format!("{key:?}").contains("secret"));
    }
}
