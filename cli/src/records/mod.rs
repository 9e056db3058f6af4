//! Working with records, one subcommand group per kind (DOMAIN.md, "The four kinds of record"):
//! conventions, consultation minutes, tasks with their admission and whistles, monthly visits,
//! and the overview a street or district officer reads.
//!
//! Every command here talks to the running node through its API: reads take the typed state
//! (`GET /v1/docs/{id}/state`), writes send typed operations (`linli_node::contract::Op`) signed by
//! `--as PERSON` (default: the node). This module holds what the kinds share: finding this
//! unit's own documents, sending operations, dates and months, and choices from the model's
//! enumerations.

mod convention;
mod minutes;
mod overview;
mod tasks;
mod visits;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::builder::{PossibleValuesParser, TypedValueParser};
use linli_crdt_model::kinds::{self, Kind};
use linli_node::client::Client;
use linli_node::contract::{
    CreateDoc, Created, DocFilter, DocSummary, DocView, Op, Receipt, StatusView, UnitView,
};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::output;

pub use convention::{ConventionCmd, convention};
pub use minutes::{MinutesCmd, minutes};
pub use overview::{OverviewArgs, overview};
pub use tasks::{TaskCmd, WhistleCmd, task, whistle};
pub use visits::{VisitCmd, visit};

fn ok() -> anyhow::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}

/// Print `value` as JSON and succeed: the `--json` branch of every command.
fn json_ok<T: Serialize + ?Sized>(value: &T) -> anyhow::Result<ExitCode> {
    output::json(value)?;
    ok()
}

// ----- choices from the model's enumerations -----

/// An enumeration of the model (`string_enum!`): its values and their names.
pub trait Choice: Copy + Send + Sync + 'static {
    fn all() -> &'static [Self];
    fn name(self) -> &'static str;
}

macro_rules! choice {
    ($($t:ty),* $(,)?) => {
        $(impl Choice for $t {
            fn all() -> &'static [Self] {
                <$t>::ALL
            }
            fn name(self) -> &'static str {
                self.as_str()
            }
        })*
    };
}

choice!(
    kinds::visits::Mode,
    kinds::tasks::Status,
    kinds::tasks::Category,
    kinds::convention::Method,
    kinds::minutes::Form,
    kinds::minutes::Meeting,
    kinds::minutes::Stage,
    kinds::minutes::TopicSource,
);

/// A clap parser that lists the enumeration's values in `--help` and in its error.
pub fn choice<T: Choice>() -> impl TypedValueParser<Value = T> {
    PossibleValuesParser::new(T::all().iter().map(|v| v.name())).map(|s: String| {
        T::all()
            .iter()
            .copied()
            .find(|v| v.name() == s)
            .expect("clap accepted only the listed values")
    })
}

// ----- dates and months -----

/// Today, UTC, as `YYYY-MM-DD`.
pub fn today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// This month, UTC, as `YYYY-MM`.
pub fn this_month() -> String {
    chrono::Utc::now().format("%Y-%m").to_string()
}

/// A clap parser for `YYYY-MM-DD`.
pub fn date(s: &str) -> Result<String, String> {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .filter(|d| d.format("%Y-%m-%d").to_string() == s)
        .map(|_| s.to_owned())
        .ok_or_else(|| format!("{s:?} is not a date written YYYY-MM-DD (e.g. 2026-11-05)"))
}

/// A clap parser for `YYYY-MM`.
pub fn month(s: &str) -> Result<String, String> {
    date(&format!("{s}-01"))
        .map(|_| s.to_owned())
        .map_err(|_| format!("{s:?} is not a month written YYYY-MM (e.g. 2026-11)"))
}

/// Milliseconds since the epoch, now.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

// ----- the node -----

/// The running node and what it says about itself.
#[derive(Debug)]
pub struct Node {
    pub client: Client,
    pub status: StatusView,
}

impl Node {
    pub fn connect(ctx: &crate::admin::Ctx) -> anyhow::Result<Node> {
        let client = ctx.client()?;
        let status = client.status()?;
        Ok(Node { client, status })
    }

    pub fn unit(&self) -> &str {
        &self.status.status.unit
    }

    pub fn unit_name(&self) -> &str {
        &self.status.status.unit_name
    }

    /// Who signs as `person`, by the name on their certificate: for `raised_by` and `by`
    /// fields. The node itself signs for its unit.
    pub fn signer_name(&self, person: Option<&str>) -> String {
        match person {
            None => self.unit_name().to_owned(),
            Some(p) => self
                .status
                .status
                .people
                .iter()
                .find(|x| x.handle == p || x.key == p)
                .and_then(|x| x.holder.clone())
                .unwrap_or_else(|| p.to_owned()),
        }
    }

    /// Documents held, optionally of one kind, unit and period.
    pub fn docs(
        &self,
        kind: Option<Kind>,
        unit: Option<&str>,
        period: Option<&str>,
    ) -> anyhow::Result<Vec<DocSummary>> {
        Ok(self.client.docs(&DocFilter {
            kind: kind.map(|k| k.as_str().to_owned()),
            unit: unit.map(str::to_owned),
            period: period.map(str::to_owned),
        })?)
    }

    /// A unit's document of a kind, the oldest if there are several (as the engine picks it).
    pub fn unit_doc(&self, unit: &str, kind: Kind) -> anyhow::Result<Option<DocSummary>> {
        Ok(self
            .docs(Some(kind), Some(unit), None)?
            .into_iter()
            .min_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id))))
    }

    /// This unit's own task list (every node makes one when it first starts).
    pub fn own_task_list(&self) -> anyhow::Result<String> {
        self.unit_doc(self.unit(), Kind::TaskList)?
            .map(|d| d.id)
            .ok_or_else(|| {
                anyhow!(
                    "the node at {} ({}) has no task list of its own; a node makes one when it starts: restart it, or check its log",
                    self.client.dir().unwrap_or(Path::new("?")).display(),
                    self.unit()
                )
            })
    }

    /// The full id and summary of a document given by id or prefix.
    pub fn doc(&self, id: &str) -> anyhow::Result<DocView> {
        self.client
            .doc(id)
            .with_context(|| format!("looking up document {id}"))
    }

    /// A document of an expected kind, or an error that says what it is instead.
    pub fn doc_of_kind(&self, id: &str, kind: Kind, list_hint: &str) -> anyhow::Result<DocView> {
        let view = self.doc(id)?;
        if view.summary.kind != kind {
            bail!(
                "document {} is a {} ({}), not a {}; {list_hint}",
                output::short(&view.summary.id),
                view.summary.kind.as_str(),
                view.summary.title,
                kind.as_str()
            );
        }
        Ok(view)
    }

    pub fn state<T: DeserializeOwned>(&self, id: &str) -> anyhow::Result<T> {
        Ok(self.client.state(id)?)
    }

    pub fn create(&self, req: &CreateDoc, person: Option<&str>) -> anyhow::Result<String> {
        let created: Created = self.client.create_doc(req, person)?;
        Ok(created.id)
    }

    pub fn apply(&self, doc: &str, op: &Op, person: Option<&str>) -> anyhow::Result<Receipt> {
        Ok(self.client.apply(doc, op, person)?)
    }

    pub fn apply_batch(
        &self,
        doc: &str,
        ops: &[Op],
        person: Option<&str>,
    ) -> anyhow::Result<Vec<Receipt>> {
        Ok(self.client.apply_batch(doc, ops, person)?)
    }

    /// Unit id → display name, from the registered unit tree this node knows.
    pub fn unit_names(&self) -> anyhow::Result<BTreeMap<String, kinds::directory::UnitEntry>> {
        let units: Vec<UnitView> = self.client.units()?;
        Ok(units
            .into_iter()
            .map(|u| {
                let unit = linli_crdt_model::unit::Unit {
                    id: u.id,
                    kind: u.kind,
                    name: u.name,
                };
                (
                    unit.id.to_string(),
                    kinds::directory::UnitEntry::from(&unit),
                )
            })
            .collect())
    }
}

/// The record in `map` whose id is `given` or starts with it (ids are long hex; a unique
/// prefix is enough), or an error naming the document and how to list its records.
pub fn pick<'a, V>(
    map: &'a BTreeMap<String, V>,
    given: &str,
    what: &str,
    doc: &str,
    hint: &str,
) -> anyhow::Result<(&'a str, &'a V)> {
    if let Some((k, v)) = map.get_key_value(given) {
        return Ok((k, v));
    }
    let matches: Vec<(&String, &V)> = map.iter().filter(|(k, _)| k.starts_with(given)).collect();
    match matches.as_slice() {
        [(k, v)] => Ok((k.as_str(), *v)),
        [] => bail!(
            "no {what} {given:?} in document {}; {hint}",
            output::short(doc)
        ),
        _ => bail!(
            "{given:?} matches {} {what}s in document {} ({}); give more of the id",
            matches.len(),
            output::short(doc),
            matches
                .iter()
                .map(|(k, _)| k.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `ratio` as a percentage with one decimal.
pub fn percent(visited: usize, assigned: usize) -> String {
    if assigned == 0 {
        return "–".to_owned();
    }
    format!("{:.1}%", visited as f64 * 100.0 / assigned as f64)
}

/// A cell for an optional value.
pub fn or_dash(v: Option<&str>) -> String {
    v.filter(|s| !s.is_empty()).unwrap_or("–").to_owned()
}
