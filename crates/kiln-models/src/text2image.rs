//! Text to image, DALL-E style (Ramesh et al. 2021, "Zero-Shot Text-to-Image Generation"): a
//! transformer prior continues a caption with the 8×8 grid of a VQ-VAE's codes
//! ([`crate::vqvae`]), and the VQ-VAE's decoder paints them.
//!
//! * [`Prior`]: one [`Gpt2`] over a joint vocabulary `[caption words | <image> | K codes]`.
//!   The sequence is the caption padded with `<pad>` to `caption_len` words, then `<image>`,
//!   then the codes in raster order. Text tokens and image codes have disjoint rows of `wte`,
//!   and text positions (0..L) and image positions (L..L+G²) disjoint learned rows of `wpe`:
//!   these are the separate text and image embeddings of DALL-E. With
//!   [`ImagePositions::Factorized`] an image position is instead its grid row's vector plus
//!   its grid column's vector, so cells along a row or a column share what they learn; with
//!   `relative_attention` each head also adds a learned bias for the grid offset between the
//!   code it predicts and the code a key holds, the same in every cell. The loss is the
//!   cross-entropy of the image codes only, with logits restricted to the K code ids.
//! * With a layered tokenizer (`colour_codes` > 0) a code is a (pattern, colour) pair and
//!   is not a row of `wte`: its embedding is the sum of a pattern row and a colour row, and
//!   its logit, tied to it, the sum of a pattern score and a colour score, so the softmax over
//!   the K pairs is a pattern distribution times a colour distribution. A pair no training
//!   picture held (a red star) gets the probability of "star" times that of "red".
//!   With `colour_given_pattern` a small head draws the colour given the pattern instead,
//!   `p(p | h)·p(c | h, p)`, so that where the caption names two objects the colour can follow
//!   the outline just drawn; training scores only the true pattern's colours.
//! * Classifier-free guidance (Ho & Salimans 2022): in training a caption becomes all `<pad>`
//!   with probability `cond_drop` (drawn from the step's seeded generator); at sampling the
//!   conditional rows and their unconditional twins run in one batch through the KV cache and
//!   the next code is drawn from `uncond + g·(cond − uncond)`, with temperature and top-k.
//! * [`ImageModel`] (in [`folder`]): the VQ-VAE, the prior and the caption vocabulary as one
//!   model folder, with [`ImageModel::generate`] (prompt → pictures) and optional reranking.
//!   [`embedded`] is the default shapes model compiled into kiln.
//!
//! Train with `kiln train dalle --vqvae RUN --dataset shapes`; draw with
//! `kiln generate image --prompt "a small red circle in the top left" --out a.png`.
//!
//! Legend: B batch (pictures), R rows (B, or 2B with guidance), L caption length, G code grid
//! side, N = G² codes, K codebook size, C width, V joint vocabulary.

pub mod folder;

pub use folder::{embedded, ImageModel, ImageSampling, Reranker, IMAGE_MODEL_KIND, PRIOR_KIND};

use candle_core::{DType, Device, Tensor, D as Dim};
use candle_nn::VarBuilder;
use kiln_nn::layers::Mode;
use kiln_nn::{loss, Error, EvalSums, Result, TrainStep};
use rand::Rng as _;

use crate::gpt2::{Gpt2, Gpt2Config, KvCache};
use crate::rnn::{sample_next, SamplingConfig};

/// Id of `<pad>` in every caption vocabulary (kiln-data's `Vocabulary`).
pub const PAD_ID: u32 = 0;

/// Prior hyperparameters (`prior/config.json` keys).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct PriorConfig {
    /// Caption vocabulary size, `<pad>` included (default 32).
    pub text_vocab: usize,
    /// Caption length L in words; shorter captions are padded with `<pad>` (default 16).
    pub caption_len: usize,
    /// VQ-VAE codebook size K (default 256).
    pub codebook_size: usize,
    /// Side G of the code grid; a picture is G² codes (default 8).
    pub grid: usize,
    /// Transformer blocks (default 4).
    pub n_layer: usize,
    /// Attention heads; must divide `n_embd` (default 4).
    pub n_head: usize,
    /// Width C (default 128).
    pub n_embd: usize,
    /// Dropout on embeddings, attention and residual branches in training, in [0, 1)
    /// (default 0).
    pub dropout: f64,
    /// Probability that a training caption is replaced by all `<pad>` (the unconditional
    /// model of classifier-free guidance), in [0, 1) (default 0.1).
    pub cond_drop: f64,
    /// Colour codes Cc of a layered tokenizer ([`crate::vqvae`]), 0 for a plain one (the
    /// default). With Cc > 0 code k is the pair (pattern p, colour c) = (k / Cc, k mod Cc), its
    /// embedding is `code_pattern[p] + code_colour[c]` and, tied to it, its logit
    /// `h·code_pattern[p] + h·code_colour[c]`: a pattern score plus a colour score.
    pub colour_codes: usize,
    /// With factorized codes: draw each code's colour given its pattern (default false: the
    /// two independently). The colour logits become `code_colour · gelu(W·(h + code_pattern[p])
    /// + b)` (`colour_head.weight` W (C, C), `colour_head.bias` b), and the code's logit is
    /// `log p(p | h) + log p(c | h, p)`.
    pub colour_given_pattern: bool,
    /// How image positions are embedded (default [`ImagePositions::Absolute`]).
    pub image_positions: ImagePositions,
    /// Add a learned bias to the attention scores for each (row, column) offset from the code
    /// a key holds to the code the query predicts, one per head, shared by all layers (T5's
    /// relative position bias, in two dimensions): `image_rel_bias.weight` (H, G·(2G − 1)),
    /// starting at 0. Keys that are caption words or `<image>` get no bias. Attention can then
    /// look "one row up, same column" the same way in every cell (default false).
    pub relative_attention: bool,
}

/// How the prior tells the G² image positions apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImagePositions {
    /// GPT-2's learned table: rows L..L+N of `wpe`, one free vector per position.
    #[default]
    Absolute,
    /// The position that predicts code (r, c) of the grid is `image_row[r] + image_col[c]`
    /// (`image_row.weight`, `image_col.weight`, both (G, C)); text positions keep `wpe`'s
    /// rows 0..L and its image rows go unused. Cells in one row share the row vector and cells
    /// in one column the column vector, so what a shape looks like in one cell carries over to
    /// the cells beside it: the prior is asked to draw shapes in cells where training never
    /// showed them (`kiln_data::shapes::HELD_OUT_SHAPE_CELL`).
    Factorized,
}

impl Default for PriorConfig {
    fn default() -> Self {
        Self {
            text_vocab: 32,
            caption_len: 16,
            codebook_size: 256,
            grid: 8,
            n_layer: 4,
            n_head: 4,
            n_embd: 128,
            dropout: 0.0,
            cond_drop: 0.1,
            colour_codes: 0,
            colour_given_pattern: false,
            image_positions: ImagePositions::Absolute,
            relative_attention: false,
        }
    }
}

impl PriorConfig {
    /// Check every option, naming the one out of range (the transformer's own checks follow
    /// in [`Gpt2Config::validate`]).
    pub fn validate(&self) -> Result<()> {
        for (name, v, min) in [
            ("text_vocab", self.text_vocab, 2),
            ("caption_len", self.caption_len, 1),
            ("codebook_size", self.codebook_size, 2),
            ("grid", self.grid, 1),
        ] {
            if v < min {
                return Err(Error::param(name, v, &format!("≥ {min}")));
            }
        }
        if !(0.0..1.0).contains(&self.cond_drop) {
            return Err(Error::param("cond_drop", self.cond_drop, "in [0, 1)"));
        }
        crate::vqvae::check_colour_codes(self.colour_codes, self.codebook_size)?;
        self.gpt2_config().validate()
    }

    /// Codes per picture, N = G².
    pub fn n_codes(&self) -> usize {
        self.grid * self.grid
    }

    /// Id of the `<image>` start token (right after the caption words).
    pub fn image_token(&self) -> u32 {
        self.text_vocab as u32
    }

    /// Id of code 0; code c is `code_offset() + c`.
    pub fn code_offset(&self) -> u32 {
        self.text_vocab as u32 + 1
    }

    /// The transformer: vocabulary V = words + 1 + K (words + 1 when the codes are
    /// factorized: their embeddings live outside `wte`), positions L + N (the last code is
    /// never an input), no BOS/EOS.
    pub fn gpt2_config(&self) -> Gpt2Config {
        let codes = if self.colour_codes > 0 {
            0
        } else {
            self.codebook_size
        };
        Gpt2Config {
            vocab_size: self.text_vocab + 1 + codes,
            n_positions: self.caption_len + self.n_codes(),
            n_embd: self.n_embd,
            n_layer: self.n_layer,
            n_head: self.n_head,
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

/// How [`Prior::sample`] draws codes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CodeSampling {
    /// Classifier-free guidance scale g: 1 is the conditional model alone (no unconditional
    /// rows are run), 0 the unconditional one, above 1 sharpens towards the caption.
    pub guidance: f64,
    /// Softmax temperature; 0 takes the most likely code.
    pub temperature: f64,
    /// Draw among the k most likely codes only; 0 draws among all.
    pub top_k: usize,
}

/// Factorized code embeddings, with `colour_codes` > 0.
struct Factors {
    /// (P, C).
    pattern: Tensor,
    /// (Cc, C).
    colour: Tensor,
    /// The colour head's weight (C, C) and bias (C), with `colour_given_pattern`.
    head: Option<(Tensor, Tensor)>,
}

impl Factors {
    /// The colour head's logits (R, Cc) for inputs `h + code_pattern[p]` (R, C).
    fn colour_logits(&self, x: &Tensor) -> Result<Tensor> {
        let Some((w, b)) = &self.head else {
            return Err(Error::shape("prior: no colour head"));
        };
        let u = x.matmul(&w.t()?)?.broadcast_add(b)?.gelu()?; // (R, C)
        Ok(u.matmul(&self.colour.t()?)?) // (R, Cc)
    }
}

/// Embeddings of factorized codes, made once per pass or per drawing (not per token).
struct CodeTables {
    /// The K codes (K, C): `code_pattern[k / Cc] + code_colour[k mod Cc]`.
    codes: Tensor,
    /// The joint vocabulary (V, C): `wte`'s words and `<image>`, then the codes.
    vocab: Tensor,
}

/// The DALL-E prior: a GPT-2 that continues a caption with image codes.
pub struct Prior {
    config: PriorConfig,
    gpt: Gpt2,
    factors: Option<Factors>,
    /// `image_row.weight` and `image_col.weight` (G, C) with factorized image positions.
    grid_positions: Option<(Tensor, Tensor)>,
    /// `image_rel_bias.weight` (H, G·(2G − 1)) with relative attention.
    rel_bias: Option<Tensor>,
}

impl Prior {
    /// Build from `vb` (GPT-2 names: `wte`, `wpe`, `h.{i}.*`, `ln_f`; factorized codes also
    /// `code_pattern.weight` and `code_colour.weight`, initialised as `wte`).
    pub fn new(config: PriorConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let gpt_config = config.gpt2_config();
        let factors = match config.colour_codes {
            0 => None,
            cc => {
                let init = candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: gpt_config.initializer_range,
                };
                let c = config.n_embd;
                let p = config.codebook_size / cc;
                let head = match config.colour_given_pattern {
                    false => None,
                    true => Some((
                        vb.get_with_hints((c, c), "colour_head.weight", init)?,
                        vb.get_with_hints(c, "colour_head.bias", candle_nn::Init::Const(0.0))?,
                    )),
                };
                Some(Factors {
                    pattern: vb.get_with_hints((p, c), "code_pattern.weight", init)?,
                    colour: vb.get_with_hints((cc, c), "code_colour.weight", init)?,
                    head,
                })
            }
        };
        let grid_positions = match config.image_positions {
            ImagePositions::Absolute => None,
            ImagePositions::Factorized => {
                let init = candle_nn::Init::Randn {
                    mean: 0.0,
                    stdev: gpt_config.initializer_range,
                };
                let (g, c) = (config.grid, config.n_embd);
                Some((
                    vb.get_with_hints((g, c), "image_row.weight", init)?,
                    vb.get_with_hints((g, c), "image_col.weight", init)?,
                ))
            }
        };
        let rel_bias = match config.relative_attention {
            false => None,
            true => {
                let g = config.grid;
                Some(vb.get_with_hints(
                    (config.n_head, g * (2 * g - 1)),
                    "image_rel_bias.weight",
                    candle_nn::Init::Const(0.0),
                )?)
            }
        };
        let gpt = Gpt2::new(&gpt_config, vb)?;
        Ok(Self {
            config,
            gpt,
            factors,
            grid_positions,
            rel_bias,
        })
    }

    /// The relative attention bias (H, T, S) of queries `past..past + t` over keys
    /// `0..past + t`: for the query at L + i (predicting code i) and the key at L + 1 + j
    /// (holding code j < i), the table's entry for the offset (row_i − row_j, col_i − col_j);
    /// 0 for every other pair.
    fn relative_bias(&self, table: &Tensor, past: usize, t: usize) -> Result<Tensor> {
        let (l, g) = (self.config.caption_len, self.config.grid);
        let h = table.dims()[0];
        let m = g * (2 * g - 1); // the zero slot
        let s = past + t;
        let mut idx = Vec::with_capacity(t * s);
        for q in past..s {
            for k in 0..s {
                let slot = match (q.checked_sub(l), k.checked_sub(l + 1)) {
                    (Some(i), Some(j)) if j < i => {
                        let (dr, dc) = (i / g - j / g, i % g + g - 1 - j % g);
                        dr * (2 * g - 1) + dc
                    }
                    _ => m,
                };
                idx.push(slot as u32);
            }
        }
        let zeros = Tensor::zeros((h, 1), table.dtype(), table.device())?;
        let full = Tensor::cat(&[table, &zeros], 1)?; // (H, M + 1)
        let idx = Tensor::from_vec(idx, t * s, table.device())?;
        Ok(full.index_select(&idx, 1)?.reshape((h, t, s))?) // (H, T, S)
    }

    /// Position embeddings (T, C) of sequence positions `past..past + t` (at most L + N, which
    /// the caller checks) with factorized image positions: `wpe`'s rows for the caption, then `image_row[r] + image_col[c]` for
    /// the position L + i that predicts code i = (r, c) = (i / G, i mod G).
    fn placed_positions(
        &self,
        rows: &Tensor,
        cols: &Tensor,
        past: usize,
        t: usize,
    ) -> Result<Tensor> {
        let (l, g, c) = (
            self.config.caption_len,
            self.config.grid,
            self.config.n_embd,
        );
        let text = self.gpt.wpe().narrow(0, 0, l)?; // (L, C)
        let image = rows.unsqueeze(1)?.broadcast_add(&cols.unsqueeze(0)?)?; // (G, G, C)
        let all = Tensor::cat(&[text, image.reshape((g * g, c))?], 0)?; // (L+N, C)
        Ok(all.narrow(0, past, t)?) // (T, C)
    }

    /// The embedding tables of factorized codes (`None` for plain ones).
    fn tables(&self) -> Result<Option<CodeTables>> {
        let Some(Factors {
            pattern, colour, ..
        }) = &self.factors
        else {
            return Ok(None);
        };
        let (k, c) = (self.config.codebook_size, self.config.n_embd);
        let codes = pattern.unsqueeze(1)?.broadcast_add(&colour.unsqueeze(0)?)?; // (P, Cc, C)
        let codes = codes.reshape((k, c))?; // (K, C)
        let words = self
            .gpt
            .wte()
            .ok_or_else(|| Error::shape("prior: packed weights cannot embed factorized codes"))?;
        let vocab = Tensor::cat(&[words, &codes], 0)?; // (V, C)
        Ok(Some(CodeTables { codes, vocab }))
    }

    /// Final hidden states (B, T, C) of joint-vocabulary ids (B, T), continuing `cache`;
    /// `tables` from [`Prior::tables`].
    fn hidden(
        &self,
        ids: &Tensor,
        tables: Option<&CodeTables>,
        cache: Option<&mut KvCache>,
        mode: &Mode,
    ) -> Result<Tensor> {
        let placed = self.grid_positions.is_some() || self.rel_bias.is_some();
        let table = match (tables, placed) {
            (Some(CodeTables { vocab, .. }), _) => vocab,
            (None, true) => self.gpt.wte().ok_or_else(|| {
                Error::shape("prior: packed weights cannot place image positions")
            })?,
            (None, false) => return self.gpt.hidden(ids, cache, None, mode),
        };
        let (b, t) = ids.dims2()?;
        let flat = ids.flatten_all()?.to_dtype(DType::U32)?;
        let v = table.dims()[0] as u32;
        if let Some(&bad) = flat.to_vec1::<u32>()?.iter().find(|&&i| i >= v) {
            return Err(Error::shape(format!(
                "prior: token id {bad} out of range for a joint vocabulary of {v}"
            )));
        }
        let tok = table
            .embedding(&flat)?
            .reshape((b, t, self.config.n_embd))?; // (B, T, C)
        if !placed {
            return self.gpt.hidden_embedded(&tok, cache, mode);
        }
        let past = cache.as_ref().map_or(0, |c| c.len());
        let (l, n) = (self.config.caption_len, self.config.n_codes());
        if past + t > l + n {
            return Err(Error::shape(format!(
                "prior: sequence of {} tokens exceeds caption + codes = {}",
                past + t,
                l + n
            )));
        }
        let pe = match &self.grid_positions {
            Some((rows, cols)) => self.placed_positions(rows, cols, past, t)?,
            None => self.gpt.wpe().narrow(0, past, t)?,
        }; // (T, C)
        let bias = match &self.rel_bias {
            Some(table) => Some(self.relative_bias(table, past, t)?),
            None => None,
        };
        self.gpt
            .hidden_placed(&tok, &pe, bias.as_ref(), cache, mode)
    }

    /// The hyperparameters.
    pub fn config(&self) -> &PriorConfig {
        &self.config
    }

    /// The transformer.
    pub fn gpt(&self) -> &Gpt2 {
        &self.gpt
    }

    fn check_captions(&self, captions: &Tensor) -> Result<usize> {
        let l = self.config.caption_len;
        match captions.dims() {
            &[b, t] if t == l && b > 0 => Ok(b),
            d => Err(Error::shape(format!(
                "prior: expected captions (batch, {l}) of word ids, got {d:?}"
            ))),
        }
    }

    /// Logits over the K codes (B, N, K) for every code of `codes` (B, N) given `captions`
    /// (B, L) (word ids, u32): one pass over the whole sequence (teacher forcing).
    pub fn code_logits(&self, captions: &Tensor, codes: &Tensor, mode: &Mode) -> Result<Tensor> {
        let tables = self.tables()?;
        let hidden = self.code_hidden(captions, codes, tables.as_ref(), mode)?; // (B, N, C)
        self.code_head(&hidden, tables.as_ref()) // (B, N, K)
    }

    /// Hidden states (B, N, C) that predict each code of `codes` (B, N) given `captions`.
    fn code_hidden(
        &self,
        captions: &Tensor,
        codes: &Tensor,
        tables: Option<&CodeTables>,
        mode: &Mode,
    ) -> Result<Tensor> {
        let b = self.check_captions(captions)?;
        let (n, l) = (self.config.n_codes(), self.config.caption_len);
        if codes.dims() != [b, n] {
            return Err(Error::shape(format!(
                "prior: expected codes (batch, {n}) = ({b}, {n}), got {:?}",
                codes.dims()
            )));
        }
        // ids (B, L+N): the caption, <image>, then every code but the last
        let caps = captions.to_dtype(DType::U32)?.to_vec2::<u32>()?;
        let codes_v = codes.to_dtype(DType::U32)?.to_vec2::<u32>()?;
        let offset = self.config.code_offset();
        let mut ids = Vec::with_capacity(b * (l + n));
        for (c, z) in caps.iter().zip(&codes_v) {
            ids.extend_from_slice(c);
            ids.push(self.config.image_token());
            ids.extend(z[..n - 1].iter().map(|&x| x + offset));
        }
        let ids = Tensor::from_vec(ids, (b, l + n), captions.device())?; // (B, L+N)
        let hidden = self.hidden(&ids, tables, None, mode)?; // (B, L+N, C)
        Ok(hidden.narrow(1, l, n)?) // (B, N, C)
    }

    /// Hidden states (..., C) → logits over the codes (..., K); `tables` from
    /// [`Prior::tables`].
    fn code_head(&self, hidden: &Tensor, tables: Option<&CodeTables>) -> Result<Tensor> {
        if let Some(f @ Factors { head: Some(_), .. }) = &self.factors {
            return self.conditional_head(f, hidden);
        }
        if let Some(CodeTables { codes, .. }) = tables {
            let mut dims = hidden.dims().to_vec();
            let c = self.config.n_embd;
            let x = hidden.reshape((hidden.elem_count() / c, c))?; // (M, C)
            let y = x.matmul(&codes.t()?)?; // (M, C)·(C, K) = (M, K)
            if let Some(last) = dims.last_mut() {
                *last = self.config.codebook_size;
            }
            return Ok(y.reshape(dims)?); // (..., K)
        }
        let logits = self.gpt.logits(hidden)?; // (..., V)
        let last = logits.rank() - 1;
        Ok(logits.narrow(
            last,
            self.config.code_offset() as usize,
            self.config.codebook_size,
        )?) // (..., K)
    }

    /// Log-probabilities (..., K) of the codes `log p(p | h) + log p(c | h, p)` with the
    /// colour head: for each of the P patterns, the colour logits of `h + code_pattern[p]`.
    fn conditional_head(&self, f: &Factors, hidden: &Tensor) -> Result<Tensor> {
        let c = self.config.n_embd;
        let (p, cc) = (f.pattern.dims()[0], f.colour.dims()[0]);
        let mut dims = hidden.dims().to_vec();
        let m = hidden.elem_count() / c;
        let h = hidden.reshape((m, c))?; // (M, C)
        let patterns = candle_nn::ops::log_softmax(&h.matmul(&f.pattern.t()?)?, Dim::Minus1)?; // (M, P)
        let x = h.unsqueeze(1)?.broadcast_add(&f.pattern.unsqueeze(0)?)?; // (M, P, C)
        let colours = f.colour_logits(&x.reshape((m * p, c))?)?; // (M·P, Cc)
        let colours = colours.reshape((m, p, cc))?; // (M, P, Cc)
        let colours = candle_nn::ops::log_softmax(&colours, Dim::Minus1)?;
        let joint = colours.broadcast_add(&patterns.unsqueeze(2)?)?; // (M, P, Cc)
        if let Some(last) = dims.last_mut() {
            *last = self.config.codebook_size;
        }
        Ok(joint.reshape(dims)?) // (..., K)
    }

    /// The code cross-entropy with the colour head, for the true patterns only:
    /// `CE(pattern) + CE(colour | true pattern)`, which is the cross-entropy of
    /// [`Prior::conditional_head`]'s joint log-probabilities without scoring the colours of the
    /// P − 1 other patterns.
    fn conditional_loss(&self, f: &Factors, hidden: &Tensor, codes: &Tensor) -> Result<Tensor> {
        let c = self.config.n_embd;
        let cc = f.colour.dims()[0] as u32;
        let m = hidden.elem_count() / c;
        let h = hidden.reshape((m, c))?; // (M, C)
        let codes: Vec<u32> = codes.flatten_all()?.to_dtype(DType::U32)?.to_vec1()?;
        let dev = hidden.device();
        let patterns = Tensor::from_vec(codes.iter().map(|&k| k / cc).collect(), m, dev)?; // (M)
        let colours = Tensor::from_vec(codes.iter().map(|&k| k % cc).collect(), m, dev)?; // (M)
        let pattern_logits = h.matmul(&f.pattern.t()?)?; // (M, P)
        let x = (&h + f.pattern.index_select(&patterns, 0)?)?; // (M, C)
        let colour_logits = f.colour_logits(&x)?; // (M, Cc)
        Ok((loss::cross_entropy(&pattern_logits, &patterns)?
            + loss::cross_entropy(&colour_logits, &colours)?)?)
    }

    /// Draw N codes for each caption (word ids, each exactly L long), row r with `rngs[r]`,
    /// using the KV cache: the caption and `<image>` run once, then one code per step.
    pub fn sample(
        &self,
        captions: &[Vec<u32>],
        s: &CodeSampling,
        rngs: &mut [kiln_core::Rng],
    ) -> Result<Vec<Vec<u32>>> {
        self.sample_composed(&one_part_each(captions), s, rngs)
    }

    /// Draw N codes for each picture from the product of several captions (Liu et al. 2022,
    /// "Compositional Visual Generation with Composable Diffusion Models", here over code
    /// logits): picture b's code is drawn from `u + g·Σ_j (c_j − u)`, where `c_j` are the
    /// logits given its captions `parts[b][j]` and `u` those given no caption; each caption
    /// row sees the codes drawn so far. With one caption per picture this is
    /// [`Prior::sample`]. A two-object prompt split into its two one-object captions draws
    /// each object where its own caption puts it, instead of mixing the two objects' words.
    pub fn sample_composed(
        &self,
        parts: &[Vec<Vec<u32>>],
        s: &CodeSampling,
        rngs: &mut [kiln_core::Rng],
    ) -> Result<Vec<Vec<u32>>> {
        let rows = self.rows(parts, s)?;
        let (l, n) = (self.config.caption_len, self.config.n_codes());
        let r = rows.owner.len();
        let dev = Device::Cpu;
        let mut cache = self.gpt.new_cache(l + n);
        let eval = Mode::eval();
        let offset = self.config.code_offset();
        let tables = self.tables()?;
        self.sample_loop(&rows, s, rngs, |last| {
            let hidden = match last {
                None => {
                    let ids = Tensor::from_vec(rows.prefix.clone(), (r, l + 1), &dev)?; // (R, L+1)
                    let h = self.hidden(&ids, tables.as_ref(), Some(&mut cache), &eval)?; // (R, L+1, C)
                    h.narrow(1, l, 1)? // (R, 1, C)
                }
                Some(codes) => {
                    let ids: Vec<u32> = rows.owner.iter().map(|&b| codes[b] + offset).collect();
                    let ids = Tensor::from_vec(ids, (r, 1), &dev)?; // (R, 1)
                    self.hidden(&ids, tables.as_ref(), Some(&mut cache), &eval)?
                    // (R, 1, C)
                }
            };
            Ok(self
                .code_head(&hidden, tables.as_ref())?
                .flatten_all()?
                .to_vec1::<f32>()?)
        })
    }

    /// [`Prior::sample`] without the KV cache: every step recomputes the whole sequence. The
    /// plain reference the cached version is tested against; slow.
    pub fn sample_uncached(
        &self,
        captions: &[Vec<u32>],
        s: &CodeSampling,
        rngs: &mut [kiln_core::Rng],
    ) -> Result<Vec<Vec<u32>>> {
        self.sample_composed_uncached(&one_part_each(captions), s, rngs)
    }

    /// [`Prior::sample_composed`] without the KV cache (the reference it is tested against).
    pub fn sample_composed_uncached(
        &self,
        parts: &[Vec<Vec<u32>>],
        s: &CodeSampling,
        rngs: &mut [kiln_core::Rng],
    ) -> Result<Vec<Vec<u32>>> {
        let rows = self.rows(parts, s)?;
        let mut ids = rows.prefix.clone();
        let l = self.config.caption_len;
        let r = rows.owner.len();
        let mut len = l + 1;
        let offset = self.config.code_offset();
        let tables = self.tables()?;
        self.sample_loop(&rows, s, rngs, |last| {
            if let Some(codes) = last {
                // append each row's new code: rebuild the (R, len + 1) matrix
                let mut next = Vec::with_capacity(r * (len + 1));
                for (i, &b) in rows.owner.iter().enumerate() {
                    next.extend_from_slice(&ids[i * len..(i + 1) * len]);
                    next.push(codes[b] + offset);
                }
                ids = next;
                len += 1;
            }
            let t = Tensor::from_vec(ids.clone(), (r, len), &Device::Cpu)?; // (R, len)
            let h = self.hidden(&t, tables.as_ref(), None, &Mode::eval())?; // (R, len, C)
            Ok(self
                .code_head(&h.narrow(1, len - 1, 1)?, tables.as_ref())?
                .flatten_all()?
                .to_vec1::<f32>()?)
        })
    }

    /// The rows of a drawing: every picture's captions (each with `<image>`), then, with
    /// guidance ≠ 1 or a picture of several captions, one all-`<pad>` row per picture.
    fn rows(&self, parts: &[Vec<Vec<u32>>], s: &CodeSampling) -> Result<Rows> {
        let l = self.config.caption_len;
        if parts.is_empty() {
            return Err(Error::shape("prior: no captions to sample for"));
        }
        let mut rows = Rows {
            prefix: Vec::new(),
            owner: Vec::new(),
            parts: Vec::with_capacity(parts.len()),
            uncond: None,
        };
        for (b, captions) in parts.iter().enumerate() {
            if captions.is_empty() {
                return Err(Error::shape(format!("prior: picture {b} has no caption")));
            }
            let first = rows.owner.len();
            for c in captions {
                if c.len() != l {
                    return Err(Error::shape(format!(
                        "prior: caption {b} has {} word ids, expected exactly {l} (pad with <pad>)",
                        c.len()
                    )));
                }
                if let Some(&bad) = c.iter().find(|&&w| w as usize >= self.config.text_vocab) {
                    return Err(Error::shape(format!(
                        "prior: word id {bad} out of range for a caption vocabulary of {}",
                        self.config.text_vocab
                    )));
                }
                rows.prefix.extend_from_slice(c);
                rows.prefix.push(self.config.image_token());
                rows.owner.push(b);
            }
            rows.parts.push(first..rows.owner.len());
        }
        if s.guidance != 1.0 || parts.iter().any(|c| c.len() > 1) {
            rows.uncond = Some(rows.owner.len());
            for b in 0..parts.len() {
                rows.prefix.extend(std::iter::repeat_n(PAD_ID, l));
                rows.prefix.push(self.config.image_token());
                rows.owner.push(b);
            }
        }
        Ok(rows)
    }

    /// The sampling loop shared by the cached and the uncached versions: `step(None)` gives
    /// the code logits (R·K) after the prefix, `step(Some(codes))` after feeding each row the
    /// newest code of its picture (one per picture).
    fn sample_loop(
        &self,
        rows: &Rows,
        s: &CodeSampling,
        rngs: &mut [kiln_core::Rng],
        mut step: impl FnMut(Option<&[u32]>) -> Result<Vec<f32>>,
    ) -> Result<Vec<Vec<u32>>> {
        let b = rows.parts.len();
        if rngs.len() != b {
            return Err(Error::shape(format!(
                "prior: {b} pictures need {b} generators, got {}",
                rngs.len()
            )));
        }
        for (name, v) in [("guidance", s.guidance), ("temperature", s.temperature)] {
            if !(v.is_finite() && v >= 0.0) {
                return Err(Error::param(name, v, "a finite number ≥ 0"));
            }
        }
        let (k, n) = (self.config.codebook_size, self.config.n_codes());
        let cfg = SamplingConfig {
            temperature: s.temperature,
            top_k: (s.top_k > 0).then_some(s.top_k),
            seed: 0,
        };
        let g = s.guidance as f32;
        let mut out: Vec<Vec<u32>> = vec![Vec::with_capacity(n); b];
        let mut logits = step(None)?; // (R·K)
        let mut mixed = vec![0f32; k];
        for j in 0..n {
            let mut newest = Vec::with_capacity(b);
            for (i, rng) in rngs.iter_mut().enumerate() {
                let at = |row: usize| &logits[row * k..(row + 1) * k];
                let row: &[f32] = match rows.uncond {
                    None => at(rows.parts[i].start),
                    Some(u0) => {
                        let uncond = at(u0 + i);
                        mixed.copy_from_slice(uncond);
                        for c in rows.parts[i].clone() {
                            for ((m, &c), &u) in mixed.iter_mut().zip(at(c)).zip(uncond) {
                                *m += g * (c - u);
                            }
                        }
                        &mixed
                    }
                };
                let code = sample_next(row, &cfg, rng);
                out[i].push(code);
                newest.push(code);
            }
            if j + 1 < n {
                logits = step(Some(&newest))?;
            }
        }
        Ok(out)
    }
}

/// The rows a drawing runs through the prior (see [`Prior::rows`]).
struct Rows {
    /// Each row's caption and `<image>`, flattened (R, L + 1).
    prefix: Vec<u32>,
    /// The picture each row draws.
    owner: Vec<usize>,
    /// Each picture's caption rows.
    parts: Vec<std::ops::Range<usize>>,
    /// The first all-`<pad>` row (picture b's is this + b), if any.
    uncond: Option<usize>,
}

/// One caption per picture, as [`Prior::sample_composed`] takes them.
fn one_part_each(captions: &[Vec<u32>]) -> Vec<Vec<Vec<u32>>> {
    captions.iter().map(|c| vec![c.clone()]).collect()
}

impl TrainStep for Prior {
    /// Captions (B, L) and codes (B, N), both u32.
    type Batch = (Tensor, Tensor);

    /// Mean cross-entropy of the codes; each caption is dropped (all `<pad>`) with probability
    /// `cond_drop`, drawn from the step's generator.
    fn loss(&self, (captions, codes): &Self::Batch, mode: &Mode) -> Result<Tensor> {
        let b = self.check_captions(captions)?;
        let p = self.config.cond_drop;
        let drop = mode
            .with_rng(|rng| (0..b).map(|_| rng.random::<f64>() < p).collect::<Vec<_>>())
            .filter(|d| d.iter().any(|&x| x));
        let captions = match drop {
            Some(drop) => {
                let mut ids = captions.to_dtype(DType::U32)?.to_vec2::<u32>()?;
                for (row, d) in ids.iter_mut().zip(drop) {
                    if d {
                        row.fill(PAD_ID);
                    }
                }
                let l = self.config.caption_len;
                Tensor::from_vec(ids.concat(), (b, l), captions.device())?
            }
            None => captions.clone(),
        };
        if let Some(f @ Factors { head: Some(_), .. }) = &self.factors {
            let tables = self.tables()?;
            let hidden = self.code_hidden(&captions, codes, tables.as_ref(), mode)?; // (B, N, C)
            return self.conditional_loss(f, &hidden, codes);
        }
        let logits = self.code_logits(&captions, codes, mode)?;
        loss::cross_entropy(&logits, codes)
    }

    /// Loss summed over every code (count = B·N) and codes predicted exactly (arg-max).
    fn evaluate(&self, (captions, codes): &Self::Batch) -> Result<EvalSums> {
        let logits = self.code_logits(captions, codes, &Mode::eval())?;
        let n = codes.elem_count();
        let l = loss::cross_entropy(&logits, codes)?.to_scalar::<f32>()? as f64;
        Ok(EvalSums {
            loss_sum: l * n as f64,
            count: n,
            correct: Some(loss::correct(&logits, codes)?),
        })
    }
}
