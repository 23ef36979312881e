//! Tests of the stack: token projections against projecting embeddings, and the two
//! directions run at once against in turn.
use super::*;
use crate::engine::ops::with_threads;
use crate::engine::par::in_turn;
use rand::{Rng, SeedableRng};

/// Layer 0's input projections looked up by token give the outputs that projecting
/// the embedded tokens gives, across batches that share and batches that overflow
/// the table (which then starts over), for every cell kind, one direction or two.
#[test]
fn token_projections_match_projecting_embeddings() {
    for cell in [CellKind::Lstm, CellKind::Gru, CellKind::Rnn] {
        for bidirectional in [false, true] {
            let (t, b, i, h, v) = (4, 3, 5, 6, 11);
            let mut cfg = RnnConfig::new(cell, i, h, 2);
            cfg.bidirectional = bidirectional;
            let mut rng = rand::rngs::StdRng::seed_from_u64(1);
            let mut rnn = Rnn::new("rnn", cfg.clone(), Init::Pytorch, 1.0, &mut rng);
            let emb: Vec<f32> = (0..v * i).map(|_| rng.random_range(-1.0..1.0)).collect();
            let row_bytes = cfg.dirs() * cell.gates() * h * 4;
            for max_rows in [v, 7] {
                let mut proj = TokenProjections {
                    max_bytes: max_rows * row_bytes,
                    ..Default::default()
                };
                for _ in 0..4 {
                    let ids: Vec<u32> = (0..t * b).map(|_| rng.random_range(0..v as u32)).collect();
                    let x: Vec<f32> = ids
                        .iter()
                        .flat_map(|&w| emb[w as usize * i..][..i].iter().copied())
                        .collect();
                    let lengths = [4, 2, 3];
                    let (want, st, _) =
                        rnn.forward(&x, Pass::eval(t, b).lengths(Some(&lengths)), &mut rng);
                    let rows = proj.rows(&rnn, &ids, |w, row| {
                        row.copy_from_slice(&emb[w as usize * i..][..i])
                    });
                    // Past the cap it holds this batch's tokens only.
                    let distinct = ids.iter().collect::<std::collections::HashSet<_>>().len();
                    assert!(proj.index.len() <= max_rows.max(distinct));
                    let (got, st2) = rnn.forward_tokens(&proj, &rows, t, b, Some(&lengths));
                    let close =
                        |p: &[f32], q: &[f32]| p.iter().zip(q).all(|(a, b)| (a - b).abs() < 1e-6);
                    assert!(close(&got, &want) && close(&st2.h, &st.h), "{cell:?}");
                }
            }
        }
    }
}

/// A bidirectional stack gives the same outputs, states and gradients whether its
/// directions run at once (one thread each) or in turn (each split over two threads:
/// B·H·G ≥ 8192 for LSTM and GRU, so their time loops split units), for every cell
/// kind, with a residual second layer, LayerNorm and ragged lengths. Forward agrees
/// bit for bit here; gradients differ in the last bits (~6e-6), sums taken in
/// another order.
#[test]
fn directions_at_once_match_directions_in_turn() {
    for cell in [CellKind::Lstm, CellKind::Gru, CellKind::Rnn] {
        let (t, b, i, h) = (5, 64, 7, 48);
        let mut cfg = RnnConfig::new(cell, i, h, 2);
        (cfg.bidirectional, cfg.residual, cfg.norm) = (true, true, NormKind::Layer);
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let x: Vec<f32> = (0..t * b * i)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let dy: Vec<f32> = (0..t * b * 2 * h)
            .map(|_| rng.random_range(-1.0..1.0))
            .collect();
        let lengths: Vec<usize> = (0..b).map(|j| 1 + j % t).collect();
        let run = || {
            let mut rng = rand::rngs::StdRng::seed_from_u64(0);
            let mut rnn = Rnn::new("rnn", cfg.clone(), Init::Pytorch, 1.0, &mut rng);
            let (y, st, cache) =
                rnn.forward(&x, Pass::train(t, b).lengths(Some(&lengths)), &mut rng);
            let (dx, ds) = rnn.backward(cache, &dy, Some(&st));
            let mut grads = Vec::new();
            rnn.visit(&mut |p| grads.extend_from_slice(&p.g));
            (y, st, dx, ds, grads)
        };
        with_threads(2, || {
            assert!(directions_at_once() || rayon::current_num_threads() < 2);
            let split = crate::engine::par::loop_threads(b, h, cell.gates()) > 1;
            assert!(split || cell == CellKind::Rnn || rayon::current_num_threads() < 2);
            let (a, b) = (run(), in_turn(run));
            let pairs = [
                ("y", &a.0, &b.0),
                ("h", &a.1.h, &b.1.h),
                ("c", &a.1.c, &b.1.c),
                ("dx", &a.2, &b.2),
                ("dh", &a.3.h, &b.3.h),
                ("dc", &a.3.c, &b.3.c),
                ("grads", &a.4, &b.4),
            ];
            for (what, u, v) in pairs {
                assert_eq!(u.len(), v.len());
                let err = u
                    .iter()
                    .zip(v)
                    .map(|(p, q)| (p - q).abs() / (1.0 + q.abs()));
                let err = err.fold(0f32, f32::max);
                assert!(err < 1e-4, "{cell:?} {what}: {err}");
            }
        });
    }
}
