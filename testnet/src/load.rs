//! Realistic traffic through the nodes' APIs, and the log that makes loss visible.
//!
//! The mix follows the work each level does (DOMAIN.md): community workers assign households and
//! log visits (the bulk of the records), keep minutes of residents' councils, update tasks, edit
//! their convention and blow the whistle upward; streets and the district report in (报到); the
//! district's civil affairs and government submit, review and approve work for communities
//! (准入). Writes are signed as the person who would make them (`?as=wangfang`).
//!
//! Every edit a node acknowledges is appended to `DIR/acked.jsonl` *before* it is counted, so if
//! the load is killed, each counted edit is in the log, and `check` can prove it survived. An
//! edit that failed was never acknowledged and is not logged. A node that does not answer is
//! counted and skipped; the load goes on with the others.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use linli_crdt_model::attest::Statement;
use linli_crdt_model::doc::Scope;
use linli_crdt_model::kinds::{Kind, minutes, tasks, visits};
use linli_crdt_model::unit::{UnitId, UnitKind};
use linli_node::contract::{AttestRequest, CreateDoc, DocFilter, DocSummary, Op, StatusView};
use rand::rngs::Xoshiro256PlusPlus;
use rand::seq::IndexedRandom as _;
use rand::{RngExt as _, SeedableRng as _};
use serde::{Deserialize, Serialize};

use crate::client::{self, ApiError, Client};
use crate::state::{self, State};
use crate::{Error, Event, Progress, time};

/// Most operations one `load` makes.
pub const OPS_MAX: u64 = 10_000_000;
/// Households a community's workers are assigned in the load's month.
pub const HOUSEHOLDS_PER_COMMUNITY: u32 = 40;
/// Error messages kept in the report; the counts say how many there were.
pub const ERRORS_LISTED_MAX: usize = 10;

/// What a line of `acked.jsonl` is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AckKind {
    /// A document was created.
    Create,
    /// An operation on a document: a change.
    Edit,
    /// An attestation (it lives in the issuer's ledger).
    Attest,
}

/// One acknowledged edit (a line of `acked.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Acked {
    /// The unit of the node that acknowledged it.
    pub unit: String,
    pub what: AckKind,
    /// The operation (`visit-add`), `create`, or the statement (`approved`).
    pub op: String,
    pub doc: String,
    /// The document's unit and scope: which nodes must hold it.
    pub doc_unit: String,
    pub scope: Scope,
    /// Where the record lives in the document's state (`entries`, `tasks`…).
    pub collection: Option<String>,
    pub record: Option<String>,
    /// The change hash the node acknowledged.
    pub change: Option<String>,
    pub attestation: Option<String>,
    pub at_ms: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct LoadOptions {
    pub ops: u64,
    /// Operations per second at most; `None`: as fast as the nodes answer.
    pub rate: Option<f64>,
    /// Seed of the choices; `None`: from the clock (the report says which).
    pub seed: Option<u64>,
}

/// What a load did.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct LoadReport {
    pub seed: u64,
    pub attempted: u64,
    /// Acknowledged and logged.
    pub acked: u64,
    /// The node answered no (a conflict, a refusal).
    pub refused: u64,
    /// The node did not answer (down, restarting).
    pub unreachable: u64,
    pub elapsed_ms: u64,
    /// Acknowledged edits per second.
    pub ops_per_s: f64,
    pub by_op: BTreeMap<String, u64>,
    /// Failed operations per unit.
    pub failures: BTreeMap<String, u64>,
    pub errors: Vec<String>,
}

/// A seeded generator, so the same seed makes the same traffic: rand's xoshiro256++, a
/// generator whose output for a given seed rand keeps the same from release to release.
#[derive(Debug, Clone)]
pub(crate) struct Rng(Xoshiro256PlusPlus);

impl Rng {
    pub(crate) fn new(seed: u64) -> Rng {
        Rng(Xoshiro256PlusPlus::seed_from_u64(seed))
    }
    /// Uniform in `0..n` (`n > 0`).
    pub(crate) fn below(&mut self, n: u64) -> u64 {
        self.0.random_range(..n.max(1))
    }
    pub(crate) fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.choose(&mut self.0)
    }
    pub(crate) fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// A minutes document as the load knows it.
#[derive(Debug, Clone)]
pub(crate) struct MinutesDoc {
    pub(crate) id: String,
    pub(crate) published: bool,
    pub(crate) n_decisions: usize,
}

/// One node as the load drives it: its API and what it has written.
#[derive(Debug)]
pub(crate) struct Site {
    pub(crate) unit: UnitId,
    pub(crate) kind: UnitKind,
    pub(crate) name: String,
    pub(crate) client: Client,
    discovered: bool,
    /// Writers (community workers): handle and name.
    pub(crate) workers: Vec<(String, String)>,
    pub(crate) task_list: Option<String>,
    pub(crate) visit_log: Option<String>,
    pub(crate) convention: Option<String>,
    pub(crate) minutes: Vec<MinutesDoc>,
    pub(crate) tasks: Vec<String>,
    pub(crate) assigned: Vec<String>,
    pub(crate) articles: Vec<String>,
    /// Scopes of this unit's documents.
    scopes: BTreeMap<String, Scope>,
}

impl Site {
    pub(crate) fn new(n: &state::Node) -> Site {
        Site {
            unit: n.unit.clone(),
            kind: n.kind,
            name: n.name.clone(),
            client: client::of(&n.data_dir),
            discovered: false,
            workers: Vec::new(),
            task_list: None,
            visit_log: None,
            convention: None,
            minutes: Vec::new(),
            tasks: Vec::new(),
            assigned: Vec::new(),
            articles: Vec::new(),
            scopes: BTreeMap::new(),
        }
    }

    /// Learn what the node holds of its own: its documents, tasks, households and articles.
    pub(crate) fn discover(&mut self, month: &str) -> Result<(), ApiError> {
        if self.discovered {
            return Ok(());
        }
        let status: StatusView = self.client.status()?;
        self.workers = status
            .status
            .people
            .iter()
            .filter(|p| p.role.as_deref() == Some("writer"))
            .map(|p| {
                (
                    p.handle.clone(),
                    p.holder.clone().unwrap_or_else(|| p.handle.clone()),
                )
            })
            .collect();
        let docs: Vec<DocSummary> = self.client.docs(&DocFilter {
            unit: Some(self.unit.to_string()),
            ..DocFilter::default()
        })?;
        for d in &docs {
            if let Ok(s) = d.scope.parse() {
                self.scopes.insert(d.id.clone(), s);
            }
            match d.kind {
                Kind::TaskList => {
                    self.task_list = Some(d.id.clone());
                    let st: serde_json::Value = self.client.state(&d.id)?;
                    self.tasks = keys(&st["tasks"]);
                }
                Kind::VisitLog if d.period.as_deref() == Some(month) => {
                    self.visit_log = Some(d.id.clone());
                    let st: serde_json::Value = self.client.state(&d.id)?;
                    self.assigned = keys(&st["assignments"]);
                }
                Kind::Convention => {
                    self.convention = Some(d.id.clone());
                    let st: serde_json::Value = self.client.state(&d.id)?;
                    self.articles = keys(&st["articles"]);
                }
                Kind::Minutes => {
                    let st: serde_json::Value = self.client.state(&d.id)?;
                    self.minutes.push(MinutesDoc {
                        id: d.id.clone(),
                        published: st["published"].as_bool().unwrap_or(true),
                        n_decisions: keys(&st["decisions"]).len(),
                    });
                }
                _ => {}
            }
        }
        self.discovered = true;
        Ok(())
    }

    /// The worker the examples name (王芳, `wangfang`) if this unit has her, else the first.
    pub(crate) fn lead_worker(&self) -> (String, String) {
        self.workers
            .iter()
            .find(|(h, _)| h == "wangfang")
            .or(self.workers.first())
            .cloned()
            .unwrap_or_else(|| ("admin".to_owned(), format!("{}管理员", self.name)))
    }

    pub(crate) fn worker(&self, rng: &mut Rng) -> (String, String) {
        rng.pick(&self.workers)
            .cloned()
            .unwrap_or_else(|| ("admin".to_owned(), format!("{}管理员", self.name)))
    }
}

fn keys(v: &serde_json::Value) -> Vec<String> {
    v.as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default()
}

/// Where an operation's record lives in the document's state.
fn collection(op: &Op) -> Option<&'static str> {
    Some(match op {
        Op::VisitAssign { .. } | Op::VisitUnassign { .. } => "assignments",
        Op::VisitAdd { .. } | Op::VisitFollowUp { .. } => "entries",
        Op::ArticleAdd { .. } | Op::ArticleEdit { .. } | Op::ArticleTitle { .. } => "articles",
        Op::RevisionAdd { .. } => "revisions",
        Op::ParticipantAdd { .. } => "participants",
        Op::OpinionAdd { .. } => "opinions",
        Op::DecisionAdd { .. } => "decisions",
        Op::FollowUpAdd { .. } | Op::FollowUpDone { .. } => "follow_ups",
        Op::TaskAdd { .. }
        | Op::TaskStatus { .. }
        | Op::TaskAssign { .. }
        | Op::TaskDue { .. }
        | Op::TaskNote { .. } => "tasks",
        Op::RequestAdd { .. } => "requests",
        Op::WhistleRaise { .. } | Op::WhistleResolve { .. } | Op::WhistleRate { .. } => "whistles",
        Op::WhistleRespond { .. } => "responses",
        // Removals and whole-document changes leave no record to find.
        Op::ArticleRemove { .. } | Op::Adopt { .. } | Op::MinutesMeta { .. } => return None,
        Op::StageAdvance { .. } | Op::Publish => return None,
        Op::UnitPut { .. } | Op::ListItemPut { .. } | Op::ListItemRemove { .. } => return None,
    })
}

/// Sends writes and logs every acknowledged one before counting it. Shared by the load's
/// threads: the lock is held only to log and count, never across a request.
#[derive(Debug)]
pub(crate) struct Writer {
    inner: Mutex<Inner>,
    log_path: std::path::PathBuf,
}

#[derive(Debug)]
struct Inner {
    log: File,
    report: LoadReport,
}

impl Writer {
    pub(crate) fn open(dir: &Path) -> Result<Writer, Error> {
        let log_path = dir.join(state::ACKED_FILE);
        let log = File::options()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|source| Error::Io {
                path: log_path.clone(),
                source,
            })?;
        Ok(Writer {
            inner: Mutex::new(Inner {
                log,
                report: LoadReport::default(),
            }),
            log_path,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A thread that panicked mid-count leaves counts that are still counts.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn report(&self) -> LoadReport {
        self.lock().report.clone()
    }

    fn attempt(&self) {
        self.lock().report.attempted += 1;
    }

    fn ack(&self, a: &Acked) -> Result<(), Error> {
        let mut line = serde_json::to_string(a).expect("an Acked always serializes");
        line.push('\n');
        let mut inner = self.lock();
        inner
            .log
            .write_all(line.as_bytes())
            .map_err(|source| Error::Io {
                path: self.log_path.clone(),
                source,
            })?;
        inner.report.acked += 1;
        *inner.report.by_op.entry(a.op.clone()).or_insert(0) += 1;
        Ok(())
    }

    fn failed(&self, site: &mut Site, what: &str, e: &ApiError) {
        if e.is_unreachable() {
            // It may have been restarted: read its address again next time.
            site.client.refresh();
        }
        let mut inner = self.lock();
        let r = &mut inner.report;
        if e.is_unreachable() {
            r.unreachable += 1;
        } else {
            r.refused += 1;
        }
        *r.failures.entry(site.unit.to_string()).or_insert(0) += 1;
        if r.errors.len() < ERRORS_LISTED_MAX {
            r.errors.push(format!("{} {what}: {e}", site.unit));
        }
    }

    /// Create a document at `site` as `person`; `Ok(None)` if the node failed it.
    pub(crate) fn create(
        &self,
        site: &mut Site,
        req: CreateDoc,
        person: &str,
    ) -> Result<Option<String>, Error> {
        self.attempt();
        let scope = req
            .scope
            .unwrap_or_else(|| linli_crdt_model::doc::default_scope(req.kind));
        let kind = req.kind;
        match site.client.create_doc(&req, Some(person)) {
            Ok(c) => {
                self.ack(&Acked {
                    unit: site.unit.to_string(),
                    what: AckKind::Create,
                    op: format!("create-{}", kind.as_str()),
                    doc: c.id.clone(),
                    doc_unit: site.unit.to_string(),
                    scope,
                    collection: None,
                    record: None,
                    change: None,
                    attestation: None,
                    at_ms: linli_node::clock::now_ms(),
                })?;
                site.scopes.insert(c.id.clone(), scope);
                Ok(Some(c.id))
            }
            Err(e) => {
                self.failed(site, &format!("create {}", kind.as_str()), &e);
                Ok(None)
            }
        }
    }

    /// Apply `op` to `doc` (a document of `site`'s unit) as `person`; the record id written.
    pub(crate) fn op(
        &self,
        site: &mut Site,
        doc: &str,
        op: &Op,
        person: &str,
    ) -> Result<Option<String>, Error> {
        self.attempt();
        match site.client.apply(doc, op, Some(person)) {
            Ok(r) => {
                let scope = site.scopes.get(doc).copied().unwrap_or(Scope::Chain);
                self.ack(&Acked {
                    unit: site.unit.to_string(),
                    what: AckKind::Edit,
                    op: op.name().to_owned(),
                    doc: r.doc.clone(),
                    doc_unit: site.unit.to_string(),
                    scope,
                    collection: collection(op).map(str::to_owned),
                    record: r.record.clone(),
                    change: Some(r.change.clone()),
                    attestation: None,
                    at_ms: linli_node::clock::now_ms(),
                })?;
                // An id the node made stands in for "done" too.
                Ok(Some(r.record.unwrap_or_default()))
            }
            Err(e) => {
                self.failed(site, op.name(), &e);
                Ok(None)
            }
        }
    }

    /// Attest `doc` (owned by `doc_unit`) at `site` as `person`; the attestation id.
    #[allow(
        clippy::too_many_arguments,
        reason = "each is one field of the statement"
    )]
    pub(crate) fn attest(
        &self,
        site: &mut Site,
        doc: &str,
        doc_unit: &str,
        statement: Statement,
        subject: Option<String>,
        note: &str,
        person: &str,
    ) -> Result<Option<String>, Error> {
        self.attempt();
        let req = AttestRequest {
            statement,
            subject,
            note: Some(note.to_owned()),
        };
        match site.client.attest(doc, &req, Some(person)) {
            Ok(c) => {
                self.ack(&Acked {
                    unit: site.unit.to_string(),
                    what: AckKind::Attest,
                    op: statement.as_str().to_owned(),
                    doc: doc.to_owned(),
                    doc_unit: doc_unit.to_owned(),
                    scope: Scope::Public,
                    collection: None,
                    record: None,
                    change: None,
                    attestation: Some(c.id.clone()),
                    at_ms: linli_node::clock::now_ms(),
                })?;
                Ok(Some(c.id))
            }
            Err(e) => {
                self.failed(site, statement.as_str(), &e);
                Ok(None)
            }
        }
    }
}

// ----- what the traffic says -----

pub(crate) const SURNAMES: &[&str] = &[
    "王", "李", "张", "刘", "陈", "杨", "赵", "黄", "周", "吴", "徐", "孙", "马", "朱", "胡", "郭",
];
pub(crate) const NEEDS: &[&str] = &[
    "独居老人,需要定期探望",
    "咨询低保申请条件",
    "楼道照明损坏",
    "子女就业咨询",
    "医保报销问题",
    "希望增加社区助餐点",
    "家中水管老化漏水",
];
const DUTIES: &[&str] = &[
    "组织社区环境卫生整治",
    "开展消防安全检查",
    "更新社区居民信息台账",
    "组织老年人健康讲座",
    "调解邻里纠纷",
];
const ASSISTANCE: &[&str] = &[
    "协助开展人口抽样调查入户登记",
    "协助发放高龄津贴",
    "协助做好疫苗接种宣传",
    "协助开展退役军人信息采集",
];
pub(crate) const TOPICS: &[(&str, minutes::TopicSource)] = &[
    ("加装电梯意见征集", minutes::TopicSource::Proposal),
    ("小区停车位重新划分", minutes::TopicSource::Dispute),
    ("楼道堆物清理", minutes::TopicSource::Dispute),
    ("开设社区老年食堂", minutes::TopicSource::MicroWish),
    ("垃圾分类投放点调整", minutes::TopicSource::Proposal),
];
pub(crate) const OPINIONS: &[&str] = &[
    "同意,建议尽快实施",
    "低层住户担心采光受影响",
    "费用分摊方案需要再商量",
    "建议请物业公司参与",
    "希望优先照顾行动不便的老人",
];
const DECISIONS: &[&str] = &[
    "按户均分摊费用,下月动工",
    "先在一个单元试点",
    "成立居民监督小组跟进落实",
];
pub(crate) const WHISTLES: &[(&str, &str)] = &[
    ("道路积水", "雨后小区门口积水严重,需要市政排水"),
    ("违章搭建", "3号楼顶层违章搭建,需要城管执法"),
    ("路灯损坏", "主干道路灯多处不亮,夜间出行不便"),
    ("占道经营", "菜市场周边占道经营,影响通行"),
];
pub(crate) const REQUESTS: &[(&str, &str, &str)] = &[
    (
        "老旧小区加装电梯意愿摸排",
        "区住建局",
        "《城市居民委员会组织法》第三条",
    ),
    ("燃气安全入户检查", "区应急管理局", "《安全生产法》第十条"),
    (
        "居家养老服务需求调查",
        "区民政局",
        "《老年人权益保障法》第三十七条",
    ),
];
pub(crate) const ARTICLES: &[(&str, &str)] = &[
    ("爱护环境", "不乱扔垃圾,按规定分类投放。"),
    ("邻里和睦", "邻里之间互相帮助,有事好商量。"),
    ("文明养犬", "外出遛狗牵绳,及时清理粪便。"),
    ("安全用电", "电动车不进楼道,不飞线充电。"),
    ("爱护公物", "爱护小区公共设施,损坏照价赔偿。"),
    ("移风易俗", "红白喜事从简办理,不大操大办。"),
];

pub(crate) fn household(rng: &mut Rng, n: u32) -> visits::Assignment {
    let surname = rng.pick(SURNAMES).copied().unwrap_or("王");
    visits::Assignment {
        worker: String::new(),
        household_name: format!("{surname}家"),
        kind: if n.is_multiple_of(10) {
            visits::HouseholdKind::Shop
        } else {
            visits::HouseholdKind::Household
        },
        grid: Some(format!("第{}网格", n % 3 + 1)),
        address: format!(
            "{}号楼{}单元{}0{}",
            n % 8 + 1,
            n % 3 + 1,
            n % 6 + 1,
            n % 4 + 1
        ),
    }
}

pub(crate) fn household_id(n: u32) -> String {
    format!("h{n:03}")
}

/// A pending admission at the district: request added, then reviewed, then approved.
#[derive(Debug, Clone)]
struct Admission {
    request: String,
    reviewed: bool,
}

/// A whistle raised by a community and not yet answered.
#[derive(Debug, Clone)]
struct OpenWhistle {
    doc: String,
    id: String,
    to: UnitId,
}

/// Generate `opts.ops` operations across the testnet in DIR, from up to [`THREADS_MAX`] threads
/// (one per street's subtree; the district's work goes with the first), since every node is its
/// own process and an edit's time is mostly the node's disk.
pub fn load(dir: &Path, opts: &LoadOptions, progress: Progress<'_>) -> Result<LoadReport, Error> {
    if opts.ops > OPS_MAX {
        return Err(Error::Invalid(format!(
            "--ops {} is more than {OPS_MAX}",
            opts.ops
        )));
    }
    if let Some(r) = opts.rate
        && !(r > 0.0 && r.is_finite())
    {
        return Err(Error::Invalid(format!(
            "--rate {r} must be a positive number of operations per second"
        )));
    }
    let state = State::load(dir)?;
    let seed = opts
        .seed
        .unwrap_or_else(|| linli_node::clock::now_ms() as u64 ^ u64::from(std::process::id()));
    let w = Writer::open(dir)?;
    let now = linli_node::clock::now_ms();
    let month = time::month(now);
    let communities: Vec<String> = state
        .nodes
        .iter()
        .filter(|n| n.kind == UnitKind::Community)
        .map(|n| n.unit.to_string())
        .collect();
    // Each thread drives whole street subtrees, so whistles and their answers mostly stay within
    // one thread; the district goes with the first.
    let streets: Vec<&UnitId> = state
        .nodes
        .iter()
        .filter(|n| n.kind == UnitKind::Street)
        .map(|n| &n.unit)
        .collect();
    let n_threads = streets.len().clamp(1, THREADS_MAX);
    let mut groups: Vec<Vec<Site>> = (0..n_threads).map(|_| Vec::new()).collect();
    for n in &state.nodes {
        let g = streets
            .iter()
            .position(|s| s.is_at_or_above(&n.unit))
            .map_or(0, |i| i % n_threads);
        groups[g].push(Site::new(n));
    }
    if groups.iter().all(Vec::is_empty) {
        return Err(Error::Invalid("the testnet has no nodes".to_owned()));
    }
    let whistles: Mutex<Vec<OpenWhistle>> = Mutex::new(Vec::new());
    let tickets = AtomicU64::new(0);
    let done = AtomicU64::new(0);
    progress(Event::Begin {
        what: "load",
        total: opts.ops,
    });
    let start = Instant::now();
    let results: Vec<Result<(), Error>> = std::thread::scope(|scope| {
        let handles: Vec<_> = groups
            .into_iter()
            .enumerate()
            .map(|(k, sites)| {
                let ctx = Worker {
                    w: &w,
                    whistles: &whistles,
                    tickets: &tickets,
                    done: &done,
                    communities: &communities,
                    month: &month,
                    now,
                    start,
                    opts,
                };
                scope.spawn(move || ctx.run(sites, Rng::new(seed ^ (k as u64 + 1))))
            })
            .collect();
        // Report progress from here: the callback is not shared with the threads.
        let mut shown = 0;
        while handles.iter().any(|h| !h.is_finished()) {
            let d = done.load(Ordering::Relaxed);
            if d > shown {
                progress(Event::Step(d - shown));
                shown = d;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let d = done.load(Ordering::Relaxed);
        progress(Event::Step(d.saturating_sub(shown)));
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(Error::Invalid("a load thread panicked".to_owned())))
            })
            .collect()
    });
    progress(Event::End);
    results.into_iter().collect::<Result<Vec<()>, Error>>()?;
    let elapsed = start.elapsed();
    let mut report = w.report();
    report.seed = seed;
    report.elapsed_ms = elapsed.as_millis() as u64;
    report.ops_per_s = report.acked as f64 / elapsed.as_secs_f64().max(1e-3);
    Ok(report)
}

/// Threads that make the load.
pub const THREADS_MAX: usize = 4;

/// What one load thread shares with the others.
#[derive(Debug, Clone, Copy)]
struct Worker<'a> {
    w: &'a Writer,
    whistles: &'a Mutex<Vec<OpenWhistle>>,
    /// Operations claimed so far, by every thread: ticket `k` is due at `start + k / rate`.
    tickets: &'a AtomicU64,
    done: &'a AtomicU64,
    communities: &'a [String],
    month: &'a str,
    now: i64,
    start: Instant,
    opts: &'a LoadOptions,
}

impl Worker<'_> {
    fn run(self, mut sites: Vec<Site>, mut rng: Rng) -> Result<(), Error> {
        let kinds = |sites: &[Site], k: UnitKind| -> Vec<usize> {
            (0..sites.len()).filter(|&i| sites[i].kind == k).collect()
        };
        let communities = kinds(&sites, UnitKind::Community);
        let streets = kinds(&sites, UnitKind::Street);
        let districts = kinds(&sites, UnitKind::District);
        let mut admissions: Vec<Admission> = Vec::new();
        loop {
            let ticket = self.tickets.fetch_add(1, Ordering::Relaxed);
            if ticket >= self.opts.ops {
                return Ok(());
            }
            if let Some(rate) = self.opts.rate {
                let due = Duration::from_secs_f64(ticket as f64 / rate);
                if let Some(wait) = due.checked_sub(self.start.elapsed()) {
                    std::thread::sleep(wait);
                }
            }
            let roll = rng.below(100);
            let target = if roll < 72 {
                rng.pick(&communities)
            } else if roll < 86 {
                rng.pick(&streets)
            } else {
                rng.pick(&districts)
            }
            .or(rng.pick(&communities))
            .or(rng.pick(&streets))
            .or(rng.pick(&districts))
            .copied();
            if let Some(i) = target {
                let site = &mut sites[i];
                match site.discover(self.month) {
                    Err(e) => {
                        self.w.attempt();
                        self.w.failed(site, "discover", &e);
                    }
                    Ok(()) => match site.kind {
                        UnitKind::Community | UnitKind::Grid => community_op(
                            self.w,
                            site,
                            &mut rng,
                            roll,
                            self.now,
                            self.month,
                            self.whistles,
                        )?,
                        UnitKind::Street => street_op(self.w, site, &mut rng, self.whistles)?,
                        UnitKind::District => district_op(
                            self.w,
                            site,
                            &mut rng,
                            self.communities,
                            &mut admissions,
                            self.whistles,
                        )?,
                    },
                }
            }
            self.done.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn community_op(
    w: &Writer,
    site: &mut Site,
    rng: &mut Rng,
    roll: u64,
    now: i64,
    month: &str,
    whistles: &Mutex<Vec<OpenWhistle>>,
) -> Result<(), Error> {
    let (who, who_name) = site.worker(rng);
    match roll {
        // Visits: the bulk of community records.
        0..=29 => {
            let Some(log) = site.visit_log.clone() else {
                let req = CreateDoc {
                    kind: Kind::VisitLog,
                    title: format!("{} {month} 走访记录", site.name),
                    scope: None,
                    period: Some(month.to_owned()),
                    minutes: None,
                };
                site.visit_log = w.create(site, req, &who)?;
                return Ok(());
            };
            // Most of the month is visiting households already assigned (分包).
            let n = match rng.pick(&site.assigned) {
                Some(h)
                    if rng.chance(70) || site.assigned.len() as u32 >= HOUSEHOLDS_PER_COMMUNITY =>
                {
                    h.trim_start_matches('h').parse().unwrap_or(1)
                }
                _ => rng.below(u64::from(HOUSEHOLDS_PER_COMMUNITY)) as u32 + 1,
            };
            let h = household_id(n);
            if !site.assigned.contains(&h) {
                let mut assignment = household(rng, n);
                assignment.worker = who_name;
                let op = Op::VisitAssign {
                    household_id: h.clone(),
                    assignment,
                };
                if w.op(site, &log, &op, &who)?.is_some() {
                    site.assigned.push(h);
                }
            } else {
                let day = rng.below(28) as u32 + 1;
                let needs = if rng.chance(30) {
                    rng.pick(NEEDS)
                        .map(|s| vec![(*s).to_owned()])
                        .unwrap_or_default()
                } else {
                    Vec::new()
                };
                let op = Op::VisitAdd {
                    id: None,
                    household_id: h,
                    worker: who_name,
                    date: time::day_of_month(now, day),
                    mode: if rng.chance(80) {
                        visits::Mode::Door
                    } else {
                        visits::Mode::Phone
                    },
                    follow_up: (!needs.is_empty()).then(|| "已登记,下周回访".to_owned()),
                    needs,
                };
                w.op(site, &log, &op, &who)?;
            }
        }
        // Tasks on the two lists.
        30..=39 => {
            let Some(list) = site.task_list.clone() else {
                return Ok(());
            };
            if site.tasks.is_empty() || rng.chance(40) {
                let duty = rng.chance(60);
                let title = rng
                    .pick(if duty { DUTIES } else { ASSISTANCE })
                    .copied()
                    .unwrap_or("社区工作");
                let op = Op::TaskAdd {
                    id: None,
                    task: tasks::NewTask {
                        title: title.to_owned(),
                        category: if duty {
                            tasks::Category::Duty
                        } else {
                            tasks::Category::Assistance
                        },
                        due: Some(time::day_of_month(now, 28)),
                        assignee: Some(who_name),
                        note: String::new(),
                        admission: None,
                    },
                };
                if let Some(id) = w.op(site, &list, &op, &who)? {
                    site.tasks.push(id);
                }
            } else if let Some(id) = rng.pick(&site.tasks).cloned() {
                let op = if rng.chance(70) {
                    Op::TaskStatus {
                        id,
                        status: if rng.chance(50) {
                            tasks::Status::InProgress
                        } else {
                            tasks::Status::Done
                        },
                    }
                } else {
                    Op::TaskNote {
                        id,
                        note: format!("{who_name}:已联系相关住户"),
                    }
                };
                w.op(site, &list, &op, &who)?;
            }
        }
        // Minutes of residents' councils.
        40..=54 => {
            let open: Vec<usize> = (0..site.minutes.len())
                .filter(|&i| !site.minutes[i].published)
                .collect();
            let Some(&m) = rng.pick(&open).filter(|_| !rng.chance(10)) else {
                let (topic, source) = rng.pick(TOPICS).copied().unwrap_or(TOPICS[0]);
                let req = CreateDoc {
                    kind: Kind::Minutes,
                    title: format!("{topic} 议事记录"),
                    scope: None,
                    period: None,
                    minutes: Some(minutes::Meta {
                        form: minutes::Form::Council,
                        meeting: Some(minutes::Meeting::PartyResidentsCouncil),
                        topic: topic.to_owned(),
                        topic_source: source,
                        held_at: time::date(now),
                        location: format!("{}会议室", site.name),
                    }),
                };
                if let Some(id) = w.create(site, req, &who)? {
                    site.minutes.push(MinutesDoc {
                        id,
                        published: false,
                        n_decisions: 0,
                    });
                }
                return Ok(());
            };
            let doc = site.minutes[m].id.clone();
            let r = rng.below(100);
            if r < 60 {
                let surname = rng.pick(SURNAMES).copied().unwrap_or("王");
                let op = Op::OpinionAdd {
                    id: None,
                    by: format!("居民代表{surname}某"),
                    text: rng.pick(OPINIONS).copied().unwrap_or("同意").to_owned(),
                };
                w.op(site, &doc, &op, &who)?;
            } else if r < 75 {
                let surname = rng.pick(SURNAMES).copied().unwrap_or("王");
                let op = Op::ParticipantAdd {
                    id: None,
                    participant: minutes::Participant {
                        name: format!("{surname}某"),
                        role: "居民代表".to_owned(),
                    },
                };
                w.op(site, &doc, &op, &who)?;
            } else if r < 90 || site.minutes[m].n_decisions == 0 {
                let votes_for = rng.below(30) as u32 + 10;
                let op = Op::DecisionAdd {
                    id: None,
                    text: rng.pick(DECISIONS).copied().unwrap_or("通过").to_owned(),
                    votes_for,
                    votes_against: rng.below(5) as u32,
                    votes_abstain: rng.below(3) as u32,
                };
                if w.op(site, &doc, &op, &who)?.is_some() {
                    site.minutes[m].n_decisions += 1;
                }
            } else if w.op(site, &doc, &Op::Publish, &who)?.is_some() {
                site.minutes[m].published = true;
            }
        }
        // The convention, edited and revised.
        55..=64 => {
            let Some(conv) = site.convention.clone() else {
                let req = CreateDoc {
                    kind: Kind::Convention,
                    title: format!("{}居民公约", site.name),
                    scope: None,
                    period: None,
                    minutes: None,
                };
                site.convention = w.create(site, req, &who)?;
                return Ok(());
            };
            let r = rng.below(100);
            if site.articles.len() < ARTICLES.len() && (site.articles.is_empty() || r < 40) {
                let number = site.articles.len() as u32 + 1;
                let (title, text) = ARTICLES[site.articles.len()];
                let op = Op::ArticleAdd {
                    id: None,
                    number,
                    title: title.to_owned(),
                    text: text.to_owned(),
                };
                if let Some(id) = w.op(site, &conv, &op, &who)? {
                    site.articles.push(id);
                }
            } else if r < 75 {
                let Some(id) = rng.pick(&site.articles).cloned() else {
                    return Ok(());
                };
                let (_, base) = rng.pick(ARTICLES).copied().unwrap_or(ARTICLES[0]);
                let op = Op::ArticleEdit {
                    id,
                    text: format!("{base}(第{}次修订)", rng.below(9) + 1),
                };
                w.op(site, &conv, &op, &who)?;
            } else {
                let op = Op::RevisionAdd {
                    id: None,
                    note: "根据居民意见修改条文表述".to_owned(),
                    by: who_name,
                };
                w.op(site, &conv, &op, &who)?;
            }
        }
        // Whistles upward (吹哨).
        _ => {
            let Some(list) = site.task_list.clone() else {
                return Ok(());
            };
            let to = if rng.chance(70) {
                site.unit.parent()
            } else {
                site.unit.parent().and_then(|p| p.parent())
            }
            .unwrap_or_else(|| site.unit.clone());
            let (title, description) = rng.pick(WHISTLES).copied().unwrap_or(WHISTLES[0]);
            let op = Op::WhistleRaise {
                id: None,
                whistle: tasks::NewWhistle {
                    title: title.to_owned(),
                    description: description.to_owned(),
                    to_unit: to.to_string(),
                    raised_by: who_name,
                },
            };
            if let Some(id) = w.op(site, &list, &op, &who)? {
                whistles
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(OpenWhistle { doc: list, id, to });
            }
        }
    }
    Ok(())
}

/// Report in (报到) to a whistle addressed to `site`, or else add a task of its own.
fn respond_or_task(
    w: &Writer,
    site: &mut Site,
    rng: &mut Rng,
    whistles: &Mutex<Vec<OpenWhistle>>,
    by: &str,
) -> Result<(), Error> {
    let Some(list) = site.task_list.clone() else {
        return Ok(());
    };
    let taken = {
        let mut open = whistles.lock().unwrap_or_else(|p| p.into_inner());
        open.iter()
            .position(|x| x.to == site.unit)
            .map(|pos| open.remove(pos))
    };
    if let Some(wh) = taken {
        let op = Op::WhistleRespond {
            id: None,
            whistle_doc: wh.doc,
            whistle_id: wh.id,
            text: "已派员现场处置,三日内反馈结果".to_owned(),
            by: by.to_owned(),
        };
        w.op(site, &list, &op, "admin")?;
    } else if site.tasks.is_empty() || rng.chance(50) {
        let op = Op::TaskAdd {
            id: None,
            task: tasks::NewTask {
                title: rng.pick(DUTIES).copied().unwrap_or("检查").to_owned(),
                category: tasks::Category::Duty,
                due: None,
                assignee: Some(by.to_owned()),
                note: String::new(),
                admission: None,
            },
        };
        if let Some(id) = w.op(site, &list, &op, "admin")? {
            site.tasks.push(id);
        }
    } else if let Some(id) = rng.pick(&site.tasks).cloned() {
        let op = Op::TaskStatus {
            id,
            status: tasks::Status::Done,
        };
        w.op(site, &list, &op, "admin")?;
    }
    Ok(())
}

fn street_op(
    w: &Writer,
    site: &mut Site,
    rng: &mut Rng,
    whistles: &Mutex<Vec<OpenWhistle>>,
) -> Result<(), Error> {
    let by = format!("{}工作人员", site.name);
    respond_or_task(w, site, rng, whistles, &by)
}

fn district_op(
    w: &Writer,
    site: &mut Site,
    rng: &mut Rng,
    communities: &[String],
    admissions: &mut Vec<Admission>,
    whistles: &Mutex<Vec<OpenWhistle>>,
) -> Result<(), Error> {
    let Some(list) = site.task_list.clone() else {
        return Ok(());
    };
    let unit = site.unit.to_string();
    // Move a pending admission forward, else start one, else report in.
    if let Some(pos) = admissions.iter().position(|_| rng.chance(70)) {
        let a = admissions[pos].clone();
        if !a.reviewed {
            if w.attest(
                site,
                &list,
                &unit,
                Statement::Reviewed,
                Some(a.request.clone()),
                "初审通过:有法律依据,经费和人员已落实",
                "reviewer",
            )?
            .is_some()
            {
                admissions[pos].reviewed = true;
            }
        } else if w
            .attest(
                site,
                &list,
                &unit,
                Statement::Approved,
                Some(a.request.clone()),
                "同意准入",
                "approver",
            )?
            .is_some()
        {
            admissions.remove(pos);
        }
    } else if rng.chance(50) && !communities.is_empty() {
        let (title, department, basis) = rng.pick(REQUESTS).copied().unwrap_or(REQUESTS[0]);
        let mut targets = vec![rng.pick(communities).cloned().unwrap_or_default()];
        if let Some(t) = rng.pick(communities)
            && !targets.contains(t)
        {
            targets.push(t.clone());
        }
        let op = Op::RequestAdd {
            id: None,
            request: tasks::Request {
                title: title.to_owned(),
                department: department.to_owned(),
                legal_basis: basis.to_owned(),
                funding: "区财政专项经费".to_owned(),
                staffing: format!("{department}派员指导"),
                target_units: targets,
                due: None,
                created_at_ms: 0,
            },
        };
        if let Some(id) = w.op(site, &list, &op, "reviewer")? {
            admissions.push(Admission {
                request: id,
                reviewed: false,
            });
        }
    } else {
        respond_or_task(w, site, rng, whistles, "区城管局")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_choices() {
        let (mut a, mut b) = (Rng::new(7), Rng::new(7));
        let xs: Vec<u64> = (0..5).map(|_| a.below(100)).collect();
        let ys: Vec<u64> = (0..5).map(|_| b.below(100)).collect();
        assert_eq!(xs, ys);
        assert!(xs.iter().all(|x| *x < 100));
    }

    #[test]
    fn every_write_names_where_its_record_lives() {
        let op = Op::VisitAdd {
            id: None,
            household_id: "h001".into(),
            worker: "王芳".into(),
            date: "2026-11-03".into(),
            mode: visits::Mode::Door,
            needs: vec![],
            follow_up: None,
        };
        assert_eq!(collection(&op), Some("entries"));
        assert_eq!(collection(&Op::Publish), None);
    }
}
