//! Fused CPU kernels: candle custom ops with their own forward and backward passes, used for
//! f32 tensors on the CPU; on other devices and dtypes each public function falls back to the
//! plain composition of candle ops it replaces, so the same model code runs everywhere.
//!
//! * [`conv`]: 2-d convolution through im2col + gemm, forward, weight, bias and input gradients
//!   (the input gradient only when the input needs one).
//! * [`rnn`]: whole-sequence LSTM and GRU directions: one gemm for the recurrent step plus one
//!   fused gate pass per time step, and a backward that walks the sequence once.
//! * [`loss`]: softmax + cross-entropy fused, with its backward.
//! * [`attention`]: causal self-attention, row-blocked, with its backward.
//! * [`gelu`]: GPT-2's tanh GELU and its gradient, one vectorised pass each.
//! * [`linear_in_out`] and its fused variants for inference: the bias, a residual or the GELU
//!   applied to each block of output rows as it leaves the gemm.
//!
//! Every op keeps its plain reference (`*_plain`) public: the tests check forward and every
//! gradient against it and against finite differences, and `bench/kernel_speed.py` shows the gain.
//! The matrix products run on the `gemm` crate candle uses, with its AVX-512 kernels enabled
//! (runtime dispatch, see the workspace `Cargo.toml`).

use candle_core::{CpuStorage, DType, Layout, Storage, Tensor};

pub mod attention;
pub mod conv;
pub mod gelu;
mod gemm;
pub mod loss;
pub mod rnn;

type CResult<T> = candle_core::Result<T>;

/// `simd_kernel! { fn f<'a>(a: A, b: B, ...) as Name { body } }` defines the row kernel `f`
/// (`#[inline(always)]`) and `Name`, a tuple struct of its arguments whose
/// [`pulp::WithSimd`] impl calls `f` directly: `pulp::Arch::new().dispatch(Name(a, b, ...))`
/// then runs `f` inlined into code compiled for the processor's best instruction set
/// (AVX-512, AVX2 + FMA, ..., chosen at run time). A closure handed to `dispatch` is instead
/// compiled on its own, for the baseline SSE2, and only called from there: measured, the gate
/// and softmax loops ran 4 lanes wide.
macro_rules! simd_kernel {
    (
        $(#[$meta:meta])*
        fn $f:ident<$lt:lifetime>($($arg:ident: $ty:ty),* $(,)?) as $name:ident $body:block
    ) => {
        $(#[$meta])*
        #[inline(always)]
        #[allow(clippy::too_many_arguments)]
        fn $f<$lt>($($arg: $ty),*) $body

        struct $name<$lt>($($ty),*);

        impl pulp::WithSimd for $name<'_> {
            type Output = ();

            #[inline(always)]
            fn with_simd<S: pulp::Simd>(self, _simd: S) {
                let $name($($arg),*) = self;
                $f($($arg),*)
            }
        }
    };
}
pub(crate) use simd_kernel;

/// e^x to about 2 ulp (Cephes' `expf`: range reduction by ln 2, degree-6 polynomial), written
/// without branches or library calls so that loops of it vectorise (the recurrent gates, the
/// softmax rows, GPT-2's GELU).
#[inline(always)]
pub fn exp(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.3);
    // n = round(x / ln 2) by the 1.5·2²³ trick (round-to-nearest, no libm call): the low
    // mantissa bits of `t` hold n in two's complement
    let t = x * std::f32::consts::LOG2_E + 12_582_912.0;
    let n = t - 12_582_912.0;
    let r = x - n * 0.693_359_4 + n * 2.121_944_4e-4;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 0.5;
    let er = p * r * r + r + 1.0;
    // 2^n from those bits (no float-to-int conversion, which Rust saturates, so that a loop
    // of this vectorises)
    er * f32::from_bits(t.to_bits().wrapping_add(127) << 23)
}

/// How long the kernels' team helpers spin after a job before they sleep: long enough to span
/// the gap between two time steps of a recurrence, short enough not to hold a core from
/// candle's own threads between ops.
const TEAM_SPIN: std::time::Duration = std::time::Duration::from_micros(300);

/// The process-wide [`kiln_core::team::Team`] of candle's thread count (`RAYON_NUM_THREADS`,
/// else every core), for per-step work too short to wake rayon's sleeping workers for.
pub fn team() -> &'static kiln_core::team::Team {
    static TEAM: std::sync::OnceLock<kiln_core::team::Team> = std::sync::OnceLock::new();
    TEAM.get_or_init(|| {
        kiln_core::team::Team::new(candle_core::utils::get_num_threads().max(1), TEAM_SPIN)
    })
}

/// Elements below which an element-wise pass (GELU, ReLU, layer norm, Adam) stays on one
/// thread: smaller passes cost less than a hand-off.
pub(crate) const MIN_PART: usize = 1 << 14;

/// `data` cut into consecutive parts of whole `unit`s, one per member of the kernels' team
/// (fewer when a part would hold under `min_len` elements), and `f(offset, part)` run on each.
pub(crate) fn team_parts(
    data: &mut [f32],
    unit: usize,
    min_len: usize,
    f: impl Fn(usize, &mut [f32]) + Sync,
) {
    let units = data.len() / unit.max(1);
    let parts = team()
        .size()
        .min(data.len() / min_len.max(1))
        .clamp(1, units.max(1));
    let starts: Vec<usize> = (0..parts).map(|p| units * p / parts * unit).collect();
    let pieces = kiln_core::team::cut(data, starts[1..].iter().copied());
    team().map(starts.into_iter().zip(pieces).collect(), |(at, part)| {
        f(at, part)
    });
}

/// True when the fused kernels handle `t`: f32 on the CPU.
pub fn fusable(t: &Tensor) -> bool {
    t.device().is_cpu() && t.dtype() == DType::F32
}

/// The contiguous f32 values of a CPU storage.
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

/// Run `f` on the contiguous f32 values of a CPU tensor (copying only if it is strided).
pub(crate) fn with_f32<R>(
    t: &Tensor,
    op: &str,
    f: impl FnOnce(&[f32]) -> CResult<R>,
) -> CResult<R> {
    let t = t.contiguous()?;
    let (st, l) = t.storage_and_layout();
    match &*st {
        Storage::Cpu(s) => f(f32_slice(s, l, op)?),
        _ => candle_core::bail!("{op}: expected a CPU tensor"),
    }
}

/// `x · w + bias` for inference: x (M, K), w (K, N) row-major, bias (N) → (M, N), f32 on the
/// CPU with no gradient tracked. The output starts as the bias rows and the product is
/// accumulated onto it, instead of candle's matmul followed by a broadcast add (a second pass
/// over the output and a second buffer); large products are cut into one block of rows per
/// member of the kernels' team. Anything else takes the candle path.
pub fn linear_in_out(x: &Tensor, w: &Tensor, bias: &Tensor) -> crate::Result<Tensor> {
    linear_fused(x, w, bias, None, false)
}

/// `gelu_new(x · w + bias)` ([`gelu`]), as [`linear_in_out`]: each block of output rows goes
/// through the GELU right after its product, while it is still in cache.
pub fn linear_in_out_gelu(x: &Tensor, w: &Tensor, bias: &Tensor) -> crate::Result<Tensor> {
    linear_fused(x, w, bias, None, true)
}

/// `residual + x · w + bias` (residual (M, N)), as [`linear_in_out`]: the output starts as
/// the residual plus the bias, so the residual connection costs no pass of its own.
pub fn linear_in_out_residual(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    residual: &Tensor,
) -> crate::Result<Tensor> {
    linear_fused(x, w, bias, Some(residual), false)
}

/// Multiply-adds below which a fused linear product stays on the calling thread.
const LINEAR_SPLIT_WORK: usize = 1 << 21;

fn linear_fused(
    x: &Tensor,
    w: &Tensor,
    bias: &Tensor,
    residual: Option<&Tensor>,
    gelu: bool,
) -> crate::Result<Tensor> {
    let fused = [Some(x), Some(w), Some(bias), residual]
        .iter()
        .flatten()
        .all(|t| fusable(t) && !t.track_op())
        && x.rank() == 2
        && w.rank() == 2
        && bias.rank() == 1;
    if !fused {
        let y = x.matmul(w)?.broadcast_add(bias)?;
        let y = if gelu { gelu::gelu_new(&y)? } else { y };
        return Ok(match residual {
            Some(r) => (y + r)?,
            None => y,
        });
    }
    let (m, k) = x.dims2()?;
    let (k2, n) = w.dims2()?;
    let residual_ok = residual.is_none_or(|r| r.dims() == [m, n]);
    if k2 != k || bias.dim(0)? != n || !residual_ok {
        return Err(crate::Error::shape(format!(
            "linear: x {:?} · w {:?} + bias {:?}{}",
            x.dims(),
            w.dims(),
            bias.dims(),
            residual.map_or(String::new(), |r| format!(" + residual {:?}", r.dims()))
        )));
    }
    let mut y = vec![0f32; m * n];
    let min_len = if m * n * k < LINEAR_SPLIT_WORK {
        m * n
    } else {
        32 * n
    };
    let fill = |y: &mut [f32], xs: &[f32], ws: &[f32], bs: &[f32], res: Option<&[f32]>| {
        team_parts(y, n, min_len, |at, part| {
            let (r0, rows) = (at / n, part.len() / n);
            for (i, row) in part.chunks_exact_mut(n).enumerate() {
                row.copy_from_slice(bs);
                if let Some(res) = res {
                    let rr = &res[(r0 + i) * n..(r0 + i + 1) * n];
                    row.iter_mut().zip(rr).for_each(|(a, b)| *a += b);
                }
            }
            gemm::matmul(
                gemm::MatMut::rows(part, rows, n),
                gemm::Mat::rows(&xs[r0 * k..(r0 + rows) * k], rows, k),
                gemm::Mat::rows(ws, k, n),
                true,
                gemm::Par::Seq,
            );
            if gelu {
                gelu::gelu_new_in_place(part);
            }
        });
        Ok(())
    };
    with_f32(x, "linear", |xs| {
        with_f32(w, "linear", |ws| {
            with_f32(bias, "linear", |bs| match residual {
                Some(r) => with_f32(r, "linear", |rs| fill(&mut y, xs, ws, bs, Some(rs))),
                None => fill(&mut y, xs, ws, bs, None),
            })
        })
    })?;
    Ok(Tensor::from_vec(y, (m, n), x.device())?)
}
