//! Node inventories: the nodes of a large cluster, kept in a file of their own so the
//! manifest stays short. TOML (`[[node]]` tables), JSON (an array of node objects) and
//! CSV (a header row naming `name`, `ips`, `dns` and `roles`, with several values in a
//! field separated by spaces or `;`) are read.

use std::path::Path;

use serde::Deserialize;

use super::Checker;
use crate::diag::Diagnostic;
use crate::manifest::RawNode;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlInventory {
    node: Vec<RawNode>,
}

/// Reads the inventory that `node-inventory` names, as (field path, node) pairs whose
/// paths name the file and the entry, such as `nodes.csv:12`.
pub(super) fn load(checker: &mut Checker) -> Vec<(String, RawNode)> {
    let Some(name) = checker.raw.node_inventory.clone() else {
        return Vec::new();
    };
    let path = checker.manifest_dir.join(&name);
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(e) => {
            checker
                .error(
                    "node-inventory",
                    format!("cannot read {}: {e}", path.display()),
                )
                .help = Some("give the path relative to the manifest's directory".into());
            return Vec::new();
        }
    };
    let parsed = match extension(&path) {
        "csv" => parse_csv(&text, &name),
        "json" => serde_json::from_str::<Vec<RawNode>>(&text)
            .map(|nodes| numbered(nodes, &name, "entry"))
            .map_err(|e| format!("{name}:{}:{}: {e}", e.line(), e.column())),
        "toml" => toml::from_str::<TomlInventory>(&text)
            .map(|inventory| numbered(inventory.node, &name, "node"))
            .map_err(|e| format!("{name}: {}", e.to_string().trim())),
        other => Err(format!("unknown inventory format `.{other}`")),
    };
    match parsed {
        Ok(nodes) => nodes,
        Err(message) => {
            checker.error("node-inventory", message).help = Some(
                "write a .toml file of [[node]] tables, a .json array of node objects, or a \
                 .csv file with a name,ips,dns,roles header"
                    .into(),
            );
            Vec::new()
        }
    }
}

/// Moves diagnostics about inventory entries (paths such as `nodes.csv:12.ips[0]`) to
/// the manifest's `node-inventory` field, with the entry named in the message.
pub(super) fn relocate(diagnostics: &mut [Diagnostic]) {
    for diagnostic in diagnostics {
        if diagnostic.path.starts_with("node[") || diagnostic.path == "node-inventory" {
            continue;
        }
        diagnostic.message = format!("{}: {}", diagnostic.path, diagnostic.message);
        diagnostic.path = "node-inventory".into();
    }
}

fn extension(path: &Path) -> &str {
    path.extension().and_then(|e| e.to_str()).unwrap_or("")
}

fn numbered(nodes: Vec<RawNode>, file: &str, kind: &str) -> Vec<(String, RawNode)> {
    nodes
        .into_iter()
        .enumerate()
        .map(|(i, node)| (format!("{file} {kind} {}", i + 1), node))
        .collect()
}

fn parse_csv(text: &str, file: &str) -> Result<Vec<(String, RawNode)>, String> {
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, line)| !line.trim().is_empty() && !line.trim_start().starts_with('#'));
    let Some((header_line, header)) = lines.next() else {
        return Ok(Vec::new());
    };
    let columns: Vec<String> = header.split(',').map(|c| c.trim().to_lowercase()).collect();
    for column in &columns {
        if !["name", "ips", "dns", "roles"].contains(&column.as_str()) {
            return Err(format!(
                "{file}:{}: unknown column `{column}`; the columns are name, ips, dns and roles",
                header_line + 1
            ));
        }
    }
    if !columns.iter().any(|c| c == "name") {
        return Err(format!(
            "{file}:{}: the header has no `name` column",
            header_line + 1
        ));
    }
    let mut nodes = Vec::new();
    for (index, line) in lines {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != columns.len() {
            return Err(format!(
                "{file}:{}: {} fields, but the header names {} columns",
                index + 1,
                fields.len(),
                columns.len()
            ));
        }
        let mut node = RawNode {
            name: String::new(),
            ips: Vec::new(),
            dns: Vec::new(),
            roles: None,
        };
        for (column, value) in columns.iter().zip(fields) {
            let values: Vec<String> = value
                .split([' ', ';'])
                .filter(|v| !v.is_empty())
                .map(str::to_string)
                .collect();
            match column.as_str() {
                "name" => node.name = value.to_string(),
                "ips" => node.ips = values,
                "dns" => node.dns = values,
                _ => node.roles = (!values.is_empty()).then_some(values),
            }
        }
        nodes.push((format!("{file}:{}", index + 1), node));
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_with_several_values() {
        let text = "name,ips,dns,roles\n# comment\nnode-1,192.0.2.1;2001:db8::1,n1.example.test,worker etcd\n";
        let nodes = parse_csv(text, "nodes.csv").unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!(nodes[0].0, "nodes.csv:3");
        assert_eq!(nodes[0].1.ips, vec!["192.0.2.1", "2001:db8::1"]);
        assert_eq!(
            nodes[0].1.roles,
            Some(vec!["worker".to_string(), "etcd".to_string()])
        );
    }

    #[test]
    fn csv_wrong_field_count_names_line() {
        let error = parse_csv("name,ips\nnode-1\n", "nodes.csv").unwrap_err();
        assert!(error.starts_with("nodes.csv:2:"), "{error}");
    }

    #[test]
    fn csv_unknown_column_rejected() {
        let error = parse_csv("name,ip\n", "nodes.csv").unwrap_err();
        assert!(error.contains("unknown column `ip`"), "{error}");
    }
}
