//! Keys and signatures: OpenPGP (sequoia) and PKIX (aws-lc-rs), parse, verify and sign.
//!
//! Pure and synchronous. Key ids follow Google Binary Authorization: a PGP key is named by the
//! upper-case 40-hex v4 fingerprint of its primary key, a PKIX key by an RFC 3986 URI (by default
//! `ni:///sha-256;` + unpadded base64url of SHA-256 over the DER SubjectPublicKeyInfo).

mod algorithm;
mod error;
pub mod pgp;
pub mod pkix;

use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

pub use algorithm::{
    HashAlgorithm, KeyShape, SignatureAlgorithm, SignatureScheme, UnknownAlgorithm,
};
pub use error::{KeyError, SignError, SignatureError};

/// Largest key, signature or secret-key input accepted (1 MiB); bigger inputs are refused unread.
pub const MAX_INPUT_LEN: usize = 1024 * 1024;

/// DSSE payload type of cosign simple-signing payloads, signed by `gcloud --pae-encode-payload`.
pub const SIMPLESIGNING_DSSE_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";

/// DSSE payload type of in-toto Statements, as cosign v3 signs them (a Sigstore bundle's DSSE
/// envelope).
pub const IN_TOTO_DSSE_TYPE: &str = "application/vnd.in-toto+json";

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
