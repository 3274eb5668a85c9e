//! A replica that did not run for a while (paused, a VM stopped, a host that hung)
//! resets each connection that reads a frame across the freeze, so that what its
//! peers and clients wrote meanwhile is dropped instead of handled: peers' and
//! clients' frames read across a freeze never reach the core, the connection is
//! reset (not closed with a FIN, which would leave the backlog to be read), and a
//! connection made after the freeze is served.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use shardspace_core::TxId;
use shardspace_core::bft::{PeerMessage, Request};
use shardspace_node::client::{CLIENT_FRAME_BYTES_MAX, ClientCommand, ClientListener, ClientRequest};
use shardspace_node::freeze::Freezes;
use shardspace_node::network::Frame;
use tokio::net::TcpStream;
use tokio::sync::{mpsc, watch};
use tokio_util::codec::{Framed, LengthDelimitedCodec};

mod common;
use common::{answer, committee, hello, listener_freezing};

const DEADLINE: Duration = Duration::from_secs(20);

fn bytes_of<T: serde::Serialize>(value: &T) -> bytes::Bytes {
    bytes::Bytes::from(postcard::to_stdvec(value).unwrap())
}

/// Waits for the far end to reset the connection; a FIN (end of stream) fails the test.
async fn reset(frames: &mut Framed<TcpStream, LengthDelimitedCodec>) {
    match tokio::time::timeout(DEADLINE, frames.next()).await.unwrap() {
        Some(Err(error)) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}"),
        other => panic!("expected the connection to be reset, got {other:?}"),
    }
}

#[tokio::test]
async fn a_peer_frame_read_across_a_freeze_resets_its_connection_and_never_reaches_the_core() {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ((address, _, mut rx_core, _stop), freezes) = listener_freezing(socket, 16);
    let (here, keys) = committee("test", 0);
    let numbered = |n: u8| Frame::Bft(PeerMessage::Requests(vec![Request::new(vec![n])]));

    let mut frames = answer(address, |nonce| hello(0, 1, &keys[1], &here, nonce)).await;
    frames.send(bytes_of(&numbered(1))).await.unwrap();
    let (_, first) = tokio::time::timeout(DEADLINE, rx_core.recv()).await.unwrap().unwrap();
    assert_eq!(first, numbered(1));

    freezes.note_freeze();
    frames.send(bytes_of(&numbered(2))).await.unwrap();
    reset(&mut frames).await;
    assert_eq!(freezes.resets(), 1);

    let mut again = answer(address, |nonce| hello(0, 1, &keys[1], &here, nonce)).await;
    again.send(bytes_of(&numbered(3))).await.unwrap();
    let (_, next) = tokio::time::timeout(DEADLINE, rx_core.recv()).await.unwrap().unwrap();
    assert_eq!(next, numbered(3), "the frame read across the freeze reached the core");
}

#[tokio::test]
async fn a_client_request_read_across_a_freeze_resets_its_connection_and_never_reaches_the_core() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    let (tx_core, mut rx_core) = mpsc::channel(64);
    let (_stop, shutdown) = watch::channel(false);
    let freezes = Freezes::watch(shutdown.clone());
    tokio::spawn(ClientListener { listener, tx_core, freezes: Arc::clone(&freezes) }.run(shutdown));
    let codec = || LengthDelimitedCodec::builder().max_frame_length(CLIENT_FRAME_BYTES_MAX).new_codec();
    let ask = |n: u8| ClientRequest::Transaction(TxId([n; 32]));
    let mut next_command = async || tokio::time::timeout(DEADLINE, rx_core.recv()).await.unwrap().unwrap();

    let mut frames = Framed::new(TcpStream::connect(address).await.unwrap(), codec());
    frames.send(bytes_of(&ask(1))).await.unwrap();
    // The core keeps the connection's reply queue: the connection lives while it does.
    let ClientCommand::Open { tx_client: _replies, .. } = next_command().await else { panic!("expected an open") };
    assert!(matches!(next_command().await, ClientCommand::Request { request, .. } if request == ask(1)));

    freezes.note_freeze();
    frames.send(bytes_of(&ask(2))).await.unwrap();
    reset(&mut frames).await;
    assert_eq!(freezes.resets(), 1);

    let mut again = Framed::new(TcpStream::connect(address).await.unwrap(), codec());
    again.send(bytes_of(&ask(3))).await.unwrap();
    loop {
        match next_command().await {
            ClientCommand::Request { request, .. } => {
                assert_eq!(request, ask(3), "the request read across the freeze reached the core");
                break;
            }
            ClientCommand::Open { .. } | ClientCommand::Closed(_) => {}
        }
    }
}
