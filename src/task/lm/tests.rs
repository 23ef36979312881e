//! Unit tests of the language model: inits, windows, generation, checkpoints.

use super::*;
use crate::engine::cell::CellKind;
use crate::engine::dropout::DropoutKind;
use crate::engine::init::Init;
use crate::engine::norm::NormKind;
use crate::engine::param::Param;
use crate::engine::rnn::RnnConfig;
use rand::SeedableRng;

/// torch-default draws nn.Embedding's N(0, 1) and nn.Linear's U(±1/√H); word-lm U(±0.1).
#[test]
fn embedding_and_decoder_inits() {
    let cfg = |embed_init| LmConfig {
        vocab: 50,
        embed: 64,
        rnn: RnnConfig::new(CellKind::Lstm, 64, 16, 1),
        dropout: 0.0,
        dropout_kind: DropoutKind::Standard,
        tied: false,
        init: Init::Pytorch,
        embed_init,
    };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let m = LanguageModel::new(cfg(EmbedInit::TorchDefault), &mut rng);
    let e = &m.enc.embedding.weight.w;
    let var = e.iter().map(|v| v * v).sum::<f32>() / e.len() as f32;
    assert!((var - 1.0).abs() < 0.1, "embedding variance {var}");
    let bound = |p: &Param| p.w.iter().fold(0f32, |a, v| a.max(v.abs()));
    let (dw, db) = (
        bound(m.decoder_weight.as_ref().unwrap()),
        bound(&m.decoder_bias),
    );
    assert!(
        dw <= 0.25 && dw > 0.2 && db <= 0.25 && db > 0.1,
        "{dw} {db}"
    );
    let m = LanguageModel::new(cfg(EmbedInit::WordLm), &mut rng);
    assert!(bound(&m.enc.embedding.weight) <= 0.1 && bound(&m.decoder_bias) == 0.0);
}

/// The batch-1 decoder gives the logits of the full forward pass, step by step.
#[test]
fn stepper_matches_sequence_forward() {
    for (cell, norm, residual, cell_norm) in [
        (CellKind::Lstm, NormKind::None, false, false),
        (CellKind::Gru, NormKind::Layer, true, false),
        (CellKind::Rnn, NormKind::None, true, false),
        (CellKind::Lstm, NormKind::Batch, true, true),
    ] {
        let mut rnn = RnnConfig::new(cell, 8, 8, 2);
        rnn.norm = norm;
        rnn.residual = residual;
        rnn.cell_norm = cell_norm;
        let cfg = LmConfig {
            vocab: 11,
            embed: 8,
            rnn,
            dropout: 0.0,
            dropout_kind: DropoutKind::Standard,
            tied: false,
            init: Init::Pytorch,
            embed_init: EmbedInit::TorchDefault,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let mut m = LanguageModel::new(cfg, &mut rng);
        let ids = [3u32, 7, 1, 10, 0];
        let (want, _) = m.logits(&ids, 5, 1, &m.enc.rnn.zero_state(1), &mut rng);
        let mut st = m.enc.rnn.zero_state(1);
        let mut s = Stepper::new(&m);
        for (t, &id) in ids.iter().enumerate() {
            let got = s.step(&m, &[id], &mut st);
            for (a, b) in got.iter().zip(&want[t * 11..(t + 1) * 11]) {
                assert!((a - b).abs() < 1e-5, "{cell:?} step {t}: {a} vs {b}");
            }
        }
    }
}

/// The whole LM window (embedding → 2-layer LSTM → decoder with its bias folded into the
/// loss pass), untied and tied, against finite differences of the evaluation loss.
#[test]
fn language_model_window() {
    use crate::engine::gradcheck::check;
    use rand::rngs::StdRng;
    for tied in [false, true] {
        let cfg = LmConfig {
            vocab: 9,
            embed: 6,
            rnn: RnnConfig::new(CellKind::Lstm, 6, 6, 2),
            dropout: 0.0,
            dropout_kind: DropoutKind::Standard,
            tied,
            init: Init::Uniform { a: 0.5 },
            embed_init: Default::default(),
        };
        let mut rng = StdRng::seed_from_u64(7);
        let mut m = LanguageModel::new(cfg, &mut rng);
        let (l, b) = (4, 3);
        let x: Vec<u32> = (0..l * b).map(|i| (i * 5 % 9) as u32).collect();
        let y: Vec<u32> = (0..l * b).map(|i| (i * 7 % 9) as u32).collect();
        let state = m.enc.rnn.zero_state(b);
        check(&mut m, |m: &mut LanguageModel, backward| {
            let mut rng = StdRng::seed_from_u64(0);
            let out = if backward {
                m.train_window(&x, &y, b, &state, 1.0, &mut rng)
            } else {
                m.eval_window(&x, &y, l, b, &state, &mut rng)
            };
            out.ce.sum / out.ce.count as f64
        });
    }
}
