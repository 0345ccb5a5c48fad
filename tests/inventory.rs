//! Node inventories in TOML, JSON and CSV expand the same per-node certificates as
//! `[[node]]` tables, and a bad entry is reported with its file and line.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

const MANIFEST: &str = r#"
node-inventory = "INVENTORY"

[cluster]
name = "inventory"
servers = ["https://192.0.2.10:6443"]

[defaults]
key-algorithm = "ecdsa-p256"

[ca.worker-ca]
subject = { cn = "Worker CA" }

[per-node.cert.kubelet-client]
issuer = "worker-ca"
role = "kubelet-client"

[per-node.cert.kubelet]
issuer = "worker-ca"
role = "kubelet-serving"
"#;

fn build(dir: &Path, inventory: &str, text: &str) -> Output {
    build_with_nodes(dir, inventory, text, "")
}

/// Builds with `nodes` (`[[node]]` tables) appended to the manifest.
fn build_with_nodes(dir: &Path, inventory: &str, text: &str, nodes: &str) -> Output {
    fs::write(dir.join(inventory), text).unwrap();
    let manifest = MANIFEST.replace("INVENTORY", inventory) + nodes;
    fs::write(dir.join("pki.toml"), manifest).unwrap();
    Command::new(env!("CARGO_BIN_EXE_pkic"))
        .args(["build", "-o", "out"])
        .current_dir(dir)
        .output()
        .unwrap()
}

fn assert_three_nodes(dir: &Path, output: &Output) {
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    for node in ["node-1", "node-2", "node-3"] {
        assert!(
            dir.join(format!("out/nodes/{node}/pki/kubelet-client.crt"))
                .exists(),
            "{node}"
        );
        assert!(
            dir.join(format!("out/nodes/{node}/pki/kubelet.crt"))
                .exists(),
            "{node}"
        );
    }
}

#[test]
fn csv_inventory_expands_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ips,dns\nnode-1,192.0.2.1,n1.example.test\nnode-2,192.0.2.2;2001:db8::2,\nnode-3,192.0.2.3,\n";
    let output = build(dir.path(), "nodes.csv", csv);
    assert_three_nodes(dir.path(), &output);
}

#[test]
fn json_inventory_expands_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let json = r#"[{"name": "node-1", "ips": ["192.0.2.1"]},
                   {"name": "node-2", "ips": ["192.0.2.2"]},
                   {"name": "node-3", "ips": ["192.0.2.3"], "dns": ["n3.example.test"]}]"#;
    let output = build(dir.path(), "nodes.json", json);
    assert_three_nodes(dir.path(), &output);
}

#[test]
fn toml_inventory_expands_nodes() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[[node]]\nname = \"node-1\"\nips = [\"192.0.2.1\"]\n\n[[node]]\nname = \"node-2\"\nips = [\"192.0.2.2\"]\n\n[[node]]\nname = \"node-3\"\nips = [\"192.0.2.3\"]\n";
    let output = build(dir.path(), "nodes.toml", toml);
    assert_three_nodes(dir.path(), &output);
}

#[test]
fn bad_csv_entry_names_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ips\nnode-1,192.0.2.1\nnode-2,192.0.2.300\n";

    let output = build(dir.path(), "nodes.csv", csv);

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("pki.toml:2:18: error: node-inventory: nodes.csv:3.ips[0]"),
        "{stderr}"
    );
    assert!(
        stderr.contains("invalid IP address `192.0.2.300`"),
        "{stderr}"
    );
    assert!(!dir.path().join("out").exists());
}

/// Returns the error output of a build that must fail on its input, and checks that the
/// build wrote nothing.
fn rejected(dir: &Path, output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(!dir.join("out").exists(), "{stderr}");
    stderr
}

#[test]
fn spreadsheet_csv_expands_nodes() {
    let cases = [
        (
            "byte-order mark",
            "\u{feff}name,ips\nnode-1,192.0.2.1\nnode-2,192.0.2.2\nnode-3,192.0.2.3\n",
        ),
        (
            "CRLF line ends",
            "name,ips\r\nnode-1,192.0.2.1\r\nnode-2,192.0.2.2\r\nnode-3,192.0.2.3\r\n",
        ),
        (
            "CR line ends",
            "name,ips\rnode-1,192.0.2.1\rnode-2,192.0.2.2\rnode-3,192.0.2.3\r",
        ),
        (
            "quoted fields",
            "\"name\",\"ips\"\n\"node-1\",\"192.0.2.1\"\nnode-2,\"192.0.2.2\"\n\"node-3\",192.0.2.3\n",
        ),
        (
            "quoted comma between values",
            "name,ips\nnode-1,\"192.0.2.1, 2001:db8::1\"\nnode-2,192.0.2.2\nnode-3,192.0.2.3\n",
        ),
        (
            "line break inside a quoted field",
            "name,ips\r\nnode-1,\"192.0.2.1\r\n2001:db8::1\"\r\nnode-2,192.0.2.2\r\nnode-3,192.0.2.3\r\n",
        ),
        (
            "blank lines and empty rows",
            "\nname,ips\n\nnode-1,192.0.2.1\n  \nnode-2,192.0.2.2\n,\nnode-3,192.0.2.3\n\n",
        ),
        (
            "no trailing newline",
            "name,ips\r\nnode-1,192.0.2.1\r\nnode-2,192.0.2.2\r\nnode-3,192.0.2.3",
        ),
        (
            "all at once",
            "\u{feff}\"name\",\"ips\",\"dns\",\"roles\"\r\n\"node-1\",\"192.0.2.1;2001:db8::1\",\"n1.example.test\",\"worker\"\r\n\r\n\"node-2\",\"192.0.2.2\",\"\",\"\"\r\n,,,\r\nnode-3,192.0.2.3,,",
        ),
    ];
    for (case, csv) in cases {
        let dir = tempfile::tempdir().unwrap();
        let output = build(dir.path(), "nodes.csv", csv);
        assert!(
            output.status.success(),
            "{case}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        assert_three_nodes(dir.path(), &output);
    }
}

#[test]
fn csv_doubled_quote_is_one_quote() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ips\n\"node\"\"1\",192.0.2.1\n";

    let stderr = rejected(dir.path(), &build(dir.path(), "nodes.csv", csv));

    assert!(stderr.contains("nodes.csv:2.name"), "{stderr}");
    assert!(stderr.contains("`node\"1`"), "{stderr}");
}

#[test]
fn csv_unterminated_quote_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ips\r\nnode-1,\"192.0.2.1\r\nnode-2,192.0.2.2\r\n";

    let stderr = rejected(dir.path(), &build(dir.path(), "nodes.csv", csv));

    assert!(
        stderr.contains("node-inventory: nodes.csv:2:8: field `ips` opens a quote"),
        "{stderr}"
    );
    assert!(stderr.contains("`\"192.0.2.1`"), "{stderr}");
    assert!(stderr.contains("help: close the quote"), "{stderr}");
}

#[test]
fn csv_text_after_closing_quote_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ips\nnode-1,\"192.0.2.1\"x\n";

    let stderr = rejected(dir.path(), &build(dir.path(), "nodes.csv", csv));

    assert!(
        stderr.contains("nodes.csv:2:19: field `ips` has `x` after its closing quote"),
        "{stderr}"
    );
}

#[test]
fn csv_quote_inside_unquoted_field_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ips\nnode-1,192.0\"2.1\n";

    let stderr = rejected(dir.path(), &build(dir.path(), "nodes.csv", csv));

    assert!(
        stderr.contains("nodes.csv:2:13: field `ips` contains a quote"),
        "{stderr}"
    );
    assert!(stderr.contains("help: enclose the whole field"), "{stderr}");
}

#[test]
fn csv_row_with_extra_field_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ips\nnode-1,192.0.2.1,192.0.2.9\n";

    let stderr = rejected(dir.path(), &build(dir.path(), "nodes.csv", csv));

    assert!(
        stderr.contains("nodes.csv:2:18: the row has 3 fields, but the header on line 1 names 2 columns (name, ips)"),
        "{stderr}"
    );
    assert!(stderr.contains("extra field is `192.0.2.9`"), "{stderr}");
    assert!(stderr.contains("double quotes"), "{stderr}");
}

#[test]
fn csv_row_with_missing_field_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ips,dns\nnode-1,192.0.2.1,\nnode-2,192.0.2.2\n";

    let stderr = rejected(dir.path(), &build(dir.path(), "nodes.csv", csv));

    assert!(
        stderr.contains("nodes.csv:3:17: the row has 2 fields, but the header on line 1 names 3 columns (name, ips, dns)"),
        "{stderr}"
    );
    assert!(stderr.contains("column `dns` is missing"), "{stderr}");
}

#[test]
fn csv_unknown_column_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ip\nnode-1,192.0.2.1\n";

    let stderr = rejected(dir.path(), &build(dir.path(), "nodes.csv", csv));

    assert!(
        stderr.contains("nodes.csv:1:6: unknown column `ip` in the header"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `ips`?"), "{stderr}");
}

#[test]
fn csv_semicolon_separated_header_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name;ips\nnode-1;192.0.2.1\n";

    let stderr = rejected(dir.path(), &build(dir.path(), "nodes.csv", csv));

    assert!(
        stderr.contains("nodes.csv:1:1: unknown column `name;ips` in the header"),
        "{stderr}"
    );
    assert!(stderr.contains("separated by `,`"), "{stderr}");
}

#[test]
fn csv_without_name_column_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "ips,dns\n192.0.2.1,n1.example.test\n";

    let stderr = rejected(dir.path(), &build(dir.path(), "nodes.csv", csv));

    assert!(
        stderr.contains("nodes.csv:1: the header has no `name` column"),
        "{stderr}"
    );
    assert!(stderr.contains("help: add a `name` column"), "{stderr}");
}

#[test]
fn csv_repeated_column_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ips,ips\nnode-1,192.0.2.1,192.0.2.2\n";

    let stderr = rejected(dir.path(), &build(dir.path(), "nodes.csv", csv));

    assert!(
        stderr.contains("nodes.csv:1:10: column `ips` appears twice in the header"),
        "{stderr}"
    );
}

#[test]
fn utf16_inventory_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = vec![0xff, 0xfe];
    for unit in "name,ips\r\nnode-1,192.0.2.1\r\n".encode_utf16() {
        bytes.extend(unit.to_le_bytes());
    }
    fs::write(dir.path().join("nodes.csv"), &bytes).unwrap();
    fs::write(
        dir.path().join("pki.toml"),
        MANIFEST.replace("INVENTORY", "nodes.csv"),
    )
    .unwrap();

    let output = Command::new(env!("CARGO_BIN_EXE_pkic"))
        .args(["build", "-o", "out"])
        .current_dir(dir.path())
        .output()
        .unwrap();

    let stderr = rejected(dir.path(), &output);
    assert!(stderr.contains("nodes.csv is UTF-16 text"), "{stderr}");
    assert!(stderr.contains("UTF-8"), "{stderr}");
}

#[test]
fn toml_entry_error_names_line() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[[node]]\nname = \"node-1\"\nips = [\"192.0.2.1\"]\n\n[[node]]\nname = \"node-2\"\nips = [\"192.0.2.300\"]\n";

    let stderr = rejected(dir.path(), &build(dir.path(), "nodes.toml", toml));

    assert!(stderr.contains("nodes.toml:5.ips[0]"), "{stderr}");
    assert!(
        stderr.contains("invalid IP address `192.0.2.300`"),
        "{stderr}"
    );
}

#[test]
fn toml_syntax_error_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let toml = "[[node]]\nname = \"node-1\"\nip = [\"192.0.2.1\"]\n";

    let stderr = rejected(dir.path(), &build(dir.path(), "nodes.toml", toml));

    assert!(
        stderr.contains("nodes.toml:3:1: unknown field `ip`"),
        "{stderr}"
    );
    assert!(!stderr.contains("TOML parse error"), "{stderr}");
}

#[test]
fn json_syntax_error_names_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let json = "[{\"name\": \"node-1\",\n  \"ips\": [\"192.0.2.1\"],}]";

    let stderr = rejected(dir.path(), &build(dir.path(), "nodes.json", json));

    assert!(
        stderr.contains("nodes.json:2:24: trailing comma"),
        "{stderr}"
    );
    assert!(!stderr.contains("at line 2 column 24"), "{stderr}");
}

#[test]
fn duplicate_node_within_inventory_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ips\nnode-1,192.0.2.1\nnode-1,192.0.2.2\n";

    let stderr = rejected(dir.path(), &build(dir.path(), "nodes.csv", csv));

    assert!(
        stderr.contains(
            "nodes.csv:3.name: duplicate node name `node-1`: it is also the name of nodes.csv:2"
        ),
        "{stderr}"
    );
}

#[test]
fn duplicate_node_across_manifest_and_inventory_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ips\nnode-2,192.0.2.2\nnode-1,192.0.2.1\n";
    let nodes = "\n[[node]]\nname = \"node-1\"\nips = [\"192.0.2.11\"]\n";

    let output = build_with_nodes(dir.path(), "nodes.csv", csv, nodes);

    let stderr = rejected(dir.path(), &output);
    assert!(
        stderr.contains(
            "pki.toml:23:8: error: node[0].name: duplicate node name `node-1`: it is also the name of nodes.csv:3"
        ),
        "{stderr}"
    );
    assert!(!stderr.contains("share one node identity"), "{stderr}");
}

#[test]
fn duplicate_ip_within_inventory_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ips\nnode-1,192.0.2.1\nnode-2,2001:db8::2\nnode-3,192.0.2.3 2001:DB8:0::2\n";

    let stderr = rejected(dir.path(), &build(dir.path(), "nodes.csv", csv));

    assert!(
        stderr.contains(
            "nodes.csv:4.ips[1]: IP address `2001:DB8:0::2` of node `node-3` is also an address of node `node-2` (nodes.csv:3)"
        ),
        "{stderr}"
    );
    assert!(stderr.contains("help: give each node its own"), "{stderr}");
}

#[test]
fn duplicate_ip_across_manifest_and_inventory_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ips\nnode-1,192.0.2.1\nnode-2,::ffff:192.0.2.11\n";
    let nodes = "\n[[node]]\nname = \"node-0\"\nips = [\"192.0.2.11\"]\n";

    let output = build_with_nodes(dir.path(), "nodes.csv", csv, nodes);

    let stderr = rejected(dir.path(), &output);
    assert!(
        stderr.contains(
            "pki.toml:24:8: error: node[0].ips[0]: IP address `192.0.2.11` of node `node-0` is also an address of node `node-2` (nodes.csv:3)"
        ),
        "{stderr}"
    );
}

#[test]
fn shared_loopback_ip_accepted() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ips\nnode-1,127.0.0.1 ::1\nnode-2,127.0.0.1 ::1\nnode-3,::ffff:127.0.0.1\n";
    let output = build(dir.path(), "nodes.csv", csv);
    assert_three_nodes(dir.path(), &output);
}

#[test]
fn node_name_must_be_dns_subdomain() {
    for name in ["Node-1", "node_1", "-node-1", "node-1.", "node..1"] {
        let dir = tempfile::tempdir().unwrap();
        let csv = format!("name,ips\n{name},192.0.2.1\n");

        let stderr = rejected(dir.path(), &build(dir.path(), "nodes.csv", &csv));

        assert!(
            stderr.contains(&format!("nodes.csv:2.name: invalid node name `{name}`")),
            "{name}: {stderr}"
        );
        assert!(
            stderr.contains("a Kubernetes node name must be a DNS-1123 subdomain"),
            "{name}: {stderr}"
        );
        assert!(stderr.contains("such as `worker-1`"), "{name}: {stderr}");
    }
}
