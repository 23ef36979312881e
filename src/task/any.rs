//! Any task's model, loaded by the task its checkpoint names ([`Model::load`]): what a
//! program that serves every task holds (the Python package, the server). Each variant is
//! the task's own `Loaded` with its verbs; this type adds what every task shares: the
//! checkpoint's metadata, the parameters under their PyTorch names
//! ([`Model::state_dict`]) and a trace with each task's defaults.

use super::{classify, lm, tag, translate};
use crate::checkpoint;
use crate::engine::param::Module;
use crate::error::{Error, Result};
use std::path::Path;

/// A loaded model of any task.
/// (Boxed: a model's size is in its heap buffers; the boxes keep the variants equal.)
pub enum Model {
    Lm(Box<lm::Loaded>),
    Tag(Box<tag::Loaded>),
    Classify(Box<classify::Loaded>),
    Translate(Box<translate::Loaded>),
}

/// One parameter: its PyTorch name (docs/checkpoint-format.md), shape and f32 values in
/// row-major order.
pub type Tensor = (String, Vec<usize>, Vec<f32>);

/// Next tokens a language model's trace lists at each token unless told otherwise.
pub const TRACE_TOP_K: usize = 10;

impl Model {
    /// Loads a checkpoint of any task, checked as each task's loader checks its own.
    pub fn load(path: &Path) -> Result<Model> {
        Ok(Model::load_with_meta(path)?.0)
    }

    /// [`Model::load`], with the checkpoint's metadata ([`checkpoint::read_meta`]).
    pub fn load_with_meta(path: &Path) -> Result<(Model, serde_json::Value)> {
        let meta = checkpoint::read_meta(path)?;
        let model = match meta["task"].as_str().unwrap_or("") {
            lm::TASK => Model::Lm(Box::new(lm::Loaded::load(path)?)),
            tag::TASK => Model::Tag(Box::new(tag::Loaded::load(path)?)),
            classify::TASK => Model::Classify(Box::new(classify::Loaded::load(path)?)),
            translate::TASK => Model::Translate(Box::new(translate::Loaded::load(path)?)),
            other => {
                return Err(Error::format(
                    path,
                    format!("unknown task {other:?} (expected lm, tag, classify or translate)"),
                ))
            }
        };
        Ok((model, meta))
    }

    /// The task's name as checkpoints and configs record it.
    pub fn task(&self) -> &'static str {
        match self {
            Model::Lm(_) => lm::TASK,
            Model::Tag(_) => tag::TASK,
            Model::Classify(_) => classify::TASK,
            Model::Translate(_) => translate::TASK,
        }
    }

    /// The network with every parameter.
    pub fn module(&self) -> &dyn Module {
        match self {
            Model::Lm(m) => &m.model,
            Model::Tag(m) => &m.model,
            Model::Classify(m) => &m.model,
            Model::Translate(m) => &m.model,
        }
    }

    /// Every parameter under its PyTorch name, in the order the checkpoint stores them:
    /// what `torch_module.load_state_dict` takes.
    pub fn state_dict(&self) -> Vec<Tensor> {
        let mut out = Vec::new();
        self.module()
            .visit(&mut |p| out.push((p.name.clone(), p.shape.clone(), p.w.clone())));
        out
    }

    /// The model's trace of `text` with each task's defaults: a language model lists
    /// [`TRACE_TOP_K`] next tokens, a translator decodes greedily.
    pub fn trace(&mut self, text: &str) -> Result<super::trace::Trace> {
        match self {
            Model::Lm(m) => m.trace(text, TRACE_TOP_K),
            Model::Tag(m) => m.trace(text),
            Model::Classify(m) => m.trace(text),
            Model::Translate(m) => m.trace(text, &translate::Decoding::default()),
        }
    }
}

/// Writes a checkpoint from parameters under their PyTorch names and the metadata a
/// checkpoint carries (`task`, `model`, `vocabs`; what [`checkpoint::open`] reads back as
/// `meta`), then loads it with the task's loader, so every shape and size relation is
/// checked as for any file; a value that is NaN or infinite is refused first. The way back
/// from a PyTorch `state_dict`.
pub fn from_state_dict(tensors: &[Tensor], meta: &serde_json::Value, path: &Path) -> Result<Model> {
    let refs: Vec<(String, Vec<usize>, &[f32])> = tensors
        .iter()
        .map(|(n, s, w)| (n.clone(), s.clone(), w.as_slice()))
        .collect();
    for (name, shape, w) in &refs {
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n != Some(w.len()) {
            return Err(Error::Usage(format!(
                "tensor {name}: shape {shape:?} does not match its {} values",
                w.len()
            )));
        }
        if let Some(i) = w.iter().position(|v| !v.is_finite()) {
            return Err(Error::Usage(format!(
                "tensor {name}: value {i} is {} (weights must be finite)",
                w[i]
            )));
        }
    }
    let mut meta = meta.clone();
    if let Some(o) = meta.as_object_mut() {
        o.entry("format_version")
            .or_insert(checkpoint::FORMAT_VERSION.into());
    }
    checkpoint::save_tensors(path, &refs, &meta)?;
    Model::load(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A model's state dict and metadata written back give the same model.
    #[test]
    fn state_dict_round_trips() {
        let dir = std::env::temp_dir().join(format!("rnnkit-any-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = std::path::PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/torch_lm.safetensors"
        ));
        let (m, meta) = Model::load_with_meta(&path).unwrap();
        assert_eq!(m.task(), "lm");
        // The header alone gives what reading the whole file gives.
        assert_eq!(meta, checkpoint::open(&path).unwrap().meta);
        let sd = m.state_dict();
        let back = from_state_dict(&sd, &meta, &dir.join("back.safetensors")).unwrap();
        assert_eq!(back.state_dict(), sd);
        let mut bad = sd.clone();
        bad[0].1[0] += 1;
        assert!(from_state_dict(&bad, &meta, &dir.join("bad.safetensors")).is_err());
        std::fs::remove_dir_all(&dir).ok();
    }
}
