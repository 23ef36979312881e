//! A tagger ready for use ([`Loaded`]): load a checkpoint, tag plain text or token lists
//! into entities with their spans, evaluate CoNLL data, trace a sentence.

use super::{load, tag_all, Encoded, TagVocabs, Tagger};
use crate::error::{Error, Result};
use crate::text::conll::{self, Scheme};
use serde::Serialize;
use std::path::Path;

/// A sentence's tokens and their character spans.
type Words = (Vec<String>, Vec<(usize, usize)>);

/// A tagger with the vocabularies it reads text with.
pub struct Loaded {
    pub model: Tagger,
    pub vocabs: TagVocabs,
    /// Compute each tag's probability (a second pass over the batch; on by default).
    pub probs: bool,
}

/// One entity of a tagged sentence.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Entity {
    /// The entity type (`PER`, `LOC`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Token span, the end exclusive.
    pub start: usize,
    pub end: usize,
    /// Character span in the input text, the end exclusive (characters, not bytes).
    pub char_start: usize,
    pub char_end: usize,
    /// The entity's text as written.
    pub text: String,
    /// The mean probability of its tags (CRF marginals or softmax), when computed.
    pub prob: Option<f32>,
}

/// A tagged sentence: its tokens with their character spans, the tags (IOB2), each tag's
/// probability (empty unless [`Loaded::probs`]), and the entities.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tagged {
    pub tokens: Vec<String>,
    /// Character span of each token in the text, the end exclusive.
    pub offsets: Vec<(usize, usize)>,
    pub tags: Vec<String>,
    pub probs: Vec<f32>,
    pub entities: Vec<Entity>,
}

impl Loaded {
    /// Loads a tagger checkpoint (checked as every loader checks one).
    pub fn load(path: &Path) -> Result<Loaded> {
        let (model, vocabs) = load(path)?;
        Ok(Loaded {
            model,
            vocabs,
            probs: true,
        })
    }

    /// Tags sentences of plain text, each split into words as `tag predict --text` splits
    /// it ([`crate::text::tokenizer::word_spans`]); an empty text gives an empty sentence.
    pub fn tag_texts(&mut self, texts: &[&str]) -> Result<Vec<Tagged>> {
        let inputs: Vec<Words> = texts
            .iter()
            .map(|text| {
                let spans = crate::text::tokenizer::word_spans(text);
                let char_at = |b: usize| text[..b].chars().count();
                let tokens = spans.iter().map(|&(s, e)| text[s..e].to_string()).collect();
                let offsets = spans
                    .iter()
                    .map(|&(s, e)| (char_at(s), char_at(e)))
                    .collect();
                (tokens, offsets)
            })
            .collect();
        self.tag(&inputs, texts)
    }

    /// Tags sentences given as tokens; character spans refer to the tokens joined by one
    /// space.
    pub fn tag_tokens(&mut self, sentences: &[Vec<String>]) -> Result<Vec<Tagged>> {
        let joined: Vec<String> = sentences.iter().map(|s| s.join(" ")).collect();
        let inputs: Vec<Words> = sentences
            .iter()
            .map(|s| {
                let mut at = 0;
                let offsets = s
                    .iter()
                    .map(|t| {
                        let n = t.chars().count();
                        at += n + 1;
                        (at - n - 1, at - 1)
                    })
                    .collect();
                (s.clone(), offsets)
            })
            .collect();
        let refs: Vec<&str> = joined.iter().map(|s| s.as_str()).collect();
        self.tag(&inputs, &refs)
    }

    /// Tags (tokens, character offsets) of `texts`, in batches of 64.
    fn tag(&mut self, inputs: &[Words], texts: &[&str]) -> Result<Vec<Tagged>> {
        let enc: Vec<Encoded> = inputs
            .iter()
            .map(|(t, _)| self.vocabs.encode(t, &[]).map_err(Error::Usage))
            .collect::<Result<_>>()?;
        let (paths, _) = tag_all(&mut self.model, &enc, 64);
        let refs: Vec<&Encoded> = enc.iter().collect();
        let probs: Vec<Vec<f32>> = if self.probs {
            refs.chunks(64)
                .zip(paths.chunks(64))
                .flat_map(|(b, p)| self.model.confidences(b, p))
                .collect()
        } else {
            vec![Vec::new(); paths.len()]
        };
        let scheme = self.model.cfg.scheme;
        let mut out = Vec::with_capacity(inputs.len());
        for (((tokens, offsets), path), (text, probs)) in
            inputs.iter().zip(&paths).zip(texts.iter().zip(probs))
        {
            let names: Vec<String> = path
                .iter()
                .map(|&i| self.vocabs.labels.tokens[i as usize].clone())
                .collect();
            let tags = conll::convert(&names, scheme, Scheme::Iob2);
            let entities = crate::metrics::chunks(&tags)
                .into_iter()
                .map(|(kind, s, e)| {
                    let (cs, ce) = (offsets[s].0, offsets[e].1);
                    Entity {
                        kind,
                        start: s,
                        end: e + 1,
                        char_start: cs,
                        char_end: ce,
                        text: text.chars().skip(cs).take(ce - cs).collect(),
                        prob: probs
                            .get(s..=e)
                            .map(|p| p.iter().sum::<f32>() / (e + 1 - s) as f32),
                    }
                })
                .collect();
            out.push(Tagged {
                tokens: tokens.clone(),
                offsets: offsets.clone(),
                tags,
                probs,
                entities,
            });
        }
        Ok(out)
    }

    /// conlleval's scores of the tagger on a CoNLL file (`scheme` is the file's).
    pub fn evaluate(
        &mut self,
        path: &Path,
        columns: conll::Columns,
        scheme: Scheme,
    ) -> Result<crate::metrics::NerScores> {
        let mut sents = conll::read(path, columns)?;
        for s in &mut sents {
            conll::validate_sentence(path, s, scheme)?;
            s.tags = super::recipe::retag(
                &s.tags,
                scheme,
                self.model.cfg.scheme,
                self.model.cfg.types.as_deref(),
            );
        }
        let enc = super::recipe::encode_sentences(&self.vocabs, &sents, path)?;
        Ok(super::recipe::score_encoded(
            &mut self.model,
            &self.vocabs,
            &enc,
        ))
    }

    /// [`super::trace`] of one sentence of plain text.
    pub fn trace(&mut self, text: &str) -> Result<crate::task::trace::Trace> {
        super::trace(&mut self.model, &self.vocabs, text)
    }
}
