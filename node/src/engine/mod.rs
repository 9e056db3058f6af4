//! The engine: one node's documents, trust and approvals, kept durable in the store, changed only
//! through the model's checks. No network here: `net` feeds it peers' messages and sends what it
//! returns; `api` calls it for local work. Everything it acknowledges is flushed first.
//!
//! One struct, one `impl` per concern. This file opens a node and holds what every concern
//! shares; `read` answers questions, `edit` makes local changes durable, `trust` keeps
//! certificates, registrations and revocations (made here, learned from documents, carried by
//! peers), `attest` attestations, checkpoints and admission, and `sync` talks with peers within
//! their budgets.

mod attest;
mod edit;
mod read;
mod sync;
mod trust;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::Path;

use automerge::{ActorId, ChangeHash};
use linli_crdt_model::cert::{RecordError, RecordId, Role};
use linli_crdt_model::doc::{DocId, HeaderError, Scope};
use linli_crdt_model::document::{self, ChangeSignature, Context, Document, EditRefused};
use linli_crdt_model::genesis::Genesis;
use linli_crdt_model::keys::{PublicKey, SecretKey};
use linli_crdt_model::kinds::Kind;
use linli_crdt_model::trust::Trust;
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_crdt_model::wire;

use crate::config::{Config, ConfigError, Layout};
use crate::contract::{CreateDoc, OpError};
use crate::keystore::{self, KeyFileError, Keystore};
use crate::metrics::Metrics;
use crate::store::{self, Store};

pub use sync::{HELLO_RECORDS_MAX, SyncRefused, Synced};

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

/// The state of one node.
#[derive(Debug)]
pub struct Engine {
    layout: Layout,
    config: Config,
    unit: Unit,
    keys: Keystore,
    store: Store,
    trust: Trust,
    attestations: linli_crdt_model::attest::Index,
    docs: BTreeMap<DocId, Document>,
    n_incremental: HashMap<DocId, usize>,
    limits: document::Limits,
    wire_limits: wire::Limits,
    /// Per peer: the sync states held in memory, within its budgets, and the changes it
    /// brought that wait for a dependency.
    peers: HashMap<String, sync::PeerHeld>,
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
            attestations: linli_crdt_model::attest::Index::default(),
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

    pub fn genesis(&self) -> &Genesis {
        self.trust.genesis()
    }

    pub fn trust(&self) -> &Trust {
        &self.trust
    }

    pub fn attestations(&self) -> &linli_crdt_model::attest::Index {
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
