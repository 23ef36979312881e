//! Causal language model: embedding → recurrent stack → linear over the vocabulary.
//!
//! The model reads w_1..w_{N−1} and its outputs y_1..y_{N−1} are trained to predict
//! w_2..w_N; generation then feeds each sampled token back in. Parameter names follow
//! the state_dict of PyTorch's word_language_model `RNNModel` (encoder.weight,
//! rnn.weight_ih_l0, ..., decoder.weight, decoder.bias), so checkpoints move between the two.

mod generate;
mod model;
mod predict;
pub mod recipe;
mod task;
#[cfg(test)]
mod tests;
mod trace;

pub use generate::*;
pub use model::*;
pub use predict::*;
pub use task::*;
pub use trace::trace;

/// The task name checkpoints carry.
pub const TASK: &str = "lm";
