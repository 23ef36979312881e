//! `rnnkit classify train | eval | predict`.

use super::common::{self, ComputeArgs};
use clap::{Args, Subcommand};
use rnnkit::error::Error;
use rnnkit::task::classify::options::{TrainArgs, TsvArgs};
use rnnkit::task::classify::{self, ClsScores};
use rnnkit::text::corpus::{read_tsv, Column};
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum ClsCmd {
    /// Train a sentence classifier (embeddings → BiLSTM → pooling → softmax) on TSV files.
    Train(Box<TrainArgs>),
    /// Accuracy, per-class precision/recall/F1, macro-F1 and the confusion matrix.
    Eval(EvalArgs),
    /// A label and its probability for each line of a file or of standard input.
    Predict(PredictArgs),
}

#[derive(Args)]
pub struct EvalArgs {
    /// A checkpoint written by `train` (model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// A labelled TSV file.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub tsv: TsvArgs,
    /// Also draw the confusion matrix into this PNG.
    #[arg(long)]
    pub confusion_png: Option<PathBuf>,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Print the results as one JSON object, the last line of the output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct PredictArgs {
    /// A checkpoint written by `train` (model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Input: one sentence a line (default: standard input).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// The input is a TSV; classify its text column (see --text-col).
    #[arg(long)]
    pub tsv: bool,
    #[command(flatten)]
    pub cols: TsvArgs,
    /// One JSON object a line with every class's probability.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

pub fn run(c: ClsCmd) -> anyhow::Result<()> {
    match c {
        ClsCmd::Train(a) => train_cmd(*a),
        ClsCmd::Eval(a) => eval_cmd(a),
        ClsCmd::Predict(a) => predict_cmd(a),
    }
}

fn scores_json(s: &ClsScores) -> serde_json::Value {
    serde_json::json!({
        "accuracy": s.accuracy, "macro_f1": s.macro_f1, "per_class": s.per_class,
        "labels": s.labels, "confusion": s.confusion,
    })
}

fn train_cmd(a: TrainArgs) -> anyhow::Result<()> {
    let s = common::train(&a)?;
    let res = &s.values;
    if a.run.json {
        super::print_json(res);
    } else {
        let p = |k: &str| {
            res[k]
                .as_f64()
                .map_or("-".into(), |v| format!("{:.2}%", 100.0 * v))
        };
        println!(
            "valid accuracy {}  test accuracy {}  ({:.0} s)",
            p("valid_accuracy"),
            p("test_accuracy"),
            s.progress.wall_s
        );
    }
    Ok(())
}

fn eval_cmd(a: EvalArgs) -> anyhow::Result<()> {
    super::set_compute(&a.compute);
    let mut clf = classify::Loaded::load(&a.model)?;
    let text_col = a
        .tsv
        .text_col
        .clone()
        .unwrap_or(Column::Name("sentence".into()));
    let label_col = a
        .tsv
        .label_col
        .clone()
        .unwrap_or(Column::Name("label".into()));
    let rows = read_tsv(&a.data, &text_col, Some(&label_col), Some(a.tsv.header))?;
    let rows: Vec<(String, String)> = rows
        .into_iter()
        .enumerate()
        .map(|(i, (t, l))| {
            l.map(|l| (t, l)).ok_or_else(|| {
                Error::input(&a.data, i + 1, format!("no label column {label_col:?}"))
            })
        })
        .collect::<Result<_, _>>()?;
    let (loss, s) = clf.evaluate(&rows, &a.data)?;
    if let Some(p) = &a.confusion_png {
        rnnkit::plot::heatmap(
            p,
            &format!("accuracy {:.2}%", 100.0 * s.accuracy),
            &s.labels,
            &s.confusion,
        )?;
    }
    if a.json {
        let mut v = scores_json(&s);
        v["loss"] = loss.into();
        v["sentences"] = rows.len().into();
        super::print_json(&v);
    } else {
        println!(
            "accuracy {:.2}%  macro-F1 {:.2}  ({} sentences)",
            100.0 * s.accuracy,
            100.0 * s.macro_f1,
            rows.len()
        );
        for (l, p) in &s.per_class {
            println!(
                "  {l:12} precision {:6.2}  recall {:6.2}  F1 {:6.2}  support {}",
                100.0 * p.precision,
                100.0 * p.recall,
                100.0 * p.f1,
                p.support
            );
        }
    }
    Ok(())
}

fn predict_cmd(a: PredictArgs) -> anyhow::Result<()> {
    super::set_compute(&a.compute);
    let mut clf = classify::Loaded::load(&a.model)?;
    let texts: Vec<String> = match (&a.input, a.tsv) {
        (Some(p), true) => {
            let col = a
                .cols
                .text_col
                .clone()
                .unwrap_or(Column::Name("sentence".into()));
            read_tsv(p, &col, None, Some(a.cols.header))?
                .into_iter()
                .map(|r| r.0)
                .collect()
        }
        (p, _) => rnnkit::text::read::read_lines(p.as_deref())?,
    };
    let refs: Vec<&str> = texts.iter().map(|t| t.as_str()).collect();
    let preds = clf.predict(&refs);
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    for (t, p) in texts.iter().zip(&preds) {
        if a.json {
            let all: serde_json::Map<String, serde_json::Value> = clf
                .labels
                .tokens
                .iter()
                .zip(&p.probs)
                .map(|(l, &v)| (l.clone(), v.into()))
                .collect();
            writeln!(
                w,
                "{}",
                serde_json::json!({"text": t, "label": p.label, "prob": p.prob, "probs": all})
            )?;
        } else {
            writeln!(w, "{}\t{:.4}", p.label, p.prob)?;
        }
    }
    Ok(())
}
