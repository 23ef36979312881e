#![no_main]
//! `cargo +nightly fuzz run tsv fuzz/corpus/tsv`: see rnnkit::fuzz::tsv.
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| rnnkit::fuzz::tsv(data));
