//! Linear (affine) layer: y = x Wᵀ + b, as torch.nn.Linear.

use super::ops::{add_bias_rows, matmul, sum_rows_into, Prepacked};
use super::param::{Module, Param};
use crate::engine::ops::Mat;
use rand::RngCore;

/// `weight` is `[out, in]`, `bias` is `[out]` (PyTorch's layout).
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight: Param,
    pub bias: Option<Param>,
}

impl Linear {
    /// PyTorch's default init: U(−1/√in, 1/√in) for weight and bias.
    pub fn new(
        prefix: &str,
        input: usize,
        output: usize,
        bias: bool,
        rng: &mut dyn RngCore,
    ) -> Linear {
        let a = 1.0 / (input as f32).sqrt();
        let mut weight = Param::zeros(format!("{prefix}.weight"), &[output, input]);
        super::init::uniform(&mut weight, a, rng);
        let bias = bias.then(|| {
            let mut b = Param::zeros(format!("{prefix}.bias"), &[output]);
            super::init::uniform(&mut b, a, rng);
            b
        });
        Linear { weight, bias }
    }

    pub fn input(&self) -> usize {
        self.weight.shape[1]
    }

    pub fn output(&self) -> usize {
        self.weight.shape[0]
    }

    /// x `[n, in]` → y `[n, out]`.
    pub fn forward(&self, x: &[f32], y: &mut [f32]) {
        forward(
            x,
            &self.weight.w,
            self.bias.as_ref().map(|b| &b.w[..]),
            self.input(),
            self.output(),
            y,
        );
    }

    /// The weight readied for many [`Linear::forward_with`] calls (decoding steps).
    pub fn prepack(&self) -> Prepacked<'_> {
        Prepacked::new(&self.weight.w, self.input(), self.output(), true)
    }

    /// As [`Linear::forward`], with the weight from [`Linear::prepack`].
    pub fn forward_with(&self, w: &Prepacked, x: &[f32], y: &mut [f32]) {
        let (n, o) = (x.len() / self.input(), self.output());
        w.left_mul(n, y, x, false);
        if let Some(b) = &self.bias {
            add_bias_rows(&mut y[..n * o], &b.w);
        }
    }

    /// Accumulates dW, db from x `[n, in]` and dy `[n, out]`; writes dx `[n, in]` if asked.
    pub fn backward(&mut self, x: &[f32], dy: &[f32], dx: Option<&mut [f32]>) {
        let (i, o) = (self.input(), self.output());
        backward(
            x,
            dy,
            &self.weight.w,
            (&mut self.weight.g, self.bias.as_mut().map(|b| &mut b.g[..])),
            [i, o],
            dx,
        );
    }
}

/// y `[n, o]` = x `[n, i]` · wᵀ (`w` is `[o, i]`) + b. Free function so that a tied
/// decoder can use the embedding's weight.
pub fn forward(x: &[f32], w: &[f32], b: Option<&[f32]>, i: usize, o: usize, y: &mut [f32]) {
    let n = x.len() / i;
    matmul(y, [n, o, i], Mat::n(x), Mat::t(w), false);
    if let Some(b) = b {
        add_bias_rows(&mut y[..n * o], b);
    }
}

/// Gradient of [`forward`] (`[i, o]` its input and output widths): dw += dyᵀ x,
/// db += Σ dy, dx = dy · w.
pub fn backward(
    x: &[f32],
    dy: &[f32],
    w: &[f32],
    (dw, db): (&mut [f32], Option<&mut [f32]>),
    [i, o]: [usize; 2],
    dx: Option<&mut [f32]>,
) {
    let n = x.len() / i;
    matmul(dw, [o, i, n], Mat::t(dy), Mat::n(x), true);
    if let Some(db) = db {
        sum_rows_into(db, &dy[..n * o]);
    }
    if let Some(dx) = dx {
        matmul(dx, [n, i, o], Mat::n(dy), Mat::n(w), false);
    }
}

impl Module for Linear {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        f(&self.weight);
        if let Some(b) = &self.bias {
            f(b);
        }
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        f(&mut self.weight);
        if let Some(b) = &mut self.bias {
            f(b);
        }
    }
}
