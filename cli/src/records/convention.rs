//! `linli convention`: residents' conventions (居民公约) — drafted and revised by the community,
//! adopted by residents, filed with the level above (seed 000 §二(三), 004 (七)). Filing itself
//! is `linli attest file` by the street's or district's approver; `show` says whether the
//! current text is still the filed one.

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::bail;
use clap::Subcommand;
use linli_crdt_model::audit::{Audit, Filing};
use linli_crdt_model::kinds::{self, Kind, convention::Method};
use linli_node::contract::{CertView, CreateDoc, DocSummary, Op};
use serde::{Deserialize, Serialize};

use super::{Node, choice, json_ok, now_ms, ok};
use crate::admin::Ctx;
use crate::output::{print_table, short, time};

const LIST_HINT: &str = "`linli convention list` lists the conventions this node holds";

#[derive(Debug, Subcommand)]
pub enum ConventionCmd {
    /// Start a convention of this unit; prints its id.
    #[command(
        after_help = "Example:\n  linli --as wangfang convention new --title 胜利社区居民公约"
    )]
    New {
        /// The convention's title (胜利社区居民公约).
        #[arg(long)]
        title: String,
    },
    /// Write article N (第N条): adds it if missing, else replaces its text (and title).
    #[command(
        after_help = "Example:\n  linli --as wangfang convention edit 3f2a9c --article 1 --title 环境卫生 --text 垃圾分类投放,不乱扔杂物。 --note 按居民意见修订"
    )]
    Edit {
        /// The convention's id (or a unique prefix of 6+ hex digits).
        id: String,
        /// The article's number, from 1.
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        article: u32,
        /// The article's title (default for a new article: 第N条).
        #[arg(long)]
        title: Option<String>,
        /// The article's whole text.
        #[arg(long)]
        text: String,
        /// Also record a revision note (修订说明) saying what changed and why.
        #[arg(long)]
        note: Option<String>,
    },
    /// Record the residents' vote that adopted the convention.
    #[command(
        after_help = "Example:\n  linli convention adopt 3f2a9c --method residents-meeting --for 86 --against 3 --abstain 5 --note 第三次居民会议"
    )]
    Adopt {
        /// The convention's id (or a unique prefix of 6+ hex digits).
        id: String,
        /// The body that voted.
        #[arg(long, value_parser = choice::<Method>())]
        method: Method,
        #[arg(long = "for")]
        votes_for: u32,
        #[arg(long = "against")]
        votes_against: u32,
        #[arg(long = "abstain")]
        votes_abstain: u32,
        #[arg(long)]
        note: Option<String>,
    },
    /// A convention's articles in order, revisions, adoption and filing state.
    #[command(after_help = "Example:\n  linli convention show 3f2a9c --json")]
    Show {
        /// The convention's id (or a unique prefix of 6+ hex digits).
        id: String,
    },
    /// Conventions this node holds, with their filing state.
    #[command(after_help = "Example:\n  linli convention list")]
    List,
}

/// The convention's state as `GET /v1/docs/{id}/state` gives it.
#[derive(Debug, Deserialize)]
struct State {
    articles: BTreeMap<String, Article>,
    revisions: BTreeMap<String, kinds::convention::Revision>,
    adoption: Option<kinds::convention::Adoption>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Article {
    number: u32,
    title: String,
    text: String,
}

impl State {
    fn article(&self, number: u32) -> Option<(&str, &Article)> {
        self.articles
            .iter()
            .filter(|(_, a)| a.number == number)
            .min_by_key(|(id, _)| id.as_str())
            .map(|(id, a)| (id.as_str(), a))
    }
}

#[derive(Debug, Serialize)]
struct ArticleRow<'a> {
    id: &'a str,
    #[serde(flatten)]
    article: &'a Article,
}

#[derive(Debug, Serialize)]
struct RevisionRow<'a> {
    id: &'a str,
    #[serde(flatten)]
    revision: &'a kinds::convention::Revision,
}

#[derive(Debug, Serialize)]
struct ShowView<'a> {
    doc: &'a DocSummary,
    articles: Vec<ArticleRow<'a>>,
    revisions: Vec<RevisionRow<'a>>,
    adoption: Option<&'a kinds::convention::Adoption>,
    filing: &'a Filing,
}

#[derive(Debug, Serialize)]
struct ListRow {
    id: String,
    title: String,
    unit: String,
    n_articles: usize,
    adopted: bool,
    filing: Filing,
}

/// The filing state of a convention from its audit (`not filed` if the node says nothing).
pub fn filing(node: &Node, id: &str) -> anyhow::Result<Filing> {
    let audit: Audit = node.client.audit(id)?;
    Ok(audit.filing.unwrap_or(Filing::NotFiled))
}

/// "filed by 张三 (tiedong/jiefang) at …" and its variants.
pub fn filing_line(f: &Filing) -> String {
    match f {
        Filing::NotFiled => "not filed".to_owned(),
        Filing::Filed { by, at_ms, .. } => format!("filed by {by} at {}", time(*at_ms)),
        Filing::ChangedSinceFiling {
            by,
            at_ms,
            changes_since,
            ..
        } => format!(
            "changed since filing ({changes_since} change(s) since it was filed by {by} at {}); the filed version is no longer the current one",
            time(*at_ms)
        ),
    }
}

pub fn convention(ctx: &Ctx, cmd: ConventionCmd) -> anyhow::Result<ExitCode> {
    let node = Node::connect(ctx)?;
    let person = ctx.person();
    match cmd {
        ConventionCmd::New { title } => {
            let id = node.create(
                &CreateDoc {
                    kind: Kind::Convention,
                    title: title.clone(),
                    scope: None,
                    period: None,
                    minutes: None,
                },
                person,
            )?;
            if ctx.json {
                return json_ok(&serde_json::json!({ "id": id, "title": title }));
            }
            println!("{id}");
            eprintln!(
                "Created convention {title}. Next: linli convention edit {} --article 1 --title … --text …",
                short(&id)
            );
        }
        ConventionCmd::Edit {
            id,
            article,
            title,
            text,
            note,
        } => {
            let view = node.doc_of_kind(&id, Kind::Convention, LIST_HINT)?;
            let doc = view.summary.id;
            let state: State = node.state(&doc)?;
            let mut ops = Vec::new();
            let (article_id, added) = match state.article(article) {
                None => {
                    let aid = format!("a{article}");
                    if state.articles.contains_key(&aid) {
                        bail!(
                            "convention {} already has an article with id {aid} but another number; edit it by its number",
                            short(&doc)
                        );
                    }
                    ops.push(Op::ArticleAdd {
                        id: Some(aid.clone()),
                        number: article,
                        title: title.unwrap_or_else(|| format!("第{article}条")),
                        text,
                    });
                    (aid, true)
                }
                Some((aid, current)) => {
                    if let Some(t) = title.filter(|t| *t != current.title) {
                        ops.push(Op::ArticleTitle {
                            id: aid.to_owned(),
                            title: t,
                        });
                    }
                    if text != current.text {
                        ops.push(Op::ArticleEdit {
                            id: aid.to_owned(),
                            text,
                        });
                    }
                    (aid.to_owned(), false)
                }
            };
            if ops.is_empty() && note.is_none() {
                if ctx.json {
                    return json_ok(
                        &serde_json::json!({ "doc": doc, "article": article_id, "changed": false }),
                    );
                }
                println!(
                    "Article {article} of {} is already so; nothing changed",
                    short(&doc)
                );
                return ok();
            }
            let mut receipts = if ops.is_empty() {
                Vec::new()
            } else {
                node.apply_batch(&doc, &ops, person)?
            };
            if let Some(note) = note {
                let by = match receipts.first() {
                    Some(r) => r.author.clone(),
                    None => node.signer_name(person),
                };
                receipts.push(node.apply(&doc, &Op::RevisionAdd { id: None, note, by }, person)?);
            }
            if ctx.json {
                return json_ok(&serde_json::json!({
                    "doc": doc, "article": article_id, "added": added, "changed": true, "receipts": receipts,
                }));
            }
            println!(
                "{} article {article} ({article_id}) of convention {}",
                if added { "Added" } else { "Edited" },
                short(&doc)
            );
        }
        ConventionCmd::Adopt {
            id,
            method,
            votes_for,
            votes_against,
            votes_abstain,
            note,
        } => {
            let view = node.doc_of_kind(&id, Kind::Convention, LIST_HINT)?;
            let doc = view.summary.id;
            let r = node.apply(
                &doc,
                &Op::Adopt {
                    adoption: kinds::convention::Adoption {
                        at_ms: now_ms(),
                        method,
                        votes_for,
                        votes_against,
                        votes_abstain,
                        note: note.unwrap_or_default(),
                    },
                },
                person,
            )?;
            if ctx.json {
                return json_ok(&r);
            }
            println!(
                "Recorded the adoption of {} by {} ({votes_for} for, {votes_against} against, {votes_abstain} abstaining)",
                short(&doc),
                method.label_zh()
            );
        }
        ConventionCmd::Show { id } => {
            let view = node.doc_of_kind(&id, Kind::Convention, LIST_HINT)?;
            let doc = &view.summary;
            let state: State = node.state(&doc.id)?;
            let filing = filing(&node, &doc.id)?;
            let mut articles: Vec<ArticleRow> = state
                .articles
                .iter()
                .map(|(id, a)| ArticleRow { id, article: a })
                .collect();
            articles.sort_by_key(|a| (a.article.number, a.id));
            let mut revisions: Vec<RevisionRow> = state
                .revisions
                .iter()
                .map(|(id, r)| RevisionRow { id, revision: r })
                .collect();
            revisions.sort_by_key(|r| (r.revision.at_ms, r.id));
            if ctx.json {
                return json_ok(&ShowView {
                    doc,
                    articles,
                    revisions,
                    adoption: state.adoption.as_ref(),
                    filing: &filing,
                });
            }
            println!("{} ({}, {})", doc.title, doc.unit, short(&doc.id));
            println!("filing: {}", filing_line(&filing));
            match &state.adoption {
                Some(a) => println!(
                    "adopted: {} at {}, {} for, {} against, {} abstaining{}",
                    a.method.label_zh(),
                    time(a.at_ms),
                    a.votes_for,
                    a.votes_against,
                    a.votes_abstain,
                    if a.note.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", a.note)
                    }
                ),
                None => println!("adopted: not yet"),
            }
            println!();
            if articles.is_empty() {
                println!("(no articles yet)");
            }
            for a in &articles {
                let heading = format!("第{}条", a.article.number);
                if a.article.title == heading {
                    println!("{heading}");
                } else {
                    println!("{heading} {}", a.article.title);
                }
                println!("  {}", a.article.text.replace('\n', "\n  "));
            }
            if !revisions.is_empty() {
                // Revisions name their author by key; people read the certificate's holder.
                let certs: Vec<CertView> = node.client.certs()?;
                let holder = |key: &str| {
                    certs
                        .iter()
                        .find(|c| c.subject == key)
                        .map(|c| c.holder.clone())
                        .unwrap_or_else(|| short(key))
                };
                println!();
                print_table(
                    &["revised", "by", "note"],
                    revisions
                        .iter()
                        .map(|r| {
                            vec![
                                time(r.revision.at_ms),
                                holder(&r.revision.by),
                                r.revision.note.clone(),
                            ]
                        })
                        .collect(),
                );
            }
            if let Filing::ChangedSinceFiling { diff, .. } = &filing {
                println!("\nchanges since filing:\n{diff}");
            }
        }
        ConventionCmd::List => {
            let docs = node.docs(Some(Kind::Convention), None, None)?;
            let mut rows = Vec::new();
            for d in docs {
                let state: State = node.state(&d.id)?;
                rows.push(ListRow {
                    filing: filing(&node, &d.id)?,
                    n_articles: state.articles.len(),
                    adopted: state.adoption.is_some(),
                    id: d.id,
                    title: d.title,
                    unit: d.unit,
                });
            }
            if ctx.json {
                return json_ok(&rows);
            }
            print_table(
                &["id", "title", "unit", "articles", "adopted", "filing"],
                rows.iter()
                    .map(|r| {
                        vec![
                            short(&r.id),
                            r.title.clone(),
                            r.unit.clone(),
                            r.n_articles.to_string(),
                            if r.adopted { "yes" } else { "no" }.to_owned(),
                            r.filing.label().to_owned(),
                        ]
                    })
                    .collect(),
            );
        }
    }
    ok()
}
