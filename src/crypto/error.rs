//! Why a key, a signature or a signing attempt was refused.

use super::*;

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
