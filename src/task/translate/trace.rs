//! The translator looked inside: the encoder's states and gates at each source token, and
//! the greedy translation's attention over the source.

use super::Decoding;
use super::TrTask;
use crate::error::{Error, Result};
use crate::task::trace::{TaskTrace, Trace};

impl TrTask {
    /// The [`Trace`] of one source sentence: the encoder's stack over its tokens, and the
    /// greedy translation (within `decoding`'s length limits) with each target token's
    /// attention row over the source ([`TaskTrace::Attention`]).
    pub fn trace(&mut self, text: &str, decoding: &Decoding) -> Result<Trace> {
        decoding.check()?;
        let (ids, _) = self.encode_src(text);
        if ids.is_empty() {
            return Err(Error::Usage("the text to trace has no tokens".into()));
        }
        let stack = self.model.enc.trace(&ids);
        let d = Decoding {
            beam: 1,
            n_best: 1,
            attention: true,
            ..*decoding
        };
        let hyp = self
            .translate(std::slice::from_ref(&ids), &d, 1)?
            .remove(0)
            .remove(0);
        let s = ids.len();
        let mut attention = Vec::with_capacity(hyp.attention.len() * s);
        for row in &hyp.attention {
            attention.extend_from_slice(&row[..s.min(row.len())]);
            attention.resize(attention.len() + s - s.min(row.len()), 0.0);
        }
        let mut target: Vec<String> = hyp
            .tokens
            .iter()
            .map(|&i| self.tgt_tok.token_text(i, true))
            .collect();
        // The step that chose <eos> attended too.
        if hyp.attention.len() > target.len() {
            target.push(crate::text::tokenizer::EOS.to_string());
        }
        let task = TaskTrace::Attention {
            translation: self.detok(&hyp.tokens),
            target,
            attention,
        };
        let tokens = ids
            .iter()
            .map(|&i| self.src_tok.token_text(i, true))
            .collect();
        Ok(Trace::new(tokens, stack, task))
    }
}
