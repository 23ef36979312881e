//! Option groups every task's `train` shares (the recurrent stack, the embeddings, the
//! optimizer and schedule, the tokenizer, the run's folder and compute), the
//! [`TrainOptions`] each task's `train` options implement, and [`train`], which runs what
//! they ask: the command line parses them from its arguments, the Python package from
//! keyword arguments ([`parse`]), so both take the same options under the same names.
//!
//! Each option is `None` unless given, so it only overrides the recipe (a preset, a
//! config.json or the library's defaults): no default is written here.

use crate::engine::cell::CellKind;
use crate::engine::dropout::DropoutKind;
use crate::engine::init::Init;
use crate::engine::norm::NormKind;
use crate::engine::optim::{OptimKind, Schedule};
use crate::engine::rnn::RnnConfig;
use crate::error::{Error, Result};
use crate::run::{self, Recipe, RunSummary};
use crate::text::tokenizer::Kind;
use crate::train::TrainConfig;
use clap::Args;
use std::path::PathBuf;

/// The recurrent stack.
#[derive(Args, Clone, Debug, Default)]
pub struct StackArgs {
    /// Recurrent cell: rnn, rnn_relu, lstm or gru.
    #[arg(long)]
    pub cell: Option<CellKind>,
    #[arg(long)]
    pub layers: Option<usize>,
    /// Hidden size of each layer (default: the embedding size).
    #[arg(long)]
    pub hidden: Option<usize>,
    /// Dropout between stacked layers (default: same as --dropout).
    #[arg(long)]
    pub layer_dropout: Option<f32>,
    /// standard or variational (one mask per sequence, Gal & Ghahramani).
    #[arg(long)]
    pub dropout_kind: Option<DropoutKind>,
    /// Normalisation between layers: none, layer or batch.
    #[arg(long)]
    pub norm: Option<NormKind>,
    /// Layer normalisation inside each LSTM cell (Ba et al. 2016): both gate projections
    /// and the cell state.
    #[arg(long)]
    pub cell_norm: bool,
    /// Skip connections between stacked layers of equal width.
    #[arg(long)]
    pub residual: bool,
    /// A bidirectional stack (refused by language models, which would see their targets).
    #[arg(long)]
    pub bidirectional: bool,
    /// Weight init: pytorch, uniform:A, xavier or orthogonal.
    #[arg(long)]
    pub init: Option<Init>,
}

impl StackArgs {
    /// Overrides `rnn` (and the model's `init`); `dropout` is the --dropout given, which
    /// the layers inherit unless --layer-dropout is set.
    pub fn apply(&self, rnn: &mut RnnConfig, init: &mut Init, dropout: Option<f32>) {
        if let Some(c) = self.cell {
            rnn.cell = c;
        }
        if let Some(l) = self.layers {
            rnn.layers = l;
        }
        if let Some(h) = self.hidden {
            rnn.hidden = h;
        }
        if let Some(d) = self.layer_dropout.or(dropout) {
            rnn.dropout = d;
        }
        if let Some(k) = self.dropout_kind {
            rnn.dropout_kind = k;
        }
        if let Some(n) = self.norm {
            rnn.norm = n;
        }
        rnn.cell_norm |= self.cell_norm;
        rnn.residual |= self.residual;
        rnn.bidirectional |= self.bidirectional;
        if let Some(i) = self.init {
            *init = i;
        }
    }
}

/// The input embeddings.
#[derive(Args, Clone, Debug, Default)]
pub struct EmbedArgs {
    /// Embedding size.
    #[arg(long)]
    pub embed: Option<usize>,
    /// Dropout on the embeddings and on the stack's output (Zaremba et al.).
    #[arg(long)]
    pub dropout: Option<f32>,
    /// Embedding (and LM decoder) init: word-lm (U(±0.1), zero decoder bias) or
    /// torch-default (nn.Embedding's N(0,1), nn.Linear's U(±1/√H)). uniform:A covers both.
    #[arg(long)]
    pub embed_init: Option<crate::task::lm::EmbedInit>,
    /// Pretrained word vectors (word2vec/GloVe/fastText text) for the rows they cover.
    #[arg(long)]
    pub pretrained: Option<PathBuf>,
    /// Keep the embedding fixed during training (with --pretrained).
    #[arg(long)]
    pub freeze_embeddings: bool,
}

/// The optimizer, the schedule and when training stops.
#[derive(Args, Clone, Debug, Default)]
pub struct OptimArgs {
    /// sgd, adam or adamw.
    #[arg(long)]
    pub optim: Option<String>,
    /// Learning rate (when --optim changes the optimizer: that optimizer's default).
    #[arg(long)]
    pub lr: Option<f32>,
    #[arg(long)]
    pub momentum: Option<f32>,
    #[arg(long)]
    pub weight_decay: Option<f32>,
    /// constant, step:AFTER:FACTOR (divide lr by FACTOR each epoch after AFTER) or
    /// plateau:FACTOR (divide when validation did not improve).
    #[arg(long)]
    pub schedule: Option<Schedule>,
    /// Gradient clipping by global norm (0: off).
    #[arg(long)]
    pub clip: Option<f32>,
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many training tokens.
    #[arg(long)]
    pub max_tokens: Option<u64>,
    /// Stop after this many minutes of training.
    #[arg(long)]
    pub minutes: Option<f64>,
    /// Stop after this many epochs without a better validation score.
    #[arg(long)]
    pub patience: Option<usize>,
    /// Validate every N steps as well as at each epoch end.
    #[arg(long)]
    pub eval_every: Option<usize>,
    /// Save the resumable state every N steps as well as at each epoch end.
    #[arg(long)]
    pub save_every: Option<usize>,
    #[arg(long)]
    pub log_every: Option<usize>,
    /// Seed of the initial weights, dropout masks and shuffling.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Also save the resumable state every N minutes (a crash loses at most that much).
    #[arg(long)]
    pub save_minutes: Option<f64>,
    /// When a loss or gradient is NaN or infinite: stop (keep the last good checkpoint),
    /// skip (the step), or rollback (reload the last saved state, halve the rate).
    #[arg(long)]
    pub on_nan: Option<crate::train::NanPolicy>,
}

impl OptimArgs {
    pub fn apply(&self, t: &mut TrainConfig) -> Result<()> {
        let (wd, mom) = match t.optim {
            OptimKind::Sgd { momentum } => (None, momentum),
            OptimKind::Adam { weight_decay, .. } | OptimKind::AdamW { weight_decay, .. } => {
                (Some(weight_decay), 0.0)
            }
        };
        if let Some(o) = &self.optim {
            let before = t.optim;
            t.optim = OptimKind::named(o, self.momentum.unwrap_or(0.0), self.weight_decay)
                .map_err(|e| Error::Usage(format!("--optim {e}")))?;
            if std::mem::discriminant(&before) != std::mem::discriminant(&t.optim) {
                t.lr = t.optim.default_lr();
            }
        } else if self.momentum.is_some() || self.weight_decay.is_some() {
            let name = match t.optim {
                OptimKind::Sgd { .. } => "sgd",
                OptimKind::Adam { .. } => "adam",
                OptimKind::AdamW { .. } => "adamw",
            };
            t.optim =
                OptimKind::named(name, self.momentum.unwrap_or(mom), self.weight_decay.or(wd))?;
        }
        macro_rules! set {
            ($($f:ident => $g:ident),*) => {$(
                if let Some(v) = self.$f { t.$g = v; }
            )*};
        }
        set!(lr => lr, schedule => schedule, clip => clip, eval_every => eval_every,
            save_every => save_every, log_every => log_every, seed => seed);
        self.budgets().apply(t);
        if self.patience.is_some() {
            t.patience = self.patience;
        }
        if self.save_minutes.is_some() {
            t.save_minutes = self.save_minutes;
        }
        if let Some(p) = self.on_nan {
            t.on_nan = p;
        }
        Ok(())
    }

    /// The options a resumed run takes from the new invocation: its budgets, how often it
    /// saves and what it does on NaN.
    pub fn budgets(&self) -> crate::run::Budgets {
        crate::run::Budgets {
            epochs: self.epochs,
            max_tokens: self.max_tokens,
            minutes: self.minutes,
            save_minutes: self.save_minutes,
            on_nan: self.on_nan,
        }
    }
}

/// The tokenizer.
#[derive(Args, Clone, Debug, Default)]
pub struct TokArgs {
    /// Tokenizer: char, word, ptb or bpe.
    #[arg(long)]
    pub tokenizer: Option<Kind>,
    /// BPE / word vocabulary size limit.
    #[arg(long)]
    pub vocab_size: Option<usize>,
    /// Tokens seen fewer times become the unknown token (char and word).
    #[arg(long)]
    pub min_freq: Option<usize>,
}

/// How the products run, for every command that computes: threads and number format.
#[derive(Args, Clone, Debug, Default)]
pub struct ComputeArgs {
    /// Threads (default: every core). Training keeps the run's count on --resume, so a
    /// resumed run continues bit for bit as if never stopped.
    #[arg(long, value_parser = parse_threads)]
    pub threads: Option<usize>,
    /// Number format of the matrix products: f32, or bf16 (operands rounded to bf16, sums
    /// in fp32; weights, optimizer state, cell math, norms and the loss stay fp32, as under
    /// PyTorch's autocast). bf16 runs on AMX or AVX512-BF16 when the CPU has them and
    /// stays fp32 otherwise (`rnnkit bench` prints the kernel). Training keeps it on
    /// --resume. [default: f32]
    #[arg(long)]
    pub precision: Option<crate::engine::bf16::Precision>,
}

/// `--threads`: a count from 1 to 1024 (0 used to mean 1 without a word).
fn parse_threads(s: &str) -> std::result::Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n @ 1..=1024) => Ok(n),
        _ => Err(format!("expected a thread count from 1 to 1024, got {s:?}")),
    }
}

/// Where a run writes and how it reports.
#[derive(Args, Clone, Debug, Default)]
pub struct RunArgs {
    /// Output folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the stopped run in this folder (its options are kept; --epochs, --minutes
    /// and --max-tokens set the new budget, so a finished run can train on to more epochs).
    #[arg(long)]
    pub resume: Option<PathBuf>,
    /// Rerun the run a config.json describes (explicit options override it).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Start afresh in an --out folder that holds a run already (its files are replaced).
    #[arg(long)]
    pub overwrite: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Print a JSON summary as the last line.
    #[arg(long)]
    pub json: bool,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
}

/// A task's `train` options: the recipe they start from and how they change it.
pub trait TrainOptions: Args + Clone {
    type Recipe: Recipe;
    /// The recipe before the options: the preset named, or the library's defaults.
    fn recipe(&self) -> Self::Recipe;
    /// Overrides `recipe` with every option given.
    fn apply(&self, recipe: &mut Self::Recipe) -> Result<()>;
    fn run_args(&self) -> &RunArgs;
    fn optim_args(&self) -> &OptimArgs;
}

/// Implements [`TrainOptions`] for a task's `TrainArgs` (which has `run` and `optim`
/// groups and an `apply(&self, &mut Recipe)`): `train_options!(LmRun, |a| LmRun::recipe(a.preset))`.
macro_rules! train_options {
    ($recipe:ty, |$a:ident| $start:expr) => {
        impl $crate::task::options::TrainOptions for TrainArgs {
            type Recipe = $recipe;
            fn recipe(&self) -> $recipe {
                let $a = self;
                $start
            }
            fn apply(&self, recipe: &mut $recipe) -> $crate::error::Result<()> {
                TrainArgs::apply(self, recipe)
            }
            fn run_args(&self) -> &$crate::task::options::RunArgs {
                &self.run
            }
            fn optim_args(&self) -> &$crate::task::options::OptimArgs {
                &self.optim
            }
        }
    };
}
pub(crate) use train_options;

/// Runs what a task's `train` options ask with the library's run: resumes `--resume DIR`
/// (keeping its options but the budgets), or starts the recipe (from `--config`, or the
/// task's) with the options applied, in `--out`. `opts` brings the caller's observer,
/// notes, curves and signal policy; the options set the folder policy and the compute.
pub fn train<A: TrainOptions>(a: &A, mut opts: run::Options) -> Result<RunSummary> {
    let args = a.run_args();
    opts.overwrite = args.overwrite;
    opts.compute = run::Compute {
        threads: args.compute.threads,
        precision: args.compute.precision,
    };
    if let Some(dir) = &args.resume {
        if args.out.as_ref().is_some_and(|o| o != dir) {
            return Err(Error::Usage(
                "--resume continues the run in its own folder; leave out --out or give the same folder".into(),
            ));
        }
        return run::resume::<A::Recipe>(dir, &a.optim_args().budgets(), opts);
    }
    let out = args
        .out
        .clone()
        .ok_or_else(|| Error::Usage("--out DIR is required (or --resume DIR)".into()))?;
    let mut r = match &args.config {
        Some(p) => run::read_config::<A::Recipe>(p)?,
        None => a.recipe(),
    };
    a.apply(&mut r)?;
    run::start(r, &out, opts)
}

/// Parses a task's `train` options from command-line style arguments (`["--out", "runs/x",
/// "--epochs", "3"]`) as `rnnkit <task> train` does; a bad one is a one-line error naming
/// it.
pub fn parse<A: TrainOptions>(command: &'static str, args: &[String]) -> Result<A> {
    let cmd = A::augment_args(clap::Command::new(command).no_binary_name(true));
    let m = cmd.try_get_matches_from(args).map_err(|e| {
        let text = e.render().to_string();
        let first = text.lines().next().unwrap_or("bad options").trim();
        Error::Usage(first.trim_start_matches("error: ").to_string())
    })?;
    A::from_arg_matches(&m).map_err(|e| Error::Usage(e.to_string()))
}
