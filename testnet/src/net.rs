//! Starting, watching, breaking and stopping a testnet: `up`, `status`, `partition`, `heal`,
//! `kill`, `restart` and `down`.
//!
//! `up` starts the hierarchy top down, one level at a time and every node of a level at once:
//! the district first, then the streets dialing the district, then the communities dialing their
//! street — the links a real deployment has, since no node knows a peer it was not told about
//! (mDNS is off). After its first start a node's listen and API ports are written into its
//! `config.toml`, so `restart` brings it back where its children and the load generator expect
//! it. A partition is a set of blocked links, set through the nodes' admin API on both ends and
//! remembered in `testnet.json` so a restarted node gets its blocks back.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use linli_crdt_model::unit::{UnitId, UnitKind};
use linli_node::config::{Config, Layout};
use linli_node::contract::{Accepted, PeerFile};
use linli_node::setup;
use serde::{Deserialize, Serialize};

use crate::client;
use crate::state::{self, Node, State};
use crate::topology::Topology;
use crate::{Error, Event, Progress, check, process};

/// How long a node may take from spawn to answering on its API.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How long `up` and `restart` wait for nodes to be connected to their parents.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(120);
/// How long `up` waits for the nodes' first documents to spread (not an error if they do not).
pub const FIRST_SYNC_TIMEOUT: Duration = Duration::from_secs(60);
/// Nodes asked at once when polling a whole network.
pub const PARALLEL_MAX: usize = 16;

/// The node configuration of a testnet node: loopback only, no mDNS (every link is one the
/// topology made), fast anti-entropy and redial so faults heal in seconds, checkpoints only at
/// the district.
fn config_for(topology: &Topology, unit: &linli_crdt_model::unit::Unit) -> Config {
    let s = topology.node;
    let mut c = Config::new(unit.id.clone());
    c.network.listen = vec!["/ip4/127.0.0.1/tcp/0".to_owned()];
    c.network.mdns = false;
    c.network.redial_interval_ms = s.redial_interval_ms;
    c.sync.anti_entropy_interval_ms = s.anti_entropy_interval_ms;
    c.sync.request_timeout_ms = 5_000;
    c.checkpoint.interval_ms = if unit.kind == UnitKind::District {
        s.district_checkpoint_interval_ms
    } else {
        0
    };
    c
}

/// Provision DIR from a topology and start every node; returns when all are up and each is
/// connected to its parent. On failure the nodes already started are stopped again and DIR is
/// left as it is for inspection.
pub fn up(
    topology: &Topology,
    dir: &Path,
    binary: &Path,
    progress: Progress<'_>,
) -> Result<State, Error> {
    std::fs::create_dir_all(dir).map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    let dir = dir.canonicalize().map_err(|source| Error::Io {
        path: dir.to_owned(),
        source,
    })?;
    if State::path(&dir).exists() {
        return Err(Error::Invalid(format!(
            "{} already holds a testnet; run `linli testnet down --dir {0}` and remove it, or choose another --dir",
            dir.display()
        )));
    }
    let binary = binary.canonicalize().map_err(|source| Error::Io {
        path: binary.to_owned(),
        source,
    })?;
    let plan = topology.plan().map_err(|e| Error::Invalid(e.to_string()))?;
    progress(Event::Begin {
        what: "provisioning",
        total: plan.len() as u64,
    });
    let provisioned = setup::provision(
        &dir,
        &topology.network,
        &plan,
        |u| config_for(topology, u),
        linli_node::clock::now_ms(),
    )?;
    progress(Event::Step(plan.len() as u64));
    progress(Event::End);
    let mut state = State {
        format: state::FORMAT,
        network: topology.network.clone(),
        binary: binary.clone(),
        created_at_ms: linli_node::clock::now_ms(),
        nodes: provisioned
            .nodes
            .iter()
            .map(|n| Node {
                unit: n.unit.id.clone(),
                kind: n.unit.kind,
                name: n.unit.name.clone(),
                data_dir: n.dir.clone(),
                pid: None,
                api: String::new(),
                peer_id: n.peer_id.clone(),
                addr: String::new(),
            })
            .collect(),
        cut: Vec::new(),
    };
    state.save(&dir)?;
    match start_levels(&mut state, &dir, &binary, progress) {
        Ok(()) => Ok(state),
        Err(e) => {
            let procs: Vec<(u32, &Path)> = state
                .nodes
                .iter()
                .filter_map(|n| n.pid.map(|p| (p, n.data_dir.as_path())))
                .collect();
            process::stop_all(&procs);
            Err(e)
        }
    }
}

fn start_levels(
    state: &mut State,
    dir: &Path,
    binary: &Path,
    progress: Progress<'_>,
) -> Result<(), Error> {
    let n = state.nodes.len() as u64;
    progress(Event::Begin {
        what: "starting nodes",
        total: n,
    });
    let depth_max = state
        .nodes
        .iter()
        .map(|n| n.unit.depth())
        .max()
        .unwrap_or(1);
    for depth in 1..=depth_max {
        let level: Vec<usize> = (0..state.nodes.len())
            .filter(|&i| state.nodes[i].unit.depth() == depth)
            .collect();
        for &i in &level {
            let bootstrap = parent_addr(state, &state.nodes[i].unit);
            let node = &mut state.nodes[i];
            set_bootstrap(&node.data_dir, bootstrap)?;
            node.pid = Some(spawn(binary, node)?);
        }
        state.save(dir)?;
        wait_started(state, &level, &mut *progress)?;
        state.save(dir)?;
    }
    progress(Event::End);
    progress(Event::Begin {
        what: "connecting",
        total: n,
    });
    let all: Vec<usize> = (0..state.nodes.len()).collect();
    wait_connected(state, &all, CONNECT_TIMEOUT, &mut *progress)?;
    progress(Event::End);
    // Every node creates its own documents at first start; let them spread before returning,
    // so a `status` right after `up` shows a converged network.
    progress(Event::Begin {
        what: "first sync",
        total: 0,
    });
    let start = Instant::now();
    loop {
        let judged = check::judge(state, &check::holdings(state));
        if judged.divergence.is_empty() {
            break;
        }
        if start.elapsed() > FIRST_SYNC_TIMEOUT {
            let note = format!(
                "not converged after {} s ({} differences); `linli testnet status` shows them",
                FIRST_SYNC_TIMEOUT.as_secs(),
                judged.divergence.len()
            );
            progress(Event::Note(&note));
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    progress(Event::End);
    Ok(())
}

fn parent_addr(state: &State, unit: &UnitId) -> Option<String> {
    let parent = unit.parent()?;
    state
        .nodes
        .iter()
        .find(|n| n.unit == parent)
        .map(|n| n.addr.clone())
        .filter(|a| !a.is_empty())
}

fn set_bootstrap(data_dir: &Path, bootstrap: Option<String>) -> Result<(), Error> {
    let path = Layout::new(data_dir).config();
    let mut c = Config::load(&path).map_err(|e| Error::Invalid(e.to_string()))?;
    c.network.bootstrap = bootstrap.into_iter().collect();
    write_config(&path, &c)
}

fn write_config(path: &Path, c: &Config) -> Result<(), Error> {
    std::fs::write(path, c.to_toml()).map_err(|source| Error::Io {
        path: path.to_owned(),
        source,
    })
}

/// Remove what the last run left (so waiting sees this run's files) and spawn.
fn spawn(binary: &Path, node: &Node) -> Result<u32, Error> {
    let layout = Layout::new(&node.data_dir);
    let _ = std::fs::remove_file(layout.api_addr());
    let _ = std::fs::remove_file(layout.peer_info());
    process::spawn(binary, node.unit.as_str(), &node.data_dir)
}

/// Wait until every node of `which` has written `peer.json` and answers on its API; record its
/// addresses and pin its ports in `config.toml`.
fn wait_started(state: &mut State, which: &[usize], progress: Progress<'_>) -> Result<(), Error> {
    let start = Instant::now();
    let mut pending: Vec<usize> = which.to_vec();
    while !pending.is_empty() {
        let mut still = Vec::new();
        for &i in &pending {
            let node = &state.nodes[i];
            let pid = node.pid.unwrap_or(0);
            if !process::alive(pid, &node.data_dir) {
                return Err(Error::Exited {
                    unit: node.unit.to_string(),
                    log: node.data_dir.join("node.log"),
                    tail: process::log_tail(&node.data_dir, 15),
                });
            }
            match started(&node.data_dir) {
                Some(pf) => {
                    record_started(&mut state.nodes[i], &pf)?;
                    progress(Event::Step(1));
                }
                None => still.push(i),
            }
        }
        pending = still;
        if pending.is_empty() {
            break;
        }
        if start.elapsed() > START_TIMEOUT {
            let units: Vec<String> = pending
                .iter()
                .map(|&i| state.nodes[i].unit.to_string())
                .collect();
            return Err(Error::Timeout {
                what: format!("{} to answer on their API", units.join(", ")),
                secs: START_TIMEOUT.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn started(data_dir: &Path) -> Option<PeerFile> {
    let text = std::fs::read_to_string(Layout::new(data_dir).peer_info()).ok()?;
    let pf: PeerFile = serde_json::from_str(&text).ok()?;
    client::of(data_dir).status().ok()?;
    Some(pf)
}

fn record_started(node: &mut Node, pf: &PeerFile) -> Result<(), Error> {
    let listen = pf
        .listen
        .iter()
        .find(|a| a.contains("/tcp/"))
        .or(pf.listen.first())
        .cloned()
        .ok_or_else(|| {
            Error::Invalid(format!(
                "node {} reports no listen address in its peer.json",
                node.unit
            ))
        })?;
    node.api = pf.api.clone();
    node.peer_id = pf.peer_id.clone();
    node.addr = format!("{listen}/p2p/{}", pf.peer_id);
    // Pin the ports the node got, so a restart comes back on them.
    let path = Layout::new(&node.data_dir).config();
    let mut c = Config::load(&path).map_err(|e| Error::Invalid(e.to_string()))?;
    c.network.listen = vec![listen];
    if let Ok(api) = pf.api.parse() {
        c.api.listen = api;
    }
    write_config(&path, &c)
}

/// Is `node` connected to its parent (true for the top)?
fn connected_to_parent(node: &Node) -> bool {
    let Some(parent) = node.unit.parent() else {
        return true;
    };
    client::of(&node.data_dir)
        .peers()
        .map(|peers| {
            peers
                .iter()
                .any(|p| p.connected && p.unit.as_deref() == Some(parent.as_str()))
        })
        .unwrap_or(false)
}

fn wait_connected(
    state: &State,
    which: &[usize],
    within: Duration,
    progress: Progress<'_>,
) -> Result<(), Error> {
    let start = Instant::now();
    let mut pending: Vec<usize> = which.to_vec();
    loop {
        let nodes: Vec<&Node> = pending.iter().map(|&i| &state.nodes[i]).collect();
        let ok = par_map(&nodes, |n| connected_to_parent(n));
        let mut still = Vec::new();
        for (&i, ok) in pending.iter().zip(ok) {
            if ok {
                progress(Event::Step(1));
            } else {
                still.push(i);
            }
        }
        pending = still;
        if pending.is_empty() {
            return Ok(());
        }
        if start.elapsed() > within {
            let units: Vec<String> = pending
                .iter()
                .map(|&i| state.nodes[i].unit.to_string())
                .collect();
            return Err(Error::Timeout {
                what: format!("{} to connect to their parents", units.join(", ")),
                secs: within.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Map `f` over `items` with up to [`PARALLEL_MAX`] threads, keeping the order.
pub fn par_map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let chunk = items.len().div_ceil(PARALLEL_MAX).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = items
            .chunks(chunk)
            .map(|c| s.spawn(|| c.iter().map(&f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("a status thread does not panic"))
            .collect()
    })
}

// ----- status -----

/// One node as `testnet status` shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct NodeStatus {
    pub unit: String,
    pub kind: UnitKind,
    pub name: String,
    pub up: bool,
    pub pid: Option<u32>,
    pub data_dir: PathBuf,
    pub api: String,
    pub peer_id: String,
    pub peers: usize,
    pub documents: usize,
    pub changes: usize,
    /// A digest of every document's heads: equal digests, equal holdings.
    pub heads_digest: Option<String>,
}

/// `testnet status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    /// Every node is up and every node that may hold a document has the same heads for it.
    pub converged: bool,
    pub nodes: Vec<NodeStatus>,
    /// Links cut by `partition`.
    pub cut: Vec<(String, String)>,
    /// What keeps it from being converged (empty when converged).
    pub differences: Vec<String>,
}

pub fn status(dir: &Path) -> Result<Status, Error> {
    let state = State::load(dir)?;
    let nodes: Vec<NodeStatus> = par_map(&state.nodes, node_status);
    let holdings = check::holdings(&state);
    let judged = check::judge(&state, &holdings);
    let mut differences = judged.divergence;
    differences.extend(judged.leaks);
    Ok(Status {
        converged: differences.is_empty(),
        nodes,
        cut: state.cut.clone(),
        differences,
    })
}

fn node_status(n: &Node) -> NodeStatus {
    let alive = n.pid.is_some_and(|p| process::alive(p, &n.data_dir));
    let view = if alive {
        client::of(&n.data_dir).status().ok()
    } else {
        None
    };
    NodeStatus {
        unit: n.unit.to_string(),
        kind: n.kind,
        name: n.name.clone(),
        up: view.is_some(),
        pid: n.pid.filter(|_| alive),
        data_dir: n.data_dir.clone(),
        api: n.api.clone(),
        peer_id: n.peer_id.clone(),
        peers: view.as_ref().map_or(0, |v| v.peers),
        documents: view.as_ref().map_or(0, |v| v.status.documents),
        changes: view.as_ref().map_or(0, |v| v.status.changes),
        heads_digest: view.map(|v| v.status.heads_digest),
    }
}

// ----- faults -----

/// What `partition` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PartitionReport {
    /// Links cut now (unit pairs).
    pub cut: Vec<(String, String)>,
    /// Nodes that did not answer; their blocks are applied when they restart.
    pub unreachable: Vec<String>,
}

/// Cut the links between every unit of `units` and every unit of `from` (default: every other
/// unit), on both ends.
pub fn partition(dir: &Path, units: &[String], from: &[String]) -> Result<PartitionReport, Error> {
    let mut state = State::load(dir)?;
    if units.is_empty() {
        return Err(Error::Invalid(
            "name at least one unit to cut off".to_owned(),
        ));
    }
    for u in units.iter().chain(from) {
        state.node(u)?;
    }
    let others: Vec<String> = if from.is_empty() {
        state
            .nodes
            .iter()
            .map(|n| n.unit.to_string())
            .filter(|u| !units.contains(u))
            .collect()
    } else {
        from.to_vec()
    };
    let mut pairs = Vec::new();
    for a in units {
        for b in &others {
            if a != b {
                let pair = if a < b {
                    (a.clone(), b.clone())
                } else {
                    (b.clone(), a.clone())
                };
                if !pairs.contains(&pair) {
                    pairs.push(pair);
                }
            }
        }
    }
    let mut unreachable = Vec::new();
    for (a, b) in &pairs {
        for (here, there) in [(a, b), (b, a)] {
            let peer = state.node(there)?.peer_id.clone();
            if block(state.node(here)?, &peer).is_err() && !unreachable.contains(here) {
                unreachable.push(here.clone());
            }
        }
        if !state.cut.contains(&(a.clone(), b.clone())) {
            state.cut.push((a.clone(), b.clone()));
        }
    }
    state.save(dir)?;
    Ok(PartitionReport {
        cut: pairs,
        unreachable,
    })
}

fn block(node: &Node, peer: &str) -> Result<Accepted, crate::client::ApiError> {
    client::of(&node.data_dir).block(peer)
}

/// What `heal` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HealReport {
    pub restored: Vec<(String, String)>,
    pub unreachable: Vec<String>,
}

/// Unblock every link on every node and ask each to sync now.
pub fn heal(dir: &Path) -> Result<HealReport, Error> {
    let mut state = State::load(dir)?;
    let results = par_map(&state.nodes, |n| {
        let c = client::of(&n.data_dir);
        c.unblock_all().and_then(|_| c.sync_now()).is_ok()
    });
    let unreachable = state
        .nodes
        .iter()
        .zip(results)
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| n.unit.to_string())
        .collect();
    let restored = std::mem::take(&mut state.cut);
    state.save(dir)?;
    Ok(HealReport {
        restored,
        unreachable,
    })
}

/// SIGKILL one node, as a crash. Returns its pid.
pub fn kill(dir: &Path, unit: &str) -> Result<Option<u32>, Error> {
    let state = State::load(dir)?;
    let node = state.node(unit)?;
    Ok(node.pid.filter(|&p| process::kill9(p, &node.data_dir)))
}

/// What `restart` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Restarted {
    pub unit: String,
    pub pid: u32,
    /// The node was still running and was stopped first (SIGTERM).
    pub was_running: bool,
    pub connected_after_ms: u64,
}

/// Stop the node if it runs, start it again on its ports, re-apply the blocks of the links cut
/// to it, and wait until it is connected to its parent (unless that link is cut).
pub fn restart(dir: &Path, unit: &str, binary: Option<&Path>) -> Result<Restarted, Error> {
    let mut state = State::load(dir)?;
    let binary: PathBuf = binary.map_or_else(|| state.binary.clone(), Path::to_owned);
    let i = state
        .nodes
        .iter()
        .position(|n| n.unit.as_str() == unit)
        .ok_or_else(|| Error::UnknownUnit(unit.to_owned()))?;
    let was_running = {
        let n = &state.nodes[i];
        match n.pid {
            Some(p) if process::alive(p, &n.data_dir) => {
                process::stop_all(&[(p, n.data_dir.as_path())]);
                true
            }
            _ => false,
        }
    };
    let start = Instant::now();
    let pid = spawn(&binary, &state.nodes[i])?;
    state.nodes[i].pid = Some(pid);
    state.save(dir)?;
    wait_started(&mut state, &[i], &mut |_| {})?;
    state.save(dir)?;
    let mut parent_cut = false;
    let parent = state.nodes[i].unit.parent().map(|p| p.to_string());
    for (a, b) in state.cut.clone() {
        let other = if a == unit {
            b
        } else if b == unit {
            a
        } else {
            continue;
        };
        if Some(&other) == parent.as_ref() {
            parent_cut = true;
        }
        let peer = state.node(&other)?.peer_id.clone();
        block(&state.nodes[i], &peer).map_err(|source| Error::Api {
            unit: unit.to_owned(),
            source,
        })?;
        let me = state.nodes[i].peer_id.clone();
        let _ = block(state.node(&other)?, &me);
    }
    if !parent_cut {
        wait_connected(&state, &[i], CONNECT_TIMEOUT, &mut |_| {})?;
    }
    Ok(Restarted {
        unit: unit.to_owned(),
        pid,
        was_running,
        connected_after_ms: start.elapsed().as_millis() as u64,
    })
}

/// What `down` did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DownReport {
    /// Nodes that were running and were stopped.
    pub stopped: Vec<String>,
    /// Of those, the ones that ignored SIGTERM and needed SIGKILL.
    pub killed: Vec<String>,
    pub dir: PathBuf,
}

/// Stop every node (SIGTERM, then SIGKILL after [`process::TERM_GRACE`]); DIR stays.
pub fn down(dir: &Path) -> Result<DownReport, Error> {
    let mut state = State::load(dir)?;
    let running: Vec<(u32, &Path, String)> = state
        .nodes
        .iter()
        .filter_map(|n| {
            n.pid
                .filter(|&p| process::alive(p, &n.data_dir))
                .map(|p| (p, n.data_dir.as_path(), n.unit.to_string()))
        })
        .collect();
    let procs: Vec<(u32, &Path)> = running.iter().map(|(p, d, _)| (*p, *d)).collect();
    let killed_pids = process::stop_all(&procs);
    let stopped: Vec<String> = running.iter().map(|(_, _, u)| u.clone()).collect();
    let killed = running
        .iter()
        .filter(|(p, _, _)| killed_pids.contains(p))
        .map(|(_, _, u)| u.clone())
        .collect();
    for n in &mut state.nodes {
        n.pid = None;
    }
    state.save(dir)?;
    Ok(DownReport {
        stopped,
        killed,
        dir: dir.to_owned(),
    })
}
