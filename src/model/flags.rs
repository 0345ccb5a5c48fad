//! Component flag files: resolves each TLS and PKI flag of kube-apiserver,
//! kube-controller-manager, kube-scheduler, kubelet and etcd to the install path of a
//! declared file, and checks that the referenced object fits the flag.

use std::collections::BTreeMap;

use serde::Serialize;

use super::certs::{resolve_scoped, select_nodes};
use super::{
    Ca, Cert, Checker, Kubeconfig, Model, Node, OutputFile, Role, ServiceAccount, reference_help,
};

/// A Kubernetes component that reads flags.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    KubeApiserver,
    KubeControllerManager,
    KubeScheduler,
    Kubelet,
    Etcd,
}

impl Component {
    pub fn name(self) -> &'static str {
        match self {
            Component::KubeApiserver => "kube-apiserver",
            Component::KubeControllerManager => "kube-controller-manager",
            Component::KubeScheduler => "kube-scheduler",
            Component::Kubelet => "kubelet",
            Component::Etcd => "etcd",
        }
    }
}

/// Install paths of a certificate and its key.
#[derive(Debug, Clone, Serialize)]
pub struct CertPaths {
    pub cert: String,
    pub key: String,
}

/// One rendered flag file: the component, where it goes, and the template context.
#[derive(Debug, Clone)]
pub struct FlagFile {
    pub id: String,
    pub origin: String,
    pub component: Component,
    pub node: Option<String>,
    pub file: OutputFile,
    pub context: serde_json::Value,
    /// Graph keys (`kind:id`) of the objects whose files the flags point at.
    pub depends_on: Vec<String>,
    /// Object id that each manifest slot (such as `tls-cert`) resolved to.
    pub refs: BTreeMap<String, String>,
}

/// Resolves the references of one flag file, recording errors and dependencies.
struct Slots<'m, 'c, 'r> {
    checker: &'c mut Checker<'r>,
    model: &'m Model,
    path: String,
    node: Option<&'m Node>,
    depends_on: Vec<String>,
    refs: BTreeMap<String, String>,
}

impl<'m> Slots<'m, '_, '_> {
    fn leaf(&mut self, slot: &str, flag: &str, name: &str, serving: bool) -> Option<CertPaths> {
        let id = resolve_scoped(name, self.node, |id| self.model.cert(id).is_some());
        let Some(cert) = id.and_then(|id| self.model.cert(&id)) else {
            self.unknown(slot, flag, name, "certificate");
            return None;
        };
        let fits = if serving {
            cert.usage.serves()
        } else {
            cert.usage.authenticates_client()
        };
        if !fits {
            let (want, usage) = if serving {
                ("serving", "server")
            } else {
                ("client", "client")
            };
            self.checker
                .error(
                    format!("{}.{slot}", self.path),
                    format!(
                        "{flag} needs a {want} certificate, but `{}` does not allow {usage} use",
                        cert.id
                    ),
                )
                .help = Some(serving_help(cert, serving));
            return None;
        }
        self.depends_on.push(format!("cert:{}", cert.id));
        self.refs.insert(slot.to_string(), cert.id.clone());
        Some(paths(cert))
    }

    fn trust(&mut self, slot: &str, flag: &str, name: &str) -> Option<String> {
        let file = self.model.trust_file(name).map(|f| f.install.clone());
        match file {
            Some(file) => {
                let kind = if self.model.ca(name).is_some() {
                    "ca"
                } else {
                    "bundle"
                };
                self.depends_on.push(format!("{kind}:{name}"));
                self.refs.insert(slot.to_string(), name.to_string());
                Some(file)
            }
            None => {
                self.unknown(slot, flag, name, "CA or bundle");
                None
            }
        }
    }

    /// Resolves a signer flag, which takes exactly the one CA certificate whose key signs, never a bundle.
    fn signer(&mut self, slot: &str, flag: &str, name: &str) -> Option<&'m Ca> {
        if self.model.bundle(name).is_some() {
            self.checker
                .error(
                    format!("{}.{slot}", self.path),
                    format!(
                        "{flag} points at bundle `{name}`, but a signer file must hold exactly \
                         the one CA certificate that matches the signing key"
                    ),
                )
                .help = Some("name one CA, and use the bundle only for trust flags".into());
            return None;
        }
        let Some(ca) = self.model.ca(name) else {
            self.unknown(slot, flag, name, "CA");
            return None;
        };
        if ca.imported.as_ref().is_some_and(|i| i.key_pem.is_none()) {
            self.checker
                .error(
                    format!("{}.{slot}", self.path),
                    format!(
                        "{flag} names CA `{name}`, which is imported without its key, but the \
                         component signs with the key"
                    ),
                )
                .help = Some(format!(
                "give the key of `{name}` in `import-key`, or name a CA whose key pkic has"
            ));
            return None;
        }
        self.depends_on.push(format!("ca:{name}"));
        self.refs.insert(slot.to_string(), name.to_string());
        Some(ca)
    }

    fn service_account(
        &mut self,
        slot: &str,
        flag: &str,
        name: &str,
    ) -> Option<&'m ServiceAccount> {
        if let Some(account) = self.model.service_accounts.iter().find(|s| s.id == name) {
            self.depends_on.push(format!("service-account:{name}"));
            self.refs.insert(slot.to_string(), name.to_string());
            return Some(account);
        }
        if self.model.ca(name).is_some() || self.model.cert(name).is_some() {
            self.checker
                .error(
                    format!("{}.{slot}", self.path),
                    format!(
                        "{flag} names `{name}`, which is a certificate's key: service-account \
                         tokens need a key pair of their own, and sharing a CA key copies it \
                         to every control-plane host"
                    ),
                )
                .help = Some(format!(
                "declare [service-account.sa] and set `{slot} = \"sa\"`"
            ));
            return None;
        }
        let ids: Vec<String> = self
            .model
            .service_accounts
            .iter()
            .map(|s| s.id.clone())
            .collect();
        let help = reference_help(name, ids.iter());
        self.checker
            .error(
                format!("{}.{slot}", self.path),
                format!("{flag} names `{name}`, which is not a declared service-account key"),
            )
            .help = Some(help);
        None
    }

    fn kubeconfig(&mut self, slot: &str, flag: &str, name: &str) -> Option<&'m Kubeconfig> {
        let id = resolve_scoped(name, self.node, |id| self.model.kubeconfig(id).is_some());
        match id.and_then(|id| self.model.kubeconfig(&id)) {
            Some(kubeconfig) => {
                self.depends_on
                    .push(format!("kubeconfig:{}", kubeconfig.id));
                self.refs.insert(slot.to_string(), kubeconfig.id.clone());
                Some(kubeconfig)
            }
            None => {
                self.unknown(slot, flag, name, "kubeconfig");
                None
            }
        }
    }

    fn unknown(&mut self, slot: &str, flag: &str, name: &str, kind: &str) {
        let mut known: Vec<String> = match kind {
            "certificate" => self
                .checker
                .raw
                .cert
                .keys()
                .chain(self.checker.raw.per_node.cert.keys())
                .cloned()
                .collect(),
            "kubeconfig" => self
                .checker
                .raw
                .kubeconfig
                .keys()
                .chain(self.checker.raw.per_node.kubeconfig.keys())
                .cloned()
                .collect(),
            _ => self.model.cas.iter().map(|c| c.id.clone()).collect(),
        };
        if kind == "CA or bundle" {
            known.extend(self.model.bundles.iter().map(|b| b.id.clone()));
        }
        let help = reference_help(name, known.iter());
        self.checker
            .error(
                format!("{}.{slot}", self.path),
                format!("{flag} names `{name}`, which is not a declared {kind}"),
            )
            .help = Some(help);
    }
}

fn paths(cert: &Cert) -> CertPaths {
    CertPaths {
        cert: cert.cert_file.install.clone(),
        key: cert.key_file.install.clone(),
    }
}

fn serving_help(cert: &Cert, serving: bool) -> String {
    match (serving, cert.role) {
        (true, Some(Role::KubeletClient)) => {
            "a kubelet serves with its own certificate: declare a per-node cert with \
             `role = \"kubelet-serving\"` and point the flag at it"
                .into()
        }
        (true, _) => format!(
            "point the flag at a certificate with `usage = \"server\"`, not `{}`",
            cert.id
        ),
        (false, _) => format!(
            "point the flag at a certificate with `usage = \"client\"`, not `{}`",
            cert.id
        ),
    }
}

pub(super) fn check_flags(checker: &mut Checker, model: &Model) -> Vec<FlagFile> {
    let mut files = Vec::new();
    let flags = &checker.raw.flags;
    if let Some(raw) = &flags.kube_apiserver {
        let file = raw.file.clone();
        let mut slots = slots(checker, model, "flags.kube-apiserver", None);
        let context = apiserver_context(&mut slots, raw);
        files.push(finish(slots, Component::KubeApiserver, file, context));
    }
    let flags = &checker.raw.flags;
    if let Some(raw) = &flags.kube_controller_manager {
        let file = raw.file.clone();
        let mut slots = slots(checker, model, "flags.kube-controller-manager", None);
        let context = controller_manager_context(&mut slots, raw);
        files.push(finish(
            slots,
            Component::KubeControllerManager,
            file,
            context,
        ));
    }
    let flags = &checker.raw.flags;
    if let Some(raw) = &flags.kube_scheduler {
        let file = raw.file.clone();
        let mut slots = slots(checker, model, "flags.kube-scheduler", None);
        let kubeconfig = slots.kubeconfig("kubeconfig", "--kubeconfig", &raw.kubeconfig);
        let context =
            serde_json::json!({ "kubeconfig": kubeconfig.map(|k| k.file.install.clone()) });
        files.push(finish(slots, Component::KubeScheduler, file, context));
    }
    if let Some(raw) = checker.raw.per_node.flags.kubelet.clone() {
        for node in select_nodes(&model.nodes, raw.node_roles.as_ref()) {
            let mut slots = slots(checker, model, "per-node.flags.kubelet", Some(node));
            let context = kubelet_context(&mut slots, &raw, node);
            files.push(finish(slots, Component::Kubelet, raw.file.clone(), context));
        }
    }
    if let Some(raw) = checker.raw.per_node.flags.etcd.clone() {
        let roles = raw
            .node_roles
            .clone()
            .unwrap_or_else(|| vec!["etcd".into()]);
        let members = select_nodes(&model.nodes, Some(&roles));
        if members.is_empty() {
            checker
                .error(
                    "per-node.flags.etcd",
                    "no node has a role that selects etcd members",
                )
                .help =
                Some("give the etcd nodes `roles = [\"etcd\"]`, or set `node-roles`".into());
        }
        for node in &members {
            let mut slots = slots(checker, model, "per-node.flags.etcd", Some(node));
            let context = etcd_context(&mut slots, &raw, node, &members);
            files.push(finish(slots, Component::Etcd, raw.file.clone(), context));
        }
    }
    files
}

fn slots<'m, 'c, 'r>(
    checker: &'c mut Checker<'r>,
    model: &'m Model,
    path: &str,
    node: Option<&'m Node>,
) -> Slots<'m, 'c, 'r> {
    Slots {
        checker,
        model,
        path: path.to_string(),
        node,
        depends_on: Vec::new(),
        refs: BTreeMap::new(),
    }
}

fn finish(
    slots: Slots,
    component: Component,
    file: Option<String>,
    context: serde_json::Value,
) -> FlagFile {
    let node = slots.node.map(|n| n.name.as_str());
    let path = slots.path.clone();
    let output = slots.checker.output(
        &format!("{path}.file"),
        file.as_ref(),
        format!("flags/{}.flags", component.name()),
        node,
    );
    let id = match node {
        Some(node) => format!("{node}/{}", component.name()),
        None => component.name().to_string(),
    };
    FlagFile {
        id,
        origin: path,
        component,
        node: node.map(str::to_string),
        file: output,
        context,
        depends_on: slots.depends_on,
        refs: slots.refs,
    }
}

fn apiserver_context(
    slots: &mut Slots,
    raw: &crate::manifest::RawApiserverFlags,
) -> serde_json::Value {
    let cluster = &slots.model.cluster;
    // The SANs of the serving certificate are checked in `wiring`.
    let tls = slots.leaf("tls-cert", "--tls-cert-file", &raw.tls_cert, true);
    let client_ca = slots.trust("client-ca", "--client-ca-file", &raw.client_ca);
    let kubelet_client = raw
        .kubelet_client
        .as_ref()
        .and_then(|n| slots.leaf("kubelet-client", "--kubelet-client-certificate", n, false));
    let kubelet_ca = raw
        .kubelet_ca
        .as_ref()
        .and_then(|n| slots.trust("kubelet-ca", "--kubelet-certificate-authority", n));
    let etcd_ca = raw
        .etcd_ca
        .as_ref()
        .and_then(|n| slots.trust("etcd-ca", "--etcd-cafile", n));
    let etcd_client = raw
        .etcd_client
        .as_ref()
        .and_then(|n| slots.leaf("etcd-client", "--etcd-certfile", n, false));
    let etcd_servers = raw.etcd_servers.clone().unwrap_or_else(|| {
        select_nodes(&slots.model.nodes, Some(&vec!["etcd".to_string()]))
            .iter()
            .filter_map(|n| n.ips.first())
            .map(|ip| format!("https://{}", socket(*ip, 2379)))
            .collect()
    });
    if (etcd_ca.is_some() || etcd_client.is_some()) && etcd_servers.is_empty() {
        slots
            .checker
            .error(
                format!("{}.etcd-servers", slots.path),
                "no etcd server URL is known",
            )
            .help = Some("give nodes `roles = [\"etcd\"]` with IPs, or set `etcd-servers`".into());
    }
    let account = slots.service_account(
        "service-account",
        "--service-account-key-file",
        &raw.service_account,
    );
    let proxy_client = raw
        .front_proxy_client
        .as_ref()
        .and_then(|n| slots.leaf("front-proxy-client", "--proxy-client-cert-file", n, false));
    let allowed_names: Vec<String> = raw
        .front_proxy_client
        .as_ref()
        .and_then(|n| slots.model.cert(n))
        .and_then(|c| c.subject.common_name.clone())
        .into_iter()
        .collect();
    let requestheader_ca = raw
        .requestheader_ca
        .as_ref()
        .and_then(|n| slots.trust("requestheader-ca", "--requestheader-client-ca-file", n));
    if proxy_client.is_some() != requestheader_ca.is_some() {
        slots.checker.error(
            slots.path.clone(),
            "front-proxy-client and requestheader-ca go together: the aggregator presents the \
             one, and the apiserver verifies it with the other",
        );
    }
    let issuer = raw
        .service_account_issuer
        .clone()
        .unwrap_or_else(|| format!("https://kubernetes.default.svc.{}", cluster.dns_domain));
    serde_json::json!({
        "advertise_address": cluster.advertise_address.map(|a| a.to_string()),
        "service_cluster_ip_range": cluster.service_cidrs.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
        "tls": tls,
        "client_ca_file": client_ca,
        "kubelet_client": kubelet_client,
        "kubelet_certificate_authority": kubelet_ca,
        "etcd_cafile": etcd_ca,
        "etcd_client": etcd_client,
        "etcd_servers": etcd_servers,
        "service_account_key_file": account.map(|a| a.public_key_file.install.clone()),
        "service_account_signing_key_file": account.map(|a| a.key_file.install.clone()),
        "service_account_issuer": issuer,
        "proxy_client": proxy_client,
        "requestheader_client_ca_file": requestheader_ca,
        "requestheader_allowed_names": allowed_names,
    })
}

fn controller_manager_context(
    slots: &mut Slots,
    raw: &crate::manifest::RawControllerManagerFlags,
) -> serde_json::Value {
    let kubeconfig = slots.kubeconfig("kubeconfig", "--kubeconfig", &raw.kubeconfig);
    let root_ca = slots.trust("root-ca", "--root-ca-file", &raw.root_ca);
    let signer = raw
        .cluster_signing
        .as_ref()
        .and_then(|n| slots.signer("cluster-signing", "--cluster-signing-cert-file", n))
        .map(|ca| CertPaths {
            cert: ca.cert_file.install.clone(),
            key: ca.key_file.install.clone(),
        });
    let account = slots.service_account(
        "service-account",
        "--service-account-private-key-file",
        &raw.service_account,
    );
    let client_ca = raw
        .client_ca
        .as_ref()
        .and_then(|n| slots.trust("client-ca", "--client-ca-file", n));
    let requestheader_ca = raw
        .requestheader_ca
        .as_ref()
        .and_then(|n| slots.trust("requestheader-ca", "--requestheader-client-ca-file", n));
    let cluster = &slots.model.cluster;
    serde_json::json!({
        "kubeconfig": kubeconfig.map(|k| k.file.install.clone()),
        "root_ca_file": root_ca,
        "cluster_signing": signer,
        "service_account_private_key_file": account.map(|a| a.key_file.install.clone()),
        "client_ca_file": client_ca,
        "requestheader_client_ca_file": requestheader_ca,
        "service_cluster_ip_range": cluster.service_cidrs.iter().map(|n| n.to_string()).collect::<Vec<_>>().join(","),
        "cluster_name": cluster.name,
    })
}

fn kubelet_context(
    slots: &mut Slots,
    raw: &crate::manifest::RawKubeletFlags,
    node: &Node,
) -> serde_json::Value {
    let kubeconfig = slots.kubeconfig("kubeconfig", "--kubeconfig", &raw.kubeconfig);
    let client_ca = slots.trust("client-ca", "--client-ca-file", &raw.client_ca);
    let tls = slots.leaf("tls-cert", "--tls-cert-file", &raw.tls_cert, true);
    serde_json::json!({
        "node": node.name,
        "node_ip": node.ips.first().map(|ip| ip.to_string()),
        "kubeconfig": kubeconfig.map(|k| k.file.install.clone()),
        "client_ca_file": client_ca,
        "tls": tls,
    })
}

fn etcd_context(
    slots: &mut Slots,
    raw: &crate::manifest::RawEtcdFlags,
    node: &Node,
    members: &[&Node],
) -> serde_json::Value {
    let server = slots.leaf("server-cert", "--cert-file", &raw.server_cert, true);
    let peer = slots.leaf("peer-cert", "--peer-cert-file", &raw.peer_cert, true);
    if let Some(peer_cert) = resolve_scoped(&raw.peer_cert, Some(node), |id| {
        slots.model.cert(id).is_some()
    })
    .and_then(|id| slots.model.cert(&id))
        && !peer_cert.usage.authenticates_client()
    {
        slots.checker.error(
            format!("{}.peer-cert", slots.path),
            format!(
                "--peer-cert-file `{}` must allow client use too: members dial each other with it",
                peer_cert.id
            ),
        );
    }
    let trusted_ca = slots.trust("trusted-ca", "--trusted-ca-file", &raw.trusted_ca);
    let peer_trusted_ca = slots.trust(
        "peer-trusted-ca",
        "--peer-trusted-ca-file",
        &raw.peer_trusted_ca,
    );
    let Some(ip) = node.ips.first().copied() else {
        slots.checker.error(
            format!("{}.node", slots.path),
            format!("etcd member `{}` has no IP address to listen on", node.name),
        );
        return serde_json::Value::Null;
    };
    let initial_cluster: Vec<String> = members
        .iter()
        .filter_map(|m| {
            m.ips
                .first()
                .map(|ip| format!("{}=https://{}", m.name, socket(*ip, 2380)))
        })
        .collect();
    serde_json::json!({
        "name": node.name,
        "server": server,
        "peer": peer,
        "trusted_ca_file": trusted_ca,
        "peer_trusted_ca_file": peer_trusted_ca,
        "listen_client_urls": listen_client_urls(ip),
        "advertise_client_urls": format!("https://{}", socket(ip, 2379)),
        "listen_peer_urls": format!("https://{}", socket(ip, 2380)),
        "initial_advertise_peer_urls": format!("https://{}", socket(ip, 2380)),
        "initial_cluster": initial_cluster.join(","),
    })
}

/// etcd listens on the member address and on loopback, for local clients.
fn listen_client_urls(ip: std::net::IpAddr) -> String {
    if ip.is_loopback() {
        format!("https://{}", socket(ip, 2379))
    } else {
        format!("https://{},https://127.0.0.1:2379", socket(ip, 2379))
    }
}

fn socket(ip: std::net::IpAddr, port: u16) -> String {
    std::net::SocketAddr::new(ip, port).to_string()
}
