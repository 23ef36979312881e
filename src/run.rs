//! A whole training run, for any task: the folder it writes into, its record
//! (`config.json`), resuming it, the signal and NaN policies, saving on a time budget,
//! `metrics.jsonl`, and `summary.json`, written here and nowhere else.
//!
//! A task's run record (its *recipe*: `LmRun`, `TagRun`, `ClsRun`, `TrRun`) implements
//! [`Recipe`]; [`start`] trains one into a folder and [`resume`] continues the run a folder
//! holds. Both return the [`RunSummary`] that `summary.json` holds. The command line, the
//! Python package and any Rust program call exactly these.
//!
//! ```no_run
//! use rnnkit::run::{self, Options};
//! use rnnkit::task::lm::recipe::{LmRun, Preset};
//!
//! let mut recipe = LmRun::recipe(Some(Preset::ZarembaSmall));
//! recipe.train.epochs = 1;
//! let summary = run::start(recipe, "runs/ptb".as_ref(), Options::default())?;
//! println!("{}", summary.values["valid_ppl"]);
//! // Later, or after a crash: three more epochs of the same run.
//! let budgets = run::Budgets { epochs: Some(4), ..Default::default() };
//! let summary = run::resume::<LmRun>("runs/ptb".as_ref(), &budgets, Options::default())?;
//! # Ok::<(), rnnkit::error::Error>(())
//! ```

use crate::checkpoint;
use crate::engine::bf16::Precision;
use crate::error::{Error, Result};
use crate::train::{self, NanPolicy, Observer, Progress, TrainConfig};
use std::path::{Path, PathBuf};

pub use crate::task::Recipe;

/// Where the products run: `None` keeps the run's own (its record's threads and
/// precision), or every core and fp32 for a new run.
#[derive(Clone, Copy, Debug, Default)]
pub struct Compute {
    pub threads: Option<usize>,
    pub precision: Option<Precision>,
}

impl Compute {
    /// Sets the process's thread count and product precision (both process-wide).
    pub fn apply(&self) {
        crate::engine::ops::set_threads(
            self.threads
                .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get())),
        );
        crate::engine::bf16::set_precision(self.precision.unwrap_or_default());
    }
}

/// How a run behaves around its training. The default: no signals armed, no curves, the
/// run's own compute, silent.
#[derive(Default)]
pub struct Options<'a> {
    /// Start afresh in a folder that holds a run already (its files are replaced).
    pub overwrite: bool,
    /// Arm Ctrl-C and SIGTERM to save the state and stop (a second one ends the process).
    /// A host with its own signal handling (Python) leaves this off and sets
    /// [`train::interrupt_flag`] itself.
    pub signals: bool,
    /// Draw `loss.png` and the selection metric's curve at each epoch end (with the
    /// `plot` feature).
    pub curves: bool,
    pub compute: Compute,
    /// Told of every step and epoch (a progress bar, a notebook's callback).
    pub observer: Option<&'a mut dyn Observer>,
    /// Receives remarks for the user; `None` drops them.
    pub note: Option<&'a mut dyn FnMut(String)>,
}

/// What a resumed run may change: its budgets, how often it saves, what it does on NaN.
#[derive(Clone, Copy, Debug, Default)]
pub struct Budgets {
    pub epochs: Option<usize>,
    pub max_tokens: Option<u64>,
    pub minutes: Option<f64>,
    pub save_minutes: Option<f64>,
    pub on_nan: Option<NanPolicy>,
}

impl Budgets {
    /// A resumed run's schedule: the epochs given or kept; the token and time budgets are
    /// the new invocation's alone (a finished run trains on without them).
    pub fn apply(&self, t: &mut TrainConfig) {
        t.epochs = self.epochs.unwrap_or(t.epochs);
        t.token_budget = self.max_tokens;
        t.time_budget_min = self.minutes;
        t.save_minutes = self.save_minutes.or(t.save_minutes);
        t.on_nan = self.on_nan.unwrap_or(t.on_nan);
    }
}

/// The end of a run: where it is, how far it got, and what `summary.json` holds.
#[derive(Clone, Debug)]
pub struct RunSummary {
    pub out: PathBuf,
    pub progress: Progress,
    /// `summary.json`: `epochs_done`, the units trained (`tokens` or `sentences`),
    /// `wall_s`, `stopped`, `params`, and the task's `valid_*` / `test_*` scores.
    pub values: serde_json::Value,
}

/// Trains `recipe` into the folder `out`, which must not hold a run unless
/// `opts.overwrite` is set.
pub fn start<R: Recipe>(recipe: R, out: &Path, opts: Options) -> Result<RunSummary> {
    recipe.validate()?;
    fit(recipe, out, None, opts)
}

/// Continues the run in `out` from its train state, keeping every option it was started
/// with except those `budgets` sets (and the threads or precision `opts.compute` names).
pub fn resume<R: Recipe>(out: &Path, budgets: &Budgets, opts: Options) -> Result<RunSummary> {
    let st = checkpoint::open(&train::state_path(out))?;
    let mut recipe: R = serde_json::from_value(st.meta["run"].clone())
        .map_err(|e| Error::format(st.path(), format!("bad run record: {e}")))?;
    budgets.apply(recipe.train_config());
    recipe.validate()?;
    fit(recipe, out, Some(st), opts)
}

/// The recipe a `config.json` written by a run of task `R::TASK` records.
pub fn read_config<R: Recipe>(path: &Path) -> Result<R> {
    let text = crate::text::read::read_text(path)?;
    let v: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| Error::format(path, format!("not JSON: {e}")))?;
    if v["task"] != R::TASK {
        return Err(Error::format(
            path,
            format!(
                "a config of task {}; this command needs \"{}\"",
                v["task"],
                R::TASK
            ),
        ));
    }
    serde_json::from_value(v["run"].clone())
        .map_err(|e| Error::format(path, format!("bad run record: {e}")))
}

/// Sets the compute, builds the task, claims the folder, trains the task with the one trainer,
/// scores the best checkpoint and writes summary.json.
fn fit<R: Recipe>(
    mut recipe: R,
    out: &Path,
    resume: Option<checkpoint::Loaded>,
    mut opts: Options,
) -> Result<RunSummary> {
    let cfg = recipe.train_config();
    // Precision and threads are the run's: given, or kept from the run resumed or rerun.
    let compute = Compute {
        threads: opts.compute.threads.or(cfg.threads),
        precision: Some(opts.compute.precision.unwrap_or(cfg.precision)),
    };
    compute.apply();
    cfg.precision = crate::engine::bf16::precision();
    cfg.threads = Some(crate::engine::ops::threads());
    let train_cfg = cfg.clone();
    let mut drop_note = |_: String| {};
    let note: &mut dyn FnMut(String) = match opts.note.as_mut() {
        Some(n) => *n,
        None => &mut drop_note,
    };
    // Bad input is refused before the folder is touched.
    let mut built = recipe.build(note)?;
    let lock = Folder::claim(out, resume.is_some(), opts.overwrite, opts.signals)?;
    let record =
        serde_json::to_value(&recipe).map_err(|e| Error::config(format!("run record: {e}")))?;
    train::write_json(&out.join(train::CONFIG_FILE), &run_record(R::TASK, &record))?;
    let task = R::task(&mut built);
    let metric = task.selection().metric;
    let unit = task.unit();
    let mut curves = train::Curves { metric };
    let mut observers: Vec<&mut dyn Observer> = Vec::new();
    if opts.curves {
        observers.push(&mut curves);
    }
    if let Some(o) = opts.observer.as_mut() {
        observers.push(*o);
    }
    let s = train::train(
        task,
        &train_cfg,
        out,
        &record,
        resume.as_ref(),
        &mut observers,
    )?;
    let params = crate::engine::param::Module::num_params(task.model());
    let p = s.progress;
    let mut values = serde_json::json!({
        "epochs_done": if p.step == 0 { p.epoch - 1 } else { p.epoch },
        "wall_s": p.wall_s, "stopped": p.stopped, "params": params,
    });
    values[format!("{unit}s")] = p.tokens.into();
    let scores = recipe.score_best(&mut built, &out.join(train::MODEL_FILE))?;
    values.as_object_mut().expect("an object").extend(scores);
    train::write_json(&out.join(SUMMARY_FILE), &values)?;
    drop(lock);
    Ok(RunSummary {
        out: out.to_path_buf(),
        progress: p,
        values,
    })
}

/// The run's summary, written at its end.
pub const SUMMARY_FILE: &str = "summary.json";

/// The record every run folder gets as config.json: the task's typed run, and where and
/// with what it ran.
pub fn run_record(task: &str, run: &serde_json::Value) -> serde_json::Value {
    serde_json::json!({
        "task": task,
        "rnnkit": env!("CARGO_PKG_VERSION"),
        "git": option_env!("RNNKIT_GIT"),
        "cpu": cpu_model(),
        "threads": crate::engine::ops::threads(),
        "run": run,
    })
}

/// The CPU's model name (/proc/cpuinfo), for run records and benchmarks.
pub fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// The files a run writes into its folder (replaced by `overwrite`).
const RUN_FILES: [&str; 4] = [
    train::STATE_FILE,
    train::MODEL_FILE,
    "metrics.jsonl",
    SUMMARY_FILE,
];

/// A run folder held by this process: `.rnnkit.lock` (with our pid) exists while it lives.
pub struct Folder(PathBuf);

impl Drop for Folder {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

impl Folder {
    /// Takes the run folder `out` for this process: refuses a folder that holds a run
    /// unless it is resumed or `overwrite` is set (which clears the old run's files),
    /// refuses one that another live rnnkit process is writing into, clears temporary
    /// files a killed run left, clears the interrupt flag, and with `signals` arms Ctrl-C
    /// and SIGTERM to save the state and stop.
    pub fn claim(out: &Path, resume: bool, overwrite: bool, signals: bool) -> Result<Folder> {
        std::fs::create_dir_all(out).map_err(|e| Error::io(out, e))?;
        let lock = out.join(".rnnkit.lock");
        let held = |pid: &str| {
            pid.trim()
                .parse::<u32>()
                .is_ok_and(|p| p != std::process::id() && Path::new(&format!("/proc/{p}")).exists())
        };
        match std::fs::read_to_string(&lock) {
            Ok(pid) if held(&pid) => {
                return Err(Error::Usage(format!(
                    "{}: another rnnkit (pid {}) is writing into this folder",
                    out.display(),
                    pid.trim()
                )))
            }
            _ => {}
        }
        std::fs::write(&lock, std::process::id().to_string()).map_err(|e| Error::io(&lock, e))?;
        let guard = Folder(lock);
        if !resume && out.join(train::STATE_FILE).exists() {
            if !overwrite {
                return Err(Error::Usage(format!(
                    "{}: holds a run already; continue it with --resume {0}, start afresh with --overwrite, or choose another --out",
                    out.display()
                )));
            }
            for f in RUN_FILES {
                let _ = std::fs::remove_file(out.join(f));
            }
        }
        if let Ok(rd) = std::fs::read_dir(out) {
            for e in rd.flatten() {
                let n = e.file_name().to_string_lossy().into_owned();
                if n.starts_with('.') && n.contains(".tmp") {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
        let flag = train::interrupt_flag();
        flag.store(false, std::sync::atomic::Ordering::Relaxed);
        if signals {
            arm_signals(&flag).map_err(|e| Error::io(out, e))?;
        }
        Ok(guard)
    }
}

/// Ctrl-C and SIGTERM set `flag` (the trainer saves and stops); a second one while it is
/// set ends the process with status 130. Armed once per process.
fn arm_signals(flag: &std::sync::Arc<std::sync::atomic::AtomicBool>) -> std::io::Result<()> {
    static ARMED: std::sync::Once = std::sync::Once::new();
    let mut res = Ok(());
    ARMED.call_once(|| {
        for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
            if let Err(e) = signal_hook::flag::register_conditional_shutdown(sig, 130, flag.clone())
                .and_then(|_| signal_hook::flag::register(sig, flag.clone()))
            {
                res = Err(e);
                return;
            }
        }
    });
    res
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_folder_with_a_run_is_refused_unless_resumed_or_overwritten() {
        let dir = std::env::temp_dir().join(format!("rnnkit-run-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(train::STATE_FILE), b"x").unwrap();
        std::fs::write(dir.join("summary.json"), b"{}").unwrap();
        std::fs::write(dir.join(".model.safetensors.tmp1"), b"x").unwrap();
        let e = Folder::claim(&dir, false, false, false).err().unwrap();
        assert!(e.to_string().contains("holds a run already"), "{e}");
        {
            let _held = Folder::claim(&dir, true, false, false).unwrap();
            assert!(dir.join(train::STATE_FILE).exists());
            assert!(!dir.join(".model.safetensors.tmp1").exists());
            assert!(dir.join(".rnnkit.lock").exists());
        }
        assert!(!dir.join(".rnnkit.lock").exists());
        let _held = Folder::claim(&dir, false, true, false).unwrap();
        assert!(!dir.join(train::STATE_FILE).exists());
        assert!(!dir.join("summary.json").exists());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
