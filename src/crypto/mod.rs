//! placeholder until the crypto module lands
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Google's PkixPublicKey.signatureAlgorithm enum plus ED25519.
#[allow(non_camel_case_types, missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
pub enum SignatureAlgorithm {
    RSA_PSS_2048_SHA256,
    RSA_SIGN_PSS_2048_SHA256,
    RSA_PSS_3072_SHA256,
    RSA_SIGN_PSS_3072_SHA256,
    RSA_PSS_4096_SHA256,
    RSA_SIGN_PSS_4096_SHA256,
    RSA_PSS_4096_SHA512,
    RSA_SIGN_PSS_4096_SHA512,
    RSA_SIGN_PKCS1_2048_SHA256,
    RSA_SIGN_PKCS1_3072_SHA256,
    RSA_SIGN_PKCS1_4096_SHA256,
    RSA_SIGN_PKCS1_4096_SHA512,
    ECDSA_P256_SHA256,
    EC_SIGN_P256_SHA256,
    ECDSA_P384_SHA384,
    EC_SIGN_P384_SHA384,
    ECDSA_P521_SHA512,
    EC_SIGN_P521_SHA512,
    ED25519,
}

// ---- temporary stub surface, replaced when the crypto module lands ----
#[allow(missing_docs)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyKind {
    Pgp,
    Pkix,
}
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyProblem {
    Revoked,
    Expired,
    NotYetValid,
    CannotSign,
    WeakAlgorithm(String),
    AlgorithmMismatch(String),
}
impl std::fmt::Display for KeyProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{self:?}")
    }
}
#[allow(missing_docs)]
#[derive(Clone, Debug)]
pub struct KeyFacts {
    pub id: String,
    pub kind: KeyKind,
    pub algorithm: String,
    pub fingerprint: String,
    pub created: Option<jiff::Timestamp>,
    pub expires: Option<jiff::Timestamp>,
    pub can_sign: bool,
    pub problems: Vec<KeyProblem>,
}
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{0}")]
    Invalid(String),
}
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum SignatureError {
    #[error("{0}")]
    BadSignature(String),
    #[error("revoked")]
    KeyRevoked,
    #[error("expired")]
    KeyExpired,
    #[error("{0}")]
    Malformed(String),
    #[error("missing payload")]
    MissingPayload,
}
#[allow(missing_docs)]
#[derive(Debug)]
pub enum PublicKey {
    Pgp(pgp::PgpPublicKey),
    Pkix(pkix::PkixPublicKey),
}
#[allow(missing_docs)]
impl PublicKey {
    pub fn id(&self) -> &str {
        match self {
            Self::Pgp(k) => k.fingerprint(),
            Self::Pkix(k) => &k.0,
        }
    }
    pub fn facts(&self, _now: jiff::Timestamp) -> KeyFacts {
        unimplemented_facts()
    }
    pub fn verify(
        &self,
        _signature: &[u8],
        _payload: Option<&[u8]>,
        _now: jiff::Timestamp,
    ) -> Result<Vec<u8>, SignatureError> {
        Err(SignatureError::Malformed("stub".into()))
    }
}
fn unimplemented_facts() -> KeyFacts {
    KeyFacts {
        id: String::new(),
        kind: KeyKind::Pgp,
        algorithm: String::new(),
        fingerprint: String::new(),
        created: None,
        expires: None,
        can_sign: false,
        problems: vec![],
    }
}
#[allow(missing_docs)]
pub mod pgp {
    pub use super::signing_stub::PgpSignMode;
    pub fn sign(
        k: &[u8],
        p: Option<&str>,
        payload: &[u8],
        m: PgpSignMode,
    ) -> Result<Vec<u8>, super::SignError> {
        super::signing_stub::pgp_sign(k, p, payload, m)
    }
    #[derive(Debug)]
    pub struct PgpPublicKey(String);
    impl PgpPublicKey {
        pub fn from_armored(_text: &str) -> Result<Self, super::KeyError> {
            Err(super::KeyError::Invalid("stub".into()))
        }
        pub fn fingerprint(&self) -> &str {
            &self.0
        }
    }
}
#[allow(missing_docs)]
pub mod pkix {
    pub fn sign(
        k: &str,
        a: super::SignatureAlgorithm,
        payload: &[u8],
        pae: bool,
    ) -> Result<Vec<u8>, super::SignError> {
        super::signing_stub::pkix_sign(k, a, payload, pae)
    }
    #[derive(Debug)]
    pub struct PkixPublicKey(pub String);
    impl PkixPublicKey {
        pub fn from_pem(
            _pem: &str,
            _algorithm: super::SignatureAlgorithm,
            _id: Option<&str>,
        ) -> Result<Self, super::KeyError> {
            Err(super::KeyError::Invalid("stub".into()))
        }
    }
}
#[allow(missing_docs)]
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{0}")]
    Invalid(String),
}
#[allow(missing_docs)]
pub mod signing_stub {
    #[derive(Clone, Copy, Debug)]
    pub enum PgpSignMode {
        Attached,
        Detached,
        Clearsign,
    }
    pub fn pgp_sign(
        _k: &[u8],
        _p: Option<&str>,
        _payload: &[u8],
        _m: PgpSignMode,
    ) -> Result<Vec<u8>, super::SignError> {
        Err(super::SignError::Invalid("stub".into()))
    }
    pub fn pkix_sign(
        _k: &str,
        _a: super::SignatureAlgorithm,
        _payload: &[u8],
        _pae: bool,
    ) -> Result<Vec<u8>, super::SignError> {
        Err(super::SignError::Invalid("stub".into()))
    }
}
impl std::str::FromStr for SignatureAlgorithm {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Err(s.into())
    }
}
