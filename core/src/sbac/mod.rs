//! S-BAC (DESIGN.md §5): atomic commit of objects across shards. `ShardApp` is
//! the shard's state machine, fed by its BFT log; `messages` holds the votes,
//! verdict and prepared certificates, and the requests a shard orders.
//! `answers` holds what a replica signs for a reader. Exercised by
//! `core/tests/sbac.rs`, the S-BAC simulator (`make sim-sbac`) and the replica
//! process (`node`).

mod answers;
pub mod attempts;
mod collector;
mod decided;
mod messages;
mod query;
pub mod replica;
mod shard;
mod table;

pub use answers::{AnswerBody, ObjectView, SignedAnswer, TxView};
pub use collector::{VerdictCollector, VoteCollector};
pub use decided::{DecidedEntry, DecidedFilter, DecidedSource, Found, Position, search};
pub use messages::{
    AbortReason, Attempt, CheckerAnswer, PreparedCertificate, ShardRequest, SignedVote, Verdict, VerdictCertificate,
    VoteBody, VoteKind,
};
pub use query::{FILTER_TEXT_MAX, FieldMatch, ObjectFilter, SCAN_BYTES_MAX, SCAN_MAX, StatusKind, objects_page};
pub use replica::{ShardReplica, ShardReplicaConfig};
pub use shard::{
    ATTEMPTS_AHEAD_MAX, AttemptRecord, Attempts, ObjectRecord, ObjectSource, ObjectStatus, ShardApp, ShardOutput,
    ShardState, StateChanges, StateHead, TransactionSource, TxRecord, encode_body,
};
pub use table::{RECENT_RECORDS_MAX, Source, Table, TableHead};
