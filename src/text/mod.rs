//! Everything between a file on disk and a batch of token ids.

pub mod batch;
pub mod read;
pub mod tokenizer;
