//! `lm train`'s options: what the command line parses and the Python package takes as
//! keyword arguments, and how they change the task's recipe
//! ([`crate::task::options::TrainOptions`]).

use super::recipe::{LmRun, Preset};
use super::EmbedInit;
use crate::engine::init::Init;
use crate::error::Result;
use crate::task::options::{EmbedArgs, OptimArgs, RunArgs, StackArgs, TokArgs};
use crate::text::tokenizer::Kind;
use clap::Args;
use std::path::PathBuf;

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
    pub fn apply(&self, run: &mut LmRun) -> Result<()> {
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

crate::task::options::train_options!(LmRun, |a| LmRun::recipe(a.preset));
