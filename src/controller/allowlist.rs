//! Allowlist ConfigMaps: per policy, `binauthz-allowlist-<policy>` in the operator namespace,
//! with the compiled allowlist patterns under `patterns` and, per required attestor, the
//! digests it has verified attestations for (from the trust index, never from status).
//! Written for operators and auditors to read; admission never reads it. ConfigMaps whose
//! policy is gone are deleted.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, ObjectMeta, Patch, PatchParams};
use kube::{Api, Resource as _, ResourceExt as _};
use sha2::Digest as _;

use super::{Context, Error, MANAGED_BY_LABEL, bounded};
use crate::crd::{AttestationPolicy, FIELD_MANAGER};
use crate::policy::TrustIndex;

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

/// The digests each of `attestors` vouches for with a verified attestation, sorted.
pub fn verified_digests(
    trust: &TrustIndex,
    attestors: &BTreeSet<String>,
) -> BTreeMap<String, BTreeSet<String>> {
    attestors
        .iter()
        .map(|a| (a.clone(), trust.attested_digests(a).into_iter().collect()))
        .collect()
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

/// The allowlist ConfigMap of the policy `name` (with `uid`), as applied.
pub fn config_map(
    namespace: &str,
    name: &str,
    uid: Option<&str>,
    data: BTreeMap<String, String>,
) -> ConfigMap {
    let owner = uid.map(|uid| OwnerReference {
        api_version: AttestationPolicy::api_version(&()).into_owned(),
        kind: AttestationPolicy::kind(&()).into_owned(),
        name: name.to_owned(),
        uid: uid.to_owned(),
        ..OwnerReference::default()
    });
    ConfigMap {
        metadata: ObjectMeta {
            name: Some(config_map_name(name)),
            namespace: Some(namespace.to_owned()),
            labels: Some(labels(name)),
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

/// Delete the allowlist ConfigMaps of policies not in `live` (their policy is gone).
pub async fn collect(ctx: &Context, live: &BTreeSet<String>) -> Result<(), Error> {
    let api = Api::<ConfigMap>::namespaced(ctx.client.clone(), &ctx.settings.namespace);
    let selector = format!(
        "{MANAGED_BY_LABEL}={},{POLICY_LABEL}",
        super::CONTROLLER_NAME
    );
    let existing = bounded(api.list(&ListParams::default().labels(&selector))).await?;
    let live: BTreeSet<String> = live.iter().map(|p| config_map_name(p)).collect();
    for config_map in existing {
        let name = config_map.name_any();
        if live.contains(&name) {
            continue;
        }
        bounded(api.delete(&name, &DeleteParams::default())).await?;
        tracing::info!(config_map = %name, "deleted the allowlist of a deleted policy");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const D1: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    const D2: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

    #[test]
    fn verified_digests_come_from_the_trust_index() {
        let mut trust = TrustIndex::new();
        let d1 = crate::image::Digest::parse(D1).unwrap();
        let d2 = crate::image::Digest::parse(D2).unwrap();
        trust.insert("qa", &d1, "ns/a").unwrap();
        trust.insert("qa", &d2, "ns/b").unwrap();
        trust.insert("other", &d2, "ns/c").unwrap();
        let required = BTreeSet::from(["qa".to_owned(), "build".to_owned()]);
        let got = verified_digests(&trust, &required);
        assert_eq!(got["qa"], BTreeSet::from([D1.to_owned(), D2.to_owned()]));
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
