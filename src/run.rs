//! `binauthz run`: the one place that wires a replica.
//!
//! Every replica runs the trust pipeline (one watch per resource kind, every signature
//! verified here), follows the serving certificate, sends admission Events, and serves the
//! admission webhook and the admin endpoints from the pipeline's index. The replica holding the
//! Lease `binauthz-leader` also runs the controller (status, webhook configuration, allowlists,
//! continuous validation, all from the same pipeline) and keeps the certificate Secret valid.
//! Losing the Lease stops every leader task, so only one replica ever writes.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::DeserializeGuard;
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::admin::{self, Admin};
use crate::audit::{self, AuditSink};
use crate::cli::RunArgs;
use crate::controller::{self, WebhookSettings};
use crate::crd::{AttestationPolicy, Attestor, ImageAttestation};
use crate::events::{self, EventSink};
use crate::metrics::{LeaderMetrics, Metrics};
use crate::registry_sync::{self, Lookups, Syncer};
use crate::tls::{self, CertStore};
use crate::trust::TrustState;
use crate::trust::watch::{self as trust_watch, WatchHealth, WatchOptions};
use crate::webhook::{self, Webhook};

/// Name of the Lease that elects the leader.
pub const LEASE_NAME: &str = "binauthz-leader";
/// Seconds a Lease is held without renewal.
const LEASE_SECONDS: u64 = 15;
/// Seconds before expiry the holder renews it.
const LEASE_GRACE_SECONDS: u64 = 5;
/// How often the leader checks the serving certificate for rotation.
const CERT_CHECK_INTERVAL: Duration = Duration::from_secs(3600);

/// Errors that stop `binauthz run`, one line each.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A flag value is not usable.
    #[error("{0}")]
    Config(String),
    /// The kubeconfig cannot be read.
    #[error("kubeconfig {path}: {message}")]
    Kubeconfig {
        /// The file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// No API client could be built.
    #[error("cannot reach the Kubernetes API: {0}")]
    Client(#[from] kube::Error),
    /// The CRDs are not installed (or not readable).
    #[error(
        "cannot list {kind}: {source}; install the CRDs first (binauthz crds | kubectl apply -f -) and check the RBAC under config/rbac/"
    )]
    Crds {
        /// The resource.
        kind: &'static str,
        /// The API error.
        source: kube::Error,
    },
    /// Leader election could not start.
    #[error("cannot set up leader election with Lease {LEASE_NAME}: {0}")]
    Lease(#[from] kube_lease_manager::LeaseManagerError),
    /// The runtime could not be set up.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The controller stopped while this replica led; exiting lets a standby take over.
    #[error("the controller stopped unexpectedly; exiting so that another replica takes over")]
    LeaderStopped,
    /// The admission webhook cannot be served.
    #[error("admission webhook: {0}")]
    Webhook(String),
}

/// Resolves when the leader task ends (never while there is none).
async fn finished(task: &mut Option<tokio::task::JoinHandle<()>>) {
    match task {
        Some(task) => {
            if let Err(error) = task.await {
                tracing::error!(%error, "the controller task failed");
            }
        }
        None => std::future::pending().await,
    }
}

/// Typed settings of `binauthz run` (no clap types past this point).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    /// How the webhook is registered.
    pub webhook: WebhookSettings,
    /// Names the serving certificate must carry.
    pub serving_names: BTreeSet<String>,
    /// Identity in leader election and Events.
    pub identity: String,
    /// Port of the TLS admission webhook.
    pub webhook_port: u16,
    /// Port of the admin server.
    pub admin_port: u16,
    /// Kubeconfig file, if given.
    pub kubeconfig: Option<PathBuf>,
    /// How often continuous validation judges every running pod again.
    pub validation_interval: Duration,
    /// CA bundle whose client certificates alone may call the webhook.
    pub client_ca_file: Option<PathBuf>,
    /// Registries read over plain HTTP besides loopback ones (registry signatures).
    pub insecure_registries: Vec<String>,
    /// Where the audit log of decisions goes, if anywhere.
    pub audit_log: Option<PathBuf>,
    /// How continuous validation publishes its results.
    pub policy_reports: controller::validation::policy_reports::ReportFormat,
}

/// The host of an `https://HOST[:PORT]/...` URL.
pub fn url_host(url: &str) -> Result<String, RunError> {
    let bad = |why: &str| RunError::Config(format!("--webhook-url {url}: {why}"));
    let rest = url.strip_prefix("https://").ok_or_else(|| {
        bad("must start with https:// (the API server only calls webhooks over TLS)")
    })?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Err(bad("must not carry user information"));
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or_default()
    } else {
        authority.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    Ok(host.to_owned())
}

fn default_identity() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| format!("binauthz-{}", std::process::id()))
}

impl RunConfig {
    /// Check and type the flags.
    pub fn from_args(args: RunArgs) -> Result<Self, RunError> {
        let url_host = args.webhook_url.as_deref().map(url_host).transpose()?;
        let exempt_namespaces = args
            .exempt_namespaces
            .iter()
            .map(|n| n.trim().to_owned())
            .filter(|n| !n.is_empty())
            .collect();
        let serving_names =
            tls::serving_names(&args.service_name, &args.namespace, url_host.as_deref());
        Ok(Self {
            webhook: WebhookSettings {
                namespace: args.namespace,
                configuration_name: args.webhook_configuration,
                service_name: args.service_name,
                service_port: i32::from(args.service_port),
                url: args.webhook_url,
                failure_policy: args.failure_policy,
                timeout_seconds: args.timeout_seconds,
                exempt_namespaces,
            },
            serving_names,
            identity: args
                .identity
                .filter(|i| !i.trim().is_empty())
                .unwrap_or_else(default_identity),
            webhook_port: args.webhook_port,
            admin_port: args.admin_port,
            kubeconfig: args.kubeconfig,
            validation_interval: args.validation_interval,
            client_ca_file: args.client_ca_file,
            insecure_registries: args.insecure_registries,
            audit_log: args.audit_log,
            policy_reports: args.policy_reports,
        })
    }
}

/// Largest `--client-ca-file` read.
const MAX_CA_FILE_BYTES: u64 = 1024 * 1024;

fn read_client_roots(path: &Path) -> Result<rustls::RootCertStore, RunError> {
    use std::io::Read as _;
    let shown = path.display().to_string();
    let bad = |message: String| RunError::Config(format!("--client-ca-file {shown}: {message}"));
    let mut pem = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(MAX_CA_FILE_BYTES + 1).read_to_end(&mut pem))
        .map_err(|e| bad(e.to_string()))?;
    if pem.len() as u64 > MAX_CA_FILE_BYTES {
        return Err(bad(format!(
            "larger than {MAX_CA_FILE_BYTES} bytes; give the CA bundle only"
        )));
    }
    crate::webhook::server::client_roots(&shown, &pem)
        .map_err(|e| RunError::Config(format!("--client-ca-file {e}")))
}

async fn client(kubeconfig: Option<&Path>) -> Result<Client, RunError> {
    match kubeconfig {
        None => Ok(Client::try_default().await?),
        Some(path) => {
            let config = Kubeconfig::read_from(path).map_err(|e| RunError::Kubeconfig {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
            let config =
                kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
                    .await
                    .map_err(|e| RunError::Kubeconfig {
                        path: path.display().to_string(),
                        message: e.to_string(),
                    })?;
            Ok(Client::try_from(config)?)
        }
    }
}

async fn check_crds(client: &Client) -> Result<(), RunError> {
    let one = ListParams::default().limit(1);
    Api::<DeserializeGuard<Attestor>>::all(client.clone())
        .list_metadata(&one)
        .await
        .map_err(|source| RunError::Crds {
            kind: "attestors",
            source,
        })?;
    Api::<DeserializeGuard<AttestationPolicy>>::all(client.clone())
        .list_metadata(&one)
        .await
        .map_err(|source| RunError::Crds {
            kind: "attestationpolicies",
            source,
        })?;
    Api::<DeserializeGuard<ImageAttestation>>::all(client.clone())
        .list_metadata(&one)
        .await
        .map_err(|source| RunError::Crds {
            kind: "imageattestations",
            source,
        })?;
    Ok(())
}

/// What the leader's tasks need from the replica.
struct Replica {
    client: Client,
    config: Arc<RunConfig>,
    certs: Arc<CertStore>,
    trust: Arc<Mutex<TrustState>>,
    metrics: Arc<Metrics>,
    leader_metrics: Arc<LeaderMetrics>,
    syncer: Arc<Syncer>,
}

/// The work only the leader does: keep the certificate Secret valid, run the controller and
/// sync registry signatures.
async fn lead(replica: Arc<Replica>) {
    let config = &replica.config;
    let secrets = Api::<Secret>::namespaced(replica.client.clone(), &config.webhook.namespace);
    let ctx = Arc::new(controller::Context::new(
        replica.client.clone(),
        Arc::new(config.webhook.clone()),
        replica.certs.clone(),
        config.identity.clone(),
        replica.trust.clone(),
        replica.metrics.clone(),
        replica.leader_metrics.clone(),
    ));
    tokio::select! {
        () = tls::maintain_secret(
            secrets,
            config.serving_names.clone(),
            CERT_CHECK_INTERVAL,
            replica.certs.clone(),
        ) => {}
        () = controller::run(ctx, config.validation_interval, config.policy_reports) => {}
        () = registry_sync::run(replica.syncer.clone(), |attestor, status| {
            replica
                .trust
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .record_sync(attestor, status);
        }) => {}
    }
}

async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, RunError> {
    TcpListener::bind(addr).await.map_err(|e| {
        RunError::Webhook(format!(
            "cannot listen on {addr} for the {what}: {e}; pick another port"
        ))
    })
}

/// Run until `shutdown` resolves: the trust pipeline, the certificate follower, the Event
/// sender, the webhook and admin servers on this replica, and the controller while this
/// replica holds the Lease.
pub async fn run(
    config: RunConfig,
    client: Client,
    shutdown: impl Future<Output = ()>,
) -> Result<(), RunError> {
    check_crds(&client).await?;
    let client_roots = config
        .client_ca_file
        .as_deref()
        .map(read_client_roots)
        .transpose()?;
    tracing::info!(
        exempt = ?config.webhook.exempt(),
        client_certificates = if client_roots.is_some() { "required" } else { "not required" },
        "namespaces exempt from the webhook (never judged)"
    );
    // All interfaces: in a cluster the Service reaches the pod IP, probes the admin port.
    let webhook_listener = bind(
        SocketAddr::from(([0, 0, 0, 0], config.webhook_port)),
        "webhook",
    )
    .await?;
    let admin_listener = bind(
        SocketAddr::from(([0, 0, 0, 0], config.admin_port)),
        "admin server",
    )
    .await?;
    let config = Arc::new(config);

    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    let leader_metrics = Arc::new(LeaderMetrics::default());
    leader_metrics.register(&mut registry);

    // The trust pipeline: every watch, every verification, of this replica.
    let state = TrustState::new(metrics.clone());
    let index = state.index().clone();
    let trust = Arc::new(Mutex::new(state));
    let health = Arc::new(WatchHealth::default());
    let options = WatchOptions::default();
    let failing_limit = options.failing_limit;
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(trust_watch::run(
        client.clone(),
        trust.clone(),
        metrics.clone(),
        health.clone(),
        options,
    ));

    // Registry signatures: every replica looks up what its webhook denied; the leader syncs.
    let syncer = Arc::new(Syncer::new(
        client.clone(),
        config.webhook.namespace.clone(),
        config.insecure_registries.clone(),
        metrics.clone(),
        index.clone(),
    ));
    let (lookups, lookup_queue) = Lookups::new();
    index.set_lookups(Arc::new(lookups), metrics.clone());
    tasks.spawn(registry_sync::run_lookups(syncer.clone(), lookup_queue));

    let certs = CertStore::new();
    let secrets = Api::<Secret>::namespaced(client.clone(), &config.webhook.namespace);
    tasks.spawn(tls::follow_secret(secrets, certs.clone(), metrics.clone()));

    let (sink, queue) =
        EventSink::channel(metrics.clone(), events::BREAKGLASS_QUEUE, events::QUEUE);
    tasks.spawn(events::run(
        client.clone(),
        Some(config.identity.clone()),
        queue,
    ));

    let mut webhook = Webhook::new(index.clone(), metrics.clone(), sink);
    if let Some(path) = &config.audit_log {
        let (audit_sink, records) = AuditSink::channel(metrics.clone());
        tasks.spawn(audit::run(path.clone(), records, metrics.clone()));
        webhook = webhook.with_audit(audit_sink);
        tracing::info!(path = %path.display(), "writing the audit log of admission decisions");
    }
    let tls_config = webhook::server::server_config(certs.resolver(), client_roots)
        .map_err(|e| RunError::Webhook(format!("TLS configuration: {e}")))?;
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        // Err: the sender is gone, which also means stop.
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let admin = Arc::new(Admin {
        index: index.clone(),
        health,
        tls_loaded: {
            let certs = certs.clone();
            Arc::new(move || certs.is_loaded())
        },
        registry: Arc::new(registry),
        failing_limit,
    });
    let mut admin_server = tokio::spawn(admin::serve(
        admin_listener,
        admin::router(admin),
        stopped(stop_rx.clone()),
    ));
    let mut webhook_server = tokio::spawn(webhook::server::serve_tls(
        webhook_listener,
        Arc::new(tls_config),
        webhook::router(Arc::new(webhook)),
        stopped(stop_rx),
    ));
    tracing::info!(
        webhook = config.webhook_port,
        admin = config.admin_port,
        "serving the admission webhook"
    );

    let replica = Arc::new(Replica {
        client: client.clone(),
        config: config.clone(),
        certs,
        trust,
        metrics,
        leader_metrics: leader_metrics.clone(),
        syncer,
    });
    let lease = LeaseManagerBuilder::new(client.clone(), LEASE_NAME)
        .with_namespace(config.webhook.namespace.clone())
        .with_identity(config.identity.clone())
        .with_duration(LEASE_SECONDS)
        .with_grace(LEASE_GRACE_SECONDS)
        .build()
        .await?;
    let (mut leading, lease_task) = lease.watch().await;
    let mut leader: Option<tokio::task::JoinHandle<()>> = None;
    let mut shutdown = std::pin::pin!(shutdown);
    let mut outcome = Ok(());
    tracing::info!(identity = %config.identity, lease = LEASE_NAME, "waiting for leadership");
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            () = finished(&mut leader) => {
                leader = None;
                outcome = Err(RunError::LeaderStopped);
                break;
            }
            served = &mut webhook_server => {
                outcome = Err(RunError::Webhook(format!("the webhook server stopped: {served:?}")));
                break;
            }
            served = &mut admin_server => {
                outcome = Err(RunError::Webhook(match served {
                    Ok(Err(error)) => format!("admin server: {error}"),
                    other => format!("the admin server stopped: {other:?}"),
                }));
                break;
            }
            Some(ended) = tasks.join_next() => {
                // The watches, the certificate follower and the Event sender run forever.
                outcome = Err(RunError::Webhook(format!("a replica task ended: {ended:?}")));
                break;
            }
            changed = leading.changed() => {
                if changed.is_err() {
                    tracing::error!("leader election stopped");
                    break;
                }
                let is_leader = *leading.borrow_and_update();
                match (is_leader, leader.take()) {
                    (true, None) => {
                        tracing::info!(identity = %config.identity, "became the leader");
                        leader = Some(tokio::spawn(lead(replica.clone())));
                    }
                    (false, Some(task)) => {
                        tracing::warn!(identity = %config.identity, "lost the leadership; stopping the controller");
                        task.abort();
                        // Only the leader reports; a standby's stale values would count twice.
                        leader_metrics.clear();
                    }
                    (_, task) => leader = task,
                }
            }
        }
    }
    if let Some(task) = leader.take() {
        task.abort();
    }
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(Duration::from_secs(10), &mut webhook_server).await;
    webhook_server.abort();
    admin_server.abort();
    tasks.abort_all();
    // Closing the channel makes the lease task release the Lease, so a standby takes over
    // at once instead of after expiry.
    drop(leading);
    match tokio::time::timeout(Duration::from_secs(5), lease_task).await {
        Ok(Ok(Err(error))) => tracing::warn!(%error, "could not release the Lease"),
        Ok(Err(error)) => tracing::warn!(%error, "leader election task failed"),
        Err(_) => tracing::warn!("releasing the Lease timed out"),
        Ok(Ok(Ok(_))) => tracing::info!("released the Lease"),
    }
    outcome
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            () = term => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Entry point of `binauthz run`.
pub async fn main(args: RunArgs) -> Result<(), RunError> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = match args.log_format {
        crate::cli::LogFormat::Text => tracing_subscriber::fmt().with_env_filter(filter).try_init(),
        crate::cli::LogFormat::Json => tracing_subscriber::fmt()
            .json()
            .with_env_filter(filter)
            .try_init(),
    };
    // rustls needs one process-wide provider when several are compiled in.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    let config = RunConfig::from_args(args)?;
    let client = client(config.kubeconfig.as_deref()).await?;
    run(config, client, shutdown_signal()).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn parse(args: &[&str]) -> RunConfig {
        let cli =
            crate::cli::Cli::try_parse_from(["binauthz", "run"].iter().chain(args.iter())).unwrap();
        let crate::cli::Command::Run(run) = cli.command else {
            panic!("not run")
        };
        RunConfig::from_args(run).unwrap()
    }

    #[test]
    fn defaults_exempt_own_namespace_and_kube_system() {
        let c = parse(&["--namespace", "bz", "--identity", "me"]);
        assert_eq!(
            c.webhook.exempt(),
            BTreeSet::from(["bz".to_owned(), "kube-system".to_owned()])
        );
        assert_eq!(c.webhook.failure_policy, controller::FailurePolicy::Fail);
        assert_eq!(c.webhook.timeout_seconds, 5);
        assert_eq!(c.webhook.configuration_name, "binauthz");
        assert_eq!(c.identity, "me");
        assert!(c.serving_names.contains("binauthz.bz.svc"));
        assert_eq!(
            c.validation_interval,
            controller::validation::DEFAULT_INTERVAL
        );
        let c = parse(&["--validation-interval", "30s"]);
        assert_eq!(c.validation_interval, Duration::from_secs(30));
        assert!(
            crate::cli::Cli::try_parse_from(["binauthz", "run", "--validation-interval", "0s"])
                .is_err()
        );
    }

    #[test]
    fn url_host_goes_into_the_certificate() {
        let c = parse(&[
            "--webhook-url",
            "https://127.0.0.1:9443/validate",
            "--exempt-namespaces",
            "a,b",
            "--failure-policy",
            "ignore",
        ]);
        assert!(c.serving_names.contains("127.0.0.1"));
        assert_eq!(
            c.webhook.exempt_namespaces,
            BTreeSet::from(["a".to_owned(), "b".to_owned()])
        );
        assert_eq!(c.webhook.failure_policy, controller::FailurePolicy::Ignore);
        assert_eq!(url_host("https://[::1]:8443/validate").unwrap(), "::1");
        assert_eq!(
            url_host("https://webhook.example/validate").unwrap(),
            "webhook.example"
        );
        assert!(url_host("http://127.0.0.1/validate").is_err());
        assert!(url_host("https:///validate").is_err());
    }

    #[test]
    fn timeout_is_bounded() {
        assert!(
            crate::cli::Cli::try_parse_from(["binauthz", "run", "--timeout-seconds", "31"])
                .is_err()
        );
    }
}
