//! Staged rotation of a CA and of the service-account key over real trees. Each stage
//! keeps every connection between old and updated hosts working, which openssl and
//! kubectl check. Stages out of order are rejected, drop-old waits for the overlap, and
//! builds killed at any file operation of a stage converge.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::peers::{
    FakeApiserver, describe_output, kubectl_get_version, openssl_verify, peer_command,
};
use support::pkic_build::with_rotation;
use support::tree::{
    assert_complete_pem_files, copy_tree, mode, pkic_command, run_pkic, small_manifest, snapshot,
};

const CA: &str = "ca.server-ca";
const SA: &str = "service-account.sa";

/// Returns the small manifest with the server CA and the service-account key in `stage`.
fn staged_manifest(stage: Option<&str>, overlap: &str) -> String {
    match stage {
        None => small_manifest(),
        Some(stage) => with_rotation(
            &with_rotation(&small_manifest(), CA, stage, overlap),
            SA,
            stage,
            overlap,
        ),
    }
}

/// A scratch directory with a manifest file and an output directory.
struct Tree {
    _dir: tempfile::TempDir,
    manifest: PathBuf,
    out: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        let dir = tempfile::tempdir().unwrap();
        Tree {
            manifest: dir.path().join("pki.toml"),
            out: dir.path().join("out"),
            _dir: dir,
        }
    }

    fn run(&self, command: &str, manifest: &str, env: &[(&str, &str)]) -> Output {
        fs::write(&self.manifest, manifest).unwrap();
        run_pkic(command, &self.manifest, &self.out, &[], env)
    }

    /// Builds `manifest` and checks that a second build changes nothing.
    fn build(&self, manifest: &str) {
        let first = self.run("build", manifest, &[]);
        assert!(first.status.success(), "{}", describe_output(&first));
        let second = self.run("build", manifest, &[]);
        assert!(second.status.success(), "{}", describe_output(&second));
        assert_eq!(
            String::from_utf8_lossy(&second.stdout),
            "",
            "a second build of the same stage rewrote files"
        );
        let plan = self.run("plan", manifest, &[]);
        assert_eq!(plan.status.code(), Some(0), "{}", describe_output(&plan));
    }

    fn file(&self, relative: &str) -> PathBuf {
        self.out.join(relative)
    }

    fn read(&self, relative: &str) -> Vec<u8> {
        fs::read(self.file(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
    }

    fn snapshot(&self) -> BTreeMap<String, Vec<u8>> {
        snapshot(&self.out)
    }

    /// Copies the whole output directory into a new scratch tree.
    fn copy(&self) -> Tree {
        let copy = Tree::new();
        copy_tree(&self.out, &copy.out);
        copy
    }
}

/// Returns the PEM blocks of a file with the given tag, as DER.
fn blocks(bytes: &[u8], tag: &str) -> Vec<Vec<u8>> {
    pem::parse_many(bytes)
        .unwrap()
        .into_iter()
        .filter(|p| p.tag() == tag)
        .map(|p| p.contents().to_vec())
        .collect()
}

fn certs(bytes: &[u8]) -> Vec<Vec<u8>> {
    blocks(bytes, "CERTIFICATE")
}

/// Returns the CA data embedded in the admin kubeconfig, decoded.
fn embedded_ca(tree: &Tree) -> Vec<Vec<u8>> {
    let text = String::from_utf8(tree.read("admin.conf")).unwrap();
    let data = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("certificate-authority-data: "))
        .expect("admin.conf embeds its CA");
    use base64::Engine as _;
    certs(
        &base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap(),
    )
}

/// Returns the public key of a private key file as openssl derives it (SPKI DER).
fn openssl_public_key(key: &Path) -> Vec<u8> {
    let output = peer_command("openssl")
        .args(["pkey", "-pubout", "-outform", "DER", "-in"])
        .arg(key)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe_output(&output));
    output.stdout
}

/// Runs kubectl with `client`'s admin kubeconfig against a stand-in apiserver that serves
/// `server`'s apiserver certificate.
fn kubectl_reaches(client: &Tree, server: &Tree) -> Result<(), String> {
    let apiserver = FakeApiserver::start(
        &server.file("pki/apiserver.crt"),
        &server.file("pki/apiserver.key"),
        &server.file("pki/client-bundle.crt"),
    );
    let output = kubectl_get_version(&client.file("admin.conf"), Some(&apiserver.url()));
    if output.status.success() {
        Ok(())
    } else {
        Err(describe_output(&output))
    }
}

/// Builds the three stages of a CA rotation in turn and returns the trees: before,
/// add-new, use-new (each a copy, so that earlier stages stay on disk).
fn rotate_to_use_new() -> (Tree, Tree, Tree) {
    let before = Tree::new();
    before.build(&staged_manifest(None, "1s"));
    let add_new = before.copy();
    add_new.build(&staged_manifest(Some("add-new"), "1s"));
    let use_new = add_new.copy();
    use_new.build(&staged_manifest(Some("use-new"), "1s"));
    (before, add_new, use_new)
}

#[test]
fn ca_rotation_keeps_connections_trusted() {
    let (before, add_new, use_new) = rotate_to_use_new();

    // add-new: the old CA still signs, a new one is staged, and trust contains both.
    assert_eq!(
        add_new.read("pki/server-ca.crt"),
        before.read("pki/server-ca.crt")
    );
    assert_eq!(
        add_new.read("pki/server-ca.key"),
        before.read("pki/server-ca.key")
    );
    assert_eq!(
        add_new.read("pki/apiserver.crt"),
        before.read("pki/apiserver.crt")
    );
    assert_eq!(mode(&add_new.file("pki/server-ca.new.key")), 0o600);
    let old_ca = certs(&before.read("pki/server-ca.crt"));
    let new_ca = certs(&add_new.read("pki/server-ca.new.crt"));
    assert_ne!(old_ca, new_ca);
    let trust = certs(&add_new.read("pki/server-ca.trust.crt"));
    assert_eq!(trust, [old_ca.clone(), new_ca.clone()].concat());
    assert_eq!(embedded_ca(&add_new), trust, "admin.conf embeds both CAs");
    let kubelet = String::from_utf8(add_new.read("nodes/node-a/kubelet.conf")).unwrap();
    assert!(
        kubelet.contains("certificate-authority: /etc/kubernetes/pki/server-ca.trust.crt"),
        "{kubelet}"
    );
    let bundle = certs(&add_new.read("pki/client-bundle.crt"));
    assert!(bundle.contains(&old_ca[0]), "the bundle lost the old CA");
    assert!(bundle.contains(&new_ca[0]), "the bundle lacks the new CA");

    // use-new: the staged CA signs, every certificate it signed is reissued.
    assert_eq!(
        use_new.read("pki/server-ca.crt"),
        add_new.read("pki/server-ca.new.crt")
    );
    assert_eq!(
        use_new.read("pki/server-ca.key"),
        add_new.read("pki/server-ca.new.key")
    );
    assert!(!use_new.file("pki/server-ca.new.crt").exists());
    assert!(!use_new.file("pki/server-ca.new.key").exists());
    assert_ne!(
        use_new.read("pki/apiserver.crt"),
        add_new.read("pki/apiserver.crt")
    );
    assert_eq!(
        use_new.read("pki/apiserver.key"),
        add_new.read("pki/apiserver.key")
    );
    assert_eq!(use_new.read("pki/admin.crt"), add_new.read("pki/admin.crt"));
    assert_eq!(
        use_new.read("pki/client-ca.crt"),
        add_new.read("pki/client-ca.crt")
    );
    let trust = certs(&use_new.read("pki/server-ca.trust.crt"));
    assert_eq!(trust, [new_ca.clone(), old_ca.clone()].concat());
    let new_leaf = use_new.file("pki/apiserver.crt");
    openssl_verify(
        &[&add_new.file("pki/server-ca.trust.crt")],
        &[],
        &new_leaf,
        "sslserver",
    )
    .unwrap();
    openssl_verify(
        &[&use_new.file("pki/server-ca.crt")],
        &[],
        &new_leaf,
        "sslserver",
    )
    .unwrap();
    let old_leaf = before.file("pki/apiserver.crt");
    openssl_verify(
        &[&use_new.file("pki/server-ca.trust.crt")],
        &[],
        &old_leaf,
        "sslserver",
    )
    .unwrap();

    // Hosts on either side of a stage reach each other; without add-new they do not.
    kubectl_reaches(&add_new, &use_new).expect("add-new client, use-new server");
    kubectl_reaches(&use_new, &before).expect("use-new client, old server");
    assert!(
        kubectl_reaches(&before, &use_new).is_err(),
        "a client that never got the add-new trust file reached a server of the new CA"
    );
    // pkic check rejects the same mix: a use-new tree whose admin.conf skipped add-new.
    let mixed = use_new.copy();
    fs::write(mixed.file("admin.conf"), before.read("admin.conf")).unwrap();
    let check = Command::new(env!("CARGO_BIN_EXE_pkic"))
        .arg("check")
        .arg(&mixed.out)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{report}");
    assert!(report.contains("error[kubeconfig-ca-mismatch]"), "{report}");

    // drop-old waits for the overlap and writes nothing before it ends.
    let too_early = staged_manifest(Some("drop-old"), "1h");
    let files = use_new.snapshot();
    let rejected = use_new.run("build", &too_early, &[]);
    assert_eq!(
        rejected.status.code(),
        Some(2),
        "{}",
        describe_output(&rejected)
    );
    let stderr = String::from_utf8_lossy(&rejected.stderr);
    assert!(stderr.contains("ca.server-ca.rotation.stage"), "{stderr}");
    assert!(stderr.contains("not allowed before"), "{stderr}");
    assert_eq!(use_new.snapshot(), files, "a rejected stage wrote files");

    std::thread::sleep(std::time::Duration::from_millis(2100));
    let drop_old = use_new.copy();
    drop_old.build(&staged_manifest(Some("drop-old"), "1s"));
    assert!(!drop_old.file("pki/server-ca.trust.crt").exists());
    assert_eq!(
        embedded_ca(&drop_old),
        new_ca,
        "admin.conf embeds only the new CA"
    );
    let kubelet = String::from_utf8(drop_old.read("nodes/node-a/kubelet.conf")).unwrap();
    assert!(kubelet.contains("certificate-authority: /etc/kubernetes/pki/server-ca.crt"));
    kubectl_reaches(&drop_old, &use_new).expect("drop-old client, use-new server");
    assert!(
        kubectl_reaches(&drop_old, &before).is_err(),
        "after drop-old a server of the old CA is still trusted"
    );

    // The finished rotation may leave the manifest; nothing changes then.
    drop_old.build(&staged_manifest(None, "1s"));
}

#[test]
fn service_account_publishes_both_keys() {
    let (before, add_new, use_new) = rotate_to_use_new();
    let old = openssl_public_key(&before.file("pki/sa.key"));
    let new = openssl_public_key(&add_new.file("pki/sa.new.key"));
    assert_ne!(old, new);
    assert_eq!(mode(&add_new.file("pki/sa.new.key")), 0o600);

    assert_eq!(add_new.read("pki/sa.key"), before.read("pki/sa.key"));
    assert_eq!(
        blocks(&add_new.read("pki/sa.pub"), "PUBLIC KEY"),
        [old.clone(), new.clone()]
    );

    assert_eq!(use_new.read("pki/sa.key"), add_new.read("pki/sa.new.key"));
    assert!(!use_new.file("pki/sa.new.key").exists());
    assert_eq!(
        blocks(&use_new.read("pki/sa.pub"), "PUBLIC KEY"),
        [new.clone(), old]
    );

    let plan = use_new.run("plan", &staged_manifest(Some("drop-old"), "1h"), &[]);
    assert_eq!(plan.status.code(), Some(2), "{}", describe_output(&plan));

    std::thread::sleep(std::time::Duration::from_millis(2100));
    use_new.build(&staged_manifest(Some("drop-old"), "1s"));
    assert_eq!(blocks(&use_new.read("pki/sa.pub"), "PUBLIC KEY"), [new]);
}

/// Runs `manifest` on a copy of `tree` and expects exit code 2 naming `expected`, with
/// no file written.
fn assert_rejected(tree: &Tree, manifest: &str, expected: &str) {
    let copy = tree.copy();
    let files = copy.snapshot();
    let output = copy.run("build", manifest, &[]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        describe_output(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(expected),
        "expected {expected:?} in:\n{stderr}"
    );
    assert_eq!(copy.snapshot(), files, "a rejected build wrote files");
}

#[test]
fn stages_out_of_order_rejected() {
    let before = Tree::new();
    before.build(&staged_manifest(None, "1s"));
    assert_rejected(
        &before,
        &staged_manifest(Some("use-new"), "1s"),
        "stage use-new needs the new CA that stage add-new stages",
    );
    assert_rejected(
        &before,
        &with_rotation(&small_manifest(), SA, "use-new", "1s"),
        "stage use-new needs the new key that stage add-new stages",
    );

    let add_new = before.copy();
    add_new.build(&staged_manifest(Some("add-new"), "1s"));
    assert_rejected(
        &add_new,
        &staged_manifest(Some("drop-old"), "1s"),
        "stage drop-old follows use-new",
    );
    assert_rejected(
        &add_new,
        &staged_manifest(None, "1s"),
        "is in the middle of a rotation on disk (pki/server-ca.new.key",
    );
    assert_rejected(
        &add_new,
        &staged_manifest(Some("add-new"), "1s").replace("Server CA", "Server CA 2"),
        "the CA staged by add-new (pki/server-ca.new.crt) differs from the manifest",
    );

    // A staged CA lost after add-new may already be trusted by hosts.
    let lost = add_new.copy();
    fs::remove_file(lost.file("pki/server-ca.new.crt")).unwrap();
    assert_rejected(
        &lost,
        &staged_manifest(Some("add-new"), "1s"),
        "trusts a CA besides the current one, but no staged CA is on disk",
    );

    // Going back from use-new to add-new would drop the replaced CA and key at once.
    let use_new = add_new.copy();
    use_new.build(&staged_manifest(Some("use-new"), "1s"));
    assert_rejected(
        &use_new,
        &with_rotation(&small_manifest(), CA, "add-new", "1s"),
        "going back to add-new would drop the CA it replaced",
    );
    assert_rejected(
        &use_new,
        &with_rotation(&small_manifest(), SA, "add-new", "1s"),
        "going back to add-new would drop the key it replaced",
    );
}

#[test]
fn rolled_back_use_new_restarts_overlap() {
    let (_, add_new, use_new) = rotate_to_use_new();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    // Roll use-new back as the README says: the add-new files over the tree.
    let rolled_back = add_new.copy();
    fs::copy(
        use_new.out.join(".pkic-rotation"),
        rolled_back.out.join(".pkic-rotation"),
    )
    .unwrap();

    rolled_back.build(&staged_manifest(Some("use-new"), "2s"));

    let output = rolled_back.run("build", &staged_manifest(Some("drop-old"), "2s"), &[]);
    assert_eq!(
        output.status.code(),
        Some(2),
        "{}",
        describe_output(&output)
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("not allowed before"), "{stderr}");
}

#[test]
fn bad_rotation_tables_rejected() {
    let tree = Tree::new();
    let output = tree.run("build", &staged_manifest(Some("use_new"), "1s"), &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("ca.server-ca.rotation.stage: unknown rotation stage `use_new`"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `use-new`?"), "{stderr}");
    let no_overlap = small_manifest().replace(
        "[ca.server-ca]\n",
        "[ca.server-ca]\nrotation = { stage = \"add-new\" }\n",
    );
    let output = tree.run("build", &no_overlap, &[]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("states no overlap"), "{stderr}");
    assert!(!tree.out.exists(), "a rejected manifest created the output");
}

/// Builds `to` over a copy of `from`, aborted after 1, 2, ... file operations, each time
/// followed by a normal build, until a build finishes. `check` runs on each recovered
/// tree.
fn converges_after_kills(from: &Tree, to: &str, check: impl Fn(&Tree, &str)) {
    for operations in 1.. {
        let tree = from.copy();
        let limit = operations.to_string();
        let killed = tree.run("build", to, &[("PKIC_TEST_ABORT_AFTER", &limit)]);
        let context = format!("aborted after {operations} operations");
        assert_complete_pem_files(&tree.out, &context);
        let recovered = tree.run("build", to, &[]);
        assert!(
            recovered.status.success(),
            "{context}: {}",
            describe_output(&recovered)
        );
        let plan = tree.run("plan", to, &[]);
        assert_eq!(
            plan.status.code(),
            Some(0),
            "{context}: {}",
            describe_output(&plan)
        );
        check(&tree, &context);
        if killed.status.success() {
            assert!(
                operations > 3,
                "the stage made only {operations} file operations"
            );
            return;
        }
    }
}

#[test]
fn killed_stage_builds_converge() {
    let (before, add_new, use_new) = rotate_to_use_new();
    let old_ca = before.read("pki/server-ca.crt");
    let new_ca = add_new.read("pki/server-ca.new.crt");
    let new_sa = add_new.read("pki/sa.new.key");

    converges_after_kills(
        &before,
        &staged_manifest(Some("add-new"), "1s"),
        |tree, context| {
            assert_eq!(tree.read("pki/server-ca.crt"), old_ca, "{context}");
            assert_eq!(
                certs(&tree.read("pki/server-ca.trust.crt")).len(),
                2,
                "{context}"
            );
        },
    );
    converges_after_kills(
        &add_new,
        &staged_manifest(Some("use-new"), "1s"),
        |tree, context| {
            assert_eq!(tree.read("pki/server-ca.crt"), new_ca, "{context}");
            assert_eq!(tree.read("pki/sa.key"), new_sa, "{context}");
            let trust = certs(&tree.read("pki/server-ca.trust.crt"));
            assert_eq!(
                trust,
                [certs(&new_ca), certs(&old_ca)].concat(),
                "{context}"
            );
            openssl_verify(
                &[&tree.file("pki/server-ca.crt")],
                &[],
                &tree.file("pki/apiserver.crt"),
                "sslserver",
            )
            .unwrap_or_else(|e| panic!("{context}: {e}"));
        },
    );
    std::thread::sleep(std::time::Duration::from_millis(2100));
    converges_after_kills(
        &use_new,
        &staged_manifest(Some("drop-old"), "1s"),
        |tree, context| {
            assert_eq!(tree.read("pki/server-ca.crt"), new_ca, "{context}");
            assert!(!tree.file("pki/server-ca.trust.crt").exists(), "{context}");
            assert_eq!(
                blocks(&tree.read("pki/sa.pub"), "PUBLIC KEY").len(),
                1,
                "{context}"
            );
        },
    );
}

#[test]
fn rotation_renames_the_ca() {
    let tree = Tree::new();
    tree.build(&small_manifest());
    let renamed = |stage: &str| {
        staged_manifest(Some(stage), "1s").replace("cn = \"Server CA\"", "cn = \"Server CA 2027\"")
    };
    tree.build(&renamed("add-new"));
    tree.build(&renamed("use-new"));
    let apiserver = certs(&tree.read("pki/apiserver.crt"));
    let (_, cert) = x509_parser::parse_x509_certificate(&apiserver[0]).unwrap();
    assert_eq!(cert.issuer().to_string(), "CN=Server CA 2027");
    let check = pkic_command().arg("check").arg(&tree.out).output().unwrap();
    assert!(check.status.success(), "{}", describe_output(&check));
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(!stdout.contains("ca-subject-shared"), "{stdout}");
}
