//! The `rnnkit` command line: a thin shell over the library. Each subcommand parses its
//! options, calls the library, and prints; every error is one line on stderr and exit
//! status 2.

mod cmd;

use clap::Parser;

fn main() {
    // A closed pipe (`rnnkit lm generate | head`) ends the program quietly.
    std::panic::set_hook(Box::new(|info| {
        let msg = info.to_string();
        if msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        eprintln!("rnnkit: internal error: {msg}");
    }));
    let cli = cmd::Cli::parse();
    match cmd::run(cli) {
        Ok(()) => {}
        Err(e) => {
            if let Some(io) = e.downcast_ref::<std::io::Error>() {
                if io.kind() == std::io::ErrorKind::BrokenPipe {
                    std::process::exit(0);
                }
            }
            eprintln!("rnnkit: error: {}", one_line(&e));
            std::process::exit(2);
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
