//! The fuzz targets of `fuzz/` in every `cargo test` run: each target's function
//! (`fuzz/targets.rs`, the very code libFuzzer drives under `make fuzz`) gets every input of its
//! corpus `fuzz/corpus/TARGET/`, then mutations of its committed seeds (`seed-*`): bit flips, byte substitutions with
//! boundary values, truncations, insertions, duplicated slices and splices of two inputs, from a
//! seeded generator. This is the short fuzzing run of CI: not coverage-guided like libFuzzer,
//! but it replays every crash once saved in the corpus and explores around every seed.
//!
//! `FUZZ_REPLAY_MUTATIONS` (per input, default 2000) and `FUZZ_REPLAY_SEED` (default: the day)
//! tune it; a failing input is written to `target/fuzz-replay/TARGET-<n>` and named in the
//! failure, ready for `cargo fuzz run TARGET <file>`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../fuzz/targets.rs"]
mod targets;

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

/// A small deterministic generator (SplitMix64): the same seed replays the same inputs.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const INTERESTING: [u8; 16] = [
    0, 1, 0x7f, 0x80, 0xff, b'"', b'\\', b'{', b'}', b'[', b']', b':', b',', b'\n', b'-', b'=',
];

/// One mutation of `input` (never longer than 1 MiB), sometimes mixing in `other`.
fn mutate(rng: &mut Rng, input: &[u8], other: &[u8]) -> Vec<u8> {
    let mut out = input.to_vec();
    for _ in 0..=rng.below(4) {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 if len > 0 => out.truncate(rng.below(len)),
            3 => {
                let i = rng.below(len + 1);
                let byte = INTERESTING[rng.below(INTERESTING.len())];
                out.insert(i, byte);
            }
            4 if len > 0 => {
                let start = rng.below(len);
                let end = start + rng.below(len - start) + 1;
                let slice = out[start..end].to_vec();
                let at = rng.below(len + 1);
                out.splice(at..at, slice);
            }
            5 if len > 0 && !other.is_empty() => {
                let cut = rng.below(len);
                let from = rng.below(other.len());
                out.truncate(cut);
                out.extend_from_slice(&other[from..]);
            }
            _ if len > 1 => {
                let start = rng.below(len);
                let end = start + rng.below(len - start);
                out.drain(start..end);
            }
            _ => out.push(rng.next() as u8),
        }
    }
    out.truncate(1 << 20);
    out
}

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = std::fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Run `input` through `target`; on a panic, save the input and fail naming it.
fn run_one(name: &str, target: targets::Target, input: &[u8], what: &str) {
    if catch_unwind(AssertUnwindSafe(|| target(input))).is_ok() {
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz-replay");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(format!("{name}-{}", input.len()));
    std::fs::write(&path, input).unwrap();
    panic!(
        "fuzz target {name} panicked on {what}; input saved to {} (replay: cd fuzz && \
         RUSTC_BOOTSTRAP=1 cargo fuzz run -s none -a {name} {})",
        path.display(),
        path.display()
    );
}

fn replay(name: &str) {
    let (_, target) = targets::ALL
        .iter()
        .find(|(n, _)| *n == name)
        .unwrap_or_else(|| panic!("no fuzz target {name} in fuzz/targets.rs"));
    let inputs = corpus(name);
    assert!(
        !inputs.is_empty(),
        "fuzz/corpus/{name}/ holds no seed: add a few seed-* inputs"
    );
    let mutations = env_number("FUZZ_REPLAY_MUTATIONS", 2000);
    let day = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400);
    let seed = env_number("FUZZ_REPLAY_SEED", day);
    let mut rng = Rng(seed ^ name.len() as u64);
    for (path, bytes) in &inputs {
        run_one(name, *target, bytes, &path.display().to_string());
    }
    // Mutations start from the committed seeds only: what `make fuzz` adds to a local corpus
    // (thousands of inputs) is replayed once, above, without multiplying the run time.
    let seeds: Vec<&(PathBuf, Vec<u8>)> = inputs
        .iter()
        .filter(|(path, _)| {
            path.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("seed-"))
        })
        .collect();
    assert!(
        !seeds.is_empty(),
        "fuzz/corpus/{name}/ holds no seed-* input: add a few"
    );
    for (i, (path, bytes)) in seeds.iter().map(|s| (&s.0, &s.1)).enumerate() {
        let other = &seeds[(i + 1) % seeds.len()].1;
        for m in 0..mutations {
            let input = mutate(&mut rng, bytes, other);
            let what = format!(
                "mutation {m} of {} (FUZZ_REPLAY_SEED={seed})",
                path.display()
            );
            run_one(name, *target, &input, &what);
        }
    }
    eprintln!(
        "{name}: {} corpus inputs, {} mutations of {} seeds, seed {seed}",
        inputs.len(),
        seeds.len() as u64 * mutations,
        seeds.len()
    );
}

#[test]
fn every_target_is_replayed_here() {
    let fuzz_toml =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/Cargo.toml"))
            .unwrap();
    let bins = fuzz_toml.matches("[[bin]]").count();
    assert_eq!(
        bins,
        targets::ALL.len(),
        "fuzz/Cargo.toml has {bins} targets, fuzz/targets.rs {}: keep them in step",
        targets::ALL.len()
    );
    for (name, _) in targets::ALL {
        assert!(
            fuzz_toml.contains(&format!("name = \"{name}\"")),
            "{name} is not a target in fuzz/Cargo.toml"
        );
    }
}

#[test]
fn image_reference() {
    replay("image_reference");
}

#[test]
fn payload() {
    replay("payload");
}

#[test]
fn pgp_key() {
    replay("pgp_key");
}

#[test]
fn pgp_verify() {
    replay("pgp_verify");
}

#[test]
fn pkix() {
    replay("pkix");
}

#[test]
fn decode_signature() {
    replay("decode_signature");
}

#[test]
fn workload() {
    replay("workload");
}

#[test]
fn manifests() {
    replay("manifests");
}

#[test]
fn admission_review() {
    replay("admission_review");
}
