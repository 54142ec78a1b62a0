//! A policy's `namespaceSelector`: a Kubernetes `LabelSelector`, compiled once.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// One requirement on a namespace's labels.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    /// The label is present with one of these values.
    In(String, Vec<String>),
    /// The label is absent, or present with none of these values.
    NotIn(String, Vec<String>),
    /// The label is present.
    Exists(String),
    /// The label is absent.
    DoesNotExist(String),
}

impl Requirement {
    fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            Self::In(key, values) => labels.get(key).is_some_and(|v| values.contains(v)),
            Self::NotIn(key, values) => labels.get(key).is_none_or(|v| !values.contains(v)),
            Self::Exists(key) => labels.contains_key(key),
            Self::DoesNotExist(key) => !labels.contains_key(key),
        }
    }
}

/// A compiled namespace selector; absent or empty selects every namespace.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct NamespaceSelector {
    requirements: Vec<Requirement>,
}

impl NamespaceSelector {
    /// Compile a selector. An invalid one is reported and selects every namespace, so that a
    /// mistake makes the policy govern more, never less.
    pub(crate) fn compile(selector: Option<&LabelSelector>) -> (Self, Option<String>) {
        let Some(selector) = selector else {
            return (Self::default(), None);
        };
        let mut requirements = Vec::new();
        for (key, value) in selector.match_labels.iter().flatten() {
            requirements.push(Requirement::In(key.clone(), vec![value.clone()]));
        }
        for (i, expr) in selector.match_expressions.iter().flatten().enumerate() {
            let values = expr.values.clone().unwrap_or_default();
            let key = expr.key.clone();
            let requirement = match expr.operator.as_str() {
                "In" | "NotIn" if values.is_empty() => {
                    return Self::invalid(format!(
                        "namespaceSelector.matchExpressions[{i}]: operator {} needs at least one value",
                        expr.operator
                    ));
                }
                "Exists" | "DoesNotExist" if !values.is_empty() => {
                    return Self::invalid(format!(
                        "namespaceSelector.matchExpressions[{i}]: operator {} takes no values",
                        expr.operator
                    ));
                }
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                other => {
                    return Self::invalid(format!(
                        "namespaceSelector.matchExpressions[{i}]: operator {other:?} is not one of In, NotIn, Exists, DoesNotExist"
                    ));
                }
            };
            requirements.push(requirement);
        }
        (Self { requirements }, None)
    }

    fn invalid(reason: String) -> (Self, Option<String>) {
        (Self::default(), Some(reason))
    }

    /// Whether a namespace with these labels is selected.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.requirements.iter().all(|r| r.matches(labels))
    }

    /// Whether the selector reads a label other than `label`: then a namespace whose labels
    /// are not known cannot be matched by its name alone.
    pub(crate) fn reads_other_than(&self, label: &str) -> bool {
        self.requirements.iter().any(|r| {
            let key = match r {
                Requirement::In(key, _)
                | Requirement::NotIn(key, _)
                | Requirement::Exists(key)
                | Requirement::DoesNotExist(key) => key,
            };
            key != label
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelectorRequirement {
        LabelSelectorRequirement {
            key: key.into(),
            operator: op.into(),
            values: (!values.is_empty()).then(|| values.iter().map(|v| v.to_string()).collect()),
        }
    }

    fn selector(
        match_labels: &[(&str, &str)],
        exprs: Vec<LabelSelectorRequirement>,
    ) -> LabelSelector {
        LabelSelector {
            match_labels: (!match_labels.is_empty()).then(|| labels(match_labels)),
            match_expressions: (!exprs.is_empty()).then_some(exprs),
        }
    }

    #[test]
    fn absent_and_empty_select_everything() {
        let (absent, err) = NamespaceSelector::compile(None);
        assert!(err.is_none());
        assert!(absent.matches(&labels(&[])));
        let (empty, err) = NamespaceSelector::compile(Some(&LabelSelector::default()));
        assert!(err.is_none());
        assert!(empty.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn operators() {
        let prod = labels(&[("env", "prod"), ("team", "a")]);
        let dev = labels(&[("env", "dev")]);
        let none = labels(&[]);
        // (selector, matches prod, matches dev, matches none)
        let cases = [
            (selector(&[("env", "prod")], vec![]), true, false, false),
            (
                selector(&[], vec![expr("env", "In", &["prod", "staging"])]),
                true,
                false,
                false,
            ),
            (
                selector(&[], vec![expr("env", "NotIn", &["prod"])]),
                false,
                true,
                true,
            ),
            (
                selector(&[], vec![expr("team", "Exists", &[])]),
                true,
                false,
                false,
            ),
            (
                selector(&[], vec![expr("team", "DoesNotExist", &[])]),
                false,
                true,
                true,
            ),
            (
                selector(&[("env", "prod")], vec![expr("team", "In", &["b"])]),
                false,
                false,
                false,
            ),
        ];
        for (i, (sel, p, d, n)) in cases.iter().enumerate() {
            let (s, err) = NamespaceSelector::compile(Some(sel));
            assert!(err.is_none(), "case {i}");
            assert_eq!(
                (s.matches(&prod), s.matches(&dev), s.matches(&none)),
                (*p, *d, *n),
                "case {i}"
            );
        }
    }

    #[test]
    fn invalid_selectors_are_reported_and_select_everything() {
        let cases = [
            (expr("env", "In", &[]), "needs at least one value"),
            (expr("env", "Exists", &["x"]), "takes no values"),
            (expr("env", "in", &["x"]), "is not one of In, NotIn"),
        ];
        for (e, reason) in cases {
            let (s, err) = NamespaceSelector::compile(Some(&selector(&[("env", "prod")], vec![e])));
            let err = err.unwrap();
            assert!(err.contains(reason), "{err}");
            assert!(
                err.starts_with("namespaceSelector.matchExpressions[0]: "),
                "{err}"
            );
            assert!(s.matches(&labels(&[])));
        }
    }
}
