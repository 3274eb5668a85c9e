//! `ClusterClient` against one shard of four fake replicas, one of them
//! Byzantine and fast: it repeats its own signed answer, relays an honest
//! replica's signed answer about another transaction, and repeats refusals.
//! The client must believe only what f+1 distinct replicas sign about the
//! thing it asked, and wait for the slower honest ones.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::sync::Arc;
use std::time::Duration;

use shardspace_checker::TransactionBuilder;
use shardspace_core::bft::{Committee, KeyPair, ReplicaId};
use shardspace_core::sbac::{AnswerBody, Attempt, SignedAnswer, TxView, VoteKind};
use shardspace_core::{ShardId, TxId};
use shardspace_node::client::{CLIENT_FRAME_BYTES_MAX, ClientReply, ClientRequest, RejectKind};
use shardspace_node::cluster_client::{ClusterClient, ClusterError};
use shardspace_node::config::{BftSettings, ClusterFile, ReplicaEntry, ShardEntry};
use shardspace_node::secure::Credentials;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// What a fake replica answers to one request.
type Script = Arc<dyn Fn(&ClientRequest) -> Vec<ClientReply> + Send + Sync>;

/// The order in which fake replicas answer: the Byzantine one turns it true once it has
/// said everything; the honest ones wait for that (with a deadline) before answering.
#[derive(Clone)]
enum Turn {
    First(Arc<watch::Sender<bool>>),
    After(watch::Receiver<bool>),
}

/// Serves the request interface with `script`, in its `turn`, as the holder of `keys`;
/// returns its address.
async fn fake_replica(script: Script, turn: Turn, keys: KeyPair) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let credentials = Credentials::new(keys.signing_key(), "test");
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (script, mut turn, credentials) = (Arc::clone(&script), turn.clone(), credentials.clone());
            tokio::spawn(async move {
                let Ok(mut link) = credentials.accept(stream, CLIENT_FRAME_BYTES_MAX, |_| true).await else { return };
                while let Ok(Some(frame)) = link.receive().await {
                    let request: ClientRequest = postcard::from_bytes(&frame).unwrap();
                    if let Turn::After(first) = &mut turn {
                        let spoke = tokio::time::timeout(Duration::from_secs(10), first.wait_for(|spoke| *spoke));
                        assert!(spoke.await.is_ok(), "the Byzantine replica never answered");
                    }
                    for reply in script(&request) {
                        let bytes = postcard::to_stdvec(&reply).unwrap();
                        if link.send(&bytes).await.is_err() {
                            return;
                        }
                    }
                    if let Turn::First(spoke) = &turn {
                        spoke.send_replace(true);
                    }
                }
            });
        }
    });
    address
}

/// A signed answer as a read's reply (`Record`) rather than an envelope's outcome.
fn record(answer: ClientReply) -> ClientReply {
    match answer {
        ClientReply::Answer(answer) => ClientReply::Record(answer),
        other => other,
    }
}

fn committed() -> TxView {
    TxView { attempt: Attempt(1), vote: VoteKind::Accept, decision: Some(true), committed: Some(Attempt(1)) }
}

struct Shard {
    committee: Committee,
    keys: Vec<KeyPair>,
}

impl Shard {
    fn new() -> Self {
        let keys: Vec<KeyPair> = (0..4).map(|i| KeyPair::from_seed(ReplicaId(i), [i as u8 + 7; 32])).collect();
        let committee = Committee::new("test", ShardId(0), keys.iter().map(KeyPair::public).collect());
        Self { committee, keys }
    }

    fn sign(&self, replica: usize, body: AnswerBody) -> ClientReply {
        ClientReply::Answer(SignedAnswer::sign(&self.committee, &self.keys[replica], body))
    }

    /// A client of three honest replicas answering with `honest`, and a Byzantine one
    /// answering with `byzantine` before any of them.
    async fn client(
        &self,
        honest: impl Fn(usize, &ClientRequest) -> Vec<ClientReply> + Send + Sync + Clone + 'static,
        byzantine: Script,
    ) -> ClusterClient {
        let (spoke, first) = watch::channel(false);
        let spoke = Arc::new(spoke);
        let mut replicas = Vec::new();
        for replica in 0..4 {
            let address = if replica == 3 {
                fake_replica(Arc::clone(&byzantine), Turn::First(Arc::clone(&spoke)), self.keys[replica].clone()).await
            } else {
                let (honest, keys) = (honest.clone(), self.keys[replica].clone());
                fake_replica(Arc::new(move |request| honest(replica, request)), Turn::After(first.clone()), keys).await
            };
            replicas.push(ReplicaEntry {
                id: replica as u32,
                peer_address: "127.0.0.1:1".into(),
                client_address: address,
                public_key: hex::encode(self.keys[replica].public().as_bytes()),
                key_file: String::new(),
                data_dir: String::new(),
                metrics_address: None,
                peer_listen: None,
                client_listen: None,
                checkers: Default::default(),
            });
        }
        let file = ClusterFile {
            cluster: "test".into(),
            checker_timeout_ms: None,
            bft: BftSettings::default(),
            checkers: Default::default(),
            shards: vec![ShardEntry { id: 0, replicas }],
            clients: Vec::new(),
        };
        let client = Credentials::new(KeyPair::from_seed(ReplicaId(0), [99; 32]).signing_key(), "test");
        ClusterClient::new(&file, client, Duration::from_secs(20)).unwrap()
    }
}

#[tokio::test]
async fn a_byzantine_replica_repeating_or_relaying_answers_is_not_believed() {
    let shard = Arc::new(Shard::new());
    let (asked, other) = (TxId([1; 32]), TxId([2; 32]));
    let honest_shard = Arc::clone(&shard);
    let honest = move |replica: usize, request: &ClientRequest| match request {
        ClientRequest::Transaction(tx) => {
            vec![record(honest_shard.sign(replica, AnswerBody::Transaction { tx: *tx, record: None }))]
        }
        _ => vec![],
    };
    let liar = Arc::clone(&shard);
    let byzantine: Script = Arc::new(move |_| {
        let lie = liar.sign(3, AnswerBody::Transaction { tx: asked, record: Some(committed()) });
        // An honest replica's real answer, about another transaction.
        let relayed = liar.sign(0, AnswerBody::Transaction { tx: other, record: Some(committed()) });
        let (lie, relayed) = (record(lie), record(relayed));
        vec![lie.clone(), lie.clone(), lie, relayed.clone(), relayed]
    });
    let client = shard.client(honest, byzantine).await;
    assert_eq!(client.transaction(ShardId(0), asked).await.unwrap(), None, "the liar was believed");
}

/// An honest replica that takes up any attempt of `tx` and answers it committed.
fn committing(
    shard: &Arc<Shard>,
    tx: TxId,
) -> impl Fn(usize, &ClientRequest) -> Vec<ClientReply> + Send + Sync + Clone + 'static {
    let shard = Arc::clone(shard);
    move |replica: usize, request: &ClientRequest| match request {
        ClientRequest::Envelope { attempt, .. } => vec![
            ClientReply::Accepted { tx, attempt: *attempt },
            shard.sign(replica, AnswerBody::Transaction { tx, record: Some(committed()) }),
        ],
        _ => vec![],
    }
}

#[tokio::test]
async fn a_byzantine_replica_repeating_a_refusal_does_not_refuse_for_the_shard() {
    let shard = Arc::new(Shard::new());
    let envelope = TransactionBuilder::new("dump", "put").output("\"v\"").build().unwrap();
    let tx = envelope.transaction.tx_id();
    let honest = committing(&shard, tx);
    let byzantine: Script = Arc::new(move |_| {
        let refusal =
            ClientReply::Rejected { tx: Some(tx), kind: RejectKind::UnknownContract, message: "a lie".into() };
        vec![refusal.clone(), refusal.clone(), refusal]
    });
    let client = shard.client(honest, byzantine).await;
    match client.submit(&envelope, Attempt(1)).await {
        Ok(outcome) => assert!(outcome.committed(), "{outcome:?}"),
        Err(ClusterError::Rejected { kind, .. }) => panic!("one replica refused for the shard: {kind}"),
        Err(error) => panic!("{error}"),
    }
}

#[tokio::test]
async fn a_byzantine_replica_flooding_replies_crowds_out_only_itself() {
    let shard = Arc::new(Shard::new());
    let envelope = TransactionBuilder::new("dump", "put").output("\"flood\"").build().unwrap();
    let tx = envelope.transaction.tx_id();
    let honest = committing(&shard, tx);
    // Far more replies about the transaction than a question keeps from one replica, all
    // before any honest replica answers: were they shared with the others' replies, the
    // honest outcomes would be dropped and the question would time out.
    let byzantine: Script = Arc::new(move |_| {
        let junk = ClientReply::Accepted { tx, attempt: Attempt(999) };
        let refusal = ClientReply::Rejected { tx: Some(tx), kind: RejectKind::Busy, message: "flood".into() };
        (0..500).map(|n| if n % 2 == 0 { junk.clone() } else { refusal.clone() }).collect()
    });
    let client = shard.client(honest, byzantine).await;
    let outcome = client.submit(&envelope, Attempt(1)).await.unwrap();
    assert!(outcome.committed(), "{outcome:?}");
}
