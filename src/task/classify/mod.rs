//! Sentence classification: the lecture's many-to-one task. Embeddings → (bi)directional
//! stack → pooling over time → linear → softmax.
//!
//! Pooling is the last state of each direction (the many-to-one reading: h_T forward and
//! h_1 backward, which have each read the whole sentence), the maximum or the mean over the
//! real positions, or attention: a learned query q scores each position, α = softmax_t(q·y_t)
//! over the real positions, and the sentence is Σ_t α_t y_t. Shapes are time-major as the
//! engine's: `[T, B, ·]`, lengths passed along, so padding never changes a result.
//! Parameters: `embedding.weight`, `rnn.*`, `pool.query` (attention), `output.weight`,
//! `output.bias`.
//!
//! # Example
//!
//! ```
//! use rnnkit::run::{self, Options};
//! use rnnkit::task::classify::{self, recipe::ClsRun};
//! # fn main() -> rnnkit::error::Result<()> {
//! let dir = std::env::temp_dir().join(format!("rnnkit-doc-cls-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let rows = "a good film\tpos\na bad film\tneg\n".repeat(30);
//! std::fs::write(dir.join("train.tsv"), format!("sentence\tlabel\n{rows}")).unwrap();
//! let mut recipe = ClsRun::recipe();
//! recipe.data.train = Some(dir.join("train.tsv"));
//! recipe.train.epochs = 1;
//! run::start(recipe, &dir.join("run"), Options::default())?;
//!
//! let mut clf = classify::Loaded::load(&dir.join("run/model.safetensors"))?;
//! let p = clf.predict(&["a good film"]);
//! assert_eq!(p[0].probs.len(), 2); // labels in the order of clf.labels
//! let trace = clf.trace("a good film")?; // states, gates, pooling weight per token
//! assert_eq!(trace.tokens.len(), 3);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

mod model;
#[cfg(feature = "options")]
pub mod options;
mod predict;
pub mod recipe;
mod task;
#[cfg(test)]
mod tests;
mod trace;

pub use model::*;
pub use predict::*;
pub use task::*;
pub use trace::trace;

/// The task name checkpoints carry.
pub const TASK: &str = "classify";
