//! Continuous validation (leader only): running pods are judged again with the admission
//! engine (`policy::evaluate`), periodically and soon after a policy or the trust changes.
//! Pods are never killed: violations are reported in each policy's status
//! (`violationCount`, `violations`), as `PolicyViolation` Events on the pod, and in the logs.
//!
//! Trust comes from the attestation reconciler's own verification results
//! ([`VerifiedAttestations`](super::verified::VerifiedAttestations)), never from `status`.
//! Pods and namespaces are watched with everything stripped but what the policy reads
//! ([`pod`]), so a cached pod costs a few hundred bytes; the decisions and the report are pure
//! ([`report`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::{FutureExt as _, StreamExt as _};
use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Patch, PatchParams};
use kube::core::{DeserializeGuard, PartialObjectMeta};
use kube::runtime::WatchStreamExt as _;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use kube::{Api, Resource as _, ResourceExt as _};
use tokio::time::Instant;

use super::image_attestation::attestation_key;
use super::{Context, bounded, status};
use crate::backoff::WatchBackoff;
use crate::crd::{AttestationPolicy, ImageAttestation};
use crate::policy::CompiledPolicy;

pub mod pod;
pub mod report;

pub use pod::{RunningPod, strip_namespace, strip_pod};
pub use report::{
    Inputs, MAX_LISTED_VIOLATIONS, PodEvent, PodKey, PolicyFindings, Violations, differs,
    judge_pods, judge_workload, status_fields,
};

/// Field manager of the violation fields of a policy's status. It must differ from the
/// policy reconciler's (`binauthz`): server-side apply removes the fields a manager owned
/// and no longer sends, and the policy reconciler's applies leave these fields out, so with
/// one manager every policy reconcile would delete the violations.
pub const FIELD_MANAGER: &str = "binauthz-validation";
/// Reason of the Event on a pod that violates a policy.
pub const REASON_POLICY_VIOLATION: &str = "PolicyViolation";
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

/// Longest `--validation-interval` (longer ones would overflow timers, and mean never).
const MAX_INTERVAL: Duration = Duration::from_secs(365 * 86400);

/// Parse a `--validation-interval` such as `30s`, `5m`, `1h`, `1h30m` or `1d` (also ISO 8601).
pub fn parse_interval(text: &str) -> Result<Duration, String> {
    let bad = |e: jiff::Error| format!("{text:?} is not a duration like 30s, 5m, 1h or 1d: {e}");
    // Days count as 24 hours; months and years are refused (their length varies).
    let parsed = text
        .trim()
        .parse::<jiff::Span>()
        .and_then(|span| span.to_duration(jiff::SpanRelativeTo::days_are_24_hours()))
        .map_err(bad)?;
    let interval = Duration::try_from(parsed).unwrap_or_default();
    if interval < Duration::from_secs(1) || interval > MAX_INTERVAL {
        return Err(format!(
            "{text:?}: the interval must be between 1s and 365d"
        ));
    }
    Ok(interval)
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

    fn pod(&mut self, pod: &RunningPod) {
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
    pods: Store<RunningPod>,
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
        let (selected, gone): (Vec<Arc<RunningPod>>, Vec<PodKey>) = if full {
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
        Api::<RunningPod>::all(client.clone()),
        super::watch_config().fields(ACTIVE_PODS),
    )
    .backoff(WatchBackoff::new())
    .modify(strip_pod)
    .reflect(pod_writer);
    let (namespaces, namespace_writer) = reflector::store();
    let namespace_events = watcher(
        Api::<PartialObjectMeta<Namespace>>::all(client.clone()),
        super::watch_config(),
    )
    .backoff(WatchBackoff::new())
    .modify(strip_namespace)
    .reflect(namespace_writer);
    let (policies, policy_writer) = reflector::store();
    let policy_events = watcher(
        Api::<DeserializeGuard<AttestationPolicy>>::all(client.clone()),
        super::watch_config(),
    )
    .backoff(WatchBackoff::new())
    .reflect(policy_writer);
    // Only deletions matter here: the reconciler reports every other change.
    let attestation_events = watcher(
        Api::<PartialObjectMeta<ImageAttestation>>::all(client),
        super::watch_config(),
    )
    .backoff(WatchBackoff::new());
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

    #[test]
    fn intervals_are_human_durations() {
        assert_eq!(parse_interval("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_interval("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_interval("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_interval("PT5M"), Ok(Duration::from_secs(300)));
        assert_eq!(parse_interval(" 2m "), Ok(Duration::from_secs(120)));
        assert_eq!(parse_interval("1d"), Ok(Duration::from_secs(86400)));
        assert_eq!(parse_interval("365d"), Ok(MAX_INTERVAL));
        for bad in [
            "",
            "soon",
            "0s",
            "500ms",
            "-5s",
            "5",
            "366d",
            "1y",
            "1mo",
            "99999999h",
        ] {
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
}
