//! Unit tests of the translator: batches, gradients, attention, decoding.

#[test]
fn top_k_finds_the_largest_in_order_ties_by_index() {
    let row = [0.5, -1.0, 2.0, 0.5, f32::NEG_INFINITY, 2.0, 1.0];
    assert_eq!(top_k(&row, 3), vec![2, 5, 6]);
    assert_eq!(top_k(&row, 5), vec![2, 5, 6, 0, 3]);
    assert_eq!(top_k(&row, 20).len(), 7);
    assert_eq!(top_k(&row, 1), vec![argmax(&row, None)]);
    assert!(top_k(&row, 0).is_empty());
    // Against a full sort on pseudo-random rows.
    let mut x = 12345u32;
    for _ in 0..50 {
        let row: Vec<f32> = (0..300)
            .map(|_| {
                x = x.wrapping_mul(1664525).wrapping_add(1013904223);
                (x >> 20) as f32 / 64.0
            })
            .collect();
        let mut idx: Vec<u32> = (0..300).collect();
        idx.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
        assert_eq!(top_k(&row, 10), idx[..10].to_vec());
    }
}

use super::decode::*;
use super::model::*;
use crate::engine::attention::Score;
use crate::engine::cell::CellKind;
use crate::engine::init::Init;
use crate::engine::rnn::RnnConfig;
use rand::SeedableRng;

fn tiny(att: Option<Score>, cell: CellKind) -> Seq2Seq {
    let mut enc = RnnConfig::new(CellKind::Gru, 4, 3, 1);
    enc.bidirectional = true;
    let cfg = Seq2SeqConfig {
        src_vocab: 9,
        tgt_vocab: 8,
        embed: 4,
        encoder: enc,
        decoder_cell: cell,
        decoder_hidden: 5,
        attention: att,
        attn_dim: 4,
        dropout: 0.0,
        init: Init::Pytorch,
    };
    Seq2Seq::new(cfg, &mut rand::rngs::StdRng::seed_from_u64(4)).unwrap()
}

fn batch() -> Batch {
    let sp = Specials {
        pad: 0,
        bos: 2,
        eos: 3,
    };
    let (a, b, c): (&[u32], &[u32], &[u32]) = (&[4, 5, 6, 7], &[8], &[5, 5, 4]);
    Batch::new(&[(a, &[4, 6, 7]), (b, &[5]), (c, &[7, 4])], sp)
}

/// A beam of 1 is greedy decoding: the same tokens and log-probabilities, for every
/// attention kind; wider beams find hypotheses at least as probable (unnormalised).
#[test]
fn beam_of_one_is_greedy() {
    let sp = Specials {
        pad: 0,
        bos: 2,
        eos: 3,
    };
    let srcs: Vec<&[u32]> = vec![&[4, 5, 6, 7], &[8], &[5, 5, 4], &[]];
    for att in [
        Some(Score::Additive),
        Some(Score::ScaledDot),
        Some(Score::Dot),
        None,
    ] {
        let mut m = tiny(att, CellKind::Gru);
        let d = Decoding {
            beam: 1,
            alpha: 0.0,
            attention: true,
            ..Decoding::default()
        };
        let g = m.greedy(&srcs, &d, sp).unwrap();
        let b = m.beam_search(&srcs, &d, sp).unwrap();
        for (x, y) in g.iter().zip(&b) {
            assert_eq!(x.tokens, y[0].tokens, "{att:?}");
            assert!((x.log_prob - y[0].log_prob).abs() < 1e-5);
            assert_eq!(x.attention.len(), y[0].attention.len());
        }
        let wide = m
            .beam_search(
                &srcs,
                &Decoding {
                    beam: 4,
                    alpha: 0.0,
                    n_best: 3,
                    ..d
                },
                sp,
            )
            .unwrap();
        for (x, y) in g.iter().zip(&wide) {
            assert!(
                y[0].log_prob >= x.log_prob - 1e-5,
                "{att:?}: beam 4 worse than greedy"
            );
            assert!(y.len() <= 3 && y.windows(2).all(|w| w[0].score >= w[1].score));
        }
    }
}

/// A minimum length holds <eos> back, greedy and beam, and the cap still ends.
#[test]
fn min_len_holds_eos_back() {
    let sp = Specials {
        pad: 0,
        bos: 2,
        eos: 3,
    };
    let srcs: Vec<&[u32]> = vec![&[4, 5, 6], &[8]];
    let mut m = tiny(Some(Score::Additive), CellKind::Gru);
    for beam in [1, 3] {
        let d = Decoding {
            beam,
            max_len_a: 0.0,
            max_len_b: 7,
            min_len: 5,
            ..Decoding::default()
        };
        for h in m.beam_search(&srcs, &d, sp).unwrap() {
            let n = h[0].tokens.len();
            assert!((5..=7).contains(&n), "beam {beam}: {n} tokens");
            assert!(!h[0].tokens.contains(&sp.eos));
        }
        let d = Decoding { min_len: 7, ..d };
        for h in m.greedy(&srcs, &d, sp).unwrap() {
            assert_eq!(h.tokens.len(), 7);
        }
    }
}

/// A sentence translates the same alone and in a padded batch, greedy and beam.
#[test]
fn padding_never_changes_a_translation() {
    let sp = Specials {
        pad: 0,
        bos: 2,
        eos: 3,
    };
    let srcs: Vec<&[u32]> = vec![&[4, 5, 6, 7, 8, 4], &[8], &[5, 5, 4]];
    for att in [Some(Score::Additive), Some(Score::ScaledGeneral), None] {
        let mut m = tiny(att, CellKind::Lstm);
        for beam in [1, 3] {
            let d = Decoding {
                beam,
                max_len_b: 6,
                ..Decoding::default()
            };
            let together = m.beam_search(&srcs, &d, sp).unwrap();
            for (x, want) in srcs.iter().zip(&together) {
                let alone = m.beam_search(&[*x], &d, sp).unwrap();
                assert_eq!(alone[0][0].tokens, want[0].tokens, "{att:?} beam {beam}");
                assert!((alone[0][0].log_prob - want[0].log_prob).abs() < 1e-4);
            }
        }
    }
}

/// Encoder, bridge, key projection, attention (each kind, and none), decoder steps
/// and the deep output layer against finite differences, with label smoothing, on a
/// padded batch.
#[test]
fn seq2seq_gradients_match_finite_differences() {
    for (att, cell) in [
        (Some(Score::Additive), CellKind::Gru),
        (Some(Score::ScaledDot), CellKind::Lstm),
        (Some(Score::General), CellKind::Gru),
        (None, CellKind::Lstm),
    ] {
        let mut m = tiny(att, cell);
        let bt = batch();
        crate::engine::gradcheck::check(&mut m, |m: &mut Seq2Seq, backward| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(0);
            let (l, n) = m.loss(&bt, 0.1, backward, &mut rng).unwrap();
            l / n as f64
        });
    }
}

/// Case: a user's own files keep it, the multi30k recipe lowercases (its anchor does), and
/// the two flags override either way.
#[cfg(feature = "options")]
#[test]
fn case_is_kept_for_own_files_and_lowercased_for_multi30k() {
    use crate::task::options::{parse, TrainOptions};
    use crate::task::translate::options::TrainArgs;
    let lower = |argv: &[&str]| -> crate::error::Result<bool> {
        let argv: Vec<String> = argv.iter().map(|s| s.to_string()).collect();
        let a: TrainArgs = parse("translate train", &argv)?;
        let mut r = a.recipe();
        a.apply(&mut r)?;
        Ok(r.data.lowercase)
    };
    let own = ["--train", "a.de", "a.en", "--out", "x"];
    assert!(!lower(&own).unwrap());
    assert!(lower(&[&own[..], &["--lowercase"]].concat()).unwrap());
    assert!(lower(&["--data", "multi30k", "--out", "x"]).unwrap());
    assert!(!lower(&["--data", "multi30k", "--keep-case", "--out", "x"]).unwrap());
    assert!(lower(&["--data", "multi30k", "--keep-case", "--lowercase"]).is_err());
    // --attention names: dot and general are scaled; the unscaled ones by name.
    let att = |name: &str| {
        let a: TrainArgs = parse(
            "translate train",
            &["--attention".to_string(), name.to_string()],
        )
        .unwrap();
        let mut r = a.recipe();
        a.apply(&mut r).map(|_| r.model.attention)
    };
    assert_eq!(att("dot").unwrap(), Some(Score::ScaledDot));
    assert_eq!(att("general-unscaled").unwrap(), Some(Score::General));
    assert_eq!(att("none").unwrap(), None);
    assert!(att("cosine").is_err());
}

/// `--replace-unk` on a case whose answer is known: the target vocabulary lacks "zebra",
/// the source word attended most at that step is copied, with the source's own case even
/// though the model lowercases; without replacement the `<unk>` stays.
#[test]
fn replace_unk_copies_the_most_attended_source_word() {
    use super::recipe::TrRun;
    let mut r = TrRun::recipe();
    (r.data.min_freq, r.data.lowercase) = (1, true);
    (
        r.model.embed,
        r.model.encoder.hidden,
        r.model.decoder_hidden,
        r.model.attn_dim,
    ) = (4, 3, 4, 3);
    r.model.encoder.input = 4;
    let pair = |s: &str, t: &str| (s.to_string(), t.to_string());
    let corpus = [
        vec![
            pair("ein hund läuft", "a dog runs"),
            pair("ein mann", "a man"),
        ],
        Vec::new(),
        Vec::new(),
    ];
    let task = r.build(&corpus, &mut |_| {}).unwrap();
    let id = |w: &str| task.tgt_tok.id(w).unwrap();
    let unk = task.tgt_tok.unk();
    let ids = [id("a"), unk, id("runs")];
    // Rows over the 3 source words (+ the <eos> row decoding keeps): step 1 looks at "Zebra".
    let rows = vec![
        vec![0.8, 0.1, 0.1],
        vec![0.1, 0.7, 0.2],
        vec![0.1, 0.2, 0.7],
        vec![0.3, 0.3, 0.4],
    ];
    let (pieces, text) = task.render(&ids, Some(("Ein Zebra läuft", &rows)));
    assert_eq!(pieces, ["a", "Zebra", "runs"]);
    assert_eq!(text, "a Zebra runs");
    assert_eq!(task.render(&ids, None).1, "a <unk> runs");
    assert_eq!(task.detok(&ids), "a <unk> runs");
    // A row missing (a hypothesis without attention) leaves the <unk>.
    assert_eq!(
        task.render(&ids, Some(("Ein Zebra läuft", &rows[..1]))).1,
        "a <unk> runs"
    );
}
