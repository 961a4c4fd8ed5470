//! Seeded parameter initialisation.
//!
//! candle's CPU generator cannot be seeded, so `VarMap`'s own initialisation is not
//! reproducible. [`SeededVarMap`] is a `VarBuilder` backend that creates every missing variable
//! from kiln's ChaCha8 generator instead, following the [`candle_nn::Init`] hint the layer
//! passes (uniform, normal, Kaiming, constant), and stores it in an ordinary
//! [`candle_nn::VarMap`] so that the optimizers and `VarMap::save` work as usual. Variables are
//! created in the order the network asks for them, so the same seed and the same network give
//! the same weights.
//!
//! ```
//! use kiln_nn::init::SeededVarMap;
//! let a = SeededVarMap::new(7);
//! let b = SeededVarMap::new(7);
//! let la = kiln_nn::layers::linear(3, 2, a.var_builder().pp("fc")).unwrap();
//! let lb = kiln_nn::layers::linear(3, 2, b.var_builder().pp("fc")).unwrap();
//! let (wa, wb) = (la.weight().to_vec2::<f32>().unwrap(), lb.weight().to_vec2::<f32>().unwrap());
//! assert_eq!(wa, wb);
//! ```

use std::sync::{Arc, Mutex};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::init::{FanInOut, NormalOrUniform};
use candle_nn::{Init, VarBuilder, VarMap};
use rand::Rng as _;
use rand_distr::{Distribution, StandardNormal};

/// A `VarMap` whose missing variables are initialised from a seeded generator.
#[derive(Clone)]
pub struct SeededVarMap {
    map: VarMap,
    rng: Arc<Mutex<kiln_core::Rng>>,
}

impl SeededVarMap {
    /// An empty map whose initialisation draws from `kiln_core::rng(seed)`.
    pub fn new(seed: u64) -> Self {
        Self {
            map: VarMap::new(),
            rng: Arc::new(Mutex::new(kiln_core::rng(seed))),
        }
    }

    /// The underlying candle `VarMap` (shared, not copied).
    pub fn var_map(&self) -> &VarMap {
        &self.map
    }

    /// A f32 CPU `VarBuilder` that creates missing variables with this map's generator.
    pub fn var_builder(&self) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), DType::F32, Device::Cpu)
    }
}

/// Fan-in and fan-out of a weight of this shape, with PyTorch's convention
/// (`[out, in, k...]`: fan_in = in·prod(k), fan_out = out·prod(k)).
pub fn fans(dims: &[usize]) -> (usize, usize) {
    match dims.len() {
        0 => (1, 1),
        1 => (dims[0], dims[0]),
        _ => {
            let receptive: usize = dims[2..].iter().product();
            (dims[1] * receptive, dims[0] * receptive)
        }
    }
}

/// Draw a tensor of shape `shape` from `init` with the generator `rng` (f32, CPU).
pub fn sample(init: Init, shape: &Shape, rng: &mut kiln_core::Rng) -> candle_core::Result<Tensor> {
    let n = shape.elem_count();
    let uniform = |lo: f64, up: f64, rng: &mut kiln_core::Rng| -> Vec<f32> {
        (0..n)
            .map(|_| (lo + (up - lo) * rng.random::<f64>()) as f32)
            .collect()
    };
    let normal = |mean: f64, std: f64, rng: &mut kiln_core::Rng| -> Vec<f32> {
        (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(rng);
                (mean + std * z) as f32
            })
            .collect()
    };
    let data = match init {
        Init::Const(c) => vec![c as f32; n],
        Init::Uniform { lo, up } => uniform(lo, up, rng),
        Init::Randn { mean, stdev } => normal(mean, stdev, rng),
        Init::Kaiming {
            dist,
            fan,
            non_linearity,
        } => {
            let (fan_in, fan_out) = fans(shape.dims());
            let fan = match fan {
                FanInOut::FanIn => fan_in,
                FanInOut::FanOut => fan_out,
            };
            let std = non_linearity.gain() / (fan.max(1) as f64).sqrt();
            match dist {
                NormalOrUniform::Uniform => {
                    let bound = 3f64.sqrt() * std;
                    uniform(-bound, bound, rng)
                }
                NormalOrUniform::Normal => normal(0.0, std, rng),
            }
        }
    };
    Tensor::from_vec(data, shape.clone(), &Device::Cpu)
}

impl candle_nn::var_builder::SimpleBackend for SeededVarMap {
    fn get(
        &self,
        s: Shape,
        name: &str,
        h: Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let mut data = self
            .map
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
        if let Some(var) = data.get(name) {
            if var.shape() != &s {
                candle_core::bail!(
                    "variable {name}: expected shape {s:?}, the map holds {:?}",
                    var.shape()
                );
            }
            return Ok(var.as_tensor().clone());
        }
        let mut rng = self
            .rng
            .lock()
            .map_err(|_| candle_core::Error::Msg("generator lock poisoned".into()))?;
        let t = sample(h, &s, &mut rng)?.to_dtype(dtype)?.to_device(dev)?;
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    fn get_unchecked(
        &self,
        name: &str,
        _dtype: DType,
        _dev: &Device,
    ) -> candle_core::Result<Tensor> {
        let data = self
            .map
            .data()
            .lock()
            .map_err(|_| candle_core::Error::Msg("variable map lock poisoned".into()))?;
        match data.get(name) {
            Some(v) => Ok(v.as_tensor().clone()),
            None => candle_core::bail!(
                "variable {name} is not in the map and has no shape to create it"
            ),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.map
            .data()
            .lock()
            .map(|d| d.contains_key(name))
            .unwrap_or(false)
    }
}

/// PyTorch's default for `Linear`, `Conv*` weights and biases and all RNN parameters:
/// uniform on `[-bound, bound]`.
pub fn uniform(bound: f64) -> Init {
    Init::Uniform {
        lo: -bound,
        up: bound,
    }
}
