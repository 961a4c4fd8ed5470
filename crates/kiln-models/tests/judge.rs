//! The shapes judge: targets, masked losses, learning, bad input.

use candle_core::{DType, Device, Tensor};
use kiln_data::shapes::{cell_targets, generate, ShapesParams, IMAGE_SIZE};
use kiln_models::judge::*;
use kiln_models::vqvae::images_to_tensor;
use kiln_nn::init::SeededVarMap;
use kiln_nn::layers::Mode;
use kiln_nn::optim::{AdamConfig, OptimizerConfig};
use kiln_nn::TrainStep;
use kiln_train::data::TensorData;
use kiln_train::progress::Silent;
use kiln_train::{trainer, RunOptions, TrainConfig};

fn data(n: usize, seed: u64) -> (Tensor, Tensor) {
    let p = ShapesParams {
        n,
        include_held_out: true,
        ..Default::default()
    };
    let s = generate(&p, seed).unwrap();
    let bytes: Vec<u8> = s.iter().flat_map(|x| x.image.iter().copied()).collect();
    let y: Vec<u32> = s
        .iter()
        .flat_map(|x| cell_targets(&x.objects).into_iter().flatten())
        .collect();
    (
        images_to_tensor(&bytes, n, 3, IMAGE_SIZE).unwrap(),
        Tensor::from_vec(y, (n, 9, 4), &Device::Cpu).unwrap(),
    )
}

fn tiny() -> JudgeConfig {
    JudgeConfig {
        channels: 8,
        hidden: 32,
        ..Default::default()
    }
}

#[test]
fn the_loss_ignores_attributes_of_empty_cells() {
    let vars = SeededVarMap::new(0);
    let j = Judge::new(tiny(), vars.var_builder()).unwrap();
    let (x, y) = data(4, 1);
    let base = j
        .loss(&(x.clone(), y.clone()), &Mode::eval())
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    // change the (ignored) attribute targets of every empty cell: the loss stays the same
    let mut v: Vec<Vec<Vec<u32>>> = y.to_vec3().unwrap();
    for cell in v.iter_mut().flatten() {
        if cell[0] == 0 {
            cell[1] = 3;
            cell[2] = 5;
            cell[3] = 1;
        }
    }
    let flat: Vec<u32> = v.into_iter().flatten().flatten().collect();
    let y2 = Tensor::from_vec(flat, (4, 9, 4), &Device::Cpu).unwrap();
    let other = j
        .loss(&(x, y2), &Mode::eval())
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    assert_eq!(base, other);
    // a fresh judge's loss is near chance: ln 2 + ln 4 + ln 6 + ln 2
    let chance = (2f32 * 4. * 6. * 2.).ln();
    assert!((base - chance).abs() < 0.5, "{base} vs {chance}");
}

#[test]
fn a_tiny_judge_learns_to_read_cells() {
    let vars = SeededVarMap::new(1);
    let j = Judge::new(tiny(), vars.var_builder()).unwrap();
    let (x, y) = data(256, 2);
    let before = accuracy_counts(&j, &x, &y).unwrap();
    let cfg = TrainConfig {
        optimizer: OptimizerConfig::Adam(AdamConfig {
            lr: 3e-3,
            ..Default::default()
        }),
        batch_size: 32,
        steps: Some(80),
        seed: 3,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let train = TensorData::new(x.clone(), y.clone()).unwrap();
    let b0 = j.evaluate(&(x.clone(), y.clone())).unwrap();
    trainer::train(
        &j,
        vars.var_map(),
        &train,
        None,
        &cfg,
        &RunOptions::new(dir.path()),
        &mut Silent,
    )
    .unwrap();
    let b1 = j.evaluate(&(x.clone(), y.clone())).unwrap();
    assert!(
        b1.loss() < 0.9 * b0.loss(),
        "{} -> {}",
        b0.loss(),
        b1.loss()
    );
    let after = accuracy_counts(&j, &x, &y).unwrap();
    assert_eq!(after.cells, 256 * 9);
    assert_eq!(
        after.objects,
        y.to_dtype(DType::F32)
            .unwrap()
            .narrow(2, 0, 1)
            .unwrap()
            .sum_all()
            .unwrap()
            .to_scalar::<f32>()
            .unwrap() as usize
    );
    let [p0, ..] = before.accuracies();
    let [p1, ..] = after.accuracies();
    // at least as good as calling every cell empty (the share of empty cells), and better
    // than the fresh network (80 steps of a tiny judge learn presence first)
    let empty = 1.0 - after.objects as f64 / after.cells as f64;
    assert!(
        p1 >= empty - 1e-9 && p1 > p0,
        "presence {p0} -> {p1} (all-empty {empty})"
    );
    // read() agrees with predict()
    let r = j.read(&x.narrow(0, 0, 2).unwrap()).unwrap();
    let p: Vec<Vec<Vec<u32>>> = j
        .predict(&x.narrow(0, 0, 2).unwrap())
        .unwrap()
        .to_vec3()
        .unwrap();
    assert_eq!(r[1][4].present, p[1][4][0] == 1);
    assert_eq!(r[1][4].colour, p[1][4][2] as usize);
}

#[test]
fn bad_input_is_a_clear_error() {
    let vars = SeededVarMap::new(0);
    let j = Judge::new(tiny(), vars.var_builder()).unwrap();
    let x = Tensor::zeros((2, 1, 28, 28), DType::F32, &Device::Cpu).unwrap();
    let e = j.forward(&x).err().unwrap().to_string();
    assert!(
        e.contains("expected pictures (batch, 3, 32, 32), got [2, 1, 28, 28]"),
        "{e}"
    );
    let (x, _) = data(2, 0);
    let y = Tensor::zeros((2, 9), DType::U32, &Device::Cpu).unwrap();
    let e = j.loss(&(x, y), &Mode::eval()).err().unwrap().to_string();
    assert!(e.contains("expected targets (2, 9, 4), got [2, 9]"), "{e}");
    let e = Judge::new(
        JudgeConfig {
            channels: 0,
            hidden: 4,
            ..Default::default()
        },
        vars.var_builder(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("channels"), "{e}");
}

#[test]
fn a_batch_norm_judge_records_statistics_and_reloads() {
    let vars = SeededVarMap::new(4);
    let cfg = JudgeConfig {
        batch_norm: true,
        ..tiny()
    };
    let j = Judge::new(cfg.clone(), vars.var_builder()).unwrap();
    let (x, y) = data(16, 5);
    let diff = |a: &Tensor, b: &Tensor| -> f32 {
        (a - b)
            .unwrap()
            .abs()
            .unwrap()
            .max_all()
            .unwrap()
            .to_scalar()
            .unwrap()
    };
    // evaluation leaves the running statistics alone; a training-mode loss updates them
    let before = j.forward(&x).unwrap();
    assert_eq!(diff(&before, &j.forward(&x).unwrap()), 0.0);
    j.loss(&(x.clone(), y), &Mode::train(0)).unwrap();
    let after = j.forward(&x).unwrap();
    assert!(diff(&before, &after) > 0.0);
    // the statistics travel with the model folder
    let dir = tempfile::tempdir().unwrap();
    let meta = kiln_core::folder::ModelMeta {
        features: Vec::new(),
        target: "cells".into(),
        classes: None,
        preprocessing: None,
    };
    let model = serde_json::to_value(&cfg).unwrap();
    kiln_models::folder::save(dir.path(), "shapes_judge", &meta, model, vars.var_map()).unwrap();
    let (c, vb) = kiln_models::folder::load(dir.path(), "shapes_judge").unwrap();
    let j2 = Judge::new(serde_json::from_value(c.model).unwrap(), vb).unwrap();
    assert_eq!(diff(&after, &j2.forward(&x).unwrap()), 0.0);
}
