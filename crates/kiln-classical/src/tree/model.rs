//! The fitted estimators: [`DecisionTreeClassifier`] and [`DecisionTreeRegressor`].

use kiln_core::{check_features, Dataset, Error, Fit, Persist, Predict, Result, Task, Tensors};
use ndarray::{Array1, Array2, ArrayView2};
use serde::{Deserialize, Serialize};

use super::builder::{build, BuildConfig, Crit, Target};
use super::params::{
    ClassCriterion, ClassWeight, DecisionTreeClassifierParams, DecisionTreeRegressorParams,
    RegCriterion, SplitterKind, TreeSettings,
};
use super::tree::{PruningPath, TreeArrays};

/// A fitted classification tree.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionTreeClassifier {
    params: DecisionTreeClassifierParams,
    tree: TreeArrays,
    feature_names: Vec<String>,
    classes: Vec<String>,
}

/// A fitted regression tree.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionTreeRegressor {
    params: DecisionTreeRegressorParams,
    tree: TreeArrays,
    feature_names: Vec<String>,
}

/// Error naming the first infinite value of `x` (NaN is allowed: it means "missing").
fn check_no_inf(x: ArrayView2<'_, f64>) -> Result<()> {
    for ((r, c), &v) in x.indexed_iter() {
        if v.is_infinite() {
            return Err(Error::NonFinite {
                row: r + 1,
                col: c + 1,
                name: format!("feature {}", c + 1),
                value: v,
            });
        }
    }
    Ok(())
}

/// Check sample weights: one per row, finite, non-negative, positive total.
fn check_weights(w: &[f64], n: usize) -> Result<()> {
    if w.len() != n {
        return Err(Error::Shape(format!(
            "sample_weight has {} values for {n} samples",
            w.len()
        )));
    }
    if let Some((i, v)) = w
        .iter()
        .enumerate()
        .find(|(_, v)| !(v.is_finite() && **v >= 0.0))
    {
        return Err(Error::InvalidData(format!(
            "sample_weight[{i}] = {v}: weights must be finite and >= 0"
        )));
    }
    if w.iter().sum::<f64>() <= 0.0 {
        return Err(Error::InvalidData(
            "sample weights sum to zero: at least one sample needs a positive weight".into(),
        ));
    }
    Ok(())
}

/// Grow (and prune) a tree: the part shared by both estimators.
fn grow(
    s: &TreeSettings,
    crit: Crit,
    data: &Dataset,
    target: &Target<'_>,
    weights: Option<&[f64]>,
    prune: bool,
) -> Result<TreeArrays> {
    s.validate()?;
    let (n, d) = (data.n_samples(), data.n_features());
    if n == 0 || d == 0 {
        return Err(Error::InvalidData(format!(
            "a tree needs at least one sample and one feature, got {n} × {d}"
        )));
    }
    s.validate_for(d)?;
    check_no_inf(data.x.view())?;
    if crit == Crit::Mae {
        // scikit-learn's absolute_error criterion has no missing-value support either.
        if let Some(((r, c), &v)) = data.x.indexed_iter().find(|(_, v)| v.is_nan()) {
            return Err(Error::NonFinite {
                row: r + 1,
                col: c + 1,
                name: format!(
                    "feature {}; criterion absolute_error does not accept NaN",
                    c + 1
                ),
                value: v,
            });
        }
    }
    if let Some(w) = weights {
        check_weights(w, n)?;
    }
    // scikit-learn fits on float32 features; so does kiln, for identical thresholds.
    let x_cols: Vec<Vec<f32>> = data
        .x
        .columns()
        .into_iter()
        .map(|c| c.iter().map(|&v| v as f32).collect())
        .collect();
    let total_w = weights.map_or(n as f64, |w| w.iter().sum());
    let cfg = BuildConfig {
        crit,
        random_splitter: s.splitter == SplitterKind::Random,
        max_depth: s.max_depth.unwrap_or(i32::MAX as usize),
        min_samples_split: s
            .min_samples_split
            .resolve(n)
            .max(2)
            .max(2 * s.min_samples_leaf.resolve(n)),
        min_samples_leaf: s.min_samples_leaf.resolve(n),
        min_weight_leaf: s.min_weight_fraction_leaf * total_w,
        max_features: s.max_features.resolve(d),
        max_leaf_nodes: s.max_leaf_nodes,
        min_impurity_decrease: s.min_impurity_decrease,
        seed: s.seed as u32,
        parallel: s.threads != 1,
    };
    let tree = if s.threads > 1 {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(s.threads)
            .build()
            .map_err(|e| {
                Error::param(
                    "threads",
                    s.threads,
                    &format!("a usable thread count ({e})"),
                )
            })?;
        pool.install(|| build(&x_cols, target, weights, &cfg))
    } else {
        build(&x_cols, target, weights, &cfg)
    };
    Ok(if prune && s.ccp_alpha > 0.0 {
        tree.prune(s.ccp_alpha)
    } else {
        tree
    })
}

impl DecisionTreeClassifierParams {
    fn class_crit(&self) -> Crit {
        match self.criterion {
            ClassCriterion::Gini => Crit::Gini,
            ClassCriterion::Entropy | ClassCriterion::LogLoss => Crit::Entropy,
        }
    }

    /// Sample weights times class weights (`None` when both are absent).
    fn effective_weights(
        &self,
        data: &Dataset,
        sample_weight: Option<&[f64]>,
    ) -> Result<Option<Vec<f64>>> {
        let classes = data.classes.as_deref().unwrap_or(&[]);
        let labels = data.labels();
        let per_class: Option<Vec<f64>> = match &self.class_weight {
            None => None,
            Some(ClassWeight::Balanced) => {
                let counts = data.class_counts();
                let present = counts.iter().filter(|&&c| c > 0).count() as f64;
                let n = data.n_samples() as f64;
                Some(
                    counts
                        .iter()
                        .map(|&c| if c > 0 { n / (present * c as f64) } else { 1.0 })
                        .collect(),
                )
            }
            Some(ClassWeight::Map(m)) => {
                if let Some(k) = m.keys().find(|k| !classes.contains(k)) {
                    return Err(Error::param(
                        "class_weight",
                        format!("{{{k:?}: ..}}"),
                        &format!("weights for known classes only ({})", classes.join(", ")),
                    ));
                }
                Some(
                    classes
                        .iter()
                        .map(|c| m.get(c).copied().unwrap_or(1.0))
                        .collect(),
                )
            }
        };
        if let Some(w) = sample_weight {
            check_weights(w, data.n_samples())?;
        }
        Ok(match (per_class, sample_weight) {
            (None, None) => None,
            (None, Some(w)) => Some(w.to_vec()),
            (Some(cw), None) => Some(labels.iter().map(|&c| cw[c]).collect()),
            (Some(cw), Some(w)) => Some(labels.iter().zip(w).map(|(&c, &w)| w * cw[c]).collect()),
        })
    }

    fn grow(
        &self,
        data: &Dataset,
        sample_weight: Option<&[f64]>,
        prune: bool,
    ) -> Result<TreeArrays> {
        self.validate()?;
        if data.task() != Task::Classification {
            return Err(Error::InvalidData(
                "a classification tree needs class labels; this dataset is a regression one".into(),
            ));
        }
        let weights = self.effective_weights(data, sample_weight)?;
        let y: Vec<u32> = data.labels().iter().map(|&c| c as u32).collect();
        let target = Target::Class {
            y: &y,
            n_classes: data.n_classes(),
        };
        grow(
            &self.tree,
            self.class_crit(),
            data,
            &target,
            weights.as_deref(),
            prune,
        )
    }

    /// Fit with per-sample weights (multiplied by `class_weight`, as in scikit-learn).
    pub fn fit_weighted(
        &self,
        data: &Dataset,
        sample_weight: &[f64],
    ) -> Result<DecisionTreeClassifier> {
        self.fit_inner(data, Some(sample_weight))
    }

    fn fit_inner(
        &self,
        data: &Dataset,
        sample_weight: Option<&[f64]>,
    ) -> Result<DecisionTreeClassifier> {
        let tree = self.grow(data, sample_weight, true)?;
        Ok(DecisionTreeClassifier {
            params: self.clone(),
            tree,
            feature_names: data.feature_names.clone(),
            classes: data.classes.clone().unwrap_or_default(),
        })
    }

    /// The minimal cost-complexity pruning path of the unpruned tree these parameters grow.
    pub fn cost_complexity_pruning_path(
        &self,
        data: &Dataset,
        sample_weight: Option<&[f64]>,
    ) -> Result<PruningPath> {
        Ok(self.grow(data, sample_weight, false)?.pruning_path())
    }
}

impl DecisionTreeRegressorParams {
    fn reg_crit(&self) -> Crit {
        match self.criterion {
            RegCriterion::SquaredError | RegCriterion::FriedmanMse => Crit::Mse,
            RegCriterion::AbsoluteError => Crit::Mae,
        }
    }

    fn grow(
        &self,
        data: &Dataset,
        sample_weight: Option<&[f64]>,
        prune: bool,
    ) -> Result<TreeArrays> {
        self.validate()?;
        if let Some((i, v)) = data.y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            return Err(Error::InvalidData(format!(
                "target value {v} at row {}: a regression tree needs finite targets",
                i + 1
            )));
        }
        let y = data.y.to_vec();
        let target = Target::Reg { y: &y };
        grow(
            &self.tree,
            self.reg_crit(),
            data,
            &target,
            sample_weight,
            prune,
        )
    }

    /// Fit with per-sample weights.
    pub fn fit_weighted(
        &self,
        data: &Dataset,
        sample_weight: &[f64],
    ) -> Result<DecisionTreeRegressor> {
        self.fit_inner(data, Some(sample_weight))
    }

    fn fit_inner(
        &self,
        data: &Dataset,
        sample_weight: Option<&[f64]>,
    ) -> Result<DecisionTreeRegressor> {
        let tree = self.grow(data, sample_weight, true)?;
        Ok(DecisionTreeRegressor {
            params: self.clone(),
            tree,
            feature_names: data.feature_names.clone(),
        })
    }

    /// The minimal cost-complexity pruning path of the unpruned tree these parameters grow.
    pub fn cost_complexity_pruning_path(
        &self,
        data: &Dataset,
        sample_weight: Option<&[f64]>,
    ) -> Result<PruningPath> {
        Ok(self.grow(data, sample_weight, false)?.pruning_path())
    }
}

impl Fit for DecisionTreeClassifierParams {
    type Model = DecisionTreeClassifier;
    fn validate(&self) -> Result<()> {
        DecisionTreeClassifierParams::validate(self)
    }
    fn fit(&self, data: &Dataset) -> Result<DecisionTreeClassifier> {
        self.fit_inner(data, None)
    }
    fn allows_nan(&self) -> bool {
        true
    }
}

impl Fit for DecisionTreeRegressorParams {
    type Model = DecisionTreeRegressor;
    fn validate(&self) -> Result<()> {
        DecisionTreeRegressorParams::validate(self)
    }
    fn fit(&self, data: &Dataset) -> Result<DecisionTreeRegressor> {
        self.fit_inner(data, None)
    }
    fn allows_nan(&self) -> bool {
        // absolute_error cannot use missing values (as in scikit-learn).
        self.criterion != RegCriterion::AbsoluteError
    }
}

/// Shared accessors of the two fitted trees.
macro_rules! common_accessors {
    ($t:ty) => {
        impl $t {
            /// The node arrays (scikit-learn's `tree_`).
            pub fn tree(&self) -> &TreeArrays {
                &self.tree
            }
            /// Feature names, in column order.
            pub fn feature_names(&self) -> &[String] {
                &self.feature_names
            }
            /// Leaf index of each row of `x` (scikit-learn's `apply`).
            pub fn apply(&self, x: ArrayView2<'_, f64>) -> Result<Vec<usize>> {
                check_features(self.tree.n_features, x)?;
                check_no_inf(x)?;
                Ok(self.tree.apply(x))
            }
            /// Impurity-based importances, normalised to sum 1.
            pub fn feature_importances(&self) -> Vec<f64> {
                self.tree.feature_importances()
            }
            /// Number of nodes.
            pub fn node_count(&self) -> usize {
                self.tree.node_count()
            }
            /// Depth of the deepest leaf (scikit-learn's `get_depth`).
            pub fn depth(&self) -> usize {
                self.tree.max_depth()
            }
            /// Number of leaves (scikit-learn's `get_n_leaves`).
            pub fn n_leaves(&self) -> usize {
                self.tree.n_leaves()
            }
            /// The cost-complexity pruning path of this (already pruned, if `ccp_alpha > 0`)
            /// tree; use the parameters' method for the path of the unpruned tree.
            pub fn pruning_path(&self) -> PruningPath {
                self.tree.pruning_path()
            }
        }
    };
}
common_accessors!(DecisionTreeClassifier);
common_accessors!(DecisionTreeRegressor);

impl DecisionTreeClassifier {
    /// The parameters this tree was fitted with.
    pub fn params(&self) -> &DecisionTreeClassifierParams {
        &self.params
    }
    /// Class names, in index order.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }
    /// The criterion name as scikit-learn prints it.
    pub(crate) fn criterion_name(&self) -> String {
        self.params.criterion.to_string()
    }
    pub(crate) fn class_names_opt(&self) -> Option<&[String]> {
        Some(&self.classes)
    }
}

impl DecisionTreeRegressor {
    /// The parameters this tree was fitted with.
    pub fn params(&self) -> &DecisionTreeRegressorParams {
        &self.params
    }
    pub(crate) fn class_names_opt(&self) -> Option<&[String]> {
        None
    }
    /// The criterion name as scikit-learn 1.9 prints it (`friedman_mse` is `squared_error`).
    pub(crate) fn criterion_name(&self) -> String {
        match self.params.criterion {
            RegCriterion::FriedmanMse => RegCriterion::SquaredError.to_string(),
            c => c.to_string(),
        }
    }
}

impl Predict for DecisionTreeClassifier {
    fn n_features(&self) -> usize {
        self.tree.n_features
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        let leaves = self.apply(x)?;
        Ok(leaves
            .iter()
            .map(|&k| {
                let v = self.tree.node_value(k);
                // First maximum, like numpy's argmax.
                let mut best = 0;
                for (c, &p) in v.iter().enumerate() {
                    if p > v[best] {
                        best = c;
                    }
                }
                best as f64
            })
            .collect())
    }
    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Result<Option<Array2<f64>>> {
        let leaves = self.apply(x)?;
        let k = self.tree.n_values;
        let mut out = Array2::zeros((leaves.len(), k));
        for (r, &leaf) in leaves.iter().enumerate() {
            let v = self.tree.node_value(leaf);
            let s: f64 = v.iter().sum();
            let s = if s == 0.0 { 1.0 } else { s };
            for c in 0..k {
                out[[r, c]] = v[c] / s;
            }
        }
        Ok(Some(out))
    }
}

impl Predict for DecisionTreeRegressor {
    fn n_features(&self) -> usize {
        self.tree.n_features
    }
    fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        let leaves = self.apply(x)?;
        Ok(leaves.iter().map(|&k| self.tree.node_value(k)[0]).collect())
    }
}

/// The JSON part of a stored tree.
#[derive(Serialize, Deserialize)]
struct Stored<P> {
    params: P,
    n_features: usize,
    n_values: usize,
    feature_names: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    classes: Option<Vec<String>>,
}

fn json_err(e: serde_json::Error) -> Error {
    Error::InvalidData(format!("config.json model section: {e}"))
}

fn check_stored<P>(s: &Stored<P>) -> Result<()> {
    if s.feature_names.len() != s.n_features {
        return Err(Error::InvalidData(format!(
            "config.json: {} feature names for {} features",
            s.feature_names.len(),
            s.n_features
        )));
    }
    Ok(())
}

impl Persist for DecisionTreeClassifier {
    const KIND: &'static str = "decision_tree_classifier";
    fn to_parts(&self) -> Result<(serde_json::Value, Tensors)> {
        let s = Stored {
            params: self.params.clone(),
            n_features: self.tree.n_features,
            n_values: self.tree.n_values,
            feature_names: self.feature_names.clone(),
            classes: Some(self.classes.clone()),
        };
        Ok((
            serde_json::to_value(s).map_err(json_err)?,
            self.tree.to_tensors(),
        ))
    }
    fn from_parts(model: &serde_json::Value, tensors: &Tensors) -> Result<Self> {
        let s: Stored<DecisionTreeClassifierParams> =
            serde_json::from_value(model.clone()).map_err(json_err)?;
        check_stored(&s)?;
        let classes = s.classes.unwrap_or_default();
        if classes.len() != s.n_values {
            return Err(Error::InvalidData(format!(
                "config.json: {} class names for {} values per node",
                classes.len(),
                s.n_values
            )));
        }
        Ok(DecisionTreeClassifier {
            tree: TreeArrays::from_tensors(tensors, s.n_features, s.n_values)?,
            params: s.params,
            feature_names: s.feature_names,
            classes,
        })
    }
}

impl Persist for DecisionTreeRegressor {
    const KIND: &'static str = "decision_tree_regressor";
    fn to_parts(&self) -> Result<(serde_json::Value, Tensors)> {
        let s = Stored {
            params: self.params.clone(),
            n_features: self.tree.n_features,
            n_values: 1,
            feature_names: self.feature_names.clone(),
            classes: None,
        };
        Ok((
            serde_json::to_value(s).map_err(json_err)?,
            self.tree.to_tensors(),
        ))
    }
    fn from_parts(model: &serde_json::Value, tensors: &Tensors) -> Result<Self> {
        let s: Stored<DecisionTreeRegressorParams> =
            serde_json::from_value(model.clone()).map_err(json_err)?;
        check_stored(&s)?;
        Ok(DecisionTreeRegressor {
            tree: TreeArrays::from_tensors(tensors, s.n_features, 1)?,
            params: s.params,
            feature_names: s.feature_names,
        })
    }
}
