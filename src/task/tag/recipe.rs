//! A tagging run as data ([`TagRun`]): the files and how to read them, the model, the
//! training schedule; the published recipes ([`TagPreset`]); and building the task.
//! `config.json` and the train state record it, as for the language model.

use super::{Encoded, Output, TagConfig, TagTask, TagVocabs, Tagger};
use crate::engine::cell::CellKind;
use crate::engine::init::Init;
use crate::engine::optim::{OptimKind, Schedule};
use crate::engine::rnn::RnnConfig;
use crate::error::{Error, Result};
use crate::task::TrainConfig;
use crate::text::conll::{self, Columns, Scheme, Sentence};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TagPreset {
    /// Lample et al. 2016's LSTM-CRF: word embeddings 100, character BiLSTM 25+25 over
    /// 25-wide character embeddings, BiLSTM 100+100, dropout 0.5, CRF, BIOES inside;
    /// batches of 10 with SGD (lr 0.015, momentum 0.9, clip 5) for speed on a CPU.
    LampleConll,
}

impl TagPreset {
    pub const NAMES: [&'static str; 1] = ["lample-conll"];
}

impl std::str::FromStr for TagPreset {
    type Err = Error;
    fn from_str(s: &str) -> Result<TagPreset> {
        match s {
            "lample-conll" => Ok(TagPreset::LampleConll),
            _ => Err(Error::config(format!(
                "{s:?}: expected one of {}",
                TagPreset::NAMES.join(", ")
            ))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TagData {
    /// A named dataset (`conll2003`, `wikiann-ru`) that fills the files and columns.
    pub dataset: Option<String>,
    pub train: Option<PathBuf>,
    pub valid: Option<PathBuf>,
    pub test: Option<PathBuf>,
    /// Token and tag columns (negative counts from the end).
    pub token_col: isize,
    pub tag_col: isize,
    /// The files' scheme.
    pub scheme: Scheme,
    /// Keep only these entity types (the rest become O); `None`: every type.
    pub types: Option<Vec<String>>,
    pub batch: usize,
    /// Words seen fewer times become `<unk>`.
    pub min_freq: usize,
    /// Probability of replacing a training singleton by `<unk>` (Lample et al.: 0.5).
    pub unk_replace: f32,
    /// Word vectors (word2vec/GloVe/fastText text) for the rows they cover.
    pub pretrained: Option<PathBuf>,
    /// An rnnkit language model whose input embedding starts the word embedding.
    pub init_from_lm: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TagRun {
    pub preset: Option<TagPreset>,
    pub data: TagData,
    /// The model; `words`, `chars` and `labels` are filled in from the training data.
    pub model: TagConfig,
    pub train: TrainConfig,
}

/// Training, validation and test sentences, tags in the model's scheme.
pub struct TagCorpus {
    pub train: Vec<Sentence>,
    pub valid: Vec<Sentence>,
    pub test: Vec<Sentence>,
    /// Where each set was read from, for errors.
    pub paths: [Option<PathBuf>; 3],
}

impl TagRun {
    /// The run a preset describes (`None`: the same model, Adam 1e-3, batches of 32, at
    /// most 40 epochs with patience 8: 90.98 dev F1 on CoNLL-2003 against 87.96 for the
    /// preset's SGD after 30 epochs, docs/results.md).
    pub fn recipe(preset: Option<TagPreset>) -> TagRun {
        let mut rnn = RnnConfig::new(CellKind::Lstm, 0, 100, 1);
        rnn.bidirectional = true;
        let mut model = TagConfig {
            words: 0,
            word_dim: 100,
            chars: 0,
            char_dim: 25,
            char_hidden: 25,
            casing_dim: 8,
            rnn,
            dropout: 0.5,
            labels: 0,
            output: Output::Crf,
            scheme: Scheme::Bioes,
            constrained: true,
            init: Init::Pytorch,
            types: None,
        };
        model.rnn.input = model.token_dim();
        let mut run = TagRun {
            preset,
            data: TagData {
                dataset: None,
                train: None,
                valid: None,
                test: None,
                token_col: 0,
                tag_col: -1,
                scheme: Scheme::Iob2,
                types: None,
                batch: 32,
                min_freq: 1,
                unk_replace: 0.5,
                pretrained: None,
                init_from_lm: None,
            },
            model,
            train: TrainConfig {
                epochs: 40,
                patience: Some(8),
                ..TrainConfig::default()
            },
        };
        if preset == Some(TagPreset::LampleConll) {
            run.data.dataset = Some("conll2003".into());
            run.data.batch = 10;
            run.train.optim = OptimKind::Sgd { momentum: 0.9 };
            run.train.lr = 0.015;
            run.train.schedule = Schedule::StepDecay {
                after: 1,
                factor: 1.05,
            };
            run.train.epochs = 50;
        }
        run
    }

    /// Checks every number of the run before any data is read.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        let d = &self.data;
        if d.batch == 0 || d.min_freq == 0 {
            return Err(Error::config("batch size and min-freq must be at least 1"));
        }
        if !(0.0..=1.0).contains(&d.unk_replace) {
            return Err(Error::config("unk-replace must be in [0, 1]"));
        }
        let mut m = self.model.clone();
        (m.words, m.chars, m.labels) = (2, 2, 1);
        m.rnn.input = m.token_dim();
        m.validate()
    }

    fn files(&self) -> Result<[Option<PathBuf>; 3]> {
        let d = &self.data;
        if d.train.is_some() {
            return Ok([d.train.clone(), d.valid.clone(), d.test.clone()]);
        }
        let name = d.dataset.as_deref().ok_or_else(|| {
            Error::Usage("give --train FILE (and --valid, --test) or --data NAME".into())
        })?;
        let dir = crate::data::resolve(name)?;
        let [a, b, c] = match name {
            "conll2003" => ["train.txt", "valid.txt", "test.txt"],
            "wikiann-ru" => ["train.conllu", "val.conllu", "test.conllu"],
            other => {
                return Err(Error::Usage(format!(
                    "dataset {other} is not a tagging corpus; use conll2003 or wikiann-ru, or --train FILE"
                )))
            }
        };
        Ok([Some(dir.join(a)), Some(dir.join(b)), Some(dir.join(c))])
    }

    /// Named datasets fix their columns (WikiANN's CoNLL-U: token 1, tag 2).
    pub fn columns(&self) -> Columns {
        match (self.data.dataset.as_deref(), &self.data.train) {
            (Some("wikiann-ru"), None) => Columns { token: 1, tag: 2 },
            _ => Columns {
                token: self.data.token_col,
                tag: self.data.tag_col,
            },
        }
    }

    /// Reads one file: validates its tags in the files' scheme, keeps the chosen types,
    /// and re-tags it in the model's scheme.
    pub fn read(&self, path: &Path) -> Result<Vec<Sentence>> {
        let mut sents = conll::read(path, self.columns())?;
        for s in &mut sents {
            conll::validate_sentence(path, s, self.data.scheme)?;
            s.tags = retag(
                &s.tags,
                self.data.scheme,
                self.model.scheme,
                self.data.types.as_deref(),
            );
        }
        Ok(sents)
    }

    /// Every set, read and checked before training starts.
    pub fn corpus(&self) -> Result<TagCorpus> {
        let files = self.files()?;
        let read = |p: &Option<PathBuf>| -> Result<Vec<Sentence>> {
            p.as_deref().map_or(Ok(Vec::new()), |p| self.read(p))
        };
        Ok(TagCorpus {
            train: read(&files[0])?,
            valid: read(&files[1])?,
            test: read(&files[2])?,
            paths: files,
        })
    }

    /// Builds the vocabularies, the model (pretrained rows if asked) and the task.
    pub fn build(&mut self, corpus: &TagCorpus, note: &mut dyn FnMut(String)) -> Result<TagTask> {
        let vocabs = TagVocabs::build(&corpus.train, self.data.min_freq);
        let m = &mut self.model;
        (m.words, m.chars, m.labels) =
            (vocabs.words.len(), vocabs.chars.len(), vocabs.labels.len());
        m.types = self.data.types.clone();
        m.rnn.input = m.token_dim();
        m.validate()?;
        crate::task::check_memory(<Tagger as crate::checkpoint::Checkpointed>::num_params(m))?;
        let encode = |sents: &[Sentence], which: usize| -> Result<Vec<Encoded>> {
            sents
                .iter()
                .map(|s| {
                    vocabs.encode(&s.tokens, &s.tags).map_err(|e| {
                        let p = corpus.paths[which].clone().unwrap_or_default();
                        Error::input(&p, s.line, e)
                    })
                })
                .collect()
        };
        let train = encode(&corpus.train, 0)?;
        let valid = encode(&corpus.valid, 1)?;
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(self.train.seed);
        let mut model = Tagger::new(self.model.clone(), &mut rng);
        model.constrain(&vocabs.labels.tokens);
        if let Some(p) = &self.data.pretrained {
            let v = crate::text::corpus::read_vectors(p)?;
            let found = model
                .words
                .load_pretrained(&vocabs.words.tokens, &v, false)
                .map_err(|e| Error::format(p, e.to_string()))?;
            note(format!(
                "pretrained vectors cover {found} of {} words",
                vocabs.words.len()
            ));
        }
        if let Some(p) = &self.data.init_from_lm {
            let found = crate::task::lm::copy_embedding(p, &vocabs.words.tokens, &mut model.words)?;
            note(format!(
                "the language model's embedding covers {found} of {} words",
                vocabs.words.len()
            ));
        }
        Ok(TagTask::new(
            model,
            vocabs,
            train,
            valid,
            self.data.batch,
            self.data.unk_replace,
        ))
    }
}

/// What [`TagRun`] builds: the sentences and the task.
pub type TagBuilt = (TagCorpus, TagTask);

/// `sents` as ids; an unseen label is an error naming its sentence's line in `path`.
pub fn encode_sentences(v: &TagVocabs, sents: &[Sentence], path: &Path) -> Result<Vec<Encoded>> {
    sents
        .iter()
        .map(|s| {
            v.encode(&s.tokens, &s.tags)
                .map_err(|e| Error::input(path, s.line, e))
        })
        .collect()
}

/// conlleval's entity scores of `model` on encoded sentences (their labels are the gold).
pub fn score_encoded(
    model: &mut Tagger,
    v: &TagVocabs,
    sents: &[Encoded],
) -> crate::metrics::NerScores {
    let (pred, _) = super::tag_all(model, sents, 64);
    let gold: Vec<Vec<u32>> = sents.iter().map(|s| s.labels.clone()).collect();
    super::score(&v.labels, model.cfg.scheme, &gold, &pred)
}

impl crate::task::Recipe for TagRun {
    const TASK: &'static str = super::TASK;
    crate::task::recipe_parts!(TagRun, TagBuilt);

    /// `{valid,test}_{f1,precision,recall,accuracy,per_type}` of the best checkpoint, for
    /// the sets the run has.
    fn score_best(
        &self,
        (corpus, _): &mut TagBuilt,
        model_path: &Path,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        let (mut best, vocabs) = super::load(model_path)?;
        let mut m = serde_json::Map::new();
        for (name, sents, path) in [
            ("valid", &corpus.valid, &corpus.paths[1]),
            ("test", &corpus.test, &corpus.paths[2]),
        ] {
            if sents.is_empty() {
                continue;
            }
            let enc = encode_sentences(&vocabs, sents, path.as_deref().unwrap_or(Path::new("-")))?;
            let sc = score_encoded(&mut best, &vocabs, &enc);
            for (k, v) in [
                ("f1", sc.f1),
                ("precision", sc.precision),
                ("recall", sc.recall),
                ("accuracy", sc.accuracy),
            ] {
                m.insert(format!("{name}_{k}"), v.into());
            }
            m.insert(
                format!("{name}_per_type"),
                serde_json::to_value(&sc.per_type).unwrap_or_default(),
            );
        }
        Ok(m)
    }
}

/// Tags of `from` re-tagged in `to`, keeping only `types` (others become O).
pub fn retag(tags: &[String], from: Scheme, to: Scheme, types: Option<&[String]>) -> Vec<String> {
    let mut iob2 = conll::convert(tags, from, Scheme::Iob2);
    if let Some(keep) = types {
        for t in &mut iob2 {
            if let Some((_, ty)) = conll::split_tag(t) {
                if !ty.is_empty() && !keep.iter().any(|k| k == ty) {
                    *t = "O".into();
                }
            }
        }
    }
    conll::convert(&iob2, Scheme::Iob2, to)
}
