//! A classifier ready for use ([`Loaded`]): load a checkpoint, label texts with their
//! class probabilities, evaluate labelled rows, trace a text.

use super::{argmax, classify_all, encode, load, Classifier, ClsScores};
use crate::error::Result;
use crate::text::tokenizer::Tokenizer;
use crate::text::vocab::Vocab;
use serde::Serialize;
use std::path::Path;

/// A classifier with what it reads text with.
pub struct Loaded {
    pub model: Classifier,
    pub tokenizer: Tokenizer,
    /// Texts are lowercased before tokenizing (as in training).
    pub lowercase: bool,
    /// The class names, in the order of the probabilities.
    pub labels: Vocab,
}

/// One text's label: the most likely class, its probability, and every class's `[C]`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Prediction {
    pub label: String,
    pub prob: f32,
    pub probs: Vec<f32>,
}

impl Loaded {
    /// Loads a classifier checkpoint (checked as every loader checks one).
    pub fn load(path: &Path) -> Result<Loaded> {
        let (model, tokenizer, lowercase, labels) = load(path)?;
        Ok(Loaded {
            model,
            tokenizer,
            lowercase,
            labels,
        })
    }

    /// The texts as the model reads them: token ids, at least one each.
    pub fn encode(&self, texts: &[&str]) -> Vec<Vec<u32>> {
        texts
            .iter()
            .map(|t| encode(&self.tokenizer, self.lowercase, t))
            .collect()
    }

    /// Labels `texts` in batches of 128 (sorted by length, so each batch pads little).
    pub fn predict(&mut self, texts: &[&str]) -> Vec<Prediction> {
        let ids = self.encode(texts);
        classify_all(&mut self.model, &ids, 128)
            .into_iter()
            .map(|probs| {
                let y = argmax(&probs) as usize;
                Prediction {
                    label: self.labels.tokens[y].clone(),
                    prob: probs[y],
                    probs,
                }
            })
            .collect()
    }

    /// [`Loaded::predict`] with each token's share of the pooled vector (the weights of
    /// [`crate::task::trace::TaskTrace::Pooling`]), from one forward pass a text. A text
    /// without tokens is an error.
    pub fn predict_with_weights(&mut self, texts: &[&str]) -> Result<Vec<(Prediction, Vec<f32>)>> {
        let mut out = Vec::with_capacity(texts.len());
        for ids in self.encode(texts) {
            if ids.is_empty() {
                return Err(crate::error::Error::Usage(
                    "a text has no tokens to weigh".into(),
                ));
            }
            let (_, weights, probs) = self.model.trace_ids(&ids);
            let y = argmax(&probs) as usize;
            let p = Prediction {
                label: self.labels.tokens[y].clone(),
                prob: probs[y],
                probs,
            };
            out.push((p, weights));
        }
        Ok(out)
    }

    /// Mean loss and scores on labelled rows (text, label); a label the model does not
    /// know is an error naming its row of `path`.
    pub fn evaluate(&mut self, rows: &[(String, String)], path: &Path) -> Result<(f64, ClsScores)> {
        let enc =
            super::recipe::encode_rows(&self.tokenizer, self.lowercase, &self.labels, rows, path)?;
        Ok(super::evaluate(&mut self.model, &self.labels, &enc))
    }

    /// [`super::trace`] of one text.
    pub fn trace(&mut self, text: &str) -> Result<crate::task::trace::Trace> {
        super::trace(
            &mut self.model,
            &self.tokenizer,
            self.lowercase,
            &self.labels,
            text,
        )
    }
}
