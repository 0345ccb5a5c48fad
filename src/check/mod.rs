//! `pkic check DIR`: proves an existing PKI tree against Kubernetes' trust rules.
//!
//! Discovery recognises the layout (kubeadm, a kubeadm pki directory, a pkic output
//! directory, or a `--map` file) and reads which component uses which file. The
//! inventory and the kubeconfigs then load every certificate and key. The rules run
//! next: per certificate, issuers, Kubernetes roles, etcd, service-account keys, trust
//! topology, kubeconfigs and, with `-m`, the manifest's intent. Last, the report prints
//! the findings, the connections and the expiry table.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use time::OffsetDateTime;

use crate::Reporter;
use crate::pipeline::{self, Failure, Format};
use crate::x509::SignatureProofs;

mod certs;
mod chain;
mod clients;
mod connection;
pub mod discover;
mod etcd;
mod expiry;
pub mod findings;
mod intent;
pub(crate) mod inventory;
pub(crate) mod keys;
mod kubeadm;
pub(crate) mod kubeconfig;
pub mod layout;
mod mapfile;
mod report;
mod roles;
mod service_account;
pub(crate) mod store;
mod tls;
mod topology;
pub(crate) mod x509;

pub use discover::Overrides;
pub use findings::{Finding, Level};

use inventory::Inventory;
use kubeconfig::Kubeconfig;
use layout::{Layout, Resolved};
use store::{KnownFiles, Store};
use x509::CertInfo;

/// Parses an RFC 3339 time for `--at`.
pub fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .map_err(|e| format!("`{text}` is not an RFC 3339 time such as 2027-01-01T00:00:00Z: {e}"))
}

/// Parses a duration for `--warn-within`, such as `30d`.
pub fn parse_within(text: &str) -> Result<Duration, String> {
    crate::model::values::parse_duration(text)
}

/// Options of `pkic check`.
#[derive(Debug, Clone)]
pub struct CheckOptions {
    pub dir: PathBuf,
    pub map: Option<PathBuf>,
    pub overrides: Overrides,
    /// A second time at which every certificate must be valid.
    pub at: Option<OffsetDateTime>,
    pub warn_within: Duration,
    pub format: Format,
    /// Warnings fail the check too.
    pub strict: bool,
    pub manifest: Option<PathBuf>,
    pub set: BTreeMap<String, String>,
}

/// Everything the rules read.
pub struct Context {
    pub layout: Layout,
    pub store: Store,
    pub inventory: Inventory,
    pub kubeconfigs: Vec<Kubeconfig>,
    /// Unix seconds.
    pub now: i64,
    pub at: Option<i64>,
    pub warn_within: i64,
    /// Facts from the build that wrote the tree.
    pub prior: Arc<Prior>,
}

/// Facts a build hands to the check of the tree it has just written: the signatures
/// its verify stage proved, and the bytes of the files it wrote or found unchanged.
#[derive(Debug, Default)]
pub struct Prior {
    pub proofs: SignatureProofs,
    pub files: KnownFiles,
}

impl Prior {
    /// True when the key of `issuer` signed `cert`: proven by the build that wrote the
    /// tree, or verified now.
    pub fn signed(&self, cert: &CertInfo, issuer: &CertInfo) -> bool {
        self.proofs.contains(&cert.der, &issuer.der) || cert.is_signed_by(issuer)
    }
}

impl Context {
    /// True when the key of `issuer` signed `cert`, as [`Prior::signed`] decides.
    pub fn signed(&self, cert: &CertInfo, issuer: &CertInfo) -> bool {
        self.prior.signed(cert, issuer)
    }

    /// Returns the apiserver's serving certificate file.
    pub fn serving_cert(&self) -> Option<String> {
        self.apiserver_trust("tls-cert-file")
    }

    /// Returns the file that a kube-apiserver flag names, mapped into the tree.
    pub fn apiserver_trust(&self, flag: &str) -> Option<String> {
        let value = self.layout.apiserver.as_ref()?.get(flag)?;
        match self.layout.resolve(value, None) {
            Resolved::InTree(label) => Some(label),
            Resolved::Outside(_) => None,
        }
    }
}

/// A tree read from disk: its layout, every certificate and key file, and its
/// kubeconfigs, with the findings met while reading them.
pub(crate) struct Tree {
    pub layout: Layout,
    pub store: Store,
    pub inventory: Inventory,
    pub kubeconfigs: Vec<Kubeconfig>,
    pub found: Vec<Finding>,
}

/// Recognises the layout of `dir` and reads every certificate, key and kubeconfig in it.
pub(crate) fn load_tree(
    dir: &std::path::Path,
    map: Option<&std::path::Path>,
    overrides: &Overrides,
    known: KnownFiles,
) -> Result<Tree, String> {
    let layout = discover::discover(dir, map, overrides)?;
    let mut store = Store::new(dir, known);
    let mut inventory = Inventory::default();
    let (kubeconfigs, mut found) = kubeconfig::load(&layout, &mut store, &mut inventory);
    inventory.add_flags(&layout, &mut store);
    inventory.add_loose_certs(&layout, &mut store);
    inventory.add_other_files(&mut store);
    found.extend(layout.notes.iter().cloned());
    found.append(&mut inventory.notes);
    Ok(Tree {
        layout,
        store,
        inventory,
        kubeconfigs,
        found,
    })
}

/// Loads the tree under `options.dir` and runs every rule at `now`.
fn inspect(
    options: &CheckOptions,
    now: OffsetDateTime,
    prior: Arc<Prior>,
) -> Result<report::Report, String> {
    let Tree {
        layout,
        store,
        inventory,
        kubeconfigs,
        mut found,
    } = load_tree(
        &options.dir,
        options.map.as_deref(),
        &options.overrides,
        prior.files.clone(),
    )?;
    let ctx = Context {
        layout,
        store,
        inventory,
        kubeconfigs,
        now: now.unix_timestamp(),
        at: options.at.map(OffsetDateTime::unix_timestamp),
        warn_within: options.warn_within.as_secs() as i64,
        prior,
    };
    found.extend(certs::check(&ctx));
    found.extend(chain::check(&ctx));
    found.extend(roles::check(&ctx));
    found.extend(etcd::check(&ctx));
    found.extend(service_account::check(&ctx));
    let (topology_findings, mut connections) = topology::check(&ctx);
    found.extend(topology_findings);
    let (kubeconfig_findings, kubeconfig_connections) = clients::check(&ctx);
    found.extend(kubeconfig_findings);
    connections.splice(0..0, kubeconfig_connections);
    Ok(finish(&ctx, options, found, connections))
}

fn finish(
    ctx: &Context,
    options: &CheckOptions,
    mut found: Vec<Finding>,
    connections: Vec<connection::Connection>,
) -> report::Report {
    let mut unique: Vec<Finding> = Vec::new();
    for finding in found.drain(..) {
        if !unique.contains(&finding) {
            unique.push(finding);
        }
    }
    unique.sort_by(|a, b| (&a.file, a.level, a.id).cmp(&(&b.file, b.level, b.id)));
    report::Report {
        directory: options.dir.display().to_string(),
        layout: ctx.layout.kind,
        facts: ctx.layout.facts.clone(),
        summary: report::Summary::count(&unique),
        findings: unique,
        keys: report::key_rows(&ctx.store),
        connections,
        expiry: expiry::table(ctx),
    }
}

/// Prints the report on stdout. A closed pipe (`pkic check | head`) is not an error.
fn print_report(text: &str) -> Result<(), Failure> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    match writeln!(stdout, "{}", text.trim_end()).and_then(|()| stdout.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Failure::Io(format!("cannot write the report: {e}")))
        }
        _ => Ok(()),
    }
}

/// Runs every rule, and the manifest's intent, on the tree that `pkic build` wrote for
/// `model` under `out`, with the facts in `prior`. Returns the errors and warnings,
/// notes left out.
pub fn check_built(
    out: &std::path::Path,
    model: &crate::model::Model,
    now: OffsetDateTime,
    prior: Prior,
) -> Result<Vec<Finding>, String> {
    let options = CheckOptions {
        dir: out.to_path_buf(),
        map: None,
        overrides: Overrides::default(),
        at: None,
        warn_within: Duration::from_secs(30 * 86_400),
        format: Format::Human,
        strict: false,
        manifest: None,
        set: BTreeMap::new(),
    };
    prior.files.parse_ahead();
    let prior = Arc::new(prior);
    let (inspected, intended) = rayon::join(
        || inspect(&options, now, prior.clone()),
        || intent::check(out, model, &prior),
    );
    let mut findings = inspected?.findings;
    findings.extend(intended);
    intent::lower_declared_choices(&mut findings, model);
    findings.retain(|f| f.level != Level::Note);
    Ok(findings)
}

/// Runs `pkic check`: prints the report on stdout and fails when it has an error, or a
/// warning under `--strict`.
pub fn run(options: &CheckOptions, reporter: &Reporter) -> Result<(), Failure> {
    let mut report =
        inspect(options, OffsetDateTime::now_utc(), Arc::default()).map_err(Failure::Input)?;
    if let Some(manifest) = &options.manifest {
        let loaded = pipeline::load(manifest, &options.set, reporter)?;
        report.findings.extend(intent::check(
            &options.dir,
            &loaded.model,
            &Prior::default(),
        ));
        intent::lower_declared_choices(&mut report.findings, &loaded.model);
        report.summary = report::Summary::count(&report.findings);
    }
    let text = match options.format {
        Format::Human => report::human(&report),
        Format::Json => report::json(&report)
            .map_err(|e| Failure::Io(format!("cannot encode the report as JSON: {e}")))?,
    };
    print_report(&text)?;
    let summary = &report.summary;
    let failing = summary.errors + if options.strict { summary.warnings } else { 0 };
    if failing == 0 {
        return Ok(());
    }
    let counted = if options.strict {
        "errors and warnings"
    } else {
        "errors"
    };
    Err(Failure::Check(format!(
        "pkic check: {} failed: {}, {} ({counted} fail the check)",
        options.dir.display(),
        report::count(summary.errors, "error"),
        report::count(summary.warnings, "warning")
    )))
}
