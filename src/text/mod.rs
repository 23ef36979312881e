//! Everything between a file on disk and a batch of token ids.

pub mod batch;
pub mod conll;
pub mod corpus;
pub mod read;
pub mod tokenizer;
pub mod vocab;
