//! The vocabulary of Shardspace, shared by every other crate: ids, objects,
//! transactions and envelopes with their canonical encoding (DESIGN.md §3),
//! the shard map, structural validation against named limits, and the checker
//! request built from an envelope (DESIGN.md §4).
//!
//! This crate does no IO: no tokio, sockets, SQLite or clock.

pub mod bft;
pub mod canonical;
pub mod checker_request;
pub mod error;
pub mod ids;
pub mod limits;
pub mod lthash;
pub mod sbac;
pub mod shard;
pub mod transaction;
mod validate;

pub use validate::is_name;

pub use checker_request::CheckerRequest;
pub use error::TxError;
pub use ids::{ObjectId, ShardId, TxId};
pub use limits::Limits;
pub use shard::ShardMap;
pub use transaction::{Envelope, Object, Store, Transaction};
