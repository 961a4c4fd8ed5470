//! GPT-2's `gelu_new`, `0.5·x·(1 + tanh(√(2/π)·(x + 0.044715·x³)))`, computed as the equal
//! `x / (1 + e^(-2u))` with the vectorised [`exp`] instead of libm's scalar `tanhf`, in one
//! pass split across the kernels' team. Its gradient is one fused pass too, where candle's
//! `gelu` backward builds a dozen tensor ops with scalar `tanhf` and `powf`.
//! [`gelu_new_in_place`] is the same pass over a buffer the caller owns (the MLP's first
//! product, still in cache, see [`super::linear_in_out_gelu`]).

use candle_core::{CpuStorage, Layout, Shape, Tensor};

use super::{exp, f32_slice, fusable, simd_kernel, team_parts, CResult, MIN_PART};
use crate::Result;

/// √(2/π)
const C: f32 = 0.797_884_6;
/// The cubic term's coefficient.
const A: f32 = 0.044715;

/// `gelu_new(x)` for one value (inlined into the vectorised loops below).
#[inline(always)]
fn gelu(x: f32) -> f32 {
    x / (1.0 + exp(-2.0 * C * (x + A * x * x * x)))
}

simd_kernel! {
    /// `out = gelu_new(x)`, or its derivative when `deriv`: with `s = 1 / (1 + e^(-2u))`,
    /// `gelu = x·s` and `gelu' = s + 2·x·s·(1 − s)·u'`, `u' = √(2/π)·(1 + 3·0.044715·x²)`.
    fn gelu_rows<'a>(x: &'a [f32], out: &'a mut [f32], deriv: bool) as GeluRows {
        if deriv {
            for (o, &x) in out.iter_mut().zip(x) {
                let u = C * (x + A * x * x * x);
                let s = 1.0 / (1.0 + exp(-2.0 * u));
                let du = C * (1.0 + 3.0 * A * x * x);
                *o = s + 2.0 * x * s * (1.0 - s) * du;
            }
        } else {
            for (o, &x) in out.iter_mut().zip(x) {
                *o = gelu(x);
            }
        }
    }
}

simd_kernel! {
    /// `v = gelu_new(v)` in place.
    fn gelu_in_place_rows<'a>(v: &'a mut [f32]) as GeluInPlace {
        for x in v.iter_mut() {
            *x = gelu(*x);
        }
    }
}

/// `v = gelu_new(v)` in place, on the calling thread.
pub fn gelu_new_in_place(v: &mut [f32]) {
    pulp::Arch::new().dispatch(GeluInPlace(v));
}

/// `gelu_new(xs)` (with its gradient when `xs` tracks one); a tensor not on the CPU in f32
/// takes candle's `gelu` (the same tanh approximation).
pub fn gelu_new(xs: &Tensor) -> Result<Tensor> {
    if !fusable(xs) {
        return Ok(xs.gelu()?);
    }
    let xs = xs.contiguous()?;
    Ok(if xs.track_op() {
        xs.apply_op1(GeluNew { deriv: false })?
    } else {
        xs.apply_op1_no_bwd(&GeluNew { deriv: false })?
    })
}

/// `gelu_new` (`deriv: false`) or its derivative (`deriv: true`) as a candle op.
struct GeluNew {
    deriv: bool,
}

impl candle_core::CustomOp1 for GeluNew {
    fn name(&self) -> &'static str {
        if self.deriv {
            "kiln-gelu-new-deriv"
        } else {
            "kiln-gelu-new"
        }
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> CResult<(CpuStorage, Shape)> {
        let x = f32_slice(storage, layout, self.name())?;
        let mut out = vec![0f32; x.len()];
        let deriv = self.deriv;
        team_parts(&mut out, 1, MIN_PART, |at, o| {
            pulp::Arch::new().dispatch(GeluRows(&x[at..at + o.len()], o, deriv))
        });
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad_res: &Tensor) -> CResult<Option<Tensor>> {
        if self.deriv {
            candle_core::bail!("kiln-gelu-new-deriv has no gradient (second derivatives of GELU are not supported)");
        }
        let d = arg
            .contiguous()?
            .apply_op1_no_bwd(&GeluNew { deriv: true })?;
        Ok(Some(grad_res.mul(&d)?))
    }
}
