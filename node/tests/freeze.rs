//! A replica that did not run for a while (paused, a VM stopped, a host that hung)
//! resets each connection that reads a frame across the freeze, so that what its
//! peers and clients wrote meanwhile is dropped instead of handled: peers' and
//! clients' frames read across a freeze never reach the core, the connection is
//! reset (not closed with a FIN, which would leave the backlog to be read), and a
//! connection made after the freeze is served.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::time::Duration;

use shardspace_core::TxId;
use shardspace_core::bft::{PeerMessage, Request};
use shardspace_node::client::{ClientCommand, ClientRequest};
use shardspace_node::network::Frame;
use shardspace_node::secure::{SecureError, SecureLink};

mod common;
use common::{CLUSTER, client_link, client_listener, committee, dial, listener_freezing, send};

const DEADLINE: Duration = Duration::from_secs(20);

/// Waits for the far end to reset the connection; a FIN (end of stream) fails the test.
async fn reset(link: &mut SecureLink) {
    match tokio::time::timeout(DEADLINE, link.receive()).await.unwrap() {
        Err(SecureError::Io(error)) => assert_eq!(error.kind(), std::io::ErrorKind::ConnectionReset, "{error}"),
        other => panic!("expected the connection to be reset, got {other:?}"),
    }
}

#[tokio::test]
async fn a_peer_frame_read_across_a_freeze_resets_its_connection_and_never_reaches_the_core() {
    let socket = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let ((address, _, mut rx_core, _stop), freezes) = listener_freezing(socket, 16);
    let (_, keys) = committee(CLUSTER, 0);
    let numbered = |n: u8| Frame::Bft(PeerMessage::Requests(vec![Request::new(vec![n])]));

    let mut link = dial(address, &keys[1]).await;
    send(&mut link, &numbered(1)).await;
    let (_, first) = tokio::time::timeout(DEADLINE, rx_core.recv()).await.unwrap().unwrap();
    assert_eq!(first, numbered(1));

    freezes.note_freeze();
    send(&mut link, &numbered(2)).await;
    reset(&mut link).await;
    assert_eq!(freezes.resets(), 1);

    let mut again = dial(address, &keys[1]).await;
    send(&mut again, &numbered(3)).await;
    let (_, next) = tokio::time::timeout(DEADLINE, rx_core.recv()).await.unwrap().unwrap();
    assert_eq!(next, numbered(3), "the frame read across the freeze reached the core");
}

#[tokio::test]
async fn a_client_request_read_across_a_freeze_resets_its_connection_and_never_reaches_the_core() {
    let (address, mut rx_core, _stop, freezes) = client_listener(64).await;
    let ask = |n: u8| ClientRequest::Transaction(TxId([n; 32]));
    let mut next_command = async || tokio::time::timeout(DEADLINE, rx_core.recv()).await.unwrap().unwrap();

    let mut link = client_link(address).await;
    send(&mut link, &ask(1)).await;
    // The core keeps the connection's reply queue: the connection lives while it does.
    let ClientCommand::Open { tx_client: _replies, .. } = next_command().await else { panic!("expected an open") };
    assert!(matches!(next_command().await, ClientCommand::Request { request, .. } if request == ask(1)));

    freezes.note_freeze();
    send(&mut link, &ask(2)).await;
    reset(&mut link).await;
    assert_eq!(freezes.resets(), 1);

    let mut again = client_link(address).await;
    send(&mut again, &ask(3)).await;
    let mut queues = Vec::new(); // kept: a connection whose reply queue is dropped closes
    loop {
        match next_command().await {
            ClientCommand::Request { request, .. } => {
                assert_eq!(request, ask(3), "the request read across the freeze reached the core");
                break;
            }
            ClientCommand::Open { tx_client, .. } => queues.push(tx_client),
            ClientCommand::Closed(_) => {}
        }
    }
}
