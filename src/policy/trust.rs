//! The trust index: which attestors have a verified attestation for which digest.
//!
//! The webhook never reads `status`; the controller verifies each attestation and feeds the
//! result here, and admission asks [`Attestations::is_attested`].

use std::collections::HashMap;
use std::hash::{BuildHasher as _, RandomState};
use std::sync::Arc;

use crate::image::Digest;

/// Answers "has attestor A a verified attestation for digest D?".
pub trait Attestations {
    /// Whether `attestor` (an Attestor name) vouches for `digest` with a verified attestation.
    fn is_attested(&self, attestor: &str, digest: &Digest) -> bool;
}

/// Why an attestation could not be put in the index.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustIndexError {
    /// More distinct attestor names than the index can number.
    #[error("too many distinct attestor names in the trust index")]
    TooManyAttestors,
}

/// One (digest, attestor) pair; 36 bytes, so an entry stays far under 300 bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct Entry {
    digest: [u8; 32],
    attestor: u32,
}

/// Verified attestations, by digest and attestor, with each attestation's key to undo it.
///
/// Several attestations may back the same (digest, attestor) pair; the pair stays trusted until
/// the last of them is removed.
#[derive(Clone, Debug, Default)]
pub struct TrustIndex {
    /// Interned attestor names; an attestor's id is its position.
    names: Vec<Arc<str>>,
    ids: HashMap<Arc<str>, u32>,
    /// Distinct digests per attestor id, for status.
    digests_per_attestor: Vec<usize>,
    /// How many attestations back each pair.
    entries: HashMap<Entry, u32>,
    /// Attestation key (`namespace/name`), as [`KeyHash`], to the pair it backs.
    keys: HashMap<KeyHash, Entry>,
    /// The key of [`KeyHash`], random per index.
    hasher: RandomState,
}

/// An attestation key (`namespace/name`) as a 64-bit SipHash with a random key: 8 bytes in
/// place of the name and its allocation (names are never read back). A collision (about 3 in
/// 100 million at a million attestations, and unpredictable without the key) could only drop a
/// pair's trust, failing closed (one name's record replaces or removes the other's), never
/// add trust: every recorded pair was verified.
type KeyHash = u64;

impl TrustIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Record that the attestation `attestation_key` (`namespace/name`) of `attestor` verified for
    /// `digest`; whatever that key recorded before is replaced.
    pub fn insert(
        &mut self,
        attestor: &str,
        digest: &Digest,
        attestation_key: &str,
    ) -> Result<(), TrustIndexError> {
        // An update replaces the attestation, even when the new content cannot be indexed.
        self.remove(attestation_key);
        let entry = Entry {
            digest: *digest.as_bytes(),
            attestor: self.intern(attestor)?,
        };
        let count = self.entries.entry(entry).or_insert(0);
        *count += 1;
        if *count == 1 {
            self.bump_digests(entry.attestor, true);
        }
        self.keys.insert(self.key_hash(attestation_key), entry);
        Ok(())
    }

    fn key_hash(&self, attestation_key: &str) -> KeyHash {
        self.hasher.hash_one(attestation_key)
    }

    /// Forget the attestation `attestation_key`; returns whether it was there.
    pub fn remove(&mut self, attestation_key: &str) -> bool {
        let Some(entry) = self.keys.remove(&self.key_hash(attestation_key)) else {
            return false;
        };
        if let Some(count) = self.entries.get_mut(&entry) {
            *count -= 1;
            if *count == 0 {
                self.entries.remove(&entry);
                self.bump_digests(entry.attestor, false);
            }
        }
        true
    }

    /// Forget everything (e.g. before a full resync).
    pub fn clear(&mut self) {
        self.entries.clear();
        self.keys.clear();
        self.digests_per_attestor.iter_mut().for_each(|n| *n = 0);
    }

    /// Number of attestations recorded.
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    /// Whether no attestation is recorded.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Whether the attestation `attestation_key` is recorded.
    pub fn contains_key(&self, attestation_key: &str) -> bool {
        self.keys.contains_key(&self.key_hash(attestation_key))
    }

    /// Whether the attestation `attestation_key` is recorded as backing exactly `attestor`
    /// and `digest` (so recording it again would change nothing).
    pub fn records(&self, attestation_key: &str, attestor: &str, digest: &Digest) -> bool {
        let (Some(entry), Some(&id)) = (
            self.keys.get(&self.key_hash(attestation_key)),
            self.ids.get(attestor),
        ) else {
            return false;
        };
        entry.attestor == id && entry.digest == *digest.as_bytes()
    }

    /// The attestors whose verified attestations vouch for `digest` (one lookup per attestor
    /// name: for audit records, not for decisions).
    pub fn attestors_of(&self, digest: &Digest) -> Vec<String> {
        self.names
            .iter()
            .enumerate()
            .filter(|(id, _)| {
                u32::try_from(*id).is_ok_and(|attestor| {
                    self.entries.contains_key(&Entry {
                        digest: *digest.as_bytes(),
                        attestor,
                    })
                })
            })
            .map(|(_, name)| name.to_string())
            .collect()
    }

    /// Number of distinct digests `attestor` vouches for.
    pub fn verified_digest_count(&self, attestor: &str) -> usize {
        self.ids
            .get(attestor)
            .and_then(|&id| self.digests_per_attestor.get(id as usize))
            .copied()
            .unwrap_or(0)
    }

    /// The digests `attestor` vouches for, as sorted `sha256:<hex>` (a scan: for status, not
    /// for admission).
    pub fn attested_digests(&self, attestor: &str) -> Vec<String> {
        let Some(&id) = self.ids.get(attestor) else {
            return Vec::new();
        };
        let mut out: Vec<String> = self
            .entries
            .keys()
            .filter(|e| e.attestor == id)
            .map(|e| Digest::from_sha256(e.digest).as_str().to_owned())
            .collect();
        out.sort_unstable();
        out
    }

    fn intern(&mut self, attestor: &str) -> Result<u32, TrustIndexError> {
        if let Some(&id) = self.ids.get(attestor) {
            return Ok(id);
        }
        let id = u32::try_from(self.names.len()).map_err(|_| TrustIndexError::TooManyAttestors)?;
        let name: Arc<str> = attestor.into();
        self.names.push(name.clone());
        self.ids.insert(name, id);
        self.digests_per_attestor.push(0);
        Ok(id)
    }

    fn bump_digests(&mut self, attestor: u32, up: bool) {
        if let Some(n) = self.digests_per_attestor.get_mut(attestor as usize) {
            *n = if up { *n + 1 } else { n.saturating_sub(1) };
        }
    }
}

impl Attestations for TrustIndex {
    fn is_attested(&self, attestor: &str, digest: &Digest) -> bool {
        let Some(&id) = self.ids.get(attestor) else {
            return false;
        };
        self.entries.contains_key(&Entry {
            digest: *digest.as_bytes(),
            attestor: id,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn insert_then_lookup() {
        let mut t = TrustIndex::new();
        assert!(t.is_empty());
        t.insert("build", &digest('a'), "ns/att1").unwrap();
        assert!(t.is_attested("build", &digest('a')));
        assert!(!t.is_attested("build", &digest('b')));
        assert!(!t.is_attested("qa", &digest('a')));
        assert_eq!(t.len(), 1);
        assert!(t.contains_key("ns/att1"));
        assert_eq!(t.verified_digest_count("build"), 1);
        assert_eq!(t.verified_digest_count("qa"), 0);
        assert_eq!(
            t.attested_digests("build"),
            vec![format!("sha256:{}", "a".repeat(64))]
        );
        assert!(t.attested_digests("qa").is_empty());
    }

    #[test]
    fn remove_forgets_only_that_attestation() {
        let mut t = TrustIndex::new();
        t.insert("build", &digest('a'), "ns/att1").unwrap();
        t.insert("build", &digest('a'), "ns/att2").unwrap();
        t.insert("qa", &digest('a'), "ns/att3").unwrap();
        assert_eq!(t.len(), 3);
        assert_eq!(t.verified_digest_count("build"), 1);
        // Another attestation still backs (a, build).
        assert!(t.remove("ns/att1"));
        assert!(t.is_attested("build", &digest('a')));
        assert!(!t.remove("ns/att1"), "second remove is a no-op");
        assert!(t.remove("ns/att2"));
        assert!(!t.is_attested("build", &digest('a')));
        assert_eq!(t.verified_digest_count("build"), 0);
        assert!(t.is_attested("qa", &digest('a')));
        assert!(!t.remove("ns/unknown"));
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn insert_with_the_same_key_replaces() {
        let mut t = TrustIndex::new();
        t.insert("build", &digest('a'), "ns/att").unwrap();
        // Updated to another digest and attestor.
        t.insert("qa", &digest('b'), "ns/att").unwrap();
        assert!(!t.is_attested("build", &digest('a')));
        assert!(t.is_attested("qa", &digest('b')));
        assert_eq!(t.len(), 1);
        assert_eq!(t.verified_digest_count("build"), 0);
        // Re-inserting identical content is idempotent.
        t.insert("qa", &digest('b'), "ns/att").unwrap();
        assert_eq!(t.len(), 1);
        assert!(t.remove("ns/att"));
        assert!(!t.is_attested("qa", &digest('b')));
    }

    #[test]
    fn records_names_the_exact_pair() {
        let mut t = TrustIndex::new();
        t.insert("build", &digest('a'), "ns/att").unwrap();
        t.insert("qa", &digest('b'), "ns/other").unwrap();
        assert!(t.records("ns/att", "build", &digest('a')));
        assert!(!t.records("ns/att", "build", &digest('b')));
        assert!(!t.records("ns/att", "qa", &digest('a')));
        assert!(!t.records("ns/missing", "build", &digest('a')));
        assert!(t.contains_key("ns/other") && !t.contains_key("ns/missing"));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn clear_forgets_everything() {
        let mut t = TrustIndex::new();
        t.insert("build", &digest('a'), "ns/a").unwrap();
        t.clear();
        assert!(t.is_empty());
        assert!(!t.is_attested("build", &digest('a')));
        assert_eq!(t.verified_digest_count("build"), 0);
        t.insert("build", &digest('a'), "ns/a").unwrap();
        assert_eq!(t.verified_digest_count("build"), 1);
    }
}
