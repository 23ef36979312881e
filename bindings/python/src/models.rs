//! The model classes: `Model` (what every task shares: metadata, state dict, trace,
//! pickling) and one subclass per task with its verbs. Each holds the library's
//! [`any::Model`] behind a mutex; a verb locks it only while it computes, without the GIL.

use crate::convert::{self, array, one_or_list, texts};
use crate::{compute, RnnkitError};
use numpy::IntoPyArray;
use pyo3::exceptions::PyTypeError;
use pyo3::intern;
use pyo3::prelude::*;
use pyo3::types::{IntoPyDict, PyDict, PyList, PySequence, PyString};
use rnnkit::error::{Error, Result};
use rnnkit::task::any;
use rnnkit::task::lm::SamplingOptions;
use rnnkit::task::translate::DecodingOptions;
use std::path::PathBuf;
use std::sync::{mpsc, Arc, Mutex};

type Shared = Arc<Mutex<any::Model>>;

/// What `__reduce__` returns: `rnnkit._rebuild` and its arguments.
type Reduced<'py> = (Bound<'py, PyAny>, (Bound<'py, PyDict>, String));

/// What every model has: the task, the checkpoint's metadata, its parameters under their
/// PyTorch names, and `trace`.
#[pyclass(subclass, frozen, module = "rnnkit")]
pub struct Model {
    inner: Shared,
    meta: serde_json::Value,
    path: Option<PathBuf>,
    task: &'static str,
}

/// Locks the model (a panic in an earlier call leaves it usable: each verb starts from
/// the weights, which no verb changes).
fn lock(m: &Shared) -> std::sync::MutexGuard<'_, any::Model> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A loaded model as an instance of its task's class.
pub fn wrap(
    py: Python<'_>,
    model: any::Model,
    meta: serde_json::Value,
    path: Option<PathBuf>,
) -> PyResult<Py<PyAny>> {
    let task = model.task();
    let base = Model {
        inner: Arc::new(Mutex::new(model)),
        meta,
        path,
        task,
    };
    let init = PyClassInitializer::from(base);
    Ok(match task {
        "lm" => Bound::new(py, init.add_subclass(LanguageModel))?.into_any(),
        "tag" => Bound::new(py, init.add_subclass(Tagger))?.into_any(),
        "classify" => Bound::new(py, init.add_subclass(Classifier))?.into_any(),
        _ => Bound::new(py, init.add_subclass(Translator))?.into_any(),
    }
    .unbind())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Model>()?;
    m.add_class::<LanguageModel>()?;
    m.add_class::<Tagger>()?;
    m.add_class::<Classifier>()?;
    m.add_class::<Translator>()?;
    m.add_class::<GenerateStream>()?;
    Ok(())
}

/// Runs `f` on the model when it is of the task `V` matches, without the GIL.
macro_rules! with {
    ($py:expr, $base:expr, $variant:ident, |$m:ident| $body:expr) => {{
        let inner = $base.inner.clone();
        compute($py, move || match &mut *lock(&inner) {
            any::Model::$variant($m) => $body,
            _ => Err(Error::Usage("not a model of this task".into())),
        })
    }};
}

#[pymethods]
impl Model {
    /// The task: "lm", "tag", "classify" or "translate".
    #[getter]
    fn task(&self) -> &'static str {
        self.task
    }

    /// The checkpoint this model was loaded from (None when built from a state dict in
    /// memory).
    #[getter]
    fn path(&self) -> Option<PathBuf> {
        self.path.clone()
    }

    /// The checkpoint's metadata: `task`, `model` (the config) and `vocabs`.
    #[getter]
    fn metadata<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::json(py, &self.meta)
    }

    /// The model's config (sizes, cell, layers, ...), as the checkpoint records it.
    #[getter]
    fn config<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        convert::json(py, &self.meta["model"])
    }

    /// Every parameter as a float32 numpy array under its PyTorch name
    /// (docs/checkpoint-format.md), for `torch_module.load_state_dict`.
    fn state_dict<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let inner = self.inner.clone();
        let sd = compute(py, move || Ok(lock(&inner).state_dict()))?;
        let d = PyDict::new(py);
        for (name, shape, w) in sd {
            d.set_item(name, array(py, w, &shape)?)?;
        }
        Ok(d)
    }

    /// Looks inside the model reading `text`: per token, every layer's and direction's
    /// hidden state `h [T, H]`, LSTM cell state `c [T, H]`, gate activations
    /// `gates [T, G, H]`, and what the task computes there (`task`).
    fn trace<'py>(&self, py: Python<'py>, text: &str) -> PyResult<Bound<'py, PyDict>> {
        let inner = self.inner.clone();
        let text = text.to_string();
        let t = compute(py, move || lock(&inner).trace(&text))?;
        convert::trace(py, t)
    }

    /// Pickles as the parameters and metadata, so that a worker in another process or on
    /// another machine rebuilds the same model without the checkpoint file.
    fn __reduce__<'py>(&self, py: Python<'py>) -> PyResult<Reduced<'py>> {
        let rebuild = py.import("rnnkit")?.getattr("_rebuild")?;
        Ok((rebuild, (self.state_dict(py)?, self.meta.to_string())))
    }

    fn __repr__(&self) -> String {
        let m = &self.meta["model"];
        let rnn = if m["rnn"].is_object() {
            &m["rnn"]
        } else {
            &m["enc"]
        };
        format!(
            "<rnnkit {} model: {} x{} hidden {}{}>",
            self.task,
            rnn["cell"].as_str().unwrap_or("?"),
            rnn["layers"],
            rnn["hidden"],
            self.path
                .as_ref()
                .map(|p| format!(" from {}", p.display()))
                .unwrap_or_default()
        )
    }
}

/// A language model: generate text, stream it, score texts.
#[pyclass(extends = Model, frozen, module = "rnnkit")]
pub struct LanguageModel;

#[pymethods]
impl LanguageModel {
    /// Continues each prompt by up to `max_tokens` tokens (default 200), sampled with
    /// `temperature` (1.0), `top_k` (0: all), `top_p` (1.0) or `greedy`, from a generator
    /// seeded with `seed` (1): the text the CLI's `lm generate` prints for the same
    /// options. A str gives a str, a list a list.
    #[pyo3(signature = (prompts, max_tokens=None, temperature=None, top_k=None, top_p=None, greedy=false, seed=None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, as the CLI's options
    fn generate<'py>(
        slf: &Bound<'py, Self>,
        prompts: &Bound<'py, PyAny>,
        max_tokens: Option<usize>,
        temperature: Option<f32>,
        top_k: Option<usize>,
        top_p: Option<f32>,
        greedy: bool,
        seed: Option<u64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let (prompts, one) = texts(prompts, "prompts")?;
        let s = SamplingOptions {
            temperature,
            top_k,
            top_p,
            greedy,
        }
        .resolve()
        .map_err(crate::err)?;
        let n = max_tokens.unwrap_or(rnnkit::task::lm::MAX_TOKENS);
        let seed = seed.unwrap_or(rnnkit::task::lm::SEED);
        let base = slf.as_super().get();
        let out = with!(py, base, Lm, |m| prompts
            .iter()
            .map(|p| m.generate(p, n, &s, seed, |_| true))
            .collect::<Result<Vec<String>>>())?;
        let items = out
            .into_iter()
            .map(|t| PyString::new(py, &t).into_any())
            .collect();
        one_or_list(py, items, one)
    }

    /// Like `generate` for one prompt, yielding each token's text as it is drawn.
    /// Stopping the iteration early (break, or dropping it) stops generation.
    #[pyo3(signature = (prompt, max_tokens=None, temperature=None, top_k=None, top_p=None, greedy=false, seed=None))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, as the CLI's options
    fn stream(
        slf: &Bound<'_, Self>,
        prompt: String,
        max_tokens: Option<usize>,
        temperature: Option<f32>,
        top_k: Option<usize>,
        top_p: Option<f32>,
        greedy: bool,
        seed: Option<u64>,
    ) -> PyResult<GenerateStream> {
        let s = SamplingOptions {
            temperature,
            top_k,
            top_p,
            greedy,
        }
        .resolve()
        .map_err(crate::err)?;
        let n = max_tokens.unwrap_or(rnnkit::task::lm::MAX_TOKENS);
        let seed = seed.unwrap_or(rnnkit::task::lm::SEED);
        let inner = slf.as_super().get().inner.clone();
        let (tx, rx) = mpsc::sync_channel::<std::result::Result<String, String>>(256);
        std::thread::spawn(move || {
            let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                rnnkit::engine::ops::with_flushed_denormals(|| match &mut *lock(&inner) {
                    any::Model::Lm(m) => m
                        .generate(&prompt, n, &s, seed, |piece| {
                            tx.send(Ok(piece.to_string())).is_ok()
                        })
                        .map(|_| ()),
                    _ => Err(Error::Usage("not a language model".into())),
                })
            }));
            let e = match r {
                Ok(Ok(())) => return,
                Ok(Err(e)) => e.to_string(),
                Err(_) => "internal error: generation panicked".to_string(),
            };
            let _ = tx.send(Err(e));
        });
        Ok(GenerateStream { rx: Mutex::new(rx) })
    }

    /// Each text's mean negative log-likelihood per token in nats (its tokens after the
    /// first, read from a zero state), as a float64 array `[N]` (a float for one str).
    fn score<'py>(
        slf: &Bound<'py, Self>,
        texts: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let (t, one) = convert::texts(texts, "texts")?;
        let base = slf.as_super().get();
        let scores = with!(py, base, Lm, |m| {
            let refs: Vec<&str> = t.iter().map(|s| s.as_str()).collect();
            m.score(&refs)
        })?;
        let losses: Vec<f64> = scores.iter().map(|s| s.loss).collect();
        if one {
            return Ok(losses[0].into_pyobject(py)?.into_any());
        }
        Ok(losses.into_pyarray(py).into_any())
    }
}

/// Tokens of a streamed generation, as `LanguageModel.stream` yields them.
#[pyclass(module = "rnnkit", frozen)]
pub struct GenerateStream {
    rx: Mutex<mpsc::Receiver<std::result::Result<String, String>>>,
}

#[pymethods]
impl GenerateStream {
    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    /// The next token's text; waits without the GIL, and lets Ctrl-C through.
    fn __next__(&self, py: Python<'_>) -> PyResult<Option<String>> {
        loop {
            let r = py.detach(|| {
                self.rx
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .recv_timeout(std::time::Duration::from_millis(100))
            });
            match r {
                Ok(Ok(piece)) => return Ok(Some(piece)),
                Ok(Err(e)) => return Err(RnnkitError::new_err(e)),
                Err(mpsc::RecvTimeoutError::Timeout) => py.check_signals()?,
                Err(mpsc::RecvTimeoutError::Disconnected) => return Ok(None),
            }
        }
    }
}

/// A named-entity tagger.
#[pyclass(extends = Model, frozen, module = "rnnkit")]
pub struct Tagger;

#[pymethods]
impl Tagger {
    /// Tags a text, a list of texts (split into words as `tag predict --text` splits
    /// them), or a list of token lists. Each result is a dict: `tokens`, `offsets`
    /// (character spans), `tags` (IOB2), `probs` (each tag's probability, float32 `[T]`)
    /// and `entities` (dicts with `type`, `start`, `end` (tokens), `char_start`,
    /// `char_end`, `text`, `prob`). `probs=False` skips the probabilities (a second
    /// pass, as the CLI's `tag predict` without `--probs`); `probs` is then an empty
    /// read-only array, one shared by every result, and each entity's `prob` None.
    #[pyo3(signature = (inputs, probs=true))]
    fn tag<'py>(
        slf: &Bound<'py, Self>,
        inputs: &Bound<'py, PyAny>,
        probs: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let base = slf.as_super().get();
        let tokens: Option<Vec<Vec<String>>> = if inputs.is_instance_of::<PyList>()
            && inputs
                .cast::<PyList>()?
                .get_item(0)
                .is_ok_and(|f| !f.is_instance_of::<PyString>())
        {
            Some(inputs.extract().map_err(|_| {
                PyTypeError::new_err(
                    "inputs: expected a str, a list of str, or a list of lists of str",
                )
            })?)
        } else {
            None
        };
        let given_tokens = tokens.is_some();
        let (tagged, one) = match tokens {
            Some(sentences) => (
                with!(py, base, Tag, |m| {
                    m.probs = probs;
                    m.tag_tokens(&sentences)
                })?,
                false,
            ),
            None => {
                let (t, one) = texts(inputs, "inputs")?;
                let tagged = with!(py, base, Tag, |m| {
                    m.probs = probs;
                    let refs: Vec<&str> = t.iter().map(|s| s.as_str()).collect();
                    m.tag_texts(&refs)
                })?;
                (tagged, one)
            }
        };
        // Tags and entity types repeat: one Python str each, shared; the keys are interned.
        let mut names = convert::Shared::new(py);
        // Without probabilities every sentence shares one empty read-only array, rather
        // than making a file's 3,453 of them.
        let no_probs = if probs {
            None
        } else {
            let a = array(py, Vec::new(), &[0])?;
            a.call_method("setflags", (), Some(&[("write", false)].into_py_dict(py)?))?;
            Some(a)
        };
        let items = convert::gc_paused(py, || {
            let mut items = Vec::with_capacity(tagged.len());
            for (i, t) in tagged.into_iter().enumerate() {
                let d = PyDict::new(py);
                // Token lists come back as new lists of the caller's own str objects (the
                // tagger keeps tokens as given), not as copies of them.
                if given_tokens {
                    d.set_item(
                        intern!(py, "tokens"),
                        inputs.get_item(i)?.cast::<PySequence>()?.to_list()?,
                    )?;
                } else {
                    d.set_item(intern!(py, "tokens"), t.tokens)?;
                }
                d.set_item(intern!(py, "offsets"), convert::spans(py, &t.offsets)?)?;
                let tags = PyList::new(py, t.tags.iter().map(|t| names.get(t)))?;
                d.set_item(intern!(py, "tags"), tags)?;
                match &no_probs {
                    Some(empty) => d.set_item(intern!(py, "probs"), empty)?,
                    None => {
                        let n = t.probs.len();
                        d.set_item(intern!(py, "probs"), array(py, t.probs, &[n])?)?
                    }
                }
                let ents = PyList::empty(py);
                for e in t.entities {
                    let ed = PyDict::new(py);
                    ed.set_item(intern!(py, "type"), names.get(&e.kind))?;
                    ed.set_item(intern!(py, "start"), e.start)?;
                    ed.set_item(intern!(py, "end"), e.end)?;
                    ed.set_item(intern!(py, "char_start"), e.char_start)?;
                    ed.set_item(intern!(py, "char_end"), e.char_end)?;
                    ed.set_item(intern!(py, "text"), e.text)?;
                    ed.set_item(intern!(py, "prob"), e.prob)?;
                    ents.append(ed)?;
                }
                d.set_item(intern!(py, "entities"), ents)?;
                items.push(d.into_any());
            }
            Ok(items)
        })?;
        one_or_list(py, items, one)
    }

    /// The tag names (IOB2 or the scheme the model was trained with).
    #[getter]
    fn labels(slf: &Bound<'_, Self>) -> PyResult<Vec<String>> {
        let py = slf.py();
        let base = slf.as_super().get();
        with!(py, base, Tag, |m| Ok(m.vocabs.labels.tokens.clone()))
    }
}

/// A sentence classifier.
#[pyclass(extends = Model, frozen, module = "rnnkit")]
pub struct Classifier;

#[pymethods]
impl Classifier {
    /// Labels texts: returns `(labels, probs)`, the most likely class of each text and
    /// every class's probability as float32 `[N, C]` (columns in the order of `classes`);
    /// for one str, `(label, probs [C])`.
    fn classify<'py>(
        slf: &Bound<'py, Self>,
        texts: &Bound<'py, PyAny>,
    ) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
        let py = slf.py();
        let (t, one) = convert::texts(texts, "texts")?;
        let base = slf.as_super().get();
        let preds = with!(py, base, Classify, |m| {
            let refs: Vec<&str> = t.iter().map(|s| s.as_str()).collect();
            Ok(m.predict(&refs))
        })?;
        let c = preds.first().map_or(0, |p| p.probs.len());
        let n = preds.len();
        // A handful of classes: one Python str each, shared by every text's label.
        let mut names = convert::Shared::new(py);
        let labels: Vec<_> = preds.iter().map(|p| names.get(&p.label)).collect();
        let probs: Vec<f32> = preds.into_iter().flat_map(|p| p.probs).collect();
        if one {
            return Ok((labels[0].clone().into_any(), array(py, probs, &[c])?));
        }
        Ok((
            PyList::new(py, labels)?.into_any(),
            array(py, probs, &[n, c])?,
        ))
    }

    /// The class names, in the order of the probabilities' columns.
    #[getter]
    fn classes(slf: &Bound<'_, Self>) -> PyResult<Vec<String>> {
        let py = slf.py();
        let base = slf.as_super().get();
        with!(py, base, Classify, |m| Ok(m.labels.tokens.clone()))
    }
}

/// A translator (sequence to sequence with attention).
#[pyclass(extends = Model, frozen, module = "rnnkit")]
pub struct Translator;

#[pymethods]
impl Translator {
    /// Translates sentences with greedy decoding (`beam=1`) or beam search (default 5),
    /// ranking by log p / length**`alpha` (1.0), at most `max_len_a`·|x| + `max_len_b`
    /// tokens (1.5, 10), no end before `min_len` (0): the CLI's `translate predict`
    /// options. Returns the best translation of each (a str for one str); with
    /// `n_best` > 1 or `attention=True`, a dict per sentence: `source_tokens` and
    /// `hypotheses` (dicts with `translation`, `tokens`, `score`, `log_prob` and, on
    /// request, `attention` float32 `[U, S]`). `replace_unk` replaces each `<unk>` by the
    /// source word it attends to most (the CLI's `--replace-unk`).
    #[pyo3(signature = (sentences, beam=None, alpha=None, max_len_a=None, max_len_b=None, min_len=None, n_best=1, attention=false, replace_unk=false))]
    #[allow(clippy::too_many_arguments)] // Python keyword arguments, as the CLI's options
    fn translate<'py>(
        slf: &Bound<'py, Self>,
        sentences: &Bound<'py, PyAny>,
        beam: Option<usize>,
        alpha: Option<f32>,
        max_len_a: Option<f32>,
        max_len_b: Option<usize>,
        min_len: Option<usize>,
        n_best: usize,
        attention: bool,
        replace_unk: bool,
    ) -> PyResult<Bound<'py, PyAny>> {
        let py = slf.py();
        let (t, one) = texts(sentences, "sentences")?;
        let d = DecodingOptions {
            beam,
            alpha,
            max_len_a,
            max_len_b,
            min_len,
            n_best: Some(n_best),
            attention,
            replace_unk,
        }
        .resolve()
        .map_err(crate::err)?;
        let base = slf.as_super().get();
        let out = with!(py, base, Translate, |m| {
            let refs: Vec<&str> = t.iter().map(|s| s.as_str()).collect();
            m.translate_texts(&refs, &d)
        })?;
        let detailed = n_best > 1 || attention;
        let mut items = Vec::with_capacity(out.len());
        for tr in out {
            if !detailed {
                let best = tr
                    .hypotheses
                    .into_iter()
                    .next()
                    .map(|h| h.translation)
                    .unwrap_or_default();
                items.push(PyString::new(py, &best).into_any());
                continue;
            }
            let s = tr.source_tokens.len();
            let d = PyDict::new(py);
            d.set_item("source_tokens", tr.source_tokens)?;
            let hyps = PyList::empty(py);
            for h in tr.hypotheses {
                let hd = PyDict::new(py);
                hd.set_item("translation", h.translation)?;
                hd.set_item("tokens", h.tokens)?;
                hd.set_item("score", h.score)?;
                hd.set_item("log_prob", h.log_prob)?;
                if attention {
                    let u = h.attention.len();
                    let flat: Vec<f32> = h.attention.into_iter().flatten().collect();
                    hd.set_item("attention", array(py, flat, &[u, s])?)?;
                }
                hyps.append(hd)?;
            }
            d.set_item("hypotheses", hyps)?;
            items.push(d.into_any());
        }
        one_or_list(py, items, one)
    }
}
