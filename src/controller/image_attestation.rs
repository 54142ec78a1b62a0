//! The status of an ImageAttestation, from what the trust pipeline found: `Verified` with the
//! precise reason.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::crd::ImageAttestationStatus;
use crate::crd::conditions::{self, VERIFIED};
use crate::image::Digest;
use crate::verify::Failure;

/// Verified reason when a signature verified.
pub const REASON_VERIFIED: &str = "Verified";

/// The status an attestation should have: `result` is the key that verified and the digest it
/// vouches for, or why none did. `previous` is the `Verified` condition's status and transition
/// time now: the time is kept unless the status flips.
pub fn build_status(
    result: Result<(&str, &Digest), &Failure>,
    attestor: &str,
    generation: Option<i64>,
    previous: Option<(bool, jiff::Timestamp)>,
    now: jiff::Timestamp,
) -> ImageAttestationStatus {
    let (mut condition, key_id, digest) = match result {
        Ok((key_id, digest)) => (
            conditions::new(
                VERIFIED,
                true,
                REASON_VERIFIED,
                format!(
                    "signature by key {key_id} of Attestor {attestor} verifies {}",
                    digest.as_str()
                ),
                generation,
                now,
            ),
            Some(key_id.to_owned()),
            Some(digest.as_str().to_owned()),
        ),
        Err(failure) => (
            conditions::new(
                VERIFIED,
                false,
                failure.reason.as_str(),
                failure.message.clone(),
                generation,
                now,
            ),
            None,
            None,
        ),
    };
    if let Some((was, since)) = previous
        && was == (condition.status == conditions::TRUE)
    {
        condition.last_transition_time = Time(since);
    }
    ImageAttestationStatus {
        observed_generation: generation,
        conditions: vec![condition],
        verified_key_id: key_id,
        digest,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::SeenStatus;
    use crate::verify::Reason;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn failure(reason: Reason, message: &str) -> Failure {
        Failure {
            reason,
            message: message.into(),
        }
    }

    #[test]
    fn failure_reports_the_precise_reason() {
        let f = failure(
            Reason::KeyNotFound,
            "spec.signatures[0].publicKeyId X is not a key of Attestor a",
        );
        let s = build_status(Err(&f), "a", Some(2), None, at("2026-01-01T00:00:00Z"));
        let c = conditions::find(&s.conditions, VERIFIED).unwrap();
        assert_eq!(c.status, "False");
        assert_eq!(c.reason, "KeyNotFound");
        assert!(c.message.contains("publicKeyId X"));
        assert_eq!(s.observed_generation, Some(2));
        assert_eq!(s.verified_key_id, None);
        assert_eq!(s.digest, None);
    }

    #[test]
    fn verified_names_the_key_and_digest_and_flips_from_failure() {
        let digest = Digest::parse(
            "sha256:1111111111111111111111111111111111111111111111111111111111111111",
        )
        .unwrap();
        let t1 = at("2026-01-01T00:00:00Z");
        let t2 = at("2026-01-02T00:00:00Z");
        let f = failure(Reason::KeyNotFound, "m");
        let bad = build_status(Err(&f), "build", Some(1), None, t1);
        let good = build_status(
            Ok(("ABCD", &digest)),
            "build",
            Some(1),
            Some((false, t1)),
            t2,
        );
        let c = conditions::find(&good.conditions, VERIFIED).unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("True", REASON_VERIFIED)
        );
        assert!(
            c.message.contains("key ABCD of Attestor build"),
            "{}",
            c.message
        );
        assert_eq!(c.last_transition_time, Time(t2));
        assert_eq!(good.verified_key_id.as_deref(), Some("ABCD"));
        assert_eq!(good.digest.as_deref(), Some(digest.as_str()));
        assert_ne!(
            SeenStatus::fingerprint(&bad),
            SeenStatus::fingerprint(&good)
        );
    }

    #[test]
    fn reason_changes_are_status_changes_but_time_moves_only_on_flips() {
        let t1 = at("2026-01-01T00:00:00Z");
        let t2 = at("2026-01-02T00:00:00Z");
        let bad_signature = failure(Reason::BadSignature, "m");
        let mismatch_failure = failure(Reason::DigestMismatch, "m");
        let bad = build_status(Err(&bad_signature), "a", Some(1), None, t1);
        let mismatch = build_status(Err(&mismatch_failure), "a", Some(1), Some((false, t1)), t2);
        assert_ne!(
            SeenStatus::fingerprint(&bad),
            SeenStatus::fingerprint(&mismatch)
        );
        assert_eq!(
            conditions::find(&mismatch.conditions, VERIFIED)
                .unwrap()
                .last_transition_time,
            Time(t1)
        );
        // The same outcome at another time is the same status.
        let same = build_status(Err(&mismatch_failure), "a", Some(1), Some((false, t1)), t2);
        assert_eq!(
            SeenStatus::fingerprint(&mismatch),
            SeenStatus::fingerprint(&same)
        );
        let regenerated = build_status(Err(&mismatch_failure), "a", Some(2), Some((false, t1)), t2);
        assert_ne!(
            SeenStatus::fingerprint(&mismatch),
            SeenStatus::fingerprint(&regenerated)
        );
    }
}
