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
    /// Where this attestor's cosign signatures live: binauthz fetches them from these
    /// repositories in the background and writes them as ImageAttestations, verified like any
    /// other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry_signatures: Option<RegistrySignatures>,
}

/// Repositories whose cosign signatures (stored next to the images, as cosign v2 and v3 write
/// them) binauthz brings into the cluster as ImageAttestations.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegistrySignatures {
    /// Repositories, `registry/repository` without tag or digest (at most 64), e.g.
    /// `registry.example.com/team/app`; signatures of every image in them are synced.
    #[schemars(length(min = 1, max = super::limits::REPOSITORIES), inner(length(min = 1, max = super::limits::ARTIFACT_URL)))]
    #[x_kube(validation = kube::core::Rule::new(
        "self.all(r, r.matches('^[^@:/\\\\s]+(:[0-9]+)?/[^@:\\\\s]+$'))"
    ).message("repositories are registry/repository, without tag or digest, e.g. registry.example.com/team/app"))]
    pub repositories: Vec<String>,
    /// A `kubernetes.io/dockerconfigjson` Secret in binauthz's namespace with credentials for
    /// the registries; without it, they are read anonymously.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pull_secret: Option<SecretName>,
    /// How often to look for new and removed signatures (e.g. `30s`, `5m`, `1h`; at least
    /// `10s`, at most `24h`). Default `5m`. A denied image of these repositories is also looked
    /// up at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = kube::core::Rule::new(
        "self.matches('^[0-9]+(s|m|h)$')"
    ).message("interval is a number and a unit: s, m or h, e.g. 5m"))]
    pub interval: Option<String>,
}

/// A Secret in binauthz's namespace, by name.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct SecretName {
    /// Name of the Secret.
    #[schemars(length(min = 1, max = super::limits::NAME))]
    pub name: String,
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
    /// What the last sync from `spec.registrySignatures` found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub registry: Option<RegistrySyncStatus>,
}

/// The last sync of an attestor's registry signatures.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RegistrySyncStatus {
    /// When the last sync finished.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_sync_time: Option<Time>,
    /// ImageAttestations the syncs keep for this attestor.
    #[serde(default)]
    pub signatures: i32,
    /// Per repository: signatures found and, when its last sync failed, why.
    #[serde(default)]
    pub repositories: Vec<RepositorySyncStatus>,
}

/// The last sync of one repository.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RepositorySyncStatus {
    /// The repository.
    pub repository: String,
    /// Signatures found in it.
    #[serde(default)]
    pub signatures: i32,
    /// Why its last sync failed (what was synced before is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When it last synced without error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success_time: Option<Time>,
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
