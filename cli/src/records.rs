//! Working with records — being written (see the helper's brief). Temporary skeleton so the
//! binary builds; replaced in this session.

use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::admin::Ctx;

#[derive(Debug, Args)]
pub struct OverviewArgs {
    #[arg(long)]
    pub month: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum ConventionCmd {
    Show { id: String },
}
#[derive(Debug, Subcommand)]
pub enum MinutesCmd {
    Show { id: String },
}
#[derive(Debug, Subcommand)]
pub enum TaskCmd {
    List,
}
#[derive(Debug, Subcommand)]
pub enum WhistleCmd {
    List,
}
#[derive(Debug, Subcommand)]
pub enum VisitCmd {
    List,
}

fn todo_cmd() -> anyhow::Result<ExitCode> {
    anyhow::bail!("not built yet")
}
pub fn overview(_: &Ctx, _: OverviewArgs) -> anyhow::Result<ExitCode> {
    todo_cmd()
}
pub fn convention(_: &Ctx, _: ConventionCmd) -> anyhow::Result<ExitCode> {
    todo_cmd()
}
pub fn minutes(_: &Ctx, _: MinutesCmd) -> anyhow::Result<ExitCode> {
    todo_cmd()
}
pub fn task(_: &Ctx, _: TaskCmd) -> anyhow::Result<ExitCode> {
    todo_cmd()
}
pub fn whistle(_: &Ctx, _: WhistleCmd) -> anyhow::Result<ExitCode> {
    todo_cmd()
}
pub fn visit(_: &Ctx, _: VisitCmd) -> anyhow::Result<ExitCode> {
    todo_cmd()
}
