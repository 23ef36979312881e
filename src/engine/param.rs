//! A named parameter tensor with its gradient: the unit that optimizers, checkpoints
//! and gradient checks all walk over.

/// One learnable tensor. `w` and `g` are row-major with `shape`; `name` is PyTorch's
/// state_dict name (`rnn.weight_ih_l0`), so checkpoints can be exchanged with PyTorch.
#[derive(Clone, Debug)]
pub struct Param {
    pub name: String,
    pub shape: Vec<usize>,
    pub w: Vec<f32>,
    pub g: Vec<f32>,
    /// Frozen parameters (a pretrained embedding) get no optimizer update.
    pub frozen: bool,
    /// Bumped by every optimizer update, so that a packed copy of the weights (the step
    /// API's) knows when it is stale.
    pub version: u64,
}

impl Param {
    pub fn zeros(name: impl Into<String>, shape: &[usize]) -> Param {
        let n = shape.iter().product();
        Param {
            name: name.into(),
            shape: shape.to_vec(),
            w: vec![0.0; n],
            g: vec![0.0; n],
            frozen: false,
            version: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.w.len()
    }

    pub fn is_empty(&self) -> bool {
        self.w.is_empty()
    }

    pub fn zero_grad(&mut self) {
        self.g.fill(0.0);
    }
}

/// Anything that owns parameters. The order of the visit is the model's canonical
/// parameter order: optimizers key their state on it and checkpoints list it.
pub trait Module {
    fn visit(&self, f: &mut dyn FnMut(&Param));
    fn visit_mut(&mut self, f: &mut dyn FnMut(&mut Param));

    fn zero_grad(&mut self) {
        self.visit_mut(&mut |p| p.zero_grad());
    }

    fn num_params(&self) -> usize {
        let mut n = 0;
        self.visit(&mut |p| n += p.len());
        n
    }
}
