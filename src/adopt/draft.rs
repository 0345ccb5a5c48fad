//! The manifest that `pkic init` writes, as objects that remember the files they came
//! from, and its rendering as TOML with a comment on each object.

use std::net::IpAddr;
use std::time::Duration;

use crate::model::values::format_duration;
use crate::model::{KeyAlgorithm, Role, Subject, Usage};

/// One file copied from the adopted tree into the output directory.
#[derive(Debug, Clone)]
pub(super) struct Copy {
    /// Path relative to the adopted directory.
    pub source: String,
    /// Path relative to the output directory.
    pub out: String,
    /// True for private keys and kubeconfigs that embed one: mode 0600.
    pub secret: bool,
}

/// Key settings of an adopted key pair.
#[derive(Debug, Clone, Copy)]
pub(super) struct KeyFacts {
    pub algorithm: KeyAlgorithm,
    /// `pkcs1` or `pkcs8`: the format pkic writes a new key in.
    pub format: &'static str,
}

#[derive(Debug, Clone)]
pub(super) struct Ca {
    pub id: String,
    pub issuer: Option<String>,
    pub subject: Subject,
    pub path_len: Option<u32>,
    pub key: KeyFacts,
    pub validity: Duration,
    pub cert: Copy,
    pub key_file: Copy,
    pub notes: Vec<String>,
    pub left_out: Option<String>,
}

/// One certificate file of a leaf: the only one of a top-level leaf, or one node's.
#[derive(Debug, Clone)]
pub(super) struct Instance {
    pub node: Option<String>,
    pub cert: Copy,
    pub key: Copy,
    pub der: Vec<u8>,
    pub note: String,
}

/// A leaf certificate, or a per-node template whose instances are the nodes' files.
#[derive(Debug, Clone)]
pub(super) struct Leaf {
    /// Certificate id, or the template name of a per-node leaf.
    pub id: String,
    pub per_node: bool,
    pub issuer: String,
    pub role: Option<Role>,
    /// Subject, with the node name written as `{node}` in a per-node template.
    pub subject: Subject,
    /// SANs written with `role`: the found SANs less those the role adds per node.
    pub role_sans: Vec<String>,
    /// SANs written without a role: every found SAN.
    pub plain_sans: Vec<String>,
    pub usage: Usage,
    pub key: KeyFacts,
    pub validity: Duration,
    /// Paths as the manifest writes them: relative to the node's directory for a
    /// per-node template.
    pub cert_file: String,
    pub key_file: String,
    pub instances: Vec<Instance>,
    pub notes: Vec<String>,
    pub left_out: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Account {
    pub id: String,
    pub key: KeyFacts,
    pub key_file: Copy,
    pub public_file: Copy,
    pub left_out: Option<String>,
}

/// A kubeconfig, or a per-node template whose instances are the nodes' files.
#[derive(Debug, Clone)]
pub(super) struct Kubeconfig {
    pub id: String,
    pub per_node: bool,
    /// Leaf id or per-node template name of the client certificate.
    pub user: String,
    pub ca: String,
    /// Server URL, when it is not the cluster's first.
    pub server: Option<String>,
    pub embed: bool,
    /// User name, when it is not the client certificate's common name.
    pub user_name: Option<String>,
    pub file: String,
    pub instances: Vec<(Option<String>, Copy)>,
    pub left_out: Option<String>,
}

#[derive(Debug, Clone)]
pub(super) struct Node {
    pub name: String,
    pub ips: Vec<IpAddr>,
    pub dns: Vec<String>,
    pub roles: Vec<String>,
}

/// Cluster facts, each with the place it came from.
#[derive(Debug, Clone)]
pub(super) struct Cluster {
    pub name: (String, String),
    pub server: (String, String),
    pub advertise_address: Option<(IpAddr, String)>,
    pub service_cidr: (String, String),
    pub dns_domain: (String, String),
    pub install_root: String,
}

/// Everything `pkic init` found, as manifest objects.
#[derive(Debug, Clone)]
pub(super) struct Draft {
    pub source: String,
    pub layout: &'static str,
    pub cluster: Cluster,
    pub backdate: Duration,
    pub cas: Vec<Ca>,
    pub leaves: Vec<Leaf>,
    pub accounts: Vec<Account>,
    pub kubeconfigs: Vec<Kubeconfig>,
    pub nodes: Vec<Node>,
    /// Files that were not adopted, with the reason.
    pub skipped: Vec<(String, String)>,
}

impl Draft {
    /// Leaves out every object that depends on one already left out: the certificates
    /// and CAs an absent CA signed, and the kubeconfigs of absent certificates or CAs.
    pub fn propagate(&mut self) {
        loop {
            let mut changed = false;
            let absent_cas: Vec<String> = self
                .cas
                .iter()
                .filter(|c| c.left_out.is_some())
                .map(|c| c.id.clone())
                .collect();
            for ca in self.cas.iter_mut().filter(|c| c.left_out.is_none()) {
                if let Some(issuer) = ca.issuer.as_ref().filter(|i| absent_cas.contains(i)) {
                    ca.left_out = Some(format!("its issuer CA `{issuer}` is left out"));
                    changed = true;
                }
            }
            for leaf in self.leaves.iter_mut().filter(|l| l.left_out.is_none()) {
                if absent_cas.contains(&leaf.issuer) {
                    leaf.left_out = Some(format!("its issuer CA `{}` is left out", leaf.issuer));
                    changed = true;
                }
            }
            let absent_leaves: Vec<String> = self
                .leaves
                .iter()
                .filter(|l| l.left_out.is_some())
                .map(|l| l.id.clone())
                .collect();
            for kubeconfig in self.kubeconfigs.iter_mut().filter(|k| k.left_out.is_none()) {
                if absent_leaves.contains(&kubeconfig.user) {
                    kubeconfig.left_out = Some(format!(
                        "its client certificate `{}` is left out",
                        kubeconfig.user
                    ));
                    changed = true;
                } else if absent_cas.contains(&kubeconfig.ca) {
                    kubeconfig.left_out = Some(format!("its CA `{}` is left out", kubeconfig.ca));
                    changed = true;
                }
            }
            if !changed {
                return;
            }
        }
    }

    /// Returns every copied file with the object it belongs to and whether that object
    /// is declared.
    pub fn copies(&self) -> Vec<(&Copy, bool)> {
        let mut files = Vec::new();
        for ca in &self.cas {
            let declared = ca.left_out.is_none();
            files.push((&ca.key_file, declared));
            files.push((&ca.cert, declared));
        }
        for leaf in &self.leaves {
            for instance in &leaf.instances {
                files.push((&instance.key, leaf.left_out.is_none()));
                files.push((&instance.cert, leaf.left_out.is_none()));
            }
        }
        for account in &self.accounts {
            files.push((&account.key_file, account.left_out.is_none()));
            files.push((&account.public_file, account.left_out.is_none()));
        }
        for kubeconfig in &self.kubeconfigs {
            for (_, copy) in &kubeconfig.instances {
                files.push((copy, kubeconfig.left_out.is_none()));
            }
        }
        files
    }

    /// Renders the manifest.
    pub fn render(&self, manifest_name: &str, out: &str) -> String {
        let mut text = String::new();
        self.render_header(&mut text, manifest_name, out);
        self.render_cluster(&mut text);
        for ca in self.cas.iter().filter(|c| c.left_out.is_none()) {
            render_ca(&mut text, ca);
        }
        for leaf in self.leaves.iter().filter(|l| l.left_out.is_none()) {
            render_leaf(&mut text, leaf);
        }
        for account in self.accounts.iter().filter(|a| a.left_out.is_none()) {
            text.push_str(&format!(
                "\n# From {} and {}.\n[service-account.{}]\n",
                account.key_file.source, account.public_file.source, account.id
            ));
            push_key(&mut text, account.key);
            push_string(&mut text, "key-file", &account.key_file.out);
            push_string(&mut text, "public-key-file", &account.public_file.out);
        }
        for kubeconfig in self.kubeconfigs.iter().filter(|k| k.left_out.is_none()) {
            render_kubeconfig(&mut text, kubeconfig);
        }
        let declared_roles: Vec<&String> = self
            .leaves
            .iter()
            .filter(|l| l.per_node && l.left_out.is_none())
            .map(|l| &l.id)
            .collect();
        for node in &self.nodes {
            text.push_str("\n[[node]]\n");
            push_string(&mut text, "name", &node.name);
            let ips: Vec<String> = node.ips.iter().map(IpAddr::to_string).collect();
            push_list(&mut text, "ips", &ips);
            if !node.dns.is_empty() {
                push_list(&mut text, "dns", &node.dns);
            }
            let roles: Vec<String> = node
                .roles
                .iter()
                .filter(|r| declared_roles.contains(r))
                .cloned()
                .collect();
            push_list(&mut text, "roles", &roles);
        }
        self.render_left_out(&mut text);
        text
    }

    fn render_header(&self, text: &mut String, manifest_name: &str, out: &str) {
        text.push_str(&format!(
            "# Written by `pkic init --from {}`, which read a {}.\n\
             #\n\
             # Each object below describes certificates, keys or kubeconfigs found there, and\n\
             # its comment names the files. pkic init copied them into {out}, where\n\
             # `pkic build -m {manifest_name} -o {out}` keeps every key and certificate for\n\
             # as long as this manifest still describes it. Each validity is the span from\n\
             # notBefore to notAfter, less at most `backdate`.\n\
             #\n\
             # No flag files or RBAC bindings are declared: add [flags.*] and [binding.*]\n\
             # tables to have pkic write them.\n",
            self.source, self.layout
        ));
    }

    fn render_cluster(&self, text: &mut String) {
        let cluster = &self.cluster;
        text.push_str("\n[cluster]\n");
        text.push_str(&format!("# name: {}\n", cluster.name.1));
        push_string(text, "name", &cluster.name.0);
        text.push_str(&format!("# servers: {}\n", cluster.server.1));
        push_list(text, "servers", std::slice::from_ref(&cluster.server.0));
        if let Some((ip, source)) = &cluster.advertise_address {
            text.push_str(&format!("# advertise-address: {source}\n"));
            push_string(text, "advertise-address", &ip.to_string());
        }
        text.push_str(&format!("# service-cidr: {}\n", cluster.service_cidr.1));
        push_string(text, "service-cidr", &cluster.service_cidr.0);
        text.push_str(&format!("# dns-domain: {}\n", cluster.dns_domain.1));
        push_string(text, "dns-domain", &cluster.dns_domain.0);
        push_string(text, "install-root", &cluster.install_root);
        text.push_str("\n[defaults]\n");
        push_string(text, "backdate", &format_duration(self.backdate));
        push_string(text, "renew-before", "30d");
    }

    fn render_left_out(&self, text: &mut String) {
        let mut lines = Vec::new();
        for ca in &self.cas {
            if let Some(reason) = &ca.left_out {
                lines.push(format!("{}: {reason}", ca.cert.source));
            }
        }
        for leaf in &self.leaves {
            if let Some(reason) = &leaf.left_out {
                for instance in &leaf.instances {
                    lines.push(format!("{}: {reason}", instance.cert.source));
                }
            }
        }
        for account in &self.accounts {
            if let Some(reason) = &account.left_out {
                lines.push(format!("{}: {reason}", account.key_file.source));
            }
        }
        for kubeconfig in &self.kubeconfigs {
            if let Some(reason) = &kubeconfig.left_out {
                for (_, copy) in &kubeconfig.instances {
                    lines.push(format!("{}: {reason}", copy.source));
                }
            }
        }
        for (source, reason) in &self.skipped {
            lines.push(format!("{source}: {reason}"));
        }
        if lines.is_empty() {
            return;
        }
        text.push_str(
            "\n# Not adopted. These files are not copied into the output directory, and\n\
             # pkic does not manage them:\n",
        );
        for line in lines {
            text.push_str(&format!("# - {line}\n"));
        }
    }

    /// Returns one line per file left out, with the reason, for the summary on stderr.
    pub fn left_out_lines(&self) -> Vec<String> {
        let mut text = String::new();
        self.render_left_out(&mut text);
        text.lines()
            .filter_map(|l| l.strip_prefix("# - "))
            .map(str::to_string)
            .collect()
    }
}

fn render_ca(text: &mut String, ca: &Ca) {
    text.push('\n');
    for note in &ca.notes {
        text.push_str(&comment(note));
    }
    text.push_str(&format!("[ca.{}]\n", ca.id));
    push_subject(text, &ca.subject);
    if let Some(issuer) = &ca.issuer {
        push_string(text, "issuer", issuer);
    }
    if let Some(path_len) = ca.path_len {
        text.push_str(&format!("path-len = {path_len}\n"));
    }
    push_key(text, ca.key);
    push_string(text, "validity", &format_duration(ca.validity));
    push_string(text, "cert-file", &ca.cert.out);
    push_string(text, "key-file", &ca.key_file.out);
}

fn render_leaf(text: &mut String, leaf: &Leaf) {
    text.push('\n');
    for note in &leaf.notes {
        text.push_str(&comment(note));
    }
    for instance in &leaf.instances {
        text.push_str(&comment(&instance.note));
    }
    let table = if leaf.per_node {
        "per-node.cert"
    } else {
        "cert"
    };
    text.push_str(&format!("[{table}.{}]\n", leaf.id));
    push_string(text, "issuer", &leaf.issuer);
    let sans = match leaf.role {
        Some(role) => {
            push_string(text, "role", role.name());
            &leaf.role_sans
        }
        None => &leaf.plain_sans,
    };
    push_subject(text, &leaf.subject);
    if !sans.is_empty() {
        push_list(text, "sans", sans);
    }
    let usage = match leaf.usage {
        Usage::Server => "server",
        Usage::Client => "client",
        Usage::Both => "both",
    };
    push_string(text, "usage", usage);
    push_key(text, leaf.key);
    push_string(text, "validity", &format_duration(leaf.validity));
    push_string(text, "cert-file", &leaf.cert_file);
    push_string(text, "key-file", &leaf.key_file);
    if leaf.per_node {
        push_list(text, "node-roles", std::slice::from_ref(&leaf.id));
    }
}

fn render_kubeconfig(text: &mut String, kubeconfig: &Kubeconfig) {
    let sources: Vec<&str> = kubeconfig
        .instances
        .iter()
        .map(|(_, copy)| copy.source.as_str())
        .collect();
    text.push_str(&format!("\n# From {}.\n", sources.join(", ")));
    let table = if kubeconfig.per_node {
        "per-node.kubeconfig"
    } else {
        "kubeconfig"
    };
    text.push_str(&format!("[{table}.{}]\n", kubeconfig.id));
    push_string(text, "user", &kubeconfig.user);
    push_string(text, "ca", &kubeconfig.ca);
    if let Some(server) = &kubeconfig.server {
        push_string(text, "server", server);
    }
    if let Some(name) = &kubeconfig.user_name {
        push_string(text, "user-name", name);
    }
    if kubeconfig.embed {
        text.push_str("embed = true\n");
    }
    push_string(text, "file", &kubeconfig.file);
    if kubeconfig.per_node {
        push_list(text, "node-roles", std::slice::from_ref(&kubeconfig.user));
    }
}

fn comment(note: &str) -> String {
    format!("# {note}\n")
}

fn quoted(value: &str) -> String {
    toml::Value::String(value.to_string()).to_string()
}

fn push_string(text: &mut String, key: &str, value: &str) {
    text.push_str(&format!("{key} = {}\n", quoted(value)));
}

fn push_list(text: &mut String, key: &str, values: &[String]) {
    let items: Vec<String> = values.iter().map(|v| quoted(v)).collect();
    text.push_str(&format!("{key} = [{}]\n", items.join(", ")));
}

fn push_key(text: &mut String, key: KeyFacts) {
    push_string(text, "key-algorithm", &key.algorithm.to_string());
    push_string(text, "key-format", key.format);
}

fn push_subject(text: &mut String, subject: &Subject) {
    let mut parts = Vec::new();
    if let Some(cn) = &subject.common_name {
        parts.push(format!("cn = {}", quoted(cn)));
    }
    for (key, values) in [
        ("o", &subject.organizations),
        ("ou", &subject.organizational_units),
    ] {
        match values.as_slice() {
            [] => {}
            [one] => parts.push(format!("{key} = {}", quoted(one))),
            many => {
                let items: Vec<String> = many.iter().map(|v| quoted(v)).collect();
                parts.push(format!("{key} = [{}]", items.join(", ")));
            }
        }
    }
    for (key, value) in [
        ("c", &subject.country),
        ("st", &subject.state),
        ("l", &subject.locality),
    ] {
        if let Some(value) = value {
            parts.push(format!("{key} = {}", quoted(value)));
        }
    }
    text.push_str(&format!("subject = {{ {} }}\n", parts.join(", ")));
}
