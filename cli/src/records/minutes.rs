//! `linli minutes`: consultation minutes (协商议事记录) — one consultation on one topic, from the
//! residents' input through opinions and decisions to publication (seed 000 §二(一), 001,
//! 004 (七)). Stages only move forward; published decisions no longer change.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Subcommand;
use linli_crdt_model::kinds::Kind;
use linli_crdt_model::kinds::minutes::{
    Decision, FollowUp, Form, Meeting, Meta, Opinion, Participant, Stage, TopicSource,
};
use linli_node::contract::{CreateDoc, DocSummary, Op};
use serde::{Deserialize, Serialize};

use super::{Node, choice, date, json_ok, ok};
use crate::admin::Ctx;
use crate::output::{print_table, short, time};

const LIST_HINT: &str = "`linli minutes list` lists the minutes this node holds";

#[derive(Debug, Subcommand)]
pub enum MinutesCmd {
    /// Open minutes of a consultation; prints their id.
    #[command(
        after_help = "Example:\n  linli --as wangfang minutes new --title 加装电梯议事会 --form council --topic 3号楼加装电梯 --source micro-wish --held-at 2026-11-05 --meeting party-residents-council --location 社区活动室"
    )]
    New {
        /// The minutes' title (加装电梯议事会).
        #[arg(long)]
        title: String,
        /// How the consultation is held.
        #[arg(long, value_parser = choice::<Form>())]
        form: Form,
        /// What it is about.
        #[arg(long)]
        topic: String,
        /// Where the topic came from.
        #[arg(long, value_parser = choice::<TopicSource>())]
        source: TopicSource,
        /// The day it was held, YYYY-MM-DD.
        #[arg(long, value_parser = date)]
        held_at: String,
        /// Which of the three meetings (三会) it is, by the size of the matter.
        #[arg(long, value_parser = choice::<Meeting>())]
        meeting: Option<Meeting>,
        /// Where it was held (default: this unit's name).
        #[arg(long)]
        location: Option<String>,
    },
    /// Record someone who took part.
    #[command(
        after_help = "Example:\n  linli minutes participant 5c1d0e --name 张大爷 --role 居民代表"
    )]
    Participant {
        /// The minutes' id (or a unique prefix of 6+ hex digits).
        id: String,
        #[arg(long)]
        name: String,
        /// E.g. 居民代表, 社区书记, 物业公司.
        #[arg(long)]
        role: String,
    },
    /// Record an opinion voiced in the consultation.
    #[command(
        after_help = "Example:\n  linli minutes opinion 5c1d0e --by 张大爷 --text 一楼住户担心采光,希望公示设计图"
    )]
    Opinion {
        /// The minutes' id (or a unique prefix of 6+ hex digits).
        id: String,
        /// Who spoke.
        #[arg(long)]
        by: String,
        #[arg(long)]
        text: String,
    },
    /// Record a decision and its vote.
    #[command(
        after_help = "Example:\n  linli minutes decide 5c1d0e --text 同意加装,费用按楼层分摊 --for 18 --against 2 --abstain 1"
    )]
    Decide {
        /// The minutes' id (or a unique prefix of 6+ hex digits).
        id: String,
        #[arg(long)]
        text: String,
        #[arg(long = "for")]
        votes_for: u32,
        #[arg(long = "against")]
        votes_against: u32,
        #[arg(long = "abstain")]
        votes_abstain: u32,
    },
    /// Move to a later stage: deliberate (先议) → consult (商议) → resolve (决议).
    #[command(after_help = "Example:\n  linli minutes stage 5c1d0e --to resolve")]
    Stage {
        /// The minutes' id (or a unique prefix of 6+ hex digits).
        id: String,
        #[arg(long, value_parser = choice::<Stage>())]
        to: Stage,
    },
    /// Make the minutes public (公开); decisions no longer change after this.
    #[command(after_help = "Example:\n  linli minutes publish 5c1d0e")]
    Publish {
        /// The minutes' id (or a unique prefix of 6+ hex digits).
        id: String,
    },
    /// The minutes: what, stage, participants, opinions, decisions, follow-ups, publication.
    #[command(after_help = "Example:\n  linli minutes show 5c1d0e --json")]
    Show {
        /// The minutes' id (or a unique prefix of 6+ hex digits).
        id: String,
    },
    /// Minutes this node holds.
    #[command(after_help = "Example:\n  linli minutes list")]
    List,
}

/// The minutes' state as `GET /v1/docs/{id}/state` gives it.
#[derive(Debug, Serialize, Deserialize)]
struct State {
    meta: Meta,
    stage: Stage,
    participants: BTreeMap<String, Participant>,
    opinions: BTreeMap<String, Opinion>,
    decisions: BTreeMap<String, Decision>,
    follow_ups: BTreeMap<String, FollowUp>,
    published: bool,
    published_at_ms: Option<i64>,
}

#[derive(Debug, Serialize)]
struct ShowView<'a> {
    doc: &'a DocSummary,
    #[serde(flatten)]
    state: &'a State,
}

#[derive(Debug, Serialize)]
struct ListRow {
    id: String,
    title: String,
    unit: String,
    topic: String,
    held_at: String,
    stage: Stage,
    n_decisions: usize,
    published: bool,
}

fn doc_id(node: &Node, id: &str) -> anyhow::Result<String> {
    Ok(node.doc_of_kind(id, Kind::Minutes, LIST_HINT)?.summary.id)
}

pub fn minutes(ctx: &Ctx, cmd: MinutesCmd) -> anyhow::Result<ExitCode> {
    let node = Node::connect(ctx)?;
    let person = ctx.person();
    let (doc, op, done) = match cmd {
        MinutesCmd::New {
            title,
            form,
            topic,
            source,
            held_at,
            meeting,
            location,
        } => {
            let id = node.create(
                &CreateDoc {
                    kind: Kind::Minutes,
                    title: title.clone(),
                    scope: None,
                    period: None,
                    minutes: Some(Meta {
                        form,
                        meeting,
                        topic,
                        topic_source: source,
                        held_at,
                        location: location.unwrap_or_else(|| node.unit_name().to_owned()),
                    }),
                },
                person,
            )?;
            if ctx.json {
                return json_ok(&serde_json::json!({ "id": id, "title": title }));
            }
            println!("{id}");
            eprintln!(
                "Opened minutes {title} ({}). Next: linli minutes opinion {} --by … --text …",
                form.label_zh(),
                short(&id)
            );
            return ok();
        }
        MinutesCmd::Participant { id, name, role } => (
            doc_id(&node, &id)?,
            Op::ParticipantAdd {
                id: None,
                participant: Participant { name, role },
            },
            "Added a participant to",
        ),
        MinutesCmd::Opinion { id, by, text } => (
            doc_id(&node, &id)?,
            Op::OpinionAdd { id: None, by, text },
            "Recorded an opinion in",
        ),
        MinutesCmd::Decide {
            id,
            text,
            votes_for,
            votes_against,
            votes_abstain,
        } => (
            doc_id(&node, &id)?,
            Op::DecisionAdd {
                id: None,
                text,
                votes_for,
                votes_against,
                votes_abstain,
            },
            "Recorded a decision in",
        ),
        MinutesCmd::Stage { id, to } => (
            doc_id(&node, &id)?,
            Op::StageAdvance { to },
            match to {
                Stage::Deliberate => "Moved to deliberation (先议):",
                Stage::Consult => "Moved to consultation (商议):",
                Stage::Resolve => "Moved to resolution (决议):",
            },
        ),
        MinutesCmd::Publish { id } => (doc_id(&node, &id)?, Op::Publish, "Published"),
        MinutesCmd::Show { id } => return show(ctx, &node, &id),
        MinutesCmd::List => return list(ctx, &node),
    };
    let r = node.apply(&doc, &op, person)?;
    if ctx.json {
        return json_ok(&r);
    }
    println!("{done} minutes {}", short(&doc));
    ok()
}

fn show(ctx: &Ctx, node: &Node, id: &str) -> anyhow::Result<ExitCode> {
    let view = node.doc_of_kind(id, Kind::Minutes, LIST_HINT)?;
    let doc = &view.summary;
    let state: State = node.state(&doc.id)?;
    if ctx.json {
        return json_ok(&ShowView { doc, state: &state });
    }
    let m = &state.meta;
    println!("{} ({}, {})", doc.title, doc.unit, short(&doc.id));
    println!("  topic      {} ({})", m.topic, m.topic_source.label_zh());
    println!(
        "  form       {}{}",
        m.form.label_zh(),
        m.meeting
            .map(|x| format!(", {}", x.label_zh()))
            .unwrap_or_default()
    );
    println!("  held       {} at {}", m.held_at, m.location);
    println!(
        "  stage      {} ({})",
        state.stage.label_zh(),
        state.stage.as_str()
    );
    println!(
        "  published  {}",
        state
            .published_at_ms
            .map(|t| format!("yes, {}", time(t)))
            .unwrap_or_else(|| "not yet".to_owned())
    );
    if !state.participants.is_empty() {
        println!("\nparticipants");
        print_table(
            &["name", "role"],
            state
                .participants
                .values()
                .map(|p| vec![p.name.clone(), p.role.clone()])
                .collect(),
        );
    }
    let mut opinions: Vec<&Opinion> = state.opinions.values().collect();
    opinions.sort_by_key(|o| o.at_ms);
    if !opinions.is_empty() {
        println!("\nopinions");
        print_table(
            &["when", "by", "opinion"],
            opinions
                .iter()
                .map(|o| vec![time(o.at_ms), o.by.clone(), o.text.clone()])
                .collect(),
        );
    }
    let mut decisions: Vec<&Decision> = state.decisions.values().collect();
    decisions.sort_by_key(|d| d.at_ms);
    if !decisions.is_empty() {
        println!("\ndecisions");
        print_table(
            &["when", "decision", "for", "against", "abstain"],
            decisions
                .iter()
                .map(|d| {
                    vec![
                        time(d.at_ms),
                        d.text.clone(),
                        d.votes_for.to_string(),
                        d.votes_against.to_string(),
                        d.votes_abstain.to_string(),
                    ]
                })
                .collect(),
        );
    }
    if !state.follow_ups.is_empty() {
        println!("\nfollow-ups");
        print_table(
            &["follow-up", "assignee", "due", "done"],
            state
                .follow_ups
                .values()
                .map(|f| {
                    vec![
                        f.text.clone(),
                        f.assignee.clone(),
                        f.due.clone().unwrap_or_default(),
                        if f.done { "yes" } else { "no" }.to_owned(),
                    ]
                })
                .collect(),
        );
    }
    ok()
}

fn list(ctx: &Ctx, node: &Node) -> anyhow::Result<ExitCode> {
    let mut rows = Vec::new();
    for d in node.docs(Some(Kind::Minutes), None, None)? {
        let s: State = node.state(&d.id)?;
        rows.push(ListRow {
            id: d.id,
            title: d.title,
            unit: d.unit,
            topic: s.meta.topic,
            held_at: s.meta.held_at,
            stage: s.stage,
            n_decisions: s.decisions.len(),
            published: s.published,
        });
    }
    rows.sort_by(|a, b| (&b.held_at, &a.id).cmp(&(&a.held_at, &b.id)));
    if ctx.json {
        return json_ok(&rows);
    }
    print_table(
        &[
            "id",
            "title",
            "unit",
            "held",
            "stage",
            "decisions",
            "published",
        ],
        rows.iter()
            .map(|r| {
                vec![
                    short(&r.id),
                    r.title.clone(),
                    r.unit.clone(),
                    r.held_at.clone(),
                    r.stage.label_zh().to_owned(),
                    r.n_decisions.to_string(),
                    if r.published { "yes" } else { "no" }.to_owned(),
                ]
            })
            .collect(),
    );
    ok()
}
