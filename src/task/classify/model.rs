//! The classifier's network ([`Classifier`]: embedding → stack → pooling → linear), its
//! config, its loss, and its checkpoint.

use super::*;
use crate::checkpoint::{self, Checkpointed};
use crate::engine::dropout::{self, DropoutKind, Mask};
use crate::engine::embedding::Embedding;
use crate::engine::init::Init;
use crate::engine::linear::Linear;
use crate::engine::loss::softmax_in_place;
use crate::engine::param::{Module, Param};
use crate::engine::rnn::{Pass, Rnn, RnnCache, RnnConfig, State, TokenProjections};
use crate::error::{Error, Result};
use crate::text::tokenizer::Tokenizer;
use crate::text::vocab::Vocab;
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Pooling {
    Last,
    Max,
    Mean,
    Attention,
}

impl std::str::FromStr for Pooling {
    type Err = Error;
    fn from_str(s: &str) -> Result<Pooling> {
        Ok(match s {
            "last" => Pooling::Last,
            "max" => Pooling::Max,
            "mean" => Pooling::Mean,
            "attention" => Pooling::Attention,
            _ => {
                return Err(Error::config(format!(
                    "{s:?}: expected last, max, mean or attention"
                )))
            }
        })
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClsConfig {
    /// Rows of the embedding (the `tokens` vocabulary).
    pub vocab: usize,
    pub embed: usize,
    /// The encoder; `rnn.input` equals `embed`.
    pub rnn: RnnConfig,
    /// Dropout on the embeddings and on the pooled sentence vector.
    pub dropout: f32,
    pub pooling: Pooling,
    /// Rows of the output layer (the `labels` vocabulary).
    pub classes: usize,
    pub init: Init,
}

impl ClsConfig {
    pub fn validate(&self) -> Result<()> {
        if self.rnn.input != self.embed {
            return Err(Error::config(format!(
                "rnn.input is {} but the embedding size is {}; they must be equal",
                self.rnn.input, self.embed
            )));
        }
        if self.vocab == 0 || self.embed == 0 || self.rnn.hidden == 0 || self.classes < 2 {
            return Err(Error::config(
                "vocabulary, embedding and hidden sizes must be positive, with at least 2 classes",
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config("dropout must be in [0, 1)"));
        }
        self.rnn.validate()
    }
}

pub struct Classifier {
    pub cfg: ClsConfig,
    pub emb: Embedding,
    pub rnn: Rnn,
    /// The attention query `[D]` (attention pooling only).
    pub query: Option<Param>,
    pub output: Linear,
}

pub(super) struct ClsCache {
    pub(super) ids: Vec<u32>,
    pub(super) t: usize,
    pub(super) b: usize,
    pub(super) lengths: Vec<usize>,
    pub(super) emb_mask: Option<Mask>,
    /// `None` when the input projections came from [`TokenProjections`] (inference).
    pub(super) rnn: Option<RnnCache>,
    /// The stack's output `[T·B, D]` (max, mean, attention).
    pub(super) y: Vec<f32>,
    /// Max pooling: the time step each feature came from `[B, D]`.
    pub(super) argmax: Vec<usize>,
    /// Attention weights `[T, B]`.
    pub(super) alpha: Vec<f32>,
    pub(super) pool_mask: Option<Mask>,
    /// The pooled vectors after dropout `[B, D]` (the output layer's input).
    pub(super) pooled: Vec<f32>,
}

impl Classifier {
    pub fn new(cfg: ClsConfig, rng: &mut dyn RngCore) -> Classifier {
        let emb = Embedding::new("embedding.weight", cfg.vocab, cfg.embed, rng);
        let rnn = Rnn::new("rnn", cfg.rnn.clone(), cfg.init, 0.0, rng);
        let d = cfg.rnn.output();
        let query = (cfg.pooling == Pooling::Attention).then(|| {
            let mut q = Param::zeros("pool.query", &[d]);
            crate::engine::init::uniform(&mut q, 1.0 / (d as f32).sqrt(), rng);
            q
        });
        let output = Linear::new("output", d, cfg.classes, true, rng);
        Classifier {
            cfg,
            emb,
            rnn,
            query,
            output,
        }
    }

    /// Logits `[B, C]` of a batch of token-id sentences (each at least one token).
    /// At inference (`!train`), `proj` (if given) supplies the input projections of
    /// tokens seen before in the same pass, and learns the new ones.
    /// `keep` keeps the stack's cache and max pooling's argmax at inference too (for
    /// [`Classifier::trace`]).
    pub(super) fn forward(
        &mut self,
        batch: &[&[u32]],
        train: bool,
        keep: bool,
        proj: Option<&mut TokenProjections>,
        rng: &mut dyn RngCore,
    ) -> (Vec<f32>, ClsCache) {
        let p = crate::text::batch::pad(batch, 0);
        let (t, b) = (p.t, p.b);
        let (e, d) = (self.cfg.embed, self.cfg.rnn.output());
        let pd = self.cfg.dropout;
        let (y, st, rnn, emb_mask) = match proj {
            Some(proj) if !train && !keep && TokenProjections::applies(&self.rnn) => {
                let emb = &self.emb.weight.w;
                let rows = proj.rows(&self.rnn, &p.ids, |w, row| {
                    row.copy_from_slice(&emb[w as usize * e..][..e])
                });
                let (y, st) = self.rnn.forward_tokens(proj, &rows, t, b, Some(&p.lengths));
                (y, st, None, None)
            }
            _ => {
                let mut x = vec![0.0; t * b * e];
                self.emb.forward(&p.ids, &mut x);
                let mask = dropout::forward(&mut x, b * e, pd, DropoutKind::Standard, train, rng);
                let (y, st, rnn) = self.rnn.forward(
                    &x,
                    Pass::eval(t, b)
                        .lengths(Some(&p.lengths))
                        .training(train)
                        .keep(train || keep),
                    rng,
                );
                (y, st, Some(rnn), mask)
            }
        };
        let mut pooled = vec![0.0; b * d];
        let mut argmax = Vec::new();
        let mut alpha = Vec::new();
        match self.cfg.pooling {
            Pooling::Last => self.last_states(&st, b, &mut pooled),
            Pooling::Max => {
                // The maxima first, in a loop the compiler vectorises; the step each came
                // from (its first, as a strict `>` scan finds it) only for backward.
                pooled.fill(f32::NEG_INFINITY);
                for j in 0..b {
                    let out = &mut pooled[j * d..(j + 1) * d];
                    for tau in 0..p.lengths[j] {
                        let row = &y[(tau * b + j) * d..(tau * b + j + 1) * d];
                        out.iter_mut().zip(row).for_each(|(o, &v)| *o = o.max(v));
                    }
                }
                if train || keep {
                    argmax = vec![0; b * d];
                    for j in 0..b {
                        for tau in (0..p.lengths[j]).rev() {
                            let row = &y[(tau * b + j) * d..(tau * b + j + 1) * d];
                            let best = &pooled[j * d..(j + 1) * d];
                            for k in 0..d {
                                if row[k] == best[k] {
                                    argmax[j * d + k] = tau;
                                }
                            }
                        }
                    }
                }
            }
            Pooling::Mean => {
                for j in 0..b {
                    let n = p.lengths[j] as f32;
                    for tau in 0..p.lengths[j] {
                        let row = &y[(tau * b + j) * d..(tau * b + j + 1) * d];
                        pooled[j * d..(j + 1) * d]
                            .iter_mut()
                            .zip(row)
                            .for_each(|(o, v)| *o += v / n);
                    }
                }
            }
            Pooling::Attention => {
                let q = &self.query.as_ref().expect("attention query").w;
                alpha = vec![0.0; t * b];
                for j in 0..b {
                    let len = p.lengths[j];
                    let mut s: Vec<f32> = (0..len)
                        .map(|tau| {
                            crate::engine::ops::dot(&y[(tau * b + j) * d..(tau * b + j + 1) * d], q)
                        })
                        .collect();
                    softmax_in_place(&mut s);
                    for (tau, a) in s.into_iter().enumerate() {
                        alpha[tau * b + j] = a;
                        let row = &y[(tau * b + j) * d..(tau * b + j + 1) * d];
                        pooled[j * d..(j + 1) * d]
                            .iter_mut()
                            .zip(row)
                            .for_each(|(o, v)| *o += a * v);
                    }
                }
            }
        }
        let pool_mask = dropout::forward(&mut pooled, b * d, pd, DropoutKind::Standard, train, rng);
        let mut logits = vec![0.0; b * self.cfg.classes];
        self.output.forward(&pooled, &mut logits);
        let cache = ClsCache {
            ids: p.ids,
            t,
            b,
            lengths: p.lengths,
            emb_mask,
            rnn,
            y,
            argmax,
            alpha,
            pool_mask,
            pooled,
        };
        (logits, cache)
    }

    /// The top layer's final states, forward then backward direction, `[B, D]`.
    fn last_states(&self, st: &State, b: usize, out: &mut [f32]) {
        let (h, nd, l) = (
            self.cfg.rnn.hidden,
            self.cfg.rnn.dirs(),
            self.cfg.rnn.layers,
        );
        for dir in 0..nd {
            let k = (l - 1) * nd + dir;
            for j in 0..b {
                out[j * nd * h + dir * h..j * nd * h + (dir + 1) * h]
                    .copy_from_slice(&st.h[(k * b + j) * h..(k * b + j + 1) * h]);
            }
        }
    }

    fn backward(&mut self, c: ClsCache, dlogits: &[f32]) {
        let (t, b, d) = (c.t, c.b, self.cfg.rnn.output());
        let mut dpool = vec![0.0; b * d];
        self.output.backward(&c.pooled, dlogits, Some(&mut dpool));
        dropout::backward(&mut dpool, c.pool_mask.as_ref());
        let mut dy = vec![0.0; t * b * d];
        let mut dstate = None;
        match self.cfg.pooling {
            Pooling::Last => {
                let (h, nd, l) = (
                    self.cfg.rnn.hidden,
                    self.cfg.rnn.dirs(),
                    self.cfg.rnn.layers,
                );
                let mut ds = self.rnn.zero_state(b);
                for dir in 0..nd {
                    let k = (l - 1) * nd + dir;
                    for j in 0..b {
                        ds.h[(k * b + j) * h..(k * b + j + 1) * h].copy_from_slice(
                            &dpool[j * nd * h + dir * h..j * nd * h + (dir + 1) * h],
                        );
                    }
                }
                dstate = Some(ds);
            }
            Pooling::Max => {
                for j in 0..b {
                    for k in 0..d {
                        let tau = c.argmax[j * d + k];
                        dy[(tau * b + j) * d + k] += dpool[j * d + k];
                    }
                }
            }
            Pooling::Mean => {
                for j in 0..b {
                    let n = c.lengths[j] as f32;
                    for tau in 0..c.lengths[j] {
                        dy[(tau * b + j) * d..(tau * b + j + 1) * d]
                            .iter_mut()
                            .zip(&dpool[j * d..(j + 1) * d])
                            .for_each(|(o, g)| *o += g / n);
                    }
                }
            }
            Pooling::Attention => {
                let q = self.query.as_mut().expect("attention query");
                for j in 0..b {
                    let dp = &dpool[j * d..(j + 1) * d];
                    let len = c.lengths[j];
                    // dα_t = dp·y_t; ds_t = α_t (dα_t − Σ_u α_u dα_u).
                    let da: Vec<f32> = (0..len)
                        .map(|tau| {
                            crate::engine::ops::dot(
                                dp,
                                &c.y[(tau * b + j) * d..(tau * b + j + 1) * d],
                            )
                        })
                        .collect();
                    let mean: f32 = (0..len).map(|tau| c.alpha[tau * b + j] * da[tau]).sum();
                    for tau in 0..len {
                        let a = c.alpha[tau * b + j];
                        let ds = a * (da[tau] - mean);
                        let row = &c.y[(tau * b + j) * d..(tau * b + j + 1) * d];
                        let drow = &mut dy[(tau * b + j) * d..(tau * b + j + 1) * d];
                        for k in 0..d {
                            drow[k] += a * dp[k] + ds * q.w[k];
                            q.g[k] += ds * row[k];
                        }
                    }
                }
            }
        }
        let rnn = c.rnn.expect("a training forward keeps its cache");
        let (mut dx, _) = self.rnn.backward(rnn, &dy, dstate.as_ref());
        dropout::backward(&mut dx, c.emb_mask.as_ref());
        self.emb.backward(&c.ids, &dx);
    }

    /// Forward, weighted cross-entropy and backward of a batch: the loss is the weighted
    /// mean over sentences, Σ w_y ℓ / Σ w_y as PyTorch's CrossEntropyLoss(weight=w), times
    /// `scale`. Returns the summed (weighted) loss and the weight total.
    pub fn train_batch(
        &mut self,
        batch: &[&[u32]],
        labels: &[u32],
        weights: Option<&[f32]>,
        scale: f32,
        rng: &mut dyn RngCore,
    ) -> (f64, f64) {
        let (mut logits, cache) = self.forward(batch, true, true, None, rng);
        let (loss, total) = weighted_ce(&mut logits, labels, self.cfg.classes, weights, scale);
        self.backward(cache, &logits);
        (loss, total)
    }

    /// Class probabilities `[B, C]` of a batch. Batches of one pass over a file share
    /// `proj` (see [`TokenProjections`]); `None` projects every token.
    pub fn probs(&mut self, batch: &[&[u32]], proj: Option<&mut TokenProjections>) -> Vec<f32> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let (mut logits, _) = self.forward(batch, false, false, proj, &mut rng);
        for row in logits.chunks_exact_mut(self.cfg.classes) {
            softmax_in_place(row);
        }
        logits
    }
}

/// Turns `logits [B, C]` into d(loss)/d(logits) in place and returns (Σ_i w_i ℓ_i, Σ_i w_i),
/// with the loss Σ w ℓ / Σ w scaled by `scale`.
pub fn weighted_ce(
    logits: &mut [f32],
    labels: &[u32],
    c: usize,
    weights: Option<&[f32]>,
    scale: f32,
) -> (f64, f64) {
    let w = |y: u32| weights.map_or(1.0, |w| w[y as usize]);
    let total: f64 = labels.iter().map(|&y| w(y) as f64).sum();
    let mut loss = 0.0;
    for (row, &y) in logits.chunks_exact_mut(c).zip(labels) {
        let (lse, _) = softmax_in_place(row);
        let _ = lse;
        let wy = w(y);
        loss += -(row[y as usize].max(1e-30) as f64).ln() * wy as f64;
        row[y as usize] -= 1.0;
        let k = scale * wy / total.max(1e-30) as f32;
        row.iter_mut().for_each(|v| *v *= k);
    }
    (loss, total)
}

impl Module for Classifier {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        f(&self.emb.weight);
        self.rnn.visit(f);
        if let Some(q) = &self.query {
            f(q);
        }
        self.output.visit(f);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        f(&mut self.emb.weight);
        self.rnn.visit_mut(f);
        if let Some(q) = &mut self.query {
            f(q);
        }
        self.output.visit_mut(f);
    }
}

impl Checkpointed for Classifier {
    const TASK: &'static str = TASK;
    const VOCABS: &'static [&'static str] = &["tokens", "labels"];
    type Config = ClsConfig;
    fn check(cfg: &ClsConfig, vocabs: &BTreeMap<String, Vocab>) -> std::result::Result<(), String> {
        cfg.validate().map_err(|e| e.to_string())?;
        for (name, rows, field) in [
            ("tokens", cfg.vocab, "vocab"),
            ("labels", cfg.classes, "classes"),
        ] {
            let n = vocabs[name].len();
            if n != rows {
                return Err(format!(
                    "vocabulary {name:?} has {n} entries but model.{field} is {rows}"
                ));
            }
        }
        Ok(())
    }
    fn num_params(cfg: &ClsConfig) -> Option<u64> {
        let d = cfg.rnn.output() as u64;
        (cfg.vocab as u64)
            .checked_mul(cfg.embed as u64)?
            .checked_add(cfg.rnn.num_params()?)?
            .checked_add(d)?
            .checked_add((cfg.classes as u64).checked_mul(d + 1)?)
    }
    fn build(cfg: ClsConfig) -> Classifier {
        Classifier::new(cfg, &mut rand::rngs::StdRng::seed_from_u64(0))
    }
}

/// Loads a classifier: the model, its tokenizer (and whether it lowercases), its labels.
pub fn load(path: &Path) -> Result<(Classifier, Tokenizer, bool, Vocab)> {
    let (model, mut meta) = checkpoint::load::<Classifier>(path)?;
    let tokens = meta.vocabs.remove("tokens").unwrap_or_default();
    let tok = Tokenizer::from_vocab_record(&tokens, path)?;
    let labels = meta.vocabs.remove("labels").unwrap_or_default();
    Ok((model, tok, tokens.lowercase, labels))
}
