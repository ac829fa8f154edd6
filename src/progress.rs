//! Progress for people at a terminal: a spinner naming the current stage,
//! a bar for backfills. Hidden when stderr is not a terminal, under CI, or
//! with `--quiet`, so nightly logs stay clean.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Whether progress may be drawn at all.
pub fn wanted(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal() && std::env::var_os("CI").is_none()
}

/// A spinner that names the running stage.
pub struct Stages(ProgressBar);

impl Stages {
    pub fn new(show: bool) -> Stages {
        if !show {
            return Stages(ProgressBar::hidden());
        }
        let pb = ProgressBar::new_spinner();
        pb.enable_steady_tick(Duration::from_millis(120));
        Stages(pb)
    }

    pub fn stage(&self, name: &str) {
        self.0.set_message(name.to_string());
    }

    pub fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// A bar over `n` items.
pub fn bar(show: bool, n: u64, what: &str) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let pb = ProgressBar::new(n);
    if let Ok(style) = ProgressStyle::with_template("{bar:30} {pos}/{len} {msg} ({elapsed})") {
        pb.set_style(style);
    }
    pb.set_message(what.to_string());
    pb
}
