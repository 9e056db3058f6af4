//! Reads: finding documents and rendering what they hold, the node's status, audits and the
//! whole-store verification. Nothing here changes a document (a read that takes `&mut self`
//! does so because Automerge computes heads lazily).

use std::collections::BTreeSet;

use linli_crdt_model::audit::{self, Audit, Problem};
use linli_crdt_model::doc::DocId;
use linli_crdt_model::document::Document;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::unit::UnitId;

use crate::contract::{DocSummary, Person, Status};

use super::{Engine, Error};

impl Engine {
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
}
