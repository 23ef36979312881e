#![no_main]
//! `cargo +nightly fuzz run vectors fuzz/corpus/vectors`: see rnnkit::fuzz::vectors.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rnnkit::fuzz::vectors(data));
