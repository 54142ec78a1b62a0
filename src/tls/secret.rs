//! The TLS Secret: every replica follows it, the leader keeps it valid.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt as _;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::watcher;
use kube::{Api, ResourceExt as _};

use super::*;

/// Every replica: follow the TLS Secret and load each version into the store, forever.
/// A bad version is logged and the previous certificate kept.
pub async fn follow_secret(
    api: Api<Secret>,
    store: Arc<CertStore>,
    metrics: Arc<crate::metrics::Metrics>,
) {
    let config = crate::watcher::config().fields(&format!("metadata.name={SECRET_NAME}"));
    let _counted = crate::watcher::Counted::open(&metrics, "secrets");
    let mut events = std::pin::pin!(kube::runtime::WatchStreamExt::backoff(
        watcher(api, config),
        crate::watcher::WatchBackoff::new()
    ));
    while let Some(event) = events.next().await {
        match event {
            Ok(watcher::Event::Apply(secret) | watcher::Event::InitApply(secret)) => {
                match store.load_secret(&secret) {
                    Ok(true) => tracing::info!(
                        secret = SECRET_NAME,
                        version = secret.resource_version().unwrap_or_default(),
                        "loaded the webhook serving certificate"
                    ),
                    Ok(false) => {}
                    Err(error) => {
                        tracing::warn!(%error, "keeping the previous webhook serving certificate");
                        store.attention.notify_one();
                    }
                }
            }
            Ok(watcher::Event::Delete(_)) => {
                tracing::warn!(
                    secret = SECRET_NAME,
                    "the TLS Secret was deleted; serving the previous certificate until the leader issues a new one"
                );
                store.attention.notify_one();
            }
            Ok(watcher::Event::Init | watcher::Event::InitDone) => {}
            Err(error) => tracing::warn!(%error, secret = SECRET_NAME, "watch failed; retrying"),
        }
    }
}

/// Leader only: create or rotate the TLS Secret once. Returns the plan carried out.
pub async fn ensure_secret(
    api: &Api<Secret>,
    sans: &BTreeSet<String>,
    now: jiff::Timestamp,
) -> Result<Plan, TlsError> {
    let existing = api.get_opt(SECRET_NAME).await?;
    let current = existing
        .as_ref()
        .and_then(|s| TlsMaterial::from_secret(s).ok());
    let plan = plan(current.as_ref(), sans, now);
    let Some(material) = execute(&plan, current.as_ref(), sans, now)? else {
        return Ok(plan);
    };
    let labels = BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_owned(),
        "binauthz".to_owned(),
    )]);
    match existing {
        None => {
            let secret = Secret {
                metadata: ObjectMeta {
                    name: Some(SECRET_NAME.to_owned()),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                type_: Some("kubernetes.io/tls".to_owned()),
                data: Some(material.to_data()),
                ..Secret::default()
            };
            api.create(&PostParams::default(), &secret).await?;
        }
        Some(mut secret) => {
            // Replace with the read resourceVersion: a concurrent writer makes this fail
            // (409) instead of one of us silently losing its CA.
            secret.data = Some(material.to_data());
            secret.string_data = None;
            secret.metadata.managed_fields = None;
            api.replace(SECRET_NAME, &PostParams::default(), &secret)
                .await?;
        }
    }
    Ok(plan)
}

/// Leader only: keep the TLS Secret valid, checking now, every `interval`, and at once when
/// the store reports the Secret deleted or unusable.
pub async fn maintain_secret(
    api: Api<Secret>,
    sans: BTreeSet<String>,
    interval: Duration,
    store: Arc<CertStore>,
) {
    let mut retry = crate::watcher::Retry::up_to(Duration::from_secs(64));
    loop {
        let wait = match ensure_secret(&api, &sans, jiff::Timestamp::now()).await {
            Ok(plan) => {
                if plan != Plan::Keep {
                    tracing::info!(
                        ?plan,
                        secret = SECRET_NAME,
                        "updated the webhook TLS Secret"
                    );
                }
                retry.succeeded();
                interval
            }
            Err(error) => {
                tracing::warn!(%error, "cannot update the webhook TLS Secret; retrying");
                retry.failed()
            }
        };
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = store.attention.notified() => {}
        }
    }
}
