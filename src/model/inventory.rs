//! Node inventories: the nodes of a large cluster, kept in a file of their own so the
//! manifest stays short. TOML (`[[node]]` tables), JSON (an array of node objects) and
//! CSV (a header row naming `name`, `ips`, `dns` and `roles`, with several values in a
//! field separated by white space, `;` or a quoted `,`) are read, as UTF-8 with or
//! without a byte-order mark.

use std::path::Path;

use serde::Deserialize;

use super::Checker;
use crate::diag::Diagnostic;
use crate::manifest::RawNode;

mod csv;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlInventory {
    node: Vec<RawNode>,
}

/// A problem with the inventory file as a whole or with its syntax, whose message names
/// the file and, where known, the line and column.
#[derive(Debug)]
struct InventoryError {
    message: String,
    help: String,
}

/// Reads the inventory that `node-inventory` names, as (field path, node) pairs whose
/// paths name the file and the entry, such as `nodes.csv:12`.
pub(super) fn load(checker: &mut Checker) -> Vec<(String, RawNode)> {
    let Some(name) = checker.raw.node_inventory.clone() else {
        return Vec::new();
    };
    let path = checker.manifest_dir.join(&name);
    let parsed = match std::fs::read_to_string(&path) {
        Ok(text) => parse(text.trim_start_matches('\u{feff}'), &path, &name),
        Err(e) => Err(vec![InventoryError {
            message: format!("cannot read {}: {e}", path.display()),
            help: "give the path relative to the manifest's directory".into(),
        }]),
    };
    match parsed {
        Ok(nodes) => nodes,
        Err(errors) => {
            for error in errors {
                checker.error("node-inventory", error.message).help = Some(error.help);
            }
            Vec::new()
        }
    }
}

fn parse(
    text: &str,
    path: &Path,
    file: &str,
) -> Result<Vec<(String, RawNode)>, Vec<InventoryError>> {
    let format_help = "write a .toml file of [[node]] tables, a .json array of node objects, \
                       or a .csv file with a name,ips,dns,roles header";
    let error = |message: String| {
        vec![InventoryError {
            message,
            help: format_help.into(),
        }]
    };
    match extension(path) {
        "csv" => csv::parse(text, file),
        "json" => serde_json::from_str::<Vec<RawNode>>(text)
            .map(|nodes| numbered(nodes, file, "entry"))
            .map_err(|e| error(format!("{file}:{}:{}: {e}", e.line(), e.column()))),
        "toml" => toml::from_str::<TomlInventory>(text)
            .map(|inventory| numbered(inventory.node, file, "node"))
            .map_err(|e| error(format!("{file}: {}", e.to_string().trim()))),
        other => Err(error(format!("unknown inventory format `.{other}`"))),
    }
}

fn numbered(nodes: Vec<RawNode>, file: &str, kind: &str) -> Vec<(String, RawNode)> {
    nodes
        .into_iter()
        .enumerate()
        .map(|(i, node)| (format!("{file} {kind} {}", i + 1), node))
        .collect()
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
