//! The engine: one node's documents, trust and approvals, kept durable in the store, changed only
//! through the model's checks. No network here: `net` feeds it peers' messages and sends what it
//! returns; `api` calls it for local work. Everything it acknowledges is flushed first.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use automerge::{ActorId, ChangeHash, sync};
use linli_crdt_model::attest::{
    self, Attestation, AttestationBody, CheckpointEntry, Comparison, Statement,
};
use linli_crdt_model::audit::{self, Audit, Problem};
use linli_crdt_model::cert::{
    CertBody, Certificate, RecordError, RecordId, Registration, RegistrationBody, Revocation,
    RevocationBody, Role, TrustRecord,
};
use linli_crdt_model::doc::{
    self, DocId, Header, HeaderError, SCHEMA_VERSION, Scope, SignedHeader,
};
use linli_crdt_model::document::{
    self, Applied, ChangeSignature, Context, Document, EditRefused, Rejected,
};
use linli_crdt_model::genesis::Genesis;
use linli_crdt_model::keys::{PublicKey, SecretKey};
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::trust::Trust;
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_crdt_model::wire;

use crate::clock::now_ms;
use crate::config::{Config, ConfigError, Layout};
use crate::contract::{CompareRow, CreateDoc, DocSummary, Op, OpError, Person, Receipt, Status};
use crate::keystore::{self, KeyFileError, Keystore};
use crate::metrics::Metrics;
use crate::protocol::{Hello, Inventory, InventoryEntry, PROTOCOL_VERSION, SyncMessage};
use crate::store::{self, Store};

fn fresh_actor() -> ActorId {
    ActorId::from(keystore::random_seed()[..16].to_vec())
}

fn fresh_id() -> String {
    hex::encode(&keystore::random_seed()[..8])
}

/// Why the engine could not do what it was asked. Peer input never lands here: it is a
/// [`SyncRefused`] value.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] store::Error),
    #[error(transparent)]
    Key(#[from] KeyFileError),
    #[error("cannot read genesis {path}: {detail}")]
    Genesis { path: String, detail: String },
    #[error(
        "node key {key} has no node certificate for unit {unit}; import one with `linli cert import`"
    )]
    NotCertified { key: PublicKey, unit: UnitId },
    #[error("unit {0} is not registered; register it first with `linli unit register`")]
    Unregistered(UnitId),
    #[error("no document {0}")]
    UnknownDoc(String),
    #[error("document id {0:?} is not a 64-hex-digit id or a unique prefix of one")]
    BadDocId(String),
    #[error(transparent)]
    Refused(#[from] EditRefused),
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    Header(#[from] HeaderError),
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("{0}")]
    Invalid(String),
}

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
    #[error("storage failed: {0}")]
    Storage(String),
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
            SyncRefused::Storage(_) => "storage",
        }
    }

    /// Whether this counts against the peer: only what the sender itself got wrong — framing
    /// that does not decode or breaks a limit, a signature that does not verify, another
    /// network, a document it should know this node may not hold. What an honest relay cannot
    /// avoid does not count: content this node refuses under what it knows now (a key it has
    /// no chain for yet, a revocation or a clock the relay had not seen, an approval not
    /// arrived), a message racing its hello, and our own storage failures.
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
            | SyncRefused::HelloTooLarge(_)
            | SyncRefused::Storage(_) => false,
        }
    }
}

/// What this node holds for one peer, within the peer's budgets.
#[derive(Debug, Default)]
struct PeerHeld {
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

/// The state of one node.
#[derive(Debug)]
pub struct Engine {
    layout: Layout,
    config: Config,
    unit: Unit,
    keys: Keystore,
    store: Store,
    trust: Trust,
    attestations: attest::Index,
    docs: BTreeMap<DocId, Document>,
    n_incremental: HashMap<DocId, usize>,
    limits: document::Limits,
    wire_limits: wire::Limits,
    /// Per peer: the sync states held in memory, within its budgets, and the changes it
    /// brought that wait for a dependency.
    peers: HashMap<String, PeerHeld>,
    /// Certificates already sent to a peer, so they travel once per connection.
    sent_certs: HashMap<String, HashSet<RecordId>>,
    /// Documents with new heads since the net loop last asked.
    changed: BTreeSet<DocId>,
    /// Creation times of the documents each key created, sorted: the per-writer budget of new
    /// documents a day (`sync.new_docs_per_writer_per_day_max`).
    created_by: HashMap<PublicKey, Vec<i64>>,
    pub metrics: Metrics,
}

impl Engine {
    /// Open a node's data directory: configuration, genesis, keys, store. Fails with an error
    /// naming the file at fault.
    pub fn open(data_dir: &Path) -> Result<Engine, Error> {
        let layout = Layout::new(data_dir);
        let config = Config::load(&layout.config())?;
        let genesis = read_genesis(&layout.genesis())?;
        let keys = Keystore::load(&layout.keys())?;
        Engine::open_with(layout, config, genesis, keys)
    }

    pub fn open_with(
        layout: Layout,
        config: Config,
        genesis: Genesis,
        keys: Keystore,
    ) -> Result<Engine, Error> {
        let trust = Trust::new(genesis.clone()).map_err(|e| Error::Genesis {
            path: layout.genesis().display().to_string(),
            detail: e.to_string(),
        })?;
        let store = Store::open(&layout.store(), trust.network())?;
        let mut engine = Engine {
            unit: genesis.top.clone(),
            layout,
            config,
            keys,
            store,
            trust,
            attestations: attest::Index::default(),
            docs: BTreeMap::new(),
            n_incremental: HashMap::new(),
            limits: document::Limits::default(),
            wire_limits: wire::Limits::default(),
            peers: HashMap::new(),
            sent_certs: HashMap::new(),
            created_by: HashMap::new(),
            changed: BTreeSet::new(),
            metrics: Metrics::default(),
        };
        // All three kinds before anything is judged by them: trust derives its verdicts from the
        // whole set, whatever order the records come in.
        engine
            .trust
            .insert_registrations(engine.store.registrations()?)?;
        engine
            .trust
            .insert_certificates(engine.store.certificates()?)?;
        engine
            .trust
            .insert_revocations(engine.store.revocations()?)?;
        let network = engine.trust.network();
        for att in engine.store.attestations()? {
            // A stored attestation was checked when it arrived; one that no longer decodes
            // against this network is reported by `verify`, not fatal here.
            let _ = engine.attestations.insert(att, &network);
        }
        for stored in engine.store.load_docs()? {
            let id = stored.header.id();
            let doc = Document::load(
                stored.header,
                &stored.bytes,
                stored.signatures,
                fresh_actor(),
            )
            .map_err(|e| store::Error::Corrupt {
                path: engine.store.path().to_owned(),
                detail: format!("document {id}: {e}"),
            })?;
            engine.n_incremental.insert(id, stored.n_incremental);
            engine.note_created(doc.header());
            engine.docs.insert(id, doc);
        }
        engine.refresh_trust_from_directory();
        engine.refresh_trust_from_ledgers();
        engine.unit = engine.node_unit()?;
        engine.ensure_own_documents()?;
        engine.publish_to_directory()?;
        engine.metrics.documents.set(engine.docs.len() as i64);
        Ok(engine)
    }

    /// The unit of this node's certificate, which must match the configuration, as the
    /// registered tree names it.
    fn node_unit(&self) -> Result<Unit, Error> {
        let key = self.keys.node().public();
        let unit = &self.config.unit;
        let certified = self.trust.certificates_of(&key).into_iter().any(|(id, c)| {
            self.trust.is_chain_valid(&id) && c.body.role == Role::Node && &c.body.unit == unit
        });
        let root = self.genesis().is_root(&key) && &self.genesis().top.id == unit;
        self.trust
            .unit(unit)
            .filter(|_| certified || root)
            .cloned()
            .ok_or(Error::NotCertified {
                key,
                unit: unit.clone(),
            })
    }

    /// Every node keeps a ledger (its attestations) and a task list; the top unit's node keeps
    /// the network's directory.
    fn ensure_own_documents(&mut self) -> Result<(), Error> {
        let unit = self.unit.id.clone();
        let top = self.genesis().top.id.clone();
        let wanted: Vec<(Kind, String, Scope)> = {
            let mut w = vec![
                (
                    Kind::Ledger,
                    format!("{} 台账", self.unit.name),
                    Scope::Public,
                ),
                (
                    Kind::TaskList,
                    format!("{} 工作事项", self.unit.name),
                    // A district's list holds requests that communities must see to admit, and a
                    // street's or district's holds the responses (报到) to communities' whistles;
                    // a community's list holds its own work and stays on its chain.
                    if self.unit.kind == UnitKind::Community {
                        Scope::Chain
                    } else {
                        Scope::Public
                    },
                ),
            ];
            if unit == top {
                w.push((
                    Kind::Directory,
                    format!("{} 名录", self.genesis().network_name),
                    Scope::Public,
                ));
            }
            w
        };
        for (kind, title, scope) in wanted {
            let exists = self.docs.values().any(|d| {
                let h = &d.header().header;
                h.kind == kind && h.unit == unit && h.creator == self.keys.node().public()
            });
            let shared = kind == Kind::Directory && self.directory_id().is_some();
            if !exists && !shared {
                self.create(
                    CreateDoc {
                        kind,
                        title,
                        scope: Some(scope),
                        period: None,
                        minutes: None,
                    },
                    None,
                )?;
            }
        }
        Ok(())
    }

    // ----- accessors -----

    pub fn genesis(&self) -> &Genesis {
        self.trust.genesis()
    }

    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    pub fn attestations(&self) -> &attest::Index {
        &self.attestations
    }

    pub fn unit(&self) -> &Unit {
        &self.unit
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    pub fn node_key(&self) -> &SecretKey {
        self.keys.node()
    }

    pub fn limits(&self) -> &document::Limits {
        &self.limits
    }

    pub fn wire_limits(&self) -> &wire::Limits {
        &self.wire_limits
    }

    fn ctx(&self, now_ms: i64) -> Context<'_> {
        Context {
            trust: &self.trust,
            attestations: &self.attestations,
            limits: &self.limits,
            now_ms,
        }
    }

    /// Resolve a full id or a unique prefix of at least 6 hex digits.
    pub fn resolve(&self, id: &str) -> Result<DocId, Error> {
        if let Ok(full) = id.parse::<DocId>() {
            return if self.docs.contains_key(&full) {
                Ok(full)
            } else {
                Err(Error::UnknownDoc(id.to_owned()))
            };
        }
        if id.len() < 6 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::BadDocId(id.to_owned()));
        }
        let matches: Vec<&DocId> = self
            .docs
            .keys()
            .filter(|d| d.to_string().starts_with(id))
            .collect();
        match matches.as_slice() {
            [one] => Ok(**one),
            [] => Err(Error::UnknownDoc(id.to_owned())),
            _ => Err(Error::BadDocId(id.to_owned())),
        }
    }

    pub fn doc(&self, id: &DocId) -> Result<&Document, Error> {
        self.docs
            .get(id)
            .ok_or_else(|| Error::UnknownDoc(id.to_string()))
    }

    pub fn doc_mut(&mut self, id: &DocId) -> Result<&mut Document, Error> {
        self.docs
            .get_mut(id)
            .ok_or_else(|| Error::UnknownDoc(id.to_string()))
    }

    pub fn doc_ids(&self) -> Vec<DocId> {
        self.docs.keys().copied().collect()
    }

    pub fn directory_id(&self) -> Option<DocId> {
        let top = &self.genesis().top.id;
        self.docs
            .values()
            .filter(|d| d.kind() == Kind::Directory && &d.header().header.unit == top)
            .min_by_key(|d| (d.header().header.created_at_ms, d.id()))
            .map(|d| d.id())
    }

    /// This unit's own document of a kind (its ledger, its task list).
    pub fn own_doc(&self, kind: Kind) -> Option<DocId> {
        let unit = &self.unit.id;
        self.docs
            .values()
            .filter(|d| d.kind() == kind && &d.header().header.unit == unit)
            .min_by_key(|d| (d.header().header.created_at_ms, d.id()))
            .map(|d| d.id())
    }

    /// A unit's document of a kind (e.g. a district's task list), if held.
    pub fn unit_doc(&self, unit: &UnitId, kind: Kind) -> Option<DocId> {
        self.docs
            .values()
            .filter(|d| d.kind() == kind && &d.header().header.unit == unit)
            .min_by_key(|d| (d.header().header.created_at_ms, d.id()))
            .map(|d| d.id())
    }

    /// The visit log of a unit for a month, if held.
    pub fn visit_log(&self, unit: &UnitId, month: &str) -> Option<DocId> {
        self.docs
            .values()
            .filter(|d| {
                let h = &d.header().header;
                h.kind == Kind::VisitLog && &h.unit == unit && h.period.as_deref() == Some(month)
            })
            .min_by_key(|d| (d.header().header.created_at_ms, d.id()))
            .map(|d| d.id())
    }

    pub fn summary(&mut self, id: &DocId) -> Result<DocSummary, Error> {
        let doc = self
            .docs
            .get_mut(id)
            .ok_or_else(|| Error::UnknownDoc(id.to_string()))?;
        let h = doc.header().header.clone();
        let mut heads: Vec<String> = doc.heads().iter().map(|h| h.to_string()).collect();
        heads.sort();
        Ok(DocSummary {
            id: id.to_string(),
            kind: h.kind,
            unit: h.unit.to_string(),
            scope: h.scope.as_str().to_owned(),
            title: h.title,
            period: h.period,
            created_at_ms: h.created_at_ms,
            n_changes: doc.n_changes(),
            heads,
        })
    }

    pub fn list(&mut self) -> Vec<DocSummary> {
        self.doc_ids()
            .iter()
            .filter_map(|id| self.summary(id).ok())
            .collect()
    }

    /// The typed state of a document as JSON.
    pub fn state(&self, id: &DocId) -> Result<serde_json::Value, Error> {
        let doc = self.doc(id)?;
        let r = doc.read();
        let to_json = |v: Result<serde_json::Value, serde_json::Error>| {
            v.map_err(|e| Error::Invalid(format!("cannot render document {id}: {e}")))
        };
        let schema = |e: kinds::SchemaError| {
            Error::Invalid(format!("document {id} does not match its schema: {e}"))
        };
        match doc.kind() {
            Kind::Convention => to_json(serde_json::to_value(
                kinds::convention::hydrate(r).map_err(schema)?,
            )),
            Kind::Minutes => to_json(serde_json::to_value(
                kinds::minutes::hydrate(r).map_err(schema)?,
            )),
            Kind::TaskList => to_json(serde_json::to_value(
                kinds::tasks::hydrate(r).map_err(schema)?,
            )),
            Kind::VisitLog => to_json(serde_json::to_value(
                kinds::visits::hydrate(r).map_err(schema)?,
            )),
            Kind::Directory => to_json(serde_json::to_value(
                kinds::directory::hydrate(r).map_err(schema)?,
            )),
            Kind::Ledger => to_json(serde_json::to_value(
                kinds::ledger::hydrate(r).map_err(schema)?,
            )),
        }
    }

    pub fn status(&mut self) -> Status {
        let mut digest_input = Vec::new();
        let mut changes = 0;
        for (id, doc) in self.docs.iter_mut() {
            digest_input.extend_from_slice(&id.0);
            let mut heads = doc.heads();
            heads.sort();
            for h in heads {
                digest_input.extend_from_slice(&h.0);
            }
            changes += doc.n_changes();
        }
        let people = self
            .keys
            .people()
            .map(|(handle, key)| {
                let cert = self
                    .trust
                    .certificates_of(&key.public())
                    .into_iter()
                    .next()
                    .map(|(_, c)| c.clone());
                Person {
                    handle: handle.clone(),
                    key: key.public().to_string(),
                    holder: cert.as_ref().map(|c| c.body.holder.clone()),
                    role: cert.as_ref().map(|c| c.body.role.as_str().to_owned()),
                }
            })
            .collect();
        Status {
            network: self.trust.network().to_string(),
            network_name: self.genesis().network_name.clone(),
            unit: self.unit.id.to_string(),
            unit_name: self.unit.name.clone(),
            unit_kind: self.unit.kind,
            node_key: self.keys.node().public().to_string(),
            documents: self.docs.len(),
            changes,
            certificates: self.trust.certificates().count(),
            attestations: self.attestations.len(),
            people,
            heads_digest: hex::encode(&linli_crdt_model::keys::sha256(&[&digest_input])[..8]),
        }
    }

    /// Drain the documents whose heads changed since last asked (for announcements).
    pub fn take_changed(&mut self) -> BTreeSet<DocId> {
        std::mem::take(&mut self.changed)
    }

    // ----- local work -----

    /// Create a document owned by this node's unit, signed by `person` (default: the node).
    pub fn create(&mut self, req: CreateDoc, person: Option<&str>) -> Result<DocId, Error> {
        let now = now_ms();
        let signer = self.keys.signer(person)?.clone();
        let header = Header {
            network: self.trust.network(),
            kind: req.kind,
            unit: self.unit.id.clone(),
            scope: req.scope.unwrap_or_else(|| doc::default_scope(req.kind)),
            title: req.title.clone(),
            created_at_ms: now,
            schema_version: SCHEMA_VERSION,
            creator: signer.public(),
            period: req.period.clone(),
        };
        let kind = req.kind;
        let period = req.period.clone();
        let minutes = req.minutes.clone();
        let (mut document, sig) = Document::create(
            &self.ctx(now),
            header,
            &signer,
            fresh_actor(),
            |tx| match kind {
                Kind::Convention => kinds::convention::init(tx),
                Kind::Minutes => match &minutes {
                    Some(meta) => kinds::minutes::init(tx, meta),
                    None => Err(kinds::EditError::Invalid {
                        field: "minutes",
                        reason: "minutes need their meeting form, topic and date".to_owned(),
                    }),
                },
                Kind::TaskList => kinds::tasks::init(tx),
                Kind::VisitLog => match &period {
                    Some(month) => kinds::visits::init(tx, month),
                    None => Err(kinds::EditError::Invalid {
                        field: "period",
                        reason: "a visit log is for one month: give it as YYYY-MM".to_owned(),
                    }),
                },
                Kind::Directory => kinds::directory::init(tx),
                Kind::Ledger => kinds::ledger::init(tx),
            },
        )?;
        let id = document.id();
        let bytes = document
            .change_bytes(&ChangeHash(sig.hash))
            .expect("the change just made is in the document");
        self.store.put_header(document.header())?;
        self.store.append_changes(&id, &[(bytes, sig)])?;
        self.n_incremental.insert(id, 1);
        self.note_created(document.header());
        self.docs.insert(id, document);
        self.changed.insert(id);
        self.metrics.documents.set(self.docs.len() as i64);
        Ok(id)
    }

    /// Apply one operation as `person` and persist it before returning.
    pub fn apply(&mut self, id: &DocId, op: &Op, person: Option<&str>) -> Result<Receipt, Error> {
        if let Op::WhistleRate { id: whistle, .. } = op {
            let responded = self.responses_to(id, whistle);
            if responded.is_empty() {
                return Err(Error::Invalid(format!(
                    "whistle {whistle} has no response yet; it can be rated once a unit has reported in (报到)"
                )));
            }
        }
        let now = now_ms();
        let signer = self.keys.signer(person)?.clone();
        let kind = self.doc(id)?.kind();
        let mut op_error = None;
        let result = self.edit_local(id, &signer, op.name(), now, |tx| {
            op.apply(tx, kind, now, &mut fresh_id).map_err(|e| match e {
                OpError::Edit(e) => e,
                other => {
                    let msg = other.to_string();
                    op_error = Some(other);
                    kinds::EditError::Invalid {
                        field: "op",
                        reason: msg,
                    }
                }
            })
        });
        if let Some(e) = op_error {
            return Err(e.into());
        }
        let (record, sig) = result?;
        self.after_change(id);
        Ok(Receipt {
            doc: id.to_string(),
            change: hex::encode(sig.hash),
            record,
            author: sig.author.to_string(),
        })
    }

    /// Edit one of this node's documents as `signer` and persist the change before returning.
    fn edit_local<T>(
        &mut self,
        id: &DocId,
        signer: &SecretKey,
        message: &str,
        now: i64,
        f: impl FnOnce(&mut automerge::AutoCommit) -> Result<T, kinds::EditError>,
    ) -> Result<(T, ChangeSignature), Error> {
        let ctx = Context {
            trust: &self.trust,
            attestations: &self.attestations,
            limits: &self.limits,
            now_ms: now,
        };
        let doc = self
            .docs
            .get_mut(id)
            .ok_or_else(|| Error::UnknownDoc(id.to_string()))?;
        let (out, sig) = doc.edit(&ctx, signer, now, Some(message), f)?;
        self.persist_local(id, sig.clone())?;
        Ok((out, sig))
    }

    fn persist_local(&mut self, id: &DocId, sig: ChangeSignature) -> Result<(), Error> {
        self.persist(id, &[ChangeHash(sig.hash)])?;
        self.changed.insert(*id);
        self.metrics.changes_local.inc();
        Ok(())
    }

    /// Persist changes just applied to a document through [`persist_applied`], durably.
    fn persist(&mut self, id: &DocId, new: &[ChangeHash]) -> Result<(), Error> {
        let doc = self
            .docs
            .get_mut(id)
            .ok_or_else(|| Error::UnknownDoc(id.to_string()))?;
        let n = self.n_incremental.get(id).copied().unwrap_or(0);
        let n = persist_applied(
            &self.store,
            doc,
            new,
            n,
            self.config.sync.compact_after_changes,
        )?;
        self.n_incremental.insert(*id, n);
        Ok(())
    }

    /// Responses (报到) anywhere to a whistle in document `doc`.
    pub fn responses_to(&self, doc: &DocId, whistle: &str) -> Vec<kinds::tasks::Response> {
        let doc_hex = doc.to_string();
        self.docs
            .values()
            .filter(|d| d.kind() == Kind::TaskList)
            .filter_map(|d| kinds::tasks::hydrate(d.read()).ok())
            .flat_map(|l| l.responses.into_values())
            .filter(|r| r.whistle_doc == doc_hex && r.whistle_id == whistle)
            .collect()
    }

    /// Sign a statement about a document at its current heads and record it in this unit's
    /// ledger.
    pub fn attest(
        &mut self,
        id: &DocId,
        statement: Statement,
        subject: Option<String>,
        note: String,
        person: Option<&str>,
    ) -> Result<RecordId, Error> {
        let now = now_ms();
        let signer = self.keys.signer(person)?.clone();
        let (heads, doc_unit, checkpoint) = if statement == Statement::Checkpoint {
            (Vec::new(), self.unit.id.clone(), self.checkpoint_entries())
        } else {
            let doc = self.doc_mut(id)?;
            let heads: Vec<[u8; 32]> = doc.heads().iter().map(|h| h.0).collect();
            (heads, doc.header().header.unit.clone(), Vec::new())
        };
        let targets = match (&subject, statement) {
            (Some(rid), Statement::Reviewed | Statement::Approved | Statement::Rejected) => {
                self.request_targets(id, rid)
            }
            _ => Vec::new(),
        };
        let target = if statement == Statement::Checkpoint {
            self.own_doc(Kind::Ledger)
                .ok_or_else(|| Error::Invalid("this node has no ledger".to_owned()))?
        } else {
            *id
        };
        let att = Attestation::issue(
            AttestationBody {
                network: self.trust.network(),
                issuer: signer.public(),
                statement,
                doc: target,
                doc_unit,
                heads,
                subject,
                targets,
                at_ms: now,
                note,
                checkpoint,
            },
            &signer,
        );
        att.check(&self.trust)
            .map_err(|e| Error::Invalid(e.to_string()))?;
        self.record_attestation(att, person)
    }

    /// The units a request in task list `doc` targets, as it names them (unparsable ones
    /// dropped: they could never admit anything).
    fn request_targets(&self, doc: &DocId, request: &str) -> Vec<UnitId> {
        let Some(d) = self.docs.get(doc).filter(|d| d.kind() == Kind::TaskList) else {
            return Vec::new();
        };
        let Ok(list) = kinds::tasks::hydrate(d.read()) else {
            return Vec::new();
        };
        list.requests
            .get(request)
            .map(|r| {
                r.target_units
                    .iter()
                    .filter_map(|t| UnitId::new(t).ok())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn record_attestation(
        &mut self,
        att: Attestation,
        person: Option<&str>,
    ) -> Result<RecordId, Error> {
        let ledger = self
            .own_doc(Kind::Ledger)
            .ok_or_else(|| Error::Invalid("this node has no ledger".to_owned()))?;
        let aid = att.id();
        let bytes = att.encode();
        // The ledger change is signed by the same person who signed the attestation.
        let signer = self.keys.signer(person)?.clone();
        self.edit_local(&ledger, &signer, "attest", now_ms(), |tx| {
            kinds::ledger::put_attestation(tx, &aid.to_string(), &bytes)
        })?;
        self.store.put_attestation(&att)?;
        self.attestations.insert(att, &self.trust.network())?;
        self.after_change(&ledger);
        Ok(aid)
    }

    fn checkpoint_entries(&mut self) -> Vec<CheckpointEntry> {
        self.docs
            .iter_mut()
            .map(|(id, d)| {
                let mut heads: Vec<[u8; 32]> = d.heads().iter().map(|h| h.0).collect();
                heads.sort();
                let h = &d.header().header;
                CheckpointEntry {
                    doc: *id,
                    unit: h.unit.clone(),
                    scope: h.scope,
                    heads,
                    n_changes: d.n_changes() as u64,
                }
            })
            .collect()
    }

    /// Sign a checkpoint of every document held (district nodes).
    pub fn checkpoint(&mut self) -> Result<RecordId, Error> {
        let ledger = self
            .own_doc(Kind::Ledger)
            .ok_or_else(|| Error::Invalid("this node has no ledger".to_owned()))?;
        self.attest(&ledger, Statement::Checkpoint, None, String::new(), None)
    }

    /// Compare every document held with the newest checkpoint.
    pub fn compare_checkpoint(&mut self) -> Result<(String, Vec<CompareRow>), Error> {
        let (cid, cp) = self
            .attestations
            .latest_checkpoint(&self.trust, now_ms(), self.limits.clock_skew_ms_max)
            .map(|(id, a)| (id, a.clone()))
            .ok_or_else(|| Error::Invalid("no checkpoint has reached this node yet".to_owned()))?;
        let mut rows = Vec::new();
        let entries: HashMap<DocId, &CheckpointEntry> =
            cp.body.checkpoint.iter().map(|e| (e.doc, e)).collect();
        for (id, doc) in self.docs.iter_mut() {
            let title = doc.header().header.title.clone();
            let comparison = match entries.get(id) {
                None => Comparison::NotInCheckpoint,
                Some(e) => {
                    let heads: Vec<[u8; 32]> = doc.heads().iter().map(|h| h.0).collect();
                    let n = doc.n_changes() as u64;
                    let newest = doc.newest_change_ms();
                    let cell = std::cell::RefCell::new(&mut *doc);
                    attest::compare(&heads, n, newest, e, cp.body.at_ms, |h| {
                        cell.borrow_mut().has_change(&ChangeHash(*h))
                    })
                }
            };
            rows.push(CompareRow {
                doc: id.to_string(),
                title,
                comparison,
            });
        }
        for e in &cp.body.checkpoint {
            if !self.docs.contains_key(&e.doc) && e.scope.may_hold(&e.unit, &self.unit.id) {
                rows.push(CompareRow {
                    doc: e.doc.to_string(),
                    title: String::new(),
                    comparison: Comparison::Missing,
                });
            }
        }
        Ok((cid.to_string(), rows))
    }

    pub fn audit(&mut self, id: &DocId) -> Result<Audit, Error> {
        let (trust, index) = (&self.trust, &self.attestations);
        let doc = self
            .docs
            .get_mut(id)
            .ok_or_else(|| Error::UnknownDoc(id.to_string()))?;
        let mut audit = doc.audit(trust, index);
        doc.add_equivocations(trust, &self.store.equivocations(id)?, &mut audit);
        Ok(audit)
    }

    /// Re-check the whole store: every header, change, attestation, and that nothing is held
    /// outside this node's scope.
    pub fn verify(&mut self) -> Vec<Problem> {
        let me = self.unit.id.clone();
        let (trust, index) = (&self.trust, &self.attestations);
        let mut problems = Vec::new();
        for (id, doc) in self.docs.iter_mut() {
            let h = &doc.header().header;
            if !h.scope.may_hold(&h.unit, &me) {
                problems.push(Problem {
                    doc: id.to_string(),
                    what: format!(
                        "held outside its scope ({} of {})",
                        h.scope.as_str(),
                        h.unit
                    ),
                });
            }
            problems.extend(doc.verify(trust, index));
        }
        problems.extend(audit::verify_attestations(trust, index));
        for c in trust.conflicts() {
            let losers = c
                .losers
                .iter()
                .map(|id| {
                    let u = trust
                        .registrations()
                        .find(|(rid, _)| *rid == id)
                        .map(|(_, r)| {
                            format!(" ({} {})", r.body.unit.kind.as_str(), r.body.unit.name)
                        })
                        .unwrap_or_default();
                    format!("{id}{u}")
                })
                .collect::<Vec<_>>()
                .join(", ");
            let won = trust
                .unit(&c.unit)
                .map(|u| format!("{} {}", u.kind.as_str(), u.name))
                .unwrap_or_default();
            problems.push(Problem {
                doc: format!("unit {}", c.unit),
                what: format!(
                    "registrations disagree: {} ({won}) wins over {losers}",
                    c.winner
                ),
            });
        }
        problems
    }

    // ----- certificates -----

    /// Issue a certificate as `issuer` (a person handle or the node) and record it: in the store,
    /// in trust, in this node's ledger (so it reaches every node) and in the directory if this
    /// node writes it.
    #[allow(
        clippy::too_many_arguments,
        reason = "each argument is one field of the certificate"
    )]
    pub fn issue_certificate(
        &mut self,
        subject: PublicKey,
        unit: UnitId,
        role: Role,
        holder: String,
        valid_ms: i64,
        person: Option<&str>,
    ) -> Result<Certificate, Error> {
        if self.trust.unit(&unit).is_none() {
            return Err(Error::Unregistered(unit));
        }
        let now = now_ms();
        let issuer = self.keys.signer(person)?.clone();
        let cert = Certificate::issue(
            CertBody {
                network: self.trust.network(),
                subject,
                unit,
                role,
                holder,
                issuer: issuer.public(),
                issued_at_ms: now,
                expires_at_ms: now.saturating_add(valid_ms),
            },
            &issuer,
        );
        // Refuse before storing anything: a certificate without a chain to the root would be
        // kept and spread, and prove nothing.
        let mut probe = self.trust.clone();
        probe.insert_certificates([cert.clone()])?;
        if !probe.is_chain_valid(&cert.id()) {
            return Err(Error::Refused(EditRefused::Denied(
                linli_crdt_model::trust::Denied::NotPermitted {
                    key: issuer.public(),
                    roles: format!(
                        "not an administrator of {} or a unit above it",
                        cert.body.unit
                    ),
                },
            )));
        }
        self.record_trust(TrustRecord::Certificate(cert.clone()))?;
        Ok(cert)
    }

    /// Register a unit below the top, signed by `person` (or the node): an admin of its parent
    /// or a unit above it. Refused before anything is stored if it would not hold.
    pub fn register_unit(
        &mut self,
        unit: Unit,
        person: Option<&str>,
    ) -> Result<Registration, Error> {
        let signer = self.keys.signer(person)?.clone();
        let at_ms = now_ms();
        let reg = Registration::issue(
            RegistrationBody {
                network: self.trust.network(),
                unit: unit.clone(),
                issuer: signer.public(),
                at_ms,
            },
            &signer,
        );
        reg.check(&self.trust.network())?;
        let mut probe = self.trust.clone();
        probe.insert_registrations([reg.clone()])?;
        if probe.unit(&unit.id) != Some(&unit) {
            let parent = unit.id.parent().expect("checked: not the top unit");
            let why = match self.trust.unit(&parent) {
                None => format!("its parent {parent} is not registered; register the parent first"),
                Some(p) if unit.kind.parent_kind() != Some(p.kind) => format!(
                    "a {} belongs under a {}, but {parent} is a {}",
                    unit.kind.as_str(),
                    unit.kind
                        .parent_kind()
                        .map_or("nothing (it is the top)", |k| k.as_str()),
                    p.kind.as_str()
                ),
                Some(_)
                    if self
                        .trust
                        .authorize(&signer.public(), at_ms, |u, role| {
                            role == Role::Admin && u.id.is_at_or_above(&parent)
                        })
                        .is_err() =>
                {
                    format!(
                        "key {} is not an administrator of {parent} or a unit above it",
                        signer.public()
                    )
                }
                Some(_) => {
                    "a registration of it by a higher administrator, or a newer one, is in force"
                        .to_owned()
                }
            };
            return Err(Error::Invalid(format!(
                "cannot register {} ({} {}): {why}",
                unit.id,
                unit.kind.as_str(),
                unit.name
            )));
        }
        self.record_trust(TrustRecord::Registration(reg.clone()))?;
        Ok(reg)
    }

    /// The public key a person (or the node, for `None`) signs with.
    pub fn signer_key(&self, person: Option<&str>) -> Result<PublicKey, Error> {
        Ok(self.keys.signer(person)?.public())
    }

    /// Add certificates to trust and store, and to the directory if this node holds it.
    pub fn import_certificates(&mut self, certs: Vec<Certificate>) -> Result<Vec<RecordId>, Error> {
        self.import_trust(certs.into_iter().map(TrustRecord::Certificate).collect())
    }

    /// Add registrations to trust and store, and to the directory if this node holds it.
    pub fn import_registrations(
        &mut self,
        regs: Vec<Registration>,
    ) -> Result<Vec<RecordId>, Error> {
        self.import_trust(regs.into_iter().map(TrustRecord::Registration).collect())
    }

    /// Records an administrator brings (`linli cert import`): one dated ahead of the clock is
    /// refused with the reason, not set aside as a peer's would be. Returns the new ones' ids.
    fn import_trust(&mut self, records: Vec<TrustRecord>) -> Result<Vec<RecordId>, Error> {
        let now = now_ms();
        for r in &records {
            linli_crdt_model::cert::check_not_future(
                r.what(),
                r.at_ms(),
                now,
                self.limits.clock_skew_ms_max,
            )?;
        }
        let new = self.insert_trust(&records)?;
        self.store_trust(&new)?;
        self.publish_to_directory()?;
        Ok(new.iter().map(TrustRecord::id).collect())
    }

    /// Revoke `key` over `unit` (default: the unit of the issuer's admin certificate, the top
    /// for a root key) from `cutoff_ms` (default: now). `keep_issued` keeps the certificates
    /// the key issued (a job transfer); without it they end at the cutoff too (a lost key).
    /// Refused if it would not take effect.
    #[allow(
        clippy::too_many_arguments,
        reason = "each argument is one field of the revocation"
    )]
    pub fn revoke(
        &mut self,
        key: PublicKey,
        unit: Option<UnitId>,
        cutoff_ms: Option<i64>,
        keep_issued: bool,
        reason: String,
        person: Option<&str>,
    ) -> Result<Revocation, Error> {
        let now = now_ms();
        let issuer = self.keys.signer(person)?.clone();
        let unit = match unit {
            Some(u) => u,
            None => self
                .admin_unit_of(&issuer.public(), &key, now)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "key {} holds no administrator certificate in force; name the unit to \
                     revoke over with --unit",
                        issuer.public()
                    ))
                })?,
        };
        if self.trust.unit(&unit).is_none() {
            return Err(Error::Unregistered(unit));
        }
        let cutoff_ms = cutoff_ms.unwrap_or(now);
        if cutoff_ms > now {
            return Err(Error::Invalid(format!(
                "the cutoff ({cutoff_ms}) lies in the future; a revocation takes effect from a \
                 time up to now"
            )));
        }
        if self.genesis().is_root(&key) {
            return Err(Error::Invalid(format!(
                "key {key} is a root key of the genesis and cannot be revoked"
            )));
        }
        let reaches = self
            .trust
            .certificates_of(&key)
            .iter()
            .any(|(_, c)| unit.is_at_or_above(&c.body.unit) && c.body.issued_at_ms <= now);
        if !reaches {
            return Err(Error::Invalid(format!(
                "key {key} has no certificate for {unit} or a unit below it; nothing to revoke"
            )));
        }
        let rev = Revocation::issue(
            RevocationBody {
                network: self.trust.network(),
                key,
                issuer: issuer.public(),
                unit: unit.clone(),
                at_ms: now,
                cutoff_ms,
                reason,
                keep_issued,
            },
            &issuer,
        );
        let mut probe = self.trust.clone();
        probe.insert_revocations([rev.clone()])?;
        if !probe.is_effective(&rev.id()) {
            return Err(Error::Invalid(format!(
                "the revocation would not take effect: key {} is not an administrator of {unit} \
                 or a unit above it now",
                issuer.public()
            )));
        }
        self.record_trust(TrustRecord::Revocation(rev.clone()))?;
        Ok(rev)
    }

    /// The unit an admin revokes over by default: that of its administrator certificate in
    /// force now, preferring one over a certificate of `key`, then the highest.
    fn admin_unit_of(&self, admin: &PublicKey, key: &PublicKey, now: i64) -> Option<UnitId> {
        if self.genesis().is_root(admin) {
            return Some(self.genesis().top.id.clone());
        }
        let theirs: Vec<UnitId> = self
            .trust
            .certificates_of(key)
            .into_iter()
            .map(|(_, c)| c.body.unit.clone())
            .collect();
        self.trust
            .certificates_of(admin)
            .into_iter()
            .filter(|(id, c)| c.body.role == Role::Admin && self.trust.in_force(id, now))
            .map(|(_, c)| c.body.unit.clone())
            .min_by_key(|u| {
                let covers = theirs.iter().any(|t| u.is_at_or_above(t));
                (!covers, u.depth(), u.clone())
            })
    }

    /// Record a trust record made here: trust and store first, then this node's ledger (which
    /// every node that may hold it syncs, so it reaches them), then the directory if this node
    /// writes it.
    fn record_trust(&mut self, rec: TrustRecord) -> Result<(), Error> {
        self.learn_trust(std::slice::from_ref(&rec))?;
        let ledger = self
            .own_doc(Kind::Ledger)
            .ok_or_else(|| Error::Invalid("this node has no ledger".to_owned()))?;
        let (rid, bytes) = (rec.id().to_string(), rec.encode());
        let signer = self.keys.node().clone();
        self.edit_local(&ledger, &signer, rec.what(), now_ms(), |tx| {
            kinds::ledger::put_trust_record(tx, &rid, &bytes)
        })?;
        self.publish_to_directory()?;
        Ok(())
    }

    /// Add checked trust records to trust, and the new ones to the store. A store failure is
    /// logged, not fatal: the record is still in the document that carried it. Returns whether
    /// anything was new.
    fn learn_trust(&mut self, records: &[TrustRecord]) -> Result<bool, RecordError> {
        let new = self.insert_trust(records)?;
        self.store_trust_or_log(&new);
        Ok(!new.is_empty())
    }

    /// Add checked trust records to trust (not to the store); returns those that were new.
    fn insert_trust(&mut self, records: &[TrustRecord]) -> Result<Vec<TrustRecord>, RecordError> {
        // A signed time ahead of the clock would rank as the newest for as long as it lies
        // ahead (a registration), so such a record is set aside — only it, not the message
        // that carried it, which may hold what an honest peer needs: it comes again (in its
        // ledger, or the next message) once this clock has reached it.
        let now = now_ms();
        let mut regs = Vec::new();
        let mut certs = Vec::new();
        let mut revs = Vec::new();
        for r in records {
            if let Err(e) = linli_crdt_model::cert::check_not_future(
                r.what(),
                r.at_ms(),
                now,
                self.limits.clock_skew_ms_max,
            ) {
                tracing::debug!(record = %r.id(), error = %e, "setting aside a trust record dated ahead");
                continue;
            }
            match r {
                TrustRecord::Registration(x) => regs.push(x.clone()),
                TrustRecord::Certificate(x) => certs.push(x.clone()),
                TrustRecord::Revocation(x) => revs.push(x.clone()),
            }
        }
        let mut new = Vec::new();
        let ids = self.trust.insert_registrations(regs.clone())?;
        new.extend(
            regs.into_iter()
                .filter(|r| ids.contains(&r.id()))
                .map(TrustRecord::Registration),
        );
        let ids = self.trust.insert_certificates(certs.clone())?;
        new.extend(
            certs
                .into_iter()
                .filter(|c| ids.contains(&c.id()))
                .map(TrustRecord::Certificate),
        );
        let ids = self.trust.insert_revocations(revs.clone())?;
        new.extend(
            revs.into_iter()
                .filter(|r| ids.contains(&r.id()))
                .map(TrustRecord::Revocation),
        );
        Ok(new)
    }

    /// Put trust records in the store.
    fn store_trust(&self, records: &[TrustRecord]) -> Result<(), store::Error> {
        for r in records {
            match r {
                TrustRecord::Registration(x) => self.store.put_registration(x)?,
                TrustRecord::Certificate(x) => self.store.put_certificate(x)?,
                TrustRecord::Revocation(x) => self.store.put_revocation(x)?,
            }
        }
        Ok(())
    }

    /// [`Engine::store_trust`] for records a peer or a document brought: a store failure is
    /// logged, not fatal, since they are still in what carried them and come again.
    fn store_trust_or_log(&self, records: &[TrustRecord]) {
        if let Err(e) = self.store_trust(records) {
            tracing::warn!(error = %e, "could not store trust records");
        }
    }

    /// Put every registration, certificate and revocation this node knows, and the registered
    /// unit tree, into the directory if this node writes it and they are missing (the top
    /// node's own certificate is issued before the directory exists; records made at other
    /// units arrive in their ledgers).
    fn publish_to_directory(&mut self) -> Result<(), Error> {
        let Some(dir) = self.directory_id().filter(|d| self.can_write(d)) else {
            return Ok(());
        };
        let Ok(current) = kinds::directory::hydrate(self.docs[&dir].read()) else {
            return Ok(());
        };
        let regs: Vec<Registration> = self
            .trust
            .registrations()
            .filter(|(id, _)| !current.registrations.contains_key(&id.to_string()))
            .map(|(_, r)| r.clone())
            .collect();
        let certs: Vec<Certificate> = self
            .trust
            .certificates()
            .filter(|(id, _)| !current.certificates.contains_key(&id.to_string()))
            .map(|(_, c)| c.clone())
            .collect();
        let revs: Vec<Revocation> = self
            .trust
            .revocations()
            .filter(|(id, _)| !current.revocations.contains_key(&id.to_string()))
            .map(|(_, r)| r.clone())
            .collect();
        // The display map follows the registered tree, in id order: parents before children.
        let units: Vec<(String, kinds::directory::UnitEntry)> = self
            .trust
            .units()
            .map(|u| (u.id.to_string(), kinds::directory::UnitEntry::from(u)))
            .filter(|(id, e)| current.units.get(id) != Some(e))
            .collect();
        if regs.is_empty() && certs.is_empty() && revs.is_empty() && units.is_empty() {
            return Ok(());
        }
        let signer = self.keys.node().clone();
        self.edit_local(&dir, &signer, "directory", now_ms(), |tx| {
            for (id, e) in &units {
                match kinds::directory::put_unit(tx, id, e) {
                    // The display map is a convenience; the registrations are the record.
                    Ok(()) | Err(kinds::EditError::Invalid { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            for r in &regs {
                kinds::directory::put_registration(tx, &r.id().to_string(), &r.encode())?;
            }
            for c in &certs {
                kinds::directory::put_certificate(tx, &c.id().to_string(), &c.encode())?;
            }
            for r in &revs {
                kinds::directory::put_revocation(tx, &r.id().to_string(), &r.encode())?;
            }
            Ok(())
        })?;
        Ok(())
    }

    fn can_write(&self, id: &DocId) -> bool {
        let Some(doc) = self.docs.get(id) else {
            return false;
        };
        let h = &doc.header().header;
        self.trust
            .authorize(&self.keys.node().public(), now_ms(), |u, role| {
                doc::may_write(h.kind, &h.unit, &u.id, role)
            })
            .is_ok()
    }

    /// Pull registrations, certificates and revocations out of the directory into trust.
    /// Returns whether anything was new.
    fn refresh_trust_from_directory(&mut self) -> bool {
        let Some(dir) = self.directory_id() else {
            return false;
        };
        let Ok(d) = kinds::directory::hydrate(self.docs[&dir].read()) else {
            return false;
        };
        let network = self.trust.network();
        let mut records: Vec<TrustRecord> = Vec::new();
        records.extend(
            d.registrations
                .values()
                .filter_map(|b| Registration::decode(b, &network).ok())
                .map(TrustRecord::Registration),
        );
        records.extend(
            d.certificates
                .values()
                .filter_map(|b| Certificate::decode(b, &network).ok())
                .map(TrustRecord::Certificate),
        );
        records.extend(
            d.revocations
                .values()
                .filter_map(|b| Revocation::decode(b, &network).ok())
                .map(TrustRecord::Revocation),
        );
        self.learn_from(records, "the directory")
    }

    /// Pull the trust records of one ledger into trust. Returns whether anything was new.
    fn refresh_trust_from_ledger(&mut self, ledger: &DocId) -> bool {
        let Ok(l) = kinds::ledger::hydrate(self.docs[ledger].read()) else {
            return false;
        };
        let network = self.trust.network();
        let records: Vec<TrustRecord> = l
            .trust
            .values()
            .filter_map(|b| TrustRecord::decode(b, &network).ok())
            .collect();
        self.learn_from(records, "a ledger")
    }

    /// Pull the trust records of every ledger held into trust.
    fn refresh_trust_from_ledgers(&mut self) -> bool {
        let ledgers: Vec<DocId> = self
            .docs
            .iter()
            .filter(|(_, d)| d.kind() == Kind::Ledger)
            .map(|(id, _)| *id)
            .collect();
        let mut new = false;
        for id in ledgers {
            new |= self.refresh_trust_from_ledger(&id);
        }
        new
    }

    fn learn_from(&mut self, records: Vec<TrustRecord>, source: &str) -> bool {
        // Each decoded record passed its checks, so only a record error in trust itself (none
        // is expected) could refuse the batch; it is logged.
        match self.learn_trust(&records) {
            Ok(new) => new,
            Err(e) => {
                tracing::warn!(error = %e, source, "could not take trust records");
                false
            }
        }
    }

    fn refresh_attestations_from(&mut self, ledger: &DocId) {
        let Ok(l) = kinds::ledger::hydrate(self.docs[ledger].read()) else {
            return;
        };
        let network = self.trust.network();
        for bytes in l.attestations.values() {
            if let Ok(att) = Attestation::decode(bytes)
                && self.attestations.get(&att.id()).is_none()
                && self.attestations.insert(att.clone(), &network).is_ok()
            {
                let _ = self.store.put_attestation(&att);
            }
        }
    }

    /// Housekeeping after a document changed: trust, approvals, and admission of approved work.
    fn after_change(&mut self, id: &DocId) {
        match self.docs.get(id).map(|d| d.kind()) {
            Some(Kind::Directory) => {
                self.refresh_trust_from_directory();
            }
            Some(Kind::Ledger) => {
                // A street's revocation or a new community's registration travels in the
                // issuer's ledger; the top node copies what it learns into the directory.
                if self.refresh_trust_from_ledger(id)
                    && let Err(e) = self.publish_to_directory()
                {
                    tracing::warn!(error = %e, "could not publish trust records to the directory");
                }
                self.refresh_attestations_from(id);
                self.admit_approved();
            }
            Some(Kind::TaskList) => self.admit_approved(),
            _ => {}
        }
    }

    /// Admission (准入): a community node adds every request that targets it and carries the
    /// district's review and approval to its own task list, as an admitted task that names them.
    /// Without both it adds nothing (seed 000 §一(一)).
    fn admit_approved(&mut self) {
        if self.unit.kind != UnitKind::Community {
            return;
        }
        let Some(mine) = self.own_doc(Kind::TaskList) else {
            return;
        };
        let Ok(my_list) = kinds::tasks::hydrate(self.docs[&mine].read()) else {
            return;
        };
        let admitted: HashSet<(String, String)> = my_list
            .tasks
            .values()
            .filter_map(|t| {
                t.admission
                    .as_ref()
                    .map(|a| (a.request_doc.clone(), a.request_id.clone()))
            })
            .collect();
        let me = self.unit.id.to_string();
        let mut todo = Vec::new();
        for (did, doc) in &self.docs {
            if doc.kind() != Kind::TaskList || did == &mine {
                continue;
            }
            let Ok(list) = kinds::tasks::hydrate(doc.read()) else {
                continue;
            };
            for (rid, req) in &list.requests {
                if !req.target_units.contains(&me)
                    || admitted.contains(&(did.to_string(), rid.clone()))
                {
                    continue;
                }
                let valid =
                    self.attestations
                        .valid_for(did, &doc.header().header.unit, &self.trust);
                let find = |s: Statement| {
                    valid
                        .iter()
                        .filter(|(_, a, g)| {
                            a.body.statement == s
                                && a.body.subject.as_deref() == Some(rid.as_str())
                                && a.body.targets.contains(&self.unit.id)
                                && g.unit_kind == UnitKind::District
                        })
                        .map(|(id, _, _)| id.to_string())
                        .next_back()
                };
                if let (Some(review), Some(approval)) =
                    (find(Statement::Reviewed), find(Statement::Approved))
                {
                    // Only the district rejects (`Statement::permits` says so too).
                    let rejected = valid.iter().any(|(_, a, g)| {
                        a.body.statement == Statement::Rejected
                            && a.body.subject.as_deref() == Some(rid.as_str())
                            && g.unit_kind == UnitKind::District
                    });
                    if !rejected {
                        todo.push((did.to_string(), rid.clone(), req.clone(), review, approval));
                    }
                }
            }
        }
        for (request_doc, request_id, req, review, approval) in todo {
            let op = Op::TaskAdd {
                id: Some(format!("adm-{}", &request_id)),
                task: kinds::tasks::NewTask {
                    title: req.title.clone(),
                    category: kinds::tasks::Category::Admitted,
                    due: req.due.clone(),
                    assignee: None,
                    note: format!("{}; {}", req.department, req.legal_basis),
                    admission: Some(kinds::tasks::Admission {
                        request_doc,
                        request_id,
                        review,
                        approval,
                    }),
                },
            };
            if let Err(e) = self.apply(&mine, &op, None) {
                tracing::warn!(error = %e, "could not admit an approved request");
            }
        }
    }

    // ----- sync -----

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
    /// certified as a node of the unit it claims. Returns the peer's unit.
    pub fn accept_hello(
        &mut self,
        hello: &Hello,
        peer_key: &PublicKey,
    ) -> Result<Unit, SyncRefused> {
        if hello.network != self.trust.network() {
            return Err(SyncRefused::Model(Rejected::WrongNetwork {
                expected: self.trust.network(),
                found: hello.network,
            }));
        }
        if hello.protocol_version != PROTOCOL_VERSION {
            return Err(SyncRefused::Hello(format!(
                "protocol version {} (this node speaks {PROTOCOL_VERSION})",
                hello.protocol_version
            )));
        }
        if hello.chain.len() > HELLO_RECORDS_MAX || hello.registrations.len() > HELLO_RECORDS_MAX {
            return Err(SyncRefused::HelloTooLarge(format!(
                "a hello carries at most {HELLO_RECORDS_MAX} certificates and as many \
                 registrations (this one {} and {})",
                hello.chain.len(),
                hello.registrations.len()
            )));
        }
        if self.genesis().is_root(peer_key) && hello.unit == self.genesis().top.id {
            return Ok(self.genesis().top.clone());
        }
        let now = now_ms();
        let records = chains_of(&hello.chain, &hello.registrations, &[*peer_key]);
        // Judged with what it brings that proves its key; nothing of it is kept unless the
        // hello is accepted.
        let grant = self.with_carried_trust(
            &records,
            |e| {
                e.trust
                    .authorize(peer_key, now, |u, role| {
                        role == Role::Node && u.id == hello.unit
                    })
                    .map_err(|d| {
                        SyncRefused::Hello(format!(
                            "peer key is not a certified node of {}: {d}",
                            hello.unit
                        ))
                    })
            },
            |_, _| None,
        )?;
        let unit = self
            .trust
            .unit(&grant.unit)
            .cloned()
            .unwrap_or_else(|| Unit {
                id: grant.unit.clone(),
                kind: grant.unit_kind,
                name: grant.unit.to_string(),
            });
        Ok(unit)
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
        self.store
            .sync_state(peer, doc)
            .ok()
            .flatten()
            .and_then(|b| sync::State::decode(&b).ok())
            .unwrap_or_default()
    }

    fn keep_state(&mut self, peer: &str, doc: &DocId, state: sync::State) {
        let _ = self.store.put_sync_state(peer, doc, &state.encode());
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

    fn admission_attestations(&self, id: &DocId) -> Vec<Attestation> {
        let Ok(list) = kinds::tasks::hydrate(self.docs[id].read()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for t in list.tasks.values() {
            if let Some(a) = &t.admission {
                for aid in [&a.review, &a.approval] {
                    if let Some(att) = aid
                        .parse::<RecordId>()
                        .ok()
                        .and_then(|r| self.attestations.get(&r))
                    {
                        out.push(att.clone());
                    }
                }
            }
        }
        out
    }

    /// Take a peer's sync message. `Ok` means it was applied, except the changes it lists as
    /// set aside (verdicts under what this node knows now, see `document`'s module doc), with
    /// the reply to send (`None` when we have nothing to say); `Err` means nothing of it was
    /// applied.
    pub fn sync_in(
        &mut self,
        peer: &str,
        peer_unit: &UnitId,
        msg: SyncMessage,
    ) -> Result<Synced, SyncRefused> {
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
            if result.is_err() || att.check(&self.trust).is_err() {
                self.attestations.remove(&att.id());
            } else if let Err(e) = self.store.put_attestation(&att) {
                tracing::warn!(error = %e, attestation = %att.id(), "could not store an attestation");
            }
        }
        result
    }

    /// Judge a peer's input with the trust records it carries in trust: they are needed to
    /// judge it. If `judge` refuses, trust goes back to what it was and nothing of them is
    /// stored; if it accepts, the new ones are stored — or, if `proven` names the keys whose
    /// signed work was taken in the end, only the new ones that prove those keys. What trust
    /// learned meanwhile from the documents the input changed (a ledger's revocation) stays.
    /// Trust is copied only when a record is new here (most messages carry only what is known,
    /// or nothing).
    fn with_carried_trust<T>(
        &mut self,
        records: &[TrustRecord],
        judge: impl FnOnce(&mut Self) -> Result<T, SyncRefused>,
        proven: impl FnOnce(&Self, &T) -> Option<Vec<PublicKey>>,
    ) -> Result<T, SyncRefused> {
        if records.iter().all(|r| self.trust.knows(r)) {
            return judge(self);
        }
        let before = self.trust.clone();
        let result = self
            .insert_trust(records)
            .map_err(SyncRefused::from)
            .and_then(|new| judge(self).map(|t| (t, new)));
        match result {
            Ok((t, mut new)) => {
                if let Some(keys) = proven(self, &t) {
                    let (mut certs, mut regs) = (Vec::new(), Vec::new());
                    for r in &new {
                        match r {
                            TrustRecord::Certificate(c) => certs.push(c.clone()),
                            TrustRecord::Registration(g) => regs.push(g.clone()),
                            TrustRecord::Revocation(_) => {}
                        }
                    }
                    let keep = chains_of(&certs, &regs, &keys);
                    if keep.len() < new.len() {
                        // Trust again without the carried records that prove nothing taken,
                        // but with everything else it holds now: what it had before, and what
                        // it learned from the documents the input changed.
                        let unproven: HashSet<RecordId> = new
                            .iter()
                            .map(TrustRecord::id)
                            .filter(|id| !keep.iter().any(|k| k.id() == *id))
                            .collect();
                        let size = |t: &Trust| {
                            t.certificates().count()
                                + t.registrations().count()
                                + t.revocations().count()
                        };
                        let after = std::mem::replace(&mut self.trust, before);
                        let learned: Vec<TrustRecord> =
                            if size(&after) == size(&self.trust) + new.len() {
                                // Nothing learned besides what was carried: only the proven part.
                                new.iter()
                                    .filter(|r| !unproven.contains(&r.id()))
                                    .cloned()
                                    .collect()
                            } else {
                                after
                                    .records()
                                    .filter(|r| !unproven.contains(&r.id()) && !self.trust.knows(r))
                                    .collect()
                            };
                        if let Err(e) = self.insert_trust(&learned) {
                            tracing::warn!(error = %e, "could not keep the records that prove what was taken");
                            self.trust = after;
                        } else {
                            new.retain(|r| !unproven.contains(&r.id()));
                        }
                    }
                }
                self.store_trust_or_log(&new);
                Ok(t)
            }
            Err(e) => {
                self.trust = before;
                Err(e)
            }
        }
    }

    /// Remember who created a document, and when, for the creation budget.
    fn note_created(&mut self, header: &SignedHeader) {
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

    /// [`Engine::sync_in`] once the records the message carries are in place.
    fn sync_in_checked(
        &mut self,
        peer: &str,
        peer_unit: &UnitId,
        msg: SyncMessage,
        now: i64,
    ) -> Result<Synced, SyncRefused> {
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
        let created_by = fresh.as_ref().map(|d| d.header().header.creator);
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
            self.store
                .put_header(doc.header())
                .map_err(|e| SyncRefused::Storage(e.to_string()))?;
            self.note_created(doc.header());
            self.docs.insert(id, doc);
            self.metrics.documents.set(self.docs.len() as i64);
        }
        if !applied.new.is_empty() {
            self.persist_remote(&id, &applied)
                .map_err(|e| SyncRefused::Storage(e.to_string()))?;
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

    /// Districts sign checkpoints (the network loop asks on its interval).
    pub fn is_district(&self) -> bool {
        self.unit.kind == UnitKind::District
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

/// Persist the changes `new`, just applied to `doc`, durably before returning (one store record
/// per batch; a batch that fills the incremental log goes straight into a new snapshot, see
/// [`Store::persist_new`]), and return the document's incremental log length now.
///
/// Whenever that wrote a snapshot, `doc` is replaced by the document loaded from it (with a
/// fresh actor), unless changes wait in it for a dependency (those live only in memory). A
/// document built by applying thousands of changes holds two to three times the memory of the
/// same document loaded from its saved form (the Scale bench's city month, 300 documents of
/// 3,000 visits: 2.4 GiB peak without the reload, 0.9 GiB with it), and the compaction has
/// already paid for the save. If the reload fails (it should not: the bytes were just saved),
/// the built document stays; it is equally correct.
pub fn persist_applied(
    store: &Store,
    doc: &mut Document,
    new: &[ChangeHash],
    n_incremental: usize,
    compact_after: usize,
) -> Result<usize, store::Error> {
    let done = store.persist_new(doc, new, n_incremental, compact_after)?;
    if let Some(snapshot) = done.snapshot
        && doc.n_deferred() == 0
    {
        let signatures: Vec<ChangeSignature> = doc.signatures().cloned().collect();
        if let Ok(loaded) =
            Document::load(doc.header().clone(), &snapshot, signatures, fresh_actor())
        {
            *doc = loaded;
        }
    }
    Ok(done.n_incremental)
}

pub fn read_genesis(path: &Path) -> Result<Genesis, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::Genesis {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    let g: Genesis = serde_json::from_str(&text).map_err(|e| Error::Genesis {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    g.validate().map_err(|e| Error::Genesis {
        path: path.display().to_string(),
        detail: e.to_string(),
    })?;
    Ok(g)
}

/// Of the certificates and registrations a peer carried, those that can prove one of `keys`:
/// the keys' certificates and, up their issuers, the certificates that support them, with the
/// registrations of the units those name and the units above. A peer chooses what it carries;
/// only this much of it is ever judged or kept.
fn chains_of(certs: &[Certificate], regs: &[Registration], keys: &[PublicKey]) -> Vec<TrustRecord> {
    let mut wanted: HashSet<PublicKey> = keys.iter().copied().collect();
    let mut taken = vec![false; certs.len()];
    loop {
        let mut grew = false;
        for (i, c) in certs.iter().enumerate() {
            if !taken[i] && wanted.contains(&c.body.subject) {
                taken[i] = true;
                grew |= wanted.insert(c.body.issuer);
            }
        }
        if !grew {
            break;
        }
    }
    let kept: Vec<&Certificate> = certs
        .iter()
        .zip(&taken)
        .filter_map(|(c, t)| t.then_some(c))
        .collect();
    let units: HashSet<&UnitId> = kept.iter().map(|c| &c.body.unit).collect();
    let named = |u: &UnitId| units.iter().any(|k| u.is_at_or_above(k));
    regs.iter()
        .filter(|r| named(&r.body.unit.id))
        .cloned()
        .map(TrustRecord::Registration)
        .chain(kept.into_iter().cloned().map(TrustRecord::Certificate))
        .collect()
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
    /// avoid — content refused under what this node knows now, budgets, our own disk — does
    /// not (a relay banned for those would cut honest nodes off from each other).
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
            SyncRefused::Storage("disk full".to_owned()),
        ];
        for e in &offences {
            assert!(e.is_offence(), "{e:?} should count against the sender");
        }
        for e in &relayed {
            assert!(!e.is_offence(), "{e:?} must not count against a relay");
        }
    }
}
