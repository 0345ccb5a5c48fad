//! Parsers for the scalar values of a manifest: durations, key algorithms, key formats,
//! subject alternative names, DNS names and output paths.

use std::fmt;
use std::net::IpAddr;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

use serde::Serialize;

/// Key algorithm of a generated key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyAlgorithm {
    Rsa(u32),
    EcdsaP256,
    EcdsaP384,
    Ed25519,
}

impl KeyAlgorithm {
    pub const NAMES: [&'static str; 6] = [
        "rsa-2048",
        "rsa-3072",
        "rsa-4096",
        "ecdsa-p256",
        "ecdsa-p384",
        "ed25519",
    ];

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "rsa-2048" => Ok(KeyAlgorithm::Rsa(2048)),
            "rsa-3072" => Ok(KeyAlgorithm::Rsa(3072)),
            "rsa-4096" => Ok(KeyAlgorithm::Rsa(4096)),
            "ecdsa-p256" => Ok(KeyAlgorithm::EcdsaP256),
            "ecdsa-p384" => Ok(KeyAlgorithm::EcdsaP384),
            "ed25519" => Ok(KeyAlgorithm::Ed25519),
            other => {
                let bits = other
                    .strip_prefix("rsa-")
                    .or_else(|| other.strip_prefix("rsa"))
                    .and_then(|b| b.parse::<u32>().ok());
                match bits {
                    Some(bits) if bits < 2048 => Err(format!(
                        "RSA keys of {bits} bits are too weak: Kubernetes and current TLS \
                         stacks require at least 2048 bits"
                    )),
                    _ => Err(format!("unknown key algorithm `{other}`")),
                }
            }
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, KeyAlgorithm::Rsa(_))
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyAlgorithm::Rsa(bits) => write!(f, "rsa-{bits}"),
            KeyAlgorithm::EcdsaP256 => f.write_str("ecdsa-p256"),
            KeyAlgorithm::EcdsaP384 => f.write_str("ecdsa-p384"),
            KeyAlgorithm::Ed25519 => f.write_str("ed25519"),
        }
    }
}

/// PEM encoding of a private key file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum KeyFormat {
    /// `BEGIN PRIVATE KEY` (RFC 5208), readable by every Kubernetes component.
    Pkcs8,
    /// `BEGIN RSA PRIVATE KEY` (RFC 8017), for tools that read only that form.
    Pkcs1,
}

impl KeyFormat {
    pub const NAMES: [&'static str; 2] = ["pkcs8", "pkcs1"];

    pub fn parse(text: &str) -> Result<Self, String> {
        match text {
            "pkcs8" => Ok(KeyFormat::Pkcs8),
            "pkcs1" => Ok(KeyFormat::Pkcs1),
            other => Err(format!("unknown key format `{other}`")),
        }
    }
}

/// Parses a duration such as `365d`, `10y`, `8760h`, `5m` or `1y30d`.
///
/// A year is 365 days, as in kubeadm's certificate validity.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let invalid = || {
        format!(
            "invalid duration `{text}`: write a number and a unit, \
             s, m, h, d or y (365 days), such as `365d` or `5m`"
        )
    };
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in text.trim().chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'y' => 365 * 86_400,
            _ => return Err(invalid()),
        };
        let amount: u64 = digits.parse().map_err(|_| invalid())?;
        total = amount
            .checked_mul(unit)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(invalid)?;
        digits.clear();
    }
    if !digits.is_empty() || text.trim().is_empty() {
        return Err(invalid());
    }
    Ok(Duration::from_secs(total))
}

/// Formats a duration in the largest unit that divides it: `365d`, `10y`, `5m`.
pub fn format_duration(duration: Duration) -> String {
    let seconds = duration.as_secs();
    let units = [(365 * 86_400, "y"), (86_400, "d"), (3600, "h"), (60, "m")];
    for (size, unit) in units {
        if seconds >= size && seconds.is_multiple_of(size) {
            return format!("{}{unit}", seconds / size);
        }
    }
    format!("{seconds}s")
}

/// One subject alternative name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum San {
    Dns(String),
    Ip(IpAddr),
    Uri(String),
}

impl San {
    /// Classifies and checks a SAN: an IP address, a URI (has a scheme), or a DNS name.
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Ok(ip) = text.parse::<IpAddr>() {
            return Ok(San::Ip(ip));
        }
        if looks_like_ipv6(text) {
            return Err(format!("invalid IPv6 address `{text}`"));
        }
        if text.contains("://") || text.starts_with("urn:") {
            return check_uri(text).map(|()| San::Uri(text.to_string()));
        }
        if text.contains(':') {
            return Err(format!(
                "`{text}` is neither an IP address, a DNS name nor a URI: a port, zone or \
                 `name:value` has no place in a SAN, and a URI SAN needs `scheme://`"
            ));
        }
        check_dns_name(text, true).map(|()| San::Dns(text.to_string()))
    }
}

impl fmt::Display for San {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            San::Dns(name) => write!(f, "DNS:{name}"),
            San::Ip(ip) => write!(f, "IP:{ip}"),
            San::Uri(uri) => write!(f, "URI:{uri}"),
        }
    }
}

/// True for text made only of hex digits, `:` and `.` with at least two colons: a
/// mistyped IPv6 address, which would otherwise pass as a URI with a hex scheme.
fn looks_like_ipv6(text: &str) -> bool {
    text.matches(':').count() >= 2
        && text
            .chars()
            .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
}

fn check_uri(text: &str) -> Result<(), String> {
    let (scheme, rest) = text
        .split_once(':')
        .ok_or_else(|| format!("invalid URI `{text}`"))?;
    let scheme_ok = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok || rest.is_empty() || text.chars().any(|c| c.is_whitespace()) {
        return Err(format!(
            "`{text}` is neither an IP address nor a valid URI \
             (a URI SAN needs a scheme, such as `spiffe://cluster.local/ns/x`)"
        ));
    }
    Ok(())
}

/// Checks a Kubernetes node name, which the API server requires to be a DNS-1123
/// subdomain: at most 253 characters of lower-case letters, digits, `-` and `.`, with each
/// dot-separated label starting and ending with a letter or digit. The name is also a DNS
/// SAN of the node's certificates, so the rules of [`check_dns_name`] apply as well. They
/// add RFC 1123's 63-character label limit and reject names of digits only.
pub fn check_node_name(name: &str) -> Result<(), String> {
    if let Some(reason) = dns_1123_subdomain_violation(name) {
        return Err(format!(
            "invalid node name `{name}`: a Kubernetes node name must be a DNS-1123 \
             subdomain, but {reason}"
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    let numeric = |label: &&str| label.chars().all(|c| c.is_ascii_digit());
    let reason = if let Some(label) = labels.iter().find(|l| l.len() > 63) {
        format!("label `{label}` is longer than the 63 characters of a DNS label")
    } else if labels.iter().all(numeric) {
        "it is all digits and dots, like an IPv4 address".to_string()
    } else if labels.last().is_some_and(numeric) {
        "its last label is all digits, which TLS libraries reject".to_string()
    } else {
        return check_dns_name(name, false)
            .map_err(|message| format!("invalid node name `{name}`: {message}"));
    };
    Err(format!(
        "invalid node name `{name}`: the node's certificates carry it as a DNS name, but \
         {reason}"
    ))
}

/// Returns why a name is not a DNS-1123 subdomain, or `None` when it is one.
fn dns_1123_subdomain_violation(name: &str) -> Option<String> {
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.';
    if name.is_empty() || name.len() > 253 {
        return Some(format!("it has {} characters, not 1 to 253", name.len()));
    }
    if let Some(c) = name.chars().find(|&c| !allowed(c)) {
        return Some(format!(
            "`{c}` is not a lower-case letter, digit, `-` or `.`"
        ));
    }
    let label = name
        .split('.')
        .find(|l| l.is_empty() || l.starts_with('-') || l.ends_with('-'))?;
    if label.is_empty() {
        Some("it starts or ends with `.` or has two `.` in a row".to_string())
    } else {
        Some(format!("label `{label}` starts or ends with `-`"))
    }
}

/// Returns a valid node name close to an invalid one: lower case, `_` and white space
/// as `-`, and no `-` or `.` at either end.
pub fn suggest_node_name(name: &str) -> Option<String> {
    let lower: String = name
        .trim()
        .chars()
        .map(|c| match c {
            '_' | ' ' | '\t' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect();
    let suggestion = lower.trim_matches(['-', '.']).to_string();
    let changed = suggestion != name;
    (changed && check_node_name(&suggestion).is_ok()).then_some(suggestion)
}

/// Checks a DNS name as RFC 1123 host names; `allow_wildcard` permits a leading `*.`.
pub fn check_dns_name(text: &str, allow_wildcard: bool) -> Result<(), String> {
    let name = match text.strip_prefix("*.") {
        Some(rest) if allow_wildcard => rest,
        _ => text,
    };
    if name.is_empty() || name.len() > 253 {
        return Err(format!(
            "invalid DNS name `{text}`: must be 1 to 253 characters"
        ));
    }
    let labels: Vec<&str> = name.split('.').collect();
    let numeric = |label: &&str| label.chars().all(|c| c.is_ascii_digit());
    let all_numeric = labels.iter().all(numeric);
    if labels.len() > 1 && labels.last().is_some_and(numeric) && !all_numeric {
        return Err(format!(
            "invalid DNS name `{text}`: its last label is all digits, which TLS libraries \
             reject"
        ));
    }
    if labels.iter().all(|l| l.chars().all(|c| c.is_ascii_digit())) {
        return Err(format!(
            "invalid IP address `{text}`: it has the shape of an IPv4 address \
             but is not one"
        ));
    }
    for label in labels {
        let valid = !label.is_empty()
            && label.len() <= 63
            && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
            && !label.starts_with('-')
            && !label.ends_with('-');
        if !valid {
            return Err(format!(
                "invalid DNS name `{text}`: label `{label}` must be 1 to 63 letters, \
                 digits or `-`, and may not start or end with `-`"
            ));
        }
    }
    Ok(())
}

/// Checks an output path: relative, with no `..`, so it stays inside the output directory.
pub fn check_relative_path(text: &str) -> Result<PathBuf, String> {
    let path = Path::new(text);
    if text.is_empty() {
        return Err("the path is empty".to_string());
    }
    if text.contains('\\') || text.contains('\0') {
        return Err(format!("path `{text}` contains a backslash or NUL"));
    }
    if path.is_absolute() {
        return Err(format!(
            "path `{text}` is absolute, so it would escape the output directory"
        ));
    }
    let mut clean = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => clean.push(part),
            Component::CurDir => {}
            _ => {
                return Err(format!(
                    "path `{text}` would escape the output directory: \
                     output paths are relative and may not contain `..`"
                ));
            }
        }
    }
    if clean.as_os_str().is_empty() {
        return Err(format!("path `{text}` names no file"));
    }
    let first = clean
        .components()
        .next()
        .map(|c| c.as_os_str().to_string_lossy().into_owned());
    if first
        .as_deref()
        .is_some_and(|f| f.starts_with(".pkic") || f == ".backup")
    {
        return Err(format!(
            "path `{text}` is inside pkic's own state (`.backup/` and `.pkic*` in the output \
             directory)"
        ));
    }
    Ok(clean)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn duration_units() {
        assert_eq!(
            parse_duration("365d").unwrap(),
            Duration::from_secs(365 * 86_400)
        );
        assert_eq!(parse_duration("5m").unwrap(), Duration::from_secs(300));
        assert_eq!(
            parse_duration("1y30d").unwrap(),
            Duration::from_secs(395 * 86_400)
        );
    }

    #[test]
    fn duration_without_unit_rejected() {
        assert!(parse_duration("365").is_err());
        assert!(parse_duration("").is_err());
        assert!(parse_duration("3w").is_err());
    }

    #[test]
    fn duration_round_trips_through_format() {
        assert_eq!(format_duration(parse_duration("10y").unwrap()), "10y");
        assert_eq!(format_duration(parse_duration("8760h").unwrap()), "1y");
        assert_eq!(format_duration(parse_duration("90s").unwrap()), "90s");
    }

    #[test]
    fn short_rsa_key_rejected() {
        let error = KeyAlgorithm::parse("rsa-1024").unwrap_err();
        assert!(error.contains("at least 2048"), "{error}");
    }

    #[test]
    fn san_classification() {
        assert_eq!(
            San::parse("10.96.0.1").unwrap(),
            San::Ip("10.96.0.1".parse().unwrap())
        );
        assert_eq!(San::parse("::1").unwrap(), San::Ip("::1".parse().unwrap()));
        assert_eq!(
            San::parse("kubernetes").unwrap(),
            San::Dns("kubernetes".into())
        );
        assert!(matches!(San::parse("spiffe://c/x").unwrap(), San::Uri(_)));
    }

    #[test]
    fn bad_ipv4_is_not_a_dns_name() {
        let error = San::parse("192.168.1.300").unwrap_err();
        assert!(error.contains("invalid IP address"), "{error}");
    }

    #[test]
    fn bad_ipv6_is_not_a_uri() {
        let error = San::parse("fe80::1::2").unwrap_err();
        assert!(error.contains("invalid IPv6 address"), "{error}");
        assert!(San::parse("2001:db8::g").is_err());
    }

    #[test]
    fn bad_dns_names_rejected() {
        assert!(San::parse("bad_name.example").is_err());
        assert!(San::parse("-lead.example").is_err());
        assert!(San::parse("a..b").is_err());
        assert!(San::parse("has space").is_err());
    }

    #[test]
    fn node_names_checked_as_dns_1123_subdomains() {
        for valid in ["worker-1", "worker-1.example.com", "a", "node1", "1node"] {
            assert_eq!(check_node_name(valid), Ok(()), "{valid}");
        }
        let long_name = vec!["a".repeat(63); 5].join(".");
        let subdomain_cases = [
            ("", "it has 0 characters, not 1 to 253"),
            (long_name.as_str(), "it has 319 characters"),
            ("Worker-1", "`W` is not a lower-case letter"),
            ("worker_1", "`_` is not a lower-case letter"),
            ("worker-1.", "starts or ends with `.`"),
            ("a..b", "two `.` in a row"),
            ("-worker", "label `-worker` starts or ends with `-`"),
        ];
        for (name, reason) in subdomain_cases {
            let error = check_node_name(name).unwrap_err();
            assert!(
                error.starts_with(&format!("invalid node name `{name}`: ")),
                "{error}"
            );
            assert!(
                error.contains("must be a DNS-1123 subdomain, but"),
                "{error}"
            );
            assert!(error.contains(reason), "{name}: {error}");
        }
        let long_label = "a".repeat(64);
        let certificate_cases = [
            (
                long_label.as_str(),
                "is longer than the 63 characters of a DNS label",
            ),
            ("10.0.0.1", "it is all digits and dots"),
            ("1234", "it is all digits and dots"),
            ("worker.1", "its last label is all digits"),
        ];
        for (name, reason) in certificate_cases {
            let error = check_node_name(name).unwrap_err();
            assert!(error.contains("carry it as a DNS name, but"), "{error}");
            assert!(error.contains(reason), "{name}: {error}");
        }
    }

    #[test]
    fn node_name_suggestions() {
        assert_eq!(suggest_node_name("Worker_1"), Some("worker-1".into()));
        assert_eq!(suggest_node_name("worker-1."), Some("worker-1".into()));
        assert_eq!(suggest_node_name("worker-1"), None);
        assert_eq!(suggest_node_name("wörker"), None);
    }

    #[test]
    fn escaping_paths_rejected() {
        assert!(check_relative_path("../etc/passwd").is_err());
        assert!(check_relative_path("/etc/passwd").is_err());
        assert!(check_relative_path("pki/../../x").is_err());
        assert_eq!(
            check_relative_path("./pki/ca.crt").unwrap(),
            PathBuf::from("pki/ca.crt")
        );
    }
}
