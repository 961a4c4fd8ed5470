//! Operations that candle lacks or gets wrong, as candle custom ops with explicit backward passes.
//!
//! * [`softmax_last_dim`], [`layer_norm`], [`rms_norm`]: candle 0.11's fused versions have no
//!   backward pass (gradients silently stop there); these have one.
//! * [`max_pool2d`]: candle's gradient is 1/(k·k) of the true value and kernel ≠ stride is an
//!   error; this one routes the whole gradient to the (first) maximum, like PyTorch, for any
//!   kernel, stride and padding.
//! * [`avg_pool2d`]: any kernel, stride and padding, with PyTorch's `count_include_pad=True`.
//! * [`relu`]: one pass forward and one backward, where candle's backward builds four tensors.
//!
//! Forward passes are plain loops over contiguous f32 slices (pooling: planes in parallel; the
//! layer norm vectorised, its rows split across the kernels' team); backward passes are either tensor
//! expressions (so they are differentiable again) or a second custom op. Each op is a small
//! struct, so a faster kernel can replace one without touching the layers.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Shape, Tensor, D};
use rayon::prelude::*;

use crate::{Error, Result};

type CResult<T> = candle_core::Result<T>;

fn f32_slice<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> CResult<&'a [f32]> {
    let data = match s {
        CpuStorage::F32(v) => v.as_slice(),
        _ => candle_core::bail!("{op}: expected f32 input"),
    };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&data[a..b]),
        None => candle_core::bail!("{op}: expected a contiguous input"),
    }
}

fn last_dim(l: &Layout, op: &str) -> CResult<usize> {
    match l.dims().last() {
        Some(&d) if d > 0 => Ok(d),
        _ => candle_core::bail!(
            "{op}: expected at least one dimension of size > 0, got shape {:?}",
            l.dims()
        ),
    }
}

// ---------------------------------------------------------------------------------------------
// Softmax over the last dimension.

struct SoftmaxLastDim;

impl CustomOp1 for SoftmaxLastDim {
    fn name(&self) -> &'static str {
        "kiln-softmax-last-dim"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let d = last_dim(l, self.name())?;
        let mut out = vec![0f32; x.len()];
        for (xr, yr) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            let max = xr.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f32;
            for (y, &v) in yr.iter_mut().zip(xr) {
                *y = (v - max).exp();
                sum += *y;
            }
            for y in yr.iter_mut() {
                *y /= sum;
            }
        }
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        // dx = y ⊙ (g - Σ_j g_j y_j)
        let dot = (grad * res)?.sum_keepdim(D::Minus1)?;
        Ok(Some((res * grad.broadcast_sub(&dot)?)?))
    }
}

/// Softmax over the last dimension, with a backward pass.
pub fn softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    Ok(xs.contiguous()?.apply_op1(SoftmaxLastDim)?)
}

/// Log-softmax over the last dimension (candle's composed version, which is differentiable).
pub fn log_softmax_last_dim(xs: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::ops::log_softmax(xs, D::Minus1)?)
}

// ---------------------------------------------------------------------------------------------
// ReLU.

/// `max(x, 0)` (a NaN stays NaN, as PyTorch's), one pass on the team.
struct Relu;

crate::kernels::simd_kernel! {
    /// `y = max(x, 0)`, a NaN kept.
    fn relu_rows<'a>(x: &'a [f32], y: &'a mut [f32]) as ReluRows {
        for (y, &x) in y.iter_mut().zip(x) {
            *y = if x > 0.0 || x.is_nan() { x } else { 0.0 };
        }
    }
}

crate::kernels::simd_kernel! {
    /// `dx = dy` where the output was positive, else 0 (PyTorch's `threshold_backward`).
    fn relu_grad_rows<'a>(y: &'a [f32], dy: &'a [f32], dx: &'a mut [f32]) as ReluGradRows {
        for ((dx, &y), &dy) in dx.iter_mut().zip(y).zip(dy) {
            *dx = if y > 0.0 { dy } else { 0.0 };
        }
    }
}

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "kiln-relu"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let mut out = vec![0f32; x.len()];
        crate::kernels::team_parts(&mut out, 1, crate::kernels::MIN_PART, |at, y| {
            pulp::Arch::new().dispatch(ReluRows(&x[at..at + y.len()], y))
        });
        Ok((CpuStorage::F32(out), l.shape().clone()))
    }

    fn bwd(&self, _arg: &Tensor, res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        Ok(Some(res.apply_op2_no_bwd(&grad.contiguous()?, &ReluGrad)?))
    }
}

/// (ReLU output, its gradient) → the input's gradient.
struct ReluGrad;

impl CustomOp2 for ReluGrad {
    fn name(&self) -> &'static str {
        "kiln-relu-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let y = f32_slice(s1, l1, self.name())?;
        let dy = f32_slice(s2, l2, self.name())?;
        if y.len() != dy.len() {
            candle_core::bail!("relu grad: {} outputs but {} gradients", y.len(), dy.len());
        }
        let mut dx = vec![0f32; y.len()];
        crate::kernels::team_parts(&mut dx, 1, crate::kernels::MIN_PART, |at, d| {
            let r = at..at + d.len();
            pulp::Arch::new().dispatch(ReluGradRows(&y[r.clone()], &dy[r], d))
        });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// ReLU, `max(x, 0)`, with its gradient in one pass (candle's builds a zero tensor, a
/// comparison, a conversion and a product); a NaN input stays NaN and the gradient at 0 is 0,
/// as PyTorch's. A tensor not f32 on the CPU takes candle's `relu`.
pub fn relu(xs: &Tensor) -> Result<Tensor> {
    if !crate::kernels::fusable(xs) {
        return Ok(xs.relu()?);
    }
    let xs = xs.contiguous()?;
    Ok(if xs.track_op() {
        xs.apply_op1(Relu)?
    } else {
        xs.apply_op1_no_bwd(&Relu)?
    })
}

// ---------------------------------------------------------------------------------------------
// Layer norm and RMS norm over the last dimension.

struct LayerNormOp {
    eps: f32,
}

/// The sum of `v` in 16 independent lanes (a loop that vectorises, where one running f32 sum
/// cannot), combined at the end.
#[inline(always)]
fn lane_sum(v: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; 16];
    let chunks = v.chunks_exact(16);
    let tail: f32 = chunks.remainder().iter().map(|&x| f(x)).sum();
    for c in chunks {
        for l in 0..16 {
            lanes[l] += f(c[l]);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

crate::kernels::simd_kernel! {
    /// Rows of `d` values: `y = (x − mean) / √(var + eps) · w + b`, each row on its own.
    fn layer_norm_rows<'a>(
        x: &'a [f32],
        y: &'a mut [f32],
        w: &'a [f32],
        b: &'a [f32],
        d: usize,
        eps: f32,
    ) as LayerNormRows {
        for (xr, yr) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)) {
            let mean = lane_sum(xr, |v| v) / d as f32;
            let var = lane_sum(xr, |v| (v - mean) * (v - mean)) / d as f32;
            let rstd = 1.0 / (var + eps).sqrt();
            for (((y, &x), &w), &b) in yr.iter_mut().zip(xr).zip(w).zip(b) {
                *y = (x - mean) * rstd * w + b;
            }
        }
    }
}

impl CustomOp3 for LayerNormOp {
    fn name(&self) -> &'static str {
        "kiln-layer-norm"
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
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let b = f32_slice(s3, l3, self.name())?;
        let d = last_dim(l1, self.name())?;
        if w.len() != d || b.len() != d {
            candle_core::bail!(
                "layer norm: weight and bias must have {d} elements, got {} and {}",
                w.len(),
                b.len()
            );
        }
        let mut out = vec![0f32; x.len()];
        let eps = self.eps;
        crate::kernels::team_parts(&mut out, d, crate::kernels::MIN_PART, |at, y| {
            let x = &x[at..at + y.len()];
            pulp::Arch::new().dispatch(LayerNormRows(x, y, w, b, d, eps))
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let d = x.dim(D::Minus1)?;
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let rstd = (var + self.eps as f64)?.sqrt()?.recip()?;
        let xhat = xc.broadcast_mul(&rstd)?;
        let gw = grad.broadcast_mul(w)?;
        let m1 = gw.mean_keepdim(D::Minus1)?;
        let m2 = (&gw * &xhat)?.mean_keepdim(D::Minus1)?;
        let dx = (gw.broadcast_sub(&m1)? - xhat.broadcast_mul(&m2)?)?.broadcast_mul(&rstd)?;
        let dw = (grad * &xhat)?.reshape(((), d))?.sum(0)?;
        let db = grad.reshape(((), d))?.sum(0)?;
        Ok((Some(dx), Some(dw), Some(db)))
    }
}

/// Layer normalisation over the last dimension: `(x - mean) / sqrt(var + eps) * w + b`, with the
/// biased variance (PyTorch's `F.layer_norm`), with a backward pass for `x`, `w` and `b`.
pub fn layer_norm(xs: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(xs.contiguous()?.apply_op3(
        &w.contiguous()?,
        &b.contiguous()?,
        LayerNormOp { eps: eps as f32 },
    )?)
}

struct RmsNormOp {
    eps: f32,
}

impl CustomOp2 for RmsNormOp {
    fn name(&self) -> &'static str {
        "kiln-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let w = f32_slice(s2, l2, self.name())?;
        let d = last_dim(l1, self.name())?;
        if w.len() != d {
            candle_core::bail!("rms norm: weight must have {d} elements, got {}", w.len());
        }
        let mut out = vec![0f32; x.len()];
        for (xr, yr) in x.chunks_exact(d).zip(out.chunks_exact_mut(d)) {
            let ms = xr.iter().map(|v| v * v).sum::<f32>() / d as f32;
            let r = 1.0 / (ms + self.eps).sqrt();
            for i in 0..d {
                yr[i] = xr[i] * r * w[i];
            }
        }
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let d = x.dim(D::Minus1)?;
        let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
        let r = (ms + self.eps as f64)?.sqrt()?.recip()?;
        let xhat = x.broadcast_mul(&r)?;
        let gw = grad.broadcast_mul(w)?;
        let m = (&gw * &xhat)?.mean_keepdim(D::Minus1)?;
        let dx = (gw - xhat.broadcast_mul(&m)?)?.broadcast_mul(&r)?;
        let dw = (grad * &xhat)?.reshape(((), d))?.sum(0)?;
        Ok((Some(dx), Some(dw)))
    }
}

/// RMS normalisation over the last dimension: `x / sqrt(mean(x²) + eps) * w`, with a backward
/// pass for `x` and `w`.
pub fn rms_norm(xs: &Tensor, w: &Tensor, eps: f64) -> Result<Tensor> {
    Ok(xs
        .contiguous()?
        .apply_op2(&w.contiguous()?, RmsNormOp { eps: eps as f32 })?)
}

// ---------------------------------------------------------------------------------------------
// 2-d pooling.

/// Geometry of a 2-d pooling window: kernel, stride and zero padding, each (height, width).
/// Output size is `floor((H + 2·pad - kernel) / stride) + 1` (PyTorch with `ceil_mode=False`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Pool2d {
    /// Kernel size (height, width).
    pub kernel: (usize, usize),
    /// Stride (height, width).
    pub stride: (usize, usize),
    /// Zero padding on each side (height, width); at most half the kernel, as in PyTorch.
    pub padding: (usize, usize),
}

impl Pool2d {
    /// A square window with the given kernel, stride and padding.
    pub fn square(kernel: usize, stride: usize, padding: usize) -> Self {
        Self {
            kernel: (kernel, kernel),
            stride: (stride, stride),
            padding: (padding, padding),
        }
    }

    /// Check the geometry: kernel and stride ≥ 1, padding ≤ kernel / 2.
    pub fn validate(&self) -> Result<()> {
        if self.kernel.0 == 0 || self.kernel.1 == 0 {
            return Err(Error::param(
                "pool kernel",
                format!("{:?}", self.kernel),
                "sizes ≥ 1",
            ));
        }
        if self.stride.0 == 0 || self.stride.1 == 0 {
            return Err(Error::param(
                "pool stride",
                format!("{:?}", self.stride),
                "sizes ≥ 1",
            ));
        }
        if 2 * self.padding.0 > self.kernel.0 || 2 * self.padding.1 > self.kernel.1 {
            return Err(Error::param(
                "pool padding",
                format!("{:?}", self.padding),
                "at most half the kernel size",
            ));
        }
        Ok(())
    }

    /// Output (height, width) for an input of (height, width), or an error if the window does
    /// not fit.
    pub fn output_size(&self, h: usize, w: usize) -> Result<(usize, usize)> {
        let (hp, wp) = (h + 2 * self.padding.0, w + 2 * self.padding.1);
        if hp < self.kernel.0 || wp < self.kernel.1 {
            return Err(Error::shape(format!(
                "pooling: input {h}×{w} (padded {hp}×{wp}) is smaller than the kernel {}×{}",
                self.kernel.0, self.kernel.1
            )));
        }
        Ok((
            (hp - self.kernel.0) / self.stride.0 + 1,
            (wp - self.kernel.1) / self.stride.1 + 1,
        ))
    }

    fn dims4(&self, l: &Layout, op: &str) -> CResult<(usize, usize, usize, usize, usize)> {
        match l.dims() {
            &[b, c, h, w] => {
                let (oh, ow) = self
                    .output_size(h, w)
                    .map_err(|e| candle_core::Error::Msg(format!("{op}: {e}")))?;
                Ok((b * c, h, w, oh, ow))
            }
            d => candle_core::bail!(
                "{op}: expected a (batch, channels, height, width) input, got shape {d:?}"
            ),
        }
    }

    /// Clamped window rows/cols for output position (o, axis) and PyTorch's avg-pool divisor
    /// length along that axis (padding counted, `count_include_pad=True`).
    fn window(&self, o: usize, axis: usize, size: usize) -> (usize, usize, usize) {
        let (k, s, p) = if axis == 0 {
            (self.kernel.0, self.stride.0, self.padding.0)
        } else {
            (self.kernel.1, self.stride.1, self.padding.1)
        };
        let start = (o * s) as isize - p as isize;
        let end = (start + k as isize).min((size + p) as isize);
        let div_len = (end - start) as usize;
        let lo = start.max(0) as usize;
        let hi = (end.min(size as isize)).max(0) as usize;
        (lo, hi, div_len)
    }

    /// The clamped (start, end) of every output position's window along one axis.
    fn spans(&self, axis: usize, size: usize, out: usize) -> Vec<(usize, usize)> {
        (0..out)
            .map(|o| {
                let (lo, hi, _) = self.window(o, axis, size);
                (lo, hi)
            })
            .collect()
    }

    /// True when every window is 2×2 at stride 2 inside the plane (the common case, which
    /// [`MaxPool2x2`] and [`MaxPool2x2Grad`] handle).
    fn two_by_two(rows: &[(usize, usize)], cols: &[(usize, usize)]) -> bool {
        let full2 =
            |sp: &[(usize, usize)]| sp.iter().enumerate().all(|(i, &s)| s == (2 * i, 2 * i + 2));
        full2(rows) && full2(cols)
    }

    /// For each output position (i·OW + j) of one plane (H, W), the index of the first maximum
    /// of its window (a NaN wins, so it propagates); `None` for a window of padding only.
    fn plane_argmax(
        plane: &[f32],
        w: usize,
        rows: &[(usize, usize)],
        cols: &[(usize, usize)],
        mut f: impl FnMut(usize, Option<usize>),
    ) {
        for (i, &(r0, r1)) in rows.iter().enumerate() {
            for (j, &(c0, c1)) in cols.iter().enumerate() {
                if r0 >= r1 || c0 >= c1 {
                    f(i * cols.len() + j, None);
                    continue;
                }
                let (mut bi, mut bv) = (r0 * w + c0, plane[r0 * w + c0]);
                for r in r0..r1 {
                    for (c, &v) in plane[r * w + c0..r * w + c1].iter().enumerate() {
                        if v > bv || v.is_nan() {
                            (bi, bv) = (r * w + c0 + c, v);
                        }
                    }
                }
                f(i * cols.len() + j, Some(bi));
            }
        }
    }
}

/// Which of a 2×2 window's values (a, b, c, d: top left, top right, bottom left, bottom right)
/// is its first maximum, scanning in that order, a NaN taking over (so it propagates), and the
/// value: the rule of [`Pool2d::plane_argmax`], branch-free so that loops of it vectorise.
#[inline(always)]
fn pick4(a: f32, b: f32, c: f32, d: f32) -> (u32, f32) {
    let (mut bi, mut bv) = (0u32, a);
    for (k, v) in [(1u32, b), (2, c), (3, d)] {
        let take = v > bv || v.is_nan();
        bi = if take { k } else { bi };
        bv = if take { v } else { bv };
    }
    (bi, bv)
}

/// Plane sizes of a pooling: input (H, W), output (OH, OW).
#[derive(Clone, Copy)]
struct PlaneDims {
    h: usize,
    w: usize,
    oh: usize,
    ow: usize,
}

crate::kernels::simd_kernel! {
    /// Max pooling 2×2 at stride 2 of whole planes: `x` (P, H, W) → `out` (P, OH, OW).
    fn max_pool_2x2<'a>(x: &'a [f32], out: &'a mut [f32], d: PlaneDims) as MaxPool2x2 {
        let PlaneDims { h, w, oh, ow } = d;
        for (plane, o) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)) {
            for (i, orow) in o.chunks_exact_mut(ow).enumerate() {
                let top = &plane[2 * i * w..2 * i * w + 2 * ow];
                let bot = &plane[(2 * i + 1) * w..(2 * i + 1) * w + 2 * ow];
                for ((o, t), b) in orow.iter_mut().zip(top.chunks_exact(2)).zip(bot.chunks_exact(2)) {
                    *o = pick4(t[0], t[1], b[0], b[1]).1;
                }
            }
        }
    }
}

crate::kernels::simd_kernel! {
    /// Its gradient: each output gradient goes to its window's first maximum ([`pick4`]); the
    /// windows do not overlap, so every input position is written once (`dx` starts at zero).
    fn max_pool_2x2_grad<'a>(x: &'a [f32], g: &'a [f32], dx: &'a mut [f32], d: PlaneDims) as MaxPool2x2Grad {
        let PlaneDims { h, w, oh, ow } = d;
        let planes = x.chunks_exact(h * w).zip(g.chunks_exact(oh * ow));
        for ((plane, gp), dp) in planes.zip(dx.chunks_exact_mut(h * w)) {
            for (i, grow) in gp.chunks_exact(ow).enumerate() {
                let top = &plane[2 * i * w..2 * i * w + 2 * ow];
                let bot = &plane[(2 * i + 1) * w..(2 * i + 1) * w + 2 * ow];
                let (dtop, dbot) = dp[2 * i * w..(2 * i + 2) * w].split_at_mut(w);
                let src = grow.iter().zip(top.chunks_exact(2)).zip(bot.chunks_exact(2));
                let dst = dtop[..2 * ow].chunks_exact_mut(2).zip(dbot[..2 * ow].chunks_exact_mut(2));
                for (((&gv, t), b), (dt, db)) in src.zip(dst) {
                    let (k, _) = pick4(t[0], t[1], b[0], b[1]);
                    dt[0] = if k == 0 { gv } else { 0.0 };
                    dt[1] = if k == 1 { gv } else { 0.0 };
                    db[0] = if k == 2 { gv } else { 0.0 };
                    db[1] = if k == 3 { gv } else { 0.0 };
                }
            }
        }
    }
}

/// Planes per rayon task: enough work to pay for the hand-off.
const PLANES_PER_TASK: usize = 8;

struct MaxPool2dOp(Pool2d);

impl CustomOp1 for MaxPool2dOp {
    fn name(&self) -> &'static str {
        "kiln-max-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let (planes, h, w, oh, ow) = self.0.dims4(l, self.name())?;
        let mut out = vec![0f32; planes * oh * ow];
        let (rows, cols) = (self.0.spans(0, h, oh), self.0.spans(1, w, ow));
        if Pool2d::two_by_two(&rows, &cols) {
            let (po, pi) = (oh * ow, h * w);
            crate::kernels::team_parts(&mut out, po, 1 << 12, |at, o| {
                let x = &x[at / po * pi..(at + o.len()) / po * pi];
                pulp::Arch::new().dispatch(MaxPool2x2(x, o, PlaneDims { h, w, oh, ow }))
            });
            let d = l.dims();
            return Ok((CpuStorage::F32(out), Shape::from((d[0], d[1], oh, ow))));
        }
        out.par_chunks_mut(oh * ow)
            .zip(x.par_chunks(h * w))
            .with_min_len(PLANES_PER_TASK)
            .for_each(|(o, plane)| {
                Pool2d::plane_argmax(plane, w, &rows, &cols, |k, m| {
                    o[k] = m.map_or(f32::NEG_INFINITY, |m| plane[m]);
                })
            });
        let d = l.dims();
        Ok((CpuStorage::F32(out), Shape::from((d[0], d[1], oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let dx = arg.apply_op2_no_bwd(&grad.contiguous()?, &MaxPool2dGrad(self.0))?;
        Ok(Some(dx))
    }
}

/// Backward of max pooling: (input, grad of output) → grad of input.
struct MaxPool2dGrad(Pool2d);

impl CustomOp2 for MaxPool2dGrad {
    fn name(&self) -> &'static str {
        "kiln-max-pool2d-grad"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let g = f32_slice(s2, l2, self.name())?;
        let (planes, h, w, oh, ow) = self.0.dims4(l1, self.name())?;
        if g.len() != planes * oh * ow {
            candle_core::bail!(
                "max-pool grad: expected {} gradient values, got {}",
                planes * oh * ow,
                g.len()
            );
        }
        let mut dx = vec![0f32; x.len()];
        let (rows, cols) = (self.0.spans(0, h, oh), self.0.spans(1, w, ow));
        if Pool2d::two_by_two(&rows, &cols) {
            let (po, pi) = (oh * ow, h * w);
            crate::kernels::team_parts(&mut dx, pi, 1 << 12, |at, d| {
                let (x, g) = (
                    &x[at..at + d.len()],
                    &g[at / pi * po..(at + d.len()) / pi * po],
                );
                pulp::Arch::new().dispatch(MaxPool2x2Grad(x, g, d, PlaneDims { h, w, oh, ow }))
            });
            return Ok((CpuStorage::F32(dx), l1.shape().clone()));
        }
        dx.par_chunks_mut(h * w)
            .zip(x.par_chunks(h * w).zip(g.par_chunks(oh * ow)))
            .with_min_len(PLANES_PER_TASK)
            .for_each(|(dp, (plane, gp))| {
                Pool2d::plane_argmax(plane, w, &rows, &cols, |k, m| {
                    if let Some(m) = m {
                        dp[m] += gp[k];
                    }
                })
            });
        Ok((CpuStorage::F32(dx), l1.shape().clone()))
    }
}

/// 2-d max pooling over (B, C, H, W) with any kernel, stride and padding (padding never wins
/// the max), and PyTorch's gradient: the whole output gradient goes to the first maximum.
pub fn max_pool2d(xs: &Tensor, pool: Pool2d) -> Result<Tensor> {
    pool.validate()?;
    check_f32_4d(xs, "max_pool2d")?;
    Ok(xs.contiguous()?.apply_op1(MaxPool2dOp(pool))?)
}

struct AvgPool2dOp(Pool2d);

impl CustomOp1 for AvgPool2dOp {
    fn name(&self) -> &'static str {
        "kiln-avg-pool2d"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32_slice(s, l, self.name())?;
        let (planes, h, w, oh, ow) = self.0.dims4(l, self.name())?;
        let mut out = vec![0f32; planes * oh * ow];
        for (plane, o) in x.chunks_exact(h * w).zip(out.chunks_exact_mut(oh * ow)) {
            for i in 0..oh {
                let (r0, r1, dh) = self.0.window(i, 0, h);
                for j in 0..ow {
                    let (c0, c1, dw) = self.0.window(j, 1, w);
                    let mut sum = 0f32;
                    for r in r0..r1 {
                        for c in c0..c1 {
                            sum += plane[r * w + c];
                        }
                    }
                    o[i * ow + j] = sum / (dh * dw) as f32;
                }
            }
        }
        let d = l.dims();
        Ok((CpuStorage::F32(out), Shape::from((d[0], d[1], oh, ow))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> CResult<Option<Tensor>> {
        let dims = arg.dims4()?;
        let dx = grad.contiguous()?.apply_op1_no_bwd(&AvgPool2dGrad {
            pool: self.0,
            h: dims.2,
            w: dims.3,
        })?;
        Ok(Some(dx))
    }
}

/// Backward of average pooling: grad of output → grad of input of height `h`, width `w`.
struct AvgPool2dGrad {
    pool: Pool2d,
    h: usize,
    w: usize,
}

impl CustomOp1 for AvgPool2dGrad {
    fn name(&self) -> &'static str {
        "kiln-avg-pool2d-grad"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> CResult<(CpuStorage, Shape)> {
        let g = f32_slice(s, l, self.name())?;
        let (b, c, oh, ow) = match l.dims() {
            &[b, c, oh, ow] => (b, c, oh, ow),
            d => candle_core::bail!("avg-pool grad: expected a 4-d gradient, got shape {d:?}"),
        };
        let (h, w) = (self.h, self.w);
        let mut dx = vec![0f32; b * c * h * w];
        for (gp, dp) in g.chunks_exact(oh * ow).zip(dx.chunks_exact_mut(h * w)) {
            for i in 0..oh {
                let (r0, r1, dh) = self.pool.window(i, 0, h);
                for j in 0..ow {
                    let (c0, c1, dw) = self.pool.window(j, 1, w);
                    let v = gp[i * ow + j] / (dh * dw) as f32;
                    for r in r0..r1 {
                        for cc in c0..c1 {
                            dp[r * w + cc] += v;
                        }
                    }
                }
            }
        }
        Ok((CpuStorage::F32(dx), Shape::from((b, c, h, w))))
    }
}

/// 2-d average pooling over (B, C, H, W) with any kernel, stride and padding; padded zeros count
/// in the divisor (PyTorch's default `count_include_pad=True`).
pub fn avg_pool2d(xs: &Tensor, pool: Pool2d) -> Result<Tensor> {
    pool.validate()?;
    check_f32_4d(xs, "avg_pool2d")?;
    Ok(xs.contiguous()?.apply_op1(AvgPool2dOp(pool))?)
}

fn check_f32_4d(xs: &Tensor, op: &str) -> Result<()> {
    if xs.dtype() != DType::F32 {
        return Err(Error::shape(format!(
            "{op}: expected f32 input, got {:?}",
            xs.dtype()
        )));
    }
    if xs.rank() != 4 {
        return Err(Error::shape(format!(
            "{op}: expected a (batch, channels, height, width) input, got shape {:?}",
            xs.dims()
        )));
    }
    Ok(())
}
