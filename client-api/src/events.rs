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
        if self.sender.receiver_count() >= SUBSCRIBERS_MAX {
            return None;
        }
        let receiver = self.sender.subscribe();
        let mut closed = self.closed.subscribe();
        let stop = async move {
            let _ = closed.wait_for(|closed| *closed).await;
        };
        let stream = futures::stream::unfold(receiver, |mut receiver| async move {
            let event = match receiver.recv().await {
                Ok(outcome) => Event::default().event("decided").data(outcome),
                Err(broadcast::error::RecvError::Lagged(missed)) => {
                    Event::default().event("lagged").data(format!("{{\"missed\":{missed}}}"))
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            };
            Some((Ok(event), receiver))
        });
        Some(Sse::new(stream.take_until(Box::pin(stop))).keep_alive(KeepAlive::default()))
    }
}
