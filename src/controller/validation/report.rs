//! The pure part of continuous validation: which running pods violate which policy, what the
//! policies' status says about them, and which Events are new.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::{Resource as _, ResourceExt as _};

use super::pod::{RunningPod, workload};
use crate::crd::{AttestationPolicyStatus, PodViolation};
use crate::policy::{Decision, Workload};

/// At most this many violating pods are listed in a policy's status (all are counted).
pub const MAX_LISTED_VIOLATIONS: usize = 20;

/// Per policy, the messages of what it refuses in one pod (empty: no violation).
pub type PolicyFindings = BTreeMap<Arc<str>, Vec<String>>;

/// What a decision says a pod violates: every policy whose rule refuses an image, enforced or
/// dry run, with the Google-style messages. Breakglass admits a pod but still violates.
pub fn findings(decision: &Decision) -> PolicyFindings {
    let mut findings = PolicyFindings::new();
    for verdict in decision.denials.iter().chain(&decision.dry_run) {
        let messages = findings.entry(verdict.policy.clone()).or_default();
        let message = verdict.message();
        if !messages.contains(&message) {
            messages.push(message);
        }
    }
    findings
}

/// A pod, by namespace then name (the order of the listed violations).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PodKey {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
}

impl PodKey {
    /// The key of a pod object.
    pub fn of(pod: &RunningPod) -> Self {
        Self {
            namespace: pod.namespace().unwrap_or_default(),
            name: pod.name_any(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct PodViolations {
    uid: Option<String>,
    findings: PolicyFindings,
}

/// Every violating pod and what it violates; remembers what was announced by Event.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Violations {
    pods: BTreeMap<PodKey, PodViolations>,
}

impl Violations {
    /// Record what a pod violates now. Returns the messages not seen for this pod before
    /// (one Event each): an Event is published once per pod and distinct message, not on
    /// every pass. A pod recreated under the same name (new uid) is a new pod.
    pub fn update(
        &mut self,
        key: PodKey,
        uid: Option<&str>,
        findings: PolicyFindings,
    ) -> Vec<String> {
        if findings.is_empty() {
            self.pods.remove(&key);
            return Vec::new();
        }
        let before = self.pods.get(&key).filter(|p| p.uid.as_deref() == uid);
        let mut new: Vec<String> = Vec::new();
        for message in findings.values().flatten() {
            let seen = before.is_some_and(|p| p.findings.values().flatten().any(|m| m == message));
            if !seen && !new.contains(message) {
                new.push(message.clone());
            }
        }
        self.pods.insert(
            key,
            PodViolations {
                uid: uid.map(str::to_owned),
                findings,
            },
        );
        new
    }

    /// Forget a pod (it is gone).
    pub fn remove(&mut self, key: &PodKey) {
        self.pods.remove(key);
    }

    /// Forget every pod `keep` refuses.
    pub fn retain(&mut self, keep: impl Fn(&PodKey) -> bool) {
        self.pods.retain(|k, _| keep(k));
    }

    /// Number of violating pods.
    pub fn len(&self) -> usize {
        self.pods.len()
    }

    /// Whether no pod violates anything.
    pub fn is_empty(&self) -> bool {
        self.pods.is_empty()
    }

    /// The violations of one policy: how many pods, and the first
    /// [`MAX_LISTED_VIOLATIONS`] by namespace and name with their messages.
    pub fn report(&self, policy: &str) -> (i32, Vec<PodViolation>) {
        let mut count = 0usize;
        let mut listed = Vec::new();
        for (key, pod) in &self.pods {
            let Some(messages) = pod.findings.get(policy) else {
                continue;
            };
            count += 1;
            if listed.len() < MAX_LISTED_VIOLATIONS {
                listed.push(PodViolation {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                    messages: messages.clone(),
                });
            }
        }
        (i32::try_from(count).unwrap_or(i32::MAX), listed)
    }
}

/// True when the policy's status does not already say `count` and `listed`.
pub fn differs(
    current: Option<&AttestationPolicyStatus>,
    count: i32,
    listed: &[PodViolation],
) -> bool {
    current.is_none_or(|s| s.violation_count != Some(count) || s.violations != listed)
}

/// The status fields continuous validation applies (and owns).
pub fn status_fields(count: i32, listed: &[PodViolation]) -> serde_json::Value {
    let mut fields = serde_json::json!({ "violationCount": count });
    if !listed.is_empty() {
        fields["violations"] = serde_json::to_value(listed).unwrap_or_default();
    }
    fields
}

/// One Event to publish: the pod and the message.
pub type PodEvent = (ObjectReference, String);

/// Judge `pods` with `decide` (the replica's one decision entry point), record the result in
/// `violations` and return the Events to publish, and the pods that could not be decided now
/// (they keep what was recorded, and are judged again). Pods in `exempt` namespaces (the
/// webhook never sees them), or that cannot be read, violate nothing.
pub fn judge_pods<'a>(
    decide: impl Fn(&Workload) -> Result<Decision, String>,
    exempt: &BTreeSet<String>,
    pods: impl IntoIterator<Item = &'a RunningPod>,
    violations: &mut Violations,
) -> (Vec<PodEvent>, Vec<PodKey>) {
    let mut events = Vec::new();
    let mut undecided = Vec::new();
    for pod in pods {
        let key = PodKey::of(pod);
        if exempt.contains(&key.namespace) {
            violations.remove(&key);
            continue;
        }
        let found = match workload(pod) {
            Ok(workload) => match decide(&workload) {
                Ok(decision) => findings(&decision),
                Err(why) => {
                    tracing::debug!(namespace = %key.namespace, pod = %key.name, %why, "pod not judged now");
                    undecided.push(key);
                    continue;
                }
            },
            Err(error) => {
                tracing::warn!(namespace = %key.namespace, pod = %key.name, %error, "cannot read pod");
                PolicyFindings::new()
            }
        };
        let uid = pod.metadata.uid.clone();
        for message in violations.update(key.clone(), uid.as_deref(), found) {
            tracing::info!(namespace = %key.namespace, pod = %key.name, %message, "running pod violates a policy");
            events.push((pod.object_ref(&()), message));
        }
    }
    (events, undecided)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::status;
    use crate::crd::{AttestationPolicy, AttestationPolicySpec};
    use crate::image::Digest;
    use crate::policy::{CompiledPolicy, Namespaces, Snapshot, TrustIndex};
    use serde_json::{Value, json};
    use std::collections::BTreeMap;

    const A: &str = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const B: &str = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";
    const NOT_ATTESTED: &str =
        "No attestations found that were valid and signed by a key trusted by the attestor";
    const NEED_DIGEST: &str = "Expected digest with sha256 scheme, but got tag or malformed digest";

    fn digest(hex: &str) -> Digest {
        Digest::parse(&format!("sha256:{hex}")).unwrap()
    }

    fn policy(name: &str, yaml: &str) -> CompiledPolicy {
        let spec: AttestationPolicySpec = serde_yaml::from_str(yaml).unwrap();
        CompiledPolicy::compile(name, &spec)
    }

    struct Inputs {
        policies: Vec<CompiledPolicy>,
        namespaces: Namespaces,
        exempt: BTreeSet<String>,
    }

    /// Judge as continuous validation does, with a snapshot of `inputs` and `trust`.
    fn judge_pods(
        inputs: &Inputs,
        trust: &TrustIndex,
        pods: &[RunningPod],
        violations: &mut Violations,
    ) -> Vec<PodEvent> {
        let snapshot = Snapshot {
            policies: &inputs.policies,
            namespaces: &inputs.namespaces,
            trust,
        };
        let (events, undecided) = super::judge_pods(
            |w| snapshot.decide(w).map_err(|e| e.to_string()),
            &inputs.exempt,
            pods,
            violations,
        );
        assert!(undecided.is_empty(), "{undecided:?}");
        events
    }

    /// `audit`: dry run, attestor `build`, namespaces labelled team=a.
    /// `deny-prod`: allows everything but denies in namespace `prod`.
    fn inputs() -> Inputs {
        let labels = |team: Option<&str>| {
            team.map(|t| BTreeMap::from([("team".to_owned(), t.to_owned())]))
                .unwrap_or_default()
        };
        Inputs {
            policies: vec![
                policy(
                    "audit",
                    "namespaceSelector: {matchLabels: {team: a}}
defaultAdmissionRule:
  evaluationMode: REQUIRE_ATTESTATION
  enforcementMode: DRYRUN_AUDIT_LOG_ONLY
  requireAttestationsBy: [projects/p/attestors/build]",
                ),
                policy(
                    "deny-prod",
                    "defaultAdmissionRule: {evaluationMode: ALWAYS_ALLOW}
kubernetesNamespaceAdmissionRules:
  prod: {evaluationMode: ALWAYS_DENY}",
                ),
            ],
            namespaces: [
                ("apps".to_owned(), labels(Some("a"))),
                ("prod".to_owned(), labels(Some("a"))),
                ("other".to_owned(), labels(None)),
                ("kube-system".to_owned(), labels(Some("a"))),
            ]
            .into_iter()
            .collect(),
            exempt: BTreeSet::from(["kube-system".to_owned()]),
        }
    }

    fn trust() -> TrustIndex {
        let mut t = TrustIndex::new();
        t.insert("build", &digest(A), "ci/build-a").unwrap();
        t
    }

    fn pod(ns: &str, name: &str, uid: &str, images: &[&str], labels: Value) -> RunningPod {
        let containers: Vec<Value> = images
            .iter()
            .enumerate()
            .map(|(i, image)| json!({"name": format!("c{i}"), "image": image}))
            .collect();
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": ns, "uid": uid, "labels": labels},
            "spec": {"containers": containers}
        }))
        .unwrap()
    }

    fn signed() -> String {
        format!("registry.example/app@sha256:{A}")
    }

    fn pods() -> Vec<RunningPod> {
        let unsigned = "registry.example/app:1";
        vec![
            pod("apps", "signed", "u1", &[&signed()], json!({})),
            pod("apps", "unsigned", "u2", &[unsigned, unsigned], json!({})),
            pod(
                "apps",
                "breakglass",
                "u3",
                &[&format!("registry.example/app@sha256:{B}")],
                json!({"image-policy.k8s.io/break-glass": "true"}),
            ),
            pod("prod", "signed", "u4", &[&signed()], json!({})),
            pod("other", "unsigned", "u5", &[unsigned], json!({})),
            pod("kube-system", "unsigned", "u6", &[unsigned], json!({})),
        ]
    }

    fn names(listed: &[PodViolation]) -> Vec<String> {
        listed
            .iter()
            .map(|v| format!("{}/{}", v.namespace, v.name))
            .collect()
    }

    #[test]
    fn which_pods_violate_which_policy() {
        let mut violations = Violations::default();
        let pods = pods();
        let events = judge_pods(&inputs(), &trust(), &pods, &mut violations);

        let (count, listed) = violations.report("audit");
        assert_eq!(count, 2);
        assert_eq!(names(&listed), ["apps/breakglass", "apps/unsigned"]);
        // The Google-style message; the image used twice is reported once.
        assert_eq!(
            listed[1].messages,
            [format!(
                "Image registry.example/app:1 denied by Binary Authorization default admission rule of policy audit. Image registry.example/app:1 denied by attestor projects/p/attestors/build: {NEED_DIGEST}"
            )]
        );
        assert!(
            listed[0].messages[0].ends_with(NOT_ATTESTED),
            "breakglass still counts: {:?}",
            listed[0].messages
        );
        let (count, listed) = violations.report("deny-prod");
        assert_eq!(count, 1);
        assert_eq!(names(&listed), ["prod/signed"]);
        assert_eq!(
            listed[0].messages,
            [format!(
                "Image {} denied by Binary Authorization namespace admission rule for prod of policy deny-prod. Denied by always_deny admission rule",
                signed()
            )]
        );
        assert_eq!(violations.report("absent"), (0, Vec::new()));
        assert_eq!(violations.len(), 3);

        // One Event per violating pod and message, on the right pod.
        let mut on: Vec<(String, String)> = events
            .iter()
            .map(|(r, m)| {
                assert_eq!(r.kind.as_deref(), Some("Pod"));
                let at = format!(
                    "{}/{}",
                    r.namespace.as_deref().unwrap(),
                    r.name.as_deref().unwrap()
                );
                (at, m.clone())
            })
            .collect();
        on.sort();
        assert_eq!(on.len(), 3, "{on:?}");
        assert_eq!(on[0].0, "apps/breakglass");
        assert_eq!(on[1].0, "apps/unsigned");
        assert_eq!(on[2].0, "prod/signed");
        assert_eq!(on[1].1, violations.report("audit").1[1].messages[0]);
        assert_eq!(events[0].0.uid.as_deref(), Some("u2"));
    }

    #[test]
    fn events_once_per_pod_and_message() {
        let mut violations = Violations::default();
        let mut pods = pods();
        assert_eq!(
            judge_pods(&inputs(), &trust(), &pods, &mut violations).len(),
            3
        );
        // The next pass finds the same: nothing new to announce.
        assert!(judge_pods(&inputs(), &trust(), &pods, &mut violations).is_empty());
        // The same name, a new pod: announced again.
        pods[1].metadata.uid = Some("u2-new".into());
        let events = judge_pods(&inputs(), &trust(), &pods, &mut violations);
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].0.uid.as_deref(), Some("u2-new"));
        // A new image in a pod: only the new message.
        pods[3] = pod(
            "prod",
            "signed",
            "u4",
            &[&signed(), "registry.example/other:2"],
            json!({}),
        );
        let events = judge_pods(&inputs(), &trust(), &pods, &mut violations);
        assert_eq!(events.len(), 2, "{events:?}");
        assert!(
            events
                .iter()
                .all(|(r, _)| r.namespace.as_deref() == Some("prod"))
        );
        assert!(
            events
                .iter()
                .any(|(_, m)| m.starts_with("Image registry.example/other:2 denied"))
        );
        assert!(
            events
                .iter()
                .any(|(_, m)| m.contains("attestor projects/p/attestors/build")),
            "prod is labelled team=a: the audit policy governs it too: {events:?}"
        );
    }

    #[test]
    fn new_trust_clears_a_violation_and_announces_it_again_if_it_returns() {
        let mut violations = Violations::default();
        let unsigned_digest = format!("registry.example/app@sha256:{B}");
        let pods = vec![pod("apps", "p", "u", &[&unsigned_digest], json!({}))];
        assert_eq!(
            judge_pods(&inputs(), &trust(), &pods, &mut violations).len(),
            1
        );
        let mut t = trust();
        t.insert("build", &digest(B), "ci/build-b").unwrap();
        assert!(judge_pods(&inputs(), &t, &pods, &mut violations).is_empty());
        assert_eq!(violations.report("audit").0, 0);
        assert!(violations.is_empty());
        assert_eq!(
            judge_pods(&inputs(), &trust(), &pods, &mut violations).len(),
            1
        );
    }

    #[test]
    fn no_policy_no_violation() {
        let mut violations = Violations::default();
        let pods = pods();
        judge_pods(&inputs(), &trust(), &pods, &mut violations);
        assert!(!violations.is_empty());
        let none = Inputs {
            policies: Vec::new(),
            ..inputs()
        };
        assert!(judge_pods(&none, &trust(), &pods, &mut violations).is_empty());
        assert!(violations.is_empty());
    }

    #[test]
    fn the_list_is_bounded_and_ordered_but_every_pod_is_counted() {
        let mut violations = Violations::default();
        let pods: Vec<RunningPod> = (0..25)
            .rev()
            .map(|i| {
                let ns = if i % 2 == 0 { "prod" } else { "apps" };
                pod(
                    ns,
                    &format!("p{i:02}"),
                    &format!("u{i}"),
                    &["x:1"],
                    json!({}),
                )
            })
            .collect();
        judge_pods(&inputs(), &trust(), &pods, &mut violations);
        let (count, listed) = violations.report("audit");
        assert_eq!(count, 25);
        assert_eq!(listed.len(), MAX_LISTED_VIOLATIONS);
        let got = names(&listed);
        let mut sorted = got.clone();
        sorted.sort();
        assert_eq!(got, sorted);
        assert_eq!(got[0], "apps/p01");
        assert_eq!(got[12], "prod/p00", "apps (12 pods) before prod");
        // Pods that are gone leave the count.
        violations.retain(|k| k.namespace == "apps");
        assert_eq!(violations.report("audit").0, 12);
        violations.remove(&PodKey {
            namespace: "apps".into(),
            name: "p01".into(),
        });
        assert_eq!(violations.report("audit").0, 11);
    }

    #[test]
    fn unchanged_status_is_not_patched() {
        let listed = vec![PodViolation {
            namespace: "apps".into(),
            name: "p".into(),
            messages: vec!["m".into()],
        }];
        assert!(differs(None, 0, &[]), "no status yet: write the count");
        let current = AttestationPolicyStatus {
            violation_count: Some(1),
            violations: listed.clone(),
            ..AttestationPolicyStatus::default()
        };
        assert!(!differs(Some(&current), 1, &listed));
        assert!(differs(Some(&current), 2, &listed));
        assert!(differs(Some(&current), 0, &[]));
        let mut other = listed.clone();
        other[0].messages[0] = "m2".into();
        assert!(differs(Some(&current), 1, &other));
        // A status the policy reconciler wrote, without the violation fields.
        let unreported = AttestationPolicyStatus::default();
        assert!(differs(Some(&unreported), 0, &[]));
        let zero = AttestationPolicyStatus {
            violation_count: Some(0),
            ..AttestationPolicyStatus::default()
        };
        assert!(!differs(Some(&zero), 0, &[]));
    }

    #[test]
    fn status_fields_are_only_the_violation_fields() {
        let listed = vec![PodViolation {
            namespace: "apps".into(),
            name: "p".into(),
            messages: vec!["m".into()],
        }];
        let fields = status_fields(1, &listed);
        assert_eq!(
            fields,
            json!({"violationCount": 1, "violations": [{"namespace": "apps", "name": "p", "messages": ["m"]}]})
        );
        assert_eq!(status_fields(0, &[]), json!({"violationCount": 0}));
        let patch = status::status_patch::<AttestationPolicy>(&fields);
        assert_eq!(patch["kind"], "AttestationPolicy");
        assert_eq!(patch["status"]["violationCount"], 1);
        assert_eq!(patch["status"].as_object().unwrap().len(), 2);
    }
}
