//! The one entry point that decides: the policies, the namespaces and the trust as of one
//! moment, and [`Snapshot::decide`]. The webhook, continuous validation and `binauthz
//! evaluate` each build a snapshot from what they hold and call it, so the rules for what they
//! do not know (a namespace not seen yet, a policy that cannot be read) are the same on every
//! path.

use std::fmt;

use super::compiled::{CompiledPolicy, NAMESPACE_NAME_LABEL};
use super::decision::{Decision, evaluate};
use super::namespaces::Namespaces;
use super::trust::Attestations;
use super::workload::Workload;

/// Policies, namespaces and trust, borrowed for one decision (or many).
#[derive(Clone, Copy, Debug)]
pub struct Snapshot<'a, T> {
    /// Every policy, sorted by name (one that cannot be read is
    /// [`CompiledPolicy::unreadable`]: it denies every image).
    pub policies: &'a [CompiledPolicy],
    /// The namespaces known, with their labels.
    pub namespaces: &'a Namespaces,
    /// Which attestors vouch for which digests, from verified signatures only.
    pub trust: &'a T,
}

/// Why a snapshot cannot decide (yet): nothing is admitted on a guess.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Undecided {
    /// The workload's namespace is not known, and some policy selects namespaces by labels,
    /// so which policies govern it cannot be told.
    UnknownNamespace {
        /// The namespace.
        namespace: String,
        /// The policies whose selectors read labels.
        policies: Vec<String>,
    },
}

impl fmt::Display for Undecided {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownNamespace {
                namespace,
                policies,
            } => write!(
                f,
                "namespace {namespace} is not known, and policy {} selects namespaces by label, so whether it governs {namespace} cannot be told",
                policies.join(", ")
            ),
        }
    }
}

impl<T: Attestations> Snapshot<'_, T> {
    /// Decide whether `workload` may run in its namespace ([`Workload::namespace`]).
    ///
    /// A namespace that is not known is decided by its name alone when no policy's selector
    /// reads other labels (then its labels cannot change the outcome); otherwise the decision
    /// is [`Undecided::UnknownNamespace`].
    pub fn decide(&self, workload: &Workload) -> Result<Decision, Undecided> {
        let namespace = workload.namespace();
        if let Some(labels) = self.namespaces.get(namespace) {
            return Ok(evaluate(self.policies, labels, workload, self.trust));
        }
        let selecting: Vec<String> = self
            .policies
            .iter()
            .filter(|p| p.needs_namespace_labels())
            .map(|p| p.name().to_owned())
            .collect();
        if !selecting.is_empty() {
            return Err(Undecided::UnknownNamespace {
                namespace: namespace.to_owned(),
                policies: selecting,
            });
        }
        let labels = std::collections::BTreeMap::from([(
            NAMESPACE_NAME_LABEL.to_owned(),
            namespace.to_owned(),
        )]);
        Ok(evaluate(self.policies, &labels, workload, self.trust))
    }
}
