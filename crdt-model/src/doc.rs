//! Document headers, ids and scopes.
//!
//! The header is immutable and signed by the creator; the document id is the hash of the header,
//! so nobody can swap a header under an existing id. The scope in the header decides which nodes
//! may hold the document at all — personal data goes only where it is needed
//! (加强数据安全管理, seed 004 (二十三); DOMAIN.md).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::cert::Role;
use crate::genesis::NetworkId;
use crate::keys::{self, Domain, KeyError, PublicKey, SecretKey, Signature};
use crate::kinds::Kind;
use crate::trust::{Denied, Grant, Trust};
use crate::unit::UnitId;

/// The schema version this build writes and reads.
pub const SCHEMA_VERSION: u32 = 1;
/// Longest document title, in bytes.
pub const TITLE_BYTES_MAX: usize = 512;

/// A document id: SHA-256 of its header. Printed as hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DocId(#[serde(with = "keys::hex32")] pub [u8; 32]);

/// Which nodes may hold a document.
///
/// | scope | held by |
/// |---|---|
/// | `public` | every node of the network |
/// | `chain` | the owning unit and every unit above it (default for personal data) |
/// | `unit` | the owning unit only |
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    Public,
    Chain,
    Unit,
}

/// What a document is, fixed at creation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub network: NetworkId,
    pub kind: Kind,
    pub unit: UnitId,
    pub scope: Scope,
    pub title: String,
    pub created_at_ms: i64,
    pub schema_version: u32,
    pub creator: PublicKey,
    /// For documents that exist once per period (a visit log per month): `"YYYY-MM"`.
    pub period: Option<String>,
}

/// A header with its creator's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedHeader {
    pub header: Header,
    pub signature: Signature,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("document header is for network {found}, this is {expected}")]
    WrongNetwork {
        expected: NetworkId,
        found: NetworkId,
    },
    #[error("document schema version {found} is newer than this build understands ({max})")]
    SchemaVersion { found: u32, max: u32 },
    #[error("document title is empty or longer than {TITLE_BYTES_MAX} bytes")]
    Title,
    #[error(transparent)]
    Signature(#[from] KeyError),
    #[error("creator may not create this document: {0}")]
    Denied(#[from] Denied),
    #[error(transparent)]
    Record(#[from] crate::cert::RecordError),
    #[error("the network's directory belongs to its top unit, not to {0}")]
    DirectoryNotTop(UnitId),
}

impl Scope {
    /// May a node of unit `holder` hold a document of this scope owned by `owner`?
    pub fn may_hold(self, owner: &UnitId, holder: &UnitId) -> bool {
        match self {
            Scope::Public => true,
            Scope::Chain => holder.is_at_or_above(owner),
            Scope::Unit => holder == owner,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Public => "public",
            Scope::Chain => "chain",
            Scope::Unit => "unit",
        }
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "public" => Ok(Scope::Public),
            "chain" => Ok(Scope::Chain),
            "unit" => Ok(Scope::Unit),
            other => Err(format!(
                "unknown scope {other:?}: expected public, chain or unit"
            )),
        }
    }
}

/// The default scope of each kind: personal data (visit logs, task lists, minutes before
/// publication) stays on its chain; conventions, the directory and ledgers are public.
pub fn default_scope(kind: Kind) -> Scope {
    match kind {
        Kind::VisitLog | Kind::TaskList | Kind::Minutes => Scope::Chain,
        Kind::Convention | Kind::Directory | Kind::Ledger => Scope::Public,
    }
}

/// Who may write a document of this kind owned by `doc_unit`.
///
/// | kind | writers |
/// |---|---|
/// | directory | an admin or node key of the owning unit (the top unit: the lists are the district's, seed 000 §一(一)) |
/// | everything else | any certified key of the owning unit |
///
/// The trust records a directory or a ledger carries verify themselves; who wrote the change
/// that carried them adds nothing to their authority.
///
/// Cross-unit work is done by reference, never by writing another unit's document: a district's
/// whistle response (报到) lives in the district's task list and names the community's whistle.
pub fn may_write(kind: Kind, doc_unit: &UnitId, unit: &UnitId, role: Role) -> bool {
    match kind {
        Kind::Directory => unit == doc_unit && matches!(role, Role::Admin | Role::Node),
        _ => unit == doc_unit,
    }
}

impl Header {
    pub fn id(&self) -> DocId {
        DocId(keys::sha256(&[&keys::signing_bytes(Domain::Header, self)]))
    }

    pub fn sign(self, creator: &SecretKey) -> SignedHeader {
        let signature = creator.sign(Domain::Header, &self);
        SignedHeader {
            header: self,
            signature,
        }
    }
}

impl SignedHeader {
    pub fn id(&self) -> DocId {
        self.header.id()
    }

    /// Check network, version, title, signature, that the creation time is not more than
    /// `skew_ms` after `now_ms`, and that the creator could write this document when it was
    /// created.
    pub fn check(&self, trust: &Trust, now_ms: i64, skew_ms: i64) -> Result<Grant, HeaderError> {
        crate::cert::check_not_future(
            "document header",
            self.header.created_at_ms,
            now_ms,
            skew_ms,
        )?;
        self.check_signed(trust)
    }

    /// [`SignedHeader::check`] without the time bound: for headers already held (audit).
    pub fn check_signed(&self, trust: &Trust) -> Result<Grant, HeaderError> {
        let h = &self.header;
        if h.network != trust.network() {
            return Err(HeaderError::WrongNetwork {
                expected: trust.network(),
                found: h.network,
            });
        }
        if h.schema_version > SCHEMA_VERSION {
            return Err(HeaderError::SchemaVersion {
                found: h.schema_version,
                max: SCHEMA_VERSION,
            });
        }
        if h.title.trim().is_empty() || h.title.len() > TITLE_BYTES_MAX {
            return Err(HeaderError::Title);
        }
        if h.kind == Kind::Directory && h.unit != trust.genesis().top.id {
            return Err(HeaderError::DirectoryNotTop(h.unit.clone()));
        }
        h.creator.verify(Domain::Header, h, &self.signature)?;
        let grant = trust.authorize(&h.creator, h.created_at_ms, |unit, role| {
            may_write(h.kind, &h.unit, &unit.id, role)
        })?;
        Ok(grant)
    }
}

impl DocId {
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for DocId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DocId({})", self.short())
    }
}

impl FromStr for DocId {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(DocId(out))
    }
}
