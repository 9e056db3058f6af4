//! Is the testnet in the state it should be? Converged (every node that may hold a document holds
//! it with the same heads: DESIGN.md, "Sync"), nothing acknowledged lost (every edit in the load
//! log is present wherever its document may be held), every node's store verifies, and no node
//! holds a document its scope keeps from it.
//!
//! Nodes sync continuously, so a check first asks every node to sync now and waits, up to a limit,
//! for convergence before judging. Equal heads mean equal histories, so an acknowledged change is
//! looked up once per distinct set of heads, not once per node.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use linli_crdt_model::doc::Scope;
use linli_crdt_model::unit::UnitId;
use linli_node::contract::{AttestationFilter, DocFilter, DocSummary};
use serde::{Deserialize, Serialize};

use crate::client;
use crate::load::{AckKind, Acked};
use crate::net::par_map;
use crate::state::{self, State};
use crate::{Error, Event, Progress};

/// Default wait for convergence before `check` judges.
pub const SETTLE_DEFAULT: Duration = Duration::from_secs(60);
/// Differences listed per category; the count says how many there were in all.
pub const LISTED_MAX: usize = 50;

/// What each node holds: `None` for a node that is down or does not answer.
pub fn holdings(state: &State) -> Vec<Option<Vec<DocSummary>>> {
    par_map(&state.nodes, |n| {
        let up = n.pid.is_some_and(|p| crate::process::alive(p, &n.data_dir));
        if !up {
            return None;
        }
        client::of(&n.data_dir).docs(&DocFilter::default()).ok()
    })
}

/// Convergence and scope, judged from what every node holds.
#[derive(Debug, Clone, Default)]
pub struct Judged {
    /// A node down, lacking a document, or holding other heads.
    pub divergence: Vec<String>,
    /// A node holding a document its scope keeps from it.
    pub leaks: Vec<String>,
    pub n_documents: usize,
}

fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

pub fn judge(state: &State, held: &[Option<Vec<DocSummary>>]) -> Judged {
    let mut out = Judged::default();
    let mut all: BTreeMap<&str, (UnitId, Scope, &str)> = BTreeMap::new();
    for (n, h) in state.nodes.iter().zip(held) {
        let Some(docs) = h else {
            out.divergence.push(format!("{} is down", n.unit));
            continue;
        };
        for d in docs {
            let (Ok(unit), Ok(scope)) = (UnitId::new(&d.unit), d.scope.parse::<Scope>()) else {
                out.leaks.push(format!(
                    "{} holds {} with unit {:?} and scope {:?}, which do not parse",
                    n.unit,
                    short(&d.id),
                    d.unit,
                    d.scope
                ));
                continue;
            };
            if !scope.may_hold(&unit, &n.unit) {
                out.leaks.push(format!(
                    "{} holds {} ({} \"{}\" of {}, scope {}), which it may not",
                    n.unit,
                    short(&d.id),
                    d.kind,
                    d.title,
                    d.unit,
                    d.scope
                ));
            }
            all.entry(d.id.as_str())
                .or_insert((unit, scope, d.title.as_str()));
        }
    }
    out.n_documents = all.len();
    for (id, (owner, scope, title)) in &all {
        let mut first: Option<(&str, &Vec<String>)> = None;
        for (n, h) in state.nodes.iter().zip(held) {
            let Some(docs) = h else { continue };
            if !scope.may_hold(owner, &n.unit) {
                continue;
            }
            match docs.iter().find(|d| d.id == *id) {
                None => out.divergence.push(format!(
                    "{} lacks {} \"{title}\" of {owner}",
                    n.unit,
                    short(id)
                )),
                Some(d) => match first {
                    None => first = Some((n.unit.as_str(), &d.heads)),
                    Some((u, heads)) if heads != &d.heads => out.divergence.push(format!(
                        "{} and {u} hold different heads of {} \"{title}\"",
                        n.unit,
                        short(id)
                    )),
                    Some(_) => {}
                },
            }
        }
    }
    out
}

/// The verdict of `testnet check`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckReport {
    /// Converged, nothing lost, every store verifies, no scope leak.
    pub ok: bool,
    pub converged: bool,
    /// How long it took to converge (or how long it waited in vain).
    pub settle_ms: u64,
    pub n_nodes: usize,
    pub n_documents: usize,
    /// Acknowledged edits in the load log, and how many were checked at every node that may
    /// hold them.
    pub n_acked: usize,
    pub n_differences: usize,
    pub differences: Vec<String>,
    pub n_missing: usize,
    /// Acknowledged edits absent somewhere they should be.
    pub missing: Vec<String>,
    pub verify_failures: Vec<String>,
    pub n_scope_leaks: usize,
    pub scope_leaks: Vec<String>,
}

/// Ask every node to sync now, wait up to `settle` for convergence, then judge everything.
pub fn check(dir: &Path, settle: Duration, progress: Progress<'_>) -> Result<CheckReport, Error> {
    let state = State::load(dir)?;
    let acked = read_acked(dir)?;
    progress(Event::Begin {
        what: "waiting for convergence",
        total: 0,
    });
    par_map(&state.nodes, |n| {
        let _ = client::of(&n.data_dir).sync_now();
    });
    let start = Instant::now();
    let (held, judged) = loop {
        let held = holdings(&state);
        let judged = judge(&state, &held);
        if judged.divergence.is_empty() || start.elapsed() >= settle {
            break (held, judged);
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    let settle_ms = start.elapsed().as_millis() as u64;
    progress(Event::End);

    progress(Event::Begin {
        what: "checking acknowledged edits",
        total: acked.len() as u64,
    });
    let missing = missing_acked(&state, &held, &acked);
    progress(Event::Step(acked.len() as u64));
    progress(Event::End);

    let verified = par_map(&state.nodes, |n| client::of(&n.data_dir).verify());
    let mut verify_failures = Vec::new();
    for (n, v) in state.nodes.iter().zip(verified) {
        match v {
            Ok(v) if v.ok => {}
            Ok(v) => {
                for p in v.problems {
                    verify_failures.push(format!("{}: {}: {}", n.unit, short(&p.doc), p.what));
                }
            }
            Err(e) => verify_failures.push(format!("{}: verify did not answer: {e}", n.unit)),
        }
    }
    let converged = judged.divergence.is_empty();
    let ok =
        converged && missing.is_empty() && verify_failures.is_empty() && judged.leaks.is_empty();
    let cap = |mut v: Vec<String>| {
        v.truncate(LISTED_MAX);
        v
    };
    Ok(CheckReport {
        ok,
        converged,
        settle_ms,
        n_nodes: state.nodes.len(),
        n_documents: judged.n_documents,
        n_acked: acked.len(),
        n_differences: judged.divergence.len(),
        differences: cap(judged.divergence),
        n_missing: missing.len(),
        missing: cap(missing),
        verify_failures,
        n_scope_leaks: judged.leaks.len(),
        scope_leaks: cap(judged.leaks),
    })
}

/// Every line of `DIR/acked.jsonl` (none if no load ran).
pub fn read_acked(dir: &Path) -> Result<Vec<Acked>, Error> {
    let path = dir.join(state::ACKED_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Io { path, source }),
    };
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        // A load killed mid-write leaves at most a partial last line, which it never counted.
        match serde_json::from_str::<Acked>(line) {
            Ok(a) => out.push(a),
            Err(_) if i + 1 == text.lines().count() => {}
            Err(e) => {
                return Err(Error::Invalid(format!(
                    "{} line {}: {e}",
                    path.display(),
                    i + 1
                )));
            }
        }
    }
    Ok(out)
}

/// Acknowledged edits absent at a node that may hold their document.
fn missing_acked(state: &State, held: &[Option<Vec<DocSummary>>], acked: &[Acked]) -> Vec<String> {
    let mut out = Vec::new();
    // Documents and changes: one lookup per distinct heads of a document.
    let mut by_doc: BTreeMap<&str, Vec<&Acked>> = BTreeMap::new();
    let mut attestations: Vec<&Acked> = Vec::new();
    for a in acked {
        match a.what {
            AckKind::Attest => attestations.push(a),
            AckKind::Create | AckKind::Edit => by_doc.entry(a.doc.as_str()).or_default().push(a),
        }
    }
    // (node index, doc) lookups to make, grouped by heads.
    let mut lookups: Vec<(usize, &str, Vec<usize>)> = Vec::new();
    for (doc, edits) in &by_doc {
        let first = edits[0];
        let Ok(owner) = UnitId::new(&first.doc_unit) else {
            out.push(format!(
                "load log names unit {:?}, which is not a unit id",
                first.doc_unit
            ));
            continue;
        };
        let mut groups: HashMap<&Vec<String>, Vec<usize>> = HashMap::new();
        for (i, (n, h)) in state.nodes.iter().zip(held).enumerate() {
            if !first.scope.may_hold(&owner, &n.unit) {
                continue;
            }
            let Some(docs) = h else {
                out.push(format!(
                    "{}: down, so {} edit(s) of {} cannot be checked there",
                    n.unit,
                    edits.len(),
                    short(doc)
                ));
                continue;
            };
            match docs.iter().find(|d| d.id == *doc) {
                None => out.push(format!(
                    "{} lacks document {} ({} acknowledged edit(s), first by {})",
                    n.unit,
                    short(doc),
                    edits.len(),
                    first.unit
                )),
                Some(d) => groups.entry(&d.heads).or_default().push(i),
            }
        }
        let needs_changes = edits.iter().any(|a| a.change.is_some());
        if needs_changes {
            for (_, nodes) in groups {
                lookups.push((nodes[0], doc, nodes));
            }
        }
    }
    let found = par_map(&lookups, |(i, doc, _)| {
        let n = &state.nodes[*i];
        let c = client::of(&n.data_dir);
        let audit = c.audit(doc);
        let st = c.state::<serde_json::Value>(doc);
        (audit, st)
    });
    for ((_, doc, nodes), (audit, st)) in lookups.iter().zip(found) {
        let units: Vec<String> = nodes
            .iter()
            .map(|&i| state.nodes[i].unit.to_string())
            .collect();
        let (audit, st) = match (audit, st) {
            (Ok(a), Ok(s)) => (a, s),
            (Err(e), _) | (_, Err(e)) => {
                out.push(format!(
                    "{}: cannot read {}: {e}",
                    units.join(", "),
                    short(doc)
                ));
                continue;
            }
        };
        let changes: BTreeSet<&str> = audit.changes.iter().map(|c| c.hash.as_str()).collect();
        for a in &by_doc[doc] {
            if let Some(change) = &a.change
                && !changes.contains(change.as_str())
            {
                out.push(format!(
                    "{}: lacks change {} ({} made at {}) of {}",
                    units.join(", "),
                    short(change),
                    a.op,
                    a.unit,
                    short(doc)
                ));
            }
            if let (Some(coll), Some(rec)) = (&a.collection, &a.record)
                && st[coll.as_str()].get(rec.as_str()).is_none()
            {
                out.push(format!(
                    "{}: {} has no {coll} record {rec} ({} made at {})",
                    units.join(", "),
                    short(doc),
                    a.op,
                    a.unit
                ));
            }
        }
    }
    // Attestations live in the issuer's ledger, which is public: every node must know them.
    if !attestations.is_empty() {
        let known = par_map(&state.nodes, |n| {
            client::of(&n.data_dir).attestations(&AttestationFilter::default())
        });
        for (n, k) in state.nodes.iter().zip(known) {
            let Ok(k) = k else {
                out.push(format!("{}: cannot list attestations", n.unit));
                continue;
            };
            let ids: BTreeSet<&str> = k.iter().map(|a| a.id.as_str()).collect();
            for a in &attestations {
                if let Some(id) = &a.attestation
                    && !ids.contains(id.as_str())
                {
                    out.push(format!(
                        "{} lacks attestation {} ({} by {} about {})",
                        n.unit,
                        short(id),
                        a.op,
                        a.unit,
                        short(&a.doc)
                    ));
                }
            }
        }
    }
    out
}
