//! Prometheus metrics of the webhook and the trust index, in one explicit registry.
//!
//! Every label has a small, fixed set of values; per-object detail goes to logs and Events.

use std::sync::atomic::AtomicU64;

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

/// All binauthz metrics. Counters are pre-created for every label value, so the admission path
/// touches only atomics.
#[derive(Debug)]
pub struct Metrics {
    decisions: [Counter; 5],
    duration: Histogram,
    trust_entries: Gauge<i64, std::sync::atomic::AtomicI64>,
    verified: Counter,
    verification_failed: Counter,
    events_dropped: Counter<u64, AtomicU64>,
}

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
        let events_dropped = Counter::default();
        registry.register(
            "events_dropped",
            "Kubernetes Events not sent because the event queue was full",
            events_dropped.clone(),
        );
        Self {
            decisions,
            duration,
            trust_entries,
            verified,
            verification_failed,
            events_dropped,
        }
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

    /// Count one Event dropped because the queue was full.
    pub fn event_dropped(&self) {
        self.events_dropped.inc();
    }

    /// Events dropped so far.
    pub fn events_dropped(&self) -> u64 {
        self.events_dropped.get()
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
            "binauthz_events_dropped_total 0",
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
}
