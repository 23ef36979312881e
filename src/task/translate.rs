//! Sequence-to-sequence translation with attention, the lecture's last model:
//!
//! ```text
//! y_1..y_S   = encoder(x)                       embedding → (bi)RNN stack, [S, B, De]
//! s_0        = tanh(W_b [h_S forward; h_1 backward] + b_b)
//! d_t        = Σ_i α_ti y_i,  α_ti = softmax_i(sim(s_{t−1}, y_i))   (engine::attention)
//! s_t        = g(W1 z_t + W2 s_{t−1} + Wu d_t)  the decoder cell on [z_t; d_t]
//! p_t        = softmax(W3 [s_t; d_t; z_t])      (Bahdanau et al.'s deep output)
//! ```
//!
//! where z_t is the previous target token's embedding (teacher forcing in training). With
//! dot attention over a bidirectional encoder (2H wide) against a decoder of H, the encoder
//! states are first projected to H (`key_proj`); with no attention the decoder reads z_t
//! alone (the plain encoder-decoder, for comparison). Parameters: `encoder.weight`,
//! `rnn.*` (encoder), `bridge.*`, `key_proj.*`, `attention.*`, `target_embedding.weight`,
//! `decoder.*` (the decoder cell, PyTorch `rnn` names), `output.*`.
//!
//! This module holds the model, its teacher-forced loss with gradients, and greedy and beam
//! decoding; the run record, data and command follow it.

pub mod run;
mod trace;

use crate::engine::attention::{Attention, Keys, Score, StepCache};
use crate::engine::cell::CellKind;
use crate::engine::dropout::{self, DropoutKind, Mask};
use crate::engine::embedding::Embedding;
use crate::engine::encoder::{Encoder, EncoderCache};
use crate::engine::init::Init;
use crate::engine::linear::Linear;
use crate::engine::loss::{log_softmax_in_place, softmax_in_place};
use crate::engine::param::{Module, Param};
use crate::engine::rnn::{Rnn, RnnConfig, State};
use crate::engine::step::{StepTrace, Stepper};
use crate::error::{Error, Result};
use rand::RngCore;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seq2SeqConfig {
    pub src_vocab: usize,
    pub tgt_vocab: usize,
    /// Embedding size, both sides.
    pub embed: usize,
    /// The encoder stack; `encoder.input` equals `embed`.
    pub encoder: RnnConfig,
    pub decoder_cell: CellKind,
    pub decoder_hidden: usize,
    /// `None`: no attention (the plain encoder-decoder).
    pub attention: Option<Score>,
    /// Additive attention's hidden size.
    pub attn_dim: usize,
    /// Dropout on both embeddings and on the encoder's output.
    pub dropout: f32,
    pub init: Init,
}

impl Seq2SeqConfig {
    /// Width of the keys and of the context: the encoder's output, or the decoder's size
    /// when dot attention needs the projection.
    pub fn key_dim(&self) -> usize {
        if self.needs_projection() {
            self.decoder_hidden
        } else {
            self.encoder.output()
        }
    }

    fn needs_projection(&self) -> bool {
        self.attention == Some(Score::Dot) && self.encoder.output() != self.decoder_hidden
    }

    fn context_dim(&self) -> usize {
        if self.attention.is_some() {
            self.key_dim()
        } else {
            0
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.encoder.input != self.embed {
            return Err(Error::config(format!(
                "encoder.input is {} but the embedding size is {}",
                self.encoder.input, self.embed
            )));
        }
        if self.src_vocab < 4 || self.tgt_vocab < 4 || self.embed == 0 || self.decoder_hidden == 0 {
            return Err(Error::config(
                "vocabularies (with <pad>, <unk>, <bos>, <eos>), embedding and decoder sizes must be positive",
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config("dropout must be in [0, 1)"));
        }
        self.encoder.validate()
    }

    fn decoder_rnn(&self) -> RnnConfig {
        RnnConfig::new(
            self.decoder_cell,
            self.embed + self.context_dim(),
            self.decoder_hidden,
            1,
        )
    }
}

/// Token ids the decoder needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Specials {
    pub pad: u32,
    pub bos: u32,
    pub eos: u32,
}

pub struct Seq2Seq {
    pub cfg: Seq2SeqConfig,
    pub enc: Encoder,
    pub bridge: Linear,
    pub key_proj: Option<Linear>,
    pub attention: Option<Attention>,
    pub tgt_emb: Embedding,
    pub decoder: Rnn,
    pub output: Linear,
    stepper: Option<Stepper>,
}

/// A padded batch: source ids `[S, B]` and lengths; target input (`<bos> y_1 ..`) and
/// output (`y_1 .. <eos>`) ids `[T, B]`, the output padded with IGNORE.
pub struct Batch {
    pub src: Vec<u32>,
    pub src_len: Vec<usize>,
    pub tgt_in: Vec<u32>,
    pub tgt_out: Vec<u32>,
    pub s: usize,
    pub t: usize,
    pub b: usize,
}

impl Batch {
    /// Pads `pairs` of (source ids, target ids without specials).
    pub fn new(pairs: &[(&[u32], &[u32])], sp: Specials) -> Batch {
        use crate::engine::loss::IGNORE;
        let b = pairs.len();
        let s = pairs.iter().map(|p| p.0.len().max(1)).max().unwrap_or(1);
        let t = pairs.iter().map(|p| p.1.len() + 1).max().unwrap_or(1);
        let mut src = vec![sp.pad; s * b];
        let mut tgt_in = vec![sp.pad; t * b];
        let mut tgt_out = vec![IGNORE; t * b];
        let mut src_len = Vec::with_capacity(b);
        for (j, (x, y)) in pairs.iter().enumerate() {
            for (i, &id) in x.iter().enumerate() {
                src[i * b + j] = id;
            }
            if x.is_empty() {
                // An empty source reads one <eos>, so the encoder has a step.
                src[j] = sp.eos;
            }
            src_len.push(x.len().max(1));
            tgt_in[j] = sp.bos;
            for (i, &id) in y.iter().enumerate() {
                tgt_in[(i + 1) * b + j] = id;
                tgt_out[i * b + j] = id;
            }
            tgt_out[y.len() * b + j] = sp.eos;
        }
        Batch {
            src,
            src_len,
            tgt_in,
            tgt_out,
            s,
            t,
            b,
        }
    }
}

/// The encoded source: keys `[S, B, Dk]` and the decoder's initial state.
struct Encoded {
    y: Vec<f32>,
    keys: Vec<f32>,
    s0: State,
    bridge_in: Vec<f32>,
    /// tanh(bridge) `[B, Hd]`, kept for its derivative.
    s0_act: Vec<f32>,
    cache: Option<EncoderCache>,
}

impl Seq2Seq {
    pub fn new(cfg: Seq2SeqConfig, rng: &mut dyn RngCore) -> Result<Seq2Seq> {
        cfg.validate()?;
        let enc = Encoder {
            embedding: Embedding::new("encoder.weight", cfg.src_vocab, cfg.embed, rng),
            rnn: Rnn::new("rnn", cfg.encoder.clone(), cfg.init, 0.0, rng),
            dropout: cfg.dropout,
            dropout_kind: DropoutKind::Standard,
        };
        let bridge = Linear::new(
            "bridge",
            cfg.encoder.output(),
            cfg.decoder_hidden,
            true,
            rng,
        );
        let key_proj = cfg.needs_projection().then(|| {
            Linear::new(
                "key_proj",
                cfg.encoder.output(),
                cfg.decoder_hidden,
                false,
                rng,
            )
        });
        let attention = match cfg.attention {
            Some(s) => Some(Attention::new(
                "attention",
                s,
                cfg.decoder_hidden,
                cfg.key_dim(),
                cfg.attn_dim,
                rng,
            )?),
            None => None,
        };
        let tgt_emb = Embedding::new("target_embedding.weight", cfg.tgt_vocab, cfg.embed, rng);
        let decoder = Rnn::new("decoder", cfg.decoder_rnn(), cfg.init, 0.0, rng);
        let out_in = cfg.decoder_hidden + cfg.context_dim() + cfg.embed;
        let output = Linear::new("output", out_in, cfg.tgt_vocab, true, rng);
        Ok(Seq2Seq {
            cfg,
            enc,
            bridge,
            key_proj,
            attention,
            tgt_emb,
            decoder,
            output,
            stepper: None,
        })
    }

    /// The top encoder layer's final states, forward then backward, `[B, De]`.
    fn final_states(&self, st: &State, b: usize) -> Vec<f32> {
        let c = &self.cfg.encoder;
        let (h, nd, l) = (c.hidden, c.dirs(), c.layers);
        let mut out = vec![0.0; b * nd * h];
        for d in 0..nd {
            let k = (l - 1) * nd + d;
            for j in 0..b {
                out[j * nd * h + d * h..j * nd * h + (d + 1) * h]
                    .copy_from_slice(&st.h[(k * b + j) * h..(k * b + j + 1) * h]);
            }
        }
        out
    }

    fn encode(&mut self, bt: &Batch, train: bool, rng: &mut dyn RngCore) -> Encoded {
        let (s, b) = (bt.s, bt.b);
        let (y, st, cache) =
            self.enc
                .forward(&bt.src, s, b, Some(&bt.src_len), None, train, train, rng);
        let keys = match &self.key_proj {
            Some(p) => {
                let mut k = vec![0.0; s * b * self.cfg.decoder_hidden];
                p.forward(&y, &mut k);
                k
            }
            None => y.clone(),
        };
        let bridge_in = self.final_states(&st, b);
        let hd = self.cfg.decoder_hidden;
        let mut s0_act = vec![0.0; b * hd];
        self.bridge.forward(&bridge_in, &mut s0_act);
        s0_act.iter_mut().for_each(|v| *v = v.tanh());
        let mut s0 = self.decoder.zero_state(b);
        s0.h.copy_from_slice(&s0_act);
        Encoded {
            y,
            keys,
            s0,
            bridge_in,
            s0_act,
            cache: train.then_some(cache),
        }
    }

    /// Teacher-forced loss of a batch, summed over target tokens (label smoothing `eps`:
    /// the target distribution is (1 − ε)·one-hot + ε/V), with gradients accumulated when
    /// `train`; returns (summed loss, token count). The loss is normalised by the token
    /// count times `1/scale` for the gradients.
    pub fn loss(
        &mut self,
        bt: &Batch,
        eps: f32,
        train: bool,
        rng: &mut dyn RngCore,
    ) -> Result<(f64, usize)> {
        use crate::engine::loss::IGNORE;
        let (t, b, e, hd, v) = (
            bt.t,
            bt.b,
            self.cfg.embed,
            self.cfg.decoder_hidden,
            self.cfg.tgt_vocab,
        );
        let cd = self.cfg.context_dim();
        let out_in = hd + cd + e;
        let mut encd = self.encode(bt, train, rng);
        let lengths = bt.src_len.clone();
        let mut keys: Option<Keys> = self
            .attention
            .as_ref()
            .map(|a| a.prepare(&encd.keys, bt.s, b, &lengths));
        let mut stepper = match self.stepper.take() {
            Some(s) => s,
            None => Stepper::new(&self.decoder)?,
        };
        let mut state = encd.s0.clone();
        let count = bt.tgt_out.iter().filter(|&&y| y != IGNORE).count();
        let mut loss = 0.0;
        struct StepRec {
            z_mask: Option<Mask>,
            att: Option<StepCache>,
            trace: StepTrace,
        }
        // The output layer reads (s_t, d_t, z_t) and feeds nothing back into the recurrence,
        // so it runs once after the loop over the real (non-padding) positions only: one
        // `[n, out_in] × [out_in, V]` product instead of T products of B rows, with padding
        // rows never computed. `rows[r]` is row r's batch slot, `starts[τ]` its first row.
        let mut oi = Vec::with_capacity(count * out_in);
        let (mut rows, mut starts) = (Vec::with_capacity(count), Vec::with_capacity(t + 1));
        let mut recs = Vec::with_capacity(t);
        for tau in 0..t {
            let ids = &bt.tgt_in[tau * b..(tau + 1) * b];
            let mut z = vec![0.0; b * e];
            self.tgt_emb.forward(ids, &mut z);
            let z_mask = dropout::forward(
                &mut z,
                b * e,
                self.cfg.dropout,
                DropoutKind::Standard,
                train,
                rng,
            );
            let (ctx, att) = match (&self.attention, &keys) {
                (Some(a), Some(k)) => {
                    let (c, cache) = a.step(&state.h, k, true);
                    (c, Some(cache))
                }
                _ => (Vec::new(), None),
            };
            let mut x = Vec::with_capacity(b * (e + cd));
            for j in 0..b {
                x.extend_from_slice(&z[j * e..(j + 1) * e]);
                x.extend_from_slice(ctx.get(j * cd..(j + 1) * cd).unwrap_or(&[]));
            }
            let (s_t, trace) = stepper.step_train(&self.decoder, &x, b, &mut state)?;
            starts.push(rows.len());
            for j in 0..b {
                if bt.tgt_out[tau * b + j] == IGNORE {
                    continue;
                }
                rows.push(j);
                oi.extend_from_slice(&s_t[j * hd..(j + 1) * hd]);
                oi.extend_from_slice(ctx.get(j * cd..(j + 1) * cd).unwrap_or(&[]));
                oi.extend_from_slice(&z[j * e..(j + 1) * e]);
            }
            recs.push(StepRec { z_mask, att, trace });
        }
        starts.push(rows.len());
        let n = rows.len();
        let mut logits = vec![0.0; n * v];
        self.output.forward(&oi, &mut logits);
        let k = 1.0 / count.max(1) as f32;
        for (tau, w) in starts.windows(2).enumerate() {
            let targets = rows[w[0]..w[1]].iter().map(|&j| bt.tgt_out[tau * b + j]);
            for (row, y) in logits[w[0] * v..w[1] * v].chunks_exact_mut(v).zip(targets) {
                softmax_in_place(row);
                // −Σ q log p with q = (1−ε) one-hot + ε/V; d/dlogits = p − q.
                let mut l = -(1.0 - eps as f64) * (row[y as usize].max(1e-30) as f64).ln();
                if eps > 0.0 {
                    l -= eps as f64 / v as f64
                        * row.iter().map(|&p| (p.max(1e-30) as f64).ln()).sum::<f64>();
                }
                loss += l;
                row.iter_mut().for_each(|p| *p -= eps / v as f32);
                row[y as usize] -= 1.0 - eps;
                row.iter_mut().for_each(|p| *p *= k);
            }
        }
        if !train {
            self.stepper = Some(stepper);
            return Ok((loss, count));
        }
        let mut doi = vec![0.0; n * out_in];
        self.output.backward(&oi, &logits, Some(&mut doi));
        drop((oi, logits));
        // Backward through the steps in reverse.
        let mut dstate = self.decoder.zero_state(b);
        let mut dkeys = vec![0.0; encd.keys.len()];
        for (tau, r) in recs.into_iter().enumerate().rev() {
            let (mut ds, mut dctx, mut dz) =
                (vec![0.0; b * hd], vec![0.0; b * cd], vec![0.0; b * e]);
            for (row, &j) in doi[starts[tau] * out_in..starts[tau + 1] * out_in]
                .chunks_exact(out_in)
                .zip(&rows[starts[tau]..starts[tau + 1]])
            {
                ds[j * hd..(j + 1) * hd].copy_from_slice(&row[..hd]);
                dctx[j * cd..(j + 1) * cd].copy_from_slice(&row[hd..hd + cd]);
                dz[j * e..(j + 1) * e].copy_from_slice(&row[hd + cd..]);
            }
            let dx = stepper.backward_step(&mut self.decoder, r.trace, &ds, &mut dstate);
            for j in 0..b {
                let row = &dx[j * (e + cd)..(j + 1) * (e + cd)];
                dz[j * e..(j + 1) * e]
                    .iter_mut()
                    .zip(&row[..e])
                    .for_each(|(a, g)| *a += g);
                dctx[j * cd..(j + 1) * cd]
                    .iter_mut()
                    .zip(&row[e..])
                    .for_each(|(a, g)| *a += g);
            }
            if let (Some(a), Some(k), Some(c)) = (&mut self.attention, &mut keys, &r.att) {
                // The query was s_{t−1}: its gradient joins dL/ds_{t−1} in dstate.
                a.backward(c, k, &dctx, &mut dstate.h, &mut dkeys);
            }
            dropout::backward(&mut dz, r.z_mask.as_ref());
            let ids = &bt.tgt_in[tau * b..(tau + 1) * b];
            self.tgt_emb.backward(ids, &dz);
        }
        if let (Some(a), Some(k)) = (&mut self.attention, &keys) {
            a.finish(k, &mut dkeys);
        }
        drop(keys);
        // s_0 = tanh(bridge(final states)).
        let mut dpre: Vec<f32> = dstate
            .h
            .iter()
            .zip(&encd.s0_act)
            .map(|(g, s)| g * (1.0 - s * s))
            .collect();
        let mut dfinal = vec![0.0; encd.bridge_in.len()];
        self.bridge
            .backward(&encd.bridge_in, &dpre, Some(&mut dfinal));
        dpre.clear();
        let mut dy = match &mut self.key_proj {
            Some(p) => {
                let mut d = vec![0.0; encd.y.len()];
                p.backward(&encd.y, &dkeys, Some(&mut d));
                d
            }
            None => dkeys,
        };
        // Only the attention read the keys; with none, dy stays zero.
        dy.resize(encd.y.len(), 0.0);
        let c = &self.cfg.encoder;
        let (h, nd, l) = (c.hidden, c.dirs(), c.layers);
        let mut dfin = self.enc.rnn.zero_state(b);
        for d in 0..nd {
            let k = (l - 1) * nd + d;
            for j in 0..b {
                dfin.h[(k * b + j) * h..(k * b + j + 1) * h]
                    .copy_from_slice(&dfinal[j * nd * h + d * h..j * nd * h + (d + 1) * h]);
            }
        }
        let cache = encd
            .cache
            .take()
            .expect("training keeps the encoder's cache");
        self.enc.backward(cache, &bt.src, dy, Some(&dfin));
        self.stepper = Some(stepper);
        Ok((loss, count))
    }
}

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
fn cap(d: &Decoding, n: usize) -> usize {
    ((d.max_len_a * n as f32) as usize + d.max_len_b).max(1) + 1
}

/// Indices of the `take` largest values of `row`, largest first, ties by lower index (as
/// [`argmax`] breaks them). One pass with a small sorted buffer: past the first few
/// values nearly every one fails the single comparison with the buffer's smallest, where a
/// quickselect over the vocabulary's indices took an eighth of beam search.
fn top_k(row: &[f32], take: usize) -> Vec<u32> {
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
fn argmax(row: &[f32], skip: Option<u32>) -> u32 {
    row.iter()
        .enumerate()
        .filter(|&(i, _)| Some(i as u32) != skip)
        .fold(
            (0, f32::NEG_INFINITY),
            |a, (i, &v)| if v > a.1 { (i, v) } else { a },
        )
        .0 as u32
}

impl Module for Seq2Seq {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        self.enc.visit(f);
        self.bridge.visit(f);
        if let Some(p) = &self.key_proj {
            p.visit(f);
        }
        if let Some(a) = &self.attention {
            a.visit(f);
        }
        f(&self.tgt_emb.weight);
        self.decoder.visit(f);
        self.output.visit(f);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        self.enc.visit_mut(f);
        self.bridge.visit_mut(f);
        if let Some(p) = &mut self.key_proj {
            p.visit_mut(f);
        }
        if let Some(a) = &mut self.attention {
            a.visit_mut(f);
        }
        f(&mut self.tgt_emb.weight);
        self.decoder.visit_mut(f);
        self.output.visit_mut(f);
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn top_k_finds_the_largest_in_order_ties_by_index() {
        let row = [0.5, -1.0, 2.0, 0.5, f32::NEG_INFINITY, 2.0, 1.0];
        assert_eq!(top_k(&row, 3), vec![2, 5, 6]);
        assert_eq!(top_k(&row, 5), vec![2, 5, 6, 0, 3]);
        assert_eq!(top_k(&row, 20).len(), 7);
        assert_eq!(top_k(&row, 1), vec![argmax(&row, None)]);
        assert!(top_k(&row, 0).is_empty());
        // Against a full sort on pseudo-random rows.
        let mut x = 12345u32;
        for _ in 0..50 {
            let row: Vec<f32> = (0..300)
                .map(|_| {
                    x = x.wrapping_mul(1664525).wrapping_add(1013904223);
                    (x >> 20) as f32 / 64.0
                })
                .collect();
            let mut idx: Vec<u32> = (0..300).collect();
            idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
            assert_eq!(top_k(&row, 10), idx[..10].to_vec());
        }
    }

    use super::*;
    use rand::SeedableRng;

    fn tiny(att: Option<Score>, cell: CellKind) -> Seq2Seq {
        let mut enc = RnnConfig::new(CellKind::Gru, 4, 3, 1);
        enc.bidirectional = true;
        let cfg = Seq2SeqConfig {
            src_vocab: 9,
            tgt_vocab: 8,
            embed: 4,
            encoder: enc,
            decoder_cell: cell,
            decoder_hidden: 5,
            attention: att,
            attn_dim: 4,
            dropout: 0.0,
            init: Init::Pytorch,
        };
        Seq2Seq::new(cfg, &mut rand::rngs::StdRng::seed_from_u64(4)).unwrap()
    }

    fn batch() -> Batch {
        let sp = Specials {
            pad: 0,
            bos: 2,
            eos: 3,
        };
        let (a, b, c): (&[u32], &[u32], &[u32]) = (&[4, 5, 6, 7], &[8], &[5, 5, 4]);
        Batch::new(&[(a, &[4, 6, 7]), (b, &[5]), (c, &[7, 4])], sp)
    }

    /// A beam of 1 is greedy decoding: the same tokens and log-probabilities, for every
    /// attention kind; wider beams find hypotheses at least as probable (unnormalised).
    #[test]
    fn beam_of_one_is_greedy() {
        let sp = Specials {
            pad: 0,
            bos: 2,
            eos: 3,
        };
        let srcs: Vec<&[u32]> = vec![&[4, 5, 6, 7], &[8], &[5, 5, 4], &[]];
        for att in [Some(Score::Additive), Some(Score::Dot), None] {
            let mut m = tiny(att, CellKind::Gru);
            let d = Decoding {
                beam: 1,
                alpha: 0.0,
                attention: true,
                ..Decoding::default()
            };
            let g = m.greedy(&srcs, &d, sp).unwrap();
            let b = m.beam_search(&srcs, &d, sp).unwrap();
            for (x, y) in g.iter().zip(&b) {
                assert_eq!(x.tokens, y[0].tokens, "{att:?}");
                assert!((x.log_prob - y[0].log_prob).abs() < 1e-5);
                assert_eq!(x.attention.len(), y[0].attention.len());
            }
            let wide = m
                .beam_search(
                    &srcs,
                    &Decoding {
                        beam: 4,
                        alpha: 0.0,
                        n_best: 3,
                        ..d
                    },
                    sp,
                )
                .unwrap();
            for (x, y) in g.iter().zip(&wide) {
                assert!(
                    y[0].log_prob >= x.log_prob - 1e-5,
                    "{att:?}: beam 4 worse than greedy"
                );
                assert!(y.len() <= 3 && y.windows(2).all(|w| w[0].score >= w[1].score));
            }
        }
    }

    /// A minimum length holds <eos> back, greedy and beam, and the cap still ends.
    #[test]
    fn min_len_holds_eos_back() {
        let sp = Specials {
            pad: 0,
            bos: 2,
            eos: 3,
        };
        let srcs: Vec<&[u32]> = vec![&[4, 5, 6], &[8]];
        let mut m = tiny(Some(Score::Additive), CellKind::Gru);
        for beam in [1, 3] {
            let d = Decoding {
                beam,
                max_len_a: 0.0,
                max_len_b: 7,
                min_len: 5,
                ..Decoding::default()
            };
            for h in m.beam_search(&srcs, &d, sp).unwrap() {
                let n = h[0].tokens.len();
                assert!((5..=7).contains(&n), "beam {beam}: {n} tokens");
                assert!(!h[0].tokens.contains(&sp.eos));
            }
            let d = Decoding { min_len: 7, ..d };
            for h in m.greedy(&srcs, &d, sp).unwrap() {
                assert_eq!(h.tokens.len(), 7);
            }
        }
    }

    /// A sentence translates the same alone and in a padded batch, greedy and beam.
    #[test]
    fn padding_never_changes_a_translation() {
        let sp = Specials {
            pad: 0,
            bos: 2,
            eos: 3,
        };
        let srcs: Vec<&[u32]> = vec![&[4, 5, 6, 7, 8, 4], &[8], &[5, 5, 4]];
        for att in [Some(Score::Additive), Some(Score::General), None] {
            let mut m = tiny(att, CellKind::Lstm);
            for beam in [1, 3] {
                let d = Decoding {
                    beam,
                    max_len_b: 6,
                    ..Decoding::default()
                };
                let together = m.beam_search(&srcs, &d, sp).unwrap();
                for (x, want) in srcs.iter().zip(&together) {
                    let alone = m.beam_search(&[*x], &d, sp).unwrap();
                    assert_eq!(alone[0][0].tokens, want[0].tokens, "{att:?} beam {beam}");
                    assert!((alone[0][0].log_prob - want[0].log_prob).abs() < 1e-4);
                }
            }
        }
    }

    /// Encoder, bridge, key projection, attention (each kind, and none), decoder steps
    /// and the deep output layer against finite differences, with label smoothing, on a
    /// padded batch.
    #[test]
    fn seq2seq_gradients_match_finite_differences() {
        for (att, cell) in [
            (Some(Score::Additive), CellKind::Gru),
            (Some(Score::Dot), CellKind::Lstm),
            (Some(Score::General), CellKind::Gru),
            (None, CellKind::Lstm),
        ] {
            let mut m = tiny(att, cell);
            let bt = batch();
            crate::engine::gradcheck::check(&mut m, |m: &mut Seq2Seq, backward| {
                let mut rng = rand::rngs::StdRng::seed_from_u64(0);
                let (l, n) = m.loss(&bt, 0.1, backward, &mut rng).unwrap();
                l / n as f64
            });
        }
    }
}
