#![no_main]
//! `cargo +nightly fuzz run tokenizer fuzz/corpus/tokenizer`: see rnnkit::fuzz::tokenizer.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rnnkit::fuzz::tokenizer(data));
