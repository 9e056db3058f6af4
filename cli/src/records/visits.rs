//! `linli visit`: the monthly visit log (走访记录). Every community worker visits each household
//! and shop assigned to them at least once a month (seed 001, 004 (八)); the log of a month holds
//! the assignments (分包) and the visits, and coverage says who has not been reached yet.
//!
//! One log per unit per month, created on first use with the title "<unit> <month> 走访记录".
//! Offices keep their rosters in spreadsheets, so `visit import` takes one as CSV. These records
//! hold personal data: the log's scope (`chain`: the community and the units above it) keeps
//! them off other communities' nodes.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Subcommand, ValueEnum};
use linli_crdt_model::kinds::Kind;
use linli_crdt_model::kinds::visits::{self, Assignment, HouseholdKind, Mode};
use linli_crdt_model::unit::UnitKind;
use linli_node::contract::{CreateDoc, DocSummary, Op};
use serde::Serialize;

use super::{Node, choice, date, json_ok, month, ok, or_dash, percent, this_month, today};
use crate::admin::Ctx;
use crate::output::{self, short, time};

/// Operations per `POST /v1/docs/{id}/ops/batch` when importing a roster: small enough that a
/// failed chunk is easy to retry, large enough that a community of 3,000 households takes a
/// handful of requests.
pub const IMPORT_CHUNK_OPS: usize = 500;

/// Unvisited households named in one table cell before "and N more".
const UNVISITED_SHOWN_MAX: usize = 6;

#[derive(Debug, Subcommand)]
pub enum VisitCmd {
    /// Assign a household or shop to a worker for the month (分包).
    #[command(
        after_help = "Example:\n  linli visit assign h-0301 --worker 王芳 --name 张大爷家 --grid 3 --address 胜利街12号3单元301"
    )]
    Assign {
        /// The household's id in the office's roster (户号).
        household_id: String,
        /// The worker responsible.
        #[arg(long)]
        worker: String,
        /// The household's (or shop's) name (户名).
        #[arg(long)]
        name: String,
        /// It is a shop (商户), not a household.
        #[arg(long)]
        shop: bool,
        #[arg(long)]
        grid: Option<String>,
        #[arg(long)]
        address: Option<String>,
        /// YYYY-MM (default: this month, UTC).
        #[arg(long, value_parser = month)]
        month: Option<String>,
    },
    /// Record a visit to an assigned household.
    #[command(
        after_help = "Example:\n  linli --as wangfang visit add h-0301 --worker 王芳 --mode door --need 独居老人,需要助餐 --follow-up 联系助餐点"
    )]
    Add {
        /// The household's id, as assigned (户号).
        household_id: String,
        /// Who made the visit (not necessarily the assigned worker).
        #[arg(long)]
        worker: String,
        /// YYYY-MM-DD (default: today, UTC); the visit goes in that month's log.
        #[arg(long, value_parser = date)]
        date: Option<String>,
        /// How the visit was made: at the door (上门), by phone, online (电子走访), other.
        #[arg(long, value_parser = choice::<Mode>(), default_value = "door")]
        mode: Mode,
        /// A need or problem found; repeat for several.
        #[arg(long = "need", value_name = "TEXT")]
        needs: Vec<String>,
        /// What will be done about it.
        #[arg(long, value_name = "TEXT")]
        follow_up: Option<String>,
    },
    /// The month's visits.
    #[command(after_help = "Example:\n  linli visit list --month 2026-11")]
    List {
        /// YYYY-MM (default: this month, UTC).
        #[arg(long, value_parser = month)]
        month: Option<String>,
    },
    /// Who has not been visited this month.
    ///
    /// On a community node: per worker, with the households not visited yet. On a street or
    /// district node: one row per community visit log it holds for the month.
    #[command(
        after_help = "Example:\n  linli visit coverage --month 2026-11\n  linli visit coverage --format csv > coverage.csv"
    )]
    Coverage {
        /// YYYY-MM (default: this month, UTC).
        #[arg(long, value_parser = month)]
        month: Option<String>,
        #[arg(long, value_enum, default_value_t = Format::Table)]
        format: Format,
    },
    /// Import a household roster (CSV) with worker assignments into the month's log.
    ///
    /// The file is UTF-8 CSV with the header household_id,household_name,worker,kind,grid,address
    /// or 户号,户名,负责人,类型,网格,地址, in any order; kind is household or shop (住户 or 商户),
    /// empty for household. Good rows are imported (again: updated, not doubled); bad rows are
    /// reported by line number and make the command exit 1.
    #[command(
        after_help = "Example:\n  linli --as wangfang visit import 胜利社区走访分包.csv --month 2026-11\n\nCSV:\n  户号,户名,负责人,类型,网格,地址\n  h-0301,张大爷家,王芳,住户,3,胜利街12号3单元301"
    )]
    Import {
        /// The roster, a CSV file.
        file: PathBuf,
        /// YYYY-MM (default: this month, UTC).
        #[arg(long, value_parser = month)]
        month: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Table,
    Csv,
    Json,
}

// ----- state and coverage -----

/// The coverage of one unit's log.
#[derive(Debug, Clone, Serialize)]
pub struct UnitCoverage {
    pub unit: String,
    pub unit_name: String,
    pub doc: String,
    pub assigned: usize,
    pub visited: usize,
    pub ratio: f64,
    pub workers: Vec<WorkerCoverage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WorkerCoverage {
    pub worker: String,
    pub assigned: usize,
    pub visited: usize,
    pub ratio: f64,
    pub unvisited: Vec<Household>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Household {
    pub household_id: String,
    pub household_name: String,
}

/// `visit coverage --json`: the month and one entry per log.
#[derive(Debug, Clone, Serialize)]
pub struct CoverageReport {
    pub month: String,
    pub units: Vec<UnitCoverage>,
}

fn ratio(visited: usize, assigned: usize) -> f64 {
    if assigned == 0 {
        0.0
    } else {
        visited as f64 / assigned as f64
    }
}

/// Coverage of a log, with names for the households not visited.
pub fn unit_coverage(summary: &DocSummary, unit_name: &str, log: visits::Log) -> UnitCoverage {
    let c = visits::coverage(&log);
    UnitCoverage {
        unit: summary.unit.clone(),
        unit_name: unit_name.to_owned(),
        doc: summary.id.clone(),
        assigned: c.assigned,
        visited: c.visited,
        ratio: c.ratio,
        workers: c
            .per_worker
            .into_iter()
            .map(|w| WorkerCoverage {
                ratio: ratio(w.visited, w.assigned),
                unvisited: w
                    .unvisited
                    .into_iter()
                    .map(|id| Household {
                        household_name: log
                            .assignments
                            .get(&id)
                            .map(|a| a.household_name.clone())
                            .unwrap_or_default(),
                        household_id: id,
                    })
                    .collect(),
                worker: w.worker,
                assigned: w.assigned,
                visited: w.visited,
            })
            .collect(),
    }
}

fn unvisited_cell(households: &[Household]) -> String {
    if households.is_empty() {
        return "–".to_owned();
    }
    let mut shown: Vec<String> = households
        .iter()
        .take(UNVISITED_SHOWN_MAX)
        .map(|h| format!("{} ({})", h.household_name, h.household_id))
        .collect();
    if households.len() > UNVISITED_SHOWN_MAX {
        shown.push(format!(
            "and {} more",
            households.len() - UNVISITED_SHOWN_MAX
        ));
    }
    shown.join(", ")
}

/// One unit's coverage per worker, with a total row: what a community worker reads.
pub fn render_workers(u: &UnitCoverage) -> String {
    let mut rows: Vec<Vec<String>> = u
        .workers
        .iter()
        .map(|w| {
            vec![
                w.worker.clone(),
                format!("{}/{}", w.visited, w.assigned),
                percent(w.visited, w.assigned),
                unvisited_cell(&w.unvisited),
            ]
        })
        .collect();
    rows.push(vec![
        "total".to_owned(),
        format!("{}/{}", u.visited, u.assigned),
        percent(u.visited, u.assigned),
        (u.assigned - u.visited).to_string(),
    ]);
    output::table(&["worker", "visited", "%", "not visited"], rows)
}

/// One row per unit's log: what a street or district officer reads.
pub fn render_units(r: &CoverageReport) -> String {
    let rows = r
        .units
        .iter()
        .map(|u| {
            vec![
                u.unit_name.clone(),
                u.unit.clone(),
                format!("{}/{}", u.visited, u.assigned),
                percent(u.visited, u.assigned),
                u.workers.len().to_string(),
                (u.assigned - u.visited).to_string(),
            ]
        })
        .collect();
    output::table(
        &["unit", "id", "visited", "%", "workers", "not visited"],
        rows,
    )
}

/// One row per worker of every log, for spreadsheets.
pub fn render_csv(r: &CoverageReport) -> anyhow::Result<String> {
    let mut w = csv::Writer::from_writer(Vec::new());
    w.write_record([
        "month",
        "unit",
        "unit_name",
        "worker",
        "assigned",
        "visited",
        "percent",
        "unvisited_ids",
        "unvisited_names",
    ])?;
    for u in &r.units {
        for wk in &u.workers {
            w.write_record([
                r.month.clone(),
                u.unit.clone(),
                u.unit_name.clone(),
                wk.worker.clone(),
                wk.assigned.to_string(),
                wk.visited.to_string(),
                format!("{:.1}", wk.ratio * 100.0),
                wk.unvisited
                    .iter()
                    .map(|h| h.household_id.as_str())
                    .collect::<Vec<_>>()
                    .join(";"),
                wk.unvisited
                    .iter()
                    .map(|h| h.household_name.as_str())
                    .collect::<Vec<_>>()
                    .join(";"),
            ])?;
        }
    }
    let bytes = w.into_inner().map_err(|e| anyhow!("writing CSV: {e}"))?;
    Ok(String::from_utf8(bytes).expect("CSV of UTF-8 strings is UTF-8"))
}

/// The logs of `month` this node holds (all units), each with its coverage.
pub fn coverage_report(node: &Node, month: &str) -> anyhow::Result<CoverageReport> {
    let names = node.unit_names()?;
    let mut units = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut docs = node.docs(Some(Kind::VisitLog), None, Some(month))?;
    docs.sort_by(|a, b| (&a.unit, a.created_at_ms, &a.id).cmp(&(&b.unit, b.created_at_ms, &b.id)));
    for d in docs {
        // The engine uses a unit's oldest log of the month; a second one made concurrently is
        // left alone here too.
        if !seen.insert(d.unit.clone()) {
            continue;
        }
        let name = names
            .get(&d.unit)
            .map(|e| e.name.clone())
            .unwrap_or_else(|| d.unit.clone());
        let state: visits::Log = node.state(&d.id)?;
        units.push(unit_coverage(&d, &name, state));
    }
    Ok(CoverageReport {
        month: month.to_owned(),
        units,
    })
}

// ----- the month's log -----

fn find_log(node: &Node, month: &str) -> anyhow::Result<Option<String>> {
    Ok(node
        .docs(Some(Kind::VisitLog), Some(node.unit()), Some(month))?
        .into_iter()
        .min_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)))
        .map(|d| d.id))
}

/// The log of `month`, created if this unit has none yet.
fn log_or_create(node: &Node, month: &str, person: Option<&str>) -> anyhow::Result<String> {
    if let Some(id) = find_log(node, month)? {
        return Ok(id);
    }
    let title = format!("{} {month} 走访记录", node.unit_name());
    let id = node
        .create(
            &CreateDoc {
                kind: Kind::VisitLog,
                title: title.clone(),
                scope: None,
                period: Some(month.to_owned()),
                minutes: None,
            },
            person,
        )
        .with_context(|| format!("creating the visit log {title}"))?;
    eprintln!("Created the visit log {title} ({})", short(&id));
    Ok(id)
}

fn existing_log(node: &Node, month: &str) -> anyhow::Result<String> {
    find_log(node, month)?.ok_or_else(|| {
        anyhow!(
            "{} has no visit log for {month} yet; assign households first (`linli visit assign` or `linli visit import FILE.csv --month {month}`)",
            node.unit_name()
        )
    })
}

// ----- the roster -----

/// One good row of a roster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RosterRow {
    pub line: u64,
    pub household_id: String,
    pub assignment: Assignment,
}

/// A roster as read: good rows and bad ones (line, why).
#[derive(Debug, Default)]
pub struct Roster {
    pub rows: Vec<RosterRow>,
    pub bad: Vec<(u64, String)>,
}

/// Which field a header names, in English or Chinese.
fn field_of(header: &str) -> Option<usize> {
    let h = header.trim().trim_start_matches('\u{feff}').to_lowercase();
    Some(match h.as_str() {
        "household_id" | "户号" | "户编号" => 0,
        "household_name" | "户名" | "户主" | "名称" => 1,
        "worker" | "负责人" | "走访人" | "社区工作者" => 2,
        "kind" | "类型" => 3,
        "grid" | "网格" => 4,
        "address" | "地址" => 5,
        _ => return None,
    })
}

const FIELD_NAMES: [&str; 6] = [
    "household_id",
    "household_name",
    "worker",
    "kind",
    "grid",
    "address",
];

/// Read a roster. Fails only if the header is unusable; every other problem is a bad row.
pub fn read_roster(input: impl Read) -> anyhow::Result<Roster> {
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .has_headers(true)
        .from_reader(input);
    let header = reader
        .byte_headers()
        .context("reading the header row")?
        .clone();
    let mut columns = [None::<usize>; 6];
    for (i, h) in header.iter().enumerate() {
        let h = String::from_utf8_lossy(h);
        if let Some(f) = field_of(&h) {
            columns[f].get_or_insert(i);
        }
    }
    let missing: Vec<&str> = (0..3)
        .filter(|f| columns[*f].is_none())
        .map(|f| FIELD_NAMES[f])
        .collect();
    if !missing.is_empty() {
        bail!(
            "the header row lacks {}; it must name household_id,household_name,worker[,kind,grid,address] (or 户号,户名,负责人[,类型,网格,地址]) and is: {}",
            missing.join(", "),
            header
                .iter()
                .map(|h| String::from_utf8_lossy(h).into_owned())
                .collect::<Vec<_>>()
                .join(",")
        );
    }
    let mut roster = Roster::default();
    let mut first_line: HashMap<String, u64> = HashMap::new();
    let mut record = csv::ByteRecord::new();
    loop {
        let line_before = reader.position().line();
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map(|p| p.line()).unwrap_or(line_before);
                roster.bad.push((line, format!("not readable as CSV: {e}")));
                continue;
            }
        }
        let line = record.position().map(|p| p.line()).unwrap_or(line_before);
        if record.iter().all(|f| f.iter().all(u8::is_ascii_whitespace)) {
            continue;
        }
        match roster_row(&record, &columns, line) {
            Ok(row) => {
                if let Some(first) = first_line.get(&row.household_id) {
                    roster.bad.push((
                        line,
                        format!(
                            "household {} already appears on line {first}",
                            row.household_id
                        ),
                    ));
                } else {
                    first_line.insert(row.household_id.clone(), line);
                    roster.rows.push(row);
                }
            }
            Err(why) => roster.bad.push((line, why)),
        }
    }
    Ok(roster)
}

fn roster_row(
    record: &csv::ByteRecord,
    columns: &[Option<usize>; 6],
    line: u64,
) -> Result<RosterRow, String> {
    let mut fields: [String; 6] = Default::default();
    for (f, col) in columns.iter().enumerate() {
        if let Some(bytes) = col.and_then(|c| record.get(c)) {
            fields[f] = std::str::from_utf8(bytes)
                .map_err(|_| {
                    format!(
                        "{} is not UTF-8 text; save the spreadsheet as \"CSV UTF-8\"",
                        FIELD_NAMES[f]
                    )
                })?
                .trim()
                .to_owned();
        }
    }
    let [id, name, worker, kind, grid, address] = fields;
    for (f, v) in [(0, &id), (1, &name), (2, &worker)] {
        if v.is_empty() {
            return Err(format!("{} is empty", FIELD_NAMES[f]));
        }
    }
    if id.len() > 128 || id.chars().any(char::is_control) {
        return Err(format!(
            "household_id {id:?} is too long or has control characters"
        ));
    }
    let kind = match kind.as_str() {
        "" | "household" | "住户" | "居民" => HouseholdKind::Household,
        "shop" | "商户" | "店铺" => HouseholdKind::Shop,
        other => {
            return Err(format!(
                "kind {other:?} is neither household (住户) nor shop (商户)"
            ));
        }
    };
    Ok(RosterRow {
        line,
        household_id: id,
        assignment: Assignment {
            worker,
            household_name: name,
            kind,
            grid: Some(grid).filter(|g| !g.is_empty()),
            address,
        },
    })
}

// ----- commands -----

#[derive(Debug, Serialize)]
struct VisitRow {
    id: String,
    date: String,
    household_id: String,
    household_name: Option<String>,
    worker: String,
    mode: Mode,
    mode_label: &'static str,
    needs: Vec<String>,
    follow_up: Option<String>,
    at_ms: i64,
}

#[derive(Debug, Serialize)]
struct ImportReport {
    doc: String,
    month: String,
    imported: usize,
    new: usize,
    updated: usize,
    bad_rows: Vec<BadRow>,
}

#[derive(Debug, Serialize)]
struct BadRow {
    line: u64,
    reason: String,
}

pub fn visit(ctx: &Ctx, cmd: VisitCmd) -> anyhow::Result<ExitCode> {
    let node = Node::connect(ctx)?;
    let person = ctx.person();
    match cmd {
        VisitCmd::Assign {
            household_id,
            worker,
            name,
            shop,
            grid,
            address,
            month,
        } => {
            let month = month.unwrap_or_else(this_month);
            let doc = log_or_create(&node, &month, person)?;
            let r = node.apply(
                &doc,
                &Op::VisitAssign {
                    household_id: household_id.clone(),
                    assignment: Assignment {
                        worker: worker.clone(),
                        household_name: name.clone(),
                        kind: if shop {
                            HouseholdKind::Shop
                        } else {
                            HouseholdKind::Household
                        },
                        grid,
                        address: address.unwrap_or_default(),
                    },
                },
                person,
            )?;
            if ctx.json {
                return json_ok(&r);
            }
            println!("Assigned {name} ({household_id}) to {worker} for {month}");
        }
        VisitCmd::Add {
            household_id,
            worker,
            date,
            mode,
            needs,
            follow_up,
        } => {
            let date = date.unwrap_or_else(today);
            let month = &date[..7];
            let doc = existing_log(&node, month)?;
            let state: visits::Log = node.state(&doc)?;
            let Some(a) = state.assignments.get(&household_id) else {
                bail!(
                    "household {household_id} is not assigned in the visit log of {month} ({}); assign it first: linli visit assign {household_id} --worker {worker} --name <户名> --month {month}",
                    short(&doc)
                );
            };
            let r = node.apply(
                &doc,
                &Op::VisitAdd {
                    id: None,
                    household_id: household_id.clone(),
                    worker: worker.clone(),
                    date: date.clone(),
                    mode,
                    needs,
                    follow_up,
                },
                person,
            )?;
            if ctx.json {
                return json_ok(&r);
            }
            println!(
                "Recorded {worker}'s visit to {} ({household_id}) on {date} ({})",
                a.household_name,
                mode.label_zh()
            );
        }
        VisitCmd::List { month } => {
            let month = month.unwrap_or_else(this_month);
            let Some(doc) = find_log(&node, &month)? else {
                if ctx.json {
                    return json_ok(&Vec::<VisitRow>::new());
                }
                println!("{} has no visit log for {month}.", node.unit_name());
                return ok();
            };
            let state: visits::Log = node.state(&doc)?;
            let mut rows: Vec<VisitRow> = state
                .entries
                .into_iter()
                .map(|(id, e)| VisitRow {
                    household_name: state
                        .assignments
                        .get(&e.household_id)
                        .map(|a| a.household_name.clone()),
                    id,
                    date: e.date,
                    household_id: e.household_id,
                    worker: e.worker,
                    mode: e.mode,
                    mode_label: e.mode.label_zh(),
                    needs: e.needs,
                    follow_up: e.follow_up,
                    at_ms: e.at_ms,
                })
                .collect();
            rows.sort_by(|a, b| (&a.date, a.at_ms, &a.id).cmp(&(&b.date, b.at_ms, &b.id)));
            if ctx.json {
                return json_ok(&rows);
            }
            if rows.is_empty() {
                println!("No visits recorded for {month} yet.");
                return ok();
            }
            output::print_table(
                &[
                    "date",
                    "household",
                    "worker",
                    "mode",
                    "needs",
                    "follow-up",
                    "recorded",
                ],
                rows.iter()
                    .map(|r| {
                        vec![
                            r.date.clone(),
                            format!(
                                "{} ({})",
                                r.household_name.as_deref().unwrap_or("?"),
                                r.household_id
                            ),
                            r.worker.clone(),
                            r.mode_label.to_owned(),
                            or_dash(Some(&r.needs.join("; "))),
                            or_dash(r.follow_up.as_deref()),
                            time(r.at_ms),
                        ]
                    })
                    .collect(),
            );
        }
        VisitCmd::Coverage { month, format } => {
            let month = month.unwrap_or_else(this_month);
            let mut report = coverage_report(&node, &month)?;
            let community = node.status.status.unit_kind == UnitKind::Community;
            if community {
                // A community reads its own log; it holds no other unit's.
                report.units.retain(|u| u.unit == node.unit());
            }
            let format = if ctx.json { Format::Json } else { format };
            match format {
                Format::Json => return json_ok(&report),
                Format::Csv => print!("{}", render_csv(&report)?),
                Format::Table => {
                    println!("Visit coverage, {month}");
                    match report.units.as_slice() {
                        [] => println!(
                            "No visit logs for {month} {}.",
                            if community { "yet" } else { "are held here" }
                        ),
                        [one] if community => println!("{}", render_workers(one)),
                        _ => println!("{}", render_units(&report)),
                    }
                }
            }
        }
        VisitCmd::Import { file, month } => return import(ctx, &node, &file, month),
    }
    ok()
}

fn import(ctx: &Ctx, node: &Node, file: &Path, month: Option<String>) -> anyhow::Result<ExitCode> {
    let person = ctx.person();
    let month = month.unwrap_or_else(this_month);
    let f = std::fs::File::open(file).with_context(|| format!("opening {}", file.display()))?;
    let roster = read_roster(f).with_context(|| format!("reading {}", file.display()))?;
    if roster.rows.is_empty() {
        if roster.bad.is_empty() {
            bail!("{} has a header but no rows", file.display());
        }
        let lines: Vec<String> = roster
            .bad
            .iter()
            .map(|(line, why)| format!("  line {line}: {why}"))
            .collect();
        bail!(
            "no row of {} could be imported:\n{}",
            file.display(),
            lines.join("\n")
        );
    }
    let doc = log_or_create(node, &month, person)?;
    let before: visits::Log = node.state(&doc)?;
    let n_new = roster
        .rows
        .iter()
        .filter(|r| !before.assignments.contains_key(&r.household_id))
        .count();
    let bar = output::progress(roster.rows.len() as u64, "importing");
    let mut imported = 0;
    for chunk in roster.rows.chunks(IMPORT_CHUNK_OPS) {
        let ops: Vec<Op> = chunk
            .iter()
            .map(|r| Op::VisitAssign {
                household_id: r.household_id.clone(),
                assignment: r.assignment.clone(),
            })
            .collect();
        let sent = node.apply_batch(&doc, &ops, person).map_err(|e| {
            let line = chunk.first().map(|r| r.line).unwrap_or(0);
            e.context(format!(
                "importing {} into {} stopped in the chunk starting at line {line}; {imported} row(s) before it were imported, and importing the file again is safe",
                file.display(),
                short(&doc)
            ))
        });
        let receipts = match sent {
            Ok(r) => r,
            Err(e) => {
                bar.finish_and_clear();
                return Err(e);
            }
        };
        imported += receipts.len();
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let report = ImportReport {
        doc: doc.clone(),
        month: month.clone(),
        imported,
        new: n_new,
        updated: imported - n_new,
        bad_rows: roster
            .bad
            .iter()
            .map(|(line, reason)| BadRow {
                line: *line,
                reason: reason.clone(),
            })
            .collect(),
    };
    let code = if report.bad_rows.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    };
    if ctx.json {
        output::json(&report)?;
        return Ok(code);
    }
    println!(
        "Imported {imported} household(s) into the visit log of {month} ({}): {} new, {} updated",
        short(&doc),
        report.new,
        report.updated
    );
    if !report.bad_rows.is_empty() {
        eprintln!(
            "{} bad row(s) in {} were not imported:",
            report.bad_rows.len(),
            file.display()
        );
        for b in &report.bad_rows {
            eprintln!("  line {}: {}", b.line, b.reason);
        }
        eprintln!(
            "Fix them and import the file again (rows already imported are updated, not doubled)."
        );
    }
    Ok(code)
}

#[cfg(test)]
mod tests {
    use expect_test::expect;

    use super::*;

    fn sample() -> CoverageReport {
        let hh = |id: &str, name: &str| Household {
            household_id: id.to_owned(),
            household_name: name.to_owned(),
        };
        CoverageReport {
            month: "2026-11".to_owned(),
            units: vec![
                UnitCoverage {
                    unit: "tiedong/jiefang/shengli".to_owned(),
                    unit_name: "胜利社区".to_owned(),
                    doc: "ab".repeat(32),
                    assigned: 3,
                    visited: 2,
                    ratio: 2.0 / 3.0,
                    workers: vec![
                        WorkerCoverage {
                            worker: "李强".to_owned(),
                            assigned: 1,
                            visited: 1,
                            ratio: 1.0,
                            unvisited: vec![],
                        },
                        WorkerCoverage {
                            worker: "王芳".to_owned(),
                            assigned: 2,
                            visited: 1,
                            ratio: 0.5,
                            unvisited: vec![hh("h-0302", "李阿姨家")],
                        },
                    ],
                },
                UnitCoverage {
                    unit: "tiedong/jiefang/xingfu".to_owned(),
                    unit_name: "幸福社区".to_owned(),
                    doc: "cd".repeat(32),
                    assigned: 0,
                    visited: 0,
                    ratio: 0.0,
                    workers: vec![],
                },
            ],
        }
    }

    #[test]
    fn coverage_tables_line_up_chinese_names() {
        let r = sample();
        expect![[r#"
            ┌───────────────────────────────────────────────┐
            │ worker   visited   %        not visited       │
            ╞═══════════════════════════════════════════════╡
            │ 李强     1/1       100.0%   –                 │
            │ 王芳     1/2       50.0%    李阿姨家 (h-0302) │
            │ total    2/3       66.7%    1                 │
            └───────────────────────────────────────────────┘"#]]
        .assert_eq(&render_workers(&r.units[0]));
        expect![[r#"
            ┌──────────────────────────────────────────────────────────────────────────────┐
            │ unit       id                        visited   %       workers   not visited │
            ╞══════════════════════════════════════════════════════════════════════════════╡
            │ 胜利社区   tiedong/jiefang/shengli   2/3       66.7%   2         1           │
            │ 幸福社区   tiedong/jiefang/xingfu    0/0       –       0         0           │
            └──────────────────────────────────────────────────────────────────────────────┘"#]]
        .assert_eq(&render_units(&r));
        expect![[r#"
            month,unit,unit_name,worker,assigned,visited,percent,unvisited_ids,unvisited_names
            2026-11,tiedong/jiefang/shengli,胜利社区,李强,1,1,100.0,,
            2026-11,tiedong/jiefang/shengli,胜利社区,王芳,2,1,50.0,h-0302,李阿姨家
        "#]]
        .assert_eq(&render_csv(&r).expect("csv"));
    }

    #[test]
    fn roster_reads_english_and_chinese_headers_and_reports_bad_rows() {
        let english = "household_id,household_name,worker,kind,grid,address\nh1,张家,王芳,,3,胜利街1号\nh2,小卖部,李强,shop,,\n";
        let r = read_roster(english.as_bytes()).expect("roster");
        assert!(r.bad.is_empty(), "{:?}", r.bad);
        assert_eq!(r.rows.len(), 2);
        assert_eq!(r.rows[1].assignment.kind, HouseholdKind::Shop);
        assert_eq!(r.rows[0].assignment.grid.as_deref(), Some("3"));

        let chinese = "\u{feff}户号,户名,负责人,类型,网格,地址\nh1,张家,王芳,住户,3,胜利街1号\n,无号,王芳,住户,,\nh3,赵家,,住户,,\nh4,钱家,王芳,仓库,,\nh1,张家又一次,王芳,,,\nh5,孙家,李强\n";
        let r = read_roster(chinese.as_bytes()).expect("roster");
        expect![[r#"
            [
                (
                    3,
                    "household_id is empty",
                ),
                (
                    4,
                    "worker is empty",
                ),
                (
                    5,
                    "kind \"仓库\" is neither household (住户) nor shop (商户)",
                ),
                (
                    6,
                    "household h1 already appears on line 2",
                ),
            ]
        "#]]
        .assert_debug_eq(&r.bad);
        assert_eq!(
            r.rows
                .iter()
                .map(|r| r.household_id.as_str())
                .collect::<Vec<_>>(),
            ["h1", "h5"]
        );

        let err = read_roster("id,name\n1,2\n".as_bytes()).expect_err("bad header");
        expect![[r#"the header row lacks household_id, household_name, worker; it must name household_id,household_name,worker[,kind,grid,address] (or 户号,户名,负责人[,类型,网格,地址]) and is: id,name"#]]
            .assert_eq(&err.to_string());
    }
}
