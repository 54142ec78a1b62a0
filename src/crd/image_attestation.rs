//! `ImageAttestation`: one signed statement "attestor A vouches for image digest D". Mirrors
//! Binary Authorization's `AttestationOccurrence`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// A signature by an attestor over an image's signing payload.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[kube(
    group = "binauthz.dev",
    version = "v1alpha1",
    kind = "ImageAttestation",
    namespaced,
    status = "ImageAttestationStatus",
    category = "binauthz",
    shortname = "attestation",
    shortname = "attestations",
    shortname = "att",
    doc = "An attestation: a signature by which an attestor vouches for an image digest.",
    printcolumn(name = "Image", type_ = "string", json_path = ".spec.artifactUrl"),
    printcolumn(name = "Attestor", type_ = "string", json_path = ".spec.attestor"),
    printcolumn(
        name = "Verified",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Verified\")].status"
    ),
    printcolumn(
        name = "Reason",
        type_ = "string",
        json_path = ".status.conditions[?(@.type==\"Verified\")].reason",
        priority = 1
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct ImageAttestationSpec {
    /// The image, by digest: `registry/repository@sha256:<64 hex>`.
    #[schemars(length(max = super::limits::ARTIFACT_URL))]
    #[x_kube(validation = kube::core::Rule::new(
        "self.matches('^[^@]+@sha256:[0-9a-f]{64}$')"
    ).message("artifactUrl must name the image by digest: registry/repository@sha256:<64 lower-case hex>"))]
    pub artifact_url: String,
    /// Name of the Attestor that vouches for the image.
    #[schemars(length(max = super::limits::NAME))]
    #[x_kube(validation = kube::core::Rule::new("size(self) > 0").message("attestor must name an Attestor"))]
    pub attestor: String,
    /// Base64 of the signed payload (`binauthz create-signature-payload` output), at most
    /// 16 KiB of payload (21,848 base64 characters). Optional for attached and clearsigned PGP
    /// signatures, which carry the payload themselves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = super::limits::PAYLOAD))]
    pub serialized_payload: Option<String>,
    /// Signatures over the payload (at most 8); any one that verifies suffices.
    #[schemars(length(max = super::limits::SIGNATURES))]
    #[x_kube(validation = kube::core::Rule::new("size(self) > 0").message("signatures must hold at least one signature"))]
    pub signatures: Vec<Signature>,
}

/// One signature and the id of the key that made it.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct Signature {
    /// Id of the attestor key: PGP fingerprint, or the PKIX key's id.
    #[schemars(length(max = super::limits::KEY_ID))]
    pub public_key_id: String,
    /// PGP: armored (or base64 of binary) signature, an attached one with its payload. PKIX:
    /// base64 of the signature bytes. At most 24 KiB of text.
    #[schemars(length(max = super::limits::SIGNATURE))]
    pub signature: String,
}

/// What the controller found out about an attestation.
#[derive(KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq, Default)]
#[serde(rename_all = "camelCase")]
pub struct ImageAttestationStatus {
    /// Generation of the spec this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Verified`, with the reason when it is false.
    #[serde(default)]
    #[schemars(schema_with = "crate::crd::conditions::schema")]
    pub conditions: Vec<Condition>,
    /// Id of the key whose signature verified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub verified_key_id: Option<String>,
    /// The image digest the attestation vouches for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub digest: Option<String>,
}
