//! One decision, three front doors: generated policies (every rule kind, selectors on labels and
//! names, dry run, breakglass refused, unreadable), namespaces known and unknown, workloads of
//! every kind (containers, init and ephemeral containers, image volumes, breakglass), and
//! attestations valid and forged go through the webhook's handler, continuous validation's
//! judgement and `binauthz evaluate`; each must say what a decision from the same inputs says,
//! message for message.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use binauthz::commands::evaluate_manifests;
use binauthz::controller::validation::{RunningPod, Violations, findings, judge_pods};
use binauthz::crd::{AttestationPolicySpec, AttestorSpec, ImageAttestationSpec};
use binauthz::manifests::Manifests;
use binauthz::metrics::Metrics;
use binauthz::policy::{
    CompiledPolicy, Decision, Namespaces, Snapshot, TrustIndex, Undecided, Workload,
};
use binauthz::trust::{Index, TrustState};
use binauthz::verify::{self, AttestorKeys};
use binauthz::webhook::admission::{Answer, review};
use serde_json::{Value, json};
use support::signer::Signer;

/// xorshift64*: reproducible choices without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n.max(1) as u64).unwrap()
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

fn digest(n: usize) -> String {
    format!("sha256:{:064x}", n + 1)
}

fn image(n: usize) -> String {
    format!("registry.example/app@{}", digest(n))
}

/// The world of one case: attestors, attestations, policies (name, spec or why unreadable),
/// namespaces (name, labels).
struct World {
    attestors: Vec<(String, AttestorSpec)>,
    attestations: Vec<(String, ImageAttestationSpec)>,
    policies: Vec<(String, Result<AttestationPolicySpec, String>)>,
    namespaces: Vec<(String, BTreeMap<String, String>)>,
}

fn policy(value: Value) -> AttestationPolicySpec {
    serde_json::from_value(value).unwrap()
}

fn world(rng: &mut Rng, build: &Signer, qa: &Signer, stranger: &Signer) -> World {
    let attestors = vec![
        ("build".to_owned(), build.attestor()),
        ("qa".to_owned(), qa.attestor()),
    ];
    let mut attestations = Vec::new();
    for n in 0..8 {
        let url = image(n);
        match rng.below(4) {
            0 => attestations.push((format!("ci/build-{n}"), build.attest("build", &url))),
            1 => {
                attestations.push((format!("ci/build-{n}"), build.attest("build", &url)));
                attestations.push((format!("ci/qa-{n}"), qa.attest("qa", &url)));
            }
            // Signed by a key neither attestor holds.
            2 => attestations.push((format!("ci/forged-{n}"), stranger.attest("build", &url))),
            _ => {}
        }
    }
    let mut policies = Vec::new();
    let mut everywhere = json!({
        "admissionWhitelistPatterns": [{"namePattern": "registry.example/tools/*"}],
        "defaultAdmissionRule": {"evaluationMode": "REQUIRE_ATTESTATION", "requireAttestationsBy": ["build"]},
        "kubernetesNamespaceAdmissionRules": {
            "staging": {"evaluationMode": "REQUIRE_ATTESTATION", "enforcementMode": "DRYRUN_AUDIT_LOG_ONLY",
                        "requireAttestationsBy": ["projects/p/attestors/build", "qa"]}
        },
    });
    if rng.chance(50) {
        everywhere["globalPolicyEvaluationMode"] = json!("ENABLE");
    }
    if rng.chance(50) {
        everywhere["kubernetesNamespaceAdmissionRules"] = json!({});
        everywhere["kubernetesServiceAccountAdmissionRules"] = json!({
            "prod:ci": {"evaluationMode": "ALWAYS_DENY"}
        });
    }
    policies.push(("everywhere".to_owned(), Ok(policy(everywhere))));
    if rng.chance(70) {
        let mut team = json!({
            "namespaceSelector": {"matchLabels": {"team": "a"}},
            "defaultAdmissionRule": {"evaluationMode": "REQUIRE_ATTESTATION", "requireAttestationsBy": ["qa"]},
        });
        if rng.chance(50) {
            team["breakglass"] = json!("Deny");
        }
        policies.push(("team-a".to_owned(), Ok(policy(team))));
    }
    if rng.chance(50) {
        policies.push((
            "prod-by-name".to_owned(),
            Ok(policy(json!({
                "namespaceSelector": {"matchExpressions": [
                    {"key": "kubernetes.io/metadata.name", "operator": "In", "values": ["prod"]}
                ]},
                "defaultAdmissionRule": {"evaluationMode": "ALWAYS_DENY", "enforcementMode": "DRYRUN_AUDIT_LOG_ONLY"},
            }))),
        ));
    }
    if rng.chance(15) {
        policies.push((
            "unreadable".to_owned(),
            Err("spec.defaultAdmissionRule.evaluationMode: unknown variant `SOMETIMES`".to_owned()),
        ));
    }
    let namespaces = vec![
        (
            "prod".to_owned(),
            BTreeMap::from([("team".to_owned(), "a".to_owned())]),
        ),
        (
            "staging".to_owned(),
            BTreeMap::from([("team".to_owned(), "b".to_owned())]),
        ),
        ("dev".to_owned(), BTreeMap::new()),
    ];
    World {
        attestors,
        attestations,
        policies,
        namespaces,
    }
}

/// A workload of a random kind in `namespace`.
fn workload(rng: &mut Rng, namespace: &str) -> Value {
    let pick_image = |rng: &mut Rng| -> String {
        match rng.below(6) {
            0 => "registry.example/app:latest".to_owned(),
            1 => "registry.example/tools/jq:1.7".to_owned(),
            2 => "registry.k8s.io/pause:3.10".to_owned(),
            _ => image(rng.below(10)),
        }
    };
    let mut spec = json!({
        "containers": [{"name": "app", "image": pick_image(rng)}],
    });
    if rng.chance(30) {
        spec["initContainers"] = json!([{"name": "init", "image": pick_image(rng)}]);
    }
    if rng.chance(30) {
        spec["volumes"] = json!([{"name": "data", "emptyDir": {}},
                                 {"name": "payload", "image": {"reference": pick_image(rng)}}]);
    }
    if rng.chance(30) {
        spec["serviceAccountName"] = json!("ci");
    }
    let mut metadata = json!({"name": "w", "namespace": namespace});
    if rng.chance(20) {
        metadata["labels"] = json!({"image-policy.k8s.io/break-glass": "true"});
    }
    let kind = *rng.pick(&[
        ("v1", "Pod"),
        ("v1", "Pod"),
        ("apps/v1", "Deployment"),
        ("apps/v1", "ReplicaSet"),
        ("apps/v1", "StatefulSet"),
        ("apps/v1", "DaemonSet"),
        ("batch/v1", "Job"),
        ("batch/v1", "CronJob"),
        ("v1", "ReplicationController"),
    ]);
    match kind.1 {
        "Pod" => {
            if rng.chance(20) {
                spec["ephemeralContainers"] = json!([{"name": "debug", "image": pick_image(rng)}]);
            }
            json!({"apiVersion": kind.0, "kind": kind.1, "metadata": metadata, "spec": spec})
        }
        "CronJob" => json!({
            "apiVersion": kind.0, "kind": kind.1, "metadata": {"name": "w", "namespace": namespace},
            "spec": {"schedule": "* * * * *", "jobTemplate": {"spec": {"template": {"metadata": metadata, "spec": spec}}}}
        }),
        _ => json!({
            "apiVersion": kind.0, "kind": kind.1, "metadata": {"name": "w", "namespace": namespace},
            "spec": {"template": {"metadata": metadata, "spec": spec}}
        }),
    }
}

/// The reference: a decision from the world's inputs, assembled here by hand.
fn reference(world: &World, workload: &Workload) -> Result<Decision, Undecided> {
    let now = jiff::Timestamp::now();
    let keys: BTreeMap<&str, AttestorKeys> = world
        .attestors
        .iter()
        .map(|(n, s)| (n.as_str(), AttestorKeys::load(n, s)))
        .collect();
    let mut trust = TrustIndex::new();
    for (key, spec) in &world.attestations {
        if let Ok(v) = verify::verify(spec, keys.get(spec.attestor.as_str()), now) {
            trust.insert(&spec.attestor, &v.digest, key).unwrap();
        }
    }
    let mut policies: Vec<CompiledPolicy> = world
        .policies
        .iter()
        .map(|(name, spec)| match spec {
            Ok(spec) => CompiledPolicy::compile(name, spec),
            Err(error) => CompiledPolicy::unreadable(name, error),
        })
        .collect();
    policies.sort_by(|a, b| a.name().cmp(b.name()));
    let namespaces: Namespaces = world.namespaces.iter().cloned().collect();
    Snapshot {
        policies: &policies,
        namespaces: &namespaces,
        trust: &trust,
    }
    .decide(workload)
}

/// The webhook's index over the world, as the trust pipeline builds it.
fn index(world: &World) -> Arc<Index> {
    let mut state = TrustState::new(Arc::new(Metrics::default()));
    state.reset_policies(world.policies.clone());
    state.reset_namespaces(world.namespaces.clone());
    let mut jobs = state.reset_attestors(world.attestors.clone());
    jobs.extend(state.reset_attestations(world.attestations.clone()));
    for job in jobs {
        let outcome = job.run(jiff::Timestamp::now());
        state.complete(&job, outcome);
    }
    assert!(state.index().is_ready());
    state.index().clone()
}

/// The same world as the YAML documents `binauthz evaluate` reads.
fn manifests(world: &World, object: &Value) -> Manifests {
    let mut docs = Vec::new();
    for (name, spec) in &world.attestors {
        docs.push(
            json!({"apiVersion": "binauthz.dev/v1alpha1", "kind": "Attestor",
                         "metadata": {"name": name}, "spec": spec}),
        );
    }
    for (key, spec) in &world.attestations {
        let (namespace, name) = key.split_once('/').unwrap();
        docs.push(
            json!({"apiVersion": "binauthz.dev/v1alpha1", "kind": "ImageAttestation",
                         "metadata": {"name": name, "namespace": namespace}, "spec": spec}),
        );
    }
    for (name, spec) in &world.policies {
        docs.push(
            json!({"apiVersion": "binauthz.dev/v1alpha1", "kind": "AttestationPolicy",
                         "metadata": {"name": name}, "spec": spec.as_ref().unwrap()}),
        );
    }
    for (name, labels) in &world.namespaces {
        docs.push(json!({"apiVersion": "v1", "kind": "Namespace",
                         "metadata": {"name": name, "labels": labels}}));
    }
    docs.push(object.clone());
    let text: String = docs
        .iter()
        .map(|d| format!("---\n{}", serde_yaml::to_string(d).unwrap()))
        .collect();
    let mut manifests = Manifests::default();
    manifests.add_text("world.yaml", &text).unwrap();
    manifests
}

/// An AdmissionReview for `object` as the API server sends it.
fn admission_review(object: &Value, namespace: &str) -> Vec<u8> {
    let (group, version) = match object["apiVersion"].as_str().unwrap().split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", object["apiVersion"].as_str().unwrap()),
    };
    serde_json::to_vec(&json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "00000000-0000-4000-8000-000000000001",
            "kind": {"group": group, "version": version, "kind": object["kind"]},
            "namespace": namespace,
            "operation": "CREATE",
            "object": object,
        }
    }))
    .unwrap()
}

#[test]
fn webhook_validation_and_evaluate_decide_alike() {
    let (build, qa, stranger) = (Signer::new(), Signer::new(), Signer::new());
    let mut rng = Rng(0x5eed_1234_abcd_ef01);
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    for case in 0..240 {
        let world = world(&mut rng, &build, &qa, &stranger);
        let namespace = *rng.pick(&["prod", "staging", "dev", "fresh"]);
        let object = workload(&mut rng, namespace);
        let workload = Workload::from_json(&object).unwrap().unwrap();
        let expected = reference(&world, &workload);
        let context = format!(
            "case {case}: {} in {namespace}, policies {:?}\n{object}",
            workload.kind,
            world.policies.iter().map(|p| &p.0).collect::<Vec<_>>()
        );
        seen.insert(match &expected {
            Err(_) => "undecided",
            Ok(d) if !d.allowed => "denied",
            Ok(d) if d.breakglass => "breakglass",
            Ok(d) if !d.dry_run.is_empty() => "dry run",
            Ok(_) => "allowed",
        });

        // The webhook.
        let index = index(&world);
        let Answer::Review(reviewed) = review(&index, &admission_review(&object, namespace), true)
        else {
            panic!("no review answer: {context}");
        };
        let answer: Value = serde_json::from_slice(&reviewed.body).unwrap();
        let response = &answer["response"];
        match &expected {
            Ok(d) => {
                assert_eq!(
                    response["allowed"], d.allowed,
                    "webhook: {context}\n{answer}"
                );
                if !d.allowed {
                    assert_eq!(
                        response["status"]["message"],
                        d.message(),
                        "webhook: {context}"
                    );
                }
                let warnings: Vec<String> = response["warnings"]
                    .as_array()
                    .map(|w| w.iter().map(|w| w.as_str().unwrap().to_owned()).collect())
                    .unwrap_or_default();
                assert_eq!(warnings, d.warnings(), "webhook: {context}");
            }
            Err(undecided) => {
                assert_eq!(response["allowed"], false, "webhook: {context}");
                assert_eq!(response["status"]["code"], 503, "webhook: {context}");
                let message = response["status"]["message"].as_str().unwrap();
                assert!(
                    message.contains(&undecided.to_string()),
                    "webhook: {message}"
                );
            }
        }

        // Continuous validation, for pods.
        if workload.kind.as_str() == "Pod" {
            let pod: RunningPod = serde_json::from_value(object.clone()).unwrap();
            let mut violations = Violations::default();
            let (_, undecided) = judge_pods(
                |w| index.decide(w).map_err(|e| e.to_string()),
                &BTreeSet::new(),
                [&pod],
                &mut violations,
            );
            match &expected {
                Ok(d) => {
                    assert!(undecided.is_empty(), "validation: {context}");
                    for (policy, messages) in findings(d) {
                        let (count, listed) = violations.report(&policy);
                        assert_eq!(count, 1, "validation: {context}");
                        assert_eq!(listed[0].messages, messages, "validation: {context}");
                    }
                    assert_eq!(violations.len(), usize::from(!findings(d).is_empty()));
                }
                Err(_) => assert_eq!(undecided.len(), 1, "validation: {context}"),
            }
        }

        // binauthz evaluate: a policy that cannot be read is refused as input (nothing passes).
        if world.policies.iter().all(|(_, spec)| spec.is_ok()) {
            let lines = evaluate_manifests(
                &manifests(&world, &object),
                "default",
                jiff::Timestamp::now(),
            );
            assert_eq!(lines.len(), 1, "evaluate: {context}");
            match (&expected, &lines[0].decision) {
                (Ok(d), Ok(got)) => assert_eq!(got, d, "evaluate: {context}"),
                (Err(undecided), Err(message)) => {
                    assert!(
                        message.contains(&undecided.to_string()),
                        "evaluate: {message}"
                    );
                }
                (want, got) => panic!("evaluate: {context}\nwant {want:?}\ngot {got:?}"),
            }
        }
    }
    // Every kind of outcome was exercised.
    assert_eq!(
        seen,
        BTreeSet::from(["allowed", "breakglass", "denied", "dry run", "undecided"]),
        "{seen:?}"
    );
}
