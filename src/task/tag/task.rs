//! The tagger for the one trainer ([`TagTask`]), its vocabularies, the scheme's allowed
//! moves, batched tagging and conlleval's scores.

use super::*;
use crate::checkpoint::{self, Meta};
use crate::engine::crf::Allowed;
use crate::engine::param::Module;
use crate::error::Result;
use crate::metrics::{NerCounter, NerScores};
use crate::task::{Eval, Stats, Task};
use crate::text::conll::{self, Scheme};
use crate::text::tokenizer::{PAD, UNK};
use crate::text::vocab::Vocab;
use rand::{Rng, RngCore};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The moves a scheme allows between labels named `P-TYPE` or `O`.
pub fn allowed_moves(labels: &[String], scheme: Scheme) -> Allowed {
    let k = labels.len();
    let parts: Vec<(char, &str)> = labels
        .iter()
        .map(|l| conll::split_tag(l).unwrap_or(('O', "")))
        .collect();
    // Whether `to` may follow `from` (None: the sentence start or end).
    let ok = |from: Option<(char, &str)>, to: Option<(char, &str)>| -> bool {
        let inside = |p: char| match scheme {
            Scheme::Bioes => matches!(p, 'B' | 'I'),
            _ => matches!(p, 'B' | 'I'),
        };
        match (from, to) {
            (_, None) => match (scheme, from) {
                (Scheme::Bioes, Some((p, _))) => !inside(p),
                _ => true,
            },
            (f, Some((p, ty))) => {
                let open = f.filter(|(fp, _)| inside(*fp)).map(|(_, fty)| fty);
                match (scheme, p) {
                    (Scheme::Bioes, 'I' | 'E') => open == Some(ty),
                    (Scheme::Bioes, _) => open.is_none(),
                    (Scheme::Iob2, 'I') => open == Some(ty),
                    (Scheme::Iob1, 'B') => open == Some(ty),
                    (_, 'E' | 'S') => false,
                    _ => true,
                }
            }
        }
    };
    Allowed {
        start: parts.iter().map(|&p| ok(None, Some(p))).collect(),
        end: parts.iter().map(|&p| ok(Some(p), None)).collect(),
        trans: (0..k * k)
            .map(|i| ok(Some(parts[i / k]), Some(parts[i % k])))
            .collect(),
    }
}

/// The vocabularies a tagger reads text with: lowercased words with `<unk>`, characters
/// with `<unk>`, and the label list (closed).
#[derive(Clone, Debug)]
pub struct TagVocabs {
    pub words: Vocab,
    pub chars: Vocab,
    pub labels: Vocab,
}

impl TagVocabs {
    /// Built from training sentences (labels already in the model's scheme).
    pub fn build(sents: &[conll::Sentence], min_freq: usize) -> TagVocabs {
        let mut wc: HashMap<String, usize> = HashMap::new();
        let mut cc: HashMap<char, usize> = HashMap::new();
        let mut labels = std::collections::BTreeSet::new();
        for s in sents {
            for w in &s.tokens {
                *wc.entry(w.to_lowercase()).or_default() += 1;
                for c in w.chars() {
                    *cc.entry(c).or_default() += 1;
                }
            }
            labels.extend(s.tags.iter().cloned());
        }
        let specials = vec![PAD.to_string(), UNK.to_string()];
        let mut words: Vec<String> = wc
            .into_iter()
            .filter(|(_, n)| *n >= min_freq.max(1))
            .map(|(w, _)| w)
            .collect();
        words.sort();
        let mut chars: Vec<String> = cc.into_keys().map(String::from).collect();
        chars.sort();
        let with_specials = |v: Vec<String>, lowercase: bool| {
            Vocab {
                tokens: specials.iter().cloned().chain(v).collect(),
                specials: specials.clone(),
                unk: Some(UNK.into()),
                lowercase,
                ..Default::default()
            }
            .indexed()
        };
        // "O" first, then the rest in order, so label ids are stable across runs.
        let mut l: Vec<String> = labels.into_iter().filter(|t| t != "O").collect();
        l.insert(0, "O".into());
        TagVocabs {
            words: with_specials(words, true),
            chars: with_specials(chars, false),
            labels: Vocab::labels(l),
        }
    }

    /// A sentence as ids; labels must be in the vocabulary (`tags` empty: unlabelled).
    pub fn encode(
        &self,
        tokens: &[String],
        tags: &[String],
    ) -> std::result::Result<Encoded, String> {
        let unk_c = self.chars.lookup(UNK).unwrap_or(1);
        let labels = tags
            .iter()
            .map(|t| {
                self.labels
                    .id(t)
                    .ok_or_else(|| format!("label {t:?} never occurs in the training data"))
            })
            .collect::<std::result::Result<Vec<u32>, String>>()?;
        Ok(Encoded {
            words: tokens
                .iter()
                .map(|w| self.words.lookup(w).unwrap_or(1))
                .collect(),
            chars: tokens
                .iter()
                .map(|w| {
                    w.chars()
                        .map(|c| self.chars.id(c.encode_utf8(&mut [0; 4])).unwrap_or(unk_c))
                        .collect()
                })
                .collect(),
            casing: tokens.iter().map(|w| casing(w)).collect(),
            labels,
        })
    }

    pub fn to_map(&self) -> BTreeMap<String, Vocab> {
        [
            ("words".to_string(), self.words.clone()),
            ("chars".to_string(), self.chars.clone()),
            ("labels".to_string(), self.labels.clone()),
        ]
        .into()
    }
}

/// Tags `sents` in batches; labels of the model's scheme.
pub fn tag_all(
    model: &mut Tagger,
    sents: &[Encoded],
    batch: usize,
) -> (Vec<Vec<u32>>, Option<f64>) {
    let mut order: Vec<usize> = (0..sents.len()).collect();
    // Similar lengths together: less padding, same results (lengths are passed along).
    order.sort_by_key(|&i| sents[i].words.len());
    let mut out = vec![Vec::new(); sents.len()];
    let mut loss = Some(0.0);
    let mut tables = FileTables {
        chars: model.char_table(sents),
        ..Default::default()
    };
    for chunk in order.chunks(batch.max(1)) {
        let b: Vec<&Encoded> = chunk.iter().map(|&i| &sents[i]).collect();
        let (paths, l) = model.predict_with(&b, Some(&mut tables));
        loss = loss.zip(l).map(|(a, b)| a + b);
        for (&i, p) in chunk.iter().zip(paths) {
            out[i] = p;
        }
    }
    (out, loss)
}

/// Entity scores of predicted label ids against gold label ids, both read in the model's
/// scheme and scored in BIO (IOB2), as conlleval reads BIO files.
pub fn score(labels: &Vocab, scheme: Scheme, gold: &[Vec<u32>], pred: &[Vec<u32>]) -> NerScores {
    let name = |ids: &[u32]| -> Vec<String> {
        let t: Vec<String> = ids
            .iter()
            .map(|&i| {
                labels
                    .tokens
                    .get(i as usize)
                    .cloned()
                    .unwrap_or_else(|| "O".into())
            })
            .collect();
        conll::convert(&t, scheme, Scheme::Iob2)
    };
    let mut n = NerCounter::default();
    for (g, p) in gold.iter().zip(pred) {
        n.add(&name(g), &name(p));
    }
    n.scores()
}

/// The tagging task for the shared trainer.
pub struct TagTask {
    pub model: Tagger,
    pub vocabs: TagVocabs,
    pub train: Vec<Encoded>,
    pub valid: Vec<Encoded>,
    pub batch: usize,
    /// Probability of replacing a word seen once in training by `<unk>` (Lample et al.:
    /// 0.5), so that the model learns an embedding for words it has never seen.
    pub unk_replace: f32,
    singletons: Vec<bool>,
    batches: Vec<Vec<usize>>,
}

impl TagTask {
    pub fn new(
        model: Tagger,
        vocabs: TagVocabs,
        train: Vec<Encoded>,
        valid: Vec<Encoded>,
        batch: usize,
        unk_replace: f32,
    ) -> TagTask {
        let mut count = vec![0usize; vocabs.words.len()];
        for s in &train {
            for &w in &s.words {
                count[w as usize] += 1;
            }
        }
        let singletons = count.iter().map(|&c| c == 1).collect();
        let mut t = TagTask {
            model,
            vocabs,
            train,
            valid,
            batch,
            unk_replace,
            singletons,
            batches: Vec::new(),
        };
        t.begin_epoch(1, 0);
        t
    }

    pub fn meta(&self) -> Meta<TagConfig> {
        Meta::new(TASK, self.model.cfg.clone(), self.vocabs.to_map())
    }
}

impl Task for TagTask {
    fn name(&self) -> &'static str {
        TASK
    }
    fn unit(&self) -> &'static str {
        "sentence"
    }
    fn loss_ceiling(&self) -> Option<f64> {
        None
    }
    fn model(&mut self) -> &mut dyn Module {
        &mut self.model
    }
    fn steps_per_epoch(&self) -> usize {
        self.batches.len()
    }
    fn begin_epoch(&mut self, epoch: usize, seed: u64) {
        let lengths: Vec<usize> = self.train.iter().map(|s| s.words.len()).collect();
        self.batches = crate::text::batch::bucket_batches(&lengths, self.batch, seed, epoch);
    }
    fn train_step(&mut self, i: usize, rng: &mut dyn RngCore) -> Stats {
        let unk = self.vocabs.words.lookup(UNK).unwrap_or(1);
        let batch: Vec<Encoded> = self.batches[i]
            .iter()
            .map(|&k| {
                let mut s = self.train[k].clone();
                for w in &mut s.words {
                    if self.singletons[*w as usize] && rng.random::<f32>() < self.unk_replace {
                        *w = unk;
                    }
                }
                s
            })
            .collect();
        let refs: Vec<&Encoded> = batch.iter().collect();
        let loss = self.model.train_batch(&refs, 1.0, rng);
        Stats {
            loss_sum: loss,
            count: refs.len(),
        }
    }
    fn validate(&mut self) -> Option<Eval> {
        if self.valid.is_empty() {
            return None;
        }
        let (pred, loss) = tag_all(&mut self.model, &self.valid, 64);
        let gold: Vec<Vec<u32>> = self.valid.iter().map(|s| s.labels.clone()).collect();
        let s = score(&self.vocabs.labels, self.model.cfg.scheme, &gold, &pred);
        Some(Eval {
            loss: loss.unwrap_or(0.0) / self.valid.len() as f64,
            metrics: vec![
                ("f1".into(), s.f1),
                ("precision".into(), s.precision),
                ("recall".into(), s.recall),
                ("accuracy".into(), s.accuracy),
            ],
        })
    }
    fn selection(&self) -> crate::task::Selection {
        crate::task::Selection {
            metric: "f1",
            higher_is_better: true,
        }
    }
    fn save(&mut self, path: &Path) -> Result<()> {
        checkpoint::save(path, &self.model, &[], &self.meta().to_json())
    }
}
