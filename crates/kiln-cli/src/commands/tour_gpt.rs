//! The tour's GPT chapter: kiln's embedded default GPT (a small character-level GPT-2 trained
//! by kiln on Shakespeare) continues a sentence, seeded, and reports its prefill and decode
//! speed.

use anyhow::{Context, Result};
use kiln_models::gpt2::{embedded, generate, GenerationConfig};

use crate::output::print_pairs;
use crate::report::{Block, Chapter};

/// The sentence the model continues.
pub const PROMPT: &str = "In the future, artificial intelligence will";

/// Chapter `number`: the embedded GPT continues [`PROMPT`] (sampling at temperature 0.8 with
/// `seed`) up to its context length.
pub fn gpt_chapter(number: usize, seed: u64) -> Result<Chapter> {
    let title = format!("{number}. A small GPT continues a sentence");
    println!("\n== {title} ==");
    let (model, cfg, tok) = embedded::load().context("cannot load the embedded GPT")?;
    let prompt = tok.encode(PROMPT).context("cannot encode the prompt")?;
    let gen = GenerationConfig {
        max_new_tokens: cfg.n_positions.saturating_sub(prompt.len()).max(1),
        do_sample: true,
        temperature: 0.8,
        top_k: None,
        seed,
        ..GenerationConfig::default()
    };
    let out = generate(
        &model,
        std::slice::from_ref(&prompt),
        &gen,
        Some(&tok),
        &mut |_, _| Ok(()),
    )?;
    let text = format!("{PROMPT}{}", out.texts.first().map_or("", String::as_str));
    let rate = |n: usize, s: f64| {
        if s > 0.0 {
            format!("{:.0} tokens/s", n as f64 / s)
        } else {
            "-".into()
        }
    };
    let params = cfg.vocab_size * cfg.n_embd
        + cfg.n_positions * cfg.n_embd
        + cfg.n_layer * (12 * cfg.n_embd * cfg.n_embd + 13 * cfg.n_embd)
        + 2 * cfg.n_embd;
    let rows = vec![
        (
            "model".to_string(),
            format!(
                "GPT-2, {} layers, {} heads, width {}, context {}, {params} parameters",
                cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.n_positions
            ),
        ),
        (
            "prompt".to_string(),
            format!("{} tokens (characters)", out.prompt_tokens),
        ),
        (
            "prefill".to_string(),
            format!(
                "{} in {:.1} ms",
                rate(out.prompt_tokens, out.prefill_secs),
                1e3 * out.prefill_secs
            ),
        ),
        (
            "decode".to_string(),
            format!(
                "{} ({} tokens, KV cache, one at a time)",
                rate(out.decode_steps, out.decode_secs),
                out.decode_steps
            ),
        ),
    ];
    print_pairs(&rows);
    println!("{text}");
    Ok(Chapter {
        title,
        blocks: vec![
            Block::Text(format!(
                "kiln's embedded default model, a character-level GPT-2 that kiln trained on the \
                 complete works of Shakespeare (Open Shakespeare / Open Knowledge Foundation, \
                 public domain), continues the prompt, sampling at temperature 0.8 (seed \
                 {seed}). It has never read about artificial intelligence."
            )),
            Block::Table(rows),
            Block::Pre(text),
        ],
    })
}
