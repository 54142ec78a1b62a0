//! The admission webhook: `POST /validate` over rustls, answering from the in-memory trust
//! index, plus the admin server and the background tasks it needs.
//!
//! Every replica serves it. The admission path makes no network call: it parses the review,
//! asks [`crate::index::Index::decide`], answers, and hands any Kubernetes Event to a
//! background task through a bounded queue.

pub mod admission;
pub mod body;
pub mod events;
pub mod server;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;
use tracing::field::Empty;

use crate::admin::{self, Admin, TlsLoaded};
use crate::index::watch::{self, WatchHealth, WatchOptions};
use crate::index::{Index, IndexState};
use crate::metrics::Metrics;
use admission::{Answer, Reviewed};
use body::BodyLimits;
use events::EventSink;

/// Path the webhook serves.
pub const PATH: &str = "/validate";
/// How long a review for a namespace the index has not seen yet waits for it.
pub const NAMESPACE_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What the admission handler needs: the index, the metrics, the Event queue and the body
/// budgets.
#[derive(Debug)]
pub struct Webhook {
    index: Arc<Index>,
    metrics: Arc<Metrics>,
    events: EventSink,
    bodies: BodyLimits,
}

impl Webhook {
    /// A webhook answering from `index`, with the default body budgets.
    pub fn new(index: Arc<Index>, metrics: Arc<Metrics>, events: EventSink) -> Self {
        Self::with_limits(index, metrics, events, BodyLimits::default())
    }

    /// A webhook answering from `index`, reading bodies within `bodies`.
    pub fn with_limits(
        index: Arc<Index>,
        metrics: Arc<Metrics>,
        events: EventSink,
        bodies: BodyLimits,
    ) -> Self {
        Self {
            index,
            metrics,
            events,
            bodies,
        }
    }
}

/// The webhook routes: `POST /validate`.
pub fn router(webhook: Arc<Webhook>) -> Router {
    Router::new()
        .route(PATH, post(validate))
        .with_state(webhook)
}

fn json(status: StatusCode, body: Vec<u8>) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}

async fn validate(State(webhook): State<Arc<Webhook>>, request: Request<Body>) -> Response {
    let start = Instant::now();
    let span = tracing::info_span!(
        "admission",
        uid = Empty,
        operation = Empty,
        kind = Empty,
        namespace = Empty,
        name = Empty,
        allowed = Empty,
        result = Empty,
    );
    let answer = match webhook.bodies.read(request).await {
        Ok(body) => {
            let mut answer = span.in_scope(|| admission::review(&webhook.index, &body.bytes));
            // A namespace created a moment ago may not have reached the index yet: wait for
            // it briefly (memory only, no API call), then judge again.
            if let Answer::Review(Reviewed {
                unknown_namespace: Some(namespace),
                ..
            }) = &answer
                && webhook
                    .index
                    .wait_for_namespace(namespace, NAMESPACE_WAIT)
                    .await
            {
                answer = span.in_scope(|| admission::review(&webhook.index, &body.bytes));
            }
            answer
        }
        Err((refusal, error)) => {
            webhook.metrics.request_refused(refusal.as_str());
            Answer::Error(error)
        }
    };
    let result = answer.result();
    span.record("result", result.as_str());
    let response = match answer {
        Answer::Review(reviewed) => {
            if let Some(notice) = reviewed.notice {
                webhook.events.send(*notice);
            }
            json(StatusCode::OK, reviewed.body)
        }
        Answer::Error(error) => {
            tracing::warn!(parent: &span, code = error.code, message = %error.message, "admission request refused");
            json(
                StatusCode::from_u16(error.code).unwrap_or(StatusCode::BAD_REQUEST),
                error.to_json(),
            )
        }
    };
    webhook
        .metrics
        .admission(result, start.elapsed().as_secs_f64());
    tracing::debug!(parent: &span, "admission answered");
    response
}

/// Where and how to serve.
pub struct ServeOptions {
    /// Address of the TLS webhook.
    pub webhook_addr: SocketAddr,
    /// Address of the plain-HTTP admin server.
    pub admin_addr: SocketAddr,
    /// TLS configuration of the webhook (e.g. [`server::server_config`] over a resolver that
    /// rotates the certificate in memory).
    pub tls: Arc<rustls::ServerConfig>,
    /// Whether the serving certificate is loaded (for `/readyz`).
    pub tls_loaded: TlsLoaded,
    /// `reportingInstance` of the Events (the pod name).
    pub instance: Option<String>,
    /// Watches and verification.
    pub watch: WatchOptions,
    /// The leader's metrics (continuous validation, key expiry), served with the others.
    pub leader_metrics: Arc<crate::metrics::LeaderMetrics>,
}

impl std::fmt::Debug for ServeOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServeOptions")
            .field("webhook_addr", &self.webhook_addr)
            .field("admin_addr", &self.admin_addr)
            .field("instance", &self.instance)
            .field("watch", &self.watch)
            .finish_non_exhaustive()
    }
}

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// A port could not be bound.
    #[error("cannot listen on {addr} for the {what}: {source}; pick another port")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Which server.
        what: &'static str,
        /// The error.
        source: std::io::Error,
    },
    /// The admin server failed.
    #[error("admin server on {addr}: {source}")]
    Admin {
        /// The address.
        addr: SocketAddr,
        /// The error.
        source: std::io::Error,
    },
}

/// The addresses actually bound (useful with port 0).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bound {
    /// The TLS webhook.
    pub webhook: SocketAddr,
    /// The admin server.
    pub admin: SocketAddr,
}

/// Everything `binauthz run` starts on every replica: trust index watches, Event sender,
/// the TLS webhook and the admin server. Runs until `shutdown` resolves; `on_bound` learns
/// the bound addresses once both ports listen.
pub async fn serve(
    client: kube::Client,
    options: ServeOptions,
    on_bound: impl FnOnce(Bound) + Send,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServeError> {
    let webhook_listener = TcpListener::bind(options.webhook_addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: options.webhook_addr,
            what: "webhook",
            source,
        })?;
    let admin_listener = TcpListener::bind(options.admin_addr)
        .await
        .map_err(|source| ServeError::Bind {
            addr: options.admin_addr,
            what: "admin server",
            source,
        })?;
    let bound = Bound {
        webhook: webhook_listener
            .local_addr()
            .unwrap_or(options.webhook_addr),
        admin: admin_listener.local_addr().unwrap_or(options.admin_addr),
    };

    let mut registry = Registry::default();
    let metrics = Arc::new(Metrics::register(&mut registry));
    options.leader_metrics.register(&mut registry);
    let state = IndexState::new(metrics.clone());
    let index = state.index().clone();
    let health = Arc::new(WatchHealth::default());
    let failing_limit = options.watch.failing_limit;
    let watches = tokio::spawn(watch::run(
        client.clone(),
        state,
        health.clone(),
        options.watch,
    ));
    let (sink, queue) =
        EventSink::channel(metrics.clone(), events::BREAKGLASS_QUEUE, events::QUEUE);
    let events = tokio::spawn(events::run(client, options.instance, queue));

    let webhook = Arc::new(Webhook::new(index.clone(), metrics, sink));
    let admin = Arc::new(Admin {
        index,
        health,
        tls_loaded: options.tls_loaded,
        registry: Arc::new(registry),
        failing_limit,
    });
    tracing::info!(webhook = %bound.webhook, admin = %bound.admin, "serving admission webhook");
    on_bound(bound);

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        // Err: the sender is gone, which also means stop.
        let _ = rx.wait_for(|stop| *stop).await;
    };
    let admin_server = tokio::spawn(admin::serve(
        admin_listener,
        admin::router(admin),
        stopped(stop_rx.clone()),
    ));
    let webhook_server = server::serve_tls(
        webhook_listener,
        options.tls,
        router(webhook),
        stopped(stop_rx),
    );
    let stop = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    };
    let ((), ()) = tokio::join!(webhook_server, stop);
    watches.abort();
    events.abort();
    match admin_server.await {
        Ok(Err(source)) => Err(ServeError::Admin {
            addr: bound.admin,
            source,
        }),
        _ => Ok(()),
    }
}
