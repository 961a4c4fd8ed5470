//! Reduced-precision GPT-2 weights (`WeightDtype::Bf16`, `WeightDtype::Q8`) against f32 on
//! the tiny random transformers folder `fixtures/gpt2/tiny-a` (n_embd 32, 2 layers).

use std::path::PathBuf;

use candle_core::{Device, Tensor};
use kiln_models::gpt2::{self, load, GenerationConfig, Gpt2, WeightDtype};

fn tiny() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gpt2/tiny-a")
}

fn model(dtype: WeightDtype) -> Gpt2 {
    load::load_folder_with_dtype(&tiny(), dtype).unwrap().0
}

fn ids(n: usize, v: usize) -> Vec<u32> {
    (0..n as u32).map(|i| (i * 37 + 5) % v as u32).collect()
}

fn logits(m: &Gpt2, ids: &[u32]) -> Vec<f32> {
    let x = Tensor::new(ids, &Device::Cpu)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    m.forward(&x, None, None)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap()
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn reduced_precision_logits_stay_close_to_f32() {
    let f32_model = model(WeightDtype::F32);
    let v = f32_model.config().vocab_size;
    let x = ids(40, v);
    let reference = logits(&f32_model, &x);
    let spread = reference.iter().map(|l| l.abs()).fold(0.0, f32::max);
    // Stated tolerances, relative to the largest |logit|: bf16 keeps 8 mantissa bits (weights
    // within 2^-9 relative), q8 within 1/254 of each block's largest weight.
    for (dtype, tol) in [(WeightDtype::Bf16, 0.02), (WeightDtype::Q8, 0.03)] {
        let m = model(dtype);
        assert_eq!(m.weight_dtype(), dtype);
        let d = max_diff(&reference, &logits(&m, &x));
        assert!(d > 0.0, "{dtype}: identical to f32, so nothing was packed");
        assert!(
            d <= tol * spread,
            "{dtype}: max |Δlogit| {d} > {tol} × {spread}"
        );
        assert!(m.weight_bytes() < f32_model.weight_bytes());
    }
}

#[test]
fn packed_cached_decoding_equals_full_recomputation() {
    // 1-row steps go through the matrix-vector kernels, the 40-token pass through the expanded
    // matmul: both must compute with the same packed weights.
    for dtype in [WeightDtype::F32, WeightDtype::Bf16, WeightDtype::Q8] {
        let m = model(dtype);
        let v = m.config().vocab_size;
        let x = ids(40, v);
        let full = logits(&m, &x);
        let mut cache = m.new_cache(40);
        let mut stepped = Vec::new();
        for &id in &x {
            let t = Tensor::new(&[[id]], &Device::Cpu).unwrap();
            let l = m.forward(&t, Some(&mut cache), None).unwrap();
            stepped.extend(l.flatten_all().unwrap().to_vec1::<f32>().unwrap());
        }
        let d = max_diff(&full, &stepped);
        assert!(d < 1e-4, "{dtype}: cached vs full max |Δ| = {d}");
    }
}

#[test]
fn greedy_generation_runs_in_every_dtype_and_packing_twice_changes_nothing() {
    let v = model(WeightDtype::F32).config().vocab_size;
    let prompt = ids(5, v);
    let cfg = GenerationConfig {
        max_new_tokens: 20,
        ..Default::default()
    };
    let mut outs = Vec::new();
    for dtype in [WeightDtype::F32, WeightDtype::Bf16, WeightDtype::Q8] {
        let m = model(dtype);
        let out = gpt2::generate(
            &m,
            std::slice::from_ref(&prompt),
            &cfg,
            None,
            &mut |_, _| Ok(()),
        )
        .unwrap();
        assert_eq!(out.tokens[0].len(), 20);
        outs.push(out.tokens[0].clone());
    }
    // Repacking a q8 model is a no-op (no second rounding).
    let q8 = model(WeightDtype::Q8);
    let x = ids(12, v);
    let once = logits(&q8, &x);
    let twice = logits(&q8.with_weight_dtype(WeightDtype::Bf16).unwrap(), &x);
    assert_eq!(once, twice);
    assert!(outs.iter().all(|o| !o.is_empty()));
}

#[test]
fn a_bad_dtype_name_is_an_error_naming_the_choices() {
    let e = "fp8".parse::<WeightDtype>().unwrap_err().to_string();
    assert!(
        e.contains("fp8") && e.contains("one of f32, bf16, q8"),
        "{e}"
    );
}
