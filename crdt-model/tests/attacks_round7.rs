//! Round seven: attacks on `attest::admissible`, the pure choice of which approved requests a
//! community admits (commit 0bd320d). Every key below the district is the attacker's: the
//! street's administrator and approver, the community's administrator and workers. Each test
//! asserts the secure behaviour: a failing test is a break.

use automerge::transaction::Transactable;
use automerge::{ChangeHash, ROOT, ReadDoc};
use linli_crdt_model::attest::{Attestation, AttestationBody, Index, Statement, admissible};
use linli_crdt_model::cert::RecordId;
use linli_crdt_model::doc::DocId;
use linli_crdt_model::document::Document;
use linli_crdt_model::keys::SecretKey;
use linli_crdt_model::kinds::tasks::{List, Request};
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::testkit::{Net, T0, actor_of, permutations, revocation};
use linli_crdt_model::trust::Trust;
use linli_crdt_model::unit::{Unit, UnitId};

fn request(targets: &[&UnitId]) -> Request {
    Request {
        title: "老旧小区加装电梯意愿摸排".to_owned(),
        department: "区住建局".to_owned(),
        legal_basis: "《城市居民委员会组织法》第三条".to_owned(),
        funding: "区财政 每社区 2 万元".to_owned(),
        staffing: "住建局派驻 1 人".to_owned(),
        target_units: targets.iter().map(|u| u.to_string()).collect(),
        due: Some("2026-12-31".to_owned()),
        created_at_ms: T0,
    }
}

/// The street's task list (written by street keys: the attacker's), holding requests `ids`,
/// each targeting 胜利社区 and 前进社区.
fn street_list(net: &Net, title: &str, ids: &[&str]) -> Document {
    let header = net.header(Kind::TaskList, &net.street, &net.s_node, title, None);
    let (mut d, _) = Document::create(
        &net.ctx(T0),
        header,
        &net.s_node,
        actor_of(&net.s_node, 1),
        kinds::tasks::init,
    )
    .expect("the street creates its task list");
    let ids: Vec<String> = ids.iter().map(|s| (*s).to_owned()).collect();
    let (shengli, qianjin) = (net.shengli.id.clone(), net.qianjin.id.clone());
    d.edit(&net.ctx(T0), &net.s_admin, T0 + 1, Some("requests"), |tx| {
        for id in &ids {
            kinds::tasks::add_request(tx, id, &request(&[&shengli, &qianjin]))?;
        }
        Ok(())
    })
    .expect("the street records its requests");
    d
}

fn heads_of(d: &mut Document) -> Vec<[u8; 32]> {
    d.heads().iter().map(|h| h.0).collect()
}

#[allow(
    clippy::too_many_arguments,
    reason = "one argument per field an attacker chooses"
)]
fn attestation(
    net: &Net,
    issuer: &SecretKey,
    statement: Statement,
    doc: DocId,
    doc_unit: &UnitId,
    heads: Vec<[u8; 32]>,
    subject: &str,
    targets: &[&UnitId],
    at_ms: i64,
) -> Attestation {
    Attestation::issue(
        AttestationBody {
            network: net.trust.network(),
            issuer: issuer.public(),
            statement,
            doc,
            doc_unit: doc_unit.clone(),
            heads,
            subject: Some(subject.to_owned()),
            targets: targets.iter().map(|u| (*u).clone()).collect(),
            at_ms,
            note: String::new(),
            checkpoint: Vec::new(),
        },
        issuer,
    )
}

fn index_of(net: &Net, atts: &[Attestation]) -> Index {
    let mut index = Index::default();
    for a in atts {
        index.insert(a.clone(), &net.trust.network()).unwrap();
    }
    index
}

/// What `community` admits of `lists` (each with the unit its header names).
fn admitted(
    community: &Unit,
    lists: &[(DocId, &UnitId, &List)],
    index: &Index,
    trust: &Trust,
) -> Vec<(DocId, String)> {
    admissible(
        community,
        &List::default(),
        lists.iter().map(|(d, u, l)| (*d, *u, *l)),
        index,
        trust,
    )
    .into_iter()
    .map(|a| (a.request_doc, a.request_id))
    .collect()
}

/// The district reviews and approves request `r1` of the street's list at its heads (title,
/// department, legal basis, funding as the department filed them). Afterwards the street's
/// administrator — the attacker — rewrites the request's title, legal basis and funding. The
/// attestations name the exact heads they approved; admission must not hand the community a
/// task the district never saw. It does: `admissible` reads the request as it is now, and never
/// looks at the heads the approval names.
#[test]
#[ignore = "known break, to fix with approvals over exact heads (issue 15): admission takes the request as it is now, not at the heads the district approved"]
fn an_approval_admits_the_request_as_approved_not_as_rewritten_after() {
    let net = Net::new();
    let mut d = street_list(&net, "解放街道任务清单", &["r1"]);
    let heads = heads_of(&mut d);
    let (street, shengli) = (&net.street.id, &net.shengli.id);
    let index = index_of(
        &net,
        &[
            attestation(
                &net,
                &net.d_reviewer,
                Statement::Reviewed,
                d.id(),
                street,
                heads.clone(),
                "r1",
                &[shengli],
                T0 + 10,
            ),
            attestation(
                &net,
                &net.d_approver,
                Statement::Approved,
                d.id(),
                street,
                heads.clone(),
                "r1",
                &[shengli],
                T0 + 20,
            ),
        ],
    );
    let approved = kinds::tasks::hydrate(d.read()).unwrap();
    assert_eq!(
        admitted(
            &net.shengli,
            &[(d.id(), street, &approved)],
            &index,
            &net.trust
        ),
        [(d.id(), "r1".to_owned())],
        "control: the approved request is admitted"
    );

    // The street's administrator rewrites the approved request.
    d.edit(&net.ctx(T0), &net.s_admin, T0 + 30, Some("rewrite"), |tx| {
        let (_, requests) = tx.get(ROOT, "requests").unwrap().expect("requests");
        let (_, r1) = tx.get(&requests, "r1").unwrap().expect("r1");
        tx.put(&r1, "title", "全员上门收缴物业费并签署承诺书")
            .unwrap();
        tx.put(&r1, "legal_basis", "街道通知").unwrap();
        tx.put(&r1, "funding", "社区自筹").unwrap();
        Ok(())
    })
    .expect("any street key writes the street's task list");
    let now = kinds::tasks::hydrate(d.read()).unwrap();
    assert_ne!(
        now.requests["r1"], approved.requests["r1"],
        "the rewrite took"
    );

    let hashes: Vec<ChangeHash> = heads.iter().map(|h| ChangeHash(*h)).collect();
    let at_approval = kinds::tasks::hydrate(&d.at(&hashes).unwrap()).unwrap();
    let out = admissible(
        &net.shengli,
        &List::default(),
        [(d.id(), street, &now)],
        &index,
        &net.trust,
    );
    for a in &out {
        assert_eq!(
            a.request, at_approval.requests["r1"],
            "the community admits request {} as the street rewrote it after the district's \
             approval (at heads {:?}), not as the district approved it",
            a.request_id, heads
        );
    }
}

/// No half of an admission may come from below the district, from another request, from
/// another document, from a role that may not make it, from an approval that names another
/// unit as the document's, from an approval for another community, or from a key revoked
/// before the approval's date. The control at the end shows the same list is admissible with
/// the district's own review and approval.
#[test]
fn no_half_of_an_admission_comes_from_below_or_from_elsewhere() {
    let net = Net::new();
    let mut a = street_list(&net, "解放街道任务清单", &["r1", "r2"]);
    let mut b = street_list(&net, "解放街道任务清单(副本)", &["r1"]);
    let (ha, hb) = (heads_of(&mut a), heads_of(&mut b));
    let (street, shengli, qianjin) = (&net.street.id, &net.shengli.id, &net.qianjin.id);
    let (la, lb) = (
        kinds::tasks::hydrate(a.read()).unwrap(),
        kinds::tasks::hydrate(b.read()).unwrap(),
    );
    let lists = [(a.id(), street, &la), (b.id(), street, &lb)];
    let review = |issuer: &SecretKey, doc: &Document, heads: &[[u8; 32]], rid: &str| {
        attestation(
            &net,
            issuer,
            Statement::Reviewed,
            doc.id(),
            street,
            heads.to_vec(),
            rid,
            &[shengli],
            T0 + 10,
        )
    };
    let approve = |issuer: &SecretKey, doc: &Document, heads: &[[u8; 32]], rid: &str| {
        attestation(
            &net,
            issuer,
            Statement::Approved,
            doc.id(),
            street,
            heads.to_vec(),
            rid,
            &[shengli],
            T0 + 20,
        )
    };
    let cases: Vec<(&str, Vec<Attestation>, Trust)> = vec![
        (
            "review of r1, approval of r2",
            vec![
                review(&net.d_reviewer, &a, &ha, "r1"),
                approve(&net.d_approver, &a, &ha, "r2"),
            ],
            net.trust.clone(),
        ),
        (
            "review of r1 in one list, approval of r1 in another",
            vec![
                review(&net.d_reviewer, &a, &ha, "r1"),
                approve(&net.d_approver, &b, &hb, "r1"),
            ],
            net.trust.clone(),
        ),
        (
            "approval by the district's reviewer (no approver role)",
            vec![
                review(&net.d_reviewer, &a, &ha, "r1"),
                approve(&net.d_reviewer, &a, &ha, "r1"),
            ],
            net.trust.clone(),
        ),
        (
            "approval by the street's approver",
            vec![
                review(&net.d_reviewer, &a, &ha, "r1"),
                approve(&net.s_approver, &a, &ha, "r1"),
            ],
            net.trust.clone(),
        ),
        (
            "review and approval by the street's administrator",
            vec![
                review(&net.s_admin, &a, &ha, "r1"),
                approve(&net.s_admin, &a, &ha, "r1"),
            ],
            net.trust.clone(),
        ),
        (
            "review and approval by the community's administrator",
            vec![
                review(&net.c_admin, &a, &ha, "r1"),
                approve(&net.c_admin, &a, &ha, "r1"),
            ],
            net.trust.clone(),
        ),
        (
            "approval that names the district as the document's unit",
            vec![
                review(&net.d_reviewer, &a, &ha, "r1"),
                attestation(
                    &net,
                    &net.d_approver,
                    Statement::Approved,
                    a.id(),
                    &net.district.id,
                    ha.clone(),
                    "r1",
                    &[shengli],
                    T0 + 20,
                ),
            ],
            net.trust.clone(),
        ),
        (
            "approval for 前进社区 only",
            vec![
                review(&net.d_reviewer, &a, &ha, "r1"),
                attestation(
                    &net,
                    &net.d_approver,
                    Statement::Approved,
                    a.id(),
                    street,
                    ha.clone(),
                    "r1",
                    &[qianjin],
                    T0 + 20,
                ),
            ],
            net.trust.clone(),
        ),
        (
            "approval with no targets",
            vec![
                review(&net.d_reviewer, &a, &ha, "r1"),
                attestation(
                    &net,
                    &net.d_approver,
                    Statement::Approved,
                    a.id(),
                    street,
                    ha.clone(),
                    "r1",
                    &[],
                    T0 + 20,
                ),
            ],
            net.trust.clone(),
        ),
        (
            "approval by a key revoked before its date",
            vec![
                review(&net.d_reviewer, &a, &ha, "r1"),
                approve(&net.d_approver, &a, &ha, "r1"),
            ],
            {
                let mut t = net.trust.clone();
                t.insert_revocations([revocation(
                    &net.trust,
                    &net.d_admin,
                    &net.d_approver.public(),
                    &net.district.id,
                    T0 + 5,
                    T0 + 5,
                    false,
                    "密钥丢失",
                )])
                .unwrap();
                t
            },
        ),
    ];
    for (what, atts, trust) in &cases {
        let index = index_of(&net, atts);
        let out = admitted(&net.shengli, &lists, &index, trust);
        assert!(out.is_empty(), "{what}: 胜利社区 admits {out:?}");
    }
    // Control.
    let index = index_of(
        &net,
        &[
            review(&net.d_reviewer, &a, &ha, "r1"),
            approve(&net.d_approver, &a, &ha, "r1"),
        ],
    );
    assert_eq!(
        admitted(&net.shengli, &lists, &index, &net.trust),
        [(a.id(), "r1".to_owned())]
    );
    // The same attestations admit nothing at 前进社区, which they do not target.
    assert!(admitted(&net.qianjin, &lists, &index, &net.trust).is_empty());
}

/// Rejections by keys below the district (the street's approver and administrator, the
/// community's administrator), or naming another unit as the document's, never block a
/// legitimate admission; whatever the order the attestations arrive in, the verdict is the
/// same; and a district rejection blocks it in every order.
#[test]
fn rejections_from_below_block_nothing_and_no_order_changes_the_verdict() {
    let net = Net::new();
    let mut a = street_list(&net, "解放街道任务清单", &["r1"]);
    let ha = heads_of(&mut a);
    let (street, shengli) = (&net.street.id, &net.shengli.id);
    let la = kinds::tasks::hydrate(a.read()).unwrap();
    let lists = [(a.id(), street, &la)];
    let att = |k: &SecretKey, s: Statement, unit: &UnitId, at: i64| {
        attestation(&net, k, s, a.id(), unit, ha.clone(), "r1", &[shengli], at)
    };
    let legit = [
        att(&net.d_reviewer, Statement::Reviewed, street, T0 + 10),
        att(&net.d_approver, Statement::Approved, street, T0 + 20),
        // An older and a newer second review: the newest counts, any counts.
        att(&net.d_reviewer, Statement::Reviewed, street, T0 + 30),
    ];
    let hostile = vec![
        att(&net.s_approver, Statement::Rejected, street, T0 + 40),
        att(&net.s_admin, Statement::Rejected, street, T0 + 41),
        att(&net.c_admin, Statement::Rejected, street, T0 + 42),
        att(
            &net.d_reviewer,
            Statement::Rejected,
            &net.district.id,
            T0 + 43,
        ),
    ];
    let all: Vec<Attestation> = legit.iter().chain(&hostile).cloned().collect();
    // Every order of the first five, the rest after: 120 orders.
    for order in permutations(5) {
        let mut shuffled: Vec<Attestation> = order.iter().map(|i| all[*i].clone()).collect();
        shuffled.extend(all[5..].iter().cloned());
        let index = index_of(&net, &shuffled);
        let out = admissible(
            &net.shengli,
            &List::default(),
            lists.iter().map(|(d, u, l)| (*d, *u, *l)),
            &index,
            &net.trust,
        );
        assert_eq!(
            out.len(),
            1,
            "order {order:?}: a rejection from below blocked admission"
        );
        let ids: (RecordId, RecordId) = (out[0].review, out[0].approval);
        assert_eq!(
            ids.0,
            legit[2].id(),
            "order {order:?}: not the newest review"
        );
        assert_eq!(
            ids.1,
            legit[1].id(),
            "order {order:?}: not the district's approval"
        );
    }
    let rejected = att(&net.d_reviewer, Statement::Rejected, street, T0 + 5);
    for order in permutations(4) {
        let pool = [
            legit[0].clone(),
            legit[1].clone(),
            rejected.clone(),
            hostile[0].clone(),
        ];
        let index = index_of(
            &net,
            &order.iter().map(|i| pool[*i].clone()).collect::<Vec<_>>(),
        );
        assert!(
            admitted(&net.shengli, &lists, &index, &net.trust).is_empty(),
            "order {order:?}: the district's rejection did not block admission"
        );
    }
}
