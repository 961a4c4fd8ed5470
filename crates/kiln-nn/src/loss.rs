//! Losses, each the mean over the batch as in PyTorch's default `reduction='mean'`.

use candle_core::{DType, Tensor, D};

use crate::{Error, Result};

/// Cross-entropy of `logits` (N, C) against class indices `targets` (N, u32 or i64):
/// `mean_i(-log softmax(logits_i)[targets_i])`, as `torch.nn.functional.cross_entropy`.
/// Logits of higher rank (B, T, C) are flattened to (B·T, C) with targets (B, T).
///
/// f32 logits on the CPU go through the fused kernel [`crate::kernels::loss::cross_entropy`]
/// (one pass for the loss, one for the gradient); other devices and dtypes through
/// [`cross_entropy_plain`]. Both give the same value and gradient to float rounding.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    crate::kernels::loss::cross_entropy(logits, targets)
}

/// [`cross_entropy`] as the plain composition of candle ops (log-softmax, gather, mean): the
/// reference the fused kernel is tested against, and its fallback off the CPU.
pub fn cross_entropy_plain(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let c = match logits.dims().last() {
        Some(&c) if logits.rank() >= 2 => c,
        _ => {
            return Err(Error::shape(format!(
                "cross-entropy: expected logits (N, C), got {:?}",
                logits.dims()
            )))
        }
    };
    let logits = logits.reshape(((), c))?;
    let n = logits.dim(0)?;
    if targets.elem_count() != n {
        return Err(Error::shape(format!(
            "cross-entropy: {n} rows of logits but {} targets (shape {:?})",
            targets.elem_count(),
            targets.dims()
        )));
    }
    let targets = targets.flatten_all()?.to_dtype(DType::U32)?;
    let max = targets.max(0)?.to_scalar::<u32>()? as usize;
    if max >= c {
        return Err(Error::shape(format!(
            "cross-entropy: target class {max} out of range for {c} classes"
        )));
    }
    let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?; // (N, 1)
    Ok(picked.mean_all()?.neg()?)
}

/// Mean squared error between `pred` and `target` of the same shape (`F.mse_loss`).
pub fn mse(pred: &Tensor, target: &Tensor) -> Result<Tensor> {
    if pred.shape() != target.shape() {
        return Err(Error::shape(format!(
            "mse: prediction shape {:?} differs from target shape {:?}",
            pred.dims(),
            target.dims()
        )));
    }
    Ok((pred - target)?.sqr()?.mean_all()?)
}

/// Binary cross-entropy on logits (`F.binary_cross_entropy_with_logits`), stable form
/// `max(x, 0) - x·y + log(1 + e^{-|x|})`.
pub fn binary_cross_entropy_with_logits(logits: &Tensor, target: &Tensor) -> Result<Tensor> {
    if logits.shape() != target.shape() {
        return Err(Error::shape(format!(
            "binary cross-entropy: logits shape {:?} differs from target shape {:?}",
            logits.dims(),
            target.dims()
        )));
    }
    let l = (logits.relu()? - (logits * target)?)? + (logits.abs()?.neg()?.exp()? + 1.0)?.log()?;
    Ok(l?.mean_all()?)
}

/// Number of rows whose arg-max of `logits` (N, C) equals `targets` (N).
pub fn correct(logits: &Tensor, targets: &Tensor) -> Result<usize> {
    let c = logits.dim(D::Minus1)?;
    let pred = logits.reshape(((), c))?.argmax(1)?;
    let t = targets.flatten_all()?.to_dtype(DType::U32)?;
    if pred.dims() != t.dims() {
        return Err(Error::shape(format!(
            "accuracy: {} predictions but {} targets",
            pred.elem_count(),
            t.elem_count()
        )));
    }
    Ok(pred
        .eq(&t)?
        .to_dtype(DType::F32)?
        .sum_all()?
        .to_scalar::<f32>()? as usize)
}
