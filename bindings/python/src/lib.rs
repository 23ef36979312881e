//! `rnnkit._rnnkit`: the Python package's native module, a thin shell over the rnnkit
//! library. Each verb converts its Python arguments, releases the GIL, calls the library
//! (with subnormals flushed as the CLI runs, and a panic turned into an exception), and
//! converts the result to Python objects and numpy arrays. Nothing here computes.

mod convert;
mod models;
mod train;

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::PyList;
use rnnkit::task::any;
use std::path::PathBuf;

pyo3::create_exception!(
    _rnnkit,
    RnnkitError,
    PyException,
    "An error rnnkit reports: bad input, a bad file or option, a failed run. Its message is the CLI's one-line reason."
);

/// The library's error as an `RnnkitError` with the CLI's one-line message.
pub(crate) fn err(e: rnnkit::error::Error) -> PyErr {
    RnnkitError::new_err(e.to_string().replace('\n', " "))
}

/// Runs `f` without the GIL on a thread of its own, with subnormals flushed as the CLI
/// runs, turning a panic into an `RnnkitError` (the interpreter goes on). Its own thread,
/// as the CLI's main thread is: its allocations come from an arena of their own rather
/// than the interpreter's, which a batch of Python results fragments (generation measured
/// 0.82 of the CLI's speed on the interpreter's thread after tagging a file), and its float
/// mode is rnnkit's alone.
pub(crate) fn compute<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> rnnkit::error::Result<T> + Send,
) -> PyResult<T> {
    let r = py.detach(|| {
        std::thread::scope(|s| {
            s.spawn(|| {
                rnnkit::engine::ops::flush_denormals();
                f()
            })
            .join()
        })
    });
    unwrap(r)
}

/// Like [`compute`], on the calling thread: training runs on the interpreter's main thread,
/// where its observer can see a pending Ctrl-C (`check_signals` works there only).
pub(crate) fn compute_here<T: Send>(
    py: Python<'_>,
    f: impl FnOnce() -> rnnkit::error::Result<T> + Send,
) -> PyResult<T> {
    let r = py.detach(|| {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rnnkit::engine::ops::with_flushed_denormals(f)
        }))
    });
    unwrap(r)
}

/// A result that may have panicked, as a Python result.
fn unwrap<T>(r: std::thread::Result<rnnkit::error::Result<T>>) -> PyResult<T> {
    r.map_err(|p| {
        let msg = p
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        RnnkitError::new_err(format!("internal error: {msg}"))
    })?
    .map_err(err)
}

/// Loads a checkpoint (`model.safetensors`) of any task and returns a `LanguageModel`,
/// `Tagger`, `Classifier` or `Translator`. The file is checked as the CLI checks it; a
/// bad one raises `RnnkitError` with the CLI's reason.
#[pyfunction]
fn load(py: Python<'_>, path: PathBuf) -> PyResult<Py<PyAny>> {
    let p = path.clone();
    let (model, meta) = compute(py, move || any::Model::load_with_meta(&p))?;
    models::wrap(py, model, meta, Some(path))
}

/// Reads a CoNLL-style column file (CoNLL-2003, WikiANN, CoNLL-U) with the CLI's reader:
/// returns `(tokens, tags)`, one list of str per sentence in each, tags as the file
/// writes them. Columns are tab-separated when a line holds a tab, else split at
/// whitespace; `token_col` and `tag_col` count from 0, or from the end when negative;
/// `-DOCSTART-` and comment lines are skipped. A malformed file raises `RnnkitError`
/// naming its file and line. `tagger.tag(tokens)` tags the sentences.
#[pyfunction]
#[pyo3(signature = (path, token_col = 0, tag_col = -1))]
fn read_conll<'py>(
    py: Python<'py>,
    path: PathBuf,
    token_col: isize,
    tag_col: isize,
) -> PyResult<(Bound<'py, PyList>, Bound<'py, PyList>)> {
    let cols = rnnkit::text::conll::Columns {
        token: token_col,
        tag: tag_col,
    };
    let sentences = compute_here(py, move || rnnkit::text::conll::read(&path, cols))?;
    convert::gc_paused(py, || {
        let mut tags = convert::Shared::new(py);
        let token_lists = sentences.iter().map(|s| PyList::new(py, &s.tokens));
        let token_lists = PyList::new(py, token_lists.collect::<PyResult<Vec<_>>>()?)?;
        let tag_lists = sentences
            .iter()
            .map(|s| PyList::new(py, s.tags.iter().map(|t| tags.get(t))));
        let tag_lists = PyList::new(py, tag_lists.collect::<PyResult<Vec<_>>>()?)?;
        Ok((token_lists, tag_lists))
    })
}

/// Builds a model from parameters under their PyTorch names (float32 arrays)
/// and the checkpoint metadata (`model.metadata`): writes them as a checkpoint to `path`
/// and loads it, so every shape is checked as for any file.
#[pyfunction]
#[pyo3(signature = (tensors, metadata, path))]
fn _from_tensors(
    py: Python<'_>,
    tensors: Vec<(String, numpy::PyReadonlyArrayDyn<'_, f32>)>,
    metadata: String,
    path: PathBuf,
) -> PyResult<Py<PyAny>> {
    let tensors: Vec<any::Tensor> = tensors
        .into_iter()
        .map(|(name, a)| {
            let view = a.as_array();
            let shape = view.shape().to_vec();
            let values = view.iter().copied().collect();
            (name, shape, values)
        })
        .collect();
    let meta: serde_json::Value = serde_json::from_str(&metadata)
        .map_err(|e| RnnkitError::new_err(format!("metadata: not JSON: {e}")))?;
    let p = path.clone();
    let m2 = meta.clone();
    let model = compute(py, move || any::from_state_dict(&tensors, &m2, &p))?;
    models::wrap(py, model, meta, Some(path))
}

/// Sets the threads the products run on (default: every core), for every model.
#[pyfunction]
fn set_threads(n: usize) -> PyResult<()> {
    if !(1..=1024).contains(&n) {
        return Err(RnnkitError::new_err(format!(
            "threads: expected a count from 1 to 1024, got {n}"
        )));
    }
    rnnkit::engine::ops::set_threads(n);
    Ok(())
}

/// The threads the products run on.
#[pyfunction]
fn threads() -> usize {
    rnnkit::engine::ops::threads()
}

/// Sets the number format of the matrix products: "f32" or "bf16" (as `--precision`).
#[pyfunction]
fn set_precision(precision: &str) -> PyResult<()> {
    let p = precision
        .parse::<rnnkit::engine::bf16::Precision>()
        .map_err(|e| RnnkitError::new_err(format!("precision: {e}")))?;
    rnnkit::engine::bf16::set_precision(p);
    Ok(())
}

#[pymodule]
fn _rnnkit(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("RnnkitError", m.py().get_type::<RnnkitError>())?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_function(wrap_pyfunction!(load, m)?)?;
    m.add_function(wrap_pyfunction!(read_conll, m)?)?;
    m.add_function(wrap_pyfunction!(_from_tensors, m)?)?;
    m.add_function(wrap_pyfunction!(set_threads, m)?)?;
    m.add_function(wrap_pyfunction!(threads, m)?)?;
    m.add_function(wrap_pyfunction!(set_precision, m)?)?;
    models::register(m)?;
    train::register(m)?;
    Ok(())
}
