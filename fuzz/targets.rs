//! The bodies of the fuzz targets, one function per target, each taking arbitrary bytes. Every
//! target under `fuzz_targets/` is one line calling its function here; `tests/fuzz_replay.rs`
//! runs the same functions in `cargo test` over the seed corpora and thousands of mutations of
//! them, so CI exercises every target on each run without the nightly toolchain.
//!
//! A function panics only when binauthz breaks a promise: it must never panic on input, and the
//! assertions below state what its answers must satisfy.

#![allow(dead_code, clippy::expect_used, clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock};

use binauthz::commands::evaluate_manifests;
use binauthz::crd::{AttestationPolicySpec, AttestorPublicKey, AttestorSpec, PkixPublicKey};
use binauthz::crypto::SignatureAlgorithm;
use binauthz::crypto::pgp::PgpPublicKey;
use binauthz::crypto::pkix::PkixPublicKey as PkixKey;
use binauthz::image::{Digest, ImageRef, same_repository};
use binauthz::manifests::Manifests;
use binauthz::metrics::Metrics;
use binauthz::payload;
use binauthz::policy::{CompiledPolicy, TrustIndex, Workload, evaluate};
use binauthz::trust::{Index, TrustState};
use binauthz::verify::decode_signature;
use binauthz::webhook::admission::{Answer, review};

/// A fuzz target: any bytes in, a panic only for a broken promise.
pub type Target = fn(&[u8]);

/// Every target by name, as `fuzz/Cargo.toml` and `fuzz/corpus/` name them.
pub const ALL: [(&str, Target); 9] = [
    ("image_reference", image_reference),
    ("payload", payload),
    ("pgp_key", pgp_key),
    ("pgp_verify", pgp_verify),
    ("pkix", pkix),
    ("decode_signature", decode_signature_target),
    ("workload", workload),
    ("manifests", manifests),
    ("admission_review", admission_review),
];

const PAYLOAD: &[u8] = include_bytes!("../tests/vectors/payloads/artifact-registry.json");

/// Image references: parsing never panics; what parses normalises consistently.
pub fn image_reference(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Digest::parse(text);
    let Ok(image) = ImageRef::parse(text) else {
        assert!(
            !same_repository(text, text),
            "an invalid name equals itself: {text:?}"
        );
        return;
    };
    assert_eq!(image.as_written(), text);
    assert_eq!(
        format!("{}/{}", image.registry(), image.repository()),
        image.name(),
        "{text:?}"
    );
    assert!(
        same_repository(text, image.name()),
        "{text:?} vs {}",
        image.name()
    );
    if let Some(tag) = image.tag() {
        assert!(text.contains(tag));
    }
    if let Some(digest) = image.digest() {
        assert_eq!(Digest::parse(digest.as_str()).as_ref(), Ok(digest));
    }
    // The normalised name is itself a reference that normalises to the same name.
    let again = ImageRef::parse(image.name());
    assert_eq!(
        again.as_ref().map(ImageRef::name),
        Ok(image.name()),
        "{text:?}"
    );
}

/// Signing payloads: `payload::parse` never panics on any bytes, and for any artifact URL that
/// `create` accepts, parsing what it created gives back the same reference and digest.
pub fn payload(data: &[u8]) {
    if let Ok(parsed) = payload::parse(data) {
        let _ = parsed.payload_type.as_deref();
        let url = format!(
            "{}@{}",
            parsed.docker_reference,
            parsed.manifest_digest.as_str()
        );
        if let Ok(created) = payload::create(&url) {
            let again = payload::parse(&created).expect("a created payload parses");
            assert_eq!(again.manifest_digest, parsed.manifest_digest);
        }
    }
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((reference, digest)) = payload::split_artifact_url(url) {
        let created = payload::create(url).expect("split_artifact_url accepted it");
        let parsed = payload::parse(&created).expect("a created payload parses");
        assert_eq!(parsed.docker_reference, reference, "{url:?}");
        assert_eq!(parsed.manifest_digest, digest, "{url:?}");
    }
}

/// Armored PGP public keys: any bytes; a key that loads has a v4 fingerprint.
pub fn pgp_key(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Ok(key) = PgpPublicKey::from_armored(&text) {
        assert_eq!(key.fingerprint().len(), 40);
        let now = jiff::Timestamp::now();
        let _ = key.facts(now);
        let _ = key.facts(jiff::Timestamp::UNIX_EPOCH);
        let _ = key.verify(data, Some(b"payload"), now);
    }
}

static PGP_KEYS: LazyLock<[PgpPublicKey; 2]> = LazyLock::new(|| {
    [
        include_str!("keys/pgp-ed25519.asc"),
        include_str!("keys/pgp-rsa2048.asc"),
    ]
    .map(|armored| PgpPublicKey::from_armored(armored).expect("fixed fuzz key"))
});

/// PGP signatures (attached, detached, clearsigned, armored or binary) against fixed keys: the
/// first byte picks the key and whether a detached payload is given. The direct path accepts
/// only what sequoia's streaming verifier accepts, and `verify` answers as the latter.
pub fn pgp_verify(data: &[u8]) {
    let Some((&mode, signature)) = data.split_first() else {
        return;
    };
    let key = &PGP_KEYS[usize::from(mode & 1)];
    let payload = (mode & 2 != 0).then_some(PAYLOAD);
    let now = jiff::Timestamp::now();
    let verified = key.verify(signature, payload, now);
    let streaming = key.verify_streaming(signature, payload, now);
    assert_eq!(
        verified, streaming,
        "verify and the streaming verifier disagree"
    );
    if let Some(direct) = key.verify_direct(signature, payload, now) {
        assert_eq!(
            Ok(direct),
            streaming,
            "the direct path accepted what the streaming verifier does not"
        );
    }
    if let Ok(signed) = verified {
        // Only the holder of the secret key can get here (every seed signs PAYLOAD): what it
        // signed is returned (a cleartext signature drops the final line ending).
        assert!(
            signed == PAYLOAD || signed == PAYLOAD.trim_ascii_end(),
            "accepted data the seeds do not sign"
        );
    }
}

static PKIX_KEYS: LazyLock<Vec<PkixKey>> = LazyLock::new(|| {
    [
        (
            include_str!("keys/pkix-p256.pem"),
            SignatureAlgorithm::EcdsaP256Sha256,
        ),
        (
            include_str!("keys/pkix-rsa2048.pem"),
            SignatureAlgorithm::RsaPss2048Sha256,
        ),
        (
            include_str!("keys/pkix-rsa2048.pem"),
            SignatureAlgorithm::RsaSignPkcs12048Sha256,
        ),
        (
            include_str!("keys/pkix-ed25519.pem"),
            SignatureAlgorithm::Ed25519,
        ),
    ]
    .into_iter()
    .map(|(pem, alg)| PkixKey::from_pem(pem, alg, None).expect("fixed fuzz key"))
    .collect()
});

/// PKIX: with the top bit of the first byte set, the rest is a PEM key for the algorithm the
/// other bits pick; else it is a signature checked against a fixed key.
pub fn pkix(data: &[u8]) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 0x80 != 0 {
        let algorithm =
            SignatureAlgorithm::ALL[usize::from(mode & 0x7f) % SignatureAlgorithm::ALL.len()];
        let text = String::from_utf8_lossy(rest);
        if let Ok(key) = PkixKey::from_pem(&text, algorithm, None) {
            assert!(key.id().starts_with("ni:///sha-256;"));
            assert_eq!(key.algorithm(), algorithm);
            let _ = key.facts();
            let _ = key.verify(rest, Some(PAYLOAD));
        }
        // A custom key id is checked, never trusted blindly.
        let _ = binauthz::crypto::pkix::check_key_id(&text);
    } else {
        let key = &PKIX_KEYS[usize::from(mode) % PKIX_KEYS.len()];
        let _ = key.verify(rest, Some(PAYLOAD));
        let _ = key.verify(rest, None);
    }
}

/// The `signature` field of an attestation: armored PGP kept as is, else base64.
pub fn decode_signature_target(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(bytes) = decode_signature(text) {
        if text.trim().starts_with("-----BEGIN PGP") {
            assert_eq!(bytes, text.trim().as_bytes());
        } else {
            assert!(bytes.len() <= text.len());
        }
    }
}

const PLATFORM_POLICY: &str = r#"{"globalPolicyEvaluationMode": "ENABLE",
  "admissionWhitelistPatterns": [{"namePattern": "registry.k8s.io/**"}, {"namePattern": "docker.io/library/busybox:*"}],
  "defaultAdmissionRule": {"evaluationMode": "REQUIRE_ATTESTATION", "requireAttestationsBy": ["build"]},
  "kubernetesNamespaceAdmissionRules": {"dev": {"evaluationMode": "REQUIRE_ATTESTATION",
     "enforcementMode": "DRYRUN_AUDIT_LOG_ONLY", "requireAttestationsBy": ["projects/p/attestors/qa"]}},
  "kubernetesServiceAccountAdmissionRules": {"prod:ci": {"evaluationMode": "ALWAYS_DENY"}}}"#;
const PROD_POLICY: &str = r#"{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prod"}},
  "defaultAdmissionRule": {"evaluationMode": "REQUIRE_ATTESTATION", "requireAttestationsBy": ["build", "qa"]}}"#;

fn policy_spec(json: &str) -> AttestationPolicySpec {
    serde_json::from_str(json).expect("fixed policy")
}

static POLICIES: LazyLock<Vec<CompiledPolicy>> = LazyLock::new(|| {
    [("platform", PLATFORM_POLICY), ("prod", PROD_POLICY)]
        .into_iter()
        .map(|(name, json)| CompiledPolicy::compile(name, &policy_spec(json)))
        .collect()
});

static TRUST: LazyLock<TrustIndex> = LazyLock::new(|| {
    let mut trust = TrustIndex::new();
    for (i, c) in ['0', '1', 'a'].into_iter().enumerate() {
        let digest =
            Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).expect("digest");
        trust
            .insert("build", &digest, &format!("ci/build-{i}"))
            .expect("index");
        trust
            .insert("qa", &digest, &format!("ci/qa-{i}"))
            .expect("index");
    }
    trust
});

/// `Workload::from_json` on any JSON, then `policy::evaluate` of what it read against fixed
/// policies and a small trust index, and every message of the decision.
pub fn workload(data: &[u8]) {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(Some(mut workload)) = Workload::from_json(&value) else {
        return;
    };
    for namespace in [None, Some("prod"), Some("dev")] {
        if let Some(ns) = namespace {
            workload.namespace = Some(ns.to_owned());
        }
        let labels = BTreeMap::from([(
            "kubernetes.io/metadata.name".to_owned(),
            workload.namespace().to_owned(),
        )]);
        let decision = evaluate(&POLICIES, &labels, &workload, &*TRUST);
        let _ = (decision.message(), decision.causes(), decision.warnings());
        let _ = decision.audit_annotations();
        assert_eq!(
            decision.allowed,
            decision.denials.iter().all(|d| decision.overrides(d))
        );
    }
    for c in &workload.images {
        let _ = c.image_path();
    }
}

/// Multi-document YAML as `binauthz evaluate -f` reads it, then the offline evaluation.
pub fn manifests(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut manifests = Manifests::default();
    if manifests.add_text("fuzz.yaml", text).is_err() {
        return;
    }
    for line in evaluate_manifests(&manifests, "default", jiff::Timestamp::now()) {
        if let Ok(decision) = line.decision {
            let _ = decision.message();
        }
    }
}

/// A ready webhook index: the two fixed policies, namespaces `default`, `prod` and `dev`, and the
/// attestor `build` with a fixed PKIX key (no attestation verifies: no secret key is at hand).
static INDEX: LazyLock<Arc<Index>> = LazyLock::new(|| {
    let mut state = TrustState::new(Arc::new(Metrics::default()));
    state.reset_policies(vec![
        ("platform".into(), Ok(policy_spec(PLATFORM_POLICY))),
        ("prod".into(), Ok(policy_spec(PROD_POLICY))),
    ]);
    state.reset_namespaces(
        ["default", "prod", "dev"]
            .into_iter()
            .map(|ns| {
                (
                    ns.to_owned(),
                    BTreeMap::from([("kubernetes.io/metadata.name".to_owned(), ns.to_owned())]),
                )
            })
            .collect(),
    );
    let attestor = AttestorSpec {
        description: None,
        public_keys: vec![AttestorPublicKey {
            pkix_public_key: Some(PkixPublicKey {
                public_key_pem: include_str!("keys/pkix-p256.pem").to_owned(),
                signature_algorithm: SignatureAlgorithm::EcdsaP256Sha256,
            }),
            ..AttestorPublicKey::default()
        }],
        registry_signatures: None,
    };
    let jobs = state.reset_attestors(vec![("build".into(), attestor)]);
    assert!(jobs.is_empty(), "no attestation to verify yet");
    let jobs = state.reset_attestations(Vec::new());
    assert!(jobs.is_empty(), "no attestation to verify");
    let index = state.index().clone();
    assert!(index.is_ready(), "the fixed index is ready");
    index
});

/// One AdmissionReview body, as the webhook answers it: an HTTP error or a review whose JSON
/// parses back, echoes the request's uid and explains every denial.
pub fn admission_review(data: &[u8]) {
    match review(&INDEX, data, true) {
        Answer::Error(error) => {
            let _: serde_json::Value =
                serde_json::from_slice(&error.to_json()).expect("an error body is JSON");
        }
        Answer::Review(reviewed) => {
            let answer: serde_json::Value =
                serde_json::from_slice(&reviewed.body).expect("the review answer is JSON");
            // The handler reads only the fields it needs, so a body with, say, invalid UTF-8
            // in a part it skips is still answered; the uid check needs the whole body.
            if let Ok(request) = serde_json::from_slice::<serde_json::Value>(data) {
                assert_eq!(
                    answer["response"]["uid"], request["request"]["uid"],
                    "the answer echoes the uid"
                );
            }
            if answer["response"]["allowed"] == false {
                let message = answer["response"]["status"]["message"]
                    .as_str()
                    .unwrap_or_default();
                assert!(!message.is_empty(), "a denial says why: {answer}");
            }
        }
    }
}
