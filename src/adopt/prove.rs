//! Proves a draft manifest against the copied tree with the stages a build runs:
//! model, state, issue, render and verify. An object that the build would not keep
//! byte for byte is declared without its role, or else left out, until the build of
//! the manifest is a no-op.

use std::collections::BTreeMap;
use std::path::Path;

use time::OffsetDateTime;

use super::draft::Draft;
use crate::diag::{Diagnostic, Severity};
use crate::emit::OutFile;
use crate::manifest::{self, Variables};
use crate::model;
use crate::pipeline::{self, Failure};
use crate::state::{self, Action, Renewal};
use crate::verify::Verified;
use crate::{Reporter, Verbosity};

/// An object of the draft, named as the manifest names it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Object {
    Ca(String),
    Leaf(String),
    Account(String),
    Kubeconfig(String),
}

/// Rewrites the draft until a build of it keeps every file under `out`, writing each
/// version to `manifest`. Returns the files the build makes, in its write order.
pub(super) fn prove(
    draft: &mut Draft,
    manifest: &Path,
    out: &Path,
    render: impl Fn(&Draft) -> String,
) -> Result<Vec<OutFile>, Failure> {
    let quiet = Reporter {
        verbosity: Verbosity::Quiet,
    };
    // Each round changes at least one object, so the rounds are bounded by the number
    // of objects times two (a leaf may lose its role, then be left out).
    let limit = 2 * (draft.cas.len() + draft.leaves.len() + draft.kubeconfigs.len()) + 4;
    for _ in 0..limit {
        let text = render(draft);
        std::fs::write(manifest, &text)
            .map_err(|e| Failure::Io(format!("cannot write {}: {e}", manifest.display())))?;
        let problems = problems(&text, manifest, out, &quiet)?;
        let files = match problems {
            Problems::None(files) => return Ok(files),
            Problems::Found(found) => found,
        };
        // One step per object and round: a leaf with two problems first loses its role,
        // and is left out only if the next round still finds one.
        let mut demoted = Vec::new();
        for (object, reason) in files {
            if !demoted.contains(&object) {
                demote(draft, &object, reason);
                demoted.push(object);
            }
        }
        draft.propagate();
    }
    Err(Failure::Io(
        "pkic init could not write a manifest whose build keeps every file; this is a bug \
         in pkic init"
            .into(),
    ))
}

enum Problems {
    None(Vec<OutFile>),
    Found(Vec<(Object, String)>),
}

/// Loads the manifest text and runs the build stages on `out`, writing nothing.
fn problems(
    text: &str,
    manifest: &Path,
    out: &Path,
    quiet: &Reporter,
) -> Result<Problems, Failure> {
    let variables = Variables::new(BTreeMap::new());
    let document = manifest::parse(text, &variables).map_err(|d| internal(&d))?;
    let directory = manifest.parent().unwrap_or(Path::new("."));
    if let Err(diagnostics) = model::validate(&document, directory) {
        let errors: Vec<Diagnostic> = diagnostics
            .into_iter()
            .filter(|d| d.severity == Severity::Error)
            .collect();
        return located(&errors, |d| object_of_path(&d.path));
    }

    let loaded = pipeline::load(manifest, &BTreeMap::new(), quiet)?;
    let now = OffsetDateTime::now_utc();
    let renewal = Renewal {
        renew_before: loaded.model.renew_before,
    };
    let plan = match state::decide(&loaded.model, &loaded.order, out, now, renewal) {
        Ok(plan) => plan,
        Err(diagnostics) => return located(&diagnostics, |d| object_of_path(&d.path)),
    };

    let mut found = Vec::new();
    for (key, decision) in &plan.decisions {
        if decision.action == Action::Keep {
            continue;
        }
        let object = object_of_key(key).ok_or_else(|| internal_text(key))?;
        found.push((
            object,
            format!(
                "a build would {} it: {}",
                decision.action,
                decision.reasons.join("; ")
            ),
        ));
    }
    if !found.is_empty() {
        return Ok(Problems::Found(found));
    }

    let built = pipeline::compile(
        &loaded,
        &plan,
        None,
        now,
        &Verified::default(),
        quiet,
        &crate::progress::Progress::hidden(),
    )?;
    for finding in built
        .findings
        .iter()
        .filter(|f| f.severity == Severity::Error)
    {
        let id = finding
            .subject
            .strip_prefix("certificate `")
            .and_then(|s| s.strip_suffix('`'))
            .ok_or_else(|| internal_text(&finding.message))?;
        found.push((
            Object::Leaf(template_of(id).to_string()),
            format!("pkic's verification fails: {}", finding.message),
        ));
    }

    for file in &built.files {
        let on_disk = std::fs::read(out.join(&file.relative)).ok();
        if on_disk.as_deref() == Some(file.contents.as_slice()) {
            continue;
        }
        let object = object_of_file(&loaded.model, &file.relative)
            .ok_or_else(|| internal_text(&file.relative.display().to_string()))?;
        found.push((
            object,
            format!(
                "pkic writes {} with other bytes than the tree has, so a build would \
                 rewrite it",
                file.relative.display()
            ),
        ));
    }
    if found.is_empty() {
        Ok(Problems::None(built.files))
    } else {
        Ok(Problems::Found(found))
    }
}

fn located(
    diagnostics: &[Diagnostic],
    object: impl Fn(&Diagnostic) -> Option<Object>,
) -> Result<Problems, Failure> {
    let mut found = Vec::new();
    for diagnostic in diagnostics {
        let object =
            object(diagnostic).ok_or_else(|| internal(std::slice::from_ref(diagnostic)))?;
        found.push((object, diagnostic.message.clone()));
    }
    Ok(Problems::Found(found))
}

fn internal(diagnostics: &[Diagnostic]) -> Failure {
    let text: Vec<String> = diagnostics
        .iter()
        .map(|d| format!("{}: {}", d.path, d.message))
        .collect();
    internal_text(&text.join("; "))
}

fn internal_text(text: &str) -> Failure {
    Failure::Io(format!(
        "pkic init wrote a manifest that pkic rejects ({text}); this is a bug in pkic init"
    ))
}

/// Maps a diagnostic's field path, such as `per-node.cert.kubelet.sans`, to its object.
fn object_of_path(path: &str) -> Option<Object> {
    let parts: Vec<&str> = path.split('.').collect();
    let name = |i: usize| {
        parts
            .get(i)
            .map(|s| s.split('[').next().unwrap_or(s).to_string())
    };
    match *parts.first()? {
        "ca" => Some(Object::Ca(name(1)?)),
        "cert" => Some(Object::Leaf(name(1)?)),
        "service-account" => Some(Object::Account(name(1)?)),
        "kubeconfig" => Some(Object::Kubeconfig(name(1)?)),
        "per-node" => match *parts.get(1)? {
            "cert" => Some(Object::Leaf(name(2)?)),
            "kubeconfig" => Some(Object::Kubeconfig(name(2)?)),
            _ => None,
        },
        _ => None,
    }
}

/// Maps a plan key, such as `cert:cp-1/etcd-server`, to its object.
fn object_of_key(key: &str) -> Option<Object> {
    let (kind, id) = key.split_once(':')?;
    let id = template_of(id).to_string();
    match kind {
        "ca" => Some(Object::Ca(id)),
        "cert" => Some(Object::Leaf(id)),
        "service-account" => Some(Object::Account(id)),
        _ => None,
    }
}

/// Returns the template name of a per-node id `NODE/TEMPLATE`, or the id itself.
fn template_of(id: &str) -> &str {
    id.rsplit_once('/').map_or(id, |(_, template)| template)
}

fn object_of_file(model: &model::Model, relative: &Path) -> Option<Object> {
    if let Some(ca) = model
        .cas
        .iter()
        .find(|c| c.cert_file.relative == relative || c.key_file.relative == relative)
    {
        return Some(Object::Ca(ca.id.clone()));
    }
    if let Some(cert) = model
        .certs
        .iter()
        .find(|c| c.cert_file.relative == relative || c.key_file.relative == relative)
    {
        return Some(Object::Leaf(template_of(&cert.id).to_string()));
    }
    if let Some(account) = model
        .service_accounts
        .iter()
        .find(|a| a.key_file.relative == relative || a.public_key_file.relative == relative)
    {
        return Some(Object::Account(account.id.clone()));
    }
    model
        .kubeconfigs
        .iter()
        .find(|k| k.file.relative == relative)
        .map(|k| Object::Kubeconfig(template_of(&k.id).to_string()))
}

/// Declares a leaf without its role, or leaves the object out, with `reason`.
fn demote(draft: &mut Draft, object: &Object, reason: String) {
    match object {
        Object::Ca(id) => {
            if let Some(ca) = draft.cas.iter_mut().find(|c| &c.id == id) {
                ca.left_out.get_or_insert(reason);
            }
        }
        Object::Leaf(id) => {
            let Some(leaf) = draft.leaves.iter_mut().find(|l| &l.id == id) else {
                return;
            };
            if leaf.left_out.is_some() {
                return;
            }
            match leaf.role.take() {
                Some(role) => leaf.notes.push(format!(
                    "Declared without role `{}`, which would change it: {reason}",
                    role.name()
                )),
                None => leaf.left_out = Some(reason),
            }
        }
        Object::Account(id) => {
            if let Some(account) = draft.accounts.iter_mut().find(|a| &a.id == id) {
                account.left_out.get_or_insert(reason);
            }
        }
        Object::Kubeconfig(id) => {
            if let Some(kubeconfig) = draft.kubeconfigs.iter_mut().find(|k| &k.id == id) {
                kubeconfig.left_out.get_or_insert(reason);
            }
        }
    }
}
