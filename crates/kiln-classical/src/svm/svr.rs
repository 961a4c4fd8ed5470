//! Fitting and using [`Svr`]: libsvm's epsilon-SVR, `2l` variables `a_i, a_i*` solved by the
//! same SMO solver, and scikit-learn's views of the result (`dual_coef_ = a - a*`,
//! `intercept_ = -rho`).

use kiln_core::{
    check_features, check_finite, Dataset, Error, Fit, Persist, Predict, Result, Tensors,
};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::kernel::{dot, KernelFn, KernelRows};
use super::model::{as_index, cache_bytes, in_pool, max_iter, max_iter_warning, resolve_kernel};
use super::params::SvrParams;
use super::smo::{solve, Problem, SvrQ};

/// A fitted epsilon-SVR.
#[derive(Debug, Clone, PartialEq)]
pub struct Svr {
    kernel: KernelFn,
    support: Vec<usize>,
    support_vectors: Array2<f64>,
    sv_sq: Vec<f64>,
    coef: Vec<f64>,
    rho: f64,
    n_iter: usize,
    warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SvrState {
    kernel: KernelFn,
    n_features: usize,
    n_sv: usize,
    rho: f64,
    n_iter: usize,
    warnings: Vec<String>,
}

impl Fit for SvrParams {
    type Model = Svr;

    fn validate(&self) -> Result<()> {
        self.check()
    }

    fn fit(&self, data: &Dataset) -> Result<Svr> {
        self.validate()?;
        check_finite(data.x.view())?;
        if data.classes.is_some() {
            return Err(Error::InvalidData(
                "SVR needs a regression dataset (numeric target), got class labels".into(),
            ));
        }
        if let Some(i) = data.y.iter().position(|v| !v.is_finite()) {
            return Err(Error::InvalidData(format!(
                "row {}: target {} is not a finite number",
                i + 1,
                data.y[i]
            )));
        }
        let l = data.n_samples();
        if l == 0 {
            return Err(Error::InvalidData("SVR needs at least one sample".into()));
        }
        in_pool(self.solver.threads, || {
            let x = data.x.view();
            let kf = resolve_kernel(&self.kernel, x);
            let s = &self.solver;
            let rows = KernelRows::new(x.iter().copied().collect(), x.ncols(), kf);
            let mut q = SvrQ::new(rows, cache_bytes(s));
            let y = &data.y;
            let mut p = Vec::with_capacity(2 * l);
            p.extend(y.iter().map(|v| self.epsilon - v));
            p.extend(y.iter().map(|v| self.epsilon + v));
            let sol = solve(
                &mut q,
                Problem {
                    p,
                    y: (0..2 * l).map(|t| if t < l { 1.0 } else { -1.0 }).collect(),
                    c: vec![self.c; 2 * l],
                    alpha: vec![0.0; 2 * l],
                    eps: s.tol,
                    shrinking: s.shrinking,
                    max_iter: max_iter(s),
                },
            );
            let alpha: Vec<f64> = (0..l).map(|i| sol.alpha[i] - sol.alpha[i + l]).collect();
            let support: Vec<usize> = (0..l).filter(|&i| alpha[i] != 0.0).collect();
            let coef = support.iter().map(|&i| alpha[i]).collect();
            let support_vectors = x.select(Axis(0), &support);
            let warnings = if sol.hit_max_iter {
                vec![max_iter_warning(s.max_iter, "")]
            } else {
                Vec::new()
            };
            Svr::assemble(
                kf,
                support,
                support_vectors,
                coef,
                sol.rho,
                sol.n_iter,
                warnings,
            )
        })
    }
}

impl Svr {
    fn assemble(
        kernel: KernelFn,
        support: Vec<usize>,
        support_vectors: Array2<f64>,
        coef: Vec<f64>,
        rho: f64,
        n_iter: usize,
        warnings: Vec<String>,
    ) -> Svr {
        let sv_sq = support_vectors
            .rows()
            .into_iter()
            .map(|r| r.dot(&r))
            .collect();
        Svr {
            kernel,
            support,
            support_vectors,
            sv_sq,
            coef,
            rho,
            n_iter,
            warnings,
        }
    }

    /// The kernel with its resolved gamma.
    pub fn kernel(&self) -> KernelFn {
        self.kernel
    }

    /// Indices of the support vectors in the training data (`support_`).
    pub fn support(&self) -> &[usize] {
        &self.support
    }

    /// The support vectors (`support_vectors_`).
    pub fn support_vectors(&self) -> &Array2<f64> {
        &self.support_vectors
    }

    /// Number of support vectors (`n_support_`).
    pub fn n_support(&self) -> usize {
        self.support.len()
    }

    /// `a_i - a_i*` of each support vector, `1 × n_sv` (`dual_coef_`).
    pub fn dual_coef(&self) -> Array2<f64> {
        Array2::from_shape_vec((1, self.coef.len()), self.coef.clone())
            .unwrap_or_else(|_| Array2::zeros((1, 0)))
    }

    /// `-rho` (`intercept_`).
    pub fn intercept(&self) -> f64 {
        -self.rho
    }

    /// SMO iterations (`n_iter_`).
    pub fn n_iter(&self) -> usize {
        self.n_iter
    }

    /// Warnings from fitting (an iteration limit reached), for the caller to show.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether the solver met the tolerance.
    pub fn converged(&self) -> bool {
        self.warnings.is_empty()
    }
}

impl Predict for Svr {
    fn n_features(&self) -> usize {
        self.support_vectors.ncols()
    }

    fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        check_features(self.support_vectors.ncols(), x)?;
        check_finite(x)?;
        let rows: Vec<_> = x.axis_iter(Axis(0)).collect();
        let out: Vec<f64> = rows
            .par_iter()
            .map(|row| {
                let q = row.to_vec();
                let sq = dot(&q, &q);
                self.support_vectors
                    .rows()
                    .into_iter()
                    .zip(&self.sv_sq)
                    .zip(&self.coef)
                    .map(|((sv, &s2), &c)| {
                        let d = sv.as_slice().map_or(0.0, |s| dot(s, &q));
                        c * self.kernel.from_dot(d, sq, s2)
                    })
                    .sum::<f64>()
                    - self.rho
            })
            .collect();
        Ok(Array1::from(out))
    }
}

impl Persist for Svr {
    const KIND: &'static str = "svr";

    fn to_parts(&self) -> Result<(serde_json::Value, Tensors)> {
        let (n_sv, d) = self.support_vectors.dim();
        let state = SvrState {
            kernel: self.kernel,
            n_features: d,
            n_sv,
            rho: self.rho,
            n_iter: self.n_iter,
            warnings: self.warnings.clone(),
        };
        let json = serde_json::to_value(&state)
            .map_err(|e| Error::InvalidData(format!("cannot serialise SVR state: {e}")))?;
        let mut t = Tensors::new();
        t.insert_i64(
            "support",
            &[n_sv],
            self.support.iter().map(|&i| i as i64).collect(),
        );
        t.insert_f64(
            "support_vectors",
            &[n_sv, d],
            self.support_vectors.iter().copied().collect(),
        );
        t.insert_f64("dual_coef", &[1, n_sv], self.coef.clone());
        Ok((json, t))
    }

    fn from_parts(model: &serde_json::Value, tensors: &Tensors) -> Result<Self> {
        let s: SvrState = serde_json::from_value(model.clone())
            .map_err(|e| Error::InvalidData(format!("SVR config: {e}")))?;
        let (n_sv, d) = (s.n_sv, s.n_features);
        let support = tensors
            .i64s("support", Some(&[n_sv]))?
            .iter()
            .map(|&v| as_index(v, usize::MAX, "support"))
            .collect::<Result<Vec<_>>>()?;
        let sv = tensors.f64s("support_vectors", Some(&[n_sv, d]))?;
        let sv = Array2::from_shape_vec((n_sv, d), sv.to_vec())
            .map_err(|e| Error::Shape(e.to_string()))?;
        let coef = tensors.f64s("dual_coef", Some(&[1, n_sv]))?.to_vec();
        Ok(Svr::assemble(
            s.kernel, support, sv, coef, s.rho, s.n_iter, s.warnings,
        ))
    }
}
