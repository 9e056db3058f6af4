//! `linli overview`: for a street or district officer, one row per unit below this node's unit —
//! when it was last seen, what of it is held here, this month's visit coverage, tasks open and
//! overdue, whistles waiting for a response, conventions filed or changed since filing. This is
//! the "aggregated upward, not re-typed" view of seed 001 and 004 (二十三), computed from the
//! documents the node already holds; nobody reports anything for it.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::process::ExitCode;

use clap::Args;
use linli_crdt_model::audit::{Audit, Filing};
use linli_crdt_model::kinds::Kind;
use linli_crdt_model::unit::UnitId;
use linli_node::contract::{DocSummary, PeerInfo};
use serde::Serialize;

use super::convention::filing;
use super::tasks::whistles;
use super::visits::coverage_report;
use super::{Node, json_ok, month, ok, percent, this_month, today};
use crate::admin::Ctx;
use crate::output::{self, print_table, time};

#[derive(Debug, Args)]
pub struct OverviewArgs {
    /// The month whose visit coverage to show, YYYY-MM (default: this month, UTC).
    #[arg(long, value_parser = month)]
    pub month: Option<String>,
}

/// One unit below this node's, as `overview --json` gives it.
#[derive(Debug, Serialize)]
pub struct Row {
    pub unit: String,
    pub unit_name: String,
    /// `street`, `community`, … (from the directory; `None` if only its documents are known).
    pub unit_kind: Option<String>,
    /// Connected to this node now.
    pub connected: bool,
    /// When it was last heard from: as a peer, else the newest change of its task list or this
    /// month's visit log held here.
    pub last_seen_ms: Option<i64>,
    /// `peer` or `documents`: where `last_seen_ms` comes from.
    pub last_seen_from: Option<&'static str>,
    pub n_documents: usize,
    pub month: String,
    pub visits_assigned: Option<usize>,
    pub visits_visited: Option<usize>,
    pub tasks_open: usize,
    pub tasks_overdue: usize,
    pub whistles_waiting: usize,
    pub conventions: usize,
    pub conventions_filed: usize,
    pub conventions_changed_since_filing: usize,
}

/// The newest change time in a document's audit.
fn newest_change(node: &Node, doc: &str) -> Option<i64> {
    let audit: Audit = node.client.audit(doc).ok()?;
    audit.changes.iter().map(|c| c.at_ms).max()
}

pub fn overview(ctx: &Ctx, a: OverviewArgs) -> anyhow::Result<ExitCode> {
    let node = Node::connect(ctx)?;
    let month = a.month.unwrap_or_else(this_month);
    let me = UnitId::new(node.unit())?;
    let below = |u: &str| UnitId::new(u).is_ok_and(|id| id != me && me.is_at_or_above(&id));

    let directory = node.unit_names()?;
    let docs = node.docs(None, None, None)?;
    let mut by_unit: BTreeMap<String, Vec<&DocSummary>> = BTreeMap::new();
    for d in &docs {
        by_unit.entry(d.unit.clone()).or_default().push(d);
    }
    let units: BTreeSet<String> = directory
        .keys()
        .chain(by_unit.keys())
        .filter(|u| below(u))
        .cloned()
        .collect();
    if units.is_empty() {
        if ctx.json {
            return json_ok(&Vec::<Row>::new());
        }
        println!(
            "No units below {} ({}) are known here yet; the directory lists them once they are registered with `linli unit add`.",
            node.unit_name(),
            node.unit()
        );
        return ok();
    }

    // A district holds hundreds of communities' documents: say that work is going on.
    let spinner = output::spinner(&format!("reading {} units", units.len()));
    let peers: Vec<PeerInfo> = node.client.peers()?;
    let coverage: HashMap<String, (usize, usize)> = coverage_report(&node, &month)?
        .units
        .into_iter()
        .map(|u| (u.unit, (u.visited, u.assigned)))
        .collect();
    let mut waiting: HashMap<String, usize> = HashMap::new();
    for w in whistles(&node)? {
        if w.waiting {
            *waiting.entry(w.unit).or_default() += 1;
        }
    }
    let today = today();

    let mut rows = Vec::new();
    for unit in units {
        let held: &[&DocSummary] = by_unit.get(&unit).map(Vec::as_slice).unwrap_or_default();
        let oldest = |kind: Kind, period: Option<&str>| {
            held.iter()
                .filter(|d| d.kind == kind && (period.is_none() || d.period.as_deref() == period))
                .min_by_key(|d| (d.created_at_ms, d.id.clone()))
                .map(|d| d.id.clone())
        };
        let task_list = oldest(Kind::TaskList, None);
        let visit_log = oldest(Kind::VisitLog, Some(&month));

        let peer = peers
            .iter()
            .filter(|p| p.unit.as_deref() == Some(unit.as_str()))
            .max_by_key(|p| (p.connected, p.last_seen_ms));
        let connected = peer.is_some_and(|p| p.connected);
        let (last_seen_ms, last_seen_from) = match peer.and_then(|p| p.last_seen_ms) {
            Some(t) => (Some(t), Some("peer")),
            None => {
                let t = task_list
                    .iter()
                    .chain(visit_log.iter())
                    .filter_map(|d| newest_change(&node, d))
                    .max();
                (t, t.map(|_| "documents"))
            }
        };

        let (mut tasks_open, mut tasks_overdue) = (0, 0);
        if let Some(id) = &task_list {
            let list: linli_crdt_model::kinds::tasks::List = node.state(id)?;
            for t in list.tasks.values() {
                tasks_open += usize::from(t.status.is_open());
                tasks_overdue += usize::from(t.is_overdue(&today));
            }
        }

        let (mut n_conv, mut filed, mut changed) = (0, 0, 0);
        for d in held.iter().filter(|d| d.kind == Kind::Convention) {
            n_conv += 1;
            match filing(&node, &d.id)? {
                Filing::Filed { .. } => filed += 1,
                Filing::ChangedSinceFiling { .. } => changed += 1,
                Filing::NotFiled => {}
            }
        }

        let entry = directory.get(&unit);
        let visits = coverage.get(&unit).copied();
        rows.push(Row {
            unit_name: entry
                .map(|e| e.name.clone())
                .unwrap_or_else(|| unit.clone()),
            unit_kind: entry.map(|e| e.kind.as_str().to_owned()),
            connected,
            last_seen_ms,
            last_seen_from,
            n_documents: held.len(),
            month: month.clone(),
            visits_visited: visits.map(|v| v.0),
            visits_assigned: visits.map(|v| v.1),
            tasks_open,
            tasks_overdue,
            whistles_waiting: waiting.get(&unit).copied().unwrap_or(0),
            conventions: n_conv,
            conventions_filed: filed,
            conventions_changed_since_filing: changed,
            unit,
        });
    }

    spinner.finish_and_clear();
    if ctx.json {
        return json_ok(&rows);
    }
    println!(
        "Units below {} ({}), visits of {month}",
        node.unit_name(),
        node.unit()
    );
    print_table(
        &[
            "unit",
            "id",
            "last seen",
            "docs",
            "visits",
            "tasks open",
            "overdue",
            "whistles waiting",
            "conventions",
        ],
        rows.iter()
            .map(|r| {
                vec![
                    r.unit_name.clone(),
                    r.unit.clone(),
                    if r.connected {
                        "connected".to_owned()
                    } else {
                        r.last_seen_ms
                            .map(time)
                            .unwrap_or_else(|| "never".to_owned())
                    },
                    r.n_documents.to_string(),
                    match (r.visits_visited, r.visits_assigned) {
                        (Some(v), Some(a)) => format!("{v}/{a} {}", percent(v, a)),
                        _ => "no log".to_owned(),
                    },
                    r.tasks_open.to_string(),
                    r.tasks_overdue.to_string(),
                    r.whistles_waiting.to_string(),
                    match r.conventions {
                        0 => "–".to_owned(),
                        n => format!(
                            "{n}: {} filed, {} changed since filing",
                            r.conventions_filed, r.conventions_changed_since_filing
                        ),
                    },
                ]
            })
            .collect(),
    );
    ok()
}
