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
        for object in self.policies.state() {
            let Ok(policy) = &object.0 else { continue };
            let name = policy.name_any();
            let (count, listed) = self.violations.report(&name);
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
