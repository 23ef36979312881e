//! Readers and tokenizers on the shared corpora (RNNKIT_DATA_DIR; .ci/run points it at
//! ../shared/data). Without the data these tests have nothing to read: each says on stderr
//! that it was skipped and returns.

use rnnkit::text::conll::{self, Columns, Scheme};
use rnnkit::text::corpus;
use rnnkit::text::tokenizer::{Kind, Tokenizer, TrainOptions};
use std::path::PathBuf;

fn data() -> Option<PathBuf> {
    let d = std::env::var_os("RNNKIT_DATA_DIR")
        .map(PathBuf::from)
        .filter(|d| d.join("ptb").is_dir());
    if d.is_none() {
        eprintln!(
            "SKIPPED {}: needs the shared corpora; run with RNNKIT_DATA_DIR=../shared/data",
            std::thread::current().name().unwrap_or("test")
        );
    }
    d
}

#[test]
fn conll2003_and_wikiann_read_and_validate_as_bio() {
    let Some(d) = data() else { return };
    let s = conll::read(&d.join("conll2003/train.txt"), Columns::default()).unwrap();
    assert_eq!(s.len(), 14041);
    conll::validate_file(&d.join("conll2003/train.txt"), &s, Scheme::Iob2).unwrap();
    let s = conll::read(&d.join("conll2003/test.txt"), Columns { token: 0, tag: 3 }).unwrap();
    assert_eq!(s.len(), 3453);
    let r = conll::read(
        &d.join("ru_wikiann/train.conllu"),
        Columns { token: 1, tag: 2 },
    )
    .unwrap();
    assert_eq!(r.len(), 20000);
    conll::validate_file(&d.join("ru_wikiann/train.conllu"), &r, Scheme::Iob2).unwrap();
    assert!(r.iter().any(|s| s
        .tokens
        .iter()
        .any(|t| t.chars().any(|c| ('а'..='я').contains(&c)))));
}

#[test]
fn multi30k_and_sst2_read() {
    let Some(d) = data() else { return };
    let p =
        corpus::read_parallel(&d.join("multi30k/train.en"), &d.join("multi30k/train.de")).unwrap();
    assert_eq!(p.len(), 29000);
    let e = corpus::read_parallel(&d.join("multi30k/train.en"), &d.join("multi30k/val.de"))
        .unwrap_err()
        .to_string();
    assert!(e.contains("line-aligned"));
    let l = corpus::read_labelled(&d.join("sst2/train.tsv")).unwrap();
    assert_eq!(l.len(), 67349);
    assert!(l.iter().all(|(_, y)| y == "0" || y == "1"));
}

/// decode(encode(x)) == x for byte-level BPE on every shared corpus.
#[test]
fn bpe_round_trips_on_every_corpus() {
    let Some(d) = data() else { return };
    let files = [
        "ptb/ptb.train.txt",
        "tinyshakespeare/input.txt",
        "multi30k/train.en",
        "multi30k/train.de",
        "sst2/train.tsv",
        "conll2003/train.txt",
        "ru_wikiann/train.conllu",
    ];
    for f in files {
        let text = rnnkit::text::read::read_text(&d.join(f)).unwrap();
        let sample: String = text.chars().take(300_000).collect();
        let t = Tokenizer::train(
            &[&sample],
            &TrainOptions {
                kind: Kind::Bpe,
                min_freq: 2,
                max_size: Some(2000),
            },
        )
        .unwrap();
        let ids = t.encode(&text);
        assert!(ids.len() < text.len(), "{f}: BPE should compress");
        assert!(t.decode(&ids) == text, "{f}: BPE round trip");
    }
}

/// Streaming (a line at a time) gives the vocabulary and ids of the in-memory path on PTB,
/// with the corpus size the literature quotes (929k training tokens with `<eos>`).
#[test]
fn streamed_ptb_matches_in_memory() {
    let Some(d) = data() else { return };
    let p = d.join("ptb/ptb.train.txt");
    let o = TrainOptions {
        kind: Kind::Ptb,
        min_freq: 1,
        max_size: None,
    };
    let streamed = Tokenizer::train_files(&[&p], &o).unwrap();
    let text = rnnkit::text::read::read_text(&p).unwrap();
    let mem = Tokenizer::train(&[&text], &o).unwrap();
    assert_eq!(streamed.vocab, mem.vocab);
    // PTB's 10k words (<unk> and <eos> among them) plus <pad> and <bos>.
    assert_eq!(streamed.len(), 10_002);
    let ids = streamed.encode_file(&p).unwrap();
    assert_eq!(ids.len(), 929_589);
    assert_eq!(ids, mem.encode(&text));
}
