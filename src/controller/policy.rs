//! AttestationPolicy reconciler: `Ready` when every required attestor exists and is Ready and
//! every allowlist pattern is valid; the compiled allowlist; the allowlist ConfigMap.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt as _};

use super::{Context, Error, POLICY_RESYNC_INTERVAL, allowlist, bounded, status};
use crate::crd::conditions::{self, READY};
use crate::crd::{
    AttestationPolicy, AttestationPolicySpec, AttestationPolicyStatus, Attestor,
    RequiredAttestorAllowlist,
};
use crate::policy::{CompiledPolicy, attestor_name};

/// Ready reason: every required attestor is Ready and every pattern valid.
pub const REASON_READY: &str = "AttestorsReady";
/// Ready reason: a required attestor does not exist.
pub const REASON_ATTESTOR_NOT_FOUND: &str = "AttestorNotFound";
/// Ready reason: a required attestor exists but is not Ready.
pub const REASON_ATTESTOR_NOT_READY: &str = "AttestorNotReady";
/// Ready reason: an allowlist pattern is invalid.
pub const REASON_INVALID_PATTERN: &str = "InvalidPattern";
/// Ready reason: another part of the policy is invalid (e.g. its namespaceSelector).
pub const REASON_INVALID_POLICY: &str = "InvalidPolicy";

/// Every attestor any rule of the policy requires (`projects/P/attestors/NAME` means `NAME`).
pub fn required_attestors(spec: &AttestationPolicySpec) -> BTreeSet<String> {
    std::iter::once(&spec.default_admission_rule)
        .chain(spec.kubernetes_namespace_admission_rules.values())
        .chain(spec.kubernetes_service_account_admission_rules.values())
        .flat_map(|rule| rule.require_attestations_by.iter())
        .map(|written| attestor_name(written).to_owned())
        .collect()
}

/// What the policy reconciler found out about one required attestor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttestorState {
    /// No Attestor of that name.
    Missing,
    /// It exists but is not Ready (reason of its Ready condition, or why it cannot be read).
    NotReady(String),
    /// It is Ready.
    Ready,
}

/// The state of an attestor object as the policy sees it.
pub fn attestor_state(object: Option<&DeserializeGuard<Attestor>>) -> AttestorState {
    let Some(object) = object else {
        return AttestorState::Missing;
    };
    let Ok(attestor) = &object.0 else {
        return AttestorState::NotReady("InvalidObject".to_owned());
    };
    let ready = attestor.status.as_ref().and_then(|s| {
        let c = conditions::find(&s.conditions, READY)?;
        // A Ready condition about an older spec says nothing about this one.
        (c.observed_generation == attestor.metadata.generation).then_some(c)
    });
    match ready {
        Some(c) if c.status == conditions::TRUE => AttestorState::Ready,
        Some(c) => AttestorState::NotReady(c.reason.clone()),
        None => AttestorState::NotReady("NotYetReconciled".to_owned()),
    }
}

/// The allowlist a policy compiles to, and what is wrong with the policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompiledAllowlist {
    /// Valid patterns, then the system images when enabled.
    pub patterns: Vec<String>,
    /// Invalid patterns, each with the reason.
    pub invalid: Vec<String>,
    /// Other problems of the policy (it still applies, made safe).
    pub problems: Vec<String>,
}

/// Compile a policy with the policy engine, as the webhook does.
pub fn compile_allowlist(name: &str, spec: &AttestationPolicySpec) -> CompiledAllowlist {
    let compiled = CompiledPolicy::compile(name, spec);
    CompiledAllowlist {
        patterns: compiled.allowlist().to_vec(),
        invalid: compiled
            .invalid_patterns()
            .iter()
            .map(ToString::to_string)
            .collect(),
        problems: compiled
            .problems()
            .iter()
            .map(ToString::to_string)
            .collect(),
    }
}

/// The status a policy should have. `Ready` keeps its `lastTransitionTime` from `current`
/// unless it flips; the violation fields (written by continuous validation) are left out.
pub fn build_status(
    attestors: &BTreeMap<String, AttestorState>,
    allowlist: &CompiledAllowlist,
    digests: &BTreeMap<String, BTreeSet<String>>,
    generation: Option<i64>,
    current: Option<&AttestationPolicyStatus>,
    now: jiff::Timestamp,
) -> AttestationPolicyStatus {
    let missing: Vec<&str> = attestors
        .iter()
        .filter(|(_, s)| **s == AttestorState::Missing)
        .map(|(n, _)| n.as_str())
        .collect();
    let unready: Vec<String> = attestors
        .iter()
        .filter_map(|(n, s)| match s {
            AttestorState::NotReady(reason) => Some(format!("{n} ({reason})")),
            _ => None,
        })
        .collect();
    let mut problems = Vec::new();
    if !missing.is_empty() {
        problems.push(format!("Attestor not found: {}", missing.join(", ")));
    }
    if !unready.is_empty() {
        problems.push(format!("Attestor not Ready: {}", unready.join(", ")));
    }
    if !allowlist.invalid.is_empty() {
        problems.push(format!(
            "invalid admissionWhitelistPatterns: {}",
            allowlist.invalid.join("; ")
        ));
    }
    problems.extend(allowlist.problems.iter().cloned());
    let reason = if !missing.is_empty() {
        REASON_ATTESTOR_NOT_FOUND
    } else if !unready.is_empty() {
        REASON_ATTESTOR_NOT_READY
    } else if !allowlist.invalid.is_empty() {
        REASON_INVALID_PATTERN
    } else if !allowlist.problems.is_empty() {
        REASON_INVALID_POLICY
    } else {
        REASON_READY
    };
    let ready = if problems.is_empty() {
        let message = if attestors.is_empty() {
            "the policy requires no attestor".to_owned()
        } else {
            format!(
                "every required attestor is Ready: {}",
                attestors.keys().cloned().collect::<Vec<_>>().join(", ")
            )
        };
        conditions::new(READY, true, reason, message, generation, now)
    } else {
        conditions::new(READY, false, reason, problems.join("; "), generation, now)
    };
    let mut list = current.map(|s| s.conditions.clone()).unwrap_or_default();
    list.retain(|c| c.type_ == READY);
    conditions::set(&mut list, ready);
    AttestationPolicyStatus {
        observed_generation: generation,
        conditions: list,
        allowlist: allowlist.patterns.clone(),
        invalid_patterns: allowlist.invalid.clone(),
        required_attestors: digests
            .iter()
            .map(|(attestor, d)| RequiredAttestorAllowlist {
                attestor: attestor.clone(),
                verified_digests: i32::try_from(d.len()).unwrap_or(i32::MAX),
            })
            .collect(),
        violation_count: None,
        violations: Vec::new(),
    }
}

/// True when `new` says something `current` does not, in the fields this reconciler owns.
pub fn differs(current: Option<&AttestationPolicyStatus>, new: &AttestationPolicyStatus) -> bool {
    current.is_none_or(|c| {
        c.observed_generation != new.observed_generation
            || c.allowlist != new.allowlist
            || c.invalid_patterns != new.invalid_patterns
            || c.required_attestors != new.required_attestors
            || !conditions::same(
                &c.conditions
                    .iter()
                    .filter(|x| x.type_ == READY)
                    .cloned()
                    .collect::<Vec<_>>(),
                &new.conditions,
            )
    })
}

/// The status fields this reconciler applies (so fields of other writers stay theirs).
fn owned_fields(status: &AttestationPolicyStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("violationCount");
        fields.remove("violations");
    }
    value
}

/// Reconcile one AttestationPolicy.
pub async fn reconcile(
    object: Arc<DeserializeGuard<AttestationPolicy>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let policy = match &object.0 {
        Ok(policy) => policy,
        Err(_) => {
            ctx.report_invalid(&*object).await;
            return Ok(Action::await_change());
        }
    };
    let name = policy.name_any();
    let required = required_attestors(&policy.spec);
    let attestor_api = Api::<DeserializeGuard<Attestor>>::all(ctx.client.clone());
    let mut attestors = BTreeMap::new();
    for attestor in &required {
        let object = bounded(attestor_api.get_opt(attestor)).await?;
        attestors.insert(attestor.clone(), attestor_state(object.as_ref()));
    }
    let compiled = compile_allowlist(&name, &policy.spec);
    let store = ctx.attestations.state();
    let digests = allowlist::verified_digests(store.iter().map(|a| &**a), &required);
    let now = super::now();
    let status = build_status(
        &attestors,
        &compiled,
        &digests,
        policy.metadata.generation,
        policy.status.as_ref(),
        now,
    );
    if differs(policy.status.as_ref(), &status) {
        let api = Api::<DeserializeGuard<AttestationPolicy>>::all(ctx.client.clone());
        status::apply(&api, &name, &owned_fields(&status)).await?;
        tracing::info!(
            policy = %name,
            ready = conditions::is_true(&status.conditions, READY),
            "policy status updated"
        );
    }
    let config_map = allowlist::config_map(
        &ctx.settings.namespace,
        policy,
        allowlist::data(&compiled.patterns, &digests),
    );
    if allowlist::apply(&ctx, &config_map).await? {
        tracing::info!(policy = %name, config_map = config_map.name_any(), "allowlist updated");
    }
    ctx.backoff.reset(&super::backoff_key(&*object));
    Ok(Action::requeue(POLICY_RESYNC_INTERVAL))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        AdmissionRule, AdmissionWhitelistPattern, AttestorSpec, AttestorStatus, EvaluationMode,
    };

    fn rule(by: &[&str]) -> AdmissionRule {
        AdmissionRule {
            evaluation_mode: EvaluationMode::RequireAttestation,
            require_attestations_by: by.iter().map(|s| (*s).to_owned()).collect(),
            ..AdmissionRule::default()
        }
    }

    fn spec() -> AttestationPolicySpec {
        AttestationPolicySpec {
            default_admission_rule: rule(&["projects/p/attestors/build"]),
            kubernetes_namespace_admission_rules: BTreeMap::from([(
                "prod".into(),
                rule(&["qa", "build"]),
            )]),
            kubernetes_service_account_admission_rules: BTreeMap::from([(
                "prod:deployer".into(),
                rule(&["release"]),
            )]),
            admission_whitelist_patterns: vec![AdmissionWhitelistPattern {
                name_pattern: "gcr.io/google_containers/*".into(),
            }],
            ..AttestationPolicySpec::default()
        }
    }

    fn now() -> jiff::Timestamp {
        "2026-01-01T00:00:00Z".parse().unwrap()
    }

    #[test]
    fn required_attestors_from_every_rule_by_short_name() {
        assert_eq!(attestor_name("projects/p/attestors/build"), "build");
        assert_eq!(attestor_name("build"), "build");
        let got: Vec<String> = required_attestors(&spec()).into_iter().collect();
        assert_eq!(got, ["build", "qa", "release"]);
    }

    fn attestor(ready: Option<bool>, generation: i64, observed: i64) -> DeserializeGuard<Attestor> {
        let mut a = Attestor::new("a", AttestorSpec::default());
        a.metadata.generation = Some(generation);
        a.status = ready.map(|r| AttestorStatus {
            conditions: vec![conditions::new(
                READY,
                r,
                if r { "KeysReady" } else { "NoUsableKey" },
                "m",
                Some(observed),
                now(),
            )],
            ..AttestorStatus::default()
        });
        DeserializeGuard(Ok(a))
    }

    #[test]
    fn attestor_state_reads_ready_of_the_current_generation() {
        assert_eq!(attestor_state(None), AttestorState::Missing);
        assert_eq!(
            attestor_state(Some(&attestor(Some(true), 2, 2))),
            AttestorState::Ready
        );
        assert_eq!(
            attestor_state(Some(&attestor(Some(false), 2, 2))),
            AttestorState::NotReady("NoUsableKey".into())
        );
        assert_eq!(
            attestor_state(Some(&attestor(Some(true), 3, 2))),
            AttestorState::NotReady("NotYetReconciled".into())
        );
        assert_eq!(
            attestor_state(Some(&attestor(None, 1, 1))),
            AttestorState::NotReady("NotYetReconciled".into())
        );
    }

    #[test]
    fn ready_only_when_every_attestor_is_ready() {
        let compiled = compile_allowlist("p", &spec());
        let digests =
            BTreeMap::from([("build".to_owned(), BTreeSet::from(["sha256:aa".to_owned()]))]);
        let all_ready = BTreeMap::from([
            ("build".to_owned(), AttestorState::Ready),
            ("qa".to_owned(), AttestorState::Ready),
        ]);
        let s = build_status(&all_ready, &compiled, &digests, Some(1), None, now());
        let c = conditions::find(&s.conditions, READY).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", REASON_READY)
        );
        assert_eq!(s.allowlist, ["gcr.io/google_containers/*"]);
        let system = compile_allowlist(
            "p",
            &AttestationPolicySpec {
                global_policy_evaluation_mode: Some(crate::crd::GlobalPolicyEvaluationMode::Enable),
                ..spec()
            },
        );
        assert!(
            system.patterns.len() > 1,
            "system images are listed when enabled"
        );
        assert_eq!(s.required_attestors[0].verified_digests, 1);

        let broken = BTreeMap::from([
            ("build".to_owned(), AttestorState::Missing),
            (
                "qa".to_owned(),
                AttestorState::NotReady("NoUsableKey".into()),
            ),
            ("release".to_owned(), AttestorState::Ready),
        ]);
        let s2 = build_status(&broken, &compiled, &digests, Some(1), Some(&s), now());
        let c = conditions::find(&s2.conditions, READY).unwrap();
        assert_eq!(c.status, "False");
        assert_eq!(c.reason, REASON_ATTESTOR_NOT_FOUND);
        assert!(
            c.message.contains("Attestor not found: build"),
            "{}",
            c.message
        );
        assert!(
            c.message.contains("Attestor not Ready: qa (NoUsableKey)"),
            "{}",
            c.message
        );
        assert!(!c.message.contains("release"));
        assert!(differs(Some(&s), &s2));
        assert!(!differs(
            Some(&s2),
            &build_status(&broken, &compiled, &digests, Some(1), Some(&s2), now())
        ));
    }

    #[test]
    fn invalid_patterns_make_it_unready_and_are_named() {
        let compiled = compile_allowlist(
            "p",
            &AttestationPolicySpec {
                admission_whitelist_patterns: vec![AdmissionWhitelistPattern {
                    name_pattern: "*/x".into(),
                }],
                default_admission_rule: AdmissionRule {
                    evaluation_mode: EvaluationMode::AlwaysAllow,
                    ..AdmissionRule::default()
                },
                ..AttestationPolicySpec::default()
            },
        );
        let s = build_status(
            &BTreeMap::new(),
            &compiled,
            &BTreeMap::new(),
            Some(1),
            None,
            now(),
        );
        let c = conditions::find(&s.conditions, READY).unwrap();
        assert_eq!(c.reason, REASON_INVALID_PATTERN);
        assert!(c.message.contains("*/x"));
        assert_eq!(s.invalid_patterns.len(), 1);
    }

    #[test]
    fn violation_fields_are_not_applied() {
        let s = build_status(
            &BTreeMap::new(),
            &CompiledAllowlist::default(),
            &BTreeMap::new(),
            Some(1),
            None,
            now(),
        );
        let fields = owned_fields(&s);
        assert!(fields.get("violationCount").is_none());
        assert!(fields.get("violations").is_none());
        assert_eq!(fields["conditions"][0]["type"], "Ready");
    }
}
