//! Audit: who wrote what, when, with what authority, and who approved it — re-checked from the
//! signatures every time, never read from a cache (居务公开 / 监督, seed 000 §二, 003 §三).

use std::collections::{HashMap, HashSet};
use std::fmt;

use automerge::ChangeHash;
use serde::{Deserialize, Serialize};

use crate::attest::{self, AdmissionRef, Statement};
use crate::document::{Document, Equivocation};
use crate::kinds::{self, Kind};
use crate::trust::Trust;

/// The signed history of one document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Audit {
    pub doc: String,
    pub kind: Kind,
    pub unit: String,
    pub scope: String,
    pub title: String,
    pub creator: String,
    /// `None` if the header checks; otherwise why not.
    pub header_problem: Option<String>,
    pub changes: Vec<Entry>,
    pub attestations: Vec<AttestationView>,
    pub filing: Option<Filing>,
    /// Problems found: invalid changes, admitted tasks without approvals, schema violations,
    /// equivocations.
    pub problems: Vec<String>,
    /// Evidence that an author signed two changes with one actor and number
    /// ([`Document::add_equivocations`]).
    #[serde(default)]
    pub equivocations: Vec<EquivocationView>,
}

/// One equivocation, as evidence kept by this node shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EquivocationView {
    pub author: String,
    pub holder: Option<String>,
    pub seq: u64,
    /// The change this document holds.
    pub held: String,
    /// The change set aside, kept as evidence.
    pub set_aside: String,
    pub set_aside_at_ms: Option<i64>,
    /// `proven` if both signatures check and the changes share actor and number; otherwise
    /// why the evidence does not hold (for instance, the held change is not here yet).
    pub verdict: String,
}

/// One change, judged.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    pub hash: String,
    pub at_ms: i64,
    pub author: Option<String>,
    pub holder: Option<String>,
    pub unit: Option<String>,
    pub role: Option<String>,
    pub message: Option<String>,
    /// `valid`, or the rejection reason label.
    pub verdict: String,
    pub detail: Option<String>,
    /// Short ids of valid attestations whose heads include this change.
    pub covered_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttestationView {
    pub id: String,
    pub statement: Statement,
    pub issuer: String,
    pub holder: String,
    pub unit: String,
    pub role: String,
    pub at_ms: i64,
    pub heads: Vec<String>,
    pub subject: Option<String>,
    pub note: String,
}

/// Filing state of a convention (备案).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum Filing {
    NotFiled,
    Filed {
        attestation: String,
        by: String,
        at_ms: i64,
    },
    ChangedSinceFiling {
        attestation: String,
        by: String,
        at_ms: i64,
        changes_since: usize,
        /// Unified diff of the articles' text, filed version → now.
        diff: String,
    },
}

impl Filing {
    pub fn label(&self) -> &'static str {
        match self {
            Filing::NotFiled => "not filed",
            Filing::Filed { .. } => "filed",
            Filing::ChangedSinceFiling { .. } => "changed since filing",
        }
    }
}

/// A problem found by a verification pass.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    pub doc: String,
    pub what: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", &self.doc[..12.min(self.doc.len())], self.what)
    }
}

/// Ancestors of `heads` (inclusive) in a change graph given as hash → deps.
fn ancestors(
    graph: &HashMap<ChangeHash, Vec<ChangeHash>>,
    heads: &[ChangeHash],
) -> HashSet<ChangeHash> {
    let mut out = HashSet::new();
    let mut todo: Vec<ChangeHash> = heads.to_vec();
    while let Some(h) = todo.pop() {
        if out.insert(h)
            && let Some(deps) = graph.get(&h)
        {
            todo.extend(deps.iter().copied());
        }
    }
    out
}

impl Document {
    /// Judge every change and attestation of this document.
    pub fn audit(&mut self, trust: &Trust, index: &attest::Index) -> Audit {
        let id = self.id();
        let h = self.header().header.clone();
        let header_problem = self
            .header()
            .check_signed(trust)
            .err()
            .map(|e| e.to_string());
        let metas: Vec<(ChangeHash, Vec<ChangeHash>, i64, Option<String>)> = self
            .automerge_mut()
            .get_changes_meta(&[])
            .into_iter()
            .map(|m| {
                (
                    m.hash,
                    m.deps.clone(),
                    m.timestamp,
                    m.message.map(|s| s.into_owned()),
                )
            })
            .collect();
        let received = !metas.is_empty();
        let graph: HashMap<ChangeHash, Vec<ChangeHash>> =
            metas.iter().map(|(h, d, _, _)| (*h, d.clone())).collect();

        let valid_atts = index.valid_for(&id, &self.header().header.unit, trust);
        let mut covers: HashMap<ChangeHash, Vec<String>> = HashMap::new();
        let mut attestations = Vec::new();
        for (aid, att, grant) in &valid_atts {
            let heads: Vec<ChangeHash> = att.body.heads.iter().map(|b| ChangeHash(*b)).collect();
            for c in ancestors(&graph, &heads) {
                covers.entry(c).or_default().push(format!(
                    "{} {}",
                    att.body.statement.as_str(),
                    aid.short()
                ));
            }
            attestations.push(AttestationView {
                id: aid.to_string(),
                statement: att.body.statement,
                issuer: att.body.issuer.to_string(),
                holder: grant.holder.clone(),
                unit: grant.unit.to_string(),
                role: grant.role.as_str().to_owned(),
                at_ms: att.body.at_ms,
                heads: heads.iter().map(|h| h.to_string()).collect(),
                subject: att.body.subject.clone(),
                note: att.body.note.clone(),
            });
        }

        let mut problems = Vec::new();
        if let Some(p) = &header_problem {
            problems.push(format!("header: {p}"));
        }
        let mut changes = Vec::with_capacity(metas.len());
        for (hash, _, at_ms, message) in metas {
            let sig = self.signature(&hash).cloned();
            let (verdict, detail, grant) = match self.judge(trust, &hash, at_ms) {
                Ok(g) => ("valid".to_owned(), None, Some(g)),
                Err(r) => {
                    problems.push(format!("change {}: {r}", &hash.to_string()[..12]));
                    (r.reason().to_owned(), Some(r.to_string()), None)
                }
            };
            changes.push(Entry {
                hash: hash.to_string(),
                at_ms,
                author: sig.map(|s| s.author.to_string()),
                holder: grant.as_ref().map(|g| g.holder.clone()),
                unit: grant.as_ref().map(|g| g.unit.to_string()),
                role: grant.as_ref().map(|g| g.role.as_str().to_owned()),
                message,
                verdict,
                detail,
                covered_by: covers.remove(&hash).unwrap_or_default(),
            });
        }

        // A header held before its first change arrives (the first round of a sync carries no
        // changes) has no body to check yet; its changes meet the schema on ingest.
        if received && let Err(e) = kinds::validate(h.kind, self.read()) {
            problems.push(format!("schema: {e}"));
        }
        if h.kind == Kind::TaskList {
            problems.extend(self.admission_problems(trust, index));
        }
        let filing = (h.kind == Kind::Convention).then(|| self.filing(trust, index));

        Audit {
            doc: id.to_string(),
            kind: h.kind,
            unit: h.unit.to_string(),
            scope: h.scope.as_str().to_owned(),
            title: h.title.clone(),
            creator: h.creator.to_string(),
            header_problem,
            changes,
            attestations,
            filing,
            problems,
            equivocations: Vec::new(),
        }
    }

    /// Add to `audit` the evidence of equivocations kept for this document, each re-checked
    /// against the change the document holds; a proven one is also a problem.
    pub fn add_equivocations(
        &mut self,
        trust: &Trust,
        evidence: &[Equivocation],
        audit: &mut Audit,
    ) {
        for e in evidence {
            let held = ChangeHash(e.held);
            let refused = automerge::Change::from_bytes(e.refused_change.clone()).ok();
            let verdict = match (self.change_bytes(&held), self.signature(&held).cloned()) {
                (Some(bytes), Some(sig)) => match e.check(trust.network(), &bytes, &sig) {
                    Ok(()) => "proven".to_owned(),
                    Err(r) => r.to_string(),
                },
                _ => "the held change is not in this document".to_owned(),
            };
            let holder = trust
                .certificates_of(&e.author)
                .first()
                .map(|c| c.1.body.holder.clone());
            let set_aside = ChangeHash(e.refused_signature.hash).to_string();
            if verdict == "proven" {
                audit.problems.push(format!(
                    "equivocation: {} signed two changes numbered {}: {} (held) and {} (set aside)",
                    holder.as_deref().unwrap_or("an author"),
                    e.seq,
                    &held.to_string()[..12],
                    &set_aside[..12],
                ));
            }
            audit.equivocations.push(EquivocationView {
                author: e.author.to_string(),
                holder,
                seq: e.seq,
                held: held.to_string(),
                set_aside,
                set_aside_at_ms: refused.map(|c| c.timestamp()),
                verdict,
            });
        }
    }

    /// Admitted tasks that lack the district's review and approval.
    pub fn admission_problems(&self, trust: &Trust, index: &attest::Index) -> Vec<String> {
        let Ok(list) = kinds::tasks::hydrate(self.read()) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (tid, task) in &list.tasks {
            if let Some(adm) = &task.admission {
                let r = AdmissionRef {
                    request_doc: &adm.request_doc,
                    request_id: &adm.request_id,
                    review: &adm.review,
                    approval: &adm.approval,
                };
                if let Err(e) =
                    attest::check_admission(&r, &self.header().header.unit, index, trust)
                {
                    out.push(format!("admitted task {tid} ({}): {e}", task.title));
                }
            }
        }
        out
    }

    /// Filing state: the newest valid `filed` attestation against the current heads.
    pub fn filing(&mut self, trust: &Trust, index: &attest::Index) -> Filing {
        let id = self.id();
        let Some((aid, att, grant)) = index
            .valid_for(&id, &self.header().header.unit, trust)
            .into_iter()
            .rfind(|(_, a, _)| a.body.statement == Statement::Filed)
        else {
            return Filing::NotFiled;
        };
        let filed: Vec<ChangeHash> = att.body.heads.iter().map(|b| ChangeHash(*b)).collect();
        let by = format!("{} ({})", grant.holder, grant.unit);
        let attestation = aid.to_string();
        let at_ms = att.body.at_ms;
        let mut now = self.heads();
        now.sort();
        if now == filed {
            return Filing::Filed {
                attestation,
                by,
                at_ms,
            };
        }
        let graph: HashMap<ChangeHash, Vec<ChangeHash>> = self
            .automerge_mut()
            .get_changes_meta(&[])
            .into_iter()
            .map(|m| (m.hash, m.deps))
            .collect();
        let before = ancestors(&graph, &filed);
        let changes_since = graph.len().saturating_sub(before.len());
        let diff = self.text_diff(&filed);
        Filing::ChangedSinceFiling {
            attestation,
            by,
            at_ms,
            changes_since,
            diff,
        }
    }

    fn text_diff(&mut self, filed: &[ChangeHash]) -> String {
        let old = match self.at(filed) {
            Ok(doc) => kinds::convention::hydrate(&doc)
                .map(|c| kinds::convention::articles_text(&c))
                .unwrap_or_default(),
            Err(_) => return "(the filed version is not held by this node)".to_owned(),
        };
        let new = kinds::convention::hydrate(self.read())
            .map(|c| kinds::convention::articles_text(&c))
            .unwrap_or_default();
        similar::TextDiff::from_lines(&old, &new)
            .unified_diff()
            .header("filed", "now")
            .to_string()
    }

    /// Re-check everything about this document; empty means it verifies.
    pub fn verify(&mut self, trust: &Trust, index: &attest::Index) -> Vec<Problem> {
        let doc = self.id().to_string();
        self.audit(trust, index)
            .problems
            .into_iter()
            .map(|what| Problem {
                doc: doc.clone(),
                what,
            })
            .collect()
    }
}

/// Verify attestations of a whole store: each must be signed and made with authority.
pub fn verify_attestations(trust: &Trust, index: &attest::Index) -> Vec<Problem> {
    let mut out = Vec::new();
    for (id, att) in index.iter() {
        if let Err(e) = att.check(trust) {
            out.push(Problem {
                doc: att.body.doc.to_string(),
                what: format!("attestation {}: {e}", id.short()),
            });
        }
    }
    out
}
