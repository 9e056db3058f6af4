//! Signed Automerge sync, sans-io: turn a document and a per-peer state into the next message
//! to send, and a received message into an ingest.
//!
//! Framing is ours. Received bytes pass [`crate::wire::decode_sync_message`] (sizes, Bloom
//! parameters, compression, dependency counts) before Automerge parses anything, and their
//! changes pass [`Document::ingest`] before Automerge applies anything. Only V1 messages are
//! spoken: a V2 message may carry a whole compressed document whose changes could not be checked
//! one by one, so capability flags from peers are dropped and V2 is never negotiated.

use std::collections::HashMap;

use automerge::ChangeHash;
use automerge::sync::{self, SyncDoc};
use serde::{Deserialize, Serialize};

use crate::document::{Applied, Batch, ChangeSignature, Context, Document, Rejected};
use crate::genesis::NetworkId;
use crate::keys::{PublicKey, Signature};
use crate::wire::{self, FrameError};

/// Change bytes carried by one sync message (well under the receiving side's
/// `wire::Limits::sync_message_bytes_max`, with room for the signatures beside it).
pub const SYNC_CHANGE_BYTES_MAX: usize = 2 * 1024 * 1024;

/// Hashes asked for in one message's `need` (well under the receiving side's
/// `wire::Limits::hashes_per_list_max`).
const NEED_MAX: usize = 64;

/// A message for one peer about one document: the Automerge sync message and the signatures
/// of the changes it carries.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub message: Vec<u8>,
    pub signatures: Signatures,
    /// Number of changes carried.
    pub n_changes: usize,
}

/// The signatures of the changes one sync message carries, as they travel.
///
/// A [`ChangeSignature`] names its change hash and its author in full: 128 bytes, which is 39%
/// on top of a ≈ 330-byte visit change. On the wire neither is needed in full. The receiver
/// computes every change's hash from the change itself, so the signatures travel in the order
/// of the carried changes' hashes, sorted, and each names its author by an index into the
/// message's table of distinct authors (ten writers sign a community's month). ≈ 65 bytes a
/// change. Packing changes nothing of what is checked: a signature paired with the wrong change
/// fails to verify, and the statement signed is still (network, document, change hash).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signatures {
    authors: Vec<PublicKey>,
    /// Per signature, the index of its author in `authors`.
    author_of: Vec<u32>,
    /// 64 bytes per signature, in the order of the signed changes' hashes.
    #[serde(with = "serde_bytes")]
    signatures: Vec<u8>,
}

impl Signatures {
    /// Pack the signatures of the changes a message carries.
    pub fn pack(sigs: impl IntoIterator<Item = ChangeSignature>) -> Signatures {
        let mut sigs: Vec<ChangeSignature> = sigs.into_iter().collect();
        sigs.sort_unstable_by_key(|s| s.hash);
        sigs.dedup_by_key(|s| s.hash);
        let mut index: HashMap<PublicKey, u32> = HashMap::new();
        let mut out = Signatures {
            authors: Vec::new(),
            author_of: Vec::with_capacity(sigs.len()),
            signatures: Vec::with_capacity(sigs.len() * 64),
        };
        for s in sigs {
            let i = *index.entry(s.author).or_insert_with(|| {
                out.authors.push(s.author);
                // Fewer authors than signatures, and a message carries far fewer than 2^32.
                u32::try_from(out.authors.len() - 1).unwrap_or(u32::MAX)
            });
            out.author_of.push(i);
            out.signatures.extend_from_slice(&s.signature.0);
        }
        out
    }

    /// Number of signatures.
    pub fn len(&self) -> usize {
        self.author_of.len()
    }

    pub fn is_empty(&self) -> bool {
        self.author_of.is_empty()
    }

    /// The distinct authors, for sending their certificates along.
    pub fn authors(&self) -> &[PublicKey] {
        &self.authors
    }

    /// Pair the signatures with the changes a message carried, by their hashes. Fewer
    /// signatures than changes leaves a change unsigned; more, or indices that do not fit, are
    /// malformed; whether each signature is good is for [`Document::ingest`] to judge.
    pub fn unpack(&self, hashes: &[ChangeHash]) -> Result<Vec<ChangeSignature>, Rejected> {
        let mut hashes = hashes.to_vec();
        hashes.sort_unstable();
        hashes.dedup();
        let malformed = |what: String| Rejected::Malformed(format!("signatures: {what}"));
        if self.signatures.len() != self.author_of.len() * 64 {
            return Err(malformed(format!(
                "{} signature bytes for {} authors named",
                self.signatures.len(),
                self.author_of.len()
            )));
        }
        // Signatures pair with the changes in hash order: the first change past the last
        // signature is unsigned.
        if self.len() < hashes.len() {
            return Err(Rejected::Unsigned {
                change: hashes[self.len()],
            });
        }
        if self.len() > hashes.len() {
            return Err(malformed(format!(
                "{} signatures for {} changes",
                self.len(),
                hashes.len()
            )));
        }
        hashes
            .iter()
            .zip(&self.author_of)
            .zip(self.signatures.chunks_exact(64))
            .map(|((hash, &i), sig)| {
                let author = usize::try_from(i)
                    .ok()
                    .and_then(|i| self.authors.get(i))
                    .ok_or_else(|| {
                        malformed(format!(
                            "author {i} named, {} in the table",
                            self.authors.len()
                        ))
                    })?;
                let mut signature = [0u8; 64];
                signature.copy_from_slice(sig);
                Ok(ChangeSignature {
                    hash: hash.0,
                    author: *author,
                    signature: Signature(signature),
                })
            })
            .collect()
    }
}

impl From<FrameError> for Rejected {
    /// A frame over a named limit is told apart from one that does not decode, so the metrics
    /// say which (both are the sender's own fault).
    fn from(e: FrameError) -> Rejected {
        let over = |what: &'static str, len: u64, max: u64| Rejected::LimitExceeded {
            what,
            len: usize::try_from(len).unwrap_or(usize::MAX),
            max: usize::try_from(max).unwrap_or(usize::MAX),
        };
        match e {
            FrameError::TooLarge { what, len, max } => over(what, len as u64, max as u64),
            FrameError::TooMany { what, count, max } => over(what, count, max as u64),
            FrameError::BloomTooManyEntries { entries, max } => {
                over("bloom filter entries", entries.into(), max.into())
            }
            FrameError::BloomTooManyBitsPerEntry {
                bits_per_entry,
                max,
            } => over(
                "bloom filter bits per entry",
                bits_per_entry.into(),
                max.into(),
            ),
            FrameError::BloomTooManyProbes { probes, max } => {
                over("bloom filter probes", probes.into(), max.into())
            }
            other => Rejected::Malformed(other.to_string()),
        }
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
        // Automerge panics on some states a peer can put it in (a zero-bit Bloom filter, which
        // `wire` refuses, is one); a panic here would take the node's network task with it. The
        // state is then dropped and the session starts afresh.
        let generated = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.automerge_mut().sync().generate_sync_message(state)
        }));
        let mut msg = match generated {
            Ok(msg) => msg?,
            Err(_) => {
                *state = sync::State::new();
                return None;
            }
        };
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
        // Automerge does not know the changes waiting here for a dependency (they are held
        // outside its queue): ask for what they miss.
        // Automerge's own first, then a share of ours.
        msg.need.truncate(NEED_MAX);
        let share = self.missing_share(NEED_MAX - msg.need.len());
        if !share.is_empty() {
            msg.need.extend(share);
            msg.need.sort();
            msg.need.dedup();
        }
        let n_changes = msg.changes.len();
        // What Automerge marked sent is what the message carries; if that ever differed, the
        // carried changes themselves say which they are.
        let mut hashes: Vec<ChangeHash> = state.sent_hashes.difference(&before).copied().collect();
        if hashes.len() != n_changes {
            hashes = msg
                .changes
                .iter()
                .filter_map(|c| automerge::Change::from_bytes(c.to_vec()).ok())
                .map(|c| c.hash())
                .collect();
        }
        let signatures = Signatures::pack(hashes.iter().filter_map(|h| self.signature(h).cloned()));
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
        signatures: &Signatures,
        limits: &wire::Limits,
    ) -> Result<Applied, Rejected> {
        let decoded = wire::decode_sync_message(bytes, limits)?;
        let hashes: Vec<ChangeHash> = decoded.changes.iter().map(|c| c.hash()).collect();
        let signatures = signatures.unpack(&hashes)?;
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
        // Under the same guard as apply: a panic is a refusal of the message, not of the node.
        let received = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            self.automerge_mut()
                .sync()
                .receive_sync_message(state, message)
        }));
        match received {
            Ok(r) => r.map_err(|e| Rejected::Malformed(e.to_string()))?,
            Err(_) => {
                *state = sync::State::new();
                return Err(Rejected::Malformed(
                    "Automerge panicked on the sync message's state".to_owned(),
                ));
            }
        }
        Ok(applied)
    }
}
