//! Round eight: forged authority, out-of-scope reads, malformed and oversized sync messages and
//! floods, by a certified community administrator (a), a worker (b) and a peer with no
//! certificate (c), against engines of one provisioned city pumped in memory. Every test
//! asserts the secure behaviour, and above all that no peer input yields the outer error
//! (`engine::Error`, this node's own failure): a failing test is a break.

use std::path::Path;

use automerge::sync::{ChunkList, Message, MessageVersion};
use automerge::{Change, ChangeHash};
use linli_crdt_model::attest::{Attestation, AttestationBody, Statement};
use linli_crdt_model::cert::Role;
use linli_crdt_model::doc::{DocId, Scope};
use linli_crdt_model::document::{ChangeSignature, Rejected};
use linli_crdt_model::keys::SecretKey;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::sync::Signatures;
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_crdt_model::wire;
use linli_node::clock::now_ms;
use linli_node::config::{Config, Layout};
use linli_node::contract::{CreateDoc, Op};
use linli_node::engine::{Engine, Error, SyncRefused};
use linli_node::keystore;
use linli_node::protocol::{Hello, SyncMessage};
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
            people: vec![person("wangfang", "王芳", Role::Writer)],
        },
        PlanUnit {
            unit: unit(QIANJIN, UnitKind::Community, "前进社区"),
            people: vec![person("zhaomin", "赵敏", Role::Writer)],
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
    shengli: Node,
    qianjin: Node,
    /// (a) 前进社区's administrator, (b) 前进社区's worker, (c) a key nobody certified.
    q_admin: SecretKey,
    q_worker: SecretKey,
    stranger: SecretKey,
    s_admin: SecretKey,
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
        shengli: Node::open(by_unit(SHENGLI)),
        qianjin: Node::open(by_unit(QIANJIN)),
        q_admin: key_of(&by_unit(QIANJIN).dir, "admin"),
        q_worker: key_of(&by_unit(QIANJIN).dir, "zhaomin"),
        s_admin: key_of(&by_unit(SHENGLI).dir, "admin"),
        stranger: keystore::generate_key(),
        _dir: dir,
    }
}

/// The three attackers of this round, by label.
fn attackers(c: &City) -> Vec<(&'static str, SecretKey)> {
    vec![
        ("community admin", c.q_admin.clone()),
        ("worker", c.q_worker.clone()),
        ("uncertified", c.stranger.clone()),
    ]
}

/// The inner verdict of a peer's message; the outer error (this node's own failure) on peer
/// input is a break.
fn inner<T>(what: &str, r: Result<Result<T, SyncRefused>, Error>) -> Result<T, SyncRefused> {
    match r {
        Ok(v) => v,
        Err(e) => panic!("OUTER engine::Error on peer input ({what}): {e:?}"),
    }
}

fn bare(doc: DocId) -> SyncMessage {
    SyncMessage {
        doc,
        header: None,
        message: None,
        signatures: Signatures::default(),
        certificates: Vec::new(),
        registrations: Vec::new(),
        attestations: Vec::new(),
        set_aside: Vec::new(),
    }
}

fn carrying(doc: DocId, items: &[(Change, ChangeSignature)]) -> SyncMessage {
    let message = Message {
        heads: {
            let mut h: Vec<ChangeHash> = items.iter().map(|(c, _)| c.hash()).collect();
            h.sort();
            h.dedup();
            h
        },
        need: Vec::new(),
        have: Vec::new(),
        changes: ChunkList::from(
            items
                .iter()
                .map(|(c, _)| c.raw_bytes().to_vec())
                .collect::<Vec<_>>(),
        ),
        flags: None,
        version: MessageVersion::V1,
    };
    SyncMessage {
        message: Some(wire::encode_sync_message(message).unwrap()),
        signatures: Signatures::pack(items.iter().map(|(_, s)| s.clone())),
        ..bare(doc)
    }
}

/// A change on `doc` as held by `e`, at its heads, by `signer` under its own actor.
fn forged_change(
    e: &mut Engine,
    doc: &DocId,
    signer: &SecretKey,
    key: &str,
) -> (Change, ChangeSignature) {
    let network = e.trust().network();
    let d = e.doc_mut(doc).unwrap();
    let heads = d.heads();
    let mut fork = d.at(&heads).unwrap();
    let mut inc = [0u8; linli_crdt_model::document::ACTOR_INCARNATION_BYTES];
    inc.copy_from_slice(
        &keystore::random_seed()[..linli_crdt_model::document::ACTOR_INCARNATION_BYTES],
    );
    fork.set_actor(linli_crdt_model::document::actor_for(
        &signer.public(),
        &inc,
    ));
    automerge::transaction::Transactable::put(&mut fork, automerge::ROOT, key, "forged").unwrap();
    fork.commit_with(automerge::transaction::CommitOptions::default().with_time(now_ms() - 500));
    let ch = fork.get_last_local_change().unwrap().clone();
    let sig = ChangeSignature::sign(network, *doc, ch.hash(), signer);
    (ch, sig)
}

fn talk(a: &mut Node, b: &mut Node) {
    greet(a, b);
    settle(a, b).unwrap_or_else(|e| panic!("{} and {} refused: {e}", a.unit, b.unit));
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

fn admitted(n: &Node) -> usize {
    let mine = n.engine.own_doc(Kind::TaskList).unwrap();
    kinds::tasks::hydrate(n.engine.doc(&mine).unwrap().read())
        .unwrap()
        .tasks
        .values()
        .filter(|t| t.admission.is_some())
        .count()
}

// ---- forged authority ----

/// Each attacker signs a change to the district's ledger (district authority) and sends it to
/// the district node and to 胜利社区 in a sync message: nothing taken, no outer error.
#[test]
fn forged_changes_to_the_district_ledger_are_never_taken() {
    let mut c = city();
    talk(&mut c.district, &mut c.shengli);
    let ledger = c.district.engine.own_doc(Kind::Ledger).unwrap();
    for (who, key) in attackers(&c) {
        for target in [&mut c.district, &mut c.shengli] {
            let before = target.engine.doc_mut(&ledger).unwrap().heads();
            let item = forged_change(&mut target.engine, &ledger, &key, "authority");
            let msg = carrying(ledger, &[item]);
            let r = inner(
                who,
                target.engine.sync_in(&c.qianjin.name, &c.qianjin.unit, msg),
            );
            if let Ok(s) = &r {
                assert!(
                    !s.set_aside.is_empty(),
                    "{who}: a forged ledger change was taken by {}",
                    target.unit
                );
            }
            assert_eq!(
                target.engine.doc_mut(&ledger).unwrap().heads(),
                before,
                "{who}: the district ledger at {} moved: {r:?}",
                target.unit
            );
        }
    }
}

/// Each attacker issues a review and an approval of the district's request r1 for 胜利社区 and
/// carries them in a message about the district's task list: 胜利社区 must admit nothing and
/// keep no such attestation.
#[test]
fn forged_district_attestations_admit_nothing_and_are_not_kept() {
    let mut c = city();
    let tasks = c.district.engine.own_doc(Kind::TaskList).unwrap();
    c.district
        .engine
        .apply(
            &tasks,
            &Op::RequestAdd {
                id: Some("r1".to_owned()),
                request: request("电梯摸排", &[SHENGLI]),
            },
            Some("admin"),
        )
        .unwrap();
    talk(&mut c.district, &mut c.shengli);
    talk(&mut c.district, &mut c.qianjin);
    assert_eq!(admitted(&c.shengli), 0, "precondition");
    let network = c.shengli.engine.trust().network();
    let mut heads: Vec<[u8; 32]> = c
        .shengli
        .engine
        .doc_mut(&tasks)
        .unwrap()
        .heads()
        .iter()
        .map(|h| h.0)
        .collect();
    heads.sort();
    let mut all = attackers(&c);
    all.push(("shengli's own admin", c.s_admin.clone()));
    for (who, key) in all {
        let att = |s: Statement| {
            Attestation::issue(
                AttestationBody {
                    network,
                    issuer: key.public(),
                    statement: s,
                    doc: tasks,
                    doc_unit: UnitId::new(DISTRICT).unwrap(),
                    heads: heads.clone(),
                    subject: Some("r1".to_owned()),
                    targets: vec![UnitId::new(SHENGLI).unwrap()],
                    at_ms: now_ms() - 100,
                    note: String::new(),
                    checkpoint: Vec::new(),
                },
                &key,
            )
        };
        let (rv, ap) = (att(Statement::Reviewed), att(Statement::Approved));
        let mut msg = bare(tasks);
        msg.attestations = vec![rv.clone(), ap.clone()];
        // With a real change too, so the task list is re-judged.
        let item = forged_change(&mut c.qianjin.engine, &tasks, &key, "x");
        let mut msg2 = carrying(tasks, &[item]);
        msg2.attestations = vec![rv.clone(), ap.clone()];
        for m in [msg, msg2] {
            let _ = inner(
                who,
                c.shengli
                    .engine
                    .sync_in(&c.qianjin.name, &c.qianjin.unit, m),
            );
        }
        assert_eq!(
            admitted(&c.shengli),
            0,
            "{who}: a forged approval admitted a task at 胜利社区"
        );
        for a in [&rv, &ap] {
            assert!(
                c.shengli.engine.attestations().get(&a.id()).is_none(),
                "{who}: kept a forged {:?}",
                a.body.statement
            );
        }
    }
}

/// A hello that carries no certificate, from a key nobody certified, claiming each unit
/// (including the district): refused as bad-hello, never the outer error. Also a hello with a
/// foreign network and one over the record bound.
#[test]
fn a_hello_without_certificate_is_refused_for_every_unit() {
    let mut c = city();
    let genuine = c.district.engine.hello();
    for u in [DISTRICT, STREET, SHENGLI, QIANJIN] {
        let hello = Hello {
            unit: UnitId::new(u).unwrap(),
            chain: Vec::new(),
            registrations: Vec::new(),
            ..genuine.clone()
        };
        for (who, key) in attackers(&c) {
            let r = inner(who, c.shengli.engine.accept_hello(&hello, &key.public()));
            match r {
                Err(e) => assert_eq!(e.reason(), "bad-hello", "{who} as {u}: {e}"),
                Ok(unit) => panic!("{who}'s key accepted as a node of {u}: {unit:?}"),
            }
        }
        // The real chain of another node, presented by the stranger's key.
        let stolen = Hello {
            unit: UnitId::new(u).unwrap(),
            ..c.qianjin.engine.hello()
        };
        let r = inner(
            "stolen chain",
            c.shengli.engine.accept_hello(&stolen, &c.stranger.public()),
        );
        assert!(r.is_err(), "a stolen chain let a stranger in as {u}");
    }
    let mut h = genuine.clone();
    h.chain = vec![genuine.chain[0].clone(); 10_000];
    let r = inner(
        "huge hello",
        c.shengli.engine.accept_hello(&h, &c.stranger.public()),
    );
    assert!(r.is_err());
    let mut h = genuine;
    h.protocol_version = u32::MAX;
    let r = inner(
        "version",
        c.shengli.engine.accept_hello(&h, &c.stranger.public()),
    );
    assert!(r.is_err());
}

// ---- out-of-scope reads ----

/// 前进社区's node asks 胜利社区 about 胜利社区's chain-scoped task list and a unit-scoped
/// document: no inventory entry, no sync_out, and a message about them gets exactly what a
/// message about a document that does not exist gets.
#[test]
fn another_community_learns_nothing_of_chain_or_unit_scoped_documents() {
    let mut c = city();
    let tasks = c.shengli.engine.own_doc(Kind::TaskList).unwrap();
    let private = c
        .shengli
        .engine
        .create(
            CreateDoc {
                kind: Kind::Minutes,
                title: "内部会议".to_owned(),
                scope: Some(Scope::Unit),
                period: None,
                minutes: None,
            },
            Some("admin"),
        )
        .or_else(|_| {
            c.shengli.engine.create(
                CreateDoc {
                    kind: Kind::Convention,
                    title: "内部".to_owned(),
                    scope: Some(Scope::Unit),
                    period: None,
                    minutes: None,
                },
                Some("admin"),
            )
        })
        .expect("a unit-scoped document");
    greet(&mut c.shengli, &mut c.qianjin);
    let inv = c.shengli.engine.inventory_for(&c.qianjin.unit);
    for d in [&tasks, &private] {
        assert!(
            inv.docs.iter().all(|e| e.doc != *d),
            "the inventory for 前进社区 lists {d}"
        );
        assert!(
            c.shengli
                .engine
                .sync_out(&c.qianjin.name, &c.qianjin.unit, d)
                .is_none(),
            "sync_out of {d} to 前进社区"
        );
        // Street is above shengli: chain yes, unit no.
    }
    let street_unit = UnitId::new(STREET).unwrap();
    assert!(
        c.shengli
            .engine
            .sync_out("street-peer", &street_unit, &private)
            .is_none(),
        "unit-scoped doc to the street"
    );
    // A probing message: a fresh automerge sync message (asks for everything).
    let mut probe_state = automerge::sync::State::new();
    let mut empty = automerge::AutoCommit::new();
    let probe_bytes =
        automerge::sync::SyncDoc::generate_sync_message(&empty.sync(), &mut probe_state)
            .map(|m| m.encode());
    let nonexistent = c.qianjin.engine.own_doc(Kind::TaskList).unwrap(); // held by 前进 only
    let mut answers = Vec::new();
    for d in [tasks, private, nonexistent] {
        let mut m = bare(d);
        m.message = probe_bytes.clone();
        let r = inner(
            "probe",
            c.shengli
                .engine
                .sync_in(&c.qianjin.name, &c.qianjin.unit, m),
        );
        let shown = match &r {
            Ok(s) => format!(
                "reply={} set_aside={}",
                s.reply.is_some(),
                s.set_aside.len()
            ),
            Err(e) => e.reason().to_owned(),
        };
        answers.push(shown);
        if let Ok(s) = r {
            assert!(s.reply.is_none(), "a reply about {d} to 前进社区");
        }
    }
    assert_eq!(
        answers[0], answers[2],
        "held chain doc vs unknown doc answered differently: {answers:?}"
    );
    assert_eq!(
        answers[1], answers[2],
        "held unit doc vs unknown doc answered differently: {answers:?}"
    );
    // Also inventory of theirs listing our private doc: to_sync says nothing about it.
    let fake = linli_node::protocol::Inventory {
        docs: vec![linli_node::protocol::InventoryEntry {
            doc: tasks,
            heads: vec![[7; 32]],
        }],
    };
    let out = c.shengli.engine.to_sync(&c.qianjin.unit, &fake).unwrap();
    assert!(
        !out.contains(&tasks),
        "to_sync offers 胜利社区's task list to 前进社区"
    );
}

// ---- malformed and oversized ----

/// Malformed and oversized sync messages about a held document, an unknown one, and with a
/// mismatched header: each refused (inner), nothing stored, never the outer error.
#[test]
fn malformed_and_oversized_sync_messages_are_refused_inner() {
    let mut c = city();
    talk(&mut c.district, &mut c.shengli);
    let ledger = c.district.engine.own_doc(Kind::Ledger).unwrap();
    let before = c.shengli.engine.doc_mut(&ledger).unwrap().heads();
    let n_docs = c.shengli.engine.doc_ids().len();
    let mut rng = 0x1234_5678_u64;
    let mut next = || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut payloads: Vec<Vec<u8>> = vec![
        Vec::new(),
        vec![0x42],
        vec![0x42, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f],
        vec![0u8; 64 * 1024 * 1024],
        vec![0xff; 1024],
    ];
    for _ in 0..200 {
        let len = (next() % 512) as usize;
        let mut v: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        if !v.is_empty() && next() % 2 == 0 {
            v[0] = 0x42;
        }
        payloads.push(v);
    }
    // A valid-looking message with absurd counts: a huge head list.
    let m = Message {
        heads: (0..100_000u32)
            .map(|i| {
                let mut h = [0u8; 32];
                h[..4].copy_from_slice(&i.to_le_bytes());
                ChangeHash(h)
            })
            .collect(),
        need: Vec::new(),
        have: Vec::new(),
        changes: ChunkList::from(Vec::<Vec<u8>>::new()),
        flags: None,
        version: MessageVersion::V1,
    };
    payloads.push(m.encode());
    let shengli_tasks = c.shengli.engine.own_doc(Kind::TaskList).unwrap();
    for (i, p) in payloads.into_iter().enumerate() {
        let refused = p.len() > 1;
        let mut m = bare(ledger);
        m.message = Some(p);
        let r = inner(
            &format!("payload {i}"),
            c.shengli
                .engine
                .sync_in(&c.district.name, &c.district.unit, m),
        );
        if refused && i != 205 {
            assert!(
                r.is_err(),
                "payload {i} of garbage taken: {:?}",
                r.map(|s| s.reply.is_some())
            );
        }
    }
    // Unknown document, no header; header of another document.
    let unknown = c.qianjin.engine.own_doc(Kind::Ledger).unwrap();
    let r = inner(
        "unknown",
        c.shengli
            .engine
            .sync_in(&c.qianjin.name, &c.qianjin.unit, bare(unknown)),
    );
    assert_eq!(r.map(|_| ()).unwrap_err().reason(), "unknown-document");
    let mut m = bare(unknown);
    m.header = Some(
        c.shengli
            .engine
            .doc(&shengli_tasks)
            .unwrap()
            .header()
            .clone(),
    );
    let r = inner(
        "mismatch",
        c.shengli
            .engine
            .sync_in(&c.qianjin.name, &c.qianjin.unit, m),
    );
    assert_eq!(r.map(|_| ()).unwrap_err().reason(), "bad-header");
    // A header of 前进社区's chain doc, correct id: out of scope here.
    let q_tasks = c.qianjin.engine.own_doc(Kind::TaskList).unwrap();
    let mut m = bare(q_tasks);
    m.header = Some(c.qianjin.engine.doc(&q_tasks).unwrap().header().clone());
    let r = inner(
        "oos header",
        c.shengli
            .engine
            .sync_in(&c.qianjin.name, &c.qianjin.unit, m),
    );
    assert_eq!(r.map(|_| ()).unwrap_err().reason(), "out-of-scope");
    // Signatures that do not match, certificates and registrations by the thousand.
    let item = forged_change(&mut c.shengli.engine, &ledger, &c.q_worker, "y");
    let mut m = carrying(ledger, &[item.clone(), item.clone()]);
    m.certificates = vec![c.qianjin.engine.hello().chain[0].clone(); 5_000];
    let _ = inner(
        "dup + certs",
        c.shengli
            .engine
            .sync_in(&c.qianjin.name, &c.qianjin.unit, m),
    );
    let mut m = carrying(ledger, &[item]);
    m.signatures = Signatures::default();
    let r = inner(
        "unsigned",
        c.shengli
            .engine
            .sync_in(&c.qianjin.name, &c.qianjin.unit, m),
    );
    assert!(
        r.is_err() || !r.as_ref().unwrap().set_aside.is_empty(),
        "an unsigned change: {r:?}"
    );
    assert_eq!(
        c.shengli.engine.doc_mut(&ledger).unwrap().heads(),
        before,
        "the ledger moved"
    );
    assert_eq!(
        c.shengli.engine.doc_ids().len(),
        n_docs,
        "a document appeared"
    );
    let _ = Rejected::Malformed;
}

/// Serialised SyncMessage bytes as `net` decodes them, garbage and truncated: wire decoding of
/// the automerge message never panics and the engine never errors outer.
#[test]
fn truncated_real_messages_are_refused_inner() {
    let mut c = city();
    greet(&mut c.district, &mut c.shengli);
    let ledger = c.district.engine.own_doc(Kind::Ledger).unwrap();
    let mut m = c
        .district
        .engine
        .sync_out(&c.shengli.name, &c.shengli.unit, &ledger)
        .expect("a first message");
    let full = m.message.clone().unwrap();
    let header = m.header.take();
    for cut in (0..full.len()).step_by((full.len() / 64).max(1)) {
        let mut t = bare(ledger);
        t.header = header.clone();
        t.message = Some(full[..cut].to_vec());
        t.signatures = m.signatures.clone();
        t.certificates = m.certificates.clone();
        let _ = inner(
            &format!("cut {cut}"),
            c.shengli
                .engine
                .sync_in(&c.district.name, &c.district.unit, t),
        );
    }
    // Bit flips.
    for i in (0..full.len()).step_by((full.len() / 64).max(1)) {
        let mut f = full.clone();
        f[i] ^= 0xa5;
        let mut t = bare(ledger);
        t.header = header.clone();
        t.message = Some(f);
        t.signatures = m.signatures.clone();
        let _ = inner(
            &format!("flip {i}"),
            c.shengli
                .engine
                .sync_in(&c.district.name, &c.district.unit, t),
        );
    }
}

// ---- floods ----

/// A peer floods 胜利社区 with thousands of sync messages about every document it may and may
/// not hold, from many peer names: never the outer error, and the per-peer state budget holds.
#[test]
fn a_flood_of_sync_messages_never_errs_outer_and_stays_in_budget() {
    let mut c = city();
    talk(&mut c.district, &mut c.shengli);
    let mut docs = c.shengli.engine.doc_ids();
    docs.push(c.qianjin.engine.own_doc(Kind::TaskList).unwrap());
    let mut probe_state = automerge::sync::State::new();
    let mut empty = automerge::AutoCommit::new();
    let probe = automerge::sync::SyncDoc::generate_sync_message(&empty.sync(), &mut probe_state)
        .map(|m| m.encode());
    let states_max = c
        .shengli
        .engine
        .config()
        .sync
        .sync_states_per_peer_max
        .max(1);
    let bloom_max = c.shengli.engine.config().sync.bloom_bytes_per_peer_max;
    for i in 0..3_000usize {
        let d = docs[i % docs.len()];
        let mut m = bare(d);
        m.message = if i % 3 == 0 { None } else { probe.clone() };
        let r = inner(
            &format!("flood {i}"),
            c.shengli
                .engine
                .sync_in(&c.qianjin.name, &c.qianjin.unit, m),
        );
        let _ = r;
        // Forged junk too.
        if i % 50 == 0 {
            let sl = c.shengli.engine.own_doc(Kind::Ledger).unwrap();
            let item = forged_change(&mut c.shengli.engine, &sl, &c.q_admin, &format!("k{i}"));
            let _ = inner(
                "forged flood",
                c.shengli
                    .engine
                    .sync_in(&c.qianjin.name, &c.qianjin.unit, carrying(sl, &[item])),
            );
        }
    }
    let (states, bloom) = c.shengli.engine.sync_states_held(&c.qianjin.name);
    assert!(
        states <= states_max,
        "{states} sync states held for one peer (max {states_max})"
    );
    assert!(
        bloom <= bloom_max,
        "{bloom} bloom bytes for one peer (max {bloom_max})"
    );
    // Many peer names (reconnects with fresh ids): each gets budget; memory per name.
    for i in 0..500 {
        let name = format!("peer-{i}");
        let mut m = bare(docs[0]);
        m.message = probe.clone();
        let _ = inner(&name, c.shengli.engine.sync_in(&name, &c.qianjin.unit, m));
    }
}
