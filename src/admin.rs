//! The plain-HTTP admin server, on its own port: `/livez`, `/readyz` and `/metrics`.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::registry::Registry;
use tokio::net::TcpListener;

use crate::trust::Index;
use crate::trust::watch::WatchHealth;

/// Content type of `/metrics` (prometheus-client writes OpenMetrics text).
pub const METRICS_CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Whether the serving certificate is loaded.
pub type TlsLoaded = Arc<dyn Fn() -> bool + Send + Sync>;

/// What the admin endpoints look at.
pub struct Admin {
    /// The trust index (readiness).
    pub index: Arc<Index>,
    /// Watch progress (liveness).
    pub health: Arc<WatchHealth>,
    /// Whether the webhook's TLS certificate is loaded (readiness).
    pub tls_loaded: TlsLoaded,
    /// The metrics.
    pub registry: Arc<Registry>,
    /// How long a watch may fail without a break before `/livez` fails.
    pub failing_limit: Duration,
}

impl std::fmt::Debug for Admin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Admin")
            .field("ready", &self.index.is_ready())
            .field("tls_loaded", &(self.tls_loaded)())
            .finish_non_exhaustive()
    }
}

fn text(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body,
    )
        .into_response()
}

async fn livez(State(admin): State<Arc<Admin>>) -> Response {
    match admin.health.check(admin.failing_limit) {
        Ok(()) => text(StatusCode::OK, format!("ok\n{}", admin.health.report())),
        Err(why) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not live: {why}\n{}", admin.health.report()),
        ),
    }
}

async fn readyz(State(admin): State<Arc<Admin>>) -> Response {
    let mut problems = Vec::new();
    if let Some(not_ready) = admin.index.not_ready() {
        problems.push(not_ready.to_string());
    }
    if !(admin.tls_loaded)() {
        problems.push("no TLS serving certificate loaded yet".to_owned());
    }
    if problems.is_empty() {
        text(
            StatusCode::OK,
            format!(
                "ok: {} trusted attestations, {} policies\n",
                admin.index.trust_entries(),
                admin.index.policies().len()
            ),
        )
    } else {
        text(
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {}\n", problems.join("; ")),
        )
    }
}

async fn metrics(State(admin): State<Arc<Admin>>) -> Response {
    match crate::metrics::encode(&admin.registry) {
        Ok(body) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, METRICS_CONTENT_TYPE)],
            body,
        )
            .into_response(),
        Err(error) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot encode metrics: {error}\n"),
        ),
    }
}

/// The admin routes.
pub fn router(admin: Arc<Admin>) -> Router {
    Router::new()
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(admin)
}

/// Serve the admin routes over plain HTTP on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
