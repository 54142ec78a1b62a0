//! The three custom resources of `binauthz.dev/v1alpha1`, derived from these Rust types.
//!
//! The types are the only source of the CRDs: `binauthz crds` prints them, `crds/` holds that
//! output, and a test fails when the two drift apart.

// Several `printcolumn(...)` entries repeat `type_ = ...`, which clippy mistakes for duplicated attributes.
#[allow(clippy::duplicated_attributes)]
mod attestation_policy;
#[allow(clippy::duplicated_attributes)]
mod attestor;
pub mod conditions;
#[allow(clippy::duplicated_attributes)]
mod image_attestation;
pub mod limits;
pub mod validate;

pub use attestation_policy::{
    AdmissionRule, AdmissionWhitelistPattern, AttestationPolicy, AttestationPolicySpec,
    AttestationPolicyStatus, Breakglass, EnforcementMode, EvaluationMode,
    GlobalPolicyEvaluationMode, NAME_PATTERN_RULE, PodViolation, RequiredAttestorAllowlist,
};
pub use attestor::{
    Attestor, AttestorPublicKey, AttestorSpec, AttestorStatus, KeyStatus, PkixPublicKey,
    RegistrySignatures, RegistrySyncStatus, RepositorySyncStatus, SecretName,
};
pub use image_attestation::{
    ImageAttestation, ImageAttestationSpec, ImageAttestationStatus, Signature,
};

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// API group of every binauthz resource.
pub const GROUP: &str = "binauthz.dev";
/// API version of every binauthz resource.
pub const VERSION: &str = "v1alpha1";
/// The single field manager binauthz uses for server-side apply.
pub const FIELD_MANAGER: &str = "binauthz";

/// The CustomResourceDefinitions, in a stable order.
pub fn all() -> Vec<CustomResourceDefinition> {
    vec![
        Attestor::crd(),
        AttestationPolicy::crd(),
        ImageAttestation::crd(),
    ]
}

/// File name under `crds/` for one CRD.
pub fn file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.spec.names.plural)
}

/// One CRD as a YAML document (the form committed under `crds/`).
pub fn to_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(crd)
}

/// Every CRD as one multi-document YAML stream, as `binauthz crds` prints it.
pub fn all_yaml() -> Result<String, serde_yaml::Error> {
    let mut out = String::new();
    for crd in all() {
        out.push_str("---\n");
        out.push_str(&to_yaml(&crd)?);
    }
    Ok(out)
}
