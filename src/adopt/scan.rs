//! Reads an existing tree with `pkic check`'s reader and describes each certificate,
//! key and kubeconfig in it as a manifest object.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::draft::{Account, Ca, Cluster, Copy, Draft, Instance, KeyFacts, Kubeconfig, Leaf, Node};
use crate::check::keys::{KeyFormat, KeyRead};
use crate::check::layout::LayoutKind;
use crate::check::x509::{CertInfo, parse_spki};
use crate::check::{Overrides, Tree, load_tree};
use crate::model::{Role, San, Subject, Usage};
use crate::x509::{algorithm_of_spki, found_subject, key_algorithm_of, subject_of};

/// The backdate written into adopted manifests, pkic's default.
const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// Reads `from` and returns the draft manifest. Fails on a tree that is not a PKI and
/// on a key that does not match its certificate.
pub(super) fn scan(from: &Path) -> Result<Draft, String> {
    let tree = load_tree(from, None, &Overrides::default(), Default::default())?;
    let prefix = match tree.layout.kind {
        LayoutKind::KubeadmPki => "pki/",
        _ => "",
    };
    let install_root = match tree.layout.kind {
        LayoutKind::Pkic => tree.layout.install_root.clone(),
        _ => "/etc/kubernetes".to_string(),
    };
    let mut scanner = Scanner {
        tree: &tree,
        prefix,
        draft: Draft {
            source: from.display().to_string(),
            layout: tree.layout.kind.describe(),
            cluster: Cluster {
                name: (String::new(), String::new()),
                server: (String::new(), String::new()),
                advertise_address: None,
                service_cidr: (String::new(), String::new()),
                dns_domain: (String::new(), String::new()),
                install_root,
            },
            backdate: BACKDATE,
            cas: Vec::new(),
            leaves: Vec::new(),
            accounts: Vec::new(),
            kubeconfigs: Vec::new(),
            nodes: Vec::new(),
            skipped: Vec::new(),
        },
        paired_keys: Vec::new(),
    };
    let pairs = scanner.pair_files()?;
    scanner.add_cas(&pairs);
    scanner.add_leaves(&pairs);
    scanner.add_accounts();
    scanner.add_nodes();
    scanner.add_kubeconfigs();
    scanner.add_cluster();
    scanner.draft.propagate();
    Ok(scanner.draft)
}

/// A certificate file and the key file beside it.
struct Pair {
    cert_label: String,
    key_label: String,
    info: CertInfo,
    key_format: KeyFormat,
}

struct Scanner<'t> {
    tree: &'t Tree,
    /// Prefix that maps a path of the tree to the output directory: `pki/` when the
    /// tree is a kubeadm pki directory.
    prefix: &'static str,
    draft: Draft,
    paired_keys: Vec<String>,
}

impl Scanner<'_> {
    fn copy(&self, label: &str, secret: bool) -> Copy {
        Copy {
            source: label.to_string(),
            out: format!("{}{label}", self.prefix),
            secret,
        }
    }

    fn skip(&mut self, label: &str, reason: impl Into<String>) {
        self.draft.skipped.push((label.to_string(), reason.into()));
    }

    /// Pairs every certificate file with the key file of the same name.
    fn pair_files(&mut self) -> Result<Vec<Pair>, String> {
        let store = &self.tree.store;
        let mut pairs = Vec::new();
        let files: Vec<(String, crate::check::store::CertFile)> = store
            .cert_files
            .iter()
            .filter(|(label, _)| !label.contains(": "))
            .map(|(label, file)| (label.clone(), file.clone()))
            .collect();
        for (label, file) in files {
            if let Some(problem) = &file.problem {
                self.skip(
                    &label,
                    format!("not a readable certificate file ({problem:?})"),
                );
                continue;
            }
            let Some(first) = file.certs.first() else {
                continue;
            };
            if file.certs.len() > 1 {
                self.skip(
                    &label,
                    format!(
                        "a file of {} certificates; pkic writes one certificate per file, \
                         and bundles are declared with [bundle.NAME]",
                        file.certs.len()
                    ),
                );
                continue;
            }
            let stem = label
                .strip_suffix(".crt")
                .or_else(|| label.strip_suffix(".pem"))
                .or_else(|| label.strip_suffix(".cer"))
                .unwrap_or(&label);
            let key_label = [format!("{stem}.key"), format!("{stem}-key.pem")]
                .into_iter()
                .find(|k| store.key_files.contains_key(k));
            let Some(key_label) = key_label else {
                let reason = if first.is_ca() {
                    "a CA certificate without its key; pkic signs only with CAs whose key it has"
                } else {
                    "a certificate without a key file of the same name"
                };
                self.skip(&label, reason);
                continue;
            };
            let read = store.key_files[&key_label].read.clone();
            let (format, public) = match read {
                Some(KeyRead::Readable { format, public, .. }) => (format, public),
                Some(KeyRead::Encrypted(how)) => {
                    self.skip(&label, format!("its key {key_label} is encrypted ({how})"));
                    continue;
                }
                Some(KeyRead::Unreadable(what)) => {
                    self.skip(
                        &label,
                        format!("its key {key_label} is not readable: {what}"),
                    );
                    continue;
                }
                None => continue,
            };
            if public.bits != first.public_key.bits {
                return Err(format!(
                    "{key} does not match the certificate {label} in {dir}: the key's public half \
                     is not the certificate's public key; put the certificate's own key in \
                     {key}, or move both files out of {dir}",
                    key = key_label,
                    dir = self.draft.source
                ));
            }
            self.paired_keys.push(key_label.clone());
            pairs.push(Pair {
                cert_label: label,
                key_label,
                info: first.clone(),
                key_format: format,
            });
        }
        Ok(pairs)
    }

    fn add_cas(&mut self, pairs: &[Pair]) {
        let cas: Vec<&Pair> = pairs.iter().filter(|p| p.info.is_ca()).collect();
        let mut ids = Ids::default();
        for pair in &cas {
            let id = ids.take(&object_id(&pair.cert_label));
            let Some((subject, key, validity)) = self.describe(pair) else {
                continue;
            };
            let issuer = if pair.info.is_self_issued() {
                None
            } else {
                cas.iter()
                    .position(|c| {
                        c.info.subject_der == pair.info.issuer_der
                            && pair.info.is_signed_by(&c.info)
                    })
                    .map(|i| object_id_unique(&cas, i))
            };
            let mut notes = vec![format!(
                "From {} and {}: {}.",
                pair.cert_label,
                pair.key_label,
                summary(&pair.info, pair.key_format)
            )];
            if issuer.is_none() && !pair.info.is_self_issued() {
                notes.push(
                    "Its issuer is not in the tree, so it is declared as a root: its own \
                     certificate is the trust anchor."
                        .into(),
                );
            }
            self.draft.cas.push(Ca {
                id,
                issuer,
                subject,
                path_len: pair.info.path_len,
                key,
                validity,
                cert: self.copy(&pair.cert_label, false),
                key_file: self.copy(&pair.key_label, true),
                notes,
                left_out: None,
            });
        }
    }

    /// Returns the subject, key facts and validity of a pair, or records why it
    /// cannot be declared.
    fn describe(&mut self, pair: &Pair) -> Option<(Subject, KeyFacts, Duration)> {
        let (_, cert) = X509Certificate::from_der(&pair.info.der).ok()?;
        let found = found_subject(&cert);
        let count = |name: &str| found.iter().filter(|(n, _)| *n == name).count();
        let writable = found.iter().all(|(name, _)| *name != "?")
            && count("CN") == 1
            && count("O") <= 2
            && count("OU") <= 2
            && ["C", "ST", "L"].iter().all(|n| count(n) <= 1);
        if !writable {
            self.skip(
                &pair.cert_label,
                format!(
                    "its subject \"{}\" has attributes a manifest cannot write (one CN, at \
                     most two O and OU, one C, ST and L)",
                    pair.info.subject
                ),
            );
            return None;
        }
        let Some(algorithm) = algorithm_of_spki(cert.public_key()) else {
            self.skip(
                &pair.cert_label,
                format!(
                    "its key algorithm {} is not one pkic supports",
                    pair.info.public_key.algorithm
                ),
            );
            return None;
        };
        let format = match pair.key_format {
            KeyFormat::Pkcs1 => "pkcs1",
            KeyFormat::Pkcs8 | KeyFormat::Sec1 => "pkcs8",
        };
        let span = (pair.info.not_after - pair.info.not_before).max(0) as u64;
        Some((
            subject_of(&cert),
            KeyFacts { algorithm, format },
            declared_validity(span, BACKDATE.as_secs()),
        ))
    }

    fn add_leaves(&mut self, pairs: &[Pair]) {
        let mut top_level = Ids::default();
        let mut groups: BTreeMap<String, Vec<(String, &Pair)>> = BTreeMap::new();
        for pair in pairs.iter().filter(|p| !p.info.is_ca()) {
            match split_node(&pair.cert_label) {
                Some((node, rest)) => groups
                    .entry(rest.to_string())
                    .or_default()
                    .push((node.to_string(), pair)),
                None => {
                    let id = top_level.take(&object_id(&pair.cert_label));
                    if let Some(leaf) = self.leaf(id, None, &[(String::new(), pair)]) {
                        self.draft.leaves.push(leaf);
                    }
                }
            }
        }
        for (rest, members) in groups {
            let mut name = object_id(&rest);
            if self.draft.leaves.iter().any(|l| l.id == name) {
                name.push_str("-node");
            }
            let name = top_level.take(&name);
            if let Some(leaf) = self.leaf(name, Some(&rest), &members) {
                self.draft.leaves.push(leaf);
            }
        }
    }

    /// Describes a top-level leaf (`rest` is `None`) or a per-node template whose
    /// members are each node's copy of the file `rest`.
    fn leaf(
        &mut self,
        id: String,
        rest: Option<&str>,
        members: &[(String, &Pair)],
    ) -> Option<Leaf> {
        let (_, first) = members.first()?;
        let issuer = self
            .draft
            .cas
            .iter()
            .find(|ca| {
                let ca_pair = self.tree.store.certs(&ca.cert.source).first();
                ca_pair.is_some_and(|c| {
                    c.subject_der == first.info.issuer_der && first.info.is_signed_by(c)
                })
            })
            .map(|ca| ca.id.clone());
        let Some(issuer) = issuer else {
            for (_, pair) in members {
                self.skip(
                    &pair.cert_label,
                    "its issuer CA is not in the tree with its key, so pkic could not renew it",
                );
            }
            return None;
        };
        let usage = match first.info.eku {
            Some(eku) if eku.server_auth && eku.client_auth => Usage::Both,
            Some(eku) if eku.server_auth => Usage::Server,
            Some(eku) if eku.client_auth => Usage::Client,
            _ => {
                for (_, pair) in members {
                    self.skip(
                        &pair.cert_label,
                        "it has neither serverAuth nor clientAuth in its extended key usage, \
                         and pkic declares every leaf for server use, client use or both",
                    );
                }
                return None;
            }
        };

        let (mut subject, key, validity) = self.describe(first)?;
        let file_name = rest.unwrap_or(&first.cert_label);
        let role = role_of(file_name.strip_prefix("pki/").unwrap_or(file_name));
        let node = members[0].0.as_str();
        let node_facts = self.node_facts(node);
        let found = san_texts(&first.info.sans);
        let (role_sans, plain_sans) = match rest {
            None => (found.clone(), found),
            Some(_) => {
                if let Some(cn) = &subject.common_name {
                    subject.common_name = Some(cn.replace(node, "{node}"));
                }
                let derived = role
                    .map(|r| role_sans(r, node, &node_facts))
                    .unwrap_or_default();
                let templated = |sans: &[San]| -> Vec<String> {
                    sans.iter()
                        .map(|s| match s {
                            San::Dns(name) if name == node => "{node}".to_string(),
                            other => san_text(other),
                        })
                        .collect()
                };
                let remainder: Vec<San> = first
                    .info
                    .sans
                    .iter()
                    .filter(|s| !derived.contains(s))
                    .cloned()
                    .collect();
                (templated(&remainder), templated(&first.info.sans))
            }
        };

        let instances = members
            .iter()
            .map(|(node, pair)| Instance {
                node: (!node.is_empty()).then(|| node.clone()),
                cert: self.copy(&pair.cert_label, false),
                key: self.copy(&pair.key_label, true),
                der: pair.info.der.clone(),
                note: format!(
                    "From {} and {}: {}.",
                    pair.cert_label,
                    pair.key_label,
                    summary(&pair.info, pair.key_format)
                ),
            })
            .collect();

        let (cert_file, key_file) = match rest {
            Some(rest) => {
                let key_rest = split_node(&members[0].1.key_label)
                    .map(|(_, r)| r.to_string())
                    .unwrap_or_default();
                (rest.to_string(), key_rest)
            }
            None => (
                format!("{}{}", self.prefix, first.cert_label),
                format!("{}{}", self.prefix, first.key_label),
            ),
        };
        Some(Leaf {
            id,
            per_node: rest.is_some(),
            issuer,
            role,
            subject,
            role_sans,
            plain_sans,
            usage,
            key,
            validity,
            cert_file,
            key_file,
            instances,
            notes: Vec::new(),
            left_out: None,
        })
    }

    /// Returns a node's addresses: those common to its kubelet serving and etcd
    /// certificates, which name the node's addresses in their SANs.
    fn node_facts(&self, node: &str) -> (Vec<IpAddr>, Vec<String>) {
        if node.is_empty() {
            return (Vec::new(), Vec::new());
        }
        let mut sets: Vec<&[San]> = Vec::new();
        for (label, file) in &self.tree.store.cert_files {
            let Some((owner, rest)) = split_node(label) else {
                continue;
            };
            let role = role_of(rest.strip_prefix("pki/").unwrap_or(rest));
            let names_node = matches!(
                role,
                Some(Role::KubeletServing | Role::EtcdServer | Role::EtcdPeer)
            );
            if owner == node
                && names_node
                && let Some(cert) = file.certs.first()
            {
                sets.push(&cert.sans);
            }
        }
        let Some((first, others)) = sets.split_first() else {
            return (Vec::new(), Vec::new());
        };
        let common = first
            .iter()
            .filter(|s| others.iter().all(|o| o.contains(s)));
        let mut ips = Vec::new();
        let mut dns = Vec::new();
        for san in common {
            match san {
                San::Ip(ip) if !ip.is_loopback() => ips.push(*ip),
                San::Dns(name) if name != node && name != "localhost" => dns.push(name.clone()),
                _ => {}
            }
        }
        (ips, dns)
    }

    fn add_nodes(&mut self) {
        let mut names: Vec<String> = Vec::new();
        for leaf in self.draft.leaves.iter().filter(|l| l.per_node) {
            for instance in &leaf.instances {
                if let Some(node) = &instance.node
                    && !names.contains(node)
                {
                    names.push(node.clone());
                }
            }
        }
        names.sort();
        for name in names {
            let (ips, dns) = self.node_facts(&name);
            let roles = self
                .draft
                .leaves
                .iter()
                .filter(|l| {
                    l.per_node
                        && l.instances
                            .iter()
                            .any(|i| i.node.as_deref() == Some(name.as_str()))
                })
                .map(|l| l.id.clone())
                .collect();
            self.draft.nodes.push(Node {
                name,
                ips,
                dns,
                roles,
            });
        }
    }

    /// Adds a service-account key pair for every private key without a certificate that
    /// has a `.pub` file beside it.
    fn add_accounts(&mut self) {
        let labels: Vec<String> = self
            .tree
            .store
            .key_files
            .keys()
            .filter(|l| !l.contains(": ") && !self.paired_keys.contains(l))
            .cloned()
            .collect();
        let mut ids = Ids::default();
        for label in labels {
            let Some(stem) = label.strip_suffix(".key") else {
                self.skip(&label, "a private key without a certificate");
                continue;
            };
            let public_label = format!("{stem}.pub");
            let root = &self.tree.layout.root;
            let Ok(key_pem) = std::fs::read_to_string(root.join(&label)) else {
                continue;
            };
            let Ok(public_pem) = std::fs::read_to_string(root.join(&public_label)) else {
                self.skip(
                    &label,
                    format!("a private key with neither a certificate nor {public_label}"),
                );
                continue;
            };
            let private = match &self.tree.store.key_files[&label].read {
                Some(KeyRead::Readable { public, format, .. }) => Some((public.clone(), *format)),
                _ => None,
            };
            let public = pem::parse(&public_pem)
                .ok()
                .filter(|p| p.tag() == "PUBLIC KEY")
                .and_then(|p| parse_spki(p.contents()));
            let (Some((private, format)), Some(public)) = (private, public) else {
                self.skip(&label, format!("{label} or {public_label} is not readable"));
                continue;
            };
            if private.bits != public.bits {
                self.skip(
                    &label,
                    format!("{public_label} is not the public half of {label}"),
                );
                continue;
            }
            let Some(algorithm) = key_algorithm_of(Some(&key_pem)) else {
                self.skip(&label, "its key algorithm is not one pkic supports");
                continue;
            };
            let format = match format {
                KeyFormat::Pkcs1 => "pkcs1",
                _ => "pkcs8",
            };
            let id = ids.take(&object_id(&label));
            self.draft.accounts.push(Account {
                id,
                key: KeyFacts { algorithm, format },
                key_file: self.copy(&label, true),
                public_file: self.copy(&public_label, false),
                left_out: None,
            });
        }
    }

    fn add_kubeconfigs(&mut self) {
        let mut top_level = Ids::default();
        let mut groups: BTreeMap<String, Vec<Kubeconfig>> = BTreeMap::new();
        for found in &self.tree.kubeconfigs {
            let label = &found.label;
            let mut reason = None;
            let user = self.kubeconfig_user(found.client_cert.as_deref());
            let ca = self.kubeconfig_ca(found.ca.as_deref());
            if user.is_none() {
                reason = Some(
                    "its client certificate is not a certificate file of the tree with its \
                     key (kubeadm embeds it in the kubeconfig only), so pkic cannot declare it"
                        .to_string(),
                );
            } else if ca.is_none() {
                reason = Some("its certificate-authority is not a CA of the tree".to_string());
            }
            let embed = found
                .client_cert
                .as_deref()
                .is_some_and(|c| c.contains(": "));
            let (user, common_name) = user.unwrap_or_default();
            let server = found.server.clone().unwrap_or_default();
            let node = split_node(label).map(|(n, _)| n.to_string());
            let file = split_node(label).map_or(label.as_str(), |(_, rest)| rest);
            let kubeconfig = Kubeconfig {
                id: object_id(file),
                per_node: node.is_some(),
                user,
                ca: ca.unwrap_or_default(),
                server: Some(server),
                embed,
                user_name: (found.user_name != common_name).then(|| found.user_name.clone()),
                file: format!("{}{file}", self.prefix),
                instances: vec![(node.clone(), self.copy(label, embed))],
                left_out: reason,
            };
            match node {
                Some(_) => groups.entry(file.to_string()).or_default().push(kubeconfig),
                None => {
                    let mut kubeconfig = kubeconfig;
                    kubeconfig.id = top_level.take(&kubeconfig.id);
                    self.draft.kubeconfigs.push(kubeconfig);
                }
            }
        }
        for (_, members) in groups {
            let mut merged = members[0].clone();
            for member in &members[1..] {
                merged.instances.extend(member.instances.clone());
                if merged.left_out.is_none() {
                    merged.left_out = member.left_out.clone();
                }
                if merged.left_out.is_none() && member.user != merged.user {
                    merged.left_out = Some(
                        "the nodes' copies use different client certificate files".to_string(),
                    );
                }
            }
            let with_user: Vec<&str> = self
                .draft
                .leaves
                .iter()
                .filter(|l| l.id == merged.user)
                .flat_map(|l| l.instances.iter().filter_map(|i| i.node.as_deref()))
                .collect();
            let nodes: Vec<&str> = merged
                .instances
                .iter()
                .filter_map(|(n, _)| n.as_deref())
                .collect();
            if merged.left_out.is_none() && with_user.len() != nodes.len() {
                merged.left_out = Some(format!(
                    "it exists on other nodes than its client certificate `{}`",
                    merged.user
                ));
            }
            merged.id = top_level.take(&merged.id);
            self.draft.kubeconfigs.push(merged);
        }
    }

    /// Returns the leaf id and common name of a kubeconfig's client certificate.
    fn kubeconfig_user(&self, label: Option<&str>) -> Option<(String, String)> {
        let label = label?;
        let der = &self.tree.store.certs(label).first()?.der;
        let leaf = self
            .draft
            .leaves
            .iter()
            .find(|l| l.instances.iter().any(|i| &i.der == der))?;
        let common_name = self.tree.store.certs(label).first()?.common_name.clone();
        Some((leaf.id.clone(), common_name.unwrap_or_default()))
    }

    fn kubeconfig_ca(&self, label: Option<&str>) -> Option<String> {
        let label = label?;
        let der = &self.tree.store.certs(label).first()?.der;
        self.draft
            .cas
            .iter()
            .find(|ca| {
                self.tree
                    .store
                    .certs(&ca.cert.source)
                    .first()
                    .map(|c| &c.der)
                    == Some(der)
            })
            .map(|ca| ca.id.clone())
    }

    fn add_cluster(&mut self) {
        let facts = &self.tree.layout.facts;
        let first = self
            .draft
            .kubeconfigs
            .iter()
            .find(|k| k.left_out.is_none())
            .or(self.draft.kubeconfigs.first());
        let first_found = first.and_then(|k| {
            let label = &k.instances.first()?.1.source;
            self.tree.kubeconfigs.iter().find(|f| &f.label == label)
        });
        let name = match first_found {
            Some(found) if !found.cluster_name.is_empty() => (
                found.cluster_name.clone(),
                format!("the cluster of {}", found.label),
            ),
            _ => (
                "kubernetes".into(),
                "kubeadm's default, since no kubeconfig names one".into(),
            ),
        };
        self.draft.cluster.name = name;
        let server = first_found.and_then(|f| Some((f.server.clone()?, f.label.clone())));
        let server = match (server, &facts.advertise_address) {
            (Some((url, label)), _) => (url, format!("the server of {label}")),
            (None, Some(address)) => (
                format!("https://{}", socket_host(address.value, 6443)),
                format!("{} on kubeadm's port 6443", address.source),
            ),
            (None, None) => self.server_from_apiserver_cert(),
        };
        let cluster = &mut self.draft.cluster;
        cluster.server = server;
        cluster.advertise_address = facts
            .advertise_address
            .as_ref()
            .map(|a| (a.value, a.source.clone()));
        let cidrs: Vec<String> = facts
            .service_cidrs
            .value
            .iter()
            .map(|c| c.to_string())
            .collect();
        cluster.service_cidr = if cidrs.is_empty() {
            (
                "10.96.0.0/12".into(),
                "kubeadm's default serviceSubnet".into(),
            )
        } else {
            (cidrs.join(","), facts.service_cidrs.source.clone())
        };
        cluster.dns_domain = (
            facts.dns_domain.value.clone(),
            facts.dns_domain.source.clone(),
        );
        for kubeconfig in &mut self.draft.kubeconfigs {
            if kubeconfig.server.as_deref() == Some(cluster.server.0.as_str()) {
                kubeconfig.server = None;
            }
        }
    }

    /// Returns an API server URL on port 6443 from the apiserver certificate's first
    /// address that is neither a loopback nor a service address.
    fn server_from_apiserver_cert(&self) -> (String, String) {
        let apiserver = self
            .draft
            .leaves
            .iter()
            .find(|l| l.role == Some(Role::Apiserver) && !l.per_node);
        let services = &self.tree.layout.facts.service_cidrs.value;
        let host = apiserver.and_then(|leaf| {
            let cert = self
                .tree
                .store
                .certs(&leaf.instances[0].cert.source)
                .first()?;
            cert.sans.iter().find_map(|san| match san {
                San::Ip(ip) if !ip.is_loopback() && !services.iter().any(|n| n.contains(ip)) => {
                    Some(socket_host(*ip, 6443))
                }
                _ => None,
            })
        });
        match host {
            Some(host) => (
                format!("https://{host}"),
                "the first node address among the apiserver certificate's SANs, on \
                 kubeadm's port 6443"
                    .into(),
            ),
            None => (
                "https://127.0.0.1:6443".into(),
                "a placeholder, since the tree names no API server address".into(),
            ),
        }
    }
}

/// Returns `host:port`, with an IPv6 address in brackets.
fn socket_host(ip: IpAddr, port: u16) -> String {
    match ip {
        IpAddr::V4(v4) => format!("{v4}:{port}"),
        IpAddr::V6(v6) => format!("[{v6}]:{port}"),
    }
}

/// Returns the largest whole number of years, days, hours, minutes or seconds that is
/// at most `span` and at least `span - backdate`: the validity that `state` reads the
/// span as, written in the coarsest unit that fits.
pub(super) fn declared_validity(span: u64, backdate: u64) -> Duration {
    for unit in [365 * 86_400, 86_400, 3600, 60, 1] {
        let whole = span / unit * unit;
        if whole > 0 && span - whole <= backdate {
            return Duration::from_secs(whole);
        }
    }
    Duration::from_secs(span.max(1))
}

/// Splits `nodes/NODE/REST` into the node and the rest of the path.
fn split_node(label: &str) -> Option<(&str, &str)> {
    let rest = label.strip_prefix("nodes/")?;
    rest.split_once('/')
}

/// Returns the role of a kubeadm file name (without extension), relative to `pki/`.
fn role_of(path: &str) -> Option<Role> {
    let stem = path
        .strip_suffix(".crt")
        .or_else(|| path.strip_suffix(".pem"))
        .unwrap_or(path);
    Some(match stem {
        "apiserver" => Role::Apiserver,
        "apiserver-kubelet-client" => Role::ApiserverKubeletClient,
        "apiserver-etcd-client" => Role::ApiserverEtcdClient,
        "front-proxy-client" => Role::FrontProxyClient,
        "etcd/server" => Role::EtcdServer,
        "etcd/peer" => Role::EtcdPeer,
        "etcd/healthcheck-client" => Role::EtcdHealthcheckClient,
        "admin" => Role::Admin,
        "super-admin" => Role::SuperAdmin,
        "controller-manager" => Role::ControllerManager,
        "scheduler" => Role::Scheduler,
        "kubelet-client" => Role::KubeletClient,
        "kubelet" => Role::KubeletServing,
        _ => return None,
    })
}

/// Returns the SANs that a per-node role adds for a node, as the model derives them.
fn role_sans(role: Role, node: &str, facts: &(Vec<IpAddr>, Vec<String>)) -> Vec<San> {
    let (ips, dns) = facts;
    let mut sans = Vec::new();
    match role {
        Role::KubeletServing => {
            sans.push(San::Dns(node.to_string()));
            sans.extend(dns.iter().cloned().map(San::Dns));
            sans.extend(ips.iter().copied().map(San::Ip));
        }
        Role::EtcdServer | Role::EtcdPeer => {
            sans.push(San::Dns(node.to_string()));
            sans.extend(dns.iter().cloned().map(San::Dns));
            sans.push(San::Dns("localhost".into()));
            sans.extend(ips.iter().copied().map(San::Ip));
            sans.push(San::Ip(IpAddr::from([127, 0, 0, 1])));
            sans.push(San::Ip(IpAddr::from([0u16, 0, 0, 0, 0, 0, 0, 1])));
        }
        _ => {}
    }
    sans
}

fn san_texts(sans: &[San]) -> Vec<String> {
    sans.iter().map(san_text).collect()
}

/// Returns a SAN as the manifest writes it: the name, address or URI alone.
fn san_text(san: &San) -> String {
    match san {
        San::Dns(name) => name.clone(),
        San::Ip(ip) => ip.to_string(),
        San::Uri(uri) => uri.clone(),
    }
}

/// Returns an object id from a file path: `pki/etcd/ca.crt` becomes `etcd-ca`.
fn object_id(path: &str) -> String {
    let path = path.strip_prefix("pki/").unwrap_or(path);
    let stem = match path.rsplit_once('.') {
        Some((stem, _)) if !stem.is_empty() => stem,
        _ => path,
    };
    let mut id: String = stem
        .chars()
        .map(|c| match c.to_ascii_lowercase() {
            c @ ('a'..='z' | '0'..='9') => c,
            _ => '-',
        })
        .collect();
    while id.starts_with('-') {
        id.remove(0);
    }
    if id.is_empty() {
        id = "object".into();
    }
    id
}

fn object_id_unique(cas: &[&Pair], index: usize) -> String {
    let mut ids = Ids::default();
    let mut result = String::new();
    for (i, pair) in cas.iter().enumerate() {
        let id = ids.take(&object_id(&pair.cert_label));
        if i == index {
            result = id;
        }
    }
    result
}

/// Hands out ids, appending `-2`, `-3` and so on to repeats.
#[derive(Default)]
struct Ids(Vec<String>);

impl Ids {
    fn take(&mut self, base: &str) -> String {
        let mut id = base.to_string();
        let mut n = 2;
        while self.0.contains(&id) {
            id = format!("{base}-{n}");
            n += 1;
        }
        self.0.push(id.clone());
        id
    }
}

/// Describes a certificate for the manifest comment: subject, key, key encoding and
/// validity dates.
fn summary(info: &CertInfo, format: KeyFormat) -> String {
    let date = |t: i64| {
        OffsetDateTime::from_unix_timestamp(t)
            .ok()
            .and_then(|d| d.format(&Rfc3339).ok())
            .unwrap_or_else(|| t.to_string())
    };
    format!(
        "{}, {} key in {}, valid from {} to {}",
        info.subject,
        info.public_key.algorithm,
        format.name(),
        date(info.not_before),
        date(info.not_after)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validity_in_coarsest_unit() {
        let day = 86_400;
        assert_eq!(
            declared_validity(365 * day, 300),
            Duration::from_secs(365 * day)
        );
        assert_eq!(
            declared_validity(365 * day + 300, 300),
            Duration::from_secs(365 * day)
        );
        assert_eq!(
            declared_validity(30 * day + 7200, 300),
            Duration::from_secs(30 * day + 7200)
        );
        assert_eq!(declared_validity(12_345, 0), Duration::from_secs(12_345));
    }

    #[test]
    fn ids_from_kubeadm_paths() {
        assert_eq!(object_id("pki/etcd/ca.crt"), "etcd-ca");
        assert_eq!(object_id("pki/front-proxy-ca.crt"), "front-proxy-ca");
        assert_eq!(object_id("admin.conf"), "admin");
        assert_eq!(object_id("pki/sa.key"), "sa");
    }
}
