//! `make bench`: how fast the pure core is. Prints figures, asserts none.
//!
//! Sections (all by default; name some to run only those: `cargo bench --bench perf -- index`):
//! - `verify`: signatures verified per second, our code next to the raw crypto call;
//! - `index`: trust-index lookups and memory per entry at 100k, 1M and 10M entries;
//! - `policy`: policy evaluation and reading workloads from JSON.
//!
//! A section is a module with `run(&Timing, &mut Report)` that adds rows and summary keys; the
//! admission load test adds its own (`admission_cpu_ratio`, `p99_us`, `ready_10k_s`) the same way.
//! `BENCH_QUICK=1` shortens every round, to check the bench itself.

// A bench stops loudly on a broken setup (a key that does not generate, a signature that does not
// verify); it never asserts a timing.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod harness;
mod policy_eval;
mod trust_index;
mod verification;

use harness::{Report, Timing};

/// Every section, in run order.
const SECTIONS: [&str; 3] = ["verify", "index", "policy"];

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if trust_index::memory_child(&args) {
        return;
    }
    // `cargo test --all-targets` builds and runs bench targets without `--bench`: build only.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("a benchmark: run it with `make bench-perf` (cargo bench --bench perf)");
        return;
    }
    // cargo passes `--bench`; anything else that is not a flag names a section.
    let wanted: Vec<&str> = args
        .iter()
        .filter(|a| !a.starts_with('-'))
        .map(String::as_str)
        .collect();
    if let Some(unknown) = wanted.iter().find(|w| !SECTIONS.contains(w)) {
        eprintln!(
            "unknown section {unknown:?}; sections: {}",
            SECTIONS.join(", ")
        );
        std::process::exit(2);
    }
    let want = |section: &str| wanted.is_empty() || wanted.contains(&section);

    let timing = Timing::from_env();
    println!("{}", machine());
    let mut report = Report::default();

    if want("verify") {
        eprintln!("verify: generating keys and signatures, then verifying");
        let (rsa2048, over_raw) = verification::run(&timing, &mut report);
        report.summary("verify_rsa2048_per_s", format!("{rsa2048:.0}"));
        report.summary("pgp_rsa2048_verify_over_raw", format!("{over_raw:.2}"));
    }
    if want("index") {
        eprintln!("index: filling 100k, 1M and 10M entries");
        let sizes = if timing.quick() {
            vec![100_000]
        } else {
            vec![100_000, 1_000_000, 10_000_000]
        };
        let results = trust_index::run(&timing, &mut report, &sizes);
        if let Some((_, lookups, bytes)) = results.iter().find(|(n, _, _)| *n == 100_000) {
            // The slower of hit and miss: admission pays for both.
            let ns = lookups.hit.median_ns.max(lookups.miss.median_ns);
            report.summary("index_lookup_ns", format!("{ns:.0}"));
            report.summary("index_bytes_per_entry", format!("{bytes:.0}"));
        }
    }
    if want("policy") {
        eprintln!("policy: evaluating a 3-container pod against 2 policies");
        let ns = policy_eval::run(&timing, &mut report);
        report.summary("evaluate_ns", format!("{ns:.0}"));
    }
    println!("{}", report.render());
}

/// CPU, cores, load and date, printed above the figures.
fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default();
    let date = jiff::Timestamp::now().strftime("%Y-%m-%d %H:%M UTC");
    format!(
        "binauthz bench: {cpu}, {cores} cores, load average {load}, {date}; release build, one thread per measurement"
    )
}
