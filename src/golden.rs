//! Golden stage: the public, deterministic part of a build, and its comparison with a
//! directory of expected files.
//!
//! The public outputs are the kubeconfigs in path-reference mode, the flag files, the
//! RBAC manifests, `certificates.txt` (a profile of each certificate read back from its
//! DER: subject, issuer, SANs, key algorithm, usages, CA flag and path length, validity
//! length) and `files.txt` (every output with its mode and install path). No date,
//! serial or key byte appears in them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::io;
use std::path::Path;
use std::time::Duration;

use similar::TextDiff;
use walkdir::WalkDir;
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};
use x509_parser::public_key::PublicKey;

use crate::emit::OutFile;
use crate::issue::Issued;
use crate::model::{Model, OutputFile, values::format_duration};
use crate::render::Rendered;

/// Builds the public outputs: relative path to text.
pub fn public_outputs(
    model: &Model,
    issued: &Issued,
    path_mode: &[Rendered],
    files: &[OutFile],
) -> BTreeMap<String, String> {
    let mut outputs = BTreeMap::new();
    for rendered in path_mode {
        outputs.insert(
            rendered.file.relative.display().to_string(),
            rendered.text.clone(),
        );
    }
    outputs.insert(
        "certificates.txt".into(),
        certificate_profiles(model, issued),
    );
    outputs.insert("files.txt".into(), file_list(model, files));
    outputs
}

fn certificate_profiles(model: &Model, issued: &Issued) -> String {
    let mut text = String::new();
    for ca in &model.cas {
        profile(
            &mut text,
            &format!("ca {}", ca.id),
            &ca.cert_file,
            &issued.cas[&ca.id].der,
            model.backdate,
        );
    }
    for cert in &model.certs {
        profile(
            &mut text,
            &format!("cert {}", cert.id),
            &cert.cert_file,
            &issued.certs[&cert.id].der,
            model.backdate,
        );
    }
    for account in &model.service_accounts {
        let _ = writeln!(text, "[service-account {}]", account.id);
        let _ = writeln!(text, "key = {}", account.key.algorithm);
        let _ = writeln!(text, "key-file = {}", account.key_file.relative.display());
        let _ = writeln!(
            text,
            "public-key-file = {}\n",
            account.public_key_file.relative.display()
        );
    }
    for bundle in &model.bundles {
        let _ = writeln!(text, "[bundle {}]", bundle.id);
        let _ = writeln!(text, "file = {}", bundle.file.relative.display());
        let _ = writeln!(text, "cas = {}\n", bundle.cas.join(", "));
    }
    text
}

fn profile(text: &mut String, title: &str, file: &OutputFile, der: &[u8], backdate: Duration) {
    let _ = writeln!(text, "[{title}]");
    let _ = writeln!(text, "file = {}", file.relative.display());
    match X509Certificate::from_der(der) {
        Ok((_, cert)) => write_profile(text, &cert, backdate),
        Err(e) => {
            let _ = writeln!(text, "error = unparsable certificate: {e}");
        }
    }
    text.push('\n');
}

fn write_profile(text: &mut String, cert: &X509Certificate, backdate: Duration) {
    let issuer = if cert.subject() == cert.issuer() {
        "(self-signed)".to_string()
    } else {
        cert.issuer().to_string()
    };
    let _ = writeln!(text, "subject = {}", cert.subject());
    let _ = writeln!(text, "issuer = {issuer}");
    let _ = writeln!(text, "key = {}", key_name(cert));
    let _ = writeln!(text, "signature = {}", signature_name(cert));
    let (is_ca, path_len) = match cert.basic_constraints() {
        Ok(Some(bc)) => (bc.value.ca, bc.value.path_len_constraint),
        _ => (false, None),
    };
    let path_len = path_len.map_or("none".to_string(), |n| n.to_string());
    let _ = writeln!(text, "ca = {is_ca}, path-len = {path_len}");
    let _ = writeln!(text, "key-usage = {}", key_usages(cert));
    let _ = writeln!(text, "extended-key-usage = {}", extended_key_usages(cert));
    let _ = writeln!(text, "sans = {}", sans(cert));
    let has_skid = cert
        .extensions()
        .iter()
        .any(|e| e.oid.to_id_string() == "2.5.29.14");
    let has_akid = cert
        .extensions()
        .iter()
        .any(|e| e.oid.to_id_string() == "2.5.29.35");
    let _ = writeln!(
        text,
        "key-identifiers = subject {}, authority {}",
        yes_no(has_skid),
        yes_no(has_akid)
    );
    let span = cert.validity().not_after.timestamp() - cert.validity().not_before.timestamp();
    let validity = Duration::from_secs(span.max(0) as u64).saturating_sub(backdate);
    let _ = writeln!(
        text,
        "validity = {} (notBefore backdated {})",
        format_duration(validity),
        format_duration(backdate)
    );
}

fn yes_no(value: bool) -> &'static str {
    if value { "yes" } else { "no" }
}

fn key_name(cert: &X509Certificate) -> String {
    let spki = cert.public_key();
    match spki.parsed() {
        Ok(PublicKey::RSA(rsa)) => format!("rsa-{}", rsa.key_size()),
        Ok(PublicKey::EC(_)) => {
            let curve = spki
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.as_oid().ok())
                .map(|o| o.to_id_string());
            match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "ecdsa-p256".into(),
                Some("1.3.132.0.34") => "ecdsa-p384".into(),
                other => format!("ecdsa ({})", other.unwrap_or("unknown curve")),
            }
        }
        _ if spki.algorithm.algorithm.to_id_string() == "1.3.101.112" => "ed25519".into(),
        _ => format!("unknown ({})", spki.algorithm.algorithm.to_id_string()),
    }
}

fn signature_name(cert: &X509Certificate) -> String {
    let oid = cert.signature_algorithm.algorithm.to_id_string();
    match oid.as_str() {
        "1.2.840.113549.1.1.11" => "sha256WithRSAEncryption".into(),
        "1.2.840.10045.4.3.2" => "ecdsa-with-SHA256".into(),
        "1.2.840.10045.4.3.3" => "ecdsa-with-SHA384".into(),
        "1.3.101.112" => "ed25519".into(),
        _ => oid,
    }
}

fn key_usages(cert: &X509Certificate) -> String {
    let Ok(Some(usage)) = cert.key_usage() else {
        return "-".into();
    };
    let usage = usage.value;
    let names = [
        (usage.digital_signature(), "digitalSignature"),
        (usage.non_repudiation(), "nonRepudiation"),
        (usage.key_encipherment(), "keyEncipherment"),
        (usage.data_encipherment(), "dataEncipherment"),
        (usage.key_agreement(), "keyAgreement"),
        (usage.key_cert_sign(), "keyCertSign"),
        (usage.crl_sign(), "cRLSign"),
    ];
    join_set(&names)
}

fn extended_key_usages(cert: &X509Certificate) -> String {
    let Ok(Some(usage)) = cert.extended_key_usage() else {
        return "-".into();
    };
    let usage = usage.value;
    join_set(&[
        (usage.server_auth, "serverAuth"),
        (usage.client_auth, "clientAuth"),
    ])
}

fn join_set(names: &[(bool, &str)]) -> String {
    let set: Vec<&str> = names
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
    if set.is_empty() {
        "-".into()
    } else {
        set.join(", ")
    }
}

fn sans(cert: &X509Certificate) -> String {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return "-".into();
    };
    let names: Vec<String> = san
        .value
        .general_names
        .iter()
        .map(|name| match name {
            GeneralName::DNSName(dns) => format!("DNS:{dns}"),
            GeneralName::URI(uri) => format!("URI:{uri}"),
            GeneralName::IPAddress(bytes) => match bytes.len() {
                4 => format!(
                    "IP:{}",
                    std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*bytes).expect("length checked"))
                ),
                16 => format!(
                    "IP:{}",
                    std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*bytes).expect("length checked"))
                ),
                _ => "IP:(malformed)".into(),
            },
            other => format!("{other:?}"),
        })
        .collect();
    names.join(", ")
}

fn file_list(model: &Model, files: &[OutFile]) -> String {
    let installs = model.install_paths();
    let mut text = String::new();
    let mut files: Vec<&OutFile> = files.iter().collect();
    files.sort_by(|a, b| a.relative.cmp(&b.relative));
    for file in files {
        let relative = file.relative.display().to_string();
        let install = installs.get(&relative).map_or("-", String::as_str);
        let _ = writeln!(text, "{:04o} {relative} -> {install}", file.mode());
    }
    text
}

/// Reads every file under `dir` as relative path to text.
pub fn read_dir(dir: &Path) -> io::Result<BTreeMap<String, String>> {
    let mut files = BTreeMap::new();
    for entry in WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(io::Error::other)?;
        if entry.file_type().is_file() {
            let relative = entry
                .path()
                .strip_prefix(dir)
                .expect("walkdir yields paths under dir");
            files.insert(
                relative.display().to_string(),
                fs::read_to_string(entry.path())?,
            );
        }
    }
    Ok(files)
}

/// Returns a unified diff of expected against actual, empty when they match.
pub fn diff(expected: &BTreeMap<String, String>, actual: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let empty = String::new();
    let paths: std::collections::BTreeSet<&String> = expected.keys().chain(actual.keys()).collect();
    for path in paths {
        let old = expected.get(path).unwrap_or(&empty);
        let new = actual.get(path).unwrap_or(&empty);
        if old == new && expected.contains_key(path) == actual.contains_key(path) {
            continue;
        }
        let old_name = if expected.contains_key(path) {
            format!("expected/{path}")
        } else {
            "/dev/null".into()
        };
        let new_name = if actual.contains_key(path) {
            format!("actual/{path}")
        } else {
            "/dev/null".into()
        };
        let _ = write!(
            out,
            "{}",
            TextDiff::from_lines(old, new)
                .unified_diff()
                .context_radius(3)
                .header(&old_name, &new_name)
        );
    }
    out
}

/// Replaces the contents of `dir`, a directory of golden files, with `outputs`.
///
/// Refuses a directory that does not look like golden files: one with keys, pkic's output
/// state, or files but no `files.txt` and `certificates.txt`, such as an output directory
/// or a project directory named by mistake.
pub fn write_dir(dir: &Path, outputs: &BTreeMap<String, String>) -> io::Result<()> {
    if dir.exists() {
        let existing = read_dir_names(dir)?;
        let looks_golden = existing.is_empty()
            || (existing.contains("files.txt") && existing.contains("certificates.txt"));
        let has_secrets = existing.iter().any(|name| {
            name.ends_with(".key") || name.starts_with(".pkic") || name.starts_with(".backup")
        });
        if !looks_golden || has_secrets {
            return Err(io::Error::other(format!(
                "{} is not a directory of golden files (it has other files, keys or pkic \
                 state), so it is left alone; name an empty or golden directory",
                dir.display()
            )));
        }
        for name in existing.difference(&outputs.keys().cloned().collect()) {
            fs::remove_file(dir.join(name))?;
        }
    }
    for (path, text) in outputs {
        let target = dir.join(path);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::write(target, text)?;
    }
    Ok(())
}

fn read_dir_names(dir: &Path) -> io::Result<std::collections::BTreeSet<String>> {
    let mut names = std::collections::BTreeSet::new();
    for entry in WalkDir::new(dir) {
        let entry = entry.map_err(io::Error::other)?;
        if !entry.file_type().is_dir() {
            let relative = entry
                .path()
                .strip_prefix(dir)
                .expect("walkdir yields paths under dir");
            names.insert(relative.display().to_string());
        }
    }
    Ok(names)
}
