//! The node's HTTP contract: every request and response type its local API speaks, and the
//! typed edit operations (`ops`). The API serves these, and [`crate::client::Client`] — the one
//! client the CLI, the testnet and the tests use — sends and reads them.
//!
//! Nothing here knows the engine, the store or the network: this module depends on
//! `crdt-model` and serde only, so a program that talks to a node links no more of it than the
//! types. Errors are [`ErrorBody`], whose `error` kinds are listed in `api`'s module docs.

pub mod ops;

use linli_crdt_model::attest::{Comparison, Statement};
use linli_crdt_model::cert::{Certificate, Role};
use linli_crdt_model::doc::Scope;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use serde::{Deserialize, Serialize};

pub use ops::{Op, OpError};

/// A summary row of a document.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocSummary {
    pub id: String,
    pub kind: Kind,
    pub unit: String,
    pub scope: String,
    pub title: String,
    pub period: Option<String>,
    pub created_at_ms: i64,
    pub n_changes: usize,
    pub heads: Vec<String>,
}

/// What a create call asks for.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateDoc {
    pub kind: Kind,
    pub title: String,
    pub scope: Option<Scope>,
    /// `"YYYY-MM"` for a visit log.
    pub period: Option<String>,
    /// For minutes: the meeting's form, topic and so on.
    pub minutes: Option<kinds::minutes::Meta>,
}

/// What an acknowledged edit did. Returned only after it is on disk.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Receipt {
    pub doc: String,
    pub change: String,
    pub record: Option<String>,
    pub author: String,
}

/// The node as a whole, for `status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Status {
    pub network: String,
    pub network_name: String,
    pub unit: String,
    pub unit_name: String,
    pub unit_kind: UnitKind,
    pub node_key: String,
    pub documents: usize,
    pub changes: usize,
    pub certificates: usize,
    pub attestations: usize,
    pub people: Vec<Person>,
    pub heads_digest: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Person {
    pub handle: String,
    pub key: String,
    pub holder: Option<String>,
    pub role: Option<String>,
}

/// A connected (or blocked) peer, as the API shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerInfo {
    pub peer_id: String,
    /// The peer's unit, once its hello was accepted.
    pub unit: Option<String>,
    pub unit_name: Option<String>,
    pub addresses: Vec<String>,
    pub connected: bool,
    pub blocked: bool,
    pub rtt_ms: Option<u64>,
    pub last_seen_ms: Option<i64>,
    pub offences: u32,
}

/// Facts about the running network side.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct NetInfo {
    pub peer_id: String,
    pub listen: Vec<String>,
}

/// What a running node tells the world about itself (`peer.json` in its data directory).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PeerFile {
    pub peer_id: String,
    pub listen: Vec<String>,
    pub api: String,
    pub unit: String,
    pub pid: u32,
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A stable kind, e.g. `unknown-document` (see the module docs).
    pub error: String,
    /// A sentence for people: what failed, naming the id, key or file, and what to do.
    pub message: String,
    /// For a failed batch: the index of the operation that failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// For a failed batch: receipts of the operations before it, which were applied and stay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub applied: Option<Vec<Receipt>>,
}

/// `GET /v1/status`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StatusView {
    #[serde(flatten)]
    pub status: Status,
    /// Peers connected now.
    pub peers: usize,
    pub net: NetInfo,
}

/// `GET /v1/docs/{id}`: the summary and the signed header's remaining fields.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DocView {
    #[serde(flatten)]
    pub summary: DocSummary,
    pub network: String,
    pub schema_version: u32,
    /// The key that created the document, and who holds it.
    pub creator: String,
    pub creator_holder: Option<String>,
}

/// `POST /v1/docs/{id}/attest`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestRequest {
    pub statement: Statement,
    /// A record inside the document (a request id) the statement is about.
    #[serde(default)]
    pub subject: Option<String>,
    #[serde(default)]
    pub note: Option<String>,
}

/// An id made by a write: a document, attestation, checkpoint or revocation.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Created {
    pub id: String,
}

/// One attestation, judged against this node's trust now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AttestationView {
    pub id: String,
    pub statement: Statement,
    pub issuer: String,
    /// From the certificate that gave the issuer authority; `None` if none does.
    pub holder: Option<String>,
    pub issuer_unit: Option<String>,
    pub doc: String,
    pub doc_unit: String,
    pub heads: Vec<String>,
    pub subject: Option<String>,
    pub at_ms: i64,
    pub note: String,
    /// Documents a checkpoint covers (0 for other statements).
    pub n_checkpoint_docs: usize,
    pub valid: bool,
    /// Why it is not valid.
    pub reason: Option<String>,
}

/// `GET /v1/verify`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyView {
    pub ok: bool,
    pub problems: Vec<VerifyProblem>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VerifyProblem {
    pub doc: String,
    pub what: String,
}

/// `GET /v1/checkpoint/compare`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompareView {
    pub checkpoint: String,
    pub rows: Vec<CompareRow>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CompareRow {
    pub doc: String,
    pub title: String,
    pub comparison: Comparison,
}

/// One certificate, judged against this node's trust now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CertView {
    pub id: String,
    pub subject: String,
    pub holder: String,
    pub unit: UnitId,
    /// The unit's kind and name in the registered tree; `None` if it is not registered here.
    pub unit_kind: Option<UnitKind>,
    pub unit_name: Option<String>,
    pub role: Role,
    pub issuer: String,
    pub issued_at_ms: i64,
    pub expires_at_ms: i64,
    /// Its chain reaches a genesis root key through registered units.
    pub chain_valid: bool,
    /// In force now (issued, not expired, not revoked, its chain in force).
    #[serde(default)]
    pub in_force: bool,
    /// An effective revocation cuts this certificate (from some cutoff on).
    pub revoked: bool,
    pub expired: bool,
}

/// `POST /v1/certs/issue`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssueRequest {
    /// The certified key, 64 hex digits.
    pub subject: String,
    /// A registered unit (`POST /v1/units/register` registers one).
    pub unit: UnitId,
    pub role: Role,
    /// Who holds the key (王芳, or a node's label).
    pub holder: String,
    /// Default 365.
    #[serde(default)]
    pub valid_days: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Issued {
    pub id: String,
    pub certificate: Certificate,
    /// `Certificate::encode` as hex: what `POST /v1/certs/import` takes on another node.
    pub hex: String,
    pub chain_valid: bool,
    /// The other certificates of the issuer's chain, as hex: a node that imports the
    /// certificate before it first syncs needs them to judge it.
    #[serde(default)]
    pub chain: Vec<String>,
    /// `Registration::encode` as hex of the units the chain names and those above them: what
    /// places the certificate in the unit tree on such a node.
    #[serde(default)]
    pub registrations: Vec<String>,
}

/// `POST /v1/certs/import`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportRequest {
    /// Hex of `Certificate::encode`.
    pub certificates: Vec<String>,
    /// Hex of `Registration::encode`: the units the certificates name.
    #[serde(default)]
    pub registrations: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Imported {
    /// The id of every certificate sent, in order.
    pub ids: Vec<String>,
    /// How many of them were new here.
    pub n_new: usize,
}

/// `POST /v1/certs/revoke`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeRequest {
    pub key: String,
    pub reason: String,
    /// The unit whose certificates (and those of the units below it) the revocation cuts;
    /// default: the unit of the signer's administrator certificate (the top for a root key).
    #[serde(default)]
    pub unit: Option<UnitId>,
    /// From when the key's signatures no longer count, ms since the epoch; default now. Not
    /// in the future.
    #[serde(default)]
    pub cutoff_ms: Option<i64>,
    /// Keep the certificates the key issued in force until they expire (a job transfer,
    /// 工作调动). Default `false` (a lost or stolen key): they end at the cutoff too.
    #[serde(default)]
    pub keep_issued: bool,
}

/// `POST /v1/units/register`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegisterRequest {
    /// The unit below the top: id, kind (one level below its parent's) and display name.
    pub unit: Unit,
}

/// A signed registration, as `POST /v1/units/register` returns it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Registered {
    /// The registration's record id.
    pub id: String,
    pub unit: Unit,
    pub issuer: String,
    pub at_ms: i64,
}

/// `GET /v1/units`: one unit of the registered tree.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UnitView {
    pub id: UnitId,
    pub kind: UnitKind,
    pub name: String,
    pub parent: Option<UnitId>,
    /// The registration in force; `None` for the top unit, which the genesis names.
    pub registration: Option<String>,
}

/// `POST /v1/admin/block` and `/unblock`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeerRequest {
    /// A libp2p peer id (`12D3KooW…`).
    pub peer: String,
}

/// The answer to an admin command: queued for the network loop, not yet done.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Accepted {
    pub accepted: String,
    pub peer: Option<String>,
}

// ----- query strings -----

/// `GET /v1/docs?kind=&unit=&period=`: every filter given must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DocFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<String>,
}

/// `GET /v1/attestations?doc=`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestationFilter {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub doc: Option<String>,
}

/// `GET /v1/docs/{id}/export?format=`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ExportFormat {
    /// `Document::save()`: loads with `automerge::AutoCommit::load`.
    #[default]
    Automerge,
    /// The typed state, as `GET /v1/docs/{id}/state` returns it.
    Json,
}

impl ExportFormat {
    /// The query-string value.
    pub fn as_str(self) -> &'static str {
        match self {
            ExportFormat::Automerge => "automerge",
            ExportFormat::Json => "json",
        }
    }
}

/// `GET /v1/docs/{id}/export` query.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportQuery {
    #[serde(default)]
    pub format: ExportFormat,
}
