//! Engines of one provisioned network talking in memory: the sync protocol without libp2p and
//! without sleeps, as quinn tests its protocol with a connected pair. What `net` does over the
//! wire — hellos both ways, inventories, a session per document whose heads differ, each reply
//! answered until neither side has more to say — is written here once, so a test says which
//! engines talk about what and asserts on the engines.
//!
//! Any two [`Node`]s can be pumped, so a test may open more than two. A test binary includes
//! this file with `#[path = "common/pair.rs"] mod pair;`.

use linli_crdt_model::doc::DocId;
use linli_crdt_model::document::Rejected;
use linli_crdt_model::unit::UnitId;
use linli_node::engine::{Engine, SyncRefused};
use linli_node::setup::ProvisionedNode;

/// Messages one session may take before the harness calls it stuck: an honest session about one
/// document ends in a handful.
const SESSION_MESSAGES_MAX: usize = 64;

/// Exchanges of inventories before the harness calls a pair unable to settle.
const SETTLE_ROUNDS_MAX: usize = 16;

/// One node: its engine, the name its peers give it (its libp2p peer id, as `net` names peers)
/// and its certified unit.
#[derive(Debug)]
pub(crate) struct Node {
    pub(crate) engine: Engine,
    pub(crate) name: String,
    pub(crate) unit: UnitId,
}

impl Node {
    /// Open the engine of a provisioned data directory.
    pub(crate) fn open(provisioned: &ProvisionedNode) -> Node {
        let engine = Engine::open(&provisioned.dir).expect("a provisioned node opens");
        Node {
            unit: engine.unit().id.clone(),
            name: provisioned.peer_id.clone(),
            engine,
        }
    }
}

/// What pumping did: sessions run, messages taken, and every change set aside on the way.
#[derive(Debug, Default)]
pub(crate) struct Pumped {
    pub(crate) sessions: usize,
    pub(crate) messages: usize,
    /// Why each change not taken was set aside, in the order the receivers said so.
    pub(crate) set_aside: Vec<Rejected>,
}

/// Each node judges the other's hello, as two nodes do on connecting. An honest hello is never
/// refused: a refusal panics with the reason.
pub(crate) fn greet(a: &mut Node, b: &mut Node) {
    accept(a, b);
    accept(b, a);
}

/// `to` judges the hello of `from`.
fn accept(from: &Node, to: &mut Node) {
    let hello = from.engine.hello();
    let key = from.engine.node_key().public();
    let unit = to
        .engine
        .accept_hello(&hello, &key)
        .unwrap_or_else(|e| panic!("{} failed on its own: {e}", to.unit))
        .unwrap_or_else(|e| panic!("{} refused the hello of {}: {e}", to.unit, from.unit));
    assert_eq!(unit.id, from.unit, "the hello proves the unit it names");
}

/// One session about `doc`, `from` speaking first, each message answered until one side has
/// nothing more to say. `Err` is the first refusal; a session that does not end within
/// [`SESSION_MESSAGES_MAX`] messages panics.
pub(crate) fn session(from: &mut Node, to: &mut Node, doc: &DocId) -> Result<Pumped, SyncRefused> {
    let mut pumped = Pumped {
        sessions: 1,
        ..Pumped::default()
    };
    let mut msg = from.engine.sync_out(&to.name, &to.unit, doc);
    let (mut speaker, mut listener) = (from, to);
    while let Some(m) = msg {
        if pumped.messages == SESSION_MESSAGES_MAX {
            panic!("the session about {doc} did not end within {SESSION_MESSAGES_MAX} messages");
        }
        let synced = listener
            .engine
            .sync_in(&speaker.name, &speaker.unit, m)
            .unwrap_or_else(|e| panic!("{} failed on its own: {e}", listener.unit))?;
        pumped.messages += 1;
        pumped.set_aside.extend(synced.set_aside);
        msg = synced.reply;
        (speaker, listener) = (listener, speaker);
    }
    Ok(pumped)
}

/// Anti-entropy until quiescent: each node reads the other's inventory, and a fresh session (as
/// `net` starts one after an inventory) runs for every document whose heads differ, from the
/// side that holds it; until an exchange of inventories finds nothing to do. `Err` is the first
/// refusal; a pair that does not settle within [`SETTLE_ROUNDS_MAX`] exchanges panics.
pub(crate) fn settle(a: &mut Node, b: &mut Node) -> Result<Pumped, SyncRefused> {
    let mut pumped = Pumped::default();
    for _ in 0..SETTLE_ROUNDS_MAX {
        let theirs = b.engine.inventory_for(&a.unit);
        let from_a = a.engine.to_sync(&b.unit, &theirs)?;
        let theirs = a.engine.inventory_for(&b.unit);
        let from_b = b.engine.to_sync(&a.unit, &theirs)?;
        if from_a.is_empty() && from_b.is_empty() {
            return Ok(pumped);
        }
        fresh_sessions(a, b, &from_a, &mut pumped)?;
        fresh_sessions(b, a, &from_b, &mut pumped)?;
    }
    panic!("the pair did not settle within {SETTLE_ROUNDS_MAX} exchanges of inventories");
}

/// A fresh session about each of `docs`, `from` first: its sync state forgets what it believes
/// sent, as `net` does when an inventory shows heads still differ.
fn fresh_sessions(
    from: &mut Node,
    to: &mut Node,
    docs: &[DocId],
    pumped: &mut Pumped,
) -> Result<(), SyncRefused> {
    for doc in docs {
        from.engine.reset_sync(&to.name, doc);
        let s = session(from, to, doc)?;
        pumped.sessions += s.sessions;
        pumped.messages += s.messages;
        pumped.set_aside.extend(s.set_aside);
    }
    Ok(())
}
