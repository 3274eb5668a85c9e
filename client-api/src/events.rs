//! Server-sent events of decided transactions: each decided attempt this API
//! learns (from the submissions it handles) goes once to every subscriber of
//! `/v1/events`, even when it is submitted again. A subscriber that falls more
//! than `EVENTS_BUFFER` events behind is told how many it missed.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::{Stream, StreamExt};
use tokio::sync::{broadcast, watch};

use crate::outcome::TxOutcome;

/// Events kept for slow subscribers.
pub const EVENTS_BUFFER: usize = 4_096;
/// Decided attempts remembered, so that each is published once.
const PUBLISHED_MAX: usize = 100_000;

/// Which decided attempts were published, oldest first.
type Published = (HashSet<(String, u32)>, VecDeque<(String, u32)>);

/// Subscribers at once; more get 503.
pub const SUBSCRIBERS_MAX: usize = 64;

#[derive(Clone, Debug)]
pub struct Events {
    sender: broadcast::Sender<String>,
    published: Arc<Mutex<Published>>,
    /// Turns true at shutdown: every stream ends.
    closed: watch::Sender<bool>,
}

impl Default for Events {
    fn default() -> Self {
        Self { sender: broadcast::channel(EVENTS_BUFFER).0, published: Arc::default(), closed: watch::channel(false).0 }
    }
}

impl Events {
    /// Publishes a decided transaction, unless this attempt's outcome was published already.
    pub fn publish(&self, outcome: &TxOutcome) {
        let key = (outcome.tx.clone(), outcome.attempt);
        {
            let Ok(mut published) = self.published.lock() else { return };
            let (seen, order) = &mut *published;
            if !seen.insert(key.clone()) {
                return;
            }
            order.push_back(key);
            if order.len() > PUBLISHED_MAX
                && let Some(oldest) = order.pop_front()
            {
                seen.remove(&oldest);
            }
        }
        if let Ok(json) = serde_json::to_string(outcome) {
            let _ = self.sender.send(json);
        }
    }

    /// Ends every stream (at shutdown).
    pub fn close(&self) {
        self.closed.send_replace(true);
    }

    /// A stream of events, or `None` when `SUBSCRIBERS_MAX` streams are open.
    pub fn subscribe(&self) -> Option<Sse<impl Stream<Item = Result<Event, Infallible>> + use<>>> {
        let events = self.feed()?.map(|item| {
            Ok(match item {
                FeedItem::Decided(outcome) => Event::default().event("decided").data(outcome),
                FeedItem::Lagged(missed) => Event::default().event("lagged").data(format!("{{\"missed\":{missed}}}")),
            })
        });
        Some(Sse::new(events).keep_alive(KeepAlive::default()))
    }

    /// What a subscriber hears, until shutdown; `None` when `SUBSCRIBERS_MAX` are open.
    fn feed(&self) -> Option<impl Stream<Item = FeedItem> + use<>> {
        if self.sender.receiver_count() >= SUBSCRIBERS_MAX {
            return None;
        }
        let receiver = self.sender.subscribe();
        let mut closed = self.closed.subscribe();
        let stop = async move {
            let _ = closed.wait_for(|closed| *closed).await;
        };
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            let item = match receiver.recv().await {
                Ok(outcome) => FeedItem::Decided(outcome),
                Err(broadcast::error::RecvError::Lagged(missed)) => FeedItem::Lagged(missed),
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((item, receiver))
        });
        Some(stream.take_until(Box::pin(stop)))
    }
}

/// One event of the feed: a decided attempt (its outcome as JSON), or how many a
/// subscriber that fell behind missed.
#[derive(Clone, Debug, PartialEq, Eq)]
enum FeedItem {
    Decided(String),
    Lagged(u64),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn outcome(n: usize) -> TxOutcome {
        TxOutcome {
            tx: format!("{n:064x}"),
            outcome: "commit",
            reason: None,
            attempt: 1,
            outputs: vec![],
            shards: Default::default(),
            checker_reason: None,
        }
    }

    fn json(n: usize) -> FeedItem {
        FeedItem::Decided(serde_json::to_string(&outcome(n)).unwrap())
    }

    #[tokio::test]
    async fn a_subscriber_past_subscribers_max_is_refused_until_one_leaves() {
        let events = Events::default();
        let mut open: Vec<_> = (0..SUBSCRIBERS_MAX).map(|_| events.feed().expect("within the limit")).collect();
        assert!(events.feed().is_none(), "one subscriber past SUBSCRIBERS_MAX");
        drop(open.pop());
        let mut later = Box::pin(events.feed().expect("a place was freed"));
        events.publish(&outcome(1));
        assert_eq!(later.next().await, Some(json(1)));
    }

    #[tokio::test]
    async fn a_subscriber_past_events_buffer_behind_is_told_how_many_it_missed_then_gets_the_rest_in_order() {
        let events = Events::default();
        let mut feed = Box::pin(events.feed().unwrap());
        let missed = 10;
        for n in 0..EVENTS_BUFFER + missed {
            events.publish(&outcome(n));
        }
        assert_eq!(feed.next().await, Some(FeedItem::Lagged(missed as u64)));
        for n in missed..EVENTS_BUFFER + missed {
            assert_eq!(feed.next().await, Some(json(n)));
        }
        events.close();
        assert_eq!(feed.next().await, None, "the feed ends at shutdown");
    }

    #[tokio::test]
    async fn a_decided_attempt_is_published_once_and_past_published_max_the_oldest_is_forgotten() {
        let events = Events::default();
        let mut feed = Box::pin(events.feed().unwrap());
        events.publish(&outcome(0));
        events.publish(&outcome(0));
        events.publish(&outcome(1));
        assert_eq!(feed.next().await, Some(json(0)));
        assert_eq!(feed.next().await, Some(json(1)), "the second publication of 0 went nowhere");
        // PUBLISHED_MAX more: 0 is forgotten (and published again), the latest is not.
        drop(feed);
        for n in 2..PUBLISHED_MAX + 1 {
            events.publish(&outcome(n));
        }
        let mut feed = Box::pin(events.feed().unwrap());
        events.publish(&outcome(PUBLISHED_MAX));
        events.publish(&outcome(0));
        assert_eq!(feed.next().await, Some(json(0)), "the oldest was forgotten; the latest was not");
        let published = events.published.lock().unwrap();
        assert_eq!((published.0.len(), published.1.len()), (PUBLISHED_MAX, PUBLISHED_MAX));
    }
}
