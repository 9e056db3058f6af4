//! Attestations: signed statements about a document at exact heads.
//!
//! - **Admission** (准入, seed 000 §一(一), 003 §四(四), 004 (二十三)): work outside a community's
//!   lists reaches it only with the district's review (初审, civil affairs) and approval (审批,
//!   party committee / government). [`check_admission`] is what a community node runs.
//! - **Filing** (备案, seed 000 §二(三), 003 §三(三)): a convention is filed when the street or
//!   district attests its heads; any later edit makes it "changed since filing".
//! - **Checkpoint**: the district signs the heads of every document it holds, so every level can
//!   check that it sees the consistent view.
//!
//! Attestations live in the issuer unit's ledger document and replicate like any other record.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::cert::{RecordError, RecordId, Role};
use crate::doc::DocId;
use crate::genesis::NetworkId;
use crate::keys::{self, Domain, PublicKey, SecretKey, Signature};
use crate::trust::{Denied, Grant, Trust};
use crate::unit::{UnitId, UnitKind};

/// What an attestation says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Statement {
    /// 初审: civil affairs has reviewed a request (reviewer role).
    Reviewed,
    /// 审批: approved (approver role).
    Approved,
    /// Refused at review or approval (reviewer or approver role).
    Rejected,
    /// 备案: a convention filed with the level above (approver or admin of a unit above the
    /// document's unit).
    Filed,
    /// The district's signed view of every document it holds (node or admin role of a district).
    Checkpoint,
}

impl Statement {
    pub fn as_str(self) -> &'static str {
        match self {
            Statement::Reviewed => "reviewed",
            Statement::Approved => "approved",
            Statement::Rejected => "rejected",
            Statement::Filed => "filed",
            Statement::Checkpoint => "checkpoint",
        }
    }

    /// May a key with `role` in `unit` (of `kind`) make this statement about a document owned
    /// by `doc_unit`?
    pub fn permits(self, role: Role, unit: &UnitId, kind: UnitKind, doc_unit: &UnitId) -> bool {
        match self {
            // Admission is the district's to decide (seed 000 §一(一)): a review, approval or
            // rejection counts only from a district-level key of a unit at or above the
            // request's, whatever other certificates the same key holds.
            Statement::Reviewed => {
                matches!(role, Role::Reviewer | Role::Admin) && district_over(unit, kind, doc_unit)
            }
            Statement::Approved => {
                matches!(role, Role::Approver | Role::Admin) && district_over(unit, kind, doc_unit)
            }
            Statement::Rejected => {
                matches!(role, Role::Reviewer | Role::Approver | Role::Admin)
                    && district_over(unit, kind, doc_unit)
            }
            Statement::Filed => {
                matches!(role, Role::Approver | Role::Admin)
                    && unit.is_at_or_above(doc_unit)
                    && unit != doc_unit
            }
            Statement::Checkpoint => {
                matches!(role, Role::Node | Role::Admin) && kind == UnitKind::District
            }
        }
    }
}

/// Is `unit` a district at or above `doc_unit`?
fn district_over(unit: &UnitId, kind: UnitKind, doc_unit: &UnitId) -> bool {
    kind == UnitKind::District && unit.is_at_or_above(doc_unit)
}

/// One document's heads as a checkpoint saw them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointEntry {
    pub doc: DocId,
    /// The document's unit and scope, so a node can tell whether it should hold it too.
    pub unit: UnitId,
    pub scope: crate::doc::Scope,
    pub heads: Vec<[u8; 32]>,
    pub n_changes: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttestationBody {
    pub network: NetworkId,
    pub issuer: PublicKey,
    pub statement: Statement,
    /// The document attested (for a checkpoint: the issuer's ledger).
    pub doc: DocId,
    /// The document's unit, so authority can be judged without the document.
    pub doc_unit: UnitId,
    /// Exact heads attested, sorted.
    pub heads: Vec<[u8; 32]>,
    /// A record inside the document (a request id), if the statement is about one.
    pub subject: Option<String>,
    /// For a statement about a request: the units it targets, as the request named them when
    /// it was signed. Admission holds only at these units.
    pub targets: Vec<UnitId>,
    pub at_ms: i64,
    pub note: String,
    /// For a checkpoint: every document the issuer holds.
    pub checkpoint: Vec<CheckpointEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attestation {
    pub body: AttestationBody,
    pub signature: Signature,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error("issuer may not make a {statement} statement: {denied}")]
    Denied {
        statement: &'static str,
        denied: Denied,
    },
}

impl Attestation {
    pub fn issue(mut body: AttestationBody, issuer: &SecretKey) -> Attestation {
        debug_assert_eq!(body.issuer, issuer.public());
        body.heads.sort();
        let signature = issuer.sign(Domain::Attestation, &body);
        Attestation { body, signature }
    }

    pub fn id(&self) -> RecordId {
        RecordId(keys::sha256(&[&keys::signing_bytes(
            Domain::Attestation,
            &self.body,
        )]))
    }

    /// Check network and signature; not authority.
    pub fn check_record(&self, network: &NetworkId) -> Result<(), RecordError> {
        let b = &self.body;
        if b.network != *network {
            return Err(RecordError::WrongNetwork {
                expected: *network,
                found: b.network,
            });
        }
        b.issuer.verify(Domain::Attestation, b, &self.signature)?;
        Ok(())
    }

    /// Check signature, network and the issuer's authority for the statement.
    pub fn check(&self, trust: &Trust) -> Result<Grant, AttestError> {
        let b = &self.body;
        self.check_record(&trust.network())?;
        trust
            .authorize(&b.issuer, b.at_ms, |unit, role| {
                b.statement.permits(role, &unit.id, unit.kind, &b.doc_unit)
            })
            .map_err(|denied| AttestError::Denied {
                statement: b.statement.as_str(),
                denied,
            })
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("postcard encoding of a plain struct")
    }

    pub fn decode(bytes: &[u8]) -> Result<Attestation, RecordError> {
        postcard::from_bytes(bytes).map_err(|e| RecordError::Decode(e.to_string()))
    }
}

/// The attestations a node knows, by id and by document. Signatures are checked on insert;
/// authority is judged on every query against the current [`Trust`], so a later revocation
/// counts.
#[derive(Debug, Clone, Default)]
pub struct Index {
    by_id: BTreeMap<RecordId, Attestation>,
    by_doc: HashMap<DocId, Vec<RecordId>>,
}

impl Index {
    /// Insert after checking signature and network (not authority: see [`Index::valid`]).
    pub fn insert(
        &mut self,
        att: Attestation,
        network: &NetworkId,
    ) -> Result<RecordId, RecordError> {
        if att.body.network != *network {
            return Err(RecordError::WrongNetwork {
                expected: *network,
                found: att.body.network,
            });
        }
        att.body
            .issuer
            .verify(Domain::Attestation, &att.body, &att.signature)?;
        let id = att.id();
        if !self.by_id.contains_key(&id) {
            self.by_doc.entry(att.body.doc).or_default().push(id);
            self.by_id.insert(id, att);
        }
        Ok(id)
    }

    pub fn get(&self, id: &RecordId) -> Option<&Attestation> {
        self.by_id.get(id)
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Take an attestation out again (one a refused message brought).
    pub fn remove(&mut self, id: &RecordId) -> Option<Attestation> {
        let att = self.by_id.remove(id)?;
        if let Some(ids) = self.by_doc.get_mut(&att.body.doc) {
            ids.retain(|x| x != id);
            if ids.is_empty() {
                self.by_doc.remove(&att.body.doc);
            }
        }
        Some(att)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&RecordId, &Attestation)> {
        self.by_id.iter()
    }

    /// Attestations about `doc`, owned by `doc_unit` (the unit its header names), whose issuer
    /// had the authority, oldest first. An attestation that names another unit as the
    /// document's is not about this document as it is: authority is judged against the unit an
    /// attestation states, which its issuer chose.
    pub fn valid_for<'a>(
        &'a self,
        doc: &DocId,
        doc_unit: &UnitId,
        trust: &Trust,
    ) -> Vec<(RecordId, &'a Attestation, Grant)> {
        let mut out: Vec<_> = self
            .by_doc
            .get(doc)
            .into_iter()
            .flatten()
            .filter_map(|id| {
                let att = self.by_id.get(id)?;
                if att.body.doc_unit != *doc_unit {
                    return None;
                }
                att.check(trust).ok().map(|g| (*id, att, g))
            })
            .collect();
        out.sort_by_key(|(id, a, _)| (a.body.at_ms, *id));
        out
    }

    /// The newest valid checkpoint of any district, among those not dated more than `skew_ms`
    /// after `now_ms`: a checkpoint dated near the end of time must not stay "the latest" for
    /// ever, even if it got past ingest.
    pub fn latest_checkpoint<'a>(
        &'a self,
        trust: &Trust,
        now_ms: i64,
        skew_ms: i64,
    ) -> Option<(RecordId, &'a Attestation)> {
        self.by_id
            .iter()
            .filter(|(_, a)| a.body.statement == Statement::Checkpoint)
            .filter(|(_, a)| a.body.at_ms <= now_ms.saturating_add(skew_ms))
            .filter(|(_, a)| a.check(trust).is_ok())
            .max_by_key(|(id, a)| (a.body.at_ms, **id))
            .map(|(id, a)| (*id, a))
    }
}

/// The reference an admitted task carries to its approvals.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmissionRef<'a> {
    pub request_doc: &'a str,
    pub request_id: &'a str,
    pub review: &'a str,
    pub approval: &'a str,
}

/// Why an admitted task may not be admitted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdmissionError {
    #[error("the {which} attestation {id} is not known to this node")]
    Missing { which: &'static str, id: String },
    #[error("the {which} attestation {id} is a {found} statement, not {expected}")]
    WrongStatement {
        which: &'static str,
        id: String,
        found: &'static str,
        expected: &'static str,
    },
    #[error("the {which} attestation {id} is about another request")]
    OtherRequest { which: &'static str, id: String },
    #[error("the {which} attestation {id} does not cover {community}: it names {targets}")]
    NotATarget {
        which: &'static str,
        id: String,
        community: UnitId,
        targets: String,
    },
    #[error("the {which} attestation {id} was not made by a district {role}: {reason}")]
    NotDistrict {
        which: &'static str,
        id: String,
        role: &'static str,
        reason: String,
    },
}

/// Admission (准入): is this admitted task of `community` backed by the district's review and
/// approval of a request that targets `community`? "凡未经批准的工作事项,一律不得交由社区落实"
/// (seed 000 §一(一)). The district is the registered top-level unit, never a certificate's claim.
pub fn check_admission(
    adm: &AdmissionRef<'_>,
    community: &UnitId,
    index: &Index,
    trust: &Trust,
) -> Result<(), AdmissionError> {
    let one = |which: &'static str, id: &str, expected: Statement, role: &'static str| {
        let rid: RecordId = id.parse().map_err(|_| AdmissionError::Missing {
            which,
            id: id.to_owned(),
        })?;
        let att = index.get(&rid).ok_or_else(|| AdmissionError::Missing {
            which,
            id: id.to_owned(),
        })?;
        if att.body.statement != expected {
            return Err(AdmissionError::WrongStatement {
                which,
                id: id.to_owned(),
                found: att.body.statement.as_str(),
                expected: expected.as_str(),
            });
        }
        if att.body.doc.to_string() != adm.request_doc
            || att.body.subject.as_deref() != Some(adm.request_id)
        {
            return Err(AdmissionError::OtherRequest {
                which,
                id: id.to_owned(),
            });
        }
        if !att.body.targets.contains(community) {
            return Err(AdmissionError::NotATarget {
                which,
                id: id.to_owned(),
                community: community.clone(),
                targets: att
                    .body
                    .targets
                    .iter()
                    .map(UnitId::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        let grant = att.check(trust).map_err(|e| AdmissionError::NotDistrict {
            which,
            id: id.to_owned(),
            role,
            reason: e.to_string(),
        })?;
        if grant.unit_kind != UnitKind::District {
            return Err(AdmissionError::NotDistrict {
                which,
                id: id.to_owned(),
                role,
                reason: format!("issuer is of {} ({})", grant.unit, grant.unit_kind.as_str()),
            });
        }
        Ok(())
    };
    one("review", adm.review, Statement::Reviewed, "reviewer")?;
    one("approval", adm.approval, Statement::Approved, "approver")?;
    Ok(())
}

/// How my view of a document compares with a checkpoint's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Comparison {
    /// Same heads as the checkpoint.
    Same,
    /// I have everything the checkpoint saw, and more.
    IssuerBehind,
    /// The checkpoint saw changes I lack, and I have nothing it could not have seen.
    IAmBehind,
    /// Each side has changes the other lacks.
    Diverged,
    /// The checkpoint does not mention this document.
    NotInCheckpoint,
    /// The checkpoint mentions a document I do not hold.
    Missing,
}

impl Comparison {
    pub fn as_str(self) -> &'static str {
        match self {
            Comparison::Same => "same",
            Comparison::IssuerBehind => "issuer-behind",
            Comparison::IAmBehind => "i-am-behind",
            Comparison::Diverged => "diverged",
            Comparison::NotInCheckpoint => "not-in-checkpoint",
            Comparison::Missing => "missing",
        }
    }
}

/// Compare my view of one document with a checkpoint entry.
///
/// `have(h)` says whether I hold change `h`; `my_newest_ms` is the newest timestamp among my
/// changes. Without the issuer's change graph I cannot tell "behind" from "diverged" exactly
/// when I lack some of its heads: I call it diverged if I also hold more changes than the
/// checkpoint counted, or changes newer than the checkpoint. A sync resolves either case.
pub fn compare(
    my_heads: &[[u8; 32]],
    my_n_changes: u64,
    my_newest_ms: i64,
    entry: &CheckpointEntry,
    checkpoint_at_ms: i64,
    have: impl Fn(&[u8; 32]) -> bool,
) -> Comparison {
    let mut mine = my_heads.to_vec();
    mine.sort();
    let mut theirs = entry.heads.clone();
    theirs.sort();
    if mine == theirs {
        return Comparison::Same;
    }
    if theirs.iter().all(&have) {
        return Comparison::IssuerBehind;
    }
    if my_n_changes >= entry.n_changes || my_newest_ms > checkpoint_at_ms {
        Comparison::Diverged
    } else {
        Comparison::IAmBehind
    }
}
