//! The request interface of a replica, for the client API and benchmarks:
//! framed TCP (postcard). A client submits an attempt's envelope and hears back,
//! on the same connection, that it was taken (or why not) and then the signed
//! outcome; it may ask for an object or a transaction's record (signed answers)
//! and for the replica's status. Raw requests (`Submit`) are ordered as they
//! are: the BFT benchmark uses them to measure ordering alone.

use std::net::SocketAddr;
use std::sync::Arc;

use futures::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use shardspace_core::bft::{Digest, Height, ReplicaId, Request, Round};
use shardspace_core::sbac::{AnswerBody, Attempt, ObjectView, SignedAnswer, TxView};
use shardspace_core::{ObjectId, ShardId, TxId};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

use crate::network::decode;

/// The largest frame a client may send.
pub const CLIENT_FRAME_BYTES_MAX: usize = 4 * 1024 * 1024;
/// Replies waiting for one client connection; a client that does not read is disconnected.
pub const CLIENT_QUEUE_MAX: usize = 1_024;
/// Open client connections.
pub const CLIENT_CONNECTIONS_MAX: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Raw requests to order (the shard refuses to execute what is not an S-BAC request).
    Submit(Vec<Request>),
    Status,
    /// Check and prepare one attempt of a transaction; its outcome follows on this connection.
    Envelope {
        envelope: String,
        attempt: Attempt,
    },
    Object(ObjectId),
    Transaction(TxId),
    /// A page of this replica's objects or transaction records, in id order after `after`
    /// (unsigned: for browsing, not for trust).
    List {
        what: Listing,
        after: Option<[u8; 32]>,
        limit: u32,
    },
}

/// What `List` pages through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Listing {
    Objects,
    Transactions,
}

/// The most entries in one page.
pub const PAGE_MAX: u32 = 1_000;

/// One page of a replica's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub objects: Vec<(ObjectId, ObjectView)>,
    pub transactions: Vec<(TxId, TxView)>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientReply {
    /// Requests of this connection decided, each with its height.
    Decided(Vec<(Digest, Height)>),
    /// Requests refused (the mempool is full, or a request is too large): try again later.
    Refused(Vec<Digest>),
    Status(Status),
    /// The request could not be read.
    Error(String),
    /// The envelope was taken: its checks and ordering are under way.
    Accepted {
        tx: TxId,
        attempt: Attempt,
    },
    /// The envelope was refused before ordering, and nothing changed.
    Rejected {
        tx: Option<TxId>,
        kind: String,
        message: String,
    },
    /// A signed answer about an object or a transaction; for a submitted envelope,
    /// a transaction answer once its attempt is decided here.
    Answer(SignedAnswer),
    Page(Page),
    /// A signed answer to an `Object` or `Transaction` read: distinct from an envelope's
    /// outcome (`Answer`), so that a connection shared by many questions never takes one
    /// for the other.
    Record(SignedAnswer),
}

/// A replica's view of its shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub shard: ShardId,
    pub replica: ReplicaId,
    pub round: Round,
    pub height: Height,
    /// Requests executed, and a digest of the application state after them.
    pub executed: u64,
    pub state: Digest,
    /// Requests waiting in this replica's mempool.
    pub pending: u64,
}

/// What the client listener asks of the core.
#[derive(Debug)]
pub enum ClientCommand {
    Submit { requests: Vec<Request>, tx_client: mpsc::Sender<ClientReply> },
    Status(oneshot::Sender<Status>),
    Envelope { envelope: String, attempt: Attempt, tx_client: mpsc::Sender<ClientReply> },
    Object(ObjectId, oneshot::Sender<SignedAnswer>),
    Transaction(TxId, oneshot::Sender<SignedAnswer>),
    List { what: Listing, after: Option<[u8; 32]>, limit: u32, reply: oneshot::Sender<Page> },
}

/// Asks the core and waits for its answer; `None` when the core has stopped.
async fn ask<T>(
    tx_core: &mpsc::Sender<ClientCommand>,
    command: impl FnOnce(oneshot::Sender<T>) -> ClientCommand,
) -> Option<T> {
    let (reply, answer) = oneshot::channel();
    tx_core.send(command(reply)).await.ok()?;
    answer.await.ok()
}

#[derive(Debug)]
pub struct ClientListener {
    pub listener: TcpListener,
    pub tx_core: mpsc::Sender<ClientCommand>,
}

impl ClientListener {
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let permits = Arc::new(tokio::sync::Semaphore::new(CLIENT_CONNECTIONS_MAX));
        loop {
            let permit = tokio::select! {
                permit = Arc::clone(&permits).acquire_owned() => permit,
                _ = shutdown.changed() => return,
            };
            let Ok(permit) = permit else { return };
            let accepted = tokio::select! {
                accepted = self.listener.accept() => accepted,
                _ = shutdown.changed() => return,
            };
            match accepted {
                Ok((stream, address)) => {
                    let tx_core = self.tx_core.clone();
                    let shutdown = shutdown.clone();
                    tokio::spawn(async move {
                        serve(stream, address, tx_core, shutdown).await;
                        drop(permit);
                    });
                }
                Err(error) => tracing::warn!(%error, "client accept failed"),
            }
        }
    }
}

async fn serve(
    stream: TcpStream,
    address: SocketAddr,
    tx_core: mpsc::Sender<ClientCommand>,
    mut shutdown: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let codec = LengthDelimitedCodec::builder().max_frame_length(CLIENT_FRAME_BYTES_MAX).new_codec();
    let (mut sink, mut frames) = Framed::new(stream, codec).split();
    let (tx_client, mut rx_replies) = mpsc::channel::<ClientReply>(CLIENT_QUEUE_MAX);
    loop {
        tokio::select! {
            frame = frames.next() => {
                let request = match frame {
                    Some(Ok(bytes)) => decode::<ClientRequest>(&bytes),
                    Some(Err(error)) => Err(error.to_string()),
                    None => return,
                };
                let command = match request {
                    Ok(ClientRequest::Submit(requests)) => ClientCommand::Submit { requests, tx_client: tx_client.clone() },
                    Ok(ClientRequest::Envelope { envelope, attempt }) => {
                        ClientCommand::Envelope { envelope, attempt, tx_client: tx_client.clone() }
                    }
                    Ok(ClientRequest::Status) => {
                        let Some(status) = ask(&tx_core, ClientCommand::Status).await else { return };
                        if tx_client.try_send(ClientReply::Status(status)).is_err() { return; }
                        continue;
                    }
                    Ok(ClientRequest::Object(id)) => {
                        let Some(answer) = ask(&tx_core, |reply| ClientCommand::Object(id, reply)).await else { return };
                        if tx_client.try_send(ClientReply::Record(answer)).is_err() { return; }
                        continue;
                    }
                    Ok(ClientRequest::List { what, after, limit }) => {
                        let command = |reply| ClientCommand::List { what, after, limit, reply };
                        let Some(page) = ask(&tx_core, command).await else { return };
                        if tx_client.try_send(ClientReply::Page(page)).is_err() { return; }
                        continue;
                    }
                    Ok(ClientRequest::Transaction(tx)) => {
                        let Some(answer) = ask(&tx_core, |reply| ClientCommand::Transaction(tx, reply)).await else { return };
                        if tx_client.try_send(ClientReply::Record(answer)).is_err() { return; }
                        continue;
                    }
                    Err(reason) => {
                        tracing::debug!(%address, reason, "bad client frame; connection closed");
                        let _ = sink.send(encode(&ClientReply::Error(reason))).await;
                        return;
                    }
                };
                if tx_core.send(command).await.is_err() { return; }
            }
            reply = rx_replies.recv() => {
                let Some(reply) = reply else { return };
                if sink.send(encode(&reply)).await.is_err() { return; }
            }
            _ = shutdown.changed() => return,
        }
    }
}

pub(crate) fn encode<T: Serialize>(value: &T) -> bytes::Bytes {
    bytes::Bytes::from(postcard::to_stdvec(value).expect("encoding into memory cannot fail"))
}

/// A client of one replica's request interface (tests, benchmarks, the API).
#[derive(Debug)]
pub struct ReplicaClient {
    frames: Framed<TcpStream, LengthDelimitedCodec>,
}

impl ReplicaClient {
    pub async fn connect(address: &str) -> std::io::Result<Self> {
        let stream = TcpStream::connect(address).await?;
        stream.set_nodelay(true)?;
        let codec = LengthDelimitedCodec::builder().max_frame_length(CLIENT_FRAME_BYTES_MAX).new_codec();
        Ok(Self { frames: Framed::new(stream, codec) })
    }

    pub async fn send(&mut self, request: &ClientRequest) -> std::io::Result<()> {
        self.frames.send(encode(request)).await
    }

    /// The next reply; `None` when the replica closed the connection.
    pub async fn receive(&mut self) -> std::io::Result<Option<ClientReply>> {
        match self.frames.next().await {
            Some(Ok(bytes)) => decode(&bytes).map(Some).map_err(std::io::Error::other),
            Some(Err(error)) => Err(error),
            None => Ok(None),
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
        self.expect(|reply| match reply {
            ClientReply::Page(page) => Some(page),
            _ => None,
        })
        .await
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
