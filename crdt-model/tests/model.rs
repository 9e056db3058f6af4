//! The model's rules, end to end without a network: every rejection reason, admission, filing,
//! checkpoints, revocation and audit. Property tests for convergence live in `properties.rs`.

use automerge::{AutoCommit, Change, ChangeHash, transaction::CommitOptions};
use expect_test::expect;
use linli_crdt_model::attest::{
    self, Attestation, AttestationBody, CheckpointEntry, Comparison, Statement,
};
use linli_crdt_model::audit::Filing;
use linli_crdt_model::cert::{Revocation, RevocationBody, Role};
use linli_crdt_model::document::{Batch, ChangeSignature, Document, EditRefused, Rejected};
use linli_crdt_model::genesis::NetworkId;
use linli_crdt_model::keys::SecretKey;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::sync::Signatures;
use linli_crdt_model::testkit::{
    self, DAY, Net, T0, YEAR, actor, actor_of, cert, hostile, key, visit,
};

/// Make a change on a copy of `doc` as `author` (whatever its authority), signed by `signer`.
fn forge(
    net: &Net,
    doc: &mut Document,
    signer: &SecretKey,
    at_ms: i64,
    n: u8,
    f: impl FnOnce(&mut AutoCommit),
) -> (Change, ChangeSignature) {
    let heads = doc.heads();
    let mut copy = doc.at(&heads).expect("fork at own heads");
    copy.set_actor(actor_of(signer, 100 + n));
    f(&mut copy);
    copy.commit_with(CommitOptions::default().with_time(at_ms));
    let change = copy.get_last_local_change().expect("a change was made");
    let sig = ChangeSignature::sign(net.trust.network(), doc.id(), change.hash(), signer);
    (change, sig)
}

fn add_visit(tx: &mut AutoCommit, id: &str) {
    kinds::visits::add_entry(tx, id, &visit("h1", "王芳", "2026-11-03", T0)).expect("valid visit");
}

fn batch(change: Change, sig: ChangeSignature) -> Batch {
    Batch {
        network: None,
        changes: vec![change],
        signatures: vec![sig],
    }
}

/// A fresh replica of `doc` (as a peer would hold it) with everything `doc` has.
fn replica(net: &Net, doc: &mut Document) -> Document {
    let mut r = Document::empty(doc.header().clone(), actor(50));
    let sigs: Vec<_> = doc.signatures().cloned().collect();
    let applied = r
        .ingest(
            &net.ctx(T0),
            Batch {
                network: Some(net.trust.network()),
                changes: doc.changes(),
                signatures: sigs,
            },
        )
        .expect("replica takes the original's changes");
    assert_eq!(applied.heads, doc.heads());
    r
}

/// Ingest must take nothing and leave the document exactly as it was: the batch refused, or
/// every change of it set aside. Returns the (first) reason.
fn refused(net: &Net, doc: &mut Document, b: Batch) -> Rejected {
    refused_at(&net.ctx(T0 + DAY), doc, b)
}

fn refused_at(
    ctx: &linli_crdt_model::document::Context<'_>,
    doc: &mut Document,
    b: Batch,
) -> Rejected {
    let before = doc.heads();
    let n = doc.n_changes();
    let err = match doc.ingest(ctx, b) {
        Err(e) => e,
        Ok(applied) => {
            assert!(applied.new.is_empty(), "changes were taken: {applied:?}");
            applied
                .set_aside
                .into_iter()
                .next()
                .expect("batch must be refused or set aside")
                .reason
        }
    };
    assert_eq!(doc.heads(), before, "a refused batch changed the heads");
    assert_eq!(doc.n_changes(), n);
    err
}

#[test]
fn honest_change_is_applied_and_replay_is_a_no_op() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let mut r = replica(&net, &mut doc);
    let (c, s) = forge(&net, &mut doc, &net.c_wang, T0 + 5, 1, |tx| {
        add_visit(tx, "v1")
    });
    let applied = r
        .ingest(&net.ctx(T0 + DAY), batch(c.clone(), s.clone()))
        .unwrap();
    assert_eq!(applied.new, vec![c.hash()]);
    let again = r.ingest(&net.ctx(T0 + DAY), batch(c, s)).unwrap();
    assert!(again.new.is_empty());
    assert_eq!(again.duplicates, 1);
}

#[test]
fn unsigned_change_is_rejected() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let (c, _) = forge(&net, &mut doc, &net.c_wang, T0 + 5, 1, |tx| {
        add_visit(tx, "v1")
    });
    let hash = c.hash();
    let err = refused(
        &net,
        &mut doc,
        Batch {
            network: None,
            changes: vec![c],
            signatures: vec![],
        },
    );
    assert_eq!(err, Rejected::Unsigned { change: hash });
    assert_eq!(err.reason(), "unsigned");
}

#[test]
fn bad_signature_is_rejected() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let (c, mut s) = forge(&net, &mut doc, &net.c_wang, T0 + 5, 1, |tx| {
        add_visit(tx, "v1")
    });
    s.signature.0[3] ^= 0x40;
    let err = refused(&net, &mut doc, batch(c, s));
    assert_eq!(err.reason(), "bad-signature");
}

#[test]
fn signature_for_another_document_is_rejected() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let (c, _) = forge(&net, &mut doc, &net.c_wang, T0 + 5, 1, |tx| {
        add_visit(tx, "v1")
    });
    let other = linli_crdt_model::doc::DocId([9; 32]);
    let s = ChangeSignature::sign(net.trust.network(), other, c.hash(), &net.c_wang);
    assert_eq!(
        refused(&net, &mut doc, batch(c, s)).reason(),
        "bad-signature"
    );
}

#[test]
fn unknown_key_is_rejected() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let stranger = key(99);
    let (c, s) = forge(&net, &mut doc, &stranger, T0 + 5, 1, |tx| {
        add_visit(tx, "v1")
    });
    assert!(
        matches!(refused(&net, &mut doc, batch(c, s)), Rejected::UnknownKey { author, .. } if author == stranger.public())
    );
}

#[test]
fn key_certified_by_a_non_admin_is_untrusted() {
    let mut net = Net::new();
    let mallory = key(98);
    // 王芳 is a writer, not an admin: her certificate for mallory proves nothing.
    let bogus = cert(
        &net.trust,
        &net.c_wang,
        &mallory,
        &net.shengli,
        Role::Writer,
        "冒充者",
    );
    net.trust.insert_certificates([bogus]).unwrap();
    let (mut doc, _) = net.visit_log().unwrap();
    let (c, s) = forge(&net, &mut doc, &mallory, T0 + 5, 1, |tx| {
        add_visit(tx, "v1")
    });
    assert_eq!(refused(&net, &mut doc, batch(c, s)).reason(), "untrusted");
}

#[test]
fn writer_outside_the_documents_unit_is_rejected() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    // 赵敏 works for 前进社区, not 胜利社区.
    let (c, s) = forge(&net, &mut doc, &net.q_zhao, T0 + 5, 1, |tx| {
        add_visit(tx, "v1")
    });
    let err = refused(&net, &mut doc, batch(c, s));
    assert_eq!(err.reason(), "not-permitted");
    assert!(
        err.to_string()
            .contains("writer of tiedong/jiefang/qianjin"),
        "{err}"
    );
    // The district, above the community, may hold the log but not write it either.
    let (c, s) = forge(&net, &mut doc, &net.d_node, T0 + 5, 2, |tx| {
        add_visit(tx, "v2")
    });
    assert_eq!(
        refused(&net, &mut doc, batch(c, s)).reason(),
        "not-permitted"
    );
}

#[test]
fn change_dated_after_certificate_expiry_is_rejected() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let (c, s) = forge(&net, &mut doc, &net.c_wang, T0 + 2 * YEAR, 1, |tx| {
        add_visit(tx, "v1")
    });
    let mut ctx_net = net.clone();
    ctx_net.limits.clock_skew_ms_max = 3 * YEAR;
    let err = refused_at(&ctx_net.ctx(T0), &mut doc, batch(c, s));
    assert_eq!(err.reason(), "expired");
}

#[test]
fn change_dated_in_the_future_is_rejected() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let (c, s) = forge(&net, &mut doc, &net.c_wang, T0 + 30 * DAY, 1, |tx| {
        add_visit(tx, "v1")
    });
    assert_eq!(
        refused(&net, &mut doc, batch(c, s)).reason(),
        "future-timestamp"
    );
}

#[test]
fn revoked_key_is_rejected_from_its_cutoff() {
    let mut net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let (kept, kept_sig) = forge(&net, &mut doc, &net.c_li, T0 + 5, 1, |tx| {
        add_visit(tx, "v1")
    });
    let (later, later_sig) = forge(&net, &mut doc, &net.c_li, T0 + 6, 2, |tx| {
        add_visit(tx, "v2")
    });
    let rev = Revocation::issue(
        RevocationBody {
            network: net.trust.network(),
            key: net.c_li.public(),
            issuer: net.c_admin.public(),
            unit: net.shengli.id.clone(),
            at_ms: T0 + 10,
            cutoff_ms: T0 + 6,
            reason: "工作调动".to_owned(),
            keep_issued: true,
        },
        &net.c_admin,
    );
    net.trust.insert_revocations([rev]).unwrap();
    assert!(net.trust.is_revoked(&net.c_li.public()));
    assert_eq!(
        refused(&net, &mut doc, batch(later, later_sig)).reason(),
        "revoked"
    );
    doc.ingest(&net.ctx(T0 + DAY), batch(kept, kept_sig))
        .expect("a change signed before the cutoff stays valid");
}

#[test]
fn revocation_by_someone_without_authority_has_no_effect() {
    let mut net = Net::new();
    // A community admin cannot revoke the street's node.
    let rev = Revocation::issue(
        RevocationBody {
            network: net.trust.network(),
            key: net.s_node.public(),
            issuer: net.c_admin.public(),
            unit: net.street.id.clone(),
            at_ms: T0,
            cutoff_ms: T0,
            reason: "越权".to_owned(),
            keep_issued: false,
        },
        &net.c_admin,
    );
    let id = rev.id();
    net.trust.insert_revocations([rev]).unwrap();
    assert!(!net.trust.is_effective(&id));
    assert!(!net.trust.is_revoked(&net.s_node.public()));
}

#[test]
fn batch_of_another_network_is_rejected() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let (c, s) = forge(&net, &mut doc, &net.c_wang, T0 + 5, 1, |tx| {
        add_visit(tx, "v1")
    });
    let b = Batch {
        network: Some(NetworkId([7; 32])),
        changes: vec![c],
        signatures: vec![s],
    };
    assert_eq!(refused(&net, &mut doc, b).reason(), "wrong-network");
}

#[test]
fn schema_violation_is_rejected() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let (c, s) = forge(&net, &mut doc, &net.c_wang, T0 + 5, 1, |tx| {
        use automerge::transaction::Transactable;
        tx.delete(automerge::ROOT, "entries").unwrap();
    });
    assert_eq!(
        refused(&net, &mut doc, batch(c, s)).reason(),
        "schema-violation"
    );
}

#[test]
fn oversized_batch_is_rejected() {
    let mut net = Net::new();
    net.limits.changes_per_batch_max = 1;
    let (mut doc, _) = net.visit_log().unwrap();
    let (c1, s1) = forge(&net, &mut doc, &net.c_wang, T0 + 5, 1, |tx| {
        add_visit(tx, "v1")
    });
    let (c2, s2) = forge(&net, &mut doc, &net.c_wang, T0 + 5, 2, |tx| {
        add_visit(tx, "v2")
    });
    let b = Batch {
        network: None,
        changes: vec![c1, c2],
        signatures: vec![s1, s2],
    };
    assert!(matches!(
        refused(&net, &mut doc, b),
        Rejected::LimitExceeded { len: 2, max: 1, .. }
    ));
}

#[test]
fn change_with_a_missing_dependency_waits_for_it() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let mut ahead = doc.clone();
    let ctx = net.ctx(T0);
    let (_, first) = ahead
        .edit(&ctx, &net.c_wang, T0 + 5, None, |tx| {
            kinds::visits::add_entry(tx, "v1", &visit("h1", "王芳", "2026-11-03", T0))
        })
        .unwrap();
    let first_change = ahead
        .changes()
        .into_iter()
        .find(|c| c.hash().0 == first.hash)
        .unwrap();
    let (c, s) = forge(&net, &mut ahead, &net.c_wang, T0 + 6, 2, |tx| {
        add_visit(tx, "v2")
    });
    // The second change arrives first: checked, held back, not yet in the document.
    let before = doc.heads();
    let applied = doc.ingest(&net.ctx(T0 + DAY), batch(c.clone(), s)).unwrap();
    assert!(applied.new.is_empty());
    assert_eq!(doc.n_deferred(), 1);
    assert_eq!(doc.heads(), before);
    // Its dependency arrives: both are applied, in causal order.
    let applied = doc
        .ingest(&net.ctx(T0 + DAY), batch(first_change, first))
        .unwrap();
    assert_eq!(applied.new.len(), 2);
    assert_eq!(doc.n_deferred(), 0);
    assert_eq!(doc.heads(), vec![c.hash()]);
    assert_eq!(kinds::visits::hydrate(doc.read()).unwrap().entries.len(), 2);
}

#[test]
fn a_waiting_change_is_still_checked_first() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let mut ahead = doc.clone();
    ahead
        .edit(&net.ctx(T0), &net.c_wang, T0 + 5, None, |tx| {
            kinds::visits::add_entry(tx, "v1", &visit("h1", "王芳", "2026-11-03", T0))
        })
        .unwrap();
    // A change by someone without authority is refused even while its dependency is missing.
    let (c, s) = forge(&net, &mut ahead, &net.q_zhao, T0 + 6, 2, |tx| {
        add_visit(tx, "v2")
    });
    assert_eq!(
        refused(&net, &mut doc, batch(c, s)).reason(),
        "not-permitted"
    );
    assert_eq!(doc.n_deferred(), 0);
}

/// A change its author may not make is set aside, with its reason; the rest of the batch is
/// taken (an honest relay cannot always know what this node refuses).
#[test]
fn an_unauthorised_change_is_set_aside_and_the_rest_is_taken() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let (c1, s1) = forge(&net, &mut doc, &net.c_wang, T0 + 5, 1, |tx| {
        add_visit(tx, "v1")
    });
    let (c2, s2) = forge(&net, &mut doc, &net.q_zhao, T0 + 5, 2, |tx| {
        add_visit(tx, "v2")
    });
    let (h1, h2) = (c1.hash(), c2.hash());
    let b = Batch {
        network: None,
        changes: vec![c1, c2],
        signatures: vec![s1, s2],
    };
    let applied = doc.ingest(&net.ctx(T0 + DAY), b).unwrap();
    assert_eq!(applied.new, vec![h1]);
    assert_eq!(applied.set_aside.len(), 1);
    assert_eq!(applied.set_aside[0].change, h2);
    assert_eq!(applied.set_aside[0].reason.reason(), "not-permitted");
    assert!(doc.has_change(&h1) && !doc.has_change(&h2));
}

/// `n` visits by 王芳 in one batch; the changes listed in `bad_sig` carry a broken signature,
/// those in `not_permitted` are by 赵强, who may not write this log.
fn big_batch(
    net: &Net,
    doc: &mut Document,
    n: u8,
    bad_sig: &[u8],
    not_permitted: &[u8],
) -> (Batch, Vec<ChangeHash>) {
    let mut b = Batch::default();
    let mut hashes = Vec::new();
    for i in 0..n {
        let who = if not_permitted.contains(&i) {
            &net.q_zhao
        } else {
            &net.c_wang
        };
        let (c, mut s) = forge(net, doc, who, T0 + 5, i, |tx| {
            add_visit(tx, &format!("v{i}"))
        });
        if bad_sig.contains(&i) {
            s.signature.0[3] ^= 0x40;
        }
        hashes.push(c.hash());
        b.changes.push(c);
        b.signatures.push(s);
    }
    (b, hashes)
}

/// Large batches are verified on a second thread while the copy is judged and applied: the
/// outcome and the reason given must be those of checking one step after the other.
#[test]
fn a_large_batch_is_judged_as_if_checked_in_order() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();

    let (b, hashes) = big_batch(&net, &mut doc, 100, &[97], &[]);
    let err = refused(&net, &mut doc, b);
    assert_eq!(
        err,
        Rejected::BadSignature {
            change: hashes[97],
            author: net.c_wang.public(),
        }
    );

    // A bad signature outranks a refusal of authority found at the same time.
    let (b, _) = big_batch(&net, &mut doc, 100, &[90], &[3]);
    assert_eq!(refused(&net, &mut doc, b).reason(), "bad-signature");
    let (b, hashes) = big_batch(&net, &mut doc.clone(), 100, &[], &[3]);
    let applied = doc.clone().ingest(&net.ctx(T0 + DAY), b).unwrap();
    assert_eq!(applied.new.len(), 99);
    assert!(matches!(
        &applied.set_aside[..],
        [s] if matches!(s.reason, Rejected::NotPermitted { change, .. } if change == hashes[3])
    ));

    let (b, hashes) = big_batch(&net, &mut doc, 100, &[], &[]);
    let applied = doc.ingest(&net.ctx(T0 + DAY), b).expect("honest batch");
    assert_eq!(applied.new.len(), 100);
    for h in &hashes {
        assert!(doc.signature(h).is_some());
    }
}

#[test]
fn local_edit_by_someone_without_authority_is_refused_and_rolled_back() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let before = doc.heads();
    let err = doc
        .edit(&net.ctx(T0), &net.q_zhao, T0 + 5, None, |tx| {
            kinds::visits::add_entry(tx, "v1", &visit("h1", "赵敏", "2026-11-03", T0))
        })
        .unwrap_err();
    assert!(matches!(err, EditRefused::Denied(_)), "{err}");
    assert_eq!(doc.heads(), before);
    assert!(
        kinds::visits::hydrate(doc.read())
            .unwrap()
            .entries
            .is_empty()
    );
}

#[test]
fn save_and_load_round_trip_with_a_fresh_actor() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    doc.edit(&net.ctx(T0), &net.c_wang, T0 + 5, None, |tx| {
        kinds::visits::add_entry(tx, "v1", &visit("h1", "王芳", "2026-11-03", T0))
    })
    .unwrap();
    let bytes = doc.save();
    let sigs: Vec<_> = doc.signatures().cloned().collect();
    let mut loaded = Document::load(doc.header().clone(), &bytes, sigs, actor(77)).unwrap();
    assert_eq!(loaded.heads(), doc.heads());
    assert_eq!(
        kinds::visits::hydrate(loaded.read()).unwrap(),
        kinds::visits::hydrate(doc.read()).unwrap()
    );
    // The new incarnation writes under its own actor, so the two never collide.
    loaded
        .edit(&net.ctx(T0), &net.c_wang, T0 + 6, None, |tx| {
            kinds::visits::add_entry(tx, "v2", &visit("h2", "王芳", "2026-11-04", T0))
        })
        .unwrap();
    doc.edit(&net.ctx(T0), &net.c_li, T0 + 6, None, |tx| {
        kinds::visits::add_entry(tx, "v3", &visit("h3", "李强", "2026-11-04", T0))
    })
    .unwrap();
    let mut back = replica(&net, &mut loaded);
    let sigs: Vec<_> = doc.signatures().cloned().collect();
    back.ingest(
        &net.ctx(T0 + DAY),
        Batch {
            network: None,
            changes: doc.changes(),
            signatures: sigs,
        },
    )
    .unwrap();
    assert_eq!(
        kinds::visits::hydrate(back.read()).unwrap().entries.len(),
        3
    );
    assert!(Document::load(doc.header().clone(), b"not automerge", vec![], actor(78)).is_err());
}

/// The district's task list with one request, reviewed and approved; returns the ids.
struct Admission {
    district_tasks: Document,
    review: Attestation,
    approval: Attestation,
}

fn admission(net: &Net) -> Admission {
    let h = net.header(
        Kind::TaskList,
        &net.district,
        &net.d_node,
        "铁东区 工作事项申请",
        None,
    );
    let mut h = h;
    h.scope = linli_crdt_model::doc::Scope::Public;
    let ctx = net.ctx(T0);
    let (mut d, _) = Document::create(&ctx, h, &net.d_node, actor(2), kinds::tasks::init).unwrap();
    d.edit(&ctx, &net.d_admin, T0 + 10, Some("request"), |tx| {
        kinds::tasks::add_request(
            tx,
            "r1",
            &kinds::tasks::Request {
                title: "老旧小区加装电梯意愿摸排".to_owned(),
                department: "区住建局".to_owned(),
                legal_basis: "《城市居民委员会组织法》第三条".to_owned(),
                funding: "区财政 每社区 2 万元".to_owned(),
                staffing: "住建局派驻 1 人".to_owned(),
                target_units: vec!["tiedong/jiefang/shengli".to_owned()],
                due: Some("2026-12-31".to_owned()),
                created_at_ms: T0 + 10,
            },
        )
    })
    .unwrap();
    let heads: Vec<[u8; 32]> = d.heads().iter().map(|h| h.0).collect();
    let att = |key: &SecretKey, statement, at| {
        Attestation::issue(
            AttestationBody {
                network: net.trust.network(),
                issuer: key.public(),
                statement,
                doc: d.id(),
                doc_unit: net.district.id.clone(),
                heads: heads.clone(),
                subject: Some("r1".to_owned()),
                targets: vec![net.shengli.id.clone()],
                at_ms: at,
                note: String::new(),
                checkpoint: vec![],
            },
            key,
        )
    };
    let review = att(&net.d_reviewer, Statement::Reviewed, T0 + 20);
    let approval = att(&net.d_approver, Statement::Approved, T0 + 30);
    Admission {
        district_tasks: d,
        review,
        approval,
    }
}

fn admitted_task(a: &Admission, approval: &str) -> kinds::tasks::NewTask {
    kinds::tasks::NewTask {
        title: "老旧小区加装电梯意愿摸排".to_owned(),
        category: kinds::tasks::Category::Admitted,
        due: Some("2026-12-31".to_owned()),
        assignee: None,
        note: String::new(),
        admission: Some(kinds::tasks::Admission {
            request_doc: a.district_tasks.id().to_string(),
            request_id: "r1".to_owned(),
            review: a.review.id().to_string(),
            approval: approval.to_owned(),
        }),
    }
}

fn community_tasks(net: &Net) -> Document {
    let h = net.header(
        Kind::TaskList,
        &net.shengli,
        &net.c_node,
        "胜利社区 工作事项",
        None,
    );
    Document::create(&net.ctx(T0), h, &net.c_node, actor(3), kinds::tasks::init)
        .unwrap()
        .0
}

#[test]
fn admitted_task_needs_the_districts_review_and_approval() {
    let mut net = Net::new();
    let a = admission(&net);
    let mut tasks = community_tasks(&net);
    let approval = a.approval.id().to_string();

    // Without the attestations known, the community refuses to admit the task.
    let err = tasks
        .edit(&net.ctx(T0), &net.c_node, T0 + 40, None, |tx| {
            kinds::tasks::add_task(tx, "t1", &admitted_task(&a, &approval), T0 + 40)
        })
        .unwrap_err();
    assert!(matches!(err, EditRefused::Admission { .. }), "{err}");
    assert!(err.to_string().contains("review attestation"), "{err}");

    // With only the review, still refused.
    net.attestations
        .insert(a.review.clone(), &net.trust.network())
        .unwrap();
    let err = tasks
        .edit(&net.ctx(T0), &net.c_node, T0 + 40, None, |tx| {
            kinds::tasks::add_task(tx, "t1", &admitted_task(&a, &approval), T0 + 40)
        })
        .unwrap_err();
    assert!(err.to_string().contains("approval attestation"), "{err}");

    // A review in the approval's place is the wrong statement.
    let review_id = a.review.id().to_string();
    let err = tasks
        .edit(&net.ctx(T0), &net.c_node, T0 + 40, None, |tx| {
            kinds::tasks::add_task(tx, "t1", &admitted_task(&a, &review_id), T0 + 40)
        })
        .unwrap_err();
    assert!(err.to_string().contains("not approved"), "{err}");

    // Both: admitted.
    net.attestations
        .insert(a.approval.clone(), &net.trust.network())
        .unwrap();
    tasks
        .edit(&net.ctx(T0), &net.c_node, T0 + 40, None, |tx| {
            kinds::tasks::add_task(tx, "t1", &admitted_task(&a, &approval), T0 + 40)
        })
        .unwrap();
    let audit = tasks.audit(&net.trust, &net.attestations);
    assert!(audit.problems.is_empty(), "{:?}", audit.problems);

    // A peer that lacks the approval refuses the change over the wire…
    let mut peer_net = Net::new();
    peer_net
        .attestations
        .insert(a.review.clone(), &net.trust.network())
        .unwrap();
    let mut peer = Document::empty(tasks.header().clone(), actor(60));
    let sigs: Vec<_> = tasks.signatures().cloned().collect();
    let err = peer
        .ingest(
            &peer_net.ctx(T0 + DAY),
            Batch {
                network: None,
                changes: tasks.changes(),
                signatures: sigs.clone(),
            },
        )
        .unwrap_err();
    assert_eq!(err.reason(), "admission");
    assert!(peer.heads().is_empty());
    // …and its audit of a copy that got in anyway flags the task.
    let audit = tasks.audit(&peer_net.trust, &peer_net.attestations);
    assert_eq!(audit.problems.len(), 1, "{:?}", audit.problems);
    assert!(
        audit.problems[0].contains("admitted task t1"),
        "{:?}",
        audit.problems
    );
}

#[test]
fn approval_by_a_street_does_not_admit() {
    let mut net = Net::new();
    let a = admission(&net);
    // The street's approver signs an approval: right statement, wrong level.
    let mut body = a.approval.body.clone();
    body.issuer = net.s_approver.public();
    let street_approval = Attestation::issue(body, &net.s_approver);
    net.attestations
        .insert(a.review.clone(), &net.trust.network())
        .unwrap();
    net.attestations
        .insert(street_approval.clone(), &net.trust.network())
        .unwrap();
    let mut tasks = community_tasks(&net);
    let id = street_approval.id().to_string();
    let err = tasks
        .edit(&net.ctx(T0), &net.c_node, T0 + 40, None, |tx| {
            kinds::tasks::add_task(tx, "t1", &admitted_task(&a, &id), T0 + 40)
        })
        .unwrap_err();
    assert!(
        err.to_string().contains("not made by a district approver"),
        "{err}"
    );
}

fn convention(net: &Net) -> Document {
    let h = net.header(
        Kind::Convention,
        &net.shengli,
        &net.c_node,
        "胜利社区居民公约",
        None,
    );
    let ctx = net.ctx(T0);
    let (mut d, _) =
        Document::create(&ctx, h, &net.c_node, actor(4), kinds::convention::init).unwrap();
    d.edit(&ctx, &net.c_wang, T0 + 1, Some("起草"), |tx| {
        kinds::convention::add_article(tx, "a1", 1, "爱护环境", "不乱扔垃圾，垃圾分类投放。")?;
        kinds::convention::add_article(tx, "a2", 2, "邻里互助", "邻里之间互相帮助，关心独居老人。")
    })
    .unwrap();
    d
}

fn filed(net: &Net, doc: &mut Document, by: &SecretKey, at_ms: i64) -> Attestation {
    Attestation::issue(
        AttestationBody {
            network: net.trust.network(),
            issuer: by.public(),
            statement: Statement::Filed,
            doc: doc.id(),
            doc_unit: net.shengli.id.clone(),
            heads: doc.heads().iter().map(|h| h.0).collect(),
            subject: None,
            targets: vec![],
            at_ms,
            note: "备案".to_owned(),
            checkpoint: vec![],
        },
        by,
    )
}

#[test]
fn convention_edited_after_filing_reports_changed_since_filing_with_a_diff() {
    let mut net = Net::new();
    let mut conv = convention(&net);
    assert_eq!(conv.filing(&net.trust, &net.attestations), Filing::NotFiled);
    let att = filed(&net, &mut conv, &net.s_approver, T0 + 2);
    net.attestations.insert(att, &net.trust.network()).unwrap();
    assert_eq!(conv.filing(&net.trust, &net.attestations).label(), "filed");

    conv.edit(&net.ctx(T0), &net.c_wang, T0 + 3, Some("修订"), |tx| {
        kinds::convention::edit_article_text(tx, "a1", "不乱扔垃圾，垃圾分类投放，不高空抛物。")
    })
    .unwrap();
    let Filing::ChangedSinceFiling {
        changes_since,
        diff,
        by,
        ..
    } = conv.filing(&net.trust, &net.attestations)
    else {
        panic!("expected changed since filing");
    };
    assert_eq!(changes_since, 1);
    assert_eq!(by, "街道 孙备 (tiedong/jiefang)");
    expect![[r#"
        --- filed
        +++ now
        @@ -1,5 +1,5 @@
         第1条 爱护环境
        -不乱扔垃圾，垃圾分类投放。
        +不乱扔垃圾，垃圾分类投放，不高空抛物。
         
         第2条 邻里互助
         邻里之间互相帮助，关心独居老人。
    "#]]
    .assert_eq(&diff);
}

#[test]
fn only_a_unit_above_may_file() {
    let mut net = Net::new();
    let mut conv = convention(&net);
    // The community's own admin cannot file its own convention.
    let att = filed(&net, &mut conv, &net.c_admin, T0 + 2);
    assert!(att.check(&net.trust).is_err());
    net.attestations.insert(att, &net.trust.network()).unwrap();
    assert_eq!(conv.filing(&net.trust, &net.attestations), Filing::NotFiled);
}

#[test]
fn checkpoint_comparison_names_who_is_behind() {
    let net = Net::new();
    let (mut mine, _) = net.visit_log().unwrap();
    let mut district = replica(&net, &mut mine);
    let entry = |d: &mut Document| CheckpointEntry {
        doc: d.id(),
        unit: d.header().header.unit.clone(),
        scope: d.header().header.scope,
        heads: d.heads().iter().map(|h| h.0).collect(),
        n_changes: d.n_changes() as u64,
    };
    let cp_at = T0 + 100;
    let cmp = |m: &mut Document, e: &CheckpointEntry| {
        let heads: Vec<[u8; 32]> = m.heads().iter().map(|h| h.0).collect();
        let n = m.n_changes() as u64;
        let newest = m.changes().iter().map(|c| c.timestamp()).max().unwrap_or(0);
        let m2 = std::cell::RefCell::new(m.clone());
        attest::compare(&heads, n, newest, e, cp_at, |h| {
            m2.borrow_mut().has_change(&ChangeHash(*h))
        })
    };
    let e = entry(&mut district);
    assert_eq!(cmp(&mut mine, &e), Comparison::Same);

    mine.edit(&net.ctx(T0), &net.c_wang, T0 + 50, None, |tx| {
        kinds::visits::add_entry(tx, "v1", &visit("h1", "王芳", "2026-11-03", T0))
    })
    .unwrap();
    assert_eq!(cmp(&mut mine, &e), Comparison::IssuerBehind);

    let mut behind = replica(&net, &mut district);
    let sigs: Vec<_> = mine.signatures().cloned().collect();
    district
        .ingest(
            &net.ctx(T0 + DAY),
            Batch {
                network: None,
                changes: mine.changes(),
                signatures: sigs,
            },
        )
        .unwrap();
    let e2 = entry(&mut district);
    assert_eq!(cmp(&mut behind, &e2), Comparison::IAmBehind);

    behind
        .edit(&net.ctx(T0), &net.c_li, T0 + 200, None, |tx| {
            kinds::visits::add_entry(tx, "v9", &visit("h3", "李强", "2026-11-05", T0))
        })
        .unwrap();
    assert_eq!(cmp(&mut behind, &e2), Comparison::Diverged);
}

#[test]
fn checkpoints_are_only_signed_by_districts() {
    let net = Net::new();
    let body = |issuer: &SecretKey| AttestationBody {
        network: net.trust.network(),
        issuer: issuer.public(),
        statement: Statement::Checkpoint,
        doc: linli_crdt_model::doc::DocId([1; 32]),
        doc_unit: net.district.id.clone(),
        heads: vec![],
        subject: None,
        targets: vec![],
        at_ms: T0,
        note: String::new(),
        checkpoint: vec![],
    };
    assert!(
        Attestation::issue(body(&net.d_node), &net.d_node)
            .check(&net.trust)
            .is_ok()
    );
    assert!(
        Attestation::issue(body(&net.s_node), &net.s_node)
            .check(&net.trust)
            .is_err()
    );
}

#[test]
fn audit_names_author_unit_role_and_covering_attestations() {
    let mut net = Net::new();
    let mut conv = convention(&net);
    let att = filed(&net, &mut conv, &net.s_approver, T0 + 2);
    net.attestations.insert(att, &net.trust.network()).unwrap();
    conv.edit(
        &net.ctx(T0),
        &net.c_li,
        T0 + 3,
        Some("修订第二条"),
        |tx| kinds::convention::edit_article_text(tx, "a2", "邻里之间互相帮助。"),
    )
    .unwrap();
    let audit = conv.audit(&net.trust, &net.attestations);
    let rendered: String = audit
        .changes
        .iter()
        .map(|e| {
            format!(
                "{} {} {} {} {} {:?} [{}]\n",
                e.at_ms - T0,
                e.holder.as_deref().unwrap_or("?"),
                e.unit.as_deref().unwrap_or("?"),
                e.role.as_deref().unwrap_or("?"),
                e.verdict,
                e.message.as_deref().unwrap_or(""),
                e.covered_by
                    .iter()
                    .map(|c| c.split(' ').next().unwrap_or(""))
                    .collect::<Vec<_>>()
                    .join(",")
            )
        })
        .collect();
    expect![[r#"
        0 胜利社区节点 tiedong/jiefang/shengli node valid "create" [filed]
        1 王芳 tiedong/jiefang/shengli writer valid "起草" [filed]
        3 李强 tiedong/jiefang/shengli writer valid "修订第二条" []
    "#]]
    .assert_eq(&rendered);
    assert!(audit.problems.is_empty());
    assert_eq!(
        audit.filing.as_ref().map(Filing::label),
        Some("changed since filing")
    );
}

#[test]
fn audit_flags_changes_that_lost_their_authority() {
    let mut net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    doc.edit(&net.ctx(T0), &net.c_li, T0 + 5, None, |tx| {
        kinds::visits::add_entry(tx, "v1", &visit("h3", "李强", "2026-11-03", T0))
    })
    .unwrap();
    assert!(doc.verify(&net.trust, &net.attestations).is_empty());
    let rev = Revocation::issue(
        RevocationBody {
            network: net.trust.network(),
            key: net.c_li.public(),
            issuer: net.s_admin.public(),
            unit: net.shengli.id.clone(),
            at_ms: T0 + 10,
            cutoff_ms: T0 + 1,
            reason: "密钥泄露".to_owned(),
            keep_issued: false,
        },
        &net.s_admin,
    );
    net.trust.insert_revocations([rev]).unwrap();
    let problems = doc.verify(&net.trust, &net.attestations);
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert!(problems[0].what.contains("revoked"), "{problems:?}");
}

/// A node keeps a document's header before its first change arrives (the first sync round
/// carries no changes): until then there is nothing to check against the schema, so verify must
/// not call it a problem — `linli verify` would fail on a healthy node in the middle of a sync.
#[test]
fn a_document_whose_changes_have_not_arrived_verifies() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let mut waiting = Document::empty(doc.header().clone(), actor(51));
    let problems = waiting.verify(&net.trust, &net.attestations);
    assert!(problems.is_empty(), "{problems:?}");
    // Once the changes arrive, the schema is checked as always.
    let mut full = replica(&net, &mut doc);
    assert!(full.verify(&net.trust, &net.attestations).is_empty());
}

#[test]
fn certificates_chain_to_the_root_and_expire() {
    let net = Net::new();
    let wang = net.c_wang.public();
    let grant = net
        .trust
        .authorize(&wang, T0, |u, role| {
            u.id == net.shengli.id && role == Role::Writer
        })
        .unwrap();
    assert_eq!(grant.holder, "王芳");
    assert_eq!(
        net.trust.chain_of(&wang).len(),
        4,
        "王芳 ← 社区 admin ← 街道 admin ← 区 admin"
    );
    assert!(
        net.trust
            .authorize(&wang, T0 + 2 * YEAR, |_, _| true)
            .is_err()
    );
    let _ = testkit::unit("x", linli_crdt_model::unit::UnitKind::Grid, "x");
}

/// Two replicas sync over the model's framing until neither has anything to say.
fn sync_pair(net: &Net, a: &mut Document, b: &mut Document) -> usize {
    let (mut sa, mut sb) = (automerge::sync::State::new(), automerge::sync::State::new());
    let limits = linli_crdt_model::wire::Limits::default();
    let network = net.trust.network();
    let mut rounds = 0;
    loop {
        let mut quiet = true;
        if let Some(out) = a.generate_sync(&mut sa) {
            b.receive_sync(
                &net.ctx(T0 + DAY),
                &mut sb,
                network,
                &out.message,
                &out.signatures,
                &limits,
            )
            .unwrap();
            quiet = false;
        }
        if let Some(out) = b.generate_sync(&mut sb) {
            a.receive_sync(
                &net.ctx(T0 + DAY),
                &mut sa,
                network,
                &out.message,
                &out.signatures,
                &limits,
            )
            .unwrap();
            quiet = false;
        }
        rounds += 1;
        if quiet || rounds > 20 {
            return rounds;
        }
    }
}

#[test]
fn signed_sync_converges_both_ways() {
    let net = Net::new();
    let (mut a, _) = net.visit_log().unwrap();
    let mut b = Document::empty(a.header().clone(), actor(61));
    a.edit(&net.ctx(T0), &net.c_wang, T0 + 5, None, |tx| {
        kinds::visits::add_entry(tx, "v1", &visit("h1", "王芳", "2026-11-03", T0))
    })
    .unwrap();
    let rounds = sync_pair(&net, &mut a, &mut b);
    assert!(rounds < 10, "sync took {rounds} rounds");
    b.edit(&net.ctx(T0), &net.c_li, T0 + 6, None, |tx| {
        kinds::visits::add_entry(tx, "v2", &visit("h3", "李强", "2026-11-04", T0))
    })
    .unwrap();
    sync_pair(&net, &mut a, &mut b);
    assert_eq!(a.heads(), b.heads());
    assert_eq!(kinds::visits::hydrate(a.read()).unwrap().entries.len(), 2);
}

#[test]
fn hostile_sync_bytes_are_refused_and_change_nothing() {
    let net = Net::new();
    let (mut a, _) = net.visit_log().unwrap();
    let mut state = automerge::sync::State::new();
    let limits = linli_crdt_model::wire::Limits::default();
    let before = a.heads();
    // A V1 message whose one `have` carries a Bloom filter claiming 5 entries at 0 bits each
    // (and an empty flags field).
    let zero_bloom = hostile::message(&[], &[(&[], hostile::bloom(5, 0, 7, 0))], &[], Some(&[]));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("zero-bit bloom", zero_bloom),
        ("garbage", b"\x42\xff\xff\xff\xff\xff".to_vec()),
        ("v2", vec![0x43, 0, 0, 0, 0]),
        ("empty", vec![]),
    ];
    for (what, bytes) in cases {
        let err = a
            .receive_sync(
                &net.ctx(T0),
                &mut state,
                net.trust.network(),
                &bytes,
                &Signatures::default(),
                &limits,
            )
            .expect_err(what);
        assert_eq!(err.reason(), "malformed", "{what}: {err}");
        if what == "zero-bit bloom" {
            assert!(err.to_string().contains("bit"), "{err}");
        }
        assert_eq!(a.heads(), before, "{what} changed the document");
    }
    // The document still answers an honest peer.
    assert!(
        a.generate_sync(&mut automerge::sync::State::new())
            .is_some()
    );
}

#[test]
fn a_bad_record_is_caught_by_checking_only_what_changed() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    // A raw write of one entry dated outside the log's month: only that record is touched, and
    // the per-record check refuses it just as a full hydrate would.
    let (c, s) = forge(&net, &mut doc, &net.c_wang, T0 + 5, 1, |tx| {
        use automerge::ReadDoc;
        use automerge::transaction::Transactable;
        let entries = tx.get(automerge::ROOT, "entries").unwrap().unwrap().1;
        let e = tx
            .put_object(&entries, "v-bad", automerge::ObjType::Map)
            .unwrap();
        for (k, v) in [
            ("household_id", "h1"),
            ("worker", "王芳"),
            ("date", "2026-12-01"),
            ("mode", "door"),
        ] {
            tx.put(&e, k, v).unwrap();
        }
        tx.put_object(&e, "needs", automerge::ObjType::List)
            .unwrap();
        tx.put(&e, "follow_up", automerge::ScalarValue::Null)
            .unwrap();
        tx.put(&e, "at_ms", T0).unwrap();
    });
    let err = refused(&net, &mut doc, batch(c, s));
    assert_eq!(err.reason(), "schema-violation");
    assert!(err.to_string().contains("entries/v-bad/date"), "{err}");
}

#[test]
fn a_large_sync_is_split_across_rounds_within_the_budget() {
    let net = Net::new();
    let (mut a, _) = net.visit_log().unwrap();
    for i in 0..40 {
        a.edit(&net.ctx(T0), &net.c_wang, T0 + 10 + i, None, |tx| {
            kinds::visits::add_entry(tx, &format!("v{i}"), &visit("h1", "王芳", "2026-11-03", T0))
        })
        .unwrap();
    }
    let mut b = Document::empty(a.header().clone(), actor(62));
    let (mut sa, mut sb) = (automerge::sync::State::new(), automerge::sync::State::new());
    let limits = linli_crdt_model::wire::Limits::default();
    let budget = 4 * 1024;
    let (mut rounds, mut biggest) = (0, 0);
    loop {
        let mut quiet = true;
        if let Some(out) = a.generate_sync_within(&mut sa, budget) {
            biggest = biggest.max(out.message.len());
            b.receive_sync(
                &net.ctx(T0 + DAY),
                &mut sb,
                net.trust.network(),
                &out.message,
                &out.signatures,
                &limits,
            )
            .unwrap();
            quiet = false;
        }
        if let Some(out) = b.generate_sync_within(&mut sb, budget) {
            a.receive_sync(
                &net.ctx(T0 + DAY),
                &mut sa,
                net.trust.network(),
                &out.message,
                &out.signatures,
                &limits,
            )
            .unwrap();
            quiet = false;
        }
        rounds += 1;
        assert!(rounds < 100, "no convergence");
        if quiet {
            break;
        }
    }
    assert_eq!(a.heads(), b.heads());
    assert!(
        rounds > 3,
        "the sync should have needed several rounds, took {rounds}"
    );
    assert!(
        biggest < 2 * budget,
        "a message of {biggest} bytes exceeds the budget"
    );
}

/// Signatures travel packed (no hashes, authors by index); unpacking pairs them with the
/// carried changes' hashes, and anything that does not fit is refused before verification.
#[test]
fn packed_signatures_pair_with_the_carried_changes() {
    let net = Net::new();
    let (mut doc, _) = net.visit_log().unwrap();
    let (b, hashes) = big_batch(&net, &mut doc, 5, &[], &[]);
    let mut want = b.signatures.clone();
    want.sort_by_key(|s| s.hash);
    let packed = Signatures::pack(b.signatures.iter().rev().cloned());
    assert_eq!(packed.len(), 5);
    assert_eq!(packed.authors(), &[net.c_wang.public()]);
    assert_eq!(packed.unpack(&hashes).unwrap(), want);
    let bytes = postcard::to_allocvec(&packed).unwrap();
    let full = postcard::to_allocvec(&b.signatures).unwrap();
    // 64 bytes a signature and one an index, one author key, a few bytes of lengths.
    assert!(
        bytes.len() <= 5 * 65 + 32 + 8,
        "{} (full form {})",
        bytes.len(),
        full.len()
    );
    assert_eq!(postcard::from_bytes::<Signatures>(&bytes).unwrap(), packed);

    let err = packed.unpack(&hashes[..4]).unwrap_err();
    expect!["malformed input: signatures: 5 signatures for 4 changes"].assert_eq(&err.to_string());
    let mut sorted = hashes.clone();
    sorted.sort();
    let four = Signatures::pack(want[..4].iter().cloned());
    assert_eq!(
        four.unpack(&hashes).unwrap_err(),
        Rejected::Unsigned { change: sorted[4] }
    );
    // Duplicated hashes in a message are one change.
    let mut twice = hashes.clone();
    twice.push(hashes[0]);
    assert_eq!(packed.unpack(&twice).unwrap(), want);

    // A table index past the end, or signature bytes that do not fit the count.
    let mut json: serde_json::Value = serde_json::to_value(&packed).unwrap();
    json["author_of"][2] = 7.into();
    let bad: Signatures = serde_json::from_value(json.clone()).unwrap();
    expect!["malformed input: signatures: author 7 named, 1 in the table"]
        .assert_eq(&bad.unpack(&hashes).unwrap_err().to_string());
    json["author_of"] = serde_json::json!([0, 0, 0, 0]);
    let bad: Signatures = serde_json::from_value(json).unwrap();
    expect!["malformed input: signatures: 320 signature bytes for 4 authors named"]
        .assert_eq(&bad.unpack(&hashes).unwrap_err().to_string());

    // Signatures moved to other changes verify for none of them.
    let mut swapped = want.clone();
    let (s0, s1) = (swapped[0].signature, swapped[1].signature);
    swapped[0].signature = s1;
    swapped[1].signature = s0;
    let b = Batch {
        network: None,
        changes: b.changes,
        signatures: swapped,
    };
    assert_eq!(refused(&net, &mut doc, b).reason(), "bad-signature");
}
