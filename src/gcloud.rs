//! Moving from GKE Binary Authorization: `gcloud container binauthz policy export` YAML to an
//! `AttestationPolicy` and back, and `gcloud container binauthz attestors describe` YAML to an
//! `Attestor`.
//!
//! Decoding is as strict as gcloud's own (`DictToMessageWithErrorCheck`): an unknown field or a
//! bad enum value is an error naming the field, so a typo never silently changes a policy.
//! Pure: no Kubernetes client, no network.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::crd::{
    AdmissionRule, AdmissionWhitelistPattern, AttestationPolicy, AttestationPolicySpec, Attestor,
    AttestorPublicKey, AttestorSpec, EnforcementMode, EvaluationMode, GlobalPolicyEvaluationMode,
    PkixPublicKey,
};
use crate::crypto::SignatureAlgorithm;
use crate::crypto::pgp::PgpPublicKey;

/// Name of an imported policy when neither `--name` nor the policy's project gives one.
pub const DEFAULT_POLICY_NAME: &str = "imported";

const POLICY_SOURCE: &str = "gcloud container binauthz policy export";
const ATTESTOR_SOURCE: &str = "gcloud container binauthz attestors describe NAME --format=yaml";

/// Why a gcloud document could not be imported or a policy exported; one line, naming the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum GcloudError {
    /// The text is not YAML (or JSON).
    #[error("not YAML or JSON: {0}")]
    Syntax(String),
    /// The document is empty.
    #[error("the file is empty; expected the output of `{0}`")]
    Empty(&'static str),
    /// The document is not a mapping.
    #[error("expected a mapping (the output of `{expected}`), got {got}")]
    NotMapping {
        /// The gcloud command whose output was expected.
        expected: &'static str,
        /// What the document is instead.
        got: &'static str,
    },
    /// The document is a Kubernetes object, not gcloud output.
    #[error(
        "this is a Kubernetes {kind}, not the output of `{expected}`; it needs no import (apply it as it is)"
    )]
    KubernetesObject {
        /// The object's kind.
        kind: String,
        /// The gcloud command whose output was expected.
        expected: &'static str,
    },
    /// A field is unknown, missing, of the wrong type or has a bad value.
    #[error("{field}: {message}")]
    Field {
        /// Path of the field, e.g. `defaultAdmissionRule.evaluationMode`.
        field: String,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The input is valid but cannot be expressed in the target format.
    #[error("{0}")]
    Unmappable(String),
}

fn field_error(field: &str, message: impl Into<String>) -> GcloudError {
    GcloudError::Field {
        field: field.to_owned(),
        message: message.into(),
    }
}

/// Options of [`import_policy`].
#[derive(Clone, Debug, Default)]
pub struct PolicyImportOptions {
    /// Name of the AttestationPolicy; default: the project of `name: projects/P/policy`, else
    /// [`DEFAULT_POLICY_NAME`].
    pub name: Option<String>,
    /// `LOCATION.CLUSTER` key of `clusterAdmissionRules` whose rule becomes the default rule.
    pub cluster: Option<String>,
}

/// The result of an import: the object, and what changed on the way (for a YAML header).
#[derive(Clone, Debug, PartialEq)]
pub struct Imported<T> {
    /// The Kubernetes object.
    pub object: T,
    /// One line per thing the reader should know (source, dropped fields, renamed keys).
    pub notes: Vec<String>,
}

impl<T: Serialize> Imported<T> {
    /// The object as YAML, preceded by the notes as `#` comments.
    pub fn to_yaml(&self) -> Result<String, serde_yaml::Error> {
        let mut out = String::new();
        for note in &self.notes {
            for line in note.lines() {
                out.push_str("# ");
                out.push_str(line);
                out.push('\n');
            }
        }
        out.push_str(&serde_yaml::to_string(&self.object)?);
        Ok(out)
    }
}

// ---------------------------------------------------------------------------------------------
// Strict decoding of a YAML/JSON value, with field paths.

/// Parse one YAML (or JSON) document into a JSON value; `None` for an empty document.
fn parse_document(text: &str) -> Result<Option<Value>, GcloudError> {
    let value: Value =
        serde_yaml::from_str(text).map_err(|e| GcloudError::Syntax(e.to_string()))?;
    Ok(if value.is_null() { None } else { Some(value) })
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The top-level mapping of a gcloud document.
fn top_mapping(text: &str, expected: &'static str) -> Result<Map<String, Value>, GcloudError> {
    let Some(value) = parse_document(text)? else {
        return Err(GcloudError::Empty(expected));
    };
    let Value::Object(map) = value else {
        return Err(GcloudError::NotMapping {
            expected,
            got: type_name(&value),
        });
    };
    if map.contains_key("apiVersion")
        && let Some(kind) = map.get("kind").and_then(Value::as_str)
    {
        return Err(GcloudError::KubernetesObject {
            kind: kind.to_owned(),
            expected,
        });
    }
    Ok(map)
}

/// A mapping being decoded: its path and the fields it may have.
struct Fields<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// Check `value` is a mapping whose keys are all in `known`.
    fn new(path: &str, value: &'a Value, known: &[&str]) -> Result<Self, GcloudError> {
        let Value::Object(map) = value else {
            return Err(field_error(
                path,
                format!("expected a mapping, got {}", type_name(value)),
            ));
        };
        Self::of_map(path, map, known)
    }

    fn of_map(
        path: &str,
        map: &'a Map<String, Value>,
        known: &[&str],
    ) -> Result<Self, GcloudError> {
        let fields = Self {
            path: path.to_owned(),
            map,
        };
        if let Some(unknown) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(field_error(
                &fields.child(unknown),
                format!("unknown field; expected {}", one_of(known)),
            ));
        }
        Ok(fields)
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of a field; null counts as absent, as in gcloud.
    fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn string(&self, key: &str) -> Result<Option<String>, GcloudError> {
        self.get(key)
            .map(|v| string_value(&self.child(key), v))
            .transpose()
    }

    /// A repeated field; like gcloud (apitools), a single value counts as a list of one.
    fn list(&self, key: &str) -> &'a [Value] {
        match self.get(key) {
            None => &[],
            Some(Value::Array(items)) => items,
            Some(one) => std::slice::from_ref(one),
        }
    }

    fn mapping(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, GcloudError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(other) => Err(field_error(
                &self.child(key),
                format!("expected a mapping, got {}", type_name(other)),
            )),
        }
    }
}

fn string_value(path: &str, value: &Value) -> Result<String, GcloudError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(field_error(
            path,
            format!("expected a string, got {}", type_name(other)),
        )),
    }
}

/// `a, b or c`.
fn one_of(values: &[&str]) -> String {
    match values {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Decode an enum field by its Google name; `UNSPECIFIED` names are refused.
fn enum_value<T: Copy>(
    path: &str,
    value: &Value,
    unspecified: &str,
    values: &[(&str, T)],
) -> Result<T, GcloudError> {
    let names: Vec<&str> = values.iter().map(|(n, _)| *n).collect();
    let text = string_value(path, value)?;
    if let Some((_, v)) = values.iter().find(|(n, _)| *n == text) {
        return Ok(*v);
    }
    if text == unspecified {
        return Err(field_error(
            path,
            format!(
                "{unspecified} is not allowed (Google: \"Do not use\"); expected {}",
                one_of(&names)
            ),
        ));
    }
    Err(field_error(
        path,
        format!("unknown value {text}; expected {}", one_of(&names)),
    ))
}

const EVALUATION_MODES: [(&str, EvaluationMode); 3] = [
    ("ALWAYS_ALLOW", EvaluationMode::AlwaysAllow),
    ("REQUIRE_ATTESTATION", EvaluationMode::RequireAttestation),
    ("ALWAYS_DENY", EvaluationMode::AlwaysDeny),
];
const ENFORCEMENT_MODES: [(&str, EnforcementMode); 2] = [
    (
        "ENFORCED_BLOCK_AND_AUDIT_LOG",
        EnforcementMode::EnforcedBlockAndAuditLog,
    ),
    ("DRYRUN_AUDIT_LOG_ONLY", EnforcementMode::DryrunAuditLogOnly),
];

// ---------------------------------------------------------------------------------------------
// Kubernetes names.

/// A DNS-1123 label: what a namespace name must be.
fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain: what most object names (and service account names) must be.
fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

const SUBDOMAIN_RULE: &str =
    "lower-case letters, digits, '-' and '.', starting and ending with a letter or digit";

// ---------------------------------------------------------------------------------------------
// Policy import.

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
fn policy_project(name: &str) -> Result<Option<String>, GcloudError> {
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
struct AttestorNames {
    /// Attestor name -> project.
    projects: BTreeMap<String, String>,
}

impl AttestorNames {
    /// `projects/P/attestors/NAME` -> `NAME`, refusing one name in two projects.
    fn map(&mut self, path: &str, written: &str) -> Result<String, GcloudError> {
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

    fn projects_used(&self) -> Vec<&str> {
        let mut projects: Vec<&str> = self.projects.values().map(String::as_str).collect();
        projects.sort_unstable();
        projects.dedup();
        projects
    }
}

fn decode_rule(
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

fn rule_map(
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
fn service_account_key(key: &str) -> Option<(&str, &str)> {
    let (namespace, account) = key.split_once(':')?;
    (is_dns_label(namespace) && is_dns_subdomain(account)).then_some((namespace, account))
}

/// `[spiffe://]DOMAIN/ns/NS/sa/SA` -> `NS:SA`.
fn istio_service_account(identity: &str) -> Option<String> {
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

// ---------------------------------------------------------------------------------------------
// Policy export.

/// A policy in the shape `gcloud container binauthz policy export` prints: fields in
/// alphabetical order, enums by name.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct GooglePolicy<'a> {
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
struct GoogleRule {
    enforcement_mode: EnforcementMode,
    evaluation_mode: EvaluationMode,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    require_attestations_by: Vec<String>,
}

impl GoogleRule {
    fn new(rule: &AdmissionRule, project: &str) -> Self {
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

// ---------------------------------------------------------------------------------------------
// Attestor import.

/// Turn `gcloud container binauthz attestors describe NAME --format=yaml` output (v1
/// `userOwnedGrafeasNote`, or v1beta1 `userOwnedDrydockNote`) into an `Attestor`.
///
/// PKIX key ids are kept (signatures name them); PGP ids are dropped, since binauthz computes
/// them, after checking they are the keys' fingerprints.
pub fn import_attestor(text: &str, name: Option<&str>) -> Result<Imported<Attestor>, GcloudError> {
    let map = top_mapping(text, ATTESTOR_SOURCE)?;
    let top = Fields::of_map(
        "",
        &map,
        &[
            "description",
            "etag",
            "name",
            "updateTime",
            "userOwnedDrydockNote",
            "userOwnedGrafeasNote",
        ],
    )?;
    let resource_name = top.string("name")?;
    let from_resource = match &resource_name {
        None => None,
        Some(written) => {
            let parts: Vec<&str> = written.split('/').collect();
            match parts.as_slice() {
                ["projects", project, "attestors", attestor]
                    if !project.is_empty() && !attestor.is_empty() =>
                {
                    Some((*attestor).to_owned())
                }
                _ => {
                    return Err(field_error(
                        "name",
                        format!("expected projects/PROJECT_ID/attestors/NAME, got {written}"),
                    ));
                }
            }
        }
    };
    let name = match (name, from_resource) {
        (Some(given), _) => {
            if !is_dns_subdomain(given) {
                return Err(GcloudError::Unmappable(format!(
                    "--name {given}: not a Kubernetes object name ({SUBDOMAIN_RULE})"
                )));
            }
            given.to_owned()
        }
        (None, Some(attestor)) => {
            if !is_dns_subdomain(&attestor) {
                return Err(field_error(
                    "name",
                    format!(
                        "attestor {attestor} is not a Kubernetes object name ({SUBDOMAIN_RULE}); pass --name"
                    ),
                ));
            }
            attestor
        }
        (None, None) => {
            return Err(field_error(
                "name",
                "required (projects/PROJECT_ID/attestors/NAME), or pass --name",
            ));
        }
    };
    let description = top.string("description")?;
    let etag = top.string("etag")?;
    let update_time = top.string("updateTime")?;

    let (note_field, note_value) = match (
        top.get("userOwnedGrafeasNote"),
        top.get("userOwnedDrydockNote"),
    ) {
        (Some(v), None) => ("userOwnedGrafeasNote", v),
        (None, Some(v)) => ("userOwnedDrydockNote", v),
        (Some(_), Some(_)) => {
            return Err(field_error(
                "userOwnedDrydockNote",
                "give userOwnedGrafeasNote (v1) or userOwnedDrydockNote (v1beta1), not both",
            ));
        }
        (None, None) => {
            return Err(field_error(
                "userOwnedGrafeasNote",
                "required; it holds the attestor's public keys",
            ));
        }
    };
    let note = Fields::new(
        note_field,
        note_value,
        &[
            "delegationServiceAccountEmail",
            "noteReference",
            "publicKeys",
        ],
    )?;
    let note_reference = note.string("noteReference")?;
    let delegation = note.string("delegationServiceAccountEmail")?;

    let mut public_keys = Vec::new();
    let keys_path = note.child("publicKeys");
    let mut dropped_pgp_ids = 0usize;
    for (i, item) in note.list("publicKeys").iter().enumerate() {
        let path = format!("{keys_path}[{i}]");
        let (key, dropped_id) = decode_public_key(&path, item)?;
        if dropped_id {
            dropped_pgp_ids += 1;
        }
        public_keys.push(key);
    }

    let mut notes = vec![format!(
        "Imported by `binauthz attestor import` from {}.",
        resource_name
            .as_deref()
            .unwrap_or("a gcloud attestor description")
    )];
    let mut dropped = Vec::new();
    if let Some(note) = &note_reference {
        dropped.push(format!("{note_field}.noteReference {note}"));
    }
    if let Some(email) = &delegation {
        dropped.push(format!("delegationServiceAccountEmail {email}"));
    }
    if let Some(etag) = &etag {
        dropped.push(format!("etag {etag}"));
    }
    if let Some(time) = &update_time {
        dropped.push(format!("updateTime {time}"));
    }
    if !dropped.is_empty() {
        notes.push(format!(
            "Dropped (no binauthz equivalent; the Attestor object is the note): {}.",
            dropped.join(", ")
        ));
    }
    if dropped_pgp_ids > 0 {
        notes.push(
            "PGP key ids are not copied: binauthz computes them (the v4 fingerprint, as Google does)."
                .to_owned(),
        );
    }
    if public_keys.is_empty() {
        notes.push(
            "The attestor has no public keys: it vouches for nothing until one is added."
                .to_owned(),
        );
    }
    let attestor = Attestor::new(
        &name,
        AttestorSpec {
            description,
            public_keys,
        },
    );
    Ok(Imported {
        object: attestor,
        notes,
    })
}

/// One `AttestorPublicKey`; the flag says a PGP id was dropped.
fn decode_public_key(path: &str, value: &Value) -> Result<(AttestorPublicKey, bool), GcloudError> {
    let key = Fields::new(
        path,
        value,
        &["asciiArmoredPgpPublicKey", "comment", "id", "pkixPublicKey"],
    )?;
    let comment = key.string("comment")?;
    let id = key.string("id")?.filter(|id| !id.is_empty());
    match (
        key.string("asciiArmoredPgpPublicKey")?,
        key.get("pkixPublicKey"),
    ) {
        (Some(armored), None) => {
            let parsed = PgpPublicKey::from_armored(&armored)
                .map_err(|e| field_error(&key.child("asciiArmoredPgpPublicKey"), e.to_string()))?;
            if let Some(id) = &id
                && !id.eq_ignore_ascii_case(parsed.fingerprint())
            {
                return Err(field_error(
                    &key.child("id"),
                    format!(
                        "{id} is not the key's fingerprint {}; the description does not match its key",
                        parsed.fingerprint()
                    ),
                ));
            }
            Ok((
                AttestorPublicKey {
                    comment,
                    id: None,
                    ascii_armored_pgp_public_key: Some(armored),
                    pkix_public_key: None,
                },
                id.is_some(),
            ))
        }
        (None, Some(pkix)) => {
            let pkix_path = key.child("pkixPublicKey");
            let fields = Fields::new(
                &pkix_path,
                pkix,
                &["keyId", "publicKeyPem", "signatureAlgorithm"],
            )?;
            let Some(public_key_pem) = fields.string("publicKeyPem")? else {
                return Err(field_error(
                    &fields.child("publicKeyPem"),
                    "required; the PEM public key",
                ));
            };
            let algorithm_path = fields.child("signatureAlgorithm");
            let Some(algorithm) = fields.get("signatureAlgorithm") else {
                return Err(field_error(
                    &algorithm_path,
                    "required, e.g. ECDSA_P256_SHA256",
                ));
            };
            let google_algorithms: Vec<(&str, SignatureAlgorithm)> = SignatureAlgorithm::ALL
                .into_iter()
                .filter(|a| *a != SignatureAlgorithm::Ed25519)
                .map(|a| (a.as_str(), a))
                .collect();
            let signature_algorithm = enum_value(
                &algorithm_path,
                algorithm,
                "SIGNATURE_ALGORITHM_UNSPECIFIED",
                &google_algorithms,
            )?;
            let key_id = fields.string("keyId")?.filter(|k| !k.is_empty());
            let id = match (id, key_id) {
                (Some(id), Some(key_id)) if id != key_id => {
                    return Err(field_error(
                        &fields.child("keyId"),
                        format!(
                            "{key_id} differs from the key's id {id}; Google requires them equal"
                        ),
                    ));
                }
                (id, key_id) => id.or(key_id),
            };
            crate::crypto::pkix::PkixPublicKey::from_pem(
                &public_key_pem,
                signature_algorithm,
                id.as_deref(),
            )
            .map_err(|e| field_error(&pkix_path, e.to_string()))?;
            Ok((
                AttestorPublicKey {
                    comment,
                    id,
                    ascii_armored_pgp_public_key: None,
                    pkix_public_key: Some(PkixPublicKey {
                        public_key_pem,
                        signature_algorithm,
                    }),
                },
                false,
            ))
        }
        (Some(_), Some(_)) => Err(field_error(
            path,
            "set exactly one of asciiArmoredPgpPublicKey or pkixPublicKey, not both",
        )),
        (None, None) => Err(field_error(
            path,
            "set one of asciiArmoredPgpPublicKey or pkixPublicKey",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn import(text: &str) -> Result<AttestationPolicy, GcloudError> {
        import_policy(text, &PolicyImportOptions::default()).map(|i| i.object)
    }

    fn err(text: &str) -> String {
        import(text).unwrap_err().to_string()
    }

    #[test]
    fn default_policy_of_a_new_project() {
        let policy = import(
            "defaultAdmissionRule:\n  enforcementMode: ENFORCED_BLOCK_AND_AUDIT_LOG\n  evaluationMode: ALWAYS_ALLOW\nglobalPolicyEvaluationMode: ENABLE\nname: projects/my-project/policy\n",
        )
        .unwrap();
        assert_eq!(policy.metadata.name.as_deref(), Some("my-project"));
        assert_eq!(
            policy.spec.default_admission_rule.evaluation_mode,
            EvaluationMode::AlwaysAllow
        );
        assert_eq!(
            policy.spec.global_policy_evaluation_mode,
            Some(GlobalPolicyEvaluationMode::Enable)
        );
    }

    #[test]
    fn enums_are_strict_and_name_the_field() {
        assert_eq!(
            err("defaultAdmissionRule:\n  evaluationMode: SOMETIMES\n"),
            "defaultAdmissionRule.evaluationMode: unknown value SOMETIMES; expected ALWAYS_ALLOW, REQUIRE_ATTESTATION or ALWAYS_DENY"
        );
        assert!(
            err("defaultAdmissionRule:\n  evaluationMode: EVALUATION_MODE_UNSPECIFIED\n")
                .starts_with("defaultAdmissionRule.evaluationMode: EVALUATION_MODE_UNSPECIFIED is not allowed")
        );
        assert!(
            err("defaultAdmissionRule:\n  evaluationMode: ALWAYS_ALLOW\n  enforcementMode: ENFORCEMENT_MODE_UNSPECIFIED\n")
                .starts_with("defaultAdmissionRule.enforcementMode: ENFORCEMENT_MODE_UNSPECIFIED is not allowed")
        );
        assert_eq!(
            err("defaultAdmissionRule:\n  evaluationMode: 3\n"),
            "defaultAdmissionRule.evaluationMode: expected a string, got a number"
        );
    }

    #[test]
    fn missing_enforcement_mode_means_enforced() {
        let policy = import("defaultAdmissionRule:\n  evaluationMode: ALWAYS_DENY\n").unwrap();
        assert_eq!(
            policy.spec.default_admission_rule.enforcement_mode,
            EnforcementMode::EnforcedBlockAndAuditLog
        );
        assert_eq!(policy.metadata.name.as_deref(), Some(DEFAULT_POLICY_NAME));
    }

    #[test]
    fn unknown_fields_are_named_with_their_path() {
        assert_eq!(
            err(
                "defaultAdmissionRule:\n  evaluationMode: ALWAYS_ALLOW\n  enforcement: DRYRUN_AUDIT_LOG_ONLY\n"
            ),
            "defaultAdmissionRule.enforcement: unknown field; expected enforcementMode, evaluationMode or requireAttestationsBy"
        );
        assert!(
            err("defaultAdmissionRule: {evaluationMode: ALWAYS_ALLOW}\nkubernetesNamespaceAdmissionRules:\n  prod: {evaluationMode: ALWAYS_ALLOW, x: 1}\n")
                .starts_with("kubernetesNamespaceAdmissionRules[prod].x: unknown field")
        );
    }

    #[test]
    fn attestor_names_lose_their_project_but_not_silently() {
        let imported = import_policy(
            "defaultAdmissionRule:\n  evaluationMode: REQUIRE_ATTESTATION\n  requireAttestationsBy: [projects/p/attestors/build, projects/p/attestors/build]\n",
            &PolicyImportOptions::default(),
        )
        .unwrap();
        assert_eq!(
            imported
                .object
                .spec
                .default_admission_rule
                .require_attestations_by,
            vec!["build"]
        );
        assert!(imported.to_yaml().unwrap().contains("--project p"));
        assert!(
            err("defaultAdmissionRule:\n  evaluationMode: REQUIRE_ATTESTATION\n  requireAttestationsBy: [projects/a/attestors/build]\nkubernetesNamespaceAdmissionRules:\n  x:\n    evaluationMode: REQUIRE_ATTESTATION\n    requireAttestationsBy: [projects/b/attestors/build]\n")
                .contains("would both become the Attestor build")
        );
        assert!(
            err("defaultAdmissionRule:\n  evaluationMode: REQUIRE_ATTESTATION\n  requireAttestationsBy: [projects/a/notes/build]\n")
                .starts_with("defaultAdmissionRule.requireAttestationsBy[0]: expected projects/PROJECT_ID/attestors/NAME")
        );
        assert!(
            err("defaultAdmissionRule:\n  evaluationMode: REQUIRE_ATTESTATION\n")
                .starts_with("defaultAdmissionRule.requireAttestationsBy: required")
        );
        assert!(
            err("defaultAdmissionRule:\n  evaluationMode: ALWAYS_ALLOW\n  requireAttestationsBy: [a]\n")
                .starts_with("defaultAdmissionRule.requireAttestationsBy: must be empty")
        );
    }

    #[test]
    fn attestors_of_several_projects_are_noted() {
        let imported = import_policy(
            "defaultAdmissionRule:\n  evaluationMode: REQUIRE_ATTESTATION\n  requireAttestationsBy: [projects/b/attestors/x, projects/a/attestors/y]\n",
            &PolicyImportOptions::default(),
        )
        .unwrap();
        assert!(
            imported.notes[1]
                .starts_with("requireAttestationsBy: projects/{a,b}/attestors/NAME became NAME"),
            "{:?}",
            imported.notes
        );
    }

    #[test]
    fn istio_identities_become_service_account_rules() {
        let policy = import(
            "defaultAdmissionRule: {evaluationMode: ALWAYS_DENY}\nistioServiceIdentityAdmissionRules:\n  spiffe://example.com/ns/prod/sa/deployer: {evaluationMode: ALWAYS_ALLOW}\n  p.svc.id.goog/ns/test-ns/sa/default: {evaluationMode: ALWAYS_ALLOW}\n",
        )
        .unwrap();
        let keys: Vec<&String> = policy
            .spec
            .kubernetes_service_account_admission_rules
            .keys()
            .collect();
        assert_eq!(keys, ["prod:deployer", "test-ns:default"]);
        for bad in [
            "example.com/ns/prod",
            "ns/prod/sa/x",
            "d/ns/Prod/sa/x",
            "d/ns/p/sa/x/y",
        ] {
            let text = format!(
                "defaultAdmissionRule: {{evaluationMode: ALWAYS_DENY}}\nistioServiceIdentityAdmissionRules:\n  {bad}: {{evaluationMode: ALWAYS_ALLOW}}\n"
            );
            assert!(
                err(&text).starts_with(&format!(
                    "istioServiceIdentityAdmissionRules[{bad}]: cannot map"
                )),
                "{bad}: {}",
                err(&text)
            );
        }
    }

    #[test]
    fn export_names_attestors_in_the_project() {
        let mut policy = import(
            "defaultAdmissionRule:\n  evaluationMode: REQUIRE_ATTESTATION\n  requireAttestationsBy: [build]\n",
        )
        .unwrap();
        // A name written with its project (the engine accepts it) keeps that project.
        policy
            .spec
            .default_admission_rule
            .require_attestations_by
            .push("projects/other/attestors/x".into());
        let yaml = export_policy(&policy.spec, "p").unwrap();
        assert_eq!(
            yaml,
            "defaultAdmissionRule:\n  enforcementMode: ENFORCED_BLOCK_AND_AUDIT_LOG\n  evaluationMode: REQUIRE_ATTESTATION\n  requireAttestationsBy:\n  - projects/p/attestors/build\n  - projects/other/attestors/x\nname: projects/p/policy\n"
        );
        assert!(export_policy(&policy.spec, "").is_err());
    }

    #[test]
    fn a_single_value_is_a_list_of_one_as_in_gcloud() {
        let policy = import(
            "defaultAdmissionRule:\n  evaluationMode: REQUIRE_ATTESTATION\n  requireAttestationsBy: projects/p/attestors/a\nadmissionWhitelistPatterns:\n  namePattern: gcr.io/x/*\n",
        )
        .unwrap();
        assert_eq!(
            policy.spec.default_admission_rule.require_attestations_by,
            ["a"]
        );
        assert_eq!(
            policy.spec.admission_whitelist_patterns[0].name_pattern,
            "gcr.io/x/*"
        );
    }

    #[test]
    fn names_are_kubernetes_names() {
        assert!(is_dns_label("prod-1"));
        assert!(!is_dns_label("Prod"));
        assert!(!is_dns_label("-a"));
        assert!(!is_dns_label(&"a".repeat(64)));
        assert!(is_dns_subdomain("a.b-c"));
        assert!(!is_dns_subdomain("a..b"));
        assert!(!is_dns_subdomain(""));
    }
}
