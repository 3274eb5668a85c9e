//! The application a shard replicates: it receives decided requests in order
//! and must be deterministic, so that every honest replica reaches the same state.

use super::types::{Height, Request};

/// A deterministic state machine fed by the decided log.
///
/// Its state is seen in two parts: a head, which checkpoints sign, and a body, which the
/// head vouches for. A small state is all head. A large one keeps digests of its bulk in
/// the head (`sbac::Table`), so that a checkpoint costs what changed since the last one,
/// not a pass over the whole state; only a replica catching up needs the body.
pub trait Application {
    /// What executing a request produces for the shell (replies, messages to other shards).
    type Output;

    /// Executes one decided request. Identical calls must give identical states on every replica.
    fn execute(&mut self, height: Height, request: &Request) -> Vec<Self::Output>;

    /// The head of the state as bytes, for a checkpoint at `height` (the height just
    /// executed): equal states give equal bytes.
    fn state_head(&mut self, height: Height) -> Vec<u8>;

    /// The rest of the state as bytes (empty when the head holds it all), or `None` when
    /// the shell keeps the body (in its store) and serves it itself.
    fn state_body(&self) -> Option<Vec<u8>>;

    /// Whether the shell keeps the body (`state_body` is `None`), known without building it.
    fn shell_keeps_body(&self) -> bool {
        false
    }

    /// Replaces the state with one taken by `state_head` and `state_body` (state transfer),
    /// once the body is found to match the head; on an error nothing changes.
    fn restore(&mut self, head: &[u8], body: &[u8]) -> Result<(), String>;

    /// Takes up, after a restart, the state the shell saved at its last decided height:
    /// this head, and the body in the shell's store. Only an application whose body the
    /// shell keeps can; the others restart from a checkpoint and replay the log.
    fn resume(&mut self, head: &[u8]) -> Result<(), String> {
        let _ = head;
        Err("this application restarts from a checkpoint and the decided log".into())
    }
}
