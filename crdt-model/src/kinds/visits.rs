//! Monthly visit logs (走访记录): which worker is responsible for which household or shop, the
//! visits made, and from those the month's coverage.
//!
//! Every community worker visits each household and shop assigned to them (分包) at least once a
//! month and follows up on what they find (seed 001 "一线工作法": 每月至少上门走访一次; seed 004
//! (八) 分片包干、联系走访; visits find people who need assistance early: seed 003 §四(十)).
//! Shanghai's community cloud counts electronic visits too (电子走访, seed 004 (十七)), so the
//! mode is recorded rather than assumed.
//!
//! One document per community per month keeps each document small and lets a month be closed,
//! filed and checked on its own; the month is fixed by `init` and every visit date must fall in
//! it. Households and visits are maps keyed by id, so two workers recording visits at the same
//! time on different phones merge without loss. These records hold personal data: their scope is
//! decided by the document header, not here.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use automerge::AutoCommit;
use autosurgeon::{Hydrate, Reconcile};

use super::{EditError, SchemaError, UnknownValue};

const MONTH: &str = "month";
const ASSIGNMENTS: &str = "assignments";
const ENTRIES: &str = "entries";

string_enum! {
    /// What is visited: seed 001 names both residents and shops (分包的居民和商户).
    pub enum HouseholdKind ("a household kind") {
        Household = "household", "住户";
        Shop = "shop", "商户";
    }
}

string_enum! {
    /// How a visit was made.
    pub enum Mode ("a visit mode") {
        /// In person at the door (上门).
        Door = "door", "上门走访";
        Phone = "phone", "电话走访";
        /// 电子走访 (seed 004 (十七)).
        Online = "online", "电子走访";
        Other = "other", "其他";
    }
}

/// A household or shop assigned to a worker for the month (分包).
#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct Assignment {
    /// The responsible worker (key id or name).
    pub worker: String,
    pub household_name: String,
    pub kind: HouseholdKind,
    pub grid: Option<String>,
    pub address: String,
}

/// One visit.
#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct Entry {
    /// Key into [`Log::assignments`].
    pub household_id: String,
    /// Who made the visit; not necessarily the assigned worker.
    pub worker: String,
    /// `"YYYY-MM-DD"`, inside the log's month.
    pub date: String,
    pub mode: Mode,
    /// Needs and problems found, one per item.
    pub needs: Vec<String>,
    /// What will be done about them, if anything.
    pub follow_up: Option<String>,
    /// When the entry was recorded.
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Log {
    /// `"YYYY-MM"`.
    pub month: String,
    /// Household id → assignment.
    pub assignments: BTreeMap<String, Assignment>,
    /// Entry id → visit.
    pub entries: BTreeMap<String, Entry>,
}

/// Writes the empty log of `month` (`"YYYY-MM"`). Called once, by the creator, in the first
/// change; the month never changes afterwards.
pub fn init(doc: &mut AutoCommit, month: &str) -> Result<(), EditError> {
    super::check_month("month", month)?;
    super::init_maps(doc, &[ASSIGNMENTS, ENTRIES])?;
    autosurgeon::reconcile_prop(doc, automerge::ROOT, MONTH, month)?;
    Ok(())
}

pub fn hydrate(doc: &impl automerge::ReadDoc) -> Result<Log, SchemaError> {
    let doc = &super::Reader::new(doc);
    let month: String = super::root_value(doc, MONTH)?;
    if super::parse_month(&month).is_none() {
        return Err(SchemaError::Invalid {
            path: MONTH.into(),
            reason: format!("{month:?} is not a month YYYY-MM"),
        });
    }
    let assignments = super::records(doc, ASSIGNMENTS)?;
    let entries: BTreeMap<String, Entry> = super::records(doc, ENTRIES)?;
    for (id, entry) in &entries {
        check_entry(id, entry, &month)?;
    }
    Ok(Log {
        month,
        assignments,
        entries,
    })
}

fn in_month(date: &str, month: &str) -> bool {
    date.len() == month.len() + 3 && date.starts_with(month) && date[month.len()..].starts_with('-')
}

fn check_optional(field: &'static str, value: Option<&str>) -> Result<(), EditError> {
    match value {
        Some(v) => super::non_empty(field, v),
        None => Ok(()),
    }
}

/// Assigns a household or shop to a worker, or changes an existing assignment. Only the fields
/// of this one household are written.
pub fn assign(
    doc: &mut AutoCommit,
    household_id: &str,
    assignment: &Assignment,
) -> Result<(), EditError> {
    super::check_id(household_id)?;
    super::non_empty("worker", &assignment.worker)?;
    super::non_empty("household_name", &assignment.household_name)?;
    check_optional("grid", assignment.grid.as_deref())?;
    let map = super::root_map(doc, ASSIGNMENTS)?;
    autosurgeon::reconcile_prop(doc, &map, household_id, assignment)?;
    Ok(())
}

/// Removes a household from the month's assignments (moved away, shop closed). Its visits stay.
pub fn unassign(doc: &mut AutoCommit, household_id: &str) -> Result<(), EditError> {
    super::delete_record(doc, ASSIGNMENTS, household_id)
}

/// Records a visit to an assigned household, dated inside the log's month.
pub fn add_entry(doc: &mut AutoCommit, id: &str, entry: &Entry) -> Result<(), EditError> {
    super::check_id(id)?;
    super::non_empty("worker", &entry.worker)?;
    super::check_date("date", &entry.date)?;
    let month: String = super::root_value(doc, MONTH)?;
    if !in_month(&entry.date, &month) {
        return Err(super::invalid(
            "date",
            format!("{} is outside the log's month {month}", entry.date),
        ));
    }
    if entry.needs.iter().any(|n| n.trim().is_empty()) {
        return Err(super::invalid("needs", "an item is empty"));
    }
    check_optional("follow_up", entry.follow_up.as_deref())?;
    super::record_obj(doc, ASSIGNMENTS, &entry.household_id)?;
    super::insert_record(doc, ENTRIES, id, entry)
}

/// Sets or clears the follow-up of a visit.
pub fn set_follow_up(
    doc: &mut AutoCommit,
    entry_id: &str,
    follow_up: Option<&str>,
) -> Result<(), EditError> {
    check_optional("follow_up", follow_up)?;
    super::put_field(doc, ENTRIES, entry_id, "follow_up", &follow_up)
}

/// A worker's households this month.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct WorkerCoverage {
    pub worker: String,
    pub assigned: usize,
    pub visited: usize,
    /// Household ids not visited yet this month, sorted.
    pub unvisited: Vec<String>,
}

/// Who has not been visited this month (seed 004 (八), 001).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Coverage {
    pub month: String,
    /// Sorted by worker.
    pub per_worker: Vec<WorkerCoverage>,
    pub assigned: usize,
    pub visited: usize,
    /// `visited / assigned`; 0 when nothing is assigned, which is itself worth flagging.
    pub ratio: f64,
}

/// The month's coverage. A household counts as visited when any worker visited it: the
/// household was reached, even if a colleague stood in. Visits to households no longer
/// assigned do not count. Linear in households plus entries.
pub fn coverage(log: &Log) -> Coverage {
    let visited: HashSet<&str> = log
        .entries
        .values()
        .map(|e| e.household_id.as_str())
        .collect();
    let mut per_worker: BTreeMap<&str, WorkerCoverage> = BTreeMap::new();
    for (household_id, assignment) in &log.assignments {
        let w = per_worker
            .entry(assignment.worker.as_str())
            .or_insert_with(|| WorkerCoverage {
                worker: assignment.worker.clone(),
                assigned: 0,
                visited: 0,
                unvisited: Vec::new(),
            });
        w.assigned += 1;
        if visited.contains(household_id.as_str()) {
            w.visited += 1;
        } else {
            w.unvisited.push(household_id.clone());
        }
    }
    let per_worker: Vec<WorkerCoverage> = per_worker.into_values().collect();
    let assigned: usize = per_worker.iter().map(|w| w.assigned).sum();
    let n_visited: usize = per_worker.iter().map(|w| w.visited).sum();
    Coverage {
        month: log.month.clone(),
        per_worker,
        assigned,
        visited: n_visited,
        ratio: if assigned == 0 {
            0.0
        } else {
            n_visited as f64 / assigned as f64
        },
    }
}

impl fmt::Display for Coverage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: {}/{} visited ({:.1}%)",
            self.month,
            self.visited,
            self.assigned,
            self.ratio * 100.0
        )?;
        for w in &self.per_worker {
            write!(f, "  {}: {}/{}", w.worker, w.visited, w.assigned)?;
            if !w.unvisited.is_empty() {
                write!(f, ", not visited: {}", w.unvisited.join(", "))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Visits whose follow-up is still recorded, by entry id.
pub fn with_follow_up(log: &Log) -> Vec<(&str, &Entry)> {
    log.entries
        .iter()
        .filter(|(_, e)| e.follow_up.is_some())
        .map(|(id, e)| (id.as_str(), e))
        .collect()
}

fn check_entry(id: &str, entry: &Entry, month: &str) -> Result<(), SchemaError> {
    let path = || format!("{ENTRIES}/{id}/date");
    super::schema_date(path, &entry.date)?;
    if !in_month(&entry.date, month) {
        return Err(SchemaError::Invalid {
            path: path(),
            reason: format!("{:?} is outside the log's month {month}", entry.date),
        });
    }
    Ok(())
}

/// Check one record, with the rules of [`hydrate`].
pub(super) fn validate_record(
    doc: &impl autosurgeon::ReadDoc,
    collection: &str,
    id: &str,
) -> Result<(), SchemaError> {
    match collection {
        ASSIGNMENTS => super::one_record::<Assignment>(doc, collection, id).map(drop),
        ENTRIES => match super::one_record::<Entry>(doc, collection, id)? {
            Some(entry) => check_entry(id, &entry, &super::root_value::<String>(doc, MONTH)?),
            None => Ok(()),
        },
        other => Err(super::unknown_collection(other)),
    }
}

#[cfg(test)]
mod tests {
    use automerge::ReadDoc;
    use automerge::transaction::Transactable;
    use expect_test::expect;
    use proptest::prelude::*;

    use super::super::tests_support::{converges, fork, new_doc};
    use super::*;

    fn new() -> AutoCommit {
        let mut doc = new_doc();
        init(&mut doc, "2025-11").expect("init");
        doc
    }

    fn assignment(worker: &str, name: &str, kind: HouseholdKind) -> Assignment {
        Assignment {
            worker: worker.into(),
            household_name: name.into(),
            kind,
            grid: Some("第一网格".into()),
            address: "胜利小区3号楼2单元".into(),
        }
    }

    fn entry(household_id: &str, worker: &str, date: &str, needs: &[&str]) -> Entry {
        Entry {
            household_id: household_id.into(),
            worker: worker.into(),
            date: date.into(),
            mode: Mode::Door,
            needs: needs.iter().map(|s| (*s).into()).collect(),
            follow_up: None,
            at_ms: 1_762_000_000_000,
        }
    }

    /// Two workers, three households and a shop.
    fn assigned() -> AutoCommit {
        let mut doc = new();
        for (id, worker, name, kind) in [
            ("h-101", "王芳", "张大爷家", HouseholdKind::Household),
            ("h-102", "王芳", "刘阿姨家", HouseholdKind::Household),
            ("s-1", "李强", "老李面馆", HouseholdKind::Shop),
            ("h-201", "李强", "陈家", HouseholdKind::Household),
        ] {
            assign(&mut doc, id, &assignment(worker, name, kind)).expect("assign");
        }
        doc
    }

    #[test]
    fn realistic_month() {
        let mut doc = assigned();
        add_entry(
            &mut doc,
            "v-1",
            &entry("h-101", "王芳", "2025-11-03", &["独居老人,需要助餐服务"]),
        )
        .expect("add");
        add_entry(
            &mut doc,
            "v-2",
            &Entry {
                mode: Mode::Online,
                ..entry("s-1", "李强", "2025-11-05", &[])
            },
        )
        .expect("add");
        add_entry(&mut doc, "v-3", &entry("h-101", "李强", "2025-11-20", &[])).expect("add");
        set_follow_up(&mut doc, "v-1", Some("联系街道助餐点,下周回访")).expect("follow up");
        unassign(&mut doc, "h-201").expect("unassign");
        let log = hydrate(&doc).expect("hydrate");
        expect![[r#"
            Log {
                month: "2025-11",
                assignments: {
                    "h-101": Assignment {
                        worker: "王芳",
                        household_name: "张大爷家",
                        kind: Household,
                        grid: Some(
                            "第一网格",
                        ),
                        address: "胜利小区3号楼2单元",
                    },
                    "h-102": Assignment {
                        worker: "王芳",
                        household_name: "刘阿姨家",
                        kind: Household,
                        grid: Some(
                            "第一网格",
                        ),
                        address: "胜利小区3号楼2单元",
                    },
                    "s-1": Assignment {
                        worker: "李强",
                        household_name: "老李面馆",
                        kind: Shop,
                        grid: Some(
                            "第一网格",
                        ),
                        address: "胜利小区3号楼2单元",
                    },
                },
                entries: {
                    "v-1": Entry {
                        household_id: "h-101",
                        worker: "王芳",
                        date: "2025-11-03",
                        mode: Door,
                        needs: [
                            "独居老人,需要助餐服务",
                        ],
                        follow_up: Some(
                            "联系街道助餐点,下周回访",
                        ),
                        at_ms: 1762000000000,
                    },
                    "v-2": Entry {
                        household_id: "s-1",
                        worker: "李强",
                        date: "2025-11-05",
                        mode: Online,
                        needs: [],
                        follow_up: None,
                        at_ms: 1762000000000,
                    },
                    "v-3": Entry {
                        household_id: "h-101",
                        worker: "李强",
                        date: "2025-11-20",
                        mode: Door,
                        needs: [],
                        follow_up: None,
                        at_ms: 1762000000000,
                    },
                },
            }
        "#]]
        .assert_debug_eq(&log);
        expect![[r#"
            2025-11: 2/3 visited (66.7%)
              李强: 1/1
              王芳: 1/2, not visited: h-102
        "#]]
        .assert_eq(&coverage(&log).to_string());
        assert_eq!(
            with_follow_up(&log)
                .iter()
                .map(|(id, _)| *id)
                .collect::<Vec<_>>(),
            ["v-1"]
        );
        expect!["电子走访"].assert_eq(Mode::Online.label_zh());

        set_follow_up(&mut doc, "v-1", None).expect("clear");
        let log = hydrate(&doc).expect("hydrate");
        assert_eq!(log.entries["v-1"].follow_up, None);
    }

    #[test]
    fn edit_errors() {
        let mut doc = assigned();
        add_entry(&mut doc, "v-1", &entry("h-101", "王芳", "2025-11-03", &[])).expect("add");
        let mut bad = AutoCommit::new();
        let errors = [
            init(&mut AutoCommit::new(), "2025-13"),
            init(&mut doc, "2025-11"),
            assign(
                &mut doc,
                "",
                &assignment("王芳", "张家", HouseholdKind::Household),
            ),
            assign(
                &mut doc,
                "h-9",
                &assignment(" ", "张家", HouseholdKind::Household),
            ),
            assign(
                &mut doc,
                "h-9",
                &assignment("王芳", "", HouseholdKind::Household),
            ),
            assign(
                &mut doc,
                "h-9",
                &Assignment {
                    grid: Some(String::new()),
                    ..assignment("王芳", "张家", HouseholdKind::Household)
                },
            ),
            unassign(&mut doc, "h-9"),
            add_entry(&mut doc, "v-1", &entry("h-101", "王芳", "2025-11-04", &[])),
            add_entry(&mut doc, "v-2", &entry("h-101", "", "2025-11-04", &[])),
            add_entry(&mut doc, "v-2", &entry("h-101", "王芳", "2025-11-31", &[])),
            add_entry(&mut doc, "v-2", &entry("h-101", "王芳", "2025-12-01", &[])),
            add_entry(&mut doc, "v-2", &entry("h-999", "王芳", "2025-11-04", &[])),
            add_entry(
                &mut doc,
                "v-2",
                &entry("h-101", "王芳", "2025-11-04", &[""]),
            ),
            add_entry(
                &mut doc,
                "v-2",
                &Entry {
                    follow_up: Some(" ".into()),
                    ..entry("h-101", "王芳", "2025-11-04", &[])
                },
            ),
            set_follow_up(&mut doc, "v-9", Some("回访")),
            set_follow_up(&mut doc, "v-1", Some("")),
            add_entry(&mut bad, "v-1", &entry("h-101", "王芳", "2025-11-04", &[])),
        ];
        expect![[r#"
            [
                "invalid month: \"2025-13\" is not a month YYYY-MM",
                "root record \"assignments\" already exists",
                "invalid id: must not be empty",
                "invalid worker: must not be empty",
                "invalid household_name: must not be empty",
                "invalid grid: must not be empty",
                "no assignments record \"h-9\"",
                "entries record \"v-1\" already exists",
                "invalid worker: must not be empty",
                "invalid date: \"2025-11-31\" is not a date YYYY-MM-DD",
                "invalid date: 2025-12-01 is outside the log's month 2025-11",
                "no assignments record \"h-999\"",
                "invalid needs: an item is empty",
                "invalid follow_up: must not be empty",
                "no entries record \"v-9\"",
                "invalid follow_up: must not be empty",
                "document does not match its schema: missing month",
            ]
        "#]]
        .assert_debug_eq(&errors.map(|r| r.expect_err("refused").to_string()));
    }

    #[test]
    fn schema_errors() {
        let entries_of = |doc: &AutoCommit| super::super::root_map(doc, ENTRIES).expect("entries");

        let mut doc = assigned();
        add_entry(&mut doc, "v-1", &entry("h-101", "王芳", "2025-11-03", &[])).expect("add");
        let (_, v1) = doc
            .get(entries_of(&doc), "v-1")
            .ok()
            .flatten()
            .expect("v-1");
        doc.put(&v1, "date", "2025-10-31").expect("put");
        expect![[r#"entries/v-1/date: "2025-10-31" is outside the log's month 2025-11"#]]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());
        doc.put(&v1, "mode", "pigeon").expect("put");
        expect![[r#"entries/v-1: unexpected "pigeon", expected a visit mode (door | phone | online | other)"#]]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());
        doc.delete(&v1, "worker").expect("delete");
        expect!["entries/v-1: unexpected None"]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());

        let mut doc = new();
        doc.put(automerge::ROOT, MONTH, "November").expect("put");
        expect![[r#"month: "November" is not a month YYYY-MM"#]]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());
        doc.put(automerge::ROOT, MONTH, 11).expect("put");
        expect!["month: unexpected int"].assert_eq(&hydrate(&doc).expect_err("schema").to_string());
    }

    #[test]
    fn two_workers_visit_concurrently() {
        let mut wang = assigned();
        let mut li = fork(&mut wang, 2);
        add_entry(
            &mut wang,
            "v-w1",
            &entry("h-101", "王芳", "2025-11-03", &["漏水"]),
        )
        .expect("add");
        add_entry(
            &mut wang,
            "v-w2",
            &entry("h-102", "王芳", "2025-11-03", &[]),
        )
        .expect("add");
        add_entry(&mut li, "v-l1", &entry("s-1", "李强", "2025-11-04", &[])).expect("add");
        // Reassignment on one side, a follow-up on the other: different keys, both survive.
        assign(
            &mut li,
            "h-102",
            &assignment("李强", "刘阿姨家", HouseholdKind::Household),
        )
        .expect("reassign");
        wang.commit();
        li.commit();
        let mut merged = wang.fork();
        merged.merge(&mut li).expect("merge");
        li.merge(&mut wang).expect("merge");
        let log = hydrate(&merged).expect("hydrate");
        assert_eq!(log, hydrate(&li).expect("hydrate"));
        expect![[r#"
            2025-11: 3/4 visited (75.0%)
              李强: 2/3, not visited: h-201
              王芳: 1/1
        "#]]
        .assert_eq(&coverage(&log).to_string());
    }

    /// A month at scale: 300 households (one worker's share, seed 003) and 3,000 visits. No timing
    /// assertion; this pins that hydrate and coverage stay linear and complete.
    #[test]
    fn three_thousand_entries() {
        let mut doc = new();
        for h in 0..300 {
            let worker = format!("worker-{}", h % 10);
            assign(
                &mut doc,
                &format!("h-{h:03}"),
                &assignment(&worker, &format!("住户{h}"), HouseholdKind::Household),
            )
            .expect("assign");
        }
        doc.commit();
        for v in 0..3000 {
            // Households 290..300 are never visited.
            let h = v % 290;
            let day = v % 30 + 1;
            add_entry(
                &mut doc,
                &format!("v-{v:04}"),
                &entry(
                    &format!("h-{h:03}"),
                    &format!("worker-{}", h % 10),
                    &format!("2025-11-{day:02}"),
                    &["无"],
                ),
            )
            .expect("add");
            if v % 100 == 99 {
                doc.commit();
            }
        }
        let log = hydrate(&doc).expect("hydrate");
        assert_eq!(log.entries.len(), 3000);
        let c = coverage(&log);
        assert_eq!((c.assigned, c.visited, c.per_worker.len()), (300, 290, 10));
        assert_eq!(c.per_worker[0].unvisited, ["h-290"]);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn any_order_converges(order in Just((0..12usize).collect::<Vec<_>>()).prop_shuffle()) {
            converges(assigned, |doc, i| match i % 4 {
                0 | 1 => add_entry(
                    doc,
                    &format!("v-{i}"),
                    &entry("h-101", "王芳", &format!("2025-11-{:02}", i + 1), &[]),
                ).expect("add"),
                2 => assign(
                    doc,
                    "h-102",
                    &assignment(&format!("worker-{i}"), "刘阿姨家", HouseholdKind::Household),
                ).expect("assign"),
                _ => {
                    let id = format!("v-{}", i - 3);
                    if hydrate(doc).expect("hydrate").entries.contains_key(&id) {
                        set_follow_up(doc, &id, Some(&format!("回访{i}"))).expect("follow up");
                    }
                }
            }, 12, &order, hydrate);
        }
    }
}
