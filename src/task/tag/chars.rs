//! The character BiLSTM ([`CharEncoder`]) that gives each word a feature vector from its
//! spelling, and the per-file tables that compute each distinct word once at inference.

use crate::engine::embedding::Embedding;
use crate::engine::rnn::{Pass, Rnn, RnnCache, TokenProjections};
use rand::RngCore;
use std::collections::HashMap;

/// The character BiLSTM: a word's characters in, the two final states `[2·Hc]` out.
pub struct CharEncoder {
    pub emb: Embedding,
    pub rnn: Rnn,
}

pub(super) struct CharCache {
    pub(super) ids: Vec<u32>,
    pub(super) rnn: RnnCache,
    pub(super) n: usize,
}

impl CharEncoder {
    /// Features `[N, 2·Hc]` of `words` (character ids, each at least one character).
    pub(super) fn forward(
        &mut self,
        words: &[&[u32]],
        train: bool,
        rng: &mut dyn RngCore,
    ) -> (Vec<f32>, CharCache) {
        let p = crate::text::batch::pad(words, 0);
        let d = self.emb.dim();
        let mut x = vec![0.0; p.ids.len() * d];
        self.emb.forward(&p.ids, &mut x);
        let (_, st, cache) = self.rnn.forward(
            &x,
            Pass::eval(p.t, p.b)
                .lengths(Some(&p.lengths))
                .training(train),
            rng,
        );
        let hc = self.rnn.cfg.hidden;
        let n = words.len();
        let mut feat = vec![0.0; n * 2 * hc];
        for w in 0..n {
            feat[w * 2 * hc..w * 2 * hc + hc].copy_from_slice(&st.h[w * hc..(w + 1) * hc]);
            feat[w * 2 * hc + hc..(w + 1) * 2 * hc]
                .copy_from_slice(&st.h[(n + w) * hc..(n + w + 1) * hc]);
        }
        (
            feat,
            CharCache {
                ids: p.ids,
                rnn: cache,
                n,
            },
        )
    }

    pub(super) fn backward(&mut self, c: CharCache, dfeat: &[f32]) {
        let hc = self.rnn.cfg.hidden;
        let n = c.n;
        let mut ds = self.rnn.zero_state(n);
        for w in 0..n {
            ds.h[w * hc..(w + 1) * hc].copy_from_slice(&dfeat[w * 2 * hc..w * 2 * hc + hc]);
            ds.h[(n + w) * hc..(n + w + 1) * hc]
                .copy_from_slice(&dfeat[w * 2 * hc + hc..(w + 1) * 2 * hc]);
        }
        let t = c.ids.len() / n.max(1);
        let dy = vec![0.0; t * n * 2 * hc];
        let (dx, _) = self.rnn.backward(c.rnn, &dy, Some(&ds));
        self.emb.backward(&c.ids, &dx);
    }
}

/// Character features of every distinct spelling in a set of sentences, computed once for
/// inference: without dropout a word's features do not depend on its batch, and a file
/// repeats its frequent words thousands of times (CoNLL-2003 test: 46k tokens, 9k spellings).
pub struct CharTable {
    pub(super) slot: HashMap<Vec<u32>, usize>,
    /// `[N, 2·Hc]`.
    pub(super) feat: Vec<f32>,
    pub(super) width: usize,
}

/// What one pass over a file computes once and then looks up: every spelling's character
/// features, and layer 0's input projection of every distinct token, keyed by its word,
/// casing and spelling ([`TokenProjections`]).
#[derive(Default)]
pub struct FileTables {
    pub chars: Option<CharTable>,
    pub(super) proj: TokenProjections<(u32, u32, u32)>,
}

impl CharTable {
    /// The rows of `words` `[n, 2·Hc]`, or None if one is not in the table.
    pub(super) fn rows(&self, words: &[&[u32]]) -> Option<Vec<f32>> {
        let mut out = Vec::with_capacity(words.len() * self.width);
        for w in words {
            let s = *self.slot.get(*w)?;
            out.extend_from_slice(&self.feat[s * self.width..(s + 1) * self.width]);
        }
        Some(out)
    }
}
