//! `kiln train judge`: the shapes judge (a CNN reading each grid cell's object) on
//! ground-truth renders, held-out combinations included; reports its per-attribute accuracy
//! on fresh renders (another seed).

use candle_core::{Device, Tensor};
use kiln_data::shapes::{cell_targets, generate, ShapesParams, IMAGE_SIZE};
use kiln_models::judge::{accuracy_counts, Judge, JudgeConfig, JudgeCounts};
use kiln_models::vqvae::images_to_tensor;

use super::*;

/// The `kind` of a judge model folder.
pub const JUDGE_KIND: &str = "shapes_judge";

#[derive(Args)]
pub(super) struct JudgeArgs {
    /// Training renders (generated from --seed).
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    train_size: usize,
    /// Fresh validation renders (from another seed).
    #[arg(long, value_name = "N", default_value_t = 5_000)]
    val_size: usize,
    /// Fraction of renders with two objects.
    #[arg(long, value_name = "F", default_value_t = 0.5)]
    two_object_fraction: f64,
    /// Channels of the first convolution.
    #[arg(long, value_name = "N", default_value_t = 32)]
    channels: usize,
    /// Width of the hidden linear layer.
    #[arg(long, value_name = "N", default_value_t = 256)]
    hidden: usize,
    /// Batch norm after each convolution.
    #[arg(long)]
    batch_norm: bool,
    /// Placement jitter of the renders in pixels, at most 2, for training and validation
    /// (0: kiln-data's standard placement; see `ShapesParams::jitter`). A judge trained on
    /// jittered renders also reads objects a generator drew off their cells' centres.
    #[arg(long, value_name = "PX", default_value_t = 0.0)]
    jitter: f64,
    /// Placement jitter of small objects in pixels, if not --jitter's (see
    /// `ShapesParams::small_jitter`) [default: --jitter]
    #[arg(long, value_name = "PX")]
    small_jitter: Option<f64>,
    #[command(flatten)]
    run: RunArgs,
}

/// Renders (placed as `a` says) and their per-cell targets.
fn renders(a: &JudgeArgs, n: usize, seed: u64) -> Result<TensorData> {
    let p = ShapesParams {
        n,
        two_object_fraction: a.two_object_fraction,
        include_held_out: true,
        jitter: a.jitter,
        small_jitter: a.small_jitter,
        pair_jitter: None,
    };
    let s = generate(&p, seed)?;
    let bytes: Vec<u8> = s.iter().flat_map(|x| x.image.iter().copied()).collect();
    let y: Vec<u32> = s
        .iter()
        .flat_map(|x| cell_targets(&x.objects).into_iter().flatten())
        .collect();
    let x = images_to_tensor(&bytes, n, 3, IMAGE_SIZE)?;
    Ok(TensorData::new(
        x,
        Tensor::from_vec(y, (n, 9, 4), &Device::Cpu)?,
    )?)
}

pub(super) fn train_judge(a: JudgeArgs) -> Result<()> {
    let jc = JudgeConfig {
        channels: a.channels,
        hidden: a.hidden,
        batch_norm: a.batch_norm,
    };
    jc.validate().context("invalid judge settings")?;
    if a.train_size == 0 || a.val_size == 0 {
        bail!("--train-size and --val-size must be at least 1");
    }
    let record = json!({
        "kind": JUDGE_KIND, "judge": jc, "train_size": a.train_size,
        "val_size": a.val_size, "two_object_fraction": a.two_object_fraction,
        "jitter": a.jitter, "small_jitter": a.small_jitter,
    });
    let config = a.run.train_config(record)?;
    let train = renders(&a, a.train_size, a.run.seed)?;
    let valid = renders(&a, a.val_size, a.run.seed ^ 0x004a_5544_4745)?;
    let vars = SeededVarMap::new(a.run.seed);
    let judge = Judge::new(jc.clone(), vars.var_builder())?;
    let t0 = Instant::now();
    let report = fit(&judge, &vars, &train, &valid, &config, &a.run)?;
    let wall = t0.elapsed().as_secs_f64();
    let meta = ModelMeta {
        features: Vec::new(),
        target: "cells".into(),
        classes: None,
        preprocessing: None,
    };
    kiln_models::folder::save(
        &a.run.out.join("model"),
        JUDGE_KIND,
        &meta,
        serde_json::to_value(&jc)?,
        vars.var_map(),
    )
    .with_context(|| format!("cannot save the model into {}", a.run.out.display()))?;
    let final_train = measure(&judge, &train, config.batch_size, TRAIN_MEASURE_MAX)?;
    let mut final_valid = measure(&judge, &valid, config.batch_size, usize::MAX)?;
    let mut counts = JudgeCounts::default();
    let n = valid.len();
    let mut start = 0;
    while start < n {
        let len = 500.min(n - start);
        let (x, y) = valid.batch(&(start..start + len).collect::<Vec<_>>())?;
        counts.add(accuracy_counts(&judge, &x, &y)?);
        start += len;
    }
    let [presence, shape, colour, size, pictures] = counts.accuracies();
    final_valid["judge"] = json!({
        "presence": presence, "shape": shape, "colour": colour, "size": size,
        "pictures_all_right": pictures, "counts": counts,
    });
    let seen = samples_seen(
        report.start_step,
        report.steps,
        train.len(),
        config.batch_size,
    );
    finish(&a.run, &report, final_train, final_valid, wall, seen, true)?;
    if !a.run.json {
        println!(
            "fresh renders  presence {presence:.4}  shape {shape:.4}  colour {colour:.4}  size {size:.4}  whole pictures {pictures:.4}"
        );
    }
    Ok(())
}
