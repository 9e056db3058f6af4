//! Trust records: certificates, registrations and revocations made here (each tried on a copy of
//! trust before anything is stored), learned from the directory and the ledgers, and carried by
//! peers, of which only what proves the keys whose work was taken is kept.

use std::collections::HashSet;

use linli_crdt_model::cert::{
    CertBody, Certificate, RecordError, RecordId, Registration, RegistrationBody, Revocation,
    RevocationBody, Role, TrustRecord,
};
use linli_crdt_model::doc::{self, DocId};
use linli_crdt_model::document::EditRefused;
use linli_crdt_model::keys::PublicKey;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::trust::Trust;
use linli_crdt_model::unit::{Unit, UnitId};

use crate::clock::now_ms;
use crate::store;

use super::{Engine, Error, SyncRefused};

impl Engine {
    /// Issue a certificate as `issuer` (a person handle or the node) and record it: in the store,
    /// in trust, in this node's ledger (so it reaches every node) and in the directory if this
    /// node writes it.
    #[allow(
        clippy::too_many_arguments,
        reason = "each argument is one field of the certificate"
    )]
    pub fn issue_certificate(
        &mut self,
        subject: PublicKey,
        unit: UnitId,
        role: Role,
        holder: String,
        valid_ms: i64,
        person: Option<&str>,
    ) -> Result<Certificate, Error> {
        if self.trust.unit(&unit).is_none() {
            return Err(Error::Unregistered(unit));
        }
        let now = now_ms();
        let issuer = self.keys.signer(person)?.clone();
        let cert = Certificate::issue(
            CertBody {
                network: self.trust.network(),
                subject,
                unit,
                role,
                holder,
                issuer: issuer.public(),
                issued_at_ms: now,
                expires_at_ms: now.saturating_add(valid_ms),
            },
            &issuer,
        );
        // Refuse before storing anything: a certificate without a chain to the root would be
        // kept and spread, and prove nothing.
        let mut probe = self.trust.clone();
        probe.insert_certificates([cert.clone()])?;
        if !probe.is_chain_valid(&cert.id()) {
            return Err(Error::Refused(EditRefused::Denied(
                linli_crdt_model::trust::Denied::NotPermitted {
                    key: issuer.public(),
                    roles: format!(
                        "not an administrator of {} or a unit above it",
                        cert.body.unit
                    ),
                },
            )));
        }
        self.record_trust(TrustRecord::Certificate(cert.clone()))?;
        Ok(cert)
    }

    /// Register a unit below the top, signed by `person` (or the node): an admin of its parent
    /// or a unit above it. Refused before anything is stored if it would not hold.
    pub fn register_unit(
        &mut self,
        unit: Unit,
        person: Option<&str>,
    ) -> Result<Registration, Error> {
        let signer = self.keys.signer(person)?.clone();
        let at_ms = now_ms();
        let reg = Registration::issue(
            RegistrationBody {
                network: self.trust.network(),
                unit: unit.clone(),
                issuer: signer.public(),
                at_ms,
            },
            &signer,
        );
        reg.check(&self.trust.network())?;
        let mut probe = self.trust.clone();
        probe.insert_registrations([reg.clone()])?;
        if probe.unit(&unit.id) != Some(&unit) {
            let parent = unit.id.parent().expect("checked: not the top unit");
            let why = match self.trust.unit(&parent) {
                None => format!("its parent {parent} is not registered; register the parent first"),
                Some(p) if unit.kind.parent_kind() != Some(p.kind) => format!(
                    "a {} belongs under a {}, but {parent} is a {}",
                    unit.kind.as_str(),
                    unit.kind
                        .parent_kind()
                        .map_or("nothing (it is the top)", |k| k.as_str()),
                    p.kind.as_str()
                ),
                Some(_)
                    if self
                        .trust
                        .authorize(&signer.public(), at_ms, |u, role| {
                            role == Role::Admin && u.id.is_at_or_above(&parent)
                        })
                        .is_err() =>
                {
                    format!(
                        "key {} is not an administrator of {parent} or a unit above it",
                        signer.public()
                    )
                }
                Some(_) => {
                    "a registration of it by a higher administrator, or a newer one, is in force"
                        .to_owned()
                }
            };
            return Err(Error::Invalid(format!(
                "cannot register {} ({} {}): {why}",
                unit.id,
                unit.kind.as_str(),
                unit.name
            )));
        }
        self.record_trust(TrustRecord::Registration(reg.clone()))?;
        Ok(reg)
    }

    /// The public key a person (or the node, for `None`) signs with.
    pub fn signer_key(&self, person: Option<&str>) -> Result<PublicKey, Error> {
        Ok(self.keys.signer(person)?.public())
    }

    /// Add certificates to trust and store, and to the directory if this node holds it.
    pub fn import_certificates(&mut self, certs: Vec<Certificate>) -> Result<Vec<RecordId>, Error> {
        self.import_trust(certs.into_iter().map(TrustRecord::Certificate).collect())
    }

    /// Add registrations to trust and store, and to the directory if this node holds it.
    pub fn import_registrations(
        &mut self,
        regs: Vec<Registration>,
    ) -> Result<Vec<RecordId>, Error> {
        self.import_trust(regs.into_iter().map(TrustRecord::Registration).collect())
    }

    /// Records an administrator brings (`linli cert import`): one dated ahead of the clock is
    /// refused with the reason, not set aside as a peer's would be. Returns the new ones' ids.
    fn import_trust(&mut self, records: Vec<TrustRecord>) -> Result<Vec<RecordId>, Error> {
        let now = now_ms();
        for r in &records {
            linli_crdt_model::cert::check_not_future(
                r.what(),
                r.at_ms(),
                now,
                self.limits.clock_skew_ms_max,
            )?;
        }
        let new = self.insert_trust(&records)?;
        self.store_trust(&new)?;
        self.publish_to_directory()?;
        Ok(new.iter().map(TrustRecord::id).collect())
    }

    /// Revoke `key` over `unit` (default: the unit of the issuer's admin certificate, the top
    /// for a root key) from `cutoff_ms` (default: now). `keep_issued` keeps the certificates
    /// the key issued (a job transfer); without it they end at the cutoff too (a lost key).
    /// Refused if it would not take effect.
    #[allow(
        clippy::too_many_arguments,
        reason = "each argument is one field of the revocation"
    )]
    pub fn revoke(
        &mut self,
        key: PublicKey,
        unit: Option<UnitId>,
        cutoff_ms: Option<i64>,
        keep_issued: bool,
        reason: String,
        person: Option<&str>,
    ) -> Result<Revocation, Error> {
        let now = now_ms();
        let issuer = self.keys.signer(person)?.clone();
        let unit = match unit {
            Some(u) => u,
            None => self
                .admin_unit_of(&issuer.public(), &key, now)
                .ok_or_else(|| {
                    Error::Invalid(format!(
                        "key {} holds no administrator certificate in force; name the unit to \
                     revoke over with --unit",
                        issuer.public()
                    ))
                })?,
        };
        if self.trust.unit(&unit).is_none() {
            return Err(Error::Unregistered(unit));
        }
        let cutoff_ms = cutoff_ms.unwrap_or(now);
        if cutoff_ms > now {
            return Err(Error::Invalid(format!(
                "the cutoff ({cutoff_ms}) lies in the future; a revocation takes effect from a \
                 time up to now"
            )));
        }
        if self.genesis().is_root(&key) {
            return Err(Error::Invalid(format!(
                "key {key} is a root key of the genesis and cannot be revoked"
            )));
        }
        let reaches = self
            .trust
            .certificates_of(&key)
            .iter()
            .any(|(_, c)| unit.is_at_or_above(&c.body.unit) && c.body.issued_at_ms <= now);
        if !reaches {
            return Err(Error::Invalid(format!(
                "key {key} has no certificate for {unit} or a unit below it; nothing to revoke"
            )));
        }
        let rev = Revocation::issue(
            RevocationBody {
                network: self.trust.network(),
                key,
                issuer: issuer.public(),
                unit: unit.clone(),
                at_ms: now,
                cutoff_ms,
                reason,
                keep_issued,
            },
            &issuer,
        );
        let mut probe = self.trust.clone();
        probe.insert_revocations([rev.clone()])?;
        if !probe.is_effective(&rev.id()) {
            return Err(Error::Invalid(format!(
                "the revocation would not take effect: key {} is not an administrator of {unit} \
                 or a unit above it now",
                issuer.public()
            )));
        }
        self.record_trust(TrustRecord::Revocation(rev.clone()))?;
        Ok(rev)
    }

    /// The unit an admin revokes over by default: that of its administrator certificate in
    /// force now, preferring one over a certificate of `key`, then the highest.
    fn admin_unit_of(&self, admin: &PublicKey, key: &PublicKey, now: i64) -> Option<UnitId> {
        if self.genesis().is_root(admin) {
            return Some(self.genesis().top.id.clone());
        }
        let theirs: Vec<UnitId> = self
            .trust
            .certificates_of(key)
            .into_iter()
            .map(|(_, c)| c.body.unit.clone())
            .collect();
        self.trust
            .certificates_of(admin)
            .into_iter()
            .filter(|(id, c)| c.body.role == Role::Admin && self.trust.in_force(id, now))
            .map(|(_, c)| c.body.unit.clone())
            .min_by_key(|u| {
                let covers = theirs.iter().any(|t| u.is_at_or_above(t));
                (!covers, u.depth(), u.clone())
            })
    }

    /// Record a trust record made here: trust and store first, then this node's ledger (which
    /// every node that may hold it syncs, so it reaches them), then the directory if this node
    /// writes it.
    fn record_trust(&mut self, rec: TrustRecord) -> Result<(), Error> {
        self.learn_trust(std::slice::from_ref(&rec))?;
        let ledger = self
            .own_doc(Kind::Ledger)
            .ok_or_else(|| Error::Invalid("this node has no ledger".to_owned()))?;
        let (rid, bytes) = (rec.id().to_string(), rec.encode());
        let signer = self.keys.node().clone();
        self.edit_local(&ledger, &signer, rec.what(), now_ms(), |tx| {
            kinds::ledger::put_trust_record(tx, &rid, &bytes)
        })?;
        self.publish_to_directory()?;
        Ok(())
    }

    /// Add checked trust records to trust, and the new ones to the store. A store failure is
    /// logged, not fatal: the record is still in the document that carried it. Returns whether
    /// anything was new.
    fn learn_trust(&mut self, records: &[TrustRecord]) -> Result<bool, RecordError> {
        let new = self.insert_trust(records)?;
        self.store_trust_or_log(&new);
        Ok(!new.is_empty())
    }

    /// Add checked trust records to trust (not to the store); returns those that were new.
    fn insert_trust(&mut self, records: &[TrustRecord]) -> Result<Vec<TrustRecord>, RecordError> {
        // A signed time ahead of the clock would rank as the newest for as long as it lies
        // ahead (a registration), so such a record is set aside — only it, not the message
        // that carried it, which may hold what an honest peer needs: it comes again (in its
        // ledger, or the next message) once this clock has reached it.
        let now = now_ms();
        let mut regs = Vec::new();
        let mut certs = Vec::new();
        let mut revs = Vec::new();
        for r in records {
            if let Err(e) = linli_crdt_model::cert::check_not_future(
                r.what(),
                r.at_ms(),
                now,
                self.limits.clock_skew_ms_max,
            ) {
                tracing::debug!(record = %r.id(), error = %e, "setting aside a trust record dated ahead");
                continue;
            }
            match r {
                TrustRecord::Registration(x) => regs.push(x.clone()),
                TrustRecord::Certificate(x) => certs.push(x.clone()),
                TrustRecord::Revocation(x) => revs.push(x.clone()),
            }
        }
        let mut new = Vec::new();
        let ids = self.trust.insert_registrations(regs.clone())?;
        new.extend(
            regs.into_iter()
                .filter(|r| ids.contains(&r.id()))
                .map(TrustRecord::Registration),
        );
        let ids = self.trust.insert_certificates(certs.clone())?;
        new.extend(
            certs
                .into_iter()
                .filter(|c| ids.contains(&c.id()))
                .map(TrustRecord::Certificate),
        );
        let ids = self.trust.insert_revocations(revs.clone())?;
        new.extend(
            revs.into_iter()
                .filter(|r| ids.contains(&r.id()))
                .map(TrustRecord::Revocation),
        );
        Ok(new)
    }

    /// Put trust records in the store.
    fn store_trust(&self, records: &[TrustRecord]) -> Result<(), store::Error> {
        for r in records {
            match r {
                TrustRecord::Registration(x) => self.store.put_registration(x)?,
                TrustRecord::Certificate(x) => self.store.put_certificate(x)?,
                TrustRecord::Revocation(x) => self.store.put_revocation(x)?,
            }
        }
        Ok(())
    }

    /// [`Engine::store_trust`] for records a peer or a document brought: a store failure is
    /// logged, not fatal, since they are still in what carried them and come again.
    fn store_trust_or_log(&self, records: &[TrustRecord]) {
        if let Err(e) = self.store_trust(records) {
            tracing::warn!(error = %e, "could not store trust records");
        }
    }

    /// Put every registration, certificate and revocation this node knows, and the registered
    /// unit tree, into the directory if this node writes it and they are missing (the top
    /// node's own certificate is issued before the directory exists; records made at other
    /// units arrive in their ledgers).
    pub(super) fn publish_to_directory(&mut self) -> Result<(), Error> {
        let Some(dir) = self.directory_id().filter(|d| self.can_write(d)) else {
            return Ok(());
        };
        let Ok(current) = kinds::directory::hydrate(self.docs[&dir].read()) else {
            return Ok(());
        };
        let regs: Vec<Registration> = self
            .trust
            .registrations()
            .filter(|(id, _)| !current.registrations.contains_key(&id.to_string()))
            .map(|(_, r)| r.clone())
            .collect();
        let certs: Vec<Certificate> = self
            .trust
            .certificates()
            .filter(|(id, _)| !current.certificates.contains_key(&id.to_string()))
            .map(|(_, c)| c.clone())
            .collect();
        let revs: Vec<Revocation> = self
            .trust
            .revocations()
            .filter(|(id, _)| !current.revocations.contains_key(&id.to_string()))
            .map(|(_, r)| r.clone())
            .collect();
        // The display map follows the registered tree, in id order: parents before children.
        let units: Vec<(String, kinds::directory::UnitEntry)> = self
            .trust
            .units()
            .map(|u| (u.id.to_string(), kinds::directory::UnitEntry::from(u)))
            .filter(|(id, e)| current.units.get(id) != Some(e))
            .collect();
        if regs.is_empty() && certs.is_empty() && revs.is_empty() && units.is_empty() {
            return Ok(());
        }
        let signer = self.keys.node().clone();
        self.edit_local(&dir, &signer, "directory", now_ms(), |tx| {
            for (id, e) in &units {
                match kinds::directory::put_unit(tx, id, e) {
                    // The display map is a convenience; the registrations are the record.
                    Ok(()) | Err(kinds::EditError::Invalid { .. }) => {}
                    Err(e) => return Err(e),
                }
            }
            for r in &regs {
                kinds::directory::put_registration(tx, &r.id().to_string(), &r.encode())?;
            }
            for c in &certs {
                kinds::directory::put_certificate(tx, &c.id().to_string(), &c.encode())?;
            }
            for r in &revs {
                kinds::directory::put_revocation(tx, &r.id().to_string(), &r.encode())?;
            }
            Ok(())
        })?;
        Ok(())
    }

    fn can_write(&self, id: &DocId) -> bool {
        let Some(doc) = self.docs.get(id) else {
            return false;
        };
        let h = &doc.header().header;
        self.trust
            .authorize(&self.keys.node().public(), now_ms(), |u, role| {
                doc::may_write(h.kind, &h.unit, &u.id, role)
            })
            .is_ok()
    }

    /// Pull registrations, certificates and revocations out of the directory into trust.
    /// Returns whether anything was new.
    pub(super) fn refresh_trust_from_directory(&mut self) -> bool {
        let Some(dir) = self.directory_id() else {
            return false;
        };
        let Ok(d) = kinds::directory::hydrate(self.docs[&dir].read()) else {
            return false;
        };
        let network = self.trust.network();
        let mut records: Vec<TrustRecord> = Vec::new();
        records.extend(
            d.registrations
                .values()
                .filter_map(|b| Registration::decode(b, &network).ok())
                .map(TrustRecord::Registration),
        );
        records.extend(
            d.certificates
                .values()
                .filter_map(|b| Certificate::decode(b, &network).ok())
                .map(TrustRecord::Certificate),
        );
        records.extend(
            d.revocations
                .values()
                .filter_map(|b| Revocation::decode(b, &network).ok())
                .map(TrustRecord::Revocation),
        );
        self.learn_from(records, "the directory")
    }

    /// Pull the trust records of one ledger into trust. Returns whether anything was new.
    pub(super) fn refresh_trust_from_ledger(&mut self, ledger: &DocId) -> bool {
        let Ok(l) = kinds::ledger::hydrate(self.docs[ledger].read()) else {
            return false;
        };
        let network = self.trust.network();
        let records: Vec<TrustRecord> = l
            .trust
            .values()
            .filter_map(|b| TrustRecord::decode(b, &network).ok())
            .collect();
        self.learn_from(records, "a ledger")
    }

    /// Pull the trust records of every ledger held into trust.
    pub(super) fn refresh_trust_from_ledgers(&mut self) -> bool {
        let ledgers: Vec<DocId> = self
            .docs
            .iter()
            .filter(|(_, d)| d.kind() == Kind::Ledger)
            .map(|(id, _)| *id)
            .collect();
        let mut new = false;
        for id in ledgers {
            new |= self.refresh_trust_from_ledger(&id);
        }
        new
    }

    fn learn_from(&mut self, records: Vec<TrustRecord>, source: &str) -> bool {
        // Each decoded record passed its checks, so only a record error in trust itself (none
        // is expected) could refuse the batch; it is logged.
        match self.learn_trust(&records) {
            Ok(new) => new,
            Err(e) => {
                tracing::warn!(error = %e, source, "could not take trust records");
                false
            }
        }
    }

    /// Judge a peer's input with the trust records it carries in trust: they are needed to
    /// judge it. If `judge` refuses, or this node fails on the way, trust goes back to what it
    /// was and nothing of them is stored; if it accepts, the new ones are stored — or, if
    /// `proven` names the keys whose signed work was taken in the end, only the new ones that
    /// prove those keys. What trust learned meanwhile from the documents the input changed (a
    /// ledger's revocation) stays. Trust is copied only when a record is new here (most
    /// messages carry only what is known, or nothing).
    pub(super) fn with_carried_trust<T>(
        &mut self,
        records: &[TrustRecord],
        judge: impl FnOnce(&mut Self) -> Result<Result<T, SyncRefused>, Error>,
        proven: impl FnOnce(&Self, &T) -> Option<Vec<PublicKey>>,
    ) -> Result<Result<T, SyncRefused>, Error> {
        if records.iter().all(|r| self.trust.knows(r)) {
            return judge(self);
        }
        let before = self.trust.clone();
        let result = match self.insert_trust(records) {
            Ok(new) => judge(self).map(|verdict| verdict.map(|t| (t, new))),
            Err(e) => Ok(Err(SyncRefused::from(e))),
        };
        match result {
            Ok(Ok((t, mut new))) => {
                if let Some(keys) = proven(self, &t) {
                    let (mut certs, mut regs) = (Vec::new(), Vec::new());
                    for r in &new {
                        match r {
                            TrustRecord::Certificate(c) => certs.push(c.clone()),
                            TrustRecord::Registration(g) => regs.push(g.clone()),
                            TrustRecord::Revocation(_) => {}
                        }
                    }
                    let keep = chains_of(&certs, &regs, &keys);
                    if keep.len() < new.len() {
                        // Trust again without the carried records that prove nothing taken,
                        // but with everything else it holds now: what it had before, and what
                        // it learned from the documents the input changed.
                        let unproven: HashSet<RecordId> = new
                            .iter()
                            .map(TrustRecord::id)
                            .filter(|id| !keep.iter().any(|k| k.id() == *id))
                            .collect();
                        let size = |t: &Trust| {
                            t.certificates().count()
                                + t.registrations().count()
                                + t.revocations().count()
                        };
                        let after = std::mem::replace(&mut self.trust, before);
                        let learned: Vec<TrustRecord> =
                            if size(&after) == size(&self.trust) + new.len() {
                                // Nothing learned besides what was carried: only the proven part.
                                new.iter()
                                    .filter(|r| !unproven.contains(&r.id()))
                                    .cloned()
                                    .collect()
                            } else {
                                after
                                    .records()
                                    .filter(|r| !unproven.contains(&r.id()) && !self.trust.knows(r))
                                    .collect()
                            };
                        if let Err(e) = self.insert_trust(&learned) {
                            tracing::warn!(error = %e, "could not keep the records that prove what was taken");
                            self.trust = after;
                        } else {
                            new.retain(|r| !unproven.contains(&r.id()));
                        }
                    }
                }
                self.store_trust_or_log(&new);
                Ok(Ok(t))
            }
            // Refused, or this node failed: nothing of what the input carried is kept.
            Ok(Err(refused)) => {
                self.trust = before;
                Ok(Err(refused))
            }
            Err(e) => {
                self.trust = before;
                Err(e)
            }
        }
    }
}

/// Of the certificates and registrations a peer carried, those that can prove one of `keys`:
/// the keys' certificates and, up their issuers, the certificates that support them, with the
/// registrations of the units those name and the units above. A peer chooses what it carries;
/// only this much of it is ever judged or kept.
pub(super) fn chains_of(
    certs: &[Certificate],
    regs: &[Registration],
    keys: &[PublicKey],
) -> Vec<TrustRecord> {
    let mut wanted: HashSet<PublicKey> = keys.iter().copied().collect();
    let mut taken = vec![false; certs.len()];
    loop {
        let mut grew = false;
        for (i, c) in certs.iter().enumerate() {
            if !taken[i] && wanted.contains(&c.body.subject) {
                taken[i] = true;
                grew |= wanted.insert(c.body.issuer);
            }
        }
        if !grew {
            break;
        }
    }
    let kept: Vec<&Certificate> = certs
        .iter()
        .zip(&taken)
        .filter_map(|(c, t)| t.then_some(c))
        .collect();
    let units: HashSet<&UnitId> = kept.iter().map(|c| &c.body.unit).collect();
    let named = |u: &UnitId| units.iter().any(|k| u.is_at_or_above(k));
    regs.iter()
        .filter(|r| named(&r.body.unit.id))
        .cloned()
        .map(TrustRecord::Registration)
        .chain(kept.into_iter().cloned().map(TrustRecord::Certificate))
        .collect()
}
