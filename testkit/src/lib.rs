//! Dev-only tools: the deterministic simulator of shards of replicas (`sim`),
//! and the harness for tests that run real processes (`processes`, and whole
//! local clusters in `cluster`).

pub mod cluster;
pub mod processes;
pub mod sim;
