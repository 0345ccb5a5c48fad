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
use crate::model::rotation::Stage;
use crate::model::{Component, Model};
use crate::state::{Action, Plan, RotationPlan};

/// The rollout of one build.
#[derive(Debug, Serialize)]
pub struct Rollout {
    pub objects: Vec<ObjectChange>,
    pub rotations: Vec<RotationStatus>,
    pub files: Vec<FileChange>,
    pub restarts: Vec<Restart>,
    pub steps: Vec<String>,
}

/// Stage of a declared rotation, and the next step.
#[derive(Debug, Serialize)]
pub struct RotationStatus {
    pub object: String,
    pub stage: Stage,
    /// Effect of a build of this stage.
    pub build: String,
    /// Next step of the operator.
    pub next: String,
    /// During `use-new`, the earliest time for `drop-old` (RFC 3339).
    pub drop_after: Option<String>,
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

impl FileChange {
    /// Makes the change of the output file `relative` on `host`, at its install path.
    fn new(
        host: String,
        relative: &Path,
        installs: &BTreeMap<String, String>,
        change: &'static str,
    ) -> FileChange {
        let file = relative.display().to_string();
        FileChange {
            host,
            install: installs.get(&file).cloned().unwrap_or_else(|| "-".into()),
            file,
            change,
        }
    }
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
    let changed: Vec<&OutFile> = emit::changed_files(out, files, &plan.seen);
    let mut objects = object_changes(model, plan);
    for (key, rotation) in &plan.rotations {
        if let Some(staged) = &rotation.staged {
            objects.push(ObjectChange {
                object: format!("{key} (staged)"),
                action: staged.action,
                reasons: staged.reasons.clone(),
                csr: None,
            });
        }
    }
    let staged = staged_files(model);
    let readers = node_readers(&installs, node_files_built(files));
    let unstaged: Vec<&OutFile> = changed
        .iter()
        .copied()
        .filter(|file| !staged.contains(file.relative.as_path()))
        .collect();
    let mut file_changes = file_changes(model, out, &unstaged, &installs, &readers);
    file_changes.extend(keys_of_reissued(model, plan, out, &changed, &installs));
    file_changes.extend(accepted_files(model, plan, &changed, &installs));
    file_changes.extend(shared_files_for_new_nodes(model, out, &changed, &installs));
    let stale: Vec<_> = emit::stale_files(out, files, &model.rotation_paths())
        .into_iter()
        .filter(|f| !staged.contains(f.as_path()))
        .collect();
    let old_readers = match stale.iter().any(|f| !f.starts_with("nodes")) {
        true => node_readers(&installs, node_files_on_disk(out, files)),
        false => BTreeMap::new(),
    };
    for stale in stale {
        let install = install_path_of_stale(model, &stale);
        file_changes.push(FileChange {
            host: hosts_of(model, &installs, &stale, &old_readers),
            file: stale.display().to_string(),
            install,
            change: "remove",
        });
    }
    let restarts = restarts(model, &changed, out, files);
    let mut steps = follow_up_steps(model, plan, out);
    steps.extend(rotation_steps(model, plan, &changed));
    let rotations = plan
        .rotations
        .iter()
        .map(|(key, rotation)| rotation_status(key, rotation))
        .collect();
    Rollout {
        objects,
        rotations,
        files: file_changes,
        restarts,
        steps,
    }
}

/// Returns the staged keys and CA certificates of rotations. They stay in the output
/// until `use-new` moves them into place, because no component reads them before.
fn staged_files(model: &Model) -> BTreeSet<&Path> {
    let mut files = BTreeSet::new();
    for ca in &model.cas {
        files.insert(ca.rotation_files.staged_key.relative.as_path());
        files.extend(
            ca.rotation_files
                .staged_cert
                .iter()
                .map(|f| f.relative.as_path()),
        );
    }
    for account in &model.service_accounts {
        files.insert(account.rotation_files.staged_key.relative.as_path());
    }
    files
}

/// Returns, by install path, the nodes whose own kubeconfigs and flag files name it.
/// `files` gives each file's path under the output directory and its text.
fn node_readers<'f>(
    installs: &BTreeMap<String, String>,
    files: impl Iterator<Item = (&'f Path, String)>,
) -> BTreeMap<String, BTreeSet<String>> {
    let shared: Vec<&String> = installs
        .iter()
        .filter(|(relative, _)| !relative.starts_with("nodes/"))
        .map(|(_, install)| install)
        .collect();
    let mut readers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (relative, text) in files {
        let mut parts = relative.components();
        let (Some(PathComponent::Normal(first)), Some(PathComponent::Normal(node))) =
            (parts.next(), parts.next())
        else {
            continue;
        };
        if first != "nodes" {
            continue;
        }
        for install in &shared {
            if text.contains(install.as_str()) {
                readers
                    .entry((*install).clone())
                    .or_default()
                    .insert(node.to_string_lossy().into_owned());
            }
        }
    }
    readers
}

/// Returns the public files of the build under `nodes/`, with their new text.
fn node_files_built(files: &[OutFile]) -> impl Iterator<Item = (&Path, String)> {
    files
        .iter()
        .filter(|f| !f.secret && f.relative.starts_with("nodes"))
        .map(|f| {
            let text = String::from_utf8_lossy(&f.contents).into_owned();
            (f.relative.as_path(), text)
        })
}

/// Returns the public files of the build under `nodes/`, with their text on disk.
fn node_files_on_disk<'f>(
    out: &'f Path,
    files: &'f [OutFile],
) -> impl Iterator<Item = (&'f Path, String)> {
    files
        .iter()
        .filter(|f| !f.secret && f.relative.starts_with("nodes"))
        .filter_map(move |f| {
            let text = std::fs::read_to_string(out.join(&f.relative)).ok()?;
            Some((f.relative.as_path(), text))
        })
}

/// Returns the hosts a file goes to: [`host_of`], and for a shared file also every node
/// whose own files name its install path.
fn hosts_of(
    model: &Model,
    installs: &BTreeMap<String, String>,
    relative: &Path,
    readers: &BTreeMap<String, BTreeSet<String>>,
) -> String {
    let host = host_of(model, relative);
    let install = installs.get(&relative.display().to_string());
    let Some(nodes) = install.and_then(|i| readers.get(i)) else {
        return host;
    };
    let mut hosts: Vec<String> = host.split(',').map(str::to_string).collect();
    for node in nodes {
        if !hosts.contains(node) {
            hosts.push(node.clone());
        }
    }
    hosts.join(",")
}

fn format_time(time: time::OffsetDateTime) -> String {
    time.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

fn rotation_status(key: &str, rotation: &RotationPlan) -> RotationStatus {
    let (kind, id) = key.split_once(':').unwrap_or(("", key));
    let (what, path) = match kind {
        "ca" => (format!("CA `{id}`"), format!("ca.{id}")),
        _ => (
            format!("service-account key `{id}`"),
            format!("service-account.{id}"),
        ),
    };
    let drop_after = rotation.drop_after.map(format_time);
    let (build, next) = match (rotation.stage, kind) {
        (Stage::AddNew, "ca") => (
            format!(
                "a new {what} is staged beside the old one, which still signs; every trust \
                 file and kubeconfig that trusts it holds both"
            ),
            format!(
                "once every host has the files below and the components restarted, set \
                 `{path}.rotation.stage = \"use-new\"`"
            ),
        ),
        (Stage::AddNew, _) => (
            format!(
                "a new {what} is staged; the public-key file lists the old and the new key, \
                 and the old key still signs tokens"
            ),
            format!(
                "once every kube-apiserver runs with the new public-key file, set \
                 `{path}.rotation.stage = \"use-new\"`"
            ),
        ),
        (Stage::UseNew, "ca") => (
            format!(
                "the new {what} signs: every certificate it signed is reissued; trust files \
                 still hold the old CA, so hosts not yet updated keep working"
            ),
            format!(
                "once every host has the reissued files, and not before {}, set \
                 `{path}.rotation.stage = \"drop-old\"`",
                drop_after.as_deref().unwrap_or("the overlap ends")
            ),
        ),
        (Stage::UseNew, _) => (
            format!(
                "the new {what} signs tokens; the public-key file still lists the old key, \
                 so tokens it signed keep verifying"
            ),
            format!(
                "recreate legacy token secrets and let pods refresh their tokens, then, not \
                 before {}, set `{path}.rotation.stage = \"drop-old\"`",
                drop_after.as_deref().unwrap_or("the overlap ends")
            ),
        ),
        (Stage::DropOld, _) => (
            format!("the old {what} leaves every trust file"),
            format!(
                "the rotation ends with this rollout; `{path}.rotation` may then be removed \
                 from the manifest"
            ),
        ),
    };
    RotationStatus {
        object: key.to_string(),
        stage: rotation.stage,
        build,
        next,
        drop_after,
    }
}

/// Steps that a rotation's stage needs beyond copying files and restarting.
fn rotation_steps(model: &Model, plan: &Plan, changed: &[&OutFile]) -> Vec<String> {
    let mut steps = Vec::new();
    for (key, rotation) in &plan.rotations {
        let Some(id) = key.strip_prefix("service-account:") else {
            continue;
        };
        let signing_changes = plan.get(key).is_some_and(|d| d.action != Action::Keep);
        let public_keys_change = model
            .service_accounts
            .iter()
            .filter(|a| a.id == id)
            .any(|a| {
                changed
                    .iter()
                    .any(|f| f.relative == a.public_key_file.relative)
            });
        match rotation.stage {
            Stage::UseNew if signing_changes => steps.push(format!(
                "service-account key `{id}` now signs new tokens; tokens of the old key \
                 verify until drop-old. Before then: delete legacy token secrets (type \
                 kubernetes.io/service-account-token) so kube-controller-manager recreates \
                 them, and restart pods that mount tokens, kube-system first, so that none \
                 still holds a token of the old key"
            )),
            Stage::DropOld if public_keys_change => steps.push(format!(
                "service-account tokens signed by the old key of `{id}` stop verifying once \
                 kube-apiserver restarts with the new public-key file: check that no pod \
                 still logs 401 Unauthorized"
            )),
            _ => {}
        }
    }
    steps
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
    let changed: Vec<&OutFile> = emit::changed_files(out, files, &plan.seen);
    let file_changes = file_changes(model, out, &changed, &installs, &BTreeMap::new())
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
        rotations: Vec::new(),
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
    readers: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<FileChange> {
    changed
        .iter()
        .map(|file| {
            let change = match out.join(&file.relative).exists() {
                true => "update",
                false => "create",
            };
            let host = hosts_of(model, installs, &file.relative, readers);
            FileChange::new(host, &file.relative, installs, change)
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
            let host = host_of(model, &file.relative);
            files.push(FileChange::new(host, &file.relative, installs, "create"));
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
            let host = host_of(model, &cert.key_file.relative);
            FileChange::new(host, &cert.key_file.relative, installs, "update")
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
    if !rollout.rotations.is_empty() {
        let _ = writeln!(text, "Rotations:");
        for rotation in &rollout.rotations {
            let _ = writeln!(
                text,
                "  {} is in stage {}: {}.\n    next: {}.",
                rotation.object,
                rotation.stage.name(),
                rotation.build,
                rotation.next
            );
        }
        let _ = writeln!(text);
    }
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
    // Files are copied before the restarts that read them. Files that the manifest no
    // longer makes are removed after, when no restarted component names them any more.
    for file in rollout.files.iter().filter(|f| f.change != "remove") {
        let _ = writeln!(
            text,
            "  {step}. copy{} {} -> {}:{}",
            if file.change == "create" {
                " (new)"
            } else {
                ""
            },
            file.file,
            file.host,
            file.install
        );
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
    for file in rollout.files.iter().filter(|f| f.change == "remove") {
        let _ = writeln!(
            text,
            "  {step}. remove {}:{} (no longer declared; kept in the output's .backup/)",
            file.host, file.install
        );
        step += 1;
    }
    for note in &rollout.steps {
        let _ = writeln!(text, "  {step}. {note}");
        step += 1;
    }
    text
}
