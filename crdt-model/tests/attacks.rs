//! Review attacks on the trust rules by keys below the district (a community admin, a worker, a
//! community node, a key with no certificate). A test that fails here demonstrates a break: it
//! asserts the secure behaviour. The others are attacks that are refused, kept as regressions.

use linli_crdt_model::attest::{self, AdmissionRef, Attestation, AttestationBody, Statement};
use linli_crdt_model::cert::{self, Certificate, Revocation, Role, TrustRecord};
use linli_crdt_model::doc::{DocId, Header, SCHEMA_VERSION, Scope};
use linli_crdt_model::document::Document;
use linli_crdt_model::keys::{PublicKey, SecretKey};
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::testkit::{DAY, Net, T0, YEAR, actor, insert_each, key, permutations};
use linli_crdt_model::trust::{Denied, Trust};
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};

// ----- helpers -----

use linli_crdt_model::testkit::{cert_between as cert_h, registration, unit};

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
    linli_crdt_model::testkit::revocation(t, by, k, u, at, cut, keep, "attack")
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
) -> Attestation {
    Attestation::issue(
        AttestationBody {
            network: trust.network(),
            issuer: issuer.public(),
            statement,
            doc,
            doc_unit: doc_unit.clone(),
            heads: vec![],
            subject: subject.map(str::to_owned),
            targets,
            at_ms,
            note: String::new(),
            checkpoint: vec![],
        },
        issuer,
    )
}

// ----- findings: these fail while the break exists -----

/// A street admin revokes the community admin over the community (the natural unit to name).
/// The revoked admin then keeps revoking inside the community, after its cutoff, reaching back
/// with any cutoff — and it cuts the replacement admin the street installs.
#[test]
fn a_revoked_admin_cannot_revoke_after_its_cutoff() {
    let mut net = Net::new();
    let shengli = net.shengli.id.clone();
    // The street revokes 胜利社区's admin from T0 (a compromise).
    let by_street = revocation(
        &net.trust,
        &net.s_admin,
        &net.c_admin.public(),
        &shengli,
        T0,
        T0,
        false,
    );
    net.trust.insert_revocations([by_street.clone()]).unwrap();
    assert!(net.trust.is_effective(&by_street.id()));
    // The street installs a new admin and re-certifies 王芳 (whose certificate died with the
    // compromised admin's).
    let new_admin = key(120);
    net.trust
        .insert_certificates([
            cert_for(
                &net.trust,
                &net.s_admin,
                &new_admin,
                &shengli,
                Role::Admin,
                T0 + 1,
                T0 + YEAR,
            ),
            cert_for(
                &net.trust,
                &net.s_admin,
                &net.c_wang,
                &shengli,
                Role::Writer,
                T0 + 1,
                T0 + YEAR,
            ),
        ])
        .unwrap();
    assert!(acts(
        &net.trust,
        &new_admin.public(),
        &shengli,
        Role::Admin,
        T0 + 2
    ));
    assert!(acts(
        &net.trust,
        &net.c_wang.public(),
        &shengli,
        Role::Writer,
        T0 + 2
    ));
    // The revoked admin, a day after its cutoff, revokes both — with a cutoff a year back.
    let rogue = [
        revocation(
            &net.trust,
            &net.c_admin,
            &new_admin.public(),
            &shengli,
            T0 + DAY,
            T0 - YEAR,
            false,
        ),
        revocation(
            &net.trust,
            &net.c_admin,
            &net.c_wang.public(),
            &shengli,
            T0 + DAY,
            T0 - YEAR,
            false,
        ),
    ];
    net.trust.insert_revocations(rogue.clone()).unwrap();
    for r in &rogue {
        assert!(
            !net.trust.is_effective(&r.id()),
            "a revocation signed by a key revoked before it signed took effect"
        );
    }
    assert!(
        acts(
            &net.trust,
            &new_admin.public(),
            &shengli,
            Role::Admin,
            T0 + 2 * DAY
        ),
        "the street's replacement admin was cut by the admin the street revoked"
    );
    assert!(
        acts(
            &net.trust,
            &net.c_wang.public(),
            &shengli,
            Role::Writer,
            T0 - DAY / 2
        ),
        "王芳's work from before the compromise was cut by the revoked admin"
    );
}

/// The community admin certifies the district's reviewer and approver as reviewer/approver of
/// its own community (a certificate it may issue). `Permission::at` returns the first
/// certificate in force in id order, so when the lure sorts first, every approval the district
/// ever made is judged as a community's and admission fails at every community of the
/// district — including 前进社区, which the attacker does not govern.
#[test]
fn a_lure_certificate_cannot_break_admission_elsewhere() {
    let mut net = Net::new();
    let shengli = net.shengli.id.clone();
    let legit_min = |t: &Trust, k: &SecretKey| {
        t.certificates_of(&k.public())
            .iter()
            .map(|(id, _)| *id)
            .min()
            .unwrap()
    };
    let mut lures = Vec::new();
    for (victim, role) in [
        (&net.d_reviewer, Role::Reviewer),
        (&net.d_approver, Role::Approver),
    ] {
        let bar = legit_min(&net.trust, victim);
        // Grind the holder until the lure's id sorts before the district certificate's.
        let lure = (0..)
            .map(|i| {
                cert_h(
                    &net.trust,
                    &net.c_admin,
                    &victim.public(),
                    &shengli,
                    role,
                    T0 - DAY,
                    T0 + YEAR,
                    &format!("lure {i}"),
                )
            })
            .find(|c| c.id() < bar)
            .unwrap();
        lures.push(lure);
    }
    // The district's honest review and approval of a request targeting 前进社区.
    let doc = DocId([7; 32]);
    let review = attestation(
        &net.trust,
        &net.d_reviewer,
        Statement::Reviewed,
        doc,
        &net.district.id,
        Some("r1"),
        vec![net.qianjin.id.clone()],
        T0,
    );
    let approval = attestation(
        &net.trust,
        &net.d_approver,
        Statement::Approved,
        doc,
        &net.district.id,
        Some("r1"),
        vec![net.qianjin.id.clone()],
        T0,
    );
    let network = net.trust.network();
    net.attestations.insert(review.clone(), &network).unwrap();
    net.attestations.insert(approval.clone(), &network).unwrap();
    let (doc_s, r, a) = (
        doc.to_string(),
        review.id().to_string(),
        approval.id().to_string(),
    );
    let adm = AdmissionRef {
        request_doc: &doc_s,
        request_id: "r1",
        review: &r,
        approval: &a,
    };
    attest::check_admission(&adm, &net.qianjin.id, &net.attestations, &net.trust)
        .expect("admitted before the attack");
    net.trust.insert_certificates(lures).unwrap();
    let grant = approval.check(&net.trust).unwrap();
    assert_eq!(
        grant.unit_kind,
        UnitKind::District,
        "the district approver's approval is now judged as 胜利社区's ({})",
        grant.unit
    );
    attest::check_admission(&adm, &net.qianjin.id, &net.attestations, &net.trust)
        .expect("a community admin's certificate broke admission at another community");
}

/// `Statement::permits` lets an admin, reviewer or approver of any unit make a `Rejected`
/// statement about any unit's document, and nothing in the model ties a rejection to the
/// district: `Index::valid_for` returns a community admin's rejection of a district request
/// as valid. The node's admission (`admit_approved`) skips a request as soon as any valid
/// rejection names it, so 胜利社区's admin vetoes district-approved work at 前进社区.
#[test]
fn a_community_admin_cannot_reject_a_district_request() {
    let mut net = Net::new();
    let district_list = DocId([10; 32]);
    let veto = attestation(
        &net.trust,
        &net.c_admin,
        Statement::Rejected,
        district_list,
        &net.district.id,
        Some("r1"),
        vec![net.qianjin.id.clone()],
        T0 + 1,
    );
    net.attestations
        .insert(veto.clone(), &net.trust.network())
        .unwrap();
    let valid = net
        .attestations
        .valid_for(&district_list, &net.district.id, &net.trust);
    assert!(
        valid.is_empty(),
        "a community admin's rejection of the district's request is valid (granted as {:?})",
        valid.first().map(|(_, _, g)| (&g.unit, g.unit_kind))
    );
}

/// `Trust::is_revoked` is per key: a community admin who certifies a district key into its
/// community and revokes that certificate makes the district key read as revoked (the node's
/// certificate list shows every certificate of that key as revoked).
#[test]
fn a_community_admin_cannot_mark_a_district_key_revoked() {
    let mut net = Net::new();
    let lure = cert_for(
        &net.trust,
        &net.c_admin,
        &net.d_admin,
        &net.shengli.id,
        Role::Writer,
        T0,
        T0 + YEAR,
    );
    net.trust.insert_certificates([lure]).unwrap();
    net.trust
        .insert_revocations([revocation(
            &net.trust,
            &net.c_admin,
            &net.d_admin.public(),
            &net.shengli.id,
            T0 + 1,
            T0,
            false,
        )])
        .unwrap();
    assert!(
        !net.trust.is_revoked(&net.d_admin.public()),
        "the district admin reads as revoked because of a community's revocation"
    );
}

/// `Trust` ranks registrations by their signed time and never bounds it by "now"; the node's
/// hello and sync paths feed registrations and certificates straight into `Trust` without
/// `cert::check_not_future` (only ledger/directory blobs are time-checked). A community admin
/// that registers its grid dated at the end of its own certificate keeps that registration
/// "the newest" for a year: the street's later rename of the grid loses until then.
#[test]
fn a_future_dated_registration_does_not_beat_a_later_one() {
    let mut net = Net::new();
    let grid_id = "tiedong/jiefang/shengli/g1";
    let early = registration(
        &net.trust,
        &net.c_admin,
        unit(grid_id, UnitKind::Grid, "一网格"),
        T0,
    );
    let future = registration(
        &net.trust,
        &net.c_admin,
        unit(grid_id, UnitKind::Grid, "社区自定"),
        T0 + YEAR - 1,
    );
    net.trust.insert_registrations([early, future]).unwrap();
    // The street renames the grid a day later ("now" is T0 + DAY).
    net.trust
        .insert_registrations([registration(
            &net.trust,
            &net.s_admin,
            unit(grid_id, UnitKind::Grid, "街道定名"),
            T0 + DAY,
        )])
        .unwrap();
    assert_eq!(
        net.trust
            .unit(&UnitId::new(grid_id).unwrap())
            .map(|u| u.name.as_str()),
        Some("街道定名"),
        "a registration dated a year ahead outranks the street's current one"
    );
}

/// `doc::may_write` lets an admin or node of any unit write a Directory it owns; the stated rule
/// is that the directory belongs to the top unit only. (The node looks for the directory only at
/// the top unit, so this is defence in depth.)
#[test]
fn only_the_top_unit_may_create_a_directory() {
    let net = Net::new();
    let ctx = net.ctx(T0);
    let header = Header {
        network: net.trust.network(),
        kind: Kind::Directory,
        unit: net.shengli.id.clone(),
        scope: Scope::Public,
        title: "胜利社区名录".to_owned(),
        created_at_ms: T0,
        schema_version: SCHEMA_VERSION,
        creator: net.c_node.public(),
        period: None,
    };
    let made = Document::create(&ctx, header, &net.c_node, actor(9), kinds::directory::init);
    assert!(
        made.is_err(),
        "a community node created a Directory document"
    );
}

// ----- refused attacks, kept as regressions -----

/// Lure the street admin with an admin certificate of the community, then revoke it over the
/// community, without keeping what it issued: nothing the street admin issued elsewhere, or
/// through its street certificate, is cut.
#[test]
fn revoking_a_lured_superior_cuts_only_the_lure() {
    let mut net = Net::new();
    let shengli = net.shengli.id.clone();
    let lure = cert_for(
        &net.trust,
        &net.c_admin,
        &net.s_admin,
        &shengli,
        Role::Admin,
        T0 - DAY,
        T0 + YEAR,
    );
    net.trust.insert_certificates([lure.clone()]).unwrap();
    let before = net.verdicts(&net.trust, &[]);
    let rev = revocation(
        &net.trust,
        &net.c_admin,
        &net.s_admin.public(),
        &shengli,
        T0,
        i64::MIN,
        false,
    );
    net.trust.insert_revocations([rev.clone()]).unwrap();
    assert!(!net.trust.in_force(&lure.id(), T0 - 1));
    for k in [&net.q_zhao, &net.c_admin, &net.s_node, &net.s_approver] {
        assert!(
            net.trust.authorize(&k.public(), T0, |_, _| true).is_ok(),
            "{}",
            k.public()
        );
    }
    // Everything but the lure's own standing is as before.
    let after = net.verdicts(&net.trust, &[]);
    let diff: Vec<_> = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b)
        .map(|(a, b)| format!("{a} => {b}"))
        .collect();
    assert!(diff.is_empty(), "{diff:#?}");
}

/// Revocations over units the issuer does not govern, and over keys of other units.
#[test]
fn community_admin_revocations_stop_at_its_border() {
    let mut net = Net::new();
    let before = net.verdicts(&net.trust, &[]);
    let c = &net.c_admin;
    let mut revs = Vec::new();
    for (k, u) in [
        (net.s_admin.public(), net.street.id.clone()),
        (net.s_admin.public(), net.shengli.id.clone()),
        (net.d_admin.public(), net.district.id.clone()),
        (net.q_zhao.public(), net.qianjin.id.clone()),
        (net.q_zhao.public(), net.shengli.id.clone()),
        (net.s_node.public(), net.shengli.id.clone()),
        (net.root.public(), net.shengli.id.clone()),
        (
            net.q_zhao.public(),
            UnitId::new("tiedong/jiefang/shengli2").unwrap(),
        ),
        (
            net.q_zhao.public(),
            UnitId::new("tiedong/jiefang/qianjin/g1").unwrap(),
        ),
    ] {
        for (at, cutoff) in [(T0, T0), (T0, i64::MIN), (i64::MAX, i64::MIN), (T0, T0 - 1)] {
            for keep in [true, false] {
                revs.push(revocation(&net.trust, c, &k, &u, at, cutoff, keep));
            }
        }
    }
    // Also from a worker, a node and a key with no certificate, over their own unit.
    for signer in [&net.c_wang, &net.c_node, &key(77)] {
        for k in [net.c_admin.public(), net.c_li.public()] {
            revs.push(revocation(
                &net.trust,
                signer,
                &k,
                &net.shengli.id,
                T0,
                i64::MIN,
                false,
            ));
        }
    }
    net.trust.insert_revocations(revs.clone()).unwrap();
    for r in &revs {
        let b = &r.body;
        let own = b.issuer == net.c_admin.public()
            && b.unit == net.shengli.id
            && b.at_ms != i64::MAX
            && b.key != net.root.public();
        if !own {
            assert!(!net.trust.is_effective(&r.id()), "{:?}", b);
        }
    }
    assert_eq!(before, net.verdicts(&net.trust, &[]));
}

/// A worker, a node and a key with no certificate try to certify, register and revoke.
#[test]
fn keys_without_admin_role_mint_nothing() {
    let mut net = Net::new();
    let outsider = key(66);
    let new = key(67);
    let shengli = net.shengli.id.clone();
    let grid = unit("tiedong/jiefang/shengli/g1", UnitKind::Grid, "一网格");
    let mut certs = Vec::new();
    let mut regs = Vec::new();
    for signer in [&net.c_wang, &net.c_node, &outsider] {
        for role in [Role::Admin, Role::Writer, Role::Node, Role::Approver] {
            certs.push(cert_for(
                &net.trust,
                signer,
                &new,
                &shengli,
                role,
                T0,
                T0 + YEAR,
            ));
        }
        regs.push(registration(&net.trust, signer, grid.clone(), T0));
    }
    // The outsider certifies itself into a chain of its own keys.
    certs.push(cert_for(
        &net.trust,
        &outsider,
        &outsider,
        &shengli,
        Role::Admin,
        T0,
        T0 + YEAR,
    ));
    net.trust.insert_certificates(certs.clone()).unwrap();
    net.trust.insert_registrations(regs).unwrap();
    assert!(net.trust.unit(&grid.id).is_none());
    for c in &certs {
        assert!(!net.trust.is_chain_valid(&c.id()));
    }
    assert!(matches!(
        net.trust.authorize(&new.public(), T0 + 1, |_, _| true),
        Err(Denied::Untrusted(_))
    ));
}

/// Registrations by a community admin: siblings, its own unit (rename, kind), its parent, a
/// grid registered as a community, a prefix sibling — none takes, whatever its time. A grid
/// below it does, and gives no authority over the community's documents.
#[test]
fn community_admin_registers_only_grids_below_it() {
    let mut net = Net::new();
    let c = net.c_admin.clone();
    let before_units: Vec<Unit> = net.trust.units().cloned().collect();
    let bad = [
        unit("tiedong/jiefang/qianjin", UnitKind::Community, "被改名"),
        unit("tiedong/jiefang/shengli", UnitKind::Community, "自改名"),
        unit("tiedong/jiefang/shengli", UnitKind::Street, "升级"),
        unit("tiedong/jiefang", UnitKind::Street, "街道改名"),
        unit("tiedong/jiefang/shengli2", UnitKind::Community, "前缀"),
        unit("tiedong/jiefang/newc", UnitKind::Community, "新社区"),
        unit("tiedong/other", UnitKind::Street, "新街道"),
        unit("tiedong/jiefang/shengli/g2", UnitKind::Community, "假社区"),
        unit("tiedong/jiefang/shengli/g3", UnitKind::Street, "假街道"),
        unit("tiedong/jiefang/qianjin/g1", UnitKind::Grid, "别人的网格"),
    ];
    let mut regs = Vec::new();
    for u in &bad {
        for at in [T0, T0 + YEAR - 1, i64::MAX, T0 - DAY + 60_001] {
            regs.push(registration(&net.trust, &c, u.clone(), at));
        }
    }
    net.trust.insert_registrations(regs).unwrap();
    let after_units: Vec<Unit> = net.trust.units().cloned().collect();
    assert_eq!(before_units, after_units);
    assert!(net.trust.conflicts().is_empty());

    // A grid below the community, with an admin and a node of the grid.
    let grid = unit("tiedong/jiefang/shengli/g1", UnitKind::Grid, "一网格");
    net.trust
        .insert_registrations([registration(&net.trust, &c, grid.clone(), T0)])
        .unwrap();
    assert_eq!(
        net.trust.unit(&grid.id).map(|u| u.kind),
        Some(UnitKind::Grid)
    );
    let g_admin = key(130);
    let g_node = key(131);
    net.trust
        .insert_certificates([
            cert_for(
                &net.trust,
                &c,
                &g_admin,
                &grid.id,
                Role::Admin,
                T0,
                T0 + YEAR,
            ),
            cert_for(&net.trust, &c, &g_node, &grid.id, Role::Node, T0, T0 + YEAR),
        ])
        .unwrap();
    // The grid admin registers below the grid, re-registers the grid, or its community.
    net.trust
        .insert_registrations([
            registration(
                &net.trust,
                &g_admin,
                unit("tiedong/jiefang/shengli/g1/x", UnitKind::Grid, "x"),
                T0 + 1,
            ),
            registration(
                &net.trust,
                &g_admin,
                unit("tiedong/jiefang/shengli/g1", UnitKind::Grid, "改名"),
                T0 + 2,
            ),
            registration(
                &net.trust,
                &g_admin,
                unit("tiedong/jiefang/shengli", UnitKind::Community, "改名"),
                T0 + 2,
            ),
        ])
        .unwrap();
    assert_eq!(
        net.trust.unit(&grid.id).map(|u| u.name.as_str()),
        Some("一网格")
    );
    assert!(
        net.trust
            .unit(&UnitId::new("tiedong/jiefang/shengli/g1/x").unwrap())
            .is_none()
    );
    assert_eq!(
        net.trust.unit(&net.shengli.id).map(|u| u.name.as_str()),
        Some("胜利社区")
    );
    // Grid keys on the community's documents: a header, and a change to its visit log.
    let ctx = net.ctx(T0 + 10);
    for k in [&g_admin, &g_node] {
        let h = Header {
            network: net.trust.network(),
            kind: Kind::Ledger,
            unit: net.shengli.id.clone(),
            scope: Scope::Public,
            title: "台账".to_owned(),
            created_at_ms: T0 + 10,
            schema_version: SCHEMA_VERSION,
            creator: k.public(),
            period: None,
        };
        assert!(Document::create(&ctx, h, k, actor(11), kinds::ledger::init).is_err());
    }
    let (mut log, _) = net.visit_log().unwrap();
    let err = log.edit(&net.ctx(T0 + 10), &g_node, T0 + 10, None, |tx| {
        kinds::visits::add_entry(
            tx,
            "v9",
            &linli_crdt_model::testkit::visit("h1", "王芳", "2026-11-03", T0 + 10),
        )
    });
    assert!(err.is_err());
    // Nor may a grid approver file the community's convention, or a grid node checkpoint.
    let g_appr = key(132);
    net.trust
        .insert_certificates([cert_for(
            &net.trust,
            &g_admin,
            &g_appr,
            &grid.id,
            Role::Approver,
            T0,
            T0 + YEAR,
        )])
        .unwrap();
    let filed = attestation(
        &net.trust,
        &g_appr,
        Statement::Filed,
        DocId([8; 32]),
        &net.shengli.id,
        None,
        vec![],
        T0 + 1,
    );
    assert!(filed.check(&net.trust).is_err());
    let cp = attestation(
        &net.trust,
        &g_node,
        Statement::Checkpoint,
        DocId([8; 32]),
        &grid.id,
        None,
        vec![],
        T0 + 1,
    );
    assert!(cp.check(&net.trust).is_err());
}

/// A community admin certifies a key for a sibling community that is not yet registered; the
/// street registers it later. The certificate stays without authority. Same for a prefix id.
#[test]
fn certificates_for_units_registered_later_by_someone_else_stay_void() {
    let mut net = Net::new();
    let x = key(140);
    let newc = UnitId::new("tiedong/jiefang/newc").unwrap();
    let prefix = UnitId::new("tiedong/jiefang/shengli2").unwrap();
    let certs = [
        cert_for(
            &net.trust,
            &net.c_admin,
            &x,
            &newc,
            Role::Admin,
            T0,
            T0 + YEAR,
        ),
        cert_for(
            &net.trust,
            &net.c_admin,
            &x,
            &prefix,
            Role::Node,
            T0,
            T0 + YEAR,
        ),
    ];
    net.trust.insert_certificates(certs.clone()).unwrap();
    net.trust
        .insert_registrations([
            registration(
                &net.trust,
                &net.s_admin,
                unit(newc.as_str(), UnitKind::Community, "新社区"),
                T0 + 1,
            ),
            registration(
                &net.trust,
                &net.s_admin,
                unit(prefix.as_str(), UnitKind::Community, "胜利二社区"),
                T0 + 1,
            ),
        ])
        .unwrap();
    assert!(net.trust.unit(&newc).is_some() && net.trust.unit(&prefix).is_some());
    for c in &certs {
        assert!(!net.trust.is_chain_valid(&c.id()));
    }
    // And a revocation over shengli does not reach a key's shengli2 certificate.
    let y = key(141);
    let good = cert_for(
        &net.trust,
        &net.s_admin,
        &y,
        &prefix,
        Role::Writer,
        T0,
        T0 + YEAR,
    );
    let lure = cert_for(
        &net.trust,
        &net.c_admin,
        &y,
        &net.shengli.id,
        Role::Writer,
        T0,
        T0 + YEAR,
    );
    net.trust.insert_certificates([good.clone(), lure]).unwrap();
    net.trust
        .insert_revocations([revocation(
            &net.trust,
            &net.c_admin,
            &y.public(),
            &net.shengli.id,
            T0 + 5,
            i64::MIN,
            false,
        )])
        .unwrap();
    assert!(net.trust.in_force(&good.id(), T0 + 6));
}

/// A revoked or expired community admin mints certificates and registrations after its
/// authority ended (not backdated): none takes.
#[test]
fn revoked_or_expired_admin_mints_nothing_after_the_end() {
    let mut net = Net::new();
    let shengli = net.shengli.id.clone();
    net.trust
        .insert_revocations([revocation(
            &net.trust,
            &net.s_admin,
            &net.c_admin.public(),
            &shengli,
            T0,
            T0,
            true,
        )])
        .unwrap();
    let minion = key(150);
    let after = cert_for(
        &net.trust,
        &net.c_admin,
        &minion,
        &shengli,
        Role::Writer,
        T0 + 1,
        T0 + YEAR,
    );
    let after_expiry = cert_for(
        &net.trust,
        &net.c_admin,
        &minion,
        &shengli,
        Role::Admin,
        T0 + YEAR + 1,
        T0 + 3 * YEAR,
    );
    net.trust
        .insert_certificates([after.clone(), after_expiry.clone()])
        .unwrap();
    net.trust
        .insert_registrations([registration(
            &net.trust,
            &net.c_admin,
            unit("tiedong/jiefang/shengli/g9", UnitKind::Grid, "九"),
            T0 + 1,
        )])
        .unwrap();
    assert!(!net.trust.is_chain_valid(&after.id()));
    assert!(!net.trust.is_chain_valid(&after_expiry.id()));
    assert!(
        net.trust
            .unit(&UnitId::new("tiedong/jiefang/shengli/g9").unwrap())
            .is_none()
    );
    // keep_issued (a job transfer): 王芳 stays, the admin itself does not.
    assert!(acts(
        &net.trust,
        &net.c_wang.public(),
        &shengli,
        Role::Writer,
        T0 + 1
    ));
    assert!(!acts(
        &net.trust,
        &net.c_admin.public(),
        &shengli,
        Role::Admin,
        T0 + 1
    ));
    // Backdated within its window (accepted limit): counts.
    let backdated = cert_for(
        &net.trust,
        &net.c_admin,
        &minion,
        &shengli,
        Role::Writer,
        T0 - 1,
        T0 + YEAR,
    );
    net.trust.insert_certificates([backdated.clone()]).unwrap();
    assert!(net.trust.in_force(&backdated.id(), T0 + 1), "known limit");
}

/// keep_issued on the attacker's own revocations does not loosen a higher compromise
/// revocation.
#[test]
fn keep_issued_does_not_loosen_a_compromise() {
    let mut net = Net::new();
    let shengli = net.shengli.id.clone();
    net.trust
        .insert_revocations([
            revocation(
                &net.trust,
                &net.s_admin,
                &net.c_admin.public(),
                &shengli,
                T0,
                T0,
                false,
            ),
            revocation(
                &net.trust,
                &net.c_admin,
                &net.c_admin.public(),
                &shengli,
                T0 - 5,
                T0 - 5,
                true,
            ),
        ])
        .unwrap();
    assert!(!acts(
        &net.trust,
        &net.c_wang.public(),
        &shengli,
        Role::Writer,
        T0 + 1
    ));
    assert!(!acts(
        &net.trust,
        &net.c_admin.public(),
        &shengli,
        Role::Admin,
        T0 - 4
    ));
}

/// Revocation cycles, same level and across levels, replayed in every arrival order: every
/// order gives the same verdicts, and the street's authority is untouched.
#[test]
fn revocation_cycles_agree_in_every_order() {
    let net = Net::new();
    let shengli = net.shengli.id.clone();
    let t = &net.trust;
    let peer = key(160); // a second community admin, certified by c_admin
    let recs = [
        TrustRecord::Certificate(cert_for(
            t,
            &net.c_admin,
            &peer,
            &shengli,
            Role::Admin,
            T0 - DAY,
            T0 + YEAR,
        )),
        // The community admin lures the street admin into its community…
        TrustRecord::Certificate(cert_for(
            t,
            &net.c_admin,
            &net.s_admin,
            &shengli,
            Role::Admin,
            T0 - DAY,
            T0 + YEAR,
        )),
        // …the two community admins revoke each other, and the street admin's lure…
        TrustRecord::Revocation(revocation(
            t,
            &net.c_admin,
            &peer.public(),
            &shengli,
            T0 + 2,
            T0,
            false,
        )),
        TrustRecord::Revocation(revocation(
            t,
            &peer,
            &net.c_admin.public(),
            &shengli,
            T0 + 2,
            T0 + 1,
            false,
        )),
        TrustRecord::Revocation(revocation(
            t,
            &peer,
            &net.s_admin.public(),
            &shengli,
            T0 + 3,
            T0 - DAY,
            false,
        )),
        // …and the street revokes the community admin over the street (a level up).
        TrustRecord::Revocation(revocation(
            t,
            &net.s_admin,
            &net.c_admin.public(),
            &net.street.id,
            T0 + 4,
            T0 + 4,
            false,
        )),
        TrustRecord::Registration(registration(
            t,
            &net.c_admin,
            unit("tiedong/jiefang/shengli/g1", UnitKind::Grid, "一"),
            T0 + 3,
        )),
    ];
    let mut first: Option<Vec<String>> = None;
    // Every seventh of the 5,040 orders (each inserts one record at a time): 720 orders, with
    // every record first and last many times, in a few seconds of a debug build.
    for p in permutations(recs.len()).into_iter().step_by(7) {
        let mut trust = net.trust.clone();
        let order: Vec<TrustRecord> = p.iter().map(|&i| recs[i].clone()).collect();
        insert_each(&mut trust, &order);
        let f = net.verdicts(&trust, &[peer.public()]);
        match &first {
            None => first = Some(f),
            Some(g) => assert_eq!(g, &f, "order {p:?}"),
        }
        // The street's own authority stands whatever the community does.
        assert!(acts(
            &trust,
            &net.s_admin.public(),
            &net.street.id,
            Role::Admin,
            T0 + DAY
        ));
        assert!(acts(
            &trust,
            &net.q_zhao.public(),
            &net.qianjin.id,
            Role::Writer,
            T0 + DAY
        ));
    }
}

/// Attestations signed with authority a community admin handed out.
#[test]
fn attestations_from_community_certified_keys_carry_no_district_weight() {
    let mut net = Net::new();
    let shengli = net.shengli.id.clone();
    let fake = key(170);
    net.trust
        .insert_certificates([
            cert_for(
                &net.trust,
                &net.c_admin,
                &fake,
                &shengli,
                Role::Approver,
                T0,
                T0 + YEAR,
            ),
            cert_for(
                &net.trust,
                &net.c_admin,
                &fake,
                &shengli,
                Role::Reviewer,
                T0,
                T0 + YEAR,
            ),
            cert_for(
                &net.trust,
                &net.c_admin,
                &fake,
                &shengli,
                Role::Node,
                T0,
                T0 + YEAR,
            ),
            cert_for(
                &net.trust,
                &net.c_admin,
                &fake,
                &net.district.id,
                Role::Node,
                T0,
                T0 + YEAR,
            ),
            cert_for(
                &net.trust,
                &net.c_admin,
                &fake,
                &net.street.id,
                Role::Approver,
                T0,
                T0 + YEAR,
            ),
        ])
        .unwrap();
    // Filing another community's or the street's document.
    for du in [&net.qianjin.id, &net.street.id, &shengli] {
        let a = attestation(
            &net.trust,
            &fake,
            Statement::Filed,
            DocId([9; 32]),
            du,
            None,
            vec![],
            T0 + 1,
        );
        assert!(a.check(&net.trust).is_err(), "{du}");
    }
    // A checkpoint, newest by far (within skew of a far "now").
    let cp = attestation(
        &net.trust,
        &fake,
        Statement::Checkpoint,
        DocId([9; 32]),
        &net.district.id,
        None,
        vec![],
        T0 + 1,
    );
    net.attestations
        .insert(cp.clone(), &net.trust.network())
        .unwrap();
    assert!(
        net.attestations
            .latest_checkpoint(&net.trust, T0 + 2, 600_000)
            .is_none()
    );
    // Admission at its own community from its own approver and reviewer.
    let doc = DocId([9; 32]);
    let rv = attestation(
        &net.trust,
        &fake,
        Statement::Reviewed,
        doc,
        &shengli,
        Some("r"),
        vec![shengli.clone()],
        T0 + 1,
    );
    let ap = attestation(
        &net.trust,
        &fake,
        Statement::Approved,
        doc,
        &shengli,
        Some("r"),
        vec![shengli.clone()],
        T0 + 1,
    );
    net.attestations
        .insert(rv.clone(), &net.trust.network())
        .unwrap();
    net.attestations
        .insert(ap.clone(), &net.trust.network())
        .unwrap();
    let (d, r, a) = (doc.to_string(), rv.id().to_string(), ap.id().to_string());
    let adm = AdmissionRef {
        request_doc: &d,
        request_id: "r",
        review: &r,
        approval: &a,
    };
    assert!(attest::check_admission(&adm, &shengli, &net.attestations, &net.trust).is_err());
    // A district approval re-targeted: the targets are signed, so a copy with other targets
    // is another attestation needing the district's signature.
    let honest = attestation(
        &net.trust,
        &net.d_approver,
        Statement::Approved,
        doc,
        &net.district.id,
        Some("r"),
        vec![net.qianjin.id.clone()],
        T0,
    );
    let mut forged = honest.clone();
    forged.body.targets = vec![shengli.clone()];
    assert!(forged.check(&net.trust).is_err());
}

/// Extreme times: an i64::MAX "now" does not overflow the future check; a certificate issued
/// at i64::MIN, or valid to i64::MAX, by a community admin gives nothing outside its window.
#[test]
fn extreme_times_give_no_advantage() {
    let mut net = Net::new();
    assert!(cert::check_not_future("x", i64::MAX, i64::MAX, i64::MAX).is_ok());
    assert!(cert::check_not_future("x", i64::MAX, 0, 600_000).is_err());
    let k = key(180);
    let c = cert_for(
        &net.trust,
        &net.c_admin,
        &k,
        &net.shengli.id,
        Role::Writer,
        i64::MIN,
        i64::MAX,
    );
    let c2 = cert_for(
        &net.trust,
        &net.c_admin,
        &k,
        &net.shengli.id,
        Role::Admin,
        T0,
        i64::MAX,
    );
    net.trust
        .insert_certificates([c.clone(), c2.clone()])
        .unwrap();
    assert!(
        !net.trust.is_chain_valid(&c.id()),
        "issued before its issuer"
    );
    assert!(
        !net.trust.in_force(&c2.id(), T0 + YEAR),
        "outlives its issuer"
    );
    assert!(
        net.trust
            .authorize(&k.public(), T0 + 2 * YEAR, |_, _| true)
            .is_err()
    );
    // A revocation signed at i64::MAX by the community admin (expired by then) does nothing.
    let r = revocation(
        &net.trust,
        &net.c_admin,
        &net.c_wang.public(),
        &net.shengli.id,
        i64::MAX,
        i64::MIN,
        false,
    );
    net.trust.insert_revocations([r.clone()]).unwrap();
    assert!(!net.trust.is_effective(&r.id()));
    assert!(acts(
        &net.trust,
        &net.c_wang.public(),
        &net.shengli.id,
        Role::Writer,
        T0
    ));
    // A ledger change carrying a trust record dated beyond the skew is refused.
    let ctx = net.ctx(T0);
    let h = net.header(Kind::Ledger, &net.shengli, &net.c_node, "台账", None);
    let (mut ledger, _) =
        Document::create(&ctx, h, &net.c_node, actor(12), kinds::ledger::init).unwrap();
    let future = cert::TrustRecord::Revocation(revocation(
        &net.trust,
        &net.c_admin,
        &net.c_li.public(),
        &net.shengli.id,
        T0 + DAY,
        T0,
        false,
    ));
    let err = ledger.edit(&ctx, &net.c_wang, T0 + 1, None, |tx| {
        kinds::ledger::put_trust_record(tx, &future.id().to_string(), &future.encode())
    });
    assert!(err.is_err());
}

/// Duplicate records: the same record twice (within a batch and across batches) is one record.
#[test]
fn duplicates_are_one_record() {
    let mut net = Net::new();
    let r = revocation(
        &net.trust,
        &net.c_admin,
        &net.c_li.public(),
        &net.shengli.id,
        T0,
        T0,
        false,
    );
    let ids = net
        .trust
        .insert_revocations([r.clone(), r.clone()])
        .unwrap();
    assert_eq!(ids.len(), 1);
    assert!(net.trust.insert_revocations([r]).unwrap().is_empty());
}
