#![no_main]
//! `cargo +nightly fuzz run checkpoint fuzz/corpus/checkpoint`: see rnnkit::fuzz::checkpoint.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rnnkit::fuzz::checkpoint(data));
