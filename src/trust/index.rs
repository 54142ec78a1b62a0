//! The read side: what admission, continuous validation and the allowlists read, updated only
//! by [`super::TrustState`].

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::Duration;

use arc_swap::ArcSwap;

use super::Resource;
use crate::image::{Digest, ImageRef};
use crate::metrics::Metrics;
use crate::policy::{
    Attestations, AttestorReason, CompiledPolicy, Decision, Failure, Namespaces, Snapshot,
    TrustIndex, Undecided, Workload, attestor_name,
};
use crate::registry_sync::{Lookup, Lookups, RegistrySource};

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

/// Compiled policies, namespace labels and the trust index, shared by every reader.
#[derive(Debug)]
pub struct Index {
    pub(super) policies: ArcSwap<Vec<CompiledPolicy>>,
    pub(super) trust: RwLock<TrustIndex>,
    pub(super) namespaces: RwLock<Namespaces>,
    /// Bumped whenever policies, namespaces or trust change (for the leader's tasks that
    /// follow them); the namespace count separately, for reviews waiting for a namespace.
    pub(super) changes: tokio::sync::watch::Sender<u64>,
    pub(super) namespace_changes: tokio::sync::watch::Sender<u64>,
    pub(super) synced: AtomicUsize,
    pub(super) pending: AtomicUsize,
    pub(super) ready: AtomicBool,
    /// The Attestors that name repositories of registry signatures.
    pub(super) registry_sources: ArcSwap<Vec<RegistrySource>>,
    /// Where lookups of denied images go, on replicas that run them.
    lookups: OnceLock<(Arc<Lookups>, Arc<Metrics>)>,
}

impl Default for Index {
    fn default() -> Self {
        Self {
            policies: ArcSwap::from_pointee(Vec::new()),
            trust: RwLock::new(TrustIndex::new()),
            namespaces: RwLock::new(Namespaces::new()),
            changes: tokio::sync::watch::Sender::new(0),
            namespace_changes: tokio::sync::watch::Sender::new(0),
            synced: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            ready: AtomicBool::new(false),
            registry_sources: ArcSwap::from_pointee(Vec::new()),
            lookups: OnceLock::new(),
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

    /// Decide, from memory only, whether `workload` may run in its namespace: the one entry
    /// point of the webhook and of continuous validation ([`Snapshot::decide`]).
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

    /// The Attestors with registry signatures.
    pub fn registry_sources(&self) -> Arc<Vec<RegistrySource>> {
        self.registry_sources.load_full()
    }

    /// Send lookups of denied images to `lookups` (once, when the replica starts them).
    pub fn set_lookups(&self, lookups: Arc<Lookups>, metrics: Arc<Metrics>) {
        let _ = self.lookups.set((lookups, metrics));
    }

    /// Ask for the registry signatures of the images a decision denied for want of an
    /// attestation, where the attestor syncs the image's repository; returns the repositories
    /// being looked up (empty when none is).
    pub fn request_lookups(&self, decision: &Decision) -> Vec<String> {
        let Some((lookups, metrics)) = self.lookups.get() else {
            return Vec::new();
        };
        let sources = self.registry_sources.load();
        if sources.is_empty() {
            return Vec::new();
        }
        let mut asked = Vec::new();
        for denial in decision.denials.iter().filter(|d| !decision.overrides(d)) {
            let Failure::Attestors(failures) = &denial.failure else {
                continue;
            };
            let Ok(image) = ImageRef::parse(&denial.image) else {
                continue;
            };
            let Some(digest) = image.digest() else {
                continue;
            };
            for failure in failures
                .iter()
                .filter(|f| f.reason == AttestorReason::NotAttested)
            {
                let attestor = attestor_name(&failure.attestor);
                let Some((source, repository)) = sources.iter().find_map(|s| {
                    (&*s.attestor == attestor)
                        .then(|| s.repository_of(&image).map(|r| (s, r)))
                        .flatten()
                }) else {
                    continue;
                };
                let lookup = Lookup {
                    attestor: source.attestor.clone(),
                    repository: repository.clone(),
                    digest: *digest,
                };
                if lookups.request(lookup, metrics) && !asked.contains(&repository.name()) {
                    asked.push(repository.name());
                }
            }
        }
        asked
    }

    /// Wait until `namespace` is known, at most `limit`; returns whether it is.
    pub async fn wait_for_namespace(&self, namespace: &str, limit: Duration) -> bool {
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

    /// A receiver that changes whenever policies, namespaces or trust change.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.changes.subscribe()
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
        self.read_trust(|t| t.is_attested(attestor, digest))
    }

    /// Number of verified attestations in the trust index.
    pub fn trust_entries(&self) -> usize {
        self.read_trust(TrustIndex::len)
    }

    /// Whether the attestation `namespace/name` is trusted now.
    pub fn is_trusted(&self, attestation: &str) -> bool {
        self.read_trust(|t| t.contains_key(attestation))
    }

    /// Read the trust index (hold it briefly: verifications wait to write).
    pub fn read_trust<T>(&self, f: impl FnOnce(&TrustIndex) -> T) -> T {
        f(&self.trust.read().unwrap_or_else(PoisonError::into_inner))
    }

    pub(super) fn with_trust<T>(&self, f: impl FnOnce(&mut TrustIndex) -> T) -> T {
        f(&mut self.trust.write().unwrap_or_else(PoisonError::into_inner))
    }

    pub(super) fn with_namespaces(&self, change: impl FnOnce(&mut Namespaces)) {
        change(
            &mut self
                .namespaces
                .write()
                .unwrap_or_else(PoisonError::into_inner),
        );
        self.namespace_changes.send_modify(|v| *v += 1);
        self.changed();
    }

    pub(super) fn changed(&self) {
        self.changes.send_modify(|v| *v += 1);
    }
}
