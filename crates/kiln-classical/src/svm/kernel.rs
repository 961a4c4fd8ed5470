//! Kernel evaluation: a resolved kernel function, and whole kernel rows computed with a
//! vectorisable dot product and, for long rows, in parallel across the rayon pool.
//!
//! Every entry of a row is computed independently by the same arithmetic, so a row is
//! bit-for-bit the same whatever the number of threads.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use super::params::Kernel;

/// Rows shorter than this many multiply-adds are computed on the calling thread.
const PAR_WORK: usize = 1 << 14;
/// Entries per parallel task.
const PAR_CHUNK: usize = 256;

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

/// Dot product with four independent accumulators, so the compiler can vectorise it. The
/// summation order is fixed, so the result is deterministic.
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let mut acc = [0.0f64; 4];
    let ca = a.chunks_exact(4);
    let cb = b.chunks_exact(4);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        acc[0] += x[0] * y[0];
        acc[1] += x[1] * y[1];
        acc[2] += x[2] * y[2];
        acc[3] += x[3] * y[3];
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

impl KernelFn {
    /// `K(a, b)` given `a·b` and the squared norms of `a` and `b`.
    #[inline]
    pub fn from_dot(&self, dot_ab: f64, sq_a: f64, sq_b: f64) -> f64 {
        match self.kernel {
            Kernel::Linear => dot_ab,
            Kernel::Rbf => (-self.gamma * (sq_a + sq_b - 2.0 * dot_ab)).exp(),
            Kernel::Poly => (self.gamma * dot_ab + self.coef0).powi(self.degree),
            Kernel::Sigmoid => (self.gamma * dot_ab + self.coef0).tanh(),
        }
    }
}

/// Row-major samples with their squared norms: the data a kernel row is computed from.
#[derive(Debug, Clone)]
pub struct KernelRows {
    /// Samples, row-major, `n × d`.
    pub x: Vec<f64>,
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
        let sq = if d == 0 {
            vec![0.0; 0]
        } else {
            x.chunks_exact(d).map(|r| dot(r, r)).collect()
        };
        KernelRows { x, sq, d, k }
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
        let d = self.d;
        for t in 0..d {
            self.x.swap(i * d + t, j * d + t);
        }
        self.sq.swap(i, j);
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
            for (t, o) in chunk.iter_mut().enumerate() {
                let j = start + t;
                *o = f(j, self.k.from_dot(dot(xi, self.row(j)), sqi, self.sq[j])) as f32;
            }
        };
        if work < PAR_WORK || rayon::current_num_threads() == 1 {
            body(first, out);
        } else {
            out.par_chunks_mut(PAR_CHUNK)
                .enumerate()
                .for_each(|(c, chunk)| body(first + c * PAR_CHUNK, chunk));
        }
    }
}
