//! Builds `pki.toml.example` with `pkic build` and checks the outputs with the real
//! peers: `openssl verify`, kubectl against a stand-in kube-apiserver that uses the
//! files named in kube-apiserver.flags, and etcd started from each member's
//! etcd.flags with the apiserver's etcd client files.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use support::peers::{
    EtcdClientTls, EtcdCluster, EtcdMemberTls, FAKE_APISERVER_VERSION, FakeApiserver,
    describe_output, etcdctl, etcdctl_put_get, key_matches_cert, kubectl_get_version,
    openssl_verify,
};

// Names that pkic and `pki.toml.example` choose, in one place while they change.
const INSTALL_ROOT: &str = "/etc/kubernetes";
const APISERVER_FLAGS: &str = "flags/kube-apiserver.flags";
const CONTROL_PLANE_NODE: &str = "master-1";
const WORKER_NODES: [&str; 2] = ["worker-1", "worker-2"];
/// Etcd members that `build_with_etcd_members` adds to the example manifest.
const EXTRA_ETCD_NODES: [&str; 2] = ["etcd-2", "etcd-3"];

/// Output directory of one `pkic build` run.
///
/// The tests share one build per manifest, because a debug build of pkic takes
/// several seconds for the example's 17 RSA keys. It lives under cargo's
/// CARGO_TARGET_TMPDIR, where the next run replaces it.
struct Build {
    directory: PathBuf,
}

/// Returns the shared build of `pki.toml.example` with every node at 127.0.0.1.
fn example_build() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    BUILD.get_or_init(|| Build::from_manifest("example", &read_example_manifest()))
}

/// Returns the shared build of `pki.toml.example` with two more etcd members, so
/// that peer certificates of different nodes must trust each other.
fn build_with_etcd_members() -> &'static Build {
    static BUILD: OnceLock<Build> = OnceLock::new();
    BUILD.get_or_init(|| {
        let mut manifest = read_example_manifest();
        for node in EXTRA_ETCD_NODES {
            manifest.push_str(&format!(
                "\n[[node]]\nname = \"{node}\"\nips = [\"127.0.0.1\"]\nroles = [\"etcd\"]\n"
            ));
        }
        Build::from_manifest("etcd-members", &manifest)
    })
}

fn read_example_manifest() -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("pki.toml.example");
    fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

impl Build {
    fn from_manifest(name: &str, manifest: &str) -> Self {
        let directory = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("peers")
            .join(name);
        if directory.exists() {
            fs::remove_dir_all(&directory).expect("failed to remove an earlier build");
        }
        fs::create_dir_all(&directory).expect("failed to create the build directory");
        let manifest_path = directory.join("pki.toml");
        fs::write(&manifest_path, manifest).expect("failed to write the manifest");
        let out = directory.join("out");

        let output = Command::new(env!("CARGO_BIN_EXE_pkic"))
            .arg("build")
            .arg("-m")
            .arg(&manifest_path)
            .arg("-o")
            .arg(&out)
            .args(["--set", "MASTER_IP=127.0.0.1"])
            .args(["--set", "WORKER1_IP=127.0.0.1"])
            .args(["--set", "WORKER2_IP=127.0.0.1"])
            .output()
            .expect("failed to run pkic");
        assert!(
            output.status.success(),
            "pkic build failed: {}",
            describe_output(&output)
        );
        Build { directory }
    }

    fn out(&self) -> PathBuf {
        self.directory.join("out")
    }

    /// Returns the path of an output, relative to the output directory.
    fn file(&self, relative: &str) -> PathBuf {
        let path = self.out().join(relative);
        assert!(path.is_file(), "pkic wrote no {relative}");
        path
    }

    /// Maps a path under the install root to the output file it is installed from:
    /// the node's own copy under nodes/NODE/ if there is one, else the shared one.
    fn installed_file(&self, installed: &str, node: Option<&str>) -> PathBuf {
        let relative = installed
            .strip_prefix(INSTALL_ROOT)
            .and_then(|rest| rest.strip_prefix('/'))
            .unwrap_or_else(|| panic!("{installed} is not under {INSTALL_ROOT}"));
        if let Some(node) = node {
            let node_file = self.out().join("nodes").join(node).join(relative);
            if node_file.is_file() {
                return node_file;
            }
        }
        self.file(relative)
    }

    /// Reads a flag file into its flags, with every path under the install root
    /// replaced by the output file that it names.
    fn flags(&self, relative: &str, node: Option<&str>) -> BTreeMap<String, String> {
        let text = fs::read_to_string(self.file(relative)).unwrap();
        let mut flags = BTreeMap::new();
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let (name, value) = line
                .strip_prefix("--")
                .and_then(|flag| flag.split_once('='))
                .unwrap_or_else(|| panic!("{relative}: `{line}` is not --NAME=VALUE"));
            let value = if value.starts_with(INSTALL_ROOT) {
                self.installed_file(value, node).display().to_string()
            } else {
                value.to_owned()
            };
            flags.insert(name.to_owned(), value);
        }
        flags
    }

    /// Writes a copy of a kubeconfig into `into`, with its file references pointing
    /// into the output directory, and returns the copy's path.
    fn local_kubeconfig(&self, relative: &str, node: Option<&str>, into: &Path) -> PathBuf {
        let text = fs::read_to_string(self.file(relative)).unwrap();
        let mut local = String::new();
        for line in text.lines() {
            match line.split_once(": ") {
                Some((key, value)) if value.starts_with(INSTALL_ROOT) => {
                    let path = self.installed_file(value, node);
                    local.push_str(&format!("{key}: \"{}\"\n", path.display()));
                }
                _ => {
                    local.push_str(line);
                    local.push('\n');
                }
            }
        }
        let path = into.join(relative.replace('/', "_"));
        fs::write(&path, local).unwrap();
        path
    }
}

fn flag<'a>(flags: &'a BTreeMap<String, String>, name: &str) -> &'a Path {
    let value = flags
        .get(name)
        .unwrap_or_else(|| panic!("no --{name} in {flags:?}"));
    Path::new(value)
}

// ---------------------------------------------------------------------------
// openssl
// ---------------------------------------------------------------------------

#[test]
fn certificates_verify_for_their_purpose() {
    let build = example_build();
    let mut cases: Vec<(String, &str, &str)> = vec![
        ("pki/apiserver.crt".into(), "pki/server-ca.crt", "sslserver"),
        ("pki/admin.crt".into(), "pki/client-ca.crt", "sslclient"),
        (
            "pki/controller-manager.crt".into(),
            "pki/client-ca.crt",
            "sslclient",
        ),
        ("pki/scheduler.crt".into(), "pki/client-ca.crt", "sslclient"),
        (
            "pki/apiserver-kubelet-client.crt".into(),
            "pki/server-ca.crt",
            "sslclient",
        ),
        (
            "pki/apiserver-etcd-client.crt".into(),
            "pki/etcd-ca.crt",
            "sslclient",
        ),
    ];
    let etcd_node = format!("nodes/{CONTROL_PLANE_NODE}/pki/etcd");
    cases.push((
        format!("{etcd_node}/server.crt"),
        "pki/etcd-ca.crt",
        "sslserver",
    ));
    cases.push((
        format!("{etcd_node}/peer.crt"),
        "pki/etcd-ca.crt",
        "sslserver",
    ));
    cases.push((
        format!("{etcd_node}/peer.crt"),
        "pki/etcd-ca.crt",
        "sslclient",
    ));
    for node in WORKER_NODES {
        cases.push((
            format!("nodes/{node}/pki/kubelet.crt"),
            "pki/worker-ca.crt",
            "sslserver",
        ));
        let client = format!("nodes/{node}/pki/kubelet-client.crt");
        cases.push((client, "pki/worker-ca.crt", "sslclient"));
    }

    for (cert, ca, purpose) in &cases {
        let result = openssl_verify(&[&build.file(ca)], &[], &build.file(cert), purpose);
        assert_eq!(result, Ok(()), "{cert} as {purpose} under {ca}");
    }
}

#[test]
fn apiserver_cert_rejected_as_client() {
    let build = example_build();
    let result = openssl_verify(
        &[&build.file("pki/server-ca.crt")],
        &[],
        &build.file("pki/apiserver.crt"),
        "sslclient",
    );
    assert!(
        result.is_err(),
        "the apiserver serving certificate is also a client certificate"
    );
}

#[test]
fn every_key_matches_its_certificate() {
    let build = example_build();
    let mut checked = 0;
    for entry in walkdir(&build.out()) {
        let Some(cert) = entry.to_str().and_then(|path| path.strip_suffix(".crt")) else {
            continue;
        };
        let key = PathBuf::from(format!("{cert}.key"));
        // Bundles have no key of their own.
        if !key.exists() {
            continue;
        }
        assert!(
            key_matches_cert(&key, &entry),
            "{} does not match its key",
            entry.display()
        );
        checked += 1;
    }
    assert!(checked >= 12, "only {checked} certificates with keys found");
}

fn walkdir(directory: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    for entry in fs::read_dir(directory).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files.extend(walkdir(&path));
        } else {
            files.push(path);
        }
    }
    files
}

// ---------------------------------------------------------------------------
// kubectl against the apiserver's files
// ---------------------------------------------------------------------------

/// Starts the stand-in apiserver with the files that kube-apiserver.flags names.
fn start_apiserver(build: &Build) -> FakeApiserver {
    let flags = build.flags(APISERVER_FLAGS, Some(CONTROL_PLANE_NODE));
    FakeApiserver::start(
        flag(&flags, "tls-cert-file"),
        flag(&flags, "tls-private-key-file"),
        flag(&flags, "client-ca-file"),
    )
}

#[test]
fn kubeconfigs_reach_apiserver() {
    let build = example_build();
    let apiserver = start_apiserver(build);
    let scratch = tempfile::tempdir().unwrap();
    let mut kubeconfigs: Vec<(String, Option<&str>)> = vec![
        ("admin.conf".into(), None),
        ("controller-manager.conf".into(), None),
        ("scheduler.conf".into(), None),
    ];
    for node in WORKER_NODES {
        kubeconfigs.push((format!("nodes/{node}/kubelet.conf"), Some(node)));
    }
    let kubeconfigs: Vec<(PathBuf, String)> = kubeconfigs
        .into_iter()
        .map(|(name, node)| (build.local_kubeconfig(&name, node, scratch.path()), name))
        .collect();

    for (kubeconfig, name) in &kubeconfigs {
        // The kubeconfigs name port 6443, so the override changes only the port.
        let output = kubectl_get_version(kubeconfig, Some(&apiserver.url()));
        assert!(
            output.status.success(),
            "{name}: {}",
            describe_output(&output)
        );
        let body = String::from_utf8_lossy(&output.stdout);
        assert_eq!(body.trim_end(), FAKE_APISERVER_VERSION, "{name}");
    }
}

#[test]
fn apiserver_rejects_etcd_client_certificate() {
    let build = example_build();
    let apiserver = start_apiserver(build);
    let scratch = tempfile::tempdir().unwrap();
    let admin = build.local_kubeconfig("admin.conf", None, scratch.path());
    let admin = fs::read_to_string(admin).unwrap();
    let etcd_client = admin
        .replace(
            &build.file("pki/admin.crt").display().to_string(),
            &build
                .file("pki/apiserver-etcd-client.crt")
                .display()
                .to_string(),
        )
        .replace(
            &build.file("pki/admin.key").display().to_string(),
            &build
                .file("pki/apiserver-etcd-client.key")
                .display()
                .to_string(),
        );
    assert_ne!(
        admin, etcd_client,
        "admin.conf does not name pki/admin.crt and pki/admin.key"
    );
    let kubeconfig = scratch.path().join("etcd-client.conf");
    fs::write(&kubeconfig, etcd_client).unwrap();

    let output = kubectl_get_version(&kubeconfig, Some(&apiserver.url()));
    assert!(!output.status.success(), "{}", describe_output(&output));
}

// ---------------------------------------------------------------------------
// etcd
// ---------------------------------------------------------------------------

/// Reads the etcd.flags of `node`, with paths mapped to the output files.
fn etcd_member_flags(build: &Build, node: &str) -> BTreeMap<String, String> {
    build.flags(&format!("nodes/{node}/flags/etcd.flags"), Some(node))
}

fn etcd_member(flags: &BTreeMap<String, String>) -> EtcdMemberTls<'_> {
    EtcdMemberTls {
        cert: flag(flags, "cert-file"),
        key: flag(flags, "key-file"),
        trusted_ca: flag(flags, "trusted-ca-file"),
        peer_cert: flag(flags, "peer-cert-file"),
        peer_key: flag(flags, "peer-key-file"),
        peer_trusted_ca: flag(flags, "peer-trusted-ca-file"),
    }
}

/// Returns the etcd client files that kube-apiserver.flags names.
fn apiserver_etcd_client(flags: &BTreeMap<String, String>) -> EtcdClientTls<'_> {
    EtcdClientTls {
        cacert: flag(flags, "etcd-cafile"),
        cert: flag(flags, "etcd-certfile"),
        key: flag(flags, "etcd-keyfile"),
    }
}

#[test]
fn apiserver_etcd_client_reads_and_writes() {
    let build = example_build();
    let member_flags = etcd_member_flags(build, CONTROL_PLANE_NODE);
    let apiserver_flags = build.flags(APISERVER_FLAGS, Some(CONTROL_PLANE_NODE));
    let client = apiserver_etcd_client(&apiserver_flags);
    let etcd = EtcdCluster::start(&[etcd_member(&member_flags)], &client);

    let value = etcdctl_put_get(
        etcd.client_url(0),
        client.cacert,
        client.cert,
        client.key,
        "/registry/pkic-test",
        "stored",
    );
    assert_eq!(value.as_deref(), Ok("stored"));
}

#[test]
fn etcd_rejects_admin_client_certificate() {
    let build = example_build();
    let member_flags = etcd_member_flags(build, CONTROL_PLANE_NODE);
    let apiserver_flags = build.flags(APISERVER_FLAGS, Some(CONTROL_PLANE_NODE));
    let etcd = EtcdCluster::start(
        &[etcd_member(&member_flags)],
        &apiserver_etcd_client(&apiserver_flags),
    );

    let result = etcdctl_put_get(
        etcd.client_url(0),
        flag(&apiserver_flags, "etcd-cafile"),
        &build.file("pki/admin.crt"),
        &build.file("pki/admin.key"),
        "/registry/pkic-test",
        "stored",
    );
    assert!(
        result.is_err(),
        "etcd accepted the admin certificate: {result:?}"
    );
}

#[test]
fn etcd_nodes_form_cluster() {
    let build = build_with_etcd_members();
    let nodes = [CONTROL_PLANE_NODE, EXTRA_ETCD_NODES[0], EXTRA_ETCD_NODES[1]];
    let member_flags: Vec<_> = nodes
        .iter()
        .map(|node| etcd_member_flags(build, node))
        .collect();
    let peer_certs: Vec<&Path> = member_flags
        .iter()
        .map(|flags| flag(flags, "peer-cert-file"))
        .collect();
    assert_ne!(
        peer_certs[0], peer_certs[1],
        "members share one peer certificate file"
    );
    let members: Vec<_> = member_flags.iter().map(etcd_member).collect();
    let apiserver_flags = build.flags(APISERVER_FLAGS, Some(CONTROL_PLANE_NODE));
    let client = apiserver_etcd_client(&apiserver_flags);

    let etcd = EtcdCluster::start(&members, &client);

    let put = etcdctl(etcd.client_url(0), &client, &["put", "replicated", "yes"]);
    assert!(put.status.success(), "{}", describe_output(&put));
    let get = etcdctl(
        etcd.client_url(2),
        &client,
        &["get", "--print-value-only", "replicated"],
    );
    assert!(get.status.success(), "{}", describe_output(&get));
    assert_eq!(String::from_utf8_lossy(&get.stdout).trim_end(), "yes");
}
