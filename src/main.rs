//! The `rnnkit` command line: a thin shell over the library. Each subcommand parses its
//! options, calls the library, and prints; every error is one line on stderr and exit
//! status 2.

mod cmd;

/// Keeps freed memory in the heap instead of returning it to the OS. A training step
/// allocates and frees the same large buffers (gate activations of 50 MB and more) every
/// time; with glibc's defaults each is a fresh mmap, and touching it again costs a page
/// fault per 4 KiB, a few percent of the step.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_heap() {
    extern "C" {
        fn mallopt(param: i32, value: i32) -> i32;
    }
    const M_TRIM_THRESHOLD: i32 = -1;
    const M_MMAP_THRESHOLD: i32 = -3;
    // SAFETY: mallopt only adjusts allocator tunables; called before any threads start.
    unsafe {
        mallopt(M_MMAP_THRESHOLD, 1 << 30);
        mallopt(M_TRIM_THRESHOLD, 1 << 30);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_heap() {}

fn main() {
    keep_heap();
    // A closed pipe (`rnnkit lm generate | head`) ends the program quietly.
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string();
        if msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        eprintln!("rnnkit: internal error: {msg}");
    }));
    // A file-size limit (`ulimit -f`) makes a write fail with EFBIG, reported like a full
    // disk, instead of killing the process mid-save.
    let _ = signal_hook::flag::register(
        signal_hook::consts::SIGXFSZ,
        std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false)),
    );
    let cli = match cmd::parse() {
        Ok(c) => c,
        Err(e) if e.use_stderr() => {
            // clap's message is several lines; its first names the option and the reason.
            let text = e.render().to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            eprintln!("rnnkit: {}", first.trim());
            std::process::exit(2);
        }
        Err(e) => e.exit(),
    };
    match cmd::run(cli) {
        Ok(()) => {}
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    std::process::exit(0);
                }
            }
            eprintln!("rnnkit: error: {}", one_line(&e));
            let code = match e.downcast_ref::<rnnkit::error::Error>() {
                // 128 + SIGINT, as a shell reports a run ended by Ctrl-C.
                Some(rnnkit::error::Error::Interrupted(_)) => 130,
                Some(rnnkit::error::Error::Diverged(_)) => 3,
                _ => 2,
            };
            std::process::exit(code);
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    let mut s = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !s.contains(&c) {
            s.push_str(": ");
            s.push_str(&c);
        }
    }
    s.replace('\n', " ")
}
