//! Signing payloads: `payload::parse` never panics on any bytes, and for any artifact URL that
//! `create` accepts, parsing what it created gives back the same reference and digest.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::payload(data));
