//! rnnkit: recurrent neural networks (RNN, LSTM, GRU) for text on the CPU.
//!
//! The data flows one way, and each arrow is a module boundary:
//! reader ([`text::read`]) → tokenizer ([`text::tokenizer`]) → batcher ([`text::batch`])
//! → model ([`engine`] layers composed by a task such as [`lm`]) → loss → optimizer
//! → checkpoint ([`checkpoint`]).

pub mod checkpoint;
pub mod data;
pub mod engine;
pub mod error;
#[doc(hidden)]
pub mod fuzz;
pub mod metrics;

#[cfg(feature = "plot")]
pub mod plot;
pub mod run;
pub mod task;
pub mod text;
pub mod train;
