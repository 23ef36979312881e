//! The block every task starts with: token embedding → dropout → recurrent stack →
//! dropout (Zaremba et al.'s placement: on the non-recurrent connections only). The
//! language model puts a decoder over it; a tagger a per-token output layer or a CRF; a
//! classifier a pooling and a linear layer; a translator an attention decoder.
//!
//! Shapes are time-major: ids `[T, B]`, output `[T, B, D·H]`, state `[L·D, B, H]`.

use super::dropout::{self, DropoutKind, Mask};
use super::embedding::Embedding;
use super::param::{Module, Param};
use super::rnn::{Pass, Rnn, RnnCache, State};
use rand::RngCore;

pub struct Encoder {
    pub embedding: Embedding,
    pub rnn: Rnn,
    /// Dropout on the embeddings and on the stack's output.
    pub dropout: f32,
    pub dropout_kind: DropoutKind,
}

/// What [`Encoder::backward`] needs from [`Encoder::forward`].
pub struct EncoderCache {
    emb_mask: Option<Mask>,
    rnn: RnnCache,
    out_mask: Option<Mask>,
}

impl Encoder {
    /// ids `[T, B]` → (output `[T, B, D·H]`, final state, cache), run as `pass` says
    /// ([`Pass`]: lengths, initial state, training, caching).
    pub fn forward(
        &mut self,
        ids: &[u32],
        pass: Pass,
        rng: &mut dyn RngCore,
    ) -> (Vec<f32>, State, EncoderCache) {
        let (b, e) = (pass.b, self.embedding.dim());
        let mut emb = vec![0.0; ids.len() * e];
        self.embedding.forward(ids, &mut emb);
        let (p, kind, train) = (self.dropout, self.dropout_kind, pass.train);
        let emb_mask = dropout::forward(&mut emb, b * e, p, kind, train, rng);
        let (mut out, st, rnn) = self.rnn.forward(&emb, pass, rng);
        let h = self.rnn.cfg.output();
        let out_mask = dropout::forward(&mut out, b * h, p, kind, train, rng);
        let cache = EncoderCache {
            emb_mask,
            rnn,
            out_mask,
        };
        (out, st, cache)
    }

    /// dL/d(output) `[T, B, D·H]` (consumed) and dL/d(final state) → dL/d(initial state).
    /// Accumulates every parameter gradient, the embedding's rows of `ids` included.
    pub fn backward(
        &mut self,
        cache: EncoderCache,
        ids: &[u32],
        mut dout: Vec<f32>,
        dstate: Option<&State>,
    ) -> State {
        dropout::backward(&mut dout, cache.out_mask.as_ref());
        let (mut demb, ds) = self.rnn.backward(cache.rnn, &dout, dstate);
        drop(dout);
        dropout::backward(&mut demb, cache.emb_mask.as_ref());
        self.embedding.backward(ids, &demb);
        ds
    }
}

impl Module for Encoder {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        f(&self.embedding.weight);
        self.rnn.visit(f);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        f(&mut self.embedding.weight);
        self.rnn.visit_mut(f);
    }
}
