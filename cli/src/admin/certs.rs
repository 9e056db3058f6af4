//! The registered unit tree, the people whose keys a node holds, and certificates: register, issue, import, revoke, list.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use linli_crdt_model::cert::{Certificate, Registration, Role};
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_node::config::Layout;
use linli_node::contract::{
    CertView, Created, ImportRequest, Imported, IssueRequest, Issued, RegisterRequest, Registered,
    RevokeRequest, UnitView,
};
use linli_node::setup;

use crate::output::{self, print_table, short, time};

use super::{Ctx, ok};

#[derive(Debug, Subcommand)]
pub enum UnitCmd {
    /// Register a unit below the top in the network's unit tree (an administrator of its parent
    /// or of a unit above it). Certificates can only name registered units.
    #[command(
        visible_alias = "add",
        after_help = "Example:\n  linli --as admin unit register tiedong/jiefang --name 解放街道 --kind street"
    )]
    Register {
        id: String,
        #[arg(long)]
        name: String,
        /// street, community or grid: one level below its parent.
        #[arg(long)]
        kind: String,
    },
    /// Units of the registered tree, as this node knows it.
    #[command(after_help = "Example:\n  linli unit list --json")]
    List,
}

pub fn unit(ctx: &Ctx, cmd: UnitCmd) -> anyhow::Result<ExitCode> {
    let client = ctx.client()?;
    match cmd {
        UnitCmd::Register { id, name, kind } => {
            let id = UnitId::new(&id)?;
            let kind: UnitKind = kind.parse().map_err(|e: String| anyhow!(e))?;
            let req = RegisterRequest {
                unit: Unit { id, kind, name },
            };
            let r: Registered = client.register_unit(&req, ctx.person())?;
            if ctx.json {
                return output::json(&r).map(|_| ExitCode::SUCCESS);
            }
            println!(
                "Registered {} ({}, {}); registration {}",
                r.unit.id,
                r.unit.name,
                r.unit.kind.label_zh(),
                short(&r.id)
            );
        }
        UnitCmd::List => {
            let units: Vec<UnitView> = client.units()?;
            if ctx.json {
                return output::json(&units).map(|_| ExitCode::SUCCESS);
            }
            let rows = units
                .iter()
                .map(|u| {
                    vec![
                        u.id.to_string(),
                        u.name.clone(),
                        u.kind.as_str().to_owned(),
                        u.parent.as_ref().map(|p| p.to_string()).unwrap_or_default(),
                        u.registration
                            .as_deref()
                            .map_or_else(|| "genesis".to_owned(), short),
                    ]
                })
                .collect();
            print_table(&["unit", "name", "kind", "parent", "registration"], rows);
        }
    }
    ok()
}

#[derive(Debug, Subcommand)]
pub enum PersonCmd {
    /// Make a key for a person who works on this node (keys/people/HANDLE.key, mode 0600).
    #[command(
        after_help = "Example:\n  linli person add wangfang   # then certify the printed key with `cert issue --role writer`"
    )]
    Add { handle: String },
}

pub fn person(ctx: &Ctx, cmd: PersonCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        PersonCmd::Add { handle } => {
            let key = setup::add_person(&ctx.data_dir, &handle)?;
            if ctx.json {
                return output::json(
                    &serde_json::json!({ "handle": handle, "key": key.to_string() }),
                )
                .map(|_| ExitCode::SUCCESS);
            }
            println!("{key}");
            eprintln!(
                "Key for {handle} written to {}.",
                Layout::new(&ctx.data_dir)
                    .people()
                    .join(format!("{handle}.key"))
                    .display()
            );
            eprintln!("Restart the node to use it, after an administrator has certified the key.");
        }
    }
    ok()
}

#[derive(Debug, Subcommand)]
pub enum CertCmd {
    /// Certify a key for a unit and role (as an administrator of that unit or one above).
    #[command(
        after_help = "Example:\n  linli --as admin cert issue --subject 3b9f… --unit tiedong/jiefang/shengli --unit-name 胜利社区 --unit-kind community --role writer --holder 王芳 --out wangfang.cert"
    )]
    Issue {
        #[arg(long)]
        subject: String,
        /// A registered unit (`linli unit list`).
        #[arg(long)]
        unit: String,
        /// admin, writer, reviewer, approver or node.
        #[arg(long)]
        role: String,
        /// Who holds the key (王芳, or a node's label).
        #[arg(long)]
        holder: String,
        #[arg(long, default_value_t = 365)]
        days: u32,
        /// Also write the certificate, its issuer's chain and the registrations that place them
        /// to this file, for a node that is not running yet (`linli cert import FILE`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Import certificates and registrations from files written by `cert issue --out` (one
    /// hex record per line; registrations prefixed `registration `). Works with the node
    /// stopped, for a node's first certificate.
    #[command(after_help = "Example:\n  linli cert import node.cert")]
    Import { files: Vec<PathBuf> },
    /// Revoke a key over a unit and the units below it: what it signed from the cutoff on no
    /// longer counts, on every node, whatever it had already reached.
    #[command(
        after_help = "Examples:\n  linli --as admin cert revoke 3b9f… --reason 钥匙丢失 --since 2026-11-28T08:00:00+08:00\n  linli --as admin cert revoke 3b9f… --reason 工作调动 --keep-issued"
    )]
    Revoke {
        /// The key to revoke (64 hex digits, as `cert list --json` shows it).
        key: String,
        /// Why, in words: it is part of the signed revocation every node keeps.
        #[arg(long)]
        reason: String,
        /// The unit over which the key loses its certificates (default: the unit of your
        /// administrator certificate). Units above it are not affected.
        #[arg(long)]
        unit: Option<String>,
        /// From when its signatures stop counting (RFC 3339, e.g. 2026-11-28T08:00:00+08:00;
        /// default now): set it to when a key was lost, so what a thief signed is refused.
        #[arg(long, value_name = "TIME")]
        since: Option<String>,
        /// Keep the certificates the key issued in force until they expire (a job transfer,
        /// 工作调动). Without it they end at the cutoff too (a lost or stolen key).
        #[arg(long)]
        keep_issued: bool,
    },
    /// Certificates this node knows.
    #[command(after_help = "Example:\n  linli cert list --json")]
    List,
}

pub fn cert(ctx: &Ctx, cmd: CertCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        CertCmd::Issue {
            subject,
            unit,
            role,
            holder,
            days,
            out,
        } => {
            let client = ctx.client()?;
            let unit = UnitId::new(&unit)?;
            let role: Role = role.parse().map_err(|e: String| anyhow!(e))?;
            let req = IssueRequest {
                subject,
                unit,
                role,
                holder,
                valid_days: Some(days),
            };
            let issued: Issued = client.issue_cert(&req, ctx.person())?;
            if let Some(path) = &out {
                std::fs::write(path, cert_file(&issued))
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            if ctx.json {
                return output::json(&issued).map(|_| ExitCode::SUCCESS);
            }
            println!(
                "Issued certificate {} ({} of {} for {})",
                short(&issued.id),
                role.as_str(),
                req.unit,
                req.holder
            );
            if let Some(path) = out {
                println!("  written to {}", path.display());
            }
        }
        CertCmd::Import { files } => {
            if files.is_empty() {
                bail!("give at least one certificate file");
            }
            let mut certificates = Vec::new();
            let mut registrations = Vec::new();
            for f in &files {
                let text = std::fs::read_to_string(f)
                    .with_context(|| format!("reading {}", f.display()))?;
                let (c, r) = parse_cert_file(&text);
                certificates.extend(c);
                registrations.extend(r);
            }
            let running = Layout::new(&ctx.data_dir).api_addr().exists();
            if running {
                let client = ctx.client()?;
                let r: Imported = client.import_certs(&ImportRequest {
                    certificates,
                    registrations,
                })?;
                if ctx.json {
                    return output::json(&r).map(|_| ExitCode::SUCCESS);
                }
                println!("Imported {} certificate(s), {} new", r.ids.len(), r.n_new);
            } else {
                let genesis = setup::genesis_of(&ctx.data_dir)?;
                let network = genesis.network_id();
                let mut certs = Vec::new();
                for h in &certificates {
                    let bytes = hex::decode(h)
                        .with_context(|| format!("{} is not a hex certificate", short(h)))?;
                    certs.push(Certificate::decode(&bytes, &network)?);
                }
                let mut regs = Vec::new();
                for h in &registrations {
                    let bytes = hex::decode(h)
                        .with_context(|| format!("{} is not a hex registration", short(h)))?;
                    regs.push(Registration::decode(&bytes, &network)?);
                }
                setup::import_offline(&ctx.data_dir, &genesis, &regs, &certs)?;
                if ctx.json {
                    return output::json(
                        &certs.iter().map(|c| c.id().to_string()).collect::<Vec<_>>(),
                    )
                    .map(|_| ExitCode::SUCCESS);
                }
                println!(
                    "Imported {} certificate(s) and {} registration(s) into the stopped node at {}",
                    certs.len(),
                    regs.len(),
                    ctx.data_dir.display()
                );
            }
        }
        CertCmd::Revoke {
            key,
            reason,
            unit,
            since,
            keep_issued,
        } => {
            let unit = unit.as_deref().map(UnitId::new).transpose()?;
            let cutoff_ms = since
                .as_deref()
                .map(|t| {
                    chrono::DateTime::parse_from_rfc3339(t)
                        .map(|d| d.timestamp_millis())
                        .with_context(|| {
                            format!("--since {t}: give a time as RFC 3339, e.g. 2026-11-28T08:00:00+08:00")
                        })
                })
                .transpose()?;
            let client = ctx.client()?;
            let r: Created = client.revoke(
                &RevokeRequest {
                    key: key.clone(),
                    reason,
                    unit,
                    cutoff_ms,
                    keep_issued,
                },
                ctx.person(),
            )?;
            if ctx.json {
                return output::json(&r).map(|_| ExitCode::SUCCESS);
            }
            println!("Revoked key {} (revocation {})", short(&key), short(&r.id));
        }
        CertCmd::List => {
            let client = ctx.client()?;
            let certs: Vec<CertView> = client.certs()?;
            if ctx.json {
                return output::json(&certs).map(|_| ExitCode::SUCCESS);
            }
            let rows = certs
                .iter()
                .map(|c| {
                    let state = if c.in_force {
                        "valid"
                    } else if c.revoked {
                        "revoked"
                    } else if c.expired {
                        "expired"
                    } else {
                        "no chain"
                    };
                    vec![
                        c.holder.clone(),
                        c.unit_name.clone().unwrap_or_else(|| c.unit.to_string()),
                        c.role.as_str().to_owned(),
                        short(&c.subject),
                        time(c.expires_at_ms),
                        state.to_owned(),
                    ]
                })
                .collect();
            print_table(&["holder", "unit", "role", "key", "expires", "state"], rows);
        }
    }
    ok()
}

/// What `cert issue --out` writes: the certificate, then its issuer's chain, one hex record a
/// line, then the registrations that place them, each line prefixed `registration `.
fn cert_file(issued: &Issued) -> String {
    let mut out = String::new();
    for c in std::iter::once(&issued.hex).chain(&issued.chain) {
        out.push_str(c);
        out.push('\n');
    }
    for r in &issued.registrations {
        out.push_str("registration ");
        out.push_str(r);
        out.push('\n');
    }
    out
}

/// A certificate file's (certificates, registrations), as hex.
fn parse_cert_file(text: &str) -> (Vec<String>, Vec<String>) {
    let mut certs = Vec::new();
    let mut regs = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        match line.strip_prefix("registration ") {
            Some(r) => regs.push(r.trim().to_owned()),
            None => certs.push(line.to_owned()),
        }
    }
    (certs, regs)
}
