//! R4: heal time on the 13-node city (1 district, 3 streets, 9 communities) against its lower
//! bound, in one process over libp2p's memory transport.
//!
//! The city, its nodes and the convergence checks are `linli_node::testkit`'s, which
//! `node/tests/network.rs` uses too. The lower bound is hops × one hop: a hop is measured in the
//! same run as the time a visit recorded at 胜利社区 takes to reach its street while everything
//! is connected (gossipsub announcement, then the sync session's request/response round trips),
//! which is the fastest the protocol moves a change one level.

use std::time::{Duration, Instant};

use linli_crdt_model::doc::DocId;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::unit::UnitKind;
use linli_node::contract::{CreateDoc, Op};
use linli_node::engine::Engine;
use linli_node::setup::PlanUnit;
use linli_node::shared::NetCommand;
use linli_node::testkit::{
    self, config, converged, heads, parents_connected, start_city, wait, writer,
};

/// 铁东区 with 3 streets of 3 communities each, a worker at each community.
fn city_plan() -> Vec<PlanUnit> {
    testkit::city(|u| {
        if u.kind == UnitKind::Community {
            vec![writer("wangfang", "王芳")]
        } else {
            Vec::new()
        }
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
        let nodes = start_city(dir.path(), &city_plan(), config).await;
        wait("peers", Duration::from_secs(30), || {
            parents_connected(&nodes)
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
                let mut h = e.doc_mut(&log).expect("held").heads();
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
                heads(&nodes[street].running, &log).as_ref() == Some(&want)
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
                if reconnect.is_none() && parents_connected(&nodes) {
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
