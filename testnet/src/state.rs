//! `DIR/testnet.json`: what one `linli testnet` command leaves for the next — every node's unit,
//! data directory, pid, API address and peer id, and the links cut by `partition` — so the
//! commands can be separate processes and `up` can return while the nodes keep running.
//!
//! Written whole to a temporary file and renamed, so a reader never sees half a file.

use std::path::{Path, PathBuf};

use linli_crdt_model::unit::{UnitId, UnitKind};
use serde::{Deserialize, Serialize};

use crate::Error;

/// The state file's name inside DIR.
pub const FILE: &str = "testnet.json";
/// The load log's name inside DIR.
pub const ACKED_FILE: &str = "acked.jsonl";
/// Bumped when the shape changes.
pub const FORMAT: u32 = 1;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub format: u32,
    pub network: String,
    /// The `linli` binary that runs the nodes.
    pub binary: PathBuf,
    pub created_at_ms: i64,
    pub nodes: Vec<Node>,
    /// Links cut by `partition`, each pair once (`a < b`); `heal` clears them.
    #[serde(default)]
    pub cut: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub unit: UnitId,
    pub kind: UnitKind,
    pub name: String,
    pub data_dir: PathBuf,
    /// The process last started; it may have exited since.
    pub pid: Option<u32>,
    /// `127.0.0.1:port` of its API.
    pub api: String,
    pub peer_id: String,
    /// The multiaddr its children dial (`/ip4/127.0.0.1/tcp/N/p2p/<peer id>`).
    pub addr: String,
}

impl State {
    pub fn path(dir: &Path) -> PathBuf {
        dir.join(FILE)
    }

    pub fn load(dir: &Path) -> Result<State, Error> {
        let path = State::path(dir);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::State {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        let state: State = serde_json::from_str(&text).map_err(|e| Error::State {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if state.format != FORMAT {
            return Err(Error::State {
                path,
                detail: format!("format {} (this linli reads {FORMAT})", state.format),
            });
        }
        Ok(state)
    }

    pub fn save(&self, dir: &Path) -> Result<(), Error> {
        let path = State::path(dir);
        let tmp = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(self).expect("a State always serializes");
        std::fs::write(&tmp, text)
            .and_then(|_| std::fs::rename(&tmp, &path))
            .map_err(|source| Error::Io { path, source })
    }

    pub fn node(&self, unit: &str) -> Result<&Node, Error> {
        self.nodes
            .iter()
            .find(|n| n.unit.as_str() == unit)
            .ok_or_else(|| Error::UnknownUnit(unit.to_owned()))
    }

    pub fn node_mut(&mut self, unit: &str) -> Result<&mut Node, Error> {
        self.nodes
            .iter_mut()
            .find(|n| n.unit.as_str() == unit)
            .ok_or_else(|| Error::UnknownUnit(unit.to_owned()))
    }
}
