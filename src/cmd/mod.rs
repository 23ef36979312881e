//! Subcommand definitions (clap) and dispatch.

mod bench;
mod classify;
mod common;
mod convert;
mod defaults;
mod demo;
mod lm;
mod plot;
mod serve;
mod tag;
mod tokenizer;
mod translate;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "rnnkit",
    version,
    about = "Recurrent neural networks (RNN, LSTM, GRU) for text, on the CPU"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Train a small character LSTM for two minutes, then print a sample.
    Demo(demo::DemoArgs),
    /// Causal language models: train, evaluate, generate.
    #[command(subcommand)]
    Lm(lm::LmCmd),
    /// Named-entity tagging: train, evaluate, predict, score CoNLL files.
    #[command(subcommand)]
    Tag(tag::TagCmd),
    /// Sentence classification: train, evaluate, predict TSV files.
    #[command(subcommand)]
    Classify(classify::ClsCmd),
    /// Translation with attention: train, evaluate, translate, score BLEU and chrF.
    #[command(subcommand)]
    Translate(translate::TranslateCmd),
    /// Train tokenizers and compare them on held-out text.
    #[command(subcommand)]
    Tokenizer(tokenizer::TokCmd),
    /// Named datasets.
    #[command(subcommand)]
    Data(tokenizer::DataCmd),
    /// Draw metric curves of several runs into one PNG.
    Plot(plot::PlotArgs),
    /// Throughput benchmarks on synthetic data.
    #[command(subcommand)]
    Bench(bench::BenchCmd),
    /// Rewrite a model checkpoint's tensors in bf16 (half the file) or f32.
    Convert(convert::ConvertArgs),
    /// Serve models over HTTP: generate, tag, classify, translate, trace (docs/serve.md).
    Serve(Box<serve::ServeArgs>),
}

/// Parses the command line, with each `train` option's default from the library's recipe
/// in its `--help`.
pub fn parse() -> Result<Cli, clap::Error> {
    let matches = defaults::annotated(Cli::command()).try_get_matches()?;
    Cli::from_arg_matches(&matches)
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Demo(a) => demo::run(a),
        Command::Lm(c) => lm::run(c),
        Command::Tag(c) => tag::run(c),
        Command::Classify(c) => classify::run(c),
        Command::Translate(c) => translate::run(c),
        Command::Tokenizer(c) => tokenizer::run(c),
        Command::Data(c) => tokenizer::run_data(c),
        Command::Bench(c) => bench::run(c),
        Command::Plot(a) => plot::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Serve(a) => serve::run(*a),
    }
}

/// Prints `v` as the last line of stdout when `--json` is given.
/// A library error about one option, named as the command line spells it (`--top-p`).
pub fn option_error(e: rnnkit::error::Error) -> anyhow::Error {
    match e {
        rnnkit::error::Error::Invalid { name, msg } => {
            anyhow::anyhow!("--{}: {msg}", name.replace('_', "-"))
        }
        e => e.into(),
    }
}

pub fn print_json(v: &serde_json::Value) {
    println!("{v}");
}

/// Sets the process's threads and product precision from the shared options.
pub fn set_compute(c: &common::ComputeArgs) {
    rnnkit::run::Compute {
        threads: c.threads,
        precision: c.precision,
    }
    .apply();
}
