//! Attestations, checkpoints and admission (准入): statements signed here and recorded in this
//! unit's ledger, those learned from ledgers, the comparison with the newest checkpoint, and a
//! community's admission of the requests the district reviewed and approved (seed 000 §一(一)).

use std::collections::HashMap;

use automerge::ChangeHash;
use linli_crdt_model::attest::{
    self, Attestation, AttestationBody, CheckpointEntry, Comparison, Statement,
};
use linli_crdt_model::cert::RecordId;
use linli_crdt_model::doc::DocId;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::unit::{UnitId, UnitKind};

use crate::clock::now_ms;
use crate::contract::{CompareRow, Op};

use super::{Engine, Error};

impl Engine {
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

    pub(super) fn refresh_attestations_from(&mut self, ledger: &DocId) {
        let Ok(l) = kinds::ledger::hydrate(self.docs[ledger].read()) else {
            return;
        };
        let network = self.trust.network();
        for bytes in l.attestations.values() {
            if let Ok(att) = Attestation::decode(bytes)
                && self.attestations.get(&att.id()).is_none()
                && self.attestations.insert(att.clone(), &network).is_ok()
            {
                // It stays in the ledger, which is read again each time it changes.
                if let Err(e) = self.store.put_attestation(&att) {
                    tracing::warn!(error = %e, attestation = %att.id(), "could not store an attestation from a ledger");
                }
            }
        }
    }

    /// Admission (准入): a community node adds every request the model finds admissible
    /// ([`attest::admissible`]: it targets this community and carries the district's review and
    /// approval) to its own task list, as an admitted task that names them. Without both it adds
    /// nothing (seed 000 §一(一)).
    pub(super) fn admit_approved(&mut self) {
        // Only a community admits (the model says so too): no other node reads every list.
        if self.unit.kind != UnitKind::Community {
            return;
        }
        let Some(mine) = self.own_doc(Kind::TaskList) else {
            return;
        };
        let Ok(my_list) = kinds::tasks::hydrate(self.docs[&mine].read()) else {
            return;
        };
        let held: Vec<(DocId, &UnitId, kinds::tasks::List)> = self
            .docs
            .iter()
            .filter(|(did, doc)| doc.kind() == Kind::TaskList && **did != mine)
            .filter_map(|(did, doc)| {
                let list = kinds::tasks::hydrate(doc.read()).ok()?;
                Some((*did, &doc.header().header.unit, list))
            })
            .collect();
        let todo = attest::admissible(
            &self.unit,
            &my_list,
            held.iter().map(|(did, unit, list)| (*did, *unit, list)),
            &self.attestations,
            &self.trust,
        );
        for a in todo {
            let req = a.request;
            let op = Op::TaskAdd {
                id: Some(format!("adm-{}", &a.request_id)),
                task: kinds::tasks::NewTask {
                    title: req.title.clone(),
                    category: kinds::tasks::Category::Admitted,
                    due: req.due.clone(),
                    assignee: None,
                    note: format!("{}; {}", req.department, req.legal_basis),
                    admission: Some(kinds::tasks::Admission {
                        request_doc: a.request_doc.to_string(),
                        request_id: a.request_id,
                        review: a.review.to_string(),
                        approval: a.approval.to_string(),
                    }),
                },
            };
            if let Err(e) = self.apply(&mine, &op, None) {
                tracing::warn!(error = %e, "could not admit an approved request");
            }
        }
    }

    pub(super) fn admission_attestations(&self, id: &DocId) -> Vec<Attestation> {
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
}
