//! `kiln predict`: predictions of a saved model for each row of a table, as CSV; or, with
//! `--image FILE.png`, the class of one image and the class probabilities.
//!
//! An image goes to the model as its training rows were: composited over white (transparent
//! pixels become background), converted to grayscale as Pillow's `convert("L")` does (or kept
//! RGB for 3-channel networks), resized to the network's height × width (shrunk by averaging
//! the pixels under each output pixel, enlarged bilinearly), and mapped to the training pixel
//! range.
//! MNIST and the built-in digits are light strokes on a dark background: with `--invert auto`
//! (the default) an image whose mean brightness is above one half (dark ink on light paper)
//! is inverted first.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, ValueEnum};
use image::imageops::FilterType;
use kiln_core::scale::ScalerKind;
use ndarray::Array2;
use serde_json::json;

use crate::data::{self, DataArgs};
use crate::models::{self, ImageInput, Loaded};
use crate::output::print_pairs;

/// Arguments of `kiln predict`.
#[derive(Args)]
#[command(mut_arg("data", |a| a.required_unless_present("image")))]
pub struct PredictArgs {
    /// Model folder written by `kiln fit --save`, or a run folder written by `kiln train`.
    #[arg(long, value_name = "DIR")]
    model: PathBuf,
    #[command(flatten)]
    data: DataArgs,
    /// Write the predictions here (CSV) instead of stdout.
    #[arg(long, value_name = "FILE.csv")]
    out: Option<PathBuf>,
    /// Classify this PNG image (with a CNN, or an MLP over pixel columns) instead of a table.
    #[arg(long, value_name = "FILE.png", conflicts_with_all = ["data", "dataset", "out"])]
    image: Option<PathBuf>,
    /// With --image: invert the gray levels first. auto inverts an image whose mean
    /// brightness is above 0.5 (dark ink on light paper), since the training digits are light
    /// on dark.
    #[arg(
        long,
        value_name = "auto|yes|no",
        default_value = "auto",
        requires = "image"
    )]
    invert: Invert,
    /// With --image: the pixel value of full brightness in the training data (default: the
    /// model's ÷N scaling when it has one, as MNIST models do (255); 16 for 8×8 models, the
    /// built-in digits' range; else 255).
    #[arg(long, value_name = "X", requires = "image")]
    pixel_max: Option<f64>,
    /// With --image: print one JSON object.
    #[arg(long, requires = "image")]
    json: bool,
}

/// When to invert an image's gray levels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Invert {
    /// When its mean brightness is above 0.5.
    Auto,
    /// Always.
    Yes,
    /// Never.
    No,
}

/// Run `kiln predict`.
pub fn run(args: PredictArgs) -> Result<()> {
    let loaded = models::load(&args.model)?;
    if let Some(path) = &args.image {
        return predict_image(&args, &loaded, path);
    }
    // The model's own features are read by name; a target column, if present, is ignored.
    let x = data::load_features(&args.data, &loaded.meta.features)?;
    let pred = loaded.predict(x.view())?;
    let proba = loaded.predict_proba(x.view())?;
    let mut csv = String::from("prediction");
    let classes = loaded.meta.classes.clone();
    if let (Some(_), Some(classes)) = (&proba, &classes) {
        for c in classes {
            csv += &format!(",proba_{c}");
        }
    }
    csv.push('\n');
    for (i, &p) in pred.iter().enumerate() {
        match &classes {
            Some(c) => csv += &c[p as usize],
            None => csv += &p.to_string(),
        }
        if let Some(proba) = &proba {
            for v in proba.row(i) {
                csv += &format!(",{v}");
            }
        }
        csv.push('\n');
    }
    match &args.out {
        Some(path) => {
            kiln_core::folder::write_atomic(path, csv.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!("wrote {} predictions to {}", pred.len(), path.display());
        }
        None => std::io::stdout().write_all(csv.as_bytes())?,
    }
    Ok(())
}

/// The pixel value of full brightness in the model's training rows (see `--pixel-max`).
fn default_pixel_max(loaded: &Loaded, input: ImageInput) -> f64 {
    if let Some(s) = &loaded.meta.preprocessing {
        let first = s.scale.first().copied().unwrap_or(0.0);
        let uniform = s.scale.iter().all(|&v| v == first) && s.offset.iter().all(|&v| v == 0.0);
        if s.kind == ScalerKind::MinMax && uniform && first > 0.0 {
            return first;
        }
    }
    if (input.height, input.width) == (8, 8) {
        16.0
    } else {
        255.0
    }
}

/// An image prepared for a network: its row of pixels in (C, H, W) order, in `[0, pixel_max]`.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageRow {
    /// C·H·W values.
    pub pixels: Vec<f64>,
    /// Whether the gray levels were inverted.
    pub inverted: bool,
    /// Mean brightness in [0, 1] of the resized image before any inversion.
    pub brightness: f64,
}

/// Turn `img` into one input row for `input` (see the module documentation).
fn image_row(
    img: &image::DynamicImage,
    input: ImageInput,
    invert: Invert,
    pixel_max: f64,
) -> Result<ImageRow> {
    let (w, h) = (input.width as u32, input.height as u32);
    let rgba = img.to_rgba8();
    // Transparent pixels become white paper.
    let over_white = |c: u8, a: u8| -> u8 {
        let (c, a) = (f64::from(c), f64::from(a) / 255.0);
        (c * a + 255.0 * (1.0 - a)).round() as u8
    };
    let channels: Vec<image::GrayImage> = match input.channels {
        1 => vec![image::GrayImage::from_fn(
            rgba.width(),
            rgba.height(),
            |x, y| {
                let p = rgba.get_pixel(x, y).0;
                let [r, g, b] = [0, 1, 2].map(|i| f64::from(over_white(p[i], p[3])));
                // ITU-R 601-2 luma, as Pillow's convert("L").
                image::Luma([((r * 299.0 + g * 587.0 + b * 114.0) / 1000.0).round() as u8])
            },
        )],
        3 => (0..3)
            .map(|i| {
                image::GrayImage::from_fn(rgba.width(), rgba.height(), |x, y| {
                    let p = rgba.get_pixel(x, y).0;
                    image::Luma([over_white(p[i], p[3])])
                })
            })
            .collect(),
        c => bail!("the model takes {c}-channel images; kiln reads 1 (gray) or 3 (RGB)"),
    };
    let resized: Vec<Vec<f64>> = channels
        .iter()
        .map(|c| {
            if c.width() >= w && c.height() >= h {
                area_resize(c, w as usize, h as usize)
            } else {
                image::imageops::resize(c, w, h, FilterType::Triangle)
                    .pixels()
                    .map(|p| f64::from(p.0[0]) / 255.0)
                    .collect()
            }
        })
        .collect();
    let count = resized.iter().map(Vec::len).sum::<usize>().max(1);
    let brightness = resized.iter().flatten().sum::<f64>() / count as f64;
    let inverted = match invert {
        Invert::Auto => brightness > 0.5,
        Invert::Yes => true,
        Invert::No => false,
    };
    let pixels = resized
        .into_iter()
        .flatten()
        .map(|v| if inverted { 1.0 - v } else { v } * pixel_max)
        .collect();
    Ok(ImageRow {
        pixels,
        inverted,
        brightness,
    })
}

/// For each of `dst` output cells along an axis of `src` pixels: the source pixels it covers
/// and the fraction of the cell each one fills.
fn area_weights(src: usize, dst: usize) -> Vec<Vec<(usize, f64)>> {
    let step = src as f64 / dst as f64;
    (0..dst)
        .map(|j| {
            let (lo, hi) = (j as f64 * step, (j + 1) as f64 * step);
            (lo.floor() as usize..(hi.ceil() as usize).min(src))
                .map(|i| {
                    let overlap = (hi.min(i as f64 + 1.0) - lo.max(i as f64)).max(0.0);
                    (i, overlap / step)
                })
                .collect()
        })
        .collect()
}

/// Shrink a gray image to `w` × `h` by averaging the source pixels under each output pixel
/// (as OpenCV's INTER_AREA), in [0, 1] row by row.
fn area_resize(img: &image::GrayImage, w: usize, h: usize) -> Vec<f64> {
    let (sw, sh) = (img.width() as usize, img.height() as usize);
    let (wx, wy) = (area_weights(sw, w), area_weights(sh, h));
    let src: Vec<f64> = img.pixels().map(|p| f64::from(p.0[0]) / 255.0).collect();
    let mut out = Vec::with_capacity(w * h);
    for ry in &wy {
        for rx in &wx {
            let mut v = 0.0;
            for &(y, fy) in ry {
                for &(x, fx) in rx {
                    v += src[y * sw + x] * fx * fy;
                }
            }
            out.push(v);
        }
    }
    out
}

fn read_image(path: &Path) -> Result<image::DynamicImage> {
    let reader = image::io::Reader::open(path)
        .with_context(|| format!("cannot read the image {}", path.display()))?
        .with_guessed_format()
        .with_context(|| format!("cannot read the image {}", path.display()))?;
    reader.decode().with_context(|| {
        format!(
            "cannot decode the image {} (expected a PNG file)",
            path.display()
        )
    })
}

fn predict_image(args: &PredictArgs, loaded: &Loaded, path: &Path) -> Result<()> {
    let kind = kiln_core::folder::ModelFolder::read_config(&models::model_dir(&args.model))?.kind;
    let (Some(input), Some(classes)) = (
        loaded.model.image_input(&loaded.meta),
        loaded.meta.classes.clone(),
    ) else {
        bail!(
            "{} holds a {kind} model, not an image classifier: --image needs a CNN (kiln train \
             cnn) or an MLP classifier over pixel columns",
            args.model.display()
        );
    };
    let pixel_max = match args.pixel_max {
        Some(v) if v.is_finite() && v > 0.0 => v,
        Some(v) => bail!("--pixel-max {v}: expected a finite number > 0"),
        None => default_pixel_max(loaded, input),
    };
    let img = read_image(path)?;
    let row = image_row(&img, input, args.invert, pixel_max)?;
    let x = Array2::from_shape_vec((1, row.pixels.len()), row.pixels.clone())?;
    let proba = loaded
        .predict_proba(x.view())?
        .context("the model gives no class probabilities")?;
    let p: Vec<f64> = proba.row(0).to_vec();
    let best = (0..p.len()).fold(0, |b, i| if p[i] > p[b] { i } else { b });
    let class = classes
        .get(best)
        .cloned()
        .unwrap_or_else(|| best.to_string());
    let shape = format!("{}×{}×{}", input.channels, input.height, input.width);
    if args.json {
        let out = json!({
            "image": path,
            "class": class,
            "class_index": best,
            "probability": p[best],
            "classes": classes,
            "probabilities": p,
            "input": { "channels": input.channels, "height": input.height, "width": input.width },
            "inverted": row.inverted,
            "brightness": row.brightness,
            "pixel_max": pixel_max,
        });
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!(
            "{}: class {class} (probability {:.4})",
            path.display(),
            p[best]
        );
        println!(
            "input {shape}, pixels 0..{pixel_max}, {}",
            if row.inverted {
                "inverted (light background)"
            } else {
                "not inverted"
            }
        );
        let rows: Vec<(String, String)> = classes
            .iter()
            .zip(&p)
            .map(|(c, v)| (format!("p({c})"), format!("{v:.4}")))
            .collect();
        print_pairs(&rows);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(side: usize) -> ImageInput {
        ImageInput {
            channels: 1,
            height: side,
            width: side,
        }
    }

    #[test]
    fn dark_ink_on_white_is_inverted_and_resized() {
        // A 16×16 white image with a black 8×8 square in its top-left quarter.
        let img = image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(16, 16, |x, y| {
            image::Luma([if x < 8 && y < 8 { 0 } else { 255 }])
        }));
        let row = image_row(&img, input(2), Invert::Auto, 16.0).unwrap();
        assert!(row.inverted);
        assert!((row.brightness - 0.75).abs() < 0.02, "{}", row.brightness);
        assert!(row.pixels[0] > 15.0, "{:?}", row.pixels);
        assert!(row.pixels[1..].iter().all(|&v| v < 1.0), "{:?}", row.pixels);
        let kept = image_row(&img, input(2), Invert::No, 1.0).unwrap();
        assert!(!kept.inverted && kept.pixels[0] < 0.05 && kept.pixels[3] > 0.95);
    }

    #[test]
    fn area_resize_averages_blocks_exactly() {
        // A 6×3 ramp shrunk to 3×3 averages pairs of columns.
        let img = image::GrayImage::from_fn(6, 3, |x, _| image::Luma([(x * 51) as u8]));
        let out = area_resize(&img, 3, 3);
        let want: Vec<f64> = [25.5, 127.5, 229.5]
            .iter()
            .cycle()
            .take(9)
            .map(|v| v / 255.0)
            .collect();
        for (a, b) in out.iter().zip(&want) {
            assert!((a - b).abs() < 1e-12, "{out:?}");
        }
        // A non-integer ratio keeps the mean.
        let img = image::GrayImage::from_fn(7, 5, |x, y| image::Luma([(x * 30 + y * 7) as u8]));
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
        let src: Vec<f64> = img.pixels().map(|p| f64::from(p.0[0]) / 255.0).collect();
        assert!((mean(&area_resize(&img, 3, 2)) - mean(&src)).abs() < 1e-12);
    }

    #[test]
    fn transparent_pixels_are_background() {
        let img = image::DynamicImage::ImageRgba8(image::RgbaImage::from_pixel(
            4,
            4,
            image::Rgba([0, 0, 0, 0]),
        ));
        let row = image_row(&img, input(4), Invert::Auto, 255.0).unwrap();
        assert!(row.inverted && row.pixels.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn rgb_channels_are_planes() {
        let img = image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(
            3,
            3,
            image::Rgb([255, 0, 0]),
        ));
        let three = ImageInput {
            channels: 3,
            height: 2,
            width: 2,
        };
        let row = image_row(&img, three, Invert::No, 1.0).unwrap();
        let want = [1., 1., 1., 1., 0., 0., 0., 0., 0., 0., 0., 0.];
        assert_eq!(row.pixels.len(), want.len());
        for (a, b) in row.pixels.iter().zip(want) {
            assert!((a - b).abs() < 1e-12, "{:?}", row.pixels);
        }
    }
}
