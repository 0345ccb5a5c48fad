//! Leaf certificates and kubeconfigs: role defaults, SAN derivation, per-node expansion
//! and the Kubernetes identity rules that a wrong manifest would break.

use std::collections::HashMap;
use std::net::IpAddr;

use super::roles::Role;
use super::values::{self, San};
use super::{
    Binding, Bundle, Ca, Cert, Checker, Cluster, Kubeconfig, Node, Subject, Usage, check_id,
    check_subject, hint, reference_help,
};
use crate::manifest::{RawCert, RawKubeconfig};

pub(super) fn check_certs(
    checker: &mut Checker,
    cluster: &Cluster,
    nodes: &[Node],
    cas: &[Ca],
    bindings: &[Binding],
) -> Vec<Cert> {
    let mut certs = Vec::new();
    for (id, raw) in &checker.raw.cert {
        let path = format!("cert.{id}");
        check_id(checker, &path, id);
        if let Some(cert) = check_cert(checker, &path, id, raw, None, cluster, cas, bindings) {
            certs.push(cert);
        }
    }
    for (template, raw) in &checker.raw.per_node.cert {
        let path = format!("per-node.cert.{template}");
        check_id(checker, &path, template);
        if checker.raw.cert.contains_key(template) {
            checker
                .error(
                    path.clone(),
                    format!("`{template}` is also a top-level certificate"),
                )
                .help = Some("give the per-node template another name".into());
        }
        for node in select_nodes(nodes, raw.node_roles.as_ref()) {
            let id = format!("{}/{template}", node.name);
            let raw = substitute_node(raw, &node.name);
            if let Some(cert) = check_cert(
                checker,
                &path,
                &id,
                &raw,
                Some(node),
                cluster,
                cas,
                bindings,
            ) {
                certs.push(cert);
            }
        }
    }
    check_unique_identities(checker, &certs);
    certs
}

/// Returns the nodes that a per-node template applies to.
pub(super) fn select_nodes<'n>(nodes: &'n [Node], roles: Option<&Vec<String>>) -> Vec<&'n Node> {
    nodes
        .iter()
        .filter(|n| roles.is_none_or(|roles| roles.iter().any(|r| n.roles.contains(r))))
        .collect()
}

fn substitute_node(raw: &RawCert, node: &str) -> RawCert {
    let replace = |s: &String| s.replace("{node}", node);
    let mut raw = raw.clone();
    raw.sans = raw.sans.iter().map(replace).collect();
    raw.cert_file = raw.cert_file.as_ref().map(replace);
    raw.key_file = raw.key_file.as_ref().map(replace);
    if let Some(subject) = &mut raw.subject {
        subject.cn = subject.cn.as_ref().map(replace);
    }
    raw
}

#[allow(clippy::too_many_arguments)]
fn check_cert(
    checker: &mut Checker,
    path: &str,
    id: &str,
    raw: &RawCert,
    node: Option<&Node>,
    cluster: &Cluster,
    cas: &[Ca],
    bindings: &[Binding],
) -> Option<Cert> {
    let role = match &raw.role {
        Some(text) => match Role::parse(text) {
            Some(role) => Some(role),
            None => {
                checker
                    .error(format!("{path}.role"), format!("unknown role `{text}`"))
                    .help = Some(hint(text, &Role::NAMES));
                return None;
            }
        },
        None => None,
    };
    if let (Some(role), None) = (role, node)
        && role.is_per_node()
    {
        checker
            .error(
                format!("{path}.role"),
                format!(
                    "role `{}` names one node, so it cannot be a single shared certificate",
                    role.name()
                ),
            )
            .help = Some(format!(
            "move it to [per-node.cert.{}] so each node gets its own",
            path.rsplit('.').next().unwrap_or(id)
        ));
    }

    let issuer = cas.iter().find(|c| c.id == raw.issuer);
    if issuer.is_none() {
        let help = reference_help(&raw.issuer, checker.raw.ca.keys());
        checker
            .error(
                format!("{path}.issuer"),
                format!(
                    "certificate `{id}` names issuer `{}`, which is not a declared CA",
                    raw.issuer
                ),
            )
            .help = Some(help);
    }

    let usage = match (&raw.usage, role) {
        (Some(text), _) => match Usage::parse(text) {
            Some(usage) => usage,
            None => {
                checker
                    .error(format!("{path}.usage"), format!("unknown usage `{text}`"))
                    .help = Some(hint(text, &Usage::NAMES));
                return None;
            }
        },
        (None, Some(role)) => role.default_usage(),
        (None, None) => {
            checker
                .error(
                    format!("{path}.usage"),
                    "a certificate without a role needs a usage",
                )
                .help = Some("set `usage` to `server`, `client` or `both`, or set a `role`".into());
            return None;
        }
    };

    let subject = resolve_subject(checker, path, raw, role, node);
    let sans = resolve_sans(checker, path, raw, role, node, cluster);
    let key = checker.key_spec(path, raw.key_algorithm.as_ref(), raw.key_format.as_ref());
    let validity = checker.duration(
        &format!("{path}.validity"),
        raw.validity.as_ref(),
        checker.defaults.validity,
    );
    let leaf_name = path.rsplit('.').next().unwrap_or(id).to_string();
    let node_name = node.map(|n| n.name.as_str());
    let cert_file = checker.output(
        &format!("{path}.cert-file"),
        raw.cert_file.as_ref(),
        format!("pki/{leaf_name}.crt"),
        node_name,
    );
    let key_file = checker.output(
        &format!("{path}.key-file"),
        raw.key_file.as_ref(),
        format!("pki/{leaf_name}.key"),
        node_name,
    );

    let cert = Cert {
        id: id.to_string(),
        origin: path.to_string(),
        node: node.map(|n| n.name.clone()),
        issuer: raw.issuer.clone(),
        role,
        subject,
        sans,
        usage,
        key,
        validity,
        binding: raw.binding.clone(),
        cert_file,
        key_file,
    };
    if let Some(issuer) = issuer {
        check_validity_within_issuer(checker, &cert, issuer);
    }
    check_role_rules(checker, &cert, bindings);
    Some(cert)
}

/// Resolves a certificate's subject. A role fills in the common name and, unless the
/// certificate names a binding for its rights, the organizations that the manifest leaves
/// out.
fn resolve_subject(
    checker: &mut Checker,
    path: &str,
    raw_cert: &RawCert,
    role: Option<Role>,
    node: Option<&Node>,
) -> Subject {
    let subject_path = format!("{path}.subject");
    let raw = raw_cert.subject.as_ref();
    let mut subject = match raw {
        Some(raw) if role.is_none() => return check_subject(checker, &subject_path, raw),
        Some(raw) => {
            let mut raw = raw.clone();
            let defaults = role.map(|r| r.default_subject(node.map(|n| n.name.as_str())));
            if let Some((cn, organizations)) = defaults {
                raw.cn = raw.cn.or(Some(cn));
                if raw.o.is_empty() && raw_cert.binding.is_none() {
                    raw.o = organizations;
                }
            }
            check_subject(checker, &subject_path, &raw)
        }
        None => Subject::default(),
    };
    if let (Some(role), None) = (role, raw) {
        let (cn, organizations) = role.default_subject(node.map(|n| n.name.as_str()));
        subject.common_name = Some(cn);
        subject.organizations = organizations;
    }
    if role.is_none() && raw.is_none() {
        checker
            .error(subject_path, "a certificate without a role needs a subject")
            .help = Some("set `subject = { cn = \"...\" }` or set a `role`".into());
    }
    subject
}

fn resolve_sans(
    checker: &mut Checker,
    path: &str,
    raw: &RawCert,
    role: Option<Role>,
    node: Option<&Node>,
    cluster: &Cluster,
) -> Vec<San> {
    let mut sans = Vec::new();
    match role {
        Some(Role::Apiserver) => {
            let domain = &cluster.dns_domain;
            for name in [
                "kubernetes".to_string(),
                "kubernetes.default".into(),
                "kubernetes.default.svc".into(),
                format!("kubernetes.default.svc.{domain}"),
            ] {
                sans.push(San::Dns(name));
            }
            sans.extend(cluster.service_ips.iter().copied().map(San::Ip));
            sans.extend(cluster.advertise_address.map(San::Ip));
            sans.extend(cluster.server_hosts.iter().cloned());
            if let Some(node) = node {
                sans.push(San::Dns(node.name.clone()));
                sans.extend(node.ips.iter().copied().map(San::Ip));
            }
        }
        Some(Role::KubeletServing) => {
            if let Some(node) = node {
                sans.push(San::Dns(node.name.clone()));
                sans.extend(node.dns.iter().cloned().map(San::Dns));
                sans.extend(node.ips.iter().copied().map(San::Ip));
            }
        }
        Some(Role::EtcdServer | Role::EtcdPeer) => {
            if let Some(node) = node {
                sans.push(San::Dns(node.name.clone()));
                sans.extend(node.dns.iter().cloned().map(San::Dns));
            }
            sans.push(San::Dns("localhost".into()));
            if let Some(node) = node {
                sans.extend(node.ips.iter().copied().map(San::Ip));
            }
            sans.push(San::Ip(IpAddr::from([127, 0, 0, 1])));
            sans.push(San::Ip("::1".parse().expect("valid IPv6 literal")));
        }
        _ => {}
    }
    for (i, text) in raw.sans.iter().enumerate() {
        match San::parse(text) {
            Ok(san) => sans.push(san),
            Err(message) => {
                checker.error(format!("{path}.sans[{i}]"), message).help = Some(
                    "write an IP address such as `192.0.2.10` or `2001:db8::10`, a DNS name \
                     such as `api.example.com`, or a URI with a scheme"
                        .into(),
                );
            }
        }
    }
    if role == Some(Role::Apiserver) {
        check_service_ip_sans(checker, path, raw, cluster);
    }
    let mut unique = Vec::new();
    for san in sans {
        if !unique.contains(&san) {
            unique.push(san);
        }
    }
    unique
}

/// Warns about an apiserver IP SAN that looks like the ClusterIP of another service range
/// (a private `.1` address outside `cluster.service-cidr`): hand setups often type the SAN
/// and `--service-cluster-ip-range` in two places, and they drift apart.
fn check_service_ip_sans(checker: &mut Checker, path: &str, raw: &RawCert, cluster: &Cluster) {
    for (i, text) in raw.sans.iter().enumerate() {
        let Ok(ip) = text.parse::<IpAddr>() else {
            continue;
        };
        let is_first_of_a_range = match ip {
            IpAddr::V4(v4) => v4.octets()[3] == 1 && v4.is_private(),
            IpAddr::V6(_) => false,
        };
        let in_service_range = cluster.service_cidrs.iter().any(|net| net.contains(&ip));
        let is_node_or_server =
            cluster.advertise_address == Some(ip) || cluster.server_hosts.contains(&San::Ip(ip));
        if is_first_of_a_range && !in_service_range && !is_node_or_server {
            let ranges: Vec<String> = cluster
                .service_cidrs
                .iter()
                .map(|n| n.to_string())
                .collect();
            checker
                .warning(
                    format!("{path}.sans[{i}]"),
                    format!(
                        "IP SAN {ip} looks like the service IP of another range, but \
                     cluster.service-cidr is {}, whose service IP the certificate gets \
                     automatically",
                        ranges.join(",")
                    ),
                )
                .help = Some(
                "set cluster.service-cidr to the range the apiserver really uses and \
                 remove this SAN"
                    .into(),
            );
        }
    }
}

fn check_validity_within_issuer(checker: &mut Checker, cert: &Cert, issuer: &Ca) {
    if cert.validity > issuer.validity {
        checker
            .error(
                format!("{}.validity", cert.origin),
                format!(
                    "certificate `{}` would be valid for {}, past its issuer `{}` ({})",
                    cert.id,
                    values::format_duration(cert.validity),
                    issuer.id,
                    values::format_duration(issuer.validity)
                ),
            )
            .help = Some(format!(
            "shorten `validity` to at most `{}`, or lengthen the CA's",
            values::format_duration(issuer.validity)
        ));
    }
}

/// Rejects a client certificate that claims the node group or a node user name but is
/// not one node's identity. The Node authorizer accepts only CN `system:node:<name>`
/// with O `system:nodes`, and a per-node certificate must name its own node.
fn check_node_identity(checker: &mut Checker, cert: &Cert) {
    let cn = cert.subject.common_name.as_deref().unwrap_or("");
    let orgs = &cert.subject.organizations;
    let has_group = orgs.iter().any(|o| o == "system:nodes");
    let claims_node = cn.starts_with("system:node") || has_group;
    if cert.role.is_some() || !cert.usage.authenticates_client() || !claims_node {
        return;
    }
    let name = cn.strip_prefix("system:node:").unwrap_or("");
    let wrong_node = cert.node.as_deref().is_some_and(|node| node != name);
    if !name.is_empty() && has_group && !wrong_node {
        return;
    }
    let expected = match &cert.node {
        Some(node) => format!("system:node:{node}"),
        None => "system:node:<node name>".into(),
    };
    checker
        .error(
            format!("{}.subject", cert.origin),
            format!(
                "client certificate `{}` has CN={cn:?} O={orgs:?}, which is not a node \
                 identity: the Node authorizer accepts only CN=\"{expected}\" with \
                 O=\"system:nodes\"",
                cert.id
            ),
        )
        .help = Some(
        "declare it under [per-node.cert] with `role = \"kubelet-client\"`, which derives \
         the subject from the node name"
            .into(),
    );
}

/// Warns when a serving certificate's common name is a host name or address that its
/// SANs lack: Go's crypto/x509 ignores the common name, so clients that dial it fail.
fn check_common_name_in_sans(checker: &mut Checker, cert: &Cert) {
    let Some(cn) = cert.subject.common_name.as_deref() else {
        return;
    };
    if !cert.usage.serves() || cert.sans.is_empty() {
        return;
    }
    let san = match cn.parse::<IpAddr>() {
        Ok(ip) => San::Ip(ip),
        Err(_) if cn.contains('.') && values::check_dns_name(cn, true).is_ok() => {
            San::Dns(cn.to_string())
        }
        Err(_) => return,
    };
    if cert.sans.contains(&san) {
        return;
    }
    checker
        .warning(
            format!("{}.sans", cert.origin),
            format!(
                "certificate `{}` names the host {cn:?} only in its common name: Go's \
                 crypto/x509 ignores the common name, so clients that dial {cn} fail",
                cert.id
            ),
        )
        .help = Some(format!("add \"{cn}\" to `sans`"));
}

fn check_role_rules(checker: &mut Checker, cert: &Cert, bindings: &[Binding]) {
    check_role_usage(checker, cert);
    check_node_identity(checker, cert);
    check_common_name_in_sans(checker, cert);
    let path = &cert.origin;
    let cn = cert.subject.common_name.clone().unwrap_or_default();
    let orgs = &cert.subject.organizations;

    if cert.usage.serves() && cert.sans.is_empty() {
        let suggestion = if cn.is_empty() {
            "the host name".to_string()
        } else {
            format!("\"{cn}\"")
        };
        checker
            .error(
                format!("{path}.sans"),
                format!(
                    "certificate `{}` serves TLS but has no subject alternative name; Go's \
                 crypto/x509 ignores the common name, so no client can verify it",
                    cert.id
                ),
            )
            .help = Some(format!(
            "add the host names clients dial, such as `sans = [{suggestion}]`"
        ));
    }

    match cert.role {
        Some(Role::KubeletClient) => {
            let node = cert.node.clone().unwrap_or_default();
            let expected = format!("system:node:{node}");
            if cn != expected || !orgs.iter().any(|o| o == "system:nodes") {
                checker
                    .error(
                        format!("{path}.subject"),
                        format!(
                            "kubelet client `{}` has subject CN={cn:?} O={orgs:?}; the Node \
                         authorizer accepts only CN=\"{expected}\" with O=\"system:nodes\"",
                            cert.id
                        ),
                    )
                    .help = Some("remove `subject`: the role derives it from the node name".into());
            }
        }
        Some(Role::Admin) => check_admin_groups(checker, cert, bindings),
        Some(role @ (Role::ControllerManager | Role::Scheduler)) => {
            let required = role.required_common_name().unwrap_or_default();
            if cn != required {
                checker.warning(
                    format!("{path}.subject.cn"),
                    format!(
                        "role `{}` usually has CN \"{required}\", the user that Kubernetes' \
                         default RBAC bindings grant rights to; \"{cn}\" needs its own binding",
                        role.name()
                    ),
                );
            }
        }
        Some(role @ (Role::EtcdServer | Role::EtcdPeer)) if cert.usage != Usage::Both => {
            checker
                .warning(
                    format!("{path}.usage"),
                    format!(
                        "etcd {} certificate `{}` lacks {}: etcd presents it as a client too \
                     (its gateway and peers), which fails under --client-cert-auth",
                        if role == Role::EtcdServer {
                            "server"
                        } else {
                            "peer"
                        },
                        cert.id,
                        if cert.usage == Usage::Server {
                            "clientAuth"
                        } else {
                            "serverAuth"
                        }
                    ),
                )
                .help = Some("remove `usage`: the role sets `both`".into());
        }
        _ => {}
    }
    if cert.binding.is_some() && !matches!(cert.role, Some(Role::Admin)) {
        check_binding_reference(checker, cert, bindings);
    }
}

/// Rejects a usage that drops what the role's component does with the certificate: a
/// client role must allow client use, a serving role server use.
fn check_role_usage(checker: &mut Checker, cert: &Cert) {
    let Some(role) = cert.role else { return };
    let needed = role.default_usage();
    let missing = match needed {
        Usage::Server => !cert.usage.serves(),
        Usage::Client => !cert.usage.authenticates_client(),
        Usage::Both => false,
    };
    if missing {
        let (want, name) = if needed == Usage::Server {
            ("server", "server")
        } else {
            ("client", "client")
        };
        checker
            .error(
                format!("{}.usage", cert.origin),
                format!(
                    "role `{}` presents this certificate as a {want}, but its usage does not \
                     allow {name} use",
                    role.name()
                ),
            )
            .help = Some(format!(
            "remove `usage`: the role sets `{}`",
            usage_name(needed)
        ));
    }
}

fn usage_name(usage: Usage) -> &'static str {
    match usage {
        Usage::Server => "server",
        Usage::Client => "client",
        Usage::Both => "both",
    }
}

/// Checks that an admin has O=system:masters, or a group that a declared binding grants rights to.
fn check_admin_groups(checker: &mut Checker, cert: &Cert, bindings: &[Binding]) {
    let path = &cert.origin;
    let orgs = &cert.subject.organizations;
    if let Some(binding) = check_binding_reference(checker, cert, bindings) {
        if !orgs.contains(&binding.group) {
            checker
                .error(
                    format!("{path}.subject.o"),
                    format!(
                        "admin `{}` relies on binding `{}` for group \"{}\", but its subject \
                     has no such organization",
                        cert.id, binding.id, binding.group
                    ),
                )
                .help = Some(format!("add \"{}\" to `subject.o`", binding.group));
        }
        return;
    }
    if !orgs.iter().any(|o| o == "system:masters") {
        checker.warning(
            format!("{path}.subject.o"),
            format!(
                "admin `{}` has no group that grants rights (O={orgs:?}): with RBAC it \
                 can do nothing",
                cert.id
            ),
        )
        .help = Some(
            "add `o = \"system:masters\"`, or name a [binding] in `binding` and put its group in `o`"
                .into(),
        );
    }
}

fn check_binding_reference<'b>(
    checker: &mut Checker,
    cert: &Cert,
    bindings: &'b [Binding],
) -> Option<&'b Binding> {
    let name = cert.binding.as_ref()?;
    let found = bindings.iter().find(|b| &b.id == name);
    if found.is_none() {
        let help = reference_help(name, checker.raw.binding.keys());
        checker
            .error(
                format!("{}.binding", cert.origin),
                format!(
                    "certificate `{}` names binding `{name}`, which is not declared",
                    cert.id
                ),
            )
            .help = Some(help);
    }
    found
}

/// Rejects two kubelet client certificates with one identity.
fn check_unique_identities(checker: &mut Checker, certs: &[Cert]) {
    let mut first: HashMap<&str, &Cert> = HashMap::new();
    for cert in certs.iter().filter(|c| c.role == Some(Role::KubeletClient)) {
        let identity = cert.subject.common_name.as_deref().unwrap_or("");
        match first.get(identity) {
            Some(earlier) => {
                checker.error(
                    format!("{}.subject", cert.origin),
                    format!("`{}` and `{}` share one node identity", earlier.id, cert.id),
                );
            }
            None => {
                first.insert(identity, cert);
            }
        }
    }
}

pub(super) fn check_kubeconfigs(
    checker: &mut Checker,
    cluster: &Cluster,
    nodes: &[Node],
    cas: &[Ca],
    bundles: &[Bundle],
    certs: &[Cert],
) -> Vec<Kubeconfig> {
    let mut kubeconfigs = Vec::new();
    let certs_by_id: HashMap<&str, &Cert> = certs.iter().map(|c| (c.id.as_str(), c)).collect();
    for (id, raw) in &checker.raw.kubeconfig {
        let path = format!("kubeconfig.{id}");
        check_id(checker, &path, id);
        let kubeconfig = check_kubeconfig(
            checker,
            &path,
            id,
            raw,
            None,
            cluster,
            cas,
            bundles,
            &certs_by_id,
        );
        kubeconfigs.push(kubeconfig);
    }
    for (template, raw) in &checker.raw.per_node.kubeconfig {
        let path = format!("per-node.kubeconfig.{template}");
        check_id(checker, &path, template);
        for node in select_nodes(nodes, raw.node_roles.as_ref()) {
            let id = format!("{}/{template}", node.name);
            let kubeconfig = check_kubeconfig(
                checker,
                &path,
                &id,
                raw,
                Some(node),
                cluster,
                cas,
                bundles,
                &certs_by_id,
            );
            kubeconfigs.push(kubeconfig);
        }
    }
    check_shared_users(checker, &kubeconfigs, certs);
    kubeconfigs
}

/// Resolves a reference from a per-node object: the same node's instance of a per-node
/// template first, then a top-level object. `exists` returns whether an id is declared.
pub(super) fn resolve_scoped(
    name: &str,
    node: Option<&Node>,
    exists: impl Fn(&str) -> bool,
) -> Option<String> {
    if let Some(node) = node {
        let scoped = format!("{}/{name}", node.name);
        if exists(&scoped) {
            return Some(scoped);
        }
    }
    exists(name).then(|| name.to_string())
}

#[allow(clippy::too_many_arguments)]
fn check_kubeconfig(
    checker: &mut Checker,
    path: &str,
    id: &str,
    raw: &RawKubeconfig,
    node: Option<&Node>,
    cluster: &Cluster,
    cas: &[Ca],
    bundles: &[Bundle],
    certs_by_id: &HashMap<&str, &Cert>,
) -> Kubeconfig {
    let user = resolve_scoped(&raw.user, node, |id| certs_by_id.contains_key(id));
    let user_cert = user
        .as_ref()
        .and_then(|u| certs_by_id.get(u.as_str()).copied());
    match user_cert {
        None => {
            let mut known: Vec<String> = checker.raw.cert.keys().cloned().collect();
            known.extend(checker.raw.per_node.cert.keys().cloned());
            let help = reference_help(&raw.user, known.iter());
            checker
                .error(
                    format!("{path}.user"),
                    format!(
                        "kubeconfig `{id}` names user certificate `{}`, which is not declared",
                        raw.user
                    ),
                )
                .help = Some(help);
        }
        Some(cert) if !cert.usage.authenticates_client() => {
            checker
                .error(
                    format!("{path}.user"),
                    format!(
                        "kubeconfig `{id}` authenticates with `{}`, whose usage does not allow \
                     client authentication",
                        cert.id
                    ),
                )
                .help = Some(format!("set `usage = \"client\"` on `{}`", cert.origin));
        }
        Some(cert) => check_kubeconfig_user(checker, path, id, node, cert),
    }
    let ca_known = cas.iter().any(|c| c.id == raw.ca) || bundles.iter().any(|b| b.id == raw.ca);
    if !ca_known {
        let mut known: Vec<String> = cas.iter().map(|c| c.id.clone()).collect();
        known.extend(bundles.iter().map(|b| b.id.clone()));
        let help = reference_help(&raw.ca, known.iter());
        checker
            .error(
                format!("{path}.ca"),
                format!(
                    "kubeconfig `{id}` names CA `{}`, which is neither a CA nor a bundle",
                    raw.ca
                ),
            )
            .help = Some(help);
    }
    let template = path.rsplit('.').next().unwrap_or(id);
    let file_text = raw
        .file
        .as_ref()
        .map(|f| f.replace("{node}", node.map_or("", |n| n.name.as_str())));
    let file = checker.output(
        &format!("{path}.file"),
        file_text.as_ref(),
        format!("{template}.conf"),
        node.map(|n| n.name.as_str()),
    );
    let server = raw
        .server
        .clone()
        .unwrap_or_else(|| cluster.servers.first().cloned().unwrap_or_default());
    if raw.server.is_some()
        && let Err(message) = super::server_host(&server)
    {
        checker.error(format!("{path}.server"), message).help =
            Some("write `https://HOST:PORT`, with an IPv6 host in brackets".into());
    }
    let user_name = raw
        .user_name
        .clone()
        .or_else(|| user_cert.and_then(|c| c.subject.common_name.clone()))
        .unwrap_or_else(|| id.to_string());
    if !is_plain_yaml_name(&user_name) {
        checker
            .error(
                format!("{path}.user-name"),
                format!("user name `{user_name}` cannot be written into a kubeconfig as it is"),
            )
            .help = Some(
            "use letters, digits and `.`, `_`, `-`, `:`, `@`, `/`, starting with a letter or \
             digit; set `user-name` when the client certificate's CN has other characters"
                .into(),
        );
    }
    Kubeconfig {
        id: id.to_string(),
        origin: path.to_string(),
        node: node.map(|n| n.name.clone()),
        file,
        user: user.unwrap_or_else(|| raw.user.clone()),
        ca: raw.ca.clone(),
        server,
        embed: raw.embed,
        user_name,
        cluster_name: cluster.name.clone(),
    }
}

/// Checks that a kubeconfig's user can act in the cluster: a node's kubeconfig must
/// carry that node's identity, and a user without a group gets no rights from RBAC.
fn check_kubeconfig_user(
    checker: &mut Checker,
    path: &str,
    id: &str,
    node: Option<&Node>,
    cert: &Cert,
) {
    let cn = cert.subject.common_name.as_deref().unwrap_or("");
    if let (Some(node), Some(named)) = (node, cn.strip_prefix("system:node:"))
        && named != node.name
    {
        checker
            .error(
                format!("{path}.user"),
                format!(
                    "kubeconfig `{id}` of node `{}` authenticates as node `{named}` with \
                     certificate `{}` (CN={cn:?})",
                    node.name, cert.id
                ),
            )
            .help =
            Some("point `user` at a per-node certificate with `role = \"kubelet-client\"`".into());
    }
    let without_group = cert.role.is_none()
        && cert.binding.is_none()
        && cert.subject.organizations.is_empty()
        && !cn.starts_with("system:");
    if without_group {
        checker
            .warning(
                format!("{}.subject", cert.origin),
                format!(
                    "kubeconfig `{id}` authenticates as user {cn:?} with certificate `{}`, \
                     which has no group (O): with RBAC, the user has no rights unless a \
                     binding names it",
                    cert.id
                ),
            )
            .help = Some(
            "add `o = \"system:masters\"` for a cluster admin, or name a [binding] in \
             `binding` and put its group in `o`"
                .into(),
        );
    }
}

/// True for a name that YAML reads back unchanged without quotes, as kubeconfigs hold it.
fn is_plain_yaml_name(name: &str) -> bool {
    name.chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':' | '@' | '/'))
        && !name.ends_with(':')
}

/// Rejects one kubelet client certificate in the kubeconfigs of two nodes, which makes them one node.
fn check_shared_users(checker: &mut Checker, kubeconfigs: &[Kubeconfig], certs: &[Cert]) {
    let mut first: HashMap<&str, &Kubeconfig> = HashMap::new();
    for kubeconfig in kubeconfigs.iter().filter(|k| k.node.is_some()) {
        let Some(earlier) = first.get(kubeconfig.user.as_str()).copied() else {
            first.insert(&kubeconfig.user, kubeconfig);
            continue;
        };
        if earlier.node == kubeconfig.node {
            continue;
        }
        let identity = certs
            .iter()
            .find(|c| c.id == earlier.user)
            .and_then(|c| c.subject.common_name.clone())
            .unwrap_or_default();
        checker
            .error(
                format!("{}.user", kubeconfig.origin),
                format!(
                    "nodes `{}` and `{}` authenticate with one certificate `{}` \
                     (CN={identity:?}), so the Node authorizer cannot tell them apart",
                    earlier.node.as_deref().unwrap_or(""),
                    kubeconfig.node.as_deref().unwrap_or(""),
                    earlier.user
                ),
            )
            .help = Some(
            "declare the client certificate under [per-node.cert] with `role = \"kubelet-client\"`"
                .into(),
        );
    }
}
