//! Tests of `pkic check`: the layouts it recognises, a clean run on the outputs of
//! `pki.toml.example`, and a tree made by hand with openssl the way a common runbook
//! makes it. `check/certificates.rs` and `check/wiring.rs` contain one test per finding id
//! that makes it fire. The base tree of `check/fixture.rs` keeps every id silent.

mod support;

#[path = "check/certificates.rs"]
mod certificates;
#[path = "check/fixture.rs"]
mod fixture;
#[path = "check/tree.rs"]
mod tree;
#[path = "check/wiring.rs"]
mod wiring;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use fixture::{Case, base, run_check, scratch};
use tree::{CA, CLIENT, Key, Tree, copy_dir};

/// Every finding id, with the test that makes it fire.
const FIRING_TESTS: &[(&str, &str)] = &[
    ("file-missing", "missing_key_file"),
    ("file-outside-tree", "flag_path_outside_tree"),
    ("pem-invalid", "certificate_file_not_pem"),
    ("cert-unparsable", "certificate_der_damaged"),
    ("key-unreadable", "key_file_holds_public_key"),
    ("key-encrypted", "key_encrypted_with_passphrase"),
    ("key-mismatch", "key_of_another_certificate"),
    ("key-shared", "key_shared_by_two_subjects"),
    ("cert-version-1", "runbook_tree_findings"),
    ("expired", "certificate_expired"),
    ("not-yet-valid", "certificate_not_yet_valid"),
    ("invalid-at-time", "certificate_invalid_at_given_time"),
    ("expires-soon", "kubeconfig_embedded_cert_never_renewed"),
    ("validity-outside-issuer", "leaf_outlives_its_ca"),
    ("ca-not-marked-ca", "issuer_without_ca_flag"),
    ("ca-key-usage-missing", "ca_without_key_cert_sign"),
    ("leaf-is-ca", "leaf_marked_as_ca"),
    ("leaf-key-usage", "leaf_with_cert_sign_usage"),
    (
        "eku-server-auth-missing",
        "apiserver_cert_client_usage_only",
    ),
    ("eku-client-auth-missing", "admin_cert_server_usage_only"),
    ("eku-absent", "runbook_tree_findings"),
    ("path-length-exceeded", "chain_longer_than_path_length"),
    ("rsa-key-too-small", "rsa_key_of_1024_bits"),
    ("sha1-signature", "certificate_signed_with_sha1"),
    ("skid-missing", "certificate_without_key_identifiers"),
    ("akid-missing", "certificate_without_key_identifiers"),
    ("serial-not-positive", "negative_and_zero_serials"),
    ("serial-duplicate", "two_certificates_one_serial"),
    ("host-name-only-in-cn", "etcd_host_name_only_in_cn"),
    ("issuer-not-found", "issuer_missing_from_tree"),
    ("issuer-stale", "leaves_from_earlier_ca_with_same_name"),
    ("ca-subject-shared", "leaves_from_earlier_ca_with_same_name"),
    ("signer-not-single-cert", "signer_file_is_a_bundle"),
    ("chain-out-of-order", "chain_file_root_first"),
    ("trust-file-not-ca", "client_ca_file_starts_with_leaf"),
    (
        "apiserver-san-missing",
        "apiserver_cert_lacks_cluster_domain_name",
    ),
    (
        "apiserver-service-ip-missing",
        "apiserver_cert_lacks_actual_service_ip",
    ),
    ("service-cidr-unset", "apiserver_without_service_range_flag"),
    (
        "kubelet-client-not-node-identity",
        "kubelets_share_cn_system_node",
    ),
    ("kubelet-client-shared", "kubelets_share_cn_system_node"),
    (
        "kubelet-serving-san-missing",
        "kubelet_serves_with_client_cert",
    ),
    ("admin-no-group", "admin_cert_without_system_masters"),
    ("admin-relies-on-binding", "admin_cert_with_binding_group"),
    (
        "component-identity-unexpected",
        "scheduler_cert_with_custom_cn",
    ),
    ("front-proxy-name-not-allowed", "front_proxy_cn_not_allowed"),
    ("etcd-san-missing", "etcd_member_certs_copied_to_others"),
    (
        "etcd-cert-not-client",
        "etcd_server_cert_without_client_auth",
    ),
    ("sa-key-mismatch", "service_account_key_mixed_with_ca_key"),
    ("sa-key-is-ca-key", "service_account_key_mixed_with_ca_key"),
    ("server-cert-untrusted", "kubelet_ca_flag_names_wrong_ca"),
    ("client-cert-untrusted", "kubelet_client_ca_names_wrong_ca"),
    ("one-way-tls", "apiserver_to_kubelet_one_way"),
    ("trust-flag-unset", "kubelet_without_client_ca"),
    ("kubeconfig-invalid", "kubeconfig_unreadable"),
    ("kubeconfig-ca-mismatch", "kubeconfig_ca_of_another_cluster"),
    (
        "kubeconfig-server-not-in-sans",
        "kubeconfig_server_not_in_sans",
    ),
    (
        "kubeconfig-client-untrusted",
        "kubeconfig_client_from_other_ca",
    ),
    ("output-missing", "manifest_output_deleted"),
    ("output-differs", "manifest_san_added_after_build"),
];

#[test]
fn every_finding_id_has_firing_test() {
    let sources = [
        include_str!("check.rs"),
        include_str!("check/certificates.rs"),
        include_str!("check/wiring.rs"),
    ]
    .concat();
    let tested: Vec<&str> = FIRING_TESTS.iter().map(|(id, _)| *id).collect();
    for kind in pkic::check::findings::ALL {
        assert!(
            tested.contains(&kind.id),
            "finding `{}` has no firing test in FIRING_TESTS",
            kind.id
        );
    }
    for (id, test) in FIRING_TESTS {
        assert!(
            pkic::check::findings::kind(id).is_some(),
            "FIRING_TESTS names unknown id `{id}`"
        );
        assert!(
            sources.contains(&format!("fn {test}()")),
            "FIRING_TESTS names `{test}` for `{id}`, which is not a test"
        );
    }
}

#[test]
fn base_tree_clean() {
    let outcome = Case::new("base-clean").check(&[]);
    assert_eq!(outcome.code, 0, "{}", outcome.describe());
    assert!(
        outcome.findings().is_empty(),
        "the base tree must keep every id silent: {}",
        outcome.describe()
    );
    assert_eq!(outcome.report["layout"], "map");
}

/// Returns a build of `pki.toml.example` with the addresses of its header comment.
fn example_build() -> &'static Path {
    static BUILD: OnceLock<PathBuf> = OnceLock::new();
    BUILD.get_or_init(|| {
        let out = scratch("example-build");
        if out.exists() {
            std::fs::remove_dir_all(&out).expect("failed to remove an earlier build");
        }
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("pki.toml.example");
        let output = Command::new(env!("CARGO_BIN_EXE_pkic"))
            .args(["build", "-q", "-m"])
            .arg(&manifest)
            .arg("-o")
            .arg(&out)
            .args([
                "--set",
                "MASTER_IP=192.0.2.10",
                "--set",
                "WORKER1_IP=192.0.2.21",
                "--set",
                "WORKER2_IP=192.0.2.22",
            ])
            .output()
            .expect("failed to run pkic build");
        assert!(
            output.status.success(),
            "pkic build failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        out
    })
}

fn example_args() -> Vec<String> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("pki.toml.example");
    vec![
        "-m".into(),
        manifest.to_string_lossy().to_string(),
        "--set".into(),
        "MASTER_IP=192.0.2.10".into(),
        "--set".into(),
        "WORKER1_IP=192.0.2.21".into(),
        "--set".into(),
        "WORKER2_IP=192.0.2.22".into(),
    ]
}

#[test]
fn example_build_checks_clean() {
    let args = example_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = run_check(example_build(), &args);
    assert_eq!(outcome.code, 0, "{}", outcome.describe());
    assert!(outcome.findings().is_empty(), "{}", outcome.describe());
    assert_eq!(outcome.report["layout"], "pkic");
    let managed = &outcome.report["expiry"][0]["managed_by_pkic"];
    assert_eq!(
        managed, true,
        "pkic's .pkic-outputs marks its files as managed"
    );
}

#[test]
fn manifest_output_deleted() {
    let out = scratch("example-output-deleted");
    copy_dir(example_build(), &out);
    std::fs::remove_file(out.join("pki/scheduler.crt")).expect("failed to remove a certificate");
    let args = example_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = run_check(&out, &args);
    outcome.assert_has_in("output-missing", "pki/scheduler.crt");
    assert!(
        outcome.has("file-missing"),
        "the kubeconfig still names it: {}",
        outcome.describe()
    );
    assert_eq!(outcome.code, 1);
}

#[test]
fn manifest_san_added_after_build() {
    let dir = scratch("example-san-added");
    std::fs::create_dir_all(&dir).expect("failed to create a directory");
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("pki.toml.example"))
            .expect("example manifest");
    let changed = source.replace(
        "sans = [\"127.0.0.1\"]",
        "sans = [\"127.0.0.1\", \"api.example.test\"]",
    );
    assert_ne!(source, changed, "the example's apiserver SAN line changed");
    let manifest = dir.join("pki.toml");
    std::fs::write(&manifest, changed).expect("failed to write the manifest");
    let mut args = example_args();
    args[1] = manifest.to_string_lossy().to_string();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = run_check(example_build(), &args);
    outcome.assert_has_in("output-differs", "pki/apiserver.crt");
    assert!(
        outcome
            .messages("output-differs")
            .contains("api.example.test")
    );
}

#[test]
fn kubeadm_layout_recognised() {
    let dir = scratch("kubeadm-layout");
    copy_dir(base(), &dir);

    // kubeadm's kubelet.conf embeds the node's client certificate.
    let tree = Tree::open(&dir);
    fixture::leaf(
        &tree,
        "kubelet-cp-1",
        "/O=system:nodes/CN=system:node:cp-1",
        "pki/ca",
    );
    tree.kubeconfig(
        "kubelet.conf",
        "https://192.0.2.10:6443",
        "pki/ca.crt",
        "kubelet-cp-1.crt",
        "kubelet-cp-1.key",
        true,
    );
    std::fs::remove_file(dir.join("kubelet-cp-1.crt")).expect("failed to remove a file");
    std::fs::remove_file(dir.join("kubelet-cp-1.key")).expect("failed to remove a file");

    let outcome = run_check(&dir, &[]);
    assert_eq!(
        outcome.report["layout"],
        "kubeadm",
        "{}",
        outcome.describe()
    );
    let ids: Vec<String> = outcome.findings().into_iter().map(|(id, _)| id).collect();
    assert_eq!(
        ids,
        vec!["one-way-tls".to_string()],
        "kubeadm sets no --kubelet-certificate-authority: {}",
        outcome.describe()
    );
    assert_eq!(outcome.code, 0);
}

#[test]
fn kubeadm_worker_node_recognised() {
    let dir = scratch("kubeadm-worker-node");
    let tree = Tree::new(&dir);
    std::fs::create_dir_all(dir.join("pki")).expect("failed to create pki/");
    std::fs::copy(base().join("pki/ca.crt"), dir.join("pki/ca.crt"))
        .expect("failed to copy the CA");
    std::fs::copy(base().join("pki/ca.key"), tree.path("ca-for-test.key"))
        .expect("failed to copy the CA key");
    std::fs::copy(base().join("pki/ca.crt"), tree.path("ca-for-test.crt"))
        .expect("failed to copy the CA");
    fixture::leaf(
        &tree,
        "node",
        "/O=system:nodes/CN=system:node:worker-1",
        "ca-for-test",
    );
    tree.kubeconfig(
        "kubelet.conf",
        "https://192.0.2.10:6443",
        "pki/ca.crt",
        "node.crt",
        "node.key",
        true,
    );
    for file in ["ca-for-test.key", "ca-for-test.crt", "node.crt", "node.key"] {
        tree.remove(file);
    }

    let outcome = run_check(&dir, &[]);
    assert_eq!(
        outcome.report["layout"],
        "kubeadm",
        "{}",
        outcome.describe()
    );
    assert!(
        outcome.findings().is_empty(),
        "a worker runs no control plane: {}",
        outcome.describe()
    );
    assert_eq!(outcome.code, 0);
}

#[test]
fn kubeadm_pki_directory_recognised() {
    let dir = scratch("kubeadm-pki-only");
    copy_dir(base(), &dir);
    let outcome = run_check(&dir.join("pki"), &[]);
    assert_eq!(
        outcome.report["layout"],
        "kubeadm-pki",
        "{}",
        outcome.describe()
    );
    assert_eq!(outcome.code, 0, "{}", outcome.describe());
}

#[test]
fn kubeadm_static_pod_flags_read() {
    let dir = scratch("kubeadm-static-pod");
    copy_dir(base(), &dir);
    let manifest = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: kube-apiserver\nspec:\n  \
        containers:\n  - name: kube-apiserver\n    command:\n    - kube-apiserver\n    - \
        --tls-cert-file=/etc/kubernetes/pki/apiserver.crt\n    - \
        --tls-private-key-file=/etc/kubernetes/pki/apiserver.key\n    - \
        --client-ca-file=/etc/kubernetes/pki/ca.crt\n    - \
        --service-cluster-ip-range=10.0.0.0/24\n";
    std::fs::create_dir_all(dir.join("manifests")).expect("failed to create manifests/");
    std::fs::write(dir.join("manifests/kube-apiserver.yaml"), manifest)
        .expect("failed to write the manifest");
    let outcome = run_check(&dir, &[]);
    outcome.assert_has_in("apiserver-service-ip-missing", "pki/apiserver.crt");
    let message = outcome.messages("apiserver-service-ip-missing");
    assert!(message.contains("10.0.0.1"), "{message}");
    assert!(
        message.contains("manifests/kube-apiserver.yaml"),
        "{message}"
    );
}

#[test]
fn unknown_layout_rejected() {
    let dir = scratch("not-a-pki");
    std::fs::create_dir_all(&dir).expect("failed to create a directory");
    let output = Command::new(env!("CARGO_BIN_EXE_pkic"))
        .arg("check")
        .arg(&dir)
        .output()
        .expect("failed to run pkic");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--map"), "{stderr}");
}

#[test]
fn command_line_facts_override_tree() {
    let outcome = Case::new("override-service-cidr").check(&["--service-cidr", "10.0.0.0/24"]);
    outcome.assert_has("apiserver-service-ip-missing");
    assert!(
        outcome
            .messages("apiserver-service-ip-missing")
            .contains("--service-cidr=10.0.0.0/24 on the command line")
    );
}

#[test]
fn strict_counts_warnings() {
    let case = Case::new("strict-warnings");
    let relaxed = case.check(&["--warn-within", "400d"]);
    relaxed.assert_has("expires-soon");
    assert_eq!(
        relaxed.code,
        0,
        "warnings alone pass: {}",
        relaxed.describe()
    );
    let strict = case.check(&["--warn-within", "400d", "--strict"]);
    assert_eq!(
        strict.code,
        1,
        "--strict fails on warnings: {}",
        strict.describe()
    );
}

#[test]
fn human_report_grouped_by_file() {
    let mut case = Case::new("human-report");
    case.replace(
        "kubelet-certificate-authority = \"/etc/kubernetes/pki/ca.crt\"\n",
        "",
    );
    case.check(&[]);
    let map = case.tree.root.with_extension("toml");
    let output = Command::new(env!("CARGO_BIN_EXE_pkic"))
        .arg("check")
        .arg(&case.tree.root)
        .arg("--map")
        .arg(&map)
        .output()
        .expect("failed to run pkic");
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        !text.contains('\x1b'),
        "no colour when stdout is not a terminal: {text}"
    );
    assert!(text.contains("warning[one-way-tls]"), "{text}");
    assert!(
        text.contains("    fix: set --kubelet-certificate-authority"),
        "{text}"
    );
    assert!(
        text.contains("Connections") && text.contains("one-way TLS"),
        "{text}"
    );
    assert!(text.contains("RESIDUAL TIME"), "{text}");
}

/// Builds a tree the way a common hand-made runbook does: separate Server, Client and
/// Worker CAs, an apiserver certificate from its openssl.cnf (no extendedKeyUsage),
/// an admin certificate signed without an extensions file, and a kubelet certificate
/// with CN=system:kubelet used as both client and serving certificate.
fn runbook_tree(name: &str) -> Tree {
    let tree = Tree::new(&scratch(name));
    for (stem, subject) in [
        ("server-ca", "/C=IT/ST=Italy/L=Milan/CN=Server CA"),
        ("client-ca", "/CN=Client CA"),
        ("worker-ca", "/CN=Worker CA"),
    ] {
        tree.cert(stem, subject)
            .ext(CA)
            .key(Key::Rsa(2048))
            .days(10000)
            .write();
    }

    let apiserver = "basicConstraints = CA:FALSE\n\
        keyUsage = nonRepudiation, digitalSignature, keyEncipherment\n\
        subjectAltName = DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,\
        DNS:kubernetes.default.svc.cluster.local,IP:192.0.2.10,IP:10.96.0.1\n";
    tree.cert("apiserver", "/CN=kube-apiserver")
        .issuer("server-ca")
        .ext(apiserver)
        .key(Key::Rsa(2048))
        .write();
    tree.cert("admin", "/CN=kube-admin")
        .issuer("client-ca")
        .ext("")
        .key(Key::Rsa(2048))
        .write();
    let worker = "basicConstraints = CA:FALSE\n\
        keyUsage = nonRepudiation, digitalSignature, keyEncipherment\n\
        subjectAltName = IP:192.0.2.21\n";
    tree.cert("kubelet-worker-1", "/O=system:nodes/CN=system:kubelet")
        .issuer("worker-ca")
        .ext(worker)
        .key(Key::Rsa(2048))
        .write();
    tree.cert("kubelet-client", "/O=system:masters/CN=kubelet-client")
        .issuer("server-ca")
        .ext(CLIENT)
        .key(Key::Rsa(2048))
        .write();

    tree.concat("bundle-ca.pem", &["client-ca.crt", "worker-ca.crt"]);
    tree.kubeconfig(
        "admin.kubeconfig",
        "https://192.0.2.10:6443",
        "server-ca.crt",
        "admin.crt",
        "admin.key",
        true,
    );
    tree.kubeconfig(
        "kubelet-worker-1.kubeconfig",
        "https://192.0.2.10:6443",
        "server-ca.crt",
        "kubelet-worker-1.crt",
        "kubelet-worker-1.key",
        true,
    );

    // The runbook names files `NAME.pem` and `NAME-key.pem`.
    for entry in std::fs::read_dir(&tree.root).expect("the tree is readable") {
        let path = entry.expect("a directory entry").path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("")
            .to_string();
        let renamed = if let Some(stem) = name.strip_suffix(".crt") {
            format!("{stem}.pem")
        } else if let Some(stem) = name.strip_suffix(".key") {
            format!("{stem}-key.pem")
        } else {
            continue;
        };
        std::fs::rename(&path, tree.path(&renamed)).expect("failed to rename a file");
    }
    tree
}

const RUNBOOK_MAP: &str = r#"[cluster]
service-cidr = "10.96.0.0/12"
advertise-address = "192.0.2.10"

[kube-apiserver]
client-ca-file = "bundle-ca.pem"
tls-cert-file = "apiserver.pem"
tls-private-key-file = "apiserver-key.pem"
kubelet-client-certificate = "kubelet-client.pem"
kubelet-client-key = "kubelet-client-key.pem"

[kube-controller-manager]
root-ca-file = "server-ca.pem"

[[node]]
name = "worker-1"
ips = ["192.0.2.21"]

[node.kubelet]
kubeconfig = "kubelet-worker-1.kubeconfig"
client-ca-file = "server-ca.pem"
tls-cert-file = "kubelet-worker-1.pem"
tls-private-key-file = "kubelet-worker-1-key.pem"
anonymous-auth = false

[kubeconfig.admin]
file = "admin.kubeconfig"
purpose = "admin"
"#;

#[test]
fn runbook_tree_findings() {
    let tree = runbook_tree("runbook");
    let map = tree.root.with_extension("toml");
    std::fs::write(&map, RUNBOOK_MAP).expect("failed to write the map");
    let outcome = run_check(&tree.root, &["--map", map.to_str().expect("UTF-8 path")]);

    assert_eq!(outcome.code, 1, "{}", outcome.describe());
    outcome.assert_has_in(
        "admin-no-group",
        "admin.kubeconfig: client-certificate-data",
    );
    outcome.assert_has_in("cert-version-1", "admin.pem");
    outcome.assert_has_in(
        "kubelet-client-not-node-identity",
        "kubelet-worker-1.kubeconfig: client-certificate-data",
    );
    assert!(
        outcome
            .messages("kubelet-client-not-node-identity")
            .contains("system:kubelet")
    );
    outcome.assert_has_in("kubelet-serving-san-missing", "kubelet-worker-1.pem");
    outcome.assert_has_in("eku-absent", "apiserver.pem");
    outcome.assert_has("one-way-tls");

    assert!(
        !outcome.has("kubeconfig-client-untrusted"),
        "the v1 admin certificate still chains to the Client CA: {}",
        outcome.describe()
    );
    assert!(
        !outcome.has("apiserver-service-ip-missing"),
        "{}",
        outcome.describe()
    );
    assert!(
        !outcome.has("validity-outside-issuer"),
        "{}",
        outcome.describe()
    );
}

#[test]
fn key_formats_reported() {
    let tree = runbook_tree("key-formats");
    tree.transform(
        "server-ca-key.pem",
        "server-ca-key.pem",
        &["rsa", "-traditional"],
    );
    tree.cert("etcd-ca", "/CN=etcd-ca").ext(CA).write();
    tree.transform("etcd-ca.key", "etcd-ca.key", &["ec"]);
    let map = tree.root.with_extension("toml");
    std::fs::write(&map, RUNBOOK_MAP).expect("failed to write the map");
    let outcome = run_check(&tree.root, &["--map", map.to_str().expect("UTF-8 path")]);
    let format_of = |file: &str| {
        outcome.report["keys"]
            .as_array()
            .expect("keys list")
            .iter()
            .find(|k| k["file"] == file)
            .map(|k| k["format"].as_str().unwrap_or("").to_string())
    };
    assert_eq!(format_of("server-ca-key.pem").as_deref(), Some("PKCS#1"));
    assert_eq!(format_of("etcd-ca.key").as_deref(), Some("SEC1"));
    assert_eq!(format_of("client-ca-key.pem").as_deref(), Some("PKCS#8"));
    assert!(!outcome.has("key-unreadable"), "{}", outcome.describe());
    assert!(
        !outcome.has("key-mismatch"),
        "every encoding is compared by its public key: {}",
        outcome.describe()
    );
}
