//! `verify::decode_signature` on any text: never panics; armor is passed through unchanged.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::decode_signature_target(data));
