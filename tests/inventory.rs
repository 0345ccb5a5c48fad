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
    fs::write(dir.join(inventory), text).unwrap();
    fs::write(
        dir.join("pki.toml"),
        MANIFEST.replace("INVENTORY", inventory),
    )
    .unwrap();
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

#[test]
fn duplicate_node_across_manifest_and_inventory_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let csv = "name,ips\nnode-1,192.0.2.1\nnode-1,192.0.2.2\n";

    let output = build(dir.path(), "nodes.csv", csv);

    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("duplicate node name `node-1`: it is also the name of nodes.csv:2"),
        "{stderr}"
    );
}
