//! One long-lived connection from a client (the API) to one replica's request
//! interface, shared by every question asked of that replica. A connection per
//! question cost a TCP handshake and teardown per replica per transaction; under load
//! that was a third of the API's CPU and much of the replicas' system time.
//!
//! Replies are routed by what they are about (a transaction or an object) to whoever
//! subscribed to it, each tagged with this link's shard and replica: a replica still
//! speaks for itself only, on its own connection.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use shardspace_core::sbac::AnswerBody;
use shardspace_core::{ObjectId, ShardId, TxId};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::client::{CLIENT_FRAME_BYTES_MAX, ClientReply, ClientRequest, encode};
use crate::network::decode;

/// Requests waiting to be written to one replica; more are dropped (that replica is silent
/// on them, as a slow replica is).
const LINK_QUEUE_MAX: usize = 4_096;
/// How long a connection attempt may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// What a reply is about, to route it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum About {
    Tx(TxId),
    Object(ObjectId),
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
    routes: Arc<Mutex<Routes>>,
    outgoing: Mutex<Option<mpsc::Sender<ClientRequest>>>,
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
    pub fn new(shard: ShardId, replica: usize, address: String) -> Self {
        Self { shard, replica, address, routes: Arc::default(), outgoing: Mutex::new(None) }
    }

    /// Sends `request`, routing replies about `about` to `heard` until `subscriptions` drop.
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
                let (shard, replica, address) = (self.shard, self.replica, self.address.clone());
                tokio::spawn(run(shard, replica, address, receiver, Arc::clone(&self.routes)));
                *outgoing = Some(sender.clone());
                sender
            }
        };
        if sender.try_send(request).is_err() {
            tracing::debug!(address = %self.address, "link queue full: request dropped");
        }
    }
}

/// Connects when there is something to send, writes requests and routes replies; after a
/// failure it drops what waits (those questions go unanswered by this replica) and
/// connects again for the next request.
async fn run(
    shard: ShardId,
    replica: usize,
    address: String,
    mut outgoing: mpsc::Receiver<ClientRequest>,
    routes: Arc<Mutex<Routes>>,
) {
    while let Some(first) = outgoing.recv().await {
        let connected = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&address)).await;
        let Ok(Ok(stream)) = connected else {
            tracing::debug!(%address, "cannot connect to the replica");
            while outgoing.try_recv().is_ok() {}
            continue;
        };
        let _ = stream.set_nodelay(true);
        let codec = LengthDelimitedCodec::builder().max_frame_length(CLIENT_FRAME_BYTES_MAX).new_codec();
        let (mut sink, mut frames) = Framed::new(stream, codec).split();
        if sink.send(encode(&first)).await.is_err() {
            continue;
        }
        loop {
            tokio::select! {
                request = outgoing.recv() => {
                    let Some(request) = request else { return };
                    if sink.send(encode(&request)).await.is_err() { break; }
                }
                frame = frames.next() => {
                    let Some(Ok(bytes)) = frame else { break };
                    match decode::<ClientReply>(&bytes) {
                        Ok(reply) => route(shard, replica, reply, &routes),
                        Err(error) => {
                            tracing::debug!(%address, %error, "an unreadable reply: connection dropped");
                            break;
                        }
                    }
                }
            }
        }
        tracing::debug!(%address, "connection to the replica lost");
        while outgoing.try_recv().is_ok() {}
    }
}

fn route(shard: ShardId, replica: usize, reply: ClientReply, routes: &Mutex<Routes>) {
    let about = match &reply {
        ClientReply::Rejected { tx: Some(tx), .. } | ClientReply::Accepted { tx, .. } => About::Tx(*tx),
        ClientReply::Answer(answer) => match &answer.body {
            AnswerBody::Transaction { tx, .. } => About::Tx(*tx),
            AnswerBody::Object { id, .. } => About::Object(*id),
        },
        _ => return,
    };
    let routes = routes.lock().unwrap_or_else(PoisonError::into_inner);
    for (_, subscriber) in routes.subscribers.get(&about).into_iter().flatten() {
        // A subscriber that does not keep up misses replies rather than stalling the link.
        let _ = subscriber.try_send((shard, replica, reply.clone()));
    }
}
