//! `ProtocolError`: why a peer's message was dropped, with a severity that
//! decides how the shell logs it (STYLE.md §3).

use super::ledger::Tip;
use super::types::{Digest, Height, ReplicaId, Round};

/// How bad a dropped message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Severity {
    /// Only a faulty or malicious peer sends this: log a warning naming it.
    Byzantine,
    /// An honest peer may send this late: ignore quietly.
    Stale,
}

/// Why a message from a peer was dropped.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("replica {replica} is not in this shard's committee")]
    UnknownReplica { replica: ReplicaId },
    #[error("bad signature from {replica}")]
    BadSignature { replica: ReplicaId },
    #[error("a certificate with {count} signatures; a quorum is {quorum}")]
    TooFewSignatures { count: usize, quorum: usize },
    #[error("{replica} signed a certificate twice")]
    DuplicateSigner { replica: ReplicaId },
    #[error("{author} proposed in round {round:?}, whose leader is {leader}")]
    WrongLeader { author: ReplicaId, round: Round, leader: ReplicaId },
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
    #[error("a {what} of {count} items; the limit is {max}")]
    TooLarge { what: &'static str, count: usize, max: usize },
    #[error("a message about round {round:?}, already past")]
    OldRound { round: Round },
    #[error("an unsolicited {what}")]
    Unsolicited { what: &'static str },
}

impl ProtocolError {
    pub fn severity(&self) -> Severity {
        match self {
            Self::OldRound { .. } | Self::Unsolicited { .. } => Severity::Stale,
            _ => Severity::Byzantine,
        }
    }
}

/// Why the decided log cannot go on: only more than f faulty replicas cause it. The
/// replica halts rather than follow them.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Halt {
    #[error("block {block} does not extend the decided tip {tip:?}")]
    Fork { block: Digest, tip: Tip },
    #[error("2f+1 replicas certify another state at height {}", height.0)]
    StateDiverged { height: Height },
}
