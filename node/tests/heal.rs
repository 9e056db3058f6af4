//! Healing a cut link: when both ends of a partitioned link are unblocked at (nearly) the same
//! moment, both dial at once, so the link briefly has more connections than the per-peer limit
//! allows and each end may refuse a different one. A hello sent on a connection that is then
//! closed is lost while the peer stays connected over the other one; the node must greet again
//! at once rather than leave the link silent until anti-entropy.
//!
//! Every timer that could paper over a lost hello or a missed dial (anti-entropy, redial) is set
//! to an hour here, so a heal succeeds only through the immediate dial on unblock and the hello
//! and inventory on connection; without them the waits below would never end.
//!
//! `hello_lost_with_its_connection_is_sent_again` builds the losing interleaving on purpose, with
//! a scripted peer (the street's key and certificate, driven by hand): it makes the node send
//! its hello on one connection, opens a second, then closes the first before answering. The
//! cut-and-heal tests run the real race many times.

use std::time::{Duration, Instant};

use futures::StreamExt;
use libp2p::core::Transport;
use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::swarm::dial_opts::{DialOpts, PeerCondition};
use libp2p::swarm::{ConnectionId, NetworkBehaviour, SwarmEvent};
use libp2p::{Multiaddr, PeerId, StreamProtocol, Swarm, identify, noise, request_response, yamux};
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::unit::Unit;
use linli_node::config::Config;
use linli_node::contract::Op;
use linli_node::engine::Engine;
use linli_node::net::Transports;
use linli_node::protocol::{self, Request, Response};
use linli_node::run::{self, Options, Running};
use linli_node::setup::{self, PlanUnit};
use linli_node::shared::NetCommand;
use linli_node::testkit::{self, heads, start_city, wait};

/// How many cut-and-heal cycles each test runs: the race is timing-dependent, so one heal
/// proves little.
const CYCLES: usize = 40;

/// How long a heal may take before the test calls it lost. A healthy heal takes milliseconds;
/// a lost hello or a missed dial never heals with these timers, so this only bounds the wait.
const HEAL_WITHIN: Duration = Duration::from_secs(30);

const HOUR_MS: u64 = 3_600_000;

/// The district and the street, with no people.
fn plan() -> Vec<PlanUnit> {
    testkit::three_units()[..2].to_vec()
}

/// [`testkit::config`] with redial and anti-entropy an hour apart.
fn config(u: &Unit) -> Config {
    let mut c = testkit::config(u);
    c.network.redial_interval_ms = HOUR_MS;
    c.sync.anti_entropy_interval_ms = HOUR_MS;
    c
}

/// `a` lists `b` as connected; and as connected with its hello accepted.
fn link(a: &Running, b: &Running) -> (bool, bool) {
    let b = b.peer_id.to_string();
    a.shared
        .peers()
        .iter()
        .find(|p| p.peer_id == b)
        .map_or((false, false), |p| {
            (p.connected, p.connected && p.unit.is_some())
        })
}

async fn send(n: &Running, cmd: NetCommand) {
    n.shared.net.send(cmd).await.expect("network loop runs");
}

/// Cut the link from both ends, edit at the district, unblock both ends at nearly the same
/// moment (alternating who goes first, a few hundred microseconds apart), and require the
/// link to greet again and the edit to reach the street — `CYCLES` times.
async fn cut_and_heal(unblock: fn(&Running) -> NetCommand) {
    let dir = tempfile::tempdir().unwrap();
    // The district and the street, the street dialing the district.
    let nodes = start_city(dir.path(), &plan(), config).await;
    let (district, street) = (&nodes[0].running, &nodes[1].running);
    wait("first hello", HEAL_WITHIN, || {
        link(district, street).1 && link(street, district).1
    })
    .await;
    let tasks = district
        .shared
        .engine()
        .own_doc(Kind::TaskList)
        .expect("the district's task list");
    wait("first sync", HEAL_WITHIN, || {
        heads(street, &tasks).is_some() && heads(street, &tasks) == heads(district, &tasks)
    })
    .await;

    for cycle in 0..CYCLES {
        send(district, NetCommand::Block(street.peer_id)).await;
        send(street, NetCommand::Block(district.peer_id)).await;
        wait("the cut", HEAL_WITHIN, || {
            !link(district, street).0 && !link(street, district).0
        })
        .await;
        {
            let mut e = district.shared.engine();
            let op = Op::WhistleRaise {
                id: Some(format!("w{cycle}")),
                whistle: kinds::tasks::NewWhistle {
                    title: "道路积水".to_owned(),
                    description: "雨后积水严重".to_owned(),
                    to_unit: "tiedong".to_owned(),
                    raised_by: "区".to_owned(),
                },
            };
            e.apply(&tasks, &op, None).unwrap();
        }
        send(district, NetCommand::Announce).await;
        assert_ne!(
            heads(street, &tasks),
            heads(district, &tasks),
            "the cut holds"
        );

        let (first, second) = if cycle % 2 == 0 {
            (district, street)
        } else {
            (street, district)
        };
        send(first, unblock(second)).await;
        let gap = Duration::from_micros(250 * (cycle as u64 / 2 % 5));
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        send(second, unblock(first)).await;
        let start = Instant::now();
        wait(
            &format!("cycle {cycle}: both ends greet again"),
            HEAL_WITHIN,
            || link(district, street).1 && link(street, district).1,
        )
        .await;
        wait(
            &format!("cycle {cycle}: the edit made during the cut arrives"),
            HEAL_WITHIN,
            || heads(street, &tasks) == heads(district, &tasks),
        )
        .await;
        eprintln!("cycle {cycle}: healed in {:?}", start.elapsed());
    }
    for n in nodes {
        n.running.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_unblock_all_greets_again_and_syncs() {
    cut_and_heal(|_| NetCommand::UnblockAll).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_unblock_of_the_peer_greets_again_and_syncs() {
    cut_and_heal(|peer| NetCommand::Unblock(peer.peer_id)).await;
}

/// The scripted peer: identify (to learn when the node has taken a connection) and the sync
/// protocol, answered by hand.
#[derive(NetworkBehaviour)]
struct Scripted {
    identify: identify::Behaviour,
    sync: request_response::cbor::Behaviour<Request, Response>,
}

fn scripted_swarm(engine: &Engine) -> Swarm<Scripted> {
    libp2p::SwarmBuilder::with_existing_identity(linli_node::net::keypair(engine.node_key()))
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
        .with_behaviour(|key| Scripted {
            identify: identify::Behaviour::new(identify::Config::new(
                "/linli/1".to_owned(),
                key.public(),
            )),
            sync: request_response::cbor::Behaviour::new(
                [(
                    StreamProtocol::new(protocol::PROTOCOL),
                    request_response::ProtocolSupport::Full,
                )],
                request_response::Config::default(),
            ),
        })
        .unwrap()
        .with_swarm_config(|c| c.with_idle_connection_timeout(Duration::from_secs(3600)))
        .build()
}

/// Drive the scripted swarm until `f` returns a value.
async fn until<T>(
    swarm: &mut Swarm<Scripted>,
    what: &str,
    mut f: impl FnMut(SwarmEvent<ScriptedEvent>) -> Option<T>,
) -> T {
    let found = tokio::time::timeout(HEAL_WITHIN, async {
        loop {
            if let Some(t) = f(swarm.select_next_some().await) {
                return t;
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("{what}: not within {HEAL_WITHIN:?}"))
}

/// A hello request from the node under test, with the connection it came on.
fn hello_from(
    e: SwarmEvent<ScriptedEvent>,
) -> Option<(ConnectionId, request_response::ResponseChannel<Response>)> {
    match e {
        SwarmEvent::Behaviour(ScriptedEvent::Sync(request_response::Event::Message {
            connection_id,
            message:
                request_response::Message::Request {
                    request: Request::Hello(_),
                    channel,
                    ..
                },
            ..
        })) => Some((connection_id, channel)),
        _ => None,
    }
}

fn dial(swarm: &mut Swarm<Scripted>, peer: PeerId, addr: &Multiaddr) -> ConnectionId {
    let opts = DialOpts::peer_id(peer)
        .addresses(vec![addr.clone()])
        .condition(PeerCondition::Always)
        .build();
    let id = opts.connection_id();
    swarm.dial(opts).unwrap();
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hello_lost_with_its_connection_is_sent_again() {
    let dir = tempfile::tempdir().unwrap();
    let p = setup::provision(
        dir.path(),
        testkit::NETWORK_NAME,
        &plan(),
        config,
        linli_node::clock::now_ms(),
    )
    .unwrap();
    let listen = testkit::memory_addr();
    let district = run::start_engine(
        Engine::open(&p.nodes[0].dir).unwrap(),
        Options {
            transports: Transports::Memory,
            listen: Some(vec![listen.clone()]),
            bootstrap: Vec::new(),
        },
    )
    .await
    .unwrap();
    // The street is not run: its key and certificate speak through the scripted swarm.
    let street = Engine::open(&p.nodes[1].dir).unwrap();
    let mut swarm = scripted_swarm(&street);
    let me = *swarm.local_peer_id();

    // Connection A: the district greets on it (its only connection to us); we hold the answer.
    let a = dial(&mut swarm, district.peer_id, &listen);
    let mut held = Vec::new();
    until(&mut swarm, "the district's hello on connection A", |e| {
        hello_from(e).map(|(connection_id, channel)| {
            assert_eq!(connection_id, a, "the only connection carries the hello");
            held.push(channel);
        })
    })
    .await;

    // Connection B: wait until the district has taken it (its identify answers on B).
    let b = dial(&mut swarm, district.peer_id, &listen);
    until(&mut swarm, "the district on connection B", |e| match e {
        SwarmEvent::Behaviour(ScriptedEvent::Identify(identify::Event::Received {
            connection_id,
            ..
        })) if connection_id == b => Some(()),
        _ => None,
    })
    .await;

    // Close A before answering: the hello is lost, the peers stay connected over B.
    assert!(swarm.close_connection(a));
    let channel = until(&mut swarm, "the district greeting again on B", |e| {
        hello_from(e).map(|(connection_id, channel)| {
            assert_eq!(connection_id, b, "A is closed");
            channel
        })
    })
    .await;
    swarm
        .behaviour_mut()
        .sync
        .send_response(channel, Response::Hello(street.hello()))
        .unwrap();
    drop(held);

    // The district now knows the street over B.
    let start = Instant::now();
    loop {
        tokio::select! {
            _ = swarm.select_next_some() => {}
            _ = tokio::time::sleep(Duration::from_millis(5)) => {}
        }
        let known = district.shared.peers().iter().any(|p| {
            p.peer_id == me.to_string()
                && p.connected
                && p.unit.as_deref() == Some("tiedong/jiefang")
        });
        if known {
            break;
        }
        assert!(
            start.elapsed() < HEAL_WITHIN,
            "the district did not accept the street's hello"
        );
    }
    district.stop().await;
}
