//! The expiry table, in the shape of `kubeadm certs check-expiration`: every distinct
//! certificate of the tree, including those embedded in kubeconfigs, with its expiry,
//! residual time, issuer and whether pkic manages the file.

use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Context;

/// One row of the table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Store label: a path, or `FILE: FIELD` for kubeconfig data; `#N` marks the Nth
    /// certificate of a file that contains several.
    pub name: String,
    pub subject: String,
    /// RFC 3339.
    pub expires: String,
    #[serde(skip)]
    pub not_after: i64,
    pub residual_seconds: i64,
    pub residual: String,
    pub issuer: String,
    pub is_ca: bool,
    /// `None` when the tree has no `.pkic-outputs` list.
    pub managed_by_pkic: Option<bool>,
    /// Validity at the `--at` time, when one is given.
    pub valid_at: Option<bool>,
}

/// Builds the table, leaves first, then CAs, each sorted by name.
pub fn table(ctx: &Context) -> Vec<Row> {
    let mut rows = Vec::new();
    let mut seen: std::collections::HashSet<&[u8]> = std::collections::HashSet::new();
    for (label, file) in ctx.store.preferred_files() {
        for (index, cert) in file.certs.iter().enumerate() {
            if !seen.insert(cert.der.as_slice()) {
                continue;
            }
            let name = if file.certs.len() > 1 {
                format!("{label}#{}", index + 1)
            } else {
                label.clone()
            };
            let file_name = label.split(": ").next().unwrap_or(label);
            rows.push(Row {
                name,
                subject: cert.subject.clone(),
                expires: format_rfc3339(cert.not_after),
                not_after: cert.not_after,
                residual_seconds: cert.not_after - ctx.now,
                residual: format_residual(cert.not_after - ctx.now),
                issuer: issuer_name(&cert.issuer),
                is_ca: cert.is_ca(),
                managed_by_pkic: ctx.layout.is_managed(file_name),
                valid_at: ctx
                    .at
                    .map(|at| at >= cert.not_before && at <= cert.not_after),
            });
        }
    }
    rows.sort_by(|a, b| (a.is_ca, &a.name).cmp(&(b.is_ca, &b.name)));
    rows
}

/// Returns the issuer's CN, or its whole name when it has none.
fn issuer_name(issuer: &str) -> String {
    issuer
        .split(", ")
        .find_map(|part| part.strip_prefix("CN="))
        .unwrap_or(issuer)
        .to_string()
}

/// Formats Unix seconds as `2026-12-04 17:10 UTC`.
pub fn format_time(seconds: i64) -> String {
    let Ok(time) = OffsetDateTime::from_unix_timestamp(seconds) else {
        return seconds.to_string();
    };
    time.format(time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute] UTC"
    ))
    .unwrap_or_else(|_| seconds.to_string())
}

fn format_rfc3339(seconds: i64) -> String {
    OffsetDateTime::from_unix_timestamp(seconds)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_else(|| seconds.to_string())
}

/// Formats a remaining time as kubeadm does: years past two years, else days, else
/// hours; `expired` when it is past.
pub fn format_residual(seconds: i64) -> String {
    if seconds <= 0 {
        return "expired".into();
    }
    let days = seconds / 86_400;
    if days >= 730 {
        // Rounded to the nearest year, so that a CA made for 10 years shows 10y, not 9y.
        format!("{}y", (days + 182) / 365)
    } else if days >= 1 {
        format!("{days}d")
    } else {
        format!("{}h", seconds / 3600)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residual_units() {
        assert_eq!(format_residual(-5), "expired");
        assert_eq!(format_residual(3 * 3600), "3h");
        assert_eq!(format_residual(364 * 86_400), "364d");
        assert_eq!(format_residual(3650 * 86_400), "10y");
        assert_eq!(format_residual(3650 * 86_400 - 60), "10y");
        assert_eq!(format_residual(800 * 86_400), "2y");
    }

    #[test]
    fn time_format() {
        assert_eq!(format_time(0), "1970-01-01 00:00 UTC");
    }
}
