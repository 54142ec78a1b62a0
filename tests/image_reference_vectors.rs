//! `ImageRef::parse` against the answers of github.com/distribution/reference, the parser the
//! container runtimes use (`tests/vectors/image-refs/`).

use binauthz::image::{ImageRef, ImageRefError};

#[derive(serde::Deserialize)]
struct Answer {
    #[serde(rename = "in")]
    input: String,
    ok: bool,
    #[serde(default)]
    domain: String,
    #[serde(default)]
    path: String,
    #[serde(default)]
    tag: String,
    #[serde(default)]
    digest: String,
}

#[test]
fn agrees_with_distribution_reference() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/vectors/image-refs/distribution-reference.jsonl"
    );
    let text = std::fs::read_to_string(path).unwrap();
    let (mut accepted, mut refused, mut deliberate) = (0, 0, 0);
    for line in text.lines() {
        let go: Answer = serde_json::from_str(line).unwrap();
        let input = &go.input;
        match (ImageRef::parse(input), go.ok) {
            (Ok(ours), true) => {
                accepted += 1;
                assert_eq!(ours.registry(), go.domain, "{input:?}");
                assert_eq!(ours.repository(), go.path, "{input:?}");
                assert_eq!(ours.tag().unwrap_or_default(), go.tag, "{input:?}");
                let digest = ours.digest().map(|d| d.as_str()).unwrap_or_default();
                assert_eq!(digest, go.digest, "{input:?}");
                assert_eq!(ours.name(), format!("{}/{}", go.domain, go.path));
            }
            (Err(_), false) => refused += 1,
            (Err(ImageRefError::UnsupportedDigest { .. }), true)
                if !go.digest.starts_with("sha256:") =>
            {
                deliberate += 1;
            }
            (Err(ImageRefError::InvalidRegistry { .. }), true) if go.domain.is_empty() => {
                deliberate += 1;
            }
            (Err(e), true) => panic!(
                "{input:?}: distribution accepts ({}/{} tag {:?} digest {:?}), binauthz says {e}",
                go.domain, go.path, go.tag, go.digest
            ),
            (Ok(ours), false) => {
                panic!("{input:?}: distribution refuses, binauthz accepts {ours:?}")
            }
        }
    }
    assert_eq!((accepted, refused, deliberate), (400, 400, 50));
    println!(
        "image refs: {accepted} accepted and {refused} refused alike, {deliberate} deliberate differences"
    );
}
