//! `Workload::from_json` on any JSON, then `policy::evaluate` of what it read against fixed
//! policies and a small trust index, and every message of the decision: none panics.
#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use binauthz::crd::AttestationPolicySpec;
use binauthz::image::Digest;
use binauthz::policy::{CompiledPolicy, TrustIndex, Workload, evaluate};
use libfuzzer_sys::fuzz_target;

static POLICIES: LazyLock<Vec<CompiledPolicy>> = LazyLock::new(|| {
    [
        ("platform", r#"{"globalPolicyEvaluationMode": "ENABLE",
          "admissionWhitelistPatterns": [{"namePattern": "registry.k8s.io/**"}, {"namePattern": "docker.io/library/busybox:*"}],
          "defaultAdmissionRule": {"evaluationMode": "REQUIRE_ATTESTATION", "requireAttestationsBy": ["build"]},
          "kubernetesNamespaceAdmissionRules": {"dev": {"evaluationMode": "REQUIRE_ATTESTATION",
             "enforcementMode": "DRYRUN_AUDIT_LOG_ONLY", "requireAttestationsBy": ["projects/p/attestors/qa"]}},
          "kubernetesServiceAccountAdmissionRules": {"prod:ci": {"evaluationMode": "ALWAYS_DENY"}}}"#),
        ("prod", r#"{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "prod"}},
          "defaultAdmissionRule": {"evaluationMode": "REQUIRE_ATTESTATION", "requireAttestationsBy": ["build", "qa"]}}"#),
    ]
    .into_iter()
    .map(|(name, json)| {
        let spec: AttestationPolicySpec = serde_json::from_str(json).expect("fixed policy");
        CompiledPolicy::compile(name, &spec)
    })
    .collect()
});

static TRUST: LazyLock<TrustIndex> = LazyLock::new(|| {
    let mut trust = TrustIndex::new();
    for (i, c) in ['0', '1', 'a'].into_iter().enumerate() {
        let digest =
            Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).expect("digest");
        trust
            .insert("build", &digest, &format!("ci/build-{i}"))
            .expect("index");
        trust
            .insert("qa", &digest, &format!("ci/qa-{i}"))
            .expect("index");
    }
    trust
});

fuzz_target!(|data: &[u8]| {
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let Ok(Some(mut workload)) = Workload::from_json(&value) else {
        return;
    };
    for namespace in [None, Some("prod"), Some("dev")] {
        if let Some(ns) = namespace {
            workload.namespace = Some(ns.to_owned());
        }
        let labels = BTreeMap::from([(
            "kubernetes.io/metadata.name".to_owned(),
            workload.namespace().to_owned(),
        )]);
        let decision = evaluate(&POLICIES, &labels, &workload, &*TRUST);
        let _ = (decision.message(), decision.causes(), decision.warnings());
        let _ = decision.audit_annotations();
        assert_eq!(
            decision.allowed,
            decision.breakglass || decision.denials.is_empty()
        );
    }
    for c in &workload.containers {
        let _ = c.image_path();
    }
});
