//! The error type of kiln-nn (and of the crates built on it).

use std::path::PathBuf;

/// Result with kiln-nn's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while building, running or training a network.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A tensor operation failed inside candle (shape mismatch, dtype, ...).
    #[error("tensor error: {0}")]
    Candle(#[from] candle_core::Error),
    /// A kiln-core error: an invalid hyperparameter, bad data, a model-folder problem.
    #[error(transparent)]
    Core(#[from] kiln_core::Error),
    /// Shapes do not agree; the message says what was expected and what arrived.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// A checkpoint or state file is missing something or holds the wrong thing.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The file involved.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An I/O error with the path involved.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
}

impl Error {
    /// Shorthand for an invalid hyperparameter (kiln-core's [`kiln_core::Error::param`]).
    pub fn param(name: &str, value: impl std::fmt::Display, expected: &str) -> Self {
        Error::Core(kiln_core::Error::param(name, value, expected))
    }

    /// Shorthand for [`Error::Shape`].
    pub fn shape(message: impl Into<String>) -> Self {
        Error::Shape(message.into())
    }
}
