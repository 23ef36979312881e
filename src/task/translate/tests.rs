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
    for att in [Some(Score::Additive), Some(Score::Dot), None] {
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
    for att in [Some(Score::Additive), Some(Score::General), None] {
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
        (Some(Score::Dot), CellKind::Lstm),
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
