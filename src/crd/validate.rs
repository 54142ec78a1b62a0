//! A document of one of binauthz's kinds, checked offline as the API server checks it: from the
//! same CRD schemas (`crate::crd::all()`, derived from the Rust types), so the two cannot
//! drift. Checked: `apiVersion`, the object's name, every field against the schema (unknown
//! fields, with the nearest valid name; types; required fields; enum values; `maxLength`,
//! `maxItems`, `maxProperties`), and the schema's CEL rules (`x-kubernetes-validations`,
//! evaluated by kube's client-side CEL validator). `status` is not checked: the API server drops
//! it on create.
//!
//! Workloads ([`check_workload`]) are checked for unknown fields only, against k8s-openapi's
//! schemas, as `kubectl apply` (strict field validation) would refuse them: a misspelt `image`
//! is named as such, not reported as a missing image.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::LazyLock;

use serde_json::{Map, Value};

use super::{GROUP, VERSION};

/// One thing the API server would refuse, at a JSON path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// Where, e.g. `spec.defaultAdmissionRule.requireAttestationBy`.
    pub field: String,
    /// What is wrong, and the fix where there is one.
    pub message: String,
}

impl Problem {
    /// Whether the problem is a field the schema does not know.
    pub fn is_unknown_field(&self) -> bool {
        self.message.starts_with(UNKNOWN_FIELD)
    }
}

const UNKNOWN_FIELD: &str = "unknown field";

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.field.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.field, self.message)
        }
    }
}

/// The schema of each kind, and whether it is namespaced.
struct Kind {
    schema: Value,
    namespaced: bool,
}

static KINDS: LazyLock<BTreeMap<String, Kind>> = LazyLock::new(|| {
    super::all()
        .into_iter()
        .filter_map(|crd| {
            let version = crd.spec.versions.iter().find(|v| v.name == VERSION)?;
            let schema = version.schema.as_ref()?.open_api_v3_schema.as_ref()?;
            Some((
                crd.spec.names.kind.clone(),
                Kind {
                    schema: serde_json::to_value(schema).ok()?,
                    namespaced: crd.spec.scope == "Namespaced",
                },
            ))
        })
        .collect()
});

/// Fields of `metadata` an object may carry.
const METADATA_FIELDS: &[&str] = &[
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];

/// The name rule of Kubernetes objects (a DNS-1123 subdomain).
pub const SUBDOMAIN_RULE: &str = "at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit";

/// A DNS-1123 label: what a namespace name must be.
pub fn is_dns_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with('-')
        && !s.ends_with('-')
}

/// A DNS-1123 subdomain: what an object's name must be.
pub fn is_dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns_label)
}

/// The k8s-openapi schema of each workload kind, every subschema inlined.
static WORKLOADS: LazyLock<Vec<(&'static str, Value)>> = LazyLock::new(|| {
    use k8s_openapi::api::{apps::v1 as apps, batch::v1 as batch, core::v1 as core};
    fn schema<T: schemars::JsonSchema>() -> Value {
        let generator = schemars::generate::SchemaSettings::openapi3()
            .with(|s| s.inline_subschemas = true)
            .into_generator();
        serde_json::to_value(generator.into_root_schema_for::<T>()).unwrap_or(Value::Null)
    }
    vec![
        ("Pod", schema::<core::Pod>()),
        (
            "ReplicationController",
            schema::<core::ReplicationController>(),
        ),
        ("Deployment", schema::<apps::Deployment>()),
        ("ReplicaSet", schema::<apps::ReplicaSet>()),
        ("StatefulSet", schema::<apps::StatefulSet>()),
        ("DaemonSet", schema::<apps::DaemonSet>()),
        ("Job", schema::<batch::Job>()),
        ("CronJob", schema::<batch::CronJob>()),
    ]
});

/// Check a workload (Pod, Deployment, ...) for fields the API server does not know; other
/// kinds pass.
pub fn check_workload(document: &Value) -> Result<(), Vec<Problem>> {
    let kind = document.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some((_, schema)) = WORKLOADS.iter().find(|(k, _)| *k == kind) else {
        return Ok(());
    };
    let mut problems = Vec::new();
    unknown_fields(schema, document, "", &mut problems);
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// Only the unknown fields of `value` (types are the workload reader's concern: the API
/// server's int-or-string and quantity fields take several).
fn unknown_fields(schema: &Value, value: &Value, path: &str, problems: &mut Vec<Problem>) {
    match value {
        Value::Object(fields) => {
            let properties = schema.get("properties").and_then(Value::as_object);
            let additional = schema.get("additionalProperties");
            let preserve = schema
                .get("x-kubernetes-preserve-unknown-fields")
                .and_then(Value::as_bool)
                == Some(true);
            for (key, field) in fields {
                match (properties.and_then(|p| p.get(key)), additional) {
                    (Some(field_schema), _) => {
                        unknown_fields(field_schema, field, &join(path, key), problems);
                    }
                    (None, Some(values)) if values.is_object() => {
                        unknown_fields(values, field, &format!("{path}[{key}]"), problems);
                    }
                    // Free-form (no properties), or open to anything.
                    (None, Some(Value::Bool(true))) => {}
                    (None, _) if preserve || properties.is_none() => {}
                    (None, _) => problems.push(unknown(key, path, schema.get("properties"))),
                }
            }
        }
        Value::Array(items) => {
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    unknown_fields(item_schema, item, &format!("{path}[{i}]"), problems);
                }
            }
        }
        _ => {}
    }
}

/// Check a document of kind `kind` (one of ours) as the API server would on create.
pub fn check(document: &Value) -> Result<(), Vec<Problem>> {
    let mut problems = Vec::new();
    let kind_name = document.get("kind").and_then(Value::as_str).unwrap_or("");
    let Some(kind) = KINDS.get(kind_name) else {
        return Err(vec![Problem {
            field: "kind".into(),
            message: format!(
                "{kind_name:?} is not a kind of {GROUP}; use one of {}",
                KINDS.keys().cloned().collect::<Vec<_>>().join(", ")
            ),
        }]);
    };
    let expected = format!("{GROUP}/{VERSION}");
    match document.get("apiVersion").and_then(Value::as_str) {
        Some(v) if v == expected => {}
        other => problems.push(Problem {
            field: "apiVersion".into(),
            message: format!(
                "{} is not served; use {expected}",
                other.unwrap_or("(missing)")
            ),
        }),
    }
    check_metadata(document.get("metadata"), kind.namespaced, &mut problems);
    if let Some(object) = document.as_object() {
        let properties = kind.schema.get("properties");
        for (key, value) in object {
            match key.as_str() {
                "apiVersion" | "kind" | "metadata" | "status" => {}
                _ => match properties.and_then(|p| p.get(key)) {
                    Some(schema) => walk(schema, value, key, &mut problems),
                    None => problems.push(unknown(key, "", properties)),
                },
            }
        }
        for required in required(&kind.schema) {
            if !object.contains_key(required) && required != "metadata" {
                problems.push(Problem {
                    field: required.to_owned(),
                    message: "Required value".into(),
                });
            }
        }
    }
    // The API server decodes strictly before it validates: unknown fields are all it reports
    // when there are any.
    if problems.iter().any(Problem::is_unknown_field) {
        problems.retain(Problem::is_unknown_field);
    }
    // The CEL rules, only once the structure is right (they read the fields).
    if problems.is_empty() {
        let mut without_status = document.clone();
        if let Some(object) = without_status.as_object_mut() {
            object.remove("status");
        }
        if let Err(errors) =
            kube::core::cel::Validator::new().validate(&kind.schema, &without_status, None)
        {
            problems.extend(errors.into_vec().into_iter().map(|e| Problem {
                field: e.field_path,
                message: e.message,
            }));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

fn check_metadata(metadata: Option<&Value>, namespaced: bool, problems: &mut Vec<Problem>) {
    let Some(Value::Object(metadata)) = metadata else {
        problems.push(Problem {
            field: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        });
        return;
    };
    for key in metadata.keys() {
        if !METADATA_FIELDS.contains(&key.as_str()) {
            problems.push(suggest(
                &format!("metadata.{key}"),
                key,
                METADATA_FIELDS.iter().copied(),
            ));
        }
    }
    match metadata.get("name") {
        Some(Value::String(name)) if is_dns_subdomain(name) => {}
        Some(Value::String(name)) => problems.push(Problem {
            field: "metadata.name".into(),
            message: format!("Invalid value: {name:?}: a name must be {SUBDOMAIN_RULE}"),
        }),
        Some(other) => problems.push(Problem {
            field: "metadata.name".into(),
            message: format!("must be a string, found {}", type_name(other)),
        }),
        None if metadata.contains_key("generateName") => {}
        None => problems.push(Problem {
            field: "metadata.name".into(),
            message: "Required value: name or generateName is required".into(),
        }),
    }
    if namespaced && let Some(namespace) = metadata.get("namespace") {
        match namespace.as_str() {
            Some(ns) if is_dns_label(ns) => {}
            _ => problems.push(Problem {
                field: "metadata.namespace".into(),
                message: format!(
                    "Invalid value: {namespace}: a namespace must be at most 63 lower-case letters, digits and '-'"
                ),
            }),
        }
    }
    for map in ["labels", "annotations"] {
        match metadata.get(map) {
            None | Some(Value::Null) => {}
            Some(Value::Object(entries)) => {
                for (key, value) in entries {
                    if !value.is_string() {
                        problems.push(Problem {
                            field: format!("metadata.{map}"),
                            message: format!(
                                "must be a map of strings: {key:?} is a {}; quote the value",
                                type_name(value)
                            ),
                        });
                    }
                }
            }
            Some(other) => problems.push(Problem {
                field: format!("metadata.{map}"),
                message: format!("must be a map of strings, found {}", type_name(other)),
            }),
        }
    }
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn required(schema: &Value) -> impl Iterator<Item = &str> {
    schema
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

/// An unknown field, with the nearest known name when one is close.
fn unknown(field: &str, path: &str, properties: Option<&Value>) -> Problem {
    let known = properties
        .and_then(Value::as_object)
        .map(|p| p.keys().map(String::as_str).collect::<Vec<_>>())
        .unwrap_or_default();
    suggest(&join(path, field), field, known.into_iter())
}

fn suggest<'a>(at: &str, field: &str, known: impl Iterator<Item = &'a str>) -> Problem {
    let nearest = known
        .map(|k| (strsim::jaro_winkler(field, k), k))
        .filter(|(score, _)| *score >= 0.85)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k);
    Problem {
        field: at.to_owned(),
        message: match nearest {
            Some(k) => format!("{UNKNOWN_FIELD} {field:?}; did you mean {k:?}?"),
            None => format!("{UNKNOWN_FIELD} {field:?}"),
        },
    }
}

/// Check `value` at `path` against `schema` (structure only; CEL rules are evaluated after).
fn walk(schema: &Value, value: &Value, path: &str, problems: &mut Vec<Problem>) {
    if value.is_null() {
        if schema.get("nullable").and_then(Value::as_bool) != Some(true) {
            problems.push(Problem {
                field: path.to_owned(),
                message: "must not be null".into(),
            });
        }
        return;
    }
    let expected = schema.get("type").and_then(Value::as_str);
    let fits = match (expected, value) {
        (None, _) => true,
        (Some("object"), Value::Object(_))
        | (Some("array"), Value::Array(_))
        | (Some("string"), Value::String(_))
        | (Some("boolean"), Value::Bool(_))
        | (Some("number"), Value::Number(_)) => true,
        (Some("integer"), Value::Number(n)) => n.is_i64() || n.is_u64(),
        _ => false,
    };
    if !fits {
        problems.push(Problem {
            field: path.to_owned(),
            message: format!(
                "Invalid value: \"{}\": {path} must be of type {}",
                type_name(value),
                expected.unwrap_or("?")
            ),
        });
        return;
    }
    if let Some(allowed) = schema.get("enum").and_then(Value::as_array)
        && !allowed.contains(value)
    {
        let names: Vec<String> = allowed.iter().map(|v| v.to_string()).collect();
        problems.push(Problem {
            field: path.to_owned(),
            message: format!(
                "Unsupported value: {value}: supported values: {}",
                names.join(", ")
            ),
        });
    }
    match value {
        Value::String(s) => {
            let length = s.chars().count() as u64;
            if let Some(max) = schema.get("maxLength").and_then(Value::as_u64)
                && length > max
            {
                problems.push(Problem {
                    field: path.to_owned(),
                    message: format!("Too long: may not be more than {max} bytes"),
                });
            }
        }
        Value::Array(items) => {
            if let Some(max) = schema.get("maxItems").and_then(Value::as_u64)
                && items.len() as u64 > max
            {
                problems.push(Problem {
                    field: path.to_owned(),
                    message: format!("Too many: {}: must have at most {max} items", items.len()),
                });
            }
            if let Some(item_schema) = schema.get("items") {
                for (i, item) in items.iter().enumerate() {
                    walk(item_schema, item, &format!("{path}[{i}]"), problems);
                }
            }
        }
        Value::Object(fields) => walk_object(schema, fields, path, problems),
        _ => {}
    }
}

fn walk_object(
    schema: &Value,
    fields: &Map<String, Value>,
    path: &str,
    problems: &mut Vec<Problem>,
) {
    if let Some(max) = schema.get("maxProperties").and_then(Value::as_u64)
        && fields.len() as u64 > max
    {
        problems.push(Problem {
            field: path.to_owned(),
            message: format!("Too many: {}: must have at most {max} items", fields.len()),
        });
    }
    let preserve = schema
        .get("x-kubernetes-preserve-unknown-fields")
        .and_then(Value::as_bool)
        == Some(true);
    if let Some(values) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        for (key, value) in fields {
            walk(values, value, &format!("{path}[{key}]"), problems);
        }
    } else {
        let properties = schema.get("properties");
        for (key, value) in fields {
            match properties.and_then(|p| p.get(key)) {
                Some(field_schema) => walk(field_schema, value, &join(path, key), problems),
                None if preserve => {}
                None => problems.push(unknown(key, path, properties)),
            }
        }
    }
    for name in required(schema) {
        if !fields.contains_key(name) {
            problems.push(Problem {
                field: join(path, name),
                message: "Required value".into(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn problems(document: Value) -> Vec<String> {
        check(&document)
            .err()
            .unwrap_or_default()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    fn policy(spec: Value) -> Value {
        json!({"apiVersion": "binauthz.dev/v1alpha1", "kind": "AttestationPolicy",
               "metadata": {"name": "p"}, "spec": spec})
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

    #[test]
    fn unknown_workload_fields_are_named_with_the_nearest_known_one() {
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "b"}},
            "spec": {"containers": [{"name": "app", "imagee": "nginx",
                "resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}],
                "volumes": [{"name": "v", "image": {"reference": "x", "pulPolicy": "Always"}}]}});
        let problems: Vec<String> = check_workload(&pod)
            .unwrap_err()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            problems,
            [
                "spec.containers[0].imagee: unknown field \"imagee\"; did you mean \"image\"?",
                "spec.volumes[0].image.pulPolicy: unknown field \"pulPolicy\"; did you mean \"pullPolicy\"?"
            ]
        );
        let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
            "spec": {"replicas": 2, "selector": {"matchLabels": {"a": "b"}},
                "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "nginx",
                    "ports": [{"containerPort": 80}], "livenessProbe": {"httpGet": {"port": "http"}}}]}}}});
        assert_eq!(check_workload(&deployment), Ok(()));
        assert_eq!(
            check_workload(&json!({"kind": "ConfigMap", "data": {"x": "y"}, "extra": 1})),
            Ok(())
        );
    }

    #[test]
    fn the_schema_and_its_rules_are_enforced_offline() {
        assert!(
            problems(policy(
                json!({"defaultAdmissionRule": {"evaluationMode": "ALWAYS_ALLOW"}})
            ))
            .is_empty()
        );
        assert_eq!(
            problems(policy(json!({"defaultAdmissionRule": {
                "evaluationMode": "REQUIRE_ATTESTATION", "requireAttestationBy": ["build"]}}))),
            [
                "spec.defaultAdmissionRule.requireAttestationBy: unknown field \"requireAttestationBy\"; did you mean \"requireAttestationsBy\"?"
            ]
        );
        let cel = problems(policy(
            json!({"defaultAdmissionRule": {"evaluationMode": "REQUIRE_ATTESTATION"}}),
        ));
        assert_eq!(cel.len(), 1, "{cel:?}");
        assert!(
            cel[0].contains(
                "requireAttestationsBy must list attestors exactly when evaluationMode is REQUIRE_ATTESTATION"
            ),
            "{cel:?}"
        );
        assert_eq!(
            problems(policy(
                json!({"defaultAdmissionRule": {"evaluationMode": "SOMETIMES"}})
            )),
            [
                "spec.defaultAdmissionRule.evaluationMode: Unsupported value: \"SOMETIMES\": supported values: \"ALWAYS_ALLOW\", \"REQUIRE_ATTESTATION\", \"ALWAYS_DENY\""
            ]
        );
        let mut wrong = policy(json!({"defaultAdmissionRule": {"evaluationMode": "ALWAYS_ALLOW"}}));
        wrong["apiVersion"] = json!("binauthz.dev/v1");
        wrong["metadata"]["name"] = json!("Bad/Name");
        assert_eq!(
            problems(wrong),
            [
                "apiVersion: binauthz.dev/v1 is not served; use binauthz.dev/v1alpha1",
                "metadata.name: Invalid value: \"Bad/Name\": a name must be at most 253 lower-case letters, digits, '-' and '.', starting and ending with a letter or digit"
            ]
        );
    }
}
