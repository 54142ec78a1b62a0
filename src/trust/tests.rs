//! The trust pipeline without an API server: apply/delete/reset, verification jobs, cache,
//! readiness, what is kept, reports.

use std::collections::BTreeMap;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

use super::*;
use crate::crd::{
    AdmissionRule, AttestationPolicySpec, AttestorPublicKey, AttestorSpec, EnforcementMode,
    EvaluationMode, ImageAttestationSpec, PkixPublicKey, Signature,
};
use crate::crypto::SignatureAlgorithm;
use crate::image::Digest;
use crate::metrics::Metrics;
use crate::policy::NAMESPACE_NAME_LABEL;
use crate::policy::Undecided;
use crate::policy::Workload;
use crate::verify;

/// A P-256 key generated for the test: (private PKCS#8 PEM, public SPKI PEM, key id).
pub(crate) struct TestKey {
    private_pem: String,
    public_pem: String,
    id: String,
}

impl TestKey {
    pub(crate) fn new() -> Self {
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let public_pem = pair.public_key_pem();
        let id = crate::crypto::pkix::PkixPublicKey::from_pem(
            &public_pem,
            SignatureAlgorithm::EcdsaP256Sha256,
            None,
        )
        .unwrap()
        .id()
        .to_owned();
        Self {
            private_pem: pair.serialize_pem(),
            public_pem,
            id,
        }
    }

    pub(crate) fn public_key(&self) -> AttestorPublicKey {
        AttestorPublicKey {
            pkix_public_key: Some(PkixPublicKey {
                public_key_pem: self.public_pem.clone(),
                signature_algorithm: SignatureAlgorithm::EcdsaP256Sha256,
            }),
            ..AttestorPublicKey::default()
        }
    }

    pub(crate) fn attestor(&self) -> AttestorSpec {
        AttestorSpec {
            description: None,
            public_keys: vec![self.public_key()],
            registry_signatures: None,
        }
    }

    /// An attestation by `attestor` for `artifact_url`, signed with this key.
    pub(crate) fn attest(&self, attestor: &str, artifact_url: &str) -> ImageAttestationSpec {
        let payload = crate::payload::create(artifact_url).unwrap();
        let signature = crate::crypto::pkix::sign(
            &self.private_pem,
            SignatureAlgorithm::EcdsaP256Sha256,
            &payload,
            false,
        )
        .unwrap();
        ImageAttestationSpec {
            artifact_url: artifact_url.to_owned(),
            attestor: attestor.to_owned(),
            serialized_payload: Some(STANDARD.encode(&payload)),
            signatures: vec![Signature {
                public_key_id: self.id.clone(),
                signature: STANDARD.encode(signature),
            }],
        }
    }
}

pub(crate) fn digest(c: char) -> String {
    format!("sha256:{}", c.to_string().repeat(64))
}

fn url(c: char) -> String {
    format!("gcr.io/p/app@{}", digest(c))
}

fn d(c: char) -> Digest {
    Digest::parse(&digest(c)).unwrap()
}

fn now() -> jiff::Timestamp {
    jiff::Timestamp::now()
}

/// Run every job and complete it; returns how many ran.
fn run_all(state: &mut TrustState, jobs: Vec<Job>) -> usize {
    let n = jobs.len();
    for job in jobs {
        let outcome = job.run(now());
        state.complete(&job, outcome);
    }
    n
}

fn state() -> (TrustState, Arc<Metrics>) {
    let metrics = Arc::new(Metrics::default());
    (TrustState::new(metrics.clone()), metrics)
}

/// A state with every list synced: attestor `build` with `key`, and `attestations`.
fn synced(
    key: &TestKey,
    attestations: Vec<(String, ImageAttestationSpec)>,
) -> (TrustState, Arc<Metrics>) {
    let (mut s, metrics) = state();
    s.reset_policies(Vec::new());
    s.reset_namespaces(Vec::new());
    let mut jobs = s.reset_attestors(vec![("build".to_owned(), key.attestor())]);
    jobs.extend(s.reset_attestations(attestations));
    run_all(&mut s, jobs);
    (s, metrics)
}

#[test]
fn verified_attestations_enter_the_index_and_make_it_ready() {
    let key = TestKey::new();
    let (mut s, metrics) = state();
    let index = s.index().clone();
    assert!(!index.is_ready());
    let not_ready = index.not_ready().unwrap();
    assert_eq!(
        not_ready.to_string(),
        "binauthz trust index not ready: waiting for the initial list of attestors, imageattestations, attestationpolicies, namespaces and 0 signature verifications; retry in a few seconds"
    );
    s.reset_policies(Vec::new());
    s.reset_namespaces(Vec::new());
    assert!(
        s.reset_attestors(vec![("build".into(), key.attestor())])
            .is_empty()
    );
    let jobs = s.reset_attestations(vec![("ns/a".into(), key.attest("build", &url('a')))]);
    assert_eq!(jobs.len(), 1);
    assert_eq!(s.pending(), 1);
    // Every list arrived, but the verification is still running: not ready, not trusted.
    assert!(!index.is_ready());
    assert_eq!(index.not_ready().unwrap().pending, 1);
    assert!(!index.is_attested("build", &d('a')));
    let workload = Workload::from_json(&serde_json::json!({
        "kind": "Pod", "spec": {"containers": [{"image": url('a')}]}
    }))
    .unwrap()
    .unwrap();
    assert!(index.decide(&workload).is_err());

    run_all(&mut s, jobs);
    assert_eq!(s.pending(), 0);
    assert!(index.is_ready());
    assert!(index.not_ready().is_none());
    assert!(index.is_attested("build", &d('a')));
    assert!(!index.is_attested("build", &d('b')));
    assert!(!index.is_attested("other", &d('a')));
    assert!(index.is_trusted("ns/a"));
    assert_eq!(index.trust_entries(), 1);
    assert_eq!(metrics.verifications(), (1, 0));
    assert_eq!(metrics.trust_entries(), 1);
    assert!(index.decide(&workload).unwrap().allowed);
}

/// The watches list in any order: attestations listed before their attestors wait for them,
/// content kept, and the index is not ready until they are settled.
#[test]
fn attestations_listed_before_their_attestors_wait_for_them() {
    let key = TestKey::new();
    let (mut s, _) = state();
    s.reset_policies(Vec::new());
    s.reset_namespaces(Vec::new());
    let jobs = s.reset_attestations(vec![
        ("ns/a".into(), key.attest("build", &url('a'))),
        ("ns/orphan".into(), key.attest("nobody", &url('b'))),
    ]);
    assert!(jobs.is_empty());
    assert_eq!(s.pending(), 2);
    assert!(!s.index().is_ready());
    let jobs = s.reset_attestors(vec![("build".to_owned(), key.attestor())]);
    assert_eq!(jobs.len(), 1);
    assert!(
        matches!(s.outcome("ns/orphan"), Some(Outcome::Failed(f)) if f.reason == verify::Reason::AttestorNotFound)
    );
    assert!(s.kept("ns/orphan").is_none());
    run_all(&mut s, jobs);
    assert!(s.index().is_ready());
    assert!(s.index().is_attested("build", &d('a')));
    assert!(!s.wants_relist());
}

#[test]
fn failed_verifications_stay_out_and_are_cached() {
    let key = TestKey::new();
    let other = TestKey::new();
    // Signed by a key the attestor does not have.
    let forged = other.attest("build", &url('a'));
    let (mut s, metrics) = synced(&key, vec![("ns/forged".into(), forged.clone())]);
    assert!(s.index().is_ready());
    assert!(!s.index().is_attested("build", &d('a')));
    assert_eq!(metrics.verifications(), (0, 1));
    // The same content again (a relist) is not verified again.
    assert!(
        s.reset_attestations(vec![("ns/forged".into(), forged)])
            .is_empty()
    );
    assert_eq!(metrics.verifications(), (0, 1));
}

#[test]
fn removing_an_attestor_key_flips_its_entries_out_at_once() {
    let key = TestKey::new();
    let (mut s, metrics) = synced(
        &key,
        vec![
            ("ns/a".into(), key.attest("build", &url('a'))),
            ("ns/b".into(), key.attest("build", &url('b'))),
        ],
    );
    let index = s.index().clone();
    assert!(index.is_attested("build", &d('a')) && index.is_attested("build", &d('b')));

    // The key is replaced by another: both leave the index before any job runs.
    let other = TestKey::new();
    let jobs = s.apply_attestor("build", other.attestor());
    assert_eq!(jobs.len(), 2);
    assert!(!index.is_attested("build", &d('a')));
    assert!(!index.is_attested("build", &d('b')));
    assert_eq!(index.trust_entries(), 0);
    run_all(&mut s, jobs);
    assert_eq!(index.trust_entries(), 0);
    assert_eq!(metrics.verifications(), (2, 2));

    // Back to the old key: the cache answers, nothing is verified again.
    assert!(s.apply_attestor("build", key.attestor()).is_empty());
    assert!(index.is_attested("build", &d('a')) && index.is_attested("build", &d('b')));
    assert_eq!(metrics.verifications(), (2, 2));

    // The same spec again (a relist, a status change) parses nothing and runs nothing.
    assert!(s.apply_attestor("build", key.attestor()).is_empty());

    // No key at all.
    let jobs = s.apply_attestor("build", AttestorSpec::default());
    assert!(!index.is_attested("build", &d('a')));
    run_all(&mut s, jobs);
    assert_eq!(index.trust_entries(), 0);
}

#[test]
fn deleting_an_attestor_untrusts_and_recreating_it_restores_from_cache() {
    let key = TestKey::new();
    let a = key.attest("build", &url('a'));
    let x = key.attest("missing", &url('c'));
    let (mut s, metrics) = synced(&key, vec![("ns/a".into(), a.clone())]);
    s.delete_attestor("build");
    assert!(!s.index().is_attested("build", &d('a')));
    assert_eq!(s.pending(), 0);
    assert!(s.apply_attestor("build", key.attestor()).is_empty());
    assert!(s.index().is_attested("build", &d('a')));
    assert_eq!(metrics.verifications(), (1, 0));
    // An attestation naming an attestor that does not exist is never trusted nor verified.
    assert!(s.apply_attestation("ns/x", x.clone()).is_empty());
    assert!(!s.index().is_attested("missing", &d('c')));
    // Until the attestor appears: its content was not kept (anyone can create attestations
    // for attestors that do not exist), so a re-list brings it back to be verified.
    assert!(s.apply_attestor("missing", key.attestor()).is_empty());
    assert!(s.wants_relist());
    assert!(!s.index().is_attested("missing", &d('c')));
    let jobs = s.reset_attestations(vec![("ns/a".into(), a), ("ns/x".into(), x)]);
    assert_eq!(
        jobs.len(),
        1,
        "only the attestation whose content was needed"
    );
    assert!(!s.wants_relist());
    run_all(&mut s, jobs);
    assert!(s.index().is_attested("missing", &d('c')));
}

#[test]
fn updating_an_attestation_replaces_what_it_vouched_for() {
    let key = TestKey::new();
    let (mut s, _) = synced(&key, vec![("ns/a".into(), key.attest("build", &url('a')))]);
    let index = s.index().clone();
    let jobs = s.apply_attestation("ns/a", key.attest("build", &url('b')));
    // The old digest leaves at once; the new one only once verified.
    assert!(!index.is_attested("build", &d('a')));
    assert!(!index.is_attested("build", &d('b')));
    run_all(&mut s, jobs);
    assert!(!index.is_attested("build", &d('a')));
    assert!(index.is_attested("build", &d('b')));
    assert_eq!(index.trust_entries(), 1);

    // An update to content that does not verify removes it.
    let mut broken = key.attest("build", &url('c'));
    broken.artifact_url = url('d');
    let jobs = s.apply_attestation("ns/a", broken);
    run_all(&mut s, jobs);
    assert_eq!(index.trust_entries(), 0);
    assert!(!index.is_attested("build", &d('c')) && !index.is_attested("build", &d('d')));

    // Moving an attestation to another attestor.
    let jobs = s.apply_attestation("ns/a", key.attest("build", &url('e')));
    run_all(&mut s, jobs);
    assert!(s.apply_attestor("qa", key.attestor()).is_empty());
    let jobs = s.apply_attestation("ns/a", key.attest("qa", &url('e')));
    run_all(&mut s, jobs);
    assert!(index.is_attested("qa", &d('e')));
    assert!(!index.is_attested("build", &d('e')));
    // Changing build's keys no longer touches it.
    assert!(
        s.apply_attestor("build", AttestorSpec::default())
            .is_empty()
    );
    assert!(index.is_attested("qa", &d('e')));
}

#[test]
fn a_job_for_old_content_does_not_apply() {
    let key = TestKey::new();
    let (mut s, _) = synced(&key, Vec::new());
    let old = s.apply_attestation("ns/a", key.attest("build", &url('a')));
    let new = s.apply_attestation("ns/a", key.attest("build", &url('b')));
    assert_eq!(s.pending(), 1);
    // The job for the first content finishes last... first: it must not be applied.
    run_all(&mut s, old);
    assert!(!s.index().is_attested("build", &d('a')));
    assert_eq!(s.pending(), 1);
    run_all(&mut s, new);
    assert!(s.index().is_attested("build", &d('b')));
    assert_eq!(s.pending(), 0);
    // A job whose attestation was deleted meanwhile does nothing either.
    let jobs = s.apply_attestation("ns/c", key.attest("build", &url('c')));
    s.delete_attestation("ns/c");
    assert_eq!(s.pending(), 0);
    run_all(&mut s, jobs);
    assert!(!s.index().is_attested("build", &d('c')));
}

#[test]
fn relist_removes_what_vanished_and_verifies_nothing_unchanged() {
    let key = TestKey::new();
    let a = key.attest("build", &url('a'));
    let b = key.attest("build", &url('b'));
    let (mut s, metrics) = synced(&key, vec![("ns/a".into(), a.clone()), ("ns/b".into(), b)]);
    assert_eq!(s.index().trust_entries(), 2);
    // The watch restarts; b was deleted meanwhile, c created.
    let jobs = s.reset_attestations(vec![
        ("ns/a".into(), a),
        ("ns/c".into(), key.attest("build", &url('c'))),
    ]);
    assert_eq!(jobs.len(), 1, "only the new attestation is verified");
    run_all(&mut s, jobs);
    let index = s.index();
    assert!(index.is_attested("build", &d('a')));
    assert!(!index.is_attested("build", &d('b')));
    assert!(index.is_attested("build", &d('c')));
    assert_eq!(metrics.verifications(), (3, 0));
    // Attestors vanish the same way.
    assert!(s.reset_attestors(Vec::new()).is_empty());
    assert_eq!(s.index().trust_entries(), 0);
    // Namespaces and policies too.
    s.reset_namespaces(vec![("a".into(), BTreeMap::new())]);
    s.apply_namespace("b", BTreeMap::from([("k".into(), "v".into())]));
    assert!(s.index().namespace_labels("b").is_some());
    s.reset_namespaces(vec![("a".into(), BTreeMap::new())]);
    assert!(s.index().namespace_labels("b").is_none());
    s.delete_namespace("a");
    assert!(s.index().namespace_labels("a").is_none());
}

#[test]
fn reverification_keeps_entries_until_it_says_otherwise_and_prunes_the_cache() {
    let key = TestKey::new();
    let a = key.attest("build", &url('a'));
    let (mut s, metrics) = synced(&key, vec![("ns/a".into(), a.clone())]);
    // An unreferenced cache entry (from a former attestor spec).
    let other = TestKey::new();
    let jobs = s.apply_attestor("build", other.attestor());
    run_all(&mut s, jobs);
    assert!(s.apply_attestor("build", key.attestor()).is_empty());
    assert_eq!(s.cached(), 2);
    // Trusted again from the cache; its content (dropped when it failed) comes back with a
    // re-list, for later re-verifications.
    assert!(s.index().is_attested("build", &d('a')));
    assert!(s.wants_relist());
    assert!(s.reset_attestations(vec![("ns/a".into(), a)]).is_empty());
    assert!(!s.wants_relist());
    let jobs = s.reverify_all();
    assert_eq!(jobs.len(), 1);
    assert_eq!(
        s.cached(),
        1,
        "the cached outcome for the other key is forgotten"
    );
    assert!(s.index().is_attested("build", &d('a')));
    assert_eq!(
        s.pending(),
        0,
        "re-verification does not make the index unready"
    );
    run_all(&mut s, jobs);
    assert!(s.index().is_attested("build", &d('a')));
    assert_eq!(metrics.verifications(), (2, 1));
    // A re-verification that fails (simulated: a key that expired) takes the entry out.
    let jobs = s.reverify_all();
    for job in jobs {
        s.complete(
            &job,
            Err(verify::Failure {
                reason: verify::Reason::KeyExpired,
                message: "expired".into(),
            }),
        );
    }
    assert!(!s.index().is_attested("build", &d('a')));
}

/// What every replica keeps of attestations is bounded by what key holders signed: nothing of
/// one that does not verify (whatever its size), only the signature that verified of one that
/// does, and identical content once however many copies exist.
#[test]
fn only_verified_content_is_kept_and_copies_share_it() {
    let key = TestKey::new();
    let stranger = TestKey::new();
    let signed = key.attest("build", &url('a'));
    // A verified attestation padded with junk signatures, copied under many names.
    let mut padded = signed.clone();
    padded.signatures.insert(
        0,
        Signature {
            public_key_id: "junk".into(),
            signature: "A".repeat(20 * 1024),
        },
    );
    let mut all: Vec<(String, ImageAttestationSpec)> = (0..50)
        .map(|i| (format!("ns/copy-{i}"), padded.clone()))
        .collect();
    // Attestations that fail, and ones naming an attestor that does not exist.
    all.extend((0..50).map(|i| {
        let mut forged = stranger.attest("build", &url('b'));
        forged.serialized_payload = Some(format!("{}{i}", "A".repeat(20 * 1024)));
        (format!("ns/forged-{i}"), forged)
    }));
    all.extend((0..50).map(|i| {
        (
            format!("ns/orphan-{i}"),
            key.attest(&format!("none-{i}"), &url('c')),
        )
    }));
    let (s, _) = synced(&key, all);
    assert_eq!(s.index().trust_entries(), 50);
    assert_eq!(s.held_specs(), 1, "50 copies, one kept content");
    let kept = s.kept("ns/copy-7").unwrap();
    assert_eq!(kept.signatures.len(), 1, "only the signature that verified");
    assert_eq!(kept.signatures[0], signed.signatures[0]);
    assert!(std::ptr::eq(kept, s.kept("ns/copy-8").unwrap()), "shared");
    assert!(s.kept("ns/forged-3").is_none() && s.kept("ns/orphan-3").is_none());
    assert!(
        matches!(s.outcome("ns/forged-3"), Some(Outcome::Failed(f)) if f.reason == verify::Reason::MalformedPayload || f.reason == verify::Reason::KeyNotFound)
    );
    assert!(
        matches!(s.outcome("ns/orphan-3"), Some(Outcome::Failed(f)) if f.reason == verify::Reason::AttestorNotFound)
    );
    assert!(!s.wants_relist());
}

#[test]
fn policies_and_namespaces_are_published() {
    let (mut s, _) = state();
    let spec = AttestationPolicySpec {
        default_admission_rule: AdmissionRule {
            evaluation_mode: EvaluationMode::AlwaysAllow,
            enforcement_mode: EnforcementMode::EnforcedBlockAndAuditLog,
            require_attestations_by: Vec::new(),
        },
        ..AttestationPolicySpec::default()
    };
    s.reset_policies(vec![("b".into(), Ok(spec.clone()))]);
    s.apply_policy("a", Ok(&spec));
    let names: Vec<String> = s
        .index()
        .policies()
        .iter()
        .map(|p| p.name().to_owned())
        .collect();
    assert_eq!(names, ["a", "b"]);
    s.delete_policy("a");
    assert_eq!(s.index().policies().len(), 1);
    s.reset_namespaces(Vec::new());
    s.reset_attestors(Vec::new());
    s.reset_attestations(Vec::new());
    assert!(s.index().is_ready());

    let workload = Workload::from_json(&serde_json::json!({
        "kind": "Pod", "spec": {"containers": [{"image": "nginx"}]}
    }))
    .unwrap()
    .unwrap();
    assert!(s.index().decide(&workload).unwrap().allowed);
    // A policy that cannot be read denies everything (fail closed).
    s.apply_policy("broken", Err("unknown variant `SOMETIMES`".into()));
    let decision = s.index().decide(&workload).unwrap();
    assert!(!decision.allowed);
    assert_eq!(
        decision.message(),
        "Image nginx denied by Binary Authorization default admission rule of policy broken. The policy cannot be read (unknown variant `SOMETIMES`); it denies every image until it is fixed"
    );
}

fn in_namespace(namespace: &str) -> Workload {
    let mut workload = Workload::from_json(&serde_json::json!({
        "kind": "Pod", "spec": {"containers": [{"image": "nginx"}]}
    }))
    .unwrap()
    .unwrap();
    workload.namespace = Some(namespace.to_owned());
    workload
}

fn deny_where(selector: BTreeMap<String, String>) -> AttestationPolicySpec {
    AttestationPolicySpec {
        namespace_selector: Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector {
                match_labels: Some(selector),
                match_expressions: None,
            },
        ),
        default_admission_rule: AdmissionRule {
            evaluation_mode: EvaluationMode::AlwaysDeny,
            ..AdmissionRule::default()
        },
        ..AttestationPolicySpec::default()
    }
}

#[test]
fn unknown_namespaces_match_on_their_name_label() {
    let (mut s, _) = state();
    let by_name = deny_where(BTreeMap::from([(
        NAMESPACE_NAME_LABEL.to_owned(),
        "prod".to_owned(),
    )]));
    s.reset_policies(vec![("p".into(), Ok(by_name))]);
    s.reset_namespaces(Vec::new());
    s.reset_attestors(Vec::new());
    s.reset_attestations(Vec::new());
    assert!(!s.index().decide(&in_namespace("prod")).unwrap().allowed);
    assert!(s.index().decide(&in_namespace("dev")).unwrap().allowed);
    // A known namespace always carries its name label, as the API server sets it.
    s.apply_namespace("prod", BTreeMap::new());
    assert!(!s.index().decide(&in_namespace("prod")).unwrap().allowed);
}

/// A namespace created a moment before its pod may not have reached the index: when a policy
/// selects namespaces by other labels, it is not treated as ungoverned, but undecided.
#[tokio::test]
async fn unknown_namespaces_are_undecided_when_a_selector_reads_labels() {
    let (mut s, _) = state();
    let by_team = deny_where(BTreeMap::from([("team".to_owned(), "a".to_owned())]));
    s.reset_policies(vec![("team-a".into(), Ok(by_team))]);
    s.reset_namespaces(Vec::new());
    s.reset_attestors(Vec::new());
    s.reset_attestations(Vec::new());
    let fresh = in_namespace("fresh");
    match s.index().decide(&fresh) {
        Err(CannotDecide::Undecided(Undecided::UnknownNamespace {
            namespace,
            policies,
        })) => {
            assert_eq!(namespace, "fresh");
            assert_eq!(policies, ["team-a"]);
        }
        other => panic!("{other:?}"),
    }
    // The webhook waits for the namespace; once it arrives, the decision is made.
    let index = s.index().clone();
    let waiting = tokio::spawn(async move {
        index
            .wait_for_namespace("fresh", std::time::Duration::from_secs(5))
            .await
    });
    tokio::task::yield_now().await;
    s.apply_namespace("fresh", BTreeMap::from([("team".into(), "a".into())]));
    assert!(waiting.await.unwrap());
    assert!(!s.index().decide(&fresh).unwrap().allowed);
    assert!(
        !s.index()
            .wait_for_namespace("never", std::time::Duration::from_millis(20))
            .await
    );
}

/// Watch events, as the driver applies them.
mod watch_events {
    use super::*;
    use crate::crd::{Attestor, ImageAttestation};
    use crate::crd::{ImageAttestationStatus, conditions};
    use crate::metrics::Metrics;
    use crate::trust::watch::{Buffers, Change, handle};
    use kube::core::DeserializeGuard;
    use kube::core::ObjectMeta;
    use kube::runtime::watcher;

    fn attestation(name: &str, spec: crate::crd::ImageAttestationSpec) -> ImageAttestation {
        let mut object = ImageAttestation::new(name, spec);
        object.metadata.namespace = Some("ns".into());
        object
    }

    fn forged_status(key_id: &str) -> ImageAttestationStatus {
        ImageAttestationStatus {
            observed_generation: Some(1),
            conditions: vec![conditions::new(
                conditions::VERIFIED,
                true,
                "Verified",
                "forged",
                Some(1),
                jiff::Timestamp::now(),
            )],
            verified_key_id: Some(key_id.to_owned()),
            digest: Some(digest('a')),
        }
    }

    fn run_jobs(state: &mut TrustState, jobs: Vec<Job>) {
        for job in jobs {
            let outcome = job.run(jiff::Timestamp::now());
            state.complete(&job, outcome);
        }
    }

    fn setup(key: &TestKey) -> (TrustState, Buffers) {
        let mut state = TrustState::new(Arc::new(Metrics::default()));
        let mut buffers = Buffers::default();
        let mut attestor = Attestor::new("build", key.attestor());
        attestor.metadata.managed_fields = Some(Vec::new());
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(DeserializeGuard(Ok(attestor))),
            watcher::Event::InitDone,
        ] {
            let jobs = handle(&mut state, &mut buffers, Change::Attestor(event));
            assert!(jobs.is_empty());
        }
        (state, buffers)
    }

    #[test]
    fn status_forged_by_hand_changes_nothing() {
        let key = TestKey::new();
        let (mut state, mut buffers) = setup(&key);
        // Signed by a stranger's key, with a status claiming it verified.
        let stranger = TestKey::new();
        let mut forged = attestation(
            "forged",
            stranger.attest("build", &format!("gcr.io/p/app@{}", digest('a'))),
        );
        forged.status = Some(forged_status("whatever"));
        let jobs = handle(
            &mut state,
            &mut buffers,
            Change::Attestation(watcher::Event::Apply(DeserializeGuard(Ok(forged)))),
        );
        run_jobs(&mut state, jobs);
        let a = crate::image::Digest::parse(&digest('a')).unwrap();
        assert!(!state.index().is_attested("build", &a));
        assert!(!state.index().is_trusted("ns/forged"));

        // A genuine attestation whose status someone flips to False stays trusted, and the
        // status change alone verifies nothing.
        let genuine_spec = key.attest("build", &format!("gcr.io/p/app@{}", digest('b')));
        let genuine = attestation("genuine", genuine_spec);
        let jobs = handle(
            &mut state,
            &mut buffers,
            Change::Attestation(watcher::Event::Apply(DeserializeGuard(Ok(genuine.clone())))),
        );
        assert_eq!(jobs.len(), 1);
        run_jobs(&mut state, jobs);
        assert!(state.index().is_trusted("ns/genuine"));
        let mut flipped = genuine;
        let mut status = forged_status("x");
        status.conditions[0].status = conditions::FALSE.into();
        flipped.status = Some(status);
        let jobs = handle(
            &mut state,
            &mut buffers,
            Change::Attestation(watcher::Event::Apply(DeserializeGuard(Ok(flipped)))),
        );
        assert!(jobs.is_empty());
        assert!(state.index().is_trusted("ns/genuine"));
    }

    #[test]
    fn unreadable_objects_are_not_trusted_and_never_stall() {
        let key = TestKey::new();
        let (mut state, mut buffers) = setup(&key);
        let spec = key.attest("build", &format!("gcr.io/p/app@{}", digest('a')));
        let jobs = handle(
            &mut state,
            &mut buffers,
            Change::Attestation(watcher::Event::Apply(DeserializeGuard(Ok(attestation(
                "a", spec,
            ))))),
        );
        run_jobs(&mut state, jobs);
        assert!(state.index().is_trusted("ns/a"));
        // The same object becomes unreadable (e.g. a newer schema): it leaves the index.
        let invalid = kube::core::error_boundary::InvalidObject {
            error: "unknown field".into(),
            metadata: ObjectMeta {
                name: Some("a".into()),
                namespace: Some("ns".into()),
                ..ObjectMeta::default()
            },
        };
        let jobs = handle(
            &mut state,
            &mut buffers,
            Change::Attestation(watcher::Event::Apply(DeserializeGuard(
                Err(invalid.clone()),
            ))),
        );
        assert!(jobs.is_empty());
        assert!(!state.index().is_trusted("ns/a"));
        // An unreadable attestor vouches for nothing.
        let jobs = handle(
            &mut state,
            &mut buffers,
            Change::Attestor(watcher::Event::Apply(DeserializeGuard(Err(
                kube::core::error_boundary::InvalidObject {
                    error: "bad".into(),
                    metadata: ObjectMeta {
                        name: Some("build".into()),
                        ..ObjectMeta::default()
                    },
                },
            )))),
        );
        assert!(jobs.is_empty());
        // Relists skip unreadable objects and still finish.
        for event in [
            watcher::Event::Init,
            watcher::Event::InitApply(DeserializeGuard(Err(invalid))),
            watcher::Event::InitDone,
        ] {
            handle(&mut state, &mut buffers, Change::Attestation(event));
        }
        assert!(state.index().is_synced(Resource::ImageAttestations));
        assert!(!state.index().is_synced(Resource::Namespaces));
    }
}

/// What the leader is told: only while it reports, only what changed, settled outcomes only.
mod reports {
    use super::*;
    use crate::crd::ImageAttestationStatus;
    use crate::trust::SeenStatus;

    #[test]
    fn the_leader_hears_of_changes_and_a_standby_keeps_no_record() {
        let key = TestKey::new();
        let a = key.attest("build", &url('a'));
        let (mut s, _) = synced(&key, vec![("ns/a".into(), a.clone())]);
        // A standby: changes are not recorded.
        s.observe_attestation("ns/a", Some(1), None);
        assert!(!s.is_reporting() && !s.has_reports());
        assert!(s.reports(100, true).is_empty());

        // Leading: everything is reported once.
        s.set_reporting(true);
        let first = s.reports(100, true);
        assert_eq!(first.attestations.len(), 1);
        let report = &first.attestations[0];
        assert_eq!(
            (report.namespace.as_str(), report.name.as_str()),
            ("ns", "a")
        );
        assert_eq!(report.generation, Some(1));
        let (key_id, digest) = report.result.as_ref().unwrap();
        assert_eq!(&**key_id, key.id.as_str());
        assert_eq!(*digest, d('a'));
        assert_eq!(first.attestors.len(), 1);
        assert!(first.policies_changed);
        assert!(s.reports(100, true).is_empty(), "nothing new");

        // Someone writes a status by hand: reported, so it can be put back.
        let forged = ImageAttestationStatus {
            verified_key_id: Some("forged".into()),
            ..ImageAttestationStatus::default()
        };
        s.observe_attestation("ns/a", Some(1), Some(&forged));
        let again = s.reports(100, true);
        assert_eq!(again.attestations.len(), 1);
        assert_eq!(
            again.attestations[0].seen.map(|x| x.fingerprint),
            Some(SeenStatus::fingerprint(&forged))
        );

        // A new content is reported once it settles, not while it is verified.
        let jobs = s.apply_attestation("ns/a", key.attest("build", &url('b')));
        assert!(s.reports(100, false).attestations.is_empty(), "pending");
        run_all(&mut s, jobs);
        assert_eq!(s.reports(100, false).attestations.len(), 1);
        // Batches: the rest waits for the next call.
        s.mark_all();
        let batch = s.reports(0, false);
        assert!(batch.attestations.is_empty() && s.has_reports());

        // No longer leading: the record goes.
        s.set_reporting(false);
        assert!(!s.has_reports());
    }
}

#[test]
fn registry_settings_reverify_nothing_and_are_published_to_the_readers() {
    let key = TestKey::new();
    let url = format!("gcr.io/p/app@sha256:{}", "a".repeat(64));
    let (mut s, metrics) = synced(&key, vec![("ns/a".into(), key.attest("build", &url))]);
    let index = s.index().clone();
    assert_eq!(index.trust_entries(), 1);
    assert!(index.registry_sources().is_empty());
    let runs = metrics.verifications();
    let mut spec = key.attestor();
    spec.registry_signatures = Some(crate::crd::RegistrySignatures {
        repositories: vec![
            "registry.example.com/team/app".into(),
            "not a repository".into(),
        ],
        pull_secret: None,
        interval: Some("30s".into()),
    });
    let jobs = s.apply_attestor("build", spec);
    assert!(
        jobs.is_empty(),
        "the keys did not change: nothing to verify again"
    );
    assert_eq!(metrics.verifications(), runs);
    assert_eq!(index.trust_entries(), 1);
    s.observe_attestor("build", Some(2), Some("uid-1".into()), None);
    let sources = index.registry_sources();
    assert_eq!(sources.len(), 1);
    let source = &sources[0];
    assert_eq!(&*source.attestor, "build");
    assert_eq!(source.uid.as_deref(), Some("uid-1"));
    assert_eq!(source.repositories.len(), 1);
    assert_eq!(
        source.repositories[0].name(),
        "registry.example.com/team/app"
    );
    assert_eq!(source.invalid.len(), 1, "{:?}", source.invalid);
    assert_eq!(source.interval, std::time::Duration::from_secs(30));
    // Removing the attestor removes its source.
    s.delete_attestor("build");
    assert!(index.registry_sources().is_empty());
    assert_eq!(index.trust_entries(), 0);
}
