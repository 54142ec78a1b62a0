//! Keys and signatures: OpenPGP (sequoia) and PKIX (aws-lc-rs), parse, verify and sign.
//!
//! Pure and synchronous. Key ids follow Google Binary Authorization: a PGP key is named by the
//! upper-case 40-hex v4 fingerprint of its primary key, a PKIX key by an RFC 3986 URI (by default
//! `ni:///sha-256;` + unpadded base64url of SHA-256 over the DER SubjectPublicKeyInfo).

pub mod pgp;
pub mod pkix;

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Largest key, signature or secret-key input accepted (1 MiB); bigger inputs are refused unread.
pub const MAX_INPUT_LEN: usize = 1024 * 1024;

/// DSSE payload type of cosign simple-signing payloads, signed by `gcloud --pae-encode-payload`.
pub const SIMPLESIGNING_DSSE_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// DSSE pre-authentication encoding: "DSSEv1" SP len(type) SP type SP len(payload) SP payload.
pub fn dsse_pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let head = format!(
        "DSSEv1 {} {} {} ",
        payload_type.len(),
        payload_type,
        payload.len()
    );
    let mut out = Vec::with_capacity(head.len() + payload.len());
    out.extend_from_slice(head.as_bytes());
    out.extend_from_slice(payload);
    out
}

/// Google's `PkixPublicKey.signatureAlgorithm` enum (all 18 names, aliases included) plus ED25519.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SignatureAlgorithm {
    /// RSASSA-PSS, 2048-bit modulus, SHA-256.
    #[serde(rename = "RSA_PSS_2048_SHA256")]
    RsaPss2048Sha256,
    /// Alias of `RSA_PSS_2048_SHA256` (Cloud KMS spelling).
    #[serde(rename = "RSA_SIGN_PSS_2048_SHA256")]
    RsaSignPss2048Sha256,
    /// RSASSA-PSS, 3072-bit modulus, SHA-256.
    #[serde(rename = "RSA_PSS_3072_SHA256")]
    RsaPss3072Sha256,
    /// Alias of `RSA_PSS_3072_SHA256` (Cloud KMS spelling).
    #[serde(rename = "RSA_SIGN_PSS_3072_SHA256")]
    RsaSignPss3072Sha256,
    /// RSASSA-PSS, 4096-bit modulus, SHA-256.
    #[serde(rename = "RSA_PSS_4096_SHA256")]
    RsaPss4096Sha256,
    /// Alias of `RSA_PSS_4096_SHA256` (Cloud KMS spelling).
    #[serde(rename = "RSA_SIGN_PSS_4096_SHA256")]
    RsaSignPss4096Sha256,
    /// RSASSA-PSS, 4096-bit modulus, SHA-512.
    #[serde(rename = "RSA_PSS_4096_SHA512")]
    RsaPss4096Sha512,
    /// Alias of `RSA_PSS_4096_SHA512` (Cloud KMS spelling).
    #[serde(rename = "RSA_SIGN_PSS_4096_SHA512")]
    RsaSignPss4096Sha512,
    /// RSASSA-PKCS1-v1_5, 2048-bit modulus, SHA-256.
    #[serde(rename = "RSA_SIGN_PKCS1_2048_SHA256")]
    RsaSignPkcs12048Sha256,
    /// RSASSA-PKCS1-v1_5, 3072-bit modulus, SHA-256.
    #[serde(rename = "RSA_SIGN_PKCS1_3072_SHA256")]
    RsaSignPkcs13072Sha256,
    /// RSASSA-PKCS1-v1_5, 4096-bit modulus, SHA-256.
    #[serde(rename = "RSA_SIGN_PKCS1_4096_SHA256")]
    RsaSignPkcs14096Sha256,
    /// RSASSA-PKCS1-v1_5, 4096-bit modulus, SHA-512.
    #[serde(rename = "RSA_SIGN_PKCS1_4096_SHA512")]
    RsaSignPkcs14096Sha512,
    /// ECDSA on P-256 with SHA-256, ASN.1 DER signatures.
    #[serde(rename = "ECDSA_P256_SHA256")]
    EcdsaP256Sha256,
    /// Alias of `ECDSA_P256_SHA256` (Cloud KMS spelling).
    #[serde(rename = "EC_SIGN_P256_SHA256")]
    EcSignP256Sha256,
    /// ECDSA on P-384 with SHA-384, ASN.1 DER signatures.
    #[serde(rename = "ECDSA_P384_SHA384")]
    EcdsaP384Sha384,
    /// Alias of `ECDSA_P384_SHA384` (Cloud KMS spelling).
    #[serde(rename = "EC_SIGN_P384_SHA384")]
    EcSignP384Sha384,
    /// ECDSA on P-521 with SHA-512, ASN.1 DER signatures.
    #[serde(rename = "ECDSA_P521_SHA512")]
    EcdsaP521Sha512,
    /// Alias of `ECDSA_P521_SHA512` (Cloud KMS spelling).
    #[serde(rename = "EC_SIGN_P521_SHA512")]
    EcSignP521Sha512,
    /// Ed25519 (RFC 8032, pure: the payload itself is signed). Not in Google's enum.
    #[serde(rename = "ED25519")]
    Ed25519,
}

/// Digest applied to the payload before signing (Ed25519 hashes internally).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HashAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-384.
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlgorithm {
    /// Digest length in bytes.
    pub fn output_len(self) -> usize {
        match self {
            Self::Sha256 => 32,
            Self::Sha384 => 48,
            Self::Sha512 => 64,
        }
    }

    /// Display name, e.g. "SHA-256".
    pub fn name(self) -> &'static str {
        match self {
            Self::Sha256 => "SHA-256",
            Self::Sha384 => "SHA-384",
            Self::Sha512 => "SHA-512",
        }
    }
}

/// Kind of key a signature algorithm needs, with its exact size or curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyShape {
    /// RSA key with exactly this many modulus bits.
    Rsa(u32),
    /// EC key on NIST P-256.
    P256,
    /// EC key on NIST P-384.
    P384,
    /// EC key on NIST P-521.
    P521,
    /// Ed25519 key.
    Ed25519,
}

impl fmt::Display for KeyShape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Rsa(bits) => write!(f, "an RSA {bits}-bit key"),
            Self::P256 => f.write_str("an EC P-256 key"),
            Self::P384 => f.write_str("an EC P-384 key"),
            Self::P521 => f.write_str("an EC P-521 key"),
            Self::Ed25519 => f.write_str("an Ed25519 key"),
        }
    }
}

/// Signature scheme family of an algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SignatureScheme {
    /// RSASSA-PSS with MGF1 over the same hash.
    RsaPss,
    /// RSASSA-PKCS1-v1_5.
    RsaPkcs1,
    /// ECDSA with ASN.1 DER `SEQUENCE { r, s }` signatures.
    Ecdsa,
    /// Ed25519.
    Ed25519,
}

impl SignatureAlgorithm {
    /// Every algorithm, Google's enum order, then ED25519.
    pub const ALL: [Self; 19] = [
        Self::RsaPss2048Sha256,
        Self::RsaSignPss2048Sha256,
        Self::RsaPss3072Sha256,
        Self::RsaSignPss3072Sha256,
        Self::RsaPss4096Sha256,
        Self::RsaSignPss4096Sha256,
        Self::RsaPss4096Sha512,
        Self::RsaSignPss4096Sha512,
        Self::RsaSignPkcs12048Sha256,
        Self::RsaSignPkcs13072Sha256,
        Self::RsaSignPkcs14096Sha256,
        Self::RsaSignPkcs14096Sha512,
        Self::EcdsaP256Sha256,
        Self::EcSignP256Sha256,
        Self::EcdsaP384Sha384,
        Self::EcSignP384Sha384,
        Self::EcdsaP521Sha512,
        Self::EcSignP521Sha512,
        Self::Ed25519,
    ];

    /// The enum name as Google spells it, e.g. `ECDSA_P256_SHA256`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RsaPss2048Sha256 => "RSA_PSS_2048_SHA256",
            Self::RsaSignPss2048Sha256 => "RSA_SIGN_PSS_2048_SHA256",
            Self::RsaPss3072Sha256 => "RSA_PSS_3072_SHA256",
            Self::RsaSignPss3072Sha256 => "RSA_SIGN_PSS_3072_SHA256",
            Self::RsaPss4096Sha256 => "RSA_PSS_4096_SHA256",
            Self::RsaSignPss4096Sha256 => "RSA_SIGN_PSS_4096_SHA256",
            Self::RsaPss4096Sha512 => "RSA_PSS_4096_SHA512",
            Self::RsaSignPss4096Sha512 => "RSA_SIGN_PSS_4096_SHA512",
            Self::RsaSignPkcs12048Sha256 => "RSA_SIGN_PKCS1_2048_SHA256",
            Self::RsaSignPkcs13072Sha256 => "RSA_SIGN_PKCS1_3072_SHA256",
            Self::RsaSignPkcs14096Sha256 => "RSA_SIGN_PKCS1_4096_SHA256",
            Self::RsaSignPkcs14096Sha512 => "RSA_SIGN_PKCS1_4096_SHA512",
            Self::EcdsaP256Sha256 => "ECDSA_P256_SHA256",
            Self::EcSignP256Sha256 => "EC_SIGN_P256_SHA256",
            Self::EcdsaP384Sha384 => "ECDSA_P384_SHA384",
            Self::EcSignP384Sha384 => "EC_SIGN_P384_SHA384",
            Self::EcdsaP521Sha512 => "ECDSA_P521_SHA512",
            Self::EcSignP521Sha512 => "EC_SIGN_P521_SHA512",
            Self::Ed25519 => "ED25519",
        }
    }

    /// gcloud's `--pkix-public-key-algorithm` choice, e.g. `ecdsa-p256-sha256`.
    pub fn gcloud_name(self) -> String {
        self.as_str().to_ascii_lowercase().replace('_', "-")
    }

    /// The primary spelling of an alias pair (`EC_SIGN_P256_SHA256` -> `ECDSA_P256_SHA256`).
    pub fn canonical(self) -> Self {
        match self {
            Self::RsaSignPss2048Sha256 => Self::RsaPss2048Sha256,
            Self::RsaSignPss3072Sha256 => Self::RsaPss3072Sha256,
            Self::RsaSignPss4096Sha256 => Self::RsaPss4096Sha256,
            Self::RsaSignPss4096Sha512 => Self::RsaPss4096Sha512,
            Self::EcSignP256Sha256 => Self::EcdsaP256Sha256,
            Self::EcSignP384Sha384 => Self::EcdsaP384Sha384,
            Self::EcSignP521Sha512 => Self::EcdsaP521Sha512,
            other => other,
        }
    }

    /// Signature scheme family.
    pub fn scheme(self) -> SignatureScheme {
        match self.canonical() {
            Self::RsaPss2048Sha256
            | Self::RsaPss3072Sha256
            | Self::RsaPss4096Sha256
            | Self::RsaPss4096Sha512 => SignatureScheme::RsaPss,
            Self::RsaSignPkcs12048Sha256
            | Self::RsaSignPkcs13072Sha256
            | Self::RsaSignPkcs14096Sha256
            | Self::RsaSignPkcs14096Sha512 => SignatureScheme::RsaPkcs1,
            Self::Ed25519 => SignatureScheme::Ed25519,
            _ => SignatureScheme::Ecdsa,
        }
    }

    /// The key this algorithm needs: family plus exact modulus size or curve (as Google checks).
    pub fn key_shape(self) -> KeyShape {
        match self.canonical() {
            Self::RsaPss2048Sha256 | Self::RsaSignPkcs12048Sha256 => KeyShape::Rsa(2048),
            Self::RsaPss3072Sha256 | Self::RsaSignPkcs13072Sha256 => KeyShape::Rsa(3072),
            Self::EcdsaP256Sha256 => KeyShape::P256,
            Self::EcdsaP384Sha384 => KeyShape::P384,
            Self::EcdsaP521Sha512 => KeyShape::P521,
            Self::Ed25519 => KeyShape::Ed25519,
            _ => KeyShape::Rsa(4096),
        }
    }

    /// Digest over the payload; `None` for Ed25519, which signs the message itself.
    pub fn hash(self) -> Option<HashAlgorithm> {
        match self.canonical() {
            Self::Ed25519 => None,
            Self::EcdsaP384Sha384 => Some(HashAlgorithm::Sha384),
            Self::RsaPss4096Sha512 | Self::RsaSignPkcs14096Sha512 | Self::EcdsaP521Sha512 => {
                Some(HashAlgorithm::Sha512)
            }
            _ => Some(HashAlgorithm::Sha256),
        }
    }

    /// Human description, e.g. "ECDSA P-256 with SHA-256".
    pub fn description(self) -> String {
        let hash = self.hash().map(HashAlgorithm::name).unwrap_or_default();
        match (self.scheme(), self.key_shape()) {
            (SignatureScheme::RsaPss, KeyShape::Rsa(bits)) => {
                format!("RSASSA-PSS {bits} bit with {hash}")
            }
            (SignatureScheme::RsaPkcs1, KeyShape::Rsa(bits)) => {
                format!("RSASSA-PKCS1-v1_5 {bits} bit with {hash}")
            }
            (_, KeyShape::P256) => format!("ECDSA P-256 with {hash}"),
            (_, KeyShape::P384) => format!("ECDSA P-384 with {hash}"),
            (_, KeyShape::P521) => format!("ECDSA P-521 with {hash}"),
            _ => "Ed25519".to_string(),
        }
    }
}

impl fmt::Display for SignatureAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown signature algorithm name; the message lists the valid ones.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error(
    "unknown signatureAlgorithm {given:?}: use one of {}, or gcloud's lower-case dashed form (e.g. ecdsa-p256-sha256)",
    valid_names()
)]
pub struct UnknownAlgorithm {
    /// The name that was given.
    pub given: String,
}

fn valid_names() -> String {
    SignatureAlgorithm::ALL
        .iter()
        .map(|a| a.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

impl FromStr for SignatureAlgorithm {
    type Err = UnknownAlgorithm;

    /// Accepts the enum name (`ECDSA_P256_SHA256`) and gcloud's choice (`ecdsa-p256-sha256`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalized = s.trim().to_ascii_uppercase().replace('-', "_");
        Self::ALL
            .into_iter()
            .find(|a| a.as_str() == normalized)
            .ok_or_else(|| UnknownAlgorithm {
                given: s.to_string(),
            })
    }
}

/// Which kind of key: OpenPGP or PKIX (PEM SubjectPublicKeyInfo).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum KeyKind {
    /// An OpenPGP certificate.
    #[serde(rename = "PGP")]
    Pgp,
    /// A PKIX public key with a signature algorithm.
    #[serde(rename = "PKIX")]
    Pkix,
}

impl fmt::Display for KeyKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Pgp => "PGP",
            Self::Pkix => "PKIX",
        })
    }
}

/// Why a parsed key cannot (or should not) be trusted for new signatures.
#[derive(Clone, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum KeyProblem {
    /// The certificate or its primary key is revoked.
    #[error("the key is revoked; signatures made with it are no longer accepted")]
    Revoked,
    /// The certificate's primary key has expired.
    #[error(
        "the key has expired; extend it (gpg --quick-set-expire FINGERPRINT 1y) and publish the public key again"
    )]
    Expired,
    /// The key's creation time is in the future.
    #[error("the key was created in the future; check the clock of the machine that made it")]
    NotYetValid,
    /// The key has no live, non-revoked signing-capable (sub)key.
    #[error(
        "the key has no live signing-capable key or subkey; add one (gpg --quick-add-key FINGERPRINT ed25519 sign) and publish the public key again"
    )]
    CannotSign,
    /// An algorithm (key or binding-signature hash) is rejected by sequoia's standard policy.
    #[error("the key uses an algorithm that is considered too weak: {0}")]
    WeakAlgorithm(String),
    /// The key does not fit the declared signature algorithm.
    #[error("the key does not match its declared algorithm: {0}")]
    AlgorithmMismatch(String),
    /// The key text also holds secret key material; only the public part is used.
    #[error(
        "the key text holds SECRET key material (only the public part is used); replace it with the output of gpg --armor --export FINGERPRINT and treat the secret key as exposed"
    )]
    SecretKeyMaterial,
    /// The certificate is not usable under sequoia's standard policy for another reason.
    #[error("the key is not usable: {0}")]
    Unusable(String),
}

/// What we know about a key, for status reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyFacts {
    /// Key id (PGP fingerprint or PKIX URI).
    pub id: String,
    /// PGP or PKIX.
    pub kind: KeyKind,
    /// Key algorithm, e.g. "RSA 3072", "EdDSA Ed25519", "ECDSA P-256 with SHA-256".
    pub algorithm: String,
    /// PGP: 40-hex fingerprint; PKIX: lower-case hex SHA-256 of the DER SubjectPublicKeyInfo.
    pub fingerprint: String,
    /// Creation time (PGP only).
    pub created: Option<jiff::Timestamp>,
    /// Expiry time of the primary key (PGP only, if it expires).
    pub expires: Option<jiff::Timestamp>,
    /// Whether a live signing-capable key exists now.
    pub can_sign: bool,
    /// Everything that is wrong with the key.
    pub problems: Vec<KeyProblem>,
}

/// A verification key: OpenPGP certificate or PKIX public key.
#[derive(Clone, Debug)]
pub enum PublicKey {
    /// OpenPGP certificate.
    Pgp(pgp::PgpPublicKey),
    /// PKIX public key with its algorithm.
    Pkix(pkix::PkixPublicKey),
}

impl PublicKey {
    /// Key id that attestations name in `publicKeyId`.
    pub fn id(&self) -> &str {
        match self {
            Self::Pgp(k) => k.fingerprint(),
            Self::Pkix(k) => k.id(),
        }
    }

    /// PGP or PKIX.
    pub fn kind(&self) -> KeyKind {
        match self {
            Self::Pgp(_) => KeyKind::Pgp,
            Self::Pkix(_) => KeyKind::Pkix,
        }
    }

    /// Whether `key_id` names this key: exact for PKIX, hex case and spaces ignored for PGP.
    pub fn matches_id(&self, key_id: &str) -> bool {
        match self {
            Self::Pgp(k) => pgp::normalize_fingerprint(key_id).as_deref() == Some(k.fingerprint()),
            Self::Pkix(k) => k.id() == key_id,
        }
    }

    /// Facts and problems of the key as of `now`.
    pub fn facts(&self, now: jiff::Timestamp) -> KeyFacts {
        match self {
            Self::Pgp(k) => k.facts(now),
            Self::Pkix(k) => k.facts(),
        }
    }

    /// Verify one signature; returns the bytes that the signature proves were signed (for PGP attached/clearsigned: the signed literal data; for detached PGP and PKIX: the given payload).
    pub fn verify(
        &self,
        signature: &[u8],
        payload: Option<&[u8]>,
        now: jiff::Timestamp,
    ) -> Result<Vec<u8>, SignatureError> {
        match self {
            Self::Pgp(k) => k.verify(signature, payload, now),
            Self::Pkix(k) => k.verify(signature, payload),
        }
    }
}

/// A key that cannot be parsed or does not fit its declared algorithm or id.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    /// Input over [`MAX_INPUT_LEN`].
    #[error(
        "{input} is {len} bytes; the limit is 1 MiB (1048576 bytes): give just the one public key"
    )]
    TooLarge {
        /// Which input.
        input: &'static str,
        /// Its length.
        len: usize,
    },
    /// Nothing but whitespace.
    #[error("{input} is empty: {fix}")]
    Empty {
        /// Which input.
        input: &'static str,
        /// How to get a valid one.
        fix: &'static str,
    },
    /// The input is not what the field expects (message instead of key, certificate, ...).
    #[error("{input} holds {found}, not {expected}: {fix}")]
    WrongKind {
        /// Which input.
        input: &'static str,
        /// What was found.
        found: String,
        /// What the field needs.
        expected: &'static str,
        /// How to get the right thing.
        fix: String,
    },
    /// Several keys where exactly one is expected.
    #[error("{input} holds {count} keys ({names}); give exactly one: {fix}")]
    SeveralKeys {
        /// Which input.
        input: &'static str,
        /// How many.
        count: usize,
        /// Their fingerprints or labels.
        names: String,
        /// How to export a single key.
        fix: &'static str,
    },
    /// The bytes do not parse.
    #[error("{input} is malformed: {reason}; {fix}")]
    Malformed {
        /// Which input.
        input: &'static str,
        /// What is wrong.
        reason: String,
        /// How to get a valid one.
        fix: &'static str,
    },
    /// A key type or version this implementation does not handle.
    #[error("{input}: {reason}")]
    Unsupported {
        /// Which input.
        input: &'static str,
        /// What is unsupported and what to use instead.
        reason: String,
    },
    /// The key does not fit `signatureAlgorithm`.
    #[error(
        "publicKeyPem holds {found}, but signatureAlgorithm {algorithm} needs {needed}: set signatureAlgorithm to match the key, or give the right key"
    )]
    AlgorithmMismatch {
        /// The declared algorithm.
        algorithm: SignatureAlgorithm,
        /// What the key is.
        found: String,
        /// What the algorithm needs.
        needed: KeyShape,
    },
    /// A custom PKIX key id that is not an RFC 3986 URI reference.
    #[error(
        "key id {id:?} is not an RFC 3986 URI ({reason}): use a URI such as ni:///sha-256;... or //cloudkms.googleapis.com/v1/..., or leave the id empty for the default"
    )]
    InvalidKeyId {
        /// The given id.
        id: String,
        /// Why it is invalid.
        reason: String,
    },
}

/// A signature that does not prove the payload was signed by the key.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    /// The signature does not verify with this key.
    #[error("bad signature: {0}")]
    BadSignature(String),
    /// The key (or the subkey that signed) is revoked.
    #[error(
        "the key that made this signature is revoked; sign again with a valid key of the attestor"
    )]
    KeyRevoked,
    /// The key (or the subkey that signed) has expired.
    #[error(
        "the key that made this signature has expired; extend it (gpg --quick-set-expire) and publish the public key again, or sign with a valid key"
    )]
    KeyExpired,
    /// The signature bytes are not a signature of the expected form.
    #[error("malformed signature: {0}")]
    Malformed(String),
    /// A detached signature was given without the payload it signs.
    #[error(
        "the signature is detached but no payload was given: set serializedPayload to the exact bytes that were signed"
    )]
    MissingPayload,
    /// Signature input over [`MAX_INPUT_LEN`].
    #[error("the signature is {0} bytes; the limit is 1 MiB (1048576 bytes)")]
    TooLarge(usize),
}

/// Signing failed: unusable key file, wrong passphrase, wrong key type.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum SignError {
    /// Key file over [`MAX_INPUT_LEN`].
    #[error(
        "the key file is {0} bytes; the limit is 1 MiB (1048576 bytes): give just the one secret key"
    )]
    TooLarge(usize),
    /// The key file is empty.
    #[error("the key file is empty: {0}")]
    Empty(&'static str),
    /// The PGP key file holds only a public key.
    #[error(
        "the key file holds a public key only; export the secret key with gpg --armor --export-secret-keys FINGERPRINT > key.asc"
    )]
    PublicKeyOnly,
    /// The key file does not parse.
    #[error("the key file is malformed: {0}")]
    Malformed(String),
    /// The key file holds several keys.
    #[error(
        "the key file holds {0} keys; export exactly one: gpg --armor --export-secret-keys FINGERPRINT"
    )]
    SeveralKeys(usize),
    /// The secret key is encrypted and no passphrase was given.
    #[error("the secret key is protected by a passphrase; give the passphrase")]
    PassphraseRequired,
    /// The passphrase does not decrypt the key.
    #[error("the passphrase does not decrypt the secret key: {0}")]
    BadPassphrase(String),
    /// No usable signing key in the PGP key.
    #[error("{0}")]
    NoSigningKey(String),
    /// The private key does not fit the requested algorithm.
    #[error(
        "the private key is {found}, but {algorithm} needs {needed}: pick the algorithm that matches the key, or the right key"
    )]
    WrongKeyType {
        /// Requested algorithm.
        algorithm: SignatureAlgorithm,
        /// What the key is.
        found: String,
        /// What the algorithm needs.
        needed: KeyShape,
    },
    /// The key format is not supported.
    #[error("{0}")]
    Unsupported(String),
    /// The crypto library failed to sign.
    #[error("signing failed: {0}")]
    Crypto(String),
}

/// Jiff timestamp to std time (both span the same range in practice).
pub(crate) fn to_system_time(ts: jiff::Timestamp) -> std::time::SystemTime {
    std::time::SystemTime::from(ts)
}

/// Std time to jiff timestamp; `None` if out of jiff's range.
pub(crate) fn to_timestamp(t: std::time::SystemTime) -> Option<jiff::Timestamp> {
    jiff::Timestamp::try_from(t).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn algorithm_names_round_trip() {
        for alg in SignatureAlgorithm::ALL {
            assert_eq!(alg.as_str().parse::<SignatureAlgorithm>(), Ok(alg));
            assert_eq!(alg.gcloud_name().parse::<SignatureAlgorithm>(), Ok(alg));
            let json = serde_json::to_string(&alg).unwrap_or_default();
            assert_eq!(json, format!("\"{}\"", alg.as_str()));
            let back: SignatureAlgorithm = serde_json::from_str(&json).unwrap();
            assert_eq!(back, alg);
        }
        assert_eq!(
            "ecdsa-p256-sha256".parse::<SignatureAlgorithm>(),
            Ok(SignatureAlgorithm::EcdsaP256Sha256)
        );
        assert_eq!(
            "rsa-sign-pkcs1-4096-sha512".parse::<SignatureAlgorithm>(),
            Ok(SignatureAlgorithm::RsaSignPkcs14096Sha512)
        );
        let names: std::collections::HashSet<_> =
            SignatureAlgorithm::ALL.iter().map(|a| a.as_str()).collect();
        assert_eq!(names.len(), 19);
    }

    #[test]
    fn unknown_algorithm_lists_valid_names() {
        let err = "ecdsa-p257-sha256"
            .parse::<SignatureAlgorithm>()
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("ecdsa-p257-sha256"), "{msg}");
        assert!(msg.contains("ECDSA_P256_SHA256"), "{msg}");
        assert!(msg.contains("RSA_SIGN_PSS_4096_SHA512"), "{msg}");
        assert!(msg.contains("ED25519"), "{msg}");
        assert!(
            "SIGNATURE_ALGORITHM_UNSPECIFIED"
                .parse::<SignatureAlgorithm>()
                .is_err()
        );
        assert!("".parse::<SignatureAlgorithm>().is_err());
    }

    #[test]
    fn aliases_share_hash_and_key_shape() {
        use SignatureAlgorithm as A;
        let pairs = [
            (A::RsaPss2048Sha256, A::RsaSignPss2048Sha256),
            (A::RsaPss3072Sha256, A::RsaSignPss3072Sha256),
            (A::RsaPss4096Sha256, A::RsaSignPss4096Sha256),
            (A::RsaPss4096Sha512, A::RsaSignPss4096Sha512),
            (A::EcdsaP256Sha256, A::EcSignP256Sha256),
            (A::EcdsaP384Sha384, A::EcSignP384Sha384),
            (A::EcdsaP521Sha512, A::EcSignP521Sha512),
        ];
        for (a, b) in pairs {
            assert_eq!(b.canonical(), a);
            assert_eq!(a.hash(), b.hash());
            assert_eq!(a.key_shape(), b.key_shape());
            assert_eq!(a.scheme(), b.scheme());
        }
        assert_eq!(A::EcdsaP384Sha384.hash(), Some(HashAlgorithm::Sha384));
        assert_eq!(A::EcdsaP521Sha512.hash(), Some(HashAlgorithm::Sha512));
        assert_eq!(
            A::RsaSignPkcs14096Sha512.hash(),
            Some(HashAlgorithm::Sha512)
        );
        assert_eq!(A::RsaSignPkcs13072Sha256.key_shape(), KeyShape::Rsa(3072));
        assert_eq!(A::RsaPss4096Sha512.scheme(), SignatureScheme::RsaPss);
        assert_eq!(A::Ed25519.hash(), None);
    }

    #[test]
    fn json_schema_lists_all_names() {
        let schema = schemars::schema_for!(SignatureAlgorithm);
        let text = serde_json::to_string(&schema).unwrap_or_default();
        for alg in SignatureAlgorithm::ALL {
            assert!(text.contains(&format!("\"{}\"", alg.as_str())), "{text}");
        }
        let kind = serde_json::to_string(&schemars::schema_for!(KeyKind)).unwrap_or_default();
        assert!(
            kind.contains("\"PGP\"") && kind.contains("\"PKIX\""),
            "{kind}"
        );
    }

    #[test]
    fn keys_can_be_shared_across_threads() {
        fn shareable<T: Send + Sync + Clone + 'static>() {}
        shareable::<PublicKey>();
        shareable::<KeyFacts>();
        shareable::<SignatureError>();
    }

    #[test]
    fn pae_matches_dsse_spec() {
        // Test vector from the DSSE protocol description.
        assert_eq!(
            dsse_pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
        let pae = dsse_pae(SIMPLESIGNING_DSSE_TYPE, &[b'x'; 298]);
        assert!(
            pae.starts_with(b"DSSEv1 48 application/vnd.dev.cosign.simplesigning.v1+json 298 xx")
        );
        assert_eq!(dsse_pae("", b""), b"DSSEv1 0  0 ".to_vec());
    }
}
