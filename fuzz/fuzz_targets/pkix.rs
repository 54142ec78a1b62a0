//! PKIX keys and signatures: parsing any PEM text for any algorithm never panics, and
//! verifying arbitrary signature bytes against fixed keys (P-256, RSA-2048 PSS and PKCS#1,
//! Ed25519) never panics. First byte: high bit set = key parsing with algorithm
//! `ALL[b % 19]`; clear = verification with key `b % 4`, over the payload or its DSSE PAE.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::pkix(data));
