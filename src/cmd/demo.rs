//! `rnnkit demo`: trains a small character LSTM for about two minutes, then prints a
//! sample. Uses tinyshakespeare when it can be found, otherwise rnnkit's own source code,
//! embedded at build time, so the demo runs offline on a fresh machine.

use clap::Args;
use rnnkit::task::lm::recipe::LmRun;
use rnnkit::task::lm::{EmbedInit, LanguageModel, LmTask, Sampling};
use rnnkit::text::tokenizer::{Kind, Tokenizer, TrainOptions};
use rnnkit::train::{self, TrainConfig};

const OWN_SOURCES: &[&str] = &[
    include_str!("../task/lm/model.rs"),
    include_str!("../task/lm/generate.rs"),
    include_str!("../train/mod.rs"),
    include_str!("../engine/rnn.rs"),
    include_str!("../engine/dir/forward.rs"),
    include_str!("../engine/cell.rs"),
    include_str!("../engine/norm.rs"),
    include_str!("../engine/optim.rs"),
    include_str!("../text/tokenizer.rs"),
    include_str!("../checkpoint.rs"),
];

#[derive(Args)]
pub struct DemoArgs {
    /// Minutes of training.
    #[arg(long, default_value_t = 2.0)]
    pub minutes: f64,
    /// Where the model goes (default: a folder under the system temp dir).
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub compute: super::common::ComputeArgs,
}

pub fn run(a: DemoArgs) -> anyhow::Result<()> {
    super::set_compute(&a.compute);
    let (name, text) = match rnnkit::data::resolve("tinyshakespeare") {
        Ok(dir) => (
            "tinyshakespeare",
            rnnkit::text::read::read_nonempty(&dir.join("input.txt"))?,
        ),
        Err(_) => (
            "rnnkit's own source code (tinyshakespeare not found)",
            OWN_SOURCES.concat(),
        ),
    };
    eprintln!(
        "Training a 2x256 character LSTM on {name} for {:.1} minutes...",
        a.minutes
    );
    let cut = text
        .char_indices()
        .nth(text.chars().count() * 95 / 100)
        .map_or(text.len(), |c| c.0);
    let tok = Tokenizer::train(
        &[&text[..cut]],
        &TrainOptions {
            kind: Kind::Char,
            min_freq: 1,
            max_size: None,
        },
    )?;
    // The defaults with a 2×256 LSTM over 128-wide embeddings, trained with Adam.
    let mut run = LmRun::recipe(None);
    let cfg = &mut run.model;
    (cfg.vocab, cfg.embed, cfg.rnn.input, cfg.rnn.hidden) = (tok.len(), 128, 128, 256);
    // nn.Embedding's N(0,1) learns much faster in the first epoch than U(±0.1) (valid
    // 1.71 against 1.85 nats/char after one tinyshakespeare epoch; docs/results.md), and
    // the demo has two minutes. The char-shakespeare preset uses it too.
    cfg.embed_init = EmbedInit::TorchDefault;
    cfg.validate()?;
    let cfg = cfg.clone();
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let model = LanguageModel::new(cfg, &mut rng);
    let (train_ids, valid_ids) = (tok.encode(&text[..cut]), tok.encode(&text[cut..]));
    let mut task = LmTask::new(model, tok, &train_ids, Some(valid_ids), 32, 64, false);
    task.eval_batch = 16;
    task.eval_bptt = 100;
    let out = a
        .out
        .unwrap_or_else(|| std::env::temp_dir().join("rnnkit-demo"));
    let _ = std::fs::remove_file(out.join(train::STATE_FILE));
    let _ = std::fs::remove_file(out.join("metrics.jsonl"));
    let tcfg = TrainConfig {
        epochs: 1000,
        time_budget_min: Some(a.minutes),
        lr: 3e-3,
        optim: rnnkit::engine::optim::OptimKind::named("adam", 0.0, None)?,
        clip: 5.0,
        log_every: 20,
        ..run.train
    };
    let s = train::train(
        &mut task,
        &tcfg,
        &out,
        &serde_json::json!({"demo": true}),
        None,
        &mut [&mut train::ProgressBar::default()],
    )?;
    let (mut best, tok) = rnnkit::task::lm::load(&out.join(train::MODEL_FILE))?;
    eprintln!(
        "Validation loss {:.3} nats/char after {:.0} s; model in {}. A sample:\n",
        s.best.map_or(f64::NAN, |e| e.loss),
        s.progress.wall_s,
        out.display()
    );
    let prompt = if name == "tinyshakespeare" {
        "ROMEO:\n"
    } else {
        "pub fn "
    };
    let ids = tok.encode(prompt);
    let mut text = prompt.to_string();
    let sampling = Sampling {
        temperature: 0.8,
        top_k: 0,
        top_p: 1.0,
        greedy: false,
    };
    rnnkit::task::lm::generate(&mut best, &ids, 400, &sampling, &mut rng, |id| {
        text.push_str(&tok.token_text(id, false));
        true
    });
    println!("{text}");
    Ok(())
}
