//! Sentence classification: the lecture's many-to-one task. Embeddings → (bi)directional
//! stack → pooling over time → linear → softmax.
//!
//! Pooling is the last state of each direction (the many-to-one reading: h_T forward and
//! h_1 backward, which have each read the whole sentence), the maximum or the mean over the
//! real positions, or attention: a learned query q scores each position, α = softmax_t(q·y_t)
//! over the real positions, and the sentence is Σ_t α_t y_t. Shapes are time-major as the
//! engine's: `[T, B, ·]`, lengths passed along, so padding never changes a result.
//! Parameters: `embedding.weight`, `rnn.*`, `pool.query` (attention), `output.weight`,
//! `output.bias`.

pub mod run;
mod trace;

pub use trace::trace;

use super::{Eval, Selection, Stats, Task};
use crate::checkpoint::{self, Checkpointed, Meta};
use crate::engine::dropout::{self, DropoutKind, Mask};
use crate::engine::embedding::Embedding;
use crate::engine::init::Init;
use crate::engine::linear::Linear;
use crate::engine::loss::softmax_in_place;
use crate::engine::param::{Module, Param};
use crate::engine::rnn::{Rnn, RnnCache, RnnConfig, State, TokenProjections};
use crate::error::{Error, Result};
use crate::text::tokenizer::Tokenizer;
use crate::text::vocab::Vocab;
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub const TASK: &str = "classify";

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

struct ClsCache {
    ids: Vec<u32>,
    t: usize,
    b: usize,
    lengths: Vec<usize>,
    emb_mask: Option<Mask>,
    /// `None` when the input projections came from [`TokenProjections`] (inference).
    rnn: Option<RnnCache>,
    /// The stack's output `[T·B, D]` (max, mean, attention).
    y: Vec<f32>,
    /// Max pooling: the time step each feature came from `[B, D]`.
    argmax: Vec<usize>,
    /// Attention weights `[T, B]`.
    alpha: Vec<f32>,
    pool_mask: Option<Mask>,
    /// The pooled vectors after dropout `[B, D]` (the output layer's input).
    pooled: Vec<f32>,
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
    fn forward(
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
                let (y, st, rnn) =
                    self.rnn
                        .forward(&x, t, b, Some(&p.lengths), None, train, train || keep, rng);
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

/// Accuracy, per-class precision, recall and F1, macro-F1 and the confusion matrix
/// (`confusion[gold][pred]`).
#[derive(Clone, Debug, Default, Serialize)]
pub struct ClsScores {
    pub accuracy: f64,
    pub macro_f1: f64,
    pub per_class: BTreeMap<String, crate::metrics::Prf>,
    pub labels: Vec<String>,
    pub confusion: Vec<Vec<usize>>,
}

pub fn scores(labels: &[String], gold: &[u32], pred: &[u32]) -> ClsScores {
    let c = labels.len();
    let mut m = vec![vec![0usize; c]; c];
    for (&g, &p) in gold.iter().zip(pred) {
        m[g as usize][p as usize] += 1;
    }
    let right: usize = (0..c).map(|i| m[i][i]).sum();
    let per_class: BTreeMap<String, crate::metrics::Prf> = (0..c)
        .map(|i| {
            let predicted = (0..c).map(|g| m[g][i]).sum();
            let gold_n = m[i].iter().sum();
            (
                labels[i].clone(),
                crate::metrics::Prf::from_counts(m[i][i], predicted, gold_n),
            )
        })
        .collect();
    ClsScores {
        accuracy: if gold.is_empty() {
            0.0
        } else {
            right as f64 / gold.len() as f64
        },
        macro_f1: per_class.values().map(|p| p.f1).sum::<f64>() / c.max(1) as f64,
        per_class,
        labels: labels.to_vec(),
        confusion: m,
    }
}

/// Predicted classes and probabilities `[n, C]` of token-id sentences, in batches.
pub fn classify_all(model: &mut Classifier, sents: &[Vec<u32>], batch: usize) -> Vec<Vec<f32>> {
    let mut order: Vec<usize> = (0..sents.len()).collect();
    order.sort_by_key(|&i| sents[i].len());
    let c = model.cfg.classes;
    let mut out = vec![Vec::new(); sents.len()];
    let mut proj = TokenProjections::default();
    for chunk in order.chunks(batch.max(1)) {
        let b: Vec<&[u32]> = chunk.iter().map(|&i| &sents[i][..]).collect();
        let p = model.probs(&b, Some(&mut proj));
        for (k, &i) in chunk.iter().enumerate() {
            out[i] = p[k * c..(k + 1) * c].to_vec();
        }
    }
    out
}

pub fn argmax(p: &[f32]) -> u32 {
    p.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |a, (i, &v)| if v > a.1 { (i, v) } else { a },
        )
        .0 as u32
}

/// Text → token ids: the tokenizer's, lowercased first when the vocabulary says so; an
/// empty sentence becomes one `<unk>` (the model needs one step).
pub fn encode(tok: &Tokenizer, lowercase: bool, text: &str) -> Vec<u32> {
    let ids = if lowercase {
        tok.encode(&text.to_lowercase())
    } else {
        tok.encode(text)
    };
    if ids.is_empty() {
        vec![tok.unk()]
    } else {
        ids
    }
}

/// The classification task for the shared trainer.
pub struct ClsTask {
    pub model: Classifier,
    pub tokenizer: Tokenizer,
    pub lowercase: bool,
    pub labels: Vocab,
    pub train: Vec<(Vec<u32>, u32)>,
    pub valid: Vec<(Vec<u32>, u32)>,
    pub batch: usize,
    pub weights: Option<Vec<f32>>,
    pub select: Selection,
    batches: Vec<Vec<usize>>,
}

impl ClsTask {
    pub fn meta(&self) -> Meta<ClsConfig> {
        let mut tokens = self.tokenizer.to_vocab();
        tokens.lowercase = self.lowercase;
        let vocabs = [
            ("tokens".to_string(), tokens),
            ("labels".to_string(), self.labels.clone()),
        ]
        .into();
        Meta::new(TASK, self.model.cfg.clone(), vocabs)
    }
}

/// Mean loss and scores of `model` on labelled token-id sentences.
pub fn evaluate(
    model: &mut Classifier,
    labels: &Vocab,
    set: &[(Vec<u32>, u32)],
) -> (f64, ClsScores) {
    let sents: Vec<Vec<u32>> = set.iter().map(|s| s.0.clone()).collect();
    let probs = classify_all(model, &sents, 128);
    let gold: Vec<u32> = set.iter().map(|s| s.1).collect();
    let pred: Vec<u32> = probs.iter().map(|p| argmax(p)).collect();
    let loss = probs
        .iter()
        .zip(&gold)
        .map(|(p, &g)| -(p[g as usize].max(1e-30) as f64).ln())
        .sum::<f64>()
        / set.len().max(1) as f64;
    (loss, scores(&labels.tokens, &gold, &pred))
}

impl Task for ClsTask {
    fn name(&self) -> &'static str {
        TASK
    }
    fn unit(&self) -> &'static str {
        "sentence"
    }
    fn model(&mut self) -> &mut dyn Module {
        &mut self.model
    }
    fn steps_per_epoch(&self) -> usize {
        self.batches.len()
    }
    fn begin_epoch(&mut self, epoch: usize, seed: u64) {
        let lengths: Vec<usize> = self.train.iter().map(|s| s.0.len()).collect();
        self.batches = crate::text::batch::bucket_batches(&lengths, self.batch, seed, epoch);
    }
    fn train_step(&mut self, i: usize, rng: &mut dyn RngCore) -> Stats {
        let idx = &self.batches[i];
        let sents: Vec<&[u32]> = idx.iter().map(|&k| &self.train[k].0[..]).collect();
        let labels: Vec<u32> = idx.iter().map(|&k| self.train[k].1).collect();
        let (loss, _) = self
            .model
            .train_batch(&sents, &labels, self.weights.as_deref(), 1.0, rng);
        Stats {
            loss_sum: loss,
            count: sents.len(),
        }
    }
    fn validate(&mut self) -> Option<Eval> {
        if self.valid.is_empty() {
            return None;
        }
        let (loss, s) = evaluate(&mut self.model, &self.labels, &self.valid);
        Some(Eval {
            loss,
            metrics: vec![
                ("accuracy".into(), s.accuracy),
                ("macro_f1".into(), s.macro_f1),
            ],
        })
    }
    fn selection(&self) -> Selection {
        self.select
    }
    fn save(&mut self, path: &Path) -> Result<()> {
        checkpoint::save(path, &self.model, &[], &self.meta().to_json())
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cell::CellKind;

    struct H(Classifier, Vec<Vec<u32>>, Vec<u32>, Vec<f32>);
    impl Module for H {
        fn visit(&self, f: &mut dyn FnMut(&Param)) {
            self.0.visit(f)
        }
        fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
            self.0.visit_mut(f)
        }
    }

    fn tiny(pooling: Pooling, cell: CellKind, layers: usize) -> H {
        let mut rnn = RnnConfig::new(cell, 4, 3, layers);
        rnn.bidirectional = true;
        let cfg = ClsConfig {
            vocab: 9,
            embed: 4,
            rnn,
            dropout: 0.0,
            pooling,
            classes: 3,
            init: Init::Pytorch,
        };
        let m = Classifier::new(cfg, &mut rand::rngs::StdRng::seed_from_u64(2));
        H(
            m,
            vec![vec![1, 5, 2, 8], vec![3], vec![4, 4, 7]],
            vec![2, 0, 1],
            vec![1.0, 2.5, 0.5],
        )
    }

    /// Every pooling, weighted loss, against finite differences on a padded batch.
    #[test]
    fn classifier_gradients_match_finite_differences() {
        for (pooling, cell, layers) in [
            (Pooling::Last, CellKind::Lstm, 2),
            (Pooling::Max, CellKind::Gru, 1),
            (Pooling::Mean, CellKind::Lstm, 1),
            (Pooling::Attention, CellKind::Gru, 2),
        ] {
            let mut h = tiny(pooling, cell, layers);
            crate::engine::gradcheck::check(&mut h, |h: &mut H, backward| {
                let refs: Vec<&[u32]> = h.1.iter().map(|s| &s[..]).collect();
                let mut rng = rand::rngs::StdRng::seed_from_u64(0);
                if backward {
                    let (l, t) = h.0.train_batch(&refs, &h.2, Some(&h.3), 1.0, &mut rng);
                    l / t
                } else {
                    let p = h.0.probs(&refs, None);
                    let (mut l, mut t) = (0.0, 0.0);
                    for (k, &y) in h.2.iter().enumerate() {
                        let w = h.3[y as usize] as f64;
                        l -= w * (p[k * 3 + y as usize] as f64).ln();
                        t += w;
                    }
                    l / t
                }
            });
        }
    }

    /// A sentence gets the same probabilities alone and in a padded batch, and with its
    /// input projections looked up from earlier batches' ([`TokenProjections`]) or made
    /// afresh.
    #[test]
    fn padding_and_projection_reuse_never_change_a_result() {
        for (pooling, cell) in [
            (Pooling::Last, CellKind::Lstm),
            (Pooling::Max, CellKind::Gru),
            (Pooling::Mean, CellKind::Lstm),
            (Pooling::Attention, CellKind::Rnn),
        ] {
            let mut h = tiny(pooling, cell, 2);
            let refs: Vec<&[u32]> = h.1.iter().map(|s| &s[..]).collect();
            let together = h.0.probs(&refs, None);
            let mut proj = TokenProjections::default();
            for (k, s) in h.1.clone().iter().enumerate() {
                let alone = h.0.probs(&[&s[..]], None);
                let looked_up = h.0.probs(&[&s[..]], Some(&mut proj));
                for ((a, l), b) in alone.iter().zip(&looked_up).zip(&together[k * 3..]) {
                    assert!((a - b).abs() < 1e-6, "{pooling:?}");
                    assert!((l - b).abs() < 1e-6, "{pooling:?} with projections");
                }
            }
            let again = h.0.probs(&refs, Some(&mut proj));
            assert!(together
                .iter()
                .zip(&again)
                .all(|(a, b)| (a - b).abs() < 1e-6));
        }
    }

    #[test]
    fn scores_with_confusion() {
        let l: Vec<String> = ["neg", "pos", "neu"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let s = scores(&l, &[0, 0, 1, 1, 2], &[0, 1, 1, 1, 1]);
        assert!((s.accuracy - 0.6).abs() < 1e-12);
        assert_eq!(
            s.confusion,
            vec![vec![1, 1, 0], vec![0, 2, 0], vec![0, 1, 0]]
        );
        assert_eq!(s.per_class["neu"].f1, 0.0);
        let f_pos = 2.0 * 0.5 * 1.0 / 1.5;
        assert!((s.macro_f1 - (2.0 / 3.0 + f_pos) / 3.0).abs() < 1e-12);
    }
}
