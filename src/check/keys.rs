//! Private and public key files: which encoding a PEM key uses (PKCS#1, SEC1, PKCS#8,
//! encrypted), and its public half, for comparison with certificates.
//!
//! The public half is read from the key's own DER where the encoding carries it: the
//! RSA modulus and exponent, or the SEC1 publicKey field. So keys that aws-lc-rs
//! rejects, such as RSA keys under 2048 bits, can still be compared. Other keys go
//! through rcgen.

use rcgen::{KeyPair, PublicKeyData};
use rustls_pki_types::PrivateKeyDer;
use serde::Serialize;

use super::x509::{CertInfo, PublicKeyInfo, parse_spki};

/// The encoding of a private key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyFormat {
    /// `BEGIN RSA PRIVATE KEY`, RFC 8017.
    #[serde(rename = "PKCS#1")]
    Pkcs1,
    /// `BEGIN EC PRIVATE KEY`, RFC 5915.
    #[serde(rename = "SEC1")]
    Sec1,
    /// `BEGIN PRIVATE KEY`, RFC 5208.
    #[serde(rename = "PKCS#8")]
    Pkcs8,
}

impl KeyFormat {
    pub fn name(self) -> &'static str {
        match self {
            KeyFormat::Pkcs1 => "PKCS#1",
            KeyFormat::Sec1 => "SEC1",
            KeyFormat::Pkcs8 => "PKCS#8",
        }
    }
}

/// The result of reading a private key file.
#[derive(Debug, Clone)]
pub enum KeyRead {
    Readable {
        format: KeyFormat,
        /// The PEM label, when it does not name `format` (such as PKCS#8 content under
        /// `BEGIN RSA PRIVATE KEY`).
        mislabelled: Option<String>,
        public: PublicKeyInfo,
    },
    /// An encrypted key, with the name of its encryption.
    Encrypted(String),
    /// Not a private key, with a description of what was found.
    Unreadable(String),
}

/// Reads the first private key of a PEM text.
pub fn read_private_key(text: &str) -> KeyRead {
    let blocks = match pem::parse_many(text) {
        Ok(blocks) if !blocks.is_empty() => blocks,
        Ok(_) => return KeyRead::Unreadable("no PEM block found".into()),
        Err(e) => return KeyRead::Unreadable(format!("invalid PEM: {e}")),
    };
    let Some(block) = blocks.iter().find(|b| b.tag().ends_with("PRIVATE KEY")) else {
        let tags: Vec<&str> = blocks.iter().map(|b| b.tag()).collect();
        return KeyRead::Unreadable(format!("no private key block, only {}", tags.join(", ")));
    };
    if block.tag() == "ENCRYPTED PRIVATE KEY" {
        return KeyRead::Encrypted("PKCS#8 EncryptedPrivateKeyInfo".into());
    }
    if block
        .headers()
        .get("Proc-Type")
        .is_some_and(|v| v.contains("ENCRYPTED"))
    {
        return KeyRead::Encrypted(format!(
            "OpenSSL's legacy PEM encryption of a `{}` block",
            block.tag()
        ));
    }
    read_private_der(block.tag(), block.contents())
}

fn read_private_der(tag: &str, der: &[u8]) -> KeyRead {
    let format = match PrivateKeyDer::try_from(der) {
        Ok(PrivateKeyDer::Pkcs1(_)) => KeyFormat::Pkcs1,
        Ok(PrivateKeyDer::Sec1(_)) => KeyFormat::Sec1,
        Ok(PrivateKeyDer::Pkcs8(_)) => KeyFormat::Pkcs8,
        _ => {
            return KeyRead::Unreadable(format!(
                "the `{tag}` block is not a PKCS#1, SEC1 or PKCS#8 private key"
            ));
        }
    };
    let expected_tag = match format {
        KeyFormat::Pkcs1 => "RSA PRIVATE KEY",
        KeyFormat::Sec1 => "EC PRIVATE KEY",
        KeyFormat::Pkcs8 => "PRIVATE KEY",
    };
    let mislabelled = (tag != expected_tag).then(|| tag.to_string());
    let public = public_from_der(format, der).or_else(|| public_from_rcgen(der));
    match public {
        Some(public) => KeyRead::Readable {
            format,
            mislabelled,
            public,
        },
        None => KeyRead::Unreadable(format!(
            "a {} structure whose key type pkic cannot read (RSA, ECDSA and Ed25519 are supported)",
            format.name()
        )),
    }
}

fn public_from_rcgen(der: &[u8]) -> Option<PublicKeyInfo> {
    let key = KeyPair::try_from(der).ok()?;
    parse_spki(&key.subject_public_key_info())
}

/// Reads the public half from the key's own DER: RSA n and e, or SEC1's publicKey.
fn public_from_der(format: KeyFormat, der: &[u8]) -> Option<PublicKeyInfo> {
    match format {
        KeyFormat::Pkcs1 => rsa_public(der),
        KeyFormat::Sec1 => ec_public(der, None),
        KeyFormat::Pkcs8 => {
            let info = Der::new(der).sequence()?;
            let mut fields = Der::new(info);
            fields.next()?;
            let algorithm = fields.next()?;
            let private = fields.next()?;
            let mut algorithm_fields = Der::new(algorithm.content);
            let oid = algorithm_fields.next()?;
            let parameters = algorithm_fields.next();
            match oid.content {
                RSA_ENCRYPTION => rsa_public(private.content),
                EC_PUBLIC_KEY => ec_public(private.content, parameters.map(|p| p.content)),
                _ => None,
            }
        }
    }
}

/// DER content of the OID rsaEncryption, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
/// DER content of the OID id-ecPublicKey, 1.2.840.10045.2.1.
const EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// Converts an RSAPrivateKey (RFC 8017 A.1.2) to the RSAPublicKey DER of a certificate.
fn rsa_public(der: &[u8]) -> Option<PublicKeyInfo> {
    let mut fields = Der::new(Der::new(der).sequence()?);
    fields.next()?;
    let modulus = fields.next()?;
    let exponent = fields.next()?;
    let content = [modulus.raw, exponent.raw].concat();
    let mut bits = vec![0x30];
    bits.extend(der_length(content.len()));
    bits.extend(content);
    let significant = modulus.content.iter().skip_while(|b| **b == 0).count();
    Some(PublicKeyInfo {
        algorithm: format!("RSA {}", significant * 8),
        rsa_bits: Some(significant * 8),
        bits,
    })
}

/// Extracts the publicKey point of an ECPrivateKey (RFC 5915). `curve` is the OID
/// content from a PKCS#8 wrapper, used when the SEC1 structure leaves out its parameters.
fn ec_public(der: &[u8], curve: Option<&[u8]>) -> Option<PublicKeyInfo> {
    let mut fields = Der::new(Der::new(der).sequence()?);
    let mut curve = curve.map(<[u8]>::to_vec);
    let mut point = None;
    while let Some(field) = fields.next() {
        match field.tag {
            0xa0 => curve = Der::new(field.content).next().map(|o| o.content.to_vec()),
            0xa1 => point = Der::new(field.content).next().map(|b| b.content.to_vec()),
            _ => {}
        }
    }
    let point = point?;
    let algorithm = match curve.as_deref() {
        Some([0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07]) => "ECDSA P-256",
        Some([0x2b, 0x81, 0x04, 0x00, 0x22]) => "ECDSA P-384",
        Some([0x2b, 0x81, 0x04, 0x00, 0x23]) => "ECDSA P-521",
        _ => "ECDSA",
    };
    Some(PublicKeyInfo {
        algorithm: algorithm.to_string(),
        rsa_bits: None,
        // The BIT STRING's first octet counts unused bits, which is 0 for a point.
        bits: point.get(1..)?.to_vec(),
    })
}

/// Reads every public key of a PEM text, as `--service-account-key-file` does: public
/// keys (SPKI or PKCS#1), private keys and certificates.
pub fn read_public_keys(text: &str) -> Result<Vec<PublicKeyInfo>, String> {
    let blocks = pem::parse_many(text).map_err(|e| format!("invalid PEM: {e}"))?;
    let mut keys = Vec::new();
    for block in &blocks {
        let key = match block.tag() {
            "PUBLIC KEY" => parse_spki(block.contents()),
            "RSA PUBLIC KEY" => Some(PublicKeyInfo {
                algorithm: "RSA".into(),
                rsa_bits: None,
                bits: block.contents().to_vec(),
            }),
            "CERTIFICATE" => CertInfo::parse(block.contents()).ok().map(|c| c.public_key),
            tag if tag.ends_with("PRIVATE KEY") => match read_private_der(tag, block.contents()) {
                KeyRead::Readable { public, .. } => Some(public),
                _ => None,
            },
            _ => None,
        };
        keys.extend(key);
    }
    if keys.is_empty() {
        return Err("no public key, private key or certificate found".into());
    }
    Ok(keys)
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

/// One DER element: its tag, its content, and its whole encoding.
struct Element<'a> {
    tag: u8,
    content: &'a [u8],
    raw: &'a [u8],
}

/// A minimal reader of consecutive DER elements with single-byte tags, enough for
/// the key structures above.
struct Der<'a> {
    input: &'a [u8],
}

impl<'a> Der<'a> {
    fn new(input: &'a [u8]) -> Self {
        Der { input }
    }

    fn sequence(mut self) -> Option<&'a [u8]> {
        let element = self.next()?;
        (element.tag == 0x30).then_some(element.content)
    }

    fn next(&mut self) -> Option<Element<'a>> {
        let (&tag, rest) = self.input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (length, rest) = if first < 0x80 {
            (first as usize, rest)
        } else {
            let count = (first & 0x7f) as usize;
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let length = rest[..count]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | *b as usize);
            (length, &rest[count..])
        };
        if rest.len() < length {
            return None;
        }
        let header = self.input.len() - rest.len();
        let raw = &self.input[..header + length];
        let element = Element {
            tag,
            content: &rest[..length],
            raw,
        };
        self.input = &rest[length..];
        Some(element)
    }
}
