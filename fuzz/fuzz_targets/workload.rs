//! `Workload::from_json` on any JSON, then `policy::evaluate` of what it read against fixed
//! policies and a small trust index, and every message of the decision: none panics.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::workload(data));
