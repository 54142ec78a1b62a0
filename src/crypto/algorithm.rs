//! The signature algorithms: Google's `PkixPublicKey.signatureAlgorithm` names (and gcloud's
//! spellings), and what each means for the key and the signature.

use std::fmt;
use std::str::FromStr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

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

impl KeyShape {
    /// The algorithms that fit this key (canonical names only).
    pub fn algorithms(self) -> Vec<SignatureAlgorithm> {
        SignatureAlgorithm::ALL
            .into_iter()
            .filter(|a| a.canonical() == *a && a.key_shape() == self)
            .collect()
    }

    /// The one algorithm that fits, when only one does (EC curves, Ed25519); RSA keys have a
    /// choice of padding and hash.
    pub fn only_algorithm(self) -> Option<SignatureAlgorithm> {
        match self.algorithms().as_slice() {
            [one] => Some(*one),
            _ => None,
        }
    }
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
