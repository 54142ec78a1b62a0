//! Trust index: lookup latency (random hits and misses) and memory per entry at 100k, 1M and
//! 10M.
//!
//! Memory is measured in a child process of its own (this binary with `--index-memory-child N`),
//! so nothing else the bench allocated is counted, and with glibc's mmap threshold pinned at
//! 128 KiB, so the tables dropped while the hash maps grow go back to the OS instead of staying
//! resident. What remains is the index as it lives: tables, names, malloc overhead.

use std::hint::black_box;
use std::process::Command;
use std::time::Instant;

use binauthz::image::Digest;
use binauthz::policy::{Attestations as _, TrustIndex};

use crate::harness::{self, Report, Rng, Stats, Timing};

/// Attestors the entries are spread over.
pub const ATTESTORS: [&str; 3] = ["build", "qa", "security"];
const SEED: u64 = 0x1d3c_0002;
const QUERIES: usize = 16 * 1024;
const CHILD_FLAG: &str = "--index-memory-child";

/// Lookup figures of one size.
pub struct Lookups {
    /// Random digests that are in the index.
    pub hit: Stats,
    /// Random digests that are not.
    pub miss: Stats,
}

/// Fill an index with `n` attestations over random digests, named like `binauthz attestation
/// create` names them (`<attestor>-<16 hex of the digest>` in one of ~1000 namespaces); calls
/// `each(i, attestor, digest)` for every entry.
pub fn fill(n: usize, mut each: impl FnMut(usize, &'static str, &Digest)) -> TrustIndex {
    let mut rng = Rng::new(SEED);
    let mut index = TrustIndex::new();
    for i in 0..n {
        let digest = Digest::from_sha256(rng.bytes32());
        let attestor = ATTESTORS[i % ATTESTORS.len()];
        let key = format!("team-{:03}/{attestor}-{}", i % 997, &digest.hex()[..16]);
        index
            .insert(attestor, &digest, &key)
            .expect("sha256 digests always index");
        each(i, attestor, &digest);
    }
    index
}

/// The child process: fill `n` entries, print resident bytes per entry.
pub fn memory_child(args: &[String]) -> bool {
    let Some(pos) = args.iter().position(|a| a == CHILD_FLAG) else {
        return false;
    };
    let n: usize = args
        .get(pos + 1)
        .and_then(|s| s.parse().ok())
        .expect("entry count");
    let before = harness::resident_bytes().expect("VmRSS");
    let index = fill(n, |_, _, _| {});
    let after = harness::resident_bytes().expect("VmRSS");
    assert_eq!(black_box(&index).len(), n);
    println!(
        "bytes_per_entry={:.1}",
        (after.saturating_sub(before)) as f64 / n as f64
    );
    true
}

fn bytes_per_entry(n: usize) -> f64 {
    let exe = std::env::current_exe().expect("own path");
    let out = Command::new(exe)
        .args([CHILD_FLAG, &n.to_string()])
        .env("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072")
        .output()
        .expect("run the memory child");
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("bytes_per_entry="))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            panic!(
                "memory child failed: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })
}

/// Run the section for `sizes`; returns (lookups, bytes per entry) per size.
pub fn run(timing: &Timing, report: &mut Report, sizes: &[usize]) -> Vec<(usize, Lookups, f64)> {
    // One entry, always in cache: what a lookup computes (hex decoding, hashing) without
    // waiting for memory.
    let mut hot: Option<(&'static str, Digest)> = None;
    let index = fill(1, |_, attestor, digest| hot = Some((attestor, *digest)));
    let (attestor, digest) = hot.expect("one entry");
    let stats = harness::timed(timing, |_| {
        assert!(index.is_attested(black_box(attestor), black_box(&digest)));
    });
    report.time(
        "index",
        "is_attested, 1 entry (cache-hot: compute only)",
        stats,
        "hex decode + 2 SipHash lookups",
    );
    let mut out = Vec::new();
    for &n in sizes {
        let label = if n >= 1_000_000 {
            format!("{}M", n / 1_000_000)
        } else {
            format!("{}k", n / 1000)
        };
        // Keep every stride-th entry as a hit query, then shuffle them.
        let stride = (n / QUERIES).max(1);
        let mut hits: Vec<(&'static str, Digest)> = Vec::with_capacity(QUERIES + 1);
        let started = Instant::now();
        let index = fill(n, |i, attestor, digest| {
            if i % stride == 0 {
                hits.push((attestor, *digest));
            }
        });
        let fill_ns = started.elapsed().as_nanos() as f64 / n as f64;
        let mut rng = Rng::new(SEED ^ 0xffff);
        for i in (1..hits.len()).rev() {
            hits.swap(i, rng.next_u64() as usize % (i + 1));
        }
        let misses: Vec<(&'static str, Digest)> = (0..hits.len())
            .map(|i| {
                (
                    ATTESTORS[i % ATTESTORS.len()],
                    Digest::from_sha256(rng.bytes32()),
                )
            })
            .collect();
        let hit = harness::timed(timing, |i| {
            let (attestor, digest) = &hits[i % hits.len()];
            assert!(index.is_attested(black_box(attestor), black_box(digest)));
        });
        let miss = harness::timed(timing, |i| {
            let (attestor, digest) = &misses[i % misses.len()];
            assert!(!index.is_attested(black_box(attestor), black_box(digest)));
        });
        drop(index);
        let bytes = bytes_per_entry(n);
        report.time(
            "index",
            format!("is_attested, {label} entries, random hit"),
            hit,
            "target < 150 ns",
        );
        report.time(
            "index",
            format!("is_attested, {label} entries, random miss"),
            miss,
            "target < 150 ns",
        );
        report.time(
            "index",
            format!("insert, filling {label} entries"),
            Stats {
                median_ns: fill_ns,
                min_ns: fill_ns,
                max_ns: fill_ns,
                rounds: 1,
                ops_per_round: n,
            },
            "one pass, includes digest/key formatting",
        );
        report.bytes(
            "index",
            format!("resident memory per entry, {label} entries"),
            bytes,
            "target < 300 B; RSS delta in a fresh process",
        );
        out.push((n, Lookups { hit, miss }, bytes));
    }
    out
}
