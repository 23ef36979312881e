//! The language model for the one trainer ([`LmTask`]: BPTT windows with the state carried
//! across them) and its evaluation.

use super::*;
use crate::checkpoint::{self, Meta};
use crate::engine::param::Module;
use crate::engine::rnn::State;
use crate::error::Result;
use crate::task::{Eval, Stats, Task};
use crate::text::tokenizer::Tokenizer;
use rand::RngCore;
use std::path::Path;

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
            .train_window(x, y, self.train.batch, &state, scale, rng);
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
