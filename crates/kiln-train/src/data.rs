//! Mini-batches: a [`BatchSource`] makes a batch from example indices; [`epoch_batches`] cuts
//! a seeded shuffle of one epoch into batches. The order of epoch `e` depends only on the seed
//! and `e`, so a resumed run sees exactly the batches the uninterrupted run would have seen.
//!
//! Sources: [`TensorData`] for tables and image tensors (features and targets indexed along
//! the first dimension), [`TokenWindows`] for token sequences (next-token prediction windows).

use candle_core::{Device, Tensor};
use kiln_nn::{Error, Result};
use rand::seq::SliceRandom;

/// Something that can hand out mini-batches by example index.
pub trait BatchSource {
    /// What one batch is.
    type Batch;
    /// Number of examples.
    fn len(&self) -> usize;
    /// True if there are no examples.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The batch made of examples `indices`.
    fn batch(&self, indices: &[usize]) -> Result<Self::Batch>;
}

/// Features `x` (N, ...) and targets `y` (N, ...), batched along the first dimension: tabular
/// data (N, F) with class indices or values, images (N, C, H, W) with labels.
#[derive(Debug, Clone)]
pub struct TensorData {
    x: Tensor,
    y: Tensor,
}

impl TensorData {
    /// Pair features and targets; their first dimensions must agree.
    pub fn new(x: Tensor, y: Tensor) -> Result<Self> {
        let (nx, ny) = (x.dims().first().copied(), y.dims().first().copied());
        if nx.is_none() || nx != ny {
            return Err(Error::shape(format!(
                "features {:?} and targets {:?} must have the same number of rows",
                x.dims(),
                y.dims()
            )));
        }
        Ok(Self { x, y })
    }

    /// A kiln table: features as f32 (N, F); targets as u32 class indices (N) for
    /// classification, f32 values (N) for regression.
    pub fn from_dataset(ds: &kiln_core::Dataset) -> Result<Self> {
        let (n, f) = (ds.n_samples(), ds.n_features());
        let x: Vec<f32> = ds.x.iter().map(|&v| v as f32).collect();
        let x = Tensor::from_vec(x, (n, f), &Device::Cpu)?;
        let y = match ds.task() {
            kiln_core::Task::Classification => {
                let y: Vec<u32> = ds.labels().into_iter().map(|c| c as u32).collect();
                Tensor::from_vec(y, n, &Device::Cpu)?
            }
            kiln_core::Task::Regression => {
                let y: Vec<f32> = ds.y.iter().map(|&v| v as f32).collect();
                Tensor::from_vec(y, n, &Device::Cpu)?
            }
        };
        Self::new(x, y)
    }

    /// Features.
    pub fn x(&self) -> &Tensor {
        &self.x
    }

    /// Targets.
    pub fn y(&self) -> &Tensor {
        &self.y
    }
}

fn index_tensor(indices: &[usize], n: usize) -> Result<Tensor> {
    if let Some(&bad) = indices.iter().find(|&&i| i >= n) {
        return Err(Error::shape(format!(
            "example index {bad} out of range for {n} examples"
        )));
    }
    let idx: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
    Ok(Tensor::from_vec(idx, indices.len(), &Device::Cpu)?)
}

impl BatchSource for TensorData {
    type Batch = (Tensor, Tensor);

    fn len(&self) -> usize {
        self.x.dims()[0]
    }

    fn batch(&self, indices: &[usize]) -> Result<(Tensor, Tensor)> {
        let idx = index_tensor(indices, self.len())?;
        Ok((self.x.index_select(&idx, 0)?, self.y.index_select(&idx, 0)?))
    }
}

/// Non-overlapping windows of a token sequence for next-token prediction: example `i` is
/// `x = tokens[i·T .. i·T + T]`, `y = tokens[i·T + 1 .. i·T + T + 1]` (u32, (B, T) per batch).
#[derive(Debug, Clone)]
pub struct TokenWindows {
    windows: Tensor, // (N, T + 1)
}

impl TokenWindows {
    /// Windows of length `seq_len` over `tokens` (needs at least `seq_len + 1` tokens).
    pub fn new(tokens: &[u32], seq_len: usize) -> Result<Self> {
        if seq_len == 0 {
            return Err(Error::param("seq_len", seq_len, "≥ 1"));
        }
        if tokens.len() < seq_len + 1 {
            return Err(Error::shape(format!(
                "token windows of length {seq_len} need at least {} tokens, got {}",
                seq_len + 1,
                tokens.len()
            )));
        }
        let n = (tokens.len() - 1) / seq_len;
        let mut data = Vec::with_capacity(n * (seq_len + 1));
        for i in 0..n {
            data.extend_from_slice(&tokens[i * seq_len..i * seq_len + seq_len + 1]);
        }
        Ok(Self {
            windows: Tensor::from_vec(data, (n, seq_len + 1), &Device::Cpu)?,
        })
    }

    /// Window length T.
    pub fn seq_len(&self) -> usize {
        self.windows.dims()[1] - 1
    }
}

impl BatchSource for TokenWindows {
    type Batch = (Tensor, Tensor);

    fn len(&self) -> usize {
        self.windows.dims()[0]
    }

    fn batch(&self, indices: &[usize]) -> Result<(Tensor, Tensor)> {
        let idx = index_tensor(indices, self.len())?;
        let w = self.windows.index_select(&idx, 0)?; // (B, T + 1)
        let t = self.seq_len();
        Ok((w.narrow(1, 0, t)?, w.narrow(1, 1, t)?)) // (B, T), (B, T)
    }
}

/// Number of batches per epoch.
pub fn batches_per_epoch(n: usize, batch_size: usize, drop_last: bool) -> usize {
    if drop_last {
        n / batch_size
    } else {
        n.div_ceil(batch_size)
    }
}

/// The batches of epoch `epoch`: a permutation of `0..n` drawn from `(seed, epoch)` (or the
/// identity when `shuffle` is false), cut into `batch_size` pieces.
pub fn epoch_batches(
    n: usize,
    batch_size: usize,
    drop_last: bool,
    shuffle: bool,
    seed: u64,
    epoch: usize,
) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..n).collect();
    if shuffle {
        let mut rng = kiln_core::rng(mix(seed, 0x5348_5546_u64.wrapping_add(epoch as u64)));
        order.shuffle(&mut rng);
    }
    let mut out: Vec<Vec<usize>> = order
        .chunks(batch_size.max(1))
        .map(|c| c.to_vec())
        .collect();
    if drop_last && out.last().is_some_and(|b| b.len() < batch_size) {
        out.pop();
    }
    out
}

/// A seed derived from a run seed and a counter (SplitMix64 finaliser).
pub fn mix(seed: u64, counter: u64) -> u64 {
    let mut z = seed ^ counter.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}
