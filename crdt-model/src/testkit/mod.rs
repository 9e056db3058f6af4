//! Seeded fixtures: a small network with fixed keys, for tests here and in other crates.
//!
//! 铁东区 (district `tiedong`) → 解放街道 (street `tiedong/jiefang`) → 胜利社区 and 前进社区
//! (communities `tiedong/jiefang/shengli`, `tiedong/jiefang/qianjin`). Keys come from fixed seeds,
//! so ids and hashes in snapshots are stable. [`forge`] makes changes whatever their authority,
//! [`hostile`] the bytes of a peer that does not follow the wire format.

pub mod hostile;

use automerge::ActorId;
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::{IndexedRandom as _, SliceRandom as _};
use rand::{RngExt as _, SeedableRng as _};

use crate::attest;
use crate::cert::{
    CertBody, Certificate, Registration, RegistrationBody, Revocation, RevocationBody, Role,
    TrustRecord,
};
use crate::doc::{self, Header, SCHEMA_VERSION};
use crate::document::{ChangeSignature, Context, Document, EditRefused, Limits};
use crate::genesis::Genesis;
use crate::keys::{PublicKey, SecretKey};
use crate::kinds::{self, Kind};
use crate::trust::Trust;
use crate::unit::{Unit, UnitId, UnitKind};

/// 2026-11-01T00:00:00Z: fixtures' notion of "now".
pub const T0: i64 = 1_793_491_200_000;
/// One day in milliseconds.
pub const DAY: i64 = 86_400_000;
/// How long fixture certificates last.
pub const YEAR: i64 = 365 * DAY;

/// Everyone in the fixture network.
#[derive(Debug, Clone)]
pub struct Net {
    pub genesis: Genesis,
    pub trust: Trust,
    pub attestations: attest::Index,
    pub limits: Limits,
    pub root: SecretKey,
    pub district: Unit,
    pub street: Unit,
    pub shengli: Unit,
    pub qianjin: Unit,
    /// District: admin (民政局), reviewer (civil affairs), approver (government), node.
    pub d_admin: SecretKey,
    pub d_reviewer: SecretKey,
    pub d_approver: SecretKey,
    pub d_node: SecretKey,
    /// Street: admin, approver (files conventions), node.
    pub s_admin: SecretKey,
    pub s_approver: SecretKey,
    pub s_node: SecretKey,
    /// 胜利社区: admin, two workers, node.
    pub c_admin: SecretKey,
    pub c_wang: SecretKey,
    pub c_li: SecretKey,
    pub c_node: SecretKey,
    /// 前进社区: a worker.
    pub q_zhao: SecretKey,
}

pub fn key(n: u8) -> SecretKey {
    SecretKey::from_seed([n; 32])
}

/// A deterministic actor id for fixtures (nodes draw fresh random ones).
pub fn actor(n: u8) -> ActorId {
    ActorId::from(vec![n; 16])
}

/// A deterministic actor of `author`'s, as a change it signs must carry
/// ([`crate::document::actor_for`]).
pub fn actor_of(author: &SecretKey, n: u8) -> ActorId {
    crate::document::actor_for(
        &author.public(),
        &[n; crate::document::ACTOR_INCARNATION_BYTES],
    )
}

pub fn unit(id: &str, kind: UnitKind, name: &str) -> Unit {
    Unit {
        id: UnitId::new(id).expect("fixture unit id"),
        kind,
        name: name.to_owned(),
    }
}

/// Issue a certificate for `subject` in `unit` with `role`, valid for a year from T0.
pub fn cert(
    trust: &Trust,
    issuer: &SecretKey,
    subject: &SecretKey,
    unit: &Unit,
    role: Role,
    holder: &str,
) -> Certificate {
    Certificate::issue(
        CertBody {
            network: trust.network(),
            subject: subject.public(),
            unit: unit.id.clone(),
            role,
            holder: holder.to_owned(),
            issuer: issuer.public(),
            issued_at_ms: T0 - DAY,
            expires_at_ms: T0 + YEAR,
        },
        issuer,
    )
}

/// Register `unit` as signed by `issuer` (an admin of its parent or above), a minute after the
/// fixture certificates were issued.
pub fn register(trust: &Trust, issuer: &SecretKey, unit: &Unit) -> Registration {
    registration(trust, issuer, unit.clone(), T0 - DAY + 60_000)
}

/// A certificate with every field chosen, whatever its authority: for attack tests.
#[allow(clippy::too_many_arguments, reason = "one argument per field")]
pub fn cert_between(
    trust: &Trust,
    issuer: &SecretKey,
    subject: &PublicKey,
    unit: &UnitId,
    role: Role,
    from: i64,
    until: i64,
    holder: &str,
) -> Certificate {
    Certificate::issue(
        CertBody {
            network: trust.network(),
            subject: *subject,
            unit: unit.clone(),
            role,
            holder: holder.to_owned(),
            issuer: issuer.public(),
            issued_at_ms: from,
            expires_at_ms: until,
        },
        issuer,
    )
}

/// A revocation with every field chosen, whatever its authority: for attack tests.
#[allow(clippy::too_many_arguments, reason = "one argument per field")]
pub fn revocation(
    trust: &Trust,
    issuer: &SecretKey,
    key: &PublicKey,
    unit: &UnitId,
    at_ms: i64,
    cutoff_ms: i64,
    keep_issued: bool,
    reason: &str,
) -> Revocation {
    Revocation::issue(
        RevocationBody {
            network: trust.network(),
            key: *key,
            issuer: issuer.public(),
            unit: unit.clone(),
            at_ms,
            cutoff_ms,
            reason: reason.to_owned(),
            keep_issued,
        },
        issuer,
    )
}

/// A registration of `unit` by `issuer` dated `at_ms`, whatever its authority.
pub fn registration(trust: &Trust, issuer: &SecretKey, unit: Unit, at_ms: i64) -> Registration {
    Registration::issue(
        RegistrationBody {
            network: trust.network(),
            unit,
            issuer: issuer.public(),
            at_ms,
        },
        issuer,
    )
}

/// Insert trust records one at a time, in the order given, as a node that hears them one by
/// one would.
pub fn insert_each(trust: &mut Trust, records: &[TrustRecord]) {
    for r in records {
        match r {
            TrustRecord::Certificate(c) => trust.insert_certificates([c.clone()]).map(drop),
            TrustRecord::Revocation(v) => trust.insert_revocations([v.clone()]).map(drop),
            TrustRecord::Registration(g) => trust.insert_registrations([g.clone()]).map(drop),
        }
        .expect("a well-formed record");
    }
}

/// Every permutation of `0..n` (n small).
pub fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n == 0 {
        return vec![vec![]];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

/// A seeded generator, so a failing run can be replayed from its seed: rand's xoshiro256++, a
/// generator whose output for a given seed rand keeps the same from release to release.
#[derive(Debug, Clone)]
pub struct Rng(Xoshiro256PlusPlus);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(Xoshiro256PlusPlus::seed_from_u64(seed))
    }

    /// Uniform below `n` (> 0).
    pub fn below(&mut self, n: usize) -> usize {
        self.0.random_range(..n)
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        xs.choose(&mut self.0)
            .expect("a choice from a non-empty slice")
    }

    /// `xs` in a random order.
    pub fn shuffled<T: Clone>(&mut self, xs: &[T]) -> Vec<T> {
        let mut v = xs.to_vec();
        v.shuffle(&mut self.0);
        v
    }
}

impl Net {
    /// Every verdict that matters in the fixture network, as comparable strings: the unit
    /// tree and what each fixture key (and `extra`) may do at times around `T0`.
    pub fn verdicts(&self, trust: &Trust, extra: &[PublicKey]) -> Vec<String> {
        let mut keys: Vec<PublicKey> = [
            &self.d_admin,
            &self.d_reviewer,
            &self.d_approver,
            &self.d_node,
            &self.s_admin,
            &self.s_approver,
            &self.s_node,
            &self.c_admin,
            &self.c_wang,
            &self.c_li,
            &self.c_node,
            &self.q_zhao,
        ]
        .iter()
        .map(|k| k.public())
        .collect();
        keys.extend_from_slice(extra);
        let mut out: Vec<String> = trust
            .units()
            .map(|u| format!("{} {:?} {}", u.id, u.kind, u.name))
            .collect();
        for k in &keys {
            for at in [T0 - YEAR, T0 - DAY, T0, T0 + 5, T0 + DAY, T0 + 3 * DAY] {
                let v = trust.authorize(k, at, |_, _| true);
                out.push(format!(
                    "{k} {at}: {:?}",
                    v.map(|g| (g.unit, g.role, g.certificate))
                ));
            }
        }
        out
    }

    /// [`Net::verdicts`] and which revocations take effect.
    pub fn verdicts_and_revocations(&self, trust: &Trust, extra: &[PublicKey]) -> Vec<String> {
        let mut out = self.verdicts(trust, extra);
        let mut effective: Vec<String> = trust
            .revocations()
            .filter(|(id, _)| trust.is_effective(id))
            .map(|(id, _)| id.to_string())
            .collect();
        effective.sort();
        out.extend(effective);
        out
    }
}

impl Net {
    pub fn new() -> Net {
        let root = key(1);
        let district = unit("tiedong", UnitKind::District, "铁东区");
        let street = unit("tiedong/jiefang", UnitKind::Street, "解放街道");
        let shengli = unit("tiedong/jiefang/shengli", UnitKind::Community, "胜利社区");
        let qianjin = unit("tiedong/jiefang/qianjin", UnitKind::Community, "前进社区");
        let genesis = Genesis {
            network_name: "铁东区邻里网".to_owned(),
            top: district.clone(),
            root_keys: vec![root.public()],
            created_at_ms: T0 - 2 * DAY,
        };
        let mut trust = Trust::new(genesis.clone()).expect("fixture genesis");
        let (d_admin, d_reviewer, d_approver, d_node) = (key(10), key(11), key(12), key(13));
        let (s_admin, s_approver, s_node) = (key(20), key(21), key(22));
        let (c_admin, c_wang, c_li, c_node) = (key(30), key(31), key(32), key(33));
        let q_zhao = key(40);
        // The tree: the root registers the street, the street's admin its communities.
        let (s_admin_key, root_key) = (key(20), key(1));
        trust
            .insert_registrations([
                register(&trust, &root_key, &street),
                register(&trust, &s_admin_key, &shengli),
                register(&trust, &s_admin_key, &qianjin),
            ])
            .expect("fixture registrations");
        let certs = vec![
            cert(
                &trust,
                &root,
                &d_admin,
                &district,
                Role::Admin,
                "民政局管理员",
            ),
            cert(
                &trust,
                &d_admin,
                &d_reviewer,
                &district,
                Role::Reviewer,
                "民政局 刘审",
            ),
            cert(
                &trust,
                &d_admin,
                &d_approver,
                &district,
                Role::Approver,
                "区政府 陈批",
            ),
            cert(
                &trust,
                &d_admin,
                &d_node,
                &district,
                Role::Node,
                "铁东区节点",
            ),
            cert(
                &trust,
                &d_admin,
                &s_admin,
                &street,
                Role::Admin,
                "解放街道管理员",
            ),
            cert(
                &trust,
                &s_admin,
                &s_approver,
                &street,
                Role::Approver,
                "街道 孙备",
            ),
            cert(
                &trust,
                &s_admin,
                &s_node,
                &street,
                Role::Node,
                "解放街道节点",
            ),
            cert(
                &trust,
                &s_admin,
                &c_admin,
                &shengli,
                Role::Admin,
                "胜利社区书记",
            ),
            cert(&trust, &c_admin, &c_wang, &shengli, Role::Writer, "王芳"),
            cert(&trust, &c_admin, &c_li, &shengli, Role::Writer, "李强"),
            cert(
                &trust,
                &c_admin,
                &c_node,
                &shengli,
                Role::Node,
                "胜利社区节点",
            ),
            cert(&trust, &s_admin, &q_zhao, &qianjin, Role::Writer, "赵敏"),
        ];
        trust
            .insert_certificates(certs)
            .expect("fixture certificates");
        Net {
            genesis,
            trust,
            attestations: attest::Index::default(),
            limits: Limits::default(),
            root,
            district,
            street,
            shengli,
            qianjin,
            d_admin,
            d_reviewer,
            d_approver,
            d_node,
            s_admin,
            s_approver,
            s_node,
            c_admin,
            c_wang,
            c_li,
            c_node,
            q_zhao,
        }
    }

    pub fn ctx(&self, now_ms: i64) -> Context<'_> {
        Context {
            trust: &self.trust,
            attestations: &self.attestations,
            limits: &self.limits,
            now_ms,
        }
    }

    pub fn header(
        &self,
        kind: Kind,
        unit: &Unit,
        creator: &SecretKey,
        title: &str,
        period: Option<&str>,
    ) -> Header {
        Header {
            network: self.trust.network(),
            kind,
            unit: unit.id.clone(),
            scope: doc::default_scope(kind),
            title: title.to_owned(),
            created_at_ms: T0,
            schema_version: SCHEMA_VERSION,
            creator: creator.public(),
            period: period.map(str::to_owned),
        }
    }

    /// 胜利社区's visit log for 2026-11, created by its node, with households assigned to 王芳
    /// and 李强.
    pub fn visit_log(&self) -> Result<(Document, Vec<ChangeSignature>), EditRefused> {
        let h = self.header(
            Kind::VisitLog,
            &self.shengli,
            &self.c_node,
            "胜利社区 2026-11 走访记录",
            Some("2026-11"),
        );
        let (mut d, s0) = Document::create(&self.ctx(T0), h, &self.c_node, actor(1), |tx| {
            kinds::visits::init(tx, "2026-11")
        })?;
        let (_, s1) = d.edit(&self.ctx(T0), &self.c_node, T0 + 1, Some("assign"), |tx| {
            for (i, worker) in [(1, "王芳"), (2, "王芳"), (3, "李强")] {
                kinds::visits::assign(
                    tx,
                    &format!("h{i}"),
                    &kinds::visits::Assignment {
                        worker: worker.to_owned(),
                        household_name: format!("住户{i}"),
                        kind: kinds::visits::HouseholdKind::Household,
                        grid: Some("一网格".to_owned()),
                        address: format!("胜利路{i}号"),
                    },
                )?;
            }
            Ok(())
        })?;
        Ok((d, vec![s0, s1]))
    }
}

impl Default for Net {
    fn default() -> Self {
        Net::new()
    }
}

/// A visit entry by `worker` to `household` on `date`.
pub fn visit(household: &str, worker: &str, date: &str, at_ms: i64) -> kinds::visits::Entry {
    kinds::visits::Entry {
        household_id: household.to_owned(),
        worker: worker.to_owned(),
        date: date.to_owned(),
        mode: kinds::visits::Mode::Door,
        needs: vec!["独居老人需要助餐".to_owned()],
        follow_up: None,
        at_ms,
    }
}

/// Changes made by hand, signed by whoever the test chooses, for attack tests on ingest: what a
/// peer can send, whatever its authority.
pub mod forge {
    use automerge::transaction::CommitOptions;
    use automerge::{ActorId, AutoCommit, Change, ChangeHash, ExpandedChange};

    use super::{Net, T0, visit};
    use crate::document::{Applied, Batch, ChangeSignature, Document};
    use crate::keys::SecretKey;
    use crate::kinds;

    /// A change with its signature.
    pub type Item = (Change, ChangeSignature);

    /// A visit entry `id` made on `doc` at its heads under `actor`, signed by `signer`.
    pub fn forge_as(
        net: &Net,
        doc: &mut Document,
        actor: ActorId,
        signer: &SecretKey,
        at_ms: i64,
        id: &str,
    ) -> Item {
        raw_as(net, doc, actor, signer, at_ms, |tx| {
            kinds::visits::add_entry(tx, id, &visit("h1", "王芳", "2026-11-03", T0))
                .expect("valid visit");
        })
    }

    /// A change made on `doc` at its heads by a raw Automerge edit `f`.
    pub fn raw_as(
        net: &Net,
        doc: &mut Document,
        actor: ActorId,
        signer: &SecretKey,
        at_ms: i64,
        f: impl FnOnce(&mut AutoCommit),
    ) -> Item {
        let heads = doc.heads();
        let mut copy: AutoCommit = doc.at(&heads).expect("fork at own heads");
        copy.set_actor(actor);
        f(&mut copy);
        copy.commit_with(CommitOptions::default().with_time(at_ms));
        let change = copy.get_last_local_change().expect("a change").clone();
        let sig = ChangeSignature::sign(net.trust.network(), doc.id(), change.hash(), signer);
        (change, sig)
    }

    /// Re-encode `change` with its fields edited by `f`, and sign the result as `signer`.
    pub fn recraft(
        net: &Net,
        doc: &Document,
        change: &Change,
        signer: &SecretKey,
        f: impl FnOnce(&mut ExpandedChange),
    ) -> Item {
        let mut e = change.decode();
        f(&mut e);
        e.hash = None;
        let change = Change::from(e);
        let sig = ChangeSignature::sign(net.trust.network(), doc.id(), change.hash(), signer);
        (change, sig)
    }

    /// A batch of `items`, in order.
    pub fn batch(items: &[&Item]) -> Batch {
        Batch {
            network: None,
            changes: items.iter().map(|(c, _)| c.clone()).collect(),
            signatures: items.iter().map(|(_, s)| s.clone()).collect(),
        }
    }

    pub fn h(item: &Item) -> ChangeHash {
        item.0.hash()
    }

    /// What an ingest set aside, as (change, reason label), sorted.
    pub fn reasons(applied: &Applied) -> Vec<(ChangeHash, &'static str)> {
        let mut out: Vec<_> = applied
            .set_aside
            .iter()
            .map(|s| (s.change, s.reason.reason()))
            .collect();
        out.sort();
        out
    }

    /// Every change the document holds has its author's signature recorded.
    pub fn assert_every_change_signed(doc: &mut Document, what: &str) {
        for c in doc.changes() {
            assert!(
                doc.signature(&c.hash()).is_some(),
                "{what}: change {} is in the document without a signature",
                c.hash()
            );
        }
    }
}
