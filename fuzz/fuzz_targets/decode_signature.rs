//! `verify::decode_signature` on any text: never panics; armor is passed through unchanged.
#![no_main]

use binauthz::verify::decode_signature;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(bytes) = decode_signature(text) {
        if text.trim().starts_with("-----BEGIN PGP") {
            assert_eq!(bytes, text.trim().as_bytes());
        } else {
            assert!(bytes.len() <= text.len());
        }
    }
});
