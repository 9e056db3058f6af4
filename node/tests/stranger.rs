//! A stranger against a real node over TCP: a scripted libp2p peer (gossipsub, identify, ping
//! and the sync protocol, driven by hand, not the node's own code path) that holds no linli
//! certificate.
//!
//! It connects to a district node, subscribes to the network's gossip topic and publishes to
//! it, and never completes a hello. The node must give it nothing: no gossip while it is
//! connected, nothing stored from its hello, a disconnect once `hello_timeout_ms` has passed,
//! and no redial afterwards — while its HTTP API keeps answering.
//!
//! A member does get past hello, and so its messages reach the checks behind it: a peer holding
//! the key of a certified community node sends sync messages whose change chunks each inflate
//! within the per-chunk limit and together far beyond the per-message one. The node must refuse
//! each without inflating past that limit, store nothing, and disconnect the peer once it has
//! offended `offences_max` times.
//!
//! Every test reads the process's peak resident memory (an upper bound on the node's, which
//! runs in-process) and probes the node's HTTP API during the attack, and prints both.

mod common;

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use automerge::transaction::Transactable as _;
use automerge::{AutoCommit, Change, ROOT};
use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, gossipsub, identify, noise, ping, tcp, yamux,
};
use linli_crdt_model::cert::{CertBody, Certificate, Role};
use linli_crdt_model::doc::DocId;
use linli_crdt_model::keys::SecretKey;
use linli_crdt_model::sync::Signatures;
use linli_crdt_model::testkit::{hostile, unit};
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_crdt_model::wire;
use linli_node::clock::now_ms;
use linli_node::config::{Config, Layout};
use linli_node::engine::{Engine, HELLO_RECORDS_MAX};
use linli_node::keystore;
use linli_node::net::{self, Transports};
use linli_node::protocol::{self, Hello, Request, Response, SyncMessage};
use linli_node::run::{self, Options, Running};
use linli_node::setup::{self, PlanUnit, Provisioned};
use linli_node::testkit::three_units;

use common::{figures, peak_rss_mib, watched};

const HELLO_TIMEOUT_MS: u64 = 1_500;
const REDIAL_MS: u64 = 200;
/// Requests a peer may make at once, and then per second.
const REQUESTS_BURST: u32 = 8;
const REQUESTS_PER_SECOND: u32 = 2;
/// Request-response frames the scripted peer reads and writes (the node's own bound is
/// `sync.message_bytes_max`).
const FRAME_BYTES_MAX: u64 = 64 * 1024 * 1024;

#[derive(NetworkBehaviour)]
struct StrangerBehaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::cbor::Behaviour<Request, Response>,
}

type StrangerSwarm = Swarm<StrangerBehaviour>;

fn stranger_swarm(key: &SecretKey) -> StrangerSwarm {
    libp2p::SwarmBuilder::with_existing_identity(net::keypair(key))
        .with_tokio()
        .with_tcp(
            tcp::Config::default(),
            noise::Config::new,
            yamux::Config::default,
        )
        .unwrap()
        .with_behaviour(|key| {
            let gossip = gossipsub::ConfigBuilder::default()
                .heartbeat_interval(Duration::from_millis(200))
                .validation_mode(gossipsub::ValidationMode::Strict)
                .build()
                .unwrap();
            StrangerBehaviour {
                identify: identify::Behaviour::new(identify::Config::new(
                    "/linli/1".to_owned(),
                    key.public(),
                )),
                ping: ping::Behaviour::new(
                    ping::Config::new().with_interval(Duration::from_millis(300)),
                ),
                gossipsub: gossipsub::Behaviour::new(
                    gossipsub::MessageAuthenticity::Signed(key.clone()),
                    gossip,
                )
                .unwrap(),
                sync: request_response::Behaviour::with_codec(
                    request_response::cbor::codec::Codec::default()
                        .set_request_size_maximum(FRAME_BYTES_MAX)
                        .set_response_size_maximum(FRAME_BYTES_MAX),
                    [(
                        StreamProtocol::new(protocol::PROTOCOL),
                        ProtocolSupport::Full,
                    )],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(30)),
                ),
            }
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(60)))
        .build()
}

fn config(u: &Unit) -> Config {
    let mut c = Config::new(u.id.clone());
    c.network.mdns = false;
    c.network.hello_timeout_ms = HELLO_TIMEOUT_MS;
    c.network.redial_interval_ms = REDIAL_MS;
    c.sync.anti_entropy_interval_ms = 500;
    c.sync.requests_per_second_max = REQUESTS_PER_SECOND;
    c.sync.requests_burst_max = REQUESTS_BURST;
    c.checkpoint.interval_ms = 0;
    c
}

/// Provision `plan` and start the node of its first unit (the district) alone.
async fn start(dir: &Path, plan: &[PlanUnit]) -> (Provisioned, Running) {
    start_tuned(dir, plan, |_| {}).await
}

/// [`start`], with every node's configuration changed by `tune`.
async fn start_tuned(
    dir: &Path,
    plan: &[PlanUnit],
    tune: impl Fn(&mut Config),
) -> (Provisioned, Running) {
    let configure = |u: &Unit| {
        let mut c = config(u);
        tune(&mut c);
        c
    };
    let p = setup::provision(dir, "铁东区邻里网", plan, configure, now_ms() - 60_000).unwrap();
    let node = run::start_engine(
        Engine::open(&p.nodes[0].dir).unwrap(),
        Options {
            transports: Transports::Real,
            listen: Some(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]),
            bootstrap: Vec::new(),
        },
    )
    .await
    .unwrap();
    (p, node)
}

async fn district(dir: &Path) -> Running {
    let plan = [PlanUnit {
        unit: unit("tiedong", UnitKind::District, "铁东区"),
        people: Vec::new(),
    }];
    start(dir, &plan).await.1
}

/// What the stranger saw while driving its swarm for `for_`.
#[derive(Debug, Default)]
struct Seen {
    gossip_messages: usize,
    disconnected_after: Option<Duration>,
    incoming_connections: usize,
    /// The node's answers to our requests, in order.
    answers: Vec<String>,
}

async fn drive(
    swarm: &mut StrangerSwarm,
    node: PeerId,
    for_: Duration,
    started: Instant,
    seen: &mut Seen,
    mut on_tick: impl FnMut(&mut StrangerSwarm),
) {
    let deadline = Instant::now() + for_;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(left) => return,
            _ = tick.tick() => on_tick(swarm),
            event = swarm.select_next_some() => match event {
                SwarmEvent::Behaviour(StrangerBehaviourEvent::Gossipsub(
                    gossipsub::Event::Message { .. },
                )) => seen.gossip_messages += 1,
                SwarmEvent::ConnectionClosed { peer_id, num_established: 0, .. }
                    if peer_id == node && seen.disconnected_after.is_none() =>
                {
                    seen.disconnected_after = Some(started.elapsed());
                }
                SwarmEvent::IncomingConnection { .. } => seen.incoming_connections += 1,
                SwarmEvent::Behaviour(StrangerBehaviourEvent::Sync(
                    request_response::Event::Message {
                        message: request_response::Message::Response { response, .. },
                        ..
                    },
                )) => seen.answers.push(match response {
                    Response::Rejected { reason, .. } => format!("rejected {reason}"),
                    Response::Hello(_) => "hello".to_owned(),
                    _ => "other".to_owned(),
                }),
                SwarmEvent::Behaviour(StrangerBehaviourEvent::Sync(
                    request_response::Event::Message {
                        message: request_response::Message::Request { channel, .. },
                        ..
                    },
                )) => {
                    // The node greets us; a stranger never answers.
                    drop(channel);
                }
                _ => {}
            },
        }
    }
}

/// A stranger subscribes and publishes on the network's topic, never says hello, and is
/// dropped at the hello deadline; the district's own announcement, published meanwhile, never
/// reaches it; and the node does not dial it back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stranger_gets_no_gossip_and_is_dropped_without_hello() {
    let dir = tempfile::tempdir().unwrap();
    let node = district(dir.path()).await;
    let network = node.shared.engine().trust().network();
    let key = keystore::generate_key();
    let mut swarm = stranger_swarm(&key);
    swarm
        .listen_on("/ip4/127.0.0.1/tcp/0".parse().unwrap())
        .unwrap();
    let topic = gossipsub::IdentTopic::new(protocol::topic(&network));
    swarm.behaviour_mut().gossipsub.subscribe(&topic).unwrap();
    let addr: Multiaddr = node.dial_addr().expect("the node listens on TCP");
    swarm.dial(addr).unwrap();
    let started = Instant::now();
    let mut seen = Seen::default();
    let mut published = 0;
    let mut latencies = Vec::new();

    // Half the hello deadline connected: the district changes a public document (its
    // directory), which it announces on the topic; the stranger publishes its own.
    let ((), probed) = watched(
        &node,
        drive(
            &mut swarm,
            node.peer_id,
            Duration::from_millis(HELLO_TIMEOUT_MS / 2),
            started,
            &mut seen,
            |s| {
                let fake = format!(
                    "{{\"doc\":\"{}\",\"unit\":\"tiedong\",\"heads\":[]}}",
                    "ab".repeat(32)
                );
                if s.behaviour_mut()
                    .gossipsub
                    .publish(topic.clone(), fake.into_bytes())
                    .is_ok()
                {
                    published += 1;
                }
            },
        ),
    )
    .await;
    latencies.extend(probed);
    assert!(
        swarm.is_connected(&node.peer_id),
        "the stranger is connected before the hello deadline"
    );
    node.shared
        .engine()
        .register_unit(
            Unit {
                id: UnitId::new("tiedong/jiefang").unwrap(),
                kind: UnitKind::Street,
                name: "解放街道".to_owned(),
            },
            Some("root"),
        )
        .unwrap();
    node.shared
        .net
        .send(linli_node::shared::NetCommand::Announce)
        .await
        .unwrap();
    let ((), probed) = watched(
        &node,
        drive(
            &mut swarm,
            node.peer_id,
            Duration::from_millis(HELLO_TIMEOUT_MS * 2),
            started,
            &mut seen,
            |_| {},
        ),
    )
    .await;
    latencies.extend(probed);
    let dropped = seen
        .disconnected_after
        .expect("the stranger was disconnected");
    assert!(
        dropped >= Duration::from_millis(HELLO_TIMEOUT_MS),
        "dropped after {dropped:?}, before the hello deadline"
    );
    assert_eq!(seen.gossip_messages, 0, "the stranger received gossip");

    // Several redial intervals later the node has not dialled the stranger back, although
    // identify gave it the stranger's listen address.
    let before = seen.incoming_connections;
    let ((), probed) = watched(
        &node,
        drive(
            &mut swarm,
            node.peer_id,
            Duration::from_millis(REDIAL_MS * 8),
            started,
            &mut seen,
            |_| {},
        ),
    )
    .await;
    latencies.extend(probed);
    assert_eq!(
        seen.incoming_connections, before,
        "the node dialled the stranger back"
    );
    eprintln!(
        "stranger: published {published} announcements, received {} gossip, dropped after {dropped:?}",
        seen.gossip_messages
    );
    figures(
        "a_stranger_gets_no_gossip_and_is_dropped_without_hello",
        &latencies,
    );
    node.stop().await;
}

/// A hello stuffed with certificates, and one whose chain does not reach the root, are refused
/// and leave nothing in trust or in the store.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hellos_that_fail_store_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let node = district(dir.path()).await;
    let (network, top) = {
        let e = node.shared.engine();
        (e.trust().network(), e.genesis().top.id.clone())
    };
    let n_certs = || node.shared.engine().store().certificates().unwrap().len();
    let before = n_certs();
    let key = keystore::generate_key();
    let pretender = keystore::generate_key();
    let cert = |subject: &SecretKey, n: usize| {
        Certificate::issue(
            CertBody {
                network,
                subject: subject.public(),
                unit: top.clone(),
                role: Role::Node,
                holder: format!("伪造{n}"),
                issuer: pretender.public(),
                issued_at_ms: now_ms() - 60_000,
                expires_at_ms: now_ms() + 86_400_000,
            },
            &pretender,
        )
    };
    let stuffed = Hello {
        network,
        protocol_version: protocol::PROTOCOL_VERSION,
        unit: top.clone(),
        chain: (0..HELLO_RECORDS_MAX * 4).map(|n| cert(&key, n)).collect(),
        registrations: Vec::new(),
    };
    let unchained = Hello {
        chain: vec![cert(&key, 0)],
        ..stuffed.clone()
    };
    let mut answers = Vec::new();
    let mut latencies = Vec::new();
    for hello in [stuffed, unchained] {
        let mut swarm = stranger_swarm(&key);
        swarm.dial(node.dial_addr().unwrap()).unwrap();
        let mut seen = Seen::default();
        let mut sent = false;
        let node_id = node.peer_id;
        let ((), probed) = watched(
            &node,
            drive(
                &mut swarm,
                node_id,
                Duration::from_millis(800),
                Instant::now(),
                &mut seen,
                |s| {
                    if !sent && s.is_connected(&node_id) {
                        s.behaviour_mut()
                            .sync
                            .send_request(&node_id, Request::Hello(hello.clone()));
                        sent = true;
                    }
                },
            ),
        )
        .await;
        latencies.extend(probed);
        answers.extend(seen.answers);
    }
    assert_eq!(answers, ["rejected bad-hello", "rejected bad-hello"]);
    assert_eq!(n_certs(), before, "a refused hello stored certificates");
    assert!(
        node.shared
            .engine()
            .trust()
            .certificates_of(&key.public())
            .is_empty(),
        "a refused hello's certificates are in trust"
    );
    let known: HashSet<String> = node
        .shared
        .engine()
        .trust()
        .certificates()
        .map(|(_, c)| c.body.holder.clone())
        .collect();
    assert!(!known.iter().any(|h| h.starts_with("伪造")), "{known:?}");
    figures("hellos_that_fail_store_nothing", &latencies);
    node.stop().await;
}

/// A request flood: as many requests as `requests_burst_max` at once are answered (here:
/// refused for want of a hello, which is not an offence), the next is refused as rate-limited
/// without being looked at, and the node's API keeps answering.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_flood_is_rate_limited_at_its_boundary() {
    let dir = tempfile::tempdir().unwrap();
    let node = district(dir.path()).await;
    let key = keystore::generate_key();
    let mut swarm = stranger_swarm(&key);
    swarm.dial(node.dial_addr().unwrap()).unwrap();
    let node_id = node.peer_id;
    let mut seen = Seen::default();
    let mut sent = false;
    let ((), latencies) = watched(
        &node,
        drive(
            &mut swarm,
            node_id,
            Duration::from_millis(1_000),
            Instant::now(),
            &mut seen,
            |s| {
                if !sent && s.is_connected(&node_id) {
                    for _ in 0..=REQUESTS_BURST {
                        s.behaviour_mut().sync.send_request(
                            &node_id,
                            Request::Inventory(protocol::Inventory::default()),
                        );
                    }
                    sent = true;
                }
            },
        ),
    )
    .await;
    let limited = seen
        .answers
        .iter()
        .filter(|a| *a == "rejected rate-limited")
        .count();
    let answered = seen
        .answers
        .iter()
        .filter(|a| *a == "rejected no-hello")
        .count();
    assert_eq!(
        (answered, limited),
        (REQUESTS_BURST as usize, 1),
        "{:?}",
        seen.answers
    );
    figures(
        "a_request_flood_is_rate_limited_at_its_boundary",
        &latencies,
    );
    node.stop().await;
}

// ---- a member: a certified peer that gets past hello ----

/// What came of one request of the member's.
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
            Answer::Response(Response::Sync(_)) => "accepted".to_owned(),
            Answer::Failed(why) => format!("failed: {why}"),
        }
    }
}

/// A scripted peer holding a certified node key: the stranger's swarm, driven by hand. It
/// answers the node's hello with its own, echoes the node's inventory (so the node sees nothing
/// to sync with it) and refuses the node's sync messages — or, with `hold_sync`, keeps them
/// unanswered in `held`.
struct Member {
    swarm: StrangerSwarm,
    hello: Hello,
    node: PeerId,
    addr: Multiaddr,
    connected: bool,
    hold_sync: bool,
    held: Vec<(DocId, request_response::ResponseChannel<Response>)>,
    /// Every document the node opened a sync request about, in order.
    sync_requests: Vec<DocId>,
}

impl Member {
    fn new(key: &SecretKey, hello: Hello, node: &Running) -> Member {
        Member {
            swarm: stranger_swarm(key),
            hello,
            node: node.peer_id,
            addr: node.dial_addr().expect("the node listens on TCP"),
            connected: false,
            hold_sync: false,
            held: Vec::new(),
            sync_requests: Vec::new(),
        }
    }

    /// Serve the node's requests for `for_`.
    async fn serve(&mut self, for_: Duration) {
        let deadline = Instant::now() + for_;
        while let Some(event) = self.next(deadline).await {
            self.handle(event);
        }
    }

    /// Answer the oldest held sync request with nothing more to say.
    fn answer_one(&mut self) {
        let (doc, channel) = self.held.remove(0);
        let _ = self.swarm.behaviour_mut().sync.send_response(
            channel,
            Response::Sync(Box::new(SyncMessage {
                doc,
                header: None,
                message: None,
                signatures: Default::default(),
                certificates: Vec::new(),
                registrations: Vec::new(),
                attestations: Vec::new(),
                set_aside: Vec::new(),
            })),
        );
    }

    /// Dial the node and say hello; the node's answer (or why there was none).
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
        self.request(Request::Hello(self.hello.clone()), Duration::from_secs(5))
            .await
    }

    /// Send one request and wait `within` for its answer, serving the node's requests
    /// meanwhile.
    async fn request(&mut self, request: Request, within: Duration) -> Answer {
        use request_response::{Event, Message};
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&self.node, request);
        let deadline = Instant::now() + within;
        loop {
            match self.next(deadline).await {
                None => return Answer::Failed(format!("no answer within {within:?}")),
                Some(SwarmEvent::Behaviour(StrangerBehaviourEvent::Sync(Event::Message {
                    message:
                        Message::Response {
                            request_id,
                            response,
                        },
                    ..
                }))) if request_id == id => return Answer::Response(response),
                Some(SwarmEvent::Behaviour(StrangerBehaviourEvent::Sync(
                    Event::OutboundFailure {
                        request_id, error, ..
                    },
                ))) if request_id == id => return Answer::Failed(error.to_string()),
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

    async fn next(&mut self, deadline: Instant) -> Option<SwarmEvent<StrangerBehaviourEvent>> {
        let left = deadline.saturating_duration_since(Instant::now());
        tokio::time::timeout(left, self.swarm.select_next_some())
            .await
            .ok()
    }

    fn handle(&mut self, event: SwarmEvent<StrangerBehaviourEvent>) {
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
            SwarmEvent::Behaviour(StrangerBehaviourEvent::Sync(Event::Message {
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            })) => {
                let response = match request {
                    Request::Hello(_) => Response::Hello(self.hello.clone()),
                    Request::Inventory(inv) => Response::Inventory(inv),
                    Request::Sync(msg) if self.hold_sync => {
                        self.sync_requests.push(msg.doc);
                        self.held.push((msg.doc, channel));
                        return;
                    }
                    Request::Sync(_) => Response::Rejected {
                        reason: "scripted".to_owned(),
                        detail: "this peer does not sync".to_owned(),
                    },
                };
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response);
            }
            _ => {}
        }
    }
}

fn metric(node: &Running, line_prefix: &str) -> u64 {
    let text = node.shared.engine().metrics.render();
    text.lines()
        .find_map(|l| l.strip_prefix(line_prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

// ---- a bomb in many chunks ----

/// A compressed change chunk whose data inflates to at most `inflated_max` bytes: the body of
/// a real change followed by zeros, which Automerge reads as the change's "extra bytes". Its
/// checksum is right, so it passes every check of `wire` on its own. Returns the chunk and the
/// length of its data inflated.
fn padded_change(inflated_max: usize) -> (Vec<u8>, usize) {
    let mut doc = AutoCommit::new();
    doc.put(ROOT, "k", "v").unwrap();
    doc.commit();
    let change = doc.get_last_local_change().expect("a change").clone();
    let raw = change.raw_bytes();
    assert_eq!(
        raw[8],
        hostile::CHUNK_TYPE_CHANGE,
        "a small change is not compressed"
    );
    let (len, n) = hostile::read_uleb(&raw[9..]);
    let body = &raw[9 + n..];
    assert_eq!(body.len() as u64, len);
    let n_matches = (inflated_max - body.len() - 1) / hostile::DEFLATE_MATCH_MAX;
    let inflated = body.len() + 1 + hostile::DEFLATE_MATCH_MAX * n_matches;
    let deflated = hostile::deflate_padded(body, n_matches as u64);
    let mut chunk = hostile::chunk(hostile::CHUNK_TYPE_COMPRESSED, &deflated);
    let parsed = Change::from_bytes(chunk.clone()).expect("automerge reads the padded change");
    assert_eq!(parsed.extra_bytes().len(), inflated - body.len());
    chunk[4..8].copy_from_slice(&parsed.hash().0[..4]);
    (chunk, inflated)
}

/// A member's bomb in many chunks. A peer holding the key of a certified community node says
/// a valid hello (its chain and registrations, as `Engine::hello` builds them), then sends
/// sync messages about the district's directory (public: the community may hold it) whose
/// change chunks each inflate to just under `change_bytes_max` — a real change padded with
/// zeros, valid on its own — and together to 64 times `inflated_bytes_per_message_max`, in a
/// message well under `sync_message_bytes_max`. Each is refused the moment the sum passes the
/// limit, one byte past it; nothing is stored; the API answers throughout; and at
/// `offences_max` refusals (the bytes are the sender's own fault) the peer is disconnected and
/// cannot come back within the ban.
/// The key of `community`'s node and the hello it would send `node`, with its chain.
fn member_of(node: &Running, community: &setup::ProvisionedNode) -> (SecretKey, Hello) {
    let key = keystore::read_key(&Layout::new(&community.dir).node_key()).unwrap();
    let e = node.shared.engine();
    let chain = e.trust().chain_of_where(&key.public(), |c| {
        c.body.role == Role::Node && c.body.unit == community.unit.id
    });
    assert!(!chain.is_empty(), "the community node's chain");
    let hello = Hello {
        network: e.trust().network(),
        protocol_version: protocol::PROTOCOL_VERSION,
        unit: community.unit.id.clone(),
        registrations: e.trust().registrations_for(&chain),
        chain,
    };
    (key, hello)
}

/// `sync.concurrent_sessions_per_peer_max`: a member that never answers the node's sync
/// requests has exactly that many open with it, however many documents differ; each one it
/// answers makes room for the next. (Inbound, the same number bounds libp2p's streams per
/// connection.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_sessions_with_a_member_stop_at_the_concurrent_budget() {
    const SESSIONS: usize = 2;
    let dir = tempfile::tempdir().unwrap();
    let plan = three_units();
    let (p, node) = start_tuned(dir.path(), &plan, |c| {
        c.sync.concurrent_sessions_per_peer_max = SESSIONS;
        // No inventory of the node's own while we count.
        c.sync.anti_entropy_interval_ms = 60_000;
    })
    .await;
    // Public documents the community may hold, more than the budget.
    for i in 0..4 {
        node.shared
            .engine()
            .create(
                linli_node::contract::CreateDoc {
                    kind: linli_crdt_model::kinds::Kind::Convention,
                    title: format!("区公约{i}"),
                    scope: None,
                    period: None,
                    minutes: None,
                },
                None,
            )
            .unwrap();
    }
    let (key, hello) = member_of(&node, &p.nodes[2]);
    let mut member = Member::new(&key, hello, &node);
    member.hold_sync = true;
    let (counts, latencies) = watched(&node, async {
        assert_eq!(member.connect().await.label(), "hello");
        // An empty inventory: the member lacks everything.
        let answer = member
            .request(
                Request::Inventory(protocol::Inventory::default()),
                Duration::from_secs(5),
            )
            .await;
        assert_eq!(answer.label(), "inventory");
        let mut counts = Vec::new();
        member.serve(Duration::from_millis(700)).await;
        counts.push((member.held.len(), member.sync_requests.len()));
        for _ in 0..2 {
            member.answer_one();
            member.serve(Duration::from_millis(700)).await;
            counts.push((member.held.len(), member.sync_requests.len()));
        }
        counts
    })
    .await;
    figures("sessions at the concurrent budget", &latencies);
    eprintln!(
        "sessions: (open, opened so far) after each answer: {counts:?}; docs {:?}",
        member
            .sync_requests
            .iter()
            .map(DocId::short)
            .collect::<Vec<_>>()
    );
    assert_eq!(
        counts,
        vec![
            (SESSIONS, SESSIONS),
            (SESSIONS, SESSIONS + 1),
            (SESSIONS, SESSIONS + 2)
        ],
        "the node kept exactly {SESSIONS} sessions open, one more after each answer"
    );
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_members_multi_chunk_bomb_stops_at_the_message_limit() {
    const SHENGLI: &str = "tiedong/jiefang/shengli";
    let dir = tempfile::tempdir().unwrap();
    let plan = three_units();
    let (p, node) = start(dir.path(), &plan).await;
    let community = p
        .nodes
        .iter()
        .find(|n| n.unit.id.as_str() == SHENGLI)
        .unwrap();
    let (key, hello) = member_of(&node, community);
    let (limits, message_bytes_max, offences_max, doc, heads_before, changes_before) = {
        let mut e = node.shared.engine();
        let doc = e.directory_id().expect("the district holds its directory");
        let h = e.doc(&doc).unwrap().header().header.clone();
        assert!(
            h.scope.may_hold(&h.unit, &community.unit.id),
            "the community may hold the directory"
        );
        let mut heads = e.doc_mut(&doc).unwrap().heads();
        heads.sort();
        let changes = e.summary(&doc).unwrap().n_changes;
        (
            e.wire_limits().clone(),
            e.config().sync.message_bytes_max,
            e.config().sync.offences_max,
            doc,
            heads,
            changes,
        )
    };

    // The bomb, sized by the node's own limits.
    let (chunk, inflated_per_chunk) = padded_change(limits.change_bytes_max);
    wire::decode_change(&chunk, &limits).expect("one chunk alone is within every limit");
    let n_chunks = 64 * limits.inflated_bytes_per_message_max / inflated_per_chunk;
    // A V1 sync message with no heads, needs or haves, carrying the chunk `n_chunks` times.
    let bytes = hostile::message(&[], &[], &vec![chunk.clone(); n_chunks], None);
    let nominal = n_chunks * inflated_per_chunk;
    assert!(nominal >= 63 * limits.inflated_bytes_per_message_max);
    assert!(bytes.len() < limits.sync_message_bytes_max);
    // Framing (CBOR, the request's other fields) adds a few hundred bytes.
    assert!((bytes.len() as u64) < message_bytes_max / 2);
    eprintln!(
        "bomb: {n_chunks} chunks of {} bytes, each inflating to {inflated_per_chunk}; {} bytes in all, inflating to {nominal} ({} MiB, limit {} MiB)",
        chunk.len(),
        bytes.len(),
        nominal >> 20,
        limits.inflated_bytes_per_message_max >> 20
    );
    let bomb = SyncMessage {
        doc,
        header: None,
        message: Some(bytes),
        signatures: Signatures::default(),
        certificates: Vec::new(),
        registrations: Vec::new(),
        attestations: Vec::new(),
        set_aside: Vec::new(),
    };

    const DISCONNECTS: &str = "linli_disconnects_for_offences_total ";
    const OVER_LIMIT: &str = "linli_rejections_total{reason=\"limit-exceeded\"} ";
    let rss_before = peak_rss_mib();
    let (disconnects_before, over_limit_before) =
        (metric(&node, DISCONNECTS), metric(&node, OVER_LIMIT));
    let mut member = Member::new(&key, hello, &node);
    let greeted = member.connect().await;
    assert_eq!(greeted.label(), "hello", "{greeted:?}");
    let ((answers, took, connected_before_last, closed), latencies) = watched(&node, async {
        let mut answers = Vec::new();
        let mut took = Vec::new();
        let mut connected_before_last = false;
        for _ in 0..offences_max {
            connected_before_last = member.connected;
            let sent = Instant::now();
            let answer = member
                .request(
                    Request::Sync(Box::new(bomb.clone())),
                    Duration::from_secs(30),
                )
                .await;
            took.push(sent.elapsed());
            answers.push(answer);
        }
        let closed = member.closed_within(Duration::from_secs(3)).await;
        (answers, took, connected_before_last, closed)
    })
    .await;
    let rss_after = peak_rss_mib();
    eprintln!(
        "bomb: answers {:?} in {took:?}; peak RSS {rss_before} MiB before, {rss_after} MiB after",
        answers.iter().map(Answer::label).collect::<Vec<_>>()
    );

    let limit = limits.inflated_bytes_per_message_max;
    let expected = format!(
        "change chunks of one sync message after decompression: {} exceeds the limit of {limit}",
        limit + 1
    );
    for answer in &answers {
        match answer {
            Answer::Response(Response::Rejected { reason, detail }) => {
                assert_eq!(reason, "limit-exceeded", "{detail}");
                assert_eq!(detail, &expected);
            }
            other => panic!("the bomb was not refused: {other:?}"),
        }
    }
    assert_eq!(answers.len(), offences_max as usize);
    assert_eq!(
        metric(&node, OVER_LIMIT) - over_limit_before,
        u64::from(offences_max)
    );
    assert!(
        connected_before_last,
        "the peer was disconnected before its {offences_max}th offence"
    );
    assert!(
        closed,
        "the peer was not disconnected after {offences_max} offences"
    );
    assert_eq!(metric(&node, DISCONNECTS) - disconnects_before, 1);
    let again = member.connect().await;
    eprintln!("bomb: redial within the ban: {}", again.label());
    assert_ne!(
        again.label(),
        "hello",
        "a banned peer's hello was accepted again"
    );
    {
        let mut e = node.shared.engine();
        let mut heads = e.doc_mut(&doc).unwrap().heads();
        heads.sort();
        assert_eq!(
            heads, heads_before,
            "the bomb changed the directory's heads"
        );
        assert_eq!(e.summary(&doc).unwrap().n_changes, changes_before);
        let problems = e.verify();
        assert!(problems.is_empty(), "{problems:?}");
    }
    figures(
        "a_members_multi_chunk_bomb_stops_at_the_message_limit",
        &latencies,
    );
    node.stop().await;

    // Nothing of it reached the store either.
    let mut reopened = Engine::open(&p.nodes[0].dir).unwrap();
    let mut heads = reopened.doc_mut(&doc).unwrap().heads();
    heads.sort();
    assert_eq!(heads, heads_before, "the store holds changes of the bomb");
}
