//! Attestations: signed statements about a document at exact heads.
//!
//! - **Admission** (准入, seed 000 §一(一), 003 §四(四), 004 (二十三)): work outside a community's
//!   lists reaches it only with the district's review (初审, civil affairs) and approval (审批,
//!   party committee / government). [`admissible`] is what a community node admits, and
//!   [`check_admission`] what every node checks of an admitted task.
//! - **Filing** (备案, seed 000 §二(三), 003 §三(三)): a convention is filed when the street or
//!   district attests its heads; any later edit makes it "changed since filing".
//! - **Checkpoint**: the district signs the heads of every document it holds, so every level can
//!   check that it sees the consistent view.
//!
//! Attestations live in the issuer unit's ledger document and replicate like any other record.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::cert::{RecordError, RecordId, Role};
use crate::doc::DocId;
use crate::genesis::NetworkId;
use crate::keys::{self, Domain, PublicKey, SecretKey, Signature};
use crate::kinds::tasks;
use crate::trust::{Denied, Grant, Trust};
use crate::unit::{Unit, UnitId, UnitKind};

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

/// A request a community admits: where it is, what it asks, and the district's review and
/// approval of it for this community.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admissible {
    /// The task list that holds the request.
    pub request_doc: DocId,
    /// The request's id in that list.
    pub request_id: String,
    pub request: tasks::Request,
    /// The newest valid review and approval of the request that cover this community.
    pub review: RecordId,
    pub approval: RecordId,
}

/// Admission (准入), the choice: of the requests in `lists` (the task lists held besides the
/// community's own, each with its document id and the unit its header names), those that
/// `community` admits now. A request is admitted when it names `community` among its targets, is
/// not admitted yet (no task of `own`, the community's own list, names it) and carries the
/// district's review and approval that cover `community`, and no rejection by the district.
/// Only attestations that name the list's unit and whose issuer had the authority count
/// ([`Index::valid_for`]); of several, the newest. Without both, nothing is admitted: "凡未经批
/// 准的工作事项,一律不得交由社区落实" (seed 000 §一(一)). Only a community admits.
pub fn admissible<'a>(
    community: &Unit,
    own: &tasks::List,
    lists: impl IntoIterator<Item = (DocId, &'a UnitId, &'a tasks::List)>,
    index: &Index,
    trust: &Trust,
) -> Vec<Admissible> {
    if community.kind != UnitKind::Community {
        return Vec::new();
    }
    let admitted: HashSet<(&str, &str)> = own
        .tasks
        .values()
        .filter_map(|t| t.admission.as_ref())
        .map(|a| (a.request_doc.as_str(), a.request_id.as_str()))
        .collect();
    let me = community.id.to_string();
    let mut out = Vec::new();
    for (doc, doc_unit, list) in lists {
        let doc_hex = doc.to_string();
        // Judged (signatures checked) once per document, and only if a request needs it.
        let mut judged = None;
        for (rid, req) in &list.requests {
            if !req.target_units.contains(&me) || admitted.contains(&(&doc_hex, rid.as_str())) {
                continue;
            }
            let valid: &[_] = judged.get_or_insert_with(|| index.valid_for(&doc, doc_unit, trust));
            let about = |a: &Attestation, g: &Grant, s: Statement| {
                a.body.statement == s
                    && a.body.subject.as_deref() == Some(rid.as_str())
                    && g.unit_kind == UnitKind::District
            };
            let find = |s: Statement| {
                valid
                    .iter()
                    .filter(|(_, a, g)| about(a, g, s) && a.body.targets.contains(&community.id))
                    .map(|(id, _, _)| *id)
                    .next_back()
            };
            let (Some(review), Some(approval)) =
                (find(Statement::Reviewed), find(Statement::Approved))
            else {
                continue;
            };
            // Only the district rejects (`Statement::permits` says so too).
            let rejected = valid
                .iter()
                .any(|(_, a, g)| about(a, g, Statement::Rejected));
            if !rejected {
                out.push(Admissible {
                    request_doc: doc,
                    request_id: rid.clone(),
                    request: req.clone(),
                    review,
                    approval,
                });
            }
        }
    }
    out
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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::kinds::tasks::{Admission, Category, List, Request, Status, Task};
    use crate::testkit::{Net, T0};

    /// The district's task list, holding request `r1`, and what its attestations are about.
    const DISTRICT_TASKS: DocId = DocId([9; 32]);

    fn list_with_request(targets: &[&UnitId]) -> List {
        let request = Request {
            title: "老旧小区加装电梯意愿摸排".to_owned(),
            department: "区住建局".to_owned(),
            legal_basis: "《城市居民委员会组织法》第三条".to_owned(),
            funding: "区财政 每社区 2 万元".to_owned(),
            staffing: "住建局派驻 1 人".to_owned(),
            target_units: targets.iter().map(|u| u.to_string()).collect(),
            due: Some("2026-12-31".to_owned()),
            created_at_ms: T0,
        };
        List {
            requests: BTreeMap::from([("r1".to_owned(), request)]),
            ..List::default()
        }
    }

    /// `statement` about request `r1` of the district's task list by `issuer`, for `targets`.
    fn attest(
        net: &Net,
        index: &mut Index,
        issuer: &SecretKey,
        statement: Statement,
        targets: &[&UnitId],
    ) -> RecordId {
        let att = Attestation::issue(
            AttestationBody {
                network: net.trust.network(),
                issuer: issuer.public(),
                statement,
                doc: DISTRICT_TASKS,
                doc_unit: net.district.id.clone(),
                heads: Vec::new(),
                subject: Some("r1".to_owned()),
                targets: targets.iter().map(|u| (*u).clone()).collect(),
                at_ms: T0 + index.len() as i64,
                note: String::new(),
                checkpoint: Vec::new(),
            },
            issuer,
        );
        index.insert(att, &net.trust.network()).unwrap()
    }

    /// The district's review, then its approval, of request `r1` for `targets`.
    fn district_approves(
        net: &Net,
        index: &mut Index,
        targets: &[&UnitId],
    ) -> (RecordId, RecordId) {
        let review = attest(net, index, &net.d_reviewer, Statement::Reviewed, targets);
        let approval = attest(net, index, &net.d_approver, Statement::Approved, targets);
        (review, approval)
    }

    /// What `community` admits of the district's list, given its own list `own`.
    fn admitted(
        net: &Net,
        community: &Unit,
        own: &List,
        held: &List,
        index: &Index,
    ) -> Vec<String> {
        admissible(
            community,
            own,
            [(DISTRICT_TASKS, &net.district.id, held)],
            index,
            &net.trust,
        )
        .into_iter()
        .map(|a| a.request_id)
        .collect()
    }

    #[test]
    fn a_request_reviewed_and_approved_by_the_district_is_admitted() {
        let net = Net::new();
        let mut index = Index::default();
        let shengli = &net.shengli.id;
        let (review, approval) = district_approves(&net, &mut index, &[shengli]);
        let held = list_with_request(&[shengli]);
        let out = admissible(
            &net.shengli,
            &List::default(),
            [(DISTRICT_TASKS, &net.district.id, &held)],
            &index,
            &net.trust,
        );
        assert_eq!(
            out,
            [Admissible {
                request_doc: DISTRICT_TASKS,
                request_id: "r1".to_owned(),
                request: held.requests["r1"].clone(),
                review,
                approval,
            }]
        );
        // A district or a street admits nothing, whatever it holds.
        for unit in [&net.district, &net.street] {
            assert!(admitted(&net, unit, &List::default(), &held, &index).is_empty());
        }
    }

    #[test]
    fn a_rejected_request_is_not_admitted() {
        let net = Net::new();
        let mut index = Index::default();
        let shengli = &net.shengli.id;
        district_approves(&net, &mut index, &[shengli]);
        let held = list_with_request(&[shengli]);
        assert_eq!(
            admitted(&net, &net.shengli, &List::default(), &held, &index),
            ["r1"]
        );
        attest(&net, &mut index, &net.d_reviewer, Statement::Rejected, &[]);
        assert!(admitted(&net, &net.shengli, &List::default(), &held, &index).is_empty());
    }

    #[test]
    fn a_request_is_admitted_only_where_it_is_targeted() {
        let net = Net::new();
        let mut index = Index::default();
        let qianjin = &net.qianjin.id;
        district_approves(&net, &mut index, &[qianjin]);
        let held = list_with_request(&[qianjin]);
        assert!(admitted(&net, &net.shengli, &List::default(), &held, &index).is_empty());
        assert_eq!(
            admitted(&net, &net.qianjin, &List::default(), &held, &index),
            ["r1"]
        );

        // Targeted by the request, but not by the district's approval of it.
        let shengli = &net.shengli.id;
        let held = list_with_request(&[shengli, qianjin]);
        assert!(admitted(&net, &net.shengli, &List::default(), &held, &index).is_empty());
    }

    #[test]
    fn a_request_already_admitted_is_not_admitted_again() {
        let net = Net::new();
        let mut index = Index::default();
        let shengli = &net.shengli.id;
        let (review, approval) = district_approves(&net, &mut index, &[shengli]);
        let held = list_with_request(&[shengli]);
        let task = Task {
            title: "老旧小区加装电梯意愿摸排".to_owned(),
            category: Category::Admitted,
            status: Status::Open,
            due: None,
            assignee: None,
            note: String::new(),
            created_at_ms: T0,
            updated_at_ms: T0,
            admission: Some(Admission {
                request_doc: DISTRICT_TASKS.to_string(),
                request_id: "r1".to_owned(),
                review: review.to_string(),
                approval: approval.to_string(),
            }),
        };
        let own = List {
            tasks: BTreeMap::from([("adm-r1".to_owned(), task)]),
            ..List::default()
        };
        assert!(admitted(&net, &net.shengli, &own, &held, &index).is_empty());
    }

    #[test]
    fn an_approval_by_a_key_outside_the_district_admits_nothing() {
        let net = Net::new();
        let mut index = Index::default();
        let shengli = &net.shengli.id;
        attest(
            &net,
            &mut index,
            &net.d_reviewer,
            Statement::Reviewed,
            &[shengli],
        );
        // The street's approver, and the community's own administrator.
        attest(
            &net,
            &mut index,
            &net.s_approver,
            Statement::Approved,
            &[shengli],
        );
        attest(
            &net,
            &mut index,
            &net.c_admin,
            Statement::Approved,
            &[shengli],
        );
        let held = list_with_request(&[shengli]);
        assert!(admitted(&net, &net.shengli, &List::default(), &held, &index).is_empty());
        // The district's approver makes it whole.
        attest(
            &net,
            &mut index,
            &net.d_approver,
            Statement::Approved,
            &[shengli],
        );
        assert_eq!(
            admitted(&net, &net.shengli, &List::default(), &held, &index),
            ["r1"]
        );
    }
}
