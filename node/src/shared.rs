//! What the network loop and the HTTP API share: the engine behind a lock, a bounded channel of
//! commands to the network loop, and a snapshot of the peers.

use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use tokio::sync::mpsc;

use crate::contract::{NetInfo, PeerInfo};
use crate::engine::Engine;

/// Commands the API sends to the network loop.
#[derive(Debug)]
pub enum NetCommand {
    /// Refuse and drop connections to this peer (simulates a partition in the testnet).
    Block(libp2p::PeerId),
    Unblock(libp2p::PeerId),
    /// Unblock every blocked peer.
    UnblockAll,
    /// Run anti-entropy with every peer now.
    SyncNow,
    /// Announce documents changed by a local edit.
    Announce,
}

/// Shared by the network loop and the API.
#[derive(Debug)]
pub struct Shared {
    engine: Mutex<Engine>,
    pub net: mpsc::Sender<NetCommand>,
    pub peers: RwLock<Vec<PeerInfo>>,
    pub info: RwLock<NetInfo>,
    /// The bearer token every API request must carry.
    pub token: String,
}

impl Shared {
    pub fn new(engine: Engine, net: mpsc::Sender<NetCommand>, token: String) -> Arc<Shared> {
        Arc::new(Shared {
            engine: Mutex::new(engine),
            net,
            peers: RwLock::new(Vec::new()),
            info: RwLock::new(NetInfo::default()),
            token,
        })
    }

    /// Lock the engine. A panic while holding the lock must not take the node down with it:
    /// the engine's state is only changed through operations that complete or refuse whole, so
    /// the data behind a poisoned lock is still consistent.
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        self.engine
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn peers(&self) -> Vec<PeerInfo> {
        self.peers.read().map(|p| p.clone()).unwrap_or_default()
    }
}
