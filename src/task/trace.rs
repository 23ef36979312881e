//! What every task's `trace` returns: the tokens a model read, its recurrent stack's
//! states and gates at each of them ([`StackTrace`]), and what the task adds at each token
//! ([`TaskTrace`]). Plain arrays in row-major order, with their shapes in the field docs;
//! serialised as JSON by the server and turned into numpy arrays by the Python package.

use crate::engine::trace::StackTrace;
use serde::Serialize;

/// A model looked inside, for one input text.
#[derive(Clone, Debug, Serialize)]
pub struct Trace {
    /// The tokens the recurrent stack read `[T]`, as text.
    pub tokens: Vec<String>,
    /// The names of the gates in [`crate::engine::trace::DirTrace::gates`] (LSTM: input,
    /// forget, cell, output; GRU: reset, update, candidate; none for the Elman RNN).
    pub gate_names: Vec<&'static str>,
    /// Every layer's and direction's states and gates at each token.
    pub stack: StackTrace,
    /// What the task computes at each token.
    pub task: TaskTrace,
}

/// The task's own values per token.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum TaskTrace {
    /// Language model: after token t, the `k` most likely next tokens with their
    /// probabilities, most likely first: `next [T][k]`.
    NextTokens { next: Vec<Vec<(String, f32)>> },
    /// Tagger: p(tag = j | sentence) at each token `marginals [T, K]` (CRF marginals or
    /// the softmax), the tag names `labels [K]`, and the predicted tags `[T]`.
    TagMarginals {
        labels: Vec<String>,
        marginals: Vec<f32>,
        predicted: Vec<String>,
    },
    /// Classifier: each token's share of the pooled vector `weights [T]` (attention: the
    /// attention weights; mean: 1/T; max: the fraction of features whose maximum came
    /// from the token; last: 1 at the last token), and the class probabilities
    /// `probs [C]` with their `labels [C]`.
    Pooling {
        pooling: String,
        weights: Vec<f32>,
        labels: Vec<String>,
        probs: Vec<f32>,
    },
    /// Translator: the greedy translation's tokens `target [U]` (ending in `<eos>`)
    /// and each target token's attention over the source tokens `attention [U, T]`.
    Attention {
        translation: String,
        target: Vec<String>,
        attention: Vec<f32>,
    },
}

impl Trace {
    /// Assembles a trace, naming the stack's gates.
    pub fn new(tokens: Vec<String>, stack: StackTrace, task: TaskTrace) -> Trace {
        Trace {
            tokens,
            gate_names: crate::engine::trace::gate_names(stack.cell).to_vec(),
            stack,
            task,
        }
    }
}

/// The `k` largest probabilities of a softmax over `logits`, most likely first, as
/// (index, probability).
pub fn top_k(logits: &[f32], k: usize) -> Vec<(usize, f32)> {
    let mut p = logits.to_vec();
    crate::engine::loss::softmax_in_place(&mut p);
    let mut idx: Vec<usize> = (0..p.len()).collect();
    let k = k.min(p.len());
    if k < idx.len() {
        idx.select_nth_unstable_by(k, |&a, &b| p[b].total_cmp(&p[a]));
        idx.truncate(k);
    }
    idx.sort_by(|&a, &b| p[b].total_cmp(&p[a]).then(a.cmp(&b)));
    idx.into_iter().map(|i| (i, p[i])).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn top_k_is_sorted_and_sums_below_one() {
        let t = super::top_k(&[0.0, 3.0, 1.0, 2.0, -1.0], 3);
        let ids: Vec<usize> = t.iter().map(|p| p.0).collect();
        assert_eq!(ids, [1, 3, 2]);
        let s: f32 = t.iter().map(|p| p.1).sum();
        assert!(s < 1.0 && s > 0.9, "{s}");
        assert_eq!(super::top_k(&[1.0, 2.0], 10).len(), 2);
    }
}
