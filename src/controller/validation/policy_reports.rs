//! Continuous validation's results as policy reports, the format Policy Reporter, Kyverno and
//! Kubewarden read: one report per namespace (OpenReports `openreports.io/v1alpha1` `Report`,
//! or the legacy `wgpolicyk8s.io/v1alpha2` `PolicyReport`), one result per running pod and
//! governing policy: `pass`, or `fail` with the webhook's message. Written by the leader when a
//! namespace's results change, deleted when its last judged pod goes; off while the CRD is not
//! installed (said once in the log).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams,
};
use serde_json::{Value, json};

use super::report::PodKey;
use crate::crd::FIELD_MANAGER;
use crate::policy::Decision;

/// Name of each namespace's report.
pub const REPORT_NAME: &str = "binauthz";
/// Label of every report binauthz writes.
pub const MANAGED_BY: (&str, &str) = ("app.kubernetes.io/managed-by", "binauthz");
/// `source` of reports and results.
pub const SOURCE: &str = "binauthz";
/// Results listed in one report (the summary counts all): a report is one object, and etcd
/// refuses objects over 1.5 MiB.
pub const MAX_RESULTS: usize = 1000;

/// Which report format, if any (`binauthz run --policy-reports`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    /// OpenReports `openreports.io/v1alpha1` `Report`.
    #[default]
    Openreports,
    /// The legacy `wgpolicyk8s.io/v1alpha2` `PolicyReport`.
    Wgpolicyk8s,
    /// No reports.
    Off,
}

impl ReportFormat {
    fn resource(self) -> Option<ApiResource> {
        let (group, version, kind, plural) = match self {
            Self::Openreports => ("openreports.io", "v1alpha1", "Report", "reports"),
            Self::Wgpolicyk8s => (
                "wgpolicyk8s.io",
                "v1alpha2",
                "PolicyReport",
                "policyreports",
            ),
            Self::Off => return None,
        };
        Some(ApiResource::from_gvk_with_plural(
            &GroupVersionKind::gvk(group, version, kind),
            plural,
        ))
    }
}

/// One policy's verdict on one pod.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verdict {
    /// `pass` or `fail`.
    pub result: &'static str,
    /// The rule that refused (empty for a pass).
    pub rule: String,
    /// What the webhook says.
    pub message: String,
    /// `ENFORCED_BLOCK_AND_AUDIT_LOG` or `DRYRUN_AUDIT_LOG_ONLY` for a failure.
    pub enforcement: Option<&'static str>,
    /// Whether the pod breaks glass.
    pub breakglass: bool,
}

/// Every governing policy's verdict on one pod, from its decision.
pub fn verdicts(decision: &Decision) -> BTreeMap<Arc<str>, Verdict> {
    let mut out = BTreeMap::new();
    for policy in &decision.policies {
        let refusals: Vec<_> = decision
            .denials
            .iter()
            .chain(&decision.dry_run)
            .filter(|v| &v.policy == policy)
            .collect();
        let verdict = match refusals.first() {
            None => Verdict {
                result: "pass",
                rule: String::new(),
                message: "every image is allowed or attested".to_owned(),
                enforcement: None,
                breakglass: decision.breakglass,
            },
            Some(first) => Verdict {
                result: "fail",
                rule: first.rule.to_string(),
                message: refusals
                    .iter()
                    .map(|v| v.message())
                    .collect::<Vec<_>>()
                    .join(" "),
                enforcement: Some(match first.enforcement_mode {
                    crate::crd::EnforcementMode::EnforcedBlockAndAuditLog => {
                        "ENFORCED_BLOCK_AND_AUDIT_LOG"
                    }
                    crate::crd::EnforcementMode::DryrunAuditLogOnly => "DRYRUN_AUDIT_LOG_ONLY",
                }),
                breakglass: decision.breakglass,
            },
        };
        out.insert(policy.clone(), verdict);
    }
    out
}

/// A pod's verdicts, and since when each has held.
#[derive(Clone, Debug, Default)]
struct PodResults {
    uid: Option<String>,
    verdicts: BTreeMap<Arc<str>, (Verdict, jiff::Timestamp)>,
}

/// The results of every judged pod, and the reports as last written.
#[derive(Debug, Default)]
pub struct Reports {
    pods: BTreeMap<PodKey, PodResults>,
    written: BTreeMap<String, Value>,
    /// Whether the report CRD is installed (None: not checked yet).
    available: Option<bool>,
    cleaned: bool,
}

impl Reports {
    /// Record what a pod's decision says now (a result keeps its time while it holds).
    pub fn record(
        &mut self,
        key: PodKey,
        uid: Option<String>,
        decision: &Decision,
        now: jiff::Timestamp,
    ) {
        let entry = self.pods.entry(key).or_default();
        if entry.uid != uid {
            entry.verdicts.clear();
            entry.uid = uid;
        }
        let fresh = verdicts(decision);
        entry
            .verdicts
            .retain(|policy, _| fresh.contains_key(policy));
        for (policy, verdict) in fresh {
            match entry.verdicts.get(&policy) {
                Some((held, _)) if *held == verdict => {}
                _ => {
                    entry.verdicts.insert(policy, (verdict, now));
                }
            }
        }
    }

    /// Forget a pod (gone, exempt, or no longer decided).
    pub fn forget(&mut self, key: &PodKey) {
        self.pods.remove(key);
    }

    /// Keep only these pods (after a full pass).
    pub fn retain(&mut self, present: &std::collections::HashSet<PodKey>) {
        self.pods.retain(|k, _| present.contains(k));
    }

    /// The report of each namespace with judged pods, as it should be now.
    pub fn build(&self, format: ReportFormat) -> BTreeMap<String, Value> {
        let Some(resource) = format.resource() else {
            return BTreeMap::new();
        };
        let mut by_namespace: BTreeMap<&str, Vec<(&PodKey, &PodResults)>> = BTreeMap::new();
        for (key, results) in &self.pods {
            if !results.verdicts.is_empty() {
                by_namespace
                    .entry(&key.namespace)
                    .or_default()
                    .push((key, results));
            }
        }
        by_namespace
            .into_iter()
            .map(|(namespace, pods)| (namespace.to_owned(), report(&resource, namespace, &pods)))
            .collect()
    }
}

fn report(resource: &ApiResource, namespace: &str, pods: &[(&PodKey, &PodResults)]) -> Value {
    let mut summary: BTreeMap<&str, u64> = ["pass", "fail", "warn", "error", "skip"]
        .into_iter()
        .map(|r| (r, 0))
        .collect();
    let mut results = Vec::new();
    for (key, pod) in pods {
        for (policy, (verdict, since)) in &pod.verdicts {
            *summary.entry(verdict.result).or_default() += 1;
            let mut resource = json!({"apiVersion": "v1", "kind": "Pod", "name": key.name, "namespace": key.namespace});
            if let Some(uid) = &pod.uid {
                resource["uid"] = json!(uid);
            }
            let mut result = json!({
                "source": SOURCE,
                "policy": policy.as_ref(),
                "result": verdict.result,
                "message": verdict.message,
                "category": "Binary Authorization",
                "scored": true,
                "resources": [resource],
                "timestamp": {"seconds": since.as_second(), "nanos": 0},
            });
            if !verdict.rule.is_empty() {
                result["rule"] = json!(verdict.rule);
                result["severity"] = json!("high");
            }
            let mut properties = serde_json::Map::new();
            if let Some(mode) = verdict.enforcement {
                properties.insert("enforcementMode".into(), json!(mode));
            }
            if verdict.breakglass {
                properties.insert("breakglass".into(), json!("true"));
            }
            if !properties.is_empty() {
                result["properties"] = Value::Object(properties);
            }
            results.push(result);
        }
    }
    // Failures first, so a truncated report still lists them.
    results.sort_by_key(|r| r["result"] != "fail");
    results.truncate(MAX_RESULTS);
    json!({
        "apiVersion": resource.api_version,
        "kind": resource.kind,
        "metadata": {
            "name": REPORT_NAME,
            "namespace": namespace,
            "labels": {MANAGED_BY.0: MANAGED_BY.1},
        },
        "source": SOURCE,
        "summary": summary,
        "results": results,
    })
}

/// Write the reports that changed, delete those of namespaces without judged pods. Returns
/// whether every write succeeded.
pub async fn write(reports: &mut Reports, client: &kube::Client, format: ReportFormat) -> bool {
    let Some(resource) = format.resource() else {
        return true;
    };
    if reports.available != Some(true) {
        let probe: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let available = probe.list(&ListParams::default().limit(1)).await.is_ok();
        if reports.available != Some(available) {
            if available {
                tracing::info!(kind = %resource.kind, group = %resource.group, "writing continuous validation results as policy reports");
            } else {
                tracing::info!(kind = %resource.kind, group = %resource.group, "the policy report CRD is not installed: no policy reports (install it to get them)");
            }
        }
        reports.available = Some(available);
        if !available {
            return true;
        }
    }
    let wanted = reports.build(format);
    let mut ok = true;
    let params = PatchParams::apply(FIELD_MANAGER).force();
    for (namespace, report) in &wanted {
        if reports.written.get(namespace) == Some(report) {
            continue;
        }
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
        match api.patch(REPORT_NAME, &params, &Patch::Apply(report)).await {
            Ok(_) => {
                reports.written.insert(namespace.clone(), report.clone());
            }
            Err(error) => {
                ok = false;
                if let kube::Error::Api(status) = &error
                    && status.code == 404
                {
                    // The CRD went away: check again next time.
                    reports.available = None;
                }
                tracing::warn!(%namespace, %error, "cannot write the policy report");
            }
        }
    }
    // Namespaces without judged pods: their report goes; at the first pass of this leader,
    // also those a previous one left.
    let mut stale: BTreeSet<String> = reports
        .written
        .keys()
        .filter(|n| !wanted.contains_key(*n))
        .cloned()
        .collect();
    if !reports.cleaned {
        let all: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        let selector = format!("{}={}", MANAGED_BY.0, MANAGED_BY.1);
        match all.list(&ListParams::default().labels(&selector)).await {
            Ok(list) => {
                stale.extend(
                    list.items
                        .iter()
                        .filter_map(|r| r.metadata.namespace.clone())
                        .filter(|n| !wanted.contains_key(n)),
                );
                reports.cleaned = true;
            }
            Err(error) => tracing::warn!(%error, "cannot list policy reports"),
        }
    }
    for namespace in stale {
        let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), &namespace, &resource);
        match api.delete(REPORT_NAME, &DeleteParams::default()).await {
            Ok(_) => {
                reports.written.remove(&namespace);
            }
            Err(kube::Error::Api(status)) if status.code == 404 => {
                reports.written.remove(&namespace);
            }
            Err(error) => {
                ok = false;
                tracing::warn!(%namespace, %error, "cannot delete the policy report");
            }
        }
    }
    ok
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{AttestorFailure, AttestorReason, Failure, ImageVerdict, RuleScope};

    fn decision(fail: bool) -> Decision {
        let policy: Arc<str> = "require-build".into();
        let denials = if fail {
            vec![ImageVerdict {
                policy: policy.clone(),
                image: "nginx".into(),
                uses: Vec::new(),
                rule: RuleScope::Default,
                enforcement_mode: crate::crd::EnforcementMode::EnforcedBlockAndAuditLog,
                failure: Failure::Attestors(vec![AttestorFailure {
                    attestor: "build".into(),
                    reason: AttestorReason::DigestRequired,
                }]),
            }]
        } else {
            Vec::new()
        };
        Decision {
            allowed: !fail,
            denials,
            policies: vec![policy],
            ..Decision::default()
        }
    }

    #[test]
    fn results_keep_their_time_and_both_formats_render() {
        let mut reports = Reports::default();
        let key = |name: &str| PodKey {
            namespace: "prod".into(),
            name: name.into(),
        };
        let t0: jiff::Timestamp = "2026-12-01T00:00:00Z".parse().unwrap();
        let t1: jiff::Timestamp = "2026-12-02T00:00:00Z".parse().unwrap();
        reports.record(key("a"), Some("uid-a".into()), &decision(false), t0);
        reports.record(key("b"), None, &decision(true), t0);
        let first = reports.build(ReportFormat::Openreports);
        // The same outcomes later: the same report (nothing to write).
        reports.record(key("a"), Some("uid-a".into()), &decision(false), t1);
        reports.record(key("b"), None, &decision(true), t1);
        assert_eq!(reports.build(ReportFormat::Openreports), first);
        let report = &first["prod"];
        assert_eq!(report["apiVersion"], "openreports.io/v1alpha1");
        assert_eq!(report["kind"], "Report");
        assert_eq!(report["summary"]["pass"], 1);
        assert_eq!(report["summary"]["fail"], 1);
        assert_eq!(report["results"][0]["result"], "fail", "failures first");
        assert_eq!(report["results"][0]["timestamp"]["seconds"], t0.as_second());
        let legacy = &reports.build(ReportFormat::Wgpolicyk8s)["prod"];
        assert_eq!(legacy["apiVersion"], "wgpolicyk8s.io/v1alpha2");
        assert_eq!(legacy["kind"], "PolicyReport");
        assert_eq!(legacy["results"], report["results"]);
        assert!(reports.build(ReportFormat::Off).is_empty());
        // A changed outcome gets a new time; a pod that goes leaves.
        reports.record(key("b"), None, &decision(false), t1);
        assert_eq!(
            reports.build(ReportFormat::Openreports)["prod"]["summary"]["pass"],
            2
        );
        reports.forget(&key("a"));
        reports.forget(&key("b"));
        assert!(reports.build(ReportFormat::Openreports).is_empty());
    }
}
