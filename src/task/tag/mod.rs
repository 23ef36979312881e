//! Sequence tagging (named entities with BIO tags): the lecture's many-to-many task, as
//! Lample et al. 2016 build it.
//!
//! Each token is represented by its word embedding (lowercased lookup), a casing feature,
//! and a character-level feature (the final states of a character BiLSTM run over the
//! word, so unseen words still get a representation); a bidirectional stack reads the
//! sentence; a linear layer gives each token a score per tag; and either a softmax per
//! token or a linear-chain CRF ([`crate::engine::crf`]) turns the scores into tags.
//!
//! Shapes are time-major like the engine's: a batch of B sentences padded to T tokens is
//! `[T, B, ·]`, and each sentence's length is passed along, so padding never changes a
//! result. Parameter names follow PyTorch conventions: `word_embedding.weight`,
//! `char_embedding.weight`, `char_rnn.*`, `casing_embedding.weight`, `rnn.*`,
//! `output.weight`, `output.bias` and pytorch-crf's `crf.start_transitions`,
//! `crf.end_transitions`, `crf.transitions`.
//!
//! # Example
//!
//! ```
//! use rnnkit::run::{self, Options};
//! use rnnkit::task::tag::{self, recipe::TagRun};
//! # fn main() -> rnnkit::error::Result<()> {
//! let dir = std::env::temp_dir().join(format!("rnnkit-doc-tag-{}", std::process::id()));
//! std::fs::create_dir_all(&dir).unwrap();
//! let sentence = "Anna B-PER\nsaid O\nin O\nParis B-LOC\n. O\n\n";
//! std::fs::write(dir.join("train.conll"), sentence.repeat(40)).unwrap();
//! let mut recipe = TagRun::recipe(None); // a BiLSTM-CRF with character features
//! recipe.data.train = Some(dir.join("train.conll"));
//! recipe.train.epochs = 1;
//! run::start(recipe, &dir.join("run"), Options::default())?;
//!
//! let mut tagger = tag::Loaded::load(&dir.join("run/model.safetensors"))?;
//! let tagged = tagger.tag_texts(&["Anna lives in Paris ."])?;
//! assert_eq!(tagged[0].tokens.len(), 5); // with tags, probabilities, entities and spans
//! let trace = tagger.trace("Anna lives in Paris .")?; // states, gates, tag marginals
//! assert_eq!(trace.stack.dirs.len(), 2);
//! # std::fs::remove_dir_all(&dir).ok();
//! # Ok(()) }
//! ```

mod chars;
mod model;
#[cfg(feature = "options")]
pub mod options;
mod predict;
pub mod recipe;
mod task;
#[cfg(test)]
mod tests;
mod trace;

pub use chars::*;
pub use model::*;
pub use predict::*;
pub use task::*;
pub use trace::trace;

/// The task name checkpoints carry.
pub const TASK: &str = "tag";
