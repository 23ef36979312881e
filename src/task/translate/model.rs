//! The translator's network ([`Seq2Seq`]: encoder → bridge → attention decoder), its
//! config, batches and the teacher-forced loss.

use crate::engine::attention::{Attention, Keys, Score, StepCache};
use crate::engine::cell::CellKind;
use crate::engine::dropout::{self, DropoutKind, Mask};
use crate::engine::embedding::Embedding;
use crate::engine::encoder::{Encoder, EncoderCache};
use crate::engine::init::Init;
use crate::engine::linear::Linear;
use crate::engine::loss::softmax_in_place;
use crate::engine::param::{Module, Param};
use crate::engine::rnn::{Pass, Rnn, RnnConfig, State};
use crate::engine::step::{StepTrace, Stepper};
use crate::error::{Error, Result};
use rand::RngCore;
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

    pub(super) fn needs_projection(&self) -> bool {
        self.attention.is_some_and(Score::is_dot) && self.encoder.output() != self.decoder_hidden
    }

    pub(super) fn context_dim(&self) -> usize {
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

    pub(super) fn decoder_rnn(&self) -> RnnConfig {
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
    pub(super) stepper: Option<Stepper>,
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
pub(super) struct Encoded {
    pub(super) y: Vec<f32>,
    pub(super) keys: Vec<f32>,
    pub(super) s0: State,
    pub(super) bridge_in: Vec<f32>,
    /// tanh(bridge) `[B, Hd]`, kept for its derivative.
    pub(super) s0_act: Vec<f32>,
    pub(super) cache: Option<EncoderCache>,
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

    pub(super) fn encode(&mut self, bt: &Batch, train: bool, rng: &mut dyn RngCore) -> Encoded {
        let (s, b) = (bt.s, bt.b);
        let (y, st, cache) = self.enc.forward(
            &bt.src,
            Pass::eval(s, b).lengths(Some(&bt.src_len)).training(train),
            rng,
        );
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
