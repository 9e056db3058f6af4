//! Changes a node sets aside, between real nodes over TCP on loopback.
//!
//! An honest relay: a community node took a worker's visit before it heard that the district
//! had revoked the worker from a time before it. When it meets the district, the district sets
//! that visit aside (and what was built on it), takes everything else, and neither node holds
//! the other at fault: they stay connected, every other document converges, and the revocation
//! reaches the community.
//!
//! An equivocating writer: a scripted libp2p peer (request-response only, driven by hand, not
//! the node's own code path) holding a certified community node key and a certified worker's
//! key sends the district two different changes by the worker with one actor and sequence
//! number. The first is taken, the second set aside as an equivocation, with evidence the
//! district keeps across a restart; the sender is not disconnected. A community node fed the
//! other half first then meets the district: neither bans the other, each keeps its half, and
//! each proves the equivocation.
//!
//! Both tests probe every node's HTTP API and read the process's peak resident memory while
//! the nodes meet, and print both.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use automerge::sync::{ChunkList, Message, MessageVersion};
use automerge::transaction::CommitOptions;
use automerge::{Change, ChangeHash};
use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::SwarmEvent;
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, noise, tcp, yamux};
use linli_crdt_model::cert::{Certificate, Role};
use linli_crdt_model::doc::{DocId, SignedHeader};
use linli_crdt_model::document::{ACTOR_INCARNATION_BYTES, ChangeSignature, Document, actor_for};
use linli_crdt_model::genesis::NetworkId;
use linli_crdt_model::keys::SecretKey;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::sync::Signatures;
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_crdt_model::wire;
use linli_node::clock::now_ms;
use linli_node::config::{Config, Layout};
use linli_node::contract::{CreateDoc, Op};
use linli_node::engine::Engine;
use linli_node::keystore;
use linli_node::net::{self, Transports};
use linli_node::protocol::{self, Hello, Request, Response, SetAsideNote, SyncMessage};
use linli_node::run::{self, Options, Running};
use linli_node::setup::{self, PlanPerson, PlanUnit, Provisioned};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use common::{figures, watched};

const DISTRICT: &str = "tiedong";
const STREET: &str = "tiedong/jiefang";
const SHENGLI: &str = "tiedong/jiefang/shengli";
const ANTI_ENTROPY_MS: u64 = 400;
/// How long the nodes get to reach each state the tests wait for.
const WITHIN: Duration = Duration::from_secs(20);
const DISCONNECTS: &str = "linli_disconnects_for_offences_total ";

fn unit(id: &str, kind: UnitKind, name: &str) -> Unit {
    Unit {
        id: UnitId::new(id).unwrap(),
        kind,
        name: name.to_owned(),
    }
}

fn writer(handle: &str, holder: &str) -> PlanPerson {
    PlanPerson {
        handle: handle.to_owned(),
        holder: holder.to_owned(),
        role: Role::Writer,
    }
}

/// 铁东区 → 解放街道 → 胜利社区, whose workers are 王芳 (`wangfang`) and 李强 (`liqiang`).
fn plan() -> Vec<PlanUnit> {
    vec![
        PlanUnit {
            unit: unit(DISTRICT, UnitKind::District, "铁东区"),
            people: Vec::new(),
        },
        PlanUnit {
            unit: unit(STREET, UnitKind::Street, "解放街道"),
            people: Vec::new(),
        },
        PlanUnit {
            unit: unit(SHENGLI, UnitKind::Community, "胜利社区"),
            people: vec![writer("wangfang", "王芳"), writer("liqiang", "李强")],
        },
    ]
}

fn config(u: &Unit) -> Config {
    let mut c = Config::new(u.id.clone());
    c.network.mdns = false;
    c.network.redial_interval_ms = 200;
    c.sync.anti_entropy_interval_ms = ANTI_ENTROPY_MS;
    c.sync.request_timeout_ms = 5_000;
    c.checkpoint.interval_ms = 0;
    c
}

fn provision(dir: &Path) -> Provisioned {
    setup::provision(dir, "铁东区邻里网", &plan(), config, now_ms() - 60_000).unwrap()
}

fn dir_of<'a>(p: &'a Provisioned, unit: &str) -> &'a Path {
    &p.nodes
        .iter()
        .find(|n| n.unit.id.as_str() == unit)
        .unwrap()
        .dir
}

fn key_of(dir: &Path, handle: &str) -> SecretKey {
    keystore::read_key(&Layout::new(dir).people().join(format!("{handle}.key"))).unwrap()
}

/// Start `engine` listening on loopback TCP, dialling `bootstrap`.
async fn start(engine: Engine, bootstrap: Vec<Multiaddr>) -> Running {
    run::start_engine(
        engine,
        Options {
            transports: Transports::Real,
            listen: Some(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]),
            bootstrap,
        },
    )
    .await
    .unwrap()
}

fn heads_of(node: &Running, doc: &DocId) -> Option<Vec<ChangeHash>> {
    let mut e = node.shared.engine();
    let mut heads = e.doc_mut(doc).ok()?.heads();
    heads.sort();
    Some(heads)
}

fn holds(node: &Running, doc: &DocId, change: &ChangeHash) -> bool {
    node.shared
        .engine()
        .doc_mut(doc)
        .is_ok_and(|d| d.has_change(change))
}

fn metric(node: &Running, line_prefix: &str) -> u64 {
    let text = node.shared.engine().metrics.render();
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

fn rejections(node: &Running, reason: &str) -> u64 {
    metric(
        node,
        &format!("linli_rejections_total{{reason=\"{reason}\"}} "),
    )
}

/// Whether `node` is connected to a peer that said hello as a node of `unit`.
fn connected_to(node: &Running, unit: &str) -> bool {
    node.shared
        .peers()
        .iter()
        .any(|p| p.connected && p.unit.as_deref() == Some(unit))
}

/// Documents that `a` and `b` may both hold, other than `except`, that either lacks or that
/// they hold with different heads.
fn divergence(a: &Running, b: &Running, except: &[DocId]) -> Vec<String> {
    let held = |n: &Running| {
        let mut e = n.shared.engine();
        let me = e.unit().id.clone();
        let docs: Vec<(DocId, UnitId, linli_crdt_model::doc::Scope, Vec<ChangeHash>)> = e
            .doc_ids()
            .into_iter()
            .map(|id| {
                let d = e.doc_mut(&id).unwrap();
                let h = d.header().header.clone();
                let mut heads = d.heads();
                heads.sort();
                (id, h.unit, h.scope, heads)
            })
            .collect();
        (me, docs)
    };
    let ((unit_a, docs_a), (unit_b, docs_b)) = (held(a), held(b));
    let mut out = Vec::new();
    for (id, owner, scope, _) in docs_a.iter().chain(&docs_b) {
        if except.contains(id) || !scope.may_hold(owner, &unit_a) || !scope.may_hold(owner, &unit_b)
        {
            continue;
        }
        let find = |docs: &[(DocId, UnitId, _, Vec<ChangeHash>)]| {
            docs.iter()
                .find(|(d, ..)| d == id)
                .map(|(.., heads)| heads.clone())
        };
        let (ha, hb) = (find(&docs_a), find(&docs_b));
        let what = match (&ha, &hb) {
            (None, _) => format!("{unit_a} lacks {}", id.short()),
            (_, None) => format!("{unit_b} lacks {}", id.short()),
            (Some(x), Some(y)) if x != y => format!("heads differ on {}", id.short()),
            _ => continue,
        };
        if !out.contains(&what) {
            out.push(what);
        }
    }
    out
}

/// Poll `check` every 50 ms until it finds nothing wrong (`None`); how long that took. Panics
/// with what was still wrong after `within`.
async fn until(
    what: &str,
    within: Duration,
    mut check: impl FnMut() -> Option<String>,
) -> Duration {
    let started = Instant::now();
    loop {
        let wrong = check();
        match wrong {
            None => return started.elapsed(),
            Some(w) if started.elapsed() > within => {
                panic!("{what}: not so after {within:?}: {w}")
            }
            Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// `GET path` on the node's HTTP API: the status code and body.
async fn api_get(node: &Running, path: &str) -> (u16, String) {
    let addr = node.api_addr;
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
        node.shared.token
    );
    s.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8(answer).unwrap();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

// ---- an honest relay of a change revoked after it took it ----

/// 胜利社区's node runs alone. 王芳 records a visit there at T, and the node then assigns a
/// household in the same log, on top of her visit; 李强 adds a task to the community's task
/// list. Meanwhile the district's administrator, on the district's node (not yet running),
/// revokes 王芳 over 胜利社区 from a second before T. Then the district's node starts and dials
/// the community's.
///
/// The district sets 王芳's visit aside as `revoked`, and the assignment made on top of it as
/// `depends-on-set-aside`: Automerge applies a change only once all its dependencies are in
/// the document, and the revoked visit never will be, so every later change the community
/// makes to that log depends on it and the district can never take any of them (the log stays
/// apart at the district until the community's copy is repaired by hand). That is the
/// community's honest relay, not its fault: the two stay connected and neither disconnects the
/// other, although the district sets the visit aside again at every anti-entropy round, more
/// often than `offences_max`. Every other document converges, 李强's task list included, and
/// the revocation reaches the community, whose audit then flags the visit it holds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_honest_relay_of_a_change_revoked_after_it_took_it() {
    const TEST: &str = "an_honest_relay_of_a_change_revoked_after_it_took_it";
    let dir = tempfile::tempdir().unwrap();
    let p = provision(dir.path());
    let (d_dir, c_dir) = (dir_of(&p, DISTRICT), dir_of(&p, SHENGLI));
    let wang = key_of(c_dir, "wangfang").public();

    // The community alone: 王芳's visit, an assignment on top of it, 李强's task.
    let community = start(Engine::open(c_dir).unwrap(), Vec::new()).await;
    let (log, tasks, visit, on_top, t) = {
        let mut e = community.shared.engine();
        let log = e
            .create(
                CreateDoc {
                    kind: Kind::VisitLog,
                    title: "胜利社区 2026-11 走访记录".to_owned(),
                    scope: None,
                    period: Some("2026-11".to_owned()),
                    minutes: None,
                },
                None,
            )
            .unwrap();
        let assign = |household: &str, worker: &str| Op::VisitAssign {
            household_id: household.to_owned(),
            assignment: kinds::visits::Assignment {
                worker: worker.to_owned(),
                household_name: format!("住户{household}"),
                kind: kinds::visits::HouseholdKind::Household,
                grid: None,
                address: "胜利路".to_owned(),
            },
        };
        e.apply(&log, &assign("h1", "王芳"), None).unwrap();
        let t = now_ms();
        let visit = e
            .apply(
                &log,
                &Op::VisitAdd {
                    id: None,
                    household_id: "h1".to_owned(),
                    worker: "王芳".to_owned(),
                    date: "2026-11-05".to_owned(),
                    mode: kinds::visits::Mode::Door,
                    needs: vec!["需要助餐".to_owned()],
                    follow_up: None,
                },
                Some("wangfang"),
            )
            .unwrap();
        assert_eq!(visit.author, wang.to_string());
        let on_top = e.apply(&log, &assign("h2", "李强"), None).unwrap();
        let tasks = e.own_doc(Kind::TaskList).unwrap();
        e.apply(
            &tasks,
            &Op::TaskAdd {
                id: Some("t-li".to_owned()),
                task: kinds::tasks::NewTask {
                    title: "楼道堆物清理".to_owned(),
                    category: kinds::tasks::Category::Duty,
                    due: None,
                    assignee: Some("李强".to_owned()),
                    note: String::new(),
                    admission: None,
                },
            },
            Some("liqiang"),
        )
        .unwrap();
        let hash = |r: &linli_node::contract::Receipt| ChangeHash(hex_32(&r.change));
        (log, tasks, hash(&visit), hash(&on_top), t)
    };
    let mut log_before_visit = {
        let mut e = community.shared.engine();
        let d = e.doc_mut(&log).unwrap();
        let c = d.changes().into_iter().find(|c| c.hash() == visit).unwrap();
        c.deps().to_vec()
    };
    log_before_visit.sort();

    // Meanwhile, at the district, offline: 王芳 revoked over 胜利社区 from a second before T.
    let mut district_engine = Engine::open(d_dir).unwrap();
    let revocation = district_engine
        .revoke(
            wang,
            Some(UnitId::new(SHENGLI).unwrap()),
            Some(t - 1_000),
            false,
            "调离岗位".to_owned(),
            Some("admin"),
        )
        .unwrap();
    assert!(district_engine.trust().is_revoked(&wang));
    assert!(!community.shared.engine().trust().is_revoked(&wang));

    // The district starts and dials the community.
    let district = start(district_engine, vec![community.dial_addr().unwrap()]).await;
    let started = Instant::now();
    let ((report, d_latencies), c_latencies) = watched(
        &community,
        watched(&district, async {
            let connected = until("the nodes connect", WITHIN, || {
                (!(connected_to(&district, SHENGLI) && connected_to(&community, DISTRICT)))
                    .then(|| "not connected both ways".to_owned())
            })
            .await;
            let converged = until("the rest converges", WITHIN, || {
                let d = divergence(&district, &community, &[log]);
                (!d.is_empty()).then(|| format!("{d:?}"))
            })
            .await;
            until("the district sets the visit aside", WITHIN, || {
                let (revoked, depends) = (
                    rejections(&district, "revoked"),
                    rejections(&district, "depends-on-set-aside"),
                );
                let log_heads = heads_of(&district, &log);
                (revoked == 0 || depends == 0 || log_heads.as_ref() != Some(&log_before_visit))
                    .then(|| {
                        format!(
                            "revoked {revoked}, depends-on-set-aside {depends}, the district's log heads {log_heads:?} (before the visit: {log_before_visit:?})"
                        )
                    })
            })
            .await;
            until("the revocation reaches the community", WITHIN, || {
                let e = community.shared.engine();
                let known = e.trust().revocations().any(|(id, _)| *id == revocation.id());
                (!(known && e.trust().is_revoked(&wang)))
                    .then(|| format!("known {known}"))
            })
            .await;
            // The visit is set aside again at every round, more often than `offences_max`
            // offences would take to disconnect the community, were it counted as one.
            let offences_max = u64::from(district.shared.engine().config().sync.offences_max);
            until("the visit is set aside round after round", WITHIN, || {
                let n = rejections(&district, "revoked");
                (n <= offences_max).then(|| format!("set aside {n} times"))
            })
            .await;
            format!(
                "connected after {connected:?}, the rest converged {converged:?} later, {} set-asides as revoked and {} as depending on one within {:?}",
                rejections(&district, "revoked"),
                rejections(&district, "depends-on-set-aside"),
                started.elapsed()
            )
        }),
    )
    .await;
    eprintln!("{TEST}: {report}");

    // The district holds neither the visit nor what was built on it; the community holds both.
    assert!(
        !holds(&district, &log, &visit),
        "the district took the revoked visit"
    );
    assert!(
        !holds(&district, &log, &on_top),
        "the district took a change built on it"
    );
    assert!(holds(&community, &log, &visit) && holds(&community, &log, &on_top));
    assert_eq!(
        district.shared.engine().doc(&log).unwrap().n_deferred(),
        0,
        "nothing set aside waits for a dependency"
    );
    // Nobody was disconnected for offences, and they are still connected.
    for (node, other) in [(&district, SHENGLI), (&community, DISTRICT)] {
        assert_eq!(metric(node, DISCONNECTS), 0, "a disconnect for offences");
        assert!(connected_to(node, other), "no longer connected to {other}");
    }
    assert_eq!(rejections(&community, "revoked"), 0);
    // Everything else is the same on both sides, 李强's task included.
    assert!(divergence(&district, &community, &[log]).is_empty());
    assert!(
        kinds::tasks::hydrate(district.shared.engine().doc(&tasks).unwrap().read())
            .unwrap()
            .tasks
            .contains_key("t-li"),
        "李强's task reached the district"
    );
    // The community's audit flags the visit it took before it knew.
    let audit = community.shared.engine().audit(&log).unwrap();
    let entry = audit
        .changes
        .iter()
        .find(|c| c.hash == visit.to_string())
        .expect("the visit in the community's audit");
    assert_eq!(entry.verdict, "revoked", "{entry:?}");
    for node in [&district, &community] {
        let problems = node.shared.engine().verify();
        let others: Vec<_> = problems
            .iter()
            .filter(|p| p.doc != log.to_string())
            .collect();
        assert!(others.is_empty(), "{others:?}");
    }

    let mut latencies = d_latencies;
    latencies.extend(c_latencies);
    figures(TEST, &latencies);
    district.stop().await;
    community.stop().await;
}

fn hex_32(s: &str) -> [u8; 32] {
    let bytes = hex::decode(s).unwrap();
    bytes.try_into().unwrap()
}

// ---- an equivocating writer ----

type PeerSwarm = Swarm<request_response::cbor::Behaviour<Request, Response>>;

/// What came of one request of the scripted peer's.
#[derive(Debug)]
enum Answer {
    Response(Response),
    Failed(String),
}

impl Answer {
    fn label(&self) -> String {
        match self {
            Answer::Response(Response::Rejected { reason, .. }) => format!("rejected {reason}"),
            Answer::Response(Response::Hello(_)) => "hello".to_owned(),
            Answer::Response(Response::Inventory(_)) => "inventory".to_owned(),
            Answer::Response(Response::Sync(m)) if m.set_aside.is_empty() => "taken".to_owned(),
            Answer::Response(Response::Sync(m)) => {
                let reasons: Vec<&str> = m.set_aside.iter().map(|n| n.reason.as_str()).collect();
                format!("set aside {}", reasons.join(" "))
            }
            Answer::Failed(why) => format!("failed: {why}"),
        }
    }

    fn set_aside(&self) -> Vec<SetAsideNote> {
        match self {
            Answer::Response(Response::Sync(m)) => m.set_aside.clone(),
            other => panic!("not a sync answer: {other:?}"),
        }
    }
}

/// A scripted peer holding a certified community node key: request-response over TCP, driven
/// by hand. It answers the node's hello with its own, echoes the node's inventory (so the node
/// sees nothing to sync with it) and refuses the node's sync messages.
struct Scripted {
    swarm: PeerSwarm,
    hello: Hello,
    node: PeerId,
    addr: Multiaddr,
    connected: bool,
}

impl Scripted {
    fn new(key: &SecretKey, hello: Hello, node: &Running) -> Scripted {
        let behaviour = request_response::Behaviour::with_codec(
            request_response::cbor::codec::Codec::default()
                .set_request_size_maximum(16 * 1024 * 1024)
                .set_response_size_maximum(16 * 1024 * 1024),
            [(
                StreamProtocol::new(protocol::PROTOCOL),
                ProtocolSupport::Full,
            )],
            request_response::Config::default().with_request_timeout(Duration::from_secs(10)),
        );
        let swarm = libp2p::SwarmBuilder::with_existing_identity(net::keypair(key))
            .with_tokio()
            .with_tcp(
                tcp::Config::default(),
                noise::Config::new,
                yamux::Config::default,
            )
            .unwrap()
            .with_behaviour(|_| behaviour)
            .unwrap()
            .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
            .build();
        Scripted {
            swarm,
            hello,
            node: node.peer_id,
            addr: node.dial_addr().expect("the node listens on TCP"),
            connected: false,
        }
    }

    /// Dial the node and say hello; the node's answer.
    async fn connect(&mut self) -> Answer {
        if let Err(e) = self.swarm.dial(self.addr.clone()) {
            return Answer::Failed(format!("dial: {e}"));
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while !self.connected {
            match self.next(deadline).await {
                Some(SwarmEvent::OutgoingConnectionError { error, .. }) => {
                    return Answer::Failed(format!("dial: {error}"));
                }
                Some(other) => self.handle(other),
                None => return Answer::Failed("no connection within 5 s".to_owned()),
            }
        }
        self.request(Request::Hello(self.hello.clone())).await
    }

    /// Send one request and wait for its answer, serving the node's requests meanwhile.
    async fn request(&mut self, request: Request) -> Answer {
        use request_response::{Event, Message};
        let id = self.swarm.behaviour_mut().send_request(&self.node, request);
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            match self.next(deadline).await {
                None => return Answer::Failed("no answer within 10 s".to_owned()),
                Some(SwarmEvent::Behaviour(Event::Message {
                    message:
                        Message::Response {
                            request_id,
                            response,
                        },
                    ..
                })) if request_id == id => return Answer::Response(response),
                Some(SwarmEvent::Behaviour(Event::OutboundFailure {
                    request_id, error, ..
                })) if request_id == id => return Answer::Failed(error.to_string()),
                Some(event) => self.handle(event),
            }
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
            SwarmEvent::ConnectionEstablished { peer_id, .. } if peer_id == self.node => {
                self.connected = true;
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established: 0,
                ..
            } if peer_id == self.node => self.connected = false,
            SwarmEvent::Behaviour(Event::Message {
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            }) => {
                let response = match request {
                    Request::Hello(_) => Response::Hello(self.hello.clone()),
                    Request::Inventory(inv) => Response::Inventory(inv),
                    Request::Sync(_) => Response::Rejected {
                        reason: "scripted".to_owned(),
                        detail: "this peer does not sync".to_owned(),
                    },
                };
                let _ = self.swarm.behaviour_mut().send_response(channel, response);
            }
            _ => {}
        }
    }
}

/// A V1 sync message about `doc` carrying `changes` (in order, the last one the head), with
/// their signatures, and the document's header if given.
fn carrying(
    doc: DocId,
    header: Option<SignedHeader>,
    changes: &[(Change, ChangeSignature)],
) -> SyncMessage {
    let message = Message {
        heads: vec![changes.last().expect("a change").0.hash()],
        need: Vec::new(),
        have: Vec::new(),
        changes: ChunkList::from(
            changes
                .iter()
                .map(|(c, _)| c.raw_bytes().to_vec())
                .collect::<Vec<_>>(),
        ),
        flags: None,
        version: MessageVersion::V1,
    };
    SyncMessage {
        doc,
        header,
        message: Some(wire::encode_sync_message(message).expect("a V1 message")),
        signatures: Signatures::pack(changes.iter().map(|(_, s)| s.clone())),
        certificates: Vec::new(),
        registrations: Vec::new(),
        attestations: Vec::new(),
        set_aside: Vec::new(),
    }
}

/// A change adding task `id` to `base` at its heads, under `actor`-incarnation `inc` of
/// `author`, dated `at_ms` and signed by `author`.
fn forge(
    network: NetworkId,
    base: &Document,
    author: &SecretKey,
    inc: &[u8; ACTOR_INCARNATION_BYTES],
    at_ms: i64,
    id: &str,
) -> (Change, ChangeSignature) {
    let mut doc = base.clone();
    let heads = doc.heads();
    let mut fork = doc.at(&heads).expect("fork at own heads");
    fork.set_actor(actor_for(&author.public(), inc));
    let task = kinds::tasks::NewTask {
        title: format!("入户走访 {id}"),
        category: kinds::tasks::Category::Duty,
        due: None,
        assignee: Some("王芳".to_owned()),
        note: String::new(),
        admission: None,
    };
    kinds::tasks::add_task(&mut fork, id, &task, at_ms).expect("a valid task");
    fork.commit_with(CommitOptions::default().with_time(at_ms));
    let change = fork.get_last_local_change().expect("a change").clone();
    let sig = ChangeSignature::sign(network, doc.id(), change.hash(), author);
    (change, sig)
}

/// The one equivocation `node`'s audit of `doc` shows: (held, set aside, verdict), with the
/// problem line it adds.
fn equivocation_in_audit(e: &mut Engine, doc: &DocId) -> Result<(String, String, String), String> {
    let audit = e.audit(doc).map_err(|err| err.to_string())?;
    let [one] = &audit.equivocations[..] else {
        return Err(format!(
            "{} equivocations in the audit: {:?}",
            audit.equivocations.len(),
            audit.equivocations
        ));
    };
    let lines = audit
        .problems
        .iter()
        .filter(|p| p.starts_with("equivocation:"))
        .count();
    if (one.verdict == "proven") != (lines == 1) {
        return Err(format!(
            "verdict {:?} but {lines} problem lines: {:?}",
            one.verdict, audit.problems
        ));
    }
    Ok((one.held.clone(), one.set_aside.clone(), one.verdict.clone()))
}

/// 王芳 signs two different tasks for 胜利社区's task list under one actor and sequence
/// number, on the same heads. A scripted peer holding a certified node key of 胜利社区 relays
/// the list itself to the district, then one task, then the other (and the other again, more
/// times than `offences_max`). The district takes the first, sets the second aside as an
/// `equivocation` and says so in its answer, keeps proof of 王芳's fault that its audit (and
/// its HTTP API) shows as proven, before and after a restart, and never disconnects the peer.
///
/// Then 胜利社区's own node, running alone, gets the other task first from the scripted peer,
/// and the restarted district dials it. Each sets the other's half aside: neither bans the
/// other, each keeps the half it had, everything else converges, and the community's audit
/// shows the equivocation too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_equivocating_writer() {
    const TEST: &str = "an_equivocating_writer";
    let dir = tempfile::tempdir().unwrap();
    let p = provision(dir.path());
    let (d_dir, c_dir) = (dir_of(&p, DISTRICT), dir_of(&p, SHENGLI));
    let network = p.genesis.network_id();
    let wang = key_of(c_dir, "wangfang");

    // The scripted peer's node key, certified by 胜利社区's administrator; every node knows it.
    let relay_key = keystore::generate_key();
    let relay_cert: Certificate = setup::certify(
        &p.genesis,
        &key_of(c_dir, "admin"),
        relay_key.public(),
        UnitId::new(SHENGLI).unwrap(),
        Role::Node,
        "胜利社区备用节点".to_owned(),
        now_ms(),
        setup::YEAR_MS,
    );
    for n in &p.nodes {
        setup::import_offline(&n.dir, &p.genesis, &[], std::slice::from_ref(&relay_cert)).unwrap();
    }

    // 胜利社区's task list, as its node makes it when it first opens.
    let (tasks, header, base) = {
        let mut e = Engine::open(c_dir).unwrap();
        let tasks = e.own_doc(Kind::TaskList).unwrap();
        let d = e.doc_mut(&tasks).unwrap();
        let base: Vec<(Change, ChangeSignature)> = d
            .changes()
            .into_iter()
            .map(|c| {
                let sig = d.signature(&c.hash()).unwrap().clone();
                (c, sig)
            })
            .collect();
        (tasks, d.header().clone(), (d.clone(), base))
    };
    let (base_doc, base_changes) = base;
    let inc: [u8; ACTOR_INCARNATION_BYTES] = keystore::random_seed()[..ACTOR_INCARNATION_BYTES]
        .try_into()
        .unwrap();
    let at = now_ms();
    let first = forge(network, &base_doc, &wang, &inc, at, "t-one");
    let second = forge(network, &base_doc, &wang, &inc, at, "t-two");
    assert_ne!(first.0.hash(), second.0.hash());
    assert_eq!(first.0.actor_id(), second.0.actor_id());
    assert_eq!(first.0.seq(), second.0.seq());
    assert_eq!(first.0.deps(), second.0.deps());
    let (h1, h2) = (first.0.hash(), second.0.hash());

    // Phase 1: the district alone, and the scripted peer.
    let district = start(Engine::open(d_dir).unwrap(), Vec::new()).await;
    let hello = {
        let e = district.shared.engine();
        let chain = e.trust().chain_of_where(&relay_key.public(), |c| {
            c.body.role == Role::Node && c.body.unit.as_str() == SHENGLI
        });
        assert!(!chain.is_empty(), "the scripted peer's chain");
        Hello {
            network,
            protocol_version: protocol::PROTOCOL_VERSION,
            unit: UnitId::new(SHENGLI).unwrap(),
            registrations: e.trust().registrations_for(&chain),
            chain,
        }
    };
    let offences_max = district.shared.engine().config().sync.offences_max;
    let mut peer = Scripted::new(&relay_key, hello.clone(), &district);
    let greeted = peer.connect().await;
    assert_eq!(greeted.label(), "hello", "{greeted:?}");
    let ((answers, closed), mut latencies) = watched(&district, async {
        let mut answers = Vec::new();
        // The list itself, as any relay would bring it.
        answers.push(
            peer.request(Request::Sync(Box::new(carrying(
                tasks,
                Some(header.clone()),
                &base_changes,
            ))))
            .await,
        );
        answers.push(
            peer.request(Request::Sync(Box::new(carrying(
                tasks,
                None,
                std::slice::from_ref(&first),
            ))))
            .await,
        );
        for _ in 0..=offences_max + 1 {
            answers.push(
                peer.request(Request::Sync(Box::new(carrying(
                    tasks,
                    None,
                    std::slice::from_ref(&second),
                ))))
                .await,
            );
        }
        let closed = peer.closed_within(Duration::from_secs(1)).await;
        (answers, closed)
    })
    .await;
    let labels: Vec<String> = answers.iter().map(Answer::label).collect();
    eprintln!("{TEST}: the district answered {labels:?}");
    assert_eq!(labels[0], "taken", "the list: {:?}", answers[0]);
    assert_eq!(labels[1], "taken", "the first task: {:?}", answers[1]);
    assert_eq!(heads_of(&district, &tasks), Some(vec![h1]));
    let told = SetAsideNote {
        change: h2.0,
        reason: "equivocation".to_owned(),
    };
    for answer in &answers[2..] {
        assert_eq!(answer.set_aside(), vec![told.clone()], "{answer:?}");
    }
    assert_eq!(heads_of(&district, &tasks), Some(vec![h1]));
    assert!(!closed, "the district disconnected the scripted peer");
    assert!(peer.connected);
    assert_eq!(
        rejections(&district, "equivocation"),
        u64::from(offences_max) + 2
    );
    assert_eq!(metric(&district, DISCONNECTS), 0);
    let (held, set_aside, verdict) =
        equivocation_in_audit(&mut district.shared.engine(), &tasks).unwrap();
    assert_eq!(
        (held.as_str(), set_aside.as_str(), verdict.as_str()),
        (h1.to_string().as_str(), h2.to_string().as_str(), "proven")
    );
    let (status, body) = api_get(&district, &format!("/v1/docs/{tasks}/audit")).await;
    assert_eq!(status, 200, "{body}");
    let audit: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(audit["equivocations"][0]["verdict"], "proven", "{body}");
    assert_eq!(audit["equivocations"][0]["set_aside"], h2.to_string());
    drop(peer);

    // The evidence survives a restart.
    district.stop().await;
    let mut reopened = Engine::open(d_dir).unwrap();
    assert_eq!(
        equivocation_in_audit(&mut reopened, &tasks).unwrap(),
        (h1.to_string(), h2.to_string(), "proven".to_owned()),
        "the district's evidence after a restart"
    );

    // Phase 2: 胜利社区's node, alone, gets the other half first.
    let community = start(Engine::open(c_dir).unwrap(), Vec::new()).await;
    let mut peer = Scripted::new(&relay_key, hello, &community);
    let greeted = peer.connect().await;
    assert_eq!(greeted.label(), "hello", "{greeted:?}");
    let fed = peer
        .request(Request::Sync(Box::new(carrying(
            tasks,
            None,
            std::slice::from_ref(&second),
        ))))
        .await;
    assert_eq!(fed.label(), "taken", "{fed:?}");
    assert_eq!(heads_of(&community, &tasks), Some(vec![h2]));
    assert!(
        community
            .shared
            .engine()
            .audit(&tasks)
            .unwrap()
            .equivocations
            .is_empty()
    );
    drop(peer);

    // The district restarts and dials the community.
    let district = start(reopened, vec![community.dial_addr().unwrap()]).await;
    let started = Instant::now();
    let ((report, d_latencies), c_latencies) = watched(
        &community,
        watched(&district, async {
            let connected = until("the nodes connect", WITHIN, || {
                (!(connected_to(&district, SHENGLI) && connected_to(&community, DISTRICT)))
                    .then(|| "not connected both ways".to_owned())
            })
            .await;
            let converged = until("the rest converges", WITHIN, || {
                let d = divergence(&district, &community, &[tasks]);
                (!d.is_empty()).then(|| format!("{d:?}"))
            })
            .await;
            until("the community proves the equivocation", WITHIN, || {
                match equivocation_in_audit(&mut community.shared.engine(), &tasks) {
                    Ok((held, set_aside, verdict))
                        if held == h2.to_string()
                            && set_aside == h1.to_string()
                            && verdict == "proven" =>
                    {
                        None
                    }
                    Ok(other) => Some(format!("{other:?}")),
                    Err(e) => Some(e),
                }
            })
            .await;
            // Each sets the other's half aside round after round, more often than
            // `offences_max` offences would take to disconnect it, were it counted as one.
            until("both set the other half aside repeatedly", WITHIN, || {
                let (d, c) = (
                    rejections(&district, "equivocation"),
                    rejections(&community, "equivocation"),
                );
                (d <= u64::from(offences_max) || c <= u64::from(offences_max))
                    .then(|| format!("district {d}, community {c}"))
            })
            .await;
            format!(
                "connected after {connected:?}, the rest converged {converged:?} later; set aside as equivocations: district {}, community {}, within {:?}",
                rejections(&district, "equivocation"),
                rejections(&community, "equivocation"),
                started.elapsed()
            )
        }),
    )
    .await;
    eprintln!("{TEST}: {report}");
    for (node, other) in [(&district, SHENGLI), (&community, DISTRICT)] {
        assert_eq!(metric(node, DISCONNECTS), 0, "a disconnect for offences");
        assert!(connected_to(node, other), "no longer connected to {other}");
    }
    assert_eq!(
        heads_of(&district, &tasks),
        Some(vec![h1]),
        "the district's half"
    );
    assert_eq!(
        heads_of(&community, &tasks),
        Some(vec![h2]),
        "the community's half"
    );
    assert_eq!(
        equivocation_in_audit(&mut district.shared.engine(), &tasks).unwrap(),
        (h1.to_string(), h2.to_string(), "proven".to_owned()),
        "the district still holds one piece of evidence"
    );
    assert!(divergence(&district, &community, &[tasks]).is_empty());

    latencies.extend(d_latencies);
    latencies.extend(c_latencies);
    figures(TEST, &latencies);
    district.stop().await;
    community.stop().await;
}
