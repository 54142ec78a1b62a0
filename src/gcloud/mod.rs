//! Moving from GKE Binary Authorization: `gcloud container binauthz policy export` YAML to an
//! `AttestationPolicy` and back, and `gcloud container binauthz attestors describe` YAML to an
//! `Attestor`.
//!
//! Decoding is as strict as gcloud's own (`DictToMessageWithErrorCheck`): an unknown field or a
//! bad enum value is an error naming the field, so a typo never silently changes a policy.
//! Pure: no Kubernetes client, no network.
//!
//! [`decode`] is the strict decoder (field paths, enums by name); [`policy`] imports and
//! exports policies, [`attestor`] imports attestors.

mod attestor;
mod decode;
mod policy;

use serde::Serialize;

pub use attestor::import_attestor;
use decode::*;
pub use policy::{export_policy, import_policy};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{
        AttestationPolicy, EnforcementMode, EvaluationMode, GlobalPolicyEvaluationMode,
    };

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
}
