//! Local edits: documents created and operations applied by a person of this unit (or the node),
//! through the model's `Document::edit`, each flushed to the store before the call returns, so an
//! acknowledged edit survives a crash (`node/tests/crash.rs`).

use automerge::ChangeHash;
use linli_crdt_model::doc::{self, DocId, Header, SCHEMA_VERSION};
use linli_crdt_model::document::{ChangeSignature, Context, Document};
use linli_crdt_model::keys::SecretKey;
use linli_crdt_model::kinds::{self, Kind};

use crate::clock::now_ms;
use crate::contract::{CreateDoc, Op, OpError, Receipt};

use super::{Engine, Error, fresh_actor, fresh_id, persist_applied};

impl Engine {
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
    pub(super) fn edit_local<T>(
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
    pub(super) fn persist(&mut self, id: &DocId, new: &[ChangeHash]) -> Result<(), Error> {
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
}
