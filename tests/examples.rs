//! `examples/` is a GitOps repository a newcomer copies: every document must be a valid object
//! of its kind (our CRDs with their CEL rules checked client-side), every attestation must
//! verify, and `binauthz evaluate` must decide each workload exactly as the comments say.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use binauthz::gcloud::{PolicyImportOptions, import_policy};
use binauthz::manifests::Manifests;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::CronJob;
use k8s_openapi::api::core::v1::{Namespace, Pod, ServiceAccount};
use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

fn binauthz(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_binauthz"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap()
}

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            yaml_files(&path, out);
        } else if path
            .extension()
            .is_some_and(|e| e == "yaml" || e == "yml" || e == "json")
        {
            out.push(path);
        }
    }
}

/// A DNS-1123 subdomain (object names); labels (namespaces) are checked with `max = 63`.
fn dns_name(name: &str, max: usize, dots: bool) -> bool {
    !name.is_empty()
        && name.len() <= max
        && (dots || !name.contains('.'))
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

fn typed<T: serde::de::DeserializeOwned>(file: &Path, value: &Value) -> T {
    serde_path_to_error::deserialize(value.clone())
        .unwrap_or_else(|e| panic!("{}: {} at {}", file.display(), e.inner(), e.path()))
}

#[test]
fn every_document_is_a_valid_object_of_its_kind() {
    let mut files = Vec::new();
    yaml_files(&examples(), &mut files);
    let mut kinds = std::collections::BTreeMap::<String, usize>::new();
    for file in &files {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            !text.contains("PRIVATE KEY"),
            "{} holds a private key: never commit one",
            file.display()
        );
        let relative = file.strip_prefix(examples()).unwrap();
        if relative == Path::new("policies/gke/google-policy.yaml") {
            // Not a Kubernetes object: gcloud's export, kept in a folder `kubectl apply -f
            // examples/policies/` does not descend into.
            import_policy(&text, &PolicyImportOptions::default()).unwrap();
            *kinds.entry("gcloud Policy".into()).or_default() += 1;
            continue;
        }
        for document in serde_yaml::Deserializer::from_str(&text) {
            let value: Value = serde::Deserialize::deserialize(document).unwrap();
            if value.is_null() {
                continue;
            }
            let kind = value["kind"].as_str().unwrap_or_default().to_owned();
            let api_version = value["apiVersion"].as_str().unwrap_or_default();
            let name = value["metadata"]["name"].as_str().unwrap_or_default();
            let namespace = value["metadata"]["namespace"].as_str();
            assert!(
                dns_name(name, 253, true),
                "{}: {kind} name {name:?} is not DNS-1123",
                file.display()
            );
            let namespaced = !matches!(
                kind.as_str(),
                "Namespace" | "Attestor" | "AttestationPolicy"
            );
            match namespace {
                Some(ns) => {
                    assert!(namespaced, "{}: {kind} is cluster-scoped", file.display());
                    assert!(
                        dns_name(ns, 63, false),
                        "{}: namespace {ns}",
                        file.display()
                    );
                }
                None => assert!(
                    !namespaced,
                    "{}: {kind} {name} needs a namespace",
                    file.display()
                ),
            }
            match (api_version, kind.as_str()) {
                ("binauthz.dev/v1alpha1", "Attestor") => {
                    let attestor: binauthz::crd::Attestor = typed(file, &value);
                    kube::core::cel::validate_cel(&attestor)
                        .unwrap_or_else(|e| panic!("{}: CEL: {e}", file.display()));
                }
                ("binauthz.dev/v1alpha1", "AttestationPolicy") => {
                    let policy: binauthz::crd::AttestationPolicy = typed(file, &value);
                    kube::core::cel::validate_cel(&policy)
                        .unwrap_or_else(|e| panic!("{}: CEL: {e}", file.display()));
                }
                ("binauthz.dev/v1alpha1", "ImageAttestation") => {
                    let attestation: binauthz::crd::ImageAttestation = typed(file, &value);
                    kube::core::cel::validate_cel(&attestation)
                        .unwrap_or_else(|e| panic!("{}: CEL: {e}", file.display()));
                }
                ("v1", "Namespace") => drop(typed::<Namespace>(file, &value)),
                ("v1", "Pod") => drop(typed::<Pod>(file, &value)),
                ("v1", "ServiceAccount") => drop(typed::<ServiceAccount>(file, &value)),
                ("apps/v1", "Deployment") => {
                    let deployment: Deployment = typed(file, &value);
                    let spec = deployment.spec.unwrap();
                    assert_eq!(
                        spec.selector.match_labels,
                        spec.template.metadata.unwrap().labels,
                        "{}: the selector must match the template's labels",
                        file.display()
                    );
                }
                ("batch/v1", "CronJob") => drop(typed::<CronJob>(file, &value)),
                other => panic!("{}: unexpected {other:?}", file.display()),
            }
            *kinds.entry(kind).or_default() += 1;
        }
    }
    let expected: std::collections::BTreeMap<String, usize> = [
        ("AttestationPolicy", 2),
        ("Attestor", 2),
        ("CronJob", 1),
        ("Deployment", 1),
        ("ImageAttestation", 3),
        ("Namespace", 5),
        ("Pod", 5),
        ("ServiceAccount", 1),
        ("gcloud Policy", 1),
    ]
    .into_iter()
    .map(|(k, n)| (k.to_owned(), n))
    .collect();
    assert_eq!(kinds, expected);

    // binauthz reads the folder the same way.
    let manifests = Manifests::load(&[examples()]).unwrap();
    assert_eq!(manifests.attestors.len(), 2);
    assert_eq!(manifests.policies.len(), 2);
    assert_eq!(manifests.attestations.len(), 3);
}

#[test]
fn the_imported_policy_is_what_policy_import_makes() {
    let out = binauthz(&[
        "policy",
        "import",
        "examples/policies/gke/google-policy.yaml",
        "--name",
        "payments",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed =
        std::fs::read_to_string(examples().join("policies/payments-policy.yaml")).unwrap();
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        committed,
        "examples/policies/payments-policy.yaml is stale: run examples/regenerate.sh"
    );

    // And export gives the GKE policy back.
    let out = binauthz(&[
        "policy",
        "export",
        "examples/policies/payments-policy.yaml",
        "--project",
        "example-project",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let google =
        std::fs::read_to_string(examples().join("policies/gke/google-policy.yaml")).unwrap();
    let content: String = google
        .lines()
        .filter(|l| !l.starts_with("etag:") && !l.starts_with("updateTime:"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(String::from_utf8(out.stdout).unwrap(), content);
}

#[test]
fn every_attestation_verifies_now_and_for_years() {
    let manifests = Manifests::load(&[examples()]).unwrap();
    for at in [None, Some("2036-01-01T00:00:00Z")] {
        let mut args = vec!["verify", "-f", "examples/"];
        if let Some(at) = at {
            args.extend(["--at", at]);
        }
        let out = binauthz(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{at:?}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let count = manifests.attestations.len();
        assert_eq!(text.lines().count(), count + 1, "{text}");
        assert!(
            text.ends_with(&format!(
                "Summary: {count} attestations: {count} verified, 0 failed\n"
            )),
            "{text}"
        );
        for (_, attestation) in &manifests.attestations {
            let expected = format!(
                "VERIFIED {}/{} {} key {}\n",
                attestation.metadata.namespace.as_deref().unwrap(),
                attestation.metadata.name.as_deref().unwrap(),
                attestation.spec.artifact_url,
                attestation.spec.signatures[0].public_key_id,
            );
            assert!(text.contains(&expected), "{at:?}: {expected}in\n{text}");
        }
    }
}

const WEB_TAG_DENIED: &str = "Image us-docker.pkg.dev/example-project/apps/web:1.4 denied by Binary Authorization default admission rule of policy cluster. Image us-docker.pkg.dev/example-project/apps/web:1.4 denied by attestor build: Expected digest with sha256 scheme, but got tag or malformed digest";

#[test]
fn evaluate_decides_every_workload_as_documented() {
    let expected = format!(
        "\
ADMITTED Pod ci/build-web
ADMITTED CronJob payments/settle
DENIED   Pod prod/debug: {WEB_TAG_DENIED}
  why: us-docker.pkg.dev/example-project/apps/web:1.4 is named by tag, and attestations name digests: pin it as us-docker.pkg.dev/example-project/apps/web@sha256:<digest>
BREAKGLASS Pod prod/hotfix
  warning: break glass: Image us-docker.pkg.dev/example-project/apps/web:1.4-hotfix would be denied: Image us-docker.pkg.dev/example-project/apps/web:1.4-hotfix denied by Binary Authorization default admission rule of policy cluster. Image us-docker.pkg.dev/example-project/apps/web:1.4-hotfix denied by attestor build: Expected digest with sha256 scheme, but got tag or malformed digest
ADMITTED Deployment prod/web
ADMITTED Pod sandbox/scratch
ADMITTED Pod staging/preview
  warning: dry run: Image us-docker.pkg.dev/example-project/apps/web:1.5-rc.1 would be denied: Image us-docker.pkg.dev/example-project/apps/web:1.5-rc.1 denied by Binary Authorization namespace admission rule for staging of policy cluster. Image us-docker.pkg.dev/example-project/apps/web:1.5-rc.1 denied by attestor build: Expected digest with sha256 scheme, but got tag or malformed digest
Summary: 7 workloads: 5 admitted, 1 breakglass, 1 denied
"
    );
    for at in [None, Some("2036-01-01T00:00:00Z")] {
        let mut args = vec!["evaluate", "-f", "examples/"];
        if let Some(at) = at {
            args.extend(["--at", at]);
        }
        let out = binauthz(&args);
        let text = String::from_utf8_lossy(&out.stdout);
        assert_eq!(text, expected, "{at:?}");
        assert_eq!(
            out.status.code(),
            Some(1),
            "the debug Pod is denied on purpose: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Without the intentionally denied Pod, the folder passes.
    let mut args = vec!["evaluate".to_owned()];
    for sub in ["attestors", "attestations", "policies"] {
        args.extend(["-f".into(), format!("examples/{sub}")]);
    }
    let mut files = Vec::new();
    yaml_files(&examples().join("workloads"), &mut files);
    for file in files
        .iter()
        .filter(|f| !f.ends_with("prod-debug-pod-denied.yaml"))
    {
        args.extend(["-f".into(), file.to_str().unwrap().to_owned()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = binauthz(&args);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // Without the qa attestation, the payments policy denies the CronJob.
    let out = binauthz(&[
        "evaluate",
        "-f",
        "examples/attestors",
        "-f",
        "examples/attestations/settle-build.yaml",
        "-f",
        "examples/policies",
        "-f",
        "examples/workloads/namespaces.yaml",
        "-f",
        "examples/workloads/payments-settle-cronjob.yaml",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.starts_with("DENIED   CronJob payments/settle: Image us-docker.pkg.dev/example-project/payments/settle@sha256:6868e83de35c465d84d347493ccc23d12b3bfacb9809d30292d21fc4701224d1 denied by Binary Authorization namespace admission rule for payments of policy payments. "),
        "{text}"
    );
    assert!(
        text.contains("denied by attestor qa: No attestations found that were valid and signed by a key trusted by the attestor"),
        "{text}"
    );
    // The denial says what the inputs hold for the digest, and what they lack.
    assert!(
        text.contains("\n  why: attestation payments/build-6868e83de35c465d (examples/attestations/settle-build.yaml (document 1)) is by attestor build, not qa\n"),
        "{text}"
    );
    // A signature that does not verify is named with the reason.
    let dir = tempfile::tempdir().unwrap();
    let tampered = std::fs::read_to_string(examples().join("attestations/settle-qa.yaml"))
        .unwrap()
        .replace(
            "publicKeyId: ni:///sha-256;",
            "publicKeyId: ni:///sha-256;x",
        );
    let tampered_file = dir.path().join("settle-qa.yaml");
    std::fs::write(&tampered_file, tampered).unwrap();
    let out = binauthz(&[
        "evaluate",
        "-f",
        "examples/attestors",
        "-f",
        "examples/attestations/settle-build.yaml",
        "-f",
        tampered_file.to_str().unwrap(),
        "-f",
        "examples/policies",
        "-f",
        "examples/workloads/namespaces.yaml",
        "-f",
        "examples/workloads/payments-settle-cronjob.yaml",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("by attestor qa does not verify: KeyNotFound: spec.signatures[0].publicKeyId ni:///sha-256;x"),
        "{text}"
    );
    assert!(
        text.contains("is not a key of Attestor qa (its keys: ni:///sha-256;"),
        "{text}"
    );
}
