//! Entry points of the fuzz targets (fuzz/fuzz_targets/) and of their replay test
//! (tests/fuzz_replay.rs). Each takes arbitrary bytes and hands them, as a file, to the
//! readers and scorers the CLI uses, as the CLI does; the outcome is ignored. Errors are
//! expected: a panic, an abort, a hang or a runaway allocation is the finding.

use crate::checkpoint;
use crate::text::{conll, corpus, tokenizer::Tokenizer};
use std::path::PathBuf;

/// The input as a file of this process and thread (in /dev/shm when there is one, so a
/// fuzzer's millions of writes stay in memory).
fn scratch(name: &str, data: &[u8]) -> PathBuf {
    let dir = ["/dev/shm"]
        .iter()
        .map(PathBuf::from)
        .find(|d| d.is_dir())
        .unwrap_or_else(std::env::temp_dir);
    let p = dir.join(format!(
        "rnnkit-fuzz-{}-{:?}-{name}",
        std::process::id(),
        std::thread::current().id()
    ));
    std::fs::write(&p, data).expect("the scratch file is writable");
    p
}

/// Two inputs from one: the first byte says where the rest is cut.
fn split(data: &[u8]) -> (&[u8], &[u8]) {
    match data.split_first() {
        Some((&k, rest)) => rest.split_at(rest.len() * k as usize / 256),
        None => (&[], &[]),
    }
}

/// The checkpoint loader, for every task's model.
pub fn checkpoint(data: &[u8]) {
    use crate::task::translate::Seq2Seq;
    use crate::task::{classify::Classifier, lm::LanguageModel, tag::Tagger};
    let p = scratch("ckpt.safetensors", data);
    let _ = checkpoint::load::<LanguageModel>(&p);
    let _ = checkpoint::load::<Tagger>(&p);
    let _ = checkpoint::load::<Classifier>(&p);
    let _ = checkpoint::load::<Seq2Seq>(&p);
}

/// The tokenizer loader (rnnkit's JSON and the tokenizers library's BPE files).
pub fn tokenizer(data: &[u8]) {
    let p = scratch("tokenizer.json", data);
    if let Ok(t) = Tokenizer::load(&p) {
        let _ = t.encode("a probe, with ünïcode and 123 numbers.\n");
    }
}

/// The CoNLL reader with every scheme's validation, spans and conversion.
pub fn conll(data: &[u8]) {
    use conll::Scheme::*;
    let p = scratch("data.conll", data);
    if let Ok(sents) = conll::read(&p, conll::Columns::default()) {
        for s in &sents {
            for scheme in [Iob1, Iob2, Bioes] {
                let _ = conll::validate_sentence(&p, s, scheme);
                let _ = conll::spans(&s.tags, scheme);
                let _ = conll::convert(&s.tags, scheme, Bioes);
            }
        }
    }
}

/// The parallel readers: two line-aligned files, and one two-column TSV.
pub fn parallel(data: &[u8]) {
    let (a, b) = split(data);
    let (pa, pb) = (scratch("src.txt", a), scratch("tgt.txt", b));
    let _ = corpus::read_parallel(&pa, &pb);
    let _ = corpus::read_parallel_tsv(&scratch("pairs.tsv", data));
}

/// The labelled-text readers (`label<TAB>text` and GLUE-style TSV with a header).
pub fn tsv(data: &[u8]) {
    use corpus::Column;
    let p = scratch("data.tsv", data);
    let _ = corpus::read_labelled(&p);
    let _ = corpus::read_tsv(
        &p,
        &Column::Name("sentence".into()),
        Some(&Column::Name("label".into())),
        None,
    );
    let _ = corpus::read_tsv(&p, &Column::Index(1), Some(&Column::Index(0)), Some(false));
}

/// The word-vector reader (word2vec / GloVe / fastText text).
pub fn vectors(data: &[u8]) {
    let _ = corpus::read_vectors(&scratch("vectors.txt", data));
}

/// The scorers of `tag score` (gold and predicted CoNLL) and `translate score` (reference
/// and hypothesis lines; BLEU and chrF, cased and lowercased).
pub fn scorers(data: &[u8]) {
    let (a, b) = split(data);
    let (pa, pb) = (scratch("gold.conll", a), scratch("pred.conll", b));
    let cols = conll::Columns::default();
    if let (Ok(g), Ok(p)) = (conll::read(&pa, cols), conll::read(&pb, cols)) {
        let mut n = crate::metrics::NerCounter::default();
        for (g, p) in g.iter().zip(&p) {
            n.add(&g.tags, &p.tags);
        }
        let _ = n.scores();
    }
    let (ta, tb) = (String::from_utf8_lossy(a), String::from_utf8_lossy(b));
    let (refs, hyps): (Vec<&str>, Vec<&str>) = (ta.lines().collect(), tb.lines().collect());
    let n = refs.len().min(hyps.len());
    for lc in [false, true] {
        let _ = crate::metrics::bleu(&hyps[..n], &refs[..n], lc);
        let _ = crate::metrics::chrf(&hyps[..n], &refs[..n], lc);
    }
}

/// A fuzz target: arbitrary bytes in, nothing out.
pub type Target = fn(&[u8]);

/// Every target by name, for the replay test and the fuzz crate.
pub const TARGETS: &[(&str, Target)] = &[
    ("checkpoint", checkpoint),
    ("tokenizer", tokenizer),
    ("conll", conll),
    ("parallel", parallel),
    ("tsv", tsv),
    ("vectors", vectors),
    ("scorers", scorers),
];
