//! `tag train`'s options: what the command line parses and the Python package takes as
//! keyword arguments, and how they change the task's recipe
//! ([`crate::task::options::TrainOptions`]).

use super::recipe::{TagPreset, TagRun};
use super::Output;
use crate::error::Result;
use crate::task::options::{EmbedArgs, OptimArgs, RunArgs, StackArgs};
use crate::text::conll::{Columns, Scheme};
use clap::Args;
use std::path::PathBuf;

/// How CoNLL files are read.
#[derive(Args, Clone, Debug, Default)]
pub struct ConllArgs {
    /// Column of the token (0-based; negative counts from the end).
    #[arg(long, allow_hyphen_values = true)]
    pub token_col: Option<isize>,
    /// Column of the tag (default: the last).
    #[arg(long, allow_hyphen_values = true)]
    pub tag_col: Option<isize>,
    /// The files' tag scheme: iob1, bio (iob2) or bioes.
    #[arg(long)]
    pub scheme: Option<Scheme>,
}

impl ConllArgs {
    pub fn columns(&self) -> Columns {
        Columns {
            token: self.token_col.unwrap_or(0),
            tag: self.tag_col.unwrap_or(-1),
        }
    }
}

#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    /// Published recipe: lample-conll (Lample et al. 2016 on CoNLL-2003).
    #[arg(long)]
    pub preset: Option<TagPreset>,
    /// Dataset name (conll2003, wikiann-ru) found under RNNKIT_DATA_DIR.
    #[arg(long)]
    pub data: Option<String>,
    #[arg(long)]
    pub train: Option<PathBuf>,
    #[arg(long)]
    pub valid: Option<PathBuf>,
    #[arg(long)]
    pub test: Option<PathBuf>,
    #[command(flatten)]
    pub conll: ConllArgs,
    /// Keep only these entity types, comma-separated (e.g. PER or PER,LOC); the rest become O.
    #[arg(long, value_delimiter = ',')]
    pub types: Option<Vec<String>>,
    /// The scheme the model tags in (bioes, as Lample et al., or bio).
    #[arg(long)]
    pub internal_scheme: Option<Scheme>,
    /// Output layer: crf or softmax.
    #[arg(long)]
    pub output: Option<Output>,
    /// Let the CRF learn every transition (no scheme constraints).
    #[arg(long)]
    pub unconstrained: bool,
    /// Character embedding size (0: no character features).
    #[arg(long)]
    pub char_dim: Option<usize>,
    /// Hidden size of each direction of the character BiLSTM.
    #[arg(long)]
    pub char_hidden: Option<usize>,
    /// Casing feature size (0: none).
    #[arg(long)]
    pub casing_dim: Option<usize>,
    /// Sentences per batch.
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Probability of replacing a training word seen once by the unknown token.
    #[arg(long)]
    pub unk_replace: Option<f32>,
    /// Start the word embedding from an rnnkit language model's input embedding.
    #[arg(long)]
    pub init_from_lm: Option<PathBuf>,
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
    pub fn apply(&self, run: &mut TagRun) -> Result<()> {
        let d = &mut run.data;
        if let Some(n) = &self.data {
            d.dataset = Some(n.clone());
        }
        if self.train.is_some() {
            (d.train, d.valid, d.test) =
                (self.train.clone(), self.valid.clone(), self.test.clone());
        }
        d.token_col = self.conll.token_col.unwrap_or(d.token_col);
        d.tag_col = self.conll.tag_col.unwrap_or(d.tag_col);
        d.scheme = self.conll.scheme.unwrap_or(d.scheme);
        d.types = self.types.clone().or(d.types.take());
        d.batch = self.batch_size.unwrap_or(d.batch);
        d.unk_replace = self.unk_replace.unwrap_or(d.unk_replace);
        d.pretrained = self.embed.pretrained.clone().or(d.pretrained.take());
        d.init_from_lm = self.init_from_lm.clone().or(d.init_from_lm.take());
        let m = &mut run.model;
        m.scheme = self.internal_scheme.unwrap_or(m.scheme);
        m.output = self.output.unwrap_or(m.output);
        m.constrained &= !self.unconstrained;
        m.char_dim = self.char_dim.unwrap_or(m.char_dim);
        m.char_hidden = self.char_hidden.unwrap_or(m.char_hidden);
        m.casing_dim = self.casing_dim.unwrap_or(m.casing_dim);
        m.word_dim = self.embed.embed.unwrap_or(m.word_dim);
        m.dropout = self.embed.dropout.unwrap_or(m.dropout);
        self.stack.apply(&mut m.rnn, &mut m.init, None);
        m.rnn.input = m.token_dim();
        self.optim.apply(&mut run.train)?;
        Ok(())
    }
}

crate::task::options::train_options!(TagRun, |a| TagRun::recipe(a.preset));
