//! The numerical core: layers with explicit forward and backward passes.
//!
//! Every layer is a pair of functions, forward and backward, with shapes in the doc
//! comments; forward returns what backward needs, so a layer can be called several
//! times (one decoder step after another) before the backward passes run in reverse.
//!
//! # The layer API
//!
//! [`embedding`], [`linear`], [`rnn`] (the recurrent stack: cells, layers, directions,
//! residual connections, norms and dropout between layers), [`dir`] (one direction's time
//! loop), [`cell`] (the gate math of RNN, LSTM and GRU), [`lnlstm`], [`norm`], [`dropout`],
//! [`attention`], [`crf`], [`loss`], [`encoder`] (embedding → stack), [`step`] (a stack one
//! step at a time, for decoding), [`trace`] (states and gates per token), [`param`],
//! [`init`] and [`optim`]. docs/engine.md gives the layouts.
//!
//! # Kernels (low level)
//!
//! [`ops`] (threads and the fp32 products), [`bf16`] (precision and the bf16 products on
//! AMX and AVX512-BF16) and `panel32` (the fused LSTM step kernel) are what the layers are
//! built on. They are public for the benchmarks and probes (`examples/gemm_probe.rs`);
//! they are not a stable API, and `panel32` is left out of these pages.

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
#[doc(hidden)]
pub mod panel32;
pub(crate) mod par;
pub mod param;
pub mod rnn;
pub mod step;
pub mod trace;

#[cfg(test)]
pub(crate) mod gradcheck;
