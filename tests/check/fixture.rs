//! The base tree of the `pkic check` tests: a correct cluster PKI made with openssl,
//! in kubeadm's file names, with a map file that gives every component's flags. Each
//! test copies it, introduces one fault, and runs `pkic check` on the copy.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use serde_json::Value;

use crate::tree::{CLIENT, Issue, Key, SERVER, SERVER_CLIENT, Tree, copy_dir};

/// SANs of the apiserver's serving certificate in the base tree.
pub const APISERVER_SANS: &str = "subjectAltName = DNS:kubernetes,DNS:kubernetes.default,\
DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,DNS:cp-1,\
IP:10.96.0.1,IP:192.0.2.10,IP:127.0.0.1\n";

/// SANs of the etcd server and peer certificates of member cp-1.
pub const ETCD_SANS: &str = "subjectAltName = DNS:cp-1,DNS:localhost,IP:192.0.2.10,IP:127.0.0.1\n";

/// SANs of worker-1's kubelet serving certificate.
pub const KUBELET_SANS: &str = "subjectAltName = DNS:worker-1,IP:192.0.2.21\n";

/// The map file of the base tree. Tests replace lines of it to change the wiring.
pub const MAP: &str = r#"[cluster]
service-cidr = "10.96.0.0/12"
dns-domain = "cluster.local"
advertise-address = "192.0.2.10"
servers = ["https://192.0.2.10:6443"]

[kube-apiserver]
advertise-address = "192.0.2.10"
service-cluster-ip-range = "10.96.0.0/12"
tls-cert-file = "/etc/kubernetes/pki/apiserver.crt"
tls-private-key-file = "/etc/kubernetes/pki/apiserver.key"
client-ca-file = "/etc/kubernetes/pki/ca.crt"
kubelet-client-certificate = "/etc/kubernetes/pki/apiserver-kubelet-client.crt"
kubelet-client-key = "/etc/kubernetes/pki/apiserver-kubelet-client.key"
kubelet-certificate-authority = "/etc/kubernetes/pki/ca.crt"
kubelet-preferred-address-types = "InternalIP,Hostname"
etcd-servers = "https://192.0.2.10:2379"
etcd-cafile = "/etc/kubernetes/pki/etcd/ca.crt"
etcd-certfile = "/etc/kubernetes/pki/apiserver-etcd-client.crt"
etcd-keyfile = "/etc/kubernetes/pki/apiserver-etcd-client.key"
proxy-client-cert-file = "/etc/kubernetes/pki/front-proxy-client.crt"
proxy-client-key-file = "/etc/kubernetes/pki/front-proxy-client.key"
requestheader-client-ca-file = "/etc/kubernetes/pki/front-proxy-ca.crt"
requestheader-allowed-names = "front-proxy-client"
service-account-key-file = "/etc/kubernetes/pki/sa.pub"
service-account-signing-key-file = "/etc/kubernetes/pki/sa.key"

[kube-controller-manager]
kubeconfig = "/etc/kubernetes/controller-manager.conf"
root-ca-file = "/etc/kubernetes/pki/ca.crt"
client-ca-file = "/etc/kubernetes/pki/ca.crt"
cluster-signing-cert-file = "/etc/kubernetes/pki/ca.crt"
cluster-signing-key-file = "/etc/kubernetes/pki/ca.key"
service-account-private-key-file = "/etc/kubernetes/pki/sa.key"

[kube-scheduler]
kubeconfig = "/etc/kubernetes/scheduler.conf"

[[node]]
name = "cp-1"
ips = ["192.0.2.10"]

[node.etcd]
name = "cp-1"
cert-file = "/etc/kubernetes/pki/etcd/server.crt"
key-file = "/etc/kubernetes/pki/etcd/server.key"
peer-cert-file = "/etc/kubernetes/pki/etcd/peer.crt"
peer-key-file = "/etc/kubernetes/pki/etcd/peer.key"
trusted-ca-file = "/etc/kubernetes/pki/etcd/ca.crt"
peer-trusted-ca-file = "/etc/kubernetes/pki/etcd/ca.crt"
client-cert-auth = true
peer-client-cert-auth = true
advertise-client-urls = "https://192.0.2.10:2379"
initial-advertise-peer-urls = "https://192.0.2.10:2380"

[[node]]
name = "worker-1"
ips = ["192.0.2.21"]

[node.kubelet]
kubeconfig = "/etc/kubernetes/kubelet-worker-1.conf"
client-ca-file = "/etc/kubernetes/pki/ca.crt"
tls-cert-file = "/etc/kubernetes/pki/kubelet-worker-1.crt"
tls-private-key-file = "/etc/kubernetes/pki/kubelet-worker-1.key"

[kubeconfig.admin]
file = "admin.conf"
purpose = "admin"
"#;

/// Directory for the trees of this test binary.
pub fn scratch(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("check")
        .join(name)
}

/// Returns the base tree, built once per test run.
pub fn base() -> &'static Path {
    static BASE: OnceLock<PathBuf> = OnceLock::new();
    BASE.get_or_init(|| {
        let tree = Tree::new(&scratch("base"));
        build_base(&tree);
        tree.root.clone()
    })
}

fn build_base(tree: &Tree) {
    // CAs.
    tree.cert("pki/ca", "/CN=kubernetes").write();
    tree.cert("pki/front-proxy-ca", "/CN=front-proxy-ca")
        .write();
    tree.cert("pki/etcd/ca", "/CN=etcd-ca").write();

    // kube-apiserver: serving certificate and clients of kubelets, etcd and the front proxy.
    let server = format!("{SERVER}{APISERVER_SANS}");
    tree.cert("pki/apiserver", "/CN=kube-apiserver")
        .issuer("pki/ca")
        .ext(&server)
        .days(365)
        .write();
    leaf(
        tree,
        "pki/apiserver-kubelet-client",
        "/O=system:masters/CN=kube-apiserver-kubelet-client",
        "pki/ca",
    );
    leaf(
        tree,
        "pki/apiserver-etcd-client",
        "/CN=kube-apiserver-etcd-client",
        "pki/etcd/ca",
    );
    leaf(
        tree,
        "pki/front-proxy-client",
        "/CN=front-proxy-client",
        "pki/front-proxy-ca",
    );

    // etcd member cp-1.
    let etcd = format!("{SERVER_CLIENT}{ETCD_SANS}");
    tree.cert("pki/etcd/server", "/CN=cp-1")
        .issuer("pki/etcd/ca")
        .ext(&etcd)
        .days(365)
        .write();
    tree.cert("pki/etcd/peer", "/CN=cp-1")
        .issuer("pki/etcd/ca")
        .ext(&etcd)
        .days(365)
        .write();

    // Service-account key pair.
    tree.key("pki/sa.key", Key::Ec);
    tree.public_key("pki/sa.key", "pki/sa.pub");

    // Clients of kube-apiserver.
    leaf(tree, "pki/admin", ADMIN_SUBJECT, "pki/ca");
    leaf(
        tree,
        "pki/controller-manager",
        "/CN=system:kube-controller-manager",
        "pki/ca",
    );
    leaf(tree, "pki/scheduler", "/CN=system:kube-scheduler", "pki/ca");
    leaf(
        tree,
        "pki/kubelet-worker-1-client",
        "/O=system:nodes/CN=system:node:worker-1",
        "pki/ca",
    );

    // worker-1's kubelet serving certificate, and the kubeconfigs.
    let kubelet = format!("{SERVER}{KUBELET_SANS}");
    tree.cert(
        "pki/kubelet-worker-1",
        "/O=system:nodes/CN=system:node:worker-1",
    )
    .issuer("pki/ca")
    .ext(&kubelet)
    .days(365)
    .write();
    tree.kubeconfig(
        "admin.conf",
        "https://192.0.2.10:6443",
        "pki/ca.crt",
        "pki/admin.crt",
        "pki/admin.key",
        false,
    );
    tree.kubeconfig(
        "controller-manager.conf",
        "https://127.0.0.1:6443",
        "pki/ca.crt",
        "pki/controller-manager.crt",
        "pki/controller-manager.key",
        false,
    );
    tree.kubeconfig(
        "scheduler.conf",
        "https://127.0.0.1:6443",
        "pki/ca.crt",
        "pki/scheduler.crt",
        "pki/scheduler.key",
        false,
    );
    tree.kubeconfig(
        "kubelet-worker-1.conf",
        "https://192.0.2.10:6443",
        "pki/ca.crt",
        "pki/kubelet-worker-1-client.crt",
        "pki/kubelet-worker-1-client.key",
        true,
    );
}

/// Issues a client certificate valid for a year.
pub fn leaf(tree: &Tree, stem: &str, subject: &str, issuer: &str) {
    tree.cert(stem, subject)
        .issuer(issuer)
        .ext(CLIENT)
        .days(365)
        .write();
}

/// Subject of the admin's client certificate in the base tree.
pub const ADMIN_SUBJECT: &str = "/O=system:masters/CN=kubernetes-admin";

/// Starts a new `pki/admin` certificate with the base tree's subject, signed by
/// `pki/ca`. The caller sets the extensions and the validity.
pub fn reissue_admin(tree: &Tree) -> Issue<'_> {
    tree.cert("pki/admin", ADMIN_SUBJECT).issuer("pki/ca")
}

/// A copy of the base tree and its map, for one test.
pub struct Case {
    pub tree: Tree,
    pub map: String,
    map_path: PathBuf,
}

impl Case {
    /// Copies the base tree to a directory named after the test.
    pub fn new(name: &str) -> Case {
        let tree = Tree::new(&scratch(name));
        copy_dir(base(), &tree.root);
        let map_path = tree.root.with_extension("toml");
        Case {
            tree,
            map: MAP.to_string(),
            map_path,
        }
    }

    /// Replaces text in the map file, which must contain it.
    pub fn replace(&mut self, from: &str, to: &str) {
        assert!(self.map.contains(from), "the map has no `{from}`");
        self.map = self.map.replacen(from, to, 1);
    }

    /// Runs `pkic check --format json --map MAP DIR` with more arguments.
    pub fn check(&self, args: &[&str]) -> Outcome {
        fs::write(&self.map_path, &self.map).expect("failed to write the map");
        let map = self.map_path.to_str().expect("UTF-8 path");
        let mut all = vec!["--map", map];
        all.extend_from_slice(args);
        run_check(&self.tree.root, &all)
    }
}

/// What one `pkic check` run printed.
pub struct Outcome {
    pub code: i32,
    pub report: Value,
    pub stderr: String,
}

impl Outcome {
    /// Returns `(id, file)` of every finding.
    pub fn findings(&self) -> Vec<(String, String)> {
        self.report["findings"]
            .as_array()
            .map(|list| {
                list.iter()
                    .map(|f| {
                        (
                            f["id"].as_str().unwrap_or("").to_string(),
                            f["file"].as_str().unwrap_or("").to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    pub fn has(&self, id: &str) -> bool {
        self.findings().iter().any(|(found, _)| found == id)
    }

    pub fn has_in(&self, id: &str, file: &str) -> bool {
        self.findings()
            .iter()
            .any(|(found, f)| found == id && f == file)
    }

    /// Asserts that a finding `id` fires, showing the whole outcome when none does.
    #[track_caller]
    pub fn assert_has(&self, id: &str) {
        assert!(self.has(id), "{}", self.describe());
    }

    /// Asserts that a finding `id` fires in `file`, showing the whole outcome when none
    /// does.
    #[track_caller]
    pub fn assert_has_in(&self, id: &str, file: &str) {
        assert!(self.has_in(id, file), "{}", self.describe());
    }

    /// Returns the messages of the findings with `id`, joined, for assertions on wording.
    pub fn messages(&self, id: &str) -> String {
        self.report["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|f| f["id"] == id)
            .map(|f| f["message"].as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Summarises the outcome for assertion messages.
    pub fn describe(&self) -> String {
        let ids: Vec<String> = self
            .findings()
            .iter()
            .map(|(id, file)| format!("{id} in {file}"))
            .collect();
        format!(
            "exit {}; findings: {}\nstderr: {}",
            self.code,
            ids.join(", "),
            self.stderr
        )
    }
}

/// Runs `pkic check --format json DIR` with `args`.
pub fn run_check(dir: &Path, args: &[&str]) -> Outcome {
    let output = Command::new(env!("CARGO_BIN_EXE_pkic"))
        .arg("check")
        .arg(dir)
        .args(["--format", "json"])
        .args(args)
        .output()
        .expect("failed to run pkic");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    let report = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("pkic check printed no JSON report ({e}):\n{stdout}\n{stderr}"));
    Outcome {
        code: output.status.code().unwrap_or(-1),
        report,
        stderr,
    }
}
