//! Per-certificate rules: files that cannot be read, validity, key size, signature
//! hash, key identifiers, serial numbers, CA and leaf extensions that must fit the
//! role, SANs of serving certificates, private keys that must match, and key pairs
//! that certificates of different subjects share.

use super::Context;
use super::findings::{self, Finding, Kind};
use super::inventory::{CertUse, Needs};
use super::keys::KeyRead;
use super::store::Problem;
use super::x509::CertInfo;

/// Runs every per-certificate rule.
pub fn check(ctx: &Context) -> Vec<Finding> {
    let mut found = Vec::new();
    file_problems(ctx, &mut found);
    for (label, cert) in ctx.store.unique_certs() {
        let mut rules = Rules {
            ctx,
            label,
            cert,
            found: &mut found,
        };
        rules.check();
    }
    key_problems(ctx, &mut found);
    key_mismatches(ctx, &mut found);
    shared_keys(ctx, &mut found);
    found
}

fn file_problems(ctx: &Context, found: &mut Vec<Finding>) {
    for (label, file) in &ctx.store.cert_files {
        let origin = file.origin.as_deref().unwrap_or("a file name in the tree");
        let finding = match &file.problem {
            None => continue,
            Some(Problem::Missing) => Finding::new(
                findings::FILE_MISSING,
                Some(label),
                format!("{label}, named by {origin}, does not exist"),
                "create the file, or correct the path that names it",
            ),
            Some(Problem::NotPem(reason)) => Finding::new(
                findings::PEM_INVALID,
                Some(label),
                format!("{label} contains no readable certificate: {reason}"),
                "write the certificate as a PEM block that begins with -----BEGIN CERTIFICATE-----",
            ),
            Some(Problem::Unparsable(index, reason)) => Finding::new(
                findings::CERT_UNPARSABLE,
                Some(label),
                format!(
                    "certificate {} of {label} is not valid X.509: {reason}",
                    index + 1
                ),
                "reissue the certificate, or replace the damaged PEM block",
            ),
        };
        found.push(finding);
    }
}

struct Rules<'a> {
    ctx: &'a Context,
    label: &'a str,
    cert: &'a CertInfo,
    found: &'a mut Vec<Finding>,
}

impl Rules<'_> {
    fn push(&mut self, kind: Kind, message: String, fix: impl Into<String>) {
        self.found
            .push(Finding::new(kind, Some(self.label), message, fix));
    }

    /// Returns the certificate's name for messages: its quoted CN, or its subject.
    fn name(&self) -> String {
        format!("\"{}\"", self.cert.display_name())
    }

    fn check(&mut self) {
        self.validity();
        self.algorithms();
        self.identifiers();
        if self.cert.serial_not_positive() {
            let serial = self.cert.serial_hex();
            self.push(
                findings::SERIAL_NOT_POSITIVE,
                format!(
                    "{} has serial number {serial}, which is zero or negative; Go 1.23 and later \
                     refuse to parse it",
                    self.name()
                ),
                "reissue the certificate with a positive serial (clear the top bit of a random \
                 serial)",
            );
        }
        self.ca_extensions();
        let uses: Vec<&CertUse> = self.ctx.inventory.uses_of(self.label).collect();
        self.leaf_extensions(&uses);
    }

    fn validity(&mut self) {
        let (now, cert) = (self.ctx.now, self.cert);
        let until = super::expiry::format_time(cert.not_after);
        if now > cert.not_after {
            self.push(
                findings::EXPIRED,
                format!("{} expired on {until}", self.name()),
                "renew the certificate, and every kubeconfig that embeds it",
            );
        } else if now < cert.not_before {
            let from = super::expiry::format_time(cert.not_before);
            self.push(
                findings::NOT_YET_VALID,
                format!("{} is valid only from {from}", self.name()),
                "check the clock of the host that issued it, and reissue it with a notBefore in \
                 the past",
            );
        } else if cert.not_after - now < self.ctx.warn_within {
            let left = super::expiry::format_residual(cert.not_after - now);
            self.push(
                findings::EXPIRES_SOON,
                format!("{} expires on {until}, in {left}", self.name()),
                "renew the certificate before it expires",
            );
        }
        if let Some(at) = self.ctx.at
            && (at < cert.not_before || at > cert.not_after)
        {
            let at = super::expiry::format_time(at);
            self.push(
                findings::INVALID_AT_TIME,
                format!(
                    "{} is not valid at {at}: its validity is {} to {until}",
                    self.name(),
                    super::expiry::format_time(cert.not_before)
                ),
                "renew the certificate so that its validity covers that time",
            );
        }
    }

    fn algorithms(&mut self) {
        if let Some(bits) = self.cert.public_key.rsa_bits
            && bits < 2048
        {
            self.push(
                findings::RSA_KEY_TOO_SMALL,
                format!(
                    "{} has a {bits}-bit RSA key; Kubernetes and current TLS stacks need at least \
                     2048 bits",
                    self.name()
                ),
                "reissue the certificate with a new RSA key of 2048 bits or more, or an ECDSA \
                 P-256 key",
            );
        }
        // A root's self-signature is never checked by a verifier, so SHA-1 there is harmless.
        if self.cert.uses_sha1() && !(self.cert.is_ca() && self.cert.is_self_issued()) {
            self.push(
                findings::SHA1_SIGNATURE,
                format!(
                    "{} is signed with SHA-1, which Go's crypto/x509 rejects since Go 1.18",
                    self.name()
                ),
                "reissue the certificate with a SHA-256 signature",
            );
        }
    }

    fn identifiers(&mut self) {
        if self.cert.version == 1 {
            self.push(
                findings::CERT_VERSION_1,
                format!(
                    "{} is an X.509 v1 certificate, so it has no extensions: no SANs, usages or \
                     key identifiers",
                    self.name()
                ),
                "reissue it as X.509 v3 with an extensions file (openssl x509 -req -extfile FILE \
                 -extensions SECTION)",
            );
            return;
        }
        // RFC 5280 section 4.2.1.2 requires the subjectKeyIdentifier of a CA and only
        // recommends it for a leaf; Go's crypto/x509, and so kubeadm, omits it on leaves.
        if self.cert.skid.is_none() && self.cert.is_ca() {
            self.push(
                findings::SKID_MISSING,
                format!(
                    "the CA {} has no subjectKeyIdentifier, so verifiers cannot tell its key from \
                     another CA's with the same name",
                    self.name()
                ),
                "reissue it with subjectKeyIdentifier = hash",
            );
        }
        if self.cert.akid.is_none() && !self.cert.is_self_issued() {
            self.push(
                findings::AKID_MISSING,
                format!(
                    "{} has no authorityKeyIdentifier, so a stale issuer with the same name cannot \
                     be told apart",
                    self.name()
                ),
                "reissue it with authorityKeyIdentifier = keyid",
            );
        }
    }

    /// CA rules: a certificate that issues another one, or a signer's, must be marked
    /// CA, and every CA whose keyUsage is present needs keyCertSign.
    fn ca_extensions(&mut self) {
        if self.cert.version == 1 {
            return;
        }
        let issues = self.ctx.inventory.is_signer_file(self.label)
            || self.ctx.store.is_issuer_name(&self.cert.subject_der)
                && self.ctx.store.unique_certs().iter().any(|(_, other)| {
                    other.der != self.cert.der
                        && other.issuer_der == self.cert.subject_der
                        && self.ctx.signed(other, self.cert)
                });
        if issues && self.cert.basic_ca != Some(true) {
            self.push(
                findings::CA_NOT_MARKED_CA,
                format!(
                    "{} is used as a CA but lacks basicConstraints CA:TRUE, so verifiers reject \
                     every chain through it",
                    self.name()
                ),
                "reissue the CA with basicConstraints = critical,CA:TRUE",
            );
        }
        let is_ca = issues || self.cert.basic_ca == Some(true);
        if is_ca && self.cert.key_usage.is_some_and(|k| !k.key_cert_sign) {
            self.push(
                findings::CA_KEY_USAGE_MISSING,
                format!("{} is a CA but its keyUsage lacks keyCertSign", self.name()),
                "reissue the CA with keyUsage = critical,keyCertSign,cRLSign,digitalSignature",
            );
        }
    }

    fn leaf_extensions(&mut self, uses: &[&CertUse]) {
        let cert = self.cert;
        let serves = uses.iter().any(|u| u.needs == Needs::Server)
            || (uses.is_empty() && !cert.is_ca() && cert.eku.is_some_and(|e| e.server_auth));
        if serves && cert.sans.is_empty() {
            let cn = cert.common_name.clone().unwrap_or_default();
            self.push(
                findings::HOST_NAME_ONLY_IN_CN,
                format!(
                    "{} serves TLS but has no subject alternative name; Go ignores the CN \"{cn}\" \
                     since Go 1.15, so no client can verify it",
                    self.name()
                ),
                format!(
                    "reissue it with the host names and addresses clients dial as SANs, such as \
                     DNS:{cn}"
                ),
            );
        }
        if uses.is_empty() || cert.version == 1 {
            return;
        }
        let origin = uses[0].origin.clone();
        if cert.basic_ca == Some(true) {
            self.push(
                findings::LEAF_IS_CA,
                format!(
                    "{} is used as a leaf ({origin}) but is marked CA:TRUE",
                    self.name()
                ),
                "reissue it with basicConstraints = critical,CA:FALSE and its own key",
            );
        }
        if let Some(usage) = cert.key_usage
            && (usage.key_cert_sign || !(usage.digital_signature || usage.key_encipherment))
        {
            self.push(
                findings::LEAF_KEY_USAGE,
                format!(
                    "{} is used as a leaf ({origin}) but its keyUsage lacks digitalSignature or \
                     allows keyCertSign",
                    self.name()
                ),
                "reissue it with keyUsage = critical,digitalSignature,keyEncipherment",
            );
        }
        self.extended_key_usage(uses);
    }

    fn extended_key_usage(&mut self, uses: &[&CertUse]) {
        let Some(eku) = self.cert.eku else {
            self.push(
                findings::EKU_ABSENT,
                format!(
                    "{} has no extendedKeyUsage, so it is valid for any purpose, as a server and \
                     as a client",
                    self.name()
                ),
                "reissue it with extendedKeyUsage = serverAuth or clientAuth, as its role needs",
            );
            return;
        };
        for (needs, allowed, kind, name) in [
            (
                Needs::Server,
                eku.server_auth,
                findings::EKU_SERVER_AUTH_MISSING,
                "serverAuth",
            ),
            (
                Needs::Client,
                eku.client_auth,
                findings::EKU_CLIENT_AUTH_MISSING,
                "clientAuth",
            ),
        ] {
            if let Some(used) = uses.iter().find(|u| u.needs == needs)
                && !allowed
                && !eku.any
            {
                self.push(
                    kind,
                    format!(
                        "{} is used by {} but its extendedKeyUsage lacks {name}",
                        self.name(),
                        used.origin
                    ),
                    format!("reissue it with extendedKeyUsage including {name}"),
                );
            }
        }
    }
}

fn key_problems(ctx: &Context, found: &mut Vec<Finding>) {
    for (label, file) in &ctx.store.key_files {
        let origin = file.origin.as_deref().unwrap_or("a file name in the tree");
        let finding = match &file.read {
            None => Finding::new(
                findings::FILE_MISSING,
                Some(label),
                format!("{label}, named by {origin}, does not exist"),
                "restore the private key, or reissue its certificate with a new key",
            ),
            Some(KeyRead::Encrypted(how)) => Finding::new(
                findings::KEY_ENCRYPTED,
                Some(label),
                format!(
                    "{label} is a private key encrypted with {how}, which Kubernetes components \
                     cannot read because they take no passphrase"
                ),
                format!(
                    "decrypt it, for example with `openssl pkey -in {label} -out {label}` after \
                     entering the passphrase"
                ),
            ),
            Some(KeyRead::Unreadable(reason)) => Finding::new(
                findings::KEY_UNREADABLE,
                Some(label),
                format!("{label} contains no usable private key: {reason}"),
                "write the key as PKCS#1 (RSA PRIVATE KEY), SEC1 (EC PRIVATE KEY) or PKCS#8 \
                 (PRIVATE KEY) PEM",
            ),
            Some(KeyRead::Readable { .. }) => continue,
        };
        found.push(finding);
    }
}

fn key_mismatches(ctx: &Context, found: &mut Vec<Finding>) {
    let mut seen = std::collections::HashSet::new();
    for pair in ctx.inventory.pairs.iter().chain(&ctx.inventory.signers) {
        if !seen.insert((&pair.cert, &pair.key)) {
            continue;
        }
        let (Some(cert), Some(key)) = (
            ctx.store.certs(&pair.cert).first(),
            ctx.store.private_key(&pair.key),
        ) else {
            continue;
        };
        if cert.public_key.bits != key.bits {
            found.push(Finding::new(
                findings::KEY_MISMATCH,
                Some(&pair.key),
                format!(
                    "{} is not the private key of {} (used together by {}): the key is {}, the \
                     certificate's key is {}",
                    pair.key, pair.cert, pair.origin, key.algorithm, cert.public_key.algorithm
                ),
                format!(
                    "put the key that {} was issued for in {}, or reissue the certificate for this \
                     key",
                    pair.cert, pair.key
                ),
            ));
        }
    }
}

/// Reports each certificate whose public key is also the key of a certificate with
/// another subject, such as a node's kubelet certificate reissued for a key copied from
/// another node. The holder of that private key can authenticate as both subjects.
/// Certificates of one subject, such as a CA renewed with its key, may share a key.
fn shared_keys(ctx: &Context, found: &mut Vec<Finding>) {
    let mut first_with_key: std::collections::HashMap<&[u8], (&str, &CertInfo)> =
        std::collections::HashMap::new();
    for (label, cert) in ctx.store.unique_certs() {
        let Some(&(first_label, first)) = first_with_key.get(cert.public_key.bits.as_slice())
        else {
            first_with_key.insert(&cert.public_key.bits, (label, cert));
            continue;
        };
        if first.subject_der == cert.subject_der {
            continue;
        }
        found.push(Finding::new(
            findings::KEY_SHARED,
            Some(label),
            format!(
                "{label} ({}) is issued for the same key pair as {first_label} ({}), so the \
                 holder of that private key can authenticate as both",
                cert.subject, first.subject
            ),
            format!(
                "give {label} a key of its own: move its key file out of the tree and build \
                 again, or put back the key it was meant to have"
            ),
        ));
    }
}
