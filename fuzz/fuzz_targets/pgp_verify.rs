//! OpenPGP verification of arbitrary signature bytes against fixed keys (Ed25519, RSA-2048).
//! First byte: bit 0 picks the key, bit 1 whether a detached payload is given.
#![no_main]

use std::sync::LazyLock;

use binauthz::crypto::pgp::PgpPublicKey;
use libfuzzer_sys::fuzz_target;

static KEYS: LazyLock<[PgpPublicKey; 2]> = LazyLock::new(|| {
    [
        include_str!("../keys/pgp-ed25519.asc"),
        include_str!("../keys/pgp-rsa2048.asc"),
    ]
    .map(|armored| PgpPublicKey::from_armored(armored).expect("fixed fuzz key"))
});

const PAYLOAD: &[u8] = include_bytes!("../../tests/vectors/payloads/artifact-registry.json");

fuzz_target!(|data: &[u8]| {
    let Some((&mode, signature)) = data.split_first() else {
        return;
    };
    let key = &KEYS[usize::from(mode & 1)];
    let payload = (mode & 2 != 0).then_some(PAYLOAD);
    if let Ok(signed) = key.verify(signature, payload, jiff::Timestamp::now()) {
        // Only the holder of the secret key can get here; what it signed is returned.
        assert!(signed.len() <= binauthz::crypto::MAX_INPUT_LEN);
    }
});
