//! Model stage: checks the raw manifest and resolves it into validated types.
//!
//! Later stages see only these types: every name, address, duration, key algorithm,
//! output path and reference here is already checked, per-node templates are expanded,
//! and role defaults are filled in. All problems are collected and reported together.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;
use serde::Serialize;

use crate::diag::{Diagnostic, Severity, did_you_mean};
use crate::manifest::{Document, RawManifest, RawNode, RawSubject};
use rotation::{Rotation, RotationFiles};

mod cas;
mod certs;
mod flags;
mod import;
mod inventory;
pub mod roles;
pub mod rotation;
pub mod values;
mod wiring;

pub use flags::{Component, FlagFile};
pub use roles::Role;
pub use values::{KeyAlgorithm, KeyFormat, San};

/// A fully checked manifest.
#[derive(Debug)]
pub struct Model {
    pub cluster: Cluster,
    pub cas: Vec<Ca>,
    pub bundles: Vec<Bundle>,
    pub certs: Vec<Cert>,
    pub service_accounts: Vec<ServiceAccount>,
    pub kubeconfigs: Vec<Kubeconfig>,
    pub bindings: Vec<Binding>,
    pub flag_files: Vec<FlagFile>,
    pub nodes: Vec<Node>,
    /// Directory of template overrides named by the manifest, resolved against it.
    pub templates: Option<PathBuf>,
    /// Backdating of every `notBefore`, against clock skew between hosts.
    pub backdate: Duration,
    /// How long before `notAfter` a rebuild renews a certificate.
    pub renew_before: Duration,
    index: Index,
}

#[derive(Debug, Clone, Serialize)]
pub struct Cluster {
    pub name: String,
    pub servers: Vec<String>,
    /// Host part of each server URL.
    pub server_hosts: Vec<San>,
    pub advertise_address: Option<IpAddr>,
    pub service_cidrs: Vec<IpNet>,
    /// First address of each service range: the `kubernetes` Service's ClusterIP.
    pub service_ips: Vec<IpAddr>,
    pub dns_domain: String,
    pub install_root: String,
}

/// A file written under the output directory and installed at `install` on its host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputFile {
    pub relative: PathBuf,
    pub install: String,
}

/// Key settings of one key pair.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KeySpec {
    pub algorithm: KeyAlgorithm,
    pub format: KeyFormat,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Subject {
    pub common_name: Option<String>,
    pub organizations: Vec<String>,
    pub organizational_units: Vec<String>,
    pub country: Option<String>,
    pub state: Option<String>,
    pub locality: Option<String>,
}

impl Subject {
    fn from_raw(raw: &RawSubject) -> Self {
        Subject {
            common_name: raw.cn.clone(),
            organizations: raw.o.clone(),
            organizational_units: raw.ou.clone(),
            country: raw.c.clone(),
            state: raw.st.clone(),
            locality: raw.l.clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Ca {
    pub id: String,
    pub subject: Subject,
    /// Parent CA id for an intermediate, `None` for a self-signed root.
    pub issuer: Option<String>,
    pub path_len: Option<u8>,
    pub key: KeySpec,
    pub validity: Duration,
    pub cert_file: OutputFile,
    pub key_file: OutputFile,
    /// The existing certificate and key of an imported CA, which pkic never rewrites.
    pub imported: Option<ImportedCa>,
    /// A declared rotation to a new CA key, if any.
    pub rotation: Option<Rotation>,
    pub rotation_files: RotationFiles,
}

impl Ca {
    /// Returns the file that trust references to this CA name.
    pub fn trust_file(&self) -> &OutputFile {
        match (&self.rotation, &self.rotation_files.trust) {
            (Some(rotation), Some(trust)) if rotation.stage.trusts_both() => trust,
            _ => &self.cert_file,
        }
    }
}

/// A CA certificate and key read from outside the output directory.
#[derive(Debug, Clone)]
pub struct ImportedCa {
    pub cert_der: Vec<u8>,
    /// The CA's private key, or `None` for a CA imported with `import-cert` alone (an
    /// offline root or an HSM): pkic then writes CSRs for what it signs.
    pub key_pem: Option<String>,
    pub source: PathBuf,
}

/// Extended key usages of a leaf, mapped to keyUsage and extendedKeyUsage by `issue`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Usage {
    Server,
    Client,
    Both,
}

impl Usage {
    pub const NAMES: [&'static str; 3] = ["server", "client", "both"];

    pub fn parse(text: &str) -> Option<Usage> {
        match text {
            "server" => Some(Usage::Server),
            "client" => Some(Usage::Client),
            "both" | "server-client" => Some(Usage::Both),
            _ => None,
        }
    }

    pub fn serves(self) -> bool {
        matches!(self, Usage::Server | Usage::Both)
    }

    pub fn authenticates_client(self) -> bool {
        matches!(self, Usage::Client | Usage::Both)
    }
}

#[derive(Debug, Clone)]
pub struct Cert {
    pub id: String,
    /// Manifest path of the table that declared it, for messages.
    pub origin: String,
    pub node: Option<String>,
    pub issuer: String,
    pub role: Option<Role>,
    pub subject: Subject,
    pub sans: Vec<San>,
    pub usage: Usage,
    pub key: KeySpec,
    pub validity: Duration,
    pub binding: Option<String>,
    pub cert_file: OutputFile,
    pub key_file: OutputFile,
}

#[derive(Debug, Clone)]
pub struct Bundle {
    pub id: String,
    pub cas: Vec<String>,
    pub file: OutputFile,
}

#[derive(Debug, Clone)]
pub struct ServiceAccount {
    pub id: String,
    pub key: KeySpec,
    pub key_file: OutputFile,
    /// The public keys that verify tokens: the current key's, and during a rotation
    /// also the other key's.
    pub public_key_file: OutputFile,
    /// A declared rotation to a new signing key, if any.
    pub rotation: Option<Rotation>,
    pub rotation_files: RotationFiles,
}

#[derive(Debug, Clone)]
pub struct Kubeconfig {
    pub id: String,
    pub origin: String,
    pub node: Option<String>,
    pub file: OutputFile,
    /// Client certificate id.
    pub user: String,
    /// CA or bundle id that verifies the API server.
    pub ca: String,
    pub server: String,
    pub embed: bool,
    pub user_name: String,
    pub cluster_name: String,
}

#[derive(Debug, Clone)]
pub struct Binding {
    pub id: String,
    pub group: String,
    pub cluster_role: String,
    pub file: OutputFile,
}

#[derive(Debug, Clone, Serialize)]
pub struct Node {
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub dns: Vec<String>,
    pub roles: Vec<String>,
}

/// Positions of objects by id, so lookups stay constant-time with thousands of nodes.
#[derive(Debug, Default)]
pub struct Index {
    cas: HashMap<String, usize>,
    certs: HashMap<String, usize>,
    bundles: HashMap<String, usize>,
    kubeconfigs: HashMap<String, usize>,
    nodes: HashMap<String, usize>,
}

fn positions<T>(items: &[T], id: impl Fn(&T) -> &str) -> HashMap<String, usize> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| (id(item).to_string(), i))
        .collect()
}

impl Model {
    fn build_index(&mut self) {
        self.index = Index {
            cas: positions(&self.cas, |c| &c.id),
            certs: positions(&self.certs, |c| &c.id),
            bundles: positions(&self.bundles, |b| &b.id),
            kubeconfigs: positions(&self.kubeconfigs, |k| &k.id),
            nodes: positions(&self.nodes, |n| &n.name),
        };
    }

    pub fn ca(&self, id: &str) -> Option<&Ca> {
        self.index.cas.get(id).map(|&i| &self.cas[i])
    }

    pub fn cert(&self, id: &str) -> Option<&Cert> {
        self.index.certs.get(id).map(|&i| &self.certs[i])
    }

    pub fn bundle(&self, id: &str) -> Option<&Bundle> {
        self.index.bundles.get(id).map(|&i| &self.bundles[i])
    }

    pub fn kubeconfig(&self, id: &str) -> Option<&Kubeconfig> {
        self.index
            .kubeconfigs
            .get(id)
            .map(|&i| &self.kubeconfigs[i])
    }

    pub fn node(&self, name: &str) -> Option<&Node> {
        self.index.nodes.get(name).map(|&i| &self.nodes[i])
    }

    /// Returns the install path of every output file, by its path under the output
    /// directory.
    pub fn install_paths(&self) -> BTreeMap<String, String> {
        let mut files: Vec<&OutputFile> = Vec::new();
        for ca in &self.cas {
            files.extend([&ca.cert_file, &ca.key_file]);
            files.extend(ca.rotation_files.all());
        }
        for cert in &self.certs {
            files.extend([&cert.cert_file, &cert.key_file]);
        }
        for account in &self.service_accounts {
            files.extend([&account.key_file, &account.public_key_file]);
            files.extend(account.rotation_files.all());
        }
        files.extend(self.bundles.iter().map(|b| &b.file));
        files.extend(self.kubeconfigs.iter().map(|k| &k.file));
        files.extend(self.flag_files.iter().map(|f| &f.file));
        files.extend(self.bindings.iter().map(|b| &b.file));
        files
            .into_iter()
            .map(|f| (f.relative.display().to_string(), f.install.clone()))
            .collect()
    }

    /// Returns the output paths of every rotation file (staged keys and CA
    /// certificates, CA trust files), which only pkic writes.
    pub fn rotation_paths(&self) -> Vec<PathBuf> {
        let cas = self.cas.iter().flat_map(|c| c.rotation_files.all());
        let accounts = self
            .service_accounts
            .iter()
            .flat_map(|a| a.rotation_files.all());
        cas.chain(accounts).map(|f| f.relative.clone()).collect()
    }

    /// Returns the file that contains the trust anchors of a CA or bundle id: a CA's
    /// trust file while a rotation trusts its old and new certificate, else its
    /// certificate.
    pub fn trust_file(&self, id: &str) -> Option<&OutputFile> {
        self.ca(id)
            .map(Ca::trust_file)
            .or_else(|| self.bundle(id).map(|b| &b.file))
    }

    /// Returns the CA ids that a CA or bundle id trusts.
    pub fn trusted_cas(&self, id: &str) -> Vec<String> {
        match self.bundle(id) {
            Some(bundle) => bundle.cas.clone(),
            None => vec![id.to_string()],
        }
    }
}

/// Settings shared by every object unless it overrides them.
#[derive(Debug, Clone, Copy)]
struct Defaults {
    key: KeySpec,
    validity: Duration,
    ca_validity: Duration,
}

/// Collects diagnostics while the raw manifest is checked.
pub(crate) struct Checker<'a> {
    pub(crate) raw: &'a RawManifest,
    diagnostics: Vec<Diagnostic>,
    defaults: Defaults,
    /// Directory that relative input paths, such as an imported CA's, start from.
    manifest_dir: PathBuf,
}

impl<'a> Checker<'a> {
    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) -> &mut Diagnostic {
        self.diagnostics.push(Diagnostic::error(path, message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    fn warning(&mut self, path: impl Into<String>, message: impl Into<String>) -> &mut Diagnostic {
        self.diagnostics.push(Diagnostic::warning(path, message));
        self.diagnostics.last_mut().expect("just pushed")
    }

    /// True when an error was already reported for the field at `path`.
    fn has_error_at(&self, path: &str) -> bool {
        self.diagnostics
            .iter()
            .any(|d| d.severity == Severity::Error && d.path == path)
    }

    fn key_spec(
        &mut self,
        path: &str,
        algorithm: Option<&String>,
        format: Option<&String>,
    ) -> KeySpec {
        let mut key = self.defaults.key;
        if let Some(text) = algorithm {
            match KeyAlgorithm::parse(text) {
                Ok(algorithm) => key.algorithm = algorithm,
                Err(message) => {
                    let help = hint(text, &KeyAlgorithm::NAMES);
                    self.error(format!("{path}.key-algorithm"), message).help = Some(help);
                }
            }
        }
        if let Some(text) = format {
            match KeyFormat::parse(text) {
                Ok(format) => key.format = format,
                Err(message) => {
                    let help = hint(text, &KeyFormat::NAMES);
                    self.error(format!("{path}.key-format"), message).help = Some(help);
                }
            }
        }
        if key.format == KeyFormat::Pkcs1 && !key.algorithm.is_rsa() {
            self.error(
                format!("{path}.key-format"),
                format!(
                    "key format `pkcs1` applies to RSA keys only, not {}",
                    key.algorithm
                ),
            )
            .help = Some("use `pkcs8` for ECDSA and Ed25519 keys".into());
        }
        key
    }

    fn duration(&mut self, path: &str, text: Option<&String>, default: Duration) -> Duration {
        let Some(text) = text else { return default };
        match values::parse_duration(text) {
            Ok(d) if d.is_zero() => {
                self.error(path, format!("duration `{text}` is zero")).help =
                    Some("give a positive duration such as `365d`".into());
                default
            }
            Ok(d) if d > Duration::from_secs(100 * 365 * 86_400) => {
                self.error(path, format!("duration `{text}` is longer than 100 years"))
                    .help = Some("a CA is usually valid for 10y, a leaf for 1y".into());
                default
            }
            Ok(d) => d,
            Err(message) => {
                self.error(path, message);
                default
            }
        }
    }

    /// Resolves an output path: `relative` under the output directory (prefixed with
    /// `nodes/<node>/` for per-node files), installed under the install root.
    fn output(
        &mut self,
        path: &str,
        text: Option<&String>,
        default: String,
        node: Option<&str>,
    ) -> OutputFile {
        let text = text.cloned().unwrap_or(default);
        let relative = match values::check_relative_path(&text) {
            Ok(p) => p,
            Err(message) => {
                self.error(path, message).help = Some(
                    "write a path relative to the output directory, such as `pki/ca.crt`".into(),
                );
                PathBuf::from("invalid")
            }
        };
        let root = self
            .raw
            .cluster
            .install_root
            .clone()
            .unwrap_or_else(|| "/etc/kubernetes".into());
        let install = format!("{}/{}", root.trim_end_matches('/'), relative.display());
        let relative = match node {
            Some(node) => PathBuf::from("nodes").join(node).join(relative),
            None => relative,
        };
        OutputFile { relative, install }
    }
}

/// Returns "did you mean" or the list of valid values for a bad enumerated value.
pub(crate) fn hint(value: &str, valid: &[&str]) -> String {
    match did_you_mean(value, valid.iter().copied()) {
        Some(best) => format!("did you mean `{best}`? valid values: {}", valid.join(", ")),
        None => format!("valid values: {}", valid.join(", ")),
    }
}

/// Checks a parsed manifest. Returns the model and its warnings, or every error found.
pub fn validate(
    document: &Document<'_>,
    manifest_dir: &std::path::Path,
) -> Result<(Model, Vec<Diagnostic>), Vec<Diagnostic>> {
    let raw = &document.manifest;
    let mut checker = Checker {
        raw,
        manifest_dir: manifest_dir.to_path_buf(),
        diagnostics: Vec::new(),
        defaults: Defaults {
            key: KeySpec {
                algorithm: KeyAlgorithm::Rsa(2048),
                format: KeyFormat::Pkcs8,
            },
            validity: Duration::from_secs(365 * 86_400),
            ca_validity: Duration::from_secs(10 * 365 * 86_400),
        },
    };
    checker.defaults.key = checker.key_spec(
        "defaults",
        raw.defaults.key_algorithm.as_ref(),
        raw.defaults.key_format.as_ref(),
    );
    let d = checker.defaults;
    checker.defaults.validity = checker.duration(
        "defaults.validity",
        raw.defaults.validity.as_ref(),
        d.validity,
    );
    checker.defaults.ca_validity = checker.duration(
        "defaults.ca-validity",
        raw.defaults.ca_validity.as_ref(),
        d.ca_validity,
    );
    let backdate = match &raw.defaults.backdate {
        Some(text) => match values::parse_duration(text) {
            Ok(d) => d,
            Err(message) => {
                checker.error("defaults.backdate", message);
                Duration::ZERO
            }
        },
        None => Duration::from_secs(5 * 60),
    };

    let renew_before = checker.duration(
        "defaults.renew-before",
        raw.defaults.renew_before.as_ref(),
        Duration::from_secs(30 * 86_400),
    );

    let cluster = check_cluster(&mut checker);
    let nodes = check_nodes(&mut checker);
    let cas = cas::check_cas(&mut checker);
    let bundles = cas::check_bundles(&mut checker, &cas);
    let bindings = check_bindings(&mut checker);
    let certs = certs::check_certs(&mut checker, &cluster, &nodes, &cas, &bindings);
    let service_accounts = check_service_accounts(&mut checker);
    let kubeconfigs =
        certs::check_kubeconfigs(&mut checker, &cluster, &nodes, &cas, &bundles, &certs);

    check_renewal_window(&mut checker, &cas, &certs, renew_before);
    let mut model = Model {
        cluster,
        cas,
        bundles,
        certs,
        service_accounts,
        kubeconfigs,
        bindings,
        flag_files: Vec::new(),
        nodes,
        templates: raw.templates.as_ref().map(|t| manifest_dir.join(t)),
        backdate,
        renew_before,
        index: Index::default(),
    };
    model.build_index();
    model.flag_files = flags::check_flags(&mut checker, &model);
    wiring::check_wiring(&mut checker, &model);
    check_unique_outputs(&mut checker, &model);

    let diagnostics = document.locate(checker.diagnostics);
    let (errors, warnings): (Vec<_>, Vec<_>) = diagnostics
        .into_iter()
        .partition(|d| d.severity == Severity::Error);
    if errors.is_empty() {
        Ok((model, warnings))
    } else {
        Err(errors.into_iter().chain(warnings).collect())
    }
}

fn check_cluster(checker: &mut Checker) -> Cluster {
    let raw = &checker.raw.cluster;
    if let Err(message) = values::check_dns_name(&raw.name, false) {
        checker.error("cluster.name", message).help =
            Some("use lower-case letters, digits and `-`, such as `kubernetes`".into());
    }
    if raw.servers.is_empty() {
        checker
            .error("cluster.servers", "no API server URL is given")
            .help = Some("add the URL that clients dial, such as `https://192.0.2.10:6443`".into());
    }
    let mut server_hosts = Vec::new();
    for (i, url) in raw.servers.iter().enumerate() {
        match server_host(url) {
            Ok(host) => server_hosts.push(host),
            Err(message) => {
                checker.error(format!("cluster.servers[{i}]"), message).help =
                    Some("write `https://HOST:PORT`, with an IPv6 host in brackets".into());
            }
        }
    }
    let advertise_address = raw.advertise_address.as_ref().and_then(|text| {
        text.parse::<IpAddr>()
            .map_err(|_| {
                checker
                    .error(
                        "cluster.advertise-address",
                        format!("invalid IP address `{text}`"),
                    )
                    .help =
                    Some("write the address the apiserver advertises, such as `192.0.2.10`".into());
            })
            .ok()
    });
    let cidr_text = raw
        .service_cidr
        .clone()
        .unwrap_or_else(|| "10.96.0.0/12".into());
    let mut service_cidrs = Vec::new();
    let mut service_ips = Vec::new();
    for part in cidr_text.split(',').map(str::trim) {
        match part.parse::<IpNet>() {
            Ok(net) if net.network() == net.addr() => {
                service_cidrs.push(net);
                match first_service_ip(net) {
                    Some(ip) => service_ips.push(ip),
                    None => {
                        checker.error(
                            "cluster.service-cidr",
                            format!("service range `{part}` has no host addresses"),
                        );
                    }
                }
            }
            Ok(net) => {
                checker
                    .error(
                        "cluster.service-cidr",
                        format!("`{part}` is not a network address: host bits are set"),
                    )
                    .help = Some(format!("did you mean `{}`?", net.trunc()));
            }
            Err(_) => {
                checker.error("cluster.service-cidr", format!("invalid CIDR `{part}`")).help =
                    Some("write a range such as `10.96.0.0/12`, or two separated by a comma for dual-stack".into());
            }
        }
    }
    check_service_ranges(checker, &service_cidrs);
    let dns_domain = raw
        .dns_domain
        .clone()
        .unwrap_or_else(|| "cluster.local".into());
    if let Err(message) = values::check_dns_name(&dns_domain, false) {
        checker.error("cluster.dns-domain", message).help =
            Some("write the cluster's DNS domain, such as `cluster.local`".into());
    }
    let install_root = raw
        .install_root
        .clone()
        .unwrap_or_else(|| "/etc/kubernetes".into());
    if !install_root.starts_with('/') {
        checker
            .error(
                "cluster.install-root",
                format!("install root `{install_root}` is not an absolute path"),
            )
            .help = Some("write the host directory, such as `/etc/kubernetes`".into());
    }
    Cluster {
        name: raw.name.clone(),
        servers: raw.servers.clone(),
        server_hosts,
        advertise_address,
        service_cidrs,
        service_ips,
        dns_domain,
        install_root,
    }
}

/// Rejects a lifetime no longer than `renew-before`: every rebuild would renew it.
fn check_renewal_window(checker: &mut Checker, cas: &[Ca], certs: &[Cert], renew_before: Duration) {
    let lifetimes = cas
        .iter()
        .filter(|ca| ca.imported.is_none())
        .map(|ca| (format!("ca.{}", ca.id), ca.validity))
        .chain(certs.iter().map(|c| (c.origin.clone(), c.validity)));
    let mut reported = BTreeSet::new();
    for (origin, validity) in lifetimes {
        if validity <= renew_before && reported.insert(origin.clone()) {
            checker
                .error(
                    format!("{origin}.validity"),
                    format!(
                        "validity {} is not longer than defaults.renew-before {}, so every \
                     build would renew it",
                        values::format_duration(validity),
                        values::format_duration(renew_before)
                    ),
                )
                .help = Some("lengthen `validity`, or shorten `defaults.renew-before`".into());
        }
    }
}

/// Returns the network address plus one, which Kubernetes gives the `kubernetes` Service.
pub fn first_service_ip(net: IpNet) -> Option<IpAddr> {
    match net {
        IpNet::V4(v4) if v4.prefix_len() < 31 => {
            Some(IpAddr::V4((u32::from(v4.network()) + 1).into()))
        }
        IpNet::V6(v6) if v6.prefix_len() < 127 => {
            Some(IpAddr::V6((u128::from(v6.network()) + 1).into()))
        }
        _ => None,
    }
}

/// Checks a service range's size and the dual-stack pairing as kube-apiserver does: an
/// IPv4 range at most /12, an IPv6 range at most /108, and two ranges only as one of each.
fn check_service_ranges(checker: &mut Checker, ranges: &[IpNet]) {
    for net in ranges {
        let (limit, family) = match net {
            IpNet::V4(_) => (12, "IPv4"),
            IpNet::V6(_) => (108, "IPv6"),
        };
        if net.prefix_len() < limit {
            checker.error(
                "cluster.service-cidr",
                format!("service range `{net}` is too large: kube-apiserver takes an {family} range of /{limit} or smaller"),
            )
            .help = Some(format!("use a prefix length of {limit} or more"));
        }
    }
    let v4 = ranges.iter().filter(|n| matches!(n, IpNet::V4(_))).count();
    let v6 = ranges.len() - v4;
    if ranges.len() > 2 || v4 > 1 || v6 > 1 {
        checker
            .error(
                "cluster.service-cidr",
                "a dual-stack service range is one IPv4 and one IPv6 range",
            )
            .help =
            Some("write one range, or an IPv4 and an IPv6 range separated by a comma".into());
    }
}

/// Returns the host of an `https://host:port` URL as a SAN.
pub(crate) fn server_host(url: &str) -> Result<San, String> {
    let rest = url
        .strip_prefix("https://")
        .ok_or_else(|| format!("API server URL `{url}` does not start with `https://`"))?;
    if url.chars().any(char::is_whitespace) {
        return Err(format!("API server URL `{url}` contains white space"));
    }
    let authority = rest.split('/').next().unwrap_or("");
    if authority.contains('@') {
        return Err(format!(
            "API server URL `{url}` carries a user name; kubeconfigs take credentials from \
             the user entry"
        ));
    }
    let host = if let Some(bracketed) = authority.strip_prefix('[') {
        bracketed.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    let port = authority.rsplit_once(':').map(|(_, p)| p);
    if let Some(port) = port
        && !authority.ends_with(']')
        && port.parse::<u16>().is_err()
    {
        return Err(format!("invalid port `{port}` in API server URL `{url}`"));
    }
    San::parse(host).map_err(|e| format!("invalid host in API server URL `{url}`: {e}"))
}

fn check_nodes(checker: &mut Checker) -> Vec<Node> {
    let mut entries: Vec<(String, RawNode)> = checker
        .raw
        .node
        .iter()
        .enumerate()
        .map(|(i, raw)| (format!("node[{i}]"), raw.clone()))
        .collect();
    entries.extend(inventory::load(checker));
    let first_inventory_diagnostic = checker.diagnostics.len();
    let mut nodes = Vec::with_capacity(entries.len());
    let mut names: HashMap<&str, Claim> = HashMap::new();
    let mut addresses: HashMap<IpAddr, Claim> = HashMap::new();
    for (path, raw) in &entries {
        if let Err(message) = values::check_node_name(&raw.name) {
            let suggestion = values::suggest_node_name(&raw.name)
                .map(|name| format!("did you mean `{name}`? "))
                .unwrap_or_default();
            checker.error(format!("{path}.name"), message).help = Some(format!(
                "{suggestion}use lower-case letters, digits and `-`, in labels separated by \
                 `.`, such as `worker-1` or `worker-1.example.com`"
            ));
        }
        let ips = check_node_ips(checker, path, raw);
        let name = Claim {
            entry: path,
            field: format!("{path}.name"),
            node: &raw.name,
            value: &raw.name,
        };
        let duplicate = names.contains_key(raw.name.as_str());
        if let Some(first) = names.get(raw.name.as_str()) {
            let help = "give each node its own name, or remove the copy";
            report_shared(checker, first, &name, help, |at, other| {
                format!(
                    "duplicate node name `{}`: it is also the name of {}",
                    at.value, other.entry
                )
            });
        } else {
            names.insert(&raw.name, name);
            claim_addresses(checker, &mut addresses, path, raw, &ips);
        }
        for (j, name) in raw.dns.iter().enumerate() {
            if let Err(message) = values::check_dns_name(name, false) {
                checker.error(format!("{path}.dns[{j}]"), message).help = Some(
                    "write the host name that clients dial, such as `worker-1.example.com`".into(),
                );
            }
        }
        if duplicate {
            // The copy stays out of the model, so that its certificates add no errors
            // about a second node with the same identity.
            continue;
        }
        nodes.push(Node {
            name: raw.name.clone(),
            ips: ips.into_iter().map(|(_, ip)| ip).collect(),
            dns: raw.dns.clone(),
            roles: raw.roles.clone().unwrap_or_else(|| vec!["worker".into()]),
        });
    }
    inventory::relocate(&mut checker.diagnostics[first_inventory_diagnostic..]);
    nodes
}

/// Records the addresses of a node, and reports each one that another node already
/// claimed. IPv4-mapped IPv6 addresses count as the IPv4 address they carry. Loopback
/// addresses are exempt because every host has them, so a node may list 127.0.0.1 or
/// ::1 for clients on the node itself, and test setups run several nodes on one host.
fn claim_addresses<'e>(
    checker: &mut Checker,
    addresses: &mut HashMap<IpAddr, Claim<'e>>,
    path: &'e str,
    raw: &'e RawNode,
    ips: &[(usize, IpAddr)],
) {
    for &(j, ip) in ips {
        if ip.to_canonical().is_loopback() {
            continue;
        }
        let claim = Claim {
            entry: path,
            field: format!("{path}.ips[{j}]"),
            node: &raw.name,
            value: &raw.ips[j],
        };
        let Some(first) = addresses.get(&ip.to_canonical()) else {
            addresses.insert(ip.to_canonical(), claim);
            continue;
        };
        if first.entry == path {
            continue;
        }
        let help = "give each node its own addresses, and list all addresses of one node \
                    in its own `ips`";
        report_shared(checker, first, &claim, help, |at, other| {
            format!(
                "IP address `{}` of node `{}` is also an address of node `{}` ({})",
                at.value, at.node, other.node, other.entry
            )
        });
    }
}

/// A node's claim to a name or an IP address, which no other node may share.
struct Claim<'e> {
    /// Path of the node: `node[0]` for a `[[node]]` table, `nodes.csv:12` for an
    /// inventory entry.
    entry: &'e str,
    /// Path of the field that makes the claim.
    field: String,
    node: &'e str,
    /// The value as written.
    value: &'e str,
}

/// Reports a name or address that two nodes claim, at the later claim. When the earlier
/// claim is a `[[node]]` table and the later one an inventory entry, the table takes the
/// error instead. The message then points at a line of the manifest and names the
/// inventory's line.
fn report_shared(
    checker: &mut Checker,
    earlier: &Claim,
    later: &Claim,
    help: &str,
    message: impl Fn(&Claim, &Claim) -> String,
) {
    let in_manifest = |claim: &Claim| claim.entry.starts_with("node[");
    let (at, other) = if in_manifest(earlier) && !in_manifest(later) {
        (earlier, later)
    } else {
        (later, earlier)
    };
    checker.error(at.field.clone(), message(at, other)).help = Some(help.into());
}

/// Parses a node's IP addresses, as (index in `ips`, address) pairs of the valid ones.
fn check_node_ips(checker: &mut Checker, path: &str, raw: &RawNode) -> Vec<(usize, IpAddr)> {
    let mut ips = Vec::new();
    for (j, text) in raw.ips.iter().enumerate() {
        match text.parse::<IpAddr>() {
            Ok(ip) => ips.push((j, ip)),
            Err(_) => {
                checker
                    .error(
                        format!("{path}.ips[{j}]"),
                        format!("invalid IP address `{text}`"),
                    )
                    .help =
                    Some("write an IP address such as `192.0.2.21` or `2001:db8::21`".into());
            }
        }
    }
    ips
}

fn check_subject(checker: &mut Checker, path: &str, raw: &RawSubject) -> Subject {
    let subject = Subject::from_raw(raw);
    if subject.common_name.as_deref().is_none_or(str::is_empty) {
        checker
            .error(format!("{path}.cn"), "the subject has no common name")
            .help = Some("set `cn`, such as `cn = \"Server CA\"`".into());
    }
    if let Some(c) = &subject.country
        && (c.len() != 2 || !c.chars().all(|ch| ch.is_ascii_uppercase()))
    {
        checker
            .error(
                format!("{path}.c"),
                format!("country `{c}` is not a two-letter code"),
            )
            .help = Some("use an ISO 3166 code such as `IT` or `DE`".into());
    }
    for (field, list) in [
        ("o", &subject.organizations),
        ("ou", &subject.organizational_units),
    ] {
        // NOTE: rcgen keys its distinguished name by attribute type, so one subject can
        // carry an attribute at most twice (the named type and the same OID as a custom type).
        if list.len() > 2 {
            checker.error(
                format!("{path}.{field}"),
                format!("{} values given, but at most 2 are supported", list.len()),
            );
        }
    }
    subject
}

fn check_bindings(checker: &mut Checker) -> Vec<Binding> {
    let mut bindings = Vec::new();
    for (id, raw) in &checker.raw.binding {
        let path = format!("binding.{id}");
        check_id(checker, &path, id);
        if raw.group.is_empty() {
            checker.error(format!("{path}.group"), "the group is empty");
        }
        let file = checker.output(
            &format!("{path}.file"),
            raw.file.as_ref(),
            format!("rbac/{id}.yaml"),
            None,
        );
        bindings.push(Binding {
            id: id.clone(),
            group: raw.group.clone(),
            cluster_role: raw.cluster_role.clone(),
            file,
        });
    }
    bindings
}

fn check_service_accounts(checker: &mut Checker) -> Vec<ServiceAccount> {
    let mut accounts = Vec::new();
    for (id, raw) in &checker.raw.service_account {
        let path = format!("service-account.{id}");
        check_id(checker, &path, id);
        let key = checker.key_spec(&path, raw.key_algorithm.as_ref(), raw.key_format.as_ref());
        let key_file = checker.output(
            &format!("{path}.key-file"),
            raw.key_file.as_ref(),
            format!("pki/{id}.key"),
            None,
        );
        let public_key_file = checker.output(
            &format!("{path}.public-key-file"),
            raw.public_key_file.as_ref(),
            format!("pki/{id}.pub"),
            None,
        );
        if key.algorithm == KeyAlgorithm::Ed25519 {
            checker
                .error(
                    format!("{path}.key-algorithm"),
                    "kube-apiserver cannot sign service-account tokens with Ed25519",
                )
                .help = Some("use `rsa-2048` or another RSA or ECDSA algorithm".into());
        }
        let what = format!("service-account key `{id}`");
        let rotation = rotation::check_rotation(checker, &path, raw.rotation.as_ref(), &what);
        if let Some(rotation) = &rotation
            && rotation.overlap < Duration::from_secs(86_400)
        {
            checker
                .warning(
                    format!("{path}.rotation.overlap"),
                    "an overlap under 24h can drop the old key while pods still present \
                     tokens it signed: the kubelet refreshes a projected token only once a \
                     day when kube-apiserver extends its expiry (the default)",
                )
                .help = Some("set `overlap = \"24h\"` or longer".into());
        }
        let rotation_files = RotationFiles::for_service_account(&key_file);
        accounts.push(ServiceAccount {
            id: id.clone(),
            key,
            key_file,
            public_key_file,
            rotation,
            rotation_files,
        });
    }
    accounts
}

/// Checks an object id: lower-case letters, digits and `-`, so it is safe in file names.
fn check_id(checker: &mut Checker, path: &str, id: &str) {
    let valid = !id.is_empty()
        && id
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !id.starts_with('-');
    if !valid {
        checker.error(path, format!("invalid name `{id}`")).help =
            Some("names use lower-case letters, digits and `-`".into());
    }
}

/// Returns "did you mean" for a reference to an unknown id, or the list of known ids.
pub(crate) fn reference_help<'b>(
    name: &str,
    known: impl Iterator<Item = &'b String> + Clone,
) -> String {
    match did_you_mean(name, known.clone().map(String::as_str)) {
        Some(best) => format!("did you mean `{best}`?"),
        None => {
            let list: Vec<&str> = known.map(String::as_str).collect();
            if list.is_empty() {
                "none is declared".into()
            } else {
                format!("declared: {}", list.join(", "))
            }
        }
    }
}

/// Rejects two objects that would write the same output file.
fn check_unique_outputs(checker: &mut Checker, model: &Model) {
    let mut owners: HashMap<PathBuf, String> = HashMap::new();
    let mut files: Vec<(String, &OutputFile)> = Vec::new();
    for ca in &model.cas {
        files.push((format!("ca.{}.cert-file", ca.id), &ca.cert_file));
        files.push((format!("ca.{}.key-file", ca.id), &ca.key_file));
        for file in ca.rotation_files.all() {
            files.push((format!("ca.{}.rotation", ca.id), file));
        }
    }
    for cert in &model.certs {
        files.push((format!("{}.cert-file", cert.origin), &cert.cert_file));
        files.push((format!("{}.key-file", cert.origin), &cert.key_file));
    }
    for bundle in &model.bundles {
        files.push((format!("bundle.{}.file", bundle.id), &bundle.file));
    }
    for account in &model.service_accounts {
        files.push((
            format!("service-account.{}.key-file", account.id),
            &account.key_file,
        ));
        files.push((
            format!("service-account.{}.public-key-file", account.id),
            &account.public_key_file,
        ));
        for file in account.rotation_files.all() {
            files.push((format!("service-account.{}.rotation", account.id), file));
        }
    }
    for kubeconfig in &model.kubeconfigs {
        files.push((format!("{}.file", kubeconfig.origin), &kubeconfig.file));
    }
    for binding in &model.bindings {
        files.push((format!("binding.{}.file", binding.id), &binding.file));
    }
    for flags in &model.flag_files {
        files.push((format!("{}.file", flags.origin), &flags.file));
    }
    for (path, file) in files {
        if checker.has_error_at(&path) {
            continue;
        }
        if let Some(first) = owners.get(&file.relative) {
            if first != &path {
                let message = format!(
                    "output file `{}` is also written by `{first}`",
                    file.relative.display()
                );
                checker.error(path.clone(), message).help =
                    Some("give each object its own file".into());
            }
        } else {
            owners.insert(file.relative.clone(), path);
        }
    }
}
