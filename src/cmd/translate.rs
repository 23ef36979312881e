//! `rnnkit translate score` (training and decoding come with the translation task).

use anyhow::bail;
use clap::{Args, Subcommand};
use rnnkit::error::Error;
use std::path::{Path, PathBuf};

#[derive(Subcommand)]
pub enum TranslateCmd {
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

pub fn run(c: TranslateCmd) -> anyhow::Result<()> {
    match c {
        TranslateCmd::Score(a) => score(a),
    }
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
