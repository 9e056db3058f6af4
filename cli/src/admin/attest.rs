//! Signed statements and their checks: filing, checkpoints and their comparison, a document's audit, and whole-store verification.

use std::process::ExitCode;

use clap::{Args, Subcommand};
use linli_crdt_model::attest::Statement;
use linli_crdt_model::audit::Audit;
use linli_node::contract::{
    AttestRequest, AttestationFilter, AttestationView, CompareView, Created, VerifyView,
};

use crate::EXIT_VERIFY_FAILED;
use crate::output::{self, print_table, short, time};

use super::{Ctx, kind_label, ok};

#[derive(Debug, Subcommand)]
pub enum AttestCmd {
    /// File a convention (备案): sign its exact current version (street or district approver).
    #[command(after_help = "Example:\n  linli --as approver attest file 3f2a9c --note 经审查合法")]
    File {
        doc: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Sign a checkpoint of every document this district node holds.
    #[command(after_help = "Example:\n  linli attest checkpoint")]
    Checkpoint,
    /// List attestations (optionally of one document).
    #[command(after_help = "Example:\n  linli attest list --doc 3f2a9c")]
    List {
        #[arg(long)]
        doc: Option<String>,
    },
}

pub fn attest(ctx: &Ctx, cmd: AttestCmd) -> anyhow::Result<ExitCode> {
    let client = ctx.client()?;
    match cmd {
        AttestCmd::File { doc, note } => {
            let r: Created = client.attest(
                &doc,
                &AttestRequest {
                    statement: Statement::Filed,
                    subject: None,
                    note,
                },
                ctx.person(),
            )?;
            if ctx.json {
                return output::json(&r).map(|_| ExitCode::SUCCESS);
            }
            println!("Filed {} (attestation {})", short(&doc), short(&r.id));
        }
        AttestCmd::Checkpoint => {
            let r: Created = client.checkpoint(ctx.person())?;
            if ctx.json {
                return output::json(&r).map(|_| ExitCode::SUCCESS);
            }
            println!("Signed checkpoint {}", short(&r.id));
        }
        AttestCmd::List { doc } => {
            let atts: Vec<AttestationView> = client.attestations(&AttestationFilter { doc })?;
            if ctx.json {
                return output::json(&atts).map(|_| ExitCode::SUCCESS);
            }
            let rows = atts
                .iter()
                .map(|a| {
                    vec![
                        short(&a.id),
                        a.statement.as_str().to_owned(),
                        short(&a.doc),
                        a.subject.clone().unwrap_or_default(),
                        a.holder.clone().unwrap_or_else(|| short(&a.issuer)),
                        time(a.at_ms),
                        if a.valid {
                            "valid".to_owned()
                        } else {
                            a.reason.clone().unwrap_or_else(|| "invalid".to_owned())
                        },
                    ]
                })
                .collect();
            print_table(
                &["id", "statement", "doc", "subject", "by", "at", "verdict"],
                rows,
            );
        }
    }
    ok()
}

#[derive(Debug, Subcommand)]
pub enum CheckpointCmd {
    /// Compare this node's documents with the newest checkpoint of the district.
    #[command(after_help = "Example:\n  linli checkpoint compare")]
    Compare,
}

pub fn checkpoint(ctx: &Ctx, cmd: CheckpointCmd) -> anyhow::Result<ExitCode> {
    let CheckpointCmd::Compare = cmd;
    let view: CompareView = ctx.client()?.compare_checkpoint()?;
    if ctx.json {
        return output::json(&view).map(|_| ExitCode::SUCCESS);
    }
    println!("checkpoint {}", short(&view.checkpoint));
    let label = |c: linli_crdt_model::attest::Comparison| match c.as_str() {
        "same" => "same as the district",
        "issuer-behind" => "district is behind",
        "i-am-behind" => "I am behind",
        "diverged" => "diverged",
        "not-in-checkpoint" => "not in checkpoint",
        _ => "missing here",
    };
    let rows = view
        .rows
        .iter()
        .map(|r| {
            vec![
                short(&r.doc),
                r.title.clone(),
                label(r.comparison).to_owned(),
            ]
        })
        .collect();
    print_table(&["doc", "title", "comparison"], rows);
    ok()
}

#[derive(Debug, Args)]
pub struct AuditArgs {
    /// Document id or a unique prefix (6+ hex digits).
    pub doc: String,
}

pub fn audit(ctx: &Ctx, a: AuditArgs) -> anyhow::Result<ExitCode> {
    let audit: Audit = ctx.client()?.audit(&a.doc)?;
    if ctx.json {
        output::json(&audit)?;
    } else {
        print!("{}", render_audit(&audit));
    }
    Ok(if audit.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_VERIFY_FAILED)
    })
}

/// The audit as people read it.
pub fn render_audit(audit: &Audit) -> String {
    let mut out = format!(
        "{} — {} ({}, {})\n",
        audit.title,
        kind_label(audit.kind),
        audit.unit,
        audit.scope
    );
    out.push_str(&format!("document {}\n", audit.doc));
    if let Some(f) = &audit.filing {
        out.push_str(&format!("filing: {}\n", f.label()));
    }
    let rows = audit
        .changes
        .iter()
        .map(|e| {
            vec![
                time(e.at_ms),
                e.holder.clone().unwrap_or_else(|| {
                    e.author
                        .as_deref()
                        .map(short)
                        .unwrap_or_else(|| "?".to_owned())
                }),
                e.unit.clone().unwrap_or_default(),
                e.role.clone().unwrap_or_default(),
                e.message.clone().unwrap_or_default(),
                e.verdict.clone(),
                e.covered_by.join(", "),
            ]
        })
        .collect();
    out.push_str(&output::table(
        &[
            "when",
            "who",
            "unit",
            "role",
            "what",
            "verdict",
            "approved by",
        ],
        rows,
    ));
    out.push('\n');
    if !audit.attestations.is_empty() {
        let rows = audit
            .attestations
            .iter()
            .map(|a| {
                vec![
                    a.statement.as_str().to_owned(),
                    a.holder.clone(),
                    a.unit.clone(),
                    a.role.clone(),
                    time(a.at_ms),
                    a.subject.clone().unwrap_or_default(),
                ]
            })
            .collect();
        out.push_str(&output::table(
            &["statement", "by", "unit", "role", "at", "subject"],
            rows,
        ));
        out.push('\n');
    }
    if let Some(linli_crdt_model::audit::Filing::ChangedSinceFiling {
        diff,
        changes_since,
        ..
    }) = &audit.filing
    {
        out.push_str(&format!(
            "changed since filing ({changes_since} change(s)):\n{diff}"
        ));
    }
    if audit.problems.is_empty() {
        out.push_str("verdict: every change and approval verifies\n");
    } else {
        out.push_str("PROBLEMS:\n");
        for p in &audit.problems {
            out.push_str(&format!("  - {p}\n"));
        }
    }
    out
}

pub fn verify(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let v: VerifyView = ctx.client()?.verify()?;
    if ctx.json {
        output::json(&v)?;
    } else if v.ok {
        println!("verified: every header, change, signature, approval and scope checks out");
    } else {
        println!("VERIFICATION FAILED: {} problem(s)", v.problems.len());
        for p in &v.problems {
            println!("  {}: {}", short(&p.doc), p.what);
        }
    }
    Ok(if v.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_VERIFY_FAILED)
    })
}
