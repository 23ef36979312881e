//! Sequence-to-sequence translation with attention, the lecture's last model:
//!
//! ```text
//! y_1..y_S   = encoder(x)                       embedding → (bi)RNN stack, [S, B, De]
//! s_0        = tanh(W_b [h_S forward; h_1 backward] + b_b)
//! d_t        = Σ_i α_ti y_i,  α_ti = softmax_i(sim(s_{t−1}, y_i))   (engine::attention)
//! s_t        = g(W1 z_t + W2 s_{t−1} + Wu d_t)  the decoder cell on [z_t; d_t]
//! p_t        = softmax(W3 [s_t; d_t; z_t])      (Bahdanau et al.'s deep output)
//! ```
//!
//! where z_t is the previous target token's embedding (teacher forcing in training). With
//! dot attention over a bidirectional encoder (2H wide) against a decoder of H, the encoder
//! states are first projected to H (`key_proj`); with no attention the decoder reads z_t
//! alone (the plain encoder-decoder, for comparison). Parameters: `encoder.weight`,
//! `rnn.*` (encoder), `bridge.*`, `key_proj.*`, `attention.*`, `target_embedding.weight`,
//! `decoder.*` (the decoder cell, PyTorch `rnn` names), `output.*`.
//!
//! This module holds the model, its teacher-forced loss with gradients, and greedy and beam
//! decoding; the run record, data and command follow it.

mod decode;
mod model;
mod predict;
pub mod recipe;
mod task;
#[cfg(test)]
mod tests;
mod trace;

pub use decode::*;
pub use model::*;
pub use predict::*;
pub use task::*;

/// The task name checkpoints carry.
pub const TASK: &str = "translate";
