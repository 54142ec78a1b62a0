//! Policy evaluation of a realistic pod, and reading workloads from JSON.

use std::collections::BTreeMap;
use std::hint::black_box;

use serde_json::{Value, json};

use binauthz::crd::AttestationPolicySpec;
use binauthz::image::Digest;
use binauthz::policy::{CompiledPolicy, TrustIndex, Workload, evaluate};

use crate::harness::{Report, Rng, Stats, Timing};
use crate::trust_index;

/// A cluster-wide policy: allowlist, system images, per-namespace rules.
const PLATFORM: &str = r#"
globalPolicyEvaluationMode: ENABLE
admissionWhitelistPatterns:
- namePattern: registry.k8s.io/**
- namePattern: gcr.io/google-containers/*
- namePattern: docker.io/library/busybox:*
- namePattern: ghcr.io/example/tools/**
defaultAdmissionRule:
  evaluationMode: REQUIRE_ATTESTATION
  enforcementMode: ENFORCED_BLOCK_AND_AUDIT_LOG
  requireAttestationsBy: [projects/example/attestors/build]
kubernetesNamespaceAdmissionRules:
  sandbox:
    evaluationMode: REQUIRE_ATTESTATION
    enforcementMode: DRYRUN_AUDIT_LOG_ONLY
    requireAttestationsBy: [build]
  kube-public:
    evaluationMode: ALWAYS_ALLOW
"#;

/// A production policy: selected by label, two attestors, a service-account rule.
const PRODUCTION: &str = r#"
namespaceSelector:
  matchLabels: {env: prod}
  matchExpressions:
  - {key: tier, operator: In, values: [backend, frontend]}
defaultAdmissionRule:
  evaluationMode: REQUIRE_ATTESTATION
  enforcementMode: ENFORCED_BLOCK_AND_AUDIT_LOG
  requireAttestationsBy: [build, qa]
kubernetesServiceAccountAdmissionRules:
  payments:deployer:
    evaluationMode: ALWAYS_DENY
"#;

const REGISTRY: &str = "us-docker.pkg.dev/example-prod/payments";

/// A pod of `containers` (init + app + sidecar) with realistic metadata, `env_vars` environment
/// variables per container and an annotation of `annotation_bytes` (like kubectl's
/// last-applied-configuration).
fn pod(digests: &[Digest; 3], env_vars: usize, annotation_bytes: usize) -> Value {
    let env: Vec<Value> = (0..env_vars)
        .map(|i| json!({"name": format!("SETTING_{i:03}"), "value": format!("value-{i}-for-payments-service")}))
        .collect();
    let container = |name: &str, image: String, port: u16| {
        json!({
            "name": name,
            "image": image,
            "imagePullPolicy": "IfNotPresent",
            "ports": [{"containerPort": port, "name": "http", "protocol": "TCP"}],
            "env": env,
            "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"cpu": "1", "memory": "512Mi"}},
            "volumeMounts": [{"name": "config", "mountPath": "/etc/app", "readOnly": true},
                             {"name": "kube-api-access-x7k2p", "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount", "readOnly": true}],
            "securityContext": {"runAsNonRoot": true, "allowPrivilegeEscalation": false}
        })
    };
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "payments-api-7d9f8c6b5-x2x9q",
            "generateName": "payments-api-7d9f8c6b5-",
            "namespace": "payments",
            "uid": "3f1c9b8e-6a61-4f0e-9a55-0c1c8f0b2d11",
            "labels": {"app.kubernetes.io/name": "payments-api", "app.kubernetes.io/part-of": "payments",
                       "pod-template-hash": "7d9f8c6b5", "version": "v2.14.1"},
            "annotations": {"kubectl.kubernetes.io/last-applied-configuration": "x".repeat(annotation_bytes),
                            "prometheus.io/scrape": "true", "prometheus.io/port": "9090"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "payments-api-7d9f8c6b5",
                                 "uid": "0b7d3a3e-2f7e-4b8e-8d2a-5d5b7f1e9c22", "controller": true, "blockOwnerDeletion": true}]
        },
        "spec": {
            "serviceAccountName": "payments-api",
            "initContainers": [container("migrate", format!("{REGISTRY}/migrate@{}", digests[0]), 8081)],
            "containers": [
                container("api", format!("{REGISTRY}/api:v2.14.1@{}", digests[1]), 8080),
                container("envoy", format!("{REGISTRY}/envoy-sidecar@{}", digests[2]), 9901)
            ],
            "volumes": [{"name": "config", "configMap": {"name": "payments-api", "defaultMode": 420}},
                        {"name": "kube-api-access-x7k2p", "projected": {"defaultMode": 420, "sources": [
                            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}}]}}],
            "nodeSelector": {"kubernetes.io/os": "linux"},
            "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}],
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst",
            "terminationGracePeriodSeconds": 30
        }
    })
}

/// A pod of about `target` bytes of JSON.
fn pod_of_size(digests: &[Digest; 3], target: usize) -> Vec<u8> {
    let mut env_vars = 0;
    loop {
        let bytes = serde_json::to_vec(&pod(digests, env_vars, 0)).expect("json");
        if bytes.len() + 150 >= target || env_vars > 1000 {
            let pad = target.saturating_sub(bytes.len());
            return serde_json::to_vec(&pod(digests, env_vars, pad)).expect("json");
        }
        env_vars += 1;
    }
}

fn compile(name: &str, yaml: &str) -> CompiledPolicy {
    let spec: AttestationPolicySpec = serde_yaml::from_str(yaml).expect("bench policy");
    let policy = CompiledPolicy::compile(name, &spec);
    assert!(policy.problems().is_empty(), "{:?}", policy.problems());
    policy
}

/// Run the section; returns ns per evaluation of the admitted pod.
pub fn run(timing: &Timing, report: &mut Report) -> f64 {
    let mut rng = Rng::new(0xe7a1_0003);
    let digests: [Digest; 3] = std::array::from_fn(|_| Digest::from_sha256(rng.bytes32()));
    let mut index: TrustIndex = trust_index::fill(100_000, |_, _, _| {});
    for (i, d) in digests.iter().enumerate() {
        index
            .insert("build", d, &format!("payments/build-{i}"))
            .expect("index");
        // The sidecar lacks a qa attestation in the denied case.
        if i < 2 {
            index
                .insert("qa", d, &format!("payments/qa-{i}"))
                .expect("index");
        }
    }
    let policies = [
        compile("platform", PLATFORM),
        compile("production", PRODUCTION),
    ];
    let labels: BTreeMap<String, String> = [
        ("kubernetes.io/metadata.name", "payments"),
        ("env", "prod"),
        ("tier", "backend"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();

    let small = pod_of_size(&digests, 3 * 1024);
    let large = pod_of_size(&digests, 16 * 1024);
    let value: Value = serde_json::from_slice(&small).expect("json");
    let mut admitted = Workload::from_json(&value)
        .expect("workload")
        .expect("a pod");
    // Admitted: give the sidecar its qa attestation by using the app's digest for it.
    admitted.images[2].image = admitted.images[1].image.clone();
    let denied = Workload::from_json(&value)
        .expect("workload")
        .expect("a pod");
    assert!(evaluate(&policies, &labels, &admitted, &index).allowed);
    assert!(!evaluate(&policies, &labels, &denied, &index).allowed);

    let allowed = harness_timed(timing, || {
        evaluate(&policies, &labels, black_box(&admitted), &index).allowed
    });
    report.time(
        "policy",
        "evaluate: 3-container pod, 2 policies, 100k index, admitted",
        allowed,
        "4 lookups",
    );
    let refused = harness_timed(timing, || {
        !evaluate(&policies, &labels, black_box(&denied), &index).allowed
    });
    report.time(
        "policy",
        "evaluate: same pod, sidecar lacks qa, denied",
        refused,
        "builds the denial",
    );
    let message = harness_timed(timing, || {
        let d = evaluate(&policies, &labels, black_box(&denied), &index);
        !d.message().is_empty()
    });
    report.time(
        "policy",
        "evaluate + Decision::message, denied",
        message,
        "what a denial answers",
    );

    for (label, bytes) in [("~3 KiB", &small), ("~16 KiB", &large)] {
        let value: Value = serde_json::from_slice(bytes).expect("json");
        let from_value = harness_timed(timing, || {
            Workload::from_json(black_box(&value)).is_ok_and(|w| w.is_some())
        });
        report.time(
            "policy",
            format!("Workload::from_json, {label} pod ({} B)", bytes.len()),
            from_value,
            "from a parsed Value",
        );
        let parse_only = harness_timed(timing, || {
            serde_json::from_slice::<Value>(black_box(bytes)).is_ok()
        });
        report.time(
            "policy",
            format!("serde_json::from_slice::<Value>, {label} pod"),
            parse_only,
            "JSON parsing alone",
        );
        let skim = harness_timed(timing, || {
            serde_json::from_slice::<serde::de::IgnoredAny>(black_box(bytes)).is_ok()
        });
        report.time(
            "policy",
            format!("serde_json::from_slice::<IgnoredAny>, {label} pod"),
            skim,
            "validating without building a Value",
        );
        let from_bytes = harness_timed(timing, || {
            serde_json::from_slice::<Value>(black_box(bytes))
                .ok()
                .and_then(|v| Workload::from_json(&v).ok().flatten())
                .is_some()
        });
        report.time(
            "policy",
            format!("serde_json + Workload::from_json, {label} pod"),
            from_bytes,
            "from the bytes",
        );
    }
    allowed.median_ns
}

/// Time a closure that must return true.
fn harness_timed(timing: &Timing, mut op: impl FnMut() -> bool) -> Stats {
    crate::harness::timed(timing, |_| assert!(black_box(op())))
}
