//! Typed operations on documents: what the HTTP API and the CLI send to make an edit.
//!
//! Each variant maps to one typed edit in `crdt-model`'s kinds; the node fills in ids it
//! generates and the time. An operation on a document of the wrong kind is refused by name.

use linli_crdt_model::kinds::{self, EditError, Kind};
use serde::{Deserialize, Serialize};

/// One edit. JSON: `{"op": "visit-add", ...fields}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case")]
pub enum Op {
    // Visit log (走访记录).
    VisitAssign {
        household_id: String,
        assignment: kinds::visits::Assignment,
    },
    VisitUnassign {
        household_id: String,
    },
    VisitAdd {
        id: Option<String>,
        household_id: String,
        worker: String,
        date: String,
        mode: kinds::visits::Mode,
        #[serde(default)]
        needs: Vec<String>,
        follow_up: Option<String>,
    },
    VisitFollowUp {
        entry_id: String,
        follow_up: Option<String>,
    },
    // Convention (居民公约).
    ArticleAdd {
        id: Option<String>,
        number: u32,
        title: String,
        text: String,
    },
    ArticleEdit {
        id: String,
        text: String,
    },
    ArticleTitle {
        id: String,
        title: String,
    },
    ArticleRemove {
        id: String,
    },
    RevisionAdd {
        id: Option<String>,
        note: String,
        by: String,
    },
    Adopt {
        adoption: kinds::convention::Adoption,
    },
    // Minutes (协商议事记录).
    MinutesMeta {
        meta: kinds::minutes::Meta,
    },
    StageAdvance {
        to: kinds::minutes::Stage,
    },
    ParticipantAdd {
        id: Option<String>,
        participant: kinds::minutes::Participant,
    },
    OpinionAdd {
        id: Option<String>,
        by: String,
        text: String,
    },
    DecisionAdd {
        id: Option<String>,
        text: String,
        votes_for: u32,
        votes_against: u32,
        votes_abstain: u32,
    },
    FollowUpAdd {
        id: Option<String>,
        follow_up: kinds::minutes::FollowUp,
    },
    FollowUpDone {
        id: String,
        done: bool,
    },
    Publish,
    // Task list (工作事项, 吹哨报到).
    TaskAdd {
        id: Option<String>,
        task: kinds::tasks::NewTask,
    },
    TaskStatus {
        id: String,
        status: kinds::tasks::Status,
    },
    TaskAssign {
        id: String,
        assignee: Option<String>,
    },
    TaskDue {
        id: String,
        due: Option<String>,
    },
    TaskNote {
        id: String,
        note: String,
    },
    RequestAdd {
        id: Option<String>,
        request: kinds::tasks::Request,
    },
    WhistleRaise {
        id: Option<String>,
        whistle: kinds::tasks::NewWhistle,
    },
    WhistleRespond {
        id: Option<String>,
        whistle_doc: String,
        whistle_id: String,
        text: String,
        by: String,
    },
    WhistleResolve {
        id: String,
    },
    WhistleRate {
        id: String,
        score: u8,
        comment: String,
    },
    // Directory.
    UnitPut {
        unit_id: String,
        entry: kinds::directory::UnitEntry,
    },
    ListItemPut {
        list: kinds::directory::List,
        id: Option<String>,
        item: kinds::directory::ListItem,
    },
    ListItemRemove {
        list: kinds::directory::List,
        id: String,
    },
}

/// Why an operation could not be applied before it reached the document.
#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error("operation {op} applies to {expected} documents, and this is a {found}")]
    WrongKind {
        op: &'static str,
        expected: &'static str,
        found: &'static str,
    },
    #[error(transparent)]
    Edit(#[from] EditError),
}

impl Op {
    pub fn name(&self) -> &'static str {
        match self {
            Op::VisitAssign { .. } => "visit-assign",
            Op::VisitUnassign { .. } => "visit-unassign",
            Op::VisitAdd { .. } => "visit-add",
            Op::VisitFollowUp { .. } => "visit-follow-up",
            Op::ArticleAdd { .. } => "article-add",
            Op::ArticleEdit { .. } => "article-edit",
            Op::ArticleTitle { .. } => "article-title",
            Op::ArticleRemove { .. } => "article-remove",
            Op::RevisionAdd { .. } => "revision-add",
            Op::Adopt { .. } => "adopt",
            Op::MinutesMeta { .. } => "minutes-meta",
            Op::StageAdvance { .. } => "stage-advance",
            Op::ParticipantAdd { .. } => "participant-add",
            Op::OpinionAdd { .. } => "opinion-add",
            Op::DecisionAdd { .. } => "decision-add",
            Op::FollowUpAdd { .. } => "follow-up-add",
            Op::FollowUpDone { .. } => "follow-up-done",
            Op::Publish => "publish",
            Op::TaskAdd { .. } => "task-add",
            Op::TaskStatus { .. } => "task-status",
            Op::TaskAssign { .. } => "task-assign",
            Op::TaskDue { .. } => "task-due",
            Op::TaskNote { .. } => "task-note",
            Op::RequestAdd { .. } => "request-add",
            Op::WhistleRaise { .. } => "whistle-raise",
            Op::WhistleRespond { .. } => "whistle-respond",
            Op::WhistleResolve { .. } => "whistle-resolve",
            Op::WhistleRate { .. } => "whistle-rate",
            Op::UnitPut { .. } => "unit-put",
            Op::ListItemPut { .. } => "list-item-put",
            Op::ListItemRemove { .. } => "list-item-remove",
        }
    }

    /// The kind of document this operation edits.
    pub fn kind(&self) -> Kind {
        match self {
            Op::VisitAssign { .. }
            | Op::VisitUnassign { .. }
            | Op::VisitAdd { .. }
            | Op::VisitFollowUp { .. } => Kind::VisitLog,
            Op::ArticleAdd { .. }
            | Op::ArticleEdit { .. }
            | Op::ArticleTitle { .. }
            | Op::ArticleRemove { .. }
            | Op::RevisionAdd { .. }
            | Op::Adopt { .. } => Kind::Convention,
            Op::MinutesMeta { .. }
            | Op::StageAdvance { .. }
            | Op::ParticipantAdd { .. }
            | Op::OpinionAdd { .. }
            | Op::DecisionAdd { .. }
            | Op::FollowUpAdd { .. }
            | Op::FollowUpDone { .. }
            | Op::Publish => Kind::Minutes,
            Op::TaskAdd { .. }
            | Op::TaskStatus { .. }
            | Op::TaskAssign { .. }
            | Op::TaskDue { .. }
            | Op::TaskNote { .. }
            | Op::RequestAdd { .. }
            | Op::WhistleRaise { .. }
            | Op::WhistleRespond { .. }
            | Op::WhistleResolve { .. }
            | Op::WhistleRate { .. } => Kind::TaskList,
            Op::UnitPut { .. } | Op::ListItemPut { .. } | Op::ListItemRemove { .. } => {
                Kind::Directory
            }
        }
    }

    /// Apply to `doc` (uncommitted). `fresh_id` makes ids for records the caller did not name;
    /// returns the id of the record written, if the operation writes one.
    pub fn apply(
        &self,
        doc: &mut automerge::AutoCommit,
        doc_kind: Kind,
        at_ms: i64,
        fresh_id: &mut dyn FnMut() -> String,
    ) -> Result<Option<String>, OpError> {
        if self.kind() != doc_kind {
            return Err(OpError::WrongKind {
                op: self.name(),
                expected: self.kind().as_str(),
                found: doc_kind.as_str(),
            });
        }
        let mut id_or = |id: &Option<String>| id.clone().unwrap_or_else(&mut *fresh_id);
        let written = match self {
            Op::VisitAssign {
                household_id,
                assignment,
            } => {
                kinds::visits::assign(doc, household_id, assignment)?;
                Some(household_id.clone())
            }
            Op::VisitUnassign { household_id } => {
                kinds::visits::unassign(doc, household_id)?;
                Some(household_id.clone())
            }
            Op::VisitAdd {
                id,
                household_id,
                worker,
                date,
                mode,
                needs,
                follow_up,
            } => {
                let id = id_or(id);
                let entry = kinds::visits::Entry {
                    household_id: household_id.clone(),
                    worker: worker.clone(),
                    date: date.clone(),
                    mode: *mode,
                    needs: needs.clone(),
                    follow_up: follow_up.clone(),
                    at_ms,
                };
                kinds::visits::add_entry(doc, &id, &entry)?;
                Some(id)
            }
            Op::VisitFollowUp {
                entry_id,
                follow_up,
            } => {
                kinds::visits::set_follow_up(doc, entry_id, follow_up.as_deref())?;
                Some(entry_id.clone())
            }
            Op::ArticleAdd {
                id,
                number,
                title,
                text,
            } => {
                let id = id_or(id);
                kinds::convention::add_article(doc, &id, *number, title, text)?;
                Some(id)
            }
            Op::ArticleEdit { id, text } => {
                kinds::convention::edit_article_text(doc, id, text)?;
                Some(id.clone())
            }
            Op::ArticleTitle { id, title } => {
                kinds::convention::set_article_title(doc, id, title)?;
                Some(id.clone())
            }
            Op::ArticleRemove { id } => {
                kinds::convention::remove_article(doc, id)?;
                Some(id.clone())
            }
            Op::RevisionAdd { id, note, by } => {
                let id = id_or(id);
                kinds::convention::add_revision(doc, &id, note, by, at_ms)?;
                Some(id)
            }
            Op::Adopt { adoption } => {
                kinds::convention::adopt(doc, adoption)?;
                None
            }
            Op::MinutesMeta { meta } => {
                kinds::minutes::set_meta(doc, meta)?;
                None
            }
            Op::StageAdvance { to } => {
                kinds::minutes::advance_stage(doc, *to)?;
                None
            }
            Op::ParticipantAdd { id, participant } => {
                let id = id_or(id);
                kinds::minutes::add_participant(doc, &id, participant)?;
                Some(id)
            }
            Op::OpinionAdd { id, by, text } => {
                let id = id_or(id);
                let opinion = kinds::minutes::Opinion {
                    by: by.clone(),
                    text: text.clone(),
                    at_ms,
                };
                kinds::minutes::add_opinion(doc, &id, &opinion)?;
                Some(id)
            }
            Op::DecisionAdd {
                id,
                text,
                votes_for,
                votes_against,
                votes_abstain,
            } => {
                let id = id_or(id);
                let decision = kinds::minutes::Decision {
                    text: text.clone(),
                    votes_for: *votes_for,
                    votes_against: *votes_against,
                    votes_abstain: *votes_abstain,
                    at_ms,
                };
                kinds::minutes::add_decision(doc, &id, &decision)?;
                Some(id)
            }
            Op::FollowUpAdd { id, follow_up } => {
                let id = id_or(id);
                kinds::minutes::add_follow_up(doc, &id, follow_up)?;
                Some(id)
            }
            Op::FollowUpDone { id, done } => {
                kinds::minutes::set_follow_up_done(doc, id, *done)?;
                Some(id.clone())
            }
            Op::Publish => {
                kinds::minutes::publish(doc, at_ms)?;
                None
            }
            Op::TaskAdd { id, task } => {
                let id = id_or(id);
                kinds::tasks::add_task(doc, &id, task, at_ms)?;
                Some(id)
            }
            Op::TaskStatus { id, status } => {
                kinds::tasks::update_status(doc, id, *status, at_ms)?;
                Some(id.clone())
            }
            Op::TaskAssign { id, assignee } => {
                kinds::tasks::assign(doc, id, assignee.as_deref(), at_ms)?;
                Some(id.clone())
            }
            Op::TaskDue { id, due } => {
                kinds::tasks::set_due(doc, id, due.as_deref(), at_ms)?;
                Some(id.clone())
            }
            Op::TaskNote { id, note } => {
                kinds::tasks::set_note(doc, id, note, at_ms)?;
                Some(id.clone())
            }
            Op::RequestAdd { id, request } => {
                let id = id_or(id);
                let mut request = request.clone();
                request.created_at_ms = at_ms;
                kinds::tasks::add_request(doc, &id, &request)?;
                Some(id)
            }
            Op::WhistleRaise { id, whistle } => {
                let id = id_or(id);
                kinds::tasks::raise_whistle(doc, &id, whistle, at_ms)?;
                Some(id)
            }
            Op::WhistleRespond {
                id,
                whistle_doc,
                whistle_id,
                text,
                by,
            } => {
                let id = id_or(id);
                kinds::tasks::respond(doc, &id, whistle_doc, whistle_id, text, by, at_ms)?;
                Some(id)
            }
            Op::WhistleResolve { id } => {
                kinds::tasks::resolve_whistle(doc, id, at_ms)?;
                Some(id.clone())
            }
            Op::WhistleRate { id, score, comment } => {
                // A whistle is rated only once answered (以下评上). Responses live in the
                // responding unit's documents, so the engine checks that before applying.
                kinds::tasks::rate_whistle(doc, id, *score, comment, at_ms, true)?;
                Some(id.clone())
            }
            Op::UnitPut { unit_id, entry } => {
                kinds::directory::put_unit(doc, unit_id, entry)?;
                Some(unit_id.clone())
            }
            Op::ListItemPut { list, id, item } => {
                let id = id_or(id);
                kinds::directory::put_list_item(doc, *list, &id, item)?;
                Some(id)
            }
            Op::ListItemRemove { list, id } => {
                kinds::directory::remove_list_item(doc, *list, id)?;
                Some(id.clone())
            }
        };
        Ok(written)
    }
}
