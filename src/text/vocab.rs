//! Named vocabularies as checkpoints store them: a language model's tokens, a tagger's
//! words, characters and labels, a translator's two sides.
//!
//! A vocabulary is its tokens in id order, the special tokens among them, the unknown token
//! that unseen strings map to (a label list has none: an unseen label is an error), and the
//! normalisation its lookups apply (lowercasing). A vocabulary that encodes text also names
//! its tokenizer kind (and, for BPE, carries the whole tokenizer.json).

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

/// How text is split into tokens (the tokenizer a vocabulary was built with).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Unicode scalar values (not bytes, so Cyrillic is one token per letter).
    Char,
    /// Whitespace- and punctuation-split words.
    Word,
    /// Mikolov's PTB convention: whitespace-split words, `<eos>` at the end of each line.
    Ptb,
    /// Byte-level BPE through Hugging Face `tokenizers`.
    Bpe,
}

impl Kind {
    pub fn parse(s: &str) -> Option<Kind> {
        s.parse().ok()
    }
}

impl std::str::FromStr for Kind {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> Result<Kind> {
        Ok(match s {
            "char" => Kind::Char,
            "word" => Kind::Word,
            "ptb" => Kind::Ptb,
            "bpe" => Kind::Bpe,
            _ => {
                return Err(Error::config(format!(
                    "{s:?}: expected char, word, ptb or bpe"
                )))
            }
        })
    }
}

#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Vocab {
    pub tokens: Vec<String>,
    /// Special tokens (`<unk>`, `<pad>`, `<bos>`, `<eos>`) present in `tokens`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub specials: Vec<String>,
    /// What lookups of unseen strings return; `None`: they are errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unk: Option<String>,
    /// Lookups lowercase the string first (the tokens are stored lowercased).
    #[serde(default)]
    pub lowercase: bool,
    /// How text is split into these tokens, for a vocabulary that encodes text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokenizer: Option<Kind>,
    /// BPE only: the tokenizer.json, loadable unchanged by Python's `tokenizers`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bpe_json: Option<String>,
    #[serde(skip)]
    pub(crate) index: HashMap<String, u32>,
}

impl PartialEq for Vocab {
    fn eq(&self, o: &Vocab) -> bool {
        (
            &self.tokens,
            &self.specials,
            &self.unk,
            self.lowercase,
            self.tokenizer,
            &self.bpe_json,
        ) == (
            &o.tokens,
            &o.specials,
            &o.unk,
            o.lowercase,
            o.tokenizer,
            &o.bpe_json,
        )
    }
}

impl Vocab {
    /// A closed list (labels): no unknown token, no normalisation.
    pub fn labels(tokens: Vec<String>) -> Vocab {
        Vocab {
            tokens,
            ..Default::default()
        }
        .indexed()
    }

    /// Builds the lookup table (after deserialising or editing `tokens`).
    pub fn indexed(mut self) -> Vocab {
        self.index = self
            .tokens
            .iter()
            .enumerate()
            .map(|(i, t)| (t.clone(), i as u32))
            .collect();
        self
    }

    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The id of `s` after normalisation, if it is in the vocabulary.
    pub fn id(&self, s: &str) -> Option<u32> {
        if self.lowercase {
            self.index.get(&s.to_lowercase()).copied()
        } else {
            self.index.get(s).copied()
        }
    }

    /// The id of `s`, or of the unknown token; `None` only for a closed list.
    pub fn lookup(&self, s: &str) -> Option<u32> {
        self.id(s)
            .or_else(|| self.unk.as_deref().and_then(|u| self.index.get(u).copied()))
    }

    /// Checks what a file can get wrong: an empty list, repeated tokens, a special or
    /// unknown token that is not in the list. `name` is the vocabulary's name in the file.
    pub fn check(&self, file: &Path, name: &str) -> Result<()> {
        let bad = |m: String| Err(Error::format(file, format!("vocabulary {name:?}: {m}")));
        if self.tokens.is_empty() {
            return bad("is empty".into());
        }
        if self.index.len() != self.tokens.len() {
            return bad("repeats a token".into());
        }
        for s in self.specials.iter().chain(&self.unk) {
            if !self.index.contains_key(s) {
                return bad(format!(
                    "names the special token {s:?}, which it does not hold"
                ));
            }
        }
        if self.tokenizer == Some(Kind::Bpe) && self.bpe_json.is_none() {
            return bad("is BPE but carries no tokenizer.json".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookups_normalise_and_fall_back_to_unk() {
        let mut v = Vocab {
            tokens: vec!["<unk>".into(), "paris".into()],
            unk: Some("<unk>".into()),
            lowercase: true,
            ..Default::default()
        }
        .indexed();
        assert_eq!(v.id("Paris"), Some(1));
        assert_eq!(v.lookup("Lyon"), Some(0));
        v.unk = None;
        assert_eq!(v.lookup("Lyon"), None);
        let labels = Vocab::labels(vec!["O".into(), "B-PER".into()]);
        assert!(labels.check(Path::new("x"), "labels").is_ok());
        assert_eq!(labels.lookup("b-per"), None);
        let dup = Vocab::labels(vec!["O".into(), "O".into()]);
        assert!(dup.check(Path::new("x"), "labels").is_err());
        let mut missing = Vocab::labels(vec!["a".into()]);
        missing.unk = Some("<unk>".into());
        let e = missing.check(Path::new("f"), "words").unwrap_err();
        assert!(e.to_string().contains("<unk>"), "{e}");
    }
}
