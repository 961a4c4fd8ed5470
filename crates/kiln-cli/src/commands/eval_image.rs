//! `kiln eval image-model`: the prompt-fidelity benchmark of a text-to-image model.
//!
//! The model draws `--samples` pictures per prompt, with and without reranking (unless
//! `--no-rerank`); the embedded judge of its dataset reads them (the shapes judge cell by
//! cell, LeNet-5 for digits) and kiln-models' `image_eval` scores them: per-attribute accuracy
//! (shape, colour, size, position) and the all-correct rate for one-object and two-object
//! prompts, seen and held-out combinations apart; for digits, the fraction read as the
//! requested digit. The table goes to stdout, or one JSON document with `--json`.
//!
//! `run_with_source` takes any [`ImageSource`]; loading `--model` into one is the caller's
//! (the subcommand wiring), so the benchmark runs the same on a trained model, the embedded
//! default, or the ground-truth renders (`image_eval::GroundTruthShapes`).

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args;
use kiln_models::image_eval::{evaluate, EvalSettings, ImageSource, PromptChoice};

/// Arguments of `kiln eval image-model`.
#[derive(Args, Debug, Clone)]
pub struct EvalImageArgs {
    /// Text-to-image model folder (without it, the embedded default model).
    #[arg(long, value_name = "DIR")]
    pub model: Option<PathBuf>,
    /// Prompts: `seen` (a fixed list without held-out combinations; for digits, every digit
    /// with every caption template), `held-out` (every prompt uses a held-out combination;
    /// shapes only) or a FILE with one prompt per line (`#` comments and blank lines skipped).
    #[arg(long, value_name = "seen|held-out|FILE", default_value = "seen")]
    pub prompts: String,
    /// Pictures drawn per prompt.
    #[arg(long, value_name = "N", default_value_t = 8)]
    pub samples: usize,
    /// Seed of the drawing (prompt i draws from seed + i).
    #[arg(long, value_name = "S", default_value_t = 0)]
    pub seed: u64,
    /// Classifier-free guidance scale [default: the model's].
    #[arg(long, value_name = "G")]
    pub guidance: Option<f64>,
    /// Sampling temperature [default: the model's].
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,
    /// Draw each code among the K most likely only (0: all) [default: the model's].
    #[arg(long, value_name = "K")]
    pub top_k: Option<usize>,
    /// Draw a prompt of several fully described objects from its one-object captions, each
    /// object guided by its own (`true`), or every prompt from its whole caption (`false`)
    /// [default: the model's].
    #[arg(long, value_name = "true|false")]
    pub compose: Option<bool>,
    /// Guidance scale of each object of a composed prompt [default: the model's, or
    /// --guidance where the model has none].
    #[arg(long, value_name = "G")]
    pub compose_guidance: Option<f64>,
    /// Candidates the reranker chooses among for each kept picture, where the benchmark
    /// reranks, at least 2 [default: the model's, or 8 where that is 1].
    #[arg(long, value_name = "N")]
    pub rerank: Option<usize>,
    /// Judge the model's VQ-VAE instead of the whole model: exact renders of each prompt,
    /// encoded and decoded (the ceiling the tokenizer sets; shapes models only, no reranking).
    #[arg(long)]
    pub tokenizer_ceiling: bool,
    /// Only draw without reranking (by default both, with and without).
    #[arg(long)]
    pub no_rerank: bool,
    /// Print the report as one JSON document.
    #[arg(long)]
    pub json: bool,
}

/// The prompt set `--prompts` names: `seen`, `held-out`, or the text of a file.
pub fn prompt_choice(arg: &str) -> Result<PromptChoice> {
    Ok(match arg {
        "seen" => PromptChoice::Seen,
        "held-out" => PromptChoice::HeldOut,
        path => {
            let p = std::path::Path::new(path);
            if !p.is_file() {
                bail!("--prompts {path:?}: expected seen, held-out or a file of prompts (one per line), and no such file exists");
            }
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the prompt file {path}"))?;
            PromptChoice::Lines(text)
        }
    })
}

/// Run `kiln eval image-model`: load `--model` (a model folder or a `kiln train dalle` run
/// folder; without it, the embedded default shapes model) and run the benchmark on it.
pub fn run(args: &EvalImageArgs) -> Result<()> {
    let mut model = match &args.model {
        Some(dir) => {
            let dir = crate::models::model_dir(dir);
            kiln_models::text2image::ImageModel::load(&dir)
                .with_context(|| format!("cannot load the text-to-image model {}", dir.display()))?
        }
        None => kiln_models::text2image::embedded()
            .context("cannot load kiln's embedded text-to-image model")?,
    };
    let d = model.sampling().clone();
    if args.rerank.is_some_and(|n| n < 2) {
        bail!("--rerank: expected at least 2 candidates to choose among, got 1 or fewer");
    }
    model
        .set_sampling(kiln_models::text2image::ImageSampling {
            guidance: args.guidance.unwrap_or(d.guidance),
            temperature: args.temperature.unwrap_or(d.temperature),
            top_k: args.top_k.unwrap_or(d.top_k),
            compose: args.compose.unwrap_or(d.compose),
            compose_guidance: args.compose_guidance.or(d.compose_guidance),
            rerank: args.rerank.unwrap_or(d.rerank),
            ..d
        })
        .context("bad sampling option")?;
    if args.tokenizer_ceiling {
        if model.dataset() != "shapes" {
            bail!(
                "--tokenizer-ceiling needs a shapes model, this one draws {:?}",
                model.dataset()
            );
        }
        let source = kiln_models::image_eval::TokenizerRoundTrip {
            vqvae: model.vqvae(),
        };
        return run_with_source(
            &source,
            &EvalImageArgs {
                no_rerank: true,
                ..args.clone()
            },
        );
    }
    if !model.has_reranker() && !args.no_rerank {
        bail!("this model has no reranker (no clip/ folder): pass --no-rerank, or put a `kiln train clip` model folder in its clip/ subfolder");
    }
    run_with_source(&model, args)
}

/// Run the benchmark on `source` and print the report.
pub fn run_with_source(source: &dyn ImageSource, args: &EvalImageArgs) -> Result<()> {
    let choice = prompt_choice(&args.prompts)?;
    let settings = EvalSettings {
        samples: args.samples,
        seed: args.seed,
        rerank: if args.no_rerank {
            vec![false]
        } else {
            vec![false, true]
        },
    };
    settings.validate().context("invalid benchmark settings")?;
    let report = evaluate(source, &choice, &settings)
        .with_context(|| format!("prompt-fidelity benchmark on --prompts {}", args.prompts))?;
    if args.json {
        let mut v = serde_json::to_value(&report)?;
        v["prompt_set"] = serde_json::json!(args.prompts);
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        println!(
            "prompt fidelity on --prompts {} ({} dataset): {} pictures per prompt, seed {}",
            args.prompts,
            source.dataset(),
            args.samples,
            args.seed
        );
        print!("{}", report.table());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_models::image_eval::GroundTruthShapes;

    fn args(prompts: &str) -> EvalImageArgs {
        EvalImageArgs {
            model: None,
            prompts: prompts.into(),
            samples: 2,
            seed: 0,
            guidance: None,
            temperature: None,
            top_k: None,
            compose: None,
            compose_guidance: None,
            rerank: None,
            tokenizer_ceiling: false,
            no_rerank: true,
            json: true,
        }
    }

    #[test]
    fn runs_on_a_prompt_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("prompts.txt");
        std::fs::write(
            &f,
            "# two prompts\na small red circle in the top left\n\nthere is a large blue star in the center\n",
        )
        .unwrap();
        run_with_source(&GroundTruthShapes, &args(f.to_str().unwrap())).unwrap();
    }

    #[test]
    fn bad_prompt_files_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let empty = dir.path().join("empty.txt");
        std::fs::write(&empty, "\n# nothing\n").unwrap();
        let e = run_with_source(&GroundTruthShapes, &args(empty.to_str().unwrap())).unwrap_err();
        assert!(format!("{e:#}").contains("holds no prompt"), "{e:#}");
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, "a red circle\na plaid circle\n").unwrap();
        let e = run_with_source(&GroundTruthShapes, &args(bad.to_str().unwrap())).unwrap_err();
        let msg = format!("{e:#}");
        assert!(msg.contains("line 2") && msg.contains("\"plaid\""), "{msg}");
        let e = run_with_source(&GroundTruthShapes, &args("no/such/file.txt")).unwrap_err();
        assert!(
            format!("{e:#}").contains("seen, held-out or a file"),
            "{e:#}"
        );
        let mut a = args("seen");
        a.samples = 0;
        let e = run_with_source(&GroundTruthShapes, &a).unwrap_err();
        assert!(format!("{e:#}").contains("samples"), "{e:#}");
    }
}
