//! The workload, built once per run from a seed: community-month visit logs as the workers of a
//! community write them — one signed change per visit, ~8 fields a visit.
//!
//! The network is made here rather than taken from `testkit`, because the bench is a binary and a
//! binary cannot use a dev-dependency's feature without turning it on for the whole workspace build.
//! Its shape is the fixture's: 铁东区 → streets → communities, each community with an admin, a node
//! and ten certified writers.

use automerge::transaction::CommitOptions;
use automerge::{ActorId, AutoCommit, Change, ChangeHash};
use linli_crdt_model::attest;
use linli_crdt_model::cert::{CertBody, Certificate, Registration, RegistrationBody, Role};
use linli_crdt_model::doc::{self, DocId, Header, SCHEMA_VERSION, SignedHeader};
use linli_crdt_model::document::{
    self, ACTOR_INCARNATION_BYTES, ChangeSignature, Context, Document, actor_for,
};
use linli_crdt_model::genesis::{Genesis, NetworkId};
use linli_crdt_model::keys::{self, Domain, SecretKey};
use linli_crdt_model::kinds::{Kind, visits};
use linli_crdt_model::trust::Trust;
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use serde::Serialize;

/// 2026-11-01T00:00:00Z, the month the logs are for.
pub(crate) const T0: i64 = 1_793_491_200_000;
pub(crate) const DAY: i64 = 86_400_000;
const YEAR: i64 = 365 * DAY;
pub(crate) const MONTH: &str = "2026-11";
pub(crate) const WORKERS: usize = 10;
pub(crate) const HOUSEHOLDS: usize = 300;
/// Communities per street.
const STREET_SIZE: usize = 20;

/// A community: its unit, node key and ten writers.
#[derive(Debug, Clone)]
pub(crate) struct Community {
    pub(crate) unit: Unit,
    pub(crate) node: SecretKey,
    pub(crate) workers: Vec<SecretKey>,
}

/// The whole network a run uses: trust, keys, and the "now" ingest is judged at.
#[derive(Debug, Clone)]
pub(crate) struct Fixture {
    pub(crate) trust: Trust,
    pub(crate) attestations: attest::Index,
    pub(crate) limits: document::Limits,
    pub(crate) communities: Vec<Community>,
    pub(crate) district: Unit,
}

/// A deterministic key: SHA-256 of the seed and a label.
pub(crate) fn key(seed: u64, label: &str) -> SecretKey {
    SecretKey::from_seed(keys::sha256(&[&seed.to_le_bytes(), label.as_bytes()]))
}

fn unit(id: &str, kind: UnitKind, name: &str) -> Unit {
    Unit {
        id: UnitId::new(id).expect("bench unit ids are valid"),
        kind,
        name: name.to_owned(),
    }
}

fn cert(
    network: NetworkId,
    issuer: &SecretKey,
    subject: &SecretKey,
    unit: &Unit,
    role: Role,
    holder: &str,
) -> Certificate {
    Certificate::issue(
        CertBody {
            network,
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

/// `issuer` registers `unit` a minute after the certificates are issued.
fn register(network: NetworkId, issuer: &SecretKey, unit: &Unit) -> Registration {
    Registration::issue(
        RegistrationBody {
            network,
            unit: unit.clone(),
            issuer: issuer.public(),
            at_ms: T0 - DAY + 60_000,
        },
        issuer,
    )
}

impl Fixture {
    /// A district with `n_communities` communities in streets of twenty.
    pub(crate) fn new(seed: u64, n_communities: usize) -> Fixture {
        let root = key(seed, "root");
        let district = unit("tiedong", UnitKind::District, "铁东区");
        let genesis = Genesis {
            network_name: "铁东区邻里网".to_owned(),
            top: district.clone(),
            root_keys: vec![root.public()],
            created_at_ms: T0 - 2 * DAY,
        };
        let mut trust = Trust::new(genesis.clone()).expect("bench genesis is valid");
        let network = trust.network();
        let d_admin = key(seed, "district/admin");
        let d_node = key(seed, "district/node");
        let mut certs = vec![
            cert(
                network,
                &root,
                &d_admin,
                &district,
                Role::Admin,
                "民政局管理员",
            ),
            cert(
                network,
                &d_admin,
                &d_node,
                &district,
                Role::Node,
                "铁东区节点",
            ),
        ];
        let mut registrations = Vec::new();
        let mut communities = Vec::with_capacity(n_communities);
        let mut s_admin = d_admin.clone();
        let mut street = district.clone();
        for c in 0..n_communities {
            if c % STREET_SIZE == 0 {
                let s = c / STREET_SIZE;
                street = unit(
                    &format!("tiedong/s{s:02}"),
                    UnitKind::Street,
                    &format!("第{s}街道"),
                );
                s_admin = key(seed, &format!("street{s}/admin"));
                registrations.push(register(network, &d_admin, &street));
                certs.push(cert(
                    network,
                    &d_admin,
                    &s_admin,
                    &street,
                    Role::Admin,
                    "街道管理员",
                ));
            }
            let u = unit(
                &format!("{}/c{c:03}", street.id),
                UnitKind::Community,
                &format!("第{c}社区"),
            );
            let admin = key(seed, &format!("c{c}/admin"));
            let node = key(seed, &format!("c{c}/node"));
            registrations.push(register(network, &s_admin, &u));
            certs.push(cert(network, &s_admin, &admin, &u, Role::Admin, "社区书记"));
            certs.push(cert(network, &admin, &node, &u, Role::Node, "社区节点"));
            let workers: Vec<SecretKey> = (0..WORKERS)
                .map(|w| key(seed, &format!("c{c}/worker{w}")))
                .collect();
            for (w, k) in workers.iter().enumerate() {
                certs.push(cert(
                    network,
                    &admin,
                    k,
                    &u,
                    Role::Writer,
                    &format!("社工{w}"),
                ));
            }
            communities.push(Community {
                unit: u,
                node,
                workers,
            });
        }
        trust
            .insert_registrations(registrations)
            .expect("bench registrations are well formed");
        trust
            .insert_certificates(certs)
            .expect("bench certificates chain to the root");
        Fixture {
            trust,
            attestations: attest::Index::default(),
            limits: document::Limits::default(),
            communities,
            district,
        }
    }

    pub(crate) fn network(&self) -> NetworkId {
        self.trust.network()
    }

    /// Ingest is judged forty days after the month began: every change lies in the past.
    pub(crate) fn ctx(&self) -> Context<'_> {
        Context {
            trust: &self.trust,
            attestations: &self.attestations,
            limits: &self.limits,
            now_ms: T0 + 40 * DAY,
        }
    }
}

/// One community's month: the header, every change in causal order with its signature, and one
/// more visit (for "then one new record in each").
#[derive(Debug, Clone)]
pub(crate) struct DocData {
    pub(crate) header: SignedHeader,
    pub(crate) changes: Vec<Vec<u8>>,
    pub(crate) signatures: Vec<ChangeSignature>,
    pub(crate) extra: (Vec<u8>, ChangeSignature),
}

impl DocData {
    pub(crate) fn id(&self) -> DocId {
        self.header.id()
    }

    pub(crate) fn change_bytes(&self) -> usize {
        self.changes.iter().map(Vec::len).sum()
    }

    pub(crate) fn decoded(&self) -> Vec<Change> {
        self.changes
            .iter()
            .map(|b| Change::from_bytes(b.clone()).expect("generated changes decode"))
            .collect()
    }

    /// A full replica, as the community node holds it after the month.
    pub(crate) fn full(&self, actor: ActorId) -> Document {
        let mut am = AutoCommit::new();
        am.apply_changes(self.decoded())
            .expect("generated changes apply");
        Document::load(
            self.header.clone(),
            &am.save(),
            self.signatures.iter().cloned(),
            actor,
        )
        .expect("generated document loads")
    }

    /// The Automerge bytes of the whole month (for plain Automerge and samod).
    pub(crate) fn saved(&self) -> Vec<u8> {
        let mut am = AutoCommit::new();
        am.apply_changes(self.decoded())
            .expect("generated changes apply");
        am.save()
    }
}

/// A small deterministic generator (xorshift64*): the same seed gives the same month.
#[derive(Debug, Clone)]
pub(crate) struct Rng(u64);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

const NEEDS: [&str; 8] = [
    "独居老人需要助餐",
    "楼道灯损坏",
    "申请低保咨询",
    "子女在外需定期探望",
    "漏水待修",
    "残疾人证办理",
    "高龄补贴申领",
    "邻里噪音纠纷",
];

fn actor_of(key: &SecretKey) -> ActorId {
    let digest = keys::sha256(&[b"actor", &key.public().0]);
    let mut incarnation = [0u8; ACTOR_INCARNATION_BYTES];
    incarnation.copy_from_slice(&digest[..ACTOR_INCARNATION_BYTES]);
    actor_for(&key.public(), &incarnation)
}

/// The visit log of community `c` with `n_records` visits, built as its workers write it.
pub(crate) fn community_month(fx: &Fixture, seed: u64, c: usize, n_records: usize) -> DocData {
    let community = &fx.communities[c];
    let header = Header {
        network: fx.network(),
        kind: Kind::VisitLog,
        unit: community.unit.id.clone(),
        scope: doc::default_scope(Kind::VisitLog),
        title: format!("{} {MONTH} 走访记录", community.unit.name),
        created_at_ms: T0,
        schema_version: SCHEMA_VERSION,
        creator: community.node.public(),
        period: Some(MONTH.to_owned()),
    };
    let ctx = fx.ctx();
    let (mut d, s0) = Document::create(
        &ctx,
        header,
        &community.node,
        actor_of(&community.node),
        |tx| visits::init(tx, MONTH),
    )
    .expect("the node may create its visit log");
    let (_, s1) = d
        .edit(&ctx, &community.node, T0 + 1, Some("assign"), |tx| {
            for h in 0..HOUSEHOLDS {
                visits::assign(
                    tx,
                    &format!("h{h:03}"),
                    &visits::Assignment {
                        worker: format!("社工{}", h % WORKERS),
                        household_name: format!("住户{h}"),
                        kind: if h % 15 == 0 {
                            visits::HouseholdKind::Shop
                        } else {
                            visits::HouseholdKind::Household
                        },
                        grid: Some(format!("{}网格", h / 100 + 1)),
                        address: format!("胜利路{}号{}单元", h / 6 + 1, h % 6 + 1),
                    },
                )?;
            }
            Ok(())
        })
        .expect("assignment is valid");
    let id = d.id();
    let network = fx.network();
    let mut am = AutoCommit::new();
    am.apply_changes(d.changes()).expect("own changes apply");
    let mut signatures = vec![s0, s1];
    let mut rng = Rng::new(seed ^ (c as u64).wrapping_mul(0x1000_0001));
    let mut visit = |am: &mut AutoCommit, v: usize, n: usize| -> ChangeSignature {
        let h = rng.below(HOUSEHOLDS);
        let w = h % WORKERS;
        let day = (v * 30 / n.max(1)).min(29) + 1;
        let at_ms = T0 + (day as i64 - 1) * DAY + (v as i64 % 600) * 60_000;
        let n_needs = 1 + rng.below(2);
        let entry = visits::Entry {
            household_id: format!("h{h:03}"),
            worker: format!("社工{w}"),
            date: format!("{MONTH}-{day:02}"),
            mode: [
                visits::Mode::Door,
                visits::Mode::Door,
                visits::Mode::Phone,
                visits::Mode::Online,
            ][rng.below(4)],
            needs: (0..n_needs)
                .map(|_| NEEDS[rng.below(NEEDS.len())].to_owned())
                .collect(),
            follow_up: (rng.below(10) < 3).then(|| "下周回访".to_owned()),
            at_ms,
        };
        let worker = &community.workers[w];
        am.set_actor(actor_of(worker));
        visits::add_entry(am, &format!("v{v:05}"), &entry).expect("generated visit is valid");
        let hash: ChangeHash = am
            .commit_with(CommitOptions::default().with_time(at_ms))
            .expect("a visit changes the document");
        ChangeSignature::sign(network, id, hash, worker)
    };
    for v in 0..n_records {
        signatures.push(visit(&mut am, v, n_records));
    }
    let changes: Vec<Vec<u8>> = am
        .get_changes(&[])
        .into_iter()
        .map(|c| c.raw_bytes().to_vec())
        .collect();
    let sig = visit(&mut am, n_records, n_records);
    let extra = am
        .get_last_local_change()
        .expect("the extra visit was committed")
        .raw_bytes()
        .to_vec();
    DocData {
        header: d.header().clone(),
        changes,
        signatures,
        extra: (extra, sig),
    }
}

/// `n_docs` community months of `n_records` each, built on every core.
pub(crate) fn months(fx: &Fixture, seed: u64, n_docs: usize, n_records: usize) -> Vec<DocData> {
    let n_threads = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .min(n_docs.max(1));
    let mut out: Vec<Option<DocData>> = vec![None; n_docs];
    std::thread::scope(|s| {
        for (t, chunk) in out.chunks_mut(n_docs.div_ceil(n_threads)).enumerate() {
            let base = t * n_docs.div_ceil(n_threads);
            s.spawn(move || {
                for (i, slot) in chunk.iter_mut().enumerate() {
                    *slot = Some(community_month(fx, seed, base + i, n_records));
                }
            });
        }
    });
    out.into_iter()
        .map(|d| d.expect("every slot filled"))
        .collect()
}

/// The exact bytes a change signature covers (`document.rs`, `ChangeStatement`), so raw ed25519
/// can be timed over the same messages.
pub(crate) fn signed_message(network: NetworkId, doc: DocId, hash: [u8; 32]) -> Vec<u8> {
    #[derive(Serialize)]
    struct ChangeStatement {
        network: NetworkId,
        doc: DocId,
        hash: [u8; 32],
    }
    keys::signing_bytes(Domain::Change, &ChangeStatement { network, doc, hash })
}
