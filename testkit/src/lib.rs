//! Tools to test and to measure: the deterministic simulator of shards of replicas
//! (`sim`), the harness for tests that run real processes (`processes`, and whole local
//! clusters in `cluster`; hosts made of network namespaces in `hosts`, and a cluster spread
//! over them in `host_cluster`), and the benchmark behind `shardspace bench` (`bench`).

pub mod bench;
pub mod browser;
pub mod cluster;
pub mod host_cluster;
pub mod hosts;
pub mod processes;
pub mod sim;
