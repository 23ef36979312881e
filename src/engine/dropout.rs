//! Dropout: standard (a fresh mask per element) and variational / locked (one mask per
//! sequence, shared over time; Gal & Ghahramani 2016). Identity at evaluation.

use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum DropoutKind {
    #[default]
    Standard,
    Variational,
}

/// The mask drawn for one forward call, already scaled by 1/(1−p), kept for backward.
/// Standard: `[t, b, f]`; variational: `[b, f]`, reused at every step.
#[derive(Clone, Debug, Default)]
pub struct Mask {
    mask: Vec<f32>,
    period: usize,
}

/// Applies dropout in place to x `[t, b, f]` (`t·b·f = x.len()`, `bf = b·f`) and returns
/// the mask, or `None` when nothing is dropped (p = 0 or evaluation).
pub fn forward(
    x: &mut [f32],
    bf: usize,
    p: f32,
    kind: DropoutKind,
    train: bool,
    rng: &mut dyn RngCore,
) -> Option<Mask> {
    if !train || p <= 0.0 || x.is_empty() {
        return None;
    }
    let keep = 1.0 / (1.0 - p);
    let n = match kind {
        DropoutKind::Standard => x.len(),
        DropoutKind::Variational => bf,
    };
    let mask: Vec<f32> = (0..n)
        .map(|_| if rng.random::<f32>() < p { 0.0 } else { keep })
        .collect();
    let m = Mask { mask, period: n };
    apply(x, &m);
    Some(m)
}

/// Multiplies in place by the mask: the same operation serves forward and backward.
pub fn apply(x: &mut [f32], m: &Mask) {
    for chunk in x.chunks_mut(m.period) {
        for (v, k) in chunk.iter_mut().zip(&m.mask) {
            *v *= k;
        }
    }
}

/// Backward of [`forward`]: dx = dy ∘ mask, in place.
pub fn backward(dy: &mut [f32], m: Option<&Mask>) {
    if let Some(m) = m {
        apply(dy, m);
    }
}

impl std::str::FromStr for DropoutKind {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<DropoutKind> {
        Ok(match s {
            "standard" => DropoutKind::Standard,
            "variational" | "locked" => DropoutKind::Variational,
            _ => {
                return Err(crate::error::Error::config(format!(
                    "{s:?}: expected standard or variational"
                )))
            }
        })
    }
}
