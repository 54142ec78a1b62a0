//! Evaluation tests: one case per rule, with exact messages.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};

use super::*;
use crate::crd::AttestationPolicySpec;
use crate::image::Digest;

const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

fn digest(hex: &str) -> Digest {
    Digest::parse(&format!("sha256:{hex}")).unwrap()
}

fn policy(name: &str, yaml: &str) -> CompiledPolicy {
    let spec: AttestationPolicySpec = serde_yaml::from_str(yaml).unwrap();
    CompiledPolicy::compile(name, &spec)
}

/// Trust where `build` vouches for A and `qa` for A and B.
fn trust() -> TrustIndex {
    let mut t = TrustIndex::new();
    t.insert("build", &digest(A), "ci/build-a").unwrap();
    t.insert("qa", &digest(A), "ci/qa-a").unwrap();
    t.insert("qa", &digest(B), "ci/qa-b").unwrap();
    t
}

fn pod_json(ns: &str, sa: &str, images: &[&str]) -> Value {
    let containers: Vec<Value> = images
        .iter()
        .enumerate()
        .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
        .collect();
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "p", "namespace": ns},
        "spec": {"serviceAccountName": sa, "containers": containers}
    })
}

fn pod(ns: &str, sa: &str, images: &[&str]) -> Workload {
    Workload::from_json(&pod_json(ns, sa, images))
        .unwrap()
        .unwrap()
}

fn no_labels() -> BTreeMap<String, String> {
    BTreeMap::new()
}

fn run(policies: &[CompiledPolicy], workload: &Workload) -> Decision {
    evaluate(policies, &no_labels(), workload, &trust())
}

const ALLOW: &str = "defaultAdmissionRule: {evaluationMode: ALWAYS_ALLOW}";
const DENY: &str = "defaultAdmissionRule: {evaluationMode: ALWAYS_DENY}";
const REQUIRE_BUILD: &str =
    "defaultAdmissionRule: {evaluationMode: REQUIRE_ATTESTATION, requireAttestationsBy: [build]}";

#[test]
fn evaluation_modes() {
    let digested = format!("gcr.io/p/app@sha256:{A}");
    let only_qa = format!("gcr.io/p/app@sha256:{B}");
    // (policy yaml, image, allowed, exact message)
    let cases: Vec<(&str, &str, bool, String)> = vec![
        (ALLOW, "nginx", true, String::new()),
        (
            DENY,
            "nginx",
            false,
            "Image nginx denied by Binary Authorization default admission rule of policy pol. \
             Denied by always_deny admission rule"
                .into(),
        ),
        (
            DENY,
            &digested,
            false,
            format!(
                "Image {digested} denied by Binary Authorization default admission rule of policy pol. \
                 Denied by always_deny admission rule"
            ),
        ),
        (
            REQUIRE_BUILD,
            "nginx",
            false,
            "Image nginx denied by Binary Authorization default admission rule of policy pol. \
             Image nginx denied by attestor build: Expected digest with sha256 scheme, but got tag \
             or malformed digest"
                .into(),
        ),
        (REQUIRE_BUILD, &digested, true, String::new()),
        (
            REQUIRE_BUILD,
            &only_qa,
            false,
            format!(
                "Image {only_qa} denied by Binary Authorization default admission rule of policy pol. \
                 Image {only_qa} denied by attestor build: No attestations found that were valid \
                 and signed by a key trusted by the attestor"
            ),
        ),
    ];
    for (yaml, image, allowed, message) in cases {
        let d = run(&[policy("pol", yaml)], &pod("ns", "sa", &[image]));
        assert_eq!(d.allowed, allowed, "{yaml} {image}");
        assert_eq!(d.message(), message, "{yaml} {image}");
        assert!(!d.breakglass);
        assert!(d.dry_run.is_empty());
        assert_eq!(d.policies, vec!["pol".into()]);
    }
}

#[test]
fn every_required_attestor_must_vouch() {
    let p = policy(
        "pol",
        "defaultAdmissionRule: {evaluationMode: REQUIRE_ATTESTATION, \
         requireAttestationsBy: [projects/example/attestors/build, qa]}",
    );
    // A: both vouch.
    assert!(
        run(
            std::slice::from_ref(&p),
            &pod("ns", "sa", &[&format!("gcr.io/p/x@sha256:{A}")])
        )
        .allowed
    );
    // B: only qa; the message names build as written in the policy.
    let image = format!("gcr.io/p/x@sha256:{B}");
    let d = run(std::slice::from_ref(&p), &pod("ns", "sa", &[&image]));
    assert!(!d.allowed);
    assert_eq!(
        d.denials[0].failure,
        Failure::Attestors(vec![AttestorFailure {
            attestor: "projects/example/attestors/build".into(),
            reason: AttestorReason::NotAttested,
        }])
    );
    // A tag: one reason per attestor, Google's wording.
    let d = run(&[p], &pod("ns", "sa", &["gcr.io/p/x:1"]));
    assert_eq!(
        d.message(),
        "Image gcr.io/p/x:1 denied by Binary Authorization default admission rule of policy pol. \
         Image gcr.io/p/x:1 denied by attestor projects/example/attestors/build: Expected digest \
         with sha256 scheme, but got tag or malformed digest \
         Image gcr.io/p/x:1 denied by attestor qa: Expected digest with sha256 scheme, but got \
         tag or malformed digest"
    );
    assert_eq!(
        d.causes(),
        vec![
            "'gcr.io/p/x:1' : Image gcr.io/p/x:1 denied by attestor \
             projects/example/attestors/build: Expected digest with sha256 scheme, but got tag or \
             malformed digest Image gcr.io/p/x:1 denied by attestor qa: Expected digest with \
             sha256 scheme, but got tag or malformed digest"
        ]
    );
}

#[test]
fn tag_and_digest_counts_as_digest() {
    let p = policy("pol", REQUIRE_BUILD);
    assert!(
        run(
            std::slice::from_ref(&p),
            &pod("ns", "sa", &[&format!("gcr.io/p/x:v1@sha256:{A}")])
        )
        .allowed
    );
    assert!(
        !run(
            &[p],
            &pod("ns", "sa", &[&format!("gcr.io/p/x:v1@sha256:{B}")])
        )
        .allowed
    );
}

#[test]
fn enforcement_modes() {
    let enforced = policy(
        "pol",
        "defaultAdmissionRule: {evaluationMode: ALWAYS_DENY, \
         enforcementMode: ENFORCED_BLOCK_AND_AUDIT_LOG}",
    );
    let d = run(&[enforced], &pod("ns", "sa", &["nginx"]));
    assert!(!d.allowed);
    assert_eq!(d.denials.len(), 1);
    assert!(d.dry_run.is_empty());
    assert!(d.warnings().is_empty());
    assert!(d.audit_annotations().is_empty());
    assert_eq!(
        d.causes(),
        vec!["'nginx' : Denied by an ALWAYS_DENY admission rule"]
    );

    let dry = policy(
        "pol",
        "defaultAdmissionRule: {evaluationMode: REQUIRE_ATTESTATION, \
         enforcementMode: DRYRUN_AUDIT_LOG_ONLY, requireAttestationsBy: [build]}",
    );
    let image = format!("gcr.io/p/x@sha256:{B}");
    let d = run(&[dry], &pod("ns", "sa", &[&image]));
    assert!(d.allowed);
    assert!(d.denials.is_empty());
    assert_eq!(d.message(), "");
    assert!(d.causes().is_empty());
    assert_eq!(d.dry_run.len(), 1);
    assert_eq!(
        d.warnings(),
        vec![format!(
            "dry run: Image {image} would be denied: Image {image} denied by Binary Authorization \
             default admission rule of policy pol. Image {image} denied by attestor build: No \
             attestations found that were valid and signed by a key trusted by the attestor"
        )]
    );
    let want: BTreeMap<String, String> = [
        ("dry-run".to_string(), "true".to_string()),
        (
            "overridden-verification-result".to_string(),
            format!(
                "'{image}' : Image {image} denied by attestor build: No attestations found that \
                 were valid and signed by a key trusted by the attestor\n"
            ),
        ),
    ]
    .into();
    assert_eq!(d.audit_annotations(), want);
}

#[test]
fn rule_precedence() {
    let p = policy(
        "pol",
        "defaultAdmissionRule: {evaluationMode: ALWAYS_DENY}\n\
         kubernetesNamespaceAdmissionRules:\n  \
           prod: {evaluationMode: REQUIRE_ATTESTATION, requireAttestationsBy: [build]}\n  \
           dev: {evaluationMode: ALWAYS_ALLOW}\n\
         kubernetesServiceAccountAdmissionRules:\n  \
           'prod:ci': {evaluationMode: ALWAYS_ALLOW}\n  \
           'dev:intruder': {evaluationMode: ALWAYS_DENY, enforcementMode: DRYRUN_AUDIT_LOG_ONLY}\n",
    );
    // (namespace, service account, allowed, dry-run count, message)
    let cases = [
        ("prod", "ci", true, 0, ""),
        (
            "prod",
            "default",
            false,
            0,
            "Image nginx denied by Binary Authorization namespace admission rule for prod of \
             policy pol. Image nginx denied by attestor build: Expected digest with sha256 scheme, \
             but got tag or malformed digest",
        ),
        ("dev", "default", true, 0, ""),
        ("dev", "intruder", true, 1, ""),
        (
            "other",
            "ci",
            false,
            0,
            "Image nginx denied by Binary Authorization default admission rule of policy pol. \
             Denied by always_deny admission rule",
        ),
    ];
    for (ns, sa, allowed, dry, message) in cases {
        let d = run(std::slice::from_ref(&p), &pod(ns, sa, &["nginx"]));
        assert_eq!(d.allowed, allowed, "{ns}:{sa}");
        assert_eq!(d.dry_run.len(), dry, "{ns}:{sa}");
        assert_eq!(d.message(), message, "{ns}:{sa}");
    }
    let d = run(&[p], &pod("dev", "intruder", &["nginx"]));
    assert_eq!(
        d.dry_run[0].message(),
        "Image nginx denied by Binary Authorization service account admission rule for \
         dev:intruder of policy pol. Denied by always_deny admission rule"
    );
}

#[test]
fn multiple_policies_must_all_admit() {
    let prod_labels: BTreeMap<String, String> = [("env".to_string(), "prod".to_string())].into();
    let allow_all = policy("allow", ALLOW);
    let deny_prod = policy(
        "deny-prod",
        "defaultAdmissionRule: {evaluationMode: ALWAYS_DENY}\n\
         namespaceSelector: {matchLabels: {env: prod}}",
    );
    let require = policy("require", REQUIRE_BUILD);
    let nginx = pod("ns", "sa", &["nginx"]);

    // The selector does not match: only `allow` governs.
    let d = evaluate(
        &[allow_all.clone(), deny_prod.clone()],
        &no_labels(),
        &nginx,
        &trust(),
    );
    assert!(d.allowed);
    assert_eq!(d.policies, vec!["allow".into()]);
    // It matches: one denial is enough.
    let d = evaluate(
        &[allow_all.clone(), deny_prod.clone()],
        &prod_labels,
        &nginx,
        &trust(),
    );
    assert!(!d.allowed);
    assert_eq!(d.policies, vec!["allow".into(), "deny-prod".into()]);
    assert_eq!(&*d.denials[0].policy, "deny-prod");
    // Two refusing policies: both reported, messages joined with a space.
    let d = evaluate(&[deny_prod, require], &prod_labels, &nginx, &trust());
    assert_eq!(
        d.message(),
        "Image nginx denied by Binary Authorization default admission rule of policy deny-prod. \
         Denied by always_deny admission rule \
         Image nginx denied by Binary Authorization default admission rule of policy require. \
         Image nginx denied by attestor build: Expected digest with sha256 scheme, but got tag or \
         malformed digest"
    );
    assert_eq!(d.causes().len(), 2);
    // No governing policy at all admits.
    let only_prod = policy(
        "only-prod",
        "defaultAdmissionRule: {evaluationMode: ALWAYS_DENY}\n\
         namespaceSelector: {matchExpressions: [{key: env, operator: In, values: [prod]}]}",
    );
    let d = evaluate(&[only_prod], &no_labels(), &nginx, &trust());
    assert!(d.allowed);
    assert!(d.policies.is_empty());
    assert!(evaluate(&[], &no_labels(), &nginx, &trust()).allowed);
}

#[test]
fn allowlist_rules() {
    let p = policy(
        "pol",
        "defaultAdmissionRule: {evaluationMode: ALWAYS_DENY}\n\
         admissionWhitelistPatterns:\n\
         - namePattern: gcr.io/my-project/nginx*\n\
         - namePattern: gcr.io/deep**\n\
         - namePattern: gcr.io/example-project/helloworld\n\
         - namePattern: gcr.io/tags/app:v1.*\n\
         - namePattern: docker.io/library/redis*\n\
         - namePattern: gcr.io/n*x\n\
         - namePattern: '**'\n",
    );
    assert_eq!(p.invalid_patterns().len(), 2);
    assert_eq!(p.allowlist().len(), 5);
    // (image, admitted)
    let cases = [
        ("gcr.io/my-project/nginx:latest", true),
        ("gcr.io/my-project/nginx", true),
        (&format!("gcr.io/my-project/nginx@sha256:{A}"), true),
        ("gcr.io/my-project/nginx-images/nginx", false),
        ("gcr.io/deep/a/b/c:1", true),
        ("gcr.io/example-project/helloworld", true),
        ("gcr.io/example-project/helloworld:v2", false),
        ("gcr.io/tags/app:v1.2", true),
        ("gcr.io/tags/app:v2.0", false),
        // The normalised form is matched too: `redis` is docker.io/library/redis.
        ("redis", true),
        ("redis:7", true),
        ("docker.io/library/redis:7", true),
        ("library/redis", true),
        ("nginx", false),
        // Invalid patterns are skipped, not treated as match-all.
        ("gcr.io/nginx", false),
        ("quay.io/x/y", false),
    ];
    for (image, admitted) in cases {
        let d = run(std::slice::from_ref(&p), &pod("ns", "sa", &[image]));
        assert_eq!(d.allowed, admitted, "{image}");
    }
}

#[test]
fn system_images_on_and_off() {
    let on = policy(
        "pol",
        "globalPolicyEvaluationMode: ENABLE\ndefaultAdmissionRule: {evaluationMode: ALWAYS_DENY}",
    );
    let off = policy(
        "pol",
        "globalPolicyEvaluationMode: DISABLE\ndefaultAdmissionRule: {evaluationMode: ALWAYS_DENY}",
    );
    let unset = policy("pol", DENY);
    for image in [
        "registry.k8s.io/kube-proxy:v1.34.0",
        "k8s.gcr.io/pause:3.2",
        "gke.gcr.io/gke-metrics-agent:1.0",
        "gcr.io/gke-release/asm/proxyv2:1.0",
        "gcr.io/stackdriver-agents/agent:1",
        "gcr.io/google-containers/pause:3.1",
    ] {
        let w = pod("kube-system", "default", &[image]);
        assert!(run(std::slice::from_ref(&on), &w).allowed, "{image}");
        assert!(!run(std::slice::from_ref(&off), &w).allowed, "{image}");
        assert!(!run(std::slice::from_ref(&unset), &w).allowed, "{image}");
    }
    assert!(!run(&[on], &pod("ns", "sa", &["gcr.io/gke-release-evil/x:1"])).allowed);
}

#[test]
fn breakglass() {
    let p = policy("pol", DENY);
    let with = |labels: Value, annotations: Value| {
        let mut o = pod_json("ns", "sa", &["nginx"]);
        o["metadata"]["labels"] = labels;
        o["metadata"]["annotations"] = annotations;
        run(
            std::slice::from_ref(&p),
            &Workload::from_json(&o).unwrap().unwrap(),
        )
    };
    // (labels, annotations, breaks glass)
    let cases = [
        (
            json!({"image-policy.k8s.io/break-glass": "true"}),
            json!({}),
            true,
        ),
        (
            json!({}),
            json!({"alpha.image-policy.k8s.io/break-glass": "true"}),
            true,
        ),
        (
            json!({"image-policy.k8s.io/break-glass": "True"}),
            json!({}),
            false,
        ),
        (
            json!({"image-policy.k8s.io/break-glass": "yes"}),
            json!({}),
            false,
        ),
        (
            json!({}),
            json!({"alpha.image-policy.k8s.io/break-glass": "false"}),
            false,
        ),
        // The label key as an annotation, and vice versa, does not count.
        (
            json!({}),
            json!({"image-policy.k8s.io/break-glass": "true"}),
            false,
        ),
        (
            json!({"alpha.image-policy.k8s.io/break-glass": "true"}),
            json!({}),
            false,
        ),
    ];
    for (labels, annotations, breaks) in cases {
        let d = with(labels.clone(), annotations.clone());
        assert_eq!(d.breakglass, breaks, "{labels} {annotations}");
        assert_eq!(d.allowed, breaks, "{labels} {annotations}");
        // Evaluated either way: the denial is reported for the audit.
        assert_eq!(d.denials.len(), 1);
    }
    let d = with(
        json!({"image-policy.k8s.io/break-glass": "true"}),
        json!({}),
    );
    assert_eq!(
        d.warnings(),
        vec![
            "break glass: Image nginx would be denied: Image nginx denied by Binary Authorization \
             default admission rule of policy pol. Denied by always_deny admission rule"
        ]
    );
    let want: BTreeMap<String, String> = [
        ("break-glass".to_string(), "true".to_string()),
        (
            "overridden-verification-result".to_string(),
            "'nginx' : Denied by an ALWAYS_DENY admission rule\n".to_string(),
        ),
    ]
    .into();
    assert_eq!(d.audit_annotations(), want);

    // In a workload template.
    let deploy = json!({
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"template": {
            "metadata": {"labels": {"image-policy.k8s.io/break-glass": "true"}},
            "spec": {"containers": [{"name": "c", "image": "nginx"}]}}}
    });
    let d = run(
        std::slice::from_ref(&p),
        &Workload::from_json(&deploy).unwrap().unwrap(),
    );
    assert!(d.allowed && d.breakglass);
    // A policy-conformant pod that breaks glass is still marked.
    let d = with(
        json!({"image-policy.k8s.io/break-glass": "true"}),
        json!({}),
    );
    let allowed = run(&[policy("pol", ALLOW)], &{
        let mut w = pod("ns", "sa", &["nginx"]);
        w.labels = [(BREAKGLASS_LABEL.to_string(), "true".to_string())].into();
        w
    });
    assert!(allowed.breakglass && allowed.allowed && allowed.denials.is_empty());
    assert_eq!(
        allowed.audit_annotations(),
        [("break-glass".to_string(), "true".to_string())].into()
    );
    assert!(d.allowed);
}

#[test]
fn a_policy_can_refuse_breakglass() {
    let strict = policy("strict", &format!("{REQUIRE_BUILD}\nbreakglass: Deny"));
    let lenient = policy("lenient", DENY);
    assert!(!strict.allows_breakglass() && lenient.allows_breakglass());
    let mut w = pod("ns", "sa", &["nginx"]);
    w.labels = [(BREAKGLASS_LABEL.to_string(), "true".to_string())].into();
    // Alone, the lenient policy is overridden by breakglass.
    let d = run(std::slice::from_ref(&lenient), &w);
    assert!(d.allowed && d.breakglass && d.breakglass_refused.is_empty());
    // The strict policy's denial stands, and the message says why breakglass did not help;
    // the lenient policy's denial is still overridden (and only it is warned about).
    let d = run(&[lenient.clone(), strict.clone()], &w);
    assert!(!d.allowed);
    assert_eq!(d.breakglass_refused, vec![Arc::from("strict")]);
    assert!(
        d.message().ends_with(
            " The pod breaks glass, which policy strict refuses (spec.breakglass: Deny)."
        ),
        "{}",
        d.message()
    );
    assert_eq!(d.warnings().len(), 1);
    assert!(
        d.warnings()[0].contains("policy lenient"),
        "{:?}",
        d.warnings()
    );
    // Without breakglass, nothing changes.
    let d = run(&[strict], &pod("ns", "sa", &["nginx"]));
    assert!(!d.allowed && d.breakglass_refused.is_empty());
    assert!(!d.message().contains("breaks glass"));
}

#[test]
fn an_unreadable_policy_denies_everything_and_says_why() {
    let broken = CompiledPolicy::unreadable("broken", "unknown field `requireAttestationBy`");
    assert_eq!(
        broken.unreadable_reason(),
        Some("unknown field `requireAttestationBy`")
    );
    let d = run(
        &[broken],
        &pod("ns", "sa", &[&format!("gcr.io/p/app@sha256:{A}")]),
    );
    assert!(!d.allowed);
    assert_eq!(
        d.message(),
        format!(
            "Image gcr.io/p/app@sha256:{A} denied by Binary Authorization default admission rule of policy broken. The policy cannot be read (unknown field `requireAttestationBy`); it denies every image until it is fixed"
        )
    );
}

#[test]
fn init_and_ephemeral_containers_are_checked() {
    let p = policy(
        "pol",
        "defaultAdmissionRule: {evaluationMode: ALWAYS_DENY}\n\
         admissionWhitelistPatterns: [{namePattern: gcr.io/ok/*}]",
    );
    for list in ["initContainers", "ephemeralContainers"] {
        let mut o = pod_json("ns", "sa", &["gcr.io/ok/app"]);
        o["spec"][list] = json!([{"name": "x", "image": "busybox"}]);
        let d = run(
            std::slice::from_ref(&p),
            &Workload::from_json(&o).unwrap().unwrap(),
        );
        assert!(!d.allowed, "{list}");
        assert_eq!(d.denials.len(), 1);
        assert_eq!(d.denials[0].image, "busybox");
        assert_eq!(d.denials[0].uses[0].source.as_str(), list);
        assert_eq!(
            d.denials[0].uses[0].image_path(),
            format!("spec.{list}[0].image")
        );
    }
}

#[test]
fn image_volumes_are_judged_like_containers_and_named() {
    let p = policy("pol", REQUIRE_BUILD);
    let signed = format!("gcr.io/p/app@sha256:{A}");
    let mut o = pod_json("ns", "sa", &[&signed]);
    o["spec"]["volumes"] = json!([
        {"name": "cache", "emptyDir": {}},
        {"name": "payload", "image": {"reference": "docker.io/attacker/evil:latest",
                                      "pullPolicy": "Always"}},
        {"name": "tools", "image": {"reference": signed}}
    ]);
    let d = run(
        std::slice::from_ref(&p),
        &Workload::from_json(&o).unwrap().unwrap(),
    );
    assert!(!d.allowed);
    assert_eq!(d.denials.len(), 1, "{d:?}");
    let verdict = &d.denials[0];
    assert_eq!(verdict.image, "docker.io/attacker/evil:latest");
    assert_eq!(
        verdict.uses[0].image_path(),
        "spec.volumes[1].image.reference"
    );
    assert_eq!(
        d.message(),
        "volume payload: Image docker.io/attacker/evil:latest denied by Binary Authorization \
         default admission rule of policy pol. Image docker.io/attacker/evil:latest denied by \
         attestor build: Expected digest with sha256 scheme, but got tag or malformed digest"
    );
    assert!(
        verdict
            .cause()
            .starts_with("volume payload: 'docker.io/attacker/evil:latest' : "),
        "{}",
        verdict.cause()
    );
    // Signed by digest, it is admitted as a volume too.
    o["spec"]["volumes"][1]["image"]["reference"] = json!(signed);
    let d = run(&[p], &Workload::from_json(&o).unwrap().unwrap());
    assert!(d.allowed, "{d:?}");
}

/// Counts lookups, to show an image used twice is judged once.
struct Counting(Cell<usize>);

impl Attestations for Counting {
    fn is_attested(&self, _attestor: &str, _digest: &Digest) -> bool {
        self.0.set(self.0.get() + 1);
        false
    }
}

#[test]
fn same_image_in_several_containers_is_judged_once() {
    let p = policy("pol", REQUIRE_BUILD);
    let image = format!("gcr.io/p/x@sha256:{B}");
    let mut o = pod_json("ns", "sa", &[&image, "gcr.io/p/other:1", &image]);
    o["spec"]["initContainers"] = json!([{"name": "init", "image": image}]);
    let w = Workload::from_json(&o).unwrap().unwrap();
    let counting = Counting(Cell::new(0));
    let d = evaluate(&[p], &no_labels(), &w, &counting);
    assert_eq!(counting.0.get(), 1, "one lookup for the digested image");
    assert_eq!(d.denials.len(), 2);
    let names: Vec<(&str, ImageSource)> = d.denials[0]
        .uses
        .iter()
        .map(|c| (c.name.as_str(), c.source))
        .collect();
    assert_eq!(
        names,
        vec![
            ("init", ImageSource::InitContainers),
            ("c0", ImageSource::Containers),
            ("c2", ImageSource::Containers),
        ]
    );
    assert_eq!(d.denials[1].image, "gcr.io/p/other:1");
}

#[test]
fn unparsable_images() {
    let bad = "gcr.io/p/UPPER:1";
    let require = policy("pol", REQUIRE_BUILD);
    let d = run(&[require], &pod("ns", "sa", &[bad]));
    assert!(!d.allowed);
    let Failure::InvalidReference(error) = &d.denials[0].failure else {
        panic!("{:?}", d.denials[0].failure);
    };
    assert_eq!(
        d.message(),
        format!(
            "Image {bad} denied by Binary Authorization default admission rule of policy pol. \
             Image {bad} is not a valid image reference: {error}"
        )
    );
    // Allowlisted only as written.
    let listed = policy(
        "pol",
        &format!("{REQUIRE_BUILD}\nadmissionWhitelistPatterns: [{{namePattern: gcr.io/p/*}}]"),
    );
    assert!(run(&[listed], &pod("ns", "sa", &[bad])).allowed);
    let normalised_only = policy(
        "pol",
        &format!("{REQUIRE_BUILD}\nadmissionWhitelistPatterns: [{{namePattern: docker.io/**}}]"),
    );
    assert!(!run(&[normalised_only], &pod("ns", "sa", &["Bad Image"])).allowed);
    // ALWAYS_ALLOW admits every image, parsable or not.
    assert!(run(&[policy("pol", ALLOW)], &pod("ns", "sa", &[bad])).allowed);
}

#[test]
fn require_attestation_without_attestors_denies() {
    let p = policy(
        "pol",
        "defaultAdmissionRule: {evaluationMode: REQUIRE_ATTESTATION}",
    );
    assert_eq!(p.problems().len(), 1);
    let d = run(&[p], &pod("ns", "sa", &[&format!("gcr.io/p/x@sha256:{A}")]));
    assert!(!d.allowed);
    assert_eq!(d.denials[0].failure, Failure::NoAttestors);
}

#[test]
fn invalid_selector_governs_everything() {
    let p = policy(
        "pol",
        "defaultAdmissionRule: {evaluationMode: ALWAYS_DENY}\n\
         namespaceSelector: {matchExpressions: [{key: env, operator: Bogus}]}",
    );
    assert_eq!(p.problems().len(), 1);
    assert!(!run(&[p], &pod("ns", "sa", &["nginx"])).allowed);
}

#[test]
fn empty_workload_is_admitted() {
    let d = run(&[policy("pol", DENY)], &pod("ns", "sa", &[]));
    assert!(d.allowed);
    assert_eq!(d.policies, vec!["pol".into()]);
}
