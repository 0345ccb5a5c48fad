//! Manifest stage: reads `pki.toml` into raw serde types that mirror the TOML.
//!
//! This stage owns TOML syntax, `${NAME}` variable expansion, unknown keys and value
//! types. It does not interpret certificates: the `model` stage checks meanings.
//! Every error carries a field path and a byte span so that it can be shown with
//! file, line and column.
//!
//! ```
//! let text = r#"
//! [cluster]
//! name = "demo"
//! servers = ["https://${IP}:6443"]
//! "#;
//! let vars = pkic::manifest::Variables::from_pairs([("IP", "192.0.2.10")]);
//! let doc = pkic::manifest::parse(text, &vars).unwrap();
//! assert_eq!(doc.manifest.cluster.servers[0], "https://192.0.2.10:6443");
//! ```

use std::collections::BTreeMap;
use std::fmt;
use std::ops::Range;

use serde::Deserialize;
use serde::de::{self, Deserializer, IntoDeserializer};
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::{Diagnostic, did_you_mean};

mod variables;

pub use variables::Variables;

/// The whole manifest as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawManifest {
    pub cluster: RawCluster,
    #[serde(default)]
    pub defaults: RawDefaults,
    /// Default values of `${NAME}` variables, overridden by the environment and `--set`.
    #[serde(default)]
    pub vars: BTreeMap<String, String>,
    /// Directory of template overrides, relative to the manifest.
    pub templates: Option<String>,
    #[serde(default)]
    pub ca: BTreeMap<String, RawCa>,
    #[serde(default)]
    pub bundle: BTreeMap<String, RawBundle>,
    #[serde(default)]
    pub cert: BTreeMap<String, RawCert>,
    #[serde(default)]
    pub service_account: BTreeMap<String, RawServiceAccount>,
    #[serde(default)]
    pub kubeconfig: BTreeMap<String, RawKubeconfig>,
    #[serde(default)]
    pub binding: BTreeMap<String, RawBinding>,
    #[serde(default)]
    pub flags: RawFlags,
    #[serde(default)]
    pub node: Vec<RawNode>,
    /// File of more nodes (TOML, JSON or CSV), relative to the manifest.
    pub node_inventory: Option<String>,
    #[serde(default)]
    pub per_node: RawPerNode,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCluster {
    pub name: String,
    /// API server URLs; kubeconfigs use the first, the apiserver cert covers all.
    pub servers: Vec<String>,
    pub advertise_address: Option<String>,
    pub service_cidr: Option<String>,
    pub dns_domain: Option<String>,
    /// Host directory that output paths are relative to, `/etc/kubernetes` by default.
    pub install_root: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawDefaults {
    pub key_algorithm: Option<String>,
    pub validity: Option<String>,
    pub ca_validity: Option<String>,
    pub backdate: Option<String>,
    pub key_format: Option<String>,
    /// How long before `notAfter` a rebuild renews a certificate.
    pub renew_before: Option<String>,
}

/// Subject distinguished name. `o` and `ou` take one string or a list.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSubject {
    pub cn: Option<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub o: Vec<String>,
    #[serde(default, deserialize_with = "one_or_many")]
    pub ou: Vec<String>,
    pub c: Option<String>,
    pub st: Option<String>,
    pub l: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCa {
    /// Subject of a CA that pkic creates; taken from the certificate of an imported CA.
    #[serde(default)]
    pub subject: Option<RawSubject>,
    /// Existing CA certificate to sign with, relative to the manifest's directory.
    pub import_cert: Option<String>,
    /// Private key of `import-cert` (PKCS#1, SEC1 or PKCS#8 PEM).
    pub import_key: Option<String>,
    /// Parent CA for an intermediate; absent for a self-signed root.
    pub issuer: Option<String>,
    pub path_len: Option<u8>,
    pub key_algorithm: Option<String>,
    pub validity: Option<String>,
    pub key_format: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// Stage of a declared rotation to a new CA key.
    pub rotation: Option<RawRotation>,
}

/// A staged rotation of a CA or service-account key.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawRotation {
    /// `add-new`, `use-new` or `drop-old`.
    pub stage: String,
    /// Shortest time between the first `use-new` build and `drop-old`.
    pub overlap: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBundle {
    pub cas: Vec<String>,
    pub file: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawCert {
    pub issuer: String,
    pub role: Option<String>,
    pub subject: Option<RawSubject>,
    #[serde(default)]
    pub sans: Vec<String>,
    pub usage: Option<String>,
    pub key_algorithm: Option<String>,
    pub validity: Option<String>,
    pub key_format: Option<String>,
    /// Binding that grants this client its rights when its groups are not built in.
    pub binding: Option<String>,
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
    /// Node roles this per-node certificate is expanded for; all nodes when absent.
    pub node_roles: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawServiceAccount {
    pub key_algorithm: Option<String>,
    pub key_format: Option<String>,
    pub key_file: Option<String>,
    pub public_key_file: Option<String>,
    /// Stage of a declared rotation to a new signing key.
    pub rotation: Option<RawRotation>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawKubeconfig {
    pub file: Option<String>,
    /// Client certificate that authenticates the user.
    pub user: String,
    /// CA or bundle that verifies the API server's serving certificate.
    pub ca: String,
    pub server: Option<String>,
    #[serde(default)]
    pub embed: bool,
    pub user_name: Option<String>,
    pub node_roles: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawBinding {
    pub group: String,
    pub cluster_role: String,
    pub file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawFlags {
    pub kube_apiserver: Option<RawApiserverFlags>,
    pub kube_controller_manager: Option<RawControllerManagerFlags>,
    pub kube_scheduler: Option<RawSchedulerFlags>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawApiserverFlags {
    pub file: Option<String>,
    pub tls_cert: String,
    pub client_ca: String,
    pub kubelet_client: Option<String>,
    pub kubelet_ca: Option<String>,
    pub etcd_ca: Option<String>,
    pub etcd_client: Option<String>,
    pub etcd_servers: Option<Vec<String>>,
    pub service_account: String,
    pub service_account_issuer: Option<String>,
    pub front_proxy_client: Option<String>,
    pub requestheader_ca: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawControllerManagerFlags {
    pub file: Option<String>,
    pub kubeconfig: String,
    pub root_ca: String,
    pub cluster_signing: Option<String>,
    pub service_account: String,
    pub client_ca: Option<String>,
    pub requestheader_ca: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawSchedulerFlags {
    pub file: Option<String>,
    pub kubeconfig: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawKubeletFlags {
    pub file: Option<String>,
    pub kubeconfig: String,
    pub client_ca: String,
    pub tls_cert: String,
    pub node_roles: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawEtcdFlags {
    pub file: Option<String>,
    pub server_cert: String,
    pub peer_cert: String,
    pub trusted_ca: String,
    pub peer_trusted_ca: String,
    pub node_roles: Option<Vec<String>>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawNode {
    pub name: String,
    #[serde(default)]
    pub ips: Vec<String>,
    #[serde(default)]
    pub dns: Vec<String>,
    /// Roles that select which per-node templates apply, `["worker"]` by default.
    pub roles: Option<Vec<String>>,
}

/// Templates expanded once per node; `{node}` in strings is the node's name.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPerNode {
    #[serde(default)]
    pub cert: BTreeMap<String, RawCert>,
    #[serde(default)]
    pub kubeconfig: BTreeMap<String, RawKubeconfig>,
    #[serde(default)]
    pub flags: RawPerNodeFlags,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RawPerNodeFlags {
    pub kubelet: Option<RawKubeletFlags>,
    pub etcd: Option<RawEtcdFlags>,
}

fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<String>, D::Error> {
    struct Visitor;
    impl<'de> de::Visitor<'de> for Visitor {
        type Value = Vec<String>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("a string or a list of strings")
        }
        fn visit_str<E: de::Error>(self, value: &str) -> Result<Self::Value, E> {
            Ok(vec![value.to_string()])
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, seq: A) -> Result<Self::Value, A::Error> {
            Deserialize::deserialize(de::value::SeqAccessDeserializer::new(seq))
        }
    }
    deserializer.deserialize_any(Visitor)
}

/// A parsed manifest with the spans of its fields, for locating later diagnostics.
pub struct Document<'i> {
    pub manifest: RawManifest,
    spans: Spanned<DeTable<'i>>,
}

impl Document<'_> {
    /// Returns the span of the value at a dotted field path, or of its nearest parent.
    pub fn span_of(&self, path: &str) -> Option<Range<usize>> {
        Some(span_at(&self.spans, path))
    }

    /// Attaches the span of each diagnostic's field path where it has none yet.
    pub fn locate(&self, diagnostics: Vec<Diagnostic>) -> Vec<Diagnostic> {
        diagnostics
            .into_iter()
            .map(|d| {
                let span = self.span_of(&d.path);
                d.with_span(span)
            })
            .collect()
    }
}

/// Returns the span of the value at a dotted field path, or of its nearest parent.
fn span_at(root: &Spanned<DeTable<'_>>, path: &str) -> Range<usize> {
    let mut span = root.span();
    let mut table = Some(root.get_ref());
    let mut value: Option<&Spanned<DeValue>> = None;
    for segment in split_path(path) {
        let next = match (segment, table, value) {
            (Segment::Key(key), Some(t), _) => t.get(key),
            (Segment::Key(key), None, Some(v)) => match v.get_ref() {
                DeValue::Table(t) => t.get(key),
                _ => None,
            },
            (Segment::Index(i), _, Some(v)) => match v.get_ref() {
                DeValue::Array(items) => items.get(i),
                _ => None,
            },
            _ => None,
        };
        let Some(next) = next else { break };
        span = next.span();
        value = Some(next);
        table = None;
    }
    span
}

enum Segment<'a> {
    Key(&'a str),
    Index(usize),
}

fn split_path(path: &str) -> Vec<Segment<'_>> {
    let mut segments = Vec::new();
    for part in path.split('.').filter(|p| !p.is_empty()) {
        let (key, rest) = part.split_once('[').unwrap_or((part, ""));
        if !key.is_empty() {
            segments.push(Segment::Key(key));
        }
        for index in rest.split('[') {
            if let Ok(i) = index.trim_end_matches(']').parse() {
                segments.push(Segment::Index(i));
            }
        }
    }
    segments
}

/// Parses manifest text, expands variables and deserializes it into raw types.
///
/// Returns every variable error at once; a syntax or type error stops at the first.
pub fn parse<'i>(text: &'i str, vars: &Variables) -> Result<Document<'i>, Vec<Diagnostic>> {
    let mut table = DeTable::parse(text).map_err(|e| vec![syntax_error(&e)])?;

    let mut errors = Vec::new();
    let manifest_vars = read_manifest_vars(table.get_ref());
    let vars = vars.with_defaults(&manifest_vars);
    variables::expand_table(table.get_mut(), "", &vars, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }

    let spans = table.clone();
    let deserializer = table.into_deserializer();
    let manifest: RawManifest =
        serde_path_to_error::deserialize(deserializer).map_err(|e| vec![type_error(&e, &spans)])?;
    Ok(Document { manifest, spans })
}

fn read_manifest_vars(table: &DeTable) -> BTreeMap<String, String> {
    let Some(vars) = table.get("vars") else {
        return BTreeMap::new();
    };
    let DeValue::Table(vars) = vars.get_ref() else {
        return BTreeMap::new();
    };
    vars.iter()
        .filter_map(|(k, v)| match v.get_ref() {
            DeValue::String(s) => Some((k.get_ref().to_string(), s.to_string())),
            _ => None,
        })
        .collect()
}

fn syntax_error(error: &toml::de::Error) -> Diagnostic {
    Diagnostic::error("", format!("invalid TOML: {}", error.message().trim()))
        .with_span(error.span())
        .with_help("fix the TOML syntax at the marked position")
}

fn type_error(
    error: &serde_path_to_error::Error<toml::de::Error>,
    spans: &Spanned<DeTable<'_>>,
) -> Diagnostic {
    let path = error.path().to_string();
    let path = if path == "." { String::new() } else { path };
    let inner = error.inner();
    let message = inner.message().trim().to_string();
    let mut diagnostic = Diagnostic::error(path.clone(), message.clone());
    if let Some(help) = unknown_key_help(&message).or_else(|| type_help(&message, &path)) {
        diagnostic = diagnostic.with_help(help);
    }
    let span = inner.span().unwrap_or_else(|| span_at(spans, &path));
    diagnostic.with_span(Some(span))
}

/// Builds the "did you mean" hint for serde's `unknown field` and `unknown variant` errors.
fn unknown_key_help(message: &str) -> Option<String> {
    let (kind, rest) = if let Some(rest) = message.strip_prefix("unknown field `") {
        ("key", rest)
    } else {
        ("value", message.strip_prefix("unknown variant `")?)
    };
    let (word, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    match did_you_mean(word, expected.iter().copied()) {
        Some(best) => Some(format!("did you mean `{best}`?")),
        None if expected.is_empty() => Some(format!("remove the {kind} `{word}`")),
        None => Some(format!("use one of: {}", expected.join(", "))),
    }
}

/// Builds the fix for serde's `missing field` and `invalid type` errors.
fn type_help(message: &str, path: &str) -> Option<String> {
    if let Some(rest) = message.strip_prefix("missing field `") {
        let field = rest.split('`').next()?;
        let table = match path {
            "" => "the top level".to_string(),
            path if path.contains('[') => path.to_string(),
            path => format!("[{path}]"),
        };
        return Some(format!("add `{field} = ...` to {table}"));
    }
    let expected = message.rsplit_once(", expected ")?.1;
    let help = if expected.contains("sequence") {
        "write a list in brackets, such as `[\"a\", \"b\"]`"
    } else if expected.contains("or a list") {
        "write a quoted string, or a list of them in brackets"
    } else if expected.contains("string") {
        "quote the value, such as `\"text\"`"
    } else if expected.contains("boolean") {
        "write `true` or `false`, without quotes"
    } else if expected.starts_with('u') || expected.starts_with('i') {
        "write a whole number without quotes, such as `1`"
    } else if expected.contains("map") || expected.contains("struct") {
        "write a table, such as `{ cn = \"name\" }`, or a [section]"
    } else {
        return None;
    };
    Some(help.to_string())
}
