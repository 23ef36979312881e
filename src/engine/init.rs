//! Weight initialisation schemes, each as PyTorch or the cited paper defines it.

use super::param::Param;
use rand::{Rng, RngCore};
use serde::{Deserialize, Serialize};
use std::cell::Cell;

thread_local! {
    /// Set while [`without_draws`] runs.
    static NO_DRAWS: Cell<bool> = const { Cell::new(false) };
}

/// Runs `build` with every initialiser here leaving its weights as they are (zeros):
/// for a model whose every weight is about to be overwritten from a checkpoint. The
/// draws are most of a load's time otherwise (a tagger's 2 million embedding values
/// each cost a logarithm and a cosine).
pub fn without_draws<R>(build: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            NO_DRAWS.with(|c| c.set(self.0));
        }
    }
    let _restore = Restore(NO_DRAWS.with(|c| c.replace(true)));
    build()
}

/// False inside [`without_draws`].
fn drawing() -> bool {
    !NO_DRAWS.with(|c| c.get())
}

/// How recurrent and projection weights start.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Init {
    /// PyTorch's RNN default: every weight and bias U(−1/√H, 1/√H).
    #[default]
    Pytorch,
    /// Every weight U(−a, a), as Zaremba et al. 2014 (a = 0.1 small, 0.05 medium).
    Uniform { a: f32 },
    /// Glorot & Bengio 2010: U(±√(6/(fan_in+fan_out))) per gate block; biases zero.
    Xavier,
    /// Input weights as Xavier, recurrent weights orthogonal per gate block; biases zero.
    Orthogonal,
}

impl std::str::FromStr for Init {
    type Err = crate::error::Error;
    /// `pytorch`, `xavier`, `orthogonal` or `uniform:A` with A > 0.
    fn from_str(s: &str) -> crate::error::Result<Init> {
        Ok(match s {
            "pytorch" => Init::Pytorch,
            "xavier" => Init::Xavier,
            "orthogonal" => Init::Orthogonal,
            _ => match s
                .strip_prefix("uniform:")
                .and_then(|a| a.parse::<f32>().ok())
            {
                Some(a) if a > 0.0 && a.is_finite() => Init::Uniform { a },
                _ => {
                    return Err(crate::error::Error::config(format!(
                        "{s:?}: expected pytorch, uniform:A (A > 0), xavier or orthogonal"
                    )))
                }
            },
        })
    }
}

/// Every weight U(−a, a).
pub fn uniform(p: &mut Param, a: f32, rng: &mut dyn RngCore) {
    if !drawing() {
        return;
    }
    for v in &mut p.w {
        *v = rng.random_range(-a..=a);
    }
}

/// Every value N(0, 1).
pub fn fill_normal(w: &mut [f32], rng: &mut dyn RngCore) {
    if !drawing() {
        return;
    }
    for v in w {
        *v = normal(rng);
    }
}

/// A standard normal sample by Box–Muller (rand's normal lives in another crate).
fn normal(rng: &mut dyn RngCore) -> f32 {
    let u1: f64 = rng.random::<f64>().max(1e-300);
    let u2: f64 = rng.random::<f64>();
    ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
}

/// Fills each `[rows_per_block, cols]` block of `p` with a Xavier-uniform sample.
pub fn xavier_blocks(p: &mut Param, blocks: usize, rng: &mut dyn RngCore) {
    let cols = p.shape[1];
    let rows = p.shape[0] / blocks;
    let a = (6.0 / (rows + cols) as f32).sqrt();
    uniform(p, a, rng);
}

/// Fills each square-ish `[rows_per_block, cols]` block of `p` with an orthogonal matrix
/// (modified Gram–Schmidt on a Gaussian sample), as torch.nn.init.orthogonal_ does.
pub fn orthogonal_blocks(p: &mut Param, blocks: usize, rng: &mut dyn RngCore) {
    if !drawing() {
        return;
    }
    let cols = p.shape[1];
    let rows = p.shape[0] / blocks;
    for blk in 0..blocks {
        // Orthonormalise along the longer dimension.
        let (n, d, transpose) = if rows <= cols {
            (rows, cols, false)
        } else {
            (cols, rows, true)
        };
        let mut m: Vec<Vec<f32>> = (0..n)
            .map(|_| (0..d).map(|_| normal(rng)).collect())
            .collect();
        for i in 0..n {
            for j in 0..i {
                let (done, rest) = m.split_at_mut(i);
                let (row, prev) = (&mut rest[0], &done[j]);
                let proj: f32 = row.iter().zip(prev).map(|(a, b)| a * b).sum();
                row.iter_mut().zip(prev).for_each(|(a, b)| *a -= proj * b);
            }
            let norm = m[i].iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
            for v in &mut m[i] {
                *v /= norm;
            }
        }
        let block = &mut p.w[blk * rows * cols..(blk + 1) * rows * cols];
        for (idx, w) in block.iter_mut().enumerate() {
            let (r, c) = (idx / cols, idx % cols);
            *w = if transpose { m[c][r] } else { m[r][c] };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    /// Inside `without_draws` every initialiser leaves zeros; after it (even after a
    /// panic inside it) they draw again.
    #[test]
    fn without_draws_leaves_zeros_and_is_undone() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut p = Param::zeros("w", &[8, 4]);
        without_draws(|| {
            uniform(&mut p, 1.0, &mut rng);
            xavier_blocks(&mut p, 2, &mut rng);
            orthogonal_blocks(&mut p, 2, &mut rng);
            fill_normal(&mut p.w, &mut rng);
        });
        assert!(p.w.iter().all(|&v| v == 0.0));
        let _ = std::panic::catch_unwind(|| without_draws(|| panic!("inside")));
        fill_normal(&mut p.w, &mut rng);
        assert!(p.w.iter().all(|&v| v != 0.0));
    }
}
