//! A translation run as data ([`TrRun`]): the files, the tokenizers, the model and the
//! schedule, its defaults, and building the task.

use super::*;
use super::{Decoding, Seq2Seq, Seq2SeqConfig};
use crate::checkpoint::Checkpointed;
use crate::engine::attention::Score;
use crate::engine::cell::CellKind;
use crate::engine::init::Init;
use crate::engine::rnn::RnnConfig;
use crate::error::{Error, Result};
use crate::task::{Task, TrainConfig};
use crate::text::tokenizer::{Kind, Tokenizer, TrainOptions};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrData {
    /// `multi30k` with `src_lang`/`tgt_lang` (de, en) fills the files.
    pub dataset: Option<String>,
    pub src_lang: String,
    pub tgt_lang: String,
    /// (source, target) file pairs.
    pub train: Option<(PathBuf, PathBuf)>,
    pub valid: Option<(PathBuf, PathBuf)>,
    pub test: Option<(PathBuf, PathBuf)>,
    pub tokenizer: Kind,
    pub vocab_size: Option<usize>,
    pub min_freq: usize,
    pub lowercase: bool,
    pub batch: usize,
    pub label_smoothing: f32,
    /// How validation translates to compute BLEU (greedy: beam 1).
    pub decoding: Decoding,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrRun {
    pub data: TrData,
    /// The model; vocabulary sizes are filled in from the training data.
    pub model: Seq2SeqConfig,
    pub train: TrainConfig,
}

impl TrRun {
    /// The PyTorch seq2seq tutorial's Bahdanau model (bentrevett, tutorial 3): embeddings
    /// 256, a bidirectional GRU encoder of 512 a direction, a GRU decoder of 512 with
    /// additive attention, dropout 0.5, Adam 1e-3, clip 1, batches of 128, 10 epochs; words
    /// with a minimum frequency of 2, case kept (the `multi30k` dataset option lowercases,
    /// as the tutorial does); greedy decoding capped at 25 tokens for validation.
    pub fn recipe() -> TrRun {
        let mut enc = RnnConfig::new(CellKind::Gru, 256, 512, 1);
        enc.bidirectional = true;
        TrRun {
            data: TrData {
                dataset: None,
                src_lang: "de".into(),
                tgt_lang: "en".into(),
                train: None,
                valid: None,
                test: None,
                tokenizer: Kind::Word,
                vocab_size: None,
                min_freq: 2,
                lowercase: false,
                batch: 128,
                label_smoothing: 0.0,
                decoding: Decoding {
                    beam: 1,
                    alpha: 0.0,
                    max_len_a: 0.0,
                    max_len_b: 25,
                    n_best: 1,
                    attention: false,
                    min_len: 0,
                    replace_unk: false,
                },
            },
            model: Seq2SeqConfig {
                src_vocab: 0,
                tgt_vocab: 0,
                embed: 256,
                encoder: enc,
                decoder_cell: CellKind::Gru,
                decoder_hidden: 512,
                attention: Some(Score::Additive),
                attn_dim: 512,
                dropout: 0.5,
                init: Init::Pytorch,
            },
            train: TrainConfig {
                clip: 1.0,
                patience: Some(3),
                ..TrainConfig::default()
            },
        }
    }

    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        let d = &self.data;
        if d.batch == 0 || d.min_freq == 0 || d.decoding.beam == 0 {
            return Err(Error::config(
                "batch size, min-freq and beam must be at least 1",
            ));
        }
        if !(0.0..1.0).contains(&d.label_smoothing) {
            return Err(Error::config("label smoothing must be in [0, 1)"));
        }
        let mut m = self.model.clone();
        (m.src_vocab, m.tgt_vocab, m.encoder.input) = (4, 4, m.embed);
        m.validate()
    }

    fn files(&self) -> Result<[Option<(PathBuf, PathBuf)>; 3]> {
        let d = &self.data;
        if d.train.is_some() {
            return Ok([d.train.clone(), d.valid.clone(), d.test.clone()]);
        }
        match d.dataset.as_deref() {
            Some("multi30k") => {
                let dir = crate::data::resolve("multi30k")?;
                let pair = |stem: &str| {
                    Some((
                        dir.join(format!("{stem}.{}", d.src_lang)),
                        dir.join(format!("{stem}.{}", d.tgt_lang)),
                    ))
                };
                Ok([pair("train"), pair("val"), pair("test_2016_flickr")])
            }
            Some(other) => Err(Error::Usage(format!(
                "dataset {other} is not a translation corpus; use multi30k, or --train SRC TGT"
            ))),
            None => Err(Error::Usage(
                "give --train SRC TGT or --data multi30k".into(),
            )),
        }
    }

    /// Every set: line-aligned pairs (different line counts are an error naming the line).
    pub fn corpus(&self) -> Result<[Vec<(String, String)>; 3]> {
        let files = self.files()?;
        let read = |p: &Option<(PathBuf, PathBuf)>| -> Result<Vec<(String, String)>> {
            match p {
                Some((s, t)) => crate::text::corpus::read_parallel(s, t),
                None => Ok(Vec::new()),
            }
        };
        Ok([read(&files[0])?, read(&files[1])?, read(&files[2])?])
    }

    pub fn build(
        &mut self,
        corpus: &[Vec<(String, String)>; 3],
        note: &mut dyn FnMut(String),
    ) -> Result<TrTask> {
        let d = &self.data;
        let lower = |s: &str| {
            if d.lowercase {
                s.to_lowercase()
            } else {
                s.to_string()
            }
        };
        let side = |k: usize| -> Result<Tokenizer> {
            let texts: Vec<String> = corpus[0]
                .iter()
                .map(|p| lower(if k == 0 { &p.0 } else { &p.1 }))
                .collect();
            let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
            Tokenizer::train(
                &refs,
                &TrainOptions {
                    kind: d.tokenizer,
                    min_freq: d.min_freq,
                    max_size: d.vocab_size,
                },
            )
        };
        let (src_tok, tgt_tok) = (side(0)?, side(1)?);
        let m = &mut self.model;
        (m.src_vocab, m.tgt_vocab, m.encoder.input) = (src_tok.len(), tgt_tok.len(), m.embed);
        m.validate()?;
        crate::task::check_memory(<Seq2Seq as Checkpointed>::num_params(m))?;
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(self.train.seed);
        let model = Seq2Seq::new(self.model.clone(), &mut rng)?;
        let mut task = TrTask {
            model,
            src_tok,
            tgt_tok,
            lowercase: d.lowercase,
            label_smoothing: d.label_smoothing,
            decoding: d.decoding,
            batch: d.batch,
            train: Vec::new(),
            valid: Vec::new(),
            valid_refs: Vec::new(),
            batches: Vec::new(),
        };
        let (train, skipped, _) = task.encode_pairs(&corpus[0], true);
        let (valid, skipped_v, cut) = task.encode_pairs(&corpus[1], false);
        if skipped + skipped_v > 0 {
            note(format!(
                "skipped {skipped} training pairs with an empty side or a side over {MAX_TOKENS} tokens, and {skipped_v} validation pairs with an empty side"
            ));
        }
        if cut > 0 {
            note(format!(
                "cut {cut} validation pairs to their first {MAX_TOKENS} tokens a side"
            ));
        }
        task.valid_refs = corpus[1]
            .iter()
            .filter(|p| !p.0.trim().is_empty() && !p.1.trim().is_empty())
            .map(|p| p.1.clone())
            .collect();
        (task.train, task.valid) = (train, valid);
        if task.train.is_empty() {
            return Err(Error::config("no training pairs with both sides non-empty"));
        }
        Task::begin_epoch(&mut task, 1, 0);
        Ok(task)
    }
}

/// What [`TrRun`] builds: the (train, valid, test) pairs and the task.
pub type TrBuilt = ([Vec<(String, String)>; 3], TrTask);

impl crate::task::Recipe for TrRun {
    const TASK: &'static str = TASK;
    crate::task::recipe_parts!(TrRun, TrBuilt);

    /// `decoding`, and `{valid,test}_` [`TrTask::evaluate`]'s values of the best
    /// checkpoint, for the sets the run has.
    fn score_best(
        &self,
        (corpus, _): &mut TrBuilt,
        model_path: &Path,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        let mut best = load(model_path)?;
        let mut m = serde_json::Map::new();
        m.insert(
            "decoding".into(),
            serde_json::to_value(self.data.decoding).unwrap_or_default(),
        );
        for (name, pairs) in [("valid", &corpus[1]), ("test", &corpus[2])] {
            if pairs.is_empty() {
                continue;
            }
            for (k, v) in best.evaluate(pairs, &self.data.decoding)? {
                m.insert(format!("{name}_{k}"), v);
            }
        }
        Ok(m)
    }
}
