//! Kernel evaluation: a resolved kernel function, and whole kernel rows computed with a
//! vectorisable dot product and, for long rows, in parallel across the solver's [`team`].
//!
//! Every entry of a row is computed independently by the same arithmetic, so a row is
//! bit-for-bit the same whatever the number of threads.

use serde::{Deserialize, Serialize};

use super::params::Kernel;
use kiln_core::team;

/// Rows shorter than this many multiply-adds are computed on the calling thread.
const PAR_WORK: usize = 1 << 14;
/// Entries per parallel task.
const PAR_CHUNK: usize = 256;
/// Entries of a kernel row accumulated together in registers.
const BLOCK: usize = 16;

/// A kernel with its coefficients resolved to numbers.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct KernelFn {
    /// Which kernel.
    pub kernel: Kernel,
    /// Resolved gamma.
    pub gamma: f64,
    /// Degree of poly.
    pub degree: i32,
    /// Constant term of poly and sigmoid.
    pub coef0: f64,
}

/// Dot product, summed in index order from 0 (libsvm's order). Kernel rows compute the same
/// sums column by column (see [`KernelRows`]), so every kernel value in kiln has the same bits
/// whichever path computed it.
#[inline(always)]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut s = 0.0;
    for (x, y) in a.iter().zip(b) {
        s += x * y;
    }
    s
}

/// `e^x` by range reduction and a degree-13 polynomial, written so that a loop of it
/// vectorises (libm's `exp` is a call per value). Relative error below 1e-15 against libm over
/// the kernel's range; arguments below -708 give 0 (libsvm's values there are denormal or 0,
/// and the cache stores `f32`, which is 0 below about -104). Pure arithmetic, so the result
/// is the same on every thread.
#[inline(always)]
pub fn exp(x: f64) -> f64 {
    const LOG2E: f64 = std::f64::consts::LOG2_E;
    const LN2_HI: f64 = 0.693_147_180_369_123_8;
    const LN2_LO: f64 = 1.908_214_929_270_587_7e-10;
    const SHIFT: f64 = 6_755_399_441_055_744.0; // 1.5 * 2^52: adding it rounds to an integer
    let under = x < -708.0;
    let x = x.clamp(-708.0, 709.0);
    let t = x * LOG2E + SHIFT;
    let k = t - SHIFT;
    let r = (x - k * LN2_HI) - k * LN2_LO;
    // Taylor series of e^r for |r| <= ln2 / 2, Horner form.
    let mut p = 1.0 / 6_227_020_800.0;
    p = p * r + 1.0 / 479_001_600.0;
    p = p * r + 1.0 / 39_916_800.0;
    p = p * r + 1.0 / 3_628_800.0;
    p = p * r + 1.0 / 362_880.0;
    p = p * r + 1.0 / 40_320.0;
    p = p * r + 1.0 / 5_040.0;
    p = p * r + 1.0 / 720.0;
    p = p * r + 1.0 / 120.0;
    p = p * r + 1.0 / 24.0;
    p = p * r + 1.0 / 6.0;
    p = p * r + 0.5;
    p = p * r + 1.0;
    p = p * r + 1.0;
    // 2^k from the low bits of t, which hold k in two's complement.
    let scale = f64::from_bits((t.to_bits().wrapping_add(1023)) << 52);
    if under {
        0.0
    } else {
        p * scale
    }
}

impl KernelFn {
    /// `K(a, b)` given `a·b` and the squared norms of `a` and `b`.
    #[inline]
    pub fn from_dot(&self, dot_ab: f64, sq_a: f64, sq_b: f64) -> f64 {
        match self.kernel {
            Kernel::Linear => dot_ab,
            Kernel::Rbf => exp(-self.gamma * (sq_a + sq_b - 2.0 * dot_ab)),
            Kernel::Poly => (self.gamma * dot_ab + self.coef0).powi(self.degree),
            Kernel::Sigmoid => (self.gamma * dot_ab + self.coef0).tanh(),
        }
    }
}

/// One chunk of a kernel row as a [`pulp::WithSimd`] operation, so that it is compiled for
/// the processor's best instruction set (chosen at run time).
struct RowChunk<'a, F> {
    rows: &'a KernelRows,
    xi: &'a [f64],
    sqi: f64,
    start: usize,
    chunk: &'a mut [f32],
    f: &'a F,
}

impl<F: Fn(usize, f64) -> f64 + Sync> pulp::WithSimd for RowChunk<'_, F> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        self.rows
            .row_chunk(self.xi, self.sqi, self.start, self.chunk, self.f)
    }
}

/// Samples with their squared norms: the data a kernel row is computed from.
///
/// The samples are kept twice, row-major (one sample's features together) and column-major
/// (one feature of all samples together, `d × n`): a kernel row is computed as `d` passes of
/// `acc[j] += x_i[k] * X[k][j]` over contiguous memory, which vectorises with no horizontal
/// sums, and adds in the same order as [`dot`].
#[derive(Debug, Clone)]
pub struct KernelRows {
    /// Samples, row-major, `n × d`.
    pub x: Vec<f64>,
    /// Samples, column-major, `d × n`.
    xt: Vec<f64>,
    /// Squared norm of each row.
    pub sq: Vec<f64>,
    /// Features per row.
    pub d: usize,
    /// The kernel.
    pub k: KernelFn,
}

impl KernelRows {
    /// Wrap row-major `x` (`n × d`).
    pub fn new(x: Vec<f64>, d: usize, k: KernelFn) -> Self {
        let sq: Vec<f64> = if d == 0 {
            vec![0.0; 0]
        } else {
            x.chunks_exact(d).map(|r| dot(r, r)).collect()
        };
        let n = sq.len();
        let mut xt = vec![0.0; n * d];
        for (i, r) in x.chunks_exact(d.max(1)).enumerate().take(n) {
            for (c, &v) in r.iter().enumerate() {
                xt[c * n + i] = v;
            }
        }
        KernelRows { x, xt, sq, d, k }
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.sq.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.sq.is_empty()
    }

    /// Row `i` of the samples.
    #[inline]
    pub fn row(&self, i: usize) -> &[f64] {
        &self.x[i * self.d..(i + 1) * self.d]
    }

    /// `K(i, j)`.
    #[inline]
    pub fn eval(&self, i: usize, j: usize) -> f64 {
        self.k
            .from_dot(dot(self.row(i), self.row(j)), self.sq[i], self.sq[j])
    }

    /// `K(q, j)` for an outside sample `q` with squared norm `sq_q`.
    #[inline]
    pub fn eval_with(&self, q: &[f64], sq_q: f64, j: usize) -> f64 {
        self.k.from_dot(dot(q, self.row(j)), sq_q, self.sq[j])
    }

    /// Swap rows `i` and `j` (the solver's shrinking permutes its variables).
    pub fn swap(&mut self, i: usize, j: usize) {
        if i == j {
            return;
        }
        let (d, n) = (self.d, self.sq.len());
        for t in 0..d {
            self.x.swap(i * d + t, j * d + t);
            self.xt.swap(t * n + i, t * n + j);
        }
        self.sq.swap(i, j);
    }

    /// `out[t] = f(first + t, K(xi, first + t))` for one chunk: the dot products, then the
    /// kernel's transform over the chunk in one loop that vectorises (the exp above has no
    /// calls).
    #[inline(always)]
    #[allow(clippy::needless_range_loop)] // fixed-size register block
    fn row_chunk(
        &self,
        xi: &[f64],
        sqi: f64,
        start: usize,
        chunk: &mut [f32],
        f: &(impl Fn(usize, f64) -> f64 + Sync),
    ) {
        let mut buf = [0.0f64; PAR_CHUNK];
        for (first, part) in (start..)
            .step_by(PAR_CHUNK)
            .zip(chunk.chunks_mut(PAR_CHUNK))
        {
            let m = part.len();
            let n = self.sq.len();
            let buf = &mut buf[..m];
            // Blocks of BLOCK entries accumulate in registers over all features.
            let mut t = 0;
            while t + BLOCK <= m {
                let mut acc = [0.0f64; BLOCK];
                for (c, &xc) in xi.iter().enumerate() {
                    let off = c * n + first + t;
                    let col = &self.xt[off..off + BLOCK];
                    for u in 0..BLOCK {
                        acc[u] += xc * col[u];
                    }
                }
                buf[t..t + BLOCK].copy_from_slice(&acc);
                t += BLOCK;
            }
            for (u, b) in buf.iter_mut().enumerate().skip(t) {
                *b = dot(xi, self.row(first + u));
            }
            let sq = &self.sq[first..first + m];
            let k = self.k;
            match k.kernel {
                Kernel::Linear => {}
                Kernel::Rbf => {
                    let g = k.gamma;
                    for (b, &s) in buf.iter_mut().zip(sq) {
                        *b = exp(-g * (sqi + s - 2.0 * *b));
                    }
                }
                _ => {
                    for (b, &s) in buf.iter_mut().zip(sq) {
                        *b = k.from_dot(*b, sqi, s);
                    }
                }
            }
            for (t, (o, &b)) in part.iter_mut().zip(buf.iter()).enumerate() {
                *o = f(first + t, b) as f32;
            }
        }
    }

    /// `out[t] = f(first + t, K(i, first + t))`, rounded to `f32` (libsvm's `Qfloat`, the
    /// precision of its kernel cache), in parallel when long.
    pub fn fill_row(
        &self,
        i: usize,
        first: usize,
        out: &mut [f32],
        f: impl Fn(usize, f64) -> f64 + Sync,
    ) {
        let work = out.len() * self.d.max(1);
        let xi = self.row(i);
        let sqi = self.sq[i];
        let body = |start: usize, chunk: &mut [f32]| {
            // Compiled for the best instruction set of this processor (AVX2/FMA...), chosen
            // at run time. Rust never reassociates or fuses floating-point operations, so the
            // values are the same bits on every instruction set.
            pulp::Arch::new().dispatch(RowChunk {
                rows: self,
                xi,
                sqi,
                start,
                chunk,
                f: &f,
            })
        };
        let threads = team::size();
        if work < PAR_WORK || threads == 1 {
            body(first, out);
        } else {
            // One contiguous part per team member (boundaries multiples of PAR_CHUNK).
            let parts = threads.min(work / (PAR_WORK / 2)).max(1);
            let len = out.len();
            let cuts: Vec<usize> = (1..parts)
                .map(|k| (len * k / parts).next_multiple_of(PAR_CHUNK).min(len))
                .collect();
            let starts = std::iter::once(0).chain(cuts.iter().copied());
            let items: Vec<_> = starts
                .map(|a| first + a)
                .zip(team::cut(out, cuts.iter().copied()))
                .collect();
            team::map(items, |(start, part)| body(start, part));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_exp_matches_libm() {
        let mut worst = 0.0f64;
        let mut x = -705.0;
        while x < 700.0 {
            let (a, b) = (exp(x), x.exp());
            worst = worst.max((a - b).abs() / b);
            x += 0.0137;
        }
        assert!(worst < 2e-15, "worst relative error {worst:e}");
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-800.0), 0.0);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
    }

    #[test]
    fn rows_match_single_evaluations() {
        for kernel in [Kernel::Linear, Kernel::Rbf, Kernel::Poly, Kernel::Sigmoid] {
            let k = KernelFn {
                kernel,
                gamma: 0.3,
                degree: 3,
                coef0: 0.5,
            };
            let n = 700;
            let x: Vec<f64> = (0..n * 5)
                .map(|v| ((v * 37 % 101) as f64 - 50.0) / 40.0)
                .collect();
            let rows = KernelRows::new(x, 5, k);
            let mut out = vec![0f32; n - 3];
            rows.fill_row(4, 3, &mut out, |_, v| v);
            for (t, &o) in out.iter().enumerate() {
                assert_eq!(o, rows.eval(4, 3 + t) as f32, "{kernel} entry {t}");
            }
        }
    }
}
