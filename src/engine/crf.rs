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

fn log_sum_exp(v: impl Iterator<Item = f64> + Clone) -> f64 {
    let m = v.clone().fold(f64::NEG_INFINITY, f64::max);
    if m == f64::NEG_INFINITY {
        return m;
    }
    m + v.map(|x| (x - m).exp()).sum::<f64>().ln()
}

/// A batch's effective scores (learned plus constraints) in log space and, shifted by their
/// maxima so that nothing overflows, in exp space: the forward-backward pass multiplies
/// where the log-space one would need an `exp` per (from, to) pair.
struct Scores {
    k: usize,
    start: Vec<f64>,
    end: Vec<f64>,
    /// `[K, K]`, `[from, to]`.
    trans: Vec<f64>,
    exp_start: Vec<f64>,
    exp_end: Vec<f64>,
    exp_trans: Vec<f64>,
    /// The maxima taken out of start, end and trans before `exp`.
    max: (f64, f64, f64),
}

fn exp_shifted(v: &[f64]) -> (Vec<f64>, f64) {
    let m = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    (v.iter().map(|x| (x - m).exp()).collect(), m)
}

/// What the forward-backward pass gives of one sequence.
struct Posterior {
    log_z: f64,
    /// p(y_t = j | x), `[L, K]`.
    unary: Vec<f64>,
}

impl Scores {
    fn path_score(&self, e: &[f64], tags: &[u32]) -> f64 {
        let k = self.k;
        let y = |t: usize| tags[t] as usize;
        let mut v = self.start[y(0)] + e[y(0)];
        for t in 1..tags.len() {
            v += self.trans[y(t - 1) * k + y(t)] + e[t * k + y(t)];
        }
        v + self.end[y(tags.len() - 1)]
    }

    /// log Z and the tag marginals of one sequence with emissions `e [L, K]`; with `pair`
    /// `[K, K]`, the transition marginals Σ_t p(y_{t−1} = i, y_t = j | x) are added to it.
    fn posterior(&self, e: &[f64], pair: Option<&mut [f64]>) -> Posterior {
        self.posterior_scaled(e, pair)
            .unwrap_or_else(|pair| self.posterior_log(e, pair))
    }

    /// Rabiner's scaled forward-backward: α̂_t and β̂_t are renormalised at every step and
    /// log Z collects the scales. Gives the pair buffer back (untouched) when a scale is
    /// zero: the allowed paths are e^-700 times less likely than a forbidden one and
    /// underflow.
    fn posterior_scaled<'a>(
        &self,
        e: &[f64],
        pair: Option<&'a mut [f64]>,
    ) -> std::result::Result<Posterior, Option<&'a mut [f64]>> {
        let k = self.k;
        let len = e.len() / k;
        let (ms, me, mt) = self.max;
        // x_t(j) = exp(e_t(j) − max_j e_t).
        let mut x = vec![0.0; len * k];
        let mut log_z = ms + me + mt * (len - 1) as f64;
        for (xr, er) in x.chunks_exact_mut(k).zip(e.chunks_exact(k)) {
            let m = er.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            xr.iter_mut().zip(er).for_each(|(x, e)| *x = (e - m).exp());
            log_z += m;
        }
        let ok = |c: f64| c > 0.0 && c.is_finite();
        let mut alpha = vec![0.0; len * k];
        // The scale of each step, c_t = Σ_j α_t(j) before renormalising.
        let mut scale = vec![0.0; len];
        for t in 0..len {
            let (done, rest) = alpha.split_at_mut(t * k);
            let a = &mut rest[..k];
            let xt = &x[t * k..(t + 1) * k];
            if t == 0 {
                a.iter_mut()
                    .zip(&self.exp_start)
                    .zip(xt)
                    .for_each(|((a, s), x)| *a = s * x);
            } else {
                for (i, &p) in done[(t - 1) * k..].iter().enumerate() {
                    let row = &self.exp_trans[i * k..(i + 1) * k];
                    a.iter_mut().zip(row).for_each(|(a, r)| *a += p * r);
                }
                a.iter_mut().zip(xt).for_each(|(a, x)| *a *= x);
            }
            let c: f64 = a.iter().sum();
            if !ok(c) {
                return Err(pair);
            }
            a.iter_mut().for_each(|a| *a /= c);
            scale[t] = c;
            log_z += c.ln();
        }
        let last = &alpha[(len - 1) * k..];
        let z: f64 = last.iter().zip(&self.exp_end).map(|(a, e)| a * e).sum();
        if !ok(z) {
            return Err(pair);
        }
        log_z += z.ln();
        let mut beta = vec![0.0; len * k];
        beta[(len - 1) * k..].copy_from_slice(&self.exp_end);
        for t in (0..len).rev() {
            if t + 1 < len {
                let (cur, next) = beta.split_at_mut((t + 1) * k);
                // w_j = x_{t+1}(j) β̂_{t+1}(j), then β_t(i) = Σ_j trans(i, j) w_j.
                let w: Vec<f64> = next[..k]
                    .iter()
                    .zip(&x[(t + 1) * k..(t + 2) * k])
                    .map(|(b, x)| b * x)
                    .collect();
                for (i, b) in cur[t * k..].iter_mut().enumerate() {
                    let row = &self.exp_trans[i * k..(i + 1) * k];
                    *b = row.iter().zip(&w).map(|(r, w)| r * w).sum();
                }
            }
            let bt = &mut beta[t * k..(t + 1) * k];
            let d: f64 = bt.iter().sum();
            if !ok(d) {
                return Err(pair);
            }
            bt.iter_mut().for_each(|b| *b /= d);
        }
        // p_t(j) ∝ α̂_t(j) β̂_t(j); n_t is that product's sum.
        let mut unary: Vec<f64> = alpha.iter().zip(&beta).map(|(a, b)| a * b).collect();
        let mut norm = vec![0.0; len];
        for (u, n) in unary.chunks_exact_mut(k).zip(&mut norm) {
            *n = u.iter().sum();
            if !ok(*n) {
                return Err(pair);
            }
            u.iter_mut().for_each(|u| *u /= *n);
        }
        if let Some(pair) = pair {
            // ξ_t(i, j) = α̂_{t−1}(i) trans(i, j) x_t(j) β̂_t(j) / (c_t n_t).
            for t in 1..len {
                let d = scale[t] * norm[t];
                let w: Vec<f64> = x[t * k..(t + 1) * k]
                    .iter()
                    .zip(&beta[t * k..(t + 1) * k])
                    .map(|(x, b)| x * b / d)
                    .collect();
                for (i, &a) in alpha[(t - 1) * k..t * k].iter().enumerate() {
                    let row = &self.exp_trans[i * k..(i + 1) * k];
                    let out = &mut pair[i * k..(i + 1) * k];
                    for ((o, r), w) in out.iter_mut().zip(row).zip(&w) {
                        *o += a * r * w;
                    }
                }
            }
        }
        Ok(Posterior { log_z, unary })
    }

    /// The same in log space, an `exp` per entry: slower, but finite when every path is
    /// forbidden (the forbidden score is finite) or the emissions are extreme.
    fn posterior_log(&self, e: &[f64], pair: Option<&mut [f64]>) -> Posterior {
        let k = self.k;
        let len = e.len() / k;
        let trans = &self.trans;
        let mut alpha = vec![0.0; len * k];
        for j in 0..k {
            alpha[j] = self.start[j] + e[j];
        }
        for t in 1..len {
            for j in 0..k {
                let prev = &alpha[(t - 1) * k..t * k];
                alpha[t * k + j] =
                    log_sum_exp((0..k).map(|i| prev[i] + trans[i * k + j])) + e[t * k + j];
            }
        }
        let last = &alpha[(len - 1) * k..len * k];
        let log_z = log_sum_exp((0..k).map(|j| last[j] + self.end[j]));
        let mut beta = vec![0.0; len * k];
        beta[(len - 1) * k..].copy_from_slice(&self.end);
        for t in (0..len - 1).rev() {
            for i in 0..k {
                let next = &beta[(t + 1) * k..(t + 2) * k];
                beta[t * k + i] =
                    log_sum_exp((0..k).map(|j| trans[i * k + j] + e[(t + 1) * k + j] + next[j]));
            }
        }
        let unary = alpha
            .iter()
            .zip(&beta)
            .map(|(a, b)| (a + b - log_z).exp())
            .collect();
        if let Some(pair) = pair {
            for t in 1..len {
                for i in 0..k {
                    let a = alpha[(t - 1) * k + i];
                    for j in 0..k {
                        pair[i * k + j] +=
                            (a + trans[i * k + j] + e[t * k + j] + beta[t * k + j] - log_z).exp();
                    }
                }
            }
        }
        Posterior { log_z, unary }
    }
}

/// Sequence `bi`'s emissions `[len, K]` gathered from time-major `em [T, B, K]`.
fn gather(em: &[f32], k: usize, b: usize, bi: usize, len: usize) -> Vec<f64> {
    let mut e = Vec::with_capacity(len * k);
    for t in 0..len {
        e.extend(
            em[(t * b + bi) * k..(t * b + bi + 1) * k]
                .iter()
                .map(|&v| v as f64),
        );
    }
    e
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

    /// Effective scores (learned plus constraints), in log and exp space.
    fn scores(&self) -> Scores {
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
        let start = eff(&self.start, a.map(|a| &a.start));
        let end = eff(&self.end, a.map(|a| &a.end));
        let trans = eff(&self.trans, a.map(|a| &a.trans));
        let (exp_start, ms) = exp_shifted(&start);
        let (exp_end, me) = exp_shifted(&end);
        let (exp_trans, mt) = exp_shifted(&trans);
        Scores {
            k: self.tags(),
            start,
            end,
            trans,
            exp_start,
            exp_end,
            exp_trans,
            max: (ms, me, mt),
        }
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
            let e = gather(em, k, b, bi, len);
            let y: Vec<u32> = (0..len).map(|tt| tags[tt * b + bi]).collect();
            let Some(g) = grad.as_deref_mut() else {
                total += s.posterior(&e, None).log_z - s.path_score(&e, &y);
                continue;
            };
            // ∂logZ: the marginals; ∂score: indicators of the gold path.
            let post = s.posterior(&e, Some(&mut g.trans));
            total += post.log_z - s.path_score(&e, &y);
            for (tt, p) in post.unary.chunks_exact(k).enumerate() {
                let d = &mut g.dem[(tt * b + bi) * k..(tt * b + bi + 1) * k];
                d.iter_mut().zip(p).for_each(|(d, &p)| *d += p as f32);
                d[y[tt] as usize] -= 1.0;
            }
            g.start
                .iter_mut()
                .zip(&post.unary[..k])
                .for_each(|(g, p)| *g += p);
            let last = &post.unary[(len - 1) * k..];
            g.end.iter_mut().zip(last).for_each(|(g, p)| *g += p);
            g.start[y[0] as usize] -= 1.0;
            g.end[y[len - 1] as usize] -= 1.0;
            for w in y.windows(2) {
                g.trans[w[0] as usize * k + w[1] as usize] -= 1.0;
            }
        }
        total
    }

    /// The most likely tag sequence of each sequence (Viterbi), `em [T, B, K]`. Ties go to
    /// the lowest tag id.
    pub fn decode(&self, em: &[f32], lengths: &[usize]) -> Vec<Vec<u32>> {
        let (k, b) = (self.tags(), lengths.len());
        let s = self.scores();
        // (index, value) of the largest, the first on ties.
        fn argmax(v: impl Iterator<Item = f64>) -> (usize, f64) {
            v.enumerate()
                .fold((0, f64::NEG_INFINITY), |a, c| if c.1 > a.1 { c } else { a })
        }
        lengths
            .iter()
            .enumerate()
            .map(|(bi, &len)| {
                if len == 0 {
                    return Vec::new();
                }
                let e = gather(em, k, b, bi, len);
                let mut score: Vec<f64> = s.start.iter().zip(&e[..k]).map(|(a, e)| a + e).collect();
                let mut next = vec![0.0; k];
                let mut back = vec![0u32; len * k];
                for tt in 1..len {
                    for j in 0..k {
                        let (arg, best) = argmax((0..k).map(|i| score[i] + s.trans[i * k + j]));
                        next[j] = best + e[tt * k + j];
                        back[tt * k + j] = arg as u32;
                    }
                    std::mem::swap(&mut score, &mut next);
                }
                let mut y = argmax(score.iter().zip(&s.end).map(|(a, e)| a + e)).0 as u32;
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
            let post = s.posterior(&gather(em, k, b, bi, len), None);
            for (tt, p) in post.unary.chunks_exact(k).enumerate() {
                out[(tt * b + bi) * k..(tt * b + bi + 1) * k]
                    .iter_mut()
                    .zip(p)
                    .for_each(|(o, &p)| *o = p as f32);
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

    /// On a small problem, logZ equals the brute-force sum over every path (in both the
    /// scaled and the log-space pass), Viterbi finds the best path, the marginals sum to
    /// one, and the two passes agree on every marginal.
    #[test]
    fn forward_algorithm_viterbi_and_marginals_match_brute_force() {
        for constrained in [false, true] {
            let h = harness(constrained);
            let (k, b) = (4, 3);
            let s = h.crf.scores();
            for (bi, &len) in h.lengths.iter().enumerate() {
                let e = gather(&h.em.w, k, b, bi, len);
                let mut all = Vec::new();
                for code in 0..k.pow(len as u32) {
                    let y: Vec<u32> = (0..len)
                        .map(|p| ((code / k.pow(p as u32)) % k) as u32)
                        .collect();
                    all.push((s.path_score(&e, &y), y));
                }
                let log_z = log_sum_exp(all.iter().map(|a| a.0));
                let mut pair = (vec![0.0; k * k], vec![0.0; k * k]);
                let fast = s.posterior_scaled(&e, Some(&mut pair.0)).ok().unwrap();
                let slow = s.posterior_log(&e, Some(&mut pair.1));
                for p in [&fast, &slow] {
                    assert!((p.log_z - log_z).abs() < 1e-9, "{log_z} vs {}", p.log_z);
                }
                for (a, b) in fast
                    .unary
                    .iter()
                    .zip(&slow.unary)
                    .chain(pair.0.iter().zip(&pair.1))
                {
                    assert!((a - b).abs() < 1e-12, "{a} vs {b}");
                }
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

    /// When every path is forbidden, the shift by the largest score keeps the scaled pass
    /// finite; when the only allowed paths are e^-700 times less likely than a forbidden
    /// one, they underflow, the scaled pass gives up and the log-space one answers. Either
    /// way the NLL is finite and the marginals sum to one.
    #[test]
    fn extreme_inputs_fall_back_to_log_space() {
        let mut h = harness(false);
        let k = 4;
        h.crf.allowed = Some(Allowed {
            start: vec![true; k],
            end: vec![true; k],
            trans: vec![false; k * k],
        });
        // Sequence 0 must go from tag 0 to tag 1 (the other moves are e^-1000 times less
        // likely, which underflows), and that move is forbidden.
        let mut wide = harness(false);
        wide.crf.allowed = Some(Allowed {
            start: vec![true; k],
            end: vec![true; k],
            trans: (0..k * k).map(|i| i != 1).collect(),
        });
        wide.em.w.fill(0.0);
        wide.em.w[0] = 1e3;
        wide.em.w[3 * k + 1] = 1e3;
        for (h, falls_back) in [(h, false), (wide, true)] {
            let s = h.crf.scores();
            let e = gather(&h.em.w, k, 3, 0, 5);
            assert_eq!(s.posterior_scaled(&e, None).is_err(), falls_back);
            let v = h.crf.nll(&h.em.w, &h.tags, &h.lengths, h.t);
            assert!(v.is_finite(), "{v}");
            for row in h
                .crf
                .marginals(&h.em.w, &h.lengths, h.t)
                .chunks_exact(k)
                .take(3)
            {
                assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4, "{row:?}");
            }
        }
    }
}
