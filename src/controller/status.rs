//! The status writer: what the trust pipeline found, written as the status of every Attestor,
//! ImageAttestation and AttestationPolicy (server-side apply, one field manager, only when the
//! status would say something new), the allowlist ConfigMaps, and the Events they call for.
//!
//! It reads the replica's [`TrustState`](crate::trust::TrustState) reports: the objects that
//! changed (in outcome, or in what their status says now) since the last pass. A write that
//! fails puts its objects back, retried with backoff; every five minutes everything is looked
//! at again (keys expire with time).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::hash::{Hash as _, Hasher as _};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use futures::StreamExt as _;
use kube::api::{Patch, PatchParams};
use kube::core::DeserializeGuard;
use kube::runtime::events::EventType;
use kube::{Api, Resource};
use serde::Serialize;

use super::{Context, Error, allowlist, attestor, bounded, image_attestation, policy, reference};
use crate::crd::{AttestationPolicy, Attestor, FIELD_MANAGER, ImageAttestation};
use crate::trust::{
    AttestationReport, AttestorReport, InvalidObject, PolicyReport, SeenStatus, TrustState,
};
use crate::watcher::Retry;

/// Attestations looked at per pass (the rest wait for the next).
const BATCH: usize = 512;
/// Status writes in flight at once.
const CONCURRENCY: usize = 16;
/// Policies (their status and allowlists depend on every attestation of their attestors) are
/// looked at most this often.
const POLICY_EVERY: Duration = Duration::from_secs(1);
/// Longest wait between passes when nothing changed.
const IDLE: Duration = Duration::from_secs(60);

/// The apply patch that sets `status` of a `K`.
pub fn status_patch<K: Resource<DynamicType = ()>>(status: &impl Serialize) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    })
}

/// Apply `status` to the named object by server-side apply. An object that is gone needs no
/// status.
pub async fn apply<K>(
    api: &Api<DeserializeGuard<K>>,
    name: &str,
    status: &impl Serialize,
) -> Result<(), Error>
where
    K: Resource<DynamicType = ()> + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = status_patch::<K>(status);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    match bounded(api.patch_status(name, &params, &Patch::Apply(&patch))).await {
        Ok(_) => Ok(()),
        Err(Error::Kube(kube::Error::Api(status))) if status.code == 404 => Ok(()),
        Err(error) => Err(error),
    }
}

fn lock(trust: &Mutex<TrustState>) -> std::sync::MutexGuard<'_, TrustState> {
    trust.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Stops the reports when the writer stops (this replica no longer leads).
struct Reporting(Arc<Mutex<TrustState>>);

impl Drop for Reporting {
    fn drop(&mut self) {
        lock(&self.0).set_reporting(false);
    }
}

/// Write statuses, allowlists and Events from the trust pipeline's reports, until dropped.
pub async fn run(ctx: Arc<Context>) {
    let notify = {
        let mut trust = lock(&ctx.trust);
        trust.set_reporting(true);
        trust.notify()
    };
    let _reporting = Reporting(ctx.trust.clone());
    let mut writer = Writer {
        ctx: ctx.clone(),
        allowlists: HashMap::new(),
        collected: false,
    };
    let mut last_policies = Instant::now() - POLICY_EVERY;
    let mut retry = Retry::up_to(Duration::from_secs(30));
    loop {
        let policies_due = last_policies.elapsed() >= POLICY_EVERY;
        let reports = lock(&ctx.trust).reports(BATCH, policies_due);
        if reports.is_empty() {
            let wait = if lock(&ctx.trust).has_reports() {
                POLICY_EVERY.saturating_sub(last_policies.elapsed())
            } else {
                IDLE
            };
            tokio::select! {
                () = notify.notified() => {}
                () = tokio::time::sleep(wait) => {}
            }
            continue;
        }
        if reports.policies_changed {
            last_policies = Instant::now();
        }
        let now = super::now();
        let failed_attestations = writer.attestations(reports.attestations, now).await;
        let failed_attestors = writer
            .attestors(reports.attestors, &reports.gone_attestors, now)
            .await;
        let policies_failed = reports.policies_changed
            && !writer
                .policies(reports.policies, !reports.deleted_policies.is_empty(), now)
                .await;
        writer.invalid(reports.invalid).await;
        if failed_attestations.is_empty() && failed_attestors.is_empty() && !policies_failed {
            retry.succeeded();
            continue;
        }
        tokio::time::sleep(retry.failed()).await;
        let mut trust = lock(&ctx.trust);
        trust.retry_attestations(failed_attestations);
        trust.retry_attestors(failed_attestors);
        if policies_failed {
            trust.retry_policies();
        }
    }
}

struct Writer {
    ctx: Arc<Context>,
    /// A hash of each allowlist ConfigMap's data as last applied.
    allowlists: HashMap<String, u64>,
    /// Whether the allowlists of deleted policies were looked for since start.
    collected: bool,
}

impl Writer {
    /// Write the status of attestations whose status would change; returns the keys that
    /// failed.
    async fn attestations(
        &self,
        reports: Vec<AttestationReport>,
        now: jiff::Timestamp,
    ) -> Vec<String> {
        let writes = reports.into_iter().filter_map(|r| {
            let status = image_attestation::build_status(
                r.result.as_ref().map(|(k, d)| (&**k, d)),
                &r.attestor,
                r.generation,
                r.seen.and_then(|s| s.verified),
                now,
            );
            let same = r
                .seen
                .is_some_and(|s| s.fingerprint == SeenStatus::fingerprint(&status));
            (!same).then_some((r, status))
        });
        let client = self.ctx.client.clone();
        futures::stream::iter(writes)
            .map(|(r, status)| {
                let client = client.clone();
                async move {
                    let api = Api::<DeserializeGuard<ImageAttestation>>::namespaced(
                        client,
                        &r.namespace,
                    );
                    match apply(&api, &r.name, &status).await {
                        Ok(()) => {
                            match &r.result {
                                Ok((key, digest)) => tracing::info!(
                                    attestation = %r.name, namespace = %r.namespace, key = %key,
                                    digest = digest.as_str(), "attestation verified"
                                ),
                                Err(f) => tracing::info!(
                                    attestation = %r.name, namespace = %r.namespace,
                                    reason = f.reason.as_str(), message = %f.message,
                                    "attestation not verified"
                                ),
                            }
                            None
                        }
                        Err(error) => {
                            tracing::warn!(attestation = %r.name, namespace = %r.namespace, %error, "cannot write attestation status");
                            Some(crate::trust::object_key(Some(&r.namespace), &r.name))
                        }
                    }
                }
            })
            .buffer_unordered(CONCURRENCY)
            .filter_map(std::future::ready)
            .collect()
            .await
    }

    /// Write attestor statuses, with their Events and key expiry metrics; returns the names
    /// that failed.
    async fn attestors(
        &self,
        reports: Vec<AttestorReport>,
        gone: &[String],
        now: jiff::Timestamp,
    ) -> Vec<String> {
        let metrics = &self.ctx.leader_metrics;
        if !gone.is_empty() {
            metrics.retain_attestors(|a| !gone.iter().any(|g| g == a));
        }
        let api = Api::<DeserializeGuard<Attestor>>::all(self.ctx.client.clone());
        let mut failed = Vec::new();
        for r in reports {
            let keys = attestor::key_reports(&r.keys, now);
            metrics.set_key_expiry(&r.name, &attestor::key_expiries(&keys));
            // Until this leader's first sync, the status keeps what the last one found.
            let registry = match (&r.registry, r.syncs_registry) {
                (Some(sync), _) => Some(sync),
                (None, true) => r.status.as_ref().and_then(|s| s.registry.as_ref()),
                (None, false) => None,
            };
            let status =
                attestor::build_status(&keys, registry, r.generation, r.status.as_ref(), now);
            if !attestor::differs(r.status.as_ref(), &status) {
                continue;
            }
            if let Err(error) = apply(&api, &r.name, &status).await {
                tracing::warn!(attestor = %r.name, %error, "cannot write attestor status");
                failed.push(r.name);
                continue;
            }
            tracing::info!(
                attestor = %r.name,
                ready = crate::crd::conditions::is_true(&status.conditions, crate::crd::conditions::READY),
                usable_keys = status.usable_keys,
                "attestor status updated"
            );
            let regarding = reference::<Attestor>(None, &r.name);
            for (reason, note) in attestor::problems(&status) {
                self.ctx
                    .publish(&regarding, EventType::Warning, reason, note)
                    .await;
            }
        }
        failed
    }

    /// Write every policy's status and allowlist; delete the allowlists of deleted policies.
    /// Returns whether everything was written.
    async fn policies(
        &mut self,
        reports: Vec<PolicyReport>,
        deleted: bool,
        now: jiff::Timestamp,
    ) -> bool {
        let api = Api::<DeserializeGuard<AttestationPolicy>>::all(self.ctx.client.clone());
        let mut ok = true;
        for r in &reports {
            let required = r.policy.required_attestors();
            let attestors: BTreeMap<String, policy::AttestorState> = r
                .attestors
                .iter()
                .map(|(name, keys)| (name.clone(), policy::attestor_state(keys.as_deref(), now)))
                .collect();
            let (counts, digests) = self.ctx.index.read_trust(|trust| {
                let counts: BTreeMap<String, usize> = required
                    .iter()
                    .map(|a| (a.clone(), trust.verified_digest_count(a)))
                    .collect();
                (counts, allowlist::verified_digests(trust, required))
            });
            let compiled = policy::compiled_allowlist(&r.policy);
            let status = policy::build_status(
                &attestors,
                &compiled,
                &counts,
                r.generation,
                r.status.as_ref(),
                now,
            );
            if policy::differs(r.status.as_ref(), &status) {
                match apply(&api, &r.name, &policy::owned_fields(&status)).await {
                    Ok(()) => tracing::info!(
                        policy = %r.name,
                        ready = crate::crd::conditions::is_true(&status.conditions, crate::crd::conditions::READY),
                        "policy status updated"
                    ),
                    Err(error) => {
                        tracing::warn!(policy = %r.name, %error, "cannot write policy status");
                        ok = false;
                    }
                }
            }
            let data = allowlist::data(&compiled.patterns, &digests);
            let hash = {
                let mut hasher = std::hash::DefaultHasher::new();
                data.hash(&mut hasher);
                r.uid.hash(&mut hasher);
                hasher.finish()
            };
            if self.allowlists.get(&r.name) == Some(&hash) {
                continue;
            }
            let config_map = allowlist::config_map(
                &self.ctx.settings.namespace,
                &r.name,
                r.uid.as_deref(),
                data,
            );
            match allowlist::apply(&self.ctx, &config_map).await {
                Ok(changed) => {
                    if changed {
                        tracing::info!(policy = %r.name, "allowlist updated");
                    }
                    self.allowlists.insert(r.name.clone(), hash);
                }
                Err(error) => {
                    tracing::warn!(policy = %r.name, %error, "cannot write the allowlist");
                    ok = false;
                }
            }
        }
        if deleted || !self.collected {
            let live: BTreeSet<String> = reports.iter().map(|r| r.name.clone()).collect();
            self.allowlists.retain(|name, _| live.contains(name));
            match allowlist::collect(&self.ctx, &live).await {
                Ok(()) => self.collected = true,
                Err(error) => {
                    tracing::warn!(%error, "cannot delete the allowlists of deleted policies");
                    ok = false;
                }
            }
        }
        ok
    }

    /// Announce objects that cannot be read.
    async fn invalid(&self, objects: Vec<InvalidObject>) {
        for object in objects {
            let namespace = (!object.namespace.is_empty()).then_some(object.namespace.as_str());
            let regarding = match object.kind {
                "Attestor" => reference::<Attestor>(namespace, &object.name),
                "AttestationPolicy" => reference::<AttestationPolicy>(namespace, &object.name),
                _ => reference::<ImageAttestation>(namespace, &object.name),
            };
            self.ctx
                .publish(
                    &regarding,
                    EventType::Warning,
                    "InvalidObject",
                    format!(
                        "{} {} cannot be read and is skipped: {}",
                        object.kind, object.name, object.error
                    ),
                )
                .await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::AttestorStatus;

    #[test]
    fn patch_names_the_type() {
        let patch = status_patch::<Attestor>(&AttestorStatus::default());
        assert_eq!(patch["apiVersion"], "binauthz.dev/v1alpha1");
        assert_eq!(patch["kind"], "Attestor");
        assert_eq!(patch["status"]["usableKeys"], 0);
    }
}
