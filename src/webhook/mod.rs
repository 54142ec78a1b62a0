//! The admission webhook: the router ([`router`]), the handler (`POST /validate`: the body
//! within bounds ([`body`]), the review ([`admission`])) and the TLS server ([`server`]).
//!
//! Every replica serves it. The admission path makes no network call: it parses the review,
//! asks the trust pipeline's [`Index::decide`](crate::trust::Index::decide), answers, and hands
//! any Kubernetes Event to the [`EventSink`]'s bounded queues.

pub mod admission;
pub mod body;
pub mod server;

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tracing::field::Empty;

use crate::audit::AuditSink;
use crate::events::EventSink;
use crate::metrics::Metrics;
use crate::trust::Index;
use admission::{Answer, Reviewed};
use body::BodyLimits;

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
    audit: Option<AuditSink>,
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
            audit: None,
        }
    }

    /// Also write every decision to the audit log behind `sink`.
    pub fn with_audit(mut self, sink: AuditSink) -> Self {
        self.audit = Some(sink);
        self
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
            let mut answer = span.in_scope(|| {
                admission::review(&webhook.index, &body.bytes, webhook.audit.is_some())
            });
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
                answer = span.in_scope(|| {
                    admission::review(&webhook.index, &body.bytes, webhook.audit.is_some())
                });
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
            if let (Some(sink), Some(record)) = (&webhook.audit, reviewed.audit) {
                sink.record(*record);
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
