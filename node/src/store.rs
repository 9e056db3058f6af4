//! The node's durable store: everything a node must still know after a restart or a crash.
//!
//! The model (`linli_crdt_model`) never touches the disk; this module is where its values become
//! bytes in a [sled] database and come back. What it promises (DESIGN.md, Storage):
//!
//! - **An acknowledged write is durable.** Every method that stores something the node has
//!   accepted — headers, changes, compactions, registrations, certificates, revocations,
//!   attestations — flushes
//!   sled's log to disk (fsync) before it returns `Ok`. Sync states are the exception: they are
//!   an optimisation that a peer can rebuild, so they reach the disk with the next flush (sled's
//!   background flusher, or any acknowledged write).
//! - **No half-applied change.** An appended batch (its changes and their signatures) is written
//!   in one sled transaction across two trees, so after a crash either all of it is there or
//!   none. A compaction writes the new snapshot, the signatures of changes that went straight
//!   into it, and removes the incremental log in one transaction too.
//! - **A bad directory is an error, never a panic.** A directory sled cannot open, a record that
//!   does not decode, a store of another network, of a newer format or of an older one each
//!   give a typed
//!   [`Error`] that names the directory and says what to do.
//!
//! Layout: one sled database in the data directory, with these trees (`‖` is concatenation):
//!
//! | tree | key | value |
//! |---|---|---|
//! | `meta` | `format_version`, `network_id` | big-endian `u32`; the 32-byte network id |
//! | `headers` | doc id | postcard `SignedHeader` |
//! | `snapshots` | doc id | `Document::save()` bytes of the last compaction |
//! | `changes` | doc id ‖ big-endian `u64` seq | one appended batch: raw change chunks, concatenated |
//! | `signatures` | doc id ‖ big-endian `u64` seq | postcard `Vec<ChangeSignature>` (a pack) |
//! | `signatures` (format 1) | doc id ‖ change hash | postcard `ChangeSignature` |
//!
//! A pack holds the signatures of the batch logged under the same key, or of the changes a
//! compaction wrote straight into the snapshot (no log entry then).
//! | `registrations`, `certificates`, `revocations`, `attestations` | record id | the record's `encode()` |
//! | `sync_states` | peer ‖ 0 ‖ doc id | `automerge::sync::State::encode()` bytes |
//!
//! A document's bytes are its snapshot followed by its incremental changes in sequence order,
//! which is exactly what Automerge loads. Signatures survive compaction: every change in the
//! snapshot still needs its signature when a peer asks for it.
//!
//! Sequence numbers come from sled's id generator, which never hands out the same id twice,
//! crashes included; the write transaction still refuses a key in use in either tree, so a
//! generator fault would lose no acknowledged change.
//!
//! One record per batch rather than per change keeps a cold sync of a 3,000-change document at
//! a handful of records: [`Store::persist_new`] writes a batch that would fill the log straight
//! into a new snapshot.

use std::collections::HashMap;
use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use automerge::ChangeHash;
use linli_crdt_model::attest::Attestation;
use linli_crdt_model::cert::{Certificate, RecordId, Registration, Revocation};
use linli_crdt_model::doc::{DocId, SignedHeader};
use linli_crdt_model::document::{ChangeSignature, Document, Equivocation};
use linli_crdt_model::genesis::NetworkId;
use sled::Transactional;
use sled::transaction::{ConflictableTransactionError, TransactionError, TransactionalTree};

/// The on-disk format this build writes and reads. Bump it when the layout changes.
///
/// 2: a log entry may hold several change chunks, and signatures may be packed under a
/// sequence key (format 1 was a subset of it).
/// 3: the unit tree is signed data: a `registrations` tree, certificates that name a unit by id
/// only, revocations with a scope and a cutoff. Nothing of a format-2 store means the same in
/// format 3, so an older store is refused ([`Error::OlderFormat`]), never upgraded: the node is
/// provisioned again and syncs its documents from its peers.
/// 4: every change's actor begins with its author's key (`document::actor_for`), and an
/// `equivocations` tree keeps evidence. A format-3 store holds changes under random actors,
/// which no format-4 node takes from a peer, so it is refused the same way.
pub const FORMAT_VERSION: u32 = 4;
/// The oldest format this build opens.
const FORMAT_VERSION_MIN: u32 = 4;

const META_FORMAT_VERSION: &[u8] = b"format_version";
const META_NETWORK_ID: &[u8] = b"network_id";
/// How often an append retries with fresh sequence numbers if it finds one taken.
const APPEND_ATTEMPTS_MAX: usize = 4;

/// Why the store could not open, read or write.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "store at {} is corrupt: {detail}; restore the directory from a backup, or move it \
         aside and let the node fetch its documents from peers again",
        path.display()
    )]
    Corrupt { path: PathBuf, detail: String },
    #[error(
        "store at {} belongs to network {found}, but this node is configured for network \
         {expected}; use another data directory or the genesis of that network",
        path.display()
    )]
    ForeignNetwork {
        path: PathBuf,
        expected: String,
        found: String,
    },
    #[error(
        "store at {} has format version {found}, this build reads versions up to {supported}; \
         run a newer linli on it",
        path.display()
    )]
    NewerFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "store at {} has format version {found}: this store was written before the unit tree \
         became signed data and changes were bound to their authors' keys (format {supported}); \
         provision the node again \
         with `linli init`/`linli join` or `linli testnet` in a fresh data directory (or move \
         this one aside) and let it sync from its peers",
        path.display()
    )]
    OlderFormat {
        path: PathBuf,
        found: u32,
        supported: u32,
    },
    #[error(
        "store at {} is in use by another process; stop the other node using this data \
         directory, or give this one its own",
        path.display()
    )]
    Locked { path: PathBuf },
    #[error(
        "store at {}: {source}; check that the directory exists, is writable and that the disk \
         is not full",
        path.display()
    )]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store engine (sled) failed: {0}")]
    Sled(String),
}

/// How long [`Store::open`] waits for a lock that sled's background threads may still hold
/// after this process closed the store.
const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// What [`Store::persist_new`] did.
#[derive(Debug)]
pub struct Persisted {
    /// The document's incremental log length now (0 after a compaction).
    pub n_incremental: usize,
    /// The saved document, when the changes went into a new snapshot.
    pub snapshot: Option<Vec<u8>>,
}

/// A document as stored: what [`linli_crdt_model::document::Document::load`] takes.
#[derive(Debug)]
pub struct StoredDoc {
    pub header: SignedHeader,
    /// The last snapshot followed by the incremental change chunks appended since.
    pub bytes: Vec<u8>,
    pub signatures: Vec<ChangeSignature>,
    /// Changes in the incremental log; the node compacts when this grows.
    pub n_incremental: usize,
}

/// The durable store of one node, in one data directory. Cheap to share by reference: every
/// method takes `&self` and sled does its own locking.
pub struct Store {
    path: PathBuf,
    network: NetworkId,
    db: sled::Db,
    meta: sled::Tree,
    headers: sled::Tree,
    snapshots: sled::Tree,
    changes: sled::Tree,
    signatures: sled::Tree,
    certificates: sled::Tree,
    revocations: sled::Tree,
    registrations: sled::Tree,
    attestations: sled::Tree,
    sync_states: sled::Tree,
    /// Evidence of equivocations, under (document id, refused change hash).
    equivocations: sled::Tree,
}

impl fmt::Debug for Store {
    // sled's own Debug prints every record; the path and network say which store this is.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("network", &self.network)
            .finish_non_exhaustive()
    }
}

/// Why an append transaction gave up.
#[derive(Debug)]
enum AppendAbort {
    SequenceTaken,
}

impl Store {
    /// Open or create the store in `dir` (a directory; create it). A new store records
    /// [`FORMAT_VERSION`] and `network`; an existing one must match both, else the typed error.
    /// Never panics on any directory content.
    pub fn open(dir: &Path, network: NetworkId) -> Result<Store, Error> {
        let path = dir.to_path_buf();
        std::fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let existed = holds_sled_files(dir).map_err(|source| Error::Io {
            path: path.clone(),
            source,
        })?;
        let config = sled::Config::new().path(dir);
        // A store this process just dropped can stay locked for a moment: sled's background
        // threads release their handles to the file after the `Db` is gone. Another process
        // holding it is still reported, after the wait.
        let deadline = std::time::Instant::now() + LOCK_WAIT;
        let db = loop {
            // sled 0.34 panics on some malformed files instead of returning an error; a data
            // directory is outside input, so a panic there is reported as corruption.
            match panic::catch_unwind(AssertUnwindSafe(|| config.open())) {
                Ok(Ok(db)) => break db,
                Ok(Err(e)) => match open_error(&path, e) {
                    Error::Locked { .. } if std::time::Instant::now() < deadline => {
                        std::thread::sleep(std::time::Duration::from_millis(20));
                    }
                    e => return Err(e),
                },
                Err(panic) => {
                    return Err(Error::Corrupt {
                        path,
                        detail: format!("sled panicked while opening: {}", panic_message(&panic)),
                    });
                }
            }
        };
        let tree = |name: &str| db.open_tree(name).map_err(|e| open_error(&path, e));
        let store = Store {
            meta: tree("meta")?,
            headers: tree("headers")?,
            snapshots: tree("snapshots")?,
            changes: tree("changes")?,
            signatures: tree("signatures")?,
            certificates: tree("certificates")?,
            revocations: tree("revocations")?,
            registrations: tree("registrations")?,
            attestations: tree("attestations")?,
            sync_states: tree("sync_states")?,
            equivocations: tree("equivocations")?,
            db,
            network,
            path,
        };
        store.check_meta(existed)?;
        Ok(store)
    }

    /// Check the format version and network of an existing store, or record them in a new one.
    /// `existed`: sled's files were in the directory before this open.
    fn check_meta(&self, existed: bool) -> Result<(), Error> {
        let version = self
            .meta
            .get(META_FORMAT_VERSION)
            .map_err(|e| self.sled(e))?;
        let network = self.meta.get(META_NETWORK_ID).map_err(|e| self.sled(e))?;
        match (version, network) {
            (None, None) => {
                // sled reads a damaged log as ending early, so a database whose files were
                // garbage opens as an empty one. Every store records its metadata right after
                // creation, so missing metadata in existing files means damage (or a creation
                // killed in its first milliseconds, before any data was written).
                if existed || !self.is_empty()? {
                    return Err(self.corrupt(
                        "meta",
                        META_FORMAT_VERSION,
                        "missing from existing database files: they are damaged or not a \
                         linli store (if this directory never held data, delete it)",
                    ));
                }
                let version = FORMAT_VERSION.to_be_bytes();
                let network = self.network.0;
                self.meta
                    .transaction(|meta| {
                        meta.insert(META_FORMAT_VERSION, &version[..])?;
                        meta.insert(META_NETWORK_ID, &network[..])?;
                        Ok::<_, ConflictableTransactionError<()>>(())
                    })
                    .map_err(|e| self.transaction(e))?;
                self.flush()
            }
            (None, Some(_)) => Err(self.corrupt("meta", META_FORMAT_VERSION, "missing")),
            (Some(version), network) => {
                let found = <[u8; 4]>::try_from(&version[..])
                    .map(u32::from_be_bytes)
                    .map_err(|_| {
                        self.corrupt(
                            "meta",
                            META_FORMAT_VERSION,
                            format!("{} bytes, expected 4", version.len()),
                        )
                    })?;
                // Checked before the network: a newer format may keep the network elsewhere.
                if found > FORMAT_VERSION {
                    return Err(Error::NewerFormat {
                        path: self.path.clone(),
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                if found == 0 {
                    return Err(self.corrupt(
                        "meta",
                        META_FORMAT_VERSION,
                        format!("version {found} was never written by linli"),
                    ));
                }
                if found < FORMAT_VERSION_MIN {
                    return Err(Error::OlderFormat {
                        path: self.path.clone(),
                        found,
                        supported: FORMAT_VERSION,
                    });
                }
                let network =
                    network.ok_or_else(|| self.corrupt("meta", META_NETWORK_ID, "missing"))?;
                let found = <[u8; 32]>::try_from(&network[..])
                    .map(NetworkId)
                    .map_err(|_| {
                        self.corrupt(
                            "meta",
                            META_NETWORK_ID,
                            format!("{} bytes, expected 32", network.len()),
                        )
                    })?;
                if found != self.network {
                    return Err(Error::ForeignNetwork {
                        path: self.path.clone(),
                        expected: self.network.to_string(),
                        found: found.to_string(),
                    });
                }
                Ok(())
            }
        }
    }

    fn is_empty(&self) -> Result<bool, Error> {
        for tree in [
            &self.headers,
            &self.snapshots,
            &self.changes,
            &self.signatures,
            &self.certificates,
            &self.revocations,
            &self.registrations,
            &self.attestations,
            &self.sync_states,
        ] {
            if tree.first().map_err(|e| self.sled(e))?.is_some() {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// The data directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Store a document's header. Durable on return.
    pub fn put_header(&self, header: &SignedHeader) -> Result<(), Error> {
        let bytes = postcard::to_allocvec(header).expect("postcard encoding of a plain struct");
        self.headers
            .insert(header.id().0, bytes)
            .map_err(|e| self.sled(e))?;
        self.flush()
    }

    /// Append changes (raw Automerge change bytes as from `automerge::Change::raw_bytes()`,
    /// each with its signature) to a document's incremental log, atomically (all or none) and
    /// durably (flushed/fsynced) before returning. The whole call is one log entry (the change
    /// chunks concatenated) and one signature pack under the same sequence number, so a batch of
    /// a thousand changes costs two sled records and one fsync, not two thousand records.
    pub fn append_changes(
        &self,
        doc: &DocId,
        changes: &[(Vec<u8>, ChangeSignature)],
    ) -> Result<(), Error> {
        if changes.is_empty() {
            return Ok(());
        }
        let mut chunks = Vec::with_capacity(changes.iter().map(|(b, _)| b.len()).sum());
        for (bytes, _) in changes {
            chunks.extend_from_slice(bytes);
        }
        let pack = encode_pack(changes.iter().map(|(_, sig)| sig));
        self.write_seq(doc, |tx_changes, tx_sigs, _, key| {
            tx_changes.insert(&key[..], chunks.as_slice())?;
            tx_sigs.insert(&key[..], pack.as_slice())?;
            Ok(())
        })
    }

    /// Replace the document's snapshot with `snapshot` (`Document::save()`) and drop its
    /// incremental log, atomically. Durable on return.
    ///
    /// The snapshot must hold every change appended before this call: the caller serialises
    /// compaction with appends to the same document. Changes appended while this runs are kept.
    pub fn compact(&self, doc: &DocId, snapshot: &[u8]) -> Result<(), Error> {
        self.compact_with(doc, snapshot, &[])
    }

    /// [`Store::compact`], also storing `signatures`: those of changes in `snapshot` that were
    /// never appended (a batch written straight into the snapshot instead of appended and then
    /// compacted). Snapshot, signatures and the removal of the log are one transaction, so after
    /// a crash either the new snapshot has every signature or the old state is untouched.
    pub fn compact_with(
        &self,
        doc: &DocId,
        snapshot: &[u8],
        signatures: &[ChangeSignature],
    ) -> Result<(), Error> {
        let logged = self
            .changes
            .scan_prefix(doc.0)
            .keys()
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| self.sled(e))?;
        let pack = (!signatures.is_empty()).then(|| encode_pack(signatures));
        self.write_seq(doc, |tx_changes, tx_sigs, tx_snapshots, key| {
            tx_snapshots.insert(&doc.0[..], snapshot)?;
            for logged in &logged {
                tx_changes.remove(logged)?;
            }
            if let Some(pack) = &pack {
                tx_sigs.insert(&key[..], pack.as_slice())?;
            }
            Ok(())
        })
    }

    /// Persist the changes `new` of `doc` (just applied to it, each with its signature in it)
    /// the cheap way, durably before returning. `n_incremental` is the document's incremental
    /// log length before; `compact_after` the node's `compact_after_changes`. If the log would
    /// reach `compact_after`, the document is saved and written as the snapshot together with
    /// the new signatures, in one transaction, instead of appending changes only to delete them
    /// again — which is what a cold sync of a whole document does. The returned
    /// [`Persisted::snapshot`] is those saved bytes, for a caller that wants to reload the
    /// document from them.
    pub fn persist_new(
        &self,
        doc: &mut Document,
        new: &[ChangeHash],
        n_incremental: usize,
        compact_after: usize,
    ) -> Result<Persisted, Error> {
        if new.is_empty() {
            return Ok(Persisted {
                n_incremental,
                snapshot: None,
            });
        }
        let id = doc.id();
        let signature = |doc: &Document, h: &ChangeHash| {
            doc.signature(h).cloned().ok_or_else(|| {
                self.corrupt(
                    "signatures",
                    &key2(&id.0, &h.0),
                    "a change to persist has no signature in its document",
                )
            })
        };
        if n_incremental + new.len() >= compact_after {
            let signatures = new
                .iter()
                .map(|h| signature(doc, h))
                .collect::<Result<Vec<_>, _>>()?;
            let snapshot = doc.save();
            self.compact_with(&id, &snapshot, &signatures)?;
            return Ok(Persisted {
                n_incremental: 0,
                snapshot: Some(snapshot),
            });
        }
        let mut batch = Vec::with_capacity(new.len());
        for h in new {
            let sig = signature(doc, h)?;
            let bytes = doc.change_bytes(h).ok_or_else(|| {
                self.corrupt(
                    "changes",
                    &key2(&id.0, &h.0),
                    "a change to persist is not in its document",
                )
            })?;
            batch.push((bytes, sig));
        }
        self.append_changes(&id, &batch)?;
        Ok(Persisted {
            n_incremental: n_incremental + new.len(),
            snapshot: None,
        })
    }

    /// Run `write` in one transaction over the changes, signatures and snapshots trees with a
    /// fresh sequence key (doc id ‖ u64) that is in use in neither the log nor the signatures,
    /// then flush. Durable on return.
    fn write_seq(
        &self,
        doc: &DocId,
        write: impl Fn(
            &TransactionalTree,
            &TransactionalTree,
            &TransactionalTree,
            &[u8; 40],
        ) -> Result<(), ConflictableTransactionError<AppendAbort>>,
    ) -> Result<(), Error> {
        for _ in 0..APPEND_ATTEMPTS_MAX {
            // The id is drawn outside the transaction closure, which sled may run more than once.
            let key = change_key(doc, self.db.generate_id().map_err(|e| self.sled(e))?);
            let result = (&self.changes, &self.signatures, &self.snapshots).transaction(
                |(tx_changes, tx_sigs, tx_snapshots)| {
                    if tx_changes.get(key)?.is_some() || tx_sigs.get(key)?.is_some() {
                        return Err(ConflictableTransactionError::Abort(
                            AppendAbort::SequenceTaken,
                        ));
                    }
                    write(tx_changes, tx_sigs, tx_snapshots, &key)
                },
            );
            match result {
                Ok(()) => return self.flush(),
                Err(TransactionError::Abort(AppendAbort::SequenceTaken)) => continue,
                Err(TransactionError::Storage(e)) => return Err(self.sled(e)),
            }
        }
        Err(self.corrupt(
            "changes",
            &doc.0,
            "the sequence generator keeps returning numbers already in use",
        ))
    }

    /// Every document with a header, in id order. Changes or snapshots without a header (none
    /// are written that way) are ignored.
    pub fn load_docs(&self) -> Result<Vec<StoredDoc>, Error> {
        let mut out = Vec::new();
        for entry in self.headers.iter() {
            let (key, value) = entry.map_err(|e| self.sled(e))?;
            let id = self.doc_id("headers", &key)?;
            out.push(self.read_doc(&id, &value)?);
        }
        Ok(out)
    }

    /// One document, if its header is stored.
    pub fn load_doc(&self, doc: &DocId) -> Result<Option<StoredDoc>, Error> {
        match self.headers.get(doc.0).map_err(|e| self.sled(e))? {
            Some(value) => Ok(Some(self.read_doc(doc, &value)?)),
            None => Ok(None),
        }
    }

    fn read_doc(&self, doc: &DocId, header_bytes: &[u8]) -> Result<StoredDoc, Error> {
        let header: SignedHeader =
            postcard::from_bytes(header_bytes).map_err(|e| self.corrupt("headers", &doc.0, e))?;
        if header.id() != *doc {
            return Err(self.corrupt("headers", &doc.0, "the header hashes to another id"));
        }
        // Read the log, then the snapshot, then the signatures. A compaction between the first
        // two reads gives a snapshot that already holds the logged changes (Automerge ignores
        // the duplicates); an append gives a signature more than needed. Either way every
        // change read has its signature and nothing acknowledged is missed, without a lock.
        let mut changes = Vec::new();
        for entry in self.changes.scan_prefix(doc.0) {
            let (key, value) = entry.map_err(|e| self.sled(e))?;
            if key.len() != 40 {
                return Err(self.corrupt("changes", &key, "key is not doc id ‖ u64 sequence"));
            }
            changes.push((key, value));
        }
        let snapshot = self.snapshots.get(doc.0).map_err(|e| self.sled(e))?;
        let mut signatures = Vec::new();
        // Changes per signature pack, by sequence key: a log entry holds as many changes as the
        // pack under its key (format 1 wrote one change per entry and no packs).
        let mut packs = HashMap::new();
        for entry in self.signatures.scan_prefix(doc.0) {
            let (key, value) = entry.map_err(|e| self.sled(e))?;
            match key.len() {
                40 => {
                    let pack: Vec<ChangeSignature> = postcard::from_bytes(&value)
                        .map_err(|e| self.corrupt("signatures", &key, e))?;
                    packs.insert(key, pack.len());
                    signatures.extend(pack);
                }
                64 => {
                    let sig: ChangeSignature = postcard::from_bytes(&value)
                        .map_err(|e| self.corrupt("signatures", &key, e))?;
                    if key[32..] != sig.hash {
                        return Err(self.corrupt(
                            "signatures",
                            &key,
                            "key is not doc id ‖ change hash",
                        ));
                    }
                    signatures.push(sig);
                }
                _ => {
                    return Err(self.corrupt(
                        "signatures",
                        &key,
                        "key is neither doc id ‖ change hash nor doc id ‖ u64 sequence",
                    ));
                }
            }
        }
        let n_incremental = changes
            .iter()
            .map(|(key, _)| packs.get(key).copied().unwrap_or(1))
            .sum();
        let snapshot_len = snapshot.as_ref().map_or(0, |s| s.len());
        let mut bytes =
            Vec::with_capacity(snapshot_len + changes.iter().map(|(_, c)| c.len()).sum::<usize>());
        if let Some(snapshot) = &snapshot {
            bytes.extend_from_slice(snapshot);
        }
        for (_, chunks) in &changes {
            bytes.extend_from_slice(chunks);
        }
        Ok(StoredDoc {
            header,
            bytes,
            signatures,
            n_incremental,
        })
    }

    /// Store a certificate under its id. Durable on return. Store only checked certificates:
    /// reading them back checks them again.
    pub fn put_certificate(&self, cert: &Certificate) -> Result<(), Error> {
        self.put_record(&self.certificates, cert.id(), cert.encode())
    }

    /// Store a revocation under its id. Durable on return.
    pub fn put_revocation(&self, rev: &Revocation) -> Result<(), Error> {
        self.put_record(&self.revocations, rev.id(), rev.encode())
    }

    /// Store a registration under its id. Durable on return.
    pub fn put_registration(&self, reg: &Registration) -> Result<(), Error> {
        self.put_record(&self.registrations, reg.id(), reg.encode())
    }

    /// Store an attestation under its id. Durable on return.
    pub fn put_attestation(&self, att: &Attestation) -> Result<(), Error> {
        self.put_record(&self.attestations, att.id(), att.encode())
    }

    /// Keep evidence of equivocations: the first pair for each (document, actor, number) only,
    /// since one pair proves the author's fault (an author signing a thousand variants of one
    /// number must not make the node keep a thousand records). One flush for all.
    pub fn put_equivocations(&self, evidence: &[Equivocation]) -> Result<(), Error> {
        if evidence.is_empty() {
            return Ok(());
        }
        for e in evidence {
            let Ok(refused) = automerge::Change::from_bytes(e.refused_change.clone()) else {
                continue;
            };
            let mut key = e.doc.0.to_vec();
            key.extend_from_slice(refused.actor_id().to_bytes());
            key.extend_from_slice(&e.seq.to_be_bytes());
            let bytes = postcard::to_allocvec(e).expect("postcard encoding of a plain struct");
            self.equivocations
                .compare_and_swap(key, None as Option<&[u8]>, Some(bytes))
                .map_err(|err| self.sled(err))?
                .ok();
        }
        self.flush()
    }

    /// The evidence of equivocations kept for one document.
    pub fn equivocations(&self, doc: &DocId) -> Result<Vec<Equivocation>, Error> {
        self.equivocations
            .scan_prefix(doc.0)
            .map(|kv| {
                let (key, bytes) = kv.map_err(|e| self.sled(e))?;
                postcard::from_bytes(&bytes)
                    .map_err(|e| self.corrupt("equivocations", &key, e.to_string()))
            })
            .collect()
    }

    fn put_record(&self, tree: &sled::Tree, id: RecordId, bytes: Vec<u8>) -> Result<(), Error> {
        tree.insert(id.0, bytes).map_err(|e| self.sled(e))?;
        self.flush()
    }

    pub fn certificates(&self) -> Result<Vec<Certificate>, Error> {
        self.records("certificates", &self.certificates, |bytes| {
            let cert = Certificate::decode(bytes, &self.network).map_err(|e| e.to_string())?;
            Ok((cert.id(), cert))
        })
    }

    pub fn revocations(&self) -> Result<Vec<Revocation>, Error> {
        self.records("revocations", &self.revocations, |bytes| {
            let rev = Revocation::decode(bytes, &self.network).map_err(|e| e.to_string())?;
            Ok((rev.id(), rev))
        })
    }

    pub fn registrations(&self) -> Result<Vec<Registration>, Error> {
        self.records("registrations", &self.registrations, |bytes| {
            let reg = Registration::decode(bytes, &self.network).map_err(|e| e.to_string())?;
            Ok((reg.id(), reg))
        })
    }

    pub fn attestations(&self) -> Result<Vec<Attestation>, Error> {
        self.records("attestations", &self.attestations, |bytes| {
            let att = Attestation::decode(bytes).map_err(|e| e.to_string())?;
            Ok((att.id(), att))
        })
    }

    /// Decode every record of a tree, checking that each is stored under its own id.
    fn records<T>(
        &self,
        name: &str,
        tree: &sled::Tree,
        decode: impl Fn(&[u8]) -> Result<(RecordId, T), String>,
    ) -> Result<Vec<T>, Error> {
        let mut out = Vec::new();
        for entry in tree.iter() {
            let (key, value) = entry.map_err(|e| self.sled(e))?;
            let (id, record) = decode(&value).map_err(|e| self.corrupt(name, &key, e))?;
            if key[..] != id.0 {
                return Err(self.corrupt(name, &key, format!("record has id {id}")));
            }
            out.push(record);
        }
        Ok(out)
    }

    /// Per-peer, per-document Automerge sync state (`automerge::sync::State::encode()` bytes).
    /// Not flushed: a lost sync state costs one longer sync round, not data.
    pub fn put_sync_state(&self, peer: &str, doc: &DocId, state: &[u8]) -> Result<(), Error> {
        self.sync_states
            .insert(sync_state_key(peer, doc), state)
            .map_err(|e| self.sled(e))?;
        Ok(())
    }

    pub fn sync_state(&self, peer: &str, doc: &DocId) -> Result<Option<Vec<u8>>, Error> {
        let state = self
            .sync_states
            .get(sync_state_key(peer, doc))
            .map_err(|e| self.sled(e))?;
        Ok(state.map(|s| s.to_vec()))
    }

    /// Bytes the database occupies on disk, for metrics.
    pub fn size_on_disk(&self) -> Result<u64, Error> {
        self.db.size_on_disk().map_err(|e| self.sled(e))
    }

    /// Write everything buffered to disk and fsync.
    pub fn flush(&self) -> Result<(), Error> {
        self.db.flush().map_err(|e| self.sled(e))?;
        Ok(())
    }

    fn doc_id(&self, tree: &str, key: &[u8]) -> Result<DocId, Error> {
        <[u8; 32]>::try_from(key)
            .map(DocId)
            .map_err(|_| self.corrupt(tree, key, "key is not a 32-byte document id"))
    }

    fn corrupt(&self, tree: &str, key: &[u8], detail: impl fmt::Display) -> Error {
        Error::Corrupt {
            path: self.path.clone(),
            detail: format!("tree `{tree}`, key {}: {detail}", printable_key(key)),
        }
    }

    fn sled(&self, e: sled::Error) -> Error {
        match e {
            sled::Error::Io(source) => Error::Io {
                path: self.path.clone(),
                source,
            },
            sled::Error::Corruption { at, .. } => Error::Corrupt {
                path: self.path.clone(),
                detail: format!("sled found a corrupt log entry at {at:?}"),
            },
            e => Error::Sled(format!("{}: {e}", self.path.display())),
        }
    }

    fn transaction(&self, e: TransactionError<()>) -> Error {
        match e {
            TransactionError::Storage(e) => self.sled(e),
            TransactionError::Abort(()) => Error::Sled("transaction aborted".to_owned()),
        }
    }
}

/// Map an error from opening sled: at this point anything but I/O means the files are not a
/// database this build can read.
fn open_error(path: &Path, e: sled::Error) -> Error {
    let path = path.to_path_buf();
    match e {
        // sled reports its failed `flock` as a plain I/O error with this message.
        sled::Error::Io(source) if source.to_string().contains("could not acquire lock") => {
            Error::Locked { path }
        }
        sled::Error::Io(source) if source.kind() == std::io::ErrorKind::InvalidData => {
            Error::Corrupt {
                path,
                detail: source.to_string(),
            }
        }
        sled::Error::Io(source) => Error::Io { path, source },
        sled::Error::Corruption { at, .. } => Error::Corrupt {
            path,
            detail: format!("sled found a corrupt log entry at {at:?}"),
        },
        e => Error::Corrupt {
            path,
            detail: format!("sled cannot open it: {e}"),
        },
    }
}

/// Are sled's files (`conf`, a non-empty `db`, a snapshot) already in `dir`?
fn holds_sled_files(dir: &Path) -> std::io::Result<bool> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let present = match &*name {
            "conf" => true,
            "db" => entry.metadata()?.len() > 0,
            _ => name.starts_with("snap."),
        };
        if present {
            return Ok(true);
        }
    }
    Ok(false)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "(no message)".to_owned()
    }
}

fn encode_pack<'a>(signatures: impl IntoIterator<Item = &'a ChangeSignature>) -> Vec<u8> {
    let pack: Vec<&ChangeSignature> = signatures.into_iter().collect();
    postcard::to_allocvec(&pack).expect("postcard encoding of plain structs")
}

fn change_key(doc: &DocId, seq: u64) -> [u8; 40] {
    let mut key = [0; 40];
    key[..32].copy_from_slice(&doc.0);
    key[32..].copy_from_slice(&seq.to_be_bytes());
    key
}

fn key2(a: &[u8; 32], b: &[u8; 32]) -> [u8; 64] {
    let mut key = [0; 64];
    key[..32].copy_from_slice(a);
    key[32..].copy_from_slice(b);
    key
}

fn sync_state_key(peer: &str, doc: &DocId) -> Vec<u8> {
    let mut key = Vec::with_capacity(peer.len() + 33);
    key.extend_from_slice(peer.as_bytes());
    key.push(0);
    key.extend_from_slice(&doc.0);
    key
}

/// Keys are mostly binary ids; meta keys are words.
fn printable_key(key: &[u8]) -> String {
    match std::str::from_utf8(key) {
        Ok(s) if s.chars().all(|c| c.is_ascii_graphic()) => s.to_owned(),
        _ => hex::encode(key),
    }
}

#[cfg(test)]
mod tests {
    use automerge::ChangeHash;
    use linli_crdt_model::attest::{AttestationBody, Statement};
    use linli_crdt_model::cert::{RevocationBody, Role};
    use linli_crdt_model::document::Document;
    use linli_crdt_model::kinds::visits;
    use linli_crdt_model::testkit::{self, Net, T0};

    use super::*;

    fn open(dir: &Path, net: &Net) -> Store {
        Store::open(dir, net.trust.network()).expect("open store")
    }

    /// Every change of `doc` after `heads`, as the engine hands them to the store.
    fn changes_after(doc: &mut Document, heads: &[ChangeHash]) -> Vec<(Vec<u8>, ChangeSignature)> {
        let mut at = doc.at(heads).expect("fork at heads");
        let known: Vec<ChangeHash> = at.get_changes(&[]).iter().map(|c| c.hash()).collect();
        doc.changes()
            .into_iter()
            .filter(|c| !known.contains(&c.hash()))
            .map(|c| {
                let sig = doc.signature(&c.hash()).expect("signed change").clone();
                (c.raw_bytes().to_vec(), sig)
            })
            .collect()
    }

    fn add_visit(net: &Net, doc: &mut Document, id: &str, at_ms: i64) -> ChangeSignature {
        let entry = testkit::visit("h1", "王芳", "2026-11-02", at_ms);
        doc.edit(&net.ctx(at_ms), &net.c_wang, at_ms, Some("visit"), |tx| {
            visits::add_entry(tx, id, &entry)
        })
        .expect("edit")
        .1
    }

    fn load(stored: StoredDoc) -> Document {
        Document::load(
            stored.header,
            &stored.bytes,
            stored.signatures,
            testkit::actor(9),
        )
        .expect("stored document loads")
    }

    /// Heads, hydrated log and signature set must all survive the store.
    fn assert_same(stored: &mut Document, original: &mut Document) {
        let mut heads = stored.heads();
        let mut expected = original.heads();
        heads.sort();
        expected.sort();
        assert_eq!(heads, expected);
        assert_eq!(
            visits::hydrate(stored.read()).expect("hydrate stored"),
            visits::hydrate(original.read()).expect("hydrate original")
        );
        for change in stored.changes() {
            assert_eq!(
                stored.signature(&change.hash()),
                original.signature(&change.hash()),
                "signature of {}",
                change.hash()
            );
        }
        assert_eq!(stored.n_changes(), original.n_changes());
    }

    #[test]
    fn appended_changes_load_with_same_heads_and_state() {
        let dir = tempfile::tempdir().unwrap();
        let net = Net::new();
        let (mut doc, _) = net.visit_log().unwrap();
        let store = open(dir.path(), &net);
        store.put_header(doc.header()).unwrap();
        store
            .append_changes(&doc.id(), &changes_after(&mut doc, &[]))
            .unwrap();
        let heads = doc.heads();
        add_visit(&net, &mut doc, "v1", T0 + 10);
        add_visit(&net, &mut doc, "v2", T0 + 20);
        store
            .append_changes(&doc.id(), &changes_after(&mut doc, &heads))
            .unwrap();

        let stored = store.load_doc(&doc.id()).unwrap().expect("doc is stored");
        assert_eq!(stored.n_incremental, 4);
        assert_eq!(stored.header, *doc.header());
        let mut loaded = load(stored);
        assert_same(&mut loaded, &mut doc);
        assert_eq!(visits::hydrate(loaded.read()).unwrap().entries.len(), 2);
    }

    #[test]
    fn compact_then_append_then_load() {
        let dir = tempfile::tempdir().unwrap();
        let net = Net::new();
        let (mut doc, _) = net.visit_log().unwrap();
        let store = open(dir.path(), &net);
        store.put_header(doc.header()).unwrap();
        store
            .append_changes(&doc.id(), &changes_after(&mut doc, &[]))
            .unwrap();
        add_visit(&net, &mut doc, "v1", T0 + 10);
        store.compact(&doc.id(), &doc.save()).unwrap();
        let after_compaction = store.load_doc(&doc.id()).unwrap().unwrap();
        assert_eq!(after_compaction.n_incremental, 0);
        assert_eq!(
            after_compaction.signatures.len(),
            2,
            "the edit was never appended"
        );

        let heads = doc.heads();
        let sig = add_visit(&net, &mut doc, "v2", T0 + 20);
        let changes = changes_after(&mut doc, &heads);
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].1, sig);
        store.append_changes(&doc.id(), &changes).unwrap();
        // The signature of v1's change was only in memory: store it as the engine would.
        let v1 = changes_after(&mut doc, &[])
            .into_iter()
            .find(|(_, s)| s.author == net.c_wang.public() && s != &sig)
            .unwrap();
        store.append_changes(&doc.id(), &[v1]).unwrap();

        let stored = store.load_doc(&doc.id()).unwrap().unwrap();
        assert_eq!(stored.n_incremental, 2);
        let mut loaded = load(stored);
        assert_same(&mut loaded, &mut doc);
    }

    #[test]
    fn a_batch_that_fills_the_log_goes_straight_into_a_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let net = Net::new();
        let (mut doc, _) = net.visit_log().unwrap();
        let store = open(dir.path(), &net);
        store.put_header(doc.header()).unwrap();
        let first: Vec<ChangeHash> = doc.changes().iter().map(|c| c.hash()).collect();
        let done = store.persist_new(&mut doc, &first, 0, 4).unwrap();
        assert_eq!(done.n_incremental, first.len());
        assert!(done.snapshot.is_none());

        // Three more changes reach the threshold of 4 together with the logged ones.
        let heads = doc.heads();
        for (i, at) in [10, 20, 30].into_iter().enumerate() {
            add_visit(&net, &mut doc, &format!("v{i}"), T0 + at);
        }
        let new: Vec<ChangeHash> = changes_after(&mut doc, &heads)
            .iter()
            .map(|(_, sig)| ChangeHash(sig.hash))
            .collect();
        assert_eq!(new.len(), 3);
        let done = store.persist_new(&mut doc, &new, first.len(), 4).unwrap();
        assert_eq!(done.n_incremental, 0);
        assert_eq!(done.snapshot.as_deref(), Some(&doc.save()[..]));
        assert!(
            store.changes.scan_prefix(doc.id().0).next().is_none(),
            "the log is empty after the snapshot"
        );

        // One signature record per batch, not per change.
        assert_eq!(store.signatures.scan_prefix(doc.id().0).count(), 2);
        drop(store);
        let store = open(dir.path(), &net);
        let stored = store.load_doc(&doc.id()).unwrap().unwrap();
        assert_eq!(stored.n_incremental, 0);
        assert_eq!(stored.signatures.len(), first.len() + 3);
        let mut loaded = load(stored);
        assert_same(&mut loaded, &mut doc);

        // A later small batch is one log entry again, counted by its changes.
        let heads = doc.heads();
        add_visit(&net, &mut doc, "v9", T0 + 40);
        let new: Vec<ChangeHash> = changes_after(&mut doc, &heads)
            .iter()
            .map(|(_, sig)| ChangeHash(sig.hash))
            .collect();
        assert_eq!(
            store
                .persist_new(&mut doc, &new, 0, 4)
                .unwrap()
                .n_incremental,
            1
        );
        let mut loaded = load(store.load_doc(&doc.id()).unwrap().unwrap());
        assert_same(&mut loaded, &mut doc);
    }

    #[test]
    fn persist_refuses_a_change_without_signature_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let net = Net::new();
        let (mut doc, _) = net.visit_log().unwrap();
        let store = open(dir.path(), &net);
        store.put_header(doc.header()).unwrap();
        for threshold in [100, 1] {
            let err = store
                .persist_new(&mut doc, &[ChangeHash([3; 32])], 0, threshold)
                .unwrap_err();
            assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        }
        assert!(store.changes.first().unwrap().is_none());
        assert!(store.signatures.first().unwrap().is_none());
        assert!(store.snapshots.first().unwrap().is_none());
    }

    #[test]
    fn an_older_store_is_refused_with_what_to_do() {
        for old in [1u32, 2, 3] {
            let dir = tempfile::tempdir().unwrap();
            let net = Net::new();
            let (mut doc, _) = net.visit_log().unwrap();
            {
                // What a format-1 or format-2 build left behind: its version and a document.
                let store = open(dir.path(), &net);
                store
                    .meta
                    .insert(META_FORMAT_VERSION, &old.to_be_bytes())
                    .unwrap();
                store.put_header(doc.header()).unwrap();
                store
                    .append_changes(&doc.id(), &changes_after(&mut doc, &[]))
                    .unwrap();
                store.flush().unwrap();
            }
            let err = Store::open(dir.path(), net.trust.network()).unwrap_err();
            match &err {
                Error::OlderFormat {
                    path,
                    found,
                    supported,
                } => {
                    assert_eq!(path, dir.path());
                    assert_eq!(*found, old);
                    assert_eq!(*supported, FORMAT_VERSION);
                }
                other => panic!("format {old}: expected OlderFormat, got {other:?}"),
            }
            let msg = err.to_string();
            assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
            assert!(msg.contains("unit tree"), "{msg}");
            assert!(msg.contains("linli init"), "{msg}");
            assert!(msg.contains("linli testnet"), "{msg}");
            // Refused, not upgraded: the version on disk is untouched.
            let store = sled::open(dir.path()).unwrap();
            assert_eq!(
                store
                    .open_tree("meta")
                    .unwrap()
                    .get(META_FORMAT_VERSION)
                    .unwrap()
                    .as_deref(),
                Some(&old.to_be_bytes()[..])
            );
        }
    }

    #[test]
    fn a_document_reloaded_after_its_snapshot_is_the_same_and_takes_edits() {
        let dir = tempfile::tempdir().unwrap();
        let net = Net::new();
        let (mut doc, _) = net.visit_log().unwrap();
        let store = open(dir.path(), &net);
        store.put_header(doc.header()).unwrap();
        let mut original = doc.clone();
        let all: Vec<ChangeHash> = doc.changes().iter().map(|c| c.hash()).collect();
        let n = crate::engine::persist_applied(&store, &mut doc, &all, 0, all.len()).unwrap();
        assert_eq!(n, 0);
        assert_same(&mut doc, &mut original);
        // The reloaded document takes edits, and they persist as usual.
        let heads = doc.heads();
        add_visit(&net, &mut doc, "v1", T0 + 10);
        let new: Vec<ChangeHash> = changes_after(&mut doc, &heads)
            .iter()
            .map(|(_, sig)| ChangeHash(sig.hash))
            .collect();
        assert_eq!(
            crate::engine::persist_applied(&store, &mut doc, &new, 0, 512).unwrap(),
            1
        );
        let mut loaded = load(store.load_doc(&doc.id()).unwrap().unwrap());
        assert_same(&mut loaded, &mut doc);
        assert_eq!(visits::hydrate(loaded.read()).unwrap().entries.len(), 1);
    }

    #[test]
    fn everything_survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let net = Net::new();
        let (mut doc, _) = net.visit_log().unwrap();
        let network = net.trust.network();
        let cert = testkit::cert(
            &net.trust,
            &net.c_admin,
            &testkit::key(99),
            &net.shengli,
            Role::Writer,
            "张伟",
        );
        let rev = Revocation::issue(
            RevocationBody {
                network,
                key: net.c_li.public(),
                issuer: net.c_admin.public(),
                unit: net.shengli.id.clone(),
                at_ms: T0 + 5,
                cutoff_ms: T0 + 4,
                reason: "调离".to_owned(),
                keep_issued: true,
            },
            &net.c_admin,
        );
        let mut heads: Vec<[u8; 32]> = doc.heads().iter().map(|h| h.0).collect();
        heads.sort();
        let att = Attestation::issue(
            AttestationBody {
                network,
                issuer: net.d_reviewer.public(),
                statement: Statement::Reviewed,
                doc: doc.id(),
                doc_unit: net.shengli.id.clone(),
                heads,
                subject: Some("r1".to_owned()),
                targets: vec![net.shengli.id.clone()],
                at_ms: T0 + 6,
                note: "同意".to_owned(),
                checkpoint: vec![],
            },
            &net.d_reviewer,
        );
        let reg = testkit::register(&net.trust, &net.s_admin, &net.qianjin);
        let peer = "12D3KooWfixturepeer";
        {
            let store = open(dir.path(), &net);
            store.put_header(doc.header()).unwrap();
            store
                .append_changes(&doc.id(), &changes_after(&mut doc, &[]))
                .unwrap();
            store.put_certificate(&cert).unwrap();
            store.put_revocation(&rev).unwrap();
            store.put_registration(&reg).unwrap();
            store.put_attestation(&att).unwrap();
            store.put_sync_state(peer, &doc.id(), b"state-1").unwrap();
            store.put_sync_state(peer, &doc.id(), b"state-2").unwrap();
            assert!(store.size_on_disk().unwrap() > 0);
            assert_eq!(store.path(), dir.path());
        }
        let store = open(dir.path(), &net);
        assert_eq!(store.certificates().unwrap(), vec![cert]);
        assert_eq!(store.revocations().unwrap(), vec![rev]);
        assert_eq!(store.registrations().unwrap(), vec![reg]);
        assert_eq!(store.attestations().unwrap(), vec![att]);
        assert_eq!(
            store.sync_state(peer, &doc.id()).unwrap().as_deref(),
            Some(&b"state-2"[..])
        );
        assert_eq!(store.sync_state("another", &doc.id()).unwrap(), None);
        let docs = store.load_docs().unwrap();
        assert_eq!(docs.len(), 1);
        let mut loaded = load(docs.into_iter().next().unwrap());
        assert_same(&mut loaded, &mut doc);
    }

    #[test]
    fn header_without_changes_loads_empty() {
        let dir = tempfile::tempdir().unwrap();
        let net = Net::new();
        let (doc, _) = net.visit_log().unwrap();
        let store = open(dir.path(), &net);
        assert!(store.load_doc(&doc.id()).unwrap().is_none());
        store.put_header(doc.header()).unwrap();
        store.append_changes(&doc.id(), &[]).unwrap();
        let stored = store.load_doc(&doc.id()).unwrap().unwrap();
        assert!(stored.bytes.is_empty() && stored.signatures.is_empty());
        let mut loaded = load(stored);
        assert!(loaded.heads().is_empty());
    }

    #[test]
    fn foreign_network_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let net = Net::new();
        drop(open(dir.path(), &net));
        let other = NetworkId([0xee; 32]);
        match Store::open(dir.path(), other) {
            Err(Error::ForeignNetwork {
                path,
                expected,
                found,
            }) => {
                assert_eq!(path, dir.path());
                assert_eq!(expected, other.to_string());
                assert_eq!(found, net.trust.network().to_string());
            }
            other => panic!("expected ForeignNetwork, got {other:?}"),
        }
        // The refusal changed nothing: the right network still opens it.
        drop(open(dir.path(), &net));
    }

    #[test]
    fn newer_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let net = Net::new();
        {
            let store = open(dir.path(), &net);
            store
                .meta
                .insert(META_FORMAT_VERSION, &99u32.to_be_bytes())
                .unwrap();
            store.flush().unwrap();
        }
        let err = Store::open(dir.path(), net.trust.network()).unwrap_err();
        assert!(
            matches!(
                err,
                Error::NewerFormat {
                    found: 99,
                    supported: FORMAT_VERSION,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("newer linli"), "{err}");
    }

    #[test]
    fn garbage_files_are_corrupt_not_a_panic() {
        let net = Net::new();
        let noise: Vec<u8> = (0..64 * 1024u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        for files in [
            &["conf", "db"][..],
            &["conf"][..],
            &["db"][..],
            &["snap.0000000000000000"][..],
        ] {
            let dir = tempfile::tempdir().unwrap();
            for name in files {
                std::fs::write(dir.path().join(name), &noise).unwrap();
            }
            assert_corrupt(dir.path(), &net, &format!("{files:?}"));
        }
        // A real store whose log was overwritten: sled opens it as empty, the store must not.
        let dir = tempfile::tempdir().unwrap();
        let (doc, _) = net.visit_log().unwrap();
        open(dir.path(), &net).put_header(doc.header()).unwrap();
        std::fs::write(dir.path().join("db"), &noise).unwrap();
        assert_corrupt(dir.path(), &net, "overwritten db");
    }

    fn assert_corrupt(dir: &Path, net: &Net, case: &str) {
        let err = Store::open(dir, net.trust.network()).expect_err(case);
        assert!(
            matches!(&err, Error::Corrupt { path, .. } if path == dir),
            "{case}: {err:?}"
        );
        assert!(err.to_string().contains("is corrupt"), "{case}: {err}");
    }

    #[test]
    fn a_file_where_the_directory_should_be_is_an_io_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("store");
        std::fs::write(&file, b"not a directory").unwrap();
        let err = Store::open(&file, NetworkId([1; 32])).unwrap_err();
        assert!(
            matches!(&err, Error::Io { path, .. } if *path == file),
            "{err:?}"
        );
    }

    #[test]
    fn corrupt_records_name_tree_and_key() {
        let dir = tempfile::tempdir().unwrap();
        let net = Net::new();
        let store = open(dir.path(), &net);
        store.headers.insert([5; 32], &b"garbage"[..]).unwrap();
        store.certificates.insert([6; 32], &b"garbage"[..]).unwrap();
        let err = store.load_docs().unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
        assert!(
            text.contains("`headers`") && text.contains(&hex::encode([5; 32])),
            "{text}"
        );
        let err = store.certificates().unwrap_err();
        assert!(err.to_string().contains("`certificates`"), "{err}");
    }

    #[test]
    fn second_open_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let net = Net::new();
        let _first = open(dir.path(), &net);
        let err = Store::open(dir.path(), net.trust.network()).unwrap_err();
        assert!(
            matches!(&err, Error::Locked { path } if path == dir.path()),
            "{err:?}"
        );
        assert!(
            err.to_string().contains("in use by another process"),
            "{err}"
        );
    }
}
