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

mod model;
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
