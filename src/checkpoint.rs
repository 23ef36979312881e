//! The checkpoint format: one self-contained .safetensors file (docs/checkpoint-format.md).
//!
//! f32 tensors carry PyTorch state_dict names; the metadata key `rnnkit` holds a JSON
//! [`Meta`]: format version, task, the task's typed model config and named vocabularies.
//! [`load`] is the one loader: it checks the task, every size relation of the config, the
//! vocabularies against the embeddings they index, and the memory the config implies
//! before anything is allocated, then every tensor's name, shape and dtype, so a
//! truncated, mismatched or hostile file is a one-line error naming the field, never a
//! panic. safetensors validates the header against the file size before anything is
//! allocated from it.
//!
//! Tensors are F32 as training writes them, or BF16 in a file made smaller on request
//! ([`convert`], `rnnkit convert --dtype bf16`); loading widens BF16 to f32 exactly. The
//! training state is always F32, so that a resumed run continues bit for bit.
//!
//! Version 1 (before named vocabularies) stored one `tokenizer`; it is read as version 2
//! with that tokenizer as the vocabulary `tokens`.

use crate::engine::bf16::{from_bf16, to_bf16, Precision};
use crate::engine::param::Module;
use crate::error::{write_atomic, Error, Result};
use crate::text::vocab::Vocab;
use safetensors::tensor::{Dtype, TensorView};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;

pub const FORMAT_VERSION: u32 = 2;
pub const META_KEY: &str = "rnnkit";

/// Serialises every parameter of `model` (plus `extra` named tensors) with `meta` as
/// the `rnnkit` metadata, atomically.
pub fn save(
    path: &Path,
    model: &dyn Module,
    extra: &[(String, Vec<usize>, &[f32])],
    meta: &serde_json::Value,
) -> Result<()> {
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    model.visit(&mut |p| tensors.push((p.name.clone(), p.shape.clone(), bytes(&p.w))));
    for (name, shape, data) in extra {
        tensors.push((name.clone(), shape.clone(), bytes(data)));
    }
    write(path, &tensors, Dtype::F32, meta).map(|_| ())
}

/// Serialises named f32 tensors `(name, shape, values)` with `meta` as the `rnnkit`
/// metadata, atomically: a checkpoint from parameters held elsewhere (a PyTorch
/// `state_dict`). Nothing is checked here; [`load`] checks the file as it checks any.
pub fn save_tensors(
    path: &Path,
    tensors: &[(String, Vec<usize>, &[f32])],
    meta: &serde_json::Value,
) -> Result<()> {
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(n, s, w)| (n.clone(), s.clone(), bytes(w)))
        .collect();
    write(path, &bytes, Dtype::F32, meta).map(|_| ())
}

/// Serialises `(name, shape, little-endian bytes)` tensors, all of `dtype`, with `meta` as
/// the `rnnkit` metadata, atomically; returns the file's size.
fn write(
    path: &Path,
    tensors: &[(String, Vec<usize>, Vec<u8>)],
    dtype: Dtype,
    meta: &serde_json::Value,
) -> Result<u64> {
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(dtype, s.clone(), b).expect("shape matches data"),
            )
        })
        .collect();
    let mut info = HashMap::new();
    info.insert(META_KEY.to_string(), meta.to_string());
    let buf = safetensors::serialize(views, &Some(info))
        .map_err(|e| Error::format(path, e.to_string()))?;
    write_atomic(path, &buf)?;
    Ok(buf.len() as u64)
}

fn bytes(w: &[f32]) -> Vec<u8> {
    w.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A model tensor's values as f32 into `out` (its length is the tensor's, checked through
/// the shape before): F32 as stored, BF16 widened (exact).
fn widen_into(name: &str, t: &TensorView, out: &mut [f32]) -> std::result::Result<(), String> {
    match t.dtype() {
        Dtype::F32 => {
            for (w, c) in out.iter_mut().zip(t.data().chunks_exact(4)) {
                *w = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
            }
        }
        Dtype::BF16 => {
            for (w, c) in out.iter_mut().zip(t.data().chunks_exact(2)) {
                *w = from_bf16(u16::from_le_bytes([c[0], c[1]]));
            }
        }
        d => return Err(format!("tensor {name} is {d:?}; expected F32 or BF16")),
    }
    Ok(())
}

/// What [`convert`] did.
#[derive(Debug, Clone, Serialize)]
pub struct Converted {
    pub tensors: usize,
    pub params: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub dtype: Precision,
}

/// Writes `input`'s model checkpoint to `output` with every tensor in `dtype` (bf16:
/// rounded to nearest, ties to even — what `tensor.to(torch.bfloat16)` does — for a file
/// half the size; f32: widened back, exactly), names, shapes and metadata unchanged.
/// A training state is refused: resuming needs its fp32 values.
pub fn convert(input: &Path, output: &Path, dtype: Precision) -> Result<Converted> {
    let ck = open(input)?;
    if ck.meta.get("progress").is_some() {
        return Err(Error::format(
            input,
            "a training state, not a model checkpoint; convert the run's model.safetensors \
             (the state stays f32 so that --resume continues bit for bit)",
        ));
    }
    let st = safetensors::SafeTensors::deserialize(&ck.buf)
        .map_err(|e| Error::format(input, e.to_string()))?;
    let mut tensors: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut params = 0u64;
    for (name, t) in st.tensors() {
        let mut w = vec![0.0f32; t.shape().iter().product()];
        widen_into(&name, &t, &mut w).map_err(|e| Error::format(input, e))?;
        params += w.len() as u64;
        let data = match dtype {
            Precision::F32 => bytes(&w),
            Precision::Bf16 => w.iter().flat_map(|&v| to_bf16(v).to_le_bytes()).collect(),
        };
        tensors.push((name, t.shape().to_vec(), data));
    }
    let st_dtype = match dtype {
        Precision::F32 => Dtype::F32,
        Precision::Bf16 => Dtype::BF16,
    };
    let bytes_out = write(output, &tensors, st_dtype, &ck.meta)?;
    Ok(Converted {
        tensors: tensors.len(),
        params,
        bytes_in: ck.buf.len() as u64,
        bytes_out,
        dtype,
    })
}

/// A checkpoint read into memory, with its metadata parsed.
pub struct Loaded {
    pub meta: serde_json::Value,
    buf: Vec<u8>,
    path: std::path::PathBuf,
}

/// Reads the file and its `rnnkit` metadata; checks the format version.
pub fn open(path: &Path) -> Result<Loaded> {
    regular_file(path)?;
    let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, md) = safetensors::SafeTensors::read_metadata(&buf)
        .map_err(|e| Error::format(path, format!("not a safetensors file ({e})")))?;
    Ok(Loaded {
        meta: rnnkit_meta(path, &md)?,
        buf,
        path: path.to_path_buf(),
    })
}

/// The `rnnkit` metadata of a checkpoint, read from its header alone (what a caller needs
/// to choose the task's loader, without reading the tensors twice). The tensors are
/// checked when the model is loaded.
pub fn read_meta(path: &Path) -> Result<serde_json::Value> {
    use std::io::Read;
    let len = regular_file(path)?;
    let bad = |why: String| Error::format(path, format!("not a safetensors file ({why})"));
    let mut f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let mut n = [0u8; 8];
    f.read_exact(&mut n)
        .map_err(|_| bad("shorter than its 8-byte header length".into()))?;
    let n = u64::from_le_bytes(n);
    // safetensors' own bound on a header, and the file's length.
    if n > 100_000_000 || n > len.saturating_sub(8) {
        return Err(bad(format!("a header of {n} bytes in a file of {len}")));
    }
    let mut header = vec![0u8; n as usize];
    f.read_exact(&mut header).map_err(|e| Error::io(path, e))?;
    let md: safetensors::tensor::Metadata =
        serde_json::from_slice(&header).map_err(|e| bad(e.to_string()))?;
    rnnkit_meta(path, &md)
}

/// The file's length, refusing a device or a pipe (`--model /dev/zero` would be read
/// without end).
fn regular_file(path: &Path) -> Result<u64> {
    let m = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if !m.is_file() {
        return Err(Error::format(
            path,
            "not a regular file; expected a .safetensors checkpoint",
        ));
    }
    Ok(m.len())
}

/// The `rnnkit` entry of a safetensors header, parsed, its format version checked and
/// version 1 upgraded.
fn rnnkit_meta(path: &Path, md: &safetensors::tensor::Metadata) -> Result<serde_json::Value> {
    let meta_s = md
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| Error::format(path, "no `rnnkit` metadata: not an rnnkit checkpoint"))?;
    let mut meta: serde_json::Value = serde_json::from_str(meta_s)
        .map_err(|e| Error::format(path, format!("bad `rnnkit` metadata: {e}")))?;
    match meta.get("format_version").and_then(|v| v.as_u64()) {
        Some(2) => {}
        Some(1) => upgrade_v1(&mut meta),
        v => {
            return Err(Error::format(
                path,
                format!("format_version {v:?}; this rnnkit reads versions 1 and {FORMAT_VERSION}"),
            ))
        }
    }
    Ok(meta)
}

impl Loaded {
    /// Copies every parameter of `model` from the file, checking names, shapes and dtype,
    /// and refusing tensors the model does not have (other than `allowed_extra` prefixes).
    pub fn load_into(&self, model: &mut dyn Module, allowed_extra: &[&str]) -> Result<()> {
        let st = safetensors::SafeTensors::deserialize(&self.buf)
            .map_err(|e| Error::format(&self.path, e.to_string()))?;
        let mut names: BTreeSet<String> = st.names().into_iter().cloned().collect();
        let mut err = None;
        model.visit_mut(&mut |p| {
            if err.is_some() {
                return;
            }
            names.remove(&p.name);
            err = (|| {
                let t = st
                    .tensor(&p.name)
                    .map_err(|_| format!("missing tensor {}", p.name))?;
                if t.shape() != p.shape.as_slice() {
                    return Err(format!(
                        "tensor {} has shape {:?}; expected {:?}",
                        p.name,
                        t.shape(),
                        p.shape
                    ));
                }
                widen_into(&p.name, &t, &mut p.w)
            })()
            .err();
        });
        if let Some(e) = err {
            return Err(Error::format(&self.path, e));
        }
        if let Some(extra) = names
            .iter()
            .find(|n| !allowed_extra.iter().any(|a| n.starts_with(a)))
        {
            return Err(Error::format(
                &self.path,
                format!("unexpected tensor {extra} for this model"),
            ));
        }
        Ok(())
    }

    /// An extra f32 tensor by name (training state), checked for dtype.
    pub fn tensor(&self, name: &str) -> Result<(Vec<usize>, Vec<f32>)> {
        let st = safetensors::SafeTensors::deserialize(&self.buf)
            .map_err(|e| Error::format(&self.path, e.to_string()))?;
        let t = st
            .tensor(name)
            .map_err(|_| Error::format(&self.path, format!("missing tensor {name}")))?;
        if t.dtype() != Dtype::F32 {
            return Err(Error::format(
                &self.path,
                format!("tensor {name} is not F32"),
            ));
        }
        let data = t
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        Ok((t.shape().to_vec(), data))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Version 1 stored the LM's tokenizer as `tokenizer: {kind, vocab, bpe_json}`; version 2
/// stores it as the vocabulary `tokens`.
fn upgrade_v1(meta: &mut serde_json::Value) {
    meta["format_version"] = FORMAT_VERSION.into();
    if let Some(t) = meta.as_object_mut().and_then(|m| m.remove("tokenizer")) {
        let vocab = &t["vocab"];
        let has = |s: &str| vocab.as_array().is_some_and(|a| a.iter().any(|v| v == s));
        let specials: Vec<&str> = crate::text::tokenizer::SPECIALS
            .into_iter()
            .filter(|s| has(s))
            .collect();
        let mut v =
            serde_json::json!({"tokens": vocab, "specials": specials, "tokenizer": t["kind"]});
        if has(crate::text::tokenizer::UNK) {
            v["unk"] = crate::text::tokenizer::UNK.into();
        }
        if let Some(b) = t.get("bpe_json") {
            v["bpe_json"] = b.clone();
        }
        meta["vocabs"] = serde_json::json!({ "tokens": v });
    }
}

/// The `rnnkit` metadata of a model checkpoint, typed by the task's model config `C`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Meta<C> {
    pub format_version: u32,
    pub task: String,
    pub model: C,
    /// Named vocabularies (`tokens`; a tagger's `words`, `chars`, `labels`; a
    /// translator's `source`, `target`).
    pub vocabs: BTreeMap<String, Vocab>,
}

impl<C: Serialize> Meta<C> {
    pub fn new(task: &str, model: C, vocabs: BTreeMap<String, Vocab>) -> Meta<C> {
        Meta {
            format_version: FORMAT_VERSION,
            task: task.into(),
            model,
            vocabs,
        }
    }

    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("metadata serialises")
    }
}

/// A model that a checkpoint holds: its task, its typed config, the vocabularies it needs,
/// and the checks that tie them together. [`load`] uses it to refuse a bad file before
/// allocating anything.
pub trait Checkpointed: Module + Sized {
    /// The task name the file must carry.
    const TASK: &'static str;
    /// Vocabularies the file must hold.
    const VOCABS: &'static [&'static str];
    type Config: Serialize + DeserializeOwned + Clone;
    /// Every size relation of the config and of the config against the vocabularies
    /// (embedding rows = vocabulary size, ...); the error names the field.
    fn check(
        cfg: &Self::Config,
        vocabs: &BTreeMap<String, Vocab>,
    ) -> std::result::Result<(), String>;
    /// Parameters (f32 values) the config implies, `None` on overflow.
    fn num_params(cfg: &Self::Config) -> Option<u64>;
    /// The model with the config's shapes (weights are overwritten by the file).
    fn build(cfg: Self::Config) -> Self;
}

/// The one model loader: task, config, vocabularies, sizes, memory, then the tensors.
pub fn load<M: Checkpointed>(path: &Path) -> Result<(M, Meta<M::Config>)> {
    let ck = open(path)?;
    let task = ck.meta["task"].as_str().unwrap_or("");
    if task != M::TASK {
        return Err(Error::format(
            path,
            format!(
                "a checkpoint of task {:?}; this command needs task {:?}",
                ck.meta["task"],
                M::TASK
            ),
        ));
    }
    let mut meta: Meta<M::Config> = serde_json::from_value(ck.meta.clone())
        .map_err(|e| Error::format(path, format!("bad metadata: {e}")))?;
    for v in meta.vocabs.values_mut() {
        *v = std::mem::take(v).indexed();
    }
    for name in M::VOCABS {
        let v = meta
            .vocabs
            .get(*name)
            .ok_or_else(|| Error::format(path, format!("missing vocabulary {name:?}")))?;
        v.check(path, name)?;
    }
    M::check(&meta.model, &meta.vocabs).map_err(|e| Error::format(path, e))?;
    // Every parameter is a tensor in the file, so a config that implies more values than
    // the file holds is refused before the model is allocated.
    let params = <M as Checkpointed>::num_params(&meta.model)
        .ok_or_else(|| Error::format(path, "model sizes overflow"))?;
    // Two bytes a parameter at the least (bf16).
    if params.saturating_mul(2) > ck.buf.len() as u64 {
        return Err(Error::format(
            path,
            format!(
                "the config implies {params} parameters (at least {} bytes), more than the file's {} bytes",
                params.saturating_mul(2),
                ck.buf.len()
            ),
        ));
    }
    // Every parameter is overwritten from the file (a missing one is an error), so the
    // model is built without drawing its random initial weights.
    let mut model = crate::engine::init::without_draws(|| M::build(meta.model.clone()));
    ck.load_into(&mut model, &[])?;
    Ok((model, meta))
}
