//! R4: heal time on the 13-node city (1 district, 3 streets, 9 communities) against its lower
//! bound, in one process over libp2p's memory transport.
//!
//! The helpers are copied from `node/tests/network.rs` (test files are not importable). The
//! lower bound is hops × one hop: a hop is measured in the same run as the time a visit recorded
//! at 胜利社区 takes to reach its street while everything is connected (gossipsub announcement,
//! then the sync session's request/response round trips), which is the fastest the protocol moves
//! a change one level.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use linli_crdt_model::cert::Role;
use linli_crdt_model::doc::{DocId, Scope};
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_node::config::Config;
use linli_node::contract::{CreateDoc, Op};
use linli_node::engine::Engine;
use linli_node::net::Transports;
use linli_node::run::{self, Options, Running};
use linli_node::setup::{self, PlanPerson, PlanUnit};
use linli_node::shared::NetCommand;

static MEMORY_PORT: AtomicU64 = AtomicU64::new(2_000_000);

fn unit(id: &str, kind: UnitKind, name: &str) -> Unit {
    Unit {
        id: UnitId::new(id).expect("static unit id"),
        kind,
        name: name.to_owned(),
    }
}

/// 铁东区 with 3 streets of 3 communities each.
fn city_plan() -> Vec<PlanUnit> {
    let worker = |h: &str, n: &str| PlanPerson {
        handle: h.to_owned(),
        holder: n.to_owned(),
        role: Role::Writer,
    };
    let mut plan = vec![PlanUnit {
        unit: unit("tiedong", UnitKind::District, "铁东区"),
        people: vec![],
    }];
    for (s, sname) in [
        ("jiefang", "解放街道"),
        ("zhanqian", "站前街道"),
        ("yuanlin", "园林街道"),
    ] {
        plan.push(PlanUnit {
            unit: unit(&format!("tiedong/{s}"), UnitKind::Street, sname),
            people: vec![],
        });
        for c in ["shengli", "qianjin", "heping"] {
            plan.push(PlanUnit {
                unit: unit(
                    &format!("tiedong/{s}/{c}"),
                    UnitKind::Community,
                    &format!("{sname}{c}社区"),
                ),
                people: vec![worker("wangfang", "王芳")],
            });
        }
    }
    plan
}

fn config(u: &Unit) -> Config {
    let mut c = Config::new(u.id.clone());
    c.network.mdns = false;
    c.network.redial_interval_ms = 300;
    c.sync.anti_entropy_interval_ms = 1_000;
    c.sync.request_timeout_ms = 5_000;
    c.checkpoint.interval_ms = 0;
    c
}

struct Node {
    unit: Unit,
    running: Running,
}

impl Node {
    fn engine(&self) -> std::sync::MutexGuard<'_, Engine> {
        self.running.shared.engine()
    }
}

async fn start_city(dir: &Path) -> Vec<Node> {
    let p = setup::provision(
        dir,
        "铁东区邻里网",
        &city_plan(),
        config,
        linli_node::clock::now_ms(),
    )
    .expect("provision the city");
    let mut nodes = Vec::new();
    let mut addrs: HashMap<UnitId, Multiaddr> = HashMap::new();
    for n in &p.nodes {
        let port = MEMORY_PORT.fetch_add(1, Ordering::Relaxed);
        let listen: Multiaddr = format!("/memory/{port}").parse().expect("memory address");
        let bootstrap = n
            .unit
            .id
            .parent()
            .and_then(|parent| addrs.get(&parent).cloned())
            .into_iter()
            .collect();
        let engine = Engine::open(&n.dir).expect("open provisioned node");
        let running = run::start_engine(
            engine,
            Options {
                transports: Transports::Memory,
                listen: Some(vec![listen.clone()]),
                bootstrap,
            },
        )
        .await
        .expect("start node");
        let peer: PeerId = n.peer_id.parse().expect("peer id");
        addrs.insert(
            n.unit.id.clone(),
            listen.with(libp2p::multiaddr::Protocol::P2p(peer)),
        );
        nodes.push(Node {
            unit: n.unit.clone(),
            running,
        });
    }
    nodes
}

type Holding = BTreeMap<DocId, (UnitId, Scope, Vec<String>)>;

fn holdings(nodes: &[Node]) -> Vec<Holding> {
    nodes
        .iter()
        .map(|n| {
            let mut e = n.engine();
            e.doc_ids()
                .into_iter()
                .map(|id| {
                    let d = e.doc_mut(&id).expect("listed");
                    let h = d.header().header.clone();
                    let mut heads: Vec<String> = d.heads().iter().map(|h| h.to_string()).collect();
                    heads.sort();
                    (id, (h.unit, h.scope, heads))
                })
                .collect()
        })
        .collect()
}

/// Whether every node that may hold a document holds it with the same heads as every other.
fn converged(nodes: &[Node]) -> bool {
    let held = holdings(nodes);
    let mut all: BTreeMap<DocId, (UnitId, Scope)> = BTreeMap::new();
    for h in &held {
        for (id, (u, s, _)) in h {
            all.insert(*id, (u.clone(), *s));
        }
    }
    for (id, (owner, scope)) in &all {
        let mut seen: Option<&Vec<String>> = None;
        for (n, h) in nodes.iter().zip(&held) {
            if !scope.may_hold(owner, &n.unit.id) {
                continue;
            }
            match (h.get(id), seen) {
                (None, _) => return false,
                (Some((_, _, heads)), None) => seen = Some(heads),
                (Some((_, _, heads)), Some(s)) if s != heads => return false,
                _ => {}
            }
        }
    }
    true
}

async fn wait(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if done() {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "{what}: not within {within:?}");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

fn parent_connected(nodes: &[Node]) -> bool {
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

fn visit_log(e: &mut Engine) -> DocId {
    if let Some(id) = e.visit_log(&e.unit().id.clone(), "2026-11") {
        return id;
    }
    let name = e.unit().name.clone();
    let id = e
        .create(
            CreateDoc {
                kind: Kind::VisitLog,
                title: format!("{name} 2026-11 走访记录"),
                scope: None,
                period: Some("2026-11".to_owned()),
                minutes: None,
            },
            None,
        )
        .expect("create visit log");
    let op = Op::VisitAssign {
        household_id: "h1".to_owned(),
        assignment: kinds::visits::Assignment {
            worker: "王芳".to_owned(),
            household_name: "住户h1".to_owned(),
            kind: kinds::visits::HouseholdKind::Household,
            grid: None,
            address: "胜利路".to_owned(),
        },
    };
    e.apply(&id, &op, None).expect("assign");
    id
}

fn add_visit(e: &mut Engine, doc: &DocId) {
    let op = Op::VisitAdd {
        id: None,
        household_id: "h1".to_owned(),
        worker: "王芳".to_owned(),
        date: "2026-11-05".to_owned(),
        mode: kinds::visits::Mode::Door,
        needs: vec!["需要助餐".to_owned()],
        follow_up: None,
    };
    e.apply(doc, &op, Some("wangfang")).expect("visit");
}

fn heads(n: &Node, doc: &DocId) -> Option<Vec<String>> {
    let mut e = n.engine();
    let d = e.doc_mut(doc).ok()?;
    let mut h: Vec<String> = d.heads().iter().map(|h| h.to_string()).collect();
    h.sort();
    Some(h)
}

/// One repetition's measurements, seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rep {
    /// A visit at 胜利社区 reaching 解放街道, connected.
    pub(crate) hop: f64,
    /// From healing the cut to every node converged.
    pub(crate) heal: f64,
    /// From healing the cut to the street's connection to the district back.
    pub(crate) reconnect: f64,
}

/// Hops the longest change must travel after healing: district → street → community.
pub(crate) const HEAL_HOPS: f64 = 2.0;

pub(crate) fn run(reps: usize) -> Vec<Rep> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async move {
        let dir = tempfile::tempdir().expect("temp dir");
        let nodes = start_city(dir.path()).await;
        wait("peers", Duration::from_secs(30), || {
            parent_connected(&nodes)
        })
        .await;
        for n in nodes.iter().filter(|n| n.unit.kind == UnitKind::Community) {
            let mut e = n.engine();
            let log = visit_log(&mut e);
            add_visit(&mut e, &log);
        }
        for n in &nodes {
            let _ = n.running.shared.net.send(NetCommand::Announce).await;
        }
        wait("initial convergence", Duration::from_secs(60), || {
            converged(&nodes)
        })
        .await;
        let find = |id: &str| {
            nodes
                .iter()
                .position(|n| n.unit.id.as_str() == id)
                .expect("unit in the plan")
        };
        let (district, street, shengli) = (
            find("tiedong"),
            find("tiedong/jiefang"),
            find("tiedong/jiefang/shengli"),
        );
        let log = visit_log(&mut nodes[shengli].engine());
        let mut out = Vec::new();
        for rep in 0..reps {
            // One hop, connected.
            let start = Instant::now();
            let want = {
                let mut e = nodes[shengli].engine();
                add_visit(&mut e, &log);
                let mut h: Vec<String> = e
                    .doc_mut(&log)
                    .expect("held")
                    .heads()
                    .iter()
                    .map(|h| h.to_string())
                    .collect();
                h.sort();
                h
            };
            let _ = nodes[shengli]
                .running
                .shared
                .net
                .send(NetCommand::Announce)
                .await;
            wait("one hop", Duration::from_secs(30), || {
                heads(&nodes[street], &log).as_ref() == Some(&want)
            })
            .await;
            let hop = start.elapsed().as_secs_f64();
            wait("settle", Duration::from_secs(30), || converged(&nodes)).await;

            // Cut 解放街道 from the district, write on both sides, heal.
            let (dp, sp) = (
                nodes[district].running.peer_id,
                nodes[street].running.peer_id,
            );
            let net = |i: usize| nodes[i].running.shared.net.clone();
            net(district)
                .send(NetCommand::Block(sp))
                .await
                .expect("net loop");
            net(street)
                .send(NetCommand::Block(dp))
                .await
                .expect("net loop");
            tokio::time::sleep(Duration::from_millis(300)).await;
            add_visit(&mut nodes[shengli].engine(), &log);
            {
                let mut e = nodes[district].engine();
                let tasks = e.own_doc(Kind::TaskList).expect("district task list");
                let op = Op::WhistleRaise {
                    id: Some(format!("w{rep}")),
                    whistle: kinds::tasks::NewWhistle {
                        title: "道路积水".to_owned(),
                        description: "雨后积水严重".to_owned(),
                        to_unit: "tiedong".to_owned(),
                        raised_by: "区".to_owned(),
                    },
                };
                e.apply(&tasks, &op, None).expect("district edit");
            }
            for n in &nodes {
                let _ = n.running.shared.net.send(NetCommand::Announce).await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            assert!(!converged(&nodes), "the cut keeps the sides apart");
            let start = Instant::now();
            for n in &nodes {
                n.running
                    .shared
                    .net
                    .send(NetCommand::UnblockAll)
                    .await
                    .expect("net loop");
            }
            let mut reconnect = None;
            wait("heal", Duration::from_secs(60), || {
                if reconnect.is_none() && parent_connected(&nodes) {
                    reconnect = Some(start.elapsed().as_secs_f64());
                }
                converged(&nodes)
            })
            .await;
            let heal = start.elapsed().as_secs_f64();
            out.push(Rep {
                hop,
                heal,
                reconnect: reconnect.unwrap_or(heal),
            });
        }
        for n in nodes {
            n.running.stop().await;
        }
        out
    })
}
