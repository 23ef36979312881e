//! Sequence tagging (named entities with BIO tags): the lecture's many-to-many task, as
//! Lample et al. 2016 build it.
//!
//! Each token is represented by its word embedding (lowercased lookup), a casing feature,
//! and a character-level feature (the final states of a character BiLSTM run over the
//! word, so unseen words still get a representation); a bidirectional stack reads the
//! sentence; a linear layer gives each token a score per tag; and either a softmax per
//! token or a linear-chain CRF ([`crate::engine::crf`]) turns the scores into tags.
//!
//! Shapes are time-major like the engine's: a batch of B sentences padded to T tokens is
//! `[T, B, ·]`, and each sentence's length is passed along, so padding never changes a
//! result. Parameter names follow PyTorch conventions: `word_embedding.weight`,
//! `char_embedding.weight`, `char_rnn.*`, `casing_embedding.weight`, `rnn.*`,
//! `output.weight`, `output.bias` and pytorch-crf's `crf.start_transitions`,
//! `crf.end_transitions`, `crf.transitions`.

pub mod run;
mod trace;

pub use trace::trace;

use super::{Eval, Stats, Task};
use crate::checkpoint::{self, Checkpointed, Meta};
use crate::engine::crf::{Allowed, Crf};
use crate::engine::dropout::{self, DropoutKind, Mask};
use crate::engine::embedding::Embedding;
use crate::engine::init::Init;
use crate::engine::linear::Linear;
use crate::engine::loss::{cross_entropy_backward, Reduction, IGNORE};
use crate::engine::param::{Module, Param};
use crate::engine::rnn::{Rnn, RnnCache, RnnConfig, TokenProjections};
use crate::error::{Error, Result};
use crate::metrics::{NerCounter, NerScores};
use crate::text::conll::{self, Scheme};
use crate::text::tokenizer::{PAD, UNK};
use crate::text::vocab::Vocab;
use rand::{Rng, RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

/// The task name checkpoints carry.
pub const TASK: &str = "tag";

/// Casing classes of a word (Collobert et al., Reimers & Gurevych): row 0 is padding.
pub const CASINGS: usize = 8;

/// The casing class of `w`: 1 numeric, 2 mostly numeric, 3 lower, 4 upper, 5 initial
/// upper, 6 contains a digit, 7 other.
pub fn casing(w: &str) -> u32 {
    let n = w.chars().count().max(1);
    let digits = w.chars().filter(|c| c.is_numeric()).count();
    if digits == n {
        1
    } else if digits * 2 > n {
        2
    } else if w.chars().all(|c| !c.is_alphabetic() || c.is_lowercase()) {
        3
    } else if w.chars().all(|c| !c.is_alphabetic() || c.is_uppercase()) {
        4
    } else if w.chars().next().is_some_and(|c| c.is_uppercase()) {
        5
    } else if digits > 0 {
        6
    } else {
        7
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Output {
    /// An independent softmax over the tags at each token.
    Softmax,
    /// A linear-chain CRF over the tag sequence.
    Crf,
}

impl std::str::FromStr for Output {
    type Err = Error;
    fn from_str(s: &str) -> Result<Output> {
        match s {
            "softmax" => Ok(Output::Softmax),
            "crf" => Ok(Output::Crf),
            _ => Err(Error::config(format!("{s:?}: expected crf or softmax"))),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TagConfig {
    /// Rows of the word embedding (the `words` vocabulary).
    pub words: usize,
    pub word_dim: usize,
    /// Rows of the character embedding (the `chars` vocabulary).
    pub chars: usize,
    /// Character embedding size; 0 turns the character features off.
    pub char_dim: usize,
    /// Hidden size of each direction of the character BiLSTM.
    pub char_hidden: usize,
    /// Casing embedding size; 0 turns the casing feature off.
    pub casing_dim: usize,
    /// The sentence encoder; `rnn.input` is the token representation's width.
    pub rnn: RnnConfig,
    /// Dropout on the token representations and on the encoder's output.
    pub dropout: f32,
    /// Rows of the output layer (the `labels` vocabulary).
    pub labels: usize,
    pub output: Output,
    /// The scheme of the labels (the model's internal scheme, BIOES by default).
    pub scheme: Scheme,
    /// Forbid the CRF transitions the scheme does not allow.
    pub constrained: bool,
    pub init: Init,
    /// The entity types the model tags when training kept only some (others read as O,
    /// in evaluation too); `None`: every type of the training data.
    #[serde(default)]
    pub types: Option<Vec<String>>,
}

impl TagConfig {
    /// Width of a token's representation: word + characters (both directions) + casing.
    pub fn token_dim(&self) -> usize {
        self.word_dim
            + if self.char_dim > 0 {
                2 * self.char_hidden
            } else {
                0
            }
            + self.casing_dim
    }

    /// Refuses configurations that cannot work, naming the field.
    pub fn validate(&self) -> Result<()> {
        if self.rnn.input != self.token_dim() {
            return Err(Error::config(format!(
                "rnn.input is {} but a token's representation is {} wide (word_dim + 2·char_hidden + casing_dim)",
                self.rnn.input,
                self.token_dim()
            )));
        }
        if self.words < 2 || self.word_dim == 0 || self.labels == 0 || self.rnn.hidden == 0 {
            return Err(Error::config(
                "words (≥ 2: <pad> and <unk>), word_dim, labels and the hidden size must be positive",
            ));
        }
        if self.char_dim > 0 && (self.chars < 2 || self.char_hidden == 0) {
            return Err(Error::config(
                "character features need chars ≥ 2 and char_hidden > 0",
            ));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(Error::config("dropout must be in [0, 1)"));
        }
        self.rnn.validate()
    }

    fn char_rnn(&self) -> RnnConfig {
        let mut c = RnnConfig::new(
            crate::engine::cell::CellKind::Lstm,
            self.char_dim,
            self.char_hidden,
            1,
        );
        c.bidirectional = true;
        c
    }
}

/// The character BiLSTM: a word's characters in, the two final states `[2·Hc]` out.
pub struct CharEncoder {
    pub emb: Embedding,
    pub rnn: Rnn,
}

struct CharCache {
    ids: Vec<u32>,
    rnn: RnnCache,
    n: usize,
}

impl CharEncoder {
    /// Features `[N, 2·Hc]` of `words` (character ids, each at least one character).
    fn forward(
        &mut self,
        words: &[&[u32]],
        train: bool,
        rng: &mut dyn RngCore,
    ) -> (Vec<f32>, CharCache) {
        let p = crate::text::batch::pad(words, 0);
        let d = self.emb.dim();
        let mut x = vec![0.0; p.ids.len() * d];
        self.emb.forward(&p.ids, &mut x);
        let (_, st, cache) =
            self.rnn
                .forward(&x, p.t, p.b, Some(&p.lengths), None, train, train, rng);
        let hc = self.rnn.cfg.hidden;
        let n = words.len();
        let mut feat = vec![0.0; n * 2 * hc];
        for w in 0..n {
            feat[w * 2 * hc..w * 2 * hc + hc].copy_from_slice(&st.h[w * hc..(w + 1) * hc]);
            feat[w * 2 * hc + hc..(w + 1) * 2 * hc]
                .copy_from_slice(&st.h[(n + w) * hc..(n + w + 1) * hc]);
        }
        (
            feat,
            CharCache {
                ids: p.ids,
                rnn: cache,
                n,
            },
        )
    }

    fn backward(&mut self, c: CharCache, dfeat: &[f32]) {
        let hc = self.rnn.cfg.hidden;
        let n = c.n;
        let mut ds = self.rnn.zero_state(n);
        for w in 0..n {
            ds.h[w * hc..(w + 1) * hc].copy_from_slice(&dfeat[w * 2 * hc..w * 2 * hc + hc]);
            ds.h[(n + w) * hc..(n + w + 1) * hc]
                .copy_from_slice(&dfeat[w * 2 * hc + hc..(w + 1) * 2 * hc]);
        }
        let t = c.ids.len() / n.max(1);
        let dy = vec![0.0; t * n * 2 * hc];
        let (dx, _) = self.rnn.backward(c.rnn, &dy, Some(&ds));
        self.emb.backward(&c.ids, &dx);
    }
}

/// Character features of every distinct spelling in a set of sentences, computed once for
/// inference: without dropout a word's features do not depend on its batch, and a file
/// repeats its frequent words thousands of times (CoNLL-2003 test: 46k tokens, 9k spellings).
pub struct CharTable {
    slot: HashMap<Vec<u32>, usize>,
    /// `[N, 2·Hc]`.
    feat: Vec<f32>,
    width: usize,
}

/// What one pass over a file computes once and then looks up: every spelling's character
/// features, and layer 0's input projection of every distinct token, keyed by its word,
/// casing and spelling ([`TokenProjections`]).
#[derive(Default)]
pub struct FileTables {
    pub chars: Option<CharTable>,
    proj: TokenProjections<(u32, u32, u32)>,
}

impl CharTable {
    /// The rows of `words` `[n, 2·Hc]`, or None if one is not in the table.
    fn rows(&self, words: &[&[u32]]) -> Option<Vec<f32>> {
        let mut out = Vec::with_capacity(words.len() * self.width);
        for w in words {
            let s = *self.slot.get(*w)?;
            out.extend_from_slice(&self.feat[s * self.width..(s + 1) * self.width]);
        }
        Some(out)
    }
}

pub struct Tagger {
    pub cfg: TagConfig,
    pub words: Embedding,
    pub chars: Option<CharEncoder>,
    pub casing: Option<Embedding>,
    pub rnn: Rnn,
    pub output: Linear,
    pub crf: Option<Crf>,
}

/// One sentence as ids: words `[n]`, each word's characters, casing classes `[n]` and
/// labels `[n]` (empty when unknown).
#[derive(Clone, Debug, Default)]
pub struct Encoded {
    pub words: Vec<u32>,
    pub chars: Vec<Vec<u32>>,
    pub casing: Vec<u32>,
    pub labels: Vec<u32>,
}

/// What backward needs from a batch's forward pass.
struct TagCache {
    t: usize,
    b: usize,
    lengths: Vec<usize>,
    word_ids: Vec<u32>,
    casing_ids: Vec<u32>,
    /// Position `[T·B]` → index of its word among the batch's distinct words.
    char_slot: Vec<usize>,
    chars: Option<CharCache>,
    in_mask: Option<Mask>,
    /// `None` when layer 0's input projections were looked up (inference).
    rnn: Option<RnnCache>,
    out_mask: Option<Mask>,
    /// The encoder's output after dropout `[T·B, 2H]` (the output layer's input).
    out: Vec<f32>,
}

impl Tagger {
    pub fn new(cfg: TagConfig, rng: &mut dyn RngCore) -> Tagger {
        let words = Embedding::new("word_embedding.weight", cfg.words, cfg.word_dim, rng);
        let chars = (cfg.char_dim > 0).then(|| CharEncoder {
            emb: Embedding::new("char_embedding.weight", cfg.chars, cfg.char_dim, rng),
            rnn: Rnn::new("char_rnn", cfg.char_rnn(), Init::Pytorch, 0.0, rng),
        });
        let casing = (cfg.casing_dim > 0)
            .then(|| Embedding::new("casing_embedding.weight", CASINGS, cfg.casing_dim, rng));
        let rnn = Rnn::new("rnn", cfg.rnn.clone(), cfg.init, 0.0, rng);
        let output = Linear::new("output", cfg.rnn.output(), cfg.labels, true, rng);
        let crf = (cfg.output == Output::Crf).then(|| Crf::new("crf", cfg.labels, rng));
        Tagger {
            cfg,
            words,
            chars,
            casing,
            rnn,
            output,
            crf,
        }
    }

    /// The character features of every spelling in `sents`, shortest words together in
    /// batches of 1,024 (None without character features).
    pub fn char_table(&mut self, sents: &[Encoded]) -> Option<CharTable> {
        let enc = self.chars.as_mut()?;
        let mut seen = std::collections::HashSet::new();
        let mut words: Vec<&[u32]> = sents
            .iter()
            .flat_map(|s| s.chars.iter().map(|c| &c[..]))
            .filter(|w| !w.is_empty() && seen.insert(*w))
            .collect();
        words.sort_by_key(|w| w.len());
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let mut feat = Vec::new();
        for chunk in words.chunks(1024) {
            feat.extend(enc.forward(chunk, false, &mut rng).0);
        }
        Some(CharTable {
            slot: words
                .iter()
                .enumerate()
                .map(|(i, w)| (w.to_vec(), i))
                .collect(),
            feat,
            width: 2 * self.cfg.char_hidden,
        })
    }

    /// Sets the CRF's constraints from the label names (in `cfg.scheme`).
    pub fn constrain(&mut self, labels: &[String]) {
        if let (Some(crf), true) = (&mut self.crf, self.cfg.constrained) {
            crf.allowed = Some(allowed_moves(labels, self.cfg.scheme));
        }
    }

    /// Tag scores `[T·B, K]` of a batch, and what backward needs.
    /// With `tables` (inference only), character features and layer 0's input projections
    /// come from them where they have them.
    /// `keep` keeps the stack's cache at inference too (for [`Tagger::trace`]).
    fn forward(
        &mut self,
        batch: &[&Encoded],
        train: bool,
        keep: bool,
        mut tables: Option<&mut FileTables>,
        rng: &mut dyn RngCore,
    ) -> (Vec<f32>, TagCache) {
        let b = batch.len();
        let lengths: Vec<usize> = batch.iter().map(|s| s.words.len()).collect();
        let t = lengths.iter().copied().max().unwrap_or(0);
        let (dw, dim) = (self.cfg.word_dim, self.cfg.token_dim());
        let mut word_ids = vec![0u32; t * b];
        let mut casing_ids = vec![0u32; t * b];
        let mut char_slot = vec![usize::MAX; t * b];
        let mut distinct: Vec<&[u32]> = Vec::new();
        let mut seen: HashMap<&[u32], usize> = HashMap::new();
        for (j, s) in batch.iter().enumerate() {
            for i in 0..s.words.len() {
                word_ids[i * b + j] = s.words[i];
                casing_ids[i * b + j] = s.casing[i];
                if self.chars.is_some() {
                    let w = &s.chars[i][..];
                    let next = distinct.len();
                    let slot = *seen.entry(w).or_insert(next);
                    if slot == next {
                        distinct.push(w);
                    }
                    char_slot[i * b + j] = slot;
                }
            }
        }
        if let Some(ft) = tables.as_deref_mut().filter(|_| !train) {
            let ids = (&word_ids[..], &casing_ids[..], &char_slot[..]);
            if let Some(out) = self.encode_looked_up(ft, ids, &distinct, t, b, &lengths) {
                let mut em = vec![0.0; t * b * self.cfg.labels];
                self.output.forward(&out, &mut em);
                let cache = TagCache {
                    t,
                    b,
                    lengths,
                    word_ids,
                    casing_ids,
                    char_slot,
                    chars: None,
                    in_mask: None,
                    rnn: None,
                    out_mask: None,
                    out,
                };
                return (em, cache);
            }
        }
        let mut x = vec![0.0; t * b * dim];
        let mut we = vec![0.0; t * b * dw];
        self.words.forward(&word_ids, &mut we);
        let table = tables.and_then(|t| t.chars.as_ref());
        let looked_up = table.filter(|_| !train).and_then(|t| t.rows(&distinct));
        let (cfeat, chars) = match (&mut self.chars, looked_up) {
            (Some(_), Some(f)) => (f, None),
            (Some(c), None) if !distinct.is_empty() => {
                let (f, cc) = c.forward(&distinct, train, rng);
                (f, Some(cc))
            }
            _ => (Vec::new(), None),
        };
        let ch = if self.chars.is_some() {
            2 * self.cfg.char_hidden
        } else {
            0
        };
        let mut ce = vec![
            0.0;
            if self.casing.is_some() {
                t * b * self.cfg.casing_dim
            } else {
                0
            }
        ];
        if let Some(c) = &self.casing {
            c.forward(&casing_ids, &mut ce);
        }
        let dc = self.cfg.casing_dim;
        for p in 0..t * b {
            if p / b >= lengths[p % b] {
                continue;
            }
            let row = &mut x[p * dim..(p + 1) * dim];
            row[..dw].copy_from_slice(&we[p * dw..(p + 1) * dw]);
            if ch > 0 {
                let s = char_slot[p];
                row[dw..dw + ch].copy_from_slice(&cfeat[s * ch..(s + 1) * ch]);
            }
            if dc > 0 {
                row[dw + ch..].copy_from_slice(&ce[p * dc..(p + 1) * dc]);
            }
        }
        let p = self.cfg.dropout;
        let in_mask = dropout::forward(&mut x, b * dim, p, DropoutKind::Standard, train, rng);
        let (mut out, _, rnn) =
            self.rnn
                .forward(&x, t, b, Some(&lengths), None, train, train || keep, rng);
        let rnn = Some(rnn);
        let h = self.cfg.rnn.output();
        let out_mask = dropout::forward(&mut out, b * h, p, DropoutKind::Standard, train, rng);
        let mut em = vec![0.0; t * b * self.cfg.labels];
        self.output.forward(&out, &mut em);
        let cache = TagCache {
            t,
            b,
            lengths,
            word_ids,
            casing_ids,
            char_slot,
            chars,
            in_mask,
            rnn,
            out_mask,
            out,
        };
        (em, cache)
    }

    /// The encoder's output `[T·B, 2H]` at inference with layer 0's input projections
    /// looked up in `ft` (made for the tokens it has not seen), keyed by (word, casing,
    /// spelling). None when that does not apply: a spelling missing from the character
    /// table, or a layer-normalised cell. `ids`: word, casing ids and batch-local
    /// character slots `[T·B]`, as [`Self::forward`] builds them.
    fn encode_looked_up(
        &mut self,
        ft: &mut FileTables,
        ids: (&[u32], &[u32], &[usize]),
        distinct: &[&[u32]],
        t: usize,
        b: usize,
        lengths: &[usize],
    ) -> Option<Vec<f32>> {
        let (word_ids, casing_ids, char_slot) = ids;
        if !TokenProjections::applies(&self.rnn) {
            return None;
        }
        // Each batch-local spelling's row in the file's character table.
        let global: Vec<u32> = match (&self.chars, &ft.chars) {
            (Some(_), Some(ct)) => distinct
                .iter()
                .map(|w| ct.slot.get(*w).map(|&s| s as u32))
                .collect::<Option<_>>()?,
            (Some(_), None) => return None,
            (None, _) => Vec::new(),
        };
        let keys: Vec<(u32, u32, u32)> = (0..t * b)
            .map(|p| {
                let s = global.get(char_slot[p]).copied().unwrap_or(u32::MAX);
                (word_ids[p], casing_ids[p], s)
            })
            .collect();
        let (dw, dc) = (self.cfg.word_dim, self.cfg.casing_dim);
        let (words, casing, ct) = (&self.words.weight.w, &self.casing, &ft.chars);
        let input = |(w, c, s): (u32, u32, u32), row: &mut [f32]| {
            row[..dw].copy_from_slice(&words[w as usize * dw..][..dw]);
            if let (Some(ct), true) = (ct, s != u32::MAX) {
                let ch = ct.width;
                row[dw..dw + ch].copy_from_slice(&ct.feat[s as usize * ch..][..ch]);
            }
            if let Some(e) = casing {
                let tail = row.len() - dc;
                row[tail..].copy_from_slice(&e.weight.w[c as usize * dc..][..dc]);
            }
        };
        let rows = ft.proj.rows(&self.rnn, &keys, input);
        let (out, _) = self
            .rnn
            .forward_tokens(&ft.proj, &rows, t, b, Some(lengths));
        Some(out)
    }

    /// Gradients of everything from dL/d(scores) `[T·B, K]`.
    fn backward(&mut self, c: TagCache, dem: &[f32]) {
        let (t, b) = (c.t, c.b);
        let (dw, dim, h) = (
            self.cfg.word_dim,
            self.cfg.token_dim(),
            self.cfg.rnn.output(),
        );
        let mut dout = vec![0.0; t * b * h];
        self.output.backward(&c.out, dem, Some(&mut dout));
        dropout::backward(&mut dout, c.out_mask.as_ref());
        let rnn = c.rnn.expect("a training forward keeps its cache");
        let (mut dx, _) = self.rnn.backward(rnn, &dout, None);
        dropout::backward(&mut dx, c.in_mask.as_ref());
        let ch = if self.chars.is_some() {
            2 * self.cfg.char_hidden
        } else {
            0
        };
        let dc = self.cfg.casing_dim;
        let mut dwe = vec![0.0; t * b * dw];
        let mut dce = vec![0.0; t * b * dc];
        let mut dchar = match &c.chars {
            Some(cc) => vec![0.0; cc.n * ch],
            None => Vec::new(),
        };
        for p in 0..t * b {
            if p / b >= c.lengths[p % b] {
                continue;
            }
            let row = &dx[p * dim..(p + 1) * dim];
            dwe[p * dw..(p + 1) * dw].copy_from_slice(&row[..dw]);
            if ch > 0 && !dchar.is_empty() {
                let s = c.char_slot[p];
                dchar[s * ch..(s + 1) * ch]
                    .iter_mut()
                    .zip(&row[dw..dw + ch])
                    .for_each(|(a, g)| *a += g);
            }
            if dc > 0 {
                dce[p * dc..(p + 1) * dc].copy_from_slice(&row[dw + ch..]);
            }
        }
        self.words.backward(&c.word_ids, &dwe);
        if let Some(e) = &mut self.casing {
            e.backward(&c.casing_ids, &dce);
        }
        if let (Some(enc), Some(cc)) = (&mut self.chars, c.chars) {
            enc.backward(cc, &dchar);
        }
    }

    /// Forward, loss and backward of one batch; the loss is the mean over sentences
    /// (scaled by `scale`) and gradients accumulate. Returns the summed loss.
    pub fn train_batch(&mut self, batch: &[&Encoded], scale: f32, rng: &mut dyn RngCore) -> f64 {
        let (mut em, cache) = self.forward(batch, true, true, None, rng);
        let (t, b, k) = (cache.t, cache.b, self.cfg.labels);
        let tags = gold_ids(batch, t);
        let s = scale / b as f32;
        let loss = match &mut self.crf {
            Some(crf) => {
                let mut dem = vec![0.0; em.len()];
                let l = crf.nll_backward(&em, &tags, &cache.lengths, t, s, &mut dem);
                em = dem;
                l
            }
            None => cross_entropy_backward(&mut em, &tags, k, Reduction::Sum, s, None).sum,
        };
        self.backward(cache, &em);
        loss
    }

    /// Predicted label ids of each sentence, and the summed loss when labels are given.
    pub fn predict(&mut self, batch: &[&Encoded]) -> (Vec<Vec<u32>>, Option<f64>) {
        self.predict_with(batch, None)
    }

    /// [`Tagger::predict`] with what `tables` has computed before (see [`FileTables`]).
    pub fn predict_with(
        &mut self,
        batch: &[&Encoded],
        tables: Option<&mut FileTables>,
    ) -> (Vec<Vec<u32>>, Option<f64>) {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let (mut em, cache) = self.forward(batch, false, false, tables, &mut rng);
        let (t, k) = (cache.t, self.cfg.labels);
        let labelled = batch.iter().all(|s| s.labels.len() == s.words.len());
        let tags = gold_ids(batch, t);
        match &self.crf {
            Some(crf) => {
                let loss = labelled.then(|| crf.nll(&em, &tags, &cache.lengths, t));
                (crf.decode(&em, &cache.lengths), loss)
            }
            None => {
                let b = batch.len();
                let paths = (0..b)
                    .map(|j| {
                        (0..cache.lengths[j])
                            .map(|i| {
                                let row = &em[(i * b + j) * k..(i * b + j + 1) * k];
                                argmax(row)
                            })
                            .collect()
                    })
                    .collect();
                let loss =
                    labelled.then(|| crate::engine::loss::cross_entropy(&mut em, &tags, k).sum);
                (paths, loss)
            }
        }
    }

    /// Per-token probability of the predicted tag: CRF marginals or softmax.
    pub fn confidences(&mut self, batch: &[&Encoded], paths: &[Vec<u32>]) -> Vec<Vec<f32>> {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        let (mut em, cache) = self.forward(batch, false, false, None, &mut rng);
        let (t, b, k) = (cache.t, cache.b, self.cfg.labels);
        let probs = match &self.crf {
            Some(crf) => crf.marginals(&em, &cache.lengths, t),
            None => {
                for row in em.chunks_exact_mut(k) {
                    crate::engine::loss::softmax_in_place(row);
                }
                em
            }
        };
        paths
            .iter()
            .enumerate()
            .map(|(j, p)| {
                p.iter()
                    .enumerate()
                    .map(|(i, &y)| probs[(i * b + j) * k + y as usize])
                    .collect()
            })
            .collect()
    }
}

fn argmax(row: &[f32]) -> u32 {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |a, (i, &v)| if v > a.1 { (i, v) } else { a },
        )
        .0 as u32
}

/// Gold label ids `[T·B]` time-major, [`IGNORE`] at padding (and everywhere when unlabelled).
fn gold_ids(batch: &[&Encoded], t: usize) -> Vec<u32> {
    let b = batch.len();
    let mut y = vec![IGNORE; t * b];
    for (j, s) in batch.iter().enumerate() {
        for (i, &l) in s.labels.iter().enumerate() {
            y[i * b + j] = l;
        }
    }
    y
}

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

impl Module for Tagger {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        f(&self.words.weight);
        if let Some(c) = &self.chars {
            f(&c.emb.weight);
            c.rnn.visit(f);
        }
        if let Some(c) = &self.casing {
            f(&c.weight);
        }
        self.rnn.visit(f);
        self.output.visit(f);
        if let Some(c) = &self.crf {
            c.visit(f);
        }
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        f(&mut self.words.weight);
        if let Some(c) = &mut self.chars {
            f(&mut c.emb.weight);
            c.rnn.visit_mut(f);
        }
        if let Some(c) = &mut self.casing {
            f(&mut c.weight);
        }
        self.rnn.visit_mut(f);
        self.output.visit_mut(f);
        if let Some(c) = &mut self.crf {
            c.visit_mut(f);
        }
    }
}

impl Checkpointed for Tagger {
    const TASK: &'static str = TASK;
    const VOCABS: &'static [&'static str] = &["words", "chars", "labels"];
    type Config = TagConfig;
    fn check(cfg: &TagConfig, vocabs: &BTreeMap<String, Vocab>) -> std::result::Result<(), String> {
        cfg.validate().map_err(|e| e.to_string())?;
        for (name, rows) in [
            ("words", cfg.words),
            ("chars", cfg.chars),
            ("labels", cfg.labels),
        ] {
            let n = vocabs[name].len();
            if n != rows {
                return Err(format!(
                    "vocabulary {name:?} has {n} entries but model.{name} is {rows}"
                ));
            }
        }
        if vocabs["words"].unk.is_none() {
            return Err("vocabulary \"words\" has no unknown token".into());
        }
        Ok(())
    }
    fn num_params(cfg: &TagConfig) -> Option<u64> {
        let m = |a: usize, b: usize| (a as u64).checked_mul(b as u64);
        let k = cfg.labels as u64;
        let mut n = m(cfg.words, cfg.word_dim)?;
        if cfg.char_dim > 0 {
            n = n
                .checked_add(m(cfg.chars, cfg.char_dim)?)?
                .checked_add(cfg.char_rnn().num_params()?)?;
        }
        n = n
            .checked_add(m(CASINGS, cfg.casing_dim)?)?
            .checked_add(cfg.rnn.num_params()?)?
            .checked_add(m(cfg.labels, cfg.rnn.output())?)?
            .checked_add(k)?;
        if cfg.output == Output::Crf {
            n = n.checked_add(k.checked_mul(k)?.checked_add(2 * k)?)?;
        }
        Some(n)
    }
    fn build(cfg: TagConfig) -> Tagger {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0);
        Tagger::new(cfg, &mut rng)
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

/// Loads a tagger checkpoint: the model (constraints set) and its vocabularies.
pub fn load(path: &Path) -> Result<(Tagger, TagVocabs)> {
    let (mut model, meta) = checkpoint::load::<Tagger>(path)?;
    let mut v = meta.vocabs;
    let vocabs = TagVocabs {
        words: v.remove("words").unwrap_or_default(),
        chars: v.remove("chars").unwrap_or_default(),
        labels: v.remove("labels").unwrap_or_default(),
    };
    model.constrain(&vocabs.labels.tokens);
    Ok((model, vocabs))
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
    fn selection(&self) -> super::Selection {
        super::Selection {
            metric: "f1",
            higher_is_better: true,
        }
    }
    fn save(&mut self, path: &Path) -> Result<()> {
        checkpoint::save(path, &self.model, &[], &self.meta().to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::cell::CellKind;

    fn tiny(output: Output, char_dim: usize) -> (Tagger, Vec<Encoded>) {
        let mut rnn = RnnConfig::new(CellKind::Lstm, 0, 5, 1);
        rnn.bidirectional = true;
        let mut cfg = TagConfig {
            words: 7,
            word_dim: 4,
            chars: 6,
            char_dim,
            char_hidden: 3,
            casing_dim: 2,
            rnn,
            dropout: 0.0,
            labels: 5,
            output,
            scheme: Scheme::Bioes,
            constrained: false,
            init: Init::Pytorch,
            types: None,
        };
        cfg.rnn.input = cfg.token_dim();
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let m = Tagger::new(cfg, &mut rng);
        let sent = |n: usize, s: u32| Encoded {
            words: (0..n as u32).map(|i| (i * 3 + s) % 7).collect(),
            chars: (0..n as u32)
                .map(|i| (0..(i % 3 + 1)).map(|c| (c + i + s) % 6).collect())
                .collect(),
            casing: (0..n as u32).map(|i| (i + s) % 8).collect(),
            labels: (0..n as u32).map(|i| (i * 2 + s) % 5).collect(),
        };
        (m, vec![sent(4, 1), sent(2, 2), sent(3, 0)])
    }

    struct H(Tagger, Vec<Encoded>);
    impl Module for H {
        fn visit(&self, f: &mut dyn FnMut(&Param)) {
            self.0.visit(f)
        }
        fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
            self.0.visit_mut(f)
        }
    }

    /// The whole tagger (characters, casing, BiLSTM, output layer, CRF or softmax) against
    /// finite differences, on a padded batch.
    #[test]
    fn tagger_gradients_match_finite_differences() {
        for (output, char_dim) in [(Output::Crf, 3), (Output::Softmax, 3), (Output::Crf, 0)] {
            let (m, sents) = tiny(output, char_dim);
            let mut h = H(m, sents);
            crate::engine::gradcheck::check(&mut h, |h: &mut H, backward| {
                let refs: Vec<&Encoded> = h.1.iter().collect();
                let mut rng = rand::rngs::StdRng::seed_from_u64(0);
                if backward {
                    h.0.train_batch(&refs, 1.0, &mut rng) / refs.len() as f64
                } else {
                    h.0.predict(&refs).1.unwrap() / refs.len() as f64
                }
            });
        }
    }

    /// A sentence gets the same tags and loss alone as in a padded batch, and as with the
    /// file's character table and input projections.
    #[test]
    fn padding_never_changes_a_result() {
        for output in [Output::Crf, Output::Softmax] {
            let (mut m, sents) = tiny(output, 3);
            let refs: Vec<&Encoded> = sents.iter().collect();
            let (together, loss) = m.predict(&refs);
            let mut alone_loss = 0.0;
            for (s, want) in sents.iter().zip(&together) {
                let (p, l) = m.predict(&[s]);
                assert_eq!(&p[0], want);
                alone_loss += l.unwrap();
            }
            assert!((alone_loss - loss.unwrap()).abs() < 1e-4);
            // The whole-file character table gives the same tags and loss as computing
            // the characters batch by batch.
            let (cached, cached_loss) = tag_all(&mut m, &sents, 2);
            assert_eq!(cached, together);
            assert!((cached_loss.unwrap() - loss.unwrap()).abs() < 1e-4);
            assert!(m.char_table(&sents).is_some());
            // So do layer 0's input projections looked up by token, batch after batch.
            let mut tables = FileTables {
                chars: m.char_table(&sents),
                ..Default::default()
            };
            for (s, want) in sents.iter().zip(&together) {
                assert_eq!(&m.predict_with(&[s], Some(&mut tables)).0[0], want);
            }
            assert!(!tables.proj.is_empty(), "projections were looked up");
        }
    }

    #[test]
    fn bioes_constraints_forbid_what_the_scheme_forbids() {
        let labels: Vec<String> = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "E-LOC"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let a = allowed_moves(&labels, Scheme::Bioes);
        let k = labels.len();
        let ok = |f: usize, t: usize| a.trans[f * k + t];
        assert!(ok(1, 2) && ok(2, 3) && ok(1, 3) && ok(3, 0) && ok(4, 5) && ok(0, 4));
        assert!(!ok(0, 2) && !ok(1, 6) && !ok(1, 0) && !ok(3, 2) && !ok(5, 3));
        assert!(a.start[0] && a.start[1] && !a.start[2] && !a.start[3]);
        assert!(a.end[0] && a.end[3] && a.end[4] && !a.end[1] && !a.end[2]);
        let b = allowed_moves(&labels[..3], Scheme::Iob2);
        assert!(!b.start[2] && b.trans[3 + 2] && !b.trans[2]);
    }

    #[test]
    fn casing_classes() {
        assert_eq!(
            ["1996", "3-2", "eu", "EU", "Peter", "a1B", "iPhone"].map(casing),
            [1, 2, 3, 4, 5, 6, 7]
        );
    }
}
