//! Finite-difference gradient checks for every layer and op kiln writes itself. Each of these
//! would have caught candle 0.11's missing or wrong backward passes (fused softmax/layer
//! norm/RMS norm without backward; max-pool gradient scaled by 1/(k·k)).

mod common;

use candle_core::{Device, Tensor};
use common::{check_grad, weighted_sum};
use kiln_nn::init::SeededVarMap;
use kiln_nn::layers::{BatchNorm, Dropout, Mode};
use kiln_nn::loss;
use kiln_nn::ops::{self, Pool2d};
use kiln_nn::rnn::{Rnn, RnnConfig};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    let mut rng = kiln_core::rng(seed);
    kiln_nn::init::sample(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &shape.into(),
        &mut rng,
    )
    .unwrap()
}

const EPS: f64 = 1e-2;
const TOL: f64 = 2e-3;

#[test]
fn softmax_gradient_matches_finite_differences() {
    let r = randn(&[3, 5], 1);
    check_grad(
        |x| weighted_sum(&ops::softmax_last_dim(x).unwrap(), &r),
        &randn(&[3, 5], 2),
        EPS,
        TOL,
        "softmax",
    );
}

#[test]
fn layer_norm_gradients_match_finite_differences() {
    let (x, w, b, r) = (
        randn(&[2, 3, 4], 3),
        randn(&[4], 4),
        randn(&[4], 5),
        randn(&[2, 3, 4], 6),
    );
    check_grad(
        |x| weighted_sum(&ops::layer_norm(x, &w, &b, 1e-5).unwrap(), &r),
        &x,
        EPS,
        TOL,
        "layer norm dx",
    );
    check_grad(
        |w| weighted_sum(&ops::layer_norm(&x, w, &b, 1e-5).unwrap(), &r),
        &w,
        EPS,
        TOL,
        "layer norm dw",
    );
    check_grad(
        |b| weighted_sum(&ops::layer_norm(&x, &w, b, 1e-5).unwrap(), &r),
        &b,
        EPS,
        TOL,
        "layer norm db",
    );
}

#[test]
fn rms_norm_gradients_match_finite_differences() {
    let (x, w, r) = (randn(&[3, 4], 7), randn(&[4], 8), randn(&[3, 4], 9));
    check_grad(
        |x| weighted_sum(&ops::rms_norm(x, &w, 1e-6).unwrap(), &r),
        &x,
        EPS,
        TOL,
        "rms norm dx",
    );
    check_grad(
        |w| weighted_sum(&ops::rms_norm(&x, w, 1e-6).unwrap(), &r),
        &w,
        EPS,
        TOL,
        "rms norm dw",
    );
}

#[test]
fn pooling_gradients_match_finite_differences() {
    for (k, s, p) in [(2, 2, 0), (3, 2, 1), (3, 1, 0), (2, 3, 1)] {
        let pool = Pool2d::square(k, s, p);
        let x = randn(&[1, 2, 6, 6], 10 + k as u64);
        let (oh, ow) = pool.output_size(6, 6).unwrap();
        let r = randn(&[1, 2, oh, ow], 20);
        // small eps: keep the arg-max where it is
        check_grad(
            |x| weighted_sum(&ops::max_pool2d(x, pool).unwrap(), &r),
            &x,
            1e-3,
            TOL,
            &format!("max pool k{k} s{s} p{p}"),
        );
        check_grad(
            |x| weighted_sum(&ops::avg_pool2d(x, pool).unwrap(), &r),
            &x,
            EPS,
            TOL,
            &format!("avg pool k{k} s{s} p{p}"),
        );
    }
}

#[test]
fn batch_norm_training_gradient_matches_finite_differences() {
    let vars = SeededVarMap::new(0);
    let bn = BatchNorm::new(2, vars.var_builder()).unwrap();
    let r = randn(&[3, 2, 2, 2], 30);
    // Mode::train updates running statistics but they do not feed the training output.
    check_grad(
        |x| weighted_sum(&bn.forward(x, &Mode::train(0)).unwrap(), &r),
        &randn(&[3, 2, 2, 2], 31),
        EPS,
        TOL,
        "batch norm",
    );
}

#[test]
fn dropout_gradient_matches_finite_differences() {
    let d = Dropout::new(0.4).unwrap();
    let r = randn(&[4, 5], 40);
    // the same seed draws the same mask on every call
    check_grad(
        |x| weighted_sum(&d.forward(x, &Mode::train(3)).unwrap(), &r),
        &randn(&[4, 5], 41),
        EPS,
        TOL,
        "dropout",
    );
}

#[test]
fn recurrent_gradients_match_finite_differences() {
    for kind in ["rnn", "lstm", "gru"] {
        let vars = SeededVarMap::new(1);
        let cfg = RnnConfig {
            num_layers: 2,
            bidirectional: true,
            ..RnnConfig::new(2, 3)
        };
        let rnn = match kind {
            "rnn" => Rnn::rnn(cfg, vars.var_builder()),
            "lstm" => Rnn::lstm(cfg, vars.var_builder()),
            _ => Rnn::gru(cfg, vars.var_builder()),
        }
        .unwrap();
        let r = randn(&[4, 2, 6], 50);
        check_grad(
            |x| weighted_sum(&rnn.forward(x, None, &Mode::eval()).unwrap().0, &r),
            &randn(&[4, 2, 2], 51),
            EPS,
            TOL,
            kind,
        );
    }
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let t = Tensor::new(&[1u32, 0, 2], &Device::Cpu).unwrap();
    check_grad(
        |x| loss::cross_entropy(x, &t).unwrap(),
        &randn(&[3, 4], 60),
        EPS,
        TOL,
        "cross-entropy",
    );
}
