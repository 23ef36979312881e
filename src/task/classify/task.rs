//! The classifier for the one trainer ([`ClsTask`]), batched prediction and its scores.

use super::*;
use crate::checkpoint::{self, Meta};
use crate::engine::param::Module;
use crate::engine::rnn::TokenProjections;
use crate::error::Result;
use crate::task::{Eval, Selection, Stats, Task};
use crate::text::tokenizer::Tokenizer;
use crate::text::vocab::Vocab;
use rand::RngCore;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

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
    pub(super) batches: Vec<Vec<usize>>,
}

impl ClsTask {
    /// A task over `train` (token ids, label id) in batches of `batch`, its other settings
    /// as a recipe leaves them by default: no lowercasing, no validation set, no class
    /// weights, the best checkpoint chosen by accuracy. `rnnkit bench classify` times its
    /// training step.
    pub fn new(
        model: Classifier,
        tokenizer: Tokenizer,
        labels: Vocab,
        train: Vec<(Vec<u32>, u32)>,
        batch: usize,
    ) -> ClsTask {
        let mut task = ClsTask {
            model,
            tokenizer,
            lowercase: false,
            labels,
            train,
            valid: Vec::new(),
            batch,
            weights: None,
            select: Selection {
                metric: "accuracy",
                higher_is_better: true,
            },
            batches: Vec::new(),
        };
        crate::task::Task::begin_epoch(&mut task, 1, 0);
        task
    }

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
