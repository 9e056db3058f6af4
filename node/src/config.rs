//! Node configuration (TOML, `config.toml` in the data directory) and the data directory layout.
//!
//! Every limit has a name, a default here, and a test at its boundary somewhere in the suite.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use linli_crdt_model::unit::UnitId;
use serde::{Deserialize, Serialize};

/// The whole configuration of one node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The unit this node serves (its node certificate says the same).
    pub unit: UnitId,
    #[serde(default)]
    pub network: Network,
    #[serde(default)]
    pub api: Api,
    #[serde(default)]
    pub sync: Sync,
    #[serde(default)]
    pub checkpoint: Checkpoint,
    #[serde(default)]
    pub log: Log,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Network {
    /// libp2p multiaddrs to listen on (TCP and QUIC).
    pub listen: Vec<String>,
    /// Peers to dial at start and whenever the connection drops: multiaddrs ending in `/p2p/<id>`.
    pub bootstrap: Vec<String>,
    /// Discover peers on the local network (on by default; off for hosts on shared networks).
    pub mdns: bool,
    /// Established connections in total.
    pub connections_max: u32,
    /// Established connections to one peer.
    pub connections_per_peer_max: u32,
    /// Incoming connections still being negotiated.
    pub pending_incoming_max: u32,
    /// How often to redial bootstrap peers that are not connected.
    pub redial_interval_ms: u64,
    /// A connected peer that has not completed hello by then is disconnected.
    pub hello_timeout_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Api {
    /// Where the local HTTP API listens. Loopback only: the bearer token is the only guard.
    pub listen: SocketAddr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sync {
    /// How often every peer is sent an inventory, to repair what announcements missed.
    pub anti_entropy_interval_ms: u64,
    /// A request not answered by then fails.
    pub request_timeout_ms: u64,
    /// Largest request or response on the sync protocol.
    pub message_bytes_max: u64,
    /// Sync rounds with one peer about one document before it waits for the next trigger.
    pub rounds_per_session_max: u32,
    /// Documents in one inventory, ours or a peer's (a larger one from a peer is refused as its
    /// own fault: an honest node never sends more).
    pub inventory_docs_max: usize,
    /// Automerge sync states (one per document in session) held in memory for one peer; beyond,
    /// the least recently used are dropped from memory (their shared heads stay on disk, and
    /// their session starts afresh).
    pub sync_states_per_peer_max: usize,
    /// Bytes of the peer's Bloom filters those states hold, in all; beyond, the same.
    pub bloom_bytes_per_peer_max: usize,
    /// Checked changes a peer brought that wait for a dependency, over all documents; a
    /// message that would bring more is refused `over-budget` (not an offence).
    pub deferred_changes_per_peer_max: usize,
    /// Sync sessions this node runs with one peer at once (the rest wait their turn), and as
    /// many again of the peer's: libp2p refuses streams per connection beyond twice this.
    pub concurrent_sessions_per_peer_max: usize,
    /// Offences (inputs that are the sender's own fault) from one peer within
    /// `offence_window_ms` before it is disconnected and refused for `ban_ms`.
    pub offences_max: u32,
    /// Offences older than this no longer count: they decay.
    pub offence_window_ms: u64,
    /// Requests one peer may make per second, sustained, after a burst of up to
    /// `requests_burst_max` (a cold sync opens a session per differing document at once).
    /// Beyond, each is answered `rate-limited` (not an offence) without being looked at.
    pub requests_per_second_max: u32,
    pub requests_burst_max: u32,
    /// Documents one key may have created within any day for this node to take another from a
    /// peer (a community makes a few a month: a visit log, minutes, a task list).
    pub new_docs_per_writer_per_day_max: usize,
    pub ban_ms: u64,
    /// Incremental changes kept per document before it is compacted into a snapshot.
    pub compact_after_changes: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Checkpoint {
    /// How often a district node signs a checkpoint of every document it holds; 0 turns it off.
    /// Nodes of other units ignore it.
    pub interval_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Log {
    /// One JSON object per line instead of readable text.
    pub json: bool,
}

impl Default for Network {
    fn default() -> Self {
        Network {
            listen: vec![
                "/ip4/0.0.0.0/tcp/0".to_owned(),
                "/ip4/0.0.0.0/udp/0/quic-v1".to_owned(),
            ],
            bootstrap: Vec::new(),
            mdns: true,
            connections_max: 512,
            connections_per_peer_max: 2,
            pending_incoming_max: 64,
            redial_interval_ms: 5_000,
            hello_timeout_ms: 15_000,
        }
    }
}

impl Default for Api {
    fn default() -> Self {
        Api {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
        }
    }
}

impl Default for Sync {
    fn default() -> Self {
        Sync {
            anti_entropy_interval_ms: 30_000,
            request_timeout_ms: 30_000,
            message_bytes_max: 16 * 1024 * 1024,
            rounds_per_session_max: 64,
            inventory_docs_max: 100_000,
            sync_states_per_peer_max: 4_096,
            bloom_bytes_per_peer_max: 32 * 1024 * 1024,
            deferred_changes_per_peer_max: 10_000,
            concurrent_sessions_per_peer_max: 64,
            offences_max: 5,
            offence_window_ms: 10 * 60 * 1000,
            requests_per_second_max: 200,
            requests_burst_max: 2_000,
            new_docs_per_writer_per_day_max: 200,
            ban_ms: 10 * 60 * 1000,
            compact_after_changes: 512,
        }
    }
}

impl Default for Checkpoint {
    fn default() -> Self {
        Checkpoint {
            interval_ms: 60 * 60 * 1000,
        }
    }
}

impl Config {
    pub fn new(unit: UnitId) -> Config {
        Config {
            unit,
            network: Network::default(),
            api: Api::default(),
            sync: Sync::default(),
            checkpoint: Checkpoint::default(),
            log: Log::default(),
        }
    }
}

/// Where everything lives inside a node's data directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: impl Into<PathBuf>) -> Layout {
        Layout { root: root.into() }
    }
    pub fn config(&self) -> PathBuf {
        self.root.join("config.toml")
    }
    pub fn genesis(&self) -> PathBuf {
        self.root.join("genesis.json")
    }
    pub fn keys(&self) -> PathBuf {
        self.root.join("keys")
    }
    pub fn node_key(&self) -> PathBuf {
        self.keys().join("node.key")
    }
    /// Keys of the people of this unit who work on this node: `keys/people/<handle>.key`.
    pub fn people(&self) -> PathBuf {
        self.keys().join("people")
    }
    pub fn api_token(&self) -> PathBuf {
        self.root.join("api-token")
    }
    /// Written by a running node: the address its API actually listens on.
    pub fn api_addr(&self) -> PathBuf {
        self.root.join("api.addr")
    }
    /// Written by a running node: its libp2p peer id and listen addresses.
    pub fn peer_info(&self) -> PathBuf {
        self.root.join("peer.json")
    }
    pub fn store(&self) -> PathBuf {
        self.root.join("store")
    }
}

/// Why a configuration could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid node configuration: {detail}")]
    Parse { path: PathBuf, detail: String },
}

impl Config {
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("a Config always serializes to TOML")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_fills_defaults() {
        let c: Config =
            toml::from_str("unit = \"tiedong/jiefang\"\n[network]\nmdns = false\n").unwrap();
        assert!(!c.network.mdns);
        assert_eq!(c.sync, Sync::default());
        let back: Config = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn example_configs_parse() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config");
        for name in ["community.toml", "street.toml", "district.toml"] {
            let c = Config::load(&dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(c.unit.depth() >= 1, "{name}");
            for a in c.network.listen.iter().chain(&c.network.bootstrap) {
                assert!(
                    a.parse::<libp2p::Multiaddr>().is_ok(),
                    "{name}: {a} is not a multiaddr"
                );
            }
        }
    }

    #[test]
    fn unknown_keys_are_named() {
        let err =
            toml::from_str::<Config>("unit = \"tiedong\"\n[sync]\nintervall = 3\n").unwrap_err();
        assert!(err.to_string().contains("intervall"), "{err}");
    }
}
