//! ImageAttestation reconciler: verify the signature against the attestor's keys now, and
//! report `Verified` with the precise reason.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kube::core::DeserializeGuard;
use kube::runtime::controller::Action;
use kube::{Api, ResourceExt as _};

use super::{Context, Error, REVERIFY_INTERVAL, bounded, status};
use crate::crd::conditions::{self, VERIFIED};
use crate::crd::{Attestor, ImageAttestation, ImageAttestationStatus};
use crate::verify::{self, AttestorKeys, Failure, Verified};

/// Verified reason when a signature verified.
pub const REASON_VERIFIED: &str = "Verified";

/// How long a cached attestor is trusted without a watch event (a safety net for events
/// missed while a watch was down).
const CACHE_TTL: Duration = Duration::from_secs(600);

#[derive(Debug, Default)]
struct CacheEntry {
    epoch: u64,
    value: Option<(Option<Arc<AttestorKeys>>, Instant)>,
}

/// Parsed attestor keys by attestor name. A watch event on an attestor drops its entry (and
/// bumps its epoch) before the dependent attestations are queued; a reconcile that misses
/// reads the attestor from the API server and stores it only if no event came meanwhile.
#[derive(Debug, Default)]
pub struct AttestorCache {
    entries: Mutex<HashMap<String, CacheEntry>>,
}

/// The outcome of a cache lookup.
#[derive(Debug)]
pub enum Lookup {
    /// The attestor's keys (`None`: the attestor does not exist).
    Hit(Option<Arc<AttestorKeys>>),
    /// Not cached; fetch, then [`AttestorCache::fill`] with this epoch.
    Miss(u64),
}

impl AttestorCache {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, CacheEntry>> {
        self.entries
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Forget the attestor: it changed.
    pub fn invalidate(&self, name: &str) {
        let mut entries = self.lock();
        let entry = entries.entry(name.to_owned()).or_default();
        entry.epoch = entry.epoch.wrapping_add(1);
        entry.value = None;
    }

    /// Look the attestor up at time `now`.
    pub fn lookup(&self, name: &str, now: Instant) -> Lookup {
        let entries = self.lock();
        match entries.get(name) {
            Some(CacheEntry {
                value: Some((keys, at)),
                ..
            }) if now.duration_since(*at) < CACHE_TTL => Lookup::Hit(keys.clone()),
            Some(entry) => Lookup::Miss(entry.epoch),
            None => Lookup::Miss(0),
        }
    }

    /// Store what was fetched, unless the attestor changed since `epoch` was read.
    pub fn fill(&self, name: &str, epoch: u64, keys: Option<Arc<AttestorKeys>>, now: Instant) {
        let mut entries = self.lock();
        let entry = entries.entry(name.to_owned()).or_default();
        if entry.epoch == epoch {
            entry.value = Some((keys, now));
        }
    }

    /// The attestor's keys, from the cache or the API server.
    pub async fn get(
        &self,
        api: &Api<DeserializeGuard<Attestor>>,
        name: &str,
    ) -> Result<Option<Arc<AttestorKeys>>, Error> {
        let epoch = match self.lookup(name, Instant::now()) {
            Lookup::Hit(keys) => return Ok(keys),
            Lookup::Miss(epoch) => epoch,
        };
        let fetched = bounded(api.get_opt(name)).await?;
        let keys = fetched.map(|object| {
            Arc::new(match &object.0 {
                Ok(attestor) => AttestorKeys::load(name, &attestor.spec),
                // An attestor that cannot be read vouches for nothing.
                Err(_) => AttestorKeys {
                    name: name.to_owned(),
                    keys: Vec::new(),
                },
            })
        });
        self.fill(name, epoch, keys.clone(), Instant::now());
        Ok(keys)
    }
}

/// The status an attestation should have after verification. The `Verified` condition keeps
/// its `lastTransitionTime` from `current` unless it flips.
pub fn build_status(
    result: &Result<Verified, Failure>,
    attestor: &str,
    generation: Option<i64>,
    current: Option<&ImageAttestationStatus>,
    now: jiff::Timestamp,
) -> ImageAttestationStatus {
    let (condition, key_id, digest) = match result {
        Ok(verified) => (
            conditions::new(
                VERIFIED,
                true,
                REASON_VERIFIED,
                format!(
                    "signature by key {} of Attestor {attestor} verifies {}",
                    verified.key_id,
                    verified.digest.as_str()
                ),
                generation,
                now,
            ),
            Some(verified.key_id.clone()),
            Some(verified.digest.as_str().to_owned()),
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
    let mut list = current.map(|s| s.conditions.clone()).unwrap_or_default();
    list.retain(|c| c.type_ == VERIFIED);
    conditions::set(&mut list, condition);
    ImageAttestationStatus {
        observed_generation: generation,
        conditions: list,
        verified_key_id: key_id,
        digest,
    }
}

/// True when `new` says something `current` does not (transition times aside).
pub fn differs(current: Option<&ImageAttestationStatus>, new: &ImageAttestationStatus) -> bool {
    current.is_none_or(|c| {
        c.observed_generation != new.observed_generation
            || c.verified_key_id != new.verified_key_id
            || c.digest != new.digest
            || !conditions::same(&c.conditions, &new.conditions)
    })
}

/// The key of an attestation in the trust index: `namespace/name`.
pub fn attestation_key<K: kube::Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.meta().namespace.as_deref().unwrap_or_default(),
        object.meta().name.as_deref().unwrap_or_default()
    )
}

/// Reconcile one ImageAttestation.
pub async fn reconcile(
    object: Arc<DeserializeGuard<ImageAttestation>>,
    ctx: Arc<Context>,
) -> Result<Action, Error> {
    let key = attestation_key(&*object);
    let attestation = match &object.0 {
        Ok(attestation) => attestation,
        Err(_) => {
            // An attestation that cannot be read vouches for nothing.
            ctx.verified.record(&key, None);
            ctx.report_invalid(&*object).await;
            return Ok(Action::await_change());
        }
    };
    let name = attestation.name_any();
    let namespace = attestation.namespace().unwrap_or_default();
    let attestors = Api::<DeserializeGuard<Attestor>>::all(ctx.client.clone());
    let keys = ctx
        .attestors
        .get(&attestors, &attestation.spec.attestor)
        .await?;
    let now = super::now();
    let spec = attestation.spec.clone();
    // Signature checks are CPU work: keep them off the async workers.
    let result =
        tokio::task::spawn_blocking(move || verify::verify(&spec, keys.as_deref(), now)).await?;
    // The controller's own result, never `status`, is what continuous validation trusts.
    ctx.verified.record(
        &key,
        result
            .as_ref()
            .ok()
            .map(|v| (attestation.spec.attestor.as_str(), &v.digest)),
    );
    let status = build_status(
        &result,
        &attestation.spec.attestor,
        attestation.metadata.generation,
        attestation.status.as_ref(),
        now,
    );
    if differs(attestation.status.as_ref(), &status) {
        let api =
            Api::<DeserializeGuard<ImageAttestation>>::namespaced(ctx.client.clone(), &namespace);
        status::apply(&api, &name, &status).await?;
        match &result {
            Ok(v) => tracing::info!(
                attestation = %name, %namespace, key = %v.key_id, digest = v.digest.as_str(),
                "attestation verified"
            ),
            Err(f) => tracing::info!(
                attestation = %name, %namespace, reason = f.reason.as_str(), message = %f.message,
                "attestation not verified"
            ),
        }
    }
    ctx.backoff.reset(&super::backoff_key(&*object));
    match result {
        // Keys expire and are revoked with time: verify again later.
        Ok(_) => Ok(Action::requeue(REVERIFY_INTERVAL)),
        // A bad signature stays bad until the attestation or its attestor changes, and both
        // trigger a reconcile.
        Err(_) => Ok(Action::await_change()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::Reason;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    fn at(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn failure(reason: Reason, message: &str) -> Result<Verified, Failure> {
        Err(Failure {
            reason,
            message: message.into(),
        })
    }

    #[test]
    fn failure_reports_the_precise_reason() {
        let s = build_status(
            &failure(
                Reason::KeyNotFound,
                "spec.signatures[0].publicKeyId X is not a key of Attestor a",
            ),
            "a",
            Some(2),
            None,
            at("2026-01-01T00:00:00Z"),
        );
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
        let url = "registry.example/app@sha256:1111111111111111111111111111111111111111111111111111111111111111";
        let image = crate::image::ImageRef::parse(url).unwrap();
        let verified = Ok(Verified {
            key_id: "ABCD".into(),
            digest: *image.digest().unwrap(),
            image,
        });
        let t1 = at("2026-01-01T00:00:00Z");
        let t2 = at("2026-01-02T00:00:00Z");
        let bad = build_status(
            &failure(Reason::KeyNotFound, "m"),
            "build",
            Some(1),
            None,
            t1,
        );
        let good = build_status(&verified, "build", Some(1), Some(&bad), t2);
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
        assert_eq!(
            good.digest.as_deref(),
            Some("sha256:1111111111111111111111111111111111111111111111111111111111111111")
        );
        assert!(differs(Some(&bad), &good));
    }

    #[test]
    fn reason_changes_are_status_changes_but_time_moves_only_on_flips() {
        let t1 = at("2026-01-01T00:00:00Z");
        let t2 = at("2026-01-02T00:00:00Z");
        let bad = build_status(&failure(Reason::BadSignature, "m"), "a", Some(1), None, t1);
        let mismatch = build_status(
            &failure(Reason::DigestMismatch, "m"),
            "a",
            Some(1),
            Some(&bad),
            t2,
        );
        assert!(differs(Some(&bad), &mismatch));
        assert_eq!(
            conditions::find(&mismatch.conditions, VERIFIED)
                .unwrap()
                .last_transition_time,
            Time(t1)
        );
        let same = build_status(
            &failure(Reason::DigestMismatch, "m"),
            "a",
            Some(1),
            Some(&mismatch),
            t2,
        );
        assert!(!differs(Some(&mismatch), &same));
        let regenerated = build_status(
            &failure(Reason::DigestMismatch, "m"),
            "a",
            Some(2),
            Some(&mismatch),
            t2,
        );
        assert!(differs(Some(&mismatch), &regenerated));
    }

    #[test]
    fn cache_refuses_a_fetch_older_than_an_invalidation() {
        let cache = AttestorCache::default();
        let now = Instant::now();
        let Lookup::Miss(epoch) = cache.lookup("a", now) else {
            panic!("empty cache hit")
        };
        // A watch event arrives while the fetch is in flight.
        cache.invalidate("a");
        cache.fill("a", epoch, None, now);
        assert!(matches!(cache.lookup("a", now), Lookup::Miss(_)));
        let Lookup::Miss(epoch) = cache.lookup("a", now) else {
            panic!()
        };
        cache.fill("a", epoch, None, now);
        assert!(matches!(cache.lookup("a", now), Lookup::Hit(None)));
        assert!(matches!(
            cache.lookup("a", now + CACHE_TTL + Duration::from_secs(1)),
            Lookup::Miss(_)
        ));
        cache.invalidate("a");
        assert!(matches!(cache.lookup("a", now), Lookup::Miss(_)));
    }
}
