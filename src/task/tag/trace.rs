//! The tagger looked inside: the sentence's words, the BiLSTM's states and gates at each,
//! and the tag marginals.

use super::{Encoded, TagVocabs, Tagger};
use crate::engine::trace::StackTrace;
use crate::error::{Error, Result};
use crate::task::trace::{TaskTrace, Trace};
use rand::SeedableRng;

impl Tagger {
    /// One encoded sentence (at least one word) → the stack's trace, the tag marginals
    /// `[T, K]` (CRF marginals, or the softmax without a CRF) and the predicted tag ids.
    pub fn trace_encoded(&mut self, sent: &Encoded) -> (StackTrace, Vec<f32>, Vec<u32>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let (mut em, cache) = self.forward(&[sent], false, true, None, &mut rng);
        let (t, k) = (cache.t, self.cfg.labels);
        let (marginals, path) = match &self.crf {
            Some(crf) => (
                crf.marginals(&em, &cache.lengths, t),
                crf.decode(&em, &cache.lengths).remove(0),
            ),
            None => {
                for row in em.chunks_exact_mut(k) {
                    crate::engine::loss::softmax_in_place(row);
                }
                let path = em.chunks_exact(k).map(super::argmax).collect();
                (em, path)
            }
        };
        let rnn = cache
            .rnn
            .as_ref()
            .expect("the trace's forward keeps its cache");
        let stack = self.rnn.trace_cache(rnn, cache.out.clone());
        (stack, marginals, path)
    }
}

/// The [`Trace`] of one sentence of plain text, split into words as `tag predict --text`
/// splits it ([`crate::text::tokenizer::word_spans`]), with the tag marginals at each
/// word ([`TaskTrace::TagMarginals`]).
pub fn trace(model: &mut Tagger, vocabs: &TagVocabs, text: &str) -> Result<Trace> {
    let tokens: Vec<String> = crate::text::tokenizer::word_spans(text)
        .into_iter()
        .map(|(s, e)| text[s..e].to_string())
        .collect();
    if tokens.is_empty() {
        return Err(Error::Usage("the text to trace has no words".into()));
    }
    let enc = vocabs.encode(&tokens, &[]).map_err(Error::Usage)?;
    let (stack, marginals, path) = model.trace_encoded(&enc);
    let labels = vocabs.labels.tokens.clone();
    let predicted = path.iter().map(|&i| labels[i as usize].clone()).collect();
    let task = TaskTrace::TagMarginals {
        labels,
        marginals,
        predicted,
    };
    Ok(Trace::new(tokens, stack, task))
}
