//! Optimizers (SGD with momentum, Adam, AdamW), global-norm clipping and learning-rate
//! schedules, with PyTorch's update rules so recipes transfer unchanged.

use super::param::{Module, Param};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimKind {
    Sgd {
        momentum: f32,
    },
    Adam {
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
    },
    /// Decoupled weight decay (Loshchilov & Hutter).
    AdamW {
        beta1: f32,
        beta2: f32,
        eps: f32,
        weight_decay: f32,
    },
}

/// Optimizer state, one slot per parameter in the model's visit order. Serialisable so a
/// resumed run continues bit-identically.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Optimizer {
    pub kind: OptimKind,
    pub lr: f32,
    pub step: u64,
    m: Vec<Vec<f32>>,
    v: Vec<Vec<f32>>,
}

impl Optimizer {
    pub fn new(kind: OptimKind, lr: f32) -> Optimizer {
        Optimizer {
            kind,
            lr,
            step: 0,
            m: Vec::new(),
            v: Vec::new(),
        }
    }

    /// First and second moments per parameter (empty where unused), for saving.
    pub fn moments(&self) -> Vec<(Vec<f32>, Vec<f32>)> {
        self.m.iter().cloned().zip(self.v.iter().cloned()).collect()
    }

    /// Puts back what [`Optimizer::moments`] returned, with the step count and lr.
    pub fn restore(&mut self, step: u64, lr: f32, moments: Vec<(Vec<f32>, Vec<f32>)>) {
        self.step = step;
        self.lr = lr;
        (self.m, self.v) = moments.into_iter().unzip();
    }

    /// One step over the accumulated gradients: clips them to a global L2 norm of
    /// `max_norm` (0: no clip; torch.nn.utils.clip_grad_norm_'s rule), updates every
    /// unfrozen parameter, and leaves every gradient zero for the next accumulation (as
    /// `optimizer.step(); optimizer.zero_grad()`). Returns the norm before clipping.
    ///
    /// The clip factor is applied as each gradient is read and the zeroing happens in the
    /// same sweep: after the norm, the gradients are read once instead of three times
    /// (scale, update, zero), which is ~3% of a small word LM's step. A non-finite norm
    /// updates nothing (and bumps no version): the gradients are dropped.
    pub fn step(&mut self, model: &mut dyn Module, max_norm: f32) -> f32 {
        let mut sq = 0f64;
        model.visit(&mut |p| {
            if !p.frozen {
                sq += sum_squares(&p.g);
            }
        });
        let norm = sq.sqrt() as f32;
        if !norm.is_finite() {
            // A NaN or infinite gradient would poison every weight and moment it touched:
            // the step is dropped whole, and the caller sees the norm.
            model.zero_grad();
            return norm;
        }
        let scale = if max_norm > 0.0 && norm > max_norm {
            max_norm / (norm + 1e-6)
        } else {
            1.0
        };
        self.step += 1;
        let (lr, t) = (self.lr, self.step as i32);
        let kind = self.kind;
        let (m, v) = (&mut self.m, &mut self.v);
        let mut k = 0;
        model.visit_mut(&mut |p: &mut Param| {
            if m.len() <= k {
                m.push(Vec::new());
                v.push(Vec::new());
            }
            if p.frozen {
                p.zero_grad();
            } else {
                update_one(kind, lr, t, scale, p, &mut m[k], &mut v[k]);
                p.version += 1;
            }
            k += 1;
        });
        norm
    }
}

/// Elements per parallel task in the updates: large enough to amortise scheduling, and
/// fixed, so that results do not depend on the thread count.
const CHUNK: usize = 1 << 14;

/// Updates `p.w` from `scale · p.g` and zeroes `p.g`.
fn update_one(
    kind: OptimKind,
    lr: f32,
    t: i32,
    scale: f32,
    p: &mut Param,
    m: &mut Vec<f32>,
    v: &mut Vec<f32>,
) {
    // Every update is elementwise, so splitting it over threads changes no result.
    let n = p.w.len();
    let (w, g) = (p.w.par_chunks_mut(CHUNK), p.g.par_chunks_mut(CHUNK));
    // The clipped gradient rounded to f32 as PyTorch's in-place `g.mul_(coef)` leaves it.
    let take = move |g: &mut f32| std::mem::take(g) * scale;
    match kind {
        OptimKind::Sgd { momentum } => {
            if momentum == 0.0 {
                w.zip(g).for_each(|(w, g)| {
                    w.iter_mut().zip(g).for_each(|(w, g)| *w -= lr * take(g));
                });
            } else {
                // PyTorch seeds the buffer with the first gradient.
                let first = m.is_empty();
                if first {
                    *m = vec![0.0; n];
                }
                w.zip(g)
                    .zip(m.par_chunks_mut(CHUNK))
                    .for_each(|((w, g), m)| {
                        for ((w, g), b) in w.iter_mut().zip(g).zip(m) {
                            let g = take(g);
                            *b = if first { g } else { momentum * *b + g };
                            *w -= lr * *b;
                        }
                    });
            }
        }
        OptimKind::Adam {
            beta1,
            beta2,
            eps,
            weight_decay,
        }
        | OptimKind::AdamW {
            beta1,
            beta2,
            eps,
            weight_decay,
        } => {
            let step = Adam {
                beta1,
                beta2,
                eps,
                weight_decay,
                decoupled: matches!(kind, OptimKind::AdamW { .. }),
                lr,
                step: lr / (1.0 - beta1.powi(t)),
                bc2: 1.0 - beta2.powi(t),
                scale,
            };
            if m.is_empty() {
                *m = vec![0.0; n];
                *v = vec![0.0; n];
            }
            w.zip(g)
                .zip(m.par_chunks_mut(CHUNK))
                .zip(v.par_chunks_mut(CHUNK))
                .for_each(|(((w, g), m), v)| adam_chunk(w, g, m, v, step));
        }
    }
}

/// One Adam step's constants (bias corrections folded in).
#[derive(Clone, Copy)]
struct Adam {
    beta1: f32,
    beta2: f32,
    eps: f32,
    weight_decay: f32,
    decoupled: bool,
    lr: f32,
    /// lr / (1 − β1^t).
    step: f32,
    /// 1 − β2^t.
    bc2: f32,
    scale: f32,
}

// The update is memory-bound over every parameter each step (a fifth of a tagger's step
// time at baseline SSE2); wider vectors for the sqrt and the division pay. No result
// changes: Rust never fuses a multiply and an add on its own, and sqrt and division are
// exact in every width.
crate::multiversion!(fn adam_chunk(w: &mut [f32], g: &mut [f32], m: &mut [f32], v: &mut [f32], a: Adam) => adam_chunk_body);

#[inline(always)]
fn adam_chunk_body(w: &mut [f32], g: &mut [f32], m: &mut [f32], v: &mut [f32], a: Adam) {
    let n = w.len();
    let (g, m, v) = (&mut g[..n], &mut m[..n], &mut v[..n]);
    for j in 0..n {
        // The clipped gradient rounded to f32 as PyTorch's in-place `g.mul_(coef)` leaves it.
        let mut gj = std::mem::take(&mut g[j]) * a.scale;
        if a.decoupled {
            w[j] *= 1.0 - a.lr * a.weight_decay;
        } else if a.weight_decay != 0.0 {
            gj += a.weight_decay * w[j];
        }
        m[j] = a.beta1 * m[j] + (1.0 - a.beta1) * gj;
        v[j] = a.beta2 * v[j] + (1.0 - a.beta2) * gj * gj;
        w[j] -= a.step * m[j] / ((v[j] / a.bc2).sqrt() + a.eps);
    }
}

/// Σ x² in f64. Blocks of [`CHUNK`] are summed in parallel, each with 16 f32 lanes (so it
/// vectorises) folded into f64, and the block sums are added in order: the result is the
/// same for any thread count.
fn sum_squares(x: &[f32]) -> f64 {
    x.par_chunks(CHUNK)
        .map(|c| {
            let mut lanes = [0f32; 16];
            let mut it = c.chunks_exact(16);
            for v in &mut it {
                for (l, x) in lanes.iter_mut().zip(v) {
                    *l += x * x;
                }
            }
            let tail: f64 = it.remainder().iter().map(|&x| (x * x) as f64).sum();
            lanes.iter().map(|&l| l as f64).sum::<f64>() + tail
        })
        .collect::<Vec<f64>>()
        .iter()
        .sum()
}

/// Learning-rate schedule, applied at the start of each epoch (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    /// Zaremba et al.: lr ← lr / factor at the start of every epoch after `after`.
    StepDecay {
        after: usize,
        factor: f32,
    },
    /// lr ← lr / factor when validation loss did not improve on the best so far.
    Plateau {
        factor: f32,
    },
}

impl std::str::FromStr for Schedule {
    type Err = crate::error::Error;
    /// `constant`, `step:AFTER:FACTOR` or `plateau:FACTOR` (FACTOR > 0).
    fn from_str(s: &str) -> crate::error::Result<Schedule> {
        let bad = || {
            crate::error::Error::config(format!(
                "{s:?}: expected constant, step:AFTER:FACTOR or plateau:FACTOR (FACTOR > 0)"
            ))
        };
        let factor = |f: &str| match f.parse::<f32>() {
            Ok(f) if f > 0.0 && f.is_finite() => Ok(f),
            _ => Err(bad()),
        };
        Ok(match s.split(':').collect::<Vec<_>>().as_slice() {
            ["constant"] => Schedule::Constant,
            ["step", after, f] => Schedule::StepDecay {
                after: after.parse().map_err(|_| bad())?,
                factor: factor(f)?,
            },
            ["plateau", f] => Schedule::Plateau { factor: factor(f)? },
            _ => return Err(bad()),
        })
    }
}

impl OptimKind {
    /// `sgd`, `adam` or `adamw` with PyTorch's defaults (AdamW: weight decay 0.01).
    pub fn named(
        s: &str,
        momentum: f32,
        weight_decay: Option<f32>,
    ) -> crate::error::Result<OptimKind> {
        Ok(match s {
            "sgd" => OptimKind::Sgd { momentum },
            "adam" => OptimKind::Adam {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: weight_decay.unwrap_or(0.0),
            },
            "adamw" => OptimKind::AdamW {
                beta1: 0.9,
                beta2: 0.999,
                eps: 1e-8,
                weight_decay: weight_decay.unwrap_or(0.01),
            },
            _ => {
                return Err(crate::error::Error::config(format!(
                    "{s:?}: expected sgd, adam or adamw"
                )))
            }
        })
    }

    /// The learning rate a run uses when none is given: word_language_model's 20 for
    /// plain SGD, Adam's customary 1e-3 otherwise.
    pub fn default_lr(&self) -> f32 {
        match self {
            OptimKind::Sgd { .. } => 20.0,
            _ => 1e-3,
        }
    }
}

impl Schedule {
    /// The learning rate for `epoch` given the previous one and whether the last
    /// validation loss failed to improve.
    pub fn next_lr(&self, epoch: usize, lr: f32, plateaued: bool) -> f32 {
        match *self {
            Schedule::Constant => lr,
            Schedule::StepDecay { after, factor } if epoch > after => lr / factor,
            Schedule::StepDecay { .. } => lr,
            Schedule::Plateau { factor } if plateaued => lr / factor,
            Schedule::Plateau { .. } => lr,
        }
    }
}
