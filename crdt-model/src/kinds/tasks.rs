//! A unit's task list: the community's work by legal category, the requests of district
//! departments to send more work down, and the whistles (吹哨) a community raises upward with
//! the responses (报到) and ratings they get.
//!
//! Communities work from two legal lists: duties (依法履行职责事项) and assistance to the party
//! committee and government (依法协助党委和政府工作事项). Anything else must be submitted with
//! its legal basis, reviewed by civil affairs (初审), approved by the party committee or government
//! (审批), come with funding and staff, and "unapproved items may not be assigned to communities
//! at all" (admission: seed 000 §一(一); also 003 §四(四), 002 §四, 004 (二十三)). So a task of
//! category [`Category::Admitted`] must carry an [`Admission`] naming the request and the two
//! attestations; a document holding one without it fails [`hydrate`], and so [`super::validate`]
//! on ingest. Whether the attestations verify is checked by the model's attestation code.
//!
//! Upward, a community blows the whistle on a problem it cannot solve and departments report in;
//! the community then rates their response (吹哨报到, 以下评上: seed 001). Each unit writes only
//! its own documents, so a whistle lives in the community's task list and the response in the
//! responding unit's, pointing back by document id and whistle id.

use std::collections::BTreeMap;

use automerge::AutoCommit;
use autosurgeon::{Hydrate, Reconcile};

use super::{EditError, SchemaError, UnknownValue};

const TASKS: &str = "tasks";
const REQUESTS: &str = "requests";
const WHISTLES: &str = "whistles";
const RESPONSES: &str = "responses";

string_enum! {
    /// Where a task's authority comes from (seed 000 §一(一)).
    pub enum Category ("a task category") {
        /// On the duty list.
        Duty = "duty", "依法履行职责事项";
        /// On the assistance list.
        Assistance = "assistance", "依法协助党委和政府工作事项";
        /// Outside both lists, admitted by review and approval.
        Admitted = "admitted", "准入事项";
    }
}

string_enum! {
    pub enum Status ("a task status") {
        Open = "open", "待办";
        InProgress = "in-progress", "办理中";
        Done = "done", "已完成";
        Cancelled = "cancelled", "已取消";
    }
}

impl Status {
    /// Still to be done.
    pub fn is_open(self) -> bool {
        matches!(self, Status::Open | Status::InProgress)
    }
}

/// Why an item outside the lists may be worked on: the department's request and the district's
/// review (civil affairs) and approval (party committee / government) attestations.
#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct Admission {
    /// Document id of the task list holding the request.
    pub request_doc: String,
    /// Id of the request in that document.
    pub request_id: String,
    /// Attestation id of the review (初审).
    pub review: String,
    /// Attestation id of the approval (审批).
    pub approval: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct Task {
    pub title: String,
    pub category: Category,
    pub status: Status,
    /// `"YYYY-MM-DD"`.
    pub due: Option<String>,
    pub assignee: Option<String>,
    pub note: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Present exactly when `category` is [`Category::Admitted`].
    pub admission: Option<Admission>,
}

/// The arguments of [`add_task`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewTask {
    pub title: String,
    pub category: Category,
    pub due: Option<String>,
    pub assignee: Option<String>,
    pub note: String,
    pub admission: Option<Admission>,
}

/// A department's request to have communities do work outside the lists (seed 000 §一(一),
/// 003 §四(四)): the item, its legal basis, and the funding and staff that must come with it.
#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct Request {
    pub title: String,
    pub department: String,
    pub legal_basis: String,
    pub funding: String,
    pub staffing: String,
    /// Unit ids of the communities the work would go to.
    pub target_units: Vec<String>,
    /// `"YYYY-MM-DD"`.
    pub due: Option<String>,
    pub created_at_ms: i64,
}

/// A problem a community cannot solve alone, raised to a unit above or a department (吹哨).
#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct Whistle {
    pub title: String,
    pub description: String,
    /// Unit id of who is called.
    pub to_unit: String,
    pub raised_at_ms: i64,
    pub raised_by: String,
    pub resolved_at_ms: Option<i64>,
    /// The community's rating of the response (以下评上).
    pub rating: Option<Rating>,
}

/// The arguments of [`raise_whistle`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct NewWhistle {
    pub title: String,
    pub description: String,
    pub to_unit: String,
    pub raised_by: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct Rating {
    /// 1 (worst) to 5 (best).
    pub score: u8,
    pub comment: String,
    pub at_ms: i64,
}

/// The lowest and highest rating score.
pub const SCORE_MIN: u8 = 1;
pub const SCORE_MAX: u8 = 5;

/// A unit reporting in on another unit's whistle (报到). Lives in the responder's task list.
#[derive(Debug, Clone, PartialEq, Eq, Hydrate, Reconcile, serde::Serialize, serde::Deserialize)]
pub struct Response {
    /// Document id of the community's task list holding the whistle.
    pub whistle_doc: String,
    pub whistle_id: String,
    pub text: String,
    pub by: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct List {
    pub tasks: BTreeMap<String, Task>,
    pub requests: BTreeMap<String, Request>,
    pub whistles: BTreeMap<String, Whistle>,
    pub responses: BTreeMap<String, Response>,
}

impl Task {
    /// Open or in progress and due before `today` (`"YYYY-MM-DD"`).
    pub fn is_overdue(&self, today: &str) -> bool {
        self.status.is_open() && self.due.as_deref().is_some_and(|d| d < today)
    }
}

/// Writes the empty task list. Called once, by the creator, in the first change.
pub fn init(doc: &mut AutoCommit) -> Result<(), EditError> {
    super::init_maps(doc, &[TASKS, REQUESTS, WHISTLES, RESPONSES])
}

pub fn hydrate(doc: &impl automerge::ReadDoc) -> Result<List, SchemaError> {
    let doc = &super::Reader::new(doc);
    let list = List {
        tasks: super::records(doc, TASKS)?,
        requests: super::records(doc, REQUESTS)?,
        whistles: super::records(doc, WHISTLES)?,
        responses: super::records(doc, RESPONSES)?,
    };
    for (id, task) in &list.tasks {
        check_task(id, task)?;
    }
    for (id, request) in &list.requests {
        check_request(id, request)?;
    }
    for (id, whistle) in &list.whistles {
        check_whistle(id, whistle)?;
    }
    Ok(list)
}

fn check_optional_date(field: &'static str, value: Option<&str>) -> Result<(), EditError> {
    value.map_or(Ok(()), |d| super::check_date(field, d))
}

fn check_optional(field: &'static str, value: Option<&str>) -> Result<(), EditError> {
    value.map_or(Ok(()), |v| super::non_empty(field, v))
}

/// Adds an open task. An admitted task needs its admission and no other task may carry one
/// (seed 000 §一(一): 凡未经批准的工作事项,一律不得交由社区落实).
pub fn add_task(
    doc: &mut AutoCommit,
    id: &str,
    task: &NewTask,
    at_ms: i64,
) -> Result<(), EditError> {
    super::non_empty("title", &task.title)?;
    check_optional_date("due", task.due.as_deref())?;
    check_optional("assignee", task.assignee.as_deref())?;
    match (&task.admission, task.category) {
        (None, Category::Admitted) => {
            return Err(super::invalid(
                "admission",
                "an admitted task needs its request, review and approval",
            ));
        }
        (Some(_), category) if category != Category::Admitted => {
            return Err(super::invalid(
                "admission",
                format!("only admitted tasks carry one, not {category} tasks"),
            ));
        }
        (Some(a), _) => {
            super::non_empty("admission.request_doc", &a.request_doc)?;
            super::non_empty("admission.request_id", &a.request_id)?;
            super::non_empty("admission.review", &a.review)?;
            super::non_empty("admission.approval", &a.approval)?;
        }
        (None, _) => {}
    }
    let record = Task {
        title: task.title.clone(),
        category: task.category,
        status: Status::Open,
        due: task.due.clone(),
        assignee: task.assignee.clone(),
        note: task.note.clone(),
        created_at_ms: at_ms,
        updated_at_ms: at_ms,
        admission: task.admission.clone(),
    };
    super::insert_record(doc, TASKS, id, &record)
}

/// Writes one field of a task and its `updated_at_ms`, nothing else, so concurrent edits of
/// different fields of one task all survive the merge.
fn touch<R: Reconcile>(
    doc: &mut AutoCommit,
    id: &str,
    field: &str,
    value: &R,
    at_ms: i64,
) -> Result<(), EditError> {
    super::put_field(doc, TASKS, id, field, value)?;
    super::put_field(doc, TASKS, id, "updated_at_ms", &at_ms)
}

pub fn update_status(
    doc: &mut AutoCommit,
    id: &str,
    status: Status,
    at_ms: i64,
) -> Result<(), EditError> {
    touch(doc, id, "status", &status, at_ms)
}

/// Sets or clears the assignee.
pub fn assign(
    doc: &mut AutoCommit,
    id: &str,
    assignee: Option<&str>,
    at_ms: i64,
) -> Result<(), EditError> {
    check_optional("assignee", assignee)?;
    touch(doc, id, "assignee", &assignee, at_ms)
}

/// Sets or clears the due date (`"YYYY-MM-DD"`).
pub fn set_due(
    doc: &mut AutoCommit,
    id: &str,
    due: Option<&str>,
    at_ms: i64,
) -> Result<(), EditError> {
    check_optional_date("due", due)?;
    touch(doc, id, "due", &due, at_ms)
}

pub fn set_note(doc: &mut AutoCommit, id: &str, note: &str, at_ms: i64) -> Result<(), EditError> {
    touch(doc, id, "note", &note, at_ms)
}

/// Records a department's request. The legal basis, funding and staffing are required because
/// the policy makes them conditions of admission (seed 000 §一(一): 提供必要的经费、人员等支持).
pub fn add_request(doc: &mut AutoCommit, id: &str, request: &Request) -> Result<(), EditError> {
    super::non_empty("title", &request.title)?;
    super::non_empty("department", &request.department)?;
    super::non_empty("legal_basis", &request.legal_basis)?;
    super::non_empty("funding", &request.funding)?;
    super::non_empty("staffing", &request.staffing)?;
    if request.target_units.is_empty() {
        return Err(super::invalid("target_units", "names no unit"));
    }
    for unit in &request.target_units {
        super::non_empty("target_units", unit)?;
    }
    check_optional_date("due", request.due.as_deref())?;
    super::insert_record(doc, REQUESTS, id, request)
}

pub fn raise_whistle(
    doc: &mut AutoCommit,
    id: &str,
    whistle: &NewWhistle,
    at_ms: i64,
) -> Result<(), EditError> {
    super::non_empty("title", &whistle.title)?;
    super::non_empty("to_unit", &whistle.to_unit)?;
    super::non_empty("raised_by", &whistle.raised_by)?;
    let record = Whistle {
        title: whistle.title.clone(),
        description: whistle.description.clone(),
        to_unit: whistle.to_unit.clone(),
        raised_at_ms: at_ms,
        raised_by: whistle.raised_by.clone(),
        resolved_at_ms: None,
        rating: None,
    };
    super::insert_record(doc, WHISTLES, id, &record)
}

/// Records, in the responding unit's own task list, its response to whistle `whistle_id` of the
/// community document `whistle_doc` (报到). The whistle is in another document, so it is not
/// checked here.
pub fn respond(
    doc: &mut AutoCommit,
    id: &str,
    whistle_doc: &str,
    whistle_id: &str,
    text: &str,
    by: &str,
    at_ms: i64,
) -> Result<(), EditError> {
    super::non_empty("whistle_doc", whistle_doc)?;
    super::non_empty("whistle_id", whistle_id)?;
    super::non_empty("text", text)?;
    super::non_empty("by", by)?;
    let record = Response {
        whistle_doc: whistle_doc.to_owned(),
        whistle_id: whistle_id.to_owned(),
        text: text.to_owned(),
        by: by.to_owned(),
        at_ms,
    };
    super::insert_record(doc, RESPONSES, id, &record)
}

/// Marks a whistle resolved (once).
pub fn resolve_whistle(doc: &mut AutoCommit, id: &str, at_ms: i64) -> Result<(), EditError> {
    let whistle: Whistle = super::record(doc, WHISTLES, id)?;
    if whistle.resolved_at_ms.is_some() {
        return Err(super::invalid("resolved_at_ms", "already resolved"));
    }
    super::put_field(doc, WHISTLES, id, "resolved_at_ms", &Some(at_ms))
}

/// The community rates the response to its whistle (以下评上, seed 001), once. The response is
/// in the responder's document, so the caller says whether one exists (`has_response`).
pub fn rate_whistle(
    doc: &mut AutoCommit,
    id: &str,
    score: u8,
    comment: &str,
    at_ms: i64,
    has_response: bool,
) -> Result<(), EditError> {
    if !(SCORE_MIN..=SCORE_MAX).contains(&score) {
        return Err(super::invalid(
            "score",
            format!("{score} is outside {SCORE_MIN}..={SCORE_MAX}"),
        ));
    }
    let whistle: Whistle = super::record(doc, WHISTLES, id)?;
    if !has_response {
        return Err(super::invalid("rating", "no response to rate yet"));
    }
    if whistle.rating.is_some() {
        return Err(super::invalid("rating", "already rated"));
    }
    let rating = Rating {
        score,
        comment: comment.to_owned(),
        at_ms,
    };
    super::put_field(doc, WHISTLES, id, "rating", &Some(rating))
}

/// Open or in-progress tasks due before `today` (`"YYYY-MM-DD"`), earliest first.
pub fn overdue<'a>(list: &'a List, today: &str) -> Result<Vec<(&'a str, &'a Task)>, EditError> {
    super::check_date("today", today)?;
    let mut out: Vec<(&str, &Task)> = list
        .tasks
        .iter()
        .filter(|(_, t)| t.status.is_open())
        .filter(|(_, t)| t.due.as_deref().is_some_and(|due| due < today))
        .map(|(id, t)| (id.as_str(), t))
        .collect();
    out.sort_by(|a, b| (a.1.due.as_deref(), a.0).cmp(&(b.1.due.as_deref(), b.0)));
    Ok(out)
}

/// Whistles not yet resolved, by id.
pub fn open_whistles(list: &List) -> Vec<(&str, &Whistle)> {
    list.whistles
        .iter()
        .filter(|(_, w)| w.resolved_at_ms.is_none())
        .map(|(id, w)| (id.as_str(), w))
        .collect()
}

/// The responses in `list` to whistle `whistle_id` of document `whistle_doc`.
pub fn responses_to<'a>(
    list: &'a List,
    whistle_doc: &str,
    whistle_id: &str,
) -> Vec<(&'a str, &'a Response)> {
    list.responses
        .iter()
        .filter(|(_, r)| r.whistle_doc == whistle_doc && r.whistle_id == whistle_id)
        .map(|(id, r)| (id.as_str(), r))
        .collect()
}

/// How many tasks are in each status.
pub fn count_by_status(list: &List) -> BTreeMap<Status, usize> {
    let mut counts = BTreeMap::new();
    for task in list.tasks.values() {
        *counts.entry(task.status).or_insert(0) += 1;
    }
    counts
}

fn check_task(id: &str, task: &Task) -> Result<(), SchemaError> {
    let admitted = task.category == Category::Admitted;
    if admitted != task.admission.is_some() {
        return Err(SchemaError::Invalid {
            path: format!("{TASKS}/{id}/admission"),
            reason: if admitted {
                "an admitted task without its admission (seed 000 §一(一))".into()
            } else {
                format!("a {} task carries an admission", task.category)
            },
        });
    }
    if let Some(due) = &task.due {
        super::schema_date(|| format!("{TASKS}/{id}/due"), due)?;
    }
    Ok(())
}

fn check_request(id: &str, request: &Request) -> Result<(), SchemaError> {
    if let Some(due) = &request.due {
        super::schema_date(|| format!("{REQUESTS}/{id}/due"), due)?;
    }
    Ok(())
}

fn check_whistle(id: &str, whistle: &Whistle) -> Result<(), SchemaError> {
    if let Some(rating) = &whistle.rating
        && !(SCORE_MIN..=SCORE_MAX).contains(&rating.score)
    {
        return Err(SchemaError::Invalid {
            path: format!("{WHISTLES}/{id}/rating/score"),
            reason: format!("{} is outside {SCORE_MIN}..={SCORE_MAX}", rating.score),
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
        TASKS => match super::one_record::<Task>(doc, collection, id)? {
            Some(task) => check_task(id, &task),
            None => Ok(()),
        },
        REQUESTS => match super::one_record::<Request>(doc, collection, id)? {
            Some(request) => check_request(id, &request),
            None => Ok(()),
        },
        WHISTLES => match super::one_record::<Whistle>(doc, collection, id)? {
            Some(whistle) => check_whistle(id, &whistle),
            None => Ok(()),
        },
        RESPONSES => super::one_record::<Response>(doc, collection, id).map(drop),
        other => Err(super::unknown_collection(other)),
    }
}

/// The admission of one task, if it is an admitted task (for checking only what changed).
pub fn admission_of(
    doc: &impl automerge::ReadDoc,
    id: &str,
) -> Result<Option<Admission>, SchemaError> {
    let doc = &super::Reader::new(doc);
    doc.partial_root_map(TASKS);
    Ok(super::one_record::<Task>(doc, TASKS, id)?.and_then(|t| t.admission))
}

/// The collection that holds tasks, for callers matching [`super::Touched`] records.
pub const TASKS_COLLECTION: &str = TASKS;

#[cfg(test)]
mod tests {
    use automerge::ReadDoc;
    use automerge::transaction::Transactable;
    use expect_test::expect;
    use proptest::prelude::*;

    use super::super::tests_support::{converges, fork, new_doc};
    use super::*;

    const T0: i64 = 1_762_000_000_000;

    fn new() -> AutoCommit {
        let mut doc = new_doc();
        init(&mut doc).expect("init");
        doc
    }

    fn task(title: &str, category: Category) -> NewTask {
        NewTask {
            title: title.into(),
            category,
            due: None,
            assignee: None,
            note: String::new(),
            admission: (category == Category::Admitted).then(admission),
        }
    }

    fn admission() -> Admission {
        Admission {
            request_doc: "doc-district-tasks".into(),
            request_id: "req-1".into(),
            review: "att-review-1".into(),
            approval: "att-approval-1".into(),
        }
    }

    fn request() -> Request {
        Request {
            title: "电动自行车入户充电排查".into(),
            department: "区消防救援大队".into(),
            legal_basis: "《消防法》第三十二条".into(),
            funding: "区财政专项经费2万元".into(),
            staffing: "消防网格员2名".into(),
            target_units: vec!["tiedong/jiefang/shengli".into()],
            due: Some("2025-12-31".into()),
            created_at_ms: T0,
        }
    }

    fn whistle() -> NewWhistle {
        NewWhistle {
            title: "小区门口占道经营".into(),
            description: "早市摊贩占用消防通道,多次劝离无效".into(),
            to_unit: "tiedong/market-supervision".into(),
            raised_by: "王芳".into(),
        }
    }

    /// A community list with one task of each category.
    fn community() -> AutoCommit {
        let mut doc = new();
        add_task(
            &mut doc,
            "t-1",
            &NewTask {
                due: Some("2025-11-15".into()),
                assignee: Some("王芳".into()),
                ..task("组织居民议事会", Category::Duty)
            },
            T0,
        )
        .expect("add");
        add_task(
            &mut doc,
            "t-2",
            &task("协助开展人口普查", Category::Assistance),
            T0,
        )
        .expect("add");
        add_task(
            &mut doc,
            "t-3",
            &task("电动自行车入户充电排查", Category::Admitted),
            T0,
        )
        .expect("add");
        doc
    }

    #[test]
    fn realistic_community_list() {
        let mut doc = community();
        update_status(&mut doc, "t-1", Status::InProgress, T0 + 1).expect("status");
        set_due(&mut doc, "t-2", Some("2025-11-30"), T0 + 2).expect("due");
        assign(&mut doc, "t-2", Some("李强"), T0 + 3).expect("assign");
        set_note(&mut doc, "t-3", "已排查3栋楼", T0 + 4).expect("note");
        update_status(&mut doc, "t-3", Status::Done, T0 + 5).expect("status");
        raise_whistle(&mut doc, "w-1", &whistle(), T0 + 6).expect("whistle");
        resolve_whistle(&mut doc, "w-1", T0 + 7).expect("resolve");
        rate_whistle(&mut doc, "w-1", 4, "响应及时,但仍有反复", T0 + 8, true).expect("rate");
        let list = hydrate(&doc).expect("hydrate");
        expect![[r#"
            List {
                tasks: {
                    "t-1": Task {
                        title: "组织居民议事会",
                        category: Duty,
                        status: InProgress,
                        due: Some(
                            "2025-11-15",
                        ),
                        assignee: Some(
                            "王芳",
                        ),
                        note: "",
                        created_at_ms: 1762000000000,
                        updated_at_ms: 1762000000001,
                        admission: None,
                    },
                    "t-2": Task {
                        title: "协助开展人口普查",
                        category: Assistance,
                        status: Open,
                        due: Some(
                            "2025-11-30",
                        ),
                        assignee: Some(
                            "李强",
                        ),
                        note: "",
                        created_at_ms: 1762000000000,
                        updated_at_ms: 1762000000003,
                        admission: None,
                    },
                    "t-3": Task {
                        title: "电动自行车入户充电排查",
                        category: Admitted,
                        status: Done,
                        due: None,
                        assignee: None,
                        note: "已排查3栋楼",
                        created_at_ms: 1762000000000,
                        updated_at_ms: 1762000000005,
                        admission: Some(
                            Admission {
                                request_doc: "doc-district-tasks",
                                request_id: "req-1",
                                review: "att-review-1",
                                approval: "att-approval-1",
                            },
                        ),
                    },
                },
                requests: {},
                whistles: {
                    "w-1": Whistle {
                        title: "小区门口占道经营",
                        description: "早市摊贩占用消防通道,多次劝离无效",
                        to_unit: "tiedong/market-supervision",
                        raised_at_ms: 1762000000006,
                        raised_by: "王芳",
                        resolved_at_ms: Some(
                            1762000000007,
                        ),
                        rating: Some(
                            Rating {
                                score: 4,
                                comment: "响应及时,但仍有反复",
                                at_ms: 1762000000008,
                            },
                        ),
                    },
                },
                responses: {},
            }
        "#]]
        .assert_debug_eq(&list);
        let overdue_ids = |today| {
            overdue(&list, today)
                .expect("today")
                .into_iter()
                .map(|(id, _)| id)
                .collect::<Vec<_>>()
        };
        assert_eq!(overdue_ids("2025-11-15"), Vec::<&str>::new());
        assert_eq!(overdue_ids("2025-11-16"), ["t-1"]);
        assert_eq!(overdue_ids("2025-12-01"), ["t-1", "t-2"]);
        assert!(open_whistles(&list).is_empty());
        expect!["{Open: 1, InProgress: 1, Done: 1}"]
            .assert_eq(&format!("{:?}", count_by_status(&list)));
        expect![[r#""in-progress" 办理中"#]].assert_eq(&format!(
            "{} {}",
            serde_json::to_string(&Status::InProgress).expect("json"),
            Status::InProgress.label_zh()
        ));
    }

    #[test]
    fn department_list_requests_and_responds() {
        let mut doc = new();
        add_request(&mut doc, "req-1", &request()).expect("request");
        raise_whistle(&mut doc, "w-9", &whistle(), T0).expect("own whistle");
        respond(
            &mut doc,
            "r-1",
            "doc-shengli-tasks",
            "w-1",
            "已派执法队员现场处置,设置隔离栏",
            "区市场监管局 赵队长",
            T0 + 1,
        )
        .expect("respond");
        let list = hydrate(&doc).expect("hydrate");
        expect![[r#"
            (
                {
                    "req-1": Request {
                        title: "电动自行车入户充电排查",
                        department: "区消防救援大队",
                        legal_basis: "《消防法》第三十二条",
                        funding: "区财政专项经费2万元",
                        staffing: "消防网格员2名",
                        target_units: [
                            "tiedong/jiefang/shengli",
                        ],
                        due: Some(
                            "2025-12-31",
                        ),
                        created_at_ms: 1762000000000,
                    },
                },
                [
                    (
                        "r-1",
                        Response {
                            whistle_doc: "doc-shengli-tasks",
                            whistle_id: "w-1",
                            text: "已派执法队员现场处置,设置隔离栏",
                            by: "区市场监管局 赵队长",
                            at_ms: 1762000000001,
                        },
                    ),
                ],
            )
        "#]]
        .assert_debug_eq(&(
            &list.requests,
            responses_to(&list, "doc-shengli-tasks", "w-1"),
        ));
        assert!(responses_to(&list, "doc-other", "w-1").is_empty());
        assert_eq!(
            open_whistles(&list)
                .iter()
                .map(|(id, _)| *id)
                .collect::<Vec<_>>(),
            ["w-9"]
        );
    }

    #[test]
    fn edit_errors() {
        let mut doc = community();
        raise_whistle(&mut doc, "w-1", &whistle(), T0).expect("whistle");
        raise_whistle(&mut doc, "w-2", &whistle(), T0).expect("whistle");
        resolve_whistle(&mut doc, "w-2", T0).expect("resolve");
        rate_whistle(&mut doc, "w-2", 5, "", T0, true).expect("rate");
        let with = |f: fn(&mut NewTask)| {
            let mut t = task("某项工作", Category::Duty);
            f(&mut t);
            t
        };
        let with_request = |f: fn(&mut Request)| {
            let mut r = request();
            f(&mut r);
            r
        };
        let errors = [
            add_task(&mut doc, "t-1", &task("重复", Category::Duty), T0),
            add_task(&mut doc, "", &task("某项工作", Category::Duty), T0),
            add_task(&mut doc, "t-9", &with(|t| t.title = " ".into()), T0),
            add_task(&mut doc, "t-9", &with(|t| t.due = Some("11/15".into())), T0),
            add_task(&mut doc, "t-9", &with(|t| t.assignee = Some("".into())), T0),
            add_task(
                &mut doc,
                "t-9",
                &with(|t| t.category = Category::Admitted),
                T0,
            ),
            add_task(
                &mut doc,
                "t-9",
                &with(|t| t.admission = Some(admission())),
                T0,
            ),
            add_task(
                &mut doc,
                "t-9",
                &with(|t| {
                    t.category = Category::Admitted;
                    t.admission = Some(Admission {
                        approval: String::new(),
                        ..admission()
                    });
                }),
                T0,
            ),
            update_status(&mut doc, "t-9", Status::Done, T0),
            assign(&mut doc, "t-1", Some(" "), T0),
            assign(&mut doc, "t-9", None, T0),
            set_due(&mut doc, "t-1", Some("2025-02-30"), T0),
            set_note(&mut doc, "t-9", "x", T0),
            add_request(&mut doc, "q", &with_request(|r| r.department.clear())),
            add_request(&mut doc, "q", &with_request(|r| r.legal_basis.clear())),
            add_request(&mut doc, "q", &with_request(|r| r.funding.clear())),
            add_request(&mut doc, "q", &with_request(|r| r.staffing.clear())),
            add_request(&mut doc, "q", &with_request(|r| r.target_units.clear())),
            add_request(
                &mut doc,
                "q",
                &with_request(|r| r.due = Some("soon".into())),
            ),
            raise_whistle(
                &mut doc,
                "w-9",
                &NewWhistle {
                    to_unit: String::new(),
                    ..whistle()
                },
                T0,
            ),
            respond(&mut doc, "r", "", "w-1", "已处理", "赵", T0),
            respond(&mut doc, "r", "d", "w-1", "", "赵", T0),
            resolve_whistle(&mut doc, "w-9", T0),
            resolve_whistle(&mut doc, "w-2", T0),
            rate_whistle(&mut doc, "w-1", 0, "", T0, true),
            rate_whistle(&mut doc, "w-1", 6, "", T0, true),
            rate_whistle(&mut doc, "w-1", 3, "", T0, false),
            rate_whistle(&mut doc, "w-2", 3, "", T0, true),
            rate_whistle(&mut doc, "w-9", 3, "", T0, true),
        ];
        expect![[r#"
            [
                "tasks record \"t-1\" already exists",
                "invalid id: must not be empty",
                "invalid title: must not be empty",
                "invalid due: \"11/15\" is not a date YYYY-MM-DD",
                "invalid assignee: must not be empty",
                "invalid admission: an admitted task needs its request, review and approval",
                "invalid admission: only admitted tasks carry one, not duty tasks",
                "invalid admission.approval: must not be empty",
                "no tasks record \"t-9\"",
                "invalid assignee: must not be empty",
                "no tasks record \"t-9\"",
                "invalid due: \"2025-02-30\" is not a date YYYY-MM-DD",
                "no tasks record \"t-9\"",
                "invalid department: must not be empty",
                "invalid legal_basis: must not be empty",
                "invalid funding: must not be empty",
                "invalid staffing: must not be empty",
                "invalid target_units: names no unit",
                "invalid due: \"soon\" is not a date YYYY-MM-DD",
                "invalid to_unit: must not be empty",
                "invalid whistle_doc: must not be empty",
                "invalid text: must not be empty",
                "no whistles record \"w-9\"",
                "invalid resolved_at_ms: already resolved",
                "invalid score: 0 is outside 1..=5",
                "invalid score: 6 is outside 1..=5",
                "invalid rating: no response to rate yet",
                "invalid rating: already rated",
                "no whistles record \"w-9\"",
            ]
        "#]]
        .assert_debug_eq(&errors.map(|r| r.expect_err("refused").to_string()));
    }

    /// A peer that writes an admitted task without its admission, or the reverse, or an
    /// out-of-range rating, produces a document that ingest must refuse.
    #[test]
    fn schema_errors() {
        let field = |doc: &AutoCommit, map: &str, id: &str| {
            let map = super::super::root_map(doc, map).expect("map");
            doc.get(&map, id)
                .ok()
                .flatten()
                .map(|(_, obj)| obj)
                .expect("record")
        };
        let mut doc = community();
        let t3 = field(&doc, TASKS, "t-3");
        doc.put(&t3, "admission", automerge::ScalarValue::Null)
            .expect("put");
        expect!["tasks/t-3/admission: an admitted task without its admission (seed 000 §一(一))"]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());

        let mut doc = community();
        let t1 = field(&doc, TASKS, "t-1");
        autosurgeon::reconcile_prop(&mut doc, &t1, "admission", Some(admission())).expect("put");
        expect!["tasks/t-1/admission: a duty task carries an admission"]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());

        let mut doc = community();
        let t1 = field(&doc, TASKS, "t-1");
        doc.put(&t1, "due", "2025-11-31").expect("put");
        expect![[r#"tasks/t-1/due: "2025-11-31" is not a date YYYY-MM-DD"#]]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());
        doc.put(&t1, "status", "stuck").expect("put");
        expect![[r#"tasks/t-1: unexpected "stuck", expected a task status (open | in-progress | done | cancelled)"#]]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());

        let mut doc = community();
        raise_whistle(&mut doc, "w-1", &whistle(), T0).expect("whistle");
        let w1 = field(&doc, WHISTLES, "w-1");
        let rating = Rating {
            score: 9,
            comment: String::new(),
            at_ms: T0,
        };
        autosurgeon::reconcile_prop(&mut doc, &w1, "rating", Some(rating)).expect("put");
        expect!["whistles/w-1/rating/score: 9 is outside 1..=5"]
            .assert_eq(&hydrate(&doc).expect_err("schema").to_string());
    }

    #[test]
    fn concurrent_field_edits_of_one_task_merge() {
        let mut a = community();
        let mut b = fork(&mut a, 2);
        update_status(&mut a, "t-2", Status::InProgress, T0 + 10).expect("status");
        assign(&mut b, "t-2", Some("李强"), T0 + 20).expect("assign");
        set_due(&mut b, "t-2", Some("2025-12-01"), T0 + 20).expect("due");
        add_task(
            &mut b,
            "t-4",
            &task("清理楼道杂物", Category::Duty),
            T0 + 20,
        )
        .expect("add");
        add_task(
            &mut a,
            "t-5",
            &task("走访困难家庭", Category::Duty),
            T0 + 10,
        )
        .expect("add");
        a.merge(&mut b).expect("merge");
        let list = hydrate(&a).expect("hydrate");
        let t2 = &list.tasks["t-2"];
        assert_eq!(
            (t2.status, t2.assignee.as_deref(), t2.due.as_deref()),
            (Status::InProgress, Some("李强"), Some("2025-12-01"))
        );
        assert_eq!(list.tasks.len(), 5);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(16))]
        #[test]
        fn any_order_converges(order in Just((0..12usize).collect::<Vec<_>>()).prop_shuffle()) {
            converges(community, |doc, i| {
                let at = T0 + i as i64;
                match i % 4 {
                    0 => update_status(doc, "t-1", Status::ALL[(i / 4) % 4], at).expect("status"),
                    1 => assign(doc, "t-1", Some(&format!("worker-{i}")), at).expect("assign"),
                    2 => add_task(doc, &format!("t-new-{i}"), &task("新任务", Category::Duty), at)
                        .expect("add"),
                    _ => raise_whistle(doc, &format!("w-{i}"), &whistle(), at).expect("whistle"),
                }
            }, 12, &order, hydrate);
        }
    }
}
