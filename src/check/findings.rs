//! The finding registry of `pkic check`: every kind of problem it can report, with a
//! stable kebab-case id and a fixed level, and the finding type itself.
//!
//! Ids are part of the command's interface (scripts filter on them in the JSON output),
//! so an id is never renamed or reused for another rule.

use serde::Serialize;

/// How much a finding matters. Errors fail the check, warnings fail it only with
/// `--strict`, and notes never do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Level {
    Error,
    Warning,
    Note,
}

impl Level {
    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warning => "warning",
            Level::Note => "note",
        }
    }
}

/// One kind of finding: its id, level and a one-line description.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    pub id: &'static str,
    pub level: Level,
    pub title: &'static str,
}

/// Declares each kind as a constant and lists them all in [`ALL`].
macro_rules! kinds {
    ($($name:ident = ($id:literal, $level:ident, $title:literal);)*) => {
        $(pub const $name: Kind = Kind { id: $id, level: Level::$level, title: $title };)*
        /// Every kind of finding, in the order of the report's documentation.
        pub const ALL: &[Kind] = &[$($name),*];
    };
}

kinds! {
    FILE_MISSING = ("file-missing", Error,
        "a file named by a flag, kubeconfig or map is not in the tree");
    FILE_OUTSIDE_TREE = ("file-outside-tree", Note,
        "a file lies outside the checked directory and was not read");
    PEM_INVALID = ("pem-invalid", Error, "a certificate file contains no readable PEM certificate");
    CERT_UNPARSABLE = ("cert-unparsable", Error, "a certificate is not valid X.509 DER");
    KEY_UNREADABLE = ("key-unreadable", Error,
        "a key file contains no private key in PKCS#1, SEC1 or PKCS#8");
    KEY_ENCRYPTED = ("key-encrypted", Error,
        "a private key is encrypted, which Kubernetes components cannot read");
    KEY_MISMATCH = ("key-mismatch", Error, "a private key is not the key of its certificate");
    KEY_SHARED = ("key-shared", Error,
        "certificates of different subjects are issued for one key pair");
    CERT_VERSION_1 = ("cert-version-1", Warning, "an X.509 v1 certificate has no extensions");
    EXPIRED = ("expired", Error, "a certificate has expired");
    NOT_YET_VALID = ("not-yet-valid", Error, "a certificate is not valid yet");
    INVALID_AT_TIME = ("invalid-at-time", Error,
        "a certificate is not valid at the time given with --at");
    EXPIRES_SOON = ("expires-soon", Warning, "a certificate expires within --warn-within");
    VALIDITY_OUTSIDE_ISSUER = ("validity-outside-issuer", Warning,
        "a certificate is valid outside its issuer's validity");
    CA_NOT_MARKED_CA = ("ca-not-marked-ca", Error,
        "a certificate used as a CA lacks basicConstraints CA:TRUE");
    CA_KEY_USAGE_MISSING = ("ca-key-usage-missing", Error,
        "a CA certificate lacks the keyCertSign key usage");
    LEAF_IS_CA = ("leaf-is-ca", Error, "a leaf certificate is marked as a CA");
    LEAF_KEY_USAGE = ("leaf-key-usage", Error, "a leaf certificate's keyUsage does not fit TLS");
    EKU_SERVER_AUTH_MISSING = ("eku-server-auth-missing", Error,
        "a serving certificate lacks the serverAuth extended key usage");
    EKU_CLIENT_AUTH_MISSING = ("eku-client-auth-missing", Error,
        "a client certificate lacks the clientAuth extended key usage");
    EKU_ABSENT = ("eku-absent", Warning,
        "a leaf certificate has no extendedKeyUsage and fits any purpose");
    PATH_LENGTH_EXCEEDED = ("path-length-exceeded", Error,
        "a chain has more CAs below a CA than its path length allows");
    RSA_KEY_TOO_SMALL = ("rsa-key-too-small", Error, "an RSA key has fewer than 2048 bits");
    SHA1_SIGNATURE = ("sha1-signature", Error, "a certificate is signed with SHA-1");
    SKID_MISSING = ("skid-missing", Warning, "a certificate has no subjectKeyIdentifier");
    AKID_MISSING = ("akid-missing", Warning, "a certificate has no authorityKeyIdentifier");
    SERIAL_NOT_POSITIVE = ("serial-not-positive", Error, "a serial number is zero or negative");
    SERIAL_DUPLICATE = ("serial-duplicate", Error,
        "two certificates of one issuer share a serial number");
    HOST_NAME_ONLY_IN_CN = ("host-name-only-in-cn", Error,
        "a serving certificate has no subject alternative name");
    ISSUER_NOT_FOUND = ("issuer-not-found", Error,
        "no CA in the tree has the certificate's issuer name");
    ISSUER_STALE = ("issuer-stale", Error,
        "the issuer name matches a CA whose key did not sign the certificate");
    CA_SUBJECT_SHARED = ("ca-subject-shared", Warning,
        "two CAs with different keys share one subject");
    SIGNER_NOT_SINGLE_CERT = ("signer-not-single-cert", Error,
        "a signer certificate file contains more than one certificate");
    CHAIN_OUT_OF_ORDER = ("chain-out-of-order", Warning,
        "a chain file is not ordered leaf first, each certified by the next");
    TRUST_FILE_NOT_CA = ("trust-file-not-ca", Error,
        "a CA file contains a certificate that is not a CA");
    APISERVER_SAN_MISSING = ("apiserver-san-missing", Error,
        "the apiserver's serving certificate lacks a name clients use");
    APISERVER_SERVICE_IP_MISSING = ("apiserver-service-ip-missing", Error,
        "the apiserver's serving certificate lacks the first service IP");
    SERVICE_CIDR_UNSET = ("service-cidr-unset", Warning,
        "kube-apiserver has no --service-cluster-ip-range");
    KUBELET_CLIENT_NOT_NODE_IDENTITY = ("kubelet-client-not-node-identity", Error,
        "a kubelet client certificate is not CN=system:node:<name>, O=system:nodes");
    KUBELET_CLIENT_SHARED = ("kubelet-client-shared", Error,
        "two nodes authenticate with one kubelet identity");
    KUBELET_SERVING_SAN_MISSING = ("kubelet-serving-san-missing", Error,
        "a kubelet serving certificate lacks the node's name or address");
    ADMIN_NO_GROUP = ("admin-no-group", Error,
        "the admin client certificate has no group that grants rights");
    ADMIN_RELIES_ON_BINDING = ("admin-relies-on-binding", Note,
        "the admin's rights come from a ClusterRoleBinding, not system:masters");
    COMPONENT_IDENTITY_UNEXPECTED = ("component-identity-unexpected", Warning,
        "a control-plane client certificate has a CN that default RBAC does not know");
    FRONT_PROXY_NAME_NOT_ALLOWED = ("front-proxy-name-not-allowed", Error,
        "the front-proxy client CN is not in --requestheader-allowed-names");
    ETCD_SAN_MISSING = ("etcd-san-missing", Error,
        "an etcd server or peer certificate lacks its member's address");
    ETCD_CERT_NOT_CLIENT = ("etcd-cert-not-client", Error,
        "an etcd server or peer certificate cannot act as a client");
    SA_KEY_MISMATCH = ("sa-key-mismatch", Error,
        "a service-account signing key is not in the apiserver's verification keys");
    SA_KEY_IS_CA_KEY = ("sa-key-is-ca-key", Warning,
        "a CA private key signs service-account tokens");
    SERVER_CERT_UNTRUSTED = ("server-cert-untrusted", Error,
        "a server's certificate does not verify with its client's CA file");
    CLIENT_CERT_UNTRUSTED = ("client-cert-untrusted", Error,
        "a client's certificate does not verify with its server's CA file");
    ONE_WAY_TLS = ("one-way-tls", Warning, "a connection verifies only one side");
    TRUST_FLAG_UNSET = ("trust-flag-unset", Warning,
        "a component lacks the CA flag a connection needs");
    KUBECONFIG_INVALID = ("kubeconfig-invalid", Error,
        "a kubeconfig cannot be read or lacks a cluster, user or context");
    KUBECONFIG_CA_MISMATCH = ("kubeconfig-ca-mismatch", Error,
        "a kubeconfig's CA does not verify the apiserver's certificate");
    KUBECONFIG_SERVER_NOT_IN_SANS = ("kubeconfig-server-not-in-sans", Error,
        "a kubeconfig's server host is not in the apiserver's SANs");
    KUBECONFIG_CLIENT_UNTRUSTED = ("kubeconfig-client-untrusted", Error,
        "a kubeconfig's client certificate does not chain to --client-ca-file");
    OUTPUT_MISSING = ("output-missing", Error,
        "an output the manifest declares is not in the tree");
    OUTPUT_DIFFERS = ("output-differs", Error,
        "an output differs from the manifest's specification");
}

/// One problem found in a tree.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub id: &'static str,
    pub level: Level,
    /// The file the finding is about, relative to the checked directory, or `None` for
    /// the tree as a whole.
    pub file: Option<String>,
    /// One sentence saying what is wrong.
    pub message: String,
    /// One sentence saying how to fix it.
    pub fix: String,
}

impl Finding {
    pub fn new(
        kind: Kind,
        file: Option<&str>,
        message: impl Into<String>,
        fix: impl Into<String>,
    ) -> Finding {
        Finding {
            id: kind.id,
            level: kind.level,
            file: file.map(str::to_string),
            message: message.into(),
            fix: fix.into(),
        }
    }
}

/// Returns the kind with `id`, if any.
pub fn kind(id: &str) -> Option<Kind> {
    ALL.iter().copied().find(|k| k.id == id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn ids_unique() {
        let mut seen = BTreeSet::new();
        for kind in ALL {
            assert!(
                seen.insert(kind.id),
                "finding id `{}` is declared twice",
                kind.id
            );
        }
    }

    #[test]
    fn ids_kebab_case() {
        for kind in ALL {
            let valid = kind.id.split('-').all(|part| {
                !part.is_empty()
                    && part
                        .chars()
                        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
            });
            assert!(valid, "finding id `{}` is not kebab-case", kind.id);
        }
    }

    #[test]
    fn titles_present() {
        for kind in ALL {
            assert!(!kind.title.is_empty(), "finding `{}` has no title", kind.id);
        }
    }
}
