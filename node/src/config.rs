//! The cluster file (TOML): shards, their replicas (addresses, public keys,
//! key files, data folders) and BFT settings; each replica's secret key lives
//! in its own key file. `generate` writes both for a new cluster.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use ed25519_dalek::{SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use shardspace_core::ShardId;
use shardspace_core::bft::{Committee, Config as BftConfig, KeyPair, ReplicaId};

use crate::network::PeerId;
use crate::secure::Credentials;

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
    /// Where peers connect: `host:port`, the host a name or an IP address.
    pub peer_address: String,
    /// Where clients (the API, benchmarks) submit requests: `host:port` as well.
    pub client_address: String,
    /// The `ip:port` the replica binds for peers when it is not `peer_address` (behind NAT,
    /// in a container); by default `peer_address`, or port of it on every interface when
    /// its host is a name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_listen: Option<String>,
    /// The `ip:port` it binds for clients, in the same way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_listen: Option<String>,
    /// The ed25519 public key, 64 hex digits.
    pub public_key: String,
    /// The secret key's file, relative to the cluster file.
    pub key_file: String,
    /// The replica's data folder, relative to the cluster file.
    pub data_dir: String,
    /// Where the replica serves `/metrics` (Prometheus): the `ip:port` it binds; none when
    /// left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metrics_address: Option<String>,
    /// This replica's own checkers (base URLs by contract), in place of the cluster-wide
    /// `[checkers]` for those contracts: each replica may trust a checker of its own host,
    /// so that the f+1 verdicts a decision needs include an honest replica's own checker.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub checkers: BTreeMap<String, String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardEntry {
    pub id: u32,
    pub replicas: Vec<ReplicaEntry>,
}

/// A client of the replicas' request interface (an API instance, a benchmark): only the
/// clients listed, and the replicas, may open a link to a replica's client port.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientEntry {
    /// Its name (`api` for the one `config gen` makes), which `shardspace api --client` takes.
    pub name: String,
    /// Its ed25519 public key, 64 hex digits.
    pub public_key: String,
    /// Its secret key's file, relative to the cluster file: needed only on its own host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_file: Option<String>,
}

/// The client `config gen` makes, which the API, the benchmarks and the tests use.
pub const API_CLIENT: &str = "api";

/// The whole cluster file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterFile {
    /// The cluster's name: signatures of one cluster are void in another.
    pub cluster: String,
    /// How long a replica tries a contract's checker that answers 5xx or cannot be reached
    /// before its verdict is "no verdict" (f+1 of which abort the attempt, `checker_error`);
    /// `CHECKER_TIMEOUT_MS` when left out.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checker_timeout_ms: Option<u64>,
    #[serde(default)]
    pub bft: BftSettings,
    /// Each contract's checker: its base URL (`http://host:port`), by contract name, for
    /// every replica that does not name its own.
    #[serde(default)]
    pub checkers: BTreeMap<String, String>,
    pub shards: Vec<ShardEntry>,
    /// The clients the replicas admit (`[[clients]]`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub clients: Vec<ClientEntry>,
}

/// What one replica process needs, resolved from the cluster file.
#[derive(Clone, Debug)]
pub struct NodeConfig {
    /// The cluster's name (links of one cluster are void in another).
    pub cluster: String,
    pub shard: ShardId,
    pub keys: KeyPair,
    /// This replica's shard's committee.
    pub committee: Committee,
    /// Every shard's committee, by shard id.
    pub committees: Vec<Committee>,
    /// Every replica of the cluster: its peer address.
    pub peers: Vec<(PeerId, String)>,
    /// The link keys (X25519) of the clients this replica admits (`[[clients]]`).
    pub clients: Vec<[u8; 32]>,
    pub peer_address: SocketAddr,
    pub client_address: SocketAddr,
    pub metrics_address: Option<SocketAddr>,
    pub data_dir: PathBuf,
    pub bft: BftConfig,
    pub durability: Durability,
    /// Each contract's checker base URL, for this replica.
    pub checkers: BTreeMap<String, String>,
    /// See `ClusterFile::checker_timeout_ms`.
    pub checker_timeout: std::time::Duration,
}

/// How long a checker may fail before a replica gives up on it (`checker_timeout_ms`).
pub const CHECKER_TIMEOUT_MS: u64 = 2_000;

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
        check_checkers(&self.checkers, "checkers")?;
        let contracts = self.contracts();
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
                for address in [&replica.peer_address, &replica.client_address] {
                    check_host_port(address).map_err(|message| format!("{name}: {message}"))?;
                    if !addresses.insert(address.clone()) {
                        return Err(format!("{name}: address {address} is used twice"));
                    }
                }
                let binds = [&replica.peer_listen, &replica.client_listen, &replica.metrics_address];
                for address in binds.into_iter().flatten() {
                    address.parse::<SocketAddr>().map_err(|_| {
                        format!("{name}: {address:?} is not an ip:port address to listen on (such as 0.0.0.0:7300)")
                    })?;
                }
                check_checkers(&replica.checkers, &format!("{name}: checkers"))?;
                // Replicas that know different contracts could never certify a verdict
                // together: every replica has a checker for every contract.
                let own = self.checkers_of(replica);
                if let Some(missing) = contracts.iter().find(|contract| !own.contains_key(*contract)) {
                    return Err(format!(
                        "{name} has no checker for contract {missing:?}: every replica needs one for every \
                         contract, its own ([shards.replicas.checkers]) or the cluster-wide [checkers]"
                    ));
                }
            }
        }
        // Links know their ends by the X25519 form of these keys: no two may share one.
        let mut link_keys = BTreeSet::new();
        for shard in &self.shards {
            for replica in &shard.replicas {
                let key = parse_public_key(&replica.public_key)?;
                if !link_keys.insert(crate::secure::public_of(&key)) {
                    return Err(format!("shard {} replica {}: its key is another replica's", shard.id, replica.id));
                }
            }
        }
        let mut names = BTreeSet::new();
        for client in &self.clients {
            let name = format!("client {:?}", client.name);
            if !shardspace_core::is_name(&client.name) || !names.insert(&client.name) {
                return Err(format!("{name}: a client needs a name of its own (letters, digits, - and _)"));
            }
            let key = parse_public_key(&client.public_key).map_err(|message| format!("{name}: {message}"))?;
            if !link_keys.insert(crate::secure::public_of(&key)) {
                return Err(format!(
                    "{name}: its key is another client's or a replica's; make one with `shardspace keys`"
                ));
            }
        }
        Ok(())
    }

    /// The link key of client `name`, from its key file: what `shardspace api` and the
    /// benchmarks connect to the replicas with. `base` is the cluster file's folder.
    pub fn client_credentials(&self, base: &Path, name: &str) -> Result<Credentials, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid { path: base.join("cluster.toml"), message };
        let client = self.clients.iter().find(|client| client.name == name).ok_or_else(|| {
            invalid(format!(
                "the cluster file lists no client {name:?} in [[clients]]: make one with `shardspace keys --name {name} \
                 --config CLUSTER.toml`, then restart the replicas so that they admit it"
            ))
        })?;
        let key_file = client.key_file.as_ref().ok_or_else(|| {
            invalid(format!("client {name:?} has no key_file here: its secret key lives on its own host"))
        })?;
        let path = base.join(key_file);
        let secret = read_key_file(&path)?;
        if hex::encode(secret.verifying_key().as_bytes()) != client.public_key {
            return Err(ConfigError::Invalid {
                path,
                message: format!("this key is not the one the cluster file lists for client {name:?}"),
            });
        }
        Ok(Credentials::new(&secret, &self.cluster))
    }

    /// The link key (X25519) of a replica, which its links must prove they hold.
    pub fn replica_link_key(&self, shard: usize, replica: usize) -> Option<[u8; 32]> {
        let entry = self.shards.get(shard)?.replicas.get(replica)?;
        parse_public_key(&entry.public_key).ok().map(|key| crate::secure::public_of(&key))
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
        let listen = |bind: &Option<String>, advertised: &str| match bind {
            Some(bind) => address(bind),
            None => listen_address(advertised).map_err(invalid),
        };
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
            cluster: self.cluster.clone(),
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
            clients: self
                .clients
                .iter()
                .map(|client| parse_public_key(&client.public_key).map(|key| crate::secure::public_of(&key)))
                .collect::<Result<_, _>>()
                .map_err(invalid)?,
            peer_address: listen(&own.peer_listen, &own.peer_address)?,
            client_address: listen(&own.client_listen, &own.client_address)?,
            metrics_address: own.metrics_address.as_deref().map(address).transpose()?,
            data_dir: base.join(&own.data_dir),
            bft,
            durability: self.bft.durability,
            checkers: self.checkers_of(own),
            checker_timeout: std::time::Duration::from_millis(
                self.checker_timeout_ms.unwrap_or(CHECKER_TIMEOUT_MS).clamp(100, 600_000),
            ),
        })
    }

    /// The checkers `replica` calls: its own, and the cluster-wide ones for other contracts.
    pub fn checkers_of(&self, replica: &ReplicaEntry) -> BTreeMap<String, String> {
        let mut checkers = self.checkers.clone();
        checkers.extend(replica.checkers.iter().map(|(contract, url)| (contract.clone(), url.clone())));
        checkers
    }

    /// Every contract some replica has a checker for.
    pub fn contracts(&self) -> BTreeSet<String> {
        let own = self.shards.iter().flat_map(|shard| &shard.replicas).flat_map(|replica| replica.checkers.keys());
        self.checkers.keys().chain(own).cloned().collect()
    }
}

/// Checks a table of checkers: contract names and `http://` base URLs.
fn check_checkers(checkers: &BTreeMap<String, String>, table: &str) -> Result<(), String> {
    for (contract, url) in checkers {
        if !shardspace_core::is_name(contract) {
            return Err(format!("{table}: {contract:?} is not a contract name"));
        }
        let rest =
            url.strip_prefix("http://").ok_or_else(|| format!("{table}.{contract}: {url:?} is not an http:// URL"))?;
        if rest.is_empty() || rest.contains(['?', '#', ' ']) {
            return Err(format!("{table}.{contract}: {url:?} is not a base URL such as http://127.0.0.1:7101"));
        }
    }
    Ok(())
}

/// Splits `host:port` (an IPv6 host in brackets) and checks both halves.
fn split_host_port(text: &str) -> Result<(&str, u16), String> {
    let shape = || format!("{text:?} is not a host:port address (such as 10.0.0.1:7300 or node-1.example:7300)");
    let (host, port) = text.rsplit_once(':').ok_or_else(shape)?;
    let port = port.parse::<u16>().ok().filter(|port| *port != 0).ok_or_else(shape)?;
    // An IPv6 address goes in brackets ([::1]:7300): without them the port is ambiguous.
    let is_ip = match host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        Some(v6) => v6.parse::<std::net::Ipv6Addr>().is_ok(),
        None => host.parse::<Ipv4Addr>().is_ok(),
    };
    let is_name = !host.is_empty()
        && host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        });
    if is_ip || is_name { Ok((host, port)) } else { Err(shape()) }
}

fn check_host_port(text: &str) -> Result<(), String> {
    split_host_port(text).map(|_| ())
}

/// Where to listen when the cluster file gives only the advertised address: that address
/// when its host is an IP, else its port on every interface.
fn listen_address(advertised: &str) -> Result<SocketAddr, String> {
    let (_, port) = split_host_port(advertised)?;
    Ok(advertised.parse().unwrap_or(SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port)))
}

fn parse_public_key(text: &str) -> Result<VerifyingKey, String> {
    let mut bytes = [0u8; 32];
    hex::decode_to_slice(text, &mut bytes).map_err(|_| format!("public key {text:?} is not 64 hex digits"))?;
    let key = VerifyingKey::from_bytes(&bytes).map_err(|_| format!("public key {text:?} is not an ed25519 key"))?;
    // A key of small order would let anyone make a link as its holder (its X25519 form
    // gives the same secret whatever the other end holds).
    if key.is_weak() {
        return Err(format!("public key {text:?} is a weak key: make keys with `shardspace keys` or `config gen`"));
    }
    Ok(key)
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

/// Which checker serves a contract, for `generate`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CheckerPlace {
    /// One URL for every replica (the cluster-wide `[checkers]`).
    Shared(String),
    /// A checker on each replica's own host, at this port.
    OnEachHost(u16),
}

impl std::str::FromStr for CheckerPlace {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        if let Ok(port) = text.parse::<u16>() {
            return Ok(Self::OnEachHost(port));
        }
        check_checkers(&BTreeMap::from([("contract".to_string(), text.to_string())]), "checker")?;
        Ok(Self::Shared(text.to_string()))
    }
}

/// Where `generate` puts a cluster's replicas.
#[derive(Clone, Debug)]
pub struct Layout {
    pub cluster: String,
    pub shards: u32,
    pub replicas: u32,
    /// The hosts, names or IPs: replica k (counting across shards) runs on host k mod H,
    /// so that with as many hosts as replicas per shard each host runs one replica of
    /// every shard.
    pub hosts: Vec<String>,
    /// Replicas listen on every interface (`0.0.0.0`) rather than on their host's address.
    pub listen_any: bool,
    /// Replica k listens on base + 2k (peers) and base + 2k + 1 (clients); with n replicas
    /// in all, it serves metrics on base + 2n + k.
    pub base_port: u16,
    /// Each contract's checker.
    pub checkers: BTreeMap<String, CheckerPlace>,
}

impl Layout {
    /// One host for every replica.
    pub fn one_host(cluster: &str, shards: u32, replicas: u32, host: &str, base_port: u16) -> Self {
        Self {
            cluster: cluster.into(),
            shards,
            replicas,
            hosts: vec![host.into()],
            listen_any: false,
            base_port,
            checkers: BTreeMap::new(),
        }
    }
}

/// `host:port`, with an IPv6 host in brackets.
fn join_host_port(host: &str, port: u16) -> String {
    if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") }
}

/// Writes `dir/cluster.toml`, one key file per replica under `dir/keys/`, and the key of
/// the `api` client (`keys/api.key`).
pub fn generate(layout: &Layout, dir: &Path) -> Result<PathBuf, ConfigError> {
    let write = |path: &Path, text: &str| {
        std::fs::write(path, text).map_err(|source| ConfigError::Write { path: path.into(), source })
    };
    let invalid = |message: String| ConfigError::Invalid { path: dir.into(), message };
    if layout.hosts.is_empty() {
        return Err(invalid("a cluster needs at least one host".into()));
    }
    for host in &layout.hosts {
        check_host_port(&join_host_port(host, 1))
            .map_err(|_| invalid(format!("{host:?} is not a host name or an IP address")))?;
    }
    let keys_dir = dir.join("keys");
    std::fs::create_dir_all(&keys_dir).map_err(|source| ConfigError::Write { path: keys_dir.clone(), source })?;
    let all = layout.shards * layout.replicas;
    let mut shards = Vec::new();
    for shard in 0..layout.shards {
        let mut replicas = Vec::new();
        for replica in 0..layout.replicas {
            let k = shard * layout.replicas + replica;
            let host = &layout.hosts[k as usize % layout.hosts.len()];
            let port = |offset: u32| {
                let port = u32::from(layout.base_port) + offset;
                u16::try_from(port)
                    .map_err(|_| invalid(format!("port {port} is beyond 65535: choose a lower --base-port")))
            };
            let (peer_port, client_port, metrics_port) = (port(2 * k)?, port(2 * k + 1)?, port(2 * all + k)?);
            let bind_host = if layout.listen_any { "0.0.0.0" } else { host.as_str() };
            let bind = |port: u16| join_host_port(bind_host, port);
            let listens_elsewhere = layout.listen_any || bind(1).parse::<SocketAddr>().is_err();
            let listen_at = |port: u16| listens_elsewhere.then(|| join_host_port("0.0.0.0", port));
            let seed: [u8; 32] = rand::random();
            let key = SigningKey::from_bytes(&seed);
            let name = format!("shard-{shard}-replica-{replica}");
            let key_file = format!("keys/{name}.key");
            write(&dir.join(&key_file), &format!("{}\n", hex::encode(seed)))?;
            restrict_to_owner(&dir.join(&key_file))?;
            let own_checkers = layout.checkers.iter().filter_map(|(contract, place)| match place {
                CheckerPlace::OnEachHost(port) => {
                    Some((contract.clone(), format!("http://{}", join_host_port(host, *port))))
                }
                CheckerPlace::Shared(_) => None,
            });
            replicas.push(ReplicaEntry {
                id: replica,
                peer_address: join_host_port(host, peer_port),
                client_address: join_host_port(host, client_port),
                peer_listen: listen_at(peer_port),
                client_listen: listen_at(client_port),
                public_key: hex::encode(key.verifying_key().as_bytes()),
                key_file,
                data_dir: format!("data/{name}"),
                metrics_address: Some(listen_at(metrics_port).unwrap_or_else(|| bind(metrics_port))),
                checkers: own_checkers.collect(),
            });
        }
        shards.push(ShardEntry { id: shard, replicas });
    }
    let shared = layout.checkers.iter().filter_map(|(contract, place)| match place {
        CheckerPlace::Shared(url) => Some((contract.clone(), url.clone())),
        CheckerPlace::OnEachHost(_) => None,
    });
    let seed: [u8; 32] = rand::random();
    let api_key_file = format!("keys/{API_CLIENT}.key");
    write(&dir.join(&api_key_file), &format!("{}\n", hex::encode(seed)))?;
    restrict_to_owner(&dir.join(&api_key_file))?;
    let api = ClientEntry {
        name: API_CLIENT.into(),
        public_key: hex::encode(SigningKey::from_bytes(&seed).verifying_key().as_bytes()),
        key_file: Some(api_key_file),
    };
    let file = ClusterFile {
        cluster: layout.cluster.clone(),
        checker_timeout_ms: None,
        bft: BftSettings::default(),
        checkers: shared.collect(),
        shards,
        clients: vec![api],
    };
    file.validate().map_err(invalid)?;
    let text = toml::to_string_pretty(&file).map_err(|error| invalid(error.to_string()))?;
    let path = dir.join("cluster.toml");
    write(&path, &text)?;
    Ok(path)
}

/// Makes a key for a new client `name` of the cluster file at `path`: writes
/// `keys/NAME.key` beside it and appends the client's `[[clients]]` entry to the file (its
/// comments and layout stay). Replicas admit the client once they restart with the file.
pub fn add_client(path: &Path, name: &str) -> Result<PathBuf, ConfigError> {
    edit_locked(path, || add_client_unlocked(path, name))
}

fn add_client_unlocked(path: &Path, name: &str) -> Result<PathBuf, ConfigError> {
    let file = ClusterFile::load(path)?;
    let invalid = |message: String| ConfigError::Invalid { path: path.into(), message };
    if !shardspace_core::is_name(name) {
        return Err(invalid(format!("{name:?} is not a client name (letters, digits, - and _)")));
    }
    if file.clients.iter().any(|client| client.name == name) {
        return Err(invalid(format!("the cluster file already lists a client {name:?}: choose another name")));
    }
    let base = path.parent().unwrap_or(Path::new("."));
    let key_file = format!("keys/{name}.key");
    let key_path = base.join(&key_file);
    let seed: [u8; 32] = rand::random();
    write_new_secret(&key_path, &format!("{}\n", hex::encode(seed)))?;
    let public_key = hex::encode(SigningKey::from_bytes(&seed).verifying_key().as_bytes());
    let entry = format!("\n[[clients]]\nname = {name:?}\npublic_key = {public_key:?}\nkey_file = {key_file:?}\n");
    let appended = append_checked(path, &entry);
    if appended.is_err() {
        let _ = std::fs::remove_file(&key_path);
    }
    appended.map(|()| key_path)
}

/// Writes a secret to a new file, readable by its owner only from the start; an existing
/// file is left as it is and refused.
fn write_new_secret(path: &Path, text: &str) -> Result<(), ConfigError> {
    use std::io::Write;
    let failed = |source| ConfigError::Write { path: path.into(), source };
    if let Some(folder) = path.parent() {
        std::fs::create_dir_all(folder).map_err(failed)?;
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => {
            ConfigError::Invalid { path: path.into(), message: "a key file is already there: not overwritten".into() }
        }
        _ => failed(source),
    })?;
    file.write_all(text.as_bytes()).and_then(|()| file.sync_all()).map_err(failed)
}

/// Sets the cluster-wide checker of each contract in `checkers` (`[checkers]`) in the
/// cluster file at `path`, if the result still loads; the file is rewritten whole (its
/// comments are not kept). Replicas and the API take it on SIGHUP.
pub fn set_checkers(path: &Path, checkers: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    edit_locked(path, || {
        let mut file = ClusterFile::load(path)?;
        file.checkers.extend(checkers.iter().map(|(contract, url)| (contract.clone(), url.clone())));
        let text = toml::to_string_pretty(&file)
            .map_err(|error| ConfigError::Invalid { path: path.into(), message: error.to_string() })?;
        replace_checked(path, &text)
    })
}

/// Runs `edit` (a read, change and write of the cluster file at `path`) holding an exclusive
/// lock on `<path>.lock`, so that two commands changing the file at once (`contract add`,
/// `keys`) each see the other's change instead of writing over it. The lock file stays:
/// removing it would let a third command lock a new file while the second holds the old.
fn edit_locked<T>(path: &Path, edit: impl FnOnce() -> Result<T, ConfigError>) -> Result<T, ConfigError> {
    let lock_path = path.with_extension("toml.lock");
    let failed = |source| ConfigError::Write { path: lock_path.clone(), source };
    let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(failed)?;
    lock.lock().map_err(failed)?;
    let edited = edit();
    drop(lock); // closing it unlocks
    edited
}

/// Appends `text` to the cluster file at `path` if the result still loads: written beside
/// it and renamed over it, so that the file is whole, old or new, whatever fails.
fn append_checked(path: &Path, text: &str) -> Result<(), ConfigError> {
    let old = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.into(), source })?;
    replace_checked(path, &format!("{}\n{text}", old.trim_end()))
}

/// Writes `new` as the cluster file at `path` if it loads: written beside it and renamed
/// over it, so that the file is whole, old or new, whatever fails.
fn replace_checked(path: &Path, new: &str) -> Result<(), ConfigError> {
    let staged = path.with_extension("toml.new");
    std::fs::write(&staged, new).map_err(|source| ConfigError::Write { path: staged.clone(), source })?;
    if let Err(error) = ClusterFile::load(&staged) {
        let _ = std::fs::remove_file(&staged);
        return Err(match error {
            ConfigError::Parse { message, .. } | ConfigError::Invalid { message, .. } => ConfigError::Invalid {
                path: path.into(),
                message: format!("the change would break the file: {message}"),
            },
            other => other,
        });
    }
    std::fs::rename(&staged, path).map_err(|source| ConfigError::Write { path: path.into(), source })
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
        Layout::one_host("test", 2, 4, "127.0.0.1", 7300)
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

    /// `text` with its first replica's public key replaced by `key`.
    fn with_first_key(text: &str, key: &str) -> String {
        let first = first_key_after(text, 0);
        text.replacen(&first, key, 1)
    }

    /// The public key of the `skip`-th replica in `text`.
    fn first_key_after(text: &str, skip: usize) -> String {
        let line = text.lines().filter(|line| line.starts_with("public_key = ")).nth(skip).unwrap();
        line.trim_start_matches("public_key = ").trim_matches('"').to_string()
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
            ), // The identity point: a key of small order, which would let anyone make its links.
            (with_first_key(&text, &format!("01{}", "0".repeat(62))), "weak key"),
            (with_first_key(&text, &first_key_after(&text, 1)), "another replica's"),
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

    #[test]
    fn a_cluster_over_named_hosts_gives_each_replica_its_host_and_its_host_s_checker() {
        let dir = tempfile::tempdir().unwrap();
        let mut layout = layout();
        layout.hosts = ["node-0.example", "node-1.example", "10.0.0.3", "node-3"].map(String::from).to_vec();
        layout.checkers.insert("bank".into(), "7101".parse().unwrap());
        layout.checkers.insert("hello".into(), "http://checkers.example:7102".parse().unwrap());
        let path = generate(&layout, dir.path()).unwrap();
        let file = ClusterFile::load(&path).unwrap();
        let replica = &file.shards[1].replicas[1];
        assert_eq!(replica.peer_address, format!("node-1.example:{}", 7300 + 2 * 5));
        assert_eq!(replica.checkers.get("bank").map(String::as_str), Some("http://node-1.example:7101"));
        assert_eq!(file.checkers.get("hello").map(String::as_str), Some("http://checkers.example:7102"));
        assert_eq!(file.contracts().into_iter().collect::<Vec<_>>(), ["bank", "hello"]);
        // A named host is bound on every interface; an IP host on its own address.
        let named = file.node(dir.path(), 1, 1).unwrap();
        assert_eq!(named.client_address, "0.0.0.0:7311".parse().unwrap());
        assert_eq!(named.checkers.get("bank").map(String::as_str), Some("http://node-1.example:7101"));
        assert_eq!(named.checkers.get("hello").map(String::as_str), Some("http://checkers.example:7102"));
        assert_eq!(file.node(dir.path(), 0, 2).unwrap().peer_address, "10.0.0.3:7304".parse().unwrap());
    }

    #[test]
    fn listen_addresses_apart_from_the_advertised_ones_are_bound() {
        let dir = tempfile::tempdir().unwrap();
        let mut layout = layout();
        layout.hosts = vec!["203.0.113.7".into()];
        layout.listen_any = true;
        let path = generate(&layout, dir.path()).unwrap();
        let file = ClusterFile::load(&path).unwrap();
        assert_eq!(file.shards[0].replicas[0].peer_address, "203.0.113.7:7300");
        assert_eq!(file.shards[0].replicas[0].peer_listen.as_deref(), Some("0.0.0.0:7300"));
        let node = file.node(dir.path(), 0, 0).unwrap();
        assert_eq!(
            (node.peer_address, node.client_address),
            ("0.0.0.0:7300".parse().unwrap(), "0.0.0.0:7301".parse().unwrap())
        );
        let peers: Vec<&str> = node.peers.iter().map(|(_, address)| address.as_str()).take(2).collect();
        assert_eq!(peers, ["203.0.113.7:7300", "203.0.113.7:7302"], "peers dial the advertised addresses");
    }

    #[test]
    fn bad_hosts_and_listen_addresses_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let mut layout = layout();
        layout.hosts = vec!["bad host".into()];
        let error = generate(&layout, dir.path()).unwrap_err().to_string();
        assert!(error.contains("not a host name or an IP address"), "{error}");
        let path = generate(&self::layout(), dir.path()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let cases = [
            (text.replacen("127.0.0.1:7300", "-x.example:7300", 1), "not a host:port"),
            (text.replacen("127.0.0.1:7300", "127.0.0.1:0", 1), "not a host:port"),
            (text.replacen("peer_address", "peer_listen = \"node-0:7300\"\npeer_address", 1), "to listen on"),
            (text.replacen("key_file", "checkers = { bank = \"ftp://x\" }\nkey_file", 1), "replica 0: checkers.bank"),
            (
                text.replacen("key_file", "checkers = { bank = \"http://x:1\" }\nkey_file", 1),
                "no checker for contract \"bank\"",
            ),
            (text.replacen("127.0.0.1:7300", "::1:7300", 1), "not a host:port"),
        ];
        for (bad, reason) in cases {
            std::fs::write(&path, bad).unwrap();
            let error = ClusterFile::load(&path).unwrap_err().to_string();
            assert!(error.contains(reason), "{error} does not say {reason}");
        }
    }

    /// Commands changing the cluster file at once (`keys`, `contract add`) lose no change:
    /// each reads the file as the one before it left it.
    #[test]
    fn clients_and_checkers_added_at_once_are_all_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = generate(&layout(), dir.path()).unwrap();
        std::thread::scope(|scope| {
            for n in 0..6 {
                let path = &path;
                scope.spawn(move || add_client(path, &format!("client-{n}")).unwrap());
                scope.spawn(move || {
                    let checker = [(format!("contract-{n}"), format!("http://127.0.0.1:{}", 7000 + n))];
                    set_checkers(path, &checker.into_iter().collect()).unwrap();
                });
            }
        });
        let file = ClusterFile::load(&path).unwrap();
        for n in 0..6 {
            assert!(file.clients.iter().any(|client| client.name == format!("client-{n}")), "client-{n} was lost");
            assert!(file.checkers.contains_key(&format!("contract-{n}")), "contract-{n}'s checker was lost");
        }
    }

    #[test]
    fn the_api_client_of_a_generated_cluster_and_one_added_later_have_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = generate(&layout(), dir.path()).unwrap();
        let file = ClusterFile::load(&path).unwrap();
        let api = file.client_credentials(dir.path(), API_CLIENT).unwrap();
        let node = file.node(dir.path(), 0, 0).unwrap();
        assert_eq!(node.clients, vec![api.public()], "the replicas admit the api client");

        let key_file = add_client(&path, "api-2").unwrap();
        assert!(key_file.ends_with("keys/api-2.key"));
        let file = ClusterFile::load(&path).unwrap();
        let second = file.client_credentials(dir.path(), "api-2").unwrap();
        assert_eq!(file.node(dir.path(), 1, 3).unwrap().clients, vec![api.public(), second.public()]);
        for (name, reason) in [("api-2", "already lists a client"), ("no such", "not a client name")] {
            let error = add_client(&path, name).unwrap_err().to_string();
            assert!(error.contains(reason), "{error} does not say {reason}");
        }
        let error = file.client_credentials(dir.path(), "api-3").unwrap_err().to_string();
        assert!(error.contains("shardspace keys --name api-3"), "{error}");

        // A file whose clients cannot take one more entry is left whole, and no key stays.
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.starts_with("cluster = "), "{text}");
        let without_clients = &text[..text.find("[[clients]]").unwrap()];
        // An inline array of clients: no [[clients]] may follow it.
        let inline = without_clients.replacen('\n', "\nclients = []\n", 1);
        std::fs::write(&path, &inline).unwrap();
        assert!(add_client(&path, "api-4").is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), inline, "the cluster file changed");
        assert!(!dir.path().join("keys/api-4.key").exists(), "the key file stayed");
        std::fs::write(&path, &text).unwrap();

        // A client whose key is a replica's, or another client's, is refused.
        let text = std::fs::read_to_string(&path).unwrap();
        let replica_key = &file.shards[0].replicas[0].public_key;
        let twice = format!("{text}\n[[clients]]\nname = \"copy\"\npublic_key = \"{replica_key}\"\n");
        std::fs::write(&path, twice).unwrap();
        let error = ClusterFile::load(&path).unwrap_err().to_string();
        assert!(error.contains("another client's or a replica's"), "{error}");
    }
}
