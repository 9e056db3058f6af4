//! `linli task` and `linli whistle`: a unit's task list (工作事项) with the admission of work
//! outside the legal lists (准入), and whistles raised upward with the responses and ratings they
//! get (吹哨报到, 以下评上).
//!
//! Admission (seed 000 §一(一)): a district department files a request on the district's own
//! task list (`task request`); civil affairs reviews it (`task review`, attestation `reviewed`
//! with the request as subject) and the party committee or government approves it
//! (`task approve`, `approved`). Every community the request targets then admits it to its own
//! list by itself (the node does it, naming both attestations); nothing unapproved gets there.
//!
//! Whistles: each unit writes only its own documents, so a whistle lives in the raising unit's
//! task list and a response in the responder's, pointing back by document and whistle id.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use linli_crdt_model::attest::Statement;
use linli_crdt_model::kinds::Kind;
use linli_crdt_model::kinds::tasks::{
    Category, List, NewTask, NewWhistle, Rating, Request, Status,
};
use linli_crdt_model::unit::UnitId;
use linli_node::contract::{AttestRequest, AttestationFilter, AttestationView, Created, Op};
use serde::Serialize;

use super::{Node, choice, date, json_ok, ok, or_dash, pick, today};
use crate::admin::Ctx;
use crate::output::{print_table, short, time};

const TASK_HINT: &str = "`linli task list` shows this unit's tasks and requests";
const WHISTLE_HINT: &str = "`linli whistle list` shows the whistles this node holds";

#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    /// File a request to send work outside the lists down to communities (准入申请).
    ///
    /// It goes on this unit's own task list and needs a review (`task review`) and an approval
    /// (`task approve`) before any community takes it; the communities it targets then admit it
    /// by themselves.
    #[command(
        after_help = "Example:\n  linli task request --title 电动自行车入户充电排查 --department 区消防救援大队 \\\n    --legal-basis 《消防法》第三十二条 --funding 区财政专项经费2万元 --staffing 消防网格员2名 \\\n    --target tiedong/jiefang/shengli --due 2026-12-31"
    )]
    Request {
        /// What is to be done.
        #[arg(long)]
        title: String,
        /// The department that wants the work done.
        #[arg(long)]
        department: String,
        /// The law or policy that makes it the community's work.
        #[arg(long)]
        legal_basis: String,
        /// The money that comes with it (费随事转).
        #[arg(long)]
        funding: String,
        /// The staff that come with it.
        #[arg(long)]
        staffing: String,
        /// Unit ids of the communities the work would go to.
        #[arg(long = "target", value_name = "UNIT", required = true, num_args = 1..)]
        targets: Vec<String>,
        /// YYYY-MM-DD.
        #[arg(long, value_parser = date)]
        due: Option<String>,
    },
    /// Review a request (初审, civil affairs): sign `reviewed` over it.
    #[command(
        after_help = "Example:\n  linli --as reviewer task review 9f3c2a --note 法律依据充分"
    )]
    Review {
        /// The request's id (or a unique prefix), from `linli task list`.
        request: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Approve a reviewed request (审批, party committee or government): sign `approved`.
    #[command(after_help = "Example:\n  linli --as approver task approve 9f3c2a")]
    Approve {
        request: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Refuse a request at review or approval: sign `rejected`.
    #[command(after_help = "Example:\n  linli --as approver task reject 9f3c2a --note 未落实经费")]
    Reject {
        request: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Add a task from the unit's own lists (duty or assistance).
    ///
    /// Work from outside the lists arrives by itself once a request for it is approved.
    #[command(
        after_help = "Example:\n  linli --as wangfang task add --title 组织居民议事会 --category duty --due 2026-11-15"
    )]
    Add {
        #[arg(long)]
        title: String,
        /// duty (依法履行职责事项) or assistance (依法协助党委和政府工作事项).
        #[arg(long, value_parser = listed_category())]
        category: Category,
        /// YYYY-MM-DD.
        #[arg(long, value_parser = date)]
        due: Option<String>,
        #[arg(long)]
        assignee: Option<String>,
        #[arg(long)]
        note: Option<String>,
    },
    /// Give a task to a worker.
    #[command(after_help = "Example:\n  linli --as wangfang task assign adm-9f3c2a --to 李强")]
    Assign {
        /// The task's id (or a unique prefix), from `linli task list`.
        task: String,
        #[arg(long)]
        to: String,
    },
    /// Move a task on: in-progress, done or cancelled.
    #[command(
        after_help = "Example:\n  linli --as liqiang task update adm-9f3c2a --status done --note 已排查3栋楼"
    )]
    Update {
        /// The task's id (or a unique prefix), from `linli task list`.
        task: String,
        #[arg(long, value_parser = choice::<Status>())]
        status: Status,
        /// Replaces the task's note.
        #[arg(long)]
        note: Option<String>,
    },
    /// This unit's tasks, and the requests on its list with their review and approval.
    #[command(
        after_help = "Example:\n  linli task list --open\n  linli task list --overdue --json"
    )]
    List {
        /// Only tasks still to do (open or in progress).
        #[arg(long)]
        open: bool,
        /// Only open tasks whose due date has passed.
        #[arg(long)]
        overdue: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum WhistleCmd {
    /// Blow the whistle (吹哨) on a problem this unit cannot solve alone.
    #[command(
        after_help = "Example:\n  linli --as wangfang whistle raise --title 小区门口占道经营 --description 早市摊贩占用消防通道 --to tiedong/jiefang"
    )]
    Raise {
        /// The problem, in a line.
        #[arg(long)]
        title: String,
        /// What happened and what was tried.
        #[arg(long)]
        description: String,
        /// The unit called on.
        #[arg(long, value_name = "UNIT")]
        to: String,
    },
    /// Report in (报到) on another unit's whistle; the response goes on this unit's own list.
    #[command(
        after_help = "Example:\n  linli --as approver whistle respond 3f2a9c0d1e2f 8b7a6c --text 已派执法队员现场处置"
    )]
    Respond {
        /// The task list holding the whistle (id or prefix, as `whistle list` shows it).
        whistle_doc: String,
        /// The whistle's id in it.
        whistle_id: String,
        /// What was done (报到).
        #[arg(long)]
        text: String,
    },
    /// Mark one of this unit's whistles resolved.
    #[command(after_help = "Example:\n  linli whistle resolve 8b7a6c")]
    Resolve {
        /// The whistle's id (or a unique prefix), from `linli whistle list`.
        id: String,
    },
    /// Rate the response to one of this unit's whistles (以下评上), once it has one.
    #[command(
        after_help = "Example:\n  linli whistle rate 8b7a6c --score 4 --comment 响应及时,但仍有反复"
    )]
    Rate {
        /// The whistle's id (or a unique prefix), from `linli whistle list`.
        id: String,
        /// 1 (worst) to 5 (best).
        #[arg(long, value_parser = clap::value_parser!(u8).range(1..=5))]
        score: u8,
        #[arg(long)]
        comment: Option<String>,
    },
    /// Whistles in the documents this node holds, with responses found anywhere and ratings.
    #[command(after_help = "Example:\n  linli whistle list --waiting")]
    List {
        /// Only whistles still waiting for a response.
        #[arg(long)]
        waiting: bool,
    },
}

/// Categories a person may add by hand: admitted work arrives only through admission.
fn listed_category() -> impl clap::builder::TypedValueParser<Value = Category> {
    use clap::builder::TypedValueParser;
    clap::builder::PossibleValuesParser::new([
        Category::Duty.as_str(),
        Category::Assistance.as_str(),
    ])
    .map(|s: String| {
        if s == Category::Duty.as_str() {
            Category::Duty
        } else {
            Category::Assistance
        }
    })
}

// ----- state -----

// ----- views -----

/// Who signed a statement, and when.
#[derive(Debug, Clone, Serialize)]
pub struct Signed {
    pub attestation: String,
    pub by: Option<String>,
    pub unit: Option<String>,
    pub at_ms: i64,
    pub note: String,
}

impl Signed {
    fn of(a: &AttestationView) -> Signed {
        Signed {
            attestation: a.id.clone(),
            by: a.holder.clone(),
            unit: a.issuer_unit.clone(),
            at_ms: a.at_ms,
            note: a.note.clone(),
        }
    }

    fn cell(s: Option<&Signed>) -> String {
        s.map(|s| {
            format!(
                "{} {}",
                s.by.as_deref().unwrap_or("?"),
                time(s.at_ms).get(..10).unwrap_or_default()
            )
        })
        .unwrap_or_else(|| "–".to_owned())
    }
}

#[derive(Debug, Serialize)]
struct TaskRow {
    id: String,
    title: String,
    category: Category,
    category_label: &'static str,
    status: Status,
    status_label: &'static str,
    due: Option<String>,
    overdue: bool,
    assignee: Option<String>,
    note: String,
    updated_at_ms: i64,
    /// For admitted work: the request and who reviewed and approved it.
    admission: Option<AdmissionView>,
}

#[derive(Debug, Serialize)]
struct AdmissionView {
    request_doc: String,
    request_id: String,
    reviewed: Option<Signed>,
    approved: Option<Signed>,
}

#[derive(Debug, Serialize)]
struct RequestRow {
    id: String,
    #[serde(flatten)]
    request: Request,
    /// `waiting-for-review`, `waiting-for-approval`, `approved` or `rejected`.
    state: &'static str,
    reviewed: Option<Signed>,
    approved: Option<Signed>,
    rejected: Option<Signed>,
}

#[derive(Debug, Serialize)]
struct ListView {
    doc: String,
    unit: String,
    today: String,
    tasks: Vec<TaskRow>,
    requests: Vec<RequestRow>,
}

/// The newest valid attestation of `statement` about record `subject`.
fn newest<'a>(
    atts: &'a [AttestationView],
    statement: Statement,
    subject: &str,
) -> Option<&'a AttestationView> {
    atts.iter()
        .filter(|a| a.valid && a.statement == statement && a.subject.as_deref() == Some(subject))
        .max_by_key(|a| a.at_ms)
}

fn attestations(node: &Node, doc: &str) -> anyhow::Result<Vec<AttestationView>> {
    Ok(node.client.attestations(&AttestationFilter {
        doc: Some(doc.to_owned()),
    })?)
}

// ----- task -----

pub fn task(ctx: &Ctx, cmd: TaskCmd) -> anyhow::Result<ExitCode> {
    let node = Node::connect(ctx)?;
    let person = ctx.person();
    let doc = node.own_task_list()?;
    match cmd {
        TaskCmd::Request {
            title,
            department,
            legal_basis,
            funding,
            staffing,
            targets,
            due,
        } => {
            for t in &targets {
                UnitId::new(t).with_context(|| {
                    format!("--target {t:?} is not a unit id (e.g. tiedong/jiefang/shengli)")
                })?;
            }
            let known = node.unit_names()?;
            if let Some(t) = targets
                .iter()
                .find(|t| !known.is_empty() && !known.contains_key(*t))
            {
                bail!(
                    "unit {t} is not in the network's directory; `linli unit list` shows the units (check the spelling of --target)"
                );
            }
            let r = node.apply(
                &doc,
                &Op::RequestAdd {
                    id: None,
                    request: Request {
                        title: title.clone(),
                        department,
                        legal_basis,
                        funding,
                        staffing,
                        target_units: targets,
                        due,
                        created_at_ms: 0,
                    },
                },
                person,
            )?;
            if ctx.json {
                return json_ok(&r);
            }
            let id = r.record.unwrap_or_default();
            println!("{id}");
            eprintln!(
                "Filed request {title}. It needs a review and an approval:\n  linli --as <reviewer> task review {id}\n  linli --as <approver> task approve {id}"
            );
        }
        TaskCmd::Review { request, note } => {
            return sign(ctx, &node, &doc, &request, Statement::Reviewed, note);
        }
        TaskCmd::Approve { request, note } => {
            return sign(ctx, &node, &doc, &request, Statement::Approved, note);
        }
        TaskCmd::Reject { request, note } => {
            return sign(ctx, &node, &doc, &request, Statement::Rejected, note);
        }
        TaskCmd::Add {
            title,
            category,
            due,
            assignee,
            note,
        } => {
            let r = node.apply(
                &doc,
                &Op::TaskAdd {
                    id: None,
                    task: NewTask {
                        title: title.clone(),
                        category,
                        due,
                        assignee,
                        note: note.unwrap_or_default(),
                        admission: None,
                    },
                },
                person,
            )?;
            if ctx.json {
                return json_ok(&r);
            }
            println!("{}", r.record.unwrap_or_default());
            eprintln!("Added task {title} ({})", category.label_zh());
        }
        TaskCmd::Assign { task, to } => {
            let state: List = node.state(&doc)?;
            let (id, t) = pick(&state.tasks, &task, "task", &doc, TASK_HINT)?;
            let r = node.apply(
                &doc,
                &Op::TaskAssign {
                    id: id.to_owned(),
                    assignee: Some(to.clone()),
                },
                person,
            )?;
            if ctx.json {
                return json_ok(&r);
            }
            println!("Assigned {} ({id}) to {to}", t.title);
        }
        TaskCmd::Update { task, status, note } => {
            let state: List = node.state(&doc)?;
            let (id, t) = pick(&state.tasks, &task, "task", &doc, TASK_HINT)?;
            let mut ops = Vec::new();
            if status != t.status {
                ops.push(Op::TaskStatus {
                    id: id.to_owned(),
                    status,
                });
            }
            if let Some(note) = note {
                ops.push(Op::TaskNote {
                    id: id.to_owned(),
                    note,
                });
            }
            if ops.is_empty() {
                bail!(
                    "task {id} ({}) is already {}; nothing to change",
                    t.title,
                    status.as_str()
                );
            }
            let r = node.apply_batch(&doc, &ops, person)?;
            if ctx.json {
                return json_ok(&r);
            }
            println!(
                "Task {} ({id}) is now {} ({})",
                t.title,
                status.as_str(),
                status.label_zh()
            );
        }
        TaskCmd::List { open, overdue } => return list(ctx, &node, &doc, open, overdue),
    }
    ok()
}

/// Sign a statement about a request on this unit's task list.
fn sign(
    ctx: &Ctx,
    node: &Node,
    doc: &str,
    request: &str,
    statement: Statement,
    note: Option<String>,
) -> anyhow::Result<ExitCode> {
    let state: List = node.state(doc)?;
    let (rid, req) = pick(&state.requests, request, "request", doc, TASK_HINT)?;
    let atts = attestations(node, doc)?;
    if let Some(r) = newest(&atts, Statement::Rejected, rid) {
        bail!(
            "request {rid} ({}) was rejected by {} at {}; file a new request instead",
            req.title,
            r.holder.as_deref().unwrap_or("?"),
            time(r.at_ms)
        );
    }
    if statement == Statement::Approved && newest(&atts, Statement::Reviewed, rid).is_none() {
        bail!(
            "request {rid} ({}) has not been reviewed yet; civil affairs reviews first (初审): linli --as <reviewer> task review {rid}",
            req.title
        );
    }
    if let Some(a) = newest(&atts, statement, rid) {
        bail!(
            "request {rid} ({}) is already {} by {} at {}",
            req.title,
            statement.as_str(),
            a.holder.as_deref().unwrap_or("?"),
            time(a.at_ms)
        );
    }
    let created: Created = node.client.attest(
        doc,
        &AttestRequest {
            statement,
            subject: Some(rid.to_owned()),
            note,
        },
        ctx.person(),
    )?;
    if ctx.json {
        return json_ok(&serde_json::json!({
            "attestation": created.id, "statement": statement, "request": rid, "doc": doc,
        }));
    }
    let what = match statement {
        Statement::Reviewed => "Reviewed",
        Statement::Approved => "Approved",
        _ => "Rejected",
    };
    println!(
        "{what} request {} ({rid}); attestation {}",
        req.title,
        short(&created.id)
    );
    if statement == Statement::Approved {
        println!(
            "  the communities it targets ({}) admit it to their task lists once they sync",
            req.target_units.join(", ")
        );
    }
    ok()
}

fn list(
    ctx: &Ctx,
    node: &Node,
    doc: &str,
    only_open: bool,
    only_overdue: bool,
) -> anyhow::Result<ExitCode> {
    let state: List = node.state(doc)?;
    let today = today();
    // Attestations of the documents that hold requests: this list's own, and those that
    // admitted tasks name.
    let mut atts: HashMap<String, Vec<AttestationView>> = HashMap::new();
    atts.insert(doc.to_owned(), attestations(node, doc)?);
    for t in state.tasks.values() {
        if let Some(a) = &t.admission
            && !atts.contains_key(&a.request_doc)
        {
            let found = attestations(node, &a.request_doc).unwrap_or_default();
            atts.insert(a.request_doc.clone(), found);
        }
    }
    let by_id = |doc: &str, id: &str| {
        atts.get(doc)
            .and_then(|v| v.iter().find(|a| a.id == id))
            .map(Signed::of)
    };
    let mut tasks: Vec<TaskRow> = state
        .tasks
        .iter()
        .filter(|(_, t)| !only_open || t.status.is_open())
        .filter(|(_, t)| !only_overdue || t.is_overdue(&today))
        .map(|(id, t)| TaskRow {
            id: id.clone(),
            title: t.title.clone(),
            category: t.category,
            category_label: t.category.label_zh(),
            status: t.status,
            status_label: t.status.label_zh(),
            due: t.due.clone(),
            overdue: t.is_overdue(&today),
            assignee: t.assignee.clone(),
            note: t.note.clone(),
            updated_at_ms: t.updated_at_ms,
            admission: t.admission.as_ref().map(|a| AdmissionView {
                request_doc: a.request_doc.clone(),
                request_id: a.request_id.clone(),
                reviewed: by_id(&a.request_doc, &a.review),
                approved: by_id(&a.request_doc, &a.approval),
            }),
        })
        .collect();
    tasks.sort_by(|a, b| {
        (!a.status.is_open(), &a.due, &a.id).cmp(&(!b.status.is_open(), &b.due, &b.id))
    });
    let own = &atts[doc];
    let mut requests: Vec<RequestRow> = state
        .requests
        .iter()
        .map(|(id, r)| {
            let reviewed = newest(own, Statement::Reviewed, id).map(Signed::of);
            let approved = newest(own, Statement::Approved, id).map(Signed::of);
            let rejected = newest(own, Statement::Rejected, id).map(Signed::of);
            let state = match (&reviewed, &approved, &rejected) {
                (_, _, Some(_)) => "rejected",
                (Some(_), Some(_), None) => "approved",
                (Some(_), None, None) => "waiting-for-approval",
                (None, _, None) => "waiting-for-review",
            };
            RequestRow {
                id: id.clone(),
                request: r.clone(),
                state,
                reviewed,
                approved,
                rejected,
            }
        })
        .collect();
    requests
        .sort_by(|a, b| (a.request.created_at_ms, &a.id).cmp(&(b.request.created_at_ms, &b.id)));
    if only_open || only_overdue {
        requests.retain(|r| r.state.starts_with("waiting"));
    }
    if ctx.json {
        return json_ok(&ListView {
            doc: doc.to_owned(),
            unit: node.unit().to_owned(),
            today,
            tasks,
            requests,
        });
    }
    if tasks.is_empty() {
        println!(
            "No tasks{}.",
            if only_open || only_overdue {
                " to show"
            } else {
                " yet"
            }
        );
    } else {
        print_table(
            &[
                "id",
                "title",
                "category",
                "status",
                "due",
                "assignee",
                "admitted by",
            ],
            tasks
                .iter()
                .map(|t| {
                    vec![
                        t.id.clone(),
                        t.title.clone(),
                        t.category_label.to_owned(),
                        format!("{} {}", t.status.as_str(), t.status_label),
                        match &t.due {
                            Some(d) if t.overdue => format!("{d} (overdue)"),
                            d => or_dash(d.as_deref()),
                        },
                        or_dash(t.assignee.as_deref()),
                        t.admission
                            .as_ref()
                            .map(|a| {
                                format!(
                                    "reviewed {}; approved {}",
                                    Signed::cell(a.reviewed.as_ref()),
                                    Signed::cell(a.approved.as_ref())
                                )
                            })
                            .unwrap_or_else(|| "–".to_owned()),
                    ]
                })
                .collect(),
        );
    }
    if !requests.is_empty() {
        println!("\nrequests (准入申请)");
        print_table(
            &[
                "id",
                "title",
                "department",
                "targets",
                "due",
                "reviewed",
                "approved",
                "state",
            ],
            requests
                .iter()
                .map(|r| {
                    vec![
                        r.id.clone(),
                        r.request.title.clone(),
                        r.request.department.clone(),
                        r.request.target_units.join(", "),
                        or_dash(r.request.due.as_deref()),
                        Signed::cell(r.reviewed.as_ref()),
                        Signed::cell(r.approved.as_ref()),
                        match &r.rejected {
                            Some(x) => format!("rejected by {}", x.by.as_deref().unwrap_or("?")),
                            None => r.state.replace('-', " "),
                        },
                    ]
                })
                .collect(),
        );
    }
    ok()
}

// ----- whistle -----

/// One whistle and what became of it, wherever the responses are.
#[derive(Debug, Serialize)]
pub struct WhistleRow {
    pub doc: String,
    pub id: String,
    /// The unit that raised it (the task list's unit).
    pub unit: String,
    pub unit_name: Option<String>,
    pub title: String,
    pub description: String,
    pub raised_by: String,
    pub raised_at_ms: i64,
    pub to_unit: String,
    pub to_unit_name: Option<String>,
    pub responses: Vec<ResponseRow>,
    pub resolved_at_ms: Option<i64>,
    pub rating: Option<Rating>,
    /// No response yet and not resolved.
    pub waiting: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct ResponseRow {
    /// The unit that reported in (the unit of the task list holding the response).
    pub unit: String,
    pub doc: String,
    pub id: String,
    pub by: String,
    pub text: String,
    pub at_ms: i64,
}

/// Every whistle in the task lists this node holds, with responses found in any of them.
pub fn whistles(node: &Node) -> anyhow::Result<Vec<WhistleRow>> {
    let names = node.unit_names()?;
    let name = |u: &str| names.get(u).map(|e| e.name.clone());
    let mut lists = Vec::new();
    for d in node.docs(Some(Kind::TaskList), None, None)? {
        let state: List = node.state(&d.id)?;
        lists.push((d, state));
    }
    let mut responses: HashMap<(String, String), Vec<ResponseRow>> = HashMap::new();
    for (d, s) in &lists {
        for (rid, r) in &s.responses {
            responses
                .entry((r.whistle_doc.clone(), r.whistle_id.clone()))
                .or_default()
                .push(ResponseRow {
                    unit: d.unit.clone(),
                    doc: d.id.clone(),
                    id: rid.clone(),
                    by: r.by.clone(),
                    text: r.text.clone(),
                    at_ms: r.at_ms,
                });
        }
    }
    let mut rows = Vec::new();
    for (d, s) in lists {
        for (wid, w) in s.whistles {
            let mut found = responses
                .get(&(d.id.clone(), wid.clone()))
                .cloned()
                .unwrap_or_default();
            found.sort_by_key(|r| r.at_ms);
            rows.push(WhistleRow {
                waiting: found.is_empty() && w.resolved_at_ms.is_none(),
                doc: d.id.clone(),
                unit_name: name(&d.unit),
                unit: d.unit.clone(),
                to_unit_name: name(&w.to_unit),
                id: wid,
                title: w.title,
                description: w.description,
                raised_by: w.raised_by,
                raised_at_ms: w.raised_at_ms,
                to_unit: w.to_unit,
                responses: found,
                resolved_at_ms: w.resolved_at_ms,
                rating: w.rating,
            });
        }
    }
    rows.sort_by(|a, b| (a.raised_at_ms, &a.id).cmp(&(b.raised_at_ms, &b.id)));
    Ok(rows)
}

pub fn whistle(ctx: &Ctx, cmd: WhistleCmd) -> anyhow::Result<ExitCode> {
    let node = Node::connect(ctx)?;
    let person = ctx.person();
    match cmd {
        WhistleCmd::Raise {
            title,
            description,
            to,
        } => {
            UnitId::new(&to)
                .with_context(|| format!("--to {to:?} is not a unit id (e.g. tiedong/jiefang)"))?;
            let doc = node.own_task_list()?;
            let r = node.apply(
                &doc,
                &Op::WhistleRaise {
                    id: None,
                    whistle: NewWhistle {
                        title: title.clone(),
                        description,
                        to_unit: to.clone(),
                        raised_by: node.signer_name(person),
                    },
                },
                person,
            )?;
            if ctx.json {
                return json_ok(&r);
            }
            let id = r.record.unwrap_or_default();
            println!("{id}");
            eprintln!(
                "Raised whistle {title} to {to}. They report in with:\n  linli whistle respond {} {id} --text …",
                short(&doc)
            );
        }
        WhistleCmd::Respond {
            whistle_doc,
            whistle_id,
            text,
        } => {
            let view = node.doc_of_kind(&whistle_doc, Kind::TaskList, WHISTLE_HINT)?;
            let target = view.summary.id;
            let state: List = node.state(&target)?;
            let (wid, w) = pick(
                &state.whistles,
                &whistle_id,
                "whistle",
                &target,
                WHISTLE_HINT,
            )?;
            let doc = node.own_task_list()?;
            let r = node.apply(
                &doc,
                &Op::WhistleRespond {
                    id: None,
                    whistle_doc: target.clone(),
                    whistle_id: wid.to_owned(),
                    text,
                    by: node.signer_name(person),
                },
                person,
            )?;
            if ctx.json {
                return json_ok(&r);
            }
            println!(
                "Reported in on whistle {} ({wid}) of {}; the response is on this unit's task list {}",
                w.title,
                view.summary.unit,
                short(&doc)
            );
        }
        WhistleCmd::Resolve { id } => {
            let doc = node.own_task_list()?;
            let state: List = node.state(&doc)?;
            let (wid, w) = pick(&state.whistles, &id, "whistle", &doc, WHISTLE_HINT)?;
            let r = node.apply(&doc, &Op::WhistleResolve { id: wid.to_owned() }, person)?;
            if ctx.json {
                return json_ok(&r);
            }
            println!("Whistle {} ({wid}) resolved", w.title);
        }
        WhistleCmd::Rate { id, score, comment } => {
            let doc = node.own_task_list()?;
            let state: List = node.state(&doc)?;
            let (wid, w) = pick(&state.whistles, &id, "whistle", &doc, WHISTLE_HINT)?;
            let r = node.apply(
                &doc,
                &Op::WhistleRate {
                    id: wid.to_owned(),
                    score,
                    comment: comment.unwrap_or_default(),
                },
                person,
            )?;
            if ctx.json {
                return json_ok(&r);
            }
            println!("Rated the response to {} ({wid}): {score}/5", w.title);
        }
        WhistleCmd::List { waiting } => {
            let mut rows = whistles(&node)?;
            if waiting {
                rows.retain(|r| r.waiting);
            }
            if ctx.json {
                return json_ok(&rows);
            }
            if rows.is_empty() {
                println!("No whistles{}.", if waiting { " waiting" } else { "" });
                return ok();
            }
            print_table(
                &[
                    "doc",
                    "id",
                    "raised by",
                    "to",
                    "title",
                    "raised",
                    "responses",
                    "resolved",
                    "rating",
                ],
                rows.iter()
                    .map(|r| {
                        vec![
                            short(&r.doc),
                            r.id.clone(),
                            format!(
                                "{} ({})",
                                r.raised_by,
                                r.unit_name.as_deref().unwrap_or(&r.unit)
                            ),
                            r.to_unit_name.clone().unwrap_or_else(|| r.to_unit.clone()),
                            r.title.clone(),
                            time(r.raised_at_ms),
                            if r.waiting {
                                "WAITING for a response".to_owned()
                            } else if r.responses.is_empty() {
                                "none".to_owned()
                            } else {
                                r.responses
                                    .iter()
                                    .map(|x| format!("{} ({}): {}", x.by, x.unit, x.text))
                                    .collect::<Vec<_>>()
                                    .join("\n")
                            },
                            r.resolved_at_ms.map(time).unwrap_or_else(|| "–".to_owned()),
                            r.rating
                                .as_ref()
                                .map(|x| format!("{}/5 {}", x.score, x.comment))
                                .unwrap_or_else(|| "–".to_owned()),
                        ]
                    })
                    .collect(),
            );
        }
    }
    ok()
}
