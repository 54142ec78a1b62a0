//! `Manifests::add_text` on any text (YAML or JSON, many documents), then the offline
//! `evaluate` over whatever was read (verification, trust index, decisions): none panics.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::manifests(data));
