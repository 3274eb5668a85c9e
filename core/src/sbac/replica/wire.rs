//! What a shard replica exchanges with the world, as plain data: frames between
//! replicas (`Frame`), a client's requests and the replies it hears
//! (`ClientRequest`, `ClientReply`), and the checkers' answer on an envelope
//! (`Checked`). The node encodes them on its sockets (postcard); the simulator
//! passes them as they are. Pinned by `core/tests/formats.rs`.

use serde::{Deserialize, Serialize};

use crate::bft::{Digest, Height, PeerMessage, ReplicaId, Request, Round};
use crate::ids::{ObjectId, ShardId, TxId};
use crate::sbac::{Attempt, ObjectView, SignedAnswer, SignedVote, TxView, Verdict};

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
    /// To every concerned shard: a replica's signed vote on an attempt.
    Vote(SignedVote),
    /// To every concerned shard: the envelope of an attempt that is taking long to be
    /// decided (a client may have told some shards only). A replica that prepared it
    /// answers with its recorded vote; one that did not checks it and prepares it.
    Envelope { envelope: String, attempt: Attempt },
}

impl Frame {
    /// Whether a replica of another shard may send this.
    pub fn crosses_shards(&self) -> bool {
        matches!(self, Self::Vote(_) | Self::Envelope { .. })
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
}

/// What `List` pages through.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Listing {
    Objects,
    Transactions,
}

/// The most entries in one page.
pub const PAGE_MAX: u32 = 1_000;

/// One page of a replica's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Page {
    pub objects: Vec<(ObjectId, ObjectView)>,
    pub transactions: Vec<(TxId, TxView)>,
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
        kind: String,
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
