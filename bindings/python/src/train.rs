//! Training from Python: the CLI's `train` options, parsed by the library as the CLI
//! parses them, run by the library's run, with progress reported to a Python callback and
//! Ctrl-C (KeyboardInterrupt) saving the state and stopping as it does in the CLI.

use crate::{compute_here, convert};
use pyo3::exceptions::PyKeyboardInterrupt;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use rnnkit::error::Error;
use rnnkit::run::{self, RunSummary};
use rnnkit::task::options::{self, TrainOptions};
use rnnkit::task::{classify, lm, tag, translate};
use std::path::Path;
use std::sync::atomic::Ordering;

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_train, m)?)?;
    Ok(())
}

/// Tells a Python callback of the run's progress, and turns a pending Ctrl-C (or an
/// exception the callback raised) into the trainer's interrupt: it saves and stops.
struct PyObserver {
    callback: Option<Py<PyAny>>,
    total: u64,
    done: u64,
    /// The Python exception that stopped the run (KeyboardInterrupt or the callback's).
    error: Option<PyErr>,
}

impl PyObserver {
    fn tell(&mut self, event: &str, message: Option<&str>) {
        if self.error.is_some() {
            return;
        }
        let r = Python::attach(|py| -> PyResult<()> {
            py.check_signals()?;
            if let Some(cb) = &self.callback {
                let d = PyDict::new(py);
                d.set_item("event", event)?;
                d.set_item("step", self.done)?;
                d.set_item("total", self.total)?;
                d.set_item("message", message)?;
                cb.call1(py, (d,))?;
            }
            Ok(())
        });
        if let Err(e) = r {
            self.error = Some(e);
            rnnkit::train::interrupt_flag().store(true, Ordering::Relaxed);
        }
    }
}

impl rnnkit::train::Observer for PyObserver {
    fn start(&mut self, total: u64, done: u64) {
        (self.total, self.done) = (total, done);
        self.tell("start", None);
    }
    fn step(&mut self, msg: Option<&str>) {
        self.done += 1;
        self.tell("step", msg);
    }
    fn epoch_end(&mut self, out: &Path) {
        self.tell("epoch", Some(&out.display().to_string()));
    }
    fn finish(&mut self) {
        self.tell("finish", None);
    }
}

/// Parses `args` as `rnnkit <task> train` does and runs it.
fn run_task<A: TrainOptions + Send>(
    name: &'static str,
    args: &[String],
    observer: &mut PyObserver,
    curves: bool,
) -> rnnkit::error::Result<RunSummary> {
    let a: A = options::parse(name, args)?;
    let opts = run::Options {
        curves,
        observer: Some(observer),
        ..Default::default()
    };
    options::train(&a, opts)
}

/// Trains a model of `task` ("lm", "tag", "classify", "translate") with the CLI's `train`
/// options as arguments (`rnnkit.train` builds them from keyword arguments); returns the
/// run's summary (summary.json) with `out`, the run folder.
#[pyfunction]
#[pyo3(signature = (task, args, callback=None, curves=true))]
fn _train<'py>(
    py: Python<'py>,
    task: &str,
    args: Vec<String>,
    callback: Option<Py<PyAny>>,
    curves: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let mut obs = PyObserver {
        callback,
        total: 0,
        done: 0,
        error: None,
    };
    let task = task.to_string();
    let obs_ref = &mut obs;
    let r = compute_here(py, move || match task.as_str() {
        "lm" => run_task::<lm::options::TrainArgs>("lm train", &args, obs_ref, curves),
        "tag" => run_task::<tag::options::TrainArgs>("tag train", &args, obs_ref, curves),
        "classify" => {
            run_task::<classify::options::TrainArgs>("classify train", &args, obs_ref, curves)
        }
        "translate" => {
            run_task::<translate::options::TrainArgs>("translate train", &args, obs_ref, curves)
        }
        other => Err(Error::Usage(format!(
            "task: expected lm, tag, classify or translate, got {other:?}"
        ))),
    });
    if let Some(e) = obs.error.take() {
        // The run saved its state and stopped; KeyboardInterrupt says how to go on.
        if e.is_instance_of::<PyKeyboardInterrupt>(py) {
            let msg = match &r {
                Err(e) => e.to_string(),
                Ok(s) => format!("interrupted; the run in {} is saved", s.out.display()),
            };
            return Err(PyKeyboardInterrupt::new_err(msg));
        }
        return Err(e);
    }
    let s = r?;
    let d = convert::json(py, &s.values)?;
    d.set_item("out", s.out)?;
    Ok(d)
}
