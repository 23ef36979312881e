//! The tagger's network ([`Tagger`]: word, character and casing features → BiLSTM →
//! softmax or CRF), its config, and its checkpoint.

use super::*;
use crate::checkpoint::{self, Checkpointed};
use crate::engine::crf::Crf;
use crate::engine::dropout::{self, DropoutKind, Mask};
use crate::engine::embedding::Embedding;
use crate::engine::init::Init;
use crate::engine::linear::Linear;
use crate::engine::loss::{cross_entropy_backward, Reduction, IGNORE};
use crate::engine::param::{Module, Param};
use crate::engine::rnn::{Pass, Rnn, RnnCache, RnnConfig, TokenProjections};
use crate::error::{Error, Result};
use crate::text::conll::Scheme;
use crate::text::vocab::Vocab;
use rand::{RngCore, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

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
pub(super) struct TagCache {
    pub(super) t: usize,
    pub(super) b: usize,
    pub(super) lengths: Vec<usize>,
    pub(super) word_ids: Vec<u32>,
    pub(super) casing_ids: Vec<u32>,
    /// Position `[T·B]` → index of its word among the batch's distinct words.
    pub(super) char_slot: Vec<usize>,
    pub(super) chars: Option<CharCache>,
    pub(super) in_mask: Option<Mask>,
    /// `None` when layer 0's input projections were looked up (inference).
    pub(super) rnn: Option<RnnCache>,
    pub(super) out_mask: Option<Mask>,
    /// The encoder's output after dropout `[T·B, 2H]` (the output layer's input).
    pub(super) out: Vec<f32>,
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
    pub(super) fn forward(
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
        let (mut out, _, rnn) = self.rnn.forward(
            &x,
            Pass::eval(t, b)
                .lengths(Some(&lengths))
                .training(train)
                .keep(train || keep),
            rng,
        );
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

pub(super) fn argmax(row: &[f32]) -> u32 {
    row.iter()
        .enumerate()
        .fold(
            (0, f32::NEG_INFINITY),
            |a, (i, &v)| if v > a.1 { (i, v) } else { a },
        )
        .0 as u32
}

/// Gold label ids `[T·B]` time-major, [`IGNORE`] at padding (and everywhere when unlabelled).
pub(super) fn gold_ids(batch: &[&Encoded], t: usize) -> Vec<u32> {
    let b = batch.len();
    let mut y = vec![IGNORE; t * b];
    for (j, s) in batch.iter().enumerate() {
        for (i, &l) in s.labels.iter().enumerate() {
            y[i * b + j] = l;
        }
    }
    y
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
