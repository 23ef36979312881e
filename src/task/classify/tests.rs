//! Unit tests of the classifier: pooling, gradients, weights, checkpoints.

use super::*;
use crate::engine::cell::CellKind;
use crate::engine::init::Init;
use crate::engine::param::{Module, Param};
use crate::engine::rnn::{RnnConfig, TokenProjections};
use rand::SeedableRng;

struct H(Classifier, Vec<Vec<u32>>, Vec<u32>, Vec<f32>);
impl Module for H {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        self.0.visit(f)
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        self.0.visit_mut(f)
    }
}

fn tiny(pooling: Pooling, cell: CellKind, layers: usize) -> H {
    let mut rnn = RnnConfig::new(cell, 4, 3, layers);
    rnn.bidirectional = true;
    let cfg = ClsConfig {
        vocab: 9,
        embed: 4,
        rnn,
        dropout: 0.0,
        pooling,
        classes: 3,
        init: Init::Pytorch,
    };
    let m = Classifier::new(cfg, &mut rand::rngs::StdRng::seed_from_u64(2));
    H(
        m,
        vec![vec![1, 5, 2, 8], vec![3], vec![4, 4, 7]],
        vec![2, 0, 1],
        vec![1.0, 2.5, 0.5],
    )
}

/// Every pooling, weighted loss, against finite differences on a padded batch.
#[test]
fn classifier_gradients_match_finite_differences() {
    for (pooling, cell, layers) in [
        (Pooling::Last, CellKind::Lstm, 2),
        (Pooling::Max, CellKind::Gru, 1),
        (Pooling::Mean, CellKind::Lstm, 1),
        (Pooling::Attention, CellKind::Gru, 2),
    ] {
        let mut h = tiny(pooling, cell, layers);
        crate::engine::gradcheck::check(&mut h, |h: &mut H, backward| {
            let refs: Vec<&[u32]> = h.1.iter().map(|s| &s[..]).collect();
            let mut rng = rand::rngs::StdRng::seed_from_u64(0);
            if backward {
                let (l, t) = h.0.train_batch(&refs, &h.2, Some(&h.3), 1.0, &mut rng);
                l / t
            } else {
                let p = h.0.probs(&refs, None);
                let (mut l, mut t) = (0.0, 0.0);
                for (k, &y) in h.2.iter().enumerate() {
                    let w = h.3[y as usize] as f64;
                    l -= w * (p[k * 3 + y as usize] as f64).ln();
                    t += w;
                }
                l / t
            }
        });
    }
}

/// A sentence gets the same probabilities alone and in a padded batch, and with its
/// input projections looked up from earlier batches' ([`TokenProjections`]) or made
/// afresh.
#[test]
fn padding_and_projection_reuse_never_change_a_result() {
    for (pooling, cell) in [
        (Pooling::Last, CellKind::Lstm),
        (Pooling::Max, CellKind::Gru),
        (Pooling::Mean, CellKind::Lstm),
        (Pooling::Attention, CellKind::Rnn),
    ] {
        let mut h = tiny(pooling, cell, 2);
        let refs: Vec<&[u32]> = h.1.iter().map(|s| &s[..]).collect();
        let together = h.0.probs(&refs, None);
        let mut proj = TokenProjections::default();
        for (k, s) in h.1.clone().iter().enumerate() {
            let alone = h.0.probs(&[&s[..]], None);
            let looked_up = h.0.probs(&[&s[..]], Some(&mut proj));
            for ((a, l), b) in alone.iter().zip(&looked_up).zip(&together[k * 3..]) {
                assert!((a - b).abs() < 1e-6, "{pooling:?}");
                assert!((l - b).abs() < 1e-6, "{pooling:?} with projections");
            }
        }
        let again = h.0.probs(&refs, Some(&mut proj));
        assert!(together
            .iter()
            .zip(&again)
            .all(|(a, b)| (a - b).abs() < 1e-6));
    }
}

#[test]
fn scores_with_confusion() {
    let l: Vec<String> = ["neg", "pos", "neu"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let s = scores(&l, &[0, 0, 1, 1, 2], &[0, 1, 1, 1, 1]);
    assert!((s.accuracy - 0.6).abs() < 1e-12);
    assert_eq!(
        s.confusion,
        vec![vec![1, 1, 0], vec![0, 2, 0], vec![0, 1, 0]]
    );
    assert_eq!(s.per_class["neu"].f1, 0.0);
    let f_pos = 2.0 * 0.5 * 1.0 / 1.5;
    assert!((s.macro_f1 - (2.0 / 3.0 + f_pos) / 3.0).abs() < 1e-12);
}
