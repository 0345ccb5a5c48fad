//! Trees that a real peer rejects are never reported clean by `pkic check`. Each case
//! takes a built example, breaks one wiring by hand as an operator might, shows that
//! kubectl (against a stand-in kube-apiserver) or etcd rejects the broken connection,
//! and then expects `pkic check` on the same tree to fail with the right finding.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use support::peers::{
    EtcdClientTls, EtcdCluster, FAKE_APISERVER_VERSION, describe_output, etcdctl_put_get,
    kubectl_get_version,
};
use support::pkic_build::{
    APISERVER_FLAGS, Build, apiserver_etcd_client, etcd_member, read_manifest, start_apiserver,
};

const CONTROL_PLANE_NODE: &str = "master-1";
const LOOPBACK_IPS: [(&str, &str); 3] = [
    ("MASTER_IP", "127.0.0.1"),
    ("WORKER1_IP", "127.0.0.1"),
    ("WORKER2_IP", "127.0.0.1"),
];

/// Builds `pki.toml.example` with ECDSA keys, which a debug build makes quickly.
fn build(name: &str) -> Build {
    let manifest = read_manifest("pki.toml.example").replace("rsa-2048", "ecdsa-p256");
    Build::new(name, &manifest, &LOOPBACK_IPS)
}

/// Replaces `from` with `to` in an output file, and fails when `from` is not there.
fn edit(build: &Build, relative: &str, from: &str, to: &str) {
    let path = build.file(relative);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.contains(from), "{relative} does not contain {from}");
    fs::write(&path, text.replace(from, to)).unwrap();
}

/// Runs `pkic check` on the output directory and returns its exit code and stdout.
fn check(out: &Path) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_pkic"))
        .arg("check")
        .arg(out)
        .output()
        .expect("pkic runs");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

/// Expects `pkic check` on `build` to fail with the finding `id`.
fn assert_check_fails(build: &Build, id: &str) {
    let (code, report) = check(&build.out());
    assert_eq!(
        code,
        Some(1),
        "pkic check passed a rejected tree:\n{report}"
    );
    assert!(
        report.contains(&format!("error[{id}]")),
        "no {id} in:\n{report}"
    );
}

#[test]
fn clean_example_checks_clean() {
    let build = build("rejected-none");
    let (code, report) = check(&build.out());
    assert_eq!(code, Some(0), "{report}");
}

#[test]
fn admin_with_etcd_client_cert() {
    let build = build("rejected-admin-cert");
    edit(
        &build,
        "admin.conf",
        "pki/admin.crt",
        "pki/apiserver-etcd-client.crt",
    );
    edit(
        &build,
        "admin.conf",
        "pki/admin.key",
        "pki/apiserver-etcd-client.key",
    );

    let apiserver = start_apiserver(&build, CONTROL_PLANE_NODE);
    let scratch = tempfile::tempdir().unwrap();
    let kubeconfig = build.local_kubeconfig("admin.conf", None, scratch.path());
    let output = kubectl_get_version(&kubeconfig, Some(&apiserver.url()));
    let body = String::from_utf8_lossy(&output.stdout);
    assert_ne!(
        body.trim_end(),
        FAKE_APISERVER_VERSION,
        "kubectl got through"
    );
    assert!(!output.status.success(), "{}", describe_output(&output));

    assert_check_fails(&build, "kubeconfig-client-untrusted");
}

#[test]
fn kubelet_trusts_the_wrong_ca() {
    let build = build("rejected-kubelet-ca");
    let relative = "nodes/worker-1/kubelet.conf";
    edit(&build, relative, "pki/server-ca.crt", "pki/etcd-ca.crt");

    let apiserver = start_apiserver(&build, CONTROL_PLANE_NODE);
    let scratch = tempfile::tempdir().unwrap();
    let kubeconfig = build.local_kubeconfig(relative, Some("worker-1"), scratch.path());
    let output = kubectl_get_version(&kubeconfig, Some(&apiserver.url()));
    assert!(!output.status.success(), "{}", describe_output(&output));

    assert_check_fails(&build, "kubeconfig-ca-mismatch");
}

#[test]
fn apiserver_sends_admin_cert_to_etcd() {
    let build = build("rejected-etcd-client");
    let member_flags = build.etcd_flags(CONTROL_PLANE_NODE);
    let good_cert = build.file("pki/apiserver-etcd-client.crt");
    let good_key = build.file("pki/apiserver-etcd-client.key");
    let etcd_ca = build.file("pki/etcd-ca.crt");
    let health = EtcdClientTls {
        cacert: &etcd_ca,
        cert: &good_cert,
        key: &good_key,
    };
    edit(
        &build,
        APISERVER_FLAGS,
        "pki/apiserver-etcd-client.crt",
        "pki/admin.crt",
    );
    edit(
        &build,
        APISERVER_FLAGS,
        "pki/apiserver-etcd-client.key",
        "pki/admin.key",
    );

    let etcd = EtcdCluster::start(&[etcd_member(&member_flags)], &health);
    let apiserver_flags = build.flags(APISERVER_FLAGS, Some(CONTROL_PLANE_NODE));
    let client = apiserver_etcd_client(&apiserver_flags);
    let result = etcdctl_put_get(
        etcd.client_url(0),
        client.cacert,
        client.cert,
        client.key,
        "/registry/pkic-test",
        "stored",
    );
    assert!(result.is_err(), "etcd accepted the admin certificate");

    assert_check_fails(&build, "client-cert-untrusted");
}
