//! Dev-only tools: the deterministic simulator of a shard's replicas
//! (`sim`), and the small replicated key-value application it runs (`kv`).

pub mod kv;
pub mod sim;
