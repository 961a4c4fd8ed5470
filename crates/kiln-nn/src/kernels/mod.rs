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
//!
//! Every op keeps its plain reference (`*_plain`) public: the tests check forward and every
//! gradient against it and against finite differences, and `bench/kernel_speed.py` shows the gain.
//! The matrix products run on the `gemm` crate candle uses, with its AVX-512 kernels enabled
//! (runtime dispatch, see the workspace `Cargo.toml`).

use candle_core::{CpuStorage, DType, Layout, Storage, Tensor};

pub mod attention;
pub mod conv;
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
fn with_f32<R>(t: &Tensor, op: &str, f: impl FnOnce(&[f32]) -> CResult<R>) -> CResult<R> {
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
/// over the output and a second buffer). Anything else takes the candle path.
pub fn linear_in_out(x: &Tensor, w: &Tensor, bias: &Tensor) -> crate::Result<Tensor> {
    let fused = [x, w, bias].iter().all(|t| fusable(t) && !t.track_op())
        && x.rank() == 2
        && w.rank() == 2
        && bias.rank() == 1;
    if !fused {
        return Ok(x.matmul(w)?.broadcast_add(bias)?);
    }
    let (m, k) = x.dims2()?;
    let (k2, n) = w.dims2()?;
    if k2 != k || bias.dim(0)? != n {
        return Err(crate::Error::shape(format!(
            "linear: x {:?} · w {:?} + bias {:?}",
            x.dims(),
            w.dims(),
            bias.dims()
        )));
    }
    let y = with_f32(x, "linear", |xs| {
        with_f32(w, "linear", |ws| {
            with_f32(bias, "linear", |bs| {
                let mut y = bs.repeat(m);
                gemm::matmul(
                    gemm::MatMut::rows(&mut y, m, n),
                    gemm::Mat::rows(xs, m, k),
                    gemm::Mat::rows(ws, k, n),
                    true,
                    gemm::Par::Auto,
                );
                Ok(y)
            })
        })
    })?;
    Ok(Tensor::from_vec(y, (m, n), x.device())?)
}
