//! GPT-2 (Radford et al. 2019, "Language Models are Unsupervised Multitask Learners"): token
//! and position embeddings, `n_layer` pre-norm transformer blocks (causal self-attention, MLP),
//! a final layer norm and an output projection tied to the token embedding.
//!
//! Parameter names are Hugging Face's without the `transformer.` prefix (`wte`, `wpe`,
//! `h.{i}.ln_1`, `h.{i}.attn.c_attn`, `h.{i}.attn.c_proj`, `h.{i}.ln_2`, `h.{i}.mlp.c_fc`,
//! `h.{i}.mlp.c_proj`, `ln_f`), and the linear layers are HF's `Conv1D`: weight (in, out),
//! `y = x·W + b`. So a model trained from a [`kiln_nn::init::SeededVarMap`] saves as a
//! transformers folder by writing its variables as they are.
//!
//! Run it: `kiln generate text --model DIR --prompt "Hello"`.
//!
//! Legend: B batch, T new tokens, S keys (past + new), C n_embd, H heads, D head size (C/H),
//! F MLP width, V vocabulary.

use candle_core::{DType, Device, IndexOp, Tensor, D};
use candle_nn::{Init, VarBuilder};
use kiln_nn::kernels::{self, attention};
use kiln_nn::layers::{Dropout, LayerNorm, Mode};
use kiln_nn::{loss, ops, Error, EvalSums, Result, TrainStep};

use super::config::{Gpt2Activation, Gpt2Config};
use super::quant::{self, Matrix, WeightDtype, SMALL_M};

/// The additive mask value for positions a query may not see (PyTorch's `finfo(f32).min`).
const MASKED: f32 = f32::MIN;

/// Hugging Face's `Conv1D`: weight (in, out), bias (out); `y = x·W + b`. For inference the
/// weight may be packed in bf16 or int8 ([`Gpt2::with_weight_dtype`]).
pub struct Conv1D {
    weight: Matrix,
    bias: Tensor,
}

impl Conv1D {
    /// A (in → out) layer; weight N(0, std), bias zeros (HF's `_init_weights`).
    pub fn new(d_in: usize, d_out: usize, std: f64, vb: VarBuilder) -> Result<Self> {
        let weight = vb.get_with_hints(
            (d_in, d_out),
            "weight",
            Init::Randn {
                mean: 0.0,
                stdev: std,
            },
        )?;
        let bias = vb.get_with_hints(d_out, "bias", Init::Const(0.0))?;
        Ok(Self {
            weight: Matrix::F32(weight),
            bias,
        })
    }

    fn pack(&mut self, dtype: WeightDtype) -> Result<()> {
        self.weight = self.weight.pack(dtype, true)?;
        Ok(())
    }

    /// (..., in) → (..., out). A few rows (decoding) of a loaded f32 or packed weight go
    /// through kiln's matrix-vector kernels ([`quant`]); the rest through candle's matmul.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_then(xs, Then::Nothing)
    }

    /// [`Conv1D::forward`] followed by `then`, fused into the product where the weight is a
    /// loaded f32 matrix and there are more than a few rows (prefill): the GELU runs on each
    /// block of output rows while it is in cache, and a residual is where the output starts.
    fn forward_then(&self, xs: &Tensor, then: Then) -> Result<Tensor> {
        let (d_in, d_out) = match &self.weight {
            Matrix::F32(w) => w.dims2()?,
            Matrix::Packed(p) => (p.cols(), p.rows()),
        };
        let mut out_dims = xs.dims().to_vec();
        if out_dims.last() != Some(&d_in) {
            return Err(Error::shape(format!(
                "Conv1D with {d_in} inputs: expected (..., {d_in}), got {:?}",
                xs.dims()
            )));
        }
        let rows = xs.elem_count() / d_in;
        let x = xs.reshape((rows, d_in))?; // (N, in)
                                           // (N, out), and whether `then` is already applied (the fused prefill kernels)
        let (y, applied) = match &self.weight {
            Matrix::F32(w) if rows <= SMALL_M && quant::fast_path(&x, w) => {
                (quant::matmul_in_out(&x, w, Some(&self.bias))?, false)
            }
            Matrix::F32(w) => {
                let b = &self.bias;
                let y = match then {
                    Then::Nothing => kernels::linear_in_out(&x, w, b)?,
                    Then::GeluNew => kernels::linear_in_out_gelu(&x, w, b)?,
                    Then::Add(r) => {
                        kernels::linear_in_out_residual(&x, w, b, &r.reshape((rows, d_out))?)?
                    }
                };
                (y, true)
            }
            Matrix::Packed(p) => (p.matmul_t(&x, Some(&self.bias))?, false),
        };
        if let Some(last) = out_dims.last_mut() {
            *last = d_out;
        }
        let y = y.reshape(out_dims)?; // (..., out)
        Ok(match then {
            _ if applied => y,
            Then::Nothing => y,
            Then::GeluNew => kernels::gelu::gelu_new(&y)?,
            Then::Add(r) => (y + r)?,
        })
    }
}

/// Keys and values of every block for the tokens seen so far, in tensors preallocated for
/// `capacity` positions: each step writes its new keys in place (no growing concatenation).
pub struct KvCache {
    capacity: usize,
    len: usize,
    /// Per block: keys and values (B, H, capacity, D), allocated on first use.
    layers: Vec<Option<(Tensor, Tensor)>>,
}

impl KvCache {
    /// An empty cache for `n_layer` blocks holding up to `capacity` positions.
    pub fn new(n_layer: usize, capacity: usize) -> Self {
        Self {
            capacity,
            len: 0,
            layers: (0..n_layer).map(|_| None).collect(),
        }
    }

    /// Positions stored so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing is stored.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Positions the cache can hold.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Forget everything (keeps the allocation's size, not its contents).
    pub fn reset(&mut self) {
        self.len = 0;
        self.layers.iter_mut().for_each(|l| *l = None);
    }

    /// Store `k`, `v` (B, H, T, D) of block `layer` at positions len..len+T and return all keys
    /// and values so far (B, H, len+T, D), views into the cache.
    fn append(&mut self, layer: usize, k: &Tensor, v: &Tensor) -> Result<(Tensor, Tensor)> {
        let (b, h, t, d) = k.dims4()?;
        if self.len + t > self.capacity {
            return Err(Error::shape(format!(
                "KV cache holds {} positions: {} stored plus {t} new do not fit",
                self.capacity, self.len
            )));
        }
        let slot = self
            .layers
            .get_mut(layer)
            .ok_or_else(|| Error::shape(format!("KV cache has no block {layer}")))?;
        if slot.is_none() {
            let z = Tensor::zeros((b, h, self.capacity, d), k.dtype(), k.device())?;
            *slot = Some((z.clone(), z.zeros_like()?));
        }
        let (kc, vc) = slot
            .as_ref()
            .ok_or_else(|| Error::shape("KV cache slot empty"))?;
        if kc.dim(0)? != b || kc.dim(1)? != h || kc.dim(3)? != d {
            return Err(Error::shape(format!(
                "KV cache was filled with batch {}, heads {}, head size {}; got {:?}",
                kc.dim(0)?,
                kc.dim(1)?,
                kc.dim(3)?,
                k.dims()
            )));
        }
        kc.slice_set(&k.contiguous()?, 2, self.len)?;
        vc.slice_set(&v.contiguous()?, 2, self.len)?;
        let s = self.len + t;
        Ok((kc.narrow(2, 0, s)?, vc.narrow(2, 0, s)?)) // (B, H, S, D) views
    }
}

/// `residual + drop(proj(xs))`, the residual fused into the product unless dropout is active.
fn residual_after(
    proj: &Conv1D,
    xs: &Tensor,
    drop: &Dropout,
    mode: &Mode,
    residual: &Tensor,
) -> Result<Tensor> {
    if mode.is_train() && drop.p() > 0.0 {
        Ok((residual + drop.forward(&proj.forward(xs)?, mode)?)?)
    } else {
        proj.forward_then(xs, Then::Add(residual))
    }
}

/// What [`Conv1D::forward_then`] applies to the product.
#[derive(Clone, Copy)]
enum Then<'a> {
    Nothing,
    /// GPT-2's GELU.
    GeluNew,
    /// Add this residual (the output's shape).
    Add(&'a Tensor),
}

/// Causal self-attention with fused query/key/value projection `c_attn` (C → 3C) and output
/// projection `c_proj` (C → C).
pub struct CausalSelfAttention {
    c_attn: Conv1D,
    c_proj: Conv1D,
    n_head: usize,
    scale: f64,
    attn_drop: Dropout,
    resid_drop: Dropout,
    /// Plain causal attention through the fused kernel (default true).
    fused: bool,
}

impl CausalSelfAttention {
    fn new(cfg: &Gpt2Config, layer: usize, vb: VarBuilder) -> Result<Self> {
        let c = cfg.n_embd;
        let std = cfg.initializer_range;
        let proj_std = std / (2.0 * cfg.n_layer as f64).sqrt();
        let mut scale = 1.0;
        if cfg.scale_attn_weights {
            scale /= (cfg.head_dim() as f64).sqrt();
        }
        if cfg.scale_attn_by_inverse_layer_idx {
            scale /= (layer + 1) as f64;
        }
        Ok(Self {
            c_attn: Conv1D::new(c, 3 * c, std, vb.pp("c_attn"))?,
            c_proj: Conv1D::new(c, c, proj_std, vb.pp("c_proj"))?,
            n_head: cfg.n_head,
            scale,
            attn_drop: Dropout::new(cfg.attn_pdrop)?,
            resid_drop: Dropout::new(cfg.resid_pdrop)?,
            fused: true,
        })
    }

    /// (B, T, C) → `residual` + attention(xs), (B, T, C). `mask` is additive (B or 1, 1, T,
    /// S), or `None` for plain causal attention: query t sees keys up to S - T + t (with no
    /// past, the causal mask; for a single new token, every key).
    fn forward(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
        mode: &Mode,
        residual: &Tensor,
    ) -> Result<Tensor> {
        let (b, t, c) = xs.dims3()?;
        let h = self.n_head;
        let d = c / h;
        let qkv = self
            .c_attn
            .forward(xs)? // (B, T, 3C)
            .reshape((b, t, 3, h, d))?
            .permute((2, 0, 3, 1, 4))? // (3, B, H, T, D)
            .contiguous()?;
        let q = qkv.i(0)?; // (B, H, T, D)
        let k = qkv.i(1)?;
        let v = qkv.i(2)?;
        let (k, v) = match cache {
            Some((cache, layer)) => cache.append(layer, &k, &v)?, // (B, H, S, D)
            None => (k, v),
        };
        let s = k.dim(2)?;
        let dropping = self.attn_drop.p() > 0.0 && mode.is_train();
        let y = if self.fused && mask.is_none() && s == t && !dropping {
            // no past, no padding: the fused causal op (the plain composition off the CPU)
            attention::causal_attention(&q, &k, &v, self.scale)? // (B, H, T, D)
        } else {
            let causal = match mask {
                None if s == t && t > 1 => Some(attention::causal_mask(t, q.dtype(), q.device())?),
                _ => None,
            };
            let scores = (q.matmul(&k.t()?)? * self.scale)?; // (B, H, T, D)·(B, H, D, S) = (B, H, T, S)
            let scores = match mask.or(causal.as_ref()) {
                Some(m) => scores.broadcast_add(m)?,
                None => scores,
            };
            let probs = ops::softmax_last_dim(&scores)?;
            let probs = self.attn_drop.forward(&probs, mode)?;
            probs.matmul(&v)? // (B, H, T, S)·(B, H, S, D) = (B, H, T, D)
        };
        let y = y
            .transpose(1, 2)? // (B, T, H, D)
            .reshape((b, t, c))?;
        residual_after(&self.c_proj, &y, &self.resid_drop, mode, residual)
    }
}

/// The MLP: `c_fc` (C → F), nonlinearity, `c_proj` (F → C).
pub struct Mlp {
    c_fc: Conv1D,
    c_proj: Conv1D,
    act: Gpt2Activation,
    drop: Dropout,
}

impl Mlp {
    fn new(cfg: &Gpt2Config, vb: VarBuilder) -> Result<Self> {
        let std = cfg.initializer_range;
        let proj_std = std / (2.0 * cfg.n_layer as f64).sqrt();
        Ok(Self {
            c_fc: Conv1D::new(cfg.n_embd, cfg.inner(), std, vb.pp("c_fc"))?,
            c_proj: Conv1D::new(cfg.inner(), cfg.n_embd, proj_std, vb.pp("c_proj"))?,
            act: cfg.activation()?,
            drop: Dropout::new(cfg.resid_pdrop)?,
        })
    }

    /// (B, T, C) → `residual` + mlp(xs), (B, T, C).
    fn forward(&self, xs: &Tensor, mode: &Mode, residual: &Tensor) -> Result<Tensor> {
        let hid = match self.act {
            Gpt2Activation::GeluTanh => self.c_fc.forward_then(xs, Then::GeluNew)?,
            Gpt2Activation::GeluErf => self.c_fc.forward(xs)?.gelu_erf()?,
            Gpt2Activation::Relu => self.c_fc.forward(xs)?.relu()?,
            Gpt2Activation::Silu => self.c_fc.forward(xs)?.silu()?,
            Gpt2Activation::Tanh => self.c_fc.forward(xs)?.tanh()?,
        }; // (B, T, F)
        residual_after(&self.c_proj, &hid, &self.drop, mode, residual) // (B, T, C)
    }
}

/// One pre-norm transformer block: `x + attn(ln_1(x))`, then `x + mlp(ln_2(x))`.
pub struct Block {
    ln_1: LayerNorm,
    attn: CausalSelfAttention,
    ln_2: LayerNorm,
    mlp: Mlp,
}

impl Block {
    fn new(cfg: &Gpt2Config, layer: usize, vb: VarBuilder) -> Result<Self> {
        let eps = cfg.layer_norm_epsilon;
        Ok(Self {
            ln_1: LayerNorm::with_eps(cfg.n_embd, eps, vb.pp("ln_1"))?,
            attn: CausalSelfAttention::new(cfg, layer, vb.pp("attn"))?,
            ln_2: LayerNorm::with_eps(cfg.n_embd, eps, vb.pp("ln_2"))?,
            mlp: Mlp::new(cfg, vb.pp("mlp"))?,
        })
    }

    fn forward(
        &self,
        xs: &Tensor,
        mask: Option<&Tensor>,
        cache: Option<(&mut KvCache, usize)>,
        mode: &Mode,
    ) -> Result<Tensor> {
        let l1 = self.ln_1.forward(xs)?;
        let xs = self.attn.forward(&l1, mask, cache, mode, xs)?;
        let l2 = self.ln_2.forward(&xs)?;
        self.mlp.forward(&l2, mode, &xs)
    }
}

impl Block {
    /// Pack the four weight matrices in `dtype` (inference only).
    fn pack(&mut self, dtype: WeightDtype) -> Result<()> {
        self.attn.c_attn.pack(dtype)?;
        self.attn.c_proj.pack(dtype)?;
        self.mlp.c_fc.pack(dtype)?;
        self.mlp.c_proj.pack(dtype)
    }

    fn weight_bytes(&self) -> usize {
        [
            &self.attn.c_attn,
            &self.attn.c_proj,
            &self.mlp.c_fc,
            &self.mlp.c_proj,
        ]
        .iter()
        .map(|c| c.weight.bytes() + 4 * c.bias.elem_count())
        .sum::<usize>()
            + 16 * self.attn.c_proj.bias.elem_count() // ln_1, ln_2: weight and bias (C)
    }
}

/// The GPT-2 language model (`GPT2LMHeadModel`).
pub struct Gpt2 {
    config: Gpt2Config,
    /// Token embedding (V, C).
    wte: Matrix,
    wpe: Tensor,
    h: Vec<Block>,
    ln_f: LayerNorm,
    /// Output projection (V, C); `None` when tied to `wte`.
    lm_head: Option<Matrix>,
    embd_drop: Dropout,
    dtype: WeightDtype,
}

impl Gpt2 {
    /// Build from `vb` with Hugging Face's names (no `transformer.` prefix). Missing variables
    /// are created as HF initialises them: weights and embeddings N(0, initializer_range),
    /// the two `c_proj` weights of each block N(0, initializer_range / sqrt(2·n_layer)),
    /// biases zeros, layer norms ones and zeros. With `tie_word_embeddings = false` the output
    /// projection is `lm_head.weight` (V, C).
    pub fn new(cfg: &Gpt2Config, vb: VarBuilder) -> Result<Self> {
        cfg.validate()?;
        let std = cfg.initializer_range;
        let normal = Init::Randn {
            mean: 0.0,
            stdev: std,
        };
        let wte = vb.get_with_hints((cfg.vocab_size, cfg.n_embd), "wte.weight", normal)?;
        let wpe = vb.get_with_hints((cfg.n_positions, cfg.n_embd), "wpe.weight", normal)?;
        let h = (0..cfg.n_layer)
            .map(|i| Block::new(cfg, i, vb.pp(format!("h.{i}"))))
            .collect::<Result<Vec<_>>>()?;
        let ln_f = LayerNorm::with_eps(cfg.n_embd, cfg.layer_norm_epsilon, vb.pp("ln_f"))?;
        let lm_head = if cfg.tie_word_embeddings {
            None
        } else {
            let w = vb.get_with_hints((cfg.vocab_size, cfg.n_embd), "lm_head.weight", normal)?;
            Some(Matrix::F32(w))
        };
        Ok(Self {
            config: cfg.clone(),
            wte: Matrix::F32(wte),
            wpe,
            h,
            ln_f,
            lm_head,
            embd_drop: Dropout::new(cfg.embd_pdrop)?,
            dtype: WeightDtype::F32,
        })
    }

    /// The same model with its weight matrices and token embedding (and untied LM head) in
    /// `dtype`, for inference: each f32 matrix is freed as soon as it is packed. Biases, layer
    /// norms and position embeddings stay f32. Gradients do not flow into packed weights.
    /// Packing a packed model again keeps its precision (no double rounding).
    pub fn with_weight_dtype(mut self, dtype: WeightDtype) -> Result<Self> {
        if dtype == WeightDtype::F32 || self.dtype != WeightDtype::F32 {
            return Ok(self);
        }
        for block in &mut self.h {
            block.pack(dtype)?;
        }
        self.wte = self.wte.pack(dtype, false)?;
        if let Some(head) = &self.lm_head {
            self.lm_head = Some(head.pack(dtype, false)?);
        }
        self.dtype = dtype;
        Ok(self)
    }

    /// The precision of the weight matrices.
    pub fn weight_dtype(&self) -> WeightDtype {
        self.dtype
    }

    /// Bytes of all parameters as held now (a tied LM head counted once).
    pub fn weight_bytes(&self) -> usize {
        self.wte.bytes()
            + 4 * self.wpe.elem_count()
            + self.h.iter().map(Block::weight_bytes).sum::<usize>()
            + 8 * self.config.n_embd
            + self.lm_head.as_ref().map_or(0, Matrix::bytes)
    }

    /// The hyperparameters.
    pub fn config(&self) -> &Gpt2Config {
        &self.config
    }

    /// Run plain causal attention through the fused kernel `kiln_nn::kernels::attention` (`true`,
    /// the default) or as candle ops with an explicit mask (`false`: the reference it is tested
    /// against).
    pub fn set_fused_attention(&mut self, on: bool) {
        self.h.iter_mut().for_each(|b| b.attn.fused = on);
    }

    /// An empty KV cache for this model holding up to `capacity` positions (at most
    /// `n_positions`).
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache::new(self.config.n_layer, capacity.min(self.config.n_positions))
    }

    /// Logits (B, T, V) for `input_ids` (B, T), in evaluation mode (no dropout).
    ///
    /// * `cache`: keys and values of earlier tokens; the new tokens continue them (positions
    ///   start at `cache.len()`) and are appended to it. `None`: the ids are the whole sequence.
    /// * `attention_mask`: (B, S) with 1 for real tokens and 0 for padding, covering the cached
    ///   tokens and the new ones (S = cache.len() + T), as in transformers. Padded keys are never
    ///   attended to and position ids count only real tokens (`cumsum(mask) - 1`, 0 on padding, as transformers 5), so a
    ///   left-padded row gives the logits it would give alone.
    pub fn forward(
        &self,
        input_ids: &Tensor,
        cache: Option<&mut KvCache>,
        attention_mask: Option<&Tensor>,
    ) -> Result<Tensor> {
        let hidden = self.hidden(input_ids, cache, attention_mask, &Mode::eval())?;
        self.logits(&hidden)
    }

    /// Logits (B, T, V) for `input_ids` (B, T) as one whole sequence, with dropout when `mode`
    /// is training: the pass a training step differentiates.
    pub fn forward_t(&self, input_ids: &Tensor, mode: &Mode) -> Result<Tensor> {
        let hidden = self.hidden(input_ids, None, None, mode)?;
        self.logits(&hidden)
    }

    /// The token embedding (V, C) while it is f32 (`None` once packed).
    pub fn wte(&self) -> Option<&Tensor> {
        match &self.wte {
            Matrix::F32(w) => Some(w),
            Matrix::Packed(_) => None,
        }
    }

    /// The learned position embedding `wpe` (n_positions, C).
    pub fn wpe(&self) -> &Tensor {
        &self.wpe
    }

    /// Output projection of final hidden states: (..., C) → (..., V).
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let c = self.config.n_embd;
        let mut dims = hidden.dims().to_vec();
        let rows = hidden.elem_count() / c;
        let x = hidden.reshape((rows, c))?; // (N, C)
        let y = match self.lm_head.as_ref().unwrap_or(&self.wte) {
            Matrix::F32(w) if rows <= SMALL_M && quant::fast_path(&x, w) => {
                quant::matmul_out_in(&x, w)? // (N, V)
            }
            Matrix::F32(w) => x.matmul(&w.t()?)?, // (N, C)·(C, V) = (N, V)
            Matrix::Packed(p) => p.matmul_t(&x, None)?, // (N, V)
        };
        if let Some(last) = dims.last_mut() {
            *last = self.config.vocab_size;
        }
        Ok(y.reshape(dims)?)
    }

    /// Final hidden states (B, T, C), after `ln_f`, for `input_ids` (B, T); `cache` and
    /// `attention_mask` as in [`Gpt2::forward`].
    pub fn hidden(
        &self,
        input_ids: &Tensor,
        cache: Option<&mut KvCache>,
        attention_mask: Option<&Tensor>,
        mode: &Mode,
    ) -> Result<Tensor> {
        let cfg = &self.config;
        let (b, t) = match input_ids.dims() {
            &[b, t] if t > 0 && b > 0 => (b, t),
            d => {
                return Err(Error::shape(format!(
                    "GPT-2: expected token ids (batch, time) with both ≥ 1, got shape {d:?}"
                )))
            }
        };
        let ids = input_ids.to_dtype(DType::U32)?;
        let ids_vec = ids.flatten_all()?.to_vec1::<u32>()?;
        if let Some(&bad) = ids_vec.iter().find(|&&i| i as usize >= cfg.vocab_size) {
            return Err(Error::shape(format!(
                "GPT-2: token id {bad} out of range for a vocabulary of {}",
                cfg.vocab_size
            )));
        }
        let past = cache.as_ref().map_or(0, |c| c.len());
        let s = past + t;
        let mask_rows = match attention_mask {
            Some(m) => {
                if m.dims() != [b, s] {
                    return Err(Error::shape(format!(
                        "GPT-2: attention_mask must be (batch, past + new) = ({b}, {s}), got {:?}",
                        m.dims()
                    )));
                }
                Some(m.to_dtype(DType::F32)?.to_vec2::<f32>()?)
            }
            None => None,
        };
        // Position ids (B, T): past..past+T, or as transformers derives them from the mask.
        let pos: Vec<u32> = match &mask_rows {
            None => (0..b).flat_map(|_| (past..s).map(|p| p as u32)).collect(),
            Some(rows) => rows
                .iter()
                .flat_map(|row| {
                    let mut count = 0i64;
                    let cums: Vec<i64> = row
                        .iter()
                        .map(|&m| {
                            count += (m != 0.0) as i64;
                            count - 1
                        })
                        .collect();
                    (past..s)
                        .map(|j| {
                            if row[j] == 0.0 {
                                0
                            } else {
                                cums[j].max(0) as u32
                            }
                        })
                        .collect::<Vec<_>>()
                })
                .collect(),
        };
        let max_pos = pos.iter().copied().max().unwrap_or(0) as usize;
        if s > cfg.n_positions || max_pos >= cfg.n_positions {
            return Err(Error::shape(format!(
                "GPT-2: sequence of {s} tokens exceeds n_positions = {}",
                cfg.n_positions
            )));
        }
        let tok = match &self.wte {
            Matrix::F32(w) => w.embedding(&ids.flatten_all()?)?, // (B·T, C)
            Matrix::Packed(p) => {
                let c = cfg.n_embd;
                let mut rows = vec![0f32; ids_vec.len() * c];
                for (dst, &id) in rows.chunks_mut(c).zip(&ids_vec) {
                    p.row_into(id as usize, dst);
                }
                Tensor::from_vec(rows, (b * t, c), ids.device())? // (B·T, C)
            }
        };
        self.blocks(tok, pos, (b, t, past), mask_rows.as_deref(), cache, mode)
    }

    /// (B, T) of caller-made token embeddings (B, T, C), both at least 1.
    fn embedded_dims(&self, tok: &Tensor) -> Result<(usize, usize)> {
        let c = self.config.n_embd;
        match tok.dims() {
            &[b, t, cc] if t > 0 && b > 0 && cc == c => Ok((b, t)),
            d => Err(Error::shape(format!(
                "GPT-2: expected token embeddings (batch, time, {c}), got shape {d:?}"
            ))),
        }
    }

    /// Final hidden states (B, T, C), after `ln_f`, for token embeddings `tok` (B, T, C) made
    /// by the caller (a model whose tokens are not rows of `wte`, such as the factorized image
    /// codes of [`crate::text2image::Prior`]); positions continue `cache` as in
    /// [`Gpt2::hidden`], with no padding mask.
    pub fn hidden_embedded(
        &self,
        tok: &Tensor,
        cache: Option<&mut KvCache>,
        mode: &Mode,
    ) -> Result<Tensor> {
        let c = self.config.n_embd;
        let (b, t) = self.embedded_dims(tok)?;
        let past = cache.as_ref().map_or(0, |c| c.len());
        if past + t > self.config.n_positions {
            return Err(Error::shape(format!(
                "GPT-2: sequence of {} tokens exceeds n_positions = {}",
                past + t,
                self.config.n_positions
            )));
        }
        let pos = (0..b)
            .flat_map(|_| (past..past + t).map(|p| p as u32))
            .collect();
        let tok = tok.reshape((b * t, c))?;
        self.blocks(tok, pos, (b, t, past), None, cache, mode)
    }

    /// Final hidden states (B, T, C), after `ln_f`, for token embeddings `tok` (B, T, C) and
    /// position embeddings `pe` (T, C), both made by the caller: `wpe` is not used, so a model
    /// can place its tokens its own way (the factorized image positions of
    /// [`crate::text2image::Prior`]). `pe` row j is the position of new token j, which follows
    /// the `cache`'s tokens; no padding mask. `head_bias` (H, T, S), where given, is added to
    /// every layer's attention scores on top of the causal mask (a relative position bias).
    pub fn hidden_placed(
        &self,
        tok: &Tensor,
        pe: &Tensor,
        head_bias: Option<&Tensor>,
        cache: Option<&mut KvCache>,
        mode: &Mode,
    ) -> Result<Tensor> {
        let c = self.config.n_embd;
        let (b, t) = self.embedded_dims(tok)?;
        if pe.dims() != [t, c] {
            return Err(Error::shape(format!(
                "GPT-2: expected position embeddings (time, {c}) = ({t}, {c}), got {:?}",
                pe.dims()
            )));
        }
        let past = cache.as_ref().map_or(0, |c| c.len());
        let mask = match head_bias {
            None => None,
            Some(bias) => {
                let h = self.config.n_head;
                if bias.dims() != [h, t, past + t] {
                    return Err(Error::shape(format!(
                        "GPT-2: expected a head bias (heads, time, past + time) = ({h}, {t}, {}), got {:?}",
                        past + t,
                        bias.dims()
                    )));
                }
                let causal = causal_bias(t, past, tok.device())?; // (1, 1, T, S)
                Some(causal.broadcast_add(&bias.unsqueeze(0)?)?) // (1, H, T, S)
            }
        };
        let xs = tok.broadcast_add(&pe.unsqueeze(0)?)?; // (B, T, C)
        self.run_blocks(xs, (b, t, past), Mask::Given(mask), cache, mode)
    }

    /// Add position embeddings `pos` (B·T) to token embeddings `tok` (B·T, C) and run the
    /// blocks and `ln_f`: (B, T, C).
    fn blocks(
        &self,
        tok: Tensor,
        pos: Vec<u32>,
        (b, t, past): (usize, usize, usize),
        mask_rows: Option<&[Vec<f32>]>,
        cache: Option<&mut KvCache>,
        mode: &Mode,
    ) -> Result<Tensor> {
        let pos = Tensor::from_vec(pos, b * t, tok.device())?;
        let pe = self.wpe.embedding(&pos)?; // (B·T, C)
        let xs = (tok + pe)?.reshape((b, t, self.config.n_embd))?; // (B, T, C)
        self.run_blocks(xs, (b, t, past), Mask::Rows(mask_rows), cache, mode)
    }

    /// Run the embedded and placed inputs `xs` (B, T, C) through dropout, the blocks and
    /// `ln_f`: (B, T, C).
    fn run_blocks(
        &self,
        xs: Tensor,
        (b, t, past): (usize, usize, usize),
        mask: Mask,
        mut cache: Option<&mut KvCache>,
        mode: &Mode,
    ) -> Result<Tensor> {
        let dev = xs.device().clone();
        let mut xs = self.embd_drop.forward(&xs, mode)?;
        let mask = match mask {
            Mask::Rows(rows) => attention_bias(b, t, past, rows, &dev)?,
            Mask::Given(m) => m,
        };
        for (i, block) in self.h.iter().enumerate() {
            let c = cache.as_deref_mut().map(|c| (c, i));
            xs = block.forward(&xs, mask.as_ref(), c, mode)?;
        }
        if let Some(c) = cache {
            c.len += t;
        }
        self.ln_f.forward(&xs)
    }
}

/// The attention mask of [`Gpt2::run_blocks`]: padding rows to derive it from (`None`: plain
/// causal), or an additive mask made by the caller (`None`: plain causal).
enum Mask<'a> {
    Rows(Option<&'a [Vec<f32>]>),
    Given(Option<Tensor>),
}

/// The causal additive mask (1, 1, T, S) of T new tokens after `past` cached ones: 0 where
/// query t may see key s (s ≤ past + t), `MASKED` elsewhere.
fn causal_bias(t: usize, past: usize, dev: &Device) -> Result<Tensor> {
    let s = past + t;
    let bias: Vec<f32> = (0..t)
        .flat_map(|q| (0..s).map(move |k| if k <= past + q { 0.0 } else { MASKED }))
        .collect();
    Ok(Tensor::from_vec(bias, (1, 1, t, s), dev)?)
}

/// The additive attention bias (B or 1, 1, T, S): 0 where query t (absolute position past + t)
/// may see key s (s ≤ past + t and key s is not padding), `MASKED` elsewhere. `None` when the
/// attention is plain causal (no padding, and no past or one new token).
fn attention_bias(
    b: usize,
    t: usize,
    past: usize,
    mask_rows: Option<&[Vec<f32>]>,
    dev: &Device,
) -> Result<Option<Tensor>> {
    let s = past + t;
    let padded = mask_rows.is_some_and(|rows| rows.iter().any(|r| r.contains(&0.0)));
    if (t == 1 || past == 0) && !padded {
        return Ok(None);
    }
    let rows = if padded { b } else { 1 };
    let mut bias = vec![0f32; rows * t * s];
    for r in 0..rows {
        for q in 0..t {
            for k in 0..s {
                let visible = k <= past + q && mask_rows.is_none_or(|m| m[r][k] != 0.0);
                if !visible {
                    bias[(r * t + q) * s + k] = MASKED;
                }
            }
        }
    }
    Ok(Some(Tensor::from_vec(bias, (rows, 1, t, s), dev)?))
}

impl TrainStep for Gpt2 {
    /// Token ids (B, T) and next-token targets (B, T).
    type Batch = (Tensor, Tensor);

    fn loss(&self, (x, y): &Self::Batch, mode: &Mode) -> Result<Tensor> {
        loss::cross_entropy(&self.forward_t(x, mode)?, y)
    }

    fn evaluate(&self, (x, y): &Self::Batch) -> Result<EvalSums> {
        let logits = self.forward_t(x, &Mode::eval())?;
        let n = y.elem_count();
        let l = loss::cross_entropy(&logits, y)?.to_scalar::<f32>()? as f64;
        Ok(EvalSums {
            loss_sum: l * n as f64,
            count: n,
            correct: Some(loss::correct(&logits, y)?),
        })
    }
}

/// Index of the largest value of the last position's logits of each row: logits (B, T, V) →
/// B token ids. Ties go to the lowest index, as `torch.argmax`.
pub fn argmax_last(logits: &Tensor) -> Result<Vec<u32>> {
    let (_, t, _) = logits.dims3()?;
    let last = logits.i((.., t - 1, ..))?; // (B, V)
    Ok(last.argmax(D::Minus1)?.to_vec1::<u32>()?)
}
