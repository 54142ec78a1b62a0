//! `Manifests::add_text` on any text (YAML or JSON, many documents), then the offline
//! `evaluate` over whatever was read (verification, trust index, decisions): none panics.
#![no_main]

use binauthz::commands::evaluate_manifests;
use binauthz::manifests::Manifests;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut manifests = Manifests::default();
    if manifests.add_text("fuzz.yaml", text).is_err() {
        return;
    }
    for line in evaluate_manifests(&manifests, "default", jiff::Timestamp::now()) {
        if let Ok(decision) = line.decision {
            let _ = decision.message();
        }
    }
});
