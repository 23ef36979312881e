//! Tests of the trainer: state round trips, selection, patience, resuming.

use super::*;
use crate::engine::norm::LayerNorm;
use crate::engine::optim::OptimKind;
use crate::engine::param::Module;

/// The train state's f64 sums come back from its JSON metadata bit for bit, so a resumed
/// run logs what an uninterrupted one logs (serde_json's `float_roundtrip` feature; its
/// default parser may be an ulp off).
#[test]
fn stats_round_trip_through_json_bit_for_bit() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    for _ in 0..50_000 {
        let s = Stats {
            loss_sum: rng.random::<f64>() * 10f64.powi(rng.random_range(-3..8)),
            count: 1,
        };
        let text = serde_json::to_string(&serde_json::json!({ "progress": s })).unwrap();
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let back: Stats = serde_json::from_value(v["progress"].clone()).unwrap();
        assert_eq!(back.loss_sum.to_bits(), s.loss_sum.to_bits(), "{text}");
    }
}

/// A task whose validation reports a fixed `acc` per epoch, selected higher-is-better.
struct Toy {
    w: LayerNorm,
    accs: Vec<f64>,
    epoch: usize,
    seeds: Vec<u64>,
    saved_at: Vec<usize>,
}

impl Task for Toy {
    fn name(&self) -> &'static str {
        "toy"
    }
    fn unit(&self) -> &'static str {
        "sentence"
    }
    fn model(&mut self) -> &mut dyn Module {
        &mut self.w
    }
    fn steps_per_epoch(&self) -> usize {
        2
    }
    fn begin_epoch(&mut self, epoch: usize, seed: u64) {
        self.epoch = epoch;
        self.seeds.push(seed);
    }
    fn train_step(&mut self, _i: usize, _rng: &mut dyn rand::RngCore) -> Stats {
        self.w.weight.g[0] = 1.0;
        Stats {
            loss_sum: 2.0,
            count: 4,
        }
    }
    fn validate(&mut self) -> Option<Eval> {
        Some(Eval {
            loss: 1.0,
            metrics: vec![("acc".into(), self.accs[self.epoch - 1])],
        })
    }
    fn selection(&self) -> Selection {
        Selection {
            metric: "acc",
            higher_is_better: true,
        }
    }
    fn save(&mut self, _path: &Path) -> Result<()> {
        self.saved_at.push(self.epoch);
        Ok(())
    }
}

/// The best checkpoint follows the task's metric (higher is better here), early stopping
/// counts epochs without improvement, every epoch gets its own shuffle seed, and the
/// log uses the task's names.
#[test]
fn selection_metric_patience_and_task_names() {
    let out = std::env::temp_dir().join(format!("rnnkit-train-toy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&out);
    let mut task = Toy {
        w: LayerNorm::new("w", 1),
        accs: vec![0.5, 0.7, 0.6, 0.7, 0.65, 0.9, 0.95],
        epoch: 0,
        seeds: Vec::new(),
        saved_at: Vec::new(),
    };
    let cfg = TrainConfig {
        epochs: 7,
        lr: 0.1,
        optim: OptimKind::Sgd { momentum: 0.0 },
        clip: 0.0,
        seed: 3,
        log_every: 1,
        patience: Some(3),
        ..TrainConfig::default()
    };
    let s = train(&mut task, &cfg, &out, &serde_json::json!({}), None, &mut []).unwrap();
    // 0.7 at epoch 2 is not beaten by 0.6, 0.7 (equal), 0.65: stop after epoch 5.
    assert_eq!(task.saved_at, vec![1, 2]);
    assert_eq!(s.progress.stopped.as_deref(), Some("patience"));
    assert_eq!(s.progress.epoch, 6);
    assert_eq!(s.best.unwrap().get("acc"), Some(0.7));
    assert_eq!(task.seeds.len(), 5);
    let mut uniq = task.seeds.clone();
    uniq.sort();
    uniq.dedup();
    assert_eq!(uniq.len(), 5, "a seed per epoch");
    assert_eq!(task.seeds[0], epoch_seed(3, 1));
    let log = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert!(log.contains("\"valid_acc\":0.7") && log.contains("\"sentences_per_s\""));
    assert!(!log.contains("ppl") && !log.contains("tokens"), "{log}");
    let _ = std::fs::remove_dir_all(&out);
}
