//! Byzantine fault tolerant ordering inside one shard: 2-chain HotStuff
//! (Jolteon / DiemBFT v4) as a sans-IO state machine (`Replica`), with its
//! messages, certificates, safety rules, mempool, decided log, checkpoints and
//! state transfer. `docs/protocol.md` describes it and names the tests.

mod app;
mod committee;
mod error;
pub mod kv;
pub mod leaders;
mod ledger;
mod mempool;
mod messages;
mod replica;
mod safety;
mod seal;
mod types;

pub use app::Application;
pub use committee::{Committee, KeyPair};
pub use error::{Halt, ProtocolError, Severity};
pub use ledger::{Resume, StableCheckpoint, Tip, snapshot_of, snapshot_parts};
pub use messages::{
    Block, Checkpoint, CheckpointCertificate, CheckpointPoint, MessageLimits, PeerMessage, Proposal, QuorumCertificate,
    Timeout, TimeoutCertificate, VerifiedCertificates, Vote,
};
pub use replica::{Action, Config, Event, FETCH_ATTEMPTS_MAX, Persisted, Replica, SYNC_ANSWERS_PER_SECOND_MAX};
pub use safety::SafetyState;
pub use seal::{Attestation, SEAL_LEAVES_MAX, SEAL_PATH_MAX, Seal};
pub use types::{Digest, DigestMap, DigestSet, Height, ReplicaId, Request, Round, SnapshotBytes, TimeMs};
