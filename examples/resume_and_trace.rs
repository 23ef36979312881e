//! rnnkit's run from Rust: start a small character GRU language model in a folder, stop it
//! part-way as Ctrl-C would (an observer raises the interrupt flag), resume it from the
//! folder to the end, then look inside the best checkpoint: the trace of a line, shown as
//! the text with the cell whose activation varies most, and the top next characters.
//! `cargo run --release --example resume_and_trace`

use rnnkit::error::Error;
use rnnkit::run::{self, Budgets, Options};
use rnnkit::task::lm::{self, recipe::LmRun};
use rnnkit::task::trace::TaskTrace;
use rnnkit::train::Observer;

/// Counts steps and raises the interrupt flag after `stop_at`, as a Ctrl-C would.
struct StopAfter {
    steps: u64,
    stop_at: u64,
}

impl Observer for StopAfter {
    fn step(&mut self, _msg: Option<&str>) {
        self.steps += 1;
        if self.steps == self.stop_at {
            rnnkit::train::interrupt_flag().store(true, std::sync::atomic::Ordering::Relaxed);
        }
    }
}

fn main() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join("rnnkit-example-resume");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let text = include_str!("../README.md");
    let cut = text.len() * 9 / 10;
    let cut = (0..=cut)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    std::fs::write(dir.join("train.txt"), text[..cut].repeat(3))?;
    std::fs::write(dir.join("valid.txt"), &text[cut..])?;

    // The library's defaults, made small: a 1×64 character GRU, three epochs.
    let mut recipe = LmRun::recipe(None);
    recipe.data.train = Some(dir.join("train.txt"));
    recipe.data.valid = Some(dir.join("valid.txt"));
    recipe.data.tokenizer = rnnkit::text::tokenizer::Kind::Char;
    (recipe.data.batch, recipe.data.bptt) = (16, 32);
    (
        recipe.model.embed,
        recipe.model.rnn.hidden,
        recipe.model.rnn.layers,
    ) = (32, 64, 1);
    recipe.model.rnn.cell = rnnkit::engine::cell::CellKind::Gru;
    recipe.model.dropout = 0.0;
    recipe.train.optim = rnnkit::engine::optim::OptimKind::named("adam", 0.0, None)?;
    (recipe.train.lr, recipe.train.clip, recipe.train.epochs) = (3e-3, 5.0, 3);

    let out = dir.join("run");
    let mut stop = StopAfter {
        steps: 0,
        stop_at: 40,
    };
    let opts = Options {
        observer: Some(&mut stop),
        ..Default::default()
    };
    match run::start(recipe, &out, opts) {
        Err(Error::Interrupted(_)) => println!("stopped after 40 steps; the state is saved"),
        other => anyhow::bail!("expected an interrupted run, got {other:?}"),
    }
    let summary = run::resume::<LmRun>(&out, &Budgets::default(), Options::default())?;
    println!(
        "resumed to the end: {} epochs, {} characters, validation perplexity {:.2}",
        summary.values["epochs_done"],
        summary.values["tokens"],
        summary.values["valid_ppl"].as_f64().unwrap_or(f64::NAN)
    );

    let (mut model, tok) = lm::load(&out.join("model.safetensors"))?;
    let line = "Every command has `--help`;";
    let tr = lm::trace(&mut model, &tok, line, 3)?;
    let (t, h) = (tr.stack.t, tr.stack.hidden);
    let d = &tr.stack.dirs[0];
    // The unit whose state varies most along the line.
    let spread = |j: usize| {
        let v = (0..t).map(|i| d.h[i * h + j]);
        v.clone().fold(f32::MIN, f32::max) - v.fold(f32::MAX, f32::min)
    };
    let unit = (0..h).fold(0, |a, j| if spread(j) > spread(a) { j } else { a });
    println!("unit {unit} of {h} along the line (+ above 0.5, - below -0.5):");
    let marks: String = (0..t)
        .map(|i| match d.h[i * h + unit] {
            v if v > 0.5 => '+',
            v if v < -0.5 => '-',
            _ => ' ',
        })
        .collect();
    println!("  {}\n  {marks}", tr.tokens.concat());
    if let TaskTrace::NextTokens { next } = &tr.task {
        for (tok, top) in tr.tokens.iter().zip(next).take(6) {
            let top: Vec<String> = top.iter().map(|(s, p)| format!("{s:?} {p:.2}")).collect();
            println!("  after {tok:?}: {}", top.join(", "));
        }
    }
    println!("gates per token: {:?}", tr.gate_names);
    Ok(())
}
