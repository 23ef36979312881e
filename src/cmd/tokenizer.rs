//! `rnnkit tokenizer train | stats` and `rnnkit data list | fetch`.

use anyhow::anyhow;
use clap::{Args, Subcommand};
use rnnkit::text::read::Lines;
use rnnkit::text::tokenizer::{Kind, Tokenizer, TrainOptions};
use std::path::PathBuf;

#[derive(Subcommand)]
pub enum TokCmd {
    /// Train a tokenizer and write it to a file.
    Train(TokTrainArgs),
    /// Vocabulary size, tokens per sentence and unknown rate on held-out text.
    Stats(TokStatsArgs),
    /// Token ids of each line of a file (one JSON array per line).
    Encode(TokEncodeArgs),
}

#[derive(Args)]
pub struct TokEncodeArgs {
    /// A tokenizer file from `rnnkit tokenizer train` (or a Hugging Face tokenizer.json).
    #[arg(long)]
    pub tokenizer: PathBuf,
    pub input: PathBuf,
}

#[derive(Args)]
pub struct TokTrainArgs {
    /// char, word, ptb or bpe.
    #[arg(long)]
    pub kind: String,
    #[arg(long)]
    pub vocab_size: Option<usize>,
    #[arg(long, default_value_t = 1)]
    pub min_freq: usize,
    #[arg(long)]
    pub out: PathBuf,
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

#[derive(Args)]
pub struct TokStatsArgs {
    /// Comma-separated kinds to compare (default: char,word,bpe).
    #[arg(long, default_value = "char,word,bpe")]
    pub kind: String,
    #[arg(long)]
    pub vocab_size: Option<usize>,
    #[arg(long, default_value_t = 1)]
    pub min_freq: usize,
    /// Held-out text.
    #[arg(long)]
    pub eval: PathBuf,
    pub train: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum DataCmd {
    /// Known datasets and whether they are found.
    List(DataListArgs),
    /// Find a dataset (RNNKIT_DATA_DIR, then the cache) or download it into the cache.
    Fetch(DataFetchArgs),
    /// Read a file with one of rnnkit's readers and report what it holds, or the first error.
    Check(DataCheckArgs),
}

#[derive(Args)]
pub struct DataCheckArgs {
    /// text, conll, parallel (two line-aligned files), parallel-tsv, labelled (TSV with a
    /// sentence and a label column) or vectors (word2vec/GloVe text).
    #[arg(long)]
    pub format: String,
    #[arg(required = true, num_args = 1..=2)]
    pub files: Vec<PathBuf>,
    /// conll: the token column (negative counts from the end).
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub token_col: isize,
    /// conll: the tag column (negative counts from the end).
    #[arg(long, default_value_t = -1, allow_hyphen_values = true)]
    pub tag_col: isize,
    /// conll: validate the tags in this scheme (iob1, iob2/bio, bioes).
    #[arg(long)]
    pub scheme: Option<String>,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DataFetchArgs {
    pub name: String,
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct DataListArgs {
    #[arg(long)]
    pub json: bool,
}

fn kind(s: &str) -> anyhow::Result<Kind> {
    Kind::parse(s).ok_or_else(|| anyhow!("--kind {s:?}: expected char, word, ptb or bpe"))
}

pub fn run(c: TokCmd) -> anyhow::Result<()> {
    match c {
        TokCmd::Train(a) => {
            let files: Vec<&std::path::Path> = a.files.iter().map(|f| f.as_path()).collect();
            let t = Tokenizer::train_files(
                &files,
                &TrainOptions {
                    kind: kind(&a.kind)?,
                    min_freq: a.min_freq,
                    max_size: a.vocab_size,
                },
            )?;
            t.save(&a.out)?;
            println!("{} tokens -> {}", t.len(), a.out.display());
            Ok(())
        }
        TokCmd::Encode(a) => {
            use std::io::Write;
            let t = Tokenizer::load(&a.tokenizer)?;
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for line in Lines::open(&a.input)? {
                let line = line?;
                let line = rnnkit::text::read::strip_eol(&line);
                writeln!(out, "{}", serde_json::to_string(&t.encode(line))?)?;
            }
            Ok(())
        }
        TokCmd::Stats(a) => {
            let mut rows = Vec::new();
            let mut sentences = 0usize;
            for k in a.kind.split(',') {
                let k = kind(k.trim())?;
                let t = Tokenizer::train_files(
                    &[&a.train],
                    &TrainOptions {
                        kind: k,
                        min_freq: a.min_freq,
                        max_size: a.vocab_size,
                    },
                )?;
                let (mut n, mut unk) = (0usize, 0usize);
                sentences = 0;
                for l in Lines::open_nonempty(&a.eval)? {
                    let l = l?;
                    let l = rnnkit::text::read::strip_eol(&l);
                    if l.trim().is_empty() {
                        continue;
                    }
                    let ids = t.encode(l);
                    sentences += 1;
                    n += ids.len();
                    unk += ids.iter().filter(|&&i| i == t.unk()).count();
                }
                rows.push(serde_json::json!({"kind": format!("{k:?}").to_lowercase(), "vocab_size": t.len(),
                    "tokens_per_sentence": n as f64 / sentences.max(1) as f64, "unk_rate": unk as f64 / n.max(1) as f64}));
            }
            if a.json {
                super::print_json(
                    &serde_json::json!({"train": a.train, "eval": a.eval, "sentences": sentences, "tokenizers": rows}),
                );
            } else {
                println!(
                    "{:6} {:>10} {:>20} {:>10}",
                    "kind", "vocab", "tokens/sentence", "unk rate"
                );
                for r in rows {
                    println!(
                        "{:6} {:>10} {:>20.2} {:>9.3}%",
                        r["kind"].as_str().unwrap_or(""),
                        r["vocab_size"],
                        r["tokens_per_sentence"].as_f64().unwrap_or(0.0),
                        100.0 * r["unk_rate"].as_f64().unwrap_or(0.0)
                    );
                }
            }
            Ok(())
        }
    }
}

pub fn run_data(c: DataCmd) -> anyhow::Result<()> {
    match c {
        DataCmd::Check(a) => {
            use rnnkit::text::{conll, corpus, read};
            let f = &a.files[0];
            let need_two = a.format == "parallel";
            if need_two != (a.files.len() == 2) {
                anyhow::bail!(
                    "--format {} takes {} file(s)",
                    a.format,
                    if need_two { 2 } else { 1 }
                );
            }
            let report = match a.format.as_str() {
                "text" => {
                    let (mut lines, mut chars) = (0usize, 0usize);
                    for l in read::Lines::open_nonempty(f)? {
                        lines += 1;
                        chars += l?.chars().count();
                    }
                    serde_json::json!({"lines": lines, "chars": chars})
                }
                "conll" => {
                    let scheme = a.scheme.as_deref().map(conll::Scheme::parse).transpose()?;
                    let (mut sentences, mut tokens) = (0usize, 0usize);
                    let mut types = std::collections::BTreeSet::new();
                    for s in conll::sentences(f, conll::Columns { token: a.token_col, tag: a.tag_col })? {
                        let s = s?;
                        if let Some(sch) = scheme {
                            conll::validate_sentence(f, &s, sch)?;
                        }
                        sentences += 1;
                        tokens += s.tokens.len();
                        types.extend(s.tags.iter().filter_map(|t| conll::split_tag(t)).map(|(_, ty)| ty.to_string()).filter(|t| !t.is_empty()));
                    }
                    if sentences == 0 {
                        return Err(conll::no_sentences(f).into());
                    }
                    serde_json::json!({"sentences": sentences, "tokens": tokens, "entity_types": types})
                }
                "parallel" => serde_json::json!({"pairs": corpus::read_parallel(f, &a.files[1])?.len()}),
                "parallel-tsv" => serde_json::json!({"pairs": corpus::read_parallel_tsv(f)?.len()}),
                "labelled" => {
                    let l = corpus::read_labelled(f)?;
                    let mut labels: Vec<&str> = l.iter().map(|x| x.1.as_str()).collect();
                    labels.sort();
                    labels.dedup();
                    serde_json::json!({"sentences": l.len(), "labels": labels})
                }
                "vectors" => {
                    let v = corpus::read_vectors(f)?;
                    v.check_header(f)?;
                    serde_json::json!({"words": v.index.len(), "rows": v.rows, "dim": v.dim})
                }
                other => anyhow::bail!("--format {other:?}: expected text, conll, parallel, parallel-tsv, labelled or vectors"),
            };
            if a.json {
                super::print_json(&report);
            } else {
                println!("{}: {report}", f.display());
            }
            Ok(())
        }
        DataCmd::Fetch(a) => {
            let dir = rnnkit::data::fetch(&a.name, !a.json)?;
            if a.json {
                super::print_json(&serde_json::json!({"name": a.name, "path": dir}));
            } else {
                println!("{}", dir.display());
            }
            Ok(())
        }
        DataCmd::List(a) => {
            let mut rows = Vec::new();
            for (name, _, _, note) in rnnkit::data::DATASETS {
                let found = rnnkit::data::resolve(name).ok();
                rows.push(serde_json::json!({"name": name, "found": found, "note": note}));
            }
            if a.json {
                super::print_json(&serde_json::json!({"datasets": rows}));
            } else {
                for r in rows {
                    let loc = r["found"]
                        .as_str()
                        .map_or("not found".to_string(), |s| s.to_string());
                    println!(
                        "{:16} {:60} {}",
                        r["name"].as_str().unwrap_or(""),
                        r["note"].as_str().unwrap_or(""),
                        loc
                    );
                }
            }
            Ok(())
        }
    }
}
