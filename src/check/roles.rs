//! Kubernetes role rules: the names the apiserver's serving certificate must cover,
//! the identities (CN and O) that the Node authorizer and RBAC expect of client
//! certificates, the names kubelet serving certificates must cover, and the front
//! proxy's allowed names. etcd and service-account rules live in `etcd` and
//! `service_account`.

use std::collections::BTreeMap;
use std::path::Path;

use super::Context;
use super::findings::{self, Finding};
use super::inventory::CertUse;
use super::tls::covers;
use super::x509::CertInfo;
use crate::model::{Role, San};

/// kube-apiserver's default for `--kubelet-preferred-address-types`: the node's
/// hostname first, then internal and external addresses, DNS names before IPs.
const DEFAULT_ADDRESS_TYPES: &str = "Hostname,InternalDNS,InternalIP,ExternalDNS,ExternalIP";

/// Runs every role rule.
pub fn check(ctx: &Context) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut kubelet_identities: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    for usage in &ctx.inventory.uses {
        let Some(cert) = ctx.store.certs(&usage.label).first() else {
            continue;
        };
        match usage.role {
            Some(Role::Apiserver) => apiserver(ctx, usage, cert, &mut found),
            Some(Role::KubeletClient) => {
                kubelet_client(usage, cert, &mut found);
                if let Some(node) = &usage.node {
                    let identity = cert.common_name.clone().unwrap_or_default();
                    kubelet_identities
                        .entry(identity)
                        .or_default()
                        .push((node.clone(), usage.label.clone()));
                }
            }
            Some(Role::KubeletServing) => kubelet_serving(ctx, usage, cert, &mut found),
            Some(role @ (Role::Admin | Role::SuperAdmin)) => {
                admin(&ctx.layout.root, usage, cert, role, &mut found)
            }
            Some(role @ (Role::ControllerManager | Role::Scheduler)) => {
                component_identity(usage, cert, role, &mut found)
            }
            Some(Role::FrontProxyClient) => front_proxy(ctx, usage, cert, &mut found),
            _ => {}
        }
    }
    shared_kubelet_identities(&kubelet_identities, &mut found);
    found
}

/// Returns the SANs in `required` that the certificate does not cover.
pub fn missing(cert: &CertInfo, required: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in required {
        if !covers(&cert.sans, name) && !out.contains(name) {
            out.push(name.clone());
        }
    }
    out
}

fn apiserver(ctx: &Context, usage: &CertUse, cert: &CertInfo, found: &mut Vec<Finding>) {
    let facts = &ctx.layout.facts;
    let domain = &facts.dns_domain.value;
    let names: Vec<String> = vec![
        "kubernetes".into(),
        "kubernetes.default".into(),
        "kubernetes.default.svc".into(),
        format!("kubernetes.default.svc.{domain}"),
    ];
    let lacking = missing(cert, &names);
    if !lacking.is_empty() {
        found.push(Finding::new(
            findings::APISERVER_SAN_MISSING,
            Some(&usage.label),
            format!(
                "the apiserver's serving certificate lacks {}, the names in-cluster clients dial \
                 (DNS domain {domain} from {})",
                lacking.join(", "),
                facts.dns_domain.source
            ),
            format!("reissue it with the SANs {}", lacking.join(", ")),
        ));
    }
    for net in &facts.service_cidrs.value {
        let Some(ip) = crate::model::first_service_ip(*net) else {
            continue;
        };
        if !covers(&cert.sans, &ip.to_string()) {
            found.push(Finding::new(
                findings::APISERVER_SERVICE_IP_MISSING,
                Some(&usage.label),
                format!(
                    "the apiserver's serving certificate does not cover the first service IP {ip}, \
                     the ClusterIP of the kubernetes Service in {net} (from {})",
                    facts.service_cidrs.source
                ),
                format!(
                    "reissue it with the IP SAN {ip}, or set --service-cluster-ip-range to the \
                     range the certificate was made for"
                ),
            ));
        }
    }
    let mut hosts: Vec<(String, String)> = Vec::new();
    if let Some(address) = &facts.advertise_address {
        hosts.push((address.value.to_string(), address.source.clone()));
    }
    for server in &facts.servers {
        if let Some(host) = super::layout::url_host(server) {
            hosts.push((host, format!("the server URL {server}")));
        }
    }
    for (host, source) in hosts {
        if !covers(&cert.sans, &host) {
            found.push(Finding::new(
                findings::APISERVER_SAN_MISSING,
                Some(&usage.label),
                format!("the apiserver's serving certificate does not cover {host}, from {source}"),
                format!("reissue it with the SAN {host}"),
            ));
        }
    }
}

fn kubelet_client(usage: &CertUse, cert: &CertInfo, found: &mut Vec<Finding>) {
    let cn = cert.common_name.clone().unwrap_or_default();
    let node_ok = match &usage.node {
        Some(node) => cn == format!("system:node:{node}"),
        None => cn
            .strip_prefix("system:node:")
            .is_some_and(|n| !n.is_empty()),
    };
    let group_ok = cert.organizations.iter().any(|o| o == "system:nodes");
    if node_ok && group_ok {
        return;
    }
    let expected = match &usage.node {
        Some(node) => format!("system:node:{node}"),
        None => "system:node:<node name>".into(),
    };
    found.push(Finding::new(
        findings::KUBELET_CLIENT_NOT_NODE_IDENTITY,
        Some(&usage.label),
        format!(
            "the kubelet client certificate ({}) is CN={cn:?} O={:?}, not a node identity: the \
             Node authorizer accepts only CN={expected:?} in group system:nodes",
            usage.origin, cert.organizations
        ),
        format!("reissue it with subject /O=system:nodes/CN={expected}"),
    ));
}

fn shared_kubelet_identities(
    identities: &BTreeMap<String, Vec<(String, String)>>,
    found: &mut Vec<Finding>,
) {
    for (identity, users) in identities {
        let mut nodes: Vec<&str> = users.iter().map(|(n, _)| n.as_str()).collect();
        nodes.sort();
        nodes.dedup();
        if nodes.len() > 1 {
            found.push(Finding::new(
                findings::KUBELET_CLIENT_SHARED,
                Some(&users[0].1),
                format!(
                    "nodes {} all authenticate as {identity:?}, so the Node authorizer cannot tell \
                     them apart",
                    nodes.join(", ")
                ),
                "give each node its own client certificate with CN=system:node:<node name>",
            ));
        }
    }
}

/// Returns the addresses by which kube-apiserver dials a node's kubelet: those of the
/// first type in `--kubelet-preferred-address-types` that the node has, and the types.
pub fn kubelet_addresses(ctx: &Context, node: &str) -> (Vec<String>, String) {
    let facts = ctx.layout.facts.node(node);
    let types = ctx
        .layout
        .apiserver
        .as_ref()
        .and_then(|a| a.get("kubelet-preferred-address-types"))
        .unwrap_or(DEFAULT_ADDRESS_TYPES)
        .to_string();
    for kind in types.split(',').map(str::trim) {
        // NOTE: the DNS address types are skipped, because the tree does not say which
        // DNS names a node reports.
        let addresses: Vec<String> = match kind {
            "Hostname" => vec![node.to_string()],
            "InternalIP" | "ExternalIP" => facts
                .map(|n| n.ips.iter().map(|ip| ip.to_string()).collect())
                .unwrap_or_default(),
            _ => Vec::new(),
        };
        if !addresses.is_empty() {
            return (addresses, types);
        }
    }
    (Vec::new(), types)
}

fn kubelet_serving(ctx: &Context, usage: &CertUse, cert: &CertInfo, found: &mut Vec<Finding>) {
    let Some(node) = &usage.node else {
        return;
    };
    let (required, types) = kubelet_addresses(ctx, node);
    let lacking = missing(cert, &required);
    if lacking.is_empty() {
        return;
    }
    found.push(Finding::new(
        findings::KUBELET_SERVING_SAN_MISSING,
        Some(&usage.label),
        format!(
            "the kubelet serving certificate of {node} ({}) lacks {}, the address the apiserver \
             dials (--kubelet-preferred-address-types={types})",
            usage.origin,
            lacking.join(", ")
        ),
        format!(
            "issue the kubelet its own serving certificate with the SANs {}, apart from its client \
             certificate",
            lacking.join(", ")
        ),
    ));
}

fn admin(root: &Path, usage: &CertUse, cert: &CertInfo, role: Role, found: &mut Vec<Finding>) {
    let groups = &cert.organizations;
    if groups.iter().any(|o| o == "system:masters") {
        return;
    }
    let cn = cert.common_name.clone().unwrap_or_default();
    if groups.is_empty() || role == Role::SuperAdmin {
        found.push(Finding::new(
            findings::ADMIN_NO_GROUP,
            Some(&usage.label),
            format!(
                "the {} client certificate ({}) is CN={cn:?} with no system:masters group, so with \
                 RBAC it has no rights and cannot grant any",
                role.name(),
                usage.origin
            ),
            "reissue it with subject /O=system:masters/CN=<name>, or with the group of a \
             ClusterRoleBinding to cluster-admin",
        ));
        return;
    }
    let binding = groups
        .iter()
        .find_map(|group| find_binding(root, group).map(|(file, role)| (group, file, role)));
    let (message, fix) = match binding {
        Some((group, file, role)) => (
            format!(
                "the admin client certificate ({}) is not in system:masters, so its rights come \
                 from the ClusterRoleBinding in {file}, which grants ClusterRole {role} to group \
                 {group}",
                usage.origin
            ),
            format!("make sure {file} is applied to the cluster"),
        ),
        None => (
            format!(
                "the admin client certificate ({}) has groups {groups:?} and not system:masters, \
                 so its rights come from a ClusterRoleBinding of one of those groups, such as \
                 the one kubeadm creates for kubeadm:cluster-admins",
                usage.origin
            ),
            "make sure a ClusterRoleBinding grants cluster-admin to that group".to_string(),
        ),
    };
    found.push(Finding::new(
        findings::ADMIN_RELIES_ON_BINDING,
        Some(&usage.label),
        message,
        fix,
    ));
}

/// Finds a ClusterRoleBinding manifest in the tree that binds `group`; returns its file
/// and the ClusterRole it grants.
fn find_binding(root: &Path, group: &str) -> Option<(String, String)> {
    let walker = walkdir::WalkDir::new(root).max_depth(4).sort_by_file_name();
    for entry in walker.into_iter().filter_map(Result::ok) {
        let path = entry.path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(path) else {
            continue;
        };
        let Ok(doc) = serde_norway::from_str::<serde_norway::Value>(&text) else {
            continue;
        };
        if doc.get("kind").and_then(|k| k.as_str()) != Some("ClusterRoleBinding") {
            continue;
        }
        let binds_group = doc
            .get("subjects")
            .and_then(|s| s.as_sequence())
            .is_some_and(|subjects| {
                subjects.iter().any(|s| {
                    s.get("kind").and_then(|k| k.as_str()) == Some("Group")
                        && s.get("name").and_then(|n| n.as_str()) == Some(group)
                })
            });
        if binds_group {
            let role = doc
                .get("roleRef")
                .and_then(|r| r.get("name"))
                .and_then(|n| n.as_str());
            let file = path
                .strip_prefix(root)
                .unwrap_or(path)
                .to_string_lossy()
                .to_string();
            return Some((file, role.unwrap_or("?").to_string()));
        }
    }
    None
}

fn component_identity(usage: &CertUse, cert: &CertInfo, role: Role, found: &mut Vec<Finding>) {
    let Some(required) = role.required_common_name() else {
        return;
    };
    let cn = cert.common_name.clone().unwrap_or_default();
    if cn != required {
        found.push(Finding::new(
            findings::COMPONENT_IDENTITY_UNEXPECTED,
            Some(&usage.label),
            format!(
                "the {} client certificate ({}) is CN={cn:?}, but Kubernetes' default RBAC \
                 bindings grant rights to {required:?}",
                role.name(),
                usage.origin
            ),
            format!("reissue it with CN={required}, or bind the needed roles to {cn:?}"),
        ));
    }
}

fn front_proxy(ctx: &Context, usage: &CertUse, cert: &CertInfo, found: &mut Vec<Finding>) {
    let Some(apiserver) = &ctx.layout.apiserver else {
        return;
    };
    let allowed: Vec<&str> = apiserver
        .get("requestheader-allowed-names")
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|n| !n.is_empty())
        .collect();
    let cn = cert.common_name.clone().unwrap_or_default();
    if !allowed.is_empty() && !allowed.contains(&cn.as_str()) {
        found.push(Finding::new(
            findings::FRONT_PROXY_NAME_NOT_ALLOWED,
            Some(&usage.label),
            format!(
                "the front-proxy client certificate is CN={cn:?}, which {} ({}) does not allow, so \
                 aggregated API servers reject the proxied requests",
                apiserver.origin("requestheader-allowed-names"),
                allowed.join(",")
            ),
            format!(
                "add {cn} to --requestheader-allowed-names, or reissue the certificate with an \
                 allowed CN"
            ),
        ));
    }
}

/// Returns the DNS and IP SANs of a certificate as text, for messages.
pub fn san_list(cert: &CertInfo) -> String {
    let names: Vec<String> = cert
        .sans
        .iter()
        .filter(|s| !matches!(s, San::Uri(_)))
        .map(San::to_string)
        .collect();
    if names.is_empty() {
        "no SAN".into()
    } else {
        names.join(", ")
    }
}
