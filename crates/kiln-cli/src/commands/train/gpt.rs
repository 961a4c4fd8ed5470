//! `kiln train gpt`: a GPT-2 language model on a text file, from scratch or fine-tuned from a
//! Hugging Face folder (`--init-from`). The trained model is `RUN_DIR/model/`, a Hugging Face
//! GPT-2 folder (config.json, model.safetensors, tokenizer.json, ...) that
//! `transformers.GPT2LMHeadModel.from_pretrained` and `kiln generate text --model RUN_DIR`
//! load. Validation loss and perplexity (exp of the loss) go into `history.jsonl` and the
//! `--json` result.
//!
//! nanoGPT's character-level Shakespeare recipe (the defaults of the model flags):
//! `kiln train gpt --text data/text/shakespeare.txt --optimizer adamw --lr 1e-3 --min-lr 1e-4
//! --schedule warmup-cosine --warmup-steps 100 --beta2 0.99 --weight-decay 0.1
//! --clip-grad-norm 1 --batch-size 12 --steps 2000 --eval-every 250`. As in nanoGPT the weight
//! decay applies to the weight matrices and embeddings only (`--decay-all`: every parameter).

use kiln_models::gpt2::{self, Gpt2Config};
use kiln_models::tokenizer::{Tokenizer, ENDOFTEXT};
use kiln_models::tokenizer_train;
use kiln_train::data::TokenWindows;

use super::*;

/// Tokenizers `kiln train gpt` can use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
enum TokenizerName {
    /// One token per distinct character of the text.
    Char,
    /// GPT-2's own byte-level BPE (50257 tokens).
    Gpt2,
    /// A byte-level BPE trained on the text up to --vocab-size tokens.
    Bpe,
}

#[derive(Args)]
pub(super) struct GptArgs {
    /// UTF-8 text file to learn from.
    #[arg(long, value_name = "FILE")]
    text: PathBuf,
    /// Tokenizer (default char; with --init-from, the folder's own).
    #[arg(long, value_name = "char|gpt2|bpe")]
    tokenizer: Option<TokenizerName>,
    /// Vocabulary size of --tokenizer bpe (at least 257).
    #[arg(long, value_name = "N", default_value_t = 1024)]
    vocab_size: usize,
    /// Transformer blocks [default: 4].
    #[arg(long, value_name = "N")]
    n_layer: Option<usize>,
    /// Attention heads; must divide --n-embd [default: 4].
    #[arg(long, value_name = "N")]
    n_head: Option<usize>,
    /// Width of the residual stream [default: 128].
    #[arg(long, value_name = "N")]
    n_embd: Option<usize>,
    /// Tokens per training window; also the model's n_positions when training from scratch
    /// (at most n_positions with --init-from) [default: 64].
    #[arg(long, value_name = "T")]
    block_size: Option<usize>,
    /// Dropout on embeddings, attention and residual branches, in [0, 1).
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    dropout: f64,
    /// Start from this Hugging Face GPT-2 folder (fine-tuning) instead of random weights.
    #[arg(long, value_name = "DIR")]
    init_from: Option<PathBuf>,
    /// Fraction of the tokens (the end of the text) held out for validation.
    #[arg(
        long,
        value_name = "F",
        default_value_t = 0.1,
        allow_negative_numbers = true
    )]
    val_fraction: f64,
    /// Final learning rate of --schedule cosine and warmup-cosine.
    #[arg(
        long,
        value_name = "X",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    min_lr: f64,
    /// Second-moment decay of adam and adamw [default: 0.999].
    #[arg(long, value_name = "X", allow_negative_numbers = true)]
    beta2: Option<f64>,
    /// Apply --weight-decay of adam and adamw to every parameter; by default it applies only to
    /// parameters of two or more dimensions (weight matrices, embeddings), not to biases and
    /// LayerNorm, as nanoGPT does.
    #[arg(long)]
    decay_all: bool,
    #[command(flatten)]
    run: RunArgs,
}

/// The tokenizer: the folder's with --init-from, else the one named; saved as
/// `RUN_DIR/tokenizer.json` so that --resume continues with the very same one.
fn tokenizer(a: &GptArgs, text: &str) -> Result<Tokenizer> {
    let saved = a.run.out.join("tokenizer.json");
    if a.run.resume && saved.is_file() {
        return Ok(Tokenizer::from_file(&saved)?);
    }
    let name = a.tokenizer.unwrap_or(TokenizerName::Char);
    let tok = match (name, &a.init_from) {
        (_, Some(dir)) => kiln_models::gpt2::load::load_tokenizer(dir)
            .with_context(|| format!("--init-from {}", dir.display()))?,
        (TokenizerName::Gpt2, None) => Tokenizer::gpt2()?,
        (TokenizerName::Char, None) => {
            let t = tokenizer_train::char_level(text)?;
            Tokenizer::from_bytes(t.to_string(false).map_err(anyhow::Error::msg)?.as_bytes())?
        }
        (TokenizerName::Bpe, None) => {
            let t = tokenizer_train::byte_level_bpe(text, a.vocab_size)
                .context("cannot train the BPE tokenizer (see --vocab-size)")?;
            Tokenizer::from_bytes(t.to_string(false).map_err(anyhow::Error::msg)?.as_bytes())?
        }
    };
    Ok(tok)
}

pub(super) fn train_gpt(a: GptArgs) -> Result<()> {
    if a.init_from.is_some() {
        let shape_flags = [
            ("--n-layer", a.n_layer.is_some()),
            ("--n-head", a.n_head.is_some()),
            ("--n-embd", a.n_embd.is_some()),
            ("--tokenizer", a.tokenizer.is_some()),
        ];
        if let Some((flag, _)) = shape_flags.iter().find(|(_, set)| *set) {
            bail!("{flag} cannot be combined with --init-from: the folder fixes the model and its tokenizer");
        }
    }
    if let Some(dir) = &a.init_from {
        if !dir.join("config.json").is_file() {
            bail!(
                "--init-from {}: not a Hugging Face model folder (no config.json there)",
                dir.display()
            );
        }
    }
    let text = kiln_data::text::read_text(&a.text)
        .with_context(|| format!("cannot read {}", a.text.display()))?;
    if text.is_empty() {
        bail!("{}: the text is empty", a.text.display());
    }
    if a.run.resume && !a.run.out.join("config.json").is_file() {
        bail!(
            "--resume: {} holds no run to continue (no config.json)",
            a.run.out.display()
        );
    }
    let tok = tokenizer(&a, &text)?;
    let tokens = tokenizer_train::encode_all(tok.inner(), &text)
        .with_context(|| format!("cannot tokenize {}", a.text.display()))?;

    // The model: from the folder, or from the shape flags.
    let (model, cfg, vars) = match &a.init_from {
        Some(dir) => {
            let (model, cfg, _, vars) = gpt2::train::from_folder(dir)
                .with_context(|| format!("cannot load --init-from {}", dir.display()))?;
            (model, cfg, vars)
        }
        None => {
            let eot = tok.token_to_id(ENDOFTEXT);
            let cfg = Gpt2Config {
                vocab_size: tok.vocab_size(),
                n_positions: a.block_size.unwrap_or(64),
                n_embd: a.n_embd.unwrap_or(128),
                n_layer: a.n_layer.unwrap_or(4),
                n_head: a.n_head.unwrap_or(4),
                resid_pdrop: a.dropout,
                embd_pdrop: a.dropout,
                attn_pdrop: a.dropout,
                bos_token_id: eot,
                eos_token_id: eot,
                ..Gpt2Config::default()
            };
            cfg.validate().context("invalid model settings")?;
            let (model, vars) = gpt2::train::fresh(&cfg, a.run.seed)?;
            (model, cfg, vars)
        }
    };
    let block = a.block_size.unwrap_or(cfg.n_positions.min(64));
    if block == 0 || block > cfg.n_positions {
        bail!(
            "--block-size {block} must be between 1 and the model's n_positions = {}",
            cfg.n_positions
        );
    }

    let (train_tokens, valid_tokens) = kiln_data::text::split_tokens(&tokens, a.val_fraction)
        .context("cannot split the text (see --val-fraction)")?;
    let windows = |t: &[u32], part: &str| {
        TokenWindows::new(t, block).with_context(|| {
            format!(
                "{}: the {part} part has {} tokens, too few for --block-size {block} (it needs \
                 at least {}; the whole text has {} tokens)",
                a.text.display(),
                t.len(),
                block + 1,
                tokens.len()
            )
        })
    };
    let train = windows(train_tokens, "training")?;
    let valid = windows(valid_tokens, "validation")?;

    let record = json!({
        "kind": "gpt2",
        "gpt2": cfg,
        "tokenizer": a.tokenizer.unwrap_or(TokenizerName::Char),
        "init_from": a.init_from,
        "text": a.text,
        "block_size": block,
        "val_fraction": a.val_fraction,
    });
    let mut config = a.run.train_config(record)?;
    match &mut config.schedule {
        Schedule::Cosine { eta_min } | Schedule::WarmupCosine { eta_min, .. } => {
            *eta_min = a.min_lr
        }
        _ => {}
    }
    if let Some(b2) = a.beta2 {
        match &mut config.optimizer {
            OptimizerConfig::Adam(c) | OptimizerConfig::Adamw(c) => c.beta2 = b2,
            OptimizerConfig::Sgd(_) => bail!("--beta2 applies to --optimizer adam and adamw"),
        }
    }
    match &mut config.optimizer {
        OptimizerConfig::Adam(c) | OptimizerConfig::Adamw(c) => {
            c.decay_matrices_only = !a.decay_all
        }
        OptimizerConfig::Sgd(_) if a.decay_all => {
            bail!("--decay-all applies to --optimizer adam and adamw")
        }
        OptimizerConfig::Sgd(_) => {}
    }
    config.validate().context("invalid training settings")?;
    // The tokenizer beside the run, for --resume (not over a run folder that holds another run:
    // the trainer refuses those).
    if !a.run.resume && !a.run.out.join("config.json").exists() {
        std::fs::create_dir_all(&a.run.out)
            .with_context(|| format!("cannot create {}", a.run.out.display()))?;
        kiln_core::folder::write_atomic(
            &a.run.out.join("tokenizer.json"),
            tok.to_json()?.as_bytes(),
        )?;
    }

    let t0 = Instant::now();
    let report = fit(&model, &vars, &train, &valid, &config, &a.run)?;
    let wall = t0.elapsed().as_secs_f64();
    let model_dir = a.run.out.join("model");
    gpt2::save::save_folder(&model_dir, &cfg, vars.var_map(), &tok)
        .with_context(|| format!("cannot save the model into {}", model_dir.display()))?;

    let history_path = a.run.out.join("history.jsonl");
    add_perplexity(&history_path)?;
    let with_ppl = |mut v: Value| {
        if let Some(l) = v["loss"].as_f64() {
            v["perplexity"] = json!(gpt2::train::perplexity(l));
        }
        v
    };
    let final_train = with_ppl(measure(
        &model,
        &train,
        config.batch_size,
        TRAIN_MEASURE_MAX,
    )?);
    let last_eval = history::read(&history_path)?
        .into_iter()
        .rev()
        .find(|r| r.kind == "eval" && r.step == report.steps);
    let final_valid = with_ppl(match last_eval {
        Some(r) => json!({ "loss": r.loss, "accuracy": r.accuracy, "examples": valid.len() }),
        None => measure(&model, &valid, config.batch_size, usize::MAX)?,
    });
    let seen = samples_seen(
        report.start_step,
        report.steps,
        train.len(),
        config.batch_size,
    );
    let ppl = final_valid["perplexity"].as_f64();
    finish(&a.run, &report, final_train, final_valid, wall, seen, true)?;
    if !a.run.json {
        if let Some(p) = ppl {
            println!("validation perplexity {p:.3}");
        }
        println!(
            "model       {} (Hugging Face GPT-2 folder)",
            model_dir.display()
        );
    }
    Ok(())
}

/// Give every evaluation record of `history.jsonl` its perplexity, exp(loss).
fn add_perplexity(path: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = String::with_capacity(text.len() + text.len() / 4);
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let mut v: Value = serde_json::from_str(line)
            .with_context(|| format!("{}: not a JSON line: {line}", path.display()))?;
        if v["kind"] == "eval" {
            if let Some(l) = v["loss"].as_f64() {
                v["perplexity"] = json!(gpt2::train::perplexity(l));
            }
        }
        out += &serde_json::to_string(&v)?;
        out.push('\n');
    }
    kiln_core::folder::write_atomic(path, out.as_bytes())?;
    Ok(())
}
