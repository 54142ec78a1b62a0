//! Feeding an [`IndexState`] from Kubernetes watches, running its signature checks off the
//! reactor, and re-verifying everything periodically.
//!
//! One task owns the state: watch events, finished verifications and the re-verification
//! timer arrive in turn, so the state needs no lock of its own. Objects are reduced to their
//! spec (labels for namespaces) at once; metadata such as managedFields is never kept.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::time::Duration;

use futures::stream::{BoxStream, SelectAll};
use futures::{Stream, StreamExt as _};
use k8s_openapi::api::core::v1::Namespace;
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::{WatchStreamExt as _, watcher};
use kube::{Api, Client, ResourceExt as _};
use tokio::sync::{Semaphore, mpsc};

use super::{IndexState, Job, Resource};
use crate::backoff::WatchBackoff;
use crate::crd::{
    AttestationPolicy, AttestationPolicySpec, Attestor, ImageAttestation, ImageAttestationSpec,
};
use crate::verify;

/// How the watches and verifications run.
#[derive(Clone, Debug)]
pub struct WatchOptions {
    /// Every attestation is verified again this often (keys expire).
    pub reverify_every: Duration,
    /// Signature checks running at once (each on a blocking thread).
    pub verify_concurrency: usize,
    /// Server-side watch timeout, below common load-balancer idle timeouts.
    pub watch_timeout_seconds: u32,
    /// A watch failing without a break for longer than this makes `/livez` fail, so the
    /// process restarts with fresh connections.
    pub failing_limit: Duration,
}

impl Default for WatchOptions {
    fn default() -> Self {
        Self {
            reverify_every: Duration::from_secs(300),
            verify_concurrency: std::thread::available_parallelism().map_or(2, usize::from),
            watch_timeout_seconds: 240,
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
    match resource {
        Resource::Attestors => 0,
        Resource::ImageAttestations => 1,
        Resource::AttestationPolicies => 2,
        Resource::Namespaces => 3,
    }
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

enum Change {
    Attestor(watcher::Event<DeserializeGuard<Attestor>>),
    Attestation(watcher::Event<DeserializeGuard<ImageAttestation>>),
    Policy(watcher::Event<DeserializeGuard<AttestationPolicy>>),
    Namespace(watcher::Event<PartialObjectMeta<Namespace>>),
}

type Tagged = (Resource, Result<Change, watcher::Error>);

fn tag<S, K>(
    resource: Resource,
    stream: S,
    wrap: fn(watcher::Event<K>) -> Change,
) -> BoxStream<'static, Tagged>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
    K: 'static,
{
    stream.map(move |r| (resource, r.map(wrap))).boxed()
}

/// Objects listed since the last `Init`, per resource, applied at `InitDone`.
#[derive(Default)]
struct Buffers {
    attestors: Vec<DeserializeGuard<Attestor>>,
    /// Key (`namespace/name`) and spec of every attestation that could be read.
    attestations: Vec<(String, ImageAttestationSpec)>,
    policies: Vec<DeserializeGuard<AttestationPolicy>>,
    namespaces: Vec<PartialObjectMeta<Namespace>>,
}

fn attestation_key(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}

fn guard_key<K>(guard: &DeserializeGuard<K>) -> String
where
    K: kube::Resource,
{
    match &guard.0 {
        Ok(object) => attestation_key(object.meta().namespace.as_deref(), &object.name_any()),
        Err(invalid) => attestation_key(
            invalid.metadata.namespace.as_deref(),
            invalid.metadata.name.as_deref().unwrap_or_default(),
        ),
    }
}

fn guard_name<K>(guard: &DeserializeGuard<K>) -> String
where
    K: kube::Resource,
{
    match &guard.0 {
        Ok(object) => object.name_any(),
        Err(invalid) => invalid.metadata.name.clone().unwrap_or_default(),
    }
}

/// The key and, if the object could be read, the spec of an attestation; an unreadable one is
/// logged: it is not trusted.
fn attestation_spec(
    guard: DeserializeGuard<ImageAttestation>,
) -> (String, Option<ImageAttestationSpec>) {
    let key = guard_key(&guard);
    match guard.0 {
        Ok(attestation) => (key, Some(attestation.spec)),
        Err(e) => {
            tracing::warn!(attestation = %key, error = %e, "cannot read ImageAttestation; it is not trusted");
            (key, None)
        }
    }
}

fn policy_spec(
    guard: DeserializeGuard<AttestationPolicy>,
) -> Result<AttestationPolicySpec, String> {
    guard.0.map(|p| p.spec).map_err(|e| e.error)
}

fn labels(ns: PartialObjectMeta<Namespace>) -> (String, BTreeMap<String, String>) {
    let name = ns.name_any();
    (name, ns.metadata.labels.unwrap_or_default())
}

/// Apply one watch event; returns the verification jobs it needs.
fn handle(state: &mut IndexState, buffers: &mut Buffers, change: Change) -> Vec<Job> {
    use watcher::Event as E;
    match change {
        Change::Attestor(event) => match event {
            E::Init => buffers.attestors.clear(),
            E::InitApply(o) => buffers.attestors.push(o),
            E::InitDone => {
                let all = std::mem::take(&mut buffers.attestors)
                    .into_iter()
                    .filter_map(|g| {
                        let name = guard_name(&g);
                        match g.0 {
                            Ok(a) => Some((name, a.spec)),
                            Err(e) => {
                                tracing::warn!(attestor = %name, error = %e, "cannot read Attestor; it vouches for nothing");
                                None
                            }
                        }
                    })
                    .collect();
                return state.reset_attestors(all);
            }
            E::Apply(g) => {
                let name = guard_name(&g);
                match g.0 {
                    Ok(a) => return state.apply_attestor(&name, a.spec),
                    Err(e) => {
                        tracing::warn!(attestor = %name, error = %e, "cannot read Attestor; it vouches for nothing");
                        state.delete_attestor(&name);
                    }
                }
            }
            E::Delete(g) => state.delete_attestor(&guard_name(&g)),
        },
        Change::Attestation(event) => match event {
            E::Init => buffers.attestations.clear(),
            // Only the spec is kept, from the moment each object arrives: a list of many
            // attestations never holds their metadata and status in memory all at once.
            E::InitApply(g) => {
                if let (key, Some(spec)) = attestation_spec(g) {
                    buffers.attestations.push((key, spec));
                }
            }
            E::InitDone => {
                let all = std::mem::take(&mut buffers.attestations);
                tracing::info!(
                    attestations = all.len(),
                    "listed every ImageAttestation; verifying them"
                );
                return state.reset_attestations(all);
            }
            E::Apply(g) => match attestation_spec(g) {
                (key, Some(spec)) => return state.apply_attestation(&key, spec),
                (key, None) => state.delete_attestation(&key),
            },
            E::Delete(g) => state.delete_attestation(&guard_key(&g)),
        },
        Change::Policy(event) => match event {
            E::Init => buffers.policies.clear(),
            E::InitApply(o) => buffers.policies.push(o),
            E::InitDone => {
                let all = std::mem::take(&mut buffers.policies)
                    .into_iter()
                    .map(|g| (guard_name(&g), policy_spec(g)))
                    .collect();
                state.reset_policies(all);
            }
            E::Apply(g) => {
                let name = guard_name(&g);
                state.apply_policy(&name, policy_spec(g).as_ref().map_err(Clone::clone));
            }
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

/// Watch the four resources with `client` and keep `state` current, forever.
pub async fn run(
    client: Client,
    mut state: IndexState,
    health: Arc<WatchHealth>,
    options: WatchOptions,
) {
    health.running.store(true, Ordering::Release);
    let _guard = RunningGuard(health.clone());
    let config = watcher::Config::default().timeout(options.watch_timeout_seconds);
    let mut changes: SelectAll<BoxStream<'static, Tagged>> = futures::stream::select_all([
        tag(
            Resource::Attestors,
            watcher(
                Api::<DeserializeGuard<Attestor>>::all(client.clone()),
                config.clone(),
            )
            .backoff(WatchBackoff::new()),
            Change::Attestor,
        ),
        tag(
            Resource::ImageAttestations,
            watcher(
                Api::<DeserializeGuard<ImageAttestation>>::all(client.clone()),
                config.clone(),
            )
            .backoff(WatchBackoff::new()),
            Change::Attestation,
        ),
        tag(
            Resource::AttestationPolicies,
            watcher(
                Api::<DeserializeGuard<AttestationPolicy>>::all(client.clone()),
                config.clone(),
            )
            .backoff(WatchBackoff::new()),
            Change::Policy,
        ),
        tag(
            Resource::Namespaces,
            watcher(Api::<PartialObjectMeta<Namespace>>::all(client), config)
                .backoff(WatchBackoff::new()),
            Change::Namespace,
        ),
    ]);
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
    loop {
        tokio::select! {
            next = changes.next() => {
                let Some((resource, result)) = next else {
                    tracing::error!("every watch ended; the trust index stops following changes");
                    return;
                };
                match result {
                    Ok(change) => {
                        health.ok(resource);
                        spawn(handle(&mut state, &mut buffers, change));
                    }
                    Err(error) => {
                        health.failed(resource);
                        tracing::warn!(resource = resource.as_str(), %error, "watch failed; retrying with backoff");
                    }
                }
            }
            Some((job, outcome)) = done_rx.recv() => state.complete(&job, outcome),
            _ = reverify.tick() => {
                let jobs = state.reverify_all();
                tracing::debug!(attestations = jobs.len(), "periodic re-verification");
                spawn(jobs);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ImageAttestationStatus, conditions};
    use crate::index::tests::{TestKey, digest};
    use crate::metrics::Metrics;
    use kube::core::ObjectMeta;

    fn attestation(name: &str, spec: crate::crd::ImageAttestationSpec) -> ImageAttestation {
        let mut object = ImageAttestation::new(name, spec);
        object.metadata.namespace = Some("ns".into());
        object
    }

    fn forged_status(key_id: &str) -> ImageAttestationStatus {
        ImageAttestationStatus {
            observed_generation: Some(1),
            conditions: vec![conditions::new(
                conditions::VERIFIED,
                true,
                "Verified",
                "forged",
                Some(1),
                jiff::Timestamp::now(),
            )],
            verified_key_id: Some(key_id.to_owned()),
            digest: Some(digest('a')),
        }
    }

    fn run_jobs(state: &mut IndexState, jobs: Vec<Job>) {
        for job in jobs {
            let outcome = job.run(jiff::Timestamp::now());
            state.complete(&job, outcome);
        }
    }

    fn setup(key: &TestKey) -> (IndexState, Buffers) {
        let mut state = IndexState::new(Arc::new(Metrics::default()));
        let mut buffers = Buffers::default();
        let mut attestor = Attestor::new("build", key.attestor());
        attestor.metadata.managed_fields = Some(Vec::new());
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(DeserializeGuard(Ok(attestor))),
            watcher::Event::InitDone,
        ] {
            let jobs = handle(&mut state, &mut buffers, Change::Attestor(event));
            assert!(jobs.is_empty());
        }
        (state, buffers)
    }

    #[test]
    fn status_forged_by_hand_changes_nothing() {
        let key = TestKey::new();
        let (mut state, mut buffers) = setup(&key);
        // Signed by a stranger's key, with a status claiming it verified.
        let stranger = TestKey::new();
        let mut forged = attestation(
            "forged",
            stranger.attest("build", &format!("gcr.io/p/app@{}", digest('a'))),
        );
        forged.status = Some(forged_status("whatever"));
        let jobs = handle(
            &mut state,
            &mut buffers,
            Change::Attestation(watcher::Event::Apply(DeserializeGuard(Ok(forged)))),
        );
        run_jobs(&mut state, jobs);
        let a = crate::image::Digest::parse(&digest('a')).unwrap();
        assert!(!state.index().is_attested("build", &a));
        assert!(!state.index().is_trusted("ns/forged"));

        // A genuine attestation whose status someone flips to False stays trusted, and the
        // status change alone verifies nothing.
        let genuine_spec = key.attest("build", &format!("gcr.io/p/app@{}", digest('b')));
        let genuine = attestation("genuine", genuine_spec);
        let jobs = handle(
            &mut state,
            &mut buffers,
            Change::Attestation(watcher::Event::Apply(DeserializeGuard(Ok(genuine.clone())))),
        );
        assert_eq!(jobs.len(), 1);
        run_jobs(&mut state, jobs);
        assert!(state.index().is_trusted("ns/genuine"));
        let mut flipped = genuine;
        let mut status = forged_status("x");
        status.conditions[0].status = conditions::FALSE.into();
        flipped.status = Some(status);
        let jobs = handle(
            &mut state,
            &mut buffers,
            Change::Attestation(watcher::Event::Apply(DeserializeGuard(Ok(flipped)))),
        );
        assert!(jobs.is_empty());
        assert!(state.index().is_trusted("ns/genuine"));
    }

    #[test]
    fn unreadable_objects_are_not_trusted_and_never_stall() {
        let key = TestKey::new();
        let (mut state, mut buffers) = setup(&key);
        let spec = key.attest("build", &format!("gcr.io/p/app@{}", digest('a')));
        let jobs = handle(
            &mut state,
            &mut buffers,
            Change::Attestation(watcher::Event::Apply(DeserializeGuard(Ok(attestation(
                "a", spec,
            ))))),
        );
        run_jobs(&mut state, jobs);
        assert!(state.index().is_trusted("ns/a"));
        // The same object becomes unreadable (e.g. a newer schema): it leaves the index.
        let invalid = kube::core::error_boundary::InvalidObject {
            error: "unknown field".into(),
            metadata: ObjectMeta {
                name: Some("a".into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
        };
        let jobs = handle(
            &mut state,
            &mut buffers,
            Change::Attestation(watcher::Event::Apply(DeserializeGuard(
                Err(invalid.clone()),
            ))),
        );
        assert!(jobs.is_empty());
        assert!(!state.index().is_trusted("ns/a"));
        // An unreadable attestor vouches for nothing.
        let jobs = handle(
            &mut state,
            &mut buffers,
            Change::Attestor(watcher::Event::Apply(DeserializeGuard(Err(
                kube::core::error_boundary::InvalidObject {
                    error: "bad".into(),
                    metadata: ObjectMeta {
                        name: Some("build".into()),
                        ..ObjectMeta::default()
                    },
                },
            )))),
        );
        assert!(jobs.is_empty());
        // Relists skip unreadable objects and still finish.
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(DeserializeGuard(Err(invalid))),
            watcher::Event::InitDone,
        ] {
            handle(&mut state, &mut buffers, Change::Attestation(event));
        }
        assert!(state.index().is_synced(Resource::ImageAttestations));
        assert!(!state.index().is_synced(Resource::Namespaces));
    }

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
