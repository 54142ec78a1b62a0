//! Timing (warm-up, rounds, median and spread), a small deterministic RNG, memory readings, and
//! the report: the summary table and the last `key=value` line.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

/// Nanoseconds per operation over several rounds.
#[derive(Clone, Copy, Debug)]
pub struct Stats {
    /// Median of the rounds' ns/op.
    pub median_ns: f64,
    /// Fastest round.
    pub min_ns: f64,
    /// Slowest round.
    pub max_ns: f64,
    /// Number of rounds.
    pub rounds: usize,
    /// Operations per round.
    pub ops_per_round: usize,
}

impl Stats {
    /// Operations per second on one core, from the median.
    pub fn per_second(&self) -> f64 {
        1e9 / self.median_ns
    }
}

/// How long to warm up and measure.
#[derive(Clone, Copy, Debug)]
pub struct Timing {
    /// Warm-up before the rounds are sized.
    pub warmup: Duration,
    /// Target duration of one round.
    pub round: Duration,
    /// Rounds per benchmark; the median is reported.
    pub rounds: usize,
}

impl Timing {
    /// The default, or a quick run with `BENCH_QUICK=1` (for checking the bench itself).
    pub fn from_env() -> Self {
        if std::env::var_os("BENCH_QUICK").is_some_and(|v| v != "0") {
            Self {
                warmup: Duration::from_millis(20),
                round: Duration::from_millis(10),
                rounds: 3,
            }
        } else {
            Self {
                warmup: Duration::from_millis(300),
                round: Duration::from_millis(150),
                rounds: 9,
            }
        }
    }

    /// Whether this is a quick run.
    pub fn quick(&self) -> bool {
        self.rounds < 5
    }
}

/// Time `op(i)` with `i` counting up from 0: warm up, size rounds to `timing.round`, then
/// run `timing.rounds` rounds.
pub fn timed(timing: &Timing, mut op: impl FnMut(usize)) -> Stats {
    let start = Instant::now();
    let mut done = 0usize;
    let mut batch = 1usize;
    while start.elapsed() < timing.warmup {
        for _ in 0..batch {
            op(done);
            done += 1;
        }
        batch = (batch * 2).min(1 << 16);
    }
    let per_op = start.elapsed().as_secs_f64() / done.max(1) as f64;
    let per_round = ((timing.round.as_secs_f64() / per_op) as usize).max(1);
    fixed(done, timing.rounds, per_round, op)
}

/// How many times `b` costs `a`, measured in alternating rounds of `per_round` calls each (`a`,
/// then `b`, `rounds` times; `i` counting up from `first` in each): host noise that drifts
/// during a run falls on both sides of a ratio. The median of the per-round ratios.
pub fn paired(
    first: usize,
    rounds: usize,
    per_round: usize,
    mut a: impl FnMut(usize),
    mut b: impl FnMut(usize),
) -> f64 {
    let mut ratios: Vec<f64> = (0..rounds)
        .map(|round| {
            let from = first + round * per_round;
            let start = Instant::now();
            (from..from + per_round).for_each(&mut a);
            let a_time = start.elapsed().as_secs_f64();
            let start = Instant::now();
            (from..from + per_round).for_each(&mut b);
            start.elapsed().as_secs_f64() / a_time
        })
        .collect();
    ratios.sort_by(f64::total_cmp);
    ratios[ratios.len() / 2]
}

/// Run `rounds` rounds of `per_round` calls of `op(i)`, `i` counting up from `first`; no
/// warm-up (for inputs that may be used once only).
pub fn fixed(first: usize, rounds: usize, per_round: usize, mut op: impl FnMut(usize)) -> Stats {
    let mut i = first;
    let mut samples: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..per_round {
                op(i);
                i += 1;
            }
            start.elapsed().as_nanos() as f64 / per_round as f64
        })
        .collect();
    samples.sort_by(f64::total_cmp);
    Stats {
        median_ns: samples[samples.len() / 2],
        min_ns: samples[0],
        max_ns: samples[samples.len() - 1],
        rounds,
        ops_per_round: per_round,
    }
}

/// SplitMix64: deterministic, fast, good enough to spread digests over a hash table.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// 32 random bytes.
    pub fn bytes32(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        for chunk in out.chunks_exact_mut(8) {
            chunk.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        out
    }
}

/// Resident memory of this process in bytes (`VmRSS` of /proc/self/status).
pub fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// What one row of the summary table shows.
#[derive(Clone, Debug)]
pub enum Figure {
    /// A timing.
    Time(Stats),
    /// A size in bytes per item.
    Bytes(f64),
}

/// One row of the summary table.
#[derive(Clone, Debug)]
pub struct Row {
    /// Section, e.g. "verify".
    pub section: &'static str,
    /// What was measured.
    pub name: String,
    /// The figure.
    pub figure: Figure,
    /// A short remark (target, comparison).
    pub note: String,
}

/// Everything measured in one run.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Row>,
    /// Extra tables printed before the summary (e.g. the verification comparison).
    tables: Vec<String>,
    summary: Vec<(&'static str, String)>,
}

impl Report {
    /// Add a timing row; also printed at once so a long run shows progress.
    pub fn time(
        &mut self,
        section: &'static str,
        name: impl Into<String>,
        stats: Stats,
        note: impl Into<String>,
    ) {
        let row = Row {
            section,
            name: name.into(),
            figure: Figure::Time(stats),
            note: note.into(),
        };
        eprintln!("  {}", format_row(&row));
        self.rows.push(row);
    }

    /// Add a size row.
    pub fn bytes(
        &mut self,
        section: &'static str,
        name: impl Into<String>,
        bytes: f64,
        note: impl Into<String>,
    ) {
        let row = Row {
            section,
            name: name.into(),
            figure: Figure::Bytes(bytes),
            note: note.into(),
        };
        eprintln!("  {}", format_row(&row));
        self.rows.push(row);
    }

    /// Add a preformatted table, printed before the summary.
    pub fn table(&mut self, text: String) {
        self.tables.push(text);
    }

    /// Set a figure of the last line (`key=value`); later sections may add their own keys.
    pub fn summary(&mut self, key: &'static str, value: impl Into<String>) {
        self.summary.push((key, value.into()));
    }

    /// The tables, the summary table and the `key=value` line.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for table in &self.tables {
            let _ = writeln!(out, "{table}");
        }
        let _ = writeln!(
            out,
            "{:<8} {:<58} {:>12} {:>14} {:>21} {:>12}  note",
            "section", "benchmark", "median", "per s (1 core)", "min..max", "rounds x ops"
        );
        let _ = writeln!(out, "{}", "-".repeat(141));
        for row in &self.rows {
            let _ = writeln!(out, "{}", format_row(row));
        }
        let _ = writeln!(out);
        let line: Vec<String> = self
            .summary
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let _ = write!(out, "{}", line.join(" "));
        out
    }
}

fn format_row(row: &Row) -> String {
    match &row.figure {
        Figure::Time(s) => format!(
            "{:<8} {:<58} {:>12} {:>14} {:>21} {:>12}  {}",
            row.section,
            row.name,
            duration(s.median_ns),
            per_second(s.per_second()),
            format!("{}..{}", duration(s.min_ns), duration(s.max_ns)),
            format!("{}x{}", s.rounds, s.ops_per_round),
            row.note
        ),
        Figure::Bytes(b) => format!(
            "{:<8} {:<58} {:>12} {:>14} {:>21} {:>12}  {}",
            row.section,
            row.name,
            format!("{b:.0} B"),
            "",
            "",
            "",
            row.note
        ),
    }
}

/// A duration in ns with a readable unit.
pub fn duration(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.1} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else {
        format!("{:.2} ms", ns / 1e6)
    }
}

/// A rate with a readable unit.
pub fn per_second(rate: f64) -> String {
    if rate >= 1e6 {
        format!("{:.2} M", rate / 1e6)
    } else if rate >= 1e4 {
        format!("{:.1} k", rate / 1e3)
    } else {
        format!("{rate:.0}")
    }
}
