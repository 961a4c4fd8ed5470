//! PyTorch parity: forward outputs and gradients (input and every parameter) of kiln-nn's layers,
//! one optimizer step and the losses equal PyTorch's, from fixtures written by
//! `tests/reference/gen_parity.py` (torch 2.x, CPU, float32).

mod common;

use candle_core::{Tensor, Var};
use common::{assert_close, tensor, var_map, vars, weighted_sum};
use kiln_nn::layers::{self, BatchNorm, Dropout, LayerNorm, Mode, RmsNorm};
use kiln_nn::ops::{self, Pool2d};
use kiln_nn::optim::{clip_grad_norm, Optimizer, OptimizerConfig, Params};
use kiln_nn::rnn::{CellKind, Rnn, RnnConfig, RnnState};
use kiln_nn::{loss, Result};
use serde_json::Value;

const TOL: f64 = 1e-5;

fn layers_fixture() -> Value {
    serde_json::from_str(include_str!("reference/parity_layers.json")).unwrap()
}

/// Run `forward` on the fixture's input with the fixture's parameters; compare the output, the
/// input gradient and every parameter gradient with PyTorch's.
fn check_case(
    case: &Value,
    what: &str,
    forward: impl Fn(&Tensor, candle_nn::VarBuilder) -> Result<Tensor>,
) {
    let (map, vb) = var_map(&case["params"]);
    let x = Var::from_tensor(&tensor(&case["input"])).unwrap();
    let out = forward(x.as_tensor(), vb).unwrap();
    assert_close(
        &out,
        &tensor(&case["output"]),
        TOL,
        &format!("{what} output"),
    );
    let grads = weighted_sum(&out, &tensor(&case["r"])).backward().unwrap();
    assert_close(
        grads.get(x.as_tensor()).expect("input gradient"),
        &tensor(&case["grad_input"]),
        TOL,
        &format!("{what} input gradient"),
    );
    let vs = vars(&map);
    let gp = case["grad_params"].as_object().unwrap();
    for (name, want) in gp {
        let g = grads
            .get(vs[name].as_tensor())
            .unwrap_or_else(|| panic!("{what}: no gradient for {name}"));
        assert_close(g, &tensor(want), TOL, &format!("{what} grad {name}"));
    }
}

#[test]
fn linear_matches_pytorch() {
    let f = layers_fixture();
    check_case(&f["linear"], "linear", |x, vb| {
        layers::apply(&layers::linear(4, 3, vb)?, x)
    });
}

#[test]
fn conv2d_matches_pytorch() {
    let f = layers_fixture();
    for name in ["conv2d", "conv2d_lenet"] {
        let c = &f[name]["config"];
        let g = |k: &str| c[k].as_u64().unwrap() as usize;
        check_case(&f[name], name, |x, vb| {
            let conv = layers::conv2d(
                g("in"),
                g("out"),
                g("kernel"),
                g("stride"),
                g("padding"),
                vb,
            )?;
            layers::apply(&conv, x)
        });
    }
}

#[test]
fn pooling_matches_pytorch() {
    let f = layers_fixture();
    for name in [
        "maxpool_k3s2p1",
        "maxpool_k2s2",
        "maxpool_k3s1",
        "avgpool_k3s2p1",
        "avgpool_k2s2",
        "avgpool_k3s1",
    ] {
        let c = &f[name]["config"];
        let g = |k: &str| c[k].as_u64().unwrap() as usize;
        let pool = Pool2d::square(g("kernel"), g("stride"), g("padding"));
        check_case(&f[name], name, |x, _| {
            if name.starts_with("max") {
                ops::max_pool2d(x, pool)
            } else {
                ops::avg_pool2d(x, pool)
            }
        });
    }
}

#[test]
fn batchnorm_matches_pytorch_in_train_and_eval() {
    let f = layers_fixture();
    for (name, c, train) in [
        ("batchnorm2d_train", 3, true),
        ("batchnorm2d_eval", 3, false),
        ("batchnorm1d_train", 5, true),
    ] {
        let case = &f[name];
        let (map, _) = var_map(&case["params"]);
        check_case(case, name, |x, vb| {
            let bn = BatchNorm::new(c, vb)?;
            let mode = if train { Mode::train(0) } else { Mode::eval() };
            bn.forward(x, &mode)
        });
        if train {
            // check_case built its own map; rebuild one to check the running statistics.
            let vb = candle_nn::VarBuilder::from_varmap(
                &map,
                candle_core::DType::F32,
                &candle_core::Device::Cpu,
            );
            let bn = BatchNorm::new(c, vb).unwrap();
            bn.forward(&tensor(&case["input"]), &Mode::train(0))
                .unwrap();
            assert_close(
                bn.running_mean(),
                &tensor(&case["running_mean_after"]),
                TOL,
                "running_mean",
            );
            assert_close(
                bn.running_var(),
                &tensor(&case["running_var_after"]),
                TOL,
                "running_var",
            );
            // The map itself was updated (the trainer checkpoints it).
            let rm = vars(&map)["running_mean"].as_tensor().clone();
            assert_close(
                &rm,
                &tensor(&case["running_mean_after"]),
                TOL,
                "map running_mean",
            );
        }
    }
}

#[test]
fn dropout_eval_layer_norm_rms_norm_softmax_match_pytorch() {
    let f = layers_fixture();
    check_case(&f["dropout_eval"], "dropout (eval)", |x, _| {
        Dropout::new(0.5)?.forward(x, &Mode::eval())
    });
    check_case(&f["layernorm"], "layer norm", |x, vb| {
        LayerNorm::new(5, vb)?.forward(x)
    });
    check_case(&f["rmsnorm"], "rms norm", |x, vb| {
        RmsNorm::new(5, 1e-6, vb)?.forward(x)
    });
    check_case(&f["softmax"], "softmax", |x, _| ops::softmax_last_dim(x));
}

#[test]
fn rnn_lstm_gru_two_layers_bidirectional_match_pytorch() {
    let f: Value = serde_json::from_str(include_str!("reference/parity_rnn.json")).unwrap();
    for (name, case) in f.as_object().unwrap() {
        let kind = if name.starts_with("lstm") {
            CellKind::Lstm
        } else if name.starts_with("gru") {
            CellKind::Gru
        } else {
            CellKind::RnnTanh
        };
        let cfg: RnnConfig = serde_json::from_value(case["config"].clone()).unwrap();
        let (map, vb) = var_map(&case["params"]);
        let rnn = Rnn::new(kind, cfg, vb).unwrap();
        let x = Var::from_tensor(&tensor(&case["input"])).unwrap();
        let h0 = Var::from_tensor(&tensor(&case["h0"])).unwrap();
        let c0 = case
            .get("c0")
            .map(|c| Var::from_tensor(&tensor(c)).unwrap());
        let state = RnnState {
            h: h0.as_tensor().clone(),
            c: c0.as_ref().map(|c| c.as_tensor().clone()),
        };
        let (out, st) = rnn
            .forward(x.as_tensor(), Some(&state), &Mode::eval())
            .unwrap();
        assert_close(
            &out,
            &tensor(&case["output"]),
            TOL,
            &format!("{name} output"),
        );
        assert_close(&st.h, &tensor(&case["h_n"]), TOL, &format!("{name} h_n"));
        let mut l = (weighted_sum(&out, &tensor(&case["r"]))
            + weighted_sum(&st.h, &tensor(&case["rh"])))
        .unwrap();
        if let Some(c) = &st.c {
            assert_close(c, &tensor(&case["c_n"]), TOL, &format!("{name} c_n"));
            l = (l + weighted_sum(c, &tensor(&case["rc"]))).unwrap();
        }
        let grads = l.backward().unwrap();
        assert_close(
            grads.get(x.as_tensor()).unwrap(),
            &tensor(&case["grad_input"]),
            TOL,
            &format!("{name} grad input"),
        );
        assert_close(
            grads.get(h0.as_tensor()).unwrap(),
            &tensor(&case["grad_h0"]),
            TOL,
            &format!("{name} grad h0"),
        );
        if let Some(c0) = &c0 {
            assert_close(
                grads.get(c0.as_tensor()).unwrap(),
                &tensor(&case["grad_c0"]),
                TOL,
                &format!("{name} grad c0"),
            );
        }
        let vs = vars(&map);
        let gp = case["grad_params"].as_object().unwrap();
        assert_eq!(
            gp.len(),
            vs.len(),
            "{name}: parameter count (PyTorch names)"
        );
        for (p, want) in gp {
            let g = grads
                .get(vs[p].as_tensor())
                .unwrap_or_else(|| panic!("{name}: no grad for {p}"));
            assert_close(g, &tensor(want), TOL, &format!("{name} grad {p}"));
        }
    }
}

#[test]
fn losses_match_pytorch() {
    let f: Value = serde_json::from_str(include_str!("reference/parity_losses.json")).unwrap();
    let ce = &f["cross_entropy"];
    let logits = Var::from_tensor(&tensor(&ce["logits"])).unwrap();
    let targets: Vec<u32> = ce["targets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap() as u32)
        .collect();
    let targets = Tensor::new(targets.as_slice(), &candle_core::Device::Cpu).unwrap();
    let l = loss::cross_entropy(logits.as_tensor(), &targets).unwrap();
    assert!((l.to_scalar::<f32>().unwrap() as f64 - ce["loss"].as_f64().unwrap()).abs() < TOL);
    let g = l.backward().unwrap();
    assert_close(
        g.get(logits.as_tensor()).unwrap(),
        &tensor(&ce["grad_logits"]),
        TOL,
        "ce grad",
    );

    let m = &f["mse"];
    let pred = Var::from_tensor(&tensor(&m["pred"])).unwrap();
    let l = loss::mse(pred.as_tensor(), &tensor(&m["target"])).unwrap();
    assert!((l.to_scalar::<f32>().unwrap() as f64 - m["loss"].as_f64().unwrap()).abs() < TOL);
    let g = l.backward().unwrap();
    assert_close(
        g.get(pred.as_tensor()).unwrap(),
        &tensor(&m["grad_pred"]),
        TOL,
        "mse grad",
    );

    let b = &f["bce_with_logits"];
    let lg = Var::from_tensor(&tensor(&b["logits"])).unwrap();
    let l = loss::binary_cross_entropy_with_logits(lg.as_tensor(), &tensor(&b["target"])).unwrap();
    assert!((l.to_scalar::<f32>().unwrap() as f64 - b["loss"].as_f64().unwrap()).abs() < TOL);
    let g = l.backward().unwrap();
    assert_close(
        g.get(lg.as_tensor()).unwrap(),
        &tensor(&b["grad_logits"]),
        TOL,
        "bce grad",
    );
}

#[test]
fn optimizer_steps_match_torch_optim() {
    // f32 parameters take Adam's fused one-pass update, f64 ones the tensor expressions: both
    // must follow torch.optim.
    use candle_core::DType;
    let f: Value = serde_json::from_str(include_str!("reference/parity_optim.json")).unwrap();
    for dtype in [DType::F32, DType::F64] {
        for (name, run) in f["runs"].as_object().unwrap() {
            let config: OptimizerConfig = serde_json::from_value(run["config"].clone()).unwrap();
            let (map, _) = var_map(&f["initial"]);
            for v in map.data().lock().unwrap().values_mut() {
                *v = Var::from_tensor(&v.as_tensor().to_dtype(dtype).unwrap()).unwrap();
            }
            let mut opt = Optimizer::new(config, Params::from_var_map(&map).unwrap()).unwrap();
            let vs = vars(&map);
            for (k, g) in f["grads"].as_array().unwrap().iter().enumerate() {
                let mut l = Tensor::new(0f32, &candle_core::Device::Cpu)
                    .unwrap()
                    .to_dtype(dtype)
                    .unwrap();
                for p in ["w", "b"] {
                    let r = tensor(&g[p]).to_dtype(dtype).unwrap();
                    l = (l + weighted_sum(vs[p].as_tensor(), &r)).unwrap();
                }
                opt.step(&l.backward().unwrap()).unwrap();
                for p in ["w", "b"] {
                    assert_close(
                        &vs[p].as_tensor().to_dtype(DType::F32).unwrap(),
                        &tensor(&run["after"][k][p]),
                        TOL,
                        &format!("{name} ({dtype:?}) step {} param {p}", k + 1),
                    );
                }
            }
        }
    }
}

#[test]
fn gradient_clipping_matches_torch() {
    let f: Value = serde_json::from_str(include_str!("reference/parity_optim.json")).unwrap();
    let c = &f["clip"];
    let (map, _) = var_map(&f["initial"]);
    let vs = vars(&map);
    let mut l = Tensor::new(0f32, &candle_core::Device::Cpu).unwrap();
    for p in ["w", "b"] {
        l = (l + weighted_sum(vs[p].as_tensor(), &tensor(&c["grads"][p]))).unwrap();
    }
    let mut grads = l.backward().unwrap();
    let params = Params::from_var_map(&map).unwrap();
    let norm = clip_grad_norm(&mut grads, &params, c["max_norm"].as_f64().unwrap()).unwrap();
    assert!(
        (norm - c["norm"].as_f64().unwrap()).abs() < 1e-4,
        "norm {norm}"
    );
    for p in ["w", "b"] {
        assert_close(
            grads.get(vs[p].as_tensor()).unwrap(),
            &tensor(&c["clipped"][p]),
            TOL,
            p,
        );
    }
}

#[test]
fn pytorch_state_dict_safetensors_load_directly() {
    let io: Value = serde_json::from_str(include_str!("reference/state_dict_io.json")).unwrap();
    for (kind, bytes) in [
        (
            CellKind::Lstm,
            &include_bytes!("reference/lstm_state_dict.safetensors")[..],
        ),
        (
            CellKind::Gru,
            &include_bytes!("reference/gru_state_dict.safetensors")[..],
        ),
    ] {
        let name = if kind == CellKind::Lstm {
            "lstm"
        } else {
            "gru"
        };
        let vb = candle_nn::VarBuilder::from_buffered_safetensors(
            bytes.to_vec(),
            candle_core::DType::F32,
            &candle_core::Device::Cpu,
        )
        .unwrap();
        let cfg = RnnConfig {
            num_layers: 2,
            bidirectional: true,
            batch_first: true,
            ..RnnConfig::new(3, 4)
        };
        let rnn = Rnn::new(kind, cfg, vb).unwrap();
        let (out, _) = rnn
            .forward(&tensor(&io[name]["input"]), None, &Mode::eval())
            .unwrap();
        assert_close(&out, &tensor(&io[name]["output"]), TOL, name);
    }
}
