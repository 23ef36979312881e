//! Evaluation metrics, computed exactly as the reference tools compute them, so a number
//! from rnnkit can be put beside a published one.
//!
//! Entity-level precision, recall and F1 count chunks the way conlleval does (and seqeval's
//! default mode, which extends it to E- and S- tags): a chunk ends and another starts at
//! every place those scripts say, so ill-formed sequences (I-X after O, a type change
//! inside an entity) are read the same way. A predicted entity counts when its type, start
//! and end all match a gold one. Sentences are separate: no chunk crosses a boundary.

use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// A chunk: (type, first token, last token), token indices inclusive as in seqeval.
pub type Chunk = (String, usize, usize);

/// (prefix, type) as seqeval reads a tag: the first character, and what follows the first
/// `-` after it (`O` has the type `_`).
fn prefix_type(tag: &str) -> (char, &str) {
    let mut c = tag.chars();
    let p = c.next().unwrap_or('O');
    let rest = c.as_str();
    let ty = rest.split_once('-').map_or(rest, |(_, t)| t);
    (p, if ty.is_empty() { "_" } else { ty })
}

fn end_of_chunk(prev: char, tag: char, prev_ty: &str, ty: &str) -> bool {
    matches!(prev, 'E' | 'S')
        || (matches!(prev, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
        || (prev != 'O' && prev != '.' && prev_ty != ty)
}

fn start_of_chunk(prev: char, tag: char, prev_ty: &str, ty: &str) -> bool {
    matches!(tag, 'B' | 'S')
        || (matches!(prev, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
        || (tag != 'O' && tag != '.' && prev_ty != ty)
}

/// The chunks of one sentence's tags.
pub fn chunks<S: AsRef<str>>(tags: &[S]) -> Vec<Chunk> {
    let mut out = Vec::new();
    let (mut prev, mut prev_ty, mut begin) = ('O', "_".to_string(), 0);
    for i in 0..=tags.len() {
        let (p, ty) = tags.get(i).map_or(('O', "_"), |t| prefix_type(t.as_ref()));
        if end_of_chunk(prev, p, &prev_ty, ty) {
            out.push((prev_ty.clone(), begin, i - 1));
        }
        if start_of_chunk(prev, p, &prev_ty, ty) {
            begin = i;
        }
        prev = p;
        prev_ty = ty.to_string();
    }
    out
}

/// Precision, recall, F1 and the number of gold entities of one type or of all.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub support: usize,
}

impl Prf {
    /// From counts; a division by zero gives 0.
    pub fn from_counts(correct: usize, predicted: usize, gold: usize) -> Prf {
        let div = |a: usize, b: usize| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let (p, r) = (div(correct, predicted), div(correct, gold));
        Prf {
            precision: p,
            recall: r,
            f1: if p + r == 0.0 {
                0.0
            } else {
                2.0 * p * r / (p + r)
            },
            support: gold,
        }
    }
}

/// Entity-level scores of a tagged corpus.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct NerScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Tokens whose predicted tag equals the gold tag, over all tokens (O included).
    pub accuracy: f64,
    pub per_type: BTreeMap<String, Prf>,
    pub tokens: usize,
    pub gold_entities: usize,
    pub predicted_entities: usize,
}

/// Accumulates sentences, then scores them.
#[derive(Clone, Debug, Default)]
pub struct NerCounter {
    /// type → (correct, predicted, gold)
    counts: BTreeMap<String, (usize, usize, usize)>,
    tokens: usize,
    tokens_right: usize,
}

impl NerCounter {
    /// One sentence's gold and predicted tags (of equal length).
    pub fn add<S: AsRef<str>, T: AsRef<str>>(&mut self, gold: &[S], pred: &[T]) {
        debug_assert_eq!(gold.len(), pred.len());
        self.tokens += gold.len();
        self.tokens_right += gold
            .iter()
            .zip(pred)
            .filter(|(g, p)| g.as_ref() == p.as_ref())
            .count();
        let (g, p) = (chunks(gold), chunks(pred));
        for c in &g {
            self.counts.entry(c.0.clone()).or_default().2 += 1;
        }
        for c in &p {
            let e = self.counts.entry(c.0.clone()).or_default();
            e.1 += 1;
            if g.contains(c) {
                e.0 += 1;
            }
        }
    }

    pub fn scores(&self) -> NerScores {
        let (mut c, mut p, mut g) = (0, 0, 0);
        let per_type = self
            .counts
            .iter()
            .map(|(ty, &(tc, tp, tg))| {
                (c, p, g) = (c + tc, p + tp, g + tg);
                (ty.clone(), Prf::from_counts(tc, tp, tg))
            })
            .collect();
        let all = Prf::from_counts(c, p, g);
        NerScores {
            precision: all.precision,
            recall: all.recall,
            f1: all.f1,
            accuracy: if self.tokens == 0 {
                0.0
            } else {
                self.tokens_right as f64 / self.tokens as f64
            },
            per_type,
            tokens: self.tokens,
            gold_entities: g,
            predicted_entities: p,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(s: &str) -> Vec<&str> {
        s.split_whitespace().collect()
    }

    /// conlleval's reading of well- and ill-formed sequences.
    #[test]
    fn chunks_follow_conlleval() {
        let c = |s: &str| chunks(&tags(s));
        assert_eq!(
            c("B-PER I-PER O B-LOC"),
            [("PER".into(), 0, 1), ("LOC".into(), 3, 3)]
        );
        // I- after O starts an entity; a type change inside one splits it.
        assert_eq!(c("O I-PER I-PER"), [("PER".into(), 1, 2)]);
        assert_eq!(
            c("B-PER I-LOC"),
            [("PER".into(), 0, 0), ("LOC".into(), 1, 1)]
        );
        // BIOES: S- is a whole entity, E- closes one, I- after E- starts another.
        assert_eq!(
            c("S-PER B-LOC E-LOC I-LOC"),
            [
                ("PER".into(), 0, 0),
                ("LOC".into(), 1, 2),
                ("LOC".into(), 3, 3)
            ]
        );
        // IOB1: B- separates two adjacent entities of one type.
        assert_eq!(
            c("I-PER B-PER"),
            [("PER".into(), 0, 0), ("PER".into(), 1, 1)]
        );
        assert!(c("O O").is_empty());
    }

    #[test]
    fn scores_count_exact_matches_and_zero_divisions() {
        let mut n = NerCounter::default();
        n.add(&tags("B-PER I-PER O B-LOC"), &tags("B-PER I-PER O B-ORG"));
        let s = n.scores();
        assert_eq!((s.gold_entities, s.predicted_entities), (2, 2));
        assert!((s.f1 - 0.5).abs() < 1e-12 && (s.accuracy - 0.75).abs() < 1e-12);
        assert_eq!(s.per_type["LOC"], Prf::from_counts(0, 0, 1));
        assert_eq!(s.per_type["ORG"].precision, 0.0);
        assert_eq!(NerCounter::default().scores().f1, 0.0);
    }
}

/// mteval-v13a's tokenization as sacreBLEU applies it (its default `13a`): HTML entities
/// undone, then every symbol split off, periods and commas split off unless between
/// digits, a dash split off after a digit, whitespace collapsed.
pub fn tokenize_13a(line: &str) -> String {
    use std::sync::OnceLock;
    static RES: OnceLock<[(regex::Regex, &str); 4]> = OnceLock::new();
    let res = RES.get_or_init(|| {
        let re = |p: &str| regex::Regex::new(p).expect("valid pattern");
        [
            (re(r"([\{-~\[-`\x20-&\(-\+:-@/])"), " $1 "),
            (re(r"([^0-9])([\.,])"), "$1 $2 "),
            (re(r"([\.,])([^0-9])"), " $1 $2"),
            (re(r"([0-9])(-)"), "$1 $2 "),
        ]
    });
    let mut s = line
        .replace("<skipped>", "")
        .replace("-\n", "")
        .replace('\n', " ");
    if s.contains('&') {
        s = s
            .replace("&quot;", "\"")
            .replace("&amp;", "&")
            .replace("&lt;", "<")
            .replace("&gt;", ">");
    }
    let mut s = format!(" {s} ");
    for (re, rep) in res {
        s = re.replace_all(&s, *rep).into_owned();
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Counts of every n-gram, n = 1..=max, keyed by the token slices themselves (no copies).
fn word_ngrams<'a>(tokens: &'a [&'a str], max: usize) -> HashMap<&'a [&'a str], usize> {
    let mut m = HashMap::new();
    for n in 1..=max {
        for w in tokens.windows(n) {
            *m.entry(w).or_insert(0) += 1;
        }
    }
    m
}

/// Corpus BLEU as sacreBLEU's default computes it: 13a tokens, n-grams up to 4, one
/// reference a segment, exponential smoothing (mteval's), on the 0–100 scale.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Bleu {
    pub bleu: f64,
    /// n-gram precisions in percent, n = 1..4.
    pub precisions: [f64; 4],
    pub brevity_penalty: f64,
    pub sys_len: usize,
    pub ref_len: usize,
    pub correct: [usize; 4],
    pub total: [usize; 4],
}

pub fn bleu<S: AsRef<str>, T: AsRef<str>>(hyps: &[S], refs: &[T], lowercase: bool) -> Bleu {
    let mut b = Bleu::default();
    for (h, r) in hyps.iter().zip(refs) {
        let prep = |s: &str| {
            let s = s.trim_end();
            tokenize_13a(&if lowercase {
                s.to_lowercase()
            } else {
                s.to_string()
            })
        };
        let (h, r) = (prep(h.as_ref()), prep(r.as_ref()));
        let ht: Vec<&str> = h.split_whitespace().collect();
        let rt: Vec<&str> = r.split_whitespace().collect();
        let (hn, rn) = (word_ngrams(&ht, 4), word_ngrams(&rt, 4));
        b.sys_len += ht.len();
        b.ref_len += rt.len();
        for (g, &c) in &hn {
            b.total[g.len() - 1] += c;
            if let Some(&rc) = rn.get(g) {
                b.correct[g.len() - 1] += c.min(rc);
            }
        }
    }
    b.brevity_penalty = if b.sys_len >= b.ref_len {
        1.0
    } else if b.sys_len > 0 {
        (1.0 - b.ref_len as f64 / b.sys_len as f64).exp()
    } else {
        0.0
    };
    if b.correct.iter().all(|&c| c == 0) {
        return b;
    }
    let mut smooth = 1.0;
    for n in 0..4 {
        if b.total[n] == 0 {
            break;
        }
        b.precisions[n] = if b.correct[n] == 0 {
            smooth *= 2.0;
            100.0 / (smooth * b.total[n] as f64)
        } else {
            100.0 * b.correct[n] as f64 / b.total[n] as f64
        };
    }
    // sacreBLEU's my_log: log(0) is a large negative number, so a missing order gives 0.
    let log = |p: f64| if p == 0.0 { -9_999_999_999.0 } else { p.ln() };
    b.bleu = b.brevity_penalty * (b.precisions.iter().map(|&p| log(p)).sum::<f64>() / 4.0).exp();
    b
}

/// Counts of the character n-grams of `v`, each n-gram packed into one `u128` key (21 bits a
/// character, n ≤ 6), so a gram is hashed and compared as one number rather than as a slice.
fn char_grams(v: &[char], n: usize) -> HashMap<u128, usize> {
    debug_assert!(n <= 6);
    let mut m = HashMap::new();
    for w in v.windows(n) {
        let key = w.iter().fold(0u128, |k, &c| (k << 21) | c as u128);
        *m.entry(key).or_insert(0) += 1;
    }
    m
}

/// Corpus chrF as sacreBLEU's default computes it: character n-grams up to 6 with
/// whitespace removed, β = 2, statistics summed over the corpus, precision and recall
/// averaged over the orders both sides have, on the 0–100 scale.
pub fn chrf<S: AsRef<str>, T: AsRef<str>>(hyps: &[S], refs: &[T], lowercase: bool) -> f64 {
    const ORDER: usize = 6;
    let mut stats = [[0usize; 3]; ORDER];
    for (h, r) in hyps.iter().zip(refs) {
        let prep = |s: &str| -> Vec<char> {
            let s = if lowercase {
                s.to_lowercase()
            } else {
                s.to_string()
            };
            s.chars().filter(|c| !c.is_whitespace()).collect()
        };
        let (hc, rc) = (prep(h.as_ref()), prep(r.as_ref()));
        for n in 1..=ORDER {
            let (hm, rm) = (char_grams(&hc, n), char_grams(&rc, n));
            let hyp: usize = hm.values().sum();
            let matched: usize = hm
                .iter()
                .map(|(g, &c)| c.min(*rm.get(g).unwrap_or(&0)))
                .sum();
            let st = &mut stats[n - 1];
            st[0] += if rm.is_empty() { 0 } else { hyp };
            st[1] += rm.values().sum::<usize>();
            st[2] += matched;
        }
    }
    let factor = 4.0;
    let (mut p, mut r, mut eff) = (0.0, 0.0, 0);
    for [nh, nr, nm] in stats {
        if nh > 0 && nr > 0 {
            p += nm as f64 / nh as f64;
            r += nm as f64 / nr as f64;
            eff += 1;
        }
    }
    if eff == 0 {
        return 0.0;
    }
    let (p, r) = (p / eff as f64, r / eff as f64);
    if p + r == 0.0 {
        return 0.0;
    }
    100.0 * (1.0 + factor) * p * r / (factor * p + r)
}
