//! `AttestationPolicy`: which images may run where. Mirrors Binary Authorization's `Policy`.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, LabelSelector};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which images may run in the namespaces a policy governs.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "binauthz.dev",
    version = "v1alpha1",
    kind = "AttestationPolicy",
    status = "AttestationPolicyStatus",
    category = "binauthz",
    shortname = "attpol",
    doc = "A policy: which images may run in the namespaces it governs.",
    printcolumn(
        name = "Default",
        type_ = "string",
        json_path = ".spec.defaultAdmissionRule.evaluationMode"
    ),
    printcolumn(
        name = "Enforcement",
        type_ = "string",
        json_path = ".spec.defaultAdmissionRule.enforcementMode"
    ),
    printcolumn(
        name = "Ready",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].status"
    ),
    printcolumn(
        name = "Violations",
        type_ = "integer",
        json_path = ".status.violationCount"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Ready\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct AttestationPolicySpec {
    /// Free-form description of the policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = super::limits::DESCRIPTION))]
    pub description: Option<String>,
    /// `ENABLE` exempts a documented list of system images (see the README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global_policy_evaluation_mode: Option<GlobalPolicyEvaluationMode>,
    /// Images matching any pattern are always admitted (at most 1024 patterns).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = super::limits::PATTERNS))]
    pub admission_whitelist_patterns: Vec<AdmissionWhitelistPattern>,
    /// Rule used when no namespace or service-account rule applies.
    pub default_admission_rule: AdmissionRule,
    /// Rules by namespace name (at most 4096); they replace the default rule in that
    /// namespace.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = super::limits::RULES))]
    pub kubernetes_namespace_admission_rules: BTreeMap<String, AdmissionRule>,
    /// Rules by `namespace:serviceaccount` (at most 4096); they win over namespace rules.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("maxProperties" = super::limits::RULES))]
    #[x_kube(validation = kube::core::Rule::new(
        "self.all(k, k.matches('^[a-z0-9]([-a-z0-9]*[a-z0-9])?:[a-z0-9]([-a-z0-9.]*[a-z0-9])?$'))"
    ).message("kubernetesServiceAccountAdmissionRules keys must be namespace:serviceaccount"))]
    pub kubernetes_service_account_admission_rules: BTreeMap<String, AdmissionRule>,
    /// Namespaces the policy governs; empty or absent means every namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_selector: Option<LabelSelector>,
    /// Whether the breakglass label (or annotation) overrides this policy: `Allow` (the
    /// default, as Google Binary Authorization) or `Deny` (its denials stand; no Google
    /// equivalent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub breakglass: Option<Breakglass>,
}

/// Whether a pod that breaks glass is admitted despite the policy.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum Breakglass {
    /// Breakglass admits the pod (audited, with an Event).
    #[default]
    Allow,
    /// Breakglass is refused: the policy's denials stand.
    Deny,
}

/// An allowlist entry, as Binary Authorization's `AdmissionWhitelistPattern`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AdmissionWhitelistPattern {
    /// Image name pattern: exact, or ending in `*` (within a path segment) or `**` (across
    /// segments), wildcards only after the registry.
    #[schemars(length(max = super::limits::ARTIFACT_URL))]
    #[x_kube(validation = kube::core::Rule::new(NAME_PATTERN_RULE).message(
        "a namePattern is an image name, or one ending in * (one path segment) or ** (any depth) after registry/, without whitespace (e.g. gcr.io/my-project/*)"
    ))]
    pub name_pattern: String,
}

/// The CEL form of the allowlist pattern rules (`policy::allowlist`, which also holds patterns
/// stored before this rule): not empty, no white space (Unicode's, as Rust's
/// `char::is_whitespace`), wildcards only at the end, at most two, after a non-empty
/// `registry/`. A test runs both on the same patterns.
pub const NAME_PATTERN_RULE: &str = r"self.matches('^[^*\\s\\x0B\\x{85}\\p{Z}]+$') || self.matches('^[^*/\\s\\x0B\\x{85}\\p{Z}]+/[^*\\s\\x0B\\x{85}\\p{Z}]*[*]{1,2}$')";

/// How images are judged under one rule, as Binary Authorization's `AdmissionRule`.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[x_kube(validation = kube::core::Rule::new(
    "self.evaluationMode == 'REQUIRE_ATTESTATION' ? (has(self.requireAttestationsBy) && size(self.requireAttestationsBy) > 0) : (!has(self.requireAttestationsBy) || size(self.requireAttestationsBy) == 0)"
).message("requireAttestationsBy must list attestors exactly when evaluationMode is REQUIRE_ATTESTATION"))]
#[serde(rename_all = "camelCase")]
pub struct AdmissionRule {
    /// `ALWAYS_ALLOW`, `REQUIRE_ATTESTATION` or `ALWAYS_DENY`.
    pub evaluation_mode: EvaluationMode,
    /// `ENFORCED_BLOCK_AND_AUDIT_LOG` (default) or `DRYRUN_AUDIT_LOG_ONLY`.
    #[serde(default)]
    pub enforcement_mode: EnforcementMode,
    /// Attestors that must all have vouched for the image's digest (names of Attestors;
    /// `projects/P/attestors/NAME` is accepted and means `NAME`); at most 64.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = super::limits::REQUIRED_ATTESTORS), inner(length(max = super::limits::ARTIFACT_URL)))]
    pub require_attestations_by: Vec<String>,
}

/// Evaluation mode of a rule.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EvaluationMode {
    /// Admit every image.
    AlwaysAllow,
    /// Admit an image only when every required attestor vouched for its digest.
    #[default]
    RequireAttestation,
    /// Deny every image.
    AlwaysDeny,
}

/// Enforcement mode of a rule.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EnforcementMode {
    /// Deny what the rule refuses, and audit it.
    #[default]
    EnforcedBlockAndAuditLog,
    /// Admit, but warn and audit what would have been denied.
    DryrunAuditLogOnly,
}

/// Whether the documented system images are exempt.
#[derive(JsonSchema, Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum GlobalPolicyEvaluationMode {
    /// Exempt the system images.
    Enable,
    /// Judge system images like any other.
    #[default]
    Disable,
}

/// What the controller found out about a policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct AttestationPolicyStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`: every referenced attestor exists and is Ready, every pattern is valid.
    #[serde(default)]
    #[schemars(schema_with = "crate::crd::conditions::schema")]
    pub conditions: Vec<Condition>,
    /// The compiled allowlist: the valid patterns, plus the system images when enabled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allowlist: Vec<String>,
    /// Patterns that are not valid, each with the reason.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub invalid_patterns: Vec<String>,
    /// Digests each required attestor has verified attestations for.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub required_attestors: Vec<RequiredAttestorAllowlist>,
    /// Running pods that violate the policy (continuous validation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub violation_count: Option<i32>,
    /// Some of those pods (bounded).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub violations: Vec<PodViolation>,
}

/// The verified digests of one attestor the policy requires.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct RequiredAttestorAllowlist {
    /// Attestor name.
    pub attestor: String,
    /// Number of digests it vouches for with a verified attestation.
    pub verified_digests: i32,
}

/// A running pod that violates the policy.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Eq, Default)]
#[serde(rename_all = "camelCase")]
pub struct PodViolation {
    /// Namespace of the pod.
    pub namespace: String,
    /// Name of the pod.
    pub name: String,
    /// Why, one message per image.
    pub messages: Vec<String>,
}
