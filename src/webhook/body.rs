//! Reading request bodies within bounds the webhook keeps whatever clients send: a deadline,
//! and a budget of body bytes in flight per replica, split so that slow or huge bodies can
//! never starve the small ones the API server sends.
//!
//! Every AdmissionReview the API server sends for a pod is a few KiB (a large pod template is
//! 16 KiB), while the reviews an attacker would use to exhaust memory are large and slow. So a
//! body declared up to [`SMALL_BODY`] draws from one budget and anything larger (or of unknown
//! length) from another: 300 clients each holding a 3 MiB body half sent fill the large budget
//! and get 503 at once, and the small reviews keep being answered. Bytes are reserved before
//! they are read (a body that cannot get its reservation is never read: TCP backpressure holds
//! it at the client), and released when the request is answered.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::header;
use futures::StreamExt as _;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::admission::{HttpError, MAX_BODY_BYTES};

/// Bodies up to this size (declared by `Content-Length`) draw from the small budget.
pub const SMALL_BODY: usize = 64 * 1024;
/// Bytes of small bodies in flight per replica (256 bodies of 64 KiB).
pub const SMALL_BUDGET: usize = 16 * 1024 * 1024;
/// Bytes of larger bodies in flight per replica (8 bodies of 3 MiB).
pub const LARGE_BUDGET: usize = 8 * MAX_BODY_BYTES;
/// How long a request waits for its reservation before it is answered 503.
pub const QUEUE_WAIT: Duration = Duration::from_secs(1);
/// The whole body must arrive within this (the API server waits at most 30 s for a webhook,
/// 5 s by default, and sends a review in one write).
pub const BODY_DEADLINE: Duration = Duration::from_secs(10);
/// Budgets are counted in units of this many bytes (semaphore permits are `u32`).
const UNIT: usize = 1024;

/// Why a body was not read, for metrics (a bounded label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// No reservation within [`QUEUE_WAIT`]: too many bodies in flight.
    Busy,
    /// The body did not arrive within [`BODY_DEADLINE`].
    Slow,
    /// Over [`MAX_BODY_BYTES`].
    TooLarge,
}

impl Refusal {
    /// The metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Busy => "busy",
            Self::Slow => "slow",
            Self::TooLarge => "too_large",
        }
    }
}

/// A body read in full, holding its reservation until dropped.
#[derive(Debug)]
pub struct Body {
    /// The bytes.
    pub bytes: Vec<u8>,
    _reservation: OwnedSemaphorePermit,
}

/// The two budgets of one replica.
#[derive(Debug)]
pub struct BodyLimits {
    small: Arc<Semaphore>,
    large: Arc<Semaphore>,
}

impl Default for BodyLimits {
    fn default() -> Self {
        Self::new(SMALL_BUDGET, LARGE_BUDGET)
    }
}

fn units(bytes: usize) -> u32 {
    u32::try_from(bytes.div_ceil(UNIT).max(1)).unwrap_or(u32::MAX)
}

impl BodyLimits {
    /// Budgets of `small` and `large` bytes (rounded up to KiB).
    pub fn new(small: usize, large: usize) -> Self {
        Self {
            small: Arc::new(Semaphore::new(units(small) as usize)),
            large: Arc::new(Semaphore::new(units(large) as usize)),
        }
    }

    /// Bytes reservable now in the (small, large) budgets.
    pub fn available(&self) -> (usize, usize) {
        (
            self.small.available_permits() * UNIT,
            self.large.available_permits() * UNIT,
        )
    }

    /// Reserve room for the body, then read it within the deadline.
    pub async fn read(&self, request: Request) -> Result<Body, (Refusal, HttpError)> {
        let declared = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        let limit = match declared {
            Some(n) if n > MAX_BODY_BYTES as u64 => {
                return Err((Refusal::TooLarge, HttpError::too_large()));
            }
            // At most MAX_BODY_BYTES, so it fits a usize.
            Some(n) => usize::try_from(n).unwrap_or(MAX_BODY_BYTES),
            // Chunked: anything up to the limit may come.
            None => MAX_BODY_BYTES,
        };
        let budget = if declared.is_some() && limit <= SMALL_BODY {
            &self.small
        } else {
            &self.large
        };
        let reservation =
            match tokio::time::timeout(QUEUE_WAIT, budget.clone().acquire_many_owned(units(limit)))
                .await
            {
                Ok(Ok(permit)) => permit,
                // Closed never happens (the semaphores live as long as `self`); either way, busy.
                Ok(Err(_)) | Err(_) => return Err((Refusal::Busy, HttpError::busy())),
            };
        let mut bytes = Vec::with_capacity(limit.min(SMALL_BODY));
        let mut stream = request.into_body().into_data_stream();
        let read = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| {
                    HttpError::bad_request(format!("cannot read the request body: {e}"))
                })?;
                if bytes.len() + chunk.len() > limit {
                    return Err(if limit == MAX_BODY_BYTES {
                        HttpError::too_large()
                    } else {
                        HttpError::bad_request(format!(
                            "the request body is longer than its Content-Length ({limit} bytes)"
                        ))
                    });
                }
                bytes.extend_from_slice(&chunk);
            }
            Ok(())
        };
        match tokio::time::timeout(BODY_DEADLINE, read).await {
            Ok(Ok(())) => Ok(Body {
                bytes,
                _reservation: reservation,
            }),
            Ok(Err(error)) if error.code == 413 => Err((Refusal::TooLarge, error)),
            Ok(Err(error)) => Err((Refusal::Slow, error)),
            Err(_) => Err((Refusal::Slow, HttpError::timeout())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body as AxumBody;

    fn request(declared: Option<usize>, body: AxumBody) -> Request {
        let mut builder = Request::post("/validate");
        if let Some(n) = declared {
            builder = builder.header(header::CONTENT_LENGTH, n);
        }
        builder.body(body).unwrap()
    }

    /// A body that sends `sent` bytes and then never finishes.
    fn stalled(sent: usize) -> AxumBody {
        let first = futures::stream::once(async move {
            Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; sent]))
        });
        AxumBody::from_stream(first.chain(futures::stream::pending()))
    }

    #[tokio::test(start_paused = true)]
    async fn stalled_large_bodies_cannot_starve_small_ones() {
        let limits = Arc::new(BodyLimits::new(128 * 1024, 2 * MAX_BODY_BYTES));
        // Two stalled 3 MiB bodies take the whole large budget...
        let mut stalls = Vec::new();
        for _ in 0..2 {
            let limits = limits.clone();
            stalls.push(tokio::spawn(async move {
                limits
                    .read(request(Some(MAX_BODY_BYTES), stalled(1000)))
                    .await
                    .map(|b| b.bytes.len())
            }));
        }
        tokio::task::yield_now().await;
        assert_eq!(limits.available().1, 0);
        // ...so a third is turned away after QUEUE_WAIT, without being read.
        let third = limits
            .read(request(Some(MAX_BODY_BYTES), stalled(1000)))
            .await
            .unwrap_err();
        assert_eq!(third.0, Refusal::Busy);
        assert_eq!(third.1.code, 503);
        // A small review is read at once.
        let small = limits
            .read(request(Some(5), AxumBody::from("{\"a\"}")))
            .await
            .unwrap();
        assert_eq!(small.bytes, b"{\"a\"}");
        drop(small);
        assert_eq!(limits.available().0, 128 * 1024);
        // The stalled ones give up at the deadline and free the budget.
        for stall in stalls {
            assert_eq!(stall.await.unwrap().unwrap_err().0, Refusal::Slow);
        }
        assert_eq!(limits.available().1, 2 * MAX_BODY_BYTES);
    }

    #[tokio::test]
    async fn declared_lengths_are_enforced() {
        let limits = BodyLimits::default();
        let over = limits
            .read(request(Some(MAX_BODY_BYTES + 1), AxumBody::empty()))
            .await
            .unwrap_err();
        assert_eq!((over.0, over.1.code), (Refusal::TooLarge, 413));
        // Chunked bodies are cut at the limit.
        let chunked = limits
            .read(request(
                None,
                AxumBody::from(vec![b' '; MAX_BODY_BYTES + 1]),
            ))
            .await
            .unwrap_err();
        assert_eq!((chunked.0, chunked.1.code), (Refusal::TooLarge, 413));
        // A body longer than it said is refused.
        let lying = limits
            .read(request(Some(3), AxumBody::from("12345")))
            .await
            .unwrap_err();
        assert_eq!(lying.1.code, 400);
        assert_eq!(limits.available(), (SMALL_BUDGET, LARGE_BUDGET));
    }
}
