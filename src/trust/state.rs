//! The write side of the trust pipeline: every watch event goes through [`TrustState`]'s
//! `apply`/`delete`/`list` methods, testable without an API server. Signature checks are
//! handed out as [`Job`]s (run off the reactor by [`super::watch`]) and come back through
//! [`TrustState::complete`].
//!
//! Invariants: an attestation is in the trust index only while its current content verified
//! against its attestor's current keys (or an identical check did, cached by content); content
//! that changed leaves the index at once and comes back only when verified again.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::Resource;
use super::index::Index;
use super::reports::{Dirty, InvalidObject, SeenStatus};
use crate::crd::{
    AttestationPolicySpec, AttestationPolicyStatus, AttestorSpec, AttestorStatus,
    ImageAttestationSpec, ImageAttestationStatus, RegistrySyncStatus,
};
use crate::image::Digest;
use crate::metrics::Metrics;
use crate::policy::CompiledPolicy;
use crate::registry_sync::RegistrySource;
use crate::verify::{self, AttestorKeys, Failure, Reason};

/// What is known of an attestation's signatures now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A verification is running (or waits for the content, see [`TrustState::wants_relist`]).
    Pending,
    /// A signature by `key_id` of the attestor verified, vouching for `digest`.
    Verified {
        /// The key whose signature verified.
        key_id: Arc<str>,
        /// The digest vouched for.
        digest: Digest,
    },
    /// No signature verified, and why.
    Failed(Failure),
}

/// A verification's result as cached by content: the key, the digest and which signature
/// verified; or why none did.
type Cached = Result<(Arc<str>, Digest, usize), Failure>;

/// One signature check to run off the reactor; hand the outcome to [`TrustState::complete`].
#[derive(Clone, Debug)]
pub struct Job {
    /// The attestation, `namespace/name`.
    pub attestation: String,
    generation: u64,
    cache_key: [u8; 32],
    spec: Arc<ImageAttestationSpec>,
    /// Whether `spec` is the attestation as written (else only the signature that verified).
    full: bool,
    keys: Arc<AttestorKeys>,
}

impl Job {
    /// Verify the attestation against its attestor's keys at `now` (CPU-bound).
    pub fn run(&self, now: jiff::Timestamp) -> Result<verify::Verified, Failure> {
        verify::verify(&self.spec, Some(&self.keys), now)
    }
}

#[derive(Debug)]
pub(super) struct AttestorEntry {
    pub(super) spec: AttestorSpec,
    pub(super) keys: Arc<AttestorKeys>,
    /// Content hash of the keys, part of every cache key.
    pub(super) hash: [u8; 32],
    pub(super) generation: Option<i64>,
    pub(super) uid: Option<String>,
    pub(super) status: Option<AttestorStatus>,
    /// What the last sync of its registry signatures found (leader).
    pub(super) registry: Option<RegistrySyncStatus>,
}

#[derive(Debug)]
pub(super) struct AttestationEntry {
    pub(super) attestor: Arc<str>,
    /// Content hash of the spec as written.
    pub(super) content: [u8; 32],
    /// Signatures the spec as written holds.
    pub(super) signatures: usize,
    /// What re-verification needs: the spec as written while a verification is pending, only
    /// the signature that verified once verified (shared by identical copies), nothing once it
    /// failed.
    pub(super) spec: Option<Arc<ImageAttestationSpec>>,
    /// Whether `spec` is the spec as written.
    pub(super) full: bool,
    /// Counts the settlements of this entry; a job for an older one is ignored.
    pub(super) generation: u64,
    pub(super) cache_key: Option<[u8; 32]>,
    pub(super) outcome: Outcome,
    /// The content is needed again (a re-list brings it) to settle or re-verify the entry.
    pub(super) needs_spec: bool,
    /// `metadata.generation` and what its status said, for the leader's reports.
    pub(super) object_generation: Option<i64>,
    pub(super) seen: Option<SeenStatus>,
}

#[derive(Debug)]
pub(super) struct PolicyEntry {
    pub(super) compiled: CompiledPolicy,
    pub(super) generation: Option<i64>,
    pub(super) uid: Option<String>,
    pub(super) status: Option<AttestationPolicyStatus>,
}

/// The trust pipeline's state (see the module docs).
#[derive(Debug)]
pub struct TrustState {
    index: Arc<Index>,
    metrics: Arc<Metrics>,
    pub(super) attestors: HashMap<Arc<str>, AttestorEntry>,
    pub(super) attestations: HashMap<String, AttestationEntry>,
    by_attestor: HashMap<Arc<str>, BTreeSet<String>>,
    cache: HashMap<[u8; 32], Cached>,
    /// Verified specs (trimmed to the signature that verified), shared by identical copies.
    specs: HashMap<[u8; 32], Arc<ImageAttestationSpec>>,
    pub(super) policies: BTreeMap<String, PolicyEntry>,
    /// Keys of the attestations seen since a list began.
    listing: Option<HashSet<String>>,
    pending: usize,
    needing_spec: usize,
    synced: usize,
    next_generation: u64,
    /// What changed since the leader last asked, while this replica leads.
    pub(super) dirty: Option<Dirty>,
    pub(super) notify: Arc<tokio::sync::Notify>,
}

/// The content hash of a serializable value.
fn content_hash(value: &impl serde::Serialize) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    // serde_json of our own types cannot fail; an empty string still yields a usable hash.
    Sha256::digest(serde_json::to_vec(value).unwrap_or_default()).into()
}

/// What a verification depends on: the attestation's content and its attestor's keys.
fn cache_key(content: &[u8; 32], attestor: &[u8; 32]) -> [u8; 32] {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    hasher.update(content);
    hasher.update(attestor);
    hasher.finalize().into()
}

fn attestor_not_found(attestor: &str) -> Failure {
    Failure {
        reason: Reason::AttestorNotFound,
        message: format!("Attestor {attestor} does not exist; create it or fix spec.attestor"),
    }
}

impl TrustState {
    /// An empty state publishing into a new [`Index`].
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self {
            index: Arc::new(Index::default()),
            metrics,
            attestors: HashMap::new(),
            attestations: HashMap::new(),
            by_attestor: HashMap::new(),
            cache: HashMap::new(),
            specs: HashMap::new(),
            policies: BTreeMap::new(),
            listing: None,
            pending: 0,
            needing_spec: 0,
            synced: 0,
            next_generation: 0,
            dirty: None,
            notify: Arc::new(tokio::sync::Notify::new()),
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

    /// Number of distinct verified contents held for re-verification.
    pub fn held_specs(&self) -> usize {
        self.specs.len()
    }

    /// Whether some attestation needs its content again (its attestor changed after it failed,
    /// or it was restored from the cache): the attestation watch should list again.
    pub fn wants_relist(&self) -> bool {
        self.needing_spec > 0
    }

    /// What is kept of the attestation `namespace/name` to verify it again, if anything.
    pub fn kept(&self, attestation: &str) -> Option<&ImageAttestationSpec> {
        self.attestations.get(attestation)?.spec.as_deref()
    }

    /// What the attestation `namespace/name` came to, if it exists.
    pub fn outcome(&self, attestation: &str) -> Option<&Outcome> {
        self.attestations.get(attestation).map(|e| &e.outcome)
    }

    // ---- attestors ----

    /// An Attestor was created or changed. Keys are parsed only when the spec changed; then
    /// every attestation of the attestor is settled again (cache permitting).
    pub fn apply_attestor(&mut self, name: &str, spec: AttestorSpec) -> Vec<Job> {
        if self.attestors.get(name).is_some_and(|a| a.spec == spec) {
            return Vec::new();
        }
        // Only the keys decide what verifies: a change of the registry part re-verifies nothing.
        let hash = content_hash(&spec.public_keys);
        let previous = self.attestors.remove(name);
        let same_keys = previous.as_ref().is_some_and(|a| a.hash == hash);
        let keys = match &previous {
            Some(a) if same_keys => a.keys.clone(),
            _ => Arc::new(AttestorKeys::load(name, &spec)),
        };
        let (generation, uid, status, registry) = previous
            .map(|a| (a.generation, a.uid, a.status, a.registry))
            .unwrap_or_default();
        let name: Arc<str> = name.into();
        self.attestors.insert(
            name.clone(),
            AttestorEntry {
                spec,
                keys,
                hash,
                generation,
                uid,
                status,
                registry,
            },
        );
        self.mark_attestor(&name);
        self.publish_registry_sources();
        if same_keys {
            return Vec::new();
        }
        let jobs = self.refresh_attestor(&name);
        self.publish();
        jobs
    }

    /// Record what an Attestor object says besides its spec (for the leader's reports).
    pub fn observe_attestor(
        &mut self,
        name: &str,
        generation: Option<i64>,
        uid: Option<String>,
        status: Option<AttestorStatus>,
    ) {
        let Some(entry) = self.attestors.get_mut(name) else {
            return;
        };
        let new_uid = entry.uid != uid;
        if entry.generation != generation || entry.status != status || new_uid {
            entry.generation = generation;
            entry.status = status;
            entry.uid = uid;
            self.mark_attestor(name);
        }
        if new_uid {
            self.publish_registry_sources();
        }
    }

    /// What the last sync of an attestor's registry signatures found (the leader's syncs);
    /// `None` when it no longer syncs.
    pub fn record_sync(&mut self, name: &str, status: Option<RegistrySyncStatus>) {
        if let Some(entry) = self.attestors.get_mut(name)
            && entry.registry != status
        {
            entry.registry = status;
            self.mark_attestor(name);
        }
    }

    /// Tell the readers which attestors sync registry signatures.
    fn publish_registry_sources(&self) {
        let mut sources: Vec<RegistrySource> = self
            .attestors
            .iter()
            .filter_map(|(name, entry)| {
                let spec = entry.spec.registry_signatures.as_ref()?;
                Some(RegistrySource::new(
                    name.clone(),
                    entry.uid.clone(),
                    spec,
                    entry.keys.clone(),
                ))
            })
            .collect();
        sources.sort_by(|a, b| a.attestor.cmp(&b.attestor));
        self.index.registry_sources.store(Arc::new(sources));
        self.index.changed();
    }

    /// An Attestor was deleted (or can no longer be read): nothing it vouched for is trusted.
    pub fn delete_attestor(&mut self, name: &str) {
        if self.attestors.remove(name).is_some() {
            self.mark_attestor(name);
            self.publish_registry_sources();
            let jobs = self.refresh_attestor(name);
            debug_assert!(jobs.is_empty());
            self.publish();
        }
    }

    /// The complete list of Attestors (after a watch (re)start): what vanished is deleted.
    pub fn reset_attestors(&mut self, all: Vec<(String, AttestorSpec)>) -> Vec<Job> {
        let keep: BTreeSet<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        let gone: Vec<Arc<str>> = self
            .attestors
            .keys()
            .filter(|n| !keep.contains(&***n))
            .cloned()
            .collect();
        for name in gone {
            self.delete_attestor(&name);
        }
        let mut jobs = Vec::new();
        for (name, spec) in all {
            jobs.extend(self.apply_attestor(&name, spec));
        }
        let first = self.synced & Resource::Attestors.bit() == 0;
        self.mark_synced(Resource::Attestors);
        if first {
            // Attestations listed before their attestors waited; those whose attestor does not
            // exist are settled now.
            let orphans: Vec<Arc<str>> = self
                .by_attestor
                .keys()
                .filter(|a| !self.attestors.contains_key(*a))
                .cloned()
                .collect();
            for attestor in orphans {
                jobs.extend(self.refresh_attestor(&attestor));
            }
            self.publish();
        }
        jobs
    }

    fn refresh_attestor(&mut self, attestor: &str) -> Vec<Job> {
        let keys: Vec<String> = self
            .by_attestor
            .get(attestor)
            .map(|set| set.iter().cloned().collect())
            .unwrap_or_default();
        keys.iter().filter_map(|key| self.settle(key)).collect()
    }

    // ---- attestations ----

    /// An ImageAttestation was created or changed. Only the spec counts: a change of status
    /// (or metadata) alone changes nothing.
    pub fn apply_attestation(&mut self, key: &str, spec: ImageAttestationSpec) -> Vec<Job> {
        if let Some(listing) = &mut self.listing {
            listing.insert(key.to_owned());
        }
        let content = content_hash(&spec);
        if let Some(entry) = self.attestations.get_mut(key)
            && entry.content == content
        {
            if !entry.needs_spec {
                return Vec::new();
            }
            // The content a re-list brought back, to settle or re-verify the entry.
            let old = entry.spec.replace(Arc::new(spec));
            entry.full = true;
            self.release(old);
            let job = self.settle(key);
            self.publish();
            return job.into_iter().collect();
        }
        let attestor: Arc<str> = match self.attestors.get_key_value(spec.attestor.as_str()) {
            Some((name, _)) => name.clone(),
            None => spec.attestor.as_str().into(),
        };
        let (object_generation, seen) = match self.remove_entry(key) {
            Some(old) => (old.object_generation, old.seen),
            None => (None, None),
        };
        self.link(&attestor, key);
        let signatures = spec.signatures.len();
        self.attestations.insert(
            key.to_owned(),
            AttestationEntry {
                attestor,
                content,
                signatures,
                spec: Some(Arc::new(spec)),
                full: true,
                generation: 0,
                cache_key: None,
                outcome: Outcome::Pending,
                needs_spec: false,
                object_generation,
                seen,
            },
        );
        // Counted as pending from the start: `settle` accounts for what it was.
        self.pending += 1;
        let job = self.settle(key);
        self.publish();
        job.into_iter().collect()
    }

    /// Record what an ImageAttestation object says besides its spec (for the leader's
    /// reports).
    pub fn observe_attestation(
        &mut self,
        key: &str,
        generation: Option<i64>,
        status: Option<&ImageAttestationStatus>,
    ) {
        let seen = status.map(SeenStatus::of);
        if let Some(entry) = self.attestations.get_mut(key)
            && (entry.object_generation != generation || entry.seen != seen)
        {
            entry.object_generation = generation;
            entry.seen = seen;
            self.mark_attestation(key);
        }
    }

    /// An ImageAttestation was deleted (or can no longer be read).
    pub fn delete_attestation(&mut self, key: &str) {
        if self.remove_entry(key).is_some() {
            self.index.with_trust(|t| t.remove(key));
            if let Some(dirty) = &mut self.dirty {
                dirty.attestations.remove(key);
                dirty.policies = true;
            }
            self.publish();
        }
    }

    /// A list of ImageAttestations begins (after a watch (re)start): every attestation listed
    /// until [`TrustState::end_attestation_list`] is kept, the others are deleted then.
    pub fn begin_attestation_list(&mut self) {
        self.listing = Some(HashSet::new());
    }

    /// The list is complete: what was not listed is gone.
    pub fn end_attestation_list(&mut self) {
        let Some(listed) = self.listing.take() else {
            return;
        };
        let gone: Vec<String> = self
            .attestations
            .keys()
            .filter(|k| !listed.contains(*k))
            .cloned()
            .collect();
        for key in gone {
            self.delete_attestation(&key);
        }
        self.mark_synced(Resource::ImageAttestations);
    }

    /// The complete list of ImageAttestations at once (tests, benchmarks).
    pub fn reset_attestations(&mut self, all: Vec<(String, ImageAttestationSpec)>) -> Vec<Job> {
        self.begin_attestation_list();
        let mut jobs = Vec::new();
        for (key, spec) in all {
            jobs.extend(self.apply_attestation(&key, spec));
        }
        self.end_attestation_list();
        jobs
    }

    fn remove_entry(&mut self, key: &str) -> Option<AttestationEntry> {
        let entry = self.attestations.remove(key)?;
        if entry.outcome == Outcome::Pending && !entry.needs_spec {
            self.pending -= 1;
        }
        if entry.needs_spec {
            self.needing_spec -= 1;
        }
        self.unlink(&entry.attestor, key);
        let mut entry = entry;
        let kept = entry.spec.take();
        self.release(kept);
        self.index.with_trust(|t| t.remove(key));
        Some(entry)
    }

    /// Settle one attestation against its attestor's current keys: from the cache when this
    /// content was checked against these keys before, else a job (and out of the trust index
    /// until it is done).
    fn settle(&mut self, key: &str) -> Option<Job> {
        self.next_generation += 1;
        let generation = self.next_generation;
        let (job, cached_signature) = {
            let entry = self.attestations.get_mut(key)?;
            let was_pending = entry.outcome == Outcome::Pending && !entry.needs_spec;
            let was_needing = entry.needs_spec;
            entry.generation = generation;
            entry.needs_spec = false;
            let mut job = None;
            let mut cached_signature = None;
            match self.attestors.get(&entry.attestor) {
                // The attestors are not listed yet: wait for them, keeping the content.
                None if self.synced & Resource::Attestors.bit() == 0 => {
                    entry.cache_key = None;
                    entry.outcome = Outcome::Pending;
                }
                None => {
                    // An invalid artifactUrl stays invalid whatever the attestor.
                    let failure = match (&entry.spec, &entry.outcome) {
                        (Some(spec), _) if entry.full => {
                            match verify::verify(spec, None, jiff::Timestamp::now()) {
                                Err(f) if f.reason == Reason::InvalidArtifactUrl => f,
                                _ => attestor_not_found(&entry.attestor),
                            }
                        }
                        (_, Outcome::Failed(f)) if f.reason == Reason::InvalidArtifactUrl => {
                            f.clone()
                        }
                        _ => attestor_not_found(&entry.attestor),
                    };
                    entry.cache_key = None;
                    entry.outcome = Outcome::Failed(failure);
                }
                Some(attestor) => {
                    let cache_key = cache_key(&entry.content, &attestor.hash);
                    entry.cache_key = Some(cache_key);
                    match self.cache.get(&cache_key) {
                        Some(Ok((key_id, digest, signature))) => {
                            entry.outcome = Outcome::Verified {
                                key_id: key_id.clone(),
                                digest: *digest,
                            };
                            cached_signature = Some(*signature);
                            // Re-verification needs the content, which was not kept.
                            entry.needs_spec = entry.spec.is_none();
                        }
                        Some(Err(failure)) => entry.outcome = Outcome::Failed(failure.clone()),
                        None => {
                            entry.outcome = Outcome::Pending;
                            match &entry.spec {
                                Some(spec) => {
                                    job = Some(Job {
                                        attestation: key.to_owned(),
                                        generation,
                                        cache_key,
                                        spec: spec.clone(),
                                        full: entry.full,
                                        keys: attestor.keys.clone(),
                                    });
                                }
                                // Never checked against these keys, and its content was not
                                // kept: untrusted until a re-list brings it back.
                                None => entry.needs_spec = true,
                            }
                        }
                    }
                }
            }
            let is_pending = entry.outcome == Outcome::Pending && !entry.needs_spec;
            self.pending = self.pending + usize::from(is_pending) - usize::from(was_pending);
            self.needing_spec =
                self.needing_spec + usize::from(entry.needs_spec) - usize::from(was_needing);
            (job, cached_signature)
        };
        self.retain(key, cached_signature);
        self.after_outcome(key);
        job
    }

    /// Keep of an attestation only what re-verification needs: a verified one keeps the
    /// signature that verified (`signature`, when the full content is at hand), shared by
    /// identical copies; a failed one keeps nothing.
    fn retain(&mut self, key: &str, signature: Option<usize>) {
        let Some(entry) = self.attestations.get_mut(key) else {
            return;
        };
        match (&entry.outcome, signature) {
            (Outcome::Verified { .. }, Some(signature)) if entry.full => {
                let signatures = entry.signatures;
                let Some(full) = entry.spec.take() else {
                    return;
                };
                let trimmed = trim((*full).clone(), signature);
                self.release(Some(full));
                let kept = self.intern(trimmed);
                if let Some(entry) = self.attestations.get_mut(key) {
                    entry.spec = Some(kept);
                    entry.full = signatures == 1;
                }
            }
            (Outcome::Failed(_), _) => {
                let kept = entry.spec.take();
                entry.full = false;
                self.release(kept);
            }
            _ => {}
        }
    }

    /// Record a job's outcome: cached by content, and applied if the attestation still has
    /// the content the job verified.
    pub fn complete(&mut self, job: &Job, outcome: Result<verify::Verified, Failure>) {
        self.metrics.verification(outcome.is_ok());
        if let Err(failure) = &outcome {
            tracing::info!(
                attestation = %job.attestation,
                reason = %failure.reason,
                message = %failure.message,
                "attestation did not verify"
            );
        }
        // A failure of what was kept of a verified attestation says nothing of its other
        // signatures; only the whole content's outcome is cached.
        let conclusive = job.full || outcome.is_ok();
        let cached: Cached = match outcome {
            Ok(v) => Ok((v.key_id.into(), v.digest, v.signature)),
            Err(failure) => Err(failure),
        };
        if conclusive {
            self.cache.insert(job.cache_key, cached.clone());
        }
        let Some(entry) = self.attestations.get_mut(&job.attestation) else {
            return;
        };
        if entry.generation != job.generation {
            return;
        }
        if entry.outcome == Outcome::Pending && !entry.needs_spec {
            self.pending -= 1;
        }
        let signature = match cached {
            Ok((key_id, digest, signature)) => {
                entry.outcome = Outcome::Verified { key_id, digest };
                Some(signature)
            }
            Err(failure) if conclusive => {
                entry.outcome = Outcome::Failed(failure);
                None
            }
            Err(_) => {
                // Another signature of the content as written may still verify: fetch it.
                entry.outcome = Outcome::Pending;
                entry.needs_spec = true;
                self.needing_spec += 1;
                let kept = entry.spec.take();
                entry.full = false;
                self.release(kept);
                None
            }
        };
        self.retain(&job.attestation, signature);
        self.after_outcome(&job.attestation);
        self.publish();
    }

    /// Jobs that verify every attestation whose content is kept again, ignoring the cache
    /// (keys expire and are revoked by time); entries stay trusted until their job says
    /// otherwise. Also forgets cached outcomes no attestation refers to any more.
    pub fn reverify_all(&mut self) -> Vec<Job> {
        let live: BTreeSet<[u8; 32]> = self
            .attestations
            .values()
            .filter_map(|e| e.cache_key)
            .collect();
        self.cache.retain(|k, _| live.contains(k));
        let mut jobs = Vec::new();
        for (key, entry) in &self.attestations {
            let (Some(cache_key), Some(attestor), Some(spec)) = (
                entry.cache_key,
                self.attestors.get(&entry.attestor),
                &entry.spec,
            ) else {
                continue;
            };
            if entry.outcome == Outcome::Pending {
                continue;
            }
            jobs.push(Job {
                attestation: key.clone(),
                generation: entry.generation,
                cache_key,
                spec: spec.clone(),
                full: entry.full,
                keys: attestor.keys.clone(),
            });
        }
        jobs
    }

    /// Put the outcome of an attestation into the trust index, and mark it for the reports.
    fn after_outcome(&mut self, key: &str) {
        let Some(entry) = self.attestations.get(key) else {
            return;
        };
        let attestor = entry.attestor.clone();
        let verified = match &entry.outcome {
            Outcome::Verified { digest, .. } => Some(*digest),
            _ => None,
        };
        self.index.with_trust(|trust| match verified {
            Some(digest) => {
                if let Err(error) = trust.insert(&attestor, &digest, key) {
                    tracing::warn!(attestation = key, %error, "cannot index a verified attestation");
                }
            }
            None => {
                trust.remove(key);
            }
        });
        self.mark_attestation(key);
        if let Some(dirty) = &mut self.dirty {
            dirty.policies = true;
        }
    }

    fn intern(&mut self, spec: ImageAttestationSpec) -> Arc<ImageAttestationSpec> {
        let hash = content_hash(&spec);
        self.specs
            .entry(hash)
            .or_insert_with(|| Arc::new(spec))
            .clone()
    }

    /// Drop a reference to a spec; a shared one leaves the table with its last user.
    fn release(&mut self, spec: Option<Arc<ImageAttestationSpec>>) {
        let Some(spec) = spec else { return };
        // Two references left: the table's (if it is shared) and `spec`.
        if Arc::strong_count(&spec) == 2 {
            let hash = content_hash(&*spec);
            if self.specs.get(&hash).is_some_and(|s| Arc::ptr_eq(s, &spec)) {
                self.specs.remove(&hash);
            }
        }
    }

    fn link(&mut self, attestor: &Arc<str>, key: &str) {
        self.by_attestor
            .entry(attestor.clone())
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

    // ---- policies ----

    /// An AttestationPolicy was created or changed; `Err` when it cannot be read: then it
    /// denies every image until fixed (fail closed; exempt namespaces never reach the webhook).
    pub fn apply_policy(&mut self, name: &str, spec: Result<&AttestationPolicySpec, String>) {
        let compiled = compile_policy(name, spec);
        let (generation, uid, status) = self
            .policies
            .remove(name)
            .map(|p| (p.generation, p.uid, p.status))
            .unwrap_or_default();
        self.policies.insert(
            name.to_owned(),
            PolicyEntry {
                compiled,
                generation,
                uid,
                status,
            },
        );
        self.publish_policies();
    }

    /// Record what an AttestationPolicy object says besides its spec.
    pub fn observe_policy(
        &mut self,
        name: &str,
        generation: Option<i64>,
        uid: Option<String>,
        status: Option<AttestationPolicyStatus>,
    ) {
        if let Some(entry) = self.policies.get_mut(name)
            && (entry.generation != generation || entry.uid != uid || entry.status != status)
        {
            entry.generation = generation;
            entry.uid = uid;
            entry.status = status;
            if let Some(dirty) = &mut self.dirty {
                dirty.policies = true;
            }
            self.notify.notify_one();
        }
    }

    /// An AttestationPolicy was deleted.
    pub fn delete_policy(&mut self, name: &str) {
        if self.policies.remove(name).is_some() {
            if let Some(dirty) = &mut self.dirty {
                dirty.deleted_policies.push(name.to_owned());
            }
            self.publish_policies();
        }
    }

    /// The complete list of AttestationPolicies.
    pub fn reset_policies(&mut self, all: Vec<(String, Result<AttestationPolicySpec, String>)>) {
        let keep: BTreeSet<&str> = all.iter().map(|(n, _)| n.as_str()).collect();
        let gone: Vec<String> = self
            .policies
            .keys()
            .filter(|n| !keep.contains(n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.delete_policy(&name);
        }
        for (name, spec) in all {
            self.apply_policy(&name, spec.as_ref().map_err(Clone::clone));
        }
        self.mark_synced(Resource::AttestationPolicies);
    }

    fn publish_policies(&mut self) {
        self.index.policies.store(Arc::new(
            self.policies.values().map(|p| p.compiled.clone()).collect(),
        ));
        self.index.changed();
        if let Some(dirty) = &mut self.dirty {
            dirty.policies = true;
        }
        self.notify.notify_one();
    }

    // ---- namespaces ----

    /// A Namespace was created or its labels changed.
    pub fn apply_namespace(&mut self, name: &str, labels: BTreeMap<String, String>) {
        self.index.with_namespaces(|n| n.insert(name, labels));
    }

    /// A Namespace was deleted.
    pub fn delete_namespace(&mut self, name: &str) {
        self.index.with_namespaces(|n| {
            n.remove(name);
        });
    }

    /// The complete list of Namespaces and their labels.
    pub fn reset_namespaces(&mut self, all: Vec<(String, BTreeMap<String, String>)>) {
        self.index
            .with_namespaces(|n| *n = all.into_iter().collect());
        self.mark_synced(Resource::Namespaces);
    }

    // ---- objects that cannot be read ----

    /// An object of ours does not match its schema: it is treated as deleted (it vouches for
    /// nothing; a policy denies everything) and reported by the leader.
    pub fn invalid(&mut self, object: InvalidObject) {
        tracing::warn!(kind = object.kind, namespace = %object.namespace, name = %object.name, error = %object.error, "cannot read an object; it is not trusted");
        if let Some(dirty) = &mut self.dirty {
            dirty.invalid.push(object);
            self.notify.notify_one();
        }
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
            self.metrics.set_ready();
            tracing::info!(
                attestations = self.attestations.len(),
                trusted = self.index.trust_entries(),
                policies = self.policies.len(),
                "trust index ready"
            );
        }
        self.metrics.set_trust_entries(self.index.trust_entries());
        self.index.changed();
    }

    // ---- the leader's view ----

    fn mark_attestation(&mut self, key: &str) {
        if let Some(dirty) = &mut self.dirty {
            dirty.attestations.insert(key.to_owned());
            self.notify.notify_one();
        }
    }

    fn mark_attestor(&mut self, name: &str) {
        if let Some(dirty) = &mut self.dirty {
            dirty.attestors.insert(name.to_owned());
            dirty.policies = true;
            self.notify.notify_one();
        }
    }

    /// Whether the leader is following this state's changes.
    pub fn is_reporting(&self) -> bool {
        self.dirty.is_some()
    }

    /// Start or stop following changes for the leader's reports; starting marks everything.
    pub fn set_reporting(&mut self, on: bool) {
        self.dirty = on.then(|| Dirty {
            attestations: self.attestations.keys().cloned().collect(),
            attestors: self.attestors.keys().map(|k| k.to_string()).collect(),
            policies: true,
            ..Dirty::default()
        });
        self.notify.notify_one();
    }

    /// Mark every attestor and policy for the reports (their status depends on time: keys
    /// expire).
    pub fn mark_all(&mut self) {
        if self.dirty.is_some() {
            let attestors: Vec<String> = self.attestors.keys().map(|k| k.to_string()).collect();
            let attestations: Vec<String> = self.attestations.keys().cloned().collect();
            if let Some(dirty) = &mut self.dirty {
                dirty.attestors.extend(attestors);
                dirty.attestations.extend(attestations);
                dirty.policies = true;
            }
            self.notify.notify_one();
        }
    }

    /// Signalled whenever there is something new for the leader's reports.
    pub fn notify(&self) -> Arc<tokio::sync::Notify> {
        self.notify.clone()
    }

    /// Every policy's name and what its status says now.
    pub fn policy_statuses(&self) -> Vec<(String, Option<AttestationPolicyStatus>)> {
        self.policies
            .iter()
            .map(|(name, p)| (name.clone(), p.status.clone()))
            .collect()
    }
}

/// The attestation with only the signature that verified: what re-verification needs.
fn trim(mut spec: ImageAttestationSpec, signature: usize) -> ImageAttestationSpec {
    if spec.signatures.len() > 1 && signature < spec.signatures.len() {
        spec.signatures = vec![spec.signatures.swap_remove(signature)];
    }
    spec
}

/// A policy as admission uses it: compiled, or the stand-in that denies every image when its
/// object cannot be read.
fn compile_policy(name: &str, spec: Result<&AttestationPolicySpec, String>) -> CompiledPolicy {
    match spec {
        Ok(spec) => CompiledPolicy::compile(name, spec),
        Err(error) => {
            tracing::error!(policy = name, %error, "cannot read AttestationPolicy; it denies every image until fixed");
            CompiledPolicy::unreadable(name, &error)
        }
    }
}
