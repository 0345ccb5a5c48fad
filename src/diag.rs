//! Diagnostics: errors and warnings about a manifest, located by file, line, column and
//! field path, and rendered with the offending source line and a caret.
//!
//! Every stage before issuance reports through [`Diagnostic`] so that the user sees all
//! problems of one manifest in one run.

use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// Severity of a diagnostic: an error stops the build, a warning does not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Severity {
    Error,
    Warning,
}

/// One problem found in a manifest.
#[derive(Debug, Clone)]
pub struct Diagnostic {
    pub severity: Severity,
    /// Dotted field path such as `cert.apiserver.sans[2]`, empty for the whole document.
    pub path: String,
    pub message: String,
    /// How to fix the problem, when one is known.
    pub help: Option<String>,
    /// Byte range of the offending value in the manifest text.
    pub span: Option<Range<usize>>,
}

impl Diagnostic {
    pub fn error(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Error,
            path: path.into(),
            message: message.into(),
            help: None,
            span: None,
        }
    }

    pub fn warning(path: impl Into<String>, message: impl Into<String>) -> Self {
        Diagnostic {
            severity: Severity::Warning,
            ..Diagnostic::error(path, message)
        }
    }

    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn with_span(mut self, span: Option<Range<usize>>) -> Self {
        if self.span.is_none() {
            self.span = span;
        }
        self
    }
}

/// The manifest text and its file name, used to turn byte spans into line and column.
#[derive(Debug, Clone)]
pub struct Source {
    pub file: PathBuf,
    pub text: String,
}

impl Source {
    pub fn new(file: &Path, text: String) -> Self {
        Source {
            file: file.to_path_buf(),
            text,
        }
    }

    /// Returns the 1-based line and column of a byte offset.
    pub fn line_column(&self, offset: usize) -> (usize, usize) {
        line_column(&self.text, offset)
    }

    fn line_text(&self, line: usize) -> &str {
        self.text.lines().nth(line - 1).unwrap_or("")
    }
}

/// Returns the 1-based line and column (in characters) of a byte offset in `text`.
pub fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = text[line_start..offset].chars().count() + 1;
    (line, column)
}

/// A diagnostic bound to its source, ready for display.
pub struct Located<'a> {
    pub diagnostic: &'a Diagnostic,
    pub source: &'a Source,
}

impl fmt::Display for Located<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.diagnostic;
        let label = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
        };
        let file = self.source.file.display();
        let position = d
            .span
            .as_ref()
            .map(|span| self.source.line_column(span.start));
        match position {
            Some((line, column)) => write!(f, "{file}:{line}:{column}: {label}")?,
            None => write!(f, "{file}: {label}")?,
        }
        if d.path.is_empty() {
            writeln!(f, ": {}", d.message)?;
        } else {
            writeln!(f, ": {}: {}", d.path, d.message)?;
        }
        if let (Some((line, column)), Some(span)) = (position, &d.span) {
            let text = self.source.line_text(line);
            let width = self.source.text[span.clone()]
                .lines()
                .next()
                .map_or(1, |s| s.chars().count().max(1));
            let width = width.min(text.chars().count().saturating_sub(column - 1).max(1));
            writeln!(f, "{line:>5} | {text}")?;
            writeln!(f, "      | {}{}", " ".repeat(column - 1), "^".repeat(width))?;
        }
        if let Some(help) = &d.help {
            writeln!(f, "  help: {help}")?;
        }
        Ok(())
    }
}

/// Returns the candidate closest to `word`, if it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(distance, c)| *distance <= 2.max(c.len() / 3) && *distance < c.len().max(1))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, c)| c)
}
