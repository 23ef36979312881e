//! `rnnkit tag train | eval | predict | score`.

use super::common::{self, ComputeArgs};
use anyhow::bail;
use clap::{Args, Subcommand};
use rnnkit::error::Error;
use rnnkit::metrics::{NerCounter, NerScores};
use rnnkit::task::tag;
use rnnkit::task::tag::options::{ConllArgs, TrainArgs};
use rnnkit::text::conll::{self, Scheme};
use std::io::Write;
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum TagCmd {
    /// Train a tagger (BiLSTM with character features, CRF or softmax) on CoNLL files.
    Train(Box<TrainArgs>),
    /// Entity precision, recall and F1 (conlleval's counting) of a model on a CoNLL file.
    Eval(EvalArgs),
    /// Tag a CoNLL file, or plain text with one sentence a line.
    Predict(PredictArgs),
    /// Score a predicted CoNLL file against a gold one, as conlleval does.
    Score(ScoreArgs),
}

#[derive(Args)]
pub struct EvalArgs {
    /// A checkpoint written by `train` (model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// A CoNLL file with gold tags.
    #[arg(long)]
    pub data: PathBuf,
    #[command(flatten)]
    pub conll: ConllArgs,
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
    /// Input file (default: standard input).
    #[arg(long)]
    pub input: Option<PathBuf>,
    /// The input is plain text, one sentence a line, split into tokens at whitespace and
    /// around every punctuation mark (as the word tokenizer splits); default: CoNLL columns.
    #[arg(long)]
    pub text: bool,
    /// conll (the input's columns plus the predicted tag), json (entities with token and
    /// character offsets) or html (entities highlighted by type). Default: conll for CoNLL
    /// input, bracketed entities for text (coloured on a terminal).
    #[arg(long)]
    pub format: Option<String>,
    #[command(flatten)]
    pub conll: ConllArgs,
    /// With a CRF, give each entity's probability (the mean marginal of its tags).
    #[arg(long)]
    pub probs: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

#[derive(Args)]
pub struct ScoreArgs {
    /// The reference CoNLL file.
    #[arg(long)]
    pub gold: PathBuf,
    /// The predicted CoNLL file (same tokens, line for line).
    #[arg(long)]
    pub pred: PathBuf,
    #[command(flatten)]
    pub conll: ConllArgs,
    /// Print the results as one JSON object, the last line of the output.
    #[arg(long)]
    pub json: bool,
}

pub fn run(c: TagCmd) -> anyhow::Result<()> {
    match c {
        TagCmd::Train(a) => train_cmd(*a),
        TagCmd::Eval(a) => eval_cmd(a),
        TagCmd::Predict(a) => predict_cmd(a),
        TagCmd::Score(a) => score_cmd(a),
    }
}

fn train_cmd(a: TrainArgs) -> anyhow::Result<()> {
    let s = common::train(&a)?;
    let res = &s.values;
    if a.run.json {
        super::print_json(res);
    } else {
        println!(
            "valid F1 {}  test F1 {}  ({:.0} s)",
            pct(res.get("valid_f1")),
            pct(res.get("test_f1")),
            s.progress.wall_s
        );
    }
    Ok(())
}

fn pct(v: Option<&serde_json::Value>) -> String {
    v.and_then(|v| v.as_f64())
        .map_or("-".into(), |v| format!("{:.2}", 100.0 * v))
}

fn print_scores(s: &NerScores, json: bool) {
    if json {
        super::print_json(&serde_json::json!({
            "precision": s.precision, "recall": s.recall, "f1": s.f1, "accuracy": s.accuracy,
            "per_type": s.per_type, "tokens": s.tokens,
            "gold_entities": s.gold_entities, "predicted_entities": s.predicted_entities,
        }));
        return;
    }
    println!(
        "precision {:.2}  recall {:.2}  F1 {:.2}  accuracy {:.2}  ({} tokens, {} gold and {} predicted entities)",
        100.0 * s.precision,
        100.0 * s.recall,
        100.0 * s.f1,
        100.0 * s.accuracy,
        s.tokens,
        s.gold_entities,
        s.predicted_entities
    );
    for (ty, p) in &s.per_type {
        println!(
            "  {ty:12} precision {:6.2}  recall {:6.2}  F1 {:6.2}  support {}",
            100.0 * p.precision,
            100.0 * p.recall,
            100.0 * p.f1,
            p.support
        );
    }
}

fn eval_cmd(a: EvalArgs) -> anyhow::Result<()> {
    super::set_compute(&a.compute);
    let mut tagger = tag::Loaded::load(&a.model)?;
    let scheme = a.conll.scheme.unwrap_or(Scheme::Iob2);
    print_scores(
        &tagger.evaluate(&a.data, a.conll.columns(), scheme)?,
        a.json,
    );
    Ok(())
}

fn score_cmd(a: ScoreArgs) -> anyhow::Result<()> {
    let cols = a.conll.columns();
    let gold = conll::read(&a.gold, cols)?;
    if let Some(scheme) = a.conll.scheme {
        conll::validate_file(&a.gold, &gold, scheme)?;
    }
    let pred = conll::read(&a.pred, cols)?;
    if gold.len() != pred.len() {
        bail!(
            "{}: {} sentences, but {} has {}; the files must hold the same sentences",
            a.pred.display(),
            pred.len(),
            a.gold.display(),
            gold.len()
        );
    }
    let mut n = NerCounter::default();
    for (g, p) in gold.iter().zip(&pred) {
        if g.tokens.len() != p.tokens.len() {
            return Err(Error::input(
                &a.pred,
                p.line,
                format!(
                    "{} tokens; the gold sentence at line {} has {}",
                    p.tokens.len(),
                    g.line,
                    g.tokens.len()
                ),
            )
            .into());
        }
        n.add(&g.tags, &p.tags);
    }
    print_scores(&n.scores(), a.json);
    Ok(())
}

/// One input sentence: its text line (plain text), or its tokens and the raw lines to echo
/// (CoNLL).
#[derive(Default)]
struct Input {
    tokens: Vec<String>,
    text: String,
    lines: Vec<String>,
}

fn read_inputs(a: &PredictArgs) -> anyhow::Result<Vec<Input>> {
    let name = a.input.clone().unwrap_or_else(|| PathBuf::from("<stdin>"));
    let lines = rnnkit::text::read::read_lines(a.input.as_deref())?;
    let mut out = Vec::new();
    if a.text {
        return Ok(lines
            .into_iter()
            .map(|text| Input {
                text,
                ..Default::default()
            })
            .collect());
    }
    // CoNLL: keep every line of a sentence to echo it with the predicted tag appended.
    let cols = a.conll.columns();
    let mut cur = Input::default();
    let mut docstart = Vec::new();
    for (n, line) in lines.into_iter().enumerate() {
        if line.trim().is_empty() {
            if !cur.tokens.is_empty() {
                out.push(std::mem::take(&mut cur));
            }
            continue;
        }
        if line.starts_with("-DOCSTART-") {
            docstart.push(line);
            continue;
        }
        let fields: Vec<&str> = if line.contains('\t') {
            line.split('\t').collect()
        } else {
            line.split_whitespace().collect()
        };
        let i = if cols.token < 0 {
            fields.len() as isize + cols.token
        } else {
            cols.token
        };
        let tok = usize::try_from(i)
            .ok()
            .and_then(|i| fields.get(i))
            .ok_or_else(|| Error::input(&name, n + 1, format!("no token column {}", cols.token)))?;
        cur.tokens.push(tok.to_string());
        cur.lines.push(line.clone());
    }
    if !cur.tokens.is_empty() {
        out.push(cur);
    }
    Ok(out)
}

fn predict_cmd(a: PredictArgs) -> anyhow::Result<()> {
    super::set_compute(&a.compute);
    let mut tagger = tag::Loaded::load(&a.model)?;
    tagger.probs = a.probs;
    let inputs = read_inputs(&a)?;
    let out_scheme = a.conll.scheme.unwrap_or(Scheme::Iob2);
    let format = a.format.clone().unwrap_or_else(|| {
        if a.text {
            "text".into()
        } else {
            "conll".into()
        }
    });
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    if !matches!(format.as_str(), "conll" | "json" | "html" | "text") {
        bail!("--format {format:?}: expected conll, json, html or text");
    }
    let tagged = if a.text {
        let texts: Vec<&str> = inputs.iter().map(|i| i.text.as_str()).collect();
        tagger.tag_texts(&texts)?
    } else {
        let sents: Vec<Vec<String>> = inputs.iter().map(|i| i.tokens.clone()).collect();
        tagger.tag_tokens(&sents)?
    };
    let tags = |t: &tag::Tagged| conll::convert(&t.tags, Scheme::Iob2, out_scheme);
    if format == "conll" {
        for (inp, t) in inputs.iter().zip(&tagged) {
            for (i, tag) in tags(t).iter().enumerate() {
                match inp.lines.get(i) {
                    Some(l) => {
                        let sep = if l.contains('\t') { "\t" } else { " " };
                        writeln!(w, "{l}{sep}{tag}")?
                    }
                    None => writeln!(w, "{}\t{tag}", t.tokens[i])?,
                }
            }
            writeln!(w)?;
        }
        return Ok(());
    }
    let docs: Vec<serde_json::Value> = tagged
        .iter()
        .map(|t| {
            let ents: Vec<serde_json::Value> = t
                .entities
                .iter()
                .map(|e| {
                    let mut v = serde_json::json!({"type": e.kind, "start": e.start, "end": e.end,
                        "text": e.text});
                    if a.text {
                        v["char_start"] = e.char_start.into();
                        v["char_end"] = e.char_end.into();
                    }
                    if let Some(p) = e.prob {
                        v["prob"] = p.into();
                    }
                    v
                })
                .collect();
            serde_json::json!({"tokens": t.tokens, "tags": tags(t), "entities": ents})
        })
        .collect();
    match format.as_str() {
        "json" => {
            for d in &docs {
                writeln!(w, "{d}")?;
            }
        }
        "html" => write_html(&mut w, &docs)?,
        _ => {
            use std::io::IsTerminal;
            let colour = std::io::stdout().is_terminal();
            for d in &docs {
                writeln!(w, "{}", bracketed(d, colour))?;
            }
        }
    }
    Ok(())
}

/// Tokens with entities in brackets (`[PER John Smith]`), in colour on a terminal.
fn bracketed(doc: &serde_json::Value, colour: bool) -> String {
    let tokens: Vec<&str> = doc["tokens"]
        .as_array()
        .map(|a| a.iter().filter_map(|t| t.as_str()).collect())
        .unwrap_or_default();
    let mut out = Vec::new();
    let mut i = 0;
    let ents = doc["entities"].as_array().cloned().unwrap_or_default();
    for e in &ents {
        let (s, en) = (
            e["start"].as_u64().unwrap_or(0) as usize,
            e["end"].as_u64().unwrap_or(0) as usize,
        );
        out.extend(tokens[i..s].iter().map(|t| t.to_string()));
        let ty = e["type"].as_str().unwrap_or("");
        let text = tokens[s..en].join(" ");
        out.push(if colour {
            format!("\x1b[1;{}m[{ty} {text}]\x1b[0m", 31 + (type_colour(ty) % 6))
        } else {
            format!("[{ty} {text}]")
        });
        i = en;
    }
    out.extend(tokens[i..].iter().map(|t| t.to_string()));
    out.join(" ")
}

fn type_colour(ty: &str) -> usize {
    ty.bytes()
        .fold(7usize, |a, b| a.wrapping_mul(31).wrapping_add(b as usize))
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn write_html(w: &mut dyn Write, docs: &[serde_json::Value]) -> std::io::Result<()> {
    const PALETTE: [&str; 6] = [
        "#fde2e4", "#cde7f0", "#d8f3dc", "#fff1c1", "#e2d9f3", "#ffd8be",
    ];
    writeln!(
        w,
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>rnnkit tag predict</title>\n<style>body{{font-family:sans-serif;line-height:2}} mark{{padding:0.1em 0.3em;border-radius:0.3em}} mark sub{{font-size:0.7em;font-weight:bold;margin-left:0.3em}}</style></head><body>"
    )?;
    for d in docs {
        let tokens: Vec<String> = d["tokens"]
            .as_array()
            .map(|a| a.iter().filter_map(|t| t.as_str()).map(escape).collect())
            .unwrap_or_default();
        let mut line = Vec::new();
        let mut i = 0;
        for e in d["entities"].as_array().cloned().unwrap_or_default() {
            let (s, en) = (
                e["start"].as_u64().unwrap_or(0) as usize,
                e["end"].as_u64().unwrap_or(0) as usize,
            );
            line.extend(tokens[i..s].iter().cloned());
            let ty = e["type"].as_str().unwrap_or("");
            line.push(format!(
                "<mark style=\"background:{}\">{}<sub>{}</sub></mark>",
                PALETTE[type_colour(ty) % PALETTE.len()],
                tokens[s..en].join(" "),
                escape(ty)
            ));
            i = en;
        }
        line.extend(tokens[i..].iter().cloned());
        writeln!(w, "<p>{}</p>", line.join(" "))?;
    }
    writeln!(w, "</body></html>")
}
