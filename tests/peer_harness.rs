//! Tests of the peer helpers themselves, on certificates made with the openssl CLI:
//! each helper must accept a correct setup and reject a wrong one, or a peer test of
//! pkic's output that passes would prove nothing.

mod support;

use std::fs;
use std::path::Path;
use std::process::Output;
use std::time::Duration;

use support::openssl_certs::{
    CLIENT_EXTENSIONS, CertFiles, KeyType, PEER_EXTENSIONS, SERVER_EXTENSIONS, make_ca, make_cert,
    make_intermediate_ca,
};
use support::peers::{
    EtcdClientTls, EtcdCluster, EtcdMemberTls, FAKE_APISERVER_VERSION, FakeApiserver,
    assert_etcd_replicates, describe_output, etcdctl, etcdctl_put_get, free_port, key_matches_cert,
    kubectl_get_version, openssl_verify, require_program,
};
use tempfile::TempDir;

/// A cluster CA with its server, client and etcd peer certificates, and an unrelated
/// CA with a client certificate that claims the same group.
struct TestPki {
    directory: TempDir,
    ca: CertFiles,
    server: CertFiles,
    admin: CertFiles,
    peer: CertFiles,
    other_ca: CertFiles,
    stranger: CertFiles,
}

impl TestPki {
    fn new() -> Self {
        let directory = tempfile::tempdir().expect("failed to create a temporary directory");
        let dir = directory.path();
        let ca = make_ca(dir, "ca", "/CN=kubernetes");
        let server = make_cert(
            dir,
            "apiserver",
            &ca,
            "/CN=kube-apiserver",
            SERVER_EXTENSIONS,
            KeyType::EcP256,
        );
        let admin = make_cert(
            dir,
            "admin",
            &ca,
            "/O=system:masters/CN=kubernetes-admin",
            CLIENT_EXTENSIONS,
            KeyType::EcP256,
        );
        let peer = make_cert(
            dir,
            "etcd-peer",
            &ca,
            "/CN=etcd-peer",
            PEER_EXTENSIONS,
            KeyType::EcP256,
        );
        let other_ca = make_ca(dir, "other-ca", "/CN=other");
        let stranger = make_cert(
            dir,
            "stranger",
            &other_ca,
            "/O=system:masters/CN=stranger",
            CLIENT_EXTENSIONS,
            KeyType::EcP256,
        );
        TestPki {
            directory,
            ca,
            server,
            admin,
            peer,
            other_ca,
            stranger,
        }
    }

    fn path(&self, name: &str) -> std::path::PathBuf {
        self.directory.path().join(name)
    }

    /// Starts the stand-in apiserver with the test server certificate, accepting
    /// clients of the test CA.
    fn start_apiserver(&self) -> FakeApiserver {
        FakeApiserver::start(&self.server.cert, &self.server.key, &self.ca.cert)
    }

    /// Writes the kubeconfig `name` for `server` that trusts `ca`, and runs
    /// `kubectl get --raw /version` with it.
    fn kubectl_version(
        &self,
        name: &str,
        server: &str,
        ca: &Path,
        credentials: Credentials<'_>,
    ) -> Output {
        let kubeconfig = self.path(name);
        write_kubeconfig(&kubeconfig, server, ca, credentials);
        kubectl_get_version(&kubeconfig, None)
    }

    fn etcd_member(&self) -> EtcdMemberTls<'_> {
        EtcdMemberTls {
            cert: &self.peer.cert,
            key: &self.peer.key,
            trusted_ca: &self.ca.cert,
            peer_cert: &self.peer.cert,
            peer_key: &self.peer.key,
            peer_trusted_ca: &self.ca.cert,
        }
    }

    fn etcd_client<'a>(&'a self, client: &'a CertFiles) -> EtcdClientTls<'a> {
        EtcdClientTls {
            cacert: &self.ca.cert,
            cert: &client.cert,
            key: &client.key,
        }
    }
}

/// How the user in a hand-written kubeconfig authenticates.
enum Credentials<'a> {
    ClientCert(&'a CertFiles),
    Token(&'a str),
}

/// Writes a kubeconfig that refers to its files by path, as `kubectl config
/// set-cluster` and `set-credentials` do without `--embed-certs`.
fn write_kubeconfig(path: &Path, server: &str, ca: &Path, credentials: Credentials<'_>) {
    let user = match credentials {
        Credentials::ClientCert(files) => format!(
            "    client-certificate: \"{}\"\n    client-key: \"{}\"\n",
            files.cert.display(),
            files.key.display()
        ),
        Credentials::Token(token) => format!("    token: \"{token}\"\n"),
    };
    let kubeconfig = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: test
  cluster:
    server: \"{server}\"
    certificate-authority: \"{}\"
users:
- name: test
  user:
{user}contexts:
- name: test
  context:
    cluster: test
    user: test
current-context: test
",
        ca.display()
    );
    fs::write(path, kubeconfig).expect("failed to write a kubeconfig");
}

fn assert_version_served(output: &Output) {
    assert!(
        output.status.success(),
        "kubectl failed: {}",
        describe_output(output)
    );
    assert_eq!(
        String::from_utf8_lossy(&output.stdout).trim_end(),
        FAKE_APISERVER_VERSION,
        "kubectl printed another body: {}",
        describe_output(output)
    );
}

fn assert_kubectl_failed(output: &Output) {
    assert!(
        !output.status.success(),
        "kubectl succeeded: {}",
        describe_output(output)
    );
}

/// Asserts that kubectl failed with `needle` in its stderr.
fn assert_kubectl_failed_with(output: &Output, needle: &str) {
    assert_kubectl_failed(output);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(needle), "{}", describe_output(output));
}

// ---------------------------------------------------------------------------
// openssl verify and key matching
// ---------------------------------------------------------------------------

#[test]
fn verify_accepts_server_cert_as_sslserver() {
    let pki = TestPki::new();
    let result = openssl_verify(&[&pki.ca.cert], &[], &pki.server.cert, "sslserver");
    assert_eq!(result, Ok(()));
}

#[test]
fn verify_rejects_server_cert_as_sslclient() {
    let pki = TestPki::new();
    let error = openssl_verify(&[&pki.ca.cert], &[], &pki.server.cert, "sslclient").unwrap_err();
    assert!(error.contains("unsuitable certificate purpose"), "{error}");
}

#[test]
fn verify_accepts_client_cert_as_sslclient() {
    let pki = TestPki::new();
    let result = openssl_verify(&[&pki.ca.cert], &[], &pki.admin.cert, "sslclient");
    assert_eq!(result, Ok(()));
}

#[test]
fn verify_rejects_cert_from_other_ca() {
    let pki = TestPki::new();
    let error = openssl_verify(&[&pki.ca.cert], &[], &pki.stranger.cert, "sslclient").unwrap_err();
    assert!(
        error.contains("unable to get local issuer certificate"),
        "{error}"
    );
}

#[test]
fn verify_trusts_every_ca_file_given() {
    let pki = TestPki::new();
    let both_cas: [&Path; 2] = [&pki.other_ca.cert, &pki.ca.cert];
    assert_eq!(
        openssl_verify(&both_cas, &[], &pki.admin.cert, "sslclient"),
        Ok(())
    );
    assert_eq!(
        openssl_verify(&both_cas, &[], &pki.stranger.cert, "sslclient"),
        Ok(())
    );
}

#[test]
fn verify_needs_untrusted_intermediate() {
    let pki = TestPki::new();
    let dir = pki.directory.path();
    let intermediate = make_intermediate_ca(dir, "intermediate", &pki.ca, "/CN=intermediate");
    let leaf = make_cert(
        dir,
        "leaf",
        &intermediate,
        "/CN=leaf",
        SERVER_EXTENSIONS,
        KeyType::EcP256,
    );

    let with_intermediate = openssl_verify(
        &[&pki.ca.cert],
        &[&intermediate.cert],
        &leaf.cert,
        "sslserver",
    );
    assert_eq!(with_intermediate, Ok(()));

    let without_intermediate = openssl_verify(&[&pki.ca.cert], &[], &leaf.cert, "sslserver");
    assert!(
        without_intermediate.is_err(),
        "leaf verified without its intermediate"
    );
}

#[test]
fn strict_verify_rejects_missing_akid() {
    let pki = TestPki::new();
    let extensions = "basicConstraints = critical,CA:FALSE\n\
                      extendedKeyUsage = serverAuth\n\
                      subjectAltName = IP:127.0.0.1\n\
                      subjectKeyIdentifier = none\n\
                      authorityKeyIdentifier = none\n";
    let leaf = make_cert(
        pki.directory.path(),
        "no-akid",
        &pki.ca,
        "/CN=no-akid",
        extensions,
        KeyType::EcP256,
    );
    let error = openssl_verify(&[&pki.ca.cert], &[], &leaf.cert, "sslserver").unwrap_err();
    assert!(
        error.contains("Missing Authority Key Identifier"),
        "{error}"
    );
}

#[test]
fn key_matches_its_own_cert() {
    let pki = TestPki::new();
    let rsa = make_cert(
        pki.directory.path(),
        "rsa",
        &pki.ca,
        "/CN=rsa",
        CLIENT_EXTENSIONS,
        KeyType::Rsa2048,
    );
    assert!(key_matches_cert(&pki.admin.key, &pki.admin.cert), "EC key");
    assert!(key_matches_cert(&rsa.key, &rsa.cert), "RSA key");
}

#[test]
fn key_does_not_match_other_cert() {
    let pki = TestPki::new();
    assert!(!key_matches_cert(&pki.admin.key, &pki.server.cert));
    assert!(
        !key_matches_cert(&pki.admin.key, &pki.admin.key),
        "a key is not a certificate"
    );
}

// ---------------------------------------------------------------------------
// Fake kube-apiserver and kubectl
// ---------------------------------------------------------------------------

#[test]
fn kubectl_accepts_client_from_client_ca() {
    let pki = TestPki::new();
    let server = pki.start_apiserver();
    assert_version_served(&pki.kubectl_version(
        "admin.conf",
        &server.url(),
        &pki.ca.cert,
        Credentials::ClientCert(&pki.admin),
    ));
}

#[test]
fn kubectl_server_override_replaces_kubeconfig_server() {
    let pki = TestPki::new();
    let server = pki.start_apiserver();
    let kubeconfig = pki.path("admin.conf");
    // Nothing listens on this port, so only the override can reach the server.
    let unused_url = format!("https://127.0.0.1:{}", free_port());
    write_kubeconfig(
        &kubeconfig,
        &unused_url,
        &pki.ca.cert,
        Credentials::ClientCert(&pki.admin),
    );

    assert_kubectl_failed(&kubectl_get_version(&kubeconfig, None));
    assert_version_served(&kubectl_get_version(&kubeconfig, Some(&server.url())));
    let localhost_url = format!("https://localhost:{}", server.port());
    assert_version_served(&kubectl_get_version(&kubeconfig, Some(&localhost_url)));
}

#[test]
fn fake_apiserver_rejects_client_without_cert() {
    let pki = TestPki::new();
    let server = pki.start_apiserver();
    let output = pki.kubectl_version(
        "token.conf",
        &server.url(),
        &pki.ca.cert,
        Credentials::Token("not-checked"),
    );
    assert_kubectl_failed_with(&output, "certificate required");
}

#[test]
fn fake_apiserver_rejects_client_from_other_ca() {
    let pki = TestPki::new();
    let server = pki.start_apiserver();
    let output = pki.kubectl_version(
        "stranger.conf",
        &server.url(),
        &pki.ca.cert,
        Credentials::ClientCert(&pki.stranger),
    );
    assert_kubectl_failed_with(&output, "unknown certificate authority");
    assert!(
        server.log().contains("CN = stranger"),
        "s_server log:\n{}",
        server.log()
    );
}

#[test]
fn kubectl_rejects_server_from_other_ca() {
    let pki = TestPki::new();
    let server = pki.start_apiserver();
    let output = pki.kubectl_version(
        "wrong-ca.conf",
        &server.url(),
        &pki.other_ca.cert,
        Credentials::ClientCert(&pki.admin),
    );
    assert_kubectl_failed_with(&output, "x509");
}

#[test]
fn fake_apiserver_sends_only_chain_in_cert_file() {
    let pki = TestPki::new();
    let dir = pki.directory.path();
    let intermediate = make_intermediate_ca(dir, "intermediate", &pki.ca, "/CN=intermediate");
    let leaf = make_cert(
        dir,
        "leaf",
        &intermediate,
        "/CN=leaf",
        SERVER_EXTENSIONS,
        KeyType::EcP256,
    );
    let kubeconfig = pki.path("admin.conf");

    // The leaf alone: kubectl trusts only the root, so the server must not complete
    // the chain from the client CA bundle, which here contains the intermediate.
    let client_cas = pki.path("client-cas.pem");
    let client_cas_text = fs::read_to_string(&pki.ca.cert).unwrap()
        + &fs::read_to_string(&intermediate.cert).unwrap();
    fs::write(&client_cas, client_cas_text).unwrap();
    let leaf_only = FakeApiserver::start(&leaf.cert, &leaf.key, &client_cas);
    write_kubeconfig(
        &kubeconfig,
        &leaf_only.url(),
        &pki.ca.cert,
        Credentials::ClientCert(&pki.admin),
    );
    let output = kubectl_get_version(&kubeconfig, None);
    assert_kubectl_failed_with(&output, "unknown authority");
    drop(leaf_only);

    // The leaf followed by its intermediate, as a --tls-cert-file may contain them.
    let chain = pki.path("leaf-chain.pem");
    let chain_text =
        fs::read_to_string(&leaf.cert).unwrap() + &fs::read_to_string(&intermediate.cert).unwrap();
    fs::write(&chain, chain_text).unwrap();
    let with_chain = FakeApiserver::start(&chain, &leaf.key, &pki.ca.cert);
    write_kubeconfig(
        &kubeconfig,
        &with_chain.url(),
        &pki.ca.cert,
        Credentials::ClientCert(&pki.admin),
    );
    assert_version_served(&kubectl_get_version(&kubeconfig, None));
}

// ---------------------------------------------------------------------------
// etcd and etcdctl
// ---------------------------------------------------------------------------

#[test]
fn etcd_put_get_with_trusted_client() {
    let pki = TestPki::new();
    let etcd = EtcdCluster::start(&[pki.etcd_member()], &pki.etcd_client(&pki.admin));

    let value = etcdctl_put_get(
        etcd.client_url(0),
        &pki.ca.cert,
        &pki.admin.cert,
        &pki.admin.key,
        "/registry/test",
        "-value with a leading dash",
    );
    assert_eq!(value.as_deref(), Ok("-value with a leading dash"));
}

#[test]
fn etcd_rejects_client_from_other_ca() {
    let pki = TestPki::new();
    let etcd = EtcdCluster::start(&[pki.etcd_member()], &pki.etcd_client(&pki.admin));

    let result = etcdctl_put_get(
        etcd.client_url(0),
        &pki.ca.cert,
        &pki.stranger.cert,
        &pki.stranger.key,
        "/registry/test",
        "value",
    );
    assert!(
        result.is_err(),
        "etcd accepted a client from another CA: {result:?}"
    );
    let log = etcd.log(0);
    assert!(
        log.contains("rejected connection")
            && log.contains("certificate signed by unknown authority"),
        "etcd log shows no rejected client certificate:\n{log}"
    );
}

#[test]
fn etcd_cluster_replicates_over_peer_tls() {
    let pki = TestPki::new();
    let member = pki.etcd_member();
    let client = pki.etcd_client(&pki.admin);
    let etcd = EtcdCluster::start(&[member, member, member], &client);

    let list = etcdctl(etcd.client_url(0), &client, &["member", "list"]);
    assert!(list.status.success(), "{}", describe_output(&list));
    let members = String::from_utf8_lossy(&list.stdout).lines().count();
    assert_eq!(members, 3, "{}", describe_output(&list));

    assert_etcd_replicates(&etcd, &client);
}

#[test]
fn etcd_cluster_rejects_peer_from_other_ca() {
    let pki = TestPki::new();
    let stranger_peer = make_cert(
        pki.directory.path(),
        "stranger-peer",
        &pki.other_ca,
        "/CN=stranger-peer",
        PEER_EXTENSIONS,
        KeyType::EcP256,
    );
    let good_member = pki.etcd_member();
    let stranger_member = EtcdMemberTls {
        peer_cert: &stranger_peer.cert,
        peer_key: &stranger_peer.key,
        ..good_member
    };
    let client = pki.etcd_client(&pki.admin);

    // Two members need each other for a quorum, so the cluster cannot become healthy
    // while one of them rejects the other's peer certificate.
    let members = [good_member, stranger_member];
    let result = EtcdCluster::try_start(&members, &client, Duration::from_secs(5));
    let error = match result {
        Ok(_) => panic!("etcd formed a cluster with a peer certificate from another CA"),
        Err(error) => error,
    };
    // The error ends with the members' logs, where etcd names the rejected peer
    // certificate.
    assert!(
        error.contains("failed to verify client certificate"),
        "{error}"
    );
    assert!(
        error.contains("certificate signed by unknown authority"),
        "{error}"
    );
}

// ---------------------------------------------------------------------------
// Harness plumbing
// ---------------------------------------------------------------------------

#[test]
fn free_port_returns_distinct_ports() {
    let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
    let mut distinct = ports.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ports.len(), "{ports:?}");
}

#[test]
#[should_panic(expected = "scripts/install-peers.sh")]
fn missing_peer_fails_with_install_hint() {
    require_program("pkic-test-peer-that-does-not-exist");
}
