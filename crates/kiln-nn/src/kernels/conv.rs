//! 2-d convolution (cross-correlation, as `torch.nn.functional.conv2d` with groups 1 and
//! dilation 1) through im2col and gemm, forward and backward.
//!
//! Per image b, with `col_b` the (C·KH·KW, OH·OW) matrix of input patches:
//!
//! * forward: `y_b = W · col_b + bias` — W viewed as (O, C·KH·KW);
//! * weight gradient: `dW = Σ_b dy_b · col_bᵀ`, bias gradient `Σ_b Σ_p dy_b`;
//! * input gradient: `dx_b = col2im(Wᵀ · dy_b)`, computed only when the input tracks a
//!   gradient (candle's `Tensor::track_op`): the images fed to a first layer never do.
//!
//! Images run in parallel on the kernels' team when the batch has at least as many images as threads;
//! otherwise the gemm itself is threaded. A 1×1 kernel with stride 1 and no padding skips
//! im2col (the input already is `col_b`). The reference is [`conv2d_plain`] (candle's
//! `conv2d` plus a broadcast bias); the backward passes are not differentiable again.
//!
//! Legend: B batch, C input channels, O output channels, H×W input, OH×OW output, KH×KW kernel,
//! P = OH·OW, K = C·KH·KW.

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};

use super::gemm::{matmul, Mat, MatMut, Par};
use super::{f32_slice, fusable, team, team_parts, CResult};
use crate::{Error, Result};

/// Shapes of one convolution.
#[derive(Debug, Clone, Copy)]
struct Geom {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl Geom {
    fn new(x: &[usize], wt: &[usize], stride: usize, pad: usize) -> CResult<Self> {
        let (&[b, c, h, w], &[o, c2, kh, kw]) = (x, wt) else {
            candle_core::bail!(
                "conv2d: expected input (B, C, H, W) and weight (O, C, KH, KW), got {x:?} and {wt:?}"
            );
        };
        if c != c2 {
            candle_core::bail!("conv2d: input has {c} channels but the weight expects {c2}");
        }
        if stride == 0 || kh == 0 || kw == 0 {
            candle_core::bail!("conv2d: kernel {kh}×{kw} and stride {stride} must be ≥ 1");
        }
        if h + 2 * pad < kh || w + 2 * pad < kw {
            candle_core::bail!(
                "conv2d: input {h}×{w} (padded by {pad}) is smaller than the kernel {kh}×{kw}"
            );
        }
        let oh = (h + 2 * pad - kh) / stride + 1;
        let ow = (w + 2 * pad - kw) / stride + 1;
        Ok(Self {
            b,
            c,
            h,
            w,
            o,
            kh,
            kw,
            stride,
            pad,
            oh,
            ow,
        })
    }

    fn k(&self) -> usize {
        self.c * self.kh * self.kw
    }

    fn p(&self) -> usize {
        self.oh * self.ow
    }

    fn image(&self) -> usize {
        self.c * self.h * self.w
    }

    /// True when the input of one image already is its (K, P) patch matrix.
    fn pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.stride == 1 && self.pad == 0
    }

    /// Output positions `o` along an axis of `size` whose tap `k` lands inside the input:
    /// `0 ≤ o·stride + k - pad < size`.
    fn valid(&self, k: usize, size: usize, out: usize) -> (usize, usize) {
        let s = self.stride;
        let lo = self.pad.saturating_sub(k).div_ceil(s);
        let hi = if size + self.pad > k {
            ((size + self.pad - k - 1) / s + 1).min(out)
        } else {
            0
        };
        (lo.min(hi), hi)
    }

    /// Fill `col` (K, P) with the patches of one image `x` (C, H, W).
    fn im2col(&self, x: &[f32], col: &mut [f32]) {
        let (p, s) = (self.p(), self.stride);
        for c in 0..self.c {
            let plane = &x[c * self.h * self.w..(c + 1) * self.h * self.w];
            for ki in 0..self.kh {
                let (i0, i1) = self.valid(ki, self.h, self.oh);
                for kj in 0..self.kw {
                    let (j0, j1) = self.valid(kj, self.w, self.ow);
                    let r = (c * self.kh + ki) * self.kw + kj;
                    let row = &mut col[r * p..(r + 1) * p];
                    row.fill(0.0);
                    for oi in i0..i1 {
                        let ii = oi * s + ki - self.pad;
                        let src = &plane[ii * self.w..(ii + 1) * self.w];
                        let dst = &mut row[oi * self.ow..(oi + 1) * self.ow];
                        if s == 1 {
                            let jj0 = j0 + kj - self.pad;
                            dst[j0..j1].copy_from_slice(&src[jj0..jj0 + (j1 - j0)]);
                        } else {
                            for oj in j0..j1 {
                                dst[oj] = src[oj * s + kj - self.pad];
                            }
                        }
                    }
                }
            }
        }
    }

    /// Add the patch gradients `col` (K, P) back onto one image's gradient `dx` (C, H, W).
    fn col2im(&self, col: &[f32], dx: &mut [f32]) {
        let (p, s) = (self.p(), self.stride);
        for c in 0..self.c {
            let plane = &mut dx[c * self.h * self.w..(c + 1) * self.h * self.w];
            for ki in 0..self.kh {
                let (i0, i1) = self.valid(ki, self.h, self.oh);
                for kj in 0..self.kw {
                    let (j0, j1) = self.valid(kj, self.w, self.ow);
                    let r = (c * self.kh + ki) * self.kw + kj;
                    let row = &col[r * p..(r + 1) * p];
                    for oi in i0..i1 {
                        let ii = oi * s + ki - self.pad;
                        let dst = &mut plane[ii * self.w..(ii + 1) * self.w];
                        let src = &row[oi * self.ow..(oi + 1) * self.ow];
                        if s == 1 {
                            let jj0 = j0 + kj - self.pad;
                            let dst = &mut dst[jj0..jj0 + (j1 - j0)];
                            dst.iter_mut().zip(&src[j0..j1]).for_each(|(d, v)| *d += v);
                        } else {
                            for oj in j0..j1 {
                                dst[oj * s + kj - self.pad] += src[oj];
                            }
                        }
                    }
                }
            }
        }
    }

    /// Split the batch over threads only when every thread gets an image.
    fn batch_parallel(&self) -> bool {
        let t = candle_core::utils::get_num_threads();
        t > 1 && self.b >= t
    }
}

/// Forward: (x, weight, bias) → y.
struct Conv2dOp {
    stride: usize,
    pad: usize,
}

impl CustomOp3 for Conv2dOp {
    fn name(&self) -> &'static str {
        "kiln-conv2d"
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
        let g = Geom::new(l1.dims(), l2.dims(), self.stride, self.pad)?;
        let x = f32_slice(s1, l1, self.name())?;
        let wt = f32_slice(s2, l2, self.name())?;
        let bias = f32_slice(s3, l3, self.name())?;
        if bias.len() != g.o {
            candle_core::bail!("conv2d: bias has {} values, expected {}", bias.len(), g.o);
        }
        let (k, p) = (g.k(), g.p());
        let mut y = vec![0f32; g.b * g.o * p];
        let one = |col: &mut Vec<f32>, xb: &[f32], yb: &mut [f32], par: Par| {
            let cols = if g.pointwise() {
                xb
            } else {
                g.im2col(xb, col);
                col.as_slice()
            };
            // (O, K) · (K, P) → (O, P)
            matmul(
                MatMut::rows(yb, g.o, p),
                Mat::rows(wt, g.o, k),
                Mat::rows(cols, k, p),
                false,
                par,
            );
            for (row, &bv) in yb.chunks_exact_mut(p).zip(bias) {
                row.iter_mut().for_each(|v| *v += bv);
            }
        };
        let col_len = if g.pointwise() { 0 } else { k * p };
        if g.batch_parallel() {
            let (out, img) = (g.o * p, g.image());
            team_parts(&mut y, out, out, |at, ys| {
                let mut col = vec![0f32; col_len];
                let xs = &x[at / out * img..];
                for (yb, xb) in ys.chunks_mut(out).zip(xs.chunks(img)) {
                    one(&mut col, xb, yb, Par::Seq);
                }
            });
        } else {
            let mut col = vec![0f32; col_len];
            for (yb, xb) in y.chunks_mut(g.o * p).zip(x.chunks(g.image())) {
                one(&mut col, xb, yb, Par::Auto);
            }
        }
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.o, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        wt: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let (o, c, kh, kw) = wt.dims4()?;
        let op = ConvGradOp {
            stride: self.stride,
            pad: self.pad,
        };
        // (O, K + 1): the weight gradient and, in the last column, the bias gradient
        let wb = x.apply_op3_no_bwd(wt, &grad, &ConvParamGrad(op))?;
        let k = c * kh * kw;
        let dw = wb.narrow(1, 0, k)?.reshape((o, c, kh, kw))?;
        let db = wb.narrow(1, k, 1)?.reshape(o)?;
        let dx = if x.track_op() {
            Some(x.apply_op3_no_bwd(wt, &grad, &ConvInputGrad(op))?)
        } else {
            None
        };
        Ok((dx, Some(dw), Some(db)))
    }
}

#[derive(Clone, Copy)]
struct ConvGradOp {
    stride: usize,
    pad: usize,
}

impl ConvGradOp {
    fn slices<'a>(
        &self,
        name: &str,
        s: [(&'a CpuStorage, &Layout); 3],
    ) -> CResult<(Geom, [&'a [f32]; 3])> {
        let g = Geom::new(s[0].1.dims(), s[1].1.dims(), self.stride, self.pad)?;
        if s[2].1.dims() != [g.b, g.o, g.oh, g.ow] {
            candle_core::bail!(
                "{name}: output gradient {:?}, expected {:?}",
                s[2].1.dims(),
                [g.b, g.o, g.oh, g.ow]
            );
        }
        Ok((
            g,
            [
                f32_slice(s[0].0, s[0].1, name)?,
                f32_slice(s[1].0, s[1].1, name)?,
                f32_slice(s[2].0, s[2].1, name)?,
            ],
        ))
    }
}

/// (x, weight, dy) → (O, K + 1): dW and db.
struct ConvParamGrad(ConvGradOp);

impl CustomOp3 for ConvParamGrad {
    fn name(&self) -> &'static str {
        "kiln-conv2d-param-grad"
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
        let (g, [x, _, dy]) = self.0.slices(self.name(), [(s1, l1), (s2, l2), (s3, l3)])?;
        let (k, p, o) = (g.k(), g.p(), g.o);
        let col_len = if g.pointwise() { 0 } else { k * p };
        // dW (O, K) += dy_b (O, P) · col_bᵀ (P, K) over the images of one range
        let range = |r: std::ops::Range<usize>, par: Par| -> Vec<f32> {
            let mut dw = vec![0f32; o * k];
            let mut col = vec![0f32; col_len];
            for b in r {
                let xb = &x[b * g.image()..(b + 1) * g.image()];
                let cols = if g.pointwise() {
                    xb
                } else {
                    g.im2col(xb, &mut col);
                    col.as_slice()
                };
                let dyb = &dy[b * o * p..(b + 1) * o * p];
                matmul(
                    MatMut::rows(&mut dw, o, k),
                    Mat::rows(dyb, o, p),
                    Mat::rows(cols, k, p).t(),
                    true,
                    par,
                );
            }
            dw
        };
        let dw = if g.batch_parallel() {
            let t = candle_core::utils::get_num_threads();
            let per = g.b.div_ceil(t);
            // one partial sum per range, added in range order: the same bits on every run
            let ranges = (0..t).map(|i| (i * per).min(g.b)..((i + 1) * per).min(g.b));
            let parts: Vec<Vec<f32>> = team().map(ranges.collect(), |r| range(r, Par::Seq));
            parts
                .into_iter()
                .reduce(|mut a, b| {
                    a.iter_mut().zip(&b).for_each(|(x, y)| *x += y);
                    a
                })
                .unwrap_or_else(|| vec![0f32; o * k])
        } else {
            range(0..g.b, Par::Auto)
        };
        let mut out = vec![0f32; o * (k + 1)];
        for oc in 0..o {
            out[oc * (k + 1)..oc * (k + 1) + k].copy_from_slice(&dw[oc * k..(oc + 1) * k]);
            out[oc * (k + 1) + k] = (0..g.b)
                .map(|b| {
                    dy[(b * o + oc) * p..(b * o + oc + 1) * p]
                        .iter()
                        .sum::<f32>()
                })
                .sum();
        }
        Ok((CpuStorage::F32(out), Shape::from((o, k + 1))))
    }
}

/// (x, weight, dy) → dx (B, C, H, W); x only gives the shape.
struct ConvInputGrad(ConvGradOp);

impl CustomOp3 for ConvInputGrad {
    fn name(&self) -> &'static str {
        "kiln-conv2d-input-grad"
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
        let (g, [_, wt, dy]) = self.0.slices(self.name(), [(s1, l1), (s2, l2), (s3, l3)])?;
        let (k, p, o) = (g.k(), g.p(), g.o);
        let mut dx = vec![0f32; g.b * g.image()];
        // dcol (K, P) = Wᵀ (K, O) · dy_b (O, P), then col2im
        let one = |col: &mut Vec<f32>, dyb: &[f32], dxb: &mut [f32], par: Par| {
            let dst = if g.pointwise() {
                &mut *dxb
            } else {
                col.as_mut_slice()
            };
            matmul(
                MatMut::rows(dst, k, p),
                Mat::rows(wt, o, k).t(),
                Mat::rows(dyb, o, p),
                false,
                par,
            );
            if !g.pointwise() {
                g.col2im(col, dxb);
            }
        };
        let col_len = if g.pointwise() { 0 } else { k * p };
        if g.batch_parallel() {
            let img = g.image();
            team_parts(&mut dx, img, img, |at, dxs| {
                let mut col = vec![0f32; col_len];
                let dys = &dy[at / img * o * p..];
                for (dxb, dyb) in dxs.chunks_mut(img).zip(dys.chunks(o * p)) {
                    one(&mut col, dyb, dxb, Par::Seq);
                }
            });
        } else {
            let mut col = vec![0f32; col_len];
            for (dxb, dyb) in dx.chunks_mut(g.image()).zip(dy.chunks(o * p)) {
                one(&mut col, dyb, dxb, Par::Auto);
            }
        }
        Ok((CpuStorage::F32(dx), Shape::from((g.b, g.c, g.h, g.w))))
    }
}

/// 2-d convolution of `x` (B, C, H, W) with `weight` (O, C, KH, KW) and an optional `bias`
/// (O), square `stride` and zero `padding`: (B, O, OH, OW). Fused (im2col + gemm, with its own
/// backward) for f32 tensors on the CPU, [`conv2d_plain`] elsewhere.
pub fn conv2d(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    if !(fusable(x) && fusable(weight) && bias.is_none_or(fusable)) {
        return conv2d_plain(x, weight, bias, stride, padding);
    }
    if x.rank() != 4 || weight.rank() != 4 {
        return Err(Error::shape(format!(
            "conv2d: expected input (B, C, H, W) and weight (O, C, KH, KW), got {:?} and {:?}",
            x.dims(),
            weight.dims()
        )));
    }
    let zeros;
    let bias = match bias {
        Some(b) => b.contiguous()?,
        None => {
            zeros = Tensor::zeros(weight.dim(0)?, x.dtype(), x.device())?;
            zeros
        }
    };
    Ok(x.contiguous()?.apply_op3(
        &weight.contiguous()?,
        &bias,
        Conv2dOp {
            stride,
            pad: padding,
        },
    )?)
}

/// The reference composition: candle's `conv2d` plus a broadcast bias.
pub fn conv2d_plain(
    x: &Tensor,
    weight: &Tensor,
    bias: Option<&Tensor>,
    stride: usize,
    padding: usize,
) -> Result<Tensor> {
    let y = x.conv2d(weight, padding, stride, 1, 1)?;
    Ok(match bias {
        Some(b) => y.broadcast_add(&b.reshape((1, (), 1, 1))?)?,
        None => y,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ranges_cover_exactly_the_taps_inside() {
        for (size, k, stride, pad) in [(5, 3, 1, 1), (7, 5, 2, 2), (4, 1, 2, 0), (6, 3, 2, 1)] {
            let g = Geom::new(&[1, 1, size, size], &[1, 1, k, k], stride, pad).unwrap();
            for tap in 0..k {
                let (lo, hi) = g.valid(tap, size, g.oh);
                for o in 0..g.oh {
                    let pos = (o * stride + tap) as isize - pad as isize;
                    let inside = pos >= 0 && pos < size as isize;
                    assert_eq!(
                        inside,
                        (lo..hi).contains(&o),
                        "{size} {k} {stride} {pad} {tap} {o}"
                    );
                }
            }
        }
    }
}
