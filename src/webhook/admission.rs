//! One AdmissionReview in, one answer out: parse, extract the pod (template), decide from the
//! in-memory index, and build the response. No I/O happens here.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::core::Status;
use kube::core::response::{StatusCause, StatusDetails};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::audit::{self, AuditImage, AuditRecord, AuditUser};
use crate::events::{Notice, NoticeReason};
use crate::metrics::AdmissionResult;
use crate::policy::{Decision, Undecided, Workload, WorkloadKind};
use crate::trust::{CannotDecide, Index};

/// Largest AdmissionReview body read; bigger ones are refused with 413.
pub const MAX_BODY_BYTES: usize = 3 * 1024 * 1024;
/// `status.reason` of a denial, as Google Binary Authorization.
pub const VIOLATES_POLICY: &str = "VIOLATES_POLICY";
/// `status.details.causes[].reason` of a refused image.
pub const CAUSE_REASON: &str = "FieldValueForbidden";

const API_VERSION_V1: &str = "admission.k8s.io/v1";
const API_VERSION_V1BETA1: &str = "admission.k8s.io/v1beta1";
const KIND: &str = "AdmissionReview";

/// The answer to one HTTP request.
#[derive(Debug)]
pub enum Answer {
    /// HTTP 200 with an AdmissionReview.
    Review(Reviewed),
    /// An HTTP error: the body is not a usable AdmissionReview, or the index is not ready.
    Error(HttpError),
}

impl Answer {
    /// The result to count.
    pub fn result(&self) -> AdmissionResult {
        match self {
            Self::Review(r) => r.result,
            Self::Error(_) => AdmissionResult::Error,
        }
    }
}

/// A decision (or a refusal to decide) for one request, as an AdmissionReview.
#[derive(Debug)]
pub struct Reviewed {
    /// The JSON body to send.
    pub body: Vec<u8>,
    /// What it says, for metrics.
    pub result: AdmissionResult,
    /// An Event to send, if any.
    pub notice: Option<Box<Notice>>,
    /// The namespace the decision waits for: the answer refuses the request (retryably) because
    /// the namespace is not known yet; asking again once it is known may decide.
    pub unknown_namespace: Option<String>,
    /// The decision's audit record.
    pub audit: Option<Box<AuditRecord>>,
}

/// An HTTP error answer, sent as a Kubernetes `Status`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpError {
    /// HTTP status code.
    pub code: u16,
    /// Kubernetes `StatusReason` (`BadRequest`, `RequestEntityTooLarge`, `ServiceUnavailable`).
    pub reason: &'static str,
    /// What is wrong, for people.
    pub message: String,
}

impl HttpError {
    /// 400: the body cannot be used.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
        }
    }

    /// 413: the body is over [`MAX_BODY_BYTES`].
    pub fn too_large() -> Self {
        Self {
            code: 413,
            reason: "RequestEntityTooLarge",
            message: format!(
                "AdmissionReview body is larger than {MAX_BODY_BYTES} bytes (3 MiB); binauthz does not read it"
            ),
        }
    }

    /// 503: too many request bodies in flight.
    pub fn busy() -> Self {
        Self::unavailable(
            "binauthz is reading as many request bodies as it allows at once; retry in a moment",
        )
    }

    /// 408: the body did not arrive in time.
    pub fn timeout() -> Self {
        Self {
            code: 408,
            reason: "Timeout",
            message: format!(
                "the AdmissionReview body did not arrive within {} s",
                super::body::BODY_DEADLINE.as_secs()
            ),
        }
    }

    /// 503: the trust index is not ready.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self {
            code: 503,
            reason: "ServiceUnavailable",
            message: message.into(),
        }
    }

    /// The body: a `v1` `Status` object.
    pub fn to_json(&self) -> Vec<u8> {
        let status = serde_json::json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        serde_json::to_vec(&status).unwrap_or_default()
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    request: Option<RequestIn>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RequestIn {
    #[serde(default)]
    uid: Option<String>,
    #[serde(default)]
    kind: Option<KindIn>,
    #[serde(default)]
    sub_resource: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    operation: Option<String>,
    #[serde(default)]
    dry_run: Option<bool>,
    #[serde(default)]
    user_info: Option<UserInfoIn>,
    #[serde(default)]
    object: Option<Value>,
    #[serde(default)]
    old_object: Option<Value>,
}

#[derive(Deserialize)]
struct UserInfoIn {
    #[serde(default)]
    username: String,
    #[serde(default)]
    groups: Vec<String>,
}

#[derive(Deserialize)]
struct KindIn {
    #[serde(default)]
    group: String,
    #[serde(default)]
    version: String,
    #[serde(default)]
    kind: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'a str,
    kind: &'static str,
    response: ResponseOut,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut {
    uid: String,
    allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<Status>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    audit_annotations: BTreeMap<String, String>,
}

/// Everything known about the request once its uid is readable.
struct Context<'a> {
    api_version: &'a str,
    uid: String,
}

impl Context<'_> {
    fn answer(
        &self,
        response: ResponseOut,
        result: AdmissionResult,
        notice: Option<Notice>,
    ) -> Answer {
        let review = ReviewOut {
            api_version: self.api_version,
            kind: KIND,
            response,
        };
        match serde_json::to_vec(&review) {
            Ok(body) => Answer::Review(Reviewed {
                body,
                result,
                notice: notice.map(Box::new),
                unknown_namespace: None,
                audit: None,
            }),
            Err(e) => Answer::Error(HttpError {
                code: 500,
                reason: "InternalError",
                message: format!("cannot encode the AdmissionReview response: {e}"),
            }),
        }
    }

    fn allow(&self) -> Answer {
        self.answer(
            ResponseOut {
                uid: self.uid.clone(),
                allowed: true,
                status: None,
                warnings: Vec::new(),
                audit_annotations: BTreeMap::new(),
            },
            AdmissionResult::Allowed,
            None,
        )
    }

    /// The snapshot cannot decide yet: refuse the request, saying to retry (a controller
    /// does; the namespace watch catches up within moments).
    fn undecided(&self, undecided: &Undecided) -> Answer {
        let message =
            format!("binauthz cannot judge this request yet: {undecided}; retry in a moment");
        tracing::warn!(uid = %self.uid, %message, "undecided");
        let status = Status::failure(&message, "ServiceUnavailable")
            .with_code(503)
            .with_details(StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: String::new(),
                uid: String::new(),
                causes: Vec::new(),
                retry_after_seconds: 1,
            });
        let mut answer = self.answer(
            ResponseOut {
                uid: self.uid.clone(),
                allowed: false,
                status: Some(status),
                warnings: Vec::new(),
                audit_annotations: BTreeMap::new(),
            },
            AdmissionResult::Error,
            None,
        );
        if let (Answer::Review(reviewed), Undecided::UnknownNamespace { namespace, .. }) =
            (&mut answer, undecided)
        {
            reviewed.unknown_namespace = Some(namespace.clone());
        }
        answer
    }

    /// The request is an AdmissionReview but cannot be judged: refuse it with the reason.
    fn invalid(&self, message: String) -> Answer {
        tracing::warn!(uid = %self.uid, %message, "invalid AdmissionReview");
        let status = Status::failure(
            &format!("binauthz cannot judge this request: {message}"),
            "BadRequest",
        )
        .with_code(400);
        self.answer(
            ResponseOut {
                uid: self.uid.clone(),
                allowed: false,
                status: Some(status),
                warnings: Vec::new(),
                audit_annotations: BTreeMap::new(),
            },
            AdmissionResult::Error,
            None,
        )
    }
}

fn parse(body: &[u8]) -> Result<ReviewIn, HttpError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(HttpError::bad_request(
            "empty request body; POST an AdmissionReview (admission.k8s.io/v1) as JSON",
        ));
    }
    // serde accepts a struct written as a JSON list; an AdmissionReview is never one.
    if body.trim_ascii_start().starts_with(b"[") {
        return Err(HttpError::bad_request(
            "request body is not an AdmissionReview (admission.k8s.io/v1): it is a JSON list, not an object",
        ));
    }
    // The common case decodes untracked; only a body that fails is decoded again with its
    // path tracked, for an error that names the field (tracking every value costs about a
    // third of a review's CPU).
    if let Ok(review) = serde_json::from_slice::<ReviewIn>(body) {
        return Ok(review);
    }
    let mut deserializer = serde_json::Deserializer::from_slice(body);
    let review: ReviewIn = serde_path_to_error::deserialize(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => HttpError::bad_request(format!(
                "request body is not an AdmissionReview (admission.k8s.io/v1): {path}: {inner}"
            )),
            _ => HttpError::bad_request(format!("request body is not valid JSON: {inner}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|e| HttpError::bad_request(format!("request body is not valid JSON: {e}")))?;
    Ok(review)
}

/// Every image reference the workload can pull (containers and image volumes alike).
fn images(workload: &Workload) -> BTreeSet<&str> {
    workload.images.iter().map(|u| u.image.as_str()).collect()
}

fn group_version(group: &str, version: &str) -> String {
    if group.is_empty() {
        version.to_owned()
    } else {
        format!("{group}/{version}")
    }
}

/// The object an Event is about; a `generateName` prefix loses its trailing dash so the
/// Event's name stays valid.
fn reference(
    kind: &KindIn,
    workload: &Workload,
    namespace: &str,
    object: &Value,
) -> ObjectReference {
    let name = workload.name.trim_end_matches('-');
    let name = if name.is_empty() {
        kind.kind.to_ascii_lowercase()
    } else {
        name.to_owned()
    };
    ObjectReference {
        api_version: Some(group_version(&kind.group, &kind.version)),
        kind: Some(kind.kind.clone()),
        name: Some(name),
        namespace: Some(namespace.to_owned()),
        uid: object
            .pointer("/metadata/uid")
            .and_then(Value::as_str)
            .map(str::to_owned),
        ..ObjectReference::default()
    }
}

/// Answer one AdmissionReview body from memory, with the decision's audit record.
/// Without `audit`, the record's costly parts (each image's attestors, the time) are left out
/// and no record is returned.
pub fn review(index: &Index, body: &[u8], audit: bool) -> Answer {
    let mut record = AuditRecord {
        api_version: audit::API_VERSION,
        kind: audit::KIND,
        ..AuditRecord::default()
    };
    let mut answer = judge(index, body, audit.then_some(&mut record));
    let mut audit = record;
    if let Answer::Review(reviewed) = &mut answer
        && !audit.uid.is_empty()
    {
        audit.result = reviewed.result.as_str();
        audit.time = jiff::Timestamp::now().to_string();
        reviewed.audit = Some(Box::new(audit));
    }
    answer
}

/// The images of a decided workload, for its audit record.
fn audit_images(index: &Index, workload: &Workload, decision: &Decision) -> Vec<AuditImage> {
    let mut images: Vec<AuditImage> = Vec::new();
    for image_use in &workload.images {
        let used = format!(
            "{} {}",
            image_use
                .source
                .as_str()
                .strip_suffix('s')
                .unwrap_or(image_use.source.as_str()),
            image_use.name
        );
        if let Some(known) = images.iter_mut().find(|i| i.image == image_use.image) {
            known.uses.push(used);
            continue;
        }
        let digest = crate::image::ImageRef::parse(&image_use.image)
            .ok()
            .and_then(|i| i.digest().copied());
        let refusal = decision
            .denials
            .iter()
            .chain(&decision.dry_run)
            .find(|v| v.image == image_use.image);
        images.push(AuditImage {
            image: image_use.image.clone(),
            digest: digest.map(|d| d.as_str().to_owned()),
            uses: vec![used],
            refused: refusal.is_some(),
            policy: refusal.map(|v| v.policy.to_string()),
            rule: refusal.map(|v| v.rule.to_string()),
            enforcement_mode: refusal.map(|v| {
                match v.enforcement_mode {
                    crate::crd::EnforcementMode::EnforcedBlockAndAuditLog => {
                        "ENFORCED_BLOCK_AND_AUDIT_LOG"
                    }
                    crate::crd::EnforcementMode::DryrunAuditLogOnly => "DRYRUN_AUDIT_LOG_ONLY",
                }
                .to_owned()
            }),
            reason: refusal.map(|v| v.details()),
            attested_by: digest
                .map(|d| index.read_trust(|t| t.attestors_of(&d)))
                .unwrap_or_default(),
        });
    }
    images
}

fn judge(index: &Index, body: &[u8], audit: Option<&mut AuditRecord>) -> Answer {
    // Without a record wanted, the cheap fields go to a scratch record that is dropped.
    let mut scratch = AuditRecord::default();
    let wanted = audit.is_some();
    let audit = audit.unwrap_or(&mut scratch);
    let span = tracing::Span::current();
    let review = match parse(body) {
        Ok(review) => review,
        Err(error) => return Answer::Error(error),
    };
    let api_version = match review.api_version.as_deref() {
        Some(v @ (API_VERSION_V1 | API_VERSION_V1BETA1)) => v,
        Some(other) => {
            return Answer::Error(HttpError::bad_request(format!(
                "request body is not an AdmissionReview (admission.k8s.io/v1): apiVersion is {other:?}"
            )));
        }
        None => {
            return Answer::Error(HttpError::bad_request(
                "request body is not an AdmissionReview (admission.k8s.io/v1): apiVersion is missing",
            ));
        }
    };
    match review.kind.as_deref() {
        Some(KIND) => {}
        Some(other) => {
            return Answer::Error(HttpError::bad_request(format!(
                "request body is not an AdmissionReview (admission.k8s.io/v1): kind is {other:?}"
            )));
        }
        None => {
            return Answer::Error(HttpError::bad_request(
                "request body is not an AdmissionReview (admission.k8s.io/v1): kind is missing",
            ));
        }
    }
    let Some(request) = review.request else {
        return Answer::Error(HttpError::bad_request(
            "AdmissionReview has no request; the API server sends one in every review",
        ));
    };
    let uid = match request.uid {
        Some(uid) if !uid.is_empty() => uid,
        _ => {
            return Answer::Error(HttpError::bad_request(
                "AdmissionReview request.uid is missing; the response must echo it",
            ));
        }
    };
    span.record("uid", uid.as_str());
    audit.uid.clone_from(&uid);
    audit.dry_run = request.dry_run.unwrap_or(false);
    if let Some(user) = request.user_info {
        audit.user = AuditUser {
            username: user.username,
            groups: user.groups,
        };
    }
    let cx = Context { api_version, uid };

    let Some(operation) = request.operation else {
        return cx.invalid("request.operation is missing".to_owned());
    };
    span.record("operation", operation.as_str());
    audit.operation.clone_from(&operation);
    let Some(kind) = request.kind else {
        return cx.invalid("request.kind is missing".to_owned());
    };
    span.record("kind", kind.kind.as_str());
    audit.object_kind.clone_from(&kind.kind);
    let namespace = request.namespace.filter(|n| !n.is_empty());
    if let Some(ns) = &namespace {
        span.record("namespace", ns.as_str());
        audit.namespace.clone_from(ns);
    }
    if let Some(name) = request.name.as_deref().filter(|n| !n.is_empty()) {
        span.record("name", name);
        audit.name = name.to_owned();
    }
    // Only pods and pod templates carry images; deletes and connects change none.
    if operation != "CREATE" && operation != "UPDATE" {
        audit.not_judged = Some(format!("{operation} adds no image"));
        return cx.allow();
    }
    match request.sub_resource.as_deref() {
        None | Some("" | "ephemeralcontainers") => {}
        // status, scale, binding, ...: never a new image.
        Some(sub) => {
            audit.not_judged = Some(format!("the {sub} subresource adds no image"));
            return cx.allow();
        }
    }
    let Some(workload_kind) =
        WorkloadKind::from_type(&group_version(&kind.group, &kind.version), &kind.kind)
    else {
        audit.not_judged = Some(format!("{} is not a workload", kind.kind));
        return cx.allow();
    };
    let Some(object) = request.object else {
        return cx.invalid(format!(
            "request.object is missing; a {} {operation} carries the object",
            kind.kind
        ));
    };
    let mut workload = match Workload::from_object(workload_kind, &object) {
        Ok(w) => w,
        Err(e) => {
            let e = e.to_string();
            return cx.invalid(match e.strip_prefix("(root) ") {
                Some(rest) => format!("request.object {rest}"),
                None => format!("request.object.{e}"),
            });
        }
    };
    if namespace.is_some() {
        workload.namespace.clone_from(&namespace);
    }
    let namespace = workload.namespace().to_owned();
    span.record("namespace", namespace.as_str());
    audit.namespace.clone_from(&namespace);
    if audit.name.is_empty() {
        audit.name.clone_from(&workload.name);
    }

    // An UPDATE that keeps the same images is admitted without asking the policy: label
    // edits, finalizer removal, scaling and status changes must never get stuck behind a
    // policy that changed after the object was admitted.
    if operation == "UPDATE"
        && let Some(old) = &request.old_object
        && let Ok(old) = Workload::from_object(workload_kind, old)
        && images(&old) == images(&workload)
    {
        span.record("allowed", true);
        audit.not_judged = Some("the update keeps the images".to_owned());
        return cx.allow();
    }

    let decision = match index.decide(&workload) {
        Ok(decision) => decision,
        Err(CannotDecide::NotReady(not_ready)) => {
            return Answer::Error(HttpError::unavailable(not_ready.to_string()));
        }
        Err(CannotDecide::Undecided(undecided)) => return cx.undecided(&undecided),
    };
    span.record("allowed", decision.allowed);
    audit.policies = decision.policies.iter().map(|p| p.to_string()).collect();
    if wanted {
        audit.images = audit_images(index, &workload, &decision);
    }
    if !decision.allowed {
        audit.message = Some(decision.message());
    }
    // Denied for want of an attestation, an image of a synced repository is looked up at once
    // (in the background): the controller's next try can be admitted.
    let fetching = if decision.allowed {
        Vec::new()
    } else {
        index.request_lookups(&decision)
    };
    let notice_allowed = !request.dry_run.unwrap_or(false);
    respond(
        &cx,
        &decision,
        &fetching,
        workload_kind,
        notice_allowed.then(|| reference(&kind, &workload, &namespace, &object)),
    )
}

/// The response for a decision, with the Event it calls for.
fn respond(
    cx: &Context<'_>,
    decision: &Decision,
    fetching: &[String],
    kind: WorkloadKind,
    regarding: Option<ObjectReference>,
) -> Answer {
    let warnings = decision.warnings();
    let audit_annotations = decision.audit_annotations();
    if !decision.allowed {
        let prefix = kind.template_prefix();
        let mut causes: Vec<StatusCause> = Vec::new();
        for verdict in &decision.denials {
            let message = verdict.cause();
            for image_use in &verdict.uses {
                let cause = StatusCause {
                    reason: CAUSE_REASON.to_owned(),
                    message: message.clone(),
                    field: format!("{prefix}{}", image_use.image_path()),
                };
                if !causes.contains(&cause) {
                    causes.push(cause);
                }
            }
        }
        let mut message = decision.message();
        if !fetching.is_empty() {
            message.push_str(&format!(
                " binauthz is fetching this image's signatures from {} now; retry in a few seconds.",
                fetching.join(", ")
            ));
        }
        tracing::info!(%message, "denied");
        let status = Status::failure(&message, VIOLATES_POLICY)
            .with_code(400)
            .with_details(StatusDetails {
                name: String::new(),
                group: String::new(),
                kind: kind.as_str().to_owned(),
                uid: String::new(),
                causes,
                retry_after_seconds: 0,
            });
        let notice = regarding.map(|regarding| Notice {
            reason: NoticeReason::Denied,
            regarding,
            note: message,
        });
        return cx.answer(
            ResponseOut {
                uid: cx.uid.clone(),
                allowed: false,
                status: Some(status),
                warnings,
                audit_annotations,
            },
            AdmissionResult::Denied,
            notice,
        );
    }
    let (result, notice) = if decision.breakglass {
        let overridden = if decision.denials.is_empty() {
            "nothing would have been denied".to_owned()
        } else {
            format!("would have been denied: {}", decision.message())
        };
        let note = format!(
            "{} {} broke glass (label image-policy.k8s.io/break-glass or annotation alpha.image-policy.k8s.io/break-glass) and was admitted; {overridden}",
            kind.as_str(),
            regarding
                .as_ref()
                .and_then(|r| r.name.as_deref())
                .unwrap_or_default(),
        );
        tracing::warn!(%note, "breakglass");
        (
            AdmissionResult::Breakglass,
            regarding.map(|regarding| Notice {
                reason: NoticeReason::BreakGlass,
                regarding,
                note,
            }),
        )
    } else if !decision.dry_run.is_empty() {
        tracing::info!(warnings = ?warnings, "admitted by dry run");
        (AdmissionResult::DryRun, None)
    } else {
        (AdmissionResult::Allowed, None)
    };
    cx.answer(
        ResponseOut {
            uid: cx.uid.clone(),
            allowed: true,
            status: None,
            warnings,
            audit_annotations,
        },
        result,
        notice,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{AdmissionRule, AttestationPolicySpec, EvaluationMode};
    use crate::metrics::Metrics;
    use crate::trust::TrustState;
    use std::sync::Arc;

    fn ready_index() -> Arc<Index> {
        let mut state = TrustState::new(Arc::new(Metrics::default()));
        let spec = AttestationPolicySpec {
            default_admission_rule: AdmissionRule {
                evaluation_mode: EvaluationMode::RequireAttestation,
                require_attestations_by: vec!["build".into()],
                ..AdmissionRule::default()
            },
            ..AttestationPolicySpec::default()
        };
        state.reset_policies(vec![("p".into(), Ok(spec))]);
        state.reset_namespaces(Vec::new());
        state.reset_attestors(Vec::new());
        state.reset_attestations(Vec::new());
        state.index().clone()
    }

    /// xorshift64*: enough randomness to mutate inputs, no dependency.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
        }

        fn below(&mut self, n: usize) -> usize {
            usize::try_from(self.next() % n.max(1) as u64).unwrap()
        }
    }

    #[test]
    fn mutated_reviews_never_panic() {
        let index = ready_index();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
        let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| std::fs::read(e.unwrap().path()).unwrap())
            .collect();
        seeds.sort();
        assert!(seeds.len() > 20);
        let interesting: &[&[u8]] = &[
            b"null",
            b"[]",
            b"{}",
            b"\"\"",
            b"0",
            b"-1e999",
            b"true",
            b"{\"a\":",
            b"\\u0000",
            b"\xff",
            b"[[[[[[",
            b"}}}}",
            b"\"image\"",
            b"\"containers\"",
        ];
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        let mut answers = [0usize; 2];
        for round in 0..3000 {
            let mut input = seeds[round % seeds.len()].clone();
            for _ in 0..=rng.below(4) {
                let at = rng.below(input.len());
                match rng.below(4) {
                    0 => input.truncate(at),
                    1 => {
                        if let Some(b) = input.get_mut(at) {
                            *b = u8::try_from(rng.below(256)).unwrap();
                        }
                    }
                    2 => {
                        let piece = interesting[rng.below(interesting.len())];
                        input.splice(at..at, piece.iter().copied());
                    }
                    _ => {
                        let end = (at + rng.below(64)).min(input.len());
                        input.drain(at..end);
                    }
                }
            }
            match review(&index, &input, true) {
                Answer::Review(r) => {
                    answers[0] += 1;
                    // Whatever came in, what goes out is an AdmissionReview.
                    let v: Value = serde_json::from_slice(&r.body).unwrap();
                    assert_eq!(v["kind"], "AdmissionReview");
                    assert!(v["response"]["uid"].is_string());
                    assert!(v["response"]["allowed"].is_boolean());
                }
                Answer::Error(e) => {
                    answers[1] += 1;
                    assert!(e.code == 400, "{e:?}");
                    assert!(!e.message.is_empty());
                }
            }
        }
        // Both kinds of answer were exercised.
        assert!(answers[0] > 100 && answers[1] > 100, "{answers:?}");
    }

    #[test]
    fn error_bodies_are_kubernetes_statuses() {
        let e = HttpError::too_large();
        let v: Value = serde_json::from_slice(&e.to_json()).unwrap();
        assert_eq!(v["kind"], "Status");
        assert_eq!(v["code"], 413);
        assert_eq!(v["reason"], "RequestEntityTooLarge");
        let e = HttpError::unavailable("x");
        assert_eq!(e.code, 503);
        assert_eq!(e.reason, "ServiceUnavailable");
    }
}
