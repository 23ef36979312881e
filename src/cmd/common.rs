//! Option groups every task's `train` shares, flattened into each command: the recurrent
//! stack, the embeddings, the optimizer and schedule, the tokenizer, and the run (output,
//! resume, threads, reporting). Each option is `None` unless given, so it only overrides
//! the recipe (a preset, a config.json, or the library's defaults): no default is written
//! here.

use clap::Args;
use rnnkit::engine::cell::CellKind;
use rnnkit::engine::dropout::DropoutKind;
use rnnkit::engine::init::Init;
use rnnkit::engine::norm::NormKind;
use rnnkit::engine::optim::{OptimKind, Schedule};
use rnnkit::engine::rnn::RnnConfig;
use rnnkit::text::tokenizer::Kind;
use rnnkit::train::TrainConfig;
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
    pub embed_init: Option<rnnkit::task::lm::EmbedInit>,
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
    pub on_nan: Option<rnnkit::train::NanPolicy>,
}

impl OptimArgs {
    pub fn apply(&self, t: &mut TrainConfig) -> anyhow::Result<()> {
        let (wd, mom) = match t.optim {
            OptimKind::Sgd { momentum } => (None, momentum),
            OptimKind::Adam { weight_decay, .. } | OptimKind::AdamW { weight_decay, .. } => {
                (Some(weight_decay), 0.0)
            }
        };
        if let Some(o) = &self.optim {
            let before = t.optim;
            t.optim = OptimKind::named(o, self.momentum.unwrap_or(0.0), self.weight_decay)
                .map_err(|e| anyhow::anyhow!("--optim {e}"))?;
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
    pub fn budgets(&self) -> rnnkit::run::Budgets {
        rnnkit::run::Budgets {
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
    /// Tokens seen fewer times become <unk> (char and word).
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
    pub precision: Option<rnnkit::engine::bf16::Precision>,
}

/// `--threads`: a count from 1 to 1024 (0 used to mean 1 without a word).
fn parse_threads(s: &str) -> Result<usize, String> {
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

/// Trains with the library's run: resumes `--resume DIR` (keeping its options but the
/// budgets), or starts the recipe (from `--config`, or `recipe()`) with the options given
/// applied (`apply`) in `--out`. Shows a progress bar unless `--quiet`; Ctrl-C and SIGTERM
/// save and stop.
pub fn train<R: rnnkit::run::Recipe>(
    args: &RunArgs,
    optim: &OptimArgs,
    recipe: impl FnOnce() -> R,
    apply: impl FnOnce(&mut R) -> anyhow::Result<()>,
) -> anyhow::Result<rnnkit::run::RunSummary> {
    use rnnkit::run;
    let mut bar = rnnkit::train::ProgressBar::default();
    let mut note = note(args.quiet);
    let opts = run::Options {
        overwrite: args.overwrite,
        signals: true,
        curves: true,
        compute: run::Compute {
            threads: args.compute.threads,
            precision: args.compute.precision,
        },
        observer: if args.quiet { None } else { Some(&mut bar) },
        note: Some(&mut note),
    };
    if let Some(dir) = &args.resume {
        if args.out.as_ref().is_some_and(|o| o != dir) {
            anyhow::bail!("--resume continues the run in its own folder; leave out --out or give the same folder");
        }
        return Ok(run::resume::<R>(dir, &optim.budgets(), opts)?);
    }
    let out = args
        .out
        .clone()
        .ok_or_else(|| anyhow::anyhow!("--out DIR is required (or --resume DIR)"))?;
    let mut r = match &args.config {
        Some(p) => run::read_config::<R>(p)?,
        None => recipe(),
    };
    apply(&mut r)?;
    Ok(run::start(r, &out, opts)?)
}

/// Prints a library remark (pretrained coverage, skipped pairs) unless `--quiet`.
pub fn note(quiet: bool) -> impl FnMut(String) {
    move |m| {
        if !quiet {
            eprintln!("{m}");
        }
    }
}
