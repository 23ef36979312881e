//! Tasks: what the one trainer ([`crate::train`]) trains. A task owns its model, its data
//! and its metrics; the trainer owns epochs, the optimizer, the schedule, logging,
//! checkpoints and resuming. docs/tasks.md walks through adding one, with [`lm`] as the
//! worked example.

pub mod any;
pub mod classify;
pub mod lm;
#[cfg(feature = "options")]
pub mod options;
pub mod tag;
pub mod trace;
pub mod translate;

use crate::engine::optim::{OptimKind, Schedule};
use crate::engine::param::Module;
use crate::error::Result;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// How the trainer ([`crate::train::train`]) runs: epochs, budgets, optimizer, schedule,
/// clipping, seed and the rhythm of logging, validation and saves. Part of every task's run
/// record, so it lives beside the tasks.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Stop after this many training units (an LM's target tokens), if set.
    pub token_budget: Option<u64>,
    /// Stop after this many minutes of training, if set.
    pub time_budget_min: Option<f64>,
    pub lr: f32,
    pub optim: OptimKind,
    pub schedule: Schedule,
    /// Global-norm clip; 0 disables.
    pub clip: f32,
    pub seed: u64,
    pub log_every: usize,
    /// Also write the resumable state every this many steps (0: only at epoch ends).
    pub save_every: usize,
    /// Validate every this many steps as well as at epoch ends (0: epoch ends only).
    pub eval_every: usize,
    /// Stop when this many epoch-end validations in a row do not improve the selection
    /// metric (`None`: never).
    #[serde(default)]
    pub patience: Option<usize>,
    /// Also write the resumable state every this many minutes, so a crash loses at most
    /// that much work.
    #[serde(default)]
    pub save_minutes: Option<f64>,
    /// What a non-finite loss or gradient does.
    #[serde(default)]
    pub on_nan: NanPolicy,
    /// The number format of the products (part of the run, so a resume keeps it).
    #[serde(default)]
    pub precision: crate::engine::bf16::Precision,
    /// The threads the products split over (part of the run, so a resume keeps it: the
    /// sums split by it, and the same count gives bit-identical weights). `None` in records
    /// written before it was kept.
    #[serde(default)]
    pub threads: Option<usize>,
}

/// What the trainer does when a step's loss or gradient norm is NaN or infinite. The
/// weights are never updated from such a step.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NanPolicy {
    /// End the run with an error naming the step; the last good checkpoint stays.
    #[default]
    Stop,
    /// Skip the step and go on.
    Skip,
    /// Reload the last saved state and halve the learning rate.
    Rollback,
}

impl std::str::FromStr for NanPolicy {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> Result<NanPolicy> {
        match s {
            "stop" => Ok(NanPolicy::Stop),
            "skip" => Ok(NanPolicy::Skip),
            "rollback" => Ok(NanPolicy::Rollback),
            _ => Err(crate::error::Error::config(format!(
                "{s:?}: expected stop, skip or rollback"
            ))),
        }
    }
}

impl Default for TrainConfig {
    /// What every task starts from: Adam at 1e-3, clip 5, 10 epochs, seed 1, logging every
    /// 50 steps, saves at epoch ends, no early stopping. Recipes change what they need.
    fn default() -> TrainConfig {
        TrainConfig {
            epochs: 10,
            token_budget: None,
            time_budget_min: None,
            lr: 1e-3,
            optim: OptimKind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: 0.0,
            },
            schedule: Schedule::Constant,
            clip: 5.0,
            seed: 1,
            log_every: 50,
            save_every: 0,
            eval_every: 0,
            patience: None,
            save_minutes: None,
            on_nan: NanPolicy::Stop,
            precision: Default::default(),
            threads: None,
        }
    }
}

impl TrainConfig {
    /// Refuses values that would train on nothing, diverge at once or run backwards, before
    /// any data is read: a NaN or non-positive rate, a negative clip, zero epochs, ...
    pub fn validate(&self) -> Result<()> {
        let bad = |what: &str| Err(crate::error::Error::config(what.to_string()));
        if self.epochs == 0 {
            return bad("epochs must be at least 1");
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("the learning rate must be a positive number");
        }
        if !(self.clip.is_finite() && self.clip >= 0.0) {
            return bad("clip must be ≥ 0 (0 turns clipping off)");
        }
        if self.patience == Some(0) {
            return bad("patience must be at least 1");
        }
        if self.token_budget == Some(0) {
            return bad("max-tokens must be at least 1");
        }
        if self
            .time_budget_min
            .is_some_and(|m| !(m.is_finite() && m > 0.0))
        {
            return bad("minutes must be a positive number");
        }
        match self.optim {
            OptimKind::Sgd { momentum } if !(0.0..1.0).contains(&momentum) => {
                bad("momentum must be in [0, 1)")
            }
            OptimKind::Adam { weight_decay, .. } | OptimKind::AdamW { weight_decay, .. }
                if !(weight_decay.is_finite() && weight_decay >= 0.0) =>
            {
                bad("weight decay must be ≥ 0")
            }
            _ => Ok(()),
        }
    }
}

/// Refuses a model whose training state (weights, gradients and two optimizer moments:
/// 16 bytes a parameter) would not fit in the memory available, with the estimate, before
/// anything is allocated; the OS would otherwise kill the run.
pub fn check_memory(params: Option<u64>) -> Result<()> {
    let need = params.and_then(|p| p.checked_mul(16));
    let avail = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| {
        m.lines()
            .find(|l| l.starts_with("MemAvailable:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
    });
    match (need, avail) {
        (None, _) => Err(crate::error::Error::config(
            "the model's sizes overflow: far beyond any machine's memory",
        )),
        (Some(n), Some(a)) if n > a => Err(crate::error::Error::config(format!(
            "the model needs about {:.1} GiB for weights, gradients and optimizer state; {:.1} GiB is available",
            n as f64 / (1u64 << 30) as f64,
            a as f64 / (1u64 << 30) as f64
        ))),
        _ => Ok(()),
    }
}

/// Loss summed in nats over `count` predicted units (tokens, tags, sentences).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub struct Stats {
    pub loss_sum: f64,
    pub count: usize,
}

impl Stats {
    pub fn mean(&self) -> f64 {
        self.loss_sum / self.count.max(1) as f64
    }

    pub fn add(&mut self, o: Stats) {
        self.loss_sum += o.loss_sum;
        self.count += o.count;
    }
}

/// One validation pass: the mean loss and the task's named metrics (for example `ppl`,
/// `f1`, `accuracy`, `bleu`). The trainer logs them as `valid_{name}`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Eval {
    pub loss: f64,
    pub metrics: Vec<(String, f64)>,
}

impl Eval {
    /// The value of `name`; `"loss"` is the loss itself.
    pub fn get(&self, name: &str) -> Option<f64> {
        if name == "loss" {
            return Some(self.loss);
        }
        self.metrics.iter().find(|m| m.0 == name).map(|m| m.1)
    }
}

/// Which validation metric picks the best checkpoint and drives early stopping.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Selection {
    /// A name in [`Eval::metrics`], or `"loss"`.
    pub metric: &'static str,
    pub higher_is_better: bool,
}

impl Selection {
    /// Is `new` better than `best` (`None`: nothing yet)?
    pub fn improves(&self, new: f64, best: Option<f64>) -> bool {
        match best {
            None => new.is_finite(),
            Some(b) if self.higher_is_better => new > b,
            Some(b) => new < b,
        }
    }
}

/// What the trainer needs from a task (language model, tagger, classifier, translator).
pub trait Task {
    /// The task's name as checkpoints record it (`"lm"`, `"tag"`, ...).
    fn name(&self) -> &'static str;
    /// What [`Stats::count`] counts, singular (`"token"`, `"sentence"`), for logs.
    fn unit(&self) -> &'static str {
        "token"
    }
    /// The mean loss a unit may have before the run counts as diverged. A softmax
    /// cross-entropy above 700 nats for one prediction (a perplexity past any float) needs
    /// logits hundreds apart, which only a diverged model gives, while the loss itself is
    /// still finite. `None`: no ceiling (a CRF's sentence loss grows with its length).
    fn loss_ceiling(&self) -> Option<f64> {
        Some(700.0)
    }
    fn model(&mut self) -> &mut dyn Module;
    /// Batches in one epoch.
    fn steps_per_epoch(&self) -> usize;
    /// Called before step 0 of every epoch, and again when a run resumes mid-epoch, with a
    /// seed for this epoch's shuffling (a function of the run's seed and the epoch, so a
    /// resumed run sees the same order).
    fn begin_epoch(&mut self, epoch: usize, seed: u64);
    /// Forward and backward of batch `i`; gradients accumulate into the model.
    fn train_step(&mut self, i: usize, rng: &mut dyn RngCore) -> Stats;
    /// Metrics derived from a training loss window (an LM's perplexity), logged as
    /// `train_{name}` at epoch ends and shown beside the loss.
    fn train_metrics(&self, _s: &Stats) -> Vec<(String, f64)> {
        Vec::new()
    }
    /// Validation loss and metrics, if there is validation data.
    fn validate(&mut self) -> Option<Eval>;
    /// The metric that selects the best model; by default the validation loss.
    fn selection(&self) -> Selection {
        Selection {
            metric: "loss",
            higher_is_better: false,
        }
    }
    /// Writes the model checkpoint.
    fn save(&mut self, path: &Path) -> Result<()>;
    /// State carried between batches (an LM's hidden state), for resuming mid-epoch.
    fn carry(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        Vec::new()
    }
    fn set_carry(&mut self, _name: &str, _data: Vec<f32>) {}
}

/// A task's run record: what `config.json` and the train state store, so that a run can
/// be rerun (`--config`) or resumed (`--resume`) exactly.
pub trait Recipe: Serialize + serde::de::DeserializeOwned {
    /// The task's name in checkpoints and run records (`"lm"`, `"tag"`, …).
    const TASK: &'static str;
    /// What [`Recipe::build`] makes: the corpus and the task ready to train.
    type Built;
    fn train_config(&mut self) -> &mut TrainConfig;
    /// Checks every value and combination before anything is read.
    fn validate(&self) -> Result<()>;
    /// Reads the corpus and builds the task (tokenizers, vocabularies, model); `note`
    /// receives remarks for the user (pretrained coverage, skipped lines).
    fn build(&mut self, note: &mut dyn FnMut(String)) -> Result<Self::Built>;
    /// The task inside what [`Recipe::build`] made.
    fn task(built: &mut Self::Built) -> &mut dyn Task;
    /// The best checkpoint (`model_path`) scored on the validation and test sets, as
    /// `valid_*` and `test_*` values for the summary.
    fn score_best(
        &self,
        built: &mut Self::Built,
        model_path: &Path,
    ) -> Result<serde_json::Map<String, serde_json::Value>>;
}

/// The parts of a [`Recipe`] impl that every task writes the same way, for a run type with
/// a `train` field and inherent `validate`, `corpus` and `build(&corpus, note)` methods, whose
/// [`Recipe::Built`] is `(corpus, task)`.
macro_rules! recipe_parts {
    ($run:ty, $built:ty) => {
        type Built = $built;

        fn train_config(&mut self) -> &mut $crate::task::TrainConfig {
            &mut self.train
        }

        fn validate(&self) -> $crate::error::Result<()> {
            <$run>::validate(self)
        }

        fn build(&mut self, note: &mut dyn FnMut(String)) -> $crate::error::Result<$built> {
            let corpus = self.corpus()?;
            let task = <$run>::build(self, &corpus, note)?;
            Ok((corpus, task))
        }

        fn task(built: &mut $built) -> &mut dyn $crate::task::Task {
            &mut built.1
        }
    };
}
pub(crate) use recipe_parts;
