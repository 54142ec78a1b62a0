//! `Attestor`: who may vouch for images. Mirrors Binary Authorization's attestor and
//! `AttestorPublicKey`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use crate::crypto::SignatureAlgorithm;

/// Trusted public keys of one party that vouches for images.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "binauthz.dev",
    version = "v1alpha1",
    kind = "Attestor",
    status = "AttestorStatus",
    category = "binauthz",
    doc = "An attestor: the public keys of one party trusted to vouch for images.",
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(name = "Keys", type_ = "integer", json_path = ".status.usableKeys"),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AttestorSpec {
    /// Free-form description of the attestor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = super::limits::DESCRIPTION))]
    pub description: Option<String>,
    /// Public keys (at most 32); an attestation verifies when any one of them verifies a
    /// signature. With no keys, the attestor never vouches for anything.
    #[serde(default)]
    #[schemars(length(max = super::limits::PUBLIC_KEYS))]
    pub public_keys: Vec<AttestorPublicKey>,
}

/// One public key of an attestor: exactly one of a PGP key or a PKIX key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[x_kube(validation = kube::core::Rule::new(
    "has(self.asciiArmoredPgpPublicKey) != has(self.pkixPublicKey)"
).message("set exactly one of asciiArmoredPgpPublicKey or pkixPublicKey"))]
#[serde(rename_all = "camelCase")]
pub struct AttestorPublicKey {
    /// Free-form comment about this key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = super::limits::DESCRIPTION))]
    pub comment: Option<String>,
    /// Key id that signatures name. PGP: leave empty or give the upper-case 40-hex v4 fingerprint
    /// (it is computed). PKIX: an RFC 3986 URI; default `ni:///sha-256;...` of the key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = super::limits::KEY_ID))]
    pub id: Option<String>,
    /// The whole output of `gpg --armor --export KEY` (at most 128 KiB).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = super::limits::PGP_KEY))]
    pub ascii_armored_pgp_public_key: Option<String>,
    /// A PEM SubjectPublicKeyInfo key with its signature algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pkix_public_key: Option<PkixPublicKey>,
}

/// A PKIX public key, as Binary Authorization's `PkixPublicKey`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct PkixPublicKey {
    /// PEM-encoded SubjectPublicKeyInfo (`-----BEGIN PUBLIC KEY-----`), at most 16 KiB.
    #[schemars(length(max = super::limits::PEM_KEY))]
    pub public_key_pem: String,
    /// Algorithm the key signs with; must match the key's type, curve and size.
    pub signature_algorithm: SignatureAlgorithm,
}

/// What the controller found out about an attestor.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AttestorStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (every key parsed and at least one can sign) and `KeyExpiringSoon`.
    #[serde(default)]
    #[schemars(schema_with = "crate::crd::conditions::schema")]
    pub conditions: Vec<Condition>,
    /// Number of keys that can verify signatures now.
    #[serde(default)]
    pub usable_keys: i32,
    /// One entry per key of the spec, in spec order.
    #[serde(default)]
    pub keys: Vec<KeyStatus>,
}

/// What the controller found out about one key.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct KeyStatus {
    /// The key id signatures must name (computed for PGP; default or given for PKIX).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `PGP` or `PKIX`.
    pub kind: String,
    /// Key algorithm and size, e.g. `RSA 3072` or `ECDSA_P256_SHA256`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// PGP v4 fingerprint, or SHA-256 of the DER key for PKIX.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// When the key was created, if the key says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<Time>,
    /// When the key expires, if it does.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Time>,
    /// Whether the key can verify signatures now.
    pub can_sign: bool,
    /// Why not, when it cannot (parse error, revoked, expired, mismatch, weak algorithm).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub problem: Option<String>,
}
