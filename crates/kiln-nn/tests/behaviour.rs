//! Seeded reproducibility, resumable optimizer state and clear errors on bad input.

mod common;

use candle_core::{Device, Tensor};
use common::weighted_sum;
use kiln_nn::init::SeededVarMap;
use kiln_nn::layers::{self, BatchNorm, Dropout, Mode};
use kiln_nn::ops::{self, Pool2d};
use kiln_nn::optim::{AdamConfig, Optimizer, OptimizerConfig, Params, SgdConfig};
use kiln_nn::rnn::{Rnn, RnnConfig};
use kiln_nn::{loss, Error};

fn weights(seed: u64) -> Vec<f32> {
    let v = SeededVarMap::new(seed);
    let fc = layers::linear(16, 8, v.var_builder().pp("fc")).unwrap();
    fc.weight().flatten_all().unwrap().to_vec1().unwrap()
}

#[test]
fn same_seed_same_weights_and_pytorch_bounds() {
    let (a, b, c) = (weights(1), weights(1), weights(2));
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(a.iter().all(|w| w.abs() <= 0.25), "uniform on ±1/sqrt(16)");
    let spread = a.iter().fold(0f32, |m, w| m.max(w.abs()));
    assert!(spread > 0.2, "weights fill their range");
}

#[test]
fn dropout_is_seeded_and_identity_in_eval() {
    let x = Tensor::ones((50, 40), candle_core::DType::F32, &Device::Cpu).unwrap();
    let d = Dropout::new(0.3).unwrap();
    let a = d
        .forward(&x, &Mode::train(9))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let b = d
        .forward(&x, &Mode::train(9))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let c = d
        .forward(&x, &Mode::train(10))
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    let zeros = a.iter().filter(|v| **v == 0.0).count() as f64 / a.len() as f64;
    assert!((zeros - 0.3).abs() < 0.05, "drop fraction {zeros}");
    assert!(a.iter().all(|v| *v == 0.0 || (*v - 1.0 / 0.7).abs() < 1e-6));
    let e = d.forward(&x, &Mode::eval()).unwrap();
    assert_eq!(e.sum_all().unwrap().to_scalar::<f32>().unwrap(), 2000.0);
    assert!(matches!(Dropout::new(1.0), Err(Error::Core(_))));
}

fn train_steps(opt: &mut Optimizer, w: &Tensor, steps: usize, offset: usize) {
    for s in 0..steps {
        let g = Tensor::new(
            &[[0.3f32 * (s + offset) as f32, -1.0], [2.0, 0.5]],
            &Device::Cpu,
        )
        .unwrap();
        let l = (weighted_sum(w, &g) + w.sqr().unwrap().sum_all().unwrap()).unwrap();
        opt.step(&l.backward().unwrap()).unwrap();
    }
}

#[test]
fn optimizer_state_round_trip_resumes_exactly() {
    for config in [
        OptimizerConfig::Sgd(SgdConfig {
            lr: 0.1,
            momentum: 0.9,
            nesterov: true,
            ..Default::default()
        }),
        OptimizerConfig::Adam(AdamConfig {
            weight_decay: 0.1,
            ..Default::default()
        }),
        OptimizerConfig::Adamw(AdamConfig {
            weight_decay: 0.1,
            ..Default::default()
        }),
    ] {
        let make = || {
            let v = SeededVarMap::new(4);
            let w = v.var_builder().get((2, 2), "w").unwrap();
            let opt =
                Optimizer::new(config.clone(), Params::from_var_map(v.var_map()).unwrap()).unwrap();
            (v, w, opt)
        };
        let (_v1, w1, mut o1) = make();
        train_steps(&mut o1, &w1, 4, 0);
        let (v2, w2, mut o2) = make();
        train_steps(&mut o2, &w2, 2, 0);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("opt.safetensors");
        candle_core::safetensors::save(&o2.state_tensors().unwrap(), &path).unwrap();
        let (_v3, w3, mut o3) = make();
        w3.to_vec2::<f32>().unwrap();
        // copy weights across, then the optimizer state from the file
        v2.var_map().save(dir.path().join("w.safetensors")).unwrap();
        let mut m3 = _v3.var_map().clone();
        m3.load(dir.path().join("w.safetensors")).unwrap();
        o3.load_state_tensors(&candle_core::safetensors::load(&path, &Device::Cpu).unwrap())
            .unwrap();
        train_steps(&mut o3, &w3, 2, 2);
        assert_eq!(
            w1.to_vec2::<f32>().unwrap(),
            w3.to_vec2::<f32>().unwrap(),
            "{config:?}"
        );
    }
}

#[test]
fn bad_inputs_are_clear_errors() {
    let x3 = Tensor::zeros((2, 3, 4), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = ops::max_pool2d(&x3, Pool2d::square(2, 2, 0))
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("(batch, channels, height, width)") && e.contains("[2, 3, 4]"),
        "{e}"
    );
    let small = Tensor::zeros((1, 1, 2, 2), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = ops::avg_pool2d(&small, Pool2d::square(3, 1, 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("smaller than the kernel"), "{e}");
    let e = ops::max_pool2d(&small, Pool2d::square(2, 0, 0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("pool stride"), "{e}");
    let e = ops::max_pool2d(&small, Pool2d::square(2, 1, 2))
        .unwrap_err()
        .to_string();
    assert!(e.contains("pool padding"), "{e}");

    let logits = Tensor::zeros((2, 3), candle_core::DType::F32, &Device::Cpu).unwrap();
    let e = loss::cross_entropy(&logits, &Tensor::new(&[0u32, 3], &Device::Cpu).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("target class 3 out of range for 3 classes"),
        "{e}"
    );
    let e = loss::cross_entropy(&logits, &Tensor::new(&[0u32], &Device::Cpu).unwrap())
        .unwrap_err()
        .to_string();
    assert!(e.contains("2 rows of logits but 1 targets"), "{e}");
    let e = loss::mse(&logits, &x3).unwrap_err().to_string();
    assert!(e.contains("[2, 3]") && e.contains("[2, 3, 4]"), "{e}");

    let v = SeededVarMap::new(0);
    let rnn = Rnn::lstm(RnnConfig::new(5, 3), v.var_builder()).unwrap();
    let e = rnn
        .forward(&x3, None, &Mode::eval())
        .unwrap_err()
        .to_string();
    assert!(e.contains("I = 5") && e.contains("[2, 3, 4]"), "{e}");
    let e = Rnn::gru(
        RnnConfig {
            num_layers: 0,
            ..RnnConfig::new(2, 2)
        },
        v.var_builder(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("num_layers = 0"), "{e}");
    let e = Rnn::gru(
        RnnConfig {
            dropout: 1.5,
            ..RnnConfig::new(2, 2)
        },
        v.var_builder(),
    )
    .err()
    .unwrap()
    .to_string();
    assert!(e.contains("dropout = 1.5"), "{e}");

    let bn = BatchNorm::new(4, v.var_builder().pp("bn")).unwrap();
    let e = bn.forward(&x3, &Mode::eval()).unwrap_err().to_string();
    assert!(e.contains("4 channels"), "{e}");

    let bad = OptimizerConfig::Sgd(SgdConfig {
        nesterov: true,
        ..Default::default()
    });
    let e = Optimizer::new(bad, Params::from_var_map(v.var_map()).unwrap())
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("nesterov") && e.contains("momentum > 0"), "{e}");
    let bad = OptimizerConfig::Adam(AdamConfig {
        beta2: 1.0,
        ..Default::default()
    });
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("beta2 = 1"));
}

#[test]
fn batch_norm_buffers_are_not_trained() {
    let v = SeededVarMap::new(0);
    let _bn = BatchNorm::new(3, v.var_builder().pp("bn")).unwrap();
    let p = Params::from_var_map(v.var_map()).unwrap();
    let names: Vec<&str> = p.iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["bn.bias", "bn.weight"]);
}
