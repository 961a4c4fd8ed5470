//! Hyperparameters of the decision trees, with scikit-learn's names, meanings and defaults.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// Split quality measure of [`DecisionTreeClassifierParams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassCriterion {
    /// Gini impurity `1 - Σ p_k²` (the default).
    #[default]
    Gini,
    /// Shannon entropy in bits, `-Σ p_k log2 p_k`.
    Entropy,
    /// Log loss: scikit-learn's alias of entropy, giving the same tree.
    LogLoss,
}

/// Split quality measure of [`DecisionTreeRegressorParams`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegCriterion {
    /// Mean squared error; leaves predict the mean (the default).
    #[default]
    SquaredError,
    /// Friedman's improvement score. For one output it ranks splits exactly like
    /// `squared_error`; scikit-learn 1.9 maps it to `squared_error`, and so does kiln.
    FriedmanMse,
    /// Mean absolute error; leaves predict the weighted median. No missing values.
    AbsoluteError,
}

/// How a node's split is chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SplitterKind {
    /// The best threshold of each visited feature (the default).
    #[default]
    Best,
    /// One random threshold per visited feature; the best of those.
    Random,
}

/// How many features are examined at each split.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MaxFeatures {
    /// All features (the default; scikit-learn's `None`).
    #[default]
    All,
    /// `max(1, floor(sqrt(n_features)))`.
    Sqrt,
    /// `max(1, floor(log2(n_features)))`.
    Log2,
    /// Exactly this many, `1..=n_features`.
    Count(usize),
    /// `max(1, floor(fraction * n_features))`, fraction in `(0, 1]`.
    Fraction(f64),
}

impl MaxFeatures {
    /// The number of features for data with `n_features` columns (after validation).
    pub fn resolve(self, n_features: usize) -> usize {
        match self {
            MaxFeatures::All => n_features,
            MaxFeatures::Sqrt => ((n_features as f64).sqrt() as usize).max(1),
            MaxFeatures::Log2 => ((n_features as f64).log2() as usize).max(1),
            MaxFeatures::Count(k) => k,
            MaxFeatures::Fraction(f) => ((f * n_features as f64) as usize).max(1),
        }
    }

    fn check(self, n_features: Option<usize>) -> Result<()> {
        match self {
            MaxFeatures::Count(0) => Err(Error::param(
                "max_features",
                0,
                "at least 1 (or all, sqrt, log2, a fraction in (0, 1])",
            )),
            MaxFeatures::Count(k) => match n_features {
                Some(n) if k > n => Err(Error::param(
                    "max_features",
                    k,
                    &format!("at most the number of features, {n}"),
                )),
                _ => Ok(()),
            },
            MaxFeatures::Fraction(f) if !(f > 0.0 && f <= 1.0) => {
                Err(Error::param("max_features", f, "a fraction in (0, 1]"))
            }
            _ => Ok(()),
        }
    }
}

/// A number of samples, or a fraction of the training samples (rounded up), as scikit-learn
/// accepts for `min_samples_split` and `min_samples_leaf`. Serialised as a bare number: an
/// integer is a count, a number with a fraction part is a fraction.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SampleCount {
    /// Exactly this many samples.
    Count(usize),
    /// `ceil(fraction * n_samples)`.
    Fraction(f64),
}

impl SampleCount {
    /// The count for `n_samples` training samples.
    pub fn resolve(self, n_samples: usize) -> usize {
        match self {
            SampleCount::Count(k) => k,
            SampleCount::Fraction(f) => (f * n_samples as f64).ceil() as usize,
        }
    }
}

impl fmt::Display for SampleCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SampleCount::Count(k) => write!(f, "{k}"),
            SampleCount::Fraction(x) => write!(f, "{x}"),
        }
    }
}

impl FromStr for SampleCount {
    type Err = Error;
    /// An integer count (`5`) or a fraction (`0.05`).
    fn from_str(s: &str) -> Result<Self> {
        let bad = || {
            parse_err(
                "sample count",
                s,
                "an integer count or a fraction such as 0.05",
            )
        };
        if s.contains('.') || s.contains('e') {
            s.parse().map(SampleCount::Fraction).map_err(|_| bad())
        } else {
            s.parse().map(SampleCount::Count).map_err(|_| bad())
        }
    }
}

/// Weights per class, multiplied into the sample weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClassWeight {
    /// `n_samples / (n_classes * count(class))`, counted on the training labels.
    Balanced,
    /// A weight per class name; classes not named weigh 1.
    Map(BTreeMap<String, f64>),
}

fn parse_err(what: &str, s: &str, allowed: &str) -> Error {
    Error::param(what, format!("{s:?}"), allowed)
}

impl FromStr for ClassCriterion {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "gini" => Ok(Self::Gini),
            "entropy" => Ok(Self::Entropy),
            "log_loss" => Ok(Self::LogLoss),
            _ => Err(parse_err("criterion", s, "one of gini, entropy, log_loss")),
        }
    }
}

impl FromStr for RegCriterion {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "squared_error" => Ok(Self::SquaredError),
            "friedman_mse" => Ok(Self::FriedmanMse),
            "absolute_error" => Ok(Self::AbsoluteError),
            _ => Err(parse_err(
                "criterion",
                s,
                "one of squared_error, friedman_mse, absolute_error",
            )),
        }
    }
}

impl FromStr for SplitterKind {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "best" => Ok(Self::Best),
            "random" => Ok(Self::Random),
            _ => Err(parse_err("splitter", s, "best or random")),
        }
    }
}

impl FromStr for MaxFeatures {
    type Err = Error;
    /// `all` (or `none`), `sqrt`, `log2`, an integer, or a fraction such as `0.5`.
    fn from_str(s: &str) -> Result<Self> {
        let m = match s {
            "all" | "none" | "None" => Self::All,
            "sqrt" => Self::Sqrt,
            "log2" => Self::Log2,
            _ if s.contains('.') => Self::Fraction(s.parse().map_err(|_| {
                parse_err(
                    "max_features",
                    s,
                    "all, sqrt, log2, an integer or a fraction",
                )
            })?),
            _ => Self::Count(s.parse().map_err(|_| {
                parse_err(
                    "max_features",
                    s,
                    "all, sqrt, log2, an integer or a fraction",
                )
            })?),
        };
        m.check(None)?;
        Ok(m)
    }
}

impl fmt::Display for ClassCriterion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gini => "gini",
            Self::Entropy => "entropy",
            Self::LogLoss => "log_loss",
        })
    }
}

impl fmt::Display for RegCriterion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::SquaredError => "squared_error",
            Self::FriedmanMse => "friedman_mse",
            Self::AbsoluteError => "absolute_error",
        })
    }
}

/// Settings shared by both trees (scikit-learn's `BaseDecisionTree` parameters).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct TreeSettings {
    /// Split strategy. Default `best`.
    pub splitter: SplitterKind,
    /// Maximum depth (root has depth 0), `None` for unlimited. Default `None`.
    pub max_depth: Option<usize>,
    /// Minimum samples a node needs to be split: a count of at least 2, or a fraction in
    /// `(0, 1]` of the training samples (rounded up, at least 2). Default 2.
    pub min_samples_split: SampleCount,
    /// Minimum samples in each leaf: a count of at least 1, or a fraction in `(0, 1)` of the
    /// training samples (rounded up). Default 1.
    pub min_samples_leaf: SampleCount,
    /// Minimum fraction of the total sample weight in each leaf, in `[0, 0.5]`. Default 0.
    pub min_weight_fraction_leaf: f64,
    /// Features examined per split. Default `all`.
    pub max_features: MaxFeatures,
    /// Grow best-first with at most this many leaves (at least 2); `None` grows depth-first
    /// without a leaf limit. Default `None`.
    pub max_leaf_nodes: Option<usize>,
    /// A split must decrease the weighted impurity by at least this much, `>= 0`. Default 0.
    pub min_impurity_decrease: f64,
    /// Complexity parameter of minimal cost-complexity pruning, `>= 0`. Default 0 (no pruning).
    pub ccp_alpha: f64,
    /// Seed of the feature permutation and random thresholds, `0..=4294967295`; the same seed
    /// as scikit-learn's `random_state` gives the same random choices. Default 0.
    pub seed: u64,
    /// Threads used to search and partition large nodes: 0 = all cores, 1 = none. The tree is
    /// identical for every value. Default 0.
    pub threads: usize,
}

impl Default for TreeSettings {
    fn default() -> Self {
        TreeSettings {
            splitter: SplitterKind::Best,
            max_depth: None,
            min_samples_split: SampleCount::Count(2),
            min_samples_leaf: SampleCount::Count(1),
            min_weight_fraction_leaf: 0.0,
            max_features: MaxFeatures::All,
            max_leaf_nodes: None,
            min_impurity_decrease: 0.0,
            ccp_alpha: 0.0,
            seed: 0,
            threads: 0,
        }
    }
}

impl TreeSettings {
    /// Check every setting, naming the first out of range.
    pub fn validate(&self) -> Result<()> {
        if self.max_depth == Some(0) {
            return Err(Error::param(
                "max_depth",
                0,
                "at least 1, or none for unlimited",
            ));
        }
        match self.min_samples_split {
            SampleCount::Count(k) if k < 2 => {
                return Err(Error::param(
                    "min_samples_split",
                    k,
                    "a count of at least 2 or a fraction in (0, 1]",
                ))
            }
            SampleCount::Fraction(f) if !(f > 0.0 && f <= 1.0) => {
                return Err(Error::param(
                    "min_samples_split",
                    f,
                    "a count of at least 2 or a fraction in (0, 1]",
                ))
            }
            _ => {}
        }
        match self.min_samples_leaf {
            SampleCount::Count(0) => {
                return Err(Error::param(
                    "min_samples_leaf",
                    0,
                    "a count of at least 1 or a fraction in (0, 1)",
                ))
            }
            SampleCount::Fraction(f) if !(f > 0.0 && f < 1.0) => {
                return Err(Error::param(
                    "min_samples_leaf",
                    f,
                    "a count of at least 1 or a fraction in (0, 1)",
                ))
            }
            _ => {}
        }
        let w = self.min_weight_fraction_leaf;
        if !(0.0..=0.5).contains(&w) {
            return Err(Error::param(
                "min_weight_fraction_leaf",
                w,
                "a number in [0, 0.5]",
            ));
        }
        self.max_features.check(None)?;
        if let Some(m) = self.max_leaf_nodes {
            if m < 2 {
                return Err(Error::param("max_leaf_nodes", m, "at least 2, or none"));
            }
        }
        if !(self.min_impurity_decrease >= 0.0 && self.min_impurity_decrease.is_finite()) {
            return Err(Error::param(
                "min_impurity_decrease",
                self.min_impurity_decrease,
                "a finite number >= 0",
            ));
        }
        if !(self.ccp_alpha >= 0.0 && self.ccp_alpha.is_finite()) {
            return Err(Error::param(
                "ccp_alpha",
                self.ccp_alpha,
                "a finite number >= 0",
            ));
        }
        if self.seed > u64::from(u32::MAX) {
            return Err(Error::param("seed", self.seed, "0..=4294967295"));
        }
        Ok(())
    }

    /// Checks that need the data: `max_features` against the feature count.
    pub(crate) fn validate_for(&self, n_features: usize) -> Result<()> {
        self.max_features.check(Some(n_features))
    }
}

/// Hyperparameters of [`DecisionTreeClassifier`](super::DecisionTreeClassifier), as in
/// scikit-learn's `DecisionTreeClassifier`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DecisionTreeClassifierParams {
    /// Split quality measure. Default `gini`.
    pub criterion: ClassCriterion,
    /// Weights per class, `None` for all 1. Default `None`.
    pub class_weight: Option<ClassWeight>,
    /// The settings shared with the regressor.
    #[serde(flatten)]
    pub tree: TreeSettings,
}

/// Hyperparameters of [`DecisionTreeRegressor`](super::DecisionTreeRegressor), as in
/// scikit-learn's `DecisionTreeRegressor`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct DecisionTreeRegressorParams {
    /// Split quality measure. Default `squared_error`.
    pub criterion: RegCriterion,
    /// The settings shared with the classifier.
    #[serde(flatten)]
    pub tree: TreeSettings,
}

impl DecisionTreeClassifierParams {
    /// Check every hyperparameter, naming the first out of range.
    pub fn validate(&self) -> Result<()> {
        self.tree.validate()?;
        if let Some(ClassWeight::Map(m)) = &self.class_weight {
            for (k, &v) in m {
                if !(v >= 0.0 && v.is_finite()) {
                    return Err(Error::param(
                        &format!("class_weight[{k}]"),
                        v,
                        "a finite weight >= 0",
                    ));
                }
            }
        }
        Ok(())
    }
}

impl DecisionTreeRegressorParams {
    /// Check every hyperparameter, naming the first out of range.
    pub fn validate(&self) -> Result<()> {
        self.tree.validate()
    }
}
