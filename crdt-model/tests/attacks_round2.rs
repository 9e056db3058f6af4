//! Second review round: attacks by keys below the district (a community admin, a worker, a
//! community node, a key with no certificate) on the level-by-level revocation rules, the
//! registration ranking, the per-key-and-unit cuts and the district-only statements. A test
//! that fails here demonstrates a break: it asserts the secure behaviour. The others are
//! attacks that are refused, kept as regressions.

use std::collections::BTreeSet;

use linli_crdt_model::attest::{Attestation, AttestationBody, Statement};
use linli_crdt_model::audit::Filing;
use linli_crdt_model::cert::{Certificate, Revocation, Role, TrustRecord};
use linli_crdt_model::doc::DocId;
use linli_crdt_model::document::Document;
use linli_crdt_model::keys::{PublicKey, SecretKey};
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::testkit::{DAY, Net, Rng, T0, YEAR, actor, insert_each, key, permutations};
use linli_crdt_model::trust::Trust;
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};

use linli_crdt_model::testkit::{cert_between as cert_h, registration, revocation as revocation_r};

fn cert_for(
    t: &Trust,
    by: &SecretKey,
    to: &SecretKey,
    u: &UnitId,
    r: Role,
    from: i64,
    until: i64,
) -> Certificate {
    cert_h(t, by, &to.public(), u, r, from, until, "x")
}

fn revocation(
    t: &Trust,
    by: &SecretKey,
    k: &PublicKey,
    u: &UnitId,
    at: i64,
    cut: i64,
    keep: bool,
) -> Revocation {
    revocation_r(t, by, k, u, at, cut, keep, "attack")
}

// ----- helpers (copied from attacks.rs) -----

fn unit(id: &str, kind: UnitKind, name: &str) -> Unit {
    Unit {
        id: UnitId::new(id).unwrap(),
        kind,
        name: name.to_owned(),
    }
}

fn uid(s: &str) -> UnitId {
    UnitId::new(s).unwrap()
}

fn acts(trust: &Trust, k: &PublicKey, unit: &UnitId, role: Role, at: i64) -> bool {
    trust
        .authorize(k, at, |u, r| &u.id == unit && r == role)
        .is_ok()
}

#[allow(clippy::too_many_arguments, reason = "one argument per field")]
fn attestation(
    trust: &Trust,
    issuer: &SecretKey,
    statement: Statement,
    doc: DocId,
    doc_unit: &UnitId,
    subject: Option<&str>,
    targets: Vec<UnitId>,
    at_ms: i64,
    heads: Vec<[u8; 32]>,
) -> Attestation {
    Attestation::issue(
        AttestationBody {
            network: trust.network(),
            issuer: issuer.public(),
            statement,
            doc,
            doc_unit: doc_unit.clone(),
            heads,
            subject: subject.map(str::to_owned),
            targets,
            at_ms,
            note: String::new(),
            checkpoint: vec![],
        },
        issuer,
    )
}

/// The node refuses a hello carrying more certificates than this (node/src/engine/sync.rs,
/// `HELLO_RECORDS_MAX`), and counts it as an offence.
const HELLO_RECORDS_MAX: usize = 16;

/// 胜利社区's convention, created by its node.
fn convention(net: &Net) -> Document {
    let h = net.header(
        Kind::Convention,
        &net.shengli,
        &net.c_node,
        "胜利社区居民公约",
        None,
    );
    let ctx = net.ctx(T0);
    let (d, _) = Document::create(&ctx, h, &net.c_node, actor(4), kinds::convention::init).unwrap();
    d
}

// ----- findings: these fail while the break exists -----

/// `Statement::Filed` is judged against `doc_unit`, a field the attester fills in; nothing ties
/// it to the document's real unit (`Index::valid_for` → `Attestation::check`, used by
/// `Document::filing` and the audit). 胜利社区's admin files its own convention (which
/// model.rs `only_a_unit_above_may_file` shows is refused when it tells the truth) by claiming
/// the document belongs to a unit below it.
#[test]
fn a_community_admin_cannot_file_its_own_convention_by_lying_about_doc_unit() {
    let mut net = Net::new();
    let mut conv = convention(&net);
    let heads: Vec<[u8; 32]> = conv.heads().iter().map(|h| h.0).collect();
    let lie = uid("tiedong/jiefang/shengli/not-a-unit");
    let att = attestation(
        &net.trust,
        &net.c_admin,
        Statement::Filed,
        conv.id(),
        &lie,
        None,
        vec![],
        T0 + 2,
        heads,
    );
    net.attestations.insert(att, &net.trust.network()).unwrap();
    let filing = conv.filing(&net.trust, &net.attestations);
    assert_eq!(
        filing,
        Filing::NotFiled,
        "the community's own admin filed its own convention ({filing:?})"
    );
}

/// `Trust::chain_of` follows every certificate naming a key, whoever signed it and whether or
/// not it chains. A key with no certificate at all signs 17 certificates naming the district
/// admin; they reach every node's trust through a community ledger (a worker may write trust
/// records there: they "verify themselves") or a community node's sync message (`sync_in`
/// learns a message's certificates first). Every node's hello chain passes through the
/// district admin, so every hello now carries more than `HELLO_RECORDS_MAX` certificates and
/// every peer refuses it — as an offence (`SyncRefused::Hello`), banning the sender.
#[test]
fn certificates_from_nobody_do_not_bloat_every_hello() {
    let mut net = Net::new();
    let before = net.trust.chain_of(&net.c_node.public()).len();
    assert!(before <= HELLO_RECORDS_MAX);
    let nobody = key(200);
    let junk: Vec<Certificate> = (0..HELLO_RECORDS_MAX + 1)
        .map(|i| {
            cert_h(
                &net.trust,
                &nobody,
                &net.d_admin.public(),
                &net.district.id,
                Role::Admin,
                T0,
                T0 + YEAR,
                &format!("junk {i}"),
            )
        })
        .collect();
    net.trust.insert_certificates(junk.clone()).unwrap();
    assert!(junk.iter().all(|c| !net.trust.is_chain_valid(&c.id())));
    let after = net.trust.chain_of(&net.c_node.public());
    assert_eq!(
        after.len(),
        before,
        "a key with no certificate grew 胜利社区's node's hello chain from {before} to {} \
         certificates (a hello over {HELLO_RECORDS_MAX} is refused as an offence)",
        after.len()
    );
}

/// The same with certificates that do chain: 胜利社区's admin certifies the district admin
/// (and the district node) as writers of its own community, 17 times. Each is a certificate it
/// may issue; neither the district node's hello nor, through the district admin, any other
/// chain may grow past `HELLO_RECORDS_MAX` because of them.
#[test]
fn community_lures_do_not_bloat_hellos_outside_the_community() {
    let mut net = Net::new();
    let before_d = net.trust.chain_of(&net.d_node.public()).len();
    let before_q = net.trust.chain_of(&net.q_zhao.public()).len();
    let mut lures = Vec::new();
    for i in 0..HELLO_RECORDS_MAX + 1 {
        for victim in [&net.d_admin, &net.d_node] {
            lures.push(cert_h(
                &net.trust,
                &net.c_admin,
                &victim.public(),
                &net.shengli.id,
                Role::Writer,
                T0,
                T0 + YEAR,
                &format!("lure {i}"),
            ));
        }
    }
    net.trust.insert_certificates(lures).unwrap();
    // What a hello carries: the node certificate for its own unit and what supports it.
    let district = net.district.id.clone();
    let after_d = net
        .trust
        .chain_of_where(&net.d_node.public(), |c| {
            c.body.role == Role::Node && c.body.unit == district
        })
        .len();
    let after_q = net.trust.chain_of(&net.q_zhao.public()).len();
    assert!(
        after_d <= HELLO_RECORDS_MAX && after_q <= HELLO_RECORDS_MAX,
        "a community admin grew the district node's chain {before_d} → {after_d} and 前进社区 \
         worker's chain {before_q} → {after_q} (a hello over {HELLO_RECORDS_MAX} is refused)"
    );
}

// ----- refused attacks, kept as regressions -----

/// Brute-force oracle for the cuts: for every chain-valid certificate, the earliest cutoff of
/// the effective revocations of its subject over its unit or a unit above, signed at or after
/// its issue. Random revocations by the district, the street and the community admin, with
/// equal `at_ms`, i64 extremes and mixed `keep_issued`, in two arrival orders.
#[test]
fn cuts_agree_with_a_brute_force_oracle() {
    let net = Net::new();
    let shengli = net.shengli.id.clone();
    let grid = unit("tiedong/jiefang/shengli/g1", UnitKind::Grid, "一网格");
    let victims: Vec<SecretKey> = (0..4).map(|i| key(210 + i)).collect();
    let issuers = [
        net.d_admin.clone(),
        net.s_admin.clone(),
        net.c_admin.clone(),
    ];
    let units = [
        net.district.id.clone(),
        net.street.id.clone(),
        shengli.clone(),
        grid.id.clone(),
    ];
    let times = [
        i64::MIN,
        T0 - DAY,
        T0 - 5,
        T0,
        T0,
        T0 + 5,
        T0 + DAY,
        i64::MAX,
    ];
    for seed in 0..12u64 {
        let mut rng = Rng::new(seed);
        let t = &net.trust;
        let mut recs = vec![TrustRecord::Registration(registration(
            t,
            &net.c_admin,
            grid.clone(),
            T0 - DAY,
        ))];
        // Each victim holds certificates of several units and times.
        for v in &victims {
            for _ in 0..3 {
                let (issuer, u) = match rng.below(3) {
                    0 => (&net.d_admin, &units[rng.below(2)]),
                    1 => (&net.s_admin, &units[1 + rng.below(3)]),
                    _ => (&net.c_admin, &units[2 + rng.below(2)]),
                };
                let from = *rng.pick(&[T0 - DAY, T0 - 5, T0, T0 + 5]);
                recs.push(TrustRecord::Certificate(cert_for(
                    t,
                    issuer,
                    v,
                    u,
                    *rng.pick(&[Role::Admin, Role::Writer]),
                    from,
                    T0 + YEAR,
                )));
            }
        }
        for i in 0..14 {
            let mut at = *rng.pick(&times);
            let mut cutoff = *rng.pick(&times);
            if cutoff > at {
                std::mem::swap(&mut at, &mut cutoff);
            }
            recs.push(TrustRecord::Revocation(revocation_r(
                t,
                rng.pick(&issuers),
                &rng.pick(&victims).public(),
                rng.pick(&units),
                at,
                cutoff,
                rng.below(2) == 0,
                &format!("r{i}"),
            )));
        }
        let mut a = net.trust.clone();
        insert_each(&mut a, &recs);
        let mut b = net.trust.clone();
        insert_each(&mut b, &rng.shuffled(&recs));
        let extra: Vec<PublicKey> = victims.iter().map(SecretKey::public).collect();
        assert_eq!(
            net.verdicts_and_revocations(&a, &extra),
            net.verdicts_and_revocations(&b, &extra)
        );
        for (cid, c) in a.certificates() {
            if !a.is_chain_valid(cid) {
                continue;
            }
            let want = a
                .revocations()
                .filter(|(rid, _)| a.is_effective(rid))
                .map(|(_, r)| &r.body)
                .filter(|r| {
                    r.key == c.body.subject
                        && r.unit.is_at_or_above(&c.body.unit)
                        && r.at_ms >= c.body.issued_at_ms
                })
                .map(|r| r.cutoff_ms)
                .min();
            // A cutoff of i64::MAX cannot be told from "none" (`Window::revoked_from`).
            let want = want.filter(|c| *c != i64::MAX);
            assert_eq!(a.revoked_from(cid), want, "seed {seed} cert {cid:?}");
        }
    }
}

/// A three-level chain of revocations where each level's verdict flips the next one's: the
/// district revokes the street admin from T0; the street admin, after its cutoff, revokes the
/// community admin (void); the community admin revokes 王芳 (counts, since its own revocation
/// is void); and before its cutoff the street admin revokes 李强's issuer… replayed in every
/// arrival order, one record at a time.
#[test]
fn revocation_levels_cascade_the_same_in_every_order() {
    let net = Net::new();
    let t = &net.trust;
    let (street, shengli) = (net.street.id.clone(), net.shengli.id.clone());
    let recs = [
        TrustRecord::Revocation(revocation(
            t,
            &net.d_admin,
            &net.s_admin.public(),
            &street,
            T0,
            T0,
            true,
        )),
        TrustRecord::Revocation(revocation(
            t,
            &net.s_admin,
            &net.c_admin.public(),
            &shengli,
            T0 + DAY,
            T0 - YEAR,
            false,
        )),
        TrustRecord::Revocation(revocation(
            t,
            &net.c_admin,
            &net.c_wang.public(),
            &shengli,
            T0 + 2 * DAY,
            T0 + DAY,
            false,
        )),
        // Before its cutoff: counts, but only over what it governs.
        TrustRecord::Revocation(revocation(
            t,
            &net.s_admin,
            &net.q_zhao.public(),
            &net.qianjin.id,
            T0 - 1,
            T0 - 1,
            false,
        )),
        // A lure the community admin gives itself a level up: does not chain.
        TrustRecord::Certificate(cert_for(
            t,
            &net.c_admin,
            &net.c_admin,
            &street,
            Role::Admin,
            T0 - DAY,
            T0 + YEAR,
        )),
        TrustRecord::Revocation(revocation(
            t,
            &net.c_admin,
            &net.s_node.public(),
            &street,
            T0 + DAY,
            T0 - DAY,
            false,
        )),
    ];
    let mut first: Option<Vec<String>> = None;
    // Every other of the 720 orders, each inserting one record at a time.
    for p in permutations(recs.len()).into_iter().step_by(2) {
        let mut trust = net.trust.clone();
        let order: Vec<TrustRecord> = p.iter().map(|&i| recs[i].clone()).collect();
        insert_each(&mut trust, &order);
        let f = net.verdicts_and_revocations(&trust, &[]);
        match &first {
            None => first = Some(f),
            Some(g) => assert_eq!(g, &f, "order {p:?}"),
        }
    }
    let mut trust = net.trust.clone();
    insert_each(&mut trust, &recs);
    let ok = |i: usize| match &recs[i] {
        TrustRecord::Revocation(r) => trust.is_effective(&r.id()),
        _ => unreachable!(),
    };
    assert!(ok(0) && !ok(1) && ok(2) && ok(3) && !ok(5));
    assert!(acts(
        &trust,
        &net.c_admin.public(),
        &shengli,
        Role::Admin,
        T0 + 3 * DAY
    ));
    assert!(!acts(
        &trust,
        &net.c_wang.public(),
        &shengli,
        Role::Writer,
        T0 + DAY
    ));
    assert!(acts(
        &trust,
        &net.c_wang.public(),
        &shengli,
        Role::Writer,
        T0 + DAY - 1
    ));
    assert!(acts(
        &trust,
        &net.s_node.public(),
        &street,
        Role::Node,
        T0 + DAY
    ));
    assert!(!acts(
        &trust,
        &net.q_zhao.public(),
        &net.qianjin.id,
        Role::Writer,
        T0
    ));
}

/// A community admin lured to a street admin certificate by nobody, or by itself, or holding a
/// second community's admin certificate, does not reach street level: its revocation of the
/// street node stays void, and its registration of a grid does not outrank the street's.
#[test]
fn an_issuers_level_cannot_be_raised_from_below() {
    let mut net = Net::new();
    let street = net.street.id.clone();
    let sock = key(220);
    let grid_id = "tiedong/jiefang/shengli/g1";
    net.trust
        .insert_certificates([
            cert_for(
                &net.trust,
                &net.c_admin,
                &sock,
                &street,
                Role::Admin,
                T0 - DAY,
                T0 + YEAR,
            ),
            cert_for(
                &net.trust,
                &sock,
                &net.c_admin,
                &street,
                Role::Admin,
                T0 - DAY,
                T0 + YEAR,
            ),
            cert_for(
                &net.trust,
                &net.c_admin,
                &net.c_admin,
                &uid("tiedong/jiefang/shengli/g1"),
                Role::Admin,
                T0 - DAY,
                T0 + YEAR,
            ),
        ])
        .unwrap();
    let revs = [
        revocation(
            &net.trust,
            &net.c_admin,
            &net.s_node.public(),
            &street,
            T0,
            T0 - DAY,
            false,
        ),
        revocation(
            &net.trust,
            &sock,
            &net.s_node.public(),
            &street,
            T0,
            T0 - DAY,
            false,
        ),
    ];
    net.trust.insert_revocations(revs.clone()).unwrap();
    assert!(revs.iter().all(|r| !net.trust.is_effective(&r.id())));
    // The street names the grid first; the community renames it later, a year ahead, and again
    // at the end of time.
    net.trust
        .insert_registrations([
            registration(
                &net.trust,
                &net.s_admin,
                unit(grid_id, UnitKind::Grid, "街道定名"),
                T0,
            ),
            registration(
                &net.trust,
                &net.c_admin,
                unit(grid_id, UnitKind::Grid, "社区自定"),
                T0 + YEAR - 1,
            ),
            registration(
                &net.trust,
                &sock,
                unit(grid_id, UnitKind::Grid, "假街道"),
                T0 + 5,
            ),
        ])
        .unwrap();
    assert_eq!(
        net.trust.unit(&uid(grid_id)).map(|u| u.name.as_str()),
        Some("街道定名")
    );
    assert!(acts(
        &net.trust,
        &net.s_node.public(),
        &street,
        Role::Node,
        T0 + DAY
    ));
}

/// Registration winners in every arrival order: the street's two names (the later wins),
/// the community's names (lose whatever their time), a revoked street registration (loses once
/// the district's revocation cuts it before it signed) — the same winner every time; and the
/// community cannot make the street's registration invalid.
#[test]
fn registration_winners_do_not_depend_on_order_or_lower_admins() {
    let net = Net::new();
    let t = &net.trust;
    let g = "tiedong/jiefang/shengli/g1";
    let s2 = key(230);
    let recs = [
        TrustRecord::Registration(registration(
            t,
            &net.s_admin,
            unit(g, UnitKind::Grid, "甲"),
            T0,
        )),
        TrustRecord::Registration(registration(
            t,
            &net.s_admin,
            unit(g, UnitKind::Grid, "乙"),
            T0 + 10,
        )),
        TrustRecord::Registration(registration(
            t,
            &net.c_admin,
            unit(g, UnitKind::Grid, "丙"),
            T0 + 20,
        )),
        TrustRecord::Registration(registration(t, &s2, unit(g, UnitKind::Grid, "丁"), T0 + 30)),
        TrustRecord::Certificate(cert_for(
            t,
            &net.d_admin,
            &s2,
            &net.street.id,
            Role::Admin,
            T0,
            T0 + YEAR,
        )),
        // The district cuts the second street admin before it registered.
        TrustRecord::Revocation(revocation(
            t,
            &net.d_admin,
            &s2.public(),
            &net.street.id,
            T0 + 25,
            T0 + 25,
            false,
        )),
        // The community tries to cut the street admin (void) and its own grid name's rival.
        TrustRecord::Revocation(revocation(
            t,
            &net.c_admin,
            &net.s_admin.public(),
            &net.shengli.id,
            T0 + 1,
            i64::MIN,
            false,
        )),
    ];
    let mut winners = BTreeSet::new();
    for p in permutations(recs.len()).into_iter().step_by(13) {
        let mut trust = net.trust.clone();
        let order: Vec<TrustRecord> = p.iter().map(|&i| recs[i].clone()).collect();
        insert_each(&mut trust, &order);
        winners.insert(trust.unit(&uid(g)).map(|u| u.name.clone()));
    }
    assert_eq!(
        winners.into_iter().collect::<Vec<_>>(),
        vec![Some("乙".to_owned())]
    );
}

/// The district-only statements cannot be made by a key of a unit registered with the kind
/// `District` below the top (such a registration is refused), nor by the district about a
/// document whose unit lies outside the top.
#[test]
fn no_second_district_below_the_top() {
    let mut net = Net::new();
    let fake = unit("tiedong/jiefang/shengli/d2", UnitKind::District, "假区");
    let fake_street = unit("tiedong/d3", UnitKind::District, "假区");
    net.trust
        .insert_registrations([
            registration(&net.trust, &net.c_admin, fake.clone(), T0),
            registration(&net.trust, &net.s_admin, fake.clone(), T0),
            registration(&net.trust, &net.d_admin, fake_street.clone(), T0),
        ])
        .unwrap();
    assert!(net.trust.unit(&fake.id).is_none());
    assert!(net.trust.unit(&fake_street.id).is_none());
    let reviewer = key(240);
    net.trust
        .insert_certificates([cert_for(
            &net.trust,
            &net.c_admin,
            &reviewer,
            &fake.id,
            Role::Reviewer,
            T0,
            T0 + YEAR,
        )])
        .unwrap();
    for st in [
        Statement::Reviewed,
        Statement::Rejected,
        Statement::Approved,
    ] {
        for signer in [&reviewer, &net.c_admin, &net.s_admin] {
            let a = attestation(
                &net.trust,
                signer,
                st,
                DocId([3; 32]),
                &fake.id,
                Some("r"),
                vec![net.shengli.id.clone()],
                T0 + 1,
                vec![],
            );
            assert!(a.check(&net.trust).is_err(), "{st:?}");
        }
        let outside = attestation(
            &net.trust,
            &net.d_reviewer,
            st,
            DocId([3; 32]),
            &uid("elsewhere/x"),
            Some("r"),
            vec![],
            T0 + 1,
            vec![],
        );
        assert!(outside.check(&net.trust).is_err(), "{st:?}");
    }
}
