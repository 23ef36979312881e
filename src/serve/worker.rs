//! One worker thread a model: it owns the model, takes jobs from a bounded queue, and
//! gathers the jobs that can run together (the same verb and options) into one batch of at
//! most `max_batch` inputs, waiting at most `max_wait` for more after the first, then runs
//! the batch with one library call and answers each job. The compute runs here, off the
//! async runtime, on the process's thread pool (`--threads`). A panic inside a batch
//! answers its jobs with an internal error; the worker goes on with the next.

use super::metrics::Metrics;
use crate::task::any::Model;
use crate::task::classify::Prediction;
use crate::task::lm::Sampling;
use crate::task::tag::Tagged;
use crate::task::trace::Trace;
use crate::task::translate::{Decoding, Translation};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc as tmpsc, oneshot};

/// What a job asks for, with where its answer goes.
pub enum Job {
    Classify(Vec<String>, Reply<Vec<Prediction>>),
    /// Also each text's pooling weights when asked (`true`).
    ClassifyWeights(Vec<String>, Reply<Vec<(Prediction, Vec<f32>)>>),
    Tag(Vec<String>, Reply<Vec<Tagged>>),
    Translate(Vec<String>, Decoding, Reply<Vec<Translation>>),
    Generate(Vec<String>, Gen, Reply<Vec<String>>),
    /// One prompt, each token's text sent as it is drawn; the stream ends with `Ok(None)`
    /// or an error. A closed receiver (the client left) stops generation.
    Stream(String, Gen, tmpsc::Sender<Result<Option<String>, String>>),
    Trace(String, Reply<Trace>),
}

/// Generation's options.
#[derive(Clone, Copy, PartialEq)]
pub struct Gen {
    pub max_tokens: usize,
    pub sampling: Sampling,
    pub seed: u64,
}

pub type Reply<T> = oneshot::Sender<Result<T, String>>;

/// Each job's input count and reply, in the order of the batch's inputs.
type Replies<T> = Vec<(usize, Reply<Vec<T>>)>;

impl Job {
    fn inputs(&self) -> usize {
        match self {
            Job::Classify(t, _)
            | Job::ClassifyWeights(t, _)
            | Job::Tag(t, _)
            | Job::Translate(t, _, _)
            | Job::Generate(t, _, _) => t.len(),
            Job::Stream(..) | Job::Trace(..) => 1,
        }
    }

    /// Whether nobody waits for the answer any more (the client left, or the request timed
    /// out): the worker drops such a job instead of running it.
    fn abandoned(&self) -> bool {
        match self {
            Job::Classify(_, r) => r.is_closed(),
            Job::Tag(_, r) => r.is_closed(),
            Job::ClassifyWeights(_, r) => r.is_closed(),
            Job::Translate(_, _, r) => r.is_closed(),
            Job::Generate(_, _, r) => r.is_closed(),
            Job::Stream(_, _, tx) => tx.is_closed(),
            Job::Trace(_, r) => r.is_closed(),
        }
    }

    /// Can `other` run in the same library call as `self`?
    fn joins(&self, other: &Job) -> bool {
        match (self, other) {
            (Job::Classify(..), Job::Classify(..)) | (Job::Tag(..), Job::Tag(..)) => true,
            (Job::Translate(_, a, _), Job::Translate(_, b, _)) => a == b,
            _ => false,
        }
    }
}

/// The sending side of a model's queue, and its depth.
#[derive(Clone)]
pub struct Queue {
    tx: mpsc::SyncSender<Job>,
    pub depth: Arc<AtomicUsize>,
}

impl Queue {
    /// Queues `job`, or gives it back when the queue is full.
    pub fn submit(&self, job: Job) -> Result<(), Job> {
        self.depth.fetch_add(1, Ordering::Relaxed);
        self.tx.try_send(job).map_err(|e| {
            self.depth.fetch_sub(1, Ordering::Relaxed);
            match e {
                mpsc::TrySendError::Full(j) | mpsc::TrySendError::Disconnected(j) => j,
            }
        })
    }
}

/// How a worker batches.
#[derive(Clone, Copy)]
pub struct Batching {
    pub max_batch: usize,
    pub max_wait: Duration,
    pub queue: usize,
}

/// Starts the worker of `model` named `name`; it ends when every [`Queue`] is dropped.
pub fn start(name: String, model: Model, b: Batching, metrics: Arc<Metrics>) -> Queue {
    let (tx, rx) = mpsc::sync_channel::<Job>(b.queue);
    let depth = Arc::new(AtomicUsize::new(0));
    let d = depth.clone();
    std::thread::Builder::new()
        .name(format!("rnnkit-{name}"))
        .spawn(move || {
            crate::engine::ops::flush_denormals();
            run(name, model, rx, b, &d, &metrics)
        })
        .expect("a worker thread starts");
    Queue { tx, depth }
}

fn run(
    name: String,
    mut model: Model,
    rx: mpsc::Receiver<Job>,
    b: Batching,
    depth: &AtomicUsize,
    metrics: &Metrics,
) {
    let mut next: Option<Job> = None;
    loop {
        let first = match next.take() {
            Some(j) => j,
            None => match rx.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
        };
        depth.fetch_sub(1, Ordering::Relaxed);
        if first.abandoned() {
            metrics.abandoned(&name);
            continue;
        }
        let mut n = first.inputs();
        let mut batch = vec![first];
        let deadline = Instant::now() + b.max_wait;
        while n < b.max_batch && batch[0].joins(&batch[0]) {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(j) => {
                    depth.fetch_sub(1, Ordering::Relaxed);
                    if j.abandoned() {
                        metrics.abandoned(&name);
                        continue;
                    }
                    if batch[0].joins(&j) && n + j.inputs() <= b.max_batch {
                        n += j.inputs();
                        batch.push(j);
                    } else {
                        next = Some(j);
                        break;
                    }
                }
                Err(_) => break,
            }
        }
        metrics.batch(&name, n);
        let tokens = execute(&mut model, batch);
        if tokens > 0 {
            metrics.tokens(&name, tokens);
        }
    }
}

/// Splits `out` (one result an input, in order) back into the jobs' replies.
fn answer<T>(replies: Replies<T>, out: Result<Vec<T>, String>) {
    match out {
        Ok(all) => {
            let mut it = all.into_iter();
            for (n, r) in replies {
                let _ = r.send(Ok(it.by_ref().take(n).collect()));
            }
        }
        Err(e) => {
            for (_, r) in replies {
                let _ = r.send(Err(e.clone()));
            }
        }
    }
}

/// Runs `f`, turning a panic into an error message.
fn guarded<T>(f: impl FnOnce() -> crate::error::Result<T>) -> Result<T, String> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(p) => Err(format!(
            "internal error: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
    }
}

/// A test hook: an input equal to `RNNKIT_TEST_PANIC` panics inside the batch, so that the
/// tests can check that one request's panic answers 500 and the server goes on.
fn test_panic(texts: &[String]) {
    if let Ok(p) = std::env::var("RNNKIT_TEST_PANIC") {
        if texts.contains(&p) {
            panic!("test panic on {p:?}");
        }
    }
}

/// Every input of the jobs, in order, with each job's count and reply.
fn gather<T>(
    jobs: Vec<Job>,
    take: impl Fn(Job) -> Option<(Vec<String>, Reply<Vec<T>>)>,
) -> (Vec<String>, Replies<T>) {
    let mut texts = Vec::new();
    let mut replies = Vec::new();
    for j in jobs {
        if let Some((t, r)) = take(j) {
            replies.push((t.len(), r));
            texts.extend(t);
        }
    }
    (texts, replies)
}

fn refs(t: &[String]) -> Vec<&str> {
    t.iter().map(|s| s.as_str()).collect()
}

/// Runs a batch and answers its jobs; returns the tokens generated (for the metrics).
fn execute(model: &mut Model, mut batch: Vec<Job>) -> u64 {
    const WRONG: &str = "this model's task has no such verb";
    let first = batch.remove(0);
    let first = match first {
        Job::Trace(text, r) => {
            let _ = r.send(guarded(|| {
                test_panic(std::slice::from_ref(&text));
                model.trace(&text)
            }));
            return 0;
        }
        j => j,
    };
    let mut tokens = 0u64;
    match (model, first) {
        (Model::Classify(m), Job::Classify(t, r)) => {
            batch.insert(0, Job::Classify(t, r));
            let (texts, replies) = gather(batch, |j| match j {
                Job::Classify(t, r) => Some((t, r)),
                _ => None,
            });
            answer(
                replies,
                guarded(|| {
                    test_panic(&texts);
                    Ok(m.predict(&refs(&texts)))
                }),
            );
        }
        (Model::Classify(m), Job::ClassifyWeights(t, r)) => {
            let out = guarded(|| {
                test_panic(&t);
                m.predict_with_weights(&refs(&t))
            });
            let _ = r.send(out);
        }
        (Model::Tag(m), Job::Tag(t, r)) => {
            batch.insert(0, Job::Tag(t, r));
            let (texts, replies) = gather(batch, |j| match j {
                Job::Tag(t, r) => Some((t, r)),
                _ => None,
            });
            answer(
                replies,
                guarded(|| {
                    test_panic(&texts);
                    m.tag_texts(&refs(&texts))
                }),
            );
        }
        (Model::Translate(m), Job::Translate(t, d, r)) => {
            batch.insert(0, Job::Translate(t, d, r));
            let (texts, replies) = gather(batch, |j| match j {
                Job::Translate(t, _, r) => Some((t, r)),
                _ => None,
            });
            answer(
                replies,
                guarded(|| {
                    test_panic(&texts);
                    m.translate_texts(&refs(&texts), &d)
                }),
            );
        }
        (Model::Lm(m), Job::Generate(t, g, r)) => {
            let out = guarded(|| {
                test_panic(&t);
                t.iter()
                    .map(|p| {
                        m.generate(p, g.max_tokens, &g.sampling, g.seed, |_| {
                            tokens += 1;
                            !r.is_closed()
                        })
                    })
                    .collect()
            });
            let _ = r.send(out);
        }
        (Model::Lm(m), Job::Stream(p, g, tx)) => {
            let out = guarded(|| {
                test_panic(std::slice::from_ref(&p));
                m.generate(&p, g.max_tokens, &g.sampling, g.seed, |piece| {
                    tokens += 1;
                    tx.blocking_send(Ok(Some(piece.to_string()))).is_ok()
                })
            });
            let _ = tx.blocking_send(out.map(|_| None));
        }
        (_, job) => {
            // The handlers send each model only its task's verbs; answer anyway.
            match job {
                Job::Classify(_, r) => drop(r.send(Err(WRONG.into()))),
                Job::ClassifyWeights(_, r) => drop(r.send(Err(WRONG.into()))),
                Job::Tag(_, r) => drop(r.send(Err(WRONG.into()))),
                Job::Translate(_, _, r) => drop(r.send(Err(WRONG.into()))),
                Job::Generate(_, _, r) => drop(r.send(Err(WRONG.into()))),
                Job::Stream(_, _, tx) => drop(tx.blocking_send(Err(WRONG.into()))),
                Job::Trace(_, r) => drop(r.send(Err(WRONG.into()))),
            }
        }
    }
    tokens
}
