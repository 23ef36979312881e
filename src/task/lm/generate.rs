//! Autoregressive generation: sampling the next token (temperature, top-k, top-p) and
//! feeding it back in, one batched step at a time.

use super::*;
use crate::engine::linear;
use crate::engine::rnn::State;
use rand::RngCore;

/// How the next token is chosen during generation. The default samples from the model's
/// distribution unchanged: temperature 1, no top-k or top-p cut.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sampling {
    /// Divides the logits (0: the most likely token, as `greedy`).
    pub temperature: f32,
    /// Keep only the k most likely tokens (0: all).
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set with this much probability.
    pub top_p: f32,
    pub greedy: bool,
}

impl Default for Sampling {
    fn default() -> Sampling {
        Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            greedy: false,
        }
    }
}

impl Sampling {
    /// Refuses a temperature that is negative or not finite, or a top-p outside (0, 1]; the
    /// error names the option ([`crate::error::Error::Invalid`]).
    pub fn check(&self) -> crate::error::Result<()> {
        use crate::error::Error;
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(Error::invalid(
                "temperature",
                format!("expected a number ≥ 0, got {}", self.temperature),
            ));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::invalid(
                "top_p",
                format!("expected a number in (0, 1], got {}", self.top_p),
            ));
        }
        Ok(())
    }
}

/// [`Sampling`] as optional values, each `None` taking the default: what a Python call's
/// keywords and a server request's fields carry.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct SamplingOptions {
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub greedy: bool,
}

impl SamplingOptions {
    /// The sampling these options ask for, checked ([`Sampling::check`]).
    pub fn resolve(&self) -> crate::error::Result<Sampling> {
        let d = Sampling::default();
        let s = Sampling {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.unwrap_or(d.top_p),
            greedy: self.greedy,
        };
        s.check()?;
        Ok(s)
    }
}

/// Tokens `generate` draws unless told otherwise (the CLI's `--max-tokens`).
pub const MAX_TOKENS: usize = 200;

/// The seed of generation's sampler unless told otherwise (the CLI's `--seed`).
pub const SEED: u64 = 1;

/// The most tokens one call may ask for: a million, minutes of text on a CPU and a few
/// MB of it; more is refused rather than left to grow until memory runs out.
pub const MAX_GENERATE: usize = 1_000_000;

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
