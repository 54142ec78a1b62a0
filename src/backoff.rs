//! How every watch of binauthz retries after an error.

use std::time::Duration;

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
