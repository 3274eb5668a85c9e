//! The request interface of a replica, for the client API and benchmarks: links
//! of `secure.rs` (frames are postcard), open only to the clients the cluster file
//! lists (`[[clients]]`) and to the replicas. A client submits an attempt's envelope and hears back,
//! on the same connection, that it was taken (or why not) and then the signed
//! outcome; it may ask for an object or a transaction's record (signed answers)
//! and for the replica's status. Raw requests (`Submit`) are ordered as they
//! are: the BFT benchmark uses them to measure ordering alone.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use serde::Serialize;
use shardspace_core::sbac::{AnswerBody, SignedAnswer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};

use crate::freeze::Freezes;
use crate::network::decode;
use crate::secure::{Credentials, SecureError, SecureLink};

/// The largest frame a client may send.
pub const CLIENT_FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Replies waiting for one client connection; a client that does not read is disconnected.
pub const CLIENT_QUEUE_MAX: usize = 1_024;
/// Open client connections; one more is told so and closed.
pub const CLIENT_CONNECTIONS_MAX: usize = 256;
/// How long a refused connection is given to take its refusal.
const REFUSAL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);
/// How long a connection closed after an error may take to close its side.
const LINGER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// Refused connections being told why at once; past it one is closed untold, so that a
/// flood of connections cannot hold sockets here for the length of their refusals.
pub const REFUSALS_MAX: usize = 64;

pub use shardspace_core::sbac::replica::{
    ClientId, ClientReply, ClientRequest, Listing, PAGE_MAX, Page, RejectKind, Status,
};

/// How a replica's refusal of a client key begins (`ClientReply::Error`): the API tells it
/// from other errors by it.
pub const NOT_ADMITTED: &str = "this replica does not admit the client key";

/// What the client listener tells the core.
#[derive(Debug)]
pub enum ClientCommand {
    /// A connection opened: its replies go to `tx_client`.
    Open {
        client: ClientId,
        tx_client: mpsc::Sender<ClientReply>,
    },
    Request {
        client: ClientId,
        request: ClientRequest,
    },
    /// The connection closed: nobody waits for its answers any more.
    Closed(ClientId),
}

/// The core's side of the open connections: where each one's replies go.
#[derive(Debug, Default)]
pub struct ClientQueues {
    queues: BTreeMap<ClientId, mpsc::Sender<ClientReply>>,
}

impl ClientQueues {
    pub fn open(&mut self, client: ClientId, queue: mpsc::Sender<ClientReply>) {
        self.queues.insert(client, queue);
    }

    pub fn close(&mut self, client: ClientId) {
        self.queues.remove(&client);
    }

    /// Queues a reply. A client that does not read its replies (its queue of
    /// `CLIENT_QUEUE_MAX` is full) is let go: its connection closes once the replies
    /// queued before are written, and its next connection starts afresh.
    pub fn reply(&mut self, client: ClientId, reply: ClientReply) {
        let Some(queue) = self.queues.get(&client) else { return };
        match queue.try_send(reply) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(client = client.0, "{CLIENT_QUEUE_MAX} replies to a client are not read: disconnected");
                self.queues.remove(&client);
            }
            // It closed before its answer came (a reader that had f+1 answers from others).
            Err(mpsc::error::TrySendError::Closed(_)) => {
                self.queues.remove(&client);
            }
        }
    }

    /// Where a client's replies go, for an answer that comes from elsewhere (a dry run).
    pub fn queue(&self, client: ClientId) -> Option<mpsc::Sender<ClientReply>> {
        self.queues.get(&client).cloned()
    }

    pub fn is_open(&self, client: ClientId) -> bool {
        self.queues.contains_key(&client)
    }

    /// Forgets connections that closed, and says which.
    pub fn sweep_closed(&mut self) -> Vec<ClientId> {
        let gone: Vec<ClientId> =
            self.queues.iter().filter(|(_, queue)| queue.is_closed()).map(|(client, _)| *client).collect();
        for client in &gone {
            self.queues.remove(client);
        }
        gone
    }
}

#[derive(Debug)]
pub struct ClientListener {
    pub listener: TcpListener,
    pub tx_core: mpsc::Sender<ClientCommand>,
    pub freezes: Arc<Freezes>,
    /// This replica's key for its links.
    pub credentials: Credentials,
    /// The link keys it admits: the cluster's clients and replicas (new ones when the
    /// cluster file is reloaded).
    pub admitted: watch::Receiver<Arc<BTreeSet<[u8; 32]>>>,
    /// `IDLE_TIMEOUT`, shorter in tests.
    pub idle_timeout: std::time::Duration,
}

impl ClientListener {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(tokio::sync::Semaphore::new(CLIENT_CONNECTIONS_MAX));
        let silent = Silent::default();
        let refusals = Arc::new(tokio::sync::Semaphore::new(REFUSALS_MAX));
        let mut next_client = 0u64;
        loop {
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = shutdown.changed() => return,
            };
            match accepted {
                Ok((stream, address)) => {
                    crate::network::tune(&stream);
                    let permit = match Arc::clone(&permits).try_acquire_owned() {
                        Ok(permit) => Ok(permit),
                        // Full: the oldest connection that never asked anything makes room.
                        Err(_) if silent.close_oldest() => {
                            let freed = Arc::clone(&permits).acquire_owned();
                            tokio::time::timeout(EVICTION_WAIT, freed).await.ok().and_then(Result::ok).ok_or(())
                        }
                        Err(_) => Err(()),
                    };
                    let Ok(permit) = permit else {
                        // Told, not left hanging in the backlog: the client knows to come back.
                        if let Ok(refusing) = Arc::clone(&refusals).try_acquire_owned() {
                            let credentials = self.credentials.clone();
                            tokio::spawn(async move {
                                let reason = format!(
                                    "{CLIENT_CONNECTIONS_MAX} client connections are open here: try again later"
                                );
                                if let Some(held_back) = REFUSAL_WARNINGS.allow() {
                                    tracing::warn!(%address, held_back, "{CLIENT_CONNECTIONS_MAX} client connections are open and busy: one more refused");
                                }
                                refuse(stream, &credentials, reason).await;
                                drop(refusing);
                            });
                        }
                        continue;
                    };
                    let (tx_core, freezes) = (self.tx_core.clone(), Arc::clone(&self.freezes));
                    let (credentials, admitted) = (self.credentials.clone(), Arc::clone(&self.admitted.borrow()));
                    let refusals = Arc::clone(&refusals);
                    let idle_timeout = self.idle_timeout;
                    let shutdown = shutdown.clone();
                    let client = ClientId(next_client);
                    next_client += 1;
                    let silent = silent.clone();
                    tokio::spawn(async move {
                        let (credentials, admitted, freezes) = (&credentials, &admitted, &freezes);
                        let door = Door { credentials, admitted, freezes, idle_timeout, refusals };
                        serve(stream, address, client, &tx_core, door, shutdown, &silent).await;
                        silent.remove(client);
                        // Its place is free before the core hears it closed.
                        drop(permit);
                        // Best effort: the core also sweeps connections whose queue it finds closed.
                        let _ = tx_core.try_send(ClientCommand::Closed(client));
                    });
                }
                Err(error) => tracing::warn!(%error, "client accept failed"),
            }
        }
    }
}

/// Connections that have not sent a request yet, oldest first, and how to close each: at
/// `CLIENT_CONNECTIONS_MAX`, the oldest makes room for a new one. Hundreds of connections
/// that send nothing (or half a frame) then cost nobody their place, and each is closed
/// anyway after `FIRST_REQUEST_TIMEOUT`.
#[derive(Clone, Debug, Default)]
struct Silent(Arc<std::sync::Mutex<std::collections::BTreeMap<ClientId, tokio::sync::oneshot::Sender<()>>>>);

impl Silent {
    fn insert(&self, client: ClientId) -> tokio::sync::oneshot::Receiver<()> {
        let (close, closed) = tokio::sync::oneshot::channel();
        self.lock().insert(client, close);
        closed
    }

    fn remove(&self, client: ClientId) {
        self.lock().remove(&client);
    }

    /// Closes the oldest silent connection; false if there is none.
    fn close_oldest(&self) -> bool {
        let oldest = self.lock().pop_first();
        oldest.is_some_and(|(_, close)| close.send(()).is_ok())
    }

    fn lock(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::BTreeMap<ClientId, tokio::sync::oneshot::Sender<()>>> {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// How long a new connection may take to send its first request.
const FIRST_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);
/// How long a connection that asked before may stay without a request or a reply: past
/// `WAITING_MS_MAX`, nothing it asked is still awaited (the core forgets waiters then), so
/// closing it loses nothing; its client reconnects when it next asks.
pub const IDLE_TIMEOUT: std::time::Duration =
    std::time::Duration::from_millis(shardspace_core::sbac::replica::WAITING_MS_MAX + 30_000);
/// How long a new connection waits for the place of the silent one it closed.
const EVICTION_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

static REFUSAL_WARNINGS: crate::throttle::Throttle = crate::throttle::Throttle::new(std::time::Duration::from_secs(1));

/// Tells a connection why it is closed (past `CLIENT_CONNECTIONS_MAX`, or a key this replica
/// does not admit), over a link so that the client can read it, then closes it.
async fn refuse(stream: TcpStream, credentials: &Credentials, reason: String) {
    let told = async {
        let mut link = credentials.accept(stream, CLIENT_FRAME_BYTES_MAX, |_| true).await.ok()?;
        link.send(&encode(&ClientReply::Error(reason))).await.ok()?;
        Some(link)
    };
    if let Ok(Some(link)) = tokio::time::timeout(REFUSAL_TIMEOUT, told).await {
        linger(link).await;
    }
}

/// Closes a connection after an error was sent on it, so that the client reads the error:
/// closing with its bytes unread would reset the connection, and a reset may discard the
/// error before the client reads it. Its sending side is shut, and what it still sends is
/// read and dropped until it closes too, for at most `LINGER_TIMEOUT`.
async fn linger(link: SecureLink) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = link.into_stream();
    let _ = stream.shutdown().await;
    let mut drained = vec![0u8; 16 * 1024];
    let drain = async { while matches!(stream.read(&mut drained).await, Ok(read) if read > 0) {} };
    let _ = tokio::time::timeout(LINGER_TIMEOUT, drain).await;
}

/// What a connection is let in by: this replica's key, the keys it admits, and the freezes
/// after which its frames are void.
struct Door<'a> {
    credentials: &'a Credentials,
    admitted: &'a BTreeSet<[u8; 32]>,
    freezes: &'a Freezes,
    idle_timeout: std::time::Duration,
    /// Refusals being told, shared with the refusals of connections past the bound.
    refusals: Arc<tokio::sync::Semaphore>,
}

static STRANGER_WARNINGS: crate::throttle::Throttle = crate::throttle::Throttle::new(std::time::Duration::from_secs(1));

/// Serves one connection: its requests go to the core, the core's replies come back on
/// a queue of `CLIENT_QUEUE_MAX`, which the core drops when full (the client does not
/// read): the connection then closes.
async fn serve(
    stream: TcpStream,
    address: SocketAddr,
    client: ClientId,
    tx_core: &mpsc::Sender<ClientCommand>,
    door: Door<'_>,
    mut shutdown: watch::Receiver<bool>,
    silent: &Silent,
) {
    let mut closed = silent.insert(client);
    let first_request_due = tokio::time::sleep(FIRST_REQUEST_TIMEOUT);
    tokio::pin!(first_request_due);
    let mark = door.freezes.mark();
    // The handshake counts as the first request's time: a connection that never finishes
    // it is closed with the silent ones.
    let accepting = door.credentials.accept(stream, CLIENT_FRAME_BYTES_MAX, |_| true);
    let link = tokio::select! {
        link = accepting => link,
        _ = &mut closed => return,
        () = &mut first_request_due => return,
        _ = shutdown.changed() => return,
    };
    let mut link = match link {
        Ok(link) => link,
        Err(error) => {
            tracing::debug!(%address, %error, "client handshake failed; connection closed");
            return;
        }
    };
    if !door.admitted.contains(&link.remote) {
        let key = hex::encode(link.remote);
        if let Some(held_back) = STRANGER_WARNINGS.allow() {
            tracing::warn!(%address, key, held_back, "a client whose key is not in the cluster file's [[clients]]: refused");
        }
        // Told on a task of its own, as a connection past the bound is: the stranger's
        // place here is free at once.
        let reason = format!(
            "{NOT_ADMITTED} {key} (X25519): list the client's key in the cluster file's [[clients]] \
             (`shardspace keys`), then send the replicas SIGHUP (or restart them)"
        );
        if let Ok(refusing) = door.refusals.try_acquire_owned() {
            tokio::spawn(async move {
                let refusal = encode(&ClientReply::Error(reason));
                let told = tokio::time::timeout(REFUSAL_TIMEOUT, link.send(&refusal));
                if matches!(told.await, Ok(Ok(()))) {
                    linger(link).await;
                }
                drop(refusing);
            });
        }
        return;
    }
    let mut asked = false;
    let idle_due = tokio::time::sleep(door.idle_timeout);
    tokio::pin!(idle_due);
    let (mut sink, mut frames) = link.split();
    let (tx_client, mut rx_replies) = mpsc::channel::<ClientReply>(CLIENT_QUEUE_MAX);
    if tx_core.send(ClientCommand::Open { client, tx_client }).await.is_err() {
        return;
    }
    loop {
        tokio::select! {
            frame = frames.receive() => {
                if door.freezes.frozen_since(mark) {
                    // Questions asked while this replica did not run: its peers answered them.
                    tracing::debug!(%address, "a request read across a freeze: connection reset");
                    if let Some(link) = frames.reunite(sink) {
                        door.freezes.reset(link.stream());
                    }
                    break;
                }
                let request = match frame {
                    Ok(Some(bytes)) => decode::<ClientRequest>(&bytes),
                    Err(SecureError::TooLarge(max)) => Err(format!("a request frame of more than {max} bytes")),
                    Err(error) => {
                        tracing::debug!(%address, %error, "a client link failed; connection closed");
                        break;
                    }
                    Ok(None) => break,
                };
                match request {
                    Ok(request) => {
                        idle_due.as_mut().reset(tokio::time::Instant::now() + door.idle_timeout);
                        if !asked {
                            asked = true;
                            silent.remove(client);
                        }
                        if tx_core.send(ClientCommand::Request { client, request }).await.is_err() { break; }
                    }
                    Err(reason) => {
                        tracing::debug!(%address, reason, "bad client frame; connection closed");
                        let _ = sink.send(&encode(&ClientReply::Error(reason))).await;
                        if let Some(link) = frames.reunite(sink) {
                            linger(link).await;
                        }
                        break;
                    }
                }
            }
            reply = rx_replies.recv() => {
                let Some(reply) = reply else { break };
                idle_due.as_mut().reset(tokio::time::Instant::now() + door.idle_timeout);
                if let Err(error) = sink.send(&encode(&reply)).await {
                    tracing::debug!(%address, %error, "a reply could not be sent; connection closed");
                    break;
                }
            }
            _ = shutdown.changed() => break,
            _ = &mut closed, if !asked => {
                tracing::debug!(%address, "a connection that asked nothing closed to make room");
                break;
            }
            () = &mut first_request_due, if !asked => {
                tracing::debug!(%address, "no request within {FIRST_REQUEST_TIMEOUT:?}: connection closed");
                break;
            }
            () = &mut idle_due => {
                tracing::debug!(%address, idle = ?door.idle_timeout, "no request or reply: connection closed");
                break;
            }
        }
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> bytes::Bytes {
    bytes::Bytes::from(postcard::to_stdvec(value).expect("encoding into memory cannot fail"))
}

/// How a client reaches every replica's request interface: each replica's address and link
/// key (by shard, then replica), and the client's own key.
#[derive(Clone, Debug)]
pub struct Doors {
    credentials: Credentials,
    replicas: Vec<Vec<(String, [u8; 32])>>,
}

impl Doors {
    /// The replicas of `file`, reached with `credentials` (`ClusterFile::client_credentials`).
    pub fn new(file: &crate::config::ClusterFile, credentials: Credentials) -> Self {
        let replicas = file.shards.iter().enumerate().map(|(shard, entry)| {
            let replicas = entry.replicas.iter().enumerate();
            let keyed = replicas
                .filter_map(|(replica, r)| Some((r.client_address.clone(), file.replica_link_key(shard, replica)?)));
            keyed.collect()
        });
        Self { credentials, replicas: replicas.collect() }
    }

    /// Every replica's address and link key, by shard then replica.
    pub fn replicas(&self) -> &[Vec<(String, [u8; 32])>] {
        &self.replicas
    }

    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// A connection to replica `replica` of shard `shard`.
    pub async fn connect(&self, shard: usize, replica: usize) -> std::io::Result<ReplicaClient> {
        let (address, _) = self.door(shard, replica)?;
        self.connect_at(&address.clone(), shard, replica).await
    }

    /// A connection to that replica at another address than the cluster file's (one
    /// resolved already, or behind a relay).
    pub async fn connect_at(&self, address: &str, shard: usize, replica: usize) -> std::io::Result<ReplicaClient> {
        let (_, key) = self.door(shard, replica)?;
        ReplicaClient::connect(address, &self.credentials, key).await
    }

    /// A connection to the replica whose client address (in the cluster file) is `address`.
    pub async fn connect_to(&self, address: &str) -> std::io::Result<ReplicaClient> {
        let door = self.replicas.iter().flatten().find(|(known, _)| known == address);
        let (_, key) =
            door.ok_or_else(|| std::io::Error::other(format!("no replica of the cluster is at {address}")))?;
        ReplicaClient::connect(address, &self.credentials, key).await
    }

    fn door(&self, shard: usize, replica: usize) -> std::io::Result<&(String, [u8; 32])> {
        let door = self.replicas.get(shard).and_then(|replicas| replicas.get(replica));
        door.ok_or_else(|| std::io::Error::other(format!("there is no replica {replica} of shard {shard}")))
    }
}

/// A client of one replica's request interface (tests, benchmarks, the API).
#[derive(Debug)]
pub struct ReplicaClient {
    link: SecureLink,
}

impl ReplicaClient {
    /// Connects to the replica at `address`, which must hold the secret of `replica_key`
    /// (`ClusterFile::replica_link_key`), as a client with `credentials`.
    pub async fn connect(address: &str, credentials: &Credentials, replica_key: &[u8; 32]) -> std::io::Result<Self> {
        let stream = TcpStream::connect(address).await?;
        crate::network::tune(&stream);
        let link =
            credentials.dial(stream, replica_key, CLIENT_FRAME_BYTES_MAX).await.map_err(std::io::Error::other)?;
        Ok(Self { link })
    }

    pub async fn send(&mut self, request: &ClientRequest) -> std::io::Result<()> {
        self.link.send(&encode(request)).await.map_err(std::io::Error::other)
    }

    /// The next reply; `None` when the replica closed the connection.
    pub async fn receive(&mut self) -> std::io::Result<Option<ClientReply>> {
        match self.link.receive().await {
            Ok(Some(bytes)) => decode(&bytes).map(Some).map_err(std::io::Error::other),
            Ok(None) => Ok(None),
            Err(error) => Err(std::io::Error::other(error)),
        }
    }

    pub async fn status(&mut self) -> std::io::Result<Status> {
        self.send(&ClientRequest::Status).await?;
        self.expect(|reply| match reply {
            ClientReply::Status(status) => Some(status),
            _ => None,
        })
        .await
    }

    /// This replica's signed answer about an object or a transaction (`Object` or `Transaction`;
    /// outcomes of envelopes sent on this connection are skipped).
    pub async fn read(&mut self, request: ClientRequest) -> std::io::Result<SignedAnswer> {
        self.send(&request).await?;
        self.expect(|reply| match (reply, &request) {
            (ClientReply::Record(answer), ClientRequest::Object(asked)) => {
                matches!(&answer.body, AnswerBody::Object { id, .. } if id == asked).then_some(answer)
            }
            (ClientReply::Record(answer), ClientRequest::Transaction(asked)) => {
                matches!(&answer.body, AnswerBody::Transaction { tx, .. } if tx == asked).then_some(answer)
            }
            _ => None,
        })
        .await
    }

    /// A page of this replica's objects or transactions.
    pub async fn list(&mut self, what: Listing, after: Option<[u8; 32]>, limit: u32) -> std::io::Result<Page> {
        self.send(&ClientRequest::List { what, after, limit }).await?;
        let page = self.expect(|reply| match reply {
            ClientReply::Page(page) => Some(Ok(page)),
            ClientReply::Error(why) => Some(Err(why)),
            _ => None,
        });
        page.await?.map_err(|why| std::io::Error::other(format!("the replica refused the listing: {why}")))
    }

    /// Skips replies until `pick` takes one.
    async fn expect<T>(&mut self, pick: impl Fn(ClientReply) -> Option<T>) -> std::io::Result<T> {
        loop {
            match self.receive().await? {
                Some(reply) => {
                    if let Some(value) = pick(reply) {
                        return Ok(value);
                    }
                }
                None => return Err(std::io::Error::other("the replica closed the connection")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_client_past_client_queue_max_is_let_go_and_gets_every_reply_queued_before() {
        let mut queues = ClientQueues::default();
        let (client, other) = (ClientId(1), ClientId(2));
        let (tx_client, mut replies) = mpsc::channel(CLIENT_QUEUE_MAX);
        let (tx_other, mut other_replies) = mpsc::channel(CLIENT_QUEUE_MAX);
        queues.open(client, tx_client);
        queues.open(other, tx_other);
        let error = |n: usize| ClientReply::Error(n.to_string());
        for n in 0..CLIENT_QUEUE_MAX {
            queues.reply(client, error(n));
        }
        assert!(queues.is_open(client), "a full queue is not yet a slow client");
        queues.reply(client, error(CLIENT_QUEUE_MAX));
        assert!(!queues.is_open(client), "one reply past CLIENT_QUEUE_MAX lets the client go");
        queues.reply(other, error(0));
        assert!(queues.is_open(other), "another client is not touched");
        for n in 0..CLIENT_QUEUE_MAX {
            assert_eq!(replies.recv().await, Some(error(n)));
        }
        assert_eq!(replies.recv().await, None, "the connection's queue ends: it closes");
        assert_eq!(other_replies.recv().await, Some(error(0)));
    }
}
