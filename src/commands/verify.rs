//! `binauthz verify`: every ImageAttestation of the inputs against the Attestors of the inputs.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use super::report::{
    AttestationResult, AttestationVerdict, REPORT_API_VERSION, VerificationReport,
    VerificationSummary,
};
use super::{CommandError, Exit, print_structured, stdout_error};
use crate::cli::{OutputFormat, VerifyArgs};
use crate::crd::ImageAttestation;
use crate::manifests::{Manifests, Source};
use crate::verify::{self, AttestorKeys, Reason};

/// One verified (or not) ImageAttestation of the inputs.
pub struct VerifyLine {
    /// `namespace/name` of the attestation.
    pub attestation: String,
    /// Where it was read.
    pub source: Source,
    /// The attestor it names.
    pub attestor: String,
    /// Its `spec.artifactUrl`.
    pub artifact_url: String,
    /// The verdict.
    pub result: Result<verify::Verified, verify::Failure>,
}

impl VerifyLine {
    /// The line as a report entry.
    pub fn to_result(&self) -> AttestationResult {
        let (verdict, key_id, reason, message) = match &self.result {
            Ok(v) => (
                AttestationVerdict::Verified,
                Some(v.key_id.clone()),
                None,
                None,
            ),
            Err(f) => (
                AttestationVerdict::Failed,
                None,
                Some(f.reason.to_string()),
                Some(f.message.clone()),
            ),
        };
        AttestationResult {
            attestation: self.attestation.clone(),
            source: self.source.to_string(),
            attestor: self.attestor.clone(),
            artifact_url: self.artifact_url.clone(),
            verdict,
            key_id,
            reason,
            message,
        }
    }
}

/// Verify every attestation of the manifests against their attestors, as of `now`: the same
/// [`verify::verify`] the cluster runs.
pub fn verify_manifests(manifests: &Manifests, now: jiff::Timestamp) -> Vec<VerifyLine> {
    let attestors: BTreeMap<&str, AttestorKeys> = manifests
        .attestors
        .iter()
        .filter_map(|(_, a)| {
            a.metadata
                .name
                .as_deref()
                .map(|n| (n, AttestorKeys::load(n, &a.spec)))
        })
        .collect();
    manifests
        .attestations
        .iter()
        .map(|(source, a)| {
            let result = verify::verify(&a.spec, attestors.get(a.spec.attestor.as_str()), now)
                .map_err(|mut failure| {
                    if failure.reason == Reason::AttestorNotFound {
                        failure.message = format!(
                            "no Attestor named {} in the inputs; add its file with -f, or fix spec.attestor",
                            a.spec.attestor
                        );
                    }
                    failure
                });
            VerifyLine {
                attestation: qualified_name(a),
                source: source.clone(),
                attestor: a.spec.attestor.clone(),
                artifact_url: a.spec.artifact_url.clone(),
                result,
            }
        })
        .collect()
}

/// `namespace/name` of an attestation read from a file (`default` when it names no namespace).
pub(super) fn qualified_name(attestation: &ImageAttestation) -> String {
    crate::trust::object_key(
        Some(
            attestation
                .metadata
                .namespace
                .as_deref()
                .unwrap_or("default"),
        ),
        attestation.metadata.name.as_deref().unwrap_or("<unnamed>"),
    )
}

/// `binauthz verify`: one line per attestation and a summary; exit 0 only when all verified.
pub fn verify(args: &VerifyArgs) -> Result<ExitCode, CommandError> {
    let mut manifests = Manifests::load(&args.paths)?;
    super::fetch::fetch(
        &mut manifests,
        &args.fetch,
        super::fetch::Wanted::Everything,
    )?;
    if manifests.attestations.is_empty() {
        return Err(CommandError::Usage(format!(
            "no ImageAttestation found in {}; give the files or folders that hold them",
            super::evaluate::show_paths(&args.paths)
        )));
    }
    let lines = verify_manifests(&manifests, args.at.unwrap_or_else(jiff::Timestamp::now));
    let verified = lines.iter().filter(|l| l.result.is_ok()).count();
    let exit = if verified == lines.len() {
        Exit::Passed
    } else {
        Exit::Refused
    };
    let report = VerificationReport {
        api_version: REPORT_API_VERSION,
        kind: "VerificationReport",
        summary: VerificationSummary {
            attestations: lines.len(),
            verified,
            failed: lines.len() - verified,
            exit_code: exit as u8,
        },
        results: lines.iter().map(VerifyLine::to_result).collect(),
    };
    if args.output != OutputFormat::Text {
        print_structured(args.output, &report)?;
        return Ok(exit.into());
    }
    let mut out = std::io::stdout().lock();
    for line in &lines {
        match &line.result {
            Ok(v) => writeln!(
                out,
                "VERIFIED {} {} key {}",
                line.attestation,
                v.image.as_written(),
                v.key_id
            ),
            Err(f) => writeln!(
                out,
                "FAILED   {} {}: {}",
                line.attestation, f.reason, f.message
            ),
        }
        .map_err(stdout_error)?;
    }
    let summary = &report.summary;
    writeln!(
        out,
        "Summary: {} attestation{}: {} verified, {} failed",
        summary.attestations,
        plural(summary.attestations),
        summary.verified,
        summary.failed
    )
    .map_err(stdout_error)?;
    Ok(exit.into())
}

pub(super) fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}
