//! `rnnkit lm train | eval | generate`.

use super::common::{self, ComputeArgs};
use anyhow::Context;
use clap::{Args, Subcommand};
use rnnkit::task::lm::options::TrainArgs;
use rnnkit::task::lm::recipe::LmRun;
use rnnkit::task::lm::Sampling;
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum LmCmd {
    /// Train a language model (writes model.safetensors, train state, metrics.jsonl, loss.png).
    Train(Box<TrainArgs>),
    /// Loss, perplexity (and bits per character) of a model on a text file.
    Eval(EvalArgs),
    /// Generate text, streaming tokens to stdout.
    Generate(GenArgs),
}

#[derive(Args)]
pub struct EvalArgs {
    /// A checkpoint written by `train` (model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Text file to evaluate on.
    #[arg(long)]
    pub data: PathBuf,
    /// Rows the text is read in (PyTorch's word_language_model: 10).
    #[arg(long, default_value_t = LmRun::recipe(None).data.eval_batch)]
    pub batch_size: usize,
    /// Window of the truncated BPTT, the state carried across windows.
    #[arg(long, default_value_t = LmRun::recipe(None).data.eval_bptt)]
    pub bptt: usize,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Print the results as one JSON object, the last line of the output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct GenArgs {
    /// A checkpoint written by `train` (model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    #[arg(long, default_value = "")]
    pub prompt: String,
    #[arg(long, default_value_t = rnnkit::task::lm::MAX_TOKENS)]
    pub max_tokens: usize,
    #[arg(long, default_value_t = Sampling::default().temperature)]
    pub temperature: f32,
    /// Keep only the k most likely tokens (0: all).
    #[arg(long, default_value_t = Sampling::default().top_k)]
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set with this much probability.
    #[arg(long, default_value_t = Sampling::default().top_p)]
    pub top_p: f32,
    #[arg(long)]
    pub greedy: bool,
    #[arg(long, default_value_t = rnnkit::task::lm::SEED)]
    pub seed: u64,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Print the results as one JSON object, the last line of the output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(c: LmCmd) -> anyhow::Result<()> {
    match c {
        LmCmd::Train(a) => train_cmd(*a),
        LmCmd::Eval(a) => eval_cmd(a),
        LmCmd::Generate(a) => gen_cmd(a),
    }
}

fn train_cmd(a: TrainArgs) -> anyhow::Result<()> {
    let s = common::train(&a)?;
    let v = &s.values;
    if a.run.json {
        super::print_json(v);
    } else {
        println!(
            "valid ppl {}  test ppl {}  ({:.0} s)",
            fmt_opt(v["valid_ppl"].as_f64()),
            fmt_opt(v["test_ppl"].as_f64()),
            s.progress.wall_s
        );
    }
    Ok(())
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.2}"))
}

fn eval_cmd(a: EvalArgs) -> anyhow::Result<()> {
    super::set_compute(&a.compute);
    let mut lm = rnnkit::task::lm::Loaded::load(&a.model)?;
    let sc = lm.evaluate_file(&a.data, a.batch_size, a.bptt)?;
    if a.json {
        super::print_json(&serde_json::to_value(sc)?);
    } else {
        println!(
            "loss {:.4} nats/token  ppl {:.2}  tokens {}",
            sc.loss, sc.ppl, sc.tokens
        );
        if let Some(b) = sc.bpc {
            println!("bpc {b:.4}");
        }
    }
    Ok(())
}

fn gen_cmd(a: GenArgs) -> anyhow::Result<()> {
    super::set_compute(&a.compute);
    let s = Sampling {
        temperature: a.temperature,
        top_k: a.top_k,
        top_p: a.top_p,
        greedy: a.greedy,
    };
    s.check().map_err(super::option_error)?;
    let mut lm = rnnkit::task::lm::Loaded::load(&a.model)?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut err = None;
    if !a.json {
        write!(out, "{}", a.prompt).context("stdout")?;
    }
    let start = std::time::Instant::now();
    let mut n = 0;
    let text = lm.generate(&a.prompt, a.max_tokens, &s, a.seed, |piece| {
        n += 1;
        if a.json {
            return true;
        }
        match write!(out, "{piece}").and_then(|_| out.flush()) {
            Ok(()) => true,
            Err(e) => {
                err = Some(e);
                false
            }
        }
    })?;
    if let Some(e) = err {
        return Err(e.into());
    }
    let secs = start.elapsed().as_secs_f64();
    if a.json {
        super::print_json(
            &serde_json::json!({"prompt": a.prompt, "text": text, "tokens": n, "tokens_per_s": n as f64 / secs.max(1e-9)}),
        );
    } else {
        writeln!(out)?;
    }
    Ok(())
}
