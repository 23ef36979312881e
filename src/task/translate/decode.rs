//! Decoding: greedy and beam search, batched over sentences, with length normalisation
//! and length limits ([`Decoding`]), keeping attention rows on request ([`Hyp`]).

use super::*;
use crate::engine::loss::log_softmax_in_place;
use crate::engine::step::Stepper;
use crate::error::Result;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// How to decode: beam size (1 = greedy), length normalisation and the length cap.
///
/// A hypothesis y is ranked by `log p(y | x) / |y|^alpha` (|y| counts its tokens, `<eos>`
/// included; alpha 0 ranks by probability alone) and may be at most
/// `max_len_a · |x| + max_len_b` tokens long.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Decoding {
    pub beam: usize,
    pub alpha: f32,
    pub max_len_a: f32,
    pub max_len_b: usize,
    /// Hypotheses to return a sentence (at most `beam`).
    pub n_best: usize,
    /// Keep each hypothesis's attention rows (for maps and JSON output); off, a beam does
    /// not copy them from parent to child at every step.
    #[serde(default)]
    pub attention: bool,
    /// `<eos>` is not chosen before this many tokens (OpenNMT's `-min_length`); the cap
    /// still ends a hypothesis.
    #[serde(default)]
    pub min_len: usize,
    /// Replace each `<unk>` in the output by the source piece it attends to most
    /// ([`super::TrTask::render`]; OpenNMT's `-replace_unk`). Needs attention.
    #[serde(default)]
    pub replace_unk: bool,
}

impl Decoding {
    /// Refuses what cannot decode: a beam of 0, a negative or non-finite `alpha` or
    /// `max_len_a`, an `n_best` outside 1 to the beam size; the error names the option
    /// ([`crate::error::Error::Invalid`]).
    pub fn check(&self) -> crate::error::Result<()> {
        use crate::error::Error;
        let non_negative = |x: f32| x.is_finite() && x >= 0.0;
        if self.beam == 0 {
            return Err(Error::invalid("beam", "expected at least 1, got 0"));
        }
        if !non_negative(self.alpha) {
            let msg = format!("expected a number ≥ 0, got {}", self.alpha);
            return Err(Error::invalid("alpha", msg));
        }
        if !non_negative(self.max_len_a) {
            let msg = format!("expected a number ≥ 0, got {}", self.max_len_a);
            return Err(Error::invalid("max_len_a", msg));
        }
        if self.n_best == 0 || self.n_best > self.beam {
            return Err(Error::invalid(
                "n_best",
                format!(
                    "expected 1 to the beam size {}, got {}",
                    self.beam, self.n_best
                ),
            ));
        }
        Ok(())
    }

    /// `self`, keeping attention rows when `replace_unk` needs them.
    pub fn keeping_attention(&self) -> Decoding {
        Decoding {
            attention: self.attention || self.replace_unk,
            ..*self
        }
    }

    /// `self` when it passes [`Decoding::check`].
    pub fn checked(self) -> crate::error::Result<Decoding> {
        self.check().map(|_| self)
    }
}

/// [`Decoding`] as optional values, each `None` taking the default (`n_best` 1): what a
/// Python call's keywords and a server request's fields carry.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct DecodingOptions {
    pub beam: Option<usize>,
    pub alpha: Option<f32>,
    pub max_len_a: Option<f32>,
    pub max_len_b: Option<usize>,
    pub min_len: Option<usize>,
    pub n_best: Option<usize>,
    pub attention: bool,
    pub replace_unk: bool,
}

impl DecodingOptions {
    /// The decoding these options ask for, checked ([`Decoding::check`]).
    pub fn resolve(&self) -> crate::error::Result<Decoding> {
        let d = Decoding::default();
        Decoding {
            beam: self.beam.unwrap_or(d.beam),
            alpha: self.alpha.unwrap_or(d.alpha),
            max_len_a: self.max_len_a.unwrap_or(d.max_len_a),
            max_len_b: self.max_len_b.unwrap_or(d.max_len_b),
            min_len: self.min_len.unwrap_or(d.min_len),
            n_best: self.n_best.unwrap_or(1),
            attention: self.attention,
            replace_unk: self.replace_unk,
        }
        .checked()
    }
}

impl Default for Decoding {
    fn default() -> Decoding {
        Decoding {
            beam: 5,
            alpha: 1.0,
            max_len_a: 1.5,
            max_len_b: 10,
            n_best: 1,
            attention: false,
            min_len: 0,
            replace_unk: false,
        }
    }
}

/// One translation: target ids (without `<eos>`), log-probability, ranking score and the
/// attention weights of each produced token over the source `[len + 1][S]` (empty without
/// attention).
#[derive(Clone, Debug, PartialEq)]
pub struct Hyp {
    pub tokens: Vec<u32>,
    pub log_prob: f64,
    pub score: f64,
    pub attention: Vec<Vec<f32>>,
}

impl Seq2Seq {
    /// Greedy decoding: the most likely token at every step. Batched over sentences.
    pub fn greedy(&mut self, srcs: &[&[u32]], d: &Decoding, sp: Specials) -> Result<Vec<Hyp>> {
        let mut out = Vec::with_capacity(srcs.len());
        let mut live: Vec<Hyp> = srcs
            .iter()
            .map(|_| Hyp {
                tokens: Vec::new(),
                log_prob: 0.0,
                score: 0.0,
                attention: Vec::new(),
            })
            .collect();
        let mut done = vec![false; srcs.len()];
        let caps: Vec<usize> = srcs.iter().map(|x| cap(d, x.len())).collect();
        self.decode_steps(srcs, 1, d.attention, sp, |t, logp, alpha, _parents| {
            let v = logp.len() / srcs.len();
            let mut next = Vec::with_capacity(srcs.len());
            for (j, h) in live.iter_mut().enumerate() {
                if done[j] {
                    next.push(sp.eos);
                    continue;
                }
                let row = &logp[j * v..(j + 1) * v];
                let y = if t + 1 >= caps[j] {
                    sp.eos
                } else {
                    argmax(row, (t < d.min_len).then_some(sp.eos))
                };
                h.log_prob += row[y as usize] as f64;
                if !alpha.is_empty() {
                    h.attention.push(alpha[j].clone());
                }
                if y == sp.eos {
                    done[j] = true;
                } else {
                    h.tokens.push(y);
                }
                next.push(y);
            }
            (next, (0..srcs.len()).collect(), done.iter().all(|&x| x))
        })?;
        for h in live {
            let n = (h.tokens.len() + 1) as f64;
            out.push(Hyp {
                score: h.log_prob / n.powf(d.alpha as f64),
                ..h
            });
        }
        Ok(out)
    }

    /// Beam search, batched over sentences: the `n_best` best finished hypotheses of each.
    pub fn beam_search(
        &mut self,
        srcs: &[&[u32]],
        d: &Decoding,
        sp: Specials,
    ) -> Result<Vec<Vec<Hyp>>> {
        let k = d.beam.max(1);
        let b = srcs.len();
        let caps: Vec<usize> = srcs.iter().map(|x| cap(d, x.len())).collect();
        // Live beams of each sentence: (tokens, log-prob, attention rows); only beam 0
        // starts alive so that the first step does not pick one token k times.
        let mut beams: Vec<Vec<Hyp>> = (0..b)
            .map(|_| {
                vec![Hyp {
                    tokens: Vec::new(),
                    log_prob: 0.0,
                    score: 0.0,
                    attention: Vec::new(),
                }]
            })
            .collect();
        let mut finished: Vec<Vec<Hyp>> = vec![Vec::new(); b];
        let norm = |lp: f64, len: usize| lp / ((len as f64).powf(d.alpha as f64));
        self.decode_steps(srcs, k, d.attention, sp, |t, logp, alpha, _| {
            let v = logp.len() / (b * k);
            let mut next_tokens = vec![sp.eos; b * k];
            let mut parents = vec![0usize; b * k];
            let mut all_done = true;
            for j in 0..b {
                if beams[j].is_empty() {
                    for kk in 0..k {
                        parents[j * k + kk] = j * k;
                    }
                    continue;
                }
                // Candidates (score, beam, token), best first.
                let mut cand: Vec<(f64, usize, u32)> = Vec::new();
                let at_cap = t + 1 >= caps[j];
                for (bi, h) in beams[j].iter().enumerate() {
                    let row = &logp[(j * k + bi) * v..(j * k + bi + 1) * v];
                    if at_cap {
                        // The last place: every live beam ends here, as greedy does.
                        cand.push((h.log_prob + row[sp.eos as usize] as f64, bi, sp.eos));
                        continue;
                    }
                    let early = h.tokens.len() < d.min_len;
                    for &y in top_k(row, 2 * k)
                        .iter()
                        .filter(|&&y| !(early && y == sp.eos))
                    {
                        cand.push((h.log_prob + row[y as usize] as f64, bi, y));
                    }
                }
                cand.sort_by(|a, c| c.0.total_cmp(&a.0));
                let mut new_beams = Vec::with_capacity(k);
                for (lp, bi, y) in cand {
                    let old = &beams[j][bi];
                    let mut att = old.attention.clone();
                    if !alpha.is_empty() {
                        att.push(alpha[j * k + bi].clone());
                    }
                    if y == sp.eos {
                        let tokens = old.tokens.clone();
                        let len = tokens.len() + 1;
                        finished[j].push(Hyp {
                            tokens,
                            log_prob: lp,
                            score: norm(lp, len),
                            attention: att,
                        });
                        continue;
                    }
                    if new_beams.len() < k {
                        let mut tokens = old.tokens.clone();
                        tokens.push(y);
                        parents[j * k + new_beams.len()] = j * k + bi;
                        next_tokens[j * k + new_beams.len()] = y;
                        new_beams.push(Hyp {
                            tokens,
                            log_prob: lp,
                            score: 0.0,
                            attention: att,
                        });
                    }
                    if new_beams.len() == k {
                        break;
                    }
                }
                // Done when k hypotheses finished and no live beam can still beat the best
                // of them (log-probabilities only fall), or at the cap.
                let best_done = finished[j]
                    .iter()
                    .map(|h| h.score)
                    .fold(f64::NEG_INFINITY, f64::max);
                let best_live = new_beams
                    .iter()
                    .map(|h| norm(h.log_prob, caps[j]).max(norm(h.log_prob, h.tokens.len() + 1)))
                    .fold(f64::NEG_INFINITY, f64::max);
                if t + 1 >= caps[j] || (finished[j].len() >= k && best_done >= best_live) {
                    new_beams.clear();
                }
                for kk in new_beams.len()..k {
                    parents[j * k + kk] = j * k;
                }
                if !new_beams.is_empty() {
                    all_done = false;
                }
                beams[j] = new_beams;
            }
            (next_tokens, parents, all_done)
        })?;
        Ok(finished
            .into_iter()
            .map(|mut f| {
                f.sort_by(|a, c| c.score.total_cmp(&a.score));
                f.truncate(d.n_best.max(1).min(k));
                f
            })
            .collect())
    }

    /// The decoding loop shared by greedy and beam search over `k` rows a sentence:
    /// `choose(t, log_probs [B·k, V], attention rows [B·k][S], parents)` returns the next
    /// tokens `[B·k]`, the row each continues (states are gathered from it) and whether
    /// every sentence is done.
    #[allow(clippy::type_complexity)]
    fn decode_steps(
        &mut self,
        srcs: &[&[u32]],
        k: usize,
        keep_attention: bool,
        sp: Specials,
        mut choose: impl FnMut(usize, &[f32], &[Vec<f32>], &[usize]) -> (Vec<u32>, Vec<usize>, bool),
    ) -> Result<()> {
        let b = srcs.len();
        if b == 0 {
            return Ok(());
        }
        let pairs: Vec<(&[u32], &[u32])> = srcs.iter().map(|x| (*x, &[][..])).collect();
        let bt = Batch::new(&pairs, sp);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        let encd = self.encode(&bt, false, &mut rng);
        let (e, hd, v, cd) = (
            self.cfg.embed,
            self.cfg.decoder_hidden,
            self.cfg.tgt_vocab,
            self.cfg.context_dim(),
        );
        let n = b * k;
        // Every sentence's keys and state repeated for its k rows.
        let dk = self.cfg.key_dim();
        let s = bt.s;
        let mut keys_rep = vec![0.0; s * n * dk];
        for i in 0..s {
            for r in 0..n {
                let j = r / k;
                keys_rep[(i * n + r) * dk..(i * n + r + 1) * dk]
                    .copy_from_slice(&encd.keys[(i * b + j) * dk..(i * b + j + 1) * dk]);
            }
        }
        let lengths: Vec<usize> = (0..n).map(|r| bt.src_len[r / k]).collect();
        let mut state = self.decoder.zero_state(n);
        for r in 0..n {
            state.h[r * hd..(r + 1) * hd]
                .copy_from_slice(&encd.s0.h[(r / k) * hd..(r / k + 1) * hd]);
        }
        let mut stepper = match self.stepper.take() {
            Some(st) => st,
            None => Stepper::new(&self.decoder)?,
        };
        let keys = self
            .attention
            .as_ref()
            .map(|a| a.prepare(&keys_rep, s, n, &lengths));
        let out_w = self.output.prepack();
        let mut tokens = vec![sp.bos; n];
        let mut parents: Vec<usize> = (0..n).collect();
        // Every sentence ends by its cap; the bound only guards the loop.
        for t in 0..usize::MAX {
            let mut z = vec![0.0; n * e];
            self.tgt_emb.forward(&tokens, &mut z);
            let (ctx, alpha) = match (&self.attention, &keys) {
                (Some(a), Some(kk)) => {
                    let (c, cache) = a.step(&state.h, kk, false);
                    // Each row over its own sentence's tokens (the batch pads to the longest).
                    let rows = match keep_attention {
                        true => cache
                            .alpha
                            .chunks_exact(s)
                            .zip(&lengths)
                            .map(|(r, &n)| r[..n].to_vec())
                            .collect(),
                        false => Vec::new(),
                    };
                    (c, rows)
                }
                _ => (Vec::new(), Vec::new()),
            };
            let mut x = Vec::with_capacity(n * (e + cd));
            for r in 0..n {
                x.extend_from_slice(&z[r * e..(r + 1) * e]);
                x.extend_from_slice(ctx.get(r * cd..(r + 1) * cd).unwrap_or(&[]));
            }
            let s_t = stepper.step(&self.decoder, &x, n, &mut state).to_vec();
            let out_in = hd + cd + e;
            let mut oi = Vec::with_capacity(n * out_in);
            for r in 0..n {
                oi.extend_from_slice(&s_t[r * hd..(r + 1) * hd]);
                oi.extend_from_slice(ctx.get(r * cd..(r + 1) * cd).unwrap_or(&[]));
                oi.extend_from_slice(&z[r * e..(r + 1) * e]);
            }
            let mut logp = vec![0.0; n * v];
            self.output.forward_with(&out_w, &oi, &mut logp);
            logp.par_chunks_mut(v).for_each(log_softmax_in_place);
            let (next, par, done) = choose(t, &logp, &alpha, &parents);
            if done {
                break;
            }
            // Each row continues from its parent's state.
            let old = state.clone();
            for (r, &p) in par.iter().enumerate() {
                state.h[r * hd..(r + 1) * hd].copy_from_slice(&old.h[p * hd..(p + 1) * hd]);
                if !state.c.is_empty() {
                    state.c[r * hd..(r + 1) * hd].copy_from_slice(&old.c[p * hd..(p + 1) * hd]);
                }
            }
            tokens = next;
            parents = par;
        }
        self.stepper = Some(stepper);
        Ok(())
    }
}

/// The length cap of a source of `n` tokens, `<eos>` included.
pub(super) fn cap(d: &Decoding, n: usize) -> usize {
    ((d.max_len_a * n as f32) as usize + d.max_len_b).max(1) + 1
}

/// Indices of the `take` largest values of `row`, largest first, ties by lower index (as
/// [`argmax`] breaks them). One pass with a small sorted buffer: past the first few
/// values nearly every one fails the single comparison with the buffer's smallest, where a
/// quickselect over the vocabulary's indices took an eighth of beam search.
pub(super) fn top_k(row: &[f32], take: usize) -> Vec<u32> {
    let take = take.min(row.len());
    let mut top: Vec<(f32, u32)> = Vec::with_capacity(take + 1);
    for (y, &v) in row.iter().enumerate() {
        if top.len() == take && !(take > 0 && v > top[take - 1].0) {
            continue;
        }
        let at = top.partition_point(|&(w, _)| w >= v);
        top.insert(at, (v, y as u32));
        top.truncate(take);
    }
    top.into_iter().map(|(_, y)| y).collect()
}

/// The index of the largest value, `skip` left out.
pub(super) fn argmax(row: &[f32], skip: Option<u32>) -> u32 {
    row.iter()
        .enumerate()
        .filter(|&(i, _)| Some(i as u32) != skip)
        .fold(
            (0, f32::NEG_INFINITY),
            |a, (i, &v)| if v > a.1 { (i, v) } else { a },
        )
        .0 as u32
}
