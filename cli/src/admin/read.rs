//! Reading what a node holds: status, peers, documents and their export.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use linli_crdt_model::kinds::Kind;
use linli_node::contract::{DocFilter, DocSummary, DocView, ExportFormat, PeerInfo, StatusView};
use serde_json::Value;

use crate::output::{self, print_table, short, time};

use super::{Ctx, ok};

pub fn status(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let s: StatusView = ctx.client()?.status()?;
    if ctx.json {
        return output::json(&s).map(|_| ExitCode::SUCCESS);
    }
    let st = &s.status;
    println!(
        "{} ({}, {})",
        st.unit_name,
        st.unit,
        st.unit_kind.label_zh()
    );
    println!("  network    {} ({})", st.network_name, short(&st.network));
    println!("  node key   {}", st.node_key);
    println!("  peer id    {}", s.net.peer_id);
    println!("  peers      {}", s.peers);
    println!(
        "  documents  {} ({} changes, heads {})",
        st.documents, st.changes, st.heads_digest
    );
    println!(
        "  trust      {} certificates, {} attestations",
        st.certificates, st.attestations
    );
    if !st.people.is_empty() {
        println!(
            "  people     {}",
            st.people
                .iter()
                .map(|p| format!(
                    "{} ({})",
                    p.handle,
                    p.holder.as_deref().unwrap_or("uncertified")
                ))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    ok()
}

pub fn peers(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let peers: Vec<PeerInfo> = ctx.client()?.peers()?;
    if ctx.json {
        return output::json(&peers).map(|_| ExitCode::SUCCESS);
    }
    let rows = peers
        .iter()
        .map(|p| {
            vec![
                p.unit_name.clone().unwrap_or_else(|| "?".to_owned()),
                p.unit.clone().unwrap_or_default(),
                short(&p.peer_id),
                if p.blocked {
                    "blocked"
                } else if p.connected {
                    "connected"
                } else {
                    "down"
                }
                .to_owned(),
                p.rtt_ms.map(|r| format!("{r} ms")).unwrap_or_default(),
                p.last_seen_ms.map(time).unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["unit", "id", "peer", "state", "rtt", "last seen"], rows);
    ok()
}

#[derive(Debug, Subcommand)]
pub enum DocCmd {
    /// Documents this node holds.
    #[command(after_help = "Example:\n  linli doc list --kind visit-log")]
    List {
        #[arg(long)]
        kind: Option<String>,
    },
    /// One document's header and typed state.
    #[command(after_help = "Example:\n  linli doc show 3f2a9c")]
    Show { id: String },
    /// Export a document: the Automerge binary (loads in any Automerge implementation) or JSON.
    #[command(
        after_help = "Example:\n  linli doc export 3f2a9c --format automerge --out conv.automerge"
    )]
    Export {
        id: String,
        #[arg(long, default_value = "automerge", value_parser = ["automerge", "json"])]
        format: String,
        /// Write here instead of stdout.
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

pub fn kind_label(kind: Kind) -> &'static str {
    match kind {
        Kind::Convention => "公约",
        Kind::Minutes => "议事记录",
        Kind::TaskList => "工作事项",
        Kind::VisitLog => "走访记录",
        Kind::Directory => "名录",
        Kind::Ledger => "台账",
    }
}

pub fn doc(ctx: &Ctx, cmd: DocCmd) -> anyhow::Result<ExitCode> {
    let client = ctx.client()?;
    match cmd {
        DocCmd::List { kind } => {
            let docs: Vec<DocSummary> = client.docs(&DocFilter {
                kind: kind.map(|k| k.to_string()),
                ..DocFilter::default()
            })?;
            if ctx.json {
                return output::json(&docs).map(|_| ExitCode::SUCCESS);
            }
            let rows = docs
                .iter()
                .map(|d| {
                    vec![
                        short(&d.id),
                        kind_label(d.kind).to_owned(),
                        d.title.clone(),
                        d.unit.clone(),
                        d.scope.clone(),
                        d.n_changes.to_string(),
                    ]
                })
                .collect();
            print_table(&["id", "kind", "title", "unit", "scope", "changes"], rows);
        }
        DocCmd::Show { id } => {
            let view: DocView = client.doc(&id)?;
            let state: Value = client.state(&id)?;
            if ctx.json {
                return output::json(&serde_json::json!({ "doc": view, "state": state }))
                    .map(|_| ExitCode::SUCCESS);
            }
            let d = &view.summary;
            println!("{} — {} ({})", d.title, kind_label(d.kind), d.kind.as_str());
            println!("  id        {}", d.id);
            println!("  unit      {} (scope {})", d.unit, d.scope);
            println!(
                "  created   {} by {}",
                time(d.created_at_ms),
                view.creator_holder.as_deref().unwrap_or(&view.creator)
            );
            println!("  changes   {}", d.n_changes);
            println!("{}", serde_json::to_string_pretty(&state)?);
        }
        DocCmd::Export { id, format, out } => {
            let bytes = client.export(
                &id,
                match format.as_str() {
                    "json" => ExportFormat::Json,
                    _ => ExportFormat::Automerge,
                },
            )?;
            match out {
                Some(path) => {
                    std::fs::write(&path, &bytes)
                        .with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {} bytes to {}", bytes.len(), path.display());
                }
                None => {
                    use std::io::Write;
                    std::io::stdout().write_all(&bytes)?;
                }
            }
        }
    }
    ok()
}
