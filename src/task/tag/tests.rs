//! Unit tests of the tagger: features, CRF constraints, gradients, checkpoints.

use super::*;
use crate::engine::cell::CellKind;
use crate::engine::init::Init;
use crate::engine::param::{Module, Param};
use crate::engine::rnn::RnnConfig;
use crate::text::conll::Scheme;
use rand::SeedableRng;

fn tiny(output: Output, char_dim: usize) -> (Tagger, Vec<Encoded>) {
    let mut rnn = RnnConfig::new(CellKind::Lstm, 0, 5, 1);
    rnn.bidirectional = true;
    let mut cfg = TagConfig {
        words: 7,
        word_dim: 4,
        chars: 6,
        char_dim,
        char_hidden: 3,
        casing_dim: 2,
        rnn,
        dropout: 0.0,
        labels: 5,
        output,
        scheme: Scheme::Bioes,
        constrained: false,
        init: Init::Pytorch,
        types: None,
    };
    cfg.rnn.input = cfg.token_dim();
    let mut rng = rand::rngs::StdRng::seed_from_u64(5);
    let m = Tagger::new(cfg, &mut rng);
    let sent = |n: usize, s: u32| Encoded {
        words: (0..n as u32).map(|i| (i * 3 + s) % 7).collect(),
        chars: (0..n as u32)
            .map(|i| (0..(i % 3 + 1)).map(|c| (c + i + s) % 6).collect())
            .collect(),
        casing: (0..n as u32).map(|i| (i + s) % 8).collect(),
        labels: (0..n as u32).map(|i| (i * 2 + s) % 5).collect(),
    };
    (m, vec![sent(4, 1), sent(2, 2), sent(3, 0)])
}

struct H(Tagger, Vec<Encoded>);
impl Module for H {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        self.0.visit(f)
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        self.0.visit_mut(f)
    }
}

/// The whole tagger (characters, casing, BiLSTM, output layer, CRF or softmax) against
/// finite differences, on a padded batch.
#[test]
fn tagger_gradients_match_finite_differences() {
    for (output, char_dim) in [(Output::Crf, 3), (Output::Softmax, 3), (Output::Crf, 0)] {
        let (m, sents) = tiny(output, char_dim);
        let mut h = H(m, sents);
        crate::engine::gradcheck::check(&mut h, |h: &mut H, backward| {
            let refs: Vec<&Encoded> = h.1.iter().collect();
            let mut rng = rand::rngs::StdRng::seed_from_u64(0);
            if backward {
                h.0.train_batch(&refs, 1.0, &mut rng) / refs.len() as f64
            } else {
                h.0.predict(&refs).1.unwrap() / refs.len() as f64
            }
        });
    }
}

/// A sentence gets the same tags and loss alone as in a padded batch, and as with the
/// file's character table and input projections.
#[test]
fn padding_never_changes_a_result() {
    for output in [Output::Crf, Output::Softmax] {
        let (mut m, sents) = tiny(output, 3);
        let refs: Vec<&Encoded> = sents.iter().collect();
        let (together, loss) = m.predict(&refs);
        let mut alone_loss = 0.0;
        for (s, want) in sents.iter().zip(&together) {
            let (p, l) = m.predict(&[s]);
            assert_eq!(&p[0], want);
            alone_loss += l.unwrap();
        }
        assert!((alone_loss - loss.unwrap()).abs() < 1e-4);
        // The whole-file character table gives the same tags and loss as computing
        // the characters batch by batch.
        let (cached, cached_loss) = tag_all(&mut m, &sents, 2);
        assert_eq!(cached, together);
        assert!((cached_loss.unwrap() - loss.unwrap()).abs() < 1e-4);
        assert!(m.char_table(&sents).is_some());
        // So do layer 0's input projections looked up by token, batch after batch.
        let mut tables = FileTables {
            chars: m.char_table(&sents),
            ..Default::default()
        };
        for (s, want) in sents.iter().zip(&together) {
            assert_eq!(&m.predict_with(&[s], Some(&mut tables)).0[0], want);
        }
        assert!(!tables.proj.is_empty(), "projections were looked up");
    }
}

#[test]
fn bioes_constraints_forbid_what_the_scheme_forbids() {
    let labels: Vec<String> = ["O", "B-PER", "I-PER", "E-PER", "S-PER", "B-LOC", "E-LOC"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let a = allowed_moves(&labels, Scheme::Bioes);
    let k = labels.len();
    let ok = |f: usize, t: usize| a.trans[f * k + t];
    assert!(ok(1, 2) && ok(2, 3) && ok(1, 3) && ok(3, 0) && ok(4, 5) && ok(0, 4));
    assert!(!ok(0, 2) && !ok(1, 6) && !ok(1, 0) && !ok(3, 2) && !ok(5, 3));
    assert!(a.start[0] && a.start[1] && !a.start[2] && !a.start[3]);
    assert!(a.end[0] && a.end[3] && a.end[4] && !a.end[1] && !a.end[2]);
    let b = allowed_moves(&labels[..3], Scheme::Iob2);
    assert!(!b.start[2] && b.trans[3 + 2] && !b.trans[2]);
}

#[test]
fn casing_classes() {
    assert_eq!(
        ["1996", "3-2", "eu", "EU", "Peter", "a1B", "iPhone"].map(casing),
        [1, 2, 3, 4, 5, 6, 7]
    );
}
