//! Kubeconfigs: reads each one's current context (server URL, CA, client certificate
//! and key, from files or embedded data) into the store and the inventory. `clients`
//! checks them against the apiserver.

use std::path::Path;

use base64::Engine;
use serde::Deserialize;

use super::findings::{self, Finding};
use super::inventory::{CertUse, Inventory, Needs, PairUse, TrustUse};
use super::layout::{Layout, Purpose, Resolved};
use super::store::Store;
use crate::model::Role;

/// The parts of a kubeconfig that `check` reads, as store labels.
#[derive(Debug, Clone)]
pub struct Kubeconfig {
    pub label: String,
    pub purpose: Purpose,
    pub node: Option<String>,
    pub server: Option<String>,
    /// Names of the current context, its cluster and its user.
    pub context_name: String,
    pub cluster_name: String,
    pub user_name: String,
    pub ca: Option<String>,
    pub client_cert: Option<String>,
    pub client_key: Option<String>,
}

#[derive(Debug, Deserialize)]
struct RawConfig {
    #[serde(default)]
    clusters: Vec<NamedCluster>,
    #[serde(default)]
    users: Vec<NamedUser>,
    #[serde(default)]
    contexts: Vec<NamedContext>,
    #[serde(rename = "current-context", default)]
    current_context: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedCluster {
    name: String,
    cluster: RawCluster,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawCluster {
    server: Option<String>,
    certificate_authority: Option<String>,
    certificate_authority_data: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedUser {
    name: String,
    user: RawUser,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct RawUser {
    client_certificate: Option<String>,
    client_certificate_data: Option<String>,
    client_key: Option<String>,
    client_key_data: Option<String>,
}

#[derive(Debug, Deserialize)]
struct NamedContext {
    name: String,
    context: RawContext,
}

#[derive(Debug, Deserialize)]
struct RawContext {
    cluster: String,
    user: String,
}

/// Reads every kubeconfig of the layout into the store and inventory. Returns them,
/// with a finding for each that cannot be read.
pub fn load(
    layout: &Layout,
    store: &mut Store,
    inventory: &mut Inventory,
) -> (Vec<Kubeconfig>, Vec<Finding>) {
    let mut loaded = Vec::new();
    let mut problems = Vec::new();
    for reference in &layout.kubeconfigs {
        let label = &reference.label;
        let invalid = |message: String| {
            Finding::new(
                findings::KUBECONFIG_INVALID,
                Some(label),
                message,
                "rewrite the kubeconfig with one cluster, one user and a current-context that \
                 names them",
            )
        };
        let text = match store.known.read_to_string(&layout.root, Path::new(label)) {
            Ok(text) => text,
            Err(e) => {
                problems.push(invalid(format!("cannot read the kubeconfig: {e}")));
                continue;
            }
        };
        let raw: RawConfig = match serde_norway::from_str(&text) {
            Ok(raw) => raw,
            Err(e) => {
                problems.push(invalid(format!(
                    "the kubeconfig is not valid YAML of a Config: {e}"
                )));
                continue;
            }
        };
        match select(&raw) {
            Ok((context, cluster, user)) => {
                let mut reader = Reader {
                    layout,
                    store,
                    inventory,
                    reference,
                    problems: &mut problems,
                };
                let mut kubeconfig = reader.read(&cluster.cluster, &user.user);
                kubeconfig.context_name = context.name.clone();
                kubeconfig.cluster_name = cluster.name.clone();
                kubeconfig.user_name = user.name.clone();
                loaded.push(kubeconfig);
            }
            Err(message) => problems.push(invalid(message)),
        }
    }
    (loaded, problems)
}

/// Returns the current context, or the only context, with its cluster and user.
fn select(raw: &RawConfig) -> Result<(&NamedContext, &NamedCluster, &NamedUser), String> {
    let context = match &raw.current_context {
        Some(name) if !name.is_empty() => raw
            .contexts
            .iter()
            .find(|c| &c.name == name)
            .ok_or_else(|| format!("current-context `{name}` is not among the contexts"))?,
        _ => match raw.contexts.as_slice() {
            [only] => only,
            [] => return Err("the kubeconfig has no context".into()),
            _ => return Err("the kubeconfig has several contexts and no current-context".into()),
        },
    };
    let cluster = raw
        .clusters
        .iter()
        .find(|c| c.name == context.context.cluster)
        .ok_or_else(|| {
            format!(
                "context `{}` names cluster `{}`, which is not defined",
                context.name, context.context.cluster
            )
        })?;
    let user = raw
        .users
        .iter()
        .find(|u| u.name == context.context.user)
        .ok_or_else(|| {
            format!(
                "context `{}` names user `{}`, which is not defined",
                context.name, context.context.user
            )
        })?;
    Ok((context, cluster, user))
}

struct Reader<'a> {
    layout: &'a Layout,
    store: &'a mut Store,
    inventory: &'a mut Inventory,
    reference: &'a super::layout::KubeconfigRef,
    problems: &'a mut Vec<Finding>,
}

impl Reader<'_> {
    fn read(&mut self, cluster: &RawCluster, user: &RawUser) -> Kubeconfig {
        let label = self.reference.label.clone();
        let ca = self.part(
            &cluster.certificate_authority,
            &cluster.certificate_authority_data,
            "certificate-authority",
            false,
        );
        let client_cert = self.part(
            &user.client_certificate,
            &user.client_certificate_data,
            "client-certificate",
            false,
        );
        let client_key = self.part(&user.client_key, &user.client_key_data, "client-key", true);
        if let Some(ca) = &ca {
            let origin = format!("certificate-authority of {label}");
            self.inventory.trusts.push(TrustUse {
                label: ca.clone(),
                origin,
            });
        }
        if let Some(cert) = &client_cert {
            let origin = format!("client-certificate of {label}");
            self.inventory.uses.push(CertUse {
                label: cert.clone(),
                role: role_of(self.reference.purpose),
                needs: Needs::Client,
                node: self.reference.node.clone(),
                origin: origin.clone(),
            });
            if let Some(key) = &client_key {
                self.inventory.pairs.push(PairUse {
                    cert: cert.clone(),
                    key: key.clone(),
                    origin,
                });
            }
        }
        Kubeconfig {
            label,
            purpose: self.reference.purpose,
            node: self.reference.node.clone(),
            server: cluster.server.clone(),
            context_name: String::new(),
            cluster_name: String::new(),
            user_name: String::new(),
            ca,
            client_cert,
            client_key,
        }
    }

    /// Adds a file reference or embedded data to the store and returns its label.
    fn part(
        &mut self,
        path: &Option<String>,
        data: &Option<String>,
        field: &str,
        key: bool,
    ) -> Option<String> {
        let kubeconfig = &self.reference.label;
        if let Some(data) = data {
            let label = format!("{kubeconfig}: {field}-data");
            let origin = format!("{field}-data of {kubeconfig}");
            let compact: String = data.split_whitespace().collect();
            let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(compact) else {
                self.problems.push(Finding::new(
                    findings::KUBECONFIG_INVALID,
                    Some(kubeconfig),
                    format!("{field}-data is not valid base64"),
                    format!("store the base64 encoding of the PEM file in {field}-data"),
                ));
                return None;
            };
            if key {
                self.store.add_key_bytes(&label, &bytes, Some(&origin));
            } else {
                self.store.add_cert_bytes(&label, &bytes, Some(&origin));
            }
            return Some(label);
        }
        let path = path.as_ref()?;
        let origin = format!("{field} of {kubeconfig}");
        let resolved = if Path::new(path).is_absolute() {
            self.layout.resolve(path, self.reference.node.as_deref())
        } else {
            let base = Path::new(kubeconfig).parent().unwrap_or(Path::new(""));
            Resolved::InTree(base.join(path).to_string_lossy().to_string())
        };
        match resolved {
            Resolved::InTree(label) => {
                if key {
                    self.store.add_key_file(&label, Some(&origin));
                } else {
                    self.store.add_cert_file(&label, Some(&origin));
                }
                Some(label)
            }
            Resolved::Outside(path) => {
                self.problems.push(super::discover::outside(&origin, &path));
                None
            }
        }
    }
}

fn role_of(purpose: Purpose) -> Option<Role> {
    match purpose {
        Purpose::Admin => Some(Role::Admin),
        Purpose::SuperAdmin => Some(Role::SuperAdmin),
        Purpose::ControllerManager => Some(Role::ControllerManager),
        Purpose::Scheduler => Some(Role::Scheduler),
        Purpose::Kubelet => Some(Role::KubeletClient),
        Purpose::Other => None,
    }
}
