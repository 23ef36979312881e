//! Attention over a sequence of encoder states, as the lecture writes it:
//!
//! ```text
//! α_ti = softmax_i(sim(s, y_i))      over the real (unpadded) positions i
//! d    = Σ_i α_ti y_i
//! ```
//!
//! with `sim(x, y)` one of ⟨x, y⟩ (dot; equal sizes), xᵀW y (bilinear, Luong's "general")
//! or vᵀ tanh(W x + U y) (additive, Bahdanau et al. 2015). The dot and bilinear scores are
//! scaled by 1/√Dk by default, as in Vaswani et al. 2017 ("Attention is all you need",
//! §3.2.1): a dot product of Dk roughly unit-variance terms grows like √Dk, and unscaled
//! (Luong et al. 2015's forms, kept as [`Score::Dot`] and [`Score::General`]) it saturates
//! the softmax at one position (a mean max α of 0.99 on Multi30k, docs/results.md). A decoder calls [`Attention::step`]
//! once per output step with its state `s [B, Dq]` against the same keys `y [T, B, Dk]`, so
//! what depends on the keys alone (additive: U y) is computed once by [`Attention::prepare`],
//! and its gradient is sent back once by [`Attention::finish`] after the last step's backward.
//!
//! Parameters (PyTorch-style names under a prefix): `{p}.weight` (general `[Dq, Dk]`;
//! additive W `[A, Dq]`), `{p}.key_weight` (additive U `[A, Dk]`), `{p}.v` (additive `[A]`).

use super::init;
use super::ops::{dot, matmul, tanh};
use super::param::{Module, Param};
use crate::engine::ops::Mat;
use crate::error::{Error, Result};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// The similarity. In a config: `scaled_dot`, `scaled_general`, `additive`, and the unscaled
/// `dot_unscaled` and `general_unscaled` (saved as `dot` and `general` before the scaled
/// forms existed, which still load as the unscaled ones).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Score {
    /// ⟨s, y⟩, unscaled (Luong et al. 2015).
    #[serde(rename = "dot_unscaled", alias = "dot")]
    Dot,
    /// sᵀW y, unscaled (Luong et al. 2015's "general").
    #[serde(rename = "general_unscaled", alias = "general")]
    General,
    /// ⟨s, y⟩ / √Dk.
    ScaledDot,
    /// sᵀW y / √Dk.
    ScaledGeneral,
    Additive,
}

/// The three ways of computing a score; scaling is a factor on top.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Form {
    Dot,
    General,
    Additive,
}

impl Score {
    /// An `--attention` value: a score, or `none` for the plain encoder-decoder.
    pub fn parse_option(s: &str) -> Result<Option<Score>> {
        match s {
            "none" => Ok(None),
            s => s.parse().map(Some),
        }
    }

    /// Whether the score is a dot product of the query with the keys themselves (no
    /// weights, so the sizes must be equal).
    pub fn is_dot(self) -> bool {
        self.form() == Form::Dot
    }

    /// Whether the score has a bilinear weight W `[Dq, Dk]`.
    pub fn is_general(self) -> bool {
        self.form() == Form::General
    }

    fn form(self) -> Form {
        match self {
            Score::Dot | Score::ScaledDot => Form::Dot,
            Score::General | Score::ScaledGeneral => Form::General,
            Score::Additive => Form::Additive,
        }
    }

    /// The factor on the raw score for keys `key_dim` wide: 1/√Dk when scaled, else 1.
    pub fn scale(self, key_dim: usize) -> f32 {
        match self {
            Score::ScaledDot | Score::ScaledGeneral => 1.0 / (key_dim.max(1) as f32).sqrt(),
            _ => 1.0,
        }
    }
}

impl std::str::FromStr for Score {
    type Err = Error;
    /// The command line's names: `dot` and `general` (or `bilinear`) are the scaled forms,
    /// `dot-unscaled` and `general-unscaled` Luong's; the config's names are accepted too.
    fn from_str(s: &str) -> Result<Score> {
        match s.replace('-', "_").as_str() {
            "dot" | "scaled_dot" => Ok(Score::ScaledDot),
            "general" | "bilinear" | "scaled_general" => Ok(Score::ScaledGeneral),
            "dot_unscaled" => Ok(Score::Dot),
            "general_unscaled" | "bilinear_unscaled" => Ok(Score::General),
            "additive" | "bahdanau" => Ok(Score::Additive),
            _ => Err(Error::config(format!(
                "{s:?}: expected dot, general, additive, dot-unscaled or general-unscaled"
            ))),
        }
    }
}

pub struct Attention {
    pub score: Score,
    pub query_dim: usize,
    pub key_dim: usize,
    /// General: W `[Dq, Dk]`; additive: W `[A, Dq]`.
    pub weight: Option<Param>,
    /// Additive: U `[A, Dk]`.
    pub key_weight: Option<Param>,
    /// Additive: v `[A]`.
    pub v: Option<Param>,
}

/// The keys of one batch, with what depends on them alone.
pub struct Keys<'a> {
    /// `[T, B, Dk]`, time-major.
    pub y: &'a [f32],
    pub t: usize,
    pub b: usize,
    pub lengths: &'a [usize],
    /// Additive: U y `[T·B, A]`.
    uy: Vec<f32>,
    /// Additive: the gradient accumulated for U y over the steps.
    duy: Vec<f32>,
}

/// What [`Attention::backward`] needs from one step.
pub struct StepCache {
    /// The query `[B, Dq]`.
    q: Vec<f32>,
    /// Weights `[B, T]` (zero at padding).
    pub alpha: Vec<f32>,
    /// General: the projected query q W `[B, Dk]`; additive: tanh(W q + U y) `[T·B, A]`.
    proj: Vec<f32>,
}

impl Attention {
    /// `dot` needs `query_dim == key_dim`; the others take any sizes (`attn_dim` A is the
    /// additive hidden size).
    pub fn new(
        prefix: &str,
        score: Score,
        query_dim: usize,
        key_dim: usize,
        attn_dim: usize,
        rng: &mut dyn RngCore,
    ) -> Result<Attention> {
        if score.is_dot() && query_dim != key_dim {
            return Err(Error::config(format!(
                "dot attention needs equal sizes, but the decoder state is {query_dim} wide and the encoder states {key_dim}; project the encoder states or use general or additive"
            )));
        }
        let p = |n: &str, shape: &[usize], fan_in: usize, rng: &mut dyn RngCore| {
            let mut w = Param::zeros(format!("{prefix}.{n}"), shape);
            init::uniform(&mut w, 1.0 / (fan_in as f32).sqrt(), rng);
            w
        };
        let (weight, key_weight, v) = match score.form() {
            Form::Dot => (None, None, None),
            Form::General => (
                Some(p("weight", &[query_dim, key_dim], key_dim, rng)),
                None,
                None,
            ),
            Form::Additive => (
                Some(p("weight", &[attn_dim, query_dim], query_dim, rng)),
                Some(p("key_weight", &[attn_dim, key_dim], key_dim, rng)),
                Some(p("v", &[attn_dim], attn_dim, rng)),
            ),
        };
        Ok(Attention {
            score,
            query_dim,
            key_dim,
            weight,
            key_weight,
            v,
        })
    }

    fn attn_dim(&self) -> usize {
        self.v.as_ref().map_or(0, |v| v.len())
    }

    /// Prepares the keys `y [T, B, Dk]` of a batch for the steps of a decoder.
    pub fn prepare<'a>(&self, y: &'a [f32], t: usize, b: usize, lengths: &'a [usize]) -> Keys<'a> {
        let mut uy = Vec::new();
        if let Some(u) = &self.key_weight {
            let a = self.attn_dim();
            uy = vec![0.0; t * b * a];
            matmul(
                &mut uy,
                [t * b, a, self.key_dim],
                Mat::n(y),
                Mat::t(&u.w),
                false,
            );
        }
        let duy = vec![0.0; uy.len()];
        Keys {
            y,
            t,
            b,
            lengths,
            uy,
            duy,
        }
    }

    /// One step: queries `q [B, Dq]` → context `[B, Dk]` and the step's cache (its `alpha`
    /// are the attention weights, for maps). Without `keep` (decoding), the cache cannot
    /// serve [`Attention::backward`]: additive attention then stores no projection.
    pub fn step(&self, q: &[f32], k: &Keys, keep: bool) -> (Vec<f32>, StepCache) {
        let (t, b, dk) = (k.t, k.b, self.key_dim);
        let mut scores = vec![0.0f32; b * t];
        let mut proj = Vec::new();
        let scale = self.score.scale(dk);
        match self.score.form() {
            Form::Dot => {
                for j in 0..b {
                    for i in 0..k.lengths[j] {
                        scores[j * t + i] =
                            scale * dot(&q[j * dk..(j + 1) * dk], row(k.y, i, j, b, dk));
                    }
                }
            }
            Form::General => {
                // xᵀW y = (Wᵀx)·y: project the query once, then one dot per position.
                let w = &self.weight.as_ref().expect("general weight").w;
                proj = vec![0.0; b * dk];
                matmul(
                    &mut proj,
                    [b, dk, self.query_dim],
                    Mat::n(q),
                    Mat::n(w),
                    false,
                );
                for j in 0..b {
                    for i in 0..k.lengths[j] {
                        scores[j * t + i] =
                            scale * dot(&proj[j * dk..(j + 1) * dk], row(k.y, i, j, b, dk));
                    }
                }
            }
            Form::Additive => {
                let a = self.attn_dim();
                let w = &self.weight.as_ref().expect("additive weight").w;
                let v = &self.v.as_ref().expect("additive v").w;
                let mut wq = vec![0.0; b * a];
                matmul(&mut wq, [b, a, self.query_dim], Mat::n(q), Mat::t(w), false);
                // Decoding keeps no `[T, B, A]` projection (18 MB a step for a beam of 5 over
                // 128 sentences, written and zeroed for nothing).
                if keep {
                    proj = vec![0.0; t * b * a];
                }
                additive_scores(&mut proj, &mut scores, &wq, &k.uy, v, k.lengths, t);
            }
        }
        let mut alpha = vec![0.0; b * t];
        let mut ctx = vec![0.0; b * dk];
        for j in 0..b {
            let n = k.lengths[j];
            if n == 0 {
                continue;
            }
            let s = &scores[j * t..j * t + n];
            let m = s.iter().fold(f32::NEG_INFINITY, |a, &x| a.max(x));
            let z: f32 = s.iter().map(|&x| (x - m).exp()).sum();
            for i in 0..n {
                let al = (s[i] - m).exp() / z;
                alpha[j * t + i] = al;
                ctx[j * dk..(j + 1) * dk]
                    .iter_mut()
                    .zip(row(k.y, i, j, b, dk))
                    .for_each(|(c, y)| *c += al * y);
            }
        }
        (
            ctx,
            StepCache {
                q: q.to_vec(),
                alpha,
                proj,
            },
        )
    }

    /// Backward of one step: dL/d(context) `[B, Dk]` → adds dL/dq into `dq [B, Dq]` and
    /// dL/dy into `dy [T, B, Dk]`; accumulates the parameters' gradients (additive: U's
    /// part is sent back by [`Attention::finish`]).
    pub fn backward(
        &mut self,
        c: &StepCache,
        k: &mut Keys,
        dctx: &[f32],
        dq: &mut [f32],
        dy: &mut [f32],
    ) {
        let (t, b, dk, dq_dim) = (k.t, k.b, self.key_dim, self.query_dim);
        let scale = self.score.scale(dk);
        // d = Σ α_i y_i: dy_i += α_i dd; dα_i = dd·y_i; ds_i = α_i (dα_i − Σ α dα).
        let mut ds = vec![0.0f32; b * t];
        for j in 0..b {
            let n = k.lengths[j];
            let dd = &dctx[j * dk..(j + 1) * dk];
            let mut mean = 0.0;
            for i in 0..n {
                let al = c.alpha[j * t + i];
                let da = dot(dd, row(k.y, i, j, b, dk));
                ds[j * t + i] = da;
                mean += al * da;
                dy[(i * b + j) * dk..(i * b + j + 1) * dk]
                    .iter_mut()
                    .zip(dd)
                    .for_each(|(g, d)| *g += al * d);
            }
            for i in 0..n {
                // The scale s in s·raw: d raw = s · d score.
                ds[j * t + i] = scale * c.alpha[j * t + i] * (ds[j * t + i] - mean);
            }
        }
        match self.score.form() {
            Form::Dot => {
                for j in 0..b {
                    for i in 0..k.lengths[j] {
                        let g = ds[j * t + i];
                        let (qr, yr) = (&c.q[j * dk..(j + 1) * dk], row(k.y, i, j, b, dk));
                        dq[j * dk..(j + 1) * dk]
                            .iter_mut()
                            .zip(yr)
                            .for_each(|(d, y)| *d += g * y);
                        dy[(i * b + j) * dk..(i * b + j + 1) * dk]
                            .iter_mut()
                            .zip(qr)
                            .for_each(|(d, q)| *d += g * q);
                    }
                }
            }
            Form::General => {
                // s_i = p·y_i with p = Wᵀq: dp = Σ ds_i y_i, dy_i += ds_i p.
                let mut dp = vec![0.0; b * dk];
                for j in 0..b {
                    for i in 0..k.lengths[j] {
                        let g = ds[j * t + i];
                        let yr = row(k.y, i, j, b, dk);
                        dp[j * dk..(j + 1) * dk]
                            .iter_mut()
                            .zip(yr)
                            .for_each(|(d, y)| *d += g * y);
                        dy[(i * b + j) * dk..(i * b + j + 1) * dk]
                            .iter_mut()
                            .zip(&c.proj[j * dk..(j + 1) * dk])
                            .for_each(|(d, p)| *d += g * p);
                    }
                }
                let w = self.weight.as_mut().expect("general weight");
                // p = q W (q [B, Dq], W [Dq, Dk]): dW += qᵀ dp, dq += dp Wᵀ.
                matmul(&mut w.g, [dq_dim, dk, b], Mat::t(&c.q), Mat::n(&dp), true);
                matmul(dq, [b, dq_dim, dk], Mat::n(&dp), Mat::t(&w.w), true);
            }
            Form::Additive => {
                let a = self.attn_dim();
                let v = self.v.as_mut().expect("additive v");
                // s_i = v·h_i, h_i = tanh(W q + U y_i): dv += Σ ds_i h_i;
                // dpre_i = ds_i v ∘ (1 − h_i²), summed over i for W q, kept per i for U y.
                let mut dwq = vec![0.0; b * a];
                let grads = AdditiveGrads {
                    dwq: &mut dwq,
                    duy: &mut k.duy,
                    dv: &mut v.g,
                };
                additive_backward(grads, &v.w, &c.proj, &ds, k.lengths, t);
                let w = self.weight.as_mut().expect("additive weight");
                // W q (W [A, Dq]): dW += dwqᵀ q, dq += dwq W.
                matmul(&mut w.g, [a, dq_dim, b], Mat::t(&dwq), Mat::n(&c.q), true);
                matmul(dq, [b, dq_dim, a], Mat::n(&dwq), Mat::n(&w.w), true);
            }
        }
    }

    /// After the last step's backward: sends the gradient of U y (additive) back into U and
    /// `dy [T, B, Dk]`.
    pub fn finish(&mut self, k: &Keys, dy: &mut [f32]) {
        if let Some(u) = &mut self.key_weight {
            let (a, dk, n) = (u.shape[0], self.key_dim, k.t * k.b);
            matmul(&mut u.g, [a, dk, n], Mat::t(&k.duy), Mat::n(k.y), true);
            matmul(dy, [n, dk, a], Mat::n(&k.duy), Mat::n(&u.w), true);
        }
    }
}

crate::multiversion!(
    /// Additive scores: `h_ji = tanh(wq_j + uy_ji)` into `proj [T, B, A]` (or nowhere, when
    /// `proj` is empty) and `scores[j·T + i] = v·h_ji` over each row's real positions
    /// (`wq [B, A]`, `uy [T, B, A]`).
    fn additive_scores(
        proj: &mut [f32],
        scores: &mut [f32],
        wq: &[f32],
        uy: &[f32],
        v: &[f32],
        lengths: &[usize],
        t: usize
    ) => additive_scores_body
);

#[inline(always)]
fn additive_scores_body(
    proj: &mut [f32],
    scores: &mut [f32],
    wq: &[f32],
    uy: &[f32],
    v: &[f32],
    lengths: &[usize],
    t: usize,
) {
    let (a, b) = (v.len(), lengths.len());
    let mut scratch = if proj.is_empty() {
        vec![0.0; a]
    } else {
        Vec::new()
    };
    for (j, &n) in lengths.iter().enumerate() {
        let q = &wq[j * a..(j + 1) * a];
        for i in 0..n {
            let r = (i * b + j) * a..(i * b + j + 1) * a;
            let p = match scratch.is_empty() {
                true => &mut proj[r.clone()],
                false => &mut scratch[..],
            };
            for ((pv, &x), &u) in p.iter_mut().zip(q).zip(&uy[r]) {
                *pv = tanh(x + u);
            }
            scores[j * t + i] = dot(p, v);
        }
    }
}

crate::multiversion!(
    /// Backward of [`additive_scores`] given `ds [B, T]`: `dv += Σ ds_ji h_ji`, and
    /// `dpre = ds_ji v ∘ (1 − h_ji²)` summed over i into `dwq [B, A]`, kept per i in `duy`.
    fn additive_backward(
        grads: AdditiveGrads<'_>,
        v: &[f32],
        proj: &[f32],
        ds: &[f32],
        lengths: &[usize],
        t: usize
    ) => additive_backward_body
);

/// Where [`additive_backward`] adds its gradients: `dwq [B, A]`, `duy [T, B, A]`, `dv [A]`.
struct AdditiveGrads<'a> {
    dwq: &'a mut [f32],
    duy: &'a mut [f32],
    dv: &'a mut [f32],
}

#[inline(always)]
fn additive_backward_body(
    AdditiveGrads { dwq, duy, dv }: AdditiveGrads<'_>,
    v: &[f32],
    proj: &[f32],
    ds: &[f32],
    lengths: &[usize],
    t: usize,
) {
    let (a, b) = (v.len(), lengths.len());
    for (j, &n) in lengths.iter().enumerate() {
        let dq = &mut dwq[j * a..(j + 1) * a];
        for i in 0..n {
            let g = ds[j * t + i];
            let r = (i * b + j) * a..(i * b + j + 1) * a;
            let h = &proj[r.clone()];
            for ((((dvm, &vm), &hm), dqm), du) in dv
                .iter_mut()
                .zip(v)
                .zip(h)
                .zip(dq.iter_mut())
                .zip(&mut duy[r])
            {
                *dvm += g * hm;
                let dpre = g * vm * (1.0 - hm * hm);
                *dqm += dpre;
                *du += dpre;
            }
        }
    }
}

fn row(y: &[f32], i: usize, j: usize, b: usize, d: usize) -> &[f32] {
    &y[(i * b + j) * d..(i * b + j + 1) * d]
}

impl Module for Attention {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        for p in [&self.weight, &self.key_weight, &self.v]
            .into_iter()
            .flatten()
        {
            f(p);
        }
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        for p in [&mut self.weight, &mut self.key_weight, &mut self.v]
            .into_iter()
            .flatten()
        {
            f(p);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    struct H {
        att: Attention,
        y: Param,
        q: Param,
        r: Vec<f32>,
        t: usize,
        b: usize,
        steps: usize,
        lengths: Vec<usize>,
    }

    impl Module for H {
        fn visit(&self, f: &mut dyn FnMut(&Param)) {
            self.att.visit(f);
            f(&self.y);
            f(&self.q);
        }
        fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
            self.att.visit_mut(f);
            f(&mut self.y);
            f(&mut self.q);
        }
    }

    /// Several decoder steps against one set of keys (padded, sequences of three lengths):
    /// L = Σ_steps Σ r·context. Every parameter, the keys and the queries against finite
    /// differences, for each similarity.
    #[test]
    fn attention_gradients_match_finite_differences() {
        for (score, dq) in [
            (Score::Dot, 4),
            (Score::ScaledDot, 4),
            (Score::General, 3),
            (Score::ScaledGeneral, 3),
            (Score::Additive, 3),
        ] {
            let (t, b, dk, steps) = (5, 3, 4, 2);
            let mut rng = rand::rngs::StdRng::seed_from_u64(8);
            let att = Attention::new("att", score, dq, dk, 6, &mut rng).unwrap();
            let mut rp = |name: &str, n: usize| {
                let mut p = Param::zeros(name, &[n]);
                p.w.iter_mut()
                    .for_each(|v| *v = rng.random_range(-1.0..1.0));
                p
            };
            let y = rp("y", t * b * dk);
            let q = rp("q", steps * b * dq);
            let r = rp("r", steps * b * dk).w;
            let mut h = H {
                att,
                y,
                q,
                r,
                t,
                b,
                steps,
                lengths: vec![5, 2, 3],
            };
            crate::engine::gradcheck::check(&mut h, |h: &mut H, backward| {
                let (t, b, dk) = (h.t, h.b, h.att.key_dim);
                let dq = h.att.query_dim;
                let mut keys = h.att.prepare(&h.y.w, t, b, &h.lengths);
                let mut loss = 0.0;
                let mut caches = Vec::new();
                for s in 0..h.steps {
                    let (ctx, c) = h
                        .att
                        .step(&h.q.w[s * b * dq..(s + 1) * b * dq], &keys, true);
                    loss += ctx
                        .iter()
                        .zip(&h.r[s * b * dk..])
                        .map(|(a, r)| (a * r) as f64)
                        .sum::<f64>();
                    caches.push(c);
                }
                if backward {
                    let mut dy = vec![0.0; h.y.len()];
                    let mut dqs = vec![0.0; h.q.len()];
                    for (s, c) in caches.iter().enumerate().rev() {
                        let dctx = h.r[s * b * dk..(s + 1) * b * dk].to_vec();
                        h.att.backward(
                            c,
                            &mut keys,
                            &dctx,
                            &mut dqs[s * b * dq..(s + 1) * b * dq],
                            &mut dy,
                        );
                    }
                    h.att.finish(&keys, &mut dy);
                    h.y.g.iter_mut().zip(&dy).for_each(|(g, d)| *g += d);
                    h.q.g.iter_mut().zip(&dqs).for_each(|(g, d)| *g += d);
                }
                loss
            });
            // Padding gets no weight.
            let keys = h.att.prepare(&h.y.w, t, b, &h.lengths);
            let (_, c) = h.att.step(&h.q.w[..b * dq], &keys, true);
            assert!(c.alpha[t + 2..2 * t].iter().all(|&a| a == 0.0));
            let sum: f32 = c.alpha[t..2 * t].iter().sum();
            assert!((sum - 1.0).abs() < 1e-6);
        }
        assert!(Attention::new(
            "a",
            Score::ScaledDot,
            3,
            4,
            0,
            &mut rand::rngs::StdRng::seed_from_u64(0)
        )
        .is_err());
    }

    /// The scaled scores are the unscaled ones over √Dk: scaled dot attention's weights α
    /// equal unscaled dot attention's for the query divided by √Dk.
    #[test]
    fn scaled_scores_are_the_raw_ones_over_the_root_of_the_key_width() {
        let (t, b, dk) = (4, 2, 9);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let y: Vec<f32> = (0..t * b * dk)
            .map(|_| rng.random_range(-2.0..2.0))
            .collect();
        let q: Vec<f32> = (0..b * dk).map(|_| rng.random_range(-2.0..2.0)).collect();
        let lengths = [4, 3];
        let alpha = |score: Score, q: &[f32]| {
            let a = Attention::new(
                "a",
                score,
                dk,
                dk,
                0,
                &mut rand::rngs::StdRng::seed_from_u64(1),
            )
            .unwrap();
            let keys = a.prepare(&y, t, b, &lengths);
            a.step(q, &keys, false).1.alpha
        };
        // ⟨q/3, y⟩ = ⟨q, y⟩/√9.
        let q3: Vec<f32> = q.iter().map(|v| v / 3.0).collect();
        let (scaled, raw) = (alpha(Score::ScaledDot, &q), alpha(Score::Dot, &q3));
        for (s, r) in scaled.iter().zip(&raw) {
            assert!((s - r).abs() < 1e-6, "{s} vs {r}");
        }
        assert_eq!(Score::ScaledDot.scale(dk), 1.0 / 3.0);
        assert_eq!(Score::General.scale(dk), 1.0);
        // The command line's names, and the configs saved before the scaled forms.
        assert_eq!("dot".parse::<Score>().unwrap(), Score::ScaledDot);
        assert_eq!("general-unscaled".parse::<Score>().unwrap(), Score::General);
        let old: Score = serde_json::from_str("\"dot\"").unwrap();
        assert_eq!(old, Score::Dot);
        assert_eq!(
            serde_json::to_string(&Score::Dot).unwrap(),
            "\"dot_unscaled\""
        );
        assert_eq!(
            serde_json::to_string(&Score::ScaledGeneral).unwrap(),
            "\"scaled_general\""
        );
    }
}
