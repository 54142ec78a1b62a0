//! Prometheus metrics of the webhook and the trust index, in one explicit registry, and the
//! leader's ([`LeaderMetrics`]: continuous validation and key expiry).
//!
//! Every label has a small, fixed set of values, or one value per policy or attestor key (few,
//! and chosen by the operators); per-pod detail goes to logs and Events.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, PoisonError};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// Upper bounds of the admission latency histogram, in seconds: 10 µs to 100 ms.
pub const DURATION_BUCKETS: [f64; 13] = [
    0.000_01, 0.000_025, 0.000_05, 0.000_1, 0.000_25, 0.000_5, 0.001, 0.002_5, 0.005, 0.01, 0.025,
    0.05, 0.1,
];

/// The outcome of one AdmissionReview, as counted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AdmissionResult {
    /// Admitted: nothing refused, or the object needs no decision.
    Allowed,
    /// Denied by an enforced rule.
    Denied,
    /// Admitted, but a dry-run rule would have denied.
    DryRun,
    /// Admitted because the pod broke glass.
    Breakglass,
    /// No decision: malformed review, or the trust index was not ready.
    Error,
}

impl AdmissionResult {
    /// The `result` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::Denied => "denied",
            Self::DryRun => "dry_run",
            Self::Breakglass => "breakglass",
            Self::Error => "error",
        }
    }

    const ALL: [Self; 5] = [
        Self::Allowed,
        Self::Denied,
        Self::DryRun,
        Self::Breakglass,
        Self::Error,
    ];
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResourceLabel {
    resource: &'static str,
}

/// Why the webhook refused to read a request (`binauthz_webhook_requests_refused_total`).
pub const REFUSAL_REASONS: [&str; 3] = ["busy", "slow", "too_large"];
/// Reasons of the Events the webhook sends (`binauthz_events_dropped_total`).
pub const EVENT_REASONS: [&str; 2] = ["Denied", "BreakGlass"];
/// The resources binauthz watches (`binauthz_watches`).
pub const WATCHED: [&str; 6] = [
    "attestors",
    "imageattestations",
    "attestationpolicies",
    "namespaces",
    "secrets",
    "pods",
];

/// All binauthz metrics. Counters are pre-created for every label value, so the admission path
/// touches only atomics.
#[derive(Debug)]
pub struct Metrics {
    decisions: [Counter; 5],
    duration: Histogram,
    trust_entries: Gauge<i64, std::sync::atomic::AtomicI64>,
    ready: Gauge<i64, std::sync::atomic::AtomicI64>,
    verified: Counter,
    verification_failed: Counter,
    events_dropped: [Counter<u64, AtomicU64>; 2],
    refused: [Counter<u64, AtomicU64>; 3],
    watches: [Gauge<i64, std::sync::atomic::AtomicI64>; 6],
    registry_requests: Family<RegistryLabels, Counter>,
    registry_duration: Family<RegistryLabel, Histogram>,
    registry_signatures: Family<AttestorLabel, Gauge>,
    registry_sync_errors: Family<AttestorLabel, Counter>,
    lookups: Family<OutcomeLabel, Counter>,
    audit_written: Counter,
    audit_dropped: Counter,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistryLabels {
    registry: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RegistryLabel {
    registry: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AttestorLabel {
    attestor: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabel {
    outcome: &'static str,
}

/// Buckets of registry request latency, in seconds.
const REGISTRY_BUCKETS: [f64; 9] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0, 20.0];

impl Default for Metrics {
    fn default() -> Self {
        Self::register(&mut Registry::default())
    }
}

impl Metrics {
    /// Create the metrics and register them (names prefixed `binauthz_`) in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let registry = registry.sub_registry_with_prefix("binauthz");
        let decisions_family = Family::<ResultLabel, Counter>::default();
        let decisions = AdmissionResult::ALL.map(|r| {
            decisions_family
                .get_or_create(&ResultLabel { result: r.as_str() })
                .clone()
        });
        registry.register(
            "admission_decisions",
            "AdmissionReviews answered, by result",
            decisions_family,
        );
        let duration = Histogram::new(DURATION_BUCKETS);
        registry.register(
            "admission_duration_seconds",
            "Time to answer one AdmissionReview, from the whole body read to the answer",
            duration.clone(),
        );
        let trust_entries = Gauge::default();
        registry.register(
            "trust_index_entries",
            "Attestations whose signature this replica verified and trusts now",
            trust_entries.clone(),
        );
        let ready = Gauge::default();
        registry.register(
            "trust_index_ready",
            "1 once this replica's trust index has listed everything and verified it (then it \
             decides), else 0",
            ready.clone(),
        );
        let verifications = Family::<ResultLabel, Counter>::default();
        let verified = verifications
            .get_or_create(&ResultLabel { result: "verified" })
            .clone();
        let verification_failed = verifications
            .get_or_create(&ResultLabel { result: "failed" })
            .clone();
        registry.register(
            "verifications",
            "Attestation signature verifications run by this replica (cache hits are not counted)",
            verifications,
        );
        let dropped_family = Family::<ReasonLabel, Counter>::default();
        let events_dropped = EVENT_REASONS.map(|reason| {
            dropped_family
                .get_or_create(&ReasonLabel { reason })
                .clone()
        });
        registry.register(
            "events_dropped",
            "Kubernetes Events not sent because their queue was full (each is logged instead)",
            dropped_family,
        );
        let refused_family = Family::<ReasonLabel, Counter>::default();
        let refused = REFUSAL_REASONS.map(|reason| {
            refused_family
                .get_or_create(&ReasonLabel { reason })
                .clone()
        });
        registry.register(
            "webhook_requests_refused",
            "Requests the webhook did not read: busy (no room for the body within 1 s), slow \
             (body not received within 10 s), too_large (over 3 MiB)",
            refused_family,
        );
        let watches_family = Family::<ResourceLabel, Gauge>::default();
        let watches = WATCHED.map(|resource| {
            watches_family
                .get_or_create(&ResourceLabel { resource })
                .clone()
        });
        registry.register(
            "watches",
            "Watches of the Kubernetes API open now, by resource (one per resource and replica, \
             pods only on the leader)",
            watches_family,
        );
        let registry_requests = Family::<RegistryLabels, Counter>::default();
        registry.register(
            "registry_requests",
            "Requests to OCI registries for cosign signatures, by registry and outcome (ok, \
             not_found, error); registries are those Attestors name",
            registry_requests.clone(),
        );
        let registry_duration = Family::<RegistryLabel, Histogram>::new_with_constructor(|| {
            Histogram::new(REGISTRY_BUCKETS)
        });
        registry.register(
            "registry_request_duration_seconds",
            "Time of one request to an OCI registry",
            registry_duration.clone(),
        );
        let registry_signatures = Family::<AttestorLabel, Gauge>::default();
        registry.register(
            "registry_signatures",
            "Registry signatures the last sync kept as ImageAttestations, by attestor (leader)",
            registry_signatures.clone(),
        );
        let registry_sync_errors = Family::<AttestorLabel, Counter>::default();
        registry.register(
            "registry_sync_errors",
            "Syncs of an attestor's registry signatures that failed for a repository",
            registry_sync_errors.clone(),
        );
        let lookups = Family::<OutcomeLabel, Counter>::default();
        registry.register(
            "registry_lookups",
            "Lookups of a denied image's signatures, by outcome (found, none, error, dropped: \
             the queue was full)",
            lookups.clone(),
        );
        let audit_written = Counter::default();
        registry.register(
            "audit_records",
            "Admission decisions written to the audit log",
            audit_written.clone(),
        );
        let audit_dropped = Counter::default();
        registry.register(
            "audit_records_dropped",
            "Admission decisions not written to the audit log (queue full, or the file could not \
             be written; each is logged)",
            audit_dropped.clone(),
        );
        Self {
            decisions,
            duration,
            trust_entries,
            ready,
            verified,
            verification_failed,
            events_dropped,
            refused,
            watches,
            registry_requests,
            registry_duration,
            registry_signatures,
            registry_sync_errors,
            lookups,
            audit_written,
            audit_dropped,
        }
    }

    /// The trust index became ready.
    pub fn set_ready(&self) {
        self.ready.set(1);
    }

    /// A watch of `resource` (one of [`WATCHED`]) opened (`1`) or closed (`-1`).
    pub fn watch_opened(&self, resource: &str, by: i64) {
        if let Some(i) = WATCHED.iter().position(|r| *r == resource) {
            self.watches[i].inc_by(by);
        }
    }

    /// Watches of `resource` open now.
    pub fn watches(&self, resource: &str) -> i64 {
        WATCHED
            .iter()
            .position(|r| *r == resource)
            .map_or(0, |i| self.watches[i].get())
    }

    /// Count one answered AdmissionReview and how long it took.
    pub fn admission(&self, result: AdmissionResult, seconds: f64) {
        let index = AdmissionResult::ALL
            .iter()
            .position(|r| *r == result)
            .unwrap_or(AdmissionResult::ALL.len() - 1);
        if let Some(counter) = self.decisions.get(index) {
            counter.inc();
        }
        self.duration.observe(seconds);
    }

    /// Number of AdmissionReviews answered with `result`.
    pub fn decisions(&self, result: AdmissionResult) -> u64 {
        AdmissionResult::ALL
            .iter()
            .position(|r| *r == result)
            .and_then(|i| self.decisions.get(i))
            .map_or(0, Counter::get)
    }

    /// Record the size of the trust index.
    pub fn set_trust_entries(&self, entries: usize) {
        self.trust_entries
            .set(i64::try_from(entries).unwrap_or(i64::MAX));
    }

    /// The last recorded size of the trust index.
    pub fn trust_entries(&self) -> i64 {
        self.trust_entries.get()
    }

    /// Count one signature verification.
    pub fn verification(&self, verified: bool) {
        if verified {
            self.verified.inc();
        } else {
            self.verification_failed.inc();
        }
    }

    /// Verifications run so far: (verified, failed).
    pub fn verifications(&self) -> (u64, u64) {
        (self.verified.get(), self.verification_failed.get())
    }

    /// Count one Event (of a reason in [`EVENT_REASONS`]) dropped because its queue was full.
    pub fn event_dropped(&self, reason: &str) {
        if let Some(i) = EVENT_REASONS.iter().position(|r| *r == reason) {
            self.events_dropped[i].inc();
        }
    }

    /// Events dropped so far, of every reason.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped.iter().map(Counter::get).sum()
    }

    /// Count one request the webhook refused to read (a reason in [`REFUSAL_REASONS`]).
    pub fn request_refused(&self, reason: &str) {
        if let Some(i) = REFUSAL_REASONS.iter().position(|r| *r == reason) {
            self.refused[i].inc();
        }
    }

    /// One request to `registry`: its outcome (`ok`, `not_found`, `error`) and time.
    pub fn registry_request(
        &self,
        registry: &str,
        outcome: &'static str,
        took: std::time::Duration,
    ) {
        self.registry_requests
            .get_or_create(&RegistryLabels {
                registry: registry.to_owned(),
                outcome,
            })
            .inc();
        self.registry_duration
            .get_or_create(&RegistryLabel {
                registry: registry.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    /// Requests made to `registry` so far.
    pub fn registry_requests(&self, registry: &str) -> u64 {
        ["ok", "not_found", "error"]
            .iter()
            .map(|outcome| {
                self.registry_requests
                    .get_or_create(&RegistryLabels {
                        registry: registry.to_owned(),
                        outcome,
                    })
                    .get()
            })
            .sum()
    }

    /// The signatures an attestor's last sync kept; `None` forgets the attestor.
    pub fn set_registry_signatures(&self, attestor: &str, count: Option<i64>) {
        let label = AttestorLabel {
            attestor: attestor.to_owned(),
        };
        match count {
            Some(count) => {
                self.registry_signatures.get_or_create(&label).set(count);
            }
            None => {
                self.registry_signatures.remove(&label);
                self.registry_sync_errors.remove(&label);
            }
        }
    }

    /// A sync of an attestor failed for a repository.
    pub fn registry_sync_failed(&self, attestor: &str) {
        self.registry_sync_errors
            .get_or_create(&AttestorLabel {
                attestor: attestor.to_owned(),
            })
            .inc();
    }

    /// Audit records written.
    pub fn audit_written(&self, count: usize) {
        self.audit_written.inc_by(count as u64);
    }

    /// One audit record dropped.
    pub fn audit_dropped(&self) {
        self.audit_dropped.inc();
    }

    /// Audit records dropped at once (a write failed).
    pub fn audit_dropped_many(&self, count: usize) {
        self.audit_dropped.inc_by(count as u64);
    }

    /// Audit records written and dropped so far.
    pub fn audit(&self) -> (u64, u64) {
        (self.audit_written.get(), self.audit_dropped.get())
    }

    /// A lookup of a denied image ended (`found`, `none`, `error`) or was dropped.
    pub fn lookup(&self, outcome: &'static str) {
        self.lookups.get_or_create(&OutcomeLabel { outcome }).inc();
    }

    /// Requests refused so far with `reason`.
    pub fn requests_refused(&self, reason: &str) -> u64 {
        REFUSAL_REASONS
            .iter()
            .position(|r| *r == reason)
            .map_or(0, |i| self.refused[i].get())
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PolicyLabel {
    policy: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KeyLabels {
    attestor: String,
    key: String,
}

/// What the leader reports: running pods violating each policy (continuous validation) and
/// when each attestor key expires. Registered on every replica; only the leader sets values,
/// and a replica that stops leading clears them, so summing over replicas counts once.
#[derive(Debug, Default)]
pub struct LeaderMetrics {
    violations: Family<PolicyLabel, Gauge>,
    key_expiry: Family<KeyLabels, Gauge>,
    /// The label sets set so far, to remove those of deleted policies and keys.
    policies: Mutex<BTreeSet<String>>,
    keys: Mutex<BTreeMap<String, Vec<KeyLabels>>>,
}

impl LeaderMetrics {
    /// Register the leader's metrics (names prefixed `binauthz_`) in `registry`.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("binauthz");
        registry.register(
            "policy_violations",
            "Running pods that violate the policy, enforced or dry run (continuous validation)",
            self.violations.clone(),
        );
        registry.register(
            "key_expiry_seconds",
            "When the attestor key expires, as a Unix timestamp (keys without expiry are absent)",
            self.key_expiry.clone(),
        );
    }

    /// Set the number of violating pods of every policy; policies not listed are removed.
    pub fn set_policy_violations(&self, counts: &BTreeMap<String, i64>) {
        let mut seen = self.policies.lock().unwrap_or_else(PoisonError::into_inner);
        for (policy, count) in counts {
            self.violations
                .get_or_create(&PolicyLabel {
                    policy: policy.clone(),
                })
                .set(*count);
        }
        for gone in seen.iter().filter(|p| !counts.contains_key(*p)) {
            self.violations.remove(&PolicyLabel {
                policy: gone.clone(),
            });
        }
        *seen = counts.keys().cloned().collect();
    }

    /// Number of violating pods last set for `policy`.
    pub fn policy_violations(&self, policy: &str) -> Option<i64> {
        self.policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(policy)
            .then(|| {
                self.violations
                    .get_or_create(&PolicyLabel {
                        policy: policy.to_owned(),
                    })
                    .get()
            })
    }

    /// Set the expiry (Unix seconds) of every key of `attestor` that expires, replacing what
    /// was set for it before.
    pub fn set_key_expiry(&self, attestor: &str, expiries: &[(String, i64)]) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        let labels: Vec<KeyLabels> = expiries
            .iter()
            .map(|(key, _)| KeyLabels {
                attestor: attestor.to_owned(),
                key: key.clone(),
            })
            .collect();
        for (label, (_, at)) in labels.iter().zip(expiries) {
            self.key_expiry.get_or_create(label).set(*at);
        }
        for old in keys.get(attestor).into_iter().flatten() {
            if !labels.contains(old) {
                self.key_expiry.remove(old);
            }
        }
        keys.insert(attestor.to_owned(), labels);
    }

    /// Remove the keys of every attestor `keep` refuses (deleted attestors).
    pub fn retain_attestors(&self, keep: impl Fn(&str) -> bool) {
        let mut keys = self.keys.lock().unwrap_or_else(PoisonError::into_inner);
        keys.retain(|attestor, labels| {
            let kept = keep(attestor);
            if !kept {
                for label in labels.iter() {
                    self.key_expiry.remove(label);
                }
            }
            kept
        });
    }

    /// Remove every value (this replica no longer leads).
    pub fn clear(&self) {
        self.violations.clear();
        self.key_expiry.clear();
        self.policies
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.keys
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
    }
}

/// The registry in Prometheus text format.
pub fn encode(registry: &Registry) -> Result<String, std::fmt::Error> {
    let mut out = String::new();
    prometheus_client::encoding::text::encode(&mut out, registry)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_format_has_every_metric_with_bounded_labels() {
        let mut registry = Registry::default();
        let metrics = Metrics::register(&mut registry);
        metrics.admission(AdmissionResult::Denied, 0.000_02);
        metrics.admission(AdmissionResult::Allowed, 0.2);
        metrics.set_trust_entries(7);
        metrics.verification(true);
        metrics.verification(false);
        metrics.verification(false);
        let text = encode(&registry).unwrap();
        for line in [
            "binauthz_admission_decisions_total{result=\"denied\"} 1",
            "binauthz_admission_decisions_total{result=\"allowed\"} 1",
            "binauthz_admission_decisions_total{result=\"breakglass\"} 0",
            "binauthz_admission_decisions_total{result=\"dry_run\"} 0",
            "binauthz_admission_decisions_total{result=\"error\"} 0",
            "binauthz_admission_duration_seconds_count 2",
            "binauthz_trust_index_entries 7",
            "binauthz_verifications_total{result=\"verified\"} 1",
            "binauthz_verifications_total{result=\"failed\"} 2",
            "binauthz_events_dropped_total{reason=\"Denied\"} 0",
            "binauthz_events_dropped_total{reason=\"BreakGlass\"} 0",
            "binauthz_webhook_requests_refused_total{reason=\"busy\"} 0",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        // Bucket bounds are printed as floats; compare them as numbers.
        let buckets: Vec<(f64, u64)> = text
            .lines()
            .filter_map(|l| l.strip_prefix("binauthz_admission_duration_seconds_bucket{le=\""))
            .filter_map(|l| l.split_once("\"} "))
            .filter_map(|(le, n)| Some((le.parse().ok()?, n.parse().ok()?)))
            .collect();
        let want: Vec<(f64, u64)> = DURATION_BUCKETS
            .iter()
            .map(|&le| (le, u64::from(le >= 0.000_02)))
            .chain([(f64::INFINITY, 2)])
            .collect();
        assert_eq!(buckets, want);
        assert_eq!(metrics.decisions(AdmissionResult::Denied), 1);
        assert_eq!(metrics.verifications(), (1, 2));
        assert_eq!(metrics.trust_entries(), 7);
    }

    #[test]
    fn leader_metrics_follow_policies_and_keys() {
        let mut registry = Registry::default();
        let leader = LeaderMetrics::default();
        leader.register(&mut registry);
        leader.set_policy_violations(&BTreeMap::from([
            ("prod".to_owned(), 3),
            ("audit".to_owned(), 0),
        ]));
        leader.set_key_expiry("build", &[("AAAA".to_owned(), 1_800_000_000)]);
        leader.set_key_expiry("qa", &[("ni:///sha-256;x".to_owned(), 1_900_000_000)]);
        let text = encode(&registry).unwrap();
        for line in [
            "binauthz_policy_violations{policy=\"prod\"} 3",
            "binauthz_policy_violations{policy=\"audit\"} 0",
            "binauthz_key_expiry_seconds{attestor=\"build\",key=\"AAAA\"} 1800000000",
            "binauthz_key_expiry_seconds{attestor=\"qa\",key=\"ni:///sha-256;x\"} 1900000000",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
        assert_eq!(leader.policy_violations("prod"), Some(3));
        // A deleted policy, a replaced key and a deleted attestor go away.
        leader.set_policy_violations(&BTreeMap::from([("prod".to_owned(), 1)]));
        leader.set_key_expiry("build", &[("BBBB".to_owned(), 1_850_000_000)]);
        leader.retain_attestors(|a| a != "qa");
        let text = encode(&registry).unwrap();
        assert!(
            text.contains("binauthz_policy_violations{policy=\"prod\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("audit") && !text.contains("AAAA") && !text.contains("qa"),
            "{text}"
        );
        assert!(text.contains("key=\"BBBB\"} 1850000000"), "{text}");
        assert_eq!(leader.policy_violations("audit"), None);
        leader.clear();
        let text = encode(&registry).unwrap();
        assert!(
            !text.contains("policy=") && !text.contains("key="),
            "{text}"
        );
    }
}
