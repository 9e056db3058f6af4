//! Many nodes in one process over libp2p's memory transport: a 13-node hierarchy (1 district,
//! 3 streets, 9 communities) converges after edits everywhere, holds nothing outside scope, and
//! heals after a partition.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use libp2p::{Multiaddr, PeerId};
use linli_crdt_model::cert::Role;
use linli_crdt_model::doc::DocId;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_node::config::Config;
use linli_node::contract::{CreateDoc, Op};
use linli_node::engine::Engine;
use linli_node::net::Transports;
use linli_node::run::{self, Options, Running};
use linli_node::setup::{self, PlanPerson, PlanUnit};
use linli_node::shared::NetCommand;

static MEMORY_PORT: AtomicU64 = AtomicU64::new(1_000_000);

fn unit(id: &str, kind: UnitKind, name: &str) -> Unit {
    Unit {
        id: UnitId::new(id).unwrap(),
        kind,
        name: name.to_owned(),
    }
}

/// 铁东区 with 3 streets of 3 communities each.
pub fn city() -> Vec<PlanUnit> {
    let worker = |h: &str, n: &str| PlanPerson {
        handle: h.to_owned(),
        holder: n.to_owned(),
        role: Role::Writer,
    };
    let mut plan = vec![PlanUnit {
        unit: unit("tiedong", UnitKind::District, "铁东区"),
        people: vec![
            PlanPerson {
                handle: "reviewer".into(),
                holder: "民政局 刘审".into(),
                role: Role::Reviewer,
            },
            PlanPerson {
                handle: "approver".into(),
                holder: "区政府 陈批".into(),
                role: Role::Approver,
            },
        ],
    }];
    let streets = [
        ("jiefang", "解放街道"),
        ("zhanqian", "站前街道"),
        ("yuanlin", "园林街道"),
    ];
    let communities = ["shengli", "qianjin", "heping"];
    for (s, sname) in streets {
        plan.push(PlanUnit {
            unit: unit(&format!("tiedong/{s}"), UnitKind::Street, sname),
            people: vec![PlanPerson {
                handle: "approver".into(),
                holder: format!("{sname} 备案员"),
                role: Role::Approver,
            }],
        });
        for c in communities {
            plan.push(PlanUnit {
                unit: unit(
                    &format!("tiedong/{s}/{c}"),
                    UnitKind::Community,
                    &format!("{sname}{c}社区"),
                ),
                people: vec![worker("wangfang", "王芳"), worker("liqiang", "李强")],
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

/// Start every provisioned node, each dialing its parent.
async fn start_city(dir: &Path, plan: &[PlanUnit]) -> Vec<Node> {
    let p = setup::provision(
        dir,
        "铁东区邻里网",
        plan,
        config,
        linli_node::clock::now_ms(),
    )
    .unwrap();
    let mut nodes: Vec<Node> = Vec::new();
    let mut addrs: HashMap<UnitId, Multiaddr> = HashMap::new();
    for n in &p.nodes {
        let port = MEMORY_PORT.fetch_add(1, Ordering::Relaxed);
        let listen: Multiaddr = format!("/memory/{port}").parse().unwrap();
        let bootstrap = n
            .unit
            .id
            .parent()
            .and_then(|parent| addrs.get(&parent).cloned())
            .into_iter()
            .collect();
        let engine = Engine::open(&n.dir).unwrap();
        let running = run::start_engine(
            engine,
            Options {
                transports: Transports::Memory,
                listen: Some(vec![listen.clone()]),
                bootstrap,
            },
        )
        .await
        .unwrap();
        let peer: PeerId = n.peer_id.parse().unwrap();
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

/// What one node holds: doc → (unit, scope, heads).
type Holding = BTreeMap<DocId, (UnitId, linli_crdt_model::doc::Scope, Vec<String>)>;

fn holdings(nodes: &[Node]) -> Vec<Holding> {
    nodes
        .iter()
        .map(|n| {
            let mut e = n.engine();
            e.doc_ids()
                .into_iter()
                .map(|id| {
                    let d = e.doc_mut(&id).unwrap();
                    let h = d.header().header.clone();
                    let mut heads: Vec<String> = d.heads().iter().map(|h| h.to_string()).collect();
                    heads.sort();
                    (id, (h.unit, h.scope, heads))
                })
                .collect()
        })
        .collect()
}

/// Differences from convergence: for every document, every node that may hold it must hold it
/// with the same heads as every other.
fn divergence(nodes: &[Node]) -> Vec<String> {
    let held = holdings(nodes);
    let mut all: BTreeMap<DocId, (UnitId, linli_crdt_model::doc::Scope)> = BTreeMap::new();
    for h in &held {
        for (id, (u, s, _)) in h {
            all.insert(*id, (u.clone(), *s));
        }
    }
    let mut out = Vec::new();
    for (id, (owner, scope)) in &all {
        let mut seen: Option<&Vec<String>> = None;
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

fn scope_leaks(nodes: &[Node]) -> Vec<String> {
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

async fn converge(nodes: &[Node], within: Duration) -> Duration {
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

async fn wait_peers(nodes: &[Node], within: Duration) {
    let start = Instant::now();
    loop {
        // Every node but the top is connected to its parent.
        let ok = nodes.iter().all(|n| {
            n.unit.id.parent().is_none_or(|parent| {
                n.running
                    .shared
                    .peers()
                    .iter()
                    .any(|p| p.connected && p.unit.as_deref() == Some(parent.as_str()))
            })
        });
        if ok {
            return;
        }
        assert!(
            start.elapsed() < within,
            "peers did not connect within {within:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn visit_log(e: &mut Engine, month: &str) -> DocId {
    if let Some(id) = e.visit_log(&e.unit().id.clone(), month) {
        return id;
    }
    let name = e.unit().name.clone();
    let id = e
        .create(
            CreateDoc {
                kind: Kind::VisitLog,
                title: format!("{name} {month} 走访记录"),
                scope: None,
                period: Some(month.to_owned()),
                minutes: None,
            },
            None,
        )
        .unwrap();
    for (h, w) in [("h1", "王芳"), ("h2", "王芳"), ("h3", "李强")] {
        let op = Op::VisitAssign {
            household_id: h.to_owned(),
            assignment: kinds::visits::Assignment {
                worker: w.to_owned(),
                household_name: format!("住户{h}"),
                kind: kinds::visits::HouseholdKind::Household,
                grid: None,
                address: "胜利路".to_owned(),
            },
        };
        e.apply(&id, &op, None).unwrap();
    }
    id
}

fn add_visit(e: &mut Engine, doc: &DocId, household: &str, person: &str, worker: &str) {
    let op = Op::VisitAdd {
        id: None,
        household_id: household.to_owned(),
        worker: worker.to_owned(),
        date: "2026-11-05".to_owned(),
        mode: kinds::visits::Mode::Door,
        needs: vec!["需要助餐".to_owned()],
        follow_up: None,
    };
    e.apply(doc, &op, Some(person)).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn city_converges_keeps_scope_and_heals_after_partition() {
    let dir = tempfile::tempdir().unwrap();
    let nodes = start_city(dir.path(), &city()).await;
    wait_peers(&nodes, Duration::from_secs(20)).await;
    let t = converge(&nodes, Duration::from_secs(30)).await;
    eprintln!("initial convergence: {t:?}");

    // Edits everywhere: visit logs at communities, whistles at streets, a request at the district.
    for n in nodes.iter().filter(|n| n.unit.kind == UnitKind::Community) {
        let mut e = n.engine();
        let log = visit_log(&mut e, "2026-11");
        add_visit(&mut e, &log, "h1", "wangfang", "王芳");
        add_visit(&mut e, &log, "h3", "liqiang", "李强");
    }
    for n in nodes.iter().filter(|n| n.unit.kind == UnitKind::Street) {
        let mut e = n.engine();
        let tasks = e.own_doc(Kind::TaskList).unwrap();
        let op = Op::WhistleRaise {
            id: None,
            whistle: kinds::tasks::NewWhistle {
                title: "道路积水".to_owned(),
                description: "雨后积水严重".to_owned(),
                to_unit: "tiedong".to_owned(),
                raised_by: "街道".to_owned(),
            },
        };
        e.apply(&tasks, &op, None).unwrap();
    }
    let started = Instant::now();
    let t = converge(&nodes, Duration::from_secs(30)).await;
    eprintln!("convergence after edits everywhere: {t:?}");
    assert!(scope_leaks(&nodes).is_empty(), "{:?}", scope_leaks(&nodes));
    // A community's visit log reached its street and the district, and no other community.
    let district = &nodes[0];
    let n_logs = {
        let e = district.engine();
        e.doc_ids()
            .iter()
            .filter(|id| e.doc(id).unwrap().kind() == Kind::VisitLog)
            .count()
    };
    assert_eq!(
        n_logs, 9,
        "the district holds all nine communities' visit logs"
    );
    let _ = started;

    // Partition 解放街道 (and so its communities) from the district.
    let street = nodes
        .iter()
        .position(|n| n.unit.id.as_str() == "tiedong/jiefang")
        .unwrap();
    let district_peer = nodes[0].running.peer_id;
    let street_peer = nodes[street].running.peer_id;
    nodes[0]
        .running
        .shared
        .net
        .send(NetCommand::Block(street_peer))
        .await
        .unwrap();
    nodes[street]
        .running
        .shared
        .net
        .send(NetCommand::Block(district_peer))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Edits on both sides of the cut.
    let shengli = nodes
        .iter()
        .find(|n| n.unit.id.as_str() == "tiedong/jiefang/shengli")
        .unwrap();
    {
        let mut e = shengli.engine();
        let log = visit_log(&mut e, "2026-11");
        add_visit(&mut e, &log, "h2", "wangfang", "王芳");
    }
    {
        let mut e = nodes[0].engine();
        let tasks = e.own_doc(Kind::TaskList).unwrap();
        let op = Op::RequestAdd {
            id: Some("r1".to_owned()),
            request: kinds::tasks::Request {
                title: "老旧小区加装电梯意愿摸排".to_owned(),
                department: "区住建局".to_owned(),
                legal_basis: "城市居民委员会组织法".to_owned(),
                funding: "区财政".to_owned(),
                staffing: "住建局派员".to_owned(),
                target_units: vec!["tiedong/jiefang/shengli".to_owned()],
                due: Some("2026-12-31".to_owned()),
                created_at_ms: 0,
            },
        };
        e.apply(&tasks, &op, Some("admin")).unwrap();
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        !divergence(&nodes).is_empty(),
        "a partition should keep the two sides apart"
    );

    // Heal.
    for n in &nodes {
        n.running
            .shared
            .net
            .send(NetCommand::UnblockAll)
            .await
            .unwrap();
    }
    let t = converge(&nodes, Duration::from_secs(30)).await;
    eprintln!("convergence after healing: {t:?}");
    assert!(scope_leaks(&nodes).is_empty());
    for n in &nodes {
        let problems = n.engine().verify();
        assert!(problems.is_empty(), "{}: {problems:?}", n.unit.id);
    }
    for n in nodes {
        n.running.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approved_request_is_admitted_at_the_community_and_audited_upward() {
    let dir = tempfile::tempdir().unwrap();
    let plan: Vec<PlanUnit> = city()
        .into_iter()
        .filter(|p| {
            ["tiedong", "tiedong/jiefang", "tiedong/jiefang/shengli"].contains(&p.unit.id.as_str())
        })
        .collect();
    let nodes = start_city(dir.path(), &plan).await;
    wait_peers(&nodes, Duration::from_secs(20)).await;
    converge(&nodes, Duration::from_secs(30)).await;
    let (district, community) = (&nodes[0], &nodes[2]);
    let tasks = {
        let mut e = district.engine();
        let tasks = e.own_doc(Kind::TaskList).unwrap();
        let op = Op::RequestAdd {
            id: Some("r1".to_owned()),
            request: kinds::tasks::Request {
                title: "老旧小区加装电梯意愿摸排".to_owned(),
                department: "区住建局".to_owned(),
                legal_basis: "城市居民委员会组织法".to_owned(),
                funding: "区财政".to_owned(),
                staffing: "住建局派员".to_owned(),
                target_units: vec!["tiedong/jiefang/shengli".to_owned()],
                due: Some("2026-12-31".to_owned()),
                created_at_ms: 0,
            },
        };
        e.apply(&tasks, &op, Some("admin")).unwrap();
        // Review alone admits nothing.
        e.attest(
            &tasks,
            linli_crdt_model::attest::Statement::Reviewed,
            Some("r1".into()),
            "初审通过".into(),
            Some("reviewer"),
        )
        .unwrap();
        tasks
    };
    converge(&nodes, Duration::from_secs(30)).await;
    let admitted = |n: &Node| {
        let e = n.engine();
        let mine = e.own_doc(Kind::TaskList).unwrap();
        kinds::tasks::hydrate(e.doc(&mine).unwrap().read())
            .unwrap()
            .tasks
            .values()
            .filter(|t| t.admission.is_some())
            .count()
    };
    assert_eq!(
        admitted(community),
        0,
        "a reviewed but unapproved request must not be admitted"
    );

    district
        .engine()
        .attest(
            &tasks,
            linli_crdt_model::attest::Statement::Approved,
            Some("r1".into()),
            "批准".into(),
            Some("approver"),
        )
        .unwrap();
    let start = Instant::now();
    while admitted(community) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "the approved request never reached the community"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    converge(&nodes, Duration::from_secs(30)).await;
    // The community's task list, with the admitted task, is at the street and the district, and
    // every node verifies it against the district's attestations.
    for n in &nodes {
        let mut e = n.engine();
        assert!(e.verify().is_empty(), "{}: {:?}", n.unit.id, e.verify());
    }
    for n in nodes {
        n.running.stop().await;
    }
}
