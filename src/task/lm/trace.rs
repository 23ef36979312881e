//! The language model looked inside: states and gates at each token of a text, and the
//! most likely next tokens after each.

use super::LanguageModel;
use crate::error::{Error, Result};
use crate::task::trace::{top_k, TaskTrace, Trace};
use crate::text::tokenizer::Tokenizer;

/// The [`Trace`] of `text` (tokenized as the model was trained) with the `k` most likely
/// next tokens after each token ([`TaskTrace::NextTokens`]).
pub fn trace(model: &mut LanguageModel, tok: &Tokenizer, text: &str, k: usize) -> Result<Trace> {
    let ids = tok.encode(text);
    if ids.is_empty() {
        return Err(Error::Usage("the text to trace has no tokens".into()));
    }
    let stack = model.enc.trace(&ids);
    let logits = model.decode(&stack.output);
    let v = model.cfg.vocab;
    let next = logits
        .chunks_exact(v)
        .map(|row| {
            top_k(row, k)
                .into_iter()
                .map(|(i, p)| (tok.token_text(i as u32, true), p))
                .collect()
        })
        .collect();
    let tokens = ids.iter().map(|&i| tok.token_text(i, true)).collect();
    Ok(Trace::new(tokens, stack, TaskTrace::NextTokens { next }))
}
