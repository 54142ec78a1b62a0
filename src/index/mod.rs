//! The trust index of one replica: what admission reads, built only from specs.
//!
//! Every replica watches Attestors, ImageAttestations, AttestationPolicies and Namespaces and
//! verifies each attestation's signature itself; `status` is never read, so anyone able to
//! write status gains nothing. [`IndexState`] is the write side: plain `apply`/`delete`/`reset`
//! methods, testable without an API server, that hand out [`Job`]s for the signature checks
//! (run off the reactor by [`watch`]) and publish into the shared [`Index`], which answers
//! admission from memory.

pub mod watch;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, PoisonError, RwLock};

use arc_swap::ArcSwap;

use crate::crd::{AttestationPolicySpec, AttestorSpec, ImageAttestationSpec};
use crate::image::Digest;
use crate::metrics::Metrics;
use crate::policy::{
    Attestations, CompiledPolicy, Decision, Namespaces, Snapshot, TrustIndex, Undecided, Workload,
};
use crate::verify::{self, AttestorKeys};

/// The four watched resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Resource {
    /// `attestors.binauthz.dev`.
    Attestors,
    /// `imageattestations.binauthz.dev`.
    ImageAttestations,
    /// `attestationpolicies.binauthz.dev`.
    AttestationPolicies,
    /// `namespaces` (labels only).
    Namespaces,
}

impl Resource {
    /// Every watched resource.
    pub const ALL: [Self; 4] = [
        Self::Attestors,
        Self::ImageAttestations,
        Self::AttestationPolicies,
        Self::Namespaces,
    ];

    /// The plural resource name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attestors => "attestors",
            Self::ImageAttestations => "imageattestations",
            Self::AttestationPolicies => "attestationpolicies",
            Self::Namespaces => "namespaces",
        }
    }

    fn bit(self) -> usize {
        match self {
            Self::Attestors => 1,
            Self::ImageAttestations => 2,
            Self::AttestationPolicies => 4,
            Self::Namespaces => 8,
        }
    }
}

/// Admission asked before the index had its initial lists and verifications.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "binauthz trust index not ready: waiting for the initial list of {waiting} and {pending} signature verifications; retry in a few seconds"
)]
pub struct NotReady {
    /// Resources whose initial list has not arrived, comma-separated (or `nothing`).
    pub waiting: String,
    /// Verifications still running.
    pub pending: usize,
}

/// Why the index does not decide.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CannotDecide {
    /// The index has not listed everything yet.
    #[error("{0}")]
    NotReady(NotReady),
    /// The snapshot cannot decide (a namespace not seen yet).
    #[error("{0}")]
    Undecided(Undecided),
}

/// What admission reads: compiled policies, namespace labels and the trust index, shared by
/// every request and updated only by [`IndexState`].
#[derive(Debug)]
pub struct Index {
    policies: ArcSwap<Vec<CompiledPolicy>>,
    trust: RwLock<TrustIndex>,
    namespaces: RwLock<Namespaces>,
    /// Bumped on every namespace change, for requests waiting for a namespace to appear.
    namespace_changes: tokio::sync::watch::Sender<u64>,
    synced: AtomicUsize,
    pending: AtomicUsize,
    ready: AtomicBool,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            policies: ArcSwap::from_pointee(Vec::new()),
            trust: RwLock::new(TrustIndex::new()),
            namespaces: RwLock::new(Namespaces::new()),
            namespace_changes: tokio::sync::watch::Sender::new(0),
            synced: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
        }
    }
}

impl Index {
    /// True once every watch had its initial list and the initial verifications finished;
    /// stays true afterwards (the index keeps answering while watches recover).
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Why the index is not ready, or `None` when it is.
    pub fn not_ready(&self) -> Option<NotReady> {
        if self.is_ready() {
            return None;
        }
        let synced = self.synced.load(Ordering::Acquire);
        let waiting: Vec<&str> = Resource::ALL
            .iter()
            .filter(|r| synced & r.bit() == 0)
            .map(|r| r.as_str())
            .collect();
        Some(NotReady {
            waiting: if waiting.is_empty() {
                "nothing".to_owned()
            } else {
                waiting.join(", ")
            },
            pending: self.pending.load(Ordering::Acquire),
        })
    }

    /// Whether the initial list of `resource` has arrived.
    pub fn is_synced(&self, resource: Resource) -> bool {
        self.synced.load(Ordering::Acquire) & resource.bit() != 0
    }

    /// Decide, from memory only, whether `workload` may run in its namespace.
    pub fn decide(&self, workload: &Workload) -> Result<Decision, CannotDecide> {
        if let Some(not_ready) = self.not_ready() {
            return Err(CannotDecide::NotReady(not_ready));
        }
        let policies = self.policies.load();
        let namespaces = self
            .namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let trust = self.trust.read().unwrap_or_else(PoisonError::into_inner);
        Snapshot {
            policies: &policies,
            namespaces: &namespaces,
            trust: &*trust,
        }
        .decide(workload)
        .map_err(CannotDecide::Undecided)
    }

    /// Wait until `namespace` is known, at most `limit`; returns whether it is.
    pub async fn wait_for_namespace(&self, namespace: &str, limit: std::time::Duration) -> bool {
        let mut changes = self.namespace_changes.subscribe();
        let known = async {
            loop {
                if self.namespace_labels(namespace).is_some() {
                    return;
                }
                if changes.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        tokio::time::timeout(limit, known).await.is_ok()
    }

    /// The compiled policies, sorted by name.
    pub fn policies(&self) -> Arc<Vec<CompiledPolicy>> {
        self.policies.load_full()
    }

    /// The labels of a namespace, if known.
    pub fn namespace_labels(&self, namespace: &str) -> Option<BTreeMap<String, String>> {
        self.namespaces
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(namespace)
            .cloned()
    }

    /// Whether `attestor` vouches for `digest` with an attestation this replica verified.
    pub fn is_attested(&self, attestor: &str, digest: &Digest) -> bool {
        self.trust
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .is_attested(attestor, digest)
    }

    /// Number of verified attestations in the trust index.
    pub fn trust_entries(&self) -> usize {
        self.trust
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// Whether the attestation `namespace/name` is trusted now.
    pub fn is_trusted(&self, attestation: &str) -> bool {
        self.trust
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains_key(attestation)
    }

    fn with_trust<T>(&self, f: impl FnOnce(&mut TrustIndex) -> T) -> T {
        f(&mut self.trust.write().unwrap_or_else(PoisonError::into_inner))
    }
}

/// What a verification found, as cached: the digest vouched for, or why not.
type CachedOutcome = Result<Digest, verify::Reason>;

/// One signature check to run off the reactor; hand the outcome to [`IndexState::complete`].
#[derive(Clone, Debug)]
pub struct Job {
    /// The attestation, `namespace/name`.
    pub attestation: String,
    generation: u64,
    cache_key: [u8; 32],
    spec: Arc<ImageAttestationSpec>,
    keys: Arc<AttestorKeys>,
}

impl Job {
    /// Verify the attestation against its attestor's keys at `now` (CPU-bound).
    pub fn run(&self, now: jiff::Timestamp) -> Result<verify::Verified, verify::Failure> {
        verify::verify(&self.spec, Some(&self.keys), now)
    }
}

#[derive(Debug)]
struct AttestorEntry {
    spec: AttestorSpec,
    keys: Arc<AttestorKeys>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Verification {
    /// Its attestor does not exist (or cannot be read).
    NoAttestor,
    /// A job is running for the current generation.
    Pending,
    /// The outcome for the current content.
    Done(CachedOutcome),
}

#[derive(Debug)]
struct AttestationEntry {
    spec: Arc<ImageAttestationSpec>,
    generation: u64,
    cache_key: Option<[u8; 32]>,
    verification: Verification,
}

/// The write side of the index: every watch event goes through here.
///
/// Invariants: an attestation is in the trust index only while its current content verified
/// against its attestor's current keys; content that changed leaves the index at once and
/// comes back only when verified again (fail closed in between).
#[derive(Debug)]
pub struct IndexState {
    index: Arc<Index>,
    metrics: Arc<Metrics>,
    attestors: HashMap<String, AttestorEntry>,
    attestations: HashMap<String, AttestationEntry>,
    by_attestor: HashMap<String, BTreeSet<String>>,
    cache: HashMap<[u8; 32], CachedOutcome>,
    policies: BTreeMap<String, CompiledPolicy>,
    pending: usize,
    synced: usize,
    next_generation: u64,
}

impl IndexState {
    /// An empty state publishing into a new [`Index`].
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            index: Arc::new(Index::default()),
            metrics,
            attestors: HashMap::new(),
            attestations: HashMap::new(),
            by_attestor: HashMap::new(),
            cache: HashMap::new(),
            policies: BTreeMap::new(),
            pending: 0,
            synced: 0,
            next_generation: 0,
        }
    }

    /// The shared read side.
    pub fn index(&self) -> &Arc<Index> {
        &self.index
    }

    /// Verifications handed out and not completed, for the current contents.
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Number of cached verification outcomes.
    pub fn cached(&self) -> usize {
        self.cache.len()
    }

    // ---- attestors ----

    /// An Attestor was created or changed. Keys are parsed only when the spec changed; then
    /// every attestation of the attestor is verified again (cache permitting).
    pub fn apply_attestor(&mut self, name: &str, spec: AttestorSpec) -> Vec<Job> {
        if self.attestors.get(name).is_some_and(|a| a.spec == spec) {
            return Vec::new();
        }
        let keys = Arc::new(AttestorKeys::load(name, &spec));
        self.attestors
            .insert(name.to_owned(), AttestorEntry { spec, keys });
        let jobs = self.refresh_attestor(name);
        self.publish();
        jobs
    }

    /// An Attestor was deleted (or can no longer be read): nothing it vouched for is trusted.
    pub fn delete_attestor(&mut self, name: &str) {
        if self.attestors.remove(name).is_some() {
            // No attestor: refresh marks every attestation of it untrusted, without jobs.
            let jobs = self.refresh_attestor(name);
            debug_assert!(jobs.is_empty());
            self.publish();
        }
    }

    /// The complete list of Attestors (after a watch (re)start): what vanished is deleted.
    pub fn reset_attestors(&mut self, all: Vec<(String, AttestorSpec)>) -> Vec<Job> {
        let keep: BTreeSet<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        let gone: Vec<String> = self
            .attestors
            .keys()
            .filter(|n| !keep.contains(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.delete_attestor(&name);
        }
        let mut jobs = Vec::new();
        for (name, spec) in all {
            jobs.extend(self.apply_attestor(&name, spec));
        }
        self.mark_synced(Resource::Attestors);
        jobs
    }

    /// Re-evaluate every attestation of `attestor` after its keys changed or vanished.
    fn refresh_attestor(&mut self, attestor: &str) -> Vec<Job> {
        let keys: Vec<String> = self
            .by_attestor
            .get(attestor)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        keys.iter().filter_map(|key| self.evaluate(key)).collect()
    }

    // ---- attestations ----

    /// An ImageAttestation was created or changed. Only the spec counts: a change of status
    /// (or metadata) alone changes nothing.
    pub fn apply_attestation(&mut self, key: &str, spec: ImageAttestationSpec) -> Vec<Job> {
        if let Some(existing) = self.attestations.get(key) {
            if *existing.spec == spec {
                return Vec::new();
            }
            let old = existing.spec.attestor.clone();
            self.unlink(&old, key);
        }
        self.link(&spec.attestor, key);
        let generation = self.generation();
        let previous = self.attestations.insert(
            key.to_owned(),
            AttestationEntry {
                spec: Arc::new(spec),
                generation,
                cache_key: None,
                verification: Verification::NoAttestor,
            },
        );
        if previous.is_some_and(|p| p.verification == Verification::Pending) {
            self.pending -= 1;
        }
        let job = self.evaluate(key);
        self.publish();
        job.into_iter().collect()
    }

    /// An ImageAttestation was deleted (or can no longer be read).
    pub fn delete_attestation(&mut self, key: &str) {
        if let Some(entry) = self.attestations.remove(key) {
            if entry.verification == Verification::Pending {
                self.pending -= 1;
            }
            self.unlink(&entry.spec.attestor, key);
            self.index.with_trust(|t| t.remove(key));
            self.publish();
        }
    }

    /// The complete list of ImageAttestations (after a watch (re)start): what vanished is
    /// deleted; unchanged content is not verified again.
    pub fn reset_attestations(&mut self, all: Vec<(String, ImageAttestationSpec)>) -> Vec<Job> {
        let keep: BTreeSet<&str> = all.iter().map(|(k, _)| k.as_str()).collect();
        let gone: Vec<String> = self
            .attestations
            .keys()
            .filter(|k| !keep.contains(k.as_str()))
            .cloned()
            .collect();
        for key in gone {
            self.delete_attestation(&key);
        }
        let mut jobs = Vec::new();
        for (key, spec) in all {
            jobs.extend(self.apply_attestation(&key, spec));
        }
        self.mark_synced(Resource::ImageAttestations);
        jobs
    }

    /// Settle one attestation against its attestor's current keys: from the cache when this
    /// content was verified before, else a job (and out of the trust index until it is done).
    fn evaluate(&mut self, key: &str) -> Option<Job> {
        let generation = self.generation();
        let entry = self.attestations.get_mut(key)?;
        let was_pending = entry.verification == Verification::Pending;
        entry.generation = generation;
        let (verification, job) = match self.attestors.get(&entry.spec.attestor) {
            None => {
                entry.cache_key = None;
                (Verification::NoAttestor, None)
            }
            Some(attestor) => {
                let cache_key = verify::cache_key(&entry.spec, &attestor.spec);
                entry.cache_key = Some(cache_key);
                match self.cache.get(&cache_key) {
                    Some(outcome) => (Verification::Done(outcome.to_owned()), None),
                    None => (
                        Verification::Pending,
                        Some(Job {
                            attestation: key.to_owned(),
                            generation,
                            cache_key,
                            spec: entry.spec.clone(),
                            keys: attestor.keys.clone(),
                        }),
                    ),
                }
            }
        };
        entry.verification = verification.clone();
        let attestor = entry.spec.attestor.clone();
        match (was_pending, &verification) {
            (false, Verification::Pending) => self.pending += 1,
            (true, Verification::Pending) => {}
            (true, _) => self.pending -= 1,
            (false, _) => {}
        }
        self.settle_trust(key, &attestor, &verification);
        job
    }

    fn settle_trust(&self, key: &str, attestor: &str, verification: &Verification) {
        self.index.with_trust(|trust| match verification {
            Verification::Done(Ok(digest)) => {
                if let Err(error) = trust.insert(attestor, digest, key) {
                    tracing::warn!(attestation = key, %error, "cannot index a verified attestation");
                }
            }
            _ => {
                trust.remove(key);
            }
        });
    }

    /// Record a job's outcome: cached by content, and applied if the attestation still has
    /// the content the job verified.
    pub fn complete(&mut self, job: &Job, outcome: Result<verify::Verified, verify::Failure>) {
        self.metrics.verification(outcome.is_ok());
        let cached: CachedOutcome = match outcome {
            Ok(verified) => Ok(verified.digest),
            Err(failure) => {
                tracing::info!(
                    attestation = %job.attestation,
                    reason = %failure.reason,
                    message = %failure.message,
                    "attestation did not verify"
                );
                Err(failure.reason)
            }
        };
        self.cache.insert(job.cache_key, cached.to_owned());
        let Some(entry) = self.attestations.get_mut(&job.attestation) else {
            return;
        };
        if entry.generation != job.generation {
            return;
        }
        if entry.verification == Verification::Pending {
            self.pending -= 1;
        }
        let verification = Verification::Done(cached);
        entry.verification = verification.clone();
        let attestor = entry.spec.attestor.clone();
        self.settle_trust(&job.attestation, &attestor, &verification);
        self.publish();
    }

    /// Jobs that verify every attestation again, ignoring the cache (keys expire and are
    /// revoked by time); entries stay trusted until their job says otherwise. Also forgets
    /// cached outcomes no attestation refers to any more.
    pub fn reverify_all(&mut self) -> Vec<Job> {
        let live: BTreeSet<[u8; 32]> = self
            .attestations
            .values()
            .filter_map(|e| e.cache_key)
            .collect();
        self.cache.retain(|k, _| live.contains(k));
        let mut jobs = Vec::new();
        for (key, entry) in &self.attestations {
            let (Some(cache_key), Some(attestor)) =
                (entry.cache_key, self.attestors.get(&entry.spec.attestor))
            else {
                continue;
            };
            jobs.push(Job {
                attestation: key.clone(),
                generation: entry.generation,
                cache_key,
                spec: entry.spec.clone(),
                keys: attestor.keys.clone(),
            });
        }
        jobs
    }

    fn link(&mut self, attestor: &str, key: &str) {
        self.by_attestor
            .entry(attestor.to_owned())
            .or_default()
            .insert(key.to_owned());
    }

    fn unlink(&mut self, attestor: &str, key: &str) {
        if let Some(set) = self.by_attestor.get_mut(attestor) {
            set.remove(key);
            if set.is_empty() {
                self.by_attestor.remove(attestor);
            }
        }
    }

    fn generation(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    // ---- policies ----

    /// An AttestationPolicy was created or changed. A policy that cannot be read denies every
    /// image in every namespace until fixed (fail closed; exempt namespaces never reach the
    /// webhook).
    pub fn apply_policy(&mut self, name: &str, spec: Result<&AttestationPolicySpec, String>) {
        self.policies
            .insert(name.to_owned(), compile_policy(name, spec));
        self.publish_policies();
    }

    /// An AttestationPolicy was deleted.
    pub fn delete_policy(&mut self, name: &str) {
        if self.policies.remove(name).is_some() {
            self.publish_policies();
        }
    }

    /// The complete list of AttestationPolicies.
    pub fn reset_policies(&mut self, all: Vec<(String, Result<AttestationPolicySpec, String>)>) {
        self.policies.clear();
        for (name, spec) in all {
            let compiled = compile_policy(&name, spec.as_ref().map_err(Clone::clone));
            self.policies.insert(name, compiled);
        }
        self.publish_policies();
        self.mark_synced(Resource::AttestationPolicies);
    }

    fn publish_policies(&self) {
        self.index
            .policies
            .store(Arc::new(self.policies.values().cloned().collect()));
    }

    // ---- namespaces ----

    /// A Namespace was created or its labels changed.
    pub fn apply_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        self.with_namespaces(|n| n.insert(name, labels));
    }

    /// A Namespace was deleted.
    pub fn delete_namespace(&mut self, name: &str) {
        self.with_namespaces(|n| {
            n.remove(name);
        });
    }

    /// The complete list of Namespaces and their labels.
    pub fn reset_namespaces(&mut self, all: Vec<(String, BTreeMap<String, String>)>) {
        self.with_namespaces(|n| *n = all.into_iter().collect());
        self.mark_synced(Resource::Namespaces);
    }

    fn with_namespaces(&self, change: impl FnOnce(&mut Namespaces)) {
        change(
            &mut self
                .index
                .namespaces
                .write()
                .unwrap_or_else(PoisonError::into_inner),
        );
        self.index.namespace_changes.send_modify(|v| *v += 1);
    }

    // ---- readiness ----

    fn mark_synced(&mut self, resource: Resource) {
        self.synced |= resource.bit();
        self.publish();
    }

    /// Publish counters, and latch readiness once every list arrived and nothing is pending.
    fn publish(&self) {
        self.index.synced.store(self.synced, Ordering::Release);
        self.index.pending.store(self.pending, Ordering::Release);
        let all = Resource::ALL.iter().fold(0, |acc, r| acc | r.bit());
        if self.synced == all && self.pending == 0 && !self.index.is_ready() {
            self.index.ready.store(true, Ordering::Release);
            tracing::info!(
                attestations = self.attestations.len(),
                trusted = self.index.trust_entries(),
                policies = self.policies.len(),
                "trust index ready"
            );
        }
        self.metrics.set_trust_entries(self.index.trust_entries());
    }
}

/// A policy as admission uses it: compiled, or the stand-in that denies every image when its
/// object cannot be read (fail closed; exempt namespaces never reach the webhook).
fn compile_policy(name: &str, spec: Result<&AttestationPolicySpec, String>) -> CompiledPolicy {
    match spec {
        Ok(spec) => CompiledPolicy::compile(name, spec),
        Err(error) => {
            tracing::error!(policy = name, %error, "cannot read AttestationPolicy; it denies every image until fixed");
            CompiledPolicy::unreadable(name, &error)
        }
    }
}
