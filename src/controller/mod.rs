//! The controller (leader only): verifies attestations and keys ahead of time and reports
//! what it found as status, generates the webhook configuration and the allowlists.
//!
//! Every reconciler reads as `dereference (IO) -> verify/validate (pure) -> build status (pure)
//! -> apply (IO)`. The pure steps live in the submodules as `build_*` functions with unit
//! tests; the IO is a thin layer around them. Watches are over `DeserializeGuard<T>`, so an
//! object that does not deserialize is reported and skipped instead of stalling the watch.

pub mod allowlist;
pub mod attestor;
pub mod image_attestation;
pub mod policy;
pub mod status;
pub mod validation;
pub mod verified;
pub mod webhook_config;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt as _;
use kube::core::DeserializeGuard;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::controller::{Action, Config as ControllerConfig, Controller};
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt as _};

use crate::backoff::WatchBackoff;
use crate::crd::{AttestationPolicy, Attestor, ImageAttestation};
use crate::metrics::LeaderMetrics;
use crate::tls::CertStore;

pub use webhook_config::{FailurePolicy, WebhookSettings};

/// Name the controller reports in Events and owns fields as.
pub const CONTROLLER_NAME: &str = "binauthz";
/// Label put on everything the controller generates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Verified attestations are verified again this often, so key expiry is noticed.
pub const REVERIFY_INTERVAL: Duration = Duration::from_secs(3600);
/// Policies and their allowlists are recomputed at least this often.
pub const POLICY_RESYNC_INTERVAL: Duration = Duration::from_secs(300);
/// Upper bound on one API call made by a reconciler.
pub const API_TIMEOUT: Duration = Duration::from_secs(15);
/// Watches restart after this many seconds, below common load-balancer idle timeouts.
const WATCH_TIMEOUT_SECS: u32 = 240;

/// Errors of a reconcile; all are transient (permanent problems become status instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// An API call did not answer in time.
    #[error("Kubernetes API call timed out after {API_TIMEOUT:?}")]
    Timeout,
    /// A verification task could not run.
    #[error("verification task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Error {
    /// A bounded label for logs and metrics.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Kube(kube::Error::Api(_)) => "api_status",
            Self::Kube(_) => "api_transport",
            Self::Timeout => "timeout",
            Self::Task(_) => "task",
        }
    }
}

/// Run one API call with the reconciler time limit.
pub async fn bounded<T>(call: impl Future<Output = Result<T, kube::Error>>) -> Result<T, Error> {
    match tokio::time::timeout(API_TIMEOUT, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Error::Timeout),
    }
}

/// Per-object exponential backoff for transient errors, reset on success.
#[derive(Debug, Default)]
pub struct Backoff {
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// First retry delay.
    pub const BASE: Duration = Duration::from_secs(1);
    /// Longest retry delay.
    pub const MAX: Duration = Duration::from_secs(300);

    /// Record a failure of `key` and return how long to wait before retrying.
    pub fn next(&self, key: &str) -> Duration {
        let mut failures = self
            .failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let n = failures.entry(key.to_owned()).or_insert(0);
        let delay = Self::BASE.saturating_mul(1u32 << (*n).min(16));
        *n = n.saturating_add(1);
        delay.min(Self::MAX)
    }

    /// Forget the failures of `key` after a success.
    pub fn reset(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(key);
    }
}

/// Everything a reconciler needs, shared by all of them.
pub struct Context {
    /// The API client (of the leader).
    pub client: Client,
    /// Where and how the webhook is served.
    pub settings: Arc<WebhookSettings>,
    /// Publishes Events about key problems and invalid objects.
    pub recorder: Recorder,
    /// The serving certificate (for the webhook configuration's caBundle).
    pub certs: Arc<CertStore>,
    /// Parsed attestor keys, fetched fresh after every change of the attestor.
    pub attestors: image_attestation::AttestorCache,
    /// The attestation controller's cache, read to list verified digests.
    pub attestations: Store<DeserializeGuard<ImageAttestation>>,
    /// The attestation reconciler's own verification results (continuous validation's trust).
    pub verified: verified::VerifiedAttestations,
    /// The attestor controller's cache (which attestors still exist).
    pub attestor_objects: Store<DeserializeGuard<Attestor>>,
    /// The leader's metrics: violations per policy, key expiry.
    pub metrics: Arc<LeaderMetrics>,
    /// Transient-error backoff per object.
    pub backoff: Backoff,
}

impl Context {
    /// Publish an Event about an object; a failure to publish is only logged.
    pub async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        object: &K,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, &object.object_ref(&())).await {
            tracing::warn!(%error, object = object.name_any(), reason, "cannot publish Event");
        }
    }

    /// Report an object that does not deserialize: log it and publish a Warning Event.
    pub async fn report_invalid<K: Resource<DynamicType = ()>>(
        &self,
        object: &DeserializeGuard<K>,
    ) {
        if let Err(invalid) = &object.0 {
            let kind = K::kind(&());
            tracing::warn!(
                kind = %kind,
                name = object.name_any(),
                namespace = object.namespace().unwrap_or_default(),
                error = %invalid,
                "skipping an object that does not match its schema"
            );
            self.publish(
                object,
                EventType::Warning,
                "InvalidObject",
                format!(
                    "{kind} {} cannot be read and is skipped: {invalid}",
                    object.name_any()
                ),
            )
            .await;
        }
    }
}

fn backoff_key<K: Resource<DynamicType = ()>>(object: &K) -> String {
    format!(
        "{}/{}/{}",
        K::kind(&()),
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Transient errors requeue with a per-object exponential backoff.
fn error_policy<K: Resource<DynamicType = ()>>(
    object: Arc<K>,
    error: &Error,
    ctx: Arc<Context>,
) -> Action {
    let delay = ctx.backoff.next(&backoff_key(&*object));
    tracing::warn!(
        kind = %K::kind(&()),
        name = object.name_any(),
        namespace = object.namespace().unwrap_or_default(),
        category = error.category(),
        %error,
        retry_in = ?delay,
        "reconcile failed"
    );
    Action::requeue(delay)
}

pub(crate) fn watch_config() -> watcher::Config {
    watcher::Config::default().timeout(WATCH_TIMEOUT_SECS)
}

fn required_by<'a>(
    policies: &'a Store<DeserializeGuard<AttestationPolicy>>,
    attestor: &'a str,
) -> impl Iterator<Item = ObjectRef<DeserializeGuard<AttestationPolicy>>> + 'a {
    policies.state().into_iter().filter_map(move |p| {
        let policy = p.0.as_ref().ok()?;
        policy::required_attestors(&policy.spec)
            .contains(attestor)
            .then(|| ObjectRef::from_obj(&*p))
    })
}

/// Run every reconciler, the webhook configuration loop and continuous validation (every
/// running pod judged every `validation_interval`) until one of them stops, reporting in
/// `metrics`. Only the leader calls this.
pub async fn run(
    client: Client,
    settings: Arc<WebhookSettings>,
    certs: Arc<CertStore>,
    identity: String,
    validation_interval: Duration,
    metrics: Arc<LeaderMetrics>,
) {
    let attestor_api = Api::<DeserializeGuard<Attestor>>::all(client.clone());
    let attestation_api = Api::<DeserializeGuard<ImageAttestation>>::all(client.clone());
    let policy_api = Api::<DeserializeGuard<AttestationPolicy>>::all(client.clone());

    // Every controller retries its watches within seconds (see `WatchBackoff`).
    let attestor_controller =
        Controller::new(attestor_api.clone(), watch_config()).trigger_backoff(WatchBackoff::new());
    let attestor_store = attestor_controller.store();

    // Attestations can number in the hundred thousands: their cache drops `managedFields` and
    // kubectl's last-applied copy of the object, which nothing here reads and which would
    // otherwise be the bulk of each cached object.
    let (attestation_store, attestation_writer) = reflector::store();
    let attestation_changes = watcher(attestation_api.clone(), watch_config())
        .backoff(WatchBackoff::new())
        .modify(|attestation: &mut DeserializeGuard<ImageAttestation>| {
            attestation.managed_fields_mut().clear();
            attestation
                .annotations_mut()
                .remove("kubectl.kubernetes.io/last-applied-configuration");
        })
        .reflect(attestation_writer)
        .applied_objects();
    let attestation_controller =
        Controller::for_stream(attestation_changes, attestation_store.clone())
            .trigger_backoff(WatchBackoff::new())
            .with_config(ControllerConfig::default().concurrency(16));

    let policy_controller = Controller::new(policy_api, watch_config())
        .trigger_backoff(WatchBackoff::new())
        .with_config(ControllerConfig::default().debounce(Duration::from_millis(500)));
    let policy_store = policy_controller.store();

    let ctx = Arc::new(Context {
        client: client.clone(),
        settings,
        recorder: Recorder::new(
            client.clone(),
            Reporter {
                controller: CONTROLLER_NAME.to_owned(),
                instance: Some(identity),
            },
        ),
        certs,
        attestors: image_attestation::AttestorCache::default(),
        attestations: attestation_store.clone(),
        verified: verified::VerifiedAttestations::default(),
        attestor_objects: attestor_store,
        metrics,
        backoff: Backoff::default(),
    });

    // An attestor change (keys added, removed, edited, or the attestor deleted) re-verifies
    // every attestation naming it. The cache entry is dropped before the reconciles are
    // queued, so they read the attestor as of this change or later.
    let mapper_ctx = ctx.clone();
    let mapper_store = attestation_store.clone();
    let attestation_controller = attestation_controller.watches(
        attestor_api.clone(),
        watch_config(),
        move |attestor: DeserializeGuard<Attestor>| {
            let name = attestor.name_any();
            mapper_ctx.attestors.invalidate(&name);
            mapper_store
                .state()
                .into_iter()
                .filter(|a| a.0.as_ref().is_ok_and(|a| a.spec.attestor == name))
                .map(|a| ObjectRef::from_obj(&*a))
                .collect::<Vec<_>>()
        },
    );

    // A policy is re-evaluated when an attestor it requires changes, and when an
    // attestation for such an attestor changes (its allowlist lists verified digests).
    let by_attestor = policy_store.clone();
    let by_attestation = policy_store.clone();
    let policy_controller = policy_controller
        .watches(attestor_api, watch_config(), move |attestor| {
            required_by(&by_attestor, &attestor.name_any()).collect::<Vec<_>>()
        })
        .watches(
            attestation_api,
            watch_config(),
            move |attestation: DeserializeGuard<ImageAttestation>| match &attestation.0 {
                Ok(a) => required_by(&by_attestation, &a.spec.attestor).collect::<Vec<_>>(),
                Err(_) => Vec::new(),
            },
        );

    let attestors = attestor_controller
        .run(attestor::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "attestor controller event");
            }
        });
    let attestations = attestation_controller
        .run(image_attestation::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "attestation controller event");
            }
        });
    let policies = policy_controller
        .run(policy::reconcile, error_policy, ctx.clone())
        .for_each(|result| async move {
            if let Err(error) = result {
                tracing::debug!(%error, "policy controller event");
            }
        });
    let webhook = webhook_config::maintain(ctx.clone());
    let validation = validation::run(ctx.clone(), validation_interval);

    tracing::info!("controller started");
    tokio::select! {
        () = attestors => tracing::warn!("attestor controller stopped"),
        () = attestations => tracing::warn!("attestation controller stopped"),
        () = policies => tracing::warn!("policy controller stopped"),
        () = webhook => tracing::warn!("webhook configuration loop stopped"),
        () = validation => tracing::warn!("continuous validation stopped"),
    }
}

/// The current time, whole seconds (status times are stored to the second).
pub fn now() -> jiff::Timestamp {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_caps_and_resets() {
        let b = Backoff::default();
        assert_eq!(b.next("a"), Duration::from_secs(1));
        assert_eq!(b.next("a"), Duration::from_secs(2));
        assert_eq!(b.next("a"), Duration::from_secs(4));
        assert_eq!(b.next("b"), Duration::from_secs(1), "per object");
        for _ in 0..20 {
            b.next("a");
        }
        assert_eq!(b.next("a"), Backoff::MAX);
        b.reset("a");
        assert_eq!(b.next("a"), Duration::from_secs(1));
    }
}
