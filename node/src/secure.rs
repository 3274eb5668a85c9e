//! Links that authenticate both ends and every frame: a Noise IK handshake
//! (`Noise_IK_25519_ChaChaPoly_BLAKE2s`, the `snow` crate) whose static keys are the
//! X25519 forms of the ed25519 keys the cluster file already lists, then frames sealed
//! with ChaCha20-Poly1305 under a nonce per direction, so a frame changed, dropped,
//! replayed or reordered on the way fails and closes the link.
//!
//! The dialer names the key it expects (from the cluster file): a listener that is not
//! who it should be cannot finish the handshake. The listener learns the dialer's key
//! from the handshake and asks `admit` whether it is one of its own. The prologue binds
//! the cluster's name, so a handshake of one cluster is void in another. A replayed
//! first message gets an answer, but the replayer holds neither ephemeral secret: the
//! dialer's first sealed record (empty, sent with no wait after the handshake) confirms
//! it holds its key, and the listener takes the link only once that record opens, so a
//! replay never gets past the handshake's bounds (its time and `HANDSHAKES_MAX`).
//!
//! Frames go over TCP as length-delimited records of at most 65,535 bytes (Noise's own
//! bound); a frame longer than one record is sent in pieces, each sealed, the first
//! byte of each saying whether more follow.
//!
//! Used by the peer network (`network.rs`) and the request interface (`client.rs`,
//! `replica_link.rs`).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use ed25519_dalek::{SigningKey, VerifyingKey};
use futures::{SinkExt, StreamExt};
use snow::StatelessTransportState;
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, LengthDelimitedCodec};

const PATTERN: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";
/// Noise's largest message, and the tag each sealed record carries.
const RECORD_BYTES_MAX: usize = 65_535;
const TAG_BYTES: usize = 16;
/// A record's plaintext: one byte saying whether more pieces follow, then the piece.
const PIECE_BYTES_MAX: usize = RECORD_BYTES_MAX - TAG_BYTES - 1;

/// Why a link could not be made or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum SecureError {
    #[error("the connection failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection closed")]
    Closed,
    #[error("the handshake failed (not the key expected, or not a handshake): {0}")]
    Handshake(String),
    #[error("the key {0} is not one of the cluster's")]
    Stranger(String),
    #[error("a frame that does not open (changed, replayed or out of order)")]
    Tampered,
    #[error("a frame of more than {0} bytes")]
    TooLarge(usize),
    #[error("the link failed before: it carries nothing more")]
    Broken,
}

/// A static key: the X25519 form of an ed25519 key.
#[derive(Clone)]
pub struct StaticKey {
    secret: [u8; 32],
    pub public: [u8; 32],
}

impl std::fmt::Debug for StaticKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StaticKey({})", hex::encode(self.public))
    }
}

impl StaticKey {
    /// The X25519 key of an ed25519 signing key (its scalar, which X25519 clamps as
    /// ed25519 does): one secret per replica, as the cluster file lists.
    pub fn of(signing: &SigningKey) -> Self {
        Self { secret: signing.to_scalar_bytes(), public: public_of(&signing.verifying_key()) }
    }
}

/// The X25519 public key of an ed25519 public key.
pub fn public_of(verifying: &VerifyingKey) -> [u8; 32] {
    verifying.to_montgomery().to_bytes()
}

fn prologue(cluster: &str) -> Vec<u8> {
    [b"shardspace link 1 ".as_slice(), cluster.as_bytes()].concat()
}

fn handshake_error(error: snow::Error) -> SecureError {
    SecureError::Handshake(error.to_string())
}

/// Who a process is on the cluster's links: its static key, and the cluster it belongs to.
#[derive(Clone, Debug)]
pub struct Credentials {
    key: StaticKey,
    cluster: String,
}

impl Credentials {
    pub fn new(signing: &SigningKey, cluster: &str) -> Self {
        Self { key: StaticKey::of(signing), cluster: cluster.into() }
    }

    /// The X25519 public key others admit or expect.
    pub fn public(&self) -> [u8; 32] {
        self.key.public
    }

    /// Dials: the listener must hold the secret of `expected`.
    pub async fn dial(
        &self,
        stream: TcpStream,
        expected: &[u8; 32],
        frame_bytes_max: usize,
    ) -> Result<SecureLink, SecureError> {
        dial(stream, &self.key, expected, &self.cluster, frame_bytes_max).await
    }

    /// Accepts: the dialer's key must be one `admit` knows.
    pub async fn accept(
        &self,
        stream: TcpStream,
        frame_bytes_max: usize,
        admit: impl Fn(&[u8; 32]) -> bool,
    ) -> Result<SecureLink, SecureError> {
        accept(stream, &self.key, &self.cluster, frame_bytes_max, admit).await
    }
}

type Records = Framed<TcpStream, LengthDelimitedCodec>;

/// One end of an authenticated link.
pub struct SecureLink {
    records: Records,
    sealing: Sealing,
    opening: Opening,
    /// The other end's static key.
    pub remote: [u8; 32],
}

impl std::fmt::Debug for SecureLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecureLink(remote {})", hex::encode(self.remote))
    }
}

/// The sending side's state: the next nonce and the largest frame.
struct Sealing {
    state: Arc<StatelessTransportState>,
    next: u64,
    frame_bytes_max: usize,
    /// A send failed part-way: nothing more is sent (the other end would lose its place).
    broken: bool,
}

/// The receiving side's state. The pieces of a frame read so far are kept here, so that
/// a `receive` dropped between records (in a `select!`) loses nothing.
struct Opening {
    state: Arc<StatelessTransportState>,
    next: u64,
    frame_bytes_max: usize,
    partial: BytesMut,
    plain: Vec<u8>,
    /// A record did not open, or the connection failed: nothing more is opened, so that no
    /// record is ever tried under a nonce another one failed under.
    broken: bool,
}

fn records(stream: TcpStream) -> Records {
    let codec = LengthDelimitedCodec::builder().max_frame_length(RECORD_BYTES_MAX).new_codec();
    Framed::new(stream, codec)
}

async fn next_record(records: &mut Records) -> Result<BytesMut, SecureError> {
    match records.next().await {
        Some(Ok(record)) => Ok(record),
        Some(Err(error)) => Err(SecureError::Io(error)),
        None => Err(SecureError::Closed),
    }
}

fn transport(records: Records, state: StatelessTransportState, remote: [u8; 32], frame_bytes_max: usize) -> SecureLink {
    let state = Arc::new(state);
    SecureLink {
        records,
        sealing: Sealing { state: Arc::clone(&state), next: 0, frame_bytes_max, broken: false },
        opening: Opening {
            state,
            next: 0,
            frame_bytes_max,
            partial: BytesMut::new(),
            plain: vec![0; RECORD_BYTES_MAX],
            broken: false,
        },
        remote,
    }
}

/// Dials: the listener must hold the secret of `expected`.
pub async fn dial(
    stream: TcpStream,
    own: &StaticKey,
    expected: &[u8; 32],
    cluster: &str,
    frame_bytes_max: usize,
) -> Result<SecureLink, SecureError> {
    let prologue = prologue(cluster);
    let params = PATTERN.parse().map_err(handshake_error)?;
    let mut handshake = snow::Builder::new(params)
        .local_private_key(&own.secret)
        .and_then(|builder| builder.remote_public_key(expected))
        .and_then(|builder| builder.prologue(&prologue))
        .and_then(snow::Builder::build_initiator)
        .map_err(handshake_error)?;
    let mut records = records(stream);
    let mut message = vec![0u8; RECORD_BYTES_MAX];
    let written = handshake.write_message(&[], &mut message).map_err(handshake_error)?;
    records.send(Bytes::copy_from_slice(&message[..written])).await?;
    let answer = next_record(&mut records).await?;
    handshake.read_message(&answer, &mut message).map_err(handshake_error)?;
    let state = handshake.into_stateless_transport_mode().map_err(handshake_error)?;
    let mut link = transport(records, state, *expected, frame_bytes_max);
    // The key confirmation `accept` waits for: an empty frame, sealed.
    link.send(&[]).await?;
    Ok(link)
}

/// Accepts: the dialer's key must be one `admit` knows.
pub async fn accept(
    stream: TcpStream,
    own: &StaticKey,
    cluster: &str,
    frame_bytes_max: usize,
    admit: impl Fn(&[u8; 32]) -> bool,
) -> Result<SecureLink, SecureError> {
    let prologue = prologue(cluster);
    let params = PATTERN.parse().map_err(handshake_error)?;
    let mut handshake = snow::Builder::new(params)
        .local_private_key(&own.secret)
        .and_then(|builder| builder.prologue(&prologue))
        .and_then(snow::Builder::build_responder)
        .map_err(handshake_error)?;
    let mut records = records(stream);
    let first = next_record(&mut records).await?;
    let mut message = vec![0u8; RECORD_BYTES_MAX];
    handshake.read_message(&first, &mut message).map_err(handshake_error)?;
    let remote: [u8; 32] = handshake
        .get_remote_static()
        .and_then(|key| key.try_into().ok())
        .ok_or_else(|| SecureError::Handshake("no static key".into()))?;
    if !admit(&remote) {
        return Err(SecureError::Stranger(hex::encode(remote)));
    }
    let written = handshake.write_message(&[], &mut message).map_err(handshake_error)?;
    records.send(Bytes::copy_from_slice(&message[..written])).await?;
    let state = handshake.into_stateless_transport_mode().map_err(handshake_error)?;
    let mut link = transport(records, state, remote, frame_bytes_max);
    match link.receive().await {
        Ok(Some(confirmation)) if confirmation.is_empty() => Ok(link),
        Ok(_) | Err(SecureError::Tampered | SecureError::Broken) => {
            Err(SecureError::Handshake("the dialer did not confirm its key (a replayed handshake?)".into()))
        }
        Err(error) => Err(error),
    }
}

impl Sealing {
    /// Seals one frame into records (in pieces if it is longer than one) and sends them.
    async fn send<S>(&mut self, records: &mut S, frame: &[u8]) -> Result<(), SecureError>
    where
        S: futures::Sink<Bytes, Error = std::io::Error> + Unpin,
    {
        if self.broken {
            return Err(SecureError::Broken);
        }
        if frame.len() > self.frame_bytes_max {
            return Err(SecureError::TooLarge(self.frame_bytes_max));
        }
        self.broken = true; // until the whole frame is sent
        let mut pieces = frame.chunks(PIECE_BYTES_MAX).peekable();
        let mut plain = Vec::with_capacity(PIECE_BYTES_MAX.min(frame.len()) + 1);
        let mut sealed = vec![0u8; (frame.len() + 1 + TAG_BYTES).min(RECORD_BYTES_MAX)];
        loop {
            let piece = pieces.next().unwrap_or_default();
            plain.clear();
            plain.push(u8::from(pieces.peek().is_some()));
            plain.extend_from_slice(piece);
            sealed.resize(plain.len() + TAG_BYTES, 0);
            let written =
                self.state.write_message(self.next, &plain, &mut sealed).map_err(|_| SecureError::Tampered)?;
            self.next += 1;
            records.feed(Bytes::copy_from_slice(&sealed[..written])).await?;
            if pieces.peek().is_none() {
                break;
            }
        }
        records.flush().await?;
        self.broken = false;
        Ok(())
    }
}

impl Opening {
    /// Opens records until a whole frame is read; `None` when the other end closed.
    /// Cancel-safe: a record is read whole or not at all, and what it held is kept.
    async fn receive<S>(&mut self, records: &mut S) -> Result<Option<Bytes>, SecureError>
    where
        S: futures::Stream<Item = std::io::Result<BytesMut>> + Unpin,
    {
        if self.broken {
            return Err(SecureError::Broken);
        }
        let received = self.open(records).await;
        self.broken = received.is_err();
        received
    }

    /// `receive`, before a failure is noted.
    async fn open<S>(&mut self, records: &mut S) -> Result<Option<Bytes>, SecureError>
    where
        S: futures::Stream<Item = std::io::Result<BytesMut>> + Unpin,
    {
        loop {
            let record = match records.next().await {
                Some(Ok(record)) => record,
                Some(Err(error)) => return Err(SecureError::Io(error)),
                None if self.partial.is_empty() => return Ok(None),
                None => return Err(SecureError::Closed),
            };
            let read =
                self.state.read_message(self.next, &record, &mut self.plain).map_err(|_| SecureError::Tampered)?;
            self.next += 1;
            let Some((&more, piece)) = self.plain[..read].split_first() else { return Err(SecureError::Tampered) };
            if self.partial.len() + piece.len() > self.frame_bytes_max {
                return Err(SecureError::TooLarge(self.frame_bytes_max));
            }
            self.partial.extend_from_slice(piece);
            if more == 0 {
                return Ok(Some(self.partial.split().freeze()));
            }
        }
    }
}

impl SecureLink {
    /// Seals and sends one frame.
    pub async fn send(&mut self, frame: &[u8]) -> Result<(), SecureError> {
        self.sealing.send(&mut self.records, frame).await
    }

    /// The next whole frame; `None` when the other end closed.
    pub async fn receive(&mut self) -> Result<Option<Bytes>, SecureError> {
        self.opening.receive(&mut self.records).await
    }

    /// The largest frame either way from now on (larger once the other end is known).
    pub fn set_frame_bytes_max(&mut self, frame_bytes_max: usize) {
        self.sealing.frame_bytes_max = frame_bytes_max;
        self.opening.frame_bytes_max = frame_bytes_max;
    }

    /// The connection under the link (for its socket options).
    pub fn stream(&self) -> &TcpStream {
        self.records.get_ref()
    }

    /// The connection, once nothing more is to be sent or read on the link.
    pub fn into_stream(self) -> TcpStream {
        self.records.into_inner()
    }

    /// Its sending and receiving sides, to be used by two tasks (or two arms of a select).
    pub fn split(self) -> (LinkSender, LinkReceiver) {
        let (sink, stream) = self.records.split();
        let sender = LinkSender { sink, sealing: self.sealing };
        (sender, LinkReceiver { stream, opening: self.opening, remote: self.remote })
    }
}

/// The sending side of a split link.
pub struct LinkSender {
    sink: futures::stream::SplitSink<Records, Bytes>,
    sealing: Sealing,
}

/// The receiving side of a split link.
pub struct LinkReceiver {
    stream: futures::stream::SplitStream<Records>,
    opening: Opening,
    remote: [u8; 32],
}

impl std::fmt::Debug for LinkSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LinkSender(sent {})", self.sealing.next)
    }
}

impl std::fmt::Debug for LinkReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LinkReceiver(remote {})", hex::encode(self.remote))
    }
}

impl LinkSender {
    pub async fn send(&mut self, frame: &[u8]) -> Result<(), SecureError> {
        self.sealing.send(&mut self.sink, frame).await
    }
}

impl LinkReceiver {
    pub async fn receive(&mut self) -> Result<Option<Bytes>, SecureError> {
        self.opening.receive(&mut self.stream).await
    }

    /// The whole link again; `None` if `sender` is another link's.
    pub fn reunite(self, sender: LinkSender) -> Option<SecureLink> {
        let records = self.stream.reunite(sender.sink).ok()?;
        Some(SecureLink { records, sealing: sender.sealing, opening: self.opening, remote: self.remote })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn key(seed: u8) -> (SigningKey, StaticKey) {
        let signing = SigningKey::from_bytes(&[seed; 32]);
        let key = StaticKey::of(&signing);
        (signing, key)
    }

    /// A listener that admits `allowed` and echoes every frame back; its result after one link.
    async fn echo(
        allowed: [u8; 32],
        own: StaticKey,
    ) -> (std::net::SocketAddr, tokio::task::JoinHandle<Result<(), SecureError>>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let (stream, _) = listener.accept().await?;
            let mut link = accept(stream, &own, "test", 1 << 24, |key| *key == allowed).await?;
            while let Some(frame) = link.receive().await? {
                link.send(&frame).await?;
            }
            Ok(())
        });
        (address, task)
    }

    #[test]
    fn the_x25519_key_of_an_ed25519_secret_matches_the_one_of_its_public_key() {
        let (signing, key) = key(7);
        assert_eq!(key.public, public_of(&signing.verifying_key()));
        let public = x25519_of(&key);
        assert_eq!(public, key.public, "the secret's own X25519 public key is the listed one");
    }

    /// The X25519 public key of a static key's secret, computed by snow's own resolver.
    fn x25519_of(key: &StaticKey) -> [u8; 32] {
        let params: snow::params::NoiseParams = PATTERN.parse().unwrap();
        let mut initiator = snow::Builder::new(params.clone())
            .local_private_key(&key.secret)
            .unwrap()
            .remote_public_key(&key.public)
            .unwrap()
            .build_initiator()
            .unwrap();
        let mut responder =
            snow::Builder::new(params).local_private_key(&key.secret).unwrap().build_responder().unwrap();
        let mut buffer = [0u8; 1024];
        let written = initiator.write_message(&[], &mut buffer).unwrap();
        let mut payload = [0u8; 1024];
        responder.read_message(&buffer[..written], &mut payload).unwrap();
        responder.get_remote_static().unwrap().try_into().unwrap()
    }

    #[tokio::test]
    async fn both_ends_are_who_they_should_be_and_frames_of_any_size_arrive_whole() {
        let ((_, client), (_, server)) = (key(1), key(2));
        let (address, task) = echo(client.public, server.clone()).await;
        let stream = TcpStream::connect(address).await.unwrap();
        let mut link = dial(stream, &client, &server.public, "test", 1 << 24).await.unwrap();
        for size in [0, 1, PIECE_BYTES_MAX - 1, PIECE_BYTES_MAX, PIECE_BYTES_MAX + 1, 3 * PIECE_BYTES_MAX + 5, 4 << 20]
        {
            let frame: Vec<u8> = (0..size).map(|i| (i % 251) as u8).collect();
            link.send(&frame).await.unwrap();
            assert_eq!(link.receive().await.unwrap().as_deref(), Some(frame.as_slice()), "size {size}");
        }
        drop(link);
        task.await.unwrap().unwrap();
    }

    #[tokio::test]
    async fn a_listener_that_is_not_the_one_expected_cannot_finish_the_handshake() {
        let ((_, client), (_, impostor), (_, expected)) = (key(1), key(3), key(2));
        let (address, _task) = echo(client.public, impostor).await;
        let stream = TcpStream::connect(address).await.unwrap();
        let result = dial(stream, &client, &expected.public, "test", 1 << 20).await;
        assert!(result.is_err(), "{result:?}");
    }

    #[tokio::test]
    async fn an_unknown_dialer_and_another_cluster_s_handshake_are_refused() {
        let ((_, client), (_, stranger), (_, server)) = (key(1), key(4), key(2));
        let (address, task) = echo(client.public, server.clone()).await;
        let stream = TcpStream::connect(address).await.unwrap();
        let _ = dial(stream, &stranger, &server.public, "test", 1 << 20).await;
        assert!(matches!(task.await.unwrap(), Err(SecureError::Stranger(_))));
        let (address, task) = echo(client.public, server.clone()).await;
        let stream = TcpStream::connect(address).await.unwrap();
        let _ = dial(stream, &client, &server.public, "another cluster", 1 << 20).await;
        assert!(matches!(task.await.unwrap(), Err(SecureError::Handshake(_))));
    }

    #[tokio::test]
    async fn a_changed_frame_and_a_replayed_handshake_get_nothing_through() {
        let ((_, client), (_, server)) = (key(1), key(2));
        // A relay that flips one bit of the first sealed record after the handshake.
        let (address, task) = echo(client.public, server.clone()).await;
        let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let relay_address = relay.local_addr().unwrap();
        tokio::spawn(async move {
            let (inbound, _) = relay.accept().await.unwrap();
            let outbound = TcpStream::connect(address).await.unwrap();
            let (mut from_dialer, mut to_dialer) = inbound.into_split();
            let (mut from_listener, mut to_listener) = outbound.into_split();
            tokio::spawn(async move { tokio::io::copy(&mut from_listener, &mut to_dialer).await });
            // Record by record: the handshake message, the key confirmation, then the first
            // frame, whose last byte is flipped.
            for record in 1.. {
                let mut length = [0u8; 4];
                if from_dialer.read_exact(&mut length).await.is_err() {
                    return;
                }
                let mut body = vec![0u8; u32::from_be_bytes(length) as usize];
                if from_dialer.read_exact(&mut body).await.is_err() {
                    return;
                }
                if record == 3 {
                    let last = body.len() - 1;
                    body[last] ^= 1;
                }
                if to_listener.write_all(&length).await.is_err() || to_listener.write_all(&body).await.is_err() {
                    return;
                }
            }
        });
        let stream = TcpStream::connect(relay_address).await.unwrap();
        let mut link = dial(stream, &client, &server.public, "test", 1 << 20).await.unwrap();
        link.send(b"transfer 10 to bob").await.unwrap();
        assert!(matches!(task.await.unwrap(), Err(SecureError::Tampered)));

        // A recorded first message, replayed: answered, but the replayer cannot confirm the
        // key, so the listener never takes the link.
        let (address, task) = echo(client.public, server.clone()).await;
        let mut recorded = Vec::new();
        {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            let tap = listener.local_addr().unwrap();
            let (client, server_public) = (client.clone(), server.public);
            let dialer = tokio::spawn(async move {
                let stream = TcpStream::connect(tap).await.unwrap();
                let _ = tokio::time::timeout(
                    std::time::Duration::from_millis(300),
                    dial(stream, &client, &server_public, "test", 1 << 20),
                )
                .await;
            });
            let (mut tapped, _) = listener.accept().await.unwrap();
            let mut bytes = vec![0u8; 4096];
            let read = tapped.read(&mut bytes).await.unwrap();
            recorded.extend_from_slice(&bytes[..read]);
            let _ = dialer.await;
        }
        let mut replayer = TcpStream::connect(address).await.unwrap();
        replayer.write_all(&recorded).await.unwrap();
        let mut answer = vec![0u8; 4096];
        let _ = replayer.read(&mut answer).await.unwrap();
        // The replayer cannot seal a frame: it sends bytes shaped as a record.
        replayer.write_all(&[0, 0, 0, 20]).await.unwrap();
        replayer.write_all(&[7u8; 20]).await.unwrap();
        assert!(matches!(task.await.unwrap(), Err(SecureError::Handshake(_))));
    }
}
