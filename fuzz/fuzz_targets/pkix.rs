//! PKIX keys and signatures: parsing any PEM text for any algorithm never panics, and
//! verifying arbitrary signature bytes against fixed keys (P-256, RSA-2048 PSS and PKCS#1,
//! Ed25519) never panics. First byte: high bit set = key parsing with algorithm
//! `ALL[b % 19]`; clear = verification with key `b % 4`, over the payload or its DSSE PAE.
#![no_main]

use std::sync::LazyLock;

use binauthz::crypto::SignatureAlgorithm;
use binauthz::crypto::pkix::PkixPublicKey;
use libfuzzer_sys::fuzz_target;

static KEYS: LazyLock<Vec<PkixPublicKey>> = LazyLock::new(|| {
    [
        (
            include_str!("../keys/pkix-p256.pem"),
            SignatureAlgorithm::EcdsaP256Sha256,
        ),
        (
            include_str!("../keys/pkix-rsa2048.pem"),
            SignatureAlgorithm::RsaPss2048Sha256,
        ),
        (
            include_str!("../keys/pkix-rsa2048.pem"),
            SignatureAlgorithm::RsaSignPkcs12048Sha256,
        ),
        (
            include_str!("../keys/pkix-ed25519.pem"),
            SignatureAlgorithm::Ed25519,
        ),
    ]
    .into_iter()
    .map(|(pem, alg)| PkixPublicKey::from_pem(pem, alg, None).expect("fixed fuzz key"))
    .collect()
});

const PAYLOAD: &[u8] = include_bytes!("../../tests/vectors/payloads/artifact-registry.json");

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 0x80 != 0 {
        let algorithm =
            SignatureAlgorithm::ALL[usize::from(mode & 0x7f) % SignatureAlgorithm::ALL.len()];
        let text = String::from_utf8_lossy(rest);
        if let Ok(key) = PkixPublicKey::from_pem(&text, algorithm, None) {
            assert!(key.id().starts_with("ni:///sha-256;"));
            assert_eq!(key.algorithm(), algorithm);
            let _ = key.facts();
            let _ = key.verify(rest, Some(PAYLOAD));
        }
        // A custom key id is checked, never trusted blindly.
        let _ = binauthz::crypto::pkix::check_key_id(&text);
    } else {
        let key = &KEYS[usize::from(mode) % KEYS.len()];
        let _ = key.verify(rest, Some(PAYLOAD));
        let _ = key.verify(rest, None);
    }
});
