//! In-process node swarms for tests (feature `testkit`): the cities they provision, a config
//! with quick timers, nodes started on libp2p's memory transport each dialing its parent, and
//! what the tests wait for and check — peers connected, documents held, convergence, scope.
//! Used by `node/tests` and by `linli-bench`; never enabled in the shipped binary.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::MutexGuard;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use automerge::ChangeHash;
use libp2p::multiaddr::Protocol;
use libp2p::{Multiaddr, PeerId};
use linli_crdt_model::cert::Role;
use linli_crdt_model::doc::{DocId, Scope};
use linli_crdt_model::testkit::unit;
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::config::Config;
use crate::engine::Engine;
use crate::net::Transports;
use crate::run::{self, Options, Running};
use crate::setup::{self, PlanPerson, PlanUnit, ProvisionedNode};

/// The network every test city belongs to.
pub const NETWORK_NAME: &str = "铁东区邻里网";

/// How soon a node's HTTP API must answer, whatever a peer does.
pub const API_WITHIN: Duration = Duration::from_secs(1);

pub fn person(handle: &str, holder: &str, role: Role) -> PlanPerson {
    PlanPerson {
        handle: handle.to_owned(),
        holder: holder.to_owned(),
        role,
    }
}

pub fn writer(handle: &str, holder: &str) -> PlanPerson {
    person(handle, holder, Role::Writer)
}

/// 铁东区 → 解放街道 → 胜利社区, with no people: the district first, the community last.
pub fn three_units() -> [PlanUnit; 3] {
    [
        PlanUnit {
            unit: unit("tiedong", UnitKind::District, "铁东区"),
            people: Vec::new(),
        },
        PlanUnit {
            unit: unit("tiedong/jiefang", UnitKind::Street, "解放街道"),
            people: Vec::new(),
        },
        PlanUnit {
            unit: unit("tiedong/jiefang/shengli", UnitKind::Community, "胜利社区"),
            people: Vec::new(),
        },
    ]
}

/// 铁东区 with 3 streets of 3 communities each (13 units, every unit after its parent), each
/// unit with the people `people` gives it.
pub fn city(people: impl Fn(&Unit) -> Vec<PlanPerson>) -> Vec<PlanUnit> {
    let plan_unit = |unit: Unit| PlanUnit {
        people: people(&unit),
        unit,
    };
    let mut plan = vec![plan_unit(unit("tiedong", UnitKind::District, "铁东区"))];
    let streets = [
        ("jiefang", "解放街道"),
        ("zhanqian", "站前街道"),
        ("yuanlin", "园林街道"),
    ];
    for (s, sname) in streets {
        plan.push(plan_unit(unit(
            &format!("tiedong/{s}"),
            UnitKind::Street,
            sname,
        )));
        for c in ["shengli", "qianjin", "heping"] {
            plan.push(plan_unit(unit(
                &format!("tiedong/{s}/{c}"),
                UnitKind::Community,
                &format!("{sname}{c}社区"),
            )));
        }
    }
    plan
}

/// A node of a swarm in one process: no mDNS, redials every 300 ms, anti-entropy every second,
/// no checkpoints.
pub fn config(u: &Unit) -> Config {
    let mut c = Config::new(u.id.clone());
    c.network.mdns = false;
    c.network.redial_interval_ms = 300;
    c.sync.anti_entropy_interval_ms = 1_000;
    c.sync.request_timeout_ms = 5_000;
    c.checkpoint.interval_ms = 0;
    c
}

/// A running node and its unit.
#[derive(Debug)]
pub struct Node {
    pub unit: Unit,
    pub running: Running,
}

impl Node {
    pub fn engine(&self) -> MutexGuard<'_, Engine> {
        self.running.shared.engine()
    }
}

/// A memory address no other node of this process has listened on.
pub fn memory_addr() -> Multiaddr {
    static MEMORY_PORT: AtomicU64 = AtomicU64::new(1_000_000);
    let port = MEMORY_PORT.fetch_add(1, Ordering::Relaxed);
    Multiaddr::empty().with(Protocol::Memory(port))
}

/// Provision `plan` under `dir` (its first unit the top, created now) and start every node.
pub async fn start_city(
    dir: &Path,
    plan: &[PlanUnit],
    config: impl Fn(&Unit) -> Config,
) -> Vec<Node> {
    let p = setup::provision(dir, NETWORK_NAME, plan, config, crate::clock::now_ms())
        .expect("provision the city");
    start(&p.nodes).await
}

/// Start provisioned nodes in order, each on its own memory address and dialing its parent if
/// that was started before it.
pub async fn start<'a>(provisioned: impl IntoIterator<Item = &'a ProvisionedNode>) -> Vec<Node> {
    let mut nodes = Vec::new();
    let mut addrs: HashMap<UnitId, Multiaddr> = HashMap::new();
    for n in provisioned {
        let listen = memory_addr();
        let bootstrap = n
            .unit
            .id
            .parent()
            .and_then(|parent| addrs.get(&parent).cloned())
            .into_iter()
            .collect();
        let running = run::start_engine(
            Engine::open(&n.dir).expect("open a provisioned node"),
            Options {
                transports: Transports::Memory,
                listen: Some(vec![listen.clone()]),
                bootstrap,
            },
        )
        .await
        .expect("start a provisioned node");
        let peer: PeerId = n.peer_id.parse().expect("a provisioned node's peer id");
        addrs.insert(n.unit.id.clone(), listen.with(Protocol::P2p(peer)));
        nodes.push(Node {
            unit: n.unit.clone(),
            running,
        });
    }
    nodes
}

/// Poll `done` every 2 ms until it holds; how long that took. Panics, naming `what`, if it does
/// not hold within `within`.
pub async fn wait(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if done() {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// Every node but the top is connected to its parent, which accepted its hello.
pub fn parents_connected(nodes: &[Node]) -> bool {
    nodes.iter().all(|n| {
        n.unit.id.parent().is_none_or(|parent| {
            n.running
                .shared
                .peers()
                .iter()
                .any(|p| p.connected && p.unit.as_deref() == Some(parent.as_str()))
        })
    })
}

/// The heads of `doc` at `node`, sorted, if it holds the document.
pub fn heads(node: &Running, doc: &DocId) -> Option<Vec<ChangeHash>> {
    let mut e = node.shared.engine();
    let mut heads = e.doc_mut(doc).ok()?.heads();
    heads.sort();
    Some(heads)
}

/// What one node holds: document → (its unit, its scope, its heads sorted).
pub type Holding = BTreeMap<DocId, (UnitId, Scope, Vec<ChangeHash>)>;

pub fn holdings(nodes: &[Node]) -> Vec<Holding> {
    nodes
        .iter()
        .map(|n| {
            let mut e = n.engine();
            e.doc_ids()
                .into_iter()
                .map(|id| {
                    let d = e.doc_mut(&id).expect("a listed document");
                    let h = d.header().header.clone();
                    let mut heads = d.heads();
                    heads.sort();
                    (id, (h.unit, h.scope, heads))
                })
                .collect()
        })
        .collect()
}

/// Differences from convergence: for every document, every node that may hold it must hold it
/// with the same heads as every other.
pub fn divergence(nodes: &[Node]) -> Vec<String> {
    let held = holdings(nodes);
    let mut all: BTreeMap<DocId, (UnitId, Scope)> = BTreeMap::new();
    for h in &held {
        for (id, (u, s, _)) in h {
            all.insert(*id, (u.clone(), *s));
        }
    }
    let mut out = Vec::new();
    for (id, (owner, scope)) in &all {
        let mut seen: Option<&Vec<ChangeHash>> = None;
        for (n, h) in nodes.iter().zip(&held) {
            if !scope.may_hold(owner, &n.unit.id) {
                continue;
            }
            match h.get(id) {
                None => out.push(format!("{} lacks {}", n.unit.id, id.short())),
                Some((_, _, heads)) => match seen {
                    None => seen = Some(heads),
                    Some(s) if s != heads => {
                        out.push(format!("{} differs on {}", n.unit.id, id.short()))
                    }
                    _ => {}
                },
            }
        }
    }
    out
}

pub fn converged(nodes: &[Node]) -> bool {
    divergence(nodes).is_empty()
}

/// Every document a node holds although its scope does not allow it.
pub fn scope_leaks(nodes: &[Node]) -> Vec<String> {
    let held = holdings(nodes);
    let mut out = Vec::new();
    for (n, h) in nodes.iter().zip(&held) {
        for (id, (owner, scope, _)) in h {
            if !scope.may_hold(owner, &n.unit.id) {
                out.push(format!(
                    "{} holds {} of {owner} ({scope:?})",
                    n.unit.id,
                    id.short()
                ));
            }
        }
    }
    out
}

/// Wait, polling every 100 ms, until the nodes converge; how long that took. Panics with the
/// first differences if they have not within `within`.
pub async fn converge(nodes: &[Node], within: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let d = divergence(nodes);
        if d.is_empty() {
            return start.elapsed();
        }
        if start.elapsed() > within {
            panic!(
                "not converged after {within:?}: {} differences, e.g. {:?}",
                d.len(),
                &d[..d.len().min(10)]
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The node's HTTP API (at `addr`, with bearer `token`) answers `GET /v1/status` with 200: how
/// long it took, if it did within [`API_WITHIN`].
pub async fn api_latency(addr: SocketAddr, token: &str) -> Option<Duration> {
    let started = Instant::now();
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!(
            "GET /v1/status HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
        );
        s.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.ok()?;
        Some(answer.starts_with(b"HTTP/1.1 200"))
    };
    match tokio::time::timeout(API_WITHIN, probe).await {
        Ok(Some(true)) => Some(started.elapsed()),
        _ => None,
    }
}
