//! Evaluation of a workload against the policies, and the decision with Google-style messages.

use std::cell::OnceCell;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use crate::crd::{EnforcementMode, EvaluationMode};
use crate::image::{Digest, ImageRef, ImageRefError};

use super::allowlist::Allowlist;
use super::compiled::{CompiledPolicy, CompiledRule, RuleScope};
use super::trust::Attestations;
use super::workload::{ImageSource, ImageUse, Workload};

/// Pod label that breaks glass (GKE's current form).
pub const BREAKGLASS_LABEL: &str = "image-policy.k8s.io/break-glass";
/// Pod annotation that breaks glass (GKE's legacy form).
pub const BREAKGLASS_ANNOTATION: &str = "alpha.image-policy.k8s.io/break-glass";
/// Audit annotation key set when a dry-run rule would have denied an image.
pub const AUDIT_DRY_RUN: &str = "dry-run";
/// Audit annotation key listing what dry run or breakglass let through.
pub const AUDIT_OVERRIDDEN: &str = "overridden-verification-result";
/// Audit annotation key set when the pod broke glass.
pub const AUDIT_BREAKGLASS: &str = "break-glass";

/// Why one attestor did not vouch for an image.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AttestorReason {
    /// The image has no sha256 digest, so no attestation can name it.
    DigestRequired,
    /// No verified attestation of this attestor names the digest.
    NotAttested,
}

impl fmt::Display for AttestorReason {
    /// Google's exact texts.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::DigestRequired => {
                "Expected digest with sha256 scheme, but got tag or malformed digest"
            }
            Self::NotAttested => {
                "No attestations found that were valid and signed by a key trusted by the attestor"
            }
        })
    }
}

/// One required attestor that did not vouch for an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AttestorFailure {
    /// The attestor as written in the policy.
    pub attestor: String,
    /// Why.
    pub reason: AttestorReason,
}

/// Why a rule refused an image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// An `ALWAYS_DENY` rule.
    AlwaysDeny,
    /// A `REQUIRE_ATTESTATION` rule: these required attestors did not vouch.
    Attestors(Vec<AttestorFailure>),
    /// A `REQUIRE_ATTESTATION` rule, but the image reference does not parse.
    InvalidReference(String),
    /// A `REQUIRE_ATTESTATION` rule that lists no attestor.
    NoAttestors,
    /// The policy cannot be read (its object does not match the schema); it denies everything.
    PolicyUnreadable(Arc<str>),
}

/// A rule's refusal of one image (reported once, for every container that uses it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageVerdict {
    /// Name of the policy whose rule refused.
    pub policy: Arc<str>,
    /// The image as written in the pod spec.
    pub image: String,
    /// Every container and image volume that uses the image.
    pub uses: Vec<ImageUse>,
    /// The rule that applied.
    pub rule: RuleScope,
    /// The rule's enforcement mode.
    pub enforcement_mode: EnforcementMode,
    /// Why it refused.
    pub failure: Failure,
}

impl ImageVerdict {
    /// Google-style message: `Image X denied by Binary Authorization <rule> of policy P. ...`,
    /// preceded by `volume NAME: ` when image volumes mount the image (Google has no image
    /// volumes; the prefix says where an image that is no container's comes from).
    pub fn message(&self) -> String {
        format!(
            "{}Image {} denied by Binary Authorization {} of policy {}. {}",
            self.volumes_prefix(),
            self.image,
            self.rule,
            self.policy,
            self.details()
        )
    }

    /// `volume NAME: ` (or `volumes A, B: `) when image volumes use the image, else empty.
    fn volumes_prefix(&self) -> String {
        let volumes: Vec<&str> = self
            .uses
            .iter()
            .filter(|u| u.source == ImageSource::Volumes)
            .map(|u| u.name.as_str())
            .collect();
        match volumes.as_slice() {
            [] => String::new(),
            [one] => format!("volume {one}: "),
            many => format!("volumes {}: ", many.join(", ")),
        }
    }

    /// What follows the first sentence of [`ImageVerdict::message`].
    pub fn details(&self) -> String {
        let image = &self.image;
        match &self.failure {
            Failure::AlwaysDeny => "Denied by always_deny admission rule".to_owned(),
            Failure::Attestors(failures) => failures
                .iter()
                .map(|f| {
                    format!(
                        "Image {image} denied by attestor {}: {}",
                        f.attestor, f.reason
                    )
                })
                .collect::<Vec<_>>()
                .join(" "),
            Failure::InvalidReference(error) => {
                format!("Image {image} is not a valid image reference: {error}")
            }
            Failure::NoAttestors => {
                "The REQUIRE_ATTESTATION rule lists no attestor in requireAttestationsBy".to_owned()
            }
            Failure::PolicyUnreadable(error) => format!(
                "The policy cannot be read ({error}); it denies every image until it is fixed"
            ),
        }
    }

    /// Short per-image cause, as Google's `details.causes`: `'<image>' : <reason>`.
    pub fn cause(&self) -> String {
        let prefix = self.volumes_prefix();
        match self.failure {
            Failure::AlwaysDeny => format!(
                "{prefix}'{}' : Denied by an ALWAYS_DENY admission rule",
                self.image
            ),
            _ => format!("{prefix}'{}' : {}", self.image, self.details()),
        }
    }
}

/// The outcome of evaluating one workload.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// Whether the workload is admitted.
    pub allowed: bool,
    /// Whether the pod broke glass; then it is admitted and `denials` says what was overridden.
    pub breakglass: bool,
    /// Refusals by enforced rules (they deny, unless the pod broke glass).
    pub denials: Vec<ImageVerdict>,
    /// Refusals by dry-run rules (admitted, warned and audited).
    pub dry_run: Vec<ImageVerdict>,
    /// Names of the policies that govern the namespace.
    pub policies: Vec<Arc<str>>,
    /// When the pod broke glass: the governing policies that refuse breakglass
    /// (`breakglass: Deny`), whose denials stand.
    pub breakglass_refused: Vec<Arc<str>>,
}

impl Decision {
    /// Whether breakglass overrides this denial (the pod broke glass and the denial's policy
    /// allows it).
    pub fn overrides(&self, denial: &ImageVerdict) -> bool {
        self.breakglass && !self.breakglass_refused.contains(&denial.policy)
    }

    /// Every denial message joined with a space (the AdmissionResponse `status.message`), and
    /// which policies refused breakglass, if the pod broke glass in vain.
    pub fn message(&self) -> String {
        let mut message = self
            .denials
            .iter()
            .map(ImageVerdict::message)
            .collect::<Vec<_>>()
            .join(" ");
        if self.breakglass && !self.breakglass_refused.is_empty() {
            let names: Vec<&str> = self.breakglass_refused.iter().map(|p| &**p).collect();
            message.push_str(&format!(
                " The pod breaks glass, which policy {} refuses (spec.breakglass: Deny).",
                names.join(", ")
            ));
        }
        message
    }

    /// One cause per refused image, without repeats (`status.details.causes`).
    pub fn causes(&self) -> Vec<String> {
        dedup(self.denials.iter().map(ImageVerdict::cause))
    }

    /// One line per refusal that did not deny: dry-run ones, and overridden ones under
    /// breakglass (AdmissionResponse `warnings`).
    pub fn warnings(&self) -> Vec<String> {
        let dry = self.dry_run.iter().map(|v| {
            format!(
                "dry run: Image {} would be denied: {}",
                v.image,
                v.message()
            )
        });
        let broken = self.denials.iter().filter(|v| self.overrides(v)).map(|v| {
            format!(
                "break glass: Image {} would be denied: {}",
                v.image,
                v.message()
            )
        });
        dedup(dry.chain(broken))
    }

    /// Audit annotations, with GKE's keys (the API server prefixes the webhook's name).
    pub fn audit_annotations(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        if self.breakglass {
            out.insert(AUDIT_BREAKGLASS.to_owned(), "true".to_owned());
        }
        if !self.dry_run.is_empty() {
            out.insert(AUDIT_DRY_RUN.to_owned(), "true".to_owned());
        }
        let overridden = self
            .dry_run
            .iter()
            .chain(self.denials.iter().filter(|v| self.overrides(v)));
        let text: String = dedup(overridden.map(ImageVerdict::cause))
            .into_iter()
            .map(|c| c + "\n")
            .collect();
        if !text.is_empty() {
            out.insert(AUDIT_OVERRIDDEN.to_owned(), text);
        }
        out
    }
}

fn dedup(items: impl Iterator<Item = String>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for item in items {
        if !out.contains(&item) {
            out.push(item);
        }
    }
    out
}

/// Whether the pod (or template) carries the breakglass label or legacy annotation set to
/// exactly `"true"`.
pub fn is_breakglass(workload: &Workload) -> bool {
    workload
        .labels
        .get(BREAKGLASS_LABEL)
        .is_some_and(|v| v == "true")
        || workload
            .annotations
            .get(BREAKGLASS_ANNOTATION)
            .is_some_and(|v| v == "true")
}

/// One distinct image of the workload, parsed once for every policy.
struct PreparedImage<'w> {
    written: &'w str,
    parsed: Result<ImageRef, ImageRefError>,
    /// `registry/repository[:tag][@digest]` when it differs from `written`; computed on first
    /// use, as only allowlists need it.
    normalised: OnceCell<Option<String>>,
}

impl<'w> PreparedImage<'w> {
    fn new(written: &'w str) -> Self {
        Self {
            written,
            parsed: ImageRef::parse(written),
            normalised: OnceCell::new(),
        }
    }

    fn normalised(&self) -> Option<&str> {
        self.normalised
            .get_or_init(|| {
                let image = self.parsed.as_ref().ok()?;
                let mut s = image.name().to_owned();
                if let Some(tag) = image.tag() {
                    s.push(':');
                    s.push_str(tag);
                }
                if let Some(digest) = image.digest() {
                    s.push('@');
                    s.push_str(digest.as_str());
                }
                (s != self.written).then_some(s)
            })
            .as_deref()
    }

    /// An unparsable image is matched only as written.
    fn allowlisted(&self, allowlist: &Allowlist) -> bool {
        !allowlist.is_empty()
            && (allowlist.matches(self.written)
                || self.normalised().is_some_and(|n| allowlist.matches(n)))
    }

    /// The digest, when the image names one (a `Digest` is always sha256).
    fn sha256_digest(&self) -> Option<&Digest> {
        self.parsed.as_ref().ok()?.digest()
    }
}

/// What one rule says about one image: `None` admits.
fn judge(
    rule: &CompiledRule,
    image: &PreparedImage<'_>,
    trust: &impl Attestations,
) -> Option<Failure> {
    match rule.evaluation_mode {
        EvaluationMode::AlwaysAllow => None,
        EvaluationMode::AlwaysDeny => Some(Failure::AlwaysDeny),
        EvaluationMode::RequireAttestation => {
            if rule.attestors.is_empty() {
                return Some(Failure::NoAttestors);
            }
            if let Err(e) = &image.parsed {
                return Some(Failure::InvalidReference(e.to_string()));
            }
            let digest = image.sha256_digest();
            let failures: Vec<AttestorFailure> = rule
                .attestors
                .iter()
                .filter_map(|a| {
                    let reason = match digest {
                        None => AttestorReason::DigestRequired,
                        Some(d) if !trust.is_attested(&a.name, d) => AttestorReason::NotAttested,
                        Some(_) => return None,
                    };
                    Some(AttestorFailure {
                        attestor: a.written.clone(),
                        reason,
                    })
                })
                .collect();
            (!failures.is_empty()).then_some(Failure::Attestors(failures))
        }
    }
}

/// Decide whether `workload` may run in a namespace with `namespace_labels`.
///
/// Every policy whose namespace selector matches governs, and each must admit every image.
/// Per policy and image: the allowlist (and system images) exempt first; then the most specific
/// rule judges; a dry-run rule's refusals only warn. Breakglass admits but everything is still
/// evaluated so the audit can say what was overridden.
pub fn evaluate(
    policies: &[CompiledPolicy],
    namespace_labels: &BTreeMap<String, String>,
    workload: &Workload,
    trust: &impl Attestations,
) -> Decision {
    let namespace = workload.namespace();
    let mut decision = Decision {
        breakglass: is_breakglass(workload),
        ..Decision::default()
    };
    let mut images: Option<Vec<PreparedImage<'_>>> = None;
    for policy in policies.iter().filter(|p| p.governs(namespace_labels)) {
        decision.policies.push(policy.name_arc().clone());
        if decision.breakglass && !policy.allows_breakglass() {
            decision.breakglass_refused.push(policy.name_arc().clone());
        }
        let rule = policy.rule_for(namespace, &workload.service_account);
        if rule.evaluation_mode == EvaluationMode::AlwaysAllow {
            continue;
        }
        let images = images.get_or_insert_with(|| distinct_images(workload));
        for image in images.iter() {
            if image.allowlisted(policy.allowlist_matcher()) {
                continue;
            }
            let failure = match policy.unreadable_reason() {
                Some(error) => Failure::PolicyUnreadable(error.into()),
                None => match judge(rule, image, trust) {
                    Some(failure) => failure,
                    None => continue,
                },
            };
            let verdict = ImageVerdict {
                policy: policy.name_arc().clone(),
                image: image.written.to_owned(),
                uses: workload
                    .images
                    .iter()
                    .filter(|u| u.image == image.written)
                    .cloned()
                    .collect(),
                rule: rule.scope.clone(),
                enforcement_mode: rule.enforcement_mode,
                failure,
            };
            match rule.enforcement_mode {
                EnforcementMode::DryrunAuditLogOnly => decision.dry_run.push(verdict),
                EnforcementMode::EnforcedBlockAndAuditLog => decision.denials.push(verdict),
            }
        }
    }
    decision.allowed = decision.denials.iter().all(|d| decision.overrides(d));
    decision
}

/// The workload's images, each once, in first-seen order.
fn distinct_images(workload: &Workload) -> Vec<PreparedImage<'_>> {
    let mut out: Vec<PreparedImage<'_>> = Vec::with_capacity(workload.images.len());
    for u in &workload.images {
        if !out.iter().any(|p| p.written == u.image) {
            out.push(PreparedImage::new(&u.image));
        }
    }
    out
}
