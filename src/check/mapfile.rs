//! The `--map` file: describes a tree of any layout to `pkic check` as the flags each
//! component runs with, the certificates that no flag names, the kubeconfigs, and the
//! cluster facts. Paths are relative to the checked directory, or absolute host paths
//! under `cluster.install-root`.
//!
//! ```toml
//! [cluster]
//! service-cidr = "10.96.0.0/12"
//! dns-domain = "cluster.local"
//! advertise-address = "192.0.2.10"
//! servers = ["https://192.0.2.10:6443"]
//!
//! [kube-apiserver]
//! tls-cert-file = "apiserver.pem"
//! tls-private-key-file = "apiserver-key.pem"
//! client-ca-file = "ca.pem"
//!
//! [[node]]
//! name = "worker-1"
//! ips = ["192.0.2.21"]
//! kubelet = { tls-cert-file = "kubelet-worker-1.pem", client-ca-file = "ca.pem" }
//!
//! [cert.admin]
//! role = "admin"
//! cert = "admin.pem"
//! key = "admin-key.pem"
//! ```

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;

use serde::Deserialize;

use super::discover::{
    APISERVER_DEFAULT_SERVICE_CIDR, add_kubeconfigs_from_flags, empty_layout, facts_from_flags,
};
use super::layout::{
    Component, KubeconfigRef, Layout, LayoutKind, LooseCert, Purpose, Sourced, parse_cidrs,
};
use crate::model::Role;

type Flags = BTreeMap<String, toml::Value>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawMap {
    #[serde(default)]
    cluster: RawCluster,
    kube_apiserver: Option<Flags>,
    kube_controller_manager: Option<Flags>,
    kube_scheduler: Option<Flags>,
    #[serde(default)]
    node: Vec<RawNode>,
    #[serde(default)]
    cert: BTreeMap<String, RawCert>,
    #[serde(default)]
    kubeconfig: BTreeMap<String, RawKubeconfig>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCluster {
    service_cidr: Option<String>,
    dns_domain: Option<String>,
    advertise_address: Option<IpAddr>,
    #[serde(default)]
    servers: Vec<String>,
    install_root: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawNode {
    name: String,
    #[serde(default)]
    ips: Vec<IpAddr>,
    #[serde(default)]
    dns: Vec<String>,
    kubelet: Option<Flags>,
    etcd: Option<Flags>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawCert {
    role: Option<String>,
    node: Option<String>,
    cert: String,
    key: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
struct RawKubeconfig {
    file: String,
    purpose: Option<String>,
    node: Option<String>,
}

/// Reads a map file and returns the layout it describes.
pub fn read(root: &Path, path: &Path) -> Result<Layout, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read map file {}: {e}", path.display()))?;
    let raw: RawMap =
        toml::from_str(&text).map_err(|e| format!("invalid map file {}: {e}", path.display()))?;
    let source = path.display().to_string();

    let install_root = raw
        .cluster
        .install_root
        .clone()
        .unwrap_or_else(|| "/etc/kubernetes".into());
    let mut layout = empty_layout(LayoutKind::Map, root, &install_root);
    let component = |name: &'static str, node: Option<&str>, flags: &Option<Flags>| {
        flags
            .as_ref()
            .map(|flags| to_component(name, node, &source, flags))
            .transpose()
    };

    layout.apiserver = component("kube-apiserver", None, &raw.kube_apiserver)?;
    layout.controller_manager = component(
        "kube-controller-manager",
        None,
        &raw.kube_controller_manager,
    )?;
    layout.scheduler = component("kube-scheduler", None, &raw.kube_scheduler)?;

    for node in &raw.node {
        layout.facts.add_node(&node.name, &node.ips, &node.dns);
        layout
            .kubelets
            .extend(component("kubelet", Some(&node.name), &node.kubelet)?);
        layout
            .etcd
            .extend(component("etcd", Some(&node.name), &node.etcd)?);
    }
    for (name, cert) in &raw.cert {
        layout.loose_certs.push(loose_cert(name, cert, &source)?);
    }
    for (name, kubeconfig) in &raw.kubeconfig {
        layout
            .kubeconfigs
            .push(kubeconfig_ref(name, kubeconfig, &source)?);
    }

    add_kubeconfigs_from_flags(&mut layout);
    facts_from_flags(
        &mut layout,
        APISERVER_DEFAULT_SERVICE_CIDR,
        "kube-apiserver's built-in default",
    );
    apply_cluster(&mut layout, &raw.cluster, &source)?;
    Ok(layout)
}

fn kubeconfig_ref(name: &str, raw: &RawKubeconfig, source: &str) -> Result<KubeconfigRef, String> {
    let purpose = match &raw.purpose {
        Some(text) => Purpose::parse(text).ok_or_else(|| {
            format!(
                "{source}: kubeconfig.{name}.purpose: unknown purpose `{text}`; valid values: \
                 admin, super-admin, controller-manager, scheduler, kubelet, other"
            )
        })?,
        None => Purpose::from_file_name(Path::new(&raw.file)),
    };
    Ok(KubeconfigRef {
        label: raw.file.trim_start_matches("./").to_string(),
        purpose,
        node: raw.node.clone(),
    })
}

fn to_component(
    name: &'static str,
    node: Option<&str>,
    source: &str,
    flags: &Flags,
) -> Result<Component, String> {
    let mut component = Component::new(name, node.map(str::to_string), source);
    for (flag, value) in flags {
        let values = match value {
            toml::Value::String(s) => vec![s.clone()],
            toml::Value::Boolean(b) => vec![b.to_string()],
            toml::Value::Integer(i) => vec![i.to_string()],
            toml::Value::Array(items) => items
                .iter()
                .map(|i| i.as_str().map(str::to_string))
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    format!("{source}: {name}.{flag}: a list of flag values must hold strings")
                })?,
            _ => {
                return Err(format!(
                    "{source}: {name}.{flag}: write the flag value as a string"
                ));
            }
        };
        for value in values {
            component.set(flag.trim_start_matches("--"), value);
        }
    }
    Ok(component)
}

fn loose_cert(name: &str, raw: &RawCert, source: &str) -> Result<LooseCert, String> {
    let role = match &raw.role {
        Some(text) => Some(Role::parse(text).ok_or_else(|| {
            format!(
                "{source}: cert.{name}.role: unknown role `{text}`; valid values: {}",
                Role::NAMES.join(", ")
            )
        })?),
        None => None,
    };
    Ok(LooseCert {
        name: name.to_string(),
        role,
        node: raw.node.clone(),
        cert: raw.cert.clone(),
        key: raw.key.clone(),
    })
}

fn apply_cluster(layout: &mut Layout, cluster: &RawCluster, source: &str) -> Result<(), String> {
    if let Some(text) = &cluster.service_cidr {
        layout.facts.service_cidrs = Sourced {
            value: parse_cidrs(text).map_err(|e| format!("{source}: cluster.service-cidr: {e}"))?,
            source: format!("cluster.service-cidr = \"{text}\" in {source}"),
        };
        layout
            .notes
            .retain(|n| n.id != super::findings::SERVICE_CIDR_UNSET.id);
    }
    if let Some(domain) = &cluster.dns_domain {
        layout.facts.dns_domain = Sourced {
            value: domain.clone(),
            source: format!("cluster.dns-domain in {source}"),
        };
    }
    if let Some(ip) = cluster.advertise_address {
        layout.facts.advertise_address = Some(Sourced {
            value: ip,
            source: format!("cluster.advertise-address in {source}"),
        });
    }
    layout.facts.servers.extend(cluster.servers.iter().cloned());
    Ok(())
}
