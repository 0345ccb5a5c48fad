//! Malformed manifests and unusable output directories: each must fail with an error
//! that names the place (`file:line:column`), the field path, the bad value and the fix,
//! exit with the documented code, and write nothing.

mod pkic_run;

use std::fs;

use pkic_run::{Workspace, assert_contains, assert_lacks, location, location_at, snapshot};

/// A valid manifest that each test breaks in one place.
const BASE: &str = r#"[cluster]
name = "demo"
servers = ["https://192.0.2.10:6443"]
service-cidr = "10.96.0.0/12"

[defaults]
key-algorithm = "ecdsa-p256"

[ca.server-ca]
subject = { cn = "Server CA" }

[cert.apiserver]
issuer = "server-ca"
role = "apiserver"
"#;

/// Returns the base manifest with `old` replaced by `new`.
fn edit(old: &str, new: &str) -> String {
    assert!(BASE.contains(old), "{old:?} is not in the base manifest");
    BASE.replacen(old, new, 1)
}

/// Returns the base manifest with `lines` appended.
fn append(lines: &str) -> String {
    format!("{BASE}{lines}\n")
}

/// Builds `manifest`, asserts that it is rejected as invalid input (exit 2) without
/// writing anything, and returns stderr.
///
/// The build runs twice: into a missing output directory, which must stay missing, and
/// into one that already has files, which must keep their names and bytes.
#[track_caller]
fn reject(manifest: &str) -> String {
    let workspace = Workspace::new(manifest);
    let outcome = workspace.build(&[]);
    assert_eq!(outcome.code, 2, "expected exit 2:\n{}", outcome.stderr);
    assert!(
        !workspace.out().exists(),
        "a rejected build created the output directory"
    );
    assert_eq!(
        outcome.stdout, "",
        "a rejected build listed files on stdout"
    );

    let existing = workspace.path().join("existing");
    fs::create_dir_all(existing.join("pki")).unwrap();
    fs::write(existing.join("keep.txt"), "kept").unwrap();
    fs::write(existing.join("pki/server-ca.crt"), "earlier build").unwrap();
    let before = snapshot(&existing);
    let again = workspace.build_into(&existing, &[]);
    assert_eq!(again.code, 2, "expected exit 2:\n{}", again.stderr);
    assert_eq!(
        snapshot(&existing),
        before,
        "a rejected build changed an existing output directory"
    );
    outcome.stderr
}

#[test]
fn base_manifest_builds() {
    let workspace = Workspace::new(BASE);
    workspace.build_ok();
}

#[test]
fn toml_syntax_error_located() {
    let manifest = edit("[ca.server-ca]", "[ca.server-ca");
    let stderr = reject(&manifest);
    let end_of_header = manifest.find("[ca.server-ca").unwrap() + "[ca.server-ca".len();
    let position = location_at(&manifest, end_of_header);
    assert_contains(&stderr, &format!("{position}: error"));
    assert_contains(&stderr, "invalid TOML");
    assert_contains(&stderr, "expected `]`");
    assert_contains(&stderr, "help: fix the TOML syntax");
}

#[test]
fn unknown_key_suggests_issuer() {
    let manifest = append("isuer = \"server-ca\"");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "isuer =")),
    );
    assert_contains(&stderr, "cert.apiserver.isuer");
    assert_contains(&stderr, "unknown field `isuer`");
    assert_contains(&stderr, "help: did you mean `issuer`?");
}

#[test]
fn unknown_top_level_table_suggests_cert() {
    let manifest = append("[certs.admin]\nissuer = \"server-ca\"\nrole = \"admin\"");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "certs.admin")),
    );
    assert_contains(&stderr, "unknown field `certs`");
    assert_contains(&stderr, "help: did you mean `cert`?");
}

#[test]
fn unknown_issuer_suggests_close_name() {
    let manifest = edit("issuer = \"server-ca\"", "issuer = \"servr-ca\"");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"servr-ca\"")),
    );
    assert_contains(&stderr, "cert.apiserver.issuer");
    assert_contains(&stderr, "issuer `servr-ca`, which is not a declared CA");
    assert_contains(&stderr, "help: did you mean `server-ca`?");
}

#[test]
fn unknown_role_suggests_close_name() {
    let manifest = edit("role = \"apiserver\"", "role = \"api-server\"");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"api-server\"")),
    );
    assert_contains(&stderr, "cert.apiserver.role");
    assert_contains(&stderr, "unknown role `api-server`");
    assert_contains(&stderr, "did you mean `apiserver`?");
    assert_contains(&stderr, "kubelet-serving");
}

#[test]
fn unknown_usage_suggests_close_name() {
    let manifest = append("usage = \"sever\"");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"sever\"")),
    );
    assert_contains(&stderr, "cert.apiserver.usage");
    assert_contains(&stderr, "unknown usage `sever`");
    assert_contains(&stderr, "did you mean `server`?");
    assert_contains(&stderr, "valid values: server, client, both");
}

#[test]
fn unknown_key_algorithm_suggests_close_name() {
    let manifest = edit("\"ecdsa-p256\"", "\"ecdsa-p265\"");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"ecdsa-p265\"")),
    );
    assert_contains(&stderr, "defaults.key-algorithm");
    assert_contains(&stderr, "unknown key algorithm `ecdsa-p265`");
    assert_contains(&stderr, "did you mean `ecdsa-p256`?");
}

#[test]
fn string_where_list_expected_rejected() {
    let manifest = append("sans = \"api.example.com\"");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"api.example.com\"")),
    );
    assert_contains(&stderr, "cert.apiserver.sans");
    assert_contains(&stderr, "string \"api.example.com\", expected a sequence");
    assert_contains(&stderr, "help: write a list in brackets");
}

#[test]
fn integer_where_string_expected_rejected() {
    let manifest = edit("name = \"demo\"", "name = 5");
    let stderr = reject(&manifest);
    assert_contains(&stderr, &format!("{}: error", location(&manifest, "5\n")));
    assert_contains(&stderr, "cluster.name");
    assert_contains(&stderr, "integer `5`, expected a string");
    assert_contains(&stderr, "help: quote the value");
}

#[test]
fn missing_required_key_named() {
    let manifest = edit("issuer = \"server-ca\"\n", "");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "[cert.apiserver]")),
    );
    assert_contains(&stderr, "cert.apiserver: missing field `issuer`");
    assert_contains(&stderr, "help: add `issuer = ...` to [cert.apiserver]");
}

#[test]
fn invalid_ipv4_san_rejected() {
    let manifest = append("sans = [\"192.168.1.300\"]");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"192.168.1.300\"")),
    );
    assert_contains(&stderr, "cert.apiserver.sans[0]");
    assert_contains(&stderr, "invalid IP address `192.168.1.300`");
    assert_contains(&stderr, "help: write an IP address such as `192.0.2.10`");
}

#[test]
fn invalid_ipv6_san_rejected() {
    let manifest = append("sans = [\"fe80::1::2\"]");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"fe80::1::2\"")),
    );
    assert_contains(&stderr, "cert.apiserver.sans[0]");
    assert_contains(&stderr, "invalid IPv6 address `fe80::1::2`");
    assert_contains(&stderr, "help: write an IP address such as `192.0.2.10`");
}

#[test]
fn invalid_dns_san_rejected() {
    let manifest = append("sans = [\"api_server.example.com\"]");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"api_server")),
    );
    assert_contains(&stderr, "cert.apiserver.sans[0]");
    assert_contains(&stderr, "invalid DNS name `api_server.example.com`");
    assert_contains(&stderr, "label `api_server`");
    assert_contains(&stderr, "help:");
}

#[test]
fn invalid_node_addresses_rejected() {
    let manifest = append(
        "[[node]]\nname = \"worker-1\"\nips = [\"192.168.1.300\", \"2001:db8::g\"]\n\
         dns = [\"-worker-1.example.com\"]",
    );
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"192.168.1.300\"")),
    );
    assert_contains(
        &stderr,
        "node[0].ips[0]: invalid IP address `192.168.1.300`",
    );
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"2001:db8::g\"")),
    );
    assert_contains(&stderr, "node[0].ips[1]: invalid IP address `2001:db8::g`");
    assert_contains(&stderr, "help: write an IP address such as `192.0.2.21`");
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"-worker-1")),
    );
    assert_contains(
        &stderr,
        "node[0].dns[0]: invalid DNS name `-worker-1.example.com`",
    );
    assert_contains(&stderr, "help: write the host name that clients dial");
}

#[test]
fn rsa_1024_rejected() {
    let manifest = append("key-algorithm = \"rsa-1024\"");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"rsa-1024\"")),
    );
    assert_contains(&stderr, "cert.apiserver.key-algorithm");
    assert_contains(&stderr, "RSA keys of 1024 bits are too weak");
    assert_contains(&stderr, "rsa-2048");
}

#[test]
fn duplicate_node_name_rejected() {
    let manifest = append(
        "[[node]]\nname = \"worker-1\"\nips = [\"192.0.2.21\"]\n\
         [[node]]\nname = \"worker-1\"\nips = [\"192.0.2.22\"]",
    );
    let stderr = reject(&manifest);
    let second = manifest.rfind("\"worker-1\"").unwrap();
    assert_contains(
        &stderr,
        &format!("{}: error", location_at(&manifest, second)),
    );
    assert_contains(&stderr, "node[1].name: duplicate node name `worker-1`");
    assert_contains(&stderr, "also the name of node[0]");
    assert_contains(&stderr, "help: give each node its own name");
}

#[test]
fn duplicate_output_file_rejected() {
    let manifest = append("cert-file = \"pki/server-ca.crt\"");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"pki/server-ca.crt\"")),
    );
    assert_contains(&stderr, "cert.apiserver.cert-file");
    assert_contains(
        &stderr,
        "output file `pki/server-ca.crt` is also written by `ca.server-ca.cert-file`",
    );
    assert_contains(&stderr, "help: give each object its own file");
}

#[test]
fn output_path_with_parent_component_rejected() {
    let manifest = append("cert-file = \"../x\"\nkey-file = \"pki/../../y\"");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"../x\"")),
    );
    assert_contains(&stderr, "cert.apiserver.cert-file");
    assert_contains(&stderr, "path `../x` would escape the output directory");
    assert_contains(
        &stderr,
        "help: write a path relative to the output directory",
    );
    assert_lacks(&stderr, "is also written by");
}

#[test]
fn absolute_output_path_rejected() {
    let manifest = append("key-file = \"/etc/x\"");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"/etc/x\"")),
    );
    assert_contains(&stderr, "cert.apiserver.key-file");
    assert_contains(&stderr, "path `/etc/x` is absolute");
    assert_contains(
        &stderr,
        "help: write a path relative to the output directory",
    );
}

#[test]
fn unset_variable_named() {
    let manifest = edit("192.0.2.10", "${MASTER_IP}");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"https://${MASTER_IP}")),
    );
    assert_contains(&stderr, "cluster.servers[0]");
    assert_contains(&stderr, "variable `MASTER_IP` is not set");
    assert_contains(&stderr, "help: pass `--set MASTER_IP=VALUE`");
}

#[test]
fn set_option_supplies_variable() {
    let workspace = Workspace::new(&edit("192.0.2.10", "${MASTER_IP}"));
    let outcome = workspace.build(&["--set", "MASTER_IP=192.0.2.10"]);
    assert_eq!(outcome.code, 0, "{}", outcome.stderr);
    assert_contains(&workspace.read("pki/apiserver.crt"), "BEGIN CERTIFICATE");
}

#[test]
fn ca_cycle_reported_as_whole_loop() {
    let manifest = append(
        "[ca.a]\nsubject = { cn = \"A\" }\nissuer = \"b\"\n\
         [ca.b]\nsubject = { cn = \"B\" }\nissuer = \"a\"",
    );
    let stderr = reject(&manifest);
    assert_contains(&stderr, &format!("{}: error", location(&manifest, "\"b\"")));
    assert_contains(&stderr, "ca.a.issuer");
    assert_contains(&stderr, "a -> b -> a");
    assert_contains(&stderr, "help: remove `issuer` from one of them");
}

#[test]
fn leaf_validity_past_issuer_rejected() {
    let manifest = append("validity = \"11y\"");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"11y\"")),
    );
    assert_contains(&stderr, "cert.apiserver.validity");
    assert_contains(
        &stderr,
        "would be valid for 11y, past its issuer `server-ca` (10y)",
    );
    assert_contains(&stderr, "help: shorten `validity` to at most `10y`");
}

#[test]
fn service_range_with_host_bits_rejected() {
    let manifest = edit("10.96.0.0/12", "10.96.0.1/12");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"10.96.0.1/12\"")),
    );
    assert_contains(&stderr, "cluster.service-cidr");
    assert_contains(
        &stderr,
        "`10.96.0.1/12` is not a network address: host bits are set",
    );
    assert_contains(&stderr, "help: did you mean `10.96.0.0/12`?");
}

#[test]
fn pkcs1_on_ecdsa_key_rejected() {
    let manifest = append("key-format = \"pkcs1\"");
    let stderr = reject(&manifest);
    assert_contains(
        &stderr,
        &format!("{}: error", location(&manifest, "\"pkcs1\"")),
    );
    assert_contains(&stderr, "cert.apiserver.key-format");
    assert_contains(
        &stderr,
        "key format `pkcs1` applies to RSA keys only, not ecdsa-p256",
    );
    assert_contains(&stderr, "help: use `pkcs8`");
}

#[test]
fn all_model_errors_reported_in_one_run() {
    let manifest = append("usage = \"both\"\nvalidity = \"11y\"\nsans = [\"192.168.1.300\"]");
    let stderr = reject(&manifest);
    assert_contains(&stderr, "cert.apiserver.validity");
    assert_contains(&stderr, "cert.apiserver.sans[0]");
}

#[test]
fn out_dir_under_regular_file_exits_3() {
    let workspace = Workspace::new(BASE);
    let blocker = workspace.path().join("not-a-dir");
    fs::write(&blocker, "a regular file").unwrap();
    let outcome = workspace.build_into(&blocker.join("out"), &[]);
    assert_eq!(outcome.code, 3, "expected exit 3:\n{}", outcome.stderr);
    assert_contains(&outcome.stderr, "not-a-dir");
    assert_eq!(fs::read_to_string(&blocker).unwrap(), "a regular file");
    let entries: Vec<_> = fs::read_dir(workspace.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        entries.iter().all(|name| !name.contains("staging")),
        "a staging directory was left behind: {entries:?}"
    );
}

#[test]
fn blocked_subdirectory_exits_3_without_staging() {
    let workspace = Workspace::new(BASE);
    let out = workspace.out();
    fs::create_dir_all(&out).unwrap();
    fs::write(out.join("pki"), "a regular file where a directory goes").unwrap();
    let before = snapshot(&out);
    let outcome = workspace.build(&[]);
    assert_eq!(outcome.code, 3, "expected exit 3:\n{}", outcome.stderr);
    assert_contains(&outcome.stderr, "pki");
    let after = snapshot(&out);
    let staging: Vec<_> = after
        .keys()
        .filter(|p| p.to_string_lossy().contains("staging"))
        .collect();
    assert!(staging.is_empty(), "staging left behind: {staging:?}");
    assert_eq!(after, before, "a failed build changed the output directory");
}

#[test]
fn build_output_never_shows_private_keys() {
    let manifest = append(
        "[service-account.sa]\n\
         [cert.admin]\nissuer = \"server-ca\"\nrole = \"admin\"\n\
         [kubeconfig.admin]\nuser = \"admin\"\nca = \"server-ca\"\nembed = true",
    );
    let workspace = Workspace::new(&manifest);
    for flags in [&[][..], &["-v"][..]] {
        let out = workspace.path().join(format!("out{}", flags.len()));
        let outcome = workspace.build_into(&out, flags);
        assert_eq!(outcome.code, 0, "{}", outcome.stderr);
        assert_lacks(&outcome.stdout, "PRIVATE KEY");
        assert_lacks(&outcome.stderr, "PRIVATE KEY");
        assert_contains(
            &fs::read_to_string(out.join("admin.conf")).unwrap(),
            "client-key-data",
        );
    }
}
