//! The fused CPU kernels against their plain candle compositions and finite differences, on
//! odd shapes: batch 1, sizes that are not multiples of the vector width, strides, padding,
//! reversed directions, missing biases.

mod common;

use candle_core::{DType, Device, Tensor, Var};
use common::{assert_close, check_grad, weighted_sum};
use kiln_nn::init::SeededVarMap;
use kiln_nn::kernels::{conv, loss as kloss, rnn as krnn};
use kiln_nn::layers::{self, Mode};
use kiln_nn::rnn::{Rnn, RnnConfig};
use kiln_nn::{loss, Error};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    kiln_nn::init::sample(
        candle_nn::Init::Randn {
            mean: 0.0,
            stdev: 1.0,
        },
        &shape.into(),
        &mut kiln_core::rng(seed),
    )
    .unwrap()
}

/// Forward value and gradients of `sum(f(vars) * r)` for each variable.
fn value_and_grads(
    f: impl Fn(&[&Tensor]) -> Tensor,
    vars: &[Var],
    r: &Tensor,
) -> (Tensor, Vec<Tensor>) {
    let ts: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
    let y = f(&ts);
    let g = weighted_sum(&y, r).backward().unwrap();
    let grads = vars
        .iter()
        .map(|v| {
            g.get(v.as_tensor())
                .unwrap_or_else(|| panic!("no gradient for {:?}", v.dims()))
                .clone()
        })
        .collect();
    (y, grads)
}

fn vars(ts: &[Tensor]) -> Vec<Var> {
    ts.iter().map(|t| Var::from_tensor(t).unwrap()).collect()
}

// ---------------------------------------------------------------------------------------------
// Convolution

/// (batch, in channels, height, width, out channels, kernel, stride, padding)
type ConvShape = (usize, usize, usize, usize, usize, usize, usize, usize);

const CONV_SHAPES: [ConvShape; 7] = [
    (1, 3, 7, 6, 5, 3, 1, 1),
    (2, 1, 9, 9, 4, 5, 2, 2),
    (3, 5, 6, 7, 17, 1, 1, 0),
    (1, 2, 5, 5, 3, 3, 2, 1),
    (5, 3, 11, 10, 7, 5, 1, 2),
    (4, 6, 14, 14, 16, 5, 1, 0),
    (3, 2, 4, 4, 3, 5, 1, 2),
];

#[test]
fn conv_forward_and_gradients_match_candle() {
    for (i, &(b, c, h, w, o, k, s, p)) in CONV_SHAPES.iter().enumerate() {
        let seed = 10 * i as u64;
        let v = vars(&[
            randn(&[b, c, h, w], seed),
            randn(&[o, c, k, k], seed + 1),
            randn(&[o], seed + 2),
        ]);
        let oh = (h + 2 * p - k) / s + 1;
        let ow = (w + 2 * p - k) / s + 1;
        let r = randn(&[b, o, oh, ow], seed + 3);
        let fused = value_and_grads(
            |t| conv::conv2d(t[0], t[1], Some(t[2]), s, p).unwrap(),
            &v,
            &r,
        );
        let plain = value_and_grads(
            |t| conv::conv2d_plain(t[0], t[1], Some(t[2]), s, p).unwrap(),
            &v,
            &r,
        );
        let what = format!("conv {:?}", CONV_SHAPES[i]);
        assert_close(&fused.0, &plain.0, 1e-4, &format!("{what} forward"));
        for (n, (a, e)) in ["dx", "dw", "db"].iter().zip(fused.1.iter().zip(&plain.1)) {
            assert_close(a, e, 1e-4, &format!("{what} {n}"));
        }
    }
}

#[test]
fn conv_without_bias_matches_candle() {
    let (x, wt) = (randn(&[2, 3, 6, 6], 1), randn(&[4, 3, 3, 3], 2));
    let a = conv::conv2d(&x, &wt, None, 1, 1).unwrap();
    let e = conv::conv2d_plain(&x, &wt, None, 1, 1).unwrap();
    assert_close(&a, &e, 1e-5, "conv without bias");
}

#[test]
fn conv_gradients_match_finite_differences() {
    let (x, wt, bias) = (
        randn(&[2, 2, 5, 4], 1),
        randn(&[3, 2, 3, 3], 2),
        randn(&[3], 3),
    );
    let r = randn(&[2, 3, 3, 2], 4);
    let f = |x: &Tensor, wt: &Tensor, b: &Tensor| {
        weighted_sum(&conv::conv2d(x, wt, Some(b), 2, 1).unwrap(), &r)
    };
    check_grad(|t| f(t, &wt, &bias), &x, 1e-2, 2e-3, "conv dx");
    check_grad(|t| f(&x, t, &bias), &wt, 1e-2, 2e-3, "conv dw");
    check_grad(|t| f(&x, &wt, t), &bias, 1e-2, 2e-3, "conv db");
}

/// Stride 2 over an odd-sized remainder: candle 0.11's own conv backward fails here (its
/// transposed convolution returns a gradient one column short), so the fused op is checked
/// against finite differences alone; the canary says when candle is fixed.
#[test]
fn conv_where_candle_backward_fails_matches_finite_differences() {
    let (x, wt) = (randn(&[2, 4, 8, 5], 1), randn(&[3, 4, 1, 1], 2));
    let xv = Var::from_tensor(&x).unwrap();
    let y = conv::conv2d_plain(xv.as_tensor(), &wt, None, 2, 0).unwrap();
    assert!(
        y.sum_all().unwrap().backward().is_err(),
        "candle's conv backward now handles this shape: compare with it in the test above"
    );
    let r = randn(&[2, 3, 4, 3], 3);
    check_grad(
        |t| weighted_sum(&conv::conv2d(t, &wt, None, 2, 0).unwrap(), &r),
        &x,
        1e-2,
        2e-3,
        "conv dx, 1×1 stride 2",
    );
    check_grad(
        |t| weighted_sum(&conv::conv2d(&x, t, None, 2, 0).unwrap(), &r),
        &wt,
        1e-2,
        2e-3,
        "conv dw, 1×1 stride 2",
    );
}

#[test]
fn conv_skips_the_input_gradient_nobody_asked_for() {
    let x = randn(&[2, 1, 6, 6], 1); // a plain tensor: no gradient wanted
    let wt = Var::from_tensor(&randn(&[2, 1, 3, 3], 2)).unwrap();
    let y = conv::conv2d(&x, wt.as_tensor(), None, 1, 0).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(g.get(&x).is_none(), "no gradient for an untracked input");
    assert!(g.get(wt.as_tensor()).is_some());
    let xv = Var::from_tensor(&x).unwrap();
    let y = conv::conv2d(xv.as_tensor(), wt.as_tensor(), None, 1, 0).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    assert!(
        g.get(xv.as_tensor()).is_some(),
        "a variable input gets its gradient"
    );
}

#[test]
fn conv_bad_shapes_are_errors() {
    let x = randn(&[2, 3, 6, 6], 1);
    let e = conv::conv2d(&x, &randn(&[4, 2, 3, 3], 2), None, 1, 0).unwrap_err();
    assert!(e.to_string().contains("3 channels"), "{e}");
    let e = conv::conv2d(&x, &randn(&[4, 3, 9, 9], 2), None, 1, 1).unwrap_err();
    assert!(e.to_string().contains("smaller than the kernel"), "{e}");
    let e = conv::conv2d(&randn(&[3, 6, 6], 1), &randn(&[4, 3, 3, 3], 2), None, 1, 0);
    assert!(matches!(e, Err(Error::Shape(_))), "{e:?}");
}

#[test]
fn conv_layer_fused_and_plain_agree_and_repeat() {
    let vars = SeededVarMap::new(3);
    let mut l = layers::conv2d(3, 5, 3, 2, 1, vars.var_builder().pp("c")).unwrap();
    let x = randn(&[4, 3, 9, 9], 7);
    let a = layers::apply(&l, &x).unwrap();
    let again = layers::apply(&l, &x).unwrap();
    assert_eq!(
        a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        again.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        "same input, same bits"
    );
    l.set_fused(false);
    let e = layers::apply(&l, &x).unwrap();
    assert_close(&a, &e, 1e-5, "conv layer fused vs plain");
}

// ---------------------------------------------------------------------------------------------
// LSTM and GRU directions

/// (time, batch, input, hidden). The last is big enough (batch · hidden · gates · hidden over
/// 2^18) for a time step to be split into blocks of batch rows across the kernels' team.
const RNN_SHAPES: [(usize, usize, usize, usize); 4] =
    [(5, 3, 4, 6), (1, 1, 3, 5), (7, 2, 9, 17), (3, 9, 5, 100)];

fn rnn_vars(t: usize, b: usize, i: usize, h: usize, g: usize, seed: u64) -> Vec<Var> {
    let s = |shape: &[usize], k: u64| (randn(shape, seed + k) * 0.5).unwrap();
    vars(&[
        s(&[t, b, i], 0),
        s(&[g * h, i], 1),
        s(&[g * h, h], 2),
        s(&[g * h], 3),
        s(&[g * h], 4),
        s(&[b, h], 5),
        s(&[b, h], 6),
    ])
}

fn weights<'a>(t: &[&'a Tensor], bias: bool) -> krnn::Weights<'a> {
    krnn::Weights {
        w_ih: t[1],
        w_hh: t[2],
        b_ih: bias.then_some(t[3]),
        b_hh: bias.then_some(t[4]),
    }
}

/// Every output of an LSTM direction in one tensor: outputs (T·B·H), then h_n, then c_n.
fn lstm_all(t: &[&Tensor], fused: bool, bias: bool, reverse: bool) -> Tensor {
    let run = if fused { krnn::lstm } else { krnn::lstm_plain };
    let (out, h, c) = run(t[0], weights(t, bias), t[5], t[6], reverse).unwrap();
    Tensor::cat(
        &[
            out.flatten_all().unwrap(),
            h.flatten_all().unwrap(),
            c.flatten_all().unwrap(),
        ],
        0,
    )
    .unwrap()
}

fn gru_all(t: &[&Tensor], fused: bool, bias: bool, reverse: bool) -> Tensor {
    let run = if fused { krnn::gru } else { krnn::gru_plain };
    let (out, h) = run(t[0], weights(t, bias), t[5], reverse).unwrap();
    Tensor::cat(&[out.flatten_all().unwrap(), h.flatten_all().unwrap()], 0).unwrap()
}

#[test]
fn lstm_and_gru_match_the_plain_composition() {
    let names = ["x", "w_ih", "w_hh", "b_ih", "b_hh", "h0", "c0"];
    for (si, &(t, b, i, h)) in RNN_SHAPES.iter().enumerate() {
        for (cell, g) in [("lstm", 4), ("gru", 3)] {
            for reverse in [false, true] {
                for bias in [true, false] {
                    let v = rnn_vars(t, b, i, h, g, 100 * si as u64);
                    let n_out = t * b * h + if g == 4 { 2 } else { 1 } * b * h;
                    let r = randn(&[n_out], 99);
                    let f = |fused: bool| {
                        move |ts: &[&Tensor]| {
                            if g == 4 {
                                lstm_all(ts, fused, bias, reverse)
                            } else {
                                gru_all(ts, fused, bias, reverse)
                            }
                        }
                    };
                    let (ya, ga) = value_and_grads_opt(f(true), &v, &r);
                    let (ye, ge) = value_and_grads_opt(f(false), &v, &r);
                    let what = format!("{cell} {:?} reverse={reverse} bias={bias}", RNN_SHAPES[si]);
                    assert_close(&ya, &ye, 1e-5, &format!("{what} forward"));
                    for (k, (a, e)) in ga.iter().zip(&ge).enumerate() {
                        match (a, e) {
                            (Some(a), Some(e)) => {
                                assert_close(a, e, 1e-4, &format!("{what} d{}", names[k]))
                            }
                            (None, None) => {}
                            _ => panic!("{what} d{}: gradient present in only one", names[k]),
                        }
                    }
                }
            }
        }
    }
}

/// Like [`value_and_grads`], but a variable may get no gradient (unused biases, GRU's c0).
fn value_and_grads_opt(
    f: impl Fn(&[&Tensor]) -> Tensor,
    vars: &[Var],
    r: &Tensor,
) -> (Tensor, Vec<Option<Tensor>>) {
    let ts: Vec<&Tensor> = vars.iter().map(|v| v.as_tensor()).collect();
    let y = f(&ts);
    let g = weighted_sum(&y, r).backward().unwrap();
    let grads = vars.iter().map(|v| g.get(v.as_tensor()).cloned()).collect();
    (y, grads)
}

#[test]
fn lstm_and_gru_gradients_match_finite_differences() {
    let (t, b, i, h) = (4, 2, 3, 3);
    for (g, reverse) in [(4, false), (4, true), (3, false), (3, true)] {
        let v: Vec<Tensor> = rnn_vars(t, b, i, h, g, 7)
            .iter()
            .map(|v| v.as_tensor().clone())
            .collect();
        let n_out = t * b * h + if g == 4 { 2 } else { 1 } * b * h;
        let r = randn(&[n_out], 5);
        for k in 0..7 {
            if g == 3 && k == 6 {
                continue; // a GRU has no cell state
            }
            let f = |x: &Tensor| {
                let mut ts: Vec<&Tensor> = v.iter().collect();
                ts[k] = x;
                let out = if g == 4 {
                    lstm_all(&ts, true, true, reverse)
                } else {
                    gru_all(&ts, true, true, reverse)
                };
                weighted_sum(&out, &r)
            };
            check_grad(
                f,
                &v[k],
                1e-2,
                3e-3,
                &format!("g={g} reverse={reverse} input {k}"),
            );
        }
    }
}

#[test]
fn rnn_layers_fused_and_plain_agree() {
    for (cell, bidirectional) in [("lstm", true), ("gru", true), ("lstm", false)] {
        let vars = SeededVarMap::new(11);
        let cfg = RnnConfig {
            num_layers: 2,
            bidirectional,
            batch_first: true,
            ..RnnConfig::new(5, 7)
        };
        let build = || {
            let vb = vars.var_builder();
            if cell == "lstm" {
                Rnn::lstm(cfg.clone(), vb).unwrap()
            } else {
                Rnn::gru(cfg.clone(), vb).unwrap()
            }
        };
        let fused = build();
        let mut plain = build();
        plain.set_fused(false);
        let x = randn(&[3, 6, 5], 2);
        let run = |rnn: &Rnn| {
            let (out, st) = rnn.forward(&x, None, &Mode::eval()).unwrap();
            let loss = (out.sqr().unwrap().mean_all().unwrap() + st.h.sum_all().unwrap()).unwrap();
            let g = loss.backward().unwrap();
            let mut grads: Vec<(String, Tensor)> = vars
                .var_map()
                .data()
                .lock()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), g.get(v.as_tensor()).unwrap().clone()))
                .collect();
            grads.sort_by(|a, b| a.0.cmp(&b.0));
            (out, st, grads)
        };
        let (oa, sa, ga) = run(&fused);
        let (oe, se, ge) = run(&plain);
        assert_close(&oa, &oe, 1e-5, &format!("{cell} layer output"));
        assert_close(&sa.h, &se.h, 1e-5, &format!("{cell} layer h_n"));
        if let (Some(a), Some(e)) = (&sa.c, &se.c) {
            assert_close(a, e, 1e-5, &format!("{cell} layer c_n"));
        }
        for ((name, a), (_, e)) in ga.iter().zip(&ge) {
            assert_close(a, e, 1e-4, &format!("{cell} layer d{name}"));
        }
    }
}

#[test]
fn rnn_kernels_reject_bad_shapes() {
    let v = rnn_vars(3, 2, 4, 5, 4, 1);
    let t: Vec<&Tensor> = v.iter().map(|v| v.as_tensor()).collect();
    let bad_h0 = randn(&[3, 5], 1);
    let e = krnn::lstm(t[0], weights(&t, true), &bad_h0, t[6], false).unwrap_err();
    assert!(e.to_string().contains("h0 (B, H)"), "{e}");
    let e = krnn::gru(t[0], weights(&t, true), t[5], false).unwrap_err();
    assert!(e.to_string().contains("GRU"), "{e}");
}

// ---------------------------------------------------------------------------------------------
// Softmax + cross-entropy

#[test]
fn fused_cross_entropy_matches_the_plain_loss_and_finite_differences() {
    for (n, c) in [(1, 2), (7, 5), (33, 19)] {
        let logits = (randn(&[n, c], n as u64) * 3.0).unwrap();
        let y = Tensor::from_vec(
            (0..n as u32)
                .map(|i| (i * 7) % c as u32)
                .collect::<Vec<_>>(),
            n,
            &Device::Cpu,
        )
        .unwrap();
        let v = Var::from_tensor(&logits).unwrap();
        let a = kloss::cross_entropy(v.as_tensor(), &y).unwrap();
        let e = loss::cross_entropy_plain(v.as_tensor(), &y).unwrap();
        assert_close(&a, &e, 1e-5, "cross-entropy value");
        let ga = a.backward().unwrap().get(v.as_tensor()).unwrap().clone();
        let ge = e.backward().unwrap().get(v.as_tensor()).unwrap().clone();
        assert_close(&ga, &ge, 1e-5, "cross-entropy gradient");
        check_grad(
            |x| (kloss::cross_entropy(x, &y).unwrap() * 2.0).unwrap(),
            &logits,
            1e-2,
            2e-3,
            "cross-entropy",
        );
    }
    // (B, T, C) logits with (B, T) targets, as the language models call it
    let logits = randn(&[2, 3, 4], 1);
    let y = Tensor::new(&[[0u32, 3, 1], [2, 2, 0]], &Device::Cpu).unwrap();
    let a = kloss::cross_entropy(&logits, &y).unwrap();
    let e = loss::cross_entropy_plain(&logits, &y).unwrap();
    assert_close(&a, &e, 1e-5, "cross-entropy (B, T, C)");
}

#[test]
fn fused_cross_entropy_bad_targets_are_errors() {
    let logits = randn(&[3, 4], 1);
    let y = Tensor::new(&[0u32, 4, 1], &Device::Cpu).unwrap();
    let e = kloss::cross_entropy(&logits, &y).unwrap_err();
    assert!(e.to_string().contains("out of range"), "{e}");
    let y = Tensor::new(&[0u32, 1], &Device::Cpu).unwrap();
    let e = kloss::cross_entropy(&logits, &y).unwrap_err();
    assert!(e.to_string().contains("3 rows"), "{e}");
    let e = kloss::cross_entropy(&randn(&[4], 1), &y).unwrap_err();
    assert!(e.to_string().contains("(N, C)"), "{e}");
}

#[test]
fn non_f32_inputs_fall_back_to_candle() {
    let x = randn(&[1, 2, 5, 5], 1).to_dtype(DType::F64).unwrap();
    let w = randn(&[3, 2, 3, 3], 2).to_dtype(DType::F64).unwrap();
    let a = conv::conv2d(&x, &w, None, 1, 1).unwrap();
    assert_eq!(a.dtype(), DType::F64);
    let e = conv::conv2d_plain(&x, &w, None, 1, 1).unwrap();
    assert_close(
        &a.to_dtype(DType::F32).unwrap(),
        &e.to_dtype(DType::F32).unwrap(),
        1e-6,
        "f64 conv",
    );
}

// ---------------------------------------------------------------------------------------------
// Max pooling's 2×2 fast path

#[test]
fn max_pool_2x2_fast_path_matches_candle_and_routes_ties_to_the_first() {
    use kiln_nn::ops::{self, Pool2d};
    let x = randn(&[3, 2, 5, 7], 4); // odd sides: the last row and column are dropped
    let a = ops::max_pool2d(&x, Pool2d::square(2, 2, 0)).unwrap();
    assert_close(&a, &x.max_pool2d(2).unwrap(), 0.0, "2×2 max pool forward");
    let v =
        Var::from_tensor(&Tensor::ones((1, 1, 4, 4), DType::F32, &Device::Cpu).unwrap()).unwrap();
    let y = ops::max_pool2d(v.as_tensor(), Pool2d::square(2, 2, 0)).unwrap();
    let g = y.sum_all().unwrap().backward().unwrap();
    let g = g
        .get(v.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let want: Vec<f32> = (0..16)
        .map(|k| {
            if (k / 4) % 2 == 0 && k % 2 == 0 {
                1.0
            } else {
                0.0
            }
        })
        .collect();
    assert_eq!(
        g, want,
        "ties: the whole gradient goes to each window's first element"
    );
}

#[test]
fn max_pool_2x2_lets_a_nan_win_and_routes_the_gradient_like_the_scan() {
    use kiln_nn::ops::{self, Pool2d};
    // Large enough to be split across the team; an odd width; ties and NaNs in the windows.
    let (b, c, h, w) = (8, 6, 28, 27);
    let (oh, ow) = (h / 2, w / 2);
    let vals: Vec<f32> = (0..b * c * h * w)
        .map(|i| match i % 97 {
            0 | 1 => f32::NAN,
            k => ((k * 31) % 7) as f32,
        })
        .collect();
    let x = Tensor::from_vec(vals.clone(), (b, c, h, w), &Device::Cpu).unwrap();
    let v = Var::from_tensor(&x).unwrap();
    let y = ops::max_pool2d(v.as_tensor(), Pool2d::square(2, 2, 0)).unwrap();
    let n_out = b * c * oh * ow;
    let r = Tensor::arange(1f32, n_out as f32 + 1.0, &Device::Cpu)
        .unwrap()
        .reshape(y.shape())
        .unwrap();
    let grads = (&y * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let dx = grads
        .get(v.as_tensor())
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let y = y.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let mut want_dx = vec![0f32; vals.len()];
    for p in 0..b * c {
        for i in 0..oh {
            for j in 0..ow {
                let at = |di: usize, dj: usize| p * h * w + (2 * i + di) * w + 2 * j + dj;
                // the scan: first maximum, a NaN taking over
                let (mut bi, mut bv) = (at(0, 0), vals[at(0, 0)]);
                for k in [at(0, 1), at(1, 0), at(1, 1)] {
                    if vals[k] > bv || vals[k].is_nan() {
                        (bi, bv) = (k, vals[k]);
                    }
                }
                let o = (p * oh + i) * ow + j;
                assert!(
                    y[o] == bv || (y[o].is_nan() && bv.is_nan()),
                    "output {o}: {} vs {bv}",
                    y[o]
                );
                want_dx[bi] = (o + 1) as f32;
            }
        }
    }
    assert_eq!(dx, want_dx, "each window's gradient at its scanned maximum");
}

#[test]
fn relu_matches_candle_and_keeps_nans_like_pytorch() {
    // Over 2^14 values: split across the team.
    let x = randn(&[64, 6, 7, 7], 3);
    let v = Var::from_tensor(&x).unwrap();
    let r = randn(&[64, 6, 7, 7], 4);
    let ours = kiln_nn::ops::relu(v.as_tensor()).unwrap();
    let theirs = v.as_tensor().relu().unwrap();
    assert_close(&ours, &theirs, 0.0, "relu forward");
    let g1 = (&ours * &r).unwrap().sum_all().unwrap().backward().unwrap();
    let g2 = (&theirs * &r)
        .unwrap()
        .sum_all()
        .unwrap()
        .backward()
        .unwrap();
    let (g1, g2) = (
        g1.get(v.as_tensor()).unwrap(),
        g2.get(v.as_tensor()).unwrap(),
    );
    assert_close(g1, g2, 0.0, "relu gradient");
    // NaN stays NaN (candle's f32::max would give 0); the gradient at 0 is 0 (PyTorch's).
    let v = Var::new(&[f32::NAN, 0.0, -1.0, 2.0], &Device::Cpu).unwrap();
    let y = kiln_nn::ops::relu(v.as_tensor()).unwrap();
    let got = y.to_vec1::<f32>().unwrap();
    assert!(got[0].is_nan() && got[1..] == [0.0, 0.0, 2.0], "{got:?}");
    let g = y.sum_all().unwrap().backward().unwrap();
    let g = g.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(g, [0.0, 0.0, 0.0, 1.0]);
}

#[test]
fn fused_linear_matches_candle_matmul_plus_bias() {
    // The last is over 2^21 multiply-adds and 64 rows: split into row blocks across the team.
    for &(m, k, n) in &[(1, 3, 5), (17, 33, 65), (64, 128, 96), (131, 256, 97)] {
        let x = randn(&[m, k], 1);
        let w = randn(&[k, n], 2);
        let b = randn(&[n], 3);
        let r = randn(&[m, n], 4);
        let got = kiln_nn::kernels::linear_in_out(&x, &w, &b).unwrap();
        let want = x.matmul(&w).unwrap().broadcast_add(&b).unwrap();
        assert_close(&got, &want, 1e-4, &format!("linear {m}x{k}x{n}"));
        let got = kiln_nn::kernels::linear_in_out_gelu(&x, &w, &b).unwrap();
        assert_close(
            &got,
            &want.gelu().unwrap(),
            1e-4,
            &format!("gelu {m}x{k}x{n}"),
        );
        let got = kiln_nn::kernels::linear_in_out_residual(&x, &w, &b, &r).unwrap();
        let want = (&want + &r).unwrap();
        assert_close(&got, &want, 1e-4, &format!("residual {m}x{k}x{n}"));
    }
    // A trained variable takes candle's path (and keeps its gradient).
    let w = Var::from_tensor(&randn(&[4, 3], 5)).unwrap();
    let x = randn(&[2, 4], 6);
    let b = randn(&[3], 7);
    let y = kiln_nn::kernels::linear_in_out(&x, w.as_tensor(), &b).unwrap();
    assert!(y.backward().unwrap().get(w.as_tensor()).is_some());
    let e = kiln_nn::kernels::linear_in_out(&x, &randn(&[5, 3], 8), &b).unwrap_err();
    assert!(e.to_string().contains("[2, 4]"), "{e}");
    let r = randn(&[3, 3], 9);
    let e = kiln_nn::kernels::linear_in_out_residual(&x, &randn(&[4, 3], 8), &b, &r).unwrap_err();
    assert!(e.to_string().contains("residual [3, 3]"), "{e}");
}

#[test]
fn gelu_new_matches_the_tanh_formula_and_its_gradient() {
    use kiln_nn::kernels::gelu::{gelu_new, gelu_new_in_place};
    let c = (2.0 / std::f64::consts::PI).sqrt();
    let xs: Vec<f32> = (-2000..2000)
        .map(|i| i as f32 / 100.0)
        .chain([-100.0, 100.0, 0.0])
        .collect();
    let v = Var::new(xs.as_slice(), &Device::Cpu).unwrap();
    let got = gelu_new(v.as_tensor()).unwrap();
    let mut in_place = xs.clone();
    gelu_new_in_place(&mut in_place);
    let grads = got.sum_all().unwrap().backward().unwrap();
    let ours_g = grads.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let theirs = v.as_tensor().gelu().unwrap().sum_all().unwrap();
    let grads = theirs.backward().unwrap();
    let theirs_g = grads.get(v.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let got = got.to_vec1::<f32>().unwrap();
    for (i, &x) in xs.iter().enumerate() {
        let x64 = x as f64;
        let t = (c * (x64 + 0.044715 * x64.powi(3))).tanh();
        let want = 0.5 * x64 * (1.0 + t);
        assert!(
            (got[i] as f64 - want).abs() <= 1e-6 * (1.0 + want.abs()),
            "{x}: {} vs {want}",
            got[i]
        );
        assert_eq!(got[i], in_place[i], "in place at {x}");
        if x.abs() <= 8.0 {
            let dwant = 0.5 * (1.0 + t)
                + 0.5 * x64 * (1.0 - t * t) * c * (1.0 + 3.0 * 0.044715 * x64 * x64);
            assert!(
                (ours_g[i] as f64 - dwant).abs() <= 1e-5,
                "{x}: {} vs {dwant}",
                ours_g[i]
            );
            assert!(
                (ours_g[i] - theirs_g[i]).abs() <= 1e-5,
                "{x}: ours {} vs candle {}",
                ours_g[i],
                theirs_g[i]
            );
        }
    }
    for x in [-20.0f32, -1.0, 0.0, 0.5, 10.0, 80.0] {
        let rel = (kiln_nn::kernels::exp(x) as f64 / (x as f64).exp() - 1.0).abs();
        assert!(rel < 1e-6, "exp({x}) off by {rel}");
    }
}
