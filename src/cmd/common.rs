//! The CLI's side of training: the shared option groups live in the library
//! ([`rnnkit::task::options`]); this draws the progress bar and prints the notes.

pub use rnnkit::task::options::{ComputeArgs, EmbedArgs, StackArgs, TrainOptions};

/// Trains with the library's run ([`rnnkit::task::options::train`]): a progress bar
/// unless `--quiet`; Ctrl-C and SIGTERM save and stop; curves are drawn.
pub fn train<A: TrainOptions>(a: &A) -> anyhow::Result<rnnkit::run::RunSummary> {
    let quiet = a.run_args().quiet;
    let mut bar = rnnkit::train::ProgressBar::default();
    let mut note = note(quiet);
    let opts = rnnkit::run::Options {
        signals: true,
        curves: true,
        observer: if quiet { None } else { Some(&mut bar) },
        note: Some(&mut note),
        ..Default::default()
    };
    Ok(rnnkit::task::options::train(a, opts)?)
}

/// Prints a library remark (pretrained coverage, skipped pairs) unless `--quiet`.
pub fn note(quiet: bool) -> impl FnMut(String) {
    move |m| {
        if !quiet {
            eprintln!("{m}");
        }
    }
}
