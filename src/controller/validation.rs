//! Continuous validation (leader only): running pods are judged again with the admission
//! engine, periodically and soon after policies, namespaces or trust change. Pods are never
//! killed: violations are reported in each policy's status (`violationCount`, `violations`),
//! as `PolicyViolation` Events on the pod, and in the logs.
//!
//! Every decision comes from the replica's one entry point, [`Index::decide`](crate::trust::Index::decide):
//! the same policies, namespaces and verified trust the webhook answers from, never `status`.
//! Pods are watched with everything stripped but what the policy reads ([`pod`]), so a cached
//! pod costs a few hundred bytes; the report is pure ([`report`]).

use std::collections::{BTreeMap, HashSet};
use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use kube::Api;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::WatchStreamExt as _;
use kube::runtime::events::{Event, EventType};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::watcher::{self, watcher};
use tokio::time::Instant;

use super::{Context, bounded, status};
use crate::crd::AttestationPolicy;
use crate::watcher::{Counted, Retry, WatchBackoff};

pub mod pod;
pub mod policy_reports;
pub mod report;

pub use pod::{RunningPod, strip_pod};
pub use report::{
    MAX_LISTED_VIOLATIONS, PodEvent, PodKey, PolicyFindings, Violations, differs, findings,
    judge_pods, status_fields,
};

/// Field manager of the violation fields of a policy's status. It must differ from the
/// status writer's (`binauthz`): server-side apply removes the fields a manager owned and no
/// longer sends, and the status writer's applies leave these fields out, so with one manager
/// every policy status write would delete the violations.
pub const FIELD_MANAGER: &str = "binauthz-validation";
/// Reason of the Event on a pod that violates a policy.
pub const REASON_POLICY_VIOLATION: &str = "PolicyViolation";
/// Default of `--validation-interval`.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(3600);
/// Changes are collected this long before pods are judged again.
pub const DEBOUNCE: Duration = Duration::from_secs(2);
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

/// The leader's continuous validation: its pods and what it found.
struct Validator {
    ctx: Arc<Context>,
    pods: Store<RunningPod>,
    pods_synced: bool,
    violations: Violations,
    reports: policy_reports::Reports,
    report_format: policy_reports::ReportFormat,
}

impl Validator {
    /// Whether every pod is listed and the trust pipeline has decided everything once.
    fn ready(&self) -> bool {
        self.pods_synced && self.ctx.index.is_ready()
    }

    /// Judge the scheduled pods (all of them on a full pass), publish Events for new
    /// violations and write the policies' statuses that changed. Returns whether every pod was
    /// decided and every status written.
    async fn pass(&mut self, full: bool, pods: HashSet<PodKey>) -> bool {
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
        let mut reports = std::mem::take(&mut self.reports);
        for key in &gone {
            violations.remove(key);
            reports.forget(key);
        }
        // Judging every pod is CPU work: keep it off the async workers.
        let ctx = self.ctx.clone();
        let judged = tokio::task::spawn_blocking(move || {
            let exempt = ctx.settings.exempt();
            let uids: std::collections::HashMap<PodKey, Option<String>> = selected
                .iter()
                .map(|p| (PodKey::of(p), p.metadata.uid.clone()))
                .collect();
            let now = jiff::Timestamp::now();
            let reports_cell = std::cell::RefCell::new(&mut reports);
            let (events, undecided) = judge_pods(
                |w| {
                    let decision = ctx.index.decide(w).map_err(|e| e.to_string());
                    if let Ok(decision) = &decision {
                        let key = PodKey {
                            namespace: w.namespace().to_owned(),
                            name: w.name.clone(),
                        };
                        let uid = uids.get(&key).cloned().flatten();
                        reports_cell.borrow_mut().record(key, uid, decision, now);
                    }
                    decision
                },
                &exempt,
                selected.iter().map(|p| &**p),
                &mut violations,
            );
            let present: HashSet<PodKey> = selected.iter().map(|p| PodKey::of(p)).collect();
            if full {
                violations.retain(|k| present.contains(k));
                reports.retain(&present);
            }
            for key in present.iter().filter(|k| exempt.contains(&k.namespace)) {
                reports.forget(key);
            }
            (violations, reports, events, undecided)
        })
        .await;
        let (events, undecided) = match judged {
            Ok((violations, reports, events, undecided)) => {
                self.violations = violations;
                self.reports = reports;
                (events, undecided)
            }
            Err(error) => {
                tracing::error!(%error, "judging pods failed");
                return false;
            }
        };
        self.publish(events).await;
        let reported =
            policy_reports::write(&mut self.reports, &self.ctx.client, self.report_format).await;
        self.write_statuses().await && reported && undecided.is_empty()
    }

    async fn publish(&self, events: Vec<PodEvent>) {
        let recorder = &self.ctx.recorder;
        futures::stream::iter(events)
            .for_each_concurrent(EVENT_CONCURRENCY, |(pod, message)| async move {
                let event = Event {
                    type_: EventType::Warning,
                    reason: REASON_POLICY_VIOLATION.to_owned(),
                    note: Some(crate::events::note(message)),
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
        let policies = self
            .ctx
            .trust
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .policy_statuses();
        for (name, current) in policies {
            let (count, listed) = self.violations.report(&name);
            counts.insert(name.clone(), i64::from(count));
            if !differs(current.as_ref(), count, &listed) {
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
        self.ctx.leader_metrics.set_policy_violations(&counts);
        ok
    }
}

/// Judge every running pod every `interval`, and the affected ones soon after a change.
/// Returns only if the pod watch ends (it does not, normally).
pub async fn run(
    ctx: Arc<Context>,
    interval: Duration,
    report_format: policy_reports::ReportFormat,
) {
    let (pods, pod_writer) = reflector::store();
    let counted = Counted::open(&ctx.metrics, "pods");
    let pod_events = watcher(
        Api::<RunningPod>::all(ctx.client.clone()),
        crate::watcher::config().fields(ACTIVE_PODS),
    )
    .backoff(WatchBackoff::new())
    .modify(strip_pod)
    .reflect(pod_writer);
    let mut pod_events = pin!(pod_events);
    let mut changes = ctx.index.subscribe();
    let mut validator = Validator {
        ctx: ctx.clone(),
        pods,
        pods_synced: false,
        violations: Violations::default(),
        reports: policy_reports::Reports::default(),
        report_format,
    };
    let mut schedule = Schedule {
        at: None,
        full: true,
        pods: HashSet::new(),
    };
    let mut retry = Retry::up_to(Duration::from_secs(30));
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tracing::info!(?interval, "continuous validation started");
    loop {
        tokio::select! {
            event = pod_events.next() => match event {
                Some(Ok(watcher::Event::Apply(pod) | watcher::Event::Delete(pod))) => schedule.pod(&pod),
                Some(Ok(watcher::Event::InitDone)) => {
                    validator.pods_synced = true;
                    schedule.soon(true);
                }
                Some(Ok(_)) => {}
                Some(Err(error)) => tracing::warn!(%error, "pod watch failed; retrying"),
                None => break,
            },
            // Policies, namespaces or trust changed.
            Ok(()) = changes.changed() => schedule.soon(true),
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
                if validator.pass(full, pods).await {
                    retry.succeeded();
                } else {
                    // Try again: some pod could not be decided, or a status not written.
                    schedule.full = true;
                    schedule.at = Some(Instant::now() + retry.failed());
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
    drop(counted);
    tracing::warn!("continuous validation stopped: the pod watch ended");
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
