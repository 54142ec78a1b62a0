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
