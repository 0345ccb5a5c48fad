//! Certificates signed by an offline root whose key pkic never reads: `pkic build`
//! writes keys and CSRs and exits 5, the test signs the CSRs with the openssl CLI the
//! way an operator would, and the next build verifies and accepts the certificates.
//! Wrong certificates are rejected with nothing written, an intermediate CA below the
//! root goes through the same steps, and a manifest change asks for a new CSR.
//!
//! Every test needs openssl and fails when it is missing.

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::PathBuf;
use std::process::Output;

use support::peers::describe_output;
use support::tree::{mode, openssl_in, pkic_command, snapshot_with_modes, stderr};

/// Exit code of a build that wrote CSRs and waits for their certificates.
const AWAITING_SIGNATURE: i32 = 5;

const MANIFEST: &str = r#"
[cluster]
name = "offline"
servers = ["https://192.0.2.10:6443"]

[defaults]
key-algorithm = "ecdsa-p256"

[ca.root]
import-cert = "root.crt"

[cert.apiserver]
issuer = "root"
role = "apiserver"
sans = ["${EXTRA_SAN:-api.example.com}"]

[cert.admin]
issuer = "root"
role = "admin"

[service-account.sa]

[kubeconfig.admin]
user = "admin"
ca = "root"

[flags.kube-apiserver]
tls-cert = "apiserver"
client-ca = "root"
service-account = "sa"
"#;

/// An intermediate CA below the offline root signs the apiserver certificate.
const INTERMEDIATE_MANIFEST: &str = r#"
[cluster]
name = "offline"
servers = ["https://192.0.2.10:6443"]

[defaults]
key-algorithm = "ecdsa-p256"

[ca.root]
import-cert = "root.crt"

[ca.cluster-ca]
issuer = "root"
subject = { cn = "Cluster CA" }
path-len = 0
validity = "5y"

[cert.apiserver]
issuer = "cluster-ca"
role = "apiserver"

[cert.admin]
issuer = "root"
role = "admin"

[kubeconfig.admin]
user = "admin"
ca = "cluster-ca"
"#;

/// A directory with the manifest, the offline root's certificate beside it, the root's
/// key in `offline/` (outside the output directory) and the output in `out/`.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new(manifest: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("offline")).unwrap();
        fs::write(dir.path().join("pki.toml"), manifest).unwrap();
        let fixture = Fixture { dir };
        fixture.make_root("root.crt", "offline/root.key", "/CN=Offline Root");
        fixture
    }

    fn path(&self, relative: &str) -> PathBuf {
        self.dir.path().join(relative)
    }

    fn out(&self, relative: &str) -> PathBuf {
        self.dir.path().join("out").join(relative)
    }

    fn make_root(&self, cert: &str, key: &str, subject: &str) {
        self.openssl(&[
            "req",
            "-x509",
            "-new",
            "-noenc",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-days",
            "3650",
            "-subj",
            subject,
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
            "-keyout",
            key,
            "-out",
            cert,
        ]);
    }

    /// Runs openssl in the fixture directory and returns its output; panics when it fails.
    fn openssl(&self, args: &[&str]) -> Output {
        openssl_in(self.dir.path(), args)
    }

    /// Signs `out/pki/NAME.csr` with the offline root, copying the request's
    /// extensions, into `out/pki/NAME.crt`.
    fn sign(&self, name: &str, days: &str) {
        self.sign_with(name, days, "root.crt", "offline/root.key");
    }

    fn sign_with(&self, name: &str, days: &str, ca: &str, ca_key: &str) {
        let csr = format!("out/pki/{name}.csr");
        let crt = format!("out/pki/{name}.crt");
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            ca,
            "-CAkey",
            ca_key,
            "-copy_extensions",
            "copy",
            "-days",
            days,
            "-out",
            &crt,
        ]);
    }

    fn pkic(&self, args: &[&str], vars: &[&str]) -> Output {
        let mut command = pkic_command();
        command
            .args(args)
            .args(["-m", "pki.toml", "-o", "out"])
            .current_dir(self.dir.path());
        for var in vars {
            command.arg("--set").arg(var);
        }
        command.output().expect("pkic runs")
    }

    fn build(&self) -> Output {
        self.pkic(&["build"], &[])
    }

    /// Returns every file under `out/` with its bytes and mode.
    fn snapshot(&self) -> BTreeMap<String, (Vec<u8>, u32)> {
        snapshot_with_modes(&self.path("out"))
    }

    fn csr_text(&self, name: &str) -> String {
        let csr = format!("out/pki/{name}.csr");
        let output = self.openssl(&["req", "-in", &csr, "-noout", "-text"]);
        String::from_utf8(output.stdout).unwrap()
    }
}

/// Builds until the CSRs are written, asserting the exit code.
fn build_until_csrs(fixture: &Fixture) {
    let first = fixture.build();
    assert_eq!(
        first.status.code(),
        Some(AWAITING_SIGNATURE),
        "{}",
        describe_output(&first)
    );
}

#[test]
fn offline_root_signs_through_csrs() {
    let fixture = Fixture::new(MANIFEST);

    let first = fixture.build();

    assert_eq!(
        first.status.code(),
        Some(AWAITING_SIGNATURE),
        "{}",
        describe_output(&first)
    );
    assert!(
        stderr(&first).contains("out/pki/apiserver.csr"),
        "{}",
        stderr(&first)
    );
    for name in ["apiserver", "admin"] {
        let csr = fixture.out(&format!("pki/{name}.csr"));
        assert_eq!(mode(&csr), 0o644, "{name}.csr");
        assert_eq!(mode(&fixture.out(&format!("pki/{name}.key"))), 0o600);
        assert!(!fixture.out(&format!("pki/{name}.crt")).exists());
        let csr_arg = csr.display().to_string();
        fixture.openssl(&["req", "-verify", "-noout", "-in", &csr_arg]);
    }
    assert!(
        !fixture.out("admin.conf").exists(),
        "kubeconfig written early"
    );
    assert!(!fixture.out("flags/kube-apiserver.flags").exists());
    assert!(!fixture.out("pki/root.key").exists());

    let apiserver = fixture.csr_text("apiserver");
    assert!(
        apiserver.contains("Subject: CN = kube-apiserver"),
        "{apiserver}"
    );
    for san in [
        "DNS:kubernetes.default.svc.cluster.local",
        "DNS:api.example.com",
        "IP Address:10.96.0.1",
        "IP Address:192.0.2.10",
    ] {
        assert!(apiserver.contains(san), "{san} missing: {apiserver}");
    }
    assert!(
        apiserver.contains("TLS Web Server Authentication"),
        "{apiserver}"
    );
    assert!(apiserver.contains("CA:FALSE"), "{apiserver}");
    assert!(apiserver.contains("Digital Signature"), "{apiserver}");
    let admin = fixture.csr_text("admin");
    assert!(
        admin.contains("Subject: O = system:masters, CN = kubernetes-admin"),
        "{admin}"
    );
    assert!(admin.contains("TLS Web Client Authentication"), "{admin}");

    let waiting = fixture.snapshot();
    let again = fixture.build();
    assert_eq!(again.status.code(), Some(AWAITING_SIGNATURE));
    assert_eq!(
        fixture.snapshot(),
        waiting,
        "a second waiting build changed files"
    );

    let plan = fixture.pkic(&["plan"], &[]);
    let plan_text = String::from_utf8_lossy(&plan.stdout);
    assert_eq!(plan.status.code(), Some(4), "{}", describe_output(&plan));
    assert!(
        plan_text.contains("await-signature cert:apiserver"),
        "{plan_text}"
    );
    assert!(plan_text.contains("CSR pki/apiserver.csr"), "{plan_text}");
    let json = fixture.pkic(&["plan", "--format", "json"], &[]);
    let json: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let objects = json["objects"].as_array().unwrap();
    let apiserver_object = objects
        .iter()
        .find(|o| o["object"] == "cert:apiserver")
        .expect("cert:apiserver in the JSON plan");
    assert_eq!(apiserver_object["action"], "await-signature");
    assert_eq!(apiserver_object["csr"], "pki/apiserver.csr");

    fixture.sign("apiserver", "365");
    fixture.sign("admin", "365");
    let complete = fixture.build();

    assert!(complete.status.success(), "{}", describe_output(&complete));
    assert!(fixture.out("admin.conf").is_file());
    assert!(fixture.out("flags/kube-apiserver.flags").is_file());
    for (name, purpose) in [("apiserver", "sslserver"), ("admin", "sslclient")] {
        let leaf = format!("out/pki/{name}.crt");
        fixture.openssl(&[
            "verify",
            "-x509_strict",
            "-purpose",
            purpose,
            "-CAfile",
            "root.crt",
            &leaf,
        ]);
    }
    assert_eq!(
        fs::read(fixture.out("pki/root.crt")).unwrap(),
        fs::read(fixture.path("root.crt")).unwrap()
    );
    assert!(!fixture.out("pki/root.key").exists());

    let built = fixture.snapshot();
    let noop = fixture.build();
    assert!(noop.status.success(), "{}", describe_output(&noop));
    assert!(
        stderr(&noop).contains("no file changed"),
        "{}",
        stderr(&noop)
    );
    assert_eq!(fixture.snapshot(), built);
    let plan = fixture.pkic(&["plan"], &[]);
    assert_eq!(plan.status.code(), Some(0), "{}", describe_output(&plan));
}

/// Places `out/pki/apiserver.crt` with `place`, then checks that the build rejects it
/// with `expected` in its message and writes nothing.
fn assert_rejected(fixture: &Fixture, place: impl FnOnce(&Fixture), expected: &str) {
    let _ = fs::remove_file(fixture.out("pki/apiserver.crt"));
    place(fixture);
    let before = fixture.snapshot();

    let build = fixture.build();

    assert_eq!(build.status.code(), Some(1), "{}", describe_output(&build));
    let message = stderr(&build);
    assert!(message.contains(expected), "{expected:?} not in: {message}");
    assert!(
        message.contains("rejected the signed certificate")
            && message.contains("out/pki/apiserver.crt"),
        "{message}"
    );
    assert!(
        message.contains("help: sign") && message.contains("out/pki/apiserver.csr"),
        "{message}"
    );
    assert_eq!(fixture.snapshot(), before, "a rejected build wrote files");
}

#[test]
fn wrong_certificates_rejected() {
    let fixture = Fixture::new(MANIFEST);
    build_until_csrs(&fixture);
    fixture.sign("admin", "365");
    fixture.make_root("offline/other.crt", "offline/other.key", "/CN=Other Root");

    assert_rejected(
        &fixture,
        |f| f.sign_with("apiserver", "365", "offline/other.crt", "offline/other.key"),
        "it is not signed by CA `root`",
    );

    assert_rejected(
        &fixture,
        |f| {
            f.openssl(&[
                "req",
                "-new",
                "-noenc",
                "-newkey",
                "ec",
                "-pkeyopt",
                "ec_paramgen_curve:P-256",
                "-keyout",
                "offline/stolen.key",
                "-subj",
                "/CN=kube-apiserver",
                "-out",
                "offline/stolen.csr",
            ]);
            fs::copy(f.out("pki/apiserver.csr"), f.path("offline/kept.csr")).unwrap();
            fs::copy(f.path("offline/stolen.csr"), f.out("pki/apiserver.csr")).unwrap();
            f.sign("apiserver", "365");
            fs::copy(f.path("offline/kept.csr"), f.out("pki/apiserver.csr")).unwrap();
        },
        "its public key is not the key in",
    );

    assert_rejected(
        &fixture,
        |f| {
            fs::write(
                f.path("offline/short.ext"),
                "basicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature\n\
                 extendedKeyUsage = serverAuth\n\
                 subjectAltName = DNS:kubernetes,DNS:kubernetes.default,\
                 DNS:kubernetes.default.svc,DNS:kubernetes.default.svc.cluster.local,\
                 IP:10.96.0.1,IP:192.0.2.10\n",
            )
            .unwrap();
            f.openssl(&[
                "x509",
                "-req",
                "-in",
                "out/pki/apiserver.csr",
                "-CA",
                "root.crt",
                "-CAkey",
                "offline/root.key",
                "-extfile",
                "offline/short.ext",
                "-days",
                "365",
                "-out",
                "out/pki/apiserver.crt",
            ]);
        },
        "SANs missing: DNS:api.example.com",
    );

    assert_rejected(
        &fixture,
        |f| f.sign("apiserver", "3650"),
        "longer than the declared validity",
    );

    assert_rejected(
        &fixture,
        |f| {
            f.sign("apiserver", "365");
            f.openssl(&[
                "x509",
                "-in",
                "out/pki/apiserver.crt",
                "-outform",
                "DER",
                "-out",
                "out/pki/apiserver.der",
            ]);
            fs::rename(f.out("pki/apiserver.der"), f.out("pki/apiserver.crt")).unwrap();
        },
        "it is not PEM text",
    );

    fs::remove_file(fixture.out("pki/apiserver.crt")).unwrap();
    fixture.sign("apiserver", "365");
    let fixed = fixture.build();
    assert!(fixed.status.success(), "{}", describe_output(&fixed));
}

#[test]
fn intermediate_below_offline_root() {
    let fixture = Fixture::new(INTERMEDIATE_MANIFEST);

    build_until_csrs(&fixture);

    assert!(fixture.out("pki/cluster-ca.csr").is_file());
    assert!(fixture.out("pki/cluster-ca.key").is_file());
    assert!(
        !fixture.out("pki/apiserver.csr").exists(),
        "the intermediate signs the apiserver certificate, so it needs no CSR"
    );
    assert!(!fixture.out("pki/apiserver.key").exists());
    let request = fixture.csr_text("cluster-ca");
    assert!(request.contains("Subject: CN = Cluster CA"), "{request}");
    assert!(request.contains("CA:TRUE, pathlen:0"), "{request}");
    assert!(request.contains("Certificate Sign"), "{request}");

    fixture.sign("cluster-ca", "1825");
    fixture.sign("admin", "365");
    let complete = fixture.build();

    assert!(complete.status.success(), "{}", describe_output(&complete));
    fixture.openssl(&[
        "verify",
        "-x509_strict",
        "-purpose",
        "sslserver",
        "-CAfile",
        "root.crt",
        "-untrusted",
        "out/pki/cluster-ca.crt",
        "out/pki/apiserver.crt",
    ]);
    let built = fixture.snapshot();
    let noop = fixture.build();
    assert!(
        stderr(&noop).contains("no file changed"),
        "{}",
        stderr(&noop)
    );
    assert_eq!(fixture.snapshot(), built);
}

#[test]
fn spec_change_asks_new_csr() {
    let fixture = Fixture::new(MANIFEST);
    build_until_csrs(&fixture);
    fixture.sign("apiserver", "365");
    fixture.sign("admin", "365");
    let complete = fixture.build();
    assert!(complete.status.success(), "{}", describe_output(&complete));
    let key = fs::read(fixture.out("pki/apiserver.key")).unwrap();
    let cert = fs::read(fixture.out("pki/apiserver.crt")).unwrap();
    let csr = fs::read(fixture.out("pki/apiserver.csr")).unwrap();

    let renewal_time = (time::OffsetDateTime::now_utc() + time::Duration::days(340))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let renewal = fixture.pkic(&["plan", "--at", &renewal_time], &[]);
    let renewal_text = String::from_utf8_lossy(&renewal.stdout);
    assert_eq!(
        renewal.status.code(),
        Some(4),
        "{}",
        describe_output(&renewal)
    );
    assert!(
        renewal_text.contains("await-signature cert:apiserver: expires in"),
        "{renewal_text}"
    );

    let changed = fixture.pkic(&["build"], &["EXTRA_SAN=api2.example.com"]);

    assert_eq!(
        changed.status.code(),
        Some(AWAITING_SIGNATURE),
        "{}",
        describe_output(&changed)
    );
    assert_eq!(fs::read(fixture.out("pki/apiserver.key")).unwrap(), key);
    assert_eq!(fs::read(fixture.out("pki/apiserver.crt")).unwrap(), cert);
    assert_ne!(fs::read(fixture.out("pki/apiserver.csr")).unwrap(), csr);
    let request = fixture.csr_text("apiserver");
    assert!(request.contains("DNS:api2.example.com"), "{request}");
    assert!(
        stderr(&changed).contains("SANs missing: DNS:api2.example.com"),
        "{}",
        stderr(&changed)
    );

    fixture.sign("apiserver", "365");
    let signed = fixture.pkic(&["build"], &["EXTRA_SAN=api2.example.com"]);
    assert!(signed.status.success(), "{}", describe_output(&signed));
}

#[test]
fn keyless_ca_rejected_as_cluster_signer() {
    let manifest = format!(
        "{MANIFEST}
[cert.controller-manager]
issuer = \"root\"
role = \"controller-manager\"

[kubeconfig.controller-manager]
user = \"controller-manager\"
ca = \"root\"

[flags.kube-controller-manager]
kubeconfig = \"controller-manager\"
root-ca = \"root\"
cluster-signing = \"root\"
service-account = \"sa\"
"
    );
    let fixture = Fixture::new(&manifest);

    let build = fixture.build();

    assert_eq!(build.status.code(), Some(2), "{}", describe_output(&build));
    let message = stderr(&build);
    assert!(
        message.contains("flags.kube-controller-manager.cluster-signing"),
        "{message}"
    );
    assert!(
        message.contains("which is imported without its key"),
        "{message}"
    );
    assert!(
        !fixture.path("out").exists(),
        "an invalid manifest wrote files"
    );
}
