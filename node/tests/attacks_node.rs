//! Attacks on one node's engine, driven directly (no transport): what a certified community
//! administrator, a certified node of another community, and a peer with no certificate can
//! make the node keep — trust records, attestations, documents — through hellos and sync
//! messages, accepted or refused.

use std::path::Path;

use automerge::AutoCommit;
use automerge::sync::{ChunkList, Message, MessageVersion};
use automerge::transaction::CommitOptions;
use linli_crdt_model::attest::{Attestation, AttestationBody, Statement};
use linli_crdt_model::cert::{Certificate, Role};
use linli_crdt_model::doc::{DocId, Header, SCHEMA_VERSION, Scope};
use linli_crdt_model::document::{ACTOR_INCARNATION_BYTES, ChangeSignature, actor_for};
use linli_crdt_model::genesis::Genesis;
use linli_crdt_model::keys::SecretKey;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::sync::Signatures;
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_crdt_model::wire;
use linli_node::clock::now_ms;
use linli_node::config::{Config, Layout};
use linli_node::engine::{Engine, SyncRefused};
use linli_node::keystore;
use linli_node::protocol::{self, Hello, SyncMessage};
use linli_node::setup::{self, PlanPerson, PlanUnit};

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
    c.sync.new_docs_per_writer_per_day_max = 2;
    c
}

fn key_of(dir: &Path, handle: &str) -> SecretKey {
    keystore::read_key(&Layout::new(dir).people().join(format!("{handle}.key"))).unwrap()
}

/// The community 胜利社区's engine, and what the attackers of 前进社区 hold.
struct Bench {
    _dir: tempfile::TempDir,
    genesis: Genesis,
    engine: Engine,
    qianjin: UnitId,
    /// 前进社区's administrator (attacker a).
    qianjin_admin: SecretKey,
    /// 前进社区's node key and certificate (the key a rogue node speaks with).
    rogue_node: SecretKey,
    rogue_cert: Certificate,
    /// 前进社区's writer (attacker b) and 胜利社区's honest writer.
    other_writer: SecretKey,
    wangfang: SecretKey,
}

fn bench() -> Bench {
    let dir = tempfile::tempdir().unwrap();
    let now = now_ms();
    let p = setup::provision(dir.path(), "铁东区邻里网", &plan(), config, now - 7 * DAY).unwrap();
    let by_unit = |id: &str| p.nodes.iter().find(|n| n.unit.id.as_str() == id).unwrap();
    let (shengli, qianjin) = (by_unit(SHENGLI), by_unit(QIANJIN));
    let qianjin_admin = key_of(&qianjin.dir, "admin");
    let rogue_node = keystore::generate_key();
    let rogue_cert = setup::certify(
        &p.genesis,
        &qianjin_admin,
        rogue_node.public(),
        qianjin.unit.id.clone(),
        Role::Node,
        "前进社区节点".to_owned(),
        now - DAY,
        setup::YEAR_MS,
    );
    setup::import_offline(
        &shengli.dir,
        &p.genesis,
        &[],
        std::slice::from_ref(&rogue_cert),
    )
    .unwrap();
    let engine = Engine::open(&shengli.dir).unwrap();
    Bench {
        genesis: p.genesis.clone(),
        engine,
        qianjin: qianjin.unit.id.clone(),
        qianjin_admin,
        rogue_node,
        rogue_cert,
        other_writer: key_of(&qianjin.dir, "wangfang"),
        wangfang: key_of(&shengli.dir, "wangfang"),
        _dir: dir,
    }
}

impl Bench {
    /// A fresh certificate the rogue administrator mints for a throwaway key of its unit.
    fn minted(&self, role: Role) -> (SecretKey, Certificate) {
        let key = keystore::generate_key();
        let cert = setup::certify(
            &self.genesis,
            &self.qianjin_admin,
            key.public(),
            self.qianjin.clone(),
            role,
            "凭空".to_owned(),
            now_ms() - 1_000,
            setup::YEAR_MS,
        );
        (key, cert)
    }

    /// A public document of the community a node of 前进社区 may hold: its ledger.
    fn public_doc(&self) -> DocId {
        self.engine.own_doc(Kind::Ledger).unwrap()
    }

    fn n_certs(&self) -> (usize, usize) {
        (
            self.engine.trust().certificates().count(),
            self.engine.store().certificates().unwrap().len(),
        )
    }

    fn n_atts(&self) -> (usize, usize) {
        (
            self.engine.attestations().len(),
            self.engine.store().attestations().unwrap().len(),
        )
    }

    fn sync_in(&mut self, msg: SyncMessage) -> Result<Option<SyncMessage>, SyncRefused> {
        let peer_unit = self.qianjin.clone();
        // Here a change set aside counts as refused: no test of this file expects a message
        // to be taken in part.
        let synced = self
            .engine
            .sync_in(PEER, &peer_unit, msg)
            .expect("the node's own store")?;
        match synced.set_aside.into_iter().next() {
            Some(reason) => Err(SyncRefused::Model(reason)),
            None => Ok(synced.reply),
        }
    }
}

/// A message about `doc` with nothing to apply: only what it carries.
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

/// A message creating a new convention of `unit` with `scope`, its header signed by
/// `header_signer` and naming `creator`, its one change signed by `header_signer`.
fn new_doc(
    b: &Bench,
    unit: &UnitId,
    scope: Scope,
    creator: &SecretKey,
    header_signer: &SecretKey,
    title: &str,
) -> SyncMessage {
    let network = b.genesis.network_id();
    let at_ms = now_ms() - 1_000;
    let mut header = Header {
        network,
        kind: Kind::Convention,
        unit: unit.clone(),
        scope,
        title: title.to_owned(),
        created_at_ms: at_ms,
        schema_version: SCHEMA_VERSION,
        creator: creator.public(),
        period: None,
    }
    .sign(header_signer);
    header.header.creator = creator.public();
    let mut incarnation = [0u8; ACTOR_INCARNATION_BYTES];
    incarnation.copy_from_slice(&keystore::random_seed()[..ACTOR_INCARNATION_BYTES]);
    let mut doc = AutoCommit::new().with_actor(actor_for(&header_signer.public(), &incarnation));
    kinds::convention::init(&mut doc).unwrap();
    doc.commit_with(CommitOptions::default().with_time(at_ms));
    let change = doc.get_last_local_change().unwrap().clone();
    let sig = ChangeSignature::sign(network, header.id(), change.hash(), header_signer);
    let message = Message {
        heads: vec![change.hash()],
        need: Vec::new(),
        have: Vec::new(),
        changes: ChunkList::from(vec![change.raw_bytes().to_vec()]),
        flags: None,
        version: MessageVersion::V1,
    };
    SyncMessage {
        doc: header.id(),
        header: Some(header),
        message: Some(wire::encode_sync_message(message).unwrap()),
        signatures: Signatures::pack(vec![sig]),
        certificates: Vec::new(),
        registrations: Vec::new(),
        attestations: Vec::new(),
        set_aside: Vec::new(),
    }
}

// ---- (c) and (b): junk attestations ride an accepted message ----

/// A certified node carries, on an empty message about a public document, attestations signed
/// by keys nobody certified, about documents that do not exist. The message is accepted (it
/// asks nothing); the attestations must not be kept: none has any authority, none is needed to
/// judge the message.
#[test]
fn junk_attestations_on_an_accepted_message_are_not_kept() {
    let mut b = bench();
    let network = b.genesis.network_id();
    let before = b.n_atts();
    let mut msg = bare(b.public_doc());
    for i in 0..200u32 {
        let nobody = keystore::generate_key();
        let mut doc = [0u8; 32];
        doc[..4].copy_from_slice(&i.to_le_bytes());
        msg.attestations.push(Attestation::issue(
            AttestationBody {
                network,
                issuer: nobody.public(),
                statement: Statement::Approved,
                doc: DocId(doc),
                doc_unit: b.qianjin.clone(),
                heads: Vec::new(),
                subject: Some("x".repeat(1000)),
                targets: Vec::new(),
                at_ms: now_ms(),
                note: "垃圾".repeat(300),
                checkpoint: Vec::new(),
            },
            &nobody,
        ));
    }
    let accepted = b.sync_in(msg).is_ok();
    assert_eq!(
        b.n_atts(),
        before,
        "a message (accepted: {accepted}) left 200 attestations of uncertified keys in the \
         index and the store"
    );
}

// ---- (a): a rogue administrator floods certificates ----

/// The rogue administrator mints 300 certificates for throwaway keys and carries them on an
/// empty message: none is needed to judge it, yet each would be kept, in trust and on disk,
/// with no bound per message or per peer (a hello is bounded at 16).
#[test]
fn certificates_no_message_needs_are_not_kept() {
    let mut b = bench();
    let before = b.n_certs();
    let mut msg = bare(b.public_doc());
    for _ in 0..300 {
        msg.certificates.push(b.minted(Role::Writer).1);
    }
    let accepted = b.sync_in(msg).is_ok();
    let after = b.n_certs();
    assert!(
        after.0 <= before.0 + protocol_bound() && after.1 <= before.1 + protocol_bound(),
        "a message (accepted: {accepted}) grew trust {} → {} and the store {} → {}",
        before.0,
        after.0,
        before.1,
        after.1
    );
}

fn protocol_bound() -> usize {
    linli_node::engine::HELLO_RECORDS_MAX
}

/// The same through hellos: an already-authorized rogue node says hello again and again, each
/// time with 15 new certificates beside its own. Each hello is under the bound; the total is not.
#[test]
fn repeated_hellos_do_not_accumulate_certificates() {
    let mut b = bench();
    let before = b.n_certs();
    let mut accepted = 0;
    for _ in 0..20 {
        let mut chain = vec![b.rogue_cert.clone()];
        for _ in 0..15 {
            chain.push(b.minted(Role::Writer).1);
        }
        let hello = Hello {
            network: b.genesis.network_id(),
            protocol_version: protocol::PROTOCOL_VERSION,
            unit: b.qianjin.clone(),
            chain,
            registrations: Vec::new(),
        };
        let key = b.rogue_node.public();
        if b.engine.accept_hello(&hello, &key).unwrap().is_ok() {
            accepted += 1;
        }
    }
    let after = b.n_certs();
    assert!(
        after.1 <= before.1 + protocol_bound(),
        "{accepted} hellos grew trust {} → {} and the store {} → {}",
        before.0,
        after.0,
        before.1,
        after.1
    );
}

// ---- refused messages keep nothing ----

/// A message carries a valid minted certificate and is refused (out of scope). The certificate
/// is not kept, and a later message signed by that key alone, without it, is not accepted.
#[test]
fn a_refused_message_leaves_its_certificate_unusable() {
    let mut b = bench();
    let (key, cert) = b.minted(Role::Writer);
    let qianjin = b.qianjin.clone();
    let mut msg = new_doc(&b, &qianjin, Scope::Unit, &key, &key, "越界");
    msg.certificates.push(cert.clone());
    let before = (b.n_certs(), b.engine.doc_ids().len());
    let err = b.sync_in(msg).unwrap_err();
    assert_eq!(err.reason(), "out-of-scope");
    assert_eq!((b.n_certs(), b.engine.doc_ids().len()), before);
    // Now a public document by the same key, without the certificate.
    let later = new_doc(&b, &qianjin, Scope::Public, &key, &key, "后来");
    assert!(b.sync_in(later).is_err());
    assert_eq!((b.n_certs(), b.engine.doc_ids().len()), before);
}

/// A refused message (bad change signature) that carries a certificate and an attestation:
/// neither stays.
#[test]
fn a_refused_message_leaves_no_certificate_and_no_attestation() {
    let mut b = bench();
    let network = b.genesis.network_id();
    let (key, cert) = b.minted(Role::Writer);
    let qianjin = b.qianjin.clone();
    let other = keystore::generate_key();
    // Header by `key`, change signed by a stranger: refused by the model.
    let mut msg = new_doc(&b, &qianjin, Scope::Public, &key, &key, "坏签名");
    let hash = automerge::ChangeHash(
        wire::decode_sync_message(msg.message.as_ref().unwrap(), b.engine.wire_limits())
            .unwrap()
            .changes[0]
            .hash()
            .0,
    );
    msg.signatures = Signatures::pack(vec![ChangeSignature::sign(network, msg.doc, hash, &other)]);
    msg.certificates.push(cert);
    msg.attestations.push(Attestation::issue(
        AttestationBody {
            network,
            issuer: key.public(),
            statement: Statement::Reviewed,
            doc: msg.doc,
            doc_unit: qianjin.clone(),
            heads: Vec::new(),
            subject: None,
            targets: Vec::new(),
            at_ms: now_ms(),
            note: String::new(),
            checkpoint: Vec::new(),
        },
        &key,
    ));
    let before = (b.n_certs(), b.n_atts(), b.engine.doc_ids().len());
    assert!(b.sync_in(msg).is_err());
    assert_eq!((b.n_certs(), b.n_atts(), b.engine.doc_ids().len()), before);
}

// ---- (c): a peer with no certificate ----

/// A hello from a key nobody certified, carrying the rogue node's real chain (another key's)
/// and 16 minted certificates: refused, nothing kept.
#[test]
fn an_uncertified_hello_keeps_nothing() {
    let mut b = bench();
    let stranger = keystore::generate_key();
    let mut chain = vec![b.rogue_cert.clone()];
    for _ in 0..15 {
        chain.push(b.minted(Role::Node).1);
    }
    let hello = Hello {
        network: b.genesis.network_id(),
        protocol_version: protocol::PROTOCOL_VERSION,
        unit: b.qianjin.clone(),
        chain,
        registrations: Vec::new(),
    };
    let before = b.n_certs();
    let err = b
        .engine
        .accept_hello(&hello, &stranger.public())
        .unwrap()
        .unwrap_err();
    assert!(err.is_offence());
    assert_eq!(b.n_certs(), before);
}

/// A hello over the bound is refused before anything is judged or kept.
#[test]
fn an_oversized_hello_keeps_nothing() {
    let mut b = bench();
    let mut chain = vec![b.rogue_cert.clone()];
    for _ in 0..40 {
        chain.push(b.minted(Role::Node).1);
    }
    let hello = Hello {
        network: b.genesis.network_id(),
        protocol_version: protocol::PROTOCOL_VERSION,
        unit: b.qianjin.clone(),
        chain,
        registrations: Vec::new(),
    };
    let before = b.n_certs();
    let key = b.rogue_node.public();
    assert!(b.engine.accept_hello(&hello, &key).unwrap().is_err());
    assert_eq!(b.n_certs(), before);
}

// ---- out of scope ----

/// Nothing chain- or unit-scoped of 胜利社区 is offered, listed or sent to a node of 前进社区.
#[test]
fn scoped_documents_do_not_reach_a_sibling() {
    let mut b = bench();
    let qianjin = b.qianjin.clone();
    let scoped: Vec<DocId> = b
        .engine
        .doc_ids()
        .into_iter()
        .filter(|id| {
            let h = &b.engine.doc(id).unwrap().header().header;
            !h.scope.may_hold(&h.unit, &qianjin)
        })
        .collect();
    assert!(!scoped.is_empty(), "the community holds scoped documents");
    let inv = b.engine.inventory_for(&qianjin);
    assert!(inv.docs.iter().all(|e| !scoped.contains(&e.doc)));
    let wanted = b
        .engine
        .to_sync(&qianjin, &protocol::Inventory { docs: Vec::new() })
        .expect("an empty inventory is within bounds");
    assert!(wanted.iter().all(|d| !scoped.contains(d)));
    for id in &scoped {
        assert!(b.engine.sync_out(PEER, &qianjin, id).is_none());
        // A message about it (as if the peer held it) gets no reply with its content.
        let reply = b.sync_in(bare(*id));
        assert!(
            !matches!(reply, Ok(Some(_))),
            "a bare message about scoped {id} got a reply"
        );
    }
}

// ---- (b): a writer and the budget ----

/// 前进社区's writer signs headers naming 胜利社区's honest writer as creator: refused (the
/// header's signature is the creator's), and the honest writer's budget is untouched.
#[test]
fn a_writer_cannot_spend_an_honest_writers_budget() {
    let mut b = bench();
    let qianjin = b.qianjin.clone();
    let shengli = UnitId::new(SHENGLI).unwrap();
    for i in 0..4 {
        let msg = new_doc(
            &b,
            &qianjin,
            Scope::Public,
            &b.wangfang,
            &b.other_writer,
            &format!("冒名{i}"),
        );
        assert!(b.sync_in(msg).is_err());
    }
    // The honest writer's own documents still pass the budget (2 a day).
    for i in 0..2 {
        let msg = new_doc(
            &b,
            &shengli,
            Scope::Public,
            &b.wangfang,
            &b.wangfang,
            &format!("真{i}"),
        );
        b.sync_in(msg)
            .unwrap_or_else(|e| panic!("honest document {i} refused: {e}"));
    }
}

/// The budget holds for a certified writer flooding new documents, and the documents it
/// refuses leave no header behind.
#[test]
fn a_writer_flooding_documents_is_budgeted() {
    let mut b = bench();
    let qianjin = b.qianjin.clone();
    let before = b.engine.doc_ids().len();
    let mut refused = Vec::new();
    for i in 0..10 {
        let msg = new_doc(
            &b,
            &qianjin,
            Scope::Public,
            &b.other_writer,
            &b.other_writer,
            &format!("洪水{i}"),
        );
        if let Err(e) = b.sync_in(msg) {
            refused.push(e.reason());
        }
    }
    assert_eq!(b.engine.doc_ids().len(), before + 2);
    assert!(refused.iter().all(|r| *r == "over-budget"), "{refused:?}");
}
