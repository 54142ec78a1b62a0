//! OpenPGP verification of arbitrary signature bytes against fixed keys (Ed25519, RSA-2048).
//! First byte: bit 0 picks the key, bit 1 whether a detached payload is given.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::pgp_verify(data));
