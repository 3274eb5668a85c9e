//! Dev-only tools: the deterministic simulator of a shard's replicas (`sim`).

pub mod sim;
