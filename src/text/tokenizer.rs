//! Character, word and byte-pair tokenizers behind one type.
//!
//! The lecture's trade-off: characters give long inputs and a tiny vocabulary; words give
//! short inputs, a huge vocabulary and unknown words; BPE sits in between. A tokenizer is
//! saved whole inside every model that uses it (see docs/checkpoint-format.md).

use crate::error::{Error, Result};
use crate::text::read::Lines;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

pub const UNK: &str = "<unk>";
pub const PAD: &str = "<pad>";
pub const BOS: &str = "<bos>";
pub const EOS: &str = "<eos>";
/// Every special token, in the order vocabularies list them.
pub const SPECIALS: [&str; 4] = [UNK, PAD, BOS, EOS];

pub use super::vocab::Kind;

/// The largest BPE vocabulary a tokenizer may be trained to (2^20 tokens).
pub const MAX_BPE_VOCAB: usize = 1 << 20;

/// Training options for [`Tokenizer::train`].
#[derive(Clone, Debug)]
pub struct TrainOptions {
    pub kind: Kind,
    /// Tokens seen fewer times become `<unk>` (char and word).
    pub min_freq: usize,
    /// Upper bound on the vocabulary, specials included (BPE: the target size).
    pub max_size: Option<usize>,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct Tokenizer {
    pub kind: Kind,
    /// Every token in id order (for BPE, a copy of the model's vocabulary).
    pub vocab: Vec<String>,
    /// BPE only: the whole tokenizer.json, loadable unchanged by Python's `tokenizers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpe_json: Option<String>,
    #[serde(skip)]
    index: HashMap<String, u32>,
    #[serde(skip)]
    bpe: Option<Box<tokenizers::Tokenizer>>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Tokenizer({:?}, {} tokens)", self.kind, self.vocab.len())
    }
}

/// Splits a line into words, with punctuation as tokens of its own; the special tokens
/// (`<unk>`, ...) that some corpora spell out stay whole.
fn split_words(line: &str) -> impl Iterator<Item = &str> {
    word_spans(line).into_iter().map(move |(s, e)| &line[s..e])
}

/// The byte ranges of a line's words as the word tokenizer splits them: at whitespace, and
/// every punctuation mark or symbol is a token of its own (`U.S.` → `U . S .`), except the
/// special tokens (`<unk>`, ...) that some corpora spell out. `rnnkit tag predict` splits
/// plain text this way too, and reports entities by these offsets.
pub fn word_spans(line: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut pos = 0;
    for w in line.split_whitespace() {
        let base = pos + line[pos..].find(w).unwrap_or(0);
        pos = base + w.len();
        if SPECIALS.contains(&w) {
            out.push((base, pos));
            continue;
        }
        let mut start = 0;
        for (i, ch) in w.char_indices() {
            if ch.is_ascii_punctuation() || (!ch.is_alphanumeric() && !ch.is_whitespace()) {
                if start < i {
                    out.push((base + start, base + i));
                }
                out.push((base + i, base + i + ch.len_utf8()));
                start = i + ch.len_utf8();
            }
        }
        if start < w.len() {
            out.push((base + start, base + w.len()));
        }
    }
    out
}

impl Tokenizer {
    /// Builds a tokenizer from training texts held in memory.
    pub fn train(texts: &[&str], opt: &TrainOptions) -> Result<Tokenizer> {
        Self::train_lines(
            texts
                .iter()
                .flat_map(|t| t.split_inclusive('\n'))
                .map(Ok::<_, Error>),
            opt,
        )
    }

    /// Builds a tokenizer from files, streamed a line at a time: memory holds the counts
    /// (or BPE's word table), never the corpus. An empty file is an error.
    pub fn train_files(paths: &[&Path], opt: &TrainOptions) -> Result<Tokenizer> {
        let files = paths
            .iter()
            .map(|p| Lines::open_nonempty(p))
            .collect::<Result<Vec<_>>>()?;
        Self::train_lines(files.into_iter().flatten(), opt)
    }

    /// Builds a tokenizer from lines (each with its terminator); the first error ends
    /// training and is returned. Char and word vocabularies are the same as from the whole
    /// text, since no piece crosses a line end.
    pub fn train_lines<S: AsRef<str> + Send>(
        lines: impl Iterator<Item = Result<S>> + Send,
        opt: &TrainOptions,
    ) -> Result<Tokenizer> {
        let mut failed = None;
        let lines = lines.map_while(|l| l.map_err(|e| failed = Some(e)).ok());
        let t = if opt.kind == Kind::Bpe {
            Self::train_bpe(lines, opt)
        } else {
            Ok(Self::count_vocab(lines, opt))
        };
        match failed {
            Some(e) => Err(e),
            None => t,
        }
    }

    fn count_vocab<S: AsRef<str>>(lines: impl Iterator<Item = S>, opt: &TrainOptions) -> Tokenizer {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for line in lines {
            Self::pieces(opt.kind, line.as_ref(), |p| match counts.get_mut(p) {
                Some(c) => *c += 1,
                None => {
                    counts.insert(p.to_string(), 1);
                }
            });
        }
        let specials: &[&str] = match opt.kind {
            Kind::Char => &[UNK],
            _ => &[UNK, PAD, BOS, EOS],
        };
        let mut words: Vec<(String, usize)> = counts
            .into_iter()
            .filter(|(w, c)| *c >= opt.min_freq.max(1) && !specials.contains(&w.as_str()))
            .collect();
        // Most frequent first; ties by the token itself, so the vocabulary is deterministic.
        words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut vocab: Vec<String> = specials.iter().map(|s| s.to_string()).collect();
        let room = opt
            .max_size
            .map_or(usize::MAX, |m| m.saturating_sub(vocab.len()));
        vocab.extend(words.into_iter().take(room).map(|(w, _)| w));
        Self::from_vocab(opt.kind, vocab, None)
    }

    fn train_bpe<S: AsRef<str> + Send>(
        lines: impl Iterator<Item = S> + Send,
        opt: &TrainOptions,
    ) -> Result<Tokenizer> {
        use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
        use tokenizers::pre_tokenizers::byte_level::ByteLevel;
        use tokenizers::{
            AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper,
            PreTokenizerWrapper, TokenizerBuilder,
        };
        let err = |e: Box<dyn std::error::Error + Send + Sync>| Error::Tokenizer(e.to_string());
        if let Some(n) = opt.max_size.filter(|&n| n > MAX_BPE_VOCAB) {
            // The trainer sizes its tables by the vocabulary asked for: beyond this, the
            // allocation itself aborts the process before a corpus could fill them.
            return Err(Error::Usage(format!(
                "vocabulary size {n}: BPE vocabularies go up to {MAX_BPE_VOCAB} (a corpus rarely gives more than a few hundred thousand merges)"
            )));
        }
        let mut trainer = BpeTrainerBuilder::new()
            .vocab_size(opt.max_size.unwrap_or(8000))
            .min_frequency(opt.min_freq.max(1) as u64)
            .special_tokens(vec![
                AddedToken::from(UNK, true),
                AddedToken::from(EOS, true),
            ])
            .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
            .show_progress(false)
            .build();
        let mut tk = TokenizerBuilder::<
            BPE,
            NormalizerWrapper,
            PreTokenizerWrapper,
            PostProcessorWrapper,
            DecoderWrapper,
        >::new()
        .with_model(BPE::default())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(ByteLevel::new(false, true, true).into()))
        .with_post_processor(None)
        .with_decoder(Some(ByteLevel::new(false, true, true).into()))
        .build()
        .map_err(err)?;
        tk.train(&mut trainer, lines).map_err(err)?;
        let tk: tokenizers::Tokenizer = tk.into();
        let json = tk.to_string(false).map_err(err)?;
        Self::from_bpe_json(&json, Path::new("<trained>"))
    }

    /// Loads a BPE tokenizer from tokenizer.json text.
    pub fn from_bpe_json(json: &str, file: &Path) -> Result<Tokenizer> {
        let tk: tokenizers::Tokenizer = json
            .parse()
            .map_err(|e| Error::format(file, format!("not a tokenizers tokenizer.json: {e}")))?;
        let mut pairs: Vec<(String, u32)> = tk.get_vocab(true).into_iter().collect();
        pairs.sort_by_key(|p| p.1);
        let vocab: Vec<String> = pairs.into_iter().map(|p| p.0).collect();
        let mut t = Self::from_vocab(Kind::Bpe, vocab, Some(json.to_string()));
        t.bpe = Some(Box::new(tk));
        Ok(t)
    }

    fn from_vocab(kind: Kind, vocab: Vec<String>, bpe_json: Option<String>) -> Tokenizer {
        let index = vocab
            .iter()
            .enumerate()
            .map(|(i, w)| (w.clone(), i as u32))
            .collect();
        Tokenizer {
            kind,
            vocab,
            bpe_json,
            index,
            bpe: None,
        }
    }

    /// The vocabulary record a checkpoint stores (tokens, specials, kind, BPE model).
    pub fn to_vocab(&self) -> crate::text::vocab::Vocab {
        crate::text::vocab::Vocab {
            tokens: self.vocab.clone(),
            specials: [UNK, PAD, BOS, EOS]
                .into_iter()
                .filter(|s| self.index.contains_key(*s))
                .map(String::from)
                .collect(),
            unk: self.index.contains_key(UNK).then(|| UNK.to_string()),
            lowercase: false,
            tokenizer: Some(self.kind),
            bpe_json: self.bpe_json.clone(),
            ..Default::default()
        }
        .indexed()
    }

    /// The tokenizer a vocabulary record describes (it must name a tokenizer kind).
    pub fn from_vocab_record(v: &crate::text::vocab::Vocab, file: &Path) -> Result<Tokenizer> {
        let kind = v
            .tokenizer
            .ok_or_else(|| Error::format(file, "vocabulary names no tokenizer kind"))?;
        Tokenizer {
            kind,
            vocab: v.tokens.clone(),
            bpe_json: v.bpe_json.clone(),
            index: HashMap::new(),
            bpe: None,
        }
        .restore(file)
    }

    /// Rebuilds the lookup tables after deserialisation.
    pub fn restore(mut self, file: &Path) -> Result<Tokenizer> {
        if self.kind == Kind::Bpe {
            let json = self
                .bpe_json
                .take()
                .ok_or_else(|| Error::format(file, "BPE tokenizer without its tokenizer.json"))?;
            return Self::from_bpe_json(&json, file);
        }
        if !self.vocab.iter().any(|w| w == UNK) {
            return Err(Error::format(file, "tokenizer vocabulary has no <unk>"));
        }
        Ok(Self::from_vocab(self.kind, self.vocab, None))
    }

    fn pieces(kind: Kind, text: &str, mut f: impl FnMut(&str)) {
        match kind {
            Kind::Char => {
                for (i, c) in text.char_indices() {
                    f(&text[i..i + c.len_utf8()]);
                }
            }
            Kind::Word => text.lines().flat_map(split_words).for_each(f),
            Kind::Ptb => {
                for line in text.lines() {
                    line.split_whitespace().for_each(&mut f);
                    f(EOS);
                }
            }
            Kind::Bpe => unreachable!("BPE pieces come from the tokenizers crate"),
        }
    }

    /// The text's pieces as strings, one for each id [`Tokenizer::encode`] gives (`None`
    /// for BPE, whose pieces are the tokenizers crate's).
    pub fn pieces_of(&self, text: &str) -> Option<Vec<String>> {
        if self.kind == Kind::Bpe {
            return None;
        }
        let mut out = Vec::new();
        Self::pieces(self.kind, text, |p| out.push(p.to_string()));
        Some(out)
    }

    pub fn len(&self) -> usize {
        self.vocab.len()
    }

    pub fn is_empty(&self) -> bool {
        self.vocab.is_empty()
    }

    pub fn id(&self, token: &str) -> Option<u32> {
        self.index.get(token).copied()
    }

    pub fn unk(&self) -> u32 {
        self.id(UNK).unwrap_or(0)
    }

    /// Text → ids. Unknown pieces become `<unk>`. BPE encodes long text in pieces of at
    /// most [`BPE_CHUNK`] bytes (see [`bpe_chunks`]), because the tokenizers crate keeps
    /// ~180 bytes of bookkeeping per input byte while it encodes.
    pub fn encode(&self, text: &str) -> Vec<u32> {
        if let Some(bpe) = &self.bpe {
            let mut ids = Vec::new();
            for chunk in bpe_chunks(text, BPE_CHUNK) {
                if let Ok(e) = bpe.encode(chunk, false) {
                    ids.extend_from_slice(e.get_ids());
                }
            }
            return ids;
        }
        let unk = self.unk();
        let mut ids = Vec::new();
        Self::pieces(self.kind, text, |p| ids.push(self.id(p).unwrap_or(unk)));
        ids
    }

    /// A file → ids, streamed: each line (with its terminator) is encoded on its own, the
    /// way BPE was trained. For char and word tokenizers that equals encoding the whole
    /// text; byte-level BPE can differ from one whole-text encode only where a run of
    /// spaces ends a line.
    pub fn encode_file(&self, path: &Path) -> Result<Vec<u32>> {
        self.encode_lines(Lines::open_nonempty(path)?)
    }

    /// Lines (each with its terminator) → ids; the first error is returned.
    pub fn encode_lines<S: AsRef<str>>(
        &self,
        lines: impl Iterator<Item = Result<S>>,
    ) -> Result<Vec<u32>> {
        let mut ids = Vec::new();
        for line in lines {
            ids.extend(self.encode(line?.as_ref()));
        }
        Ok(ids)
    }

    /// Ids → text. Words are joined by spaces; PTB's `<eos>` becomes a newline.
    pub fn decode(&self, ids: &[u32]) -> String {
        if let Some(bpe) = &self.bpe {
            return bpe.decode(ids, false).unwrap_or_default();
        }
        let tok = |i: &u32| self.vocab.get(*i as usize).map_or(UNK, |s| s.as_str());
        match self.kind {
            Kind::Char => ids.iter().map(tok).collect(),
            _ => {
                let mut out = String::new();
                for i in ids {
                    let t = tok(i);
                    if t == EOS {
                        out.push('\n');
                    } else {
                        if !out.is_empty() && !out.ends_with('\n') {
                            out.push(' ');
                        }
                        out.push_str(t);
                    }
                }
                out
            }
        }
    }

    /// The text of one token, for streaming generation.
    pub fn token_text(&self, id: u32, first: bool) -> String {
        match self.kind {
            Kind::Char | Kind::Bpe => self.decode(&[id]),
            _ => {
                let t = self.vocab.get(id as usize).map_or(UNK, |s| s.as_str());
                if t == EOS {
                    "\n".into()
                } else if first {
                    t.into()
                } else {
                    format!(" {t}")
                }
            }
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("tokenizer serialises")
    }

    pub fn from_json(s: &str, file: &Path) -> Result<Tokenizer> {
        let t: Tokenizer = serde_json::from_str(s)
            .map_err(|e| Error::format(file, format!("bad tokenizer: {e}")))?;
        t.restore(file)
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let body = match &self.bpe_json {
            Some(j) => j.clone(),
            None => self.to_json(),
        };
        crate::error::write_atomic(path, body.as_bytes())
    }

    /// Loads a file written by [`Tokenizer::save`] (rnnkit JSON, or a tokenizer.json).
    pub fn load(path: &Path) -> Result<Tokenizer> {
        let s = crate::text::read::read_text(path)?;
        let v: serde_json::Value =
            serde_json::from_str(&s).map_err(|e| Error::format(path, format!("not JSON: {e}")))?;
        if v.get("model").is_some() {
            Self::from_bpe_json(&s, path)
        } else {
            Self::from_json(&s, path)
        }
    }
}

/// The longest piece of text BPE encodes at once.
pub const BPE_CHUNK: usize = 1 << 16;

/// `text` cut into pieces of at most `max` bytes where byte-level BPE would cut anyway:
/// before a single space between two characters that are not whitespace, where the GPT-2
/// pre-tokenizer always starts a new word, so encoding the pieces one by one gives the ids
/// of encoding the whole. A run of more than `max` bytes without such a space (one "word"
/// of 64 KiB) is cut at the last character boundary instead, the one place where the ids
/// may differ from a whole encode.
pub fn bpe_chunks(text: &str, max: usize) -> impl Iterator<Item = &str> {
    let max = max.max(4);
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = if rest.len() <= max {
            rest.len()
        } else {
            let b = rest.as_bytes();
            let solid = |c: Option<char>| c.is_some_and(|c| !c.is_whitespace());
            (1..max)
                .rev()
                .find(|&i| {
                    b[i] == b' '
                        && solid(rest[..i].chars().next_back())
                        && solid(rest[i + 1..].chars().next())
                })
                .unwrap_or_else(|| {
                    (1..=max)
                        .rev()
                        .find(|&i| rest.is_char_boundary(i))
                        .unwrap_or(max)
                })
        };
        let (piece, tail) = rest.split_at(cut);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(kind: Kind) -> TrainOptions {
        TrainOptions {
            kind,
            min_freq: 1,
            max_size: None,
        }
    }

    #[test]
    fn char_tokenizer_handles_cyrillic_and_unknowns() {
        let t = Tokenizer::train(&["привет мир"], &opts(Kind::Char)).unwrap();
        let ids = t.encode("мир!");
        assert_eq!(ids.len(), 4);
        assert_eq!(ids[3], t.unk());
        assert_eq!(t.decode(&t.encode("привет")), "привет");
    }

    #[test]
    fn word_vocab_respects_min_freq_and_size() {
        let t = Tokenizer::train(
            &["a a a b b c, d"],
            &TrainOptions {
                kind: Kind::Word,
                min_freq: 2,
                max_size: None,
            },
        )
        .unwrap();
        assert_eq!(&t.vocab[4..], &["a", "b"]);
        let t = Tokenizer::train(
            &["a a a b b c"],
            &TrainOptions {
                kind: Kind::Word,
                min_freq: 1,
                max_size: Some(5),
            },
        )
        .unwrap();
        assert_eq!(t.len(), 5);
        assert_eq!(t.encode("c , a").len(), 3);
        let t = Tokenizer::train(
            &["a <unk> b, c"],
            &TrainOptions {
                kind: Kind::Word,
                min_freq: 1,
                max_size: None,
            },
        )
        .unwrap();
        assert_eq!(t.encode("a <unk> b,").len(), 4);
    }

    #[test]
    fn ptb_mode_appends_eos_per_line() {
        let t = Tokenizer::train(&[" the cat \n the dog \n"], &opts(Kind::Ptb)).unwrap();
        let ids = t.encode(" the cat \n");
        assert_eq!(ids.len(), 3);
        assert_eq!(t.vocab[ids[2] as usize], EOS);
        assert_eq!(t.decode(&ids), "the cat\n");
    }

    /// A byte-level BPE of 300 symbols trained on `text` alone.
    fn bpe300(text: &str) -> Tokenizer {
        let o = TrainOptions {
            kind: Kind::Bpe,
            min_freq: 1,
            max_size: Some(300),
        };
        Tokenizer::train(&[text], &o).unwrap()
    }

    #[test]
    fn bpe_round_trips_and_survives_serialisation() {
        let text = "the quick brown fox jumps over the lazy dog\nзимой и летом одним цветом\n";
        let t = bpe300(text);
        assert_eq!(t.decode(&t.encode(text)), text);
        let back = Tokenizer::from_json(&t.to_json(), Path::new("x")).unwrap();
        assert_eq!(back.encode(text), t.encode(text));
    }

    #[test]
    fn bpe_in_pieces_gives_the_ids_of_the_whole_text() {
        let text = "the quick brown fox's jumps, over 12 lazy dogs!  twice\tзимой и летом   x \n";
        let t = bpe300(text);
        let bpe = t.bpe.as_ref().unwrap();
        let long = text.repeat(40);
        let whole = bpe.encode(long.as_str(), false).unwrap().get_ids().to_vec();
        for max in [4, 9, 17, 64, 300] {
            let pieces: Vec<&str> = bpe_chunks(&long, max).collect();
            assert_eq!(pieces.concat(), long);
            assert!(pieces.iter().all(|p| p.len() <= max.max(4)), "{max}");
            if max >= 64 {
                // Every word of the text (with its space) is shorter than the piece: no
                // cut inside a word.
                let ids: Vec<u32> = pieces
                    .iter()
                    .flat_map(|p| bpe.encode(*p, false).unwrap().get_ids().to_vec())
                    .collect();
                assert_eq!(ids, whole, "{max}");
            }
        }
        assert_eq!(t.encode(&long), whole);
        // One 100 KB "word": cut at character boundaries, nothing lost.
        let word = "я".repeat(50_001);
        let back = t.decode(&t.encode(&word));
        assert_eq!(back, word);
    }

    #[test]
    fn streaming_from_files_matches_training_in_memory() {
        let text = "the cat, sat\n\nна ковре \r\nthe end";
        let p = std::env::temp_dir().join(format!("rnnkit-tok-{}", std::process::id()));
        std::fs::write(&p, text).unwrap();
        for kind in [Kind::Char, Kind::Word, Kind::Ptb, Kind::Bpe] {
            let o = TrainOptions {
                kind,
                min_freq: 1,
                max_size: Some(280),
            };
            let mem = Tokenizer::train(&[text], &o).unwrap();
            let streamed = Tokenizer::train_files(&[&p], &o).unwrap();
            assert_eq!(mem.vocab, streamed.vocab, "{kind:?}");
            let ids = streamed.encode_file(&p).unwrap();
            if kind != Kind::Bpe {
                assert_eq!(ids, mem.encode(text), "{kind:?}");
            }
            if matches!(kind, Kind::Char | Kind::Bpe) {
                assert_eq!(streamed.decode(&ids), text, "{kind:?}");
            }
        }
        std::fs::write(&p, b"fine\nbad \xc3(\n").unwrap();
        let o = opts(Kind::Word);
        let e = Tokenizer::train_files(&[&p], &o).unwrap_err().to_string();
        assert!(e.contains(":2: invalid UTF-8 at byte offset 9"), "{e}");
        std::fs::write(&p, "\n \n").unwrap();
        let e = Tokenizer::train_files(&[&p], &o).unwrap_err().to_string();
        assert!(e.contains("file is empty"), "{e}");
    }
}
