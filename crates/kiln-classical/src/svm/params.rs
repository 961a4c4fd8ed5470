//! Hyperparameters of [`SvcParams`] (C-SVC) and [`SvrParams`] (epsilon-SVR), with
//! scikit-learn's names, meanings and defaults, and the enums the CLI parses from flags.

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use kiln_core::{Error, Result};
use serde::{Deserialize, Serialize};

/// The kernel `K(x, z)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kernel {
    /// `x·z`.
    Linear,
    /// `exp(-gamma |x - z|²)`.
    Rbf,
    /// `(gamma x·z + coef0)^degree`.
    Poly,
    /// `tanh(gamma x·z + coef0)`.
    Sigmoid,
}

impl FromStr for Kernel {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "linear" => Ok(Kernel::Linear),
            "rbf" => Ok(Kernel::Rbf),
            "poly" => Ok(Kernel::Poly),
            "sigmoid" => Ok(Kernel::Sigmoid),
            _ => Err(Error::param(
                "kernel",
                s,
                "one of linear, rbf, poly, sigmoid",
            )),
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Kernel::Linear => "linear",
            Kernel::Rbf => "rbf",
            Kernel::Poly => "poly",
            Kernel::Sigmoid => "sigmoid",
        })
    }
}

/// The kernel coefficient of `rbf`, `poly` and `sigmoid`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Gamma {
    /// `1 / (n_features * X.var())` over all values of the training matrix (1 if that
    /// variance is 0), scikit-learn's default.
    Scale,
    /// `1 / n_features`.
    Auto,
    /// This value (at least 0).
    Value(f64),
}

impl FromStr for Gamma {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "scale" => Ok(Gamma::Scale),
            "auto" => Ok(Gamma::Auto),
            other => match other.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(Gamma::Value(v)),
                _ => Err(Error::param(
                    "gamma",
                    s,
                    "scale, auto or a finite number >= 0",
                )),
            },
        }
    }
}

impl fmt::Display for Gamma {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Gamma::Scale => f.write_str("scale"),
            Gamma::Auto => f.write_str("auto"),
            Gamma::Value(v) => write!(f, "{v}"),
        }
    }
}

impl Gamma {
    /// The number this gamma stands for on the training matrix `x`, as scikit-learn resolves
    /// it (`scale` uses the population variance of all values of `x`).
    pub fn resolve(&self, x: ndarray::ArrayView2<'_, f64>) -> f64 {
        let n_features = x.ncols().max(1) as f64;
        match *self {
            Gamma::Value(v) => v,
            Gamma::Auto => 1.0 / n_features,
            Gamma::Scale => {
                let n = x.len() as f64;
                if n == 0.0 {
                    return 1.0;
                }
                let mean = x.iter().sum::<f64>() / n;
                let var = x.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
                if var == 0.0 {
                    1.0
                } else {
                    1.0 / (n_features * var)
                }
            }
        }
    }
}

/// Per-class multipliers of `C`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClassWeight {
    /// `n_samples / (n_classes * count(class))`, scikit-learn's `"balanced"`.
    Balanced,
    /// A weight per class name; classes not named keep weight 1.
    Map(BTreeMap<String, f64>),
}

impl FromStr for ClassWeight {
    type Err = Error;
    /// `balanced`, or `name:weight,name:weight`.
    fn from_str(s: &str) -> Result<Self> {
        if s.eq_ignore_ascii_case("balanced") {
            return Ok(ClassWeight::Balanced);
        }
        let bad = || {
            Error::param(
                "class_weight",
                s,
                "balanced or a list class:weight,class:weight with weights >= 0",
            )
        };
        let mut map = BTreeMap::new();
        for part in s.split(',') {
            let (name, w) = part.rsplit_once(':').ok_or_else(bad)?;
            let w: f64 = w.trim().parse().map_err(|_| bad())?;
            map.insert(name.trim().to_string(), w);
        }
        Ok(ClassWeight::Map(map))
    }
}

/// Shape of [`crate::svm::Svc::decision_function`] for more than two classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecisionShape {
    /// One column per class (scikit-learn's `_ovr_decision_function` of the pairwise
    /// values: votes plus a confidence in (-1/3, 1/3)).
    #[default]
    Ovr,
    /// One column per pair of classes `(0,1), (0,2), ..., (1,2), ...` (libsvm's values).
    Ovo,
}

impl FromStr for DecisionShape {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "ovr" => Ok(DecisionShape::Ovr),
            "ovo" => Ok(DecisionShape::Ovo),
            _ => Err(Error::param("decision_function_shape", s, "ovr or ovo")),
        }
    }
}

/// Kernel and solver settings shared by SVC and SVR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct KernelParams {
    /// Kernel. Default `rbf`.
    pub kernel: Kernel,
    /// Kernel coefficient for rbf, poly and sigmoid. Default `scale`.
    pub gamma: Gamma,
    /// Degree of the poly kernel (>= 0). Default 3.
    pub degree: i32,
    /// Constant term of poly and sigmoid. Default 0.
    pub coef0: f64,
}

impl Default for KernelParams {
    fn default() -> Self {
        KernelParams {
            kernel: Kernel::Rbf,
            gamma: Gamma::Scale,
            degree: 3,
            coef0: 0.0,
        }
    }
}

/// Solver settings shared by SVC and SVR.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SolverParams {
    /// Stopping tolerance on the maximal KKT violation (> 0). Default 1e-3.
    pub tol: f64,
    /// Shrinking heuristic. Default true.
    pub shrinking: bool,
    /// Kernel cache size in MB (> 0). Default 200.
    pub cache_size: f64,
    /// Iteration limit per binary problem, -1 for none. Default -1. Reaching it records a
    /// warning in the fitted model (scikit-learn's ConvergenceWarning).
    pub max_iter: i64,
    /// Worker threads for kernel rows: 0 uses the current rayon pool (all cores unless the
    /// caller installed a smaller pool). Default 0. Results do not depend on it.
    pub threads: usize,
}

impl Default for SolverParams {
    fn default() -> Self {
        SolverParams {
            tol: 1e-3,
            shrinking: true,
            cache_size: 200.0,
            max_iter: -1,
            threads: 0,
        }
    }
}

/// C-support vector classification (libsvm's C-SVC, scikit-learn's `SVC`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SvcParams {
    /// Regularisation `C` (> 0). Default 1.0.
    #[serde(rename = "C")]
    pub c: f64,
    /// Kernel settings. Default rbf, gamma `scale`, degree 3, coef0 0.
    #[serde(flatten)]
    pub kernel: KernelParams,
    /// Solver settings. Default tol 1e-3, shrinking, 200 MB cache, no iteration limit.
    #[serde(flatten)]
    pub solver: SolverParams,
    /// Per-class multipliers of C. Default none (all 1).
    pub class_weight: Option<ClassWeight>,
    /// Fit Platt-scaled probabilities by internal 5-fold cross-validation. Default false.
    pub probability: bool,
    /// Make `predict` return the argmax of `predict_proba` (needs `probability`), so the two
    /// never disagree. Default false (libsvm's pairwise vote, as scikit-learn).
    pub predict_from_proba: bool,
    /// Shape of the decision function for more than two classes. Default `ovr`.
    pub decision_function_shape: DecisionShape,
    /// Break vote ties by the ovr decision function (scikit-learn's `break_ties`; needs
    /// `ovr`). Default false: ties go to the lowest class index, as libsvm.
    pub break_ties: bool,
    /// Seed of the shuffling in the probability cross-validation. Default 0.
    pub seed: u64,
}

impl Default for SvcParams {
    fn default() -> Self {
        SvcParams {
            c: 1.0,
            kernel: KernelParams::default(),
            solver: SolverParams::default(),
            class_weight: None,
            probability: false,
            predict_from_proba: false,
            decision_function_shape: DecisionShape::Ovr,
            break_ties: false,
            seed: 0,
        }
    }
}

/// Epsilon-support vector regression (libsvm's epsilon-SVR, scikit-learn's `SVR`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SvrParams {
    /// Regularisation `C` (> 0). Default 1.0.
    #[serde(rename = "C")]
    pub c: f64,
    /// Width of the insensitive tube (>= 0). Default 0.1.
    pub epsilon: f64,
    /// Kernel settings. Default rbf, gamma `scale`, degree 3, coef0 0.
    #[serde(flatten)]
    pub kernel: KernelParams,
    /// Solver settings. Default tol 1e-3, shrinking, 200 MB cache, no iteration limit.
    #[serde(flatten)]
    pub solver: SolverParams,
}

impl Default for SvrParams {
    fn default() -> Self {
        SvrParams {
            c: 1.0,
            epsilon: 0.1,
            kernel: KernelParams::default(),
            solver: SolverParams::default(),
        }
    }
}

fn check_positive(name: &str, v: f64) -> Result<()> {
    if v.is_finite() && v > 0.0 {
        Ok(())
    } else {
        Err(Error::param(name, v, "a finite number > 0"))
    }
}

impl KernelParams {
    /// Check gamma, degree and coef0.
    pub fn validate(&self) -> Result<()> {
        if let Gamma::Value(g) = self.gamma {
            if !(g.is_finite() && g >= 0.0) {
                return Err(Error::param(
                    "gamma",
                    g,
                    "scale, auto or a finite number >= 0",
                ));
            }
        }
        if self.degree < 0 {
            return Err(Error::param("degree", self.degree, "an integer >= 0"));
        }
        if !self.coef0.is_finite() {
            return Err(Error::param("coef0", self.coef0, "a finite number"));
        }
        Ok(())
    }
}

impl SolverParams {
    /// Check tol, cache_size and max_iter.
    pub fn validate(&self) -> Result<()> {
        check_positive("tol", self.tol)?;
        check_positive("cache_size", self.cache_size)?;
        if self.max_iter < -1 || self.max_iter == 0 {
            return Err(Error::param(
                "max_iter",
                self.max_iter,
                "-1 (no limit) or an integer >= 1",
            ));
        }
        Ok(())
    }
}

impl SvcParams {
    /// Check every hyperparameter, naming the first one out of range.
    pub fn check(&self) -> Result<()> {
        check_positive("C", self.c)?;
        self.kernel.validate()?;
        self.solver.validate()?;
        if let Some(ClassWeight::Map(m)) = &self.class_weight {
            for (k, &w) in m {
                if !(w.is_finite() && w >= 0.0) {
                    return Err(Error::param(
                        &format!("class_weight[{k}]"),
                        w,
                        "a finite weight >= 0",
                    ));
                }
            }
        }
        if self.predict_from_proba && !self.probability {
            return Err(Error::param(
                "predict_from_proba",
                true,
                "false unless probability = true",
            ));
        }
        if self.break_ties && self.decision_function_shape == DecisionShape::Ovo {
            return Err(Error::param(
                "break_ties",
                true,
                "false when decision_function_shape = ovo",
            ));
        }
        Ok(())
    }
}

impl SvrParams {
    /// Check every hyperparameter, naming the first one out of range.
    pub fn check(&self) -> Result<()> {
        check_positive("C", self.c)?;
        if !(self.epsilon.is_finite() && self.epsilon >= 0.0) {
            return Err(Error::param(
                "epsilon",
                self.epsilon,
                "a finite number >= 0",
            ));
        }
        self.kernel.validate()?;
        self.solver.validate()
    }
}
