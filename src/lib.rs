//! pkic compiles a declarative `pki.toml` into the keys, certificates, CA bundles,
//! kubeconfigs and component flag files of a Kubernetes cluster.
//!
//! The modules are the stages of the pipeline, in order: [`manifest`] (TOML to raw
//! types), [`model`] (validated, resolved types), [`graph`] (dependency order),
//! [`issue`] (keys and certificates), [`render`] (kubeconfigs and flag files),
//! [`emit`] (files on disk), [`verify`] (chains and Kubernetes trust rules) and
//! [`golden`] (public outputs and their comparison). [`csr`] writes the CSRs of
//! certificates that a CA without a key in pkic signs, and verifies the certificates
//! that come back. [`check`] proves an existing tree, built by pkic or not, against
//! the same trust rules, and [`adopt`] turns such a tree into a manifest and an output
//! directory that a build keeps as it is.

pub mod adopt;
pub mod check;
pub mod csr;
pub mod diag;
pub mod emit;
pub mod golden;
pub mod graph;
pub mod issue;
pub mod manifest;
pub mod model;
pub mod pipeline;
pub mod progress;
pub mod render;
pub mod rollout;
pub mod state;
pub mod verify;
pub mod x509;

/// How much a run prints: progress and warnings on stderr, the written files on stdout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Progress and warning lines on stderr; stdout is left for results.
#[derive(Debug, Clone, Copy)]
pub struct Reporter {
    pub verbosity: Verbosity,
}

impl Reporter {
    /// Prints a line per artefact, at normal verbosity.
    pub fn progress(&self, line: &str) {
        if self.verbosity >= Verbosity::Normal {
            eprintln!("{line}");
        }
    }

    /// Prints a line only with `-v`.
    pub fn detail(&self, line: &str) {
        if self.verbosity >= Verbosity::Verbose {
            eprintln!("{line}");
        }
    }

    /// Warnings are shown unless `-q`.
    pub fn warn(&self, text: &str) {
        if self.verbosity >= Verbosity::Normal {
            eprintln!("{}", text.trim_end());
        }
    }

    /// Prints a result line on stdout, such as the path of a written file, unless `-q`.
    pub fn result(&self, line: &str) {
        if self.verbosity >= Verbosity::Normal {
            print_out(&format!("{line}\n"));
        }
    }

    /// Prints the closing line of a run, unless `-q`.
    pub fn summary(&self, line: &str) {
        if self.verbosity >= Verbosity::Normal {
            eprintln!("{line}");
        }
    }
}

/// Writes `text` to stdout. A reader that stopped reading (`pkic graph | head`) ends
/// the output quietly; other write errors are reported on stderr.
pub fn print_out(text: &str) {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        eprintln!("pkic: cannot write to stdout: {e}");
    }
}
