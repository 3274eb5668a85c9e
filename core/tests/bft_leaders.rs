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
    // Its vote goes to round 2's leader. The chain knows one replica only, fewer than f+1
    // (it might be the faulty one): round-robin again, 2 mod 4.
    assert_eq!(vote_to(&actions), Some(ReplicaId(2)));
    // A block's digest binds the signers of the certificate it carries: a copy told with
    // other signers is another block.
    let second = shard.block(2, 2, shard.qc(&first, &[0, 1, 3]));
    assert_ne!(second.digest(), shard.block(2, 2, shard.qc(&first, &[0, 1, 2])).digest());
    assert_eq!(replica.leader_after(Round(3), &second.digest(), Round(2)), Err(second.digest()), "unknown yet");
}

/// A chain of rounds 2 to 7 after `first`, each block by the leader the replica names and
/// certified by 0, 1 and 3: replica 2 votes for none of it.
fn chain_without_2(shard: &Shard, replica: &mut Replica<KvApp>, first: Block) -> Block {
    let mut tip = first;
    for round in 2..8 {
        let author = replica.leader_after(Round(round), &tip.digest(), tip.round).unwrap();
        let block = shard.block(round, author.0, shard.qc(&tip, &[0, 1, 3]));
        let actions = replica.handle(Event::Message { from: author, message: shard.proposal(block.clone()) });
        assert!(!wrong_leader(&actions), "round {round}: {actions:?}");
        tip = block;
    }
    tip
}

#[test]
fn a_replica_absent_from_the_last_rounds_is_not_the_leader_and_its_proposal_is_dropped() {
    let shard = Shard::new();
    let mut replica = shard.replica(0);
    let first = shard.block(1, 1, QuorumCertificate::genesis());
    replica.handle(Event::Message { from: ReplicaId(1), message: shard.proposal(first.clone()) });
    let tip = chain_without_2(&shard, &mut replica, first);
    // Round 8: replica 2 neither proposed nor voted in rounds 4 to 7.
    let leader = replica.leader_after(Round(8), &tip.digest(), Round(7)).unwrap();
    assert_ne!(leader, ReplicaId(2));
    let impostor = shard.block(8, 2, shard.qc(&tip, &[0, 1, 3]));
    let actions = replica.handle(Event::Message { from: ReplicaId(2), message: shard.proposal(impostor) });
    assert!(wrong_leader(&actions), "{actions:?}");
    let proposal = shard.block(8, leader.0, shard.qc(&tip, &[0, 1, 3]));
    let actions = replica.handle(Event::Message { from: leader, message: shard.proposal(proposal) });
    assert!(!wrong_leader(&actions), "{actions:?}");
    assert_eq!(replica.round(), Round(8));
}
