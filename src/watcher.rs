//! How every watch of binauthz runs: one server-side timeout, one retry policy, each counted
//! in `binauthz_watches{resource}` while it is open; and the one retry policy of the leader's
//! writes ([`Retry`]).

use std::sync::Arc;
use std::time::Duration;

use kube::runtime::watcher;

use crate::metrics::Metrics;

/// Server-side timeout of every watch, below common load-balancer idle timeouts.
pub const TIMEOUT_SECONDS: u32 = 240;

/// The watcher configuration of every watch.
pub fn config() -> watcher::Config {
    watcher::Config::default().timeout(TIMEOUT_SECONDS)
}

/// Counts one open watch of `resource` in `binauthz_watches` while it lives.
#[derive(Debug)]
pub struct Counted {
    metrics: Arc<Metrics>,
    resource: &'static str,
}

impl Counted {
    /// Count a watch of `resource` (a plural resource name) as open.
    pub fn open(metrics: &Arc<Metrics>, resource: &'static str) -> Self {
        metrics.watch_opened(resource, 1);
        Self {
            metrics: metrics.clone(),
            resource,
        }
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.metrics.watch_opened(self.resource, -1);
    }
}

/// Delays between tries of a write that failed: 1 s doubling up to `max`, back to 1 s after a
/// success.
#[derive(Clone, Debug)]
pub struct Retry {
    failures: u32,
    max: Duration,
}

impl Retry {
    /// Retries waiting at most `max`.
    pub fn up_to(max: Duration) -> Self {
        Self { failures: 0, max }
    }

    /// Record a failure; how long to wait before the next try.
    pub fn failed(&mut self) -> Duration {
        let delay = Duration::from_secs(1u64 << self.failures.min(16)).min(self.max);
        self.failures = self.failures.saturating_add(1);
        delay
    }

    /// Record a success.
    pub fn succeeded(&mut self) {
        self.failures = 0;
    }
}

/// Retry delays of a watch: 200 ms doubling up to 4 s, each plus a random jitter of up to as
/// much again (so at most 8 s), and back to 200 ms after any event. kube's default (up to 30 s,
/// as client-go) is kinder to a struggling API server, but binauthz decides from what its
/// watches saw: after an outage the trust index would answer from a state up to a minute old
/// (attestations made or deleted meanwhile unseen) and statuses would lag as long. A replica's
/// few watches retrying every few seconds weigh nothing.
pub struct WatchBackoff {
    builder: backon::ExponentialBuilder,
    delays: backon::ExponentialBackoff,
}

impl WatchBackoff {
    /// A backoff at its first delay.
    pub fn new() -> Self {
        let builder = backon::ExponentialBuilder::default()
            .with_min_delay(Duration::from_millis(200))
            .with_max_delay(Duration::from_secs(4))
            .with_factor(2.0)
            .with_jitter()
            .without_max_times();
        Self {
            delays: backon::BackoffBuilder::build(builder),
            builder,
        }
    }
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self::new()
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        self.delays.next()
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.delays = backon::BackoffBuilder::build(self.builder);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff as _;

    #[test]
    fn retries_double_up_to_their_cap_and_reset() {
        let mut retry = Retry::up_to(Duration::from_secs(30));
        let delays: Vec<u64> = (0..8).map(|_| retry.failed().as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        retry.succeeded();
        assert_eq!(retry.failed(), Duration::from_secs(1));
    }

    #[test]
    fn delays_grow_to_a_few_seconds_and_reset() {
        let mut backoff = WatchBackoff::new();
        let first = backoff.next().unwrap_or_default();
        assert!(first >= Duration::from_millis(200) && first < Duration::from_millis(400));
        let later: Vec<Duration> = (0..20).filter_map(|_| backoff.next()).collect();
        assert_eq!(later.len(), 20, "never gives up");
        assert!(
            later.iter().all(|d| *d < Duration::from_secs(8)),
            "{later:?}"
        );
        assert!(later[19] >= Duration::from_secs(4), "{later:?}");
        backoff.reset();
        assert!(backoff.next().unwrap_or_default() < Duration::from_millis(400));
    }
}
