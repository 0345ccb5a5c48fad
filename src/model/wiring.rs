//! Checks across resolved flag files: that each certificate a flag points at fits the
//! host that presents it and the peers that verify it. These run once every flag file
//! is resolved, on the slot-to-object map that each [`FlagFile`] records.

use std::collections::BTreeMap;
use std::net::IpAddr;

use super::{Cert, Checker, Component, FlagFile, Model, Role, San};

/// Runs every cross-file check on the flag files of `model`.
pub(super) fn check_wiring(checker: &mut Checker, model: &Model) {
    for file in &model.flag_files {
        match file.component {
            Component::KubeApiserver => check_apiserver_sans(checker, model, file),
            Component::Kubelet => check_node_address(checker, model, file, "tls-cert"),
            Component::Etcd => {
                check_node_address(checker, model, file, "server-cert");
                check_node_address(checker, model, file, "peer-cert");
                check_etcd_client_auth(checker, model, file);
            }
            _ => {}
        }
    }
    check_shared_node_certs(checker, &model.flag_files);
    check_token_keys(checker, &model.flag_files);
}

/// Returns the certificate that a slot of a flag file resolved to.
fn slot_cert<'m>(model: &'m Model, file: &FlagFile, slot: &str) -> Option<&'m Cert> {
    file.refs.get(slot).and_then(|id| model.cert(id))
}

/// In-cluster clients dial the first address of each service range (the `kubernetes`
/// Service) and the `kubernetes.default` names, so the apiserver's serving certificate
/// must cover them. The `apiserver` role adds them; a certificate without it may not.
fn check_apiserver_sans(checker: &mut Checker, model: &Model, file: &FlagFile) {
    let Some(cert) = slot_cert(model, file, "tls-cert") else {
        return;
    };
    if cert.role == Some(Role::Apiserver) {
        return;
    }
    let cluster = &model.cluster;
    let missing_ips: Vec<String> = cluster
        .service_ips
        .iter()
        .filter(|ip| !cert.sans.contains(&San::Ip(**ip)))
        .map(IpAddr::to_string)
        .collect();
    let ranges: Vec<String> = cluster
        .service_cidrs
        .iter()
        .map(|n| n.to_string())
        .collect();
    if !missing_ips.is_empty() {
        checker
            .error(
                format!("{}.tls-cert", file.origin),
                format!(
                    "--tls-cert-file `{}` lacks the service IP {} that cluster.service-cidr \
                     `{}` gives the `kubernetes` Service, so in-cluster clients reject the \
                     apiserver",
                    cert.id,
                    missing_ips.join(", "),
                    ranges.join(",")
                ),
            )
            .help = Some(format!(
            "set `role = \"apiserver\"` on {}, which adds the service IP and the \
             kubernetes.default names, or add {} to its `sans`",
            cert.origin,
            missing_ips.join(", ")
        ));
        return;
    }
    let missing_names: Vec<String> = kubernetes_default_names(&cluster.dns_domain)
        .into_iter()
        .filter(|name| !cert.sans.contains(&San::Dns(name.clone())))
        .collect();
    if !missing_names.is_empty() {
        checker
            .warning(
                format!("{}.tls-cert", file.origin),
                format!(
                    "--tls-cert-file `{}` lacks {}, which pods use to reach the apiserver",
                    cert.id,
                    missing_names.join(", ")
                ),
            )
            .help = Some(format!("set `role = \"apiserver\"` on {}", cert.origin));
    }
}

/// Returns the flag and the role that make a node's serving certificate for a slot.
fn node_slot(slot: &str) -> (&'static str, &'static str) {
    match slot {
        "server-cert" => ("--cert-file", "etcd-server"),
        "peer-cert" => ("--peer-cert-file", "etcd-peer"),
        _ => ("--tls-cert-file", "kubelet-serving"),
    }
}

fn per_node_help(slot: &str) -> String {
    format!(
        "declare the certificate under [per-node.cert] with `role = \"{}\"`, which adds \
         each node's own names and addresses",
        node_slot(slot).1
    )
}

fn kubernetes_default_names(domain: &str) -> Vec<String> {
    vec![
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{domain}"),
    ]
}

/// A node's serving certificate must name the node's first address: the kubelet and etcd
/// listen on it, and the apiserver and etcd peers dial it.
fn check_node_address(checker: &mut Checker, model: &Model, file: &FlagFile, slot: &str) {
    let Some(cert) = slot_cert(model, file, slot) else {
        return;
    };
    let node = file.node.as_ref().and_then(|name| model.node(name));
    let Some(ip) = node.and_then(|n| n.ips.first()) else {
        return;
    };
    if cert.sans.contains(&San::Ip(*ip)) {
        return;
    }
    checker
        .error(
            format!("{}.{slot}", file.origin),
            format!(
                "{} {} `{}` of node `{}` lacks the node's address {ip} in its SANs, so \
                 clients that dial the node reject it",
                file.component.name(),
                node_slot(slot).0,
                cert.id,
                file.node.as_deref().unwrap_or("")
            ),
        )
        .help = Some(per_node_help(slot));
}

/// etcd presents its --cert-file as a client certificate too (its gRPC gateway dials its
/// own client port), which fails without clientAuth under --client-cert-auth. A role
/// certificate gets its own warning at its `usage`.
fn check_etcd_client_auth(checker: &mut Checker, model: &Model, file: &FlagFile) {
    let Some(cert) = slot_cert(model, file, "server-cert") else {
        return;
    };
    if cert.usage.authenticates_client() || cert.role.is_some() {
        return;
    }
    checker
        .warning(
            format!("{}.server-cert", file.origin),
            format!(
                "etcd --cert-file `{}` allows server use only, but etcd also presents it as a \
                 client certificate, which fails under --client-cert-auth",
                cert.id
            ),
        )
        .help = Some(format!("set `usage = \"both\"` on {}", cert.origin));
}

/// Rejects one serving certificate used by several nodes: its key would be copied to
/// each of them, and its SANs can name only the node it was made for.
fn check_shared_node_certs(checker: &mut Checker, files: &[FlagFile]) {
    let mut users: BTreeMap<(String, &str), Vec<&FlagFile>> = BTreeMap::new();
    for file in files.iter().filter(|f| f.node.is_some()) {
        for slot in ["tls-cert", "server-cert", "peer-cert"] {
            if let Some(id) = file.refs.get(slot) {
                users.entry((id.clone(), slot)).or_default().push(file);
            }
        }
    }
    for ((id, slot), sharing) in users {
        if sharing.len() < 2 {
            continue;
        }
        let nodes: Vec<&str> = sharing.iter().filter_map(|f| f.node.as_deref()).collect();
        checker
            .error(
                format!("{}.{slot}", sharing[0].origin),
                format!(
                    "nodes {} all use certificate `{id}` as their {} {}: each node needs \
                     its own key and SANs",
                    nodes.join(", "),
                    sharing[0].component.name(),
                    node_slot(slot).0
                ),
            )
            .help = Some(per_node_help(slot));
    }
}

/// The controller-manager signs service-account tokens that the apiserver verifies, so
/// both must use halves of one key pair.
fn check_token_keys(checker: &mut Checker, files: &[FlagFile]) {
    let key_of = |component: Component| {
        files
            .iter()
            .find(|f| f.component == component)
            .and_then(|f| f.refs.get("service-account").map(|id| (f, id)))
    };
    let (Some((_, verifier)), Some((signer_file, signer))) = (
        key_of(Component::KubeApiserver),
        key_of(Component::KubeControllerManager),
    ) else {
        return;
    };
    if verifier == signer {
        return;
    }
    checker
        .error(
            format!("{}.service-account", signer_file.origin),
            format!(
                "kube-controller-manager signs service-account tokens with `{signer}`, but \
                 kube-apiserver verifies them with `{verifier}`, so it rejects every token"
            ),
        )
        .help = Some(format!(
        "name the same [service-account] in both, such as `service-account = \"{verifier}\"`"
    ));
}
