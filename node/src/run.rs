//! Starting and stopping a node: engine, swarm, network loop and API, wired together.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use libp2p::{Multiaddr, PeerId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::config::Layout;
use crate::contract::PeerFile;
use crate::engine::{self, Engine};
use crate::keystore::{self, KeyFileError};
use crate::net::{self, Net, Transports};
use crate::shared::Shared;

/// How to start a node.
#[derive(Debug, Clone)]
pub struct Options {
    pub transports: Transports,
    /// Listen here instead of the configured addresses (tests use `/memory/N`).
    pub listen: Option<Vec<Multiaddr>>,
    /// Dial these at start in addition to the configured bootstrap peers.
    pub bootstrap: Vec<Multiaddr>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            transports: Transports::Real,
            listen: None,
            bootstrap: Vec::new(),
        }
    }
}

/// A node running in this process.
#[derive(Debug)]
pub struct Running {
    pub shared: Arc<Shared>,
    pub peer_id: PeerId,
    pub api_addr: SocketAddr,
    pub listen: Vec<Multiaddr>,
    stop: Option<oneshot::Sender<()>>,
    net_task: JoinHandle<()>,
    api_task: JoinHandle<()>,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Engine(#[from] engine::Error),
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error("network: {0}")]
    Net(String),
    #[error("cannot listen for the API on {addr}: {source}")]
    Api {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

/// The API token of a data directory, created (0600) on first start.
pub fn api_token(layout: &Layout) -> Result<String, KeyFileError> {
    let path = layout.api_token();
    if !path.exists() {
        keystore::write_private(&path, hex::encode(keystore::random_seed()).as_bytes())?;
    }
    Ok(keystore::read_private(&path)?.trim().to_owned())
}

/// Open the data directory and start the node.
pub async fn start(data_dir: &Path, opts: Options) -> Result<Running, StartError> {
    let engine = Engine::open(data_dir)?;
    start_engine(engine, opts).await
}

pub async fn start_engine(engine: Engine, opts: Options) -> Result<Running, StartError> {
    let layout = engine.layout().clone();
    let config = engine.config().clone();
    let unit = engine.unit().id.to_string();
    let token = api_token(&layout)?;
    let mut swarm =
        net::swarm(engine.node_key(), &config, opts.transports).map_err(StartError::Net)?;
    let peer_id = *swarm.local_peer_id();
    let listen: Vec<Multiaddr> = match &opts.listen {
        Some(l) => l.clone(),
        None => config
            .network
            .listen
            .iter()
            .map(|a| {
                a.parse()
                    .map_err(|e| StartError::Net(format!("listen address {a:?}: {e}")))
            })
            .collect::<Result<_, _>>()?,
    };
    for addr in &opts.bootstrap {
        if let Err(e) = swarm.dial(addr.clone()) {
            tracing::debug!(%addr, error = %e, "bootstrap dial failed");
        }
    }
    let (tx, rx) = mpsc::channel(256);
    let shared = Shared::new(engine, tx, token);
    let net = Net::new(swarm, shared.clone(), rx, &listen).map_err(StartError::Net)?;
    let listener = tokio::net::TcpListener::bind(config.api.listen)
        .await
        .map_err(|source| StartError::Api {
            addr: config.api.listen,
            source,
        })?;
    let api_addr = listener.local_addr().map_err(|source| StartError::Api {
        addr: config.api.listen,
        source,
    })?;
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (api_stop_tx, api_stop_rx) = oneshot::channel::<()>();
    let net_task = tokio::spawn(async move {
        net.run(async {
            let _ = stop_rx.await;
        })
        .await;
        let _ = api_stop_tx.send(());
    });
    let api_shared = shared.clone();
    let api_task = tokio::spawn(async move {
        let shutdown = async {
            let _ = api_stop_rx.await;
        };
        if let Err(e) = crate::api::serve(api_shared, listener, shutdown).await {
            tracing::error!(error = %e, "API server stopped");
        }
    });
    // Wait briefly for the swarm to report its listen addresses, then publish them.
    let mut listening = Vec::new();
    for _ in 0..100 {
        listening = shared
            .info
            .read()
            .map(|i| i.listen.clone())
            .unwrap_or_default();
        if listening.len() >= listen.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let file = PeerFile {
        peer_id: peer_id.to_string(),
        listen: listening.clone(),
        api: api_addr.to_string(),
        unit,
        pid: std::process::id(),
    };
    write_file(&layout.api_addr(), api_addr.to_string().as_bytes())?;
    write_file(
        &layout.peer_info(),
        serde_json::to_string_pretty(&file)
            .expect("serializes")
            .as_bytes(),
    )?;
    Ok(Running {
        shared,
        peer_id,
        api_addr,
        listen: listening.iter().filter_map(|a| a.parse().ok()).collect(),
        stop: Some(stop_tx),
        net_task,
        api_task,
    })
}

fn write_file(path: &Path, bytes: &[u8]) -> Result<(), StartError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)
        .and_then(|_| std::fs::rename(&tmp, path))
        .map_err(|source| StartError::Write {
            path: path.display().to_string(),
            source,
        })
}

impl Running {
    /// Stop the network loop and the API, flush the store, and remove `api.addr`.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        let _ = (&mut self.net_task).await;
        let _ = (&mut self.api_task).await;
        let engine = self.shared.engine();
        if let Err(e) = engine.store().flush() {
            tracing::error!(error = %e, "flushing the store on shutdown failed");
        }
        let _ = std::fs::remove_file(engine.layout().api_addr());
    }

    /// A multiaddr others can dial to reach this node.
    pub fn dial_addr(&self) -> Option<Multiaddr> {
        self.listen.first().map(|a| {
            a.clone()
                .with(libp2p::multiaddr::Protocol::P2p(self.peer_id))
        })
    }
}
