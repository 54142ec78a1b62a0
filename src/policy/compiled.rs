//! An `AttestationPolicySpec` compiled once into what evaluation needs.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::Arc;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::crd::{
    AdmissionRule, AttestationPolicySpec, Breakglass, EnforcementMode, EvaluationMode,
    GlobalPolicyEvaluationMode,
};

use super::allowlist::{Allowlist, InvalidPattern, Pattern, system_image_patterns};
use super::selector::NamespaceSelector;

/// Which rule of a policy applied.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum RuleScope {
    /// `defaultAdmissionRule`.
    Default,
    /// `kubernetesNamespaceAdmissionRules[namespace]`.
    Namespace(String),
    /// `kubernetesServiceAccountAdmissionRules["namespace:service_account"]`.
    ServiceAccount {
        /// Namespace of the service account.
        namespace: String,
        /// Name of the service account.
        service_account: String,
    },
}

impl fmt::Display for RuleScope {
    /// Google's wording: `default admission rule`, `namespace admission rule for NS`, ...
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Default => f.write_str("default admission rule"),
            Self::Namespace(ns) => write!(f, "namespace admission rule for {ns}"),
            Self::ServiceAccount {
                namespace,
                service_account,
            } => write!(
                f,
                "service account admission rule for {namespace}:{service_account}"
            ),
        }
    }
}

/// An attestor a rule requires.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequiredAttestor {
    /// As written in `requireAttestationsBy` (shown in messages, as Google does).
    pub written: String,
    /// The Attestor name: `NAME` for `projects/P/attestors/NAME`, else as written.
    pub name: String,
}

impl RequiredAttestor {
    fn new(written: &str) -> Self {
        Self {
            written: written.to_owned(),
            name: attestor_name(written).to_owned(),
        }
    }
}

/// `projects/P/attestors/NAME` means `NAME`; anything else is a name already.
pub fn attestor_name(written: &str) -> &str {
    let mut parts = written.split('/');
    match (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) {
        (Some("projects"), Some(p), Some("attestors"), Some(name), None)
            if !p.is_empty() && !name.is_empty() =>
        {
            name
        }
        _ => written,
    }
}

/// One rule, compiled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CompiledRule {
    /// Where the rule comes from.
    pub scope: RuleScope,
    /// How images are judged.
    pub evaluation_mode: EvaluationMode,
    /// Whether refusals deny or only warn.
    pub enforcement_mode: EnforcementMode,
    /// Attestors that must all vouch for the digest.
    pub attestors: Vec<RequiredAttestor>,
}

impl CompiledRule {
    fn new(scope: RuleScope, rule: &AdmissionRule) -> Self {
        Self {
            scope,
            evaluation_mode: rule.evaluation_mode,
            enforcement_mode: rule.enforcement_mode,
            attestors: rule
                .require_attestations_by
                .iter()
                .map(|a| RequiredAttestor::new(a))
                .collect(),
        }
    }
}

/// Something wrong in a policy other than an allowlist pattern; the policy still applies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PolicyProblem {
    /// A `REQUIRE_ATTESTATION` rule lists no attestor; it denies every image it judges.
    NoAttestors(RuleScope),
    /// A `kubernetesServiceAccountAdmissionRules` key is not `namespace:serviceaccount`; the
    /// rule is ignored.
    ServiceAccountKey(String),
    /// The `namespaceSelector` is invalid; the policy governs every namespace.
    NamespaceSelector(String),
}

impl fmt::Display for PolicyProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoAttestors(scope) => write!(
                f,
                "{scope}: REQUIRE_ATTESTATION needs at least one attestor in requireAttestationsBy; it denies every image until then"
            ),
            Self::ServiceAccountKey(key) => write!(
                f,
                "kubernetesServiceAccountAdmissionRules key {key:?} is not namespace:serviceaccount; the rule is ignored"
            ),
            Self::NamespaceSelector(reason) => {
                write!(
                    f,
                    "{reason}; the policy governs every namespace until fixed"
                )
            }
        }
    }
}

/// A policy ready to evaluate: patterns, rules and selector compiled once.
#[derive(Clone, Debug)]
pub struct CompiledPolicy {
    name: Arc<str>,
    selector: Option<LabelSelector>,
    namespace_selector: NamespaceSelector,
    allowlist: Allowlist,
    allowlist_patterns: Vec<String>,
    invalid_patterns: Vec<InvalidPattern>,
    default_rule: CompiledRule,
    namespace_rules: HashMap<String, CompiledRule>,
    service_account_rules: HashMap<String, HashMap<String, CompiledRule>>,
    required_attestors: BTreeSet<String>,
    problems: Vec<PolicyProblem>,
    breakglass: Breakglass,
    /// Why the policy could not be read (then it denies every image it judges).
    unreadable: Option<Arc<str>>,
}

/// Label the API server puts on every namespace, holding its name.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

impl CompiledPolicy {
    /// The stand-in for a policy that cannot be read (its object does not match the schema):
    /// it governs every namespace and denies every image, saying why, until it is fixed.
    pub fn unreadable(name: &str, error: &str) -> Self {
        let deny = AttestationPolicySpec {
            default_admission_rule: AdmissionRule {
                evaluation_mode: EvaluationMode::AlwaysDeny,
                ..AdmissionRule::default()
            },
            ..AttestationPolicySpec::default()
        };
        Self {
            unreadable: Some(error.into()),
            ..Self::compile(name, &deny)
        }
    }

    /// Why the policy could not be read, if it could not (it then denies every image).
    pub fn unreadable_reason(&self) -> Option<&str> {
        self.unreadable.as_deref()
    }

    /// Whether breakglass overrides this policy's denials.
    pub fn allows_breakglass(&self) -> bool {
        self.breakglass == Breakglass::Allow
    }

    /// Whether deciding if the policy governs a namespace needs its labels (a selector on
    /// labels other than the name label, which every namespace carries).
    pub fn needs_namespace_labels(&self) -> bool {
        self.namespace_selector
            .reads_other_than(NAMESPACE_NAME_LABEL)
    }
    /// Compile a policy; never fails: invalid parts are recorded (see
    /// [`CompiledPolicy::invalid_patterns`], [`CompiledPolicy::problems`]) and made safe.
    pub fn compile(name: &str, spec: &AttestationPolicySpec) -> Self {
        let mut allowlist = Allowlist::default();
        let mut allowlist_patterns = Vec::new();
        let mut invalid_patterns = Vec::new();
        for p in &spec.admission_whitelist_patterns {
            match Pattern::compile(&p.name_pattern) {
                Ok(pattern) => {
                    allowlist.push(pattern);
                    allowlist_patterns.push(p.name_pattern.clone());
                }
                Err(invalid) => invalid_patterns.push(invalid),
            }
        }
        if spec.global_policy_evaluation_mode == Some(GlobalPolicyEvaluationMode::Enable) {
            for p in system_image_patterns() {
                if let Ok(pattern) = Pattern::compile(&p) {
                    allowlist.push(pattern);
                    allowlist_patterns.push(p);
                }
            }
        }

        let mut problems = Vec::new();
        let (namespace_selector, selector_error) =
            NamespaceSelector::compile(spec.namespace_selector.as_ref());
        problems.extend(selector_error.map(PolicyProblem::NamespaceSelector));

        let default_rule = CompiledRule::new(RuleScope::Default, &spec.default_admission_rule);
        let namespace_rules: HashMap<String, CompiledRule> = spec
            .kubernetes_namespace_admission_rules
            .iter()
            .map(|(ns, rule)| {
                (
                    ns.clone(),
                    CompiledRule::new(RuleScope::Namespace(ns.clone()), rule),
                )
            })
            .collect();
        let mut service_account_rules: HashMap<String, HashMap<String, CompiledRule>> =
            HashMap::new();
        for (key, rule) in &spec.kubernetes_service_account_admission_rules {
            match key.split_once(':') {
                Some((ns, sa)) if !ns.is_empty() && !sa.is_empty() && !sa.contains(':') => {
                    let scope = RuleScope::ServiceAccount {
                        namespace: ns.to_owned(),
                        service_account: sa.to_owned(),
                    };
                    service_account_rules
                        .entry(ns.to_owned())
                        .or_default()
                        .insert(sa.to_owned(), CompiledRule::new(scope, rule));
                }
                _ => problems.push(PolicyProblem::ServiceAccountKey(key.clone())),
            }
        }

        let mut required_attestors = BTreeSet::new();
        let all_rules = std::iter::once(&default_rule)
            .chain(namespace_rules.values())
            .chain(service_account_rules.values().flat_map(HashMap::values));
        let mut empty_rules = Vec::new();
        for rule in all_rules {
            required_attestors.extend(rule.attestors.iter().map(|a| a.name.clone()));
            if rule.evaluation_mode == EvaluationMode::RequireAttestation
                && rule.attestors.is_empty()
            {
                empty_rules.push(rule.scope.clone());
            }
        }
        // Stable order for status, whatever the hash maps did.
        empty_rules.sort_by_key(|s| s.to_string());
        problems.extend(empty_rules.into_iter().map(PolicyProblem::NoAttestors));

        Self {
            name: name.into(),
            selector: spec.namespace_selector.clone(),
            namespace_selector,
            allowlist,
            allowlist_patterns,
            invalid_patterns,
            default_rule,
            namespace_rules,
            service_account_rules,
            required_attestors,
            problems,
            breakglass: spec.breakglass.unwrap_or_default(),
            unreadable: None,
        }
    }

    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn name_arc(&self) -> &Arc<str> {
        &self.name
    }

    /// The namespace selector as written (for the webhook configuration).
    pub fn namespace_selector(&self) -> Option<&LabelSelector> {
        self.selector.as_ref()
    }

    /// Whether the policy governs a namespace with these labels.
    pub fn governs(&self, namespace_labels: &BTreeMap<String, String>) -> bool {
        self.namespace_selector.matches(namespace_labels)
    }

    /// The effective allowlist: valid patterns, then the system images when enabled.
    pub fn allowlist(&self) -> &[String] {
        &self.allowlist_patterns
    }

    /// Patterns that were refused, with reasons (they are skipped).
    pub fn invalid_patterns(&self) -> &[InvalidPattern] {
        &self.invalid_patterns
    }

    /// Other problems found while compiling.
    pub fn problems(&self) -> &[PolicyProblem] {
        &self.problems
    }

    /// Every Attestor name any rule requires.
    pub fn required_attestors(&self) -> &BTreeSet<String> {
        &self.required_attestors
    }

    /// The rule for a pod in `namespace` running as `service_account`: service-account rule,
    /// else namespace rule, else the default.
    pub fn rule_for(&self, namespace: &str, service_account: &str) -> &CompiledRule {
        self.service_account_rules
            .get(namespace)
            .and_then(|by_sa| by_sa.get(service_account))
            .or_else(|| self.namespace_rules.get(namespace))
            .unwrap_or(&self.default_rule)
    }

    pub(crate) fn allowlist_matcher(&self) -> &Allowlist {
        &self.allowlist
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AdmissionWhitelistPattern;

    fn rule(mode: EvaluationMode, attestors: &[&str]) -> AdmissionRule {
        AdmissionRule {
            evaluation_mode: mode,
            enforcement_mode: EnforcementMode::EnforcedBlockAndAuditLog,
            require_attestations_by: attestors.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn attestor_resource_names_mean_the_name() {
        assert_eq!(attestor_name("projects/p/attestors/build"), "build");
        assert_eq!(attestor_name("build"), "build");
        assert_eq!(
            attestor_name("projects//attestors/build"),
            "projects//attestors/build"
        );
        assert_eq!(
            attestor_name("projects/p/attestors/a/b"),
            "projects/p/attestors/a/b"
        );
        assert_eq!(attestor_name("projects/p/notes/x"), "projects/p/notes/x");
    }

    #[test]
    fn compile_reports_what_status_needs() {
        let spec = AttestationPolicySpec {
            global_policy_evaluation_mode: Some(GlobalPolicyEvaluationMode::Enable),
            admission_whitelist_patterns: ["gcr.io/p/**", "gcr.io/n*x", "*"]
                .iter()
                .map(|p| AdmissionWhitelistPattern {
                    name_pattern: p.to_string(),
                })
                .collect(),
            default_admission_rule: rule(
                EvaluationMode::RequireAttestation,
                &["projects/p/attestors/build"],
            ),
            kubernetes_namespace_admission_rules: [
                (
                    "prod".to_string(),
                    rule(EvaluationMode::RequireAttestation, &["qa", "build"]),
                ),
                (
                    "empty".to_string(),
                    rule(EvaluationMode::RequireAttestation, &[]),
                ),
            ]
            .into(),
            kubernetes_service_account_admission_rules: [
                (
                    "prod:ci".to_string(),
                    rule(EvaluationMode::RequireAttestation, &["sec"]),
                ),
                ("bad".to_string(), rule(EvaluationMode::AlwaysAllow, &[])),
            ]
            .into(),
            ..Default::default()
        };
        let p = CompiledPolicy::compile("pol", &spec);
        assert_eq!(p.name(), "pol");
        let mut want = vec!["gcr.io/p/**".to_string()];
        want.extend(system_image_patterns());
        assert_eq!(p.allowlist(), want.as_slice());
        let invalid: Vec<String> = p.invalid_patterns().iter().map(|i| i.to_string()).collect();
        assert_eq!(
            invalid,
            vec![
                "\"gcr.io/n*x\": wildcards are only allowed at the end of the pattern (e.g. gcr.io/my-project/nginx*)",
                "\"*\": wildcards are only allowed after the registry/ part (e.g. gcr.io/my-project/*)",
            ]
        );
        assert_eq!(
            p.required_attestors().iter().collect::<Vec<_>>(),
            vec!["build", "qa", "sec"]
        );
        let problems: Vec<String> = p.problems().iter().map(|x| x.to_string()).collect();
        assert_eq!(
            problems,
            vec![
                "kubernetesServiceAccountAdmissionRules key \"bad\" is not namespace:serviceaccount; the rule is ignored",
                "namespace admission rule for empty: REQUIRE_ATTESTATION needs at least one attestor in requireAttestationsBy; it denies every image until then",
            ]
        );
        // Without ENABLE, only the user's patterns.
        let spec = AttestationPolicySpec {
            global_policy_evaluation_mode: Some(GlobalPolicyEvaluationMode::Disable),
            ..spec
        };
        assert_eq!(
            CompiledPolicy::compile("pol", &spec).allowlist(),
            &["gcr.io/p/**".to_string()]
        );
    }

    #[test]
    fn most_specific_rule_wins() {
        let spec = AttestationPolicySpec {
            default_admission_rule: rule(EvaluationMode::AlwaysAllow, &[]),
            kubernetes_namespace_admission_rules: [(
                "prod".to_string(),
                rule(EvaluationMode::AlwaysDeny, &[]),
            )]
            .into(),
            kubernetes_service_account_admission_rules: [(
                "prod:ci".to_string(),
                rule(EvaluationMode::RequireAttestation, &["a"]),
            )]
            .into(),
            ..Default::default()
        };
        let p = CompiledPolicy::compile("pol", &spec);
        let scope = |ns, sa| p.rule_for(ns, sa).scope.to_string();
        assert_eq!(
            scope("prod", "ci"),
            "service account admission rule for prod:ci"
        );
        assert_eq!(
            scope("prod", "default"),
            "namespace admission rule for prod"
        );
        assert_eq!(scope("dev", "ci"), "default admission rule");
        assert_eq!(scope("dev", "default"), "default admission rule");
    }
}
