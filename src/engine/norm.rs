//! Normalisation over features: LayerNorm (per token, Ba et al. 2016) and BatchNorm
//! (per feature over the valid (batch, time) positions, with running statistics).
//!
//! The lecture contrasts the two over a `[batch, time, features]` tensor: LayerNorm's
//! statistics belong to one token, so it behaves the same in training and at test time
//! and for any batch size; BatchNorm's belong to the batch and must be replaced by
//! running averages at test time, and padding must be kept out of them.

use super::param::{Module, Param};
use serde::{Deserialize, Serialize};

pub const EPS: f32 = 1e-5;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    #[default]
    None,
    Layer,
    Batch,
}

/// What backward needs: the normalised input x̂ `[n, f]` and 1/σ per row (LayerNorm)
/// or per feature (BatchNorm).
impl std::str::FromStr for NormKind {
    type Err = crate::error::Error;
    fn from_str(s: &str) -> crate::error::Result<NormKind> {
        Ok(match s {
            "none" => NormKind::None,
            "layer" => NormKind::Layer,
            "batch" => NormKind::Batch,
            _ => {
                return Err(crate::error::Error::config(format!(
                    "{s:?}: expected none, layer or batch"
                )))
            }
        })
    }
}

#[derive(Clone, Debug, Default)]
pub struct NormCache {
    xhat: Vec<f32>,
    rstd: Vec<f32>,
    /// BatchNorm only: which rows took part (padding did not); empty means all.
    valid: Vec<bool>,
    /// BatchNorm in eval mode uses fixed statistics, so its backward is a plain scale.
    fixed: bool,
}

#[derive(Clone, Debug)]
pub struct LayerNorm {
    pub weight: Param,
    pub bias: Param,
}

impl LayerNorm {
    pub fn new(prefix: &str, f: usize) -> LayerNorm {
        let mut weight = Param::zeros(format!("{prefix}.weight"), &[f]);
        weight.w.fill(1.0);
        LayerNorm {
            weight,
            bias: Param::zeros(format!("{prefix}.bias"), &[f]),
        }
    }

    /// x `[n, f]` normalised in place over each row's f features.
    pub fn forward(&self, x: &mut [f32]) -> NormCache {
        let f = self.weight.len();
        let n = x.len() / f;
        let mut xhat = vec![0.0; x.len()];
        let mut rstd = vec![0.0; n];
        for (r, row) in x.chunks_exact_mut(f).enumerate() {
            rstd[r] = self.norm_row(row, &mut xhat[r * f..(r + 1) * f]);
        }
        NormCache {
            xhat,
            rstd,
            valid: Vec::new(),
            fixed: false,
        }
    }

    /// [`LayerNorm::forward`] without a cache: `scratch` `[f]` holds each row's x̂ in
    /// turn, so a decoder step allocates nothing.
    pub fn forward_eval(&self, x: &mut [f32], scratch: &mut Vec<f32>) {
        let f = self.weight.len();
        scratch.resize(f, 0.0);
        for row in x.chunks_exact_mut(f) {
            self.norm_row(row, scratch);
        }
    }

    /// One row `[f]` normalised in place, x̂ written to `xhat`; returns 1/σ.
    fn norm_row(&self, row: &mut [f32], xhat: &mut [f32]) -> f32 {
        let f = row.len();
        let mean = row.iter().sum::<f32>() / f as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / f as f32;
        let rs = 1.0 / (var + EPS).sqrt();
        for j in 0..f {
            xhat[j] = (row[j] - mean) * rs;
            row[j] = xhat[j] * self.weight.w[j] + self.bias.w[j];
        }
        rs
    }

    /// dy `[n, f]` → dx in place; accumulates dγ, dβ.
    pub fn backward(&mut self, c: &NormCache, dy: &mut [f32]) {
        let f = self.weight.len();
        for (r, row) in dy.chunks_exact_mut(f).enumerate() {
            let xh = &c.xhat[r * f..(r + 1) * f];
            let mut s1 = 0.0;
            let mut s2 = 0.0;
            for j in 0..f {
                self.weight.g[j] += row[j] * xh[j];
                self.bias.g[j] += row[j];
                let d = row[j] * self.weight.w[j];
                s1 += d;
                s2 += d * xh[j];
            }
            let (m1, m2) = (s1 / f as f32, s2 / f as f32);
            for j in 0..f {
                let d = row[j] * self.weight.w[j];
                row[j] = c.rstd[r] * (d - m1 - xh[j] * m2);
            }
        }
    }
}

impl Module for LayerNorm {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        f(&self.weight);
        f(&self.bias);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        f(&mut self.weight);
        f(&mut self.bias);
    }
}

/// BatchNorm1d over `[n = time·batch, f]` rows, as torch.nn.BatchNorm1d applied to the
/// flattened valid positions. Running statistics are frozen params so checkpoints keep them.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    pub weight: Param,
    pub bias: Param,
    pub running_mean: Param,
    pub running_var: Param,
    pub momentum: f32,
}

impl BatchNorm {
    pub fn new(prefix: &str, f: usize) -> BatchNorm {
        let mut weight = Param::zeros(format!("{prefix}.weight"), &[f]);
        weight.w.fill(1.0);
        let mut running_mean = Param::zeros(format!("{prefix}.running_mean"), &[f]);
        running_mean.frozen = true;
        let mut running_var = Param::zeros(format!("{prefix}.running_var"), &[f]);
        running_var.w.fill(1.0);
        running_var.frozen = true;
        BatchNorm {
            weight,
            bias: Param::zeros(format!("{prefix}.bias"), &[f]),
            running_mean,
            running_var,
            momentum: 0.1,
        }
    }

    /// x `[n, f]` in place. `valid[n]` (empty = all rows) keeps padding out of the statistics;
    /// padded rows are passed through normalised with the batch statistics but get no gradient.
    pub fn forward(&mut self, x: &mut [f32], valid: &[bool], train: bool) -> NormCache {
        let f = self.weight.len();
        let n = x.len() / f;
        let is_valid = |r: usize| valid.is_empty() || valid[r];
        let (mean, rstd) = if train {
            let cnt = (0..n).filter(|&r| is_valid(r)).count().max(1) as f64;
            let mut mean = vec![0f64; f];
            let mut sq = vec![0f64; f];
            for r in (0..n).filter(|&r| is_valid(r)) {
                for j in 0..f {
                    mean[j] += x[r * f + j] as f64;
                }
            }
            mean.iter_mut().for_each(|m| *m /= cnt);
            for r in (0..n).filter(|&r| is_valid(r)) {
                for j in 0..f {
                    let d = x[r * f + j] as f64 - mean[j];
                    sq[j] += d * d;
                }
            }
            let mut rstd = vec![0f32; f];
            for j in 0..f {
                let var = sq[j] / cnt;
                let unbiased = if cnt > 1.0 { sq[j] / (cnt - 1.0) } else { var };
                let m = self.momentum;
                self.running_mean.w[j] = (1.0 - m) * self.running_mean.w[j] + m * mean[j] as f32;
                self.running_var.w[j] = (1.0 - m) * self.running_var.w[j] + m * unbiased as f32;
                rstd[j] = 1.0 / ((var as f32) + EPS).sqrt();
            }
            (mean.iter().map(|&m| m as f32).collect::<Vec<_>>(), rstd)
        } else {
            let rstd = self
                .running_var
                .w
                .iter()
                .map(|v| 1.0 / (v + EPS).sqrt())
                .collect();
            (self.running_mean.w.clone(), rstd)
        };
        let mut xhat = vec![0.0; x.len()];
        for r in 0..n {
            for j in 0..f {
                let i = r * f + j;
                xhat[i] = (x[i] - mean[j]) * rstd[j];
                x[i] = xhat[i] * self.weight.w[j] + self.bias.w[j];
            }
        }
        NormCache {
            xhat,
            rstd,
            valid: valid.to_vec(),
            fixed: !train,
        }
    }

    /// Evaluation-mode forward with the running statistics, in place on x `[n, f]`: it only
    /// reads the layer and keeps no cache, for batch-1 decoding.
    pub fn forward_eval(&self, x: &mut [f32]) {
        let f = self.weight.len();
        for row in x.chunks_exact_mut(f) {
            for (j, v) in row.iter_mut().enumerate() {
                let rstd = 1.0 / (self.running_var.w[j] + EPS).sqrt();
                *v = (*v - self.running_mean.w[j]) * rstd * self.weight.w[j] + self.bias.w[j];
            }
        }
    }

    /// dy `[n, f]` → dx in place; accumulates dγ, dβ.
    pub fn backward(&mut self, c: &NormCache, dy: &mut [f32]) {
        let f = self.weight.len();
        let n = dy.len() / f;
        let is_valid = |r: usize| c.valid.is_empty() || c.valid[r];
        let cnt = (0..n).filter(|&r| is_valid(r)).count().max(1) as f32;
        let mut s1 = vec![0f32; f];
        let mut s2 = vec![0f32; f];
        for r in (0..n).filter(|&r| is_valid(r)) {
            for j in 0..f {
                let i = r * f + j;
                self.weight.g[j] += dy[i] * c.xhat[i];
                self.bias.g[j] += dy[i];
                let d = dy[i] * self.weight.w[j];
                s1[j] += d;
                s2[j] += d * c.xhat[i];
            }
        }
        for r in 0..n {
            for j in 0..f {
                let i = r * f + j;
                if !is_valid(r) {
                    dy[i] = 0.0;
                } else if c.fixed {
                    dy[i] *= self.weight.w[j] * c.rstd[j];
                } else {
                    let d = dy[i] * self.weight.w[j];
                    dy[i] = c.rstd[j] * (d - s1[j] / cnt - c.xhat[i] * s2[j] / cnt);
                }
            }
        }
    }
}

impl Module for BatchNorm {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        f(&self.weight);
        f(&self.bias);
        f(&self.running_mean);
        f(&self.running_var);
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        f(&mut self.weight);
        f(&mut self.bias);
        f(&mut self.running_mean);
        f(&mut self.running_var);
    }
}
