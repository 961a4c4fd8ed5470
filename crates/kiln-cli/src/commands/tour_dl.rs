//! The tour's deep-learning chapters: a small CNN trained on the built-in digits, and a
//! character GRU trained briefly on the opening of Hamlet, each with kiln-train's loop in a run
//! folder inside the tour's folder (so `kiln eval`, `kiln predict --image` and
//! `kiln generate text` can read them afterwards). Each takes a few seconds in a release build.

use std::path::Path;

use anyhow::{bail, Context, Result};
use kiln_core::folder::ModelMeta;
use kiln_core::metrics::ClassificationMetrics;
use kiln_core::scale::{Scaler, ScalerKind};
use kiln_core::split::train_test_split;
use kiln_core::Dataset;
use kiln_data::text::CharVocab;
use kiln_models::cnn::{ConvBlock, ConvStack, ConvStackConfig};
use kiln_models::rnn::{CharLm, CharLmConfig, SamplingConfig};
use kiln_nn::init::SeededVarMap;
use kiln_nn::layers::Activation;
use kiln_nn::optim::{AdamConfig, OptimizerConfig};
use kiln_nn::rnn::CellKind;
use kiln_nn::Mode;
use kiln_train::data::{TensorData, TokenWindows};
use kiln_train::progress::Silent;
use kiln_train::{trainer, RunOptions, TrainConfig, TrainReport};
use serde_json::json;

use super::eval::confusion_plot;
use super::tour::heading;
use super::train::{draw_curves, CHAR_LM_KIND};
use crate::models;
use crate::output::print_pairs;
use crate::report::{Block, Chapter};

/// The text of the language-model chapter: the opening of Hamlet (about 60 KB), cut from the
/// repository's `data/text/shakespeare.txt` (public domain; see `data/README.md`).
const HAMLET: &str = include_str!("../../data/hamlet.txt");

/// Optimizer steps of the GRU chapter (about 10 s in a release build on two cores).
const GRU_STEPS: usize = 150;

/// Epochs of the CNN chapter (45 steps each).
const CNN_EPOCHS: usize = 10;

/// Make `dir` ready for a fresh run: remove a run the tour wrote there before; refuse to touch
/// a folder that does not look like one.
fn fresh_run_dir(dir: &Path) -> Result<()> {
    if !dir.exists() {
        return Ok(());
    }
    if !(dir.join("config.json").is_file() && dir.join("history.jsonl").is_file()) {
        bail!(
            "{} exists and is not a training run: move it away or choose another --out",
            dir.display()
        );
    }
    std::fs::remove_dir_all(dir).with_context(|| format!("cannot replace {}", dir.display()))
}

/// Train `model` quietly into `run_dir`, validating on `valid`.
fn train_quietly<M, S>(
    model: &M,
    vars: &SeededVarMap,
    train: &S,
    valid: &S,
    config: &TrainConfig,
    run_dir: &Path,
) -> Result<TrainReport>
where
    M: kiln_nn::TrainStep<Batch = S::Batch>,
    S: kiln_train::data::BatchSource,
{
    fresh_run_dir(run_dir)?;
    trainer::train(
        model,
        vars.var_map(),
        train,
        Some(valid),
        config,
        &RunOptions::new(run_dir),
        &mut Silent,
    )
    .with_context(|| format!("training into {}", run_dir.display()))
}

/// The last validation loss (and accuracy) in a run's history.
fn last_eval(run_dir: &Path) -> Result<(f64, Option<f64>)> {
    let records = kiln_train::history::read(&run_dir.join("history.jsonl"))?;
    let r = records
        .iter()
        .rev()
        .find(|r| r.kind == "eval")
        .context("the run evaluated nothing")?;
    Ok((r.loss, r.accuracy))
}

/// Chapter: a two-block CNN on the 8×8 digits (pixels ÷ 16), stratified 80/20 split, Adam for
/// [`CNN_EPOCHS`] epochs: test accuracy, confusion matrix and loss curves.
pub fn cnn_chapter(out: &Path, seed: u64) -> Result<Chapter> {
    let title = "4. A small CNN on the digits";
    heading(title);
    let data = kiln_data::builtin::load("digits")?;
    let classes = data.classes.clone().unwrap_or_default();
    let (tr, te) = train_test_split(data.n_samples(), 0.2, seed, Some(&data.labels()))?;
    let (train, test) = (data.select(&tr), data.select(&te));
    let f = data.n_features();
    let scaler = Scaler {
        kind: ScalerKind::MinMax,
        offset: vec![0.0; f],
        scale: vec![16.0; f],
    };
    let images = |ds: &Dataset| -> Result<TensorData> {
        let scaled = Dataset {
            x: scaler.transform(ds.x.view())?,
            ..ds.clone()
        };
        let t = TensorData::from_dataset(&scaled)?;
        let n = ds.n_samples();
        Ok(TensorData::new(
            t.x().reshape((n, 1, 8, 8))?,
            t.y().clone(),
        )?) // (N, 1, 8, 8)
    };
    let (train_t, test_t) = (images(&train)?, images(&test)?);
    let net_config = ConvStackConfig {
        in_channels: 1,
        image_size: (8, 8),
        blocks: vec![
            ConvBlock::default(),
            ConvBlock {
                out_channels: 32,
                ..ConvBlock::default()
            },
        ],
        hidden: vec![64],
        dropout: 0.0,
        activation: Activation::Relu,
        num_classes: classes.len(),
    };
    let net_json = serde_json::to_value(&net_config)?;
    let config = TrainConfig {
        model: json!({ "kind": models::cnn::KIND, "net": net_json, "data": "dataset digits" }),
        optimizer: OptimizerConfig::Adam(AdamConfig {
            lr: 0.003,
            ..AdamConfig::default()
        }),
        batch_size: 32,
        epochs: CNN_EPOCHS,
        seed,
        log_every: 5,
        ..TrainConfig::default()
    };
    let vars = SeededVarMap::new(seed);
    let net = ConvStack::new(net_config, vars.var_builder())?;
    let run_dir = out.join("digits-cnn");
    let report = train_quietly(&net, &vars, &train_t, &test_t, &config, &run_dir)?;
    let meta = ModelMeta {
        features: data.feature_names.clone(),
        target: data.target_name.clone(),
        classes: Some(classes.clone()),
        preprocessing: Some(scaler),
    };
    kiln_models::folder::save(
        &run_dir.join("model"),
        models::cnn::KIND,
        &meta,
        net_json,
        vars.var_map(),
    )?;
    draw_curves(
        &run_dir.join("history.jsonl"),
        &run_dir.join("curves.png"),
        true,
    )?;

    let logits = net.forward(test_t.x(), &Mode::eval())?; // (N, K)
    let pred: Vec<usize> = logits
        .argmax(1)?
        .to_vec1::<u32>()?
        .into_iter()
        .map(|p| p as usize)
        .collect();
    let m = ClassificationMetrics::compute(&test.labels(), &pred, &classes);
    let params: usize = vars
        .var_map()
        .all_vars()
        .iter()
        .map(|v| v.elem_count())
        .sum();
    let rows = vec![
        (
            "train / test images".to_string(),
            format!("{} / {} (stratified)", train.n_samples(), test.n_samples()),
        ),
        (
            "network".to_string(),
            format!(
                "conv 3×3 1→16, pool, conv 3×3 16→32, pool, dense 128→64→10 ({params} parameters)"
            ),
        ),
        (
            "training".to_string(),
            format!(
                "{} Adam steps (lr 0.003, batch 32, {CNN_EPOCHS} epochs)",
                report.steps
            ),
        ),
        ("test accuracy".to_string(), format!("{:.4}", m.accuracy)),
    ];
    print_pairs(&rows);
    let confusion = "digits_cnn_confusion.png";
    confusion_plot(
        &out.join(confusion),
        &format!("CNN on {} test digits", test.n_samples()),
        &classes,
        &m.confusion_matrix,
    )?;
    Ok(Chapter {
        title: title.into(),
        blocks: vec![
            Block::Text(format!(
                "The built-in digits (1797 images of 8×8 pixels, values 0..16, divided by 16), \
                 split 80/20 stratified with seed {seed}, and a small convolutional network \
                 trained with kiln-train's loop into {run}. Try `kiln predict --model {run} \
                 --image my_digit.png` on a picture of a digit.",
                run = run_dir.display()
            )),
            Block::Table(rows),
            Block::Pre(m.report()),
            Block::Image {
                src: confusion.into(),
                caption: "Confusion matrix on the test images (rows: true digit)".into(),
            },
            Block::Image {
                src: "digits-cnn/curves.png".into(),
                caption: "Training loss, validation loss and validation accuracy by step".into(),
            },
        ],
    })
}

/// Chapter: a one-layer character GRU on the opening of Hamlet, [`GRU_STEPS`] Adam steps on
/// 64-character windows, then 300 sampled characters.
pub fn gru_chapter(out: &Path, seed: u64) -> Result<Chapter> {
    let title = "5. A character GRU on Hamlet";
    heading(title);
    let vocab = CharVocab::from_text(HAMLET);
    let tokens = vocab.encode(HAMLET)?;
    let (train_tokens, valid_tokens) = kiln_data::text::split_tokens(&tokens, 0.1)?;
    let seq_len = 64;
    let train = TokenWindows::new(train_tokens, seq_len)?;
    let valid = TokenWindows::new(valid_tokens, seq_len)?;
    let lm_config = CharLmConfig {
        vocab_size: vocab.len(),
        embed_dim: 32,
        cell: CellKind::Gru,
        hidden_size: 128,
        num_layers: 1,
        dropout: 0.0,
    };
    let config = TrainConfig {
        model: json!({ "kind": CHAR_LM_KIND, "lm": lm_config, "text": "hamlet (embedded)",
                       "seq_len": seq_len }),
        optimizer: OptimizerConfig::Adam(AdamConfig {
            lr: 0.005,
            ..AdamConfig::default()
        }),
        batch_size: 32,
        steps: Some(GRU_STEPS),
        seed,
        log_every: 5,
        clip_grad_norm: Some(5.0),
        ..TrainConfig::default()
    };
    let vars = SeededVarMap::new(seed);
    let lm = CharLm::new(lm_config.clone(), vars.var_builder())?;
    let run_dir = out.join("hamlet-gru");
    let report = train_quietly(&lm, &vars, &train, &valid, &config, &run_dir)?;
    let meta = ModelMeta {
        features: Vec::new(),
        target: "next character".into(),
        classes: None,
        preprocessing: None,
    };
    kiln_models::folder::save(
        &run_dir.join("model"),
        CHAR_LM_KIND,
        &meta,
        json!({ "lm": lm_config, "vocab": vocab, "seq_len": seq_len }),
        vars.var_map(),
    )?;
    draw_curves(
        &run_dir.join("history.jsonl"),
        &run_dir.join("curves.png"),
        false,
    )?;
    let (valid_loss, _) = last_eval(&run_dir)?;
    // Loss of the untrained model's uniform guess, for scale.
    let uniform = (vocab.len() as f64).ln();
    let prompt = "HAMLET.\n";
    let sampling = SamplingConfig {
        temperature: 0.8,
        top_k: None,
        seed,
    };
    let ids = lm.generate(&vocab.encode(prompt)?, 300, &sampling)?;
    let sample = format!("{prompt}{}", vocab.decode(&ids)?);
    let rows = vec![
        (
            "text".to_string(),
            format!(
                "{} characters ({} distinct), last 10% held out",
                tokens.len(),
                vocab.len()
            ),
        ),
        (
            "network".to_string(),
            "embedding 32, GRU 128, linear head".to_string(),
        ),
        (
            "training".to_string(),
            format!(
                "{} Adam steps (lr 0.005, batch 32 × {seq_len} characters, clip 5)",
                report.steps
            ),
        ),
        (
            "validation loss".to_string(),
            format!("{valid_loss:.3} nats/char (uniform guess {uniform:.3})"),
        ),
    ];
    print_pairs(&rows);
    println!("{sample}");
    Ok(Chapter {
        title: title.into(),
        blocks: vec![
            Block::Text(format!(
                "A character-level language model on the opening of Hamlet (embedded in kiln), \
                 trained for a few seconds with seed {seed} into {run}; then 300 characters \
                 sampled at temperature 0.8 after the prompt \"HAMLET.\". It learns spelling, \
                 speaker names and verse line lengths long before it learns sense. Continue \
                 sampling with `kiln generate text --model {run} --prompt ...`.",
                run = run_dir.display()
            )),
            Block::Table(rows),
            Block::Pre(sample),
            Block::Image {
                src: "hamlet-gru/curves.png".into(),
                caption: "Training and validation loss (nats per character) by step".into(),
            },
        ],
    })
}
