//! The build pipeline: manifest -> model -> graph -> issue -> render -> verify -> emit,
//! with progress lines on stderr and one result per run.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use time::OffsetDateTime;

use crate::check::store::KnownFiles;
use crate::csr;
use crate::diag::{Diagnostic, Located, Severity, Source};
use crate::emit::{self, OutFile};
use crate::graph::Graph;
use crate::issue::{self, Issued};
use crate::manifest::{self, Variables};
use crate::model::{self, Model};
use crate::progress::{Progress, Stopwatch};
use crate::render::{self, KubeconfigMode, Templates};
use crate::rollout;
use crate::state::{self, Action, Plan, Record, Renewal};
use crate::verify::{self, Finding, Verified};
use crate::x509::SignatureProofs;
use crate::{Reporter, golden};

/// Cause of a failed run, each mapped to one exit code.
#[derive(Debug)]
pub enum Failure {
    /// The manifest or the command line is invalid (exit 2).
    Input(String),
    /// The built PKI failed verification, or differs from the expected files (exit 1).
    Check(String),
    /// Reading or writing files failed (exit 3).
    Io(String),
    /// The build wrote CSRs and waits for their signed certificates (exit 5).
    AwaitingSignature(String),
}

impl Failure {
    pub fn exit_code(&self) -> i32 {
        match self {
            Failure::Check(_) => 1,
            Failure::Input(_) => 2,
            Failure::Io(_) => 3,
            Failure::AwaitingSignature(_) => 5,
        }
    }

    pub fn message(&self) -> &str {
        match self {
            Failure::Input(m)
            | Failure::Check(m)
            | Failure::Io(m)
            | Failure::AwaitingSignature(m) => m,
        }
    }
}

/// Options of `pkic build`.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    pub manifest: PathBuf,
    pub out: PathBuf,
    pub set: BTreeMap<String, String>,
    pub templates: Option<PathBuf>,
    /// Compare the public outputs with this directory instead of writing anything.
    pub check: Option<PathBuf>,
    /// Replace this directory's contents with the public outputs.
    pub update_golden: Option<PathBuf>,
}

/// A manifest loaded and checked.
pub struct Loaded {
    pub source: Source,
    pub model: Model,
    pub order: Vec<String>,
    variables: Variables,
}

impl Loaded {
    /// Renders diagnostics found after loading, located by their field paths.
    fn render(&self, diagnostics: Vec<Diagnostic>) -> String {
        let located = match manifest::parse(&self.source.text, &self.variables) {
            Ok(document) => document.locate(diagnostics),
            Err(_) => diagnostics,
        };
        render_diagnostics(&self.source, &located)
    }
}

fn render_diagnostics(source: &Source, diagnostics: &[Diagnostic]) -> String {
    diagnostics
        .iter()
        .map(|d| {
            Located {
                diagnostic: d,
                source,
            }
            .to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// Reads, parses and validates a manifest and orders its graph; prints warnings.
pub fn load(
    path: &Path,
    set: &BTreeMap<String, String>,
    reporter: &Reporter,
) -> Result<Loaded, Failure> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| Failure::Input(format!("cannot read manifest {}: {e}", path.display())))?;
    let source = Source::new(path, text);
    let vars = Variables::new(set.clone());
    let document = manifest::parse(&source.text, &vars)
        .map_err(|d| Failure::Input(render_diagnostics(&source, &d)))?;
    let manifest_dir = path.parent().unwrap_or(Path::new("."));
    let (model, warnings) = model::validate(&document, manifest_dir)
        .map_err(|d| Failure::Input(render_diagnostics(&source, &d)))?;
    if !warnings.is_empty() {
        reporter.warn(&render_diagnostics(&source, &warnings));
    }
    let order = Graph::from_model(&model)
        .order()
        .map_err(|d| Failure::Input(render_diagnostics(&source, &document.locate(d))))?;
    Ok(Loaded {
        variables: vars,
        source,
        model,
        order,
    })
}

/// Everything a build produces, in memory.
pub struct Built {
    pub issued: Issued,
    pub files: Vec<OutFile>,
    /// Templates the files were rendered with, for [`public_outputs`].
    pub templates: Templates,
    pub findings: Vec<Finding>,
    /// Digests of the verifications that passed, kept in the output for the next build.
    pub verified: Verified,
    /// The signatures the verified chains are made of, for the check of the written tree.
    pub proofs: SignatureProofs,
}

/// File in the output directory that keeps [`Verified`] between builds.
const VERIFIED_FILE: &str = ".pkic-verified";

/// Decides what a build does with each key and certificate under `out`.
pub fn decide(loaded: &Loaded, out: Option<&Path>, now: OffsetDateTime) -> Result<Plan, Failure> {
    let Some(out) = out else {
        return Ok(Plan::fresh(&loaded.model, now));
    };
    let renewal = Renewal {
        renew_before: loaded.model.renew_before,
    };
    state::decide(&loaded.model, &loaded.order, out, now, renewal).map_err(|diagnostics| {
        // A file in the output that exists but cannot be read is an I/O failure. A
        // signed certificate that fails its checks is a verification failure. Every
        // other state error is a manifest that no longer matches the tree.
        let unreadable = diagnostics
            .iter()
            .any(|d| d.message.starts_with("cannot read "));
        let rejected = diagnostics.iter().any(csr::is_rejection);
        let text = loaded.render(diagnostics);
        if unreadable {
            Failure::Io(text)
        } else if rejected {
            Failure::Check(text)
        } else {
            Failure::Input(text)
        }
    })
}

fn report_decisions(loaded: &Loaded, plan: &Plan, reporter: &Reporter) {
    for key in &loaded.order {
        let Some((kind, id)) = key.split_once(':') else {
            continue;
        };
        let what = match kind {
            "ca" => "CA certificate and key",
            "cert" => "certificate and key",
            "service-account" => "service-account key pair",
            _ => continue,
        };
        let Some(decision) = plan.get(key) else {
            reporter.progress(&format!("[issue] generated \"{id}\" {what}"));
            continue;
        };
        let reasons = decision.reasons.join("; ");
        let line = match decision.action {
            Action::Keep => {
                reporter.detail(&format!("[issue] using existing \"{id}\" {what}"));
                continue;
            }
            Action::Create if kind == "cert" && decision.reuse_key.is_some() => {
                format!("[issue] generated \"{id}\" certificate for its existing key ({reasons})")
            }
            Action::Create => format!("[issue] generated \"{id}\" {what} ({reasons})"),
            Action::Reissue => format!("[issue] reissued \"{id}\" {what}: {reasons}"),
            Action::Renew => format!("[issue] renewed \"{id}\" {what}: {reasons}"),
            Action::Accept => format!("[issue] accepted \"{id}\" certificate: {reasons}"),
            Action::AwaitSignature => {
                format!("[issue] \"{id}\" awaits its signed certificate: {reasons}")
            }
        };
        reporter.progress(&line);
    }
}

/// Issues, renders and verifies a loaded manifest without writing anything; `plan`
/// decides which keys and certificates to keep.
pub fn compile(
    loaded: &Loaded,
    plan: &Plan,
    templates: Option<&Path>,
    now: OffsetDateTime,
    known: &Verified,
    reporter: &Reporter,
    progress: &Progress,
) -> Result<Built, Failure> {
    let model = &loaded.model;
    let keys = model.cas.len() + model.certs.len() + model.service_accounts.len();
    let bar = progress.counted("issuing", keys as u64);
    let issued = issue::issue_all(model, &loaded.order, plan, now, &bar);
    bar.finish_and_clear();
    let mut issued = issued.map_err(|e| Failure::Io(e.to_string()))?;
    report_decisions(loaded, plan, reporter);

    let template_dir = templates
        .map(Path::to_path_buf)
        .or_else(|| model.templates.clone());
    let templates =
        Templates::load(template_dir.as_deref()).map_err(|e| Failure::Input(e.to_string()))?;
    let rendered = render::render_all(model, &issued, &templates, KubeconfigMode::AsDeclared)
        .map_err(|e| Failure::Input(e.to_string()))?;

    let files = output_files(model, &mut issued, rendered);
    let bar = progress.spinner("verifying chains, kubeconfigs and connections");
    let verification = verify::verify(model, &issued, SystemTime::from(now), known);
    bar.finish_and_clear();
    Ok(Built {
        verified: verification.verified,
        proofs: verification.proofs,
        issued,
        files,
        templates,
        findings: verification.findings,
    })
}

/// Returns the public outputs of a compiled build, the files that golden directories
/// hold: kubeconfigs rendered with file paths, flag files, and the certificate profiles.
pub fn public_outputs(loaded: &Loaded, built: &Built) -> Result<BTreeMap<String, String>, Failure> {
    let model = &loaded.model;
    let path_mode = render::render_all(
        model,
        &built.issued,
        &built.templates,
        KubeconfigMode::PathsOnly,
    )
    .map_err(|e| Failure::Input(e.to_string()))?;
    Ok(golden::public_outputs(
        model,
        &built.issued,
        &path_mode,
        &built.files,
    ))
}

fn output_files(
    model: &Model,
    issued: &mut Issued,
    rendered: Vec<render::Rendered>,
) -> Vec<OutFile> {
    let mut files = Vec::new();
    let mut push = |relative: &Path, contents: Vec<u8>, secret: bool| {
        files.push(OutFile {
            relative: relative.to_path_buf(),
            contents,
            secret,
        });
    };
    // Each key goes before its certificate: a build killed between the two leaves a key
    // without a certificate, which the next build completes, never the reverse.
    for ca in &model.cas {
        let made = &issued.cas[&ca.id];
        if !csr::key_unavailable(ca) {
            push(
                &ca.key_file.relative,
                made.key.pem.clone().into_bytes(),
                true,
            );
        }
        push(&ca.cert_file.relative, made.pem.clone().into_bytes(), false);
        // A staged CA goes before the trust file that names it: a build killed between
        // the two leaves a staged CA that no host trusts yet.
        let files = &ca.rotation_files;
        if let (Some(cert_file), Some(staged)) = (&files.staged_cert, issued.staged_cas.get(&ca.id))
        {
            push(
                &files.staged_key.relative,
                staged.key.pem.clone().into_bytes(),
                true,
            );
            push(&cert_file.relative, staged.pem.clone().into_bytes(), false);
        }
        if let (Some(trust), Some(pem)) = (&files.trust, issued.ca_trust.get(&ca.id)) {
            push(&trust.relative, pem.clone().into_bytes(), false);
        }
    }
    // Once the kubeconfigs are rendered, a leaf's key is needed only in its file, so it
    // moves there instead of being copied. The leaf keys of 10,000 RSA nodes take 17 MB.
    for cert in &model.certs {
        if let Some(made) = issued.certs.get_mut(&cert.id) {
            let key = std::mem::take(&mut made.key.pem);
            push(&cert.key_file.relative, key.into_bytes(), true);
        }
        push(
            &cert.cert_file.relative,
            render::chain_pem(model, issued, &cert.id).into_bytes(),
            false,
        );
    }
    for bundle in &model.bundles {
        push(
            &bundle.file.relative,
            render::trust_pem(model, issued, &bundle.id).into_bytes(),
            false,
        );
    }
    for account in &model.service_accounts {
        let made = &issued.service_accounts[&account.id];
        push(
            &account.key_file.relative,
            made.key.pem.clone().into_bytes(),
            true,
        );
        // A staged key goes before the public-key file that lists it, as for CAs.
        if let Some(staged) = issued.staged_keys.get(&account.id) {
            push(
                &account.rotation_files.staged_key.relative,
                staged.pem.clone().into_bytes(),
                true,
            );
        }
        push(
            &account.public_key_file.relative,
            made.published_pem.clone().into_bytes(),
            false,
        );
    }
    for file in rendered {
        push(&file.file.relative, file.text.into_bytes(), file.secret);
    }
    files
}

/// File in the output directory that lists the errors `pkic check` found in the last
/// written tree, so that a later build without changes checks the tree again instead
/// of reporting it up to date.
const CHECK_ERRORS_FILE: &str = ".pkic-check-errors";

/// Runs the rules of `pkic check` on the tree just written under `out`. Warnings are
/// printed. Errors fail the build and are kept in [`CHECK_ERRORS_FILE`] until a build
/// finds none.
fn check_written(
    loaded: &Loaded,
    out: &Path,
    now: OffsetDateTime,
    prior: crate::check::Prior,
    reporter: &Reporter,
) -> Result<(), Failure> {
    let findings = crate::check::check_built(out, &loaded.model, now, prior)
        .map_err(|e| Failure::Io(format!("cannot check {}: {e}", out.display())))?;
    let mut errors = Vec::new();
    for finding in &findings {
        let line = format!(
            "[check] {}[{}] {}: {}\n  fix: {}",
            finding.level.name(),
            finding.id,
            finding.file.as_deref().unwrap_or("-"),
            finding.message,
            finding.fix
        );
        match finding.level {
            crate::check::Level::Error => errors.push(line),
            _ => reporter.warn(&line),
        }
    }
    let errors_file = out.join(CHECK_ERRORS_FILE);
    if errors.is_empty() {
        if errors_file.exists() {
            std::fs::remove_file(&errors_file).map_err(|e| {
                Failure::Io(format!("cannot remove {}: {e}", errors_file.display()))
            })?;
        }
        return Ok(());
    }
    let text = format!("{}\n", errors.join("\n"));
    emit::write_state(out, CHECK_ERRORS_FILE, &text).map_err(|e| Failure::Io(e.to_string()))?;
    Err(Failure::Check(format!(
        "{}\npkic check found {} in the tree written to {}; fix the manifest and build again",
        errors.join("\n"),
        match errors.len() {
            1 => "1 error".to_string(),
            n => format!("{n} errors"),
        },
        out.display()
    )))
}

/// Reports verification findings; fails when any is an error.
fn report_findings(findings: &[Finding], reporter: &Reporter) -> Result<(), Failure> {
    let mut errors = Vec::new();
    for finding in findings {
        let line = format!(
            "[verify] {} [{}] {}: {}{}",
            if finding.severity == Severity::Error {
                "error"
            } else {
                "warning"
            },
            finding.id,
            finding.subject,
            finding.message,
            finding
                .help
                .as_ref()
                .map(|h| format!("\n  help: {h}"))
                .unwrap_or_default()
        );
        match finding.severity {
            Severity::Error => errors.push(line),
            Severity::Warning => reporter.warn(&line),
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Failure::Check(format!(
            "{}\nthe built PKI failed verification; nothing was written",
            errors.join("\n")
        )))
    }
}

/// Runs `pkic build`.
pub fn build(options: &BuildOptions, reporter: &Reporter) -> Result<(), Failure> {
    let mut stopwatch = Stopwatch::start();
    let loaded = load(&options.manifest, &options.set, reporter)?;
    stopwatch.lap("load");
    let now = OffsetDateTime::now_utc();
    let writes = options.check.is_none() && options.update_golden.is_none();
    let progress = Progress::for_build(&loaded.model, reporter.verbosity);
    let bar = progress.spinner("reading existing keys and certificates");
    let plan = decide(&loaded, writes.then_some(options.out.as_path()), now);
    bar.finish_and_clear();
    let plan = plan?;
    stopwatch.lap("decide");
    if writes && csr::is_waiting(&plan) {
        return write_requests(&loaded, &plan, options, now, reporter);
    }
    let known = match writes {
        true => Verified::read(&options.out.join(VERIFIED_FILE)),
        false => Verified::default(),
    };
    let mut built = compile(
        &loaded,
        &plan,
        options.templates.as_deref(),
        now,
        &known,
        reporter,
        &progress,
    )?;
    report_findings(&built.findings, reporter)?;
    stopwatch.lap("issue, render and verify");

    if let Some(dir) = &options.check {
        let expected = golden::read_dir(dir).map_err(|e| {
            Failure::Io(format!(
                "cannot read expected outputs in {}: {e}",
                dir.display()
            ))
        })?;
        let diff = golden::diff(&expected, &public_outputs(&loaded, &built)?);
        if diff.is_empty() {
            reporter.summary(&format!("[check] public outputs match {}", dir.display()));
            return Ok(());
        }
        crate::print_out(&diff);
        return Err(Failure::Check(format!(
            "public outputs differ from {}; review the diff above, then update them with \
             `pkic build --update-golden {}`",
            dir.display(),
            dir.display()
        )));
    }
    if let Some(dir) = &options.update_golden {
        let public = public_outputs(&loaded, &built)?;
        golden::write_dir(dir, &public)
            .map_err(|e| Failure::Io(format!("cannot write {}: {e}", dir.display())))?;
        reporter.summary(&format!(
            "[golden] wrote {} public outputs to {}",
            public.len(),
            dir.display()
        ));
        return Ok(());
    }

    let requests = csr::requests(&loaded.model, &plan, &options.out)
        .map_err(|e| Failure::Io(e.to_string()))?;
    built
        .files
        .extend(requests.into_iter().map(|request| request.csr));
    let stamp = backup_stamp(now);
    let reserved = loaded.model.rotation_paths();
    let bar = progress.spinner("writing files");
    let written = emit::write_all(&options.out, &built.files, &reserved, &stamp, &plan.seen);
    bar.finish_and_clear();
    let written = written.map_err(|e| Failure::Io(e.to_string()))?;
    stopwatch.lap("write");
    emit::write_state(&options.out, VERIFIED_FILE, &built.verified.to_text())
        .map_err(|e| Failure::Io(e.to_string()))?;
    let signed = csr::signed_list(&loaded.model, &plan);
    if !signed.is_empty() || options.out.join(csr::SIGNED_FILE).exists() {
        emit::write_state(&options.out, csr::SIGNED_FILE, &signed)
            .map_err(|e| Failure::Io(e.to_string()))?;
    }
    // The record follows the files it describes: a build killed before this line is
    // recorded by the next one, which only makes drop-old wait longer.
    if !plan.rotations.is_empty() || options.out.join(state::rotation::RECORD_FILE).exists() {
        emit::write_state(
            &options.out,
            state::rotation::RECORD_FILE,
            &Record::of(&plan).to_text(),
        )
        .map_err(|e| Failure::Io(e.to_string()))?;
    }
    for path in &written.changed {
        reporter.detail(&format!("[write] {}", options.out.join(path).display()));
        reporter.result(&path.display().to_string());
    }
    for path in &written.removed {
        reporter.progress(&format!(
            "[write] moved {} to the backup: the manifest no longer makes it",
            path.display()
        ));
    }
    if let Some(backup) = &written.backup {
        reporter.progress(&format!(
            "[write] previous versions of replaced files kept in {}",
            backup.display()
        ));
    }
    let unchanged = written.changed.is_empty() && written.removed.is_empty();
    let file_count = built.files.len();
    // The issued keys and certificates and the bytes read by the decision are freed
    // here, before the check, so that a large build needs less memory at its peak.
    let Built { files, proofs, .. } = built;
    drop(plan);
    let needs_check = !unchanged || options.out.join(CHECK_ERRORS_FILE).exists();
    // The flush that makes the renames durable runs while the tree is checked.
    let (flushed, checked) = std::thread::scope(|scope| {
        let flush = written
            .unflushed
            .then(|| scope.spawn(|| emit::flush(&options.out)));
        let checked = if needs_check {
            let bar = progress.spinner("checking the written tree");
            // Every output is on disk now with the bytes of `files`, so the check reads
            // them from memory.
            let prior = crate::check::Prior {
                proofs,
                files: KnownFiles::new(
                    files.into_iter().map(|file| (file.relative, file.contents)),
                ),
            };
            let checked = check_written(&loaded, &options.out, now, prior, reporter);
            bar.finish_and_clear();
            checked
        } else {
            Ok(())
        };
        let flushed = flush.map_or(Ok(()), |handle| {
            handle.join().expect("the flush thread does not panic")
        });
        (flushed, checked)
    });
    flushed.map_err(|e| Failure::Io(e.to_string()))?;
    checked?;
    stopwatch.lap("check");
    reporter.detail(&stopwatch.line());
    if unchanged {
        reporter.summary(&format!(
            "[build] {} is up to date: no file changed",
            options.out.display()
        ));
        return Ok(());
    }
    let model = &loaded.model;
    reporter.summary(&format!(
        "[build] wrote {} of {} files to {}; the manifest declares {}, {}, {}, {}, {} and {}",
        written.changed.len(),
        file_count,
        options.out.display(),
        count(model.cas.len(), "CA"),
        count(model.bundles.len(), "bundle"),
        count(model.certs.len(), "certificate"),
        count(model.service_accounts.len(), "service-account key"),
        count(model.kubeconfigs.len(), "kubeconfig"),
        count(model.flag_files.len(), "flag file")
    ));
    Ok(())
}

/// Returns "1 CA" or "4 CAs".
fn count(n: usize, noun: &str) -> String {
    match n {
        1 => format!("1 {noun}"),
        n => format!("{n} {noun}s"),
    }
}

/// Returns the name of a build's backup directory: its UTC time.
fn backup_stamp(now: OffsetDateTime) -> String {
    now.format(&time::macros::format_description!(
        "[year][month][day]T[hour][minute][second]Z"
    ))
    .unwrap_or_else(|_| now.unix_timestamp().to_string())
}

/// Returns the files a build writes while certificates await signature: the key and
/// CSR of each certificate that waits, and the CSRs of those already signed.
fn request_files(requests: Vec<csr::Request>) -> Vec<OutFile> {
    let mut files = Vec::new();
    for request in requests {
        if request.action == Action::AwaitSignature {
            files.push(request.key);
        }
        files.push(request.csr);
    }
    files
}

/// Writes the keys and CSRs of a build whose certificates are not all signed yet, and
/// nothing else, then fails with [`Failure::AwaitingSignature`].
fn write_requests(
    loaded: &Loaded,
    plan: &Plan,
    options: &BuildOptions,
    now: OffsetDateTime,
    reporter: &Reporter,
) -> Result<(), Failure> {
    let requests =
        csr::requests(&loaded.model, plan, &options.out).map_err(|e| Failure::Io(e.to_string()))?;
    let message = csr::waiting_message(plan, &requests, &options.out);
    let files = request_files(requests);
    let written = emit::write_some(&options.out, &files, &backup_stamp(now))
        .map_err(|e| Failure::Io(e.to_string()))?;
    for path in &written.changed {
        reporter.detail(&format!("[write] {}", options.out.join(path).display()));
        reporter.result(&path.display().to_string());
    }
    if let Some(backup) = &written.backup {
        reporter.progress(&format!(
            "[write] previous versions of replaced files kept in {}",
            backup.display()
        ));
    }
    Err(Failure::AwaitingSignature(message))
}

/// Output format of `pkic plan`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Human,
    Json,
}

/// Runs `pkic plan`: prints what `pkic build` would do, writing nothing. Returns true
/// when the build would change something.
/// `at` replaces the current time, to see what a build on that day would renew.
pub fn plan(
    options: &BuildOptions,
    format: Format,
    at: Option<OffsetDateTime>,
    reporter: &Reporter,
) -> Result<bool, Failure> {
    let loaded = load(&options.manifest, &options.set, reporter)?;
    let now = at.unwrap_or_else(OffsetDateTime::now_utc);
    let plan = decide(&loaded, Some(options.out.as_path()), now)?;
    let requests = csr::requests(&loaded.model, &plan, &options.out)
        .map_err(|e| Failure::Io(e.to_string()))?;
    let rollout = if csr::is_waiting(&plan) {
        let steps = csr::signing_steps(&plan, &requests, &options.out);
        let files = request_files(requests);
        rollout::awaiting_signature(&loaded.model, &plan, &options.out, &files, steps)
    } else {
        let quiet = Reporter {
            verbosity: crate::Verbosity::Quiet,
        };
        let known = Verified::read(&options.out.join(VERIFIED_FILE));
        let mut built = compile(
            &loaded,
            &plan,
            options.templates.as_deref(),
            now,
            &known,
            &quiet,
            &Progress::hidden(),
        )?;
        report_findings(&built.findings, reporter)?;
        built.files.extend(request_files(requests));
        rollout::rollout(&loaded.model, &plan, &options.out, &built.files)
    };
    match format {
        Format::Human => crate::print_out(&rollout::format_human(&rollout)),
        Format::Json => {
            let json = serde_json::to_string_pretty(&rollout)
                .map_err(|e| Failure::Io(format!("cannot encode the plan: {e}")))?;
            crate::print_out(&format!("{json}\n"));
        }
    }
    Ok(!rollout.is_empty())
}
