//! `contrib/compose/compose.yaml` is checked against the cluster file it claims to run:
//! the test runs the file's own `x-config-gen` (`shardspace config gen`), then finds each
//! replica, each checker a replica calls and the API among the services, in the network
//! namespace of the host the cluster file names, and no service that is none of these.
//! There is no container engine here to run it.
#![allow(clippy::unwrap_used)] // in tests a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use serde_json::Value;
use shardspace_node::config::ClusterFile;

/// The contracts `shardspace checker` (the image's Rust checkers) serves.
const RUST_CHECKER_CONTRACTS: [&str; 5] = ["hello", "addition", "dump", "bank", "petition"];
const PYTHON_CONTRACTS: &str = "/opt/shardspace/contracts/python/";

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| items.iter().filter_map(|item| item.as_str().map(String::from)).collect())
        .unwrap_or_default()
}

/// What a checker service serves: its port and its contracts.
fn checker_of(service: &Value) -> Option<(u16, Vec<String>)> {
    let (entrypoint, command) = (strings(&service["entrypoint"]), strings(&service["command"]));
    let port = command.iter().position(|arg| arg == "--port").and_then(|at| command.get(at + 1)?.parse().ok())?;
    if entrypoint.is_empty() && command.first().map(String::as_str) == Some("checker") {
        return Some((port, RUST_CHECKER_CONTRACTS.map(String::from).to_vec()));
    }
    if entrypoint == ["python3", "-m", "shardspace.checker"] {
        let files = command.iter().filter_map(|arg| arg.strip_prefix(PYTHON_CONTRACTS));
        let contracts = files.filter_map(|file| {
            let (contract, rest) = file.split_once('/')?;
            (rest == format!("{contract}.py")).then(|| contract.to_string())
        });
        return Some((port, contracts.collect()));
    }
    None
}

#[test]
fn the_compose_file_runs_every_replica_checker_and_the_api_where_its_cluster_file_says() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let compose_path = root.join("contrib/compose/compose.yaml");
    let compose: Value = yaml_serde::from_str(&std::fs::read_to_string(&compose_path).unwrap()).unwrap();
    let services = compose["services"].as_object().unwrap();

    let dir = tempfile::tempdir().unwrap();
    let generated = Command::new(env!("CARGO_BIN_EXE_shardspace"))
        .args(["config", "gen", "--dir"])
        .arg(dir.path())
        .args(strings(&compose["x-config-gen"]))
        .output()
        .unwrap();
    assert!(generated.status.success(), "x-config-gen failed: {}", String::from_utf8_lossy(&generated.stderr));
    let file = ClusterFile::load(&dir.path().join("cluster.toml")).unwrap();

    // Each service's host: the service whose network namespace it joins, and that one's name.
    let namespace_of = |name: &str| {
        let mode = services[name]["network_mode"].as_str().unwrap_or_default();
        mode.strip_prefix("service:").unwrap_or(name).to_string()
    };
    let host_of = |name: &str| {
        let owner = namespace_of(name);
        services[&owner]["hostname"].as_str().unwrap_or(&owner).to_string()
    };
    let mut explained = BTreeMap::new();
    let built = |name: &str| {
        assert_eq!(services[name]["image"], "shardspace", "{name} runs the project's image");
        assert_eq!(services[name]["build"], "../..", "{name} builds it from the repository's Dockerfile");
    };
    assert!(root.join("Dockerfile").exists());

    for shard in &file.shards {
        for replica in &shard.replicas {
            let command = ["node", "--config", "/cluster/cluster.toml", "--shard"].map(String::from);
            let command: Vec<String> =
                command.into_iter().chain([shard.id.to_string(), "--replica".into(), replica.id.to_string()]).collect();
            let found: Vec<&String> =
                services.keys().filter(|name| strings(&services[name.as_str()]["command"]) == command).collect();
            assert_eq!(found.len(), 1, "shard {} replica {} runs once: {found:?}", shard.id, replica.id);
            let name = found[0].as_str();
            built(name);
            assert!(
                strings(&services[name]["volumes"]).contains(&"./cluster:/cluster".to_string()),
                "{name} mounts the cluster"
            );
            let host = host_of(name);
            for address in [&replica.peer_address, &replica.client_address] {
                assert_eq!(address.rsplit_once(':').unwrap().0, host, "{name} is on the host its address names");
            }
            assert!(
                replica.peer_listen.as_deref().is_some_and(|a| a.starts_with("0.0.0.0:")),
                "{name} binds every interface"
            );
            explained.insert(name.to_string(), "replica");

            // Each checker it calls is served on its own host, at that port, for that contract.
            for (contract, url) in file.checkers_of(replica) {
                let (checker_host, port) = url.strip_prefix("http://").unwrap().rsplit_once(':').unwrap();
                assert_eq!(checker_host, host, "{name} calls the {contract} checker of its own host");
                let port: u16 = port.parse().unwrap();
                let serving: Vec<&String> = services
                    .keys()
                    .filter(|other| namespace_of(other) == namespace_of(name))
                    .filter(|other| {
                        checker_of(&services[other.as_str()]).is_some_and(|(p, c)| p == port && c.contains(&contract))
                    })
                    .collect();
                assert_eq!(serving.len(), 1, "{name}: {contract} at {url} is served once on its host: {serving:?}");
                built(serving[0]);
                explained.insert(serving[0].clone(), "checker");
            }
        }
    }

    let api = &services["api"];
    built("api");
    assert_eq!(strings(&api["command"]), ["api", "--config", "/cluster/cluster.toml", "--listen", "0.0.0.0:5000"]);
    assert_eq!(strings(&api["ports"]), ["5000:5000"]);
    assert!(strings(&api["volumes"]).iter().any(|volume| volume.starts_with("./cluster:/cluster")));
    explained.insert("api".into(), "api");
    let unexplained: Vec<&String> = services.keys().filter(|name| !explained.contains_key(name.as_str())).collect();
    assert!(unexplained.is_empty(), "services the cluster file does not call for: {unexplained:?}");
    assert_eq!(explained.values().filter(|what| **what == "replica").count(), 8);
}
