//! Translation from Rust: train a small GRU encoder-decoder with additive attention on
//! 6,000 Multi30k German-English pairs for four epochs (about half a minute on 2 cores),
//! load the best checkpoint, translate with beam search, and print the attention of each
//! target word over the source.
//! `RNNKIT_DATA_DIR=../shared/data cargo run --release --example translate`

use rnnkit::run::{self, Options};
use rnnkit::task::translate::{self as tr, recipe::TrRun, Decoding};
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let data = PathBuf::from(std::env::var_os("RNNKIT_DATA_DIR").ok_or_else(|| {
        anyhow::anyhow!("set RNNKIT_DATA_DIR to the corpora folder (it reads multi30k/)")
    })?);
    let dir = std::env::temp_dir().join("rnnkit-example-translate");
    std::fs::create_dir_all(&dir)?;
    let mut files = Vec::new();
    for lang in ["de", "en"] {
        let text = std::fs::read_to_string(data.join(format!("multi30k/train.{lang}")))?;
        let lines: Vec<&str> = text.lines().collect();
        for (name, a, b) in [("train", 0, 6_000), ("valid", 6_000, 6_300)] {
            let p = dir.join(format!("{name}.{lang}"));
            std::fs::write(&p, lines[a..b].join("\n") + "\n")?;
            files.push(p);
        }
    }
    let mut recipe = TrRun::recipe();
    recipe.data.train = Some((files[0].clone(), files[2].clone()));
    recipe.data.valid = Some((files[1].clone(), files[3].clone()));
    (
        recipe.model.embed,
        recipe.model.encoder.hidden,
        recipe.model.decoder_hidden,
    ) = (64, 64, 128);
    (
        recipe.model.attn_dim,
        recipe.data.min_freq,
        recipe.train.epochs,
    ) = (64, 2, 4);
    let opts = Options {
        overwrite: true,
        ..Default::default()
    };
    let summary = run::start(recipe, &dir.join("run"), opts)?;
    println!(
        "4 epochs on 6,000 pairs: validation BLEU {:.1} (greedy, cased text)",
        summary.values["valid_bleu"].as_f64().unwrap_or(0.0)
    );

    let mut model = tr::Loaded::load(&dir.join("run/model.safetensors"))?;
    let d = Decoding {
        beam: 5,
        attention: true,
        ..Decoding::default()
    };
    let src = "Ein Mann fährt Fahrrad auf der Straße.";
    let t = model.translate_texts(&[src], &d)?.remove(0);
    let best = &t.hypotheses[0];
    println!("{src}\n-> {}", best.translation);
    println!("each target word's most attended source word:");
    for (w, row) in best.tokens.iter().zip(&best.attention) {
        let j = (0..row.len()).fold(0, |a, j| if row[j] > row[a] { j } else { a });
        println!("  {w:12} <- {:12} {:.2}", t.source_tokens[j], row[j]);
    }
    Ok(())
}
