//! The pure core never talks to the API server: enforced here, not by convention.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

const PURE: &[&str] = &[
    "src/image.rs",
    "src/payload.rs",
    "src/crypto",
    "src/policy",
    "src/verify.rs",
    "src/gcloud",
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

fn read_tree(part: &str) -> Vec<(std::path::PathBuf, String)> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    rust_files(&root.join(part), &mut files);
    files
        .into_iter()
        .map(|f| {
            let text = std::fs::read_to_string(&f).unwrap();
            // Unit tests below `#[cfg(test)]` may build what they check.
            let text = text
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .to_owned();
            (f, text)
        })
        .collect()
}

/// One trust pipeline: nothing that answers admission or writes status verifies a signature
/// or parses a key; it reads what `trust` found.
#[test]
fn only_the_trust_pipeline_verifies_signatures() {
    for part in [
        "src/webhook",
        "src/controller",
        "src/admin.rs",
        "src/events.rs",
    ] {
        for (file, text) in read_tree(part) {
            for needle in [
                "verify::verify",
                "crate::crypto",
                "AttestorKeys::load",
                "Job",
                ".complete(",
            ] {
                assert!(
                    !text.contains(needle),
                    "{} uses {needle}: only src/trust verifies signatures",
                    file.display()
                );
            }
        }
    }
}

/// One watch per resource kind: the trust pipeline watches binauthz's kinds and namespaces,
/// the certificate follower its Secret, continuous validation the pods; nothing else watches.
#[test]
fn watches_are_opened_in_three_places() {
    let allowed = [
        "src/trust/watch.rs",
        "src/tls/secret.rs",
        "src/controller/validation.rs",
    ];
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, text) in read_tree("src") {
        let relative = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if allowed.contains(&relative.as_str()) {
            continue;
        }
        for needle in ["watcher(", "Controller::new", "reflector("] {
            // A call of the function itself, not a method of that name.
            let called = text.match_indices(needle).any(|(at, _)| {
                !text[..at]
                    .chars()
                    .next_back()
                    .is_some_and(|c| c == '.' || c == '_' || c.is_alphanumeric())
            });
            assert!(
                !called,
                "{relative} opens a watch ({needle}); watch in src/trust/watch.rs and read its index"
            );
        }
    }
}

/// `run` is the one place that wires a replica: only it creates the trust pipeline and the
/// servers.
#[test]
fn only_run_wires_a_replica() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (file, text) in read_tree("src") {
        let relative = file
            .strip_prefix(root)
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if relative == "src/run.rs" || relative.starts_with("src/trust") {
            continue;
        }
        for needle in [
            "TrustState::new",
            "trust::watch::run",
            "server::serve_tls(",
            "admin::serve(",
        ] {
            assert!(
                !text.contains(needle),
                "{relative} wires part of a replica ({needle}); only src/run.rs does"
            );
        }
    }
}
