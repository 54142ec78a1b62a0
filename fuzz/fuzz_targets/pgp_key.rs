//! OpenPGP public keys: parsing any text never panics; a parsed key reports its facts and
//! verifies a signature (here: the input itself) without panicking.
#![no_main]

use binauthz::crypto::pgp::PgpPublicKey;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    if let Ok(key) = PgpPublicKey::from_armored(&text) {
        assert_eq!(key.fingerprint().len(), 40);
        let now = jiff::Timestamp::now();
        let _ = key.facts(now);
        let _ = key.facts(jiff::Timestamp::UNIX_EPOCH);
        let _ = key.verify(data, Some(b"payload"), now);
    }
});
