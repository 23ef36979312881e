//! The translator for the one trainer and for use ([`TrTask`]: the model with its two
//! tokenizers): encoding, translating, evaluating, detokenization, and the checkpoint.
//!
//! Both sides are tokenized with the text pipeline's tokenizers (word by default, BPE on
//! request), each with its own vocabulary, optionally lowercased. Output goes back to text
//! by the tokenizer's decoder (BPE) or by [`detokenize`] (words): the word tokenizer splits
//! off every punctuation mark, and the detokenizer joins them back as written English and
//! German do. Pairs with an empty side are skipped in training and validation (their count
//! is reported); an empty source translates to an empty line. Sentences longer than
//! [`MAX_TOKENS`] are skipped in training and cut elsewhere.

use super::TASK;
use super::{Decoding, Seq2Seq, Seq2SeqConfig, Specials};
use crate::checkpoint::{self, Checkpointed, Meta};
use crate::engine::param::Module;
use crate::error::Result;
use crate::task::{Eval, Selection, Stats, Task};
use crate::text::tokenizer::{Kind, Tokenizer, BOS, EOS, PAD, UNK};
use crate::text::vocab::Vocab;
use rand::RngCore;
use std::collections::BTreeMap;
use std::path::Path;

/// Sentence pairs as ids: (source, target without specials).
pub type IdPairs = Vec<(Vec<u32>, Vec<u32>)>;

/// Joins word tokens back into text, undoing the word tokenizer's splits: no space before
/// closing punctuation (`. , ! ? ; : ) ] } %`), none after opening brackets, none around
/// `' - /` inside words (`it's`, `t-shirt`), and quotes hug what they enclose.
pub fn detokenize(tokens: &[&str]) -> String {
    let mut out = String::new();
    let (mut glue_next, mut quote_open) = (false, false);
    for &t in tokens {
        let (left, right) = match t {
            "." | "," | "!" | "?" | ";" | ":" | ")" | "]" | "}" | "%" => (true, false),
            "(" | "[" | "{" | "$" => (false, true),
            "'" | "-" | "/" => (true, true),
            "\"" => (quote_open, !quote_open),
            _ => (false, false),
        };
        if t == "\"" {
            quote_open = !quote_open;
        }
        if !out.is_empty() && !left && !glue_next {
            out.push(' ');
        }
        out.push_str(t);
        glue_next = right;
    }
    out
}

/// The longest sentence, in tokens, translation trains on and decodes: longer training
/// pairs are skipped and longer sources are cut (with a note), so one line of a megabyte
/// cannot ask for gigabytes of encoder states and output scores.
pub const MAX_TOKENS: usize = 1024;

/// The translation task for the shared trainer.
pub struct TrTask {
    pub model: Seq2Seq,
    pub src_tok: Tokenizer,
    pub tgt_tok: Tokenizer,
    pub lowercase: bool,
    pub label_smoothing: f32,
    pub decoding: Decoding,
    pub batch: usize,
    pub train: IdPairs,
    pub valid: IdPairs,
    /// The validation targets as written, for BLEU.
    pub valid_refs: Vec<String>,
    pub(super) batches: Vec<Vec<usize>>,
}

impl TrTask {
    /// A task over `train` (source ids, target ids) in batches of `batch`, its other
    /// settings as a recipe leaves them by default: no lowercasing, no label smoothing,
    /// default decoding, no validation set. `rnnkit bench translate` times its training step.
    pub fn new(
        model: Seq2Seq,
        src_tok: Tokenizer,
        tgt_tok: Tokenizer,
        train: IdPairs,
        batch: usize,
    ) -> TrTask {
        let mut task = TrTask {
            model,
            src_tok,
            tgt_tok,
            lowercase: false,
            label_smoothing: 0.0,
            decoding: Decoding::default(),
            batch,
            train,
            valid: Vec::new(),
            valid_refs: Vec::new(),
            batches: Vec::new(),
        };
        Task::begin_epoch(&mut task, 1, 0);
        task
    }

    pub fn specials(&self) -> Specials {
        specials(&self.tgt_tok)
    }

    fn prep(&self, s: &str) -> String {
        if self.lowercase {
            s.to_lowercase()
        } else {
            s.to_string()
        }
    }

    /// Source text → ids cut to [`MAX_TOKENS`] (decoding reads no more), with the length
    /// before the cut, so a caller can say what it dropped.
    pub fn encode_src(&self, s: &str) -> (Vec<u32>, usize) {
        let mut x = self.src_tok.encode(&self.prep(s));
        let full = x.len();
        x.truncate(MAX_TOKENS);
        (x, full)
    }

    /// Pairs as ids. A pair with an empty side is skipped; a side longer than
    /// [`MAX_TOKENS`] skips the pair in training (`train`) and is cut to it elsewhere (the
    /// teacher-forced loss; BLEU scores against the reference as written). Returns the
    /// pairs, how many were skipped and how many were cut.
    pub fn encode_pairs(&self, pairs: &[(String, String)], train: bool) -> (IdPairs, usize, usize) {
        let (mut out, mut skipped, mut cut) = (Vec::new(), 0, 0);
        for (s, t) in pairs {
            let ((x, src_len), mut y) = (self.encode_src(s), self.tgt_tok.encode(&self.prep(t)));
            let long = src_len > MAX_TOKENS || y.len() > MAX_TOKENS;
            if x.is_empty() || y.is_empty() || (long && train) {
                skipped += 1;
                continue;
            }
            if long {
                y.truncate(MAX_TOKENS);
                cut += 1;
            }
            out.push((x, y));
        }
        (out, skipped, cut)
    }

    /// Target ids → text.
    pub fn detok(&self, ids: &[u32]) -> String {
        self.render(ids, None).1
    }

    /// Target ids → (their pieces, the text). With `unk_from` = (the source text, the
    /// hypothesis's attention rows `[U][S]`), each `<unk>` becomes the source piece its row
    /// weighs most: Luong et al. 2015's unknown-word replacement (OpenNMT's `-replace_unk`),
    /// which copies the names and numbers a vocabulary lacks. The source pieces are the
    /// text's own (its case kept when the model lowercases) when they line up with the
    /// ids. BPE vocabularies have no `<unk>` to replace; their text is the BPE decoder's.
    pub fn render(
        &self,
        ids: &[u32],
        unk_from: Option<(&str, &[Vec<f32>])>,
    ) -> (Vec<String>, String) {
        let name = |i: u32| {
            self.tgt_tok
                .vocab
                .get(i as usize)
                .map_or(UNK.to_string(), |s| s.clone())
        };
        let unk = self.tgt_tok.id(UNK);
        let src = unk_from.and_then(|(text, rows)| {
            let n = self.encode_src(text).1;
            let own = self.src_tok.pieces_of(text).filter(|p| p.len() == n);
            let pieces = own.or_else(|| self.src_tok.pieces_of(&self.prep(text)))?;
            Some((pieces, rows))
        });
        let pieces: Vec<String> = ids
            .iter()
            .enumerate()
            .map(|(u, &i)| match &src {
                Some((from, rows)) if Some(i) == unk => rows
                    .get(u)
                    .and_then(|row| from.get(super::decode::argmax(row, None) as usize))
                    .cloned()
                    .unwrap_or_else(|| name(i)),
                _ => name(i),
            })
            .collect();
        let text = if self.tgt_tok.kind == Kind::Bpe {
            self.tgt_tok.decode(ids)
        } else {
            detokenize(&pieces.iter().map(|s| s.as_str()).collect::<Vec<_>>())
        };
        (pieces, text)
    }

    /// Translations of sources (ids), in batches sorted by length.
    pub fn translate(
        &mut self,
        srcs: &[Vec<u32>],
        d: &Decoding,
        batch: usize,
    ) -> Result<Vec<Vec<super::Hyp>>> {
        let sp = self.specials();
        let mut order: Vec<usize> = (0..srcs.len()).collect();
        order.sort_by_key(|&i| srcs[i].len());
        let mut out = vec![Vec::new(); srcs.len()];
        for chunk in order.chunks(batch.max(1)) {
            let b: Vec<&[u32]> = chunk.iter().map(|&i| &srcs[i][..]).collect();
            let hyps = if d.beam <= 1 {
                self.model
                    .greedy(&b, d, sp)?
                    .into_iter()
                    .map(|h| vec![h])
                    .collect()
            } else {
                self.model.beam_search(&b, d, sp)?
            };
            for (&i, h) in chunk.iter().zip(hyps) {
                out[i] = h;
            }
        }
        Ok(out)
    }

    fn batch_of(&self, set: &[(Vec<u32>, Vec<u32>)], idx: &[usize]) -> super::Batch {
        let pairs: Vec<(&[u32], &[u32])> = idx
            .iter()
            .map(|&i| (&set[i].0[..], &set[i].1[..]))
            .collect();
        super::Batch::new(&pairs, self.specials())
    }

    /// Teacher-forced perplexity, BLEU (cased and lowercased, sacreBLEU's 13a) and chrF
    /// of `pairs`, translated with `d`: `ppl_teacher_forced`, `bleu`, `bleu_lowercase`,
    /// `chrf`, `sentences`.
    pub fn evaluate(
        &mut self,
        pairs: &[(String, String)],
        d: &Decoding,
    ) -> Result<serde_json::Map<String, serde_json::Value>> {
        let (enc, _, _) = self.encode_pairs(pairs, false);
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        let (mut loss, mut count) = (0.0, 0);
        for chunk in enc.chunks(64) {
            let p: Vec<(&[u32], &[u32])> = chunk.iter().map(|(x, y)| (&x[..], &y[..])).collect();
            let bt = super::Batch::new(&p, self.specials());
            let (l, n) = self.model.loss(&bt, 0.0, false, &mut rng)?;
            loss += l;
            count += n;
        }
        let srcs: Vec<Vec<u32>> = pairs.iter().map(|p| self.encode_src(&p.0).0).collect();
        let hyps = self.translate(&srcs, &d.keeping_attention(), 64)?;
        let text: Vec<String> = hyps
            .iter()
            .zip(pairs)
            .map(|(h, (src, _))| {
                let unk_from = d.replace_unk.then_some((src.as_str(), &h[0].attention[..]));
                self.render(&h[0].tokens, unk_from).1
            })
            .collect();
        let refs: Vec<&str> = pairs.iter().map(|p| p.1.as_str()).collect();
        let b = crate::metrics::bleu(&text, &refs, false);
        let bl = crate::metrics::bleu(&text, &refs, true);
        let ppl = (loss / count.max(1) as f64).exp();
        let v = serde_json::json!({
            "ppl_teacher_forced": ppl, "bleu": b.bleu, "bleu_lowercase": bl.bleu,
            "chrf": crate::metrics::chrf(&text, &refs, false), "sentences": pairs.len(),
        });
        Ok(v.as_object().cloned().unwrap_or_default())
    }

    pub fn meta(&self) -> Meta<Seq2SeqConfig> {
        let mut s = self.src_tok.to_vocab();
        let mut t = self.tgt_tok.to_vocab();
        (s.lowercase, t.lowercase) = (self.lowercase, self.lowercase);
        Meta::new(
            TASK,
            self.model.cfg.clone(),
            [("source".to_string(), s), ("target".to_string(), t)].into(),
        )
    }
}

/// The decoder's special ids of a target tokenizer: `<pad>`, `<bos>` (or `<eos>` for a
/// vocabulary without one, as BPE's), `<eos>`.
pub fn specials(tok: &Tokenizer) -> Specials {
    let eos = tok.id(EOS).unwrap_or(0);
    Specials {
        pad: tok.id(PAD).unwrap_or(tok.unk()),
        bos: tok.id(BOS).unwrap_or(eos),
        eos,
    }
}

impl Task for TrTask {
    fn name(&self) -> &'static str {
        TASK
    }
    fn model(&mut self) -> &mut dyn Module {
        &mut self.model
    }
    fn steps_per_epoch(&self) -> usize {
        self.batches.len()
    }
    fn begin_epoch(&mut self, epoch: usize, seed: u64) {
        let lengths: Vec<usize> = self.train.iter().map(|p| p.0.len()).collect();
        self.batches = crate::text::batch::bucket_batches(&lengths, self.batch, seed, epoch);
    }
    fn train_step(&mut self, i: usize, rng: &mut dyn RngCore) -> Stats {
        let bt = self.batch_of(&self.train, &self.batches[i].clone());
        match self.model.loss(&bt, self.label_smoothing, true, rng) {
            Ok((loss, count)) => Stats {
                loss_sum: loss,
                count,
            },
            Err(_) => Stats {
                loss_sum: f64::NAN,
                count: 1,
            },
        }
    }
    fn train_metrics(&self, s: &Stats) -> Vec<(String, f64)> {
        vec![("ppl".into(), s.mean().exp())]
    }
    fn validate(&mut self) -> Option<Eval> {
        if self.valid.is_empty() {
            return None;
        }
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        let (mut loss, mut count) = (0.0, 0);
        let idx: Vec<usize> = (0..self.valid.len()).collect();
        for chunk in idx.chunks(self.batch.max(1)) {
            let bt = self.batch_of(&self.valid, chunk);
            if let Ok((l, n)) = self.model.loss(&bt, 0.0, false, &mut rng) {
                loss += l;
                count += n;
            }
        }
        let srcs: Vec<Vec<u32>> = self.valid.iter().map(|p| p.0.clone()).collect();
        let d = self.decoding;
        let hyps = self.translate(&srcs, &d, 128).ok()?;
        let text: Vec<String> = hyps.iter().map(|h| self.detok(&h[0].tokens)).collect();
        let bleu = crate::metrics::bleu(&text, &self.valid_refs, self.lowercase).bleu;
        let mean = loss / count.max(1) as f64;
        Some(Eval {
            loss: mean,
            metrics: vec![("ppl".into(), mean.exp()), ("bleu".into(), bleu)],
        })
    }
    fn selection(&self) -> Selection {
        Selection {
            metric: "bleu",
            higher_is_better: true,
        }
    }
    fn save(&mut self, path: &Path) -> Result<()> {
        checkpoint::save(path, &self.model, &[], &self.meta().to_json())
    }
}

impl Checkpointed for Seq2Seq {
    const TASK: &'static str = TASK;
    const VOCABS: &'static [&'static str] = &["source", "target"];
    type Config = Seq2SeqConfig;
    fn check(
        cfg: &Seq2SeqConfig,
        vocabs: &BTreeMap<String, Vocab>,
    ) -> std::result::Result<(), String> {
        cfg.validate().map_err(|e| e.to_string())?;
        for (name, rows, field) in [
            ("source", cfg.src_vocab, "src_vocab"),
            ("target", cfg.tgt_vocab, "tgt_vocab"),
        ] {
            let n = vocabs[name].len();
            if n != rows {
                return Err(format!(
                    "vocabulary {name:?} has {n} entries but model.{field} is {rows}"
                ));
            }
        }
        Ok(())
    }
    fn num_params(cfg: &Seq2SeqConfig) -> Option<u64> {
        let m = |a: usize, b: usize| (a as u64).checked_mul(b as u64);
        let (e, hd, eo, cd) = (
            cfg.embed,
            cfg.decoder_hidden,
            cfg.encoder.output(),
            cfg.context_dim(),
        );
        let att = match cfg.attention {
            None => 0,
            Some(s) if s.is_dot() => 0,
            Some(s) if s.is_general() => m(hd, cfg.key_dim())?,
            Some(_) => m(cfg.attn_dim, hd + cfg.key_dim())?.checked_add(cfg.attn_dim as u64)?,
        };
        m(cfg.src_vocab, e)?
            .checked_add(cfg.encoder.num_params()?)?
            .checked_add(m(eo + 1, hd)?)?
            .checked_add(if cfg.needs_projection() {
                m(eo, hd)?
            } else {
                0
            })?
            .checked_add(att)?
            .checked_add(m(cfg.tgt_vocab, e)?)?
            .checked_add(cfg.decoder_rnn().num_params()?)?
            .checked_add(m(cfg.tgt_vocab, hd + cd + e + 1)?)
    }
    fn build(cfg: Seq2SeqConfig) -> Seq2Seq {
        Seq2Seq::new(
            cfg,
            &mut <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0),
        )
        .expect("a checked config builds")
    }
}

/// Loads a translator: the model and the task around it (tokenizers, lowercasing).
pub fn load(path: &Path) -> Result<TrTask> {
    let (model, mut meta) = checkpoint::load::<Seq2Seq>(path)?;
    let s = meta.vocabs.remove("source").unwrap_or_default();
    let t = meta.vocabs.remove("target").unwrap_or_default();
    Ok(TrTask {
        model,
        src_tok: Tokenizer::from_vocab_record(&s, path)?,
        tgt_tok: Tokenizer::from_vocab_record(&t, path)?,
        lowercase: s.lowercase,
        label_smoothing: 0.0,
        decoding: Decoding::default(),
        batch: 64,
        train: Vec::new(),
        valid: Vec::new(),
        valid_refs: Vec::new(),
        batches: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detokenizer_joins_punctuation_back() {
        let t = |s: &str| detokenize(&s.split(' ').collect::<Vec<_>>());
        assert_eq!(t("two men , one woman ."), "two men, one woman.");
        assert_eq!(t("a dog ( brown ) runs !"), "a dog (brown) runs!");
        assert_eq!(t("he said \" hello \" ."), "he said \"hello\".");
        assert_eq!(t("it ' s 50 % off"), "it's 50% off");
        assert_eq!(t("a t - shirt"), "a t-shirt");
    }
}
