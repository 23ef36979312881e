//! The numerical core: layers with explicit forward and backward passes.
//!
//! Every layer is a pair of functions, forward and backward, with shapes in the doc
//! comments; forward returns what backward needs, so a layer can be called several
//! times (one decoder step after another) before the backward passes run in reverse.

pub mod attention;
pub mod bf16;
pub mod cell;
pub mod crf;
pub mod dir;
pub mod dropout;
pub mod embedding;
pub mod encoder;
pub mod init;
pub mod linear;
pub mod lnlstm;
pub mod loss;
pub mod norm;
pub mod ops;
pub mod optim;
pub mod panel32;
pub(crate) mod par;
pub mod param;
pub mod rnn;
pub mod step;
pub mod trace;

#[cfg(test)]
pub(crate) mod gradcheck;
