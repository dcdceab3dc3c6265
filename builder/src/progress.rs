//! Build progress as events: the library reports, the caller displays.
//!
//! The builder never prints. It sends [`ProgressEvent`]s to a [`Progress`]
//! implementation, which the `forge` command turns into docker-style
//! lines, JSON lines or a live terminal display.

use std::time::Duration;

use serde::Serialize;

/// Identifies one step of a build: its number across the whole build (from
/// 1, in plan order) and the stage it belongs to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepId {
    /// Step number across the build, from 1.
    pub number: usize,
    /// Number of steps in the build, counting each stage's `FROM`.
    pub total: usize,
    /// Stage name, or its index when it has no name.
    pub stage: String,
}

/// The stream a line of step output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// Standard output of the RUN command.
    Stdout,
    /// Standard error of the RUN command.
    Stderr,
}

/// One thing that happened during a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ProgressEvent {
    /// A step started; `text` is the instruction after variable expansion.
    StepStarted {
        /// The step.
        step: StepId,
        /// The instruction, such as `COPY app /app`.
        text: String,
    },
    /// The step's result came from the build cache.
    CacheHit {
        /// The step.
        step: StepId,
    },
    /// The step was not in the build cache and runs now.
    CacheMiss {
        /// The step.
        step: StepId,
        /// The input that changed since the previous build of the same
        /// Dockerfile, when it is known.
        reason: Option<String>,
    },
    /// One line a RUN command wrote, without its line end.
    Output {
        /// The step.
        step: StepId,
        /// The stream the line came from.
        stream: Stream,
        /// The line, with invalid UTF-8 replaced.
        line: String,
    },
    /// A step finished.
    StepFinished {
        /// The step.
        step: StepId,
        /// Digest of the layer the step produced, if any.
        layer: Option<String>,
        /// Wall time of the step.
        #[serde(serialize_with = "serialize_duration")]
        duration: Duration,
    },
    /// Something accepted but probably not meant.
    Warning {
        /// The message, naming the value.
        message: String,
    },
}

fn serialize_duration<S: serde::Serializer>(
    duration: &Duration,
    serializer: S,
) -> Result<S::Ok, S::Error> {
    serializer.serialize_f64(duration.as_secs_f64())
}

/// Receives the events of a build. Events of independent stages may come
/// from several threads at once.
pub trait Progress: Send + Sync {
    /// Handles one event.
    fn event(&self, event: ProgressEvent);
}

/// A [`Progress`] that drops every event.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn event(&self, _event: ProgressEvent) {}
}

/// A [`Progress`] that keeps every event, for tests.
#[derive(Debug, Default)]
pub struct RecordingProgress {
    events: std::sync::Mutex<Vec<ProgressEvent>>,
}

impl RecordingProgress {
    /// Returns a copy of the events received so far.
    pub fn events(&self) -> Vec<ProgressEvent> {
        match self.events.lock() {
            Ok(events) => events.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }
}

impl Progress for RecordingProgress {
    fn event(&self, event: ProgressEvent) {
        match self.events.lock() {
            Ok(mut events) => events.push(event),
            Err(poisoned) => poisoned.into_inner().push(event),
        }
    }
}
