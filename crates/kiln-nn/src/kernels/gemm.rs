//! A bounds-checked f32 matrix product over strided slices, on the `gemm` crate that candle
//! itself uses (with its runtime-dispatched AVX-512 kernels, feature `x86-v4`).
//!
//! This is the only `unsafe` in kiln-nn: `gemm::gemm` takes raw pointers and strides. Every
//! call goes through [`Mat`] / [`MatMut`], whose constructors check that every element the
//! strides can address lies inside the slice, so the product never reads or writes out of
//! bounds.

/// Run the product on the calling thread, or split it over `n` rayon threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Par {
    /// One thread (callers that already parallelise over the batch).
    Seq,
    /// candle's thread count (`RAYON_NUM_THREADS`, else every core).
    Auto,
}

impl Par {
    fn gemm(self) -> gemm::Parallelism {
        match self {
            Par::Seq => gemm::Parallelism::None,
            Par::Auto => match candle_core::utils::get_num_threads() {
                0 | 1 => gemm::Parallelism::None,
                n => gemm::Parallelism::Rayon(n),
            },
        }
    }
}

/// A read-only `rows × cols` view: element (i, j) is `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct Mat<'a> {
    data: &'a [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

fn fits(len: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> bool {
    rows == 0 || cols == 0 || (rows - 1) * rs + (cols - 1) * cs < len
}

impl<'a> Mat<'a> {
    /// A row-major `rows × cols` matrix (panics if the slice is too short: a kernel bug, never
    /// user input, since every caller sizes its buffers from checked shapes).
    pub(crate) fn rows(data: &'a [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// Any strides.
    pub(crate) fn strided(data: &'a [f32], rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        assert!(
            fits(data.len(), rows, cols, rs, cs),
            "kiln gemm: a {rows}×{cols} view with strides ({rs}, {cs}) overruns {} elements",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }

    /// The transpose (a view, no copy).
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }
}

/// A writable `rows × cols` view.
pub(crate) struct MatMut<'a> {
    data: &'a mut [f32],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a> MatMut<'a> {
    /// A row-major `rows × cols` matrix.
    pub(crate) fn rows(data: &'a mut [f32], rows: usize, cols: usize) -> Self {
        Self::strided(data, rows, cols, cols, 1)
    }

    /// Any strides; the views of distinct (i, j) must not alias (rs, cs ≥ 1 and the rows do
    /// not overlap), which holds for every row- or column-major layout used here.
    pub(crate) fn strided(
        data: &'a mut [f32],
        rows: usize,
        cols: usize,
        rs: usize,
        cs: usize,
    ) -> Self {
        assert!(
            fits(data.len(), rows, cols, rs, cs),
            "kiln gemm: a {rows}×{cols} output with strides ({rs}, {cs}) overruns {} elements",
            data.len()
        );
        Self {
            data,
            rows,
            cols,
            rs,
            cs,
        }
    }
}

/// Multiply-adds from which a [`Par::Auto`] product is split across the kernels' team.
const TEAM_SPLIT_WORK: usize = 1 << 21;

/// `dst = a · b` (`accumulate` false) or `dst += a · b` (`accumulate` true).
///
/// With [`Par::Auto`], a large product whose output rows (or columns) are contiguous is cut
/// into one block of rows (or columns) per member of the kernels' team, each a
/// single-threaded gemm: measured 7% faster on GPT-2 prefill than gemm's own rayon split,
/// whose sleeping workers must be woken for every product.
pub(crate) fn matmul(dst: MatMut, a: Mat, b: Mat, accumulate: bool, par: Par) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k && dst.rows == m && dst.cols == n,
        "kiln gemm: shapes ({m}×{k}) · ({}×{n}) → ({}×{})",
        b.rows,
        dst.rows,
        dst.cols
    );
    let team = super::team();
    let parts = team.size();
    if par == Par::Auto && parts > 1 && m * n * k >= TEAM_SPLIT_WORK {
        if dst.cs == 1 && dst.rs >= n && m >= 32 * parts {
            let blocks = split_blocks(dst.data, dst.rs, m, parts);
            team.map(blocks, |(r, data)| {
                let rows = r.end - r.start;
                let d = MatMut::strided(data, rows, n, dst.rs, 1);
                let a = Mat::strided(&a.data[r.start * a.rs..], rows, k, a.rs, a.cs);
                matmul(d, a, b, accumulate, Par::Seq)
            });
            return;
        }
        if dst.rs == 1 && dst.cs >= m && n >= 32 * parts {
            let blocks = split_blocks(dst.data, dst.cs, n, parts);
            team.map(blocks, |(c, data)| {
                let cols = c.end - c.start;
                let d = MatMut::strided(data, m, cols, 1, dst.cs);
                let b = Mat::strided(&b.data[c.start * b.cs..], k, cols, b.rs, b.cs);
                matmul(d, a, b, accumulate, Par::Seq)
            });
            return;
        }
    }
    matmul_here(dst, a, b, accumulate, par)
}

/// `count` lines of `data`, `stride` apart, cut into `parts` blocks of consecutive lines: each
/// block's range of lines and the part of `data` from its first line (up to the next block's).
fn split_blocks(
    data: &mut [f32],
    stride: usize,
    count: usize,
    parts: usize,
) -> Vec<(std::ops::Range<usize>, &mut [f32])> {
    let ends: Vec<usize> = (1..=parts).map(|p| count * p / parts).collect();
    let starts = std::iter::once(0).chain(ends.iter().copied());
    let cuts = ends[..parts - 1].iter().map(|&e| e * stride);
    let blocks = kiln_core::team::cut(data, cuts);
    starts
        .zip(ends.iter())
        .map(|(a, &b)| a..b)
        .zip(blocks)
        .collect()
}

/// [`matmul`] as one gemm call (shapes checked by the caller).
fn matmul_here(dst: MatMut, a: Mat, b: Mat, accumulate: bool, par: Par) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                for j in 0..n {
                    dst.data[i * dst.rs + j * dst.cs] = 0.0;
                }
            }
        }
        return;
    }
    // SAFETY: the constructors checked that every element each view addresses, (rows-1)·rs +
    // (cols-1)·cs at most, lies inside its slice; the shapes agree (asserted above); `dst` is
    // a unique borrow, so it aliases neither input.
    #[allow(unsafe_code)]
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.data.as_mut_ptr(),
            dst.cs as isize,
            dst.rs as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par.gemm(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strided_product_matches_the_loop() {
        let a: Vec<f32> = (0..12).map(|v| v as f32 * 0.5 - 2.0).collect(); // 3×4
        let b: Vec<f32> = (0..20).map(|v| (v % 7) as f32 - 3.0).collect(); // 5×4, used as bᵀ
        let mut c = vec![1f32; 15];
        matmul(
            MatMut::rows(&mut c, 3, 5),
            Mat::rows(&a, 3, 4),
            Mat::rows(&b, 5, 4).t(),
            true,
            Par::Seq,
        );
        for i in 0..3 {
            for j in 0..5 {
                let want: f32 = 1.0 + (0..4).map(|k| a[i * 4 + k] * b[j * 4 + k]).sum::<f32>();
                assert!((c[i * 5 + j] - want).abs() < 1e-5, "({i},{j})");
            }
        }
    }

    #[test]
    #[should_panic(expected = "overruns")]
    fn a_view_past_the_end_is_refused() {
        let a = [0f32; 5];
        let _ = Mat::rows(&a, 2, 3);
    }
}
