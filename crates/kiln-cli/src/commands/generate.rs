//! `kiln generate text`: continue a prompt with a character language model trained by
//! `kiln train lstm|gru|rnn`.

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use kiln_data::text::CharVocab;
use kiln_models::rnn::{CharLm, CharLmConfig, SamplingConfig};

use crate::commands::train::CHAR_LM_KIND;
use crate::models;

/// Arguments of `kiln generate`.
#[derive(Args)]
pub struct GenerateArgs {
    #[command(subcommand)]
    what: Generate,
}

#[derive(Subcommand)]
enum Generate {
    /// Continue a prompt character by character (prints the prompt and its continuation).
    Text(TextArgs),
}

#[derive(Args)]
struct TextArgs {
    /// Run folder written by `kiln train lstm|gru|rnn` (or its `model/` folder).
    #[arg(long, value_name = "RUN_DIR")]
    model: PathBuf,
    /// Text to continue; every character must occur in the training text.
    #[arg(long, value_name = "TEXT")]
    prompt: String,
    /// Characters to generate.
    #[arg(long, value_name = "N", default_value_t = 200)]
    max_new_tokens: usize,
    /// Sampling temperature (0: always the most likely character).
    #[arg(
        long,
        value_name = "T",
        default_value_t = 1.0,
        allow_negative_numbers = true
    )]
    temperature: f64,
    /// Sample only among the K most likely characters.
    #[arg(long, value_name = "K")]
    top_k: Option<usize>,
    /// Seed of the sampler.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
}

/// What `kiln train lstm|gru|rnn` stores as the model's `config.json` "model" object.
#[derive(serde::Deserialize)]
struct LmFolder {
    lm: CharLmConfig,
    vocab: CharVocab,
}

/// Run `kiln generate`.
pub fn run(args: GenerateArgs) -> Result<()> {
    match args.what {
        Generate::Text(a) => text(a),
    }
}

fn text(a: TextArgs) -> Result<()> {
    let dir = models::model_dir(&a.model);
    let (config, vb) = kiln_models::folder::load(&dir, CHAR_LM_KIND)
        .with_context(|| format!("cannot load the language model in {}", a.model.display()))?;
    let folder: LmFolder = serde_json::from_value(config.model).with_context(|| {
        format!(
            "{}: config.json \"model\" is not a character language model",
            dir.display()
        )
    })?;
    let lm = CharLm::new(folder.lm, vb)?;
    let prompt = folder
        .vocab
        .encode(&a.prompt)
        .context("--prompt cannot be encoded")?;
    let sampling = SamplingConfig {
        temperature: a.temperature,
        top_k: a.top_k,
        seed: a.seed,
    };
    sampling.validate().context("invalid sampling settings")?;
    let ids = lm.generate(&prompt, a.max_new_tokens, &sampling)?;
    let out = folder.vocab.decode(&ids)?;
    println!("{}{out}", a.prompt);
    Ok(())
}
