//! The controller's own record of verified attestations: a [`TrustIndex`] filled by the
//! attestation reconciler from its own `verify::verify` results (never from `status`, which
//! anyone with the right RBAC could write), read by continuous validation.

use std::collections::HashSet;
use std::sync::{PoisonError, RwLock, RwLockReadGuard};

use tokio::sync::Notify;

use crate::image::Digest;
use crate::policy::TrustIndex;

/// The trust index of the leader, with a signal for every change and a warm-up tracker.
#[derive(Debug, Default)]
pub struct VerifiedAttestations {
    index: RwLock<TrustIndex>,
    warmup: std::sync::Mutex<Warmup>,
    changed: Notify,
}

/// Which attestations have been judged since start, until every known one has been.
#[derive(Debug, Default)]
struct Warmup {
    warm: bool,
    judged: HashSet<String>,
}

impl VerifiedAttestations {
    /// Record the verification result of the attestation `key` (`namespace/name`):
    /// `Some((attestor, digest))` when a signature verified, `None` when none did (or the
    /// object cannot be read). Returns whether the index changed; a change is signalled.
    pub fn record(&self, key: &str, verified: Option<(&str, &Digest)>) -> bool {
        self.judged(key);
        let changed = {
            let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
            match verified {
                Some((attestor, digest)) if index.records(key, attestor, digest) => false,
                Some((attestor, digest)) => {
                    let had = index.contains_key(key);
                    match index.insert(attestor, digest, key) {
                        Ok(()) => true,
                        Err(error) => {
                            // `insert` dropped the old entry of this key before refusing.
                            tracing::warn!(attestation = key, %error, "cannot index attestation");
                            had
                        }
                    }
                }
                None => index.remove(key),
            }
        };
        if changed {
            self.changed.notify_one();
        }
        changed
    }

    /// Forget every attestation whose key `keep` refuses (deleted ones); returns how many.
    /// Not signalled as a change.
    pub fn retain(&self, keep: impl Fn(&str) -> bool) -> usize {
        let mut index = self.index.write().unwrap_or_else(PoisonError::into_inner);
        let gone: Vec<String> = index
            .attestation_keys()
            .filter(|k| !keep(k))
            .map(str::to_owned)
            .collect();
        for key in &gone {
            index.remove(key);
        }
        gone.len()
    }

    /// The index, for reading (hold it briefly: the reconciler waits to write).
    pub fn read(&self) -> RwLockReadGuard<'_, TrustIndex> {
        self.index.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Resolves after the index changed (a change while nobody waits is kept for the next
    /// call).
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn judged(&self, key: &str) {
        let mut warmup = self.warmup.lock().unwrap_or_else(PoisonError::into_inner);
        if !warmup.warm {
            warmup.judged.insert(key.to_owned());
        }
    }

    /// Whether the index has been found warm (see [`VerifiedAttestations::check_warm`]).
    pub fn is_warm(&self) -> bool {
        self.warmup
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .warm
    }

    /// Whether every attestation in `keys` (the attestations that exist now) has been judged
    /// since start. Until then the index may lack trust it will have, and a pod it judges
    /// could be reported by mistake. Once true it stays true.
    pub fn check_warm<S: AsRef<str>>(&self, keys: impl IntoIterator<Item = S>) -> bool {
        let mut warmup = self.warmup.lock().unwrap_or_else(PoisonError::into_inner);
        if !warmup.warm && keys.into_iter().all(|k| warmup.judged.contains(k.as_ref())) {
            warmup.warm = true;
            warmup.judged = HashSet::new();
        }
        warmup.warm
    }

    /// Consider the index warm from now on (after waiting long enough for stragglers).
    pub fn assume_warm(&self) {
        let mut warmup = self.warmup.lock().unwrap_or_else(PoisonError::into_inner);
        warmup.warm = true;
        warmup.judged = HashSet::new();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Attestations as _;

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    #[tokio::test]
    async fn records_changes_only_and_signals_them() {
        let v = VerifiedAttestations::default();
        assert!(v.record("ns/a", Some(("build", &digest('a')))));
        // The change was signalled (the permit waits for the next call).
        tokio::time::timeout(std::time::Duration::from_secs(1), v.changed())
            .await
            .unwrap();
        assert!(v.read().is_attested("build", &digest('a')));
        assert!(
            !v.record("ns/a", Some(("build", &digest('a')))),
            "same again"
        );
        assert!(
            tokio::time::timeout(std::time::Duration::from_millis(20), v.changed())
                .await
                .is_err(),
            "no change, no signal"
        );
        assert!(
            v.record("ns/a", Some(("build", &digest('b')))),
            "new digest"
        );
        assert!(!v.read().is_attested("build", &digest('a')));
        assert!(v.record("ns/a", None), "failed now");
        assert!(!v.record("ns/a", None));
        assert!(v.read().is_empty());
    }

    #[test]
    fn retain_forgets_deleted_attestations() {
        let v = VerifiedAttestations::default();
        v.record("ns/a", Some(("build", &digest('a'))));
        v.record("ns/b", Some(("build", &digest('b'))));
        assert_eq!(v.retain(|k| k == "ns/b"), 1);
        assert!(!v.read().is_attested("build", &digest('a')));
        assert!(v.read().is_attested("build", &digest('b')));
        assert_eq!(v.retain(|_| true), 0);
    }

    #[test]
    fn warm_once_every_existing_attestation_was_judged() {
        let v = VerifiedAttestations::default();
        assert!(v.check_warm(Vec::<String>::new()), "nothing to judge");
        let v = VerifiedAttestations::default();
        v.record("ns/a", Some(("build", &digest('a'))));
        assert!(!v.check_warm(["ns/a", "ns/b"]));
        assert!(!v.is_warm());
        v.record("ns/b", None);
        assert!(v.check_warm(["ns/a", "ns/b"]));
        assert!(v.check_warm(["ns/c"]), "stays warm");
        assert!(v.is_warm());
        let v = VerifiedAttestations::default();
        v.assume_warm();
        assert!(v.check_warm(["ns/x"]));
    }
}
