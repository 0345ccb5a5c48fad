//! etcd member rules. Each member's server and peer certificates must cover the
//! addresses it advertises. They must also allow client use when etcd checks client
//! certificates, because etcd presents them as a client too: its gateway dials its own
//! client port, and members dial each other with the peer certificate.

use super::Context;
use super::findings::{self, Finding};
use super::layout::{Component, Resolved, url_host};
use super::roles::{missing, san_list};

/// Runs the etcd rules for every member.
pub fn check(ctx: &Context) -> Vec<Finding> {
    let mut found = Vec::new();
    for member in &ctx.layout.etcd {
        for (cert_flag, urls_flag, auth_flag) in [
            ("cert-file", "advertise-client-urls", "client-cert-auth"),
            (
                "peer-cert-file",
                "initial-advertise-peer-urls",
                "peer-client-cert-auth",
            ),
        ] {
            let Some(value) = member.get(cert_flag) else {
                continue;
            };
            let Resolved::InTree(label) = ctx.layout.resolve(value, member.node.as_deref()) else {
                continue;
            };
            let Some(cert) = ctx.store.certs(&label).first() else {
                continue;
            };
            let required = member_addresses(ctx, member, urls_flag);
            let lacking = missing(cert, &required);
            if !lacking.is_empty() {
                found.push(Finding::new(
                    findings::ETCD_SAN_MISSING,
                    Some(&label),
                    format!(
                        "{} of {} lacks the member's own address {} (it covers {}), so clients and \
                         peers dialing it fail; a certificate copied from another member looks \
                         like this",
                        member.origin(cert_flag),
                        member.label(),
                        lacking.join(", "),
                        san_list(cert)
                    ),
                    format!(
                        "issue this member its own certificate with the SANs {}",
                        lacking.join(", ")
                    ),
                ));
            }
            let allows_client =
                cert.version == 1 || cert.eku.is_none_or(|e| e.client_auth || e.any);
            if member.is_true(auth_flag) && !allows_client {
                found.push(Finding::new(
                    findings::ETCD_CERT_NOT_CLIENT,
                    Some(&label),
                    format!(
                        "{} cannot act as a client: its extendedKeyUsage lacks clientAuth, but \
                         etcd presents it as a client certificate and --{auth_flag}=true checks it",
                        member.origin(cert_flag)
                    ),
                    "reissue it with extendedKeyUsage = serverAuth,clientAuth",
                ));
            }
        }
    }
    found
}

/// Returns the hosts a member advertises in `flag`, or its known addresses.
fn member_addresses(ctx: &Context, member: &Component, flag: &str) -> Vec<String> {
    let hosts: Vec<String> = member
        .all(flag)
        .iter()
        .flat_map(|urls| urls.split(','))
        .filter_map(url_host)
        .filter(|h| h != "127.0.0.1" && h != "localhost" && h != "::1")
        .collect();
    if !hosts.is_empty() {
        return hosts;
    }
    member
        .node
        .as_deref()
        .and_then(|n| ctx.layout.facts.node(n))
        .map(|n| n.ips.iter().map(|ip| ip.to_string()).collect())
        .unwrap_or_default()
}
