//! Sync with peers: hellos, inventories, one Automerge sync session per document, and the
//! budgets this node keeps per peer (sync states and their Bloom filters, changes waiting for a
//! dependency, new documents per writer). A peer's bad input is a [`SyncRefused`] value, never
//! an error of this node.

use std::collections::{BTreeSet, HashMap, HashSet};

use automerge::{ChangeHash, sync};
use linli_crdt_model::cert::{Certificate, RecordError, Registration, Role};
use linli_crdt_model::doc::{DocId, HeaderError, SignedHeader};
use linli_crdt_model::document::{Applied, Context, Document, Rejected};
use linli_crdt_model::keys::PublicKey;
use linli_crdt_model::kinds::Kind;
use linli_crdt_model::unit::{Unit, UnitId};

use crate::clock::now_ms;
use crate::protocol::{Hello, Inventory, InventoryEntry, PROTOCOL_VERSION, SyncMessage};

use super::trust::chains_of;
use super::{Engine, Error, fresh_actor};

/// Certificates, and registrations, one hello may carry: a node's chain is at most one
/// certificate per level of the unit tree, with room for renewals.
pub const HELLO_RECORDS_MAX: usize = 16;

/// One day in milliseconds: the window of the per-writer document budget.
const DAY_MS: i64 = 24 * 60 * 60 * 1000;

/// Why a peer's message was refused: the model's reasons plus the node's own.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SyncRefused {
    #[error(transparent)]
    Model(#[from] Rejected),
    #[error("document {doc} ({scope}, unit {unit}) may not be held by this node of {me}")]
    OutOfScope {
        doc: DocId,
        scope: &'static str,
        unit: UnitId,
        me: UnitId,
    },
    #[error("document {0} is unknown here and the message has no header")]
    UnknownDocument(DocId),
    #[error("document header refused: {0}")]
    Header(#[from] HeaderError),
    #[error("header does not match document id {0}")]
    HeaderMismatch(DocId),
    #[error("certificate refused: {0}")]
    Certificate(#[from] RecordError),
    #[error("hello refused: {0}")]
    Hello(String),
    /// Not counted as an offence: an honest node's chain could grow past the bound.
    #[error("hello refused: {0}")]
    HelloTooLarge(String),
    #[error("unreadable request: {0}")]
    Unreadable(String),
    #[error("the peer has not said hello")]
    NoHello,
    #[error("more than {0} requests a second from this peer; try again shortly")]
    RateLimited(u32),
    /// A budget of this node's (not an offence: the sender may relay an honest writer's work).
    #[error("over budget: {0}")]
    Budget(String),
}

impl SyncRefused {
    pub fn reason(&self) -> &'static str {
        match self {
            SyncRefused::Model(r) => r.reason(),
            SyncRefused::OutOfScope { .. } => "out-of-scope",
            SyncRefused::UnknownDocument(_) => "unknown-document",
            SyncRefused::Header(_) | SyncRefused::HeaderMismatch(_) => "bad-header",
            SyncRefused::Certificate(_) => "bad-certificate",
            SyncRefused::Hello(_) | SyncRefused::HelloTooLarge(_) => "bad-hello",
            SyncRefused::Unreadable(_) => "unreadable",
            SyncRefused::NoHello => "no-hello",
            SyncRefused::RateLimited(_) => "rate-limited",
            SyncRefused::Budget(_) => "over-budget",
        }
    }

    /// Whether this counts against the peer: only what the sender itself got wrong — framing
    /// that does not decode or breaks a limit, a signature that does not verify, another
    /// network, a document it should know this node may not hold. What an honest relay cannot
    /// avoid does not count: content this node refuses under what it knows now (a key it has
    /// no chain for yet, a revocation or a clock the relay had not seen, an approval not
    /// arrived), a message racing its hello. This node's own failures (its disk) are not
    /// refusals at all: they are the outer error of [`Engine::sync_in`] and the like.
    pub fn is_offence(&self) -> bool {
        match self {
            SyncRefused::Model(r) => matches!(
                r,
                Rejected::WrongNetwork { .. }
                    | Rejected::LimitExceeded { .. }
                    | Rejected::Malformed(_)
                    | Rejected::Unsigned { .. }
                    | Rejected::BadSignature { .. }
                    | Rejected::ForeignActor { .. }
            ),
            SyncRefused::Certificate(e) => !matches!(e, RecordError::FromTheFuture { .. }),
            SyncRefused::OutOfScope { .. }
            | SyncRefused::HeaderMismatch(_)
            | SyncRefused::Hello(_)
            | SyncRefused::Unreadable(_) => true,
            SyncRefused::Header(_)
            | SyncRefused::UnknownDocument(_)
            | SyncRefused::NoHello
            | SyncRefused::RateLimited(_)
            | SyncRefused::Budget(_)
            | SyncRefused::HelloTooLarge(_) => false,
        }
    }
}

/// What this node holds for one peer, within the peer's budgets.
#[derive(Debug, Default)]
pub(super) struct PeerHeld {
    /// Sync states by document, each with the bytes of the peer's Bloom filters it holds and
    /// when it was last used.
    states: HashMap<DocId, (sync::State, usize, u64)>,
    bloom_bytes: usize,
    clock: u64,
    /// Changes the peer brought that wait for a dependency.
    deferred: HashSet<(DocId, ChangeHash)>,
}

impl PeerHeld {
    fn take(&mut self, doc: &DocId) -> Option<sync::State> {
        let (state, bloom, _) = self.states.remove(doc)?;
        self.bloom_bytes -= bloom;
        Some(state)
    }

    fn put(&mut self, doc: DocId, state: sync::State) {
        self.take(&doc);
        let bloom: usize = state
            .their_have
            .iter()
            .flatten()
            .map(|h| h.bloom.to_bytes().len())
            .sum();
        self.clock += 1;
        self.bloom_bytes += bloom;
        self.states.insert(doc, (state, bloom, self.clock));
    }

    /// Drop the least recently used states, never `keep`, until within both budgets; how many.
    fn shrink(&mut self, states_max: usize, bloom_max: usize, keep: &DocId) -> usize {
        let mut dropped = 0;
        while self.states.len() > states_max || self.bloom_bytes > bloom_max {
            let oldest = self
                .states
                .iter()
                .filter(|(d, _)| *d != keep)
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(d, _)| *d);
            let Some(doc) = oldest else { break };
            self.take(&doc);
            dropped += 1;
        }
        dropped
    }
}

/// What became of a peer's sync message that was taken.
#[derive(Debug)]
pub struct Synced {
    /// The next message of the session, if there is something to say.
    pub reply: Option<SyncMessage>,
    /// Why each change not taken was set aside; none is the sender's fault.
    pub set_aside: Vec<Rejected>,
    /// The keys whose signed work was taken (the authors of the changes, the creator of a
    /// header judged here): the records the message carried may prove these and no others.
    proven: Vec<PublicKey>,
}

/// A peer's sync message that passed every check, applied in memory and not yet kept.
struct Judged {
    id: DocId,
    /// The document it brings, if new here: built aside, kept only with the message.
    fresh: Option<Document>,
    state: sync::State,
    /// The changes of the document that waited for a dependency before the message.
    waiting_before: HashSet<ChangeHash>,
    applied: Applied,
}

impl Engine {
    /// Our hello to a peer.
    pub fn hello(&self) -> Hello {
        // The node certificate for this unit and what supports it: nothing another admin
        // certified this key for elsewhere, which no peer needs and anyone could multiply.
        let unit = &self.unit.id;
        let chain = self.trust.chain_of_where(&self.keys.node().public(), |c| {
            c.body.role == Role::Node && c.body.unit == *unit
        });
        Hello {
            network: self.trust.network(),
            protocol_version: PROTOCOL_VERSION,
            unit: self.unit.id.clone(),
            registrations: self.trust.registrations_for(&chain),
            chain,
        }
    }

    /// Judge a peer's hello: right network and version, and `peer_key` (its libp2p identity)
    /// certified as a node of the unit it claims. `Ok(Ok)` is the peer's unit, `Ok(Err)` why
    /// the hello is refused, and `Err` a failure of this node's own (see [`Engine::sync_in`]).
    pub fn accept_hello(
        &mut self,
        hello: &Hello,
        peer_key: &PublicKey,
    ) -> Result<Result<Unit, SyncRefused>, Error> {
        if hello.network != self.trust.network() {
            return Ok(Err(SyncRefused::Model(Rejected::WrongNetwork {
                expected: self.trust.network(),
                found: hello.network,
            })));
        }
        if hello.protocol_version != PROTOCOL_VERSION {
            return Ok(Err(SyncRefused::Hello(format!(
                "protocol version {} (this node speaks {PROTOCOL_VERSION})",
                hello.protocol_version
            ))));
        }
        if hello.chain.len() > HELLO_RECORDS_MAX || hello.registrations.len() > HELLO_RECORDS_MAX {
            return Ok(Err(SyncRefused::HelloTooLarge(format!(
                "a hello carries at most {HELLO_RECORDS_MAX} certificates and as many \
                 registrations (this one {} and {})",
                hello.chain.len(),
                hello.registrations.len()
            ))));
        }
        if self.genesis().is_root(peer_key) && hello.unit == self.genesis().top.id {
            return Ok(Ok(self.genesis().top.clone()));
        }
        let now = now_ms();
        let records = chains_of(&hello.chain, &hello.registrations, &[*peer_key]);
        // Judged with what it brings that proves its key; nothing of it is kept unless the
        // hello is accepted.
        let judged = self.with_carried_trust(
            &records,
            |e| {
                Ok(e.trust
                    .authorize(peer_key, now, |u, role| {
                        role == Role::Node && u.id == hello.unit
                    })
                    .map_err(|d| {
                        SyncRefused::Hello(format!(
                            "peer key is not a certified node of {}: {d}",
                            hello.unit
                        ))
                    }))
            },
            |_, _| None,
        )?;
        let grant = match judged {
            Ok(grant) => grant,
            Err(refused) => return Ok(Err(refused)),
        };
        let unit = self
            .trust
            .unit(&grant.unit)
            .cloned()
            .unwrap_or_else(|| Unit {
                id: grant.unit.clone(),
                kind: grant.unit_kind,
                name: grant.unit.to_string(),
            });
        Ok(Ok(unit))
    }

    /// Documents a node of `peer_unit` may hold, with our heads.
    pub fn inventory_for(&mut self, peer_unit: &UnitId) -> Inventory {
        let mut docs = Vec::new();
        for (id, doc) in self.docs.iter_mut() {
            let h = &doc.header().header;
            if h.scope.may_hold(&h.unit, peer_unit) {
                let mut heads: Vec<[u8; 32]> = doc.heads().iter().map(|h| h.0).collect();
                heads.sort();
                docs.push(InventoryEntry { doc: *id, heads });
            }
        }
        docs.truncate(self.config.sync.inventory_docs_max);
        Inventory { docs }
    }

    /// Given a peer's inventory, the documents worth a sync session: those it may hold and
    /// whose heads differ, or that it lacks. An inventory over the bounds an honest node keeps
    /// to is refused ([`Engine::check_inventory`]).
    pub fn to_sync(
        &mut self,
        peer_unit: &UnitId,
        theirs: &Inventory,
    ) -> Result<Vec<DocId>, SyncRefused> {
        self.check_inventory(theirs)?;
        let theirs: HashMap<DocId, &Vec<[u8; 32]>> =
            theirs.docs.iter().map(|e| (e.doc, &e.heads)).collect();
        let mut out = Vec::new();
        for (id, doc) in self.docs.iter_mut() {
            let h = &doc.header().header;
            if !h.scope.may_hold(&h.unit, peer_unit) {
                continue;
            }
            let mut mine: Vec<[u8; 32]> = doc.heads().iter().map(|h| h.0).collect();
            mine.sort();
            if theirs.get(id).is_none_or(|t| **t != mine) {
                out.push(*id);
            }
        }
        Ok(out)
    }

    fn state_for(&mut self, peer: &str, doc: &DocId) -> sync::State {
        if let Some(s) = self.peers.get_mut(peer).and_then(|p| p.take(doc)) {
            return s;
        }
        // A sync state only spares a session what the peer is known to have: without it
        // (unreadable, or never kept) the session starts afresh, and loses nothing.
        match self.store.sync_state(peer, doc) {
            Ok(bytes) => bytes
                .and_then(|b| sync::State::decode(&b).ok())
                .unwrap_or_default(),
            Err(e) => {
                tracing::warn!(peer, doc = %doc, error = %e, "could not read a sync state; the session starts afresh");
                sync::State::default()
            }
        }
    }

    fn keep_state(&mut self, peer: &str, doc: &DocId, state: sync::State) {
        // Not kept, the state costs a session that starts afresh after a restart, never data.
        if let Err(e) = self.store.put_sync_state(peer, doc, &state.encode()) {
            tracing::warn!(peer, doc = %doc, error = %e, "could not store a sync state; after a restart the session starts afresh");
        }
        self.hold_state(peer, doc, state);
    }

    /// Hold a peer's sync state in memory, within its budgets
    /// (`sync.sync_states_per_peer_max`, `sync.bloom_bytes_per_peer_max`): the least recently
    /// used states of that peer are dropped first. Only their shared heads were worth keeping,
    /// and those are on disk; a dropped session starts afresh.
    fn hold_state(&mut self, peer: &str, doc: &DocId, state: sync::State) {
        let (states_max, bloom_max) = (
            self.config.sync.sync_states_per_peer_max.max(1),
            self.config.sync.bloom_bytes_per_peer_max,
        );
        let held = self.peers.entry(peer.to_owned()).or_default();
        held.put(*doc, state);
        let dropped = held.shrink(states_max, bloom_max, doc);
        if dropped > 0 {
            tracing::debug!(
                peer,
                dropped,
                "sync states dropped from memory over the peer's budget"
            );
        }
    }

    /// The sync states held in memory for `peer`, and the bytes of Bloom filters they hold.
    pub fn sync_states_held(&self, peer: &str) -> (usize, usize) {
        self.peers
            .get(peer)
            .map_or((0, 0), |p| (p.states.len(), p.bloom_bytes))
    }

    /// Changes `peer` brought that still wait for a dependency.
    pub fn deferred_held(&mut self, peer: &str) -> usize {
        self.prune_deferred(peer);
        self.peers.get(peer).map_or(0, |p| p.deferred.len())
    }

    /// Forget the changes `peer` brought that no longer wait (applied, or gone with a reload).
    fn prune_deferred(&mut self, peer: &str) {
        let docs = &self.docs;
        if let Some(p) = self.peers.get_mut(peer) {
            p.deferred
                .retain(|(doc, h)| docs.get(doc).is_some_and(|d| d.is_deferred(h)));
        }
    }

    /// Check a peer's inventory against the bounds an honest node keeps to
    /// (`sync.inventory_docs_max` documents, `wire` heads per list) before anything is built
    /// from it: a larger one is the sender's own fault.
    pub fn check_inventory(&self, inv: &Inventory) -> Result<(), SyncRefused> {
        let over = |what: &'static str, len: usize, max: usize| {
            Err(SyncRefused::Model(Rejected::LimitExceeded {
                what,
                len,
                max,
            }))
        };
        let max = self.config.sync.inventory_docs_max;
        if inv.docs.len() > max {
            return over("documents in one inventory", inv.docs.len(), max);
        }
        let heads_max = self.wire_limits.hashes_per_list_max;
        if let Some(e) = inv.docs.iter().find(|e| e.heads.len() > heads_max) {
            return over("heads of one inventory entry", e.heads.len(), heads_max);
        }
        Ok(())
    }

    /// Start a sync session with a peer about a document afresh: forget which changes we think
    /// we sent. Automerge never resends a change it believes sent, so after a message was lost
    /// or refused, a session that keeps the old state stays silent forever while heads differ.
    pub fn reset_sync(&mut self, peer: &str, doc: &DocId) {
        let mut state = self.state_for(peer, doc);
        state.sent_hashes.clear();
        state.in_flight = false;
        self.hold_state(peer, doc, state);
    }

    /// Forget which certificates and registrations `peer` was sent: after it refused a
    /// message, those the message carried may not have reached it and go with the next one.
    pub fn forget_sent_records(&mut self, peer: &str) {
        self.sent_certs.remove(peer);
    }

    /// Forget in-flight sync state with a peer (on disconnect): the persisted shared heads stay.
    pub fn peer_gone(&mut self, peer: &str) {
        self.peers.remove(peer);
        self.sent_certs.remove(peer);
    }

    /// The next sync message for `peer` about `doc`, if there is anything to say and the peer
    /// may hold the document.
    pub fn sync_out(&mut self, peer: &str, peer_unit: &UnitId, id: &DocId) -> Option<SyncMessage> {
        let doc = self.docs.get(id)?;
        let h = &doc.header().header;
        if !h.scope.may_hold(&h.unit, peer_unit) {
            return None;
        }
        let mut state = self.state_for(peer, id);
        let first = state.their_heads.as_ref().is_none_or(|h| h.is_empty());
        let doc = self.docs.get_mut(id)?;
        let out = doc.generate_sync(&mut state);
        let header = first.then(|| doc.header().clone());
        let kind = doc.kind();
        self.keep_state(peer, id, state);
        let out = out?;
        let mut certificates = self.certificates_for(peer, out.signatures.authors());
        if let Some(h) = &header {
            // The peer judges the header by its creator's chain, which may not have reached it
            // yet when the document was relayed by a node in between.
            certificates.extend(self.chain_for(peer, &h.header.creator));
        }
        let registrations = self.registrations_for(peer, &certificates);
        let attestations = if kind == Kind::TaskList {
            self.admission_attestations(id)
        } else {
            Vec::new()
        };
        self.metrics.sync_rounds.inc();
        Some(SyncMessage {
            doc: *id,
            header,
            message: Some(out.message),
            signatures: out.signatures,
            certificates,
            registrations,
            attestations,
            set_aside: Vec::new(),
        })
    }

    fn chain_for(&mut self, peer: &str, key: &PublicKey) -> Vec<Certificate> {
        let sent = self.sent_certs.entry(peer.to_owned()).or_default();
        self.trust
            .chain_of(key)
            .into_iter()
            .filter(|c| sent.insert(c.id()))
            .collect()
    }

    /// The registrations that place `certs` in the unit tree, those not yet sent to `peer`.
    fn registrations_for(&mut self, peer: &str, certs: &[Certificate]) -> Vec<Registration> {
        if certs.is_empty() {
            return Vec::new();
        }
        let sent = self.sent_certs.entry(peer.to_owned()).or_default();
        self.trust
            .registrations_for(certs)
            .into_iter()
            .filter(|r| sent.insert(r.id()))
            .collect()
    }

    fn certificates_for(&mut self, peer: &str, authors: &[PublicKey]) -> Vec<Certificate> {
        let authors: BTreeSet<PublicKey> = authors.iter().copied().collect();
        let sent = self.sent_certs.entry(peer.to_owned()).or_default();
        let mut out = Vec::new();
        for a in authors {
            for c in self.trust.chain_of(&a) {
                if sent.insert(c.id()) {
                    out.push(c);
                }
            }
        }
        out
    }

    /// Take a peer's sync message. `Ok(Ok)` means it was applied, except the changes it lists
    /// as set aside (verdicts under what this node knows now, see `document`'s module doc), with
    /// the reply to send (`None` when we have nothing to say); `Ok(Err)` means nothing of it
    /// was applied, and why: the verdict on the peer's input.
    ///
    /// `Err` is this node's own failure (its store), never the peer's: nothing the message
    /// carried is kept, and what it brought may come again. [`Engine::accept_hello`] has the
    /// same shape, so a disk failure can never be counted against a peer.
    pub fn sync_in(
        &mut self,
        peer: &str,
        peer_unit: &UnitId,
        msg: SyncMessage,
    ) -> Result<Result<Synced, SyncRefused>, Error> {
        let now = now_ms();
        // Only what proves a key that signed something in it: its changes' authors, the
        // header's creator, the issuers of the attestations it carries. Anything else it
        // carries proves nothing here and is not taken, so an accepted message cannot fill
        // trust and the store with records of its sender's choosing.
        let signers: Vec<PublicKey> = msg
            .signatures
            .authors()
            .iter()
            .copied()
            .chain(msg.header.iter().map(|h| h.header.creator))
            .chain(msg.attestations.iter().map(|a| a.body.issuer))
            .collect();
        let records = chains_of(&msg.certificates, &msg.registrations, &signers);
        // The attestations it carries are needed to judge it (admission), so they join the
        // index now, and leave it again if the message is refused: nothing of a refused
        // message is kept.
        let network = self.trust.network();
        let mut carried = Vec::new();
        for att in &msg.attestations {
            if self.attestations.get(&att.id()).is_none()
                && self.attestations.insert(att.clone(), &network).is_ok()
            {
                carried.push(att.clone());
            }
        }
        let result = self.with_carried_trust(
            &records,
            |e| e.sync_in_checked(peer, peer_unit, msg, now),
            |e, s| {
                // The authors of what was taken, the creator of a header that was judged, and
                // the issuers of the attestations that will be kept: only their chains stay.
                let mut keys = s.proven.clone();
                keys.extend(
                    carried
                        .iter()
                        .filter(|a| a.check(&e.trust).is_ok())
                        .map(|a| a.body.issuer),
                );
                Some(keys)
            },
        );
        for att in carried {
            // Kept only from an accepted message, and only if its issuer had the authority:
            // an attestation nobody may make is not a record worth holding.
            if !matches!(result, Ok(Ok(_))) || att.check(&self.trust).is_err() {
                self.attestations.remove(&att.id());
            } else if let Err(e) = self.store.put_attestation(&att) {
                // Still in the index, and on every message about the task list that relies on
                // it: it comes again.
                tracing::warn!(error = %e, attestation = %att.id(), "could not store an attestation a peer brought");
            }
        }
        result
    }

    /// Remember who created a document, and when, for the creation budget.
    pub(super) fn note_created(&mut self, header: &SignedHeader) {
        let h = &header.header;
        let times = self.created_by.entry(h.creator).or_default();
        let at = times.partition_point(|t| *t <= h.created_at_ms);
        times.insert(at, h.created_at_ms);
    }

    /// Refuse a peer's new document if its creator already has
    /// `sync.new_docs_per_writer_per_day_max` documents here created within a day of it:
    /// one valid writer must not be able to make every node hold unbounded documents.
    fn within_creation_budget(&self, header: &SignedHeader) -> Result<(), SyncRefused> {
        let h = &header.header;
        let max = self.config.sync.new_docs_per_writer_per_day_max;
        let times = self
            .created_by
            .get(&h.creator)
            .map_or(&[][..], Vec::as_slice);
        // Within a day either side, so a burst is caught whichever of its documents comes
        // first. A budget is this node's protection, not a rule of the model: what it refuses
        // other nodes may hold (an honest writer stays far below it).
        let from = times.partition_point(|t| *t <= h.created_at_ms.saturating_sub(DAY_MS));
        let to = times.partition_point(|t| *t < h.created_at_ms.saturating_add(DAY_MS));
        if to - from >= max {
            return Err(SyncRefused::Budget(format!(
                "key {} already created {max} documents held here within a day of {}",
                h.creator, h.created_at_ms
            )));
        }
        Ok(())
    }

    /// [`Engine::sync_in`] once the records the message carries are in place: judged (the only
    /// place a message is refused), then kept (where only this node can fail).
    fn sync_in_checked(
        &mut self,
        peer: &str,
        peer_unit: &UnitId,
        msg: SyncMessage,
        now: i64,
    ) -> Result<Result<Synced, SyncRefused>, Error> {
        match self.judge_sync(peer, peer_unit, msg, now) {
            Ok(judged) => self.keep_sync(peer, peer_unit, judged, now).map(Ok),
            Err(refused) => Ok(Err(refused)),
        }
    }

    /// Judge a peer's sync message and apply it in memory, to a document new here built aside.
    fn judge_sync(
        &mut self,
        peer: &str,
        peer_unit: &UnitId,
        msg: SyncMessage,
        now: i64,
    ) -> Result<Judged, SyncRefused> {
        let id = msg.doc;
        let network = self.trust.network();
        // A document new here is built aside and kept only once the message passes every
        // check: a refused message leaves no header and no empty document behind.
        let mut fresh: Option<Document> = None;
        if !self.docs.contains_key(&id) {
            let header = msg.header.clone().ok_or(SyncRefused::UnknownDocument(id))?;
            if header.id() != id {
                return Err(SyncRefused::HeaderMismatch(id));
            }
            let h = &header.header;
            if !h.scope.may_hold(&h.unit, &self.unit.id) {
                return Err(SyncRefused::OutOfScope {
                    doc: id,
                    scope: h.scope.as_str(),
                    unit: h.unit.clone(),
                    me: self.unit.id.clone(),
                });
            }
            header.check(&self.trust, now, self.limits.clock_skew_ms_max)?;
            self.within_creation_budget(&header)?;
            fresh = Some(Document::empty(header, fresh_actor()));
        }
        {
            let doc = fresh.as_ref().unwrap_or_else(|| &self.docs[&id]);
            let h = &doc.header().header;
            if !h.scope.may_hold(&h.unit, &self.unit.id) {
                return Err(SyncRefused::OutOfScope {
                    doc: id,
                    scope: h.scope.as_str(),
                    unit: h.unit.clone(),
                    me: self.unit.id.clone(),
                });
            }
            // A peer that may not hold a document held here is told what it would hear of one
            // that does not exist: its message says nothing we take, and our answer says
            // nothing of what we hold.
            if fresh.is_none() && !h.scope.may_hold(&h.unit, peer_unit) {
                return Err(SyncRefused::UnknownDocument(id));
            }
        }
        let mut state = self.state_for(peer, &id);
        // What this peer may still make wait for a dependency, over all documents.
        self.prune_deferred(peer);
        let peer_room = self
            .config
            .sync
            .deferred_changes_per_peer_max
            .saturating_sub(self.peers.get(peer).map_or(0, |p| p.deferred.len()));
        let waiting_before: HashSet<ChangeHash> = fresh
            .as_ref()
            .unwrap_or_else(|| &self.docs[&id])
            .deferred()
            .copied()
            .collect();
        let applied = match &msg.message {
            Some(bytes) => {
                let mut limits = self.limits.clone();
                // Beyond it, the peer's changes are set aside as `waiting-full`.
                let by_peer = waiting_before.len().saturating_add(peer_room);
                limits.deferred_changes_max = limits.deferred_changes_max.min(by_peer);
                let ctx = Context {
                    trust: &self.trust,
                    attestations: &self.attestations,
                    limits: &limits,
                    now_ms: now,
                };
                let doc = match fresh.as_mut() {
                    Some(d) => d,
                    None => self.docs.get_mut(&id).expect("held: checked above"),
                };
                let r = doc.receive_sync(
                    &ctx,
                    &mut state,
                    network,
                    bytes,
                    &msg.signatures,
                    &self.wire_limits,
                );
                match r {
                    Ok(a) => a,
                    Err(e) => {
                        if fresh.is_none() {
                            self.keep_state(peer, &id, state);
                        }
                        return Err(e.into());
                    }
                }
            }
            None => Applied::default(),
        };
        // A document new here is kept whole or not at all: if any change of the message that
        // brings it was set aside, its header is not kept either.
        if fresh.is_some()
            && let Some(first) = applied.set_aside.first()
        {
            return Err(SyncRefused::Model(first.reason.clone()));
        }
        Ok(Judged {
            id,
            fresh,
            state,
            waiting_before,
            applied,
        })
    }

    /// Keep what a judged message brought: a new document's header, the changes taken, durably;
    /// then the evidence and the sync state, and the reply.
    fn keep_sync(
        &mut self,
        peer: &str,
        peer_unit: &UnitId,
        judged: Judged,
        now: i64,
    ) -> Result<Synced, Error> {
        let Judged {
            id,
            fresh,
            state,
            waiting_before,
            applied,
        } = judged;
        let created_by = fresh.as_ref().map(|d| d.header().header.creator);
        {
            let doc = fresh.as_ref().unwrap_or_else(|| &self.docs[&id]);
            let brought: Vec<(DocId, ChangeHash)> = doc
                .deferred()
                .filter(|h| !waiting_before.contains(h))
                .map(|h| (id, *h))
                .collect();
            if !brought.is_empty() {
                self.peers
                    .entry(peer.to_owned())
                    .or_default()
                    .deferred
                    .extend(brought);
            }
        }
        if let Some(doc) = fresh {
            self.store.put_header(doc.header())?;
            self.note_created(doc.header());
            self.docs.insert(id, doc);
            self.metrics.documents.set(self.docs.len() as i64);
        }
        if !applied.new.is_empty() {
            self.persist_remote(&id, &applied)?;
            let doc = self.docs.get_mut(&id).expect("present");
            let newest = applied
                .new
                .iter()
                .filter_map(|h| doc.change_bytes(h))
                .filter_map(|b| automerge::Change::from_bytes(b).ok())
                .map(|c| c.timestamp())
                .max()
                .unwrap_or(now);
            self.metrics.convergence_lag_ms.set((now - newest).max(0));
            self.metrics
                .changes_applied
                .inc_by(applied.new.len() as u64);
            self.changed.insert(id);
            self.after_change(&id);
        }
        // Evidence after the changes it names as held are on disk, never before.
        for e in &applied.equivocations {
            tracing::warn!(doc = %id, author = %e.author, seq = e.seq, "equivocation: one author signed two changes with the same actor and number; evidence kept");
        }
        if let Err(err) = self.store.put_equivocations(&applied.equivocations) {
            // The changes are kept; the evidence is made again when the other half of the
            // equivocation comes again (anti-entropy resends it).
            tracing::warn!(error = %err, doc = %id, "could not store evidence of an equivocation");
        }
        self.keep_state(peer, &id, state);
        let proven = {
            let doc = &self.docs[&id];
            applied
                .new
                .iter()
                .filter_map(|h| doc.signature(h).map(|s| s.author))
                .chain(created_by)
                .collect()
        };
        Ok(Synced {
            reply: self.sync_out(peer, peer_unit, &id),
            set_aside: applied.set_aside.into_iter().map(|s| s.reason).collect(),
            proven,
        })
    }

    fn persist_remote(&mut self, id: &DocId, applied: &Applied) -> Result<(), Error> {
        self.persist(id, &applied.new)
    }
}

#[cfg(test)]
mod tests {
    use automerge::ChangeHash;
    use linli_crdt_model::cert::RecordError;
    use linli_crdt_model::document::Rejected;
    use linli_crdt_model::genesis::NetworkId;
    use linli_crdt_model::keys::PublicKey;

    use super::SyncRefused;

    /// Only what the sender itself got wrong counts against it; what an honest relay cannot
    /// avoid — content refused under what this node knows now, budgets — does not (a relay
    /// banned for those would cut honest nodes off from each other).
    #[test]
    fn offences_are_the_senders_own_faults() {
        let change = ChangeHash([1; 32]);
        let author = PublicKey([2; 32]);
        let offences = [
            SyncRefused::Model(Rejected::WrongNetwork {
                expected: NetworkId([0; 32]),
                found: NetworkId([1; 32]),
            }),
            SyncRefused::Model(Rejected::Malformed("bomb".to_owned())),
            SyncRefused::Model(Rejected::Unsigned { change }),
            SyncRefused::Model(Rejected::BadSignature { change, author }),
            SyncRefused::Model(Rejected::ForeignActor { change, author }),
            SyncRefused::Unreadable("eof".to_owned()),
            SyncRefused::Hello("not a node".to_owned()),
            SyncRefused::Certificate(RecordError::EmptyName),
        ];
        let relayed = [
            SyncRefused::Model(Rejected::UnknownKey { change, author }),
            SyncRefused::Model(Rejected::Untrusted { change, author }),
            SyncRefused::Model(Rejected::Revoked { change, author }),
            SyncRefused::Model(Rejected::Expired {
                change,
                author,
                at_ms: 0,
            }),
            SyncRefused::Model(Rejected::FutureTimestamp {
                change,
                at_ms: 1,
                now_ms: 0,
            }),
            SyncRefused::Model(Rejected::Admission {
                task: "t".to_owned(),
                reason: "approval not arrived".to_owned(),
            }),
            SyncRefused::Certificate(RecordError::FromTheFuture {
                what: "certificate",
                at_ms: 1,
                now_ms: 0,
            }),
            SyncRefused::Model(Rejected::Equivocation {
                change,
                author,
                seq: 3,
                held: ChangeHash([3; 32]),
            }),
            SyncRefused::Model(Rejected::DependsOnSetAside {
                change,
                on: ChangeHash([3; 32]),
            }),
            SyncRefused::NoHello,
            SyncRefused::RateLimited(200),
            SyncRefused::Budget("documents".to_owned()),
            SyncRefused::HelloTooLarge("17 certificates".to_owned()),
        ];
        for e in &offences {
            assert!(e.is_offence(), "{e:?} should count against the sender");
        }
        for e in &relayed {
            assert!(!e.is_offence(), "{e:?} must not count against a relay");
        }
    }
}
