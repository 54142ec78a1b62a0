//! Image references: `ImageRef::parse`, `Digest::parse` and `same_repository` never panic, and a
//! parsed reference is consistent with itself.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::image_reference(data));
