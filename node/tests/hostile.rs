//! A rogue peer against a real network: district, street and community nodes over libp2p's
//! memory transport, and a hand-built libp2p swarm that speaks `/linli/sync/4` with crafted
//! messages aimed at the community's task list, and trust records a community administrator
//! forges to take authority it does not hold.
//!
//! The rogue holds certified node keys of the community itself (a second office machine gone
//! bad), so its hello is accepted and every message about the community's task list reaches
//! the checks behind it (a node of a sibling community is refused before any: it may not hold
//! a unit-scoped document). In the authority test it holds node keys of the sibling community
//! whose administrator is the attacker, and carries that community's public ledger. Each class of bad input gets its own
//! key (one offence each, below the node's `offences_max`), and the outcome of each is one row of
//! a table: the reason the node answered with, and whether its HTTP API still answers. Then one
//! key keeps offending until it is disconnected and banned, and an honest edit at the community
//! must still reach the district.

use std::path::Path;
use std::time::{Duration, Instant};

use automerge::sync::{ChunkList, Message, MessageVersion};
use automerge::transaction::CommitOptions;
use automerge::{AutoCommit, Change};
use expect_test::expect;
use futures::StreamExt;
use libp2p::core::Transport;
use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::request_response::{self, OutboundRequestId, ProtocolSupport, ResponseChannel};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, yamux};
use linli_crdt_model::attest::{Attestation, AttestationBody, Statement};
use linli_crdt_model::cert::{
    CertBody, Certificate, Registration, RegistrationBody, Revocation, RevocationBody, Role,
    TrustRecord,
};
use linli_crdt_model::doc::{DocId, Header, SCHEMA_VERSION, Scope};
use linli_crdt_model::document::{ACTOR_INCARNATION_BYTES, ChangeSignature, Document, actor_for};
use linli_crdt_model::genesis::{Genesis, NetworkId};
use linli_crdt_model::keys::SecretKey;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::sync::Signatures;
use linli_crdt_model::testkit::{hostile, unit};
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_crdt_model::wire;
use linli_node::clock::now_ms;
use linli_node::config::{Config, Layout};
use linli_node::contract::Op;
use linli_node::keystore;
use linli_node::net;
use linli_node::protocol::{self, Hello, Request, Response, SyncMessage};
use linli_node::run::Running;
use linli_node::setup::{self, PlanUnit, ProvisionedNode};
use linli_node::shared::NetCommand;
use linli_node::testkit::{self, writer};

const DAY: i64 = 24 * 60 * 60 * 1000;
const SHENGLI: &str = "tiedong/jiefang/shengli";
const QIANJIN: &str = "tiedong/jiefang/qianjin";
/// Offences before the community disconnects a peer (the default is 5).
const OFFENCES_MAX: u32 = 3;
/// The community's budget of documents one writer created in a day, lowered from 200.
const NEW_DOCS_PER_WRITER_PER_DAY: usize = 2;
/// The community's sync message limit, lowered from 16 MiB so an oversized request is cheap.
const MESSAGE_BYTES_MAX: u64 = 1024 * 1024;

/// 铁东区 → 解放街道 → 胜利社区, which run, and 前进社区, which does not: its node keys are the
/// rogue's, and its writer is the "writer of another community".
fn plan() -> Vec<PlanUnit> {
    let mut plan = testkit::three_units().to_vec();
    plan[2].people = vec![writer("wangfang", "王芳"), writer("liqiang", "李强")];
    plan.push(PlanUnit {
        unit: unit(QIANJIN, UnitKind::Community, "前进社区"),
        people: vec![writer("wangfang", "赵敏")],
    });
    plan
}

/// [`testkit::config`], with lower limits at 胜利社区.
fn config(u: &Unit) -> Config {
    let mut c = testkit::config(u);
    if u.id.as_str() == SHENGLI {
        c.sync.offences_max = OFFENCES_MAX;
        c.sync.message_bytes_max = MESSAGE_BYTES_MAX;
        c.sync.new_docs_per_writer_per_day_max = NEW_DOCS_PER_WRITER_PER_DAY;
    }
    c
}

fn key_of(dir: &Path, handle: &str) -> SecretKey {
    keystore::read_key(&Layout::new(dir).people().join(format!("{handle}.key"))).unwrap()
}

// ---- the rogue ----

type RogueSwarm = Swarm<request_response::cbor::Behaviour<Request, Response>>;

/// What the rogue saw of one request.
#[derive(Debug)]
enum Outcome {
    Answered(Response),
    Failed(String),
}

impl Outcome {
    fn label(&self) -> String {
        match self {
            Outcome::Answered(Response::Rejected { reason, .. }) => format!("rejected {reason}"),
            Outcome::Answered(Response::Sync(_)) => "accepted".to_owned(),
            Outcome::Answered(Response::Hello(_)) => "hello".to_owned(),
            Outcome::Answered(Response::Inventory(_)) => "inventory".to_owned(),
            Outcome::Failed(_) => "failed".to_owned(),
        }
    }

    /// What the table leaves out, for the log.
    fn detail(&self) -> String {
        match self {
            Outcome::Answered(Response::Rejected { detail, .. }) => detail.clone(),
            Outcome::Answered(_) => String::new(),
            Outcome::Failed(why) => why.clone(),
        }
    }
}

/// A peer that is no linli node: only request-response on `/linli/sync/4`, driven by hand.
struct Rogue {
    swarm: RogueSwarm,
    hello: Hello,
    node: PeerId,
    addr: Multiaddr,
    connected: bool,
    /// The node's hellos, answered only once ours is, so the node cannot judge us (and perhaps
    /// disconnect us) before it has answered our own hello.
    parked: Vec<ResponseChannel<Response>>,
    hello_answered: bool,
}

impl Rogue {
    fn new(key: &SecretKey, hello: Hello, node: &Running) -> Rogue {
        let codec = request_response::cbor::codec::Codec::default()
            .set_request_size_maximum(64 * 1024 * 1024)
            .set_response_size_maximum(64 * 1024 * 1024);
        let behaviour = request_response::Behaviour::with_codec(
            codec,
            [(
                StreamProtocol::new(protocol::PROTOCOL),
                ProtocolSupport::Full,
            )],
            request_response::Config::default().with_request_timeout(Duration::from_secs(5)),
        );
        let swarm = libp2p::SwarmBuilder::with_existing_identity(net::keypair(key))
            .with_tokio()
            .with_other_transport(|key| {
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    MemoryTransport::default()
                        .upgrade(Version::V1)
                        .authenticate(noise::Config::new(key)?)
                        .multiplex(yamux::Config::default())
                        .boxed(),
                )
            })
            .unwrap()
            .with_behaviour(|_| behaviour)
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        Rogue {
            swarm,
            hello,
            node: node.peer_id,
            addr: node.dial_addr().expect("the node listens"),
            connected: false,
            parked: Vec::new(),
            hello_answered: false,
        }
    }

    /// Dial the node and say hello; the node's answer (or why there was none).
    async fn connect(&mut self) -> Outcome {
        self.hello_answered = false;
        if let Err(e) = self.swarm.dial(self.addr.clone()) {
            return Outcome::Failed(format!("dial: {e}"));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.connected {
            match self.next(deadline).await {
                Some(SwarmEvent::OutgoingConnectionError { error, .. }) => {
                    return Outcome::Failed(format!("dial: {error}"));
                }
                Some(other) => self.handle(other),
                None => return Outcome::Failed("no connection within 5 s".to_owned()),
            }
        }
        let outcome = self.request(Request::Hello(self.hello.clone())).await;
        self.hello_answered = true;
        for channel in std::mem::take(&mut self.parked) {
            let _ = self
                .swarm
                .behaviour_mut()
                .send_response(channel, Response::Hello(self.hello.clone()));
        }
        outcome
    }

    /// Send one request and wait for its answer, serving the node's own requests meanwhile.
    async fn request(&mut self, request: Request) -> Outcome {
        let id = self.swarm.behaviour_mut().send_request(&self.node, request);
        let deadline = Instant::now() + Duration::from_secs(8);
        loop {
            match self.next(deadline).await {
                None => return Outcome::Failed("no answer within 8 s".to_owned()),
                Some(event) => {
                    if let Some(outcome) = self.answer_to(id, &event) {
                        self.handle_rest(event);
                        return outcome;
                    }
                    self.handle(event);
                }
            }
        }
    }

    fn answer_to(
        &self,
        id: OutboundRequestId,
        event: &SwarmEvent<request_response::Event<Request, Response>>,
    ) -> Option<Outcome> {
        use request_response::{Event, Message};
        match event {
            SwarmEvent::Behaviour(Event::Message {
                message:
                    Message::Response {
                        request_id,
                        response,
                    },
                ..
            }) if *request_id == id => Some(Outcome::Answered(response.clone())),
            SwarmEvent::Behaviour(Event::OutboundFailure {
                request_id, error, ..
            }) if *request_id == id => Some(Outcome::Failed(error.to_string())),
            _ => None,
        }
    }

    /// The bookkeeping part of an event already used as an answer.
    fn handle_rest(&mut self, event: SwarmEvent<request_response::Event<Request, Response>>) {
        if let SwarmEvent::ConnectionClosed {
            num_established: 0, ..
        } = event
        {
            self.connected = false;
        }
    }

    /// Wait until the node closes the connection; whether it did within `within`.
    async fn closed_within(&mut self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        while self.connected {
            match self.next(deadline).await {
                Some(event) => self.handle(event),
                None => return false,
            }
        }
        true
    }

    async fn next(
        &mut self,
        deadline: Instant,
    ) -> Option<SwarmEvent<request_response::Event<Request, Response>>> {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, self.swarm.select_next_some())
            .await
            .ok()
    }

    fn handle(&mut self, event: SwarmEvent<request_response::Event<Request, Response>>) {
        use request_response::{Event, Message};
        match event {
            SwarmEvent::ConnectionEstablished { .. } => self.connected = true,
            SwarmEvent::ConnectionClosed {
                num_established: 0, ..
            } => self.connected = false,
            SwarmEvent::Behaviour(Event::Message {
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            }) => {
                let response = match request {
                    Request::Hello(_) if !self.hello_answered => {
                        self.parked.push(channel);
                        return;
                    }
                    Request::Hello(_) => Response::Hello(self.hello.clone()),
                    // Echo the node's inventory, so it sees nothing to sync with us.
                    Request::Inventory(inv) => Response::Inventory(inv),
                    Request::Sync(_) => Response::Rejected {
                        reason: "rogue".to_owned(),
                        detail: "not listening".to_owned(),
                    },
                };
                let _ = self.swarm.behaviour_mut().send_response(channel, response);
            }
            _ => {}
        }
    }
}

// ---- forged changes ----

/// Fresh random bytes for an actor of one forging session.
fn incarnation() -> [u8; ACTOR_INCARNATION_BYTES] {
    let mut out = [0u8; ACTOR_INCARNATION_BYTES];
    out.copy_from_slice(&keystore::random_seed()[..ACTOR_INCARNATION_BYTES]);
    out
}

/// A change made on a fork of `doc` at its heads, dated `at_ms`, signed by `signer` whatever
/// its authority.
fn forge(
    network: NetworkId,
    doc: &Document,
    signer: &SecretKey,
    at_ms: i64,
    f: impl FnOnce(&mut AutoCommit),
) -> (Change, ChangeSignature) {
    let mut doc = doc.clone();
    let heads = doc.heads();
    let mut fork = doc.at(&heads).expect("fork at own heads");
    fork.set_actor(actor_for(&signer.public(), &incarnation()));
    f(&mut fork);
    fork.commit_with(CommitOptions::default().with_time(at_ms));
    let change = fork.get_last_local_change().expect("a change").clone();
    let sig = ChangeSignature::sign(network, doc.id(), change.hash(), signer);
    (change, sig)
}

fn add_task(tx: &mut AutoCommit, id: &str, category: kinds::tasks::Category, admission: bool) {
    let task = kinds::tasks::NewTask {
        title: format!("任务 {id}"),
        category,
        due: None,
        assignee: None,
        note: String::new(),
        admission: admission.then(|| kinds::tasks::Admission {
            request_doc: hex::encode([1; 32]),
            request_id: "r-none".to_owned(),
            review: hex::encode([2; 32]),
            approval: hex::encode([3; 32]),
        }),
    };
    kinds::tasks::add_task(tx, id, &task, now_ms()).expect("a valid task");
}

fn duty(tx: &mut AutoCommit, id: &str) {
    add_task(tx, id, kinds::tasks::Category::Duty, false);
}

/// A sync message about `doc` carrying `change` with the given signatures.
fn carrying(doc: DocId, change: &Change, signatures: Vec<ChangeSignature>) -> SyncMessage {
    let message = Message {
        heads: vec![change.hash()],
        need: Vec::new(),
        have: Vec::new(),
        changes: ChunkList::from(vec![change.raw_bytes().to_vec()]),
        flags: None,
        version: MessageVersion::V1,
    };
    let mut msg = raw(
        doc,
        wire::encode_sync_message(message).expect("a V1 message"),
    );
    msg.signatures = Signatures::pack(signatures);
    msg
}

fn raw(doc: DocId, bytes: Vec<u8>) -> SyncMessage {
    SyncMessage {
        doc,
        header: None,
        message: Some(bytes),
        signatures: Signatures::default(),
        certificates: Vec::new(),
        registrations: Vec::new(),
        attestations: Vec::new(),
        set_aside: Vec::new(),
    }
}

/// A sync message that creates a new public document of `kind` and `unit`, signed by `signer`
/// and dated `at_ms`, whatever its authority: one change per edit, in order (the first writes
/// the kind's skeleton).
fn forged_doc(
    network: NetworkId,
    kind: Kind,
    unit: &UnitId,
    signer: &SecretKey,
    at_ms: i64,
    edits: &[&dyn Fn(&mut AutoCommit)],
) -> SyncMessage {
    let header = Header {
        network,
        kind,
        unit: unit.clone(),
        scope: Scope::Public,
        title: format!("{} {at_ms}", kind.as_str()),
        created_at_ms: at_ms,
        schema_version: SCHEMA_VERSION,
        creator: signer.public(),
        period: None,
    }
    .sign(signer);
    let mut doc = AutoCommit::new().with_actor(actor_for(&signer.public(), &incarnation()));
    let changes: Vec<Change> = edits
        .iter()
        .map(|edit| {
            edit(&mut doc);
            doc.commit_with(CommitOptions::default().with_time(at_ms));
            doc.get_last_local_change().expect("a change").clone()
        })
        .collect();
    let id = header.id();
    let message = Message {
        heads: changes.last().map(Change::hash).into_iter().collect(),
        need: Vec::new(),
        have: Vec::new(),
        changes: ChunkList::from(
            changes
                .iter()
                .map(|c| c.raw_bytes().to_vec())
                .collect::<Vec<_>>(),
        ),
        flags: None,
        version: MessageVersion::V1,
    };
    let mut msg = raw(
        id,
        wire::encode_sync_message(message).expect("a V1 message"),
    );
    msg.header = Some(header);
    msg.signatures = Signatures::pack(
        changes
            .iter()
            .map(|c| ChangeSignature::sign(network, id, c.hash(), signer)),
    );
    msg
}

/// A new ledger of `unit` holding `records`.
fn forged_ledger(
    network: NetworkId,
    unit: &UnitId,
    signer: &SecretKey,
    at_ms: i64,
    records: &[TrustRecord],
) -> SyncMessage {
    let skeleton = |d: &mut AutoCommit| kinds::ledger::init(d).unwrap();
    let fill = |d: &mut AutoCommit| {
        for r in records {
            kinds::ledger::put_trust_record(d, &r.id().to_string(), &r.encode()).unwrap();
        }
    };
    forged_doc(
        network,
        Kind::Ledger,
        unit,
        signer,
        at_ms,
        &[&skeleton, &fill],
    )
}

/// A new convention of `unit`, its skeleton only.
fn new_convention(
    network: NetworkId,
    unit: &UnitId,
    signer: &SecretKey,
    at_ms: i64,
) -> SyncMessage {
    let skeleton = |d: &mut AutoCommit| kinds::convention::init(d).unwrap();
    forged_doc(network, Kind::Convention, unit, signer, at_ms, &[&skeleton])
}

// ---- the network ----

struct City {
    genesis: Genesis,
    district: Running,
    community: Running,
    street: Running,
    /// Certified node keys of the rogue's unit, one per rogue.
    rogue_keys: Vec<(SecretKey, Certificate)>,
    /// Certified node keys of 胜利社区, for messages about its own documents.
    insiders: Vec<(SecretKey, Certificate)>,
    qianjin: Unit,
    /// Keys of 胜利社区's writers and of 前进社区's writer.
    wangfang: SecretKey,
    liqiang: SecretKey,
    other_writer: SecretKey,
    /// A writer of 胜利社区 whose certificate expired yesterday.
    expired: SecretKey,
    /// 前进社区's administrator: the attacker of the authority test.
    qianjin_admin: SecretKey,
    /// The district's node key: what the attacker tries to take authority from.
    district_node: SecretKey,
}

/// Provision four units a week ago (so a certificate can have expired with its chain intact),
/// certify the rogue's keys and an expired writer, and start the first three nodes, each
/// dialing its parent.
async fn start(dir: &Path, n_rogues: usize, rogue_unit: &str) -> City {
    let now = now_ms();
    let p = setup::provision(dir, testkit::NETWORK_NAME, &plan(), config, now - 7 * DAY).unwrap();
    let by_unit = |id: &str| p.nodes.iter().find(|n| n.unit.id.as_str() == id).unwrap();
    let (shengli, qianjin) = (by_unit(SHENGLI), by_unit(QIANJIN));
    let qianjin_admin = key_of(&qianjin.dir, "admin");
    let node_keys = |unit: &str, n: usize| -> Vec<(SecretKey, Certificate)> {
        (0..n)
            .map(|i| {
                let key = keystore::generate_key();
                let at = by_unit(unit);
                let cert = setup::certify(
                    &p.genesis,
                    &key_of(&at.dir, "admin"),
                    key.public(),
                    at.unit.id.clone(),
                    Role::Node,
                    format!("{}节点{i}", at.unit.name),
                    now - DAY,
                    setup::YEAR_MS,
                );
                (key, cert)
            })
            .collect()
    };
    let rogue_keys = node_keys(rogue_unit, n_rogues);
    let insiders = node_keys(SHENGLI, 2);
    let expired = keystore::generate_key();
    let expired_cert = setup::certify(
        &p.genesis,
        &key_of(&shengli.dir, "admin"),
        expired.public(),
        shengli.unit.id.clone(),
        Role::Writer,
        "离职的孙丽".to_owned(),
        now - 3 * DAY,
        2 * DAY,
    );
    let mut certs: Vec<Certificate> = rogue_keys
        .iter()
        .chain(&insiders)
        .map(|(_, c)| c.clone())
        .collect();
    certs.push(expired_cert);
    let runs: Vec<&ProvisionedNode> = p
        .nodes
        .iter()
        .filter(|n| n.unit.id.as_str() != QIANJIN)
        .collect();
    for n in &runs {
        setup::import_offline(&n.dir, &p.genesis, &[], &certs).unwrap();
    }
    let mut running = testkit::start(runs).await;
    let community = running.pop().unwrap().running;
    let street = running.pop().unwrap().running;
    let district = running.pop().unwrap().running;
    City {
        genesis: p.genesis.clone(),
        district,
        community,
        street,
        rogue_keys,
        insiders,
        qianjin: qianjin.unit.clone(),
        wangfang: key_of(&shengli.dir, "wangfang"),
        liqiang: key_of(&shengli.dir, "liqiang"),
        other_writer: key_of(&qianjin.dir, "wangfang"),
        expired,
        qianjin_admin,
        district_node: keystore::read_key(&Layout::new(&by_unit("tiedong").dir).node_key())
            .unwrap(),
    }
}

/// Wait until the district holds `doc` with the community's heads.
async fn reaches_district(city: &City, doc: &DocId, within: Duration) -> bool {
    let start = Instant::now();
    while start.elapsed() < within {
        if testkit::heads(&city.district, doc) == testkit::heads(&city.community, doc) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// The node's HTTP API answers `GET /v1/status` with 200 within a second.
async fn healthy(node: &Running) -> bool {
    testkit::api_latency(node.api_addr, &node.shared.token)
        .await
        .is_some()
}

/// What became of a sync request: the answer and, if it was taken, the changes the node says
/// it set aside, or whether the heads of `doc` changed.
async fn sync_outcome(
    rogue: &mut Rogue,
    node: &Running,
    doc: &DocId,
    msg: SyncMessage,
) -> (Outcome, String) {
    let heads = testkit::heads(node, doc);
    let outcome = rogue.request(Request::Sync(Box::new(msg))).await;
    let label = match &outcome {
        Outcome::Answered(Response::Sync(m)) if !m.set_aside.is_empty() => {
            assert_eq!(
                testkit::heads(node, doc),
                heads,
                "set aside, yet the heads changed"
            );
            let reasons: Vec<&str> = m.set_aside.iter().map(|n| n.reason.as_str()).collect();
            format!("set aside {}", reasons.join(" "))
        }
        Outcome::Answered(Response::Sync(_)) if testkit::heads(node, doc) == heads => {
            "accepted, heads unchanged".to_owned()
        }
        Outcome::Answered(Response::Sync(_)) => "accepted, heads changed".to_owned(),
        other => other.label(),
    };
    (outcome, label)
}

fn disconnects_for_offences(node: &Running) -> u64 {
    let text = node.shared.engine().metrics.render();
    text.lines()
        .find_map(|l| l.strip_prefix("linli_disconnects_for_offences_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

impl City {
    fn hello(&self, cert: &Certificate) -> Hello {
        Hello {
            network: self.genesis.network_id(),
            protocol_version: protocol::PROTOCOL_VERSION,
            unit: cert.body.unit.clone(),
            chain: vec![cert.clone()],
            registrations: Vec::new(),
        }
    }

    /// A rogue with a fresh certified key, connected to the community and past hello.
    async fn rogue(&mut self) -> Rogue {
        let (key, cert) = self.rogue_keys.pop().expect("enough rogue keys");
        self.connected(key, cert).await
    }

    /// A rogue with a certified node key of 胜利社区 itself, connected and past hello.
    async fn insider(&mut self) -> Rogue {
        let (key, cert) = self.insiders.pop().expect("enough insider keys");
        self.connected(key, cert).await
    }

    async fn connected(&self, key: SecretKey, cert: Certificate) -> Rogue {
        let mut rogue = Rogue::new(&key, self.hello(&cert), &self.community);
        match rogue.connect().await {
            Outcome::Answered(Response::Hello(_)) => rogue,
            other => panic!("a certified rogue's hello was not accepted: {other:?}"),
        }
    }

    fn tasks(&self) -> DocId {
        self.community
            .shared
            .engine()
            .own_doc(Kind::TaskList)
            .unwrap()
    }

    fn forge(
        &self,
        signer: &SecretKey,
        at_ms: i64,
        f: impl FnOnce(&mut AutoCommit),
    ) -> (Change, ChangeSignature) {
        let tasks = self.tasks();
        let e = self.community.shared.engine();
        forge(
            self.genesis.network_id(),
            e.doc(&tasks).unwrap(),
            signer,
            at_ms,
            f,
        )
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rogue_peer_is_refused_with_reasons_and_the_network_keeps_working() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let mut city = start(dir.path(), 24, SHENGLI).await;
    let tasks = city.tasks();
    assert!(
        reaches_district(&city, &tasks, Duration::from_secs(20)).await,
        "the community's task list never reached the district"
    );
    eprintln!("converged after {:?}", started.elapsed());
    let network = city.genesis.network_id();
    let mut rows: Vec<String> = Vec::new();

    // One class of bad input per rogue key: (name, message).
    let now = now_ms();
    let mut cases: Vec<(&str, SyncMessage)> = Vec::new();
    {
        let (c, _) = city.forge(&city.wangfang, now, |tx| duty(tx, "unsigned"));
        cases.push(("unsigned change", carrying(tasks, &c, Vec::new())));
    }
    {
        let (c, mut s) = city.forge(&city.wangfang, now, |tx| duty(tx, "bad-sig"));
        s.signature.0[3] ^= 0x40;
        cases.push(("bad signature", carrying(tasks, &c, vec![s])));
    }
    {
        let stranger = keystore::generate_key();
        let (c, s) = city.forge(&stranger, now, |tx| duty(tx, "stranger"));
        cases.push(("key without certificate", carrying(tasks, &c, vec![s])));
    }
    {
        let (c, s) = city.forge(&city.other_writer, now, |tx| duty(tx, "other"));
        cases.push(("writer of another community", carrying(tasks, &c, vec![s])));
    }
    {
        let (c, s) = city.forge(&city.expired, now, |tx| duty(tx, "expired"));
        cases.push(("certificate expired", carrying(tasks, &c, vec![s])));
    }
    {
        let (c, s) = city.forge(&city.wangfang, now + 60 * 60 * 1000, |tx| {
            duty(tx, "future")
        });
        cases.push(("dated an hour ahead", carrying(tasks, &c, vec![s])));
    }
    {
        city.community
            .shared
            .engine()
            .revoke(
                city.liqiang.public(),
                None,
                // From the time the forged change claims: signatures from then on do not count.
                Some(now),
                false,
                "钥匙丢失".to_owned(),
                Some("admin"),
            )
            .unwrap();
        let (c, s) = city.forge(&city.liqiang, now, |tx| duty(tx, "revoked"));
        cases.push(("revoked key", carrying(tasks, &c, vec![s])));
    }
    cases.push((
        "zero-bit bloom filter",
        raw(
            tasks,
            hostile::message(&[], &[(&[], hostile::bloom(1, 0, 1, 0))], &[], None),
        ),
    ));
    cases.push((
        "u32::MAX bloom probes",
        raw(
            tasks,
            hostile::message(&[], &[(&[], hostile::bloom(1, 10, u32::MAX, 2))], &[], None),
        ),
    ));
    cases.push((
        "deflate bomb",
        // 5 KB that inflate to 5 MB, over the 4 MiB change limit.
        raw(
            tasks,
            hostile::message(
                &[],
                &[],
                &[hostile::chunk(
                    hostile::CHUNK_TYPE_COMPRESSED,
                    &hostile::deflate_bomb(20_000),
                )],
                None,
            ),
        ),
    ));
    cases.push((
        "garbage bytes",
        raw(tasks, b"\x42 this is not automerge".to_vec()),
    ));
    {
        let (c, s) = city.forge(&city.wangfang, now, |tx| {
            add_task(tx, "adm-1", kinds::tasks::Category::Admitted, true)
        });
        cases.push((
            "admitted task without approvals",
            carrying(tasks, &c, vec![s]),
        ));
    }
    {
        let header = Header {
            network,
            kind: Kind::Convention,
            unit: city.qianjin.id.clone(),
            scope: Scope::Unit,
            title: "前进社区内部公约".to_owned(),
            created_at_ms: now,
            schema_version: SCHEMA_VERSION,
            creator: city.other_writer.public(),
            period: None,
        }
        .sign(&city.other_writer);
        let mut msg = raw(header.id(), hostile::message(&[], &[], &[], None));
        msg.header = Some(header);
        cases.push(("unit document of another unit", msg));
    }

    for (name, msg) in cases {
        let mut rogue = city.rogue().await;
        let doc = msg.doc;
        let (outcome, label) = sync_outcome(&mut rogue, &city.community, &doc, msg).await;
        eprintln!("{name}: {}", outcome.detail());
        let health = if healthy(&city.community).await {
            "healthy"
        } else {
            "UNHEALTHY"
        };
        rows.push(format!("{name}: {label}, {health}"));
    }

    // Every refusal above is counted under its reason, those outside the model too.
    {
        let text = city.community.shared.engine().metrics.render();
        for reason in [
            "out-of-scope",
            "malformed",
            "unsigned",
            "admission",
            "revoked",
        ] {
            assert!(
                text.contains(&format!("reason=\"{reason}\"")),
                "no metric for {reason}:\n{text}"
            );
        }
    }

    // Another network's hello: refused with the reason, and disconnected.
    {
        let (key, cert) = city.rogue_keys.pop().unwrap();
        let mut hello = city.hello(&cert);
        hello.network = NetworkId([7; 32]);
        let mut rogue = Rogue::new(&key, hello, &city.community);
        let outcome = rogue.connect().await;
        eprintln!("hello of another network: {}", outcome.detail());
        let counted = city.community.shared.engine().metrics.render();
        eprintln!(
            "the community counted: {:?}",
            counted
                .lines()
                .filter(|l| l.contains("wrong-network"))
                .collect::<Vec<_>>()
        );
        let closed = rogue.closed_within(Duration::from_secs(2)).await;
        rows.push(format!(
            "hello of another network: {}, {}, {}",
            outcome.label(),
            if closed {
                "disconnected"
            } else {
                "still connected"
            },
            if healthy(&city.community).await {
                "healthy"
            } else {
                "UNHEALTHY"
            }
        ));
    }

    // An honest change, relayed by the rogue, twice: applied once, then a no-op.
    {
        let mut rogue = city.rogue().await;
        let (c, s) = city.forge(&city.wangfang, now_ms(), |tx| duty(tx, "honest"));
        let msg = carrying(tasks, &c, vec![s]);
        for name in ["honest change", "same change again"] {
            let before = testkit::heads(&city.community, &tasks);
            let outcome = rogue.request(Request::Sync(Box::new(msg.clone()))).await;
            let after = testkit::heads(&city.community, &tasks);
            rows.push(format!(
                "{name}: {}, {}, {}",
                outcome.label(),
                if before == after {
                    "heads unchanged"
                } else {
                    "heads changed"
                },
                if healthy(&city.community).await {
                    "healthy"
                } else {
                    "UNHEALTHY"
                }
            ));
        }
        assert!(
            testkit::heads(&city.community, &tasks)
                .unwrap()
                .contains(&c.hash()),
            "the honest change is at the community"
        );
    }

    // Over the community's message limit: the codec refuses it before the engine sees it, and
    // only that stream is dropped: the same connection serves the next request.
    {
        let mut rogue = city.rogue().await;
        let big = raw(tasks, vec![0x42; MESSAGE_BYTES_MAX as usize + 1]);
        let outcome = rogue.request(Request::Sync(Box::new(big))).await;
        eprintln!("message over message_bytes_max: {}", outcome.detail());
        let next = rogue.request(Request::Hello(rogue.hello.clone())).await;
        rows.push(format!(
            "message over message_bytes_max: {}, next request {}, {}",
            outcome.label(),
            next.label(),
            if healthy(&city.community).await {
                "healthy"
            } else {
                "UNHEALTHY"
            }
        ));
    }

    // Refusals an honest relay cannot avoid — a change its author signed after a revocation
    // the relay had not yet seen — are not offences: more of them than `offences_max` leave
    // the peer connected.
    {
        let before = disconnects_for_offences(&city.community);
        let mut rogue = city.rogue().await;
        let mut labels = Vec::new();
        for i in 0..=OFFENCES_MAX {
            let (c, s) = city.forge(&city.liqiang, now_ms(), |tx| {
                duty(tx, &format!("relayed-{i}"))
            });
            let (_, label) = sync_outcome(
                &mut rogue,
                &city.community,
                &tasks,
                carrying(tasks, &c, vec![s]),
            )
            .await;
            labels.push(label);
        }
        let closed = rogue.closed_within(Duration::from_millis(500)).await;
        rows.push(format!(
            "{} relayed refusals: {}, {}, disconnects_for_offences +{}",
            OFFENCES_MAX + 1,
            labels.join(", "),
            if closed {
                "disconnected"
            } else {
                "still connected"
            },
            disconnects_for_offences(&city.community) - before
        ));
    }

    // Repeated offences: disconnected after `offences_max`, then refused for the ban.
    {
        let before = disconnects_for_offences(&city.community);
        let mut rogue = city.rogue().await;
        let mut labels = Vec::new();
        for i in 0..OFFENCES_MAX {
            let (c, _) = city.forge(&city.wangfang, now_ms(), |tx| {
                duty(tx, &format!("offence-{i}"))
            });
            let outcome = rogue
                .request(Request::Sync(Box::new(carrying(tasks, &c, Vec::new()))))
                .await;
            eprintln!("offence {i}: {}", outcome.detail());
            labels.push(outcome.label());
        }
        let closed = rogue.closed_within(Duration::from_secs(2)).await;
        rows.push(format!(
            "{OFFENCES_MAX} offences: {}, {}, disconnects_for_offences +{}",
            labels.join(", "),
            if closed {
                "disconnected"
            } else {
                "still connected"
            },
            disconnects_for_offences(&city.community) - before
        ));
        // However the node refuses (at the dial, by closing, or by refusing the hello), the
        // rogue must not get its hello accepted again before the ban ends.
        let again = rogue.connect().await;
        eprintln!(
            "redial within the ban: {} {}",
            again.label(),
            again.detail()
        );
        rows.push(format!(
            "redial within the ban: {}",
            match again {
                Outcome::Answered(Response::Hello(_)) => "hello accepted",
                _ => "refused",
            }
        ));
    }

    // The honest network still syncs: an edit at the community reaches the district, and
    // nothing refused got into any store.
    {
        let op = Op::TaskAdd {
            id: Some("after-attack".to_owned()),
            task: kinds::tasks::NewTask {
                title: "检查消防通道".to_owned(),
                category: kinds::tasks::Category::Duty,
                due: None,
                assignee: None,
                note: String::new(),
                admission: None,
            },
        };
        city.community
            .shared
            .engine()
            .apply(&tasks, &op, Some("wangfang"))
            .unwrap();
        city.community
            .shared
            .net
            .send(NetCommand::Announce)
            .await
            .unwrap();
        let synced = reaches_district(&city, &tasks, Duration::from_secs(10)).await;
        rows.push(format!(
            "honest edit afterwards: {}",
            if synced {
                "reached the district"
            } else {
                "did NOT reach the district"
            }
        ));
        for node in [&city.district, &city.community] {
            let problems = node.shared.engine().verify();
            assert!(problems.is_empty(), "{problems:?}");
        }
    }

    eprintln!("hostile test took {:?}", started.elapsed());
    expect![[r#"
        unsigned change: rejected unsigned, healthy
        bad signature: rejected bad-signature, healthy
        key without certificate: set aside unknown-key, healthy
        writer of another community: set aside not-permitted, healthy
        certificate expired: set aside expired, healthy
        dated an hour ahead: set aside future-timestamp, healthy
        revoked key: set aside revoked, healthy
        zero-bit bloom filter: rejected malformed, healthy
        u32::MAX bloom probes: rejected limit-exceeded, healthy
        deflate bomb: rejected malformed, healthy
        garbage bytes: rejected malformed, healthy
        admitted task without approvals: rejected admission, healthy
        unit document of another unit: rejected out-of-scope, healthy
        hello of another network: rejected wrong-network, disconnected, healthy
        honest change: accepted, heads changed, healthy
        same change again: accepted, heads unchanged, healthy
        message over message_bytes_max: failed, next request hello, healthy
        4 relayed refusals: set aside revoked, set aside revoked, set aside revoked, set aside revoked, still connected, disconnects_for_offences +0
        3 offences: rejected unsigned, rejected unsigned, rejected unsigned, disconnected, disconnects_for_offences +1
        redial within the ban: refused
        honest edit afterwards: reached the district
    "#]]
    .assert_eq(&(rows.join("\n") + "\n"));

    for node in [city.community, city.street, city.district] {
        node.stop().await;
    }
}

/// A community administrator (前进社区's) forges trust records to take authority it does not
/// hold, and sends them over the wire in a ledger of its own community, the one document kind
/// that carries them: it revokes the district's node key over the whole district, renames a
/// neighbouring community, certifies a key as the district's administrator (which then
/// registers a street) and a writer of its neighbour. The community takes the ledger — it is
/// its author's to write — and judges every record in it: none has any effect outside 前进社区,
/// a grid it registers under its own community does, and the district's node keeps syncing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_authority_travels_but_takes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut city = start(dir.path(), 6, QIANJIN).await;
    let tasks = city.tasks();
    assert!(
        reaches_district(&city, &tasks, Duration::from_secs(20)).await,
        "the community's task list never reached the district"
    );
    let network = city.genesis.network_id();
    let now = now_ms();
    let attacker = city.qianjin_admin.clone();
    let qianjin = city.qianjin.id.clone();
    let district = UnitId::new("tiedong").unwrap();
    let shengli = UnitId::new(SHENGLI).unwrap();
    let grid = UnitId::new("tiedong/jiefang/qianjin/g1").unwrap();
    let evil = UnitId::new("tiedong/evil").unwrap();
    let certify = |subject: &SecretKey, unit: &UnitId, role: Role| {
        Certificate::issue(
            CertBody {
                network,
                subject: subject.public(),
                unit: unit.clone(),
                role,
                holder: "伪造".to_owned(),
                issuer: attacker.public(),
                issued_at_ms: now - 60 * 60 * 1000,
                expires_at_ms: now + 50 * 365 * DAY,
            },
            &attacker,
        )
    };
    let register = |issuer: &SecretKey, unit: &UnitId, kind: UnitKind, name: &str, at_ms| {
        TrustRecord::Registration(Registration::issue(
            RegistrationBody {
                network,
                unit: Unit {
                    id: unit.clone(),
                    kind,
                    name: name.to_owned(),
                },
                issuer: issuer.public(),
                at_ms,
            },
            issuer,
        ))
    };
    let fake_district_admin = keystore::generate_key();
    let neighbour_writer = keystore::generate_key();
    let records = vec![
        TrustRecord::Certificate(certify(&city.district_node, &qianjin, Role::Node)),
        TrustRecord::Revocation(Revocation::issue(
            RevocationBody {
                network,
                key: city.district_node.public(),
                issuer: attacker.public(),
                unit: district.clone(),
                at_ms: now - 1_000,
                cutoff_ms: now - 2 * DAY,
                reason: "夺权".to_owned(),
                keep_issued: false,
            },
            &attacker,
        )),
        register(
            &attacker,
            &shengli,
            UnitKind::Community,
            "被夺取社区",
            now - 1_000,
        ),
        TrustRecord::Certificate(certify(&fake_district_admin, &district, Role::Admin)),
        register(
            &fake_district_admin,
            &evil,
            UnitKind::Street,
            "伪造街道",
            now - 1_000,
        ),
        TrustRecord::Certificate(certify(&neighbour_writer, &shengli, Role::Writer)),
        register(&attacker, &grid, UnitKind::Grid, "第一网格", now - 1_000),
    ];
    let mut rows: Vec<String> = Vec::new();

    let (key, cert) = city.rogue_keys.pop().unwrap();
    let mut hello = city.hello(&cert);
    // The hello carries a renaming too; a hello is judged by the same rules.
    hello.registrations.push(
        match register(&attacker, &shengli, UnitKind::Street, "错级", now - 500) {
            TrustRecord::Registration(r) => r,
            _ => unreachable!(),
        },
    );
    let mut rogue = Rogue::new(&key, hello, &city.community);
    rows.push(format!(
        "hello with a forged registration: {}",
        rogue.connect().await.label()
    ));
    let outcome = rogue
        .request(Request::Sync(Box::new(forged_ledger(
            network,
            &qianjin,
            &key,
            now - 500,
            &records,
        ))))
        .await;
    eprintln!("forged ledger: {}", outcome.detail());
    rows.push(format!(
        "ledger of forged trust records: {}",
        outcome.label()
    ));
    {
        let e = city.community.shared.engine();
        let trust = e.trust();
        let name = |u: &UnitId| {
            trust
                .unit(u)
                .map_or("absent".to_owned(), |u| u.name.clone())
        };
        rows.push(format!("胜利社区 is named: {}", name(&shengli)));
        rows.push(format!("tiedong/evil: {}", name(&evil)));
        rows.push(format!("the attacker's own grid: {}", name(&grid)));
        let as_node = trust.authorize(&city.district_node.public(), now, |u, role| {
            role == Role::Node && u.id == district
        });
        rows.push(format!(
            "the district's node key: {}",
            if as_node.is_ok() { "in force" } else { "CUT" }
        ));
        let as_admin = trust.authorize(&fake_district_admin.public(), now, |u, role| {
            role == Role::Admin && u.id == district
        });
        rows.push(format!(
            "the forged district admin: {}",
            match as_admin {
                Ok(_) => "GRANTED".to_owned(),
                Err(linli_crdt_model::trust::Denied::Untrusted(_)) =>
                    "denied, untrusted".to_owned(),
                Err(d) => format!("denied: {d}"),
            }
        ));
    }

    // A change signed by another writer the neighbour's admin certified, carrying its
    // certificate (which nothing else brought here).
    {
        let neighbour_writer = keystore::generate_key();
        let (c, s) = city.forge(&neighbour_writer, now_ms(), |tx| duty(tx, "neighbour"));
        let mut msg = carrying(tasks, &c, vec![s]);
        msg.certificates = vec![certify(&neighbour_writer, &shengli, Role::Writer)];
        let mut rogue = city.insider().await;
        let (_, label) = sync_outcome(&mut rogue, &city.community, &tasks, msg).await;
        // The change is set aside, so nothing proves the certificate it carried: not kept.
        let kept = !city
            .community
            .shared
            .engine()
            .trust()
            .certificates_of(&neighbour_writer.public())
            .is_empty();
        rows.push(format!(
            "writer certified by a neighbour's admin: {label}, its certificate {}",
            if kept { "KEPT" } else { "not kept" }
        ));
    }

    // A review and an approval signed by the district admin the attacker certified, carried
    // with its certificate and a change of 王芳's (deceived or complicit) that admits a task on
    // them: the community refuses the admission.
    {
        // A district admin key only this message carries (not the ledger above).
        let approver = keystore::generate_key();
        let request_doc = DocId([7; 32]);
        let attest = |statement| {
            Attestation::issue(
                AttestationBody {
                    network,
                    issuer: approver.public(),
                    statement,
                    doc: request_doc,
                    doc_unit: district.clone(),
                    heads: Vec::new(),
                    subject: Some("r-forged".to_owned()),
                    targets: vec![shengli.clone()],
                    at_ms: now - 1_000,
                    note: String::new(),
                    checkpoint: Vec::new(),
                },
                &approver,
            )
        };
        let (review, approval) = (attest(Statement::Reviewed), attest(Statement::Approved));
        let (c, s) = city.forge(&city.wangfang, now_ms(), |tx| {
            let task = kinds::tasks::NewTask {
                title: "伪造准入".to_owned(),
                category: kinds::tasks::Category::Admitted,
                due: None,
                assignee: None,
                note: String::new(),
                admission: Some(kinds::tasks::Admission {
                    request_doc: hex::encode(request_doc.0),
                    request_id: "r-forged".to_owned(),
                    review: review.id().to_string(),
                    approval: approval.id().to_string(),
                }),
            };
            kinds::tasks::add_task(tx, "forged-admission", &task, now_ms()).unwrap();
        });
        let mut msg = carrying(tasks, &c, vec![s]);
        msg.certificates = vec![certify(&approver, &district, Role::Admin)];
        msg.attestations = vec![review, approval];
        let mut rogue = city.insider().await;
        let outcome = rogue.request(Request::Sync(Box::new(msg))).await;
        eprintln!("forged approval: {}", outcome.detail());
        let e = city.community.shared.engine();
        let kept = !e.trust().certificates_of(&approver.public()).is_empty()
            || e.store()
                .certificates()
                .unwrap()
                .iter()
                .any(|c| c.body.subject == approver.public());
        rows.push(format!(
            "admission on a forged district approval: {}, its certificate {}",
            outcome.label(),
            if kept { "KEPT" } else { "not kept" }
        ));
    }

    // A registration dated a year ahead never enters a ledger.
    {
        let g2 = UnitId::new("tiedong/jiefang/qianjin/g2").unwrap();
        let ahead = register(&attacker, &g2, UnitKind::Grid, "未来网格", now + 365 * DAY);
        let (key, cert) = city.rogue_keys.pop().unwrap();
        let mut rogue = Rogue::new(&key, city.hello(&cert), &city.community);
        rogue.connect().await;
        let outcome = rogue
            .request(Request::Sync(Box::new(forged_ledger(
                network,
                &qianjin,
                &key,
                now_ms(),
                &[ahead],
            ))))
            .await;
        eprintln!("registration dated a year ahead: {}", outcome.detail());
        rows.push(format!(
            "registration dated a year ahead: {}",
            outcome.label()
        ));
    }

    // The district still registers a unit, and its signed ledger reaches the community.
    {
        let xingfu = Unit {
            id: UnitId::new("tiedong/jiefang/xingfu").unwrap(),
            kind: UnitKind::Community,
            name: "幸福社区".to_owned(),
        };
        city.district
            .shared
            .engine()
            .register_unit(xingfu.clone(), Some("admin"))
            .unwrap();
        city.district
            .shared
            .net
            .send(NetCommand::Announce)
            .await
            .unwrap();
        let start = Instant::now();
        let mut reached = false;
        while start.elapsed() < Duration::from_secs(15) {
            if city
                .community
                .shared
                .engine()
                .trust()
                .unit(&xingfu.id)
                .is_some()
            {
                reached = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        rows.push(format!(
            "the district's registration afterwards: {}",
            if reached {
                "reached the community"
            } else {
                "did NOT reach the community"
            }
        ));
    }

    // The refused ledger left nothing behind: no header, no empty document.
    let problems = city.community.shared.engine().verify();
    rows.push(format!("verify at the community: {problems:?}"));

    expect![[r#"
        hello with a forged registration: hello
        ledger of forged trust records: accepted
        胜利社区 is named: 胜利社区
        tiedong/evil: absent
        the attacker's own grid: 第一网格
        the district's node key: in force
        the forged district admin: denied, untrusted
        writer certified by a neighbour's admin: set aside untrusted, its certificate not kept
        admission on a forged district approval: rejected admission, its certificate not kept
        registration dated a year ahead: rejected schema-violation
        the district's registration afterwards: reached the community
        verify at the community: []
    "#]]
    .assert_eq(&(rows.join("\n") + "\n"));

    for node in [city.community, city.street, city.district] {
        node.stop().await;
    }
}

/// One valid writer cannot make a node hold unbounded documents: beyond
/// `new_docs_per_writer_per_day_max` created within a day, the next is refused as over budget
/// (not an offence: a relay may carry an honest writer's work), and the peer stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_documents_per_writer_are_budgeted() {
    let dir = tempfile::tempdir().unwrap();
    let mut city = start(dir.path(), 2, SHENGLI).await;
    let network = city.genesis.network_id();
    let qianjin = city.qianjin.id.clone();
    let writer = city.other_writer.clone();
    let now = now_ms();
    let mut rogue = city.rogue().await;
    let mut labels = Vec::new();
    for i in 0..=NEW_DOCS_PER_WRITER_PER_DAY {
        let msg = new_convention(network, &qianjin, &writer, now - i as i64);
        let id = msg.doc;
        let outcome = rogue.request(Request::Sync(Box::new(msg))).await;
        eprintln!("convention {i}: {}", outcome.detail());
        let held = city.community.shared.engine().doc(&id).is_ok();
        labels.push(format!(
            "{} ({})",
            outcome.label(),
            if held { "held" } else { "not held" }
        ));
    }
    let closed = rogue.closed_within(Duration::from_millis(300)).await;
    expect![[r#"
        accepted (held), accepted (held), rejected over-budget (not held); still connected
    "#]]
    .assert_eq(&format!(
        "{}; {}\n",
        labels.join(", "),
        if closed {
            "disconnected"
        } else {
            "still connected"
        }
    ));
    for node in [city.community, city.street, city.district] {
        node.stop().await;
    }
}
