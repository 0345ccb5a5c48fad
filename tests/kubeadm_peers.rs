//! Builds `examples/kubeadm.pki.toml` with every node at 127.0.0.1 and checks the
//! outputs with the real peers, as `tests/peers.rs` does for `pki.toml.example`.
//! kubectl runs with each embedded kubeconfig against a stand-in kube-apiserver that
//! uses the files named in kube-apiserver.flags. `openssl verify` checks the front
//! proxy's client certificate, and etcd starts from the TLS files of each member's
//! etcd.flags.
//!
//! The stand-in apiserver and etcd listen on free ports of 127.0.0.1, not on the
//! ports 6443, 2379 and 2380 that the kubeconfigs and etcd.flags name.

mod support;

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use base64::Engine;
use support::peers::{
    EtcdClientTls, EtcdCluster, FAKE_APISERVER_VERSION, describe_output, etcdctl, etcdctl_put_get,
    kubectl_get_version, openssl_verify, peer_command, run_with_timeout,
};
use support::pkic_build::{
    APISERVER_FLAGS, Build, INSTALL_ROOT, apiserver_etcd_client,
    assert_apiserver_etcd_client_reads_and_writes, assert_etcd_members_form_cluster, etcd_member,
    flag, loopback_node, read_manifest, start_apiserver,
};

// Names that `examples/kubeadm.pki.toml` sets, kept in one place.
const MANIFEST: &str = "examples/kubeadm.pki.toml";
const CONTROL_PLANE_NODE: &str = "cp-1";
const NODES: [&str; 2] = [CONTROL_PLANE_NODE, "worker-1"];
/// Variables that put every node of the manifest at 127.0.0.1.
const LOOPBACK_IPS: [(&str, &str); 2] = [
    ("CONTROL_PLANE_IP", "127.0.0.1"),
    ("WORKER_IP", "127.0.0.1"),
];
/// Control-plane nodes with a stacked etcd member that `build_with_etcd_members`
/// adds to the manifest, as `kubeadm join --control-plane` would.
const EXTRA_CONTROL_PLANE_NODES: [&str; 2] = ["cp-2", "cp-3"];
/// The kubeadm file names of the etcd CA and the etcd healthcheck client, which no
/// flag file names.
const ETCD_CA: &str = "pki/etcd/ca.crt";
const HEALTHCHECK_CLIENT_CERT: &str = "pki/etcd/healthcheck-client.crt";
const HEALTHCHECK_CLIENT_KEY: &str = "pki/etcd/healthcheck-client.key";

/// Time allowed for one openssl command, which takes milliseconds when it works.
const OPENSSL_TIMEOUT: Duration = Duration::from_secs(30);

/// Returns the shared build of the kubeadm manifest with every node at 127.0.0.1.
fn kubeadm_build() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    BUILD.get_or_init(|| Build::new("kubeadm", &read_manifest(MANIFEST), &LOOPBACK_IPS))
}

/// Returns the shared build of the kubeadm manifest with two more control-plane
/// nodes, so that the etcd peer certificates of different nodes must trust each
/// other.
fn build_with_etcd_members() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    BUILD.get_or_init(|| {
        let mut manifest = read_manifest(MANIFEST);
        for node in EXTRA_CONTROL_PLANE_NODES {
            manifest.push_str(&loopback_node(node, &["control-plane", "etcd"]));
        }
        Build::new("kubeadm-etcd-members", &manifest, &LOOPBACK_IPS)
    })
}

/// Returns the kubeconfigs of the kubeadm manifest, relative to the output directory.
fn kubeconfig_files() -> Vec<String> {
    let mut files: Vec<String> = [
        "admin.conf",
        "super-admin.conf",
        "controller-manager.conf",
        "scheduler.conf",
    ]
    .map(String::from)
    .to_vec();
    for node in NODES {
        files.push(format!("nodes/{node}/kubelet.conf"));
    }
    files
}

// ---------------------------------------------------------------------------
// kubectl against the apiserver's files
// ---------------------------------------------------------------------------

#[test]
fn kubeconfig_list_covers_outputs() {
    let build = kubeadm_build();
    let out = build.out();
    let mut written = BTreeSet::new();
    for entry in walkdir::WalkDir::new(&out) {
        let path = entry
            .expect("failed to list the output directory")
            .into_path();
        if path
            .extension()
            .is_some_and(|extension| extension == "conf")
        {
            let relative = path.strip_prefix(&out).unwrap();
            written.insert(relative.display().to_string());
        }
    }
    let checked: BTreeSet<String> = kubeconfig_files().into_iter().collect();
    assert_eq!(
        written, checked,
        "kubeconfigs_reach_apiserver must check every kubeconfig that pkic writes"
    );
}

#[test]
fn kubeconfigs_reach_apiserver() {
    let build = kubeadm_build();
    let apiserver = start_apiserver(build, CONTROL_PLANE_NODE);
    for name in kubeconfig_files() {
        let kubeconfig = build.file(&name);
        // kubectl reads the output file as it is, so it must carry its own data.
        let text = fs::read_to_string(&kubeconfig).unwrap();
        assert!(
            !text.contains(INSTALL_ROOT),
            "{name} names a file under {INSTALL_ROOT} instead of embedding it"
        );

        // The kubeconfigs name port 6443, so the override changes only the port.
        let output = kubectl_get_version(&kubeconfig, Some(&apiserver.url()));
        assert!(
            output.status.success(),
            "{name}: {}",
            describe_output(&output)
        );
        let body = String::from_utf8_lossy(&output.stdout);
        assert_eq!(body.trim_end(), FAKE_APISERVER_VERSION, "{name}");
    }
}

/// Returns `kubeconfig` with the embedded client certificate and key replaced by
/// the contents of `cert` and `key`.
fn with_client_credentials(kubeconfig: &str, cert: &Path, key: &Path) -> String {
    let mut replaced = String::new();
    let mut replaced_keys = Vec::new();
    for line in kubeconfig.lines() {
        let indent = &line[..line.len() - line.trim_start().len()];
        let replacement = match line.trim_start().split_once(": ") {
            Some(("client-certificate-data", _)) => Some(("client-certificate-data", cert)),
            Some(("client-key-data", _)) => Some(("client-key-data", key)),
            _ => None,
        };
        match replacement {
            Some((yaml_key, path)) => {
                let data =
                    base64::engine::general_purpose::STANDARD.encode(fs::read(path).unwrap());
                replaced.push_str(&format!("{indent}{yaml_key}: {data}\n"));
                replaced_keys.push(yaml_key);
            }
            None => {
                replaced.push_str(line);
                replaced.push('\n');
            }
        }
    }
    assert_eq!(
        replaced_keys,
        ["client-certificate-data", "client-key-data"],
        "the kubeconfig does not embed exactly one client certificate and key"
    );
    replaced
}

#[test]
fn apiserver_rejects_front_proxy_client() {
    let build = kubeadm_build();
    let apiserver = start_apiserver(build, CONTROL_PLANE_NODE);
    let flags = build.flags(APISERVER_FLAGS, Some(CONTROL_PLANE_NODE));
    let admin = fs::read_to_string(build.file("admin.conf")).unwrap();
    let scratch = tempfile::tempdir().unwrap();

    // The apiserver's own client certificate for kubelets comes from the cluster CA,
    // so a kubeconfig that embeds it shows that the substitution itself works.
    let kubelet_client = with_client_credentials(
        &admin,
        flag(&flags, "kubelet-client-certificate"),
        flag(&flags, "kubelet-client-key"),
    );
    let kubelet_client_path = scratch.path().join("kubelet-client.conf");
    fs::write(&kubelet_client_path, kubelet_client).unwrap();
    let output = kubectl_get_version(&kubelet_client_path, Some(&apiserver.url()));
    assert!(
        output.status.success(),
        "client certificate from the cluster CA: {}",
        describe_output(&output)
    );

    let front_proxy = with_client_credentials(
        &admin,
        flag(&flags, "proxy-client-cert-file"),
        flag(&flags, "proxy-client-key-file"),
    );
    let front_proxy_path = scratch.path().join("front-proxy-client.conf");
    fs::write(&front_proxy_path, front_proxy).unwrap();
    let output = kubectl_get_version(&front_proxy_path, Some(&apiserver.url()));
    assert!(
        !output.status.success(),
        "the apiserver accepted the front-proxy client certificate: {}",
        describe_output(&output)
    );
    let log = apiserver.log();
    assert!(
        log.contains("certificate verify failed"),
        "s_server did not reject the client certificate itself:\n{log}"
    );
}

// ---------------------------------------------------------------------------
// Front proxy
// ---------------------------------------------------------------------------

#[test]
fn front_proxy_client_verifies_for_requestheader() {
    let build = kubeadm_build();
    let flags = build.flags(APISERVER_FLAGS, Some(CONTROL_PLANE_NODE));
    let result = openssl_verify(
        &[flag(&flags, "requestheader-client-ca-file")],
        &[],
        flag(&flags, "proxy-client-cert-file"),
        "sslclient",
    );
    assert_eq!(result, Ok(()));
}

#[test]
fn requestheader_ca_rejects_admin_certificate() {
    let build = kubeadm_build();
    let flags = build.flags(APISERVER_FLAGS, Some(CONTROL_PLANE_NODE));
    let result = openssl_verify(
        &[flag(&flags, "requestheader-client-ca-file")],
        &[],
        &build.file("pki/admin.crt"),
        "sslclient",
    );
    assert!(
        result.is_err(),
        "a client certificate from the cluster CA could set X-Remote-User"
    );
}

/// Returns the subject of a certificate in RFC 2253 form, as openssl prints it.
fn subject(cert: &Path) -> String {
    let mut command = peer_command("openssl");
    command
        .args(["x509", "-noout", "-subject", "-nameopt", "RFC2253", "-in"])
        .arg(cert);
    let output = run_with_timeout(&mut command, OPENSSL_TIMEOUT);
    assert!(output.status.success(), "{}", describe_output(&output));
    let stdout = String::from_utf8_lossy(&output.stdout);
    stdout
        .trim_end()
        .strip_prefix("subject=")
        .unwrap_or_else(|| panic!("openssl printed no subject: {stdout}"))
        .to_owned()
}

#[test]
fn proxy_client_name_is_allowed() {
    let build = kubeadm_build();
    let flags = build.flags(APISERVER_FLAGS, Some(CONTROL_PLANE_NODE));
    let subject = subject(flag(&flags, "proxy-client-cert-file"));
    let common_name = subject
        .strip_prefix("CN=")
        .unwrap_or_else(|| panic!("subject {subject} is not a single CN"));
    let allowed_names = flags
        .get("requestheader-allowed-names")
        .expect("no --requestheader-allowed-names");
    assert!(
        allowed_names.split(',').any(|name| name == common_name),
        "CN {common_name} is not in --requestheader-allowed-names={allowed_names}"
    );
}

// ---------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------

#[test]
fn apiserver_etcd_client_reads_and_writes() {
    assert_apiserver_etcd_client_reads_and_writes(kubeadm_build(), CONTROL_PLANE_NODE);
}

#[test]
fn etcd_accepts_healthcheck_client() {
    let build = kubeadm_build();
    let member_flags = build.etcd_flags(CONTROL_PLANE_NODE);
    let cacert = build.file(ETCD_CA);
    let cert = build.file(HEALTHCHECK_CLIENT_CERT);
    let key = build.file(HEALTHCHECK_CLIENT_KEY);
    let client = EtcdClientTls {
        cacert: &cacert,
        cert: &cert,
        key: &key,
    };
    // The start itself polls `etcdctl endpoint health` with this client.
    let etcd = EtcdCluster::start(&[etcd_member(&member_flags)], &client);

    let health = etcdctl(etcd.client_url(0), &client, &["endpoint", "health"]);
    assert!(health.status.success(), "{}", describe_output(&health));
}

#[test]
fn etcd_rejects_clients_of_other_cas() {
    let build = kubeadm_build();
    let member_flags = build.etcd_flags(CONTROL_PLANE_NODE);
    let apiserver_flags = build.flags(APISERVER_FLAGS, Some(CONTROL_PLANE_NODE));
    let etcd = EtcdCluster::start(
        &[etcd_member(&member_flags)],
        &apiserver_etcd_client(&apiserver_flags),
    );

    // admin.crt comes from the cluster CA and the front-proxy client certificate
    // from the front-proxy CA.
    let foreign_clients = [
        ("pki/admin.crt", "pki/admin.key"),
        ("pki/front-proxy-client.crt", "pki/front-proxy-client.key"),
    ];
    for (cert, key) in foreign_clients {
        let log_length = etcd.log(0).len();
        let result = etcdctl_put_get(
            etcd.client_url(0),
            flag(&apiserver_flags, "etcd-cafile"),
            &build.file(cert),
            &build.file(key),
            "/registry/pkic-test",
            "stored",
        );
        assert!(result.is_err(), "etcd accepted {cert}: {result:?}");
        // etcd logs each rejected handshake with its TLS error. Go's x509 error appears
        // there only when etcd failed to verify the client certificate, not when the
        // client rejected etcd's serving certificate.
        let log = etcd.log(0);
        let new_lines = log.get(log_length..).unwrap_or(&log);
        assert!(
            new_lines.contains("certificate signed by unknown authority"),
            "etcd did not reject {cert} for its issuer:\n{new_lines}"
        );
    }
}

#[test]
fn etcd_members_form_cluster() {
    let nodes = [
        CONTROL_PLANE_NODE,
        EXTRA_CONTROL_PLANE_NODES[0],
        EXTRA_CONTROL_PLANE_NODES[1],
    ];
    assert_etcd_members_form_cluster(build_with_etcd_members(), nodes, CONTROL_PLANE_NODE);
}
