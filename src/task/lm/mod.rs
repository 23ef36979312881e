//! Causal language model: embedding → recurrent stack → linear over the vocabulary.
//!
//! The model reads w_1..w_{N−1} and its outputs y_1..y_{N−1} are trained to predict
//! w_2..w_N; generation then feeds each sampled token back in. Parameter names follow
//! the state_dict of PyTorch's word_language_model `RNNModel` (encoder.weight,
//! rnn.weight_ih_l0, ..., decoder.weight, decoder.bias), so checkpoints move between the two.
//!
//! # Example
//!
//! Train briefly from a recipe, load the best checkpoint, generate, look inside:
//!
//! ```
//! use rnnkit::run::{self, Options};
//! use rnnkit::task::lm::{self, recipe::LmRun, Sampling};
//! # fn main() -> rnnkit::error::Result<()> {
//! let dir = std::env::temp_dir().join(format!("rnnkit-doc-lm-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! std::fs::write(dir.join("train.txt"), "the cat sat on the mat\n".repeat(50)).unwrap();
//! let mut recipe = LmRun::recipe(None); // the library's defaults
//! recipe.data.train = Some(dir.join("train.txt"));
//! recipe.data.tokenizer = rnnkit::text::tokenizer::Kind::Char;
//! (recipe.model.embed, recipe.model.rnn.hidden, recipe.train.epochs) = (16, 16, 1);
//! let summary = run::start(recipe, &dir.join("run"), Options::default())?;
//! assert_eq!(summary.values["epochs_done"], 1);
//!
//! let mut model = lm::Loaded::load(&dir.join("run/model.safetensors"))?;
//! let greedy = Sampling { temperature: 1.0, top_k: 0, top_p: 1.0, greedy: true };
//! let text = model.generate("the ", 10, &greedy, 1, |_piece| true)?;
//! assert!(!text.is_empty());
//! let trace = model.trace("the cat", 3)?; // states, gates, top-3 next characters
//! assert_eq!(trace.tokens.len(), 7);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

mod generate;
mod model;
#[cfg(feature = "options")]
pub mod options;
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
