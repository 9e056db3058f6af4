//! Trust: who may act, judged over the whole set of certificates and revocations a node knows.
//!
//! Every verdict here is a pure function of (genesis, certificates, revocations, the question),
//! never of the order records arrived in. That is what lets two nodes that heard things in
//! different orders agree, and what the property tests check.
//!
//! Rules:
//! - A genesis root key is an admin of the top unit, with no certificate.
//! - A certificate is *chain-valid* if its issuer is a root key, or holds a chain-valid admin
//!   certificate for the certificate's unit or a unit above it that was in force when the
//!   certificate was issued — and the issuer is not revoked, unless the revocation keeps this
//!   certificate.
//! - A revocation takes effect if its issuer is a root key or holds an admin certificate,
//!   chain-valid without regard to revocations, over a unit at or above one the revoked key is
//!   certified for. (Judging revocations without revocations is what breaks the cycle; a
//!   compromised admin's revocations stand until a higher admin re-certifies the keys it revoked.)
//! - A revoked key's signatures count only for the changes its revocations keep.
//! - Expiry is judged at the time a statement says it was made (the change timestamp, which its
//!   hash and so its signature cover); ingest separately refuses times too far in the future.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::cert::{Certificate, RecordError, RecordId, Revocation, Role};
use crate::genesis::{Genesis, GenesisError, NetworkId};
use crate::keys::PublicKey;
use crate::unit::{Unit, UnitId, UnitKind};

/// Longest certificate chain followed from a key to a root key.
pub const CHAIN_DEPTH_MAX: usize = 8;

/// The certificates and revocations a node knows, with verdicts kept current on every insert.
#[derive(Debug, Clone)]
pub struct Trust {
    genesis: Genesis,
    network: NetworkId,
    certs: BTreeMap<RecordId, Certificate>,
    by_subject: HashMap<PublicKey, Vec<RecordId>>,
    revocations: BTreeMap<RecordId, Revocation>,
    /// Certificates whose chain reaches a root key, revocations considered.
    valid: HashSet<RecordId>,
    /// Keys revoked by an effective revocation, with what their revocations keep.
    revoked: HashMap<PublicKey, Kept>,
}

#[derive(Debug, Clone, Default)]
struct Kept {
    changes: HashSet<[u8; 32]>,
    certificates: HashSet<RecordId>,
}

/// What a key may do for one kind of action, before time and statement are known: see
/// [`Trust::permission`].
#[derive(Debug)]
pub struct Permission<'a> {
    key: PublicKey,
    trust: &'a Trust,
    revoked: Option<&'a Kept>,
    /// The certificates that permit the action (`None`: a genesis root key), or why none does.
    allowed: Result<Vec<Option<(RecordId, &'a Certificate)>>, Denied>,
}

impl Permission<'_> {
    /// The verdict for a statement at `at_ms` with hash `statement`: checked in the same order,
    /// with the same reasons, as [`Trust::authorize`].
    pub fn at(&self, at_ms: i64, statement: Option<&[u8; 32]>) -> Result<Grant, Denied> {
        if let Some(kept) = self.revoked
            && !statement.is_some_and(|h| kept.changes.contains(h))
        {
            return Err(Denied::Revoked(self.key));
        }
        let allowed = self.allowed.as_ref().map_err(Clone::clone)?;
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
                Some((id, c)) if c.valid_at(at_ms) => {
                    return Ok(Grant {
                        key: self.key,
                        certificate: Some(*id),
                        unit: c.body.unit.id.clone(),
                        unit_kind: c.body.unit.kind,
                        role: c.body.role,
                        holder: c.body.holder.clone(),
                    });
                }
                Some(_) => {}
            }
        }
        Err(Denied::Expired {
            key: self.key,
            at_ms,
        })
    }
}

/// The authority a key acted with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub key: PublicKey,
    /// The certificate, or `None` for a genesis root key.
    pub certificate: Option<RecordId>,
    pub unit: UnitId,
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
    #[error("no certificate of key {0} has a chain to the network's root keys")]
    Untrusted(PublicKey),
    #[error("key {key} ({roles}) may not do this")]
    NotPermitted { key: PublicKey, roles: String },
    #[error("the certificates of key {key} that would permit this were not in force at {at_ms}")]
    Expired { key: PublicKey, at_ms: i64 },
    #[error("key {0} is revoked and this statement is not among those its revocation keeps")]
    Revoked(PublicKey),
}

impl Trust {
    pub fn new(genesis: Genesis) -> Result<Trust, GenesisError> {
        genesis.validate()?;
        let network = genesis.network_id();
        Ok(Trust {
            genesis,
            network,
            certs: BTreeMap::new(),
            by_subject: HashMap::new(),
            revocations: BTreeMap::new(),
            valid: HashSet::new(),
            revoked: HashMap::new(),
        })
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
        let mut fresh = Vec::new();
        for cert in certs {
            let id = cert.id();
            if self.certs.contains_key(&id) || fresh.iter().any(|(i, _)| *i == id) {
                continue;
            }
            cert.check(&self.network)?;
            fresh.push((id, cert));
        }
        let ids: Vec<RecordId> = fresh.iter().map(|(id, _)| *id).collect();
        for (id, cert) in fresh {
            self.by_subject
                .entry(cert.body.subject)
                .or_default()
                .push(id);
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
        let mut fresh = Vec::new();
        for rev in revs {
            let id = rev.id();
            if self.revocations.contains_key(&id) || fresh.iter().any(|(i, _)| *i == id) {
                continue;
            }
            rev.check(&self.network)?;
            fresh.push((id, rev));
        }
        let ids: Vec<RecordId> = fresh.iter().map(|(id, _)| *id).collect();
        for (id, rev) in fresh {
            self.revocations.insert(id, rev);
        }
        if !ids.is_empty() {
            self.recompute();
        }
        Ok(ids)
    }

    pub fn certificate(&self, id: &RecordId) -> Option<&Certificate> {
        self.certs.get(id)
    }

    pub fn certificates(&self) -> impl Iterator<Item = (&RecordId, &Certificate)> {
        self.certs.iter()
    }

    pub fn revocations(&self) -> impl Iterator<Item = (&RecordId, &Revocation)> {
        self.revocations.iter()
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

    pub fn is_chain_valid(&self, id: &RecordId) -> bool {
        self.valid.contains(id)
    }

    pub fn is_revoked(&self, key: &PublicKey) -> bool {
        self.revoked.contains_key(key)
    }

    /// The certificates that prove `key`'s authority, up to the root: what a peer needs to
    /// judge this key's signatures.
    pub fn chain_of(&self, key: &PublicKey) -> Vec<Certificate> {
        let mut out: Vec<Certificate> = Vec::new();
        let mut seen = HashSet::new();
        let mut todo = vec![*key];
        while let Some(k) = todo.pop() {
            for (id, cert) in self.certificates_of(&k) {
                if seen.insert(id) {
                    if !self.genesis.is_root(&cert.body.issuer) {
                        todo.push(cert.body.issuer);
                    }
                    out.push(cert.clone());
                }
            }
            if seen.len() > 10_000 {
                break;
            }
        }
        out
    }

    /// May `key` act, at `at_ms`, for a statement with hash `statement` (a change hash, or none),
    /// given what the action needs (`permits(unit, role)`)? Root keys are asked as admins of the
    /// top unit.
    pub fn authorize(
        &self,
        key: &PublicKey,
        at_ms: i64,
        statement: Option<&[u8; 32]>,
        permits: impl Fn(&Unit, Role) -> bool,
    ) -> Result<Grant, Denied> {
        self.permission(key, permits).at(at_ms, statement)
    }

    /// What `key` may do for an action, judged once: the part of [`Trust::authorize`] that does
    /// not depend on the statement's time or hash. An ingest asks this once per author and then
    /// [`Permission::at`] once per change.
    pub fn permission(
        &self,
        key: &PublicKey,
        permits: impl Fn(&Unit, Role) -> bool,
    ) -> Permission<'_> {
        let revoked = self.revoked.get(key);
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
                    .filter(|(id, _)| self.valid.contains(id))
                    .collect();
                if chained.is_empty() {
                    Err(Denied::Untrusted(*key))
                } else {
                    let permitted: Vec<Option<(RecordId, &Certificate)>> = chained
                        .iter()
                        .filter(|(_, c)| permits(&c.body.unit, c.body.role))
                        .map(|(id, c)| Some((*id, *c)))
                        .collect();
                    if permitted.is_empty() {
                        let roles = chained
                            .iter()
                            .map(|(_, c)| format!("{} of {}", c.body.role.as_str(), c.body.unit.id))
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
            revoked,
            allowed,
        }
    }

    /// Recompute revocation effects and chain validity from scratch. Linear in the number of
    /// certificates (each is judged once, memoised), so bulk inserts should come as one batch.
    fn recompute(&mut self) {
        // 1. Chain validity without regard to revocations, to judge revocations by.
        let plain = self.chain_valid_set(&HashMap::new());
        // 2. Effective revocations.
        let mut revoked: HashMap<PublicKey, Kept> = HashMap::new();
        for rev in self.revocations.values() {
            let b = &rev.body;
            if self.genesis.is_root(&b.key) {
                continue; // root keys are fixed by the genesis
            }
            let units: Vec<&UnitId> = self
                .certificates_of(&b.key)
                .iter()
                .map(|(_, c)| &c.body.unit.id)
                .collect::<Vec<_>>();
            let issuer_ok = self.genesis.is_root(&b.issuer)
                || self.certificates_of(&b.issuer).iter().any(|(id, c)| {
                    plain.contains(id)
                        && c.body.role == Role::Admin
                        && c.valid_at(b.at_ms)
                        && units.iter().any(|u| c.body.unit.id.is_at_or_above(u))
                });
            if issuer_ok {
                let kept = revoked.entry(b.key).or_default();
                kept.changes.extend(b.keep_changes.iter().copied());
                kept.certificates
                    .extend(b.keep_certificates.iter().copied());
            }
        }
        // 3. Chain validity with revocations.
        self.valid = self.chain_valid_set(&revoked);
        self.revoked = revoked;
    }

    fn chain_valid_set(&self, revoked: &HashMap<PublicKey, Kept>) -> HashSet<RecordId> {
        let mut memo: HashMap<RecordId, bool> = HashMap::new();
        for id in self.certs.keys() {
            self.judge(id, revoked, &mut memo, 0);
        }
        memo.into_iter()
            .filter(|(_, ok)| *ok)
            .map(|(id, _)| id)
            .collect()
    }

    fn judge(
        &self,
        id: &RecordId,
        revoked: &HashMap<PublicKey, Kept>,
        memo: &mut HashMap<RecordId, bool>,
        depth: usize,
    ) -> bool {
        if let Some(v) = memo.get(id) {
            return *v;
        }
        let Some(cert) = self.certs.get(id) else {
            return false;
        };
        if depth > CHAIN_DEPTH_MAX {
            return false;
        }
        // Provisionally false: a cycle of certificates certifying each other proves nothing.
        memo.insert(*id, false);
        let b = &cert.body;
        let issuer_revoked = revoked
            .get(&b.issuer)
            .is_some_and(|kept| !kept.certificates.contains(id));
        let ok = !issuer_revoked
            && (self.genesis.is_root(&b.issuer)
                || self.certificates_of(&b.issuer).iter().any(|(pid, p)| {
                    p.body.role == Role::Admin
                        && p.body.unit.id.is_at_or_above(&b.unit.id)
                        && p.valid_at(b.issued_at_ms)
                        && self.judge(pid, revoked, memo, depth + 1)
                }));
        memo.insert(*id, ok);
        ok
    }
}
