//! The status of an AttestationPolicy: `Ready` when every required attestor exists and has a
//! usable key and every allowlist pattern is valid; the compiled allowlist; how many digests
//! each required attestor vouches for.

use std::collections::BTreeMap;

use super::attestor;
use crate::crd::conditions::{self, READY};
use crate::crd::{AttestationPolicyStatus, RequiredAttestorAllowlist};
use crate::policy::CompiledPolicy;
use crate::verify::AttestorKeys;

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

/// What the policy's status says of one required attestor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttestorState {
    /// No Attestor of that name (or it cannot be read).
    Missing,
    /// It exists but is not Ready (the reason its own Ready condition gives).
    NotReady(String),
    /// It is Ready.
    Ready,
}

/// The state of a required attestor, from its keys as the trust pipeline parsed them (never
/// from its status).
pub fn attestor_state(keys: Option<&AttestorKeys>, now: jiff::Timestamp) -> AttestorState {
    let Some(keys) = keys else {
        return AttestorState::Missing;
    };
    let status = attestor::build_status(&attestor::key_reports(keys, now), None, None, None, now);
    match conditions::find(&status.conditions, READY) {
        Some(c) if c.status == conditions::TRUE => AttestorState::Ready,
        Some(c) => AttestorState::NotReady(c.reason.clone()),
        None => AttestorState::NotReady("Unknown".to_owned()),
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

/// What a compiled policy says of its allowlist and problems.
pub fn compiled_allowlist(compiled: &CompiledPolicy) -> CompiledAllowlist {
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
            .chain(compiled.unreadable_reason().map(|e| {
                format!("the policy cannot be read ({e}); it denies every image until fixed")
            }))
            .collect(),
    }
}

/// The status a policy should have. `Ready` keeps its `lastTransitionTime` from `current`
/// unless it flips; the violation fields (written by continuous validation) are left out.
pub fn build_status(
    attestors: &BTreeMap<String, AttestorState>,
    allowlist: &CompiledAllowlist,
    digests: &BTreeMap<String, usize>,
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
            .map(|(attestor, count)| RequiredAttestorAllowlist {
                attestor: attestor.clone(),
                verified_digests: i32::try_from(*count).unwrap_or(i32::MAX),
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

/// The status fields the policy writer applies (so continuous validation's stay its own).
pub fn owned_fields(status: &AttestationPolicyStatus) -> serde_json::Value {
    let mut value = serde_json::to_value(status).unwrap_or_default();
    if let Some(fields) = value.as_object_mut() {
        fields.remove("violationCount");
        fields.remove("violations");
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        AdmissionRule, AdmissionWhitelistPattern, AttestationPolicySpec, AttestorPublicKey,
        AttestorSpec, EvaluationMode, PkixPublicKey,
    };

    fn compile_allowlist(name: &str, spec: &AttestationPolicySpec) -> CompiledAllowlist {
        compiled_allowlist(&CompiledPolicy::compile(name, spec))
    }

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
        let got: Vec<String> = CompiledPolicy::compile("p", &spec())
            .required_attestors()
            .iter()
            .cloned()
            .collect();
        assert_eq!(got, ["build", "qa", "release"]);
    }

    #[test]
    fn attestor_state_comes_from_its_keys() {
        assert_eq!(attestor_state(None, now()), AttestorState::Missing);
        let no_keys = AttestorKeys::load("a", &AttestorSpec::default());
        assert_eq!(
            attestor_state(Some(&no_keys), now()),
            AttestorState::NotReady("NoUsableKey".into())
        );
        let broken = AttestorKeys::load(
            "a",
            &AttestorSpec {
                public_keys: vec![AttestorPublicKey {
                    pkix_public_key: Some(PkixPublicKey {
                        public_key_pem: "not a key".into(),
                        signature_algorithm: crate::crypto::SignatureAlgorithm::Ed25519,
                    }),
                    ..AttestorPublicKey::default()
                }],
                ..AttestorSpec::default()
            },
        );
        assert_eq!(
            attestor_state(Some(&broken), now()),
            AttestorState::NotReady("InvalidKey".into())
        );
        let pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).unwrap();
        let good = AttestorKeys::load(
            "a",
            &AttestorSpec {
                public_keys: vec![AttestorPublicKey {
                    pkix_public_key: Some(PkixPublicKey {
                        public_key_pem: pair.public_key_pem(),
                        signature_algorithm: crate::crypto::SignatureAlgorithm::Ed25519,
                    }),
                    ..AttestorPublicKey::default()
                }],
                ..AttestorSpec::default()
            },
        );
        assert_eq!(attestor_state(Some(&good), now()), AttestorState::Ready);
    }

    #[test]
    fn ready_only_when_every_attestor_is_ready() {
        let compiled = compile_allowlist("p", &spec());
        let digests = BTreeMap::from([("build".to_owned(), 1)]);
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
