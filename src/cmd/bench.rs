//! `rnnkit bench lm | generate | tag | classify | translate`: throughput on synthetic token ids, no
//! data needed. `lm` is timed the way ../shared/bench/torch_lm_bench.py times PyTorch (3
//! warm-up steps, then full steps of forward, backward, clip 5 and an SGD update); `tag` and
//! `classify` the way tools/torch_tag_bench.py times PyTorch's equivalents (the same
//! synthetic sentences, Adam steps for training, whole batches for inference).

use super::common::{ComputeArgs, EmbedArgs, StackArgs};
use clap::{Args, Subcommand};
use rand::{Rng, SeedableRng};
use rnnkit::engine::optim::{OptimKind, Optimizer};
use rnnkit::engine::param::Module;
use rnnkit::task::lm::recipe::{LmRun, Preset};
use rnnkit::task::lm::{LanguageModel, Sampling};
use rnnkit::task::Task;
use rnnkit::text::tokenizer::{Kind, Tokenizer, TrainOptions};
use rnnkit::text::vocab::Vocab;
use rnnkit::train::step;
use std::time::Instant;

#[derive(Subcommand)]
pub enum BenchCmd {
    /// Training tokens/s of a language model.
    Lm(BenchArgs),
    /// Batch-1 sampling tokens/s from a randomly initialised language model.
    Generate(BenchArgs),
    /// Training and inference sentences/s of the CoNLL tagger (BiLSTM-CRF with characters).
    Tag(TaskBenchArgs),
    /// Training and inference sentences/s of the SST-2 classifier (BiLSTM, max pooling).
    Classify(TaskBenchArgs),
    /// Training target tokens/s, greedy and beam decoding sentences/s of the Multi30k
    /// translator (BiGRU encoder, GRU decoder with attention, tutorial 3's sizes).
    Translate(TrBenchArgs),
}

/// The synthetic workload of `bench translate`, the same as tools/torch_translate_bench.py's:
/// Multi30k's vocabulary sizes (De 7,882, En 5,898 words) and sentences of random ids.
#[derive(Args)]
pub struct TrBenchArgs {
    /// Attention: additive, general, dot or none.
    #[arg(long, default_value = "additive")]
    pub attention: String,
    /// Sentence pairs per training batch.
    #[arg(long, default_value_t = 128)]
    pub batch_size: usize,
    /// Source and target tokens a sentence (Multi30k averages about 13 and 14).
    #[arg(long, default_value_t = 14)]
    pub length: usize,
    /// Timed training steps.
    #[arg(long, default_value_t = 10)]
    pub steps: usize,
    /// Sentences decoded, greedy and with the beam, in batches of --decode-batch.
    #[arg(long, default_value_t = 256)]
    pub sentences: usize,
    #[arg(long, default_value_t = 128)]
    pub decode_batch: usize,
    #[arg(long, default_value_t = 5)]
    pub beam: usize,
    /// Tokens decoded a sentence (`<eos>` is held back until then, as in the PyTorch script).
    #[arg(long, default_value_t = 25)]
    pub max_len: usize,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Print the results as one JSON object, the last line of the output.
    #[arg(long)]
    pub json: bool,
}

/// The synthetic workload of `bench tag` and `bench classify`, the same as
/// tools/torch_tag_bench.py's: batches of equal-length sentences of random ids.
#[derive(Args)]
pub struct TaskBenchArgs {
    /// Sentences per training batch (inference uses batches of 64).
    #[arg(long, default_value_t = 32)]
    pub batch_size: usize,
    /// Tokens per sentence (CoNLL's mean is 14, SST-2's sentences 19).
    #[arg(long)]
    pub length: Option<usize>,
    /// Timed training steps; inference runs over the same number of sentences, 5 timed passes.
    #[arg(long, default_value_t = 40)]
    pub steps: usize,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Also time a real file with a model of the recipe's sizes and the file's own
    /// vocabularies, in batches of 64 sorted by length, as `predict` does: for `tag` a
    /// CoNLL file (tags ignored), for `classify` a TSV with a `sentence` column (SST-2's
    /// layout; lowercased words). Real text repeats its words; random sentences do not.
    #[arg(long)]
    pub file: Option<std::path::PathBuf>,
    /// Print the results as one JSON object, the last line of the output.
    #[arg(long)]
    pub json: bool,
}

#[derive(Args)]
pub struct BenchArgs {
    /// The shape of torch_lm_bench.py's case of this name (zaremba-small, zaremba-medium,
    /// char-shakespeare): hidden size, vocabulary, batch, window and steps. Without one, the
    /// char-shakespeare shape.
    #[arg(long)]
    pub preset: Option<Preset>,
    #[command(flatten)]
    pub embed: EmbedArgs,
    #[command(flatten)]
    pub stack: StackArgs,
    /// Vocabulary size (default: the preset's).
    #[arg(long)]
    pub vocab: Option<usize>,
    /// Sequences per batch (default: the preset's).
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Unrolled steps per window (default: the preset's).
    #[arg(long)]
    pub bptt: Option<usize>,
    /// Timed steps (training; default: the preset's) or tokens (generation; default 2,000).
    #[arg(long)]
    pub steps: Option<usize>,
    #[command(flatten)]
    pub compute: ComputeArgs,
    /// Time only the recurrent stack's forward and backward (no embedding, decoder or
    /// optimizer): the engine's share of a training step.
    #[arg(long)]
    pub stack_only: bool,
    /// Print the results as one JSON object, the last line of the output.
    #[arg(long)]
    pub json: bool,
}

/// (vocab, hidden, batch, bptt, steps) per preset, exactly as ../shared/bench/
/// torch_lm_bench.py times PyTorch, so the two measure the same work: the model is the
/// preset's size with PyTorch's default init and no dropout, and the char case unrolls 100
/// steps as that script does (the training preset's 50 costs the same per token).
fn shape(p: Option<Preset>) -> (usize, usize, usize, usize, usize) {
    match p {
        Some(Preset::ZarembaSmall) => (10000, 200, 20, 20, 40),
        Some(Preset::ZarembaMedium) => (10000, 650, 20, 35, 10),
        Some(Preset::CharShakespeare) | None => (65, 512, 64, 100, 5),
    }
}

pub fn run(c: BenchCmd) -> anyhow::Result<()> {
    let (gen, a) = match c {
        BenchCmd::Lm(a) => (false, a),
        BenchCmd::Generate(a) => (true, a),
        BenchCmd::Tag(a) => return task_bench(true, a),
        BenchCmd::Classify(a) => return task_bench(false, a),
        BenchCmd::Translate(a) => return translate_bench(a),
    };
    super::set_compute(&a.compute);
    let (v, h, b, t, steps) = shape(a.preset);
    let vocab = a.vocab.unwrap_or(v);
    if vocab < 2 {
        anyhow::bail!("--vocab {vocab}: expected at least 2 (one token leaves nothing to predict)");
    }
    let mut cfg = LmRun::recipe(None).model;
    cfg.vocab = vocab;
    cfg.rnn.hidden = a.stack.hidden.unwrap_or(h);
    cfg.embed = a.embed.embed.unwrap_or(cfg.rnn.hidden);
    a.stack.apply(&mut cfg.rnn, &mut cfg.init, a.embed.dropout);
    cfg.dropout = a.embed.dropout.unwrap_or(0.0);
    cfg.rnn.input = cfg.embed;
    cfg.validate()?;
    if a.batch_size == Some(0) || a.bptt == Some(0) || a.steps == Some(0) {
        anyhow::bail!("--batch-size, --bptt and --steps must be at least 1");
    }
    rnnkit::task::check_memory(
        <LanguageModel as rnnkit::checkpoint::Checkpointed>::num_params(&cfg),
    )?;
    let (b, t) = (a.batch_size.unwrap_or(b), a.bptt.unwrap_or(t));
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut model = LanguageModel::new(cfg.clone(), &mut rng);
    let name = format!(
        "{:?}-{}x{}{}",
        cfg.rnn.cell,
        cfg.rnn.layers,
        cfg.rnn.hidden,
        if a.stack_only { "-stack" } else { "" }
    )
    .to_lowercase();
    let rate = if a.stack_only && !gen {
        let e = cfg.embed;
        let x: Vec<f32> = (0..t * b * e)
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let dy: Vec<f32> = (0..t * b * cfg.rnn.output())
            .map(|_| rng.random_range(-1.0f32..1.0))
            .collect();
        let n = a.steps.unwrap_or(steps);
        (b * t * n) as f64
            / time_steps(n, || {
                let (_, _, cache) =
                    model
                        .enc
                        .rnn
                        .forward(&x, rnnkit::engine::rnn::Pass::train(t, b), &mut rng);
                model.enc.rnn.backward(cache, &dy, None);
            })
    } else if gen {
        let n = a.steps.unwrap_or(2000);
        let s = Sampling {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            greedy: false,
        };
        let mut count = 0usize;
        let mut start = Instant::now();
        rnnkit::task::lm::generate(&mut model, &[0], n + 20, &s, &mut rng, |_| {
            count += 1;
            if count == 20 {
                start = Instant::now();
            }
            true
        });
        n as f64 / start.elapsed().as_secs_f64()
    } else {
        // The trainer's own step (`train::step`) on the language-model task, over a stream
        // of random ids of at most 64 windows, taken in turn (so `--steps` costs no memory):
        // the speed `lm train` trains at.
        let n = a.steps.unwrap_or(steps);
        let windows = n.min(64);
        let ids: Vec<u32> = (0..b * t * windows + 1)
            .map(|_| rng.random_range(0..vocab as u32))
            .collect();
        let mut task = rnnkit::task::lm::LmTask::new(
            model,
            bench_tokenizer(Kind::Char)?,
            &ids,
            None,
            b,
            t,
            false,
        );
        let mut opt = Optimizer::new(OptimKind::Sgd { momentum: 0.0 }, 1.0);
        rnnkit::train::Task::model(&mut task).zero_grad();
        (b * t * n) as f64 / time_train(&mut task, &mut opt, 5.0, n, &mut rng)?
    };
    let rss = peak_rss_mib();
    let threads = rnnkit::engine::ops::threads();
    let kernel = rnnkit::engine::bf16::active_path().name();
    if a.json {
        super::print_json(
            &serde_json::json!({"name": name, "tokens_per_s": rate, "peak_rss_mib": rss, "threads": threads, "kernel": kernel}),
        );
    } else {
        println!("{name:28} {rate:10.0} tokens/s   (peak RSS {rss:.0} MiB, {threads} threads, {kernel} products)");
    }
    Ok(())
}

/// Training and inference sentences/s of the tagger (`tag`) or the classifier, built from
/// the library's recipes, on random sentences: words from 20,000, 6 characters each from 80
/// (tagger), 17 tags (CoNLL in BIOES) or 2 classes.
fn task_bench(tag: bool, a: TaskBenchArgs) -> anyhow::Result<()> {
    use rnnkit::task::{classify, tag as tagger};
    if a.steps == 0 || a.length == Some(0) || a.batch_size == 0 {
        anyhow::bail!("--batch-size, --steps and --length must be at least 1");
    }
    super::set_compute(&a.compute);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let (b, t) = (a.batch_size, a.length.unwrap_or(if tag { 14 } else { 19 }));
    let words = 20_000u32;
    let n_train = b * a.steps;
    let mut opt = Optimizer::new(OptimKind::named("adam", 0.0, None)?, 1e-3);
    let (train_rate, infer, name, params);
    let mut file_rate: Option<(f64, usize)> = None;
    if tag {
        let mut cfg = tagger::recipe::TagRun::recipe(None).model;
        (cfg.words, cfg.chars, cfg.labels) = (words as usize, 80, 17);
        cfg.rnn.input = cfg.token_dim();
        let m = tagger::Tagger::new(cfg, &mut rng);
        let sent = |rng: &mut rand::rngs::StdRng| tagger::Encoded {
            words: (0..t).map(|_| rng.random_range(2..words)).collect(),
            chars: (0..t)
                .map(|_| (0..6).map(|_| rng.random_range(2..80)).collect())
                .collect(),
            casing: (0..t).map(|_| rng.random_range(1..8)).collect(),
            labels: (0..t).map(|_| rng.random_range(0..17)).collect(),
        };
        // The trainer's own step (`train::step`) on one batch of the task, as `tag train`
        // runs it (rare words replaced by <unk> included).
        let sents: Vec<tagger::Encoded> = (0..b).map(|_| sent(&mut rng)).collect();
        let names = |p: &str, n: u32| (0..n).map(|i| format!("{p}{i}")).collect();
        let vocabs = tagger::TagVocabs {
            words: Vocab::labels(names("w", words)),
            chars: Vocab::labels(names("c", 80)),
            labels: Vocab::labels(names("t", 17)),
        };
        let mut task = tagger::TagTask::new(m, vocabs, sents, Vec::new(), b, 0.5);
        train_rate =
            (b * a.steps) as f64 / time_train(&mut task, &mut opt, 5.0, a.steps, &mut rng)?;
        let m = &mut task.model;
        // Tagging a file, as `tag predict` does: no gold labels, so no loss to compute.
        let test: Vec<tagger::Encoded> = (0..n_train)
            .map(|_| tagger::Encoded {
                labels: Vec::new(),
                ..sent(&mut rng)
            })
            .collect();
        infer = infer_rate(n_train, || {
            tagger::tag_all(m, &test, 64);
        });
        (name, params) = ("tagger-bilstm-crf", m.num_params());
        if let Some(path) = &a.file {
            let sents = rnnkit::text::conll::read(path, Default::default())?;
            let vocabs = tagger::TagVocabs::build(&sents, 1);
            let mut cfg = tagger::recipe::TagRun::recipe(None).model;
            // 17 tags, CoNLL's in BIOES, as the random sentences have.
            (cfg.words, cfg.chars, cfg.labels) = (vocabs.words.len(), vocabs.chars.len(), 17);
            cfg.rnn.input = cfg.token_dim();
            let mut m = tagger::Tagger::new(cfg, &mut rng);
            let enc = sents
                .iter()
                .map(|s| vocabs.encode(&s.tokens, &[]))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
            let rate = infer_rate(enc.len(), || {
                tagger::tag_all(&mut m, &enc, 64);
            });
            file_rate = Some((rate, enc.len()));
        }
    } else {
        let mut run = classify::recipe::ClsRun::recipe();
        (run.model.vocab, run.model.classes) = (words as usize, 2);
        let m = classify::Classifier::new(run.model, &mut rng);
        let sent = |rng: &mut rand::rngs::StdRng| -> Vec<u32> {
            (0..t).map(|_| rng.random_range(2..words)).collect()
        };
        // The trainer's own step on one batch of the task, as `classify train` runs it.
        let train: Vec<(Vec<u32>, u32)> =
            (0..b).map(|i| (sent(&mut rng), (i % 2) as u32)).collect();
        let labels = Vocab::labels(vec!["0".into(), "1".into()]);
        let mut task = classify::ClsTask::new(m, bench_tokenizer(Kind::Word)?, labels, train, b);
        train_rate =
            (b * a.steps) as f64 / time_train(&mut task, &mut opt, 5.0, a.steps, &mut rng)?;
        let m = &mut task.model;
        let test: Vec<Vec<u32>> = (0..n_train).map(|_| sent(&mut rng)).collect();
        infer = infer_rate(n_train, || {
            classify::classify_all(m, &test, 64);
        });
        (name, params) = ("classifier-bilstm-max", m.num_params());
        if let Some(path) = &a.file {
            use rnnkit::text::corpus::{read_tsv, Column};
            use rnnkit::text::tokenizer::{Kind, Tokenizer, TrainOptions};
            let rows = read_tsv(path, &Column::Name("sentence".into()), None, None)?;
            let lower: Vec<String> = rows.iter().map(|r| r.0.to_lowercase()).collect();
            let refs: Vec<&str> = lower.iter().map(|s| &s[..]).collect();
            let opt = TrainOptions {
                kind: Kind::Word,
                min_freq: 1,
                max_size: None,
            };
            let tok = Tokenizer::train(&refs, &opt)?;
            let enc: Vec<Vec<u32>> = lower
                .iter()
                .map(|s| classify::encode(&tok, false, s))
                .collect();
            let mut cfg = classify::recipe::ClsRun::recipe().model;
            (cfg.vocab, cfg.classes) = (tok.vocab.len(), 2);
            let mut m = classify::Classifier::new(cfg, &mut rng);
            let rate = infer_rate(enc.len(), || {
                classify::classify_all(&mut m, &enc, 64);
            });
            file_rate = Some((rate, enc.len()));
        }
    }
    let rss = peak_rss_mib();
    let threads = rnnkit::engine::ops::threads();
    if a.json {
        super::print_json(
            &serde_json::json!({"name": name, "train_sentences_per_s": train_rate,
            "infer_sentences_per_s": infer, "peak_rss_mib": rss, "threads": threads,
            "kernel": rnnkit::engine::bf16::active_path().name(),
            "params": params, "batch": b, "length": t,
            "file_infer_sentences_per_s": file_rate.map(|f| f.0),
            "file_sentences": file_rate.map(|f| f.1)}),
        );
    } else {
        println!(
            "{name:24} train {train_rate:8.0} sentences/s   infer {infer:8.0} sentences/s   (peak RSS {rss:.0} MiB, {threads} threads, {} products)",
            rnnkit::engine::bf16::active_path().name()
        );
        if let Some((r, n)) = file_rate {
            println!("{:24} file  {r:8.0} sentences/s   ({n} sentences)", "");
        }
    }
    Ok(())
}

fn translate_bench(a: TrBenchArgs) -> anyhow::Result<()> {
    use rnnkit::task::translate::{recipe::TrRun, Decoding, Seq2Seq, TrTask};
    if [
        a.batch_size,
        a.length,
        a.steps,
        a.sentences,
        a.decode_batch,
        a.beam,
        a.max_len,
    ]
    .contains(&0)
    {
        anyhow::bail!("--batch-size, --length, --steps, --sentences, --decode-batch, --beam and --max-len must be at least 1");
    }
    super::set_compute(&a.compute);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0);
    let mut cfg = TrRun::recipe().model;
    (cfg.src_vocab, cfg.tgt_vocab) = (7882, 5898);
    cfg.attention = rnnkit::engine::attention::Score::parse_option(&a.attention)?;
    let m = Seq2Seq::new(cfg.clone(), &mut rng)?;
    let sent = |rng: &mut rand::rngs::StdRng, v: usize| -> Vec<u32> {
        (0..a.length)
            .map(|_| rng.random_range(4..v as u32))
            .collect()
    };
    let pairs: Vec<(Vec<u32>, Vec<u32>)> = (0..a.batch_size)
        .map(|_| (sent(&mut rng, cfg.src_vocab), sent(&mut rng, cfg.tgt_vocab)))
        .collect();
    // The trainer's own step on one batch of the task, as `translate train` runs it.
    let mut task = TrTask::new(
        m,
        bench_tokenizer(Kind::Word)?,
        bench_tokenizer(Kind::Word)?,
        pairs,
        a.batch_size,
    );
    let sp = task.specials();
    let mut opt = Optimizer::new(OptimKind::named("adam", 0.0, None)?, 1e-3);
    let secs = time_train(&mut task, &mut opt, 1.0, a.steps, &mut rng)?;
    let m = &mut task.model;
    let train_rate = (a.batch_size * (a.length + 1) * a.steps) as f64 / secs;
    let srcs: Vec<Vec<u32>> = (0..a.sentences)
        .map(|_| sent(&mut rng, cfg.src_vocab))
        .collect();
    let mut decode = |beam: usize| -> anyhow::Result<f64> {
        // Exactly --max-len tokens a hypothesis (no <eos> before the cap, which a random
        // model may otherwise pick at any step) and no length normalisation, as the PyTorch
        // script decodes.
        let d = Decoding {
            beam,
            alpha: 0.0,
            max_len_a: 0.0,
            max_len_b: a.max_len,
            min_len: a.max_len,
            ..Decoding::default()
        };
        let start = Instant::now();
        for chunk in srcs.chunks(a.decode_batch) {
            let b: Vec<&[u32]> = chunk.iter().map(|x| &x[..]).collect();
            match beam {
                1 => drop(m.greedy(&b, &d, sp)?),
                _ => drop(m.beam_search(&b, &d, sp)?),
            }
        }
        Ok(a.sentences as f64 / start.elapsed().as_secs_f64())
    };
    decode(1)?; // warm-up
    let greedy = decode(1)?;
    let beam = decode(a.beam)?;
    let rss = peak_rss_mib();
    let threads = rnnkit::engine::ops::threads();
    let name = format!("seq2seq-bigru-{}", a.attention);
    if a.json {
        super::print_json(&serde_json::json!({"name": name,
            "train_target_tokens_per_s": train_rate, "greedy_sentences_per_s": greedy,
            "beam_sentences_per_s": beam, "beam": a.beam, "peak_rss_mib": rss,
            "threads": threads, "params": m.num_params(), "batch": a.batch_size,
            "kernel": rnnkit::engine::bf16::active_path().name(),
            "length": a.length, "max_len": a.max_len}));
    } else {
        println!(
            "{name:24} train {train_rate:8.0} target tokens/s   greedy {greedy:6.1} sentences/s   beam-{} {beam:6.1} sentences/s   (peak RSS {rss:.0} MiB, {threads} threads, {} products)",
            a.beam,
            rnnkit::engine::bf16::active_path().name()
        );
    }
    Ok(())
}

/// A tokenizer for a task's bookkeeping in a bench (its special ids: `<pad>` 0, `<bos>`
/// 2, `<eos>` 3, as the random sentences' ids from 4 assume); the model's vocabulary is
/// set by the bench.
fn bench_tokenizer(kind: Kind) -> anyhow::Result<Tokenizer> {
    let opts = TrainOptions {
        kind,
        min_freq: 1,
        max_size: None,
    };
    Ok(Tokenizer::train(&["bench"], &opts)?)
}

/// Timed passes over the inference set of `bench tag` and `bench classify` (after the three
/// warm-up passes): one pass is a fraction of a second, which this kind of shared machine
/// moves by ±40%. tools/torch_tag_bench.py times the same number.
const INFER_PASSES: usize = 5;

/// Sentences per second of `pass`, one pass over `sentences` sentences, timed as
/// [`INFER_PASSES`] passes after the warm-up.
fn infer_rate(sentences: usize, pass: impl FnMut()) -> f64 {
    (sentences * INFER_PASSES) as f64 / time_steps(INFER_PASSES, pass)
}

/// Seconds for `n` calls of `step` after 3 untimed warm-up calls (as torch_lm_bench.py).
/// Seconds of `n` steps of the trainer (`train::step`, gradients clipped to `clip`) over
/// the task's batches in turn, after three warm-up steps: the speed its `train` runs at.
/// Fails if a step's loss is not finite (a bench of a diverging model measures nothing).
fn time_train(
    task: &mut dyn Task,
    opt: &mut Optimizer,
    clip: f32,
    n: usize,
    rng: &mut rand::rngs::StdRng,
) -> anyhow::Result<f64> {
    let batches = task.steps_per_epoch().max(1);
    let (mut i, mut failed) = (0, false);
    let secs = time_steps(n, || {
        failed |= !step(task, opt, clip, i % batches, rng)
            .0
            .loss_sum
            .is_finite();
        i += 1;
    });
    if failed {
        anyhow::bail!("a training step's loss was not finite");
    }
    Ok(secs)
}

fn time_steps(n: usize, mut step: impl FnMut()) -> f64 {
    for _ in 0..3 {
        step();
    }
    let start = Instant::now();
    for _ in 0..n {
        step();
    }
    start.elapsed().as_secs_f64()
}

/// Peak resident memory of this process from /proc (Linux), in MiB.
pub fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map_or(0.0, |kb| kb / 1024.0)
}
