//! Kubernetes roles of leaf certificates: the subject, usage and SANs each component
//! expects, following kubeadm's certificate table (kubeadm 1.29 and later).

use super::Usage;

/// Purpose of a leaf certificate. A role fills in defaults and adds role-specific checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Apiserver,
    ApiserverKubeletClient,
    ApiserverEtcdClient,
    Admin,
    SuperAdmin,
    ControllerManager,
    Scheduler,
    FrontProxyClient,
    KubeletClient,
    KubeletServing,
    EtcdServer,
    EtcdPeer,
    EtcdHealthcheckClient,
}

impl Role {
    pub const NAMES: [&'static str; 13] = [
        "apiserver",
        "apiserver-kubelet-client",
        "apiserver-etcd-client",
        "admin",
        "super-admin",
        "controller-manager",
        "scheduler",
        "front-proxy-client",
        "kubelet-client",
        "kubelet-serving",
        "etcd-server",
        "etcd-peer",
        "etcd-healthcheck-client",
    ];

    const ALL: [Role; 13] = [
        Role::Apiserver,
        Role::ApiserverKubeletClient,
        Role::ApiserverEtcdClient,
        Role::Admin,
        Role::SuperAdmin,
        Role::ControllerManager,
        Role::Scheduler,
        Role::FrontProxyClient,
        Role::KubeletClient,
        Role::KubeletServing,
        Role::EtcdServer,
        Role::EtcdPeer,
        Role::EtcdHealthcheckClient,
    ];

    pub fn parse(text: &str) -> Option<Role> {
        Self::NAMES
            .iter()
            .position(|name| *name == text)
            .map(|i| Self::ALL[i])
    }

    pub fn name(self) -> &'static str {
        let index = Self::ALL.iter().position(|r| *r == self).unwrap_or(0);
        Self::NAMES[index]
    }

    /// Usage that the component needs. etcd members connect to each other and to their
    /// own client port with these certificates, so they need both usages.
    pub fn default_usage(self) -> Usage {
        match self {
            Role::Apiserver | Role::KubeletServing => Usage::Server,
            Role::EtcdServer | Role::EtcdPeer => Usage::Both,
            _ => Usage::Client,
        }
    }

    /// Default common name and organizations. `node` is the node name of per-node roles.
    pub fn default_subject(self, node: Option<&str>) -> (String, Vec<String>) {
        let node = node.unwrap_or("");
        let (cn, o): (String, &[&str]) = match self {
            Role::Apiserver => ("kube-apiserver".into(), &[]),
            Role::ApiserverKubeletClient => (
                "kube-apiserver-kubelet-client".into(),
                &["kubeadm:cluster-admins"],
            ),
            Role::ApiserverEtcdClient => ("kube-apiserver-etcd-client".into(), &[]),
            Role::Admin => ("kubernetes-admin".into(), &["system:masters"]),
            Role::SuperAdmin => ("kubernetes-super-admin".into(), &["system:masters"]),
            Role::ControllerManager => ("system:kube-controller-manager".into(), &[]),
            Role::Scheduler => ("system:kube-scheduler".into(), &[]),
            Role::FrontProxyClient => ("front-proxy-client".into(), &[]),
            Role::KubeletClient | Role::KubeletServing => {
                (format!("system:node:{node}"), &["system:nodes"])
            }
            Role::EtcdServer | Role::EtcdPeer => (node.to_string(), &[]),
            Role::EtcdHealthcheckClient => ("kube-etcd-healthcheck-client".into(), &[]),
        };
        (cn, o.iter().map(|s| s.to_string()).collect())
    }

    /// Roles whose certificates name one node and are expanded per node.
    pub fn is_per_node(self) -> bool {
        matches!(self, Role::KubeletClient | Role::KubeletServing)
    }

    /// Common name that RBAC's default bindings expect, for roles that have one.
    pub fn required_common_name(self) -> Option<&'static str> {
        match self {
            Role::ControllerManager => Some("system:kube-controller-manager"),
            Role::Scheduler => Some("system:kube-scheduler"),
            _ => None,
        }
    }
}
