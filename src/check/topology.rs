//! Trust topology: each TLS connection of the cluster that the flags describe, each
//! direction of it (which certificate is presented, which CA file verifies it, and the
//! verdict), and whether the connection is mutual or one-way. Kubeconfig connections
//! to the apiserver are built in `clients`.
//!
//! Expired certificates, missing names and wrong usages show in a leg's verdict, but
//! their findings come from the per-certificate and role rules, once per certificate.

use super::Context;
use super::connection::{Connection, Leg, Mode};
use super::findings::{self, Finding, Kind};
use super::inventory::Needs;
use super::layout::{Component, url_host};
use super::tls::{self, Failure};

/// Checks the connections that component flags describe.
pub fn check(ctx: &Context) -> (Vec<Finding>, Vec<Connection>) {
    let mut topology = Topology {
        ctx,
        findings: Vec::new(),
        connections: Vec::new(),
    };
    if let Some(apiserver) = &ctx.layout.apiserver {
        for kubelet in &ctx.layout.kubelets {
            topology.apiserver_to_kubelet(apiserver, kubelet);
        }
        for member in &ctx.layout.etcd {
            topology.apiserver_to_etcd(apiserver, member);
        }
        topology.front_proxy(apiserver);
    }
    for dialer in &ctx.layout.etcd {
        for listener in ctx.layout.etcd.iter().filter(|m| m.node != dialer.node) {
            topology.etcd_peers(dialer, listener);
        }
    }
    (topology.findings, topology.connections)
}

struct Topology<'a> {
    ctx: &'a Context,
    findings: Vec<Finding>,
    connections: Vec<Connection>,
}

impl Topology<'_> {
    /// Verifies one leg and records a finding for a trust failure.
    fn verify(&mut self, leg: Leg, needs: Needs, name: Option<&str>, component: &Component) -> Leg {
        let (Some(presented), Some(ca)) = (leg.presented.clone(), leg.ca_file.clone()) else {
            return leg.skipped("the tree does not name both files");
        };
        let result = tls::verify(
            self.ctx.store.certs(&presented),
            self.ctx.store.certs(&ca),
            needs,
            name,
            self.ctx.now,
        );
        if let Err(failure) = &result {
            let kind = match (failure, needs) {
                (Failure::Stale { .. }, _) => Some(findings::ISSUER_STALE),
                (Failure::Untrusted(_), Needs::Server) => Some(findings::SERVER_CERT_UNTRUSTED),
                (Failure::Untrusted(_), Needs::Client) => Some(findings::CLIENT_CERT_UNTRUSTED),
                _ => None,
            };
            if let Some(kind) = kind {
                self.findings.push(Finding::new(
                    kind,
                    Some(&presented),
                    format!(
                        "{}: {}, checked with {ca} ({}) by {}: {}",
                        leg.direction,
                        presented,
                        leg.verifier,
                        component.label(),
                        failure.describe()
                    ),
                    format!(
                        "sign {presented} with a CA of {ca}, or point {} at the CA that signed it",
                        leg.verifier
                    ),
                ));
            }
        }
        leg.with_result(result)
    }

    fn flag(&self, component: &Component, flag: &str) -> Option<String> {
        let value = component.get(flag)?;
        match self.ctx.layout.resolve(value, component.node.as_deref()) {
            super::layout::Resolved::InTree(label) => Some(label),
            super::layout::Resolved::Outside(_) => None,
        }
    }

    fn warn(&mut self, kind: Kind, file: Option<&str>, message: String, fix: String) {
        self.findings.push(Finding::new(kind, file, message, fix));
    }

    fn apiserver_to_kubelet(&mut self, apiserver: &Component, kubelet: &Component) {
        let node = kubelet.node.clone().unwrap_or_default();
        let kubelet_label = kubelet.label();
        let mut connection = Connection::new(format!("kube-apiserver -> {kubelet_label}"));
        let client_cert = self.flag(apiserver, "kubelet-client-certificate");
        let client_ca = self.flag(kubelet, "client-ca-file");
        let leg = Leg::new(
            "kube-apiserver presents --kubelet-client-certificate",
            client_cert.as_deref(),
            client_ca.as_deref(),
            "kubelet --client-ca-file",
        );
        let leg = if client_ca.is_none() {
            self.warn(
                findings::TRUST_FLAG_UNSET,
                kubelet.file.as_deref(),
                format!(
                    "{} has no --client-ca-file, so it cannot authenticate the apiserver's client \
                     certificate",
                    kubelet.label()
                ),
                "set --client-ca-file on the kubelet to the CA that signs \
                 --kubelet-client-certificate"
                    .into(),
            );
            leg.unverified("the kubelet has no --client-ca-file")
        } else {
            self.verify(leg, Needs::Client, None, kubelet)
        };
        connection.push_leg(leg);

        let serving = self.flag(kubelet, "tls-cert-file");
        let kubelet_ca = self.flag(apiserver, "kubelet-certificate-authority");
        let dialed = super::roles::kubelet_addresses(self.ctx, &node)
            .0
            .first()
            .cloned()
            .unwrap_or(node.clone());
        let leg = Leg::new(
            "the kubelet presents --tls-cert-file",
            serving.as_deref(),
            kubelet_ca.as_deref(),
            "kube-apiserver --kubelet-certificate-authority",
        );
        let leg = if kubelet_ca.is_none() {
            let advice = "set --kubelet-certificate-authority on kube-apiserver to the CA that \
                signs the kubelets' serving certificates"
                .to_string();
            self.warn(
                findings::ONE_WAY_TLS,
                apiserver.file.as_deref(),
                format!(
                    "kube-apiserver -> {kubelet_label} is one-way TLS: kube-apiserver has no \
                     --kubelet-certificate-authority, so it does not verify the kubelet's serving \
                     certificate"
                ),
                advice.clone(),
            );
            connection.one_way(advice);
            leg.unverified("kube-apiserver has no --kubelet-certificate-authority")
        } else {
            self.verify(leg, Needs::Server, Some(&dialed), apiserver)
        };
        connection.push_leg(leg);
        self.connections.push(connection);
    }

    fn apiserver_to_etcd(&mut self, apiserver: &Component, member: &Component) {
        let node = member.node.clone().unwrap_or_default();
        let member_label = member.label();
        let mut connection = Connection::new(format!("kube-apiserver -> {member_label}"));
        let client_cert = self.flag(apiserver, "etcd-certfile");
        let trusted = self.flag(member, "trusted-ca-file");
        let leg = Leg::new(
            "kube-apiserver presents --etcd-certfile",
            client_cert.as_deref(),
            trusted.as_deref(),
            "etcd --trusted-ca-file",
        );
        let leg = if !member.is_true("client-cert-auth") || trusted.is_none() {
            let advice =
                format!("set --client-cert-auth=true and --trusted-ca-file on {member_label}");
            self.warn(
                findings::ONE_WAY_TLS,
                member.file.as_deref(),
                format!(
                    "kube-apiserver -> {member_label} is one-way TLS: etcd does not verify client \
                     certificates"
                ),
                advice.clone(),
            );
            connection.one_way(advice);
            leg.unverified("etcd has no --client-cert-auth=true with --trusted-ca-file")
        } else {
            self.verify(leg, Needs::Client, None, member)
        };
        connection.push_leg(leg);

        let serving = self.flag(member, "cert-file");
        let etcd_ca = self.flag(apiserver, "etcd-cafile");
        let dialed = self.etcd_host(apiserver, &node);
        let leg = Leg::new(
            "etcd presents --cert-file",
            serving.as_deref(),
            etcd_ca.as_deref(),
            "kube-apiserver --etcd-cafile",
        );
        let leg =
            if etcd_ca.is_none() {
                self.warn(
                findings::TRUST_FLAG_UNSET,
                apiserver.file.as_deref(),
                "kube-apiserver has no --etcd-cafile, so it verifies etcd with the system's CAs, \
                 which do not hold the etcd CA".into(),
                "set --etcd-cafile on kube-apiserver to the CA that signs etcd's serving \
                 certificates".into(),
            );
                leg.unverified("kube-apiserver has no --etcd-cafile")
            } else {
                self.verify(leg, Needs::Server, dialed.as_deref(), apiserver)
            };
        connection.push_leg(leg);
        self.connections.push(connection);
    }

    /// Returns the host of the `--etcd-servers` URL that reaches `node`, or the node's
    /// first address.
    fn etcd_host(&self, apiserver: &Component, node: &str) -> Option<String> {
        let facts = self.ctx.layout.facts.node(node);
        let hosts: Vec<String> = apiserver
            .get("etcd-servers")
            .unwrap_or("")
            .split(',')
            .filter_map(url_host)
            .collect();
        let own = |host: &String| {
            facts.is_some_and(|n| n.name == *host || n.ips.iter().any(|ip| ip.to_string() == *host))
        };
        hosts
            .iter()
            .find(|h| own(h))
            .cloned()
            .or_else(|| (hosts.len() == 1).then(|| hosts[0].clone()))
            .or_else(|| facts.and_then(|n| n.ips.first()).map(|ip| ip.to_string()))
    }

    fn etcd_peers(&mut self, dialer: &Component, listener: &Component) {
        let (from, to) = (
            dialer.node.clone().unwrap_or_default(),
            listener.node.clone().unwrap_or_default(),
        );
        let mut connection = Connection::new(format!("etcd peer {from} -> etcd peer {to}"));
        let address = self
            .ctx
            .layout
            .facts
            .node(&to)
            .and_then(|n| n.ips.first())
            .map(|ip| ip.to_string());
        let leg = Leg::new(
            &format!("etcd on {to} presents --peer-cert-file"),
            self.flag(listener, "peer-cert-file").as_deref(),
            self.flag(dialer, "peer-trusted-ca-file").as_deref(),
            &format!("etcd on {from} --peer-trusted-ca-file"),
        );
        connection.push_leg(self.verify(leg, Needs::Server, address.as_deref(), dialer));
        let leg = Leg::new(
            &format!("etcd on {from} presents --peer-cert-file"),
            self.flag(dialer, "peer-cert-file").as_deref(),
            self.flag(listener, "peer-trusted-ca-file").as_deref(),
            &format!("etcd on {to} --peer-trusted-ca-file"),
        );
        let leg = if listener.is_true("peer-client-cert-auth") {
            self.verify(leg, Needs::Client, None, listener)
        } else {
            let advice = format!("set --peer-client-cert-auth=true on etcd on {to}");
            connection.one_way(advice.clone());
            self.warn(
                findings::ONE_WAY_TLS,
                listener.file.as_deref(),
                format!(
                    "etcd peer {from} -> {to} is one-way TLS: etcd on {to} does not verify peer \
                     client certificates"
                ),
                advice,
            );
            leg.unverified("etcd has no --peer-client-cert-auth=true")
        };
        connection.push_leg(leg);
        self.connections.push(connection);
    }

    fn front_proxy(&mut self, apiserver: &Component) {
        let Some(client) = self.flag(apiserver, "proxy-client-cert-file") else {
            return;
        };
        let ca = self.flag(apiserver, "requestheader-client-ca-file");
        let mut connection =
            Connection::new("front proxy (kube-apiserver) -> aggregated API server".into());
        let leg = Leg::new(
            "kube-apiserver presents --proxy-client-cert-file",
            Some(&client),
            ca.as_deref(),
            "--requestheader-client-ca-file, which aggregated API servers read",
        );
        let leg = match ca {
            Some(_) => self.verify(leg, Needs::Client, None, apiserver),
            None => {
                self.warn(
                    findings::TRUST_FLAG_UNSET,
                    apiserver.file.as_deref(),
                    "kube-apiserver sets --proxy-client-cert-file but no \
                     --requestheader-client-ca-file, so aggregated API servers cannot verify the \
                     front proxy"
                        .into(),
                    "set --requestheader-client-ca-file to the CA that signs the front-proxy \
                     client certificate"
                        .into(),
                );
                leg.unverified("no --requestheader-client-ca-file")
            }
        };
        connection.push_leg(leg);
        let server = Leg::new(
            "the aggregated API server presents its serving certificate",
            None,
            None,
            "the APIService's caBundle",
        )
        .skipped(
            "the aggregated API server's certificate and the APIService's caBundle live in the \
             cluster, not in this tree",
        );
        connection.push_leg(server);
        connection.mode = Mode::PartlyOutsideTree;
        self.connections.push(connection);
    }
}
