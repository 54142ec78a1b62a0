//! What `verify -o json|yaml` and `evaluate -o json|yaml` print: a stable schema for CI tools,
//! documented in the README. Fields are only ever added; a removal or a change of meaning gets
//! a new `apiVersion`.

use serde::Serialize;

/// `apiVersion` of both reports.
pub const REPORT_API_VERSION: &str = "binauthz.dev/v1alpha1";

/// The result of `binauthz verify`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationReport {
    /// `binauthz.dev/v1alpha1`.
    pub api_version: &'static str,
    /// `VerificationReport`.
    pub kind: &'static str,
    /// Counts, and the exit status.
    pub summary: VerificationSummary,
    /// One result per ImageAttestation, in input order.
    pub results: Vec<AttestationResult>,
}

/// Counts of a verification.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerificationSummary {
    /// ImageAttestations read.
    pub attestations: usize,
    /// Those that verified.
    pub verified: usize,
    /// Those that did not.
    pub failed: usize,
    /// The exit status: 0 all verified, 1 some failed, 2 bad input.
    pub exit_code: u8,
}

/// The verdict on one ImageAttestation.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AttestationResult {
    /// `namespace/name`.
    pub attestation: String,
    /// File and document it was read from.
    pub source: String,
    /// The Attestor it names.
    pub attestor: String,
    /// `spec.artifactUrl`.
    pub artifact_url: String,
    /// `VERIFIED` or `FAILED`.
    pub verdict: AttestationVerdict,
    /// The key whose signature verified.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// Why it failed: the `reason` of its `Verified=False` condition in a cluster.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// What is wrong and how to fix it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}

/// Verdict on one ImageAttestation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AttestationVerdict {
    /// A signature verified with a key of the attestor.
    Verified,
    /// None did.
    Failed,
}

/// The result of `binauthz evaluate`.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationReport {
    /// `binauthz.dev/v1alpha1`.
    pub api_version: &'static str,
    /// `EvaluationReport`.
    pub kind: &'static str,
    /// Counts, and the exit status.
    pub summary: EvaluationSummary,
    /// One result per workload (and per document that could not be read as one), in input
    /// order.
    pub results: Vec<WorkloadResult>,
}

/// Counts of an evaluation.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EvaluationSummary {
    /// Workloads judged (and documents that could not be).
    pub workloads: usize,
    /// Admitted.
    pub admitted: usize,
    /// Admitted because the pod breaks glass.
    pub breakglass: usize,
    /// Denied.
    pub denied: usize,
    /// Could not be read or decided.
    pub invalid: usize,
    /// No AttestationPolicy governs them.
    pub ungoverned: usize,
    /// The exit status: 0 all admitted, 1 some denied, 2 bad input (invalid or ungoverned).
    pub exit_code: u8,
}

/// The verdict on one workload.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WorkloadResult {
    /// File and document it was read from.
    pub source: String,
    /// `Pod`, `Deployment`, ...; absent when the document could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Its namespace (the `--namespace` default when it names none).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Its name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The verdict.
    pub verdict: WorkloadVerdict,
    /// The webhook's message for a denial, or what is wrong with the input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The AttestationPolicies that govern its namespace.
    pub policies: Vec<String>,
    /// What was admitted despite a rule (dry run, breakglass): the webhook's warnings.
    pub warnings: Vec<String>,
    /// Every refused image (denied, or overridden by dry run or breakglass), with why.
    pub images: Vec<ImageResult>,
}

/// Verdict on one workload.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WorkloadVerdict {
    /// Every image passed (or only dry-run rules refused one).
    Admitted,
    /// Admitted because the pod breaks glass.
    Breakglass,
    /// An enforced rule refused an image.
    Denied,
    /// The document is not a valid workload, or cannot be decided from the inputs.
    Invalid,
    /// No AttestationPolicy governs its namespace (exit 2 unless `--allow-ungoverned`).
    Ungoverned,
}

impl WorkloadVerdict {
    /// The word printed in text output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admitted => "ADMITTED",
            Self::Breakglass => "BREAKGLASS",
            Self::Denied => "DENIED",
            Self::Invalid => "INVALID",
            Self::Ungoverned => "UNGOVERNED",
        }
    }
}

/// One image a rule refused.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageResult {
    /// The image as written.
    pub image: String,
    /// Where the workload uses it: `container app`, `initContainer setup`, `volume payload`.
    pub uses: Vec<String>,
    /// The policy whose rule refused it.
    pub policy: String,
    /// Which rule: `default admission rule`, `namespace rule for prod`, ...
    pub rule: String,
    /// `ENFORCED_BLOCK_AND_AUDIT_LOG` or `DRYRUN_AUDIT_LOG_ONLY`.
    pub enforcement_mode: String,
    /// Whether it denies the workload (not dry run, not overridden by breakglass).
    pub denies: bool,
    /// The webhook's message for this image.
    pub message: String,
    /// Why no attestation vouched for it: each ImageAttestation of the inputs that names its
    /// digest, and what the inputs lack.
    pub explanation: Vec<String>,
    /// The ImageAttestations of the inputs that name its digest, verified or not.
    pub attestations: Vec<AttestationResult>,
}
