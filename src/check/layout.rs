//! The layout of a checked tree: which component reads which file through which flag,
//! which kubeconfigs exist, and the cluster facts that the rules need. The kubeadm,
//! pkic and map-file discoveries all produce this one type, so every rule runs the
//! same way on each.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;
use serde::Serialize;

/// The kind of a checked tree.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum LayoutKind {
    /// `/etc/kubernetes` of a kubeadm control-plane node.
    Kubeadm,
    /// `/etc/kubernetes/pki` of a kubeadm node, without kubeconfigs.
    KubeadmPki,
    /// An output directory of `pkic build`.
    Pkic,
    /// Any tree, described by a `--map` file.
    Map,
}

impl LayoutKind {
    pub fn describe(self) -> &'static str {
        match self {
            LayoutKind::Kubeadm => "kubeadm directory",
            LayoutKind::KubeadmPki => "kubeadm pki directory",
            LayoutKind::Pkic => "pkic output directory",
            LayoutKind::Map => "tree described by a map file",
        }
    }
}

/// The flags one component runs with, as flag name (without `--`) to values.
#[derive(Debug, Clone)]
pub struct Component {
    pub name: &'static str,
    pub node: Option<String>,
    /// The file or default the flags come from, such as `flags/kube-apiserver.flags`.
    pub source: String,
    /// The source when it is a file, for the findings about the flags.
    pub file: Option<String>,
    pub flags: BTreeMap<String, Vec<String>>,
}

impl Component {
    /// Creates a component whose flags come from the file `source`.
    pub fn new(name: &'static str, node: Option<String>, source: impl Into<String>) -> Self {
        let source = source.into();
        Component {
            name,
            node,
            file: Some(source.clone()),
            source,
            flags: BTreeMap::new(),
        }
    }

    /// Creates a component whose flags are defaults, described by `source`.
    pub fn with_defaults(name: &'static str, node: Option<String>, source: &str) -> Self {
        Component {
            file: None,
            ..Component::new(name, node, source)
        }
    }

    /// Returns the last value of a flag, as a component reads a repeated flag.
    pub fn get(&self, flag: &str) -> Option<&str> {
        self.flags
            .get(flag)
            .and_then(|v| v.last())
            .map(String::as_str)
    }

    /// Returns every value of a repeatable flag such as `--service-account-key-file`.
    pub fn all(&self, flag: &str) -> &[String] {
        self.flags.get(flag).map_or(&[], Vec::as_slice)
    }

    pub fn is_true(&self, flag: &str) -> bool {
        self.get(flag).is_some_and(|v| v == "true")
    }

    pub fn set(&mut self, flag: &str, value: impl Into<String>) {
        self.flags
            .entry(flag.to_string())
            .or_default()
            .push(value.into());
    }

    /// Returns the component and its node, such as `kubelet on worker-1`.
    pub fn label(&self) -> String {
        match &self.node {
            Some(node) => format!("{} on {node}", self.name),
            None => self.name.to_string(),
        }
    }

    /// Describes where a flag is set, for messages: `--tls-cert-file of kube-apiserver (source)`.
    pub fn origin(&self, flag: &str) -> String {
        format!("--{flag} of {} ({})", self.label(), self.source)
    }

    /// Like [`Component::origin`], with the flag's value: `--flag=value of ...`.
    pub fn origin_with_value(&self, flag: &str) -> String {
        let value = self.get(flag).unwrap_or("");
        format!("--{flag}={value} of {} ({})", self.label(), self.source)
    }
}

/// Parses command-line flags (`--name=value`, or a bare `--name` meaning true).
pub fn parse_flags<'a>(component: &mut Component, args: impl IntoIterator<Item = &'a str>) {
    for arg in args {
        let Some(flag) = arg.trim().strip_prefix("--") else {
            continue;
        };
        match flag.split_once('=') {
            Some((name, value)) => component.set(name, value),
            None => component.set(flag, "true"),
        }
    }
}

/// What a kubeconfig is for, which decides the identity rules of its client cert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Purpose {
    Admin,
    SuperAdmin,
    ControllerManager,
    Scheduler,
    Kubelet,
    Other,
}

impl Purpose {
    /// Guesses the purpose from a kubeadm-style file name such as `admin.conf`.
    pub fn from_file_name(path: &Path) -> Purpose {
        match path.file_stem().and_then(|s| s.to_str()) {
            Some("admin") => Purpose::Admin,
            Some("super-admin") => Purpose::SuperAdmin,
            Some("controller-manager") => Purpose::ControllerManager,
            Some("scheduler") => Purpose::Scheduler,
            Some("kubelet") => Purpose::Kubelet,
            _ => Purpose::Other,
        }
    }

    pub fn parse(text: &str) -> Option<Purpose> {
        match text {
            "admin" => Some(Purpose::Admin),
            "super-admin" => Some(Purpose::SuperAdmin),
            "controller-manager" => Some(Purpose::ControllerManager),
            "scheduler" => Some(Purpose::Scheduler),
            "kubelet" => Some(Purpose::Kubelet),
            "other" => Some(Purpose::Other),
            _ => None,
        }
    }
}

/// A kubeconfig of the tree.
#[derive(Debug, Clone)]
pub struct KubeconfigRef {
    /// Path relative to the checked directory.
    pub label: String,
    pub purpose: Purpose,
    pub node: Option<String>,
}

/// A certificate named by the map file outside any flag, such as an admin's.
#[derive(Debug, Clone)]
pub struct LooseCert {
    pub name: String,
    pub role: Option<crate::model::Role>,
    pub node: Option<String>,
    pub cert: String,
    pub key: Option<String>,
}

/// A node and its addresses.
#[derive(Debug, Clone, Default, Serialize)]
pub struct NodeFacts {
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub dns: Vec<String>,
}

/// A value and the place it came from, for messages.
#[derive(Debug, Clone, Serialize)]
pub struct Sourced<T> {
    pub value: T,
    pub source: String,
}

/// Cluster facts that rules compare certificates with.
#[derive(Debug, Clone, Serialize)]
pub struct Facts {
    pub service_cidrs: Sourced<Vec<IpNet>>,
    pub dns_domain: Sourced<String>,
    pub advertise_address: Option<Sourced<IpAddr>>,
    /// API server URLs that clients dial.
    pub servers: Vec<String>,
    pub nodes: Vec<NodeFacts>,
}

impl Facts {
    pub fn node(&self, name: &str) -> Option<&NodeFacts> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// Adds a node's name and addresses, merging with what is already known.
    pub fn add_node(&mut self, name: &str, ips: &[IpAddr], dns: &[String]) {
        let index = match self.nodes.iter().position(|n| n.name == name) {
            Some(index) => index,
            None => {
                self.nodes.push(NodeFacts {
                    name: name.to_string(),
                    ..NodeFacts::default()
                });
                self.nodes.len() - 1
            }
        };
        let node = &mut self.nodes[index];
        for ip in ips {
            if !node.ips.contains(ip) {
                node.ips.push(*ip);
            }
        }
        for name in dns {
            if !node.dns.contains(name) {
                node.dns.push(name.clone());
            }
        }
    }
}

/// A path from a flag or kubeconfig, mapped into the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolved {
    /// Path relative to the checked directory (the file may be missing).
    InTree(String),
    /// A host path that does not map into the checked directory.
    Outside(String),
}

/// The whole layout of a checked tree.
#[derive(Debug, Clone)]
pub struct Layout {
    pub kind: LayoutKind,
    pub root: PathBuf,
    /// Host directory that the checked directory stands for, such as `/etc/kubernetes`.
    pub install_root: String,
    pub facts: Facts,
    pub apiserver: Option<Component>,
    pub controller_manager: Option<Component>,
    pub scheduler: Option<Component>,
    pub kubelets: Vec<Component>,
    pub etcd: Vec<Component>,
    pub kubeconfigs: Vec<KubeconfigRef>,
    pub loose_certs: Vec<LooseCert>,
    /// Files that `pkic build` wrote, from its `.pkic-outputs` list.
    pub managed: Option<BTreeSet<String>>,
    /// Findings of the discovery itself, such as a flag file it could not read.
    pub notes: Vec<super::findings::Finding>,
}

impl Layout {
    /// Maps a path from a flag of a component on `node` into the tree. A relative path
    /// is relative to the checked directory; an absolute one must lie under the install
    /// root. A pkic tree keeps per-node files under `nodes/<node>/`, tried first.
    pub fn resolve(&self, value: &str, node: Option<&str>) -> Resolved {
        let relative = if Path::new(value).is_absolute() {
            let root = self.install_root.trim_end_matches('/');
            match value.strip_prefix(root).and_then(|r| r.strip_prefix('/')) {
                Some(rest) => rest.to_string(),
                None => return Resolved::Outside(value.to_string()),
            }
        } else {
            value.trim_start_matches("./").to_string()
        };
        if let Some(node) = node {
            let scoped = format!("nodes/{node}/{relative}");
            if self.root.join(&scoped).exists() {
                return Resolved::InTree(scoped);
            }
        }
        Resolved::InTree(relative)
    }

    /// Returns the components that read flags, in a fixed order.
    pub fn components(&self) -> Vec<&Component> {
        let mut all: Vec<&Component> = Vec::new();
        all.extend(&self.apiserver);
        all.extend(&self.controller_manager);
        all.extend(&self.scheduler);
        all.extend(&self.kubelets);
        all.extend(&self.etcd);
        all
    }

    pub fn is_managed(&self, label: &str) -> Option<bool> {
        self.managed.as_ref().map(|m| m.contains(label))
    }
}

/// Returns the host of an `https://host:port/...` URL.
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split('/').next()?;
    let host = match authority.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next()?,
        None => authority.rsplit_once(':').map_or(authority, |(h, _)| h),
    };
    (!host.is_empty()).then(|| host.to_string())
}

/// Parses a comma-separated list of CIDRs, as `--service-cluster-ip-range` takes it.
pub fn parse_cidrs(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .map(|part| {
            part.parse::<IpNet>()
                .map_err(|_| format!("invalid CIDR `{part}`"))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_host_forms() {
        assert_eq!(
            url_host("https://192.0.2.10:6443").as_deref(),
            Some("192.0.2.10")
        );
        assert_eq!(
            url_host("https://[2001:db8::1]:6443/x").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(
            url_host("https://api.example.test").as_deref(),
            Some("api.example.test")
        );
        assert_eq!(url_host("https://:6443"), None);
    }

    #[test]
    fn flags_parse_values_and_switches() {
        let mut component = Component::new("etcd", None, "etcd.flags");
        parse_flags(
            &mut component,
            ["--name=a", "--client-cert-auth", "ignored", "--x=1=2"],
        );
        assert_eq!(component.get("name"), Some("a"));
        assert!(component.is_true("client-cert-auth"));
        assert_eq!(component.get("x"), Some("1=2"));
        assert_eq!(component.get("ignored"), None);
    }

    #[test]
    fn resolve_maps_install_root() {
        let mut layout = crate::check::discover::empty_layout(
            LayoutKind::Map,
            Path::new("/nonexistent-tree"),
            "/etc/kubernetes",
        );
        layout.install_root = "/etc/kubernetes/".into();
        assert_eq!(
            layout.resolve("/etc/kubernetes/pki/ca.crt", None),
            Resolved::InTree("pki/ca.crt".into())
        );
        assert_eq!(
            layout.resolve("/var/lib/kubelet/pki/kubelet.crt", Some("n1")),
            Resolved::Outside("/var/lib/kubelet/pki/kubelet.crt".into())
        );
        assert_eq!(
            layout.resolve("./ca.pem", None),
            Resolved::InTree("ca.pem".into())
        );
    }
}
