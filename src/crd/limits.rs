//! Size limits of the custom resources, enforced by the API server through the CRD schemas
//! (`maxLength`, `maxItems`, `maxProperties`) and by the offline decoder alike.
//!
//! They are generous for real use (a gcloud payload is about 300 bytes, a cosign one under
//! 1 KiB) and keep what every replica holds per object bounded: without them, a namespace user
//! could create attestations of megabytes and exhaust the memory of every replica. The largest
//! attestation they allow is about 220 KB, so a list page of 500 (`trust::watch`) stays near
//! 110 MB even when every object is hostile. Strings are counted in characters, as the API
//! server does.

/// Base64 characters of `serializedPayload`: 16 KiB of payload.
pub const PAYLOAD: usize = 21_848;
/// Characters of one signature (an attached PGP signature carries its payload: 16 KiB of
/// payload armored fits).
pub const SIGNATURE: usize = 24 * 1024;
/// Signatures in one attestation (each is tried against the attestor's keys).
pub const SIGNATURES: usize = 8;
/// Characters of a key id (PGP fingerprint, PKIX URI, Cloud KMS resource name).
pub const KEY_ID: usize = 1024;
/// Characters of an image reference or an allowlist pattern.
pub const ARTIFACT_URL: usize = 1024;
/// Characters of an object name (a DNS subdomain).
pub const NAME: usize = 253;
/// Characters of a description or comment.
pub const DESCRIPTION: usize = 4096;
/// Keys of one attestor.
pub const PUBLIC_KEYS: usize = 32;
/// Characters of an armored PGP public key (`gpg --armor --export`).
pub const PGP_KEY: usize = 128 * 1024;
/// Characters of a PEM public key.
pub const PEM_KEY: usize = 16 * 1024;
/// Allowlist patterns of one policy.
pub const PATTERNS: usize = 1024;
/// Namespace or service-account rules of one policy.
pub const RULES: usize = 4096;
/// Attestors one rule requires.
pub const REQUIRED_ATTESTORS: usize = 64;
/// Repositories one Attestor syncs signatures from.
pub const REPOSITORIES: usize = 64;
