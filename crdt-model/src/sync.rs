//! Signed Automerge sync, sans-io: turn a document and a per-peer state into the next message
//! to send, and a received message into an ingest.
//!
//! Framing is ours. Received bytes pass [`crate::wire::decode_sync_message`] (sizes, Bloom
//! parameters, compression, dependency counts) before Automerge parses anything, and their
//! changes pass [`Document::ingest`] before Automerge applies anything. Only V1 messages are
//! spoken: a V2 message may carry a whole compressed document whose changes could not be checked
//! one by one, so capability flags from peers are dropped and V2 is never negotiated.

use automerge::sync::{self, SyncDoc};

use crate::document::{Applied, Batch, ChangeSignature, Context, Document, Rejected};
use crate::genesis::NetworkId;
use crate::wire::{self, FrameError};

/// Change bytes carried by one sync message (well under the receiving side's
/// `wire::Limits::sync_message_bytes_max`, with room for the signatures beside it).
pub const SYNC_CHANGE_BYTES_MAX: usize = 2 * 1024 * 1024;

/// A message for one peer about one document: the Automerge sync message and the signatures
/// of the changes it carries.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub message: Vec<u8>,
    pub signatures: Vec<ChangeSignature>,
    /// Number of changes carried.
    pub n_changes: usize,
}

impl From<FrameError> for Rejected {
    fn from(e: FrameError) -> Rejected {
        Rejected::Malformed(e.to_string())
    }
}

impl Document {
    /// The next message for a peer, or `None` if there is nothing to say. Carries at most
    /// [`SYNC_CHANGE_BYTES_MAX`] of changes; the rest follow in later rounds.
    pub fn generate_sync(&mut self, state: &mut sync::State) -> Option<Outgoing> {
        self.generate_sync_within(state, SYNC_CHANGE_BYTES_MAX)
    }

    /// [`Document::generate_sync`] with an explicit budget of change bytes per message.
    /// Automerge would put every missing change in one message — for a month's visit log synced
    /// cold, more than a peer accepts — so what does not fit is taken back out of the message
    /// and out of `sent_hashes`, and goes in the next round.
    pub fn generate_sync_within(
        &mut self,
        state: &mut sync::State,
        change_bytes_max: usize,
    ) -> Option<Outgoing> {
        let before = state.sent_hashes.clone();
        let mut msg = self.automerge_mut().sync().generate_sync_message(state)?;
        let total: usize = msg.changes.iter().map(<[u8]>::len).sum();
        if total > change_bytes_max && msg.changes.len() > 1 {
            let mut kept: Vec<Vec<u8>> = Vec::new();
            let mut size = 0;
            let mut full = false;
            for chunk in msg.changes.iter() {
                full = full || (!kept.is_empty() && size + chunk.len() > change_bytes_max);
                if full {
                    // Our own change: it parses. Not sent, so not "sent".
                    if let Ok(c) = automerge::Change::from_bytes(chunk.to_vec()) {
                        state.sent_hashes.remove(&c.hash());
                    }
                } else {
                    size += chunk.len();
                    kept.push(chunk.to_vec());
                }
            }
            msg.changes = sync::ChunkList::from(kept);
        }
        let signatures: Vec<ChangeSignature> = state
            .sent_hashes
            .difference(&before)
            .filter_map(|h| self.signature(h).cloned())
            .collect();
        let n_changes = msg.changes.len();
        // Without flags, so no peer is ever invited to answer in V2.
        let message = wire::encode_sync_message(msg).ok()?;
        Some(Outgoing {
            message,
            signatures,
            n_changes,
        })
    }

    /// Take a peer's message: validate the frame, ingest its changes (all or nothing), then let
    /// Automerge update the per-peer state.
    pub fn receive_sync(
        &mut self,
        ctx: &Context<'_>,
        state: &mut sync::State,
        network: NetworkId,
        bytes: &[u8],
        signatures: Vec<ChangeSignature>,
        limits: &wire::Limits,
    ) -> Result<Applied, Rejected> {
        let decoded = wire::decode_sync_message(bytes, limits)?;
        let applied = self.ingest(
            ctx,
            Batch {
                network: Some(network),
                changes: decoded.changes,
                signatures,
            },
        )?;
        let mut message = decoded.message;
        message.changes = sync::ChunkList::empty();
        message.flags = None;
        self.automerge_mut()
            .sync()
            .receive_sync_message(state, message)
            .map_err(|e| Rejected::Malformed(e.to_string()))?;
        Ok(applied)
    }
}
