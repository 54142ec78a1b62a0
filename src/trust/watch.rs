//! Feeding the [`TrustState`] from one watch per resource kind, running its signature checks
//! off the reactor, and re-verifying everything periodically.
//!
//! One task drives the watches: events, finished verifications and the re-verification timer
//! arrive in turn and are applied under the state's lock (held briefly; the leader's status
//! writer takes it too). Objects are reduced to what the state keeps at once; an attestation
//! list is applied as it arrives, never buffered whole.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::stream::BoxStream;
use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::Namespace;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt as _};
use tokio::sync::{Semaphore, mpsc};

use super::reports::InvalidObject;
use super::{Job, Resource, TrustState, object_key};
use crate::crd::{AttestationPolicy, Attestor, ImageAttestation};
use crate::metrics::Metrics;
use crate::verify;
use crate::watcher::{Counted, WatchBackoff};

/// How often every kept attestation is verified again (keys expire and are revoked by time).
pub const REVERIFY_EVERY: Duration = Duration::from_secs(300);
/// An attestation watch lists again at most this often when the state needs contents back.
const RELIST_AT_MOST_EVERY: Duration = Duration::from_secs(10);

/// How the watches and verifications run.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Every kept attestation is verified again this often.
    pub reverify_every: Duration,
    /// Signature checks running at once (each on a blocking thread).
    pub verify_concurrency: usize,
    /// A watch failing without a break for longer than this makes `/livez` fail, so the
    /// process restarts with fresh connections.
    pub failing_limit: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            reverify_every: REVERIFY_EVERY,
            verify_concurrency: std::thread::available_parallelism().map_or(2, usize::from),
            failing_limit: Duration::from_secs(900),
        }
    }
}

/// Progress of the watches, for `/livez`.
#[derive(Debug, Default)]
pub struct WatchHealth {
    running: AtomicBool,
    last_event: [AtomicI64; 4],
    failing_since: [AtomicI64; 4],
}

fn slot(resource: Resource) -> usize {
    resource as usize
}

fn unix_now() -> i64 {
    jiff::Timestamp::now().as_second()
}

impl WatchHealth {
    /// Health of a driver that is running (for tests and for callers that feed the state
    /// themselves).
    pub fn running() -> Self {
        let health = Self::default();
        health.running.store(true, Ordering::Release);
        health
    }

    fn ok(&self, resource: Resource) {
        self.last_event[slot(resource)].store(unix_now(), Ordering::Release);
        self.failing_since[slot(resource)].store(0, Ordering::Release);
    }

    fn failed(&self, resource: Resource) {
        // Keep the time of the first failure in a row.
        let _ = self.failing_since[slot(resource)].compare_exchange(
            0,
            unix_now(),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
    }

    /// `Ok` while the watch task runs and no watch has failed without a break for longer
    /// than `limit`; else why not.
    pub fn check(&self, limit: Duration) -> Result<(), String> {
        if !self.running.load(Ordering::Acquire) {
            return Err("the watch task is not running".to_owned());
        }
        let now = unix_now();
        let limit = i64::try_from(limit.as_secs()).unwrap_or(i64::MAX);
        for resource in Resource::ALL {
            let since = self.failing_since[slot(resource)].load(Ordering::Acquire);
            if since != 0 && now.saturating_sub(since) > limit {
                return Err(format!(
                    "the watch of {} has failed for {}s without a break",
                    resource.as_str(),
                    now - since
                ));
            }
        }
        Ok(())
    }

    /// One line per watch: seconds since its last event, and since when it fails.
    pub fn report(&self) -> String {
        let now = unix_now();
        Resource::ALL
            .iter()
            .map(|&r| {
                let last = self.last_event[slot(r)].load(Ordering::Acquire);
                let failing = self.failing_since[slot(r)].load(Ordering::Acquire);
                let last = if last == 0 {
                    "no event yet".to_owned()
                } else {
                    format!("last event {}s ago", now - last)
                };
                if failing == 0 {
                    format!("{}: {last}\n", r.as_str())
                } else {
                    format!("{}: {last}, failing for {}s\n", r.as_str(), now - failing)
                }
            })
            .collect()
    }
}

/// Clears `running` when the driver ends, even by a panic.
struct RunningGuard(Arc<WatchHealth>);

impl Drop for RunningGuard {
    fn drop(&mut self) {
        self.0.running.store(false, Ordering::Release);
    }
}

pub(super) enum Change {
    Attestor(watcher::Event<DeserializeGuard<Attestor>>),
    Attestation(watcher::Event<DeserializeGuard<ImageAttestation>>),
    Policy(watcher::Event<DeserializeGuard<AttestationPolicy>>),
    Namespace(watcher::Event<PartialObjectMeta<Namespace>>),
}

type Tagged = (Resource, Result<Change, watcher::Error>);

/// A watch of `resource`, counted while open, its events tagged.
fn watch<K, S>(
    resource: Resource,
    metrics: &Arc<Metrics>,
    stream: S,
    wrap: fn(watcher::Event<K>) -> Change,
) -> BoxStream<'static, Tagged>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    K: 'static,
{
    let counted = Counted::open(metrics, resource.as_str());
    stream
        .backoff(WatchBackoff::new())
        .map(move |r| {
            let _open = &counted;
            (resource, r.map(wrap))
        })
        .boxed()
}

/// Objects listed since the last `Init`, per small resource, applied at `InitDone`
/// (attestations are applied as they arrive).
#[derive(Default)]
pub(super) struct Buffers {
    attestors: Vec<DeserializeGuard<Attestor>>,
    policies: Vec<DeserializeGuard<AttestationPolicy>>,
    namespaces: Vec<PartialObjectMeta<Namespace>>,
}

fn guard_key<K: kube::Resource>(guard: &DeserializeGuard<K>) -> String {
    match &guard.0 {
        Ok(object) => object_key(object.meta().namespace.as_deref(), &object.name_any()),
        Err(invalid) => object_key(
            invalid.metadata.namespace.as_deref(),
            invalid.metadata.name.as_deref().unwrap_or_default(),
        ),
    }
}

fn guard_name<K: kube::Resource>(guard: &DeserializeGuard<K>) -> String {
    match &guard.0 {
        Ok(object) => object.name_any(),
        Err(invalid) => invalid.metadata.name.clone().unwrap_or_default(),
    }
}

fn invalid<K: kube::Resource<DynamicType = ()>>(
    state: &mut TrustState,
    guard: &DeserializeGuard<K>,
) {
    if let Err(e) = &guard.0 {
        state.invalid(InvalidObject {
            kind: match K::kind(&()).as_ref() {
                "Attestor" => "Attestor",
                "AttestationPolicy" => "AttestationPolicy",
                _ => "ImageAttestation",
            },
            namespace: e.metadata.namespace.clone().unwrap_or_default(),
            name: e.metadata.name.clone().unwrap_or_default(),
            error: e.error.clone(),
        });
    }
}

fn labels(ns: PartialObjectMeta<Namespace>) -> (String, BTreeMap<String, String>) {
    let name = ns.name_any();
    (name, ns.metadata.labels.unwrap_or_default())
}

fn apply_attestor(state: &mut TrustState, guard: DeserializeGuard<Attestor>) -> Vec<Job> {
    let name = guard_name(&guard);
    match guard.0 {
        Ok(a) => {
            let jobs = state.apply_attestor(&name, a.spec);
            state.observe_attestor(&name, a.metadata.generation, a.metadata.uid, a.status);
            jobs
        }
        Err(_) => {
            invalid(state, &guard);
            state.delete_attestor(&name);
            Vec::new()
        }
    }
}

fn apply_attestation(
    state: &mut TrustState,
    guard: DeserializeGuard<ImageAttestation>,
) -> Vec<Job> {
    let key = guard_key(&guard);
    match guard.0 {
        Ok(a) => {
            let jobs = state.apply_attestation(&key, a.spec);
            state.observe_attestation(&key, a.metadata.generation, a.status.as_ref());
            jobs
        }
        Err(_) => {
            invalid(state, &guard);
            state.delete_attestation(&key);
            Vec::new()
        }
    }
}

fn apply_policy(state: &mut TrustState, guard: DeserializeGuard<AttestationPolicy>) {
    let name = guard_name(&guard);
    match guard.0 {
        Ok(p) => {
            state.apply_policy(&name, Ok(&p.spec));
            state.observe_policy(&name, p.metadata.generation, p.metadata.uid, p.status);
        }
        Err(_) => {
            invalid(state, &guard);
            if let Err(e) = guard.0 {
                state.apply_policy(&name, Err(e.error));
            }
        }
    }
}

/// Apply one watch event; returns the verification jobs it needs.
pub(super) fn handle(state: &mut TrustState, buffers: &mut Buffers, change: Change) -> Vec<Job> {
    use watcher::Event as E;
    match change {
        Change::Attestor(event) => match event {
            E::Init => buffers.attestors.clear(),
            E::InitApply(o) => buffers.attestors.push(o),
            E::InitDone => {
                let all = std::mem::take(&mut buffers.attestors);
                let readable: Vec<(String, crate::crd::AttestorSpec)> = all
                    .iter()
                    .filter_map(|g| g.0.as_ref().ok().map(|a| (a.name_any(), a.spec.clone())))
                    .collect();
                let jobs = state.reset_attestors(readable);
                for guard in &all {
                    match &guard.0 {
                        Ok(a) => state.observe_attestor(
                            &a.name_any(),
                            a.metadata.generation,
                            a.metadata.uid.clone(),
                            a.status.clone(),
                        ),
                        Err(_) => invalid(state, guard),
                    }
                }
                return jobs;
            }
            E::Apply(g) => return apply_attestor(state, g),
            E::Delete(g) => state.delete_attestor(&guard_name(&g)),
        },
        Change::Attestation(event) => match event {
            E::Init => state.begin_attestation_list(),
            E::InitApply(g) | E::Apply(g) => return apply_attestation(state, g),
            E::InitDone => {
                state.end_attestation_list();
                tracing::info!("listed every ImageAttestation");
            }
            E::Delete(g) => state.delete_attestation(&guard_key(&g)),
        },
        Change::Policy(event) => match event {
            E::Init => buffers.policies.clear(),
            E::InitApply(o) => buffers.policies.push(o),
            E::InitDone => {
                let all = std::mem::take(&mut buffers.policies);
                state.reset_policies(
                    all.iter()
                        .map(|g| {
                            (
                                guard_name(g),
                                g.0.as_ref()
                                    .map(|p| p.spec.clone())
                                    .map_err(|e| e.error.clone()),
                            )
                        })
                        .collect(),
                );
                for guard in &all {
                    match &guard.0 {
                        Ok(p) => state.observe_policy(
                            &p.name_any(),
                            p.metadata.generation,
                            p.metadata.uid.clone(),
                            p.status.clone(),
                        ),
                        Err(_) => invalid(state, guard),
                    }
                }
            }
            E::Apply(g) => apply_policy(state, g),
            E::Delete(g) => state.delete_policy(&guard_name(&g)),
        },
        Change::Namespace(event) => match event {
            E::Init => buffers.namespaces.clear(),
            E::InitApply(o) => buffers.namespaces.push(o),
            E::InitDone => {
                let all = std::mem::take(&mut buffers.namespaces)
                    .into_iter()
                    .map(labels)
                    .collect();
                state.reset_namespaces(all);
            }
            E::Apply(ns) => {
                let (name, labels) = labels(ns);
                state.apply_namespace(&name, labels);
            }
            E::Delete(ns) => state.delete_namespace(&ns.name_any()),
        },
    }
    Vec::new()
}

type Done = (Job, Result<verify::Verified, verify::Failure>);

/// Run one job on a blocking thread once the semaphore lets it, and report back.
async fn verify_job(job: Job, semaphore: Arc<Semaphore>, done: mpsc::UnboundedSender<Done>) {
    let Ok(_permit) = semaphore.acquire_owned().await else {
        return;
    };
    let span = tracing::debug_span!("verify", attestation = %job.attestation);
    let run = job.clone();
    let outcome = match tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        run.run(jiff::Timestamp::now())
    })
    .await
    {
        Ok(outcome) => outcome,
        // A panic in the crypto stack must not trust anything.
        Err(error) => Err(verify::Failure {
            reason: verify::Reason::BadSignature,
            message: format!("verification stopped: {error}"),
        }),
    };
    // The receiver lives as long as the driver; after it, nobody needs the result.
    let _ = done.send((job, outcome));
}

fn lock(state: &Mutex<TrustState>) -> std::sync::MutexGuard<'_, TrustState> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn attestation_watch(client: &Client, metrics: &Arc<Metrics>) -> BoxStream<'static, Tagged> {
    // Pages of 500 (kube's default): the API server's cost is mostly per request, so larger
    // pages list 100k attestations in a quarter of the time pages of 100 take; a page of the
    // largest attestations the schema allows (`crd::limits`) is about 110 MB while buffered.
    let config = crate::watcher::config().page_size(500);
    watch(
        Resource::ImageAttestations,
        metrics,
        watcher(
            Api::<DeserializeGuard<ImageAttestation>>::all(client.clone()),
            config,
        ),
        Change::Attestation,
    )
}

/// Watch the four resources with `client` and keep `state` current, forever.
pub async fn run(
    client: Client,
    state: Arc<Mutex<TrustState>>,
    metrics: Arc<Metrics>,
    health: Arc<WatchHealth>,
    options: WatchOptions,
) {
    health.running.store(true, Ordering::Release);
    let _guard = RunningGuard(health.clone());
    let config = crate::watcher::config();
    let mut others = futures::stream::select_all([
        watch(
            Resource::Attestors,
            &metrics,
            watcher(
                Api::<DeserializeGuard<Attestor>>::all(client.clone()),
                config.clone(),
            ),
            Change::Attestor,
        ),
        watch(
            Resource::AttestationPolicies,
            &metrics,
            watcher(
                Api::<DeserializeGuard<AttestationPolicy>>::all(client.clone()),
                config.clone(),
            ),
            Change::Policy,
        ),
        watch(
            Resource::Namespaces,
            &metrics,
            watcher(
                Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
                config,
            ),
            Change::Namespace,
        ),
    ]);
    let mut attestations = attestation_watch(&client, &metrics);
    let mut last_relist = tokio::time::Instant::now();
    let semaphore = Arc::new(Semaphore::new(options.verify_concurrency.max(1)));
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let spawn = |jobs: Vec<Job>| {
        for job in jobs {
            tokio::spawn(verify_job(job, semaphore.clone(), done_tx.clone()));
        }
    };
    let mut buffers = Buffers::default();
    let every = options.reverify_every.max(Duration::from_secs(1));
    let mut reverify = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    reverify.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut relist_check = tokio::time::interval(RELIST_AT_MOST_EVERY);
    loop {
        let next = tokio::select! {
            next = others.next() => next,
            next = attestations.next() => next,
            Some((job, outcome)) = done_rx.recv() => {
                lock(&state).complete(&job, outcome);
                continue;
            }
            _ = reverify.tick() => {
                let jobs = {
                    let mut state = lock(&state);
                    state.mark_all();
                    state.reverify_all()
                };
                tracing::debug!(attestations = jobs.len(), "periodic re-verification");
                spawn(jobs);
                continue;
            }
            _ = relist_check.tick() => {
                if lock(&state).wants_relist() && last_relist.elapsed() >= RELIST_AT_MOST_EVERY {
                    // Contents that were not kept are needed again: list once more.
                    tracing::info!("listing ImageAttestations again for contents not kept");
                    attestations = attestation_watch(&client, &metrics);
                    last_relist = tokio::time::Instant::now();
                }
                continue;
            }
        };
        let Some((resource, result)) = next else {
            tracing::error!("a watch ended; the trust index stops following changes");
            return;
        };
        match result {
            Ok(change) => {
                health.ok(resource);
                let jobs = handle(&mut lock(&state), &mut buffers, change);
                spawn(jobs);
            }
            Err(error) => {
                health.failed(resource);
                tracing::warn!(resource = resource.as_str(), %error, "watch failed; retrying with backoff");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn health_reports_failures_in_a_row() {
        let health = WatchHealth::running();
        assert!(health.check(Duration::from_secs(60)).is_ok());
        health.failed(Resource::Namespaces);
        health.failing_since[slot(Resource::Namespaces)].store(unix_now() - 120, Ordering::Release);
        health.failed(Resource::Namespaces);
        let error = health.check(Duration::from_secs(60)).unwrap_err();
        assert!(
            error.starts_with("the watch of namespaces has failed for 12"),
            "{error}"
        );
        assert!(
            health
                .report()
                .contains("namespaces: no event yet, failing for 12")
        );
        health.ok(Resource::Namespaces);
        assert!(health.check(Duration::from_secs(60)).is_ok());
        assert!(
            WatchHealth::default()
                .check(Duration::from_secs(60))
                .is_err()
        );
    }
}
