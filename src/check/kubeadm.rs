//! kubeadm trees: `/etc/kubernetes` with `pki/`, the kubeconfigs and, when present,
//! the static Pod manifests under `manifests/`, whose commands give the real flags.
//! Without a manifest, a component gets kubeadm's default flags (kubeadm 1.29 and
//! later), limited to the files that exist, so a tree without front-proxy files is not
//! reported for missing them.

use std::fs;
use std::net::IpAddr;
use std::path::Path;

use super::discover::{
    add_kubeconfigs_from_flags, add_top_level_kubeconfigs, empty_layout, facts_from_flags,
};
use super::layout::{Component, Layout, LayoutKind, parse_flags};
use super::x509::CertInfo;
use crate::model::San;

/// kubeadm's default flags, as (flag, file under /etc/kubernetes) groups: a group is
/// used when one of its files exists.
type Group = &'static [(&'static str, &'static str)];

const APISERVER_DEFAULTS: &[Group] = &[
    &[("client-ca-file", "pki/ca.crt")],
    &[
        ("tls-cert-file", "pki/apiserver.crt"),
        ("tls-private-key-file", "pki/apiserver.key"),
    ],
    &[
        (
            "kubelet-client-certificate",
            "pki/apiserver-kubelet-client.crt",
        ),
        ("kubelet-client-key", "pki/apiserver-kubelet-client.key"),
    ],
    &[("etcd-cafile", "pki/etcd/ca.crt")],
    &[
        ("etcd-certfile", "pki/apiserver-etcd-client.crt"),
        ("etcd-keyfile", "pki/apiserver-etcd-client.key"),
    ],
    &[
        ("proxy-client-cert-file", "pki/front-proxy-client.crt"),
        ("proxy-client-key-file", "pki/front-proxy-client.key"),
    ],
    &[("requestheader-client-ca-file", "pki/front-proxy-ca.crt")],
    &[("service-account-key-file", "pki/sa.pub")],
    &[("service-account-signing-key-file", "pki/sa.key")],
];

const CONTROLLER_MANAGER_DEFAULTS: &[Group] = &[
    &[("kubeconfig", "controller-manager.conf")],
    &[
        ("client-ca-file", "pki/ca.crt"),
        ("root-ca-file", "pki/ca.crt"),
    ],
    &[
        ("cluster-signing-cert-file", "pki/ca.crt"),
        ("cluster-signing-key-file", "pki/ca.key"),
    ],
    &[("requestheader-client-ca-file", "pki/front-proxy-ca.crt")],
    &[("service-account-private-key-file", "pki/sa.key")],
];

const SCHEDULER_DEFAULTS: &[Group] = &[&[("kubeconfig", "scheduler.conf")]];

const ETCD_DEFAULTS: &[Group] = &[
    &[
        ("cert-file", "pki/etcd/server.crt"),
        ("key-file", "pki/etcd/server.key"),
    ],
    &[
        ("peer-cert-file", "pki/etcd/peer.crt"),
        ("peer-key-file", "pki/etcd/peer.key"),
    ],
    &[
        ("trusted-ca-file", "pki/etcd/ca.crt"),
        ("peer-trusted-ca-file", "pki/etcd/ca.crt"),
    ],
];

/// The kubelet's client CA and kubeconfig from kubeadm's KubeletConfiguration.
const KUBELET_DEFAULTS: &[Group] = &[
    &[("client-ca-file", "pki/ca.crt")],
    &[("kubeconfig", "kubelet.conf")],
];

/// Reads a kubeadm tree. For [`LayoutKind::KubeadmPki`], `root` is the pki directory.
pub fn discover(root: &Path, kind: LayoutKind) -> Layout {
    let install_root = match kind {
        LayoutKind::KubeadmPki => "/etc/kubernetes/pki",
        _ => "/etc/kubernetes",
    };
    let mut layout = empty_layout(kind, root, install_root);
    let files = |relative: &str| match kind {
        LayoutKind::KubeadmPki => relative.strip_prefix("pki/").map(|r| root.join(r)),
        _ => Some(root.join(relative)),
    };
    let exists = |relative: &str| files(relative).is_some_and(|p| p.exists());

    let (node, ips) = etcd_member(&files("pki/etcd/server.crt"));
    // A control-plane component runs where its manifest or its own file is; a worker
    // node's tree has only the kubelet's files.
    let runs = |name: &str, file: &str| {
        root.join(format!("manifests/{name}.yaml")).is_file() || exists(file)
    };
    let control_plane = runs("kube-apiserver", "pki/apiserver.crt");
    if control_plane {
        layout.apiserver = Some(component(
            root,
            "kube-apiserver",
            None,
            APISERVER_DEFAULTS,
            &exists,
        ));
    }
    let controller_manager_file = match kind {
        LayoutKind::KubeadmPki => "pki/apiserver.crt",
        _ => "controller-manager.conf",
    };
    if runs("kube-controller-manager", controller_manager_file) {
        layout.controller_manager = Some(component(
            root,
            "kube-controller-manager",
            None,
            CONTROLLER_MANAGER_DEFAULTS,
            &exists,
        ));
    }
    if runs("kube-scheduler", "scheduler.conf") {
        layout.scheduler = Some(component(
            root,
            "kube-scheduler",
            None,
            SCHEDULER_DEFAULTS,
            &exists,
        ));
    }
    if exists("pki/etcd/server.crt") {
        let etcd = component(root, "etcd", node.clone(), ETCD_DEFAULTS, &exists);
        layout.etcd.push(etcd);
    }
    if exists("kubelet.conf") {
        let mut kubelet = Component::with_defaults(
            "kubelet",
            node.clone(),
            "kubeadm's default KubeletConfiguration",
        );
        add_defaults(&mut kubelet, KUBELET_DEFAULTS, &exists);
        layout.kubelets.push(kubelet);
    }
    if let Some(node) = &node {
        layout.facts.add_node(node, &ips, &[]);
    }
    add_kubeconfigs_from_flags(&mut layout);
    if kind == LayoutKind::Kubeadm {
        add_top_level_kubeconfigs(&mut layout);
    }
    facts_from_flags(
        &mut layout,
        "10.96.0.0/12",
        "kubeadm's default serviceSubnet",
    );
    layout
}

/// Returns a component's flags from its static Pod manifest, or kubeadm's defaults.
fn component(
    root: &Path,
    name: &'static str,
    node: Option<String>,
    defaults: &[Group],
    exists: &dyn Fn(&str) -> bool,
) -> Component {
    let manifest = format!("manifests/{name}.yaml");
    if let Some(command) = read_manifest_command(&root.join(&manifest)) {
        let mut component = Component::new(name, node, manifest);
        parse_flags(&mut component, command.iter().map(String::as_str));
        if component.name == "etcd" && component.node.is_none() {
            component.node = component.get("name").map(str::to_string);
        }
        return component;
    }
    let source = format!("kubeadm's default flags, as {manifest} is missing");
    let mut component = Component::with_defaults(name, node, &source);
    add_defaults(&mut component, defaults, exists);
    component
}

fn add_defaults(component: &mut Component, defaults: &[Group], exists: &dyn Fn(&str) -> bool) {
    for group in defaults {
        // kubeadm sets both signer flags empty in external-CA mode, where ca.key is absent.
        let signer = group
            .iter()
            .any(|(flag, _)| flag.starts_with("cluster-signing"));
        let used = if signer {
            group.iter().all(|(_, file)| exists(file))
        } else {
            group.iter().any(|(_, file)| exists(file))
        };
        if used {
            for (flag, file) in group.iter() {
                component.set(flag, format!("/etc/kubernetes/{file}"));
            }
        }
    }
    match component.name {
        "kube-apiserver" => {
            // kubeadm's defaults: networking.serviceSubnet and the front-proxy client's CN.
            component.set("service-cluster-ip-range", "10.96.0.0/12");
            if component.get("requestheader-client-ca-file").is_some() {
                component.set("requestheader-allowed-names", "front-proxy-client");
            }
        }
        "etcd" => {
            component.set("client-cert-auth", "true");
            component.set("peer-client-cert-auth", "true");
        }
        _ => {}
    }
}

/// Reads `spec.containers[0].command` and `args` of a static Pod manifest.
fn read_manifest_command(path: &Path) -> Option<Vec<String>> {
    let text = fs::read_to_string(path).ok()?;
    let pod: serde_norway::Value = serde_norway::from_str(&text).ok()?;
    let container = pod.get("spec")?.get("containers")?.get(0)?;
    let strings = |key: &str| -> Vec<String> {
        container
            .get(key)
            .and_then(|v| v.as_sequence())
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut command = strings("command");
    command.extend(strings("args"));
    Some(command)
}

/// Returns the etcd member's node name and addresses from kubeadm's etcd server
/// certificate, whose SANs are the node name, localhost and the node's addresses.
fn etcd_member(path: &Option<std::path::PathBuf>) -> (Option<String>, Vec<IpAddr>) {
    let Some(cert) = path
        .as_ref()
        .and_then(|p| fs::read(p).ok())
        .and_then(|bytes| pem::parse(bytes).ok())
        .and_then(|block| CertInfo::parse(block.contents()).ok())
    else {
        return (None, Vec::new());
    };
    let name = cert.sans.iter().find_map(|san| match san {
        San::Dns(dns) if dns != "localhost" => Some(dns.clone()),
        _ => None,
    });
    let ips = cert
        .sans
        .iter()
        .filter_map(|san| match san {
            San::Ip(ip) if !ip.is_loopback() => Some(*ip),
            _ => None,
        })
        .collect();
    (name, ips)
}
