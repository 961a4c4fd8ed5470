//! The shapes judge: a CNN that reads a 32×32 shapes picture cell by cell.
//!
//! For each of the 9 cells of the 3×3 grid it predicts whether an object is there and, if so,
//! its shape (4), colour (6) and size (2): a multi-head classifier with
//! 9 × (2 + 4 + 6 + 2) = 126 logits. It is trained on ground-truth renders (kiln-data's
//! `shapes` generator, held-out combinations included: the judge must read every
//! combination), never on generated pictures, and then scores what a text-to-image model draws.
//!
//! * `conv1` 3→C 3×3 → ReLU → max-pool 2 (32 → 16) → `conv2` C→2C 3×3 → ReLU → max-pool 2
//!   (→ 8) → `conv3` 2C→2C 3×3 → ReLU → flatten → `fc` → ReLU → `head` (126); with
//!   `batch_norm`, a batch norm (`bn1`, `bn2`, `bn3`) between each convolution and its ReLU.
//! * Loss: cross-entropy of presence over every cell, plus cross-entropy of shape, colour and
//!   size over the occupied cells only.
//!
//! Targets are u32 (B, 9, 4): per cell `[present, shape, colour, size]` (class indices in
//! kiln-data's `ShapeKind::ALL`, `Colour::ALL`, `Size::ALL` order; the last three are ignored
//! where `present` is 0).
//!
//! Legend: B batch, C channels, N = 9 cells, A = 4 attributes.

use candle_core::{DType, Tensor, D};
use candle_nn::{Linear, VarBuilder};
use kiln_nn::layers::Conv2d;
use kiln_nn::layers::{self, BatchNorm, Mode};
use kiln_nn::ops::{self, Pool2d};
use kiln_nn::{Error, EvalSums, Result, TrainStep};

/// Grid cells.
pub const CELLS: usize = 9;
/// Classes of each head: presence, shape, colour, size.
pub const HEADS: [usize; 4] = [2, 4, 6, 2];
/// Logits per cell.
pub const PER_CELL: usize = 2 + 4 + 6 + 2;

/// Judge hyperparameters (`config.json` keys).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct JudgeConfig {
    /// Channels of the first convolution C (the others have 2C) (default 32).
    pub channels: usize,
    /// Width of the hidden linear layer (default 256).
    pub hidden: usize,
    /// Batch norm after each convolution (default false).
    pub batch_norm: bool,
}

impl Default for JudgeConfig {
    fn default() -> Self {
        Self {
            channels: 32,
            hidden: 256,
            batch_norm: false,
        }
    }
}

impl JudgeConfig {
    /// Check every option.
    pub fn validate(&self) -> Result<()> {
        if self.channels == 0 {
            return Err(Error::param("channels", 0, "≥ 1"));
        }
        if self.hidden == 0 {
            return Err(Error::param("hidden", 0, "≥ 1"));
        }
        Ok(())
    }
}

/// What the judge reads in one cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct CellReading {
    /// An object is there.
    pub present: bool,
    /// Shape class index (meaningful when present).
    pub shape: usize,
    /// Colour class index.
    pub colour: usize,
    /// Size class index.
    pub size: usize,
}

/// The judge network.
pub struct Judge {
    config: JudgeConfig,
    conv1: Conv2d,
    conv2: Conv2d,
    conv3: Conv2d,
    bns: Option<[BatchNorm; 3]>,
    fc: Linear,
    head: Linear,
}

impl Judge {
    /// Build from `vb`.
    pub fn new(config: JudgeConfig, vb: VarBuilder) -> Result<Self> {
        config.validate()?;
        let c = config.channels;
        let bns = if config.batch_norm {
            Some([
                BatchNorm::new(c, vb.pp("bn1"))?,
                BatchNorm::new(2 * c, vb.pp("bn2"))?,
                BatchNorm::new(2 * c, vb.pp("bn3"))?,
            ])
        } else {
            None
        };
        Ok(Self {
            bns,
            conv1: layers::conv2d(3, c, 3, 1, 1, vb.pp("conv1"))?,
            conv2: layers::conv2d(c, 2 * c, 3, 1, 1, vb.pp("conv2"))?,
            conv3: layers::conv2d(2 * c, 2 * c, 3, 1, 1, vb.pp("conv3"))?,
            fc: layers::linear(2 * c * 8 * 8, config.hidden, vb.pp("fc"))?,
            head: layers::linear(config.hidden, CELLS * PER_CELL, vb.pp("head"))?,
            config,
        })
    }

    /// The hyperparameters.
    pub fn config(&self) -> &JudgeConfig {
        &self.config
    }

    /// Logits (B, 9, 14) for pictures (B, 3, 32, 32) in [0, 1] (evaluation mode).
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.forward_mode(xs, &Mode::eval())
    }

    /// Convolution `i` (0..3), its batch norm if any, ReLU.
    fn conv(&self, i: usize, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        let conv = [&self.conv1, &self.conv2, &self.conv3][i];
        let h = layers::apply(conv, xs)?;
        let h = match &self.bns {
            Some(bns) => bns[i].forward(&h, mode)?,
            None => h,
        };
        Ok(h.relu()?)
    }

    /// Logits (B, 9, 14) for pictures (B, 3, 32, 32) in [0, 1]; in training mode the batch
    /// norms (if any) use and record batch statistics.
    pub fn forward_mode(&self, xs: &Tensor, mode: &Mode) -> Result<Tensor> {
        if xs.rank() != 4 || xs.dims()[1..] != [3, 32, 32] {
            return Err(Error::shape(format!(
                "judge: expected pictures (batch, 3, 32, 32), got {:?}",
                xs.dims()
            )));
        }
        let pool = Pool2d::square(2, 2, 0);
        let h = self.conv(0, &xs.to_dtype(DType::F32)?, mode)?; // (B, C, 32, 32)
        let h = ops::max_pool2d(&h, pool)?; // (B, C, 16, 16)
        let h = self.conv(1, &h, mode)?; // (B, 2C, 16, 16)
        let h = ops::max_pool2d(&h, pool)?; // (B, 2C, 8, 8)
        let h = self.conv(2, &h, mode)?; // (B, 2C, 8, 8)
        let h = layers::apply(&self.fc, &h.flatten_from(1)?)?.relu()?; // (B, hidden)
        let b = xs.dim(0)?;
        Ok(layers::apply(&self.head, &h)?.reshape((b, CELLS, PER_CELL))?) // (B, 9, 14)
    }

    /// Per-head predictions u32 (B, 9, 4): `[present, shape, colour, size]`.
    pub fn predict(&self, xs: &Tensor) -> Result<Tensor> {
        let logits = self.forward(xs)?;
        let mut parts = Vec::with_capacity(4);
        let mut off = 0;
        for k in HEADS {
            parts.push(logits.narrow(2, off, k)?.argmax_keepdim(D::Minus1)?); // (B, 9, 1)
            off += k;
        }
        Ok(Tensor::cat(&parts, 2)?) // (B, 9, 4)
    }

    /// What the judge reads in each cell of each picture.
    pub fn read(&self, xs: &Tensor) -> Result<Vec<[CellReading; CELLS]>> {
        let p: Vec<Vec<Vec<u32>>> = self.predict(xs)?.to_vec3()?;
        Ok(p.into_iter()
            .map(|cells| {
                let mut out = [CellReading {
                    present: false,
                    shape: 0,
                    colour: 0,
                    size: 0,
                }; CELLS];
                for (o, c) in out.iter_mut().zip(cells) {
                    *o = CellReading {
                        present: c[0] == 1,
                        shape: c[1] as usize,
                        colour: c[2] as usize,
                        size: c[3] as usize,
                    };
                }
                out
            })
            .collect())
    }

    fn check_targets(&self, y: &Tensor, b: usize) -> Result<Tensor> {
        if y.dims() != [b, CELLS, 4] {
            return Err(Error::shape(format!(
                "judge: expected targets ({b}, 9, 4), got {:?}",
                y.dims()
            )));
        }
        Ok(y.to_dtype(DType::U32)?)
    }
}

/// Mean of `-log softmax(logits)[target]` over the rows where `mask` is 1 (all rows when
/// `mask` is `None`); logits (M, K), targets and mask (M).
fn masked_ce(logits: &Tensor, targets: &Tensor, mask: Option<&Tensor>) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?; // (M, K)
    let picked = logp.gather(&targets.unsqueeze(1)?, 1)?.squeeze(1)?; // (M)
    match mask {
        None => Ok(picked.mean_all()?.neg()?),
        Some(m) => {
            let m = m.to_dtype(DType::F32)?;
            let count = m.sum_all()?.to_scalar::<f32>()?.max(1.0) as f64;
            Ok(((picked * m)?.sum_all()?.neg()? / count)?)
        }
    }
}

impl TrainStep for Judge {
    /// Pictures (B, 3, 32, 32) in [0, 1] and targets u32 (B, 9, 4).
    type Batch = (Tensor, Tensor);

    fn loss(&self, (x, y): &Self::Batch, mode: &Mode) -> Result<Tensor> {
        let b = x.dim(0)?;
        let y = self.check_targets(y, b)?.reshape((b * CELLS, 4))?; // (B·9, 4)
        let logits = self.forward_mode(x, mode)?.reshape((b * CELLS, PER_CELL))?; // (B·9, 14)
        let present = y.narrow(1, 0, 1)?.squeeze(1)?.contiguous()?; // (B·9)
        let mut total = masked_ce(&logits.narrow(1, 0, 2)?, &present, None)?;
        let mut off = 2;
        for (j, &k) in HEADS.iter().enumerate().skip(1) {
            let t = y.narrow(1, j, 1)?.squeeze(1)?.contiguous()?;
            let l = masked_ce(&logits.narrow(1, off, k)?, &t, Some(&present))?;
            total = (total + l)?;
            off += k;
        }
        Ok(total)
    }

    fn evaluate(&self, batch: &Self::Batch) -> Result<EvalSums> {
        let b = batch.0.dim(0)?;
        let l = self.loss(batch, &Mode::eval())?.to_scalar::<f32>()? as f64;
        let acc = accuracy_counts(self, &batch.0, &batch.1)?;
        Ok(EvalSums {
            loss_sum: l * b as f64,
            count: b,
            correct: Some(acc.pictures_right),
        })
    }
}

/// Counts of what the judge got right.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct JudgeCounts {
    /// Pictures.
    pub pictures: usize,
    /// Pictures with every cell entirely right.
    pub pictures_right: usize,
    /// Cells (9 per picture).
    pub cells: usize,
    /// Cells whose presence is right.
    pub presence_right: usize,
    /// Occupied cells.
    pub objects: usize,
    /// Occupied cells whose shape is right.
    pub shape_right: usize,
    /// Occupied cells whose colour is right.
    pub colour_right: usize,
    /// Occupied cells whose size is right.
    pub size_right: usize,
}

impl JudgeCounts {
    /// Add another batch's counts.
    pub fn add(&mut self, o: JudgeCounts) {
        self.pictures += o.pictures;
        self.pictures_right += o.pictures_right;
        self.cells += o.cells;
        self.presence_right += o.presence_right;
        self.objects += o.objects;
        self.shape_right += o.shape_right;
        self.colour_right += o.colour_right;
        self.size_right += o.size_right;
    }

    /// Accuracies: presence (over cells), shape, colour, size (over occupied cells), whole
    /// pictures.
    pub fn accuracies(&self) -> [f64; 5] {
        let r = |a: usize, b: usize| a as f64 / b.max(1) as f64;
        [
            r(self.presence_right, self.cells),
            r(self.shape_right, self.objects),
            r(self.colour_right, self.objects),
            r(self.size_right, self.objects),
            r(self.pictures_right, self.pictures),
        ]
    }
}

/// Compare the judge's reading of `x` (B, 3, 32, 32) with targets `y` (B, 9, 4).
pub fn accuracy_counts(judge: &Judge, x: &Tensor, y: &Tensor) -> Result<JudgeCounts> {
    let b = x.dim(0)?;
    let y: Vec<Vec<Vec<u32>>> = judge.check_targets(y, b)?.to_vec3()?;
    let p: Vec<Vec<Vec<u32>>> = judge.predict(x)?.to_vec3()?;
    let mut c = JudgeCounts {
        pictures: b,
        cells: b * CELLS,
        ..Default::default()
    };
    for (py, pp) in y.iter().zip(&p) {
        let mut all = true;
        for (t, q) in py.iter().zip(pp) {
            let pres = t[0] == q[0];
            c.presence_right += pres as usize;
            all &= pres;
            if t[0] == 1 {
                c.objects += 1;
                for (j, slot) in [&mut c.shape_right, &mut c.colour_right, &mut c.size_right]
                    .into_iter()
                    .enumerate()
                {
                    let ok = t[j + 1] == q[j + 1];
                    *slot += ok as usize;
                    all &= ok;
                }
            }
        }
        c.pictures_right += all as usize;
    }
    Ok(c)
}
