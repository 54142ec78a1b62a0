//! Kubernetes `Condition`s for binauthz status: types, reasons, and a setter whose
//! `lastTransitionTime` only moves when the status really flips.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use schemars::{Schema, SchemaGenerator, json_schema};

/// Condition type: the object is usable (Attestor, AttestationPolicy).
pub const READY: &str = "Ready";
/// Condition type: the attestation's signature verified (ImageAttestation).
pub const VERIFIED: &str = "Verified";
/// Condition type: a key of the attestor expires within 30 days (Attestor).
pub const KEY_EXPIRING_SOON: &str = "KeyExpiringSoon";
/// Condition type of an Attestor whose registry signatures are synced.
pub const REGISTRY_SYNCED: &str = "RegistrySynced";

/// Condition status `"True"`.
pub const TRUE: &str = "True";
/// Condition status `"False"`.
pub const FALSE: &str = "False";

/// Schema for a `conditions` list: Kubernetes conditions as a list-map keyed by `type`.
pub fn schema(generator: &mut SchemaGenerator) -> Schema {
    let item = generator.subschema_for::<Condition>();
    json_schema!({
        "type": "array",
        "x-kubernetes-list-type": "map",
        "x-kubernetes-list-map-keys": ["type"],
        "items": item,
    })
}

/// Build a condition stamped with `now` and `generation`.
pub fn new(
    type_: &str,
    status: bool,
    reason: &str,
    message: impl Into<String>,
    generation: Option<i64>,
    now: jiff::Timestamp,
) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status: if status { TRUE } else { FALSE }.to_owned(),
        reason: reason.to_owned(),
        message: message.into(),
        observed_generation: generation,
        last_transition_time: Time(now),
    }
}

/// Insert or replace the condition of the same type, keeping the previous
/// `lastTransitionTime` unless `status` changed.
pub fn set(conditions: &mut Vec<Condition>, mut condition: Condition) {
    match conditions.iter_mut().find(|c| c.type_ == condition.type_) {
        Some(existing) => {
            if existing.status == condition.status {
                condition.last_transition_time = existing.last_transition_time.clone();
            }
            *existing = condition;
        }
        None => conditions.push(condition),
    }
}

/// Remove the condition of the given type, if present.
pub fn remove(conditions: &mut Vec<Condition>, type_: &str) {
    conditions.retain(|c| c.type_ != type_);
}

/// The condition of the given type, if present.
pub fn find<'a>(conditions: &'a [Condition], type_: &str) -> Option<&'a Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// True when the condition of the given type is present with status `"True"`.
pub fn is_true(conditions: &[Condition], type_: &str) -> bool {
    find(conditions, type_).is_some_and(|c| c.status == TRUE)
}

/// True when two condition lists say the same thing, ignoring order and transition times.
pub fn same(a: &[Condition], b: &[Condition]) -> bool {
    a.len() == b.len()
        && a.iter().all(|x| {
            find(b, &x.type_).is_some_and(|y| {
                x.status == y.status
                    && x.reason == y.reason
                    && x.message == y.message
                    && x.observed_generation == y.observed_generation
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(seconds: i64) -> jiff::Timestamp {
        jiff::Timestamp::from_second(seconds).unwrap()
    }

    #[test]
    fn transition_time_moves_only_on_flip() {
        let mut list = Vec::new();
        set(&mut list, new(READY, true, "Ok", "fine", Some(1), at(100)));
        set(
            &mut list,
            new(READY, true, "Ok", "still fine", Some(2), at(200)),
        );
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].last_transition_time, Time(at(100)));
        assert_eq!(list[0].message, "still fine");
        assert_eq!(list[0].observed_generation, Some(2));
        set(
            &mut list,
            new(READY, false, "Broken", "bad", Some(3), at(300)),
        );
        assert_eq!(list[0].last_transition_time, Time(at(300)));
        assert_eq!(list[0].status, FALSE);
    }

    #[test]
    fn same_ignores_order_and_time() {
        let a = vec![
            new(READY, true, "Ok", "m", Some(1), at(1)),
            new(
                KEY_EXPIRING_SOON,
                false,
                "NoKeyExpiring",
                "m",
                Some(1),
                at(1),
            ),
        ];
        let b = vec![
            new(
                KEY_EXPIRING_SOON,
                false,
                "NoKeyExpiring",
                "m",
                Some(1),
                at(9),
            ),
            new(READY, true, "Ok", "m", Some(1), at(9)),
        ];
        assert!(same(&a, &b));
        let c = vec![
            new(
                KEY_EXPIRING_SOON,
                false,
                "NoKeyExpiring",
                "m",
                Some(1),
                at(9),
            ),
            new(READY, false, "Ok", "m", Some(1), at(9)),
        ];
        assert!(!same(&a, &c));
        assert!(!same(&a, &a[..1]));
    }

    #[test]
    fn remove_and_find() {
        let mut list = vec![new(READY, true, "Ok", "m", None, at(1))];
        assert!(is_true(&list, READY));
        remove(&mut list, READY);
        assert!(find(&list, READY).is_none());
        assert!(!is_true(&list, READY));
    }
}
