//! `kiln train dalle`: the DALL-E prior (`kiln_models::text2image`) on captioned shapes or
//! captioned MNIST digits, over the codes of a trained VQ-VAE (`kiln train vqvae`). The
//! pictures are encoded once; the prior then learns the codes from the captions with kiln's
//! training loop (progress, validation loss, checkpoints, `--resume`). `RUN_DIR/model/` is the
//! text-to-image model folder (config.json, vqvae/ copied from --vqvae, prior/), which
//! `kiln generate image --model RUN_DIR` draws from.

use candle_core::{Device, Tensor};
use kiln_core::folder::Tensors;
use kiln_core::ModelFolder;
use kiln_data::captioned_digits::{captioned, digits_vocabulary, to_rgb32};

use kiln_data::shapes::{partial_caption, Vocabulary, IMAGE_SIZE, TEMPLATES_ONE};
use kiln_models::text2image::{
    folder::VQVAE_KIND, ImageModel, ImagePositions, ImageSampling, Prior, PriorConfig,
};
use kiln_models::vqvae::{images_to_tensor, VqVae, VqVaeConfig};
use rand::Rng as _;

use super::vqvae::{mnist_split, shapes_split, ImageSet};
use super::*;

#[derive(Args)]
pub(super) struct DalleArgs {
    /// The VQ-VAE: a `kiln train vqvae` run folder or its model/ folder.
    #[arg(long, value_name = "DIR")]
    vqvae: PathBuf,
    /// Captioned pictures to learn from.
    #[arg(long, value_name = "shapes|digits", default_value = "shapes")]
    dataset: ImageSet,
    /// Folder of the MNIST IDX files (with --dataset digits).
    #[arg(long, value_name = "DIR")]
    mnist: Option<PathBuf>,
    /// Training pictures (shapes are generated from --seed, held-out combinations excluded;
    /// digits are the first N of MNIST's training split).
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    train_size: usize,
    /// Validation pictures (shapes from another seed; digits from MNIST's test split).
    #[arg(long, value_name = "N", default_value_t = 1_000)]
    val_size: usize,
    /// Transformer blocks.
    #[arg(long, value_name = "N", default_value_t = 4)]
    n_layer: usize,
    /// Attention heads; must divide --n-embd.
    #[arg(long, value_name = "N", default_value_t = 4)]
    n_head: usize,
    /// Width of the residual stream.
    #[arg(long, value_name = "N", default_value_t = 128)]
    n_embd: usize,
    /// Caption length in words [default: the longest training caption].
    #[arg(long, value_name = "L")]
    caption_len: Option<usize>,
    /// Dropout on embeddings, attention and residual branches, in [0, 1).
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    dropout: f64,
    /// Probability of training on an empty caption (for classifier-free guidance), in [0, 1).
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0.1,
        allow_negative_numbers = true
    )]
    cond_drop: f64,
    /// Fraction of the training pictures with two objects, in [0, 1] [default: kiln-data's,
    /// 0.3] (shapes only; the validation pictures keep the default)
    #[arg(long, value_name = "X")]
    two_object_fraction: Option<f64>,
    /// Placement jitter of the shapes pictures in pixels, at most 2, for training and
    /// validation (0: kiln-data's standard placement; see `ShapesParams::jitter`)
    #[arg(long, value_name = "PX", default_value_t = 0.0)]
    jitter: f64,
    /// Placement jitter of small objects in pixels, at most 2, if not --jitter's (see
    /// `ShapesParams::small_jitter`) [default: --jitter]
    #[arg(long, value_name = "PX")]
    small_jitter: Option<f64>,
    /// Placement jitter of the objects of two-object pictures in pixels, at most 2, if not
    /// --jitter's; small ones keep --small-jitter where given (see
    /// `ShapesParams::pair_jitter`) [default: --jitter]
    #[arg(long, value_name = "PX")]
    pair_jitter: Option<f64>,
    /// For each two-object training picture, with this probability add a copy captioned
    /// with one of its objects alone, as a partial caption ("and a small red circle in the
    /// top left", kiln-data's `partial_caption`), in [0, 1] (shapes only). Such a prior can
    /// compose two-object prompts from their objects' partial captions (`--compose`).
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    partial_captions: f64,
    /// Store composition of several-object prompts as the model's sampling default (see
    /// `kiln generate image --compose`)
    #[arg(long)]
    compose: bool,
    /// Over a layered tokenizer, draw each code's colour given its pattern (a small head on
    /// the hidden state and the pattern) instead of independently of it
    #[arg(long)]
    colour_given_pattern: bool,
    /// How the prior embeds image positions: absolute (one learned vector per position) or
    /// factorized (a row vector plus a column vector, shared along the grid's rows and
    /// columns, so shapes carry over to cells where training never showed them)
    #[arg(long, value_name = "absolute|factorized", default_value = "absolute")]
    image_positions: ImagePositionsArg,
    /// Give the prior's attention a learned bias per head for each (row, column) offset
    /// between image codes (a two-dimensional relative position bias)
    #[arg(long)]
    relative_attention: bool,
    /// Final learning rate of --schedule cosine and warmup-cosine.
    #[arg(
        long,
        value_name = "X",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    min_lr: f64,
    /// Guidance scale stored as the model's sampling default.
    #[arg(long, value_name = "G", default_value_t = 3.0)]
    guidance: f64,
    /// Guidance scale of each object of a composed prompt stored as the model's sampling
    /// default [default: --guidance].
    #[arg(long, value_name = "G")]
    compose_guidance: Option<f64>,
    /// Temperature stored as the model's sampling default.
    #[arg(long, value_name = "T", default_value_t = 1.0)]
    temperature: f64,
    /// Top-k stored as the model's sampling default (0: off).
    #[arg(long, value_name = "K", default_value_t = 0)]
    top_k: usize,
    #[command(flatten)]
    run: RunArgs,
}

/// `--image-positions`.
#[derive(Clone, Copy, ValueEnum)]
enum ImagePositionsArg {
    Absolute,
    Factorized,
}

impl From<ImagePositionsArg> for ImagePositions {
    fn from(a: ImagePositionsArg) -> Self {
        match a {
            ImagePositionsArg::Absolute => ImagePositions::Absolute,
            ImagePositionsArg::Factorized => ImagePositions::Factorized,
        }
    }
}

/// Captions and pictures (n · 32 · 32 · 3 bytes) of the training or the validation part.
fn captioned_pictures(a: &DalleArgs, train: bool) -> Result<(Vec<String>, Vec<u8>)> {
    let n = if train { a.train_size } else { a.val_size };
    if n == 0 {
        bail!("--train-size and --val-size must be at least 1");
    }
    match a.dataset {
        ImageSet::Shapes => {
            let two = if train { a.two_object_fraction } else { None };
            let samples = shapes_split(
                a.run.seed,
                n,
                train,
                two,
                a.jitter,
                a.small_jitter,
                a.pair_jitter,
            )?;
            let mut captions: Vec<String> = samples.iter().map(|s| s.caption.clone()).collect();
            let mut bytes: Vec<u8> = samples.iter().flat_map(|s| s.image.clone()).collect();
            if train && a.partial_captions > 0.0 {
                let mut rng = kiln_core::rng(a.run.seed ^ 0x5041_5254);
                for s in samples.iter().filter(|s| s.objects.len() > 1) {
                    if rng.random::<f64>() < a.partial_captions {
                        let o = &s.objects[rng.random_range(0..s.objects.len())];
                        let template = rng.random_range(0..TEMPLATES_ONE);
                        captions.push(partial_caption(o, template));
                        bytes.extend_from_slice(&s.image);
                    }
                }
            }
            Ok((captions, bytes))
        }
        ImageSet::Digits => {
            let m = mnist_split(a.mnist.as_deref(), train)?;
            let px = m.rows * m.cols;
            let mut captions = Vec::new();
            let mut bytes = Vec::with_capacity(n * IMAGE_SIZE * IMAGE_SIZE * 3);
            for c in captioned(&m, a.run.seed).into_iter().take(n) {
                bytes.extend(to_rgb32(
                    &m.images[c.index * px..(c.index + 1) * px],
                    m.rows,
                    m.cols,
                )?);
                captions.push(c.caption);
            }
            Ok((captions, bytes))
        }
    }
}

/// The VQ-VAE folder of `dir` (a run folder or its model/), its parts and the network.
fn load_vqvae(dir: &Path) -> Result<((kiln_core::folder::FolderConfig, Tensors), VqVae)> {
    let dir = crate::models::model_dir(dir);
    let (config, tensors) = ModelFolder::load_parts(&dir)
        .with_context(|| format!("--vqvae {}: cannot read the VQ-VAE", dir.display()))?;
    if config.kind != VQVAE_KIND {
        bail!(
            "--vqvae {}: holds a {:?} model, expected a VQ-VAE (kiln train vqvae)",
            dir.display(),
            config.kind
        );
    }
    let cfg: VqVaeConfig = serde_json::from_value(config.model.clone())
        .with_context(|| format!("--vqvae {}: not a VQ-VAE config", dir.display()))?;
    let net = VqVae::new(cfg, kiln_models::folder::var_builder(&tensors)?)
        .with_context(|| format!("--vqvae {}: the weights do not fit", dir.display()))?;
    Ok(((config, tensors), net))
}

/// Codes (n, G²) of `bytes` (n pictures), encoded 256 at a time.
fn encode(vq: &VqVae, bytes: &[u8]) -> Result<Tensor> {
    let size = IMAGE_SIZE * IMAGE_SIZE * 3;
    let mut all = Vec::new();
    for chunk in bytes.chunks(256 * size) {
        let x = images_to_tensor(chunk, chunk.len() / size, 3, IMAGE_SIZE)?;
        all.push(vq.encode(&x)?.flatten_from(1)?); // (b, G²)
    }
    Ok(Tensor::cat(&all, 0)?)
}

/// Word ids (n, L) of the captions.
fn caption_ids(vocab: &Vocabulary, captions: &[String], len: usize) -> Result<Tensor> {
    let mut ids = Vec::with_capacity(captions.len() * len);
    for c in captions {
        ids.extend(vocab.encode_padded(c, len)?);
    }
    Ok(Tensor::from_vec(ids, (captions.len(), len), &Device::Cpu)?)
}

pub(super) fn train_dalle(a: DalleArgs) -> Result<()> {
    let sampling = ImageSampling {
        guidance: a.guidance,
        temperature: a.temperature,
        top_k: a.top_k,
        compose: a.compose,
        compose_guidance: a.compose_guidance,
        ..ImageSampling::default()
    };
    sampling.validate().context("invalid sampling defaults")?;
    if !(0.0..=1.0).contains(&a.partial_captions) {
        bail!(
            "--partial-captions must be a probability in [0, 1], got {}",
            a.partial_captions
        );
    }
    if a.partial_captions > 0.0 && a.dataset != ImageSet::Shapes {
        bail!("--partial-captions needs --dataset shapes (digit captions name one object)");
    }
    let (vq_parts, vq) = load_vqvae(&a.vqvae)?;
    let vocab = match a.dataset {
        ImageSet::Shapes => Vocabulary::shapes(),
        ImageSet::Digits => digits_vocabulary(),
    };
    let (train_captions, train_bytes) = captioned_pictures(&a, true)?;
    let (val_captions, val_bytes) = captioned_pictures(&a, false)?;
    let longest = train_captions
        .iter()
        .chain(&val_captions)
        .map(|c| Vocabulary::split(c).len())
        .max()
        .unwrap_or(1);
    let caption_len = a.caption_len.unwrap_or(longest);
    if caption_len < longest {
        bail!("--caption-len {caption_len} is shorter than the longest caption ({longest} words)");
    }
    let prior_config = PriorConfig {
        text_vocab: vocab.len(),
        caption_len,
        codebook_size: vq.config().codebook_size,
        grid: vq.config().grid(),
        n_layer: a.n_layer,
        n_head: a.n_head,
        n_embd: a.n_embd,
        dropout: a.dropout,
        cond_drop: a.cond_drop,
        colour_codes: vq.config().colour_codes,
        colour_given_pattern: a.colour_given_pattern,
        image_positions: a.image_positions.into(),
        relative_attention: a.relative_attention,
    };
    prior_config.validate().context("invalid prior settings")?;
    let dataset = format!("{:?}", a.dataset).to_lowercase();
    let record = json!({
        "kind": "text-to-image-prior",
        "prior": prior_config,
        "dataset": dataset,
        "vqvae": a.vqvae,
        "mnist": a.mnist,
        "train_size": a.train_size,
        "val_size": a.val_size,
        "two_object_fraction": a.two_object_fraction,
        "jitter": a.jitter,
        "small_jitter": a.small_jitter,
        "pair_jitter": a.pair_jitter,
        "partial_captions": a.partial_captions,
    });
    let mut config = a.run.train_config(record)?;
    match &mut config.schedule {
        Schedule::Cosine { eta_min } | Schedule::WarmupCosine { eta_min, .. } => {
            *eta_min = a.min_lr
        }
        _ => {}
    }
    config.validate().context("invalid training settings")?;

    let t_enc = Instant::now();
    let train = TensorData::new(
        caption_ids(&vocab, &train_captions, caption_len)?,
        encode(&vq, &train_bytes)?,
    )?;
    let valid = TensorData::new(
        caption_ids(&vocab, &val_captions, caption_len)?,
        encode(&vq, &val_bytes)?,
    )?;
    if !a.run.quiet {
        eprintln!(
            "encoded {} + {} pictures with the VQ-VAE in {:.1} s",
            train.len(),
            valid.len(),
            t_enc.elapsed().as_secs_f64()
        );
    }
    let vars = SeededVarMap::new(a.run.seed);
    let prior = Prior::new(prior_config.clone(), vars.var_builder())?;
    let t0 = Instant::now();
    let report = fit(&prior, &vars, &train, &valid, &config, &a.run)?;
    let wall = t0.elapsed().as_secs_f64();

    let model_dir = a.run.out.join("model");
    let prior_tensors = kiln_models::folder::var_tensors(vars.var_map())?;
    ImageModel::new(
        &dataset,
        vocab,
        sampling,
        vq_parts,
        (prior_config, prior_tensors),
    )?
    .save(&model_dir)
    .with_context(|| format!("cannot save the model into {}", model_dir.display()))?;

    let final_train = measure(&prior, &train, config.batch_size, TRAIN_MEASURE_MAX)?;
    let last_eval = history::read(&a.run.out.join("history.jsonl"))?
        .into_iter()
        .rev()
        .find(|r| r.kind == "eval" && r.step == report.steps);
    let final_valid = match last_eval {
        Some(r) => json!({ "loss": r.loss, "accuracy": r.accuracy, "examples": valid.len() }),
        None => measure(&prior, &valid, config.batch_size, usize::MAX)?,
    };
    let seen = samples_seen(
        report.start_step,
        report.steps,
        train.len(),
        config.batch_size,
    );
    finish(&a.run, &report, final_train, final_valid, wall, seen, true)?;
    if !a.run.json {
        println!("model       {} (text-to-image)", model_dir.display());
    }
    Ok(())
}
