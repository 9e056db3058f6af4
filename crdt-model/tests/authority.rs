//! Attacks on authority by keys below the district, each refused; and a property test with an
//! oracle over random hierarchies: records signed by a key that governs only a subtree never
//! change anything outside it, and no verdict depends on arrival order.

use linli_crdt_model::attest::{
    self, AdmissionError, AdmissionRef, Attestation, AttestationBody, Statement,
};
use linli_crdt_model::cert::{Certificate, Revocation, Role, TrustRecord};
use linli_crdt_model::doc::{self, DocId, Header, SCHEMA_VERSION, Scope};
use linli_crdt_model::document::{Document, EditRefused, Limits};
use linli_crdt_model::genesis::Genesis;
use linli_crdt_model::keys::SecretKey;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::testkit::{self, DAY, Net, Rng, T0, YEAR, actor, insert_each, key};
use linli_crdt_model::trust::{Denied, Trust};
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use proptest::prelude::*;

use linli_crdt_model::testkit::registration;

fn cert_for(
    t: &Trust,
    by: &SecretKey,
    to: &SecretKey,
    u: &UnitId,
    r: Role,
    from: i64,
    until: i64,
) -> Certificate {
    testkit::cert_between(t, by, &to.public(), u, r, from, until, "x")
}

fn revocation(
    t: &Trust,
    by: &SecretKey,
    k: &SecretKey,
    u: &UnitId,
    at: i64,
    cut: i64,
    keep: bool,
) -> Revocation {
    testkit::revocation(t, by, &k.public(), u, at, cut, keep, "test")
}

fn is_node_of_district(trust: &Trust, k: &SecretKey, at: i64) -> bool {
    trust
        .authorize(&k.public(), at, |u, r| {
            r == Role::Node && u.kind == UnitKind::District
        })
        .is_ok()
}

#[test]
fn community_admin_cannot_revoke_a_district_key() {
    let mut net = Net::new();
    let shengli = net.shengli.id.clone();
    // The attacker certifies the district's admin and node keys into its own community…
    let lure_admin = cert_for(
        &net.trust,
        &net.c_admin,
        &net.d_admin,
        &shengli,
        Role::Writer,
        T0,
        T0 + YEAR,
    );
    let lure_node = cert_for(
        &net.trust,
        &net.c_admin,
        &net.d_node,
        &shengli,
        Role::Writer,
        T0,
        T0 + YEAR,
    );
    net.trust
        .insert_certificates([lure_admin.clone(), lure_node])
        .unwrap();
    // …then revokes them, in its own community and (out of reach) over the district.
    let revs = [
        revocation(
            &net.trust,
            &net.c_admin,
            &net.d_admin,
            &shengli,
            T0 + 1,
            T0 - YEAR,
            false,
        ),
        revocation(
            &net.trust,
            &net.c_admin,
            &net.d_node,
            &net.district.id,
            T0 + 1,
            T0 - YEAR,
            false,
        ),
    ];
    let ids: Vec<_> = revs.iter().map(Revocation::id).collect();
    net.trust.insert_revocations(revs).unwrap();
    assert!(net.trust.is_effective(&ids[0]), "within its own community");
    assert!(!net.trust.is_effective(&ids[1]), "over the district");
    // The lure is cut; the district's own authority and all it issued stand.
    assert!(!net.trust.in_force(&lure_admin.id(), T0 + 2));
    assert!(is_node_of_district(&net.trust, &net.d_node, T0 + 2));
    let admin = net
        .trust
        .authorize(&net.d_admin.public(), T0 + 2, |u, r| {
            r == Role::Admin && u.kind == UnitKind::District
        })
        .expect("the district admin keeps its authority");
    assert_eq!(admin.unit, net.district.id);
    for k in [&net.s_admin, &net.c_wang, &net.q_zhao] {
        assert!(
            net.trust
                .authorize(&k.public(), T0 + 2, |_, _| true)
                .is_ok(),
            "what the district admin certified stands"
        );
    }
}

#[test]
fn a_higher_admin_restores_what_a_lower_one_revoked() {
    let mut net = Net::new();
    let shengli = net.shengli.id.clone();
    // The community admin revokes 李强 from T0.
    net.trust
        .insert_revocations([revocation(
            &net.trust,
            &net.c_admin,
            &net.c_li,
            &shengli,
            T0,
            T0,
            false,
        )])
        .unwrap();
    let writes = |t: &Trust, at| {
        t.authorize(&net.c_li.public(), at, |u, r| {
            u.id == shengli && r == Role::Writer
        })
    };
    assert!(matches!(
        writes(&net.trust, T0 + 10),
        Err(Denied::Revoked { .. })
    ));
    // The street's admin certifies him again.
    net.trust
        .insert_certificates([cert_for(
            &net.trust,
            &net.s_admin,
            &net.c_li,
            &shengli,
            Role::Writer,
            T0 + 5,
            T0 + YEAR,
        )])
        .unwrap();
    assert!(writes(&net.trust, T0 + 10).is_ok(), "restored");
    assert!(
        writes(&net.trust, T0 + 1).is_err(),
        "not before the restoring"
    );
    assert!(writes(&net.trust, T0 - 1).is_ok(), "before the cutoff");
}

#[test]
fn community_admin_cannot_act_as_a_district() {
    let mut net = Net::new();
    let shengli = net.shengli.id.clone();
    let fake = key(99);
    // An approver certificate names a unit id only; the community stays a community.
    net.trust
        .insert_certificates([cert_for(
            &net.trust,
            &net.c_admin,
            &fake,
            &shengli,
            Role::Approver,
            T0,
            T0 + YEAR,
        )])
        .unwrap();
    // Registering a "district" below itself, or itself as one, is not valid.
    let fake_unit = Unit {
        id: shengli.child("qu").unwrap(),
        kind: UnitKind::District,
        name: "假区".to_owned(),
    };
    let self_unit = Unit {
        id: shengli.clone(),
        kind: UnitKind::District,
        name: "胜利区".to_owned(),
    };
    net.trust
        .insert_registrations([
            registration(&net.trust, &net.c_admin, fake_unit.clone(), T0),
            registration(&net.trust, &net.c_admin, self_unit, T0),
        ])
        .unwrap();
    assert!(net.trust.unit(&fake_unit.id).is_none());
    assert_eq!(
        net.trust.unit(&shengli).map(|u| u.kind),
        Some(UnitKind::Community)
    );
    net.trust
        .insert_certificates([cert_for(
            &net.trust,
            &net.c_admin,
            &fake,
            &fake_unit.id,
            Role::Node,
            T0,
            T0 + YEAR,
        )])
        .unwrap();
    // Its checkpoint and its approval are refused.
    let att = |statement, subject: Option<&str>| {
        Attestation::issue(
            AttestationBody {
                network: net.trust.network(),
                issuer: fake.public(),
                statement,
                doc: DocId([3; 32]),
                doc_unit: net.district.id.clone(),
                heads: vec![],
                subject: subject.map(str::to_owned),
                targets: vec![shengli.clone()],
                at_ms: T0 + 1,
                note: String::new(),
                checkpoint: vec![],
            },
            &fake,
        )
    };
    assert!(att(Statement::Checkpoint, None).check(&net.trust).is_err());
    let approval = att(Statement::Approved, Some("r1"));
    let review = att(Statement::Reviewed, Some("r1"));
    let mut index = attest::Index::default();
    let network = net.trust.network();
    index.insert(approval.clone(), &network).unwrap();
    index.insert(review.clone(), &network).unwrap();
    let adm = AdmissionRef {
        request_doc: &DocId([3; 32]).to_string(),
        request_id: "r1",
        review: &review.id().to_string(),
        approval: &approval.id().to_string(),
    };
    let err = attest::check_admission(&adm, &shengli, &index, &net.trust).unwrap_err();
    assert!(matches!(err, AdmissionError::NotDistrict { .. }), "{err}");
}

#[test]
fn a_certificate_does_not_outlive_its_issuer() {
    let mut net = Net::new();
    // The community admin's certificate ends at T0 + YEAR; it mints a 50-year writer key.
    let heir = key(98);
    net.trust
        .insert_certificates([cert_for(
            &net.trust,
            &net.c_admin,
            &heir,
            &net.shengli.id,
            Role::Writer,
            T0,
            T0 + 50 * YEAR,
        )])
        .unwrap();
    let at = |t| net.trust.authorize(&heir.public(), t, |_, _| true);
    assert!(at(T0 + DAY).is_ok());
    assert!(matches!(at(T0 + YEAR + 1), Err(Denied::Expired { .. })));
}

#[test]
fn job_transfer_keeps_what_the_admin_issued_and_compromise_does_not() {
    for keep_issued in [true, false] {
        let mut net = Net::new();
        net.trust
            .insert_revocations([revocation(
                &net.trust,
                &net.s_admin,
                &net.c_admin,
                &net.shengli.id,
                T0,
                T0,
                keep_issued,
            )])
            .unwrap();
        let admin_acts = net
            .trust
            .authorize(&net.c_admin.public(), T0 + 1, |_, _| true)
            .is_ok();
        let worker_writes = net
            .trust
            .authorize(&net.c_wang.public(), T0 + 1, |_, _| true)
            .is_ok();
        assert!(!admin_acts, "the admin itself stops at the cutoff");
        assert_eq!(worker_writes, keep_issued, "keep_issued = {keep_issued}");
        assert!(
            net.trust
                .authorize(&net.c_wang.public(), T0 - 1, |_, _| true)
                .is_ok(),
            "before the cutoff, either way"
        );
    }
}

#[test]
fn only_the_district_writes_the_directory() {
    let net = Net::new();
    let ctx = net.ctx(T0);
    let header = Header {
        network: net.trust.network(),
        kind: Kind::Directory,
        unit: net.district.id.clone(),
        scope: Scope::Public,
        title: "名录".to_owned(),
        created_at_ms: T0,
        schema_version: SCHEMA_VERSION,
        creator: net.d_node.public(),
        period: None,
    };
    let (mut dir, _) =
        Document::create(&ctx, header, &net.d_node, actor(5), kinds::directory::init).unwrap();
    for (k, what) in [
        (&net.c_admin, "community admin"),
        (&net.s_node, "street node"),
    ] {
        let err = dir
            .edit(&ctx, k, T0 + 1, None, |tx| {
                kinds::directory::put_list_item(
                    tx,
                    kinds::directory::List::Duty,
                    "d-1",
                    &kinds::directory::ListItem {
                        title: "代收快递".to_owned(),
                        legal_basis: "无".to_owned(),
                        unit_scope: None,
                    },
                )
            })
            .unwrap_err();
        assert!(matches!(err, EditRefused::Denied(_)), "{what}: {err}");
    }
    assert!(!doc::may_write(
        Kind::Directory,
        &net.district.id,
        &net.street.id,
        Role::Admin
    ));
}

#[test]
fn future_dated_statements_are_refused_and_never_the_latest_checkpoint() {
    let net = Net::new();
    let ctx = net.ctx(T0);
    let header = net.header(Kind::Ledger, &net.district, &net.d_node, "台账", None);
    let (mut ledger, _) =
        Document::create(&ctx, header, &net.d_node, actor(6), kinds::ledger::init).unwrap();
    let far = i64::MAX / 2;
    let checkpoint = Attestation::issue(
        AttestationBody {
            network: net.trust.network(),
            issuer: net.d_node.public(),
            statement: Statement::Checkpoint,
            doc: ledger.id(),
            doc_unit: net.district.id.clone(),
            heads: vec![],
            subject: None,
            targets: vec![],
            at_ms: far,
            note: String::new(),
            checkpoint: vec![],
        },
        &net.d_node,
    );
    let err = ledger
        .edit(&ctx, &net.d_node, T0 + 1, None, |tx| {
            kinds::ledger::put_attestation(tx, &checkpoint.id().to_string(), &checkpoint.encode())
        })
        .unwrap_err();
    assert!(err.to_string().contains("clock skew"), "{err}");
    // Had it got in some other way, it would still not be "the latest".
    let mut index = attest::Index::default();
    index.insert(checkpoint, &net.trust.network()).unwrap();
    assert!(
        index
            .latest_checkpoint(&net.trust, T0, Limits::default().clock_skew_ms_max)
            .is_none()
    );
    // A header dated far ahead is refused too.
    let mut h = net.header(Kind::Minutes, &net.shengli, &net.c_node, "会议", None);
    h.created_at_ms = far;
    let signed = h.sign(&net.c_node);
    assert!(signed.check(&net.trust, T0, 600_000).is_err());
}

/// Two valid registrations of one unit that disagree: the district's wins over the street's
/// (the higher authority), whichever is newer and in whatever order they arrive, and the
/// disagreement is reported for `verify`.
#[test]
fn conflicting_registrations_resolve_the_same_everywhere_and_are_reported() {
    let net = Net::new();
    let qianjin = net.qianjin.id.clone();
    let by_district = registration(
        &net.trust,
        &net.d_admin,
        testkit::unit(qianjin.as_str(), UnitKind::Community, "前进社区（区定名）"),
        T0,
    );
    let by_street = registration(
        &net.trust,
        &net.s_admin,
        testkit::unit(
            qianjin.as_str(),
            UnitKind::Community,
            "前进社区（街道改名）",
        ),
        T0 + DAY,
    );
    let records = [
        TrustRecord::Registration(by_district.clone()),
        TrustRecord::Registration(by_street.clone()),
    ];
    for order in [[0, 1], [1, 0]] {
        let mut trust = net.trust.clone();
        insert_each(
            &mut trust,
            &[records[order[0]].clone(), records[order[1]].clone()],
        );
        assert_eq!(
            trust.unit(&qianjin).map(|u| u.name.as_str()),
            Some("前进社区（区定名）"),
            "order {order:?}"
        );
        let conflicts = trust.conflicts();
        assert_eq!(conflicts.len(), 1, "{conflicts:?}");
        assert_eq!(conflicts[0].unit, qianjin);
        assert_eq!(conflicts[0].winner, by_district.id());
        assert!(conflicts[0].losers.contains(&by_street.id()));
    }
}

#[test]
fn admission_holds_only_at_the_targets() {
    let net = Net::new();
    let att = |k: &SecretKey, statement| {
        Attestation::issue(
            AttestationBody {
                network: net.trust.network(),
                issuer: k.public(),
                statement,
                doc: DocId([4; 32]),
                doc_unit: net.district.id.clone(),
                heads: vec![],
                subject: Some("r1".to_owned()),
                targets: vec![net.qianjin.id.clone()],
                at_ms: T0,
                note: String::new(),
                checkpoint: vec![],
            },
            k,
        )
    };
    let (review, approval) = (
        att(&net.d_reviewer, Statement::Reviewed),
        att(&net.d_approver, Statement::Approved),
    );
    let mut index = attest::Index::default();
    index.insert(review.clone(), &net.trust.network()).unwrap();
    index
        .insert(approval.clone(), &net.trust.network())
        .unwrap();
    let (r, a) = (review.id().to_string(), approval.id().to_string());
    let doc = DocId([4; 32]).to_string();
    let adm = AdmissionRef {
        request_doc: &doc,
        request_id: "r1",
        review: &r,
        approval: &a,
    };
    assert!(attest::check_admission(&adm, &net.qianjin.id, &index, &net.trust).is_ok());
    assert!(matches!(
        attest::check_admission(&adm, &net.shengli.id, &index, &net.trust),
        Err(AdmissionError::NotATarget { .. })
    ));
}

// ----- the property test -----

/// A random hierarchy: district `d`, 1–3 streets, 1–3 communities each, and for some of them a
/// grid. Each unit has an admin and a writer, certified and registered from above. Returns the
/// genesis, the records, the units with their admins, and every key.
struct World {
    genesis: Genesis,
    honest: Vec<TrustRecord>,
    units: Vec<(Unit, SecretKey)>,
    keys: Vec<SecretKey>,
}

fn world(rng: &mut Rng) -> World {
    let root = key(1);
    let top = testkit::unit("d", UnitKind::District, "区");
    let genesis = Genesis {
        network_name: "网".to_owned(),
        top: top.clone(),
        root_keys: vec![root.public()],
        created_at_ms: 0,
    };
    let trust = Trust::new(genesis.clone()).unwrap();
    let mut honest = Vec::new();
    let mut units: Vec<(Unit, SecretKey)> = Vec::new();
    let mut keys = vec![root.clone()];
    let mut n = 2u8;
    let mut fresh = || {
        n = n.wrapping_add(1).max(2);
        key(n)
    };
    let d_admin = fresh();
    honest.push(TrustRecord::Certificate(cert_for(
        &trust,
        &root,
        &d_admin,
        &top.id,
        Role::Admin,
        0,
        100 * DAY,
    )));
    units.push((top.clone(), d_admin.clone()));
    keys.push(d_admin);
    let mut frontier = vec![0usize];
    for (depth, kind) in [
        (2, UnitKind::Street),
        (3, UnitKind::Community),
        (4, UnitKind::Grid),
    ] {
        let mut next = Vec::new();
        for &p in &frontier {
            let children = if depth == 4 {
                rng.below(2)
            } else {
                1 + rng.below(3)
            };
            for i in 0..children {
                let (parent, parent_admin) = units[p].clone();
                let unit = Unit {
                    id: parent.id.child(&format!("u{i}")).unwrap(),
                    kind,
                    name: format!("{}{i}", kind.label_zh()),
                };
                let admin = fresh();
                let writer = fresh();
                let t = depth as i64 * DAY;
                honest.push(TrustRecord::Registration(registration(
                    &trust,
                    &parent_admin,
                    unit.clone(),
                    t,
                )));
                honest.push(TrustRecord::Certificate(cert_for(
                    &trust,
                    &parent_admin,
                    &admin,
                    &unit.id,
                    Role::Admin,
                    t,
                    90 * DAY,
                )));
                honest.push(TrustRecord::Certificate(cert_for(
                    &trust,
                    &admin,
                    &writer,
                    &unit.id,
                    Role::Writer,
                    t + 1,
                    80 * DAY,
                )));
                keys.push(admin.clone());
                keys.push(writer);
                next.push(units.len());
                units.push((unit, admin));
            }
        }
        frontier = next;
    }
    // Some honest revocations, each by the admin of a unit above the revoked admin's.
    for _ in 0..rng.below(3) {
        let (unit, admin) = units[1 + rng.below(units.len() - 1)].clone();
        let parent = unit.id.parent().unwrap();
        let (_, boss) = units.iter().find(|(u, _)| u.id == parent).unwrap().clone();
        let cut = (10 + rng.below(40)) as i64 * DAY;
        honest.push(TrustRecord::Revocation(revocation(
            &trust,
            &boss,
            &admin,
            &unit.id,
            cut + DAY,
            cut,
            rng.below(2) == 0,
        )));
    }
    World {
        genesis,
        honest,
        units,
        keys,
    }
}

/// Everything the attacker, who governs only `subtree`, signs: with its own key and with keys
/// it certifies, about any key and any unit.
fn attack(rng: &mut Rng, w: &World, attacker: &SecretKey, subtree: &UnitId) -> Vec<TrustRecord> {
    let trust = Trust::new(w.genesis.clone()).unwrap();
    let mut signers = vec![attacker.clone()];
    let mut out = Vec::new();
    let unit_ids: Vec<UnitId> = w
        .units
        .iter()
        .map(|(u, _)| u.id.clone())
        .chain([subtree.child("x").unwrap(), UnitId::new("d/zz").unwrap()])
        .collect();
    let roles = [Role::Admin, Role::Writer, Role::Approver, Role::Node];
    let kinds = [
        UnitKind::District,
        UnitKind::Street,
        UnitKind::Community,
        UnitKind::Grid,
    ];
    for i in 0..(5 + rng.below(20)) {
        let signer = rng.pick(&signers).clone();
        let unit = rng.pick(&unit_ids).clone();
        let at = rng.below(100) as i64 * DAY;
        match rng.below(3) {
            0 => {
                // An honest key (whose secret the attacker lacks), or one of its own making.
                let own = rng.below(2) == 0;
                let subject = if own {
                    key(200 + (i % 50) as u8)
                } else {
                    rng.pick(&w.keys).clone()
                };
                out.push(TrustRecord::Certificate(cert_for(
                    &trust,
                    &signer,
                    &subject,
                    &unit,
                    *rng.pick(&roles),
                    at,
                    at + 1 + rng.below(1000) as i64 * DAY,
                )));
                if own {
                    signers.push(subject);
                }
            }
            1 => {
                let victim = rng.pick(&w.keys).clone();
                let cutoff = at - rng.below(100) as i64 * DAY;
                out.push(TrustRecord::Revocation(revocation(
                    &trust,
                    &signer,
                    &victim,
                    &unit,
                    at,
                    cutoff,
                    rng.below(2) == 0,
                )));
            }
            _ => {
                if unit.parent().is_none() {
                    continue;
                }
                out.push(TrustRecord::Registration(registration(
                    &trust,
                    &signer,
                    Unit {
                        id: unit,
                        kind: *rng.pick(&kinds),
                        name: "攻击者".to_owned(),
                    },
                    at,
                )));
            }
        }
    }
    out
}

/// Every verdict that could matter, as a comparable value.
fn verdicts(trust: &Trust, w: &World, outside: impl Fn(&UnitId) -> bool) -> Vec<String> {
    let mut out = Vec::new();
    for u in trust.units().filter(|u| outside(&u.id)) {
        out.push(format!("unit {} {:?} {}", u.id, u.kind, u.name));
    }
    for (unit, _) in w.units.iter().filter(|(u, _)| outside(&u.id)) {
        for k in &w.keys {
            for at in [0, 5 * DAY, 30 * DAY, 60 * DAY, 85 * DAY] {
                for role in [Role::Admin, Role::Writer, Role::Approver, Role::Node] {
                    let v = trust.authorize(&k.public(), at, |u, r| u.id == unit.id && r == role);
                    out.push(format!(
                        "{} {} {at} {role:?}: {:?}",
                        k.public(),
                        unit.id,
                        v.ok().map(|g| (g.unit, g.unit_kind, g.role, g.certificate))
                    ));
                }
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// Invariants: a key's authority over a unit U — and U's registration — change only through
    /// records signed by keys with admin authority at or above U; and every verdict is the same
    /// whatever order the records arrive in. The seed is printed by proptest on failure.
    #[test]
    fn authority_cannot_be_forged_from_below(seed in any::<u64>()) {
        let mut rng = Rng::new(seed);
        let w = world(&mut rng);
        // The attacker: the admin of a random street, community or grid.
        let (target, attacker) = w.units[1 + rng.below(w.units.len() - 1)].clone();
        let bad = attack(&mut rng, &w, &attacker, &target.id);

        let mut honest = Trust::new(w.genesis.clone()).unwrap();
        insert_each(&mut honest, &w.honest);
        let mut all: Vec<TrustRecord> = w.honest.clone();
        all.extend(bad.iter().cloned());
        let mut attacked = Trust::new(w.genesis.clone()).unwrap();
        insert_each(&mut attacked, &rng.shuffled(&all));

        let outside = |u: &UnitId| !target.id.is_at_or_above(u);
        let (want, got) = (verdicts(&honest, &w, outside), verdicts(&attacked, &w, outside));
        let first = want.iter().zip(&got).find(|(a, b)| a != b);
        prop_assert!(
            first.is_none() && want.len() == got.len(),
            "seed {}: records signed below {} changed authority outside it: {:?}",
            seed, target.id, first
        );
        // The attacker's own unit keeps its registered kind and name.
        prop_assert_eq!(honest.unit(&target.id), attacked.unit(&target.id));

        let mut again = Trust::new(w.genesis.clone()).unwrap();
        insert_each(&mut again, &rng.shuffled(&all));
        let (one, two) = (verdicts(&attacked, &w, |_| true), verdicts(&again, &w, |_| true));
        let first = one.iter().zip(&two).find(|(a, b)| a != b);
        prop_assert!(
            first.is_none() && one.len() == two.len(),
            "seed {}: arrival order changed a verdict: {:?}", seed, first
        );
    }
}
