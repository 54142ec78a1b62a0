//! The generated `ValidatingWebhookConfiguration`, kept matching the policies by server-side
//! apply.
//!
//! With no AttestationPolicy the configuration stays, with no webhooks: nothing is sent to
//! binauthz, so nothing can be blocked by it. With policies it has two webhooks (pods, and
//! the pod templates of workloads) that never match the exempt namespaces (always including
//! binauthz's own namespace and kube-system), so the cluster cannot lock itself out. Which namespaces a policy governs is decided by the webhook, not by the selector.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{
    RuleWithOperations, ServiceReference, ValidatingWebhook, ValidatingWebhookConfiguration,
    WebhookClientConfig,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, LabelSelectorRequirement};
use kube::api::{ObjectMeta, Patch, PatchParams};
use kube::{Api, ResourceExt as _};

use super::{Context, Error, MANAGED_BY_LABEL, bounded};
use crate::crd::FIELD_MANAGER;
use crate::watcher::Retry;

/// Default name of the generated configuration.
pub const DEFAULT_NAME: &str = "binauthz";
/// Name of the webhook for pods.
pub const PODS_WEBHOOK: &str = "pods.binauthz.dev";
/// Name of the webhook for workloads with pod templates.
pub const WORKLOADS_WEBHOOK: &str = "workloads.binauthz.dev";
/// Path the webhook serves.
pub const PATH: &str = "/validate";
/// How often the configuration is checked even without a change (repairs manual edits).
const RESYNC: Duration = Duration::from_secs(30);
/// Changes are collected this long before the configuration is applied.
const SETTLE: Duration = Duration::from_millis(200);

/// What the API server does when the webhook cannot be reached.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum FailurePolicy {
    /// Refuse the request (fail closed).
    #[default]
    Fail,
    /// Admit the request (fail open).
    Ignore,
}

impl FailurePolicy {
    /// The value of the `failurePolicy` field.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fail => "Fail",
            Self::Ignore => "Ignore",
        }
    }
}

/// Where and how the webhook is served and registered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookSettings {
    /// The operator's own namespace (always exempt).
    pub namespace: String,
    /// Name of the generated ValidatingWebhookConfiguration.
    pub configuration_name: String,
    /// Name of the Service in front of the webhook (in-cluster).
    pub service_name: String,
    /// Port of that Service.
    pub service_port: i32,
    /// URL of the webhook instead of the Service (out of cluster, tests).
    pub url: Option<String>,
    /// `failurePolicy` of both webhooks.
    pub failure_policy: FailurePolicy,
    /// `timeoutSeconds` of both webhooks.
    pub timeout_seconds: i32,
    /// Namespaces no webhook ever matches, besides the own namespace and kube-system (always
    /// added).
    pub exempt_namespaces: BTreeSet<String>,
}

/// Namespace always exempt besides binauthz's own: the control plane's add-ons run there, and
/// the cluster must never lock itself out.
pub const KUBE_SYSTEM: &str = "kube-system";

impl WebhookSettings {
    /// The exempt namespaces: the operator's own, kube-system, and the configured ones.
    pub fn exempt(&self) -> BTreeSet<String> {
        let mut all = self.exempt_namespaces.clone();
        all.insert(self.namespace.clone());
        all.insert(KUBE_SYSTEM.to_owned());
        all
    }
}

fn rule(group: &str, version: &str, resources: &[&str], operations: &[&str]) -> RuleWithOperations {
    RuleWithOperations {
        api_groups: Some(vec![group.to_owned()]),
        api_versions: Some(vec![version.to_owned()]),
        resources: Some(resources.iter().map(|r| (*r).to_owned()).collect()),
        operations: Some(operations.iter().map(|o| (*o).to_owned()).collect()),
        scope: Some("Namespaced".to_owned()),
    }
}

/// The configuration for these settings and CA bundle; `policies` false leaves it without
/// webhooks.
pub fn build(
    settings: &WebhookSettings,
    ca_bundle: &[u8],
    policies: bool,
) -> ValidatingWebhookConfiguration {
    let client_config = WebhookClientConfig {
        ca_bundle: Some(ByteString(ca_bundle.to_vec())),
        service: match settings.url {
            Some(_) => None,
            None => Some(ServiceReference {
                namespace: settings.namespace.clone(),
                name: settings.service_name.clone(),
                path: Some(PATH.to_owned()),
                port: Some(settings.service_port),
            }),
        },
        url: settings.url.clone(),
    };
    let namespace_selector = LabelSelector {
        match_expressions: Some(vec![LabelSelectorRequirement {
            key: "kubernetes.io/metadata.name".to_owned(),
            operator: "NotIn".to_owned(),
            values: Some(settings.exempt().into_iter().collect()),
        }]),
        match_labels: None,
    };
    let webhook = |name: &str, rules: Vec<RuleWithOperations>| ValidatingWebhook {
        name: name.to_owned(),
        admission_review_versions: vec!["v1".to_owned()],
        client_config: client_config.clone(),
        failure_policy: Some(settings.failure_policy.as_str().to_owned()),
        match_policy: Some("Equivalent".to_owned()),
        namespace_selector: Some(namespace_selector.clone()),
        object_selector: None,
        rules: Some(rules),
        side_effects: "None".to_owned(),
        timeout_seconds: Some(settings.timeout_seconds),
        match_conditions: None,
    };
    let webhooks = if policies {
        vec![
            webhook(
                PODS_WEBHOOK,
                vec![
                    rule("", "v1", &["pods"], &["CREATE", "UPDATE"]),
                    rule("", "v1", &["pods/ephemeralcontainers"], &["UPDATE"]),
                ],
            ),
            webhook(
                WORKLOADS_WEBHOOK,
                vec![
                    rule(
                        "apps",
                        "v1",
                        &["deployments", "replicasets", "statefulsets", "daemonsets"],
                        &["CREATE", "UPDATE"],
                    ),
                    rule("batch", "v1", &["jobs", "cronjobs"], &["CREATE", "UPDATE"]),
                    rule("", "v1", &["replicationcontrollers"], &["CREATE", "UPDATE"]),
                ],
            ),
        ]
    } else {
        Vec::new()
    };
    ValidatingWebhookConfiguration {
        metadata: ObjectMeta {
            name: Some(settings.configuration_name.clone()),
            labels: Some(
                [(
                    MANAGED_BY_LABEL.to_owned(),
                    super::CONTROLLER_NAME.to_owned(),
                )]
                .into_iter()
                .collect(),
            ),
            ..ObjectMeta::default()
        },
        webhooks: Some(webhooks),
    }
}

/// What was applied last, to skip applies that would change nothing.
#[derive(Debug, Default)]
struct Applied {
    desired: Option<serde_json::Value>,
    resource_version: Option<String>,
    /// When the API server last confirmed it.
    checked: Option<std::time::Instant>,
}

async fn sync_configuration(ctx: &Context, applied: &mut Applied) -> Result<(), Error> {
    let Some(ca_bundle) = ctx.certs.ca_bundle() else {
        tracing::debug!("no serving certificate yet; the webhook configuration waits");
        return Ok(());
    };
    let settings = &ctx.settings;
    let desired = build(settings, &ca_bundle, !ctx.index.policies().is_empty());
    let desired_json = serde_json::to_value(&desired).unwrap_or_default();
    // Most changes (attestations) do not change the configuration: look again only when it
    // would differ, or now and then to repair manual edits.
    if applied.desired.as_ref() == Some(&desired_json)
        && applied.checked.is_some_and(|at| at.elapsed() < RESYNC)
    {
        return Ok(());
    }
    let api = Api::<ValidatingWebhookConfiguration>::all(ctx.client.clone());
    let current = bounded(api.get_opt(&settings.configuration_name)).await?;
    let unchanged = applied.desired.as_ref() == Some(&desired_json)
        && current.as_ref().and_then(|c| c.resource_version()) == applied.resource_version;
    if unchanged && current.is_some() {
        applied.checked = Some(std::time::Instant::now());
        return Ok(());
    }
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let result = bounded(api.patch(
        &settings.configuration_name,
        &params,
        &Patch::Apply(&desired),
    ))
    .await?;
    tracing::info!(
        name = %settings.configuration_name,
        webhooks = desired.webhooks.as_ref().map_or(0, Vec::len),
        "webhook configuration applied"
    );
    applied.desired = Some(desired_json);
    applied.resource_version = result.resource_version();
    applied.checked = Some(std::time::Instant::now());
    Ok(())
}

/// Keep the webhook configuration matching the policies (from the trust index) and the
/// serving certificate, until the task is dropped.
pub async fn maintain(ctx: Arc<Context>) {
    let mut certs = ctx.certs.subscribe();
    let mut changes = ctx.index.subscribe();
    let mut applied = Applied::default();
    let mut retry = Retry::up_to(RESYNC);
    loop {
        let wait = match sync_configuration(&ctx, &mut applied).await {
            Ok(()) => {
                retry.succeeded();
                RESYNC
            }
            Err(error) => {
                tracing::warn!(%error, category = error.category(), "webhook configuration sync failed");
                retry.failed()
            }
        };
        tokio::select! {
            _ = changes.changed() => {}
            _ = certs.changed() => {}
            () = tokio::time::sleep(wait) => {}
        }
        tokio::time::sleep(SETTLE).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(url: Option<&str>) -> WebhookSettings {
        WebhookSettings {
            namespace: "binauthz-system".into(),
            configuration_name: DEFAULT_NAME.into(),
            service_name: "binauthz".into(),
            service_port: 443,
            url: url.map(Into::into),
            failure_policy: FailurePolicy::Fail,
            timeout_seconds: 5,
            exempt_namespaces: BTreeSet::from(["kube-system".to_owned()]),
        }
    }

    #[test]
    fn service_configuration_matches_pods_and_workloads() {
        let c = build(&settings(None), b"CA", true);
        assert_eq!(
            c.metadata.labels.as_ref().unwrap()[MANAGED_BY_LABEL],
            "binauthz"
        );
        let webhooks = c.webhooks.unwrap();
        assert_eq!(webhooks.len(), 2);
        let pods = &webhooks[0];
        assert_eq!(pods.name, PODS_WEBHOOK);
        assert_eq!(pods.admission_review_versions, ["v1"]);
        assert_eq!(pods.side_effects, "None");
        assert_eq!(pods.failure_policy.as_deref(), Some("Fail"));
        assert_eq!(pods.match_policy.as_deref(), Some("Equivalent"));
        assert_eq!(pods.timeout_seconds, Some(5));
        let rules = pods.rules.as_ref().unwrap();
        assert_eq!(rules[0].resources.as_ref().unwrap(), &["pods"]);
        assert_eq!(rules[0].operations.as_ref().unwrap(), &["CREATE", "UPDATE"]);
        assert_eq!(
            rules[1].resources.as_ref().unwrap(),
            &["pods/ephemeralcontainers"]
        );
        assert_eq!(rules[1].operations.as_ref().unwrap(), &["UPDATE"]);
        let service = pods.client_config.service.as_ref().unwrap();
        assert_eq!(
            (
                service.namespace.as_str(),
                service.name.as_str(),
                service.path.as_deref(),
                service.port
            ),
            ("binauthz-system", "binauthz", Some("/validate"), Some(443))
        );
        assert_eq!(pods.client_config.url, None);
        assert_eq!(pods.client_config.ca_bundle.as_ref().unwrap().0, b"CA");
        let selector = pods
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap();
        assert_eq!(selector[0].key, "kubernetes.io/metadata.name");
        assert_eq!(selector[0].operator, "NotIn");
        assert_eq!(
            selector[0].values.as_ref().unwrap(),
            &["binauthz-system", "kube-system"]
        );
        let workloads = &webhooks[1];
        assert_eq!(workloads.name, WORKLOADS_WEBHOOK);
        let resources: Vec<(String, String)> = workloads
            .rules
            .as_ref()
            .unwrap()
            .iter()
            .flat_map(|r| {
                let g = r.api_groups.as_ref().unwrap()[0].clone();
                r.resources
                    .as_ref()
                    .unwrap()
                    .iter()
                    .map(move |x| (g.clone(), x.clone()))
            })
            .collect();
        for (g, r) in [
            ("apps", "deployments"),
            ("apps", "replicasets"),
            ("apps", "statefulsets"),
            ("apps", "daemonsets"),
            ("batch", "jobs"),
            ("batch", "cronjobs"),
            ("", "replicationcontrollers"),
        ] {
            assert!(resources.contains(&(g.to_owned(), r.to_owned())), "{g}/{r}");
        }
    }

    #[test]
    fn url_configuration_and_no_policy() {
        let mut s = settings(Some("https://127.0.0.1:8443/validate"));
        s.failure_policy = FailurePolicy::Ignore;
        s.exempt_namespaces.clear();
        let c = build(&s, b"CA", true);
        let w = &c.webhooks.as_ref().unwrap()[0];
        assert_eq!(
            w.client_config.url.as_deref(),
            Some("https://127.0.0.1:8443/validate")
        );
        assert!(w.client_config.service.is_none());
        assert_eq!(w.failure_policy.as_deref(), Some("Ignore"));
        let values = w
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap()[0]
            .values
            .clone()
            .unwrap();
        assert_eq!(
            values,
            ["binauthz-system", "kube-system"],
            "the own namespace and kube-system are always exempt"
        );
        let empty = build(&s, b"CA", false);
        assert_eq!(empty.webhooks, Some(vec![]));
        assert_eq!(empty.metadata.name.as_deref(), Some(DEFAULT_NAME));
    }
}
