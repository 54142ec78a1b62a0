//! The audit log of admission decisions: one JSON line per AdmissionReview answered, written to
//! a file of its own (`binauthz run --audit-log FILE`) for compliance records and SIEMs.
//!
//! Admission never waits on it: records go through a bounded queue to a writer task; when the
//! queue is full a record is dropped, counted (`binauthz_audit_records_dropped_total`) and
//! logged. The schema is versioned by `apiVersion`/`kind`; fields are only ever added.

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::metrics::Metrics;

/// Records waiting to be written; more are dropped.
pub const QUEUE: usize = 8192;

/// `apiVersion` of a record.
pub const API_VERSION: &str = "binauthz.dev/v1alpha1";
/// `kind` of a record.
pub const KIND: &str = "AdmissionAudit";

/// One admission decision.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditRecord {
    /// `binauthz.dev/v1alpha1`.
    pub api_version: &'static str,
    /// `AdmissionAudit`.
    pub kind: &'static str,
    /// When the decision was made (RFC 3339, UTC).
    pub time: String,
    /// The AdmissionReview's `request.uid` (also in the API server's audit log).
    pub uid: String,
    /// Who asked: `request.userInfo`.
    pub user: AuditUser,
    /// `CREATE`, `UPDATE`, ...
    pub operation: String,
    /// The object's namespace.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The object's kind (`Pod`, `Deployment`, ...).
    pub object_kind: String,
    /// The object's name (`generateName` when it has none yet).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Whether the request was a dry run (nothing was created).
    pub dry_run: bool,
    /// `allowed`, `denied`, `breakglass` (admitted because the pod breaks glass), `dry_run`
    /// (admitted; a dry-run rule would have denied), or `error` (the review could not be
    /// judged, refused).
    pub result: &'static str,
    /// Why the review was admitted without judging its images (an operation that adds none,
    /// an update that keeps them), when it was.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_judged: Option<String>,
    /// The AttestationPolicies that govern the namespace.
    pub policies: Vec<String>,
    /// Every image of the object, with what decided it.
    pub images: Vec<AuditImage>,
    /// The denial (or refusal) message.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// The requester.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct AuditUser {
    /// `userInfo.username`.
    pub username: String,
    /// `userInfo.groups`.
    pub groups: Vec<String>,
}

/// One image of the object.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditImage {
    /// The image as written.
    pub image: String,
    /// Its sha256 digest, when it names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
    /// Where the object uses it (`container app`, `volume payload`).
    pub uses: Vec<String>,
    /// Whether a rule refused it (then `policy`, `rule` and `reason` say which and why).
    pub refused: bool,
    /// The policy whose rule refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// The rule that refused it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// The rule's enforcement mode, when it refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enforcement_mode: Option<String>,
    /// Why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The attestors whose verified attestations vouch for its digest now.
    pub attested_by: Vec<String>,
}

/// Where the webhook sends records.
#[derive(Clone, Debug)]
pub struct AuditSink {
    sender: mpsc::Sender<AuditRecord>,
    metrics: Arc<Metrics>,
}

impl AuditSink {
    /// A sink and the queue its writer reads (see [`run`]).
    pub fn channel(metrics: Arc<Metrics>) -> (Self, mpsc::Receiver<AuditRecord>) {
        let (sender, receiver) = mpsc::channel(QUEUE);
        (Self { sender, metrics }, receiver)
    }

    /// Queue a record; never waits. A full queue drops it, counted and logged.
    pub fn record(&self, record: AuditRecord) {
        if let Err(error) = self.sender.try_send(record) {
            self.metrics.audit_dropped();
            let record = match error {
                mpsc::error::TrySendError::Full(r) | mpsc::error::TrySendError::Closed(r) => r,
            };
            tracing::warn!(uid = %record.uid, namespace = %record.namespace, name = %record.name, result = record.result, "audit record dropped: the audit log queue is full");
        }
    }
}

/// Append the records to `path`, one JSON line each, until the queue closes. The file is
/// opened for appending (created with mode 0600) for each batch, so a log rotated away is
/// followed by a new file.
pub async fn run(path: PathBuf, mut receiver: mpsc::Receiver<AuditRecord>, metrics: Arc<Metrics>) {
    let mut batch = Vec::new();
    while receiver.recv_many(&mut batch, 256).await > 0 {
        let mut lines = Vec::with_capacity(batch.len() * 512);
        for record in batch.drain(..) {
            if serde_json::to_writer(&mut lines, &record).is_ok() {
                lines.push(b'\n');
            }
        }
        let count = lines.iter().filter(|b| **b == b'\n').count();
        let target = path.clone();
        let written = tokio::task::spawn_blocking(move || append(&target, &lines)).await;
        match written {
            Ok(Ok(())) => metrics.audit_written(count),
            Ok(Err(error)) => {
                metrics.audit_dropped_many(count);
                tracing::error!(path = %path.display(), %error, records = count, "cannot write the audit log");
            }
            Err(error) => tracing::error!(%error, "the audit log writer failed"),
        }
    }
}

fn append(path: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt as _;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.flush()
}
