//! Server-sent events of decided transactions: each decided attempt this API
//! learns (from the submissions it handles) goes once to every subscriber of
//! `/v1/events`, even when it is submitted again. A subscriber that falls more
//! than `EVENTS_BUFFER` events behind is told how many it missed.

use std::collections::{HashSet, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use axum::response::sse::{Event, KeepAlive, Sse};
use futures::Stream;
use tokio::sync::broadcast;

use crate::outcome::TxOutcome;

/// Events kept for slow subscribers.
pub const EVENTS_BUFFER: usize = 4_096;
/// Decided attempts remembered, so that each is published once.
const PUBLISHED_MAX: usize = 100_000;

/// Which decided attempts were published, oldest first.
type Published = (HashSet<(String, u32)>, VecDeque<(String, u32)>);

#[derive(Clone, Debug)]
pub struct Events {
    sender: broadcast::Sender<String>,
    published: Arc<Mutex<Published>>,
}

impl Default for Events {
    fn default() -> Self {
        Self { sender: broadcast::channel(EVENTS_BUFFER).0, published: Arc::default() }
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

    pub fn subscribe(&self) -> Sse<impl Stream<Item = Result<Event, Infallible>> + use<>> {
        let receiver = self.sender.subscribe();
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
        Sse::new(stream).keep_alive(KeepAlive::default())
    }
}
