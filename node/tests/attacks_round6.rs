//! Round six: what carried records, set-aside changes and equivocation evidence let a certified
//! community administrator (a), a certified worker (b) or a peer with no certificate (c) make a
//! node keep or reveal. Driven on the engine directly (no transport), like `attacks_node.rs`.
//! Each test asserts the invariant: it fails if the attack works.

use std::path::Path;

use automerge::sync::{ChunkList, Message, MessageVersion};
use automerge::{Change, ChangeHash};
use linli_crdt_model::attest::{Attestation, AttestationBody, Statement};
use linli_crdt_model::cert::{Certificate, Role};
use linli_crdt_model::doc::{DocId, Header, SCHEMA_VERSION, Scope};
use linli_crdt_model::document::ChangeSignature;
use linli_crdt_model::genesis::Genesis;
use linli_crdt_model::keys::{PublicKey, SecretKey};
use linli_crdt_model::kinds::Kind;
use linli_crdt_model::sync::Signatures;
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_crdt_model::wire;
use linli_node::clock::now_ms;
use linli_node::config::{Config, Layout};
use linli_node::contract::{CreateDoc, Op};
use linli_node::engine::{Engine, HELLO_RECORDS_MAX, SyncRefused};
use linli_node::keystore;
use linli_node::protocol::{SetAsideNote, SyncMessage};
use linli_node::setup::{self, PlanPerson, PlanUnit};
use pair::Node;

#[allow(
    dead_code,
    reason = "this file pumps single sessions, never settles a whole pair"
)]
#[path = "common/pair.rs"]
mod pair;

const DAY: i64 = 24 * 60 * 60 * 1000;
const SHENGLI: &str = "tiedong/jiefang/shengli";
const QIANJIN: &str = "tiedong/jiefang/qianjin";
const PEER: &str = "rogue";

fn unit(id: &str, kind: UnitKind, name: &str) -> Unit {
    Unit {
        id: UnitId::new(id).unwrap(),
        kind,
        name: name.to_owned(),
    }
}

fn plan() -> Vec<PlanUnit> {
    let writer = |h: &str, n: &str| PlanPerson {
        handle: h.to_owned(),
        holder: n.to_owned(),
        role: Role::Writer,
    };
    vec![
        PlanUnit {
            unit: unit("tiedong", UnitKind::District, "铁东区"),
            people: Vec::new(),
        },
        PlanUnit {
            unit: unit("tiedong/jiefang", UnitKind::Street, "解放街道"),
            people: Vec::new(),
        },
        PlanUnit {
            unit: unit(SHENGLI, UnitKind::Community, "胜利社区"),
            people: vec![writer("wangfang", "王芳")],
        },
        PlanUnit {
            unit: unit(QIANJIN, UnitKind::Community, "前进社区"),
            people: vec![writer("wangfang", "赵敏")],
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

/// 胜利社区's engine, and what the attackers of 前进社区 hold.
struct Bench {
    _dir: tempfile::TempDir,
    genesis: Genesis,
    engine: Engine,
    qianjin: UnitId,
    qianjin_admin: SecretKey,
    wangfang: SecretKey,
}

fn bench() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let p = setup::provision(dir.path(), "铁东区邻里网", &plan(), config, now - 7 * DAY).unwrap();
    let by_unit = |id: &str| p.nodes.iter().find(|n| n.unit.id.as_str() == id).unwrap();
    let (shengli, qianjin) = (by_unit(SHENGLI), by_unit(QIANJIN));
    let qianjin_admin = key_of(&qianjin.dir, "admin");
    let engine = Engine::open(&shengli.dir).unwrap();
    Bench {
        genesis: p.genesis.clone(),
        engine,
        qianjin: qianjin.unit.id.clone(),
        qianjin_admin,
        wangfang: key_of(&shengli.dir, "wangfang"),
        _dir: dir,
    }
}

impl Bench {
    fn minted(&self) -> (SecretKey, Certificate) {
        let key = keystore::generate_key();
        let cert = setup::certify(
            &self.genesis,
            &self.qianjin_admin,
            key.public(),
            self.qianjin.clone(),
            Role::Writer,
            "凭空".to_owned(),
            now_ms() - 1_000,
            setup::YEAR_MS,
        );
        (key, cert)
    }

    fn public_doc(&self) -> DocId {
        self.engine.own_doc(Kind::Ledger).unwrap()
    }

    fn n_certs(&self) -> (usize, usize) {
        (
            self.engine.trust().certificates().count(),
            self.engine.store().certificates().unwrap().len(),
        )
    }

    fn convention(&mut self, title: &str, scope: Option<Scope>) -> DocId {
        self.engine
            .create(
                CreateDoc {
                    kind: Kind::Convention,
                    title: title.to_owned(),
                    scope,
                    period: None,
                    minutes: None,
                },
                None,
            )
            .unwrap()
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

/// A sync message about `doc` carrying `items`.
fn carrying(doc: DocId, items: &[(Change, ChangeSignature)]) -> SyncMessage {
    let message = Message {
        heads: {
            let mut h: Vec<ChangeHash> = items.iter().map(|(c, _)| c.hash()).collect();
            h.sort();
            h.dedup();
            h.truncate(16);
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

/// The wire shape of `Signatures` (its fields are private): a table of authors naming no
/// signature at all is what a peer can send.
#[derive(serde::Serialize)]
struct SignaturesWire {
    authors: Vec<PublicKey>,
    author_of: Vec<u32>,
    signatures: Vec<u8>,
}

// ---- (a): certificates kept for keys that signed nothing the message carried ----

/// The rogue administrator mints 300 keys and certificates, and names the keys in the author
/// table of the message's signature pack (with no signature, and no change: `message: None`).
/// The table is never checked against what was signed, so each key counts as a signer and its
/// carried chain is kept, in trust and on disk.
#[test]
fn authors_named_by_no_signature_prove_nothing() {
    let mut b = bench();
    let before = b.n_certs();
    let mut msg = bare(b.public_doc());
    let mut authors = Vec::new();
    for _ in 0..300 {
        let (k, c) = b.minted();
        authors.push(k.public());
        msg.certificates.push(c);
    }
    let wire = SignaturesWire {
        authors,
        author_of: Vec::new(),
        signatures: Vec::new(),
    };
    msg.signatures = postcard::from_bytes(&postcard::to_allocvec(&wire).unwrap()).unwrap();
    let accepted = b
        .engine
        .sync_in(PEER, &b.qianjin.clone(), msg)
        .expect("the node's own store")
        .is_ok();
    let after = b.n_certs();
    assert!(
        after.0 <= before.0 + HELLO_RECORDS_MAX && after.1 <= before.1 + HELLO_RECORDS_MAX,
        "a message (accepted: {accepted}) signing nothing grew trust {} → {} and the store {} → {}",
        before.0,
        after.0,
        before.1,
        after.1
    );
}

/// The same through attestations: 300 attestations, each signed by a minted key with no
/// authority to attest anything (so each is dropped again), count their issuers as signers,
/// and the issuers' carried certificates stay.
#[test]
fn issuers_of_attestations_that_are_dropped_prove_nothing() {
    let mut b = bench();
    let network = b.genesis.network_id();
    let before = b.n_certs();
    let mut msg = bare(b.public_doc());
    for _ in 0..300 {
        let (k, c) = b.minted();
        msg.certificates.push(c);
        msg.attestations.push(Attestation::issue(
            AttestationBody {
                network,
                issuer: k.public(),
                statement: Statement::Checkpoint,
                doc: b.public_doc(),
                doc_unit: UnitId::new(SHENGLI).unwrap(),
                heads: Vec::new(),
                subject: None,
                targets: Vec::new(),
                at_ms: now_ms() - 1_000,
                note: String::new(),
                checkpoint: Vec::new(),
            },
            &k,
        ));
    }
    let accepted = b
        .engine
        .sync_in(PEER, &b.qianjin.clone(), msg)
        .expect("the node's own store")
        .is_ok();
    let after = b.n_certs();
    assert!(
        after.0 <= before.0 + HELLO_RECORDS_MAX && after.1 <= before.1 + HELLO_RECORDS_MAX,
        "a message (accepted: {accepted}) whose attestations were all dropped grew trust \
         {} → {} and the store {} → {}",
        before.0,
        after.0,
        before.1,
        after.1
    );
    assert_eq!(
        b.engine.attestations().len(),
        b.engine.store().attestations().unwrap().len()
    );
}

/// A header on a message about a document already held is never looked at, yet its creator
/// counts as a signer: 40 messages, each with a made-up header naming a fresh minted key,
/// leave 40 certificates behind.
#[test]
fn an_ignored_header_proves_nothing() {
    let mut b = bench();
    let network = b.genesis.network_id();
    let before = b.n_certs();
    let doc = b.public_doc();
    for i in 0..40 {
        let (k, c) = b.minted();
        let header = Header {
            network,
            kind: Kind::Convention,
            unit: b.qianjin.clone(),
            scope: Scope::Public,
            title: format!("幌子{i}"),
            created_at_ms: now_ms() - 1_000,
            schema_version: SCHEMA_VERSION,
            creator: k.public(),
            period: None,
        }
        .sign(&k);
        let mut msg = bare(doc);
        msg.header = Some(header);
        msg.certificates.push(c);
        let _ = b.engine.sync_in(PEER, &b.qianjin.clone(), msg);
    }
    let after = b.n_certs();
    assert!(
        after.0 <= before.0 + HELLO_RECORDS_MAX && after.1 <= before.1 + HELLO_RECORDS_MAX,
        "40 messages with ignored headers grew trust {} → {} and the store {} → {}",
        before.0,
        after.0,
        before.1,
        after.1
    );
}

// ---- (b): a worker's own equivocations, without bound ----

/// Variants of `held` (same actor, number, dependencies), each signed by `author`.
fn variants(
    b: &Bench,
    doc: DocId,
    held: &Change,
    author: &SecretKey,
    n: usize,
    tag: &str,
) -> Vec<(Change, ChangeSignature)> {
    (0..n)
        .map(|i| {
            let mut e = held.decode();
            e.message = Some(format!("{tag}{i}"));
            e.hash = None;
            let c = Change::from(e);
            let sig = ChangeSignature::sign(b.genesis.network_id(), doc, c.hash(), author);
            (c, sig)
        })
        .collect()
}

/// 王芳, a certified writer of 胜利社区, adds one article (held), then signs 2 × 200 other
/// changes with the same actor and number. Each is set aside as an equivocation — and each is
/// kept as its own evidence record, flushed one by one, and listed by every audit: one
/// author's two signatures prove the equivocation; the rest are a disk and audit flood of the
/// worker's choosing, unbounded over messages.
#[test]
fn a_worker_cannot_make_a_node_keep_unbounded_evidence() {
    let mut b = bench();
    let doc = b.convention("胜利社区居民公约", None);
    let op = Op::ArticleAdd {
        id: None,
        number: 1,
        title: "第1条".to_owned(),
        text: "爱护公共环境。".to_owned(),
    };
    let receipt = b.engine.apply(&doc, &op, Some("wangfang")).unwrap();
    let hash: ChangeHash = receipt.change.parse().unwrap();
    let bytes = b.engine.doc_mut(&doc).unwrap().change_bytes(&hash).unwrap();
    let held = Change::from_bytes(bytes).unwrap();
    let wang = b.wangfang.clone();
    let mut set_aside = 0;
    for round in 0..2 {
        let items = variants(&b, doc, &held, &wang, 200, &format!("r{round}-"));
        let synced = b
            .engine
            .sync_in(PEER, &b.qianjin.clone(), carrying(doc, &items))
            .expect("the node's own store")
            .expect("set aside, not refused");
        set_aside += synced.set_aside.len();
    }
    let evidence = b.engine.store().equivocations(&doc).unwrap().len();
    let audit = b.engine.audit(&doc).unwrap();
    assert!(
        evidence <= 1 && audit.equivocations.len() <= 1,
        "one author's equivocations of one number ({set_aside} set aside) left {evidence} \
         evidence records in the store and {} in the audit",
        audit.equivocations.len()
    );
}

// ---- (b)/(a): out of scope ----

/// A node of 前进社区 asks about 胜利社区's unit-scoped document, and about a document that
/// does not exist: the answers must not differ, or the peer learns what this node holds
/// outside its scope (the document is never sent either way).
#[test]
fn an_out_of_scope_peer_cannot_tell_a_unit_document_is_held() {
    let mut b = bench();
    let secret = b.convention("胜利社区内部事项", Some(Scope::Unit));
    let empty = Message {
        heads: Vec::new(),
        need: Vec::new(),
        have: Vec::new(),
        changes: ChunkList::from(Vec::<Vec<u8>>::new()),
        flags: None,
        version: MessageVersion::V1,
    };
    let ask = |doc: DocId| SyncMessage {
        message: Some(wire::encode_sync_message(empty.clone()).unwrap()),
        ..bare(doc)
    };
    let qianjin = b.qianjin.clone();
    let held = b
        .engine
        .sync_in(PEER, &qianjin, ask(secret))
        .expect("the node's own store");
    let none = b
        .engine
        .sync_in(PEER, &qianjin, ask(DocId([7; 32])))
        .expect("the node's own store");
    let label = |r: &Result<_, SyncRefused>| match r {
        Ok(_) => "taken".to_owned(),
        Err(e) => format!("{:?}", std::mem::discriminant(e)),
    };
    if let Ok(s) = &held {
        assert!(s.reply.is_none(), "an out-of-scope peer got a reply");
    }
    assert_eq!(
        label(&held),
        label(&none),
        "a unit-scoped document held here ({:?}) is answered differently from one that does \
         not exist ({:?})",
        held.as_ref()
            .map(|_| "Ok(Synced)")
            .map_err(|e| e.to_string()),
        none.as_ref()
            .map(|_| "Ok(Synced)")
            .map_err(|e| e.to_string())
    );
}

// ---- (c)-ish and all: notes sent to a node ----

/// A message whose `set_aside` list names 100,000 changes the node never sent: taken as what
/// it is (an empty message), nothing of it kept, no state for it.
#[test]
fn a_huge_set_aside_list_sent_to_a_node_is_harmless() {
    let mut b = bench();
    let doc = b.public_doc();
    let before = b.n_certs();
    let mut msg = bare(doc);
    msg.set_aside = (0..100_000u32)
        .map(|i| {
            let mut change = [0u8; 32];
            change[..4].copy_from_slice(&i.to_le_bytes());
            SetAsideNote {
                change,
                reason: "revoked".repeat(10),
            }
        })
        .collect();
    let r = b
        .engine
        .sync_in(PEER, &b.qianjin.clone(), msg)
        .expect("the node's own store");
    assert!(r.is_ok(), "{:?}", r.err());
    assert_eq!(b.n_certs(), before);
    assert!(b.engine.store().equivocations(&doc).unwrap().is_empty());
}

// ---- (a): a partly taken message undoes what the changes it brought taught trust ----

/// The district's administrator revokes 王芳 over 胜利社区; the revocation travels in the
/// district's ledger. A relay brings that ledger change to 胜利社区 together with one change
/// of its own minting (a key 前进社区's administrator certified, not permitted there, so set
/// aside) and that key's certificate (new here). The ledger change is taken and teaches trust
/// the revocation; then, because something was set aside and a carried certificate proves
/// nothing taken, `with_carried_trust` puts trust back to what it was *before the message* —
/// dropping the revocation learned from the ledger with it. 王芳's later work is then taken.
#[test]
fn a_partly_taken_message_does_not_undo_a_revocation_it_brought() {
    use automerge::transaction::Transactable as _;
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let p = setup::provision(dir.path(), "铁东区邻里网", &plan(), config, now - 7 * DAY).unwrap();
    let by_unit = |id: &str| p.nodes.iter().find(|n| n.unit.id.as_str() == id).unwrap();
    let (d, c, q) = (by_unit("tiedong"), by_unit(SHENGLI), by_unit(QIANJIN));
    let mut district = Node::open(d);
    let mut community = Node::open(c);
    pair::greet(&mut district, &mut community);
    let c_unit = c.unit.id.clone();
    let wang = key_of(&c.dir, "wangfang");
    let network = p.genesis.network_id();
    let ledger = district.engine.own_doc(Kind::Ledger).unwrap();

    // An honest session first, so the community holds the district's ledger.
    pair::session(&mut district, &mut community, &ledger).expect("honest");
    assert_eq!(
        district.engine.doc_mut(&ledger).unwrap().heads(),
        community.engine.doc_mut(&ledger).unwrap().heads()
    );

    district
        .engine
        .revoke(
            wang.public(),
            Some(c_unit.clone()),
            None,
            false,
            "丢失".to_owned(),
            Some("admin"),
        )
        .unwrap();
    let heads = district.engine.doc_mut(&ledger).unwrap().heads();
    assert_eq!(heads.len(), 1);
    let rev_change = Change::from_bytes(
        district
            .engine
            .doc_mut(&ledger)
            .unwrap()
            .change_bytes(&heads[0])
            .unwrap(),
    )
    .unwrap();
    let rev_sig = district
        .engine
        .doc(&ledger)
        .unwrap()
        .signature(&heads[0])
        .unwrap()
        .clone();

    // The relay's own change on top, by a key it minted.
    let q_admin = key_of(&q.dir, "admin");
    let minted = keystore::generate_key();
    let minted_cert = setup::certify(
        &p.genesis,
        &q_admin,
        minted.public(),
        q.unit.id.clone(),
        Role::Writer,
        "凭空".to_owned(),
        now - 1_000,
        setup::YEAR_MS,
    );
    let mut fork = district
        .engine
        .doc_mut(&ledger)
        .unwrap()
        .at(&heads)
        .unwrap();
    let mut inc = [0u8; linli_crdt_model::document::ACTOR_INCARNATION_BYTES];
    inc.copy_from_slice(
        &keystore::random_seed()[..linli_crdt_model::document::ACTOR_INCARNATION_BYTES],
    );
    fork.set_actor(linli_crdt_model::document::actor_for(
        &minted.public(),
        &inc,
    ));
    fork.put(automerge::ROOT, "x", 1).unwrap();
    fork.commit_with(automerge::transaction::CommitOptions::default().with_time(now - 500));
    let forged = fork.get_last_local_change().unwrap().clone();
    let forged_sig = ChangeSignature::sign(network, ledger, forged.hash(), &minted);

    let revs_before = community.engine.trust().revocations().count();
    let mut m = carrying(ledger, &[(rev_change, rev_sig), (forged, forged_sig)]);
    m.certificates.push(minted_cert);
    let synced = community
        .engine
        .sync_in(&district.name, &district.unit, m)
        .expect("the node's own store")
        .expect("taken in part");
    assert_eq!(synced.set_aside.len(), 1, "{:?}", synced.set_aside);
    assert_eq!(
        community.engine.doc_mut(&ledger).unwrap().heads(),
        heads,
        "the revocation's ledger change was taken"
    );
    let revs_after = community.engine.trust().revocations().count();
    let stored = community
        .engine
        .store()
        .revocations()
        .map(|r| r.len())
        .unwrap_or(0);
    let still = community
        .engine
        .trust()
        .authorize(&wang.public(), now_ms(), |_, _| true)
        .is_ok();
    assert_eq!(
        revs_after,
        revs_before + 1,
        "the ledger change carrying the revocation was taken (store holds {stored}), but trust \
         in memory has {revs_after} revocations (before: {revs_before}): the revocation learned \
         from it was undone when the message's unproven certificate was dropped (王芳 still \
         authorized now: {still})"
    );
}

// ---- all: inventories at and over the bound ----

/// An inventory of exactly `inventory_docs_max` entries (duplicates of one document) is taken;
/// one more is refused as the sender's fault, before anything is built from it.
#[test]
fn inventories_are_bounded_at_the_edge() {
    use linli_node::protocol::{Inventory, InventoryEntry};
    let mut b = bench();
    let max = linli_node::config::Sync::default().inventory_docs_max;
    let doc = b.public_doc();
    let entry = InventoryEntry {
        doc,
        heads: Vec::new(),
    };
    let mut inv = Inventory {
        docs: vec![entry.clone(); max],
    };
    let qianjin = b.qianjin.clone();
    assert!(b.engine.to_sync(&qianjin, &inv).is_ok());
    inv.docs.push(entry);
    let over = b.engine.to_sync(&qianjin, &inv);
    assert!(
        matches!(&over, Err(e) if e.is_offence()),
        "an inventory over the bound: {over:?}"
    );
}
