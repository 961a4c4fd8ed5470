//! The shared numerical core of the linear models: a centered, parallel tall-skinny QR of
//! `[X | y]`, then an SVD of the small triangular factor.
//!
//! Shapes: N samples, D features, P = D + 1 columns of `[X | y]`.
//!
//! # Why this way
//!
//! Least squares through the normal equations (`XᵀX w = Xᵀy`) squares the condition number;
//! a QR of `X` does not. For a tall matrix the QR only needs the `P × P` factor `R` of
//! `[X | y]`: its top-left `D × D` block `R₁₁` has the singular values of `X`, its last column
//! holds `Qᵀy`, so `min ‖Xw − y‖` is `min ‖R₁₁ w − r‖`, a tiny problem. An SVD of `R₁₁` then
//! gives the minimum-norm solution with a singular-value cutoff (what LAPACK `gelsd` does for
//! scikit-learn) and ridge regression through the same factors.
//!
//! # The tall-skinny QR
//!
//! Rows are cut into chunks of [`CHUNK_ROWS`]; [`CHUNKS_PER_GROUP`] consecutive chunks form a
//! group. Groups run in parallel (rayon); inside a group each chunk is copied (column-major,
//! the layout faer's blocked Householder QR wants) under the running `R`, and the stack is
//! factored again, so memory stays at one chunk per thread and the `N × D` matrix is never
//! copied whole. The group results are then merged in group order, so the answer does not
//! depend on the number of threads or on scheduling.
//!
//! Centering (for `fit_intercept`) happens in the same single pass: each chunk is centered by
//! its own mean, and merging two parts `a`, `b` adds one row
//! `sqrt(nₐ n_b / (nₐ + n_b)) · (meanₐ − mean_b)`, the between-part scatter (Chan, Golub and
//! LeVeque's pairwise update of sums of squares). The merged `R` is then the `R` of `[X | y]`
//! centered by the global mean, without a separate pass to compute that mean first.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::qr::no_pivoting::factor::{
    qr_in_place, qr_in_place_scratch, recommended_blocksize,
};
use faer::linalg::svd::{svd, svd_scratch, ComputeSvdVectors};
use faer::{MatMut, MatRef, Par};
use kiln_core::{Error, Result};
use ndarray::{s, ArrayView1, ArrayView2};
use rayon::prelude::*;

/// Rows per chunk: a `2048 × P` column-major chunk stays in a core's L2 cache for D ≈ 50.
pub(crate) const CHUNK_ROWS: usize = 2048;
/// Chunks per parallel group: enough work per task to amortise merging.
pub(crate) const CHUNKS_PER_GROUP: usize = 8;

/// The triangular factor of (possibly centered) `[X | y]` and the column means.
#[derive(Debug, Clone)]
pub(crate) struct Factor {
    /// Number of features D.
    pub d: usize,
    /// Number of samples N.
    pub n: usize,
    /// `P × P` upper-triangular factor, column-major.
    pub r: Vec<f64>,
    /// Column means of `[X | y]` (P values), zeros when not centered.
    pub mean: Vec<f64>,
}

impl Factor {
    fn p(&self) -> usize {
        self.d + 1
    }

    /// `mean(y) − mean(X)·w`: the intercept for coefficients `w` fitted on centered data
    /// (0 when the data were not centered, as the means are then zero).
    pub fn intercept(&self, w: &[f64]) -> f64 {
        self.mean[self.d] - w.iter().zip(&self.mean).map(|(a, b)| a * b).sum::<f64>()
    }
}

/// Factor `[X | y]` (centered when `center`), with the default chunking.
pub(crate) fn factor(
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    center: bool,
) -> Result<Factor> {
    factor_chunked(x, y, center, CHUNK_ROWS, CHUNKS_PER_GROUP)
}

/// Factor `[X | y]` with explicit chunking (tests use tiny chunks to exercise the merges).
pub(crate) fn factor_chunked(
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    center: bool,
    chunk_rows: usize,
    chunks_per_group: usize,
) -> Result<Factor> {
    let n = x.nrows();
    if y.len() != n {
        return Err(Error::Shape(format!(
            "x has {n} rows but y has {} values",
            y.len()
        )));
    }
    let group_rows = chunk_rows.max(1) * chunks_per_group.max(1);
    let n_groups = n.div_ceil(group_rows);
    let parts: Vec<(Factor, bool)> = (0..n_groups)
        .into_par_iter()
        .map(|g| {
            let rows = g * group_rows..((g + 1) * group_rows).min(n);
            factor_rows(
                x.slice(s![rows.clone(), ..]),
                y.slice(s![rows]),
                center,
                chunk_rows.max(1),
            )
        })
        .collect();
    let mut finite = true;
    let mut total: Option<Factor> = None;
    for (part, ok) in parts {
        finite &= ok;
        total = Some(match total {
            None => part,
            Some(acc) => merge(&acc, &part, center),
        });
    }
    if !finite {
        return Err(non_finite_error(x, y));
    }
    total.ok_or_else(|| Error::InvalidData("no samples: at least 1 is needed".into()))
}

/// The error for data whose sums were not finite: the first NaN or infinity, row by row.
fn non_finite_error(x: ArrayView2<'_, f64>, y: ArrayView1<'_, f64>) -> Error {
    if let Err(e) = kiln_core::check_finite(x) {
        return e;
    }
    if let Some((i, v)) = y.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Error::InvalidData(format!(
            "non-finite target value {v} at row {}: this model needs finite numbers",
            i + 1
        ));
    }
    Error::Numerical("the column sums overflow f64: rescale the features or the target".into())
}

/// Factor one group of rows sequentially, chunk by chunk. Returns the factor and whether every
/// column sum was finite.
fn factor_rows(
    x: ArrayView2<'_, f64>,
    y: ArrayView1<'_, f64>,
    center: bool,
    chunk_rows: usize,
) -> (Factor, bool) {
    let (n, d) = x.dim();
    let p = d + 1;
    let below = p + usize::from(center);
    let mut buf = vec![0.0; (chunk_rows.min(n) + below) * p];
    let mut chunk_mean = vec![0.0; p];
    let mut acc: Option<Factor> = None;
    let mut finite = true;
    for start in (0..n).step_by(chunk_rows) {
        let k = chunk_rows.min(n - start);
        let m = k + if acc.is_some() { below } else { 0 };
        let a = &mut buf[..m * p]; // m × P, column-major, leading dimension m
        for (i, row) in x
            .slice(s![start..start + k, ..])
            .rows()
            .into_iter()
            .enumerate()
        {
            for (j, &v) in row.iter().enumerate() {
                a[j * m + i] = v;
            }
            a[d * m + i] = y[start + i];
        }
        for (j, mean) in chunk_mean.iter_mut().enumerate() {
            let col = &mut a[j * m..j * m + k];
            let sum: f64 = col.iter().sum();
            finite &= sum.is_finite();
            *mean = 0.0;
            if center {
                *mean = sum / k as f64;
                col.iter_mut().for_each(|v| *v -= *mean);
            }
        }
        let r = match &acc {
            None => qr_r(a, m, p),
            Some(prev) => {
                write_below(a, m, k, prev, &chunk_mean, k, center);
                qr_r(a, m, p)
            }
        };
        acc = Some(match acc {
            None => Factor {
                d,
                n: k,
                r,
                mean: chunk_mean.clone(),
            },
            Some(prev) => Factor {
                d,
                n: prev.n + k,
                r,
                mean: merged_mean(&prev, &chunk_mean, k, center),
            },
        });
    }
    let empty = Factor {
        d,
        n: 0,
        r: vec![0.0; p * p],
        mean: vec![0.0; p],
    };
    (acc.unwrap_or(empty), finite)
}

/// Below row `row0` of the `m × P` column-major block `a`, write the rows of `prev.r` and, when
/// centering, the between-part row for a part of `k` rows with mean `mean`.
fn write_below(
    a: &mut [f64],
    m: usize,
    row0: usize,
    prev: &Factor,
    mean: &[f64],
    k: usize,
    center: bool,
) {
    let p = prev.p();
    let c = if center {
        let (na, nb) = (prev.n as f64, k as f64);
        (na * nb / (na + nb)).sqrt()
    } else {
        0.0
    };
    for j in 0..p {
        a[j * m + row0..j * m + row0 + p].copy_from_slice(&prev.r[j * p..(j + 1) * p]);
        if center {
            a[j * m + row0 + p] = c * (prev.mean[j] - mean[j]);
        }
    }
}

/// Mean of the union of `prev` and a part of `k` rows with mean `mean`.
fn merged_mean(prev: &Factor, mean: &[f64], k: usize, center: bool) -> Vec<f64> {
    if !center {
        return vec![0.0; prev.p()];
    }
    let w = k as f64 / (prev.n + k) as f64;
    prev.mean
        .iter()
        .zip(mean)
        .map(|(&a, &b)| a + (b - a) * w)
        .collect()
}

/// Merge two factors: the `R` of `[Rₐ; R_b; between-part row]`.
fn merge(a: &Factor, b: &Factor, center: bool) -> Factor {
    let p = a.p();
    let m = 2 * p + usize::from(center);
    let mut buf = vec![0.0; m * p];
    for j in 0..p {
        buf[j * m..j * m + p].copy_from_slice(&b.r[j * p..(j + 1) * p]);
    }
    write_below(&mut buf, m, p, a, &b.mean, b.n, center);
    Factor {
        d: a.d,
        n: a.n + b.n,
        r: qr_r(&mut buf, m, p),
        mean: merged_mean(a, &b.mean, b.n, center),
    }
}

/// Householder QR of the `m × p` column-major block `a` (overwritten); returns the `p × p`
/// upper-triangular `R` (zero rows below `m` when `m < p`), column-major.
fn qr_r(a: &mut [f64], m: usize, p: usize) -> Vec<f64> {
    let size = m.min(p);
    let bs = recommended_blocksize::<f64>(m, p);
    let mut q_coeff = vec![0.0; bs * size];
    let mut mem = MemBuffer::new(qr_in_place_scratch::<f64>(
        m,
        p,
        bs,
        Par::Seq,
        Default::default(),
    ));
    qr_in_place(
        MatMut::from_column_major_slice_mut(&mut a[..m * p], m, p),
        MatMut::from_column_major_slice_mut(&mut q_coeff, bs, size),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    );
    let mut r = vec![0.0; p * p];
    for j in 0..p {
        let top = (j + 1).min(m);
        r[j * p..j * p + top].copy_from_slice(&a[j * m..j * m + top]);
    }
    r
}

/// The solution of `min ‖R₁₁ w − r‖` through the SVD `R₁₁ = U S Vᵀ`:
/// `w = V diag(filter(sᵢ, s_max)) Uᵀ r`. Returns `w` and the singular values (descending),
/// which are those of the (centered) `X`.
///
/// `filter` is `1/s` above a cutoff for least squares, `s/(s² + α)` for ridge.
pub(crate) fn solve(f: &Factor, filter: impl Fn(f64, f64) -> f64) -> Result<(Vec<f64>, Vec<f64>)> {
    let (d, p) = (f.d, f.p());
    let mut r11 = vec![0.0; d * d];
    for j in 0..d {
        r11[j * d..(j + 1) * d].copy_from_slice(&f.r[j * p..j * p + d]);
    }
    let rhs = &f.r[d * p..d * p + d]; // Qᵀy, the last column of R above the diagonal
    let mut u = vec![0.0; d * d];
    let mut v = vec![0.0; d * d];
    let mut s = vec![0.0; d];
    let mut mem = MemBuffer::new(svd_scratch::<f64>(
        d,
        d,
        ComputeSvdVectors::Thin,
        ComputeSvdVectors::Thin,
        Par::Seq,
        Default::default(),
    ));
    svd(
        MatRef::from_column_major_slice(&r11, d, d),
        faer::diag::DiagMut::from_slice_mut(&mut s),
        Some(MatMut::from_column_major_slice_mut(&mut u, d, d)),
        Some(MatMut::from_column_major_slice_mut(&mut v, d, d)),
        Par::Seq,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map_err(|e| Error::Numerical(format!("SVD of the {d} x {d} factor failed: {e:?}")))?;
    let s_max = s.iter().copied().fold(0.0, f64::max);
    let mut w = vec![0.0; d];
    for (i, &si) in s.iter().enumerate() {
        let ui = &u[i * d..(i + 1) * d];
        let t: f64 = ui.iter().zip(rhs).map(|(a, b)| a * b).sum::<f64>() * filter(si, s_max);
        if t != 0.0 {
            for (wk, vk) in w.iter_mut().zip(&v[i * d..(i + 1) * d]) {
                *wk += t * vk;
            }
        }
    }
    if w.iter().any(|v| !v.is_finite()) {
        return Err(Error::Numerical(
            "the coefficients are not finite: the data are too large for f64 arithmetic; \
             rescale the features or the target"
                .into(),
        ));
    }
    Ok((w, s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::{Array1, Array2};
    use rand::Rng;

    /// The plain reference: one Householder QR (faer's `Mat::qr`) of the whole `[X | y]`,
    /// centered by its column means computed first.
    fn factor_plain(x: ArrayView2<'_, f64>, y: ArrayView1<'_, f64>, center: bool) -> Factor {
        let (n, d) = x.dim();
        let p = d + 1;
        let mut mean = vec![0.0; p];
        if center {
            for (j, m) in mean.iter_mut().take(d).enumerate() {
                *m = x.column(j).sum() / n as f64;
            }
            mean[d] = y.sum() / n as f64;
        }
        let a = faer::Mat::<f64>::from_fn(n, p, |i, j| {
            (if j < d { x[[i, j]] } else { y[i] }) - mean[j]
        });
        let qr = a.qr();
        let rr = qr.thin_R();
        let mut r = vec![0.0; p * p];
        for j in 0..p {
            for i in 0..=j.min(rr.nrows().saturating_sub(1)) {
                r[j * p + i] = rr[(i, j)];
            }
        }
        Factor { d, n, r, mean }
    }

    /// `RᵀR`, which does not depend on the signs the QR chose.
    fn gram(f: &Factor) -> Vec<f64> {
        let p = f.p();
        let mut g = vec![0.0; p * p];
        for a in 0..p {
            for b in 0..p {
                g[a * p + b] = (0..p).map(|k| f.r[a * p + k] * f.r[b * p + k]).sum();
            }
        }
        g
    }

    fn data(n: usize, d: usize, seed: u64) -> (Array2<f64>, Array1<f64>) {
        let mut rng = kiln_core::rng(seed);
        let x = Array2::from_shape_fn((n, d), |(_, j)| {
            rng.random::<f64>() * (j + 1) as f64 + 3.0 * j as f64
        });
        let y = Array1::from_shape_fn(n, |i| x.row(i).sum() + rng.random::<f64>());
        (x, y)
    }

    #[test]
    fn chunked_matches_plain_qr() {
        let (x, y) = data(203, 4, 1);
        for center in [true, false] {
            let plain = factor_plain(x.view(), y.view(), center);
            let g0 = gram(&plain);
            let scale = g0.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            for (chunk, group) in [(7, 3), (1, 1), (50, 1), (300, 8), (2, 200)] {
                let f = factor_chunked(x.view(), y.view(), center, chunk, group).unwrap();
                assert_eq!(f.n, 203);
                for (a, b) in f.mean.iter().zip(&plain.mean) {
                    assert!((a - b).abs() <= 1e-12 * b.abs().max(1.0), "mean {a} vs {b}");
                }
                for (a, b) in gram(&f).iter().zip(&g0) {
                    assert!((a - b).abs() <= 1e-12 * scale, "chunk {chunk}: {a} vs {b}");
                }
                let (w0, s0) =
                    solve(&plain, |s, m| if s > 1e-12 * m { 1.0 / s } else { 0.0 }).unwrap();
                let (w, s) = solve(&f, |s, m| if s > 1e-12 * m { 1.0 / s } else { 0.0 }).unwrap();
                for (a, b) in w.iter().zip(&w0).chain(s.iter().zip(&s0)) {
                    assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
                }
            }
        }
    }

    #[test]
    fn fewer_rows_than_columns_per_chunk() {
        // Chunks of 2 rows for 6 columns: each chunk's R is trapezoidal.
        let (x, y) = data(9, 5, 2);
        let plain = factor_plain(x.view(), y.view(), true);
        let f = factor_chunked(x.view(), y.view(), true, 2, 2).unwrap();
        for (a, b) in gram(&f).iter().zip(&gram(&plain)) {
            assert!((a - b).abs() <= 1e-10 * b.abs().max(1.0), "{a} vs {b}");
        }
    }

    #[test]
    fn same_answer_whatever_the_thread_count() {
        let (x, y) = data(5000, 3, 3);
        let f1 = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| factor_chunked(x.view(), y.view(), true, 64, 4).unwrap());
        let f4 = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap()
            .install(|| factor_chunked(x.view(), y.view(), true, 64, 4).unwrap());
        assert_eq!(f1.r, f4.r);
        assert_eq!(f1.mean, f4.mean);
    }
}
