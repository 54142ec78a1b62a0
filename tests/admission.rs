//! The admission webhook in-process: the axum router driven with `tower::ServiceExt::oneshot`
//! and AdmissionReview fixtures from `tests/fixtures/`, for every decision path and every
//! malformed input; the admin routes; and one round trip over rustls.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use binauthz::admin::{self, Admin};
use binauthz::crd::AttestationPolicySpec;
use binauthz::events::{EventQueue, EventSink, NoticeReason};
use binauthz::metrics::{AdmissionResult, Metrics};
use binauthz::trust::watch::WatchHealth;
use binauthz::trust::{Index, Job, TrustState};
use binauthz::webhook::{self, Webhook};
use prometheus_client::registry::Registry;
use serde_json::{Value, json};
use support::signer::Signer;
use tower::ServiceExt as _;

const SIGNED: &str = "gcr.io/google-samples/hello-app@sha256:845f77fab71033404f4cfceaa1ddb27b70c3551ceb22a5e7f4498cdda6c9daea";
const UNSIGNED: &str = "gcr.io/google-samples/hello-app@sha256:1111111111111111111111111111111111111111111111111111111111111111";
const NOT_ATTESTED: &str =
    "No attestations found that were valid and signed by a key trusted by the attestor";
const TAG: &str = "Expected digest with sha256 scheme, but got tag or malformed digest";

fn install_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// The policy of every test: attestor `build` required by default; `locked` denies all;
/// `staging` only warns; the service account `default:ci` also needs `qa`; `gcr.io/allowed/**`
/// is allowlisted; namespaces labelled `binauthz.dev/governed=false` are not governed.
fn policy() -> AttestationPolicySpec {
    serde_json::from_value(json!({
        "namespaceSelector": {"matchExpressions": [
            {"key": "binauthz.dev/governed", "operator": "NotIn", "values": ["false"]}
        ]},
        "admissionWhitelistPatterns": [{"namePattern": "gcr.io/allowed/**"}],
        "defaultAdmissionRule": {
            "evaluationMode": "REQUIRE_ATTESTATION",
            "enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG",
            "requireAttestationsBy": ["build"]
        },
        "kubernetesNamespaceAdmissionRules": {
            "locked": {"evaluationMode": "ALWAYS_DENY"},
            "staging": {
                "evaluationMode": "REQUIRE_ATTESTATION",
                "enforcementMode": "DRYRUN_AUDIT_LOG_ONLY",
                "requireAttestationsBy": ["build"]
            }
        },
        "kubernetesServiceAccountAdmissionRules": {
            "default:ci": {"evaluationMode": "REQUIRE_ATTESTATION", "requireAttestationsBy": ["build", "qa"]}
        }
    }))
    .unwrap()
}

fn run_jobs(state: &mut TrustState, jobs: Vec<Job>) {
    for job in jobs {
        let outcome = job.run(jiff::Timestamp::now());
        state.complete(&job, outcome);
    }
}

struct Harness {
    router: Router,
    index: Arc<Index>,
    metrics: Arc<Metrics>,
    events: EventQueue,
}

/// A warm index (signed attestation for SIGNED by `build`), and the webhook over it.
fn harness() -> Harness {
    let signer = Signer::new();
    let metrics = Arc::new(Metrics::default());
    let mut state = TrustState::new(metrics.clone());
    state.reset_policies(vec![("main".into(), Ok(policy()))]);
    state.reset_namespaces(
        [
            ("default", None),
            ("locked", None),
            ("staging", None),
            ("sandbox", Some("false")),
        ]
        .into_iter()
        .map(|(name, governed)| {
            let mut labels = std::collections::BTreeMap::from([(
                "kubernetes.io/metadata.name".to_owned(),
                name.to_owned(),
            )]);
            if let Some(v) = governed {
                labels.insert("binauthz.dev/governed".into(), v.into());
            }
            (name.to_owned(), labels)
        })
        .collect(),
    );
    let mut jobs = state.reset_attestors(vec![
        ("build".into(), signer.attestor()),
        ("qa".into(), Signer::new().attestor()),
    ]);
    jobs.extend(state.reset_attestations(vec![
        ("default/hello".into(), signer.attest("build", SIGNED)),
        // Signed by a key `qa` does not have: never trusted.
        ("default/forged".into(), signer.attest("qa", SIGNED)),
    ]));
    run_jobs(&mut state, jobs);
    let index = state.index().clone();
    assert!(index.is_ready());
    assert_eq!(index.trust_entries(), 1);
    let (sink, events) = EventSink::channel(metrics.clone(), 16, 16);
    let router = webhook::router(Arc::new(Webhook::new(index.clone(), metrics.clone(), sink)));
    Harness {
        router,
        index,
        metrics,
        events,
    }
}

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{}/tests/fixtures/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).unwrap()
}

async fn post(router: &Router, body: impl Into<Body>) -> (StatusCode, Value) {
    let request = Request::post("/validate")
        .header(header::CONTENT_TYPE, "application/json")
        .body(body.into())
        .unwrap();
    let response = router.clone().oneshot(request).await.unwrap();
    let status = response.status();
    assert_eq!(
        response.headers().get(header::CONTENT_TYPE).unwrap(),
        "application/json"
    );
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, serde_json::from_slice(&bytes).unwrap())
}

/// Post a fixture; the answer must be an AdmissionReview echoing its uid. Returns `response`.
async fn review(h: &Harness, name: &str) -> Value {
    let (status, body) = post(&h.router, fixture(name)).await;
    assert_eq!(status, StatusCode::OK, "{name}: {body}");
    assert_eq!(body["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(body["kind"], "AdmissionReview");
    assert_eq!(
        body["response"]["uid"],
        fixture_json(name)["request"]["uid"],
        "{name}"
    );
    body["response"].clone()
}

fn assert_allowed_plain(response: &Value) {
    assert_eq!(response["allowed"], true, "{response}");
    assert!(response.get("status").is_none(), "{response}");
    assert!(response.get("warnings").is_none(), "{response}");
    assert!(response.get("auditAnnotations").is_none(), "{response}");
}

/// A denial: the exact message and the (message, field) of each cause.
fn assert_denied(response: &Value, message: &str, causes: &[(&str, &str)]) {
    assert_eq!(response["allowed"], false, "{response}");
    let status = &response["status"];
    assert_eq!(status["code"], 400);
    assert_eq!(status["status"], "Failure");
    assert_eq!(status["reason"], "VIOLATES_POLICY");
    assert_eq!(status["message"], message);
    let got: Vec<(String, String)> = status["details"]["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            assert_eq!(c["reason"], "FieldValueForbidden");
            (
                c["message"].as_str().unwrap().to_owned(),
                c["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let want: Vec<(String, String)> = causes
        .iter()
        .map(|(m, f)| ((*m).to_owned(), (*f).to_owned()))
        .collect();
    assert_eq!(got, want);
}

fn denied_by_attestor(image: &str, rule: &str, attestor: &str, why: &str) -> String {
    format!(
        "Image {image} denied by Binary Authorization {rule} of policy main. Image {image} denied by attestor {attestor}: {why}"
    )
}

// ---------------------------------------------------------------- decisions

#[tokio::test]
async fn attested_digest_is_allowed() {
    let mut h = harness();
    assert_allowed_plain(&review(&h, "pod_signed.json").await);
    assert!(
        h.events.try_recv().is_none(),
        "no Event for a plain admission"
    );
    assert_eq!(h.metrics.decisions(AdmissionResult::Allowed), 1);
}

#[tokio::test]
async fn tag_under_require_attestation_is_denied_with_googles_message() {
    let mut h = harness();
    let response = review(&h, "pod_tag.json").await;
    let message = denied_by_attestor("nginx", "default admission rule", "build", TAG);
    assert_denied(
        &response,
        &message,
        &[(
            &format!("'nginx' : Image nginx denied by attestor build: {TAG}"),
            "spec.containers[0].image",
        )],
    );
    assert!(response.get("warnings").is_none());
    let notice = h.events.try_recv().unwrap();
    assert_eq!(notice.reason, NoticeReason::Denied);
    assert_eq!(notice.note, message);
    assert_eq!(notice.regarding.kind.as_deref(), Some("Pod"));
    assert_eq!(notice.regarding.api_version.as_deref(), Some("v1"));
    assert_eq!(notice.regarding.name.as_deref(), Some("hello-world"));
    assert_eq!(notice.regarding.namespace.as_deref(), Some("default"));
    assert_eq!(h.metrics.decisions(AdmissionResult::Denied), 1);
}

#[tokio::test]
async fn unattested_digest_is_denied() {
    let h = harness();
    let response = review(&h, "pod_unsigned_digest.json").await;
    assert_denied(
        &response,
        &denied_by_attestor(UNSIGNED, "default admission rule", "build", NOT_ATTESTED),
        &[(
            &format!("'{UNSIGNED}' : Image {UNSIGNED} denied by attestor build: {NOT_ATTESTED}"),
            "spec.containers[0].image",
        )],
    );
}

#[tokio::test]
async fn always_deny_denies_even_an_attested_digest() {
    let h = harness();
    let response = review(&h, "pod_always_deny.json").await;
    assert_denied(
        &response,
        &format!(
            "Image {SIGNED} denied by Binary Authorization namespace admission rule for locked of policy main. Denied by always_deny admission rule"
        ),
        &[(
            &format!("'{SIGNED}' : Denied by an ALWAYS_DENY admission rule"),
            "spec.containers[0].image",
        )],
    );
}

#[tokio::test]
async fn the_most_specific_rule_wins_service_account_over_default() {
    let h = harness();
    // `qa` has an attestation for SIGNED, but signed with another key: it does not count.
    let response = review(&h, "pod_service_account_rule.json").await;
    assert_denied(
        &response,
        &denied_by_attestor(
            SIGNED,
            "service account admission rule for default:ci",
            "qa",
            NOT_ATTESTED,
        ),
        &[(
            &format!("'{SIGNED}' : Image {SIGNED} denied by attestor qa: {NOT_ATTESTED}"),
            "spec.containers[0].image",
        )],
    );
}

#[tokio::test]
async fn allowlisted_image_is_allowed_even_by_tag() {
    let h = harness();
    assert_allowed_plain(&review(&h, "pod_allowlisted.json").await);
}

#[tokio::test]
async fn ungoverned_namespace_is_allowed() {
    let h = harness();
    assert_allowed_plain(&review(&h, "pod_ungoverned_namespace.json").await);
    // An exempt namespace never reaches the webhook; one the policy does not select is
    // admitted here. A namespace not seen yet (created a moment before its pod) is never taken
    // for ungoverned: the policy selects by label, so after waiting for the namespace watch the
    // webhook refuses, asking to retry.
    let mut body = fixture_json("pod_ungoverned_namespace.json");
    body["request"]["namespace"] = json!("brand-new");
    let started = std::time::Instant::now();
    let (status, body) = post(&h.router, body.to_string()).await;
    assert!(started.elapsed() >= webhook::NAMESPACE_WAIT);
    assert_eq!(status, StatusCode::OK);
    let response = &body["response"];
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 503);
    assert_eq!(response["status"]["reason"], "ServiceUnavailable");
    assert_eq!(response["status"]["details"]["retryAfterSeconds"], 1);
    assert_eq!(
        response["status"]["message"],
        "binauthz cannot judge this request yet: namespace brand-new is not known, and policy main selects namespaces by label, so whether it governs brand-new cannot be told; retry in a moment"
    );
}

#[tokio::test]
async fn dry_run_rule_admits_with_warnings_and_audit_annotations() {
    let mut h = harness();
    let response = review(&h, "pod_dry_run.json").await;
    assert_eq!(response["allowed"], true);
    assert!(response.get("status").is_none());
    let message = denied_by_attestor(
        "nginx",
        "namespace admission rule for staging",
        "build",
        TAG,
    );
    assert_eq!(
        response["warnings"],
        json!([format!("dry run: Image nginx would be denied: {message}")])
    );
    assert_eq!(
        response["auditAnnotations"],
        json!({
            "dry-run": "true",
            "overridden-verification-result": format!("'nginx' : Image nginx denied by attestor build: {TAG}\n"),
        })
    );
    assert!(h.events.try_recv().is_none(), "dry run sends no Event");
    assert_eq!(h.metrics.decisions(AdmissionResult::DryRun), 1);
}

#[tokio::test]
async fn breakglass_label_and_annotation_admit_audit_and_announce() {
    for name in [
        "pod_breakglass_label.json",
        "pod_breakglass_annotation.json",
    ] {
        let mut h = harness();
        let response = review(&h, name).await;
        assert_eq!(response["allowed"], true, "{name}");
        let message = denied_by_attestor("nginx", "default admission rule", "build", TAG);
        assert_eq!(
            response["warnings"],
            json!([format!(
                "break glass: Image nginx would be denied: {message}"
            )]),
            "{name}"
        );
        assert_eq!(
            response["auditAnnotations"],
            json!({
                "break-glass": "true",
                "overridden-verification-result": format!("'nginx' : Image nginx denied by attestor build: {TAG}\n"),
            }),
            "{name}"
        );
        let notice = h.events.try_recv().unwrap();
        assert_eq!(notice.reason, NoticeReason::BreakGlass);
        assert_eq!(notice.regarding.name.as_deref(), Some("emergency"));
        assert!(
            notice
                .note
                .starts_with("Pod emergency broke glass (label image-policy.k8s.io/break-glass"),
            "{}",
            notice.note
        );
        assert!(notice.note.ends_with(&message), "{}", notice.note);
        assert_eq!(h.metrics.decisions(AdmissionResult::Breakglass), 1);
    }
}

#[tokio::test]
async fn init_containers_are_checked() {
    let h = harness();
    let response = review(&h, "pod_init_unsigned.json").await;
    assert_denied(
        &response,
        &denied_by_attestor("busybox:1.36", "default admission rule", "build", TAG),
        &[(
            &format!("'busybox:1.36' : Image busybox:1.36 denied by attestor build: {TAG}"),
            "spec.initContainers[0].image",
        )],
    );
}

#[tokio::test]
async fn ephemeral_containers_subresource_is_checked() {
    let h = harness();
    let response = review(&h, "pod_ephemeral_containers.json").await;
    assert_denied(
        &response,
        &denied_by_attestor("busybox:1.36", "default admission rule", "build", TAG),
        &[(
            &format!("'busybox:1.36' : Image busybox:1.36 denied by attestor build: {TAG}"),
            "spec.ephemeralContainers[0].image",
        )],
    );
}

#[tokio::test]
async fn every_workload_kind_is_checked_at_apply_time() {
    let h = harness();
    for (file, kind, field) in [
        (
            "deployment_unsigned.json",
            "Deployment",
            "spec.template.spec.containers[0].image",
        ),
        (
            "replicaset_unsigned.json",
            "ReplicaSet",
            "spec.template.spec.containers[0].image",
        ),
        (
            "statefulset_unsigned.json",
            "StatefulSet",
            "spec.template.spec.containers[0].image",
        ),
        (
            "daemonset_unsigned.json",
            "DaemonSet",
            "spec.template.spec.containers[0].image",
        ),
        (
            "job_unsigned.json",
            "Job",
            "spec.template.spec.containers[0].image",
        ),
        (
            "cronjob_unsigned.json",
            "CronJob",
            "spec.jobTemplate.spec.template.spec.containers[0].image",
        ),
        (
            "replicationcontroller_unsigned.json",
            "ReplicationController",
            "spec.template.spec.containers[0].image",
        ),
    ] {
        let response = review(&h, file).await;
        assert_denied(
            &response,
            &denied_by_attestor(UNSIGNED, "default admission rule", "build", NOT_ATTESTED),
            &[(
                &format!(
                    "'{UNSIGNED}' : Image {UNSIGNED} denied by attestor build: {NOT_ATTESTED}"
                ),
                field,
            )],
        );
        assert_eq!(response["status"]["details"]["kind"], kind, "{file}");
    }
    assert_allowed_plain(&review(&h, "deployment_signed.json").await);
}

#[tokio::test]
async fn update_with_unchanged_images_is_admitted() {
    let h = harness();
    // A label edit on a pod whose image the policy refuses, and a scale-down.
    assert_allowed_plain(&review(&h, "pod_update_same_images.json").await);
    assert_allowed_plain(&review(&h, "deployment_update_same_images.json").await);
    // A new image is judged.
    let response = review(&h, "pod_update_new_image.json").await;
    assert_denied(
        &response,
        &denied_by_attestor("nginx:1.27", "default admission rule", "build", TAG),
        &[(
            &format!("'nginx:1.27' : Image nginx:1.27 denied by attestor build: {TAG}"),
            "spec.containers[0].image",
        )],
    );
}

/// KEP-4639 image volumes: an OCI image mounted into the pod, whose files its containers can
/// run. Without this check, a pod whose only container is signed could execute anything.
#[tokio::test]
async fn image_volumes_are_judged_like_containers() {
    let h = harness();
    let evil = "docker.io/attacker/evil:latest";
    let message = format!(
        "volume payload: {}",
        denied_by_attestor(evil, "default admission rule", "build", TAG)
    );
    let cause = format!("volume payload: '{evil}' : Image {evil} denied by attestor build: {TAG}");
    assert_denied(
        &review(&h, "pod_image_volume_unsigned.json").await,
        &message,
        &[(&cause, "spec.volumes[0].image.reference")],
    );
    assert_denied(
        &review(&h, "deployment_image_volume_unsigned.json").await,
        &message,
        &[(&cause, "spec.template.spec.volumes[0].image.reference")],
    );
    // The UPDATE shortcut (same images: admitted unjudged) counts volume images too.
    assert_denied(
        &review(&h, "pod_update_image_volume.json").await,
        &message,
        &[(&cause, "spec.volumes[0].image.reference")],
    );
    // Signed by digest, an image volume is admitted like a container.
    let mut body = fixture_json("pod_image_volume_unsigned.json");
    body["request"]["object"]["spec"]["volumes"][0]["image"]["reference"] = json!(SIGNED);
    let (status, body) = post(&h.router, body.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_allowed_plain(&body["response"]);
}

#[tokio::test]
async fn other_kinds_and_operations_are_admitted() {
    let h = harness();
    assert_allowed_plain(&review(&h, "configmap.json").await);
    assert_allowed_plain(&review(&h, "pod_delete.json").await);
    // A status update never changes images.
    let mut body = fixture_json("pod_tag.json");
    body["request"]["subResource"] = json!("status");
    body["request"]["operation"] = json!("UPDATE");
    let (status, body) = post(&h.router, body.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_allowed_plain(&body["response"]);
}

#[tokio::test]
async fn server_side_dry_run_is_judged_but_sends_no_event() {
    let mut h = harness();
    let response = review(&h, "pod_server_dry_run.json").await;
    assert_eq!(response["allowed"], false);
    assert!(h.events.try_recv().is_none());
}

#[tokio::test]
async fn status_forged_on_an_attestation_gains_nothing() {
    // The harness holds an attestation by `qa` whose signature does not verify; whatever its
    // status says, the index never trusts it (status is not even read).
    let h = harness();
    let digest = binauthz::image::Digest::parse(SIGNED.split_once('@').unwrap().1).unwrap();
    assert!(h.index.is_attested("build", &digest));
    assert!(!h.index.is_attested("qa", &digest));
    assert!(!h.index.is_trusted("default/forged"));
}

// ---------------------------------------------------------------- malformed input

async fn assert_http_error(
    router: &Router,
    body: impl Into<Body>,
    code: StatusCode,
    message: &str,
) {
    let (status, body) = post(router, body).await;
    assert_eq!(status, code, "{body}");
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["apiVersion"], "v1");
    assert_eq!(body["status"], "Failure");
    assert_eq!(body["code"], code.as_u16());
    assert_eq!(body["message"], message, "{body}");
}

#[tokio::test]
async fn empty_body_is_a_bad_request() {
    let h = harness();
    for body in ["", "  \n"] {
        assert_http_error(
            &h.router,
            body,
            StatusCode::BAD_REQUEST,
            "empty request body; POST an AdmissionReview (admission.k8s.io/v1) as JSON",
        )
        .await;
    }
    assert_eq!(h.metrics.decisions(AdmissionResult::Error), 2);
}

#[tokio::test]
async fn not_json_is_a_bad_request() {
    let h = harness();
    assert_http_error(
        &h.router,
        "{not json",
        StatusCode::BAD_REQUEST,
        "request body is not valid JSON: key must be a string at line 1 column 2",
    )
    .await;
    assert_http_error(
        &h.router,
        r#"{"kind": "AdmissionReview"} trailing"#,
        StatusCode::BAD_REQUEST,
        "request body is not valid JSON: trailing characters at line 1 column 29",
    )
    .await;
    assert_http_error(
        &h.router,
        vec![0xff, 0xfe, 0x00],
        StatusCode::BAD_REQUEST,
        "request body is not valid JSON: expected value at line 1 column 1",
    )
    .await;
}

#[tokio::test]
async fn json_that_is_not_an_admission_review_is_a_bad_request() {
    let h = harness();
    assert_http_error(
        &h.router,
        fixture("not_a_review.json"),
        StatusCode::BAD_REQUEST,
        "request body is not an AdmissionReview (admission.k8s.io/v1): apiVersion is \"v1\"",
    )
    .await;
    assert_http_error(
        &h.router,
        "[1, 2]",
        StatusCode::BAD_REQUEST,
        "request body is not an AdmissionReview (admission.k8s.io/v1): it is a JSON list, not an object",
    )
    .await;
    assert_http_error(
        &h.router,
        "42",
        StatusCode::BAD_REQUEST,
        "request body is not an AdmissionReview (admission.k8s.io/v1): .: invalid type: integer `42`, expected struct ReviewIn at line 1 column 2",
    )
    .await;
    assert_http_error(
        &h.router,
        r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": 5}}"#,
        StatusCode::BAD_REQUEST,
        "request body is not an AdmissionReview (admission.k8s.io/v1): request.uid: invalid type: integer `5`, expected a string at line 1 column 85",
    )
    .await;
    assert_http_error(
        &h.router,
        r#"{"apiVersion": "admission.k8s.io/v1", "kind": "Pod"}"#,
        StatusCode::BAD_REQUEST,
        "request body is not an AdmissionReview (admission.k8s.io/v1): kind is \"Pod\"",
    )
    .await;
    assert_http_error(
        &h.router,
        r#"{"kind": "AdmissionReview"}"#,
        StatusCode::BAD_REQUEST,
        "request body is not an AdmissionReview (admission.k8s.io/v1): apiVersion is missing",
    )
    .await;
}

#[tokio::test]
async fn review_without_request_or_uid_is_a_bad_request() {
    let h = harness();
    assert_http_error(
        &h.router,
        fixture("review_without_request.json"),
        StatusCode::BAD_REQUEST,
        "AdmissionReview has no request; the API server sends one in every review",
    )
    .await;
    assert_http_error(
        &h.router,
        fixture("review_without_uid.json"),
        StatusCode::BAD_REQUEST,
        "AdmissionReview request.uid is missing; the response must echo it",
    )
    .await;
}

/// A review whose uid is readable but whose object is unusable is refused in an
/// AdmissionResponse (the API server shows the message).
async fn assert_invalid(h: &Harness, name: &str, message: &str) {
    let response = review(h, name).await;
    assert_eq!(response["allowed"], false);
    assert_eq!(response["status"]["code"], 400);
    assert_eq!(response["status"]["reason"], "BadRequest");
    assert_eq!(response["status"]["message"], message);
}

#[tokio::test]
async fn object_missing_is_refused() {
    let h = harness();
    assert_invalid(
        &h,
        "pod_without_object.json",
        "binauthz cannot judge this request: request.object is missing; a Pod CREATE carries the object",
    )
    .await;
    assert_eq!(h.metrics.decisions(AdmissionResult::Error), 1);
}

#[tokio::test]
async fn containers_not_a_list_is_refused() {
    let h = harness();
    assert_invalid(
        &h,
        "pod_containers_not_a_list.json",
        "binauthz cannot judge this request: request.object.spec.containers must be a list of containers, found an object",
    )
    .await;
}

#[tokio::test]
async fn object_that_is_not_an_object_is_refused() {
    let h = harness();
    let mut body = fixture_json("pod_tag.json");
    body["request"]["object"] = json!(["nginx"]);
    let (status, body) = post(&h.router, body.to_string()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["allowed"], false);
    assert_eq!(
        body["response"]["status"]["message"],
        "binauthz cannot judge this request: request.object must be an object, found a list"
    );
}

#[tokio::test]
async fn bodies_over_3_mib_are_refused_with_413() {
    let h = harness();
    let message =
        "AdmissionReview body is larger than 3145728 bytes (3 MiB); binauthz does not read it";
    // Declared too large.
    let big = vec![b' '; 3 * 1024 * 1024 + 1];
    assert_http_error(&h.router, big, StatusCode::PAYLOAD_TOO_LARGE, message).await;
    // Streamed without a length: refused once the limit is passed.
    let chunks = (0..4).map(|_| Ok::<_, std::io::Error>(vec![b' '; 1024 * 1024]));
    let streamed = Body::from_stream(futures::stream::iter(chunks));
    assert_http_error(&h.router, streamed, StatusCode::PAYLOAD_TOO_LARGE, message).await;
    // Exactly 3 MiB is read (and is then judged on its content).
    let mut padded = fixture("pod_signed.json");
    padded.resize(3 * 1024 * 1024, b' ');
    let (status, body) = post(&h.router, padded).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["allowed"], true);
}

#[tokio::test]
async fn deeply_nested_json_is_refused_without_a_crash() {
    let h = harness();
    let depth = 100_000;
    let mut nested = String::from(
        r#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": {"uid": "u", "object": "#,
    );
    nested.push_str(&"[".repeat(depth));
    nested.push_str(&"]".repeat(depth));
    nested.push_str("}}");
    let (status, body) = post(&h.router, nested).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.starts_with(
            "request body is not valid JSON: recursion limit exceeded at line 1 column"
        ),
        "{message}"
    );
}

#[tokio::test]
async fn a_cold_index_answers_503_instead_of_guessing() {
    let metrics = Arc::new(Metrics::default());
    let mut state = TrustState::new(metrics.clone());
    state.reset_policies(vec![("main".into(), Ok(policy()))]);
    let router = webhook::router(Arc::new(Webhook::new(
        state.index().clone(),
        metrics.clone(),
        EventSink::disabled(metrics.clone()),
    )));
    assert_http_error(
        &router,
        fixture("pod_signed.json"),
        StatusCode::SERVICE_UNAVAILABLE,
        "binauthz trust index not ready: waiting for the initial list of attestors, imageattestations, namespaces and 0 signature verifications; retry in a few seconds",
    )
    .await;
    // Objects that need no decision are still answered.
    let (status, body) = post(&router, fixture("configmap.json")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["response"]["allowed"], true);
    assert_eq!(metrics.decisions(AdmissionResult::Error), 1);
}

#[tokio::test]
async fn only_post_validate_is_served() {
    let h = harness();
    let get = Request::get("/validate").body(Body::empty()).unwrap();
    let response = h.router.clone().oneshot(get).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
    let other = Request::post("/mutate").body(Body::empty()).unwrap();
    let response = h.router.clone().oneshot(other).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
}

// ---------------------------------------------------------------- admin

async fn get_text(router: &Router, path: &str) -> (StatusCode, String) {
    let response = router
        .clone()
        .oneshot(Request::get(path).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .unwrap();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

#[tokio::test]
async fn admin_reports_readiness_liveness_and_metrics() {
    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let mut state = TrustState::new(metrics.clone());
    let tls = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let health = Arc::new(WatchHealth::running());
    let admin_router = admin::router(Arc::new(Admin {
        index: state.index().clone(),
        health,
        tls_loaded: {
            let tls = tls.clone();
            Arc::new(move || tls.load(std::sync::atomic::Ordering::Acquire))
        },
        registry: Arc::new(registry),
        failing_limit: std::time::Duration::from_secs(600),
    }));
    let (status, body) = get_text(&admin_router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        body,
        "not ready: binauthz trust index not ready: waiting for the initial list of attestors, imageattestations, attestationpolicies, namespaces and 0 signature verifications; retry in a few seconds; no TLS serving certificate loaded yet\n"
    );
    let (status, body) = get_text(&admin_router, "/livez").await;
    assert_eq!(status, StatusCode::OK);
    assert!(body.starts_with("ok\nattestors: no event yet\n"), "{body}");

    // Synced with one verified attestation, certificate loaded.
    let signer = Signer::new();
    state.reset_policies(vec![("main".into(), Ok(policy()))]);
    state.reset_namespaces(vec![("default".into(), Default::default())]);
    let mut jobs = state.reset_attestors(vec![("build".into(), signer.attestor())]);
    jobs.extend(
        state.reset_attestations(vec![("default/a".into(), signer.attest("build", SIGNED))]),
    );
    run_jobs(&mut state, jobs);
    let (status, body) = get_text(&admin_router, "/readyz").await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(body, "not ready: no TLS serving certificate loaded yet\n");
    tls.store(true, std::sync::atomic::Ordering::Release);
    let (status, body) = get_text(&admin_router, "/readyz").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, "ok: 1 trusted attestations, 1 policies\n");

    let router = webhook::router(Arc::new(Webhook::new(
        state.index().clone(),
        metrics.clone(),
        EventSink::disabled(metrics.clone()),
    )));
    post(&router, fixture("pod_signed.json")).await;
    post(&router, fixture("pod_tag.json")).await;
    post(&router, "").await;
    let (status, text) = get_text(&admin_router, "/metrics").await;
    assert_eq!(status, StatusCode::OK);
    for line in [
        "binauthz_admission_decisions_total{result=\"allowed\"} 1",
        "binauthz_admission_decisions_total{result=\"denied\"} 1",
        "binauthz_admission_decisions_total{result=\"error\"} 1",
        "binauthz_admission_decisions_total{result=\"dry_run\"} 0",
        "binauthz_admission_decisions_total{result=\"breakglass\"} 0",
        "binauthz_admission_duration_seconds_count 3",
        "binauthz_trust_index_entries 1",
        "binauthz_verifications_total{result=\"verified\"} 1",
        "binauthz_verifications_total{result=\"failed\"} 0",
        "# EOF",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
    }
}

// ---------------------------------------------------------------- TLS

#[tokio::test]
async fn the_webhook_answers_over_rustls() {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    install_provider();
    let h = harness();
    let (material, config) = support::tls::loopback_tls();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(webhook::server::serve_tls(
        listener,
        Arc::new(config),
        h.router.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_slice_iter(material.ca_bundle_pem.as_bytes()) {
        roots.add(ca.unwrap()).unwrap();
    }
    let client = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let mut tls = connector
        .connect("127.0.0.1".try_into().unwrap(), tcp)
        .await
        .unwrap();
    let body = fixture("pod_tag.json");
    let head = format!(
        "POST /validate HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body).await.unwrap();
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8(response).unwrap();
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    let json: Value = serde_json::from_str(response.split("\r\n\r\n").nth(1).unwrap()).unwrap();
    assert_eq!(json["response"]["allowed"], false);
    assert_eq!(json["response"]["status"]["reason"], "VIOLATES_POLICY");
    let _ = stop.send(());
    server.await.unwrap();
}
