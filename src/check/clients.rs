//! Connections of kubeconfig clients (kubectl, the controller-manager, the scheduler,
//! kubelets) to kube-apiserver. The kubeconfig's CA must verify the apiserver's serving
//! certificate, the server host must be in that certificate's SANs, and the client
//! certificate must chain to a CA of `--client-ca-file`.

use super::Context;
use super::connection::{Connection, Leg};
use super::findings::{self, Finding};
use super::inventory::Needs;
use super::kubeconfig::Kubeconfig;
use super::layout::{Purpose, url_host};
use super::tls::{self, Failure};

/// Checks each kubeconfig against the apiserver and returns its connections.
pub fn check(ctx: &Context) -> (Vec<Finding>, Vec<Connection>) {
    let mut found = Vec::new();
    let mut connections = Vec::new();
    let serving = ctx.serving_cert();
    let client_ca = ctx.apiserver_trust("client-ca-file");
    for kubeconfig in &ctx.kubeconfigs {
        let mut connection = Connection::new(format!(
            "{} ({}) -> kube-apiserver",
            client_name(kubeconfig),
            kubeconfig.label
        ));
        connection.push_leg(server_leg(ctx, kubeconfig, serving.as_deref(), &mut found));
        connection.push_leg(client_leg(
            ctx,
            kubeconfig,
            client_ca.as_deref(),
            &mut found,
        ));
        connections.push(connection);
    }
    (found, connections)
}

fn client_name(kubeconfig: &Kubeconfig) -> String {
    match (kubeconfig.purpose, &kubeconfig.node) {
        (Purpose::Kubelet, Some(node)) => format!("kubelet on {node}"),
        (Purpose::Kubelet, None) => "kubelet".into(),
        (Purpose::ControllerManager, _) => "kube-controller-manager".into(),
        (Purpose::Scheduler, _) => "kube-scheduler".into(),
        _ => "kubectl".into(),
    }
}

fn server_leg(
    ctx: &Context,
    kubeconfig: &Kubeconfig,
    serving: Option<&str>,
    found: &mut Vec<Finding>,
) -> Leg {
    let file = Some(kubeconfig.label.as_str());
    let host = kubeconfig.server.as_deref().and_then(url_host);
    let leg = Leg::new(
        "kube-apiserver presents --tls-cert-file",
        serving,
        kubeconfig.ca.as_deref(),
        "the kubeconfig's certificate-authority",
    );
    let (Some(serving), Some(ca)) = (serving, &kubeconfig.ca) else {
        return leg.skipped("the serving certificate or the kubeconfig's CA is unknown");
    };
    let presented = ctx.store.certs(serving);
    if let (Some(leaf), Some(host)) = (presented.first(), &host)
        && !tls::covers(&leaf.sans, host)
    {
        found.push(Finding::new(
            findings::KUBECONFIG_SERVER_NOT_IN_SANS,
            file,
            format!(
                "the server URL {} dials {host}, which the apiserver's certificate {serving} does \
                 not cover",
                kubeconfig.server.as_deref().unwrap_or("")
            ),
            format!(
                "add {host} to the apiserver certificate's SANs, or point the server URL at a name \
                 it covers"
            ),
        ));
    }
    let result = tls::verify(
        presented,
        ctx.store.certs(ca),
        Needs::Server,
        host.as_deref(),
        ctx.now,
    );
    if let Err(failure) = &result
        && matches!(failure, Failure::Untrusted(_) | Failure::Stale { .. })
    {
        found.push(Finding::new(
            findings::KUBECONFIG_CA_MISMATCH,
            file,
            format!(
                "its CA {ca} does not verify the apiserver's certificate {serving}: {}",
                failure.describe()
            ),
            format!("set certificate-authority to the CA that signed {serving}"),
        ));
    }
    leg.with_result(result)
}

fn client_leg(
    ctx: &Context,
    kubeconfig: &Kubeconfig,
    client_ca: Option<&str>,
    found: &mut Vec<Finding>,
) -> Leg {
    let leg = Leg::new(
        "the client presents its client-certificate",
        kubeconfig.client_cert.as_deref(),
        client_ca,
        "kube-apiserver --client-ca-file",
    );
    let (Some(cert), Some(client_ca)) = (&kubeconfig.client_cert, client_ca) else {
        return leg.skipped("the client certificate or --client-ca-file is unknown");
    };
    let result = tls::verify(
        ctx.store.certs(cert),
        ctx.store.certs(client_ca),
        Needs::Client,
        None,
        ctx.now,
    );
    if let Err(failure) = &result
        && matches!(failure, Failure::Untrusted(_) | Failure::Stale { .. })
    {
        found.push(Finding::new(
            findings::KUBECONFIG_CLIENT_UNTRUSTED,
            Some(&kubeconfig.label),
            format!(
                "its client certificate {cert} does not verify with the apiserver's \
                 --client-ca-file {client_ca}: {}",
                failure.describe()
            ),
            format!(
                "sign the client certificate with a CA of {client_ca}, or add its CA to that file"
            ),
        ));
    }
    leg.with_result(result)
}
