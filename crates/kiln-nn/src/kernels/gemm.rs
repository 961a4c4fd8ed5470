//! A bounds-checked f32 matrix product over strided slices, on the `gemm` crate that candle
//! itself uses (with its runtime-dispatched AVX-512 kernels, feature `x86-v4`).
//!
//! This is the only `unsafe` in kiln-nn (with `keep_freed_memory`'s `mallopt`): `gemm::gemm`
//! takes raw pointers and strides. Every call goes through [`Mat`] / [`MatMut`], whose
//! constructors check that every element the strides can address lies inside the slice, so the
//! product never reads or writes out of bounds; [`matmul_new`] hands gemm an uninitialised
//! output, which gemm writes in full without reading it.

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

/// `a · b` as a new row-major (M, N) vector that the gemm writes once, without the zero fill a
/// `vec![0.0; M·N]` costs first (for the LSTM's input projection, (T·B, 4H) = 13 MB, that fill
/// took as long as a third of the product). Large products are cut into one block of rows
/// per member of the kernels' team, as in [`matmul`].
pub(crate) fn matmul_new(a: Mat, b: Mat, par: Par) -> Vec<f32> {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k,
        "kiln gemm: shapes ({m}×{k}) · ({}×{n})",
        b.rows
    );
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let spare = &mut out.spare_capacity_mut()[..m * n];
    let team = super::team();
    let parts = if par == Par::Auto && m * n * k >= TEAM_SPLIT_WORK && m >= 32 * team.size() {
        team.size()
    } else {
        1
    };
    let ends: Vec<usize> = (1..=parts).map(|p| m * p / parts).collect();
    let starts = std::iter::once(0).chain(ends.iter().copied());
    let blocks = kiln_core::team::cut(spare, ends[..parts - 1].iter().map(|&e| e * n));
    let inner = if parts > 1 { Par::Seq } else { par };
    let items: Vec<_> = starts.zip(blocks).collect();
    team.map(items, |(r0, block)| {
        let rows = block.len() / n.max(1);
        let a = Mat::strided(
            &a.data[(r0 * a.rs).min(a.data.len())..],
            rows,
            k,
            a.rs,
            a.cs,
        );
        write_product(block, a, b, inner);
    });
    // SAFETY: the blocks cover the first m·n elements, and `write_product` wrote every element
    // of each block (see there).
    #[allow(unsafe_code)]
    unsafe {
        out.set_len(m * n)
    };
    out
}

/// `dst` (row-major, `a.rows × b.cols`, uninitialised) = `a · b`: gemm with `read_dst` false
/// never reads the destination and writes each of its elements (zeros when k = 0).
fn write_product(dst: &mut [std::mem::MaybeUninit<f32>], a: Mat, b: Mat, par: Par) {
    let (m, n) = (a.rows, b.cols);
    assert!(
        dst.len() == m * n,
        "kiln gemm: {m}×{n} output in {} elements",
        dst.len()
    );
    if m == 0 || n == 0 {
        return;
    }
    // SAFETY: `dst` holds exactly m·n elements, row-major (row stride n, column stride 1), and
    // is a unique borrow; with `read_dst` false gemm reads none of them (it takes alpha as 0)
    // and stores every one, so uninitialised memory is never read.
    #[allow(unsafe_code)]
    unsafe {
        gemm_raw(dst.as_mut_ptr().cast::<f32>(), n, 1, false, a, b, par)
    }
}

/// The one call into `gemm::gemm`: `dst = a · b` (`read_dst` false) or `dst += a · b`, dst
/// element (i, j) at `dst + i·rs + j·cs`.
///
/// # Safety
/// `dst` must be valid for writes (and, with `read_dst`, reads) of the `a.rows × b.cols`
/// elements its strides address, and alias neither input; `a.cols == b.rows`. The views `a`
/// and `b` are bounds-checked by their constructors.
#[allow(unsafe_code)]
unsafe fn gemm_raw(dst: *mut f32, rs: usize, cs: usize, read_dst: bool, a: Mat, b: Mat, par: Par) {
    // SAFETY: the caller's contract for `dst`; `a` and `b` address only elements inside their
    // slices (checked at construction).
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst,
            cs as isize,
            rs as isize,
            read_dst,
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
    // (cols-1)·cs at most, lies inside its slice; the shapes agree (asserted by the caller);
    // `dst` is a unique borrow, so it aliases neither input.
    #[allow(unsafe_code)]
    unsafe {
        gemm_raw(dst.data.as_mut_ptr(), dst.rs, dst.cs, accumulate, a, b, par)
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
    fn a_new_product_is_written_whole() {
        // the last shape is large enough to be split across the team; k = 0 gives zeros
        for &(m, k, n) in &[(1, 1, 1), (3, 0, 5), (7, 33, 65), (300, 100, 90)] {
            let a: Vec<f32> = (0..m * k).map(|v| (v % 13) as f32 * 0.25 - 1.5).collect();
            let b: Vec<f32> = (0..k * n).map(|v| (v % 7) as f32 - 3.0).collect();
            let got = matmul_new(Mat::rows(&a, m, k), Mat::rows(&b, k, n), Par::Auto);
            let mut want = vec![f32::NAN; m * n];
            matmul(
                MatMut::rows(&mut want, m, n),
                Mat::rows(&a, m, k),
                Mat::rows(&b, k, n),
                false,
                Par::Seq,
            );
            assert_eq!(got.len(), m * n);
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                    "{m}×{k}×{n}: {g} vs {w}"
                );
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
