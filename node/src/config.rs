//! The cluster file (TOML): shards, their replicas (addresses, public keys,
//! key files, data folders) and BFT settings; each replica's secret key lives
//! in its own key file. `generate` writes both for a new cluster.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use shardspace_core::ShardId;
use shardspace_core::bft::{Committee, Config as BftConfig, KeyPair, ReplicaId};

use crate::network::PeerId;

/// Why a cluster file or key file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("{path} is not a valid cluster file: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// How durable a write is before the replica speaks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync at every commit: survives power loss.
    #[default]
    Full,
    /// Survives a crash of the process, not of the machine.
    Normal,
}

/// How long a leader waits to fill a block that is not full (`bft.propose_after_ms`).
pub const PROPOSE_AFTER_MS: u64 = 5;

/// BFT settings shared by every replica of the cluster (any may be left out).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BftSettings {
    pub round_timeout_ms: Option<u64>,
    /// The shortest round timeout, which a shard whose rounds succeed comes down to.
    pub round_timeout_min_ms: Option<u64>,
    pub checkpoint_interval: Option<u64>,
    pub batch_requests_max: Option<usize>,
    /// See `propose_after_ms` in docs/protocol.md.
    pub propose_after_ms: Option<u64>,
    #[serde(default)]
    pub durability: Durability,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaEntry {
    pub id: u32,
    /// Where peers of the same shard connect.
    pub peer_address: String,
    /// Where clients (the API, benchmarks) submit requests.
    pub client_address: String,
    /// The ed25519 public key, 64 hex digits.
    pub public_key: String,
    /// The secret key's file, relative to the cluster file.
    pub key_file: String,
    /// The replica's data folder, relative to the cluster file.
    pub data_dir: String,
    /// Where the replica serves `/metrics` (Prometheus); none when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    pub id: u32,
    pub replicas: Vec<ReplicaEntry>,
}

/// The whole cluster file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// The cluster's name: signatures of one cluster are void in another.
    pub cluster: String,
    #[serde(default)]
    pub bft: BftSettings,
    /// Each contract's checker: its base URL (`http://host:port`), by contract name.
    #[serde(default)]
    pub checkers: std::collections::BTreeMap<String, String>,
    pub shards: Vec<ShardEntry>,
}

/// What one replica process needs, resolved from the cluster file.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    pub shard: ShardId,
    pub keys: KeyPair,
    /// This replica's shard's committee.
    pub committee: Committee,
    /// Every shard's committee, by shard id.
    pub committees: Vec<Committee>,
    /// Every replica of the cluster: its peer address.
    pub peers: Vec<(PeerId, String)>,
    pub peer_address: SocketAddr,
    pub client_address: SocketAddr,
    pub metrics_address: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub bft: BftConfig,
    pub durability: Durability,
    /// Each contract's checker base URL.
    pub checkers: std::collections::BTreeMap<String, String>,
}

impl ClusterFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
        let file: Self = toml::from_str(&text)
            .map_err(|error| ConfigError::Parse { path: path.into(), message: error.to_string() })?;
        file.validate().map_err(|message| ConfigError::Invalid { path: path.into(), message })?;
        Ok(file)
    }

    /// Shard ids are 0..S and replica ids 0..n in order; keys and addresses parse.
    fn validate(&self) -> Result<(), String> {
        if self.shards.is_empty() {
            return Err("the cluster has no shards".into());
        }
        for (contract, url) in &self.checkers {
            if !shardspace_core::is_name(contract) {
                return Err(format!("checkers: {contract:?} is not a contract name"));
            }
            let rest = url
                .strip_prefix("http://")
                .ok_or_else(|| format!("checkers.{contract}: {url:?} is not an http:// URL"))?;
            if rest.is_empty() || rest.contains(['?', '#', ' ']) {
                return Err(format!("checkers.{contract}: {url:?} is not a base URL such as http://127.0.0.1:7101"));
            }
        }
        for (index, shard) in self.shards.iter().enumerate() {
            if shard.id as usize != index {
                return Err(format!("shard ids must be 0, 1, 2, ... in order; entry {index} has id {}", shard.id));
            }
            if shard.replicas.is_empty() {
                return Err(format!("shard {} has no replicas", shard.id));
            }
            let mut addresses = BTreeSet::new();
            for (position, replica) in shard.replicas.iter().enumerate() {
                let name = format!("shard {} replica {}", shard.id, replica.id);
                if replica.id as usize != position {
                    return Err(format!("{name}: replica ids must be 0, 1, 2, ... in order"));
                }
                parse_public_key(&replica.public_key).map_err(|message| format!("{name}: {message}"))?;
                for address in
                    [&replica.peer_address, &replica.client_address].into_iter().chain(&replica.metrics_address)
                {
                    address
                        .parse::<SocketAddr>()
                        .map_err(|_| format!("{name}: {address:?} is not an ip:port address"))?;
                    if !addresses.insert(address.clone()) {
                        return Err(format!("{name}: address {address} is used twice"));
                    }
                }
            }
        }
        Ok(())
    }

    /// Every shard's committee, by shard id.
    pub fn committees(&self) -> Result<Vec<Committee>, String> {
        self.shards
            .iter()
            .map(|shard| {
                let keys = shard.replicas.iter().map(|r| parse_public_key(&r.public_key));
                Ok(Committee::new(&self.cluster, ShardId(shard.id), keys.collect::<Result<_, String>>()?))
            })
            .collect()
    }

    /// The configuration of replica `replica` of shard `shard`; `base` is the cluster file's folder.
    pub fn node(&self, base: &Path, shard: u32, replica: u32) -> Result<NodeConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: base.into(), message };
        let entry = self.shards.get(shard as usize).ok_or_else(|| invalid(format!("there is no shard {shard}")))?;
        let own = entry
            .replicas
            .get(replica as usize)
            .ok_or_else(|| invalid(format!("shard {shard} has no replica {replica}")))?;
        let committees = self.committees().map_err(invalid)?;
        let listed = parse_public_key(&own.public_key).map_err(invalid)?;
        let key_path = base.join(&own.key_file);
        let secret = read_key_file(&key_path)?;
        if secret.verifying_key() != listed {
            return Err(ConfigError::Invalid {
                path: key_path,
                message: format!("this key is not the one the cluster file lists for shard {shard} replica {replica}"),
            });
        }
        let address = |text: &str| text.parse::<SocketAddr>().map_err(|_| invalid(format!("bad address {text:?}")));
        let mut bft = BftConfig::default();
        if let Some(round_timeout_ms) = self.bft.round_timeout_ms {
            bft.round_timeout_ms = round_timeout_ms;
        }
        if let Some(round_timeout_min_ms) = self.bft.round_timeout_min_ms {
            bft.round_timeout_min_ms = round_timeout_min_ms;
        }
        bft.round_timeout_min_ms = bft.round_timeout_min_ms.min(bft.round_timeout_ms);
        if let Some(interval) = self.bft.checkpoint_interval {
            bft.checkpoint_interval = interval.max(1);
        }
        if let Some(max) = self.bft.batch_requests_max {
            bft.limits.batch_requests_max = max.max(1);
        }
        bft.propose_after_ms = self.bft.propose_after_ms.unwrap_or(PROPOSE_AFTER_MS);
        Ok(NodeConfig {
            shard: ShardId(shard),
            keys: KeyPair::new(ReplicaId(replica), secret),
            committee: committees[shard as usize].clone(),
            committees,
            peers: self
                .shards
                .iter()
                .flat_map(|s| {
                    s.replicas
                        .iter()
                        .map(|r| (PeerId { shard: ShardId(s.id), replica: ReplicaId(r.id) }, r.peer_address.clone()))
                })
                .collect(),
            peer_address: address(&own.peer_address)?,
            client_address: address(&own.client_address)?,
            metrics_address: own.metrics_address.as_deref().map(address).transpose()?,
            data_dir: base.join(&own.data_dir),
            bft,
            durability: self.bft.durability,
            checkers: self.checkers.clone(),
        })
    }
}

fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| format!("public key {text:?} is not 64 hex digits"))?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| format!("public key {text:?} is not an ed25519 key"))
}

/// A key file holds the 32-byte secret seed as 64 hex digits.
pub fn read_key_file(path: &Path) -> Result<SigningKey, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    let mut seed = [0u8; 32];
    hex::decode_to_slice(text.trim(), &mut seed).map_err(|_| ConfigError::Invalid {
        path: path.into(),
        message: "a key file holds 64 hex digits (a 32-byte ed25519 seed)".into(),
    })?;
    Ok(SigningKey::from_bytes(&seed))
}

/// Where `generate` puts a cluster's replicas.
#[derive(Clone, Debug)]
pub struct Layout {
    pub cluster: String,
    pub shards: u32,
    pub replicas: u32,
    pub host: String,
    /// Replica k (counting across shards) listens on base + 2k (peers) and base + 2k + 1
    /// (clients); with n replicas in all, it serves metrics on base + 2n + k.
    pub base_port: u16,
}

/// Writes `dir/cluster.toml` and one key file per replica under `dir/keys/`.
pub fn generate(layout: &Layout, dir: &Path) -> Result<PathBuf, ConfigError> {
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|source| ConfigError::Write { path: path.into(), source })
    };
    let keys_dir = dir.join("keys");
    std::fs::create_dir_all(&keys_dir).map_err(|source| ConfigError::Write { path: keys_dir.clone(), source })?;
    let mut shards = Vec::new();
    for shard in 0..layout.shards {
        let mut replicas = Vec::new();
        for replica in 0..layout.replicas {
            let index = u32::from(layout.base_port) + 2 * (shard * layout.replicas + replica);
            let metrics_port =
                u32::from(layout.base_port) + 2 * layout.shards * layout.replicas + shard * layout.replicas + replica;
            let port = |offset: u32| {
                u16::try_from(index + offset).map_err(|_| ConfigError::Invalid {
                    path: dir.into(),
                    message: format!("port {} is beyond 65535: choose a lower --base-port", index + offset),
                })
            };
            let seed: [u8; 32] = rand::random();
            let key = SigningKey::from_bytes(&seed);
            let name = format!("shard-{shard}-replica-{replica}");
            let key_file = format!("keys/{name}.key");
            write(&dir.join(&key_file), &format!("{}\n", hex::encode(seed)))?;
            restrict_to_owner(&dir.join(&key_file))?;
            replicas.push(ReplicaEntry {
                id: replica,
                peer_address: format!("{}:{}", layout.host, port(0)?),
                client_address: format!("{}:{}", layout.host, port(1)?),
                public_key: hex::encode(key.verifying_key().as_bytes()),
                key_file,
                data_dir: format!("data/{name}"),
                metrics_address: Some(format!("{}:{}", layout.host, port(metrics_port - index)?)),
            });
        }
        shards.push(ShardEntry { id: shard, replicas });
    }
    let file = ClusterFile {
        cluster: layout.cluster.clone(),
        bft: BftSettings::default(),
        checkers: std::collections::BTreeMap::new(),
        shards,
    };
    let text = toml::to_string_pretty(&file)
        .map_err(|error| ConfigError::Invalid { path: dir.into(), message: error.to_string() })?;
    let path = dir.join("cluster.toml");
    write(&path, &text)?;
    Ok(path)
}

#[cfg(unix)]
fn restrict_to_owner(path: &Path) -> Result<(), ConfigError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .map_err(|source| ConfigError::Write { path: path.into(), source })
}

#[cfg(not(unix))]
fn restrict_to_owner(_: &Path) -> Result<(), ConfigError> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        Layout { cluster: "test".into(), shards: 2, replicas: 4, host: "127.0.0.1".into(), base_port: 7300 }
    }

    #[test]
    fn a_generated_cluster_loads_and_each_replica_finds_its_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = generate(&layout(), dir.path()).unwrap();
        let file = ClusterFile::load(&path).unwrap();
        assert_eq!((file.shards.len(), file.shards[1].replicas.len()), (2, 4));
        let node = file.node(dir.path(), 1, 3).unwrap();
        assert_eq!((node.shard, node.keys.id), (ShardId(1), ReplicaId(3)));
        assert_eq!(node.peer_address.port(), 7300 + 2 * 7);
        assert_eq!(node.metrics_address.map(|address| address.port()), Some(7300 + 16 + 7));
        assert_eq!(node.committee.size(), 4);
    }

    #[test]
    fn bad_files_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = generate(&layout(), dir.path()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let cases = [
            (text.replacen("id = 1", "id = 5", 1), "in order"),
            (text.replacen("public_key = \"", "public_key = \"zz", 1), "hex"),
            (text.replace("127.0.0.1:7301", "127.0.0.1:7300"), "used twice"),
            (text.replacen("cluster = ", "colour = ", 1), "not a valid cluster file"),
            (text.replacen("[checkers]\n", "[checkers]\nbank = \"ftp://x\"\n", 1), "not an http:// URL"),
            (
                text.replacen("[checkers]\n", "[checkers]\n\"../x\" = \"http://127.0.0.1:1\"\n", 1),
                "not a contract name",
            ),
        ];
        for (bad, reason) in cases {
            std::fs::write(&path, bad).unwrap();
            let error = ClusterFile::load(&path).unwrap_err().to_string();
            assert!(error.contains(reason), "{error} does not say {reason}");
        }
    }

    #[test]
    fn checker_urls_come_from_the_cluster_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = generate(&layout(), dir.path()).unwrap();
        let mut file = ClusterFile::load(&path).unwrap();
        file.checkers.insert("bank".into(), "http://127.0.0.1:7101".into());
        std::fs::write(&path, toml::to_string(&file).unwrap()).unwrap();
        let node = ClusterFile::load(&path).unwrap().node(dir.path(), 0, 0).unwrap();
        assert_eq!(node.checkers.get("bank").map(String::as_str), Some("http://127.0.0.1:7101"));
    }

    #[test]
    fn a_key_that_is_not_the_listed_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = generate(&layout(), dir.path()).unwrap();
        let file = ClusterFile::load(&path).unwrap();
        std::fs::copy(dir.path().join("keys/shard-0-replica-1.key"), dir.path().join("keys/shard-0-replica-0.key"))
            .unwrap();
        let error = file.node(dir.path(), 0, 0).unwrap_err().to_string();
        assert!(error.contains("not the one the cluster file lists"), "{error}");
    }
}
