//! GPT-2 training against PyTorch: from the same initial weights, AdamW steps with gradient
//! clipping on a fixed batch give transformers' losses, gradient norms and final logits
//! (fixture from `tests/reference/gen_gpt2_train.py`). The saved Hugging Face folder loads
//! back (in kiln) with the same logits, and trains on from where it was.

use candle_core::{Device, Tensor};
use kiln_models::gpt2::{self, Gpt2Config};
use kiln_models::tokenizer::Tokenizer;
use kiln_models::tokenizer_train;
use kiln_nn::init::SeededVarMap;
use kiln_nn::optim::{clip_grad_norm, AdamConfig, Optimizer, OptimizerConfig, Params};
use kiln_nn::{Mode, TrainStep};
use serde_json::Value;

fn fixture() -> Value {
    let text = include_str!("fixtures/gpt2_train.json");
    serde_json::from_str(text).unwrap()
}

fn config(f: &Value) -> Gpt2Config {
    let c = &f["config"];
    Gpt2Config {
        vocab_size: c["vocab_size"].as_u64().unwrap() as usize,
        n_positions: c["n_positions"].as_u64().unwrap() as usize,
        n_embd: c["n_embd"].as_u64().unwrap() as usize,
        n_layer: c["n_layer"].as_u64().unwrap() as usize,
        n_head: c["n_head"].as_u64().unwrap() as usize,
        resid_pdrop: 0.0,
        embd_pdrop: 0.0,
        attn_pdrop: 0.0,
        bos_token_id: None,
        eos_token_id: None,
        ..Gpt2Config::default()
    }
}

fn ids(v: &Value) -> Tensor {
    let rows: Vec<Vec<u32>> = serde_json::from_value(v.clone()).unwrap();
    Tensor::new(rows, &Device::Cpu).unwrap()
}

/// A fresh model of the fixture's config whose variables hold the fixture's initial weights.
fn model_from_fixture(f: &Value) -> (gpt2::Gpt2, SeededVarMap) {
    let (model, vars) = gpt2::train::fresh(&config(f), 0).unwrap();
    let data = vars.var_map().data().lock().unwrap();
    assert_eq!(data.len(), f["weights"].as_object().unwrap().len());
    for (name, var) in data.iter() {
        let w = &f["weights"][name];
        let shape: Vec<usize> = serde_json::from_value(w["shape"].clone()).unwrap();
        let values: Vec<f32> = serde_json::from_value(w["data"].clone()).unwrap();
        assert_eq!(var.dims(), shape.as_slice(), "{name}");
        var.set(&Tensor::from_vec(values, shape, &Device::Cpu).unwrap())
            .unwrap();
    }
    drop(data);
    (model, vars)
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn logits(model: &gpt2::Gpt2, x: &Tensor) -> Vec<f32> {
    model
        .forward(x, None, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

/// Run the fixture's three AdamW steps; return the model after them.
fn train_like_pytorch(f: &Value) -> (gpt2::Gpt2, SeededVarMap) {
    let (model, vars) = model_from_fixture(f);
    let batch = (ids(&f["input_ids"]), ids(&f["target_ids"]));
    let a = &f["adamw"];
    let params = Params::from_var_map(vars.var_map()).unwrap();
    let mut opt = Optimizer::new(
        OptimizerConfig::Adamw(AdamConfig {
            lr: a["lr"].as_f64().unwrap(),
            beta1: a["beta1"].as_f64().unwrap(),
            beta2: a["beta2"].as_f64().unwrap(),
            eps: a["eps"].as_f64().unwrap(),
            weight_decay: a["weight_decay"].as_f64().unwrap(),
            ..AdamConfig::default()
        }),
        params.clone(),
    )
    .unwrap();
    let clip = f["clip_grad_norm"].as_f64().unwrap();
    let losses = f["losses"].as_array().unwrap();
    let norms = f["grad_norms"].as_array().unwrap();
    for (step, (want_loss, want_norm)) in losses.iter().zip(norms).enumerate() {
        let loss = model.loss(&batch, &Mode::train(step as u64)).unwrap();
        let got = loss.to_scalar::<f32>().unwrap() as f64;
        let want = want_loss.as_f64().unwrap();
        assert!(
            (got - want).abs() < 2e-5,
            "step {step}: loss {got} vs PyTorch {want}"
        );
        let mut grads = loss.backward().unwrap();
        let norm = clip_grad_norm(&mut grads, &params, clip).unwrap();
        let want = want_norm.as_f64().unwrap();
        assert!(
            (norm - want).abs() < 1e-4 * want.max(1.0),
            "step {step}: gradient norm {norm} vs PyTorch {want}"
        );
        opt.step(&grads).unwrap();
    }
    (model, vars)
}

#[test]
fn adamw_steps_match_pytorch() {
    let f = fixture();
    let (model, _) = train_like_pytorch(&f);
    let batch = (ids(&f["input_ids"]), ids(&f["target_ids"]));
    let sums = model.evaluate(&batch).unwrap();
    let want = f["final_loss"].as_f64().unwrap();
    assert!(
        (sums.loss() - want).abs() < 5e-5,
        "final loss {} vs PyTorch {want}",
        sums.loss()
    );
    assert_eq!(sums.count, batch.1.elem_count());
    let want: Vec<f32> = serde_json::from_value(f["final_logits"].clone()).unwrap();
    let d = max_abs_diff(&logits(&model, &batch.0), &want);
    assert!(d < 2e-4, "final logits differ from PyTorch's by {d}");
    assert!((gpt2::train::perplexity(sums.loss()) - sums.loss().exp()).abs() < 1e-12);
}

/// A character tokenizer with exactly `n` characters.
fn char_tokenizer(n: usize) -> Tokenizer {
    let text: String = ('a'..='z').take(n).collect();
    let t = tokenizer_train::char_level(&text).unwrap();
    Tokenizer::from_bytes(t.to_string(false).unwrap().as_bytes()).unwrap()
}

#[test]
fn saved_folder_loads_with_the_same_logits_and_trains_on() {
    let f = fixture();
    let (model, vars) = train_like_pytorch(&f);
    let cfg = config(&f);
    let tok = char_tokenizer(cfg.vocab_size);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("gpt");
    gpt2::save::save_folder(&out, &cfg, vars.var_map(), &tok).unwrap();
    for file in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let config: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).unwrap()).unwrap();
    assert_eq!(config["model_type"], "gpt2");
    assert_eq!(config["architectures"][0], "GPT2LMHeadModel");
    assert_eq!(config["n_embd"], cfg.n_embd);
    assert!(gpt2::load::is_hf_gpt2(&out));

    let x = ids(&f["input_ids"]);
    let (loaded, lcfg, ltok, _) = gpt2::load::load_folder(&out).unwrap();
    assert_eq!(lcfg, cfg);
    // The loaded (inference) model runs kiln's decode kernels and vectorised gelu_new, the
    // trained one candle's ops: equal up to float rounding.
    let (a, b) = (logits(&loaded, &x), logits(&model, &x));
    assert_eq!(a.len(), b.len());
    let d = a
        .iter()
        .zip(&b)
        .map(|(p, q)| (p - q).abs())
        .fold(0f32, f32::max);
    assert!(d < 1e-5, "loaded vs trained logits differ by {d}");
    assert_eq!(ltok.encode("cab").unwrap(), [2, 0, 1]);
    assert_eq!(ltok.decode(&[2, 0, 1]).unwrap(), "cab");

    // Trainable again: the same logits, and a step changes them.
    let (again, _, _, avars) = gpt2::train::from_folder(&out).unwrap();
    assert_eq!(logits(&again, &x), logits(&model, &x));
    let batch = (x.clone(), ids(&f["target_ids"]));
    let params = Params::from_var_map(avars.var_map()).unwrap();
    let mut opt = Optimizer::new(OptimizerConfig::Adamw(AdamConfig::default()), params).unwrap();
    let before = again.evaluate(&batch).unwrap().loss();
    for step in 0..5 {
        let loss = again.loss(&batch, &Mode::train(step)).unwrap();
        opt.step(&loss.backward().unwrap()).unwrap();
    }
    let after = again.evaluate(&batch).unwrap().loss();
    assert!(
        after < before,
        "fine-tuning did not lower the loss: {before} -> {after}"
    );
}

#[test]
fn save_and_load_refuse_bad_input() {
    let f = fixture();
    let (_, vars) = model_from_fixture(&f);
    let cfg = config(&f);
    let dir = tempfile::tempdir().unwrap();
    // A tokenizer larger than the model's vocabulary.
    let e = gpt2::save::save_folder(dir.path(), &cfg, vars.var_map(), &char_tokenizer(20))
        .unwrap_err()
        .to_string();
    assert!(e.contains("20 tokens") && e.contains("13"), "{e}");
    // n_head that does not divide n_embd.
    let bad = Gpt2Config {
        n_head: 3,
        ..cfg.clone()
    };
    let e = gpt2::train::fresh(&bad, 0).err().unwrap().to_string();
    assert!(e.contains("n_head"), "{e}");
    // A missing folder.
    let e = gpt2::train::from_folder(&dir.path().join("nope"))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn same_seed_same_initial_model() {
    let cfg = config(&fixture());
    let x = Tensor::new(&[[1u32, 2, 3, 4]], &Device::Cpu).unwrap();
    let (a, _) = gpt2::train::fresh(&cfg, 7).unwrap();
    let (b, _) = gpt2::train::fresh(&cfg, 7).unwrap();
    let (c, _) = gpt2::train::fresh(&cfg, 8).unwrap();
    assert_eq!(logits(&a, &x), logits(&b, &x));
    assert_ne!(logits(&a, &x), logits(&c, &x));
}

#[test]
fn embedded_default_model_knows_shakespeare() {
    use kiln_models::gpt2::embedded;
    assert!(embedded::MODEL_SAFETENSORS.len() < 15_000_000);
    let (model, cfg, tok) = embedded::load().unwrap();
    cfg.validate().unwrap();
    assert_eq!(tok.vocab_size(), cfg.vocab_size);
    // Hamlet, III.i: the model's loss on it is far below a uniform guess over 84 characters
    // (ln 84 = 4.43 nats).
    let text =
        "To be, or not to be, that is the question:\nWhether 'tis nobler in the mind to suff";
    let ids = tok.encode(text).unwrap();
    let t = cfg.n_positions.min(ids.len() - 1);
    let x = Tensor::new(&ids[..t], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let y = Tensor::new(&ids[1..=t], &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let loss = model.evaluate(&(x, y)).unwrap().loss();
    assert!(loss < 2.3, "loss {loss} on Hamlet");
    // The folder written out loads like any other.
    let dir = tempfile::tempdir().unwrap();
    embedded::write_folder(dir.path()).unwrap();
    let (_, lcfg, _, _) = gpt2::load::load_folder(dir.path()).unwrap();
    assert_eq!(lcfg, cfg);
}
