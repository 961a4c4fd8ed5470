//! Layers: PyTorch's initialisation and parameter names, kiln's seeded randomness.
//!
//! * [`linear`] returns candle's own layer, [`conv2d`] a [`Conv2d`] running the fused
//!   convolution of [`crate::kernels::conv`] on the CPU; both initialised as PyTorch initialises
//!   them: weights and biases uniform on `±1/sqrt(fan_in)`.
//! * [`BatchNorm`] (1-d over (N, C), 2-d over (N, C, H, W)): batch statistics in training,
//!   running statistics (`running_mean`, `running_var`, momentum 0.1, unbiased variance) in
//!   evaluation, exactly as `torch.nn.BatchNorm{1,2}d`.
//! * [`Dropout`]: masks drawn from the [`Mode`]'s seeded generator, identity in evaluation.
//! * [`LayerNorm`], [`RmsNorm`]: with a backward pass (see [`crate::ops`]).
//! * [`Activation`]: the element-wise nonlinearities, by name.

use std::cell::RefCell;

use candle_core::{Module, Tensor, Var};
use candle_nn::{Init, Linear, VarBuilder};
use rand::Rng as _;

use crate::init::uniform;
use crate::kernels::conv as kconv;
use crate::{ops, Error, Result};

/// Training or evaluation, and in training the generator that draws dropout masks.
///
/// The trainer makes one `Mode::train(seed)` per step from the run seed and the step number,
/// so a resumed run draws exactly the masks the uninterrupted run would have drawn.
pub struct Mode {
    rng: Option<RefCell<kiln_core::Rng>>,
}

impl Mode {
    /// Evaluation: dropout is the identity, batch norm uses its running statistics.
    pub fn eval() -> Self {
        Self { rng: None }
    }

    /// Training, with dropout masks drawn from `kiln_core::rng(seed)`.
    pub fn train(seed: u64) -> Self {
        Self {
            rng: Some(RefCell::new(kiln_core::rng(seed))),
        }
    }

    /// True in training mode.
    pub fn is_train(&self) -> bool {
        self.rng.is_some()
    }

    /// Run `f` with the training generator; `None` in evaluation mode.
    pub fn with_rng<R>(&self, f: impl FnOnce(&mut kiln_core::Rng) -> R) -> Option<R> {
        self.rng.as_ref().map(|r| f(&mut r.borrow_mut()))
    }
}

/// `torch.nn.Linear(in_dim, out_dim)`: parameters `weight` (out, in) and `bias` (out), both
/// uniform on `±1/sqrt(in_dim)`.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let bound = 1.0 / (in_dim.max(1) as f64).sqrt();
    let w = vb.get_with_hints((out_dim, in_dim), "weight", uniform(bound))?;
    let b = vb.get_with_hints(out_dim, "bias", uniform(bound))?;
    Ok(Linear::new(w, Some(b)))
}

/// `torch.nn.Linear(in_dim, out_dim, bias=False)`.
pub fn linear_no_bias(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let bound = 1.0 / (in_dim.max(1) as f64).sqrt();
    let w = vb.get_with_hints((out_dim, in_dim), "weight", uniform(bound))?;
    Ok(Linear::new(w, None))
}

/// `torch.nn.Conv2d(in_channels, out_channels, kernel, stride, padding)` (square kernel):
/// parameters `weight` (out, in, k, k) and `bias` (out), uniform on `±1/sqrt(in·k·k)`.
pub fn conv2d(
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
    stride: usize,
    padding: usize,
    vb: VarBuilder,
) -> Result<Conv2d> {
    if kernel == 0 || stride == 0 {
        return Err(Error::param(
            "conv2d kernel/stride",
            format!("{kernel}/{stride}"),
            "both ≥ 1",
        ));
    }
    let bound = 1.0 / ((in_channels * kernel * kernel).max(1) as f64).sqrt();
    let w = vb.get_with_hints(
        (out_channels, in_channels, kernel, kernel),
        "weight",
        uniform(bound),
    )?;
    let b = vb.get_with_hints(out_channels, "bias", uniform(bound))?;
    Ok(Conv2d {
        weight: w,
        bias: Some(b),
        stride,
        padding,
        fused: true,
    })
}

/// A 2-d convolution layer (`torch.nn.Conv2d` with groups 1, dilation 1): `weight`
/// (O, C, KH, KW), optional `bias` (O), square stride and zero padding. Its forward is
/// [`kconv::conv2d`] (im2col + gemm with its own backward on the CPU, candle's `conv2d`
/// elsewhere).
#[derive(Debug, Clone)]
pub struct Conv2d {
    weight: Tensor,
    bias: Option<Tensor>,
    stride: usize,
    padding: usize,
    fused: bool,
}

impl Conv2d {
    /// The weight (O, C, KH, KW).
    pub fn weight(&self) -> &Tensor {
        &self.weight
    }

    /// The bias (O), if any.
    pub fn bias(&self) -> Option<&Tensor> {
        self.bias.as_ref()
    }

    /// Use the fused kernel on the CPU (`true`, the default) or candle's `conv2d` everywhere
    /// (`false`: the reference the kernel is tested against).
    pub fn set_fused(&mut self, on: bool) {
        self.fused = on;
    }
}

impl Module for Conv2d {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let run = if self.fused {
            kconv::conv2d
        } else {
            kconv::conv2d_plain
        };
        run(
            xs,
            &self.weight,
            self.bias.as_ref(),
            self.stride,
            self.padding,
        )
        .map_err(|e| match e {
            Error::Candle(e) => e,
            e => candle_core::Error::Msg(e.to_string()),
        })
    }
}

/// Batch normalisation over the channel dimension (dimension 1) of an (N, C) or (N, C, H, W)
/// input, as `torch.nn.BatchNorm1d` / `BatchNorm2d` with `affine=True`,
/// `track_running_stats=True`. Parameters `weight`, `bias`; buffers `running_mean`,
/// `running_var` (see [`is_buffer`]).
pub struct BatchNorm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Var,
    running_var: Var,
    eps: f64,
    momentum: f64,
}

/// Names of non-trainable state (buffers) that live beside the parameters in a `VarMap`:
/// optimizers skip them.
pub fn is_buffer(name: &str) -> bool {
    name.ends_with("running_mean") || name.ends_with("running_var")
}

impl BatchNorm {
    /// A batch norm over `num_features` channels with PyTorch's defaults (eps 1e-5, momentum 0.1):
    /// weight 1, bias 0, running mean 0, running variance 1.
    pub fn new(num_features: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_options(num_features, 1e-5, 0.1, vb)
    }

    /// A batch norm with explicit `eps` (> 0) and `momentum` (in [0, 1]).
    pub fn with_options(
        num_features: usize,
        eps: f64,
        momentum: f64,
        vb: VarBuilder,
    ) -> Result<Self> {
        if eps.is_nan() || eps <= 0.0 {
            return Err(Error::param("eps", eps, "> 0"));
        }
        if !(0.0..=1.0).contains(&momentum) {
            return Err(Error::param("momentum", momentum, "in [0, 1]"));
        }
        let weight = vb.get_with_hints(num_features, "weight", Init::Const(1.0))?;
        let bias = vb.get_with_hints(num_features, "bias", Init::Const(0.0))?;
        let rm = vb.get_with_hints(num_features, "running_mean", Init::Const(0.0))?;
        let rv = vb.get_with_hints(num_features, "running_var", Init::Const(1.0))?;
        Ok(Self {
            weight,
            bias,
            // Backed by a VarMap these are the map's own variables, so `set` updates the map;
            // backed by a file they are fresh copies (evaluation only).
            running_mean: Var::from_tensor(&rm)?,
            running_var: Var::from_tensor(&rv)?,
            eps,
            momentum,
        })
    }

    /// The running mean (C).
    pub fn running_mean(&self) -> &Tensor {
        self.running_mean.as_tensor()
    }

    /// The running variance (C).
    pub fn running_var(&self) -> &Tensor {
        self.running_var.as_tensor()
    }

    /// Normalise `xs` ((N, C) or (N, C, H, W)); in training mode use and record batch statistics.
    pub fn forward(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        let c = self.weight.dim(0)?;
        let rank = xs.rank();
        if !(rank == 2 || rank == 4) || xs.dim(1)? != c {
            return Err(Error::shape(format!(
                "batch norm over {c} channels: expected (N, {c}) or (N, {c}, H, W), got {:?}",
                xs.dims()
            )));
        }
        // view: (1, C) or (1, C, 1, 1) so per-channel vectors broadcast
        let view: Vec<usize> = (0..rank).map(|i| if i == 1 { c } else { 1 }).collect();
        let (mean, var) = if mode.is_train() {
            // (N, C, H, W) -> (C, N·H·W) so statistics are one reduction per channel
            let flat = xs.transpose(0, 1)?.contiguous()?.reshape((c, ()))?;
            let n = flat.dim(1)?;
            if n < 2 {
                return Err(Error::shape(format!(
                    "batch norm in training needs more than one value per channel, got input {:?}",
                    xs.dims()
                )));
            }
            let mean = flat.mean(1)?;
            let var = flat.broadcast_sub(&mean.unsqueeze(1)?)?.sqr()?.mean(1)?;
            let m = self.momentum;
            let unbiased = (var.detach() * (n as f64 / (n as f64 - 1.0)))?;
            let rm = ((self.running_mean.as_tensor() * (1.0 - m))? + (mean.detach() * m)?)?;
            let rv = ((self.running_var.as_tensor() * (1.0 - m))? + (unbiased * m)?)?;
            self.running_mean.set(&rm)?;
            self.running_var.set(&rv)?;
            (mean, var)
        } else {
            (
                self.running_mean.as_tensor().clone(),
                self.running_var.as_tensor().clone(),
            )
        };
        let scale = (self.weight.clone() / (var + self.eps)?.sqrt()?)?;
        let shift = (&self.bias - (&mean * &scale)?)?;
        let y = xs
            .broadcast_mul(&scale.reshape(view.as_slice())?)?
            .broadcast_add(&shift.reshape(view.as_slice())?)?;
        Ok(y)
    }
}

/// Dropout with probability `p`: in training each element is zeroed with probability `p` and
/// the rest scaled by `1/(1-p)`, masks drawn from the [`Mode`]'s generator; identity in
/// evaluation.
#[derive(Debug, Clone, Copy)]
pub struct Dropout {
    p: f64,
}

impl Dropout {
    /// Dropout with probability `p` in [0, 1).
    pub fn new(p: f64) -> Result<Self> {
        if !(0.0..1.0).contains(&p) {
            return Err(Error::param("dropout", p, "in [0, 1)"));
        }
        Ok(Self { p })
    }

    /// The drop probability.
    pub fn p(&self) -> f64 {
        self.p
    }

    /// Apply dropout (training) or pass through (evaluation, or p = 0).
    pub fn forward(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        if self.p == 0.0 {
            return Ok(xs.clone());
        }
        let n = xs.elem_count();
        let scale = (1.0 / (1.0 - self.p)) as f32;
        let p = self.p;
        let mask = mode.with_rng(|rng| {
            (0..n)
                .map(|_| if rng.random::<f64>() < p { 0f32 } else { scale })
                .collect::<Vec<f32>>()
        });
        match mask {
            None => Ok(xs.clone()),
            Some(m) => {
                let m = Tensor::from_vec(m, xs.shape(), xs.device())?.to_dtype(xs.dtype())?;
                Ok((xs * m)?)
            }
        }
    }
}

/// Layer normalisation over the last dimension (`torch.nn.LayerNorm(d)`): parameters `weight`
/// (ones) and `bias` (zeros), eps 1e-5; with a backward pass.
pub struct LayerNorm {
    weight: Tensor,
    bias: Tensor,
    eps: f64,
}

impl LayerNorm {
    /// A layer norm over `d` features with eps 1e-5.
    pub fn new(d: usize, vb: VarBuilder) -> Result<Self> {
        Self::with_eps(d, 1e-5, vb)
    }

    /// A layer norm with explicit `eps` (> 0).
    pub fn with_eps(d: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        if eps.is_nan() || eps <= 0.0 {
            return Err(Error::param("eps", eps, "> 0"));
        }
        Ok(Self {
            weight: vb.get_with_hints(d, "weight", Init::Const(1.0))?,
            bias: vb.get_with_hints(d, "bias", Init::Const(0.0))?,
            eps,
        })
    }

    /// Normalise over the last dimension.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        check_last(xs, self.weight.dim(0)?, "layer norm")?;
        ops::layer_norm(xs, &self.weight, &self.bias, self.eps)
    }
}

/// RMS normalisation over the last dimension (`torch.nn.RMSNorm(d)`): parameter `weight`
/// (ones); with a backward pass.
pub struct RmsNorm {
    weight: Tensor,
    eps: f64,
}

impl RmsNorm {
    /// An RMS norm over `d` features with the given `eps` (> 0).
    pub fn new(d: usize, eps: f64, vb: VarBuilder) -> Result<Self> {
        if eps.is_nan() || eps <= 0.0 {
            return Err(Error::param("eps", eps, "> 0"));
        }
        Ok(Self {
            weight: vb.get_with_hints(d, "weight", Init::Const(1.0))?,
            eps,
        })
    }

    /// Normalise over the last dimension.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        check_last(xs, self.weight.dim(0)?, "rms norm")?;
        ops::rms_norm(xs, &self.weight, self.eps)
    }
}

fn check_last(xs: &Tensor, d: usize, what: &str) -> Result<()> {
    match xs.dims().last() {
        Some(&l) if l == d => Ok(()),
        _ => Err(Error::shape(format!(
            "{what} over {d} features: expected (..., {d}), got {:?}",
            xs.dims()
        ))),
    }
}

/// Element-wise nonlinearities, named as in configs (`"relu"`, `"tanh"`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Activation {
    /// max(0, x) (the default).
    #[default]
    Relu,
    /// tanh(x).
    Tanh,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// GELU, exact erf form (PyTorch's default `approximate='none'`).
    Gelu,
    /// x · sigmoid(x).
    Silu,
    /// The identity.
    Identity,
}

impl Activation {
    /// Apply the nonlinearity.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => xs.relu()?,
            Activation::Tanh => xs.tanh()?,
            Activation::Sigmoid => candle_nn::ops::sigmoid(xs)?,
            Activation::Gelu => xs.gelu_erf()?,
            Activation::Silu => xs.silu()?,
            Activation::Identity => xs.clone(),
        })
    }
}

/// Apply a candle `Module` (Linear, Conv2d) and convert its error.
pub fn apply<M: Module>(m: &M, xs: &Tensor) -> Result<Tensor> {
    Ok(m.forward(xs)?)
}

/// Flatten every dimension after the first: (B, ...) → (B, prod(...)).
pub fn flatten(xs: &Tensor) -> Result<Tensor> {
    Ok(xs.flatten_from(1)?)
}

/// Softmax over the last dimension, with a backward pass (see [`ops::softmax_last_dim`]).
pub fn softmax(xs: &Tensor) -> Result<Tensor> {
    ops::softmax_last_dim(xs)
}
