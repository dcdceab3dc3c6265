//! The error type of a build: planning, one step, or the store.

use std::path::PathBuf;

use forge_cache::layer::LayerError;
use forge_cache::store::StoreError;
use forge_parser::ParseError;

/// The reason a build failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The Dockerfile cannot be parsed.
    #[error(transparent)]
    Parse(#[from] ParseError),

    /// The build cannot be planned: an unknown target or stage, a base
    /// image that is not in the store, or an invalid option.
    #[error("{message}")]
    Plan {
        /// The problem, naming the value.
        message: String,
    },

    /// One instruction failed.
    #[error("{file}:{line}: {instruction}: {message}")]
    Step {
        /// Dockerfile name for messages.
        file: String,
        /// First line of the instruction.
        line: usize,
        /// The instruction as written.
        instruction: String,
        /// The failure, naming the value, with the fix when there is one.
        message: String,
        /// The underlying error, when there is one.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync>>,
    },

    /// The store failed while `action` ran.
    #[error("failed to {action}")]
    Store {
        /// The operation, such as "record the step cache entry".
        action: String,
        /// The store error.
        #[source]
        source: StoreError,
    },

    /// Writing a layer failed.
    #[error("failed to write the layer of `{instruction}`")]
    Layer {
        /// The instruction whose layer failed.
        instruction: String,
        /// The layer error.
        #[source]
        source: LayerError,
    },

    /// A file-system operation outside the store failed.
    #[error("failed to {action} `{path}`")]
    Io {
        /// The operation, such as "create the directory".
        action: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl BuildError {
    /// Creates a planning error.
    pub(crate) fn plan(message: impl Into<String>) -> Self {
        BuildError::Plan {
            message: message.into(),
        }
    }

    /// Wraps a store error with the operation that failed.
    pub(crate) fn store(action: impl Into<String>) -> impl FnOnce(StoreError) -> BuildError {
        let action = action.into();
        move |source| BuildError::Store { action, source }
    }
}

/// Result of build operations.
pub type Result<T, E = BuildError> = std::result::Result<T, E>;
