//! The CLI is as strict as the cluster: every document below is given to the real kube-apiserver
//! (`kubectl create --dry-run=server --validate=strict`, what `kubectl apply` does by default)
//! and to binauthz's offline check (`crd::validate::check`, which `verify`, `evaluate` and
//! `attestation create` run), and both must agree: accepted by both, or refused by both, the
//! API server naming every field the CLI names. Each schema rule, CEL rule and name rule of the
//! three kinds is exercised, valid and invalid.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use binauthz::crd::validate;
use support::cluster::kubectl_stdin;
use support::operator::install_crds;

const DIGEST: &str = "sha256:845f77fab71033404f4cfceaa1ddb27b70c3551ceb22a5e7f4498cdda6c9daea";

fn policy(spec: &str) -> String {
    format!(
        "apiVersion: binauthz.dev/v1alpha1\nkind: AttestationPolicy\nmetadata: {{name: parity}}\nspec:\n{spec}"
    )
}

fn allow_with_pattern(pattern: &str) -> String {
    policy(&format!(
        "  defaultAdmissionRule: {{evaluationMode: ALWAYS_ALLOW}}\n  admissionWhitelistPatterns:\n  - namePattern: {}\n",
        serde_json::to_string(pattern).unwrap()
    ))
}

fn attestor(keys: &str) -> String {
    format!(
        "apiVersion: binauthz.dev/v1alpha1\nkind: Attestor\nmetadata: {{name: parity}}\nspec:\n  publicKeys:\n{keys}"
    )
}

fn attestation(spec: &str) -> String {
    format!(
        "apiVersion: binauthz.dev/v1alpha1\nkind: ImageAttestation\nmetadata: {{name: parity, namespace: default}}\nspec:\n{spec}"
    )
}

const PGP_KEY: &str = "  - asciiArmoredPgpPublicKey: \"-----BEGIN PGP PUBLIC KEY BLOCK-----\"\n";

/// Every kind of allowlist pattern the policy engine knows, valid and not.
const PATTERNS: &[&str] = &[
    "gcr.io/p/app",
    "gcr.io/p/*",
    "gcr.io/p/**",
    "gcr.io/*",
    "nginx",
    "gcr.io/p/app:v1.*",
    "gcr.io/p/app@*",
    "",
    "*",
    "**",
    "/p/*",
    "gcr.io/**/foo",
    "gcr.io/p/***",
    "gcr.io/p*/app",
    "gcr.io/p app",
    "gcr.io/p\tapp",
    "gcr.io/p\u{a0}app",
    "gcr.io/p\u{85}app",
    "gcr.io/p\u{2003}*",
    "gcr.io/p\u{b}app",
    "gcr.io/p\u{3000}app",
    "gcr.io/p\u{2028}app",
    "gcr.io/p\u{200b}app",
];

/// Documents, each with a label; valid and invalid ones.
fn corpus() -> Vec<(String, String)> {
    let allow = "  defaultAdmissionRule: {evaluationMode: ALWAYS_ALLOW}\n";
    let require = |by: &str| {
        format!(
            "  defaultAdmissionRule: {{evaluationMode: REQUIRE_ATTESTATION, requireAttestationsBy: {by}}}\n"
        )
    };
    let signature = "  signatures: [{publicKeyId: k, signature: c2ln}]\n";
    let url = format!("  artifactUrl: gcr.io/p/app@{DIGEST}\n  attestor: build\n");
    let many: Vec<String> = (0..65).map(|i| format!("a{i}")).collect();
    let mut docs: Vec<(String, String)> = vec![
        ("policy: valid".into(), policy(allow)),
        ("policy: valid, every field".into(), policy(&format!(
            "  description: d\n  globalPolicyEvaluationMode: ENABLE\n  breakglass: Deny\n{}  kubernetesNamespaceAdmissionRules:\n    prod: {{evaluationMode: ALWAYS_DENY, enforcementMode: DRYRUN_AUDIT_LOG_ONLY}}\n  kubernetesServiceAccountAdmissionRules:\n    prod:builder: {{evaluationMode: ALWAYS_ALLOW}}\n  namespaceSelector: {{matchLabels: {{env: prod}}}}\n",
            require("[build, projects/p/attestors/qa]")
        ))),
        ("policy: misspelt requireAttestationsBy".into(), policy(
            "  defaultAdmissionRule: {evaluationMode: REQUIRE_ATTESTATION, requireAttestationBy: [build]}\n",
        )),
        ("policy: misspelt admissionWhitelistPatterns".into(), policy(&format!(
            "{allow}  admissionWhitelistPattern: [{{namePattern: gcr.io/x/*}}]\n"
        ))),
        ("policy: REQUIRE_ATTESTATION without attestors".into(), policy(
            "  defaultAdmissionRule: {evaluationMode: REQUIRE_ATTESTATION}\n",
        )),
        ("policy: ALWAYS_ALLOW with attestors".into(), policy(
            "  defaultAdmissionRule: {evaluationMode: ALWAYS_ALLOW, requireAttestationsBy: [build]}\n",
        )),
        ("policy: unknown evaluation mode".into(), policy(
            "  defaultAdmissionRule: {evaluationMode: SOMETIMES}\n",
        )),
        ("policy: unknown breakglass".into(), policy(&format!("{allow}  breakglass: Maybe\n"))),
        ("policy: no default rule".into(), policy("  description: d\n")),
        ("policy: no spec".into(), "apiVersion: binauthz.dev/v1alpha1\nkind: AttestationPolicy\nmetadata: {name: parity}\n".into()),
        ("policy: description too long".into(), policy(&format!(
            "{allow}  description: {}\n",
            "d".repeat(4097)
        ))),
        ("policy: 65 required attestors".into(), policy(&require(&format!("[{}]", many.join(", "))))),
        ("policy: service account key without ':'".into(), policy(&format!(
            "{allow}  kubernetesServiceAccountAdmissionRules:\n    builder: {{evaluationMode: ALWAYS_ALLOW}}\n"
        ))),
        ("policy: invalid name".into(), policy(allow).replace("name: parity", "name: Bad/Name")),
        ("policy: misspelt metadata field".into(), policy(allow).replace("{name: parity}", "{name: parity, lables: {a: b}}")),
        ("policy: label that is not a string".into(), policy(allow).replace("{name: parity}", "{name: parity, labels: {a: 1}}")),
        ("attestor: valid PGP".into(), attestor(PGP_KEY)),
        ("attestor: valid PKIX".into(), attestor(
            "  - pkixPublicKey: {signatureAlgorithm: ECDSA_P256_SHA256, publicKeyPem: pem}\n    id: ni:///sha-256;x\n",
        )),
        ("attestor: no keys".into(), attestor("    []\n")),
        ("attestor: publicKey instead of publicKeys".into(), attestor(PGP_KEY).replace("publicKeys:", "publicKey:")),
        ("attestor: both kinds of key".into(), attestor(
            "  - asciiArmoredPgpPublicKey: k\n    pkixPublicKey: {signatureAlgorithm: ECDSA_P256_SHA256, publicKeyPem: pem}\n",
        )),
        ("attestor: neither kind of key".into(), attestor("  - comment: nothing\n")),
        ("attestor: unknown algorithm".into(), attestor(
            "  - pkixPublicKey: {signatureAlgorithm: ECDSA_P999, publicKeyPem: pem}\n",
        )),
        ("attestor: 33 keys".into(), attestor(&PGP_KEY.repeat(33))),
        ("attestation: valid".into(), attestation(&format!("{url}  serializedPayload: e30=\n{signature}"))),
        ("attestation: with status".into(), attestation(&format!("{url}{signature}")) + "status: {conditions: []}\n"),
        ("attestation: tag, not digest".into(), attestation(&format!(
            "  artifactUrl: gcr.io/p/app:latest\n  attestor: build\n{signature}"
        ))),
        ("attestation: empty attestor".into(), attestation(&format!(
            "  artifactUrl: gcr.io/p/app@{DIGEST}\n  attestor: \"\"\n{signature}"
        ))),
        ("attestation: no signatures".into(), attestation(&format!("{url}  signatures: []\n"))),
        ("attestation: 9 signatures".into(), attestation(&format!(
            "{url}  signatures:\n{}",
            "  - {publicKeyId: k, signature: c2ln}\n".repeat(9)
        ))),
        ("attestation: signature without key id".into(), attestation(&format!("{url}  signatures: [{{signature: c2ln}}]\n"))),
        ("attestation: misspelt signature field".into(), attestation(&format!(
            "{url}  signatures: [{{publicKeyID: k, signature: c2ln}}]\n"
        ))),
        ("attestation: payload too long".into(), attestation(&format!(
            "{url}  serializedPayload: {}\n{signature}",
            "A".repeat(21_852)
        ))),
        ("attestation: artifact URL too long".into(), attestation(&format!(
            "  artifactUrl: gcr.io/{}@{DIGEST}\n  attestor: build\n{signature}",
            "p".repeat(1100)
        ))),
    ];
    for pattern in PATTERNS {
        docs.push((format!("pattern {pattern:?}"), allow_with_pattern(pattern)));
    }
    docs
}

/// What the API server says: `Ok` when it would create the object, else its message.
fn server(document: &str) -> Result<(), String> {
    let out = kubectl_stdin(
        [
            "create",
            "--dry-run=server",
            "--validate=strict",
            "-o",
            "name",
            "-f",
            "-",
        ],
        document,
    );
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// What the CLI says.
fn offline(document: &str) -> Result<(), Vec<validate::Problem>> {
    let yaml: serde_yaml::Value = serde_yaml::from_str(document).unwrap();
    validate::check(&serde_json::to_value(yaml).unwrap())
}

#[test]
fn offline_validation_agrees_with_the_api_server() {
    install_crds();
    let mut disagreements = Vec::new();
    let (mut accepted, mut refused) = (0, 0);
    for (label, document) in corpus() {
        match (server(&document), offline(&document)) {
            (Ok(()), Ok(())) => accepted += 1,
            (Err(message), Err(problems)) => {
                refused += 1;
                // The server names each field the CLI names (paths differ only in how list
                // indexes and map keys are written).
                for problem in &problems {
                    let field = problem.field.replace("[", ".").replace("]", "");
                    let message = message.replace("[", ".").replace("]", "");
                    if !field.is_empty() && !message.contains(&field) {
                        disagreements.push(format!(
                            "{label}: the CLI names {} but the API server says: {message}",
                            problem.field
                        ));
                    }
                }
            }
            (Ok(()), Err(problems)) => disagreements.push(format!(
                "{label}: the API server accepts it, the CLI refuses: {problems:?}"
            )),
            (Err(message), Ok(())) => disagreements.push(format!(
                "{label}: the CLI accepts it, the API server refuses: {message}"
            )),
        }
    }
    println!("{accepted} documents accepted and {refused} refused by both");
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
    assert!(
        accepted >= 10 && refused >= 25,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn a_served_version_is_required_by_both() {
    install_crds();
    let document = policy("  defaultAdmissionRule: {evaluationMode: ALWAYS_ALLOW}\n")
        .replace("binauthz.dev/v1alpha1", "binauthz.dev/v1");
    let message = server(&document).unwrap_err();
    assert!(message.contains("no matches for kind"), "{message}");
    let problems = offline(&document).unwrap_err();
    assert_eq!(problems[0].field, "apiVersion");
    assert_eq!(
        problems[0].message,
        "binauthz.dev/v1 is not served; use binauthz.dev/v1alpha1"
    );
}

#[test]
fn the_allowlist_rule_is_the_policy_engines() {
    for pattern in PATTERNS {
        let spec: binauthz::crd::AttestationPolicySpec =
            serde_json::from_value(serde_json::json!({
                "defaultAdmissionRule": {"evaluationMode": "ALWAYS_ALLOW"},
                "admissionWhitelistPatterns": [{"namePattern": pattern}]
            }))
            .unwrap();
        let engine = binauthz::policy::CompiledPolicy::compile("p", &spec);
        assert_eq!(
            engine.invalid_patterns().is_empty(),
            offline(&allow_with_pattern(pattern)).is_ok(),
            "the policy engine and the CEL rule disagree on {pattern:?}"
        );
    }
}
