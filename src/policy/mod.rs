//! The policy engine: decides, for the webhook, `binauthz evaluate` and continuous validation,
//! whether a workload's images may run.
//!
//! Pure and fast: a policy is compiled once ([`CompiledPolicy::compile`]); [`evaluate`] then
//! does no pattern compilation, no I/O and few allocations, asking an [`Attestations`] lookup
//! (the [`TrustIndex`] built from verified attestations, never from `status`) about digests.

mod allowlist;
mod compiled;
mod decision;
mod namespaces;
mod selector;
mod snapshot;
mod trust;
mod workload;

#[cfg(test)]
mod tests;

pub use allowlist::{InvalidPattern, SYSTEM_IMAGE_REPOSITORIES, system_image_patterns};
pub use compiled::{
    CompiledPolicy, CompiledRule, NAMESPACE_NAME_LABEL, PolicyProblem, RequiredAttestor, RuleScope,
    attestor_name,
};
pub use decision::{
    AUDIT_BREAKGLASS, AUDIT_DRY_RUN, AUDIT_OVERRIDDEN, AttestorFailure, AttestorReason,
    BREAKGLASS_ANNOTATION, BREAKGLASS_LABEL, Decision, Failure, ImageVerdict, evaluate,
    is_breakglass,
};
pub use namespaces::Namespaces;
pub use snapshot::{Snapshot, Undecided};
pub use trust::{Attestations, TrustIndex, TrustIndexError};
pub use workload::{
    DEFAULT_NAMESPACE, DEFAULT_SERVICE_ACCOUNT, ImageSource, ImageUse, Workload, WorkloadError,
    WorkloadKind, is_policy_annotation,
};
