//! Softmax cross-entropy fused with log-softmax, as torch.nn.functional.cross_entropy.

use super::ops::fast_exp;
use rayon::prelude::*;

/// Targets equal to this are skipped (PyTorch's `ignore_index=-100` idea).
pub const IGNORE: u32 = u32::MAX;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    /// Divide by the number of counted targets.
    Mean,
    Sum,
}

/// Loss over logits `[n, v]` and targets `[n]`, summed in nats, and the count of
/// targets that were not [`IGNORE`]d.
#[derive(Clone, Copy, Debug)]
pub struct CeOut {
    pub sum: f64,
    pub count: usize,
}

/// Computes the loss and, in place, turns `logits` into dloss/dlogits for the chosen
/// reduction, scaled by `scale` (Zaremba's recipe multiplies the mean by the BPTT length).
/// Doing it in place avoids a second `[n, v]` buffer, the largest one in an LM.
pub fn cross_entropy_backward(
    logits: &mut [f32],
    targets: &[u32],
    v: usize,
    red: Reduction,
    scale: f32,
) -> CeOut {
    let count = targets.iter().filter(|&&t| t != IGNORE).count();
    let k = match red {
        Reduction::Mean => scale / count.max(1) as f32,
        Reduction::Sum => scale,
    };
    let sum: f64 = logits
        .par_chunks_mut(v)
        .zip(targets.par_iter())
        .with_min_len(16)
        .map(|(row, &t)| {
            if t == IGNORE {
                row.fill(0.0);
                return 0.0;
            }
            let t = t as usize;
            // The log-sum-exp form keeps precision where softmax(x)_t underflows.
            let x_t = row[t] as f64;
            let (lse, _) = softmax_in_place(row);
            let loss = lse - x_t;
            for p in row.iter_mut() {
                *p *= k;
            }
            row[t] -= k;
            loss
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum();
    CeOut { sum, count }
}

/// Loss only, for evaluation: logits are left as probabilities.
pub fn cross_entropy(logits: &mut [f32], targets: &[u32], v: usize) -> CeOut {
    let count = targets.iter().filter(|&&t| t != IGNORE).count();
    let sum: f64 = logits
        .par_chunks_mut(v)
        .zip(targets.par_iter())
        .with_min_len(16)
        .map(|(row, &t)| {
            if t == IGNORE {
                return 0.0;
            }
            let x_t = row[t as usize] as f64;
            let (lse, _) = softmax_in_place(row);
            lse - x_t
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum();
    CeOut { sum, count }
}

crate::multiversion!(
    /// Replaces `row` by softmax(row); returns (log Σ exp(row), max).
    ///
    /// Max and sum run over eight independent lanes so the loops vectorise: a sequential
    /// float reduction would pin the 10k-wide softmax of a word LM to one lane.
    pub fn softmax_in_place(row: &mut [f32]) -> (f64, f32) => softmax_body
);

#[inline(always)]
fn softmax_body(row: &mut [f32]) -> (f64, f32) {
    let mut mx = [f32::NEG_INFINITY; 8];
    let chunks = row.chunks_exact(8);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..8 {
            mx[i] = mx[i].max(c[i]);
        }
    }
    let m = rest
        .iter()
        .chain(mx.iter())
        .copied()
        .fold(f32::NEG_INFINITY, f32::max);
    let mut acc = [0f32; 8];
    let mut chunks = row.chunks_exact_mut(8);
    for c in &mut chunks {
        for i in 0..8 {
            c[i] = fast_exp(c[i] - m);
            acc[i] += c[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for x in chunks.into_remainder() {
        *x = fast_exp(*x - m);
        s += *x;
    }
    let inv = 1.0 / s;
    for x in row.iter_mut() {
        *x *= inv;
    }
    (m as f64 + (s as f64).ln(), m)
}
