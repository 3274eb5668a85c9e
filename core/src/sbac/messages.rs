//! The S-BAC vocabulary (DESIGN.md §5): attempts, votes and their reasons,
//! checker verdicts certified by f+1 replicas of a shard, signed votes and the
//! prepared certificates made of them, and the requests a shard orders. Verdicts and
//! votes are sealed (`Seal`): one signature covers all a replica says in one step.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::bft::{Attestation, Committee, KeyPair, ProtocolError, ReplicaId, Seal};
use crate::ids::{ShardId, TxId};

/// One run of a transaction: a transaction that aborted may run again as a newer attempt.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Attempt(pub u32);

/// Why a shard votes abort (the `reason` a client is told).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum AbortReason {
    InputMissing,
    InputInactive,
    InputLocked,
    /// The input was created by another contract's transaction (docs/architecture.md).
    InputWrongContract,
    ReferenceMissing,
    ReferenceInactive,
    ReferenceLocked,
    /// A value in the client's store differs from the stored one.
    ValueMismatch,
    /// An output id exists, or existed: ids are never reused.
    OutputExists,
    CheckerRejected,
    Malformed,
    /// An older attempt of this transaction is still undecided here, or a newer one was seen.
    Superseded,
    /// The attempt's number is far ahead of the latest one this shard saw
    /// (`ATTEMPTS_AHEAD_MAX`): it is voted down, and does not count as the latest.
    TooFarAhead,
    /// f+1 replicas got no verdict from a contract's checker within their bound (a 5xx, no
    /// connection): this attempt aborts; a later one is checked afresh.
    CheckerError,
}

impl AbortReason {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::InputMissing => "input_missing",
            Self::InputInactive => "input_inactive",
            Self::InputLocked => "input_locked",
            Self::InputWrongContract => "input_wrong_contract",
            Self::ReferenceMissing => "reference_missing",
            Self::ReferenceInactive => "reference_inactive",
            Self::ReferenceLocked => "reference_locked",
            Self::ValueMismatch => "value_mismatch",
            Self::OutputExists => "output_exists",
            Self::CheckerRejected => "checker_rejected",
            Self::Malformed => "malformed",
            Self::Superseded => "superseded",
            Self::TooFarAhead => "attempt_too_far_ahead",
            Self::CheckerError => "checker_error",
        }
    }
}

impl fmt::Display for AbortReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A shard's vote on one attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoteKind {
    Accept,
    Abort(AbortReason),
}

impl VoteKind {
    pub fn is_accept(&self) -> bool {
        matches!(self, Self::Accept)
    }

    /// What a signature covers: accept or abort (the reason is informative, not signed).
    fn signed_byte(&self) -> u8 {
        u8::from(self.is_accept())
    }
}

/// What a replica's checkers said of an envelope; `signed` is what a verdict's seal covers
/// (0 and 1 as the `bool` verdicts were before `Unavailable`, and encoded alike).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckerAnswer {
    /// The checker of the transaction or of one of its dependencies said no (or refused it).
    Invalid,
    Valid,
    /// No verdict within the replica's bound (`checker_timeout_ms`): the checker answered
    /// 5xx, or could not be reached. f+1 of these abort this attempt with `CheckerError`.
    /// A verdict holds for every attempt of its envelope (a checker is a pure function of
    /// it); this one holds for its own attempt only, so that no certificate of it can abort
    /// a later attempt once the checker is back.
    Unavailable(Attempt),
}

impl CheckerAnswer {
    /// How many replicas must say it for a certificate: f+1 for a verdict (one of them
    /// honest, and every honest checker gives the same), 2f+1 for "no verdict" (f+1 of
    /// them honest: f faulty replicas and one honest replica whose own checker is slow
    /// cannot abort an attempt whose checkers answer elsewhere).
    pub fn signers_needed(self, committee: &Committee) -> usize {
        match self {
            Self::Invalid | Self::Valid => committee.validity(),
            Self::Unavailable(_) => committee.quorum(),
        }
    }

    fn signed(self) -> Vec<u8> {
        match self {
            Self::Invalid => vec![0],
            Self::Valid => vec![1],
            Self::Unavailable(attempt) => [&[2][..], &attempt.0.to_be_bytes()].concat(),
        }
    }
}

impl From<bool> for CheckerAnswer {
    fn from(valid: bool) -> Self {
        if valid { Self::Valid } else { Self::Invalid }
    }
}

/// One replica's sealed checker verdict on one envelope of a transaction (the store's
/// values included: the checker judged those values, and no others).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub tx: TxId,
    /// `Envelope::digest` of the envelope checked.
    pub envelope: [u8; 32],
    pub answer: CheckerAnswer,
    pub replica: ReplicaId,
    pub seal: Seal,
}

impl Verdict {
    pub fn signing_bytes(committee: &Committee, tx: &TxId, envelope: &[u8; 32], answer: CheckerAnswer) -> Vec<u8> {
        committee.signing_bytes("sbac-verdict", &[tx.as_bytes(), envelope, &answer.signed()])
    }

    /// A verdict sealed alone (a replica seals its verdicts together: `ShardReplica`).
    pub fn sign(committee: &Committee, keys: &KeyPair, tx: TxId, envelope: [u8; 32], answer: CheckerAnswer) -> Self {
        let seal = Seal::sign_one(committee, keys, &Self::signing_bytes(committee, &tx, &envelope, answer));
        Self { tx, envelope, answer, replica: keys.id, seal }
    }

    /// `committee` is the shard's own: verdicts never leave it.
    pub fn verify(&self, committee: &Committee) -> Result<(), ProtocolError> {
        let bytes = Self::signing_bytes(committee, &self.tx, &self.envelope, self.answer);
        self.seal.check(committee, self.replica, &bytes)
    }
}

/// f+1 matching verdicts from distinct replicas of one shard (2f+1 for "no verdict"): at
/// least one came from an honest replica's own checker, so execution can trust it
/// without calling one.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct VerdictCertificate {
    pub tx: TxId,
    pub envelope: [u8; 32],
    pub answer: CheckerAnswer,
    pub seals: Vec<(ReplicaId, Seal)>,
}

impl VerdictCertificate {
    pub fn verify(&self, committee: &Committee) -> Result<(), ProtocolError> {
        let bytes = Verdict::signing_bytes(committee, &self.tx, &self.envelope, self.answer);
        committee.verify_signers(&bytes, &self.seals, self.answer.signers_needed(committee))
    }
}

/// A replica's vote on an attempt before it is sealed: the shard's state machine computes
/// it, and `ShardReplica` seals it only to send it (the vote on a transaction of one shard
/// is its decision and never leaves the replica, so it is never sealed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VoteBody {
    pub shard: ShardId,
    pub tx: TxId,
    pub attempt: Attempt,
    pub envelope: [u8; 32],
    pub vote: VoteKind,
}

impl VoteBody {
    /// What its seal covers; `committee` is this shard's.
    pub fn signing_bytes(&self, committee: &Committee) -> Vec<u8> {
        SignedVote::signing_bytes(committee, &self.tx, self.attempt, &self.envelope, self.vote)
    }

    /// The vote under `seal`, made by `replica`.
    pub fn sealed(self, replica: ReplicaId, seal: Seal) -> SignedVote {
        let Self { shard, tx, attempt, envelope, vote } = self;
        SignedVote { shard, tx, attempt, envelope, vote, replica, seal }
    }

    /// The vote sealed alone; `committee` is this shard's, `keys` this replica's.
    pub fn sign(self, committee: &Committee, keys: &KeyPair) -> SignedVote {
        let seal = Seal::sign_one(committee, keys, &self.signing_bytes(committee));
        self.sealed(keys.id, seal)
    }
}

/// One replica's sealed vote on an attempt, sent to every concerned shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedVote {
    pub shard: ShardId,
    pub tx: TxId,
    pub attempt: Attempt,
    /// `Envelope::digest` of the envelope voted on: all shards must vote on the same one.
    pub envelope: [u8; 32],
    pub vote: VoteKind,
    pub replica: ReplicaId,
    pub seal: Seal,
}

impl SignedVote {
    /// What a vote signs: (cluster, shard) by domain separation, then txId, attempt,
    /// the envelope's digest, accept|abort.
    pub fn signing_bytes(
        committee: &Committee,
        tx: &TxId,
        attempt: Attempt,
        envelope: &[u8; 32],
        vote: VoteKind,
    ) -> Vec<u8> {
        let fields: [&[u8]; 4] = [tx.as_bytes(), &attempt.0.to_be_bytes(), envelope, &[vote.signed_byte()]];
        committee.signing_bytes("sbac-vote", &fields)
    }

    /// `committee` is the committee of the shard the vote claims to be from.
    pub fn verify(&self, committee: &Committee) -> Result<(), ProtocolError> {
        if committee.shard() != self.shard {
            return Err(ProtocolError::Malformed { what: "vote", reason: "checked against another shard".into() });
        }
        let bytes = Self::signing_bytes(committee, &self.tx, self.attempt, &self.envelope, self.vote);
        self.seal.check(committee, self.replica, &bytes)
    }
}

/// 2f+1 matching votes of one shard on one attempt.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreparedCertificate {
    pub shard: ShardId,
    pub tx: TxId,
    pub attempt: Attempt,
    pub envelope: [u8; 32],
    pub accept: bool,
    pub seals: Vec<(ReplicaId, Seal)>,
}

impl PreparedCertificate {
    pub fn verify(&self, committee: &Committee) -> Result<(), ProtocolError> {
        if committee.shard() != self.shard {
            return Err(ProtocolError::Malformed {
                what: "certificate",
                reason: "checked against another shard".into(),
            });
        }
        // The reason of an abort is not signed: any abort reason verifies an abort.
        let vote = if self.accept { VoteKind::Accept } else { VoteKind::Abort(AbortReason::Malformed) };
        let bytes = SignedVote::signing_bytes(committee, &self.tx, self.attempt, &self.envelope, vote);
        committee.verify_quorum(&bytes, &self.seals)
    }
}

/// What a shard orders through its BFT log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ShardRequest {
    /// Prepare one attempt of a transaction. The envelope travels as its JSON text
    /// (parsed at execution, deterministically), with the verdict certificate.
    Prepare { envelope: String, attempt: Attempt, verdict: VerdictCertificate },
    /// Decide an attempt, with the prepared certificate of every concerned shard.
    Decide { tx: TxId, attempt: Attempt, certificates: Vec<PreparedCertificate> },
}
