//! The language model's network ([`LanguageModel`]: embedding → stack → decoder), its
//! config, and its checkpoint.

use super::*;
use crate::checkpoint::{self, Checkpointed};
use crate::engine::dropout::DropoutKind;
use crate::engine::embedding::Embedding;
use crate::engine::encoder::Encoder;
use crate::engine::init::{self, Init};
use crate::engine::linear;
use crate::engine::loss::{cross_entropy, cross_entropy_backward, CeOut, Reduction};
use crate::engine::param::{Module, Param};
use crate::engine::rnn::{Pass, Rnn, RnnConfig, State};
use crate::error::{Error, Result};
use crate::text::tokenizer::Tokenizer;
use crate::text::vocab::Vocab;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

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

    pub(super) fn dec_w(&self) -> &[f32] {
        self.decoder_weight
            .as_ref()
            .map_or(&self.enc.embedding.weight.w, |p| &p.w)
    }

    /// Logits `[n, V]` of the stack's outputs `[n, H]`.
    pub(super) fn decode(&self, out: &[f32]) -> Vec<f32> {
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

    /// Forward + backward over one window: inputs and targets `[L, B]` time-major (L is
    /// their length over `b`). Gradients accumulate; the loss is the per-token mean times
    /// `scale` (Zaremba's recipe sums over the unrolled steps: scale = L).
    pub fn train_window(
        &mut self,
        x: &[u32],
        y: &[u32],
        b: usize,
        state: &State,
        scale: f32,
        rng: &mut dyn RngCore,
    ) -> WindowOut {
        let (v, h) = (self.cfg.vocab, self.cfg.rnn.output());
        let (n, l) = (x.len(), x.len() / b.max(1));
        let (out, st, cache) = self.enc.forward(x, Pass::train(l, b).state(state), rng);
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
            linear::backward(&out, &logits, w, (dw, None), [h, v], Some(&mut dout));
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
        let (out, st, _) = self.enc.forward(x, Pass::eval(l, b).state(state), rng);
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

/// Starts the rows of `emb` (one per token of `vocab`) from the input embedding of an rnnkit
/// language model, matching tokens by their text: a tagger or classifier can start from an
/// LM pretrained on raw text with `rnnkit lm train`. Returns how many rows were found.
pub fn copy_embedding(
    path: &Path,
    vocab: &[String],
    emb: &mut crate::engine::embedding::Embedding,
) -> Result<usize> {
    let (lm, tok) = load(path)?;
    let src = &lm.enc.embedding;
    let d = src.dim();
    if d != emb.dim() {
        return Err(crate::error::Error::format(
            path,
            format!("its embedding is {d} wide; this model's is {}", emb.dim()),
        ));
    }
    let mut found = 0;
    for (i, w) in vocab.iter().enumerate() {
        if let Some(id) = tok.id(w) {
            emb.weight.w[i * d..(i + 1) * d]
                .copy_from_slice(&src.weight.w[id as usize * d..(id as usize + 1) * d]);
            found += 1;
        }
    }
    Ok(found)
}
