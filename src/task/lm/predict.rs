//! A language model ready for use ([`Loaded`]): load a checkpoint, generate text (whole or
//! streamed), score texts, evaluate a file, trace a text.

use super::{evaluate, generate, load, LanguageModel, Sampling};
use crate::error::{Error, Result};
use crate::text::tokenizer::{Kind, Tokenizer};
use serde::Serialize;
use std::path::Path;

/// A language model with the tokenizer it was trained with.
pub struct Loaded {
    pub model: LanguageModel,
    pub tokenizer: Tokenizer,
}

/// Loss of a text under the model.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct Score {
    /// Mean negative log-likelihood of each token after the first, in nats.
    pub loss: f64,
    /// exp(loss).
    pub ppl: f64,
    /// Tokens predicted (the text's tokens but the first).
    pub tokens: usize,
    /// Bits per character (character models only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bpc: Option<f64>,
}

impl Score {
    fn new(loss: f64, tokens: usize, tok: &Tokenizer) -> Score {
        Score {
            loss,
            ppl: loss.exp(),
            tokens,
            bpc: (tok.kind == Kind::Char).then(|| loss / std::f64::consts::LN_2),
        }
    }
}

impl Loaded {
    /// Loads a language-model checkpoint (checked as every loader checks one).
    pub fn load(path: &Path) -> Result<Loaded> {
        let (model, tokenizer) = load(path)?;
        Ok(Loaded { model, tokenizer })
    }

    /// Continues `prompt` by up to `max_tokens` tokens drawn with `s` from a generator
    /// seeded with `seed`; `on_text` receives each token's text as it is drawn and stops
    /// generation by returning false. Returns the generated text (without the prompt); a
    /// sampling that cannot work ([`Sampling::check`]) or more than
    /// [`super::MAX_GENERATE`] tokens is an error.
    pub fn generate(
        &mut self,
        prompt: &str,
        max_tokens: usize,
        s: &Sampling,
        seed: u64,
        mut on_text: impl FnMut(&str) -> bool,
    ) -> Result<String> {
        s.check()?;
        if max_tokens > super::MAX_GENERATE {
            return Err(Error::Usage(format!(
                "max tokens: {max_tokens} is more than one call may generate ({})",
                super::MAX_GENERATE
            )));
        }
        let ids = self.tokenizer.encode(prompt);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(seed);
        let (mut out, mut n) = (String::new(), 0);
        let tok = &self.tokenizer;
        generate(&mut self.model, &ids, max_tokens, s, &mut rng, |id| {
            let piece = tok.token_text(id, n == 0 && prompt.is_empty());
            n += 1;
            out.push_str(&piece);
            on_text(&piece)
        });
        Ok(out)
    }

    /// Each text's loss (one sequence each, read from a zero state).
    pub fn score(&mut self, texts: &[&str]) -> Result<Vec<Score>> {
        texts
            .iter()
            .map(|t| {
                let ids = self.tokenizer.encode(t);
                if ids.len() < 2 {
                    return Err(Error::Usage(format!(
                        "{t:?}: a text to score needs at least two tokens"
                    )));
                }
                let st = evaluate(&mut self.model, &ids, 1, ids.len());
                Ok(Score::new(st.mean(), st.count, &self.tokenizer))
            })
            .collect()
    }

    /// The loss on a text file read as one stream in `batch` rows and windows of `bptt`
    /// (PyTorch's word_language_model evaluates 10 × 35).
    pub fn evaluate_file(&mut self, path: &Path, batch: usize, bptt: usize) -> Result<Score> {
        if batch == 0 || bptt == 0 {
            return Err(Error::Usage(
                "--batch-size and --bptt must be at least 1".into(),
            ));
        }
        let ids = self.tokenizer.encode_file(path)?;
        if ids.len() < batch + 1 {
            return Err(Error::format(
                path,
                format!(
                    "only {} tokens; need more than the batch size {batch}",
                    ids.len()
                ),
            ));
        }
        let st = evaluate(&mut self.model, &ids, batch, bptt);
        Ok(Score::new(st.mean(), st.count, &self.tokenizer))
    }

    /// [`super::trace`] of a text with the `k` most likely next tokens.
    pub fn trace(&mut self, text: &str, k: usize) -> Result<crate::task::trace::Trace> {
        super::trace(&mut self.model, &self.tokenizer, text, k)
    }
}
