//! Commands for administrators and for everyone who reads: setting up nodes, certificates,
//! running the daemon, status, documents, attestations, audit and verification.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand};
use linli_crdt_model::attest::Statement;
use linli_crdt_model::audit::Audit;
use linli_crdt_model::cert::{Certificate, Registration, Role};
use linli_crdt_model::kinds::Kind;
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_node::config::{Config, Layout};
use linli_node::contract::{
    AttestRequest, AttestationView, CertView, CompareView, Created, DocSummary, DocView,
    ImportRequest, Imported, IssueRequest, Issued, PeerInfo, RegisterRequest, Registered,
    RevokeRequest, StatusView, UnitView, VerifyView,
};
use linli_node::{run, setup};
use serde_json::Value;

use crate::client::Client;
use crate::output::{self, print_table, short, time};
use crate::{Cli, EXIT_VERIFY_FAILED};

/// What every command gets: where the node is, how to print, who acts.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub data_dir: PathBuf,
    pub json: bool,
    pub person: Option<String>,
}

impl Ctx {
    pub fn new(cli: &Cli) -> Ctx {
        let data_dir = cli.data_dir.clone().unwrap_or_else(default_data_dir);
        Ctx {
            data_dir,
            json: cli.json,
            person: cli.person.clone(),
        }
    }

    pub fn client(&self) -> anyhow::Result<Client> {
        Client::connect(&self.data_dir)
    }

    pub fn person(&self) -> Option<&str> {
        self.person.as_deref()
    }
}

/// `$XDG_DATA_HOME/linli` (or the platform's equivalent), else `./linli-data`.
pub fn default_data_dir() -> PathBuf {
    dirs::data_dir()
        .map(|d| d.join("linli"))
        .unwrap_or_else(|| PathBuf::from("linli-data"))
}

fn ok() -> anyhow::Result<ExitCode> {
    Ok(ExitCode::SUCCESS)
}

// ----- init / join -----

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The network's name (铁东区邻里网).
    #[arg(long)]
    pub network_name: String,
    /// The top unit's id: a path segment of a-z, 0-9 and '-' (tiedong).
    #[arg(long)]
    pub unit: String,
    /// The top unit's display name (铁东区).
    #[arg(long)]
    pub unit_name: String,
    /// The top unit's level.
    #[arg(long, default_value = "district")]
    pub kind: String,
    #[command(flatten)]
    pub net: NetArgs,
}

#[derive(Debug, Args)]
pub struct NetArgs {
    /// libp2p listen addresses (default: TCP and QUIC on every interface, any free port).
    #[arg(long = "listen", value_name = "MULTIADDR")]
    pub listen: Vec<String>,
    /// Peers to dial: multiaddrs ending in /p2p/<peer id>.
    #[arg(long = "bootstrap", value_name = "MULTIADDR")]
    pub bootstrap: Vec<String>,
    /// Turn off LAN discovery (mDNS).
    #[arg(long)]
    pub no_mdns: bool,
    /// Where the local API listens (default 127.0.0.1, any free port).
    #[arg(long, value_name = "ADDR")]
    pub api: Option<std::net::SocketAddr>,
}

impl NetArgs {
    fn config(&self, unit: UnitId) -> Config {
        let mut c = Config::new(unit);
        if !self.listen.is_empty() {
            c.network.listen = self.listen.clone();
        }
        c.network.bootstrap = self.bootstrap.clone();
        c.network.mdns = !self.no_mdns;
        if let Some(a) = self.api {
            c.api.listen = a;
        }
        c
    }
}

pub fn init(ctx: &Ctx, a: InitArgs) -> anyhow::Result<ExitCode> {
    let id = UnitId::new(&a.unit)?;
    let kind: UnitKind = a.kind.parse().map_err(|e: String| anyhow!(e))?;
    let top = Unit {
        id: id.clone(),
        kind,
        name: a.unit_name.clone(),
    };
    let done = setup::init_network(
        &ctx.data_dir,
        &a.network_name,
        top,
        a.net.config(id),
        linli_node::clock::now_ms(),
    )
    .with_context(|| format!("initialising {}", ctx.data_dir.display()))?;
    if ctx.json {
        return output::json(&serde_json::json!({
            "network": done.genesis.network_id().to_string(),
            "genesis": Layout::new(&ctx.data_dir).genesis(),
            "root_key": done.root.to_string(),
            "node_key": done.node.to_string(),
        }))
        .map(|_| ExitCode::SUCCESS);
    }
    let dir = ctx.data_dir.display();
    println!(
        "Created network {} ({})",
        a.network_name,
        done.genesis.network_id()
    );
    println!(
        "  genesis:   {}",
        Layout::new(&ctx.data_dir).genesis().display()
    );
    println!(
        "  root key:  {} (person `root`, the network's first administrator)",
        done.root
    );
    println!("  node key:  {}", done.node);
    println!("\nNext:");
    println!("  linli --data-dir {dir} node run");
    println!(
        "  give genesis.json to the nodes that will join; certify them with `linli --data-dir {dir} --as root cert issue …`"
    );
    ok()
}

#[derive(Debug, Args)]
pub struct JoinArgs {
    /// The network's genesis file (genesis.json from the node that ran `init`).
    #[arg(long)]
    pub genesis: PathBuf,
    /// This node's unit id (tiedong/jiefang).
    #[arg(long)]
    pub unit: String,
    #[command(flatten)]
    pub net: NetArgs,
}

pub fn join(ctx: &Ctx, a: JoinArgs) -> anyhow::Result<ExitCode> {
    let text = std::fs::read_to_string(&a.genesis)
        .with_context(|| format!("reading genesis {}", a.genesis.display()))?;
    let genesis: linli_crdt_model::genesis::Genesis = serde_json::from_str(&text)
        .with_context(|| format!("{} is not a linli genesis file", a.genesis.display()))?;
    let unit = UnitId::new(&a.unit)?;
    let key = setup::join(&ctx.data_dir, &genesis, a.net.config(unit.clone()))
        .with_context(|| format!("setting up {}", ctx.data_dir.display()))?;
    if ctx.json {
        return output::json(&serde_json::json!({ "network": genesis.network_id().to_string(), "node_key": key.to_string(), "unit": unit })).map(|_| ExitCode::SUCCESS);
    }
    println!(
        "Joined network {} as a node of {unit}",
        genesis.network_name
    );
    println!("  node key: {key}");
    println!(
        "\nNext: an administrator of a unit above registers {unit} (`linli unit register`) if it is new, and certifies this key:"
    );
    println!(
        "  linli --data-dir <their node> --as admin cert issue --subject {key} --unit {unit} --role node --holder 节点 --out node.cert"
    );
    println!("then, here:");
    println!(
        "  linli --data-dir {} cert import node.cert",
        ctx.data_dir.display()
    );
    println!("  linli --data-dir {} node run", ctx.data_dir.display());
    ok()
}

// ----- units, people, certificates -----

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
            let r: Registered = client.post("/v1/units/register", &req, ctx.person())?;
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
            let units: Vec<UnitView> = client.get("/v1/units")?;
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
            let issued: Issued = client.post("/v1/certs/issue", &req, ctx.person())?;
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
                let r: Imported = client.post(
                    "/v1/certs/import",
                    &ImportRequest {
                        certificates,
                        registrations,
                    },
                    None,
                )?;
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
            let r: Created = client.post(
                "/v1/certs/revoke",
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
            let certs: Vec<CertView> = client.get("/v1/certs")?;
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

// ----- the daemon -----

#[derive(Debug, Subcommand)]
pub enum NodeCmd {
    /// Run the node in the foreground until Ctrl-C (logs on stderr; RUST_LOG filters them).
    #[command(
        after_help = "Example:\n  RUST_LOG=linli_node=debug linli --data-dir ./shengli node run"
    )]
    Run {
        /// One JSON object per log line.
        #[arg(long)]
        log_json: bool,
    },
}

pub fn node(ctx: &Ctx, cmd: NodeCmd) -> anyhow::Result<ExitCode> {
    let NodeCmd::Run { log_json } = cmd;
    let layout = Layout::new(&ctx.data_dir);
    let config = Config::load(&layout.config())
        .with_context(|| format!("{} is not a node data directory", ctx.data_dir.display()))?;
    init_logging(log_json || config.log.json);
    if let Ok(addr) = std::fs::read_to_string(layout.api_addr())
        && std::net::TcpStream::connect(addr.trim()).is_ok()
    {
        bail!(
            "a node is already running on {} (API at {})",
            ctx.data_dir.display(),
            addr.trim()
        );
    }
    let rt = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    rt.block_on(async {
        let running = run::start(&ctx.data_dir, run::Options::default())
            .await
            .with_context(|| format!("starting the node in {}", ctx.data_dir.display()))?;
        let (unit, name) = {
            let e = running.shared.engine();
            (e.unit().id.to_string(), e.unit().name.clone())
        };
        eprintln!("linli node of {name} ({unit}) is running");
        eprintln!("  peer id: {}", running.peer_id);
        for a in &running.listen {
            eprintln!("  listening on {a}");
        }
        eprintln!(
            "  API: http://{} (token in {})",
            running.api_addr,
            layout.api_token().display()
        );
        eprintln!("Press Ctrl-C to stop.");
        shutdown_signal().await;
        eprintln!("stopping…");
        running.stop().await;
        eprintln!("stopped cleanly");
        Ok::<_, anyhow::Error>(())
    })?;
    ok()
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn init_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("info,libp2p=warn,libp2p_gossipsub=error")
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        let _ = builder.json().try_init();
    } else {
        let _ = builder.try_init();
    }
}

// ----- reading -----

pub fn status(ctx: &Ctx) -> anyhow::Result<ExitCode> {
    let s: StatusView = ctx.client()?.get("/v1/status")?;
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
    let peers: Vec<PeerInfo> = ctx.client()?.get("/v1/peers")?;
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
            let path = match &kind {
                Some(k) => format!("/v1/docs?kind={k}"),
                None => "/v1/docs".to_owned(),
            };
            let docs: Vec<DocSummary> = client.get(&path)?;
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
            let view: DocView = client.get(&format!("/v1/docs/{id}"))?;
            let state: Value = client.get(&format!("/v1/docs/{id}/state"))?;
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
            let bytes = client.get_bytes(&format!("/v1/docs/{id}/export?format={format}"))?;
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

// ----- attestations, checkpoints, audit, verify -----

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
            let r: Created = client.post(
                &format!("/v1/docs/{doc}/attest"),
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
            let r: Created = client.post("/v1/checkpoint", &serde_json::json!({}), ctx.person())?;
            if ctx.json {
                return output::json(&r).map(|_| ExitCode::SUCCESS);
            }
            println!("Signed checkpoint {}", short(&r.id));
        }
        AttestCmd::List { doc } => {
            let path = match &doc {
                Some(d) => format!("/v1/attestations?doc={d}"),
                None => "/v1/attestations".to_owned(),
            };
            let atts: Vec<AttestationView> = client.get(&path)?;
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
    let view: CompareView = ctx.client()?.get("/v1/checkpoint/compare")?;
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
    let audit: Audit = ctx.client()?.get(&format!("/v1/docs/{}/audit", a.doc))?;
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
    let v: VerifyView = ctx.client()?.get("/v1/verify")?;
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
