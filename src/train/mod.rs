//! The one trainer every task uses: epochs, learning-rate schedule, gradient clipping,
//! optimizer steps, progress, metrics.jsonl, best-model checkpoints, loss.png, and
//! resumable training state.
//!
//! A task supplies batches and forward/backward; the trainer owns everything else. Each
//! step's randomness (dropout masks) comes from a generator seeded by (seed, epoch, step),
//! so a resumed run draws the same masks as an uninterrupted one and ends with the same
//! weights.

use crate::checkpoint;
use crate::engine::optim::Optimizer;
use crate::error::{write_atomic, Error, Result};
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

pub use crate::task::{Eval, NanPolicy, Selection, Stats, Task, TrainConfig};

/// Resumable position: written to `train_state.safetensors` with the weights and the
/// optimizer moments.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Progress {
    pub epoch: usize,
    /// Next step to run within `epoch`.
    pub step: usize,
    pub lr: f32,
    /// Best value of the task's selection metric so far.
    pub best: Option<f64>,
    /// Did the last validation improve on the best (drives `plateau` schedules)?
    pub last_improved: bool,
    /// Epoch-end validations since the last improvement (early stopping).
    pub bad_epochs: usize,
    /// Training units (tokens, sentences) consumed.
    pub tokens: u64,
    pub wall_s: f64,
    pub opt_step: u64,
    /// Why the run ended early, if it did (`"patience"`, `"budget"`).
    #[serde(default)]
    pub stopped: Option<String>,
    /// Length of metrics.jsonl when this state was saved. A run resumed after a crash
    /// cuts what was logged after it, since it runs and logs those steps again.
    #[serde(default)]
    pub metrics_bytes: Option<u64>,
    /// The epoch's training loss so far, and the part of it since the last logged step:
    /// saved so that a run resumed mid-epoch logs the means an unbroken run would.
    #[serde(default)]
    pub epoch_stats: Stats,
    #[serde(default)]
    pub window: Stats,
}

pub struct Summary {
    pub progress: Progress,
    /// The best checkpoint's validation, as measured during training.
    pub best: Option<Eval>,
}

/// What the trainer reports while it runs. The progress bar and the PNG curves are
/// observers, so a library caller (a test, an example) can train silently with none.
pub trait Observer {
    /// Before the first step: total steps of the run and how many are already done.
    fn start(&mut self, _total: u64, _done: u64) {}
    /// After each step; `msg` is set on logging steps (loss, metrics, speed).
    fn step(&mut self, _msg: Option<&str>) {}
    /// After each epoch's validation and save; `out` is the run folder.
    fn epoch_end(&mut self, _out: &Path) {}
    fn finish(&mut self) {}
}

/// A terminal progress bar (indicatif).
#[cfg(feature = "cli")]
pub struct ProgressBar(indicatif::ProgressBar);

#[cfg(feature = "cli")]
impl Default for ProgressBar {
    fn default() -> Self {
        let bar = indicatif::ProgressBar::new(0);
        bar.set_style(
            indicatif::ProgressStyle::with_template(
                "{elapsed_precise} [{bar:30}] {pos}/{len} ETA {eta} {msg}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        ProgressBar(bar)
    }
}

#[cfg(feature = "cli")]
impl Observer for ProgressBar {
    fn start(&mut self, total: u64, done: u64) {
        self.0.set_length(total);
        self.0.set_position(done);
    }
    fn step(&mut self, msg: Option<&str>) {
        self.0.inc(1);
        if let Some(m) = msg {
            self.0.set_message(m.to_string());
        }
    }
    fn finish(&mut self) {
        self.0.finish_and_clear();
    }
}

/// Redraws `loss.png` (training and validation loss) and, when the selection metric is
/// not the loss, `{metric}.png`, from metrics.jsonl after every epoch.
pub struct Curves {
    pub metric: &'static str,
}

impl Observer for Curves {
    #[cfg(feature = "plot")]
    fn epoch_end(&mut self, out: &Path) {
        let m = out.join("metrics.jsonl");
        let _ = crate::plot::loss_curves(&m, &out.join("loss.png"));
        if self.metric != "loss" {
            let _ = crate::plot::metric_curve(
                &m,
                &format!("valid_{}", self.metric),
                &out.join(format!("{}.png", self.metric)),
            );
        }
    }
}

fn step_rng(seed: u64, epoch: usize, step: usize) -> StdRng {
    // splitmix64 of the triple, so neighbouring steps get unrelated streams.
    StdRng::seed_from_u64(mix(seed
        ^ ((epoch as u64) << 40)
        ^ (step as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)))
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// The shuffling seed of `epoch` (what [`Task::begin_epoch`] receives).
pub fn epoch_seed(seed: u64, epoch: usize) -> u64 {
    mix(seed.wrapping_add(0x5851_F42D_4C95_7F2D) ^ ((epoch as u64) << 32))
}

pub const STATE_FILE: &str = "train_state.safetensors";
pub const MODEL_FILE: &str = "model.safetensors";
pub const CONFIG_FILE: &str = "config.json";

/// `name=value` pairs for a log line.
fn fmt_metrics(prefix: &str, m: &[(String, f64)]) -> String {
    m.iter()
        .map(|(k, v)| format!(" {prefix}{k} {v:.4}"))
        .collect()
}

/// Runs (or continues) training, writing into `out`. `run` (the task's typed configs) is
/// stored in the train state so that a resume can rebuild the same task; `resume` is a
/// state read back with [`crate::checkpoint::open`].
pub fn train(
    task: &mut dyn Task,
    cfg: &TrainConfig,
    out: &Path,
    run: &serde_json::Value,
    resume: Option<&checkpoint::Loaded>,
    observers: &mut [&mut dyn Observer],
) -> Result<Summary> {
    std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
    // Process-wide, as the thread count is: the run's products follow its precision.
    crate::engine::bf16::set_precision(cfg.precision);
    let mut opt = Optimizer::new(cfg.optim, cfg.lr);
    let sel = task.selection();
    let unit = task.unit();
    let mut prog = Progress {
        epoch: 1,
        step: 0,
        lr: cfg.lr,
        best: None,
        last_improved: true,
        bad_epochs: 0,
        tokens: 0,
        wall_s: 0.0,
        opt_step: 0,
        stopped: None,
        metrics_bytes: None,
        epoch_stats: Stats::default(),
        window: Stats::default(),
    };
    if let Some(st) = resume {
        if st.meta["task"] != task.name() {
            return Err(Error::format(
                st.path(),
                format!(
                    "train state of task {}; expected \"{}\"",
                    st.meta["task"],
                    task.name()
                ),
            ));
        }
        prog = serde_json::from_value(st.meta["progress"].clone())
            .map_err(|e| Error::format(st.path(), format!("bad progress: {e}")))?;
        // A run stopped by its budget continues with the new one; one stopped by early
        // stopping stays stopped.
        if prog.stopped.as_deref() == Some("budget") {
            prog.stopped = None;
        }
        restore(task, &mut opt, &prog, st)?;
    }
    let metrics_path = out.join("metrics.jsonl");
    if let Some(n) = prog.metrics_bytes {
        let f = std::fs::OpenOptions::new().write(true).open(&metrics_path);
        if let Ok(f) = f {
            if f.metadata().is_ok_and(|m| m.len() > n) {
                f.set_len(n).map_err(|e| Error::io(&metrics_path, e))?;
            }
        }
    }
    let mut metrics = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&metrics_path)
        .map_err(|e| Error::io(&metrics_path, e))?;
    let mut log = |v: serde_json::Value| -> Result<()> {
        writeln!(metrics, "{v}").map_err(|e| Error::io(&metrics_path, e))
    };
    let units = format!("{unit}s");
    let start = Instant::now() - std::time::Duration::from_secs_f64(prog.wall_s);
    let steps = task.steps_per_epoch();
    let done = ((prog.epoch - 1) * steps + prog.step) as u64;
    for o in observers.iter_mut() {
        o.start((cfg.epochs * steps) as u64, done);
    }
    let out_of_budget = |p: &Progress, t: &Instant| {
        cfg.token_budget.is_some_and(|b| p.tokens >= b)
            || cfg
                .time_budget_min
                .is_some_and(|m| t.elapsed().as_secs_f64() >= m * 60.0)
    };
    let mut best_eval = None;
    let mut last_save = Instant::now();
    let mut stop = prog.stopped.is_some();
    while prog.epoch <= cfg.epochs && !stop {
        let epoch = prog.epoch;
        if prog.step == 0 {
            prog.lr = if epoch > 1 {
                cfg.schedule.next_lr(epoch, prog.lr, !prog.last_improved)
            } else {
                cfg.schedule.next_lr(epoch, cfg.lr, false)
            };
        }
        opt.lr = prog.lr;
        task.begin_epoch(epoch, epoch_seed(cfg.seed, epoch));
        if prog.step == 0 {
            (prog.epoch_stats, prog.window) = (Stats::default(), Stats::default());
        }
        let mut t_log = Instant::now();
        let mut tok_log = 0usize;
        // Optimizer::step leaves the gradients zero for the next step.
        task.model().zero_grad();
        while prog.step < steps {
            let i = prog.step;
            let mut rng = step_rng(cfg.seed, epoch, i);
            let (s, exploded, norm) = step(task, &mut opt, cfg.clip, i, &mut rng);
            if !norm.is_finite() {
                let what = if !s.loss_sum.is_finite() {
                    "loss is not finite".to_string()
                } else if exploded {
                    format!(
                        "loss is {:.3e} a {unit}: diverged (a perplexity past any float)",
                        s.mean()
                    )
                } else {
                    "gradient norm is not finite".to_string()
                };
                let at = format!(
                    "epoch {epoch}, step {} (batch {i}): the {what}",
                    prog.step + 1
                );
                log(
                    serde_json::json!({"epoch": epoch, "step": prog.step + 1, "non_finite": at, "policy": cfg.on_nan}),
                )?;
                match cfg.on_nan {
                    NanPolicy::Stop => {
                        return Err(Error::Diverged(format!(
                            "{at}; stopped with the last good state in {} (model.safetensors, train_state.safetensors); --on-nan skip|rollback continues past it",
                            out.display()
                        )))
                    }
                    NanPolicy::Skip => {}
                    NanPolicy::Rollback => {
                        let path = out.join(STATE_FILE);
                        if path.is_file() {
                            let st = checkpoint::open(&path)?;
                            let saved: Progress = serde_json::from_value(st.meta["progress"].clone())
                                .map_err(|e| Error::format(&path, format!("bad progress: {e}")))?;
                            restore(task, &mut opt, &saved, &st)?;
                        }
                        prog.lr /= 2.0;
                        opt.lr = prog.lr;
                    }
                }
            }
            prog.step += 1;
            prog.tokens += s.count as u64;
            tok_log += s.count;
            prog.window.add(s);
            prog.epoch_stats.add(s);
            let mut msg = None;
            if prog.step.is_multiple_of(cfg.log_every.max(1)) || prog.step == steps {
                let rate = tok_log as f64 / t_log.elapsed().as_secs_f64().max(1e-9);
                let extra = task.train_metrics(&prog.window);
                msg = Some(format!(
                    "epoch {epoch} loss {:.3}{} {rate:.0} {unit}/s",
                    prog.window.mean(),
                    fmt_metrics("", &extra)
                ));
                let mut v = serde_json::json!({"epoch": epoch, "step": prog.step, "loss": prog.window.mean(),
                    "lr": prog.lr, "wall_s": start.elapsed().as_secs_f64()});
                v[format!("{units}_per_s")] = rate.into();
                v[&units] = prog.tokens.into();
                log(v)?;
                prog.window = Stats::default();
                t_log = Instant::now();
                tok_log = 0;
            }
            for o in observers.iter_mut() {
                o.step(msg.as_deref());
            }
            if cfg.eval_every > 0 && prog.step.is_multiple_of(cfg.eval_every) && prog.step < steps {
                if let Some((e, true)) =
                    validate_and_keep(task, sel, &mut prog, out, &start, &mut log)?
                {
                    best_eval = Some(e);
                }
            }
            if out_of_budget(&prog, &start) {
                stop = true;
                prog.stopped = Some("budget".into());
                break;
            }
            let by_steps = cfg.save_every > 0 && prog.step.is_multiple_of(cfg.save_every);
            let by_time = cfg
                .save_minutes
                .is_some_and(|m| last_save.elapsed().as_secs_f64() >= m * 60.0);
            if (by_steps || by_time || interrupted()) && prog.step < steps {
                prog.wall_s = start.elapsed().as_secs_f64();
                prog.metrics_bytes = std::fs::metadata(&metrics_path).ok().map(|m| m.len());
                save_state(task, &opt, &prog, out, run)?;
                last_save = Instant::now();
            }
            if interrupted() {
                for o in observers.iter_mut() {
                    o.finish();
                }
                return Err(Error::Interrupted(out.to_path_buf()));
            }
        }
        let validated = validate_and_keep(task, sel, &mut prog, out, &start, &mut log)?;
        let mut v = serde_json::json!({"epoch": epoch, "train_loss": prog.epoch_stats.mean(), "lr": prog.lr,
            "wall_s": start.elapsed().as_secs_f64(), "epoch_end": true});
        for (k, x) in task.train_metrics(&prog.epoch_stats) {
            v[format!("train_{k}")] = x.into();
        }
        log(v)?;
        if let Some((e, improved)) = validated {
            prog.bad_epochs = if improved { 0 } else { prog.bad_epochs + 1 };
            if improved {
                best_eval = Some(e);
            }
            if cfg.patience.is_some_and(|p| prog.bad_epochs >= p) {
                stop = true;
                prog.stopped = Some("patience".into());
            }
        }
        if prog.stopped.as_deref() != Some("budget") {
            prog.epoch += 1;
            prog.step = 0;
        }
        prog.wall_s = start.elapsed().as_secs_f64();
        prog.metrics_bytes = std::fs::metadata(&metrics_path).ok().map(|m| m.len());
        save_state(task, &opt, &prog, out, run)?;
        last_save = Instant::now();
        for o in observers.iter_mut() {
            o.epoch_end(out);
        }
        if interrupted() {
            for o in observers.iter_mut() {
                o.finish();
            }
            return Err(Error::Interrupted(out.to_path_buf()));
        }
    }
    for o in observers.iter_mut() {
        o.finish();
    }
    if prog.best.is_none() && task.validate().is_some() && !out.join(MODEL_FILE).exists() {
        return Err(Error::Diverged(format!(
            "validation never gave a finite {}, so no model was saved in {}",
            sel.metric,
            out.display()
        )));
    }
    Ok(Summary {
        best: best_eval,
        progress: prog,
    })
}

/// One training step, as the trainer runs it and `rnnkit bench` times it: forward and
/// backward of batch `i`, then the optimizer's update with gradients clipped to `clip`.
/// A non-finite loss or gradient norm, or a loss past the task's ceiling, leaves the
/// weights untouched (the caller's policy decides what happens next). Returns the step's
/// loss, whether it exploded past the ceiling, and the gradient norm (NaN when skipped).
pub fn step(
    task: &mut dyn Task,
    opt: &mut Optimizer,
    clip: f32,
    i: usize,
    rng: &mut dyn rand::RngCore,
) -> (Stats, bool, f32) {
    let s = task.train_step(i, rng);
    let exploded = task.loss_ceiling().is_some_and(|c| s.mean() > c);
    let norm = if s.loss_sum.is_finite() && !exploded {
        opt.step(task.model(), clip)
    } else {
        task.model().zero_grad();
        f32::NAN
    };
    (s, exploded, norm)
}

/// Loads a train state's weights, optimizer moments and carried state into `task` and `opt`.
fn restore(
    task: &mut dyn Task,
    opt: &mut Optimizer,
    prog: &Progress,
    st: &checkpoint::Loaded,
) -> Result<()> {
    st.load_into(task.model(), &["optim.", "carry."])?;
    let mut sizes = Vec::new();
    task.model().visit(&mut |p| sizes.push(p.w.len()));
    let mut moments = Vec::new();
    for (i, &n) in sizes.iter().enumerate() {
        let get = |k: &str| -> Result<Vec<f32>> {
            match st.tensor(&format!("optim.{k}.{i}")) {
                Ok((_, d)) if d.len() == n => Ok(d),
                Ok(_) => Err(Error::format(
                    st.path(),
                    format!("optim.{k}.{i} does not match its parameter's size {n}"),
                )),
                Err(_) => Ok(Vec::new()),
            }
        };
        moments.push((get("m")?, get("v")?));
    }
    opt.restore(prog.opt_step, prog.lr, moments);
    for (name, _, _) in task.carry() {
        if let Ok((_, d)) = st.tensor(&name) {
            task.set_carry(&name, d);
        }
    }
    Ok(())
}

/// Set by Ctrl-C or SIGTERM (the CLI registers it) or by a library caller: the trainer saves
/// its state after the current step and returns [`Error::Interrupted`].
pub fn interrupt_flag() -> std::sync::Arc<std::sync::atomic::AtomicBool> {
    static FLAG: std::sync::OnceLock<std::sync::Arc<std::sync::atomic::AtomicBool>> =
        std::sync::OnceLock::new();
    FLAG.get_or_init(Default::default).clone()
}

fn interrupted() -> bool {
    interrupt_flag().load(std::sync::atomic::Ordering::Relaxed)
}

type LogFn<'a> = dyn FnMut(serde_json::Value) -> Result<()> + 'a;

/// Validates, logs `valid_loss` and `valid_{metric}`, and writes model.safetensors when the
/// selection metric is the best so far (or always, without validation data). Returns the
/// validation and whether it improved on the best (`None`: no validation data).
fn validate_and_keep(
    task: &mut dyn Task,
    sel: Selection,
    prog: &mut Progress,
    out: &Path,
    start: &Instant,
    log: &mut LogFn,
) -> Result<Option<(Eval, bool)>> {
    let Some(e) = task.validate() else {
        task.save(&out.join(MODEL_FILE))
            .map_err(|e| save_failed(e, out))?;
        return Ok(None);
    };
    let mut v = serde_json::json!({"epoch": prog.epoch, "step": prog.step, "valid_loss": e.loss,
        "wall_s": start.elapsed().as_secs_f64()});
    v[format!("{}s", task.unit())] = prog.tokens.into();
    for (k, x) in &e.metrics {
        v[format!("valid_{k}")] = (*x).into();
    }
    log(v)?;
    let value = e.get(sel.metric).ok_or_else(|| {
        Error::Usage(format!(
            "task {} selects by {} but its validation does not report it",
            task.name(),
            sel.metric
        ))
    })?;
    prog.last_improved = sel.improves(value, prog.best);
    if prog.last_improved {
        prog.best = Some(value);
        task.save(&out.join(MODEL_FILE))
            .map_err(|e| save_failed(e, out))?;
    }
    Ok(Some((e, prog.last_improved)))
}

fn save_state(
    task: &mut dyn Task,
    opt: &Optimizer,
    prog: &Progress,
    out: &Path,
    run: &serde_json::Value,
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
    let meta = serde_json::json!({"format_version": checkpoint::FORMAT_VERSION, "task": task.name(),
        "run": run, "progress": prog});
    checkpoint::save(&out.join(STATE_FILE), task.model(), &refs, &meta)
        .map_err(|e| save_failed(e, out))
}

/// A write error of a checkpoint, with what is still good: the atomic write left the
/// file's previous version in place, if there was one.
fn save_failed(e: Error, out: &Path) -> Error {
    let Error::Io { file, source } = e else {
        return e;
    };
    let state = out.join(STATE_FILE);
    let kept = match (file.exists(), state.exists()) {
        (true, _) if file == state => format!(
            "{} is untouched and holds the last saved state: continue with --resume {}",
            file.display(),
            out.display()
        ),
        (true, _) => format!(
            "{} is untouched and holds the last best model",
            file.display()
        ),
        (false, true) => format!(
            "{} holds the last saved state: continue with --resume {}",
            state.display(),
            out.display()
        ),
        (false, false) => "nothing was saved before it; the run must start again".into(),
    };
    Error::SaveFailed { file, source, kept }
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

#[cfg(test)]
mod tests;
