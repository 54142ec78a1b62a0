//! `binauthz run`: every replica follows the serving certificate and serves the admission
//! webhook; the replica holding the Lease `binauthz-leader` also runs the controller and
//! keeps the certificate Secret valid. Losing the Lease stops every leader task, so only
//! one replica ever writes.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::api::ListParams;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::DeserializeGuard;
use kube::{Api, Client};
use kube_lease_manager::LeaseManagerBuilder;

use crate::cli::RunArgs;
use crate::controller::{self, WebhookSettings};
use crate::crd::{AttestationPolicy, Attestor, ImageAttestation};
use crate::metrics::LeaderMetrics;
use crate::tls::{self, CertStore};

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
        })
    }
}

/// What the admission webhook and admin servers get from `run`.
#[derive(Clone)]
pub struct Serving {
    /// API client (read-only use: watches for the trust index).
    pub client: Client,
    /// The serving certificate: `certs.resolver()` / `certs.server_config()` for rustls,
    /// `certs.is_loaded()` for readiness.
    pub certs: Arc<CertStore>,
    /// The operator's namespace.
    pub namespace: String,
    /// Port of the TLS admission webhook.
    pub webhook_port: u16,
    /// Port of the plain-HTTP admin server.
    pub admin_port: u16,
    /// Identity of this replica (`reportingInstance` of its Events).
    pub identity: String,
    /// The leader's metrics, served by every replica's `/metrics` (empty unless leading).
    pub leader_metrics: Arc<LeaderMetrics>,
    /// Roots of the client certificates allowed to call the webhook (all callers when `None`).
    pub client_roots: Option<rustls::RootCertStore>,
}

/// Serve admission reviews and the admin endpoints on every replica (trust index watches,
/// TLS webhook, admin server, Events); returns only when they cannot be served.
async fn serve_admission(serving: Serving) -> Result<(), RunError> {
    let tls = crate::webhook::server::server_config(serving.certs.resolver(), serving.client_roots)
        .map_err(|e| RunError::Webhook(format!("TLS configuration: {e}")))?;
    let certs = serving.certs.clone();
    let options = crate::webhook::ServeOptions {
        // All interfaces: in a cluster the Service reaches the pod IP, probes the admin port.
        webhook_addr: SocketAddr::from(([0, 0, 0, 0], serving.webhook_port)),
        admin_addr: SocketAddr::from(([0, 0, 0, 0], serving.admin_port)),
        tls: Arc::new(tls),
        tls_loaded: Arc::new(move || certs.is_loaded()),
        instance: Some(serving.identity),
        watch: crate::index::watch::WatchOptions::default(),
        leader_metrics: serving.leader_metrics,
    };
    crate::webhook::serve(serving.client, options, |_| {}, std::future::pending())
        .await
        .map_err(|e| RunError::Webhook(e.to_string()))?;
    Err(RunError::Webhook("stopped".to_owned()))
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

/// The work only the leader does: keep the certificate Secret valid and run the controller.
async fn lead(
    client: Client,
    config: Arc<RunConfig>,
    certs: Arc<CertStore>,
    metrics: Arc<LeaderMetrics>,
) {
    let secrets = Api::<Secret>::namespaced(client.clone(), &config.webhook.namespace);
    tokio::select! {
        () = tls::maintain_secret(
            secrets,
            config.serving_names.clone(),
            CERT_CHECK_INTERVAL,
            certs.clone(),
        ) => {}
        () = controller::run(
            client,
            Arc::new(config.webhook.clone()),
            certs,
            config.identity.clone(),
            config.validation_interval,
            metrics,
        ) => {}
    }
}

/// Run until `shutdown` resolves: certificate follower and webhook on this replica, the
/// controller while this replica holds the Lease.
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
    let config = Arc::new(config);
    let certs = CertStore::new();
    let secrets = Api::<Secret>::namespaced(client.clone(), &config.webhook.namespace);
    let follower = tokio::spawn(tls::follow_secret(secrets, certs.clone()));
    let leader_metrics = Arc::new(LeaderMetrics::default());
    let mut admission = tokio::spawn(serve_admission(Serving {
        client: client.clone(),
        certs: certs.clone(),
        namespace: config.webhook.namespace.clone(),
        webhook_port: config.webhook_port,
        admin_port: config.admin_port,
        identity: config.identity.clone(),
        leader_metrics: leader_metrics.clone(),
        client_roots,
    }));

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
            served = &mut admission => {
                // The webhook only ends when it cannot serve (e.g. its port is taken).
                outcome = Err(match served {
                    Ok(Err(error)) => error,
                    Ok(Ok(())) => RunError::Webhook("stopped".to_owned()),
                    Err(error) => RunError::Webhook(format!("the task failed: {error}")),
                });
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
                        leader = Some(tokio::spawn(lead(
                            client.clone(),
                            config.clone(),
                            certs.clone(),
                            leader_metrics.clone(),
                        )));
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
    follower.abort();
    admission.abort();
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
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .try_init();
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
