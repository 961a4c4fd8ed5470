//! `kiln train clip`: the CLIP-style reranker (a caption encoder and a picture encoder trained
//! with the symmetric InfoNCE loss) on captioned shapes or captioned MNIST digits. At the end it
//! reports, on fresh pictures (another seed, or MNIST's test split), retrieval accuracy in both
//! directions and, for shapes, how often the true caption beats a hard negative (one attribute
//! changed), per attribute, on fresh pictures and on renders of the held-out combinations.

use candle_core::{Device, Tensor};
use kiln_data::captioned_digits::{captioned, digits_vocabulary, to_rgb32};

use kiln_data::shapes::{
    caption, generate, held_out_prompts, render_prompt, ShapesParams, ShapesSample, Vocabulary,
    IMAGE_SIZE, TEMPLATES_ONE,
};
use kiln_models::clip::measure::{
    hard_negatives, prompt_fits, random_hard_negative, retrieval, AttributeScore,
};
use kiln_models::clip::{Clip, ClipConfig, ImageHead, CLIP_KIND};
use kiln_models::vqvae::images_to_tensor;
use rand::Rng as _;

use super::vqvae::{mnist_split, ImageSet};
use super::*;

#[derive(Args)]
pub(super) struct ClipArgs {
    /// Captioned pictures to learn from.
    #[arg(long, value_name = "shapes|digits", default_value = "shapes")]
    dataset: ImageSet,
    /// Folder of the MNIST IDX files (with --dataset digits).
    #[arg(long, value_name = "DIR")]
    mnist: Option<PathBuf>,
    /// Training pictures (shapes: generated from --seed, held-out combinations excluded;
    /// digits: the first N of MNIST's training split).
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    train_size: usize,
    /// Fresh validation pictures (shapes from another seed; digits from MNIST's test split).
    #[arg(long, value_name = "N", default_value_t = 2_000)]
    val_size: usize,
    /// Add one hard-negative caption per training picture (one attribute changed, NegCLIP);
    /// shapes only.
    #[arg(long)]
    hard_negatives: bool,
    /// Placement jitter of the training shapes pictures in pixels, at most 2 (0: kiln-data's
    /// standard placement; see `ShapesParams::jitter`); the validation pictures keep the
    /// standard placement.
    #[arg(long, value_name = "PX", default_value_t = 0.0)]
    jitter: f64,
    /// Group size of the retrieval measure (each picture against the captions of its group).
    #[arg(long, value_name = "N", default_value_t = 64)]
    retrieval_batch: usize,
    /// Width of the caption transformer.
    #[arg(long, value_name = "N", default_value_t = 64)]
    text_width: usize,
    /// Blocks of the caption transformer.
    #[arg(long, value_name = "N", default_value_t = 3)]
    text_layers: usize,
    /// Attention heads of the caption transformer.
    #[arg(long, value_name = "N", default_value_t = 4)]
    text_heads: usize,
    /// Longest caption in words.
    #[arg(long, value_name = "N", default_value_t = 32)]
    max_words: usize,
    /// Channels of the first picture convolution.
    #[arg(long, value_name = "N", default_value_t = 32)]
    channels: usize,
    /// Width of the picture encoder's hidden layer.
    #[arg(long, value_name = "N", default_value_t = 256)]
    image_hidden: usize,
    /// Dimension of the shared embedding.
    #[arg(long, value_name = "N", default_value_t = 64)]
    embed_dim: usize,
    /// Dropout of the caption transformer in training.
    #[arg(long, value_name = "X", default_value_t = 0.0)]
    dropout: f64,
    /// How the picture meets the caption: `flat` (CLIP's one embedding per picture) or
    /// `where-what` (the caption weighs the picture's 8×8 locations; see
    /// `kiln_models::clip::ImageHead`).
    #[arg(long, value_name = "HEAD", default_value = "flat")]
    image_head: HeadArg,
    /// Share of the two-object training pictures captioned by one of their objects alone (a
    /// one-object caption of a random template), in [0, 1]; shapes only. A where-what head
    /// reads one object per caption and scores a caption of several objects object by
    /// object.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    object_captions: f64,
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Clone, Copy, ValueEnum)]
enum HeadArg {
    Flat,
    WhereWhat,
}

impl From<HeadArg> for ImageHead {
    fn from(h: HeadArg) -> Self {
        match h {
            HeadArg::Flat => ImageHead::Flat,
            HeadArg::WhereWhat => ImageHead::WhereWhat,
        }
    }
}

/// `samples` with a share `p` of the two-object pictures (drawn from `seed`) recaptioned by
/// one of their objects alone: the sample's `objects`, `caption` and `prompt` then describe
/// what the caption states (that object), as hard negatives need, while the picture keeps
/// both.
fn object_captioned(mut samples: Vec<ShapesSample>, p: f64, seed: u64) -> Vec<ShapesSample> {
    let mut rng = kiln_core::rng(seed);
    for s in samples.iter_mut().filter(|s| s.objects.len() > 1) {
        if rng.random::<f64>() >= p {
            continue;
        }
        let object = s.objects[rng.random_range(0..s.objects.len())];
        let prompt = caption(&[object], rng.random_range(0..TEMPLATES_ONE));
        s.objects = vec![object];
        s.caption = prompt.text.clone();
        s.prompt = prompt;
    }
    samples
}

/// Captioned pictures: bytes (`n · 32 · 32 · 3`), captions, and for shapes the samples.
struct Pictures {
    bytes: Vec<u8>,
    captions: Vec<String>,
    shapes: Vec<ShapesSample>,
    digits: Vec<u8>,
}

/// Seed of the fresh validation pictures.
fn val_seed(seed: u64) -> u64 {
    seed ^ 0x0043_4c49_5056
}

fn pictures(a: &ClipArgs, train: bool) -> Result<Pictures> {
    let n = if train { a.train_size } else { a.val_size };
    if n == 0 {
        bail!("--train-size and --val-size must be at least 1");
    }
    let seed = if train {
        a.run.seed
    } else {
        val_seed(a.run.seed)
    };
    match a.dataset {
        ImageSet::Shapes => {
            let p = ShapesParams {
                n,
                jitter: if train { a.jitter } else { 0.0 },
                ..Default::default()
            };
            let mut shapes = generate(&p, seed)?;
            if train && a.object_captions > 0.0 {
                shapes = object_captioned(
                    shapes,
                    a.object_captions,
                    kiln_train::data::mix(seed, 0x4f42_4a43),
                );
            }
            Ok(Pictures {
                bytes: shapes
                    .iter()
                    .flat_map(|s| s.image.iter().copied())
                    .collect(),
                captions: shapes.iter().map(|s| s.caption.clone()).collect(),
                shapes,
                digits: Vec::new(),
            })
        }
        ImageSet::Digits => {
            let m = mnist_split(a.mnist.as_deref(), train)?;
            let px = m.rows * m.cols;
            let caps = captioned(&m, seed);
            let mut out = Pictures {
                bytes: Vec::new(),
                captions: Vec::new(),
                shapes: Vec::new(),
                digits: Vec::new(),
            };
            for c in caps.into_iter().take(n) {
                let i = c.index;
                out.bytes
                    .extend(to_rgb32(&m.images[i * px..(i + 1) * px], m.rows, m.cols)?);
                out.captions.push(c.caption);
                out.digits.push(c.digit);
            }
            Ok(out)
        }
    }
}

/// Caption ids (n, T), or (n, 2, T) with a hard-negative caption per picture.
fn caption_ids(
    vocab: &Vocabulary,
    p: &Pictures,
    t: usize,
    negatives: Option<u64>,
) -> Result<Tensor> {
    let n = p.captions.len();
    let mut ids = Vec::with_capacity(n * t * 2);
    let mut rng = negatives.map(kiln_core::rng);
    for (i, c) in p.captions.iter().enumerate() {
        ids.extend(vocab.encode_padded(c, t)?);
        if let Some(rng) = rng.as_mut() {
            // no attribute applies: another picture's caption (an ordinary negative)
            let neg = random_hard_negative(&p.shapes[i], rng)
                .unwrap_or_else(|| p.captions[(i + 1) % n].clone());
            ids.extend(vocab.encode_padded(&neg, t)?);
        }
    }
    let shape: Vec<usize> = if negatives.is_some() {
        vec![n, 2, t]
    } else {
        vec![n, t]
    };
    Ok(Tensor::from_vec(ids, shape, &Device::Cpu)?)
}

fn print_hard_negatives(title: &str, scores: &[AttributeScore]) {
    println!("hard negatives, {title} (true caption > changed caption on the picture / true picture > changed picture with the caption):");
    for s in scores {
        println!(
            "  {:<9} caption {:.4}  picture {:.4}  ({} pairs)",
            s.attribute.name(),
            s.caption_accuracy,
            s.picture_accuracy,
            s.pairs
        );
    }
}

pub(super) fn train_clip(a: ClipArgs) -> Result<()> {
    let vocab = match a.dataset {
        ImageSet::Shapes => Vocabulary::shapes(),
        ImageSet::Digits => digits_vocabulary(),
    };
    let cc = ClipConfig {
        words: vocab.words().to_vec(),
        max_words: a.max_words,
        text_width: a.text_width,
        text_layers: a.text_layers,
        text_heads: a.text_heads,
        channels: a.channels,
        image_hidden: a.image_hidden,
        embed_dim: a.embed_dim,
        dropout: a.dropout,
        image_head: a.image_head.into(),
        ..ClipConfig::default()
    };
    cc.validate().context("invalid CLIP settings")?;
    if !(0.0..=1.0).contains(&a.object_captions) {
        bail!(
            "--object-captions: expected a share in [0, 1], got {}",
            a.object_captions
        );
    }
    if a.object_captions > 0.0 && a.dataset != ImageSet::Shapes {
        bail!("--object-captions needs --dataset shapes");
    }
    if a.hard_negatives && a.dataset != ImageSet::Shapes {
        bail!("--hard-negatives needs --dataset shapes (digit captions have one attribute)");
    }
    let record = json!({
        "kind": CLIP_KIND, "clip": cc,
        "dataset": format!("{:?}", a.dataset).to_lowercase(), "mnist": a.mnist,
        "train_size": a.train_size, "val_size": a.val_size, "hard_negatives": a.hard_negatives,
        "jitter": a.jitter, "object_captions": a.object_captions,
    });
    let config = a.run.train_config(record)?;
    let (tp, vp) = (pictures(&a, true)?, pictures(&a, false)?);
    let t = a.max_words;
    let negatives = a
        .hard_negatives
        .then(|| kiln_train::data::mix(a.run.seed, 0x004e_4547));
    let data = |p: &Pictures, neg: Option<u64>| -> Result<TensorData> {
        let x = images_to_tensor(&p.bytes, p.captions.len(), 3, IMAGE_SIZE)?;
        Ok(TensorData::new(x, caption_ids(&vocab, p, t, neg)?)?)
    };
    let (train, valid) = (data(&tp, negatives)?, data(&vp, None)?);
    let vars = SeededVarMap::new(a.run.seed);
    let model = Clip::new(cc, &vars)?;
    let t0 = Instant::now();
    let report = fit(&model, &vars, &train, &valid, &config, &a.run)?;
    let wall = t0.elapsed().as_secs_f64();
    let dir = a.run.out.join("model");
    model
        .save(&dir)
        .with_context(|| format!("cannot save the model into {}", dir.display()))?;
    let final_train = measure(&model, &train, config.batch_size, TRAIN_MEASURE_MAX)?;
    let mut final_valid = measure(&model, &valid, config.batch_size, usize::MAX)?;
    let r = match a.dataset {
        ImageSet::Shapes => retrieval(
            &model,
            &vp.bytes,
            &vp.captions,
            a.retrieval_batch,
            |i, j| prompt_fits(&vp.shapes[j].prompt, &vp.shapes[i].objects),
        )?,
        ImageSet::Digits => retrieval(
            &model,
            &vp.bytes,
            &vp.captions,
            a.retrieval_batch,
            |i, j| vp.digits[i] == vp.digits[j],
        )?,
    };
    final_valid["retrieval"] = serde_json::to_value(r)?;
    final_valid["logit_scale"] = json!(model.scale()?);
    let mut hard = None;
    if a.dataset == ImageSet::Shapes {
        let fresh = hard_negatives(&model, &vp.shapes, val_seed(a.run.seed) ^ 1)?;
        // 8 renders of each held-out prompt (sizes and cells as the prompts state them)
        let held: Vec<ShapesSample> = held_out_prompts()
            .iter()
            .enumerate()
            .flat_map(|(i, p)| (0..8u64).map(move |k| render_prompt(p, 1000 * i as u64 + k)))
            .collect::<kiln_core::Result<_>>()?;
        let held = hard_negatives(&model, &held, val_seed(a.run.seed) ^ 2)?;
        final_valid["hard_negatives"] = serde_json::to_value(&fresh)?;
        final_valid["hard_negatives_held_out"] = serde_json::to_value(&held)?;
        hard = Some((fresh, held));
    }
    let seen = samples_seen(
        report.start_step,
        report.steps,
        train.len(),
        config.batch_size,
    );
    finish(&a.run, &report, final_train, final_valid, wall, seen, true)?;
    if !a.run.json {
        println!(
            "retrieval on {} fresh pictures in groups of {}: picture→caption {:.4} (own caption {:.4})  caption→picture {:.4} (own picture {:.4})",
            r.pictures, r.batch, r.image_to_text, r.image_to_text_exact, r.text_to_image, r.text_to_image_exact
        );
        if let Some((fresh, held)) = hard {
            print_hard_negatives("fresh pictures", &fresh);
            print_hard_negatives("held-out combinations (256 renders)", &held);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_captions_recaption_the_asked_share_of_two_object_pictures_by_one_object() {
        let p = ShapesParams {
            n: 400,
            ..Default::default()
        };
        let samples = generate(&p, 3).unwrap();
        let two = samples.iter().filter(|s| s.objects.len() == 2).count();
        assert!(two > 80, "{two}");
        assert_eq!(object_captioned(samples.clone(), 0.0, 1), samples);
        let all = object_captioned(samples.clone(), 1.0, 1);
        let half = object_captioned(samples.clone(), 0.5, 1);
        assert_eq!(half, object_captioned(samples.clone(), 0.5, 1));
        let mut changed = 0;
        for ((s, a), h) in samples.iter().zip(&all).zip(&half) {
            assert_eq!((&a.image, &h.image), (&s.image, &s.image));
            if s.objects.len() == 1 {
                assert_eq!((a, h), (s, s));
                continue;
            }
            // the caption states one of the picture's objects, fully, and nothing else
            assert_eq!(a.objects.len(), 1);
            assert!(s.objects.contains(&a.objects[0]));
            assert_eq!(a.prompt.objects.len(), 1);
            assert!(a.prompt.objects[0].matches(&a.objects[0]));
            assert_eq!(a.caption, a.prompt.text);
            assert!(!a.caption.contains(" and "), "{}", a.caption);
            changed += (h != s) as usize;
        }
        assert!(
            (two / 2 - two / 6..two / 2 + two / 6).contains(&changed),
            "{changed} of {two}"
        );
    }
}
