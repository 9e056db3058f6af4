//! Certificates and revocations: the signed statements that say which key acts for which unit,
//! in which role, until when — and which keys no longer do.
//!
//! Both are self-verifying blobs: their signature is checked on decode, their authority (the chain
//! to the genesis root keys) is judged by [`crate::trust::Trust`] over the whole set, so the verdict
//! never depends on the order in which a node heard them.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::genesis::NetworkId;
use crate::keys::{self, Domain, KeyError, PublicKey, SecretKey, Signature};
use crate::unit::Unit;

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

/// What a certificate states.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CertBody {
    pub network: NetworkId,
    pub subject: PublicKey,
    pub unit: Unit,
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

/// What a revocation states. `keep_changes` are the revoked key's changes (Automerge change
/// hashes) that stay valid; `keep_certificates` are certificates it issued that stay valid.
/// Everything else it signed is invalid, whatever order a node hears of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationBody {
    pub network: NetworkId,
    pub key: PublicKey,
    pub issuer: PublicKey,
    pub at_ms: i64,
    pub reason: String,
    pub keep_changes: Vec<[u8; 32]>,
    pub keep_certificates: Vec<RecordId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub body: RevocationBody,
    pub signature: Signature,
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
