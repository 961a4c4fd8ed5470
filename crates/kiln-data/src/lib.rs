//! # kiln-data: reading the world
//!
//! Everything that turns outside data into a [`kiln_core::Dataset`]:
//!
//! * CSV tables: [`read_csv`] / [`parse_csv`] with [`CsvOptions`] (target column, feature
//!   columns, [`TaskHint`], missing values) for training; [`read_features`] /
//!   [`parse_features`] to pick a model's feature columns by name for prediction;
//!   [`write_csv`] to write a dataset back (atomically). Errors ([`Error`]) name the file, the
//!   row as a spreadsheet numbers it (header = row 1), the column and the value.
//! * [`builtin`]: iris, wine, breast_cancer, diabetes and digits, embedded in the binary.
//! * [`synthetic`]: seeded `make_regression`, `make_classification` and `make_blobs` with
//!   scikit-learn's parameters and defaults.
//! * [`idx`]: IDX image and label files (plain or gzip), MNIST.
//! * [`text`]: plain-text corpora and a character vocabulary for language models.
//! * [`shapes`]: the procedural, seeded, captioned shapes pictures (text to image), with a
//!   word vocabulary and held-out combinations; [`captioned_digits`]: MNIST with captions.
//!
//! ```
//! use kiln_data::{builtin, parse_csv, CsvOptions, TaskHint};
//! use kiln_data::synthetic::{make_blobs, BlobsParams};
//!
//! // A CSV table with text labels.
//! let text = "height,weight,kind\n1.0,20,cat\n1.5,35,dog\n0.9,18,cat\n";
//! let opts = CsvOptions { task: TaskHint::Classification, ..Default::default() };
//! let pets = parse_csv(text, "pets.csv", &opts)?;
//! assert_eq!(pets.x.dim(), (3, 2));
//! assert_eq!(pets.classes.as_deref(), Some(&["cat".to_string(), "dog".to_string()][..]));
//!
//! // Errors say where: row 3 of the file (the header is row 1), column "weight".
//! let err = parse_csv("height,weight,kind\n1,2,cat\n1,heavy,dog\n", "pets.csv", &opts);
//! assert!(err.unwrap_err().to_string().contains("row 3, column \"weight\""));
//!
//! // A built-in dataset and a synthetic one.
//! let wine = builtin::load("wine")?;
//! assert_eq!(wine.class_counts(), vec![59, 71, 48]);
//! let blobs = make_blobs(&BlobsParams::default(), 42)?;
//! assert_eq!(blobs.data.n_samples(), 100);
//! # Ok::<(), kiln_data::Error>(())
//! ```
#![warn(missing_docs)]

pub mod builtin;
pub mod captioned_digits;
pub mod error;
pub mod idx;
pub mod shapes;
pub mod synthetic;
mod table;
pub mod text;

pub use error::{Error, Result};
pub use table::{
    parse_csv, parse_features, parse_features_with, read_csv, read_features, read_features_with,
    to_csv_string, write_csv, CsvOptions, TaskHint,
};
