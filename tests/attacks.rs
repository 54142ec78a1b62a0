//! The attack table of DESIGN.md, with real gpg and openssl keys made here: every attack is
//! refused when the attestation is verified (`verify::verify`, with its precise reason) and when
//! a pod is judged (`policy::evaluate` over a trust index filled only from what verified).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crypto_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::json;

use binauthz::crd::{
    self, AttestationPolicySpec, AttestorPublicKey, AttestorSpec, ImageAttestationSpec,
};
use binauthz::crypto::{PublicKey, SignatureAlgorithm};
use binauthz::policy::{CompiledPolicy, Decision, TrustIndex, Workload, evaluate};
use binauthz::verify::{self, AttestorKeys, Reason};
use binauthz::{commands, manifests::Manifests, payload};
use crypto_support::{GpgHome, OpensslDir};

const APP: &str = "gcr.io/example/app";
const OTHER: &str = "gcr.io/example/other";
const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";
/// Google's text for an image no verified attestation vouches for.
const NOT_ATTESTED: &str =
    "No attestations found that were valid and signed by a key trusted by the attestor";

fn url(repo: &str, digest: &str) -> String {
    format!("{repo}@{digest}")
}

fn create_payload(artifact_url: &str) -> Vec<u8> {
    payload::create(artifact_url).unwrap()
}

/// A gpg key that signs payloads, with its armored public key.
struct PgpSigner<'h> {
    home: &'h GpgHome,
    fpr: String,
    faked_time: Option<&'static str>,
}

impl PgpSigner<'_> {
    fn sign(&self, payload: &[u8], how: &[&str]) -> Vec<u8> {
        let file = self.home.write("payload.json", payload);
        let mut args: Vec<&str> = Vec::new();
        if let Some(t) = self.faked_time {
            args.extend(["--faked-system-time", t]);
        }
        args.extend(["--local-user", &self.fpr, "--output", "-"]);
        args.extend_from_slice(how);
        args.push(&file);
        self.home.gpg(&args)
    }

    /// `gpg --armor --sign`: gcloud's documented flow, payload inside the message.
    fn attached(&self, payload: &[u8]) -> String {
        String::from_utf8(self.sign(payload, &["--armor", "--sign"])).unwrap()
    }

    /// `gpg --armor --detach-sign`.
    fn detached(&self, payload: &[u8]) -> String {
        String::from_utf8(self.sign(payload, &["--armor", "--detach-sign"])).unwrap()
    }

    fn public_key(&self) -> AttestorPublicKey {
        AttestorPublicKey {
            ascii_armored_pgp_public_key: Some(self.home.export(&self.fpr)),
            ..AttestorPublicKey::default()
        }
    }
}

/// A PKIX key made by openssl.
struct PkixSigner<'d> {
    dir: &'d OpensslDir,
    name: &'static str,
}

impl PkixSigner<'_> {
    fn new<'d>(dir: &'d OpensslDir, name: &'static str) -> PkixSigner<'d> {
        dir.genpkey(
            name,
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
        );
        PkixSigner { dir, name }
    }

    /// `openssl dgst -sha256 -sign`, base64 as stored in an attestation.
    fn sign(&self, payload: &[u8]) -> String {
        let file = self.dir.write("payload.json", payload);
        let key = self.dir.file(&format!("{}.key", self.name));
        let sig = self.dir.file("sig.bin");
        self.dir
            .openssl(&["dgst", "-sha256", "-sign", &key, "-out", &sig, &file]);
        STANDARD.encode(self.dir.read("sig.bin"))
    }

    fn pem(&self) -> String {
        self.dir.read_string(&format!("{}.pub", self.name))
    }

    fn id(&self) -> String {
        self.dir.ni_id(self.name)
    }

    fn public_key(&self) -> AttestorPublicKey {
        AttestorPublicKey {
            pkix_public_key: Some(crd::PkixPublicKey {
                public_key_pem: self.pem(),
                signature_algorithm: SignatureAlgorithm::EcdsaP256Sha256,
            }),
            ..AttestorPublicKey::default()
        }
    }
}

fn attestor(name: &str, keys: Vec<AttestorPublicKey>) -> AttestorKeys {
    AttestorKeys::load(
        name,
        &AttestorSpec {
            description: None,
            public_keys: keys,
            registry_signatures: None,
        },
    )
}

fn attestation(
    artifact_url: &str,
    attestor: &str,
    payload: Option<&[u8]>,
    key_id: &str,
    signature: &str,
) -> ImageAttestationSpec {
    ImageAttestationSpec {
        artifact_url: artifact_url.to_owned(),
        attestor: attestor.to_owned(),
        serialized_payload: payload.map(|p| STANDARD.encode(p)),
        signatures: vec![crd::Signature {
            public_key_id: key_id.to_owned(),
            signature: signature.to_owned(),
        }],
    }
}

/// Attestors by name, as the controller and the CLI look them up.
struct Attestors(BTreeMap<String, AttestorKeys>);

impl Attestors {
    fn get(&self, name: &str) -> Option<&AttestorKeys> {
        self.0.get(name)
    }

    fn verify(&self, spec: &ImageAttestationSpec) -> Result<verify::Verified, verify::Failure> {
        verify::verify(spec, self.get(&spec.attestor), jiff::Timestamp::now())
    }

    /// A trust index holding exactly the attestations that verify (keyed `namespace/name`).
    fn index(&self, attestations: &[(&str, &ImageAttestationSpec)]) -> TrustIndex {
        let mut trust = TrustIndex::new();
        for (key, spec) in attestations {
            if let Ok(verified) = self.verify(spec) {
                trust.insert(&spec.attestor, &verified.digest, key).unwrap();
            }
        }
        trust
    }
}

fn policy(require: &[&str]) -> CompiledPolicy {
    let spec: AttestationPolicySpec = serde_json::from_value(json!({
        "defaultAdmissionRule": {
            "evaluationMode": "REQUIRE_ATTESTATION",
            "enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG",
            "requireAttestationsBy": require,
        }
    }))
    .unwrap();
    CompiledPolicy::compile("policy", &spec)
}

fn pod(image: &str) -> Workload {
    Workload::from_json(&json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "victim", "namespace": "apps"},
        "spec": {"containers": [{"name": "app", "image": image}]}
    }))
    .unwrap()
    .unwrap()
}

fn decide(trust: &TrustIndex, require: &[&str], image: &str) -> Decision {
    evaluate(&[policy(require)], &BTreeMap::new(), &pod(image), trust)
}

/// One attack: the attestation an attacker presents and the reason it must fail with.
struct Attack {
    name: &'static str,
    attestation: ImageAttestationSpec,
    reason: Reason,
}

/// Refused at both levels: `verify` fails with the expected reason, and a pod running the image
/// the attestation names is denied by its attestor.
fn assert_refused(attestors: &Attestors, attack: &Attack) {
    let name = attack.name;
    match attestors.verify(&attack.attestation) {
        Ok(v) => panic!("{name}: verified with key {}", v.key_id),
        Err(failure) => assert_eq!(
            failure.reason, attack.reason,
            "{name}: wrong reason: {failure}"
        ),
    }
    let trust = attestors.index(&[("attacker/attestation", &attack.attestation)]);
    assert!(trust.is_empty(), "{name}: reached the trust index");
    let decision = decide(
        &trust,
        &[&attack.attestation.attestor],
        &attack.attestation.artifact_url,
    );
    assert!(!decision.allowed, "{name}: pod admitted");
    let message = decision.message();
    assert!(
        message.contains(&format!(
            "denied by attestor {}: {NOT_ATTESTED}",
            attack.attestation.attestor
        )),
        "{name}: {message}"
    );
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut x = seed;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// The attestor `build`'s signer: an Ed25519 key made by gpg in `home`.
fn build_signer(home: &GpgHome) -> PgpSigner<'_> {
    PgpSigner {
        fpr: home.gen_key("Build <build@example.com>", "ed25519", "sign", "1y"),
        home,
        faked_time: None,
    }
}

/// The attestors when only `build` exists, trusting `build`'s key.
fn only_build(build: &PgpSigner<'_>) -> Attestors {
    Attestors(BTreeMap::from([(
        "build".to_owned(),
        attestor("build", vec![build.public_key()]),
    )]))
}

#[test]
fn signature_attacks_are_refused() {
    let home = GpgHome::new();
    let build = build_signer(&home);
    let qa = PgpSigner {
        fpr: home.gen_key("QA <qa@example.com>", "rsa2048", "sign", "1y"),
        home: &home,
        faked_time: None,
    };
    let ossl = OpensslDir::new();
    let scan = PkixSigner::new(&ossl, "scan");
    let rogue = PkixSigner::new(&ossl, "rogue");
    let attestors = Attestors(
        [
            ("build", attestor("build", vec![build.public_key()])),
            ("qa", attestor("qa", vec![qa.public_key()])),
            ("scan", attestor("scan", vec![scan.public_key()])),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect(),
    );

    let app_d1 = url(APP, D1);
    let genuine_payload = create_payload(&app_d1);
    let genuine_pgp = attestation(
        &app_d1,
        "build",
        None,
        &build.fpr,
        &build.attached(&genuine_payload),
    );
    let genuine_pkix = attestation(
        &app_d1,
        "scan",
        Some(&genuine_payload),
        &scan.id(),
        &scan.sign(&genuine_payload),
    );

    // Controls: the genuine attestations verify and admit, so a refusal below means something.
    for genuine in [&genuine_pgp, &genuine_pkix] {
        let verified = attestors.verify(genuine).unwrap();
        assert_eq!(verified.digest.as_str(), D1);
        let trust = attestors.index(&[("ci/genuine", genuine)]);
        assert!(decide(&trust, &[&genuine.attestor], &app_d1).allowed);
    }

    // A gpg signed message whose literal data (the payload) is edited after signing.
    let uncompressed = build.sign(&genuine_payload, &["--compress-algo", "none", "--sign"]);
    let at = uncompressed
        .windows(D1.len())
        .position(|w| w == D1.as_bytes())
        .expect("payload inside the message");
    let mut edited = uncompressed.clone();
    edited[at + 7..at + D1.len()].copy_from_slice(&D2.as_bytes()[7..]);

    let other_d1 = url(OTHER, D1);
    let other_d2 = url(OTHER, D2);
    let app_d2 = url(APP, D2);
    let evil_d1 = url("gcr.io/evil/app", D1);
    let mut forged_der = vec![0x30, 0x44, 0x02, 0x20];
    forged_der.extend(random_bytes(32, 7));
    forged_der.extend([0x02, 0x20]);
    forged_der.extend(random_bytes(32, 11));

    let attacks = vec![
        Attack {
            name: "forged: random bytes as a PGP signature",
            attestation: attestation(
                &app_d1,
                "build",
                Some(&genuine_payload),
                &build.fpr,
                &STANDARD.encode(random_bytes(300, 1)),
            ),
            reason: Reason::MalformedSignature,
        },
        Attack {
            name: "forged: random r, s as a PKIX ECDSA signature",
            attestation: attestation(
                &app_d1,
                "scan",
                Some(&genuine_payload),
                &scan.id(),
                &STANDARD.encode(&forged_der),
            ),
            reason: Reason::BadSignature,
        },
        Attack {
            name: "forged: PGP detached signature presented with a modified payload",
            attestation: attestation(
                &app_d2,
                "build",
                Some(&create_payload(&app_d2)),
                &build.fpr,
                &build.detached(&genuine_payload),
            ),
            reason: Reason::BadSignature,
        },
        Attack {
            name: "forged: PGP signed message with the digest edited inside",
            attestation: attestation(
                &app_d2,
                "build",
                None,
                &build.fpr,
                &STANDARD.encode(&edited),
            ),
            reason: Reason::BadSignature,
        },
        Attack {
            name: "forged: PKIX signature presented with a modified payload",
            attestation: attestation(
                &app_d2,
                "scan",
                Some(&create_payload(&app_d2)),
                &scan.id(),
                &scan.sign(&genuine_payload),
            ),
            reason: Reason::BadSignature,
        },
        Attack {
            name: "another attestor's key: build's key id, signed by qa's key",
            attestation: attestation(
                &app_d1,
                "build",
                None,
                &build.fpr,
                &qa.attached(&genuine_payload),
            ),
            reason: Reason::BadSignature,
        },
        Attack {
            name: "another attestor's key: qa's own key id under attestor build",
            attestation: attestation(
                &app_d1,
                "build",
                None,
                &qa.fpr,
                &qa.attached(&genuine_payload),
            ),
            reason: Reason::KeyNotFound,
        },
        Attack {
            name: "another key: scan's key id, signed by a rogue P-256 key",
            attestation: attestation(
                &app_d1,
                "scan",
                Some(&genuine_payload),
                &scan.id(),
                &rogue.sign(&genuine_payload),
            ),
            reason: Reason::BadSignature,
        },
        Attack {
            name: "unknown key id",
            attestation: attestation(
                &app_d1,
                "build",
                None,
                "0123456789ABCDEF0123456789ABCDEF01234567",
                &build.attached(&genuine_payload),
            ),
            reason: Reason::KeyNotFound,
        },
        Attack {
            name: "payload for another digest (PGP)",
            attestation: attestation(
                &app_d1,
                "build",
                None,
                &build.fpr,
                &build.attached(&create_payload(&app_d2)),
            ),
            reason: Reason::DigestMismatch,
        },
        Attack {
            name: "payload for another digest (PKIX)",
            attestation: attestation(
                &app_d1,
                "scan",
                Some(&create_payload(&app_d2)),
                &scan.id(),
                &scan.sign(&create_payload(&app_d2)),
            ),
            reason: Reason::DigestMismatch,
        },
        Attack {
            name: "same digest, another repository in the payload",
            attestation: attestation(
                &app_d1,
                "build",
                None,
                &build.fpr,
                &build.attached(&create_payload(&evil_d1)),
            ),
            reason: Reason::RepositoryMismatch,
        },
        Attack {
            name: "replayed for another image: artifactUrl changed to another repo and digest",
            attestation: ImageAttestationSpec {
                artifact_url: other_d2.clone(),
                ..genuine_pgp.clone()
            },
            reason: Reason::DigestMismatch,
        },
        Attack {
            name: "replayed for another image: same digest, another repository",
            attestation: ImageAttestationSpec {
                artifact_url: other_d1.clone(),
                ..genuine_pgp.clone()
            },
            reason: Reason::RepositoryMismatch,
        },
        Attack {
            name: "replayed PKIX attestation for another image",
            attestation: ImageAttestationSpec {
                artifact_url: other_d2.clone(),
                ..genuine_pkix.clone()
            },
            reason: Reason::DigestMismatch,
        },
        Attack {
            name: "attestation names an attestor that does not exist",
            attestation: ImageAttestationSpec {
                attestor: "ghost".into(),
                ..genuine_pgp.clone()
            },
            reason: Reason::AttestorNotFound,
        },
        Attack {
            name: "malformed PGP signature: truncated armor",
            attestation: attestation(
                &app_d1,
                "build",
                None,
                &build.fpr,
                &genuine_pgp.signatures[0].signature[..200],
            ),
            reason: Reason::MalformedSignature,
        },
        Attack {
            name: "malformed signature: neither armor nor base64",
            attestation: attestation(&app_d1, "build", None, &build.fpr, "not a signature!"),
            reason: Reason::MalformedSignature,
        },
        Attack {
            name: "malformed payload: signed, but not JSON",
            attestation: attestation(
                &app_d1,
                "build",
                None,
                &build.fpr,
                &build.attached(b"{\"critical\": "),
            ),
            reason: Reason::MalformedPayload,
        },
        Attack {
            name: "malformed payload: serializedPayload is not base64",
            attestation: ImageAttestationSpec {
                serialized_payload: Some("%%%".into()),
                ..genuine_pkix.clone()
            },
            reason: Reason::MalformedPayload,
        },
    ];
    for attack in &attacks {
        assert_refused(&attestors, attack);
    }

    // Replays are stored under another name or namespace: the index never has them, and the
    // genuine attestation still admits only its own image.
    let replay = &attacks[12].attestation;
    let trust = attestors.index(&[("ci/genuine", &genuine_pgp), ("attacker/replay", replay)]);
    assert_eq!(trust.len(), 1);
    assert!(!trust.contains_key("attacker/replay"));
    assert!(decide(&trust, &["build"], &app_d1).allowed);
    assert!(!decide(&trust, &["build"], &other_d2).allowed);
    // As Google documents, an attestation vouches for the digest wherever the identical image
    // is stored: the same digest from another repository is admitted (same bytes), while the
    // replay itself never entered the index.
    assert!(decide(&trust, &["build"], &other_d1).allowed);
}

#[test]
fn tag_swapped_after_signing_is_denied() {
    let home = GpgHome::new();
    let build = build_signer(&home);
    let attestors = only_build(&build);
    // Signed for app:v1 = D1; the tag is later moved to another image.
    let app_d1 = url(APP, D1);
    let genuine = attestation(
        &app_d1,
        "build",
        None,
        &build.fpr,
        &build.attached(&create_payload(&app_d1)),
    );
    let trust = attestors.index(&[("ci/app-v1", &genuine)]);
    assert_eq!(trust.len(), 1);
    assert!(decide(&trust, &["build"], &app_d1).allowed);

    for (image, reason) in [
        (
            format!("{APP}:v1"),
            "Expected digest with sha256 scheme, but got tag or malformed digest",
        ),
        (format!("{APP}:v1@{D2}"), NOT_ATTESTED),
        (format!("{APP}@{D2}"), NOT_ATTESTED),
    ] {
        let decision = decide(&trust, &["build"], &image);
        assert!(!decision.allowed, "{image} admitted");
        let message = decision.message();
        assert!(
            message.contains(&format!("Image {image} denied by attestor build: {reason}")),
            "{message}"
        );
    }
    // The tag with the attested digest is the same image: admitted.
    assert!(decide(&trust, &["build"], &format!("{APP}:v1@{D1}")).allowed);
}

/// A detached signature straight from sequoia's primitives: gpg (and `binauthz sign`) refuse to
/// sign with a revoked key, but whoever holds the secret key is not bound by that.
fn sign_ignoring_revocation(secret: &[u8], payload: &[u8]) -> String {
    use sequoia_openpgp::parse::Parse as _;
    use sequoia_openpgp::serialize::SerializeInto as _;
    use sequoia_openpgp::types::SignatureType;
    let cert = sequoia_openpgp::Cert::from_bytes(secret).unwrap();
    let mut keypair = cert
        .primary_key()
        .key()
        .clone()
        .parts_into_secret()
        .unwrap()
        .into_keypair()
        .unwrap();
    let signature =
        sequoia_openpgp::packet::signature::SignatureBuilder::new(SignatureType::Binary)
            .sign_message(&mut keypair, payload)
            .unwrap();
    STANDARD.encode(sequoia_openpgp::Packet::from(signature).to_vec().unwrap())
}

#[test]
fn revoked_and_expired_keys_are_refused() {
    let home = GpgHome::new();
    let revoked = PgpSigner {
        fpr: home.gen_key("Revoked <revoked@example.com>", "ed25519", "sign", "1y"),
        home: &home,
        faked_time: None,
    };
    let app_d1 = url(APP, D1);
    let payload = create_payload(&app_d1);
    let signed_before = revoked.attached(&payload);
    let before = Attestors(BTreeMap::from([(
        "legacy".to_owned(),
        attestor("legacy", vec![revoked.public_key()]),
    )]));
    let made_before = attestation(&app_d1, "legacy", None, &revoked.fpr, &signed_before);
    before.verify(&made_before).unwrap();
    // gpg keeps a revocation certificate; its BEGIN line is prefixed with ':' against accidents.
    let rev = std::fs::read_to_string(
        home.path()
            .join("openpgp-revocs.d")
            .join(format!("{}.rev", revoked.fpr)),
    )
    .unwrap()
    .replace(":-----BEGIN", "-----BEGIN");
    let rev_file = home.write("revoke.asc", rev.as_bytes());
    home.gpg(&["--import", &rev_file]);

    let expiring_home = GpgHome::new();
    expiring_home.gpg(&[
        "--faked-system-time",
        "20200101T000000",
        "--quick-gen-key",
        "Expired <expired@example.com>",
        "ed25519",
        "sign",
        "1d",
    ]);
    let expired = PgpSigner {
        fpr: expiring_home.fingerprint("expired@example.com"),
        home: &expiring_home,
        faked_time: Some("20200101T010000"),
    };

    let attestors = Attestors(BTreeMap::from([
        (
            "legacy".to_owned(),
            attestor("legacy", vec![revoked.public_key()]),
        ),
        (
            "old".to_owned(),
            attestor("old", vec![expired.public_key()]),
        ),
    ]));
    let expired_attestation = attestation(
        &app_d1,
        "old",
        None,
        &expired.fpr,
        &expired.attached(&payload),
    );
    // Valid when it was signed: the refusal is about now.
    let then: jiff::Timestamp = "2020-01-01T02:00:00Z".parse().unwrap();
    verify::verify(&expired_attestation, attestors.get("old"), then).unwrap();

    let attacks = [
        Attack {
            name: "revoked key: signed before the revocation",
            attestation: made_before,
            reason: Reason::KeyRevoked,
        },
        Attack {
            name: "revoked key: signed after the revocation by a tool that ignores it",
            attestation: attestation(
                &app_d1,
                "legacy",
                Some(&payload),
                &revoked.fpr,
                &sign_ignoring_revocation(&home.export_secret(&revoked.fpr, true), &payload),
            ),
            reason: Reason::KeyRevoked,
        },
        Attack {
            name: "expired key: signed in 2020 while valid, verified now",
            attestation: expired_attestation,
            reason: Reason::KeyExpired,
        },
    ];
    for attack in &attacks {
        assert_refused(&attestors, attack);
    }
}

#[test]
fn policy_naming_a_missing_attestor_never_admits() {
    let home = GpgHome::new();
    let build = build_signer(&home);
    let attestors = only_build(&build);
    let app_d1 = url(APP, D1);
    let signature = build.attached(&create_payload(&app_d1));
    let by_build = attestation(&app_d1, "build", None, &build.fpr, &signature);
    // The same signature filed under the missing attestor's name.
    let by_ghost = attestation(&app_d1, "ghost", None, &build.fpr, &signature);
    assert_eq!(
        attestors.verify(&by_ghost).unwrap_err().reason,
        Reason::AttestorNotFound
    );
    let trust = attestors.index(&[("ci/build", &by_build), ("ci/ghost", &by_ghost)]);
    assert_eq!(trust.len(), 1);
    for require in [&["ghost"][..], &["build", "ghost"][..]] {
        let decision = decide(&trust, require, &app_d1);
        assert!(!decision.allowed, "{require:?}");
        assert!(
            decision
                .message()
                .contains(&format!("denied by attestor ghost: {NOT_ATTESTED}")),
            "{}",
            decision.message()
        );
    }
    // A Google-style full name of the missing attestor is refused the same way.
    let decision = decide(&trust, &["projects/p/attestors/ghost"], &app_d1);
    assert!(!decision.allowed);
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// The CLI's `evaluate` (same index-building code as the webhook's offline twin) on a GitOps
/// folder in which someone wrote `status: Verified` by hand on an attestation that does not verify.
#[test]
fn hand_written_verified_status_gives_nothing() {
    let home = GpgHome::new();
    let build = build_signer(&home);
    let app_d1 = url(APP, D1);
    let attestor_yaml = format!(
        "apiVersion: binauthz.dev/v1alpha1\nkind: Attestor\nmetadata:\n  name: build\nspec:\n  publicKeys:\n  - asciiArmoredPgpPublicKey: |\n{}",
        indent(&home.export(&build.fpr), 6)
    );
    let policy_yaml = "apiVersion: binauthz.dev/v1alpha1\nkind: AttestationPolicy\nmetadata:\n  name: policy\nspec:\n  defaultAdmissionRule:\n    evaluationMode: REQUIRE_ATTESTATION\n    enforcementMode: ENFORCED_BLOCK_AND_AUDIT_LOG\n    requireAttestationsBy: [build]\n";
    let pod_yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: app\n  namespace: apps\nspec:\n  containers:\n  - name: app\n    image: {app_d1}\n"
    );
    let attestation_yaml = |signature: &str| {
        format!(
            "apiVersion: binauthz.dev/v1alpha1\nkind: ImageAttestation\nmetadata:\n  name: app\n  namespace: apps\nspec:\n  artifactUrl: {app_d1}\n  attestor: build\n  signatures:\n  - publicKeyId: {}\n    signature: |\n{}status:\n  observedGeneration: 1\n  verifiedKeyId: {}\n  digest: {D1}\n  conditions:\n  - type: Verified\n    status: \"True\"\n    reason: Verified\n    message: verified by hand\n    lastTransitionTime: \"2024-01-01T00:00:00Z\"\n",
            build.fpr,
            indent(signature, 6),
            build.fpr
        )
    };
    let decide_folder = |signature: &str| {
        let mut manifests = Manifests::default();
        let text = [
            attestor_yaml.as_str(),
            policy_yaml,
            &attestation_yaml(signature),
            &pod_yaml,
        ]
        .join("---\n");
        manifests.add_text("gitops.yaml", &text).unwrap();
        assert_eq!(manifests.attestations.len(), 1);
        let status = manifests.attestations[0].1.status.as_ref().unwrap();
        assert_eq!(
            status.conditions[0].status, "True",
            "status kept as written"
        );
        let lines = commands::evaluate_manifests(&manifests, "default", jiff::Timestamp::now());
        assert_eq!(lines.len(), 1);
        lines[0].decision.clone().unwrap()
    };

    // Control: with the real signature the folder admits.
    let genuine = build.attached(&create_payload(&app_d1));
    assert!(decide_folder(&genuine).allowed);

    // Forged signatures with a hand-written Verified status: denied.
    let other_payload = create_payload(&url(APP, D2));
    for (what, signature) in [
        ("random bytes", STANDARD.encode(random_bytes(256, 3))),
        (
            "signature for another digest",
            build.attached(&other_payload),
        ),
        ("truncated signature", genuine[..120].to_owned()),
    ] {
        let decision = decide_folder(&signature);
        assert!(
            !decision.allowed,
            "{what}: admitted by a hand-written status"
        );
        assert!(
            decision
                .message()
                .contains(&format!("denied by attestor build: {NOT_ATTESTED}")),
            "{what}: {}",
            decision.message()
        );
    }
}

const CUSTOM_ID: &str = "ni:///sha-256;custom";

/// A PKIX key entry with the explicit id [`CUSTOM_ID`].
fn custom_pkix(
    public_key_pem: String,
    signature_algorithm: SignatureAlgorithm,
) -> AttestorPublicKey {
    AttestorPublicKey {
        id: Some(CUSTOM_ID.into()),
        pkix_public_key: Some(crd::PkixPublicKey {
            public_key_pem,
            signature_algorithm,
        }),
        ..AttestorPublicKey::default()
    }
}

#[test]
fn malformed_keys_and_documents_are_refused() {
    let home = GpgHome::new();
    let build = build_signer(&home);
    let ossl = OpensslDir::new();
    let scan = PkixSigner::new(&ossl, "scan");
    let armored = home.export(&build.fpr);
    let pem = scan.pem();
    let app_d1 = url(APP, D1);
    let payload = create_payload(&app_d1);

    // Malformed keys load as unusable keys; attestations naming them fail with KeyNotFound.
    let bad_keys: [(&str, AttestorPublicKey, &str); 5] = [
        (
            "truncated PGP armor",
            AttestorPublicKey {
                ascii_armored_pgp_public_key: Some(armored[..armored.len() / 2].to_owned()),
                id: Some(build.fpr.clone()),
                ..AttestorPublicKey::default()
            },
            build.fpr.as_str(),
        ),
        (
            "PGP armor around garbage",
            AttestorPublicKey {
                ascii_armored_pgp_public_key: Some(format!(
                    "-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n{}\n-----END PGP PUBLIC KEY BLOCK-----\n",
                    STANDARD.encode(random_bytes(200, 5))
                )),
                id: Some(build.fpr.clone()),
                ..AttestorPublicKey::default()
            },
            build.fpr.as_str(),
        ),
        (
            "PEM with a corrupted body",
            custom_pkix(
                pem.replacen("MF", "MG", 1),
                SignatureAlgorithm::EcdsaP256Sha256,
            ),
            CUSTOM_ID,
        ),
        (
            "PEM key for another algorithm",
            custom_pkix(pem.clone(), SignatureAlgorithm::RsaPss2048Sha256),
            CUSTOM_ID,
        ),
        (
            "a PGP key where a PEM key belongs",
            custom_pkix(armored.clone(), SignatureAlgorithm::EcdsaP256Sha256),
            CUSTOM_ID,
        ),
    ];
    for (name, key, key_id) in bad_keys {
        let keys = attestor("broken", vec![key]);
        assert!(keys.keys[0].key.is_err(), "{name}: key loaded");
        let attestors = Attestors(BTreeMap::from([("broken".to_owned(), keys)]));
        let signature = if key_id.starts_with("ni:") {
            scan.sign(&payload)
        } else {
            build.attached(&payload)
        };
        let attack = Attack {
            name,
            attestation: attestation(&app_d1, "broken", Some(&payload), key_id, &signature),
            reason: Reason::KeyNotFound,
        };
        assert_refused(&attestors, &attack);
    }

    // Malformed JSON never becomes a workload or an attestation.
    for (name, document) in [
        (
            "containers is a string",
            json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": "nginx"}}),
        ),
        (
            "image is a number",
            json!({"apiVersion": "v1", "kind": "Pod", "spec": {"containers": [{"name": "a", "image": 7}]}}),
        ),
        (
            "pod without spec",
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}),
        ),
        (
            "deployment without template",
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {}}),
        ),
        ("object is an array", json!([{"kind": "Pod"}])),
    ] {
        assert!(
            Workload::from_json(&document).is_err(),
            "{name}: read as a workload"
        );
    }
    for text in [
        "{\"artifactUrl\": 5, \"attestor\": \"build\", \"signatures\": []}",
        "{\"artifactUrl\": \"x\", \"attestor\": \"build\", \"signatures\": [{\"publicKeyId\": 1}]}",
        "{\"artifactUrl\": \"x\"",
    ] {
        assert!(
            serde_json::from_str::<ImageAttestationSpec>(text).is_err(),
            "{text}"
        );
    }
    let mut manifests = Manifests::default();
    let err = manifests
        .add_text(
            "bad.yaml",
            "apiVersion: binauthz.dev/v1alpha1\nkind: ImageAttestation\nmetadata: {name: x}\nspec: {artifactUrl: [1], attestor: build, signatures: []}\n",
        )
        .unwrap_err();
    assert!(err.to_string().contains("artifactUrl"), "{err}");
}

#[test]
fn huge_inputs_are_refused_quickly() {
    let home = GpgHome::new();
    let build = build_signer(&home);
    let ossl = OpensslDir::new();
    let scan = PkixSigner::new(&ossl, "scan");
    let attestors = Attestors(BTreeMap::from([
        (
            "build".to_owned(),
            attestor("build", vec![build.public_key()]),
        ),
        ("scan".to_owned(), attestor("scan", vec![scan.public_key()])),
    ]));
    let app_d1 = url(APP, D1);
    let payload = create_payload(&app_d1);
    const MIB2: usize = 2 * 1024 * 1024;

    // A 2 MiB payload that still parses as far as a JSON parser would go: the signed
    // gcloud payload followed by 2 MiB of spaces inside the object.
    let mut huge_payload = payload.clone();
    let end = huge_payload.iter().rposition(|&b| b == b'}').unwrap();
    huge_payload.splice(end..end, std::iter::repeat_n(b' ', MIB2));
    let huge_armor = format!(
        "-----BEGIN PGP MESSAGE-----\n\n{}\n-----END PGP MESSAGE-----\n",
        STANDARD.encode(random_bytes(MIB2, 9))
    );

    let attacks = [
        Attack {
            name: "2 MiB PGP armored signature",
            attestation: attestation(&app_d1, "build", None, &build.fpr, &huge_armor),
            reason: Reason::MalformedSignature,
        },
        Attack {
            name: "2 MiB base64 PKIX signature",
            attestation: attestation(
                &app_d1,
                "scan",
                Some(&payload),
                &scan.id(),
                &STANDARD.encode(random_bytes(MIB2, 13)),
            ),
            reason: Reason::MalformedSignature,
        },
        Attack {
            name: "2 MiB payload, validly signed (PKIX)",
            attestation: attestation(
                &app_d1,
                "scan",
                Some(&huge_payload),
                &scan.id(),
                &scan.sign(&huge_payload),
            ),
            reason: Reason::MalformedPayload,
        },
        Attack {
            name: "2 MiB payload, forged signature (PKIX)",
            attestation: attestation(
                &app_d1,
                "scan",
                Some(&huge_payload),
                &scan.id(),
                &scan.sign(&payload),
            ),
            // Over the 64 KiB payload limit: refused before any signature is checked.
            reason: Reason::MalformedPayload,
        },
        Attack {
            name: "2 MiB payload, validly signed detached (PGP)",
            attestation: attestation(
                &app_d1,
                "build",
                Some(&huge_payload),
                &build.fpr,
                &build.detached(&huge_payload),
            ),
            // Over the 64 KiB payload limit: refused before the signature is read.
            reason: Reason::MalformedPayload,
        },
        Attack {
            name: "2 MiB payload inside a validly signed PGP message",
            attestation: attestation(
                &app_d1,
                "build",
                None,
                &build.fpr,
                &STANDARD.encode(build.sign(&huge_payload, &["--sign"])),
            ),
            reason: Reason::MalformedSignature,
        },
    ];
    for attack in &attacks {
        let started = Instant::now();
        assert_refused(&attestors, attack);
        // Generous for a debug build on a loaded machine; a parse-everything path takes far longer.
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(3),
            "{}: took {took:?}",
            attack.name
        );
    }
}

/// The raw keys behave the same way as the attestor (a guard that this file's helpers build
/// what the product parses).
#[test]
fn helper_keys_parse_as_product_keys() {
    let ossl = OpensslDir::new();
    let scan = PkixSigner::new(&ossl, "scan");
    let key = binauthz::crypto::pkix::PkixPublicKey::from_pem(
        &scan.pem(),
        SignatureAlgorithm::EcdsaP256Sha256,
        None,
    )
    .unwrap();
    assert_eq!(PublicKey::Pkix(key).id(), scan.id());
}
