//! A stranger against a real node over TCP: a scripted libp2p peer (gossipsub, identify, ping
//! and the sync protocol, driven by hand, not the node's own code path) that holds no linli
//! certificate.
//!
//! It connects to a district node, subscribes to the network's gossip topic and publishes to
//! it, and never completes a hello. The node must give it nothing: no gossip while it is
//! connected, nothing stored from its hello, a disconnect once `hello_timeout_ms` has passed,
//! and no redial afterwards — while its HTTP API keeps answering.

use std::collections::HashSet;
use std::path::Path;
use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::request_response::{self, ProtocolSupport};
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, gossipsub, identify, noise, ping, tcp, yamux,
};
use linli_crdt_model::cert::{CertBody, Certificate, Role};
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_node::config::Config;
use linli_node::engine::{Engine, HELLO_RECORDS_MAX, now_ms};
use linli_node::keystore;
use linli_node::net::{self, Transports};
use linli_node::protocol::{self, Hello, Request, Response};
use linli_node::run::{self, Options, Running};
use linli_node::setup::{self, PlanUnit};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HELLO_TIMEOUT_MS: u64 = 1_500;
const REDIAL_MS: u64 = 200;
/// Requests a peer may make at once, and then per second.
const REQUESTS_BURST: u32 = 8;
const REQUESTS_PER_SECOND: u32 = 2;

#[derive(NetworkBehaviour)]
struct StrangerBehaviour {
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::cbor::Behaviour<Request, Response>,
}

type StrangerSwarm = Swarm<StrangerBehaviour>;

fn stranger_swarm(key: &linli_crdt_model::keys::SecretKey) -> StrangerSwarm {
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
                sync: request_response::Behaviour::new(
                    [(
                        StreamProtocol::new(protocol::PROTOCOL),
                        ProtocolSupport::Full,
                    )],
                    request_response::Config::default()
                        .with_request_timeout(Duration::from_secs(5)),
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

async fn district(dir: &Path) -> Running {
    let plan = vec![PlanUnit {
        unit: Unit {
            id: UnitId::new("tiedong").unwrap(),
            kind: UnitKind::District,
            name: "铁东区".to_owned(),
        },
        people: Vec::new(),
    }];
    let p = setup::provision(dir, "铁东区邻里网", &plan, config, now_ms() - 60_000).unwrap();
    run::start_engine(
        Engine::open(&p.nodes[0].dir).unwrap(),
        Options {
            transports: Transports::Real,
            listen: Some(vec!["/ip4/127.0.0.1/tcp/0".parse().unwrap()]),
            bootstrap: Vec::new(),
        },
    )
    .await
    .unwrap()
}

/// The node's HTTP API answers `GET /v1/status` with 200: how long it took, if it did within
/// a second.
async fn api_latency(node: &Running) -> Option<Duration> {
    let started = Instant::now();
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(node.api_addr).await.ok()?;
        let request = format!(
            "GET /v1/status HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\nConnection: close\r\n\r\n",
            node.api_addr, node.shared.token
        );
        s.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.ok()?;
        Some(answer.starts_with(b"HTTP/1.1 200"))
    };
    match tokio::time::timeout(Duration::from_secs(1), probe).await {
        Ok(Some(true)) => Some(started.elapsed()),
        _ => None,
    }
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
    )
    .await;
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
    latencies.push(api_latency(&node).await);
    drive(
        &mut swarm,
        node.peer_id,
        Duration::from_millis(HELLO_TIMEOUT_MS * 2),
        started,
        &mut seen,
        |_| {},
    )
    .await;
    latencies.push(api_latency(&node).await);
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
    drive(
        &mut swarm,
        node.peer_id,
        Duration::from_millis(REDIAL_MS * 8),
        started,
        &mut seen,
        |_| {},
    )
    .await;
    assert_eq!(
        seen.incoming_connections, before,
        "the node dialled the stranger back"
    );
    assert!(
        latencies.iter().all(Option::is_some),
        "the API answered within a second: {latencies:?}"
    );
    eprintln!(
        "stranger: published {published} announcements, received {} gossip, dropped after {dropped:?}, API {latencies:?}",
        seen.gossip_messages
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
    let cert = |subject: &linli_crdt_model::keys::SecretKey, n: usize| {
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
    for hello in [stuffed, unchained] {
        let mut swarm = stranger_swarm(&key);
        swarm.dial(node.dial_addr().unwrap()).unwrap();
        let mut seen = Seen::default();
        let mut sent = false;
        let node_id = node.peer_id;
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
        )
        .await;
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
    drive(
        &mut swarm,
        node_id,
        Duration::from_millis(1_000),
        Instant::now(),
        &mut seen,
        |s| {
            if !sent && s.is_connected(&node_id) {
                for _ in 0..=REQUESTS_BURST {
                    s.behaviour_mut()
                        .sync
                        .send_request(&node_id, Request::Inventory(protocol::Inventory::default()));
                }
                sent = true;
            }
        },
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
    assert!(api_latency(&node).await.is_some(), "the API answers");
    node.stop().await;
}
