//! What the leader needs to tell people what the trust pipeline found: per object, its outcome
//! and what its status says now, for the objects that changed since it last asked. Only the
//! leader asks ([`super::TrustState::set_reporting`]); standbys keep no record of changes.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash as _, Hasher as _};
use std::sync::Arc;

use super::state::{Outcome, TrustState};
use crate::crd::conditions::{TRUE, VERIFIED};
use crate::crd::{AttestationPolicyStatus, AttestorStatus, ImageAttestationStatus};
use crate::image::Digest;
use crate::policy::CompiledPolicy;
use crate::verify::{AttestorKeys, Failure};

/// What changed since the leader last asked.
#[derive(Debug, Default)]
pub(super) struct Dirty {
    pub(super) attestations: HashSet<String>,
    pub(super) attestors: HashSet<String>,
    pub(super) policies: bool,
    pub(super) deleted_policies: Vec<String>,
    pub(super) invalid: Vec<InvalidObject>,
}

/// An object of ours that does not match its schema.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidObject {
    /// Its kind.
    pub kind: &'static str,
    /// Its namespace (empty for cluster-scoped kinds).
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Why it cannot be read.
    pub error: String,
}

/// What an ImageAttestation's status says, in a few bytes: a fingerprint of every field
/// binauthz writes except transition times, and the `Verified` condition's status and time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SeenStatus {
    /// [`SeenStatus::fingerprint`] of the status.
    pub fingerprint: u64,
    /// `Verified` is `True`, and since when.
    pub verified: Option<(bool, jiff::Timestamp)>,
}

impl SeenStatus {
    /// What `status` says.
    pub fn of(status: &ImageAttestationStatus) -> Self {
        let verified = status
            .conditions
            .iter()
            .find(|c| c.type_ == VERIFIED)
            .map(|c| (c.status == TRUE, c.last_transition_time.0));
        Self {
            fingerprint: Self::fingerprint(status),
            verified,
        }
    }

    /// A hash of the fields binauthz writes, transition times aside: two statuses with the
    /// same fingerprint say the same thing.
    pub fn fingerprint(status: &ImageAttestationStatus) -> u64 {
        let mut hasher = std::hash::DefaultHasher::new();
        status.observed_generation.hash(&mut hasher);
        status.verified_key_id.hash(&mut hasher);
        status.digest.hash(&mut hasher);
        let mut conditions: Vec<_> = status
            .conditions
            .iter()
            .map(|c| {
                (
                    &c.type_,
                    &c.status,
                    &c.reason,
                    &c.message,
                    c.observed_generation,
                )
            })
            .collect();
        conditions.sort();
        conditions.hash(&mut hasher);
        hasher.finish()
    }
}

/// One attestation whose status may need writing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestationReport {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// The attestor it names.
    pub attestor: String,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The key that verified and the digest it vouches for, or why none did.
    pub result: Result<(Arc<str>, Digest), Failure>,
    /// What its status says now.
    pub seen: Option<SeenStatus>,
}

/// One attestor whose status may need writing.
#[derive(Clone, Debug)]
pub struct AttestorReport {
    /// Its name.
    pub name: String,
    /// Its keys, parsed.
    pub keys: Arc<AttestorKeys>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// What its status says now.
    pub status: Option<AttestorStatus>,
    /// What the last sync of its registry signatures found.
    pub registry: Option<crate::crd::RegistrySyncStatus>,
    /// Whether its spec names registry signatures (a leader that has not synced yet keeps
    /// what the status says).
    pub syncs_registry: bool,
}

/// One policy, with what its status depends on.
#[derive(Clone, Debug)]
pub struct PolicyReport {
    /// Its name.
    pub name: String,
    /// `metadata.uid` (owner of its allowlist ConfigMap).
    pub uid: Option<String>,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// The policy, compiled (or the stand-in of an unreadable one).
    pub policy: CompiledPolicy,
    /// What its status says now.
    pub status: Option<AttestationPolicyStatus>,
    /// Each attestor it requires, with its keys (`None`: it does not exist).
    pub attestors: BTreeMap<String, Option<Arc<AttestorKeys>>>,
}

/// What changed since the leader last asked.
#[derive(Clone, Debug, Default)]
pub struct Reports {
    /// Attestations with an outcome whose status may need writing.
    pub attestations: Vec<AttestationReport>,
    /// Attestors whose status may need writing.
    pub attestors: Vec<AttestorReport>,
    /// Attestors that are gone.
    pub gone_attestors: Vec<String>,
    /// Every policy, when any may need writing (their status depends on attestors and trust).
    pub policies: Vec<PolicyReport>,
    /// Whether `policies` was filled (else policies had no change).
    pub policies_changed: bool,
    /// Policies deleted.
    pub deleted_policies: Vec<String>,
    /// Objects that cannot be read.
    pub invalid: Vec<InvalidObject>,
}

impl Reports {
    /// Whether there is nothing to report.
    pub fn is_empty(&self) -> bool {
        self.attestations.is_empty()
            && self.attestors.is_empty()
            && self.gone_attestors.is_empty()
            && !self.policies_changed
            && self.deleted_policies.is_empty()
            && self.invalid.is_empty()
    }
}

impl TrustState {
    /// Take what changed since the last call: at most `max_attestations` attestations (the
    /// rest stay for the next call), every changed attestor, and every policy when
    /// `with_policies` and any may have changed. Empty unless reporting.
    pub fn reports(&mut self, max_attestations: usize, with_policies: bool) -> Reports {
        let Some(mut dirty) = self.dirty.take() else {
            return Reports::default();
        };
        let mut reports = Reports::default();
        let keys: Vec<String> = dirty
            .attestations
            .iter()
            .take(max_attestations)
            .cloned()
            .collect();
        for key in keys {
            dirty.attestations.remove(&key);
            let Some(entry) = self.attestations.get(&key) else {
                continue;
            };
            let result = match &entry.outcome {
                // Reported once it settles (which marks it again).
                Outcome::Pending => continue,
                Outcome::Verified { key_id, digest } => Ok((key_id.clone(), *digest)),
                Outcome::Failed(failure) => Err(failure.clone()),
            };
            let (namespace, name) = key.split_once('/').unwrap_or(("", key.as_str()));
            reports.attestations.push(AttestationReport {
                namespace: namespace.to_owned(),
                name: name.to_owned(),
                attestor: entry.attestor.to_string(),
                generation: entry.object_generation,
                result,
                seen: entry.seen,
            });
        }
        for name in std::mem::take(&mut dirty.attestors) {
            match self.attestors.get(name.as_str()) {
                Some(a) => reports.attestors.push(AttestorReport {
                    keys: a.keys.clone(),
                    generation: a.generation,
                    status: a.status.clone(),
                    registry: a.registry.clone(),
                    syncs_registry: a.spec.registry_signatures.is_some(),
                    name,
                }),
                None => reports.gone_attestors.push(name),
            }
        }
        if with_policies && dirty.policies {
            dirty.policies = false;
            reports.policies_changed = true;
            let policies: Vec<PolicyReport> = self
                .policies
                .iter()
                .map(|(name, p)| PolicyReport {
                    name: name.clone(),
                    uid: p.uid.clone(),
                    generation: p.generation,
                    policy: p.compiled.clone(),
                    status: p.status.clone(),
                    attestors: p
                        .compiled
                        .required_attestors()
                        .iter()
                        .map(|a| {
                            (
                                a.clone(),
                                self.attestors.get(a.as_str()).map(|e| e.keys.clone()),
                            )
                        })
                        .collect(),
                })
                .collect();
            reports.policies = policies;
            reports.deleted_policies = std::mem::take(&mut dirty.deleted_policies);
        }
        reports.invalid = std::mem::take(&mut dirty.invalid);
        self.dirty = Some(dirty);
        reports
    }

    /// Whether changes wait to be reported (more than one call's worth, or policies).
    pub fn has_reports(&self) -> bool {
        self.dirty.as_ref().is_some_and(|d| {
            !d.attestations.is_empty()
                || !d.attestors.is_empty()
                || d.policies
                || !d.deleted_policies.is_empty()
                || !d.invalid.is_empty()
        })
    }

    /// Put attestations back for the next call (their status could not be written).
    pub fn retry_attestations(&mut self, keys: impl IntoIterator<Item = String>) {
        if let Some(dirty) = &mut self.dirty {
            dirty.attestations.extend(keys);
        }
    }

    /// Put attestors back for the next call.
    pub fn retry_attestors(&mut self, names: impl IntoIterator<Item = String>) {
        if let Some(dirty) = &mut self.dirty {
            dirty.attestors.extend(names);
        }
    }

    /// Ask for every policy again on the next call.
    pub fn retry_policies(&mut self) {
        if let Some(dirty) = &mut self.dirty {
            dirty.policies = true;
        }
    }
}
