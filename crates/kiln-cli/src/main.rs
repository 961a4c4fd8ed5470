//! `kiln`: classical machine learning, deep learning and generative AI in one native binary.
//!
//! This is the only `main()` of the workspace. Each command lives in its own file under
//! `commands/`; each turns its arguments into settings, makes one library call per step, and
//! prints the result: data on stdout (one JSON document with `--json`), logs on stderr.

mod commands;
mod data;
mod models;
mod output;
mod report;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// kiln: fit, evaluate and serve machine-learning models from one binary.
#[derive(Parser)]
#[command(name = "kiln", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Fit a model on a table, report train and test metrics, optionally save it.
    Fit(Box<commands::fit::FitArgs>),
    /// Predict with a saved model.
    Predict(commands::predict::PredictArgs),
    /// Evaluate a saved model on labelled data.
    Eval(commands::eval::EvalCommand),
    /// Train a neural network into a run folder (progress on stderr; Ctrl-C checkpoints).
    Train(Box<commands::train::TrainArgs>),
    /// Generate with a trained model (text from a character language model).
    Generate(commands::generate::GenerateArgs),
    /// Serve models over an OpenAI-compatible HTTP API with a web playground.
    Serve(commands::serve::ServeArgs),
    /// Print or draw a saved model (trees: text, Graphviz DOT or a diagram).
    Show(commands::show::ShowArgs),
    /// Built-in datasets and synthetic data generators.
    Datasets(commands::datasets::DatasetsArgs),
    /// A guided tour of kiln on embedded data: prints results and writes an HTML report.
    Tour(commands::tour::TourArgs),
}

fn main() -> ExitCode {
    restore_sigpipe();
    kiln_nn::limit_idle_spinning();
    kiln_nn::keep_freed_memory();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Fit(args) => commands::fit::run(*args),
        Command::Predict(args) => commands::predict::run(args),
        Command::Eval(args) => commands::eval::run_command(args),
        Command::Train(args) => commands::train::run(*args),
        Command::Generate(args) => commands::generate::run(args),
        Command::Serve(args) => commands::serve::run(args),
        Command::Show(args) => commands::show::run(args),
        Command::Datasets(args) => commands::datasets::run(args),
        Command::Tour(args) => commands::tour::run(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// Let a closed pipe end the program quietly (`kiln predict ... | head`), as command-line tools
/// do, instead of panicking on the failed write: Rust ignores SIGPIPE by default.
#[cfg(unix)]
#[allow(unsafe_code)]
fn restore_sigpipe() {
    // SAFETY: called first thing in main, before any thread starts; restoring the default
    // disposition of SIGPIPE has no other effect on the process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn restore_sigpipe() {}

/// The error and its causes in one paragraph, skipping a cause whose text the message already
/// carries (many library errors quote their source).
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !msg.contains(&c) {
            msg.push_str(": ");
            msg.push_str(&c);
        }
    }
    msg
}
