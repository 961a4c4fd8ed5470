//! `kiln generate text`: continue a prompt with a GPT-2 (a Hugging Face GPT-2 folder) or with a
//! character language model trained by `kiln train lstm|gru|rnn`.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use kiln_data::text::CharVocab;
use kiln_models::gpt2::{self, load, GenerationConfig, WeightDtype};
use kiln_models::rnn::{CharLm, CharLmConfig, SamplingConfig};
use kiln_models::tokenizer::TextStream;

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
    /// Continue a prompt (prints the prompt and its continuation, streamed as it is made).
    Text(TextArgs),
    /// Draw pictures for a prompt with a text-to-image model (one PNG; a grid when --n > 1).
    Image(super::generate_image::ImageArgs),
}

#[derive(Args)]
struct TextArgs {
    /// A Hugging Face GPT-2 folder (config.json, model.safetensors, tokenizer), or a run folder
    /// written by `kiln train gpt|lstm|gru|rnn` (or its `model/` folder). Default: kiln's
    /// embedded character-level GPT trained on Shakespeare (64-character context).
    #[arg(long, value_name = "DIR")]
    model: Option<PathBuf>,
    /// Text to continue; repeat for a batch (GPT-2 only). A character model needs every
    /// character to occur in its training text.
    #[arg(long, value_name = "TEXT", required = true)]
    prompt: Vec<String>,
    /// Tokens to generate [default: GPT-2: the folder's generation_config.json or 50;
    /// character model: 200].
    #[arg(long, value_name = "N")]
    max_new_tokens: Option<usize>,
    /// Sampling temperature (0: always the most likely token) [default: 1].
    #[arg(long, value_name = "T", allow_negative_numbers = true)]
    temperature: Option<f64>,
    /// Sample only among the K most likely tokens [default: GPT-2 50 (transformers'), character
    /// model: all].
    #[arg(long, value_name = "K")]
    top_k: Option<usize>,
    /// GPT-2: sample only from the most likely tokens whose probabilities add up to P, in
    /// (0, 1] [default: 1].
    #[arg(long, value_name = "P")]
    top_p: Option<f64>,
    /// GPT-2: divide positive (multiply negative) logits of tokens already in the text by R
    /// [default: 1].
    #[arg(long, value_name = "R")]
    repetition_penalty: Option<f64>,
    /// GPT-2: sequences per prompt (needs sampling) [default: 1].
    #[arg(long, value_name = "N")]
    num_return_sequences: Option<usize>,
    /// GPT-2: stop a sequence once its text contains S (repeatable).
    #[arg(long = "stop", value_name = "S")]
    stop: Vec<String>,
    /// Always take the most likely token (transformers' do_sample=False).
    #[arg(long)]
    greedy: bool,
    /// Seed of the sampler.
    #[arg(long, value_name = "S", default_value_t = 0)]
    seed: u64,
    /// Print one JSON object (texts, token counts, speeds) instead of streaming text.
    #[arg(long)]
    json: bool,
    /// GPT-2: precision of the weight matrices while generating: f32 (as loaded), bf16 (half
    /// the memory) or q8 (int8 in blocks of 32 with one scale each, about a quarter)
    /// [default: f32].
    #[arg(long, value_name = "f32|bf16|q8", default_value = "f32")]
    dtype: WeightDtype,
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
        Generate::Image(a) => super::generate_image::run(a),
    }
}

fn text(a: TextArgs) -> Result<()> {
    let Some(model) = a.model.clone() else {
        // The embedded default GPT (kiln_models::gpt2::embedded), as a folder for the loader.
        let dir = std::env::temp_dir().join(format!("kiln-default-gpt-{}", std::process::id()));
        kiln_models::gpt2::embedded::write_folder(&dir)?;
        let result = gpt2_text(&dir, a);
        let _ = std::fs::remove_dir_all(&dir);
        return result;
    };
    // A `kiln train gpt` run folder holds its Hugging Face folder in model/.
    let model = models::model_dir(&model);
    if load::is_hf_gpt2(&model) {
        gpt2_text(&model, a)
    } else {
        char_lm_text(a)
    }
}

/// The generation settings: the folder's defaults, then the flags.
fn gpt2_settings(a: &TextArgs, mut g: GenerationConfig) -> GenerationConfig {
    if let Some(n) = a.max_new_tokens {
        g.max_new_tokens = n;
    }
    if let Some(t) = a.temperature {
        g.temperature = t;
    }
    // Sampling unless --greedy or temperature 0 (then exactly transformers' greedy search).
    g.do_sample = !a.greedy && g.temperature != 0.0;
    if a.top_k.is_some() {
        g.top_k = a.top_k;
    }
    if let Some(p) = a.top_p {
        g.top_p = p;
    }
    if let Some(r) = a.repetition_penalty {
        g.repetition_penalty = r;
    }
    if let Some(n) = a.num_return_sequences {
        g.num_return_sequences = n;
    }
    if !a.stop.is_empty() {
        g.stop_strings = a.stop.clone();
    }
    g.seed = a.seed;
    g
}

#[derive(serde::Serialize)]
struct GptJson<'a> {
    model: String,
    prompts: &'a [String],
    texts: &'a [String],
    prompt_tokens: usize,
    new_tokens: Vec<usize>,
    finish: &'a [gpt2::generate::FinishReason],
    prefill_tokens_per_s: f64,
    decode_tokens_per_s: f64,
}

fn gpt2_text(dir: &Path, a: TextArgs) -> Result<()> {
    let (model, _, tok, defaults) = load::load_folder_with_dtype(dir, a.dtype)
        .with_context(|| format!("cannot load the GPT-2 folder {}", dir.display()))?;
    let cfg = gpt2_settings(&a, defaults);
    cfg.validate().context("invalid generation settings")?;
    let prompts = a
        .prompt
        .iter()
        .map(|p| {
            let ids = tok.encode(p)?;
            if ids.is_empty() {
                bail!("--prompt {p:?} has no tokens: give at least one character");
            }
            Ok(ids)
        })
        .collect::<Result<Vec<_>>>()?;
    let rows = prompts.len() * cfg.num_return_sequences;
    let stream = !a.json && rows == 1;
    let mut out = std::io::stdout().lock();
    let mut pieces = TextStream::new(&tok);
    if stream {
        write!(out, "{}", a.prompt[0])?;
        out.flush()?;
    }
    let eos = cfg.eos_token_id.clone();
    let result = gpt2::generate(&model, &prompts, &cfg, Some(&tok), &mut |_, id| {
        if stream && !eos.contains(&id) {
            let piece = pieces.push(id)?;
            let io = |e: std::io::Error| kiln_nn::Error::Io {
                path: "<stdout>".into(),
                source: e,
            };
            write!(out, "{piece}").map_err(io)?;
            out.flush().map_err(io)?;
        }
        Ok(())
    })?;
    if stream {
        // Stop strings cut the text inside a token: the streamed text may run a little past.
        writeln!(out, "{}", pieces.finish()?)?;
        return Ok(());
    }
    let new_tokens: Vec<usize> = result.tokens.iter().map(|t| t.len()).collect();
    if a.json {
        let decode_tokens = result.new_tokens().saturating_sub(rows);
        let doc = GptJson {
            model: dir.display().to_string(),
            prompts: &a.prompt,
            texts: &result.texts,
            prompt_tokens: result.prompt_tokens,
            new_tokens,
            finish: &result.finish,
            prefill_tokens_per_s: result.prompt_tokens as f64 / result.prefill_secs.max(1e-9),
            decode_tokens_per_s: decode_tokens as f64 / result.decode_secs.max(1e-9),
        };
        writeln!(out, "{}", serde_json::to_string_pretty(&doc)?)?;
    } else {
        let n = cfg.num_return_sequences;
        for (r, text) in result.texts.iter().enumerate() {
            if r > 0 {
                writeln!(out, "---")?;
            }
            writeln!(out, "{}{text}", a.prompt[r / n])?;
        }
    }
    Ok(())
}

fn char_lm_text(a: TextArgs) -> Result<()> {
    let model = a.model.clone().unwrap_or_default();
    let gpt_only = [
        ("--top-p", a.top_p.is_some()),
        ("--repetition-penalty", a.repetition_penalty.is_some()),
        ("--num-return-sequences", a.num_return_sequences.is_some()),
        ("--stop", !a.stop.is_empty()),
        ("--json", a.json),
        ("--dtype", a.dtype != WeightDtype::F32),
    ];
    if let Some((flag, _)) = gpt_only.iter().find(|(_, set)| *set) {
        bail!(
            "{flag} applies to GPT-2 folders only; {} is a character language model",
            model.display()
        );
    }
    if a.prompt.len() != 1 {
        bail!(
            "a character language model continues one --prompt, got {}",
            a.prompt.len()
        );
    }
    let dir = models::model_dir(&model);
    let (config, vb) = kiln_models::folder::load(&dir, CHAR_LM_KIND)
        .with_context(|| format!("cannot load the language model in {}", model.display()))?;
    let folder: LmFolder = serde_json::from_value(config.model).with_context(|| {
        format!(
            "{}: config.json \"model\" is not a character language model",
            dir.display()
        )
    })?;
    let lm = CharLm::new(folder.lm, vb)?;
    let prompt = folder
        .vocab
        .encode(&a.prompt[0])
        .context("--prompt cannot be encoded")?;
    let sampling = SamplingConfig {
        temperature: if a.greedy {
            0.0
        } else {
            a.temperature.unwrap_or(1.0)
        },
        top_k: a.top_k,
        seed: a.seed,
    };
    sampling.validate().context("invalid sampling settings")?;
    let ids = lm.generate(&prompt, a.max_new_tokens.unwrap_or(200), &sampling)?;
    let out = folder.vocab.decode(&ids)?;
    println!("{}{out}", a.prompt[0]);
    Ok(())
}
