//! `kiln train lstm|gru|rnn`: character language models on a text file.

use kiln_data::text::CharVocab;
use kiln_models::rnn::{CharLm, CharLmConfig};
use kiln_nn::rnn::CellKind;
use kiln_train::data::TokenWindows;

use super::*;

#[derive(Args)]
pub(super) struct LmArgs {
    /// UTF-8 text file to learn from.
    #[arg(long, value_name = "FILE")]
    text: PathBuf,
    /// Fraction of the text (its end) held out for validation.
    #[arg(
        long,
        value_name = "F",
        default_value_t = 0.1,
        allow_negative_numbers = true
    )]
    val_fraction: f64,
    /// Characters per training window.
    #[arg(long, value_name = "T", default_value_t = 64)]
    seq_len: usize,
    /// Character embedding size.
    #[arg(long, value_name = "N", default_value_t = 32)]
    embed_dim: usize,
    /// Hidden size of each recurrent layer.
    #[arg(long, value_name = "N", default_value_t = 128)]
    hidden_size: usize,
    /// Recurrent layers.
    #[arg(long, value_name = "N", default_value_t = 1)]
    num_layers: usize,
    /// Dropout between recurrent layers and before the head, in [0, 1).
    #[arg(
        long,
        value_name = "P",
        default_value_t = 0.0,
        allow_negative_numbers = true
    )]
    dropout: f64,
    #[command(flatten)]
    run: RunArgs,
}

/// The `kind` of a character language model folder.
pub const CHAR_LM_KIND: &str = "char_lm";

pub(super) fn train_lm(a: LmArgs, cell: CellKind) -> Result<()> {
    let text = kiln_data::text::read_text(&a.text)
        .with_context(|| format!("cannot read {}", a.text.display()))?;
    let vocab = CharVocab::from_text(&text);
    let tokens = vocab.encode(&text)?;
    let (train_tokens, valid_tokens) = kiln_data::text::split_tokens(&tokens, a.val_fraction)
        .context("cannot split the text (see --val-fraction)")?;
    let windows = |t: &[u32], part: &str| {
        TokenWindows::new(t, a.seq_len).with_context(|| {
            format!(
                "{}: the {part} part has {} characters, too few for --seq-len {}",
                a.text.display(),
                t.len(),
                a.seq_len
            )
        })
    };
    let train = windows(train_tokens, "training")?;
    let valid = windows(valid_tokens, "validation")?;
    let lm_config = CharLmConfig {
        vocab_size: vocab.len(),
        embed_dim: a.embed_dim,
        cell,
        hidden_size: a.hidden_size,
        num_layers: a.num_layers,
        dropout: a.dropout,
    };
    lm_config
        .validate()
        .context("invalid language model settings")?;
    let model_record = json!({
        "kind": CHAR_LM_KIND,
        "lm": lm_config,
        "text": a.text,
        "seq_len": a.seq_len,
        "val_fraction": a.val_fraction,
    });
    let config = a.run.train_config(model_record)?;
    let vars = SeededVarMap::new(a.run.seed);
    let lm = CharLm::new(lm_config.clone(), vars.var_builder())?;
    let model_json = json!({ "lm": lm_config, "vocab": vocab, "seq_len": a.seq_len });
    let meta = ModelMeta {
        features: Vec::new(),
        target: "next character".into(),
        classes: None,
        preprocessing: None,
    };
    run_and_report(
        &lm,
        &vars,
        &train,
        &valid,
        &config,
        &a.run,
        (CHAR_LM_KIND, model_json, &meta),
        true,
    )
}
