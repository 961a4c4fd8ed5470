//! The crate's one error type.

use std::path::PathBuf;

/// Everything that can go wrong while drawing a chart.
///
/// Input errors name the field that is wrong, what was expected and what arrived.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlotError {
    /// A required input has no elements.
    #[error("{what} is empty: expected at least one value")]
    Empty {
        /// The field, e.g. `"x"` or `"series[1].y"`.
        what: String,
    },
    /// Two inputs that must have the same length do not.
    #[error("length mismatch: {left} has {left_len} values but {right} has {right_len}")]
    LengthMismatch {
        /// The first field.
        left: String,
        /// Its length.
        left_len: usize,
        /// The second field.
        right: String,
        /// Its length.
        right_len: usize,
    },
    /// A NaN or infinite value.
    #[error("{what}[{index}] = {value}: expected a finite number")]
    NonFinite {
        /// The field.
        what: String,
        /// Position of the bad value (row-major for grids).
        index: usize,
        /// The value itself.
        value: f64,
    },
    /// Any other input that breaks a chart's contract.
    #[error("invalid {what}: expected {expected}, got {got}")]
    Invalid {
        /// The field.
        what: String,
        /// What was expected.
        expected: String,
        /// What arrived.
        got: String,
    },
    /// The picture would be larger than [`MAX_SIDE`](crate::MAX_SIDE) pixels on a side.
    #[error("chart would be {width}x{height} pixels: expected at most {max} per side")]
    TooLarge {
        /// Width the chart would need.
        width: u64,
        /// Height the chart would need.
        height: u64,
        /// The limit.
        max: u32,
    },
    /// Creating or renaming the output file failed.
    #[error("cannot write {path}: {source}")]
    Io {
        /// The file or folder involved.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// plotters failed while drawing or encoding the PNG.
    #[error("drawing failed: {0}")]
    Draw(String),
    /// The embedded font could not be loaded (a defect in the build, not in the input).
    #[error("the embedded DejaVu Sans font could not be loaded")]
    Font,
}

impl<E: std::error::Error + Send + Sync> From<plotters::drawing::DrawingAreaErrorKind<E>>
    for PlotError
{
    fn from(e: plotters::drawing::DrawingAreaErrorKind<E>) -> Self {
        PlotError::Draw(e.to_string())
    }
}
