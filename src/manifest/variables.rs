//! `${NAME}` variables in manifest strings.
//!
//! A value comes from `--set NAME=VALUE`, else the environment, else the manifest's
//! `[vars]` table; `${NAME:-default}` supplies a fallback in place. An unset variable is
//! an error naming it, never an empty string. `$$` writes a literal `$`.

use std::borrow::Cow;
use std::collections::BTreeMap;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

use crate::diag::Diagnostic;

/// Variable values from the command line and the environment.
#[derive(Debug, Clone, Default)]
pub struct Variables {
    set: BTreeMap<String, String>,
    use_environment: bool,
    defaults: BTreeMap<String, String>,
}

impl Variables {
    /// Variables from `--set` pairs, falling back to the process environment.
    pub fn new(set: BTreeMap<String, String>) -> Self {
        Variables {
            set,
            use_environment: true,
            defaults: BTreeMap::new(),
        }
    }

    /// Variables from the given pairs only, ignoring the environment.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Variables {
            set: pairs
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            use_environment: false,
            defaults: BTreeMap::new(),
        }
    }

    /// Returns a copy that falls back to `defaults` (the manifest's `[vars]`).
    pub fn with_defaults(&self, defaults: &BTreeMap<String, String>) -> Self {
        Variables {
            defaults: defaults.clone(),
            ..self.clone()
        }
    }

    fn lookup(&self, name: &str) -> Option<String> {
        if let Some(value) = self.set.get(name) {
            return Some(value.clone());
        }
        if self.use_environment
            && let Ok(value) = std::env::var(name)
        {
            return Some(value);
        }
        self.defaults.get(name).cloned()
    }

    /// Expands every `${NAME}` in `text`; `path` names the field in errors.
    pub fn expand(&self, text: &str, path: &str) -> Result<String, Diagnostic> {
        let mut out = String::with_capacity(text.len());
        let mut rest = text;
        while let Some(start) = rest.find('$') {
            out.push_str(&rest[..start]);
            let after = &rest[start + 1..];
            if let Some(tail) = after.strip_prefix('$') {
                out.push('$');
                rest = tail;
                continue;
            }
            let Some(body) = after.strip_prefix('{') else {
                out.push('$');
                rest = after;
                continue;
            };
            let Some(end) = body.find('}') else {
                return Err(
                    Diagnostic::error(path, format!("unclosed `${{` in {text:?}"))
                        .with_help("close the variable with `}`, or write `$$` for a literal `$`"),
                );
            };
            let (name, default) = match body[..end].split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (&body[..end], None),
            };
            if !is_variable_name(name) {
                return Err(Diagnostic::error(
                    path,
                    format!("invalid variable name `{name}` in {text:?}"),
                )
                .with_help(
                    "variable names use letters, digits and `_`, and start with a letter or `_`",
                ));
            }
            match self.lookup(name).or(default.map(str::to_string)) {
                Some(value) => out.push_str(&value),
                None => {
                    return Err(
                        Diagnostic::error(path, format!("variable `{name}` is not set")).with_help(
                            format!(
                                "pass `--set {name}=VALUE`, export {name} in the environment, \
                             or add it to the [vars] table"
                            ),
                        ),
                    );
                }
            }
            rest = &body[end + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

/// True for characters that change how text displays or parses without being seen:
/// control characters (newlines included), bidirectional overrides and zero-width ones.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fn is_variable_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Expands variables in every string value of a table, in place.
pub(super) fn expand_table(
    table: &mut DeTable<'_>,
    prefix: &str,
    vars: &Variables,
    errors: &mut Vec<Diagnostic>,
) {
    for (key, value) in table.iter_mut() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        expand_value(value, &path, vars, errors);
    }
}

fn expand_value(
    value: &mut Spanned<DeValue<'_>>,
    path: &str,
    vars: &Variables,
    errors: &mut Vec<Diagnostic>,
) {
    let span = value.span();
    match value.get_mut() {
        DeValue::String(text) => match vars.expand(text, path) {
            Ok(expanded) => {
                if let Some(bad) = expanded.chars().find(|c| is_invisible(*c)) {
                    let message = format!(
                        "the value contains the control or invisible character U+{:04X}",
                        bad as u32
                    );
                    let help = "remove it: it would end up inside flag files, kubeconfigs or \
                                certificate subjects";
                    errors.push(
                        Diagnostic::error(path, message)
                            .with_help(help)
                            .with_span(Some(span)),
                    );
                }
                if expanded != *text {
                    *text = Cow::Owned(expanded);
                }
            }
            Err(error) => errors.push(error.with_span(Some(span))),
        },
        DeValue::Array(items) => {
            for (i, item) in items.iter_mut().enumerate() {
                expand_value(item, &format!("{path}[{i}]"), vars, errors);
            }
        }
        DeValue::Table(table) => expand_table(table, path, vars, errors),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expand_replaces_set_variable() {
        let vars = Variables::from_pairs([("IP", "192.0.2.1")]);
        assert_eq!(
            vars.expand("https://${IP}:6443", "x").unwrap(),
            "https://192.0.2.1:6443"
        );
    }

    #[test]
    fn expand_unset_variable_is_error() {
        let vars = Variables::from_pairs([]);
        let error = vars
            .expand("${MASTER_IP}", "cluster.servers[0]")
            .unwrap_err();
        assert!(
            error.message.contains("`MASTER_IP` is not set"),
            "{}",
            error.message
        );
        assert_eq!(error.path, "cluster.servers[0]");
    }

    #[test]
    fn expand_uses_inline_default() {
        let vars = Variables::from_pairs([]);
        assert_eq!(vars.expand("${PORT:-6443}", "x").unwrap(), "6443");
    }

    #[test]
    fn expand_keeps_escaped_dollar() {
        let vars = Variables::from_pairs([]);
        assert_eq!(vars.expand("a$$b", "x").unwrap(), "a$b");
    }

    #[test]
    fn set_value_overrides_manifest_default() {
        let defaults = BTreeMap::from([("IP".to_string(), "192.0.2.9".to_string())]);
        let vars = Variables::from_pairs([("IP", "192.0.2.1")]).with_defaults(&defaults);
        assert_eq!(vars.expand("${IP}", "x").unwrap(), "192.0.2.1");
    }
}
