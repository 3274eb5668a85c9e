//! Who may lead a round, as a replica checks it (`core/src/bft/leaders.rs`): a proposal
//! whose author is not the leader its chain names is dropped as `WrongLeader`, whoever
//! sends it; the leader it names gets the vote.

#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use shardspace_core::ShardId;
use shardspace_core::bft::kv::{Executed, KvApp};
use shardspace_core::bft::{
    Action, Block, Committee, Config, Event, KeyPair, PeerMessage, Proposal, ProtocolError, QuorumCertificate, Replica,
    ReplicaId, Request, Round,
};

struct Shard {
    committee: Committee,
    keys: Vec<KeyPair>,
}

impl Shard {
    fn new() -> Self {
        let keys: Vec<KeyPair> = (0..4).map(|i| KeyPair::from_seed(ReplicaId(i), [i as u8 + 3; 32])).collect();
        Self { committee: Committee::new("test", ShardId(0), keys.iter().map(KeyPair::public).collect()), keys }
    }

    fn replica(&self, id: u32) -> Replica<KvApp> {
        Replica::new(self.committee.clone(), self.keys[id as usize].clone(), Config::default(), KvApp::default())
    }

    fn block(&self, round: u64, author: u32, parent: QuorumCertificate) -> Block {
        Block { round: Round(round), author: ReplicaId(author), parent, requests: vec![Request::new(b"k=v".to_vec())] }
    }

    fn proposal(&self, block: Block) -> Box<PeerMessage> {
        let signature =
            self.keys[block.author.0 as usize].sign(&Proposal::signing_bytes(&self.committee, &block.digest()));
        Box::new(PeerMessage::Proposal(Proposal { block, timeout_certificate: None, signature }))
    }

    fn qc(&self, block: &Block, signers: &[u32]) -> QuorumCertificate {
        let (digest, round) = (block.digest(), block.round);
        let bytes = QuorumCertificate::signing_bytes(&self.committee, &digest, round);
        let votes = signers.iter().map(|i| (ReplicaId(*i), self.keys[*i as usize].sign(&bytes))).collect();
        QuorumCertificate { block: digest, round, votes }
    }
}

fn wrong_leader(actions: &[Action<Executed>]) -> bool {
    actions.iter().any(|action| matches!(action, Action::Dropped { error: ProtocolError::WrongLeader { .. }, .. }))
}

/// Where the replica's vote went, if it voted.
fn vote_to(actions: &[Action<Executed>]) -> Option<ReplicaId> {
    actions.iter().find_map(|action| match action {
        Action::Send { to, message: PeerMessage::Vote(_) } => Some(*to),
        _ => None,
    })
}

#[test]
fn after_the_genesis_round_robin_names_the_leader_then_the_chain_does() {
    let shard = Shard::new();
    let mut replica = shard.replica(0);
    // Round 1 extends the genesis: nobody has a history yet, so round-robin (1 mod 4).
    let impostor = shard.block(1, 2, QuorumCertificate::genesis());
    let actions = replica.handle(Event::Message { from: ReplicaId(2), message: shard.proposal(impostor) });
    assert!(wrong_leader(&actions), "{actions:?}");
    let first = shard.block(1, 1, QuorumCertificate::genesis());
    let actions = replica.handle(Event::Message { from: ReplicaId(1), message: shard.proposal(first.clone()) });
    assert!(!wrong_leader(&actions));
    // Its vote goes to round 2's leader: the only replica active in that chain is 1.
    assert_eq!(vote_to(&actions), Some(ReplicaId(1)));

    // Round 2 extends round 1's block, certified by 0, 1 and 3: the active replicas are
    // 0, 1 and 3, and round 3's leader among them is the one whose turn it is (3 mod 3 = 0).
    let second = shard.block(2, 1, shard.qc(&first, &[0, 1, 3]));
    assert_eq!(replica.leader_after(Round(3), &second.digest(), Round(2)), Err(second.digest()), "unknown yet");
    let impostor = shard.block(2, 2, shard.qc(&first, &[0, 1, 3]));
    let actions = replica.handle(Event::Message { from: ReplicaId(2), message: shard.proposal(impostor) });
    assert!(wrong_leader(&actions), "2 neither proposed nor voted in the chain: {actions:?}");
    let actions = replica.handle(Event::Message { from: ReplicaId(3), message: shard.proposal(second.clone()) });
    assert!(!wrong_leader(&actions));
    // Replica 0 leads round 3: it keeps its own vote.
    assert!(vote_to(&actions).is_none(), "{actions:?}");
    assert_eq!(replica.leader_after(Round(3), &second.digest(), Round(2)), Ok(ReplicaId(0)));
    // The same chain told with other signers is another block: no copy can change the story.
    let retold = shard.block(2, 1, shard.qc(&first, &[0, 1, 2]));
    assert_ne!(retold.digest(), second.digest());
}
