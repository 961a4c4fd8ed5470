//! Softmax + cross-entropy fused: one pass over the logits for the loss, one for the gradient
//! `(softmax(x) - onehot(y)) · g / N`, with no (N, C) log-probabilities kept in between.
//!
//! Legend: N rows, C classes.

use candle_core::{CpuStorage, CustomOp2, DType, Layout, Shape, Tensor};

use super::{f32_slice, fusable, with_f32, CResult};
use crate::{loss, Error, Result};

/// log Σ_j exp(x_j), stably.
fn log_sum_exp(row: &[f32]) -> f32 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max + row.iter().map(|&v| (v - max).exp()).sum::<f32>().ln()
}

fn targets<'a>(s: &'a CpuStorage, l: &Layout, op: &str) -> CResult<&'a [u32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::U32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("{op}: expected contiguous u32 targets"),
    }
}

/// (logits (N, C) f32, targets (N) u32) → mean cross-entropy, a scalar.
struct SoftmaxCrossEntropy;

impl CustomOp2 for SoftmaxCrossEntropy {
    fn name(&self) -> &'static str {
        "kiln-softmax-cross-entropy"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> CResult<(CpuStorage, Shape)> {
        let x = f32_slice(s1, l1, self.name())?;
        let y = targets(s2, l2, self.name())?;
        let (n, c) = l1.shape().dims2()?;
        if y.len() != n {
            candle_core::bail!("{}: {n} rows but {} targets", self.name(), y.len());
        }
        let mut total = 0f64;
        for (row, &t) in x.chunks_exact(c).zip(y) {
            let t = t as usize;
            if t >= c {
                candle_core::bail!("{}: target {t} out of range for {c} classes", self.name());
            }
            total += (log_sum_exp(row) - row[t]) as f64;
        }
        Ok((
            CpuStorage::F32(vec![(total / n as f64) as f32]),
            Shape::from(()),
        ))
    }

    fn bwd(
        &self,
        logits: &Tensor,
        targets: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> CResult<(Option<Tensor>, Option<Tensor>)> {
        let (n, c) = logits.dims2()?;
        let scale = grad.to_dtype(DType::F32)?.to_scalar::<f32>()? / n as f32;
        let y = targets.to_vec1::<u32>()?;
        let mut dx = vec![0f32; n * c];
        with_f32(logits, self.name(), |x| {
            for ((row, d), &t) in x.chunks_exact(c).zip(dx.chunks_exact_mut(c)).zip(&y) {
                let lse = log_sum_exp(row);
                for (dv, &v) in d.iter_mut().zip(row) {
                    *dv = (v - lse).exp() * scale;
                }
                d[t as usize] -= scale;
            }
            Ok(())
        })?;
        Ok((Some(Tensor::from_vec(dx, (n, c), logits.device())?), None))
    }
}

/// Cross-entropy of `logits` (N, C) (or (B, T, C), flattened) against class indices `targets`,
/// the mean over rows, as [`crate::loss::cross_entropy_plain`]: fused on the CPU for f32
/// logits, that plain composition elsewhere. [`crate::loss::cross_entropy`] calls this.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    if !fusable(logits) || !targets.device().is_cpu() {
        return loss::cross_entropy_plain(logits, targets);
    }
    let c = match logits.dims().last() {
        Some(&c) if logits.rank() >= 2 && c > 0 => c,
        _ => {
            return Err(Error::shape(format!(
                "cross-entropy: expected logits (N, C), got {:?}",
                logits.dims()
            )))
        }
    };
    let logits = logits.reshape(((), c))?.contiguous()?;
    let n = logits.dim(0)?;
    if targets.elem_count() != n || n == 0 {
        return Err(Error::shape(format!(
            "cross-entropy: {n} rows of logits but {} targets (shape {:?})",
            targets.elem_count(),
            targets.dims()
        )));
    }
    let targets = targets.flatten_all()?.to_dtype(DType::U32)?.contiguous()?;
    let max = targets.max(0)?.to_scalar::<u32>()? as usize;
    if max >= c {
        return Err(Error::shape(format!(
            "cross-entropy: target class {max} out of range for {c} classes"
        )));
    }
    Ok(logits.apply_op2(&targets, SoftmaxCrossEntropy)?)
}
