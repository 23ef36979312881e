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
//!
//! # Example
//!
//! ```
//! use rnnkit::run::{self, Options};
//! use rnnkit::task::translate::{self as tr, recipe::TrRun, Decoding};
//! # fn main() -> rnnkit::error::Result<()> {
//! let dir = std::env::temp_dir().join(format!("rnnkit-doc-tr-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! std::fs::write(dir.join("train.de"), "ein hund läuft\n".repeat(30)).unwrap();
//! std::fs::write(dir.join("train.en"), "a dog runs\n".repeat(30)).unwrap();
//! let mut recipe = TrRun::recipe();
//! recipe.data.train = Some((dir.join("train.de"), dir.join("train.en")));
//! (recipe.model.embed, recipe.model.encoder.hidden, recipe.model.decoder_hidden) = (16, 16, 32);
//! recipe.train.epochs = 1;
//! run::start(recipe, &dir.join("run"), Options::default())?;
//!
//! let mut model = tr::Loaded::load(&dir.join("run/model.safetensors"))?;
//! let d = Decoding { beam: 2, attention: true, ..Decoding::default() };
//! let out = model.translate_texts(&["ein hund läuft"], &d)?;
//! assert_eq!(out[0].source_tokens.len(), 3); // hypotheses with their attention rows
//! let trace = model.trace("ein hund läuft", &d)?; // encoder states, gates, attention
//! assert_eq!(trace.tokens.len(), 3);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

mod decode;
mod model;
#[cfg(feature = "options")]
pub mod options;
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
