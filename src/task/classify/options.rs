//! `classify train`'s options: what the command line parses and the Python package takes as
//! keyword arguments, and how they change the task's recipe
//! ([`crate::task::options::TrainOptions`]).

use super::recipe::{ClsRun, Weights};
use super::Pooling;
use crate::error::Result;
use crate::task::options::{EmbedArgs, OptimArgs, RunArgs, StackArgs, TokArgs};
use crate::text::corpus::Column;
use clap::Args;
use std::path::PathBuf;

/// Which TSV columns hold the text and the label.
#[derive(Args, Clone, Debug, Default)]
pub struct TsvArgs {
    /// Text column: a header name or a 0-based index (default: sentence).
    #[arg(long)]
    pub text_col: Option<Column>,
    /// Label column: a header name or a 0-based index (default: label).
    #[arg(long)]
    pub label_col: Option<Column>,
    /// With numbered columns, the first line is a header to skip.
    #[arg(long)]
    pub header: bool,
}

#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    /// Dataset name (sst2) found under RNNKIT_DATA_DIR; SST-2 is evaluated on dev.
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long)]
    pub train: Option<PathBuf>,
    #[arg(long)]
    pub valid: Option<PathBuf>,
    #[arg(long)]
    pub test: Option<PathBuf>,
    #[command(flatten)]
    pub tsv: TsvArgs,
    /// Pooling over time: last (each direction's final state), max, mean or attention.
    #[arg(long)]
    pub pooling: Option<Pooling>,
    /// Class weights of the loss: balanced, or W1,W2,... in the order of the sorted labels.
    #[arg(long)]
    pub class_weights: Option<Weights>,
    /// Select the best model by accuracy or macro-f1.
    #[arg(long)]
    pub select: Option<String>,
    /// Keep the text's case (default: lowercase before the lookup).
    #[arg(long)]
    pub keep_case: bool,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Start the embedding from an rnnkit language model's input embedding.
    #[arg(long)]
    pub init_from_lm: Option<PathBuf>,
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
    pub fn apply(&self, run: &mut ClsRun) -> Result<()> {
        let d = &mut run.data;
        if let Some(n) = &self.data {
            d.dataset = Some(n.clone());
        }
        if self.train.is_some() {
            (d.train, d.valid, d.test) =
                (self.train.clone(), self.valid.clone(), self.test.clone());
        }
        if let Some(c) = &self.tsv.text_col {
            d.text_col = c.clone();
        }
        if let Some(c) = &self.tsv.label_col {
            d.label_col = c.clone();
        }
        d.header |= self.tsv.header;
        d.weights = self.class_weights.clone().or(d.weights.take());
        if let Some(s) = &self.select {
            d.select = s.clone();
        }
        d.lowercase &= !self.keep_case;
        d.batch = self.batch_size.unwrap_or(d.batch);
        d.tokenizer = self.tok.tokenizer.unwrap_or(d.tokenizer);
        d.vocab_size = self.tok.vocab_size.or(d.vocab_size);
        d.min_freq = self.tok.min_freq.unwrap_or(d.min_freq);
        d.pretrained = self.embed.pretrained.clone().or(d.pretrained.take());
        d.init_from_lm = self.init_from_lm.clone().or(d.init_from_lm.take());
        let m = &mut run.model;
        m.pooling = self.pooling.unwrap_or(m.pooling);
        m.embed = self.embed.embed.unwrap_or(m.embed);
        m.dropout = self.embed.dropout.unwrap_or(m.dropout);
        self.stack.apply(&mut m.rnn, &mut m.init, None);
        m.rnn.input = m.embed;
        self.optim.apply(&mut run.train)?;
        run.selection()?;
        Ok(())
    }
}

crate::task::options::train_options!(ClsRun, |_a| ClsRun::recipe());
