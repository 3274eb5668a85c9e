//! Dev-only tools: the deterministic simulator of shards of replicas (`sim`),
//! and the harness for tests that run real processes (`processes`).

pub mod processes;
pub mod sim;
