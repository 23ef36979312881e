//! `rnnkit translate train | eval | predict | score`.

use super::common::{self, ComputeArgs};
use anyhow::bail;
use clap::{Args, Subcommand};
use rnnkit::error::Error;
use rnnkit::task::translate::Decoding;
use rnnkit::task::translate::{self as tr, options::TrainArgs};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum TranslateCmd {
    /// Train an encoder-decoder with attention (best checkpoint by validation BLEU).
    Train(Box<TrainArgs>),
    /// Perplexity (teacher-forced), BLEU and chrF of a model on a parallel set.
    Eval(EvalArgs),
    /// Translate a file or standard input line by line.
    Predict(PredictArgs),
    /// Corpus BLEU and chrF of a hypothesis file against a reference file, exactly as
    /// `sacrebleu REF < HYP` computes them (13a tokens, exponential smoothing).
    Score(ScoreArgs),
}

#[derive(Args)]
pub struct ScoreArgs {
    /// Reference translations, one a line.
    #[arg(long = "ref")]
    pub reference: PathBuf,
    /// System translations, one a line, aligned with the references.
    #[arg(long)]
    pub hyp: PathBuf,
    /// Lowercase both sides first (sacrebleu --lowercase).
    #[arg(long)]
    pub lowercase: bool,
    #[arg(long)]
    pub json: bool,
}

/// Beam search and its limits. Hypotheses are ranked by log p(y|x) / |y|^alpha (|y| with
/// its <eos>) and end at max-len-a · |x| + max-len-b tokens.
#[derive(Args, Clone, Debug)]
pub struct DecodeArgs {
    /// Beam size (1: greedy decoding).
    #[arg(long, default_value_t = Decoding::default().beam)]
    pub beam: usize,
    /// Length normalisation exponent (0: by probability alone).
    #[arg(long, default_value_t = Decoding::default().alpha)]
    pub alpha: f32,
    #[arg(long, default_value_t = Decoding::default().max_len_a)]
    pub max_len_a: f32,
    #[arg(long, default_value_t = Decoding::default().max_len_b)]
    pub max_len_b: usize,
    /// No <eos> before this many tokens (the cap still ends a translation).
    #[arg(long, default_value_t = Decoding::default().min_len)]
    pub min_len: usize,
    /// Replace each <unk> in the output by the source word it attends to most (OpenNMT's
    /// -replace_unk; word and char vocabularies).
    #[arg(long)]
    pub replace_unk: bool,
}

impl DecodeArgs {
    fn decoding(&self, n_best: usize) -> anyhow::Result<Decoding> {
        Decoding {
            beam: self.beam,
            alpha: self.alpha,
            max_len_a: self.max_len_a,
            max_len_b: self.max_len_b,
            n_best: n_best.clamp(1, self.beam.max(1)),
            attention: false,
            min_len: self.min_len,
            replace_unk: self.replace_unk,
        }
        .checked()
        .map_err(super::option_error)
    }
}

#[derive(Args)]
pub struct EvalArgs {
    /// A checkpoint written by `train` (model.safetensors).
    #[arg(long)]
    pub model: PathBuf,
    /// Source and target files (line-aligned).
    #[arg(long, num_args = 2, value_names = ["SRC", "TGT"])]
    pub data: Vec<PathBuf>,
    #[command(flatten)]
    pub decode: DecodeArgs,
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
    /// Sources, one a line (default: standard input).
    #[arg(long)]
    pub input: Option<PathBuf>,
    #[command(flatten)]
    pub decode: DecodeArgs,
    /// Print the n best translations of each line.
    #[arg(long, default_value_t = 1)]
    pub n_best: usize,
    /// Write one attention heatmap PNG a sentence into this folder.
    #[arg(long)]
    pub attention_map: Option<PathBuf>,
    /// One JSON object a line: translation, score and the attention weights.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub compute: ComputeArgs,
}

pub fn run(c: TranslateCmd) -> anyhow::Result<()> {
    match c {
        TranslateCmd::Train(a) => train_cmd(*a),
        TranslateCmd::Eval(a) => eval_cmd(a),
        TranslateCmd::Predict(a) => predict_cmd(a),
        TranslateCmd::Score(a) => score(a),
    }
}

fn train_cmd(a: TrainArgs) -> anyhow::Result<()> {
    let s = common::train(&a)?;
    let res = &s.values;
    if a.run.json {
        super::print_json(res);
    } else {
        let f = |k: &str| res[k].as_f64().map_or("-".into(), |v| format!("{v:.2}"));
        println!(
            "valid BLEU {}  test BLEU {}  ({:.0} s)",
            f("valid_bleu"),
            f("test_bleu"),
            s.progress.wall_s
        );
    }
    Ok(())
}

fn eval_cmd(a: EvalArgs) -> anyhow::Result<()> {
    super::set_compute(&a.compute);
    let decoding = a.decode.decoding(1)?;
    let mut task = tr::load(&a.model)?;
    let pairs = rnnkit::text::corpus::read_parallel(&a.data[0], &a.data[1])?;
    // The notes of sources cut to the model's limit (the library's evaluation cuts them).
    encode_sources(&task, pairs.iter().map(|p| p.0.as_str()));
    let r = serde_json::Value::Object(task.evaluate(&pairs, &decoding)?);
    if a.json {
        super::print_json(&r);
    } else {
        println!(
            "BLEU {:.2} (lowercased {:.2})  chrF {:.2}  perplexity {:.2} (teacher-forced)  {} sentences",
            r["bleu"].as_f64().unwrap_or(0.0),
            r["bleu_lowercase"].as_f64().unwrap_or(0.0),
            r["chrf"].as_f64().unwrap_or(0.0),
            r["ppl_teacher_forced"].as_f64().unwrap_or(0.0),
            pairs.len()
        );
    }
    Ok(())
}

/// Sources as ids, each cut to [`tr::MAX_TOKENS`] with a note naming its line.
fn encode_sources<'a>(task: &tr::TrTask, lines: impl Iterator<Item = &'a str>) -> Vec<Vec<u32>> {
    lines
        .enumerate()
        .map(|(i, l)| {
            let (x, full) = task.encode_src(l);
            if full > x.len() {
                eprintln!(
                    "rnnkit: note: line {}: {full} source tokens, translating the first {}",
                    i + 1,
                    x.len()
                );
            }
            x
        })
        .collect()
}

fn predict_cmd(a: PredictArgs) -> anyhow::Result<()> {
    super::set_compute(&a.compute);
    let d = Decoding {
        attention: a.attention_map.is_some() || a.json,
        ..a.decode.decoding(a.n_best)?
    };
    let mut task = tr::Loaded::load(&a.model)?;
    let lines = rnnkit::text::read::read_lines(a.input.as_deref())?;
    let refs: Vec<&str> = lines.iter().map(|l| l.as_str()).collect();
    let out = task.translate_texts(&refs, &d)?;
    if let Some(dir) = &a.attention_map {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let stdout = std::io::stdout();
    let mut w = std::io::BufWriter::new(stdout.lock());
    for (k, (line, t)) in lines.iter().zip(&out).enumerate() {
        if let Some(full) = t.cut_from {
            eprintln!(
                "rnnkit: note: line {}: {full} source tokens, translating the first {}",
                k + 1,
                t.source_tokens.len()
            );
        }
        if let (Some(dir), Some(h)) = (&a.attention_map, t.hypotheses.first()) {
            if !h.attention.is_empty() {
                let png = dir.join(format!("{:04}.png", k + 1));
                rnnkit::plot::attention_map(&png, &t.source_tokens, &h.tokens, &h.attention)?;
            }
        }
        if a.json {
            writeln!(
                w,
                "{}",
                serde_json::json!({"source": line, "source_tokens": t.source_tokens, "hypotheses": t.hypotheses})
            )?;
        } else if t.hypotheses.is_empty() {
            writeln!(w)?;
        } else {
            for h in t.hypotheses.iter().take(a.n_best.max(1)) {
                writeln!(w, "{}", h.translation)?;
            }
        }
    }
    Ok(())
}

fn lines(p: &Path) -> anyhow::Result<Vec<String>> {
    let text = rnnkit::text::read::read_text(p)?;
    Ok(text
        .lines()
        .map(|l| l.trim_end_matches('\r').to_string())
        .collect())
}

fn score(a: ScoreArgs) -> anyhow::Result<()> {
    let (refs, hyps) = (lines(&a.reference)?, lines(&a.hyp)?);
    if hyps.len() != refs.len() {
        return Err(Error::input(
            &a.hyp,
            hyps.len().min(refs.len()) + 1,
            format!(
                "{} lines, but the reference {} has {}; expected one translation a reference line",
                hyps.len(),
                a.reference.display(),
                refs.len()
            ),
        )
        .into());
    }
    if refs.is_empty() {
        bail!("{}: no lines to score", a.reference.display());
    }
    let b = rnnkit::metrics::bleu(&hyps, &refs, a.lowercase);
    let c = rnnkit::metrics::chrf(&hyps, &refs, a.lowercase);
    if a.json {
        super::print_json(&serde_json::json!({
            "bleu": b.bleu, "chrf": c, "precisions": b.precisions, "brevity_penalty": b.brevity_penalty,
            "sys_len": b.sys_len, "ref_len": b.ref_len, "lowercase": a.lowercase, "tokenize": "13a",
        }));
    } else {
        let p: Vec<String> = b.precisions.iter().map(|p| format!("{p:.1}")).collect();
        println!(
            "BLEU = {:.2} {} (BP = {:.3} ratio = {:.3} hyp_len = {} ref_len = {})  chrF2 = {:.2}",
            b.bleu,
            p.join("/"),
            b.brevity_penalty,
            b.sys_len as f64 / b.ref_len.max(1) as f64,
            b.sys_len,
            b.ref_len,
            c
        );
    }
    Ok(())
}
