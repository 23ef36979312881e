//! Causal language model: embedding → recurrent stack → linear over the vocabulary.
//!
//! The model reads w_1..w_{N−1} and its outputs y_1..y_{N−1} are trained to predict
//! w_2..w_N; generation then feeds each sampled token back in. Parameter names follow
//! the state_dict of PyTorch's word_language_model `RNNModel` (encoder.weight,
//! rnn.weight_ih_l0, ..., decoder.weight, decoder.bias), so checkpoints move between the two.

use super::{Eval, Stats, Task};
use crate::checkpoint::{self, Checkpointed, Meta};
use crate::engine::dropout::DropoutKind;
use crate::engine::embedding::Embedding;
use crate::engine::encoder::Encoder;
use crate::engine::init::{self, Init};
use crate::engine::linear;
use crate::engine::loss::{cross_entropy, cross_entropy_backward, CeOut, Reduction};
use crate::engine::param::{Module, Param};
use crate::engine::rnn::{Rnn, RnnConfig, State};
use crate::error::{Error, Result};
use crate::text::tokenizer::Tokenizer;
use crate::text::vocab::Vocab;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

pub mod run;
mod trace;

pub use trace::trace;

/// The task name checkpoints carry.
pub const TASK: &str = "lm";

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LmConfig {
    pub vocab: usize,
    pub embed: usize,
    /// The recurrent stack; `rnn.input` equals `embed`. Must be unidirectional.
    pub rnn: RnnConfig,
    /// Dropout on the embeddings and on the stack's output (Zaremba et al.).
    pub dropout: f32,
    pub dropout_kind: DropoutKind,
    /// Decoder shares the embedding matrix (Press & Wolf 2017); needs hidden == embed.
    pub tied: bool,
    /// The recurrent stack's init; `Uniform` also covers the embedding and the decoder.
    pub init: Init,
    #[serde(default)]
    pub embed_init: EmbedInit,
}

/// How the embedding and the decoder start when `init` is not `Uniform` (which sets every
/// weight, as Zaremba et al.).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbedInit {
    /// word_language_model's `init_weights`: embedding and decoder U(±0.1), decoder bias 0.
    #[default]
    WordLm,
    /// The modules' own defaults, as in a model built from nn.Embedding and nn.Linear with no
    /// `init_weights` (../shared/bench/torch_char_shakespeare.py): embedding N(0, 1), decoder
    /// weight and bias U(±1/√H). The larger input embeddings make a character LSTM's first
    /// epoch much steeper, but over 20 minutes it ends behind U(±0.1) (docs/results.md).
    TorchDefault,
}

impl std::str::FromStr for EmbedInit {
    type Err = Error;
    fn from_str(s: &str) -> Result<EmbedInit> {
        match s {
            "word-lm" => Ok(EmbedInit::WordLm),
            "torch-default" => Ok(EmbedInit::TorchDefault),
            _ => Err(Error::config(format!(
                "{s:?}: expected word-lm or torch-default"
            ))),
        }
    }
}

impl LmConfig {
    /// Refuses configurations that cannot work, with the reason.
    pub fn validate(&self) -> Result<()> {
        if self.rnn.bidirectional {
            return Err(Error::config("a bidirectional language model would see the token it has to predict; use a unidirectional stack"));
        }
        if self.tied && self.rnn.output() != self.embed {
            return Err(Error::config(format!(
                "tied embeddings need hidden size == embedding size ({} != {})",
                self.rnn.output(),
                self.embed
            )));
        }
        if self.rnn.input != self.embed {
            return Err(Error::config(format!(
                "rnn.input is {} but the embedding size is {}; they must be equal",
                self.rnn.input, self.embed
            )));
        }
        if self.vocab == 0 || self.embed == 0 || self.rnn.hidden == 0 || self.rnn.layers == 0 {
            return Err(Error::config(
                "vocabulary, embedding, hidden size and layers must all be positive",
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) || !(0.0..1.0).contains(&self.rnn.dropout) {
            return Err(Error::config("dropout must be in [0, 1)"));
        }
        if matches!(self.init, Init::Uniform { .. }) && self.embed_init != EmbedInit::WordLm {
            return Err(Error::config(
                "a uniform init (uniform:A) sets every weight, the embedding and decoder included, so it takes no separate embedding init",
            ));
        }
        self.rnn.validate()
    }
}

pub struct LanguageModel {
    pub cfg: LmConfig,
    /// Embedding (`encoder.weight`, as word_language_model names it) → dropout → stack
    /// (`rnn.*`) → dropout.
    pub enc: Encoder,
    /// `[V, H]`; `None` when tied to the encoder.
    pub decoder_weight: Option<Param>,
    pub decoder_bias: Param,
    /// The training step's logits `[L·B, V]`, kept between steps: the largest buffer of a
    /// word LM (16 MB at 400 × 10k), which a fresh allocation would zero on every step.
    logits_buf: Vec<f32>,
}

/// Loss of one window and the state to carry into the next.
pub struct WindowOut {
    pub ce: CeOut,
    pub state: State,
}

impl LanguageModel {
    pub fn new(cfg: LmConfig, rng: &mut dyn RngCore) -> LanguageModel {
        let mut encoder = Embedding::new("encoder.weight", cfg.vocab, cfg.embed, rng);
        let rnn = Rnn::new("rnn", cfg.rnn.clone(), cfg.init, 0.0, rng);
        let h = cfg.rnn.output();
        let mut dw = Param::zeros("decoder.weight", &[cfg.vocab, h]);
        let mut db = Param::zeros("decoder.bias", &[cfg.vocab]);
        match (cfg.init, cfg.embed_init) {
            (Init::Uniform { a }, _) => {
                init::uniform(&mut encoder.weight, a, rng);
                init::uniform(&mut dw, a, rng);
                init::uniform(&mut db, a, rng);
            }
            (_, EmbedInit::WordLm) => {
                init::uniform(&mut encoder.weight, 0.1, rng);
                init::uniform(&mut dw, 0.1, rng);
            }
            (_, EmbedInit::TorchDefault) => {
                // Embedding::new already drew nn.Embedding's N(0, 1).
                let a = 1.0 / (h as f32).sqrt();
                init::uniform(&mut dw, a, rng);
                init::uniform(&mut db, a, rng);
            }
        }
        let decoder_weight = (!cfg.tied).then_some(dw);
        let enc = Encoder {
            embedding: encoder,
            rnn,
            dropout: cfg.dropout,
            dropout_kind: cfg.dropout_kind,
        };
        LanguageModel {
            cfg,
            enc,
            decoder_weight,
            decoder_bias: db,
            logits_buf: Vec::new(),
        }
    }

    fn dec_w(&self) -> &[f32] {
        self.decoder_weight
            .as_ref()
            .map_or(&self.enc.embedding.weight.w, |p| &p.w)
    }

    /// Logits `[n, V]` of the stack's outputs `[n, H]`.
    fn decode(&self, out: &[f32]) -> Vec<f32> {
        let (h, v) = (self.cfg.rnn.output(), self.cfg.vocab);
        let mut logits = vec![0.0; out.len() / h * v];
        linear::forward(
            out,
            self.dec_w(),
            Some(&self.decoder_bias.w),
            h,
            v,
            &mut logits,
        );
        logits
    }

    /// Forward + backward over one window: inputs and targets `[L, B]` time-major.
    /// Gradients accumulate; the loss is the per-token mean times `scale` (Zaremba's
    /// recipe sums over the unrolled steps: scale = L).
    #[allow(clippy::too_many_arguments)]
    pub fn train_window(
        &mut self,
        x: &[u32],
        y: &[u32],
        l: usize,
        b: usize,
        state: &State,
        scale: f32,
        rng: &mut dyn RngCore,
    ) -> WindowOut {
        let (v, h) = (self.cfg.vocab, self.cfg.rnn.output());
        let n = l * b;
        let (out, st, cache) = self
            .enc
            .forward(x, l, b, None, Some(state), true, true, rng);
        // The decoder's bias is added, and its gradient summed, inside the loss pass.
        let mut logits = std::mem::take(&mut self.logits_buf);
        logits.resize(n * v, 0.0);
        linear::forward(&out, self.dec_w(), None, h, v, &mut logits);
        let bias = &mut self.decoder_bias;
        let ce = cross_entropy_backward(
            &mut logits,
            y,
            v,
            Reduction::Mean,
            scale,
            Some((&bias.w, &mut bias.g)),
        );
        let mut dout = vec![0.0; n * h];
        {
            let emb = &mut self.enc.embedding.weight;
            let (dw, w) = match &mut self.decoder_weight {
                Some(p) => (&mut p.g, &p.w),
                None => (&mut emb.g, &emb.w),
            };
            linear::backward(&out, &logits, w, dw, None, h, v, Some(&mut dout));
        }
        self.logits_buf = logits;
        drop(out);
        self.enc.backward(cache, x, dout, None);
        WindowOut { ce, state: st }
    }

    /// Logits `[L·B, V]` for inputs `[L, B]`, without caches (evaluation, generation).
    pub fn logits(
        &mut self,
        x: &[u32],
        l: usize,
        b: usize,
        state: &State,
        rng: &mut dyn RngCore,
    ) -> (Vec<f32>, State) {
        let (out, st, _) = self
            .enc
            .forward(x, l, b, None, Some(state), false, false, rng);
        let logits = self.decode(&out);
        (logits, st)
    }

    /// Loss over a window without gradients.
    pub fn eval_window(
        &mut self,
        x: &[u32],
        y: &[u32],
        l: usize,
        b: usize,
        state: &State,
        rng: &mut dyn RngCore,
    ) -> WindowOut {
        let (mut logits, st) = self.logits(x, l, b, state, rng);
        let ce = cross_entropy(&mut logits, y, self.cfg.vocab);
        WindowOut { ce, state: st }
    }
}

impl Module for LanguageModel {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        self.enc.visit(f);
        if let Some(p) = &self.decoder_weight {
            f(p);
        }
        f(&self.decoder_bias);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        self.enc.visit_mut(f);
        if let Some(p) = &mut self.decoder_weight {
            f(p);
        }
        f(&mut self.decoder_bias);
    }
}

/// The language-model task for the shared trainer: a training stream served in BPTT
/// windows with the hidden state carried across them, and a validation stream.
pub struct LmTask {
    pub model: LanguageModel,
    pub tokenizer: Tokenizer,
    pub train: crate::text::batch::Stream,
    pub valid: Option<Vec<u32>>,
    pub bptt: usize,
    /// Zaremba's recipe: the loss is summed over the unrolled steps (scale by L).
    pub sum_over_time: bool,
    pub eval_batch: usize,
    pub eval_bptt: usize,
    starts: Vec<usize>,
    state: State,
}

impl LmTask {
    pub fn new(
        model: LanguageModel,
        tokenizer: Tokenizer,
        train_ids: &[u32],
        valid: Option<Vec<u32>>,
        batch: usize,
        bptt: usize,
        sum_over_time: bool,
    ) -> LmTask {
        let train = crate::text::batch::batchify(train_ids, batch);
        let starts = train.starts(bptt).collect();
        let state = model.enc.rnn.zero_state(batch);
        LmTask {
            model,
            tokenizer,
            train,
            valid,
            bptt,
            sum_over_time,
            eval_batch: 10,
            eval_bptt: 35,
            starts,
            state,
        }
    }

    /// The checkpoint metadata: the model config and the vocabulary `tokens`.
    pub fn meta(cfg: &LmConfig, tokenizer: &Tokenizer) -> Meta<LmConfig> {
        let vocabs = [("tokens".to_string(), tokenizer.to_vocab())].into();
        Meta::new(TASK, cfg.clone(), vocabs)
    }
}

/// Mean loss of `model` over a token stream, batched as PyTorch's example evaluates.
pub fn evaluate(model: &mut LanguageModel, ids: &[u32], batch: usize, bptt: usize) -> Stats {
    let s = crate::text::batch::batchify(ids, batch.max(1));
    let mut state = model.enc.rnn.zero_state(s.batch);
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
    let mut st = Stats::default();
    for i in s.starts(bptt) {
        let (l, x, y) = s.window(i, bptt);
        let o = model.eval_window(x, y, l, s.batch, &state, &mut rng);
        state = o.state;
        st.loss_sum += o.ce.sum;
        st.count += o.ce.count;
    }
    st
}

impl Task for LmTask {
    fn name(&self) -> &'static str {
        TASK
    }
    fn model(&mut self) -> &mut dyn Module {
        &mut self.model
    }
    fn steps_per_epoch(&self) -> usize {
        self.starts.len()
    }
    // The stream is contiguous text: no shuffling.
    fn begin_epoch(&mut self, _epoch: usize, _seed: u64) {}
    fn train_step(&mut self, i: usize, rng: &mut dyn RngCore) -> Stats {
        if i == 0 {
            self.state = self.model.enc.rnn.zero_state(self.train.batch);
        }
        let (l, x, y) = self.train.window(self.starts[i], self.bptt);
        let scale = if self.sum_over_time { l as f32 } else { 1.0 };
        let state = std::mem::take(&mut self.state);
        let o = self
            .model
            .train_window(x, y, l, self.train.batch, &state, scale, rng);
        // Truncated BPTT: the state's values carry over, its gradient does not.
        self.state = o.state;
        Stats {
            loss_sum: o.ce.sum,
            count: o.ce.count,
        }
    }
    fn train_metrics(&self, s: &Stats) -> Vec<(String, f64)> {
        vec![("ppl".into(), s.mean().exp())]
    }
    fn validate(&mut self) -> Option<Eval> {
        let v = self.valid.as_ref()?;
        let s = evaluate(&mut self.model, v, self.eval_batch, self.eval_bptt);
        Some(Eval {
            loss: s.mean(),
            metrics: vec![("ppl".into(), s.mean().exp())],
        })
    }
    fn save(&mut self, path: &Path) -> Result<()> {
        let meta = Self::meta(&self.model.cfg, &self.tokenizer);
        checkpoint::save(path, &self.model, &[], &meta.to_json())
    }
    fn carry(&self) -> Vec<(String, Vec<usize>, Vec<f32>)> {
        let mut v = vec![(
            "carry.h".to_string(),
            vec![self.state.h.len()],
            self.state.h.clone(),
        )];
        if !self.state.c.is_empty() {
            v.push((
                "carry.c".to_string(),
                vec![self.state.c.len()],
                self.state.c.clone(),
            ));
        }
        v
    }
    fn set_carry(&mut self, name: &str, data: Vec<f32>) {
        match name {
            "carry.h" if data.len() == self.state.h.len() => self.state.h = data,
            "carry.c" if data.len() == self.state.c.len() => self.state.c = data,
            _ => {}
        }
    }
}

impl Checkpointed for LanguageModel {
    const TASK: &'static str = TASK;
    const VOCABS: &'static [&'static str] = &["tokens"];
    type Config = LmConfig;
    fn check(cfg: &LmConfig, vocabs: &BTreeMap<String, Vocab>) -> std::result::Result<(), String> {
        cfg.validate().map_err(|e| e.to_string())?;
        let n = vocabs["tokens"].len();
        if n != cfg.vocab {
            return Err(format!(
                "vocabulary \"tokens\" has {n} entries but model.vocab (the embedding's rows) is {}",
                cfg.vocab
            ));
        }
        Ok(())
    }
    fn num_params(cfg: &LmConfig) -> Option<u64> {
        let (v, e, h) = (cfg.vocab as u64, cfg.embed as u64, cfg.rnn.output() as u64);
        let emb = v.checked_mul(e)?;
        let dec = if cfg.tied { 0 } else { v.checked_mul(h)? };
        emb.checked_add(dec)?
            .checked_add(v)?
            .checked_add(cfg.rnn.num_params()?)
    }
    fn build(cfg: LmConfig) -> LanguageModel {
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        LanguageModel::new(cfg, &mut rng)
    }
}

/// Loads a language-model checkpoint (format 1 or 2): its weights and tokenizer.
pub fn load(path: &Path) -> Result<(LanguageModel, Tokenizer)> {
    let (model, meta) = checkpoint::load::<LanguageModel>(path)?;
    let tok = Tokenizer::from_vocab_record(&meta.vocabs["tokens"], path)?;
    if tok.len() != model.cfg.vocab {
        return Err(Error::format(
            path,
            format!(
                "the tokenizer has {} tokens but model.vocab is {}",
                tok.len(),
                model.cfg.vocab
            ),
        ));
    }
    Ok((model, tok))
}

/// How the next token is chosen during generation.
#[derive(Clone, Copy, Debug)]
pub struct Sampling {
    pub temperature: f32,
    pub top_k: usize,
    pub top_p: f32,
    pub greedy: bool,
}

/// Picks a token from logits `[V]` (modified in place).
pub fn sample(logits: &mut [f32], s: &Sampling, rng: &mut dyn RngCore) -> u32 {
    use rand::Rng;
    if s.greedy || s.temperature <= 0.0 {
        return logits
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |a, (i, &v)| if v > a.1 { (i, v) } else { a },
            )
            .0 as u32;
    }
    let inv = 1.0 / s.temperature;
    logits.iter_mut().for_each(|v| *v *= inv);
    crate::engine::loss::softmax_in_place(logits);
    let mut idx: Vec<u32> = (0..logits.len() as u32).collect();
    if s.top_k > 0 || s.top_p < 1.0 {
        idx.sort_by(|&a, &b| logits[b as usize].total_cmp(&logits[a as usize]));
        let mut keep = if s.top_k > 0 {
            s.top_k.min(idx.len())
        } else {
            idx.len()
        };
        if s.top_p < 1.0 {
            let mut acc = 0.0;
            for (n, &i) in idx.iter().enumerate().take(keep) {
                acc += logits[i as usize];
                if acc >= s.top_p {
                    keep = n + 1;
                    break;
                }
            }
        }
        idx.truncate(keep.max(1));
    }
    let total: f32 = idx.iter().map(|&i| logits[i as usize]).sum();
    let mut r = rng.random::<f32>() * total;
    for &i in &idx {
        r -= logits[i as usize];
        if r <= 0.0 {
            return i;
        }
    }
    *idx.last().unwrap_or(&0)
}

/// Feeds `prompt` ids, then samples `max_tokens` tokens one at a time, calling
/// `emit(id)` for each as soon as it is chosen (so the CLI can stream). Stops early when
/// `emit` returns false.
pub fn generate(
    model: &mut LanguageModel,
    prompt: &[u32],
    max_tokens: usize,
    s: &Sampling,
    rng: &mut dyn RngCore,
    mut emit: impl FnMut(u32) -> bool,
) {
    let mut state = model.enc.rnn.zero_state(1);
    let mut stepper = Stepper::new(model);
    // With no prompt the first token is drawn from a uniform distribution.
    let mut logits = vec![0.0; model.cfg.vocab];
    for &id in prompt {
        logits.copy_from_slice(stepper.step(model, &[id], &mut state));
    }
    for _ in 0..max_tokens {
        let id = sample(&mut logits, s, rng);
        if !emit(id) {
            return;
        }
        logits.copy_from_slice(stepper.step(model, &[id], &mut state));
    }
}

/// Token-by-token decoding on the engine's batched step API ([`crate::engine::step`]):
/// `B` tokens in, the next-token logits `[B, V]` out, the state `[L, B, H]` updated.
pub struct Stepper {
    stack: crate::engine::step::Stepper,
    emb: Vec<f32>,
    logits: Vec<f32>,
}

impl Stepper {
    pub fn new(model: &LanguageModel) -> Stepper {
        Stepper {
            stack: crate::engine::step::Stepper::new(&model.enc.rnn)
                .expect("a language model's stack is unidirectional"),
            emb: Vec::new(),
            logits: Vec::new(),
        }
    }

    /// Runs tokens `ids [B]` and returns the next-token logits `[B, V]`.
    pub fn step(&mut self, model: &LanguageModel, ids: &[u32], state: &mut State) -> &[f32] {
        let (b, e, v) = (ids.len(), model.cfg.embed, model.cfg.vocab);
        self.emb.resize(b * e, 0.0);
        model.enc.embedding.forward(ids, &mut self.emb);
        let out = self.stack.step(&model.enc.rnn, &self.emb, b, state);
        self.logits.resize(b * v, 0.0);
        if b == 1 {
            // Batch-1 decoding is bound by reading the weights: one pass over them.
            crate::engine::ops::matvec(&mut self.logits, model.dec_w(), out, false);
            crate::engine::ops::add_bias_rows(&mut self.logits, &model.decoder_bias.w);
        } else {
            linear::forward(
                out,
                model.dec_w(),
                Some(&model.decoder_bias.w),
                model.cfg.rnn.output(),
                v,
                &mut self.logits,
            );
        }
        &self.logits
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cell::CellKind;
    use crate::engine::norm::NormKind;
    use rand::SeedableRng;

    /// torch-default draws nn.Embedding's N(0, 1) and nn.Linear's U(±1/√H); word-lm U(±0.1).
    #[test]
    fn embedding_and_decoder_inits() {
        let cfg = |embed_init| LmConfig {
            vocab: 50,
            embed: 64,
            rnn: RnnConfig::new(CellKind::Lstm, 64, 16, 1),
            dropout: 0.0,
            dropout_kind: DropoutKind::Standard,
            tied: false,
            init: Init::Pytorch,
            embed_init,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let m = LanguageModel::new(cfg(EmbedInit::TorchDefault), &mut rng);
        let e = &m.enc.embedding.weight.w;
        let var = e.iter().map(|v| v * v).sum::<f32>() / e.len() as f32;
        assert!((var - 1.0).abs() < 0.1, "embedding variance {var}");
        let bound = |p: &Param| p.w.iter().fold(0f32, |a, v| a.max(v.abs()));
        let (dw, db) = (
            bound(m.decoder_weight.as_ref().unwrap()),
            bound(&m.decoder_bias),
        );
        assert!(
            dw <= 0.25 && dw > 0.2 && db <= 0.25 && db > 0.1,
            "{dw} {db}"
        );
        let m = LanguageModel::new(cfg(EmbedInit::WordLm), &mut rng);
        assert!(bound(&m.enc.embedding.weight) <= 0.1 && bound(&m.decoder_bias) == 0.0);
    }

    /// The batch-1 decoder gives the logits of the full forward pass, step by step.
    #[test]
    fn stepper_matches_sequence_forward() {
        for (cell, norm, residual, cell_norm) in [
            (CellKind::Lstm, NormKind::None, false, false),
            (CellKind::Gru, NormKind::Layer, true, false),
            (CellKind::Rnn, NormKind::None, true, false),
            (CellKind::Lstm, NormKind::Batch, true, true),
        ] {
            let mut rnn = RnnConfig::new(cell, 8, 8, 2);
            rnn.norm = norm;
            rnn.residual = residual;
            rnn.cell_norm = cell_norm;
            let cfg = LmConfig {
                vocab: 11,
                embed: 8,
                rnn,
                dropout: 0.0,
                dropout_kind: DropoutKind::Standard,
                tied: false,
                init: Init::Pytorch,
                embed_init: EmbedInit::TorchDefault,
            };
            let mut rng = rand::rngs::StdRng::seed_from_u64(4);
            let mut m = LanguageModel::new(cfg, &mut rng);
            let ids = [3u32, 7, 1, 10, 0];
            let (want, _) = m.logits(&ids, 5, 1, &m.enc.rnn.zero_state(1), &mut rng);
            let mut st = m.enc.rnn.zero_state(1);
            let mut s = Stepper::new(&m);
            for (t, &id) in ids.iter().enumerate() {
                let got = s.step(&m, &[id], &mut st);
                for (a, b) in got.iter().zip(&want[t * 11..(t + 1) * 11]) {
                    assert!((a - b).abs() < 1e-5, "{cell:?} step {t}: {a} vs {b}");
                }
            }
        }
    }

    /// The whole LM window (embedding → 2-layer LSTM → decoder with its bias folded into the
    /// loss pass), untied and tied, against finite differences of the evaluation loss.
    #[test]
    fn language_model_window() {
        use crate::engine::gradcheck::check;
        use rand::rngs::StdRng;
        for tied in [false, true] {
            let cfg = LmConfig {
                vocab: 9,
                embed: 6,
                rnn: RnnConfig::new(CellKind::Lstm, 6, 6, 2),
                dropout: 0.0,
                dropout_kind: DropoutKind::Standard,
                tied,
                init: Init::Uniform { a: 0.5 },
                embed_init: Default::default(),
            };
            let mut rng = StdRng::seed_from_u64(7);
            let mut m = LanguageModel::new(cfg, &mut rng);
            let (l, b) = (4, 3);
            let x: Vec<u32> = (0..l * b).map(|i| (i * 5 % 9) as u32).collect();
            let y: Vec<u32> = (0..l * b).map(|i| (i * 7 % 9) as u32).collect();
            let state = m.enc.rnn.zero_state(b);
            check(&mut m, |m: &mut LanguageModel, backward| {
                let mut rng = StdRng::seed_from_u64(0);
                let out = if backward {
                    m.train_window(&x, &y, l, b, &state, 1.0, &mut rng)
                } else {
                    m.eval_window(&x, &y, l, b, &state, &mut rng)
                };
                out.ce.sum / out.ce.count as f64
            });
        }
    }
}
