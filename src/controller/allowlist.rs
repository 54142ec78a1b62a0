//! Allowlist ConfigMaps: per policy, `binauthz-allowlist-<policy>` in the operator namespace,
//! with the compiled allowlist patterns under `patterns` and, per required attestor, the
//! digests it has verified attestations for. Written for operators and auditors to read;
//! admission never reads it.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::{Api, Resource as _, ResourceExt as _};
use sha2::Digest as _;

use super::{Context, Error, MANAGED_BY_LABEL, bounded};
use crate::crd::conditions::{self, VERIFIED};
use crate::crd::{AttestationPolicy, FIELD_MANAGER, ImageAttestation};

/// Label naming the policy an allowlist ConfigMap belongs to.
pub const POLICY_LABEL: &str = "binauthz.dev/policy";
/// ConfigMap key holding the allowlist patterns, one per line.
pub const PATTERNS_KEY: &str = "patterns";
/// ConfigMap key saying how many digests were left out (attestor names, DNS subdomains, never
/// hold an underscore, so it clashes with none).
pub const TRUNCATED_KEY: &str = "_truncated";
/// Bytes of digest lines one allowlist ConfigMap holds at most (about 10,900 digests): a
/// ConfigMap is limited to 1 MiB, and a policy over more attestations than that would otherwise
/// fail to write its allowlist at all.
pub const DIGEST_BYTES_BUDGET: usize = 768 * 1024;
/// Prefix of allowlist ConfigMap names.
pub const NAME_PREFIX: &str = "binauthz-allowlist-";

/// Name of the allowlist ConfigMap of a policy (hashed when the name would be too long).
pub fn config_map_name(policy: &str) -> String {
    let name = format!("{NAME_PREFIX}{policy}");
    if name.len() <= 253 {
        return name;
    }
    let hash = hex::encode(&sha2::Sha256::digest(policy.as_bytes())[..4]);
    format!("{}-{hash}", &name[..244])
}

/// ConfigMap key of an attestor's digests: its name (prefixed when it would clash with
/// `patterns`).
pub fn attestor_key(attestor: &str) -> String {
    if attestor == PATTERNS_KEY {
        format!("attestor.{attestor}")
    } else {
        attestor.to_owned()
    }
}

/// Digests with a verified attestation, per attestor, for the given attestors: attestations
/// whose `Verified` condition the controller set true for their current generation.
pub fn verified_digests<'a>(
    attestations: impl IntoIterator<Item = &'a DeserializeGuard<ImageAttestation>>,
    attestors: &BTreeSet<String>,
) -> BTreeMap<String, BTreeSet<String>> {
    let mut out: BTreeMap<String, BTreeSet<String>> = attestors
        .iter()
        .map(|a| (a.clone(), BTreeSet::new()))
        .collect();
    for attestation in attestations {
        let Ok(attestation) = &attestation.0 else {
            continue;
        };
        let Some(digests) = out.get_mut(&attestation.spec.attestor) else {
            continue;
        };
        let Some(status) = &attestation.status else {
            continue;
        };
        let current = attestation.metadata.generation;
        let verified = conditions::find(&status.conditions, VERIFIED)
            .is_some_and(|c| c.status == conditions::TRUE && c.observed_generation == current);
        if verified
            && status.observed_generation == current
            && let Some(digest) = &status.digest
            && attestation
                .spec
                .artifact_url
                .ends_with(&format!("@{digest}"))
        {
            digests.insert(digest.clone());
        }
    }
    out
}

/// The data of a policy's allowlist ConfigMap.
pub fn data(
    patterns: &[String],
    digests: &BTreeMap<String, BTreeSet<String>>,
) -> BTreeMap<String, String> {
    let mut data = BTreeMap::new();
    data.insert(PATTERNS_KEY.to_owned(), lines(patterns.iter()));
    let mut budget = DIGEST_BYTES_BUDGET;
    let (mut listed, mut left_out) = (0usize, 0usize);
    for (attestor, digests) in digests {
        let mut text = String::new();
        for digest in digests {
            if digest.len() < budget {
                budget -= digest.len() + 1;
                text.push_str(digest);
                text.push('\n');
                listed += 1;
            } else {
                left_out += 1;
            }
        }
        data.insert(attestor_key(attestor), text);
    }
    if left_out > 0 {
        data.insert(
            TRUNCATED_KEY.to_owned(),
            format!(
                "listed {listed} of {} verified digests (a ConfigMap holds at most 1 MiB); \
                 `kubectl get imageattestations -A` shows every attestation and whether it is Verified\n",
                listed + left_out
            ),
        );
    }
    data
}

fn lines<'a>(items: impl Iterator<Item = &'a String>) -> String {
    items.map(|s| format!("{s}\n")).collect()
}

/// Labels of a policy's allowlist ConfigMap.
pub fn labels(policy: &str) -> BTreeMap<String, String> {
    BTreeMap::from([
        (
            MANAGED_BY_LABEL.to_owned(),
            super::CONTROLLER_NAME.to_owned(),
        ),
        (POLICY_LABEL.to_owned(), label_value(policy)),
    ])
}

/// A label value naming the policy (label values are at most 63 characters).
pub fn label_value(policy: &str) -> String {
    if policy.len() <= 63 {
        return policy.to_owned();
    }
    let hash = hex::encode(&sha2::Sha256::digest(policy.as_bytes())[..4]);
    format!("{}-{hash}", policy[..54].trim_end_matches(['-', '.']))
}

/// The allowlist ConfigMap of a policy, as applied.
pub fn config_map(
    namespace: &str,
    policy: &AttestationPolicy,
    data: BTreeMap<String, String>,
) -> ConfigMap {
    let name = policy.name_any();
    let owner = policy.uid().map(|uid| OwnerReference {
        api_version: AttestationPolicy::api_version(&()).into_owned(),
        kind: AttestationPolicy::kind(&()).into_owned(),
        name: name.clone(),
        uid,
        ..OwnerReference::default()
    });
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(&name)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels(&name)),
            owner_references: owner.map(|o| vec![o]),
            ..ObjectMeta::default()
        },
        data: Some(data),
        ..ConfigMap::default()
    }
}

/// Apply a policy's allowlist ConfigMap when its content differs from what is there.
pub async fn apply(ctx: &Context, desired: &ConfigMap) -> Result<bool, Error> {
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let name = desired.name_any();
    let current = bounded(api.get_opt(&name)).await?;
    let same = current.as_ref().is_some_and(|c| {
        c.data.clone().unwrap_or_default() == desired.data.clone().unwrap_or_default()
            && desired
                .metadata
                .labels
                .iter()
                .flatten()
                .all(|(k, v)| c.labels().get(k) == Some(v))
    });
    if same {
        return Ok(false);
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    bounded(api.patch(&name, &params, &Patch::Apply(desired))).await?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{ImageAttestationSpec, ImageAttestationStatus};

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    fn attestation(
        attestor: &str,
        digest: &str,
        verified: bool,
        generation: i64,
        observed: i64,
    ) -> DeserializeGuard<ImageAttestation> {
        let mut a = ImageAttestation::new(
            "x",
            ImageAttestationSpec {
                artifact_url: format!("registry.example/app@{digest}"),
                attestor: attestor.into(),
                ..ImageAttestationSpec::default()
            },
        );
        a.metadata.generation = Some(generation);
        a.status = Some(ImageAttestationStatus {
            observed_generation: Some(observed),
            conditions: vec![conditions::new(
                VERIFIED,
                verified,
                "r",
                "m",
                Some(observed),
                jiff::Timestamp::UNIX_EPOCH,
            )],
            verified_key_id: None,
            digest: verified.then(|| digest.to_owned()),
        });
        DeserializeGuard(Ok(a))
    }

    #[test]
    fn only_current_verified_attestations_of_required_attestors_count() {
        let all = [
            attestation("qa", D1, true, 1, 1),
            attestation("qa", D1, true, 2, 2),
            attestation("qa", D2, false, 1, 1),
            attestation("qa", D2, true, 3, 2),
            attestation("other", D2, true, 1, 1),
        ];
        let required = BTreeSet::from(["qa".to_owned(), "build".to_owned()]);
        let got = verified_digests(&all, &required);
        assert_eq!(got["qa"], BTreeSet::from([D1.to_owned()]));
        assert!(got["build"].is_empty());
        assert!(!got.contains_key("other"));
    }

    #[test]
    fn data_lists_patterns_and_digests_per_attestor() {
        let digests = BTreeMap::from([
            (
                "qa".to_owned(),
                BTreeSet::from([D2.to_owned(), D1.to_owned()]),
            ),
            ("patterns".to_owned(), BTreeSet::new()),
        ]);
        let d = data(&["gcr.io/google_containers/*".to_owned()], &digests);
        assert_eq!(d["patterns"], "gcr.io/google_containers/*\n");
        assert_eq!(d["qa"], format!("{D1}\n{D2}\n"));
        assert_eq!(d["attestor.patterns"], "");
    }

    #[test]
    fn digests_over_the_budget_are_counted_not_listed() {
        let many: BTreeSet<String> = (0..20_000).map(|i| format!("sha256:{i:064x}")).collect();
        let digests = BTreeMap::from([("build".to_owned(), many)]);
        let d = data(&[], &digests);
        let listed = d["build"].lines().count();
        assert!(
            d["build"].len() <= DIGEST_BYTES_BUDGET,
            "{}",
            d["build"].len()
        );
        assert!(listed > 10_000 && listed < 20_000, "{listed}");
        assert_eq!(
            d[TRUNCATED_KEY].lines().next().unwrap_or_default(),
            format!(
                "listed {listed} of 20000 verified digests (a ConfigMap holds at most 1 MiB); \
                 `kubectl get imageattestations -A` shows every attestation and whether it is Verified"
            )
        );
        // Under the budget, nothing is said.
        let few = BTreeMap::from([("build".to_owned(), BTreeSet::from([D1.to_owned()]))]);
        assert!(!data(&[], &few).contains_key(TRUNCATED_KEY));
    }

    #[test]
    fn names_stay_within_limits() {
        assert_eq!(config_map_name("prod"), "binauthz-allowlist-prod");
        let long = "a".repeat(250);
        assert!(config_map_name(&long).len() <= 253);
        assert_ne!(config_map_name(&long), config_map_name(&"a".repeat(251)));
        assert_eq!(label_value("prod"), "prod");
        assert!(label_value(&long).len() <= 63);
    }
}
