//! CSV tables: read a [`Dataset`] for training, read feature columns for prediction, write a
//! [`Dataset`] back.
//!
//! The format: a header row naming the columns, then one row per sample, `,` separated, fields
//! optionally quoted. A UTF-8 byte-order mark and CRLF line ends are accepted, blank lines are
//! skipped and spaces around fields are trimmed. Rows are numbered as a spreadsheet shows them:
//! the header is row 1, the first data row is row 2 (the line number where the row starts).

use std::collections::HashMap;
use std::path::Path;

use kiln_core::Dataset;
use ndarray::{Array1, Array2};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// What the target column holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TaskHint {
    /// Numbers to predict; every target cell must be a finite number. The default.
    #[default]
    Regression,
    /// Class labels, as numbers or text. The classes are the sorted distinct values (numeric
    /// order when every value is a number, so `"2" < "10"`; otherwise lexicographic order),
    /// named by their text as written; `y` holds class indices.
    Classification,
}

impl From<TaskHint> for kiln_core::Task {
    fn from(t: TaskHint) -> Self {
        match t {
            TaskHint::Regression => kiln_core::Task::Regression,
            TaskHint::Classification => kiln_core::Task::Classification,
        }
    }
}

/// How to read a CSV table into a [`Dataset`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CsvOptions {
    /// Name of the target column. Default `None`: the last column.
    pub target: Option<String>,
    /// Names of the feature columns, in the order wanted. Default `None`: every column but the
    /// target, in file order.
    pub features: Option<Vec<String>>,
    /// Regression or classification. Default [`TaskHint::Regression`].
    pub task: TaskHint,
    /// Read empty and NaN feature cells (`""`, `nan`, `NaN`, `NA`, `N/A`, `null`, `None`, any
    /// case) as NaN instead of rejecting them, for estimators that accept missing values
    /// (decision trees). Targets may never be missing and infinite values are always
    /// rejected. Default `false`.
    pub allow_missing: bool,
}

/// Read a CSV file into a [`Dataset`]. See [`parse_csv`].
pub fn read_csv(path: &Path, opts: &CsvOptions) -> Result<Dataset> {
    let text = read_text(path)?;
    parse_csv(&text, &path.display().to_string(), opts)
}

/// Parse CSV text into a [`Dataset`]; `source` names the text in error messages.
///
/// ```
/// use kiln_data::{parse_csv, CsvOptions, TaskHint};
/// let text = "a,b,label\n1,2,yes\n3,4,no\n5,6,yes\n";
/// let opts = CsvOptions { task: TaskHint::Classification, ..Default::default() };
/// let d = parse_csv(text, "toy.csv", &opts).unwrap();
/// assert_eq!(d.feature_names, ["a", "b"]);
/// assert_eq!(d.classes.as_deref(), Some(&["no".to_string(), "yes".to_string()][..]));
/// assert_eq!(d.y.to_vec(), [1.0, 0.0, 1.0]);
/// ```
pub fn parse_csv(text: &str, source: &str, opts: &CsvOptions) -> Result<Dataset> {
    let parsed = parse(text, source, opts.allow_missing, |header| {
        let target = match &opts.target {
            Some(name) => find_column(source, header, name, "target")?,
            None => header.len() - 1,
        };
        let features = match &opts.features {
            Some(names) => resolve_features(source, header, names, Some(target))?,
            None => (0..header.len()).filter(|&i| i != target).collect(),
        };
        if features.is_empty() {
            return Err(Error::NoFeatures {
                file: source.to_string(),
                columns: header.to_vec(),
            });
        }
        Ok((features, Some((target, opts.task))))
    })?;
    let feature_names: Vec<String> = parsed
        .features
        .iter()
        .map(|&i| parsed.header[i].clone())
        .collect();
    let Some((target, _)) = parsed.target else {
        return unreachable_target();
    };
    let target_name = parsed.header[target].clone();
    let dataset = match parsed.y {
        Targets::Values(y) => Dataset::regression(parsed.x, y, feature_names, target_name)?,
        Targets::Labels { ids, texts } => {
            let (classes, index) = order_classes(&texts);
            let y: Array1<f64> = ids.iter().map(|&id| index[id] as f64).collect();
            Dataset::classification(parsed.x, y, feature_names, target_name, classes)?
        }
        Targets::None => return unreachable_target(),
    };
    Ok(dataset)
}

// A target was planned, so the parser produced one; this keeps that invariant panic-free.
fn unreachable_target<T>() -> Result<T> {
    Err(Error::Core(kiln_core::Error::InvalidData(
        "internal: the CSV parser lost the target column".into(),
    )))
}

/// Read the named feature columns of a CSV file, for prediction. See [`parse_features`].
pub fn read_features(path: &Path, features: &[String]) -> Result<Array2<f64>> {
    read_features_with(path, features, false)
}

/// [`read_features`] that may read empty and NaN cells as NaN (see
/// [`CsvOptions::allow_missing`]).
pub fn read_features_with(
    path: &Path,
    features: &[String],
    allow_missing: bool,
) -> Result<Array2<f64>> {
    let text = read_text(path)?;
    parse_features_with(&text, &path.display().to_string(), features, allow_missing)
}

/// Parse the named feature columns of CSV text, for prediction: the columns are selected by
/// name and returned in the order of `features` (the model's order); any other column (a
/// target, an id) is ignored. A missing feature column is an error listing the file's columns.
///
/// ```
/// use kiln_data::parse_features;
/// let text = "id,b,a,target\n7,2,1,0\n8,4,3,1\n";
/// let x = parse_features(text, "new.csv", &["a".into(), "b".into()]).unwrap();
/// assert_eq!(x, ndarray::array![[1.0, 2.0], [3.0, 4.0]]);
/// ```
pub fn parse_features(text: &str, source: &str, features: &[String]) -> Result<Array2<f64>> {
    parse_features_with(text, source, features, false)
}

/// [`parse_features`] that may read empty and NaN cells as NaN (see
/// [`CsvOptions::allow_missing`]).
pub fn parse_features_with(
    text: &str,
    source: &str,
    features: &[String],
    allow_missing: bool,
) -> Result<Array2<f64>> {
    let parsed = parse(text, source, allow_missing, |header| {
        Ok((resolve_features(source, header, features, None)?, None))
    })?;
    Ok(parsed.x)
}

/// Write a [`Dataset`] as CSV atomically (a temporary file, then a rename): the feature
/// columns, then the target column. Classification targets are written by class name; NaN
/// features are written as empty cells. Numbers are written in the shortest form that reads
/// back to the same `f64`. Reading the file back gives the same values; the classes come back
/// in [`TaskHint::Classification`]'s sorted order, which may differ from the dataset's own
/// order (breast_cancer's is malignant, benign).
pub fn write_csv(path: &Path, data: &Dataset) -> Result<()> {
    let text = to_csv_string(data)?;
    kiln_core::folder::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// The CSV text [`write_csv`] writes.
pub fn to_csv_string(data: &Dataset) -> Result<String> {
    let what = "dataset as CSV".to_string();
    let bad = |message: String| Error::Write {
        what: what.clone(),
        message,
    };
    if data.x.nrows() != data.y.len() {
        return Err(bad(format!(
            "x has {} rows but y has {} values",
            data.x.nrows(),
            data.y.len()
        )));
    }
    if data.feature_names.len() != data.x.ncols() {
        return Err(bad(format!(
            "x has {} columns but {} feature names",
            data.x.ncols(),
            data.feature_names.len()
        )));
    }
    if let Some(classes) = &data.classes {
        if let Some((i, t)) = data
            .y
            .iter()
            .enumerate()
            .find(|(_, &t)| t < 0.0 || t.fract() != 0.0 || t as usize >= classes.len())
        {
            return Err(bad(format!(
                "sample {}: class index {t} is not one of 0..{}",
                i + 1,
                classes.len()
            )));
        }
    }
    let mut header: Vec<String> = data.feature_names.iter().map(|n| quote(n)).collect();
    header.push(quote(&data.target_name));
    let classes: Option<Vec<String>> = data
        .classes
        .as_ref()
        .map(|c| c.iter().map(|n| quote(n)).collect());
    // Rows are formatted in parallel, a chunk of rows per task, then joined in order.
    const CHUNK: usize = 4096;
    let n = data.x.nrows();
    let chunks: Vec<String> = (0..n.div_ceil(CHUNK))
        .into_par_iter()
        .map(|c| {
            let mut out = String::with_capacity(CHUNK * (data.x.ncols() + 1) * 12);
            for i in c * CHUNK..((c + 1) * CHUNK).min(n) {
                for &v in data.x.row(i) {
                    push_number(&mut out, v);
                    out.push(',');
                }
                match &classes {
                    Some(names) => out.push_str(&names[data.y[i] as usize]),
                    None => push_number(&mut out, data.y[i]),
                }
                out.push('\n');
            }
            out
        })
        .collect();
    let mut text = header.join(",");
    text.push('\n');
    text.reserve(chunks.iter().map(String::len).sum());
    for chunk in chunks {
        text.push_str(&chunk);
    }
    Ok(text)
}

/// A CSV field: quoted (with doubled quotes) when it holds a separator, a quote, a line end
/// or spaces at either end (which the reader would trim).
fn quote(field: &str) -> String {
    let needs = field.contains([',', '"', '\n', '\r'])
        || field.starts_with(char::is_whitespace)
        || field.ends_with(char::is_whitespace);
    if needs {
        format!("\"{}\"", field.replace('"', "\"\""))
    } else {
        field.to_string()
    }
}

/// Append the shortest text that parses back to the same `f64`: plain decimals for ordinary
/// magnitudes, scientific notation for very large or small ones, nothing (an empty cell) for
/// NaN.
fn push_number(out: &mut String, v: f64) {
    use std::fmt::Write;
    // Writing to a String cannot fail.
    let _ = if v.is_nan() {
        Ok(())
    } else if v == 0.0 || (1e-5..1e16).contains(&v.abs()) || v.is_infinite() {
        write!(out, "{v}")
    } else {
        write!(out, "{v:e}")
    };
}

fn read_text(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let row = e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count()
            + 1;
        Error::NotUtf8 {
            file: path.display().to_string(),
            row,
        }
    })
}

fn find_column(file: &str, header: &[String], name: &str, role: &'static str) -> Result<usize> {
    header
        .iter()
        .position(|h| h == name)
        .ok_or_else(|| Error::MissingColumn {
            file: file.to_string(),
            role,
            name: name.to_string(),
            available: header.to_vec(),
        })
}

fn resolve_features(
    file: &str,
    header: &[String],
    names: &[String],
    target: Option<usize>,
) -> Result<Vec<usize>> {
    let mut cols = Vec::with_capacity(names.len());
    for name in names {
        let i = find_column(file, header, name, "feature")?;
        if Some(i) == target {
            return Err(Error::TargetIsFeature {
                file: file.to_string(),
                name: name.clone(),
            });
        }
        if cols.contains(&i) {
            return Err(Error::DuplicateFeature {
                file: file.to_string(),
                name: name.clone(),
            });
        }
        cols.push(i);
    }
    Ok(cols)
}

/// The target column as read: numbers (regression) or interned label texts (classification).
enum Targets {
    None,
    Values(Array1<f64>),
    Labels {
        /// Per row, an index into `texts`.
        ids: Vec<usize>,
        /// Distinct label texts in order of first appearance.
        texts: Vec<String>,
    },
}

struct Parsed {
    header: Vec<String>,
    features: Vec<usize>,
    target: Option<(usize, TaskHint)>,
    x: Array2<f64>,
    y: Targets,
}

/// Feature column indices and the optional target column (with its task), chosen from the
/// header.
type Plan = (Vec<usize>, Option<(usize, TaskHint)>);

/// What a cell holds.
enum Cell {
    Number(f64),
    Empty,
    Nan,
    Infinite,
    Text,
}

fn classify(s: &str) -> Cell {
    if s.is_empty() {
        return Cell::Empty;
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_nan() => Cell::Nan,
        Ok(v) if v.is_infinite() => Cell::Infinite,
        Ok(v) => Cell::Number(v),
        Err(_) => Cell::Text,
    }
}

/// Missing-value markers accepted (besides empty and NaN cells) when missing values are allowed.
fn is_missing_marker(s: &str) -> bool {
    ["na", "n/a", "null", "none"]
        .iter()
        .any(|m| s.eq_ignore_ascii_case(m))
}

fn parse(
    text: &str,
    file: &str,
    allow_missing: bool,
    plan: impl FnOnce(&[String]) -> Result<Plan>,
) -> Result<Parsed> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let mut reader = ::csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .trim(::csv::Trim::All)
        .from_reader(text.as_bytes());
    let malformed = |e: ::csv::Error| {
        let row = e.position().map_or(0, |p| p.line() as usize);
        Error::Malformed {
            file: file.to_string(),
            row,
            message: e.to_string(),
        }
    };
    let mut records = reader.records();
    let header: Vec<String> = match records.next() {
        None => {
            return Err(Error::Empty {
                file: file.to_string(),
            })
        }
        Some(r) => r.map_err(malformed)?.iter().map(str::to_string).collect(),
    };
    if header.len() == 1 && header[0].is_empty() {
        return Err(Error::Empty {
            file: file.to_string(),
        });
    }
    for (i, name) in header.iter().enumerate() {
        if name.is_empty() {
            return Err(Error::EmptyColumnName {
                file: file.to_string(),
                column: i + 1,
            });
        }
        if let Some(j) = header[..i].iter().position(|h| h == name) {
            return Err(Error::DuplicateColumn {
                file: file.to_string(),
                name: name.clone(),
                first: j + 1,
                second: i + 1,
            });
        }
    }
    let (features, target) = plan(&header)?;

    let mut xs: Vec<f64> = Vec::new();
    let mut values: Vec<f64> = Vec::new();
    let mut ids: Vec<usize> = Vec::new();
    let mut texts: Vec<String> = Vec::new();
    let mut interned: HashMap<String, usize> = HashMap::new();
    let mut n_rows = 0usize;
    let mut lines = LineCounter::new(text);
    for record in records {
        let record = record.map_err(malformed)?;
        let row = match record.position() {
            Some(p) => lines.line_of(p.byte() as usize),
            None => n_rows + 2,
        };
        if record.len() != header.len() {
            return Err(Error::Ragged {
                file: file.to_string(),
                row,
                expected: header.len(),
                got: record.len(),
            });
        }
        let cell_error = |col: usize, cell: Cell, target: bool| -> Error {
            let file = file.to_string();
            let column = header[col].clone();
            let value = record[col].to_string();
            match cell {
                Cell::Empty => Error::EmptyCell {
                    file,
                    row,
                    column,
                    target,
                },
                Cell::Nan => Error::NanCell {
                    file,
                    row,
                    column,
                    value,
                    target,
                },
                Cell::Infinite => Error::Infinite {
                    file,
                    row,
                    column,
                    value,
                },
                Cell::Text | Cell::Number(_) if target => Error::TextTarget {
                    file,
                    row,
                    column,
                    value,
                },
                Cell::Text | Cell::Number(_) => Error::NotANumber {
                    file,
                    row,
                    column,
                    value,
                },
            }
        };
        for &col in &features {
            let s = &record[col];
            let v = match classify(s) {
                Cell::Number(v) => v,
                Cell::Empty | Cell::Nan if allow_missing => f64::NAN,
                Cell::Text if allow_missing && is_missing_marker(s) => f64::NAN,
                other => return Err(cell_error(col, other, false)),
            };
            xs.push(v);
        }
        match target {
            None => {}
            Some((col, TaskHint::Regression)) => match classify(&record[col]) {
                Cell::Number(v) => values.push(v),
                other => return Err(cell_error(col, other, true)),
            },
            Some((col, TaskHint::Classification)) => {
                let s = &record[col];
                match classify(s) {
                    Cell::Number(_) | Cell::Text => {}
                    other => return Err(cell_error(col, other, true)),
                }
                let id = match interned.get(s) {
                    Some(&id) => id,
                    None => {
                        let id = texts.len();
                        interned.insert(s.to_string(), id);
                        texts.push(s.to_string());
                        id
                    }
                };
                ids.push(id);
            }
        }
        n_rows += 1;
    }
    if n_rows == 0 {
        return Err(Error::NoRows {
            file: file.to_string(),
            columns: header,
        });
    }
    let x = Array2::from_shape_vec((n_rows, features.len()), xs)
        .map_err(|e| kiln_core::Error::Shape(e.to_string()))?;
    let y = match target {
        None => Targets::None,
        Some((_, TaskHint::Regression)) => Targets::Values(Array1::from(values)),
        Some((_, TaskHint::Classification)) => Targets::Labels { ids, texts },
    };
    Ok(Parsed {
        header,
        features,
        target,
        x,
        y,
    })
}

/// Line numbers (1-based) of byte offsets, for offsets that never decrease. The CSV reader's
/// own line count skips blank lines, which a spreadsheet or an editor counts.
struct LineCounter<'a> {
    text: &'a [u8],
    offset: usize,
    line: usize,
}

impl<'a> LineCounter<'a> {
    fn new(text: &'a str) -> Self {
        LineCounter {
            text: text.as_bytes(),
            offset: 0,
            line: 1,
        }
    }

    fn line_of(&mut self, offset: usize) -> usize {
        // The reader reports the offset where it began reading, before skipped blank lines.
        let mut end = offset.min(self.text.len());
        while end < self.text.len() && matches!(self.text[end], b'\r' | b'\n') {
            end += 1;
        }
        if end > self.offset {
            self.line += self.text[self.offset..end]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            self.offset = end;
        }
        self.line
    }
}

/// Sort distinct label texts into classes: numeric order when every text is a number (texts
/// with equal values, such as `1` and `1.0`, are one class named by the first text seen),
/// otherwise lexicographic order. Returns the class names and, per text, its class index.
fn order_classes(texts: &[String]) -> (Vec<String>, Vec<usize>) {
    let numbers: Option<Vec<f64>> = texts
        .iter()
        .map(|t| t.parse::<f64>().ok().map(|v| v + 0.0)) // + 0.0 folds -0 into 0
        .collect();
    match numbers {
        Some(values) => {
            let mut distinct = values.clone();
            distinct.sort_by(f64::total_cmp);
            distinct.dedup();
            let index: Vec<usize> = values
                .iter()
                .map(|v| distinct.partition_point(|d| d < v))
                .collect();
            let mut names: Vec<Option<String>> = vec![None; distinct.len()];
            for (t, &c) in texts.iter().zip(&index) {
                if names[c].is_none() {
                    names[c] = Some(t.clone());
                }
            }
            (
                names.into_iter().map(Option::unwrap_or_default).collect(),
                index,
            )
        }
        None => {
            let mut order: Vec<usize> = (0..texts.len()).collect();
            order.sort_by(|&a, &b| texts[a].cmp(&texts[b]));
            let mut index = vec![0; texts.len()];
            for (class, &t) in order.iter().enumerate() {
                index[t] = class;
            }
            (order.iter().map(|&t| texts[t].clone()).collect(), index)
        }
    }
}
