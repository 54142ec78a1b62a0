//! Signing payloads: `payload::parse` never panics on any bytes, and for any artifact URL that
//! `create` accepts, parsing what it created gives back the same reference and digest.
#![no_main]

use binauthz::payload;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(parsed) = payload::parse(data) {
        let _ = parsed.payload_type.as_deref();
        let url = format!(
            "{}@{}",
            parsed.docker_reference,
            parsed.manifest_digest.as_str()
        );
        if let Ok(created) = payload::create(&url) {
            let again = payload::parse(&created).expect("a created payload parses");
            assert_eq!(again.manifest_digest, parsed.manifest_digest);
        }
    }
    let Ok(url) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok((reference, digest)) = payload::split_artifact_url(url) {
        let created = payload::create(url).expect("split_artifact_url accepted it");
        let parsed = payload::parse(&created).expect("a created payload parses");
        assert_eq!(parsed.docker_reference, reference, "{url:?}");
        assert_eq!(parsed.manifest_digest, digest, "{url:?}");
    }
});
