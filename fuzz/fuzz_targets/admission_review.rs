//! One AdmissionReview body through the webhook's handler (`webhook::admission::review`) over a
//! ready index: never a panic; every answer is JSON that echoes the uid and explains a denial.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::admission_review(data));
