//! The controller (leader only): tells people what the trust pipeline found, and keeps what
//! the cluster needs from binauthz in place.
//!
//! It verifies nothing and keeps no cache of its own: it reads the replica's
//! [`TrustState`] (outcomes, parsed keys, compiled policies) and [`Index`], and writes
//! - status of every Attestor, ImageAttestation and AttestationPolicy ([`status`]), built by
//!   the pure `build_status` functions of [`attestor`], [`image_attestation`] and [`policy`],
//!   and the allowlist ConfigMaps ([`allowlist`]);
//! - the ValidatingWebhookConfiguration ([`webhook_config`]);
//! - continuous validation's reports of running pods ([`validation`]).

pub mod allowlist;
pub mod attestor;
pub mod image_attestation;
pub mod policy;
pub mod status;
pub mod validation;
pub mod webhook_config;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use kube::{Client, Resource};

use crate::metrics::{LeaderMetrics, Metrics};
use crate::tls::CertStore;
use crate::trust::{Index, TrustState};

pub use webhook_config::{FailurePolicy, WebhookSettings};

/// Name the controller reports in Events and owns fields as.
pub const CONTROLLER_NAME: &str = "binauthz";
/// Label put on everything the controller generates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Upper bound on one API call made by the controller.
pub const API_TIMEOUT: Duration = Duration::from_secs(15);

/// Errors of one write; all are transient (permanent problems become status instead).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An API call failed.
    #[error("Kubernetes API call failed: {0}")]
    Kube(#[from] kube::Error),
    /// An API call did not answer in time.
    #[error("Kubernetes API call timed out after {API_TIMEOUT:?}")]
    Timeout,
    /// A task could not run.
    #[error("task failed: {0}")]
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

/// Run one API call with the time limit.
pub async fn bounded<T>(call: impl Future<Output = Result<T, kube::Error>>) -> Result<T, Error> {
    match tokio::time::timeout(API_TIMEOUT, call).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(Error::Timeout),
    }
}

/// Everything the leader's tasks share.
pub struct Context {
    /// The API client (of the leader).
    pub client: Client,
    /// Where and how the webhook is served.
    pub settings: Arc<WebhookSettings>,
    /// Publishes Events about key problems, invalid objects and violations.
    pub recorder: Recorder,
    /// The serving certificate (for the webhook configuration's caBundle).
    pub certs: Arc<CertStore>,
    /// The replica's trust pipeline: outcomes, keys and policies to report.
    pub trust: Arc<Mutex<TrustState>>,
    /// What admission reads: policies, namespaces, trust.
    pub index: Arc<Index>,
    /// The replica's metrics (watches).
    pub metrics: Arc<Metrics>,
    /// The leader's metrics: violations per policy, key expiry.
    pub leader_metrics: Arc<LeaderMetrics>,
}

impl Context {
    /// The leader's context for `client`, following `trust`.
    pub fn new(
        client: Client,
        settings: Arc<WebhookSettings>,
        certs: Arc<CertStore>,
        identity: String,
        trust: Arc<Mutex<TrustState>>,
        metrics: Arc<Metrics>,
        leader_metrics: Arc<LeaderMetrics>,
    ) -> Self {
        let index = trust
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .index()
            .clone();
        Self {
            recorder: Recorder::new(
                client.clone(),
                Reporter {
                    controller: CONTROLLER_NAME.to_owned(),
                    instance: Some(identity),
                },
            ),
            client,
            settings,
            certs,
            trust,
            index,
            metrics,
            leader_metrics,
        }
    }

    /// Publish an Event about an object; a failure to publish is only logged.
    pub async fn publish(
        &self,
        regarding: &k8s_openapi::api::core::v1::ObjectReference,
        type_: EventType,
        reason: &str,
        note: String,
    ) {
        let event = Event {
            type_,
            reason: reason.to_owned(),
            note: Some(crate::events::note(note)),
            action: "Reconcile".to_owned(),
            secondary: None,
        };
        if let Err(error) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(%error, object = regarding.name.as_deref().unwrap_or_default(), reason, "cannot publish Event");
        }
    }
}

/// The reference to an object of kind `K` for Events.
pub fn reference<K: Resource<DynamicType = ()>>(
    namespace: Option<&str>,
    name: &str,
) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some(K::api_version(&()).into_owned()),
        kind: Some(K::kind(&()).into_owned()),
        namespace: namespace.map(str::to_owned),
        name: Some(name.to_owned()),
        ..Default::default()
    }
}

/// Run the status writer, the webhook configuration loop and continuous validation (every
/// running pod judged every `validation_interval`) until one of them stops. Only the leader
/// calls this.
pub async fn run(
    ctx: Arc<Context>,
    validation_interval: Duration,
    report_format: validation::policy_reports::ReportFormat,
) {
    let statuses = status::run(ctx.clone());
    let webhook = webhook_config::maintain(ctx.clone());
    let validation = validation::run(ctx.clone(), validation_interval, report_format);
    tracing::info!("controller started");
    tokio::select! {
        () = statuses => tracing::warn!("status writer stopped"),
        () = webhook => tracing::warn!("webhook configuration loop stopped"),
        () = validation => tracing::warn!("continuous validation stopped"),
    }
}

/// The current time, whole seconds (status times are stored to the second).
pub fn now() -> jiff::Timestamp {
    let now = jiff::Timestamp::now();
    jiff::Timestamp::from_second(now.as_second()).unwrap_or(now)
}
