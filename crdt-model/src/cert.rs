//! The signed statements trust is made of: registrations (which units exist, of which kind),
//! certificates (which key acts for which unit, in which role, until when) and revocations
//! (which keys no longer do, from when).
//!
//! All three are self-verifying blobs: their signature is checked on decode, their authority (the
//! chain to the genesis root keys) is judged by [`crate::trust::Trust`] over the whole set, so the
//! verdict never depends on the order in which a node heard them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::genesis::NetworkId;
use crate::keys::{self, Domain, KeyError, PublicKey, SecretKey, Signature};
use crate::unit::{Unit, UnitId};

/// What a certified key may do for its unit.
///
/// | role | signs | typical holder |
/// |---|---|---|
/// | admin | certificates and revocations for its unit and units below; writes the directory | 民政局 / street office administrator |
/// | writer | changes to its unit's documents | community worker (社区工作者) |
/// | reviewer | `reviewed` attestations (初审, seed 000 §一(一)) | civil-affairs officer |
/// | approver | `approved` / `rejected` / `filed` attestations (审批, 备案) | party committee / government officer |
/// | node | changes and checkpoints on behalf of the unit's node | the node daemon itself |
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    Admin,
    Writer,
    Reviewer,
    Approver,
    Node,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Writer => "writer",
            Role::Reviewer => "reviewer",
            Role::Approver => "approver",
            Role::Node => "node",
        }
    }
}

impl std::str::FromStr for Role {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "admin" => Ok(Role::Admin),
            "writer" => Ok(Role::Writer),
            "reviewer" => Ok(Role::Reviewer),
            "approver" => Ok(Role::Approver),
            "node" => Ok(Role::Node),
            other => Err(format!(
                "unknown role {other:?}: expected admin, writer, reviewer, approver or node"
            )),
        }
    }
}

/// An id derived from a signed record's body (certificates, revocations, attestations).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct RecordId(#[serde(with = "keys::hex32")] pub [u8; 32]);

impl RecordId {
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RecordId({})", self.short())
    }
}

impl std::str::FromStr for RecordId {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(RecordId(out))
    }
}

/// What a certificate states. It names a unit by id only: what kind of unit that is comes from
/// the registered unit tree, never from a certificate's own claim.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertBody {
    pub network: NetworkId,
    pub subject: PublicKey,
    pub unit: UnitId,
    pub role: Role,
    /// Who holds the key: a person's name (王芳) or the node's label.
    pub holder: String,
    pub issuer: PublicKey,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
}

/// A certificate: the body and its issuer's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    pub body: CertBody,
    pub signature: Signature,
}

/// What a revocation states: `key` no longer acts for `unit` or any unit below it from
/// `cutoff_ms` on. It reaches only the key's certificates for those units that were issued by
/// `at_ms` (a later certificate by a higher admin restores the key), and only if `issuer` is an
/// admin of `unit` or a unit above it. What the key signed before the cutoff stays valid.
///
/// `keep_issued` says what happens to the certificates the key issued under the revoked ones:
/// `false` (a compromise, the default) ends them at the cutoff too; `true` (a job transfer,
/// 工作调动) leaves them in force until they expire.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationBody {
    pub network: NetworkId,
    pub key: PublicKey,
    pub issuer: PublicKey,
    pub unit: UnitId,
    /// When the revocation was signed.
    pub at_ms: i64,
    /// From when the key's signatures no longer count; at most `at_ms`.
    pub cutoff_ms: i64,
    pub reason: String,
    pub keep_issued: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub body: RevocationBody,
    pub signature: Signature,
}

/// What a registration states: `unit` exists, with this kind and name, below its parent. Signed
/// by an admin of the parent unit or a unit above it; the top unit comes from the genesis.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegistrationBody {
    pub network: NetworkId,
    pub unit: Unit,
    pub issuer: PublicKey,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registration {
    pub body: RegistrationBody,
    pub signature: Signature,
}

/// Any of the three, as one blob: how trust records travel in a unit's ledger.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum TrustRecord {
    Certificate(Certificate),
    Revocation(Revocation),
    Registration(Registration),
}

/// Why a certificate or revocation blob was refused before its authority was even considered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    #[error("record is not valid postcard: {0}")]
    Decode(String),
    #[error("record is for network {found}, this is network {expected}")]
    WrongNetwork {
        expected: NetworkId,
        found: NetworkId,
    },
    #[error(transparent)]
    Signature(#[from] KeyError),
    #[error("certificate expires ({expires_at_ms}) before it is issued ({issued_at_ms})")]
    BadValidity {
        issued_at_ms: i64,
        expires_at_ms: i64,
    },
    #[error("revocation cutoff ({cutoff_ms}) lies after the revocation was signed ({at_ms})")]
    CutoffAfterSigning { at_ms: i64, cutoff_ms: i64 },
    #[error("a registration cannot register the top unit {0}: it comes from the genesis")]
    RegistersTop(UnitId),
    #[error("a unit's display name must not be empty")]
    EmptyName,
    #[error("signed {what} is dated {at_ms}, more than the allowed clock skew after {now_ms}")]
    FromTheFuture {
        what: &'static str,
        at_ms: i64,
        now_ms: i64,
    },
}

/// Refuse a signed time more than `skew_ms` after `now_ms`: a statement dated far ahead would
/// otherwise stay "the newest" (a checkpoint) or "in force" until that date.
pub fn check_not_future(
    what: &'static str,
    at_ms: i64,
    now_ms: i64,
    skew_ms: i64,
) -> Result<(), RecordError> {
    if at_ms > now_ms.saturating_add(skew_ms) {
        return Err(RecordError::FromTheFuture {
            what,
            at_ms,
            now_ms,
        });
    }
    Ok(())
}

impl Certificate {
    pub fn issue(body: CertBody, issuer: &SecretKey) -> Certificate {
        debug_assert_eq!(body.issuer, issuer.public());
        let signature = issuer.sign(Domain::Certificate, &body);
        Certificate { body, signature }
    }

    pub fn id(&self) -> RecordId {
        RecordId(keys::sha256(&[&keys::signing_bytes(
            Domain::Certificate,
            &self.body,
        )]))
    }

    /// Check the signature, network and validity window; not the chain (see `Trust`).
    pub fn check(&self, network: &NetworkId) -> Result<(), RecordError> {
        if self.body.network != *network {
            return Err(RecordError::WrongNetwork {
                expected: *network,
                found: self.body.network,
            });
        }
        if self.body.expires_at_ms <= self.body.issued_at_ms {
            return Err(RecordError::BadValidity {
                issued_at_ms: self.body.issued_at_ms,
                expires_at_ms: self.body.expires_at_ms,
            });
        }
        self.body
            .issuer
            .verify(Domain::Certificate, &self.body, &self.signature)?;
        Ok(())
    }

    pub fn valid_at(&self, at_ms: i64) -> bool {
        self.body.issued_at_ms <= at_ms && at_ms < self.body.expires_at_ms
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("postcard encoding of a plain struct")
    }

    pub fn decode(bytes: &[u8], network: &NetworkId) -> Result<Certificate, RecordError> {
        let cert: Certificate =
            postcard::from_bytes(bytes).map_err(|e| RecordError::Decode(e.to_string()))?;
        cert.check(network)?;
        Ok(cert)
    }
}

impl Revocation {
    pub fn issue(body: RevocationBody, issuer: &SecretKey) -> Revocation {
        debug_assert_eq!(body.issuer, issuer.public());
        let signature = issuer.sign(Domain::Revocation, &body);
        Revocation { body, signature }
    }

    pub fn id(&self) -> RecordId {
        RecordId(keys::sha256(&[&keys::signing_bytes(
            Domain::Revocation,
            &self.body,
        )]))
    }

    pub fn check(&self, network: &NetworkId) -> Result<(), RecordError> {
        if self.body.network != *network {
            return Err(RecordError::WrongNetwork {
                expected: *network,
                found: self.body.network,
            });
        }
        if self.body.cutoff_ms > self.body.at_ms {
            return Err(RecordError::CutoffAfterSigning {
                at_ms: self.body.at_ms,
                cutoff_ms: self.body.cutoff_ms,
            });
        }
        self.body
            .issuer
            .verify(Domain::Revocation, &self.body, &self.signature)?;
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("postcard encoding of a plain struct")
    }

    pub fn decode(bytes: &[u8], network: &NetworkId) -> Result<Revocation, RecordError> {
        let rev: Revocation =
            postcard::from_bytes(bytes).map_err(|e| RecordError::Decode(e.to_string()))?;
        rev.check(network)?;
        Ok(rev)
    }
}

impl Registration {
    pub fn issue(body: RegistrationBody, issuer: &SecretKey) -> Registration {
        debug_assert_eq!(body.issuer, issuer.public());
        let signature = issuer.sign(Domain::Registration, &body);
        Registration { body, signature }
    }

    pub fn id(&self) -> RecordId {
        RecordId(keys::sha256(&[&keys::signing_bytes(
            Domain::Registration,
            &self.body,
        )]))
    }

    /// Check the signature, network and shape; not the issuer's authority (see `Trust`).
    pub fn check(&self, network: &NetworkId) -> Result<(), RecordError> {
        if self.body.network != *network {
            return Err(RecordError::WrongNetwork {
                expected: *network,
                found: self.body.network,
            });
        }
        if self.body.unit.id.parent().is_none() {
            return Err(RecordError::RegistersTop(self.body.unit.id.clone()));
        }
        if self.body.unit.name.trim().is_empty() {
            return Err(RecordError::EmptyName);
        }
        self.body
            .issuer
            .verify(Domain::Registration, &self.body, &self.signature)?;
        Ok(())
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("postcard encoding of a plain struct")
    }

    pub fn decode(bytes: &[u8], network: &NetworkId) -> Result<Registration, RecordError> {
        let reg: Registration =
            postcard::from_bytes(bytes).map_err(|e| RecordError::Decode(e.to_string()))?;
        reg.check(network)?;
        Ok(reg)
    }
}

impl TrustRecord {
    pub fn id(&self) -> RecordId {
        match self {
            TrustRecord::Certificate(c) => c.id(),
            TrustRecord::Revocation(r) => r.id(),
            TrustRecord::Registration(r) => r.id(),
        }
    }

    /// The time the record says it was signed.
    pub fn at_ms(&self) -> i64 {
        match self {
            TrustRecord::Certificate(c) => c.body.issued_at_ms,
            TrustRecord::Revocation(r) => r.body.at_ms,
            TrustRecord::Registration(r) => r.body.at_ms,
        }
    }

    pub fn what(&self) -> &'static str {
        match self {
            TrustRecord::Certificate(_) => "certificate",
            TrustRecord::Revocation(_) => "revocation",
            TrustRecord::Registration(_) => "registration",
        }
    }

    pub fn check(&self, network: &NetworkId) -> Result<(), RecordError> {
        match self {
            TrustRecord::Certificate(c) => c.check(network),
            TrustRecord::Revocation(r) => r.check(network),
            TrustRecord::Registration(r) => r.check(network),
        }
    }

    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("postcard encoding of a plain struct")
    }

    pub fn decode(bytes: &[u8], network: &NetworkId) -> Result<TrustRecord, RecordError> {
        let rec: TrustRecord =
            postcard::from_bytes(bytes).map_err(|e| RecordError::Decode(e.to_string()))?;
        rec.check(network)?;
        Ok(rec)
    }
}
