//! Dropout: standard (a fresh mask per element) and variational / locked (one mask per
//! sequence, shared over time; Gal & Ghahramani 2016). Identity at evaluation.

use rand::RngCore;
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
    let m = Mask {
        mask: draw_mask(n, p, keep, rng),
        period: n,
    };
    apply(x, &m);
    Some(m)
}

/// n mask values, 0 with probability p and `keep` otherwise, from one `fill_bytes` call: a
/// call through `dyn RngCore` per element cost a tenth of a tagger's training step. An
/// element is dropped when u = (w >> 8)·2⁻²⁴ < p for its 32-bit word w, which is how rand's
/// `random::<f32>()` makes u from `next_u32`, and a block RNG fills bytes from the same
/// words in order: the masks equal those of the per-element draw (tested).
fn draw_mask(n: usize, p: f32, keep: f32, rng: &mut dyn RngCore) -> Vec<f32> {
    // The words land in the mask's own storage and become mask values in place.
    let mut mask = vec![0.0f32; n];
    rng.fill_bytes(bytemuck::cast_slice_mut(&mut mask));
    // u < p  ⇔  (w >> 8) < p·2²⁴ (exact in f32)  ⇔  (w >> 8) < ⌈p·2²⁴⌉ in integers; the
    // select is a bit mask, so the loop has no branch to mispredict and vectorises.
    let t = (p * (1u32 << 24) as f32).ceil() as u32;
    let kb = keep.to_bits();
    for m in &mut mask {
        let w = u32::from_le(m.to_bits());
        *m = f32::from_bits(kb & u32::from((w >> 8) < t).wrapping_sub(1));
    }
    mask
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

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    #[test]
    fn bulk_masks_equal_per_element_draws() {
        for (seed, p, n) in [
            (0u64, 0.5f32, 1001usize),
            (7, 0.1, 37),
            (9, 0.9, 4096),
            (3, 0.25, 1),
        ] {
            let mut a = rand::rngs::StdRng::seed_from_u64(seed);
            let mut b = a.clone();
            let keep = 1.0 / (1.0 - p);
            let bulk = draw_mask(n, p, keep, &mut a);
            let each: Vec<f32> = (0..n)
                .map(|_| if b.random::<f32>() < p { 0.0 } else { keep })
                .collect();
            assert_eq!(bulk, each, "seed {seed}, p {p}, n {n}");
            // And the stream goes on where the per-element draws leave it.
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }
}
