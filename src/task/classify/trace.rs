//! The classifier looked inside: each token's states and gates, its share of the pooled
//! vector, and the class probabilities.

use super::{Classifier, Pooling};
use crate::engine::trace::StackTrace;
use crate::error::{Error, Result};
use crate::task::trace::{TaskTrace, Trace};
use crate::text::tokenizer::Tokenizer;
use crate::text::vocab::Vocab;
use rand::SeedableRng;

impl Classifier {
    /// One sentence's token ids (at least one) → the stack's trace, each token's share of
    /// the pooled vector `[T]` (see [`TaskTrace::Pooling`]) and the class probabilities
    /// `[C]`.
    pub fn trace_ids(&mut self, ids: &[u32]) -> (StackTrace, Vec<f32>, Vec<f32>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let (mut probs, cache) = self.forward(&[ids], false, true, None, &mut rng);
        crate::engine::loss::softmax_in_place(&mut probs);
        let t = cache.t;
        let d = self.cfg.rnn.output();
        let weights = match self.cfg.pooling {
            Pooling::Attention => cache.alpha.clone(),
            Pooling::Mean => vec![1.0 / t as f32; t],
            Pooling::Max => {
                let mut w = vec![0.0; t];
                cache
                    .argmax
                    .iter()
                    .for_each(|&tau| w[tau] += 1.0 / d as f32);
                w
            }
            Pooling::Last => {
                // The forward direction's last state, and the reverse one's (at token 0).
                let mut w = vec![0.0; t];
                let dirs = self.cfg.rnn.dirs();
                w[t - 1] += 1.0 / dirs as f32;
                if dirs == 2 {
                    w[0] += 0.5;
                }
                w
            }
        };
        let rnn = cache
            .rnn
            .as_ref()
            .expect("the trace's forward keeps its cache");
        let stack = self.rnn.trace_cache(rnn, cache.y.clone());
        (stack, weights, probs)
    }
}

/// The [`Trace`] of `text`, tokenized as the classifier was trained (`lowercase` first
/// when it was), with each token's pooling weight and the class probabilities
/// ([`TaskTrace::Pooling`]).
pub fn trace(
    model: &mut Classifier,
    tok: &Tokenizer,
    lowercase: bool,
    labels: &Vocab,
    text: &str,
) -> Result<Trace> {
    let ids = super::encode(tok, lowercase, text);
    if ids.is_empty() {
        return Err(Error::Usage("the text to trace has no tokens".into()));
    }
    let (stack, weights, probs) = model.trace_ids(&ids);
    let task = TaskTrace::Pooling {
        pooling: format!("{:?}", model.cfg.pooling).to_lowercase(),
        weights,
        labels: labels.tokens.clone(),
        probs,
    };
    let tokens = ids.iter().map(|&i| tok.token_text(i, true)).collect();
    Ok(Trace::new(tokens, stack, task))
}
