//! GPT-2 against transformers (fixtures and tiny folders written by
//! `tests/reference/gen_gpt2.py`) and the invariants of a causal, cached, batched model.

use std::path::{Path, PathBuf};

use candle_core::{Device, IndexOp, Tensor};
use kiln_models::gpt2::{self, load, GenerationConfig, Gpt2, Gpt2Config};
use kiln_nn::init::SeededVarMap;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2")
}

fn parity() -> serde_json::Value {
    let text = std::fs::read_to_string(dir().join("gpt2_parity.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

fn rows(v: &serde_json::Value) -> Vec<Vec<u32>> {
    v.as_array().unwrap().iter().map(ids).collect()
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    fn walk(v: &serde_json::Value, out: &mut Vec<f32>) {
        match v {
            serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, out)),
            x => out.push(x.as_f64().unwrap() as f32),
        }
    }
    let mut out = Vec::new();
    walk(v, &mut out);
    out
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn logits(model: &Gpt2, prompt: &[u32]) -> Vec<f32> {
    let x = Tensor::new(prompt, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    let l = model.forward(&x, None, None).unwrap();
    l.flatten_all().unwrap().to_vec1::<f32>().unwrap()
}

fn greedy(n: usize) -> GenerationConfig {
    GenerationConfig {
        max_new_tokens: n,
        ..Default::default()
    }
}

fn no_stream() -> impl FnMut(usize, u32) -> kiln_nn::Result<()> {
    |_, _| Ok(())
}

#[test]
fn logits_match_transformers() {
    for m in parity()["models"].as_array().unwrap() {
        let (model, cfg, _, _) =
            load::load_folder(&dir().join(m["folder"].as_str().unwrap())).unwrap();
        for (p, want) in m["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .zip(m["logits"].as_array().unwrap())
        {
            let got = logits(&model, &ids(p));
            let want = floats(want);
            assert_eq!(got.len(), ids(p).len() * cfg.vocab_size);
            let d = max_diff(&got, &want);
            assert!(d < 1e-4, "{}: max |Δlogit| = {d}", m["folder"]);
        }
    }
}

#[test]
fn greedy_50_tokens_equal_transformers() {
    for m in parity()["models"].as_array().unwrap() {
        let (model, _, tok, _) =
            load::load_folder(&dir().join(m["folder"].as_str().unwrap())).unwrap();
        for (p, want) in m["prompts"]
            .as_array()
            .unwrap()
            .iter()
            .zip(m["greedy_50"].as_array().unwrap())
        {
            // the fixture was made with min_new_tokens = 50, so no EOS here either
            let out = gpt2::generate(&model, &[ids(p)], &greedy(50), Some(&tok), &mut no_stream())
                .unwrap();
            assert_eq!(out.tokens[0], ids(want), "{}", m["folder"]);
            assert_eq!(out.texts[0], tok.decode(&ids(want)).unwrap());
        }
    }
}

#[test]
fn left_padded_batch_equals_transformers_and_rows_alone() {
    for m in parity()["models"].as_array().unwrap() {
        let (model, _, _, _) =
            load::load_folder(&dir().join(m["folder"].as_str().unwrap())).unwrap();
        // last-position logits of the padded batch, with transformers' mask
        let input = rows(&m["batch_input_ids"]);
        let mask = rows(&m["batch_attention_mask"]);
        let (b, t) = (input.len(), input[0].len());
        let x = Tensor::from_vec(input.concat(), (b, t), &Device::Cpu).unwrap();
        let mk = Tensor::from_vec(mask.concat(), (b, t), &Device::Cpu).unwrap();
        let l = model.forward(&x, None, Some(&mk)).unwrap();
        let last = l
            .i((.., t - 1, ..))
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        let d = max_diff(&last, &floats(&m["batch_last_logits"]));
        assert!(d < 1e-4, "{}: batch max |Δlogit| = {d}", m["folder"]);
        // batched greedy generation
        let prompts = rows(&m["prompts"]);
        let out = gpt2::generate(&model, &prompts, &greedy(20), None, &mut no_stream()).unwrap();
        assert_eq!(out.tokens, rows(&m["batch_greedy_20"]), "{}", m["folder"]);
        for (i, p) in prompts.iter().enumerate() {
            let alone = gpt2::generate(
                &model,
                std::slice::from_ref(p),
                &greedy(20),
                None,
                &mut no_stream(),
            )
            .unwrap();
            assert_eq!(alone.tokens[0], out.tokens[i], "row {i} alone");
        }
    }
}

fn tiny_random(seed: u64) -> (Gpt2, Gpt2Config, SeededVarMap) {
    let cfg = Gpt2Config {
        vocab_size: 61,
        n_positions: 40,
        n_embd: 16,
        n_layer: 2,
        n_head: 2,
        initializer_range: 0.3,
        bos_token_id: None,
        eos_token_id: None,
        ..Default::default()
    };
    let vars = SeededVarMap::new(seed);
    let model = Gpt2::new(&cfg, vars.var_builder()).unwrap();
    (model, cfg, vars)
}

#[test]
fn kv_cached_decoding_equals_full_recomputation() {
    let (model, cfg, _) = tiny_random(3);
    let seq: Vec<u32> = (0..20)
        .map(|i| (i * 7 + 3) % cfg.vocab_size as u32)
        .collect();
    let full = logits(&model, &seq);
    let v = cfg.vocab_size;
    let mut cache = model.new_cache(32);
    // a 5-token prefill, then one token at a time, then a 3-token chunk
    let mut got = Vec::new();
    let mut pos = 0;
    for chunk in [5usize, 1, 1, 1, 1, 1, 1, 1, 1, 1, 3, 1, 1, 1] {
        let x = Tensor::new(&seq[pos..pos + chunk], &Device::Cpu)
            .unwrap()
            .unsqueeze(0)
            .unwrap();
        let l = model.forward(&x, Some(&mut cache), None).unwrap();
        got.extend(l.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        pos += chunk;
    }
    assert_eq!(pos, 20);
    assert_eq!(cache.len(), 20);
    let d = max_diff(&got, &full[..20 * v]);
    assert!(d < 1e-5, "cached vs full: {d}");
}

#[test]
fn changing_a_later_token_leaves_earlier_logits_unchanged() {
    let (model, cfg, _) = tiny_random(4);
    let v = cfg.vocab_size;
    let a: Vec<u32> = vec![5, 9, 17, 2, 33, 40, 11, 8];
    let mut b = a.clone();
    b[5] = 59;
    let (la, lb) = (logits(&model, &a), logits(&model, &b));
    assert_eq!(la[..5 * v], lb[..5 * v]);
    assert!(max_diff(&la[5 * v..], &lb[5 * v..]) > 1e-3);
}

#[test]
fn sampling_is_seeded() {
    let (model, _, _) = tiny_random(5);
    let cfg = |seed| GenerationConfig {
        max_new_tokens: 15,
        do_sample: true,
        temperature: 1.5,
        top_k: Some(20),
        top_p: 0.95,
        repetition_penalty: 1.2,
        num_return_sequences: 3,
        seed,
        ..Default::default()
    };
    let prompts = vec![vec![1u32, 2, 3], vec![4u32]];
    let a = gpt2::generate(&model, &prompts, &cfg(1), None, &mut no_stream()).unwrap();
    let b = gpt2::generate(&model, &prompts, &cfg(1), None, &mut no_stream()).unwrap();
    let c = gpt2::generate(&model, &prompts, &cfg(2), None, &mut no_stream()).unwrap();
    assert_eq!(a.tokens.len(), 6);
    assert_eq!(a.tokens, b.tokens);
    assert_ne!(a.tokens, c.tokens);
    assert_ne!(
        a.tokens[0], a.tokens[1],
        "return sequences of one prompt differ"
    );
}

#[test]
fn eos_and_stop_strings_end_sequences_and_tokens_stream() {
    let (model, _, _) = tiny_random(6);
    let first = gpt2::generate(&model, &[vec![1, 2]], &greedy(10), None, &mut no_stream()).unwrap();
    let eos = first.tokens[0][3];
    let cfg = GenerationConfig {
        eos_token_id: vec![eos],
        ..greedy(10)
    };
    let mut streamed = Vec::new();
    let out = gpt2::generate(&model, &[vec![1, 2]], &cfg, None, &mut |r, t| {
        streamed.push((r, t));
        Ok(())
    })
    .unwrap();
    let stop = first.tokens[0].iter().position(|&t| t == eos).unwrap();
    assert_eq!(out.tokens[0], first.tokens[0][..=stop].to_vec());
    assert_eq!(out.finish[0], gpt2::generate::FinishReason::Eos);
    assert_eq!(
        streamed,
        out.tokens[0].iter().map(|&t| (0, t)).collect::<Vec<_>>()
    );
}

#[test]
fn stop_strings_cut_the_text() {
    let (model, _, tok, _) = load::load_folder(&dir().join("tiny-a")).unwrap();
    let prompt = tok.encode("Once upon a time").unwrap();
    let full = gpt2::generate(
        &model,
        std::slice::from_ref(&prompt),
        &greedy(30),
        Some(&tok),
        &mut no_stream(),
    )
    .unwrap();
    let text = &full.texts[0];
    let stop: String = text.chars().skip(5).take(2).collect();
    let cfg = GenerationConfig {
        stop_strings: vec![stop.clone()],
        ..greedy(30)
    };
    let out = gpt2::generate(&model, &[prompt], &cfg, Some(&tok), &mut no_stream()).unwrap();
    assert_eq!(out.finish[0], gpt2::generate::FinishReason::StopString);
    assert!(
        out.texts[0].ends_with(&stop),
        "{:?} / {stop:?}",
        out.texts[0]
    );
    assert!(text.starts_with(&out.texts[0]));
    assert!(out.tokens[0].len() < 30);
}

#[test]
fn seeded_var_map_names_are_the_hf_names_and_training_lowers_the_loss() {
    use kiln_nn::optim::{AdamConfig, Optimizer, OptimizerConfig, Params};
    use kiln_nn::{Mode, TrainStep};
    let (model, cfg, vars) = tiny_random(7);
    let mut names: Vec<String> = vars
        .var_map()
        .data()
        .lock()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    names.sort();
    let mut want: Vec<String> = load::expected_tensors(&cfg)
        .into_iter()
        .map(|(n, _)| n)
        .collect();
    want.sort();
    assert_eq!(names, want);
    let x = Tensor::new(&[[1u32, 2, 3, 4, 5, 6], [6, 5, 4, 3, 2, 1]], &Device::Cpu).unwrap();
    let y = Tensor::new(&[[2u32, 3, 4, 5, 6, 7], [5, 4, 3, 2, 1, 0]], &Device::Cpu).unwrap();
    let batch = (x, y);
    let params = Params::from_var_map(vars.var_map()).unwrap();
    let mut opt = Optimizer::new(
        OptimizerConfig::Adamw(AdamConfig {
            lr: 1e-2,
            ..Default::default()
        }),
        params,
    )
    .unwrap();
    let first = model.evaluate(&batch).unwrap().loss();
    for step in 0..30 {
        let l = model.loss(&batch, &Mode::train(step)).unwrap();
        opt.step(&l.backward().unwrap()).unwrap();
    }
    let last = model.evaluate(&batch).unwrap().loss();
    assert!(last < 0.5 * first, "loss {first} -> {last}");
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

fn load_err(dir: &Path) -> String {
    match load::load_folder(dir) {
        Ok(_) => panic!("{} loaded", dir.display()),
        Err(e) => e.to_string(),
    }
}

fn edit_config(dir: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let p = dir.join("config.json");
    let mut v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(p, v.to_string()).unwrap();
}

fn edit_tensors(dir: &Path, f: impl FnOnce(&mut std::collections::HashMap<String, Tensor>)) {
    let p = dir.join("model.safetensors");
    let mut t = candle_core::safetensors::load(&p, &Device::Cpu).unwrap();
    f(&mut t);
    candle_core::safetensors::save(&t, &p).unwrap();
}

#[test]
fn bad_folders_are_clear_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let fresh = |name: &str| {
        let d = tmp.path().join(name);
        copy_dir(&dir().join("tiny-a"), &d);
        d
    };
    // inconsistent config
    let d = fresh("heads");
    edit_config(&d, |v| v["n_head"] = 5.into());
    let e = load_err(&d);
    assert!(e.contains("n_head = 5") && e.contains("n_embd = 32"), "{e}");
    let d = fresh("type");
    edit_config(&d, |v| v["model_type"] = "llama".into());
    assert!(load_err(&d).contains("model_type"));
    let d = fresh("eos");
    edit_config(&d, |v| v["eos_token_id"] = 999.into());
    assert!(load_err(&d).contains("eos_token_id = 999"));
    let d = fresh("act");
    edit_config(&d, |v| v["activation_function"] = "swiglu".into());
    assert!(load_err(&d).contains("activation_function"));
    // missing and misshapen tensors
    let d = fresh("missing");
    edit_tensors(&d, |t| {
        t.remove("transformer.h.1.mlp.c_fc.weight");
    });
    let e = load_err(&d);
    assert!(
        e.contains("missing tensor h.1.mlp.c_fc.weight") && e.contains("[32, 128]"),
        "{e}"
    );
    let d = fresh("shape");
    edit_tensors(&d, |t| {
        let w = t["transformer.h.0.attn.c_attn.weight"]
            .t()
            .unwrap()
            .contiguous()
            .unwrap();
        t.insert("transformer.h.0.attn.c_attn.weight".into(), w);
    });
    let e = load_err(&d);
    assert!(
        e.contains("h.0.attn.c_attn.weight has shape [96, 32], expected [32, 96]"),
        "{e}"
    );
    let d = fresh("vocab");
    edit_config(&d, |v| v["vocab_size"] = 200.into());
    assert!(load_err(&d).contains("vocab_size = 200"));
    // files
    let d = fresh("bin");
    std::fs::rename(d.join("model.safetensors"), d.join("pytorch_model.bin")).unwrap();
    let e = load_err(&d);
    assert!(
        e.contains("pytorch_model.bin") && e.contains("safe_serialization=True"),
        "{e}"
    );
    let d = fresh("noweights");
    std::fs::remove_file(d.join("model.safetensors")).unwrap();
    assert!(load_err(&d).contains("model.safetensors"));
    let d = fresh("notok");
    std::fs::remove_file(d.join("tokenizer.json")).unwrap();
    assert!(load_err(&d).contains("tokenizer.json or vocab.json"));
    let d = fresh("noconfig");
    std::fs::remove_file(d.join("config.json")).unwrap();
    assert!(load_err(&d).contains("config.json"));
    let d = fresh("badjson");
    std::fs::write(d.join("config.json"), "{").unwrap();
    assert!(load_err(&d).contains("not valid JSON"));
    let d = tmp.path().join("shard");
    copy_dir(&dir().join("tiny-b"), &d);
    std::fs::remove_file(d.join("model-00002-of-00002.safetensors")).unwrap();
    assert!(load_err(&d).contains("model-00002-of-00002.safetensors"));
    assert!(load_err(&tmp.path().join("nope")).contains("not a folder"));
}

#[test]
fn bad_inputs_are_errors() {
    let (model, _, _) = tiny_random(8);
    let e = |x: Tensor| model.forward(&x, None, None).unwrap_err().to_string();
    assert!(e(Tensor::new(&[[1u32, 61]], &Device::Cpu).unwrap()).contains("token id 61"));
    assert!(e(Tensor::new(&[1u32, 2], &Device::Cpu).unwrap()).contains("(batch, time)"));
    assert!(
        e(Tensor::zeros((1, 41), candle_core::DType::U32, &Device::Cpu).unwrap())
            .contains("n_positions = 40")
    );
    let x = Tensor::new(&[[1u32, 2]], &Device::Cpu).unwrap();
    let m = Tensor::new(&[[1u32, 1, 1]], &Device::Cpu).unwrap();
    assert!(model
        .forward(&x, None, Some(&m))
        .unwrap_err()
        .to_string()
        .contains("attention_mask"));
    let g = |p: Vec<Vec<u32>>, c: GenerationConfig| {
        gpt2::generate(&model, &p, &c, None, &mut no_stream()).map(|_| ())
    };
    assert!(g(vec![vec![]], greedy(3))
        .unwrap_err()
        .to_string()
        .contains("empty"));
    assert!(g(vec![], greedy(3)).is_err());
    assert!(g(vec![vec![1]], greedy(40))
        .unwrap_err()
        .to_string()
        .contains("max_new_tokens"));
    let stop = GenerationConfig {
        stop_strings: vec!["x".into()],
        ..greedy(3)
    };
    assert!(g(vec![vec![1]], stop)
        .unwrap_err()
        .to_string()
        .contains("tokenizer"));
    assert!(Gpt2Config {
        n_head: 5,
        ..Default::default()
    }
    .validate()
    .is_err());
    assert!(Gpt2Config::default().validate().is_ok());
}
