//! Seeded synthetic datasets with the meaning, parameters and defaults of scikit-learn's
//! `make_regression`, `make_classification` and `make_blobs`
//! (`sklearn/datasets/_samples_generator.py`, scikit-learn 1.9.1).
//!
//! The distributions and parameters match scikit-learn's; the random stream does not (kiln
//! draws from ChaCha8, [`kiln_core::rng`]). Parameters (coefficients, centres, covariances,
//! permutations) come from the seeded generator in order; the samples are then drawn in
//! parallel, each sample from its own ChaCha stream of that generator, so the output depends on
//! the seed only, never on the number of threads, and shuffling costs no extra pass.
//!
//! ```
//! use kiln_data::synthetic::{make_regression, RegressionParams};
//! let p = RegressionParams { n_samples: 50, n_features: 5, n_informative: 2, ..Default::default() };
//! let r = make_regression(&p, 7).unwrap();
//! assert_eq!(r.data.x.dim(), (50, 5));
//! // Without noise the target is exactly X·coef + bias.
//! let y = r.data.x.dot(&r.coef);
//! assert!((&y - &r.data.y).iter().all(|d| d.abs() < 1e-9));
//! ```

use std::collections::HashSet;

use kiln_core::Dataset;
use ndarray::{s, Array1, Array2, Axis};
use rand::seq::SliceRandom;
use rand::Rng as _;
use rand_distr::StandardNormal;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::Result;

type CoreError = kiln_core::Error;

/// Values per independent random stream in [`standard_normal`].
const CHUNK: usize = 1 << 16;

/// Stream tags: stream 0 is the sequential generator (parameters, permutations); sample `i`
/// draws from stream `TAG_SAMPLE << 40 | i`; the low-rank bases fill from `tag << 40 | chunk`.
const TAG_SAMPLE: u64 = 1;
const TAG_U: u64 = 2;
const TAG_V: u64 = 3;

/// One number for every item, or one number per item (scikit-learn's "float or array-like").
/// In JSON: `1.5` or `[1.0, 2.0]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrEach {
    /// The same value for every item.
    One(f64),
    /// One value per item.
    Each(Vec<f64>),
}

impl OneOrEach {
    fn values(&self, n: usize) -> Vec<f64> {
        match self {
            OneOrEach::One(v) => vec![*v; n],
            OneOrEach::Each(v) => v.clone(),
        }
    }

    /// Check the length (for `Each`) and that every value passes `ok`.
    fn check(
        &self,
        name: &str,
        n: usize,
        items: &str,
        ok: fn(f64) -> bool,
        range: &str,
    ) -> Result<()> {
        if let OneOrEach::Each(v) = self {
            if v.len() != n {
                return Err(CoreError::param(
                    name,
                    format!("a list of {}", v.len()),
                    &format!("one value or a list of {n} (one per {items})"),
                )
                .into());
            }
        }
        for v in self.values(n) {
            if !ok(v) {
                return Err(CoreError::param(name, v, range).into());
            }
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// make_regression
// ---------------------------------------------------------------------------------------------

/// Parameters of [`make_regression`] (scikit-learn's `make_regression`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RegressionParams {
    /// Number of samples, at least 1. Default 100.
    pub n_samples: usize,
    /// Number of features, at least 1. Default 100.
    pub n_features: usize,
    /// Number of features the target depends on, 0..=n_features (scikit-learn silently
    /// clips larger values; kiln rejects them). Default 10.
    pub n_informative: usize,
    /// Number of targets, at least 1; [`Dataset::y`] holds the first, [`MadeRegression::targets`]
    /// all of them. Default 1.
    pub n_targets: usize,
    /// Added to every target, finite. Default 0.0.
    pub bias: f64,
    /// `None` draws the features i.i.d. from N(0, 1) (well conditioned). `Some(r)` draws them
    /// from a low-rank matrix whose singular values follow a bell of width `r` plus a fat tail
    /// (scikit-learn's `make_low_rank_matrix`); `r` at least 1. Default `None`.
    pub effective_rank: Option<usize>,
    /// Share of the singular-value profile in the fat tail when `effective_rank` is set,
    /// in [0, 1]. Default 0.5.
    pub tail_strength: f64,
    /// Standard deviation of the Gaussian noise added to the targets, at least 0. Default 0.0.
    pub noise: f64,
    /// Shuffle the samples and the features (otherwise the informative features come first).
    /// Default true.
    pub shuffle: bool,
}

impl Default for RegressionParams {
    fn default() -> Self {
        RegressionParams {
            n_samples: 100,
            n_features: 100,
            n_informative: 10,
            n_targets: 1,
            bias: 0.0,
            effective_rank: None,
            tail_strength: 0.5,
            noise: 0.0,
            shuffle: true,
        }
    }
}

impl RegressionParams {
    /// Check every parameter against its allowed range.
    pub fn validate(&self) -> Result<()> {
        at_least("n_samples", self.n_samples, 1)?;
        at_least("n_features", self.n_features, 1)?;
        fits_in_memory(self.n_samples, self.n_features)?;
        if self.n_informative > self.n_features {
            return Err(CoreError::param(
                "n_informative",
                self.n_informative,
                &format!("at most n_features = {}", self.n_features),
            )
            .into());
        }
        at_least("n_targets", self.n_targets, 1)?;
        if !self.bias.is_finite() {
            return Err(CoreError::param("bias", self.bias, "a finite number").into());
        }
        if let Some(r) = self.effective_rank {
            at_least("effective_rank", r, 1)?;
        }
        if !(0.0..=1.0).contains(&self.tail_strength) {
            return Err(CoreError::param("tail_strength", self.tail_strength, "in [0, 1]").into());
        }
        if !(self.noise >= 0.0 && self.noise.is_finite()) {
            return Err(CoreError::param("noise", self.noise, "a finite number >= 0").into());
        }
        Ok(())
    }
}

/// What [`make_regression`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct MadeRegression {
    /// The samples; features `x0, x1, ...`, target `y` (the first target).
    pub data: Dataset,
    /// The true coefficients of the first target, one per feature (zero for the
    /// non-informative ones): without noise, `y = x · coef + bias` exactly.
    pub coef: Array1<f64>,
    /// All targets, `n_samples × n_targets`; column 0 equals `data.y`.
    pub targets: Array2<f64>,
    /// All true coefficients, `n_features × n_targets`.
    pub coefs: Array2<f64>,
}

/// A random regression problem: a linear model with `n_informative` non-zero coefficients,
/// drawn from U(0, 100), applied to Gaussian (or low-rank) features, plus `bias` and Gaussian
/// noise. Same seed, same output.
pub fn make_regression(p: &RegressionParams, seed: u64) -> Result<MadeRegression> {
    p.validate()?;
    let mut rng = kiln_core::rng(seed);
    let base = kiln_core::rng(seed);
    let (n, f, t, n_inf) = (p.n_samples, p.n_features, p.n_targets, p.n_informative);
    // Low-rank features are made whole; Gaussian ones row by row below.
    let low_rank = match p.effective_rank {
        None => None,
        Some(rank) => Some(low_rank_matrix(n, f, rank, p.tail_strength, seed)?),
    };

    // Only the first n_informative features carry weight.
    let mut coefs = Array2::<f64>::zeros((f, t));
    for v in coefs.slice_mut(s![..n_inf, ..]).iter_mut() {
        *v = 100.0 * rng.random::<f64>();
    }
    let (rows, cols) = shuffled_order(n, f, p.shuffle, &mut rng);

    // Output row r is sample rows[r]: its features (in the order cols), its targets
    // y = x · coefs + bias + noise.
    let mut x = Array2::<f64>::zeros((n, f));
    let mut targets = Array2::<f64>::zeros((n, t));
    x.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(targets.axis_iter_mut(Axis(0)))
        .zip(rows.par_iter())
        .for_each_init(
            || vec![0.0; f],
            |z, ((mut xr, mut yr), &src)| {
                let mut rng = sample_rng(&base, src);
                match &low_rank {
                    Some(m) => z.iter_mut().zip(m.row(src)).for_each(|(v, &m)| *v = m),
                    None => z.iter_mut().for_each(|v| *v = rng.sample(StandardNormal)),
                }
                for (k, y) in yr.iter_mut().enumerate() {
                    let mut acc = p.bias;
                    for (j, &zj) in z.iter().take(n_inf).enumerate() {
                        acc += zj * coefs[[j, k]];
                    }
                    if p.noise > 0.0 {
                        acc += p.noise * rng.sample::<f64, _>(StandardNormal);
                    }
                    *y = acc;
                }
                for (o, &c) in xr.iter_mut().zip(&cols) {
                    *o = z[c];
                }
            },
        );
    let coefs = coefs.select(Axis(0), &cols);
    let y = targets.column(0).to_owned();
    let coef = coefs.column(0).to_owned();
    let data = Dataset::regression(x, y, Dataset::default_feature_names(f), "y")?;
    Ok(MadeRegression {
        data,
        coef,
        targets,
        coefs,
    })
}

/// A `n_samples × n_features` matrix `U diag(s) Vᵀ` with random orthonormal `U`, `V` and the
/// singular profile `s_k = (1 - tail) exp(-(k / rank)²) + tail exp(-0.1 k / rank)`
/// (scikit-learn's `make_low_rank_matrix`).
fn low_rank_matrix(
    n_samples: usize,
    n_features: usize,
    rank: usize,
    tail: f64,
    seed: u64,
) -> Result<Array2<f64>> {
    let n = n_samples.min(n_features);
    // Rows of ut / vt are the orthonormal columns of U / V.
    let mut ut = standard_normal(n, n_samples, seed, TAG_U);
    orthonormalize_rows(&mut ut)?;
    let mut vt = standard_normal(n, n_features, seed, TAG_V);
    orthonormalize_rows(&mut vt)?;
    for (k, mut row) in vt.axis_iter_mut(Axis(0)).enumerate() {
        row *= singular_value(k, rank, tail);
    }
    Ok(ut.t().dot(&vt))
}

/// The `k`-th singular value of [`low_rank_matrix`].
fn singular_value(k: usize, rank: usize, tail: f64) -> f64 {
    let r = k as f64 / rank as f64;
    (1.0 - tail) * (-r * r).exp() + tail * (-0.1 * r).exp()
}

/// Orthonormalize the rows of `a` (rows <= columns), keeping the span of each leading set of
/// rows: the `Q` of the QR factorization with a positive diagonal, as Gram-Schmidt gives.
///
/// Fast path, Cholesky QR twice (CholQR2): with `G = A Aᵀ = L Lᵀ`, the rows of `L⁻¹ A` are
/// orthonormal; two passes bring them to machine precision. It needs only matrix products, so
/// it runs at matrix-multiply speed on tall bases (a 1,000,000-long basis of 50 vectors).
/// When `G` is too ill-conditioned for Cholesky, it falls back to [`gram_schmidt_rows`], the
/// plain version the tests compare it with.
fn orthonormalize_rows(a: &mut Array2<f64>) -> Result<()> {
    for _pass in 0..2 {
        let gram = a.dot(&a.t());
        match inverse_cholesky(&gram) {
            Some(l_inv) => *a = l_inv.dot(a),
            None => return gram_schmidt_rows(a),
        }
    }
    Ok(())
}

/// `L⁻¹` for the Cholesky factor `G = L Lᵀ` of a symmetric matrix, or `None` when a pivot is
/// not safely positive (relative to the largest diagonal entry).
fn inverse_cholesky(g: &Array2<f64>) -> Option<Array2<f64>> {
    let n = g.nrows();
    let scale = g.diag().iter().fold(0.0f64, |m, &v| m.max(v));
    let mut l = Array2::<f64>::zeros((n, n));
    for j in 0..n {
        let pivot = g[[j, j]] - (0..j).map(|k| l[[j, k]] * l[[j, k]]).sum::<f64>();
        if pivot.is_nan() || pivot <= 1e-10 * scale {
            return None;
        }
        let d = pivot.sqrt();
        l[[j, j]] = d;
        for i in j + 1..n {
            let v = g[[i, j]] - (0..j).map(|k| l[[i, k]] * l[[j, k]]).sum::<f64>();
            l[[i, j]] = v / d;
        }
    }
    // Forward substitution, column by column of the identity.
    let mut inv = Array2::<f64>::zeros((n, n));
    for c in 0..n {
        for i in c..n {
            let rhs = if i == c { 1.0 } else { 0.0 };
            let acc: f64 = (c..i).map(|k| l[[i, k]] * inv[[k, c]]).sum();
            inv[[i, c]] = (rhs - acc) / l[[i, i]];
        }
    }
    Some(inv)
}

/// Gram-Schmidt with re-orthogonalization (CGS2) on the rows of `a` (rows <= columns).
fn gram_schmidt_rows(a: &mut Array2<f64>) -> Result<()> {
    for j in 0..a.nrows() {
        let (done, mut rest) = a.view_mut().split_at(Axis(0), j);
        let mut v = rest.row_mut(0);
        for _pass in 0..2 {
            let r = done.dot(&v); // (j)
            v -= &done.t().dot(&r);
        }
        let norm = v.dot(&v).sqrt();
        if norm.is_nan() || norm <= 1e-10 {
            return Err(CoreError::Numerical(
                "random basis is rank deficient (retry another seed)".into(),
            )
            .into());
        }
        v /= norm;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// make_classification
// ---------------------------------------------------------------------------------------------

/// Parameters of [`make_classification`] (scikit-learn's `make_classification`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ClassificationParams {
    /// Number of samples, at least 1. Default 100.
    pub n_samples: usize,
    /// Total number of features, at least 1 and at least
    /// `n_informative + n_redundant + n_repeated`; the rest are pure noise. Default 20.
    pub n_features: usize,
    /// Number of informative features, at least 1 and with
    /// `n_classes * n_clusters_per_class <= 2**n_informative`. Default 2.
    pub n_informative: usize,
    /// Number of redundant features (random linear combinations of the informative ones).
    /// Default 2.
    pub n_redundant: usize,
    /// Number of features copied from informative and redundant ones. Default 0.
    pub n_repeated: usize,
    /// Number of classes, at least 1. Default 2.
    pub n_classes: usize,
    /// Number of Gaussian clusters per class, at least 1. Default 2.
    pub n_clusters_per_class: usize,
    /// Share of samples in each class: `n_classes` values, or `n_classes - 1` with the last
    /// class taking `1 - sum`; each in [0, 1], summing to at most 1 (a shortfall is spread
    /// over the clusters in turn). Default `None`: balanced classes.
    pub weights: Option<Vec<f64>>,
    /// Share of samples whose class is replaced by a random one (so about
    /// `flip_y * (1 - 1/n_classes)` end up wrong), in [0, 1]. Default 0.01.
    pub flip_y: f64,
    /// Half the side of the hypercube whose vertices hold the cluster centres, > 0. Default 1.0.
    pub class_sep: f64,
    /// Put the cluster centres on the vertices of a hypercube (otherwise of a random
    /// polytope). Default true.
    pub hypercube: bool,
    /// Added to the features: one value, one per feature, or `None` for random values in
    /// `[-class_sep, class_sep]`. Applied before `scale`. Default `Some(One(0.0))`.
    pub shift: Option<OneOrEach>,
    /// Multiplies the features: one value, one per feature (each > 0), or `None` for random
    /// values in `[1, 101]`. Default `Some(One(1.0))`.
    pub scale: Option<OneOrEach>,
    /// Shuffle the samples and the features (otherwise the informative, redundant, repeated and
    /// noise features come in that order). Default true.
    pub shuffle: bool,
}

impl Default for ClassificationParams {
    fn default() -> Self {
        ClassificationParams {
            n_samples: 100,
            n_features: 20,
            n_informative: 2,
            n_redundant: 2,
            n_repeated: 0,
            n_classes: 2,
            n_clusters_per_class: 2,
            weights: None,
            flip_y: 0.01,
            class_sep: 1.0,
            hypercube: true,
            shift: Some(OneOrEach::One(0.0)),
            scale: Some(OneOrEach::One(1.0)),
            shuffle: true,
        }
    }
}

impl ClassificationParams {
    /// Check every parameter against its allowed range.
    pub fn validate(&self) -> Result<()> {
        at_least("n_samples", self.n_samples, 1)?;
        at_least("n_features", self.n_features, 1)?;
        fits_in_memory(self.n_samples, self.n_features)?;
        at_least("n_informative", self.n_informative, 1)?;
        at_least("n_classes", self.n_classes, 1)?;
        at_least("n_clusters_per_class", self.n_clusters_per_class, 1)?;
        let used = self
            .n_informative
            .saturating_add(self.n_redundant)
            .saturating_add(self.n_repeated);
        if used > self.n_features {
            return Err(CoreError::param(
                "n_features",
                self.n_features,
                &format!(
                    "at least n_informative + n_redundant + n_repeated = {} + {} + {} = {used}",
                    self.n_informative, self.n_redundant, self.n_repeated
                ),
            )
            .into());
        }
        let clusters = self.n_classes.saturating_mul(self.n_clusters_per_class);
        let cube_bits = self.n_informative.min(30);
        if clusters > 1usize << cube_bits {
            let limit = if self.n_informative <= 30 {
                format!(
                    "2**n_informative = 2**{} = {}",
                    self.n_informative,
                    1usize << cube_bits
                )
            } else {
                format!("2**30 = {}", 1usize << 30)
            };
            return Err(CoreError::param(
                "n_classes * n_clusters_per_class",
                format!(
                    "{} * {} = {clusters}",
                    self.n_classes, self.n_clusters_per_class
                ),
                &format!("at most {limit} (one hypercube vertex per cluster)"),
            )
            .into());
        }
        if let Some(w) = &self.weights {
            let k = self.n_classes;
            if w.len() != k && w.len() + 1 != k {
                return Err(CoreError::param(
                    "weights",
                    format!("{} values", w.len()),
                    &format!("n_classes = {k} values, or n_classes - 1 = {}", k - 1),
                )
                .into());
            }
            if let Some(bad) = w.iter().find(|v| !(0.0..=1.0).contains(*v)) {
                return Err(CoreError::param("weights", bad, "each in [0, 1]").into());
            }
            let sum: f64 = w.iter().sum();
            if sum > 1.0 + 1e-9 {
                return Err(CoreError::param(
                    "weights",
                    format!("summing to {sum}"),
                    "a sum of at most 1",
                )
                .into());
            }
        }
        if !(0.0..=1.0).contains(&self.flip_y) {
            return Err(CoreError::param("flip_y", self.flip_y, "in [0, 1]").into());
        }
        if !(self.class_sep > 0.0 && self.class_sep.is_finite()) {
            return Err(
                CoreError::param("class_sep", self.class_sep, "a finite number > 0").into(),
            );
        }
        let f = self.n_features;
        if let Some(shift) = &self.shift {
            shift.check("shift", f, "feature", f64::is_finite, "a finite number")?;
        }
        if let Some(scale) = &self.scale {
            scale.check(
                "scale",
                f,
                "feature",
                |v| v > 0.0 && v.is_finite(),
                "a finite number > 0",
            )?;
        }
        Ok(())
    }
}

/// A random classification problem (Guyon's Madelon design): each class is made of
/// `n_clusters_per_class` Gaussian clusters with random covariance, centred on vertices of a
/// hypercube of side `2 * class_sep` in the informative subspace; redundant features are random
/// linear combinations of the informative ones, repeated features copies, the rest noise.
/// Classes are named `"0".."n_classes-1"`; features `x0, x1, ...`; target `y`.
pub fn make_classification(p: &ClassificationParams, seed: u64) -> Result<Dataset> {
    p.validate()?;
    let mut rng = kiln_core::rng(seed);
    let (n, f, k) = (p.n_samples, p.n_features, p.n_classes);
    let (n_inf, n_red, n_rep) = (p.n_informative, p.n_redundant, p.n_repeated);
    let n_clusters = k * p.n_clusters_per_class;

    let weights: Vec<f64> = match &p.weights {
        None => vec![1.0 / k as f64; k],
        Some(w) if w.len() + 1 == k => {
            let mut w = w.clone();
            w.push((1.0 - w.iter().sum::<f64>()).max(0.0));
            w
        }
        Some(w) => w.clone(),
    };
    // Samples per cluster by weight; the shortfall goes to the clusters in turn.
    let mut per_cluster: Vec<usize> = (0..n_clusters)
        .map(|c| (n as f64 * weights[c % k] / p.n_clusters_per_class as f64) as usize)
        .collect();
    let assigned: usize = per_cluster.iter().sum();
    if assigned > n {
        return Err(
            CoreError::param("weights", format!("{weights:?}"), "a sum of at most 1").into(),
        );
    }
    for i in 0..n - assigned {
        per_cluster[i % n_clusters] += 1;
    }

    // Cluster centres on hypercube vertices (or a random polytope).
    let mut centroids = hypercube(n_clusters, n_inf, &mut rng);
    centroids.mapv_inplace(|b| b * 2.0 * p.class_sep - p.class_sep);
    if !p.hypercube {
        for mut row in centroids.axis_iter_mut(Axis(0)) {
            row *= rng.random::<f64>();
        }
        for mut col in centroids.axis_iter_mut(Axis(1)) {
            col *= rng.random::<f64>();
        }
    }

    // Per cluster a random covariance for its informative features (2U(0,1) - 1 entries).
    let mixing: Vec<Array2<f64>> = (0..n_clusters)
        .map(|_| uniform_matrix(n_inf, n_inf, &mut rng))
        .collect();
    let redundant = uniform_matrix(n_inf, n_red, &mut rng);
    // Repeated features copy columns of [informative | redundant].
    let repeated: Vec<usize> = (0..n_rep)
        .map(|_| ((n_inf + n_red - 1) as f64 * rng.random::<f64>() + 0.5) as usize)
        .collect();
    let shift = match &p.shift {
        Some(v) => v.values(f),
        None => (0..f)
            .map(|_| (2.0 * rng.random::<f64>() - 1.0) * p.class_sep)
            .collect(),
    };
    let scale = match &p.scale {
        Some(v) => v.values(f),
        None => (0..f).map(|_| 1.0 + 100.0 * rng.random::<f64>()).collect(),
    };
    let (rows, cols) = shuffled_order(n, f, p.shuffle, &mut rng);
    // Samples come cluster by cluster: sample i is in the last cluster starting at or before i.
    let starts: Vec<usize> = per_cluster
        .iter()
        .scan(0, |acc, &size| {
            let start = *acc;
            *acc += size;
            Some(start)
        })
        .collect();

    // Output row r is sample rows[r]: standard normal informative features mixed by its
    // cluster's covariance and moved to its vertex, then [informative | redundant | repeated |
    // noise] shifted and scaled, in the column order cols; its label may be flipped.
    let base = kiln_core::rng(seed);
    let mut x = Array2::<f64>::zeros((n, f));
    let mut y = vec![0.0; n];
    x.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(y.par_iter_mut())
        .zip(rows.par_iter())
        .for_each_init(
            || (vec![0.0; n_inf], vec![0.0; f]),
            |(z, raw), ((mut xr, label), &src)| {
                let mut rng = sample_rng(&base, src);
                let c = starts.partition_point(|&s| s <= src) - 1;
                z.iter_mut().for_each(|v| *v = rng.sample(StandardNormal));
                let (a, centre) = (&mixing[c], centroids.row(c));
                for j in 0..n_inf {
                    raw[j] = centre[j] + (0..n_inf).map(|i| z[i] * a[[i, j]]).sum::<f64>();
                }
                for j in 0..n_red {
                    raw[n_inf + j] = (0..n_inf).map(|i| raw[i] * redundant[[i, j]]).sum();
                }
                for (j, &from) in repeated.iter().enumerate() {
                    raw[n_inf + n_red + j] = raw[from];
                }
                for v in &mut raw[n_inf + n_red + n_rep..] {
                    *v = rng.sample(StandardNormal);
                }
                for (o, &col) in xr.iter_mut().zip(&cols) {
                    *o = (raw[col] + shift[col]) * scale[col];
                }
                *label = (c % k) as f64;
                if p.flip_y > 0.0 && rng.random::<f64>() < p.flip_y {
                    *label = rng.random_range(0..k) as f64;
                }
            },
        );
    let y = Array1::from(y);
    let classes = (0..k).map(|c| c.to_string()).collect();
    Ok(Dataset::classification(
        x,
        y,
        Dataset::default_feature_names(f),
        "y",
        classes,
    )?)
}

/// `samples` distinct vertices of the unit hypercube in `dims` dimensions, as 0/1 rows
/// (scikit-learn's `_generate_hypercube`: beyond 30 dimensions the leading ones are random
/// bits and only the last 30 are guaranteed distinct).
fn hypercube(samples: usize, dims: usize, rng: &mut kiln_core::Rng) -> Array2<f64> {
    let distinct = dims.min(30);
    let prefix = dims - distinct;
    let mut out = Array2::<f64>::zeros((samples, dims));
    let codes = sample_without_replacement(1usize << distinct, samples, rng);
    for (i, code) in codes.into_iter().enumerate() {
        for j in 0..prefix {
            out[[i, j]] = f64::from(rng.random_range(0..2u8));
        }
        for b in 0..distinct {
            out[[i, prefix + b]] = ((code >> (distinct - 1 - b)) & 1) as f64;
        }
    }
    out
}

/// `k` distinct integers from `0..n` (k <= n), in random order.
fn sample_without_replacement(n: usize, k: usize, rng: &mut kiln_core::Rng) -> Vec<usize> {
    if k.saturating_mul(2) >= n {
        let mut pool: Vec<usize> = (0..n).collect();
        let (chosen, _) = pool.partial_shuffle(rng, k);
        chosen.to_vec()
    } else {
        let mut seen = HashSet::with_capacity(k);
        let mut out = Vec::with_capacity(k);
        while out.len() < k {
            let v = rng.random_range(0..n);
            if seen.insert(v) {
                out.push(v);
            }
        }
        out
    }
}

/// A `rows × cols` matrix with entries from U(-1, 1).
fn uniform_matrix(rows: usize, cols: usize, rng: &mut kiln_core::Rng) -> Array2<f64> {
    Array2::from_shape_simple_fn((rows, cols), || 2.0 * rng.random::<f64>() - 1.0)
}

// ---------------------------------------------------------------------------------------------
// make_blobs
// ---------------------------------------------------------------------------------------------

/// How many samples [`make_blobs`] draws (scikit-learn's "int or array-like" `n_samples`).
/// In JSON: `100` or `[30, 70]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SampleCount {
    /// This many in all, split as evenly as possible over the centres (the first centres get
    /// one more when it does not divide).
    Total(usize),
    /// This many for each centre, in order; also fixes the number of centres.
    PerCenter(Vec<usize>),
}

/// Where the blob centres are (scikit-learn's "int or array-like" `centers`).
/// In JSON: `3` or `[[0, 0], [5, 5]]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Centers {
    /// This many centres drawn uniformly in `center_box` along each feature.
    Count(usize),
    /// These centres, one row each; their width sets the number of features.
    Given(Vec<Vec<f64>>),
}

/// Parameters of [`make_blobs`] (scikit-learn's `make_blobs`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct BlobsParams {
    /// Total samples (at least 1), or samples per centre (at least 1 in all). Default
    /// `Total(100)`.
    pub n_samples: SampleCount,
    /// Number of features, at least 1; ignored when `centers` are given (their width wins, as in
    /// scikit-learn). Default 2.
    pub n_features: usize,
    /// The centres: a count (at least 1) or the centres themselves. Default `None`: 3 centres,
    /// or one per entry of `n_samples` when it is given per centre.
    pub centers: Option<Centers>,
    /// Standard deviation of each blob: one value, or one per centre; each >= 0. Default
    /// `One(1.0)`.
    pub cluster_std: OneOrEach,
    /// Bounds `(low, high)` of the box random centres are drawn in, finite with
    /// low <= high. Default (-10.0, 10.0).
    pub center_box: (f64, f64),
    /// Shuffle the samples (otherwise they come blob by blob). Default true.
    pub shuffle: bool,
}

impl Default for BlobsParams {
    fn default() -> Self {
        BlobsParams {
            n_samples: SampleCount::Total(100),
            n_features: 2,
            centers: None,
            cluster_std: OneOrEach::One(1.0),
            center_box: (-10.0, 10.0),
            shuffle: true,
        }
    }
}

impl BlobsParams {
    /// The number of centres these parameters describe.
    fn n_centers(&self) -> usize {
        match (&self.centers, &self.n_samples) {
            (Some(Centers::Given(c)), _) => c.len(),
            (Some(Centers::Count(c)), _) => *c,
            (None, SampleCount::PerCenter(v)) => v.len(),
            (None, SampleCount::Total(_)) => 3,
        }
    }

    /// Check every parameter against its allowed range.
    pub fn validate(&self) -> Result<()> {
        match &self.n_samples {
            SampleCount::Total(n) => at_least("n_samples", *n, 1)?,
            SampleCount::PerCenter(v) => {
                let total = v.iter().try_fold(0usize, |acc, &c| acc.checked_add(c));
                if total.is_none_or(|t| t == 0) {
                    return Err(CoreError::param(
                        "n_samples",
                        format!("{v:?}"),
                        "per-centre counts with at least 1 sample in all",
                    )
                    .into());
                }
            }
        }
        at_least("n_features", self.n_features, 1)?;
        match &self.centers {
            Some(Centers::Count(c)) => at_least("centers", *c, 1)?,
            Some(Centers::Given(c)) => {
                let width = c.first().map_or(0, Vec::len);
                if c.is_empty() || width == 0 {
                    return Err(CoreError::param(
                        "centers",
                        format!("{c:?}"),
                        "at least one centre with at least one coordinate",
                    )
                    .into());
                }
                for (i, row) in c.iter().enumerate() {
                    if row.len() != width {
                        return Err(CoreError::param(
                            "centers",
                            format!("centre {} with {} coordinates", i + 1, row.len()),
                            &format!("{width} coordinates, like centre 1"),
                        )
                        .into());
                    }
                    if let Some(v) = row.iter().find(|v| !v.is_finite()) {
                        return Err(CoreError::param("centers", v, "finite coordinates").into());
                    }
                }
            }
            None => {}
        }
        let n_centers = self.n_centers();
        if let SampleCount::PerCenter(v) = &self.n_samples {
            if v.len() != n_centers {
                return Err(CoreError::param(
                    "centers",
                    format!("{n_centers} centres"),
                    &format!("one per entry of n_samples ({} entries)", v.len()),
                )
                .into());
            }
        }
        self.cluster_std.check(
            "cluster_std",
            n_centers,
            "centre",
            |v| v >= 0.0 && v.is_finite(),
            "a finite number >= 0",
        )?;
        let total = match &self.n_samples {
            SampleCount::Total(n) => *n,
            SampleCount::PerCenter(v) => v.iter().sum(),
        };
        let width = match &self.centers {
            Some(Centers::Given(c)) => c[0].len(),
            _ => self.n_features,
        };
        fits_in_memory(total, width)?;
        let (lo, hi) = self.center_box;
        if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
            return Err(CoreError::param(
                "center_box",
                format!("({lo}, {hi})"),
                "finite bounds (low, high) with low <= high",
            )
            .into());
        }
        Ok(())
    }
}

/// What [`make_blobs`] returns.
#[derive(Debug, Clone, PartialEq)]
pub struct MadeBlobs {
    /// The samples; classes `"0".."n_centers-1"` name the blob each sample came from.
    pub data: Dataset,
    /// The blob centres, `n_centers × n_features`.
    pub centers: Array2<f64>,
}

/// Isotropic Gaussian blobs: sample `i` of blob `c` is `centers[c] + cluster_std[c] * z` with
/// `z ~ N(0, I)`; the class is the blob's index. Features `x0, x1, ...`; target `y`.
pub fn make_blobs(p: &BlobsParams, seed: u64) -> Result<MadeBlobs> {
    p.validate()?;
    let mut rng = kiln_core::rng(seed);
    let n_centers = p.n_centers();
    let centers = match &p.centers {
        Some(Centers::Given(c)) => {
            let width = c[0].len();
            Array2::from_shape_vec((c.len(), width), c.concat())
                .map_err(|e| CoreError::Shape(e.to_string()))?
        }
        _ => {
            let (lo, hi) = p.center_box;
            Array2::from_shape_simple_fn((n_centers, p.n_features), || {
                lo + (hi - lo) * rng.random::<f64>()
            })
        }
    };
    let f = centers.ncols();
    let counts: Vec<usize> = match &p.n_samples {
        SampleCount::PerCenter(v) => v.clone(),
        SampleCount::Total(n) => (0..n_centers)
            .map(|c| n / n_centers + usize::from(c < n % n_centers))
            .collect(),
    };
    let stds = p.cluster_std.values(n_centers);
    let n: usize = counts.iter().sum();

    let starts: Vec<usize> = counts
        .iter()
        .scan(0, |acc, &size| {
            let start = *acc;
            *acc += size;
            Some(start)
        })
        .collect();
    let (rows, _) = shuffled_order(n, 0, p.shuffle, &mut rng);

    // Output row r is sample rows[r], drawn around the centre of the blob it falls in.
    let base = kiln_core::rng(seed);
    let mut x = Array2::<f64>::zeros((n, f));
    let mut y = vec![0.0; n];
    x.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(y.par_iter_mut())
        .zip(rows.par_iter())
        .for_each(|((mut xr, label), &src)| {
            let mut rng = sample_rng(&base, src);
            let c = starts.partition_point(|&s| s <= src) - 1;
            for (v, &centre) in xr.iter_mut().zip(centers.row(c)) {
                *v = centre + stds[c] * rng.sample::<f64, _>(StandardNormal);
            }
            *label = c as f64;
        });
    let y = Array1::from(y);
    let classes = (0..n_centers).map(|c| c.to_string()).collect();
    let data = Dataset::classification(x, y, Dataset::default_feature_names(f), "y", classes)?;
    Ok(MadeBlobs { data, centers })
}

// ---------------------------------------------------------------------------------------------
// shared helpers
// ---------------------------------------------------------------------------------------------

/// Reject sizes whose `n_samples × n_features` matrix of `f64` could not even be addressed.
fn fits_in_memory(n_samples: usize, n_features: usize) -> Result<()> {
    let limit = isize::MAX as usize / std::mem::size_of::<f64>();
    if n_samples.checked_mul(n_features).is_none_or(|v| v > limit) {
        return Err(CoreError::param(
            "n_samples * n_features",
            format!("{n_samples} * {n_features}"),
            &format!("at most {limit} values"),
        )
        .into());
    }
    Ok(())
}

fn at_least(name: &str, value: usize, min: usize) -> Result<()> {
    if value < min {
        return Err(CoreError::param(name, value, &format!("at least {min}")).into());
    }
    Ok(())
}

/// A `rows × cols` matrix of N(0, 1) draws, filled in parallel: chunk `c` of [`CHUNK`] values
/// (row-major) comes from the ChaCha stream `tag << 40 | c` of the generator seeded with `seed`,
/// so the result depends on `(seed, tag)` only, not on the thread count.
fn standard_normal(rows: usize, cols: usize, seed: u64, tag: u64) -> Array2<f64> {
    let mut data = vec![0.0f64; rows * cols];
    data.par_chunks_mut(CHUNK)
        .enumerate()
        .for_each(|(c, chunk)| {
            let mut rng = kiln_core::rng(seed);
            rng.set_stream(tag << 40 | c as u64);
            for v in chunk.iter_mut() {
                *v = rng.sample(StandardNormal);
            }
        });
    // The length is rows * cols by construction.
    Array2::from_shape_vec((rows, cols), data).unwrap_or_else(|_| Array2::zeros((rows, cols)))
}

/// The generator of sample `index`'s draws: stream `TAG_SAMPLE << 40 | index` of the generator
/// seeded like `base` (a fresh generator). Each sample has its own stream, so a sample's values
/// do not depend on the thread that draws it or on where the shuffle puts it.
fn sample_rng(base: &kiln_core::Rng, index: usize) -> kiln_core::Rng {
    let mut rng = base.clone();
    rng.set_stream(TAG_SAMPLE << 40 | index as u64);
    rng
}

/// The order of the output rows (which sample each holds) and columns (which feature each
/// holds): random permutations when shuffling, identities otherwise.
fn shuffled_order(
    n: usize,
    f: usize,
    shuffle: bool,
    rng: &mut kiln_core::Rng,
) -> (Vec<usize>, Vec<usize>) {
    let mut rows: Vec<usize> = (0..n).collect();
    let mut cols: Vec<usize> = (0..f).collect();
    if shuffle {
        rows.shuffle(rng);
        cols.shuffle(rng);
    }
    (rows, cols)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_orthonormalizations_agree_and_are_orthonormal() {
        for (rows, cols) in [(5, 40), (7, 7), (1, 3)] {
            let a = standard_normal(rows, cols, 3, TAG_U);
            let mut fast = a.clone();
            orthonormalize_rows(&mut fast).unwrap();
            let mut plain = a.clone();
            gram_schmidt_rows(&mut plain).unwrap();
            assert!(
                (&fast - &plain).iter().all(|d| d.abs() < 1e-10),
                "{fast:?} {plain:?}"
            );
            let g = fast.dot(&fast.t());
            for i in 0..rows {
                for j in 0..rows {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((g[[i, j]] - want).abs() < 1e-12, "{g:?}");
                }
            }
        }
        // A rank-deficient basis falls back to Gram-Schmidt, which reports it.
        let mut twice = ndarray::array![[1.0, 2.0, 3.0], [2.0, 4.0, 6.0]];
        assert!(orthonormalize_rows(&mut twice).is_err());
    }

    #[test]
    fn hypercube_vertices_are_distinct_bits() {
        let mut rng = kiln_core::rng(1);
        for (samples, dims) in [(4, 2), (8, 3), (6, 10), (5, 33)] {
            let h = hypercube(samples, dims, &mut rng);
            assert_eq!(h.dim(), (samples, dims));
            assert!(h.iter().all(|&b| b == 0.0 || b == 1.0));
            let mut rows: Vec<Vec<u8>> = h
                .rows()
                .into_iter()
                .map(|r| r.iter().map(|&b| b as u8).collect())
                .collect();
            rows.sort();
            rows.dedup();
            assert_eq!(rows.len(), samples);
        }
    }

    #[test]
    fn parallel_fill_is_independent_of_thread_count() {
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| standard_normal(50_000, 3, 9, TAG_U));
        let many = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap()
            .install(|| standard_normal(50_000, 3, 9, TAG_U));
        assert_eq!(one, many);
        // Blocks draw from different streams, so they differ.
        assert_ne!(
            one.as_slice().unwrap()[..3],
            one.as_slice().unwrap()[CHUNK..CHUNK + 3]
        );
    }
}
