//! The wire protocol between nodes: `/linli/sync/3`, request-response over libp2p, CBOR-framed
//! with size limits on both directions.
//!
//! 1. **Hello** first, both ways: network id, protocol version, the node's unit and certificate
//!    chain, with the registrations that place those certificates in the unit tree. A peer of another network, or whose libp2p key is not a certified node key, is
//!    refused with the reason and disconnected.
//! 2. **Inventory**: the documents the receiver may hold, with their heads. Sent after hello and
//!    every anti-entropy interval; it tells each side which documents need a sync session.
//! 3. **Sync**: one Automerge sync message about one document, with the signatures of the changes
//!    it carries, the certificates that prove their authors (and the registrations of the units
//!    those name) and — for task lists — the
//!    attestations their admitted tasks rely on. The reply is the receiver's next message.
//!
//! Gossipsub (topic `linli/<network>/heads`) carries [`Announce`]: new heads of a document, so a
//! change made at a community reaches its street and district without waiting for anti-entropy.

use linli_crdt_model::attest::Attestation;
use linli_crdt_model::cert::{Certificate, Registration};
use linli_crdt_model::doc::{DocId, SignedHeader};
use linli_crdt_model::genesis::NetworkId;
use linli_crdt_model::sync::Signatures;
use linli_crdt_model::unit::UnitId;
use serde::{Deserialize, Serialize};

/// Request-response protocol name; the version is in the name so old and new nodes do not
/// misread each other.
pub const PROTOCOL: &str = "/linli/sync/4";
pub const PROTOCOL_VERSION: u32 = 4;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
    Hello(Hello),
    Inventory(Inventory),
    Sync(Box<SyncMessage>),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Response {
    Hello(Hello),
    Inventory(Inventory),
    Sync(Box<SyncMessage>),
    /// The request was refused; `reason` is a stable label (`bad-signature`, `out-of-scope`…).
    Rejected {
        reason: String,
        detail: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Hello {
    pub network: NetworkId,
    pub protocol_version: u32,
    pub unit: UnitId,
    /// The node key's certificate and those above it.
    pub chain: Vec<Certificate>,
    /// The registrations of the units `chain` names and the units above them.
    #[serde(default)]
    pub registrations: Vec<Registration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InventoryEntry {
    pub doc: DocId,
    pub heads: Vec<[u8; 32]>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Inventory {
    pub docs: Vec<InventoryEntry>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SyncMessage {
    pub doc: DocId,
    /// Sent until the peer is known to hold the document.
    pub header: Option<SignedHeader>,
    /// An Automerge sync message, or `None` when the sender has nothing more to say. A byte
    /// string on the wire, not an array of numbers.
    #[serde(with = "serde_bytes")]
    pub message: Option<Vec<u8>>,
    /// Packed: in the order of the carried changes' hashes, authors by index (version 2).
    pub signatures: Signatures,
    pub certificates: Vec<Certificate>,
    /// The registrations of the units `certificates` name and the units above them.
    #[serde(default)]
    pub registrations: Vec<Registration>,
    pub attestations: Vec<Attestation>,
    /// The changes of the peer's last message about this document that the sender set aside,
    /// and why (at most as many as that message carried): so its operator can see what did
    /// not get through, and why, without it counting against anyone.
    #[serde(default)]
    pub set_aside: Vec<SetAsideNote>,
}

/// One change set aside, as told to the peer that sent it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetAsideNote {
    pub change: [u8; 32],
    /// The stable reason label (`revoked`, `equivocation`…).
    pub reason: String,
}

/// New heads of a document, announced over gossipsub.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Announce {
    pub doc: DocId,
    pub unit: UnitId,
    pub heads: Vec<[u8; 32]>,
}

/// The gossipsub topic of a network.
pub fn topic(network: &NetworkId) -> String {
    format!("linli/{}/heads", network.short())
}
