//! Builds `pki.toml.example` with `pkic build` and checks the outputs with the real
//! peers: `openssl verify`, kubectl against a stand-in kube-apiserver that uses the
//! files named in kube-apiserver.flags, and etcd started from each member's
//! etcd.flags with the apiserver's etcd client files.

mod support;

use std::fs;
use std::path::PathBuf;
use std::sync::OnceLock;

use support::peers::{
    EtcdCluster, FAKE_APISERVER_VERSION, describe_output, etcdctl_put_get, key_matches_cert,
    kubectl_get_version, openssl_verify,
};
use support::pkic_build::{
    APISERVER_FLAGS, Build, apiserver_etcd_client, assert_apiserver_etcd_client_reads_and_writes,
    assert_etcd_members_form_cluster, etcd_member, flag, loopback_node, read_manifest,
    start_apiserver,
};
use support::tree::files_under;

// Names that `pki.toml.example` chooses, in one place while they change.
const MANIFEST: &str = "pki.toml.example";
const CONTROL_PLANE_NODE: &str = "master-1";
const WORKER_NODES: [&str; 2] = ["worker-1", "worker-2"];
/// Variables that put every node of the example at 127.0.0.1.
const LOOPBACK_IPS: [(&str, &str); 3] = [
    ("MASTER_IP", "127.0.0.1"),
    ("WORKER1_IP", "127.0.0.1"),
    ("WORKER2_IP", "127.0.0.1"),
];
/// Etcd members that `build_with_etcd_members` adds to the example manifest.
const EXTRA_ETCD_NODES: [&str; 2] = ["etcd-2", "etcd-3"];

/// Returns the shared build of `pki.toml.example` with every node at 127.0.0.1.
fn example_build() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    BUILD.get_or_init(|| Build::new("example", &read_manifest(MANIFEST), &LOOPBACK_IPS))
}

/// Returns the shared build of `pki.toml.example` with two more etcd members, so
/// that peer certificates of different nodes must trust each other.
fn build_with_etcd_members() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    BUILD.get_or_init(|| {
        let mut manifest = read_manifest(MANIFEST);
        for node in EXTRA_ETCD_NODES {
            manifest.push_str(&loopback_node(node, &["etcd"]));
        }
        Build::new("etcd-members", &manifest, &LOOPBACK_IPS)
    })
}

// ---------------------------------------------------------------------------
// openssl
// ---------------------------------------------------------------------------

#[test]
fn certificates_verify_for_their_purpose() {
    let build = example_build();
    let mut cases: Vec<(String, &str, &str)> = vec![
        ("pki/apiserver.crt".into(), "pki/server-ca.crt", "sslserver"),
        ("pki/admin.crt".into(), "pki/client-ca.crt", "sslclient"),
        (
            "pki/controller-manager.crt".into(),
            "pki/client-ca.crt",
            "sslclient",
        ),
        ("pki/scheduler.crt".into(), "pki/client-ca.crt", "sslclient"),
        (
            "pki/apiserver-kubelet-client.crt".into(),
            "pki/server-ca.crt",
            "sslclient",
        ),
        (
            "pki/apiserver-etcd-client.crt".into(),
            "pki/etcd-ca.crt",
            "sslclient",
        ),
    ];
    let etcd_node = format!("nodes/{CONTROL_PLANE_NODE}/pki/etcd");
    cases.push((
        format!("{etcd_node}/server.crt"),
        "pki/etcd-ca.crt",
        "sslserver",
    ));
    cases.push((
        format!("{etcd_node}/peer.crt"),
        "pki/etcd-ca.crt",
        "sslserver",
    ));
    cases.push((
        format!("{etcd_node}/peer.crt"),
        "pki/etcd-ca.crt",
        "sslclient",
    ));
    for node in WORKER_NODES {
        cases.push((
            format!("nodes/{node}/pki/kubelet.crt"),
            "pki/worker-ca.crt",
            "sslserver",
        ));
        let client = format!("nodes/{node}/pki/kubelet-client.crt");
        cases.push((client, "pki/worker-ca.crt", "sslclient"));
    }

    for (cert, ca, purpose) in &cases {
        let result = openssl_verify(&[&build.file(ca)], &[], &build.file(cert), purpose);
        assert_eq!(result, Ok(()), "{cert} as {purpose} under {ca}");
    }
}

#[test]
fn apiserver_cert_rejected_as_client() {
    let build = example_build();
    let result = openssl_verify(
        &[&build.file("pki/server-ca.crt")],
        &[],
        &build.file("pki/apiserver.crt"),
        "sslclient",
    );
    assert!(
        result.is_err(),
        "the apiserver serving certificate is also a client certificate"
    );
}

#[test]
fn every_key_matches_its_certificate() {
    let build = example_build();
    let mut checked = 0;
    for entry in files_under(&build.out()) {
        let Some(cert) = entry.to_str().and_then(|path| path.strip_suffix(".crt")) else {
            continue;
        };
        let key = PathBuf::from(format!("{cert}.key"));
        // Bundles have no key of their own.
        if !key.exists() {
            continue;
        }
        assert!(
            key_matches_cert(&key, &entry),
            "{} does not match its key",
            entry.display()
        );
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} certificates with keys found");
}

// ---------------------------------------------------------------------------
// kubectl against the apiserver's files
// ---------------------------------------------------------------------------

#[test]
fn kubeconfigs_reach_apiserver() {
    let build = example_build();
    let apiserver = start_apiserver(build, CONTROL_PLANE_NODE);
    let scratch = tempfile::tempdir().unwrap();
    let mut kubeconfigs: Vec<(String, Option<&str>)> = vec![
        ("admin.conf".into(), None),
        ("controller-manager.conf".into(), None),
        ("scheduler.conf".into(), None),
    ];
    for node in WORKER_NODES {
        kubeconfigs.push((format!("nodes/{node}/kubelet.conf"), Some(node)));
    }
    let kubeconfigs: Vec<(PathBuf, String)> = kubeconfigs
        .into_iter()
        .map(|(name, node)| (build.local_kubeconfig(&name, node, scratch.path()), name))
        .collect();

    for (kubeconfig, name) in &kubeconfigs {
        // The kubeconfigs name port 6443, so the override changes only the port.
        let output = kubectl_get_version(kubeconfig, Some(&apiserver.url()));
        assert!(
            output.status.success(),
            "{name}: {}",
            describe_output(&output)
        );
        let body = String::from_utf8_lossy(&output.stdout);
        assert_eq!(body.trim_end(), FAKE_APISERVER_VERSION, "{name}");
    }
}

#[test]
fn apiserver_rejects_etcd_client_certificate() {
    let build = example_build();
    let apiserver = start_apiserver(build, CONTROL_PLANE_NODE);
    let scratch = tempfile::tempdir().unwrap();
    let admin = build.local_kubeconfig("admin.conf", None, scratch.path());
    let admin = fs::read_to_string(admin).unwrap();
    let etcd_client = admin
        .replace(
            &build.file("pki/admin.crt").display().to_string(),
            &build
                .file("pki/apiserver-etcd-client.crt")
                .display()
                .to_string(),
        )
        .replace(
            &build.file("pki/admin.key").display().to_string(),
            &build
                .file("pki/apiserver-etcd-client.key")
                .display()
                .to_string(),
        );
    assert_ne!(
        admin, etcd_client,
        "admin.conf does not name pki/admin.crt and pki/admin.key"
    );
    let kubeconfig = scratch.path().join("etcd-client.conf");
    fs::write(&kubeconfig, etcd_client).unwrap();

    let output = kubectl_get_version(&kubeconfig, Some(&apiserver.url()));
    assert!(!output.status.success(), "{}", describe_output(&output));
}

// ---------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------

#[test]
fn apiserver_etcd_client_reads_and_writes() {
    assert_apiserver_etcd_client_reads_and_writes(example_build(), CONTROL_PLANE_NODE);
}

#[test]
fn etcd_rejects_admin_client_certificate() {
    let build = example_build();
    let member_flags = build.etcd_flags(CONTROL_PLANE_NODE);
    let apiserver_flags = build.flags(APISERVER_FLAGS, Some(CONTROL_PLANE_NODE));
    let etcd = EtcdCluster::start(
        &[etcd_member(&member_flags)],
        &apiserver_etcd_client(&apiserver_flags),
    );

    let result = etcdctl_put_get(
        etcd.client_url(0),
        flag(&apiserver_flags, "etcd-cafile"),
        &build.file("pki/admin.crt"),
        &build.file("pki/admin.key"),
        "/registry/pkic-test",
        "stored",
    );
    assert!(
        result.is_err(),
        "etcd accepted the admin certificate: {result:?}"
    );
}

#[test]
fn etcd_nodes_form_cluster() {
    let nodes = [CONTROL_PLANE_NODE, EXTRA_ETCD_NODES[0], EXTRA_ETCD_NODES[1]];
    assert_etcd_members_form_cluster(build_with_etcd_members(), nodes, CONTROL_PLANE_NODE);
}
