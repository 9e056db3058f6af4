//! Many nodes in one process over libp2p's memory transport: a 13-node hierarchy (1 district,
//! 3 streets, 9 communities) converges after edits everywhere, holds nothing outside scope, and
//! heals after a partition.

use std::time::{Duration, Instant};

use linli_crdt_model::cert::Role;
use linli_crdt_model::doc::DocId;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::unit::UnitKind;
use linli_node::contract::{CreateDoc, Op};
use linli_node::engine::Engine;
use linli_node::setup::PlanUnit;
use linli_node::shared::NetCommand;
use linli_node::testkit::{
    self, Node, config, converge, divergence, parents_connected, person, scope_leaks, start_city,
    wait, writer,
};

/// 铁东区 with 3 streets of 3 communities each: a reviewer and an approver at the district, an
/// approver at each street, two workers at each community.
fn city() -> Vec<PlanUnit> {
    testkit::city(|u| match u.kind {
        UnitKind::District => vec![
            person("reviewer", "民政局 刘审", Role::Reviewer),
            person("approver", "区政府 陈批", Role::Approver),
        ],
        UnitKind::Street => vec![person(
            "approver",
            &format!("{} 备案员", u.name),
            Role::Approver,
        )],
        _ => vec![writer("wangfang", "王芳"), writer("liqiang", "李强")],
    })
}

async fn wait_peers(nodes: &[Node], within: Duration) {
    wait("peers connected to their parents", within, || {
        parents_connected(nodes)
    })
    .await;
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
    let nodes = start_city(dir.path(), &city(), config).await;
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
    let nodes = start_city(dir.path(), &plan, config).await;
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
