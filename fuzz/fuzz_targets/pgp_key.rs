//! OpenPGP public keys: parsing any text never panics; a parsed key reports its facts and
//! verifies a signature (here: the input itself) without panicking.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::pgp_key(data));
