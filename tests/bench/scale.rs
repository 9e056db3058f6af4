//! Scale: a district node ingesting a city month, in a child process so its peak RSS is the
//! node's and not the generator's.
//!
//! The parent writes the month to a file; the child (`linli-bench scale-child`) reads it one
//! document at a time and does what `Engine::sync_in` does with a cold sync message: check and
//! ingest the changes, then persist them through the engine's own `persist_applied` (a batch
//! past the node's default `compact_after_changes` is written as a snapshot with its signatures,
//! flushed, and the live document is reloaded from it), and keep the document in memory. Then
//! it reopens the store and loads every document, as a restart does.

use std::io::{BufReader, BufWriter, Read, Write};
use std::path::Path;
use std::time::Instant;

use anyhow::Context as _;
use automerge::Change;
use linli_crdt_model::doc::SignedHeader;
use linli_crdt_model::document::{Batch, ChangeSignature, Document};
use linli_node::config::Config;
use linli_node::engine::persist_applied;
use linli_node::store::Store;
use serde::{Deserialize, Serialize};

use crate::data::{DocData, Fixture};
use crate::measure::{cpu_seconds, peak_rss_bytes};
use crate::sync::Verifiable;

#[derive(Serialize, Deserialize)]
struct Record {
    header: SignedHeader,
    changes: Vec<Vec<u8>>,
    signatures: Vec<ChangeSignature>,
}

/// Write the documents for the child, one length-prefixed postcard record each.
pub(crate) fn write(path: &Path, docs: &[DocData]) -> anyhow::Result<()> {
    let mut w = BufWriter::new(
        std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
    );
    for d in docs {
        let bytes = postcard::to_allocvec(&Record {
            header: d.header.clone(),
            changes: d.changes.clone(),
            signatures: d.signatures.clone(),
        })?;
        w.write_all(&(bytes.len() as u64).to_le_bytes())?;
        w.write_all(&bytes)?;
    }
    w.flush()?;
    Ok(())
}

/// What the child reports.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Report {
    pub(crate) n_docs: usize,
    pub(crate) n_changes: usize,
    pub(crate) raw_change_bytes: u64,
    pub(crate) ingest_seconds: f64,
    pub(crate) ingest_cpu_seconds: f64,
    /// Signatures per second by `ed25519_dalek::verify_batch` on one document, in the child.
    pub(crate) verify_rate: f64,
    pub(crate) store_bytes: u64,
    pub(crate) restart_seconds: f64,
    pub(crate) peak_rss_bytes: u64,
}

/// The child: ingest every document of `data` into a fresh store in `store_dir`.
pub(crate) fn child(
    seed: u64,
    n_communities: usize,
    data: &Path,
    store_dir: &Path,
) -> anyhow::Result<()> {
    let fx = Fixture::new(seed, n_communities);
    let compact_after = Config::new(fx.district.id.clone())
        .sync
        .compact_after_changes;
    let store = Store::open(store_dir, fx.network())?;
    let mut r = BufReader::new(
        std::fs::File::open(data).with_context(|| format!("opening {}", data.display()))?,
    );
    let mut docs = Vec::new();
    let (mut n_changes, mut raw) = (0usize, 0u64);
    let (mut wall, mut cpu) = (0.0, 0.0);
    let mut verify_rate = 0.0;
    loop {
        let mut len = [0u8; 8];
        match r.read_exact(&mut len) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(e.into()),
        }
        let mut buf = vec![0u8; u64::from_le_bytes(len) as usize];
        r.read_exact(&mut buf)?;
        let rec: Record = postcard::from_bytes(&buf)?;
        drop(buf);
        if docs.is_empty() {
            let d = DocData {
                header: rec.header.clone(),
                changes: rec.changes.clone(),
                signatures: rec.signatures.clone(),
                extra: (Vec::new(), rec.signatures[0].clone()),
            };
            let v = Verifiable::new(&fx, &d);
            let start = Instant::now();
            assert!(v.dalek_batch());
            verify_rate = rec.signatures.len() as f64 / start.elapsed().as_secs_f64();
        }
        n_changes += rec.changes.len();
        raw += rec.changes.iter().map(|c| c.len() as u64).sum::<u64>();

        let (t0, c0) = (Instant::now(), cpu_seconds());
        let changes = rec
            .changes
            .iter()
            .map(|b| Change::from_bytes(b.clone()))
            .collect::<Result<Vec<_>, _>>()?;
        let mut doc = Document::empty(rec.header.clone(), automerge::ActorId::random());
        let applied = doc
            .ingest(
                &fx.ctx(),
                Batch {
                    network: Some(fx.network()),
                    changes,
                    signatures: rec.signatures,
                },
            )
            .map_err(|e| anyhow::anyhow!("ingest refused: {e}"))?;
        store.put_header(&rec.header)?;
        // Exactly what `Engine::persist_remote` does with the applied changes: a batch this
        // large goes straight into a snapshot, and the document is reloaded from it.
        persist_applied(&store, &mut doc, &applied.new, 0, compact_after)?;
        docs.push(doc);
        wall += t0.elapsed().as_secs_f64();
        cpu += cpu_seconds() - c0;
    }
    store.flush()?;
    let store_bytes = store.size_on_disk()?;
    let n_docs = docs.len();
    drop(docs);
    drop(store);

    let start = Instant::now();
    let store = Store::open(store_dir, fx.network())?;
    let mut loaded = Vec::new();
    for s in store.load_docs()? {
        loaded.push(
            Document::load(
                s.header,
                &s.bytes,
                s.signatures,
                automerge::ActorId::random(),
            )
            .map_err(|e| anyhow::anyhow!("reload: {e}"))?,
        );
    }
    let restart_seconds = start.elapsed().as_secs_f64();
    anyhow::ensure!(loaded.len() == n_docs, "restart lost documents");

    let report = Report {
        n_docs,
        n_changes,
        raw_change_bytes: raw,
        ingest_seconds: wall,
        ingest_cpu_seconds: cpu,
        verify_rate,
        store_bytes,
        restart_seconds,
        peak_rss_bytes: peak_rss_bytes(),
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}

/// Run the child on `docs` and read its report.
pub(crate) fn run(seed: u64, n_communities: usize, docs: &[DocData]) -> anyhow::Result<Report> {
    let dir = tempfile::tempdir()?;
    let data = dir.path().join("month.bin");
    write(&data, docs)?;
    let exe = std::env::current_exe()?;
    let out = std::process::Command::new(exe)
        .args([
            "scale-child",
            "--seed",
            &seed.to_string(),
            "--communities",
            &n_communities.to_string(),
            "--data",
        ])
        .arg(&data)
        .arg("--store")
        .arg(dir.path().join("store"))
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "scale child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let line = String::from_utf8(out.stdout)?;
    Ok(serde_json::from_str(line.trim())?)
}
