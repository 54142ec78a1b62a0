//! Continuous validation (leader only): running pods are judged again with the admission
//! engine (`policy::evaluate`), periodically and soon after a policy or the trust changes.
//! Pods are never killed: violations are reported in each policy's status
//! (`violationCount`, `violations`), as `PolicyViolation` Events on the pod, and in the logs.
//!
//! Trust comes from the attestation reconciler's own verification results
//! ([`VerifiedAttestations`](super::verified::VerifiedAttestations)), never from `status`.
//! Pods and namespaces are watched with everything stripped but what the policy reads, so a
//! cached pod costs a few hundred bytes.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::{
    Container, EphemeralContainer, Namespace, ObjectReference, Pod, PodSpec,
};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Resource as _, ResourceExt as _};
use tokio::time::Instant;

use super::image_attestation::attestation_key;
use super::{Context, bounded, status};
use crate::crd::{AttestationPolicy, AttestationPolicyStatus, ImageAttestation, PodViolation};
use crate::policy::{self, Attestations, CompiledPolicy, Workload, WorkloadError, WorkloadKind};

/// Field manager of the violation fields of a policy's status. It must differ from the
/// policy reconciler's (`binauthz`): server-side apply removes the fields a manager owned
/// and no longer sends, and the policy reconciler's applies leave these fields out, so with
/// one manager every policy reconcile would delete the violations.
pub const FIELD_MANAGER: &str = "binauthz-validation";
/// Reason of the Event on a pod that violates a policy.
pub const REASON_POLICY_VIOLATION: &str = "PolicyViolation";
/// At most this many violating pods are listed in a policy's status (all are counted).
pub const MAX_LISTED_VIOLATIONS: usize = 20;
/// Default of `--validation-interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// Changes are collected this long before pods are judged again.
pub const DEBOUNCE: Duration = Duration::from_secs(2);
/// The first pass waits at most this long for every attestation to have been verified.
const WARMUP_LIMIT: Duration = Duration::from_secs(120);
/// A status that could not be written is tried again after this long.
const RETRY: Duration = Duration::from_secs(30);
/// Longest Event note the API server accepts.
const EVENT_NOTE_LIMIT: usize = 1024;
/// Events published at once.
const EVENT_CONCURRENCY: usize = 8;
/// Pods that have finished do not run anything; the watch drops them when they finish.
const ACTIVE_PODS: &str = "status.phase!=Succeeded,status.phase!=Failed";

/// Parse a `--validation-interval` such as `30s`, `5m`, `1h` or `1h30m` (also ISO 8601).
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let parsed: jiff::SignedDuration = text
        .trim()
        .parse()
        .map_err(|e| format!("{text:?} is not a duration like 30s, 5m or 1h: {e}"))?;
    let interval = Duration::try_from(parsed).unwrap_or_default();
    if interval < Duration::from_secs(1) {
        return Err(format!("{text:?}: the interval must be at least 1s"));
    }
    Ok(interval)
}

/// Annotations the policy reads (`*.image-policy.k8s.io/*`, breakglass among them).
fn is_policy_annotation(key: &str) -> bool {
    key.split_once('/').is_some_and(|(domain, _)| {
        domain == "image-policy.k8s.io" || domain.ends_with(".image-policy.k8s.io")
    })
}

/// Keep only what validation reads of a pod: namespace, name, uid, labels, the
/// `image-policy.k8s.io` annotations, the service account and every container's name and
/// image.
pub fn strip_pod(pod: &mut Pod) {
    let meta = std::mem::take(&mut pod.metadata);
    pod.metadata = ObjectMeta {
        name: meta.name,
        namespace: meta.namespace,
        uid: meta.uid,
        labels: meta.labels,
        annotations: meta
            .annotations
            .map(|a| {
                a.into_iter()
                    .filter(|(k, _)| is_policy_annotation(k))
                    .collect::<BTreeMap<_, _>>()
            })
            .filter(|a| !a.is_empty()),
        ..ObjectMeta::default()
    };
    pod.status = None;
    pod.spec = pod.spec.take().map(|spec| {
        let container = |c: Container| Container {
            name: c.name,
            image: c.image,
            ..Container::default()
        };
        PodSpec {
            service_account_name: spec.service_account_name,
            service_account: spec.service_account,
            containers: spec.containers.into_iter().map(container).collect(),
            init_containers: spec
                .init_containers
                .map(|l| l.into_iter().map(container).collect()),
            ephemeral_containers: spec.ephemeral_containers.map(|l| {
                l.into_iter()
                    .map(|c| EphemeralContainer {
                        name: c.name,
                        image: c.image,
                        ..EphemeralContainer::default()
                    })
                    .collect()
            }),
            ..PodSpec::default()
        }
    });
}

/// Keep only the name and labels of a namespace (what `namespaceSelector` reads).
pub fn strip_namespace(namespace: &mut PartialObjectMeta<Namespace>) {
    let meta = std::mem::take(&mut namespace.metadata);
    namespace.metadata = ObjectMeta {
        name: meta.name,
        labels: meta.labels,
        ..ObjectMeta::default()
    };
}

/// The pod as the admission webhook reads it (the same JSON reader, so the same decision).
pub fn workload(pod: &Pod) -> Result<Workload, WorkloadError> {
    let object = serde_json::to_value(pod).unwrap_or_default();
    Workload::from_object(WorkloadKind::Pod, &object)
}

/// Per policy, the messages of what it refuses in one pod (empty: no violation).
pub type PolicyFindings = BTreeMap<Arc<str>, Vec<String>>;

/// Judge one workload: every policy that governs its namespace and refuses an image, enforced
/// or dry run, with the Google-style messages. Breakglass admits a pod but still violates.
pub fn judge_workload(
    policies: &[CompiledPolicy],
    namespace_labels: &BTreeMap<String, String>,
    workload: &Workload,
    trust: &impl Attestations,
) -> PolicyFindings {
    let decision = policy::evaluate(policies, namespace_labels, workload, trust);
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
    pub fn of(pod: &Pod) -> Self {
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

/// What one pass needs besides the pods and the trust.
#[derive(Debug, Default)]
pub struct Inputs {
    /// The policies, compiled.
    pub policies: Vec<CompiledPolicy>,
    /// Labels by namespace name.
    pub namespace_labels: HashMap<String, BTreeMap<String, String>>,
    /// Namespaces never judged (as for the webhook: binauthz's own, kube-system, ...).
    pub exempt: BTreeSet<String>,
}

/// One Event to publish: the pod and the message.
pub type PodEvent = (ObjectReference, String);

/// Judge `pods`, record the result in `violations` and return the Events to publish. Pods
/// in exempt namespaces, or that cannot be read, violate nothing.
pub fn judge_pods<'a>(
    inputs: &Inputs,
    trust: &impl Attestations,
    pods: impl IntoIterator<Item = &'a Pod>,
    violations: &mut Violations,
) -> Vec<PodEvent> {
    let no_labels = BTreeMap::new();
    let mut events = Vec::new();
    for pod in pods {
        let key = PodKey::of(pod);
        if inputs.exempt.contains(&key.namespace) || inputs.policies.is_empty() {
            violations.remove(&key);
            continue;
        }
        let findings = match workload(pod) {
            Ok(workload) => {
                let labels = inputs
                    .namespace_labels
                    .get(&key.namespace)
                    .unwrap_or(&no_labels);
                judge_workload(&inputs.policies, labels, &workload, trust)
            }
            Err(error) => {
                tracing::warn!(namespace = %key.namespace, pod = %key.name, %error, "cannot read pod");
                PolicyFindings::new()
            }
        };
        let uid = pod.metadata.uid.clone();
        for message in violations.update(key.clone(), uid.as_deref(), findings) {
            tracing::info!(namespace = %key.namespace, pod = %key.name, %message, "running pod violates a policy");
            events.push((pod.object_ref(&()), message));
        }
    }
    events
}

/// An Event note cut to what the API server accepts, on a character boundary.
fn note(message: &str) -> String {
    if message.len() <= EVENT_NOTE_LIMIT {
        return message.to_owned();
    }
    let mut end = EVENT_NOTE_LIMIT - 3;
    while !message.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &message[..end])
}

/// Which policies changed in a way that changes decisions (spec, not status).
#[derive(Debug, Default)]
pub struct PolicyGenerations {
    seen: HashMap<String, Option<i64>>,
}

impl PolicyGenerations {
    /// Note a watch event; true when a policy appeared, went, or got a new spec.
    pub fn changed(&mut self, event: &watcher::Event<DeserializeGuard<AttestationPolicy>>) -> bool {
        match event {
            watcher::Event::Apply(p) | watcher::Event::InitApply(p) => {
                let generation = p.meta().generation;
                self.seen.insert(p.name_any(), generation) != Some(generation)
                    && matches!(event, watcher::Event::Apply(_))
            }
            watcher::Event::Delete(p) => {
                self.seen.remove(&p.name_any());
                true
            }
            watcher::Event::Init => {
                // A re-list: what it does not list again is gone.
                self.seen.clear();
                false
            }
            watcher::Event::InitDone => true,
        }
    }
}

/// When the next pass runs and what it covers.
#[derive(Debug)]
struct Schedule {
    at: Option<Instant>,
    full: bool,
    pods: HashSet<PodKey>,
}

impl Schedule {
    /// Run within [`DEBOUNCE`] (a pass already due keeps its time, so churn cannot starve it).
    fn soon(&mut self, full: bool) {
        self.full |= full;
        let at = Instant::now() + DEBOUNCE;
        self.at = Some(self.at.map_or(at, |t| t.min(at)));
    }

    fn pod(&mut self, pod: &Pod) {
        self.pods.insert(PodKey::of(pod));
        self.soon(false);
    }

    fn at(&self) -> Instant {
        self.at.unwrap_or_else(Instant::now)
    }
}

/// Which watches have listed everything once.
#[derive(Debug, Default)]
struct Synced {
    pods: bool,
    namespaces: bool,
    policies: bool,
}

/// The leader's continuous validation: its caches and state.
struct Validator {
    ctx: Arc<Context>,
    pods: Store<Pod>,
    namespaces: Store<PartialObjectMeta<Namespace>>,
    policies: Store<DeserializeGuard<AttestationPolicy>>,
    violations: Violations,
    synced: Synced,
    started: Instant,
}

impl Validator {
    /// Whether every cache is complete and the trust index has judged every attestation.
    fn ready(&self) -> bool {
        let Synced {
            pods,
            namespaces,
            policies,
        } = self.synced;
        if !(pods && namespaces && policies)
            || self
                .ctx
                .attestations
                .wait_until_ready()
                .now_or_never()
                .is_none()
        {
            return false;
        }
        if self.ctx.verified.is_warm() {
            return true;
        }
        let attestations = self.ctx.attestations.state();
        if self
            .ctx
            .verified
            .check_warm(attestations.iter().map(|a| attestation_key(&**a)))
        {
            return true;
        }
        if self.started.elapsed() > WARMUP_LIMIT {
            tracing::warn!(
                "some attestations are still not verified after {WARMUP_LIMIT:?}; validating pods without them"
            );
            self.ctx.verified.assume_warm();
            return true;
        }
        false
    }

    fn inputs(&self) -> Inputs {
        let mut policies: Vec<CompiledPolicy> = self
            .policies
            .state()
            .iter()
            .filter_map(|p| {
                let policy = p.0.as_ref().ok()?;
                Some(CompiledPolicy::compile(&policy.name_any(), &policy.spec))
            })
            .collect();
        policies.sort_by(|a, b| a.name().cmp(b.name()));
        Inputs {
            policies,
            namespace_labels: self
                .namespaces
                .state()
                .iter()
                .map(|n| (n.name_any(), n.labels().clone()))
                .collect(),
            exempt: self.ctx.settings.exempt(),
        }
    }

    /// Judge the scheduled pods (all of them on a full pass), publish Events for new
    /// violations and write the policies' statuses that changed. Returns whether every
    /// status write succeeded.
    async fn pass(&mut self, full: bool, pods: HashSet<PodKey>) -> bool {
        if full {
            // Attestations deleted since (a delete event is missed across a re-list, and a
            // reconcile in flight may record one after its deletion).
            let existing: HashSet<String> = self
                .ctx
                .attestations
                .state()
                .iter()
                .map(|a| attestation_key(&**a))
                .collect();
            let pruned = self.ctx.verified.retain(|k| existing.contains(k));
            if pruned > 0 {
                tracing::info!(pruned, "forgot deleted attestations");
            }
        }
        let inputs = self.inputs();
        let (selected, gone): (Vec<Arc<Pod>>, Vec<PodKey>) = if full {
            (self.pods.state(), Vec::new())
        } else {
            let mut selected = Vec::new();
            let mut gone = Vec::new();
            for key in pods {
                match self
                    .pods
                    .get(&ObjectRef::new(&key.name).within(&key.namespace))
                {
                    Some(pod) => selected.push(pod),
                    None => gone.push(key),
                }
            }
            (selected, gone)
        };
        let mut violations = std::mem::take(&mut self.violations);
        for key in &gone {
            violations.remove(key);
        }
        // Judging every pod is CPU work: keep it off the async workers.
        let ctx = self.ctx.clone();
        let judged = tokio::task::spawn_blocking(move || {
            let events = {
                let trust = ctx.verified.read();
                judge_pods(
                    &inputs,
                    &*trust,
                    selected.iter().map(|p| &**p),
                    &mut violations,
                )
            };
            if full {
                let present: HashSet<PodKey> = selected.iter().map(|p| PodKey::of(p)).collect();
                violations.retain(|k| present.contains(k));
            }
            (violations, events)
        })
        .await;
        let events = match judged {
            Ok((violations, events)) => {
                self.violations = violations;
                events
            }
            Err(error) => {
                tracing::error!(%error, "judging pods failed");
                return false;
            }
        };
        self.publish(events).await;
        self.write_statuses().await
    }

    async fn publish(&self, events: Vec<PodEvent>) {
        let recorder = &self.ctx.recorder;
        futures::stream::iter(events)
            .for_each_concurrent(EVENT_CONCURRENCY, |(pod, message)| async move {
                let event = Event {
                    type_: EventType::Warning,
                    reason: REASON_POLICY_VIOLATION.to_owned(),
                    note: Some(note(&message)),
                    action: "Validate".to_owned(),
                    secondary: None,
                };
                if let Err(error) = recorder.publish(&event, &pod).await {
                    tracing::warn!(%error, pod = pod.name.as_deref().unwrap_or_default(), "cannot publish PolicyViolation Event");
                }
            })
            .await;
    }

    async fn write_statuses(&self) -> bool {
        let api = Api::<DeserializeGuard<AttestationPolicy>>::all(self.ctx.client.clone());
        let params = PatchParams::apply(FIELD_MANAGER).force();
        let mut ok = true;
        let mut counts = BTreeMap::new();
        for object in self.policies.state() {
            let Ok(policy) = &object.0 else { continue };
            let name = policy.name_any();
            let (count, listed) = self.violations.report(&name);
            counts.insert(name.clone(), i64::from(count));
            if !differs(policy.status.as_ref(), count, &listed) {
                continue;
            }
            let patch = status::status_patch::<AttestationPolicy>(&status_fields(count, &listed));
            match bounded(api.patch_status(&name, &params, &Patch::Apply(&patch))).await {
                Ok(_) => {
                    tracing::info!(policy = %name, violations = count, "policy violations updated")
                }
                Err(error) => {
                    ok = false;
                    tracing::warn!(policy = %name, %error, category = error.category(), "cannot write policy violations");
                }
            }
        }
        self.ctx.metrics.set_policy_violations(&counts);
        ok
    }
}

fn log_watch_error(what: &str, error: &watcher::Error) {
    tracing::warn!(%error, watch = what, "continuous validation watch failed; retrying");
}

/// Judge every running pod every `interval`, and the affected ones soon after a change.
/// Returns only if a watch ends (it does not, normally).
pub async fn run(ctx: Arc<Context>, interval: Duration) {
    let client = ctx.client.clone();
    let (pods, pod_writer) = reflector::store();
    let pod_events = watcher(
        Api::<Pod>::all(client.clone()),
        super::watch_config().fields(ACTIVE_PODS),
    )
    .default_backoff()
    .modify(strip_pod)
    .reflect(pod_writer);
    let (namespaces, namespace_writer) = reflector::store();
    let namespace_events = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        super::watch_config(),
    )
    .default_backoff()
    .modify(strip_namespace)
    .reflect(namespace_writer);
    let (policies, policy_writer) = reflector::store();
    let policy_events = watcher(
        Api::<DeserializeGuard<AttestationPolicy>>::all(client.clone()),
        super::watch_config(),
    )
    .default_backoff()
    .reflect(policy_writer);
    // Only deletions matter here: the reconciler reports every other change.
    let attestation_events = watcher(
        Api::<PartialObjectMeta<ImageAttestation>>::all(client),
        super::watch_config(),
    )
    .default_backoff();
    let mut pod_events = pin!(pod_events);
    let mut namespace_events = pin!(namespace_events);
    let mut policy_events = pin!(policy_events);
    let mut attestation_events = pin!(attestation_events);

    let mut validator = Validator {
        ctx: ctx.clone(),
        pods,
        namespaces,
        policies,
        violations: Violations::default(),
        synced: Synced::default(),
        started: Instant::now(),
    };
    let mut generations = PolicyGenerations::default();
    let mut schedule = Schedule {
        at: None,
        full: true,
        pods: HashSet::new(),
    };
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(?interval, "continuous validation started");
    loop {
        tokio::select! {
            event = pod_events.next() => match event {
                Some(Ok(watcher::Event::Apply(pod) | watcher::Event::Delete(pod))) => schedule.pod(&pod),
                Some(Ok(watcher::Event::InitDone)) => {
                    validator.synced.pods = true;
                    schedule.soon(true);
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => log_watch_error("pods", &error),
                None => break,
            },
            event = namespace_events.next() => match event {
                Some(Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_))) => schedule.soon(true),
                Some(Ok(watcher::Event::InitDone)) => {
                    validator.synced.namespaces = true;
                    schedule.soon(true);
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => log_watch_error("namespaces", &error),
                None => break,
            },
            event = policy_events.next() => match event {
                Some(Ok(event)) => {
                    if matches!(event, watcher::Event::InitDone) {
                        validator.synced.policies = true;
                    }
                    if generations.changed(&event) {
                        schedule.soon(true);
                    }
                }
                Some(Err(error)) => log_watch_error("attestationpolicies", &error),
                None => break,
            },
            event = attestation_events.next() => match event {
                Some(Ok(watcher::Event::Delete(attestation))) => {
                    // Signals the change, which schedules a pass.
                    ctx.verified.record(&attestation_key(&attestation), None);
                }
                Some(Ok(watcher::Event::InitDone)) => schedule.soon(true),
                Some(Ok(_)) => {}
                Some(Err(error)) => log_watch_error("imageattestations", &error),
                None => break,
            },
            () = ctx.verified.changed() => schedule.soon(true),
            _ = ticker.tick() => schedule.soon(true),
            () = tokio::time::sleep_until(schedule.at()), if schedule.at.is_some() => {
                if !validator.ready() {
                    schedule.at = Some(Instant::now() + DEBOUNCE);
                    continue;
                }
                let full = std::mem::take(&mut schedule.full);
                let pods = std::mem::take(&mut schedule.pods);
                schedule.at = None;
                let started = Instant::now();
                if !validator.pass(full, pods).await {
                    schedule.at = Some(Instant::now() + RETRY);
                }
                if full {
                    tracing::info!(
                        pods = validator.pods.len(),
                        violating = validator.violations.len(),
                        took = ?started.elapsed(),
                        "validated every running pod"
                    );
                }
            }
        }
    }
    tracing::warn!("continuous validation stopped: a watch ended");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AttestationPolicySpec;
    use crate::image::Digest;
    use crate::policy::TrustIndex;
    use serde_json::{Value, json};

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
            namespace_labels: HashMap::from([
                ("apps".to_owned(), labels(Some("a"))),
                ("prod".to_owned(), labels(Some("a"))),
                ("other".to_owned(), labels(None)),
                ("kube-system".to_owned(), labels(Some("a"))),
            ]),
            exempt: BTreeSet::from(["kube-system".to_owned()]),
        }
    }

    fn trust() -> TrustIndex {
        let mut t = TrustIndex::new();
        t.insert("build", &digest(A), "ci/build-a").unwrap();
        t
    }

    fn pod(ns: &str, name: &str, uid: &str, images: &[&str], labels: Value) -> Pod {
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

    fn pods() -> Vec<Pod> {
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
        let pods: Vec<Pod> = (0..25)
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

    #[test]
    fn stripped_pods_keep_what_the_policy_reads() {
        let full: Value = json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {
                "name": "p", "namespace": "apps", "uid": "u", "resourceVersion": "7",
                "labels": {"app": "x", "image-policy.k8s.io/break-glass": "true"},
                "annotations": {
                    "alpha.image-policy.k8s.io/break-glass": "true",
                    "kubectl.kubernetes.io/last-applied-configuration": "{\"big\": true}"
                },
                "managedFields": [{"manager": "kubectl", "operation": "Apply"}],
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "rs", "uid": "r"}]
            },
            "spec": {
                "serviceAccountName": "deployer",
                "nodeName": "n1",
                "initContainers": [{"name": "init", "image": "busybox", "command": ["sh"]}],
                "containers": [{"name": "app", "image": "nginx:1", "env": [{"name": "A", "value": "b"}],
                                "ports": [{"containerPort": 80}]}],
                "ephemeralContainers": [{"name": "debug", "image": "busybox:1", "stdin": true}],
                "volumes": [{"name": "v", "emptyDir": {}}]
            },
            "status": {"phase": "Running", "podIP": "10.0.0.1"}
        });
        let mut pod: Pod = serde_json::from_value(full.clone()).unwrap();
        strip_pod(&mut pod);
        assert_eq!(
            workload(&pod).unwrap(),
            Workload::from_json(&full).unwrap().unwrap(),
            "the same decision input as the admission webhook reads"
        );
        assert_eq!(pod.metadata.uid.as_deref(), Some("u"));
        assert_eq!(pod.metadata.labels.as_ref().unwrap().len(), 2);
        assert_eq!(
            pod.metadata.annotations,
            Some(BTreeMap::from([(
                "alpha.image-policy.k8s.io/break-glass".to_owned(),
                "true".to_owned()
            )]))
        );
        assert!(pod.metadata.managed_fields.is_none());
        assert!(pod.metadata.owner_references.is_none());
        assert!(pod.status.is_none());
        let spec = pod.spec.as_ref().unwrap();
        assert!(spec.node_name.is_none() && spec.volumes.is_none());
        assert!(spec.containers[0].env.is_none() && spec.containers[0].ports.is_none());
        assert_eq!(spec.ephemeral_containers.as_ref().unwrap()[0].stdin, None);
        let small = serde_json::to_string(&pod).unwrap().len();
        assert!(
            small < 450,
            "{small} bytes: {}",
            serde_json::to_string(&pod).unwrap()
        );

        let mut namespace: PartialObjectMeta<Namespace> = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "apps", "labels": {"team": "a"}, "annotations": {"x": "y"},
                         "managedFields": [{"manager": "kubectl"}]}
        }))
        .unwrap();
        strip_namespace(&mut namespace);
        assert_eq!(namespace.name_any(), "apps");
        assert_eq!(
            namespace.labels().get("team").map(String::as_str),
            Some("a")
        );
        assert!(namespace.metadata.annotations.is_none());
        assert!(namespace.metadata.managed_fields.is_none());
    }

    #[test]
    fn intervals_are_human_durations() {
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_interval("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_interval("PT5M"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_interval(" 2m "), Ok(Duration::from_secs(120)));
        for bad in ["", "soon", "0s", "500ms", "-5s", "5"] {
            let error = parse_interval(bad).unwrap_err();
            assert!(error.contains(&format!("{bad:?}")), "{error}");
        }
    }

    #[test]
    fn only_spec_changes_of_policies_count() {
        let policy = |generation: i64| {
            let mut p = AttestationPolicy::new("p", AttestationPolicySpec::default());
            p.metadata.generation = Some(generation);
            DeserializeGuard(Ok(p))
        };
        let mut g = PolicyGenerations::default();
        assert!(!g.changed(&watcher::Event::Init));
        assert!(!g.changed(&watcher::Event::InitApply(policy(1))));
        assert!(g.changed(&watcher::Event::InitDone));
        assert!(
            !g.changed(&watcher::Event::Apply(policy(1))),
            "a status write"
        );
        assert!(g.changed(&watcher::Event::Apply(policy(2))), "a new spec");
        assert!(g.changed(&watcher::Event::Delete(policy(2))));
        assert!(
            g.changed(&watcher::Event::Apply(policy(2))),
            "created again"
        );
    }

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        assert_eq!(note("short"), "short");
        let long = "é".repeat(EVENT_NOTE_LIMIT);
        let cut = note(&long);
        assert!(cut.len() <= EVENT_NOTE_LIMIT && cut.ends_with("..."));
    }
}
