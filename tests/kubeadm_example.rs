//! Builds `examples/kubeadm.pki.toml` with the pkic binary and checks every output
//! against what `kubeadm init` creates in kubeadm 1.29 and later.
//!
//! The checks cover file names, subjects, issuers, SANs, key usages, validity, file
//! modes, the users of the kubeconfigs, the kubeadm:cluster-admins ClusterRoleBinding
//! and the PKI flags of the static Pods. The expected values come from kubeadm's
//! sources in kubernetes/kubernetes:
//! `cmd/kubeadm/app/phases/certs/certlist.go` (subjects and usages),
//! `cmd/kubeadm/app/util/pkiutil/pki_helpers.go` (SANs),
//! `cmd/kubeadm/app/phases/kubeconfig/kubeconfig.go` (kubeconfig users and the binding),
//! `cmd/kubeadm/app/constants/constants.go` (file names and validity),
//! `cmd/kubeadm/app/phases/controlplane/manifests.go`,
//! `cmd/kubeadm/app/phases/etcd/local.go` and
//! `cmd/kubeadm/app/componentconfigs/kubelet.go` (flags), and from client-go's
//! `keyutil.MarshalPrivateKeyToPEM` (key encoding).
//!
//! Every certificate is also checked with `openssl verify`, which must be on PATH.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use base64::Engine;
use support::peers::{
    describe_output, key_matches_cert, openssl_verify, peer_command, require_program,
    run_with_timeout,
};
use tempfile::TempDir;
use x509_parser::prelude::*;

const CONTROL_PLANE: &str = "cp-1";
const CONTROL_PLANE_IP: &str = "192.0.2.10";
const WORKER: &str = "worker-1";
const WORKER_IP: &str = "192.0.2.21";
const NODES: [(&str, &str); 2] = [(CONTROL_PLANE, CONTROL_PLANE_IP), (WORKER, WORKER_IP)];

/// Time allowed for one openssl command, which takes milliseconds when it works.
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(30);

const DAY: i64 = 86_400;
/// kubeadm's `CertificateBackdate`: notBefore lies this far before the creation time.
const BACKDATE: i64 = 5 * 60;
/// kubeadm's `CertificateValidityPeriod`, counted from the creation time.
const LEAF_VALIDITY: i64 = 365 * DAY;
/// kubeadm's `CACertificateValidityPeriod`, counted from the creation time.
const CA_VALIDITY: i64 = 10 * 365 * DAY;

/// Runs `pkic build` on the example, with its default variables, into a new directory.
fn build_example() -> TempDir {
    let out = tempfile::tempdir().expect("failed to create a temporary directory");
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubeadm.pki.toml");
    let output = Command::new(env!("CARGO_BIN_EXE_pkic"))
        .args(["-q", "build", "-m"])
        .arg(&manifest)
        .arg("-o")
        .arg(out.path())
        .output()
        .expect("failed to run pkic");
    assert!(
        output.status.success(),
        "pkic build of {} failed: {}",
        manifest.display(),
        describe_output(&output)
    );
    out
}

fn read_pem_der(path: &Path) -> Vec<u8> {
    let bytes =
        fs::read(path).unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
    pem_der(&bytes, &path.display().to_string())
}

/// Returns the DER of the first certificate in PEM text. `name` appears in messages.
fn pem_der(pem: &[u8], name: &str) -> Vec<u8> {
    let (_, block) = x509_parser::pem::parse_x509_pem(pem)
        .unwrap_or_else(|error| panic!("{name} contains no PEM block: {error}"));
    assert_eq!(block.label, "CERTIFICATE", "{name}: PEM label");
    block.contents
}

fn parse<'a>(der: &'a [u8], name: &str) -> X509Certificate<'a> {
    let (rest, cert) = parse_x509_certificate(der)
        .unwrap_or_else(|error| panic!("{name} is not a valid certificate: {error}"));
    assert!(rest.is_empty(), "{name} has bytes after the certificate");
    cert
}

fn common_names(name: &X509Name) -> Vec<String> {
    name.iter_common_name()
        .map(|a| a.as_str().expect("CN is a string").to_string())
        .collect()
}

fn organizations(name: &X509Name) -> Vec<String> {
    name.iter_organization()
        .map(|a| a.as_str().expect("O is a string").to_string())
        .collect()
}

fn mode(path: &Path) -> u32 {
    let metadata = fs::metadata(path)
        .unwrap_or_else(|error| panic!("cannot stat {}: {error}", path.display()));
    metadata.permissions().mode() & 0o777
}

/// Returns the DNS names and IP addresses of the subjectAltName extension.
fn sans(cert: &X509Certificate, name: &str) -> (BTreeSet<String>, BTreeSet<IpAddr>) {
    let mut dns = BTreeSet::new();
    let mut ips = BTreeSet::new();
    let extension = cert
        .subject_alternative_name()
        .unwrap_or_else(|error| panic!("{name}: invalid subjectAltName: {error}"));
    let Some(extension) = extension else {
        return (dns, ips);
    };
    for general_name in &extension.value.general_names {
        match general_name {
            GeneralName::DNSName(host) => {
                dns.insert(host.to_string());
            }
            GeneralName::IPAddress(bytes) => {
                let ip = match bytes.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*bytes).expect("4 bytes")),
                    16 => IpAddr::from(<[u8; 16]>::try_from(*bytes).expect("16 bytes")),
                    n => panic!("{name}: invalid IP SAN of {n} bytes"),
                };
                ips.insert(ip);
            }
            other => panic!("{name}: unexpected SAN {other:?}"),
        }
    }
    (dns, ips)
}

/// Returns whether the certificate allows serverAuth and clientAuth, and panics on any
/// other extended key usage.
fn extended_key_usages(cert: &X509Certificate, name: &str) -> (bool, bool) {
    let extension = cert
        .extended_key_usage()
        .unwrap_or_else(|error| panic!("{name}: invalid extendedKeyUsage: {error}"))
        .unwrap_or_else(|| panic!("{name} has no extendedKeyUsage"));
    let usage = extension.value;
    let others = usage.any
        || usage.code_signing
        || usage.email_protection
        || usage.time_stamping
        || usage.ocsp_signing
        || !usage.other.is_empty();
    assert!(!others, "{name}: extended key usages beyond TLS: {usage:?}");
    (usage.server_auth, usage.client_auth)
}

fn validity_seconds(cert: &X509Certificate) -> i64 {
    let validity = cert.validity();
    validity.not_after.timestamp() - validity.not_before.timestamp()
}

/// Checks a private key file: mode 0600, PKCS #1 as kubeadm writes RSA keys, and the
/// key of `cert_file`.
fn check_private_key(key_file: &Path, cert_file: &Path) {
    let name = key_file.display();
    assert_eq!(mode(key_file), 0o600, "{name}: file mode");
    let pem = fs::read_to_string(key_file).expect("key file is readable");
    assert!(
        pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "{name}: kubeadm writes RSA keys as PKCS #1, but the file starts with {:?}",
        pem.lines().next()
    );
    assert!(
        key_matches_cert(key_file, cert_file),
        "{name} is not the key of {}",
        cert_file.display()
    );
}

fn assert_verifies(ca_file: &Path, cert_file: &Path, purpose: &str) {
    if let Err(message) = openssl_verify(&[ca_file], &[], cert_file, purpose) {
        panic!("{message}");
    }
}

/// What kubeadm puts in one leaf certificate. Paths are relative to the output
/// directory, where the files of one node lie under `nodes/<node>/`.
struct Leaf {
    cert_file: String,
    key_file: String,
    ca_file: &'static str,
    issuer_cn: &'static str,
    cn: String,
    organizations: Vec<&'static str>,
    server: bool,
    client: bool,
    dns: Vec<String>,
    ips: Vec<&'static str>,
}

impl Leaf {
    /// Returns a client certificate without organization or SANs. Other leaves
    /// override fields with struct update syntax.
    fn client(base: &str, ca_file: &'static str, issuer_cn: &'static str, cn: &str) -> Leaf {
        Leaf {
            cert_file: format!("{base}.crt"),
            key_file: format!("{base}.key"),
            ca_file,
            issuer_cn,
            cn: cn.to_string(),
            organizations: Vec::new(),
            server: false,
            client: true,
            dns: Vec::new(),
            ips: Vec::new(),
        }
    }
}

/// Returns the leaf certificates of `kubeadm init`, plus the kubelet serving
/// certificates that this example signs with the cluster CA.
fn kubeadm_leaves() -> Vec<Leaf> {
    let mut leaves = vec![
        Leaf {
            server: true,
            client: false,
            dns: vec![
                CONTROL_PLANE.into(),
                "kubernetes".into(),
                "kubernetes.default".into(),
                "kubernetes.default.svc".into(),
                "kubernetes.default.svc.cluster.local".into(),
            ],
            ips: vec!["10.96.0.1", CONTROL_PLANE_IP],
            ..Leaf::client(
                "pki/apiserver",
                "pki/ca.crt",
                "kubernetes",
                "kube-apiserver",
            )
        },
        Leaf {
            organizations: vec!["kubeadm:cluster-admins"],
            ..Leaf::client(
                "pki/apiserver-kubelet-client",
                "pki/ca.crt",
                "kubernetes",
                "kube-apiserver-kubelet-client",
            )
        },
        Leaf::client(
            "pki/front-proxy-client",
            "pki/front-proxy-ca.crt",
            "front-proxy-ca",
            "front-proxy-client",
        ),
        Leaf::client(
            "pki/apiserver-etcd-client",
            "pki/etcd/ca.crt",
            "etcd-ca",
            "kube-apiserver-etcd-client",
        ),
        Leaf::client(
            "pki/etcd/healthcheck-client",
            "pki/etcd/ca.crt",
            "etcd-ca",
            "kube-etcd-healthcheck-client",
        ),
    ];
    for base in ["server", "peer"] {
        leaves.push(Leaf {
            server: true,
            client: true,
            dns: vec![CONTROL_PLANE.into(), "localhost".into()],
            ips: vec![CONTROL_PLANE_IP, "127.0.0.1", "::1"],
            ..Leaf::client(
                &format!("nodes/{CONTROL_PLANE}/pki/etcd/{base}"),
                "pki/etcd/ca.crt",
                "etcd-ca",
                CONTROL_PLANE,
            )
        });
    }
    for (node, ip) in NODES {
        let user = format!("system:node:{node}");
        leaves.push(Leaf {
            organizations: vec!["system:nodes"],
            ..Leaf::client(
                &format!("nodes/{node}/pki/kubelet-client"),
                "pki/ca.crt",
                "kubernetes",
                &user,
            )
        });
        leaves.push(Leaf {
            organizations: vec!["system:nodes"],
            server: true,
            client: false,
            dns: vec![node.into()],
            ips: vec![ip],
            ..Leaf::client(
                &format!("nodes/{node}/pki/kubelet"),
                "pki/ca.crt",
                "kubernetes",
                &user,
            )
        });
    }
    leaves
}

fn check_leaf(out: &Path, leaf: &Leaf) {
    let cert_file = out.join(&leaf.cert_file);
    let name = leaf.cert_file.as_str();
    let der = read_pem_der(&cert_file);
    let cert = parse(&der, name);

    assert_eq!(
        common_names(cert.subject()),
        std::slice::from_ref(&leaf.cn),
        "{name}: CN"
    );
    assert_eq!(
        organizations(cert.subject()),
        leaf.organizations,
        "{name}: O"
    );
    assert_eq!(
        common_names(cert.issuer()),
        [leaf.issuer_cn],
        "{name}: issuer CN"
    );
    let ca_der = read_pem_der(&out.join(leaf.ca_file));
    let ca = parse(&ca_der, leaf.ca_file);
    assert_eq!(
        cert.issuer().as_raw(),
        ca.subject().as_raw(),
        "{name}: issuer DN differs from the subject of {}",
        leaf.ca_file
    );

    assert!(!cert.is_ca(), "{name}: a leaf must not be a CA");
    let key_usage = cert
        .key_usage()
        .expect("valid keyUsage")
        .unwrap_or_else(|| panic!("{name} has no keyUsage"))
        .value;
    assert!(key_usage.digital_signature(), "{name}: digitalSignature");
    assert!(key_usage.key_encipherment(), "{name}: keyEncipherment");
    assert!(!key_usage.key_cert_sign(), "{name}: keyCertSign on a leaf");
    let (server, client) = extended_key_usages(&cert, name);
    assert_eq!(server, leaf.server, "{name}: serverAuth");
    assert_eq!(client, leaf.client, "{name}: clientAuth");

    let (dns, ips) = sans(&cert, name);
    let expected_dns: BTreeSet<String> = leaf.dns.iter().cloned().collect();
    let expected_ips: BTreeSet<IpAddr> = leaf.ips.iter().map(|ip| ip.parse().unwrap()).collect();
    assert_eq!(dns, expected_dns, "{name}: DNS SANs");
    assert_eq!(ips, expected_ips, "{name}: IP SANs");

    assert_eq!(
        validity_seconds(&cert),
        LEAF_VALIDITY + BACKDATE,
        "{name}: notAfter - notBefore"
    );
    let ca_file = out.join(leaf.ca_file);
    if leaf.server {
        assert_verifies(&ca_file, &cert_file, "sslserver");
    }
    if leaf.client {
        assert_verifies(&ca_file, &cert_file, "sslclient");
    }
    assert_eq!(mode(&cert_file), 0o644, "{name}: file mode");
    check_private_key(&out.join(&leaf.key_file), &cert_file);
}

#[test]
fn kubeadm_files_written() {
    require_program("openssl");
    let out = build_example();
    let mut expected: Vec<String> = [
        "pki/ca.crt",
        "pki/ca.key",
        "pki/apiserver.crt",
        "pki/apiserver.key",
        "pki/apiserver-kubelet-client.crt",
        "pki/apiserver-kubelet-client.key",
        "pki/front-proxy-ca.crt",
        "pki/front-proxy-ca.key",
        "pki/front-proxy-client.crt",
        "pki/front-proxy-client.key",
        "pki/etcd/ca.crt",
        "pki/etcd/ca.key",
        "pki/etcd/healthcheck-client.crt",
        "pki/etcd/healthcheck-client.key",
        "pki/apiserver-etcd-client.crt",
        "pki/apiserver-etcd-client.key",
        "pki/sa.key",
        "pki/sa.pub",
        "admin.conf",
        "super-admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ]
    .map(String::from)
    .to_vec();
    for file in [
        "pki/etcd/server.crt",
        "pki/etcd/server.key",
        "pki/etcd/peer.crt",
        "pki/etcd/peer.key",
    ] {
        expected.push(format!("nodes/{CONTROL_PLANE}/{file}"));
    }
    for (node, _) in NODES {
        expected.push(format!("nodes/{node}/kubelet.conf"));
    }
    for file in expected {
        assert!(out.path().join(&file).is_file(), "{file} was not written");
    }
    check_secret_modes(out.path());
    check_service_account_keys(out.path());
}

/// Checks that every key and kubeconfig in the output tree has mode 0600.
fn check_secret_modes(out: &Path) {
    let mut secrets = 0;
    for entry in walkdir::WalkDir::new(out) {
        let entry = entry.expect("output tree is readable");
        let path = entry.path();
        let is_secret = path
            .extension()
            .is_some_and(|extension| extension == "key" || extension == "conf");
        if entry.file_type().is_file() && is_secret {
            secrets += 1;
            assert_eq!(mode(path), 0o600, "{}: file mode", path.display());
        }
    }
    // Keys of 3 CAs, 9 shared leaves, 6 per-node leaves and the service account, plus
    // 6 kubeconfigs.
    assert_eq!(secrets, 25, "number of key and kubeconfig files");
}

#[test]
fn ca_certificates_match_kubeadm() {
    require_program("openssl");
    let out = build_example();
    let cas = [
        ("pki/ca.crt", "pki/ca.key", "kubernetes"),
        (
            "pki/front-proxy-ca.crt",
            "pki/front-proxy-ca.key",
            "front-proxy-ca",
        ),
        ("pki/etcd/ca.crt", "pki/etcd/ca.key", "etcd-ca"),
    ];
    for (cert_name, key_name, cn) in cas {
        let cert_file = out.path().join(cert_name);
        let der = read_pem_der(&cert_file);
        let cert = parse(&der, cert_name);
        assert_eq!(common_names(cert.subject()), [cn], "{cert_name}: CN");
        assert!(
            organizations(cert.subject()).is_empty(),
            "{cert_name}: kubeadm's CAs have no O"
        );
        assert_eq!(
            cert.issuer().as_raw(),
            cert.subject().as_raw(),
            "{cert_name}: a root is its own issuer"
        );
        let constraints = cert
            .basic_constraints()
            .expect("valid basicConstraints")
            .unwrap_or_else(|| panic!("{cert_name} has no basicConstraints"));
        assert!(constraints.value.ca, "{cert_name}: basicConstraints CA");
        // NOTE: kubeadm's CAs also have keyEncipherment and a DNS SAN equal to the CN.
        // pkic cannot set either on a CA, so neither is checked.
        let key_usage = cert
            .key_usage()
            .expect("valid keyUsage")
            .unwrap_or_else(|| panic!("{cert_name} has no keyUsage"))
            .value;
        assert!(key_usage.key_cert_sign(), "{cert_name}: keyCertSign");
        assert!(
            key_usage.digital_signature(),
            "{cert_name}: digitalSignature"
        );
        assert_eq!(
            validity_seconds(&cert),
            CA_VALIDITY + BACKDATE,
            "{cert_name}: notAfter - notBefore"
        );
        assert_verifies(&cert_file, &cert_file, "any");
        assert_eq!(mode(&cert_file), 0o644, "{cert_name}: file mode");
        check_private_key(&out.path().join(key_name), &cert_file);
    }
}

#[test]
fn leaf_certificates_match_kubeadm() {
    require_program("openssl");
    let out = build_example();
    for leaf in kubeadm_leaves() {
        check_leaf(out.path(), &leaf);
    }
}

/// Checks that pki/sa.pub is the public key of pki/sa.key.
fn check_service_account_keys(out: &Path) {
    let key_file = out.join("pki/sa.key");
    let public_file = out.join("pki/sa.pub");
    assert_eq!(mode(&key_file), 0o600, "pki/sa.key: file mode");
    assert_eq!(mode(&public_file), 0o644, "pki/sa.pub: file mode");
    let key = fs::read_to_string(&key_file).expect("pki/sa.key is readable");
    assert!(
        key.starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "pki/sa.key: kubeadm writes an RSA key as PKCS #1"
    );
    let mut command = peer_command("openssl");
    command.args(["pkey", "-pubout", "-in"]).arg(&key_file);
    let output = run_with_timeout(&mut command, OPENSSL_TIMEOUT);
    assert!(
        output.status.success(),
        "openssl cannot read pki/sa.key: {}",
        describe_output(&output)
    );
    let public = fs::read(&public_file).expect("pki/sa.pub is readable");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&public),
        "pki/sa.pub is not the public key of pki/sa.key"
    );
}

/// Returns the values of `key` inside the top-level YAML block `section`. It reads the
/// block style of pkic's templates: `- ` list items and indented maps, one key a line.
fn yaml_values(text: &str, section: &str, key: &str) -> Vec<String> {
    let header = format!("{section}:");
    let prefix = format!("{key}:");
    let mut inside = false;
    let mut values = Vec::new();
    for line in text.lines() {
        if !line.starts_with(' ') && !line.starts_with('-') {
            inside = line == header;
            continue;
        }
        let item = line.trim_start().trim_start_matches("- ");
        if inside && let Some(value) = item.strip_prefix(&prefix) {
            values.push(value.trim().to_string());
        }
    }
    values
}

/// Returns the value of a top-level `key: value` line.
fn yaml_top_level(text: &str, key: &str) -> Option<String> {
    let prefix = format!("{key}:");
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .map(|value| value.trim().to_string())
}

fn decode_base64(value: &str, name: &str) -> Vec<u8> {
    base64::engine::general_purpose::STANDARD
        .decode(value)
        .unwrap_or_else(|error| panic!("{name}: invalid base64: {error}"))
}

/// Returns the only value of `key` in `section`, decoded from base64.
fn embedded_data(text: &str, section: &str, key: &str, file: &str) -> Vec<u8> {
    let values = yaml_values(text, section, key);
    assert_eq!(values.len(), 1, "{file}: {section}[].{key} values");
    decode_base64(&values[0], &format!("{file}: {key}"))
}

/// One kubeconfig file and the CN and O that kubeadm gives its user.
struct KubeconfigUser {
    file: String,
    cn: String,
    organizations: Vec<&'static str>,
}

fn check_kubeconfig(out: &Path, expected: &KubeconfigUser, scratch: &Path) {
    let file = expected.file.as_str();
    let path = out.join(file);
    let text = fs::read_to_string(&path).unwrap_or_else(|error| panic!("{file}: {error}"));
    assert_eq!(mode(&path), 0o600, "{file}: file mode");

    let server = format!("https://{CONTROL_PLANE_IP}:6443");
    assert_eq!(yaml_values(&text, "clusters", "server"), [server], "{file}");
    assert_eq!(
        yaml_values(&text, "clusters", "name"),
        ["kubernetes"],
        "{file}"
    );
    assert_eq!(
        yaml_values(&text, "users", "name"),
        std::slice::from_ref(&expected.cn),
        "{file}: kubeadm names the user after the CN"
    );
    let context = format!("{}@kubernetes", expected.cn);
    assert_eq!(
        yaml_values(&text, "contexts", "name"),
        std::slice::from_ref(&context),
        "{file}"
    );
    assert_eq!(
        yaml_top_level(&text, "current-context"),
        Some(context),
        "{file}"
    );

    let ca_pem = embedded_data(&text, "clusters", "certificate-authority-data", file);
    let ca_file = out.join("pki/ca.crt");
    assert_eq!(
        ca_pem,
        fs::read(&ca_file).expect("pki/ca.crt is readable"),
        "{file}: the embedded CA is not pki/ca.crt"
    );

    let cert_pem = embedded_data(&text, "users", "client-certificate-data", file);
    let key_pem = embedded_data(&text, "users", "client-key-data", file);
    let der = pem_der(&cert_pem, file);
    let cert = parse(&der, file);
    assert_eq!(
        common_names(cert.subject()),
        std::slice::from_ref(&expected.cn),
        "{file}: CN"
    );
    assert_eq!(
        organizations(cert.subject()),
        expected.organizations,
        "{file}: O"
    );
    assert_eq!(
        common_names(cert.issuer()),
        ["kubernetes"],
        "{file}: issuer CN"
    );
    assert_eq!(
        extended_key_usages(&cert, file),
        (false, true),
        "{file}: (serverAuth, clientAuth)"
    );
    assert_eq!(
        validity_seconds(&cert),
        LEAF_VALIDITY + BACKDATE,
        "{file}: notAfter - notBefore"
    );

    let stem = file.replace('/', "_");
    let cert_file = scratch.join(format!("{stem}.crt"));
    let key_file = scratch.join(format!("{stem}.key"));
    fs::write(&cert_file, &cert_pem).expect("failed to write the embedded certificate");
    fs::write(&key_file, &key_pem).expect("failed to write the embedded key");
    assert_verifies(&ca_file, &cert_file, "sslclient");
    assert!(
        key_matches_cert(&key_file, &cert_file),
        "{file}: client-key-data is not the key of client-certificate-data"
    );
}

#[test]
fn kubeconfigs_and_binding_match_kubeadm() {
    require_program("openssl");
    let out = build_example();
    let scratch = tempfile::tempdir().expect("failed to create a temporary directory");
    let mut kubeconfigs = vec![
        KubeconfigUser {
            file: "admin.conf".into(),
            cn: "kubernetes-admin".into(),
            organizations: vec!["kubeadm:cluster-admins"],
        },
        KubeconfigUser {
            file: "super-admin.conf".into(),
            cn: "kubernetes-super-admin".into(),
            organizations: vec!["system:masters"],
        },
        KubeconfigUser {
            file: "controller-manager.conf".into(),
            cn: "system:kube-controller-manager".into(),
            organizations: Vec::new(),
        },
        KubeconfigUser {
            file: "scheduler.conf".into(),
            cn: "system:kube-scheduler".into(),
            organizations: Vec::new(),
        },
    ];
    for (node, _) in NODES {
        kubeconfigs.push(KubeconfigUser {
            file: format!("nodes/{node}/kubelet.conf"),
            cn: format!("system:node:{node}"),
            organizations: vec!["system:nodes"],
        });
    }
    for kubeconfig in &kubeconfigs {
        check_kubeconfig(out.path(), kubeconfig, scratch.path());
    }
    check_cluster_admins_binding(out.path());
}

/// Checks the ClusterRoleBinding that gives admin.conf its rights.
fn check_cluster_admins_binding(out: &Path) {
    let file = "rbac/kubeadm-cluster-admins.yaml";
    let text = fs::read_to_string(out.join(file)).unwrap_or_else(|error| panic!("{file}: {error}"));
    assert_eq!(
        yaml_top_level(&text, "apiVersion").as_deref(),
        Some("rbac.authorization.k8s.io/v1"),
        "{file}"
    );
    assert_eq!(
        yaml_top_level(&text, "kind").as_deref(),
        Some("ClusterRoleBinding"),
        "{file}"
    );
    assert_eq!(
        yaml_values(&text, "metadata", "name"),
        ["kubeadm:cluster-admins"],
        "{file}: binding name"
    );
    assert_eq!(
        yaml_values(&text, "roleRef", "kind"),
        ["ClusterRole"],
        "{file}"
    );
    assert_eq!(
        yaml_values(&text, "roleRef", "name"),
        ["cluster-admin"],
        "{file}"
    );
    assert_eq!(yaml_values(&text, "subjects", "kind"), ["Group"], "{file}");
    assert_eq!(
        yaml_values(&text, "subjects", "name"),
        ["kubeadm:cluster-admins"],
        "{file}: subject group"
    );
}

/// Reads a flag file into a map from flag name (without `--`) to value.
fn read_flags(out: &Path, file: &str) -> BTreeMap<String, String> {
    let text = fs::read_to_string(out.join(file)).unwrap_or_else(|error| panic!("{file}: {error}"));
    let mut flags = BTreeMap::new();
    for line in text.lines() {
        let (name, value) = line
            .strip_prefix("--")
            .and_then(|flag| flag.split_once('='))
            .unwrap_or_else(|| panic!("{file}: `{line}` is not --name=value"));
        let previous = flags.insert(name.to_string(), value.to_string());
        assert!(previous.is_none(), "{file}: --{name} is given twice");
    }
    flags
}

fn check_flags(out: &Path, file: &str, expected: &[(&str, String)]) {
    let flags = read_flags(out, file);
    for (name, value) in expected {
        assert_eq!(
            flags.get(*name),
            Some(value),
            "{file}: --{name} differs from kubeadm"
        );
    }
}

/// Returns the install path of a file under /etc/kubernetes.
fn installed(file: &str) -> String {
    format!("/etc/kubernetes/{file}")
}

#[test]
fn flag_files_match_kubeadm() {
    let out = build_example();
    check_control_plane_flags(out.path());
    check_etcd_flags(out.path());
    check_kubelet_flags(out.path());
}

fn check_control_plane_flags(out: &Path) {
    check_flags(
        out,
        "flags/kube-apiserver.flags",
        &[
            ("advertise-address", CONTROL_PLANE_IP.into()),
            ("service-cluster-ip-range", "10.96.0.0/12".into()),
            ("service-account-key-file", installed("pki/sa.pub")),
            ("service-account-signing-key-file", installed("pki/sa.key")),
            (
                "service-account-issuer",
                "https://kubernetes.default.svc.cluster.local".into(),
            ),
            ("client-ca-file", installed("pki/ca.crt")),
            ("tls-cert-file", installed("pki/apiserver.crt")),
            ("tls-private-key-file", installed("pki/apiserver.key")),
            (
                "kubelet-client-certificate",
                installed("pki/apiserver-kubelet-client.crt"),
            ),
            (
                "kubelet-client-key",
                installed("pki/apiserver-kubelet-client.key"),
            ),
            ("requestheader-username-headers", "X-Remote-User".into()),
            ("requestheader-group-headers", "X-Remote-Group".into()),
            (
                "requestheader-extra-headers-prefix",
                "X-Remote-Extra-".into(),
            ),
            (
                "requestheader-client-ca-file",
                installed("pki/front-proxy-ca.crt"),
            ),
            ("requestheader-allowed-names", "front-proxy-client".into()),
            (
                "proxy-client-cert-file",
                installed("pki/front-proxy-client.crt"),
            ),
            (
                "proxy-client-key-file",
                installed("pki/front-proxy-client.key"),
            ),
            ("etcd-servers", "https://127.0.0.1:2379".into()),
            ("etcd-cafile", installed("pki/etcd/ca.crt")),
            ("etcd-certfile", installed("pki/apiserver-etcd-client.crt")),
            ("etcd-keyfile", installed("pki/apiserver-etcd-client.key")),
            // Not set by kubeadm, whose kubelets serve self-signed certificates.
            ("kubelet-certificate-authority", installed("pki/ca.crt")),
        ],
    );

    let controller_manager_conf = installed("controller-manager.conf");
    check_flags(
        out,
        "flags/kube-controller-manager.flags",
        &[
            ("kubeconfig", controller_manager_conf.clone()),
            ("authentication-kubeconfig", controller_manager_conf.clone()),
            ("authorization-kubeconfig", controller_manager_conf),
            ("client-ca-file", installed("pki/ca.crt")),
            (
                "requestheader-client-ca-file",
                installed("pki/front-proxy-ca.crt"),
            ),
            ("root-ca-file", installed("pki/ca.crt")),
            ("service-account-private-key-file", installed("pki/sa.key")),
            ("cluster-signing-cert-file", installed("pki/ca.crt")),
            ("cluster-signing-key-file", installed("pki/ca.key")),
            ("use-service-account-credentials", "true".into()),
            ("cluster-name", "kubernetes".into()),
        ],
    );

    let scheduler_conf = installed("scheduler.conf");
    check_flags(
        out,
        "flags/kube-scheduler.flags",
        &[
            ("kubeconfig", scheduler_conf.clone()),
            ("authentication-kubeconfig", scheduler_conf.clone()),
            ("authorization-kubeconfig", scheduler_conf),
        ],
    );
}

fn check_etcd_flags(out: &Path) {
    let file = format!("nodes/{CONTROL_PLANE}/flags/etcd.flags");
    let client_url = format!("https://{CONTROL_PLANE_IP}:2379");
    let peer_url = format!("https://{CONTROL_PLANE_IP}:2380");
    check_flags(
        out,
        &file,
        &[
            ("name", CONTROL_PLANE.into()),
            ("cert-file", installed("pki/etcd/server.crt")),
            ("key-file", installed("pki/etcd/server.key")),
            ("trusted-ca-file", installed("pki/etcd/ca.crt")),
            ("client-cert-auth", "true".into()),
            ("peer-cert-file", installed("pki/etcd/peer.crt")),
            ("peer-key-file", installed("pki/etcd/peer.key")),
            ("peer-trusted-ca-file", installed("pki/etcd/ca.crt")),
            ("peer-client-cert-auth", "true".into()),
            ("advertise-client-urls", client_url.clone()),
            ("listen-peer-urls", peer_url.clone()),
            ("initial-advertise-peer-urls", peer_url.clone()),
            ("initial-cluster", format!("{CONTROL_PLANE}={peer_url}")),
        ],
    );

    // kubeadm lists 127.0.0.1 first, but etcd listens on every URL in any order.
    let flags = read_flags(out, &file);
    let listen: BTreeSet<&str> = flags["listen-client-urls"].split(',').collect();
    let expected = BTreeSet::from(["https://127.0.0.1:2379", client_url.as_str()]);
    assert_eq!(listen, expected, "{file}: --listen-client-urls");
}

fn check_kubelet_flags(out: &Path) {
    for (node, _) in NODES {
        check_flags(
            out,
            &format!("nodes/{node}/flags/kubelet.flags"),
            &[
                ("kubeconfig", installed("kubelet.conf")),
                // kubeadm sets these three in the KubeletConfiguration.
                ("client-ca-file", installed("pki/ca.crt")),
                ("anonymous-auth", "false".into()),
                ("authorization-mode", "Webhook".into()),
                // Not set by kubeadm, whose kubelets serve self-signed certificates.
                ("tls-cert-file", installed("pki/kubelet.crt")),
                ("tls-private-key-file", installed("pki/kubelet.key")),
            ],
        );
    }
}
