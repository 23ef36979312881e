#![no_main]
//! `cargo +nightly fuzz run scorers fuzz/corpus/scorers`: see rnnkit::fuzz::scorers.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rnnkit::fuzz::scorers(data));
