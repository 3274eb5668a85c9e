//! The application a shard replicates: it receives decided requests in order
//! and must be deterministic, so that every honest replica reaches the same state.

use super::types::{Height, Request};

/// A deterministic state machine fed by the decided log.
pub trait Application {
    /// What executing a request produces for the shell (replies, messages to other shards).
    type Output;

    /// Executes one decided request. Identical calls must give identical states on every replica.
    fn execute(&mut self, height: Height, request: &Request) -> Vec<Self::Output>;

    /// The whole state as bytes: equal states give equal bytes (checkpoints sign their digest).
    fn snapshot(&self) -> Vec<u8>;

    /// Replaces the state with a snapshot taken by `snapshot` (state transfer).
    fn restore(&mut self, snapshot: &[u8]) -> Result<(), String>;
}
