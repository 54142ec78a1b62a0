//! Kubernetes Events about admission decisions (denials, breakglass), sent by a background
//! task so the admission path never waits for the API server; and the note length every
//! binauthz Event keeps to.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::Client;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

use std::sync::Arc;

use crate::metrics::Metrics;

/// Denied Events waiting to be sent; beyond this, new ones are dropped (counted and logged).
pub const QUEUE: usize = 256;
/// BreakGlass Events waiting to be sent: a queue of their own, sent first, so that no flood of
/// denials can push an audit of breakglass out.
pub const BREAKGLASS_QUEUE: usize = 1024;
/// `reportingController` of the Events.
pub const CONTROLLER: &str = "binauthz.dev/webhook";
/// Longest Event note Kubernetes accepts.
pub const MAX_NOTE: usize = 1024;

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

/// Where the admission path puts Events: two bounded queues (BreakGlass, Denied), never
/// waiting.
#[derive(Clone, Debug)]
pub struct EventSink {
    queues: Option<(mpsc::Sender<Notice>, mpsc::Sender<Notice>)>,
    metrics: Arc<Metrics>,
}

/// The receiving end of an [`EventSink`]: BreakGlass Events come out before Denied ones.
#[derive(Debug)]
pub struct EventQueue {
    breakglass: mpsc::Receiver<Notice>,
    denied: mpsc::Receiver<Notice>,
}

impl EventQueue {
    /// The next Event to send (BreakGlass first); `None` once every sink is gone.
    pub async fn recv(&mut self) -> Option<Notice> {
        tokio::select! {
            biased;
            Some(notice) = self.breakglass.recv() => Some(notice),
            Some(notice) = self.denied.recv() => Some(notice),
            else => None,
        }
    }

    /// The next Event if one is queued now (BreakGlass first).
    pub fn try_recv(&mut self) -> Option<Notice> {
        self.breakglass
            .try_recv()
            .or_else(|_| self.denied.try_recv())
            .ok()
    }
}

impl EventSink {
    /// A sink that sends nothing (tests, or no API access).
    pub fn disabled(metrics: Arc<Metrics>) -> Self {
        Self {
            queues: None,
            metrics,
        }
    }

    /// A sink over two queues (`breakglass` and `denied` Events at most); the receiver is for
    /// the task that sends (or for tests).
    pub fn channel(metrics: Arc<Metrics>, breakglass: usize, denied: usize) -> (Self, EventQueue) {
        let (breakglass_tx, breakglass_rx) = mpsc::channel(breakglass.max(1));
        let (denied_tx, denied_rx) = mpsc::channel(denied.max(1));
        (
            Self {
                queues: Some((breakglass_tx, denied_tx)),
                metrics,
            },
            EventQueue {
                breakglass: breakglass_rx,
                denied: denied_rx,
            },
        )
    }

    /// Queue an Event. When its queue is full it is dropped, counted, and written to the log
    /// in full, so the record of it is never lost silently.
    pub fn send(&self, notice: Notice) {
        let Some((breakglass, denied)) = &self.queues else {
            return;
        };
        let queue = match notice.reason {
            NoticeReason::BreakGlass => breakglass,
            NoticeReason::Denied => denied,
        };
        if let Err(mpsc::error::TrySendError::Full(notice)) = queue.try_send(notice) {
            self.metrics.event_dropped(notice.reason.as_str());
            tracing::warn!(
                reason = notice.reason.as_str(),
                kind = notice.regarding.kind.as_deref().unwrap_or_default(),
                namespace = notice.regarding.namespace.as_deref().unwrap_or_default(),
                name = notice.regarding.name.as_deref().unwrap_or_default(),
                note = %notice.note,
                "Event queue full: the Event is not sent, only logged here"
            );
        }
    }
}

/// Cut a note to what the Events API accepts, on a character boundary.
pub fn note(mut note: String) -> String {
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
pub async fn run(client: Client, instance: Option<String>, mut queue: EventQueue) {
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
            note: Some(note(notice.note)),
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
        assert_eq!(note("short".into()), "short");
        let long = "é".repeat(800);
        let cut = note(long);
        assert!(cut.len() <= MAX_NOTE);
        assert!(cut.ends_with("..."));
    }

    fn notice(reason: NoticeReason, note: &str) -> Notice {
        Notice {
            reason,
            regarding: ObjectReference::default(),
            note: note.into(),
        }
    }

    #[tokio::test]
    async fn breakglass_is_never_dropped_behind_denials() {
        let metrics = Arc::new(Metrics::default());
        let (sink, mut queue) = EventSink::channel(metrics.clone(), 2, 1);
        // A flood of denials fills their queue...
        for i in 0..10 {
            sink.send(notice(NoticeReason::Denied, &format!("d{i}")));
        }
        // ...and breakglass still gets through, and out first.
        sink.send(notice(NoticeReason::BreakGlass, "b0"));
        sink.send(notice(NoticeReason::BreakGlass, "b1"));
        assert_eq!(queue.recv().await.unwrap().note, "b0");
        assert_eq!(queue.recv().await.unwrap().note, "b1");
        assert_eq!(queue.recv().await.unwrap().note, "d0");
        assert!(queue.try_recv().is_none());
        assert_eq!(metrics.events_dropped(), 9);
        // A full breakglass queue is counted too (and logged).
        for i in 0..3 {
            sink.send(notice(NoticeReason::BreakGlass, &format!("b{i}")));
        }
        assert_eq!(metrics.events_dropped(), 10);
        EventSink::disabled(metrics).send(notice(NoticeReason::BreakGlass, ""));
        drop(sink);
        while queue.try_recv().is_some() {}
        assert!(queue.recv().await.is_none(), "every sink is gone");
    }
}
