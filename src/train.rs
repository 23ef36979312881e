//! The one trainer every task uses: epochs, learning-rate schedule, gradient clipping,
//! optimizer steps, progress, metrics.jsonl, best-model checkpoints, loss.png, and
//! resumable training state.
//!
//! A task supplies batches and forward/backward; the trainer owns everything else. Each
//! step's randomness (dropout masks) comes from a generator seeded by (seed, epoch, step),
//! so a resumed run draws the same masks as an uninterrupted one and ends with the same
//! weights.

use crate::checkpoint;
use crate::engine::optim::{OptimKind, Optimizer, Schedule};
use crate::engine::param::Module;
use crate::error::{write_atomic, Error, Result};
use rand::rngs::StdRng;
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Loss summed in nats over `count` predicted tokens.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub loss_sum: f64,
    pub count: usize,
}

impl Stats {
    pub fn mean(&self) -> f64 {
        self.loss_sum / self.count.max(1) as f64
    }
}

/// What the trainer needs from a task (language model, tagger, classifier, translator).
pub trait Task {
    fn model(&mut self) -> &mut dyn Module;
    /// Batches in one epoch.
    fn steps_per_epoch(&self) -> usize;
    /// Called before step 0 of every epoch (reset carried state, reshuffle).
    fn begin_epoch(&mut self, epoch: usize);
    /// Forward and backward of batch `i`; gradients accumulate into the model.
    fn train_step(&mut self, i: usize, rng: &mut dyn RngCore) -> Stats;
    /// Validation loss per token, if there is validation data.
    fn validate(&mut self) -> Option<Stats>;
    /// Writes the model checkpoint.
    fn save(&mut self, path: &Path) -> Result<()>;
    /// State carried between batches (an LM's hidden state), for resuming mid-epoch.
    fn carry(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        Vec::new()
    }
    fn set_carry(&mut self, _name: &str, _data: Vec<f32>) {}
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    /// Stop after this many training tokens (targets), if set.
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
}

/// Resumable position: written to `train_state.safetensors` with the weights and the
/// optimizer moments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Progress {
    pub epoch: usize,
    /// Next step to run within `epoch`.
    pub step: usize,
    pub lr: f32,
    pub best_valid: Option<f64>,
    pub last_valid: Option<f64>,
    pub tokens: u64,
    pub wall_s: f64,
    pub opt_step: u64,
}

pub struct Summary {
    pub progress: Progress,
    pub best_valid: Option<f64>,
}

fn step_rng(seed: u64, epoch: usize, step: usize) -> StdRng {
    // splitmix64 of the triple, so neighbouring steps get unrelated streams.
    let mut z = seed ^ ((epoch as u64) << 40) ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    StdRng::seed_from_u64(z ^ (z >> 31))
}

pub const STATE_FILE: &str = "train_state.safetensors";
pub const MODEL_FILE: &str = "model.safetensors";

/// Runs (or continues) training, writing into `out`. `run_meta` is stored in the train
/// state so that `--resume` can rebuild the same task; `resume` is a state read back.
pub fn train(
    task: &mut dyn Task,
    cfg: &TrainConfig,
    out: &Path,
    run_meta: &serde_json::Value,
    resume: Option<&checkpoint::Loaded>,
    show_progress: bool,
) -> Result<Summary> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    let mut opt = Optimizer::new(cfg.optim, cfg.lr);
    let mut prog = Progress {
        epoch: 1,
        step: 0,
        lr: cfg.lr,
        best_valid: None,
        last_valid: None,
        tokens: 0,
        wall_s: 0.0,
        opt_step: 0,
    };
    if let Some(st) = resume {
        prog = serde_json::from_value(st.meta["progress"].clone())
            .map_err(|e| Error::format(st.path(), format!("bad progress: {e}")))?;
        st.load_into(task.model(), &["optim.", "carry."])?;
        let mut k = 0;
        let mut moments = Vec::new();
        task.model().visit(&mut |_| k += 1);
        for i in 0..k {
            let m = st
                .tensor(&format!("optim.m.{i}"))
                .map(|t| t.1)
                .unwrap_or_default();
            let v = st
                .tensor(&format!("optim.v.{i}"))
                .map(|t| t.1)
                .unwrap_or_default();
            moments.push((m, v));
        }
        opt.restore(prog.opt_step, prog.lr, moments);
        for (name, _, _) in task.carry() {
            if let Ok((_, d)) = st.tensor(&name) {
                task.set_carry(&name, d);
            }
        }
    }
    let metrics_path = out.join("metrics.jsonl");
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(|e| Error::io(&metrics_path, e))?;
    let mut log = |v: serde_json::Value| -> Result<()> {
        writeln!(metrics, "{v}").map_err(|e| Error::io(&metrics_path, e))
    };
    let start = Instant::now() - std::time::Duration::from_secs_f64(prog.wall_s);
    let steps = task.steps_per_epoch();
    let total = (cfg.epochs * steps) as u64;
    let bar = if show_progress {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{elapsed_precise} [{bar:30}] {pos}/{len} ETA {eta} {msg}",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_position(((prog.epoch - 1) * steps + prog.step) as u64);
    let out_of_budget = |p: &Progress, t: &Instant| {
        cfg.token_budget.is_some_and(|b| p.tokens >= b)
            || cfg
                .time_budget_min
                .is_some_and(|m| t.elapsed().as_secs_f64() >= m * 60.0)
    };
    let mut stop = false;
    while prog.epoch <= cfg.epochs && !stop {
        let epoch = prog.epoch;
        if prog.step == 0 {
            let plateau = matches!((prog.last_valid, prog.best_valid), (Some(l), Some(b)) if l > b);
            if epoch > 1 {
                prog.lr = cfg.schedule.next_lr(epoch, prog.lr, plateau);
            } else {
                prog.lr = cfg.schedule.next_lr(epoch, cfg.lr, false);
            }
        }
        opt.lr = prog.lr;
        task.begin_epoch(epoch);
        let mut window = Stats::default();
        let mut epoch_stats = Stats::default();
        let mut t_log = Instant::now();
        let mut tok_log = 0usize;
        // Optimizer::step leaves the gradients zero for the next step.
        task.model().zero_grad();
        while prog.step < steps {
            let i = prog.step;
            let mut rng = step_rng(cfg.seed, epoch, i);
            let s = task.train_step(i, &mut rng);
            opt.step(task.model(), cfg.clip);
            prog.step += 1;
            prog.tokens += s.count as u64;
            tok_log += s.count;
            window.loss_sum += s.loss_sum;
            window.count += s.count;
            epoch_stats.loss_sum += s.loss_sum;
            epoch_stats.count += s.count;
            bar.inc(1);
            if prog.step.is_multiple_of(cfg.log_every.max(1)) || prog.step == steps {
                let tps = tok_log as f64 / t_log.elapsed().as_secs_f64().max(1e-9);
                bar.set_message(format!(
                    "epoch {epoch} loss {:.3} ppl {:.1} {:.0} tok/s",
                    window.mean(),
                    window.mean().exp(),
                    tps
                ));
                log(
                    serde_json::json!({"epoch": epoch, "step": prog.step, "loss": window.mean(), "lr": prog.lr,
                    "tokens_per_s": tps, "tokens": prog.tokens, "wall_s": start.elapsed().as_secs_f64()}),
                )?;
                window = Stats::default();
                t_log = Instant::now();
                tok_log = 0;
            }
            if cfg.eval_every > 0 && prog.step.is_multiple_of(cfg.eval_every) && prog.step < steps {
                validate_and_keep(task, &mut prog, out, epoch, &start, &mut log)?;
            }
            if out_of_budget(&prog, &start) {
                stop = true;
                break;
            }
            if cfg.save_every > 0 && prog.step.is_multiple_of(cfg.save_every) && prog.step < steps {
                prog.wall_s = start.elapsed().as_secs_f64();
                save_state(task, &opt, &prog, out, run_meta)?;
            }
        }
        let v = validate_and_keep(task, &mut prog, out, epoch, &start, &mut log)?;
        log(
            serde_json::json!({"epoch": epoch, "train_loss": epoch_stats.mean(), "train_ppl": epoch_stats.mean().exp(),
            "valid_loss": v, "valid_ppl": v.map(f64::exp), "lr": prog.lr, "wall_s": start.elapsed().as_secs_f64(), "epoch_end": true}),
        )?;
        if !stop {
            prog.epoch += 1;
            prog.step = 0;
        }
        prog.wall_s = start.elapsed().as_secs_f64();
        save_state(task, &opt, &prog, out, run_meta)?;
        let _ = crate::plot::loss_curves(&metrics_path, &out.join("loss.png"));
    }
    bar.finish_and_clear();
    Ok(Summary {
        best_valid: prog.best_valid,
        progress: prog,
    })
}

type LogFn<'a> = dyn FnMut(serde_json::Value) -> Result<()> + 'a;

/// Validates, logs, and writes model.safetensors when the loss is the best so far.
fn validate_and_keep(
    task: &mut dyn Task,
    prog: &mut Progress,
    out: &Path,
    epoch: usize,
    start: &Instant,
    log: &mut LogFn,
) -> Result<Option<f64>> {
    let v = task.validate().map(|s| s.mean());
    prog.last_valid = v;
    match v {
        Some(v) => {
            log(
                serde_json::json!({"epoch": epoch, "step": prog.step, "valid_loss": v, "valid_ppl": v.exp(),
                "tokens": prog.tokens, "wall_s": start.elapsed().as_secs_f64()}),
            )?;
            if prog.best_valid.is_none_or(|b| v < b) {
                prog.best_valid = Some(v);
                task.save(&out.join(MODEL_FILE))?;
            }
        }
        None => task.save(&out.join(MODEL_FILE))?,
    }
    Ok(v)
}

fn save_state(
    task: &mut dyn Task,
    opt: &Optimizer,
    prog: &Progress,
    out: &Path,
    run_meta: &serde_json::Value,
) -> Result<()> {
    let mut extra: Vec<(String, Vec<usize>, Vec<f32>)> = Vec::new();
    for (i, (m, v)) in opt.moments().iter().enumerate() {
        if !m.is_empty() {
            extra.push((format!("optim.m.{i}"), vec![m.len()], m.clone()));
        }
        if !v.is_empty() {
            extra.push((format!("optim.v.{i}"), vec![v.len()], v.clone()));
        }
    }
    extra.extend(task.carry());
    let refs: Vec<(String, Vec<usize>, &[f32])> = extra
        .iter()
        .map(|(n, s, d)| (n.clone(), s.clone(), &d[..]))
        .collect();
    let mut prog = prog.clone();
    prog.opt_step = opt.step;
    let meta = serde_json::json!({"format_version": checkpoint::FORMAT_VERSION, "run": run_meta, "progress": prog});
    checkpoint::save(&out.join(STATE_FILE), task.model(), &refs, &meta)
}

/// The folder's state file, for `--resume DIR`.
pub fn state_path(dir: &Path) -> PathBuf {
    dir.join(STATE_FILE)
}

/// Writes a small JSON file atomically (used for summaries).
pub fn write_json(path: &Path, v: &serde_json::Value) -> Result<()> {
    write_atomic(
        path,
        serde_json::to_string_pretty(v)
            .unwrap_or_default()
            .as_bytes(),
    )
}
