//! Replays the fuzz corpora on stable Rust through the fuzz targets' entry points
//! (rnnkit::fuzz): the seeds (fuzz/corpus/, made by tools/make_fuzz_seeds.py), the inputs
//! that once crashed (fuzz/regressions/), and a few thousand seeded mutations of each seed,
//! so a fixed crash stays fixed and a new one in the readers shows up without a fuzzer.

use std::path::Path;

fn files(dir: &Path) -> Vec<Vec<u8>> {
    let mut v: Vec<_> = std::fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    v.sort();
    v.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

/// Byte flips, insertions, deletions and splices of interesting values, as libFuzzer's
/// mutators do, from a fixed seed.
fn mutate(input: &[u8], state: &mut u64) -> Vec<u8> {
    let mut next = || {
        *state ^= *state << 13;
        *state ^= *state >> 7;
        *state ^= *state << 17;
        *state
    };
    let mut v = input.to_vec();
    for _ in 0..1 + next() % 4 {
        let at = if v.is_empty() {
            0
        } else {
            (next() % v.len() as u64) as usize
        };
        match next() % 6 {
            0 if !v.is_empty() => v[at] ^= 1 << (next() % 8),
            1 => v.insert(at, next() as u8),
            2 if !v.is_empty() => {
                v.remove(at);
            }
            3 => {
                let s: &[u8] = match next() % 6 {
                    0 => b"\xff\xff\xff\xff\xff\xff\xff\x7f",
                    1 => b"\0",
                    2 => b"\r\n",
                    3 => b"\t",
                    4 => b"99999999999999999999",
                    _ => b"-1",
                };
                v.splice(at..at, s.iter().copied());
            }
            4 => v.truncate(at),
            _ if !v.is_empty() => {
                let from = (next() % v.len() as u64) as usize;
                let len = (next() % 64) as usize;
                let chunk: Vec<u8> = v[from..(from + len).min(v.len())].to_vec();
                v.splice(at..at, chunk);
            }
            _ => {}
        }
    }
    v
}

#[test]
fn fuzz_corpora_replay_without_a_crash() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut seen = 0;
    for (name, target) in rnnkit::fuzz::TARGETS {
        let seeds = files(&root.join("corpus").join(name));
        assert!(
            !seeds.is_empty(),
            "no seeds for {name}: run tools/make_fuzz_seeds.py"
        );
        for input in seeds
            .iter()
            .chain(&files(&root.join("regressions").join(name)))
        {
            target(input);
            seen += 1;
        }
        // Checkpoints are the slow target (four models are tried a file).
        let rounds = if *name == "checkpoint" { 100 } else { 400 };
        let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ name.len() as u64;
        for seed in &seeds {
            for _ in 0..rounds {
                target(&mutate(seed, &mut state));
                seen += 1;
            }
        }
    }
    assert!(seen > 1000);
}
