//! Verifying an `ImageAttestation` against its `Attestor`: the one place that decides whether a
//! signature vouches for an image digest. Used by the controller (status), by every webhook
//! replica (its own trust index, never `status`) and by `binauthz verify`.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::{AttestorPublicKey, AttestorSpec, ImageAttestationSpec, KeyStatus, limits};
use crate::crypto::pgp::PgpPublicKey;
use crate::crypto::pkix::PkixPublicKey;
use crate::crypto::{KeyKind, KeyProblem, PublicKey, SignatureError};
use crate::image::{Digest, ImageRef};
use crate::payload;

/// Why an attestation did not verify: the `reason` of its `Verified=False` condition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    /// `spec.artifactUrl` does not name an image by sha256 digest.
    InvalidArtifactUrl,
    /// No Attestor of that name exists.
    AttestorNotFound,
    /// The attestor has no key with the signature's `publicKeyId`.
    KeyNotFound,
    /// The signature is neither PGP nor valid base64, or cannot be parsed.
    MalformedSignature,
    /// The signature does not verify with the key.
    BadSignature,
    /// The key (or the subkey that signed) is revoked.
    KeyRevoked,
    /// The key (or the subkey that signed) has expired.
    KeyExpired,
    /// The payload is missing, not valid base64, or not a signing payload.
    MalformedPayload,
    /// The payload inside a PGP message differs from `spec.serializedPayload`.
    PayloadMismatch,
    /// The payload's repository is not the repository of `spec.artifactUrl`.
    RepositoryMismatch,
    /// The payload's digest is not the digest of `spec.artifactUrl`.
    DigestMismatch,
}

impl Reason {
    /// The reason as it appears in status conditions.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidArtifactUrl => "InvalidArtifactUrl",
            Self::AttestorNotFound => "AttestorNotFound",
            Self::KeyNotFound => "KeyNotFound",
            Self::MalformedSignature => "MalformedSignature",
            Self::BadSignature => "BadSignature",
            Self::KeyRevoked => "KeyRevoked",
            Self::KeyExpired => "KeyExpired",
            Self::MalformedPayload => "MalformedPayload",
            Self::PayloadMismatch => "PayloadMismatch",
            Self::RepositoryMismatch => "RepositoryMismatch",
            Self::DigestMismatch => "DigestMismatch",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An attestation that did not verify, with the precise reason and a message for people.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{reason}: {message}")]
pub struct Failure {
    /// Machine-readable reason.
    pub reason: Reason,
    /// What is wrong and, where it helps, how to fix it.
    pub message: String,
}

impl Failure {
    fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// An attestation that verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// Id of the key whose signature verified.
    pub key_id: String,
    /// The digest the attestor vouches for.
    pub digest: Digest,
    /// The image as named by `spec.artifactUrl`.
    pub image: ImageRef,
    /// Which of `spec.signatures` verified.
    pub signature: usize,
}

/// One key of an attestor, parsed once.
#[derive(Debug)]
pub struct LoadedKey {
    /// The id signatures must name, when it could be determined.
    pub id: Option<String>,
    /// PGP or PKIX.
    pub kind: KeyKind,
    /// The key, or why it cannot be used.
    pub key: Result<PublicKey, String>,
}

/// An attestor's keys, parsed and checked: the input of every verification.
#[derive(Debug)]
pub struct AttestorKeys {
    /// The attestor's name.
    pub name: String,
    /// Its keys, in spec order.
    pub keys: Vec<LoadedKey>,
}

impl AttestorKeys {
    /// Parse every key of an attestor; a bad key is recorded, never fatal.
    pub fn load(name: &str, spec: &AttestorSpec) -> Self {
        let keys = spec
            .public_keys
            .iter()
            .enumerate()
            .map(|(i, k)| load_key(i, k))
            .collect();
        Self {
            name: name.to_owned(),
            keys,
        }
    }

    /// The key with this id (PGP fingerprints compare case-insensitively).
    pub fn find(&self, id: &str) -> Option<&LoadedKey> {
        self.keys.iter().find(|k| {
            k.id.as_deref().is_some_and(|own| match k.kind {
                KeyKind::Pgp => own.eq_ignore_ascii_case(id.trim()),
                KeyKind::Pkix => own == id,
            })
        })
    }

    /// The attestor's key ids, and why any key cannot be used: what a signature naming an
    /// unknown key should have named.
    pub fn describe_keys(&self) -> String {
        if self.keys.is_empty() {
            return "it has no key in spec.publicKeys".to_owned();
        }
        let ids: Vec<&str> = self
            .keys
            .iter()
            .filter(|k| k.key.is_ok())
            .filter_map(|k| k.id.as_deref())
            .collect();
        let mut parts = vec![if ids.is_empty() {
            "none of its keys can be used".to_owned()
        } else {
            format!("its keys: {}", ids.join(", "))
        }];
        parts.extend(
            self.keys
                .iter()
                .filter_map(|k| k.key.as_ref().err().cloned()),
        );
        parts.join("; ")
    }

    /// Per-key status, as written to `Attestor.status.keys`.
    pub fn key_statuses(&self, now: jiff::Timestamp) -> Vec<KeyStatus> {
        self.keys
            .iter()
            .map(|k| {
                let kind = match k.kind {
                    KeyKind::Pgp => "PGP",
                    KeyKind::Pkix => "PKIX",
                }
                .to_owned();
                match &k.key {
                    Ok(key) => {
                        let facts = key.facts(now);
                        KeyStatus {
                            id: k.id.clone(),
                            kind,
                            algorithm: Some(facts.algorithm),
                            fingerprint: Some(facts.fingerprint),
                            created: facts.created.map(Time),
                            expires: facts.expires.map(Time),
                            can_sign: facts.can_sign && facts.problems.is_empty(),
                            problem: describe_problems(&facts.problems),
                        }
                    }
                    Err(problem) => KeyStatus {
                        id: k.id.clone(),
                        kind,
                        can_sign: false,
                        problem: Some(problem.clone()),
                        ..KeyStatus::default()
                    },
                }
            })
            .collect()
    }
}

fn describe_problems(problems: &[KeyProblem]) -> Option<String> {
    if problems.is_empty() {
        return None;
    }
    Some(
        problems
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; "),
    )
}

fn load_key(index: usize, spec: &AttestorPublicKey) -> LoadedKey {
    let field = format!("spec.publicKeys[{index}]");
    match (&spec.ascii_armored_pgp_public_key, &spec.pkix_public_key) {
        (Some(armored), None) => match PgpPublicKey::from_armored(armored) {
            Ok(key) => {
                let fingerprint = key.fingerprint().to_owned();
                let key = match spec
                    .id
                    .as_deref()
                    .map(str::trim)
                    .filter(|id| !id.is_empty())
                {
                    Some(given) if !given.eq_ignore_ascii_case(&fingerprint) => Err(format!(
                        "{field}.id {given} is not the key's fingerprint {fingerprint}; remove the id or set it to the fingerprint"
                    )),
                    _ => Ok(PublicKey::Pgp(key)),
                };
                LoadedKey {
                    id: Some(fingerprint),
                    kind: KeyKind::Pgp,
                    key,
                }
            }
            Err(e) => LoadedKey {
                id: spec.id.clone(),
                kind: KeyKind::Pgp,
                key: Err(format!("{field}.asciiArmoredPgpPublicKey: {e}")),
            },
        },
        (None, Some(pkix)) => {
            match PkixPublicKey::from_pem(
                &pkix.public_key_pem,
                pkix.signature_algorithm,
                spec.id.as_deref(),
            ) {
                Ok(key) => {
                    let key = PublicKey::Pkix(key);
                    LoadedKey {
                        id: Some(key.id().to_owned()),
                        kind: KeyKind::Pkix,
                        key: Ok(key),
                    }
                }
                Err(e) => LoadedKey {
                    id: spec.id.clone(),
                    kind: KeyKind::Pkix,
                    key: Err(format!("{field}.pkixPublicKey: {e}")),
                },
            }
        }
        (Some(_), Some(_)) => LoadedKey {
            id: spec.id.clone(),
            kind: KeyKind::Pgp,
            key: Err(format!(
                "{field}: set exactly one of asciiArmoredPgpPublicKey or pkixPublicKey, not both"
            )),
        },
        (None, None) => LoadedKey {
            id: spec.id.clone(),
            kind: KeyKind::Pkix,
            key: Err(format!(
                "{field}: set one of asciiArmoredPgpPublicKey or pkixPublicKey"
            )),
        },
    }
}

/// Decode a signature as stored in `spec.signatures[].signature`: PGP armor as is, otherwise
/// base64 (standard, or URL-safe as DSSE allows).
pub fn decode_signature(text: &str) -> Result<Vec<u8>, Failure> {
    let trimmed = text.trim();
    if trimmed.starts_with("-----BEGIN PGP") {
        return Ok(trimmed.as_bytes().to_vec());
    }
    let compact: String = trimmed
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    STANDARD
        .decode(&compact)
        .or_else(|_| URL_SAFE_NO_PAD.decode(compact.trim_end_matches('=')))
        .map_err(|e| {
            Failure::new(
                Reason::MalformedSignature,
                format!("signature is neither PGP armor nor base64: {e}"),
            )
        })
}

/// Verify an attestation against its attestor's keys at time `now`.
///
/// Any one verifying signature suffices; when none does, the failure that got furthest
/// (e.g. a digest mismatch over a bad signature) is returned.
pub fn verify(
    attestation: &ImageAttestationSpec,
    attestor: Option<&AttestorKeys>,
    now: jiff::Timestamp,
) -> Result<Verified, Failure> {
    let image = ImageRef::parse(&attestation.artifact_url)
        .map_err(|e| Failure::new(Reason::InvalidArtifactUrl, format!("spec.artifactUrl: {e}")))?;
    let Some(digest) = image.digest().cloned() else {
        return Err(Failure::new(
            Reason::InvalidArtifactUrl,
            format!(
                "spec.artifactUrl {} has no sha256 digest; name the image as registry/repository@sha256:<digest>",
                attestation.artifact_url
            ),
        ));
    };
    let Some(attestor) = attestor else {
        return Err(Failure::new(
            Reason::AttestorNotFound,
            format!(
                "Attestor {} does not exist; create it or fix spec.attestor",
                attestation.attestor
            ),
        ));
    };
    let serialized = match &attestation.serialized_payload {
        Some(text) if text.chars().count() > limits::PAYLOAD => {
            return Err(Failure::new(
                Reason::MalformedPayload,
                format!(
                    "spec.serializedPayload is longer than {} base64 characters (16 KiB of payload)",
                    limits::PAYLOAD
                ),
            ));
        }
        Some(text) => Some(STANDARD.decode(text.trim()).map_err(|e| {
            Failure::new(
                Reason::MalformedPayload,
                format!("spec.serializedPayload is not base64: {e}"),
            )
        })?),
        None => None,
    };
    if attestation.signatures.is_empty() {
        return Err(Failure::new(
            Reason::MalformedSignature,
            "spec.signatures is empty; add at least one signature",
        ));
    }
    // The CRD schema holds these limits; objects that predate it, or come from files, are held
    // to them here, so the work per attestation stays bounded.
    if attestation.signatures.len() > limits::SIGNATURES {
        return Err(Failure::new(
            Reason::MalformedSignature,
            format!(
                "spec.signatures holds {} signatures; at most {} are allowed",
                attestation.signatures.len(),
                limits::SIGNATURES
            ),
        ));
    }
    if let Some(index) = attestation
        .signatures
        .iter()
        .position(|s| s.signature.chars().count() > limits::SIGNATURE)
    {
        return Err(Failure::new(
            Reason::MalformedSignature,
            format!(
                "spec.signatures[{index}].signature is longer than {} characters",
                limits::SIGNATURE
            ),
        ));
    }
    let mut best: Option<Failure> = None;
    for (index, signature) in attestation.signatures.iter().enumerate() {
        match verify_one(
            index,
            signature,
            serialized.as_deref(),
            attestor,
            &image,
            &digest,
            now,
        ) {
            Ok(key_id) => {
                return Ok(Verified {
                    key_id,
                    digest,
                    image,
                    signature: index,
                });
            }
            Err(failure) => {
                if best.as_ref().is_none_or(|b| failure.reason > b.reason) {
                    best = Some(failure);
                }
            }
        }
    }
    Err(best.unwrap_or_else(|| Failure::new(Reason::BadSignature, "no signature verified")))
}

fn verify_one(
    index: usize,
    signature: &crate::crd::Signature,
    serialized: Option<&[u8]>,
    attestor: &AttestorKeys,
    image: &ImageRef,
    digest: &Digest,
    now: jiff::Timestamp,
) -> Result<String, Failure> {
    let field = format!("spec.signatures[{index}]");
    let Some(loaded) = attestor.find(&signature.public_key_id) else {
        return Err(Failure::new(
            Reason::KeyNotFound,
            format!(
                "{field}.publicKeyId {} is not a key of Attestor {} ({})",
                signature.public_key_id,
                attestor.name,
                attestor.describe_keys()
            ),
        ));
    };
    let key = loaded.key.as_ref().map_err(|problem| {
        Failure::new(
            Reason::KeyNotFound,
            format!("{field}.publicKeyId names a key that cannot be used: {problem}"),
        )
    })?;
    let bytes = decode_signature(&signature.signature)
        .map_err(|f| Failure::new(f.reason, format!("{field}.signature: {}", f.message)))?;
    let signed = key.verify(&bytes, serialized, now).map_err(|e| {
        let reason = match e {
            SignatureError::KeyRevoked => Reason::KeyRevoked,
            SignatureError::KeyExpired => Reason::KeyExpired,
            SignatureError::BadSignature(_) => Reason::BadSignature,
            SignatureError::MissingPayload => Reason::MalformedPayload,
            SignatureError::Malformed(_) | SignatureError::TooLarge(_) => {
                Reason::MalformedSignature
            }
        };
        Failure::new(reason, format!("{field}: {e}"))
    })?;
    // Clearsigned text loses its final newline in the signature's canonical form, so only
    // trailing white space may differ.
    if let Some(serialized) = serialized
        && signed.trim_ascii_end() != serialized.trim_ascii_end()
    {
        return Err(Failure::new(
            Reason::PayloadMismatch,
            format!(
                "{field}: the payload inside the signature differs from spec.serializedPayload; drop serializedPayload or set it to the signed payload"
            ),
        ));
    }
    check_payload(&signed, image, digest)?;
    Ok(loaded.id.clone().unwrap_or_default())
}

/// Whether a signed payload vouches for `image` (its repository) at `digest`: the checks after
/// the signature, shared with `binauthz attestation create`, which runs them before anything
/// is signed into an object.
pub fn check_payload(signed: &[u8], image: &ImageRef, digest: &Digest) -> Result<(), Failure> {
    let payload = match payload::parse_signed(signed)
        .map_err(|e| Failure::new(Reason::MalformedPayload, format!("signed payload: {e}")))?
    {
        payload::Signed::Payload(payload) => payload,
        // cosign v3: the Statement names the digest only; the repository is where the
        // signature was found (the subject carries no name to compare), as cosign checks it.
        payload::Signed::Statement(statement) => {
            if statement.predicate_type != payload::COSIGN_SIGN_PREDICATE {
                return Err(Failure::new(
                    Reason::MalformedPayload,
                    format!(
                        "the signed in-toto Statement has predicateType {}; only a cosign signature ({}) vouches for an image",
                        statement.predicate_type,
                        payload::COSIGN_SIGN_PREDICATE
                    ),
                ));
            }
            if !statement.subjects.contains(digest) {
                let named: Vec<&str> = statement.subjects.iter().map(Digest::as_str).collect();
                return Err(Failure::new(
                    Reason::DigestMismatch,
                    format!(
                        "the signed Statement vouches for {} but spec.artifactUrl names {}",
                        if named.is_empty() {
                            "no sha256 digest".to_owned()
                        } else {
                            named.join(", ")
                        },
                        digest.as_str()
                    ),
                ));
            }
            return Ok(());
        }
    };
    if payload.manifest_digest != *digest {
        return Err(Failure::new(
            Reason::DigestMismatch,
            format!(
                "the payload vouches for {} but spec.artifactUrl names {}",
                payload.manifest_digest.as_str(),
                digest.as_str()
            ),
        ));
    }
    if !crate::image::same_repository(&payload.docker_reference, image.name()) {
        return Err(Failure::new(
            Reason::RepositoryMismatch,
            format!(
                "the payload names repository {} but spec.artifactUrl names {}",
                payload.docker_reference,
                image.name()
            ),
        ));
    }
    Ok(())
}
