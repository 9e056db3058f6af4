//! The in-memory arms: plain Automerge sync and linli's signed sync between two replicas in one
//! thread (R1, R3's linli side, R7), ingest and raw batch verification (R2).

use std::time::Instant;

use automerge::sync::{self, Message, SyncDoc};
use automerge::{AutoCommit, Change};
use linli_crdt_model::document::{Batch, ChangeSignature, Document};
use linli_crdt_model::keys::{self, PublicKey, Signature};
use linli_crdt_model::wire;
use linli_node::protocol;

use crate::data::{DocData, Fixture, signed_message};

/// What one sync moved. None of it varies between runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Traffic {
    pub(crate) messages: usize,
    /// Rounds in which either side still had something to say.
    pub(crate) round_trips: usize,
    /// Automerge sync message bytes, both ways.
    pub(crate) message_bytes: usize,
    /// Signatures as postcard, both ways (linli only).
    pub(crate) signature_bytes: usize,
    pub(crate) changes: usize,
}

impl Traffic {
    pub(crate) fn bytes(&self) -> usize {
        self.message_bytes + self.signature_bytes
    }
}

/// Plain Automerge sync from `full` to an empty document. `v1_only` drops the flags so neither
/// side switches to V2 messages, as linli does; without it Automerge negotiates V2.
pub(crate) fn raw_sync(full: &mut AutoCommit, v1_only: bool) -> (Traffic, AutoCommit) {
    let mut empty = AutoCommit::new();
    let (mut sa, mut sb) = (sync::State::new(), sync::State::new());
    let mut t = Traffic::default();
    let pass = |from: &mut AutoCommit,
                sf: &mut sync::State,
                to: &mut AutoCommit,
                st: &mut sync::State,
                t: &mut Traffic|
     -> bool {
        let Some(mut m) = from.sync().generate_sync_message(sf) else {
            return false;
        };
        if v1_only {
            m.flags = None;
        }
        t.changes += m.changes.len();
        let bytes = m.encode();
        t.messages += 1;
        t.message_bytes += bytes.len();
        let m = Message::decode(&bytes).expect("own message decodes");
        to.sync()
            .receive_sync_message(st, m)
            .expect("honest message applies");
        true
    };
    loop {
        let a = pass(full, &mut sa, &mut empty, &mut sb, &mut t);
        let b = pass(&mut empty, &mut sb, full, &mut sa, &mut t);
        if !(a || b) {
            break;
        }
        t.round_trips += 1;
    }
    (t, empty)
}

/// linli's signed sync from `full` to an empty replica: every message validated by `wire`, every
/// change by `Document::ingest`. `on_message` sees each outgoing message (for CBOR sizes).
pub(crate) fn linli_sync(
    fx: &Fixture,
    full: &mut Document,
    limits: &wire::Limits,
    mut on_message: impl FnMut(bool, &linli_crdt_model::sync::Outgoing),
) -> (Traffic, Document) {
    let mut empty = Document::empty(full.header().clone(), automerge::ActorId::random());
    let (mut sa, mut sb) = (sync::State::new(), sync::State::new());
    let network = fx.network();
    let ctx = fx.ctx();
    let mut t = Traffic::default();
    loop {
        let mut quiet = true;
        for forward in [true, false] {
            let (from, sf, to, st) = if forward {
                (&mut *full, &mut sa, &mut empty, &mut sb)
            } else {
                (&mut empty, &mut sb, &mut *full, &mut sa)
            };
            if let Some(out) = from.generate_sync(sf) {
                on_message(forward, &out);
                t.messages += 1;
                t.changes += out.n_changes;
                t.message_bytes += out.message.len();
                t.signature_bytes += postcard::to_allocvec(&out.signatures)
                    .expect("signatures encode")
                    .len();
                to.receive_sync(&ctx, st, network, &out.message, &out.signatures, limits)
                    .expect("honest sync is accepted");
                quiet = false;
            }
        }
        if quiet {
            break;
        }
        t.round_trips += 1;
    }
    (t, empty)
}

/// Bytes of linli's sync as the node frames it (`protocol::Request::Sync`, CBOR through libp2p's
/// codec), and of the same Automerge messages in the same framing without signatures,
/// header or certificates.
pub(crate) fn cbor_bytes(fx: &Fixture, d: &DocData) -> (usize, usize) {
    let mut full = d.full(automerge::ActorId::random());
    let mut signed = 0;
    let mut bare = 0;
    let mut first = [true, true];
    let id = d.id();
    linli_sync(fx, &mut full, &wire::Limits::default(), |forward, out| {
        let i = usize::from(!forward);
        let authors: std::collections::BTreeSet<PublicKey> =
            out.signatures.authors().iter().copied().collect();
        let certificates = if first[i] {
            authors
                .iter()
                .flat_map(|a| fx.trust.chain_of(a))
                .collect::<Vec<_>>()
        } else {
            Vec::new()
        };
        let msg = protocol::SyncMessage {
            doc: id,
            header: (forward && first[i]).then(|| d.header.clone()),
            message: Some(out.message.clone()),
            signatures: out.signatures.clone(),
            certificates,
            registrations: Vec::new(),
            attestations: Vec::new(),
            set_aside: Vec::new(),
        };
        first[i] = false;
        let req = protocol::Request::Sync(Box::new(msg.clone()));
        signed += cbor4ii::serde::to_vec(Vec::new(), &req)
            .expect("cbor")
            .len();
        let plain = protocol::Request::Sync(Box::new(protocol::SyncMessage {
            header: None,
            signatures: Default::default(),
            certificates: Vec::new(),
            ..msg
        }));
        bare += cbor4ii::serde::to_vec(Vec::new(), &plain)
            .expect("cbor")
            .len();
    });
    (signed, bare)
}

/// The signed messages of a document's changes, ready for raw ed25519.
pub(crate) struct Verifiable {
    pub(crate) messages: Vec<Vec<u8>>,
    pub(crate) keys: Vec<ed25519_dalek::VerifyingKey>,
    pub(crate) sigs: Vec<ed25519_dalek::Signature>,
    pub(crate) linli: Vec<(PublicKey, Signature)>,
}

impl Verifiable {
    pub(crate) fn new(fx: &Fixture, d: &DocData) -> Verifiable {
        let sigs: &[ChangeSignature] = &d.signatures;
        let messages: Vec<Vec<u8>> = sigs
            .iter()
            .map(|s| signed_message(fx.network(), d.id(), s.hash))
            .collect();
        let v = Verifiable {
            keys: sigs
                .iter()
                .map(|s| ed25519_dalek::VerifyingKey::from_bytes(&s.author.0).expect("key"))
                .collect(),
            sigs: sigs
                .iter()
                .map(|s| ed25519_dalek::Signature::from_bytes(&s.signature.0))
                .collect(),
            linli: sigs.iter().map(|s| (s.author, s.signature)).collect(),
            messages,
        };
        assert!(v.dalek_batch(), "reconstructed signed messages must verify");
        v
    }

    /// ed25519-dalek's batch verification over every signature: the crypto limit.
    pub(crate) fn dalek_batch(&self) -> bool {
        let msgs: Vec<&[u8]> = self.messages.iter().map(Vec::as_slice).collect();
        ed25519_dalek::verify_batch(&msgs, &self.sigs, &self.keys).is_ok()
    }

    /// `keys::verify_many`, as ingest calls it.
    pub(crate) fn linli_many(&self) -> bool {
        let items: Vec<(PublicKey, &[u8], Signature)> = self
            .linli
            .iter()
            .zip(&self.messages)
            .map(|((k, s), m)| (*k, m.as_slice(), *s))
            .collect();
        keys::verify_many(&items).is_ok()
    }
}

/// Ingest every change of `d` into an empty replica in batches of `batch`; seconds.
pub(crate) fn ingest(fx: &Fixture, d: &DocData, changes: &[Change], batch: usize) -> f64 {
    let batches: Vec<Batch> = changes
        .chunks(batch)
        .zip(d.signatures.chunks(batch))
        .map(|(c, s)| Batch {
            network: Some(fx.network()),
            changes: c.to_vec(),
            signatures: s.to_vec(),
        })
        .collect();
    let mut doc = Document::empty(d.header.clone(), automerge::ActorId::random());
    let ctx = fx.ctx();
    let start = Instant::now();
    for b in batches {
        doc.ingest(&ctx, b).expect("generated batch is accepted");
    }
    let t = start.elapsed().as_secs_f64();
    assert_eq!(doc.n_changes(), d.changes.len());
    t
}

/// Seconds for `f`.
pub(crate) fn time<T>(f: impl FnOnce() -> T) -> (f64, T) {
    let start = Instant::now();
    let out = f();
    (start.elapsed().as_secs_f64(), out)
}
