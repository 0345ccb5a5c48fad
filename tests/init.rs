//! `pkic init --from DIR` adopts a kubeadm tree made with the openssl CLI and the
//! output of the shipped kubeadm manifest, and the next build and plan change no byte.
//! Bad input fails with the file named and writes nothing.

mod support;

use std::fs;
use std::path::Path;
use std::process::Output;

use support::peers::peer_command;
use support::tree::{openssl_in, pkic_command, snapshot_with_modes, stderr};

fn pkic(dir: &Path, args: &[&str]) -> Output {
    pkic_command()
        .args(args)
        .current_dir(dir)
        .output()
        .expect("failed to run pkic")
}

/// Key generation commands: RSA in PKCS#1 and PKCS#8, ECDSA P-256 in SEC1 and PKCS#8.
const RSA_PKCS1: &[&str] = &["genrsa", "-traditional", "2048"];
const RSA_PKCS8: &[&str] = &[
    "genpkey",
    "-algorithm",
    "RSA",
    "-pkeyopt",
    "rsa_keygen_bits:2048",
];
const EC_SEC1: &[&str] = &["ecparam", "-name", "prime256v1", "-genkey", "-noout"];
const EC_PKCS8: &[&str] = &[
    "genpkey",
    "-algorithm",
    "EC",
    "-pkeyopt",
    "ec_paramgen_curve:P-256",
];

const REQ_CONFIG: &str = "[req]\ndistinguished_name = dn\n[dn]\n[ca]\n\
    basicConstraints = critical,CA:TRUE\n\
    keyUsage = critical,digitalSignature,keyEncipherment,keyCertSign\n\
    subjectKeyIdentifier = hash\n";

fn make_key(dir: &Path, key: &str, generate: &[&str]) {
    // genrsa takes the key size last, so `-out` goes right after the command.
    let mut args = vec![generate[0], "-out", key];
    args.extend(&generate[1..]);
    openssl_in(dir, &args);
}

/// Makes a self-signed CA valid for ten years, as kubeadm does.
fn make_ca(dir: &Path, name: &str, subject: &str, generate: &[&str]) {
    make_key(dir, &format!("{name}.key"), generate);
    openssl_in(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            subject,
            "-days",
            "3650",
            "-config",
            "req.cnf",
            "-extensions",
            "ca",
            "-out",
            &format!("{name}.crt"),
        ],
    );
}

/// Makes a leaf valid for one year, signed by `ca`, with `extensions` in openssl's
/// extension syntax.
fn make_leaf(dir: &Path, name: &str, ca: &str, subject: &str, extensions: &str, generate: &[&str]) {
    make_key(dir, &format!("{name}.key"), generate);
    let ext = format!("{name}.ext");
    fs::write(dir.join(&ext), extensions).unwrap();
    openssl_in(
        dir,
        &[
            "req",
            "-new",
            "-key",
            &format!("{name}.key"),
            "-subj",
            subject,
            "-config",
            "req.cnf",
            "-out",
            "request.csr",
        ],
    );
    openssl_in(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "request.csr",
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-days",
            "365",
            "-extfile",
            &ext,
            "-out",
            &format!("{name}.crt"),
        ],
    );
    fs::remove_file(dir.join(ext)).unwrap();
}

const CLIENT: &str = "keyUsage = critical,digitalSignature,keyEncipherment\n\
    extendedKeyUsage = clientAuth\nbasicConstraints = critical,CA:FALSE\n";

/// Writes a kubeadm /etc/kubernetes made with the openssl CLI: RSA and ECDSA keys in
/// PKCS#1, SEC1 and PKCS#8, subjects with CN first, one leaf without key
/// identifiers, and an admin.conf in kubeadm's own format whose client certificate
/// exists only inside it.
fn make_kubeadm_tree(root: &Path) {
    let pki = root.join("pki");
    fs::create_dir_all(pki.join("etcd")).unwrap();
    fs::write(pki.join("req.cnf"), REQ_CONFIG).unwrap();
    fs::write(pki.join("etcd/req.cnf"), REQ_CONFIG).unwrap();
    make_ca(&pki, "ca", "/CN=kubernetes", RSA_PKCS1);
    make_ca(&pki, "front-proxy-ca", "/CN=front-proxy-ca", EC_SEC1);
    make_ca(&pki.join("etcd"), "ca", "/CN=etcd-ca", RSA_PKCS8);
    let apiserver = "keyUsage = critical,digitalSignature,keyEncipherment\n\
        extendedKeyUsage = serverAuth\nbasicConstraints = critical,CA:FALSE\n\
        subjectAltName = DNS:cp-1,DNS:kubernetes,DNS:kubernetes.default,\
        DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,\
        IP:10.96.0.1,IP:192.0.2.10\n";
    make_leaf(
        &pki,
        "apiserver",
        "ca",
        "/CN=kube-apiserver",
        apiserver,
        RSA_PKCS1,
    );
    make_leaf(
        &pki,
        "apiserver-kubelet-client",
        "ca",
        "/CN=kube-apiserver-kubelet-client/O=kubeadm:cluster-admins",
        CLIENT,
        RSA_PKCS8,
    );
    let without_key_ids =
        format!("{CLIENT}subjectKeyIdentifier = none\nauthorityKeyIdentifier = none\n");
    make_leaf(
        &pki,
        "front-proxy-client",
        "front-proxy-ca",
        "/CN=front-proxy-client",
        &without_key_ids,
        EC_PKCS8,
    );
    let etcd = pki.join("etcd");
    let member = "keyUsage = critical,digitalSignature,keyEncipherment\n\
        extendedKeyUsage = serverAuth,clientAuth\nbasicConstraints = critical,CA:FALSE\n\
        subjectAltName = DNS:cp-1,DNS:localhost,IP:192.0.2.10,IP:127.0.0.1,IP:::1\n";
    make_leaf(&etcd, "server", "ca", "/CN=cp-1", member, EC_SEC1);
    make_leaf(&etcd, "peer", "ca", "/CN=cp-1", member, EC_PKCS8);
    make_leaf(
        &etcd,
        "healthcheck-client",
        "ca",
        "/CN=kube-etcd-healthcheck-client/O=system:masters",
        CLIENT,
        RSA_PKCS1,
    );
    make_leaf(
        &pki,
        "apiserver-etcd-client",
        "etcd/ca",
        "/CN=kube-apiserver-etcd-client",
        CLIENT,
        RSA_PKCS1,
    );
    make_key(&pki, "sa.key", RSA_PKCS1);
    openssl_in(&pki, &["rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub"]);

    // kubeadm keeps the admin's certificate only inside admin.conf.
    make_leaf(
        &pki,
        "admin",
        "ca",
        "/CN=kubernetes-admin/O=kubeadm:cluster-admins",
        CLIENT,
        RSA_PKCS1,
    );
    let encode = |file: &str| {
        use std::io::Write;
        let mut child = peer_command("openssl")
            .args(["base64", "-A"])
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("openssl is installed");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(&fs::read(pki.join(file)).unwrap())
            .unwrap();
        String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
    };
    let admin = format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    \
         server: https://192.0.2.10:6443\n  name: kubernetes\ncontexts:\n- context:\n    \
         cluster: kubernetes\n    user: kubernetes-admin\n  name: kubernetes-admin@kubernetes\n\
         current-context: kubernetes-admin@kubernetes\nkind: Config\npreferences: {{}}\nusers:\n\
         - name: kubernetes-admin\n  user:\n    client-certificate-data: {}\n    \
         client-key-data: {}\n",
        encode("ca.crt"),
        encode("admin.crt"),
        encode("admin.key")
    );
    fs::write(root.join("admin.conf"), admin).unwrap();
    for file in [
        "admin.crt",
        "admin.key",
        "req.cnf",
        "etcd/req.cnf",
        "request.csr",
        "etcd/request.csr",
    ] {
        fs::remove_file(pki.join(file)).unwrap();
    }
}

/// Runs init on `from`, then checks that the next build and plan change nothing.
fn assert_adopts_unchanged(dir: &Path, from: &str) -> String {
    let source_before = snapshot_with_modes(&dir.join(from));
    let init = pkic(
        dir,
        &["init", "--from", from, "-m", "pki.toml", "-o", "out"],
    );
    assert!(init.status.success(), "pkic init failed: {}", stderr(&init));
    assert_eq!(
        snapshot_with_modes(&dir.join(from)),
        source_before,
        "init changed the source"
    );
    let manifest = fs::read_to_string(dir.join("pki.toml")).unwrap();

    let adopted = snapshot_with_modes(&dir.join("out"));
    for (path, (_, mode)) in &adopted {
        let expected = if path.ends_with(".key") || path.ends_with(".conf") {
            0o600
        } else {
            0o644
        };
        if !path.ends_with(".conf") {
            assert_eq!(*mode, expected, "mode of {path}");
        }
    }
    let build = pkic(dir, &["build", "-m", "pki.toml", "-o", "out"]);
    assert!(
        build.status.success(),
        "pkic build failed: {}",
        stderr(&build)
    );
    assert!(
        build.stdout.is_empty(),
        "the build wrote files: {}",
        String::from_utf8_lossy(&build.stdout)
    );
    assert!(
        stderr(&build).contains("up to date: no file changed"),
        "{}",
        stderr(&build)
    );
    let mut rebuilt = snapshot_with_modes(&dir.join("out"));
    // The build adds only its cache of passed verifications.
    assert!(rebuilt.remove(".pkic-verified").is_some());
    assert_eq!(
        rebuilt.len(),
        adopted.len(),
        "the build added or removed files"
    );
    for (path, (bytes, mode)) in &adopted {
        let (after, mode_after) = &rebuilt[path];
        assert!(after == bytes, "the build changed the bytes of {path}");
        assert_eq!(mode, mode_after, "the build changed the mode of {path}");
    }
    let plan = pkic(dir, &["plan", "-m", "pki.toml", "-o", "out"]);
    assert_eq!(
        plan.status.code(),
        Some(0),
        "plan found changes: {}{}",
        String::from_utf8_lossy(&plan.stdout),
        stderr(&plan)
    );
    manifest
}

#[test]
fn openssl_kubeadm_tree_adopted() {
    let dir = tempfile::tempdir().unwrap();
    make_kubeadm_tree(&dir.path().join("kubernetes"));
    let manifest = assert_adopts_unchanged(dir.path(), "kubernetes");

    for table in [
        "[ca.ca]",
        "[ca.front-proxy-ca]",
        "[ca.etcd-ca]",
        "[service-account.sa]",
    ] {
        assert!(manifest.contains(table), "no {table} in:\n{manifest}");
    }
    for (id, role) in [
        ("apiserver", "apiserver"),
        ("apiserver-kubelet-client", "apiserver-kubelet-client"),
        ("apiserver-etcd-client", "apiserver-etcd-client"),
        ("front-proxy-client", "front-proxy-client"),
        ("etcd-server", "etcd-server"),
        ("etcd-peer", "etcd-peer"),
        ("etcd-healthcheck-client", "etcd-healthcheck-client"),
    ] {
        let table = format!("[cert.{id}]\nissuer = ");
        let start = manifest
            .find(&table)
            .unwrap_or_else(|| panic!("no [cert.{id}] in:\n{manifest}"));
        let body = &manifest[start..];
        let body = &body[..body[1..].find("\n[").map_or(body.len(), |end| end + 1)];
        assert!(body.contains(&format!("role = \"{role}\"")), "{body}");
    }
    assert!(manifest.contains("key-format = \"pkcs1\""));
    assert!(manifest.contains("key-algorithm = \"ecdsa-p256\""));
    assert!(manifest.contains("cert-file = \"pki/etcd/server.crt\""));
    assert!(
        manifest.contains(
            "subject = { cn = \"kube-apiserver-kubelet-client\", o = \"kubeadm:cluster-admins\" }"
        ),
        "{manifest}"
    );
    // kubeadm keeps the admin's certificate only inside admin.conf.
    assert!(manifest.contains("# - admin.conf: "), "{manifest}");
    assert!(!dir.path().join("out/admin.conf").exists());
}

#[test]
fn kubeadm_example_output_adopted() {
    let dir = tempfile::tempdir().unwrap();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/kubeadm.pki.toml");
    let build = pkic(
        dir.path(),
        &[
            "build",
            "-q",
            "-m",
            example.to_str().unwrap(),
            "-o",
            "built",
        ],
    );
    assert!(build.status.success(), "{}", stderr(&build));
    let manifest = assert_adopts_unchanged(dir.path(), "built");

    for table in [
        "[kubeconfig.admin]",
        "[per-node.kubeconfig.kubelet]",
        "[per-node.cert.kubelet-client]",
        "[per-node.cert.etcd-server]",
        "[cert.apiserver]",
    ] {
        assert!(manifest.contains(table), "no {table} in:\n{manifest}");
    }
    assert!(!manifest.contains("Not adopted"), "{manifest}");
    for file in [
        "admin.conf",
        "nodes/worker-1/kubelet.conf",
        "nodes/cp-1/pki/etcd/peer.key",
    ] {
        assert_eq!(
            fs::read(dir.path().join("out").join(file)).unwrap(),
            fs::read(dir.path().join("built").join(file)).unwrap(),
            "{file}"
        );
    }
}

/// Asserts that init failed with exit code 2, an error that contains `expected`, and
/// wrote neither the manifest nor the output directory.
fn assert_rejected(dir: &Path, from: &str, expected: &str) {
    let init = pkic(
        dir,
        &["init", "--from", from, "-m", "new.toml", "-o", "new-out"],
    );
    assert_eq!(init.status.code(), Some(2), "{}", stderr(&init));
    assert!(stderr(&init).contains(expected), "{}", stderr(&init));
    assert!(!dir.join("new.toml").exists());
    assert!(!dir.join("new-out").exists());
}

#[test]
fn bad_input_rejected() {
    let dir = tempfile::tempdir().unwrap();
    assert_rejected(
        dir.path(),
        "missing",
        "--from missing: the directory does not exist",
    );

    fs::create_dir(dir.path().join("notes")).unwrap();
    fs::write(dir.path().join("notes/readme.txt"), "no PKI here").unwrap();
    assert_rejected(dir.path(), "notes", "is neither a kubeadm directory");

    let tree = dir.path().join("tree");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("req.cnf"), REQ_CONFIG).unwrap();
    make_ca(&tree, "ca", "/CN=kubernetes", EC_SEC1);
    make_leaf(
        &tree,
        "apiserver",
        "ca",
        "/CN=kube-apiserver",
        "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:kubernetes\n",
        EC_SEC1,
    );
    make_key(&tree, "other.key", EC_SEC1);
    fs::rename(tree.join("other.key"), tree.join("apiserver.key")).unwrap();
    assert_rejected(
        dir.path(),
        "tree",
        "apiserver.key does not match the certificate apiserver.crt",
    );

    fs::write(dir.path().join("pki.toml"), "# mine\n").unwrap();
    let init = pkic(dir.path(), &["init", "--from", "tree"]);
    assert_eq!(init.status.code(), Some(2));
    assert!(
        stderr(&init).contains("manifest pki.toml already exists"),
        "{}",
        stderr(&init)
    );
    assert_eq!(
        fs::read_to_string(dir.path().join("pki.toml")).unwrap(),
        "# mine\n"
    );
    assert!(!dir.path().join("out").exists());

    fs::create_dir(dir.path().join("full")).unwrap();
    fs::write(dir.path().join("full/keep"), "x").unwrap();
    let init = pkic(
        dir.path(),
        &["init", "--from", "tree", "-m", "new.toml", "-o", "full"],
    );
    assert_eq!(init.status.code(), Some(2));
    assert!(
        stderr(&init).contains("output directory full is not empty"),
        "{}",
        stderr(&init)
    );
    assert!(!dir.path().join("new.toml").exists());
    assert_eq!(fs::read_dir(dir.path().join("full")).unwrap().count(), 1);
}

#[test]
fn rotating_tree_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = support::pkic_build::with_rotation(
        &support::tree::small_manifest(),
        "ca.server-ca",
        "add-new",
        "1d",
    );
    fs::write(dir.path().join("rotating.toml"), manifest).unwrap();
    let build = pkic(
        dir.path(),
        &["build", "-m", "rotating.toml", "-o", "rotating"],
    );
    assert!(build.status.success(), "{}", stderr(&build));

    assert_rejected(dir.path(), "rotating", "is in the middle of a rotation");
}

#[test]
fn tree_without_adoptable_files_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let tree = dir.path().join("keyless");
    fs::create_dir_all(&tree).unwrap();
    fs::write(tree.join("req.cnf"), REQ_CONFIG).unwrap();
    make_ca(&tree, "ca", "/CN=kubernetes", EC_SEC1);
    make_leaf(
        &tree,
        "apiserver",
        "ca",
        "/CN=kube-apiserver",
        "extendedKeyUsage = serverAuth\nsubjectAltName = DNS:kubernetes\n",
        EC_SEC1,
    );
    fs::remove_file(tree.join("ca.key")).unwrap();

    assert_rejected(dir.path(), "keyless", "can be adopted without a change");
}
