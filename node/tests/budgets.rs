//! A node's budgets per peer, each at its boundary: sync states and the Bloom filters they
//! hold, changes waiting for a dependency, inventory entries. Two engines of one provisioned
//! network talk in memory (`common/pair.rs`: no libp2p, no sleeps): the budgets are the
//! engine's, and this is the shortest path to their edges.

use std::path::Path;

#[path = "common/pair.rs"]
mod pair;

use automerge::ChangeHash;
use automerge::sync::{ChunkList, Message, MessageVersion};
use linli_crdt_model::doc::DocId;
use linli_crdt_model::kinds::Kind;
use linli_crdt_model::sync::Signatures;
use linli_crdt_model::unit::{Unit, UnitKind};
use linli_crdt_model::wire;
use linli_node::clock::now_ms;
use linli_node::config::Config;
use linli_node::contract::{CreateDoc, Op};
use linli_node::engine::SyncRefused;
use linli_node::protocol::{Inventory, InventoryEntry, SyncMessage};
use linli_node::setup;
use linli_node::testkit::three_units;
use pair::Node;

struct Pair {
    district: Node,
    community: Node,
}

/// 铁东区 → 解放街道 → 胜利社区; the engines of the district and the community, greeted, the
/// district's configuration changed by `tune`.
fn pair(dir: &Path, tune: impl Fn(&mut Config)) -> Pair {
    let plan = three_units();
    let config = |u: &Unit| {
        let mut c = Config::new(u.id.clone());
        c.network.mdns = false;
        c.checkpoint.interval_ms = 0;
        if u.kind == UnitKind::District {
            tune(&mut c);
        }
        c
    };
    let p = setup::provision(dir, "铁东区邻里网", &plan, config, now_ms() - 60_000).unwrap();
    let mut district = Node::open(&p.nodes[0]);
    let mut community = Node::open(&p.nodes[2]);
    pair::greet(&mut district, &mut community);
    Pair {
        district,
        community,
    }
}

impl Pair {
    /// A new public convention at the community.
    fn convention(&mut self, title: &str) -> DocId {
        self.community
            .engine
            .create(
                CreateDoc {
                    kind: Kind::Convention,
                    title: title.to_owned(),
                    scope: None,
                    period: None,
                    minutes: None,
                },
                None,
            )
            .unwrap()
    }

    /// One article added to `doc` at the community: the new change's hash.
    fn edit(&mut self, doc: &DocId, n: u32) -> ChangeHash {
        let op = Op::ArticleAdd {
            id: None,
            number: n,
            title: format!("第{n}条"),
            text: "爱护公共环境。".to_owned(),
        };
        let receipt = self.community.engine.apply(doc, &op, None).unwrap();
        receipt.change.parse().unwrap()
    }

    /// One session about `doc`, community first, until neither has more to say.
    fn sync(&mut self, doc: &DocId) {
        let pumped = pair::session(&mut self.community, &mut self.district, doc)
            .expect("an honest session is never refused");
        assert!(pumped.set_aside.is_empty(), "{:?}", pumped.set_aside);
    }

    fn heads(&mut self, doc: &DocId) -> (Vec<ChangeHash>, Vec<ChangeHash>) {
        (
            self.community.engine.doc_mut(doc).unwrap().heads(),
            self.district.engine.doc_mut(doc).unwrap().heads(),
        )
    }

    /// A message from the community about `doc` carrying exactly `changes`, with their
    /// signatures, as if it had left the others out.
    fn carrying(&mut self, doc: &DocId, changes: &[ChangeHash]) -> SyncMessage {
        let d = self.community.engine.doc_mut(doc).unwrap();
        let chunks: Vec<Vec<u8>> = changes.iter().map(|h| d.change_bytes(h).unwrap()).collect();
        let sigs: Vec<_> = changes
            .iter()
            .map(|h| d.signature(h).unwrap().clone())
            .collect();
        let message = Message {
            heads: d.heads(),
            need: Vec::new(),
            have: Vec::new(),
            changes: ChunkList::from(chunks),
            flags: None,
            version: MessageVersion::V1,
        };
        SyncMessage {
            doc: *doc,
            header: None,
            message: Some(wire::encode_sync_message(message).unwrap()),
            signatures: Signatures::pack(sigs),
            certificates: Vec::new(),
            registrations: Vec::new(),
            attestations: Vec::new(),
            set_aside: Vec::new(),
        }
    }
}

/// `sync.sync_states_per_peer_max`: the district holds at most that many of the community's
/// sync states in memory — exactly that many once more documents were synced — and every
/// document still converges (a dropped state's session starts afresh).
#[test]
fn sync_states_per_peer_stop_at_their_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pair(dir.path(), |c| c.sync.sync_states_per_peer_max = 3);
    let docs: Vec<DocId> = (0..6).map(|i| p.convention(&format!("公约{i}"))).collect();
    for (i, doc) in docs.iter().enumerate() {
        p.sync(doc);
        let (held, _) = p.district.engine.sync_states_held(&p.community.name);
        assert_eq!(held, (i + 1).min(3), "after {} documents", i + 1);
    }
    // A dropped state costs nothing but a fresh session: new edits still get through.
    for (i, doc) in docs.iter().enumerate() {
        p.edit(doc, i as u32 + 1);
        p.sync(doc);
        let (c, d) = p.heads(doc);
        assert_eq!(c, d, "document {i} converged");
    }
    assert!(p.district.engine.sync_states_held(&p.community.name).0 <= 3);
}

/// `sync.bloom_bytes_per_peer_max`: the Bloom filters the held states keep stay within the
/// budget (but for the state in use, which is never dropped for it).
#[test]
fn bloom_filters_per_peer_stop_at_their_budget() {
    let dir = tempfile::tempdir().unwrap();
    let budget = 8;
    let mut p = pair(dir.path(), |c| c.sync.bloom_bytes_per_peer_max = budget);
    let docs: Vec<DocId> = (0..5).map(|i| p.convention(&format!("公约{i}"))).collect();
    let mut most = 0;
    for doc in &docs {
        for n in 1..4 {
            p.edit(doc, n);
        }
        p.sync(doc);
        let (held, bytes) = p.district.engine.sync_states_held(&p.community.name);
        most = most.max(held);
        assert!(
            bytes <= budget || held == 1,
            "{held} states hold {bytes} bytes of Bloom filters, over {budget}"
        );
        let (c, d) = p.heads(doc);
        assert_eq!(c, d);
    }
    assert!(
        most < docs.len(),
        "no state was ever dropped: the test proves nothing"
    );
}

/// `sync.deferred_changes_per_peer_max`: changes the community brought that wait for a
/// dependency are counted against it; one more is set aside as `waiting-full` (not an
/// offence), and once the dependency arrives the room is back.
#[test]
fn changes_waiting_for_a_dependency_stop_at_the_peers_budget() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pair(dir.path(), |c| c.sync.deferred_changes_per_peer_max = 2);
    let doc = p.convention("居民公约");
    p.sync(&doc);
    let c: Vec<ChangeHash> = (1..=4).map(|n| p.edit(&doc, n)).collect();

    // c2 and c3 without c1: they wait, at the budget.
    let msg = p.carrying(&doc, &c[1..3]);
    p.district
        .engine
        .sync_in(&p.community.name, &p.community.unit, msg)
        .unwrap()
        .expect("two waiting changes are within the budget");
    assert_eq!(p.district.engine.deferred_held(&p.community.name), 2);

    // c4 would be a third: set aside, not counted against the peer.
    let msg = p.carrying(&doc, &c[3..4]);
    let synced = p
        .district
        .engine
        .sync_in(&p.community.name, &p.community.unit, msg)
        .unwrap()
        .expect("taken, with its change set aside");
    let reasons: Vec<&str> = synced.set_aside.iter().map(|r| r.reason()).collect();
    assert_eq!(reasons, ["waiting-full"]);
    assert!(!SyncRefused::Model(synced.set_aside[0].clone()).is_offence());
    assert_eq!(p.district.engine.deferred_held(&p.community.name), 2);

    // c1 arrives: c2 and c3 are released, the budget is free, and c4 is taken.
    let msg = p.carrying(&doc, &c[0..1]);
    p.district
        .engine
        .sync_in(&p.community.name, &p.community.unit, msg)
        .unwrap()
        .unwrap();
    assert_eq!(p.district.engine.deferred_held(&p.community.name), 0);
    let msg = p.carrying(&doc, &c[3..4]);
    p.district
        .engine
        .sync_in(&p.community.name, &p.community.unit, msg)
        .unwrap()
        .unwrap();
    let (ch, dh) = p.heads(&doc);
    assert_eq!(ch, dh);
}

/// `sync.inventory_docs_max` and the heads of one entry: an inventory at the bound is read, one
/// over it is refused as the sender's own fault (an honest node never sends more).
#[test]
fn a_peers_inventory_stops_at_its_bounds() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pair(dir.path(), |c| c.sync.inventory_docs_max = 4);
    let entry = |i: u8, n_heads: usize| InventoryEntry {
        doc: DocId([i; 32]),
        heads: vec![[i; 32]; n_heads],
    };
    let community = p.community.unit.clone();
    let at = Inventory {
        docs: (0..4).map(|i| entry(i, 1)).collect(),
    };
    p.district
        .engine
        .to_sync(&community, &at)
        .expect("an inventory at the bound is read");
    let over = Inventory {
        docs: (0..5).map(|i| entry(i, 1)).collect(),
    };
    let err = p.district.engine.to_sync(&community, &over).unwrap_err();
    assert_eq!(err.reason(), "limit-exceeded");
    assert!(err.is_offence());

    let heads_max = p.district.engine.wire_limits().hashes_per_list_max;
    let at = Inventory {
        docs: vec![entry(1, heads_max)],
    };
    p.district.engine.to_sync(&community, &at).unwrap();
    let over = Inventory {
        docs: vec![entry(1, heads_max + 1)],
    };
    let err = p.district.engine.to_sync(&community, &over).unwrap_err();
    assert_eq!(err.reason(), "limit-exceeded");
}

/// The pair itself, beneath every test here: greeted, two fresh engines settle through
/// inventories and sessions alone, every change taken, on every document both may hold — the
/// community's new convention and each side's ledger among them.
#[test]
fn a_greeted_pair_settles_through_inventories_alone() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = pair(dir.path(), |_| {});
    let doc = p.convention("居民公约");
    p.edit(&doc, 1);
    let pumped =
        pair::settle(&mut p.district, &mut p.community).expect("an honest pair is never refused");
    assert!(pumped.set_aside.is_empty(), "{:?}", pumped.set_aside);
    let (c, d) = p.heads(&doc);
    assert_eq!(c, d, "the convention converged");
    let shared = |inv: Inventory| {
        let mut docs: Vec<(DocId, Vec<[u8; 32]>)> =
            inv.docs.into_iter().map(|e| (e.doc, e.heads)).collect();
        docs.sort();
        docs
    };
    let district = shared(p.district.engine.inventory_for(&p.community.unit));
    let community = shared(p.community.engine.inventory_for(&p.district.unit));
    assert_eq!(
        district, community,
        "both hold the same documents at the same heads"
    );
    for node in [&p.district, &p.community] {
        let ledger = node.engine.own_doc(Kind::Ledger).unwrap();
        assert!(
            district.iter().any(|(d, _)| *d == ledger),
            "{}'s ledger",
            node.unit
        );
    }
}
