//! Findings about files, keys and single certificates: each test breaks one file of
//! the base tree and asserts that its finding fires there.

use crate::fixture::{APISERVER_SANS, Case, ETCD_SANS, leaf, reissue_admin};
use crate::tree::{CA, CLIENT, Key, SERVER, SERVER_CLIENT};

#[test]
fn missing_key_file() {
    let case = Case::new("missing-key-file");
    case.tree.remove("pki/apiserver.key");
    let outcome = case.check(&[]);
    outcome.assert_has_in("file-missing", "pki/apiserver.key");
    assert!(
        outcome
            .messages("file-missing")
            .contains("--tls-private-key-file")
    );
    assert_eq!(outcome.code, 1);
}

#[test]
fn flag_path_outside_tree() {
    let mut case = Case::new("flag-path-outside-tree");
    case.replace(
        "tls-cert-file = \"/etc/kubernetes/pki/kubelet-worker-1.crt\"",
        "tls-cert-file = \"/var/lib/kubelet/pki/kubelet.crt\"",
    );
    let outcome = case.check(&[]);
    outcome.assert_has("file-outside-tree");
    assert!(
        outcome
            .messages("file-outside-tree")
            .contains("/var/lib/kubelet/pki/kubelet.crt")
    );
    assert_eq!(
        outcome.code,
        0,
        "a note does not fail the check: {}",
        outcome.describe()
    );
}

#[test]
fn certificate_file_not_pem() {
    let case = Case::new("certificate-file-not-pem");
    case.tree
        .write("pki/front-proxy-client.crt", "this is not a certificate\n");
    let outcome = case.check(&[]);
    outcome.assert_has_in("pem-invalid", "pki/front-proxy-client.crt");
}

#[test]
fn certificate_der_damaged() {
    let case = Case::new("certificate-der-damaged");
    case.tree.write(
        "pki/front-proxy-client.crt",
        "-----BEGIN CERTIFICATE-----\nMIIBAAAAAAAAAAAAAAAAAAAA\n-----END CERTIFICATE-----\n",
    );
    let outcome = case.check(&[]);
    outcome.assert_has_in("cert-unparsable", "pki/front-proxy-client.crt");
}

#[test]
fn key_file_holds_public_key() {
    let case = Case::new("key-file-holds-public-key");
    case.tree.public_key("pki/admin.key", "pki/admin.key");
    let outcome = case.check(&[]);
    outcome.assert_has_in("key-unreadable", "pki/admin.key");
    assert!(outcome.messages("key-unreadable").contains("PUBLIC KEY"));
}

#[test]
fn key_encrypted_with_passphrase() {
    let case = Case::new("key-encrypted");
    let key = "pki/apiserver.key";
    case.tree
        .transform(key, key, &["pkey", "-aes256", "-passout", "pass:secret"]);
    let outcome = case.check(&[]);
    outcome.assert_has_in("key-encrypted", "pki/apiserver.key");
    assert!(
        !outcome.has("key-unreadable"),
        "an encrypted key is a key: {}",
        outcome.describe()
    );
}

#[test]
fn key_of_another_certificate() {
    let case = Case::new("key-of-another-certificate");
    case.tree.key("pki/apiserver.key", Key::Ec);
    let outcome = case.check(&[]);
    outcome.assert_has_in("key-mismatch", "pki/apiserver.key");
}

#[test]
fn key_shared_by_two_subjects() {
    let case = Case::new("key-shared-by-two-subjects");
    let kubelet_client_key = case.tree.read("pki/apiserver-kubelet-client.key");
    case.tree.write("pki/admin.key", &kubelet_client_key);
    reissue_admin(&case.tree).ext(CLIENT).existing_key().write();
    let outcome = case.check(&[]);
    let messages = outcome.messages("key-shared");
    assert!(messages.contains("pki/admin.crt"), "{}", outcome.describe());
    assert!(
        messages.contains("pki/apiserver-kubelet-client.crt"),
        "{}",
        outcome.describe()
    );
    assert!(!outcome.has("key-mismatch"), "{}", outcome.describe());
}

#[test]
fn certificate_expired() {
    let case = Case::new("certificate-expired");
    reissue_admin(&case.tree)
        .ext(CLIENT)
        .dates("20200101000000Z", "20210101000000Z")
        .write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("expired", "pki/admin.crt");
    assert!(
        !outcome.has("kubeconfig-client-untrusted"),
        "expiry is reported once, by `expired`: {}",
        outcome.describe()
    );
}

#[test]
fn certificate_not_yet_valid() {
    let case = Case::new("certificate-not-yet-valid");
    reissue_admin(&case.tree)
        .ext(CLIENT)
        .dates("20990101000000Z", "21000101000000Z")
        .write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("not-yet-valid", "pki/admin.crt");
}

#[test]
fn certificate_invalid_at_given_time() {
    let case = Case::new("certificate-invalid-at-time");
    let later = case.check(&["--at", "2100-01-01T00:00:00Z"]);
    later.assert_has_in("invalid-at-time", "pki/apiserver.crt");
    let soon = case.check(&["--at", &tomorrow()]);
    assert!(!soon.has("invalid-at-time"), "{}", soon.describe());
}

fn tomorrow() -> String {
    let time = time::OffsetDateTime::now_utc() + time::Duration::days(1);
    time.format(&time::format_description::well_known::Rfc3339)
        .expect("formattable time")
}

#[test]
fn leaf_outlives_its_ca() {
    let case = Case::new("leaf-outlives-its-ca");
    reissue_admin(&case.tree).ext(CLIENT).days(5000).write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("validity-outside-issuer", "pki/admin.crt");
}

#[test]
fn issuer_without_ca_flag() {
    let case = Case::new("issuer-without-ca-flag");
    let not_ca =
        "basicConstraints = critical,CA:FALSE\nkeyUsage = critical,keyCertSign,digitalSignature\n";
    case.tree
        .cert("pki/sub-ca", "/CN=sub-ca")
        .issuer("pki/ca")
        .ext(not_ca)
        .write();
    leaf(&case.tree, "pki/stray", "/CN=stray", "pki/sub-ca");
    let outcome = case.check(&[]);
    outcome.assert_has_in("ca-not-marked-ca", "pki/sub-ca.crt");
}

#[test]
fn ca_without_key_cert_sign() {
    let case = Case::new("ca-without-key-cert-sign");
    let ca = "basicConstraints = critical,CA:TRUE\nkeyUsage = critical,digitalSignature\n";
    case.tree
        .cert("pki/other-ca", "/CN=other-ca")
        .ext(ca)
        .write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("ca-key-usage-missing", "pki/other-ca.crt");
}

#[test]
fn leaf_marked_as_ca() {
    let case = Case::new("leaf-marked-as-ca");
    let ext = "basicConstraints = critical,CA:TRUE\nkeyUsage = \
        critical,digitalSignature,keyCertSign\nextendedKeyUsage = clientAuth\n";
    reissue_admin(&case.tree).ext(ext).days(365).write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("leaf-is-ca", "pki/admin.crt");
}

#[test]
fn leaf_with_cert_sign_usage() {
    let case = Case::new("leaf-with-cert-sign-usage");
    let ext = "basicConstraints = critical,CA:FALSE\nkeyUsage = \
        critical,digitalSignature,keyCertSign\nextendedKeyUsage = clientAuth\n";
    reissue_admin(&case.tree).ext(ext).days(365).write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("leaf-key-usage", "pki/admin.crt");
}

#[test]
fn apiserver_cert_client_usage_only() {
    let case = Case::new("apiserver-cert-client-usage-only");
    let ext = format!("{CLIENT}{APISERVER_SANS}");
    case.tree
        .cert("pki/apiserver", "/CN=kube-apiserver")
        .issuer("pki/ca")
        .ext(&ext)
        .days(365)
        .write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("eku-server-auth-missing", "pki/apiserver.crt");
}

#[test]
fn admin_cert_server_usage_only() {
    let case = Case::new("admin-cert-server-usage-only");
    reissue_admin(&case.tree).ext(SERVER).days(365).write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("eku-client-auth-missing", "pki/admin.crt");
}

#[test]
fn chain_longer_than_path_length() {
    let case = Case::new("chain-longer-than-path-length");
    let root =
        "basicConstraints = critical,CA:TRUE,pathlen:0\nkeyUsage = critical,keyCertSign,cRLSign\n";
    case.tree
        .cert("pki/limited-root", "/CN=limited-root")
        .ext(root)
        .write();
    case.tree
        .cert("pki/limited-sub", "/CN=limited-sub")
        .issuer("pki/limited-root")
        .ext(CA)
        .write();
    leaf(
        &case.tree,
        "pki/limited-leaf",
        "/CN=limited-leaf",
        "pki/limited-sub",
    );
    let outcome = case.check(&[]);
    outcome.assert_has_in("path-length-exceeded", "pki/limited-leaf.crt");
}

#[test]
fn rsa_key_of_1024_bits() {
    let case = Case::new("rsa-key-of-1024-bits");
    reissue_admin(&case.tree)
        .ext(CLIENT)
        .key(Key::Rsa(1024))
        .days(365)
        .write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("rsa-key-too-small", "pki/admin.crt");
    assert!(
        !outcome.has("key-unreadable"),
        "a 1024-bit key is still read: {}",
        outcome.describe()
    );
    assert!(!outcome.has("key-mismatch"), "{}", outcome.describe());
}

#[test]
fn certificate_signed_with_sha1() {
    let case = Case::new("certificate-signed-with-sha1");
    reissue_admin(&case.tree)
        .ext(CLIENT)
        .digest("sha1")
        .days(365)
        .write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("sha1-signature", "pki/admin.crt");
}

#[test]
fn certificate_without_key_identifiers() {
    let case = Case::new("certificate-without-key-identifiers");
    let ca = format!("{CA}subjectKeyIdentifier = none\nauthorityKeyIdentifier = none\n");
    case.tree
        .cert("pki/bare-ca", "/CN=bare-ca")
        .ext(&ca)
        .write();
    let leaf = format!("{CLIENT}subjectKeyIdentifier = none\nauthorityKeyIdentifier = none\n");
    reissue_admin(&case.tree).ext(&leaf).days(365).write();

    let outcome = case.check(&[]);
    outcome.assert_has_in("skid-missing", "pki/bare-ca.crt");
    outcome.assert_has_in("akid-missing", "pki/admin.crt");
    assert!(
        !outcome.has_in("skid-missing", "pki/admin.crt"),
        "a leaf may omit its subjectKeyIdentifier, as Go does: {}",
        outcome.describe()
    );
    assert!(
        !outcome.has_in("akid-missing", "pki/bare-ca.crt"),
        "a self-signed root needs no authorityKeyIdentifier: {}",
        outcome.describe()
    );
}

#[test]
fn negative_and_zero_serials() {
    let case = Case::new("negative-and-zero-serials");
    reissue_admin(&case.tree)
        .ext(CLIENT)
        .serial("-5")
        .days(365)
        .write();
    case.tree
        .cert("pki/zero", "/CN=zero")
        .issuer("pki/ca")
        .ext(CLIENT)
        .serial("0")
        .days(365)
        .write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("serial-not-positive", "pki/admin.crt");
    outcome.assert_has_in("serial-not-positive", "pki/zero.crt");
    assert!(
        !outcome.has_in("serial-not-positive", "pki/apiserver.crt"),
        "{}",
        outcome.describe()
    );
}

#[test]
fn two_certificates_one_serial() {
    let case = Case::new("two-certificates-one-serial");
    case.tree
        .cert("pki/first", "/CN=first")
        .issuer("pki/ca")
        .ext(CLIENT)
        .serial("4242")
        .days(365)
        .write();
    case.tree
        .cert("pki/second", "/CN=second")
        .issuer("pki/ca")
        .ext(CLIENT)
        .serial("4242")
        .days(365)
        .write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("serial-duplicate", "pki/second.crt");
}

#[test]
fn etcd_host_name_only_in_cn() {
    let case = Case::new("etcd-host-name-only-in-cn");
    case.tree
        .cert("pki/etcd/server", "/CN=etcd-1.example.com")
        .issuer("pki/etcd/ca")
        .ext(SERVER_CLIENT)
        .days(365)
        .write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("host-name-only-in-cn", "pki/etcd/server.crt");
    assert!(
        outcome
            .messages("host-name-only-in-cn")
            .contains("etcd-1.example.com")
    );
    let fixed = Case::new("etcd-host-name-in-san");
    let ext = format!("{SERVER_CLIENT}{ETCD_SANS}");
    fixed
        .tree
        .cert("pki/etcd/server", "/CN=etcd-1.example.com")
        .issuer("pki/etcd/ca")
        .ext(&ext)
        .days(365)
        .write();
    assert!(!fixed.check(&[]).has("host-name-only-in-cn"));
}

#[test]
fn issuer_missing_from_tree() {
    let case = Case::new("issuer-missing-from-tree");
    case.tree.cert("pki/gone-ca", "/CN=gone-ca").write();
    leaf(&case.tree, "pki/orphan", "/CN=orphan", "pki/gone-ca");
    case.tree.remove("pki/gone-ca.crt");
    case.tree.remove("pki/gone-ca.key");
    let outcome = case.check(&[]);
    outcome.assert_has_in("issuer-not-found", "pki/orphan.crt");
}

#[test]
fn leaves_from_earlier_ca_with_same_name() {
    let case = Case::new("leaves-from-earlier-ca");
    case.tree.cert("pki/etcd/ca", "/CN=etcd-ca").write();
    let outcome = case.check(&[]);
    outcome.assert_has_in("issuer-stale", "pki/etcd/server.crt");
    let message = outcome.messages("issuer-stale");
    assert!(
        message.contains("stale certificate or regenerated CA"),
        "{message}"
    );
    assert!(
        message.contains("authorityKeyIdentifier"),
        "the key identifiers explain the mismatch: {message}"
    );
    assert!(!outcome.has("issuer-not-found"), "{}", outcome.describe());

    let shared = Case::new("ca-subject-shared");
    shared.tree.cert("pki/old-ca", "/CN=kubernetes").write();
    let outcome = shared.check(&[]);
    outcome.assert_has("ca-subject-shared");
}

#[test]
fn signer_file_is_a_bundle() {
    let mut case = Case::new("signer-file-is-a-bundle");
    case.tree
        .cert("pki/intermediate-ca", "/CN=intermediate-ca")
        .issuer("pki/ca")
        .write();
    case.tree
        .concat("pki/signer.crt", &["pki/ca.crt", "pki/intermediate-ca.crt"]);
    case.replace(
        "cluster-signing-cert-file = \"/etc/kubernetes/pki/ca.crt\"",
        "cluster-signing-cert-file = \"/etc/kubernetes/pki/signer.crt\"",
    );
    case.replace(
        "cluster-signing-key-file = \"/etc/kubernetes/pki/ca.key\"",
        "cluster-signing-key-file = \"/etc/kubernetes/pki/intermediate-ca.key\"",
    );
    let outcome = case.check(&[]);
    outcome.assert_has_in("signer-not-single-cert", "pki/signer.crt");
    assert!(
        outcome.has_in("key-mismatch", "pki/intermediate-ca.key"),
        "its first certificate is not the key's: {}",
        outcome.describe()
    );
}

#[test]
fn chain_file_root_first() {
    let case = Case::new("chain-file-root-first");
    case.tree
        .cert("pki/sub-ca", "/CN=sub-ca")
        .issuer("pki/ca")
        .write();
    leaf(&case.tree, "pki/chained", "/CN=chained", "pki/sub-ca");
    case.tree.concat(
        "pki/wrong-order.crt",
        &["pki/sub-ca.crt", "pki/chained.crt"],
    );
    case.tree.concat(
        "pki/right-order.crt",
        &["pki/chained.crt", "pki/sub-ca.crt"],
    );
    let outcome = case.check(&[]);
    outcome.assert_has_in("chain-out-of-order", "pki/wrong-order.crt");
    assert!(
        !outcome.has_in("chain-out-of-order", "pki/right-order.crt"),
        "{}",
        outcome.describe()
    );
}

#[test]
fn client_ca_file_starts_with_leaf() {
    let mut case = Case::new("client-ca-file-starts-with-leaf");
    case.tree
        .concat("pki/client-bundle.crt", &["pki/admin.crt", "pki/ca.crt"]);
    case.replace(
        "client-ca-file = \"/etc/kubernetes/pki/ca.crt\"",
        "client-ca-file = \"/etc/kubernetes/pki/client-bundle.crt\"",
    );
    let outcome = case.check(&[]);
    outcome.assert_has_in("trust-file-not-ca", "pki/client-bundle.crt");
}

#[test]
fn kubeconfig_embedded_cert_never_renewed() {
    let case = Case::new("kubeconfig-embedded-never-renewed");
    let tree = &case.tree;
    tree.cert(
        "old/kubelet-client",
        "/O=system:nodes/CN=system:node:worker-1",
    )
    .issuer("pki/ca")
    .ext(CLIENT)
    .days(10)
    .write();
    tree.kubeconfig(
        "kubelet-worker-1.conf",
        "https://192.0.2.10:6443",
        "pki/ca.crt",
        "old/kubelet-client.crt",
        "old/kubelet-client.key",
        true,
    );
    std::fs::remove_dir_all(tree.path("old")).expect("failed to remove the old files");

    let outcome = case.check(&[]);
    let embedded = "kubelet-worker-1.conf: client-certificate-data";
    outcome.assert_has_in("expires-soon", embedded);
    let rows = outcome.report["expiry"].as_array().expect("expiry table");
    assert!(
        rows.iter().any(|r| r["name"] == embedded),
        "the expiry table lists the embedded certificate"
    );
    assert!(
        !outcome.has_in("expires-soon", "pki/kubelet-worker-1-client.crt"),
        "{}",
        outcome.describe()
    );
}
