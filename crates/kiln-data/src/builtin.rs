//! Built-in datasets, embedded in the binary: iris, wine, breast_cancer, diabetes, digits.
//!
//! They are scikit-learn 1.9.1's bundled tables (BSD-3-Clause), copied unchanged; provenance,
//! licences and checksums are in `crates/kiln-data/data/README.md`. Rows are in the order of
//! `sklearn.datasets.load_*()`.
//!
//! ```
//! let iris = kiln_data::builtin::load("iris").unwrap();
//! assert_eq!((iris.n_samples(), iris.n_features()), (150, 4));
//! assert_eq!(iris.classes.unwrap()[0], "setosa");
//! ```

use kiln_core::Dataset;

use crate::{parse_csv, CsvOptions, Error, Result, TaskHint};

/// What a built-in dataset holds.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetInfo {
    /// The name [`load`] takes.
    pub name: &'static str,
    /// Number of samples.
    pub rows: usize,
    /// Number of features.
    pub features: usize,
    /// Regression or classification.
    pub task: TaskHint,
    /// One line on what it is.
    pub description: &'static str,
    /// Where it comes from.
    pub source: &'static str,
}

struct Builtin {
    info: DatasetInfo,
    csv: &'static str,
    /// Class names for class indices 0, 1, ... (the CSV holds the indices); empty for
    /// regression.
    classes: &'static [&'static str],
}

const SKLEARN: &str = "scikit-learn 1.9.1 sklearn/datasets/data (BSD-3-Clause)";

fn all() -> [Builtin; 5] {
    [
        Builtin {
            info: DatasetInfo {
                name: "iris",
                rows: 150,
                features: 4,
                task: TaskHint::Classification,
                description: "Fisher's iris: 4 flower measurements (cm), 3 species, 50 each",
                source: SKLEARN,
            },
            csv: include_str!("../data/iris.csv"),
            classes: &["setosa", "versicolor", "virginica"],
        },
        Builtin {
            info: DatasetInfo {
                name: "wine",
                rows: 178,
                features: 13,
                task: TaskHint::Classification,
                description: "UCI wine recognition (Forina et al.): 13 chemical measurements, \
                              3 cultivars (59/71/48)",
                source: SKLEARN,
            },
            csv: include_str!("../data/wine.csv"),
            classes: &["class_0", "class_1", "class_2"],
        },
        Builtin {
            info: DatasetInfo {
                name: "breast_cancer",
                rows: 569,
                features: 30,
                task: TaskHint::Classification,
                description: "UCI Breast Cancer Wisconsin (Diagnostic): 30 cell-nucleus \
                              features, malignant (212) or benign (357)",
                source: SKLEARN,
            },
            csv: include_str!("../data/breast_cancer.csv"),
            classes: &["malignant", "benign"],
        },
        Builtin {
            info: DatasetInfo {
                name: "diabetes",
                rows: 442,
                features: 10,
                task: TaskHint::Regression,
                description: "Diabetes (Efron et al. 2004): 10 raw, unscaled baseline \
                              variables; target is disease progression after one year",
                source: SKLEARN,
            },
            csv: include_str!("../data/diabetes.csv"),
            classes: &[],
        },
        Builtin {
            info: DatasetInfo {
                name: "digits",
                rows: 1797,
                features: 64,
                task: TaskHint::Classification,
                description: "UCI optical handwritten digits (Alpaydin & Kaynak): 8x8 images, \
                              pixels 0..16, digits 0-9",
                source: SKLEARN,
            },
            csv: include_str!("../data/digits.csv"),
            classes: &["0", "1", "2", "3", "4", "5", "6", "7", "8", "9"],
        },
    ]
}

/// The built-in datasets, in a fixed order.
pub fn list() -> Vec<DatasetInfo> {
    all().into_iter().map(|b| b.info).collect()
}

fn find(name: &str) -> Result<Builtin> {
    all()
        .into_iter()
        .find(|b| b.info.name == name)
        .ok_or_else(|| Error::UnknownDataset {
            name: name.to_string(),
            available: all().iter().map(|b| b.info.name.to_string()).collect(),
        })
}

/// The embedded CSV text of a built-in dataset (header row, target last, named `target`).
pub fn csv_text(name: &str) -> Result<&'static str> {
    Ok(find(name)?.csv)
}

/// Load a built-in dataset. Classification datasets carry their documented class names
/// (iris: setosa, versicolor, virginica; wine: class_0..class_2; breast_cancer: malignant,
/// benign; digits: "0".."9").
pub fn load(name: &str) -> Result<Dataset> {
    let b = find(name)?;
    let opts = CsvOptions {
        task: b.info.task,
        ..CsvOptions::default()
    };
    let mut data = parse_csv(b.csv, b.info.name, &opts)?;
    if let Some(classes) = &mut data.classes {
        // The CSV holds class indices 0..k-1, so the parsed classes must be exactly those.
        let expected: Vec<String> = (0..b.classes.len()).map(|i| i.to_string()).collect();
        if *classes != expected {
            return Err(Error::Core(kiln_core::Error::InvalidData(format!(
                "built-in {name}: expected class labels {}, found {}",
                expected.join(", "),
                classes.join(", ")
            ))));
        }
        *classes = b.classes.iter().map(|c| c.to_string()).collect();
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_name_lists_the_available_ones() {
        let err = load("irs").unwrap_err().to_string();
        assert!(err.contains("\"irs\""), "{err}");
        for name in ["iris", "wine", "breast_cancer", "diabetes", "digits"] {
            assert!(err.contains(name), "{err}");
        }
        assert!(csv_text("nope").is_err());
    }

    #[test]
    fn list_matches_what_loads() {
        for info in list() {
            let d = load(info.name).unwrap();
            assert_eq!(d.n_samples(), info.rows, "{}", info.name);
            assert_eq!(d.n_features(), info.features, "{}", info.name);
            assert_eq!(kiln_core::Task::from(info.task), d.task(), "{}", info.name);
            assert_eq!(d.target_name, "target");
            assert!(csv_text(info.name)
                .unwrap()
                .starts_with(&d.feature_names[0]));
        }
    }
}
