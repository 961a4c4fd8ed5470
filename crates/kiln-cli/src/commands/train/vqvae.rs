//! `kiln train vqvae`: the VQ-VAE image tokenizer on captioned shapes (or MNIST digits padded
//! to 32×32 RGB), reporting reconstruction MSE/PSNR and codebook use on the validation
//! pictures.

use candle_core::{DType, Device, Tensor};
use kiln_data::captioned_digits::to_rgb32;
use kiln_data::idx::{load_mnist, Mnist, MnistSplit};
use kiln_data::shapes::{generate, ShapesParams, ShapesSample, IMAGE_SIZE};
use kiln_models::vqvae::{images_to_tensor, reconstruction_stats, VqVae, VqVaeConfig};

use super::*;

/// The `kind` of a VQ-VAE model folder.
pub const VQVAE_KIND: &str = "vqvae";

/// Picture sets the tokenizer trains on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub(super) enum ImageSet {
    /// Procedural captioned shapes (generated from --seed).
    Shapes,
    /// MNIST digits (--mnist DIR), centred on a 32×32 black RGB canvas.
    Digits,
}

#[derive(Args)]
pub(super) struct VqVaeArgs {
    /// Pictures to learn from.
    #[arg(long, value_name = "shapes|digits", default_value = "shapes")]
    dataset: ImageSet,
    /// Folder of the MNIST IDX files (with --dataset digits).
    #[arg(long, value_name = "DIR")]
    mnist: Option<PathBuf>,
    /// Training pictures (shapes are generated; digits are the first N of MNIST's training
    /// split).
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    train_size: usize,
    /// Validation pictures (shapes from another seed; digits from MNIST's test split).
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    val_size: usize,
    /// Hidden channels of the encoder and decoder.
    #[arg(long, value_name = "N", default_value_t = 64)]
    hidden: usize,
    /// Code dimension.
    #[arg(long, value_name = "N", default_value_t = 32)]
    embed_dim: usize,
    /// Codebook size.
    #[arg(long, value_name = "K", default_value_t = 256)]
    codebook_size: usize,
    /// Commitment weight β.
    #[arg(long, value_name = "X", default_value_t = 0.25)]
    beta: f64,
    /// EMA decay of the codebook.
    #[arg(long, value_name = "X", default_value_t = 0.99)]
    decay: f64,
    /// Restart a code whose EMA usage (vectors per batch) falls below this (0: never).
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    dead_code_threshold: f64,
    /// Residual blocks at the code grid's resolution in the encoder and in the decoder
    #[arg(long, value_name = "N", default_value_t = 0)]
    res_blocks: usize,
    /// How the decoder doubles its resolution: `nearest` (nearest neighbour, then a
    /// convolution) or `pixel-shuffle` (a convolution to 4× the channels, then depth-to-space)
    #[arg(
        long,
        value_enum,
        value_name = "nearest|pixel-shuffle",
        default_value = "pixel-shuffle"
    )]
    upsample: UpsampleArg,
    /// Colour codes of a layered tokenizer: each code is a pattern code (codebook size /
    /// this) and a colour code, painted as a coverage mask over two colours (0: one plain
    /// codebook)
    #[arg(long, value_name = "N", default_value_t = 0)]
    colour_codes: usize,
    /// Weight of the edge term of the loss: the squared error of neighbouring pixels'
    /// differences, which keeps thin outlines (0: plain MSE)
    #[arg(long, value_name = "X", default_value_t = 0.0)]
    edge_weight: f64,
    /// Placement jitter of the shapes pictures in pixels, at most 2, for training and
    /// validation (0: kiln-data's standard placement; see `ShapesParams::jitter`)
    #[arg(long, value_name = "PX", default_value_t = 0.0)]
    jitter: f64,
    #[command(flatten)]
    run: RunArgs,
}

/// `n` shapes pictures of the training part (generated from `seed`) or the validation part
/// (from another stream of the same seed); `kiln train vqvae` and `kiln train dalle` share
/// these streams.
/// `two_objects` is the fraction of pictures with two objects (`None`: kiln-data's default);
/// `jitter` the placement jitter in pixels (`ShapesParams::jitter`).
pub(super) fn shapes_split(
    seed: u64,
    n: usize,
    train: bool,
    two_objects: Option<f64>,
    jitter: f64,
    small_jitter: Option<f64>,
    pair_jitter: Option<f64>,
) -> Result<Vec<ShapesSample>> {
    let seed = if train { seed } else { seed ^ 0x0056_414c_4944 };
    let default = ShapesParams::default();
    let p = ShapesParams {
        n,
        two_object_fraction: two_objects.unwrap_or(default.two_object_fraction),
        jitter,
        small_jitter,
        pair_jitter,
        ..default
    };
    Ok(generate(&p, seed)?)
}

/// MNIST's training split (`train`) or test split from the folder `--mnist` names.
pub(super) fn mnist_split(dir: Option<&std::path::Path>, train: bool) -> Result<Mnist> {
    let dir =
        dir.context("--dataset digits needs --mnist DIR (the folder of the MNIST IDX files)")?;
    let split = if train {
        MnistSplit::Train
    } else {
        MnistSplit::Test
    };
    load_mnist(dir, split).with_context(|| format!("cannot read MNIST from {}", dir.display()))
}

/// Pictures (n, 3, 32, 32) in [0, 1] of `set`: the training or the validation part.
fn pictures(a: &VqVaeArgs, train: bool) -> Result<Tensor> {
    let n = if train { a.train_size } else { a.val_size };
    if n == 0 {
        bail!("--train-size and --val-size must be at least 1");
    }
    let bytes: Vec<u8> = match a.dataset {
        ImageSet::Shapes => shapes_split(a.run.seed, n, train, None, a.jitter, None, None)?
            .into_iter()
            .flat_map(|s| s.image)
            .collect(),
        ImageSet::Digits => {
            let m = mnist_split(a.mnist.as_deref(), train)?;
            let mut out = Vec::with_capacity(n * IMAGE_SIZE * IMAGE_SIZE * 3);
            let px = m.rows * m.cols;
            for i in 0..n.min(m.len()) {
                out.extend(to_rgb32(&m.images[i * px..(i + 1) * px], m.rows, m.cols)?);
            }
            out
        }
    };
    let count = bytes.len() / (IMAGE_SIZE * IMAGE_SIZE * 3);
    Ok(images_to_tensor(&bytes, count, 3, IMAGE_SIZE)?)
}

pub(super) fn train_vqvae(a: VqVaeArgs) -> Result<()> {
    let vq_config = VqVaeConfig {
        hidden: a.hidden,
        embed_dim: a.embed_dim,
        codebook_size: a.codebook_size,
        beta: a.beta,
        decay: a.decay,
        dead_code_threshold: a.dead_code_threshold,
        res_blocks: a.res_blocks,
        colour_codes: a.colour_codes,
        edge_weight: a.edge_weight,
        upsample: match a.upsample {
            UpsampleArg::Nearest => kiln_models::vqvae::Upsample::Nearest,
            UpsampleArg::PixelShuffle => kiln_models::vqvae::Upsample::PixelShuffle,
        },
        ..VqVaeConfig::default()
    };
    vq_config.validate().context("invalid VQ-VAE settings")?;
    let record = json!({
        "kind": VQVAE_KIND,
        "vqvae": vq_config,
        "dataset": format!("{:?}", a.dataset).to_lowercase(),
        "mnist": a.mnist,
        "train_size": a.train_size,
        "val_size": a.val_size,
        "jitter": a.jitter,
    });
    let config = a.run.train_config(record)?;
    let (xt, xv) = (pictures(&a, true)?, pictures(&a, false)?);
    // the target is the picture itself: the second tensor only gives the batches their rows
    let rows = |x: &Tensor| -> Result<TensorData> {
        let y = Tensor::zeros(x.dim(0)?, DType::U32, &Device::Cpu)?;
        Ok(TensorData::new(x.clone(), y)?)
    };
    let (train, valid) = (rows(&xt)?, rows(&xv)?);
    let vars = SeededVarMap::new(a.run.seed);
    let model = VqVae::new(vq_config.clone(), vars.var_builder())?;
    let t0 = Instant::now();
    let report = fit(&model, &vars, &train, &valid, &config, &a.run)?;
    let wall = t0.elapsed().as_secs_f64();
    let meta = ModelMeta {
        features: Vec::new(),
        target: "picture".into(),
        classes: None,
        preprocessing: None,
    };
    kiln_models::folder::save(
        &a.run.out.join("model"),
        VQVAE_KIND,
        &meta,
        serde_json::to_value(&vq_config)?,
        vars.var_map(),
    )
    .with_context(|| format!("cannot save the model into {}", a.run.out.display()))?;
    let final_train = measure(&model, &train, config.batch_size, TRAIN_MEASURE_MAX)?;
    let mut final_valid = measure(&model, &valid, config.batch_size, usize::MAX)?;
    let stats = reconstruction_stats(&model, &xv, 256)?;
    final_valid["reconstruction"] = serde_json::to_value(stats)?;
    let seen = samples_seen(
        report.start_step,
        report.steps,
        train.len(),
        config.batch_size,
    );
    finish(&a.run, &report, final_train, final_valid, wall, seen, false)?;
    if !a.run.json {
        println!(
            "validation  reconstruction MSE {:.5}  PSNR {:.2} dB  codes used {}/{}  perplexity {:.1}",
            stats.mse, stats.psnr, stats.codes_used, stats.codebook_size, stats.perplexity
        );
    }
    Ok(())
}

/// `--upsample`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum UpsampleArg {
    /// Nearest neighbour ×2, then a 3×3 convolution.
    Nearest,
    /// A 3×3 convolution to 4× the channels, then depth-to-space.
    PixelShuffle,
}
