//! Decode and prefill speed of kiln's GPT-2 on a Hugging Face folder (used by
//! `bench/gpt_decode.py`; prints one JSON line).
//!
//! `cargo run --release -p kiln-models --example gpt_decode -- DIR [prompt_len] [new] [prefill_len] [f32|bf16|q8] [prefill_runs]`
//!
//! Decode and prefill are each the best of two runs (`prefill_runs` more prefills, for a
//! profile).

use std::time::Instant;

use candle_core::{Device, Tensor};
use kiln_models::gpt2::{self, load, GenerationConfig, WeightDtype};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    kiln_nn::limit_idle_spinning();
    kiln_nn::keep_freed_memory();
    let args: Vec<String> = std::env::args().collect();
    let dir = std::path::PathBuf::from(args.get(1).ok_or("usage: gpt_decode DIR")?);
    let arg = |i: usize, d: usize| args.get(i).and_then(|s| s.parse().ok()).unwrap_or(d);
    let (prompt_len, new, prefill_len) = (arg(2, 16), arg(3, 128), arg(4, 512));
    let dtype: WeightDtype = args.get(5).map_or(Ok(WeightDtype::F32), |s| s.parse())?;
    let (model, cfg, _, _) = load::load_folder_with_dtype(&dir, dtype)?;
    let v = cfg.vocab_size as u32;
    let ids = |n: usize| {
        (0..n as u32)
            .map(|i| (i * 7919 + 13) % v)
            .collect::<Vec<u32>>()
    };
    let greedy = GenerationConfig {
        max_new_tokens: new,
        ..Default::default()
    };
    // warm-up
    gpt2::generate(
        &model,
        &[ids(4)],
        &GenerationConfig {
            max_new_tokens: 4,
            ..greedy.clone()
        },
        None,
        &mut |_, _| Ok(()),
    )?;
    let mut decode = f64::INFINITY;
    let mut tokens = 0;
    for _ in 0..2 {
        let t = Instant::now();
        let out = gpt2::generate(
            &model,
            &[ids(prompt_len)],
            &greedy,
            None,
            &mut |_, _| Ok(()),
        )?;
        decode = decode.min(t.elapsed().as_secs_f64());
        tokens = out.new_tokens();
    }
    let mut prefill = f64::INFINITY;
    for _ in 0..arg(6, 2) {
        let x = Tensor::new(ids(prefill_len), &Device::Cpu)?.unsqueeze(0)?;
        let t = Instant::now();
        let mut cache = model.new_cache(prefill_len);
        let h = model.hidden(&x, Some(&mut cache), None, &kiln_nn::Mode::eval())?;
        let last = h.narrow(1, prefill_len - 1, 1)?;
        let _ = model.logits(&last)?.flatten_all()?.to_vec1::<f32>()?;
        prefill = prefill.min(t.elapsed().as_secs_f64());
    }
    println!(
        "{{\"dtype\": \"{dtype}\", \"weight_bytes\": {}, \"decode_tokens\": {tokens}, \"decode_s\": {decode}, \"prefill_tokens\": {prefill_len}, \"prefill_s\": {prefill}}}",
        model.weight_bytes()
    );
    Ok(())
}
