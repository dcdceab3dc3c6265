//! Build progress on the terminal: docker's plain lines, JSON lines, or a
//! live display with one line per running step.
//!
//! Progress goes to standard error; only the image id goes to standard
//! output, so `forge build -q .` and `id=$(forge build .)` both work.

#![allow(clippy::print_stderr)]

use std::collections::HashMap;
use std::io::{self, IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

use forge_builder::progress::{Progress, ProgressEvent, StepId};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress display chosen with `--progress`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressMode {
    /// `tty` when standard error is a terminal, `plain` otherwise.
    Auto,
    /// One live line per running step.
    Tty,
    /// Docker's classic lines: `Step 1/3 : FROM scratch`.
    Plain,
    /// One JSON object per event and line.
    Json,
}

/// Creates the display for `mode`; `quiet` shows nothing but warnings.
pub fn display(mode: ProgressMode, quiet: bool) -> Box<dyn Progress> {
    if quiet {
        return Box::new(Quiet);
    }
    match mode {
        ProgressMode::Auto if io::stderr().is_terminal() => Box::new(Live::new()),
        ProgressMode::Tty => Box::new(Live::new()),
        ProgressMode::Auto | ProgressMode::Plain => Box::new(Plain::default()),
        ProgressMode::Json => Box::new(Json::default()),
    }
}

/// Shows only warnings.
struct Quiet;

impl Progress for Quiet {
    fn event(&self, event: ProgressEvent) {
        if let ProgressEvent::Warning { message } = event {
            eprintln!("warning: {message}");
        }
    }
}

/// Returns the first 12 hex characters of a digest, as docker shows ids.
pub fn short_id(digest: &str) -> &str {
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    hex.get(..12).unwrap_or(hex)
}

/// Docker's classic build output.
#[derive(Default)]
struct Plain {
    lock: Mutex<()>,
}

impl Progress for Plain {
    fn event(&self, event: ProgressEvent) {
        let _guard = self.lock.lock();
        let mut err = io::stderr().lock();
        // A closed standard error must not fail the build.
        let _ = match event {
            ProgressEvent::StepStarted { step, text } => {
                writeln!(err, "Step {}/{} : {text}", step.number, step.total)
            }
            ProgressEvent::CacheHit { .. } => writeln!(err, " ---> Using cache"),
            ProgressEvent::CacheMiss {
                reason: Some(reason),
                ..
            } => writeln!(err, " ---> Cache miss: {reason}"),
            ProgressEvent::CacheMiss { reason: None, .. } => Ok(()),
            ProgressEvent::Output { line, .. } => writeln!(err, "{line}"),
            ProgressEvent::StepFinished {
                layer: Some(layer), ..
            } => writeln!(err, " ---> {}", short_id(&layer)),
            ProgressEvent::StepFinished { .. } => Ok(()),
            ProgressEvent::Warning { message } => writeln!(err, "[Warning] {message}"),
        };
    }
}

/// One JSON object per event.
#[derive(Default)]
struct Json {
    lock: Mutex<()>,
}

impl Progress for Json {
    fn event(&self, event: ProgressEvent) {
        let _guard = self.lock.lock();
        if let Ok(line) = serde_json::to_string(&event) {
            let _ = writeln!(io::stderr().lock(), "{line}");
        }
    }
}

/// The live terminal display: a spinner with the elapsed time for each
/// running step, collapsed to one line when the step finishes.
struct Live {
    multi: MultiProgress,
    steps: Mutex<HashMap<usize, (ProgressBar, bool)>>,
}

impl Live {
    fn new() -> Self {
        Live {
            multi: MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            steps: Mutex::new(HashMap::new()),
        }
    }

    fn label(step: &StepId, text: &str) -> String {
        format!("[{} {}/{}] {text}", step.stage, step.number, step.total)
    }
}

impl Progress for Live {
    fn event(&self, event: ProgressEvent) {
        let Ok(mut steps) = self.steps.lock() else {
            return;
        };
        match event {
            ProgressEvent::StepStarted { step, text } => {
                let bar = self.multi.add(ProgressBar::new_spinner());
                let style = ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner());
                bar.set_style(style);
                bar.set_message(Self::label(&step, &text));
                bar.enable_steady_tick(Duration::from_millis(120));
                steps.insert(step.number, (bar, false));
            }
            ProgressEvent::CacheHit { step } => {
                if let Some(entry) = steps.get_mut(&step.number) {
                    entry.1 = true;
                }
            }
            ProgressEvent::CacheMiss {
                step,
                reason: Some(reason),
            } => {
                let _ = self
                    .multi
                    .println(format!("  [{}] cache miss: {reason}", step.number));
            }
            ProgressEvent::CacheMiss { reason: None, .. } => {}
            ProgressEvent::Output { step, line, .. } => {
                let _ = self.multi.println(format!("  #{} {line}", step.number));
            }
            ProgressEvent::StepFinished { step, duration, .. } => {
                if let Some((bar, cached)) = steps.remove(&step.number) {
                    let style = ProgressStyle::with_template("✔ {msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner());
                    let message = bar.message();
                    bar.set_style(style);
                    let suffix = if cached {
                        "CACHED".to_string()
                    } else {
                        format!("{:.1}s", duration.as_secs_f64())
                    };
                    bar.finish_with_message(format!("{message} {suffix}"));
                }
            }
            ProgressEvent::Warning { message } => {
                let _ = self.multi.println(format!("warning: {message}"));
            }
        }
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Ok(mut steps) = self.steps.lock() {
            for (_, (bar, _)) in steps.drain() {
                bar.abandon();
            }
        }
    }
}
