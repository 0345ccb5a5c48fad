//! Runs `pkic build` on a manifest for the peer tests. `Build` maps the install paths
//! in the flag files and kubeconfigs to the files in the output directory, so that
//! the peers read exactly the files that the flags point at.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use super::peers::{
    EtcdClientTls, EtcdCluster, EtcdMemberTls, FakeApiserver, assert_etcd_replicates,
    describe_output, etcdctl_put_get,
};

/// Install root of both shipped manifests, the prefix of every path in their flag
/// files and kubeconfigs.
pub const INSTALL_ROOT: &str = "/etc/kubernetes";

/// kube-apiserver's flag file, at pkic's default path.
pub const APISERVER_FLAGS: &str = "flags/kube-apiserver.flags";

/// Reads a manifest from the repository, such as `pki.toml.example`.
pub fn read_manifest(relative: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(relative);
    fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// Returns a `[[node]]` table at 127.0.0.1 to append to a manifest.
pub fn loopback_node(name: &str, roles: &[&str]) -> String {
    let roles: Vec<String> = roles.iter().map(|role| format!("\"{role}\"")).collect();
    format!(
        "\n[[node]]\nname = \"{name}\"\nips = [\"127.0.0.1\"]\nroles = [{}]\n",
        roles.join(", ")
    )
}

/// Output directory of one `pkic build` run.
///
/// A test binary shares one build per manifest, because a debug build of pkic takes
/// several seconds to generate the RSA keys of a shipped manifest. It lives under
/// cargo's CARGO_TARGET_TMPDIR, where the next run replaces it.
pub struct Build {
    directory: PathBuf,
}

impl Build {
    /// Writes `manifest` to `CARGO_TARGET_TMPDIR/peers/NAME/pki.toml` and builds it
    /// into `out/` beside it, with `--set NAME=VALUE` for each entry of `variables`.
    /// Panics with pkic's output if the build fails.
    pub fn new(name: &str, manifest: &str, variables: &[(&str, &str)]) -> Self {
        let directory = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join("peers")
            .join(name);
        if directory.exists() {
            fs::remove_dir_all(&directory).expect("failed to remove an earlier build");
        }
        fs::create_dir_all(&directory).expect("failed to create the build directory");
        let manifest_path = directory.join("pki.toml");
        fs::write(&manifest_path, manifest).expect("failed to write the manifest");

        let mut command = Command::new(env!("CARGO_BIN_EXE_pkic"));
        command
            .arg("build")
            .arg("-m")
            .arg(&manifest_path)
            .arg("-o")
            .arg(directory.join("out"));
        for (variable, value) in variables {
            command.arg("--set").arg(format!("{variable}={value}"));
        }
        let output = command.output().expect("failed to run pkic");
        assert!(
            output.status.success(),
            "pkic build of the {name} manifest failed: {}",
            describe_output(&output)
        );
        Build { directory }
    }

    pub fn out(&self) -> PathBuf {
        self.directory.join("out")
    }

    /// Returns the path of an output, relative to the output directory, and panics
    /// if pkic did not write it.
    pub fn file(&self, relative: &str) -> PathBuf {
        let path = self.out().join(relative);
        assert!(path.is_file(), "pkic wrote no {relative}");
        path
    }

    /// Maps a path under the install root to the output file it is installed from:
    /// the node's own copy under nodes/NODE/ if there is one, else the shared one.
    pub fn installed_file(&self, installed: &str, node: Option<&str>) -> PathBuf {
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
    pub fn flags(&self, relative: &str, node: Option<&str>) -> BTreeMap<String, String> {
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

    /// Reads the etcd.flags of `node`, with paths mapped to the output files.
    pub fn etcd_flags(&self, node: &str) -> BTreeMap<String, String> {
        self.flags(&format!("nodes/{node}/flags/etcd.flags"), Some(node))
    }

    /// Writes a copy of a kubeconfig into `into`, with its file references pointing
    /// into the output directory, and returns the copy's path. Embedded data is
    /// copied unchanged.
    pub fn local_kubeconfig(&self, relative: &str, node: Option<&str>, into: &Path) -> PathBuf {
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

/// Returns the value of `--NAME` as a path, and panics if the flags lack it.
pub fn flag<'a>(flags: &'a BTreeMap<String, String>, name: &str) -> &'a Path {
    let value = flags
        .get(name)
        .unwrap_or_else(|| panic!("no --{name} in {flags:?}"));
    Path::new(value)
}

/// Starts the stand-in apiserver with the serving certificate, key and client CA file
/// that kube-apiserver.flags names.
pub fn start_apiserver(build: &Build, node: &str) -> FakeApiserver {
    let flags = build.flags(APISERVER_FLAGS, Some(node));
    FakeApiserver::start(
        flag(&flags, "tls-cert-file"),
        flag(&flags, "tls-private-key-file"),
        flag(&flags, "client-ca-file"),
    )
}

/// Returns the TLS files of an etcd member that its etcd.flags names.
pub fn etcd_member(flags: &BTreeMap<String, String>) -> EtcdMemberTls<'_> {
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
pub fn apiserver_etcd_client(flags: &BTreeMap<String, String>) -> EtcdClientTls<'_> {
    EtcdClientTls {
        cacert: flag(flags, "etcd-cafile"),
        cert: flag(flags, "etcd-certfile"),
        key: flag(flags, "etcd-keyfile"),
    }
}

/// Starts etcd from the etcd.flags of the three `nodes`, with the etcd client that
/// kube-apiserver.flags on `control_plane` names. Asserts that the first two members
/// have different peer certificate files and that the cluster replicates a key.
pub fn assert_etcd_members_form_cluster(build: &Build, nodes: [&str; 3], control_plane: &str) {
    let member_flags: Vec<_> = nodes.iter().map(|node| build.etcd_flags(node)).collect();
    let peer_certs: Vec<&Path> = member_flags
        .iter()
        .map(|flags| flag(flags, "peer-cert-file"))
        .collect();
    assert_ne!(
        peer_certs[0], peer_certs[1],
        "members share one peer certificate file"
    );
    let members: Vec<_> = member_flags.iter().map(etcd_member).collect();
    let apiserver_flags = build.flags(APISERVER_FLAGS, Some(control_plane));
    let client = apiserver_etcd_client(&apiserver_flags);

    let etcd = EtcdCluster::start(&members, &client);

    assert_etcd_replicates(&etcd, &client);
}

/// Starts one etcd member from the etcd.flags of `control_plane`, and asserts that the
/// etcd client of its kube-apiserver.flags writes and reads a key.
pub fn assert_apiserver_etcd_client_reads_and_writes(build: &Build, control_plane: &str) {
    let member_flags = build.etcd_flags(control_plane);
    let apiserver_flags = build.flags(APISERVER_FLAGS, Some(control_plane));
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

/// Returns `manifest` with a `rotation` table added to the table headed `[section]`.
pub fn with_rotation(manifest: &str, section: &str, stage: &str, overlap: &str) -> String {
    let header = format!("[{section}]\n");
    let at = manifest
        .find(&header)
        .unwrap_or_else(|| panic!("the manifest has no [{section}]"))
        + header.len();
    format!(
        "{}rotation = {{ stage = \"{stage}\", overlap = \"{overlap}\" }}\n{}",
        &manifest[..at],
        &manifest[at..]
    )
}
