//! `payload::create` against gcloud: always against the golden vectors captured from gcloud
//! (`tests/vectors/payloads/`), and live against `gcloud` itself when it is on PATH.

// clippy.toml allows unwrap only inside #[test] functions; these helpers are test code too.
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use binauthz::payload;
use sha2::{Digest as _, Sha256};

const GCLOUD_ERROR_PREFIX: &str = "ERROR: (gcloud.container.binauthz.create-signature-payload) ";

fn vectors_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/payloads")
}

/// A captured payload: the URL for binauthz, the URL gcloud was given, and gcloud's bytes.
struct Vector {
    name: String,
    url: String,
    gcloud_url: String,
    payload: Vec<u8>,
}

fn vectors() -> Vec<Vector> {
    let mut vectors: Vec<Vector> = std::fs::read_dir(vectors_dir())
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|e| e == "url"))
        .map(|path| {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut lines = text.lines();
            let url = lines.next().unwrap().to_owned();
            let gcloud_url = lines.next().unwrap_or(&url).to_owned();
            Vector {
                name: path.file_stem().unwrap().to_string_lossy().into_owned(),
                payload: std::fs::read(path.with_extension("json")).unwrap(),
                url,
                gcloud_url,
            }
        })
        .collect();
    vectors.sort_by(|a, b| a.name.cmp(&b.name));
    vectors
}

/// A URL gcloud refuses, and whether binauthz must use gcloud's exact words.
struct ErrorVector {
    same_message: bool,
    url: String,
    gcloud_message: String,
}

fn error_vectors() -> Vec<ErrorVector> {
    std::fs::read_to_string(vectors_dir().join("errors.tsv"))
        .unwrap()
        .lines()
        .map(|line| {
            let fields: Vec<&str> = line.split('\t').collect();
            assert_eq!(fields.len(), 3, "errors.tsv line {line:?}");
            assert!(matches!(fields[0], "same" | "both-error"), "{line:?}");
            ErrorVector {
                same_message: fields[0] == "same",
                url: fields[1].to_owned(),
                gcloud_message: fields[2].to_owned(),
            }
        })
        .collect()
}

#[test]
fn golden_vectors_cover_the_required_cases() {
    let vectors = vectors();
    assert!(vectors.len() >= 8, "only {} vectors", vectors.len());
    let example = vectors
        .iter()
        .find(|v| v.name == "reference-example")
        .unwrap();
    assert_eq!(example.payload.len(), 298);
    assert_eq!(
        hex::encode(Sha256::digest(&example.payload)),
        "0533c1b3ae558d4ef5d656fe76671c4a86049ac28c5284743b6e6e13ca88523d"
    );
    let urls: Vec<&str> = vectors.iter().map(|v| v.url.as_str()).collect();
    let has = |pred: &dyn Fn(&str) -> bool| urls.iter().any(|u| pred(u));
    assert!(has(&|u| u.starts_with("gcr.io/")));
    assert!(has(
        &|u| u.split('@').next().unwrap().matches('/').count() >= 4
    ));
    assert!(has(&|u| u.starts_with("us-docker.pkg.dev/p/r/i@")));
    assert!(has(&|u| u.starts_with("https://") && u.contains(":5000/")));
    assert!(has(&|u| u.starts_with("http://")));
    assert!(has(&|u| u.contains(":v1.2.3@sha256:")));
    assert!(has(&|u| u.starts_with("GCR.io/")));
    assert!(has(&|u| u.starts_with("index.docker.io/library/nginx@")));
    assert!(error_vectors().len() >= 8);
}

#[test]
fn create_matches_golden_vectors_byte_for_byte() {
    for v in vectors() {
        let ours = payload::create(&v.url).unwrap_or_else(|e| panic!("{}: {e}", v.name));
        assert_eq!(
            String::from_utf8_lossy(&ours),
            String::from_utf8_lossy(&v.payload),
            "{}",
            v.name
        );
        assert_eq!(ours, v.payload, "{}", v.name);
        let parsed = payload::parse(&v.payload).unwrap();
        let (reference, digest) = payload::split_artifact_url(&v.url).unwrap();
        assert_eq!(parsed.docker_reference, reference, "{}", v.name);
        assert_eq!(parsed.manifest_digest, digest, "{}", v.name);
    }
}

#[test]
fn create_refuses_what_gcloud_refused() {
    for v in error_vectors() {
        match payload::create(&v.url) {
            Ok(bytes) => panic!(
                "{:?}: gcloud said {:?} but binauthz produced {}",
                v.url,
                v.gcloud_message,
                String::from_utf8_lossy(&bytes)
            ),
            Err(e) if v.same_message => assert_eq!(e.to_string(), v.gcloud_message, "{:?}", v.url),
            Err(_) => {}
        }
    }
}

fn gcloud_on_path() -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join("gcloud"))
        .find(|path| path.is_file())
}

/// Runs gcloud offline; Ok(stdout) or Err(its error message).
fn gcloud_payload(gcloud: &Path, config: &Path, url: &str) -> Result<Vec<u8>, String> {
    let out = Command::new(gcloud)
        .args([
            "container",
            "binauthz",
            "create-signature-payload",
            &format!("--artifact-url={url}"),
        ])
        .env("CLOUDSDK_CONFIG", config)
        .env("CLOUDSDK_AUTH_ACCESS_TOKEN", "x")
        .env("CLOUDSDK_CORE_DISABLE_PROMPTS", "1")
        .env("CLOUDSDK_COMPONENT_MANAGER_DISABLE_UPDATE_CHECK", "true")
        .env("CLOUDSDK_CORE_DISABLE_USAGE_REPORTING", "true")
        .output()
        .unwrap();
    if out.status.success() {
        return Ok(out.stdout);
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let message = stderr
        .lines()
        .find_map(|line| line.strip_prefix(GCLOUD_ERROR_PREFIX))
        .unwrap_or_else(|| panic!("{url:?}: gcloud failed without an ERROR line: {stderr}"));
    Err(message.to_owned())
}

#[test]
fn live_gcloud_agrees() {
    let Some(gcloud) = gcloud_on_path() else {
        println!(
            "payload_gcloud: gcloud is not on PATH; the live comparison with gcloud was NOT run (the golden vectors were checked)"
        );
        return;
    };
    let config = tempfile::tempdir().unwrap();
    let vectors = vectors();
    let errors = error_vectors();
    // gcloud takes about a second per call; two at a time on a two-core machine.
    std::thread::scope(|scope| {
        let (first, second) = vectors.split_at(vectors.len() / 2);
        let (first_errors, second_errors) = errors.split_at(errors.len() / 2);
        for (vectors, errors) in [(first, first_errors), (second, second_errors)] {
            let (gcloud, config) = (&gcloud, config.path());
            scope.spawn(move || {
                for v in vectors {
                    let theirs = gcloud_payload(gcloud, config, &v.gcloud_url)
                        .unwrap_or_else(|e| panic!("gcloud refused {:?}: {e}", v.gcloud_url));
                    assert_eq!(theirs, v.payload, "{}: golden vector is stale", v.name);
                    assert_eq!(payload::create(&v.url).unwrap(), theirs, "{}", v.name);
                }
                for v in errors {
                    let theirs = gcloud_payload(gcloud, config, &v.url)
                        .err()
                        .unwrap_or_else(|| panic!("gcloud now accepts {:?}", v.url));
                    assert_eq!(
                        theirs, v.gcloud_message,
                        "{:?}: golden error is stale",
                        v.url
                    );
                    let ours = payload::create(&v.url).unwrap_err().to_string();
                    if v.same_message {
                        assert_eq!(ours, theirs, "{:?}", v.url);
                    }
                }
            });
        }
    });
    println!(
        "payload_gcloud: live gcloud agreed on {} payloads and {} errors",
        vectors.len(),
        errors.len()
    );
}
