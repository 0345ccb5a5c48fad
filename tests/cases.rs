//! Certificate and trust faults that broke real clusters. For each fault, a build either
//! makes the right thing by default, checked on the built certificates and flag files,
//! or rejects (exit 2) or warns about the manifest that would make the wrong thing. The
//! message names the field.

mod pkic_run;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};

use aws_lc_rs::signature::{KeyPair as _, RsaKeyPair};
use base64::Engine as _;
use pkic_run::{Outcome, Workspace, assert_contains, assert_lacks, location_at};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The fields of a built certificate that the tests look at.
#[derive(Debug)]
struct CertInfo {
    common_name: String,
    organizations: Vec<String>,
    /// `DNS:name` and `IP:address` entries, in order.
    sans: Vec<String>,
    server_auth: bool,
    client_auth: bool,
    is_ca: bool,
    /// The DER INTEGER contents of the serial number.
    serial: Vec<u8>,
    /// The subjectPublicKey bits: a raw EC point, or a PKCS#1 RSAPublicKey.
    public_key: Vec<u8>,
    /// The whole SubjectPublicKeyInfo.
    spki: Vec<u8>,
}

impl CertInfo {
    fn parse(der: &[u8]) -> CertInfo {
        let (_, cert) = X509Certificate::from_der(der).expect("a built certificate must parse");
        let text = |attribute: &x509_parser::x509::AttributeTypeAndValue| {
            attribute.as_str().unwrap_or_default().to_string()
        };
        let eku = cert
            .extended_key_usage()
            .expect("valid extendedKeyUsage")
            .map(|e| e.value.clone());
        CertInfo {
            common_name: cert.subject().iter_common_name().map(text).collect(),
            organizations: cert.subject().iter_organization().map(text).collect(),
            sans: sans_of(&cert),
            server_auth: eku.as_ref().is_some_and(|e| e.server_auth),
            client_auth: eku.as_ref().is_some_and(|e| e.client_auth),
            is_ca: cert.is_ca(),
            serial: cert.raw_serial().to_vec(),
            public_key: cert.public_key().subject_public_key.data.to_vec(),
            spki: cert.public_key().raw.to_vec(),
        }
    }

    fn has_san(&self, san: &str) -> bool {
        self.sans.iter().any(|s| s == san)
    }
}

fn sans_of(cert: &X509Certificate) -> Vec<String> {
    let Some(extension) = cert
        .subject_alternative_name()
        .expect("valid subjectAltName")
    else {
        return Vec::new();
    };
    extension
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => format!("DNS:{dns}"),
            GeneralName::IPAddress(bytes) if bytes.len() == 4 => {
                let octets: [u8; 4] = (*bytes).try_into().unwrap();
                format!("IP:{}", Ipv4Addr::from(octets))
            }
            GeneralName::IPAddress(bytes) => {
                let octets: [u8; 16] = (*bytes).try_into().unwrap();
                format!("IP:{}", Ipv6Addr::from(octets))
            }
            other => format!("{other:?}"),
        })
        .collect()
}

/// Returns every certificate in a PEM file, in file order.
fn certs_in(pem_text: &str) -> Vec<CertInfo> {
    pem::parse_many(pem_text)
        .expect("valid PEM")
        .iter()
        .map(|block| {
            assert_eq!(block.tag(), "CERTIFICATE");
            CertInfo::parse(block.contents())
        })
        .collect()
}

/// A build of a fixture under `tests/fixtures/cases/`.
struct Build {
    workspace: Workspace,
    outcome: Outcome,
}

impl Build {
    fn run(fixture: &str) -> Build {
        let workspace = Workspace::from_fixture(&format!("cases/{fixture}"));
        let outcome = workspace.build(&[]);
        Build { workspace, outcome }
    }

    /// Builds a fixture that must build.
    fn ok(fixture: &str) -> Build {
        let build = Build::run(fixture);
        assert_eq!(build.outcome.code, 0, "{}", build.outcome.stderr);
        build
    }

    fn read(&self, relative: &str) -> String {
        self.workspace.read(relative)
    }

    /// Returns the first certificate of a built file: the certificate itself, which a
    /// leaf file follows with its intermediate CAs.
    fn cert(&self, relative: &str) -> CertInfo {
        let mut certs = certs_in(&self.read(relative));
        assert!(!certs.is_empty(), "{relative} holds no certificate");
        certs.remove(0)
    }

    /// Returns the `--flag=value` lines of a flag file as a map.
    fn flags(&self, relative: &str) -> BTreeMap<String, String> {
        self.read(relative)
            .lines()
            .filter_map(|line| line.split_once('='))
            .map(|(flag, value)| (flag.to_string(), value.to_string()))
            .collect()
    }

    /// Returns the output path of the file that a flag of a flag file installs: the
    /// install root `/etc/kubernetes/` becomes the output directory, under
    /// `nodes/<node>/` for a node's flag file.
    fn flag_target(&self, flag_file: &str, flag: &str) -> String {
        let flags = self.flags(flag_file);
        let install = flags
            .get(flag)
            .unwrap_or_else(|| panic!("{flag} is not in {flag_file}"));
        let relative = install
            .strip_prefix("/etc/kubernetes/")
            .unwrap_or_else(|| panic!("{install} is not under the install root"));
        match flag_file.strip_prefix("nodes/") {
            Some(rest) => format!("nodes/{}/{relative}", rest.split('/').next().unwrap()),
            None => relative.to_string(),
        }
    }

    /// Returns the client certificate embedded in a kubeconfig.
    fn embedded_cert(&self, relative: &str) -> CertInfo {
        let pem_bytes = self.kubeconfig_data(relative, "client-certificate-data");
        let mut certs = certs_in(&String::from_utf8(pem_bytes).expect("PEM text"));
        assert!(!certs.is_empty(), "{relative} embeds no certificate");
        assert!(
            !certs[0].is_ca,
            "{relative} embeds a CA before the client certificate"
        );
        certs.remove(0)
    }

    /// Returns the base64 value of `key` in a kubeconfig, decoded.
    fn kubeconfig_data(&self, relative: &str, key: &str) -> Vec<u8> {
        let text = self.read(relative);
        let prefix = format!("{key}: ");
        let encoded = text
            .lines()
            .find_map(|line| line.trim().strip_prefix(prefix.as_str()))
            .unwrap_or_else(|| panic!("{key} is not in {relative}"));
        base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .expect("valid base64")
    }
}

/// Builds a fixture that must be rejected as invalid input, and returns the build.
#[track_caller]
fn rejected(fixture: &str) -> Build {
    let build = Build::run(fixture);
    assert_eq!(build.outcome.code, 2, "{}", build.outcome.stderr);
    assert!(
        !build.workspace.out().exists(),
        "a rejected build wrote files"
    );
    build
}

/// Builds a fixture that must be rejected, and asserts that stderr contains an error
/// at each `(line, value)` of `locations` and each of `messages`.
#[track_caller]
fn assert_rejected_with(fixture: &str, locations: &[(&str, &str)], messages: &[&str]) {
    let stderr = rejected(fixture).outcome.stderr;
    assert_diagnostics(fixture, &stderr, "error", locations, messages);
}

/// Builds a fixture that must build, and asserts that stderr contains a warning at each
/// `(line, value)` of `locations` and each of `messages`. Returns the build.
#[track_caller]
fn assert_warned_with(fixture: &str, locations: &[(&str, &str)], messages: &[&str]) -> Build {
    let build = Build::ok(fixture);
    assert_diagnostics(
        fixture,
        &build.outcome.stderr,
        "warning",
        locations,
        messages,
    );
    build
}

#[track_caller]
fn assert_diagnostics(
    fixture: &str,
    stderr: &str,
    severity: &str,
    locations: &[(&str, &str)],
    messages: &[&str],
) {
    for (line, value) in locations {
        assert_contains(stderr, &located(fixture, line, value, severity));
    }
    for message in messages {
        assert_contains(stderr, message);
    }
}

/// Returns `file:line:column: severity` for `value` on the first line of a fixture that
/// contains `line`.
fn located(fixture: &str, line: &str, value: &str, severity: &str) -> String {
    let manifest = pkic_run::fixture(&format!("cases/{fixture}"));
    let line_start = manifest
        .find(line)
        .unwrap_or_else(|| panic!("{line:?} is not in {fixture}"));
    let offset = line_start
        + line
            .find(value)
            .unwrap_or_else(|| panic!("{value:?} is not in {line:?}"));
    format!("{}: {severity}", location_at(&manifest, offset))
}

/// Public key bits of a PKCS#8 private key in PEM.
fn pkcs8_public_key(pem_text: &str) -> Vec<u8> {
    rcgen::KeyPair::from_pem(pem_text)
        .expect("a PKCS#8 key")
        .public_key_raw()
        .to_vec()
}

const NODES: [&str; 2] = ["worker-1", "worker-2"];
const MEMBERS: [(&str, &str); 3] = [
    ("etcd-1", "192.0.2.1"),
    ("etcd-2", "192.0.2.2"),
    ("etcd-3", "192.0.2.3"),
];

// Service-account keys and token signing.

#[test]
fn service_account_pair_feeds_all_three_flags() {
    let build = Build::ok("cluster.toml");
    let apiserver = build.flags("flags/kube-apiserver.flags");
    let controller_manager = build.flags("flags/kube-controller-manager.flags");
    assert_eq!(
        apiserver["--service-account-key-file"],
        "/etc/kubernetes/pki/sa.pub"
    );
    assert_eq!(
        apiserver["--service-account-signing-key-file"],
        "/etc/kubernetes/pki/sa.key"
    );
    assert_eq!(
        controller_manager["--service-account-private-key-file"],
        "/etc/kubernetes/pki/sa.key"
    );
    let public = pem::parse(build.read("pki/sa.pub")).unwrap();
    let private = rcgen::KeyPair::from_pem(&build.read("pki/sa.key")).unwrap();
    assert_eq!(private.public_key_pem(), build.read("pki/sa.pub"));
    for ca in ["root-ca", "worker-ca", "client-ca", "etcd-ca"] {
        let ca_cert = build.cert(&format!("pki/{ca}.crt"));
        assert_ne!(ca_cert.spki, public.contents(), "sa reuses the key of {ca}");
    }
}

#[test]
fn ca_key_as_service_account_key_rejected() {
    assert_rejected_with(
        "ca-key-as-service-account-key.toml",
        &[("service-account = \"cluster-ca\"", "\"")],
        &[
            "flags.kube-apiserver.service-account",
            "names `cluster-ca`, which is a certificate's key",
            "help: declare [service-account.sa]",
        ],
    );
}

#[test]
fn token_signer_and_verifier_must_match() {
    assert_rejected_with(
        "service-account-keys-differ.toml",
        &[("service-account = \"old-sa\"", "\"")],
        &[
            "flags.kube-controller-manager.service-account",
            "signs service-account tokens with `old-sa`",
            "kube-apiserver verifies them with `sa`",
            "help: name the same [service-account] in both",
        ],
    );
}

#[test]
fn apiserver_without_kubelet_ca_warned_as_one_way() {
    let manifest =
        pkic_run::fixture("cases/cluster.toml").replace("kubelet-ca = \"worker-ca\"\n", "");
    let workspace = Workspace::new(&manifest);
    let outcome = workspace.build_ok();
    assert_contains(&outcome.stderr, "one-way TLS");
    assert_contains(
        &outcome.stderr,
        "set `kubelet-ca` in [flags.kube-apiserver]",
    );
}

// SANs for the addresses that clients dial.

#[test]
fn apiserver_cert_covers_configured_service_ip() {
    let build = Build::ok("cluster.toml");
    let apiserver = build.cert("pki/apiserver.crt");
    assert!(apiserver.has_san("IP:10.0.0.1"), "{:?}", apiserver.sans);
    assert!(!apiserver.has_san("IP:10.96.0.1"), "{:?}", apiserver.sans);
    for name in [
        "kubernetes",
        "kubernetes.default",
        "kubernetes.default.svc",
        "kubernetes.default.svc.cluster.local",
    ] {
        assert!(apiserver.has_san(&format!("DNS:{name}")), "{name} missing");
    }
    assert!(apiserver.has_san("IP:192.0.2.10"), "{:?}", apiserver.sans);
    let range = "--service-cluster-ip-range";
    assert_eq!(
        build.flags("flags/kube-apiserver.flags")[range],
        "10.0.0.0/24"
    );
    assert_eq!(
        build.flags("flags/kube-controller-manager.flags")[range],
        "10.0.0.0/24"
    );
}

#[test]
fn service_ip_of_another_range_warned() {
    let build = assert_warned_with(
        "apiserver-san-from-another-service-range.toml",
        &[("sans = [\"10.32.0.1\"", "\"")],
        &[
            "cert.apiserver.sans[0]",
            "IP SAN 10.32.0.1 looks like the service IP of another range",
            "cluster.service-cidr is 10.0.0.0/24",
        ],
    );
    assert!(build.cert("pki/apiserver.crt").has_san("IP:10.0.0.1"));
}

#[test]
fn apiserver_cert_without_service_ip_rejected() {
    assert_rejected_with(
        "apiserver-cert-without-service-ip.toml",
        &[("tls-cert = \"apiserver\"", "\"")],
        &[
            "flags.kube-apiserver.tls-cert",
            "lacks the service IP 10.0.0.1",
            "cluster.service-cidr `10.0.0.0/24`",
            "help: set `role = \"apiserver\"` on cert.apiserver",
        ],
    );
}

#[test]
fn every_serving_cert_has_sans() {
    let build = Build::ok("cluster.toml");
    let out = build.workspace.out();
    let mut serving = 0;
    for entry in walkdir::WalkDir::new(&out) {
        let entry = entry.unwrap();
        if entry.path().extension().is_none_or(|e| e != "crt") {
            continue;
        }
        let text = std::fs::read_to_string(entry.path()).unwrap();
        for cert in certs_in(&text).into_iter().filter(|c| c.server_auth) {
            serving += 1;
            assert!(
                !cert.sans.is_empty(),
                "{} has no SAN",
                entry.path().display()
            );
        }
    }
    assert_eq!(
        serving, 9,
        "apiserver, 2 kubelets, 3 etcd servers, 3 etcd peers"
    );
}

#[test]
fn host_name_only_in_cn_rejected() {
    assert_rejected_with(
        "serving-cert-with-host-name-only-in-cn.toml",
        &[("[cert.etcd-server]", "[")],
        &[
            "cert.etcd-server.sans",
            "serves TLS but has no subject alternative name",
            "help: add the host names clients dial, such as `sans = [\"etcd-1.example.com\"]`",
        ],
    );
}

#[test]
fn host_name_missing_from_sans_warned() {
    assert_warned_with(
        "serving-cert-with-host-name-missing-from-sans.toml",
        &[("sans = [\"localhost\"", "[")],
        &[
            "cert.etcd-server.sans",
            "names the host \"etcd-1.example.com\" only in its common name",
            "help: add \"etcd-1.example.com\" to `sans`",
        ],
    );
}

// Kubelet serving and client certificates.

#[test]
fn kubelet_serves_with_its_own_serving_cert() {
    let build = Build::ok("cluster.toml");
    let flags = "nodes/worker-1/flags/kubelet.flags";
    let serving = build.cert(&build.flag_target(flags, "--tls-cert-file"));
    assert!(serving.server_auth);
    assert!(!serving.client_auth);
    for san in ["DNS:worker-1", "DNS:worker-1.example.com", "IP:192.0.2.21"] {
        assert!(
            serving.has_san(san),
            "{san} missing from {:?}",
            serving.sans
        );
    }
    let client = build.embedded_cert("nodes/worker-1/kubelet.conf");
    assert!(client.client_auth);
    assert!(!client.server_auth);
    assert_ne!(client.public_key, serving.public_key);
}

#[test]
fn client_cert_as_kubelet_serving_cert_rejected() {
    assert_rejected_with(
        "kubelet-serves-with-client-cert.toml",
        &[("tls-cert = \"kubelet-client\"", "\"")],
        &[
            "per-node.flags.kubelet.tls-cert",
            "--tls-cert-file needs a serving certificate",
            "`worker-1/kubelet-client` does not allow server use",
            "role = \"kubelet-serving\"",
        ],
    );
}

#[test]
fn kubelet_serving_cert_shared_by_nodes_rejected() {
    assert_rejected_with(
        "kubelet-serving-cert-shared-by-nodes.toml",
        &[("tls-cert = \"kubelet\"", "\"")],
        &[
            "per-node.flags.kubelet.tls-cert",
            "of node `worker-2` lacks the node's address 192.0.2.22",
            "nodes worker-1, worker-2 all use certificate `kubelet`",
            "role = \"kubelet-serving\"",
        ],
    );
}

#[test]
fn kubelet_client_identity_is_per_node() {
    let build = Build::ok("cluster.toml");
    for node in NODES {
        let cert = build.embedded_cert(&format!("nodes/{node}/kubelet.conf"));
        assert_eq!(cert.common_name, format!("system:node:{node}"));
        assert_eq!(cert.organizations, ["system:nodes"]);
        assert!(cert.client_auth);
    }
}

#[test]
fn shared_bare_node_identity_rejected() {
    assert_rejected_with(
        "kubelets-share-bare-node-identity.toml",
        &[
            ("subject = { cn = \"system:node\"", "{"),
            ("user = \"kubelet\"", "\""),
        ],
        &[
            "cert.kubelet.subject",
            "CN=\"system:node\" O=[\"system:nodes\"], which is not a node identity",
            "per-node.kubeconfig.kubelet.user",
            "nodes `node-1` and `node-2` authenticate with one certificate",
        ],
    );
}

#[test]
fn kubeconfig_with_another_nodes_identity_rejected() {
    assert_rejected_with(
        "kubeconfig-uses-another-nodes-identity.toml",
        &[("user = \"node-1-client\"", "\"")],
        &[
            "per-node.kubeconfig.kubelet.user",
            "of node `node-2` authenticates as node `node-1`",
            "help: point `user` at a per-node certificate",
        ],
    );
}

// Client identities that RBAC authorizes.

#[test]
fn admin_role_gets_system_masters() {
    let build = Build::ok("cluster.toml");
    let admin = build.embedded_cert("admin.conf");
    assert_eq!(admin.common_name, "admin");
    assert_eq!(admin.organizations, ["system:masters"]);
    assert_lacks(&build.outcome.stderr, "warning");
}

#[test]
fn admin_cert_without_group_warned() {
    assert_warned_with(
        "admin-cert-without-group.toml",
        &[("subject = { cn = \"admin\" }", "{")],
        &[
            "cert.admin.subject",
            "authenticates as user \"admin\"",
            "which has no group (O)",
            "help: add `o = \"system:masters\"`",
        ],
    );
}

#[test]
fn admin_role_with_unbound_group_warned() {
    let build = assert_warned_with(
        "admin-role-with-unbound-group.toml",
        &[("o = \"ops\"", "\"")],
        &[
            "cert.admin.subject.o",
            "has no group that grants rights (O=[\"ops\"])",
        ],
    );
    assert_eq!(build.cert("pki/admin.crt").organizations, ["ops"]);
}

// Key usages that fit the role.

#[test]
fn etcd_member_certs_allow_both_usages() {
    let build = Build::ok("cluster.toml");
    for (member, _) in MEMBERS {
        for kind in ["etcd-server", "etcd-peer"] {
            let cert = build.cert(&format!("nodes/{member}/pki/{kind}.crt"));
            assert!(cert.server_auth, "{member} {kind} lacks serverAuth");
            assert!(cert.client_auth, "{member} {kind} lacks clientAuth");
        }
    }
}

#[test]
fn etcd_role_forced_to_server_usage_warned() {
    assert_warned_with(
        "etcd-role-forced-to-server-usage.toml",
        &[("usage = \"server\"", "\"")],
        &[
            "per-node.cert.etcd-server.usage",
            "`etcd-1/etcd-server` lacks clientAuth",
            "help: remove `usage`",
        ],
    );
}

#[test]
fn etcd_cert_file_without_client_auth_warned() {
    assert_warned_with(
        "etcd-cert-file-without-client-auth.toml",
        &[("server-cert = \"etcd-server\"", "\"")],
        &[
            "per-node.flags.etcd.server-cert",
            "etcd --cert-file `etcd-server` allows server use only",
            "help: set `usage = \"both\"` on cert.etcd-server",
        ],
    );
}

// Trust wiring: CAs, signers and bundles.

#[test]
fn cas_sharing_one_subject_warned() {
    assert_warned_with(
        "cas-sharing-one-subject.toml",
        &[("[ca.etcd-ca]\nsubject = {", "{")],
        &[
            "ca.etcd-ca.subject",
            "CAs `cluster-ca` and `etcd-ca` have the same subject",
            "help: give each CA its own common name",
        ],
    );
}

#[test]
fn signer_file_has_one_ca_matching_key() {
    let build = Build::ok("cluster.toml");
    let flags = "flags/kube-controller-manager.flags";
    let cert_file = build.flag_target(flags, "--cluster-signing-cert-file");
    let key_file = build.flag_target(flags, "--cluster-signing-key-file");
    let certs = certs_in(&build.read(&cert_file));
    assert_eq!(
        certs.len(),
        1,
        "{cert_file} must hold exactly one certificate"
    );
    assert!(certs[0].is_ca);
    assert_eq!(certs[0].common_name, "Worker CA");
    assert_eq!(
        certs[0].public_key,
        pkcs8_public_key(&build.read(&key_file))
    );
}

#[test]
fn trust_bundle_lists_cas_in_declared_order() {
    let build = Build::ok("cluster.toml");
    let bundle = certs_in(&build.read("pki/client-bundle.crt"));
    let names: Vec<&str> = bundle.iter().map(|c| c.common_name.as_str()).collect();
    assert_eq!(names, ["Client CA", "Worker CA"]);
    assert!(bundle.iter().all(|c| c.is_ca));
    let expected = build.read("pki/client-ca.crt") + &build.read("pki/worker-ca.crt");
    assert_eq!(build.read("pki/client-bundle.crt"), expected);
}

#[test]
fn signer_flag_pointing_at_bundle_rejected() {
    assert_rejected_with(
        "signer-flag-pointing-at-bundle.toml",
        &[("cluster-signing = \"ca-chain\"", "\"")],
        &[
            "flags.kube-controller-manager.cluster-signing",
            "points at bundle `ca-chain`",
            "exactly the one CA certificate that matches the signing key",
            "help: name one CA",
        ],
    );
}

// etcd members.

#[test]
fn each_etcd_member_gets_its_own_sans() {
    let build = Build::ok("cluster.toml");
    for (member, ip) in MEMBERS {
        let flags = format!("nodes/{member}/flags/etcd.flags");
        for flag in ["--cert-file", "--peer-cert-file"] {
            let cert = build.cert(&build.flag_target(&flags, flag));
            assert!(cert.has_san(&format!("DNS:{member}")), "{member} {flag}");
            assert!(cert.has_san(&format!("IP:{ip}")), "{member} {flag}");
            for (other, other_ip) in MEMBERS.iter().filter(|(m, _)| *m != member) {
                assert!(!cert.has_san(&format!("DNS:{other}")), "{member} {flag}");
                assert!(!cert.has_san(&format!("IP:{other_ip}")), "{member} {flag}");
            }
        }
    }
}

#[test]
fn etcd_certs_copied_to_members_rejected() {
    assert_rejected_with(
        "etcd-certs-copied-to-all-members.toml",
        &[("server-cert = \"etcd-server\"", "\"")],
        &[
            "per-node.flags.etcd.server-cert",
            "`etcd-server` of node `etcd-2` lacks the node's address 192.0.2.2",
            "`etcd-peer` of node `etcd-3` lacks the node's address 192.0.2.3",
            "nodes etcd-1, etcd-2, etcd-3 all use certificate `etcd-server`",
            "role = \"etcd-peer\"",
        ],
    );
}

// Certificates embedded in kubeconfigs.

#[test]
fn embedded_client_cert_is_the_built_cert() {
    let build = Build::ok("cluster.toml");
    let pairs = [
        ("admin.conf".to_string(), "pki/admin.crt".to_string()),
        (
            "nodes/worker-1/kubelet.conf".into(),
            "nodes/worker-1/pki/kubelet-client.crt".into(),
        ),
        (
            "nodes/worker-2/kubelet.conf".into(),
            "nodes/worker-2/pki/kubelet-client.crt".into(),
        ),
    ];
    for (kubeconfig, cert_file) in pairs {
        let embedded = build.kubeconfig_data(&kubeconfig, "client-certificate-data");
        assert_eq!(
            String::from_utf8(embedded).unwrap(),
            build.read(&cert_file),
            "{kubeconfig}"
        );
    }
}

// Key encodings.

#[test]
fn keys_are_pkcs8_unless_pkcs1_requested() {
    let build = Build::ok("cluster.toml");
    let admin_key = build.read("pki/admin.key");
    assert!(admin_key.starts_with("-----BEGIN PRIVATE KEY-----\n"));
    assert_eq!(
        pkcs8_public_key(&admin_key),
        build.cert("pki/admin.crt").public_key
    );

    let ops_key = pem::parse(build.read("pki/ops.key")).unwrap();
    assert_eq!(ops_key.tag(), "RSA PRIVATE KEY");
    let rsa = RsaKeyPair::from_der(ops_key.contents()).expect("a PKCS#1 RSAPrivateKey");
    assert_eq!(
        rsa.public_key().as_ref(),
        build.cert("pki/ops.crt").public_key.as_slice()
    );
}

// Serial numbers.

/// Returns a manifest with `count` nodes that each get a client and a serving
/// certificate.
fn many_nodes_manifest(count: usize) -> String {
    let mut manifest = String::from(
        "[cluster]\nname = \"serials\"\nservers = [\"https://192.0.2.10:6443\"]\n\
         [defaults]\nkey-algorithm = \"ecdsa-p256\"\n\
         [ca.worker-ca]\nsubject = { cn = \"Worker CA\" }\n\
         [per-node.cert.kubelet-client]\nissuer = \"worker-ca\"\nrole = \"kubelet-client\"\n\
         [per-node.cert.kubelet]\nissuer = \"worker-ca\"\nrole = \"kubelet-serving\"\n",
    );
    for i in 0..count {
        let (high, low) = (i / 250, i % 250 + 1);
        write!(
            manifest,
            "[[node]]\nname = \"node-{i}\"\nips = [\"10.1.{high}.{low}\"]\n"
        )
        .unwrap();
    }
    manifest
}

#[test]
fn serials_positive_long_short_and_unique() {
    let workspace = Workspace::new(&many_nodes_manifest(150));
    workspace.build_ok();
    let mut serials = BTreeSet::new();
    let mut count = 0;
    for entry in walkdir::WalkDir::new(workspace.out()) {
        let entry = entry.unwrap();
        if entry.path().extension().is_none_or(|e| e != "crt") {
            continue;
        }
        let cert = certs_in(&std::fs::read_to_string(entry.path()).unwrap()).remove(0);
        let serial = cert.serial;
        let name = entry.path().display().to_string();
        assert!(serial[0] & 0x80 == 0, "negative serial in {name}");
        assert!(serial.iter().any(|b| *b != 0), "zero serial in {name}");
        let redundant_zero = serial.len() > 1 && serial[0] == 0 && serial[1] & 0x80 == 0;
        assert!(!redundant_zero, "serial of {name} is not minimally encoded");
        let significant = serial.iter().skip_while(|b| **b == 0).count();
        let bits = significant * 8 - serial[serial.len() - significant].leading_zeros() as usize;
        assert!(bits >= 64, "serial of {name} has only {bits} bits");
        assert!(
            serial.len() <= 20,
            "serial of {name} is {} octets",
            serial.len()
        );
        serials.insert(serial);
        count += 1;
    }
    assert_eq!(
        count, 301,
        "one CA and 150 nodes with two certificates each"
    );
    assert_eq!(serials.len(), count, "two certificates share a serial");
}
