//! Byzantine replicas: each runs the honest protocol inside (so its messages
//! look plausible) and then lies in the ways its behaviours say.

use ed25519_dalek::Signature;
use rand::RngExt;
use rand::rngs::StdRng;
use shardspace_core::ShardId;
use shardspace_core::bft::{
    Action, Committee, Digest, Event, KeyPair, PeerMessage, Proposal, QuorumCertificate, Replica, ReplicaId, Request,
    Round, Timeout, Vote,
};

use shardspace_core::bft::kv::KvApp;

/// One way to misbehave.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Behaviour {
    /// Sends nothing at all.
    Silent,
    /// As leader, proposes one block to half the shard and another to the rest.
    Equivocate,
    /// Votes for every proposal it sees, and for a made-up block besides.
    DoubleVote,
    /// Sends old messages again, to anyone.
    Replay,
    /// Sends messages claiming another signer, with stripped signatures, or signed for another shard.
    Forge,
    /// Sends random bytes decoded as messages, and made-up votes.
    Garbage,
}

pub const BEHAVIOURS: [Behaviour; 6] = [
    Behaviour::Silent,
    Behaviour::Equivocate,
    Behaviour::DoubleVote,
    Behaviour::Replay,
    Behaviour::Forge,
    Behaviour::Garbage,
];

/// Messages kept for replay.
const CAPTURED_MAX: usize = 256;

#[derive(Debug)]
pub struct ByzantineNode {
    replica: Replica<KvApp>,
    keys: KeyPair,
    committee: Committee,
    /// The same replicas seen as another shard: what it signs there is void here.
    other_shard: Committee,
    behaviours: Vec<Behaviour>,
    captured: Vec<PeerMessage>,
    /// Messages sent beyond what an honest replica would send, or instead of it.
    lies: u64,
    /// Conflicting proposals sent.
    equivocations: u64,
}

impl ByzantineNode {
    pub fn new(
        replica: Replica<KvApp>,
        keys: KeyPair,
        committee: Committee,
        keys_of_all: Vec<ed25519_dalek::VerifyingKey>,
        behaviours: Vec<Behaviour>,
    ) -> Self {
        let other_shard = Committee::new("sim", ShardId(committee.shard().0 + 1), keys_of_all);
        Self { replica, keys, committee, other_shard, behaviours, captured: Vec::new(), lies: 0, equivocations: 0 }
    }

    pub fn lies(&self) -> u64 {
        self.lies
    }

    pub fn equivocations(&self) -> u64 {
        self.equivocations
    }

    fn has(&self, behaviour: Behaviour) -> bool {
        self.behaviours.contains(&behaviour)
    }

    fn others(&self) -> Vec<ReplicaId> {
        self.committee.replicas().filter(|replica| *replica != self.keys.id).collect()
    }

    /// Feeds an event; returns what it sends, and to whom.
    pub fn handle(&mut self, event: Event, rng: &mut StdRng) -> Vec<(ReplicaId, PeerMessage)> {
        if self.has(Behaviour::Silent) {
            return Vec::new();
        }
        let mut sends = Vec::new();
        match &event {
            Event::Message { message, .. } => {
                self.capture((**message).clone(), rng);
                if let (true, PeerMessage::Proposal(proposal)) = (self.has(Behaviour::DoubleVote), &**message) {
                    let (block, round) = (proposal.block.digest(), proposal.block.round);
                    let vote = self.vote(block, round);
                    // To whoever leads next, as the honest replica inside sees it (or to all).
                    match self.replica.leader_after(round.next(), &block, round) {
                        Ok(leader) => sends.push((leader, PeerMessage::Vote(vote))),
                        Err(_) => {
                            sends.extend(self.others().into_iter().map(|to| (to, PeerMessage::Vote(vote.clone()))))
                        }
                    }
                }
            }
            Event::Tick(_) => sends.extend(self.on_tick(rng)),
            Event::Submit(_) | Event::SubmitMany(_) => {}
        }
        let mut honest_sends = 0u64;
        for action in self.replica.handle(event) {
            match action {
                Action::Send { to, message } => {
                    honest_sends += 1;
                    sends.extend(self.lie(to, message, rng));
                }
                Action::Broadcast(message) => {
                    for to in self.others() {
                        honest_sends += 1;
                        sends.extend(self.lie(to, message.clone(), rng));
                    }
                }
                _ => {}
            }
        }
        let equivocations = sends.iter().filter(|(_, message)| self.is_equivocation(message)).count() as u64;
        self.lies += (sends.len() as u64).saturating_sub(honest_sends) + equivocations;
        self.equivocations += equivocations;
        sends
    }

    fn capture(&mut self, message: PeerMessage, rng: &mut StdRng) {
        if self.captured.len() < CAPTURED_MAX {
            self.captured.push(message);
        } else {
            let slot = rng.random_range(0..CAPTURED_MAX);
            self.captured[slot] = message;
        }
    }

    fn vote(&self, block: Digest, round: Round) -> Vote {
        let signature = self.keys.sign(&QuorumCertificate::signing_bytes(&self.committee, &block, round));
        Vote { block, round, voter: self.keys.id, signature }
    }

    fn random_peer(&self, rng: &mut StdRng) -> ReplicaId {
        let others = self.others();
        others[rng.random_range(0..others.len())]
    }

    fn on_tick(&mut self, rng: &mut StdRng) -> Vec<(ReplicaId, PeerMessage)> {
        let mut sends = Vec::new();
        if self.has(Behaviour::Replay) && !self.captured.is_empty() && rng.random_bool(0.3) {
            let message = self.captured[rng.random_range(0..self.captured.len())].clone();
            sends.push((self.random_peer(rng), message));
        }
        if self.has(Behaviour::Garbage) && rng.random_bool(0.3) {
            let length = rng.random_range(0..160);
            let bytes: Vec<u8> = (0..length).map(|_| rng.random()).collect();
            let message = match postcard::from_bytes::<PeerMessage>(&bytes) {
                Ok(decoded) => decoded,
                Err(_) => {
                    let round = Round(self.replica.round().0.saturating_add(rng.random_range(0..3)));
                    let block = Digest(rng.random());
                    PeerMessage::Vote(Vote { block, round, voter: self.keys.id, signature: random_signature(rng) })
                }
            };
            sends.push((self.random_peer(rng), message));
        }
        sends
    }

    /// The message as sent, plus whatever lies the behaviours add.
    fn lie(&self, to: ReplicaId, message: PeerMessage, rng: &mut StdRng) -> Vec<(ReplicaId, PeerMessage)> {
        let mut sends = Vec::new();
        match &message {
            PeerMessage::Proposal(proposal) if self.has(Behaviour::Equivocate) && to.0 % 2 == 1 => {
                sends.push((to, PeerMessage::Proposal(self.conflicting(proposal))));
            }
            _ => sends.push((to, message.clone())),
        }
        if let (true, PeerMessage::Vote(vote)) = (self.has(Behaviour::DoubleVote), &message) {
            sends.push((to, PeerMessage::Vote(self.vote(Digest(rng.random()), vote.round))));
        }
        if self.has(Behaviour::Forge)
            && rng.random_bool(0.3)
            && let Some(forged) = self.forge(&message, rng)
        {
            sends.push((to, forged));
        }
        sends
    }

    fn is_equivocation(&self, message: &PeerMessage) -> bool {
        matches!(message, PeerMessage::Proposal(proposal)
            if proposal.block.requests.last().is_some_and(|r| r.payload().starts_with(b"equivocation-")))
    }

    /// The same round's block with other requests, properly signed: equivocation.
    fn conflicting(&self, proposal: &Proposal) -> Proposal {
        let mut block = proposal.block.clone();
        block.requests.push(Request::new(format!("equivocation-{}", block.round.0)));
        let signature = self.keys.sign(&Proposal::signing_bytes(&self.committee, &block.digest()));
        Proposal { block, timeout_certificate: proposal.timeout_certificate.clone(), signature }
    }

    fn forge(&self, message: &PeerMessage, rng: &mut StdRng) -> Option<PeerMessage> {
        let impostor = self.random_peer(rng);
        match (message, rng.random_range(0..3)) {
            // Claims another replica's vote, signed with its own key.
            (PeerMessage::Vote(vote), 0) => Some(PeerMessage::Vote(Vote { voter: impostor, ..vote.clone() })),
            // A vote with its signature stripped.
            (PeerMessage::Vote(vote), 1) => {
                Some(PeerMessage::Vote(Vote { signature: Signature::from_bytes(&[0; 64]), ..vote.clone() }))
            }
            // A vote signed for another shard.
            (PeerMessage::Vote(vote), _) => {
                let bytes = QuorumCertificate::signing_bytes(&self.other_shard, &vote.block, vote.round);
                Some(PeerMessage::Vote(Vote { signature: self.keys.sign(&bytes), ..vote.clone() }))
            }
            (PeerMessage::Timeout(timeout), _) => {
                Some(PeerMessage::Timeout(Timeout { author: impostor, ..timeout.clone() }))
            }
            (PeerMessage::Proposal(proposal), _) => {
                Some(PeerMessage::Proposal(Proposal { signature: random_signature(rng), ..proposal.clone() }))
            }
            _ => None,
        }
    }
}

fn random_signature(rng: &mut StdRng) -> Signature {
    let (low, high): ([u8; 32], [u8; 32]) = (rng.random(), rng.random());
    let mut bytes = [0u8; 64];
    bytes[..32].copy_from_slice(&low);
    bytes[32..].copy_from_slice(&high);
    Signature::from_bytes(&bytes)
}
