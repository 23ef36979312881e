//! Rust values to Python ones: flat row-major buffers to shaped numpy arrays, JSON
//! values to dicts, traces and tagged sentences to dicts of lists and arrays; and Python
//! arguments to Rust ones (a text or a batch of texts).

use numpy::{IntoPyArray, PyArrayMethods};
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyList, PyString, PyTuple};
use rnnkit::task::trace::{TaskTrace, Trace};

/// A flat buffer as a numpy array of `shape` (row-major, as every library buffer is).
pub fn array<'py>(py: Python<'py>, v: Vec<f32>, shape: &[usize]) -> PyResult<Bound<'py, PyAny>> {
    Ok(v.into_pyarray(py).reshape(shape)?.into_any())
}

/// A JSON value as Python objects (through the `json` module: dicts, lists, numbers).
pub fn json<'py>(py: Python<'py>, v: &serde_json::Value) -> PyResult<Bound<'py, PyAny>> {
    py.import("json")?.call_method1("loads", (v.to_string(),))
}

/// A text or a batch of texts: `(texts, one)`, `one` when a single `str` was given (its
/// result is then returned unwrapped). A batch must be a non-empty sequence of `str`.
pub fn texts(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<(Vec<String>, bool)> {
    if let Ok(s) = obj.cast::<PyString>() {
        return Ok((vec![s.to_cow()?.into_owned()], true));
    }
    let v: Vec<String> = obj.extract().map_err(|_| {
        PyTypeError::new_err(format!(
            "{what}: expected a str or a list of str, got {}",
            type_name(obj)
        ))
    })?;
    if v.is_empty() {
        return Err(crate::RnnkitError::new_err(format!(
            "{what}: an empty list (give at least one)"
        )));
    }
    Ok((v, false))
}

pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// Runs `build` with Python's cyclic garbage collector paused (if it was running), for
/// code that makes tens of thousands of dicts, lists and tuples at once, as tagging a
/// file does: each 700 of them would otherwise start a collection, and some of those
/// walk every object the program holds, while none of the new ones can be garbage yet.
pub fn gc_paused<'py, R>(py: Python<'py>, build: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
    let gc = py.import(intern!(py, "gc"))?;
    let was = gc.call_method0(intern!(py, "isenabled"))?.is_truthy()?;
    if was {
        gc.call_method0(intern!(py, "disable"))?;
    }
    let r = build();
    if was {
        gc.call_method0(intern!(py, "enable"))?;
    }
    r
}

/// One Python str per distinct value, for values that repeat (tags, entity types): a
/// file's 50,000 tags become a dozen strings, shared, rather than 50,000 of them.
pub struct Shared<'py> {
    py: Python<'py>,
    strs: std::collections::HashMap<String, Bound<'py, PyString>>,
}

impl<'py> Shared<'py> {
    pub fn new(py: Python<'py>) -> Self {
        Shared {
            py,
            strs: std::collections::HashMap::new(),
        }
    }

    /// The str for `s`, made the first time it is asked for.
    pub fn get(&mut self, s: &str) -> Bound<'py, PyString> {
        if let Some(v) = self.strs.get(s) {
            return v.clone();
        }
        let v = PyString::new(self.py, s);
        self.strs.insert(s.to_string(), v.clone());
        v
    }
}

/// `[(start, end), ...]` as a list of tuples of two ints, each untracked by the cyclic
/// garbage collector, as CPython itself untracks such a tuple at its first collection: it
/// can be part of no cycle, and the collector would otherwise walk a file's 50,000 of them.
pub fn spans<'py>(py: Python<'py>, spans: &[(usize, usize)]) -> PyResult<Bound<'py, PyList>> {
    let items = spans
        .iter()
        .map(|&(a, b)| {
            let t = PyTuple::new(py, [a, b])?;
            // SAFETY: `t` is a live tuple owned here; untracking only removes it from the
            // collector's lists (CPython checks that it is tracked first).
            unsafe { pyo3::ffi::PyObject_GC_UnTrack(t.as_ptr().cast()) };
            Ok(t)
        })
        .collect::<PyResult<Vec<_>>>()?;
    PyList::new(py, items)
}

/// One result, or the list of them when a batch was given.
pub fn one_or_list<'py>(
    py: Python<'py>,
    mut items: Vec<Bound<'py, PyAny>>,
    one: bool,
) -> PyResult<Bound<'py, PyAny>> {
    if one && items.len() == 1 {
        return Ok(items.pop().expect("one item"));
    }
    Ok(PyList::new(py, items)?.into_any())
}

/// A [`Trace`] as a dict: `tokens [T]`, `cell`, `hidden`, `gate_names`, `layers` (one dict
/// per layer and direction: `layer`, `reverse`, `h [T, H]`, `c [T, H]` or None, `gates
/// [T, G, H]` or None), `output [T, D·H]`, and `task`, the task's values per token.
pub fn trace<'py>(py: Python<'py>, t: Trace) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    let (tn, h) = (t.stack.t, t.stack.hidden);
    d.set_item("tokens", t.tokens)?;
    d.set_item("cell", json(py, &serde_json::json!(t.stack.cell))?)?;
    d.set_item("hidden", h)?;
    let g = t.gate_names.len();
    d.set_item("gate_names", t.gate_names)?;
    let layers = PyList::empty(py);
    for dir in t.stack.dirs {
        let l = PyDict::new(py);
        l.set_item("layer", dir.layer)?;
        l.set_item("reverse", dir.reverse)?;
        l.set_item("h", array(py, dir.h, &[tn, h])?)?;
        let c = (!dir.c.is_empty())
            .then(|| array(py, dir.c, &[tn, h]))
            .transpose()?;
        l.set_item("c", c)?;
        let gates = (!dir.gates.is_empty())
            .then(|| array(py, dir.gates, &[tn, g, h]))
            .transpose()?;
        l.set_item("gates", gates)?;
        layers.append(l)?;
    }
    d.set_item("layers", layers)?;
    let width = t.stack.output.len().checked_div(tn).unwrap_or(0);
    d.set_item("output", array(py, t.stack.output, &[tn, width])?)?;
    d.set_item("task", task(py, t.task, tn)?)?;
    Ok(d)
}

/// The task's part of a trace, its arrays shaped.
fn task<'py>(py: Python<'py>, t: TaskTrace, tn: usize) -> PyResult<Bound<'py, PyDict>> {
    let d = PyDict::new(py);
    match t {
        TaskTrace::NextTokens { next } => {
            d.set_item("kind", "next_tokens")?;
            let k = next.first().map_or(0, |r| r.len());
            let mut probs = Vec::with_capacity(tn * k);
            let mut tokens = Vec::with_capacity(tn);
            for row in next {
                tokens.push(row.iter().map(|(s, _)| s.clone()).collect::<Vec<_>>());
                probs.extend(row.iter().map(|(_, p)| *p));
            }
            d.set_item("next_tokens", tokens)?;
            d.set_item("next_probs", array(py, probs, &[tn, k])?)?;
        }
        TaskTrace::TagMarginals {
            labels,
            marginals,
            predicted,
        } => {
            d.set_item("kind", "tag_marginals")?;
            let k = labels.len();
            d.set_item("labels", labels)?;
            d.set_item("marginals", array(py, marginals, &[tn, k])?)?;
            d.set_item("predicted", predicted)?;
        }
        TaskTrace::Pooling {
            pooling,
            weights,
            labels,
            probs,
        } => {
            d.set_item("kind", "pooling")?;
            d.set_item("pooling", pooling)?;
            let n = weights.len();
            d.set_item("weights", array(py, weights, &[n])?)?;
            d.set_item("labels", labels)?;
            let c = probs.len();
            d.set_item("probs", array(py, probs, &[c])?)?;
        }
        TaskTrace::Attention {
            translation,
            target,
            attention,
        } => {
            d.set_item("kind", "attention")?;
            d.set_item("translation", translation)?;
            let u = target.len();
            d.set_item("target", target)?;
            d.set_item("attention", array(py, attention, &[u, tn])?)?;
        }
    }
    Ok(d)
}
