//! S-BAC (DESIGN.md §5): atomic commit of objects across shards. `ShardApp` is
//! the shard's state machine, fed by its BFT log; `messages` holds the votes,
//! verdict and prepared certificates, and the requests a shard orders.
//! Exercised by `core/tests/sbac.rs` and the S-BAC simulator (`make sim-sbac`);
//! not wired into the replica process yet: the node still runs the key-value
//! application (see docs/protocol.md, "S-BAC").

mod collector;
mod messages;
mod shard;

pub use collector::{VerdictCollector, VoteCollector};
pub use messages::{
    AbortReason, Attempt, PreparedCertificate, ShardRequest, SignedVote, Verdict, VerdictCertificate, VoteKind,
};
pub use shard::{AttemptRecord, ObjectRecord, ObjectStatus, ShardApp, ShardOutput, ShardState, TxRecord};
