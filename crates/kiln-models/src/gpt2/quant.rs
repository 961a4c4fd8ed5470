//! Inference weights of GPT-2 in f32, bf16 or int8 (`Q8_0`: blocks of 32 values sharing one
//! f32 scale, as llama.cpp's), and the matrix-vector kernels that decode with them.
//!
//! Decoding multiplies one hidden vector per sequence (a few rows) by every weight matrix, so
//! it is bound by reading the weights. candle's CPU matmul sends a 1-row product to gemm's
//! single-threaded gemv; the kernels here split the work over the kernels' team and stream
//! each weight once for all rows. Products with more rows (prefill) go to kiln-nn's fused
//! linear products (gemm), reduced-precision weights expanded to f32 for that call.
//!
//! Layouts: an f32 `Conv1D` weight stays (in, out) as loaded (the axpy kernel reads its rows);
//! a packed weight is stored transposed, (out, in), so each output is one dot product over a
//! contiguous row (the tied `wte` (V, C) already is). The SIMD width is chosen at run time
//! (AVX-512, AVX2+FMA or scalar) through `pulp`; the loops are plain Rust that LLVM vectorises
//! inside pulp's target-feature functions.
//!
//! Legend: M rows (tokens), K inputs, N outputs.

use std::fmt;
use std::str::FromStr;

use candle_core::{DType, Device, Storage, Tensor};
use kiln_nn::{Error, Result};
use pulp::{Arch, Simd, WithSimd};
use rayon::prelude::*;

/// Products with at most this many rows use the matrix-vector kernels; more go to gemm.
pub(crate) const SMALL_M: usize = 16;
/// Weight rows per partial sum of the (in, out) f32 kernel.
const K_CHUNK: usize = 128;
/// Output rows per task of the (out, in) dot kernel (contiguous weight rows).
const ROW_BLOCK: usize = 2048;
/// Values per int8 block (one scale each).
pub const Q8_BLOCK: usize = 32;

/// Precision of a model's weight matrices and embeddings for inference (`--dtype`).
/// Biases, layer norms and activations stay f32.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightDtype {
    /// 32-bit floats as loaded (default).
    #[default]
    F32,
    /// bfloat16 (f32's exponent, 8 mantissa bits; rounded to nearest even): half the memory.
    Bf16,
    /// int8 in blocks of 32 with one f32 scale per block (`max |w| / 127`, llama.cpp's Q8_0):
    /// 8.5 bits per weight.
    Q8,
}

impl FromStr for WeightDtype {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        match s {
            "f32" => Ok(Self::F32),
            "bf16" => Ok(Self::Bf16),
            "q8" => Ok(Self::Q8),
            other => Err(Error::param("dtype", other, "one of f32, bf16, q8")),
        }
    }
}

impl fmt::Display for WeightDtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::F32 => "f32",
            Self::Bf16 => "bf16",
            Self::Q8 => "q8",
        })
    }
}

/// A weight matrix (out, in) in a reduced precision, rows contiguous.
#[derive(Debug, Clone)]
pub(crate) struct Packed {
    out: usize,
    inp: usize,
    data: PackedData,
}

#[derive(Debug, Clone)]
enum PackedData {
    /// bf16 bits, out·in.
    Bf16(Vec<u16>),
    /// int8 values out·in and one scale per block of `Q8_BLOCK` along each row (the last block
    /// of a row may be shorter).
    Q8 { q: Vec<i8>, scales: Vec<f32> },
}

/// f32 → bf16 bits, rounded to nearest even (NaN stays NaN).
fn to_bf16(v: f32) -> u16 {
    if v.is_nan() {
        return 0x7fc0;
    }
    let b = v.to_bits();
    ((b + 0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

#[inline(always)]
fn from_bf16(b: u16) -> f32 {
    f32::from_bits((b as u32) << 16)
}

impl Packed {
    /// Pack `w` given row-major as (out, in) (`transposed` false) or as (in, out) (`transposed`
    /// true, a Conv1D weight) in `dtype` (bf16 or q8).
    pub(crate) fn new(
        w: &[f32],
        out: usize,
        inp: usize,
        transposed: bool,
        dtype: WeightDtype,
    ) -> Result<Self> {
        if w.len() != out * inp {
            return Err(Error::shape(format!(
                "packing a ({out}, {inp}) weight from {} values",
                w.len()
            )));
        }
        let at = |o: usize, i: usize| {
            if transposed {
                w[i * out + o]
            } else {
                w[o * inp + i]
            }
        };
        let data = match dtype {
            WeightDtype::F32 => {
                return Err(Error::shape("f32 weights are not packed".to_string()));
            }
            WeightDtype::Bf16 => {
                let mut d = Vec::with_capacity(out * inp);
                for o in 0..out {
                    d.extend((0..inp).map(|i| to_bf16(at(o, i))));
                }
                PackedData::Bf16(d)
            }
            WeightDtype::Q8 => {
                let nb = inp.div_ceil(Q8_BLOCK);
                let mut q = Vec::with_capacity(out * inp);
                let mut scales = Vec::with_capacity(out * nb);
                let mut row = vec![0f32; inp];
                for o in 0..out {
                    row.iter_mut().enumerate().for_each(|(i, r)| *r = at(o, i));
                    for block in row.chunks(Q8_BLOCK) {
                        let amax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
                        let d = amax / 127.0;
                        let inv = if d > 0.0 { 1.0 / d } else { 0.0 };
                        scales.push(d);
                        q.extend(
                            block
                                .iter()
                                .map(|v| (v * inv).round().clamp(-127.0, 127.0) as i8),
                        );
                    }
                }
                PackedData::Q8 { q, scales }
            }
        };
        Ok(Self { out, inp, data })
    }

    /// Output rows (out).
    pub(crate) fn rows(&self) -> usize {
        self.out
    }

    /// Inputs per row (in).
    pub(crate) fn cols(&self) -> usize {
        self.inp
    }

    /// Bytes held.
    pub(crate) fn bytes(&self) -> usize {
        match &self.data {
            PackedData::Bf16(d) => 2 * d.len(),
            PackedData::Q8 { q, scales } => q.len() + 4 * scales.len(),
        }
    }

    /// Row `o` in f32 into `dst` (length in).
    #[inline(always)]
    pub(crate) fn row_into(&self, o: usize, dst: &mut [f32]) {
        let (a, b) = (o * self.inp, (o + 1) * self.inp);
        match &self.data {
            PackedData::Bf16(d) => {
                dst.iter_mut()
                    .zip(&d[a..b])
                    .for_each(|(x, &v)| *x = from_bf16(v));
            }
            PackedData::Q8 { q, scales } => {
                let nb = self.inp.div_ceil(Q8_BLOCK);
                for (j, (dc, qc)) in dst
                    .chunks_mut(Q8_BLOCK)
                    .zip(q[a..b].chunks(Q8_BLOCK))
                    .enumerate()
                {
                    let s = scales[o * nb + j];
                    dc.iter_mut().zip(qc).for_each(|(x, &v)| *x = v as f32 * s);
                }
            }
        }
    }

    /// The whole matrix in f32, (out, in).
    pub(crate) fn to_tensor(&self) -> Result<Tensor> {
        let mut w = vec![0f32; self.out * self.inp];
        w.par_chunks_mut(self.inp)
            .enumerate()
            .for_each(|(o, r)| self.row_into(o, r));
        Ok(Tensor::from_vec(w, (self.out, self.inp), &Device::Cpu)?)
    }

    /// `y = x · selfᵀ (+ bias)`: x (M, in) → (M, out), with the dot kernel.
    pub(crate) fn matmul_t(&self, x: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let m = x.dim(0)?;
        if m > SMALL_M {
            let y = x.matmul(&self.to_tensor()?.t()?)?; // (M, in)·(in, out) = (M, out)
            return Ok(match bias {
                Some(b) => y.broadcast_add(b)?,
                None => y,
            });
        }
        let xs = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
        let bias = bias.map(|b| b.to_vec1::<f32>()).transpose()?;
        let y = dot_rows(Rows::Packed(self), &xs, m, bias.as_deref());
        Ok(Tensor::from_vec(y, (m, self.out), &Device::Cpu)?)
    }
}

/// A weight matrix for inference: f32 as loaded (a Conv1D's (in, out), or an embedding's
/// (V, C)) or packed (out, in) in a reduced precision.
#[derive(Debug, Clone)]
pub(crate) enum Matrix {
    F32(Tensor),
    Packed(Packed),
}

impl Matrix {
    /// Pack an f32 matrix in `dtype` (f32 keeps it). `transposed`: the tensor is (in, out).
    pub(crate) fn pack(&self, dtype: WeightDtype, transposed: bool) -> Result<Self> {
        match (self, dtype) {
            (_, WeightDtype::F32) | (Matrix::Packed(_), _) => Ok(self.clone()),
            (Matrix::F32(t), _) => {
                let (a, b) = t.dims2()?;
                let (out, inp) = if transposed { (b, a) } else { (a, b) };
                let p = with_f32(&t.contiguous()?, |w| {
                    Packed::new(w, out, inp, transposed, dtype)
                })??;
                Ok(Matrix::Packed(p))
            }
        }
    }

    /// Bytes of the weights.
    pub(crate) fn bytes(&self) -> usize {
        match self {
            Matrix::F32(t) => 4 * t.elem_count(),
            Matrix::Packed(p) => p.bytes(),
        }
    }
}

/// Run `f` on the contiguous f32 values of a CPU tensor, without copying.
pub(crate) fn with_f32<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(cpu) = &*storage else {
        return Err(Error::shape("expected a CPU tensor".to_string()));
    };
    let all = cpu.as_slice::<f32>()?;
    let (a, b) = layout
        .contiguous_offsets()
        .ok_or_else(|| Error::shape("expected a contiguous tensor".to_string()))?;
    Ok(f(&all[a..b]))
}

/// True when `w` (and the input) can take the fast inference kernels: CPU f32, not a trained
/// variable (no gradient flows through these kernels).
pub(crate) fn fast_path(x: &Tensor, w: &Tensor) -> bool {
    matches!(x.device(), Device::Cpu)
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32
        && !w.track_op()
        && !x.track_op()
        && w.is_contiguous()
}

/// `x · w + bias` for an f32 (in, out) weight and few rows: x (M, in) → (M, out).
pub(crate) fn matmul_in_out(x: &Tensor, w: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
    let (m, k) = x.dims2()?;
    let n = w.dim(1)?;
    let xs = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let bias = bias.map(|b| b.to_vec1::<f32>()).transpose()?;
    let y = with_f32(w, |w| axpy_cols(w, k, n, &xs, m, bias.as_deref()))?;
    Ok(Tensor::from_vec(y, (m, n), &Device::Cpu)?)
}

/// `x · wᵀ` for an f32 (out, in) weight (the tied `wte`) and few rows: x (M, in) → (M, out).
pub(crate) fn matmul_out_in(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let m = x.dim(0)?;
    let (n, k) = w.dims2()?;
    let xs = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
    let y = with_f32(w, |w| dot_rows(Rows::F32 { w, k }, &xs, m, None))?;
    Ok(Tensor::from_vec(y, (m, n), &Device::Cpu)?)
}

/// y (M, N) = x (M, K) · w (K, N) + bias, w row-major. The K weight rows are cut into chunks
/// of [`K_CHUNK`] contiguous rows, which the kernels' team shares out; each chunk walks its
/// rows once (one long sequential stream, which the hardware prefetchers follow) into its own
/// partial sum of every output, and the partial sums are added in chunk order, so the result
/// does not depend on the thread count.
fn axpy_cols(w: &[f32], k: usize, n: usize, x: &[f32], m: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let chunks: Vec<std::ops::Range<usize>> = (0..k.div_ceil(K_CHUNK))
        .map(|c| c * K_CHUNK..((c + 1) * K_CHUNK).min(k))
        .collect();
    let partials = kiln_nn::kernels::team().map(chunks, |rows| {
        let mut y = vec![0f32; m * n];
        Arch::new().dispatch(AxpyBlock {
            w,
            n,
            k,
            rows,
            x,
            y: &mut y,
        });
        y
    });
    let mut y = match bias {
        Some(b) => b.repeat(m),
        None => vec![0f32; m * n],
    };
    for part in &partials {
        y.iter_mut().zip(part).for_each(|(a, b)| *a += b);
    }
    y
}

struct AxpyBlock<'a> {
    w: &'a [f32],
    n: usize,
    k: usize,
    rows: std::ops::Range<usize>,
    x: &'a [f32],
    y: &'a mut [f32],
}

impl WithSimd for AxpyBlock<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, _simd: S) {
        let Self {
            w,
            n,
            k,
            rows,
            x,
            y,
        } = self;
        let seg = |i: usize| &w[i * n..(i + 1) * n];
        let mut i = rows.start;
        while i + 4 <= rows.end {
            let (w0, w1, w2, w3) = (seg(i), seg(i + 1), seg(i + 2), seg(i + 3));
            for (r, yr) in y.chunks_exact_mut(n).enumerate() {
                let xr = &x[r * k + i..r * k + i + 4];
                let (x0, x1, x2, x3) = (xr[0], xr[1], xr[2], xr[3]);
                for ((((yj, &a), &b), &c), &d) in yr.iter_mut().zip(w0).zip(w1).zip(w2).zip(w3) {
                    *yj = d.mul_add(x3, c.mul_add(x2, b.mul_add(x1, a.mul_add(x0, *yj))));
                }
            }
            i += 4;
        }
        while i < rows.end {
            let w0 = seg(i);
            for (r, yr) in y.chunks_exact_mut(n).enumerate() {
                let x0 = x[r * k + i];
                for (yj, &a) in yr.iter_mut().zip(w0) {
                    *yj = a.mul_add(x0, *yj);
                }
            }
            i += 1;
        }
    }
}

/// Weight rows for the dot kernel: each output is the dot product of one row with the input.
#[derive(Clone, Copy)]
enum Rows<'a> {
    F32 { w: &'a [f32], k: usize },
    Packed(&'a Packed),
}

impl Rows<'_> {
    fn out(&self) -> usize {
        match self {
            Rows::F32 { w, k } => w.len() / k,
            Rows::Packed(p) => p.out,
        }
    }
}

/// y (M, N) = x (M, K) · wᵀ + bias for w (N, K) rows: tasks own blocks of output rows.
fn dot_rows(w: Rows, x: &[f32], m: usize, bias: Option<&[f32]>) -> Vec<f32> {
    let n = w.out();
    // A multiple of the team's size of equal blocks, so that every member gets the same work.
    let team = kiln_nn::kernels::team();
    let parts = team.size() * n.div_ceil(team.size() * ROW_BLOCK).max(1);
    let blocks: Vec<std::ops::Range<usize>> = (0..parts)
        .map(|p| n * p / parts..n * (p + 1) / parts)
        .collect();
    let blocks = team.map(blocks, |r| {
        let mut y = vec![0f32; m * r.len()];
        Arch::new().dispatch(DotBlock {
            w,
            o0: r.start,
            o1: r.end,
            x,
            m,
            y: &mut y,
        });
        (r.start, y)
    });
    let mut y = vec![0f32; m * n];
    for (o0, block) in blocks {
        let width = block.len() / m.max(1);
        for (r, row) in block.chunks(width).enumerate() {
            y[r * n + o0..r * n + o0 + width].copy_from_slice(row);
        }
    }
    if let Some(b) = bias {
        y.chunks_mut(n)
            .for_each(|r| r.iter_mut().zip(b).for_each(|(v, b)| *v += b));
    }
    y
}

struct DotBlock<'a> {
    w: Rows<'a>,
    o0: usize,
    o1: usize,
    x: &'a [f32],
    m: usize,
    /// (M, o1 - o0)
    y: &'a mut [f32],
}

/// Dot product with explicit SIMD vectors (four accumulators).
#[inline(always)]
fn dot<S: Simd>(simd: S, a: &[f32], b: &[f32]) -> f32 {
    let (ah, at) = S::as_simd_f32s(a);
    let (bh, bt) = S::as_simd_f32s(b);
    let zero = simd.splat_f32s(0.0);
    let mut acc = [zero; 4];
    let (a4, b4) = (ah.chunks_exact(4), bh.chunks_exact(4));
    let (ar, br) = (a4.remainder(), b4.remainder());
    for (x, y) in a4.zip(b4) {
        for l in 0..4 {
            acc[l] = simd.mul_add_e_f32s(x[l], y[l], acc[l]);
        }
    }
    for (x, y) in ar.iter().zip(br) {
        acc[0] = simd.mul_add_e_f32s(*x, *y, acc[0]);
    }
    let s = simd.add_f32s(simd.add_f32s(acc[0], acc[1]), simd.add_f32s(acc[2], acc[3]));
    let tail: f32 = at.iter().zip(bt).map(|(x, y)| x * y).sum();
    simd.reduce_sum_f32s(s) + tail
}

/// Dot products of four consecutive rows of `k` values (`rows`, 4k values) with `x`: one
/// SIMD accumulator per row, each load of `x` shared by the four.
#[inline(always)]
fn dot4<S: Simd>(simd: S, rows: &[f32], k: usize, x: &[f32]) -> [f32; 4] {
    let (xh, xt) = S::as_simd_f32s(x);
    let split = |i: usize| S::as_simd_f32s(&rows[i * k..(i + 1) * k]);
    let (r0, r1, r2, r3) = (split(0), split(1), split(2), split(3));
    let zero = simd.splat_f32s(0.0);
    let mut acc = [zero; 4];
    for (t, &xv) in xh.iter().enumerate() {
        acc[0] = simd.mul_add_e_f32s(r0.0[t], xv, acc[0]);
        acc[1] = simd.mul_add_e_f32s(r1.0[t], xv, acc[1]);
        acc[2] = simd.mul_add_e_f32s(r2.0[t], xv, acc[2]);
        acc[3] = simd.mul_add_e_f32s(r3.0[t], xv, acc[3]);
    }
    let tail = |r: &[f32]| -> f32 { r.iter().zip(xt).map(|(a, b)| a * b).sum() };
    [
        simd.reduce_sum_f32s(acc[0]) + tail(r0.1),
        simd.reduce_sum_f32s(acc[1]) + tail(r1.1),
        simd.reduce_sum_f32s(acc[2]) + tail(r2.1),
        simd.reduce_sum_f32s(acc[3]) + tail(r3.1),
    ]
}

/// Lanes of the packed dot kernels: one AVX-512 vector of f32.
const LANES: usize = 16;
const _: () = assert!(
    Q8_BLOCK == 2 * LANES,
    "dot4_q8 sums a block as two runs of LANES"
);

/// Dot products of four consecutive bf16 rows of `k` values (`w`, 4k values) with `x`, each
/// row in [`LANES`] accumulators. Inlined into a SIMD-dispatched caller, the bf16 → f32
/// widening and the multiply-adds vectorise.
#[inline(always)]
fn dot4_bf16(w: &[u16], k: usize, x: &[f32]) -> [f32; 4] {
    let mut acc = [[0f32; LANES]; 4];
    let full = k / LANES * LANES;
    for c in (0..full).step_by(LANES) {
        let Ok(xs) = <&[f32; LANES]>::try_from(&x[c..c + LANES]) else {
            continue;
        };
        for (r, a) in acc.iter_mut().enumerate() {
            let Ok(ws) = <&[u16; LANES]>::try_from(&w[r * k + c..r * k + c + LANES]) else {
                continue;
            };
            for l in 0..LANES {
                a[l] = from_bf16(ws[l]).mul_add(xs[l], a[l]);
            }
        }
    }
    let mut out = [0f32; 4];
    for (r, o) in out.iter_mut().enumerate() {
        let tail: f32 = (full..k).map(|i| from_bf16(w[r * k + i]) * x[i]).sum();
        *o = acc[r].iter().sum::<f32>() + tail;
    }
    out
}

/// Dot products of four consecutive q8 rows of `k` values (`q`, 4k values; `scales`, one per
/// block of [`Q8_BLOCK`] of each row) with `x`: each block's integer weights times the input
/// in [`LANES`] accumulators, scaled once per block.
#[inline(always)]
fn dot4_q8(q: &[i8], scales: &[f32], k: usize, x: &[f32]) -> [f32; 4] {
    let nb = k.div_ceil(Q8_BLOCK);
    let full = k / Q8_BLOCK;
    let mut acc = [[0f32; LANES]; 4];
    let mut out = [0f32; 4];
    for b in 0..full {
        let c0 = b * Q8_BLOCK;
        let Ok(xs) = <&[f32; Q8_BLOCK]>::try_from(&x[c0..c0 + Q8_BLOCK]) else {
            continue;
        };
        for (r, a) in acc.iter_mut().enumerate() {
            let Ok(qs) = <&[i8; Q8_BLOCK]>::try_from(&q[r * k + c0..r * k + c0 + Q8_BLOCK]) else {
                continue;
            };
            // Σ q·x over the block in lanes, then scaled once into the accumulators.
            let mut blk = [0f32; LANES];
            for h in [0, LANES] {
                for l in 0..LANES {
                    blk[l] = (qs[h + l] as f32).mul_add(xs[h + l], blk[l]);
                }
            }
            let s = scales[r * nb + b];
            for l in 0..LANES {
                a[l] = blk[l].mul_add(s, a[l]);
            }
        }
    }
    for (r, o) in out.iter_mut().enumerate() {
        let c0 = full * Q8_BLOCK;
        let tail: f32 = if c0 < k {
            let s = scales[r * nb + full];
            q[r * k + c0..r * k + k]
                .iter()
                .zip(&x[c0..k])
                .map(|(&v, &xv)| v as f32 * s * xv)
                .sum()
        } else {
            0.0
        };
        *o = acc[r].iter().sum::<f32>() + tail;
    }
    out
}

impl WithSimd for DotBlock<'_> {
    type Output = ();

    #[inline(always)]
    fn with_simd<S: Simd>(self, simd: S) {
        let Self { w, o0, o1, x, m, y } = self;
        let width = o1 - o0;
        match w {
            Rows::F32 { w, k } => {
                // Four weight rows at a time share each load of the input.
                let mut o = o0;
                while o + 4 <= o1 {
                    let rows = &w[o * k..(o + 4) * k];
                    for r in 0..m {
                        let d = dot4(simd, rows, k, &x[r * k..(r + 1) * k]);
                        y[r * width + o - o0..r * width + o - o0 + 4].copy_from_slice(&d);
                    }
                    o += 4;
                }
                for o in o..o1 {
                    let row = &w[o * k..(o + 1) * k];
                    for r in 0..m {
                        y[r * width + o - o0] = dot(simd, row, &x[r * k..(r + 1) * k]);
                    }
                }
            }
            Rows::Packed(p) if m == 1 => {
                // Decoding: four rows at a time, converted to f32 in registers as they are
                // read (no row buffer), each load of the input shared by the four.
                let mut o = o0;
                while o + 4 <= o1 {
                    let d = match &p.data {
                        PackedData::Bf16(w) => dot4_bf16(&w[o * p.inp..(o + 4) * p.inp], p.inp, x),
                        PackedData::Q8 { q, scales } => {
                            let nb = p.inp.div_ceil(Q8_BLOCK);
                            let (q, s) = (
                                &q[o * p.inp..(o + 4) * p.inp],
                                &scales[o * nb..(o + 4) * nb],
                            );
                            dot4_q8(q, s, p.inp, x)
                        }
                    };
                    y[o - o0..o - o0 + 4].copy_from_slice(&d);
                    o += 4;
                }
                let mut row = vec![0f32; p.inp];
                for o in o..o1 {
                    p.row_into(o, &mut row);
                    y[o - o0] = dot(simd, &row, x);
                }
            }
            Rows::Packed(p) => {
                // Expand each row to f32 (an elementwise loop LLVM vectorises), then dot.
                let k = p.inp;
                let mut row = vec![0f32; k];
                for o in o0..o1 {
                    p.row_into(o, &mut row);
                    for r in 0..m {
                        y[r * width + o - o0] = dot(simd, &row, &x[r * k..(r + 1) * k]);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        (0..n)
            .map(|i| {
                (((i as u32).wrapping_mul(2654435761).wrapping_add(seed) >> 8) % 2001) as f32
                    / 1000.0
                    - 1.0
            })
            .collect()
    }

    fn reference(x: &[f32], m: usize, w_out_in: &[f32], k: usize) -> Vec<f32> {
        let n = w_out_in.len() / k;
        let mut y = vec![0f32; m * n];
        for r in 0..m {
            for o in 0..n {
                y[r * n + o] = (0..k).map(|i| x[r * k + i] * w_out_in[o * k + i]).sum();
            }
        }
        y
    }

    #[test]
    fn kernels_match_the_plain_product_on_odd_shapes() {
        // k over K_CHUNK (several partial sums), n over ROW_BLOCK (several row blocks).
        let shapes = [
            (1, 37, 301),
            (3, 64, 5),
            (5, 70, 260),
            (16, 33, 17),
            (2, 300, 45),
            (1, 24, 4103),
        ];
        for &(m, k, n) in &shapes {
            let x = data(m * k, 1);
            let w_in_out = data(k * n, 2);
            let mut w_out_in = vec![0f32; k * n];
            for i in 0..k {
                for o in 0..n {
                    w_out_in[o * k + i] = w_in_out[i * n + o];
                }
            }
            let want = reference(&x, m, &w_out_in, k);
            let bias = data(n, 3);
            let got = axpy_cols(&w_in_out, k, n, &x, m, Some(&bias));
            for (j, (g, w)) in got.iter().zip(&want).enumerate() {
                assert!(
                    (g - w - bias[j % n]).abs() < 1e-4,
                    "axpy {m}x{k}x{n}: {g} vs {w}"
                );
            }
            let got = dot_rows(Rows::F32 { w: &w_out_in, k }, &x, m, None);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() < 1e-4, "dot {m}x{k}x{n}: {g} vs {w}");
            }
            for dtype in [WeightDtype::Bf16, WeightDtype::Q8] {
                let p = Packed::new(&w_in_out, n, k, true, dtype).unwrap();
                let dq = p
                    .to_tensor()
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap();
                // Each weight within its format's rounding of the original.
                for (a, b) in dq.iter().zip(&w_out_in) {
                    let tol = if dtype == WeightDtype::Bf16 {
                        4e-3
                    } else {
                        1.0 / 254.0 + 1e-6
                    };
                    assert!((a - b).abs() <= tol, "{dtype}: {a} vs {b}");
                }
                let want = reference(&x, m, &dq, k);
                let got = dot_rows(Rows::Packed(&p), &x, m, None);
                for (g, w) in got.iter().zip(&want) {
                    assert!((g - w).abs() < 1e-4, "{dtype} {m}x{k}x{n}: {g} vs {w}");
                }
            }
        }
    }

    #[test]
    fn dtype_parses_and_names_the_choices() {
        assert_eq!("q8".parse::<WeightDtype>().unwrap(), WeightDtype::Q8);
        assert_eq!("bf16".parse::<WeightDtype>().unwrap().to_string(), "bf16");
        let e = "int4".parse::<WeightDtype>().unwrap_err().to_string();
        assert!(e.contains("int4") && e.contains("f32, bf16, q8"), "{e}");
    }

    #[test]
    fn bf16_rounds_to_nearest_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties to even (1.0).
        assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
    }
}
