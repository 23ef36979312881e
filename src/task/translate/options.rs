//! `translate train`'s options: what the command line parses and the Python package takes as
//! keyword arguments, and how they change the task's recipe
//! ([`crate::task::options::TrainOptions`]).

use super::recipe::TrRun;
use crate::engine::attention::Score;
use crate::engine::cell::CellKind;
use crate::error::Result;
use crate::task::options::{EmbedArgs, OptimArgs, RunArgs, StackArgs, TokArgs};
use clap::Args;
use std::path::PathBuf;

#[derive(Args, Clone, Debug)]
pub struct TrainArgs {
    /// Dataset name (multi30k) found under RNNKIT_DATA_DIR, with --src-lang and --tgt-lang.
    /// The multi30k recipe follows pytorch-seq2seq's tutorial 3, which lowercases both sides
    /// (--keep-case keeps the case).
    #[arg(long)]
    pub data: Option<String>,
    /// Source language of the dataset's files (multi30k: de or en).
    #[arg(long)]
    pub src_lang: Option<String>,
    #[arg(long)]
    pub tgt_lang: Option<String>,
    /// Training source and target files (line-aligned).
    #[arg(long, num_args = 2, value_names = ["SRC", "TGT"])]
    pub train: Option<Vec<PathBuf>>,
    #[arg(long, num_args = 2, value_names = ["SRC", "TGT"])]
    pub valid: Option<Vec<PathBuf>>,
    #[arg(long, num_args = 2, value_names = ["SRC", "TGT"])]
    pub test: Option<Vec<PathBuf>>,
    /// Attention: additive, general (sᵀW y/√d), dot (⟨s, y⟩/√d), general-unscaled,
    /// dot-unscaled or none.
    #[arg(long)]
    pub attention: Option<String>,
    /// Decoder cell: gru or lstm.
    #[arg(long)]
    pub decoder_cell: Option<CellKind>,
    /// Decoder hidden size.
    #[arg(long)]
    pub decoder_hidden: Option<usize>,
    /// Label smoothing of the target distribution in the loss (0: none).
    #[arg(long)]
    pub label_smoothing: Option<f32>,
    /// Keep the text's case (the default for --train files; multi30k lowercases).
    #[arg(long, conflicts_with = "lowercase")]
    pub keep_case: bool,
    /// Lowercase both sides (the default for --data multi30k, after its anchor).
    #[arg(long)]
    pub lowercase: bool,
    #[arg(long)]
    pub batch_size: Option<usize>,
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

fn pair(v: &Option<Vec<PathBuf>>) -> Option<(PathBuf, PathBuf)> {
    v.as_ref().map(|p| (p[0].clone(), p[1].clone()))
}

impl TrainArgs {
    pub fn apply(&self, run: &mut TrRun) -> Result<()> {
        let d = &mut run.data;
        if let Some(n) = &self.data {
            d.dataset = Some(n.clone());
            // The named recipe follows tutorial 3, which lowercases both sides.
            d.lowercase = true;
        }
        d.src_lang = self.src_lang.clone().unwrap_or(d.src_lang.clone());
        d.tgt_lang = self.tgt_lang.clone().unwrap_or(d.tgt_lang.clone());
        if self.train.is_some() {
            (d.train, d.valid, d.test) = (pair(&self.train), pair(&self.valid), pair(&self.test));
        }
        d.tokenizer = self.tok.tokenizer.unwrap_or(d.tokenizer);
        d.vocab_size = self.tok.vocab_size.or(d.vocab_size);
        d.min_freq = self.tok.min_freq.unwrap_or(d.min_freq);
        d.lowercase = (d.lowercase || self.lowercase) && !self.keep_case;
        d.batch = self.batch_size.unwrap_or(d.batch);
        d.label_smoothing = self.label_smoothing.unwrap_or(d.label_smoothing);
        let m = &mut run.model;
        if let Some(a) = &self.attention {
            m.attention = Score::parse_option(a)?;
        }
        m.decoder_cell = self.decoder_cell.unwrap_or(m.decoder_cell);
        m.decoder_hidden = self.decoder_hidden.unwrap_or(m.decoder_hidden);
        m.embed = self.embed.embed.unwrap_or(m.embed);
        m.dropout = self.embed.dropout.unwrap_or(m.dropout);
        self.stack.apply(&mut m.encoder, &mut m.init, None);
        m.encoder.input = m.embed;
        self.optim.apply(&mut run.train)?;
        Ok(())
    }
}

crate::task::options::train_options!(TrRun, |_a| TrRun::recipe());
