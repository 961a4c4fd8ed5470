//! The error type shared by kiln's numerical crates.

use std::path::PathBuf;

/// Result with kiln-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in kiln-core, each variant saying what was expected and what
/// arrived.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A hyperparameter is outside its allowed range.
    #[error("invalid parameter {name} = {value}: expected {expected}")]
    InvalidParameter {
        /// Parameter name as the user types it.
        name: String,
        /// The value that arrived.
        value: String,
        /// The allowed range, in words.
        expected: String,
    },
    /// The number of features differs from the one the model was fitted with.
    #[error("feature count mismatch: fitted with {expected}, got {got}")]
    FeatureMismatch {
        /// Features seen at fit time.
        expected: usize,
        /// Features in the input.
        got: usize,
    },
    /// A feature value is NaN or infinite where the model needs finite numbers.
    #[error("non-finite value {value} at row {row}, column {col} ({name}): this model needs finite numbers")]
    NonFinite {
        /// 1-based row number in the data passed in.
        row: usize,
        /// 1-based column number.
        col: usize,
        /// Feature name, if known.
        name: String,
        /// The value.
        value: f64,
    },
    /// Shapes or lengths do not agree.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// The data cannot be used for this operation (too few rows, a single class...).
    #[error("invalid data: {0}")]
    InvalidData(String),
    /// A model folder could not be read or written.
    #[error("model folder {path}: {message}")]
    ModelFolder {
        /// The folder or file.
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
    /// The solver did not converge or hit a numerical problem.
    #[error("numerical failure: {0}")]
    Numerical(String),
}

impl Error {
    /// Shorthand for [`Error::InvalidParameter`].
    pub fn param(name: &str, value: impl std::fmt::Display, expected: &str) -> Self {
        Error::InvalidParameter {
            name: name.to_string(),
            value: value.to_string(),
            expected: expected.to_string(),
        }
    }

    /// Shorthand for [`Error::ModelFolder`].
    pub fn folder(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::ModelFolder {
            path: path.into(),
            message: message.into(),
        }
    }
}
