//! Findings about Kubernetes roles, etcd members, service-account keys, connections
//! and kubeconfigs: each test changes the base tree's certificates or flags the way
//! a real cluster went wrong and asserts the finding that explains it.

use crate::fixture::{ADMIN_SUBJECT, Case, KUBELET_SANS, leaf};
use crate::tree::{CLIENT, SERVER, SERVER_CLIENT};

fn reissue_apiserver(case: &Case, sans: &str) {
    let ext = format!("{SERVER}{sans}");
    case.tree
        .cert("pki/apiserver", "/CN=kube-apiserver")
        .issuer("pki/ca")
        .ext(&ext)
        .days(365)
        .write();
}

#[test]
fn apiserver_cert_lacks_cluster_domain_name() {
    let case = Case::new("apiserver-lacks-domain-name");
    reissue_apiserver(
        &case,
        "subjectAltName = DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,\
             IP:10.96.0.1,IP:192.0.2.10,IP:127.0.0.1\n",
    );
    let outcome = case.check(&[]);
    outcome.assert_has_in("apiserver-san-missing", "pki/apiserver.crt");
    assert!(
        outcome
            .messages("apiserver-san-missing")
            .contains("kubernetes.default.svc.cluster.local")
    );
}

#[test]
fn apiserver_cert_lacks_actual_service_ip() {
    let mut case = Case::new("apiserver-lacks-service-ip");
    reissue_apiserver(
        &case,
        "subjectAltName = DNS:kubernetes,DNS:kubernetes.default,DNS:kubernetes.default.svc,\
             DNS:kubernetes.default.svc.cluster.local,IP:127.0.0.1,IP:10.32.0.1,IP:192.0.2.10\n",
    );
    case.replace(
        "service-cluster-ip-range = \"10.96.0.0/12\"",
        "service-cluster-ip-range = \"10.0.0.0/24\"",
    );
    case.replace("service-cidr = \"10.96.0.0/12\"\n", "");
    let outcome = case.check(&[]);
    outcome.assert_has_in("apiserver-service-ip-missing", "pki/apiserver.crt");
    let message = outcome.messages("apiserver-service-ip-missing");
    assert!(message.contains("10.0.0.1"), "{message}");
    assert!(
        message.contains("--service-cluster-ip-range=10.0.0.0/24"),
        "the message names the flag value: {message}"
    );
}

#[test]
fn apiserver_without_service_range_flag() {
    let mut case = Case::new("apiserver-without-service-range");
    case.replace("service-cluster-ip-range = \"10.96.0.0/12\"\n", "");
    case.replace("service-cidr = \"10.96.0.0/12\"\n", "");
    let outcome = case.check(&[]);
    outcome.assert_has("service-cidr-unset");
    assert!(
        outcome
            .messages("apiserver-service-ip-missing")
            .contains("10.0.0.1"),
        "kube-apiserver's default range puts the Service on 10.0.0.1: {}",
        outcome.describe()
    );
}

#[test]
fn kubelets_share_cn_system_node() {
    let mut case = Case::new("kubelets-share-cn-system-node");
    let tree = &case.tree;
    leaf(
        tree,
        "pki/kubelet",
        "/O=system:nodes/CN=system:node",
        "pki/ca",
    );
    for node in ["worker-1", "worker-2"] {
        tree.kubeconfig(
            &format!("kubelet-{node}.conf"),
            "https://192.0.2.10:6443",
            "pki/ca.crt",
            "pki/kubelet.crt",
            "pki/kubelet.key",
            false,
        );
    }
    case.map.push_str(
        "\n[[node]]\nname = \"worker-2\"\nips = [\"192.0.2.22\"]\n\n[node.kubelet]\nkubeconfig = \
         \"/etc/kubernetes/kubelet-worker-2.conf\"\nclient-ca-file = \
         \"/etc/kubernetes/pki/ca.crt\"\n",
    );
    let outcome = case.check(&[]);
    outcome.assert_has_in("kubelet-client-not-node-identity", "pki/kubelet.crt");
    assert!(
        outcome
            .messages("kubelet-client-not-node-identity")
            .contains("\"system:node\"")
    );
    outcome.assert_has("kubelet-client-shared");
    assert!(
        outcome
            .messages("kubelet-client-shared")
            .contains("worker-1, worker-2")
    );
}

#[test]
fn kubelet_serves_with_client_cert() {
    let mut case = Case::new("kubelet-serves-with-client-cert");
    case.replace(
        "tls-cert-file = \"/etc/kubernetes/pki/kubelet-worker-1.crt\"",
        "tls-cert-file = \"/etc/kubernetes/pki/kubelet-worker-1-client.crt\"",
    );
    case.replace(
        "tls-private-key-file = \"/etc/kubernetes/pki/kubelet-worker-1.key\"",
        "tls-private-key-file = \"/etc/kubernetes/pki/kubelet-worker-1-client.key\"",
    );
    let outcome = case.check(&[]);
    let file = "pki/kubelet-worker-1-client.crt";
    outcome.assert_has_in("kubelet-serving-san-missing", file);
    assert!(
        outcome
            .messages("kubelet-serving-san-missing")
            .contains("192.0.2.21")
    );
    outcome.assert_has_in("eku-server-auth-missing", file);
    outcome.assert_has_in("host-name-only-in-cn", file);
}

#[test]
fn admin_cert_without_system_masters() {
    let case = Case::new("admin-without-system-masters");
    leaf(&case.tree, "pki/admin", "/CN=admin", "pki/ca");
    case.tree.kubeconfig(
        "admin.conf",
        "https://192.0.2.10:6443",
        "pki/ca.crt",
        "pki/admin.crt",
        "pki/admin.key",
        true,
    );
    let outcome = case.check(&[]);
    outcome.assert_has_in("admin-no-group", "admin.conf: client-certificate-data");
    assert_eq!(outcome.code, 1);
}

#[test]
fn admin_cert_with_binding_group() {
    let case = Case::new("admin-with-binding-group");
    leaf(
        &case.tree,
        "pki/admin",
        "/O=kubeadm:cluster-admins/CN=kubernetes-admin",
        "pki/ca",
    );
    let outcome = case.check(&[]);
    outcome.assert_has_in("admin-relies-on-binding", "pki/admin.crt");
    assert!(!outcome.has("admin-no-group"), "{}", outcome.describe());
    assert_eq!(
        outcome.code,
        0,
        "a note does not fail: {}",
        outcome.describe()
    );
}

#[test]
fn scheduler_cert_with_custom_cn() {
    let case = Case::new("scheduler-with-custom-cn");
    leaf(&case.tree, "pki/scheduler", "/CN=scheduler", "pki/ca");
    let outcome = case.check(&[]);
    outcome.assert_has_in("component-identity-unexpected", "pki/scheduler.crt");
}

#[test]
fn front_proxy_cn_not_allowed() {
    let mut case = Case::new("front-proxy-cn-not-allowed");
    case.replace(
        "requestheader-allowed-names = \"front-proxy-client\"",
        "requestheader-allowed-names = \"aggregator\"",
    );
    let outcome = case.check(&[]);
    outcome.assert_has_in("front-proxy-name-not-allowed", "pki/front-proxy-client.crt");
}

/// Adds etcd members etcd-2 and etcd-3, whose files live under `nodes/<member>/`.
fn add_etcd_members(case: &mut Case) {
    for (name, ip) in [("etcd-2", "192.0.2.2"), ("etcd-3", "192.0.2.3")] {
        let etcd = &case.map[case.map.find("[node.etcd]").expect("etcd table")
            ..case
                .map
                .find("[[node]]\nname = \"worker-1\"")
                .expect("worker table")];
        let member = etcd.replace("cp-1", name).replace("192.0.2.10", ip);
        case.map.push_str(&format!(
            "\n[[node]]\nname = \"{name}\"\nips = [\"{ip}\"]\n\n{member}"
        ));
    }
}

#[test]
fn etcd_member_certs_copied_to_others() {
    let mut case = Case::new("etcd-member-certs-copied");
    add_etcd_members(&mut case);
    for member in ["etcd-2", "etcd-3"] {
        for file in ["server.crt", "server.key", "peer.crt", "peer.key"] {
            let text = case.tree.read(&format!("pki/etcd/{file}"));
            case.tree
                .write(&format!("nodes/{member}/pki/etcd/{file}"), &text);
        }
    }
    let outcome = case.check(&[]);
    outcome.assert_has_in("etcd-san-missing", "nodes/etcd-3/pki/etcd/peer.crt");
    assert!(outcome.messages("etcd-san-missing").contains("192.0.2.3"));

    let mut fixed = Case::new("etcd-member-certs-own");
    add_etcd_members(&mut fixed);
    for (member, ip) in [("etcd-2", "192.0.2.2"), ("etcd-3", "192.0.2.3")] {
        let ext = format!(
            "{SERVER_CLIENT}subjectAltName = DNS:{member},DNS:localhost,IP:{ip},IP:127.0.0.1\n"
        );
        for cert in ["server", "peer"] {
            fixed
                .tree
                .cert(
                    &format!("nodes/{member}/pki/etcd/{cert}"),
                    &format!("/CN={member}"),
                )
                .issuer("pki/etcd/ca")
                .ext(&ext)
                .days(365)
                .write();
        }
    }
    let outcome = fixed.check(&[]);
    assert!(!outcome.has("etcd-san-missing"), "{}", outcome.describe());
    assert!(
        outcome.findings().is_empty(),
        "peers of three members verify each other: {}",
        outcome.describe()
    );
}

#[test]
fn etcd_server_cert_without_client_auth() {
    let case = Case::new("etcd-server-without-client-auth");
    let ext =
        format!("{SERVER}subjectAltName = DNS:cp-1,DNS:localhost,IP:192.0.2.10,IP:127.0.0.1\n");
    case.tree
        .cert("pki/etcd/server", "/CN=cp-1")
        .issuer("pki/etcd/ca")
        .ext(&ext)
        .days(365)
        .write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("etcd-cert-not-client", "pki/etcd/server.crt");
    assert!(
        outcome
            .messages("etcd-cert-not-client")
            .contains("--client-cert-auth=true")
    );
}

#[test]
fn service_account_key_mixed_with_ca_key() {
    let mut case = Case::new("service-account-key-is-ca-key");
    case.replace(
        "service-account-private-key-file = \"/etc/kubernetes/pki/sa.key\"",
        "service-account-private-key-file = \"/etc/kubernetes/pki/ca.key\"",
    );
    let outcome = case.check(&[]);
    outcome.assert_has_in("sa-key-mismatch", "pki/ca.key");
    outcome.assert_has_in("sa-key-is-ca-key", "pki/ca.key");

    case.replace(
        "service-account-key-file = \"/etc/kubernetes/pki/sa.pub\"",
        "service-account-key-file = [\"/etc/kubernetes/pki/sa.pub\", \
         \"/etc/kubernetes/pki/ca.crt\"]",
    );
    let verified = case.check(&[]);
    assert!(
        !verified.has("sa-key-mismatch"),
        "the CA certificate's key verifies: {}",
        verified.describe()
    );
    verified.assert_has("sa-key-is-ca-key");

    let mut fallback = Case::new("service-account-key-unset");
    fallback.replace(
        "service-account-key-file = \"/etc/kubernetes/pki/sa.pub\"\n",
        "",
    );
    let outcome = fallback.check(&[]);
    outcome.assert_has("sa-key-mismatch");
    assert!(
        outcome
            .messages("sa-key-mismatch")
            .contains("falls back to its --tls-private-key-file")
    );
}

#[test]
fn apiserver_to_kubelet_one_way() {
    let mut case = Case::new("apiserver-to-kubelet-one-way");
    case.replace(
        "kubelet-certificate-authority = \"/etc/kubernetes/pki/ca.crt\"\n",
        "",
    );
    let outcome = case.check(&[]);
    outcome.assert_has("one-way-tls");
    let connections = outcome.report["connections"]
        .as_array()
        .expect("connections");
    let kubelet = connections
        .iter()
        .find(|c| c["name"] == "kube-apiserver -> kubelet on worker-1")
        .expect("the kubelet connection");
    assert_eq!(kubelet["mode"], "one-way");
    assert!(
        kubelet["advice"]
            .as_str()
            .unwrap_or("")
            .contains("--kubelet-certificate-authority")
    );
}

#[test]
fn kubelet_ca_flag_names_wrong_ca() {
    let mut case = Case::new("kubelet-ca-names-wrong-ca");
    case.replace(
        "kubelet-certificate-authority = \"/etc/kubernetes/pki/ca.crt\"",
        "kubelet-certificate-authority = \"/etc/kubernetes/pki/front-proxy-ca.crt\"",
    );
    let outcome = case.check(&[]);
    outcome.assert_has_in("server-cert-untrusted", "pki/kubelet-worker-1.crt");
}

#[test]
fn kubelet_client_ca_names_wrong_ca() {
    let mut case = Case::new("kubelet-client-ca-names-wrong-ca");
    case.replace(
        "[node.kubelet]\nkubeconfig = \"/etc/kubernetes/kubelet-worker-1.conf\"\nclient-ca-file = \
         \"/etc/kubernetes/pki/ca.crt\"",
        "[node.kubelet]\nkubeconfig = \"/etc/kubernetes/kubelet-worker-1.conf\"\nclient-ca-file = \
         \"/etc/kubernetes/pki/etcd/ca.crt\"",
    );
    let outcome = case.check(&[]);
    outcome.assert_has_in("client-cert-untrusted", "pki/apiserver-kubelet-client.crt");
}

#[test]
fn kubelet_without_client_ca() {
    let mut case = Case::new("kubelet-without-client-ca");
    case.replace(
        "[node.kubelet]\nkubeconfig = \"/etc/kubernetes/kubelet-worker-1.conf\"\nclient-ca-file = \
         \"/etc/kubernetes/pki/ca.crt\"\n",
        "[node.kubelet]\nkubeconfig = \"/etc/kubernetes/kubelet-worker-1.conf\"\n",
    );
    let outcome = case.check(&[]);
    outcome.assert_has("trust-flag-unset");
    assert!(
        outcome
            .messages("trust-flag-unset")
            .contains("--client-ca-file")
    );
}

#[test]
fn kubeconfig_unreadable() {
    let case = Case::new("kubeconfig-unreadable");
    case.tree
        .write("admin.conf", "apiVersion: v1\nkind: Config\nclusters: [\n");
    let outcome = case.check(&[]);
    outcome.assert_has_in("kubeconfig-invalid", "admin.conf");
    case.tree.write(
        "admin.conf",
        "apiVersion: v1\nkind: Config\ncurrent-context: missing\ncontexts: []\n",
    );
    let outcome = case.check(&[]);
    assert!(
        outcome
            .messages("kubeconfig-invalid")
            .contains("current-context `missing`"),
        "{}",
        outcome.describe()
    );
}

#[test]
fn kubeconfig_ca_of_another_cluster() {
    let case = Case::new("kubeconfig-ca-of-another-cluster");
    case.tree.kubeconfig(
        "admin.conf",
        "https://192.0.2.10:6443",
        "pki/front-proxy-ca.crt",
        "pki/admin.crt",
        "pki/admin.key",
        false,
    );
    let outcome = case.check(&[]);
    outcome.assert_has_in("kubeconfig-ca-mismatch", "admin.conf");
}

#[test]
fn kubeconfig_server_not_in_sans() {
    let case = Case::new("kubeconfig-server-not-in-sans");
    case.tree.kubeconfig(
        "admin.conf",
        "https://203.0.113.7:6443",
        "pki/ca.crt",
        "pki/admin.crt",
        "pki/admin.key",
        false,
    );
    let outcome = case.check(&[]);
    outcome.assert_has_in("kubeconfig-server-not-in-sans", "admin.conf");
    assert!(
        !outcome.has("kubeconfig-ca-mismatch"),
        "the CA is right; only the name is missing: {}",
        outcome.describe()
    );
}

#[test]
fn kubeconfig_client_from_other_ca() {
    let case = Case::new("kubeconfig-client-from-other-ca");
    case.tree
        .cert("pki/admin", ADMIN_SUBJECT)
        .issuer("pki/front-proxy-ca")
        .ext(CLIENT)
        .days(365)
        .write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("kubeconfig-client-untrusted", "admin.conf");
}

#[test]
fn kubelet_serving_cert_with_own_sans_silent() {
    let case = Case::new("kubelet-serving-own-sans");
    let ext = format!("{SERVER}{KUBELET_SANS}");
    case.tree
        .cert("pki/kubelet-worker-1", "/CN=worker-1")
        .issuer("pki/ca")
        .ext(&ext)
        .days(365)
        .write();
    let outcome = case.check(&[]);
    assert!(outcome.findings().is_empty(), "{}", outcome.describe());
}
