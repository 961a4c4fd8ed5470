//! Fitting and using [`Svc`]: libsvm's one-vs-one training of C-SVC, Platt probabilities by
//! internal cross-validation, and scikit-learn's views of the result (`dual_coef_`,
//! `intercept_`, `decision_function` in `ovr` or `ovo` shape).

use kiln_core::{
    check_features, check_finite, Dataset, Error, Fit, Persist, Predict, Result, Tensors,
};
use ndarray::{Array1, Array2, ArrayView2, Axis};
use rand::Rng as _;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::kernel::{dot, KernelFn, KernelRows};
use super::params::{ClassWeight, DecisionShape, KernelParams, SolverParams, SvcParams};
use super::probability::{multiclass_probability, sigmoid_predict, sigmoid_train};
use super::smo::{solve, Problem, SvcQ};

/// Smallest pairwise probability used in coupling (libsvm's `min_prob`).
const MIN_PROB: f64 = 1e-7;
/// Folds of the internal cross-validation behind the probabilities (libsvm's `nr_fold`).
const PROB_FOLDS: usize = 5;

pub(super) fn resolve_kernel(kp: &KernelParams, x: ArrayView2<'_, f64>) -> KernelFn {
    KernelFn {
        kernel: kp.kernel,
        gamma: kp.gamma.resolve(x),
        degree: kp.degree,
        coef0: kp.coef0,
    }
}

/// Run `f` in a pool of `threads` workers, or in the current pool when `threads` is 0.
pub(super) fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> Result<T> {
    if threads == 0 {
        return Ok(f());
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build()
        .map_err(|e| Error::Numerical(format!("cannot start {threads} threads: {e}")))?;
    Ok(pool.install(f))
}

fn rows_of(x: ArrayView2<'_, f64>, idx: &[usize]) -> Vec<f64> {
    let mut out = Vec::with_capacity(idx.len() * x.ncols());
    for &i in idx {
        out.extend(x.row(i).iter());
    }
    out
}

pub(super) fn cache_bytes(s: &SolverParams) -> f64 {
    s.cache_size * 1024.0 * 1024.0
}

pub(super) fn max_iter(s: &SolverParams) -> Option<usize> {
    (s.max_iter > 0).then_some(s.max_iter as usize)
}

/// One binary C-SVC: samples `idx` of `x`, `pos[t]` true for the first class. Returns the
/// signed coefficients `y_t a_t`, `rho`, iterations and whether the limit was hit.
fn train_binary(
    x: ArrayView2<'_, f64>,
    idx: &[usize],
    pos: &[bool],
    c_pos: f64,
    c_neg: f64,
    k: KernelFn,
    s: &SolverParams,
) -> (Vec<f64>, f64, usize, bool) {
    let y: Vec<f64> = pos.iter().map(|&p| if p { 1.0 } else { -1.0 }).collect();
    let rows = KernelRows::new(rows_of(x, idx), x.ncols(), k);
    let mut q = SvcQ::new(rows, &y, cache_bytes(s));
    let l = idx.len();
    let sol = solve(
        &mut q,
        Problem {
            p: vec![-1.0; l],
            c: pos.iter().map(|&p| if p { c_pos } else { c_neg }).collect(),
            y: y.clone(),
            alpha: vec![0.0; l],
            eps: s.tol,
            shrinking: s.shrinking,
            max_iter: max_iter(s),
        },
    );
    let coef = sol.alpha.iter().zip(&y).map(|(a, y)| a * y).collect();
    (coef, sol.rho, sol.n_iter, sol.hit_max_iter)
}

/// Decision values of a binary model given by its samples and coefficients.
fn binary_decision(
    x: ArrayView2<'_, f64>,
    train: &[usize],
    coef: &[f64],
    rho: f64,
    k: KernelFn,
    query: &[usize],
) -> Vec<f64> {
    let sv: Vec<usize> = (0..train.len()).filter(|&t| coef[t] != 0.0).collect();
    let sv_idx: Vec<usize> = sv.iter().map(|&t| train[t]).collect();
    let rows = KernelRows::new(rows_of(x, &sv_idx), x.ncols(), k);
    query
        .iter()
        .map(|&qi| {
            let q = x.row(qi).to_vec();
            let sq = dot(&q, &q);
            sv.iter()
                .enumerate()
                .map(|(s, &t)| coef[t] * rows.eval_with(&q, sq, s))
                .sum::<f64>()
                - rho
        })
        .collect()
}

/// libsvm's `svm_binary_svc_probability`: decision values from 5-fold cross-validation in a
/// seeded random order, then Platt's sigmoid. The fold order comes from kiln's ChaCha8
/// generator, so it differs from libsvm's `rand()` (and scikit-learn's) order: A and B agree
/// with scikit-learn's only approximately.
#[allow(clippy::too_many_arguments)]
fn binary_probability(
    x: ArrayView2<'_, f64>,
    idx: &[usize],
    pos: &[bool],
    c_pos: f64,
    c_neg: f64,
    k: KernelFn,
    s: &SolverParams,
    seed: u64,
) -> (f64, f64) {
    let l = idx.len();
    let mut rng = kiln_core::rng(seed);
    let mut perm: Vec<usize> = (0..l).collect();
    for i in 0..l {
        let j = i + rng.random_range(0..l - i);
        perm.swap(i, j);
    }
    let mut dec = vec![0.0; l];
    for f in 0..PROB_FOLDS {
        let (begin, end) = (f * l / PROB_FOLDS, (f + 1) * l / PROB_FOLDS);
        let train: Vec<usize> = perm[..begin].iter().chain(&perm[end..]).copied().collect();
        let n_pos = train.iter().filter(|&&t| pos[t]).count();
        let n_neg = train.len() - n_pos;
        let fixed = match (n_pos > 0, n_neg > 0) {
            (false, false) => Some(0.0),
            (true, false) => Some(1.0),
            (false, true) => Some(-1.0),
            (true, true) => None,
        };
        if let Some(v) = fixed {
            for &t in &perm[begin..end] {
                dec[t] = v;
            }
            continue;
        }
        let tr_idx: Vec<usize> = train.iter().map(|&t| idx[t]).collect();
        let tr_pos: Vec<bool> = train.iter().map(|&t| pos[t]).collect();
        let (coef, rho, _, _) = train_binary(x, &tr_idx, &tr_pos, c_pos, c_neg, k, s);
        let query: Vec<usize> = perm[begin..end].iter().map(|&t| idx[t]).collect();
        let d = binary_decision(x, &tr_idx, &coef, rho, k, &query);
        for (&t, v) in perm[begin..end].iter().zip(d) {
            dec[t] = v;
        }
    }
    sigmoid_train(&dec, pos)
}

/// The warning scikit-learn gives when libsvm stops at `max_iter`.
pub(super) fn max_iter_warning(max_iter: i64, what: &str) -> String {
    format!(
        "solver terminated early (max_iter={max_iter}){what}; consider pre-processing your data \
         with StandardScaler or MinMaxScaler"
    )
}

/// A fitted C-SVC: one-vs-one binary SVMs sharing their support vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct Svc {
    kernel: KernelFn,
    n_classes: usize,
    support: Vec<usize>,
    support_vectors: Array2<f64>,
    sv_sq: Vec<f64>,
    n_support: Vec<usize>,
    /// libsvm's `sv_coef`: `(n_classes - 1) × n_sv`.
    sv_coef: Array2<f64>,
    /// libsvm's `rho`, one per pair.
    rho: Vec<f64>,
    prob_a: Vec<f64>,
    prob_b: Vec<f64>,
    n_iter: Vec<usize>,
    warnings: Vec<String>,
    decision_shape: DecisionShape,
    break_ties: bool,
    predict_from_proba: bool,
}

/// Scalar state of an [`Svc`] as stored in `config.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SvcState {
    kernel: KernelFn,
    n_features: usize,
    n_classes: usize,
    n_support: Vec<usize>,
    rho: Vec<f64>,
    prob_a: Vec<f64>,
    prob_b: Vec<f64>,
    n_iter: Vec<usize>,
    warnings: Vec<String>,
    decision_function_shape: DecisionShape,
    break_ties: bool,
    predict_from_proba: bool,
}

impl SvcParams {
    fn class_weights(&self, data: &Dataset, counts: &[usize]) -> Result<Vec<f64>> {
        let k = counts.len();
        let n: usize = counts.iter().sum();
        match &self.class_weight {
            None => Ok(vec![1.0; k]),
            Some(ClassWeight::Balanced) => Ok(counts
                .iter()
                .map(|&c| n as f64 / (k as f64 * c as f64))
                .collect()),
            Some(ClassWeight::Map(m)) => {
                let names = data.classes.clone().unwrap_or_default();
                for key in m.keys() {
                    if !names.contains(key) {
                        return Err(Error::param(
                            "class_weight",
                            key,
                            &format!("weights for known classes only: {}", names.join(", ")),
                        ));
                    }
                }
                Ok(names
                    .iter()
                    .map(|c| m.get(c).copied().unwrap_or(1.0))
                    .collect())
            }
        }
    }

    // Pair (i, j) and sample positions index several arrays at once, libsvm's layout.
    #[allow(clippy::needless_range_loop)]
    fn fit_inner(&self, data: &Dataset) -> Result<Svc> {
        let x = data.x.view();
        let k = data.n_classes();
        let labels = data.labels();
        let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); k];
        for (i, &c) in labels.iter().enumerate() {
            by_class[c].push(i);
        }
        let counts: Vec<usize> = by_class.iter().map(Vec::len).collect();
        let present = counts.iter().filter(|&&c| c > 0).count();
        if present < 2 {
            return Err(Error::InvalidData(format!(
                "SVC needs samples of at least 2 classes, got {present}"
            )));
        }
        if let Some(empty) = counts.iter().position(|&c| c == 0) {
            let name = data
                .classes
                .as_ref()
                .and_then(|c| c.get(empty).cloned())
                .unwrap_or_else(|| empty.to_string());
            return Err(Error::InvalidData(format!(
                "class {name} has no samples: every class of the dataset must appear in y"
            )));
        }
        let weights = self.class_weights(data, &counts)?;
        let cw: Vec<f64> = weights.iter().map(|w| self.c * w).collect();
        let kf = resolve_kernel(&self.kernel, x);
        let s = &self.solver;

        // Support vectors are ordered by class, then by position in the data (libsvm with
        // scikit-learn's sorted labels).
        let start: Vec<usize> = counts
            .iter()
            .scan(0, |acc, &c| {
                let s = *acc;
                *acc += c;
                Some(s)
            })
            .collect();
        let grouped: Vec<usize> = by_class.concat();
        let n = grouped.len();
        let mut nonzero = vec![false; n];
        let n_pairs = k * (k - 1) / 2;
        let mut coefs: Vec<Vec<f64>> = Vec::with_capacity(n_pairs);
        let (mut rho, mut n_iter, mut warnings) = (Vec::new(), Vec::new(), Vec::new());
        let (mut prob_a, mut prob_b) = (Vec::new(), Vec::new());
        for i in 0..k {
            for j in i + 1..k {
                let idx: Vec<usize> = by_class[i].iter().chain(&by_class[j]).copied().collect();
                let pos: Vec<bool> = (0..idx.len()).map(|t| t < counts[i]).collect();
                if self.probability {
                    let seed = self.seed.wrapping_add(rho.len() as u64);
                    let (a, b) = binary_probability(x, &idx, &pos, cw[i], cw[j], kf, s, seed);
                    prob_a.push(a);
                    prob_b.push(b);
                }
                let (coef, r, it, hit) = train_binary(x, &idx, &pos, cw[i], cw[j], kf, s);
                for (t, &c) in coef.iter().enumerate() {
                    if c != 0.0 {
                        let g = if t < counts[i] {
                            start[i] + t
                        } else {
                            start[j] + t - counts[i]
                        };
                        nonzero[g] = true;
                    }
                }
                if hit {
                    let names = data.classes.clone().unwrap_or_default();
                    let name = |c: usize| names.get(c).cloned().unwrap_or_else(|| c.to_string());
                    warnings.push(max_iter_warning(
                        s.max_iter,
                        &format!(" on classes {} vs {}", name(i), name(j)),
                    ));
                }
                coefs.push(coef);
                rho.push(r);
                n_iter.push(it);
            }
        }

        // Gather support vectors and libsvm's sv_coef layout.
        let mut sv_pos = vec![usize::MAX; n];
        let mut support = Vec::new();
        let mut n_support = vec![0; k];
        for c in 0..k {
            for g in start[c]..start[c] + counts[c] {
                if nonzero[g] {
                    sv_pos[g] = support.len();
                    support.push(grouped[g]);
                    n_support[c] += 1;
                }
            }
        }
        let n_sv = support.len();
        let mut sv_coef = Array2::zeros((k - 1, n_sv));
        let mut p = 0;
        for i in 0..k {
            for j in i + 1..k {
                let coef = &coefs[p];
                for t in 0..counts[i] {
                    let g = start[i] + t;
                    if nonzero[g] {
                        sv_coef[[j - 1, sv_pos[g]]] = coef[t];
                    }
                }
                for t in 0..counts[j] {
                    let g = start[j] + t;
                    if nonzero[g] {
                        sv_coef[[i, sv_pos[g]]] = coef[counts[i] + t];
                    }
                }
                p += 1;
            }
        }
        let support_vectors = x.select(Axis(0), &support);
        Ok(Svc::assemble(
            kf,
            k,
            support,
            support_vectors,
            n_support,
            sv_coef,
            rho,
            prob_a,
            prob_b,
            n_iter,
            warnings,
            self,
        ))
    }
}

impl Fit for SvcParams {
    type Model = Svc;

    fn validate(&self) -> Result<()> {
        self.check()
    }

    fn fit(&self, data: &Dataset) -> Result<Svc> {
        self.validate()?;
        check_finite(data.x.view())?;
        if data.classes.is_none() {
            return Err(Error::InvalidData(
                "SVC needs a classification dataset (class labels), got a regression target".into(),
            ));
        }
        in_pool(self.solver.threads, || self.fit_inner(data))?
    }
}

impl Svc {
    #[allow(clippy::too_many_arguments)]
    fn assemble(
        kernel: KernelFn,
        n_classes: usize,
        support: Vec<usize>,
        support_vectors: Array2<f64>,
        n_support: Vec<usize>,
        sv_coef: Array2<f64>,
        rho: Vec<f64>,
        prob_a: Vec<f64>,
        prob_b: Vec<f64>,
        n_iter: Vec<usize>,
        warnings: Vec<String>,
        p: &SvcParams,
    ) -> Svc {
        let sv_sq = support_vectors
            .rows()
            .into_iter()
            .map(|r| r.dot(&r))
            .collect();
        Svc {
            kernel,
            n_classes,
            support,
            support_vectors,
            sv_sq,
            n_support,
            sv_coef,
            rho,
            prob_a,
            prob_b,
            n_iter,
            warnings,
            decision_shape: p.decision_function_shape,
            break_ties: p.break_ties,
            predict_from_proba: p.predict_from_proba,
        }
    }

    /// Number of classes.
    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// The kernel with its resolved gamma.
    pub fn kernel(&self) -> KernelFn {
        self.kernel
    }

    /// Indices of the support vectors in the training data, by class then position
    /// (scikit-learn's `support_`).
    pub fn support(&self) -> &[usize] {
        &self.support
    }

    /// The support vectors, `n_sv × n_features` (`support_vectors_`).
    pub fn support_vectors(&self) -> &Array2<f64> {
        &self.support_vectors
    }

    /// Support vectors per class (`n_support_`).
    pub fn n_support(&self) -> &[usize] {
        &self.n_support
    }

    /// scikit-learn's `dual_coef_`: `(n_classes - 1) × n_sv`, `y_i a_i` in libsvm's one-vs-one
    /// layout; for two classes negated so that positive values vote for class 1.
    pub fn dual_coef(&self) -> Array2<f64> {
        if self.n_classes == 2 {
            -&self.sv_coef
        } else {
            self.sv_coef.clone()
        }
    }

    /// scikit-learn's `intercept_`: `-rho` per pair, negated again for two classes.
    pub fn intercept(&self) -> Array1<f64> {
        let sign = if self.n_classes == 2 { 1.0 } else { -1.0 };
        self.rho.iter().map(|r| sign * r).collect()
    }

    /// Platt parameters `A` per pair (`probA_`), empty without `probability`.
    pub fn prob_a(&self) -> &[f64] {
        &self.prob_a
    }

    /// Platt parameters `B` per pair (`probB_`), empty without `probability`.
    pub fn prob_b(&self) -> &[f64] {
        &self.prob_b
    }

    /// SMO iterations per pair of classes (`n_iter_`).
    pub fn n_iter(&self) -> &[usize] {
        &self.n_iter
    }

    /// Warnings from fitting (an iteration limit reached), for the caller to show.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Whether every binary problem met the tolerance.
    pub fn converged(&self) -> bool {
        self.warnings.is_empty()
    }

    /// libsvm's one-vs-one decision values, `n × n_pairs`, pairs `(0,1), (0,2), ..., (1,2)`;
    /// positive values vote for the first class of the pair.
    pub fn decision_ovo(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        check_features(self.support_vectors.ncols(), x)?;
        check_finite(x)?;
        let k = self.n_classes;
        let n_pairs = k * (k - 1) / 2;
        let start: Vec<usize> = self
            .n_support
            .iter()
            .scan(0, |acc, &c| {
                let s = *acc;
                *acc += c;
                Some(s)
            })
            .collect();
        let mut out = Array2::zeros((x.nrows(), n_pairs));
        out.axis_iter_mut(Axis(0))
            .into_par_iter()
            .zip(x.axis_iter(Axis(0)).into_par_iter())
            .for_each(|(mut o, row)| {
                let q: Vec<f64> = row.to_vec();
                let sq = dot(&q, &q);
                let kv: Vec<f64> = self
                    .support_vectors
                    .rows()
                    .into_iter()
                    .zip(&self.sv_sq)
                    .map(|(sv, &s2)| {
                        let d = sv.as_slice().map_or(0.0, |s| dot(s, &q));
                        self.kernel.from_dot(d, sq, s2)
                    })
                    .collect();
                let mut p = 0;
                for i in 0..k {
                    for j in i + 1..k {
                        let (si, sj) = (start[i], start[j]);
                        let (ci, cj) = (self.n_support[i], self.n_support[j]);
                        let a: f64 = (si..si + ci)
                            .map(|s| self.sv_coef[[j - 1, s]] * kv[s])
                            .sum();
                        let b: f64 = (sj..sj + cj).map(|s| self.sv_coef[[i, s]] * kv[s]).sum();
                        o[p] = a + b - self.rho[p];
                        p += 1;
                    }
                }
            });
        Ok(out)
    }

    /// scikit-learn's `decision_function`: for two classes one column, positive for class 1;
    /// otherwise the one-vs-one values (`ovo`) or one column per class (`ovr`).
    pub fn decision_function(&self, x: ArrayView2<'_, f64>) -> Result<Array2<f64>> {
        let dec = self.decision_ovo(x)?;
        if self.n_classes == 2 {
            return Ok(-dec);
        }
        Ok(match self.decision_shape {
            DecisionShape::Ovo => dec,
            DecisionShape::Ovr => ovr_decision(&dec, self.n_classes),
        })
    }

    #[allow(clippy::needless_range_loop)]
    fn proba_from_ovo(&self, dec: &Array2<f64>) -> Result<Array2<f64>> {
        if self.prob_a.is_empty() {
            return Err(Error::InvalidData(
                "this SVC was fitted without probability = true, so it has no probabilities".into(),
            ));
        }
        let k = self.n_classes;
        let mut out = Array2::zeros((dec.nrows(), k));
        for (r, d) in dec.axis_iter(Axis(0)).enumerate() {
            let mut pw = vec![vec![0.0; k]; k];
            let mut p = 0;
            for i in 0..k {
                for j in i + 1..k {
                    let v = sigmoid_predict(d[p], self.prob_a[p], self.prob_b[p])
                        .clamp(MIN_PROB, 1.0 - MIN_PROB);
                    pw[i][j] = v;
                    pw[j][i] = 1.0 - v;
                    p += 1;
                }
            }
            let probs = if k == 2 {
                vec![pw[0][1], pw[1][0]]
            } else {
                multiclass_probability(k, &pw)
            };
            for (c, v) in probs.into_iter().enumerate() {
                out[[r, c]] = v;
            }
        }
        Ok(out)
    }

    fn argmax(row: ndarray::ArrayView1<'_, f64>) -> usize {
        let mut best = 0;
        for (c, &v) in row.iter().enumerate() {
            if v > row[best] {
                best = c;
            }
        }
        best
    }
}

/// scikit-learn's `_ovr_decision_function(dec < 0, -dec, k)`: votes per class plus the summed
/// confidences squashed into (-1/3, 1/3).
pub fn ovr_decision(dec: &Array2<f64>, k: usize) -> Array2<f64> {
    let n = dec.nrows();
    let mut votes = Array2::<f64>::zeros((n, k));
    let mut conf = Array2::<f64>::zeros((n, k));
    for r in 0..n {
        let mut p = 0;
        for i in 0..k {
            for j in i + 1..k {
                let d = dec[[r, p]];
                conf[[r, i]] += d;
                conf[[r, j]] -= d;
                if d < 0.0 {
                    votes[[r, j]] += 1.0;
                } else {
                    votes[[r, i]] += 1.0;
                }
                p += 1;
            }
        }
    }
    votes + conf.mapv(|c| c / (3.0 * (c.abs() + 1.0)))
}

impl Predict for Svc {
    fn n_features(&self) -> usize {
        self.support_vectors.ncols()
    }

    fn predict(&self, x: ArrayView2<'_, f64>) -> Result<Array1<f64>> {
        let dec = self.decision_ovo(x)?;
        let k = self.n_classes;
        if self.predict_from_proba {
            let p = self.proba_from_ovo(&dec)?;
            return Ok(p
                .axis_iter(Axis(0))
                .map(|r| Svc::argmax(r) as f64)
                .collect());
        }
        if self.break_ties && k > 2 {
            let ovr = ovr_decision(&dec, k);
            return Ok(ovr
                .axis_iter(Axis(0))
                .map(|r| Svc::argmax(r) as f64)
                .collect());
        }
        let mut out = Array1::zeros(x.nrows());
        for (r, d) in dec.axis_iter(Axis(0)).enumerate() {
            let mut votes = vec![0usize; k];
            let mut p = 0;
            for i in 0..k {
                for j in i + 1..k {
                    if d[p] > 0.0 {
                        votes[i] += 1;
                    } else {
                        votes[j] += 1;
                    }
                    p += 1;
                }
            }
            let mut best = 0;
            for c in 1..k {
                if votes[c] > votes[best] {
                    best = c;
                }
            }
            out[r] = best as f64;
        }
        Ok(out)
    }

    fn predict_proba(&self, x: ArrayView2<'_, f64>) -> Result<Option<Array2<f64>>> {
        if self.prob_a.is_empty() {
            return Ok(None);
        }
        let dec = self.decision_ovo(x)?;
        self.proba_from_ovo(&dec).map(Some)
    }
}

fn shape_err(what: &str, expected: usize, got: usize) -> Error {
    Error::Shape(format!("{what}: expected {expected}, got {got}"))
}

pub(super) fn as_index(v: i64, bound: usize, what: &str) -> Result<usize> {
    usize::try_from(v)
        .ok()
        .filter(|&u| u < bound || bound == usize::MAX)
        .ok_or_else(|| Error::Shape(format!("{what}: index {v} out of range")))
}

impl Persist for Svc {
    const KIND: &'static str = "svc";

    fn to_parts(&self) -> Result<(serde_json::Value, Tensors)> {
        let state = SvcState {
            kernel: self.kernel,
            n_features: self.support_vectors.ncols(),
            n_classes: self.n_classes,
            n_support: self.n_support.clone(),
            rho: self.rho.clone(),
            prob_a: self.prob_a.clone(),
            prob_b: self.prob_b.clone(),
            n_iter: self.n_iter.clone(),
            warnings: self.warnings.clone(),
            decision_function_shape: self.decision_shape,
            break_ties: self.break_ties,
            predict_from_proba: self.predict_from_proba,
        };
        let json = serde_json::to_value(&state)
            .map_err(|e| Error::InvalidData(format!("cannot serialise SVC state: {e}")))?;
        let mut t = Tensors::new();
        let (n_sv, d) = self.support_vectors.dim();
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
        t.insert_f64(
            "sv_coef",
            &[self.n_classes - 1, n_sv],
            self.sv_coef.iter().copied().collect(),
        );
        Ok((json, t))
    }

    fn from_parts(model: &serde_json::Value, tensors: &Tensors) -> Result<Self> {
        let s: SvcState = serde_json::from_value(model.clone())
            .map_err(|e| Error::InvalidData(format!("SVC config: {e}")))?;
        let k = s.n_classes;
        if k < 2 {
            return Err(shape_err("SVC n_classes (at least 2)", 2, k));
        }
        let n_pairs = k * (k - 1) / 2;
        if s.n_support.len() != k {
            return Err(shape_err("SVC n_support length", k, s.n_support.len()));
        }
        if s.rho.len() != n_pairs {
            return Err(shape_err("SVC rho length", n_pairs, s.rho.len()));
        }
        if !(s.prob_a.is_empty() || s.prob_a.len() == n_pairs) || s.prob_b.len() != s.prob_a.len() {
            return Err(shape_err(
                "SVC prob_a/prob_b length",
                n_pairs,
                s.prob_a.len(),
            ));
        }
        let n_sv: usize = s.n_support.iter().sum();
        let d = s.n_features;
        let support = tensors
            .i64s("support", Some(&[n_sv]))?
            .iter()
            .map(|&v| as_index(v, usize::MAX, "support"))
            .collect::<Result<Vec<_>>>()?;
        let sv = tensors.f64s("support_vectors", Some(&[n_sv, d]))?;
        let sv = Array2::from_shape_vec((n_sv, d), sv.to_vec())
            .map_err(|e| Error::Shape(e.to_string()))?;
        let coef = tensors.f64s("sv_coef", Some(&[k - 1, n_sv]))?;
        let coef = Array2::from_shape_vec((k - 1, n_sv), coef.to_vec())
            .map_err(|e| Error::Shape(e.to_string()))?;
        let params = SvcParams {
            decision_function_shape: s.decision_function_shape,
            break_ties: s.break_ties,
            predict_from_proba: s.predict_from_proba,
            ..SvcParams::default()
        };
        Ok(Svc::assemble(
            s.kernel,
            k,
            support,
            sv,
            s.n_support,
            coef,
            s.rho,
            s.prob_a,
            s.prob_b,
            s.n_iter,
            s.warnings,
            &params,
        ))
    }
}
