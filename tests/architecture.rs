//! The pure core never talks to the API server: enforced here, not by convention.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

const PURE: &[&str] = &[
    "src/image.rs",
    "src/payload.rs",
    "src/crypto",
    "src/policy",
    "src/verify.rs",
    "src/gcloud.rs",
];
const FORBIDDEN: &[&str] = &[
    "kube::Client",
    "kube::Api",
    "kube::api",
    "kube::runtime",
    "kube_runtime",
    "kube::client",
    "Client::try_default",
];

fn rust_files(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).unwrap() {
            rust_files(&entry.unwrap().path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

#[test]
fn pure_modules_have_no_kube_client() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for part in PURE {
        rust_files(&root.join(part), &mut files);
    }
    assert!(
        files.len() >= 5,
        "expected the pure modules to exist, found {files:?}"
    );
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        for needle in FORBIDDEN {
            assert!(
                !text.contains(needle),
                "{} uses {needle}: the pure core must not talk to the API server",
                file.display()
            );
        }
    }
}
