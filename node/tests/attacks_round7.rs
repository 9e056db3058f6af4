//! Round seven: attacks on the engine split, admission as `attest::admissible` driven by the
//! engine, and the typed client (commits since 29cf40e). Engines of one provisioned city are
//! pumped in memory (`common/pair.rs`); every key below the district is the attacker's. Each
//! test asserts the secure behaviour: a failing test is a break.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use automerge::transaction::Transactable;
use automerge::{ROOT, ReadDoc};
use linli_crdt_model::attest::Statement;
use linli_crdt_model::cert::Role;
use linli_crdt_model::doc::DocId;
use linli_crdt_model::document::Context;
use linli_crdt_model::keys::SecretKey;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_node::client::Client;
use linli_node::clock::now_ms;
use linli_node::config::{Config, Layout};
use linli_node::contract::Op;
use linli_node::keystore;
use linli_node::setup::{self, PlanPerson, PlanUnit};
use pair::{Node, greet, settle};

#[allow(dead_code, reason = "this file uses only part of the harness")]
#[path = "common/pair.rs"]
mod pair;

const DAY: i64 = 24 * 60 * 60 * 1000;
const DISTRICT: &str = "tiedong";
const STREET: &str = "tiedong/jiefang";
const SHENGLI: &str = "tiedong/jiefang/shengli";
const QIANJIN: &str = "tiedong/jiefang/qianjin";

fn unit(id: &str, kind: UnitKind, name: &str) -> Unit {
    Unit {
        id: UnitId::new(id).unwrap(),
        kind,
        name: name.to_owned(),
    }
}

fn person(handle: &str, holder: &str, role: Role) -> PlanPerson {
    PlanPerson {
        handle: handle.to_owned(),
        holder: holder.to_owned(),
        role,
    }
}

fn plan() -> Vec<PlanUnit> {
    vec![
        PlanUnit {
            unit: unit(DISTRICT, UnitKind::District, "铁东区"),
            people: vec![
                person("reviewer", "民政局 刘审", Role::Reviewer),
                person("approver", "区政府 陈批", Role::Approver),
            ],
        },
        PlanUnit {
            unit: unit(STREET, UnitKind::Street, "解放街道"),
            people: Vec::new(),
        },
        PlanUnit {
            unit: unit(SHENGLI, UnitKind::Community, "胜利社区"),
            people: Vec::new(),
        },
        PlanUnit {
            unit: unit(QIANJIN, UnitKind::Community, "前进社区"),
            people: Vec::new(),
        },
    ]
}

fn config(u: &Unit) -> Config {
    let mut c = Config::new(u.id.clone());
    c.network.mdns = false;
    c.checkpoint.interval_ms = 0;
    c
}

fn key_of(dir: &Path, handle: &str) -> SecretKey {
    keystore::read_key(&Layout::new(dir).people().join(format!("{handle}.key"))).unwrap()
}

struct City {
    _dir: tempfile::TempDir,
    district: Node,
    street: Node,
    shengli: Node,
    qianjin: Node,
    street_admin: SecretKey,
}

fn city() -> City {
    let dir = tempfile::tempdir().unwrap();
    let p = setup::provision(
        dir.path(),
        "铁东区邻里网",
        &plan(),
        config,
        now_ms() - 7 * DAY,
    )
    .unwrap();
    let by_unit = |id: &str| p.nodes.iter().find(|n| n.unit.id.as_str() == id).unwrap();
    City {
        district: Node::open(by_unit(DISTRICT)),
        street: Node::open(by_unit(STREET)),
        shengli: Node::open(by_unit(SHENGLI)),
        qianjin: Node::open(by_unit(QIANJIN)),
        street_admin: key_of(&by_unit(STREET).dir, "admin"),
        _dir: dir,
    }
}

fn request(title: &str, targets: &[&str]) -> kinds::tasks::Request {
    kinds::tasks::Request {
        title: title.to_owned(),
        department: "区住建局".to_owned(),
        legal_basis: "《城市居民委员会组织法》第三条".to_owned(),
        funding: "区财政".to_owned(),
        staffing: "住建局派员".to_owned(),
        target_units: targets.iter().map(|t| (*t).to_owned()).collect(),
        due: Some("2026-12-31".to_owned()),
        created_at_ms: 0,
    }
}

fn add_request(n: &mut Node, id: &str, req: kinds::tasks::Request) -> DocId {
    let tasks = n.engine.own_doc(Kind::TaskList).unwrap();
    n.engine
        .apply(
            &tasks,
            &Op::RequestAdd {
                id: Some(id.to_owned()),
                request: req,
            },
            Some("admin"),
        )
        .unwrap();
    tasks
}

fn attest(district: &mut Node, doc: &DocId, rid: &str, s: Statement) {
    let person = match s {
        Statement::Approved => "approver",
        _ => "reviewer",
    };
    district
        .engine
        .attest(doc, s, Some(rid.to_owned()), String::new(), Some(person))
        .unwrap();
}

/// The admitted tasks of a community: (task id, request doc, request id, title).
fn admitted(n: &Node) -> Vec<(String, String, String, String)> {
    let mine = n.engine.own_doc(Kind::TaskList).unwrap();
    kinds::tasks::hydrate(n.engine.doc(&mine).unwrap().read())
        .unwrap()
        .tasks
        .into_iter()
        .filter_map(|(id, t)| {
            t.admission
                .map(|a| (id, a.request_doc, a.request_id, t.title.clone()))
        })
        .collect()
}

fn talk(a: &mut Node, b: &mut Node) {
    greet(a, b);
    settle(a, b).unwrap_or_else(|e| panic!("{} and {} refused: {e}", a.unit, b.unit));
}

// ---- admission ----

/// The street (the attacker's) files request r1 in its task list; the district reviews and
/// approves it at the list's heads. Then the street's administrator rewrites the request's
/// title and legal basis, and the rewritten list reaches 胜利社区 with the district's ledger.
/// The community must admit the request the district approved, or nothing; it admits the
/// street's rewrite under the district's approval.
#[test]
#[ignore = "known break, to fix with approvals over exact heads (issue 15): admission takes the request as it is now, not at the heads the district approved"]
fn a_request_rewritten_after_its_approval_is_not_admitted_as_rewritten() {
    let mut c = city();
    let original = "老旧小区加装电梯意愿摸排";
    let street_tasks = add_request(&mut c.street, "r1", request(original, &[SHENGLI]));
    talk(&mut c.street, &mut c.district);
    attest(&mut c.district, &street_tasks, "r1", Statement::Reviewed);
    attest(&mut c.district, &street_tasks, "r1", Statement::Approved);

    // The rewrite, by the street's administrator, on the street's own node.
    {
        let e = &mut c.street.engine;
        let (trust, atts, limits) = (
            e.trust().clone(),
            e.attestations().clone(),
            e.limits().clone(),
        );
        let ctx = Context {
            trust: &trust,
            attestations: &atts,
            limits: &limits,
            now_ms: now_ms(),
        };
        e.doc_mut(&street_tasks)
            .unwrap()
            .edit(&ctx, &c.street_admin, now_ms(), Some("rewrite"), |tx| {
                let (_, requests) = tx.get(ROOT, "requests").unwrap().expect("requests");
                let (_, r1) = tx.get(&requests, "r1").unwrap().expect("r1");
                tx.put(&r1, "title", "全员上门收缴物业费并签署承诺书")
                    .unwrap();
                tx.put(&r1, "legal_basis", "街道通知").unwrap();
                Ok(())
            })
            .expect("a street key writes the street's task list");
    }
    // The rewritten list reaches the community first, then the district's ledger.
    talk(&mut c.street, &mut c.shengli);
    talk(&mut c.district, &mut c.shengli);
    let held = kinds::tasks::hydrate(c.shengli.engine.doc(&street_tasks).unwrap().read()).unwrap();
    assert_ne!(
        held.requests["r1"].title, original,
        "precondition: the rewrite reached 胜利社区"
    );
    let got = admitted(&c.shengli);
    assert!(
        got.iter().all(|(_, _, _, title)| title == original),
        "胜利社区 admitted {got:?}: the street's rewrite of a request, under the district's \
         approval of {original:?}"
    );
}

/// Two nodes of two communities, both targeted by one request, with the same attestations in
/// the end: 胜利社区 hears the district's review and approval before its rejection, 前进社区
/// hears all three at once. Admission must not depend on the order the district's statements
/// arrived in.
#[test]
#[ignore = "known break: a district rejection arriving after the approval does not withdraw the admitted task, so the verdict depends on arrival order"]
fn a_rejection_after_the_approval_leaves_the_verdict_to_arrival_order() {
    let mut c = city();
    let tasks = add_request(
        &mut c.district,
        "r1",
        request("老旧小区加装电梯意愿摸排", &[SHENGLI, QIANJIN]),
    );
    attest(&mut c.district, &tasks, "r1", Statement::Reviewed);
    attest(&mut c.district, &tasks, "r1", Statement::Approved);
    talk(&mut c.district, &mut c.shengli);
    assert_eq!(
        admitted(&c.shengli).len(),
        1,
        "control: the approved request is admitted"
    );
    attest(&mut c.district, &tasks, "r1", Statement::Rejected);
    talk(&mut c.district, &mut c.shengli);
    talk(&mut c.district, &mut c.qianjin);
    let (s, q) = (admitted(&c.shengli), admitted(&c.qianjin));
    assert_eq!(
        s.len(),
        q.len(),
        "same attestations, different verdicts: 胜利社区 (approval first) admitted {s:?}, \
         前进社区 (rejection with it) admitted {q:?}"
    );
}

/// The district approves request r1 of its own list and request r1 of the street's list, both
/// for 胜利社区: two requests, two approvals. Both must be admitted; neither may take the
/// other's place.
#[test]
#[ignore = "known break: the admitted task is named adm-<request id>, so two approved requests with one id in different lists collide"]
fn two_approved_requests_that_share_an_id_are_both_admitted() {
    let mut c = city();
    let street_tasks = add_request(
        &mut c.street,
        "r1",
        request("街道: 消防通道清理", &[SHENGLI]),
    );
    let district_tasks = add_request(
        &mut c.district,
        "r1",
        request("区: 电梯意愿摸排", &[SHENGLI]),
    );
    talk(&mut c.street, &mut c.district);
    for doc in [&street_tasks, &district_tasks] {
        attest(&mut c.district, doc, "r1", Statement::Reviewed);
        attest(&mut c.district, doc, "r1", Statement::Approved);
    }
    talk(&mut c.district, &mut c.shengli);
    let got = admitted(&c.shengli);
    let docs: Vec<&str> = got.iter().map(|(_, d, _, _)| d.as_str()).collect();
    assert!(
        docs.contains(&street_tasks.to_string().as_str())
            && docs.contains(&district_tasks.to_string().as_str()),
        "two approved requests, admitted: {got:?}"
    );
}

// ---- the typed client ----

/// What the client puts on the wire for a document id a person typed: one request to a
/// listener that answers `null`, whose request line is returned.
fn request_line(call: impl FnOnce(&Client)) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut buf = Vec::new();
        let mut chunk = [0u8; 4096];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
            let n = s.read(&mut chunk).unwrap();
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        let _ = s.write_all(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnull",
        );
        let text = String::from_utf8_lossy(&buf).into_owned();
        text.lines().next().unwrap_or_default().to_owned()
    });
    let client = Client::new(&addr.to_string(), "token");
    call(&client);
    server.join().unwrap()
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8()
        .unwrap()
        .into_owned()
}

/// Whatever a person types as a document id or a handle reaches `/v1/docs/{that id}/…` of the
/// route named, with the handle as `as` and nothing else: no `/`, `.`/`..` segment, `?` or `#`
/// in an id, and no `&`, `#` or `=` in a handle, moves the call to another route or person.
#[test]
fn a_typed_id_or_handle_never_reaches_another_route_or_person() {
    let ids = [
        "..",
        ".",
        "../../certs/revoke",
        "%2e%2e",
        "a/b",
        "abc?x=1",
        "abc#frag",
        "%2F",
        "a b",
        "胜利社区",
        "",
        "abc;x",
        "\\..\\",
    ];
    for id in ids {
        let line = request_line(|c| {
            let _ = c.apply(id, &Op::Publish, Some("wang&as=admin#x"));
        });
        let mut parts = line.split(' ');
        assert_eq!(parts.next(), Some("POST"), "{id:?}: {line}");
        let target = parts.next().unwrap_or_default();
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        let segs: Vec<&str> = path.split('/').collect();
        assert_eq!(
            segs.len(),
            5,
            "{id:?}: the path {path:?} has another shape than /v1/docs/{{id}}/ops"
        );
        assert_eq!(&segs[..3], ["", "v1", "docs"], "{id:?}: {path}");
        assert_eq!(segs[4], "ops", "{id:?}: {path}");
        assert_eq!(
            percent_decode(segs[3]),
            id,
            "{id:?}: the id arrives as {:?}",
            segs[3]
        );
        assert!(
            !matches!(segs[3], "." | ".."),
            "{id:?}: a dot segment {path}"
        );
        let pairs: Vec<(String, String)> = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        assert_eq!(
            pairs,
            [("as".to_owned(), "wang&as=admin#x".to_owned())],
            "{id:?}: the handle arrives as {query:?}"
        );
    }
}

/// Once the district's approval of r1 for 胜利社区 is there, the community's administrator (the
/// attacker) adds tasks of its own choosing as "admitted", each naming that one review and
/// approval: work the district never approved enters the community's list as 准入事项, and one
/// approval admits as many tasks as the attacker likes. An admitted task must be the request
/// the approval covers, once.
#[test]
#[ignore = "known break (check_admission): a task naming an approval is not tied to the request, nor limited to one per request"]
fn one_approval_admits_one_task_not_any_task_the_community_names() {
    let mut c = city();
    let original = "老旧小区加装电梯意愿摸排";
    let tasks = add_request(&mut c.district, "r1", request(original, &[SHENGLI]));
    attest(&mut c.district, &tasks, "r1", Statement::Reviewed);
    attest(&mut c.district, &tasks, "r1", Statement::Approved);
    talk(&mut c.district, &mut c.shengli);
    let got = admitted(&c.shengli);
    assert_eq!(
        got.len(),
        1,
        "control: the approved request is admitted: {got:?}"
    );
    let mine = c.shengli.engine.own_doc(Kind::TaskList).unwrap();
    let adm = kinds::tasks::hydrate(c.shengli.engine.doc(&mine).unwrap().read())
        .unwrap()
        .tasks[&got[0].0]
        .admission
        .clone()
        .unwrap();
    let extra = c.shengli.engine.apply(
        &mine,
        &Op::TaskAdd {
            id: Some("extra".to_owned()),
            task: kinds::tasks::NewTask {
                title: "全员上门收缴物业费".to_owned(),
                category: kinds::tasks::Category::Admitted,
                due: None,
                assignee: None,
                note: String::new(),
                admission: Some(adm),
            },
        },
        Some("admin"),
    );
    let got = admitted(&c.shengli);
    assert!(
        extra.is_err(),
        "a second task of the community's own choosing was admitted under the one approval of \
         {original:?}: {got:?}"
    );
}
