//! The stacked, optionally bidirectional, residual and normalised recurrent network
//! ([`Rnn`]) over [`RnnDir`] layers, as torch.nn.LSTM / GRU / RNN.
//!
//! Layout is time-major as in PyTorch: inputs `[T, B, I]`, outputs `[T, B, D·H]`,
//! states `[L·D, B, H]`.

use super::cell::CellKind;
pub use super::dir::{active_mask, Cols, DirCache, DirInput, Dx, RnnDir, State, Steps};
use super::dropout::{self, DropoutKind, Mask};
use super::init::Init;
use super::lnlstm::CellNorm;
use super::norm::{BatchNorm, LayerNorm, NormCache, NormKind};
use super::par::{directions_at_once, join_single, Split};
use super::param::{Module, Param};
use rand::RngCore;
use serde::{Deserialize, Serialize};

/// A stack of recurrent layers as torch.nn.LSTM / GRU / RNN, plus rnnkit's options.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RnnConfig {
    pub cell: CellKind,
    pub input: usize,
    pub hidden: usize,
    pub layers: usize,
    pub bidirectional: bool,
    /// Dropout on the input of every layer but the first (PyTorch's `dropout`).
    pub dropout: f32,
    pub dropout_kind: DropoutKind,
    /// y_l = f_l(x_l) + x_l between layers of equal width.
    pub residual: bool,
    /// Normalisation of each layer's output.
    pub norm: NormKind,
    /// Layer normalisation inside each LSTM cell (Ba et al. 2016; [`super::lnlstm`]).
    #[serde(default)]
    pub cell_norm: bool,
}

impl RnnConfig {
    pub fn new(cell: CellKind, input: usize, hidden: usize, layers: usize) -> RnnConfig {
        RnnConfig {
            cell,
            input,
            hidden,
            layers,
            bidirectional: false,
            dropout: 0.0,
            dropout_kind: DropoutKind::Standard,
            residual: false,
            norm: NormKind::None,
            cell_norm: false,
        }
    }

    pub fn dirs(&self) -> usize {
        if self.bidirectional {
            2
        } else {
            1
        }
    }

    pub fn output(&self) -> usize {
        self.hidden * self.dirs()
    }

    /// Parameters of the stack (weights, biases, norms), `None` on overflow: checked
    /// before anything is allocated.
    pub fn num_params(&self) -> Option<u64> {
        let (h, o, g) = (
            self.hidden as u64,
            self.output() as u64,
            (self.cell.gates() as u64).checked_mul(self.hidden as u64)?,
        );
        let mut n: u64 = 0;
        for l in 0..self.layers as u64 {
            let i = if l == 0 { self.input as u64 } else { o };
            let mut dir = g.checked_mul(i.checked_add(h)?.checked_add(2)?)?;
            if self.cell_norm {
                dir = dir.checked_add(g.checked_mul(4)?.checked_add(h.checked_mul(2)?)?)?;
            }
            n = n.checked_add(dir.checked_mul(self.dirs() as u64)?)?;
            if self.norm != NormKind::None {
                n = n.checked_add(o.checked_mul(2)?)?;
            }
        }
        Some(n)
    }

    /// Refuses combinations the layers do not implement.
    pub fn validate(&self) -> crate::error::Result<()> {
        if self.layers == 0 || self.hidden == 0 || self.input == 0 {
            return Err(crate::error::Error::config(format!(
                "a recurrent stack needs at least one layer and positive sizes (layers {}, hidden {}, input {})",
                self.layers, self.hidden, self.input
            )));
        }
        if self.cell_norm && self.cell != CellKind::Lstm {
            return Err(crate::error::Error::config(format!(
                "layer normalisation inside the cell (Ba et al. 2016) is implemented for lstm, not {}",
                format!("{:?}", self.cell).to_lowercase()
            )));
        }
        Ok(())
    }
}

#[derive(Clone, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Norm {
    Layer(LayerNorm),
    Batch(BatchNorm),
}

#[derive(Clone, Debug)]
pub struct Rnn {
    pub cfg: RnnConfig,
    /// `layers · dirs`, layer-major (l0, l0_reverse, l1, ...), PyTorch's order.
    pub dirs: Vec<RnnDir>,
    pub norms: Vec<Norm>,
}

struct LayerCache {
    mask: Option<Mask>,
    dirs: Vec<DirCache>,
    norm: Option<NormCache>,
    residual: bool,
}

/// Layer 0's input, as given to [`Rnn::forward`] or [`Rnn::forward_tokens`].
#[derive(Clone, Copy)]
enum First<'a> {
    Seq(&'a [f32]),
    /// A [`TokenProjections`]' tables (one a direction) and the row of each step.
    Tokens(&'a [Vec<f32>], &'a [u32]),
}

/// Layer 0's input projections W_ih·x + biases of tokens, one gate-major row `[G·H]` a
/// token and direction. At inference a token's input x never changes (its embedding, and
/// for the tagger its spelling's character features and casing), so its projection
/// depends on the token alone: a file's repeated words are projected once instead of at
/// every occurrence (the input projection is about half of a BiLSTM classifier's
/// inference). `K` identifies a token (the classifier: its id; the tagger: word, casing
/// and spelling). Valid while the weights stay as they are: build one per pass over a
/// file. It holds at most [`TokenProjections::MAX_BYTES`] of rows and starts over past that.
#[derive(Debug)]
pub struct TokenProjections<K = u32> {
    index: std::collections::HashMap<K, u32>,
    /// One table a direction of layer 0, `[n, G·H]`.
    tables: Vec<Vec<f32>>,
    max_bytes: usize,
}

impl<K> Default for TokenProjections<K> {
    fn default() -> TokenProjections<K> {
        TokenProjections {
            index: Default::default(),
            tables: Vec::new(),
            max_bytes: TokenProjections::<u32>::MAX_BYTES,
        }
    }
}

impl TokenProjections {
    pub const MAX_BYTES: usize = 128 << 20;

    /// Whether `rnn` can take its input this way: a layer-normalised cell normalises
    /// W_ih·x by itself, before the bias, so its projection is not one row to look up.
    pub fn applies(rnn: &Rnn) -> bool {
        !rnn.cfg.cell_norm && rnn.cfg.layers > 0
    }
}

impl<K> TokenProjections<K> {
    /// Tokens whose projections it holds.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }
}

impl<K: Copy + Eq + std::hash::Hash + Ord> TokenProjections<K> {
    /// The table row of each of `keys`, projecting the keys not seen before in one product
    /// a direction; `input(key, row)` writes a key's input `[I]` into `row`.
    pub fn rows(&mut self, rnn: &Rnn, keys: &[K], input: impl Fn(K, &mut [f32])) -> Vec<u32> {
        assert!(
            TokenProjections::applies(rnn),
            "token projections need a plain cell"
        );
        let (i, nd, h) = (rnn.cfg.input, rnn.cfg.dirs(), rnn.cfg.hidden);
        let g = rnn.cfg.cell.gates() * h;
        let row_bytes = nd * g * 4;
        let unseen = |index: &std::collections::HashMap<K, u32>| {
            let mut new: Vec<K> = keys
                .iter()
                .copied()
                .filter(|v| !index.contains_key(v))
                .collect();
            new.sort_unstable();
            new.dedup();
            new
        };
        let mut new = unseen(&self.index);
        if (self.index.len() + new.len()) * row_bytes > self.max_bytes {
            self.index.clear();
            self.tables.iter_mut().for_each(Vec::clear);
            new = unseen(&self.index);
        }
        if !new.is_empty() {
            let mut x = vec![0.0; new.len() * i];
            for (&k, row) in new.iter().zip(x.chunks_exact_mut(i.max(1))) {
                input(k, row);
            }
            if self.tables.is_empty() {
                // Room for every row it may hold, reserved once: no copies as it grows, and
                // pages never written cost no memory.
                let cap = (self.max_bytes / row_bytes).max(new.len());
                self.tables = (0..nd).map(|_| Vec::with_capacity(cap * g)).collect();
            }
            let gate_major = Split::new(1, h, rnn.cfg.cell.gates());
            for (d, table) in self.tables.iter_mut().enumerate() {
                table.extend(rnn.dirs[d].project(&x, new.len(), &gate_major));
            }
            for v in new {
                let row = self.index.len() as u32;
                self.index.insert(v, row);
            }
        }
        keys.iter().map(|v| self.index[v]).collect()
    }
}

/// Everything [`Rnn::backward`] needs from one [`Rnn::forward`] call.
pub struct RnnCache {
    t: usize,
    b: usize,
    active: Vec<bool>,
    layers: Vec<LayerCache>,
}

impl RnnCache {
    /// Timesteps of the forward pass.
    pub(crate) fn t(&self) -> usize {
        self.t
    }

    /// Each layer's direction caches, layer by layer.
    pub(crate) fn layer_dirs(&self) -> impl Iterator<Item = &[DirCache]> {
        self.layers.iter().map(|l| &l.dirs[..])
    }
}

/// How one pass of a stack over a batch runs: the batch `[T, B]` with each sequence's
/// length (`None`: all `T`; padding never changes a real position's result), the initial
/// state (`None`: zeros), whether it trains (dropout on) and whether it keeps the cache
/// that backward needs (`keep = false` for evaluation and decoding).
#[derive(Clone, Copy, Debug)]
pub struct Pass<'a> {
    pub t: usize,
    pub b: usize,
    pub lengths: Option<&'a [usize]>,
    pub state: Option<&'a State>,
    pub train: bool,
    pub keep: bool,
}

impl<'a> Pass<'a> {
    /// Inference over `[T, B]`: no dropout, nothing cached, zero initial state.
    pub fn eval(t: usize, b: usize) -> Pass<'a> {
        Pass {
            t,
            b,
            lengths: None,
            state: None,
            train: false,
            keep: false,
        }
    }

    /// Training over `[T, B]`: dropout on, the cache kept for backward.
    pub fn train(t: usize, b: usize) -> Pass<'a> {
        Pass {
            train: true,
            keep: true,
            ..Pass::eval(t, b)
        }
    }

    /// With each sequence's length.
    pub fn lengths(self, lengths: Option<&'a [usize]>) -> Pass<'a> {
        Pass { lengths, ..self }
    }

    /// From an initial state.
    pub fn state(self, state: &'a State) -> Pass<'a> {
        Pass {
            state: Some(state),
            ..self
        }
    }

    /// Keeping the cache (or not), whatever `train` says: a trace reads it at inference.
    pub fn keep(self, keep: bool) -> Pass<'a> {
        Pass { keep, ..self }
    }

    /// Training or not; `keep` follows unless set after.
    pub fn training(self, train: bool) -> Pass<'a> {
        Pass {
            train,
            keep: train,
            ..self
        }
    }
}

impl Rnn {
    /// Parameter names are `{prefix}.weight_ih_l{k}[_reverse]` etc. as in PyTorch.
    pub fn new(
        prefix: &str,
        cfg: RnnConfig,
        scheme: Init,
        forget_bias: f32,
        rng: &mut dyn RngCore,
    ) -> Rnn {
        let mut dirs = Vec::new();
        let mut norms = Vec::new();
        for l in 0..cfg.layers {
            let input = if l == 0 { cfg.input } else { cfg.output() };
            for d in 0..cfg.dirs() {
                let suffix = format!("_l{l}{}", if d == 1 { "_reverse" } else { "" });
                let mut dir = RnnDir::new(prefix, &suffix, cfg.cell, input, cfg.hidden, d == 1);
                dir.init(scheme, forget_bias, rng);
                if cfg.cell_norm {
                    assert!(cfg.validate().is_ok(), "cell_norm needs an LSTM");
                    dir.ln = Some(CellNorm::new(prefix, &suffix, cfg.hidden));
                }
                dirs.push(dir);
            }
            let np = format!("{prefix}_norm.{l}");
            match cfg.norm {
                NormKind::None => {}
                NormKind::Layer => norms.push(Norm::Layer(LayerNorm::new(&np, cfg.output()))),
                NormKind::Batch => norms.push(Norm::Batch(BatchNorm::new(&np, cfg.output()))),
            }
        }
        Rnn { cfg, dirs, norms }
    }

    /// A zero state for batch `b`: h, c `[L·D, B, H]`.
    pub fn zero_state(&self, b: usize) -> State {
        let n = self.cfg.layers * self.cfg.dirs() * b * self.cfg.hidden;
        State {
            h: vec![0.0; n],
            c: if self.cfg.cell.has_cell_state() {
                vec![0.0; n]
            } else {
                Vec::new()
            },
        }
    }

    pub fn residual_at(&self, l: usize) -> bool {
        let input = if l == 0 {
            self.cfg.input
        } else {
            self.cfg.output()
        };
        self.cfg.residual && l > 0 && input == self.cfg.output()
    }

    /// x `[T, B, I]` → (y `[T, B, D·H]`, final state, cache), run as `pass` says (its
    /// shape, lengths, initial state, and whether it trains and caches for backward).
    pub fn forward(
        &mut self,
        x: &[f32],
        pass: Pass,
        rng: &mut dyn RngCore,
    ) -> (Vec<f32>, State, RnnCache) {
        self.forward_from(First::Seq(x), pass, rng)
    }

    /// [`Self::forward`] at inference with layer 0's input projections taken from `proj`:
    /// `rows [T·B]` are the rows [`TokenProjections::rows`] gave for the batch's token ids.
    /// Returns (y `[T, B, D·H]`, final state).
    pub fn forward_tokens<K>(
        &mut self,
        proj: &TokenProjections<K>,
        rows: &[u32],
        t: usize,
        b: usize,
        lengths: Option<&[usize]>,
    ) -> (Vec<f32>, State) {
        // Unused: no dropout at inference.
        let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(0);
        let first = First::Tokens(&proj.tables, rows);
        let pass = Pass::eval(t, b).lengths(lengths);
        let (y, st, _) = self.forward_from(first, pass, &mut rng);
        (y, st)
    }

    fn forward_from(
        &mut self,
        first: First,
        pass: Pass,
        rng: &mut dyn RngCore,
    ) -> (Vec<f32>, State, RnnCache) {
        let Pass {
            t,
            b,
            lengths,
            state,
            train,
            keep,
        } = pass;
        let cfg = self.cfg.clone();
        let (hs, nd, out) = (cfg.hidden, cfg.dirs(), cfg.output());
        let active = active_mask(t, b, lengths);
        let steps = Steps {
            t,
            b,
            active: &active,
        };
        let mut st = state.cloned().unwrap_or_else(|| self.zero_state(b));
        let lstm = cfg.cell.has_cell_state();
        let mut cur = match first {
            First::Seq(x) => x.to_vec(),
            First::Tokens(..) => Vec::new(),
        };
        let mut caches = Vec::new();
        for l in 0..cfg.layers {
            let residual = self.residual_at(l);
            // Only a residual layer needs its input as it was before dropout.
            let input = if residual { cur.clone() } else { Vec::new() };
            let mut xin = cur;
            let bf = b * (xin.len() / (t * b).max(1));
            let mask = if l > 0 {
                dropout::forward(&mut xin, bf, cfg.dropout, cfg.dropout_kind, train, rng)
            } else {
                None
            };
            let mut y = vec![0.0; t * b * out];
            let mut dcs = Vec::new();
            let bh = b * hs;
            let dir_input = |d: usize| match first {
                First::Tokens(tables, rows) if l == 0 => DirInput::Rows {
                    table: &tables[d],
                    rows,
                },
                _ => DirInput::Seq(&xin),
            };
            if nd == 2 && directions_at_once() {
                // The reverse direction writes its own `[T, B, H]`, copied into y's right half.
                let k = 2 * l;
                let (h0, h1) = st.h[k * bh..(k + 2) * bh].split_at_mut(bh);
                let (c0, c1) = if lstm {
                    st.c[k * bh..(k + 2) * bh].split_at_mut(bh)
                } else {
                    (&mut [][..], &mut [][..])
                };
                let mut y1 = vec![0.0; t * b * hs];
                let (dirs, y0) = (&self.dirs, &mut y[..]);
                let (x0, x1) = (dir_input(0), dir_input(1));
                let (dc0, dc1) = join_single(
                    || dirs[k].forward(x0, steps, h0, c0, Cols::of(y0, out, 0), keep),
                    || dirs[k + 1].forward(x1, steps, h1, c1, Cols::of(&mut y1, hs, 0), keep),
                );
                for (row, r1) in y.chunks_exact_mut(out).zip(y1.chunks_exact(hs)) {
                    row[hs..].copy_from_slice(r1);
                }
                dcs.extend([dc0, dc1]);
            } else {
                for d in 0..nd {
                    let k = l * nd + d;
                    let sl = k * bh..(k + 1) * bh;
                    let c = if lstm {
                        &mut st.c[sl.clone()]
                    } else {
                        &mut [][..]
                    };
                    let y = Cols::of(&mut y[..], out, d * hs);
                    let dc = self.dirs[k].forward(dir_input(d), steps, &mut st.h[sl], c, y, keep);
                    dcs.push(dc);
                }
            }
            if residual {
                for (v, r) in y.iter_mut().zip(&input) {
                    *v += r;
                }
            }
            let norm = match self.norms.get_mut(l) {
                Some(Norm::Layer(n)) => Some(n.forward(&mut y)),
                Some(Norm::Batch(n)) => {
                    let valid = if lengths.is_some() {
                        active.clone()
                    } else {
                        Vec::new()
                    };
                    Some(n.forward(&mut y, &valid, train))
                }
                None => None,
            };
            if lengths.is_some() {
                for (row, &a) in y.chunks_exact_mut(out).zip(&active) {
                    if !a {
                        row.fill(0.0);
                    }
                }
            }
            caches.push(LayerCache {
                mask,
                dirs: dcs,
                norm,
                residual,
            });
            cur = y;
        }
        let cache = RnnCache {
            t,
            b,
            active,
            layers: if keep { caches } else { Vec::new() },
        };
        (cur, st, cache)
    }

    /// dy `[T, B, D·H]` and dL/d(final state) (`None`: zero) → (dx `[T, B, I]`,
    /// dL/d(initial state)). Accumulates every parameter gradient.
    pub fn backward(
        &mut self,
        cache: RnnCache,
        dy: &[f32],
        dstate: Option<&State>,
    ) -> (Vec<f32>, State) {
        let cfg = self.cfg.clone();
        let (t, b) = (cache.t, cache.b);
        let (hs, nd, out) = (cfg.hidden, cfg.dirs(), cfg.output());
        let lstm = cfg.cell.has_cell_state();
        let mut ds = dstate.cloned().unwrap_or_else(|| self.zero_state(b));
        let mut dcur = dy.to_vec();
        for (l, lc) in cache.layers.into_iter().enumerate().rev() {
            for (row, &a) in dcur.chunks_exact_mut(out).zip(&cache.active) {
                if !a {
                    row.fill(0.0);
                }
            }
            match (self.norms.get_mut(l), &lc.norm) {
                (Some(Norm::Layer(n)), Some(c)) => n.backward(c, &mut dcur),
                (Some(Norm::Batch(n)), Some(c)) => n.backward(c, &mut dcur),
                _ => {}
            }
            let input_w = if l == 0 { cfg.input } else { out };
            let mut dx = vec![0.0; t * b * input_w];
            let bh = b * hs;
            if nd == 2 && directions_at_once() {
                // Each direction its own dx (as in forward), summed after.
                let k = 2 * l;
                let (h0, h1) = ds.h[k * bh..(k + 2) * bh].split_at_mut(bh);
                let (c0, c1) = if lstm {
                    ds.c[k * bh..(k + 2) * bh].split_at_mut(bh)
                } else {
                    (&mut [][..], &mut [][..])
                };
                let (d0, d1) = self.dirs[k..k + 2].split_at_mut(1);
                let (dy, dx0, mut dx1) = (&dcur, &mut dx, vec![0.0; t * b * input_w]);
                let dx1_ref = &mut dx1;
                join_single(
                    || d0[0].backward(&lc.dirs[0], Cols::of(dy, out, 0), h0, c0, Dx::set(dx0)),
                    || d1[0].backward(&lc.dirs[1], Cols::of(dy, out, hs), h1, c1, Dx::set(dx1_ref)),
                );
                dx.iter_mut().zip(&dx1).for_each(|(a, v)| *a += v);
            } else {
                for d in 0..nd {
                    let k = l * nd + d;
                    let sl = k * bh..(k + 1) * bh;
                    let dc = if lstm {
                        &mut ds.c[sl.clone()]
                    } else {
                        &mut [][..]
                    };
                    let dx = Dx {
                        data: &mut dx,
                        accumulate: d > 0,
                    };
                    let dy = Cols::of(&dcur[..], out, d * hs);
                    self.dirs[k].backward(&lc.dirs[d], dy, &mut ds.h[sl], dc, dx);
                }
            }
            dropout::backward(&mut dx, lc.mask.as_ref());
            if lc.residual {
                for (v, r) in dx.iter_mut().zip(&dcur) {
                    *v += r;
                }
            }
            dcur = dx;
        }
        (dcur, ds)
    }
}

impl Module for Rnn {
    fn visit(&self, f: &mut dyn FnMut(&Param)) {
        for d in &self.dirs {
            d.visit(f);
        }
        for n in &self.norms {
            match n {
                Norm::Layer(n) => n.visit(f),
                Norm::Batch(n) => n.visit(f),
            }
        }
    }
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param)) {
        for d in &mut self.dirs {
            d.visit_mut(f);
        }
        for n in &mut self.norms {
            match n {
                Norm::Layer(n) => n.visit_mut(f),
                Norm::Batch(n) => n.visit_mut(f),
            }
        }
    }
}

#[cfg(test)]
mod tests;
