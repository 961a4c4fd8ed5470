//! A small CLIP: a contrastive text–image model that scores how well a caption fits a picture,
//! the reranker of the text-to-image feature (DALL-E draws N candidates and keeps the ones CLIP
//! scores highest).
//!
//! Radford et al. 2021, "Learning Transferable Visual Models From Natural Language
//! Supervision", shrunk to 32×32 pictures and word-level captions; optionally with NegCLIP's
//! hard-negative captions (Yuksekgonul et al. 2023, "When and why vision-language models behave
//! like bags-of-words").
//!
//! * Text encoder: a small causal [`Gpt2`] over the caption's words (`text.*`), right-padded
//!   with id 0 and masked; the final hidden state (after `ln_f`) at the last real word, which
//!   has seen the whole caption in order (so "a red circle and a blue square" and "a blue
//!   circle and a red square" differ), projected by `text_projection` (no bias) to D.
//! * Image encoder: `conv1` 3→C 3×3 → ReLU → max-pool 2 (32 → 16) → `conv2` C→2C → ReLU →
//!   max-pool (→ 8) → `conv3` 2C→2C → ReLU → max-pool (→ 4) → flatten (positions kept) →
//!   `fc` → ReLU → `visual_projection` to D.
//! * Both embeddings are L2-normalised; `logit_scale` (a scalar, the log of the inverse
//!   temperature, clamped at ln 100 as in CLIP) scales their cosine similarities into logits.
//! * Or, with [`ImageHead::WhereWhat`], the picture is not pooled into one vector: `fc` and
//!   `visual_projection` run on each of conv3's 8×8 locations (a unit vector per location),
//!   and the caption gives, beside its unit "what" vector, a "where" map over the 64
//!   locations (`text_where`, a softmax). The similarity is the where-weighted mean of the
//!   locations' cosines with the what vector, still in [−1, 1]. Every location reads shapes
//!   with the same weights, so a square in a cell where training never showed one is seen
//!   as a square, which a flattened picture cannot promise. A caption of several fully
//!   described objects is scored as the mean of its objects' one-object captions
//!   ([`Clip::score`]).
//! * Loss ([`clip_loss`]): symmetric InfoNCE over the batch, the mean of the cross-entropy of
//!   each picture against every caption and of each caption against every picture. With hard
//!   negatives the batch holds one extra caption per picture (a caption with one attribute
//!   changed); these only add columns to the picture→caption side.
//!
//! Trained by `kiln train clip --dataset shapes --out runs/clip`; the default shapes reranker
//! ships in `assets/default-image/clip/`. [`measure`] holds the retrieval and hard-negative
//! measures.
//!
//! Legend: B pictures, M captions (B, or 2B with hard negatives), T words, C text width,
//! D embedding dimension.

pub mod measure;

use std::path::Path;

use candle_core::{DType, Device, Tensor, Var, D as Dim};
use candle_nn::{Init, Linear, VarBuilder, VarMap};
use kiln_core::folder::ModelMeta;
use kiln_data::shapes::{Vocabulary, IMAGE_SIZE};
use kiln_nn::init::SeededVarMap;
use kiln_nn::layers::{self, Conv2d, Mode};
use kiln_nn::ops::{self, Pool2d};
use kiln_nn::{loss, Error, EvalSums, Result, TrainStep};

use crate::gpt2::{Gpt2, Gpt2Config};

/// The `kind` of a CLIP model folder.
pub const CLIP_KIND: &str = "clip";

/// The largest logit scale, `ln 100` (CLIP clamps the learned scale there).
pub const MAX_LOGIT_SCALE: f64 = 4.605_170_185_988_092;

/// Bytes of one picture: 32 · 32 · 3, channels last.
pub const PICTURE_BYTES: usize = IMAGE_SIZE * IMAGE_SIZE * 3;

/// CLIP hyperparameters (`config.json` keys, under `model`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ClipConfig {
    /// The caption vocabulary, `<pad>` first (default: kiln-data's `Vocabulary::shapes()`).
    pub words: Vec<String>,
    /// Longest caption in words, the text encoder's positions (default 32).
    pub max_words: usize,
    /// Width C of the text transformer (default 64).
    pub text_width: usize,
    /// Blocks of the text transformer (default 3).
    pub text_layers: usize,
    /// Attention heads of the text transformer; must divide `text_width` (default 4).
    pub text_heads: usize,
    /// Channels of the first image convolution (the others have twice as many) (default 32).
    pub channels: usize,
    /// Width of the image encoder's hidden linear layer (default 256).
    pub image_hidden: usize,
    /// Dimension D of the shared embedding (default 64).
    pub embed_dim: usize,
    /// Initial logit scale, `ln(1 / temperature)`, in [0, ln 100] (default ln(1/0.07) ≈ 2.659).
    pub init_logit_scale: f64,
    /// Dropout of the text transformer in training, in [0, 1) (default 0).
    pub dropout: f64,
    /// How the picture meets the caption (default [`ImageHead::Flat`]).
    pub image_head: ImageHead,
}

/// How a [`Clip`] compares a picture with a caption.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageHead {
    /// CLIP's: the picture's feature map flattened into one embedding, compared by cosine.
    #[default]
    Flat,
    /// The caption's "where" map over conv3's 8×8 locations weighs each location's cosine
    /// with the caption's "what" vector (see the module docs).
    WhereWhat,
}

/// Locations of the picture map a [`ImageHead::WhereWhat`] caption attends over (8×8).
pub const WHERE_LOCATIONS: usize = 64;

impl Default for ClipConfig {
    fn default() -> Self {
        Self {
            words: Vocabulary::shapes().words().to_vec(),
            max_words: 32,
            text_width: 64,
            text_layers: 3,
            text_heads: 4,
            channels: 32,
            image_hidden: 256,
            embed_dim: 64,
            init_logit_scale: (1.0f64 / 0.07).ln(),
            dropout: 0.0,
            image_head: ImageHead::Flat,
        }
    }
}

impl ClipConfig {
    /// Check every option, naming the one out of range.
    pub fn validate(&self) -> Result<()> {
        if self.vocabulary().len() < 2 {
            return Err(Error::param(
                "words",
                format!("{:?}", self.words),
                "at least one word besides <pad>",
            ));
        }
        for (name, v) in [
            ("max_words", self.max_words),
            ("text_width", self.text_width),
            ("text_layers", self.text_layers),
            ("text_heads", self.text_heads),
            ("channels", self.channels),
            ("image_hidden", self.image_hidden),
            ("embed_dim", self.embed_dim),
        ] {
            if v == 0 {
                return Err(Error::param(name, v, "≥ 1"));
            }
        }
        if !self.text_width.is_multiple_of(self.text_heads) {
            return Err(Error::param(
                "text_heads",
                self.text_heads,
                &format!("a divisor of text_width = {}", self.text_width),
            ));
        }
        if !(0.0..=MAX_LOGIT_SCALE).contains(&self.init_logit_scale) {
            return Err(Error::param(
                "init_logit_scale",
                self.init_logit_scale,
                "in [0, ln 100 ≈ 4.605]",
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::param("dropout", self.dropout, "in [0, 1)"));
        }
        Ok(())
    }

    /// The caption vocabulary made from `words`.
    pub fn vocabulary(&self) -> Vocabulary {
        Vocabulary::new(&self.words)
    }

    /// The text transformer's GPT-2 configuration.
    pub fn text_config(&self) -> Gpt2Config {
        Gpt2Config {
            vocab_size: self.vocabulary().len(),
            n_positions: self.max_words,
            n_embd: self.text_width,
            n_layer: self.text_layers,
            n_head: self.text_heads,
            resid_pdrop: self.dropout,
            embd_pdrop: self.dropout,
            attn_pdrop: self.dropout,
            bos_token_id: None,
            eos_token_id: None,
            architectures: None,
            ..Gpt2Config::default()
        }
    }
}

/// The contrastive text–image model.
pub struct Clip {
    config: ClipConfig,
    vocab: Vocabulary,
    text: Gpt2,
    text_projection: Linear,
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    fc: Linear,
    visual_projection: Linear,
    /// The caption's where map ([`ImageHead::WhereWhat`] only).
    text_where: Option<Linear>,
    logit_scale: Tensor,
    vars: VarMap,
}

impl Clip {
    /// A fresh model whose weights are created in `vars` (seeded), for training.
    pub fn new(config: ClipConfig, vars: &SeededVarMap) -> Result<Self> {
        Self::build(config, vars.var_builder(), vars.var_map().clone())
    }

    /// Build from `vb`; `vars` is the map holding the weights (saved by [`Clip::save`]).
    fn build(config: ClipConfig, vb: VarBuilder, vars: VarMap) -> Result<Self> {
        config.validate()?;
        let (c, d) = (config.channels, config.embed_dim);
        let text = Gpt2::new(&config.text_config(), vb.pp("text"))?;
        let logit_scale =
            vb.get_with_hints((), "logit_scale", Init::Const(config.init_logit_scale))?;
        Ok(Self {
            vocab: config.vocabulary(),
            text,
            text_projection: layers::linear_no_bias(
                config.text_width,
                d,
                vb.pp("text_projection"),
            )?,
            conv1: layers::conv2d(3, c, 3, 1, 1, vb.pp("conv1"))?,
            conv2: layers::conv2d(c, 2 * c, 3, 1, 1, vb.pp("conv2"))?,
            conv3: layers::conv2d(2 * c, 2 * c, 3, 1, 1, vb.pp("conv3"))?,
            fc: match config.image_head {
                ImageHead::Flat => layers::linear(2 * c * 4 * 4, config.image_hidden, vb.pp("fc"))?,
                ImageHead::WhereWhat => layers::linear(2 * c, config.image_hidden, vb.pp("fc"))?,
            },
            visual_projection: layers::linear(config.image_hidden, d, vb.pp("visual_projection"))?,
            text_where: match config.image_head {
                ImageHead::Flat => None,
                ImageHead::WhereWhat => Some(layers::linear(
                    config.text_width,
                    WHERE_LOCATIONS,
                    vb.pp("text_where"),
                )?),
            },
            logit_scale,
            config,
            vars,
        })
    }

    /// Load a model folder written by [`Clip::save`]. Errors name the folder and what is
    /// wrong: missing folder, another kind of model, a truncated or corrupt
    /// `model.safetensors`, a missing tensor or one of the wrong shape.
    pub fn load(dir: &Path) -> Result<Clip> {
        let (folder, tensors) = crate::folder::load_tensors(dir, CLIP_KIND)?;
        Self::from_parts(dir, folder, tensors)
    }

    /// Build from the bytes of a folder's `config.json` and `model.safetensors` (a model
    /// compiled into the binary); `name` labels errors.
    pub fn from_bytes(name: &str, config_json: &[u8], safetensors: &[u8]) -> Result<Clip> {
        let dir = Path::new(name);
        let folder: kiln_core::folder::FolderConfig = serde_json::from_slice(config_json)
            .map_err(|e| kiln_core::Error::folder(dir, format!("config.json: {e}")))?;
        if folder.kind != CLIP_KIND {
            return Err(kiln_core::Error::folder(
                dir,
                format!("holds a {:?} model, expected {CLIP_KIND:?}", folder.kind),
            )
            .into());
        }
        let tensors =
            crate::folder::tensor_map(&kiln_core::folder::Tensors::from_bytes(safetensors)?)?;
        Self::from_parts(dir, folder, tensors)
    }

    /// Build from a folder's config and tensors; `dir` labels errors.
    fn from_parts(
        dir: &Path,
        folder: kiln_core::folder::FolderConfig,
        tensors: std::collections::HashMap<String, Tensor>,
    ) -> Result<Clip> {
        let config: ClipConfig = serde_json::from_value(folder.model).map_err(|e| {
            kiln_core::Error::folder(dir, format!("config.json: bad CLIP settings: {e}"))
        })?;
        // The weights become the variables of a map, so that a loaded model saves (and could
        // train) like a fresh one. Building asks the map for every tensor: one of the wrong
        // shape is an error, one the file lacks is created, which the count below catches.
        let vars = VarMap::new();
        {
            let mut data = vars
                .data()
                .lock()
                .map_err(|_| Error::shape("variable map lock poisoned"))?;
            for (name, t) in tensors {
                data.insert(name, Var::from_tensor(&t)?);
            }
        }
        let names = |v: &VarMap| -> Result<Vec<String>> {
            let data = v
                .data()
                .lock()
                .map_err(|_| Error::shape("variable map lock poisoned"))?;
            Ok(data.keys().cloned().collect())
        };
        let before = names(&vars)?;
        let vb = VarBuilder::from_varmap(&vars, DType::F32, &Device::Cpu);
        let model = Self::build(config, vb, vars.clone()).map_err(|e| {
            kiln_core::Error::folder(
                dir,
                format!("model.safetensors does not fit config.json: {e}"),
            )
        })?;
        let mut missing: Vec<String> = names(&vars)?
            .into_iter()
            .filter(|n| !before.contains(n))
            .collect();
        if !missing.is_empty() {
            missing.sort();
            return Err(kiln_core::Error::folder(
                dir,
                format!(
                    "model.safetensors lacks the tensor(s) {}",
                    missing.join(", ")
                ),
            )
            .into());
        }
        Ok(model)
    }

    /// Save into the model folder `dir` (created if missing): `config.json` (kind `clip`,
    /// [`ClipConfig`] with the vocabulary) and `model.safetensors`, each written atomically.
    pub fn save(&self, dir: &Path) -> Result<()> {
        let meta = ModelMeta {
            features: Vec::new(),
            target: "caption-picture similarity".into(),
            classes: None,
            preprocessing: None,
        };
        let config = serde_json::to_value(&self.config)
            .map_err(|e| Error::shape(format!("cannot encode the CLIP config: {e}")))?;
        crate::folder::save(dir, CLIP_KIND, &meta, config, &self.vars)
    }

    /// The hyperparameters.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// The caption vocabulary.
    pub fn vocabulary(&self) -> &Vocabulary {
        &self.vocab
    }

    /// The learned logit scale `exp(logit_scale)`, clamped at 100.
    pub fn scale(&self) -> Result<f32> {
        Ok(self.scale_tensor()?.to_scalar::<f32>()?)
    }

    fn scale_tensor(&self) -> Result<Tensor> {
        Ok(self
            .logit_scale
            .clamp(f32::MIN, MAX_LOGIT_SCALE as f32)?
            .exp()?)
    }

    /// Word ids u32 (M, T) of `captions`, right-padded with 0 to the longest; an error names
    /// unknown words, or a caption longer than `max_words`.
    pub fn tokenize<S: AsRef<str>>(&self, captions: &[S]) -> Result<Tensor> {
        let mut rows = Vec::with_capacity(captions.len());
        for c in captions {
            let ids = self.vocab.encode(c.as_ref())?;
            if ids.len() > self.config.max_words {
                return Err(Error::shape(format!(
                    "the caption {:?} has {} words; this CLIP reads at most {}",
                    c.as_ref(),
                    ids.len(),
                    self.config.max_words
                )));
            }
            rows.push(ids);
        }
        let t = rows.iter().map(Vec::len).max().unwrap_or(0).max(1);
        let flat: Vec<u32> = rows
            .iter()
            .flat_map(|r| r.iter().copied().chain(std::iter::repeat_n(0, t - r.len())))
            .collect();
        Ok(Tensor::from_vec(flat, (rows.len(), t), &Device::Cpu)?)
    }

    /// Caption embeddings for word ids (M, T) right-padded with 0: unit-length (M, D), or with
    /// [`ImageHead::WhereWhat`] (M, D + 64), the unit what vector then the where map.
    pub fn encode_text(&self, ids: &Tensor, mode: &Mode) -> Result<Tensor> {
        let (m, t) = match ids.dims() {
            &[m, t] if m > 0 && t > 0 => (m, t),
            d => {
                return Err(Error::shape(format!(
                    "CLIP: expected caption ids (captions, words), got {d:?}"
                )))
            }
        };
        let ids = ids.to_dtype(DType::U32)?;
        let rows: Vec<Vec<u32>> = ids.to_vec2()?;
        let lens: Vec<usize> = rows
            .iter()
            .map(|r| r.iter().filter(|&&i| i != 0).count())
            .collect();
        if let Some(i) = lens.iter().position(|&l| l == 0) {
            return Err(Error::shape(format!("CLIP: caption {i} has no words")));
        }
        // trim the padding every caption shares
        let t_used = lens.iter().copied().max().unwrap_or(1);
        if t_used > self.config.max_words {
            return Err(Error::shape(format!(
                "CLIP: a caption has {t_used} words; this CLIP reads at most {}",
                self.config.max_words
            )));
        }
        let ids = ids.narrow(1, 0, t_used.min(t))?; // (M, T)
        let mask = ids.ne(0u32)?.to_dtype(DType::F32)?; // (M, T)
        let h = self.text.hidden(&ids, None, Some(&mask), mode)?; // (M, T, C)
        let last: Vec<u32> = lens
            .iter()
            .enumerate()
            .map(|(i, &l)| (i * t_used + l - 1) as u32)
            .collect();
        let last = Tensor::from_vec(last, m, &Device::Cpu)?;
        let h = h
            .reshape((m * t_used, self.config.text_width))? // (M·T, C)
            .index_select(&last, 0)?; // (M, C)
        let what = normalize(&layers::apply(&self.text_projection, &h)?)?; // (M, D)
        match &self.text_where {
            None => Ok(what),
            Some(w) => {
                let place = ops::softmax_last_dim(&layers::apply(w, &h)?)?; // (M, 64)
                Ok(Tensor::cat(&[&what, &place], 1)?) // (M, D + 64)
            }
        }
    }

    /// Picture embeddings for pictures (B, 3, 32, 32) in [0, 1]: unit-length (B, D), or with
    /// [`ImageHead::WhereWhat`] one unit vector per location (B, 64, D).
    pub fn encode_images(&self, xs: &Tensor) -> Result<Tensor> {
        if xs.rank() != 4 || xs.dims()[1..] != [3, IMAGE_SIZE, IMAGE_SIZE] {
            return Err(Error::shape(format!(
                "CLIP: expected pictures (batch, 3, 32, 32), got {:?}",
                xs.dims()
            )));
        }
        let pool = Pool2d::square(2, 2, 0);
        let h = layers::apply(&self.conv1, &xs.to_dtype(DType::F32)?)?.relu()?; // (B, C, 32, 32)
        let h = ops::max_pool2d(&h, pool)?; // (B, C, 16, 16)
        let h = layers::apply(&self.conv2, &h)?.relu()?; // (B, 2C, 16, 16)
        let h = ops::max_pool2d(&h, pool)?; // (B, 2C, 8, 8)
        let h = layers::apply(&self.conv3, &h)?.relu()?; // (B, 2C, 8, 8)
        if self.config.image_head == ImageHead::WhereWhat {
            let (b, c2) = (h.dim(0)?, h.dim(1)?);
            let h = h
                .permute((0, 2, 3, 1))? // (B, 8, 8, 2C)
                .reshape((b * WHERE_LOCATIONS, c2))?;
            let h = layers::apply(&self.fc, &h)?.relu()?; // (B·64, hidden)
            let v = normalize(&layers::apply(&self.visual_projection, &h)?)?; // (B·64, D)
            return Ok(v.reshape((b, WHERE_LOCATIONS, self.config.embed_dim))?);
        }
        let h = ops::max_pool2d(&h, pool)?; // (B, 2C, 4, 4)
        let h = layers::apply(&self.fc, &h.flatten_from(1)?)?.relu()?; // (B, hidden)
        normalize(&layers::apply(&self.visual_projection, &h)?) // (B, D)
    }

    /// Unit-length embeddings (n, D) of `n` pictures given as bytes (`n · 32 · 32 · 3`,
    /// channels last), in chunks of 256.
    pub fn embed_pictures(&self, images: &[u8], n: usize) -> Result<Tensor> {
        if images.len() != n * PICTURE_BYTES {
            return Err(Error::shape(format!(
                "{n} pictures of 32×32×3 need {} bytes, got {}",
                n * PICTURE_BYTES,
                images.len()
            )));
        }
        let mut parts = Vec::new();
        for chunk in images.chunks(256 * PICTURE_BYTES) {
            let k = chunk.len() / PICTURE_BYTES;
            let x = crate::vqvae::images_to_tensor(chunk, k, 3, IMAGE_SIZE)?;
            parts.push(self.encode_images(&x)?);
        }
        if parts.is_empty() {
            let shape = match self.config.image_head {
                ImageHead::Flat => vec![0, self.config.embed_dim],
                ImageHead::WhereWhat => vec![0, WHERE_LOCATIONS, self.config.embed_dim],
            };
            return Ok(Tensor::zeros(shape, DType::F32, &Device::Cpu)?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// Embeddings of `captions` ([`Clip::encode_text`]'s), in chunks of 256.
    pub fn embed_captions<S: AsRef<str>>(&self, captions: &[S]) -> Result<Tensor> {
        let mut parts = Vec::new();
        for chunk in captions.chunks(256) {
            parts.push(self.encode_text(&self.tokenize(chunk)?, &Mode::eval())?);
        }
        if parts.is_empty() {
            let width = match self.config.image_head {
                ImageHead::Flat => self.config.embed_dim,
                ImageHead::WhereWhat => self.config.embed_dim + WHERE_LOCATIONS,
            };
            return Ok(Tensor::zeros((0, width), DType::F32, &Device::Cpu)?);
        }
        Ok(Tensor::cat(&parts, 0)?)
    }

    /// Similarities (n, M) in [−1, 1] of picture embeddings (n, …) and caption embeddings
    /// (M, …), as [`Clip::embed_pictures`] and [`Clip::embed_captions`] give them.
    pub fn similarity(&self, pictures: &Tensor, captions: &Tensor) -> Result<Tensor> {
        match self.config.image_head {
            ImageHead::Flat => Ok(pictures.matmul(&captions.t()?)?), // (n, D)·(D, M)
            ImageHead::WhereWhat => {
                let (n, l, d) = pictures.dims3()?;
                let m = captions.dim(0)?;
                let what = captions.narrow(1, 0, d)?; // (M, D)
                let place = captions.narrow(1, d, l)?; // (M, L)
                let cos = pictures
                    .reshape((n * l, d))?
                    .matmul(&what.t()?)? // (n·L, M)
                    .reshape((n, l, m))?;
                Ok(cos
                    .broadcast_mul(&place.t()?.unsqueeze(0)?)? // × (1, L, M)
                    .sum(1)?) // (n, M)
            }
        }
    }

    /// Similarities (k) of aligned rows: picture embedding i with caption embedding i.
    pub fn pair_similarity(&self, pictures: &Tensor, captions: &Tensor) -> Result<Tensor> {
        match self.config.image_head {
            ImageHead::Flat => Ok((pictures * captions)?.sum(1)?),
            ImageHead::WhereWhat => {
                let (_, l, d) = pictures.dims3()?;
                let what = captions.narrow(1, 0, d)?; // (k, D)
                let place = captions.narrow(1, d, l)?; // (k, L)
                let cos = pictures.broadcast_mul(&what.unsqueeze(1)?)?.sum(2)?; // (k, L)
                Ok((cos * place)?.sum(1)?)
            }
        }
    }

    /// How well `caption` fits each of `n` pictures (`n · 32 · 32 · 3` bytes, channels last,
    /// as `ShapesSample::image`): [`Clip::similarity`], in [−1, 1], higher is better. With
    /// [`ImageHead::WhereWhat`], a shapes caption of several objects that all state their
    /// size and cell scores as the mean over its objects' one-object captions. Unknown words
    /// are an error naming them.
    pub fn score(&self, caption: &str, images: &[u8], n: usize) -> Result<Vec<f32>> {
        let mut captions = vec![caption.to_string()];
        if self.config.image_head == ImageHead::WhereWhat {
            // words first, so that an unknown word is named whatever the caption's form
            self.tokenize(&[caption])?;
            if let Some(objects) = kiln_data::shapes::parse_prompt(caption)
                .ok()
                .and_then(|p| p.full_objects())
                .filter(|o| o.len() > 1)
            {
                captions = objects
                    .iter()
                    .map(|o| kiln_data::shapes::caption(std::slice::from_ref(o), 0).text)
                    .collect();
            }
        }
        let t = self.embed_captions(&captions)?; // (K, …)
        let v = self.embed_pictures(images, n)?; // (n, …)
        if n == 0 {
            return Ok(Vec::new());
        }
        let k = captions.len() as f64;
        Ok(self
            .similarity(&v, &t)?
            .sum(1)?
            .affine(1.0 / k, 0.0)?
            .to_vec1()?) // (n, K) → (n)
    }

    /// The loss on pictures (B, 3, 32, 32) and caption ids (B, T), or (B, 2, T) with a hard
    /// negative caption per picture in `[:, 1]`.
    fn batch_loss(&self, x: &Tensor, y: &Tensor, mode: &Mode) -> Result<Tensor> {
        let b = x.dim(0)?;
        let ids = caption_rows(y, b)?; // (M, T)
        let img = self.encode_images(x)?; // (B, …)
        let txt = self.encode_text(&ids, mode)?; // (M, …)
        clip_loss_of_similarities(&self.similarity(&img, &txt)?, &self.scale_tensor()?)
    }
}

/// Caption ids (B, T) or (B, 2, T) as rows (M, T): the B true captions first, then the B hard
/// negatives.
fn caption_rows(y: &Tensor, b: usize) -> Result<Tensor> {
    match y.dims() {
        &[n, _] if n == b => Ok(y.clone()),
        &[n, 2, t] if n == b => Ok(y.transpose(0, 1)?.contiguous()?.reshape((2 * b, t))?), // (2, B, T) → (2B, T)
        d => Err(Error::shape(format!(
            "CLIP: expected caption ids ({b}, words) or ({b}, 2, words), got {d:?}"
        ))),
    }
}

/// Rows of `x` (N, D) divided by their L2 norm (`F.normalize(x, dim=-1)`, norm floored at 1e-12).
pub fn normalize(x: &Tensor) -> Result<Tensor> {
    let norm = x
        .sqr()?
        .sum_keepdim(Dim::Minus1)?
        .sqrt()?
        .clamp(1e-12f32, f32::MAX)?; // (N, 1)
    Ok(x.broadcast_div(&norm)?)
}

/// CLIP's symmetric InfoNCE loss for unit-length picture embeddings `images` (B, D), caption
/// embeddings `texts` (M, D) whose first B rows are the pictures' own captions (rows beyond B
/// are extra negatives), and `scale` (a scalar, already exponentiated):
/// `½·CE(scale·images·textsᵀ, arange B) + ½·CE(scale·texts[..B]·imagesᵀ, arange B)`.
pub fn clip_loss(images: &Tensor, texts: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let (b, d) = images.dims2()?;
    let (m, dt) = texts.dims2()?;
    if dt != d || m < b || b == 0 {
        return Err(Error::shape(format!(
            "CLIP loss: expected images (B, D) and texts (M ≥ B, D), got {:?} and {:?}",
            images.dims(),
            texts.dims()
        )));
    }
    clip_loss_of_similarities(&images.matmul(&texts.t()?)?, scale) // (B, D)·(D, M) = (B, M)
}

/// [`clip_loss`] from the similarities (B, M) of B pictures with M captions, the first B
/// the pictures' own: `½·CE(scale·S, arange B) + ½·CE(scale·S[:, ..B]ᵀ, arange B)`.
pub fn clip_loss_of_similarities(similarities: &Tensor, scale: &Tensor) -> Result<Tensor> {
    let (b, m) = similarities.dims2()?;
    if m < b || b == 0 {
        return Err(Error::shape(format!(
            "CLIP loss: expected similarities (B, M ≥ B), got {:?}",
            similarities.dims()
        )));
    }
    let targets = Tensor::arange(0u32, b as u32, &Device::Cpu)?; // (B)
    let per_image = similarities.broadcast_mul(scale)?; // (B, M)
    let per_text = similarities.narrow(1, 0, b)?.t()?.broadcast_mul(scale)?; // (B, B)
    let l =
        (loss::cross_entropy(&per_image, &targets)? + loss::cross_entropy(&per_text, &targets)?)?;
    Ok((l * 0.5)?)
}

impl TrainStep for Clip {
    /// Pictures (B, 3, 32, 32) in [0, 1] and caption ids u32 (B, T) right-padded with 0, or
    /// (B, 2, T) with a hard-negative caption per picture in `[:, 1]`.
    type Batch = (Tensor, Tensor);

    fn loss(&self, (x, y): &Self::Batch, mode: &Mode) -> Result<Tensor> {
        self.batch_loss(x, y, mode)
    }

    /// Loss, and as "correct" the pictures whose own caption scores highest among the batch's
    /// captions (hard negatives included).
    fn evaluate(&self, (x, y): &Self::Batch) -> Result<EvalSums> {
        let b = x.dim(0)?;
        let ids = caption_rows(y, b)?;
        let img = self.encode_images(x)?; // (B, …)
        let txt = self.encode_text(&ids, &Mode::eval())?; // (M, …)
        let sim = self.similarity(&img, &txt)?; // (B, M)
        let l = clip_loss_of_similarities(&sim, &self.scale_tensor()?)?.to_scalar::<f32>()? as f64;
        let best: Vec<u32> = sim.argmax(Dim::Minus1)?.to_vec1()?; // (B, M) → (B)
        let correct = best
            .iter()
            .enumerate()
            .filter(|&(i, &j)| j as usize == i)
            .count();
        Ok(EvalSums {
            loss_sum: l * b as f64,
            count: b,
            correct: Some(correct),
        })
    }
}
