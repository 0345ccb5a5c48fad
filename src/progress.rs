//! Progress bar on stderr for the long phases of a large `pkic build`.
//!
//! The bar is drawn only when stderr is a terminal, the run is not `-q` and the build
//! is larger than [`BAR_THRESHOLD`]; otherwise every phase gets a hidden bar, so
//! stderr carries exactly the lines it carries without this module. Messages are
//! fixed phase names, never a key, a certificate or a file's contents.

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use crate::Verbosity;
use crate::model::Model;

/// Number of objects above which a build shows the bar. Smaller builds, such as both
/// shipped examples (about 30 objects each), finish in a few seconds and print one
/// `[issue]` line per key already, so a bar there would only flicker.
pub const BAR_THRESHOLD: usize = 200;

/// Returns whether a run shows the bar.
pub fn shows_bar(verbosity: Verbosity, stderr_is_terminal: bool, objects: usize) -> bool {
    verbosity != Verbosity::Quiet && stderr_is_terminal && objects > BAR_THRESHOLD
}

/// Counts the keys, certificates and rendered files that a build of `model` makes.
pub fn object_count(model: &Model) -> usize {
    model.cas.len()
        + model.certs.len()
        + model.service_accounts.len()
        + model.bundles.len()
        + model.kubeconfigs.len()
        + model.flag_files.len()
}

/// Progress display of one run: visible bars for its phases, or hidden bars when the
/// run shows none.
#[derive(Debug, Clone, Copy)]
pub struct Progress {
    enabled: bool,
}

impl Progress {
    /// Decides for a run of `model` at `verbosity`, looking at whether stderr is a
    /// terminal.
    pub fn for_build(model: &Model, verbosity: Verbosity) -> Progress {
        Progress {
            enabled: shows_bar(
                verbosity,
                std::io::stderr().is_terminal(),
                object_count(model),
            ),
        }
    }

    /// Shows no bar at all.
    pub fn hidden() -> Progress {
        Progress { enabled: false }
    }

    /// Starts a bar that counts to `len`. [`ProgressBar::inc`] is an atomic add that
    /// redraws at most 20 times a second (indicatif 0.18's stderr target), so rayon workers can call it per item.
    pub fn counted(&self, phase: &'static str, len: u64) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template(
            "{msg:>10} [{bar:40}] {pos}/{len} ({elapsed}, about {eta} left)",
        )
        .expect("the template is valid")
        .progress_chars("=> ");
        ProgressBar::new(len).with_style(style).with_message(phase)
    }

    /// Starts a spinner with the elapsed time, for a phase that does not count its
    /// items.
    pub fn spinner(&self, phase: &'static str) -> ProgressBar {
        if !self.enabled {
            return ProgressBar::hidden();
        }
        let style = ProgressStyle::with_template("{spinner} {msg} ({elapsed})")
            .expect("the template is valid");
        let bar = ProgressBar::new_spinner()
            .with_style(style)
            .with_message(phase);
        // The first draw happens now, not at the first tick of the background thread,
        // so that a phase shorter than a tick is shown too.
        bar.tick();
        bar.enable_steady_tick(Duration::from_millis(100));
        bar
    }
}

/// Wall time of each stage of one run, for the `[time]` line that `-v` prints.
#[derive(Debug)]
pub struct Stopwatch {
    start: Instant,
    last: Instant,
    stages: Vec<(&'static str, Duration)>,
}

impl Stopwatch {
    pub fn start() -> Stopwatch {
        let now = Instant::now();
        Stopwatch {
            start: now,
            last: now,
            stages: Vec::new(),
        }
    }

    /// Records the time since the previous lap, or since the start, as `stage`.
    pub fn lap(&mut self, stage: &'static str) {
        let now = Instant::now();
        self.stages.push((stage, now - self.last));
        self.last = now;
    }

    /// Returns a line such as `[time] load 0.015 s, decide 0.004 s; total 0.019 s`.
    pub fn line(&self) -> String {
        let stages: Vec<String> = self
            .stages
            .iter()
            .map(|(stage, took)| format!("{stage} {:.3} s", took.as_secs_f64()))
            .collect();
        format!(
            "[time] {}; total {:.3} s",
            stages.join(", "),
            (self.last - self.start).as_secs_f64()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_shown_above_threshold() {
        assert!(shows_bar(Verbosity::Normal, true, BAR_THRESHOLD + 1));
        assert!(shows_bar(Verbosity::Verbose, true, BAR_THRESHOLD + 1));
    }

    #[test]
    fn bar_hidden_at_or_below_threshold() {
        assert!(!shows_bar(Verbosity::Normal, true, BAR_THRESHOLD));
        assert!(!shows_bar(Verbosity::Normal, true, 0));
    }

    #[test]
    fn bar_hidden_when_quiet() {
        assert!(!shows_bar(Verbosity::Quiet, true, 10_000));
    }

    #[test]
    fn bar_hidden_off_terminal() {
        assert!(!shows_bar(Verbosity::Normal, false, 10_000));
        assert!(!shows_bar(Verbosity::Verbose, false, 10_000));
    }

    #[test]
    fn hidden_progress_draws_nothing() {
        let bar = Progress::hidden().counted("issuing", 10);
        bar.inc(1);
        assert!(bar.is_hidden());
        assert!(Progress::hidden().spinner("writing").is_hidden());
    }
}
