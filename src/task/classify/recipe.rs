//! A classification run as data ([`ClsRun`]), its recipe, and building the task.

use super::{Classifier, ClsConfig, ClsTask, Pooling};
use crate::engine::cell::CellKind;
use crate::engine::init::Init;

use crate::engine::rnn::RnnConfig;
use crate::error::{Error, Result};
use crate::task::{Selection, TrainConfig};
use crate::text::corpus::{read_tsv, Column};
use crate::text::tokenizer::{Kind, Tokenizer, TrainOptions};
use crate::text::vocab::Vocab;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Class weights of the loss.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Weights {
    /// n / (C · n_c) for each class c, as scikit-learn's "balanced".
    Balanced,
    /// One weight a class, in the order of the label list (sorted label names).
    Given(Vec<f32>),
}

impl std::str::FromStr for Weights {
    type Err = Error;
    fn from_str(s: &str) -> Result<Weights> {
        if s == "balanced" {
            return Ok(Weights::Balanced);
        }
        s.split(',')
            .map(|w| match w.trim().parse::<f32>() {
                Ok(v) if v > 0.0 && v.is_finite() => Ok(v),
                _ => Err(Error::config(format!(
                    "{s:?}: expected balanced or positive weights W1,W2,... one a class"
                ))),
            })
            .collect::<Result<Vec<f32>>>()
            .map(Weights::Given)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClsData {
    /// A named dataset (`sst2`) that fills the files.
    pub dataset: Option<String>,
    pub train: Option<PathBuf>,
    pub valid: Option<PathBuf>,
    pub test: Option<PathBuf>,
    pub text_col: Column,
    pub label_col: Column,
    /// Whether a first line is a header when both columns are numbered.
    pub header: bool,
    pub tokenizer: Kind,
    pub lowercase: bool,
    pub min_freq: usize,
    pub vocab_size: Option<usize>,
    pub batch: usize,
    pub weights: Option<Weights>,
    /// Select the best model by `accuracy` or `macro_f1` (for unbalanced classes).
    pub select: String,
    pub pretrained: Option<PathBuf>,
    pub init_from_lm: Option<PathBuf>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ClsRun {
    pub data: ClsData,
    /// The model; `vocab` and `classes` are filled in from the training data.
    pub model: ClsConfig,
    pub train: TrainConfig,
}

/// Labelled sentences: (text, label).
pub struct ClsCorpus {
    pub train: Vec<(String, String)>,
    pub valid: Vec<(String, String)>,
    pub test: Vec<(String, String)>,
    pub paths: [Option<PathBuf>; 3],
}

impl ClsRun {
    /// rnnkit's recipe: 300-wide random embeddings, a BiLSTM of 150 a direction, max
    /// pooling, dropout 0.5, Adam 1e-3, batches of 32, at most 10 epochs (patience 3).
    pub fn recipe() -> ClsRun {
        let mut rnn = RnnConfig::new(CellKind::Lstm, 300, 150, 1);
        rnn.bidirectional = true;
        ClsRun {
            data: ClsData {
                dataset: None,
                train: None,
                valid: None,
                test: None,
                text_col: Column::Name("sentence".into()),
                label_col: Column::Name("label".into()),
                header: false,
                tokenizer: Kind::Word,
                lowercase: true,
                min_freq: 1,
                vocab_size: None,
                batch: 32,
                weights: None,
                select: "accuracy".into(),
                pretrained: None,
                init_from_lm: None,
            },
            model: ClsConfig {
                vocab: 0,
                embed: 300,
                rnn,
                dropout: 0.5,
                pooling: Pooling::Max,
                classes: 0,
                init: Init::Pytorch,
            },
            train: TrainConfig {
                log_every: 100,
                patience: Some(3),
                ..TrainConfig::default()
            },
        }
    }

    /// Checks every number of the run before any data is read.
    pub fn validate(&self) -> Result<()> {
        self.train.validate()?;
        let d = &self.data;
        if d.batch == 0 || d.min_freq == 0 || d.vocab_size == Some(0) {
            return Err(Error::config(
                "batch size, min-freq and vocab-size must be at least 1",
            ));
        }
        self.selection()?;
        let mut m = self.model.clone();
        (m.vocab, m.classes, m.rnn.input) = (1, 2, m.embed);
        m.validate()
    }

    fn files(&self) -> Result<[Option<PathBuf>; 3]> {
        let d = &self.data;
        if d.train.is_some() {
            return Ok([d.train.clone(), d.valid.clone(), d.test.clone()]);
        }
        match d.dataset.as_deref() {
            Some("sst2") => {
                let dir = crate::data::resolve("sst2")?;
                // GLUE's test.tsv has no labels; SST-2 results are reported on dev.
                Ok([Some(dir.join("train.tsv")), Some(dir.join("dev.tsv")), None])
            }
            Some(other) => Err(Error::Usage(format!(
                "dataset {other} is not a classification corpus; use sst2, or --train FILE"
            ))),
            None => Err(Error::Usage(
                "give --train FILE (and --valid, --test) or --data sst2".into(),
            )),
        }
    }

    /// Reads a labelled file with the run's columns.
    pub fn read(&self, path: &Path) -> Result<Vec<(String, String)>> {
        let d = &self.data;
        let rows = read_tsv(path, &d.text_col, Some(&d.label_col), Some(d.header))?;
        rows.into_iter()
            .enumerate()
            .map(|(i, (t, l))| {
                l.map(|l| (t, l)).ok_or_else(|| {
                    Error::input(path, i + 1, format!("no label column {:?}", d.label_col))
                })
            })
            .collect()
    }

    pub fn corpus(&self) -> Result<ClsCorpus> {
        let files = self.files()?;
        let read = |p: &Option<PathBuf>| p.as_deref().map_or(Ok(Vec::new()), |p| self.read(p));
        Ok(ClsCorpus {
            train: read(&files[0])?,
            valid: read(&files[1])?,
            test: read(&files[2])?,
            paths: files,
        })
    }

    pub fn selection(&self) -> Result<Selection> {
        match self.data.select.as_str() {
            "accuracy" => Ok(Selection {
                metric: "accuracy",
                higher_is_better: true,
            }),
            "macro_f1" | "macro-f1" => Ok(Selection {
                metric: "macro_f1",
                higher_is_better: true,
            }),
            s => Err(Error::config(format!(
                "select {s:?}: expected accuracy or macro-f1"
            ))),
        }
    }

    pub fn build(&mut self, corpus: &ClsCorpus, note: &mut dyn FnMut(String)) -> Result<ClsTask> {
        let d = &self.data;
        let lower = |s: &str| {
            if d.lowercase {
                s.to_lowercase()
            } else {
                s.to_string()
            }
        };
        let texts: Vec<String> = corpus.train.iter().map(|(t, _)| lower(t)).collect();
        let refs: Vec<&str> = texts.iter().map(|s| s.as_str()).collect();
        let tok = Tokenizer::train(
            &refs,
            &TrainOptions {
                kind: d.tokenizer,
                min_freq: d.min_freq,
                max_size: d.vocab_size,
            },
        )?;
        let mut names: Vec<String> = corpus.train.iter().map(|(_, l)| l.clone()).collect();
        names.sort();
        names.dedup();
        let labels = Vocab::labels(names);
        let m = &mut self.model;
        (m.vocab, m.classes, m.rnn.input) = (tok.len(), labels.len(), m.embed);
        m.validate()?;
        crate::task::check_memory(<Classifier as crate::checkpoint::Checkpointed>::num_params(
            m,
        ))?;
        let at = |k: usize| corpus.paths[k].as_deref().unwrap_or(Path::new("-"));
        let encode = |set: &[(String, String)], k: usize| {
            encode_rows(&tok, d.lowercase, &labels, set, at(k))
        };
        let train = encode(&corpus.train, 0)?;
        let valid = encode(&corpus.valid, 1)?;
        let weights = match &d.weights {
            None => None,
            Some(Weights::Given(w)) if w.len() != labels.len() => {
                return Err(Error::config(format!(
                    "{} class weights for {} classes ({})",
                    w.len(),
                    labels.len(),
                    labels.tokens.join(", ")
                )))
            }
            Some(Weights::Given(w)) => Some(w.clone()),
            Some(Weights::Balanced) => {
                let mut n = vec![0usize; labels.len()];
                train.iter().for_each(|s| n[s.1 as usize] += 1);
                let total = train.len() as f32;
                Some(
                    n.iter()
                        .map(|&c| total / (labels.len() as f32 * c.max(1) as f32))
                        .collect(),
                )
            }
        };
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(self.train.seed);
        let mut model = Classifier::new(self.model.clone(), &mut rng);
        if let Some(p) = &d.pretrained {
            let v = crate::text::corpus::read_vectors(p)?;
            let found = model
                .emb
                .load_pretrained(&tok.vocab, &v, false)
                .map_err(|e| Error::format(p, e.to_string()))?;
            note(format!(
                "pretrained vectors cover {found} of {} tokens",
                tok.len()
            ));
        }
        if let Some(p) = &d.init_from_lm {
            let found = crate::task::lm::copy_embedding(p, &tok.vocab, &mut model.emb)?;
            note(format!(
                "the language model's embedding covers {found} of {} tokens",
                tok.len()
            ));
        }
        let mut task = ClsTask {
            model,
            tokenizer: tok,
            lowercase: d.lowercase,
            labels,
            train,
            valid,
            batch: d.batch,
            weights,
            select: self.selection()?,
            batches: Vec::new(),
        };
        crate::task::Task::begin_epoch(&mut task, 1, 0);
        Ok(task)
    }
}

/// Labelled rows as (token ids, label id); a label the model does not know is an error
/// naming its row of `path`.
pub fn encode_rows(
    tok: &Tokenizer,
    lowercase: bool,
    labels: &Vocab,
    rows: &[(String, String)],
    path: &Path,
) -> Result<Vec<(Vec<u32>, u32)>> {
    rows.iter()
        .enumerate()
        .map(|(i, (t, l))| {
            let y = labels.id(l).ok_or_else(|| {
                Error::input(
                    path,
                    i + 2,
                    format!("label {l:?} never occurs in the training data"),
                )
            })?;
            Ok((super::encode(tok, lowercase, t), y))
        })
        .collect()
}

/// What [`ClsRun`] builds: the rows and the task.
pub type ClsBuilt = (ClsCorpus, ClsTask);

impl crate::task::Recipe for ClsRun {
    const TASK: &'static str = super::TASK;
    crate::task::recipe_parts!(ClsRun, ClsBuilt);

    /// `{valid,test}_{accuracy,macro_f1,per_class,confusion}` of the best checkpoint, for
    /// the sets the run has; with plotting, `confusion_{set}.png` beside it.
    fn score_best(
        &self,
        (corpus, task): &mut ClsBuilt,
        model_path: &Path,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        let (mut best, ..) = super::load(model_path)?;
        let mut m = serde_json::Map::new();
        let sets = [("valid", &corpus.valid, 1usize), ("test", &corpus.test, 2)];
        for (name, rows, k) in sets {
            if rows.is_empty() {
                continue;
            }
            let path = corpus.paths[k].clone().unwrap_or_default();
            let enc = encode_rows(&task.tokenizer, task.lowercase, &task.labels, rows, &path)?;
            let (_, sc) = super::evaluate(&mut best, &task.labels, &enc);
            m.insert(format!("{name}_accuracy"), sc.accuracy.into());
            m.insert(format!("{name}_macro_f1"), sc.macro_f1.into());
            m.insert(
                format!("{name}_per_class"),
                serde_json::to_value(&sc.per_class).unwrap_or_default(),
            );
            m.insert(
                format!("{name}_confusion"),
                serde_json::to_value(&sc.confusion).unwrap_or_default(),
            );
            #[cfg(feature = "plot")]
            if let Some(dir) = model_path.parent() {
                let _ = crate::plot::heatmap(
                    &dir.join(format!("confusion_{name}.png")),
                    &format!("{name}: accuracy {:.2}%", 100.0 * sc.accuracy),
                    &sc.labels,
                    &sc.confusion,
                );
            }
        }
        Ok(m)
    }
}
