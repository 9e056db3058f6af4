//! Sample records for `linli demo`, written through the nodes' APIs as the people who would write
//! them, so a newcomer sees every level at work: a community's convention filed by its street
//! (备案), a residents' council's minutes from deliberation to a published decision (先议, 商议,
//! 决议), a district request reviewed and approved and then admitted at its community (准入), a
//! whistle answered by the street (吹哨报到), and a month of household visits with its coverage
//! (每月至少上门走访一次). Every write goes into `acked.jsonl` like load's, so `testnet check`
//! covers the seed too.

use std::path::Path;
use std::time::{Duration, Instant};

use linli_crdt_model::attest::Statement;
use linli_crdt_model::kinds::{Kind, convention, minutes, tasks, visits};
use linli_crdt_model::unit::UnitKind;
use linli_node::contract::{CreateDoc, DocFilter, DocSummary, Op};
use serde::{Deserialize, Serialize};

use crate::load::{self, Rng, Site, Writer};
use crate::state::State;
use crate::{Error, Event, Progress, time};

/// Households assigned per community in the demo month.
pub const DEMO_HOUSEHOLDS: u32 = 12;
/// How long the demo waits for a record to travel between levels.
pub const TRAVEL_TIMEOUT: Duration = Duration::from_secs(60);

/// What `seed` wrote, for the demo to point at.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Seeded {
    pub convention: String,
    pub convention_unit: String,
    pub filed_by: String,
    pub minutes: String,
    pub request: String,
    /// The community where the approved request became an admitted task, and how long it took.
    pub admitted_at: String,
    pub admitted_after_ms: u64,
    pub whistle_unit: String,
    pub n_writes: u64,
}

/// One community's visits this month.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Coverage {
    pub unit: String,
    pub name: String,
    pub month: String,
    pub assigned: usize,
    pub visited: usize,
    pub unvisited: Vec<String>,
}

fn failed(what: &str) -> Error {
    Error::Invalid(format!("seeding the demo: {what} was not acknowledged"))
}

fn wait_for(what: &str, mut ok: impl FnMut() -> bool) -> Result<Duration, Error> {
    let start = Instant::now();
    while !ok() {
        if start.elapsed() > TRAVEL_TIMEOUT {
            return Err(Error::Timeout {
                what: what.to_owned(),
                secs: TRAVEL_TIMEOUT.as_secs(),
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(start.elapsed())
}

/// Write the sample records into the running testnet in DIR.
pub fn seed(dir: &Path, progress: Progress<'_>) -> Result<Seeded, Error> {
    let state = State::load(dir)?;
    let now = linli_node::clock::now_ms();
    let month = time::month(now);
    let mut rng = Rng::new(20_211_001);
    let w = Writer::open(dir)?;
    let mut sites: Vec<Site> = state.nodes.iter().map(Site::new).collect();
    for s in &mut sites {
        s.discover(&month).map_err(|source| Error::Api {
            unit: s.unit.to_string(),
            source,
        })?;
    }
    let find = |k: UnitKind| sites.iter().position(|s| s.kind == k);
    let (Some(d), Some(s), Some(c)) = (
        find(UnitKind::District),
        find(UnitKind::Street),
        find(UnitKind::Community),
    ) else {
        return Err(Error::Invalid(
            "the demo needs a district, a street and a community".to_owned(),
        ));
    };
    let communities: Vec<usize> = (0..sites.len())
        .filter(|&i| sites[i].kind == UnitKind::Community)
        .collect();
    progress(Event::Begin {
        what: "seeding sample records",
        total: 5 + communities.len() as u64,
    });

    // 1. A convention drafted and adopted by the community, filed by its street (备案).
    let (who, who_name) = sites[c].lead_worker();
    let title = format!("{}居民公约", sites[c].name);
    let conv = w
        .create(
            &mut sites[c],
            CreateDoc {
                kind: Kind::Convention,
                title,
                scope: None,
                period: None,
                minutes: None,
            },
            &who,
        )?
        .ok_or_else(|| failed("the convention"))?;
    for (i, (t, text)) in load::ARTICLES.iter().enumerate().take(5) {
        let op = Op::ArticleAdd {
            id: Some(format!("a{}", i + 1)),
            number: i as u32 + 1,
            title: (*t).to_owned(),
            text: (*text).to_owned(),
        };
        w.op(&mut sites[c], &conv, &op, &who)?
            .ok_or_else(|| failed("an article"))?;
    }
    let adopt = Op::Adopt {
        adoption: convention::Adoption {
            at_ms: now,
            method: convention::Method::RepresentativesMeeting,
            votes_for: 41,
            votes_against: 2,
            votes_abstain: 1,
            note: "居民代表会议表决通过".to_owned(),
        },
    };
    w.op(&mut sites[c], &conv, &adopt, &who)?
        .ok_or_else(|| failed("the adoption"))?;
    let heads = |site: &Site, id: &str| site.client.doc(id).map(|v| v.summary.heads).ok();
    let community_heads = heads(&sites[c], &conv);
    let street = sites[c]
        .unit
        .parent()
        .and_then(|p| sites.iter().position(|x| x.unit == p))
        .unwrap_or(s);
    wait_for("the convention to reach the street", || {
        community_heads.is_some() && heads(&sites[street], &conv) == community_heads
    })?;
    let conv_unit = sites[c].unit.to_string();
    w.attest(
        &mut sites[street],
        &conv,
        &conv_unit,
        Statement::Filed,
        None,
        "经审查,内容合法,予以备案",
        "approver",
    )?
    .ok_or_else(|| failed("the filing"))?;
    progress(Event::Step(1));

    // 2. Minutes of a residents' council, deliberated, consulted, resolved and published.
    let meta = minutes::Meta {
        form: minutes::Form::Council,
        meeting: Some(minutes::Meeting::PartyResidentsCouncil),
        topic: "3号楼加装电梯".to_owned(),
        topic_source: minutes::TopicSource::Proposal,
        held_at: time::day_of_month(now, 5),
        location: format!("{}党群服务中心", sites[c].name),
    };
    let min = w
        .create(
            &mut sites[c],
            CreateDoc {
                kind: Kind::Minutes,
                title: "3号楼加装电梯 党群议事会记录".to_owned(),
                scope: None,
                period: None,
                minutes: Some(meta),
            },
            &who,
        )?
        .ok_or_else(|| failed("the minutes"))?;
    let mut ops = vec![];
    for (name, role) in [
        ("刘书记", "社区党委书记"),
        (who_name.as_str(), "社区工作者"),
        ("赵大爷", "居民代表(3号楼1层)"),
        ("孙阿姨", "居民代表(3号楼6层)"),
        ("物业 钱经理", "物业公司"),
    ] {
        ops.push(Op::ParticipantAdd {
            id: None,
            participant: minutes::Participant {
                name: name.to_owned(),
                role: role.to_owned(),
            },
        });
    }
    for (by, text) in [
        ("孙阿姨", "楼上老人多,上下楼困难,希望尽快加装"),
        ("赵大爷", "一层住户用不上电梯,担心采光和噪音,费用不应均摊"),
        ("物业 钱经理", "物业可以负责日常维保,需要明确维保费用来源"),
    ] {
        ops.push(Op::OpinionAdd {
            id: None,
            by: by.to_owned(),
            text: text.to_owned(),
        });
    }
    ops.push(Op::StageAdvance {
        to: minutes::Stage::Consult,
    });
    ops.push(Op::OpinionAdd {
        id: None,
        by: "刘书记".to_owned(),
        text: "按楼层系数分摊,一层不分摊,申请区里加装电梯补贴".to_owned(),
    });
    ops.push(Op::StageAdvance {
        to: minutes::Stage::Resolve,
    });
    ops.push(Op::DecisionAdd {
        id: None,
        text: "同意加装电梯,按楼层系数分摊费用,一层住户不分摊".to_owned(),
        votes_for: 21,
        votes_against: 2,
        votes_abstain: 1,
    });
    ops.push(Op::FollowUpAdd {
        id: None,
        follow_up: minutes::FollowUp {
            text: "向街道提交加装电梯申请".to_owned(),
            assignee: who_name.clone(),
            due: Some(time::day_of_month(now, 28)),
            done: false,
        },
    });
    ops.push(Op::Publish);
    for op in &ops {
        w.op(&mut sites[c], &min, op, &who)?
            .ok_or_else(|| failed(op.name()))?;
    }
    progress(Event::Step(1));

    // 3. Admission (准入): a department's request, reviewed by civil affairs, approved by the
    //    government, then admitted by the community on its own.
    let target = sites[c].unit.to_string();
    let list = sites[d]
        .task_list
        .clone()
        .ok_or_else(|| failed("the district's task list"))?;
    let request = Op::RequestAdd {
        id: Some("req-elevator-survey".to_owned()),
        request: tasks::Request {
            title: "老旧小区加装电梯意愿摸排".to_owned(),
            department: "区住建局".to_owned(),
            legal_basis: "《城市居民委员会组织法》第三条".to_owned(),
            funding: "区财政专项经费 2 万元".to_owned(),
            staffing: "住建局派 2 名工作人员指导".to_owned(),
            target_units: vec![target.clone()],
            due: Some(time::day_of_month(now, 28)),
            created_at_ms: 0,
        },
    };
    let district_unit = sites[d].unit.to_string();
    let rid = w
        .op(&mut sites[d], &list, &request, "reviewer")?
        .ok_or_else(|| failed("the request"))?;
    w.attest(
        &mut sites[d],
        &list,
        &district_unit,
        Statement::Reviewed,
        Some(rid.clone()),
        "初审通过:有法律依据,经费和人员已落实",
        "reviewer",
    )?
    .ok_or_else(|| failed("the review"))?;
    w.attest(
        &mut sites[d],
        &list,
        &district_unit,
        Statement::Approved,
        Some(rid.clone()),
        "同意准入",
        "approver",
    )?
    .ok_or_else(|| failed("the approval"))?;
    let community_list = sites[c]
        .task_list
        .clone()
        .ok_or_else(|| failed("the community's task list"))?;
    let task_id = format!("adm-{rid}");
    let admitted_after = wait_for("the approved task to be admitted at the community", || {
        sites[c]
            .client
            .state::<serde_json::Value>(&community_list)
            .map(|st| st["tasks"].get(&task_id).is_some())
            .unwrap_or(false)
    })?;
    progress(Event::Step(1));

    // 4. A whistle from a community, answered by its street (吹哨报到).
    let wc = communities.get(1).copied().unwrap_or(c);
    let (wwho, wname) = sites[wc].lead_worker();
    let wlist = sites[wc]
        .task_list
        .clone()
        .ok_or_else(|| failed("a task list"))?;
    let wstreet = sites[wc]
        .unit
        .parent()
        .and_then(|p| sites.iter().position(|x| x.unit == p))
        .unwrap_or(s);
    let raise = Op::WhistleRaise {
        id: Some("w-road-flooding".to_owned()),
        whistle: tasks::NewWhistle {
            title: "小区门口道路积水".to_owned(),
            description: "雨后积水深达 20 厘米,老人出行困难,需要市政排水".to_owned(),
            to_unit: sites[wstreet].unit.to_string(),
            raised_by: wname,
        },
    };
    let whistle = w
        .op(&mut sites[wc], &wlist, &raise, &wwho)?
        .ok_or_else(|| failed("the whistle"))?;
    let slist = sites[wstreet]
        .task_list
        .clone()
        .ok_or_else(|| failed("the street's task list"))?;
    let respond = Op::WhistleRespond {
        id: None,
        whistle_doc: wlist,
        whistle_id: whistle,
        text: "已协调市政排水所,明日上午现场疏通".to_owned(),
        by: format!("{}城管科", sites[wstreet].name),
    };
    w.op(&mut sites[wstreet], &slist, &respond, "admin")?
        .ok_or_else(|| failed("the response"))?;
    progress(Event::Step(1));

    // 5. A few tasks on each community's lists.
    for &ci in &communities {
        let Some(list) = sites[ci].task_list.clone() else {
            continue;
        };
        let (who, name) = sites[ci].lead_worker();
        for (title, category) in [
            ("开展消防安全检查", tasks::Category::Duty),
            ("协助发放高龄津贴", tasks::Category::Assistance),
        ] {
            let op = Op::TaskAdd {
                id: None,
                task: tasks::NewTask {
                    title: title.to_owned(),
                    category,
                    due: Some(time::day_of_month(now, 28)),
                    assignee: Some(name.clone()),
                    note: String::new(),
                    admission: None,
                },
            };
            w.op(&mut sites[ci], &list, &op, &who)?;
        }
    }
    progress(Event::Step(1));

    // 6. A month of visits in every community: 12 households shared among the workers, most of
    //    them visited.
    for &ci in &communities {
        seed_visits(&w, &mut sites[ci], &mut rng, now, &month)?;
        progress(Event::Step(1));
    }
    // 7. A checkpoint by the district now rather than at its first interval, so every node can
    //    compare its view with the district's at once (`linli checkpoint compare`).
    sites[d]
        .client
        .checkpoint(None)
        .map_err(|source| Error::Api {
            unit: sites[d].unit.to_string(),
            source,
        })?;
    progress(Event::End);
    Ok(Seeded {
        convention: conv,
        convention_unit: conv_unit,
        filed_by: sites[street].unit.to_string(),
        minutes: min,
        request: rid,
        admitted_at: target,
        admitted_after_ms: admitted_after.as_millis() as u64,
        whistle_unit: sites[wc].unit.to_string(),
        n_writes: w.report().acked,
    })
}

fn seed_visits(
    w: &Writer,
    site: &mut Site,
    rng: &mut Rng,
    now: i64,
    month: &str,
) -> Result<(), Error> {
    let (first, _) = site.workers.first().cloned().unwrap_or_default();
    let log = match site.visit_log.clone() {
        Some(l) => l,
        None => {
            let req = CreateDoc {
                kind: Kind::VisitLog,
                title: format!("{} {month} 走访记录", site.name),
                scope: None,
                period: Some(month.to_owned()),
                minutes: None,
            };
            let id = w
                .create(site, req, &first)?
                .ok_or_else(|| failed("a visit log"))?;
            site.visit_log = Some(id.clone());
            id
        }
    };
    let workers = site.workers.clone();
    let n_workers = workers.len().clamp(1, 3);
    for n in 1..=DEMO_HOUSEHOLDS {
        let (handle, name) = workers
            .get((n as usize - 1) % n_workers)
            .cloned()
            .unwrap_or_else(|| ("admin".to_owned(), "管理员".to_owned()));
        let h = load::household_id(n);
        let mut assignment = load::household(rng, n);
        assignment.worker = name.clone();
        let op = Op::VisitAssign {
            household_id: h.clone(),
            assignment,
        };
        w.op(site, &log, &op, &handle)?
            .ok_or_else(|| failed("an assignment"))?;
        // One in four is still to visit: coverage shows who.
        if n % 4 == 0 {
            continue;
        }
        let needs: Vec<String> = if n % 3 == 0 {
            vec![load::NEEDS[(n as usize) % load::NEEDS.len()].to_owned()]
        } else {
            Vec::new()
        };
        let op = Op::VisitAdd {
            id: None,
            household_id: h,
            worker: name,
            date: time::day_of_month(now, n * 2),
            mode: if n % 5 == 0 {
                visits::Mode::Phone
            } else {
                visits::Mode::Door
            },
            follow_up: (!needs.is_empty()).then(|| "已转社区社会工作室跟进".to_owned()),
            needs,
        };
        w.op(site, &log, &op, &handle)?
            .ok_or_else(|| failed("a visit"))?;
    }
    Ok(())
}

/// This month's visit coverage of every community, as its own node sees it.
pub fn coverage(dir: &Path) -> Result<Vec<Coverage>, Error> {
    let state = State::load(dir)?;
    let month = time::month(linli_node::clock::now_ms());
    let mut out = Vec::new();
    for n in state.nodes.iter().filter(|n| n.kind == UnitKind::Community) {
        let client = crate::client::of(&n.data_dir);
        let api = |source| Error::Api {
            unit: n.unit.to_string(),
            source,
        };
        let docs: Vec<DocSummary> = client
            .docs(&DocFilter {
                kind: Some(Kind::VisitLog.as_str().to_owned()),
                unit: Some(n.unit.to_string()),
                period: Some(month.clone()),
            })
            .map_err(api)?;
        let mut row = Coverage {
            unit: n.unit.to_string(),
            name: n.name.clone(),
            month: month.clone(),
            assigned: 0,
            visited: 0,
            unvisited: Vec::new(),
        };
        for d in docs {
            let st: serde_json::Value = client.state(&d.id).map_err(api)?;
            let visited: std::collections::BTreeSet<&str> = st["entries"]
                .as_object()
                .map(|m| {
                    m.values()
                        .filter_map(|e| e["household_id"].as_str())
                        .collect()
                })
                .unwrap_or_default();
            if let Some(assignments) = st["assignments"].as_object() {
                for (h, a) in assignments {
                    row.assigned += 1;
                    if visited.contains(h.as_str()) {
                        row.visited += 1;
                    } else {
                        row.unvisited.push(format!(
                            "{h} {} ({})",
                            a["household_name"].as_str().unwrap_or(""),
                            a["worker"].as_str().unwrap_or("")
                        ));
                    }
                }
            }
        }
        out.push(row);
    }
    Ok(out)
}
