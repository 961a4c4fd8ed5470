//! # kiln-nn: neural-network building blocks on candle
//!
//! Tensors, autograd and the layers whose forward and backward passes are right come from
//! candle (`candle-core`, `candle-nn`); what candle lacks or gets wrong, kiln writes:
//!
//! * [`ops`]: softmax, layer norm and RMS norm with backward passes; max pooling with the exact
//!   gradient and any kernel/stride/padding; average pooling (custom ops, swappable).
//! * [`init`]: [`init::SeededVarMap`], a `VarBuilder` backend whose initialisation is seeded
//!   (candle's CPU generator cannot be).
//! * [`layers`]: PyTorch-initialised `linear`/`conv2d`, [`layers::BatchNorm`],
//!   seeded [`layers::Dropout`], [`layers::LayerNorm`], [`layers::RmsNorm`], activations, and
//!   [`layers::Mode`] (training with a seeded generator, or evaluation).
//! * [`rnn`]: multi-layer, bidirectional RNN/LSTM/GRU with PyTorch's names and layout.
//! * [`loss`]: cross-entropy, MSE, binary cross-entropy with logits.
//! * [`optim`]: SGD (momentum, Nesterov, weight decay), Adam (L2), AdamW, with checkpointable
//!   state, and global-norm gradient clipping.
//! * [`kernels`]: fused CPU ops (convolution, whole-sequence LSTM/GRU, softmax + cross-entropy)
//!   with their own backward passes, falling back to candle's ops off the CPU.
//! * [`step::TrainStep`]: batch in, loss out — all the trainer knows about a network.
//!
//! ```
//! use candle_core::{Tensor, Device};
//! use kiln_nn::{init::SeededVarMap, layers, loss, optim};
//!
//! let vars = SeededVarMap::new(0);
//! let fc = layers::linear(2, 1, vars.var_builder().pp("fc")).unwrap();
//! let x = Tensor::new(&[[1f32, 2.], [3., 4.]], &Device::Cpu).unwrap();
//! let y = Tensor::new(&[[1f32], [2.]], &Device::Cpu).unwrap();
//! let params = optim::Params::from_var_map(vars.var_map()).unwrap();
//! let mut opt = optim::Optimizer::new(
//!     optim::OptimizerConfig::Sgd(optim::SgdConfig { lr: 0.01, ..Default::default() }),
//!     params,
//! ).unwrap();
//! let first = loss::mse(&layers::apply(&fc, &x).unwrap(), &y).unwrap();
//! for _ in 0..20 {
//!     let l = loss::mse(&layers::apply(&fc, &x).unwrap(), &y).unwrap();
//!     opt.step(&l.backward().unwrap()).unwrap();
//! }
//! let last = loss::mse(&layers::apply(&fc, &x).unwrap(), &y).unwrap();
//! assert!(last.to_scalar::<f32>().unwrap() < first.to_scalar::<f32>().unwrap());
//! ```
#![warn(missing_docs)]

pub mod error;
pub mod init;
pub mod kernels;
pub mod layers;
pub mod loss;
pub mod ops;
pub mod optim;
pub mod rnn;
pub mod step;

pub use error::{Error, Result};
pub use layers::Mode;
pub use step::{EvalSums, TrainStep};

/// Spins of candle's element-wise thread pool before an idle worker sleeps (candle's default
/// is 25,000).
const CANDLE_POOL_SPIN: &str = "1000";

/// Let candle's element-wise thread pool sleep soon after each op. Call it first thing in
/// `main`, before any other thread starts (it sets an environment variable).
///
/// candle 0.11 runs element-wise ops on its own pool, whose idle workers spin 25,000 times
/// (about a millisecond here) before they sleep. Between two candle ops a training step runs
/// kiln's kernels on the kernels' team; on two cores a spinning candle worker then holds the
/// core a team member needs. Measured with `examples/kernels_bench` on two threads, ms per
/// LeNet-5 step: 5.66 with candle's default, 4.08 with 1,000 spins; GPT-2 prefill, the nanoGPT
/// recipe and the LSTM/GRU steps did not change beyond the noise. Sets
/// `CANDLE_BARRIER_POOL_SPIN_LIMIT` to 1,000 unless the user has set it.
pub fn limit_idle_spinning() {
    if std::env::var_os("CANDLE_BARRIER_POOL_SPIN_LIMIT").is_none() {
        std::env::set_var("CANDLE_BARRIER_POOL_SPIN_LIMIT", CANDLE_POOL_SPIN);
    }
}

/// Keep memory that the program frees for its next allocations instead of handing it back to
/// the kernel. Call it first thing in `main` of a program that trains or generates.
///
/// A training step allocates and frees the same tensors every step. glibc's defaults serve
/// blocks over 128 KiB (a threshold that only grows as such blocks are freed) with fresh
/// `mmap`s and return free memory at the top of the heap to the kernel, so each step faults
/// its buffers in again: page zeroing, and with two threads the TLB shootdowns of every
/// `munmap`. Measured with `examples/kernels_bench` on two threads, ms per step before / after:
/// LSTM 286 / 198, GRU 161 / 129, LeNet-5 13.2 / 8.3. The cost is that the process keeps its
/// peak heap size until it exits.
///
/// Blocks up to 32 MiB (glibc's ceiling for this threshold) then come from the heap, and the
/// heap is not trimmed. Other platforms and C libraries: does nothing.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[allow(unsafe_code)]
    // SAFETY: `mallopt` only changes two of glibc's allocation thresholds; glibc serialises it
    // with its own locks, so it may be called at any time from any thread.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
    }
}
