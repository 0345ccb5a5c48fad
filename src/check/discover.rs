//! Discovery: recognises the layout of a checked directory and reads a pkic output
//! tree's flag files. kubeadm trees are read in `kubeadm`, map files in `mapfile`.

use std::collections::BTreeSet;
use std::fs;
use std::net::IpAddr;
use std::path::Path;

use super::findings::{self, Finding};
use super::layout::{
    Component, Facts, KubeconfigRef, Layout, LayoutKind, Purpose, Sourced, parse_cidrs,
    parse_flags, url_host,
};

/// The service range kube-apiserver uses without `--service-cluster-ip-range`: its
/// `DefaultServiceIPCIDR` in `pkg/kubeapiserver/options` of kubernetes/kubernetes.
pub const APISERVER_DEFAULT_SERVICE_CIDR: &str = "10.0.0.0/24";

/// Cluster facts given on the command line; each replaces the discovered value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub service_cidr: Option<String>,
    pub dns_domain: Option<String>,
    pub advertise_address: Option<IpAddr>,
}

/// Recognises the layout of `root` and reads it. `map` is the `--map` file, if any.
pub fn discover(root: &Path, map: Option<&Path>, overrides: &Overrides) -> Result<Layout, String> {
    if !root.is_dir() {
        return Err(format!("{} is not a directory", root.display()));
    }
    let mut layout = if let Some(map) = map {
        super::mapfile::read(root, map)?
    } else if root.join("flags/kube-apiserver.flags").is_file()
        || root.join(".pkic-outputs").is_file()
    {
        discover_pkic(root)
    } else if root.join("pki/ca.crt").is_file() {
        super::kubeadm::discover(root, LayoutKind::Kubeadm)
    } else if root.join("ca.crt").is_file() && root.join("apiserver.crt").is_file() {
        super::kubeadm::discover(root, LayoutKind::KubeadmPki)
    } else {
        return Err(format!(
            "{} is neither a kubeadm directory (pki/ca.crt), a kubeadm pki directory (ca.crt and \
             apiserver.crt) nor a pkic output directory (flags/kube-apiserver.flags); describe its \
             layout with --map FILE",
            root.display()
        ));
    };
    apply_overrides(&mut layout.facts, overrides)?;
    Ok(layout)
}

/// Returns a layout with no component and default facts.
pub fn empty_layout(kind: LayoutKind, root: &Path, install_root: &str) -> Layout {
    Layout {
        kind,
        root: root.to_path_buf(),
        install_root: install_root.to_string(),
        facts: Facts {
            service_cidrs: Sourced {
                value: Vec::new(),
                source: String::new(),
            },
            dns_domain: Sourced {
                value: "cluster.local".into(),
                source: "the Kubernetes default, since nothing in the tree sets it".into(),
            },
            advertise_address: None,
            servers: Vec::new(),
            nodes: Vec::new(),
        },
        apiserver: None,
        controller_manager: None,
        scheduler: None,
        kubelets: Vec::new(),
        etcd: Vec::new(),
        kubeconfigs: Vec::new(),
        loose_certs: Vec::new(),
        managed: None,
        notes: Vec::new(),
    }
}

fn discover_pkic(root: &Path) -> Layout {
    let mut layout = empty_layout(LayoutKind::Pkic, root, "/etc/kubernetes");
    layout.apiserver = read_flag_file(root, "flags/kube-apiserver.flags", "kube-apiserver", None);
    layout.controller_manager = read_flag_file(
        root,
        "flags/kube-controller-manager.flags",
        "kube-controller-manager",
        None,
    );
    layout.scheduler = read_flag_file(root, "flags/kube-scheduler.flags", "kube-scheduler", None);
    for node in sorted_dir_names(&root.join("nodes")) {
        let kubelet = format!("nodes/{node}/flags/kubelet.flags");
        layout
            .kubelets
            .extend(read_flag_file(root, &kubelet, "kubelet", Some(&node)));
        let etcd = format!("nodes/{node}/flags/etcd.flags");
        layout
            .etcd
            .extend(read_flag_file(root, &etcd, "etcd", Some(&node)));
    }
    if let Some(install_root) = infer_install_root(&layout) {
        layout.install_root = install_root;
    }
    layout.managed = fs::read_to_string(root.join(".pkic-outputs"))
        .ok()
        .map(|text| text.lines().map(str::to_string).collect::<BTreeSet<_>>());
    add_kubeconfigs_from_flags(&mut layout);
    add_top_level_kubeconfigs(&mut layout);
    facts_from_flags(
        &mut layout,
        APISERVER_DEFAULT_SERVICE_CIDR,
        "kube-apiserver's built-in default",
    );
    layout
}

/// Reads a file of `--flag=value` lines, if it exists.
fn read_flag_file(
    root: &Path,
    relative: &str,
    name: &'static str,
    node: Option<&str>,
) -> Option<Component> {
    let text = fs::read_to_string(root.join(relative)).ok()?;
    let mut component = Component::new(name, node.map(str::to_string), relative);
    parse_flags(&mut component, text.lines());
    Some(component)
}

pub fn sorted_dir_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().is_dir())
                .filter_map(|e| e.file_name().to_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

/// Finds the host directory that the tree stands for: the shortest prefix of an
/// absolute flag path whose remainder exists in the tree.
fn infer_install_root(layout: &Layout) -> Option<String> {
    for component in layout.components() {
        for value in component.flags.values().flatten() {
            if !value.starts_with('/') {
                continue;
            }
            for (index, _) in value.match_indices('/').skip(1) {
                let rest = &value[index + 1..];
                let in_tree = layout.root.join(rest).exists()
                    || component
                        .node
                        .as_ref()
                        .is_some_and(|n| layout.root.join("nodes").join(n).join(rest).exists());
                if in_tree {
                    return Some(value[..index].to_string());
                }
            }
        }
    }
    None
}

/// Adds the kubeconfigs that components name with `--kubeconfig`.
pub fn add_kubeconfigs_from_flags(layout: &mut Layout) {
    let mut found = Vec::new();
    let mut notes = Vec::new();
    for component in layout.components() {
        let Some(value) = component.get("kubeconfig") else {
            continue;
        };
        let purpose = match component.name {
            "kube-controller-manager" => Purpose::ControllerManager,
            "kube-scheduler" => Purpose::Scheduler,
            "kubelet" => Purpose::Kubelet,
            _ => Purpose::Other,
        };
        match layout.resolve(value, component.node.as_deref()) {
            super::layout::Resolved::InTree(label) => found.push(KubeconfigRef {
                label,
                purpose,
                node: component.node.clone(),
            }),
            super::layout::Resolved::Outside(path) => {
                notes.push(outside(&component.origin("kubeconfig"), &path));
            }
        }
    }
    layout.notes.extend(notes);
    for kubeconfig in found {
        if !layout
            .kubeconfigs
            .iter()
            .any(|k| k.label == kubeconfig.label)
        {
            layout.kubeconfigs.push(kubeconfig);
        }
    }
}

/// Adds every `*.conf` file directly under the root, such as `admin.conf`.
pub fn add_top_level_kubeconfigs(layout: &mut Layout) {
    let Ok(entries) = fs::read_dir(&layout.root) else {
        return;
    };
    let mut names: Vec<String> = entries
        .filter_map(Result::ok)
        .filter(|e| e.path().is_file())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .filter(|name| name.ends_with(".conf"))
        .collect();
    names.sort();
    for name in names {
        if layout.kubeconfigs.iter().any(|k| k.label == name) {
            continue;
        }
        layout.kubeconfigs.push(KubeconfigRef {
            purpose: Purpose::from_file_name(Path::new(&name)),
            label: name,
            node: None,
        });
    }
}

/// Returns a note about a path that lies outside the checked directory.
pub fn outside(origin: &str, path: &str) -> Finding {
    Finding::new(
        findings::FILE_OUTSIDE_TREE,
        None,
        format!(
            "{origin} names {path}, which lies outside the checked directory, so it was not checked"
        ),
        "check that file on its host, or copy it into the tree and name it in a --map file",
    )
}

/// Fills the facts from the component flags; `default_cidr` is used, with a warning,
/// when kube-apiserver has no --service-cluster-ip-range.
pub fn facts_from_flags(layout: &mut Layout, default_cidr: &str, default_source: &str) {
    let apiserver = layout.apiserver.clone();
    if let Some(apiserver) = &apiserver {
        service_cidr_from_flags(layout, apiserver, default_cidr, default_source);
        if let Some(ip) = apiserver
            .get("advertise-address")
            .and_then(|a| a.parse().ok())
        {
            layout.facts.advertise_address = Some(Sourced {
                value: ip,
                source: apiserver.origin("advertise-address"),
            });
        }
        let issuer = apiserver.get("service-account-issuer").unwrap_or("");
        let domain = url_host(issuer).and_then(|h| {
            h.strip_prefix("kubernetes.default.svc.")
                .map(str::to_string)
        });
        if let Some(domain) = domain {
            layout.facts.dns_domain = Sourced {
                value: domain,
                source: apiserver.origin("service-account-issuer"),
            };
        }
    }
    for kubelet in layout.kubelets.clone() {
        let name = kubelet
            .get("hostname-override")
            .map(str::to_string)
            .or_else(|| kubelet.node.clone());
        let ips: Vec<IpAddr> = kubelet
            .get("node-ip")
            .unwrap_or("")
            .split(',')
            .filter_map(|ip| ip.trim().parse().ok())
            .collect();
        if let Some(name) = name {
            layout.facts.add_node(&name, &ips, &[]);
        }
        if let Some(domain) = kubelet.get("cluster-domain") {
            layout.facts.dns_domain = Sourced {
                value: domain.to_string(),
                source: kubelet.origin("cluster-domain"),
            };
        }
    }
    for member in layout.etcd.clone() {
        let name = member
            .get("name")
            .map(str::to_string)
            .or(member.node.clone());
        let ips: Vec<IpAddr> = member
            .all("advertise-client-urls")
            .iter()
            .chain(member.all("initial-advertise-peer-urls"))
            .flat_map(|urls| urls.split(','))
            .filter_map(|url| url_host(url)?.parse().ok())
            .collect();
        if let Some(name) = name {
            layout.facts.add_node(&name, &ips, &[]);
        }
    }
}

fn service_cidr_from_flags(
    layout: &mut Layout,
    apiserver: &Component,
    default_cidr: &str,
    default_source: &str,
) {
    let flag = "service-cluster-ip-range";
    if let Some(value) = apiserver.get(flag) {
        match parse_cidrs(value) {
            Ok(cidrs) => {
                layout.facts.service_cidrs = Sourced {
                    value: cidrs,
                    source: apiserver.origin_with_value(flag),
                };
                return;
            }
            Err(message) => layout.notes.push(Finding::new(
                findings::SERVICE_CIDR_UNSET,
                apiserver.file.as_deref(),
                format!("{} is not usable: {message}", apiserver.origin(flag)),
                "write the service range as a CIDR such as 10.96.0.0/12",
            )),
        }
    } else {
        layout.notes.push(Finding::new(
            findings::SERVICE_CIDR_UNSET,
            apiserver.file.as_deref(),
            format!(
                "{} sets no --{flag}, so the kubernetes Service gets the first address of \
                 {default_source} {default_cidr}",
                apiserver.label()
            ),
            format!(
                "set --{flag} to the range the cluster uses, and check the serving certificate's \
                 SANs"
            ),
        ));
    }
    layout.facts.service_cidrs = Sourced {
        value: parse_cidrs(default_cidr).unwrap_or_default(),
        source: format!(
            "{default_source} {default_cidr} ({} sets no --{flag})",
            apiserver.source
        ),
    };
}

fn apply_overrides(facts: &mut Facts, overrides: &Overrides) -> Result<(), String> {
    if let Some(text) = &overrides.service_cidr {
        facts.service_cidrs = Sourced {
            value: parse_cidrs(text).map_err(|e| format!("--service-cidr: {e}"))?,
            source: format!("--service-cidr={text} on the command line"),
        };
    }
    if let Some(domain) = &overrides.dns_domain {
        facts.dns_domain = Sourced {
            value: domain.trim_end_matches('.').to_string(),
            source: "--dns-domain on the command line".into(),
        };
    }
    if let Some(ip) = overrides.advertise_address {
        facts.advertise_address = Some(Sourced {
            value: ip,
            source: "--advertise-address on the command line".into(),
        });
    }
    Ok(())
}
