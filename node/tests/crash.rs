//! Crash test for the store (DESIGN.md, Storage): "a kill -9 at any moment loses no acknowledged
//! edit and leaves no half-applied change".
//!
//! `crash_keeps_every_acknowledged_edit` re-runs this test binary as a child that edits a visit
//! log in a loop (`child_writer`), persisting batches of edits as the engine does
//! (`persist_applied`: appended, or written straight into a snapshot), acknowledging each edit on
//! stdout once that has returned, and kills it with SIGKILL after a random delay. After every kill the store must
//! open, the document must load with a signature for every change and none without its change,
//! and every acknowledged entry must be in it.
//!
//! 50 runs by default; `LINLI_CRASH_RUNS=1000` for more. `LINLI_CRASH_SEED` replays a failure.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use automerge::{ActorId, ChangeHash};
use linli_crdt_model::document::Document;
use linli_crdt_model::kinds::{self, Kind, visits};
use linli_crdt_model::testkit::{self, DAY, Net, T0};
use linli_node::engine::persist_applied;
use linli_node::store::{Store, StoredDoc};

/// Set in the child: the data directory to write to.
const CHILD_DIR: &str = "LINLI_CRASH_CHILD";
/// Set in the child: a prefix that makes its entry ids and actor unique.
const CHILD_TAG: &str = "LINLI_CRASH_TAG";
/// Set in the child: the document's title (each document serves a few runs, so loading and
/// validating it stays cheap however many runs there are).
const CHILD_TITLE: &str = "LINLI_CRASH_TITLE";
const RUNS_DEFAULT: usize = 50;
const RUNS_PER_DOC: usize = 25;
/// Kills land uniformly in this window after the child starts: some during its start-up and
/// recovery, most in the middle of writes.
const KILL_AFTER_MS_MAX: u64 = 400;
/// The child's incremental log is compacted when it would reach this many changes.
const COMPACT_EVERY: usize = 7;
/// A child the parent forgot stops by itself.
const CHILD_LIFETIME_MAX: Duration = Duration::from_secs(60);

#[test]
fn crash_keeps_every_acknowledged_edit() {
    let runs = std::env::var("LINLI_CRASH_RUNS")
        .ok()
        .map(|s| s.parse::<usize>().expect("LINLI_CRASH_RUNS is a number"))
        .unwrap_or(RUNS_DEFAULT);
    let seed = std::env::var("LINLI_CRASH_SEED")
        .ok()
        .map(|s| s.parse::<u64>().expect("LINLI_CRASH_SEED is a number"))
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("clock after 1970")
                .as_nanos() as u64
        });
    eprintln!("crash test: {runs} runs, LINLI_CRASH_SEED={seed}");
    let mut rng = linli_crdt_model::testkit::Rng::new(seed);
    let started = Instant::now();
    let dir = tempfile::tempdir().expect("temp dir");
    let net = Net::new();
    let network = net.trust.network();

    // Every document created so far, with the entry ids acknowledged in it.
    let mut docs: Vec<(String, BTreeSet<String>)> = Vec::new();
    let (mut n_kills, mut n_acked, mut n_verified) = (0usize, 0usize, 0usize);
    for run in 0..runs {
        let fail =
            |what: &str| -> ! { panic!("run {run}: {what} (replay with LINLI_CRASH_SEED={seed})") };
        if run % RUNS_PER_DOC == 0 {
            let title = format!("胜利社区 2026-11 走访记录 {}", run / RUNS_PER_DOC);
            create_doc(dir.path(), &net, &title);
            docs.push((title, BTreeSet::new()));
        }
        let (title, acked) = docs.last_mut().expect("a document");
        let mut child = Command::new(std::env::current_exe().expect("test binary path"))
            .args(["--exact", "child_writer", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR, dir.path())
            .env(CHILD_TAG, format!("{seed:x}-{run}"))
            .env(CHILD_TITLE, &*title)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let reader = std::thread::spawn(move || {
            // Everything the child printed before it died, including libtest's own lines.
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .filter_map(|l| l.strip_prefix("ack ").map(str::to_owned))
                .collect::<Vec<_>>()
        });
        std::thread::sleep(Duration::from_millis(
            rng.below(KILL_AFTER_MS_MAX as usize + 1) as u64,
        ));
        match child.try_wait().expect("poll child") {
            None => {
                child.kill().expect("SIGKILL child");
                n_kills += 1;
            }
            Some(status) => fail(&format!("child exited by itself: {status}")),
        }
        child.wait().expect("reap child");
        let new = reader.join().expect("reader thread");
        n_acked += new.len();
        acked.extend(new);

        let store = Store::open(dir.path(), network)
            .unwrap_or_else(|e| fail(&format!("store does not reopen: {e}")));
        let check_all = run + 1 == runs || run % 10 == 9;
        for (i, (title, acked)) in docs.iter().enumerate() {
            if !check_all && i + 1 != docs.len() {
                continue;
            }
            let id = doc_id(&net, title);
            let stored = store
                .load_doc(&id)
                .unwrap_or_else(|e| fail(&format!("{title}: load_doc: {e}")))
                .unwrap_or_else(|| fail(&format!("{title}: header is gone")));
            if let Err(e) = check(stored, acked) {
                fail(&format!("{title}: {e}"));
            }
            n_verified += acked.len();
        }
    }
    let elapsed = started.elapsed();
    let n_entries: usize = docs.iter().map(|(_, a)| a.len()).sum();
    eprintln!(
        "crash test: {runs} runs, {n_kills} kills, {n_acked} edits acknowledged, all {n_entries} \
         present after the last kill ({n_verified} entry checks over all reopenings), \
         {:.1} s, LINLI_CRASH_SEED={seed}",
        elapsed.as_secs_f64()
    );
    assert_eq!(n_kills, runs);
    assert!(
        n_acked > 0,
        "no child ever acknowledged an edit: nothing was tested"
    );
}

/// The child: does nothing unless the parent set `LINLI_CRASH_CHILD`.
#[test]
fn child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR) else {
        return;
    };
    let tag = std::env::var(CHILD_TAG).expect("child tag");
    let title = std::env::var(CHILD_TITLE).expect("child title");
    let net = Net::new();
    let store = Store::open(Path::new(&dir), net.trust.network()).expect("child opens store");
    let id = doc_id(&net, &title);
    let stored = store.load_doc(&id).expect("load").expect("doc created");
    let mut doc = Document::load(stored.header, &stored.bytes, stored.signatures, actor(&tag))
        .expect("child loads doc");
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    let mut n_incremental = stored.n_incremental;
    for i in 0.. {
        if started.elapsed() > CHILD_LIFETIME_MAX {
            return;
        }
        // Batches of 1–4 edits, persisted as the engine persists a batch: one log entry with
        // one signature pack, or straight into a snapshot once the log would reach
        // `COMPACT_EVERY` changes (then the live document is reloaded from it).
        let ids: Vec<String> = (0..1 + i % 4).map(|j| format!("{tag}-{i}-{j}")).collect();
        let mut new = Vec::new();
        for (j, entry_id) in ids.iter().enumerate() {
            let at_ms = T0 + 1_000 + i64::try_from(i * 4 + j).expect("small");
            let entry = testkit::visit("h1", "王芳", "2026-11-02", at_ms);
            let (_, sig) = doc
                .edit(&net.ctx(T0 + DAY), &net.c_wang, at_ms, None, |tx| {
                    visits::add_entry(tx, entry_id, &entry)
                })
                .expect("edit");
            new.push(ChangeHash(sig.hash));
        }
        n_incremental =
            persist_applied(&store, &mut doc, &new, n_incremental, COMPACT_EVERY).expect("persist");
        for entry_id in &ids {
            writeln!(out, "ack {entry_id}").expect("write ack");
        }
        out.flush().expect("flush ack");
    }
}

/// Create a visit log titled `title` in the store (before any child runs, so a kill never
/// lands in its creation).
fn create_doc(dir: &Path, net: &Net, title: &str) {
    let store = Store::open(dir, net.trust.network()).expect("open store");
    let header = header(net, title);
    let (mut doc, sig) =
        Document::create(&net.ctx(T0), header, &net.c_node, testkit::actor(1), |tx| {
            kinds::visits::init(tx, "2026-11")?;
            kinds::visits::assign(
                tx,
                "h1",
                &visits::Assignment {
                    worker: "王芳".to_owned(),
                    household_name: "住户1".to_owned(),
                    kind: visits::HouseholdKind::Household,
                    grid: None,
                    address: "胜利路1号".to_owned(),
                },
            )
        })
        .expect("create doc");
    store.put_header(doc.header()).expect("put header");
    let change = doc.save_after(&[]);
    store
        .append_changes(&doc.id(), &[(change, sig)])
        .expect("append creation");
}

fn header(net: &Net, title: &str) -> linli_crdt_model::doc::Header {
    net.header(
        Kind::VisitLog,
        &net.shengli,
        &net.c_node,
        title,
        Some("2026-11"),
    )
}

fn doc_id(net: &Net, title: &str) -> linli_crdt_model::doc::DocId {
    header(net, title).id()
}

/// The stored document loads, every change has its signature and every signature its change,
/// and every acknowledged entry is there.
fn check(stored: StoredDoc, acked: &BTreeSet<String>) -> Result<(), String> {
    let sig_hashes: BTreeSet<[u8; 32]> = stored.signatures.iter().map(|s| s.hash).collect();
    let mut doc = Document::load(
        stored.header,
        &stored.bytes,
        stored.signatures,
        ActorId::random(),
    )
    .map_err(|e| format!("does not load: {e}"))?;
    let change_hashes: BTreeSet<[u8; 32]> = doc.changes().iter().map(|c| c.hash().0).collect();
    if let Some(h) = change_hashes.difference(&sig_hashes).next() {
        return Err(format!("change {} has no signature", ChangeHash(*h)));
    }
    if let Some(h) = sig_hashes.difference(&change_hashes).next() {
        return Err(format!(
            "signature of {} without its change",
            ChangeHash(*h)
        ));
    }
    let log = visits::hydrate(doc.read()).map_err(|e| format!("does not hydrate: {e}"))?;
    let missing: Vec<&String> = acked
        .iter()
        .filter(|id| !log.entries.contains_key(*id))
        .collect();
    if !missing.is_empty() {
        return Err(format!(
            "{} of {} acknowledged edits lost, first {:?}",
            missing.len(),
            acked.len(),
            &missing[..missing.len().min(5)]
        ));
    }
    Ok(())
}

fn actor(tag: &str) -> ActorId {
    let mut bytes = tag.as_bytes().to_vec();
    bytes.resize(bytes.len().max(16), 0);
    ActorId::from(bytes)
}
