#![no_main]
//! `cargo +nightly fuzz run conll fuzz/corpus/conll`: see rnnkit::fuzz::conll.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rnnkit::fuzz::conll(data));
