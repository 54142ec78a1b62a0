//! PKIX keys: PEM SubjectPublicKeyInfo verification and PEM private-key signing (aws-lc-rs).
//!
//! Signatures are detached and cover the payload bytes or, as `gcloud --pae-encode-payload`
//! writes them, the DSSE PAE encoding of the payload (or of an in-toto Statement, as cosign v3
//! signs it); verification accepts each.

use std::fmt::Write as _;

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self as sig, KeyPair as _, ParsedPublicKey, RsaParameters};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use spki::ObjectIdentifier;

use super::{
    HashAlgorithm, IN_TOTO_DSSE_TYPE, KeyError, KeyFacts, KeyKind, KeyShape, MAX_INPUT_LEN,
    SIMPLESIGNING_DSSE_TYPE, SignError, SignatureAlgorithm, SignatureError, SignatureScheme,
    dsse_pae,
};

const OID_RSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.1");
const OID_RSA_PSS: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.113549.1.1.10");
const OID_EC: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.2.1");
const OID_P256: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10045.3.1.7");
const OID_P384: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.34");
const OID_P521: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.35");
const OID_ED25519: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.112");
const OID_ED448: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.101.113");
const OID_SECP256K1: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.3.132.0.10");
const OID_DSA: ObjectIdentifier = ObjectIdentifier::new_unwrap("1.2.840.10040.4.1");

const PUBLIC_KEY_INPUT: &str = "publicKeyPem";
const PUBLIC_KEY_FIX: &str = "give a PEM `PUBLIC KEY` block (SubjectPublicKeyInfo), e.g. from `openssl pkey -in key.pem -pubout`";

/// PSS salt lengths tried after salt = digest length (Cloud KMS, `rsa_pss_saltlen:digest`):
/// the maximum (OpenSSL's default, Go's `PSSSaltLengthAuto`) and common fixed sizes.
/// aws-lc-rs offers no "auto" salt detection, so this list stands in for it.
static PSS_SHA256_OTHER_SALTS: [RsaParameters; 5] = [
    sig::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(sig::RsaPssSaltLength::Max),
    sig::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(sig::RsaPssSaltLength::Custom(0)),
    sig::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(sig::RsaPssSaltLength::Custom(20)),
    sig::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(sig::RsaPssSaltLength::Custom(48)),
    sig::RSA_PSS_2048_8192_SHA256.with_pss_salt_length(sig::RsaPssSaltLength::Custom(64)),
];
static PSS_SHA512_OTHER_SALTS: [RsaParameters; 5] = [
    sig::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(sig::RsaPssSaltLength::Max),
    sig::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(sig::RsaPssSaltLength::Custom(0)),
    sig::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(sig::RsaPssSaltLength::Custom(20)),
    sig::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(sig::RsaPssSaltLength::Custom(32)),
    sig::RSA_PSS_2048_8192_SHA512.with_pss_salt_length(sig::RsaPssSaltLength::Custom(48)),
];

/// A PKIX public key bound to one signature algorithm and key id.
#[derive(Clone, Debug)]
pub struct PkixPublicKey {
    id: String,
    algorithm: SignatureAlgorithm,
    spki_der: Vec<u8>,
    /// Key bytes aws-lc-rs takes: PKCS#1 `RSAPublicKey` for RSA, the SPKI DER otherwise.
    key_bytes: Vec<u8>,
    parsed: ParsedPublicKey,
}

impl PkixPublicKey {
    /// Parse a PEM `PUBLIC KEY`, check it fits `algorithm`, and set its id (custom URI or default).
    pub fn from_pem(
        pem: &str,
        algorithm: SignatureAlgorithm,
        id: Option<&str>,
    ) -> Result<Self, KeyError> {
        let (spki_der, found, key_bytes) = read_spki_pem(pem)?;
        let found = Some(found);
        let needed = algorithm.key_shape();
        if found != Some(needed) {
            return Err(KeyError::AlgorithmMismatch {
                algorithm,
                found: found.map_or_else(|| "another key".to_string(), |s| s.to_string()),
                needed,
            });
        }
        let parsed =
            ParsedPublicKey::new(primary_verification(algorithm), &key_bytes).map_err(|e| {
                KeyError::Malformed {
                    input: PUBLIC_KEY_INPUT,
                    reason: format!("{needed} that the crypto library rejects ({e})"),
                    fix: PUBLIC_KEY_FIX,
                }
            })?;
        let id = match id.map(str::trim) {
            Some(custom) if !custom.is_empty() => {
                check_key_id(custom)?;
                custom.to_string()
            }
            _ => Self::default_id(&spki_der),
        };
        Ok(Self {
            id,
            algorithm,
            spki_der,
            key_bytes,
            parsed,
        })
    }

    /// ni:///sha-256; + unpadded base64url(SHA-256(DER SubjectPublicKeyInfo))
    pub fn default_id(spki_der: &[u8]) -> String {
        let digest = Sha256::digest(spki_der);
        format!(
            "ni:///sha-256;{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
        )
    }

    /// The key id attestations must name.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The declared signature algorithm.
    pub fn algorithm(&self) -> SignatureAlgorithm {
        self.algorithm
    }

    /// DER SubjectPublicKeyInfo as given in the PEM.
    pub fn spki_der(&self) -> &[u8] {
        &self.spki_der
    }

    /// Lower-case hex SHA-256 of the DER SubjectPublicKeyInfo.
    pub fn fingerprint(&self) -> String {
        hex::encode(Sha256::digest(&self.spki_der))
    }

    /// Facts for status: PKIX keys have no validity period and can always sign.
    pub fn facts(&self) -> KeyFacts {
        KeyFacts {
            id: self.id.clone(),
            kind: KeyKind::Pkix,
            algorithm: self.algorithm.description(),
            fingerprint: self.fingerprint(),
            created: None,
            expires: None,
            can_sign: true,
            problems: Vec::new(),
        }
    }

    /// Verify a detached signature over `payload` or over its DSSE PAE; returns the payload.
    pub fn verify(
        &self,
        signature: &[u8],
        payload: Option<&[u8]>,
    ) -> Result<Vec<u8>, SignatureError> {
        if signature.len() > MAX_INPUT_LEN {
            return Err(SignatureError::TooLarge(signature.len()));
        }
        if signature.is_empty() {
            return Err(SignatureError::Malformed(
                "the signature is empty".to_string(),
            ));
        }
        let payload = payload.ok_or(SignatureError::MissingPayload)?;
        self.check_signature_form(signature)?;
        if self.verifies(payload, signature)
            || self.verifies(&dsse_pae(SIMPLESIGNING_DSSE_TYPE, payload), signature)
            || self.verifies(&dsse_pae(IN_TOTO_DSSE_TYPE, payload), signature)
        {
            return Ok(payload.to_vec());
        }
        Err(SignatureError::BadSignature(format!(
            "the {} signature does not verify with key {} over the payload nor over its DSSE PAE encodings; was the payload changed or signed by another key?",
            self.algorithm, self.id
        )))
    }

    fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        if self.parsed.verify_sig(message, signature).is_ok() {
            return true;
        }
        let others: &'static [RsaParameters] =
            match (self.algorithm.scheme(), self.algorithm.hash()) {
                (SignatureScheme::RsaPss, Some(HashAlgorithm::Sha512)) => &PSS_SHA512_OTHER_SALTS,
                (SignatureScheme::RsaPss, _) => &PSS_SHA256_OTHER_SALTS,
                _ => &[],
            };
        others.iter().any(|params| {
            sig::UnparsedPublicKey::new(params, &self.key_bytes)
                .verify(message, signature)
                .is_ok()
        })
    }

    /// Reject signatures of the wrong shape with a precise reason instead of "bad signature".
    fn check_signature_form(&self, signature: &[u8]) -> Result<(), SignatureError> {
        match self.algorithm.key_shape() {
            KeyShape::Rsa(bits) => {
                let want = (bits as usize).div_ceil(8);
                if signature.len() != want {
                    return Err(SignatureError::Malformed(format!(
                        "an RSA {bits}-bit signature is {want} bytes, this one is {}; give the raw signature bytes (not base64 or hex text)",
                        signature.len()
                    )));
                }
            }
            KeyShape::Ed25519 => {
                if signature.len() != 64 {
                    return Err(SignatureError::Malformed(format!(
                        "an Ed25519 signature is 64 bytes, this one is {}",
                        signature.len()
                    )));
                }
            }
            KeyShape::P256 | KeyShape::P384 | KeyShape::P521 => {
                if signature.first() != Some(&0x30) {
                    return Err(SignatureError::Malformed(
                        "an ECDSA signature must be ASN.1 DER (SEQUENCE { r, s }, first byte 0x30), as openssl dgst and Cloud KMS write it; raw r||s signatures are not accepted".to_string(),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// Sign `payload` (or its DSSE PAE when `pae`) with a PEM private key; returns raw signature
/// bytes (ECDSA: ASN.1 DER; RSA: big-endian of key size; Ed25519: 64 bytes).
///
/// Accepts PKCS#8 `PRIVATE KEY` (RSA, EC, Ed25519), SEC1 `EC PRIVATE KEY` and PKCS#1
/// `RSA PRIVATE KEY`, unencrypted. RSA-PSS uses salt length = digest length, like Cloud KMS.
pub fn sign(
    private_key_pem: &str,
    algorithm: SignatureAlgorithm,
    payload: &[u8],
    pae: bool,
) -> Result<Vec<u8>, SignError> {
    if private_key_pem.len() > MAX_INPUT_LEN {
        return Err(SignError::TooLarge(private_key_pem.len()));
    }
    if private_key_pem.trim().is_empty() {
        return Err(SignError::Empty(
            "give a PEM private key, e.g. from `openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256`",
        ));
    }
    let blocks = pem_blocks(private_key_pem, false).map_err(SignError::Malformed)?;
    // openssl ecparam -genkey writes an `EC PARAMETERS` block before the key.
    let keys: Vec<&PemBlock> = blocks
        .iter()
        .filter(|b| b.label != "EC PARAMETERS")
        .collect();
    let block = match keys.as_slice() {
        [one] => *one,
        [] => {
            return Err(SignError::Malformed(
                "there is no `-----BEGIN PRIVATE KEY-----` PEM block".to_string(),
            ));
        }
        several => return Err(SignError::SeveralKeys(several.len())),
    };
    if block.has_headers {
        return Err(SignError::Unsupported(
            "encrypted PEM private keys are not supported: decrypt it with `openssl pkey -in key.pem -out plain.pem`".to_string(),
        ));
    }
    let format = match block.label.as_str() {
        "PRIVATE KEY" => PrivateFormat::Pkcs8,
        "EC PRIVATE KEY" => PrivateFormat::Sec1,
        "RSA PRIVATE KEY" => PrivateFormat::Pkcs1,
        other => return Err(SignError::Unsupported(private_label_fix(other))),
    };
    let der = block.der.as_slice();
    let message = if pae {
        dsse_pae(SIMPLESIGNING_DSSE_TYPE, payload)
    } else {
        payload.to_vec()
    };
    let needed = algorithm.key_shape();
    let wrong = |found: String| SignError::WrongKeyType {
        algorithm,
        found,
        needed,
    };
    let rng = SystemRandom::new();
    match algorithm.scheme() {
        SignatureScheme::Ecdsa => {
            let signing = match needed {
                KeyShape::P384 => &sig::ECDSA_P384_SHA384_ASN1_SIGNING,
                KeyShape::P521 => &sig::ECDSA_P521_SHA512_ASN1_SIGNING,
                _ => &sig::ECDSA_P256_SHA256_ASN1_SIGNING,
            };
            if format == PrivateFormat::Pkcs1 {
                return Err(wrong(describe_private_key(format, der)));
            }
            let pair = sig::EcdsaKeyPair::from_private_key_der(signing, der)
                .map_err(|_| wrong(describe_private_key(format, der)))?;
            let signature = pair
                .sign(&rng, &message)
                .map_err(|e| SignError::Crypto(e.to_string()))?;
            Ok(signature.as_ref().to_vec())
        }
        SignatureScheme::RsaPss | SignatureScheme::RsaPkcs1 => {
            let pair = match format {
                PrivateFormat::Pkcs8 => sig::RsaKeyPair::from_pkcs8(der),
                PrivateFormat::Pkcs1 => sig::RsaKeyPair::from_der(der),
                PrivateFormat::Sec1 => return Err(wrong(describe_private_key(format, der))),
            }
            .map_err(|_| wrong(describe_private_key(format, der)))?;
            let bits = rsa_key_pair_bits(&pair);
            if KeyShape::Rsa(bits) != needed {
                return Err(wrong(KeyShape::Rsa(bits).to_string()));
            }
            let encoding: &'static dyn sig::RsaEncoding =
                match (algorithm.scheme(), algorithm.hash()) {
                    (SignatureScheme::RsaPss, Some(HashAlgorithm::Sha512)) => &sig::RSA_PSS_SHA512,
                    (SignatureScheme::RsaPss, _) => &sig::RSA_PSS_SHA256,
                    (_, Some(HashAlgorithm::Sha512)) => &sig::RSA_PKCS1_SHA512,
                    _ => &sig::RSA_PKCS1_SHA256,
                };
            let mut signature = vec![0; pair.public_modulus_len()];
            pair.sign(encoding, &rng, &message, &mut signature)
                .map_err(|e| SignError::Crypto(e.to_string()))?;
            Ok(signature)
        }
        SignatureScheme::Ed25519 => {
            if format != PrivateFormat::Pkcs8 {
                return Err(wrong(describe_private_key(format, der)));
            }
            let pair = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
                .map_err(|_| wrong(describe_private_key(format, der)))?;
            Ok(pair.sign(&message).as_ref().to_vec())
        }
    }
}

/// A PEM `PUBLIC KEY` read without an algorithm: its SubjectPublicKeyInfo DER, its shape, and
/// the bytes aws-lc-rs takes.
fn read_spki_pem(pem: &str) -> Result<(Vec<u8>, KeyShape, Vec<u8>), KeyError> {
    if pem.len() > MAX_INPUT_LEN {
        return Err(KeyError::TooLarge {
            input: PUBLIC_KEY_INPUT,
            len: pem.len(),
        });
    }
    if pem.trim().is_empty() {
        return Err(KeyError::Empty {
            input: PUBLIC_KEY_INPUT,
            fix: PUBLIC_KEY_FIX,
        });
    }
    let blocks = pem_blocks(pem, true).map_err(|reason| KeyError::Malformed {
        input: PUBLIC_KEY_INPUT,
        reason,
        fix: PUBLIC_KEY_FIX,
    })?;
    let block = match blocks.as_slice() {
        [one] => one,
        [] => {
            return Err(KeyError::Malformed {
                input: PUBLIC_KEY_INPUT,
                reason: "there is no `-----BEGIN PUBLIC KEY-----` line".to_string(),
                fix: PUBLIC_KEY_FIX,
            });
        }
        several => {
            return Err(KeyError::SeveralKeys {
                input: PUBLIC_KEY_INPUT,
                count: several.len(),
                names: several
                    .iter()
                    .map(|b| b.label.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                fix: "one PEM `PUBLIC KEY` block per key; list several keys separately",
            });
        }
    };
    if block.label != "PUBLIC KEY" {
        return Err(KeyError::WrongKind {
            input: PUBLIC_KEY_INPUT,
            found: format!("a `{}` PEM block", block.label),
            expected: "a `PUBLIC KEY` (SubjectPublicKeyInfo) block",
            fix: public_label_fix(&block.label).to_string(),
        });
    }
    let spki_der = block.der.clone();
    let spki = spki::SubjectPublicKeyInfoRef::try_from(spki_der.as_slice()).map_err(|e| {
        KeyError::Malformed {
            input: PUBLIC_KEY_INPUT,
            reason: format!("not a DER SubjectPublicKeyInfo ({e})"),
            fix: PUBLIC_KEY_FIX,
        }
    })?;
    let key_oid = spki.algorithm.oid;
    let (shape, key_bytes) = if key_oid == OID_RSA || key_oid == OID_RSA_PSS {
        // RSASSA-PSS-restricted keys (openssl genpkey -algorithm RSA-PSS) carry the same
        // RSAPublicKey; aws-lc-rs takes it as PKCS#1.
        let pkcs1 = spki.subject_public_key.raw_bytes().to_vec();
        let bits = RsaParameters::public_modulus_len(&pkcs1).map_err(|_| KeyError::Malformed {
            input: PUBLIC_KEY_INPUT,
            reason: "the RSA public key does not parse".to_string(),
            fix: PUBLIC_KEY_FIX,
        })?;
        (KeyShape::Rsa(bits), pkcs1)
    } else if key_oid == OID_EC {
        let curve = spki
            .algorithm
            .parameters
            .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
        let shape = match curve {
            Some(c) if c == OID_P256 => KeyShape::P256,
            Some(c) if c == OID_P384 => KeyShape::P384,
            Some(c) if c == OID_P521 => KeyShape::P521,
            other => {
                return Err(KeyError::Unsupported {
                    input: PUBLIC_KEY_INPUT,
                    reason: format!(
                        "the EC key is on curve {}, which no signatureAlgorithm supports: use a P-256, P-384 or P-521 key",
                        curve_name(other)
                    ),
                });
            }
        };
        (shape, spki_der.clone())
    } else if key_oid == OID_ED25519 {
        (KeyShape::Ed25519, spki_der.clone())
    } else {
        return Err(KeyError::Unsupported {
            input: PUBLIC_KEY_INPUT,
            reason: format!(
                "{} keys are not supported: use an RSA, EC P-256/P-384/P-521 or Ed25519 key",
                oid_name(&key_oid)
            ),
        });
    };
    Ok((spki_der, shape, key_bytes))
}

/// What a PEM public key is, before an algorithm is chosen for it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    /// The id an Attestor gives it when none is set: `ni:///sha-256;...`.
    pub default_id: String,
    /// RSA with its size, or the curve.
    pub shape: KeyShape,
}

/// Read a PEM `PUBLIC KEY` for `binauthz key id` and `binauthz attestor create`.
pub fn inspect(pem: &str) -> Result<KeyInfo, KeyError> {
    let (spki_der, shape, _) = read_spki_pem(pem)?;
    Ok(KeyInfo {
        default_id: PkixPublicKey::default_id(&spki_der),
        shape,
    })
}

/// Check a custom key id: an RFC 3986 URI or URI reference (gcloud writes Cloud KMS key ids
/// as `//cloudkms.googleapis.com/v1/...`, a network-path reference, and Google accepts them).
pub fn check_key_id(id: &str) -> Result<(), KeyError> {
    fluent_uri::UriRef::parse(id)
        .map(|_| ())
        .map_err(|e| KeyError::InvalidKeyId {
            id: id.to_string(),
            reason: e.to_string(),
        })
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum PrivateFormat {
    Pkcs8,
    Sec1,
    Pkcs1,
}

fn rsa_key_pair_bits(pair: &sig::RsaKeyPair) -> u32 {
    RsaParameters::public_modulus_len(pair.public_key().as_ref()).unwrap_or_else(|_| {
        // Byte length is exact for the usual key sizes.
        u32::try_from(pair.public_modulus_len() * 8).unwrap_or(u32::MAX)
    })
}

/// What a private key is, for "wrong key type" messages.
fn describe_private_key(format: PrivateFormat, der: &[u8]) -> String {
    match format {
        PrivateFormat::Pkcs1 => match sig::RsaKeyPair::from_der(der) {
            Ok(pair) => KeyShape::Rsa(rsa_key_pair_bits(&pair)).to_string(),
            Err(_) => "an unreadable `RSA PRIVATE KEY`".to_string(),
        },
        PrivateFormat::Sec1 => {
            let curves = [
                (&sig::ECDSA_P256_SHA256_ASN1_SIGNING, KeyShape::P256),
                (&sig::ECDSA_P384_SHA384_ASN1_SIGNING, KeyShape::P384),
                (&sig::ECDSA_P521_SHA512_ASN1_SIGNING, KeyShape::P521),
            ];
            curves
                .into_iter()
                .find(|(alg, _)| sig::EcdsaKeyPair::from_private_key_der(alg, der).is_ok())
                .map_or_else(
                    || "an EC key on an unsupported curve".to_string(),
                    |(_, shape)| shape.to_string(),
                )
        }
        PrivateFormat::Pkcs8 => {
            let Ok(info) = pkcs8::PrivateKeyInfo::try_from(der) else {
                return "an unreadable PKCS#8 `PRIVATE KEY`".to_string();
            };
            let oid = info.algorithm.oid;
            if oid == OID_RSA || oid == OID_RSA_PSS {
                match sig::RsaKeyPair::from_pkcs8(der) {
                    Ok(pair) => KeyShape::Rsa(rsa_key_pair_bits(&pair)).to_string(),
                    Err(_) => "an RSA key the crypto library rejects".to_string(),
                }
            } else if oid == OID_EC {
                let curve = info
                    .algorithm
                    .parameters
                    .and_then(|p| p.decode_as::<ObjectIdentifier>().ok());
                match curve {
                    Some(c) if c == OID_P256 => KeyShape::P256.to_string(),
                    Some(c) if c == OID_P384 => KeyShape::P384.to_string(),
                    Some(c) if c == OID_P521 => KeyShape::P521.to_string(),
                    other => format!("an EC key on curve {}", curve_name(other)),
                }
            } else if oid == OID_ED25519 {
                KeyShape::Ed25519.to_string()
            } else {
                format!("a {} key", oid_name(&oid))
            }
        }
    }
}

fn curve_name(oid: Option<ObjectIdentifier>) -> String {
    match oid {
        Some(o) if o == OID_SECP256K1 => "secp256k1".to_string(),
        Some(o) => o.to_string(),
        None => "(not named)".to_string(),
    }
}

fn oid_name(oid: &ObjectIdentifier) -> String {
    if *oid == OID_ED448 {
        "Ed448".to_string()
    } else if *oid == OID_DSA {
        "DSA".to_string()
    } else {
        format!("algorithm {oid}")
    }
}

fn public_label_fix(label: &str) -> &'static str {
    match label {
        "CERTIFICATE" => "extract the public key with `openssl x509 -in cert.pem -pubkey -noout`",
        "RSA PUBLIC KEY" => {
            "convert the PKCS#1 key with `openssl rsa -RSAPublicKey_in -in key.pem -pubout`"
        }
        l if l.contains("PRIVATE KEY") => {
            "never publish a private key; derive the public key with `openssl pkey -in key.pem -pubout` and treat this private key as exposed"
        }
        l if l.starts_with("PGP ") => {
            "this is an OpenPGP key: put it in asciiArmoredPgpPublicKey instead"
        }
        _ => PUBLIC_KEY_FIX,
    }
}

fn private_label_fix(label: &str) -> String {
    match label {
        "ENCRYPTED PRIVATE KEY" => "encrypted PKCS#8 keys are not supported: decrypt it with `openssl pkey -in key.pem -out plain.pem`".to_string(),
        "PUBLIC KEY" | "RSA PUBLIC KEY" => "the key file holds a public key; signing needs the private key (a PEM `PRIVATE KEY`)".to_string(),
        "OPENSSH PRIVATE KEY" => "OpenSSH private keys are not supported: convert with `ssh-keygen -p -m PKCS8 -f KEYFILE`".to_string(),
        l if l.starts_with("PGP ") => "this is an OpenPGP key: sign with the PGP mode instead".to_string(),
        l => format!("a `{l}` PEM block is not a supported private key: give a PKCS#8 `PRIVATE KEY`, `EC PRIVATE KEY` or `RSA PRIVATE KEY`"),
    }
}

/// Verification algorithm with the hash and (for PSS) salt length Cloud KMS uses.
fn primary_verification(alg: SignatureAlgorithm) -> &'static dyn sig::VerificationAlgorithm {
    match (alg.scheme(), alg.key_shape(), alg.hash()) {
        (SignatureScheme::RsaPss, _, Some(HashAlgorithm::Sha512)) => &sig::RSA_PSS_2048_8192_SHA512,
        (SignatureScheme::RsaPss, _, _) => &sig::RSA_PSS_2048_8192_SHA256,
        (SignatureScheme::RsaPkcs1, _, Some(HashAlgorithm::Sha512)) => {
            &sig::RSA_PKCS1_2048_8192_SHA512
        }
        (SignatureScheme::RsaPkcs1, _, _) => &sig::RSA_PKCS1_2048_8192_SHA256,
        (SignatureScheme::Ed25519, _, _) => &sig::ED25519,
        (_, KeyShape::P384, _) => &sig::ECDSA_P384_SHA384_ASN1,
        (_, KeyShape::P521, _) => &sig::ECDSA_P521_SHA512_ASN1,
        _ => &sig::ECDSA_P256_SHA256_ASN1,
    }
}

/// One PEM block.
#[derive(Debug)]
struct PemBlock {
    label: String,
    /// RFC 1421 headers (`Proc-Type: 4,ENCRYPTED`) were present.
    has_headers: bool,
    der: Vec<u8>,
}

/// Split PEM text into blocks. Tolerates CRLF, indentation and any line width; with `strict`,
/// text outside the blocks is an error (as Kritis rejects trailing data).
fn pem_blocks(text: &str, strict: bool) -> Result<Vec<PemBlock>, String> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, bool, String)> = None;
    for (number, raw) in text.lines().enumerate() {
        let line = raw.trim();
        match current.as_mut() {
            None => {
                if let Some(label) = line
                    .strip_prefix("-----BEGIN ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    if label.starts_with("PGP ") {
                        return Err(format!(
                            "this is an OpenPGP `{label}`, not a PEM key; PGP keys go in the PGP key field or flag (asciiArmoredPgpPublicKey, --pgp-secret-key)"
                        ));
                    }
                    current = Some((label.to_string(), false, String::new()));
                } else if strict && !line.is_empty() {
                    return Err(format!(
                        "line {} is outside any PEM block: {:?}",
                        number + 1,
                        truncate(line)
                    ));
                }
            }
            Some((label, has_headers, body)) => {
                if let Some(end) = line
                    .strip_prefix("-----END ")
                    .and_then(|l| l.strip_suffix("-----"))
                {
                    if end != label {
                        return Err(format!(
                            "`-----BEGIN {label}-----` is closed by `-----END {end}-----`"
                        ));
                    }
                    let der = base64::engine::general_purpose::STANDARD
                        .decode(body.as_bytes())
                        .map_err(|e| format!("the `{label}` block is not valid base64 ({e})"))?;
                    if der.is_empty() {
                        return Err(format!("the `{label}` block is empty"));
                    }
                    blocks.push(PemBlock {
                        label: std::mem::take(label),
                        has_headers: *has_headers,
                        der,
                    });
                    current = None;
                } else if line.contains(':') {
                    *has_headers = true;
                } else {
                    body.extend(line.chars().filter(|c| !c.is_whitespace()));
                }
            }
        }
    }
    if let Some((label, _, _)) = current {
        return Err(format!(
            "`-----BEGIN {label}-----` has no `-----END {label}-----` line"
        ));
    }
    Ok(blocks)
}

fn truncate(line: &str) -> String {
    let mut out = String::new();
    for (i, c) in line.chars().enumerate() {
        if i == 40 {
            let _ = write!(out, "...");
            break;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Binary Authorization docs' example key and the id the docs show for it.
    const DOCS_PEM: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEXnpuYEfvLl1kj4fjxViFRwY1a+zC
5qzlf9LJIK+rnjq42tiKGyyXMbnZKJiYPPdMDGyltnkrABnztg2jJ48aYQ==
-----END PUBLIC KEY-----
";
    const DOCS_ID: &str = "ni:///sha-256;EwVxs8fNUAHq9FI2AMfh8WNIXVBuuTMeGtPH72U-I70";

    #[test]
    fn docs_example_key_id() {
        let key = PkixPublicKey::from_pem(DOCS_PEM, SignatureAlgorithm::EcdsaP256Sha256, None)
            .expect("docs key parses");
        assert_eq!(key.id(), DOCS_ID);
        let alias = PkixPublicKey::from_pem(DOCS_PEM, SignatureAlgorithm::EcSignP256Sha256, None)
            .expect("alias accepted");
        assert_eq!(alias.id(), DOCS_ID);
        // CRLF line endings and indentation (YAML block scalars) do not change the id.
        let crlf = DOCS_PEM.replace('\n', "\r\n    ");
        let key = PkixPublicKey::from_pem(&crlf, SignatureAlgorithm::EcdsaP256Sha256, Some(""))
            .expect("crlf parses");
        assert_eq!(key.id(), DOCS_ID);
        let facts = key.facts();
        assert_eq!(facts.kind, KeyKind::Pkix);
        assert!(facts.can_sign && facts.problems.is_empty());
        assert_eq!(facts.fingerprint.len(), 64);
    }

    #[test]
    fn docs_key_rejects_other_algorithms() {
        for alg in SignatureAlgorithm::ALL {
            let result = PkixPublicKey::from_pem(DOCS_PEM, alg, None);
            if alg.key_shape() == KeyShape::P256 {
                assert!(result.is_ok(), "{alg}");
            } else {
                let err = result.expect_err("mismatch");
                let msg = err.to_string();
                assert!(
                    matches!(err, KeyError::AlgorithmMismatch { .. }),
                    "{alg}: {msg}"
                );
                assert!(
                    msg.contains("EC P-256") && msg.contains(alg.as_str()),
                    "{msg}"
                );
            }
        }
    }

    #[test]
    fn custom_ids() {
        let alg = SignatureAlgorithm::EcdsaP256Sha256;
        for ok in [
            "//cloudkms.googleapis.com/v1/projects/p/locations/global/keyRings/r/cryptoKeys/k/cryptoKeyVersions/1",
            "ni:///sha-256;abc",
            "openpgp4fpr:0638AADD940361EA2D7F14C58C124F0E663DA097",
            "https://example.com/keys/1",
            "kritis-authority-key",
        ] {
            let key = PkixPublicKey::from_pem(DOCS_PEM, alg, Some(ok)).expect(ok);
            assert_eq!(key.id(), ok);
        }
        for bad in ["has space", "bad%zz", "a\"quote", "x:y<z>", "http://[::1"] {
            let err = PkixPublicKey::from_pem(DOCS_PEM, alg, Some(bad)).expect_err(bad);
            assert!(matches!(err, KeyError::InvalidKeyId { .. }), "{bad}: {err}");
            assert!(err.to_string().contains("RFC 3986"), "{err}");
        }
    }

    #[test]
    fn bad_pem_inputs_are_clear() {
        let alg = SignatureAlgorithm::EcdsaP256Sha256;
        let cases: Vec<(String, &str)> = vec![
            (String::new(), "empty"),
            ("   \n".to_string(), "empty"),
            ("garbage".to_string(), "outside any PEM block"),
            (
                DOCS_PEM.replace("-----END PUBLIC KEY-----\n", ""),
                "no `-----END",
            ),
            (DOCS_PEM.replace("MFkw", "M!kw"), "base64"),
            (DOCS_PEM.replace("YQ==", "YQ"), "base64"),
            (
                DOCS_PEM.replace(
                    "5qzlf9LJIK+rnjq42tiKGyyXMbnZKJiYPPdMDGyltnkrABnztg2jJ48aYQ==",
                    "5qzl",
                ),
                "SubjectPublicKeyInfo",
            ),
            (
                DOCS_PEM.replace("PUBLIC KEY", "CERTIFICATE"),
                "openssl x509",
            ),
            (
                DOCS_PEM.replace("PUBLIC KEY", "PRIVATE KEY"),
                "never publish",
            ),
            (format!("{DOCS_PEM}{DOCS_PEM}"), "2 keys"),
            (format!("{DOCS_PEM}trailing"), "outside any PEM block"),
            ("x".repeat(2 * 1024 * 1024), "1 MiB"),
        ];
        for (input, want) in cases {
            let err = PkixPublicKey::from_pem(&input, alg, None).expect_err(want);
            let msg = err.to_string();
            assert!(msg.contains(want), "want {want:?} in {msg:?}");
            assert!(msg.starts_with("publicKeyPem"), "{msg}");
        }
    }

    #[test]
    fn pem_block_parsing() {
        let blocks =
            pem_blocks("junk\n-----BEGIN A-----\nQUJD\n-----END A-----\n", false).expect("lenient");
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].label, "A");
        assert_eq!(blocks[0].der, b"ABC");
        assert!(pem_blocks("-----BEGIN A-----\nQUJD\n-----END B-----\n", false).is_err());
        let enc = pem_blocks(
            "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00\n\nQUJD\n-----END RSA PRIVATE KEY-----\n",
            false,
        )
        .expect("headers");
        assert!(enc[0].has_headers);
    }

    #[test]
    fn verify_rejects_bad_signature_shapes() {
        let key = PkixPublicKey::from_pem(DOCS_PEM, SignatureAlgorithm::EcdsaP256Sha256, None)
            .expect("key");
        assert_eq!(
            key.verify(b"", Some(b"x")),
            Err(SignatureError::Malformed(
                "the signature is empty".to_string()
            ))
        );
        assert_eq!(
            key.verify(&[0x30, 0x02, 0x01], None),
            Err(SignatureError::MissingPayload)
        );
        assert!(matches!(
            key.verify(&[1; 64], Some(b"x")),
            Err(SignatureError::Malformed(_))
        ));
        assert!(matches!(
            key.verify(&[0x30, 0x02, 0x01, 0x00], Some(b"x")),
            Err(SignatureError::BadSignature(_))
        ));
        assert!(matches!(
            key.verify(&vec![0x30; 2 * 1024 * 1024], Some(b"x")),
            Err(SignatureError::TooLarge(_))
        ));
    }
}
