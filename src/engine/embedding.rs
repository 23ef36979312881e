//! Token embedding: a lookup table `[vocab, dim]`, as torch.nn.Embedding.

use super::param::{Module, Param};
use rand::RngCore;

#[derive(Clone, Debug)]
pub struct Embedding {
    /// `[vocab, dim]`.
    pub weight: Param,
}

impl Embedding {
    /// N(0, 1) rows, PyTorch's default; callers re-initialise for other schemes.
    pub fn new(name: &str, vocab: usize, dim: usize, rng: &mut dyn RngCore) -> Embedding {
        let mut weight = Param::zeros(name, &[vocab, dim]);
        super::init::fill_normal(&mut weight.w, rng);
        Embedding { weight }
    }

    /// Overwrites the rows of tokens found in `vectors` (word2vec/GloVe), leaving the others
    /// as initialised; returns how many rows were found. `vocab` lists tokens in id order.
    /// With `freeze`, the optimizer leaves the table alone.
    pub fn load_pretrained(
        &mut self,
        vocab: &[String],
        vectors: &crate::text::corpus::Vectors,
        freeze: bool,
    ) -> crate::error::Result<usize> {
        let d = self.dim();
        if vectors.dim != d {
            return Err(crate::error::Error::config(format!(
                "pretrained vectors have {} dimensions; the embedding has {d}",
                vectors.dim
            )));
        }
        let mut found = 0;
        for (id, tok) in vocab.iter().enumerate() {
            if let Some(&row) = vectors.index.get(tok) {
                self.weight.w[id * d..(id + 1) * d]
                    .copy_from_slice(&vectors.data[row * d..(row + 1) * d]);
                found += 1;
            }
        }
        self.weight.frozen = freeze;
        Ok(found)
    }

    pub fn dim(&self) -> usize {
        self.weight.shape[1]
    }

    pub fn vocab(&self) -> usize {
        self.weight.shape[0]
    }

    /// ids `[n]` → out `[n, dim]`. Ids are validated at the tokenizer, so an id out of
    /// range here is a programming error.
    pub fn forward(&self, ids: &[u32], out: &mut [f32]) {
        let d = self.dim();
        for (row, &id) in out.chunks_exact_mut(d).zip(ids) {
            let id = id as usize;
            row.copy_from_slice(&self.weight.w[id * d..(id + 1) * d]);
        }
    }

    /// Scatters dout `[n, dim]` into the rows of the weight gradient.
    pub fn backward(&mut self, ids: &[u32], dout: &[f32]) {
        if self.weight.frozen {
            return;
        }
        let d = self.dim();
        for (row, &id) in dout.chunks_exact(d).zip(ids) {
            let id = id as usize;
            for (g, v) in self.weight.g[id * d..(id + 1) * d].iter_mut().zip(row) {
                *g += v;
            }
        }
    }
}

impl Module for Embedding {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        f(&self.weight);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        f(&mut self.weight);
    }
}
