//! Causal self-attention fused: `softmax(q·kᵀ·scale + causal mask)·v` per (batch, head) as one
//! custom op with its own backward pass.
//!
//! The forward walks the queries in blocks of [`ROWS`] rows; a block of rows `r0..r1` needs
//! only the keys `0..r1`, so the product `q·kᵀ` skips most of the masked upper triangle (for
//! T = 512 it computes 56% of the full square). Each block is one gemm for the scores, one
//! pass for the softmax (scale, max, exp, normalise, in place) and one gemm for `p·v`. While a
//! gradient is wanted the softmax rows P (B, H, T, T) are kept for the backward pass, which then
//! needs no recomputation; otherwise only one block of rows is ever allocated. The backward,
//! per block, with `dP = dO·vᵀ` and `dS = P ⊙ (dP - rowsum(P ⊙ dP))·scale`:
//! `dv += Pᵀ·dO`, `dq = dS·k`, `dk += dSᵀ·q` — four gemms, no (T, T) tensor beyond P.
//!
//! Heads run in parallel with rayon when there are at least as many as threads; otherwise the
//! gemms themselves are split.
//!
//! Legend: B batch, H heads, T time (queries = keys), D head size, R rows of a block.

use std::sync::Mutex;

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use super::gemm::{matmul, Mat, MatMut, Par};
use super::{exp, f32_slice, fusable, simd_kernel, with_f32, CResult};
use crate::{ops, Error, Result};

/// Query rows per block.
const ROWS: usize = 64;

/// Sizes of one attention problem.
#[derive(Clone, Copy)]
struct Dims {
    /// Number of (batch, head) pairs, B·H.
    heads: usize,
    t: usize,
    d: usize,
}

/// The query blocks `(r0, r1)` of `t` rows.
fn blocks(t: usize) -> impl Iterator<Item = (usize, usize)> {
    (0..t).step_by(ROWS).map(move |r0| (r0, (r0 + ROWS).min(t)))
}

simd_kernel! {
    /// In place: the first `valid` entries of `row` become `softmax(row·scale)`, the rest 0.
    /// The max and the sum run in [`LANES`] independent lanes (a loop that vectorises, where one
    /// running f32 sum or max cannot), combined at the end.
    fn softmax_row<'a>(row: &'a mut [f32], valid: usize, scale: f32) as SoftmaxRow {
        let (live, dead) = row.split_at_mut(valid);
        let mut lanes = [f32::NEG_INFINITY; LANES];
        let mut chunks = live.chunks_exact(LANES);
        for c in &mut chunks {
            for l in 0..LANES {
                lanes[l] = lanes[l].max(c[l] * scale);
            }
        }
        let max = chunks
            .remainder()
            .iter()
            .fold(f32::NEG_INFINITY, |m, &v| m.max(v * scale));
        let max = lanes.iter().fold(max, |m, &v| m.max(v));
        let mut sums = [0f32; LANES];
        let mut chunks = live.chunks_exact_mut(LANES);
        for c in &mut chunks {
            for l in 0..LANES {
                let e = exp(c[l] * scale - max);
                c[l] = e;
                sums[l] += e;
            }
        }
        let mut sum = 0f32;
        for v in chunks.into_remainder() {
            *v = exp(*v * scale - max);
            sum += *v;
        }
        let inv = 1.0 / (sums.iter().sum::<f32>() + sum);
        live.iter_mut().for_each(|v| *v *= inv);
        dead.fill(0.0);
    }
}

simd_kernel! {
    /// In place: `dp` (one row of dP) becomes `dS = p ⊙ (dp - Σ p·dp)·scale`; masked entries have
    /// p = 0, so they get dS = 0. The sum runs in [`LANES`] lanes, like [`softmax_row`].
    fn softmax_grad_row<'a>(dp: &'a mut [f32], p: &'a [f32], scale: f32) as SoftmaxGradRow {
        let mut lanes = [0f32; LANES];
        let (dc, pc) = (dp.chunks_exact(LANES), p.chunks_exact(LANES));
        let tail: f32 = dc
            .remainder()
            .iter()
            .zip(pc.remainder())
            .map(|(g, p)| g * p)
            .sum();
        for (g, q) in dc.zip(pc) {
            for l in 0..LANES {
                lanes[l] += g[l] * q[l];
            }
        }
        let dot = lanes.iter().sum::<f32>() + tail;
        for (g, &q) in dp.iter_mut().zip(p) {
            *g = q * (*g - dot) * scale;
        }
    }
}

/// Independent accumulators of [`softmax_row`] (one AVX-512 vector of f32).
const LANES: usize = 16;

/// Forward of one head: `q`, `k`, `v` (T, D) → `o` (T, D). `p` holds the softmax rows: all T
/// of them (T, T) when `keep`, else one block (R, T) reused.
#[allow(clippy::too_many_arguments)]
fn head_forward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    o: &mut [f32],
    p: &mut [f32],
    keep: bool,
    dm: Dims,
    scale: f32,
    par: Par,
) {
    let (t, d) = (dm.t, dm.d);
    for (r0, r1) in blocks(t) {
        let n = r1 - r0;
        let pb = if keep { &mut p[r0 * t..] } else { &mut p[..] };
        // (R, D)·(D, r1) = (R, r1) raw scores, rows of stride T
        matmul(
            MatMut::strided(&mut *pb, n, r1, t, 1),
            Mat::rows(&q[r0 * d..r1 * d], n, d),
            Mat::rows(&k[..r1 * d], r1, d).t(),
            false,
            par,
        );
        for (i, row) in pb.chunks_mut(t).take(n).enumerate() {
            pulp::Arch::new().dispatch(SoftmaxRow(&mut row[..r1], r0 + i + 1, scale));
        }
        // (R, r1)·(r1, D) = (R, D)
        matmul(
            MatMut::rows(&mut o[r0 * d..r1 * d], n, d),
            Mat::strided(&*pb, n, r1, t, 1),
            Mat::rows(&v[..r1 * d], r1, d),
            false,
            par,
        );
    }
}

/// Backward of one head from its softmax rows `p` (T, T) and the output gradient `go` (T, D);
/// `ds` is scratch (R, T).
#[allow(clippy::too_many_arguments)]
fn head_backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    p: &[f32],
    go: &[f32],
    (dq, dk, dv): (&mut [f32], &mut [f32], &mut [f32]),
    ds: &mut [f32],
    dm: Dims,
    scale: f32,
    par: Par,
) {
    let (t, d) = (dm.t, dm.d);
    dk.fill(0.0);
    dv.fill(0.0);
    for (r0, r1) in blocks(t) {
        let n = r1 - r0;
        let pb = Mat::strided(&p[r0 * t..], n, r1, t, 1); // (R, r1)
        let gob = Mat::rows(&go[r0 * d..r1 * d], n, d); // (R, D)
                                                        // dv[..r1] += (r1, R)·(R, D)
        matmul(
            MatMut::rows(&mut dv[..r1 * d], r1, d),
            pb.t(),
            gob,
            true,
            par,
        );
        // dP = (R, D)·(D, r1)
        matmul(
            MatMut::rows(&mut ds[..n * r1], n, r1),
            gob,
            Mat::rows(&v[..r1 * d], r1, d).t(),
            false,
            par,
        );
        for (i, row) in ds[..n * r1].chunks_exact_mut(r1).enumerate() {
            let pr = &p[(r0 + i) * t..(r0 + i) * t + r1];
            pulp::Arch::new().dispatch(SoftmaxGradRow(row, pr, scale));
        }
        let dsb = Mat::rows(&ds[..n * r1], n, r1);
        // dq[r0..r1] = (R, r1)·(r1, D)
        matmul(
            MatMut::rows(&mut dq[r0 * d..r1 * d], n, d),
            dsb,
            Mat::rows(&k[..r1 * d], r1, d),
            false,
            par,
        );
        // dk[..r1] += (r1, R)·(R, D)
        matmul(
            MatMut::rows(&mut dk[..r1 * d], r1, d),
            dsb.t(),
            Mat::rows(&q[r0 * d..r1 * d], n, d),
            true,
            par,
        );
    }
}

/// Heads in parallel (one thread each) when there are enough of them, else split the gemms.
fn head_parallel(heads: usize) -> bool {
    heads >= candle_core::utils::get_num_threads().max(2)
}

/// Forward of every head: `o` (B·H·T·D); the softmax rows (B·H·T·T) when `keep`, else empty.
fn forward_all(q: &[f32], k: &[f32], v: &[f32], dm: Dims, scale: f32, keep: bool) -> Vec<Vec<f32>> {
    let (t, d) = (dm.t, dm.d);
    let mut o = vec![0f32; dm.heads * t * d];
    let mut p = if keep {
        vec![0f32; dm.heads * t * t]
    } else {
        Vec::new()
    };
    let per_head = |h: usize, oh: &mut [f32], ph: &mut [f32], par: Par| {
        let s = h * t * d..(h + 1) * t * d;
        head_forward(
            &q[s.clone()],
            &k[s.clone()],
            &v[s],
            oh,
            ph,
            keep,
            dm,
            scale,
            par,
        );
    };
    let scratch = || vec![0f32; ROWS.min(t) * t];
    match (head_parallel(dm.heads), keep) {
        (true, true) => o
            .par_chunks_mut(t * d)
            .zip(p.par_chunks_mut(t * t))
            .enumerate()
            .for_each(|(h, (oh, ph))| per_head(h, oh, ph, Par::Seq)),
        (true, false) => o
            .par_chunks_mut(t * d)
            .enumerate()
            .for_each_init(scratch, |s, (h, oh)| per_head(h, oh, s, Par::Seq)),
        (false, true) => o
            .chunks_mut(t * d)
            .zip(p.chunks_mut(t * t))
            .enumerate()
            .for_each(|(h, (oh, ph))| per_head(h, oh, ph, Par::Auto)),
        (false, false) => {
            let mut s = scratch();
            o.chunks_mut(t * d)
                .enumerate()
                .for_each(|(h, oh)| per_head(h, oh, &mut s, Par::Auto))
        }
    }
    vec![o, p]
}

/// (q, k, v) (B, H, T, D) f32 → (B, H, T, D).
struct CausalAttention {
    scale: f32,
    /// Keep the softmax rows for the backward pass (a gradient is wanted).
    keep: bool,
    /// The softmax rows (B, H, T, T) of the forward pass, when kept.
    probs: Mutex<Vec<f32>>,
}

fn check_dims(l1: &Layout, l2: &Layout, l3: &Layout, op: &str) -> CResult<Dims> {
    let (b, h, t, d) = l1.shape().dims4()?;
    if l2.dims() != l1.dims() || l3.dims() != l1.dims() {
        candle_core::bail!(
            "{op}: expected q, k, v of one shape (B, H, T, D), got {:?}, {:?}, {:?}",
            l1.dims(),
            l2.dims(),
            l3.dims()
        );
    }
    Ok(Dims { heads: b * h, t, d })
}

fn poisoned(op: &str) -> candle_core::Error {
    candle_core::Error::Msg(format!("{op}: a thread panicked while holding its state"))
}

impl CustomOp3 for CausalAttention {
    fn name(&self) -> &'static str {
        "kiln-causal-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let dm = check_dims(l1, l2, l3, self.name())?;
        let q = f32_slice(s1, l1, self.name())?;
        let k = f32_slice(s2, l2, self.name())?;
        let v = f32_slice(s3, l3, self.name())?;
        let mut out = forward_all(q, k, v, dm, self.scale, self.keep);
        let p = out.pop().unwrap_or_default();
        let o = out.pop().unwrap_or_default();
        if self.keep {
            *self.probs.lock().map_err(|_| poisoned(self.name()))? = p;
        }
        Ok((CpuStorage::F32(o), l1.shape().clone()))
    }

    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let name = self.name();
        let dm = check_dims(q.layout(), k.layout(), v.layout(), name)?;
        let (t, d) = (dm.t, dm.d);
        let n = dm.heads * t * d;
        let (mut dq, mut dk, mut dv) = (vec![0f32; n], vec![0f32; n], vec![0f32; n]);
        let stored = self.probs.lock().map_err(|_| poisoned(name))?;
        with_f32(q, name, |q| {
            with_f32(k, name, |k| {
                with_f32(v, name, |v| {
                    with_f32(grad, name, |go| {
                        let recomputed;
                        let p: &[f32] = if stored.len() == dm.heads * t * t {
                            &stored[..]
                        } else {
                            recomputed = forward_all(q, k, v, dm, self.scale, true).pop();
                            recomputed.as_deref().unwrap_or_default()
                        };
                        let per_head = |h: usize,
                                        grads: (&mut [f32], &mut [f32], &mut [f32]),
                                        ds: &mut Vec<f32>,
                                        par: Par| {
                            let s = h * t * d..(h + 1) * t * d;
                            head_backward(
                                &q[s.clone()],
                                &k[s.clone()],
                                &v[s.clone()],
                                &p[h * t * t..(h + 1) * t * t],
                                &go[s],
                                grads,
                                ds,
                                dm,
                                self.scale,
                                par,
                            );
                        };
                        let scratch = || vec![0f32; ROWS.min(t) * t];
                        if head_parallel(dm.heads) {
                            dq.par_chunks_mut(t * d)
                                .zip(dk.par_chunks_mut(t * d))
                                .zip(dv.par_chunks_mut(t * d))
                                .enumerate()
                                .for_each_init(scratch, |s, (h, ((a, b), c))| {
                                    per_head(h, (a, b, c), s, Par::Seq)
                                });
                        } else {
                            let mut s = scratch();
                            dq.chunks_mut(t * d)
                                .zip(dk.chunks_mut(t * d))
                                .zip(dv.chunks_mut(t * d))
                                .enumerate()
                                .for_each(|(h, ((a, b), c))| {
                                    per_head(h, (a, b, c), &mut s, Par::Auto)
                                });
                        }
                        Ok(())
                    })
                })
            })
        })?;
        let shape = q.shape();
        let dev = q.device();
        Ok((
            Some(Tensor::from_vec(dq, shape, dev)?),
            Some(Tensor::from_vec(dk, shape, dev)?),
            Some(Tensor::from_vec(dv, shape, dev)?),
        ))
    }
}

/// Check that `q`, `k`, `v` are (B, H, T, D) of one shape and `scale` finite.
fn validate(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<()> {
    if q.rank() != 4 || k.dims() != q.dims() || v.dims() != q.dims() {
        return Err(Error::shape(format!(
            "causal attention: expected q, k, v of one shape (B, H, T, D), got {:?}, {:?}, {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        )));
    }
    if !scale.is_finite() {
        return Err(Error::param("scale", scale, "a finite number"));
    }
    Ok(())
}

/// Causal self-attention `softmax(q·kᵀ·scale + mask)·v` for `q`, `k`, `v` (B, H, T, D), where
/// query i sees keys 0..=i: fused on the CPU for f32, [`causal_attention_plain`] elsewhere.
pub fn causal_attention(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    validate(q, k, v, scale)?;
    if !(fusable(q) && fusable(k) && fusable(v)) || q.elem_count() == 0 {
        return causal_attention_plain(q, k, v, scale);
    }
    let op = CausalAttention {
        scale: scale as f32,
        keep: q.track_op() || k.track_op() || v.track_op(),
        probs: Mutex::new(Vec::new()),
    };
    Ok(q.contiguous()?
        .apply_op3(&k.contiguous()?, &v.contiguous()?, op)?)
}

/// The additive causal mask (1, 1, T, T): 0 where key j ≤ query i, -∞ above the diagonal.
pub fn causal_mask(t: usize, dtype: DType, device: &Device) -> Result<Tensor> {
    let m: Vec<f32> = (0..t * t)
        .map(|i| {
            if i % t > i / t {
                f32::NEG_INFINITY
            } else {
                0.0
            }
        })
        .collect();
    Ok(Tensor::from_vec(m, (1, 1, t, t), device)?.to_dtype(dtype)?)
}

/// The plain composition [`causal_attention`] replaces: scores `q·kᵀ·scale` (B, H, T, T) plus
/// [`causal_mask`], [`ops::softmax_last_dim`], times `v`.
pub fn causal_attention_plain(q: &Tensor, k: &Tensor, v: &Tensor, scale: f64) -> Result<Tensor> {
    validate(q, k, v, scale)?;
    let t = q.dim(2)?;
    let (q, k, v) = (q.contiguous()?, k.contiguous()?, v.contiguous()?);
    let scores = (q.matmul(&k.t()?)? * scale)?; // (B, H, T, D)·(B, H, D, T) = (B, H, T, T)
    let scores = scores.broadcast_add(&causal_mask(t, q.dtype(), q.device())?)?;
    let probs = ops::softmax_last_dim(&scores)?;
    Ok(probs.matmul(&v)?) // (B, H, T, T)·(B, H, T, D) = (B, H, T, D)
}
