//! The one trust pipeline of a replica: every signature binauthz relies on is verified here,
//! and only here.
//!
//! Every replica watches each resource kind once ([`watch`]) and feeds one [`TrustState`]: it
//! parses attestor keys, verifies each attestation's signatures (off the reactor, cached by
//! content), compiles policies and follows namespace labels, and publishes the result into the
//! [`Index`] that admission, continuous validation and the allowlists read. `status` is never
//! an input: anyone able to write status gains nothing. The leader's status writer reads the
//! same state's outcomes ([`TrustState::reports`]) to tell people what was found.
//!
//! What is kept per object is bounded by what a key holder signed, never by what a namespace
//! user sends: an attestation that does not verify keeps only its content hash and the failure,
//! a verified one keeps only the signature that verified, and identical content is held once.

mod index;
mod reports;
mod state;
pub mod watch;

#[cfg(test)]
mod tests;

pub use index::{CannotDecide, Index, NotReady};
pub use reports::{
    AttestationReport, AttestorReport, InvalidObject, PolicyReport, Reports, SeenStatus,
};
pub use state::{Job, Outcome, TrustState};

/// The four watched resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Resource {
    /// `attestors.binauthz.dev`.
    Attestors,
    /// `imageattestations.binauthz.dev`.
    ImageAttestations,
    /// `attestationpolicies.binauthz.dev`.
    AttestationPolicies,
    /// `namespaces` (labels only).
    Namespaces,
}

impl Resource {
    /// Every watched resource.
    pub const ALL: [Self; 4] = [
        Self::Attestors,
        Self::ImageAttestations,
        Self::AttestationPolicies,
        Self::Namespaces,
    ];

    /// The plural resource name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Attestors => "attestors",
            Self::ImageAttestations => "imageattestations",
            Self::AttestationPolicies => "attestationpolicies",
            Self::Namespaces => "namespaces",
        }
    }

    fn bit(self) -> usize {
        1 << self as usize
    }
}

/// The key of a namespaced object: `namespace/name` (how attestations are named everywhere).
pub fn object_key(namespace: Option<&str>, name: &str) -> String {
    format!("{}/{name}", namespace.unwrap_or_default())
}
