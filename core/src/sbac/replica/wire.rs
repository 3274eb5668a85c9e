//! What a shard replica exchanges with the world, as plain data: frames between
//! replicas (`Frame`), a client's requests and the replies it hears
//! (`ClientRequest`, `ClientReply`), and the checkers' answer on an envelope
//! (`Checked`). The node encodes them on its sockets (postcard); the simulator
//! passes them as they are. Pinned by `core/tests/formats.rs`.

use serde::{Deserialize, Serialize};

use crate::bft::{Digest, Height, PeerMessage, ReplicaId, Request, Round};
use crate::ids::{ObjectId, ShardId, TxId};
use crate::sbac::{
    Attempt, DecidedEntry, DecidedFilter, Found, ObjectFilter, ObjectView, Position, SignedAnswer, SignedVote, TxView,
    Verdict,
};

/// One replica of the cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct PeerId {
    pub shard: ShardId,
    pub replica: ReplicaId,
}

impl std::fmt::Display for PeerId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.shard, self.replica)
    }
}

/// A client connection of the shell (opaque to the replica): where its replies go.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClientId(pub u64);

/// What travels between replicas.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Frame {
    /// Inside a shard: the BFT protocol.
    Bft(PeerMessage),
    /// Inside a shard: a replica's signed checker verdict on an envelope.
    Verdict(Verdict),
    /// To every concerned shard: a replica's sealed vote on an attempt.
    Vote(SignedVote),
    /// To every concerned shard: the envelope of an attempt that is taking long to be
    /// decided (a client may have told some shards only). A replica that prepared it
    /// answers with its recorded vote; one that did not checks it and prepares it.
    Envelope { envelope: String, attempt: Attempt },
    /// To every concerned shard: a replica's votes of one call (an executed block's),
    /// for the same shards, in one frame: one frame per peer, not one per vote.
    Votes(Vec<SignedVote>),
}

impl Frame {
    /// Whether a replica of another shard may send this.
    pub fn crosses_shards(&self) -> bool {
        matches!(self, Self::Vote(_) | Self::Votes(_) | Self::Envelope { .. })
    }

    /// The votes this frame carries (none but in `Vote` and `Votes`).
    pub fn votes(&self) -> &[SignedVote] {
        match self {
            Self::Vote(vote) => std::slice::from_ref(vote),
            Self::Votes(votes) => votes,
            _ => &[],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientRequest {
    /// Raw requests to order (the shard refuses to execute what is not an S-BAC request).
    Submit(Vec<Request>),
    Status,
    /// Check and prepare one attempt of a transaction; its outcome follows on this connection.
    Envelope {
        envelope: String,
        attempt: Attempt,
    },
    Object(ObjectId),
    Transaction(TxId),
    /// A page of this replica's objects or transaction records, in id order after `after`
    /// (unsigned: for browsing, not for trust).
    List {
        what: Listing,
        after: Option<[u8; 32]>,
        limit: u32,
    },
    /// Ask this replica's checkers about an envelope (JSON) without ordering anything: a
    /// dry run, answered `Checked` (with no verdict, and why, for a contract unknown here or
    /// when too many are being checked), or `Rejected` when it cannot be read.
    Check {
        envelope: String,
    },
    /// Entries of this replica's decided log from `from` on (at most `limit`, and at most
    /// `DECIDED_PAGE_MAX` or `PAGE_ENVELOPE_BYTES_MAX` of them), unsigned: a reader believes
    /// an entry once f+1 replicas give it alike at its position.
    Decided {
        from: Position,
        limit: u32,
    },
    /// The entries of this replica's decided log from `from` on that `filter` finds (at
    /// most `limit`, `DECIDED_PAGE_MAX` and `PAGE_ENVELOPE_BYTES_MAX`, reading at most
    /// `SCAN_MAX`), answered `DecidedFound`; unsigned, as `Decided`.
    Search {
        from: Position,
        filter: DecidedFilter,
        limit: u32,
    },
}

/// What `List` pages through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Listing {
    Objects,
    Transactions,
    /// The objects a filter lists (`ObjectFilter`): a page ends at its `limit`, at its
    /// bytes (`cut`), or once it has read `SCAN_MAX` candidates (`scanned_to`).
    ObjectsWhere(ObjectFilter),
}

impl Listing {
    /// Why a replica refuses to list this (`ObjectFilter::verify`).
    pub fn verify(&self) -> Result<(), String> {
        match self {
            Self::ObjectsWhere(filter) => filter.verify(),
            Self::Objects | Self::Transactions => Ok(()),
        }
    }
}

/// The most entries in one page.
pub const PAGE_MAX: u32 = 1_000;

/// The most entries of the decided log in one answer.
pub const DECIDED_PAGE_MAX: u32 = 1_000;

/// The bytes of object values, or of envelopes, one page carries: below
/// `CLIENT_FRAME_BYTES_MAX` (4 MiB) with the rest of the page, whatever their sizes.
pub const PAGE_ENVELOPE_BYTES_MAX: usize = 2 * 1024 * 1024;

/// One page of a replica's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub objects: Vec<(ObjectId, ObjectView)>,
    pub transactions: Vec<(TxId, TxView)>,
    /// For transactions: the envelope (JSON) of the attempt each record's view is about, for
    /// the first ones of the page whose envelopes fit in `PAGE_ENVELOPE_BYTES_MAX`.
    pub envelopes: Vec<(TxId, String)>,
    /// Objects: the page ended before `limit` because their values filled
    /// `PAGE_ENVELOPE_BYTES_MAX` (there may be more after its last id).
    pub cut: bool,
    /// Filtered objects: the page read `SCAN_MAX` candidates and stopped after this id
    /// (there may be more after it, whether the page lists it or not).
    pub scanned_to: Option<ObjectId>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientReply {
    /// Requests of this connection decided, each with its height.
    Decided(Vec<(Digest, Height)>),
    /// Requests refused (the mempool is full, or a request is too large): try again later.
    Refused(Vec<Digest>),
    Status(Status),
    /// The request could not be read.
    Error(String),
    /// The envelope was taken: its checks and ordering are under way.
    Accepted {
        tx: TxId,
        attempt: Attempt,
    },
    /// The envelope was refused before ordering, and nothing changed.
    Rejected {
        tx: Option<TxId>,
        kind: RejectKind,
        message: String,
    },
    /// A signed answer about an object or a transaction; for a submitted envelope,
    /// a transaction answer once its attempt is decided here.
    Answer(SignedAnswer),
    Page(Page),
    /// A signed answer to an `Object` or `Transaction` read: distinct from an envelope's
    /// outcome (`Answer`), so that a connection shared by many questions never takes one
    /// for the other.
    Record(SignedAnswer),
    /// What this replica's checkers say of an envelope asked about with `Check` (unsigned:
    /// a dry run decides nothing). `valid` is none when no checker answered (down, or
    /// failing, past `checker_timeout_ms`); `reason` is the checker's, or why none answered.
    Checked {
        tx: TxId,
        valid: Option<bool>,
        reason: Option<String>,
    },
    /// Entries of the decided log in order, the first at `from`, and how many entries the
    /// log holds here (`length`): a reader that has them all waits for more.
    DecidedLog {
        from: Position,
        entries: Vec<DecidedEntry>,
        length: u64,
    },
    /// A search of the decided log from `from` (`Search`), with its filter, that readers
    /// asking from the same position tell apart.
    DecidedFound {
        from: Position,
        filter: DecidedFilter,
        found: Found,
    },
}

/// Why a replica refused an envelope before ordering it. On the wire, its stable name
/// (the `kind` of the API's errors): a name no replica sends does not decode, so a
/// client never believes a kind it does not know.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum RejectKind {
    /// Not a valid envelope: one of `TxError::KINDS`.
    Invalid(&'static str),
    /// A contract the cluster file names no checker for.
    UnknownContract,
    /// None of its objects lives on this shard.
    WrongShard,
    /// Attempt 0, or too far ahead of the latest attempt recorded here.
    BadAttempt,
    /// Too much in progress here: try again soon.
    Busy,
}

impl RejectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid(kind) => kind,
            Self::UnknownContract => "unknown_contract",
            Self::WrongShard => "wrong_shard",
            Self::BadAttempt => "bad_attempt",
            Self::Busy => "busy",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        let fixed = [Self::UnknownContract, Self::WrongShard, Self::BadAttempt, Self::Busy];
        let invalid = crate::TxError::KINDS.iter().find(|kind| **kind == name).map(|kind| Self::Invalid(kind));
        invalid.or_else(|| fixed.into_iter().find(|kind| kind.as_str() == name))
    }

    /// Does not depend on the replica's state or load: nothing changes by waiting, so
    /// f+1 replicas saying it settle the shard's answer.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Invalid(_) | Self::UnknownContract | Self::WrongShard | Self::BadAttempt)
    }
}

impl std::fmt::Display for RejectKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for RejectKind {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for RejectKind {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = <std::borrow::Cow<'de, str>>::deserialize(deserializer)?;
        Self::parse(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown refusal kind {name:?}")))
    }
}

/// A replica's view of its shard.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    pub shard: ShardId,
    pub replica: ReplicaId,
    pub round: Round,
    pub height: Height,
    /// Requests executed, and a digest of the application state after them.
    pub executed: u64,
    pub state: Digest,
    /// Requests waiting in this replica's mempool.
    pub pending: u64,
    /// Who this replica expects to lead its current round (none while it fetches a block
    /// of the chain its highest certificate extends).
    pub leader: Option<ReplicaId>,
}

/// What the checkers said about one envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checked {
    pub tx: TxId,
    /// `Envelope::digest` of the envelope checked.
    pub envelope: [u8; 32],
    /// The verdict and its reason, or why no checker answered (never a `false`).
    pub verdict: Result<(bool, Option<String>), String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reject_kind_goes_by_its_name_and_a_made_up_name_does_not_decode() {
        let fixed = [RejectKind::UnknownContract, RejectKind::WrongShard, RejectKind::BadAttempt, RejectKind::Busy];
        let invalid = crate::TxError::KINDS.iter().map(|kind| RejectKind::Invalid(kind));
        for kind in fixed.into_iter().chain(invalid) {
            assert_eq!(RejectKind::parse(kind.as_str()), Some(kind));
            let bytes = postcard::to_stdvec(&kind).unwrap();
            assert_eq!(postcard::from_bytes::<RejectKind>(&bytes).unwrap(), kind);
        }
        let made_up = postcard::to_stdvec("made_up").unwrap();
        assert!(postcard::from_bytes::<RejectKind>(&made_up).is_err());
        assert!(RejectKind::Invalid("malformed_json").is_final() && !RejectKind::Busy.is_final());
    }
}
