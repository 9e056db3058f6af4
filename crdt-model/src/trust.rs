//! Trust: who may act, judged over the whole set of registrations, certificates and revocations
//! a node knows.
//!
//! Every verdict here is a pure function of (genesis, the set of records, the question), never
//! of the order records arrived in. That is what lets two nodes that heard things in different
//! orders agree, and what the property tests check. The rule of thumb behind every row below:
//! no key can change anything about a unit it does not govern (DESIGN.md).
//!
//! | record | who may sign it | what it can affect | judged at |
//! |---|---|---|---|
//! | genesis | — | the top unit and its root keys, for ever | — |
//! | registration of unit U | a root key, or an admin of U's parent or a unit above it | that U exists, its kind (one level below its parent's: district → street → community → grid) and name | the registration's time |
//! | certificate for unit U | a root key, or an admin of U or a unit above it | that a key acts for U in a role | its issue time, and every time it is used (validity nests) |
//! | revocation over unit U | a root key, or an admin of U or a unit above it | the key's certificates for U and units below U issued by the revocation's time, from its cutoff on | the revocation's time |
//! | change, header, attestation | a key whose certificate permits it (see `doc::may_write`, `attest::Statement::permits`) | the document or statement | the time it states |
//!
//! - **The unit tree is data.** A unit exists because a valid registration says so; the top unit
//!   comes from the genesis. A certificate names a unit by id; the kind every decision uses
//!   (admission, filing, checkpoints) is the registered one. When several valid registrations of
//!   one unit disagree, the one by the highest authority wins (a root key, then an admin of
//!   the shallowest unit), then the newest, then the larger record id; `conflicts` reports it.
//!   So no lower admin can rename what its superior named, whatever time it signs.
//! - **Validity nests.** A certificate is in force at time t only if it was issued by t, has not
//!   expired, and the certificate of its issuer that supports it was in force at its issue time
//!   and is still a link at t. A root key's certificates depend on nothing.
//! - **Revocation reaches only what its issuer governs.** A revocation by an admin of U cuts the
//!   key's certificates for U and the units below it, from the cutoff on; its other certificates
//!   stand. Certificates issued after the revocation are untouched, so a higher admin restores a
//!   key by certifying it again. Certificates the key issued under a cut certificate end at the
//!   cutoff too, unless the revocation keeps them (`keep_issued`, for a job transfer).
//! - **Revocations are judged level by level of their issuers.** A revocation over U counts if
//!   its issuer held admin authority over U at its time. Issuers are taken in order of their
//!   authority (root keys, then admins of the district, of streets, …), each level judged with
//!   every revocation of the levels above applied. So a street admin's revocation of a
//!   community admin voids what that admin revoked after the cutoff, whichever unit either
//!   revocation names, while two admins of one level who revoke each other both lose (their
//!   common superior restores who should stay). This order is what breaks the cycle.
//! - Times are those the statements carry, covered by their signatures; ingest refuses times
//!   more than the allowed clock skew in the future (`cert::check_not_future`).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crate::cert::{
    Certificate, RecordError, RecordId, Registration, Revocation, Role, TrustRecord,
};
use crate::genesis::{Genesis, GenesisError, NetworkId};
use crate::keys::PublicKey;
use crate::unit::{UNIT_DEPTH_MAX, Unit, UnitId, UnitKind};

/// Longest run of certificates of one unit level followed from a key towards a root key.
pub const CHAIN_DEPTH_MAX: usize = 8;

/// When a chain-valid certificate is in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Window {
    /// Its issue time.
    start: i64,
    /// Its own signatures count before this (expiry, revocation, its chain).
    acts_end: i64,
    /// Certificates issued under it count before this.
    link_end: i64,
    /// The earliest cutoff of a revocation that reaches it.
    revoked_from: Option<i64>,
}

impl Window {
    fn acts_at(&self, at_ms: i64) -> bool {
        self.start <= at_ms && at_ms < self.acts_end
    }
}

/// What the records say, derived from scratch on every insert.
#[derive(Debug, Clone, Default)]
struct Derived {
    /// The registered unit tree, the top unit included.
    units: BTreeMap<UnitId, Unit>,
    /// The winning registration of every registered unit below the top.
    registered_by: HashMap<UnitId, RecordId>,
    /// Chain-valid certificates and when they are in force.
    windows: HashMap<RecordId, Window>,
    /// Revocations that take effect.
    effective: HashSet<RecordId>,
}

/// Who holds admin authority where and when, for judging revocations: per (key, unit) the
/// windows of its chain-valid admin certificates, sorted by start, with the running maximum of
/// their ends, so "in force at t" is one binary search.
struct AdminIndex<'a> {
    windows: HashMap<(PublicKey, &'a UnitId), Vec<(i64, i64)>>,
}

impl<'a> AdminIndex<'a> {
    fn new(trust: &'a Trust, windows: &HashMap<RecordId, Window>) -> AdminIndex<'a> {
        let mut by: HashMap<(PublicKey, &'a UnitId), Vec<(i64, i64)>> = HashMap::new();
        for (id, w) in windows {
            let c = &trust.certs[id].body;
            if c.role == Role::Admin {
                by.entry((c.subject, &c.unit))
                    .or_default()
                    .push((w.start, w.acts_end));
            }
        }
        for list in by.values_mut() {
            list.sort_unstable();
            for i in 1..list.len() {
                list[i].1 = list[i].1.max(list[i - 1].1);
            }
        }
        AdminIndex { windows: by }
    }

    /// The level of `key`'s admin authority over `unit` at `at_ms`: 0 for a root key, else the
    /// depth of the highest unit at or above `unit` it is an admin of then; `None` if none.
    fn level(
        &self,
        genesis: &Genesis,
        key: &PublicKey,
        unit: &UnitId,
        at_ms: i64,
    ) -> Option<usize> {
        if genesis.is_root(key) {
            return Some(0);
        }
        let mut best = None;
        let mut u = Some(unit.clone());
        while let Some(cur) = u {
            if let Some(list) = self.windows.get(&(*key, &cur)) {
                let n = list.partition_point(|(start, _)| *start <= at_ms);
                if n > 0 && list[n - 1].1 > at_ms {
                    best = Some(cur.depth());
                }
            }
            u = cur.parent();
        }
        best
    }
}

/// The records a node knows, with verdicts kept current on every insert.
#[derive(Debug, Clone)]
pub struct Trust {
    genesis: Genesis,
    network: NetworkId,
    certs: BTreeMap<RecordId, Certificate>,
    /// Each key's certificates in id order, so that which one grants an action does not
    /// depend on the order they arrived in.
    by_subject: HashMap<PublicKey, BTreeSet<RecordId>>,
    revocations: BTreeMap<RecordId, Revocation>,
    registrations: BTreeMap<RecordId, Registration>,
    derived: Derived,
}

/// What a key may do for one kind of action, before the time is known: see
/// [`Trust::permission`].
#[derive(Debug)]
pub struct Permission<'a> {
    key: PublicKey,
    trust: &'a Trust,
    /// The certificates that permit the action (`None`: a genesis root key), or why none does.
    allowed: Result<Vec<Option<(RecordId, &'a Certificate)>>, Denied>,
}

impl Permission<'_> {
    /// The verdict for a statement made at `at_ms`: checked in the same order, with the same
    /// reasons, as [`Trust::authorize`].
    pub fn at(&self, at_ms: i64) -> Result<Grant, Denied> {
        let allowed = self.allowed.as_ref().map_err(Clone::clone)?;
        let mut revoked = false;
        for entry in allowed {
            match entry {
                None => {
                    let top = &self.trust.genesis.top;
                    return Ok(Grant {
                        key: self.key,
                        certificate: None,
                        unit: top.id.clone(),
                        unit_kind: top.kind,
                        role: Role::Admin,
                        holder: "root".to_owned(),
                    });
                }
                Some((id, c)) => {
                    let Some(w) = self.trust.derived.windows.get(id) else {
                        continue;
                    };
                    if w.acts_at(at_ms) {
                        let kind = self.trust.derived.units[&c.body.unit].kind;
                        return Ok(Grant {
                            key: self.key,
                            certificate: Some(*id),
                            unit: c.body.unit.clone(),
                            unit_kind: kind,
                            role: c.body.role,
                            holder: c.body.holder.clone(),
                        });
                    }
                    if w.revoked_from.is_some_and(|cut| cut <= at_ms)
                        && w.start <= at_ms
                        && at_ms < c.body.expires_at_ms
                    {
                        revoked = true;
                    }
                }
            }
        }
        if revoked {
            Err(Denied::Revoked {
                key: self.key,
                at_ms,
            })
        } else {
            Err(Denied::Expired {
                key: self.key,
                at_ms,
            })
        }
    }
}

/// The authority a key acted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub key: PublicKey,
    /// The certificate, or `None` for a genesis root key.
    pub certificate: Option<RecordId>,
    pub unit: UnitId,
    /// The unit's kind in the registered tree.
    pub unit_kind: UnitKind,
    pub role: Role,
    pub holder: String,
}

/// Why a key may not do what it tried. Checked in this order, so the reason is the most
/// specific one that applies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("key {0} has no certificate in this network")]
    UnknownKey(PublicKey),
    #[error(
        "no certificate of key {0} has a chain to the network's root keys through registered units"
    )]
    Untrusted(PublicKey),
    #[error("key {key} ({roles}) may not do this")]
    NotPermitted { key: PublicKey, roles: String },
    #[error("the certificates of key {key} that would permit this were not in force at {at_ms}")]
    Expired { key: PublicKey, at_ms: i64 },
    #[error("key {key} was revoked before {at_ms}, when this was signed")]
    Revoked { key: PublicKey, at_ms: i64 },
}

/// Several valid registrations of one unit that disagree on its kind or name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conflict {
    pub unit: UnitId,
    /// The registration that wins.
    pub winner: RecordId,
    /// The valid ones that lose.
    pub losers: Vec<RecordId>,
}

impl Trust {
    pub fn new(genesis: Genesis) -> Result<Trust, GenesisError> {
        genesis.validate()?;
        let network = genesis.network_id();
        let mut trust = Trust {
            genesis,
            network,
            certs: BTreeMap::new(),
            by_subject: HashMap::new(),
            revocations: BTreeMap::new(),
            registrations: BTreeMap::new(),
            derived: Derived::default(),
        };
        trust.recompute();
        Ok(trust)
    }

    pub fn genesis(&self) -> &Genesis {
        &self.genesis
    }

    pub fn network(&self) -> NetworkId {
        self.network
    }

    /// Add certificates. Each is signature-checked; if any fails, none is added. Returns the
    /// ids that were new.
    pub fn insert_certificates(
        &mut self,
        certs: impl IntoIterator<Item = Certificate>,
    ) -> Result<Vec<RecordId>, RecordError> {
        let fresh = fresh(certs, &self.certs, Certificate::id, |c| {
            c.check(&self.network)
        })?;
        let ids: Vec<RecordId> = fresh.iter().map(|(id, _)| *id).collect();
        for (id, cert) in fresh {
            self.by_subject
                .entry(cert.body.subject)
                .or_default()
                .insert(id);
            self.certs.insert(id, cert);
        }
        if !ids.is_empty() {
            self.recompute();
        }
        Ok(ids)
    }

    /// Add revocations; same all-or-nothing rule as certificates.
    pub fn insert_revocations(
        &mut self,
        revs: impl IntoIterator<Item = Revocation>,
    ) -> Result<Vec<RecordId>, RecordError> {
        let fresh = fresh(revs, &self.revocations, Revocation::id, |r| {
            r.check(&self.network)
        })?;
        let ids: Vec<RecordId> = fresh.iter().map(|(id, _)| *id).collect();
        self.revocations.extend(fresh);
        if !ids.is_empty() {
            self.recompute();
        }
        Ok(ids)
    }

    /// Add registrations; same all-or-nothing rule as certificates.
    pub fn insert_registrations(
        &mut self,
        regs: impl IntoIterator<Item = Registration>,
    ) -> Result<Vec<RecordId>, RecordError> {
        let fresh = fresh(regs, &self.registrations, Registration::id, |r| {
            r.check(&self.network)
        })?;
        let ids: Vec<RecordId> = fresh.iter().map(|(id, _)| *id).collect();
        self.registrations.extend(fresh);
        if !ids.is_empty() {
            self.recompute();
        }
        Ok(ids)
    }

    pub fn certificate(&self, id: &RecordId) -> Option<&Certificate> {
        self.certs.get(id)
    }

    /// Is this record already among those trust holds?
    pub fn knows(&self, record: &TrustRecord) -> bool {
        let id = record.id();
        match record {
            TrustRecord::Certificate(_) => self.certs.contains_key(&id),
            TrustRecord::Revocation(_) => self.revocations.contains_key(&id),
            TrustRecord::Registration(_) => self.registrations.contains_key(&id),
        }
    }

    pub fn certificates(&self) -> impl Iterator<Item = (&RecordId, &Certificate)> {
        self.certs.iter()
    }

    pub fn revocations(&self) -> impl Iterator<Item = (&RecordId, &Revocation)> {
        self.revocations.iter()
    }

    pub fn registrations(&self) -> impl Iterator<Item = (&RecordId, &Registration)> {
        self.registrations.iter()
    }

    /// Every record held: registrations, certificates, revocations.
    pub fn records(&self) -> impl Iterator<Item = TrustRecord> + '_ {
        let regs = self
            .registrations
            .values()
            .cloned()
            .map(TrustRecord::Registration);
        let certs = self.certs.values().cloned().map(TrustRecord::Certificate);
        let revs = self
            .revocations
            .values()
            .cloned()
            .map(TrustRecord::Revocation);
        regs.chain(certs).chain(revs)
    }

    /// A registered unit (the top unit included), with its registered kind and name.
    pub fn unit(&self, id: &UnitId) -> Option<&Unit> {
        self.derived.units.get(id)
    }

    /// The registered unit tree, in id order (parents before children).
    pub fn units(&self) -> impl Iterator<Item = &Unit> {
        self.derived.units.values()
    }

    /// Is this revocation in effect?
    pub fn is_effective(&self, id: &RecordId) -> bool {
        self.derived.effective.contains(id)
    }

    pub fn certificates_of(&self, key: &PublicKey) -> Vec<(RecordId, &Certificate)> {
        self.by_subject
            .get(key)
            .map(|ids| {
                ids.iter()
                    .filter_map(|id| self.certs.get(id).map(|c| (*id, c)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Does this certificate reach the root keys through registered units? (It may still be
    /// out of force at a given time: see [`Trust::authorize`].)
    pub fn is_chain_valid(&self, id: &RecordId) -> bool {
        self.derived.windows.contains_key(id)
    }

    /// Is this certificate in force at `at_ms`?
    pub fn in_force(&self, id: &RecordId, at_ms: i64) -> bool {
        self.derived
            .windows
            .get(id)
            .is_some_and(|w| w.acts_at(at_ms))
    }

    /// Is this key revoked wherever it held authority: every chain-valid certificate of it cut by
    /// an effective revocation? (A revocation of one certificate, say one a lower admin gave a
    /// superior, does not make the key read as revoked: see [`Trust::revoked_from`].)
    pub fn is_revoked(&self, key: &PublicKey) -> bool {
        let valid: Vec<&Window> = self
            .certificates_of(key)
            .iter()
            .filter_map(|(id, _)| self.derived.windows.get(id))
            .collect();
        !valid.is_empty() && valid.iter().all(|w| w.revoked_from.is_some())
    }

    /// From when an effective revocation cuts this certificate, if one does.
    pub fn revoked_from(&self, cert: &RecordId) -> Option<i64> {
        self.derived.windows.get(cert).and_then(|w| w.revoked_from)
    }

    /// The certificates that prove `key`'s authority, up to the root: what a peer needs to
    /// judge this key's signatures (with [`Trust::registrations_for`]).
    pub fn chain_of(&self, key: &PublicKey) -> Vec<Certificate> {
        self.chain_of_where(key, |_| true)
    }

    /// [`Trust::chain_of`] for the key's certificates that `wanted` picks (a node's hello
    /// proves only its node certificate for its own unit, whatever else it has been given).
    pub fn chain_of_where(
        &self,
        key: &PublicKey,
        wanted: impl Fn(&Certificate) -> bool,
    ) -> Vec<Certificate> {
        // Only what proves something: the key's chain-valid certificates, and for each the
        // issuer's admin certificates that supported it (at or above its unit, in force when
        // it was issued), and so on up. Certificates anyone else signed naming a key are not
        // its chain, so no one can make a key's chain — or the hello that carries it — grow.
        let mut out: Vec<Certificate> = Vec::new();
        let mut seen = HashSet::new();
        let mut todo: Vec<(PublicKey, Option<(&UnitId, i64)>)> = vec![(*key, None)];
        while let Some((k, supports)) = todo.pop() {
            for (id, cert) in self.certificates_of(&k) {
                let Some(w) = self.derived.windows.get(&id) else {
                    continue;
                };
                match supports {
                    None if !wanted(cert) => continue,
                    None => {}
                    Some((unit, at)) => {
                        let b = &cert.body;
                        if b.role != Role::Admin || !b.unit.is_at_or_above(unit) || !w.acts_at(at) {
                            continue;
                        }
                    }
                }
                if seen.insert(id) {
                    if !self.genesis.is_root(&cert.body.issuer) {
                        todo.push((
                            cert.body.issuer,
                            Some((&cert.body.unit, cert.body.issued_at_ms)),
                        ));
                    }
                    out.push(cert.clone());
                }
            }
        }
        out
    }

    /// The winning registrations of the units these certificates name and of every unit above
    /// them: what a peer needs, beside the certificates, to place them in the tree.
    pub fn registrations_for(&self, certs: &[Certificate]) -> Vec<Registration> {
        let mut units: Vec<UnitId> = certs
            .iter()
            .flat_map(|c| c.body.unit.chain())
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        units.sort();
        units
            .iter()
            .filter_map(|u| self.derived.registered_by.get(u))
            .filter_map(|id| self.registrations.get(id).cloned())
            .collect()
    }

    /// Units whose valid registrations disagree, with the one that wins.
    pub fn conflicts(&self) -> Vec<Conflict> {
        let mut by_unit: HashMap<&UnitId, Vec<(&RecordId, &Registration)>> = HashMap::new();
        for (id, r) in &self.registrations {
            by_unit.entry(&r.body.unit.id).or_default().push((id, r));
        }
        let mut out = Vec::new();
        for (unit, winner) in &self.derived.registered_by {
            let won = &self.registrations[winner].body.unit;
            let losers: Vec<RecordId> = by_unit
                .get(unit)
                .into_iter()
                .flatten()
                .filter(|(id, r)| {
                    *id != winner
                        && (r.body.unit.kind != won.kind || r.body.unit.name != won.name)
                        && self.registration_valid(r, &self.derived.units, &self.derived.windows)
                })
                .map(|(id, _)| **id)
                .collect();
            if !losers.is_empty() {
                out.push(Conflict {
                    unit: unit.clone(),
                    winner: *winner,
                    losers,
                });
            }
        }
        out.sort_by(|a, b| a.unit.cmp(&b.unit));
        out
    }

    /// May `key` act at `at_ms`, given what the action needs (`permits(unit, role)`, asked with
    /// the registered unit)? Root keys are asked as admins of the top unit.
    pub fn authorize(
        &self,
        key: &PublicKey,
        at_ms: i64,
        permits: impl Fn(&Unit, Role) -> bool,
    ) -> Result<Grant, Denied> {
        self.permission(key, permits).at(at_ms)
    }

    /// What `key` may do for an action, judged once: the part of [`Trust::authorize`] that does
    /// not depend on the statement's time. An ingest asks this once per author and then
    /// [`Permission::at`] once per change.
    pub fn permission(
        &self,
        key: &PublicKey,
        permits: impl Fn(&Unit, Role) -> bool,
    ) -> Permission<'_> {
        let allowed = if self.genesis.is_root(key) && permits(&self.genesis.top, Role::Admin) {
            Ok(vec![None])
        } else {
            let certs = self.certificates_of(key);
            if certs.is_empty() {
                if self.genesis.is_root(key) {
                    Err(Denied::NotPermitted {
                        key: *key,
                        roles: "root".to_owned(),
                    })
                } else {
                    Err(Denied::UnknownKey(*key))
                }
            } else {
                let chained: Vec<_> = certs
                    .iter()
                    .filter(|(id, _)| self.derived.windows.contains_key(id))
                    .collect();
                if chained.is_empty() {
                    Err(Denied::Untrusted(*key))
                } else {
                    let permitted: Vec<Option<(RecordId, &Certificate)>> = chained
                        .iter()
                        .filter(|(_, c)| permits(&self.derived.units[&c.body.unit], c.body.role))
                        .map(|(id, c)| Some((*id, *c)))
                        .collect();
                    if permitted.is_empty() {
                        let roles = chained
                            .iter()
                            .map(|(_, c)| format!("{} of {}", c.body.role.as_str(), c.body.unit))
                            .collect::<Vec<_>>()
                            .join(", ");
                        Err(Denied::NotPermitted { key: *key, roles })
                    } else {
                        Ok(permitted)
                    }
                }
            }
        };
        Permission {
            key: *key,
            trust: self,
            allowed,
        }
    }

    /// Derive the tree, the effective revocations and every certificate's window from scratch,
    /// level by level (see the module doc). Each level costs one pass over the certificates, so
    /// bulk inserts should come as one batch.
    fn recompute(&mut self) {
        let mut effective: Vec<RecordId> = Vec::new();
        // Revocations yet to judge; those of a root key never count (the genesis fixes them).
        let mut pending: Vec<RecordId> = self
            .revocations
            .iter()
            .filter(|(_, r)| !self.genesis.is_root(&r.body.key))
            .map(|(id, _)| *id)
            .collect();
        // Level by level of the issuer's authority (0: a root key; d: an admin certificate for
        // a unit d deep), each judged with every revocation of the levels above applied. A
        // revocation only ever takes authority away, so an issuer's level can only sink as
        // levels are applied, and one without authority never regains it.
        for level in 0..=UNIT_DEPTH_MAX {
            if pending.is_empty() {
                break;
            }
            let (units, windows) = self.derive(&effective);
            let admins = AdminIndex::new(self, &windows);
            let mut later = Vec::new();
            for id in pending {
                let b = &self.revocations[&id].body;
                if !units.contains_key(&b.unit) {
                    continue;
                }
                match admins.level(&self.genesis, &b.issuer, &b.unit, b.at_ms) {
                    Some(l) if l <= level => effective.push(id),
                    Some(_) => later.push(id),
                    None => {}
                }
            }
            pending = later;
        }
        let (units, windows) = self.derive(&effective);
        let registered_by = self.winners(&units, &windows);
        self.derived = Derived {
            units,
            registered_by,
            windows,
            effective: effective.into_iter().collect(),
        };
    }

    /// The level of `key`'s admin authority over `unit` (at it or above it) at `at_ms`: 0 for
    /// a root key, else the depth of the highest such unit; `None` if it holds none.
    fn admin_level(
        &self,
        key: &PublicKey,
        unit: &UnitId,
        at_ms: i64,
        windows: &HashMap<RecordId, Window>,
    ) -> Option<usize> {
        if self.genesis.is_root(key) {
            return Some(0);
        }
        self.certificates_of(key)
            .iter()
            .filter(|(id, c)| {
                c.body.role == Role::Admin
                    && c.body.unit.is_at_or_above(unit)
                    && windows.get(id).is_some_and(|w| w.acts_at(at_ms))
            })
            .map(|(_, c)| c.body.unit.depth())
            .min()
    }

    fn registration_valid(
        &self,
        reg: &Registration,
        units: &BTreeMap<UnitId, Unit>,
        windows: &HashMap<RecordId, Window>,
    ) -> bool {
        let b = &reg.body;
        let Some(parent) = b.unit.id.parent() else {
            return false;
        };
        let Some(parent_unit) = units.get(&parent) else {
            return false;
        };
        b.unit.kind.parent_kind() == Some(parent_unit.kind)
            && self
                .admin_level(&b.issuer, &parent, b.at_ms, windows)
                .is_some()
    }

    /// How a valid registration ranks against the others of its unit: the higher its issuer's
    /// authority the better (so no lower admin can outrank its superior's naming, whatever
    /// time it signs), then the newer, then the larger id. `None` if it is not valid.
    fn registration_rank(
        &self,
        reg: &Registration,
        units: &BTreeMap<UnitId, Unit>,
        windows: &HashMap<RecordId, Window>,
    ) -> Option<(std::cmp::Reverse<usize>, i64, RecordId)> {
        if !self.registration_valid(reg, units, windows) {
            return None;
        }
        let parent = reg.body.unit.id.parent()?;
        let level = self.admin_level(&reg.body.issuer, &parent, reg.body.at_ms, windows)?;
        Some((std::cmp::Reverse(level), reg.body.at_ms, reg.id()))
    }

    /// The winning valid registration of each unit below the top: the newest, then the larger
    /// record id.
    fn winners(
        &self,
        units: &BTreeMap<UnitId, Unit>,
        windows: &HashMap<RecordId, Window>,
    ) -> HashMap<UnitId, RecordId> {
        let mut best: HashMap<UnitId, (std::cmp::Reverse<usize>, i64, RecordId)> = HashMap::new();
        for reg in self.registrations.values() {
            let Some(rank) = self.registration_rank(reg, units, windows) else {
                continue;
            };
            best.entry(reg.body.unit.id.clone())
                .and_modify(|b| *b = (*b).max(rank))
                .or_insert(rank);
        }
        best.into_iter().map(|(u, (_, _, id))| (u, id)).collect()
    }

    /// Each certificate `effective` revocations cut: (the earliest cutoff of any that reaches
    /// it, the earliest of those that do not keep what it issued). A revocation reaches the
    /// revoked key's certificates for its unit and the units below, issued by its time. Per key
    /// and unit the revocations are sorted by time with suffix minima, so the cost grows with
    /// (revocations + certificates) × log, not with their product.
    fn cuts(&self, effective: &[RecordId]) -> HashMap<RecordId, (i64, i64)> {
        // key → unit → [(at, cutoff, cutoff if it does not keep what was issued)], by `at`.
        type Cut = (i64, i64, i64);
        let mut by_key: HashMap<PublicKey, HashMap<&UnitId, Vec<Cut>>> = HashMap::new();
        for rid in effective {
            let r = &self.revocations[rid].body;
            let ends = if r.keep_issued { i64::MAX } else { r.cutoff_ms };
            by_key
                .entry(r.key)
                .or_default()
                .entry(&r.unit)
                .or_default()
                .push((r.at_ms, r.cutoff_ms, ends));
        }
        for units in by_key.values_mut() {
            for list in units.values_mut() {
                list.sort_unstable();
                // Suffix minima: from each position on, the earliest cutoffs.
                for i in (0..list.len().saturating_sub(1)).rev() {
                    list[i].1 = list[i].1.min(list[i + 1].1);
                    list[i].2 = list[i].2.min(list[i + 1].2);
                }
            }
        }
        let mut cuts: HashMap<RecordId, (i64, i64)> = HashMap::new();
        for (key, units) in &by_key {
            for (cid, c) in self.certificates_of(key) {
                let mut unit = Some(c.body.unit.clone());
                while let Some(u) = unit {
                    if let Some(list) = units.get(&u) {
                        let first = list.partition_point(|(at, _, _)| *at < c.body.issued_at_ms);
                        if let Some((_, cutoff, ends)) = list.get(first) {
                            let e = cuts.entry(cid).or_insert((i64::MAX, i64::MAX));
                            e.0 = e.0.min(*cutoff);
                            e.1 = e.1.min(*ends);
                        }
                    }
                    unit = u.parent();
                }
            }
        }
        cuts
    }

    /// The registered tree and the certificates' windows, with `effective` revocations applied.
    fn derive(
        &self,
        effective: &[RecordId],
    ) -> (BTreeMap<UnitId, Unit>, HashMap<RecordId, Window>) {
        let cuts = self.cuts(effective);
        let mut units: BTreeMap<UnitId, Unit> = BTreeMap::new();
        units.insert(self.genesis.top.id.clone(), self.genesis.top.clone());
        let mut windows: HashMap<RecordId, Window> = HashMap::new();
        let mut by_depth: BTreeMap<usize, Vec<RecordId>> = BTreeMap::new();
        for (id, c) in &self.certs {
            by_depth.entry(c.body.unit.depth()).or_default().push(*id);
        }
        for depth in 1..=UNIT_DEPTH_MAX {
            // Certificates for units of this level: their issuers are of this level or above.
            let mut memo: HashMap<RecordId, Option<Window>> = HashMap::new();
            for id in by_depth.get(&depth).into_iter().flatten() {
                self.judge(id, &units, &windows, &cuts, &mut memo, 0);
            }
            windows.extend(memo.into_iter().filter_map(|(id, w)| w.map(|w| (id, w))));
            // Then the units one level down, registered by admins of this level or above.
            let next: Vec<&Registration> = self
                .registrations
                .values()
                .filter(|r| r.body.unit.id.depth() == depth + 1)
                .collect();
            type Rank = (std::cmp::Reverse<usize>, i64, RecordId);
            let mut best: BTreeMap<UnitId, (Rank, &Registration)> = BTreeMap::new();
            for reg in next {
                let Some(rank) = self.registration_rank(reg, &units, &windows) else {
                    continue;
                };
                match best.get(&reg.body.unit.id) {
                    Some((r, _)) if *r >= rank => {}
                    _ => {
                        best.insert(reg.body.unit.id.clone(), (rank, reg));
                    }
                }
            }
            for (id, (_, reg)) in best {
                units.insert(id, reg.body.unit.clone());
            }
        }
        (units, windows)
    }

    /// The window of one certificate, judged with the levels above already in `windows` and
    /// this level memoised in `memo`.
    fn judge(
        &self,
        id: &RecordId,
        units: &BTreeMap<UnitId, Unit>,
        windows: &HashMap<RecordId, Window>,
        cuts: &HashMap<RecordId, (i64, i64)>,
        memo: &mut HashMap<RecordId, Option<Window>>,
        depth: usize,
    ) -> Option<Window> {
        if let Some(v) = memo.get(id) {
            return *v;
        }
        let cert = self.certs.get(id)?;
        let b = &cert.body;
        if depth > CHAIN_DEPTH_MAX || !units.contains_key(&b.unit) {
            memo.insert(*id, None);
            return None;
        }
        // Provisionally none: a cycle of certificates certifying each other proves nothing.
        memo.insert(*id, None);
        let level = b.unit.depth();
        let parent_end = if self.genesis.is_root(&b.issuer) {
            Some(i64::MAX)
        } else {
            let mut end: Option<i64> = None;
            for (pid, p) in self.certificates_of(&b.issuer) {
                if p.body.role != Role::Admin || !p.body.unit.is_at_or_above(&b.unit) {
                    continue;
                }
                let w = if p.body.unit.depth() < level {
                    windows.get(&pid).copied()
                } else {
                    self.judge(&pid, units, windows, cuts, memo, depth + 1)
                };
                if let Some(w) = w
                    && w.acts_at(b.issued_at_ms)
                {
                    end = Some(end.map_or(w.link_end, |e| e.max(w.link_end)));
                }
            }
            end
        };
        let window = parent_end.map(|parent_end| {
            let (own_cut, link_cut) = cuts.get(id).copied().unwrap_or((i64::MAX, i64::MAX));
            Window {
                start: b.issued_at_ms,
                acts_end: b.expires_at_ms.min(own_cut).min(parent_end),
                link_end: b.expires_at_ms.min(link_cut).min(parent_end),
                revoked_from: (own_cut != i64::MAX).then_some(own_cut),
            }
        });
        memo.insert(*id, window);
        window
    }
}

/// The records of `new` not yet in `known`, each checked; all or nothing.
fn fresh<T>(
    new: impl IntoIterator<Item = T>,
    known: &BTreeMap<RecordId, T>,
    id: impl Fn(&T) -> RecordId,
    check: impl Fn(&T) -> Result<(), RecordError>,
) -> Result<Vec<(RecordId, T)>, RecordError> {
    let mut out: Vec<(RecordId, T)> = Vec::new();
    for rec in new {
        let rid = id(&rec);
        if known.contains_key(&rid) || out.iter().any(|(i, _)| *i == rid) {
            continue;
        }
        check(&rec)?;
        out.push((rid, rec));
    }
    Ok(out)
}
