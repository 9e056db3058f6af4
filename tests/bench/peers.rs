//! R3: samod (the Rust automerge-repo) against linli, both in memory in this process, syncing
//! the same documents cold and then one new record in each.
//!
//! samod runs as it is meant to: two `Repo`s on the tokio runtime, connected by a pair of bounded
//! in-process channels that count every frame. linli runs at the level of its model with the
//! node's framing: two sets of `Document`s, every message encoded as the node's
//! `protocol::Request::Sync` in CBOR, decoded on the other side, its header checked, validated by
//! `wire` and ingested. No sled, no libp2p, so neither side pays for storage or a real transport.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use automerge::sync::{self as am_sync};
use automerge::{Automerge, Change, ChangeHash};
use futures::StreamExt;
use futures::future::BoxFuture;
use linli_crdt_model::doc::DocId;
use linli_crdt_model::document::{Batch, Document};
use linli_crdt_model::wire;
use linli_node::protocol;
use samod::{AcceptorHandle, BackoffConfig, DialError, Dialer, Repo, Transport, Url};

use crate::data::{DocData, Fixture};
use crate::measure::cpu_seconds;

/// Frames and bytes through the channel pair, both ways.
#[derive(Debug, Default)]
struct Counter {
    frames: AtomicU64,
    bytes: AtomicU64,
}

struct CountingDialer {
    acceptor: AcceptorHandle,
    counter: Arc<Counter>,
}

fn counted(
    rx: futures::channel::mpsc::Receiver<Vec<u8>>,
    counter: Arc<Counter>,
) -> impl futures::Stream<Item = Result<Vec<u8>, Infallible>> + Send + Unpin + 'static {
    rx.map(move |frame| {
        counter.frames.fetch_add(1, Ordering::Relaxed);
        counter
            .bytes
            .fetch_add(frame.len() as u64, Ordering::Relaxed);
        Ok(frame)
    })
}

impl Dialer for CountingDialer {
    type Error = Infallible;

    fn url(&self) -> Url {
        Url::parse("bench://district").expect("static url")
    }

    fn connect(&self) -> BoxFuture<'static, Result<Transport, DialError<Infallible>>> {
        let acceptor = self.acceptor.clone();
        let counter = self.counter.clone();
        Box::pin(async move {
            // Bounded both ways, as a real socket is.
            let (to_acceptor, acceptor_rx) = futures::channel::mpsc::channel::<Vec<u8>>(256);
            let (to_dialer, dialer_rx) = futures::channel::mpsc::channel::<Vec<u8>>(256);
            acceptor
                .accept(Transport::new(
                    counted(acceptor_rx, counter.clone()),
                    to_dialer,
                ))
                .map_err(DialError::transient)?;
            Ok(Transport::new(counted(dialer_rx, counter), to_acceptor))
        })
    }
}

/// One run of one arm: the cold sync, then the update.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Run {
    pub(crate) cold_cpu: f64,
    pub(crate) cold_wall: f64,
    pub(crate) update_cpu: f64,
    pub(crate) update_wall: f64,
    pub(crate) bytes: u64,
    pub(crate) messages: u64,
}

/// What both arms start from: each document's saved bytes, its final heads, and the extra visit.
pub(crate) struct Input {
    pub(crate) saved: Vec<Vec<u8>>,
    pub(crate) extra: Vec<Change>,
}

impl Input {
    pub(crate) fn new(docs: &[DocData]) -> Input {
        Input {
            saved: docs.iter().map(DocData::saved).collect(),
            extra: docs
                .iter()
                .map(|d| Change::from_bytes(d.extra.0.clone()).expect("extra decodes"))
                .collect(),
        }
    }
}

async fn wait_heads(handle: &samod::DocHandle, want: &[ChangeHash]) {
    let mut want = want.to_vec();
    want.sort();
    let mut changes = handle.changes();
    loop {
        let mut heads = handle.with_document(|d| d.get_heads());
        heads.sort();
        if heads == want {
            return;
        }
        let _ = tokio::time::timeout(Duration::from_millis(5), changes.next()).await;
    }
}

pub(crate) fn samod_run(rt: &tokio::runtime::Runtime, input: &Input) -> Run {
    rt.block_on(async {
        let a = Repo::build_tokio().load().await;
        let b = Repo::build_tokio().load().await;
        let mut held = Vec::new();
        for saved in &input.saved {
            let doc = Automerge::load(saved).expect("saved document loads");
            let heads = doc.get_heads();
            held.push((a.create(doc).await.expect("repo running"), heads));
        }
        let counter = Arc::new(Counter::default());
        let acceptor = a
            .make_acceptor(Url::parse("bench://district").expect("static url"))
            .expect("repo running");

        let (cpu0, t0) = (cpu_seconds(), Instant::now());
        let dialer = b
            .dial(
                BackoffConfig::default(),
                Arc::new(CountingDialer {
                    acceptor,
                    counter: counter.clone(),
                }),
            )
            .expect("repo running");
        dialer.established().await.expect("in-process connection");
        let found =
            futures::future::join_all(held.iter().map(|(h, _)| b.find(h.document_id().clone())))
                .await;
        let mut theirs = Vec::new();
        for (f, (_, heads)) in found.into_iter().zip(&held) {
            let handle = f.expect("repo running").expect("peer has the document");
            wait_heads(&handle, heads).await;
            theirs.push(handle);
        }
        let (cold_cpu, cold_wall) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());

        let (cpu1, t1) = (cpu_seconds(), Instant::now());
        let mut want = Vec::new();
        for ((h, _), extra) in held.iter().zip(&input.extra) {
            want.push(h.with_document(|d| {
                d.apply_changes([extra.clone()]).expect("extra applies");
                d.get_heads()
            }));
        }
        for (handle, heads) in theirs.iter().zip(&want) {
            wait_heads(handle, heads).await;
        }
        let (update_cpu, update_wall) = (cpu_seconds() - cpu1, t1.elapsed().as_secs_f64());
        let run = Run {
            cold_cpu,
            cold_wall,
            update_cpu,
            update_wall,
            bytes: counter.bytes.load(Ordering::Relaxed),
            messages: counter.frames.load(Ordering::Relaxed),
        };
        a.stop().await;
        b.stop().await;
        run
    })
}

/// One side of linli's sync: its documents and per-document sync states.
struct Side {
    docs: HashMap<DocId, Document>,
    states: HashMap<DocId, am_sync::State>,
    /// The peer holds the document (we sent its header or it sent us one).
    known: HashMap<DocId, bool>,
}

impl Side {
    fn outgoing(&mut self, id: DocId) -> Option<Vec<u8>> {
        let doc = self.docs.get_mut(&id)?;
        let state = self.states.entry(id).or_default();
        let out = doc.generate_sync(state)?;
        let known = self.known.entry(id).or_insert(false);
        let msg = protocol::SyncMessage {
            doc: id,
            header: (!*known).then(|| doc.header().clone()),
            message: Some(out.message),
            signatures: out.signatures,
            certificates: Vec::new(),
            registrations: Vec::new(),
            attestations: Vec::new(),
            set_aside: Vec::new(),
        };
        *known = true;
        Some(
            cbor4ii::serde::to_vec(Vec::new(), &protocol::Request::Sync(Box::new(msg)))
                .expect("cbor encodes"),
        )
    }

    fn incoming(&mut self, fx: &Fixture, limits: &wire::Limits, bytes: &[u8]) -> DocId {
        let req: protocol::Request = cbor4ii::serde::from_slice(bytes).expect("cbor decodes");
        let protocol::Request::Sync(msg) = req else {
            panic!("only sync messages here")
        };
        let id = msg.doc;
        if let std::collections::hash_map::Entry::Vacant(slot) = self.docs.entry(id) {
            let header = msg.header.clone().expect("first message has the header");
            assert_eq!(header.id(), id);
            header
                .check_signed(&fx.trust)
                .expect("header is signed by a writer");
            slot.insert(Document::empty(header, automerge::ActorId::random()));
            self.known.insert(id, true);
        }
        let state = self.states.entry(id).or_default();
        self.docs
            .get_mut(&id)
            .expect("inserted above")
            .receive_sync(
                &fx.ctx(),
                state,
                fx.network(),
                msg.message.as_deref().expect("a message"),
                &msg.signatures,
                limits,
            )
            .expect("honest sync is accepted");
        id
    }
}

/// Sync every document in `ids` between `a` and `b` until neither has anything to say, one
/// request/response exchange per document per round, as the node's sessions do.
fn drive(fx: &Fixture, a: &mut Side, b: &mut Side, ids: &[DocId], bytes: &mut u64, n: &mut u64) {
    let limits = wire::Limits::default();
    let mut pending: Vec<DocId> = ids.to_vec();
    while !pending.is_empty() {
        let mut next = Vec::new();
        for id in pending {
            let mut busy = false;
            if let Some(m) = a.outgoing(id) {
                *bytes += m.len() as u64;
                *n += 1;
                b.incoming(fx, &limits, &m);
                busy = true;
            }
            if let Some(m) = b.outgoing(id) {
                *bytes += m.len() as u64;
                *n += 1;
                a.incoming(fx, &limits, &m);
                busy = true;
            }
            if busy {
                next.push(id);
            }
        }
        pending = next;
    }
}

/// The sending side's documents, built once and cloned for each run.
pub(crate) fn full_docs(docs: &[DocData]) -> HashMap<DocId, Document> {
    docs.iter()
        .map(|d| (d.id(), d.full(automerge::ActorId::random())))
        .collect()
}

pub(crate) fn linli_run(
    fx: &Fixture,
    docs: &[DocData],
    full: &HashMap<DocId, Document>,
    input: &Input,
) -> Run {
    let mut a = Side {
        docs: full.clone(),
        states: HashMap::new(),
        known: HashMap::new(),
    };
    let mut b = Side {
        docs: HashMap::new(),
        states: HashMap::new(),
        known: HashMap::new(),
    };
    let ids: Vec<DocId> = docs.iter().map(DocData::id).collect();
    let (mut bytes, mut n) = (0, 0);

    let (cpu0, t0) = (cpu_seconds(), Instant::now());
    drive(fx, &mut a, &mut b, &ids, &mut bytes, &mut n);
    let (cold_cpu, cold_wall) = (cpu_seconds() - cpu0, t0.elapsed().as_secs_f64());

    let (cpu1, t1) = (cpu_seconds(), Instant::now());
    for ((d, id), extra) in docs.iter().zip(&ids).zip(&input.extra) {
        a.docs
            .get_mut(id)
            .expect("held")
            .ingest(
                &fx.ctx(),
                Batch {
                    network: Some(fx.network()),
                    changes: vec![extra.clone()],
                    signatures: vec![d.extra.1.clone()],
                },
            )
            .expect("extra visit is accepted");
    }
    drive(fx, &mut a, &mut b, &ids, &mut bytes, &mut n);
    let (update_cpu, update_wall) = (cpu_seconds() - cpu1, t1.elapsed().as_secs_f64());
    for id in &ids {
        assert_eq!(
            a.docs.get_mut(id).expect("held").heads(),
            b.docs.get_mut(id).expect("synced").heads()
        );
    }
    Run {
        cold_cpu,
        cold_wall,
        update_cpu,
        update_wall,
        bytes,
        messages: n,
    }
}
