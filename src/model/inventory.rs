//! Node inventories: the nodes of a large cluster, kept in a file of their own so the
//! manifest stays short. TOML (`[[node]]` tables), JSON (an array of node objects) and
//! CSV (a header row naming `name`, `ips`, `dns` and `roles`, with several values in a
//! field separated by white space, `;` or a quoted `,`) are read, as UTF-8 with or
//! without a byte-order mark.

use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::Checker;
use crate::diag::{Diagnostic, line_column};
use crate::manifest::RawNode;

mod csv;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TomlInventory {
    node: Vec<Spanned<RawNode>>,
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
    let parsed = match std::fs::read(&path) {
        Ok(bytes) => decode(&bytes, &name).and_then(|text| parse(text, &path, &name)),
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

/// Returns the text of an inventory without its byte-order mark, or an error for UTF-16
/// text or naming the line and column of the first byte that is not UTF-8.
fn decode<'a>(bytes: &'a [u8], file: &str) -> Result<&'a str, Vec<InventoryError>> {
    if bytes.starts_with(&[0xff, 0xfe]) || bytes.starts_with(&[0xfe, 0xff]) {
        return Err(vec![InventoryError {
            message: format!("{file} is UTF-16 text, but inventories are read as UTF-8"),
            help: "save the file as UTF-8, which spreadsheets offer as \"CSV UTF-8\"".into(),
        }]);
    }
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf").unwrap_or(bytes);
    std::str::from_utf8(bytes).map_err(|e| {
        let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).unwrap_or_default();
        let (line, column) = line_column(valid, valid.len());
        vec![InventoryError {
            message: format!(
                "{file}:{line}:{column}: byte 0x{:02x} is not UTF-8",
                bytes[e.valid_up_to()]
            ),
            help: "save the file as UTF-8, which spreadsheets offer as \"CSV UTF-8\"".into(),
        }]
    })
}

fn parse(
    text: &str,
    path: &Path,
    file: &str,
) -> Result<Vec<(String, RawNode)>, Vec<InventoryError>> {
    match extension(path).to_ascii_lowercase().as_str() {
        "csv" => csv::parse(text, file),
        "json" => parse_json(text, file).map_err(|e| vec![e]),
        "toml" => parse_toml(text, file).map_err(|e| vec![e]),
        _ => Err(vec![InventoryError {
            message: format!(
                "unknown inventory format of `{file}`: the file name ends in neither .toml, \
                 .json nor .csv"
            ),
            help: "write a .toml file of [[node]] tables, a .json array of node objects, or \
                   a .csv file with a name,ips,dns,roles header"
                .into(),
        }]),
    }
}

/// Parses a JSON array of node objects. serde_json does not report the position of a
/// value it parsed, so entries are named by their number, such as `nodes.json entry 2`.
fn parse_json(text: &str, file: &str) -> Result<Vec<(String, RawNode)>, InventoryError> {
    let nodes = serde_json::from_str::<Vec<RawNode>>(text).map_err(|e| {
        let position = format!(" at line {} column {}", e.line(), e.column());
        let message = e.to_string();
        let message = message.strip_suffix(&position).unwrap_or(&message);
        InventoryError {
            message: format!("{file}:{}:{}: {message}", e.line(), e.column()),
            help: "write a JSON array of node objects with the keys name, ips, dns and \
                   roles, such as [{\"name\": \"worker-1\", \"ips\": [\"192.0.2.21\"]}]"
                .into(),
        }
    })?;
    let entries = nodes.into_iter().enumerate();
    Ok(entries
        .map(|(i, node)| (format!("{file} entry {}", i + 1), node))
        .collect())
}

/// Parses `[[node]]` tables, each named by the line of its header, such as `nodes.toml:5`.
fn parse_toml(text: &str, file: &str) -> Result<Vec<(String, RawNode)>, InventoryError> {
    let inventory = toml::from_str::<TomlInventory>(text).map_err(|e| {
        let at = match e.span() {
            Some(span) => {
                let (line, column) = line_column(text, span.start);
                format!("{file}:{line}:{column}")
            }
            None => file.to_string(),
        };
        InventoryError {
            message: format!("{at}: {}", e.message().trim()),
            help: "write [[node]] tables with the keys name, ips, dns and roles".into(),
        }
    })?;
    // The tables come in file order, so lines are counted once over the whole text.
    let mut line = 1;
    let mut counted = 0;
    let mut nodes = Vec::with_capacity(inventory.node.len());
    for node in inventory.node {
        let start = node.span().start.max(counted);
        line += text[counted..start].matches('\n').count();
        counted = start;
        nodes.push((format!("{file}:{line}"), node.into_inner()));
    }
    Ok(nodes)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_order_mark_removed() {
        let text = decode(b"\xef\xbb\xbf[{\"name\": \"node-1\"}]", "nodes.json").unwrap();
        assert_eq!(text, "[{\"name\": \"node-1\"}]");
        let nodes = parse(text, Path::new("nodes.json"), "nodes.json").unwrap();
        assert_eq!(nodes[0].1.name, "node-1");
    }

    #[test]
    fn latin1_byte_located() {
        let errors = decode(b"name\nn\xe9ud-1\n", "nodes.csv").unwrap_err();
        assert_eq!(errors[0].message, "nodes.csv:2:2: byte 0xe9 is not UTF-8");
        assert!(errors[0].help.contains("UTF-8"), "{}", errors[0].help);
    }

    #[test]
    fn upper_case_extension_read() {
        let nodes = parse(
            "name,ips\nnode-1,192.0.2.1\n",
            Path::new("NODES.CSV"),
            "NODES.CSV",
        )
        .unwrap_or_else(|_| panic!("NODES.CSV was rejected"));
        assert_eq!(nodes.len(), 1);
    }

    #[test]
    fn unknown_extension_rejected() {
        let errors = parse("", Path::new("nodes.xlsx"), "nodes.xlsx").unwrap_err();
        assert!(
            errors[0]
                .message
                .starts_with("unknown inventory format of `nodes.xlsx`"),
            "{}",
            errors[0].message
        );
    }
}
