//! One long-lived connection from a client (the API) to one replica's request
//! interface, shared by every question asked of that replica. A connection per
//! question cost a TCP handshake and teardown per replica per transaction; under load
//! that was a third of the API's CPU and much of the replicas' system time.
//!
//! Replies are routed by what they are about (a transaction or an object) to whoever
//! subscribed to it, each tagged with this link's shard and replica: a replica still
//! speaks for itself only, on its own connection.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use shardspace_core::sbac::{AnswerBody, Position};
use shardspace_core::{ObjectId, ShardId, TxId};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::client::{CLIENT_FRAME_BYTES_MAX, ClientReply, ClientRequest, encode};
use crate::network::decode;
use crate::secure::{Credentials, SecureLink};

/// Requests waiting to be written to one replica; more are dropped (that replica is silent
/// on them, as a slow replica is).
const LINK_QUEUE_MAX: usize = 4_096;
/// A request that waited this long to be written is dropped instead: the replica stopped
/// reading (paused, or overloaded), its peers answered, and a replica that resumes should
/// not spend itself, and its checker, on a backlog of questions nobody waits for.
const LINK_STALE_AFTER: Duration = Duration::from_secs(1);
/// How long a connection attempt may take, its handshake included.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// After a connection that failed, or closed before the replica answered anything, the
/// next attempt waits this long, doubled at each failure up to `RECONNECT_DELAY_MAX`;
/// what is asked meanwhile waits in the queue and goes with that attempt unless it grew
/// stale (`LINK_STALE_AFTER`). A replica that is down costs a connection attempt per
/// `RECONNECT_DELAY_MAX`, not one per question, and one that restarted at once (all of a
/// shard's, in a test) still gets the questions asked in the first delay.
const RECONNECT_DELAY_MIN: Duration = Duration::from_millis(50);
const RECONNECT_DELAY_MAX: Duration = Duration::from_secs(2);

/// Refusals heard from replicas (a key they do not admit, too many connections): at
/// most one warning a second.
static REFUSED_WARNINGS: crate::throttle::Throttle = crate::throttle::Throttle::new(Duration::from_secs(1));

/// What a reply is about, to route it: an envelope's progress and outcome, the answer
/// to a read (`ClientReply::Record`) of a transaction's record or of an object, or a dry
/// run's verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum About {
    Outcome(TxId),
    Record(TxId),
    Object(ObjectId),
    /// A dry run's verdicts (`ClientReply::Checked`).
    Checked(TxId),
    /// Entries of the decided log from a position on (`ClientReply::DecidedLog`), or found
    /// there (`ClientReply::DecidedFound`).
    DecidedLog(Position),
}

/// A reply heard on a link: from which shard and replica (index in its shard), and what.
pub type Heard = (ShardId, usize, ClientReply);

#[derive(Debug, Default)]
struct Routes {
    next: u64,
    subscribers: BTreeMap<About, Vec<(u64, mpsc::Sender<Heard>)>>,
}

/// The link to one replica; its connection is made on first use and again after a failure.
#[derive(Debug)]
pub struct ReplicaLink {
    shard: ShardId,
    replica: usize,
    address: String,
    /// The replica's link key, and this client's.
    keys: Arc<([u8; 32], Credentials)>,
    routes: Arc<Mutex<Routes>>,
    outgoing: Mutex<Option<mpsc::Sender<(Instant, ClientRequest)>>>,
    /// Whether the link has no connection since its last attempt failed or its connection
    /// was lost (false before the first attempt).
    down: Arc<AtomicBool>,
    /// Whether the replica's last word on this link was a refusal of this client (its key
    /// is not in the cluster file the replica runs with).
    refused: Arc<AtomicBool>,
    /// `LINK_STALE_AFTER`, shorter in tests.
    stale_after: Duration,
}

/// Subscriptions that end when this is dropped (the question answered or abandoned).
#[derive(Debug, Default)]
pub struct Subscriptions(Vec<(Arc<Mutex<Routes>>, About, u64)>);

impl Drop for Subscriptions {
    fn drop(&mut self) {
        for (routes, about, id) in self.0.drain(..) {
            let mut routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
            if let Some(list) = routes.subscribers.get_mut(&about) {
                list.retain(|(subscriber, _)| *subscriber != id);
                if list.is_empty() {
                    routes.subscribers.remove(&about);
                }
            }
        }
    }
}

impl ReplicaLink {
    /// A link to the replica at `address`, which must hold the secret of `replica_key`,
    /// made with this client's `credentials`.
    pub fn new(
        shard: ShardId,
        replica: usize,
        address: String,
        replica_key: [u8; 32],
        credentials: Credentials,
    ) -> Self {
        let stale_after = LINK_STALE_AFTER;
        let (routes, outgoing, down) = (Arc::default(), Mutex::new(None), Arc::new(AtomicBool::new(false)));
        let refused = Arc::new(AtomicBool::new(false));
        let keys = Arc::new((replica_key, credentials));
        Self { shard, replica, address, keys, routes, outgoing, down, refused, stale_after }
    }

    /// The link lost its connection or could not make one: the replica is down, or cut off
    /// from here.
    pub fn is_down(&self) -> bool {
        self.down.load(Ordering::Relaxed) || self.is_refused()
    }

    /// The replica refused this client the last time it was reached.
    pub fn is_refused(&self) -> bool {
        self.refused.load(Ordering::Relaxed)
    }

    /// Sends `request`, routing replies about `about` to `heard` until `subscriptions` drop.
    /// `heard` should be this link's own channel for the question: a replica that floods
    /// it then crowds out only itself.
    pub fn ask(
        &self,
        about: About,
        request: ClientRequest,
        heard: mpsc::Sender<Heard>,
        subscriptions: &mut Subscriptions,
    ) {
        {
            let mut routes = self.routes.lock().unwrap_or_else(PoisonError::into_inner);
            routes.next += 1;
            let id = routes.next;
            routes.subscribers.entry(about).or_default().push((id, heard));
            subscriptions.0.push((Arc::clone(&self.routes), about, id));
        }
        let mut outgoing = self.outgoing.lock().unwrap_or_else(PoisonError::into_inner);
        let sender = match outgoing.as_ref() {
            Some(sender) if !sender.is_closed() => sender.clone(),
            _ => {
                let (sender, receiver) = mpsc::channel(LINK_QUEUE_MAX);
                let target = Target {
                    shard: self.shard,
                    replica: self.replica,
                    address: self.address.clone(),
                    keys: Arc::clone(&self.keys),
                };
                let (routes, down) = (Arc::clone(&self.routes), Arc::clone(&self.down));
                let refused = Arc::clone(&self.refused);
                tokio::spawn(run(target, receiver, routes, (down, refused), self.stale_after));
                *outgoing = Some(sender.clone());
                sender
            }
        };
        if sender.try_send((Instant::now(), request)).is_err() {
            tracing::debug!(address = %self.address, "link queue full: request dropped");
        }
    }
}

/// The replica a link's task connects to.
struct Target {
    shard: ShardId,
    replica: usize,
    address: String,
    keys: Arc<([u8; 32], Credentials)>,
}

impl Target {
    async fn connect(&self) -> Result<SecureLink, String> {
        let connecting = async {
            let stream = TcpStream::connect(&self.address).await.map_err(|error| error.to_string())?;
            crate::network::tune(&stream);
            let (replica_key, credentials) = &*self.keys;
            credentials.dial(stream, replica_key, CLIENT_FRAME_BYTES_MAX).await.map_err(|error| error.to_string())
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connecting)
            .await
            .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
    }
}

/// Connects when there is something to send, writes requests and routes replies; after a
/// failure it waits a while (`RECONNECT_DELAY_MIN`) and connects again for the next
/// request. A request that waited past `stale_after` is dropped.
async fn run(
    target: Target,
    mut outgoing: mpsc::Receiver<(Instant, ClientRequest)>,
    routes: Arc<Mutex<Routes>>,
    (down, refused): (Arc<AtomicBool>, Arc<AtomicBool>),
    stale_after: Duration,
) {
    let (shard, replica, address) = (target.shard, target.replica, target.address.clone());
    let mut delay = RECONNECT_DELAY_MIN;
    while let Some(first) = outgoing.recv().await {
        let connected = target.connect().await;
        down.store(connected.is_err(), Ordering::Relaxed);
        if connected.is_err() {
            refused.store(false, Ordering::Relaxed); // unreachable now, whatever it said before
        }
        let link = match connected {
            Ok(link) => link,
            Err(reason) => {
                tracing::debug!(%address, ?delay, reason, "cannot connect to the replica; trying again after a delay");
                back_off(&mut delay).await;
                continue;
            }
        };
        let (mut sink, mut frames) = link.split();
        // Replies are read by their own task, so that a write waiting on a full socket never
        // stops this side from reading (two peers each waiting to write would hang).
        let answered = Arc::new(AtomicBool::new(false));
        let mut reader = {
            let (routes, address, answered) = (Arc::clone(&routes), address.clone(), Arc::clone(&answered));
            let refused = Arc::clone(&refused);
            tokio::spawn(async move {
                while let Ok(Some(bytes)) = frames.receive().await {
                    answered.store(true, Ordering::Relaxed);
                    let reply = decode::<ClientReply>(&bytes);
                    let not_admitted = |reason: &str| reason.starts_with(crate::client::NOT_ADMITTED);
                    let refusal = matches!(&reply, Ok(ClientReply::Error(reason)) if not_admitted(reason));
                    refused.store(refusal, Ordering::Relaxed);
                    match reply {
                        // Said only before the replica closes (a key it does not admit, too many
                        // connections, a frame it could not read).
                        Ok(ClientReply::Error(reason)) => {
                            if let Some(held_back) = REFUSED_WARNINGS.allow() {
                                tracing::warn!(%address, reason, held_back, "a replica refused this client");
                            }
                            return;
                        }
                        Ok(reply) => route(shard, replica, reply, &routes),
                        Err(error) => {
                            tracing::debug!(%address, %error, "an unreadable reply: connection dropped");
                            return;
                        }
                    }
                }
            })
        };
        let mut next = Some(first);
        loop {
            let request = match next.take() {
                Some(request) => request,
                None => tokio::select! {
                    request = outgoing.recv() => match request {
                        Some(request) => request,
                        None => { reader.abort(); return; }
                    },
                    _ = &mut reader => break,
                },
            };
            let (asked_at, request) = request;
            if asked_at.elapsed() > stale_after {
                continue;
            }
            if sink.send(&encode(&request)).await.is_err() {
                break;
            }
        }
        reader.abort();
        down.store(true, Ordering::Relaxed);
        tracing::debug!(%address, "connection to the replica lost");
        if answered.load(Ordering::Relaxed) {
            delay = RECONNECT_DELAY_MIN;
        }
        back_off(&mut delay).await;
    }
}

/// Waits `delay` before the next connection attempt, then doubles it (up to
/// `RECONNECT_DELAY_MAX`). What is asked meanwhile waits in the queue.
async fn back_off(delay: &mut Duration) {
    tokio::time::sleep(*delay).await;
    *delay = (*delay * 2).min(RECONNECT_DELAY_MAX);
}

fn route(shard: ShardId, replica: usize, reply: ClientReply, routes: &Mutex<Routes>) {
    let about = match &reply {
        ClientReply::Rejected { tx: Some(tx), .. } | ClientReply::Accepted { tx, .. } => About::Outcome(*tx),
        ClientReply::Answer(answer) => match &answer.body {
            AnswerBody::Transaction { tx, .. } => About::Outcome(*tx),
            AnswerBody::Object { .. } => return,
        },
        ClientReply::Record(answer) => match &answer.body {
            AnswerBody::Transaction { tx, .. } => About::Record(*tx),
            AnswerBody::Object { id, .. } => About::Object(*id),
        },
        ClientReply::Checked { tx, .. } => About::Checked(*tx),
        ClientReply::DecidedLog { from, .. } | ClientReply::DecidedFound { from, .. } => About::DecidedLog(*from),
        // A refusal of an envelope the replica could not read names no transaction: given to
        // every question on this link, one replica's refusal could be counted against others.
        _ => return,
    };
    let routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
    for (_, subscriber) in routes.subscribers.get(&about).into_iter().flatten() {
        // A question that does not keep up with this replica misses its replies rather than
        // stalling the link (each question has a channel per link: see `ask`).
        let _ = subscriber.try_send((shard, replica, reply.clone()));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    const DEADLINE: Duration = Duration::from_secs(20);

    fn numbered(n: u32) -> ClientRequest {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_be_bytes());
        ClientRequest::Transaction(TxId(id))
    }

    fn number_of(request: &ClientRequest) -> u32 {
        match request {
            ClientRequest::Transaction(TxId(id)) => u32::from_be_bytes(id[..4].try_into().unwrap()),
            other => panic!("not a numbered request: {other:?}"),
        }
    }

    /// The next request a fake replica reads.
    async fn next_request(link: &mut SecureLink) -> ClientRequest {
        let frame = tokio::time::timeout(DEADLINE, link.receive()).await.unwrap().unwrap().unwrap();
        decode::<ClientRequest>(&frame).unwrap()
    }

    /// The fake replica's key.
    fn replica() -> Credentials {
        Credentials::new(&ed25519_dalek::SigningKey::from_bytes(&[1; 32]), "test")
    }

    /// A link to the fake replica listening on `listener`.
    fn link_to(listener: &TcpListener) -> ReplicaLink {
        let client = Credentials::new(&ed25519_dalek::SigningKey::from_bytes(&[2; 32]), "test");
        let address = listener.local_addr().unwrap().to_string();
        ReplicaLink::new(ShardId(0), 0, address, replica().public(), client)
    }

    /// The fake replica's end of a connection.
    async fn accept(stream: TcpStream) -> SecureLink {
        replica().accept(stream, CLIENT_FRAME_BYTES_MAX, |_| true).await.unwrap()
    }

    /// Requests asked faster than the link writes them (here all at once, before its task
    /// has run: the test's runtime has one thread) wait up to `LINK_QUEUE_MAX`; the rest are
    /// dropped at once, `ask` never blocks, and the queued ones all reach the replica in
    /// order. Once the queue drains, the link carries new requests again.
    #[tokio::test]
    async fn requests_past_link_queue_max_are_dropped_and_the_queued_ones_all_arrive_in_order() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut link = link_to(&listener);
        link.stale_after = DEADLINE; // none grows stale here, however slow the machine
        let (heard, _replies) = mpsc::channel(1);
        let mut subscriptions = Subscriptions::default();
        let asked = u32::try_from(LINK_QUEUE_MAX).unwrap() + 1_000;
        for n in 0..asked {
            link.ask(About::Outcome(TxId([0; 32])), numbered(n), heard.clone(), &mut subscriptions);
        }
        let (stream, _) = tokio::time::timeout(DEADLINE, listener.accept()).await.unwrap().unwrap();
        let mut replica = accept(stream).await;
        for n in 0..LINK_QUEUE_MAX {
            assert_eq!(number_of(&next_request(&mut replica).await), u32::try_from(n).unwrap());
        }
        // The next request to arrive is a new one: none past the bound was kept.
        link.ask(About::Outcome(TxId([0; 32])), numbered(asked), heard, &mut subscriptions);
        assert_eq!(number_of(&next_request(&mut replica).await), asked);
    }

    /// A replica that stops reading (paused) while requests queue up gets, once it reads
    /// again, what its socket already held and then only requests younger than
    /// `stale_after`: not the backlog of questions its peers answered meanwhile.
    #[tokio::test]
    async fn requests_that_waited_past_stale_after_for_a_replica_that_stopped_reading_are_dropped() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut link = link_to(&listener);
        link.stale_after = Duration::from_millis(200);
        let (heard, _replies) = mpsc::channel(1);
        let mut subscriptions = Subscriptions::default();
        // Requests of 256 KiB each: the socket buffers fill after a few dozen, then they wait.
        let big = |n: u32| ClientRequest::Envelope {
            envelope: format!("{n:08}{}", "x".repeat(256 * 1024)),
            attempt: shardspace_core::sbac::Attempt(1),
        };
        let asked = 400;
        for n in 0..asked {
            link.ask(About::Outcome(TxId([0; 32])), big(n), heard.clone(), &mut subscriptions);
        }
        let (stream, _) = tokio::time::timeout(DEADLINE, listener.accept()).await.unwrap().unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await; // the queued ones grow stale
        link.ask(About::Outcome(TxId([0; 32])), big(asked), heard, &mut subscriptions);
        let mut replica = accept(stream).await;
        let mut received = Vec::new();
        loop {
            let ClientRequest::Envelope { envelope, .. } = next_request(&mut replica).await else {
                panic!("not an envelope")
            };
            let n: u32 = envelope[..8].parse().unwrap();
            received.push(n);
            if n == asked {
                break;
            }
        }
        assert!(received.len() < asked as usize / 2, "the backlog was written: {} requests", received.len());
        assert!(received.windows(2).all(|pair| pair[0] < pair[1]), "in order");
    }

    /// A replica that accepts and drops every connection (or refuses them) costs a
    /// connection attempt per backoff step, not one per question; once it serves again,
    /// the link carries questions again within `RECONNECT_DELAY_MAX`. (That questions asked
    /// during a delay wait for the next attempt instead of being dropped, a whole shard
    /// restarting within one delay shows: `cli/tests/sbac_processes.rs`, the lost disk.)
    #[tokio::test]
    async fn a_replica_that_drops_every_connection_is_tried_again_after_growing_delays() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let link = link_to(&listener);
        let serving = Arc::new(AtomicBool::new(false));
        let attempts = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let (tx_served, mut served) = mpsc::channel(1);
        tokio::spawn({
            let (serving, attempts) = (Arc::clone(&serving), Arc::clone(&attempts));
            async move {
                loop {
                    let (stream, _) = listener.accept().await.unwrap();
                    if !serving.load(Ordering::SeqCst) {
                        attempts.fetch_add(1, Ordering::SeqCst);
                        continue; // dropped: closed at once
                    }
                    let _ = tx_served.send(next_request(&mut accept(stream).await).await).await;
                    return;
                }
            }
        });
        let (heard, _replies) = mpsc::channel(1);
        let mut subscriptions = Subscriptions::default();
        let asking = Instant::now();
        let mut asked = 0;
        while asking.elapsed() < Duration::from_secs(1) {
            link.ask(About::Outcome(TxId([0; 32])), numbered(asked), heard.clone(), &mut subscriptions);
            asked += 1;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // 50, 100, 200, 400 and 800 ms apart: 5 or 6 attempts in a second (about 90 without backoff).
        let tried = attempts.load(Ordering::SeqCst);
        assert!((1..=8).contains(&tried), "{tried} connection attempts for {asked} questions in a second");
        serving.store(true, Ordering::SeqCst);
        let deadline = Instant::now() + DEADLINE;
        loop {
            link.ask(About::Outcome(TxId([0; 32])), numbered(asked), heard.clone(), &mut subscriptions);
            match tokio::time::timeout(Duration::from_millis(50), served.recv()).await {
                Ok(request) => break assert!(number_of(&request.unwrap()) <= asked),
                Err(_) => assert!(Instant::now() < deadline, "the link never connected again"),
            }
        }
    }
}
