//! The quality cost of bf16 and int8 (q8) weights against f32 (used by `bench/gpt_decode.py`;
//! prints one JSON line per dtype).
//!
//! * The embedded character-level Shakespeare GPT on held-out text (the last 10% of
//!   `data/text/shakespeare.txt`, the validation split it was trained with): perplexity, and
//!   the logits' difference from f32 (max and mean |Δ|, share of positions whose most likely
//!   next character is unchanged).
//! * With a Hugging Face folder `DIR` (the benchmark's random GPT-2 small), the logits of a
//!   64-token prompt against f32: max |Δ| relative to the f32 logits' standard deviation, and
//!   the argmax agreement.
//!
//! `cargo run --release -p kiln-models --example gpt_quality -- [windows] [DIR]`

use candle_core::{Device, Tensor};
use kiln_models::gpt2::{embedded, load, Gpt2, WeightDtype};

const DTYPES: [WeightDtype; 3] = [WeightDtype::F32, WeightDtype::Bf16, WeightDtype::Q8];

/// Logits of every window, flattened: (windows·T·V).
fn logits(model: &Gpt2, windows: &[Vec<u32>]) -> Result<Vec<f32>, Box<dyn std::error::Error>> {
    let mut out = Vec::new();
    for batch in windows.chunks(32) {
        let t = batch[0].len();
        let flat: Vec<u32> = batch.iter().flatten().copied().collect();
        let ids = Tensor::from_vec(flat, (batch.len(), t), &Device::Cpu)?;
        out.extend(
            model
                .forward(&ids, None, None)?
                .flatten_all()?
                .to_vec1::<f32>()?,
        );
    }
    Ok(out)
}

/// (max |a - b|, mean |a - b|, share of rows of width `v` with the same argmax).
fn compare(a: &[f32], b: &[f32], v: usize) -> (f64, f64, f64) {
    let (mut max, mut sum) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        let d = (x - y).abs() as f64;
        max = max.max(d);
        sum += d;
    }
    let argmax = |r: &[f32]| {
        r.iter()
            .enumerate()
            .fold(0, |best, (i, &x)| if x > r[best] { i } else { best })
    };
    let rows = a.len() / v;
    let same = a
        .chunks(v)
        .zip(b.chunks(v))
        .filter(|(x, y)| argmax(x) == argmax(y))
        .count();
    (max, sum / a.len() as f64, same as f64 / rows as f64)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let n_windows: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(400);
    // From the repository root (as the benchmark runs it), else from this crate's source.
    let local = std::path::PathBuf::from("data/text/shakespeare.txt");
    let text_path = if local.is_file() {
        local
    } else {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/text/shakespeare.txt")
    };
    let text = std::fs::read_to_string(&text_path)?;
    let (_, cfg, tok) = embedded::load()?;
    let ids = tok.encode(&text)?;
    let held_out = &ids[ids.len() - ids.len() / 10..];
    let t = cfg.n_positions;
    let windows: Vec<Vec<u32>> = held_out
        .chunks_exact(t + 1)
        .take(n_windows)
        .map(|w| w.to_vec())
        .collect();
    let inputs: Vec<Vec<u32>> = windows.iter().map(|w| w[..t].to_vec()).collect();
    let v = cfg.vocab_size;
    let mut reference: Option<Vec<f32>> = None;
    for dtype in DTYPES {
        let model = embedded::load()?.0.with_weight_dtype(dtype)?;
        let l = logits(&model, &inputs)?;
        // Mean next-character negative log-likelihood.
        let mut nll = 0f64;
        for (row, w) in l.chunks(t * v).zip(&windows) {
            for (p, scores) in row.chunks(v).enumerate() {
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
                let lse = scores
                    .iter()
                    .map(|&s| (s as f64 - max).exp())
                    .sum::<f64>()
                    .ln()
                    + max;
                nll += lse - scores[w[p + 1] as usize] as f64;
            }
        }
        let nll = nll / (windows.len() * t) as f64;
        let base = reference.get_or_insert_with(|| l.clone());
        let (max, mean, same) = compare(base, &l, v);
        println!(
            "{{\"model\": \"embedded-shakespeare\", \"dtype\": \"{dtype}\", \"weight_bytes\": {}, \"held_out_chars\": {}, \"nll\": {nll:.5}, \"perplexity\": {:.4}, \"max_abs_logit_diff\": {max:.5}, \"mean_abs_logit_diff\": {mean:.6}, \"argmax_agreement\": {same:.5}}}",
            model.weight_bytes(),
            windows.len() * t,
            nll.exp()
        );
    }
    if let Some(dir) = args.get(2) {
        let dir = std::path::Path::new(dir);
        let mut reference: Option<(Vec<f32>, f64)> = None;
        for dtype in DTYPES {
            let (model, cfg, _, _) = load::load_folder_with_dtype(dir, dtype)?;
            let v = cfg.vocab_size;
            let prompt: Vec<u32> = (0..64u32).map(|i| (i * 7919 + 13) % v as u32).collect();
            let l = logits(&model, &[prompt])?;
            let (base, std) = reference.get_or_insert_with(|| {
                let mean = l.iter().map(|&x| x as f64).sum::<f64>() / l.len() as f64;
                let var =
                    l.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / l.len() as f64;
                (l.clone(), var.sqrt())
            });
            let (max, mean, same) = compare(base, &l, v);
            println!(
                "{{\"model\": \"{}\", \"dtype\": \"{dtype}\", \"weight_bytes\": {}, \"max_abs_logit_diff_over_std\": {:.5}, \"mean_abs_logit_diff_over_std\": {:.6}, \"argmax_agreement\": {same:.4}}}",
                dir.display(),
                model.weight_bytes(),
                max / *std,
                mean / *std
            );
        }
    }
    Ok(())
}
