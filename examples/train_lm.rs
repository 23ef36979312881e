//! rnnkit as a library: describe a small character LSTM run, train it for a few thousand
//! characters with the one trainer (silently: no observers), then sample from it.
//! `cargo run --release --example train_lm`

use rnnkit::engine::optim::OptimKind;
use rnnkit::task::lm::recipe::{Corpus, LmRun};
use rnnkit::task::lm::{generate, Sampling};
use rnnkit::text::{read::Source, tokenizer::Kind};

fn main() -> anyhow::Result<()> {
    let text = include_str!("../README.md").repeat(4);
    let cut = (0..text.len() * 9 / 10)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    let corpus = Corpus {
        train: Source::Memory(text[..cut].into()),
        valid: Some(Source::Memory(text[cut..].into())),
        test: None,
    };
    // The library's defaults, made small: a 2×64 character LSTM, Adam, 20k characters.
    let mut run = LmRun::recipe(None);
    (run.data.tokenizer, run.data.batch, run.data.bptt) = (Kind::Char, 8, 32);
    (run.model.embed, run.model.rnn.hidden) = (32, 64);
    run.train.optim = OptimKind::named("adam", 0.0, None)?;
    (run.train.lr, run.train.clip, run.train.token_budget) = (3e-3, 5.0, Some(20_000));
    let mut task = run.build(&corpus, &mut |note| eprintln!("{note}"))?;
    let out = std::env::temp_dir().join("rnnkit-example-train-lm");
    let _ = std::fs::remove_dir_all(&out);
    let record = serde_json::to_value(&run)?;
    let s = rnnkit::train::train(&mut task, &run.train, &out, &record, None, &mut [])?;
    let loss = s.best.map_or(f64::NAN, |e| e.loss);
    println!(
        "{} chars, validation {loss:.3} nats/char",
        s.progress.tokens
    );
    let sampling = Sampling {
        temperature: 0.8,
        top_k: 0,
        top_p: 1.0,
        greedy: false,
    };
    let mut rng = <rand::rngs::StdRng as rand::SeedableRng>::seed_from_u64(1);
    let (prompt, mut sample) = (task.tokenizer.encode("rnnkit "), String::from("rnnkit "));
    generate(&mut task.model, &prompt, 80, &sampling, &mut rng, |id| {
        sample.push_str(&task.tokenizer.token_text(id, false));
        true
    });
    println!("{sample}");
    Ok(())
}
