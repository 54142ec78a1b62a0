//! `binauthz policy import|export` and `binauthz attestor import` against gcloud's shapes: the
//! reference's complete example round-trips exactly, every documented policy shape imports,
//! every bad input is one error line naming the field, imported attestors verify real gpg and
//! openssl signatures; and, when gcloud is on PATH, gcloud's own decoder and printer agree with
//! the fixtures and with what `policy export` prints.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod crypto_support;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use binauthz::crd::{AttestationPolicy, Attestor};
use binauthz::manifests::Manifests;
use binauthz::verify::AttestorKeys;
use crypto_support::{GpgHome, OpensslDir};

/// Fingerprint of the PGP key in `attestor-pgp.yaml` and `attestor-v1beta1.yaml`.
const FIXTURE_FPR: &str = "F747FF92340D4C0EB4DE74B7E6CFD4F5D2CE007A";
/// Default id of the ECDSA key in `attestor-pkix.yaml`.
const FIXTURE_EC_ID: &str = "ni:///sha-256;xyKR5xhdLESKxOijVMb8_B9OpDR6nsjh7C48ZHQDx80";
const KMS_ID: &str = "//cloudkms.googleapis.com/v1/projects/example-project/locations/global/keyRings/binauthz/cryptoKeys/prod-qualified/cryptoKeyVersions/1";
const IMAGE: &str = "us-docker.pkg.dev/example-project/apps/web@sha256:9b2a3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f809";

fn vectors() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/gcloud")
}

fn vector(name: &str) -> String {
    vectors().join(name).to_str().unwrap().to_owned()
}

fn binauthz(args: &[&str]) -> Output {
    binauthz_stdin(args, None)
}

fn binauthz_stdin(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_binauthz"))
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().unwrap()
}

fn ok(args: &[&str]) -> String {
    let out = binauthz(args);
    assert!(
        out.status.success(),
        "binauthz {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

/// A gcloud policy file without what export cannot restore: comments, `etag`, `updateTime`.
fn policy_content(text: &str) -> String {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.starts_with("etag:") && !l.starts_with("updateTime:"))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Parse the imported YAML as the operator would and check the CRD's CEL rules client-side.
fn typed_policy(yaml: &str) -> AttestationPolicy {
    let mut manifests = Manifests::default();
    manifests.add_text("imported.yaml", yaml).unwrap();
    assert_eq!(manifests.policies.len(), 1, "{yaml}");
    let policy = manifests.policies.remove(0).1;
    kube::core::cel::validate_cel(&policy).unwrap_or_else(|e| panic!("CEL: {e}\n{yaml}"));
    policy
}

fn typed_attestor(yaml: &str) -> Attestor {
    let mut manifests = Manifests::default();
    manifests.add_text("imported.yaml", yaml).unwrap();
    assert_eq!(manifests.attestors.len(), 1, "{yaml}");
    let attestor = manifests.attestors.remove(0).1;
    kube::core::cel::validate_cel(&attestor).unwrap_or_else(|e| panic!("CEL: {e}\n{yaml}"));
    attestor
}

/// Import a gcloud policy file, check it, export it back with `--project example-project`.
fn round_trip(file: &str, import_args: &[&str]) -> (String, String) {
    let mut args = vec!["policy", "import", file];
    args.extend_from_slice(import_args);
    let imported = ok(&args);
    typed_policy(&imported);
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "policy.yaml", &imported);
    let exported = ok(&["policy", "export", &path, "--project", "example-project"]);
    (imported, exported)
}

#[test]
fn reference_example_round_trips_exactly() {
    let reference = std::fs::read_to_string(vector("policy-reference.yaml")).unwrap();
    let (imported, exported) = round_trip(&vector("policy-reference.yaml"), &[]);
    assert_eq!(exported, policy_content(&reference));

    let policy = typed_policy(&imported);
    assert_eq!(policy.metadata.name.as_deref(), Some("example-project"));
    assert_eq!(
        policy.spec.kubernetes_namespace_admission_rules["prod"].require_attestations_by,
        ["secure-build", "prod-qualified"]
    );
    assert!(
        imported.starts_with(
            "# Imported by `binauthz policy import` from projects/example-project/policy (etag \"Mna+BCqXznjH\", updateTime 2024-05-12T05:17:42.444479Z dropped).\n"
        ),
        "{imported}"
    );
    assert!(
        imported.contains("`binauthz policy export --project example-project` restores it"),
        "{imported}"
    );

    // The same through stdin, under another name.
    let out = binauthz_stdin(
        &["policy", "import", "-", "--name", "from-gke"],
        Some(&reference),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let policy = typed_policy(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(policy.metadata.name.as_deref(), Some("from-gke"));
}

#[test]
fn documented_policy_shapes_import_and_export() {
    // Shapes export gives back as they were (modulo etag and updateTime).
    for file in [
        "policy-default.yaml",
        "policy-block-all.yaml",
        "policy-require-attestors.yaml",
        "policy-dry-run.yaml",
        "policy-exempt-images.yaml",
        "policy-service-accounts.yaml",
    ] {
        let original = std::fs::read_to_string(vector(file)).unwrap();
        let (_, exported) = round_trip(&vector(file), &[]);
        assert_eq!(exported, policy_content(&original), "{file}");
    }

    // The default policy of a new project admits everything.
    let (imported, _) = round_trip(&vector("policy-default.yaml"), &[]);
    let policy = typed_policy(&imported);
    assert_eq!(
        serde_json::to_value(&policy.spec).unwrap(),
        serde_json::json!({
            "globalPolicyEvaluationMode": "ENABLE",
            "defaultAdmissionRule": {
                "evaluationMode": "ALWAYS_ALLOW",
                "enforcementMode": "ENFORCED_BLOCK_AND_AUDIT_LOG"
            }
        })
    );

    // JSON, with a missing enforcementMode meaning ENFORCED_BLOCK_AND_AUDIT_LOG.
    let (_, exported) = round_trip(&vector("policy.json"), &[]);
    assert_eq!(
        exported,
        "\
defaultAdmissionRule:
  enforcementMode: ENFORCED_BLOCK_AND_AUDIT_LOG
  evaluationMode: REQUIRE_ATTESTATION
  requireAttestationsBy:
  - projects/example-project/attestors/secure-build
kubernetesNamespaceAdmissionRules:
  dev:
    enforcementMode: DRYRUN_AUDIT_LOG_ONLY
    evaluationMode: ALWAYS_ALLOW
name: projects/example-project/policy
"
    );

    // A cluster's rule becomes the default rule.
    let (imported, exported) = round_trip(
        &vector("policy-cluster.yaml"),
        &["--cluster", "us-east1-a.prod-cluster"],
    );
    assert!(
        imported.contains("# clusterAdmissionRules[us-east1-a.prod-cluster] became defaultAdmissionRule (--cluster us-east1-a.prod-cluster); the policy's own defaultAdmissionRule and the rules of europe-west1.staging were dropped.\n"),
        "{imported}"
    );
    assert_eq!(
        exported,
        "\
defaultAdmissionRule:
  enforcementMode: ENFORCED_BLOCK_AND_AUDIT_LOG
  evaluationMode: REQUIRE_ATTESTATION
  requireAttestationsBy:
  - projects/example-project/attestors/secure-build
  - projects/example-project/attestors/prod-qualified
globalPolicyEvaluationMode: ENABLE
name: projects/example-project/policy
"
    );

    // Mesh identities become service-account rules.
    let (imported, exported) = round_trip(&vector("policy-istio.yaml"), &[]);
    assert!(
        imported.contains("# istioServiceIdentityAdmissionRules[spiffe://example.com/ns/test-ns/sa/default] became kubernetesServiceAccountAdmissionRules[test-ns:default]"),
        "{imported}"
    );
    assert_eq!(
        exported,
        "\
defaultAdmissionRule:
  enforcementMode: ENFORCED_BLOCK_AND_AUDIT_LOG
  evaluationMode: REQUIRE_ATTESTATION
  requireAttestationsBy:
  - projects/example-project/attestors/secure-build
kubernetesServiceAccountAdmissionRules:
  prod:deployer:
    enforcementMode: ENFORCED_BLOCK_AND_AUDIT_LOG
    evaluationMode: ALWAYS_ALLOW
  test-ns:default:
    enforcementMode: DRYRUN_AUDIT_LOG_ONLY
    evaluationMode: ALWAYS_DENY
name: projects/example-project/policy
"
    );
}

#[test]
fn imported_policy_decides_with_google_messages() {
    let imported = ok(&["policy", "import", &vector("policy-reference.yaml")]);
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "policy.yaml", &imported);
    write(
        dir.path(),
        "pods.yaml",
        "\
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: prod}
spec:
  containers: [{name: web, image: 'us-docker.pkg.dev/example-project/apps/web:1.0'}]
---
apiVersion: v1
kind: Pod
metadata: {name: tool, namespace: prod}
spec:
  containers: [{name: tool, image: 'us-docker.pkg.dev/example-project/trusted/tools/jq:1.7'}]
---
apiVersion: v1
kind: Pod
metadata: {name: web, namespace: dev}
spec:
  containers: [{name: web, image: 'us-docker.pkg.dev/example-project/apps/web:1.0'}]
",
    );
    let out = binauthz(&["evaluate", "-f", dir.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert_eq!(
        text,
        "\
DENIED   Pod prod/web: Image us-docker.pkg.dev/example-project/apps/web:1.0 denied by Binary Authorization namespace admission rule for prod of policy example-project. Image us-docker.pkg.dev/example-project/apps/web:1.0 denied by attestor secure-build: Expected digest with sha256 scheme, but got tag or malformed digest Image us-docker.pkg.dev/example-project/apps/web:1.0 denied by attestor prod-qualified: Expected digest with sha256 scheme, but got tag or malformed digest
  why: us-docker.pkg.dev/example-project/apps/web:1.0 is named by tag, and attestations name digests: pin it as us-docker.pkg.dev/example-project/apps/web@sha256:<digest>
ADMITTED Pod prod/tool
ADMITTED Pod dev/web
Summary: 3 workloads: 2 admitted, 1 denied
"
    );
}

/// Run binauthz with a file holding `text` and return its one error line.
fn error_line(dir: &Path, text: &str, args: &[&str]) -> String {
    let file = write(dir, "input.yaml", text);
    let args: Vec<&str> = args
        .iter()
        .map(|a| if *a == "FILE" { file.as_str() } else { a })
        .collect();
    let out = binauthz(&args);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(out.stdout.is_empty(), "{args:?}: nothing on stdout");
    assert_eq!(err.lines().count(), 1, "{args:?}: one line: {err}");
    let prefix = format!("error: {file}: ");
    err.trim_end()
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("{args:?}: {err:?} should start with {prefix:?}"))
        .to_owned()
}

const POLICY_IMPORT: &[&str] = &["policy", "import", "FILE"];

/// Bad policy files, the error (after `error: FILE: `), and whether gcloud refuses them too.
fn policy_errors() -> Vec<(&'static str, &'static str, bool)> {
    vec![
        (
            "defaultAdmissionRule:\n  evaluationMode: SOMETIMES\n",
            "defaultAdmissionRule.evaluationMode: unknown value SOMETIMES; expected ALWAYS_ALLOW, REQUIRE_ATTESTATION or ALWAYS_DENY",
            true,
        ),
        (
            "defaultAdmissionRule:\n  evaluationMode: ALWAYS_ALLOW\n  enforcementMode: BLOCK\n",
            "defaultAdmissionRule.enforcementMode: unknown value BLOCK; expected ENFORCED_BLOCK_AND_AUDIT_LOG or DRYRUN_AUDIT_LOG_ONLY",
            true,
        ),
        (
            "defaultAdmissionRule:\n  evaluationMode: EVALUATION_MODE_UNSPECIFIED\n",
            "defaultAdmissionRule.evaluationMode: EVALUATION_MODE_UNSPECIFIED is not allowed (Google: \"Do not use\"); expected ALWAYS_ALLOW, REQUIRE_ATTESTATION or ALWAYS_DENY",
            false,
        ),
        (
            "defaultAdmissionRule:\n  evaluationMode: ALWAYS_ALLOW\nkubernetesNamespaceAdmissionRules:\n  dev:\n    evaluationMode: ALWAYS_ALLOW\n    enforcementMode: ENFORCEMENT_MODE_UNSPECIFIED\n",
            "kubernetesNamespaceAdmissionRules[dev].enforcementMode: ENFORCEMENT_MODE_UNSPECIFIED is not allowed (Google: \"Do not use\"); expected ENFORCED_BLOCK_AND_AUDIT_LOG or DRYRUN_AUDIT_LOG_ONLY",
            false,
        ),
        (
            "defaultAdmissionRule:\n  evaluationMode: ALWAYS_ALLOW\nglobalPolicyEvaluationMode: ENABLED\n",
            "globalPolicyEvaluationMode: unknown value ENABLED; expected ENABLE or DISABLE",
            true,
        ),
        (
            "defaultAdmissionRule:\n  evaluationMode: ALWAYS_ALLOW\ndescriptio: typo\n",
            "descriptio: unknown field; expected admissionWhitelistPatterns, clusterAdmissionRules, defaultAdmissionRule, description, etag, globalPolicyEvaluationMode, istioServiceIdentityAdmissionRules, kubernetesNamespaceAdmissionRules, kubernetesServiceAccountAdmissionRules, name or updateTime",
            true,
        ),
        (
            "admissionWhitelistPatterns:\n- pattern: gcr.io/x/*\ndefaultAdmissionRule:\n  evaluationMode: ALWAYS_ALLOW\n",
            "admissionWhitelistPatterns[0].pattern: unknown field; expected namePattern",
            true,
        ),
        (
            "admissionWhitelistPatterns: gcr.io/x/*\ndefaultAdmissionRule:\n  evaluationMode: ALWAYS_ALLOW\n",
            "admissionWhitelistPatterns[0]: expected a mapping, got a string",
            true,
        ),
        (
            "defaultAdmissionRule:\n  evaluationMode: REQUIRE_ATTESTATION\n  requireAttestationsBy: {a: b}\n",
            "defaultAdmissionRule.requireAttestationsBy[0]: expected a string, got a mapping",
            true,
        ),
        (
            "name: projects/p/policy\n",
            "defaultAdmissionRule: required; every policy has a default rule (gcloud exports it)",
            false,
        ),
        (
            "name: p\ndefaultAdmissionRule:\n  evaluationMode: ALWAYS_ALLOW\n",
            "name: expected projects/PROJECT_ID/policy, got p",
            false,
        ),
        (
            "defaultAdmissionRule:\n  evaluationMode: ALWAYS_ALLOW\nkubernetesServiceAccountAdmissionRules:\n  deployer:\n    evaluationMode: ALWAYS_ALLOW\n",
            "kubernetesServiceAccountAdmissionRules[deployer]: key must be namespace:serviceaccount (Kubernetes names), e.g. test-ns:default",
            false,
        ),
        (
            "defaultAdmissionRule:\n  evaluationMode: ALWAYS_ALLOW\nistioServiceIdentityAdmissionRules:\n  example.com/workload/web:\n    evaluationMode: ALWAYS_ALLOW\n",
            "istioServiceIdentityAdmissionRules[example.com/workload/web]: cannot map to a service account rule; expected [spiffe://]DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT with Kubernetes names",
            false,
        ),
        (
            "defaultAdmissionRule:\n  evaluationMode: ALWAYS_ALLOW\nclusterAdmissionRules:\n  us-central1-a.prod:\n    evaluationMode: ALWAYS_DENY\n",
            "clusterAdmissionRules cannot map to one cluster; pass --cluster us-central1-a.prod to use that cluster's rule as the default rule",
            false,
        ),
        (
            "defaultAdmissionRule:\n  evaluationMode: REQUIRE_ATTESTATION\n  requireAttestationsBy: [projects/p/attestors/Secure_Build]\n",
            "defaultAdmissionRule.requireAttestationsBy[0]: attestor Secure_Build is not a Kubernetes object name (at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit); rename the attestor",
            false,
        ),
        (
            "defaultAdmissionRule: [ALWAYS_ALLOW]\n",
            "defaultAdmissionRule: expected a mapping, got a list",
            true,
        ),
        (
            "defaultAdmissionRule:\n  evaluationMode: ALWAYS_ALLOW\n  requireAttestationsBy: [projects/p/attestors/a]\n",
            "defaultAdmissionRule.requireAttestationsBy: must be empty unless evaluationMode is REQUIRE_ATTESTATION",
            false,
        ),
        (
            "defaultAdmissionRule: {evaluationMode: [1, 2\n",
            "not YAML or JSON: ",
            true,
        ),
        (
            "- defaultAdmissionRule:\n    evaluationMode: ALWAYS_ALLOW\n",
            "expected a mapping (the output of `gcloud container binauthz policy export`), got a list",
            true,
        ),
        (
            "just text\n",
            "expected a mapping (the output of `gcloud container binauthz policy export`), got a string",
            true,
        ),
        (
            "",
            "the file is empty; expected the output of `gcloud container binauthz policy export`",
            false,
        ),
        (
            "apiVersion: binauthz.dev/v1alpha1\nkind: AttestationPolicy\nmetadata: {name: p}\n",
            "this is a Kubernetes AttestationPolicy, not the output of `gcloud container binauthz policy export`; it needs no import (apply it as it is)",
            true,
        ),
    ]
}

#[test]
fn bad_policy_files_give_one_line_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected, _) in policy_errors() {
        let line = error_line(dir.path(), text, POLICY_IMPORT);
        if expected.ends_with(": ") {
            assert!(line.starts_with(expected), "{text:?}: {line}");
        } else {
            assert_eq!(line, expected, "{text:?}");
        }
    }

    // --cluster must name a cluster of the policy.
    let cluster = std::fs::read_to_string(vector("policy-cluster.yaml")).unwrap();
    assert_eq!(
        error_line(
            dir.path(),
            &cluster,
            &[
                "policy",
                "import",
                "FILE",
                "--cluster",
                "us-central1-a.prod"
            ]
        ),
        "--cluster us-central1-a.prod: no such key in clusterAdmissionRules; its keys are europe-west1.staging, us-east1-a.prod-cluster"
    );
    assert_eq!(
        error_line(dir.path(), &cluster, POLICY_IMPORT),
        "clusterAdmissionRules cannot map to one cluster; pass --cluster europe-west1.staging to use that cluster's rule as the default rule (clusters: europe-west1.staging, us-east1-a.prod-cluster)"
    );
    assert_eq!(
        error_line(
            dir.path(),
            "defaultAdmissionRule: {evaluationMode: ALWAYS_ALLOW}\n",
            &[
                "policy",
                "import",
                "FILE",
                "--cluster",
                "us-central1-a.prod"
            ]
        ),
        "--cluster us-central1-a.prod: the policy has no clusterAdmissionRules; drop --cluster"
    );
    // Two identities of one service account with different rules cannot both apply.
    assert_eq!(
        error_line(
            dir.path(),
            "defaultAdmissionRule: {evaluationMode: ALWAYS_ALLOW}\nkubernetesServiceAccountAdmissionRules:\n  prod:deployer: {evaluationMode: ALWAYS_DENY}\nistioServiceIdentityAdmissionRules:\n  example.com/ns/prod/sa/deployer: {evaluationMode: ALWAYS_ALLOW}\n",
            POLICY_IMPORT
        ),
        "istioServiceIdentityAdmissionRules[example.com/ns/prod/sa/deployer]: maps to service account prod:deployer, which already has a different rule; make the two rules equal or drop one"
    );
}

#[test]
fn export_refuses_what_google_cannot_hold() {
    let dir = tempfile::tempdir().unwrap();
    let export = ["policy", "export", "FILE", "--project", "example-project"];
    let head = "apiVersion: binauthz.dev/v1alpha1\nkind: AttestationPolicy\nmetadata: {name: p}\nspec:\n  defaultAdmissionRule: {evaluationMode: ALWAYS_ALLOW}\n";
    assert_eq!(
        error_line(
            dir.path(),
            &format!("{head}  namespaceSelector: {{matchLabels: {{env: prod}}}}\n"),
            &export
        ),
        "spec.namespaceSelector: has no Google equivalent (a Google policy governs every namespace); remove it, or express it with kubernetesNamespaceAdmissionRules"
    );
    assert_eq!(
        error_line(
            dir.path(),
            &format!(
                "{head}  breakglass: Deny
"
            ),
            &export
        ),
        "spec.breakglass: Deny has no Google equivalent (Google Binary Authorization always honours breakglass); remove it to export"
    );
    assert_eq!(
        error_line(
            dir.path(),
            &format!(
                "{head}  kubernetesNamespaceAdmissionRules:\n    dev: {{evaluationMode: ALWAYS_ALLOW}}\n  kubernetesServiceAccountAdmissionRules:\n    ci:builder: {{evaluationMode: ALWAYS_ALLOW}}\n"
            ),
            &export
        ),
        "spec has both kubernetesNamespaceAdmissionRules and kubernetesServiceAccountAdmissionRules; a Google policy may have only one of them non-empty, so keep one"
    );
    assert_eq!(
        error_line(
            dir.path(),
            head,
            &["policy", "export", "FILE", "--project", "a/b"]
        ),
        "--project \"a/b\": expected a Google Cloud project id, e.g. example-project"
    );
    // Several policies: --name chooses.
    let two = format!("{head}---\n{}", head.replace("name: p}", "name: q}"));
    let out = binauthz(&[
        "policy",
        "export",
        &write(dir.path(), "two.yaml", &two),
        "--project",
        "x",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        err.contains("holds 2 AttestationPolicies (p, q); choose one with --name"),
        "{err}"
    );
    let chosen = ok(&[
        "policy",
        "export",
        &dir.path().join("two.yaml").to_string_lossy(),
        "--project",
        "x",
        "--name",
        "q",
    ]);
    assert!(chosen.ends_with("name: projects/x/policy\n"), "{chosen}");
}

#[test]
fn attestor_fixtures_import() {
    // PGP: the id is dropped (binauthz computes it) and the key's fingerprint is the one Google showed.
    for (file, name) in [
        ("attestor-pgp.yaml", "secure-build"),
        ("attestor-v1beta1.yaml", "legacy-build"),
    ] {
        let yaml = ok(&["attestor", "import", &vector(file)]);
        assert!(!yaml.contains("\n    id:"), "{yaml}");
        assert!(
            yaml.contains("# PGP key ids are not copied: binauthz computes them"),
            "{yaml}"
        );
        let attestor = typed_attestor(&yaml);
        assert_eq!(attestor.metadata.name.as_deref(), Some(name));
        let keys = AttestorKeys::load(name, &attestor.spec);
        assert_eq!(keys.keys.len(), 1);
        assert_eq!(keys.keys[0].id.as_deref(), Some(FIXTURE_FPR));
        assert!(keys.keys[0].key.is_ok(), "{:?}", keys.keys[0].key);
    }
    let yaml = ok(&["attestor", "import", &vector("attestor-pgp.yaml")]);
    let attestor = typed_attestor(&yaml);
    assert_eq!(
        attestor.spec.description.as_deref(),
        Some("Images built by the release pipeline")
    );
    assert_eq!(
        attestor.spec.public_keys[0].comment.as_deref(),
        Some("release key")
    );

    // PKIX: ids are kept, Google-assigned and Cloud KMS alike.
    let yaml = ok(&[
        "attestor",
        "import",
        &vector("attestor-pkix.yaml"),
        "--name",
        "qualified",
    ]);
    let attestor = typed_attestor(&yaml);
    assert_eq!(attestor.metadata.name.as_deref(), Some("qualified"));
    let keys = AttestorKeys::load("qualified", &attestor.spec);
    let ids: Vec<_> = keys.keys.iter().map(|k| k.id.as_deref().unwrap()).collect();
    assert_eq!(ids, [FIXTURE_EC_ID, KMS_ID]);
    assert!(keys.keys.iter().all(|k| k.key.is_ok()), "{:?}", keys.keys);
    assert_eq!(
        attestor.spec.public_keys[1].comment.as_deref(),
        Some("Cloud KMS key")
    );
}

/// An attestor as `gcloud container binauthz attestors describe --format=yaml` prints it.
fn describe_yaml(name: &str, keys: &str) -> String {
    format!(
        "name: projects/example-project/attestors/{name}\nupdateTime: '2025-03-14T09:31:07.120214Z'\nuserOwnedGrafeasNote:\n  delegationServiceAccountEmail: service-363451293945@gcp-sa-binaryauthorization.iam.gserviceaccount.com\n  noteReference: projects/example-project/notes/{name}\n  publicKeys:\n{keys}"
    )
}

fn indent(text: &str, spaces: usize) -> String {
    let pad = " ".repeat(spaces);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

#[test]
fn imported_attestors_verify_real_signatures() {
    let work = tempfile::tempdir().unwrap();
    let dir = work.path();
    let payload = ok(&["create-signature-payload", "--artifact-url", IMAGE]);
    let payload_file = write(dir, "payload.json", &payload);

    // PGP, signed the way gcloud documents.
    let gpg = GpgHome::new();
    let fpr = gpg.gen_key("Secure Build <build@example.com>", "rsa3072", "sign", "1y");
    let describe = describe_yaml(
        "secure-build",
        &format!(
            "  - asciiArmoredPgpPublicKey: |\n{}    id: {fpr}\n",
            indent(&gpg.export(&fpr), 6)
        ),
    );
    let signature = dir.join("signature.pgp");
    gpg.gpg(&[
        "--local-user",
        &fpr,
        "--armor",
        "--output",
        signature.to_str().unwrap(),
        "--sign",
        &payload_file,
    ]);
    let repo = dir.join("pgp");
    std::fs::create_dir(&repo).unwrap();
    let describe_file = write(dir, "pgp-describe.yaml", &describe);
    write(
        &repo,
        "attestor.yaml",
        ok(&["attestor", "import", &describe_file]),
    );
    write(
        &repo,
        "attestation.yaml",
        ok(&[
            "attestation",
            "create",
            "--artifact-url",
            IMAGE,
            "--attestor",
            "secure-build",
            "--signature-file",
            signature.to_str().unwrap(),
            "--public-key-id",
            &fpr,
        ]),
    );
    let verified = ok(&["verify", "-f", repo.to_str().unwrap()]);
    assert!(
        verified.starts_with("VERIFIED default/secure-build-"),
        "{verified}"
    );
    assert!(verified.contains(&fpr), "{verified}");

    // A description whose PGP id is not its key's fingerprint is refused.
    let wrong = describe.replace(&fpr, FIXTURE_FPR);
    assert_eq!(
        error_line(dir, &wrong, &["attestor", "import", "FILE"]),
        format!(
            "userOwnedGrafeasNote.publicKeys[0].id: {FIXTURE_FPR} is not the key's fingerprint {fpr}; the description does not match its key"
        )
    );

    // PKIX with a Cloud KMS-style id, in PkixPublicKey.keyId as the v1 API also allows.
    let ssl = OpensslDir::new();
    ssl.genpkey(
        "ec",
        &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"],
    );
    let describe = describe_yaml(
        "prod-qualified",
        &format!(
            "  - id: {KMS_ID}\n    pkixPublicKey:\n      keyId: {KMS_ID}\n      publicKeyPem: |\n{}      signatureAlgorithm: EC_SIGN_P256_SHA256\n",
            indent(&ssl.read_string("ec.pub"), 8)
        ),
    );
    ssl.openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        &ssl.file("ec.key"),
        "-out",
        &ssl.file("payload.sig"),
        &payload_file,
    ]);
    let repo = dir.join("pkix");
    std::fs::create_dir(&repo).unwrap();
    let describe_file = write(dir, "pkix-describe.yaml", &describe);
    write(
        &repo,
        "attestor.yaml",
        ok(&["attestor", "import", &describe_file]),
    );
    write(
        &repo,
        "attestation.yaml",
        ok(&[
            "attestation",
            "create",
            "--artifact-url",
            IMAGE,
            "--attestor",
            "prod-qualified",
            "--signature-file",
            &ssl.file("payload.sig"),
            "--public-key-id",
            KMS_ID,
        ]),
    );
    let verified = ok(&["verify", "-f", repo.to_str().unwrap()]);
    assert!(verified.contains(&format!("key {KMS_ID}")), "{verified}");

    // The same key under the wrong algorithm, or with a keyId that contradicts the id.
    assert_eq!(
        error_line(
            dir,
            &describe.replace("EC_SIGN_P256_SHA256", "RSA_SIGN_PKCS1_2048_SHA256"),
            &["attestor", "import", "FILE"]
        )
        .split_once(": ")
        .unwrap()
        .0,
        "userOwnedGrafeasNote.publicKeys[0].pkixPublicKey"
    );
    assert_eq!(
        error_line(
            dir,
            &describe.replacen(&format!("keyId: {KMS_ID}"), "keyId: other-id", 1),
            &["attestor", "import", "FILE"]
        ),
        format!(
            "userOwnedGrafeasNote.publicKeys[0].pkixPublicKey.keyId: other-id differs from the key's id {KMS_ID}; Google requires them equal"
        )
    );
}

/// Bad attestor descriptions and their error (after `error: FILE: `).
fn attestor_errors() -> Vec<(String, &'static str, bool)> {
    let pkix = std::fs::read_to_string(vector("attestor-pkix.yaml")).unwrap();
    vec![
        (
            pkix.replace("ECDSA_P256_SHA256", "ECDSA_P256"),
            "userOwnedGrafeasNote.publicKeys[0].pkixPublicKey.signatureAlgorithm: unknown value ECDSA_P256; expected RSA_PSS_2048_SHA256, RSA_SIGN_PSS_2048_SHA256, RSA_PSS_3072_SHA256, RSA_SIGN_PSS_3072_SHA256, RSA_PSS_4096_SHA256, RSA_SIGN_PSS_4096_SHA256, RSA_PSS_4096_SHA512, RSA_SIGN_PSS_4096_SHA512, RSA_SIGN_PKCS1_2048_SHA256, RSA_SIGN_PKCS1_3072_SHA256, RSA_SIGN_PKCS1_4096_SHA256, RSA_SIGN_PKCS1_4096_SHA512, ECDSA_P256_SHA256, EC_SIGN_P256_SHA256, ECDSA_P384_SHA384, EC_SIGN_P384_SHA384, ECDSA_P521_SHA512 or EC_SIGN_P521_SHA512",
            true,
        ),
        (
            pkix.replace("ECDSA_P256_SHA256", "SIGNATURE_ALGORITHM_UNSPECIFIED"),
            "userOwnedGrafeasNote.publicKeys[0].pkixPublicKey.signatureAlgorithm: SIGNATURE_ALGORITHM_UNSPECIFIED is not allowed",
            false,
        ),
        (
            pkix.replace("  - comment: Cloud KMS key", "  - note: Cloud KMS key"),
            "userOwnedGrafeasNote.publicKeys[1].note: unknown field; expected asciiArmoredPgpPublicKey, comment, id or pkixPublicKey",
            true,
        ),
        (
            pkix.replace("userOwnedGrafeasNote:", "userOwnedNote:"),
            "userOwnedNote: unknown field; expected description, etag, name, updateTime, userOwnedDrydockNote or userOwnedGrafeasNote",
            true,
        ),
        (
            pkix.replace("  noteReference:", "  note:"),
            "userOwnedGrafeasNote.note: unknown field; expected delegationServiceAccountEmail, noteReference or publicKeys",
            true,
        ),
        (
            pkix.replace("MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE", "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAF"),
            "userOwnedGrafeasNote.publicKeys[0].pkixPublicKey: ",
            false,
        ),
        (
            "name: projects/example-project/attestors/x\n".to_owned(),
            "userOwnedGrafeasNote: required; it holds the attestor's public keys",
            false,
        ),
        (
            "name: projects/example-project/attestors/Build_Attestor\nuserOwnedGrafeasNote: {noteReference: projects/example-project/notes/n}\n".to_owned(),
            "name: attestor Build_Attestor is not a Kubernetes object name (at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit); pass --name",
            false,
        ),
        (
            "name: projects/example-project/attestors/x\nuserOwnedGrafeasNote:\n  publicKeys:\n  - comment: nothing\n".to_owned(),
            "userOwnedGrafeasNote.publicKeys[0]: set one of asciiArmoredPgpPublicKey or pkixPublicKey",
            false,
        ),
        (
            "name: projects/example-project/attestors/x\nuserOwnedGrafeasNote:\n  publicKeys:\n  - asciiArmoredPgpPublicKey: not a key\n".to_owned(),
            "userOwnedGrafeasNote.publicKeys[0].asciiArmoredPgpPublicKey: ",
            false,
        ),
        (
            "name: projects/example-project/attestors/x\nuserOwnedGrafeasNote: {}\nuserOwnedDrydockNote: {}\n".to_owned(),
            "userOwnedDrydockNote: give userOwnedGrafeasNote (v1) or userOwnedDrydockNote (v1beta1), not both",
            false,
        ),
        (
            "userOwnedGrafeasNote: {}\n".to_owned(),
            "name: required (projects/PROJECT_ID/attestors/NAME), or pass --name",
            false,
        ),
    ]
}

#[test]
fn bad_attestor_files_give_one_line_naming_the_field() {
    let dir = tempfile::tempdir().unwrap();
    for (text, expected, _) in attestor_errors() {
        let line = error_line(dir.path(), &text, &["attestor", "import", "FILE"]);
        if expected.ends_with(": ") || expected.ends_with("not allowed") {
            assert!(line.starts_with(expected), "{expected}: {line}");
        } else {
            assert_eq!(line, expected);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// gcloud itself, when installed.

/// The Cloud SDK root of the `gcloud` on PATH (`.../bin/gcloud` -> `...`).
fn gcloud_sdk_root() -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    let gcloud = std::env::split_paths(&path)
        .map(|dir| dir.join("gcloud"))
        .find(|p| p.is_file())?;
    let root = std::fs::canonicalize(gcloud)
        .ok()?
        .parent()?
        .parent()?
        .to_owned();
    root.join("lib/googlecloudsdk").is_dir().then_some(root)
}

/// Decode files with gcloud's `DictToMessageWithErrorCheck` and print them with gcloud's YAML
/// printer; one result per file (`Err` holds gcloud's error).
fn gcloud_decode(
    root: &Path,
    api_version: &str,
    message: &str,
    files: &[String],
) -> Vec<Result<String, String>> {
    let python = std::env::var("CLOUDSDK_PYTHON").unwrap_or_else(|_| "python3".into());
    let out = Command::new(python)
        .arg(vector("gcloud_decode.py"))
        .arg(root)
        .args([api_version, message])
        .args(files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gcloud_decode.py failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut results = Vec::new();
    for chunk in text.split("=== ").skip(1) {
        let (_, body) = chunk.split_once('\n').unwrap();
        results.push(match body.strip_prefix("ERROR: ") {
            Some(error) => Err(error.trim_end().to_owned()),
            None => Ok(body.to_owned()),
        });
    }
    assert_eq!(results.len(), files.len(), "{text}");
    results
}

#[test]
fn gcloud_agrees_with_fixtures_exports_and_errors() {
    let Some(root) = gcloud_sdk_root() else {
        println!(
            "gcloud_import: gcloud is not on PATH; gcloud's decoder was NOT consulted (the fixtures were checked by it when written)"
        );
        return;
    };
    let dir = tempfile::tempdir().unwrap();

    // Every policy fixture is exactly what gcloud prints after decoding it.
    let mut fixtures: Vec<String> = std::fs::read_dir(vectors())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("policy") && name.ends_with(".yaml")
        })
        .map(|p| p.to_str().unwrap().to_owned())
        .collect();
    fixtures.sort();
    assert!(fixtures.len() >= 9, "{fixtures:?}");
    // And so is every export of an imported fixture.
    let mut exports = Vec::new();
    for (i, file) in fixtures.iter().enumerate() {
        let cluster: &[&str] = if file.ends_with("policy-cluster.yaml") {
            &["--cluster", "us-east1-a.prod-cluster"]
        } else {
            &[]
        };
        let (_, exported) = round_trip(file, cluster);
        exports.push(write(dir.path(), &format!("export-{i}.yaml"), exported));
    }
    let all: Vec<String> = fixtures.iter().chain(&exports).cloned().collect();
    for (file, printed) in all.iter().zip(gcloud_decode(&root, "v1", "Policy", &all)) {
        let printed = printed.unwrap_or_else(|e| panic!("gcloud refuses {file}: {e}"));
        let ours = std::fs::read_to_string(file).unwrap();
        let ours: String = ours
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| format!("{l}\n"))
            .collect();
        assert_eq!(printed, ours, "{file} is not in gcloud's printed form");
    }

    // The attestor fixtures are what gcloud prints for v1 (and v1beta1) attestors.
    for (version, file) in [
        ("v1", "attestor-pgp.yaml"),
        ("v1", "attestor-pkix.yaml"),
        ("v1beta1", "attestor-v1beta1.yaml"),
    ] {
        let path = vector(file);
        let printed = gcloud_decode(&root, version, "Attestor", std::slice::from_ref(&path))
            .remove(0)
            .unwrap_or_else(|e| panic!("gcloud refuses {file}: {e}"));
        assert_eq!(printed, std::fs::read_to_string(&path).unwrap(), "{file}");
    }

    // What binauthz refuses as unknown fields or values, gcloud refuses too.
    let mut refused = Vec::new();
    for (i, (text, expected, gcloud_refuses)) in policy_errors().into_iter().enumerate() {
        if gcloud_refuses && !text.starts_with("apiVersion") {
            refused.push((
                expected.to_owned(),
                write(dir.path(), &format!("bad-{i}.yaml"), text),
            ));
        }
    }
    let files: Vec<String> = refused.iter().map(|(_, f)| f.clone()).collect();
    for ((expected, file), result) in refused
        .iter()
        .zip(gcloud_decode(&root, "v1", "Policy", &files))
    {
        assert!(
            result.is_err(),
            "gcloud accepts {file} ({expected}): {result:?}"
        );
    }
    let mut refused = Vec::new();
    for (i, (text, expected, gcloud_refuses)) in attestor_errors().into_iter().enumerate() {
        if gcloud_refuses {
            refused.push((
                expected,
                write(dir.path(), &format!("bad-attestor-{i}.yaml"), text),
            ));
        }
    }
    let files: Vec<String> = refused.iter().map(|(_, f)| f.clone()).collect();
    for ((expected, file), result) in refused
        .iter()
        .zip(gcloud_decode(&root, "v1", "Attestor", &files))
    {
        assert!(
            result.is_err(),
            "gcloud accepts {file} ({expected}): {result:?}"
        );
    }
    // Strings that YAML printers quote or fold differently still mean the same to gcloud.
    let tricky = "\
apiVersion: binauthz.dev/v1alpha1
kind: AttestationPolicy
metadata: {name: tricky}
spec:
  description: 'Payments: \"strict\" policy, owned by team-\u{03b1}; see https://example.com/a#b, and text long enough to be folded by a YAML printer'
  globalPolicyEvaluationMode: DISABLE
  admissionWhitelistPatterns:
  - namePattern: '!gcr.io/p/x'
  - namePattern: gcr.io/p/img@sha256:*
  - namePattern: 'gcr.io/p/yes:on'
  defaultAdmissionRule: {evaluationMode: REQUIRE_ATTESTATION, requireAttestationsBy: [a, b.c]}
  kubernetesNamespaceAdmissionRules:
    'true': {evaluationMode: ALWAYS_DENY, enforcementMode: DRYRUN_AUDIT_LOG_ONLY}
    '0123': {evaluationMode: ALWAYS_ALLOW}
";
    let original = typed_policy(tricky);
    let source = write(dir.path(), "tricky.yaml", tricky);
    let exported = write(
        dir.path(),
        "tricky-export.yaml",
        ok(&["policy", "export", &source, "--project", "p"]),
    );
    let printed = gcloud_decode(&root, "v1", "Policy", std::slice::from_ref(&exported))
        .remove(0)
        .unwrap_or_else(|e| panic!("gcloud refuses {exported}: {e}"));
    let reprinted = write(dir.path(), "tricky-gcloud.yaml", printed);
    let back = typed_policy(&ok(&["policy", "import", &reprinted, "--name", "tricky"]));
    assert_eq!(
        serde_json::to_value(&back.spec).unwrap(),
        serde_json::to_value(&original.spec).unwrap()
    );

    println!(
        "gcloud_import: gcloud decoded and printed {} policy files and 3 attestors exactly as binauthz has them",
        all.len()
    );
}

/// `gcloud container binauthz attestations list --format=json` prints bytes as URL-safe base64.
fn decode_base64(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    let standard: String = text
        .chars()
        .map(|c| match c {
            '-' => '+',
            '_' => '/',
            c => c,
        })
        .collect();
    base64::engine::general_purpose::STANDARD
        .decode(standard)
        .unwrap()
}

#[test]
fn container_analysis_attestations_become_image_attestations() {
    // Occurrences as gcloud lists them, signed by the Cloud KMS (RSA-PSS) and the ECDSA key of
    // attestor-pkix.yaml: the same payload and signature make an ImageAttestation that verifies.
    let list: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(vector("attestations-prod-qualified.json")).unwrap(),
    )
    .unwrap();
    let work = tempfile::tempdir().unwrap();
    let repo = work.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    write(
        &repo,
        "attestor.yaml",
        ok(&["attestor", "import", &vector("attestor-pkix.yaml")]),
    );
    let occurrences = list.as_array().unwrap();
    assert_eq!(occurrences.len(), 2);
    for (i, occurrence) in occurrences.iter().enumerate() {
        assert_eq!(occurrence["kind"], "ATTESTATION");
        let signature = &occurrence["attestation"]["signatures"][0];
        let payload = write(
            work.path(),
            "payload.json",
            decode_base64(
                occurrence["attestation"]["serializedPayload"]
                    .as_str()
                    .unwrap(),
            ),
        );
        let signature_file = write(
            work.path(),
            "signature.bin",
            decode_base64(signature["signature"].as_str().unwrap()),
        );
        let yaml = ok(&[
            "attestation",
            "create",
            "--artifact-url",
            occurrence["resourceUri"].as_str().unwrap(),
            "--attestor",
            "prod-qualified",
            "--signature-file",
            &signature_file,
            "--payload-file",
            &payload,
            "--public-key-id",
            signature["publicKeyId"].as_str().unwrap(),
        ]);
        write(&repo, &format!("attestation-{i}.yaml"), yaml);
    }
    let verified = ok(&["verify", "-f", repo.to_str().unwrap()]);
    assert_eq!(verified.lines().count(), 3, "{verified}");
    assert!(
        verified.ends_with("Summary: 2 attestations: 2 verified, 0 failed\n"),
        "{verified}"
    );
    assert!(verified.contains(&format!("key {KMS_ID}\n")), "{verified}");
    assert!(
        verified.contains(&format!("key {FIXTURE_EC_ID}\n")),
        "{verified}"
    );
}
