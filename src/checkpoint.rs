//! The checkpoint format: one self-contained .safetensors file (docs/checkpoint-format.md).
//!
//! f32 tensors carry PyTorch state_dict names; the metadata key `rnnkit` holds a JSON
//! config (format version, task, model config, tokenizer with its whole vocabulary).
//! Loading checks every name, shape and dtype against the model the config describes,
//! so a truncated, mismatched or hostile file is an error, never a panic: safetensors
//! validates the header against the file size before anything is allocated from it.

use crate::engine::param::Module;
use crate::error::{write_atomic, Error, Result};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::{BTreeSet, HashMap};
use std::path::Path;

pub const FORMAT_VERSION: u32 = 1;
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
    let views: Vec<(String, TensorView)> = tensors
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).expect("shape matches data"),
            )
        })
        .collect();
    let mut info = HashMap::new();
    info.insert(META_KEY.to_string(), meta.to_string());
    let buf = safetensors::serialize(views, &Some(info))
        .map_err(|e| Error::format(path, e.to_string()))?;
    write_atomic(path, &buf)
}

fn bytes(w: &[f32]) -> Vec<u8> {
    w.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A checkpoint read into memory, with its metadata parsed.
pub struct Loaded {
    pub meta: serde_json::Value,
    buf: Vec<u8>,
    path: std::path::PathBuf,
}

/// Reads the file and its `rnnkit` metadata; checks the format version.
pub fn open(path: &Path) -> Result<Loaded> {
    let buf = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let (_, md) = safetensors::SafeTensors::read_metadata(&buf)
        .map_err(|e| Error::format(path, format!("not a safetensors file ({e})")))?;
    let meta_s = md
        .metadata()
        .as_ref()
        .and_then(|m| m.get(META_KEY))
        .ok_or_else(|| Error::format(path, "no `rnnkit` metadata: not an rnnkit checkpoint"))?;
    let meta: serde_json::Value = serde_json::from_str(meta_s)
        .map_err(|e| Error::format(path, format!("bad `rnnkit` metadata: {e}")))?;
    let v = meta.get("format_version").and_then(|v| v.as_u64());
    if v != Some(FORMAT_VERSION as u64) {
        return Err(Error::format(
            path,
            format!("format_version {v:?}; this rnnkit reads version {FORMAT_VERSION}"),
        ));
    }
    Ok(Loaded {
        meta,
        buf,
        path: path.to_path_buf(),
    })
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
                if t.dtype() != Dtype::F32 {
                    return Err(format!(
                        "tensor {} is {:?}; expected F32",
                        p.name,
                        t.dtype()
                    ));
                }
                if t.shape() != p.shape.as_slice() {
                    return Err(format!(
                        "tensor {} has shape {:?}; expected {:?}",
                        p.name,
                        t.shape(),
                        p.shape
                    ));
                }
                for (w, c) in p.w.iter_mut().zip(t.data().chunks_exact(4)) {
                    *w = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
                Ok(())
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
