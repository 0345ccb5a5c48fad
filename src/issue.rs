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

use indicatif::ProgressBar;
use rayon::prelude::*;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use thiserror::Error;
use time::OffsetDateTime;

use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::model::{Ca, Cert, KeyAlgorithm, KeyFormat, KeySpec, Model, San, Subject, Usage};
use crate::state::Plan;
use crate::x509::der_element;

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
    /// The public-key file: `public_pem`, and during a rotation the other key's too.
    pub published_pem: String,
}

/// Everything the issue stage made, by object id.
#[derive(Debug, Default)]
pub struct Issued {
    pub cas: BTreeMap<String, IssuedCert>,
    pub certs: BTreeMap<String, IssuedCert>,
    pub service_accounts: BTreeMap<String, IssuedKeyPair>,
    /// The new CAs that a rotation in stage `add-new` stages, by CA id.
    pub staged_cas: BTreeMap<String, IssuedCert>,
    /// The new service-account keys that stage `add-new` stages, by id.
    pub staged_keys: BTreeMap<String, PrivateKey>,
    /// The trust files of CAs in rotation: every trusted certificate, current first.
    pub ca_trust: BTreeMap<String, String>,
}

/// A CA ready to sign.
type Signer = Issuer<'static, KeyPair>;

/// Issues every key and certificate of `model` that `plan` does not keep, and loads the
/// kept ones. `order` is the graph's topological order. `progress` advances by one per
/// CA, certificate and service-account key, from the rayon workers too.
pub fn issue_all(
    model: &Model,
    order: &[String],
    plan: &Plan,
    now: OffsetDateTime,
    progress: &ProgressBar,
) -> Result<Issued, IssueError> {
    let mut issued = Issued::default();
    let mut signers: BTreeMap<String, Signer> = BTreeMap::new();
    let ca_order = order.iter().filter_map(|key| key.strip_prefix("ca:"));
    for id in ca_order {
        let ca = model.ca(id).expect("graph holds only declared CAs");
        if let Some(cert) = keyless_ca(ca) {
            issued.cas.insert(id.to_string(), cert);
            continue;
        }
        let decision = plan.get(&format!("ca:{id}"));
        let kept = decision.and_then(|d| Some((d.keep_cert.as_ref()?, d.reuse_key.as_ref()?)));
        let (signer, cert) = match kept {
            Some((der, key)) => load_ca(ca, der, key)?,
            None => {
                let key = decision.and_then(|d| d.reuse_key.as_deref());
                let parent = match &ca.issuer {
                    Some(issuer) => Some(
                        signers
                            .get(issuer)
                            .ok_or_else(|| unsigned(&format!("CA `{id}`"), issuer))?,
                    ),
                    None => None,
                };
                issue_ca(ca, key, parent, model, now)?
            }
        };
        let rotation = plan.rotations.get(&format!("ca:{id}"));
        if let Some(staged) = rotation.and_then(|r| r.staged.as_ref()) {
            let new = match (&staged.keep_cert, &staged.reuse_key) {
                (Some(der), Some(key)) => kept_cert(der, key, ca.key.algorithm),
                (_, key) => {
                    let parent = signers.get(ca.issuer.as_deref().unwrap_or(""));
                    issue_ca(ca, key.as_deref(), parent, model, now)?.1
                }
            };
            issued
                .ca_trust
                .insert(id.to_string(), format!("{}{}", cert.pem, new.pem));
            issued.staged_cas.insert(id.to_string(), new);
        } else if let Some(rotation) = rotation.filter(|r| r.stage.trusts_both()) {
            let mut trust = cert.pem.clone();
            for der in &rotation.retired_certs {
                trust.push_str(&pem_text("CERTIFICATE", der.clone()));
            }
            issued.ca_trust.insert(id.to_string(), trust);
        }
        signers.insert(id.to_string(), signer);
        issued.cas.insert(id.to_string(), cert);
        progress.inc(1);
    }

    let ca_not_after: BTreeMap<&str, OffsetDateTime> = issued
        .cas
        .iter()
        .filter_map(|(id, cert)| {
            let (_, parsed) = X509Certificate::from_der(&cert.der).ok()?;
            let not_after =
                OffsetDateTime::from_unix_timestamp(parsed.validity().not_after.timestamp())
                    .ok()?;
            Some((id.as_str(), not_after))
        })
        .collect();
    let leaves: Vec<Result<(String, IssuedCert), IssueError>> = model
        .certs
        .par_iter()
        .map(|cert| {
            let decision = plan.get(&format!("cert:{}", cert.id));
            let kept = decision.and_then(|d| Some((d.keep_cert.as_ref()?, d.reuse_key.as_ref()?)));
            let result = match kept {
                Some((der, key)) => Ok(kept_cert(der, key, cert.key.algorithm)),
                None => {
                    let key = decision.and_then(|d| d.reuse_key.as_deref());
                    let signer = signers.get(&cert.issuer).ok_or_else(|| {
                        unsigned(&format!("certificate `{}`", cert.id), &cert.issuer)
                    });
                    signer.and_then(|signer| {
                        check_within_issuer(cert, ca_not_after.get(cert.issuer.as_str()), now)?;
                        issue_leaf(cert, key, signer, model, now)
                    })
                }
            };
            progress.inc(1);
            result.map(|issued| (cert.id.clone(), issued))
        })
        .collect();
    for leaf in leaves {
        let (id, cert) = leaf?;
        issued.certs.insert(id, cert);
    }

    type Account = (String, IssuedKeyPair, Option<PrivateKey>);
    let accounts: Vec<Result<Account, IssueError>> = model
        .service_accounts
        .par_iter()
        .map(|account| {
            let object = format!("service-account `{}`", account.id);
            let existing = plan
                .get(&format!("service-account:{}", account.id))
                .and_then(|d| d.reuse_key.as_deref());
            let (key, pem) = obtain_key(&object, existing, account.key)?;
            let public_pem = key.public_key_pem();
            let key = PrivateKey {
                algorithm: account.key.algorithm,
                pem,
            };
            let mut published_pem = public_pem.clone();
            let mut staged_key = None;
            let rotation = plan
                .rotations
                .get(&format!("service-account:{}", account.id));
            if let Some(staged) = rotation.and_then(|r| r.staged.as_ref()) {
                let (new, new_pem) = obtain_key(&object, staged.reuse_key.as_deref(), account.key)?;
                published_pem.push_str(&new.public_key_pem());
                staged_key = Some(PrivateKey {
                    algorithm: account.key.algorithm,
                    pem: new_pem,
                });
            } else if let Some(rotation) = rotation.filter(|r| r.stage.trusts_both()) {
                for info in &rotation.retired_keys {
                    published_pem.push_str(&pem_text("PUBLIC KEY", info.clone()));
                }
            }
            let pair = IssuedKeyPair {
                key,
                public_pem,
                published_pem,
            };
            progress.inc(1);
            Ok((account.id.clone(), pair, staged_key))
        })
        .collect();
    for account in accounts {
        let (id, pair, staged_key) = account?;
        if let Some(staged_key) = staged_key {
            issued.staged_keys.insert(id.clone(), staged_key);
        }
        issued.service_accounts.insert(id, pair);
    }
    Ok(issued)
}

/// Returns the certificate of a CA imported without its key, which signs nothing here.
/// Its `key.pem` is empty, and no key file is written for it.
fn keyless_ca(ca: &Ca) -> Option<IssuedCert> {
    let imported = ca.imported.as_ref()?;
    if imported.key_pem.is_some() {
        return None;
    }
    Some(IssuedCert {
        der: imported.cert_der.clone(),
        pem: pem_text("CERTIFICATE", imported.cert_der.clone()),
        key: PrivateKey {
            algorithm: ca.key.algorithm,
            pem: String::new(),
        },
    })
}

/// Returns the error for a certificate whose issuer pkic cannot sign with: a CA imported
/// without its key, or an intermediate below it whose signed certificate is missing.
fn unsigned(object: &str, issuer: &str) -> IssueError {
    IssueError {
        object: object.to_string(),
        message: format!(
            "CA `{issuer}` is not available to sign it, because its key is not imported or \
             its own certificate awaits signature; run `pkic build` on the output directory \
             to write the CSRs, then place the signed certificates there"
        ),
    }
}

/// Returns a key pair and its PEM: the existing key when one is given, else a new one.
pub(crate) fn obtain_key(
    object: &str,
    existing: Option<&str>,
    spec: KeySpec,
) -> Result<(KeyPair, String), IssueError> {
    match existing {
        Some(pem) => {
            let key = KeyPair::from_pem(pem)
                .map_err(|e| failed(object, "reading the existing key", e))?;
            Ok((key, pem.to_string()))
        }
        None => {
            let key = generate_key(object, spec)?;
            let pem = private_key(object, &key, spec)?.pem;
            Ok((key, pem))
        }
    }
}

fn kept_cert(der: &[u8], key: &str, algorithm: KeyAlgorithm) -> IssuedCert {
    IssuedCert {
        der: der.to_vec(),
        pem: pem_text("CERTIFICATE", der.to_vec()),
        key: PrivateKey {
            algorithm,
            pem: key.to_string(),
        },
    }
}

/// Loads a kept CA from its certificate and key on disk.
fn load_ca(ca: &Ca, der: &[u8], key_pem: &str) -> Result<(Signer, IssuedCert), IssueError> {
    let object = format!("CA `{}`", ca.id);
    let key = KeyPair::from_pem(key_pem).map_err(|e| failed(&object, "reading the key", e))?;
    let (_, cert) = X509Certificate::from_der(der)
        .map_err(|e| failed(&object, "reading the certificate", e))?;
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name_of(&cert);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
    let skid = cert
        .extensions()
        .iter()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
            _ => None,
        });
    if let Some(skid) = skid {
        params.key_identifier_method = rcgen::KeyIdMethod::PreSpecified(skid);
    }
    let issued = kept_cert(der, key_pem, ca.key.algorithm);
    Ok((Issuer::new(params, key), issued))
}

/// Rebuilds a certificate's subject for rcgen, keeping each attribute's string type so
/// that the issuer name of new certificates matches the CA's subject byte for byte.
fn distinguished_name_of(cert: &X509Certificate) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    let mut seen = Vec::new();
    for attribute in cert.subject().iter_attributes() {
        let oid: Vec<u64> = attribute
            .attr_type()
            .iter()
            .map(|i| i.collect())
            .unwrap_or_default();
        let data = attribute.attr_value().data;
        let text = String::from_utf8_lossy(data).to_string();
        let value = match attribute.attr_value().header.tag() {
            Tag::PrintableString => text
                .clone()
                .try_into()
                .map(DnValue::PrintableString)
                .unwrap_or(DnValue::Utf8String(text)),
            _ => DnValue::Utf8String(text),
        };
        let ty = if seen.contains(&oid) {
            DnType::CustomDnType(oid.clone())
        } else {
            DnType::from_oid(&oid)
        };
        seen.push(oid);
        dn.push(ty, value);
    }
    dn
}

fn issue_ca(
    ca: &Ca,
    existing_key: Option<&str>,
    parent: Option<&Signer>,
    model: &Model,
    now: OffsetDateTime,
) -> Result<(Signer, IssuedCert), IssueError> {
    let object = format!("CA `{}`", ca.id);
    let (key, key_pem) = obtain_key(&object, existing_key, ca.key)?;
    let mut params = base_params(&object, &ca.subject, ca.validity, model.backdate, now)?;
    set_ca_extensions(&mut params, ca);
    let certificate = match parent {
        Some(parent) => {
            params.use_authority_key_identifier_extension = true;
            params.signed_by(&key, parent)
        }
        None => params.self_signed(&key),
    }
    .map_err(|e| failed(&object, "signing the certificate", e))?;
    let issued = IssuedCert {
        der: certificate.der().to_vec(),
        pem: certificate.pem(),
        key: PrivateKey {
            algorithm: ca.key.algorithm,
            pem: key_pem,
        },
    };
    Ok((Issuer::new(params, key), issued))
}

/// Fails when a leaf issued now would outlive its issuer's certificate: a CA kept from an
/// earlier build has less time left than the durations in the manifest suggest.
fn check_within_issuer(
    cert: &Cert,
    issuer_not_after: Option<&OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<(), IssueError> {
    let Some(issuer_not_after) = issuer_not_after else {
        return Ok(());
    };
    if now + cert.validity <= *issuer_not_after {
        return Ok(());
    }
    Err(IssueError {
        object: format!("certificate `{}` ({})", cert.id, cert.origin),
        message: format!(
            "it would be valid until {}, past its issuer `{}`, which expires at {issuer_not_after}; \
             shorten its validity or renew the CA",
            now + cert.validity,
            cert.issuer
        ),
    })
}

fn issue_leaf(
    cert: &Cert,
    existing_key: Option<&str>,
    signer: &Signer,
    model: &Model,
    now: OffsetDateTime,
) -> Result<IssuedCert, IssueError> {
    let object = format!("certificate `{}`", cert.id);
    let (key, key_pem) = obtain_key(&object, existing_key, cert.key)?;
    let mut params = base_params(&object, &cert.subject, cert.validity, model.backdate, now)?;
    params.use_authority_key_identifier_extension = true;
    set_leaf_extensions(&mut params, cert, &object)?;
    let certificate = params
        .signed_by(&key, signer)
        .map_err(|e| failed(&object, "signing the certificate", e))?;
    Ok(IssuedCert {
        der: certificate.der().to_vec(),
        pem: certificate.pem(),
        key: PrivateKey {
            algorithm: cert.key.algorithm,
            pem: key_pem,
        },
    })
}

/// Sets what a CA certificate requests: basicConstraints CA:TRUE with the CA's path
/// length, and keyUsage digitalSignature, keyCertSign and cRLSign.
pub(crate) fn set_ca_extensions(params: &mut CertificateParams, ca: &Ca) {
    params.is_ca = IsCa::Ca(match ca.path_len {
        Some(n) => BasicConstraints::Constrained(n),
        None => BasicConstraints::Unconstrained,
    });
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
    ];
}

/// Sets what a leaf requests: basicConstraints CA:FALSE, keyUsage digitalSignature (plus
/// keyEncipherment for RSA), the extended key usages of its usage, and its SANs.
pub(crate) fn set_leaf_extensions(
    params: &mut CertificateParams,
    cert: &Cert,
    object: &str,
) -> Result<(), IssueError> {
    params.is_ca = IsCa::ExplicitNoCa;
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
        .map(|san| san_type(object, san))
        .collect::<Result<_, _>>()?;
    Ok(())
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

/// Returns 16 random bytes as a positive serial. The top bit is cleared, so the DER
/// INTEGER is never negative (Go 1.23 rejects negative serials). The next bit is set, so
/// the encoding needs no leading zero byte and keeps 126 random bits.
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
pub(crate) fn distinguished_name(subject: &Subject) -> DistinguishedName {
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
        KeyFormat::Pkcs8 => pem_text("PRIVATE KEY", pkcs8),
        KeyFormat::Pkcs1 => {
            let inner = pkcs8_inner_key(&pkcs8).ok_or_else(|| {
                failed(object, "converting the key to PKCS#1", "malformed PKCS#8")
            })?;
            pem_text("RSA PRIVATE KEY", inner)
        }
    };
    Ok(PrivateKey {
        algorithm: spec.algorithm,
        pem,
    })
}

/// Encodes DER as PEM with `\n` line endings, as rcgen and openssl write it.
pub(crate) fn pem_text(tag: &str, der: Vec<u8>) -> String {
    let config = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(tag, der), config)
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
