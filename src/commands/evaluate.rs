//! `binauthz evaluate`: the GitOps gate. Every workload of the inputs is decided by the webhook's
//! entry point ([`Snapshot::decide`]) over the policies, namespaces and verified attestations of
//! the inputs, and every denial is explained from the inputs.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::report::{
    EvaluationReport, EvaluationSummary, ImageResult, REPORT_API_VERSION, WorkloadResult,
    WorkloadVerdict,
};
use super::verify::{VerifyLine, plural, verify_manifests};
use super::{CommandError, Exit, print_structured, stdout_error};
use crate::cli::{EvaluateArgs, OutputFormat};
use crate::crd::validate;
use crate::image::ImageRef;
use crate::manifests::{Manifests, Source};
use crate::policy::{
    AttestorReason, CompiledPolicy, Decision, Failure, ImageVerdict, Namespaces, Snapshot,
    TrustIndex, Workload, attestor_name,
};

/// The verdict on one document of `binauthz evaluate` that is a workload (or claims to be).
pub struct WorkloadLine {
    /// `Kind namespace/name`, or where the document is when it could not be read.
    pub workload: String,
    /// Where it was read.
    pub source: Source,
    /// Kind, namespace and name, when the document could be read as a workload.
    pub identity: Option<(&'static str, String, String)>,
    /// The decision, or why the document could not be read or decided.
    pub decision: Result<Decision, String>,
}

/// Decide for every workload of the manifests, as the webhook would, as of `now`: the same
/// entry point ([`Snapshot::decide`]) over the policies, namespaces and verified attestations
/// of the manifests.
pub fn evaluate_manifests(
    manifests: &Manifests,
    default_namespace: &str,
    now: jiff::Timestamp,
) -> Vec<WorkloadLine> {
    decide_all(
        manifests,
        &verify_manifests(manifests, now),
        default_namespace,
    )
}

fn decide_all(
    manifests: &Manifests,
    verified: &[VerifyLine],
    default_namespace: &str,
) -> Vec<WorkloadLine> {
    let mut trust = TrustIndex::new();
    for line in verified {
        if let Ok(verified) = &line.result {
            // Only sha256 digests verify, so the index accepts every verified entry.
            let _ = trust.insert(&line.attestor, &verified.digest, &line.attestation);
        }
    }
    // Sorted by name, as the cluster orders them (and so their messages).
    let mut policies: Vec<CompiledPolicy> = manifests
        .policies
        .iter()
        .map(|(_, p)| {
            CompiledPolicy::compile(p.metadata.name.as_deref().unwrap_or_default(), &p.spec)
        })
        .collect();
    policies.sort_by(|a, b| a.name().cmp(b.name()));
    let namespaces: Namespaces = manifests.namespaces.clone().into_iter().collect();
    let snapshot = Snapshot {
        policies: &policies,
        namespaces: &namespaces,
        trust: &trust,
    };
    let mut seen: BTreeMap<String, Source> = BTreeMap::new();
    let mut lines = Vec::new();
    for other in &manifests.others {
        let invalid = |message: String| WorkloadLine {
            workload: other.source.to_string(),
            source: other.source.clone(),
            identity: None,
            decision: Err(message),
        };
        let mut workload = match Workload::from_json(&other.value) {
            Ok(None) => continue,
            Ok(Some(workload)) => workload,
            Err(e) => {
                // Unknown fields first: a misspelt `image` is the likely cause.
                let mut problems = unknown_fields(&other.value);
                problems.push(e.to_string());
                lines.push(invalid(problems.join("; ")));
                continue;
            }
        };
        if workload.namespace.is_none() {
            workload.namespace = Some(default_namespace.to_owned());
        }
        let namespace = workload.namespace().to_owned();
        let kind = workload.kind.as_str();
        let name = format!("{kind} {namespace}/{}", workload.name);
        let unknown = unknown_fields(&other.value);
        let decision = if !unknown.is_empty() {
            Err(format!(
                "{}; the API server refuses unknown fields",
                unknown.join("; ")
            ))
        } else if let Some(first) = seen.get(&name) {
            Err(format!(
                "{name} is also defined in {first}; each object may be defined once, or the verdict depends on the order of the files"
            ))
        } else {
            seen.insert(name.clone(), other.source.clone());
            snapshot.decide(&workload).map_err(|undecided| {
                format!("{undecided}; add the Namespace manifest of {namespace}, with its labels, to the inputs")
            })
        };
        lines.push(WorkloadLine {
            workload: name,
            source: other.source.clone(),
            identity: Some((kind, namespace, workload.name.clone())),
            decision,
        });
    }
    lines
}

/// Fields of a workload the API server does not know, with the nearest known name.
fn unknown_fields(document: &serde_json::Value) -> Vec<String> {
    match validate::check_workload(document) {
        Ok(()) => Vec::new(),
        Err(problems) => problems.iter().map(ToString::to_string).collect(),
    }
}

pub(super) fn show_paths(paths: &[PathBuf]) -> String {
    paths
        .iter()
        .map(|p| p.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// `binauthz evaluate`: print the verdict on every workload and a summary; exit 0 when all are
/// admitted, 1 when one is denied, 2 when the input is wrong (a document is invalid, no policy
/// governs a workload, there is no workload).
pub fn evaluate(args: &EvaluateArgs) -> Result<ExitCode, CommandError> {
    let mut manifests = Manifests::load(&args.paths)?;
    if args.fetch.fetch_signatures {
        let images: Vec<ImageRef> = manifests
            .others
            .iter()
            .filter_map(|o| Workload::from_json(&o.value).ok().flatten())
            .flat_map(|w| w.images)
            .filter_map(|u| ImageRef::parse(&u.image).ok())
            .collect();
        super::fetch::fetch(
            &mut manifests,
            &args.fetch,
            super::fetch::Wanted::Images(images),
        )?;
    }
    let now = args.at.unwrap_or_else(jiff::Timestamp::now);
    let verified = verify_manifests(&manifests, now);
    let lines = decide_all(&manifests, &verified, &args.namespace);
    if lines.is_empty() {
        return Err(CommandError::Usage(format!(
            "no workload (Pod, Deployment, ReplicaSet, StatefulSet, DaemonSet, Job, CronJob, ReplicationController) found in {}; give the files or folders that hold them",
            show_paths(&args.paths)
        )));
    }
    let results: Vec<WorkloadResult> = lines
        .iter()
        .map(|line| {
            result(
                line,
                &manifests,
                &verified,
                args.allow_ungoverned,
                args.fetch.fetch_signatures,
            )
        })
        .collect();
    let mut summary = EvaluationSummary {
        workloads: results.len(),
        ..EvaluationSummary::default()
    };
    for r in &results {
        match r.verdict {
            WorkloadVerdict::Admitted => summary.admitted += 1,
            WorkloadVerdict::Breakglass => summary.breakglass += 1,
            WorkloadVerdict::Denied => summary.denied += 1,
            WorkloadVerdict::Invalid => summary.invalid += 1,
            WorkloadVerdict::Ungoverned => summary.ungoverned += 1,
        }
    }
    let exit = if summary.invalid + summary.ungoverned > 0 {
        Exit::BadInput
    } else if summary.denied > 0 {
        Exit::Refused
    } else {
        Exit::Passed
    };
    summary.exit_code = exit as u8;
    let report = EvaluationReport {
        api_version: REPORT_API_VERSION,
        kind: "EvaluationReport",
        summary,
        results,
    };
    if args.output == OutputFormat::Text {
        print_text(&report)?;
    } else {
        print_structured(args.output, &report)?;
    }
    Ok(exit.into())
}

fn print_text(report: &EvaluationReport) -> Result<(), CommandError> {
    let mut text = String::new();
    for r in &report.results {
        let what = match (&r.kind, &r.namespace, &r.name) {
            (Some(kind), Some(namespace), Some(name)) => format!("{kind} {namespace}/{name}"),
            _ => r.source.clone(),
        };
        let verdict = r.verdict.as_str();
        match &r.message {
            Some(message) => text.push_str(&format!("{verdict:<8} {what}: {message}\n")),
            None => text.push_str(&format!("{verdict:<8} {what}\n")),
        }
        for image in r.images.iter().filter(|i| i.denies) {
            for why in &image.explanation {
                text.push_str(&format!("  why: {why}\n"));
            }
        }
        for warning in &r.warnings {
            text.push_str(&format!("  warning: {warning}\n"));
        }
    }
    let s = &report.summary;
    let mut counts = vec![format!("{} admitted", s.admitted)];
    for (n, word) in [
        (s.breakglass, "breakglass"),
        (s.denied, "denied"),
        (s.invalid, "invalid"),
        (s.ungoverned, "ungoverned"),
    ] {
        if n > 0 {
            counts.push(format!("{n} {word}"));
        }
    }
    text.push_str(&format!(
        "Summary: {} workload{}: {}\n",
        s.workloads,
        plural(s.workloads),
        counts.join(", ")
    ));
    std::io::stdout()
        .lock()
        .write_all(text.as_bytes())
        .map_err(stdout_error)
}

/// The report entry of one line, with every refused image explained from the inputs.
fn result(
    line: &WorkloadLine,
    manifests: &Manifests,
    verified: &[VerifyLine],
    allow_ungoverned: bool,
    fetched: bool,
) -> WorkloadResult {
    let (kind, namespace, name) = match &line.identity {
        Some((kind, namespace, name)) => (
            Some((*kind).to_owned()),
            Some(namespace.clone()),
            Some(name.clone()),
        ),
        None => (None, None, None),
    };
    let mut result = WorkloadResult {
        source: line.source.to_string(),
        kind,
        namespace,
        name,
        verdict: WorkloadVerdict::Invalid,
        message: None,
        policies: Vec::new(),
        warnings: Vec::new(),
        images: Vec::new(),
    };
    let decision = match &line.decision {
        Err(problem) => {
            result.message = Some(problem.clone());
            return result;
        }
        Ok(decision) => decision,
    };
    result.policies = decision.policies.iter().map(|p| p.to_string()).collect();
    result.warnings = decision.warnings();
    result.images = decision
        .denials
        .iter()
        .map(|v| image_result(v, !decision.overrides(v), manifests, verified, fetched))
        .chain(
            decision
                .dry_run
                .iter()
                .map(|v| image_result(v, false, manifests, verified, fetched)),
        )
        .collect();
    result.verdict = if decision.policies.is_empty() && !allow_ungoverned {
        let namespace = result.namespace.clone().unwrap_or_default();
        result.message = Some(format!(
            "no AttestationPolicy in the inputs governs namespace {namespace}; add the policies to the inputs, or pass --allow-ungoverned if that is intended"
        ));
        WorkloadVerdict::Ungoverned
    } else if !decision.allowed {
        result.message = Some(decision.message());
        WorkloadVerdict::Denied
    } else if decision.breakglass && !decision.denials.is_empty() {
        WorkloadVerdict::Breakglass
    } else {
        WorkloadVerdict::Admitted
    };
    result
}

fn image_result(
    verdict: &ImageVerdict,
    denies: bool,
    manifests: &Manifests,
    verified: &[VerifyLine],
    fetched: bool,
) -> ImageResult {
    let digest = ImageRef::parse(&verdict.image)
        .ok()
        .and_then(|i| i.digest().cloned());
    let naming_digest: Vec<&VerifyLine> = verified
        .iter()
        .filter(|line| {
            digest.is_some()
                && ImageRef::parse(&line.artifact_url)
                    .ok()
                    .and_then(|i| i.digest().cloned())
                    == digest
        })
        .collect();
    let mut explanation = Vec::new();
    if let Failure::Attestors(failures) = &verdict.failure {
        for failure in failures {
            let attestor = attestor_name(&failure.attestor);
            match failure.reason {
                AttestorReason::DigestRequired => explanation.push(format!(
                    "{} is named by tag, and attestations name digests: pin it as {}@sha256:<digest>",
                    verdict.image,
                    ImageRef::parse(&verdict.image)
                        .map_or_else(|_| verdict.image.clone(), |i| i.name().to_owned())
                )),
                AttestorReason::NotAttested => {
                    explain_not_attested(
                        attestor,
                        &naming_digest,
                        manifests,
                        fetched,
                        &mut explanation,
                    );
                }
            }
        }
        if let Some(digest) = &digest
            && naming_digest.is_empty()
            && failures
                .iter()
                .any(|f| f.reason == AttestorReason::NotAttested)
        {
            explanation.push(format!(
                "no ImageAttestation in the inputs names {digest}; sign it and add the output of `binauthz attestation create`"
            ));
        }
    }
    let mut unique = Vec::new();
    for line in explanation {
        if !unique.contains(&line) {
            unique.push(line);
        }
    }
    ImageResult {
        image: verdict.image.clone(),
        uses: verdict
            .uses
            .iter()
            .map(|u| format!("{} {}", singular(u.source.as_str()), u.name))
            .collect(),
        policy: verdict.policy.to_string(),
        rule: verdict.rule.to_string(),
        enforcement_mode: match verdict.enforcement_mode {
            crate::crd::EnforcementMode::EnforcedBlockAndAuditLog => "ENFORCED_BLOCK_AND_AUDIT_LOG",
            crate::crd::EnforcementMode::DryrunAuditLogOnly => "DRYRUN_AUDIT_LOG_ONLY",
        }
        .to_owned(),
        denies,
        message: verdict.message(),
        explanation: unique,
        attestations: naming_digest.iter().map(|l| l.to_result()).collect(),
    }
}

/// Why `attestor` vouches for none of the attestations that name the digest.
fn explain_not_attested(
    attestor: &str,
    naming_digest: &[&VerifyLine],
    manifests: &Manifests,
    fetched: bool,
    explanation: &mut Vec<String>,
) {
    let found = manifests
        .attestors
        .iter()
        .find(|(_, a)| a.metadata.name.as_deref() == Some(attestor));
    match found {
        None => explanation.push(format!(
            "no Attestor named {attestor} in the inputs; add its file with -f"
        )),
        Some((_, a)) if a.spec.registry_signatures.is_some() && !fetched => {
            explanation.push(format!(
                "Attestor {attestor} keeps its signatures in registries (spec.registrySignatures); pass --fetch-signatures to read them as the cluster does"
            ));
        }
        Some(_) => {}
    }
    for line in naming_digest {
        match &line.result {
            Err(failure) if line.attestor == attestor => explanation.push(format!(
                "attestation {} ({}) by attestor {attestor} does not verify: {}: {}",
                line.attestation, line.source, failure.reason, failure.message
            )),
            _ if line.attestor != attestor => explanation.push(format!(
                "attestation {} ({}) is by attestor {}, not {attestor}",
                line.attestation, line.source, line.attestor
            )),
            _ => {}
        }
    }
}

/// `containers` → `container`, as a use is named in messages.
fn singular(list: &str) -> &str {
    list.strip_suffix('s').unwrap_or(list)
}
