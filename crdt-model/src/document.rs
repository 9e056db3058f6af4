//! A signed document: header, Automerge body, and one signature per change.
//!
//! Every way a change can enter — a local edit or a batch from a peer — goes through the same
//! checks, in this order:
//!
//! 1. limits (batch size), network and document binding of each signature, and the change's
//!    actor belongs to its author (see [`actor_for`]);
//! 2. signatures (batch-verified when there are several);
//! 3. authority: the author may write this document, at the change's own timestamp, not revoked;
//!    timestamps may not lie in the future beyond the allowed clock skew;
//! 4. causality: every dependency is in the document or the batch, and no author signed two
//!    changes with one actor and sequence number (equivocation);
//! 5. the result still matches the kind's schema, and every admitted task is backed by the
//!    district's review and approval.
//!
//! Checks 1–4 are per change hash and do not depend on how a sync message packed the changes.
//! A failure of 1, 2 or 5 refuses the whole batch: 1 and 2 are the sender's own fault (an honest
//! node verifies before it relays), and 5 judges the document as a whole. A failure of 3 or 4
//! is a verdict under what this node knows now, which an honest relay cannot always foresee (a
//! revocation it had not seen, a clock behind ours, an equivocation it met the other half of
//! first), so that change is *set aside* with its reason and the rest of the batch still
//! applies. Automerge cannot apply a change without its dependencies, so every change that
//! depends on a set-aside one, in the batch, is set aside too ([`Rejected::DependsOnSetAside`]);
//! a change that arrives later and depends on one waits, like any change whose dependency is
//! missing, within `deferred_changes_max` (or is set aside at once if it builds on the losing
//! half of an equivocation, which can never enter).
//!
//! Waiting changes are held here, not in Automerge's queue, and asked for through the sync
//! message's `need`. When a batch makes one causally ready it is judged again (a revocation
//! may have arrived meanwhile) and applied with the batch; if the result then fails, the batch
//! is tried without what was released (if that fails, the batch is at fault), then each
//! released change alone, and those that fail are set aside as [`Rejected::Unappliable`]: a
//! change that waited can never make an honest later batch fail, nor take an honest waiting
//! change down with it. Of two changes claiming one (actor, number), only one is applied, and
//! the other is judged an equivocation only against a change the document holds.
//!
//! Checks 3–5 run on a copy; the copy replaces the document only when every check passes. A
//! large batch is verified (2) on a second thread while 3–5 run, which changes nothing of what
//! is accepted or of the reason a refusal gives.

use std::collections::{HashMap, HashSet};

use automerge::{ActorId, AutoCommit, Change, ChangeHash, ReadDoc, transaction::CommitOptions};
use serde::{Deserialize, Serialize};

use crate::attest::{self, AdmissionError, AdmissionRef};
use crate::doc::{self, DocId, Header, HeaderError, SignedHeader};
use crate::genesis::NetworkId;
use crate::keys::{self, Domain, PublicKey, SecretKey, Signature};
use crate::kinds::{self, EditError, Kind, SchemaError, Touched};
use crate::trust::{Denied, Grant, Trust};

/// Batches of at least this many signatures are verified on a second thread while the first
/// applies them to a copy (below it, starting a thread costs more than it saves).
const VERIFY_ALONGSIDE_MIN: usize = 64;

/// Limits on what one ingest may bring.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Changes in one batch.
    pub changes_per_batch_max: usize,
    /// How far in the future (by this node's clock) a change's timestamp may lie.
    pub clock_skew_ms_max: i64,
    /// Signed changes held back until a dependency arrives.
    pub deferred_changes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            changes_per_batch_max: 100_000,
            clock_skew_ms_max: 10 * 60 * 1000,
            deferred_changes_max: 10_000,
        }
    }
}

/// What a node knows when it judges a change: who may act, which approvals exist, and now.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub trust: &'a Trust,
    pub attestations: &'a attest::Index,
    pub limits: &'a Limits,
    pub now_ms: i64,
}

/// An author's signature over (network id, document id, change hash).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ChangeSignature {
    #[serde(with = "keys::hex32")]
    pub hash: [u8; 32],
    pub author: PublicKey,
    pub signature: Signature,
}

#[derive(Serialize)]
struct ChangeStatement {
    network: NetworkId,
    doc: DocId,
    hash: [u8; 32],
}

impl ChangeSignature {
    pub fn sign(network: NetworkId, doc: DocId, hash: ChangeHash, author: &SecretKey) -> Self {
        let statement = ChangeStatement {
            network,
            doc,
            hash: hash.0,
        };
        ChangeSignature {
            hash: hash.0,
            author: author.public(),
            signature: author.sign(Domain::Change, &statement),
        }
    }

    fn message(&self, network: NetworkId, doc: DocId) -> Vec<u8> {
        keys::signing_bytes(
            Domain::Change,
            &ChangeStatement {
                network,
                doc,
                hash: self.hash,
            },
        )
    }
}

/// A batch of changes from a peer, with their signatures.
#[derive(Debug, Clone, Default)]
pub struct Batch {
    /// The network the sender claims; checked before anything else.
    pub network: Option<NetworkId>,
    pub changes: Vec<Change>,
    pub signatures: Vec<ChangeSignature>,
}

/// What an accepted batch did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Hashes of the changes that were new to this document, in application order.
    pub new: Vec<ChangeHash>,
    /// Changes already held (replays and duplicates), ignored.
    pub duplicates: usize,
    pub heads: Vec<ChangeHash>,
    /// Changes of the batch not taken, each with its reason (see the module doc): verdicts
    /// under this node's current knowledge, never the sender's own fault.
    pub set_aside: Vec<SetAside>,
    /// Proof, for every equivocation met, that one author signed two changes with one actor
    /// and sequence number.
    pub equivocations: Vec<Equivocation>,
}

/// A change of a batch that was not taken, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    pub change: ChangeHash,
    pub reason: Rejected,
}

/// One author, two different changes with the same actor and sequence number. Automerge holds
/// one change per (actor, sequence number), so a node keeps whichever reached it first and sets
/// the other aside; this record keeps the other one, signed, so anyone can check the author's
/// fault ([`Equivocation::check`]) against the change the document holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Equivocation {
    pub doc: DocId,
    pub author: PublicKey,
    pub seq: u64,
    /// The change the document holds (or that was taken first in the same batch).
    #[serde(with = "keys::hex32")]
    pub held: [u8; 32],
    /// The change set aside: its bytes and its author's signature.
    #[serde(with = "serde_bytes")]
    pub refused_change: Vec<u8>,
    pub refused_signature: ChangeSignature,
}

impl Equivocation {
    /// The verdict on the change it sets aside.
    pub fn reason(&self) -> Rejected {
        Rejected::Equivocation {
            change: ChangeHash(self.refused_signature.hash),
            author: self.author,
            seq: self.seq,
            held: ChangeHash(self.held),
        }
    }

    /// That the evidence is what it says: the refused change decodes, is signed by the author,
    /// and shares actor and sequence number with `held` (the held change's bytes and
    /// signature, from the document), which is a different change by the same author.
    pub fn check(
        &self,
        network: NetworkId,
        held_change: &[u8],
        held_signature: &ChangeSignature,
    ) -> Result<(), Rejected> {
        let malformed = |what: &str| Rejected::Malformed(format!("equivocation evidence: {what}"));
        let refused = Change::from_bytes(self.refused_change.clone())
            .map_err(|_| malformed("the refused change does not decode"))?;
        let held = Change::from_bytes(held_change.to_vec())
            .map_err(|_| malformed("the held change does not decode"))?;
        if held.hash().0 != self.held || held_signature.hash != self.held {
            return Err(malformed("the held change is not the one named"));
        }
        if refused.hash() == held.hash()
            || refused.actor_id() != held.actor_id()
            || refused.seq() != held.seq()
            || refused.seq() != self.seq
        {
            return Err(malformed("the two changes do not share actor and number"));
        }
        for (change, sig) in [(&refused, &self.refused_signature), (&held, held_signature)] {
            if sig.hash != change.hash().0 || sig.author != self.author {
                return Err(malformed("a signature is not the author's over its change"));
            }
            sig.author
                .verify_raw(&sig.message(network, self.doc), &sig.signature)
                .map_err(|_| Rejected::BadSignature {
                    change: change.hash(),
                    author: sig.author,
                })?;
        }
        Ok(())
    }
}

/// Changes set aside for good that a document remembers, so what builds on them is set aside
/// on arrival; the oldest are forgotten beyond it (they then wait, within their own limit).
const LOST_MAX: usize = 10_000;

/// Bytes of the author's public key that begin each of its actor ids.
pub const ACTOR_KEY_BYTES: usize = 16;
/// Random bytes, fresh for each incarnation of a store, that end them.
pub const ACTOR_INCARNATION_BYTES: usize = 8;

/// The actor under which `author` commits in a store incarnation: the first
/// [`ACTOR_KEY_BYTES`] of its key, then the incarnation's random bytes. Binding actors to keys
/// means no one can sign a change under another author's actor: without it, any writer could
/// take the next sequence number of a colleague's actor first and make every node that saw its
/// change first refuse the colleague's real one, splitting the network by arrival order.
pub fn actor_for(author: &PublicKey, incarnation: &[u8; ACTOR_INCARNATION_BYTES]) -> ActorId {
    let mut bytes = Vec::with_capacity(ACTOR_KEY_BYTES + ACTOR_INCARNATION_BYTES);
    bytes.extend_from_slice(&author.0[..ACTOR_KEY_BYTES]);
    bytes.extend_from_slice(incarnation);
    ActorId::from(bytes)
}

/// Whether `actor` is one of `author`'s ([`actor_for`]).
pub fn actor_is_authors(actor: &ActorId, author: &PublicKey) -> bool {
    let bytes = actor.to_bytes();
    bytes.len() == ACTOR_KEY_BYTES + ACTOR_INCARNATION_BYTES
        && bytes[..ACTOR_KEY_BYTES] == author.0[..ACTOR_KEY_BYTES]
}

/// The incarnation bytes a random actor id stands for (its first bytes, zero-padded).
fn incarnation_of(actor: &ActorId) -> [u8; ACTOR_INCARNATION_BYTES] {
    let mut out = [0u8; ACTOR_INCARNATION_BYTES];
    for (o, b) in out.iter_mut().zip(actor.to_bytes()) {
        *o = *b;
    }
    out
}

/// Why a batch was refused. Nothing of a refused batch is applied.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rejected {
    #[error("batch is for network {found}, this is network {expected}")]
    WrongNetwork {
        expected: NetworkId,
        found: NetworkId,
    },
    #[error("{what}: {len} exceeds the limit of {max}")]
    LimitExceeded {
        what: &'static str,
        len: usize,
        max: usize,
    },
    #[error("malformed input: {0}")]
    Malformed(String),
    #[error("change {change} has no signature")]
    Unsigned { change: ChangeHash },
    #[error("change {change}: signature by {author} does not verify")]
    BadSignature {
        change: ChangeHash,
        author: PublicKey,
    },
    #[error("change {change}: author {author} has no certificate in this network")]
    UnknownKey {
        change: ChangeHash,
        author: PublicKey,
    },
    #[error("change {change}: author {author} has no certificate chain to the root keys")]
    Untrusted {
        change: ChangeHash,
        author: PublicKey,
    },
    #[error("change {change}: author {author} ({roles}) may not write this document")]
    NotPermitted {
        change: ChangeHash,
        author: PublicKey,
        roles: String,
    },
    #[error("change {change}: author {author}'s certificate was not in force at {at_ms}")]
    Expired {
        change: ChangeHash,
        author: PublicKey,
        at_ms: i64,
    },
    #[error("change {change}: author {author} was revoked before the time this change states")]
    Revoked {
        change: ChangeHash,
        author: PublicKey,
    },
    #[error("change {change} is dated {at_ms}, beyond now ({now_ms}) plus the allowed clock skew")]
    FutureTimestamp {
        change: ChangeHash,
        at_ms: i64,
        now_ms: i64,
    },
    #[error("the document would no longer match its schema: {0}")]
    SchemaViolation(String),
    #[error("admitted task {task} lacks the district's approvals: {reason}")]
    Admission { task: String, reason: String },
    #[error("change {change}: its actor is not one of its author {author}'s")]
    ForeignActor {
        change: ChangeHash,
        author: PublicKey,
    },
    #[error(
        "change {change}: author {author} signed another change, {held}, with the same actor and number {seq}"
    )]
    Equivocation {
        change: ChangeHash,
        author: PublicKey,
        seq: u64,
        held: ChangeHash,
    },
    #[error("change {change} depends on change {on}, which was set aside")]
    DependsOnSetAside { change: ChangeHash, on: ChangeHash },
    #[error("change {change} would wait for a dependency, but {max} changes wait already")]
    WaitingFull { change: ChangeHash, max: usize },
    #[error("change {change} waited for a dependency and then could not be applied: {detail}")]
    Unappliable { change: ChangeHash, detail: String },
}

impl Rejected {
    /// A stable label for metrics and logs.
    pub fn reason(&self) -> &'static str {
        match self {
            Rejected::WrongNetwork { .. } => "wrong-network",
            Rejected::LimitExceeded { .. } => "limit-exceeded",
            Rejected::Malformed(_) => "malformed",
            Rejected::Unsigned { .. } => "unsigned",
            Rejected::BadSignature { .. } => "bad-signature",
            Rejected::UnknownKey { .. } => "unknown-key",
            Rejected::Untrusted { .. } => "untrusted",
            Rejected::NotPermitted { .. } => "not-permitted",
            Rejected::Expired { .. } => "expired",
            Rejected::Revoked { .. } => "revoked",
            Rejected::FutureTimestamp { .. } => "future-timestamp",
            Rejected::SchemaViolation(_) => "schema-violation",
            Rejected::Admission { .. } => "admission",
            Rejected::ForeignActor { .. } => "foreign-actor",
            Rejected::Equivocation { .. } => "equivocation",
            Rejected::DependsOnSetAside { .. } => "depends-on-set-aside",
            Rejected::WaitingFull { .. } => "waiting-full",
            Rejected::Unappliable { .. } => "unappliable",
        }
    }

    /// The change this verdict is about, if it is about one change.
    pub fn change(&self) -> Option<ChangeHash> {
        match self {
            Rejected::Unsigned { change }
            | Rejected::BadSignature { change, .. }
            | Rejected::UnknownKey { change, .. }
            | Rejected::Untrusted { change, .. }
            | Rejected::NotPermitted { change, .. }
            | Rejected::Expired { change, .. }
            | Rejected::Revoked { change, .. }
            | Rejected::FutureTimestamp { change, .. }
            | Rejected::ForeignActor { change, .. }
            | Rejected::Equivocation { change, .. }
            | Rejected::DependsOnSetAside { change, .. }
            | Rejected::WaitingFull { change, .. }
            | Rejected::Unappliable { change, .. } => Some(*change),
            _ => None,
        }
    }

    fn denied(change: ChangeHash, d: Denied) -> Rejected {
        match d {
            Denied::UnknownKey(author) => Rejected::UnknownKey { change, author },
            Denied::Untrusted(author) => Rejected::Untrusted { change, author },
            Denied::NotPermitted { key, roles } => Rejected::NotPermitted {
                change,
                author: key,
                roles,
            },
            Denied::Expired { key, at_ms } => Rejected::Expired {
                change,
                author: key,
                at_ms,
            },
            Denied::Revoked { key, .. } => Rejected::Revoked {
                change,
                author: key,
            },
        }
    }
}

/// Why a local edit was refused. The document is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum EditRefused {
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error("{0}")]
    Denied(#[from] Denied),
    #[error("the edit would break the document's schema: {0}")]
    Schema(#[from] SchemaError),
    #[error("admitted task {task}: {error}")]
    Admission { task: String, error: AdmissionError },
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error("the edit changed nothing")]
    Empty,
    #[error(
        "an edit is one change under its author's actor; this one made {n}, or another actor's"
    )]
    NotOneChange { n: usize },
}

/// Why a stored document could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("document bytes do not load: {0}")]
    Automerge(String),
    #[error("stored header does not match document id {0}")]
    HeaderMismatch(DocId),
}

/// A document: signed header, Automerge body, signatures of every change.
#[derive(Debug, Clone)]
pub struct Document {
    header: SignedHeader,
    id: DocId,
    doc: AutoCommit,
    /// This store incarnation's random bytes: each author commits under [`actor_for`] them.
    incarnation: [u8; ACTOR_INCARNATION_BYTES],
    signatures: HashMap<ChangeHash, ChangeSignature>,
    /// Checked changes waiting for a dependency (in memory only: after a restart they are
    /// simply sent again). Never in Automerge's queue.
    deferred: HashMap<ChangeHash, Waiting>,
    /// Changes set aside for good (the losing halves of equivocations, and what depends on
    /// them), so what builds on them is set aside on arrival instead of waiting for ever;
    /// the oldest are forgotten beyond `deferred_changes_max`.
    lost: HashSet<ChangeHash>,
    lost_order: std::collections::VecDeque<ChangeHash>,
    /// The highest number of each actor the document holds, with the highest operation
    /// number of that change, once an ingest needed it.
    seqs: Option<HashMap<ActorId, (u64, u64)>>,
    /// Where the next sync message's share of the waiting changes' missing dependencies
    /// starts: a rotation, so no author's waiting changes can crowd out another's.
    need_cursor: usize,
}

impl Document {
    /// Create a document: sign the header and write the kind's skeleton as the first change, so
    /// editors never race to create rival root objects. `actor` must be fresh for this store
    /// incarnation (see [`Document::set_actor`]).
    pub fn create(
        ctx: &Context<'_>,
        header: Header,
        creator: &SecretKey,
        actor: ActorId,
        init: impl FnOnce(&mut AutoCommit) -> Result<(), EditError>,
    ) -> Result<(Document, ChangeSignature), EditRefused> {
        let created_at = header.created_at_ms;
        let signed = header.sign(creator);
        signed.check(ctx.trust, ctx.now_ms, ctx.limits.clock_skew_ms_max)?;
        let mut document = Document::empty(signed, actor);
        let sig = document
            .edit(ctx, creator, created_at, Some("create"), init)?
            .1;
        Ok((document, sig))
    }

    /// An empty document for a header received from a peer (check the header first).
    pub fn empty(header: SignedHeader, actor: ActorId) -> Document {
        let id = header.id();
        Document {
            header,
            id,
            incarnation: incarnation_of(&actor),
            doc: AutoCommit::new().with_actor(actor),
            signatures: HashMap::new(),
            deferred: HashMap::new(),
            lost: HashSet::new(),
            lost_order: std::collections::VecDeque::new(),
            seqs: None,
            need_cursor: 0,
        }
    }

    /// Load from stored bytes and signatures. `actor` must be fresh for this incarnation.
    pub fn load(
        header: SignedHeader,
        bytes: &[u8],
        signatures: impl IntoIterator<Item = ChangeSignature>,
        actor: ActorId,
    ) -> Result<Document, LoadError> {
        let mut doc = AutoCommit::load(bytes).map_err(|e| LoadError::Automerge(e.to_string()))?;
        // Changes without their dependencies (an older save kept Automerge's queue) would enter
        // unsigned when those arrive: drop them; peers send them again.
        if !doc.get_missing_deps(&[]).is_empty() {
            let clean = doc.save_with_options(automerge::SaveOptions {
                retain_orphans: false,
                ..Default::default()
            });
            doc = AutoCommit::load(&clean).map_err(|e| LoadError::Automerge(e.to_string()))?;
        }
        let id = header.id();
        let signatures = signatures
            .into_iter()
            .map(|s| (ChangeHash(s.hash), s))
            .collect();
        Ok(Document {
            header,
            id,
            incarnation: incarnation_of(&actor),
            doc: doc.with_actor(actor),
            signatures,
            deferred: HashMap::new(),
            lost: HashSet::new(),
            lost_order: std::collections::VecDeque::new(),
            seqs: None,
            need_cursor: 0,
        })
    }

    /// Give this incarnation a fresh actor id. A reused actor makes Automerge sync stall
    /// forever, so every load from disk and every restore must call this with new randomness.
    /// Its first [`ACTOR_INCARNATION_BYTES`] become the incarnation's part of each author's
    /// actor ([`actor_for`]).
    pub fn set_actor(&mut self, actor: ActorId) {
        self.incarnation = incarnation_of(&actor);
        self.doc.set_actor(actor);
    }

    pub fn id(&self) -> DocId {
        self.id
    }

    pub fn header(&self) -> &SignedHeader {
        &self.header
    }

    pub fn kind(&self) -> Kind {
        self.header.header.kind
    }

    pub fn heads(&mut self) -> Vec<ChangeHash> {
        self.doc.get_heads()
    }

    pub fn signature(&self, hash: &ChangeHash) -> Option<&ChangeSignature> {
        self.signatures.get(hash)
    }

    pub fn signatures(&self) -> impl Iterator<Item = &ChangeSignature> {
        self.signatures.values()
    }

    /// Checked changes waiting for a dependency.
    pub fn n_deferred(&self) -> usize {
        self.deferred.len()
    }

    /// The dependencies the waiting changes miss: neither held nor waiting themselves, in
    /// hash order.
    pub fn missing_dependencies(&self) -> Vec<ChangeHash> {
        let deps: HashSet<ChangeHash> = self
            .deferred
            .values()
            .flat_map(|w| w.change.deps().iter().copied())
            .filter(|d| !self.deferred.contains_key(d) && !self.signatures.contains_key(d))
            .collect();
        let mut deps: Vec<ChangeHash> = deps.into_iter().collect();
        deps.sort();
        deps
    }

    /// Up to `room` of [`Document::missing_dependencies`] to ask a peer for, taken in turn from
    /// one message to the next: whoever makes changes wait cannot choose hashes that crowd
    /// out the dependencies of others' changes.
    pub(crate) fn missing_share(&mut self, room: usize) -> Vec<ChangeHash> {
        let missing = self.missing_dependencies();
        if missing.is_empty() || room == 0 {
            return Vec::new();
        }
        let start = self.need_cursor % missing.len();
        let share: Vec<ChangeHash> = missing
            .iter()
            .cycle()
            .skip(start)
            .take(room.min(missing.len()))
            .copied()
            .collect();
        self.need_cursor = self.need_cursor.wrapping_add(share.len());
        share
    }

    /// Whether `hash` is a checked change waiting for a dependency.
    pub fn is_deferred(&self, hash: &ChangeHash) -> bool {
        self.deferred.contains_key(hash)
    }

    /// The checked changes waiting for a dependency.
    pub fn deferred(&self) -> impl Iterator<Item = &ChangeHash> {
        self.deferred.keys()
    }

    pub fn n_changes(&self) -> usize {
        self.signatures.len()
    }

    /// Read access for typed hydration (`kinds::*::hydrate(doc.read())`).
    pub fn read(&self) -> &impl ReadDoc {
        &self.doc
    }

    /// The Automerge document, for sync and export. Never for writing: writes go through
    /// [`Document::edit`] and [`Document::ingest`].
    pub(crate) fn automerge_mut(&mut self) -> &mut AutoCommit {
        &mut self.doc
    }

    /// The document's bytes: what it holds, never a change waiting for a dependency.
    pub fn save(&mut self) -> Vec<u8> {
        self.doc.save_with_options(automerge::SaveOptions {
            retain_orphans: false,
            ..Default::default()
        })
    }

    /// The changes after `heads`, for incremental persistence.
    pub fn save_after(&mut self, heads: &[ChangeHash]) -> Vec<u8> {
        self.doc.save_after(heads)
    }

    /// The stored bytes of one change, for persistence.
    pub fn change_bytes(&mut self, hash: &ChangeHash) -> Option<Vec<u8>> {
        self.doc
            .get_change_by_hash(hash)
            .map(|c| c.raw_bytes().to_vec())
    }

    /// The newest timestamp among this document's changes.
    pub fn newest_change_ms(&mut self) -> i64 {
        self.doc
            .get_changes_meta(&[])
            .iter()
            .map(|m| m.timestamp)
            .max()
            .unwrap_or(0)
    }

    pub fn has_change(&mut self, hash: &ChangeHash) -> bool {
        self.doc.get_change_meta_by_hash(hash).is_some()
    }

    /// Every change in causal order.
    pub fn changes(&mut self) -> Vec<Change> {
        self.doc.get_changes(&[])
    }

    /// A read-only view of the document as it was at `heads`.
    pub fn at(&mut self, heads: &[ChangeHash]) -> Result<AutoCommit, LoadError> {
        self.doc
            .fork_at(heads)
            .map_err(|e| LoadError::Automerge(e.to_string()))
    }

    /// Make a local edit as `author` at `at_ms`. The edit is checked exactly like a peer's
    /// change; if anything fails the pending operations are rolled back.
    pub fn edit<T>(
        &mut self,
        ctx: &Context<'_>,
        author: &SecretKey,
        at_ms: i64,
        message: Option<&str>,
        f: impl FnOnce(&mut AutoCommit) -> Result<T, EditError>,
    ) -> Result<(T, ChangeSignature), EditRefused> {
        let h = &self.header.header;
        let (kind, unit) = (h.kind, h.unit.clone());
        if let Err(d) = ctx.trust.authorize(&author.public(), at_ms, |u, role| {
            doc::may_write(kind, &unit, &u.id, role)
        }) {
            return Err(d.into());
        }
        // Edit a copy: if anything below fails the document is untouched.
        let before = self.doc.get_heads();
        let actor = actor_for(&author.public(), &self.incarnation);
        let mut scratch = self.doc.clone();
        scratch.set_actor(actor.clone());
        scratch.update_diff_cursor();
        let out = f(&mut scratch)?;
        let mut opts = CommitOptions::default().with_time(at_ms);
        if let Some(m) = message {
            opts = opts.with_message(m);
        }
        let hash = scratch.commit_with(opts).ok_or(EditRefused::Empty)?;
        // An edit is one change, under its author's actor: a closure that committed on its own
        // or changed the actor would leave a change unsigned, or one every peer refuses.
        let made = scratch.get_changes(&before);
        // Nor may it leave a change in Automerge's queue, to enter unsigned later.
        if made.len() != 1
            || made[0].hash() != hash
            || made[0].actor_id() != &actor
            || !scratch.get_missing_deps(&[]).is_empty()
        {
            return Err(EditRefused::NotOneChange { n: made.len() });
        }
        let (seq, max_op) = (made[0].seq(), made[0].max_op());
        let touched = Touched::from_patches(&scratch.diff_incremental());
        scratch.reset_diff_cursor();
        validate_state(kind, &unit, &scratch, &touched, ctx)?;
        self.doc = scratch;
        let sig = ChangeSignature::sign(self.header.header.network, self.id, hash, author);
        self.signatures.insert(hash, sig.clone());
        if let Some(seqs) = self.seqs.as_mut() {
            let top = seqs.entry(actor).or_default();
            *top = (*top).max((seq, max_op));
        }
        Ok((out, sig))
    }

    /// Ingest a batch from a peer. `Err` means nothing of it was applied: the sender's own
    /// fault, or a result the document's schema refuses (see the module doc). `Ok` lists what
    /// was applied, what waits for a dependency, and what was set aside and why.
    pub fn ingest(&mut self, ctx: &Context<'_>, batch: Batch) -> Result<Applied, Rejected> {
        let network = ctx.trust.network();
        if let Some(found) = batch.network
            && found != network
        {
            return Err(Rejected::WrongNetwork {
                expected: network,
                found,
            });
        }
        if batch.changes.len() > ctx.limits.changes_per_batch_max {
            return Err(Rejected::LimitExceeded {
                what: "changes in one batch",
                len: batch.changes.len(),
                max: ctx.limits.changes_per_batch_max,
            });
        }
        let sigs: HashMap<[u8; 32], &ChangeSignature> =
            batch.signatures.iter().map(|s| (s.hash, s)).collect();

        // Drop what we hold already (replays, duplicates within the batch).
        let mut seen = HashSet::new();
        let mut fresh: Vec<Change> = Vec::new();
        let mut duplicates = 0;
        for change in batch.changes {
            let hash = change.hash();
            if !seen.insert(hash)
                || self.signatures.contains_key(&hash)
                || self.deferred.contains_key(&hash)
                || self.has_change(&hash)
            {
                duplicates += 1;
                continue;
            }
            fresh.push(change);
        }

        if fresh.is_empty() {
            return Ok(Applied {
                duplicates,
                heads: self.doc.get_heads(),
                ..Applied::default()
            });
        }

        // Signatures, and actors that belong to their authors.
        let mut found = Vec::with_capacity(fresh.len());
        for change in &fresh {
            let hash = change.hash();
            let sig = sigs
                .get(&hash.0)
                .ok_or(Rejected::Unsigned { change: hash })?;
            if !actor_is_authors(change.actor_id(), &sig.author) {
                return Err(Rejected::ForeignActor {
                    change: hash,
                    author: sig.author,
                });
            }
            found.push(*sig);
        }
        let id = self.id;
        let verify = || {
            let messages: Vec<Vec<u8>> = found.iter().map(|s| s.message(network, id)).collect();
            let items: Vec<_> = found
                .iter()
                .zip(&messages)
                .map(|(s, m)| (s.author, m.as_slice(), s.signature))
                .collect();
            keys::verify_many(&items).map_err(|(i, _)| Rejected::BadSignature {
                change: ChangeHash(found[i].hash),
                author: found[i].author,
            })
        };
        // A large batch (a cold sync brings a month in one) is verified on a second thread
        // while this one judges authority and applies it to a copy: the copy reaches the
        // document only after both succeed, so no change enters unverified, and the reason
        // given for a refusal is the same as if the checks ran one after the other.
        // The highest number of each actor the document holds: read once per document from its
        // changes' metadata, then kept up to date by every edit and ingest.
        if self.seqs.is_none() {
            let mut tops: HashMap<ActorId, (u64, u64)> = HashMap::new();
            for m in self.doc.get_changes_meta(&[]) {
                let e = tops.entry(m.actor.into_owned()).or_default();
                *e = (*e).max((m.seq, m.max_op));
            }
            self.seqs = Some(tops);
        }
        let (verified, candidate) = if found.len() >= VERIFY_ALONGSIDE_MIN {
            std::thread::scope(|s| {
                let verifying = s.spawn(verify);
                let candidate = self.candidate(ctx, &fresh, &found);
                let verified = verifying.join().unwrap_or_else(|_| {
                    Err(Rejected::Malformed(
                        "signature verification failed unexpectedly".to_owned(),
                    ))
                });
                (verified, candidate)
            })
        } else {
            verify()?;
            (Ok(()), self.candidate(ctx, &fresh, &found))
        };
        verified?;
        let c = candidate?;
        self.doc = c.doc;
        for (hash, sig) in c.applied {
            self.signatures.insert(hash, sig);
        }
        self.deferred = c.waiting;
        self.seqs = Some(c.seqs);
        for h in c.lost {
            if self.lost.insert(h) {
                self.lost_order.push_back(h);
            }
        }
        while self.lost_order.len() > LOST_MAX {
            if let Some(h) = self.lost_order.pop_front() {
                self.lost.remove(&h);
            }
        }
        Ok(Applied {
            new: c.new,
            duplicates,
            heads: self.doc.get_heads(),
            set_aside: c.set_aside,
            equivocations: c.equivocations,
        })
    }

    /// Checks 3–5 of an ingest on a copy of the document. The pool is the batch's fresh
    /// changes and the changes already waiting for a dependency (in hash order): each fresh one
    /// is judged for authority and time (a waiting one again when it is released: what is
    /// known may have changed while it waited), and what is causally ready — its dependencies
    /// held or ready before it, and its actor's previous number too, as Automerge requires —
    /// is applied and validated. Of two changes claiming one (actor, number), only one is ever
    /// applied; the other is set aside as an equivocation once the first is in the document,
    /// so the evidence always names a change the document holds. A waiting change never
    /// shares the fate of the batch that releases it: if the result fails, the batch is tried
    /// without what was released (if that fails too, the batch is at fault), then each released
    /// change is added alone, and those that fail are set aside. Returns the copy and what
    /// became of each change; the caller swaps it in.
    fn candidate(
        &self,
        ctx: &Context<'_>,
        fresh: &[Change],
        found: &[&ChangeSignature],
    ) -> Result<Candidate, Rejected> {
        let (kind, unit) = (self.header.header.kind, &self.header.header.unit);
        // The pool: fresh changes first (in batch order), then those waiting (in hash order,
        // so nothing depends on a hash map's order).
        let mut pool: Vec<(Change, ChangeSignature)> = fresh
            .iter()
            .cloned()
            .zip(found.iter().map(|s| (*s).clone()))
            .collect();
        let n_fresh = pool.len();
        let mut waiting_now: Vec<&Waiting> = self.deferred.values().collect();
        waiting_now.sort_by_key(|w| w.change.hash());
        pool.extend(
            waiting_now
                .iter()
                .map(|w| (w.change.clone(), w.signature.clone())),
        );
        let mut aside = Aside::new(&pool);
        let mut equivocations = Vec::new();
        let mut lost: Vec<ChangeHash> = Vec::new();

        // Authority and time. A month of visits has thousands of changes by ten authors: judge
        // each author's certificates once, then each change's time and hash.
        let mut permissions = HashMap::new();
        let mut judge = |change: &Change, sig: &ChangeSignature| -> Result<(), Rejected> {
            let hash = change.hash();
            let at_ms = change.timestamp();
            if at_ms > ctx.now_ms.saturating_add(ctx.limits.clock_skew_ms_max) {
                return Err(Rejected::FutureTimestamp {
                    change: hash,
                    at_ms,
                    now_ms: ctx.now_ms,
                });
            }
            permissions
                .entry(sig.author)
                .or_insert_with(|| {
                    ctx.trust.permission(&sig.author, |u, role| {
                        doc::may_write(kind, unit, &u.id, role)
                    })
                })
                .at(at_ms)
                .map(|_| ())
                .map_err(|d| Rejected::denied(hash, d))
        };
        for (i, (change, sig)) in pool.iter().enumerate().take(n_fresh) {
            if let Err(reason) = judge(change, sig) {
                aside.put(i, reason, false);
            }
        }
        // Built on a change this node set aside for good (the losing half of an equivocation):
        // it can never apply here.
        for (i, (change, _)) in pool.iter().enumerate().take(n_fresh) {
            if let Some(on) = change.deps().iter().find(|d| self.lost.contains(d)) {
                let reason = Rejected::DependsOnSetAside {
                    change: change.hash(),
                    on: *on,
                };
                aside.put(i, reason, true);
            }
        }

        // The highest number of each actor the document holds (`ingest` has read it).
        let seqs: HashMap<ActorId, (u64, u64)> = self.seqs.clone().unwrap_or_default();

        let whole = self.signatures.is_empty();
        let mut held_in_doc: Option<HashMap<(ActorId, u64), ChangeHash>> = None;
        loop {
            let plan = aside.ready(&pool, &seqs, &self.signatures);
            if !plan.overlapping.is_empty() {
                for i in plan.overlapping {
                    let change = pool[i].0.hash();
                    let detail =
                        "its operation numbers do not follow its actor's previous change's"
                            .to_owned();
                    aside.put(i, Rejected::Unappliable { change, detail }, false);
                }
                continue;
            }
            // A change claiming a number the document holds: an equivocation. One sweep of the
            // document's changes finds what holds each.
            if !plan.against_doc.is_empty() {
                let held = held_in_doc.get_or_insert_with(|| {
                    let mut doc = self.doc.clone();
                    doc.get_changes_meta(&[])
                        .iter()
                        .map(|m| ((m.actor.as_ref().clone(), m.seq), m.hash))
                        .collect()
                });
                for i in plan.against_doc {
                    let key = (pool[i].0.actor_id().clone(), pool[i].0.seq());
                    if let Some(h) = held.get(&key) {
                        let e = self.equivocation(&pool[i], *h);
                        aside.put(i, e.reason(), true);
                        lost.push(pool[i].0.hash());
                        equivocations.push(e);
                    } else {
                        let detail = "its number is taken, by no change found".to_owned();
                        let change = pool[i].0.hash();
                        aside.put(i, Rejected::Unappliable { change, detail }, false);
                    }
                }
                continue;
            }
            // A waiting change released now is judged again.
            let mut rejudged = false;
            for &i in &plan.order {
                if i >= n_fresh
                    && let Err(reason) = judge(&pool[i].0, &pool[i].1)
                {
                    aside.put(i, reason, false);
                    rejudged = true;
                }
            }
            if rejudged {
                continue;
            }
            match self.trial(ctx, &pool, &plan.order, whole) {
                Ok(doc) => {
                    // The second claimants of a number now held: equivocations, with proof.
                    for (i, held) in plan.against_pool {
                        if aside.is_taken(i) {
                            let e = self.equivocation(&pool[i], pool[held].0.hash());
                            aside.put(i, e.reason(), true);
                            lost.push(pool[i].0.hash());
                            equivocations.push(e);
                        }
                    }
                    // What is not ready waits, within the limit; the newest beyond it are
                    // set aside (not the sender's fault: the queue is this node's).
                    let mut waiting: HashMap<ChangeHash, Waiting> = HashMap::new();
                    let in_ready: HashSet<usize> = plan.order.iter().copied().collect();
                    for i in (n_fresh..pool.len()).chain(0..n_fresh) {
                        if !aside.is_taken(i) || in_ready.contains(&i) {
                            continue;
                        }
                        if waiting.len() >= ctx.limits.deferred_changes_max {
                            let change = pool[i].0.hash();
                            let max = ctx.limits.deferred_changes_max;
                            aside.put(i, Rejected::WaitingFull { change, max }, false);
                            continue;
                        }
                        waiting.insert(
                            pool[i].0.hash(),
                            Waiting {
                                change: pool[i].0.clone(),
                                signature: pool[i].1.clone(),
                            },
                        );
                    }
                    // Set-aside dependents of what was set aside for good are lost too.
                    lost.extend(aside.lost());
                    let mut seqs = seqs;
                    for &i in &plan.order {
                        let c = &pool[i].0;
                        let e = seqs.entry(c.actor_id().clone()).or_default();
                        *e = (*e).max((c.seq(), c.max_op()));
                    }
                    return Ok(Candidate {
                        new: plan.order.iter().map(|&i| pool[i].0.hash()).collect(),
                        applied: plan
                            .order
                            .iter()
                            .map(|&i| (pool[i].0.hash(), pool[i].1.clone()))
                            .collect(),
                        doc,
                        waiting,
                        set_aside: aside.into_set_aside(),
                        equivocations,
                        lost,
                        seqs,
                    });
                }
                Err(reason) => {
                    // Released waiting changes do not share the batch's fate. Without them
                    // (and what in the batch builds on them), the batch must pass, or it is at
                    // fault. Then the rest is added in order, one change at a time: a released
                    // change whose addition fails is set aside; a change of the batch whose
                    // addition fails is tried without each released change it does not build
                    // on, and the first whose absence lets it pass is set aside. If none does,
                    // the batch is at fault. The batch being delivered wins over what waited.
                    let released: HashSet<usize> = plan
                        .order
                        .iter()
                        .copied()
                        .filter(|&i| i >= n_fresh)
                        .collect();
                    if released.is_empty() {
                        return Err(reason);
                    }
                    let mut tainted: HashSet<usize> = HashSet::new();
                    for &i in &plan.order {
                        let on_released = pool[i]
                            .0
                            .deps()
                            .iter()
                            .any(|d| aside.index.get(d).is_some_and(|j| tainted.contains(j)));
                        if released.contains(&i) || on_released {
                            tainted.insert(i);
                        }
                    }
                    let mut acc: Vec<usize> = plan
                        .order
                        .iter()
                        .copied()
                        .filter(|i| !tainted.contains(i))
                        .collect();
                    self.trial(ctx, &pool, &acc, whole)?;
                    let mut progressed = false;
                    for &i in plan.order.iter().filter(|i| tainted.contains(i)) {
                        if !aside.is_taken(i) {
                            continue;
                        }
                        acc.push(i);
                        let Err(e) = self.trial(ctx, &pool, &acc, whole) else {
                            continue;
                        };
                        acc.pop();
                        if released.contains(&i) {
                            let (change, detail) = (pool[i].0.hash(), e.to_string());
                            aside.put(i, Rejected::Unappliable { change, detail }, false);
                            acc.retain(|j| aside.is_taken(*j));
                            progressed = true;
                            continue;
                        }
                        let ancestors = ancestors_in(&pool, &aside.index, i);
                        let suspects: Vec<usize> = acc
                            .iter()
                            .copied()
                            .filter(|j| released.contains(j) && !ancestors.contains(j))
                            .collect();
                        let mut cleared = false;
                        for s in suspects {
                            let gone = aside.descendants(s);
                            let without: Vec<usize> = acc
                                .iter()
                                .copied()
                                .filter(|j| *j != s && !gone.contains(j))
                                .chain([i])
                                .collect();
                            if self.trial(ctx, &pool, &without, whole).is_ok() {
                                let change = pool[s].0.hash();
                                let detail = format!(
                                    "with it, change {} of a later batch fails: {e}",
                                    pool[i].0.hash()
                                );
                                aside.put(s, Rejected::Unappliable { change, detail }, false);
                                acc.retain(|j| aside.is_taken(*j));
                                acc.push(i);
                                cleared = true;
                                progressed = true;
                                break;
                            }
                        }
                        if !cleared {
                            return Err(e);
                        }
                    }
                    if !progressed {
                        return Err(reason);
                    }
                }
            }
        }
    }

    /// Apply `order` (causally ready, in order) to a copy of the document and validate what
    /// changed. A batch into an empty document (a cold sync) writes the root maps, so it is
    /// judged as a whole: asking Automerge for the patches of every change first would cost
    /// more than the check itself.
    fn trial(
        &self,
        ctx: &Context<'_>,
        pool: &[(Change, ChangeSignature)],
        order: &[usize],
        whole: bool,
    ) -> Result<AutoCommit, Rejected> {
        let (kind, unit) = (self.header.header.kind, &self.header.header.unit);
        let mut scratch = self.doc.clone();
        if !whole {
            scratch.update_diff_cursor();
        }
        // automerge 0.12 can panic applying well-framed changes that name unknown actors or
        // missing objects (see wire.rs). The copy is thrown away on failure, so a panic here
        // is one more way of refusing, never a crash of the node.
        let rounds = rounds(pool, order);
        let applied = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            for round in rounds {
                scratch.apply_changes(round.iter().map(|&i| pool[i].0.clone()))?;
            }
            Ok::<_, automerge::AutomergeError>(if whole {
                Touched::everything()
            } else {
                Touched::from_patches(&scratch.diff_incremental())
            })
        }));
        let touched = match applied {
            Ok(Ok(touched)) => touched,
            Ok(Err(e)) => return Err(Rejected::Malformed(e.to_string())),
            Err(_) => {
                return Err(Rejected::Malformed(
                    "automerge could not apply the changes".to_owned(),
                ));
            }
        };
        scratch.reset_diff_cursor();
        validate_state(kind, unit, &scratch, &touched, ctx).map_err(|e| match e {
            EditRefused::Admission { task, error } => Rejected::Admission {
                task,
                reason: error.to_string(),
            },
            other => Rejected::SchemaViolation(other.to_string()),
        })?;
        Ok(scratch)
    }

    /// Evidence that the pool's change `item` and `held` share an actor and number.
    fn equivocation(&self, item: &(Change, ChangeSignature), held: ChangeHash) -> Equivocation {
        Equivocation {
            doc: self.id,
            author: item.1.author,
            seq: item.0.seq(),
            held: held.0,
            refused_change: item.0.raw_bytes().to_vec(),
            refused_signature: item.1.clone(),
        }
    }

    /// The grant a change's author acted with, or why it has none (for audit).
    pub fn judge(&self, trust: &Trust, hash: &ChangeHash, at_ms: i64) -> Result<Grant, Rejected> {
        let sig = self
            .signatures
            .get(hash)
            .ok_or(Rejected::Unsigned { change: *hash })?;
        let msg = sig.message(trust.network(), self.id);
        sig.author
            .verify_raw(&msg, &sig.signature)
            .map_err(|_| Rejected::BadSignature {
                change: *hash,
                author: sig.author,
            })?;
        let (kind, unit) = (self.header.header.kind, &self.header.header.unit);
        trust
            .authorize(&sig.author, at_ms, |u, role| {
                doc::may_write(kind, unit, &u.id, role)
            })
            .map_err(|d| Rejected::denied(*hash, d))
    }
}

/// A checked change waiting for a dependency. Held here, not in Automerge's queue: released
/// into a later batch, it is judged again and never decides that batch's fate.
#[derive(Debug, Clone)]
struct Waiting {
    change: Change,
    signature: ChangeSignature,
}

/// A copy of the document with a batch applied, and what became of each change.
struct Candidate {
    doc: AutoCommit,
    /// Applied, in order.
    new: Vec<ChangeHash>,
    applied: Vec<(ChangeHash, ChangeSignature)>,
    /// What waits for a dependency now.
    waiting: HashMap<ChangeHash, Waiting>,
    set_aside: Vec<SetAside>,
    equivocations: Vec<Equivocation>,
    /// Set aside for good: the losing halves of equivocations and what depends on them.
    lost: Vec<ChangeHash>,
    /// The highest number of each actor in `doc`, with that change's highest operation.
    seqs: HashMap<ActorId, (u64, u64)>,
}

/// The ancestors of pool change `i` within the pool.
fn ancestors_in(
    pool: &[(Change, ChangeSignature)],
    index: &HashMap<ChangeHash, usize>,
    i: usize,
) -> HashSet<usize> {
    let mut out = HashSet::new();
    let mut todo = vec![i];
    while let Some(k) = todo.pop() {
        for dep in pool[k].0.deps() {
            if let Some(&j) = index.get(dep)
                && out.insert(j)
            {
                todo.push(j);
            }
        }
    }
    out
}

/// `order` (causally ready, in order) in rounds, each one call to Automerge. Automerge orders a
/// call's changes by their explicit dependencies, and adds an actor's numbers in order: a
/// change whose actor's previous number is in the same call but not among its ancestors (an
/// honest change always builds on its actor's previous one; a crafted one need not) could be
/// added first, which Automerge does not survive. Such a change goes in a later round than its
/// predecessor. Honest histories take one round.
fn rounds(pool: &[(Change, ChangeSignature)], order: &[usize]) -> Vec<Vec<usize>> {
    let at: HashMap<ChangeHash, usize> = order
        .iter()
        .enumerate()
        .map(|(k, &i)| (pool[i].0.hash(), k))
        .collect();
    let by_number: HashMap<(&ActorId, u64), usize> = order
        .iter()
        .enumerate()
        .map(|(k, &i)| ((pool[i].0.actor_id(), pool[i].0.seq()), k))
        .collect();
    let mut round: Vec<usize> = Vec::with_capacity(order.len());
    for (k, &i) in order.iter().enumerate() {
        let c = &pool[i].0;
        let mut r = c
            .deps()
            .iter()
            .filter_map(|d| at.get(d))
            .filter(|&&j| j < k)
            .map(|&j| round[j])
            .max()
            .unwrap_or(0);
        if c.seq() > 1
            && let Some(&p) = by_number.get(&(c.actor_id(), c.seq() - 1))
            && p < k
            && !reaches(pool, order, &at, k, p)
        {
            r = r.max(round[p] + 1);
        }
        round.push(r);
    }
    let n_rounds = round.iter().max().map_or(0, |m| m + 1);
    let mut out = vec![Vec::new(); n_rounds];
    for (k, &i) in order.iter().enumerate() {
        out[round[k]].push(i);
    }
    out
}

/// Steps the search for a change's actor predecessor among its ancestors may take; beyond, the
/// change just goes in a later round (safe: one more call to Automerge).
const ANCESTOR_SEARCH_MAX: usize = 256;

/// Whether position `p` of `order` is an ancestor of position `k`: a search back from `k`
/// through positions after `p` only (in causal order nothing before `p` leads to it), within
/// [`ANCESTOR_SEARCH_MAX`] steps (`false` if it runs out).
fn reaches(
    pool: &[(Change, ChangeSignature)],
    order: &[usize],
    at: &HashMap<ChangeHash, usize>,
    k: usize,
    p: usize,
) -> bool {
    let mut seen = HashSet::new();
    let mut todo = vec![k];
    while let Some(x) = todo.pop() {
        for dep in pool[order[x]].0.deps() {
            match at.get(dep) {
                Some(&j) if j == p => return true,
                Some(&j) if j > p && seen.insert(j) => {
                    if seen.len() > ANCESTOR_SEARCH_MAX {
                        return false;
                    }
                    todo.push(j);
                }
                _ => {}
            }
        }
    }
    false
}

/// What of a pool can be applied now ([`Aside::ready`]).
struct Plan {
    /// Causally ready, in an order Automerge accepts.
    order: Vec<usize>,
    /// Claiming an (actor, number) the document holds.
    against_doc: Vec<usize>,
    /// Ready, but claiming the (actor, number) of the change given, which is applied first.
    against_pool: Vec<(usize, usize)>,
    /// Whose operation numbers do not follow its actor's previous change's.
    overlapping: Vec<usize>,
}

/// Which changes of the pool are still taken, and why the others are not. Setting one aside
/// sets aside every change of the pool that depends on it, transitively.
struct Aside {
    taken: Vec<bool>,
    /// For each change hash of the pool, the pool's changes that name it as a dependency.
    children: HashMap<ChangeHash, Vec<usize>>,
    hashes: Vec<ChangeHash>,
    index: HashMap<ChangeHash, usize>,
    /// (pool index, reason, set aside for good).
    set_aside: Vec<(usize, Rejected, bool)>,
}

impl Aside {
    fn new(pool: &[(Change, ChangeSignature)]) -> Aside {
        let mut children: HashMap<ChangeHash, Vec<usize>> = HashMap::new();
        for (i, (c, _)) in pool.iter().enumerate() {
            for dep in c.deps() {
                children.entry(*dep).or_default().push(i);
            }
        }
        let hashes: Vec<ChangeHash> = pool.iter().map(|(c, _)| c.hash()).collect();
        Aside {
            taken: vec![true; pool.len()],
            children,
            index: hashes.iter().enumerate().map(|(i, h)| (*h, i)).collect(),
            hashes,
            set_aside: Vec::new(),
        }
    }

    fn is_taken(&self, i: usize) -> bool {
        self.taken[i]
    }

    /// Set aside change `i` (and what depends on it); `for_good` if it can never be taken.
    fn put(&mut self, i: usize, reason: Rejected, for_good: bool) {
        if !std::mem::replace(&mut self.taken[i], false) {
            return;
        }
        self.set_aside.push((i, reason, for_good));
        let mut todo = vec![i];
        while let Some(parent) = todo.pop() {
            for &child in self
                .children
                .get(&self.hashes[parent])
                .into_iter()
                .flatten()
            {
                if std::mem::replace(&mut self.taken[child], false) {
                    let reason = Rejected::DependsOnSetAside {
                        change: self.hashes[child],
                        on: self.hashes[parent],
                    };
                    self.set_aside.push((child, reason, for_good));
                    todo.push(child);
                }
            }
        }
    }

    /// What of the pool can be applied now, in an order Automerge accepts (Kahn's algorithm):
    /// a change whose dependencies are held (`held`: every change the document holds is
    /// signed) or come before it, and whose actor's previous number is held or comes before
    /// it. Of two claimants of one (actor, number), only the first ready is applied; the other
    /// is returned with it. A claimant of a number the document holds is returned apart.
    fn ready(
        &self,
        pool: &[(Change, ChangeSignature)],
        seqs: &HashMap<ActorId, (u64, u64)>,
        held: &HashMap<ChangeHash, ChangeSignature>,
    ) -> Plan {
        let n = pool.len();
        let mut missing = vec![0usize; n];
        let mut blocked = vec![false; n];
        let mut waits_on: HashMap<usize, Vec<usize>> = HashMap::new();
        let mut against_doc = Vec::new();
        let mut overlapping = Vec::new();
        let mut claimants: HashMap<(&ActorId, u64), usize> = HashMap::new();
        for (i, (c, _)) in pool.iter().enumerate() {
            if self.taken[i] {
                claimants.entry((c.actor_id(), c.seq())).or_insert(i);
            }
        }
        for (i, (c, _)) in pool.iter().enumerate() {
            if !self.taken[i] {
                continue;
            }
            let (top, top_op) = seqs.get(c.actor_id()).copied().unwrap_or((0, 0));
            if c.seq() <= top {
                against_doc.push(i);
                continue;
            }
            // An actor's operations are numbered after its previous change's: overlapping
            // numbers would give two operations one id, which Automerge does not check.
            if c.seq() == top + 1 && c.start_op().get() <= top_op {
                overlapping.push(i);
                continue;
            }
            let mut before: Vec<usize> = Vec::new();
            for dep in c.deps() {
                match self.index.get(dep) {
                    Some(&j) if self.taken[j] => before.push(j),
                    Some(_) => blocked[i] = true,
                    None if held.contains_key(dep) => {}
                    None => blocked[i] = true,
                }
            }
            // Automerge applies an actor's numbers in order.
            if c.seq() > top + 1 {
                match claimants.get(&(c.actor_id(), c.seq() - 1)) {
                    Some(&j) if c.start_op().get() <= pool[j].0.max_op() => {
                        overlapping.push(i);
                        continue;
                    }
                    Some(&j) => before.push(j),
                    None => blocked[i] = true,
                }
            }
            before.sort_unstable();
            before.dedup();
            missing[i] = before.len();
            for j in before {
                waits_on.entry(j).or_default().push(i);
            }
        }
        let apart: HashSet<usize> = against_doc.iter().chain(&overlapping).copied().collect();
        let mut todo: std::collections::VecDeque<usize> = (0..n)
            .filter(|&i| self.taken[i] && !blocked[i] && missing[i] == 0)
            .filter(|i| !apart.contains(i))
            .collect();
        let mut claimed: HashMap<(&ActorId, u64), usize> = HashMap::new();
        let mut order = Vec::new();
        let mut against_pool = Vec::new();
        while let Some(i) = todo.pop_front() {
            let c = &pool[i].0;
            if let Some(&first) = claimed.get(&(c.actor_id(), c.seq())) {
                against_pool.push((i, first));
                continue;
            }
            claimed.insert((c.actor_id(), c.seq()), i);
            order.push(i);
            for &child in waits_on.get(&i).into_iter().flatten() {
                missing[child] -= 1;
                if missing[child] == 0 && !blocked[child] {
                    todo.push_back(child);
                }
            }
        }
        Plan {
            order,
            against_doc,
            against_pool,
            overlapping,
        }
    }

    /// The pool's changes that build on change `i`, transitively.
    fn descendants(&self, i: usize) -> HashSet<usize> {
        let mut out = HashSet::new();
        let mut todo = vec![i];
        while let Some(k) = todo.pop() {
            for &child in self.children.get(&self.hashes[k]).into_iter().flatten() {
                if out.insert(child) {
                    todo.push(child);
                }
            }
        }
        out
    }

    /// The changes set aside for good.
    fn lost(&self) -> Vec<ChangeHash> {
        self.set_aside
            .iter()
            .filter(|(_, _, g)| *g)
            .map(|(i, _, _)| self.hashes[*i])
            .collect()
    }

    /// What was set aside, as the batch's sender is told: its own changes, and the waiting
    /// ones that were set aside now (they came in earlier batches, but never entered).
    fn into_set_aside(self) -> Vec<SetAside> {
        self.set_aside
            .into_iter()
            .map(|(i, reason, _)| SetAside {
                change: self.hashes[i],
                reason,
            })
            .collect()
    }
}

/// Schema and admission checks on a candidate state, for what `touched` says changed.
fn validate_state(
    kind: Kind,
    unit: &crate::unit::UnitId,
    doc: &AutoCommit,
    touched: &Touched,
    ctx: &Context<'_>,
) -> Result<(), EditRefused> {
    kinds::validate_touched(kind, doc, touched)?;
    if matches!(kind, Kind::Ledger | Kind::Directory) {
        check_signed_blobs(kind, doc, touched, ctx)?;
    }
    if kind == Kind::TaskList {
        if touched.root.is_empty() {
            for (collection, id) in &touched.records {
                if collection == kinds::tasks::TASKS_COLLECTION
                    && let Some(adm) = kinds::tasks::admission_of(doc, id)?
                {
                    check_one_admission(id, &adm, unit, ctx)?;
                }
            }
        } else {
            let list = kinds::tasks::hydrate(doc)?;
            for (id, task) in &list.tasks {
                if let Some(adm) = &task.admission {
                    check_one_admission(id, adm, unit, ctx)?;
                }
            }
        }
    }
    Ok(())
}

/// The signed records a ledger or the directory carries must be what their collection says,
/// stored under their own id, and not dated beyond the allowed clock skew: a statement dated
/// near the end of time would otherwise stay "the latest" (a checkpoint) for ever. Their
/// authority is judged by `Trust` and `attest::Index`, not here.
fn check_signed_blobs(
    kind: Kind,
    doc: &AutoCommit,
    touched: &Touched,
    ctx: &Context<'_>,
) -> Result<(), EditRefused> {
    use crate::cert::{self, Certificate, RecordError, Registration, Revocation, TrustRecord};
    use kinds::{directory, ledger};
    let collections: &[&str] = match kind {
        Kind::Ledger => &[ledger::ATTESTATIONS, ledger::TRUST],
        _ => &[
            directory::CERTIFICATES,
            directory::REVOCATIONS,
            directory::REGISTRATIONS,
        ],
    };
    let mut todo: Vec<(&str, String)> = Vec::new();
    for c in collections {
        if touched.root.is_empty() {
            todo.extend(
                touched
                    .records
                    .iter()
                    .filter(|(tc, _)| tc == c)
                    .map(|(_, id)| (*c, id.clone())),
            );
        } else {
            todo.extend(kinds::record_ids(doc, c).into_iter().map(|id| (*c, id)));
        }
    }
    let network = ctx.trust.network();
    let skew = ctx.limits.clock_skew_ms_max;
    for (collection, id) in todo {
        let Some(bytes) = kinds::signed_blob(doc, collection, &id)? else {
            continue;
        };
        let decoded: Result<(String, &'static str, i64), RecordError> = match collection {
            ledger::ATTESTATIONS => attest::Attestation::decode(&bytes).and_then(|a| {
                a.check_record(&network)?;
                Ok((a.id().to_string(), "attestation", a.body.at_ms))
            }),
            ledger::TRUST => TrustRecord::decode(&bytes, &network)
                .map(|r| (r.id().to_string(), r.what(), r.at_ms())),
            directory::CERTIFICATES => Certificate::decode(&bytes, &network)
                .map(|c| (c.id().to_string(), "certificate", c.body.issued_at_ms)),
            directory::REVOCATIONS => Revocation::decode(&bytes, &network)
                .map(|r| (r.id().to_string(), "revocation", r.body.at_ms)),
            _ => Registration::decode(&bytes, &network)
                .map(|r| (r.id().to_string(), "registration", r.body.at_ms)),
        };
        let (rid, what, at_ms) = decoded.map_err(|e| {
            EditRefused::Schema(SchemaError::Invalid {
                path: format!("{collection}/{id}"),
                reason: e.to_string(),
            })
        })?;
        if rid != id {
            return Err(EditRefused::Schema(SchemaError::Invalid {
                path: format!("{collection}/{id}"),
                reason: format!("holds the {what} {rid}, not the one its key names"),
            }));
        }
        cert::check_not_future(what, at_ms, ctx.now_ms, skew).map_err(|e| {
            EditRefused::Schema(SchemaError::Invalid {
                path: format!("{collection}/{id}"),
                reason: e.to_string(),
            })
        })?;
    }
    Ok(())
}

fn check_one_admission(
    id: &str,
    adm: &kinds::tasks::Admission,
    community: &crate::unit::UnitId,
    ctx: &Context<'_>,
) -> Result<(), EditRefused> {
    let r = AdmissionRef {
        request_doc: &adm.request_doc,
        request_id: &adm.request_id,
        review: &adm.review,
        approval: &adm.approval,
    };
    attest::check_admission(&r, community, ctx.attestations, ctx.trust).map_err(|error| {
        EditRefused::Admission {
            task: id.to_owned(),
            error,
        }
    })
}
