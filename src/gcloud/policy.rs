//! Policy import (`gcloud container binauthz policy export` to an AttestationPolicy) and export.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::Value;

use crate::crd::{
    AdmissionRule, AdmissionWhitelistPattern, AttestationPolicy, AttestationPolicySpec,
    EnforcementMode, EvaluationMode, GlobalPolicyEvaluationMode,
};

use super::*;

/// Turn `gcloud container binauthz policy export` output (YAML or JSON) into an
/// `AttestationPolicy`.
pub fn import_policy(
    text: &str,
    options: &PolicyImportOptions,
) -> Result<Imported<AttestationPolicy>, GcloudError> {
    let map = top_mapping(text, POLICY_SOURCE)?;
    let top = Fields::of_map(
        "",
        &map,
        &[
            "admissionWhitelistPatterns",
            "clusterAdmissionRules",
            "defaultAdmissionRule",
            "description",
            "etag",
            "globalPolicyEvaluationMode",
            "istioServiceIdentityAdmissionRules",
            "kubernetesNamespaceAdmissionRules",
            "kubernetesServiceAccountAdmissionRules",
            "name",
            "updateTime",
        ],
    )?;
    let mut attestors = AttestorNames::default();
    let mut notes = Vec::new();

    let resource_name = top.string("name")?;
    let project = match &resource_name {
        None => None,
        Some(name) => Some(policy_project(name)?),
    }
    .flatten();
    let etag = top.string("etag")?;
    let update_time = top.string("updateTime")?;
    let mut source = format!(
        "Imported by `binauthz policy import` from {}",
        resource_name.as_deref().unwrap_or("a gcloud policy export")
    );
    let mut dropped = Vec::new();
    if let Some(etag) = &etag {
        dropped.push(format!("etag {etag}"));
    }
    if let Some(time) = &update_time {
        dropped.push(format!("updateTime {time}"));
    }
    if !dropped.is_empty() {
        let _ = write!(source, " ({} dropped)", dropped.join(", "));
    }
    source.push('.');
    notes.push(source);

    let description = top.string("description")?;
    let global_policy_evaluation_mode = match top.get("globalPolicyEvaluationMode") {
        None => None,
        Some(v) => {
            let path = "globalPolicyEvaluationMode";
            match string_value(path, v)?.as_str() {
                "ENABLE" => Some(GlobalPolicyEvaluationMode::Enable),
                "DISABLE" => Some(GlobalPolicyEvaluationMode::Disable),
                // The API documents UNSPECIFIED as DISABLE, which is also binauthz's default.
                "GLOBAL_POLICY_EVALUATION_MODE_UNSPECIFIED" => None,
                other => {
                    return Err(field_error(
                        path,
                        format!("unknown value {other}; expected ENABLE or DISABLE"),
                    ));
                }
            }
        }
    };

    let mut admission_whitelist_patterns = Vec::new();
    for (i, item) in top.list("admissionWhitelistPatterns").iter().enumerate() {
        let path = format!("admissionWhitelistPatterns[{i}]");
        let pattern = Fields::new(&path, item, &["namePattern"])?;
        let Some(name_pattern) = pattern.string("namePattern")? else {
            return Err(field_error(
                &pattern.child("namePattern"),
                "required; give the image name pattern",
            ));
        };
        admission_whitelist_patterns.push(AdmissionWhitelistPattern { name_pattern });
    }

    let default_rule = match top.get("defaultAdmissionRule") {
        Some(v) => Some(decode_rule("defaultAdmissionRule", v, &mut attestors)?),
        None => None,
    };

    let clusters = rule_map(&top, "clusterAdmissionRules", &mut attestors)?;
    let default_admission_rule = match (&options.cluster, clusters.is_empty()) {
        (None, true) => default_rule,
        (None, false) => {
            let keys: Vec<&str> = clusters.keys().map(String::as_str).collect();
            let mut message = format!(
                "clusterAdmissionRules cannot map to one cluster; pass --cluster {} to use that cluster's rule as the default rule",
                keys[0]
            );
            if keys.len() > 1 {
                let _ = write!(message, " (clusters: {})", keys.join(", "));
            }
            return Err(GcloudError::Unmappable(message));
        }
        (Some(cluster), true) => {
            return Err(GcloudError::Unmappable(format!(
                "--cluster {cluster}: the policy has no clusterAdmissionRules; drop --cluster"
            )));
        }
        (Some(cluster), false) => match clusters.get(cluster) {
            Some(rule) => {
                let others: Vec<&str> = clusters
                    .keys()
                    .filter(|k| *k != cluster)
                    .map(String::as_str)
                    .collect();
                let mut note = format!(
                    "clusterAdmissionRules[{cluster}] became defaultAdmissionRule (--cluster {cluster}); the policy's own defaultAdmissionRule"
                );
                if others.is_empty() {
                    note.push_str(" was dropped.");
                } else {
                    let _ = write!(
                        note,
                        " and the rules of {} were dropped.",
                        others.join(", ")
                    );
                }
                notes.push(note);
                Some(rule.clone())
            }
            None => {
                return Err(GcloudError::Unmappable(format!(
                    "--cluster {cluster}: no such key in clusterAdmissionRules; its keys are {}",
                    clusters.keys().cloned().collect::<Vec<_>>().join(", ")
                )));
            }
        },
    };
    let Some(default_admission_rule) = default_admission_rule else {
        return Err(field_error(
            "defaultAdmissionRule",
            "required; every policy has a default rule (gcloud exports it)",
        ));
    };

    let kubernetes_namespace_admission_rules =
        rule_map(&top, "kubernetesNamespaceAdmissionRules", &mut attestors)?;
    for key in kubernetes_namespace_admission_rules.keys() {
        if !is_dns_label(key) {
            return Err(field_error(
                &format!("kubernetesNamespaceAdmissionRules[{key}]"),
                "key is not a Kubernetes namespace name (lower-case letters, digits and '-', at most 63); the rule could never apply",
            ));
        }
    }
    let mut kubernetes_service_account_admission_rules = rule_map(
        &top,
        "kubernetesServiceAccountAdmissionRules",
        &mut attestors,
    )?;
    for key in kubernetes_service_account_admission_rules.keys() {
        if service_account_key(key).is_none() {
            return Err(field_error(
                &format!("kubernetesServiceAccountAdmissionRules[{key}]"),
                "key must be namespace:serviceaccount (Kubernetes names), e.g. test-ns:default",
            ));
        }
    }
    let istio = rule_map(&top, "istioServiceIdentityAdmissionRules", &mut attestors)?;
    for (identity, rule) in istio {
        let path = format!("istioServiceIdentityAdmissionRules[{identity}]");
        let Some(key) = istio_service_account(&identity) else {
            return Err(field_error(
                &path,
                "cannot map to a service account rule; expected [spiffe://]DOMAIN/ns/NAMESPACE/sa/SERVICE_ACCOUNT with Kubernetes names",
            ));
        };
        match kubernetes_service_account_admission_rules.get(&key) {
            Some(existing) if *existing != rule => {
                return Err(field_error(
                    &path,
                    format!(
                        "maps to service account {key}, which already has a different rule; make the two rules equal or drop one"
                    ),
                ));
            }
            Some(_) => {}
            None => {
                kubernetes_service_account_admission_rules.insert(key.clone(), rule);
            }
        }
        notes.push(format!(
            "istioServiceIdentityAdmissionRules[{identity}] became kubernetesServiceAccountAdmissionRules[{key}] (binauthz matches the pod's service account)."
        ));
    }

    if !attestors.projects.is_empty() {
        let projects: Vec<&str> = attestors.projects_used();
        notes.push(match projects.as_slice() {
            [project] => format!(
                "requireAttestationsBy: projects/{project}/attestors/NAME became NAME (the Attestor object's name); `binauthz policy export --project {project}` restores it."
            ),
            _ => format!(
                "requireAttestationsBy: projects/{{{}}}/attestors/NAME became NAME (the Attestor object's name); `binauthz policy export --project P` names them all in one project P.",
                projects.join(",")
            ),
        });
    }

    let name = match &options.name {
        Some(name) => {
            if !is_dns_subdomain(name) {
                return Err(GcloudError::Unmappable(format!(
                    "--name {name}: not a Kubernetes object name ({SUBDOMAIN_RULE})"
                )));
            }
            name.clone()
        }
        None => project
            .filter(|p| is_dns_subdomain(p))
            .unwrap_or_else(|| DEFAULT_POLICY_NAME.to_owned()),
    };
    let policy = AttestationPolicy::new(
        &name,
        AttestationPolicySpec {
            description,
            global_policy_evaluation_mode,
            admission_whitelist_patterns,
            default_admission_rule,
            kubernetes_namespace_admission_rules,
            kubernetes_service_account_admission_rules,
            namespace_selector: None,
            breakglass: None,
        },
    );
    Ok(Imported {
        object: policy,
        notes,
    })
}

/// The project of `projects/P/policy`; `None` for the system policy `locations/L/policy`.
pub(super) fn policy_project(name: &str) -> Result<Option<String>, GcloudError> {
    let parts: Vec<&str> = name.split('/').collect();
    match parts.as_slice() {
        ["projects", project, "policy"] if !project.is_empty() => Ok(Some((*project).to_owned())),
        ["locations", location, "policy"] if !location.is_empty() => Ok(None),
        _ => Err(field_error(
            "name",
            format!("expected projects/PROJECT_ID/policy, got {name}"),
        )),
    }
}

/// Attestor names met in `requireAttestationsBy`, and the project each came from.
#[derive(Default)]
pub(super) struct AttestorNames {
    /// Attestor name -> project.
    projects: BTreeMap<String, String>,
}

impl AttestorNames {
    /// `projects/P/attestors/NAME` -> `NAME`, refusing one name in two projects.
    pub(super) fn map(&mut self, path: &str, written: &str) -> Result<String, GcloudError> {
        let parts: Vec<&str> = written.split('/').collect();
        let (project, name) = match parts.as_slice() {
            ["projects", project, "attestors", name] if !project.is_empty() && !name.is_empty() => {
                (Some(*project), *name)
            }
            [name] => (None, *name),
            _ => {
                return Err(field_error(
                    path,
                    format!("expected projects/PROJECT_ID/attestors/NAME, got {written}"),
                ));
            }
        };
        if !is_dns_subdomain(name) {
            return Err(field_error(
                path,
                format!(
                    "attestor {name} is not a Kubernetes object name ({SUBDOMAIN_RULE}); rename the attestor"
                ),
            ));
        }
        if let Some(project) = project {
            if let Some(other) = self.projects.get(name)
                && other != project
            {
                return Err(field_error(
                    path,
                    format!(
                        "attestor {name} of project {project} and attestor {name} of project {other} would both become the Attestor {name}; rename one"
                    ),
                ));
            }
            self.projects.insert(name.to_owned(), project.to_owned());
        }
        Ok(name.to_owned())
    }

    pub(super) fn projects_used(&self) -> Vec<&str> {
        let mut projects: Vec<&str> = self.projects.values().map(String::as_str).collect();
        projects.sort_unstable();
        projects.dedup();
        projects
    }
}

pub(super) fn decode_rule(
    path: &str,
    value: &Value,
    attestors: &mut AttestorNames,
) -> Result<AdmissionRule, GcloudError> {
    let rule = Fields::new(
        path,
        value,
        &["enforcementMode", "evaluationMode", "requireAttestationsBy"],
    )?;
    let evaluation_mode = match rule.get("evaluationMode") {
        Some(v) => enum_value(
            &rule.child("evaluationMode"),
            v,
            "EVALUATION_MODE_UNSPECIFIED",
            &EVALUATION_MODES,
        )?,
        None => {
            return Err(field_error(
                &rule.child("evaluationMode"),
                "required; expected ALWAYS_ALLOW, REQUIRE_ATTESTATION or ALWAYS_DENY",
            ));
        }
    };
    // gcloud documents ENFORCED_BLOCK_AND_AUDIT_LOG as the default.
    let enforcement_mode = match rule.get("enforcementMode") {
        Some(v) => enum_value(
            &rule.child("enforcementMode"),
            v,
            "ENFORCEMENT_MODE_UNSPECIFIED",
            &ENFORCEMENT_MODES,
        )?,
        None => EnforcementMode::EnforcedBlockAndAuditLog,
    };
    let by_path = rule.child("requireAttestationsBy");
    let mut require_attestations_by = Vec::new();
    for (i, item) in rule.list("requireAttestationsBy").iter().enumerate() {
        let item_path = format!("{by_path}[{i}]");
        let name = attestors.map(&item_path, &string_value(&item_path, item)?)?;
        if !require_attestations_by.contains(&name) {
            require_attestations_by.push(name);
        }
    }
    match (evaluation_mode, require_attestations_by.is_empty()) {
        (EvaluationMode::RequireAttestation, true) => {
            return Err(field_error(
                &by_path,
                "required when evaluationMode is REQUIRE_ATTESTATION; list the attestors",
            ));
        }
        (EvaluationMode::AlwaysAllow | EvaluationMode::AlwaysDeny, false) => {
            return Err(field_error(
                &by_path,
                "must be empty unless evaluationMode is REQUIRE_ATTESTATION",
            ));
        }
        _ => {}
    }
    Ok(AdmissionRule {
        evaluation_mode,
        enforcement_mode,
        require_attestations_by,
    })
}

pub(super) fn rule_map(
    top: &Fields<'_>,
    key: &str,
    attestors: &mut AttestorNames,
) -> Result<BTreeMap<String, AdmissionRule>, GcloudError> {
    let mut rules = BTreeMap::new();
    if let Some(map) = top.mapping(key)? {
        for (k, v) in map {
            let rule = decode_rule(&format!("{key}[{k}]"), v, attestors)?;
            rules.insert(k.clone(), rule);
        }
    }
    Ok(rules)
}

/// `namespace:serviceaccount` with Kubernetes names, as the CRD's CEL rule requires.
pub(super) fn service_account_key(key: &str) -> Option<(&str, &str)> {
    let (namespace, account) = key.split_once(':')?;
    (is_dns_label(namespace) && is_dns_subdomain(account)).then_some((namespace, account))
}

/// `[spiffe://]DOMAIN/ns/NS/sa/SA` -> `NS:SA`.
pub(super) fn istio_service_account(identity: &str) -> Option<String> {
    let rest = identity.strip_prefix("spiffe://").unwrap_or(identity);
    let parts: Vec<&str> = rest.split('/').collect();
    match parts.as_slice() {
        [domain, "ns", namespace, "sa", account] if !domain.is_empty() => {
            let key = format!("{namespace}:{account}");
            service_account_key(&key).is_some().then_some(key)
        }
        _ => None,
    }
}

/// A policy in the shape `gcloud container binauthz policy export` prints: fields in
/// alphabetical order, enums by name.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GooglePolicy<'a> {
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    admission_whitelist_patterns: &'a [AdmissionWhitelistPattern],
    default_admission_rule: GoogleRule,
    #[serde(skip_serializing_if = "Option::is_none")]
    description: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    global_policy_evaluation_mode: Option<GlobalPolicyEvaluationMode>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    kubernetes_namespace_admission_rules: BTreeMap<&'a str, GoogleRule>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    kubernetes_service_account_admission_rules: BTreeMap<&'a str, GoogleRule>,
    name: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub(super) struct GoogleRule {
    enforcement_mode: EnforcementMode,
    evaluation_mode: EvaluationMode,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    require_attestations_by: Vec<String>,
}

impl GoogleRule {
    pub(super) fn new(rule: &AdmissionRule, project: &str) -> Self {
        Self {
            enforcement_mode: rule.enforcement_mode,
            evaluation_mode: rule.evaluation_mode,
            require_attestations_by: rule
                .require_attestations_by
                .iter()
                .map(|name| {
                    if name.starts_with("projects/") {
                        name.clone()
                    } else {
                        format!("projects/{project}/attestors/{name}")
                    }
                })
                .collect(),
        }
    }
}

/// Turn an `AttestationPolicy` spec into the YAML `gcloud container binauthz policy import`
/// takes, naming attestors `projects/PROJECT/attestors/NAME`.
pub fn export_policy(spec: &AttestationPolicySpec, project: &str) -> Result<String, GcloudError> {
    if project.is_empty() || project.contains('/') || project.chars().any(char::is_whitespace) {
        return Err(GcloudError::Unmappable(format!(
            "--project {project:?}: expected a Google Cloud project id, e.g. example-project"
        )));
    }
    if spec.namespace_selector.is_some() {
        return Err(field_error(
            "spec.namespaceSelector",
            "has no Google equivalent (a Google policy governs every namespace); remove it, or express it with kubernetesNamespaceAdmissionRules",
        ));
    }
    if spec.breakglass == Some(crate::crd::Breakglass::Deny) {
        return Err(field_error(
            "spec.breakglass",
            "Deny has no Google equivalent (Google Binary Authorization always honours breakglass); remove it to export",
        ));
    }
    if !spec.kubernetes_namespace_admission_rules.is_empty()
        && !spec.kubernetes_service_account_admission_rules.is_empty()
    {
        return Err(GcloudError::Unmappable(
            "spec has both kubernetesNamespaceAdmissionRules and kubernetesServiceAccountAdmissionRules; a Google policy may have only one of them non-empty, so keep one".to_owned(),
        ));
    }
    let policy = GooglePolicy {
        admission_whitelist_patterns: &spec.admission_whitelist_patterns,
        default_admission_rule: GoogleRule::new(&spec.default_admission_rule, project),
        description: spec.description.as_deref(),
        global_policy_evaluation_mode: spec.global_policy_evaluation_mode,
        kubernetes_namespace_admission_rules: spec
            .kubernetes_namespace_admission_rules
            .iter()
            .map(|(k, r)| (k.as_str(), GoogleRule::new(r, project)))
            .collect(),
        kubernetes_service_account_admission_rules: spec
            .kubernetes_service_account_admission_rules
            .iter()
            .map(|(k, r)| (k.as_str(), GoogleRule::new(r, project)))
            .collect(),
        name: format!("projects/{project}/policy"),
    };
    serde_yaml::to_string(&policy).map_err(|e| GcloudError::Unmappable(e.to_string()))
}
