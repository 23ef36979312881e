//! Named-entity tagging from Rust: train a small BiLSTM-CRF on 6,000 CoNLL-2003 sentences
//! for six epochs, load the best checkpoint, tag a sentence of plain text into entities
//! with their character spans, and look at the tag marginals of its words.
//! `RNNKIT_DATA_DIR=../shared/data cargo run --release --example tag`

use rnnkit::run::{self, Options};
use rnnkit::task::tag::{self, recipe::TagRun};
use rnnkit::task::trace::TaskTrace;
use std::path::PathBuf;

fn main() -> anyhow::Result<()> {
    let data = PathBuf::from(std::env::var_os("RNNKIT_DATA_DIR").ok_or_else(|| {
        anyhow::anyhow!("set RNNKIT_DATA_DIR to the corpora folder (it reads conll2003/train.txt)")
    })?);
    let text = std::fs::read_to_string(data.join("conll2003/train.txt"))?;
    let sents: Vec<&str> = text.split("\n\n").collect();
    let dir = std::env::temp_dir().join("rnnkit-example-tag");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join("train.txt"), sents[1..6001].join("\n\n") + "\n\n")?;
    std::fs::write(
        dir.join("valid.txt"),
        sents[6001..6501].join("\n\n") + "\n\n",
    )?;

    // The library's recipe (Lample et al.'s BiLSTM-CRF with character features), smaller.
    let mut recipe = TagRun::recipe(None);
    recipe.data.train = Some(dir.join("train.txt"));
    recipe.data.valid = Some(dir.join("valid.txt"));
    (
        recipe.model.word_dim,
        recipe.model.rnn.hidden,
        recipe.train.epochs,
    ) = (50, 50, 6);
    let opts = Options {
        overwrite: true,
        ..Default::default()
    };
    let summary = run::start(recipe, &dir.join("run"), opts)?;
    println!(
        "6 epochs on 6,000 sentences: validation F1 {:.1}",
        100.0 * summary.values["valid_f1"].as_f64().unwrap_or(0.0)
    );

    let mut tagger = tag::Loaded::load(&dir.join("run/model.safetensors"))?;
    let line = "Germany 's Angela Merkel met Emmanuel Macron in Paris on Monday .";
    for t in tagger.tag_texts(&[line])? {
        for e in &t.entities {
            let p = e.prob.unwrap_or(f32::NAN);
            println!(
                "  {:5} {:20} characters {}..{}  p {p:.2}",
                e.kind, e.text, e.char_start, e.char_end
            );
        }
    }
    let tr = tagger.trace(line)?;
    if let TaskTrace::TagMarginals {
        labels, marginals, ..
    } = &tr.task
    {
        println!("the most likely tag of each word, from the CRF marginals:");
        for (w, row) in tr.tokens.iter().zip(marginals.chunks(labels.len())) {
            let best = (0..row.len()).fold(0, |a, j| if row[j] > row[a] { j } else { a });
            println!("  {w:10} {:7} {:.2}", labels[best], row[best]);
        }
    }
    Ok(())
}
