//! The network loop: one libp2p swarm, one task, one `select!` over swarm events, API commands
//! and timers. It owns no document state; every peer message goes through the engine.
//!
//! Per peer: hello first (refused peers are disconnected), then inventories, then sync sessions
//! per document. Gossipsub announcements trigger sessions as soon as heads change; anti-entropy
//! re-sends inventories on an interval to repair what announcements missed. A peer whose inputs
//! keep being refused is disconnected and refused for a while; everyone else is served as usual.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use libp2p::core::Transport;
use libp2p::core::transport::MemoryTransport;
use libp2p::core::upgrade::Version;
use libp2p::swarm::behaviour::toggle::Toggle;
use libp2p::swarm::{NetworkBehaviour, SwarmEvent};
use libp2p::{
    Multiaddr, PeerId, StreamProtocol, Swarm, allow_block_list, connection_limits, gossipsub,
    identify, mdns, noise, ping, request_response, yamux,
};
use linli_crdt_model::doc::{DocId, Scope};
use linli_crdt_model::keys::{PublicKey, SecretKey};
use linli_crdt_model::unit::Unit;
use tokio::sync::mpsc;
use tracing::{debug, error, info, info_span, warn};

use crate::clock::now_ms;
use crate::config::Config;
use crate::contract::PeerInfo;
use crate::engine::{self, SyncRefused, Synced};
use crate::metrics::Metrics;
use crate::protocol::{self, Announce, Request, Response, SetAsideNote, SyncMessage};
use crate::shared::{NetCommand, Shared};

/// Which transports a swarm uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transports {
    /// TCP and QUIC, as a real node runs.
    Real,
    /// libp2p's in-process memory transport, for tests of many nodes in one process.
    Memory,
}

#[derive(NetworkBehaviour)]
pub struct Behaviour {
    blocked: allow_block_list::Behaviour<allow_block_list::BlockedPeers>,
    limits: connection_limits::Behaviour,
    identify: identify::Behaviour,
    ping: ping::Behaviour,
    mdns: Toggle<mdns::tokio::Behaviour>,
    gossipsub: gossipsub::Behaviour,
    sync: request_response::cbor::Behaviour<Request, Response>,
}

impl std::fmt::Debug for Behaviour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Behaviour")
    }
}

/// The libp2p keypair of a node key (the same ed25519 key its certificate names).
pub fn keypair(key: &SecretKey) -> libp2p::identity::Keypair {
    libp2p::identity::Keypair::ed25519_from_bytes(key.to_seed())
        .expect("32 bytes are a valid ed25519 seed")
}

/// The ed25519 key behind a peer id, if it is one (linli nodes only use ed25519).
pub fn peer_key(peer: &PeerId) -> Option<PublicKey> {
    let mh = peer.as_ref();
    if mh.code() != 0 {
        return None;
    }
    let pk = libp2p::identity::PublicKey::try_decode_protobuf(mh.digest()).ok()?;
    let ed = pk.try_into_ed25519().ok()?;
    Some(PublicKey(ed.to_bytes()))
}

fn behaviour(
    key: &libp2p::identity::Keypair,
    config: &Config,
    transports: Transports,
) -> Result<Behaviour, String> {
    let sync = &config.sync;
    let gossip_config = gossipsub::ConfigBuilder::default()
        .heartbeat_interval(Duration::from_millis(500))
        .validation_mode(gossipsub::ValidationMode::Strict)
        .validate_messages()
        .max_transmit_size(64 * 1024)
        .build()
        .map_err(|e| e.to_string())?;
    let mut gossipsub = gossipsub::Behaviour::new(
        gossipsub::MessageAuthenticity::Signed(key.clone()),
        gossip_config,
    )?;
    gossipsub
        .with_peer_score(
            gossipsub::PeerScoreParams::default(),
            gossipsub::PeerScoreThresholds::default(),
        )
        .map_err(|e| e.to_string())?;
    let codec = request_response::cbor::codec::Codec::default()
        .set_request_size_maximum(sync.message_bytes_max)
        .set_response_size_maximum(sync.message_bytes_max);
    let rr = request_response::Behaviour::with_codec(
        codec,
        [(
            StreamProtocol::new(protocol::PROTOCOL),
            request_response::ProtocolSupport::Full,
        )],
        request_response::Config::default()
            .with_request_timeout(Duration::from_millis(sync.request_timeout_ms))
            // libp2p counts inbound and outbound streams together: ours (queued at the budget,
            // see `start_session`) and the peer's must both fit.
            .with_max_concurrent_streams(2 * sync.concurrent_sessions_per_peer_max.max(1)),
    );
    let n = &config.network;
    let limits = connection_limits::ConnectionLimits::default()
        .with_max_established(Some(n.connections_max))
        .with_max_established_per_peer(Some(n.connections_per_peer_max))
        .with_max_pending_incoming(Some(n.pending_incoming_max));
    let mdns = if n.mdns && transports == Transports::Real {
        Some(
            mdns::tokio::Behaviour::new(mdns::Config::default(), key.public().to_peer_id())
                .map_err(|e| e.to_string())?,
        )
    } else {
        None
    };
    Ok(Behaviour {
        blocked: allow_block_list::Behaviour::default(),
        limits: connection_limits::Behaviour::new(limits),
        identify: identify::Behaviour::new(identify::Config::new(
            "/linli/1".to_owned(),
            key.public(),
        )),
        ping: ping::Behaviour::new(ping::Config::new().with_interval(Duration::from_secs(10))),
        mdns: mdns.into(),
        gossipsub,
        sync: rr,
    })
}

/// Build the swarm for a node key.
pub fn swarm(
    key: &SecretKey,
    config: &Config,
    transports: Transports,
) -> Result<Swarm<Behaviour>, String> {
    let kp = keypair(key);
    let idle = libp2p::swarm::Config::with_tokio_executor()
        .with_idle_connection_timeout(Duration::from_secs(3600));
    match transports {
        Transports::Real => Ok(libp2p::SwarmBuilder::with_existing_identity(kp)
            .with_tokio()
            .with_tcp(
                libp2p::tcp::Config::default().nodelay(true),
                noise::Config::new,
                yamux::Config::default,
            )
            .map_err(|e| e.to_string())?
            .with_quic()
            .with_behaviour(|key| behaviour(key, config, transports).map_err(boxed))
            .map_err(|e| e.to_string())?
            .with_swarm_config(|_| idle)
            .build()),
        Transports::Memory => Ok(libp2p::SwarmBuilder::with_existing_identity(kp)
            .with_tokio()
            .with_other_transport(|key| {
                let noise = noise::Config::new(key).map_err(|e| boxed(e.to_string()))?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(
                    MemoryTransport::default()
                        .upgrade(Version::V1)
                        .authenticate(noise)
                        .multiplex(yamux::Config::default())
                        .boxed(),
                )
            })
            .map_err(|e| e.to_string())?
            .with_behaviour(|key| behaviour(key, config, transports).map_err(boxed))
            .map_err(|e| e.to_string())?
            .with_swarm_config(|_| idle)
            .build()),
    }
}

/// The longest wait before redialling a bootstrap peer that refused our hello.
const REDIAL_BACKOFF_MAX_MS: u64 = 10 * 60 * 1000;

/// The gossipsub application score of a peer until its hello is accepted: with the default
/// weight and thresholds it is below the graylist, so its messages are ignored, it is never
/// grafted into the mesh and nothing is published to it.
const NON_MEMBER_SCORE: f64 = -100.0;

/// A peer's refusals for one reason are logged as a warning at most once per interval.
const WARN_INTERVAL: Duration = Duration::from_secs(60);

/// How long a refused peer keeps its connection after its refusal was sent.
const DROP_GRACE: Duration = Duration::from_millis(300);

/// The reason a peer is told, and the rejections metric counts, when this node's own store failed
/// under the peer's input: nothing the peer did, so it may send it again.
const STORAGE: &str = "storage";

/// The peer says it set aside changes we sent: not an error of ours (it judges by what it
/// knows), but worth an operator's eye.
fn told_set_aside(peer: PeerId, msg: &SyncMessage) {
    if let Some(first) = msg.set_aside.first() {
        info!(
            %peer,
            doc = %msg.doc.short(),
            n = msg.set_aside.len(),
            reason = %first.reason,
            "peer set aside changes we sent"
        );
    }
}

fn boxed(e: String) -> Box<dyn std::error::Error + Send + Sync> {
    e.into()
}

/// What the loop knows of one peer.
#[derive(Debug, Default)]
struct Peer {
    unit: Option<Unit>,
    hello_sent: bool,
    /// Our hello in flight, to greet again at once if it is lost with its connection.
    hello_request: Option<request_response::OutboundRequestId>,
    connected: bool,
    addresses: HashSet<Multiaddr>,
    rtt_ms: Option<u64>,
    last_seen_ms: Option<i64>,
    /// When each offence within the last `offence_window_ms` happened: offences decay.
    offences: std::collections::VecDeque<std::time::Instant>,
    /// When the current connection was established, while its hello is not complete.
    awaiting_hello_since: Option<std::time::Instant>,
    /// Hellos refused in a row (either way). A refused peer is not redialled, unless it is a
    /// bootstrap peer, and then only after `refused_until`.
    refusals: u32,
    refused_until: Option<std::time::Instant>,
    /// Documents with a sync request in flight, and rounds so far in the session.
    in_flight: HashMap<DocId, u32>,
    /// Documents to sync again once the in-flight round finishes.
    again: HashSet<DocId>,
    /// Sessions waiting for room under `sync.concurrent_sessions_per_peer_max`, in order.
    queued: std::collections::VecDeque<DocId>,
}

/// The network side of a running node.
pub struct Net {
    swarm: Swarm<Behaviour>,
    shared: Arc<Shared>,
    commands: mpsc::Receiver<NetCommand>,
    peers: HashMap<PeerId, Peer>,
    blocked: HashSet<PeerId>,
    /// Peers refused for repeated invalid input, until when (ms). Blocked at the transport.
    bans: HashMap<PeerId, i64>,
    /// Requests per peer (`sync.requests_per_second_max`, `sync.requests_burst_max`).
    requests: governor::DefaultKeyedRateLimiter<PeerId>,
    /// When a refusal of each (peer, reason) was last logged as a warning.
    warned: HashMap<(PeerId, &'static str), std::time::Instant>,
    /// Peers to drop once the response telling them why has been sent.
    drop_after_response: HashSet<PeerId>,
    /// Peers to drop at a moment: a short grace after their last response, so it is read
    /// before the connection closes.
    drops_due: Vec<(std::time::Instant, PeerId)>,
    topic: gossipsub::IdentTopic,
    bootstrap: Vec<Multiaddr>,
    config: Config,
    /// The engine's metrics, shared with it (a clone shares the values): the loop counts bytes,
    /// refusals and peers without taking the engine's lock.
    metrics: Metrics,
}

impl std::fmt::Debug for Net {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Net")
            .field("peer_id", self.swarm.local_peer_id())
            .finish()
    }
}

impl Net {
    /// Start listening; returns the loop, ready to `run`.
    pub fn new(
        mut swarm: Swarm<Behaviour>,
        shared: Arc<Shared>,
        commands: mpsc::Receiver<NetCommand>,
        listen: &[Multiaddr],
    ) -> Result<Net, String> {
        let (config, network, metrics) = {
            let e = shared.engine();
            (e.config().clone(), e.trust().network(), e.metrics.clone())
        };
        for addr in listen {
            swarm
                .listen_on(addr.clone())
                .map_err(|e| format!("cannot listen on {addr}: {e}"))?;
        }
        let topic = gossipsub::IdentTopic::new(protocol::topic(&network));
        swarm
            .behaviour_mut()
            .gossipsub
            .subscribe(&topic)
            .map_err(|e| e.to_string())?;
        let bootstrap = config
            .network
            .bootstrap
            .iter()
            .map(|a| {
                a.parse::<Multiaddr>()
                    .map_err(|e| format!("bootstrap address {a:?}: {e}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let per_second = std::num::NonZeroU32::new(config.sync.requests_per_second_max)
            .ok_or("sync.requests_per_second_max must be at least 1")?;
        let burst = std::num::NonZeroU32::new(config.sync.requests_burst_max)
            .ok_or("sync.requests_burst_max must be at least 1")?;
        let requests = governor::RateLimiter::keyed(
            governor::Quota::per_second(per_second).allow_burst(burst),
        );
        Ok(Net {
            requests,
            swarm,
            shared,
            commands,
            peers: HashMap::new(),
            blocked: HashSet::new(),
            bans: HashMap::new(),
            warned: HashMap::new(),
            drop_after_response: HashSet::new(),
            drops_due: Vec::new(),
            topic,
            bootstrap,
            config,
            metrics,
        })
    }

    pub fn local_peer_id(&self) -> PeerId {
        *self.swarm.local_peer_id()
    }

    /// Run until `shutdown` resolves.
    pub async fn run(mut self, shutdown: impl std::future::Future<Output = ()>) {
        let mut anti_entropy = tokio::time::interval(Duration::from_millis(
            self.config.sync.anti_entropy_interval_ms.max(100),
        ));
        let mut redial = tokio::time::interval(Duration::from_millis(
            self.config.network.redial_interval_ms.max(100),
        ));
        let checkpoint_ms = self.config.checkpoint.interval_ms;
        let mut checkpoint = tokio::time::interval(Duration::from_millis(checkpoint_ms.max(1000)));
        checkpoint.tick().await; // the first tick fires at once; a checkpoint at start is not useful
        let mut housekeeping = tokio::time::interval(Duration::from_millis(100));
        let mut hello_deadline = tokio::time::interval(Duration::from_millis(
            (self.config.network.hello_timeout_ms / 4).clamp(50, 1000),
        ));
        self.dial_bootstrap();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                // Local work before new work from remotes.
                biased;
                _ = &mut shutdown => break,
                Some(cmd) = self.commands.recv() => self.command(cmd),
                event = self.swarm.select_next_some() => self.event(event),
                _ = anti_entropy.tick() => self.anti_entropy(),
                _ = redial.tick() => { self.dial_bootstrap(); self.redial_known(); }
                _ = checkpoint.tick(), if checkpoint_ms > 0 => self.checkpoint(),
                _ = housekeeping.tick(), if !self.drops_due.is_empty() => self.drop_due(),
                _ = hello_deadline.tick() => self.drop_silent(),
            }
            self.announce();
            self.publish_peers();
        }
        info!("network loop stopped");
    }

    fn command(&mut self, cmd: NetCommand) {
        match cmd {
            NetCommand::Block(peer) => {
                info!(%peer, "blocking peer");
                self.blocked.insert(peer);
                self.swarm.behaviour_mut().blocked.block_peer(peer);
            }
            NetCommand::Unblock(peer) => {
                info!(%peer, "unblocking peer");
                self.blocked.remove(&peer);
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                self.dial_peer(peer);
            }
            NetCommand::UnblockAll => {
                debug!(blocked = self.blocked.len(), "unblocking all");
                for peer in std::mem::take(&mut self.blocked) {
                    // A ban for invalid input is not a partition: it outlives `heal`.
                    if !self.bans.contains_key(&peer) {
                        self.swarm.behaviour_mut().blocked.unblock_peer(peer);
                        self.dial_peer(peer);
                    }
                }
                self.dial_bootstrap();
            }
            NetCommand::SyncNow => {
                debug!("sync now");
                self.anti_entropy()
            }
            NetCommand::Announce => {}
        }
    }

    fn dial_bootstrap(&mut self) {
        for addr in self.bootstrap.clone() {
            let peer = addr.iter().find_map(|p| match p {
                libp2p::multiaddr::Protocol::P2p(id) => Some(id),
                _ => None,
            });
            let opts = match peer {
                Some(peer) => {
                    let backing_off = self.peers.get(&peer).is_some_and(|p| {
                        p.refused_until
                            .is_some_and(|t| t > std::time::Instant::now())
                    });
                    if peer == *self.swarm.local_peer_id()
                        || self.blocked.contains(&peer)
                        || self.swarm.is_connected(&peer)
                        || backing_off
                    {
                        continue;
                    }
                    self.peers
                        .entry(peer)
                        .or_default()
                        .addresses
                        .insert(addr.clone());
                    // Not while a dial to it is under way (`dial_peer` may have just started
                    // one): a second connection attempt to the same peer is wasted handshakes,
                    // and with the peer dialling back it can exceed the per-peer limit.
                    libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
                        .addresses(vec![addr.clone()])
                        .build()
                }
                None => addr.clone().into(),
            };
            if let Err(e) = self.swarm.dial(opts) {
                debug!(%addr, error = %e, "dial failed");
            }
        }
    }

    /// Send our hello to a connected peer and remember the request.
    fn greet(&mut self, peer: PeerId) {
        let hello = self.shared.engine().hello();
        let id = self
            .swarm
            .behaviour_mut()
            .sync
            .send_request(&peer, Request::Hello(hello));
        self.peers.entry(peer).or_default().hello_request = Some(id);
    }

    fn redial_known(&mut self) {
        let now = now_ms();
        let expired: Vec<PeerId> = self
            .bans
            .iter()
            .filter(|(_, until)| **until <= now)
            .map(|(p, _)| *p)
            .collect();
        for peer in expired {
            self.bans.remove(&peer);
            if !self.blocked.contains(&peer) {
                self.swarm.behaviour_mut().blocked.unblock_peer(peer);
            }
        }
        let todo: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(p, s)| {
                // Ask the swarm, not our own flag: a missed close must not stop redialling.
                !self.swarm.is_connected(p)
                    && !s.addresses.is_empty()
                    && !self.blocked.contains(p)
                    && !self.bans.contains_key(p)
                    && s.refusals == 0
            })
            .map(|(p, _)| *p)
            .collect();
        for p in todo {
            self.dial_peer(p);
        }
    }

    fn dial_peer(&mut self, peer: PeerId) {
        let addrs: Vec<Multiaddr> = self
            .peers
            .get(&peer)
            .map(|p| p.addresses.iter().cloned().collect())
            .unwrap_or_default();
        if addrs.is_empty() || self.swarm.is_connected(&peer) {
            return;
        }
        let opts = libp2p::swarm::dial_opts::DialOpts::peer_id(peer)
            .addresses(addrs)
            .build();
        if let Err(e) = self.swarm.dial(opts) {
            debug!(%peer, error = %e, "redial failed");
        }
    }

    fn event(&mut self, event: SwarmEvent<BehaviourEvent>) {
        match event {
            SwarmEvent::NewListenAddr { address, .. } => {
                info!(%address, "listening");
                if let Ok(mut info) = self.shared.info.write() {
                    info.peer_id = self.swarm.local_peer_id().to_string();
                    info.listen.push(address.to_string());
                }
            }
            SwarmEvent::ConnectionEstablished {
                peer_id,
                endpoint,
                num_established,
                ..
            } => {
                debug!(peer = %peer_id, dialer = endpoint.is_dialer(), n = num_established, "connection established");
                let p = self.peers.entry(peer_id).or_default();
                p.connected = true;
                p.last_seen_ms = Some(now_ms());
                if p.unit.is_none() {
                    if p.awaiting_hello_since.is_none() {
                        p.awaiting_hello_since = Some(std::time::Instant::now());
                    }
                    self.swarm
                        .behaviour_mut()
                        .gossipsub
                        .set_application_score(&peer_id, NON_MEMBER_SCORE);
                }
                if endpoint.is_dialer() {
                    p.addresses.insert(endpoint.get_remote_address().clone());
                }
                if !p.hello_sent {
                    p.hello_sent = true;
                    self.greet(peer_id);
                }
            }
            SwarmEvent::ConnectionClosed {
                peer_id,
                num_established,
                cause,
                ..
            } => {
                debug!(peer = %peer_id, n = num_established, cause = ?cause, "connection closed");
                if num_established > 0 {
                    return;
                }
                if let Some(p) = self.peers.get_mut(&peer_id) {
                    p.connected = false;
                    p.hello_sent = false;
                    p.hello_request = None;
                    p.unit = None;
                    p.awaiting_hello_since = None;
                    p.in_flight.clear();
                    p.again.clear();
                    p.queued.clear();
                }
                self.warned.retain(|(p, _), _| *p != peer_id);
                self.shared.engine().peer_gone(&peer_id.to_string());
            }
            SwarmEvent::Behaviour(BehaviourEvent::Sync(e)) => self.sync_event(e),
            SwarmEvent::Behaviour(BehaviourEvent::Gossipsub(gossipsub::Event::Message {
                propagation_source,
                message_id,
                message,
            })) => self.announcement(propagation_source, message_id, message),
            SwarmEvent::Behaviour(BehaviourEvent::Mdns(mdns::Event::Discovered(found))) => {
                for (peer, addr) in found {
                    self.peers.entry(peer).or_default().addresses.insert(addr);
                    if !self.blocked.contains(&peer) {
                        self.dial_peer(peer);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Identify(identify::Event::Received {
                peer_id,
                info,
                ..
            })) => {
                let p = self.peers.entry(peer_id).or_default();
                for a in info.listen_addrs {
                    if !a.iter().any(|p| matches!(p, libp2p::multiaddr::Protocol::Ip4(ip) if ip.is_unspecified())) {
                        p.addresses.insert(a);
                    }
                }
            }
            SwarmEvent::Behaviour(BehaviourEvent::Ping(ping::Event {
                peer,
                result: Ok(rtt),
                ..
            })) => {
                if let Some(p) = self.peers.get_mut(&peer) {
                    p.rtt_ms = Some(rtt.as_millis() as u64);
                    p.last_seen_ms = Some(now_ms());
                }
            }
            SwarmEvent::OutgoingConnectionError { peer_id, error, .. } => {
                debug!(peer = ?peer_id, %error, "dial failed");
            }
            SwarmEvent::IncomingConnectionError { error, .. } => {
                debug!(%error, "incoming connection failed");
            }
            _ => {}
        }
    }

    fn sync_event(&mut self, event: request_response::Event<Request, Response>) {
        use request_response::{Event, Message};
        match event {
            Event::Message {
                peer,
                message:
                    Message::Request {
                        request, channel, ..
                    },
                ..
            } => {
                let response = self.request(peer, request);
                let _ = self
                    .swarm
                    .behaviour_mut()
                    .sync
                    .send_response(channel, response);
            }
            Event::Message {
                peer,
                message: Message::Response { response, .. },
                ..
            } => self.response(peer, response),
            Event::OutboundFailure {
                peer,
                request_id,
                error,
                ..
            } => {
                debug!(%peer, %error, "request failed");
                let Some(p) = self.peers.get_mut(&peer) else {
                    return;
                };
                p.in_flight.clear();
                if p.hello_request == Some(request_id) {
                    p.hello_request = None;
                    // Two ends that dial each other at once (both unblocked by a heal) briefly
                    // hold more connections than the per-peer limit, and each end may refuse a
                    // different one: a hello sent on a refused connection is lost while the
                    // peer stays connected over another. Greet again on what is left, now,
                    // rather than leave the link silent until anti-entropy.
                    let retry = matches!(
                        error,
                        request_response::OutboundFailure::ConnectionClosed
                            | request_response::OutboundFailure::Timeout
                    );
                    if retry && p.unit.is_none() && self.swarm.is_connected(&peer) {
                        debug!(%peer, "hello lost with its connection; greeting again");
                        self.greet(peer);
                    }
                }
            }
            Event::InboundFailure { peer, error, .. } => {
                debug!(%peer, %error, "inbound request failed");
                // A request cut short reads as end-of-file, as an oversized one truncated by the
                // codec does; only a peer still connected can have sent the oversized one.
                if let request_response::InboundFailure::Io(e) = &error
                    && !transport_failure(e.kind())
                    && (e.kind() != std::io::ErrorKind::UnexpectedEof
                        || self.swarm.is_connected(&peer))
                {
                    // An oversized or undecodable request: the peer made the node read it.
                    let e = SyncRefused::Unreadable(e.to_string());
                    self.offence(peer, &e, false);
                }
                self.drop_if_marked(peer);
            }
            Event::ResponseSent { peer, .. } => self.drop_if_marked(peer),
        }
    }

    fn request(&mut self, peer: PeerId, request: Request) -> Response {
        let size = request_size(&request);
        self.metrics.bytes_in.inc_by(size);
        if self.requests.check_key(&peer).is_err() {
            let e = SyncRefused::RateLimited(self.config.sync.requests_per_second_max);
            self.offence(peer, &e, true);
            return rejected(&e);
        }
        let response = match request {
            Request::Hello(hello) => match self.hello(peer, &hello) {
                Ok(Ok(())) => Response::Hello(self.shared.engine().hello()),
                Ok(Err(e)) => {
                    // Tell the peer why, then drop it.
                    self.drop_after_response.insert(peer);
                    rejected(&e)
                }
                Err(e) => {
                    self.own_failure(peer, &e);
                    try_again()
                }
            },
            Request::Inventory(inv) => match self.peers.get(&peer).and_then(|p| p.unit.clone()) {
                None => rejected(&SyncRefused::NoHello),
                Some(unit) => {
                    let answer = {
                        let mut e = self.shared.engine();
                        e.to_sync(&unit.id, &inv)
                            .map(|todo| (e.inventory_for(&unit.id), todo))
                    };
                    match answer {
                        Ok((mine, todo)) => {
                            debug!(%peer, differ = todo.len(), "inventory received");
                            self.start_fresh_sessions(peer, todo);
                            Response::Inventory(mine)
                        }
                        Err(e) => {
                            self.offence(peer, &e, true);
                            rejected(&e)
                        }
                    }
                }
            },
            Request::Sync(msg) => match self.peers.get(&peer).and_then(|p| p.unit.clone()) {
                None => rejected(&SyncRefused::NoHello),
                Some(unit) => {
                    let doc = msg.doc;
                    let span = info_span!("sync", %peer, doc = %doc.short());
                    let _enter = span.enter();
                    told_set_aside(peer, &msg);
                    let result = self
                        .shared
                        .engine()
                        .sync_in(&peer.to_string(), &unit.id, *msg);
                    debug!(
                        reply = matches!(result, Ok(Ok(Synced { reply: Some(_), .. }))),
                        "sync request"
                    );
                    match result {
                        Ok(Ok(synced)) => {
                            let (reply, notes) = self.set_aside(peer, synced);
                            Response::Sync(Box::new(reply.unwrap_or(SyncMessage {
                                doc,
                                header: None,
                                message: None,
                                signatures: Default::default(),
                                certificates: Vec::new(),
                                registrations: Vec::new(),
                                attestations: Vec::new(),
                                set_aside: notes,
                            })))
                        }
                        Ok(Err(e)) => {
                            self.offence(peer, &e, true);
                            rejected(&e)
                        }
                        Err(e) => {
                            self.own_failure(peer, &e);
                            try_again()
                        }
                    }
                }
            },
        };
        let size = response_size(&response);
        self.metrics.bytes_out.inc_by(size);
        response
    }

    /// Judge a peer's hello. As with `Engine::accept_hello`, `Err` is this node's own failure,
    /// which leaves the peer to be greeted again.
    fn hello(
        &mut self,
        peer: PeerId,
        hello: &protocol::Hello,
    ) -> Result<Result<(), SyncRefused>, engine::Error> {
        let Some(key) = peer_key(&peer) else {
            return Ok(Err(SyncRefused::Hello(
                "peer id is not an ed25519 key".to_owned(),
            )));
        };
        let unit = self.shared.engine().accept_hello(hello, &key)?;
        match unit {
            Ok(unit) => {
                info!(%peer, unit = %unit.id, "peer said hello");
                let first = self.peers.get(&peer).is_none_or(|p| p.unit.is_none());
                let p = self.peers.entry(peer).or_default();
                p.unit = Some(unit.clone());
                p.awaiting_hello_since = None;
                p.refusals = 0;
                p.refused_until = None;
                // A member now: its gossip counts and it may join the mesh.
                self.swarm
                    .behaviour_mut()
                    .gossipsub
                    .set_application_score(&peer, 0.0);
                if first {
                    let inv = self.shared.engine().inventory_for(&unit.id);
                    self.swarm
                        .behaviour_mut()
                        .sync
                        .send_request(&peer, Request::Inventory(inv));
                }
                Ok(Ok(()))
            }
            Err(e) => {
                warn!(%peer, reason = e.reason(), error = %e, "refusing peer");
                self.metrics.rejection(e.reason());
                self.refused(peer);
                Ok(Err(e))
            }
        }
    }

    /// A peer's hello was refused, or never came: it is not redialled, unless it is a
    /// bootstrap peer, and then after a backoff that doubles with each refusal in a row.
    fn refused(&mut self, peer: PeerId) {
        let base = self.config.network.redial_interval_ms.max(100);
        let p = self.peers.entry(peer).or_default();
        p.refusals = p.refusals.saturating_add(1);
        let backoff = base
            .saturating_mul(1 << p.refusals.min(16))
            .min(REDIAL_BACKOFF_MAX_MS);
        p.refused_until = Some(std::time::Instant::now() + Duration::from_millis(backoff));
    }

    /// Disconnect peers connected longer than `hello_timeout_ms` without a completed hello.
    fn drop_silent(&mut self) {
        let limit = Duration::from_millis(self.config.network.hello_timeout_ms);
        let silent: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(_, p)| {
                p.unit.is_none() && p.awaiting_hello_since.is_some_and(|t| t.elapsed() >= limit)
            })
            .map(|(id, _)| *id)
            .collect();
        for peer in silent {
            warn!(%peer, "disconnecting a peer that did not complete hello in time");
            self.metrics.rejection("hello-timeout");
            if let Some(p) = self.peers.get_mut(&peer) {
                p.awaiting_hello_since = None;
            }
            self.refused(peer);
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn response(&mut self, peer: PeerId, response: Response) {
        let size = response_size(&response);
        self.metrics.bytes_in.inc_by(size);
        match response {
            Response::Hello(hello) => match self.hello(peer, &hello) {
                Ok(Ok(())) => {}
                Ok(Err(_)) => {
                    let _ = self.swarm.disconnect_peer_id(peer);
                }
                // Still connected without a hello: anti-entropy greets it again.
                Err(e) => self.own_failure(peer, &e),
            },
            Response::Inventory(inv) => {
                let Some(unit) = self.peers.get(&peer).and_then(|p| p.unit.clone()) else {
                    return;
                };
                let todo = self.shared.engine().to_sync(&unit.id, &inv);
                match todo {
                    Ok(todo) => {
                        debug!(%peer, differ = todo.len(), "inventory answered");
                        self.start_fresh_sessions(peer, todo);
                    }
                    Err(e) => self.offence(peer, &e, false),
                }
            }
            Response::Sync(msg) => {
                let doc = msg.doc;
                let Some(unit) = self.peers.get(&peer).and_then(|p| p.unit.clone()) else {
                    return;
                };
                told_set_aside(peer, &msg);
                let next = if msg.message.is_some() {
                    let result = self
                        .shared
                        .engine()
                        .sync_in(&peer.to_string(), &unit.id, *msg);
                    match result {
                        Ok(Ok(synced)) => self.set_aside(peer, synced).0,
                        Ok(Err(e)) => {
                            self.offence(peer, &e, false);
                            None
                        }
                        Err(e) => {
                            self.own_failure(peer, &e);
                            None
                        }
                    }
                } else {
                    self.shared
                        .engine()
                        .sync_out(&peer.to_string(), &unit.id, &doc)
                };
                debug!(%peer, doc = %doc.short(), more = next.is_some(), "sync answered");
                self.continue_session(peer, doc, next);
            }
            Response::Rejected { reason, detail } => {
                warn!(%peer, %reason, %detail, "peer refused our request");
                // What we sent was refused, so the peer lacks it: offer everything again next
                // session rather than believe it was delivered.
                let docs: Vec<DocId> = self
                    .peers
                    .get_mut(&peer)
                    .map(|p| p.in_flight.drain().map(|(d, _)| d).collect())
                    .unwrap_or_default();
                let mut e = self.shared.engine();
                for doc in docs {
                    e.reset_sync(&peer.to_string(), &doc);
                }
                e.forget_sent_records(&peer.to_string());
            }
        }
    }

    /// Sessions for documents whose heads an inventory showed to differ. Their sync state is
    /// reset first: if heads still differ after earlier sessions, something sent was lost or
    /// refused, and only a fresh session offers it again.
    fn start_fresh_sessions(&mut self, peer: PeerId, docs: Vec<DocId>) {
        for doc in docs {
            let busy = self
                .peers
                .get(&peer)
                .is_some_and(|p| p.in_flight.contains_key(&doc));
            if !busy {
                self.shared.engine().reset_sync(&peer.to_string(), &doc);
            }
            self.start_session(peer, doc);
        }
    }

    fn start_session(&mut self, peer: PeerId, doc: DocId) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let Some(unit) = p.unit.clone() else { return };
        if p.in_flight.contains_key(&doc) {
            p.again.insert(doc);
            return;
        }
        // Within the peer's concurrent sessions; the rest wait their turn (a cold sync differs
        // in every document at once).
        if p.in_flight.len() >= self.config.sync.concurrent_sessions_per_peer_max.max(1) {
            if !p.queued.contains(&doc) {
                p.queued.push_back(doc);
            }
            return;
        }
        let msg = self
            .shared
            .engine()
            .sync_out(&peer.to_string(), &unit.id, &doc);
        if let Some(msg) = msg {
            self.send_sync(peer, doc, msg, 0);
        }
    }

    fn continue_session(&mut self, peer: PeerId, doc: DocId, next: Option<SyncMessage>) {
        let Some(p) = self.peers.get_mut(&peer) else {
            return;
        };
        let rounds = p.in_flight.remove(&doc).unwrap_or(0) + 1;
        let again = p.again.remove(&doc);
        match next {
            Some(msg) if rounds < self.config.sync.rounds_per_session_max => {
                self.send_sync(peer, doc, msg, rounds)
            }
            _ if again => self.start_session(peer, doc),
            _ => self.start_queued(peer),
        }
    }

    /// Start waiting sessions with `peer` while there is room.
    fn start_queued(&mut self, peer: PeerId) {
        let max = self.config.sync.concurrent_sessions_per_peer_max.max(1);
        loop {
            let Some(p) = self.peers.get_mut(&peer) else {
                return;
            };
            if p.in_flight.len() >= max {
                return;
            }
            let Some(doc) = p.queued.pop_front() else {
                return;
            };
            self.start_session(peer, doc);
        }
    }

    /// Sessions with `peer` in flight and waiting: for tests and status.
    pub fn sessions_of(&self, peer: &PeerId) -> (usize, usize) {
        self.peers
            .get(peer)
            .map_or((0, 0), |p| (p.in_flight.len(), p.queued.len()))
    }

    fn send_sync(&mut self, peer: PeerId, doc: DocId, msg: SyncMessage, rounds: u32) {
        let req = Request::Sync(Box::new(msg));
        self.metrics.bytes_out.inc_by(request_size(&req));
        self.swarm.behaviour_mut().sync.send_request(&peer, req);
        if let Some(p) = self.peers.get_mut(&peer) {
            p.in_flight.insert(doc, rounds);
        }
    }

    /// A refused input: counted in the metrics under its reason, logged (a warning once per
    /// peer and reason per [`WARN_INTERVAL`]), and, if it is the sender's own fault
    /// ([`SyncRefused::is_offence`]), counted against it. At `offences_max` offences within
    /// `offence_window_ms` the peer is banned for `ban_ms`: blocked at the transport, so it can
    /// neither stay nor reconnect. `in_request`: we still owe it a response (saying why), so the
    /// block waits until that is sent.
    fn offence(&mut self, peer: PeerId, e: &SyncRefused, in_request: bool) {
        let reason = e.reason();
        self.metrics.rejection(reason);
        let now = std::time::Instant::now();
        let quiet = self
            .warned
            .get(&(peer, reason))
            .is_some_and(|t| now.duration_since(*t) < WARN_INTERVAL);
        if quiet {
            debug!(%peer, reason, error = %e, "refused input from peer");
        } else {
            self.warned.insert((peer, reason), now);
            warn!(%peer, reason, error = %e, offence = e.is_offence(), "refused input from peer (further refusals for this reason are logged at debug for a minute)");
        }
        if !e.is_offence() {
            return;
        }
        let max = self.config.sync.offences_max as usize;
        let window = Duration::from_millis(self.config.sync.offence_window_ms);
        let p = self.peers.entry(peer).or_default();
        while p
            .offences
            .front()
            .is_some_and(|t| now.duration_since(*t) >= window)
        {
            p.offences.pop_front();
        }
        p.offences.push_back(now);
        if p.offences.len() >= max {
            warn!(%peer, offences = p.offences.len(), "disconnecting peer for repeated invalid input");
            p.offences.clear();
            self.bans
                .insert(peer, now_ms() + self.config.sync.ban_ms as i64);
            self.metrics.disconnects_for_offences.inc();
            if in_request {
                self.drop_after_response.insert(peer);
            } else {
                self.swarm.behaviour_mut().blocked.block_peer(peer);
            }
        }
    }

    /// This node failed (its store) while taking a peer's input: not the peer's fault, so never
    /// counted against it and never a ban. Counted under [`STORAGE`] in the rejections metric and
    /// logged as an error (once a minute per peer, then at debug, as refusals are).
    fn own_failure(&mut self, peer: PeerId, e: &engine::Error) {
        self.metrics.rejection(STORAGE);
        let now = std::time::Instant::now();
        let quiet = self
            .warned
            .get(&(peer, STORAGE))
            .is_some_and(|t| now.duration_since(*t) < WARN_INTERVAL);
        if quiet {
            debug!(%peer, error = %e, "could not take a peer's input: this node failed");
        } else {
            self.warned.insert((peer, STORAGE), now);
            error!(%peer, error = %e, "could not take a peer's input: this node failed (further failures with this peer are logged at debug for a minute)");
        }
    }

    /// A taken message's changes that were set aside are refusals too, never the sender's
    /// fault: counted and logged like any, and told to the sender. Returns the reply, which
    /// carries the notes, and the notes (for a reply made up when there is none).
    fn set_aside(
        &mut self,
        peer: PeerId,
        synced: Synced,
    ) -> (Option<SyncMessage>, Vec<SetAsideNote>) {
        let notes: Vec<SetAsideNote> = synced
            .set_aside
            .iter()
            .filter_map(|r| {
                Some(SetAsideNote {
                    change: r.change()?.0,
                    reason: r.reason().to_owned(),
                })
            })
            .collect();
        for reason in synced.set_aside {
            self.offence(peer, &SyncRefused::Model(reason), false);
        }
        let mut reply = synced.reply;
        if let Some(r) = reply.as_mut() {
            r.set_aside.clone_from(&notes);
        }
        (reply, notes)
    }

    /// A peer marked for dropping has been sent its response: drop it after a grace period in
    /// which the response can be read (closing at once can cut it off).
    fn drop_if_marked(&mut self, peer: PeerId) {
        if self.drop_after_response.remove(&peer) {
            self.drops_due
                .push((std::time::Instant::now() + DROP_GRACE, peer));
        }
    }

    fn drop_due(&mut self) {
        let now = std::time::Instant::now();
        let (due, later): (Vec<_>, Vec<_>) =
            self.drops_due.drain(..).partition(|(at, _)| *at <= now);
        self.drops_due = later;
        for (_, peer) in due {
            self.drop_now(peer);
        }
    }

    fn drop_now(&mut self, peer: PeerId) {
        if self.bans.contains_key(&peer) {
            self.swarm.behaviour_mut().blocked.block_peer(peer);
        } else {
            let _ = self.swarm.disconnect_peer_id(peer);
        }
    }

    fn announcement(
        &mut self,
        source: PeerId,
        id: gossipsub::MessageId,
        message: gossipsub::Message,
    ) {
        let decoded: Option<Announce> = serde_json::from_slice(&message.data).ok();
        let acceptance = if decoded.is_some() {
            gossipsub::MessageAcceptance::Accept
        } else {
            gossipsub::MessageAcceptance::Reject
        };
        self.swarm
            .behaviour_mut()
            .gossipsub
            .report_message_validation_result(&id, &source, acceptance);
        let Some(ann) = decoded else { return };
        let Some(origin) = message.source else { return };
        let Some(unit) = self.peers.get(&origin).and_then(|p| p.unit.clone()) else {
            return;
        };
        let (held, differs) = {
            let mut e = self.shared.engine();
            match e.doc_mut(&ann.doc) {
                Ok(d) => {
                    let mut mine: Vec<[u8; 32]> = d.heads().iter().map(|h| h.0).collect();
                    mine.sort();
                    let mut theirs = ann.heads.clone();
                    theirs.sort();
                    (true, mine != theirs)
                }
                Err(_) => (false, true),
            }
        };
        if !differs {
            return;
        }
        if held {
            self.start_session(origin, ann.doc);
        } else {
            // We lack the document: our inventory tells the origin, which pushes it if we may
            // hold it.
            let inv = self.shared.engine().inventory_for(&unit.id);
            self.swarm
                .behaviour_mut()
                .sync
                .send_request(&origin, Request::Inventory(inv));
        }
    }

    fn announce(&mut self) {
        // (document, its announcement if every member may read it).
        let changed: Vec<(DocId, Option<Announce>)> = {
            let mut e = self.shared.engine();
            let ids = e.take_changed();
            ids.into_iter()
                .filter_map(|id| {
                    let d = e.doc_mut(&id).ok()?;
                    let h = &d.header().header;
                    let public = h.scope == Scope::Public;
                    let unit = h.unit.clone();
                    let heads = d.heads().iter().map(|h| h.0).collect();
                    Some((
                        id,
                        public.then_some(Announce {
                            doc: id,
                            unit,
                            heads,
                        }),
                    ))
                })
                .collect()
        };
        for (id, ann) in changed {
            // Gossip reaches every member, so it carries public documents only; the heads of a
            // chain- or unit-scoped document go only to connected peers that may hold it, in
            // the sessions below, and hop by hop from there.
            if let Some(ann) = ann {
                let bytes = serde_json::to_vec(&ann).expect("an announcement serializes");
                if let Err(e) = self
                    .swarm
                    .behaviour_mut()
                    .gossipsub
                    .publish(self.topic.clone(), bytes)
                {
                    debug!(doc = %id.short(), error = %e, "announcement not published");
                }
            }
            // Peers that are already connected get a session straight away; gossipsub is the
            // path for those further away.
            let peers: Vec<PeerId> = self
                .peers
                .iter()
                .filter(|(_, p)| p.unit.is_some())
                .map(|(id, _)| *id)
                .collect();
            for peer in peers {
                self.start_session(peer, id);
            }
        }
    }

    fn anti_entropy(&mut self) {
        // Forget the rate limits of peers that have been quiet long enough to be full again.
        self.requests.retain_recent();
        // A connected peer whose hello never completed (the request went down with a connection
        // that closed under it) is greeted again rather than left silent.
        let unhelloed: Vec<PeerId> = self
            .peers
            .iter()
            .filter(|(id, p)| p.unit.is_none() && self.swarm.is_connected(id))
            .map(|(id, _)| *id)
            .collect();
        for peer in unhelloed {
            self.greet(peer);
        }
        let peers: Vec<(PeerId, Unit)> = self
            .peers
            .iter()
            .filter_map(|(id, p)| p.unit.clone().map(|u| (*id, u)))
            .collect();
        for (peer, unit) in peers {
            let inv = self.shared.engine().inventory_for(&unit.id);
            self.swarm
                .behaviour_mut()
                .sync
                .send_request(&peer, Request::Inventory(inv));
        }
    }

    fn checkpoint(&mut self) {
        let mut e = self.shared.engine();
        if !e.is_district() {
            return;
        }
        match e.checkpoint() {
            Ok(id) => info!(checkpoint = %id.short(), "signed a checkpoint"),
            Err(err) => warn!(error = %err, "could not sign a checkpoint"),
        }
    }

    fn publish_peers(&mut self) {
        let list: Vec<PeerInfo> = self
            .peers
            .iter()
            .map(|(id, p)| PeerInfo {
                peer_id: id.to_string(),
                unit: p.unit.as_ref().map(|u| u.id.to_string()),
                unit_name: p.unit.as_ref().map(|u| u.name.clone()),
                addresses: p.addresses.iter().map(|a| a.to_string()).collect(),
                connected: p.connected,
                blocked: self.blocked.contains(id),
                rtt_ms: p.rtt_ms,
                last_seen_ms: p.last_seen_ms,
                offences: p.offences.len() as u32,
            })
            .collect();
        let n = list
            .iter()
            .filter(|p| p.connected && p.unit.is_some())
            .count();
        self.metrics.peers.set(n as i64);
        if let Ok(mut peers) = self.shared.peers.write() {
            *peers = list;
        }
    }
}

fn rejected(e: &SyncRefused) -> Response {
    Response::Rejected {
        reason: e.reason().to_owned(),
        detail: e.to_string(),
    }
}

/// The answer to a request this node could not take for its own failure: the peer sent nothing
/// wrong, and offers it again (a refused request's sessions start afresh). What failed (paths,
/// the disk's error) stays in this node's log, not in a peer's hands.
fn try_again() -> Response {
    Response::Rejected {
        reason: STORAGE.to_owned(),
        detail: "this node could not store it; offer it again".to_owned(),
    }
}

/// Approximate bytes of a sync message, for the traffic metrics: a packed signature is 64
/// bytes and an index, a certificate about 300.
fn sync_size(m: &SyncMessage) -> u64 {
    (m.message.as_ref().map_or(0, Vec::len) + m.signatures.len() * 65 + m.certificates.len() * 300)
        as u64
}

/// A stream that broke under the request (a cut link, a closed connection, a reply written to
/// a peer that left) says nothing about the peer's honesty; only what it sent does.
fn transport_failure(kind: std::io::ErrorKind) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        kind,
        ConnectionReset | ConnectionAborted | BrokenPipe | NotConnected | WriteZero | TimedOut
    )
}

fn request_size(r: &Request) -> u64 {
    match r {
        Request::Sync(m) => sync_size(m),
        Request::Inventory(i) => (i.docs.len() * 64) as u64,
        Request::Hello(_) => 512,
    }
}

fn response_size(r: &Response) -> u64 {
    match r {
        Response::Sync(m) => sync_size(m),
        Response::Inventory(i) => (i.docs.len() * 64) as u64,
        Response::Hello(_) => 512,
        Response::Rejected { detail, .. } => detail.len() as u64,
    }
}

#[cfg(test)]
mod tests {
    use std::io::ErrorKind;

    use super::transport_failure;

    /// A link cut by a partition must not count against an honest peer (five offences ban it),
    /// while what a peer sent and could not be read still does.
    #[test]
    fn broken_streams_are_not_offences_but_unreadable_requests_are() {
        for kind in [
            ErrorKind::ConnectionReset,
            ErrorKind::BrokenPipe,
            ErrorKind::ConnectionAborted,
        ] {
            assert!(transport_failure(kind), "{kind:?}");
        }
        // What libp2p's CBOR codec reports for a request it could not decode or that ran
        // past the size limit.
        for kind in [
            ErrorKind::InvalidData,
            ErrorKind::UnexpectedEof,
            ErrorKind::Unsupported,
            ErrorKind::Other,
        ] {
            assert!(!transport_failure(kind), "{kind:?}");
        }
    }
}
