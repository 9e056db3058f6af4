//! Two real `linli node run` processes on 127.0.0.1, over TCP and over QUIC: they say hello,
//! and an edit at the street reaches the district.

use std::time::Duration;

use linli_crdt_model::cert::Role;
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_node::config::Config;
use linli_node::contract::{DocFilter, Op};
use linli_node::setup::{self, PlanPerson, PlanUnit};
use linli_tests::{NodeProcess, wait_until};
use serde_json::json;

fn plan() -> Vec<PlanUnit> {
    let u = |id: &str, kind, name: &str| Unit {
        id: UnitId::new(id).unwrap(),
        kind,
        name: name.to_owned(),
    };
    vec![
        PlanUnit {
            unit: u("tiedong", UnitKind::District, "铁东区"),
            people: vec![],
        },
        PlanUnit {
            unit: u("tiedong/jiefang", UnitKind::Street, "解放街道"),
            people: vec![PlanPerson {
                handle: "sunbei".into(),
                holder: "孙备".into(),
                role: Role::Writer,
            }],
        },
    ]
}

fn two_processes(listen: &str) {
    let dir = tempfile::tempdir().unwrap();
    let listen = listen.to_owned();
    let p = setup::provision(
        dir.path(),
        "铁东区邻里网",
        &plan(),
        |u| {
            let mut c = Config::new(u.id.clone());
            c.network.listen = vec![listen.clone()];
            c.network.mdns = false;
            c.network.redial_interval_ms = 300;
            c.sync.anti_entropy_interval_ms = 1_000;
            c
        },
        linli_node::clock::now_ms(),
    )
    .unwrap();
    let district = NodeProcess::start(&p.nodes[0].dir);
    // The street dials the district at whatever port it got.
    let pf = district.peer_file();
    let addr = format!(
        "{}/p2p/{}",
        pf.listen[0].replace("0.0.0.0", "127.0.0.1"),
        pf.peer_id
    );
    let street_config = p.nodes[1].dir.join("config.toml");
    let mut c = Config::load(&street_config).unwrap();
    c.network.bootstrap = vec![addr];
    std::fs::write(&street_config, c.to_toml()).unwrap();
    let street = NodeProcess::start(&p.nodes[1].dir);

    let t = wait_until(
        "the two nodes to say hello",
        Duration::from_secs(30),
        || {
            street
                .api()
                .peers()
                .map(|peers| peers.iter().any(|p| p.unit.as_deref() == Some("tiedong")))
                .unwrap_or(false)
        },
    );
    eprintln!("{listen}: hello after {t:?}");

    let docs = street
        .api()
        .docs(&DocFilter {
            kind: Some("task-list".to_owned()),
            unit: Some("tiedong/jiefang".to_owned()),
            period: None,
        })
        .unwrap();
    let tasks = docs[0].id.clone();
    // The operation as a script would send it, in JSON.
    let op: Op = serde_json::from_value(json!({"op": "whistle-raise", "id": "w1", "whistle": {"title": "道路积水", "description": "雨后积水", "to_unit": "tiedong", "raised_by": "孙备"}})).unwrap();
    street.api().apply(&tasks, &op, Some("sunbei")).unwrap();
    let t = wait_until(
        "the street's whistle to reach the district",
        Duration::from_secs(30),
        || {
            district
                .api()
                .state::<serde_json::Value>(&tasks)
                .map(|s| s["whistles"]["w1"]["title"] == "道路积水")
                .unwrap_or(false)
        },
    );
    eprintln!("{listen}: edit reached the district after {t:?}");
    for n in [&district, &street] {
        let v = n.api().verify().unwrap();
        assert!(v.ok, "{:?}", v.problems);
    }
}

#[test]
fn two_processes_over_tcp() {
    two_processes("/ip4/127.0.0.1/tcp/0");
}

#[test]
fn two_processes_over_quic() {
    two_processes("/ip4/127.0.0.1/udp/0/quic-v1");
}
