//! The error type of kiln-data: every variant names the file, the row (1-based, as a
//! spreadsheet shows it: the header is row 1), the column and the value involved.

use std::path::PathBuf;

/// Result with kiln-data's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong while reading or generating data.
///
/// `file` is the name given to [`crate::parse_csv`] (a path for [`crate::read_csv`]); `row` is
/// 1-based with the header as row 1, so the first data row is row 2; `column` is the column's
/// name from the header.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The file is not valid UTF-8 text.
    #[error("{file}: row {row} is not valid UTF-8 text")]
    NotUtf8 {
        /// The file.
        file: String,
        /// The row holding the first invalid byte.
        row: usize,
    },
    /// The CSV reader rejected the text.
    #[error("{file}: row {row}: malformed CSV: {message}")]
    Malformed {
        /// The file.
        file: String,
        /// The row where the reader stopped.
        row: usize,
        /// The reader's message.
        message: String,
    },
    /// The file holds nothing, not even a header row.
    #[error("{file}: the file is empty: expected a header row naming the columns, then data rows")]
    Empty {
        /// The file.
        file: String,
    },
    /// The file holds a header row and no data rows.
    #[error("{file}: the file has a header row ({}) but no data rows", .columns.join(", "))]
    NoRows {
        /// The file.
        file: String,
        /// The column names in the header.
        columns: Vec<String>,
    },
    /// Two columns share a name.
    #[error("{file}: column name {name:?} appears twice (columns {first} and {second}); column names must be unique")]
    DuplicateColumn {
        /// The file.
        file: String,
        /// The repeated name.
        name: String,
        /// 1-based position of its first occurrence.
        first: usize,
        /// 1-based position of its second occurrence.
        second: usize,
    },
    /// A header cell is empty.
    #[error(
        "{file}: column {column} has an empty name in the header row; every column needs a name"
    )]
    EmptyColumnName {
        /// The file.
        file: String,
        /// 1-based column position.
        column: usize,
    },
    /// A data row has a different number of fields from the header.
    #[error("{file}: row {row}: expected {expected} fields (as in the header), got {got}")]
    Ragged {
        /// The file.
        file: String,
        /// The row.
        row: usize,
        /// Fields in the header.
        expected: usize,
        /// Fields in this row.
        got: usize,
    },
    /// A named column is not in the header.
    #[error("{file}: no {role} column named {name:?}; the file has the columns: {}", .available.join(", "))]
    MissingColumn {
        /// The file.
        file: String,
        /// `"target"` or `"feature"`.
        role: &'static str,
        /// The name asked for.
        name: String,
        /// The columns the file has.
        available: Vec<String>,
    },
    /// No column is left to be a feature.
    #[error("{file}: no feature columns: the file has only the columns {}", .columns.join(", "))]
    NoFeatures {
        /// The file.
        file: String,
        /// The columns the file has.
        columns: Vec<String>,
    },
    /// A column was named both as the target and as a feature.
    #[error("{file}: column {name:?} is the target, so it cannot also be a feature")]
    TargetIsFeature {
        /// The file.
        file: String,
        /// The column.
        name: String,
    },
    /// A feature column was listed twice.
    #[error("{file}: feature column {name:?} is listed twice")]
    DuplicateFeature {
        /// The file.
        file: String,
        /// The column.
        name: String,
    },
    /// A cell that must hold a number holds other text.
    #[error("{file}: row {row}, column {column:?}: {value:?} is not a number")]
    NotANumber {
        /// The file.
        file: String,
        /// The row.
        row: usize,
        /// The column name.
        column: String,
        /// The text in the cell.
        value: String,
    },
    /// A regression target holds text.
    #[error("{file}: row {row}, target column {column:?}: {value:?} is not a number; regression targets must be numbers (read text labels as a classification task)")]
    TextTarget {
        /// The file.
        file: String,
        /// The row.
        row: usize,
        /// The target column name.
        column: String,
        /// The text in the cell.
        value: String,
    },
    /// A cell is empty where a value is needed.
    #[error("{file}: row {row}, column {column:?}: the cell is empty{}", missing_hint(.target))]
    EmptyCell {
        /// The file.
        file: String,
        /// The row.
        row: usize,
        /// The column name.
        column: String,
        /// Whether the cell is in the target column (targets may never be missing).
        target: bool,
    },
    /// A cell holds NaN ("nan", "NaN", ...).
    #[error("{file}: row {row}, column {column:?}: {value:?} is NaN{}", missing_hint(.target))]
    NanCell {
        /// The file.
        file: String,
        /// The row.
        row: usize,
        /// The column name.
        column: String,
        /// The text in the cell.
        value: String,
        /// Whether the cell is in the target column (targets may never be missing).
        target: bool,
    },
    /// A cell holds an infinite number ("inf", "-Infinity", "1e999", ...).
    #[error(
        "{file}: row {row}, column {column:?}: {value:?} is infinite; expected a finite number"
    )]
    Infinite {
        /// The file.
        file: String,
        /// The row.
        row: usize,
        /// The column name.
        column: String,
        /// The text in the cell.
        value: String,
    },
    /// A dataset handed to a writer is inconsistent.
    #[error("cannot write {what}: {message}")]
    Write {
        /// What was being written.
        what: String,
        /// What is wrong.
        message: String,
    },
    /// No built-in dataset has this name.
    #[error("no built-in dataset named {name:?}; the available datasets are: {}", .available.join(", "))]
    UnknownDataset {
        /// The name asked for.
        name: String,
        /// The built-in names.
        available: Vec<String>,
    },
    /// An error from kiln-core (a bad generator parameter, an inconsistent dataset...).
    #[error(transparent)]
    Core(#[from] kiln_core::Error),
}

fn missing_hint(target: &bool) -> &'static str {
    if *target {
        "; targets may never be missing"
    } else {
        "; expected a number (allow missing values to read it as NaN)"
    }
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}
