//! Kubernetes Events about admission decisions (denials, breakglass), sent by a background
//! task so the admission path never waits for the API server.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

use std::sync::Arc;

use crate::metrics::Metrics;

/// Events waiting to be sent; beyond this, new ones are dropped (and counted).
pub const QUEUE: usize = 256;
/// `reportingController` of the Events.
pub const CONTROLLER: &str = "binauthz.dev/webhook";
/// Longest Event note Kubernetes accepts.
const MAX_NOTE: usize = 1024;

/// Why an Event is sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NoticeReason {
    /// A workload was denied.
    Denied,
    /// A workload broke glass and was admitted despite the policy.
    BreakGlass,
}

impl NoticeReason {
    /// The Event `reason`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Denied => "Denied",
            Self::BreakGlass => "BreakGlass",
        }
    }
}

/// One Event to send.
#[derive(Clone, Debug, PartialEq)]
pub struct Notice {
    /// Why.
    pub reason: NoticeReason,
    /// The pod or workload the decision was about.
    pub regarding: ObjectReference,
    /// What happened, for people.
    pub note: String,
}

/// Where the admission path puts Events: a bounded queue, never waiting.
#[derive(Clone, Debug)]
pub struct EventSink {
    queue: Option<mpsc::Sender<Notice>>,
    metrics: Arc<Metrics>,
}

impl EventSink {
    /// A sink that sends nothing (tests, or no API access).
    pub fn disabled(metrics: Arc<Metrics>) -> Self {
        Self {
            queue: None,
            metrics,
        }
    }

    /// A sink over a queue; the receiver is for the task that sends (or for tests).
    pub fn channel(metrics: Arc<Metrics>, capacity: usize) -> (Self, mpsc::Receiver<Notice>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (
            Self {
                queue: Some(tx),
                metrics,
            },
            rx,
        )
    }

    /// Queue an Event; when the queue is full it is dropped and counted.
    pub fn send(&self, notice: Notice) {
        let Some(queue) = &self.queue else {
            return;
        };
        if let Err(error) = queue.try_send(notice) {
            if matches!(error, mpsc::error::TrySendError::Full(_)) {
                self.metrics.event_dropped();
            }
            tracing::debug!("event not queued: {error}");
        }
    }
}

/// Cut a note to what the Events API accepts, on a character boundary.
fn truncate(mut note: String) -> String {
    if note.len() > MAX_NOTE {
        let mut end = MAX_NOTE - 3;
        while !note.is_char_boundary(end) {
            end -= 1;
        }
        note.truncate(end);
        note.push_str("...");
    }
    note
}

/// Send queued Events with `client` until every sink is dropped.
pub async fn run(client: Client, instance: Option<String>, mut queue: mpsc::Receiver<Notice>) {
    let recorder = Recorder::new(
        client,
        Reporter {
            controller: CONTROLLER.to_owned(),
            instance,
        },
    );
    while let Some(notice) = queue.recv().await {
        let event = Event {
            type_: match notice.reason {
                NoticeReason::Denied | NoticeReason::BreakGlass => EventType::Warning,
            },
            reason: notice.reason.as_str().to_owned(),
            note: Some(truncate(notice.note)),
            action: "Admission".to_owned(),
            secondary: None,
        };
        if let Err(error) = recorder.publish(&event, &notice.regarding).await {
            tracing::warn!(
                reason = notice.reason.as_str(),
                kind = notice.regarding.kind.as_deref().unwrap_or_default(),
                namespace = notice.regarding.namespace.as_deref().unwrap_or_default(),
                name = notice.regarding.name.as_deref().unwrap_or_default(),
                %error,
                "cannot send Event"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notes_are_cut_on_char_boundaries() {
        assert_eq!(truncate("short".into()), "short");
        let long = "é".repeat(800);
        let cut = truncate(long);
        assert!(cut.len() <= MAX_NOTE);
        assert!(cut.ends_with("..."));
    }

    #[tokio::test]
    async fn a_full_queue_drops_and_counts() {
        let metrics = Arc::new(Metrics::default());
        let (sink, mut rx) = EventSink::channel(metrics.clone(), 1);
        let notice = Notice {
            reason: NoticeReason::Denied,
            regarding: ObjectReference::default(),
            note: "n".into(),
        };
        sink.send(notice.clone());
        sink.send(notice.clone());
        assert_eq!(rx.recv().await, Some(notice));
        assert!(rx.try_recv().is_err());
        assert_eq!(metrics.events_dropped(), 1);
        EventSink::disabled(metrics).send(Notice {
            reason: NoticeReason::BreakGlass,
            regarding: ObjectReference::default(),
            note: String::new(),
        });
    }
}
