//! Rollout stage: what a build would change and what an operator must do about it,
//! computed without writing anything. `pkic plan` prints it.
//!
//! For each key and certificate it gives the action (create, reissue, renew, keep)
//! and the reason; for each changed file, the host and install path to copy it to;
//! then the components to restart on which hosts, and the follow-up steps that a new
//! CA or service-account key requires.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Component as PathComponent, Path};

use serde::Serialize;

use crate::csr;
use crate::emit::{self, OutFile};
use crate::graph::Graph;
use crate::model::{Component, Model};
use crate::state::{Action, Plan};

/// The rollout of one build.
#[derive(Debug, Serialize)]
pub struct Rollout {
    pub objects: Vec<ObjectChange>,
    pub files: Vec<FileChange>,
    pub restarts: Vec<Restart>,
    pub steps: Vec<String>,
}

#[derive(Debug, Serialize)]
pub struct ObjectChange {
    pub object: String,
    pub action: Action,
    pub reasons: Vec<String>,
    /// CSR to sign, relative to the output directory, for a certificate that a CA
    /// without a key in pkic signs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub csr: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct FileChange {
    pub file: String,
    pub host: String,
    pub install: String,
    pub change: &'static str,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Restart {
    pub component: String,
    pub host: String,
}

impl Rollout {
    /// True when the build would change nothing.
    pub fn is_empty(&self) -> bool {
        self.files.is_empty() && self.objects.iter().all(|o| o.action == Action::Keep)
    }
}

/// Computes the rollout of writing `files` (a compiled build) under `out`.
pub fn rollout(model: &Model, plan: &Plan, out: &Path, files: &[OutFile]) -> Rollout {
    let installs = model.install_paths();
    let changed: Vec<&OutFile> = emit::changed_files(out, files);
    let objects = object_changes(model, plan);
    let mut file_changes = file_changes(model, out, &changed, &installs);
    file_changes.extend(keys_of_reissued(model, plan, out, &changed, &installs));
    file_changes.extend(accepted_files(model, plan, &changed, &installs));
    file_changes.extend(shared_files_for_new_nodes(model, out, &changed, &installs));
    for stale in emit::stale_files(out, files) {
        let install = install_path_of_stale(model, &stale);
        file_changes.push(FileChange {
            host: host_of(model, &stale),
            file: stale.display().to_string(),
            install,
            change: "remove",
        });
    }
    let restarts = restarts(model, &changed, out, files);
    let steps = follow_up_steps(model, plan, out);
    Rollout {
        objects,
        files: file_changes,
        restarts,
        steps,
    }
}

/// Computes the rollout of a build that waits for signed certificates. Such a build
/// writes only `files` (keys and CSRs), so nothing is copied to hosts or restarted yet,
/// and `steps` list what to sign.
pub fn awaiting_signature(
    model: &Model,
    plan: &Plan,
    out: &Path,
    files: &[OutFile],
    steps: Vec<String>,
) -> Rollout {
    let installs = model.install_paths();
    let changed: Vec<&OutFile> = emit::changed_files(out, files);
    let file_changes = file_changes(model, out, &changed, &installs)
        .into_iter()
        .map(|mut change| {
            if change.install == "-" {
                change.host = "none (send it to the CA's signer)".into();
            }
            change
        })
        .collect();
    Rollout {
        objects: object_changes(model, plan),
        files: file_changes,
        restarts: Vec::new(),
        steps,
    }
}

fn object_changes(model: &Model, plan: &Plan) -> Vec<ObjectChange> {
    plan.decisions
        .iter()
        .map(|(key, decision)| ObjectChange {
            object: key.clone(),
            action: decision.action,
            reasons: decision.reasons.clone(),
            csr: csr::request_file_of(model, key).map(|p| p.display().to_string()),
        })
        .collect()
}

/// Returns where each changed file goes: its host and install path.
fn file_changes(
    model: &Model,
    out: &Path,
    changed: &[&OutFile],
    installs: &BTreeMap<String, String>,
) -> Vec<FileChange> {
    changed
        .iter()
        .map(|file| {
            let relative = file.relative.display().to_string();
            FileChange {
                host: host_of(model, &file.relative),
                install: installs
                    .get(&relative)
                    .cloned()
                    .unwrap_or_else(|| "-".into()),
                change: if out.join(&file.relative).exists() {
                    "update"
                } else {
                    "create"
                },
                file: relative,
            }
        })
        .collect()
}

/// Returns the certificate and key files of certificates signed outside pkic and
/// accepted by this build: the operator placed them in the output directory, so they
/// may be unchanged there, but no host has them yet.
fn accepted_files(
    model: &Model,
    plan: &Plan,
    changed: &[&OutFile],
    installs: &BTreeMap<String, String>,
) -> Vec<FileChange> {
    let mut files = Vec::new();
    for (key, decision) in &plan.decisions {
        if decision.action != Action::Accept {
            continue;
        }
        let pair = match key.split_once(':') {
            Some(("cert", id)) => model.cert(id).map(|c| [&c.key_file, &c.cert_file]),
            Some(("ca", id)) => model.ca(id).map(|c| [&c.key_file, &c.cert_file]),
            _ => None,
        };
        for file in pair.into_iter().flatten() {
            if changed.iter().any(|f| f.relative == file.relative) {
                continue;
            }
            let relative = file.relative.display().to_string();
            files.push(FileChange {
                host: host_of(model, &file.relative),
                install: installs
                    .get(&relative)
                    .cloned()
                    .unwrap_or_else(|| "-".into()),
                change: "create",
                file: relative,
            });
        }
    }
    files
}

/// Returns the key files of reissued certificates whose key did not change in the output:
/// a host may still hold another key, as when the output's key was replaced by hand.
fn keys_of_reissued(
    model: &Model,
    plan: &Plan,
    out: &Path,
    changed: &[&OutFile],
    installs: &BTreeMap<String, String>,
) -> Vec<FileChange> {
    model
        .certs
        .iter()
        .filter(|cert| {
            plan.get(&format!("cert:{}", cert.id))
                .is_some_and(|d| d.action == Action::Reissue)
        })
        .filter(|cert| !changed.iter().any(|f| f.relative == cert.key_file.relative))
        .filter(|cert| out.join(&cert.key_file.relative).exists())
        .map(|cert| {
            let relative = cert.key_file.relative.display().to_string();
            FileChange {
                host: host_of(model, &cert.key_file.relative),
                install: installs
                    .get(&relative)
                    .cloned()
                    .unwrap_or_else(|| "-".into()),
                change: "update",
                file: relative,
            }
        })
        .collect()
}

/// Returns the shared files (such as a CA certificate) that a new node's kubeconfigs and
/// flag files point at, which the node needs beside its own files.
fn shared_files_for_new_nodes(
    model: &Model,
    out: &Path,
    changed: &[&OutFile],
    installs: &BTreeMap<String, String>,
) -> Vec<FileChange> {
    let mut needed: BTreeSet<(String, String)> = BTreeSet::new();
    for file in changed {
        let host = host_of(model, &file.relative);
        let is_new_node_file =
            file.relative.starts_with("nodes") && !out.join(&file.relative).exists();
        if !is_new_node_file {
            continue;
        }
        let text = String::from_utf8_lossy(&file.contents);
        for (relative, install) in installs {
            if !relative.starts_with("nodes/") && text.contains(install.as_str()) {
                needed.insert((host.clone(), relative.clone()));
            }
        }
    }
    needed
        .into_iter()
        .map(|(host, relative)| FileChange {
            install: installs[&relative].clone(),
            file: relative,
            host,
            change: "create",
        })
        .collect()
}

/// Returns where a file that the manifest no longer makes was installed: under the
/// install root, without the `nodes/<node>/` prefix.
fn install_path_of_stale(model: &Model, relative: &Path) -> String {
    let mut parts = relative.components();
    let stripped = match (parts.next(), parts.next()) {
        (Some(PathComponent::Normal(first)), Some(_)) if first == "nodes" => parts.as_path(),
        _ => relative,
    };
    format!(
        "{}/{}",
        model.cluster.install_root.trim_end_matches('/'),
        stripped.display()
    )
}

/// Returns the host a file belongs on: its node for `nodes/<node>/...`, the
/// control-plane hosts for the rest, and the cluster (through kubectl) for manifests.
fn host_of(model: &Model, relative: &Path) -> String {
    let mut parts = relative.components();
    if let (Some(PathComponent::Normal(first)), Some(PathComponent::Normal(node))) =
        (parts.next(), parts.next())
        && first == "nodes"
    {
        return node.to_string_lossy().into_owned();
    }
    if model.bindings.iter().any(|b| b.file.relative == relative) {
        return "cluster (kubectl apply -f)".into();
    }
    if let Some(ca) = model.cas.iter().find(|ca| ca.key_file.relative == relative) {
        let install = &ca.key_file.install;
        let used = model
            .flag_files
            .iter()
            .any(|f| f.context.to_string().contains(install.as_str()));
        if !used {
            return "offline (no component reads this CA key; keep it off the hosts)".into();
        }
    }
    let control_plane: Vec<&str> = model
        .nodes
        .iter()
        .filter(|n| n.roles.iter().any(|r| r == "control-plane"))
        .map(|n| n.name.as_str())
        .collect();
    if control_plane.is_empty() {
        "control-plane hosts".into()
    } else {
        control_plane.join(",")
    }
}

/// Returns the components to restart: those whose flag file changed, or points at a
/// changed file (directly or through a kubeconfig that changed).
fn restarts(model: &Model, changed: &[&OutFile], out: &Path, files: &[OutFile]) -> Vec<Restart> {
    let installs = model.install_paths();
    let changed_installs: BTreeSet<&str> = changed
        .iter()
        .filter_map(|f| {
            installs
                .get(&f.relative.display().to_string())
                .map(String::as_str)
        })
        .collect();
    let by_path: HashMap<&Path, &OutFile> =
        files.iter().map(|f| (f.relative.as_path(), f)).collect();
    let mut restarts = BTreeSet::new();
    for flags in &model.flag_files {
        let Some(text) = by_path.get(flags.file.relative.as_path()) else {
            continue;
        };
        let text = String::from_utf8_lossy(&text.contents);
        let self_changed = changed.iter().any(|f| f.relative == flags.file.relative);
        let points_at_change = changed_installs.iter().any(|path| text.contains(path));
        if self_changed || points_at_change {
            let host = host_of(model, &flags.file.relative);
            restarts.insert(Restart {
                component: flags.component.name().to_string(),
                host,
            });
        }
    }
    let _ = out;
    restarts.into_iter().collect()
}

fn follow_up_steps(model: &Model, plan: &Plan, out: &Path) -> Vec<String> {
    let mut steps = Vec::new();
    let existing_tree = out.exists();
    let graph = Graph::from_model(model);
    for (key, decision) in &plan.decisions {
        if !existing_tree || decision.action != Action::Create {
            continue;
        }
        if let Some(id) = key.strip_prefix("ca:") {
            let mut trusting: Vec<String> = graph
                .dependents(key)
                .into_iter()
                .filter(|k| {
                    k.starts_with("bundle:")
                        || k.starts_with("kubeconfig:")
                        || k.starts_with("flags:")
                })
                .map(str::to_string)
                .collect();
            trusting.sort();
            steps.push(format!(
                "CA `{id}` is new: redistribute everything that trusts it ({}) and every \
                 certificate it signs before any component uses them",
                trusting.join(", ")
            ));
        }
        if let Some(id) = key.strip_prefix("service-account:") {
            steps.push(format!(
                "service-account key `{id}` is new: tokens signed by the previous key stop \
                 verifying. Restart kube-apiserver, then kube-controller-manager; delete \
                 legacy token secrets (type kubernetes.io/service-account-token) so they are \
                 recreated; restart pods that mount tokens, kube-system first"
            ));
        }
    }
    if model
        .flag_files
        .iter()
        .any(|f| f.component == Component::KubeApiserver)
        && !steps.is_empty()
    {
        steps.push("verify with `kubectl get --raw /readyz` and a pod's token request".into());
    }
    steps
}

/// Formats a rollout for a terminal.
pub fn format_human(rollout: &Rollout) -> String {
    use std::fmt::Write as _;
    let mut text = String::new();
    let _ = writeln!(text, "Keys and certificates:");
    for object in &rollout.objects {
        let reasons = if object.reasons.is_empty() {
            String::new()
        } else {
            format!(": {}", object.reasons.join("; "))
        };
        let csr = match (&object.csr, object.action) {
            (Some(path), Action::AwaitSignature) => format!(" (CSR {path})"),
            _ => String::new(),
        };
        let _ = writeln!(
            text,
            "  {:<8} {}{reasons}{csr}",
            object.action.to_string(),
            object.object
        );
    }
    if rollout.files.is_empty() && rollout.steps.is_empty() {
        let _ = writeln!(text, "\nNo file would change.");
        return text;
    }
    let _ = writeln!(text, "\nRunbook:");
    let mut step = 1;
    for file in &rollout.files {
        let _ = match file.change {
            "remove" => writeln!(
                text,
                "  {step}. remove {}:{} (no longer declared; kept in the output's .backup/)",
                file.host, file.install
            ),
            change => writeln!(
                text,
                "  {step}. copy{} {} -> {}:{}",
                if change == "create" { " (new)" } else { "" },
                file.file,
                file.host,
                file.install
            ),
        };
        step += 1;
    }
    for restart in &rollout.restarts {
        let _ = writeln!(
            text,
            "  {step}. restart {} on {}",
            restart.component, restart.host
        );
        step += 1;
    }
    for note in &rollout.steps {
        let _ = writeln!(text, "  {step}. {note}");
        step += 1;
    }
    text
}
