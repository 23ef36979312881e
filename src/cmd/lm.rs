//! `rnnkit lm train | eval | generate`.

use super::common::{self, ComputeArgs, EmbedArgs, OptimArgs, RunArgs, StackArgs, TokArgs};
use anyhow::Context;
use clap::{Args, Subcommand};
use rnnkit::engine::init::Init;
use rnnkit::task::lm::recipe::{LmRun, Preset};
use rnnkit::task::lm::{EmbedInit, Sampling};
use rnnkit::text::tokenizer::Kind;
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

/// `lm train` options: the run's data and shape, then the shared groups.
#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    /// Published hyper-parameters (zaremba-small, zaremba-medium, char-shakespeare);
    /// explicit options override them.
    #[arg(long)]
    pub preset: Option<Preset>,
    /// Dataset name (ptb, tinyshakespeare) found under RNNKIT_DATA_DIR or the cache.
    #[arg(long)]
    pub data: Option<String>,
    /// Training text file (instead of --data).
    #[arg(long)]
    pub train: Option<PathBuf>,
    #[arg(long)]
    pub valid: Option<PathBuf>,
    #[arg(long)]
    pub test: Option<PathBuf>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Truncated-BPTT window length.
    #[arg(long)]
    pub bptt: Option<usize>,
    /// Sum the loss over the unrolled steps (Zaremba's Lua code) instead of the per-token mean.
    #[arg(long)]
    pub sum_over_time: Option<bool>,
    /// Tie the decoder to the embedding matrix (needs hidden == embed).
    #[arg(long)]
    pub tied: bool,
    /// Start from the weights of an existing checkpoint (same shapes).
    #[arg(long = "init-from", alias = "init-ckpt")]
    pub init_from: Option<PathBuf>,
    #[command(flatten)]
    pub tok: TokArgs,
    #[command(flatten)]
    pub embed: EmbedArgs,
    #[command(flatten)]
    pub stack: StackArgs,
    #[command(flatten)]
    pub optim: OptimArgs,
    #[command(flatten)]
    pub run: RunArgs,
}

impl TrainArgs {
    /// Overrides `run` with every option given.
    pub fn apply(&self, run: &mut LmRun) -> anyhow::Result<()> {
        let (d, m) = (&mut run.data, &mut run.model);
        if let Some(name) = &self.data {
            d.dataset = Some(name.clone());
            if name == "tinyshakespeare" && self.preset.is_none() {
                d.tokenizer = Kind::Char;
            }
        }
        if self.train.is_some() {
            d.train = self.train.clone();
            d.valid = self.valid.clone();
            d.test = self.test.clone();
        }
        if let Some(k) = self.tok.tokenizer {
            d.tokenizer = k;
        }
        if d.tokenizer == Kind::Char && run.preset.is_none() {
            (d.eval_batch, d.eval_bptt) = (16, 100);
        }
        d.vocab_size = self.tok.vocab_size.or(d.vocab_size);
        d.min_freq = self.tok.min_freq.unwrap_or(d.min_freq);
        d.batch = self.batch_size.unwrap_or(d.batch);
        d.bptt = self.bptt.unwrap_or(d.bptt);
        d.sum_over_time = self.sum_over_time.unwrap_or(d.sum_over_time);
        d.pretrained = self.embed.pretrained.clone().or(d.pretrained.take());
        d.freeze_embeddings |= self.embed.freeze_embeddings;
        d.init_from = self.init_from.clone().or(d.init_from.take());
        if let Some(e) = self.embed.embed {
            m.embed = e;
            if self.stack.hidden.is_none() {
                m.rnn.hidden = e;
            }
        }
        if let Some(p) = self.embed.dropout {
            m.dropout = p;
        }
        self.stack
            .apply(&mut m.rnn, &mut m.init, self.embed.dropout);
        if let Some(k) = self.stack.dropout_kind {
            m.dropout_kind = k;
        }
        // A uniform init sets the embedding too, unless an embedding init is asked for.
        if matches!(self.stack.init, Some(Init::Uniform { .. })) {
            m.embed_init = EmbedInit::WordLm;
        }
        if let Some(e) = self.embed.embed_init {
            m.embed_init = e;
        }
        m.tied |= self.tied;
        m.rnn.input = m.embed;
        self.optim.apply(&mut run.train)?;
        Ok(())
    }
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
    #[arg(long, default_value_t = 1)]
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
    let s = common::train(&a.run, &a.optim, || LmRun::recipe(a.preset), |r| a.apply(r))?;
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
    s.check().context("--temperature, --top-p")?;
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
