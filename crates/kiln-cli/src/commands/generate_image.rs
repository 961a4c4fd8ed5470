//! `kiln generate image`: draw pictures for a prompt with a text-to-image model (a
//! `kiln train dalle` run or model folder, or kiln's embedded shapes model) into one PNG, a
//! grid when there are several.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args;
use kiln_data::shapes::IMAGE_SIZE;
use kiln_models::text2image::{ImageModel, ImageSampling};

use crate::models;

/// Arguments of `kiln generate image`.
#[derive(Args)]
pub struct ImageArgs {
    /// A text-to-image model: a `kiln train dalle` run folder or its model/ folder (default:
    /// kiln's embedded shapes model).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// What to draw, in the model's caption words (e.g. "a small red circle in the top left").
    #[arg(long, value_name = "TEXT")]
    prompt: String,
    /// Pictures to draw (one PNG: a grid of them).
    #[arg(long, value_name = "N", default_value_t = 1)]
    n: usize,
    /// Classifier-free guidance scale (1: the conditional model alone) [default: the model's].
    #[arg(long, value_name = "G")]
    guidance: Option<f64>,
    /// Sampling temperature (0: always the most likely code) [default: the model's].
    #[arg(long, value_name = "T")]
    temperature: Option<f64>,
    /// Draw each code among the K most likely only (0: all) [default: the model's].
    #[arg(long, value_name = "K")]
    top_k: Option<usize>,
    /// Draw a prompt of several fully described objects from its one-object captions, each
    /// object guided by its own (`true`), or every prompt from its whole caption (`false`)
    /// [default: the model's].
    #[arg(long, value_name = "true|false")]
    compose: Option<bool>,
    /// Guidance scale of each object of a composed prompt [default: the model's, or
    /// --guidance where the model has none].
    #[arg(long, value_name = "G")]
    compose_guidance: Option<f64>,
    /// Draw N candidates per picture and keep the one the reranker scores best (needs a model
    /// with a reranker).
    #[arg(long, value_name = "N", default_value_t = 1)]
    rerank: usize,
    /// Seed of the sampler: the same seed draws the same pictures.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Each picture's pixels become SCALE×SCALE pixels in the PNG.
    #[arg(long, value_name = "SCALE", default_value_t = 4)]
    scale: u32,
    /// The PNG to write.
    #[arg(long, value_name = "FILE.png")]
    out: PathBuf,
    /// Print one JSON object (file, pictures, timings) instead of a line of text.
    #[arg(long)]
    json: bool,
}

/// Run `kiln generate image`.
pub fn run(a: ImageArgs) -> Result<()> {
    let t_load = Instant::now();
    let model = match &a.model {
        Some(dir) => {
            let dir = models::model_dir(dir);
            ImageModel::load(&dir)
                .with_context(|| format!("cannot load the text-to-image model {}", dir.display()))?
        }
        None => kiln_models::text2image::embedded()
            .context("cannot load kiln's embedded text-to-image model")?,
    };
    let load_s = t_load.elapsed().as_secs_f64();
    let d = model.sampling();
    let s = ImageSampling {
        n: a.n,
        guidance: a.guidance.unwrap_or(d.guidance),
        temperature: a.temperature.unwrap_or(d.temperature),
        top_k: a.top_k.unwrap_or(d.top_k),
        seed: a.seed,
        rerank: a.rerank,
        compose: a.compose.unwrap_or(d.compose),
        compose_guidance: a.compose_guidance.or(d.compose_guidance),
    };
    if a.scale == 0 {
        anyhow::bail!("--scale must be at least 1");
    }
    let t0 = Instant::now();
    let pictures = model
        .generate(&a.prompt, &s)
        .with_context(|| format!("cannot draw {:?}", a.prompt))?;
    let secs = t0.elapsed().as_secs_f64();
    let grid = grid(&pictures, a.scale);
    grid.save_with_format(&a.out, image::ImageFormat::Png)
        .with_context(|| format!("cannot write {}", a.out.display()))?;
    let per = secs / pictures.len().max(1) as f64;
    if a.json {
        let doc = serde_json::json!({
            "out": a.out,
            "prompt": a.prompt,
            "pictures": pictures.len(),
            "sampling": s,
            "dataset": model.dataset(),
            "load_seconds": load_s,
            "seconds": secs,
            "seconds_per_picture": per,
            "width": grid.width(),
            "height": grid.height(),
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        println!(
            "wrote {} ({} picture{}, {secs:.2} s, {per:.3} s per picture)",
            a.out.display(),
            pictures.len(),
            if pictures.len() == 1 { "" } else { "s" }
        );
    }
    Ok(())
}

/// The pictures (32·32·3 bytes each) in a near-square grid with 1-pixel white gaps (scaled),
/// each pixel drawn as a `scale`×`scale` block.
fn grid(pictures: &[Vec<u8>], scale: u32) -> image::RgbImage {
    let n = pictures.len().max(1) as u32;
    let cols = (n as f64).sqrt().ceil() as u32;
    let rows = n.div_ceil(cols);
    let side = IMAGE_SIZE as u32 * scale;
    let gap = if n > 1 { scale } else { 0 };
    let w = cols * side + (cols - 1) * gap;
    let h = rows * side + (rows - 1) * gap;
    let mut img = image::RgbImage::from_pixel(w, h, image::Rgb([255, 255, 255]));
    for (i, pic) in pictures.iter().enumerate() {
        let (ox, oy) = (
            (i as u32 % cols) * (side + gap),
            (i as u32 / cols) * (side + gap),
        );
        for y in 0..side {
            for x in 0..side {
                let p = ((y / scale) as usize * IMAGE_SIZE + (x / scale) as usize) * 3;
                if let Some(rgb) = pic.get(p..p + 3) {
                    img.put_pixel(ox + x, oy + y, image::Rgb([rgb[0], rgb[1], rgb[2]]));
                }
            }
        }
    }
    img
}
