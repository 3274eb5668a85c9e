//! The messages between replicas of one shard (`PeerMessage`) and the
//! certificates they carry. Each has `verify`, which checks what the message
//! alone can prove: signatures, quorums, distinct signers, sizes. Stateful checks
//! (the leader of a round, an old round, an unknown parent) come later, in `Replica`.

use ed25519_dalek::Signature;
use serde::{Deserialize, Serialize};

use super::committee::Committee;
use super::error::ProtocolError;
use super::types::{Digest, Height, ReplicaId, Request, Round, SnapshotBytes};

/// Bounds on what one message may carry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MessageLimits {
    /// Requests in one block.
    pub batch_requests_max: usize,
    /// Bytes of one request.
    pub request_bytes_max: usize,
    /// Bytes of all the requests of one block (a block must fit a frame).
    pub batch_bytes_max: usize,
    /// Blocks in one sync answer.
    pub sync_blocks_max: usize,
}

impl Default for MessageLimits {
    fn default() -> Self {
        Self {
            batch_requests_max: 1024,
            request_bytes_max: 64 * 1024,
            batch_bytes_max: 1024 * 1024,
            sync_blocks_max: 16,
        }
    }
}

/// 2f+1 votes for one block in one round.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumCertificate {
    pub block: Digest,
    pub round: Round,
    pub votes: Vec<(ReplicaId, Signature)>,
}

impl QuorumCertificate {
    /// The certificate of the genesis block (round 0), which needs no votes.
    pub fn genesis() -> Self {
        Self { block: Digest::default(), round: Round(0), votes: Vec::new() }
    }

    pub fn is_genesis(&self) -> bool {
        self.round == Round(0) && self.block == Digest::default()
    }

    /// Who signed it, in id order.
    pub fn signers(&self) -> Vec<ReplicaId> {
        let mut signers: Vec<ReplicaId> = self.votes.iter().map(|(voter, _)| *voter).collect();
        signers.sort_unstable();
        signers
    }

    /// What a vote for `block` in `round` signs.
    pub fn signing_bytes(committee: &Committee, block: &Digest, round: Round) -> Vec<u8> {
        committee.signing_bytes("vote", &[&block.0, &round.0.to_be_bytes()])
    }

    pub fn verify(&self, committee: &Committee) -> Result<(), ProtocolError> {
        self.verify_cached(committee, &mut VerifiedCertificates::disabled())
    }

    /// As `verify`, skipping a certificate identical to one already verified.
    pub fn verify_cached(&self, committee: &Committee, cache: &mut VerifiedCertificates) -> Result<(), ProtocolError> {
        if self.is_genesis() {
            return if self.votes.is_empty() { Ok(()) } else { Err(malformed("certificate", "a genesis with votes")) };
        }
        if self.round == Round(0) {
            return Err(malformed("certificate", "round 0 is the genesis's"));
        }
        let identity = self.identity();
        if cache.contains(&identity) {
            return Ok(());
        }
        committee.verify_quorum(&Self::signing_bytes(committee, &self.block, self.round), &self.votes)?;
        cache.insert(identity, self.round);
        Ok(())
    }

    /// A digest of the whole certificate, signatures included: only an identical
    /// certificate may skip verification (another with bad signatures must not).
    fn identity(&self) -> Digest {
        let mut bytes = Vec::with_capacity(48 + 68 * self.votes.len());
        bytes.extend_from_slice(&self.block.0);
        bytes.extend_from_slice(&self.round.0.to_be_bytes());
        for (voter, signature) in &self.votes {
            bytes.extend_from_slice(&voter.0.to_be_bytes());
            bytes.extend_from_slice(&signature.to_bytes());
        }
        Digest::of(&bytes)
    }
}

/// Certificates already verified, so that one carried by many messages is checked once.
#[derive(Debug, Default)]
pub struct VerifiedCertificates {
    seen: std::collections::BTreeMap<Digest, Round>,
    capacity: usize,
}

impl VerifiedCertificates {
    pub fn new(capacity: usize) -> Self {
        Self { seen: std::collections::BTreeMap::new(), capacity }
    }

    fn disabled() -> Self {
        Self::new(0)
    }

    fn contains(&self, identity: &Digest) -> bool {
        self.seen.contains_key(identity)
    }

    fn insert(&mut self, identity: Digest, round: Round) {
        if self.capacity == 0 {
            return;
        }
        if self.seen.len() >= self.capacity {
            // Forget the certificates of the oldest rounds first.
            let oldest = self.seen.values().min().copied().unwrap_or_default();
            self.seen.retain(|_, kept| *kept > oldest);
        }
        self.seen.insert(identity, round);
    }
}

/// A batch of requests, proposed by the leader of `round` on top of the block `parent` certifies.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Block {
    pub round: Round,
    pub author: ReplicaId,
    pub parent: QuorumCertificate,
    pub requests: Vec<Request>,
}

impl Block {
    /// Binds the parent's certificate by block, round and signers (not by the signatures:
    /// any quorum of them certifies the same block), so that every copy of a block says
    /// the same about who voted, which leader reputation counts (`leaders.rs`).
    pub fn digest(&self) -> Digest {
        let signers = self.parent.signers();
        let mut bytes = Vec::with_capacity(72 + 4 * signers.len() + 32 * self.requests.len());
        bytes.extend_from_slice(b"shardspace/block\0");
        bytes.extend_from_slice(&self.round.0.to_be_bytes());
        bytes.extend_from_slice(&self.author.0.to_be_bytes());
        bytes.extend_from_slice(&self.parent.block.0);
        bytes.extend_from_slice(&self.parent.round.0.to_be_bytes());
        bytes.extend_from_slice(&u64::try_from(signers.len()).unwrap_or(u64::MAX).to_be_bytes());
        for signer in signers {
            bytes.extend_from_slice(&signer.0.to_be_bytes());
        }
        bytes.extend_from_slice(&u64::try_from(self.requests.len()).unwrap_or(u64::MAX).to_be_bytes());
        for request in &self.requests {
            bytes.extend_from_slice(&request.digest().0);
        }
        Digest::of(&bytes)
    }

    /// Checks the block alone: its parent's certificate, round order and sizes.
    pub fn verify(
        &self,
        committee: &Committee,
        limits: &MessageLimits,
        cache: &mut VerifiedCertificates,
    ) -> Result<(), ProtocolError> {
        if !committee.contains(self.author) {
            return Err(ProtocolError::UnknownReplica { replica: self.author });
        }
        if self.round <= self.parent.round {
            return Err(malformed("block", "its round is not after its parent's"));
        }
        if self.requests.len() > limits.batch_requests_max {
            let (count, max) = (self.requests.len(), limits.batch_requests_max);
            return Err(ProtocolError::TooLarge { what: "block", count, max });
        }
        if let Some(request) = self.requests.iter().find(|r| r.payload().len() > limits.request_bytes_max) {
            let (count, max) = (request.payload().len(), limits.request_bytes_max);
            return Err(ProtocolError::TooLarge { what: "request", count, max });
        }
        let bytes: usize = self.requests.iter().map(|request| request.payload().len()).sum();
        if bytes > limits.batch_bytes_max {
            return Err(ProtocolError::TooLarge { what: "block's bytes", count: bytes, max: limits.batch_bytes_max });
        }
        self.parent.verify_cached(committee, cache)
    }
}

/// A leader's block, with the timeout certificate that justifies skipping rounds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proposal {
    pub block: Block,
    /// Present when the parent is not from the round just before: the certificate
    /// that the previous round timed out.
    pub timeout_certificate: Option<TimeoutCertificate>,
    pub signature: Signature,
}

impl Proposal {
    pub fn signing_bytes(committee: &Committee, block: &Digest) -> Vec<u8> {
        committee.signing_bytes("proposal", &[&block.0])
    }

    pub fn verify(
        &self,
        committee: &Committee,
        limits: &MessageLimits,
        cache: &mut VerifiedCertificates,
    ) -> Result<(), ProtocolError> {
        let block = &self.block;
        block.verify(committee, limits, cache)?;
        committee.verify(block.author, &Self::signing_bytes(committee, &block.digest()), &self.signature)?;
        match &self.timeout_certificate {
            None if block.round != block.parent.round.next() => {
                Err(malformed("proposal", "it skips rounds without a timeout certificate"))
            }
            Some(certificate) if certificate.round.next() != block.round => {
                Err(malformed("proposal", "its timeout certificate is not for the round before"))
            }
            Some(certificate) => certificate.verify(committee, cache),
            None => Ok(()),
        }
    }
}

/// One replica's vote for a block, sent to the next round's leader.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Vote {
    pub block: Digest,
    pub round: Round,
    pub voter: ReplicaId,
    pub signature: Signature,
}

impl Vote {
    pub fn verify(&self, committee: &Committee) -> Result<(), ProtocolError> {
        let bytes = QuorumCertificate::signing_bytes(committee, &self.block, self.round);
        committee.verify(self.voter, &bytes, &self.signature)
    }
}

/// A replica gives up on `round`, and says which certificate it holds highest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timeout {
    pub round: Round,
    pub high_qc: QuorumCertificate,
    pub author: ReplicaId,
    pub signature: Signature,
}

impl Timeout {
    /// What a timeout signs: the round and the round of the sender's highest certificate.
    pub fn signing_bytes(committee: &Committee, round: Round, high_qc_round: Round) -> Vec<u8> {
        committee.signing_bytes("timeout", &[&round.0.to_be_bytes(), &high_qc_round.0.to_be_bytes()])
    }

    pub fn verify(&self, committee: &Committee, cache: &mut VerifiedCertificates) -> Result<(), ProtocolError> {
        if self.high_qc.round >= self.round {
            return Err(malformed("timeout", "its certificate is not from an earlier round"));
        }
        let bytes = Self::signing_bytes(committee, self.round, self.high_qc.round);
        committee.verify(self.author, &bytes, &self.signature)?;
        self.high_qc.verify_cached(committee, cache)
    }
}

/// 2f+1 timeouts for one round, and the highest certificate among them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TimeoutCertificate {
    pub round: Round,
    /// Each signer with the round of its highest certificate, and its signature.
    pub timeouts: Vec<(ReplicaId, Round, Signature)>,
    pub high_qc: QuorumCertificate,
}

impl TimeoutCertificate {
    /// The highest certificate round any signer reported: a block after this
    /// certificate must extend a certificate at least that high.
    pub fn high_qc_round(&self) -> Round {
        self.timeouts.iter().map(|(_, round, _)| *round).max().unwrap_or_default()
    }

    pub fn verify(&self, committee: &Committee, cache: &mut VerifiedCertificates) -> Result<(), ProtocolError> {
        // Replayed proposals and catch-ups carry the same certificate again: check it once.
        let identity = self.identity();
        if cache.contains(&identity) {
            return Ok(());
        }
        self.verify_signatures(committee, cache)?;
        cache.insert(identity, self.round);
        Ok(())
    }

    /// A digest of the whole certificate, signatures included.
    fn identity(&self) -> Digest {
        let mut bytes = Vec::with_capacity(48 + 76 * self.timeouts.len());
        bytes.extend_from_slice(b"tc");
        bytes.extend_from_slice(&self.round.0.to_be_bytes());
        for (signer, high_qc_round, signature) in &self.timeouts {
            bytes.extend_from_slice(&signer.0.to_be_bytes());
            bytes.extend_from_slice(&high_qc_round.0.to_be_bytes());
            bytes.extend_from_slice(&signature.to_bytes());
        }
        bytes.extend_from_slice(&self.high_qc.identity().0);
        Digest::of(&bytes)
    }

    fn verify_signatures(&self, committee: &Committee, cache: &mut VerifiedCertificates) -> Result<(), ProtocolError> {
        if self.timeouts.len() < committee.quorum() {
            return Err(ProtocolError::TooFewSignatures { count: self.timeouts.len(), quorum: committee.quorum() });
        }
        let mut seen = vec![false; committee.size()];
        for (signer, high_qc_round, signature) in &self.timeouts {
            let slot = seen.get_mut(signer.0 as usize).ok_or(ProtocolError::UnknownReplica { replica: *signer })?;
            if std::mem::replace(slot, true) {
                return Err(ProtocolError::DuplicateSigner { replica: *signer });
            }
            if *high_qc_round >= self.round {
                return Err(malformed("timeout certificate", "a signer's certificate is not from an earlier round"));
            }
            committee.verify(*signer, &Timeout::signing_bytes(committee, self.round, *high_qc_round), signature)?;
        }
        if self.high_qc.round != self.high_qc_round() {
            return Err(malformed("timeout certificate", "its certificate is not the highest reported"));
        }
        self.high_qc.verify_cached(committee, cache)
    }
}

/// A replica's signed statement of the application state after `height`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub point: CheckpointPoint,
    pub author: ReplicaId,
    pub signature: Signature,
}

/// What a checkpoint is about: the decided block at `height` and the state after it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPoint {
    pub height: Height,
    pub block: Digest,
    pub round: Round,
    pub state: Digest,
}

impl CheckpointPoint {
    pub fn signing_bytes(&self, committee: &Committee) -> Vec<u8> {
        let (height, round) = (self.height.0.to_be_bytes(), self.round.0.to_be_bytes());
        committee.signing_bytes("checkpoint", &[&height, &self.block.0, &round, &self.state.0])
    }
}

impl Checkpoint {
    pub fn verify(&self, committee: &Committee) -> Result<(), ProtocolError> {
        committee.verify(self.author, &self.point.signing_bytes(committee), &self.signature)
    }
}

/// 2f+1 matching checkpoints: the decided log up to `point.height` may be
/// replaced by the state they sign.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointCertificate {
    pub point: CheckpointPoint,
    pub signatures: Vec<(ReplicaId, Signature)>,
}

impl CheckpointCertificate {
    pub fn verify(&self, committee: &Committee) -> Result<(), ProtocolError> {
        committee.verify_quorum(&self.point.signing_bytes(committee), &self.signatures)
    }
}

/// Every message between the replicas of one shard. Append-only: never
/// reorder or reuse a variant (postcard encodes the index).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PeerMessage {
    Proposal(Proposal),
    Vote(Vote),
    Timeout(Timeout),
    /// Requests a replica received from clients, forwarded to the leaders.
    Requests(Vec<Request>),
    /// The highest certificates a replica holds, sent to a peer that is behind.
    Catchup {
        high_qc: QuorumCertificate,
        timeout_certificate: Option<TimeoutCertificate>,
    },
    /// Asks for the block with this digest and its ancestors; `height` is the
    /// asker's decided height, so that a peer that no longer keeps the block can
    /// send its stable checkpoint instead.
    BlockRequest {
        block: Digest,
        height: Height,
    },
    /// Blocks, each the parent of the one before.
    Blocks(Vec<Block>),
    Checkpoint(Checkpoint),
    /// A stable checkpoint and the state it certifies: the answer to a
    /// `BlockRequest` for a block older than the sender keeps.
    Snapshot {
        certificate: CheckpointCertificate,
        state: SnapshotBytes,
    },
}

impl PeerMessage {
    /// Checks what the message alone can prove (`cache` skips certificates already checked).
    pub fn verify(
        &self,
        committee: &Committee,
        limits: &MessageLimits,
        cache: &mut VerifiedCertificates,
    ) -> Result<(), ProtocolError> {
        match self {
            Self::Proposal(proposal) => proposal.verify(committee, limits, cache),
            Self::Vote(vote) => vote.verify(committee),
            Self::Timeout(timeout) => timeout.verify(committee, cache),
            Self::Requests(requests) => {
                if requests.len() > limits.batch_requests_max {
                    let (count, max) = (requests.len(), limits.batch_requests_max);
                    return Err(ProtocolError::TooLarge { what: "request batch", count, max });
                }
                if let Some(request) = requests.iter().find(|r| r.payload().len() > limits.request_bytes_max) {
                    let (count, max) = (request.payload().len(), limits.request_bytes_max);
                    return Err(ProtocolError::TooLarge { what: "request", count, max });
                }
                let bytes: usize = requests.iter().map(|request| request.payload().len()).sum();
                if bytes > limits.batch_bytes_max {
                    return Err(ProtocolError::TooLarge {
                        what: "request batch's bytes",
                        count: bytes,
                        max: limits.batch_bytes_max,
                    });
                }
                Ok(())
            }
            Self::Catchup { high_qc, timeout_certificate } => {
                high_qc.verify_cached(committee, cache)?;
                timeout_certificate.as_ref().map_or(Ok(()), |certificate| certificate.verify(committee, cache))
            }
            Self::BlockRequest { .. } => Ok(()),
            Self::Blocks(blocks) => {
                if blocks.len() > limits.sync_blocks_max {
                    let (count, max) = (blocks.len(), limits.sync_blocks_max);
                    return Err(ProtocolError::TooLarge { what: "block batch", count, max });
                }
                blocks.iter().try_for_each(|block| block.verify(committee, limits, cache))
            }
            Self::Checkpoint(checkpoint) => checkpoint.verify(committee),
            Self::Snapshot { certificate, state } => {
                certificate.verify(committee)?;
                // The head only: the body is checked against it as it is restored.
                match super::ledger::snapshot_parts(state) {
                    Ok((_, None)) => Err(malformed("snapshot", "it has no body")),
                    Ok((head, Some(_))) if Digest::of(head) == certificate.point.state => Ok(()),
                    _ => Err(malformed("snapshot", "its state does not match its certificate")),
                }
            }
        }
    }
}

fn malformed(what: &'static str, reason: &str) -> ProtocolError {
    ProtocolError::Malformed { what, reason: reason.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn past_its_capacity_the_cache_forgets_the_certificates_of_the_oldest_round_first() {
        let capacity = 8;
        let mut cache = VerifiedCertificates::new(capacity);
        let identity = |n: u8| Digest([n; 32]);
        for n in 0..capacity as u8 {
            cache.insert(identity(n), Round(u64::from(n / 2) + 1));
        }
        assert!((0..capacity as u8).all(|n| cache.contains(&identity(n))), "all kept within the capacity");
        // One more: the two of round 1, the oldest, go; the rest and the newest stay.
        cache.insert(identity(100), Round(9));
        assert!(!cache.contains(&identity(0)) && !cache.contains(&identity(1)), "round 1 forgotten");
        assert!((2..capacity as u8).all(|n| cache.contains(&identity(n))));
        assert!(cache.contains(&identity(100)));
        assert!(cache.seen.len() <= capacity);
        // A cache of capacity 0 (verification on every message) keeps nothing.
        let mut disabled = VerifiedCertificates::disabled();
        disabled.insert(identity(1), Round(1));
        assert!(!disabled.contains(&identity(1)));
    }
}
