//! kiln's charts: PNG pictures of data, models and training runs, drawn with `plotters`.
//!
//! kiln-plot depends on no other kiln crate. Every chart takes a plain struct of vectors, so
//! classical models, neural networks and the CLI can all call it, and every chart is one
//! function that validates its input and writes a PNG:
//!
//! | function | picture |
//! |---|---|
//! | [`fitted_line`] | data points and a fitted line (the regression picture) |
//! | [`predicted_vs_actual`] | predictions against targets, with the line y = x |
//! | [`confusion_matrix`] | a heatmap of (true, predicted) counts with the counts written in |
//! | [`curves`] | loss or metric curves, optionally on a log axis |
//! | [`decision_regions`] | a classifier's regions over two features, decision contours, points |
//! | [`tree_diagram`] | a decision tree drawn like scikit-learn's `plot_tree` |
//! | [`image_grid`] | small images enlarged in a grid, with captions |
//!
//! Conventions shared by all charts:
//! - Bad input (empty data, mismatched lengths, NaN or infinite values, indices out of range) is
//!   a [`PlotError`] naming the field, what was expected and what arrived; never a panic.
//! - Files are written atomically: the picture goes to a temporary file in the target folder
//!   and is renamed over `path` only when complete, so a failed call leaves any old file intact.
//! - Text is set in DejaVu Sans, embedded in the crate (see `assets/LICENSE-DejaVu.txt`), so
//!   charts look the same on machines without any system fonts; fontconfig is never used.
//! - Class and series colours follow matplotlib's tab10; tree boxes use scikit-learn's
//!   `plot_tree` palette.
//!
//! ```
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use kiln_plot::{fitted_line, FittedLine};
//!
//! let dir = tempfile::tempdir()?;
//! let path = dir.path().join("ols.png");
//! let x: Vec<f64> = (0..20).map(f64::from).collect();
//! let y: Vec<f64> = x.iter().map(|v| 2.0 * v + 1.0 + (v * 3.0).sin()).collect();
//! fitted_line(&path, &FittedLine {
//!     title: "y = 2x + 1".into(),
//!     x_label: "x".into(),
//!     y_label: "y".into(),
//!     x,
//!     y,
//!     line_x: vec![0.0, 19.0],
//!     line_y: vec![1.0, 39.0],
//! })?;
//! assert!(std::fs::metadata(&path)?.len() > 1000);
//!
//! // Mismatched lengths are an error, not a panic.
//! let bad = FittedLine { x: vec![1.0, 2.0], y: vec![1.0], ..Default::default() };
//! assert!(fitted_line(&path, &bad).is_err());
//! # Ok(())
//! # }
//! ```
//!
//! `cargo run -p kiln-plot --example gallery -- /tmp/plots` renders one example of each chart.
#![warn(missing_docs)]

mod confusion;
mod contour;
mod error;
mod images;
mod regions;
mod render;
mod tree;
mod xy;

pub use confusion::{confusion_matrix, ConfusionMatrixPlot};
pub use error::PlotError;
pub use images::{image_grid, ImageGrid, RgbImage};
pub use regions::{decision_regions, DecisionRegions};
pub use render::MAX_SIDE;
pub use tree::{tree_diagram, DiagramNode, TreeDiagram};
pub use xy::{
    curves, fitted_line, predicted_vs_actual, Curves, FittedLine, PredictedVsActual, Series,
};
