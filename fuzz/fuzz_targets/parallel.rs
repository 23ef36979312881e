#![no_main]
//! `cargo +nightly fuzz run parallel fuzz/corpus/parallel`: see rnnkit::fuzz::parallel.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rnnkit::fuzz::parallel(data));
