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
    /// The next message for a peer, or `None` if there is nothing to say.
    pub fn generate_sync(&mut self, state: &mut sync::State) -> Option<Outgoing> {
        let before = state.sent_hashes.clone();
        let msg = self.automerge_mut().sync().generate_sync_message(state)?;
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
