//! A translator ready for use: [`Loaded`] (the task's [`TrTask`]: the model and its two
//! tokenizers) translates texts into [`Translation`]s.

use super::{load, Decoding, TrTask};
use crate::error::Result;
use crate::text::tokenizer::EOS;
use serde::Serialize;
use std::path::Path;

/// A translator with its source and target tokenizers.
pub type Loaded = TrTask;

/// One hypothesis for a source sentence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Hypothesis {
    /// The translation as text (detokenized).
    pub translation: String,
    /// Its target tokens, with `<eos>` last when attention was kept (one a row of it).
    pub tokens: Vec<String>,
    /// log p(y|x) / |y|^alpha, what beam search ranks by.
    pub score: f64,
    pub log_prob: f64,
    /// Attention of each target token over the source tokens `[U][S]` (empty unless
    /// [`Decoding::attention`]).
    pub attention: Vec<Vec<f32>>,
}

/// The hypotheses for one source sentence, best first.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Translation {
    /// The source tokens the model read.
    pub source_tokens: Vec<String>,
    /// The source's token count when it was cut to [`super::MAX_TOKENS`].
    pub cut_from: Option<usize>,
    pub hypotheses: Vec<Hypothesis>,
}

impl TrTask {
    /// Loads a translator checkpoint (checked as every loader checks one).
    pub fn load(path: &Path) -> Result<Loaded> {
        load(path)
    }

    /// Translates `texts` with `d` (greedy for beam 1, else beam search with `n_best`
    /// hypotheses), in batches of 64 sorted by length. An empty source gives no
    /// hypotheses.
    pub fn translate_texts(&mut self, texts: &[&str], d: &Decoding) -> Result<Vec<Translation>> {
        d.check()?;
        let enc: Vec<(Vec<u32>, usize)> = texts.iter().map(|t| self.encode_src(t)).collect();
        let todo: Vec<Vec<u32>> = enc
            .iter()
            .filter(|e| !e.0.is_empty())
            .map(|e| e.0.clone())
            .collect();
        let mut done = self
            .translate(&todo, &d.keeping_attention(), 64)?
            .into_iter();
        let name = |tok: &crate::text::tokenizer::Tokenizer, i: u32| {
            tok.vocab.get(i as usize).cloned().unwrap_or_default()
        };
        let mut out = Vec::with_capacity(texts.len());
        for (&text, (ids, full)) in texts.iter().zip(enc) {
            let hyps = if ids.is_empty() {
                Vec::new()
            } else {
                done.next().unwrap_or_default()
            };
            let hypotheses = hyps
                .into_iter()
                .map(|h| {
                    let unk_from = d.replace_unk.then_some((text, &h.attention[..]));
                    let (mut tokens, translation) = self.render(&h.tokens, unk_from);
                    let attention = if d.attention { h.attention } else { Vec::new() };
                    if attention.len() > tokens.len() {
                        tokens.push(EOS.into());
                    }
                    Hypothesis {
                        translation,
                        tokens,
                        score: h.score,
                        log_prob: h.log_prob,
                        attention,
                    }
                })
                .collect();
            out.push(Translation {
                source_tokens: ids.iter().map(|&i| name(&self.src_tok, i)).collect(),
                cut_from: (full > ids.len()).then_some(full),
                hypotheses,
            });
        }
        Ok(out)
    }
}
