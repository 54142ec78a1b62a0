//! `make bench-scale`: two `binauthz run` replicas, the leader and a standby, side by side over
//! 1k, 10k and 100k ImageAttestations on a real kube-apiserver + etcd. Prints figures, asserts
//! none.
//!
//! The bench runs a control plane of its own (state in `target/scale-cluster`, ports
//! 36443/32379/32380), so the shared one the tests use never holds 100k objects; it is started
//! fresh and removed at the end (`SCALE_KEEP=1` keeps it). For each size it creates the missing
//! attestations (ECDSA P-256 signatures made here, each for its own digest), then starts the
//! release binary as the leader, and once it has settled a second replica (a standby: the
//! leader holds the Lease), and measures each:
//! - **ready**: from the start of the process to `/readyz` answering 200, which requires every
//!   watch to have listed and every listed signature to be verified (the metric
//!   `binauthz_trust_index_entries` is checked to equal the size);
//! - **resident memory** (`VmRSS`) at that moment, and once settled: the leader also writes
//!   every attestation's status after the list; when a replica has used under 5 % of a core
//!   for 3 s (or after 180 s) the memory is what it holds. Bytes per attestation compare that
//!   with the same role over an empty cluster; the whole process counts: the trust pipeline,
//!   the leader's work, allocator overhead;
//! - **re-list peak**: the control plane is killed (SIGKILL, as in a crash) and restarted under
//!   the running replica; its watches are told their resource version is too old and list
//!   everything again; the peak of `VmRSS` (sampled every 10 ms) until each replica has listed
//!   and is ready again, and the time from the restarted API server to ready.
//!
//! `SCALE_SIZES=1000,10000` picks the sizes; `BENCH_QUICK=1` runs 1k only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "../../tests/support/mod.rs"]
mod support;

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use binauthz::crd::ImageAttestation;
use futures::StreamExt as _;
use kube::api::{Api, PostParams};
use kube::config::{Config, KubeConfigOptions, Kubeconfig};
use support::operator::{free_port, http_get, namespace_policy};
use support::plane::Plane;
use support::signer::Signer;

const PLANE: Plane = Plane {
    state_dir: "target/scale-cluster",
    apiserver_port: "36443",
    etcd_port: "32379",
    etcd_peer_port: "32380",
};
const NAMESPACE: &str = "scale";
const SYSTEM: &str = "binauthz-system";
const ATTESTOR: &str = "scale-attestor";
/// Creations in flight at once.
const CONCURRENCY: usize = 32;
const READY_LIMIT: Duration = Duration::from_secs(600);
const LISTED: &str = "listed every ImageAttestation";

/// One size's figures for one role.
struct Row {
    role: &'static str,
    size: usize,
    create_per_s: f64,
    ready: Duration,
    rss: u64,
    settled: u64,
    settle_time: Duration,
    relist_peak: Option<u64>,
    relist_ready: Option<Duration>,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    // `cargo test --all-targets` builds and runs bench targets without `--bench`: build only.
    if !std::env::args().any(|a| a == "--bench") {
        eprintln!("a benchmark: run it with `make bench-scale` (cargo bench --bench scale)");
        return;
    }
    let sizes = sizes();
    println!("{}", machine());
    eprintln!("scale: fresh control plane in {}", PLANE.state_dir);
    fresh_plane();
    PLANE.install_crds();
    PLANE.ok(&["create", "namespace", NAMESPACE]);
    PLANE.ok(&["create", "namespace", SYSTEM]);
    let signer = Signer::new();
    PLANE.apply(&signer.attestor_json(ATTESTOR));
    PLANE.apply(&namespace_policy(
        "scale",
        NAMESPACE,
        ATTESTOR,
        "ENFORCED_BLOCK_AND_AUDIT_LOG",
    ));
    let client = client(&PLANE.kubeconfig()).await;

    eprintln!("scale: baseline, a leader and a standby over no attestation");
    let mut leader = Replica::start(0, LEADER);
    let base_ready = leader.wait_ready(0, Instant::now()).await;
    let mut standby = Replica::start(0, STANDBY);
    standby.wait_ready(0, Instant::now()).await;
    let base = [leader.rss(), standby.rss()];
    drop(standby);
    drop(leader);
    eprintln!(
        "scale: baseline ready in {:.2} s, {} (leader) and {} (standby) resident",
        base_ready.as_secs_f64(),
        mib(base[0]),
        mib(base[1])
    );

    let mut rows = Vec::new();
    let mut created = 0;
    for size in sizes {
        let started = Instant::now();
        create(&client, &signer, created..size).await;
        let create_per_s = (size - created) as f64 / started.elapsed().as_secs_f64();
        created = size;
        eprintln!(
            "scale: {size} attestations stored ({create_per_s:.0} created/s); starting the leader"
        );
        let mut replicas = Vec::new();
        for role in [LEADER, STANDBY] {
            let mut replica = Replica::start(size, role);
            let ready = replica.wait_ready(size, replica.started).await;
            let rss = replica.rss();
            let (settled, settle_time) = replica.settle().await;
            eprintln!(
                "scale: {size}: {role} ready in {:.2} s, {} resident, {} after {:.0} s",
                ready.as_secs_f64(),
                mib(rss),
                mib(settled),
                settle_time.as_secs_f64()
            );
            rows.push(Row {
                role,
                size,
                create_per_s,
                ready,
                rss,
                settled,
                settle_time,
                relist_peak: None,
                relist_ready: None,
            });
            replicas.push(replica);
        }
        eprintln!("scale: {size}: crashing and restarting the control plane under both");
        let relisted = relist(&replicas, size).await;
        let last = rows.len() - relisted.len();
        for (row, relisted) in rows[last..].iter_mut().zip(relisted) {
            match relisted {
                Ok((peak, took)) => {
                    row.relist_peak = Some(peak);
                    row.relist_ready = Some(took);
                }
                Err(why) => eprintln!("scale: {size}: {}: no re-list measured: {why}", row.role),
            }
        }
    }
    if std::env::var_os("SCALE_KEEP").is_none() {
        PLANE.down();
        let _ = std::fs::remove_dir_all(PLANE.state_dir());
    }
    report(&rows, base);
}

/// Identities of the two replicas; the leader starts first and takes the Lease.
const LEADER: &str = "leader";
const STANDBY: &str = "standby";

/// Restart the control plane under the replicas and follow their re-lists: for each, the peak
/// resident bytes and the time from the restarted API server to ready again.
async fn relist(replicas: &[Replica], size: usize) -> Vec<Result<(u64, Duration), String>> {
    let lists: Vec<usize> = replicas.iter().map(Replica::lists).collect();
    let mut peaks: Vec<u64> = replicas.iter().map(Replica::rss).collect();
    let mut done: Vec<Option<Result<(u64, Duration), String>>> = vec![None; replicas.len()];
    PLANE.crash();
    PLANE.up();
    let back = Instant::now();
    while done.iter().any(Option::is_none) {
        for (i, replica) in replicas.iter().enumerate() {
            if done[i].is_some() {
                continue;
            }
            peaks[i] = peaks[i].max(replica.rss());
            if replica.lists() > lists[i] && http_get(replica.admin_port, "/readyz").await.is_ok() {
                let took = back.elapsed();
                let entries = replica.index_entries().await;
                done[i] = Some(if entries == Some(size) {
                    Ok((peaks[i], took))
                } else {
                    Err(format!("index holds {entries:?} entries after the re-list"))
                });
            } else if back.elapsed() > Duration::from_secs(180) {
                done[i] = Some(Err(
                    "the replica did not list again within 180 s of the restart".into(),
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    done.into_iter().flatten().collect()
}

/// The sizes to measure, ascending.
fn sizes() -> Vec<usize> {
    let spec = match std::env::var("SCALE_SIZES") {
        Ok(s) if !s.trim().is_empty() => s,
        _ if std::env::var_os("BENCH_QUICK").is_some() => "1000".into(),
        _ => "1000,10000,100000".into(),
    };
    let mut sizes: Vec<usize> = spec
        .split(',')
        .map(|s| {
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("SCALE_SIZES: {s:?} is not a number"))
        })
        .collect();
    sizes.sort_unstable();
    sizes.dedup();
    sizes
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load = load
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ");
    format!("machine: {cores} cores, {cpu}, load average {load}")
}

/// Stop and wipe a control plane left by an earlier run, then start a new one.
fn fresh_plane() {
    if PLANE.state_dir().join("kubeconfig").exists() {
        PLANE.down();
    }
    let _ = std::fs::remove_dir_all(PLANE.state_dir());
    PLANE.up();
}

async fn client(kubeconfig: &Path) -> kube::Client {
    let kubeconfig = Kubeconfig::read_from(kubeconfig).expect("read the kubeconfig");
    let mut config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("load the kubeconfig");
    config.read_timeout = Some(Duration::from_secs(60));
    kube::Client::try_from(config).expect("build a kube client")
}

/// Attestation number `i`: its own image digest, named the way `binauthz attestation create`
/// names attestations.
fn attestation(signer: &Signer, i: usize) -> ImageAttestation {
    let digest = sha256_hex(format!("scale image {i}").as_bytes());
    let image = format!("registry.example.com/team-{}/app@sha256:{digest}", i % 50);
    let name = format!("app-{}-{ATTESTOR}", &digest[..12]);
    signer.attestation(NAMESPACE, &name, ATTESTOR, &image)
}

fn sha256_hex(bytes: &[u8]) -> String {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, bytes);
    digest.as_ref().iter().map(|b| format!("{b:02x}")).collect()
}

/// Create attestations number `range`, `CONCURRENCY` at a time.
async fn create(client: &kube::Client, signer: &Signer, range: std::ops::Range<usize>) {
    let api: Api<ImageAttestation> = Api::namespaced(client.clone(), NAMESPACE);
    let total = range.len();
    let mut done = 0usize;
    let mut last_report = Instant::now();
    let mut stream = futures::stream::iter(range)
        .map(|i| {
            let api = api.clone();
            let attestation = attestation(signer, i);
            async move {
                let mut tries = 0;
                loop {
                    match api.create(&PostParams::default(), &attestation).await {
                        Ok(_) => return Ok(()),
                        Err(kube::Error::Api(e)) if e.code == 409 => return Ok(()),
                        Err(e) if tries < 5 => {
                            tries += 1;
                            eprintln!("scale: create failed ({e}); retrying");
                            tokio::time::sleep(Duration::from_secs(1)).await;
                        }
                        Err(e) => return Err(e),
                    }
                }
            }
        })
        .buffer_unordered(CONCURRENCY);
    while let Some(result) = stream.next().await {
        result.expect("create an ImageAttestation");
        done += 1;
        if last_report.elapsed() > Duration::from_secs(15) {
            eprintln!("scale: created {done} of {total}");
            last_report = Instant::now();
        }
    }
}

/// A `binauthz run` child process on the bench's control plane.
struct Replica {
    child: Child,
    admin_port: u16,
    log: PathBuf,
    started: Instant,
}

impl Replica {
    fn start(size: usize, identity: &str) -> Self {
        let webhook_port = free_port();
        let admin_port = free_port();
        let log = PLANE
            .state_dir()
            .join(format!("binauthz-{size}-{identity}.log"));
        // `binauthz run` logs to stdout; its errors go to stderr.
        let log_file = File::create(&log).expect("create the replica's log");
        let started = Instant::now();
        let child = Command::new(env!("CARGO_BIN_EXE_binauthz"))
            .args(["run", "--namespace", SYSTEM, "--identity", identity])
            .arg("--kubeconfig")
            .arg(PLANE.kubeconfig())
            .arg(format!(
                "--webhook-url=https://127.0.0.1:{webhook_port}/validate"
            ))
            .arg(format!("--webhook-port={webhook_port}"))
            .arg(format!("--admin-port={admin_port}"))
            .args(["--failure-policy", "ignore"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().expect("share the replica's log"))
            .stderr(log_file)
            .spawn()
            .expect("start binauthz run");
        Self {
            child,
            admin_port,
            log,
            started,
        }
    }

    /// Wait until `/readyz` answers 200 and the index holds `size` entries; time since `since`.
    async fn wait_ready(&mut self, size: usize, since: Instant) -> Duration {
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "binauthz run exited ({status}): {}",
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            if http_get(self.admin_port, "/readyz").await.is_ok() {
                let ready = since.elapsed();
                let entries = self.index_entries().await;
                assert_eq!(
                    entries,
                    Some(size),
                    "ready, but the trust index holds {entries:?} entries instead of {size}; log: {}",
                    self.log.display()
                );
                return ready;
            }
            assert!(
                since.elapsed() < READY_LIMIT,
                "not ready after {READY_LIMIT:?}; log: {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    async fn index_entries(&self) -> Option<usize> {
        let metrics = http_get(self.admin_port, "/metrics").await.ok()?;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("binauthz_trust_index_entries "))
            .and_then(|v| v.trim().parse().ok())
    }

    fn status_kib(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .expect("read the replica's /proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or_else(|| panic!("no {field} in /proc status"))
    }

    /// CPU time used so far, in clock ticks (`utime + stime` of `/proc/PID/stat`).
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.child.id()))
            .expect("read the replica's /proc stat");
        // Fields after the command name (which is in parentheses and may hold spaces).
        let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        // utime and stime are fields 14 and 15 of stat, 12 and 13 after the name.
        field(11) + field(12)
    }

    /// Wait until the leader has done what the list gave it to do (verifying and writing every
    /// attestation's status): the replica uses under 5 % of a core for 3 s in a row, or 180 s
    /// have passed. Resident bytes then, and the time it took.
    async fn settle(&self) -> (u64, Duration) {
        let start = Instant::now();
        let mut quiet = 0;
        let mut last = self.cpu_ticks();
        while quiet < 3 && start.elapsed() < Duration::from_secs(180) {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let now = self.cpu_ticks();
            quiet = if now.saturating_sub(last) < 5 {
                quiet + 1
            } else {
                0
            };
            last = now;
        }
        (self.rss(), start.elapsed())
    }

    /// Resident bytes now.
    fn rss(&self) -> u64 {
        self.status_kib("VmRSS:") * 1024
    }

    fn lists(&self) -> usize {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .matches(LISTED)
            .count()
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

fn report(rows: &[Row], base: [u64; 2]) {
    println!();
    println!(
        "Two binauthz replicas, the leader and a standby, over N ImageAttestations on a real kube-apiserver + etcd"
    );
    println!(
        "{:>8}  {:<8}  {:>10}  {:>9}  {:>12}  {:>16}  {:>12}  {:>14}  {:>13}",
        "N",
        "role",
        "created/s",
        "ready s",
        "at ready",
        "settled (after)",
        "bytes/object",
        "re-list peak",
        "re-list ready"
    );
    println!("{}", "-".repeat(124));
    for (role, rss) in [(LEADER, base[0]), (STANDBY, base[1])] {
        println!(
            "{:>8}  {:<8}  {:>10}  {:>9}  {:>12}",
            0,
            role,
            "",
            "",
            mib(rss)
        );
    }
    let mut at_10k: std::collections::BTreeMap<&str, (f64, f64)> = Default::default();
    for row in rows {
        let base = if row.role == LEADER { base[0] } else { base[1] };
        let per_object = row.settled.saturating_sub(base) as f64 / row.size.max(1) as f64;
        if row.size == 10_000 {
            at_10k.insert(row.role, (row.ready.as_secs_f64(), per_object));
        }
        println!(
            "{:>8}  {:<8}  {:>10.0}  {:>9.2}  {:>12}  {:>16}  {:>12.0}  {:>14}  {:>13}",
            row.size,
            row.role,
            row.create_per_s,
            row.ready.as_secs_f64(),
            mib(row.rss),
            format!(
                "{} ({:.0} s)",
                mib(row.settled),
                row.settle_time.as_secs_f64()
            ),
            per_object,
            row.relist_peak.map_or_else(|| "-".into(), mib),
            row.relist_ready
                .map_or_else(|| "-".into(), |d| format!("{:.2} s", d.as_secs_f64())),
        );
    }
    let key = |role: &str, field: fn(&(f64, f64)) -> String| {
        at_10k.get(role).map_or_else(|| "n/a".into(), field)
    };
    println!();
    println!(
        "ready_10k_s={} bytes_per_object_10k={} standby_ready_10k_s={} standby_bytes_per_object_10k={}",
        key(LEADER, |v| format!("{:.2}", v.0)),
        key(LEADER, |v| format!("{:.0}", v.1)),
        key(STANDBY, |v| format!("{:.2}", v.0)),
        key(STANDBY, |v| format!("{:.0}", v.1)),
    );
}
