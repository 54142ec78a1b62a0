//! The status of an Attestor, from its parsed keys: per-key facts, `Ready` and
//! `KeyExpiringSoon`, and the Events and metrics a status calls for.

use crate::crd::conditions::{self, KEY_EXPIRING_SOON, READY, REGISTRY_SYNCED};
use crate::crd::{AttestorStatus, KeyStatus, RegistrySyncStatus};
use crate::verify::AttestorKeys;

/// Ready reason: every key parses and at least one can verify signatures.
pub const REASON_KEYS_READY: &str = "KeysReady";
/// Ready reason: a key does not parse or is inconsistent.
pub const REASON_INVALID_KEY: &str = "InvalidKey";
/// Ready reason: no key can verify signatures (none given, or all expired/revoked/weak).
pub const REASON_NO_USABLE_KEY: &str = "NoUsableKey";
/// KeyExpiringSoon reason when a usable key expires within the warning window.
pub const REASON_KEY_EXPIRING_SOON: &str = "KeyExpiringSoon";
/// KeyExpiringSoon reason when no usable key expires within the warning window.
pub const REASON_NO_KEY_EXPIRING: &str = "NoKeyExpiringSoon";
/// RegistrySynced reason: every repository synced.
pub const REASON_SYNCED: &str = "Synced";
/// RegistrySynced reason: a repository could not be read (what it had is kept).
pub const REASON_SYNC_FAILED: &str = "SyncFailed";
/// How far ahead an expiring key raises `KeyExpiringSoon`.
pub const EXPIRY_WARNING: jiff::SignedDuration = jiff::SignedDuration::from_hours(30 * 24);

/// One key as the status builder sees it: its reported status and whether it parsed.
#[derive(Clone, Debug, PartialEq)]
pub struct KeyReport {
    /// What goes to `status.keys[]`.
    pub status: KeyStatus,
    /// False when the key could not be parsed or is inconsistent with its id.
    pub parsed: bool,
}

/// Per-key reports of parsed attestor keys at time `now`.
pub fn key_reports(keys: &AttestorKeys, now: jiff::Timestamp) -> Vec<KeyReport> {
    keys.keys
        .iter()
        .zip(keys.key_statuses(now))
        .map(|(loaded, status)| KeyReport {
            status,
            parsed: loaded.key.is_ok(),
        })
        .collect()
}

fn key_label(index: usize, key: &KeyStatus) -> String {
    match &key.id {
        Some(id) => format!("spec.publicKeys[{index}] ({id})"),
        None => format!("spec.publicKeys[{index}]"),
    }
}

/// The status an attestor should have, from its key reports. Conditions keep their
/// `lastTransitionTime` from `current` unless their status flips.
pub fn build_status(
    reports: &[KeyReport],
    registry: Option<&RegistrySyncStatus>,
    generation: Option<i64>,
    current: Option<&AttestorStatus>,
    now: jiff::Timestamp,
) -> AttestorStatus {
    let usable = reports.iter().filter(|r| r.status.can_sign).count();
    let invalid: Vec<String> = reports
        .iter()
        .enumerate()
        .filter(|(_, r)| !r.parsed)
        .map(|(i, r)| {
            format!(
                "{}: {}",
                key_label(i, &r.status),
                r.status.problem.as_deref().unwrap_or("cannot be parsed")
            )
        })
        .collect();
    let ready = if !invalid.is_empty() {
        conditions::new(
            READY,
            false,
            REASON_INVALID_KEY,
            format!("invalid key: {}", invalid.join("; ")),
            generation,
            now,
        )
    } else if reports.is_empty() {
        conditions::new(
            READY,
            false,
            REASON_NO_USABLE_KEY,
            "spec.publicKeys is empty; add a PGP or PKIX public key",
            generation,
            now,
        )
    } else if usable == 0 {
        let why: Vec<String> = reports
            .iter()
            .enumerate()
            .map(|(i, r)| {
                format!(
                    "{}: {}",
                    key_label(i, &r.status),
                    r.status.problem.as_deref().unwrap_or("cannot sign")
                )
            })
            .collect();
        conditions::new(
            READY,
            false,
            REASON_NO_USABLE_KEY,
            format!("no key can verify signatures: {}", why.join("; ")),
            generation,
            now,
        )
    } else {
        conditions::new(
            READY,
            true,
            REASON_KEYS_READY,
            format!("{usable} of {} keys can verify signatures", reports.len()),
            generation,
            now,
        )
    };
    let expiring: Vec<String> = reports
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let expires = r.status.expires.as_ref()?.0;
            (r.status.can_sign && expires > now && expires.duration_since(now) <= EXPIRY_WARNING)
                .then(|| {
                    format!(
                        "{} expires at {}",
                        key_label(i, &r.status),
                        expires.strftime("%Y-%m-%dT%H:%M:%SZ")
                    )
                })
        })
        .collect();
    let expiring = if expiring.is_empty() {
        conditions::new(
            KEY_EXPIRING_SOON,
            false,
            REASON_NO_KEY_EXPIRING,
            "no usable key expires within 30 days",
            generation,
            now,
        )
    } else {
        conditions::new(
            KEY_EXPIRING_SOON,
            true,
            REASON_KEY_EXPIRING_SOON,
            format!("{}; add a new key before then", expiring.join("; ")),
            generation,
            now,
        )
    };
    let mut list = current.map(|s| s.conditions.clone()).unwrap_or_default();
    list.retain(|c| c.type_ == READY || c.type_ == KEY_EXPIRING_SOON || c.type_ == REGISTRY_SYNCED);
    conditions::set(&mut list, ready);
    conditions::set(&mut list, expiring);
    match registry {
        Some(sync) => conditions::set(&mut list, registry_condition(sync, generation, now)),
        None => conditions::remove(&mut list, REGISTRY_SYNCED),
    }
    AttestorStatus {
        registry: registry.cloned(),
        observed_generation: generation,
        conditions: list,
        usable_keys: i32::try_from(usable).unwrap_or(i32::MAX),
        keys: reports.iter().map(|r| r.status.clone()).collect(),
    }
}

/// `RegistrySynced`: true when every repository synced at the last sync.
fn registry_condition(
    sync: &RegistrySyncStatus,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition {
    let failed: Vec<String> = sync
        .repositories
        .iter()
        .filter_map(|r| r.error.as_ref().map(|e| format!("{}: {e}", r.repository)))
        .collect();
    if failed.is_empty() {
        conditions::new(
            REGISTRY_SYNCED,
            true,
            REASON_SYNCED,
            format!(
                "{} signatures from {} repositories",
                sync.signatures,
                sync.repositories.len()
            ),
            generation,
            now,
        )
    } else {
        conditions::new(
            REGISTRY_SYNCED,
            false,
            REASON_SYNC_FAILED,
            format!(
                "{}; what was synced before is kept and still admits",
                failed.join("; ")
            ),
            generation,
            now,
        )
    }
}

/// True when `new` says something `current` does not (transition times aside).
pub fn differs(current: Option<&AttestorStatus>, new: &AttestorStatus) -> bool {
    current.is_none_or(|c| {
        c.observed_generation != new.observed_generation
            || c.usable_keys != new.usable_keys
            || c.keys != new.keys
            || c.registry != new.registry
            || !conditions::same(&c.conditions, &new.conditions)
    })
}

/// The Warning Events a status calls for: (reason, note).
pub fn problems(status: &AttestorStatus) -> Vec<(&'static str, String)> {
    let mut out = Vec::new();
    if let Some(ready) = conditions::find(&status.conditions, READY)
        && ready.status == conditions::FALSE
    {
        let reason = if ready.reason == REASON_INVALID_KEY {
            REASON_INVALID_KEY
        } else {
            REASON_NO_USABLE_KEY
        };
        out.push((reason, ready.message.clone()));
    }
    if let Some(synced) = conditions::find(&status.conditions, REGISTRY_SYNCED)
        && synced.status == conditions::FALSE
    {
        out.push((REASON_SYNC_FAILED, synced.message.clone()));
    }
    if conditions::is_true(&status.conditions, KEY_EXPIRING_SOON)
        && let Some(c) = conditions::find(&status.conditions, KEY_EXPIRING_SOON)
    {
        out.push((REASON_KEY_EXPIRING_SOON, c.message.clone()));
    }
    out
}

/// The expiry (Unix seconds) of every key that has one, by key id (or position without one),
/// for the `binauthz_key_expiry_seconds` metric.
pub fn key_expiries(reports: &[KeyReport]) -> Vec<(String, i64)> {
    reports
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let at = r.status.expires.as_ref()?.0.as_second();
            let key = r
                .status
                .id
                .clone()
                .unwrap_or_else(|| format!("spec.publicKeys[{i}]"));
            Some((key, at))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn good(id: &str, expires: Option<&str>) -> KeyReport {
        KeyReport {
            status: KeyStatus {
                id: Some(id.into()),
                kind: "PGP".into(),
                algorithm: Some("EdDSA".into()),
                fingerprint: Some(id.into()),
                expires: expires.map(|e| Time(at(e))),
                can_sign: true,
                ..KeyStatus::default()
            },
            parsed: true,
        }
    }

    fn expired(id: &str) -> KeyReport {
        let mut r = good(id, Some("2020-01-01T00:00:00Z"));
        r.status.can_sign = false;
        r.status.problem = Some("the key expired at 2020-01-01".into());
        r
    }

    fn broken() -> KeyReport {
        KeyReport {
            status: KeyStatus {
                kind: "PKIX".into(),
                can_sign: false,
                problem: Some("spec.publicKeys[1].pkixPublicKey: not a PEM public key".into()),
                ..KeyStatus::default()
            },
            parsed: false,
        }
    }

    const NOW: &str = "2026-03-01T00:00:00Z";

    #[test]
    fn ready_with_a_usable_key() {
        let s = build_status(&[good("AAAA", None)], None, Some(3), None, at(NOW));
        let ready = conditions::find(&s.conditions, READY).unwrap();
        assert_eq!(ready.status, "True");
        assert_eq!(ready.reason, REASON_KEYS_READY);
        assert_eq!(ready.observed_generation, Some(3));
        assert_eq!(s.usable_keys, 1);
        assert_eq!(s.keys[0].fingerprint.as_deref(), Some("AAAA"));
        assert!(!conditions::is_true(&s.conditions, KEY_EXPIRING_SOON));
        assert!(problems(&s).is_empty());
    }

    #[test]
    fn invalid_key_names_the_key_even_beside_a_good_one() {
        let s = build_status(
            &[good("AAAA", None), broken()],
            None,
            Some(1),
            None,
            at(NOW),
        );
        let ready = conditions::find(&s.conditions, READY).unwrap();
        assert_eq!(ready.status, "False");
        assert_eq!(ready.reason, REASON_INVALID_KEY);
        assert!(
            ready.message.contains("spec.publicKeys[1]"),
            "{}",
            ready.message
        );
        assert!(ready.message.contains("not a PEM public key"));
        assert_eq!(s.usable_keys, 1);
        assert_eq!(problems(&s)[0].0, REASON_INVALID_KEY);
    }

    #[test]
    fn no_usable_key_says_why() {
        let s = build_status(&[expired("BBBB")], None, Some(1), None, at(NOW));
        let ready = conditions::find(&s.conditions, READY).unwrap();
        assert_eq!(ready.reason, REASON_NO_USABLE_KEY);
        assert!(
            ready.message.contains("(BBBB): the key expired"),
            "{}",
            ready.message
        );
        let empty = build_status(&[], None, Some(1), None, at(NOW));
        let ready = conditions::find(&empty.conditions, READY).unwrap();
        assert_eq!(ready.reason, REASON_NO_USABLE_KEY);
        assert!(ready.message.contains("spec.publicKeys is empty"));
    }

    #[test]
    fn expiring_soon_warns_only_within_thirty_days() {
        let soon = build_status(
            &[good("AAAA", Some("2026-03-20T00:00:00Z"))],
            None,
            Some(1),
            None,
            at(NOW),
        );
        let c = conditions::find(&soon.conditions, KEY_EXPIRING_SOON).unwrap();
        assert_eq!(c.status, "True");
        assert!(
            c.message.contains("(AAAA) expires at 2026-03-20T00:00:00Z"),
            "{}",
            c.message
        );
        assert!(conditions::is_true(&soon.conditions, READY));
        assert_eq!(problems(&soon).len(), 1);
        let later = build_status(
            &[good("AAAA", Some("2026-06-01T00:00:00Z"))],
            None,
            Some(1),
            None,
            at(NOW),
        );
        assert!(!conditions::is_true(&later.conditions, KEY_EXPIRING_SOON));
    }

    #[test]
    fn key_expiries_are_unix_seconds_by_key() {
        let mut anonymous = good("X", Some("2026-03-20T00:00:00Z"));
        anonymous.status.id = None;
        let reports = [
            good("AAAA", Some("2026-03-20T00:00:00Z")),
            good("BBBB", None),
            expired("CCCC"),
            anonymous,
        ];
        assert_eq!(
            key_expiries(&reports),
            [
                ("AAAA".to_owned(), 1_773_964_800),
                ("CCCC".to_owned(), 1_577_836_800),
                ("spec.publicKeys[3]".to_owned(), 1_773_964_800),
            ]
        );
    }

    #[test]
    fn unchanged_status_is_not_written_and_keeps_its_time() {
        let first = build_status(&[good("AAAA", None)], None, Some(1), None, at(NOW));
        let again = build_status(
            &[good("AAAA", None)],
            None,
            Some(1),
            Some(&first),
            at("2026-03-02T00:00:00Z"),
        );
        assert!(!differs(Some(&first), &again));
        assert_eq!(
            conditions::find(&again.conditions, READY)
                .unwrap()
                .last_transition_time,
            Time(at(NOW))
        );
        let flipped = build_status(
            &[expired("AAAA")],
            None,
            Some(2),
            Some(&first),
            at("2026-03-02T00:00:00Z"),
        );
        assert!(differs(Some(&first), &flipped));
        assert_eq!(
            conditions::find(&flipped.conditions, READY)
                .unwrap()
                .last_transition_time,
            Time(at("2026-03-02T00:00:00Z"))
        );
        assert!(differs(None, &first));
    }
}
