//! Output of `pkic check`: a human report grouped by file, with colour only when
//! stdout is a terminal (and `NO_COLOR` is unset), or one JSON document.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::IsTerminal;

use serde::Serialize;

use super::connection::{Connection, Verdict};
use super::expiry::Row;
use super::findings::{Finding, Level};
use super::keys::KeyRead;
use super::layout::{Facts, LayoutKind};
use super::store::Store;

/// Everything a check found.
#[derive(Debug, Serialize)]
pub struct Report {
    pub directory: String,
    pub layout: LayoutKind,
    pub facts: Facts,
    pub findings: Vec<Finding>,
    pub keys: Vec<KeyRow>,
    pub connections: Vec<Connection>,
    pub expiry: Vec<Row>,
    pub summary: Summary,
}

/// Counts of findings by level.
#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub errors: usize,
    pub warnings: usize,
    pub notes: usize,
}

/// A private key file and the encoding found.
#[derive(Debug, Serialize)]
pub struct KeyRow {
    pub file: String,
    /// `PKCS#1`, `SEC1`, `PKCS#8`, `encrypted`, `unreadable` or `missing`.
    pub format: String,
    pub algorithm: Option<String>,
    /// The PEM label when it does not match the encoding.
    pub pem_label: Option<String>,
}

impl Summary {
    pub fn count(findings: &[Finding]) -> Summary {
        let count = |level| findings.iter().filter(|f| f.level == level).count();
        Summary {
            errors: count(Level::Error),
            warnings: count(Level::Warning),
            notes: count(Level::Note),
        }
    }
}

/// Lists the key files of the store with their encodings.
pub fn key_rows(store: &Store) -> Vec<KeyRow> {
    store
        .key_files
        .iter()
        .map(|(label, file)| {
            let (format, algorithm, pem_label) = match &file.read {
                None => ("missing".to_string(), None, None),
                Some(KeyRead::Encrypted(how)) => (format!("encrypted ({how})"), None, None),
                Some(KeyRead::Unreadable(_)) => ("unreadable".to_string(), None, None),
                Some(KeyRead::Readable {
                    format,
                    mislabelled,
                    public,
                }) => (
                    format.name().to_string(),
                    Some(public.algorithm.clone()),
                    mislabelled.clone(),
                ),
            };
            KeyRow {
                file: label.clone(),
                format,
                algorithm,
                pem_label,
            }
        })
        .collect()
}

/// ANSI styling, or none.
struct Style {
    enabled: bool,
}

impl Style {
    fn paint(&self, code: &str, text: &str) -> String {
        if self.enabled {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    fn level(&self, level: Level) -> String {
        let code = match level {
            Level::Error => "1;31",
            Level::Warning => "1;33",
            Level::Note => "1;36",
        };
        self.paint(code, level.name())
    }
}

/// Renders the report for a person.
pub fn human(report: &Report) -> String {
    let style = Style {
        enabled: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    };
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", report.directory, report.layout.describe());
    write_facts(&mut out, &report.facts);
    write_findings(&mut out, &report.findings, &style);
    write_keys(&mut out, &report.keys);
    write_connections(&mut out, &report.connections, &style);
    write_expiry(&mut out, &report.expiry);
    let summary = &report.summary;
    let _ = writeln!(
        out,
        "\n{}, {}, {}",
        count(summary.errors, "error"),
        count(summary.warnings, "warning"),
        count(summary.notes, "note")
    );
    out
}

fn write_facts(out: &mut String, facts: &Facts) {
    let cidrs: Vec<String> = facts
        .service_cidrs
        .value
        .iter()
        .map(|n| n.to_string())
        .collect();
    if cidrs.is_empty() {
        let _ = writeln!(
            out,
            "  service CIDR unknown: the tree has no kube-apiserver flags; give --service-cidr"
        );
    } else {
        let _ = writeln!(
            out,
            "  service CIDR {} (from {})",
            cidrs.join(","),
            facts.service_cidrs.source
        );
    }
    let _ = writeln!(
        out,
        "  DNS domain {} (from {})",
        facts.dns_domain.value, facts.dns_domain.source
    );
    if let Some(address) = &facts.advertise_address {
        let _ = writeln!(
            out,
            "  advertise address {} (from {})",
            address.value, address.source
        );
    }
}

fn write_findings(out: &mut String, findings: &[Finding], style: &Style) {
    let mut by_file: BTreeMap<&str, Vec<&Finding>> = BTreeMap::new();
    for finding in findings {
        by_file
            .entry(finding.file.as_deref().unwrap_or("(tree)"))
            .or_default()
            .push(finding);
    }
    for (file, list) in by_file {
        let _ = writeln!(out, "\n{}", style.paint("1", file));
        for finding in list {
            let _ = writeln!(
                out,
                "  {}[{}]: {}",
                style.level(finding.level),
                finding.id,
                finding.message
            );
            let _ = writeln!(out, "    fix: {}", finding.fix);
        }
    }
}

fn write_keys(out: &mut String, keys: &[KeyRow]) {
    if keys.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nPrivate keys");
    let width = keys.iter().map(|k| k.file.len()).max().unwrap_or(0);
    for key in keys {
        let algorithm = key.algorithm.as_deref().unwrap_or("");
        let label = key
            .pem_label
            .as_ref()
            .map(|l| format!(" (PEM label {l})"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  {:width$}  {} {algorithm}{label}",
            key.file, key.format
        );
    }
}

fn write_connections(out: &mut String, connections: &[Connection], style: &Style) {
    if connections.is_empty() {
        return;
    }
    let _ = writeln!(out, "\nConnections");
    for connection in connections {
        let _ = writeln!(out, "  {}: {}", connection.name, connection.mode.describe());
        for leg in &connection.legs {
            let presented = leg.presented.as_deref().unwrap_or("(not in the tree)");
            let verified_by = match &leg.ca_file {
                Some(ca) => format!(", verified with {ca} ({})", leg.verifier),
                None => format!(", for {}", leg.verifier),
            };
            let (mark, detail) = match &leg.verdict {
                Verdict::Verified => (style.paint("32", "ok"), String::new()),
                Verdict::VerifiedSignatureOnly(reason) => {
                    (style.paint("32", "ok"), format!(" ({reason})"))
                }
                Verdict::Failed(reason) => (style.paint("31", "FAIL"), format!(": {reason}")),
                Verdict::NotVerified(reason) => {
                    (style.paint("33", "unverified"), format!(": {reason}"))
                }
                Verdict::Unknown(reason) => ("?".to_string(), format!(": {reason}")),
            };
            let _ = writeln!(
                out,
                "    {mark} {} {presented}{verified_by}{detail}",
                leg.direction
            );
        }
        if let Some(advice) = &connection.advice {
            let _ = writeln!(out, "    to make it mutual: {advice}");
        }
    }
}

fn write_expiry(out: &mut String, rows: &[Row]) {
    let _ = writeln!(out, "\nExpiry");
    let headers = [
        "CERTIFICATE",
        "EXPIRES",
        "RESIDUAL TIME",
        "CERTIFICATE AUTHORITY",
        "MANAGED BY PKIC",
    ];
    let cells: Vec<[String; 5]> = rows
        .iter()
        .map(|row| {
            let managed = match row.managed_by_pkic {
                Some(true) => "yes",
                Some(false) => "no",
                None => "-",
            };
            let authority = if row.is_ca {
                format!("{} (CA)", row.issuer)
            } else {
                row.issuer.clone()
            };
            [
                row.name.clone(),
                super::expiry::format_time(row.not_after),
                row.residual.clone(),
                authority,
                managed.to_string(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &cells {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }
    let line = |cells: [&str; 5]| {
        let parts: Vec<String> = cells
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:w$}"))
            .collect();
        format!("  {}", parts.join("  ").trim_end())
    };
    let _ = writeln!(out, "{}", line(headers));
    for row in &cells {
        let _ = writeln!(
            out,
            "{}",
            line([&row[0], &row[1], &row[2], &row[3], &row[4]])
        );
    }
}

/// Formats a count with its noun, such as `1 error` or `2 warnings`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}

/// Renders the report as pretty-printed JSON.
pub fn json(report: &Report) -> Result<String, serde_json::Error> {
    serde_json::to_string_pretty(report)
}
