//! A linear-chain conditional random field over per-token emission scores, as the
//! pytorch-crf package defines it (Lample et al. 2016's output layer):
//!
//! ```text
//! score(x, y) = start[y_1] + Σ_t e_t[y_t] + Σ_{t>1} trans[y_{t−1}, y_t] + end[y_L]
//! log p(y | x) = score(x, y) − log Σ_y' exp score(x, y')
//! ```
//!
//! Parameters carry pytorch-crf's names and shapes: `{prefix}.start_transitions` `[K]`,
//! `{prefix}.end_transitions` `[K]`, `{prefix}.transitions` `[K, K]` indexed `[from, to]`.
//! The partition function is the forward algorithm; its gradient is the tag marginals of the
//! forward-backward algorithm; decoding is Viterbi. Emissions are time-major `[T, B, K]`
//! like the recurrent layers' outputs, and each sequence has its own length, so padding
//! never changes a result. Sums run in f64.
//!
//! Optional constraints forbid transitions a tagging scheme does not allow (I-X after O,
//! a sequence starting with I-X): they add a large negative score to those entries, in
//! training and decoding alike, so the learned scores of forbidden moves never matter.

use super::init;
use super::param::{Module, Param};
use rand::RngCore;

/// The score added to a forbidden move: far below any reachable path score, yet finite, so
/// the sums stay free of NaN even when every path of a sequence is forbidden.
const FORBIDDEN: f64 = -1e4;

/// Which moves a scheme allows (`true`: allowed).
#[derive(Clone, Debug, PartialEq)]
pub struct Allowed {
    pub start: Vec<bool>,
    pub end: Vec<bool>,
    /// `[K, K]`, `[from, to]`.
    pub trans: Vec<bool>,
}

#[derive(Clone, Debug)]
pub struct Crf {
    pub start: Param,
    pub end: Param,
    pub trans: Param,
    pub allowed: Option<Allowed>,
}

/// Per-sequence tables of one forward-backward pass, `[L, K]` each.
struct Lattice {
    alpha: Vec<f64>,
    beta: Vec<f64>,
    log_z: f64,
}

fn log_sum_exp(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = v.clone().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.map(|x| (x - m).exp()).sum::<f64>().ln()
}

impl Crf {
    /// pytorch-crf's init: every score U(−0.1, 0.1).
    pub fn new(prefix: &str, k: usize, rng: &mut dyn RngCore) -> Crf {
        let mut c = Crf {
            start: Param::zeros(format!("{prefix}.start_transitions"), &[k]),
            end: Param::zeros(format!("{prefix}.end_transitions"), &[k]),
            trans: Param::zeros(format!("{prefix}.transitions"), &[k, k]),
            allowed: None,
        };
        c.visit_mut(&mut |p| init::uniform(p, 0.1, rng));
        c
    }

    pub fn tags(&self) -> usize {
        self.start.len()
    }

    /// Effective scores (learned plus constraints): (start `[K]`, end `[K]`, trans `[K·K]`).
    fn scores(&self) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let eff = |p: &Param, ok: Option<&Vec<bool>>| -> Vec<f64> {
            p.w.iter()
                .enumerate()
                .map(|(i, &w)| {
                    w as f64
                        + if ok.is_some_and(|a| !a[i]) {
                            FORBIDDEN
                        } else {
                            0.0
                        }
                })
                .collect()
        };
        let a = self.allowed.as_ref();
        (
            eff(&self.start, a.map(|a| &a.start)),
            eff(&self.end, a.map(|a| &a.end)),
            eff(&self.trans, a.map(|a| &a.trans)),
        )
    }

    /// Forward and backward tables of one sequence: `em(t, j)` is its emission at step t.
    fn lattice(
        k: usize,
        len: usize,
        em: &dyn Fn(usize, usize) -> f64,
        s: &(Vec<f64>, Vec<f64>, Vec<f64>),
    ) -> Lattice {
        let (start, end, trans) = s;
        let mut alpha = vec![0.0; len * k];
        for j in 0..k {
            alpha[j] = start[j] + em(0, j);
        }
        for t in 1..len {
            for j in 0..k {
                let prev = &alpha[(t - 1) * k..t * k];
                alpha[t * k + j] =
                    log_sum_exp((0..k).map(|i| prev[i] + trans[i * k + j])) + em(t, j);
            }
        }
        let last = &alpha[(len - 1) * k..len * k];
        let log_z = log_sum_exp((0..k).map(|j| last[j] + end[j]));
        let mut beta = vec![0.0; len * k];
        beta[(len - 1) * k..].copy_from_slice(end);
        for t in (0..len - 1).rev() {
            for i in 0..k {
                let next = &beta[(t + 1) * k..(t + 2) * k];
                beta[t * k + i] =
                    log_sum_exp((0..k).map(|j| trans[i * k + j] + em(t + 1, j) + next[j]));
            }
        }
        Lattice { alpha, beta, log_z }
    }

    fn path_score(
        k: usize,
        tags: &[u32],
        em: &dyn Fn(usize, usize) -> f64,
        s: &(Vec<f64>, Vec<f64>, Vec<f64>),
    ) -> f64 {
        let (start, end, trans) = s;
        let y = |t: usize| tags[t] as usize;
        let mut v = start[y(0)] + em(0, y(0));
        for t in 1..tags.len() {
            v += trans[y(t - 1) * k + y(t)] + em(t, y(t));
        }
        v + end[y(tags.len() - 1)]
    }

    /// Negative log-likelihood summed over the batch. `em [T, B, K]`, `tags [T, B]`,
    /// `lengths [B]` (each ≥ 1). Without `dem`, only the value.
    pub fn nll(&self, em: &[f32], tags: &[u32], lengths: &[usize], t: usize) -> f64 {
        self.nll_impl(em, tags, lengths, t, None)
    }

    /// [`Crf::nll`] and its gradient: `dem [T, B, K]` receives scale·∂NLL/∂em (padding
    /// positions get zero) and the parameters' gradients accumulate scale·∂NLL/∂θ.
    pub fn nll_backward(
        &mut self,
        em: &[f32],
        tags: &[u32],
        lengths: &[usize],
        t: usize,
        scale: f32,
        dem: &mut [f32],
    ) -> f64 {
        let mut g = CrfGrad {
            dem,
            start: vec![0.0; self.tags()],
            end: vec![0.0; self.tags()],
            trans: vec![0.0; self.tags() * self.tags()],
        };
        let v = self.nll_impl(em, tags, lengths, t, Some(&mut g));
        let add = |p: &mut Param, d: &[f64]| {
            p.g.iter_mut()
                .zip(d)
                .for_each(|(g, d)| *g += scale * *d as f32)
        };
        add(&mut self.start, &g.start);
        add(&mut self.end, &g.end);
        add(&mut self.trans, &g.trans);
        g.dem.iter_mut().for_each(|d| *d *= scale);
        v
    }

    fn nll_impl(
        &self,
        em: &[f32],
        tags: &[u32],
        lengths: &[usize],
        t: usize,
        mut grad: Option<&mut CrfGrad>,
    ) -> f64 {
        let (k, b) = (self.tags(), lengths.len());
        debug_assert_eq!(em.len(), t * b * k);
        let s = self.scores();
        let mut total = 0.0;
        if let Some(g) = grad.as_deref_mut() {
            g.dem.fill(0.0);
        }
        for (bi, &len) in lengths.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let e = |tt: usize, j: usize| em[(tt * b + bi) * k + j] as f64;
            let y: Vec<u32> = (0..len).map(|tt| tags[tt * b + bi]).collect();
            let lat = Self::lattice(k, len, &e, &s);
            total += lat.log_z - Self::path_score(k, &y, &e, &s);
            let Some(g) = grad.as_deref_mut() else {
                continue;
            };
            // ∂logZ: marginals; ∂score: indicators of the gold path.
            let trans = &s.2;
            for tt in 0..len {
                for j in 0..k {
                    let p = (lat.alpha[tt * k + j] + lat.beta[tt * k + j] - lat.log_z).exp();
                    g.dem[(tt * b + bi) * k + j] += p as f32;
                    if tt == 0 {
                        g.start[j] += p;
                    }
                    if tt == len - 1 {
                        g.end[j] += p;
                    }
                }
                if tt > 0 {
                    for i in 0..k {
                        let a = lat.alpha[(tt - 1) * k + i];
                        for j in 0..k {
                            g.trans[i * k + j] +=
                                (a + trans[i * k + j] + e(tt, j) + lat.beta[tt * k + j]
                                    - lat.log_z)
                                    .exp();
                        }
                    }
                }
            }
            let yi = |tt: usize| y[tt] as usize;
            g.start[yi(0)] -= 1.0;
            g.end[yi(len - 1)] -= 1.0;
            for tt in 0..len {
                g.dem[(tt * b + bi) * k + yi(tt)] -= 1.0;
                if tt > 0 {
                    g.trans[yi(tt - 1) * k + yi(tt)] -= 1.0;
                }
            }
        }
        total
    }

    /// The most likely tag sequence of each sequence (Viterbi), `em [T, B, K]`.
    pub fn decode(&self, em: &[f32], lengths: &[usize]) -> Vec<Vec<u32>> {
        let (k, b) = (self.tags(), lengths.len());
        let (start, end, trans) = self.scores();
        lengths
            .iter()
            .enumerate()
            .map(|(bi, &len)| {
                if len == 0 {
                    return Vec::new();
                }
                let e = |tt: usize, j: usize| em[(tt * b + bi) * k + j] as f64;
                let mut score: Vec<f64> = (0..k).map(|j| start[j] + e(0, j)).collect();
                let mut back = vec![0u32; len * k];
                for tt in 1..len {
                    let prev = score.clone();
                    for j in 0..k {
                        let (arg, best) = (0..k)
                            .map(|i| (i, prev[i] + trans[i * k + j]))
                            .fold((0, f64::NEG_INFINITY), |a, c| if c.1 > a.1 { c } else { a });
                        score[j] = best + e(tt, j);
                        back[tt * k + j] = arg as u32;
                    }
                }
                let mut y = (0..k)
                    .map(|j| (j, score[j] + end[j]))
                    .fold((0, f64::NEG_INFINITY), |a, c| if c.1 > a.1 { c } else { a })
                    .0 as u32;
                let mut path = vec![0u32; len];
                for tt in (0..len).rev() {
                    path[tt] = y;
                    if tt > 0 {
                        y = back[tt * k + y as usize];
                    }
                }
                path
            })
            .collect()
    }

    /// Tag marginals p(y_t = j | x) `[T, B, K]` (zero at padding), for confidence scores.
    pub fn marginals(&self, em: &[f32], lengths: &[usize], t: usize) -> Vec<f32> {
        let (k, b) = (self.tags(), lengths.len());
        let s = self.scores();
        let mut out = vec![0.0; t * b * k];
        for (bi, &len) in lengths.iter().enumerate() {
            if len == 0 {
                continue;
            }
            let e = |tt: usize, j: usize| em[(tt * b + bi) * k + j] as f64;
            let lat = Self::lattice(k, len, &e, &s);
            for tt in 0..len {
                for j in 0..k {
                    out[(tt * b + bi) * k + j] =
                        (lat.alpha[tt * k + j] + lat.beta[tt * k + j] - lat.log_z).exp() as f32;
                }
            }
        }
        out
    }
}

struct CrfGrad<'a> {
    dem: &'a mut [f32],
    start: Vec<f64>,
    end: Vec<f64>,
    trans: Vec<f64>,
}

impl Module for Crf {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        f(&self.start);
        f(&self.end);
        f(&self.trans);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        f(&mut self.start);
        f(&mut self.end);
        f(&mut self.trans);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::gradcheck::check;
    use rand::{Rng, SeedableRng};

    struct Harness {
        crf: Crf,
        em: Param,
        tags: Vec<u32>,
        lengths: Vec<usize>,
        t: usize,
    }

    impl Module for Harness {
        fn visit(&self, f: &mut dyn FnMut(&Param)) {
            self.crf.visit(f);
            f(&self.em);
        }
        fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
            self.crf.visit_mut(f);
            f(&mut self.em);
        }
    }

    fn harness(constrained: bool) -> Harness {
        let (t, b, k) = (5, 3, 4);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let mut crf = Crf::new("crf", k, &mut rng);
        if constrained {
            crf.allowed = Some(Allowed {
                start: vec![true, true, false, true],
                end: vec![true, false, true, true],
                trans: (0..k * k).map(|i| i % 5 != 2).collect(),
            });
        }
        let mut em = Param::zeros("em", &[t, b, k]);
        em.w.iter_mut()
            .for_each(|v| *v = rng.random_range(-2.0..2.0));
        // Gold paths that the constraints allow where there are constraints.
        let tags = (0..t * b).map(|i| [0u32, 3, 0, 1][i % 4]).collect();
        Harness {
            crf,
            em,
            tags,
            lengths: vec![5, 2, 1],
            t,
        }
    }

    fn run(h: &mut Harness, backward: bool) -> f64 {
        if backward {
            let mut dem = vec![0.0; h.em.len()];
            let v = h
                .crf
                .nll_backward(&h.em.w, &h.tags, &h.lengths, h.t, 0.7, &mut dem);
            h.em.g.iter_mut().zip(&dem).for_each(|(g, d)| *g += d);
            0.7 * v
        } else {
            0.7 * h.crf.nll(&h.em.w, &h.tags, &h.lengths, h.t)
        }
    }

    /// Every parameter and every emission against finite differences, with and without
    /// constraints, with sequences of several lengths in one batch.
    #[test]
    fn nll_gradients_match_finite_differences() {
        for constrained in [false, true] {
            let mut h = harness(constrained);
            check(&mut h, run);
        }
    }

    /// On a small problem, logZ equals the brute-force sum over every path, Viterbi finds
    /// the best one, the marginals sum to one, and padding gets no gradient.
    #[test]
    fn forward_algorithm_viterbi_and_marginals_match_brute_force() {
        for constrained in [false, true] {
            let h = harness(constrained);
            let (k, b) = (4, 3);
            let s = h.crf.scores();
            for (bi, &len) in h.lengths.iter().enumerate() {
                let e = |tt: usize, j: usize| h.em.w[(tt * b + bi) * k + j] as f64;
                let mut all = Vec::new();
                for code in 0..k.pow(len as u32) {
                    let y: Vec<u32> = (0..len)
                        .map(|p| ((code / k.pow(p as u32)) % k) as u32)
                        .collect();
                    all.push((Crf::path_score(k, &y, &e, &s), y));
                }
                let log_z = log_sum_exp(all.iter().map(|a| a.0));
                let lat = Crf::lattice(k, len, &e, &s);
                assert!((lat.log_z - log_z).abs() < 1e-9, "{log_z} vs {}", lat.log_z);
                let best = all
                    .iter()
                    .fold(&all[0], |a, c| if c.0 > a.0 { c } else { a });
                assert_eq!(h.crf.decode(&h.em.w, &h.lengths)[bi], best.1);
            }
            let m = h.crf.marginals(&h.em.w, &h.lengths, h.t);
            for (p, row) in m.chunks_exact(k).enumerate() {
                let sum: f32 = row.iter().sum();
                let real = (p / b) < h.lengths[p % b];
                assert!((sum - if real { 1.0 } else { 0.0 }).abs() < 1e-5);
            }
        }
    }
}
