//! VQ-VAE image tokenizer: 32×32 RGB pictures to an 8×8 grid of codes and back.
//!
//! van den Oord, Vinyals, Kavukcuoglu 2017, "Neural Discrete Representation Learning", with
//! the exponential-moving-average codebook of its appendix A.1 and dead-code restarts (a code
//! whose EMA usage falls below a threshold is moved onto an encoder output of the current
//! batch, as in Jukebox / `vector-quantize-pytorch`).
//!
//! * [`Encoder`]: `conv1` 4×4 stride 2 (S → S/2) → ReLU → `conv2` 4×4 stride 2 (→ S/4) → ReLU →
//!   `conv3` 3×3 → ReLU → `proj` 1×1 to the code dimension D.
//! * [`Quantizer`]: the codebook `embed` (K, D), nearest code by Euclidean distance;
//!   straight-through estimator `z_q = z_e + sg(e − z_e)`; commitment loss
//!   `β·mean((z_e − sg(e))²)`. In training each forward pass also updates the EMA statistics
//!   `cluster_size` (K) and `embed_avg` (K, D) and sets `embed = embed_avg / cluster_size`;
//!   these three never receive gradients, so the optimizer leaves them alone, and they live in
//!   the variable map so that checkpoints carry them (exact resume). A code whose usage
//!   falls below a threshold restarts on an encoder output drawn in proportion to its squared
//!   quantization error (k-means++ seeding), so spare codes go where the codebook fits worst.
//! * With `res_blocks` = n > 0, n [`ResBlock`]s (each followed by ReLU) after the encoder's
//!   `conv3` and after the decoder's `conv1`, as in the paper.
//! * With `upsample` = `pixel_shuffle`, each "nearest ×2 → conv" of the decoder becomes
//!   "conv to 4× the channels → [`pixel_shuffle`]" (sub-pixel convolution).
//! * [`Decoder`]: `conv1` 3×3 D → hidden → ReLU → nearest ×2 → `conv2` 3×3 → ReLU → nearest ×2
//!   → `conv3` 3×3 → ReLU → `out` 3×3 → RGB.
//! * [`VqVae`]: the whole; [`TrainStep`] loss = `mse(x̂, x) + λ·edges + β·commitment`,
//!   where `edges` is the MSE of the horizontal plus that of the vertical pixel differences
//!   (λ = `edge_weight`, default 0).
//! * Layered tokenizer (`colour_codes` = Cc > 0): a product quantizer (Jégou et al. 2011) of
//!   two codebooks whose roles the decoder fixes. The encoder makes two vectors per patch; a
//!   pattern codebook of P = K / Cc codes quantizes the first, a colour codebook of Cc the
//!   second, and the joint code is `p·Cc + c` (K in all). The decoder paints like a layered
//!   drawing: the pattern vectors alone, through the decoder above with one output channel
//!   and a sigmoid, give each pixel's coverage a ∈ [0, 1]; each colour vector alone, through
//!   1×1 convolutions, gives its patch a foreground and a background colour; the pixel is
//!   `bg + a·(fg − bg)`. A pattern code cannot carry colour and a colour code cannot carry an
//!   outline inside its patch, so the outline of a star and the colour red are separate codes,
//!   and a red star, never seen in training, is one pattern code and one colour code that were
//!   each learnt apart. A text-to-image prior can then score the pair as the sum of a pattern
//!   score and a colour score ([`crate::text2image`]).
//!
//! Trained by `kiln train vqvae --dataset shapes --out runs/vq`.
//!
//! Legend: B batch, C channels, S image side, D code dimension, K codebook size,
//! G = S/4 grid side, N = B·G·G code vectors.

use candle_core::{DType, Device, Tensor, Var, D as Dim};
use candle_nn::{Init, VarBuilder};
use kiln_nn::layers::Conv2d;
use kiln_nn::layers::{self, Mode};
use kiln_nn::{loss, Error, EvalSums, Result, TrainStep};
use rand::Rng as _;

/// VQ-VAE hyperparameters (`config.json` keys).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct VqVaeConfig {
    /// Image channels (default 3).
    pub in_channels: usize,
    /// Square image side S, a multiple of 4 (default 32); the code grid is S/4 × S/4.
    pub image_size: usize,
    /// Channels of the encoder's and decoder's hidden convolutions (default 64).
    pub hidden: usize,
    /// Code dimension D (default 32).
    pub embed_dim: usize,
    /// Codebook size K, at least 2 (default 256).
    pub codebook_size: usize,
    /// Commitment weight β, ≥ 0 (default 0.25).
    pub beta: f64,
    /// EMA decay of the codebook statistics, in [0, 1) (default 0.99).
    pub decay: f64,
    /// A code whose EMA usage (vectors per batch) falls below this is restarted on an encoder
    /// output; 0 disables restarts (default 1.0).
    pub dead_code_threshold: f64,
    /// Residual blocks at the code grid's resolution, after the encoder's `conv3` and after
    /// the decoder's `conv1` (default 0; the paper uses 2).
    pub res_blocks: usize,
    /// How the decoder doubles its resolution, twice (default `pixel_shuffle`; a
    /// `config.json` without this key, written before it existed, means `nearest`).
    #[serde(default = "Upsample::legacy")]
    pub upsample: Upsample,
    /// Colour codes Cc of a layered tokenizer; 0 (the default) is one plain codebook. With
    /// Cc > 0 each code is a pair: a pattern code p of `codebook_size / Cc` and a colour code c
    /// of Cc, joint code `p·Cc + c` (see the module docs). `codebook_size` must be a multiple.
    pub colour_codes: usize,
    /// Weight λ ≥ 0 of the edge term of the loss, the squared error of the horizontal and
    /// vertical pixel differences (default 0: plain MSE). Outlines such as the points of a
    /// star are few pixels, cheap under MSE alone; their differences are large.
    pub edge_weight: f64,
}

/// The decoder's ×2 upsampling.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Upsample {
    /// Nearest-neighbour ×2, then a 3×3 convolution: every pixel of a 2×2 block starts
    /// from the same features, so detail inside a code's 4×4 patch comes only from its
    /// neighbours.
    Nearest,
    /// A 3×3 convolution to 4× the channels, then depth-to-space (Shi et al. 2016, "sub-pixel
    /// convolution"): each pixel of a 2×2 block has its own filters, as with the paper's
    /// transposed convolutions, so a code can draw the outline inside its patch.
    PixelShuffle,
}

impl Upsample {
    /// What a `config.json` without `upsample` means: the only decoder there was then.
    fn legacy() -> Self {
        Upsample::Nearest
    }
}

impl Default for VqVaeConfig {
    fn default() -> Self {
        Self {
            in_channels: 3,
            image_size: 32,
            hidden: 64,
            embed_dim: 32,
            codebook_size: 256,
            beta: 0.25,
            decay: 0.99,
            dead_code_threshold: 1.0,
            res_blocks: 0,
            upsample: Upsample::PixelShuffle,
            colour_codes: 0,
            edge_weight: 0.0,
        }
    }
}

impl VqVaeConfig {
    /// Check every option, naming the one out of range.
    pub fn validate(&self) -> Result<()> {
        if !matches!(self.in_channels, 1 | 3) {
            return Err(Error::param("in_channels", self.in_channels, "1 or 3"));
        }
        if self.image_size < 4 || !self.image_size.is_multiple_of(4) {
            return Err(Error::param(
                "image_size",
                self.image_size,
                "a multiple of 4, ≥ 4",
            ));
        }
        if self.hidden == 0 {
            return Err(Error::param("hidden", 0, "≥ 1"));
        }
        if self.embed_dim == 0 {
            return Err(Error::param("embed_dim", 0, "≥ 1"));
        }
        if self.codebook_size < 2 {
            return Err(Error::param("codebook_size", self.codebook_size, "≥ 2"));
        }
        if !(self.beta >= 0.0 && self.beta.is_finite()) {
            return Err(Error::param("beta", self.beta, "a finite number ≥ 0"));
        }
        if !(0.0..1.0).contains(&self.decay) {
            return Err(Error::param("decay", self.decay, "in [0, 1)"));
        }
        if !(self.dead_code_threshold >= 0.0 && self.dead_code_threshold.is_finite()) {
            return Err(Error::param(
                "dead_code_threshold",
                self.dead_code_threshold,
                "a finite number ≥ 0",
            ));
        }
        if self.res_blocks > 16 {
            return Err(Error::param("res_blocks", self.res_blocks, "0 to 16"));
        }
        if !(self.edge_weight >= 0.0 && self.edge_weight.is_finite()) {
            return Err(Error::param(
                "edge_weight",
                self.edge_weight,
                "a finite number ≥ 0",
            ));
        }
        check_colour_codes(self.colour_codes, self.codebook_size)
    }

    /// The two codebook sizes (pattern, colour) of a layered tokenizer; `None` for a plain one.
    pub fn layers(&self) -> Option<(usize, usize)> {
        (self.colour_codes > 0).then(|| (self.codebook_size / self.colour_codes, self.colour_codes))
    }

    /// Side of the code grid, S/4.
    pub fn grid(&self) -> usize {
        self.image_size / 4
    }
}

/// Check `colour_codes` against `codebook_size` (a VQ-VAE's, or a prior's over its codes):
/// 0, or ≥ 2 dividing the codebook into ≥ 2 pattern codes.
pub fn check_colour_codes(colour_codes: usize, codebook_size: usize) -> Result<()> {
    let k = codebook_size;
    if colour_codes > 0
        && (colour_codes < 2 || !k.is_multiple_of(colour_codes) || k / colour_codes < 2)
    {
        return Err(Error::param(
            "colour_codes",
            colour_codes,
            &format!("0, or ≥ 2 dividing codebook_size = {k} into ≥ 2 pattern codes"),
        ));
    }
    Ok(())
}

/// Joint codes `p·Cc + c` of a layered tokenizer from its pattern and colour codes.
fn join_codes(mut patterns: Vec<u32>, colours: &[u32], colour_codes: usize) -> Vec<u32> {
    for (p, &c) in patterns.iter_mut().zip(colours) {
        *p = *p * colour_codes as u32 + c;
    }
    patterns
}

/// The VQ-VAE paper's residual block, channels unchanged: `x + conv1×1(relu(conv3×3(relu(x))))`.
pub struct ResBlock {
    conv1: Conv2d,
    conv2: Conv2d,
}

impl ResBlock {
    /// Build from `vb` (`conv1` 3×3, `conv2` 1×1), `channels` in and out.
    pub fn new(channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            conv1: layers::conv2d(channels, channels, 3, 1, 1, vb.pp("conv1"))?,
            conv2: layers::conv2d(channels, channels, 1, 1, 0, vb.pp("conv2"))?,
        })
    }

    /// Apply.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let h = layers::apply(&self.conv1, &xs.relu()?)?;
        let h = layers::apply(&self.conv2, &h.relu()?)?;
        Ok((xs + h)?)
    }
}

/// `n` residual blocks `{prefix}.{i}` of `channels`.
fn res_stack(channels: usize, n: usize, vb: &VarBuilder, prefix: &str) -> Result<Vec<ResBlock>> {
    (0..n)
        .map(|i| ResBlock::new(channels, vb.pp(format!("{prefix}.{i}"))))
        .collect()
}

/// Images (B, C, S, S) → code vectors (B, D, S/4, S/4); a layered tokenizer's encoder makes
/// (B, 2D, S/4, S/4), the pattern vectors then the colour vectors.
pub struct Encoder {
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    res: Vec<ResBlock>,
    proj: Conv2d,
}

impl Encoder {
    /// Build from `vb` (`conv1`, `conv2`, `conv3`, `proj`).
    pub fn new(cfg: &VqVaeConfig, vb: VarBuilder) -> Result<Self> {
        let h = cfg.hidden;
        let vectors = if cfg.layers().is_some() { 2 } else { 1 };
        Ok(Self {
            conv1: layers::conv2d(cfg.in_channels, h.div_ceil(2), 4, 2, 1, vb.pp("conv1"))?,
            conv2: layers::conv2d(h.div_ceil(2), h, 4, 2, 1, vb.pp("conv2"))?,
            conv3: layers::conv2d(h, h, 3, 1, 1, vb.pp("conv3"))?,
            res: res_stack(h, cfg.res_blocks, &vb, "res")?,
            proj: layers::conv2d(h, vectors * cfg.embed_dim, 1, 1, 0, vb.pp("proj"))?,
        })
    }

    /// Encode.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let h = layers::apply(&self.conv1, xs)?.relu()?; // (B, H/2, S/2, S/2)
        let h = layers::apply(&self.conv2, &h)?.relu()?; // (B, H, G, G)
        let mut h = layers::apply(&self.conv3, &h)?.relu()?; // (B, H, G, G)
        for r in &self.res {
            h = r.forward(&h)?.relu()?; // (B, H, G, G)
        }
        layers::apply(&self.proj, &h) // (B, D, G, G)
    }
}

/// Code vectors (B, D, G, G) → images (B, C, 4G, 4G) (a layered tokenizer's: pattern
/// vectors → coverage logits (B, 1, 4G, 4G)).
pub struct Decoder {
    conv1: Conv2d,
    res: Vec<ResBlock>,
    conv2: Conv2d,
    conv3: Conv2d,
    out: Conv2d,
    upsample: Upsample,
}

impl Decoder {
    /// Build from `vb` (`conv1`, `conv2`, `conv3`, `out`): `out_channels` is C, or 1 for the
    /// coverage of a layered tokenizer.
    pub fn new(cfg: &VqVaeConfig, out_channels: usize, vb: VarBuilder) -> Result<Self> {
        let (h, h2) = (cfg.hidden, cfg.hidden.div_ceil(2));
        // pixel shuffle: each convolution makes the 4 sub-pixels' channels at once
        let up = match cfg.upsample {
            Upsample::Nearest => 1,
            Upsample::PixelShuffle => 4,
        };
        Ok(Self {
            conv1: layers::conv2d(cfg.embed_dim, h, 3, 1, 1, vb.pp("conv1"))?,
            res: res_stack(h, cfg.res_blocks, &vb, "res")?,
            conv2: layers::conv2d(h, up * h2, 3, 1, 1, vb.pp("conv2"))?,
            conv3: layers::conv2d(h2, up * h2, 3, 1, 1, vb.pp("conv3"))?,
            out: layers::conv2d(h2, out_channels, 3, 1, 1, vb.pp("out"))?,
            upsample: cfg.upsample,
        })
    }

    /// Decode.
    pub fn forward(&self, zs: &Tensor) -> Result<Tensor> {
        let (_, _, g, _) = zs.dims4()?;
        let mut h = layers::apply(&self.conv1, zs)?.relu()?; // (B, H, G, G)
        for r in &self.res {
            h = r.forward(&h)?.relu()?; // (B, H, G, G)
        }
        let h = match self.upsample {
            Upsample::Nearest => {
                let h = h.upsample_nearest2d(2 * g, 2 * g)?; // (B, H, 2G, 2G)
                let h = layers::apply(&self.conv2, &h)?.relu()?; // (B, H/2, 2G, 2G)
                let h = h.upsample_nearest2d(4 * g, 4 * g)?; // (B, H/2, S, S)
                layers::apply(&self.conv3, &h)?.relu()? // (B, H/2, S, S)
            }
            Upsample::PixelShuffle => {
                let h = pixel_shuffle(&layers::apply(&self.conv2, &h)?)?.relu()?; // (B, H/2, 2G, 2G)
                pixel_shuffle(&layers::apply(&self.conv3, &h)?)?.relu()? // (B, H/2, S, S)
            }
        };
        layers::apply(&self.out, &h) // (B, C, S, S)
    }
}

/// Depth-to-space ×2: (B, 4C, H, W) → (B, C, 2H, 2W), channel `4c + 2i + j` becoming the
/// pixel at row offset i, column offset j of channel c (PyTorch's `pixel_shuffle(x, 2)`).
pub fn pixel_shuffle(xs: &Tensor) -> Result<Tensor> {
    let (b, c4, h, w) = xs.dims4()?;
    if c4 % 4 != 0 {
        return Err(Error::shape(format!(
            "pixel shuffle: expected channels a multiple of 4, got {c4}"
        )));
    }
    let c = c4 / 4;
    Ok(xs
        .reshape((b, c, 2, 2, h, w))? // (B, C, 2, 2, H, W)
        .permute((0, 1, 4, 2, 5, 3))? // (B, C, H, 2, W, 2)
        .contiguous()?
        .reshape((b, c, 2 * h, 2 * w))?) // (B, C, 2H, 2W)
}

/// What the quantizer returns for a batch of code vectors.
pub struct Quantized {
    /// Straight-through quantized vectors (B, D, G, G): forward value the codebook entries,
    /// gradient passed unchanged to the encoder output.
    pub z_q: Tensor,
    /// Chosen codes (B, G, G), u32.
    pub codes: Tensor,
    /// Commitment loss `mean((z_e − sg(e))²)` (scalar, before β).
    pub commitment: Tensor,
}

/// The EMA codebook.
pub struct Quantizer {
    embed: Var,
    cluster_size: Var,
    embed_avg: Var,
    decay: f64,
    threshold: f64,
}

impl Quantizer {
    /// Build from `vb`: `embed` (K, D) uniform on ±1/K, `cluster_size` (K) ones, `embed_avg`
    /// (K, D) equal to `embed`; K = `size`, D and the EMA settings from `cfg`.
    pub fn new(cfg: &VqVaeConfig, size: usize, vb: VarBuilder) -> Result<Self> {
        let (k, d) = (size, cfg.embed_dim);
        let bound = 1.0 / k as f64;
        let embed = vb.get_with_hints((k, d), "embed", kiln_nn::init::uniform(bound))?;
        let cluster_size = vb.get_with_hints(k, "cluster_size", Init::Const(1.0))?;
        let embed_avg = match vb.contains_tensor("embed_avg") {
            true => vb.get((k, d), "embed_avg")?,
            false => {
                // Start the running sum at the codebook itself (usage 1 each), so that
                // embed = embed_avg / cluster_size holds from the first step.
                let t = vb.get_with_hints((k, d), "embed_avg", Init::Const(0.0))?;
                let v = Var::from_tensor(&t)?;
                v.set(&embed)?;
                t
            }
        };
        Ok(Self {
            // Backed by a VarMap these are the map's own variables (updated in place);
            // backed by a file they are copies (evaluation only).
            embed: Var::from_tensor(&embed)?,
            cluster_size: Var::from_tensor(&cluster_size)?,
            embed_avg: Var::from_tensor(&embed_avg)?,
            decay: cfg.decay,
            threshold: cfg.dead_code_threshold,
        })
    }

    /// A quantizer over a given codebook (K, D) (no EMA updates: decay and threshold 0).
    pub fn from_codebook(embed: &Tensor) -> Result<Self> {
        let (k, _) = embed.dims2()?;
        Ok(Self {
            embed: Var::from_tensor(&embed.copy()?)?,
            cluster_size: Var::from_tensor(&Tensor::ones(k, DType::F32, embed.device())?)?,
            embed_avg: Var::from_tensor(&embed.copy()?)?,
            decay: 0.0,
            threshold: 0.0,
        })
    }

    /// The codebook (K, D).
    pub fn codebook(&self) -> &Tensor {
        self.embed.as_tensor()
    }

    /// Codebook size K.
    pub fn size(&self) -> usize {
        self.embed.as_tensor().dims()[0]
    }

    /// Index of the nearest codebook entry for each row of `flat` (N, D): u32 (N).
    pub fn nearest(&self, flat: &Tensor) -> Result<Tensor> {
        let e = self.embed.as_tensor().detach();
        let (k, d) = e.dims2()?;
        if flat.rank() != 2 || flat.dims()[1] != d {
            return Err(Error::shape(format!(
                "quantizer with {k} codes of dimension {d}: expected vectors (N, {d}), got {:?}",
                flat.dims()
            )));
        }
        // ‖z − e‖² = ‖z‖² − 2 z·e + ‖e‖²; ‖z‖² is the same for every code, so drop it.
        let dots = flat.matmul(&e.t()?)?; // (N, D) @ (D, K) -> (N, K)
        let e2 = e.sqr()?.sum(1)?.unsqueeze(0)?; // (1, K)
        let dist = e2.broadcast_sub(&(dots * 2.0)?)?; // (N, K)
        Ok(dist.argmin(Dim::Minus1)?) // (N)
    }

    /// Codebook entries for `codes` of any shape (u32): shape `codes.dims() + [D]`.
    pub fn lookup(&self, codes: &Tensor) -> Result<Tensor> {
        let k = self.size();
        let flat = codes.flatten_all()?.to_dtype(DType::U32)?;
        if flat.elem_count() > 0 && flat.max(0)?.to_scalar::<u32>()? as usize >= k {
            return Err(Error::shape(format!(
                "code {} out of range for a codebook of {k}",
                flat.max(0)?.to_scalar::<u32>()?
            )));
        }
        let e = self.embed.as_tensor().detach().index_select(&flat, 0)?; // (N, D)
        let mut dims = codes.dims().to_vec();
        dims.push(e.dims()[1]);
        Ok(e.reshape(dims)?)
    }

    /// Quantize `z_e` (B, D, G, G); in training, update the EMA codebook afterwards.
    pub fn forward(&self, z_e: &Tensor, mode: &Mode) -> Result<Quantized> {
        let (b, d, g, g2) = z_e.dims4()?;
        let flat = z_e.permute((0, 2, 3, 1))?.reshape((b * g * g2, d))?; // (N, D)
        let codes = self.nearest(&flat.detach())?; // (N)
        let e = self.lookup(&codes)?; // (N, D), no gradient
        let commitment = (&flat - &e)?.sqr()?.mean_all()?;
        let st = (&flat + (&e - &flat)?.detach())?; // straight-through (N, D)
        let z_q = st
            .reshape((b, g, g2, d))?
            .permute((0, 3, 1, 2))?
            .contiguous()?; // (B, D, G, G)
        if mode.is_train() {
            self.ema_update(&flat.detach(), &codes, mode)?;
        }
        Ok(Quantized {
            z_q,
            codes: codes.reshape((b, g, g2))?,
            commitment,
        })
    }

    /// EMA update (van den Oord et al., appendix A.1) with Laplace smoothing, then dead-code
    /// restarts from the generator of `mode`.
    fn ema_update(&self, flat: &Tensor, codes: &Tensor, mode: &Mode) -> Result<()> {
        let (n, d) = flat.dims2()?;
        let k = self.size();
        let z: Vec<f32> = flat.flatten_all()?.to_vec1()?;
        let idx: Vec<u32> = codes.to_vec1()?;
        let mut counts = vec![0f64; k];
        let mut sums = vec![0f64; k * d];
        for (i, &c) in idx.iter().enumerate() {
            let c = c as usize;
            counts[c] += 1.0;
            for j in 0..d {
                sums[c * d + j] += z[i * d + j] as f64;
            }
        }
        let m = self.decay;
        let mut cs: Vec<f64> = to_f64(self.cluster_size.as_tensor())?;
        let mut avg: Vec<f64> = to_f64(self.embed_avg.as_tensor())?;
        for c in 0..k {
            cs[c] = m * cs[c] + (1.0 - m) * counts[c];
        }
        for (a, s) in avg.iter_mut().zip(&sums) {
            *a = m * *a + (1.0 - m) * s;
        }
        // Dead codes move onto encoder outputs of this batch, drawn with probability in
        // proportion to their squared distance from their code (k-means++ seeding): the
        // vectors the codebook serves worst, such as the rare edges of small objects, rather
        // than the plentiful background it already covers.
        if self.threshold > 0.0 {
            let dead: Vec<usize> = (0..k).filter(|&c| cs[c] < self.threshold).collect();
            let e: Vec<f32> = self.embed.as_tensor().flatten_all()?.to_vec1()?;
            let mut cumulative = Vec::with_capacity(n);
            let mut total = 0f64;
            for (i, &c) in idx.iter().enumerate() {
                let c = c as usize;
                total += (0..d)
                    .map(|j| (z[i * d + j] as f64 - e[c * d + j] as f64).powi(2))
                    .sum::<f64>();
                cumulative.push(total);
            }
            let picks: Vec<usize> = mode
                .with_rng(|rng| {
                    dead.iter()
                        .map(|_| {
                            if total > 0.0 {
                                let u = rng.random::<f64>() * total;
                                cumulative.partition_point(|&w| w <= u).min(n - 1)
                            } else {
                                rng.random_range(0..n)
                            }
                        })
                        .collect()
                })
                .unwrap_or_default();
            for (&c, &i) in dead.iter().zip(&picks) {
                cs[c] = 1.0;
                for j in 0..d {
                    avg[c * d + j] = z[i * d + j] as f64;
                }
            }
        }
        let total: f64 = cs.iter().sum();
        let eps = 1e-5;
        let mut embed = vec![0f32; k * d];
        for c in 0..k {
            let smoothed = (cs[c] + eps) / (total + k as f64 * eps) * total;
            for j in 0..d {
                embed[c * d + j] = (avg[c * d + j] / smoothed) as f32;
            }
        }
        let dev = flat.device();
        let f32s = |v: Vec<f64>| v.into_iter().map(|x| x as f32).collect::<Vec<f32>>();
        self.cluster_size
            .set(&Tensor::from_vec(f32s(cs), k, dev)?)?;
        self.embed_avg
            .set(&Tensor::from_vec(f32s(avg), (k, d), dev)?)?;
        self.embed.set(&Tensor::from_vec(embed, (k, d), dev)?)?;
        Ok(())
    }

    /// The EMA usage of each code (vectors per batch).
    pub fn cluster_size(&self) -> &Tensor {
        self.cluster_size.as_tensor()
    }
}

fn to_f64(t: &Tensor) -> Result<Vec<f64>> {
    Ok(t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?)
}

/// What the whole model returns for a batch of images.
pub struct VqOutput {
    /// Reconstructions (B, C, S, S).
    pub recon: Tensor,
    /// Codes (B, G, G), u32.
    pub codes: Tensor,
    /// Commitment loss (scalar, before β).
    pub commitment: Tensor,
}

/// The colour half of a layered tokenizer: its codebook and the head that turns a colour
/// vector into its patch's foreground and background colours.
struct ColourLayer {
    quantizer: Quantizer,
    conv1: Conv2d,
    conv2: Conv2d,
}

impl ColourLayer {
    /// Colour vectors (B, D, G, G) → foreground and background (B, 2C, G, G), each patch on
    /// its own (1×1 convolutions).
    fn colours(&self, zc: &Tensor) -> Result<Tensor> {
        let h = layers::apply(&self.conv1, zc)?.relu()?; // (B, H, G, G)
        layers::apply(&self.conv2, &h) // (B, 2C, G, G)
    }
}

/// The VQ-VAE.
pub struct VqVae {
    config: VqVaeConfig,
    encoder: Encoder,
    quantizer: Quantizer,
    colour: Option<ColourLayer>,
    decoder: Decoder,
}

impl VqVae {
    /// Build from `vb` (`encoder.*`, `quantizer.*`, `decoder.*`; a layered tokenizer also
    /// `colour_quantizer.*` and `colour.conv1`, `colour.conv2`).
    pub fn new(config: VqVaeConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let (quantizer, colour, out) = match config.layers() {
            None => (
                Quantizer::new(&config, config.codebook_size, vb.pp("quantizer"))?,
                None,
                config.in_channels,
            ),
            Some((patterns, colours)) => {
                let (d, h, c) = (config.embed_dim, config.hidden, config.in_channels);
                let layer = ColourLayer {
                    quantizer: Quantizer::new(&config, colours, vb.pp("colour_quantizer"))?,
                    conv1: layers::conv2d(d, h, 1, 1, 0, vb.pp("colour.conv1"))?,
                    conv2: layers::conv2d(h, 2 * c, 1, 1, 0, vb.pp("colour.conv2"))?,
                };
                let q = Quantizer::new(&config, patterns, vb.pp("quantizer"))?;
                (q, Some(layer), 1)
            }
        };
        Ok(Self {
            encoder: Encoder::new(&config, vb.pp("encoder"))?,
            quantizer,
            colour,
            decoder: Decoder::new(&config, out, vb.pp("decoder"))?,
            config,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &VqVaeConfig {
        &self.config
    }

    /// The quantizer (a layered tokenizer's pattern codebook).
    pub fn quantizer(&self) -> &Quantizer {
        &self.quantizer
    }

    /// A layered tokenizer's colour codebook.
    pub fn colour_quantizer(&self) -> Option<&Quantizer> {
        self.colour.as_ref().map(|c| &c.quantizer)
    }

    fn check(&self, xs: &Tensor) -> Result<Tensor> {
        let (c, s) = (self.config.in_channels, self.config.image_size);
        if xs.rank() != 4 || xs.dims()[1..] != [c, s, s] {
            return Err(Error::shape(format!(
                "VQ-VAE: expected images (batch, {c}, {s}, {s}), got {:?}",
                xs.dims()
            )));
        }
        Ok(xs.to_dtype(DType::F32)?)
    }

    /// The picture (B, C, S, S) of quantized vectors (B, D, G, G), and for a layered tokenizer
    /// colour vectors (B, D, G, G): coverage `a = sigmoid(decoder(pattern))` blends each
    /// patch's two colours, `bg + a·(fg − bg)`.
    fn paint(&self, z: &Tensor, zc: Option<&Tensor>) -> Result<Tensor> {
        let (Some(layer), Some(zc)) = (&self.colour, zc) else {
            return self.decoder.forward(z); // (B, C, S, S)
        };
        let (c, s) = (self.config.in_channels, self.config.image_size);
        let a = candle_nn::ops::sigmoid(&self.decoder.forward(z)?)?; // (B, 1, S, S)
        let colours = layer.colours(zc)?.upsample_nearest2d(s, s)?; // (B, 2C, S, S)
        let (fg, bg) = (colours.narrow(1, 0, c)?, colours.narrow(1, c, c)?); // (B, C, S, S)
        Ok(bg.add(&(fg - &bg)?.broadcast_mul(&a)?)?) // (B, C, S, S)
    }

    /// The pattern and colour halves of encoder outputs (B, 2D, G, G) (all of them, and `None`,
    /// for a plain tokenizer).
    fn halves(&self, z_e: Tensor) -> Result<(Tensor, Option<Tensor>)> {
        if self.colour.is_none() {
            return Ok((z_e, None));
        }
        let d = self.config.embed_dim;
        Ok((z_e.narrow(1, 0, d)?, Some(z_e.narrow(1, d, d)?)))
    }

    /// Encode, quantize (updating the codebook in training) and decode.
    pub fn forward(&self, xs: &Tensor, mode: &Mode) -> Result<VqOutput> {
        let xs = self.check(xs)?;
        let (zp, zc) = self.halves(self.encoder.forward(&xs)?)?; // (B, D, G, G) each
        let q = self.quantizer.forward(&zp, mode)?;
        let Some((layer, zc)) = self.colour.as_ref().zip(zc) else {
            let recon = self.paint(&q.z_q, None)?; // (B, C, S, S)
            return Ok(VqOutput {
                recon,
                codes: q.codes,
                commitment: q.commitment,
            });
        };
        let qc = layer.quantizer.forward(&zc, mode)?;
        let recon = self.paint(&q.z_q, Some(&qc.z_q))?; // (B, C, S, S)
        let codes = join_codes(
            q.codes.flatten_all()?.to_vec1::<u32>()?,
            &qc.codes.flatten_all()?.to_vec1::<u32>()?,
            layer.quantizer.size(),
        );
        Ok(VqOutput {
            recon,
            codes: Tensor::from_vec(codes, q.codes.dims(), xs.device())?,
            commitment: (q.commitment + qc.commitment)?,
        })
    }

    /// Codes (B, G, G), u32, of images (B, C, S, S) in [0, 1].
    pub fn encode(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.check(xs)?;
        let (zp, zc) = self.halves(self.encoder.forward(&xs)?)?; // (B, D, G, G) each
        let nearest = |q: &Quantizer, z: &Tensor| -> Result<Vec<u32>> {
            let (b, d, g, _) = z.dims4()?;
            let flat = z.permute((0, 2, 3, 1))?.reshape((b * g * g, d))?; // (N, D)
            Ok(q.nearest(&flat)?.to_vec1::<u32>()?)
        };
        let (b, _, g, _) = zp.dims4()?;
        let mut codes = nearest(&self.quantizer, &zp)?;
        if let Some((layer, zc)) = self.colour.as_ref().zip(zc) {
            let colours = nearest(&layer.quantizer, &zc)?;
            codes = join_codes(codes, &colours, layer.quantizer.size());
        }
        Ok(Tensor::from_vec(codes, (b, g, g), xs.device())?)
    }

    /// Images (B, C, S, S) for codes (B, G, G) (or (B, G·G)), clamped to [0, 1].
    pub fn decode(&self, codes: &Tensor) -> Result<Tensor> {
        let g = self.config.grid();
        let b = codes.dims().first().copied().unwrap_or(0);
        if codes.elem_count() != b * g * g || b == 0 {
            return Err(Error::shape(format!(
                "VQ-VAE decode: expected codes (batch, {g}, {g}), got {:?}",
                codes.dims()
            )));
        }
        let k = self.config.codebook_size;
        let flat = codes
            .flatten_all()?
            .to_dtype(DType::U32)?
            .to_vec1::<u32>()?;
        if let Some(&bad) = flat.iter().find(|&&c| c as usize >= k) {
            return Err(Error::shape(format!(
                "code {bad} out of range for a codebook of {k}"
            )));
        }
        let grid = |q: &Quantizer, ids: Vec<u32>| -> Result<Tensor> {
            let ids = Tensor::from_vec(ids, (b, g, g), codes.device())?;
            let e = q.lookup(&ids)?; // (B, G, G, D)
            Ok(e.permute((0, 3, 1, 2))?.contiguous()?) // (B, D, G, G)
        };
        let picture = match &self.colour {
            None => self.paint(&grid(&self.quantizer, flat)?, None)?,
            Some(layer) => {
                let cc = layer.quantizer.size() as u32;
                let patterns = flat.iter().map(|&c| c / cc).collect();
                let colours = flat.iter().map(|&c| c % cc).collect();
                let zc = grid(&layer.quantizer, colours)?;
                self.paint(&grid(&self.quantizer, patterns)?, Some(&zc))?
            }
        };
        Ok(picture.clamp(0f32, 1f32)?)
    }
}

impl TrainStep for VqVae {
    /// Images (B, C, S, S) in [0, 1] and anything with B rows (ignored: the target is the
    /// image itself), so that a `TensorData` of images and labels serves as it is.
    type Batch = (Tensor, Tensor);

    fn loss(&self, (x, _): &Self::Batch, mode: &Mode) -> Result<Tensor> {
        let out = self.forward(x, mode)?;
        let x = x.to_dtype(DType::F32)?;
        let mut rec = loss::mse(&out.recon, &x)?;
        if self.config.edge_weight > 0.0 {
            let s = self.config.image_size;
            // neighbouring pixels' differences along rows (axis 2) and columns (axis 3)
            let diff = |t: &Tensor, axis: usize| -> Result<Tensor> {
                Ok((t.narrow(axis, 1, s - 1)? - t.narrow(axis, 0, s - 1)?)?)
            };
            let edges = (loss::mse(&diff(&out.recon, 2)?, &diff(&x, 2)?)?
                + loss::mse(&diff(&out.recon, 3)?, &diff(&x, 3)?)?)?;
            rec = (rec + (edges * self.config.edge_weight)?)?;
        }
        Ok((rec + (out.commitment * self.config.beta)?)?)
    }

    fn evaluate(&self, batch: &Self::Batch) -> Result<EvalSums> {
        let n = batch.0.dim(0)?;
        let l = self.loss(batch, &Mode::eval())?.to_scalar::<f32>()? as f64;
        Ok(EvalSums {
            loss_sum: l * n as f64,
            count: n,
            correct: None,
        })
    }
}

/// Reconstruction quality and codebook use over a set of images.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct ReconstructionStats {
    /// Mean squared error per pixel value, images in [0, 1] (decoded output clamped).
    pub mse: f64,
    /// Peak signal-to-noise ratio `10·log10(1 / mse)` in dB.
    pub psnr: f64,
    /// Distinct codes used.
    pub codes_used: usize,
    /// Codebook size K.
    pub codebook_size: usize,
    /// Perplexity `exp(entropy)` of the code histogram (K when all are used equally).
    pub perplexity: f64,
}

/// Encode and decode `images` (N, C, S, S) in batches of `batch_size` and measure.
pub fn reconstruction_stats(
    model: &VqVae,
    images: &Tensor,
    batch_size: usize,
) -> Result<ReconstructionStats> {
    let n = images.dim(0)?;
    let k = model.config.codebook_size;
    let mut counts = vec![0usize; k];
    let mut sq = 0f64;
    let mut values = 0usize;
    let mut start = 0;
    while start < n {
        let len = batch_size.max(1).min(n - start);
        let x = images.narrow(0, start, len)?.to_dtype(DType::F32)?;
        let codes = model.encode(&x)?;
        for c in codes.flatten_all()?.to_vec1::<u32>()? {
            counts[c as usize] += 1;
        }
        let recon = model.decode(&codes)?;
        sq += (recon - &x)?
            .sqr()?
            .sum_all()?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()?;
        values += x.elem_count();
        start += len;
    }
    let total: usize = counts.iter().sum();
    let entropy: f64 = counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = c as f64 / total.max(1) as f64;
            -p * p.ln()
        })
        .sum();
    let mse = sq / values.max(1) as f64;
    Ok(ReconstructionStats {
        mse,
        psnr: 10.0 * (1.0 / mse.max(1e-12)).log10(),
        codes_used: counts.iter().filter(|&&c| c > 0).count(),
        codebook_size: k,
        perplexity: entropy.exp(),
    })
}

/// Pictures as bytes (`n · S · S · C`, channels last, as kiln-data makes them) to a tensor
/// (n, C, S, S) in [0, 1].
pub fn images_to_tensor(bytes: &[u8], n: usize, channels: usize, side: usize) -> Result<Tensor> {
    if bytes.len() != n * side * side * channels {
        return Err(Error::shape(format!(
            "{n} pictures of {side}×{side}×{channels} need {} bytes, got {}",
            n * side * side * channels,
            bytes.len()
        )));
    }
    let t = Tensor::from_vec(bytes.to_vec(), (n, side, side, channels), &Device::Cpu)?; // (n, S, S, C)
    Ok((t.permute((0, 3, 1, 2))?.to_dtype(DType::F32)? / 255.0)?) // (n, C, S, S)
}

/// A tensor (n, C, S, S) in [0, 1] back to bytes, channels last (clamped and rounded).
pub fn tensor_to_images(t: &Tensor) -> Result<Vec<u8>> {
    let t = (t.clamp(0f32, 1f32)? * 255.0)?.round()?; // (n, C, S, S)
    let v: Vec<f32> = t.permute((0, 2, 3, 1))?.flatten_all()?.to_vec1()?; // (n, S, S, C)
    Ok(v.into_iter().map(|x| x as u8).collect())
}
