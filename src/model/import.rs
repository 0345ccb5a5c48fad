//! Imported CAs: an existing CA certificate and key, read from outside the output
//! directory and checked before anything is signed with them. pkic copies them into the
//! output tree and never rewrites the originals. A CA imported without its key signs
//! nothing in pkic; `csr` handles the certificates below it.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rcgen::KeyPair;
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::{Checker, ImportedCa, KeyAlgorithm, Subject};
use crate::manifest::RawCa;
use crate::x509::{algorithm_of_spki, key_matches, subject_of};

/// Facts of an imported CA that the model uses.
pub(super) struct Found {
    pub ca: ImportedCa,
    pub subject: Subject,
    pub algorithm: KeyAlgorithm,
    /// Time left until the certificate's `notAfter`.
    pub remaining: Duration,
    pub path_len: Option<u8>,
}

/// Reads and checks the CA that `import-cert` and `import-key` name, if any. A CA
/// with `import-cert` alone is one whose key pkic never reads. It signs nothing in pkic,
/// which writes a CSR for each certificate below it instead.
pub(super) fn import_ca(checker: &mut Checker, path: &str, raw: &RawCa) -> Option<Found> {
    let (cert_text, key_text) = match (&raw.import_cert, &raw.import_key) {
        (None, None) => return None,
        (Some(cert), key) => (cert, key.as_ref()),
        (None, Some(_)) => {
            checker
                .error(
                    format!("{path}.import-key"),
                    "`import-key` needs `import-cert`",
                )
                .help = Some("name the CA certificate of this key in `import-cert`".into());
            return None;
        }
    };
    if raw.subject.is_some() || raw.key_algorithm.is_some() || raw.validity.is_some() {
        checker
            .error(
                path.to_string(),
                "an imported CA takes its subject, key algorithm and validity from its certificate",
            )
            .help = Some("remove `subject`, `key-algorithm` and `validity` from this CA".into());
    }
    let cert_path = checker.manifest_dir.join(cert_text);
    let cert_der = match read_certificate(&cert_path) {
        Ok(der) => der,
        Err(message) => {
            checker.error(format!("{path}.import-cert"), message);
            return None;
        }
    };
    let key = match key_text {
        None => None,
        Some(text) => {
            let key_path = checker.manifest_dir.join(text);
            match read_key(&key_path) {
                Ok(pem) => Some((key_path, pem)),
                Err((message, help)) => {
                    checker.error(format!("{path}.import-key"), message).help = Some(help);
                    return None;
                }
            }
        }
    };
    check_imported(checker, path, &cert_path, key, cert_der)
}

fn check_imported(
    checker: &mut Checker,
    path: &str,
    cert_path: &Path,
    key: Option<(PathBuf, String)>,
    cert_der: Vec<u8>,
) -> Option<Found> {
    let shown = cert_path.display();
    let Ok((_, cert)) = X509Certificate::from_der(&cert_der) else {
        checker.error(
            format!("{path}.import-cert"),
            format!("{shown} is not a readable X.509 certificate"),
        );
        return None;
    };
    let constraints = cert
        .basic_constraints()
        .ok()
        .flatten()
        .map(|c| c.value.clone());
    let is_ca = constraints.as_ref().is_some_and(|c| c.ca);
    let can_sign = match cert.key_usage() {
        Ok(Some(usage)) => usage.value.key_cert_sign(),
        _ => true,
    };
    if !is_ca || !can_sign {
        checker.error(
            format!("{path}.import-cert"),
            format!("{shown} is not a CA certificate: it lacks basicConstraints CA:TRUE or keyCertSign"),
        )
        .help = Some("import the CA that signed this certificate instead".into());
        return None;
    }
    let now = OffsetDateTime::now_utc().unix_timestamp();
    let not_after = cert.validity().not_after.timestamp();
    if not_after <= now {
        checker
            .error(
                format!("{path}.import-cert"),
                format!(
                    "CA certificate {shown} expired at {}",
                    cert.validity().not_after
                ),
            )
            .help = Some("renew the CA certificate with its key, or create a new CA".into());
        return None;
    }
    if cert.validity().not_before.timestamp() > now {
        checker.error(
            format!("{path}.import-cert"),
            format!(
                "CA certificate {shown} is not valid before {}",
                cert.validity().not_before
            ),
        );
        return None;
    }
    if let Some((key_path, key_pem)) = &key
        && !key_matches(key_pem, &cert)
    {
        checker
            .error(
                format!("{path}.import-key"),
                format!("{} is not the key of {shown}", key_path.display()),
            )
            .help = Some("name the key that belongs to this CA certificate".into());
        return None;
    }
    let Some(algorithm) = algorithm_of_spki(cert.public_key()) else {
        checker.error(
            format!("{path}.import-cert"),
            format!("{shown} has an unsupported key type"),
        );
        return None;
    };
    let subject = subject_of(&cert);
    let path_len = constraints
        .and_then(|c| c.path_len_constraint)
        .map(|n| n.min(255) as u8);
    Some(Found {
        ca: ImportedCa {
            cert_der,
            key_pem: key.map(|(_, pem)| pem),
            source: cert_path.to_path_buf(),
        },
        subject,
        algorithm,
        remaining: Duration::from_secs((not_after - now) as u64),
        path_len,
    })
}

fn read_certificate(path: &Path) -> Result<Vec<u8>, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let blocks =
        pem::parse_many(&text).map_err(|e| format!("{} is not PEM: {e}", path.display()))?;
    let mut certs = blocks.into_iter().filter(|b| b.tag() == "CERTIFICATE");
    let first = certs
        .next()
        .ok_or_else(|| format!("{} holds no CERTIFICATE block", path.display()))?;
    if certs.next().is_some() {
        return Err(format!(
            "{} holds several certificates; a signer file must hold exactly the one CA \
             certificate that matches its key",
            path.display()
        ));
    }
    Ok(first.into_contents())
}

/// Reads a private key in PKCS#1, SEC1 or PKCS#8 PEM; an encrypted key is reported as such.
fn read_key(path: &Path) -> Result<String, (String, String)> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| {
        (
            format!("cannot read {shown}: {e}"),
            "check the path, relative to the manifest".into(),
        )
    })?;
    if text.contains("ENCRYPTED") {
        return Err((
            format!("{shown} is an encrypted private key"),
            format!("decrypt it first, such as `openssl pkey -in {shown} -out plain.key`"),
        ));
    }
    KeyPair::from_pem(&text).map_err(|e| {
        (
            format!("{shown} is not a readable private key: {e}"),
            "give an RSA or ECDSA key in PKCS#1 (RSA PRIVATE KEY), SEC1 (EC PRIVATE KEY) or \
             PKCS#8 (PRIVATE KEY) PEM"
                .into(),
        )
    })?;
    Ok(text)
}
