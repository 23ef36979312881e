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
///
/// With `bias = Some((b [v], db [v]))` the rows are taken as `logits + b` and `db`
/// accumulates the bias gradient (the column sums of dlogits). Folding both into this pass
/// saves a decoder two sweeps over `[n, v]` (16 MB for a 10k-word LM window) that would
/// otherwise run outside the cache. Rows are split into one fixed block per thread, each with
/// its own `db` partial, added in block order: results depend on (inputs, threads) only.
pub fn cross_entropy_backward(
    logits: &mut [f32],
    targets: &[u32],
    v: usize,
    red: Reduction,
    scale: f32,
    bias: Option<(&[f32], &mut [f32])>,
) -> CeOut {
    let count = targets.iter().filter(|&&t| t != IGNORE).count();
    let k = match red {
        Reduction::Mean => scale / count.max(1) as f32,
        Reduction::Sum => scale,
    };
    let n = targets.len();
    if n == 0 || v == 0 {
        return CeOut { sum: 0.0, count };
    }
    let (b, db) = match bias {
        Some((b, db)) => (b, Some(db)),
        None => (&[][..], None),
    };
    // A shorter bias would leave whole lanes out of the row's max (add_max), not just
    // unbiased: exp could then overflow.
    assert!(
        db.as_ref().is_none_or(|d| b.len() == v && d.len() == v),
        "cross_entropy_backward: bias of {} / {} for rows of {v}",
        b.len(),
        db.as_ref().map_or(0, |d| d.len())
    );
    let rows = n.div_ceil(super::ops::threads().min(n));
    let parts: Vec<(f64, Vec<f32>)> = logits[..n * v]
        .par_chunks_mut(rows * v)
        .zip(targets.par_chunks(rows))
        .map(|(block, tg)| {
            let mut part_db = vec![0f32; if db.is_some() { v } else { 0 }];
            let mut sum = 0.0;
            for (row, &t) in block.chunks_exact_mut(v).zip(tg) {
                if t == IGNORE {
                    row.fill(0.0);
                } else {
                    sum += ce_row(row, b, &mut part_db, t as usize, k);
                }
            }
            (sum, part_db)
        })
        .collect();
    if let Some(db) = db {
        for (_, p) in &parts {
            for (d, x) in db.iter_mut().zip(p) {
                *d += x;
            }
        }
    }
    CeOut {
        sum: parts.iter().map(|p| p.0).sum(),
        count,
    }
}

crate::multiversion!(
    /// One row of [`cross_entropy_backward`]: `row (+= b)`, loss, then `row = k·(softmax −
    /// onehot(t))` and `db += row`; an empty `b` / `db` skips the bias.
    fn ce_row(row: &mut [f32], b: &[f32], db: &mut [f32], t: usize, k: f32) -> f64 => ce_row_body
);

#[inline(always)]
fn ce_row_body(row: &mut [f32], b: &[f32], db: &mut [f32], t: usize, k: f32) -> f64 {
    // Three passes over the row instead of five: the bias add finds the max, and the scaling
    // adds into db. A 10k-word row (40 KB) misses L1, so each pass saved is a sweep of L2.
    let m = if b.is_empty() {
        row_max(row)
    } else {
        add_max(row, b)
    };
    // The log-sum-exp form keeps precision where softmax(x)_t underflows.
    let x_t = row[t] as f64;
    let s = exp_sum(row, m);
    let (inv, lse) = (k / s, m as f64 + (s as f64).ln());
    if db.is_empty() {
        row.iter_mut().for_each(|x| *x *= inv);
    } else {
        for (x, d) in row.iter_mut().zip(db.iter_mut()) {
            *x *= inv;
            *d += *x;
        }
        db[t] -= k;
    }
    row[t] -= k;
    lse - x_t
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
    pub fn softmax_in_place(row: &mut [f32]) -> (f64, f32) => softmax_body
);

#[inline(always)]
fn softmax_body(row: &mut [f32]) -> (f64, f32) {
    let m = row_max(row);
    let s = exp_sum(row, m);
    let inv = 1.0 / s;
    row.iter_mut().for_each(|x| *x *= inv);
    (m as f64 + (s as f64).ln(), m)
}

crate::multiversion!(
    /// Replaces `row` by log softmax(row) = row − log Σ exp(row), without a logarithm per
    /// element: the decoder takes it over the whole vocabulary for every beam at every step.
    pub fn log_softmax_in_place(row: &mut [f32]) => log_softmax_body
);

#[inline(always)]
fn log_softmax_body(row: &mut [f32]) {
    let m = row_max(row);
    let mut acc = [0f32; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            acc[i] += fast_exp(c[i] - m);
        }
    }
    let s: f32 = acc.iter().sum::<f32>() + rest.iter().map(|&x| fast_exp(x - m)).sum::<f32>();
    let lse = m + s.ln();
    row.iter_mut().for_each(|x| *x -= lse);
}

/// Lanes of the row reductions: independent partial maxima and sums, so the loops vectorise
/// (a sequential float reduction would pin the 10k-wide softmax of a word LM to one lane);
/// 16 fill one AVX-512 vector or two AVX2 ones.
const LANES: usize = 16;

/// max(row) over [`LANES`] lanes.
#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut mx = [f32::NEG_INFINITY; LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for i in 0..LANES {
            mx[i] = mx[i].max(c[i]);
        }
    }
    rest.iter()
        .chain(mx.iter())
        .copied()
        .fold(f32::NEG_INFINITY, f32::max)
}

/// `row += b`, returning max(row) of the sums: the bias add and the max in one pass.
#[inline(always)]
fn add_max(row: &mut [f32], b: &[f32]) -> f32 {
    let mut mx = [f32::NEG_INFINITY; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    let mut bs = b.chunks_exact(LANES);
    for (c, bc) in (&mut chunks).zip(&mut bs) {
        for i in 0..LANES {
            c[i] += bc[i];
            mx[i] = mx[i].max(c[i]);
        }
    }
    let mut m = mx.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    for (x, bv) in chunks.into_remainder().iter_mut().zip(bs.remainder()) {
        *x += bv;
        m = m.max(*x);
    }
    m
}

/// `row = exp(row − m)`, returning Σ row over [`LANES`] lanes.
#[inline(always)]
fn exp_sum(row: &mut [f32], m: f32) -> f32 {
    let mut acc = [0f32; LANES];
    let mut chunks = row.chunks_exact_mut(LANES);
    for c in &mut chunks {
        for i in 0..LANES {
            c[i] = fast_exp(c[i] - m);
            acc[i] += c[i];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for x in chunks.into_remainder() {
        *x = fast_exp(*x - m);
        s += *x;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fused loss, gradient and bias gradient equal an f64 reference taken the plain
    /// way (bias added, softmax, one-hot subtracted, column sums), for row widths below,
    /// at and past the 16 lanes, ignored targets, both reductions and a scale.
    #[test]
    fn cross_entropy_backward_matches_the_plain_formula() {
        for v in [1, 15, 16, 37, 10000] {
            for red in [Reduction::Mean, Reduction::Sum] {
                let n = 5;
                let logits: Vec<f32> = (0..n * v)
                    .map(|i| ((i * 7919 % 1013) as f32 - 506.0) * 0.01)
                    .collect();
                let b: Vec<f32> = (0..v).map(|j| (j % 13) as f32 * 0.1 - 0.6).collect();
                let targets: Vec<u32> = (0..n)
                    .map(|r| {
                        if r == 2 {
                            IGNORE
                        } else {
                            ((r * 31) % v) as u32
                        }
                    })
                    .collect();
                let (mut g, mut db) = (logits.clone(), vec![0.25f32; v]);
                let out =
                    cross_entropy_backward(&mut g, &targets, v, red, 1.5, Some((&b, &mut db)));
                let count = targets.iter().filter(|&&t| t != IGNORE).count();
                let k = match red {
                    Reduction::Mean => 1.5 / count as f64,
                    Reduction::Sum => 1.5,
                };
                let (mut sum, mut want_db) = (0.0, vec![0.25f64; v]);
                for (r, &t) in targets.iter().enumerate() {
                    let row = &g[r * v..][..v];
                    if t == IGNORE {
                        assert!(row.iter().all(|&x| x == 0.0));
                        continue;
                    }
                    let z: Vec<f64> = (0..v)
                        .map(|j| logits[r * v + j] as f64 + b[j] as f64)
                        .collect();
                    let m = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let lse = m + z.iter().map(|x| (x - m).exp()).sum::<f64>().ln();
                    sum += lse - z[t as usize];
                    for j in 0..v {
                        let want = k * ((z[j] - lse).exp() - f64::from(j == t as usize));
                        assert!((row[j] as f64 - want).abs() < 1e-6, "v {v} row {r} col {j}");
                        want_db[j] += want;
                    }
                }
                assert_eq!(out.count, count);
                assert!((out.sum - sum).abs() < 1e-4 * sum.abs().max(1.0), "v {v}");
                for (d, w) in db.iter().zip(&want_db) {
                    assert!((*d as f64 - w).abs() < 1e-5, "v {v} db");
                }
            }
        }
    }

    /// log softmax equals the log of softmax, also for rows whose tail underflows in
    /// softmax and for lengths that are not a multiple of the 16 lanes.
    #[test]
    fn log_softmax_is_the_log_of_softmax() {
        for n in [1, 7, 8, 13, 16, 17, 31, 5898] {
            let row: Vec<f32> = (0..n)
                .map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.7)
                .collect();
            let mut lp = row.clone();
            log_softmax_in_place(&mut lp);
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &x| a.max(x as f64));
            let lse = m + row.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
            for (x, l) in row.iter().zip(&lp) {
                assert!((*l as f64 - (*x as f64 - lse)).abs() < 1e-4, "n {n}");
            }
        }
    }
}
