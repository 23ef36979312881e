//! rnnkit: recurrent neural networks (RNN, LSTM, GRU) for text on the CPU.
//!
//! # Start here
//!
//! - [`task`]: the four tasks, each a folder with the same parts and verbs:
//!   [`task::lm`] (language models and generation), [`task::tag`] (named entities),
//!   [`task::classify`] (sentences), [`task::translate`] (attention). Each has a `recipe`
//!   (its run record, presets and defaults), a `Loaded` model (load a checkpoint, predict,
//!   evaluate) and `trace` (every layer's and direction's states and gates per token, and
//!   what the task computes there: [`task::trace::Trace`]). Each module's page opens with a
//!   runnable example.
//! - [`run`]: a whole training run for any task: [`run::start`] a recipe in a folder,
//!   [`run::resume`] it, get the summary back.
//! - [`text`]: readers, tokenizers (character, word, BPE), vocabularies, batching.
//! - [`engine`]: the layer API, every layer with its hand-written forward and backward
//!   pass, the recurrent stack ([`engine::rnn::Rnn`]), the batched step API
//!   ([`engine::step`]) and traces ([`engine::trace`]).
//!
//! The data flows one way, and each arrow is a module boundary:
//! reader ([`text::read`]) → tokenizer ([`text::tokenizer`]) → batcher ([`text::batch`])
//! → model ([`engine`] layers composed by a task such as [`task::lm`]) → loss → optimizer
//! → checkpoint ([`checkpoint`]), with [`train`] the one trainer that drives it.
//!
//! Cargo features: `cli` (the command line's crates), `plot` (PNG curves and maps) and
//! `download` (fetching named datasets) are on by default; `--no-default-features` builds
//! the library alone.

pub mod task;

pub mod run;

pub mod text;

pub mod engine;

pub mod checkpoint;
pub mod data;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod metrics;
#[cfg(feature = "plot")]
pub mod plot;
#[cfg(feature = "serve")]
pub mod serve;
pub mod train;
