//! `--help` shows each `train` option's default as the library's recipe has it: the options
//! are `None` unless given (they override a preset, a config.json or the recipe), so clap
//! cannot know the default; this reads it from the recipe itself, so it is written once.

use clap::Command;
use rnnkit::task::{classify, lm, tag, translate};

/// (option id, JSON pointer into the task's recipe) for every train option with a plain
/// default. The shared groups first, then each task's own.
const SHARED: &[(&str, &str)] = &[
    ("lr", "/train/lr"),
    ("clip", "/train/clip"),
    ("epochs", "/train/epochs"),
    ("seed", "/train/seed"),
    ("log_every", "/train/log_every"),
    ("eval_every", "/train/eval_every"),
    ("save_every", "/train/save_every"),
    ("patience", "/train/patience"),
    ("on_nan", "/train/on_nan"),
    ("dropout", "/model/dropout"),
    ("batch_size", "/data/batch"),
];

const LM: &[(&str, &str)] = &[
    ("bptt", "/data/bptt"),
    ("tokenizer", "/data/tokenizer"),
    ("min_freq", "/data/min_freq"),
    ("vocab_size", "/data/vocab_size"),
    ("sum_over_time", "/data/sum_over_time"),
    ("embed", "/model/embed"),
    ("cell", "/model/rnn/cell"),
    ("layers", "/model/rnn/layers"),
    ("norm", "/model/rnn/norm"),
];

const TAG: &[(&str, &str)] = &[
    ("embed", "/model/word_dim"),
    ("char_hidden", "/model/char_hidden"),
    ("cell", "/model/rnn/cell"),
    ("layers", "/model/rnn/layers"),
    ("hidden", "/model/rnn/hidden"),
    ("min_freq", "/data/min_freq"),
];

const CLASSIFY: &[(&str, &str)] = &[
    ("tokenizer", "/data/tokenizer"),
    ("min_freq", "/data/min_freq"),
    ("vocab_size", "/data/vocab_size"),
    ("embed", "/model/embed"),
    ("cell", "/model/rnn/cell"),
    ("layers", "/model/rnn/layers"),
    ("hidden", "/model/rnn/hidden"),
    ("pooling", "/model/pooling"),
];

const TRANSLATE: &[(&str, &str)] = &[
    ("tokenizer", "/data/tokenizer"),
    ("min_freq", "/data/min_freq"),
    ("vocab_size", "/data/vocab_size"),
    ("embed", "/model/embed"),
    ("cell", "/model/encoder/cell"),
    ("layers", "/model/encoder/layers"),
    ("hidden", "/model/encoder/hidden"),
    ("decoder_hidden", "/model/decoder_hidden"),
    ("decoder_cell", "/model/decoder_cell"),
    ("attention", "/model/attention"),
    ("label_smoothing", "/data/label_smoothing"),
];

/// A recipe as JSON, its floats as written (serialised as text first, so an f32 learning
/// rate of 0.001 reads 0.001, not its f64 widening).
fn json(r: &impl serde::Serialize) -> serde_json::Value {
    let text = serde_json::to_string(r).expect("a recipe serialises");
    serde_json::from_str(&text).expect("and parses back")
}

/// How a default reads in `--help`: strings bare, `null` as "none".
fn show(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        serde_json::Value::Null => Some("none".into()),
        _ => None,
    }
}

/// Appends `[default: …]` from `recipe` to the help of every option of `cmd` in `tables`.
fn annotate(mut cmd: Command, recipe: &serde_json::Value, tables: &[&[(&str, &str)]]) -> Command {
    for &(id, pointer) in tables.iter().flat_map(|t| t.iter()) {
        let Some(value) = recipe.pointer(pointer).and_then(show) else {
            continue;
        };
        if cmd.get_arguments().any(|a| a.get_id() == id) {
            cmd = cmd.mut_arg(id, |a| {
                let help = a.get_help().map(|h| h.to_string()).unwrap_or_default();
                let sep = if help.is_empty() { "" } else { " " };
                a.help(format!("{help}{sep}[default: {value}]"))
            });
        }
    }
    cmd
}

/// The CLI's command with every `train` subcommand's defaults shown.
pub fn annotated(cmd: Command) -> Command {
    let subs = [
        ("lm", json(&lm::recipe::LmRun::recipe(None)), LM),
        ("tag", json(&tag::recipe::TagRun::recipe(None)), TAG),
        (
            "classify",
            json(&classify::recipe::ClsRun::recipe()),
            CLASSIFY,
        ),
        (
            "translate",
            json(&translate::recipe::TrRun::recipe()),
            TRANSLATE,
        ),
    ];
    subs.into_iter().fold(cmd, |cmd, (name, recipe, own)| {
        cmd.mut_subcommand(name, |c| {
            c.mut_subcommand("train", |t| annotate(t, &recipe, &[SHARED, own]))
        })
    })
}
