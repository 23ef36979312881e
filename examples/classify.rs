//! Sentence classification from Rust: train a BiLSTM with attention pooling on 20,000 SST-2
//! sentences for two epochs, load the best checkpoint, label new sentences with their class
//! probabilities, and see which words the attention pooling weighs.
//! `RNNKIT_DATA_DIR=../shared/data cargo run --release --example classify`

use rnnkit::run::{self, Options};
use rnnkit::task::classify::{self, recipe::ClsRun, Pooling};
use rnnkit::task::trace::TaskTrace;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let data = PathBuf::from(std::env::var_os("RNNKIT_DATA_DIR").ok_or_else(|| {
        anyhow::anyhow!("set RNNKIT_DATA_DIR to the corpora folder (it reads sst2/train.tsv)")
    })?);
    let text = std::fs::read_to_string(data.join("sst2/train.tsv"))?;
    let lines: Vec<&str> = text.lines().collect();
    let dir = std::env::temp_dir().join("rnnkit-example-classify");
    std::fs::create_dir_all(&dir)?;
    let header = lines[0];
    let part = |a: usize, b: usize| format!("{header}\n{}\n", lines[a..b].join("\n"));
    std::fs::write(dir.join("train.tsv"), part(1, 20_001))?;
    std::fs::write(dir.join("valid.tsv"), part(20_001, 21_001))?;

    let mut recipe = ClsRun::recipe();
    recipe.data.train = Some(dir.join("train.tsv"));
    recipe.data.valid = Some(dir.join("valid.tsv"));
    (recipe.model.embed, recipe.model.rnn.hidden) = (64, 64);
    (recipe.model.pooling, recipe.train.epochs) = (Pooling::Attention, 2);
    let opts = Options {
        overwrite: true,
        ..Default::default()
    };
    let summary = run::start(recipe, &dir.join("run"), opts)?;
    println!(
        "2 epochs on 20,000 sentences: validation accuracy {:.1}%",
        100.0 * summary.values["valid_accuracy"].as_f64().unwrap_or(0.0)
    );

    let mut clf = classify::Loaded::load(&dir.join("run/model.safetensors"))?;
    let texts = [
        "a charming , moving film",
        "dull , lifeless and far too long",
    ];
    for (t, p) in texts.iter().zip(clf.predict(&texts)) {
        println!("  {:35} {} (p {:.2})", t, p.label, p.prob);
    }
    let tr = clf.trace(texts[0])?;
    if let TaskTrace::Pooling { weights, .. } = &tr.task {
        println!("attention over \"{}\":", texts[0]);
        for (w, a) in tr.tokens.iter().zip(weights) {
            println!(
                "  {w:10} {a:.2} {}",
                "#".repeat((a * 40.0).round() as usize)
            );
        }
    }
    Ok(())
}
