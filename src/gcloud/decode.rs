//! Strict decoding of a YAML/JSON value, with field paths, and Kubernetes name rules.

use serde_json::{Map, Value};

use crate::crd::{EnforcementMode, EvaluationMode};

use super::*;

/// Parse one YAML (or JSON) document into a JSON value; `None` for an empty document.
pub(super) fn parse_document(text: &str) -> Result<Option<Value>, GcloudError> {
    let value: Value =
        serde_yaml::from_str(text).map_err(|e| GcloudError::Syntax(e.to_string()))?;
    Ok(if value.is_null() { None } else { Some(value) })
}

pub(super) fn type_name(value: &Value) -> &'static str {
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
pub(super) fn top_mapping(
    text: &str,
    expected: &'static str,
) -> Result<Map<String, Value>, GcloudError> {
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
pub(super) struct Fields<'a> {
    path: String,
    map: &'a Map<String, Value>,
}

impl<'a> Fields<'a> {
    /// Check `value` is a mapping whose keys are all in `known`.
    pub(super) fn new(path: &str, value: &'a Value, known: &[&str]) -> Result<Self, GcloudError> {
        let Value::Object(map) = value else {
            return Err(field_error(
                path,
                format!("expected a mapping, got {}", type_name(value)),
            ));
        };
        Self::of_map(path, map, known)
    }

    pub(super) fn of_map(
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

    pub(super) fn child(&self, key: &str) -> String {
        if self.path.is_empty() {
            key.to_owned()
        } else {
            format!("{}.{key}", self.path)
        }
    }

    /// The value of a field; null counts as absent, as in gcloud.
    pub(super) fn get(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    pub(super) fn string(&self, key: &str) -> Result<Option<String>, GcloudError> {
        self.get(key)
            .map(|v| string_value(&self.child(key), v))
            .transpose()
    }

    /// A repeated field; like gcloud (apitools), a single value counts as a list of one.
    pub(super) fn list(&self, key: &str) -> &'a [Value] {
        match self.get(key) {
            None => &[],
            Some(Value::Array(items)) => items,
            Some(one) => std::slice::from_ref(one),
        }
    }

    pub(super) fn mapping(&self, key: &str) -> Result<Option<&'a Map<String, Value>>, GcloudError> {
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

pub(super) fn string_value(path: &str, value: &Value) -> Result<String, GcloudError> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(field_error(
            path,
            format!("expected a string, got {}", type_name(other)),
        )),
    }
}

/// `a, b or c`.
pub(super) fn one_of(values: &[&str]) -> String {
    match values {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

/// Decode an enum field by its Google name; `UNSPECIFIED` names are refused.
pub(super) fn enum_value<T: Copy>(
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

pub(super) const EVALUATION_MODES: [(&str, EvaluationMode); 3] = [
    ("ALWAYS_ALLOW", EvaluationMode::AlwaysAllow),
    ("REQUIRE_ATTESTATION", EvaluationMode::RequireAttestation),
    ("ALWAYS_DENY", EvaluationMode::AlwaysDeny),
];
pub(super) const ENFORCEMENT_MODES: [(&str, EnforcementMode); 2] = [
    (
        "ENFORCED_BLOCK_AND_AUDIT_LOG",
        EnforcementMode::EnforcedBlockAndAuditLog,
    ),
    ("DRYRUN_AUDIT_LOG_ONLY", EnforcementMode::DryrunAuditLogOnly),
];

pub(super) use crate::crd::validate::{SUBDOMAIN_RULE, is_dns_label, is_dns_subdomain};
