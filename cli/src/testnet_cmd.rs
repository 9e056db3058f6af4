//! `linli testnet` and `linli demo`: a real network of `linli node run` processes on this machine,
//! for administrators who want to see it work before they trust it, and for tests. The work is
//! in the `linli-testnet` crate; this module parses arguments, shows progress and prints.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use indicatif::ProgressBar;
use linli_testnet::check::SETTLE_DEFAULT;
use linli_testnet::{Event, LoadOptions, Topology, demo};

use crate::EXIT_VERIFY_FAILED;
use crate::admin::Ctx;
use crate::output::{self, print_table, short};

/// The demo topology, built in so `linli demo` works from any directory.
const DEMO_TOPOLOGY: &str = include_str!("../../config/testnet/demo.toml");

#[derive(Debug, Subcommand)]
pub enum TestnetCmd {
    /// Provision DIR from a topology file and start one node per unit on free loopback ports.
    #[command(
        after_help = "Example:\n  linli testnet up --topology config/testnet/city.toml --dir /tmp/city"
    )]
    Up {
        /// The topology (TOML): district, streets, communities; see config/testnet/.
        #[arg(long, value_name = "FILE")]
        topology: PathBuf,
        /// Where the nodes' data directories and testnet.json go (created; must not hold a testnet).
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Every node: up or down, pid, peers, documents, heads; and whether the network converged.
    #[command(after_help = "Example:\n  linli testnet status --dir /tmp/city --json")]
    Status {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Cut the links between UNITs and the --from units (default: every other unit).
    #[command(
        after_help = "Example:\n  linli testnet partition --dir /tmp/city tiedong/jiefang --from tiedong"
    )]
    Partition {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Unit ids to cut off.
        #[arg(required = true)]
        units: Vec<String>,
        /// Cut them off from these units only.
        #[arg(long, num_args = 1..)]
        from: Vec<String>,
    },
    /// Restore every cut link and ask every node to sync now.
    #[command(after_help = "Example:\n  linli testnet heal --dir /tmp/city")]
    Heal {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Kill a node with SIGKILL, as a crash.
    #[command(
        after_help = "Example:\n  linli testnet kill --dir /tmp/city tiedong/jiefang/shengli"
    )]
    Kill {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        unit: String,
    },
    /// Start a node again (stopping it first if it runs) and wait until it reaches its parent.
    #[command(
        after_help = "Example:\n  linli testnet restart --dir /tmp/city tiedong/jiefang/shengli"
    )]
    Restart {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        unit: String,
    },
    /// Realistic traffic through the nodes' APIs; every acknowledged edit goes to DIR/acked.jsonl.
    #[command(after_help = "Example:\n  linli testnet load --dir /tmp/city --ops 500 --rate 50")]
    Load {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Operations to make.
        #[arg(long, default_value_t = 100)]
        ops: u64,
        /// At most this many operations per second (default: as fast as the nodes answer).
        #[arg(long)]
        rate: Option<f64>,
        /// Seed of the choices, to repeat a run (default: from the clock; the report says it).
        #[arg(long)]
        seed: Option<u64>,
    },
    /// Converged, nothing acknowledged lost, every store verifies, no scope leak? Exits 3 if not.
    #[command(
        after_help = "Example:\n  linli testnet check --dir /tmp/city || echo 'check failed'"
    )]
    Check {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// Wait this long for convergence before judging.
        #[arg(long, value_name = "SECS", default_value_t = SETTLE_DEFAULT.as_secs())]
        within: u64,
    },
    /// Stop every node (SIGTERM, then SIGKILL after 10 s); DIR stays for inspection.
    #[command(after_help = "Example:\n  linli testnet down --dir /tmp/city")]
    Down {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Where to put the demo network (default: a new directory under the system's temp dir).
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Another topology instead of the built-in config/testnet/demo.toml.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
}

/// Progress bars for the library's events; hidden when stderr is not a terminal.
fn bars() -> impl FnMut(Event<'_>) {
    let mut bar: Option<ProgressBar> = None;
    move |e| match e {
        Event::Begin { what, total } => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
            bar = Some(if total == 0 {
                output::spinner(what)
            } else {
                output::progress(total, what)
            });
        }
        Event::Step(n) => {
            if let Some(b) = &bar {
                b.inc(n);
            }
        }
        Event::Note(s) => match &bar {
            Some(b) if !b.is_hidden() => b.println(s),
            _ => eprintln!("{s}"),
        },
        Event::End => {
            if let Some(b) = bar.take() {
                b.finish_and_clear();
            }
        }
    }
}

fn this_binary() -> anyhow::Result<PathBuf> {
    std::env::current_exe().context("finding the linli binary to run the nodes with")
}

pub fn testnet(ctx: &Ctx, cmd: TestnetCmd) -> anyhow::Result<ExitCode> {
    match cmd {
        TestnetCmd::Up { topology, dir } => {
            let t = Topology::load(&topology)?;
            let started = Instant::now();
            let state = linli_testnet::up(&t, &dir, &this_binary()?, &mut bars())
                .with_context(|| format!("starting the testnet in {}", dir.display()))?;
            if ctx.json {
                output::json(&state)?;
            } else {
                println!(
                    "{} is up: {} nodes in {:.1} s",
                    state.network,
                    state.nodes.len(),
                    started.elapsed().as_secs_f64()
                );
                print_status(&linli_testnet::status(&dir)?);
                println!("\nNext:");
                let d = dir.display();
                println!("  linli testnet load --dir {d} --ops 200");
                println!("  linli testnet check --dir {d}");
                println!("  linli testnet down --dir {d}");
            }
        }
        TestnetCmd::Status { dir } => {
            let s = linli_testnet::status(&dir)?;
            if ctx.json {
                output::json(&s)?;
            } else {
                print_status(&s);
            }
        }
        TestnetCmd::Partition { dir, units, from } => {
            let r = linli_testnet::partition(&dir, &units, &from)?;
            if ctx.json {
                output::json(&r)?;
            } else {
                println!("cut {} link(s):", r.cut.len());
                for (a, b) in &r.cut {
                    println!("  {a} ✂ {b}");
                }
                if !r.unreachable.is_empty() {
                    println!(
                        "not answering (blocked when restarted): {}",
                        r.unreachable.join(", ")
                    );
                }
                println!("heal with: linli testnet heal --dir {}", dir.display());
            }
        }
        TestnetCmd::Heal { dir } => {
            let r = linli_testnet::heal(&dir)?;
            if ctx.json {
                output::json(&r)?;
            } else {
                println!(
                    "healed: {} cut link(s) restored, every node asked to sync",
                    r.restored.len()
                );
                if !r.unreachable.is_empty() {
                    println!("not answering: {}", r.unreachable.join(", "));
                }
            }
        }
        TestnetCmd::Kill { dir, unit } => {
            let pid = linli_testnet::kill(&dir, &unit)?;
            if ctx.json {
                output::json(&serde_json::json!({ "unit": unit, "killed": pid }))?;
            } else {
                match pid {
                    Some(p) => println!("killed {unit} (pid {p}) with SIGKILL"),
                    None => println!("{unit} was not running"),
                }
            }
        }
        TestnetCmd::Restart { dir, unit } => {
            let r = linli_testnet::restart(&dir, &unit, Some(&this_binary()?))?;
            if ctx.json {
                output::json(&r)?;
            } else {
                println!(
                    "{} {} (pid {}), connected after {} ms",
                    if r.was_running {
                        "restarted"
                    } else {
                        "started"
                    },
                    r.unit,
                    r.pid,
                    r.connected_after_ms
                );
            }
        }
        TestnetCmd::Load {
            dir,
            ops,
            rate,
            seed,
        } => {
            let opts = LoadOptions { ops, rate, seed };
            let r = linli_testnet::load(&dir, &opts, &mut bars())?;
            if ctx.json {
                output::json(&r)?;
            } else {
                println!(
                    "{} acknowledged of {} attempted in {:.1} s ({:.0} ops/s); {} refused, {} unreachable (seed {})",
                    r.acked,
                    r.attempted,
                    r.elapsed_ms as f64 / 1000.0,
                    r.ops_per_s,
                    r.refused,
                    r.unreachable,
                    r.seed
                );
                let rows = r
                    .by_op
                    .iter()
                    .map(|(op, n)| vec![op.clone(), n.to_string()])
                    .collect();
                print_table(&["operation", "acknowledged"], rows);
                if !r.failures.is_empty() {
                    let rows = r
                        .failures
                        .iter()
                        .map(|(u, n)| vec![u.clone(), n.to_string()])
                        .collect();
                    print_table(&["unit", "failed"], rows);
                    for e in &r.errors {
                        println!("  {e}");
                    }
                }
                println!(
                    "acknowledged edits are logged in {}",
                    dir.join(linli_testnet::state::ACKED_FILE).display()
                );
            }
            if r.acked == 0 && ops > 0 {
                bail!("no edit was acknowledged; is the testnet up? (`linli testnet status`)");
            }
        }
        TestnetCmd::Check { dir, within } => {
            let r = linli_testnet::check(&dir, Duration::from_secs(within), &mut bars())?;
            if ctx.json {
                output::json(&r)?;
            } else {
                print_check(&r);
            }
            if !r.ok {
                return Ok(ExitCode::from(EXIT_VERIFY_FAILED));
            }
        }
        TestnetCmd::Down { dir } => {
            let r = linli_testnet::down(&dir)?;
            if ctx.json {
                output::json(&r)?;
            } else {
                println!(
                    "stopped {} node(s){}; {} stays for inspection (node.log in each unit's directory)",
                    r.stopped.len(),
                    if r.killed.is_empty() {
                        String::new()
                    } else {
                        format!(", {} needed SIGKILL", r.killed.len())
                    },
                    r.dir.display()
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn print_status(s: &linli_testnet::Status) {
    let rows = s
        .nodes
        .iter()
        .map(|n| {
            vec![
                n.unit.clone(),
                n.name.clone(),
                n.kind.label_zh().to_owned(),
                if n.up { "up" } else { "DOWN" }.to_owned(),
                n.pid.map(|p| p.to_string()).unwrap_or_default(),
                n.peers.to_string(),
                n.documents.to_string(),
                n.heads_digest.clone().unwrap_or_default(),
                n.api.clone(),
                n.data_dir.display().to_string(),
            ]
        })
        .collect();
    print_table(
        &[
            "unit", "name", "level", "state", "pid", "peers", "docs", "heads", "api", "data dir",
        ],
        rows,
    );
    if s.converged {
        println!("converged: every node that may hold a document has the same heads for it");
    } else {
        println!("NOT converged ({} difference(s)):", s.differences.len());
        for d in s.differences.iter().take(10) {
            println!("  {d}");
        }
    }
    if !s.cut.is_empty() {
        let cut: Vec<String> = s.cut.iter().map(|(a, b)| format!("{a} ✂ {b}")).collect();
        println!("cut links: {}", cut.join(", "));
    }
}

fn print_check(r: &linli_testnet::CheckReport) {
    let mark = |ok: bool| if ok { "ok  " } else { "FAIL" };
    println!(
        "{} converged: {} nodes, {} documents (settled in {:.1} s)",
        mark(r.converged),
        r.n_nodes,
        r.n_documents,
        r.settle_ms as f64 / 1000.0
    );
    for d in &r.differences {
        println!("       {d}");
    }
    println!(
        "{} acknowledged edits: {} in the load log, {} missing",
        mark(r.n_missing == 0),
        r.n_acked,
        r.n_missing
    );
    for m in &r.missing {
        println!("       {m}");
    }
    println!(
        "{} verify on every node",
        mark(r.verify_failures.is_empty())
    );
    for v in &r.verify_failures {
        println!("       {v}");
    }
    println!(
        "{} scope: {} document(s) held where they may not be",
        mark(r.n_scope_leaks == 0),
        r.n_scope_leaks
    );
    for l in &r.scope_leaks {
        println!("       {l}");
    }
    println!("{}", if r.ok { "check passed" } else { "CHECK FAILED" });
}

/// Ctrl-C and SIGTERM set this, from a thread of their own, so the demo can stop its nodes.
fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    let set = flag.clone();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal handler")?;
    // Register before returning, so a Ctrl-C from now on reaches the flag, not the default
    // handler (which would leave the nodes running).
    let mut term = rt
        .block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        })
        .context("listening for SIGTERM")?;
    let mut int = rt
        .block_on(async {
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        })
        .context("listening for Ctrl-C")?;
    std::thread::spawn(move || {
        rt.block_on(async {
            tokio::select! {
                _ = int.recv() => {}
                _ = term.recv() => {}
            }
        });
        set.store(true, Ordering::SeqCst);
    });
    Ok(flag)
}

pub fn demo(ctx: &Ctx, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let topology = match &args.topology {
        Some(p) => Topology::load(p)?,
        None => Topology::parse(DEMO_TOPOLOGY)
            .map_err(|e| anyhow::anyhow!("the built-in demo topology: {e}"))?,
    };
    let dir = match args.dir {
        Some(d) => d,
        None => std::env::temp_dir().join(format!(
            "linli-demo-{}-{}",
            std::process::id(),
            linli_node::clock::now_ms()
        )),
    };
    let stop = stop_flag()?;
    eprintln!(
        "Starting the demo network {} in {} …",
        topology.network,
        dir.display()
    );
    let state = linli_testnet::up(&topology, &dir, &this_binary()?, &mut bars())
        .with_context(|| format!("starting the demo network in {}", dir.display()))?;
    let dir = state
        .nodes
        .first()
        .and_then(|n| n.data_dir.parent())
        .map(Path::to_owned)
        .unwrap_or(dir);
    let result = run_demo(ctx, &dir, &state, &stop);
    eprintln!("stopping every node …");
    let down = linli_testnet::down(&dir);
    result?;
    let down = down?;
    eprintln!(
        "stopped {} node(s). The data stays in {} (node.log in each unit's directory).",
        down.stopped.len(),
        dir.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn run_demo(
    ctx: &Ctx,
    dir: &Path,
    state: &linli_testnet::State,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    if stop.load(Ordering::SeqCst) {
        return Ok(());
    }
    let seeded = demo::seed(dir, &mut bars()).context("seeding the demo's sample records")?;
    // Let the seed reach every level before showing the status.
    let _ = linli_testnet::check(dir, Duration::from_secs(30), &mut bars());
    let status = linli_testnet::status(dir)?;
    let coverage = demo::coverage(dir)?;
    if ctx.json {
        output::json(&serde_json::json!({
            "dir": dir,
            "seeded": seeded,
            "status": status,
            "coverage": coverage,
        }))?;
    } else {
        println!();
        println!(
            "{} is running on this machine: {} nodes, sample records at every level.",
            state.network,
            state.nodes.len()
        );
        print_status(&status);
        println!();
        println!("Visits this month (每月至少上门走访一次):");
        let rows = coverage
            .iter()
            .map(|c| {
                vec![
                    c.name.clone(),
                    c.unit.clone(),
                    c.month.clone(),
                    format!("{}/{}", c.visited, c.assigned),
                    if c.assigned == 0 {
                        "-".to_owned()
                    } else {
                        format!("{:.0}%", 100.0 * c.visited as f64 / c.assigned as f64)
                    },
                    c.unvisited.first().cloned().unwrap_or_default(),
                ]
            })
            .collect();
        print_table(
            &[
                "community",
                "unit",
                "month",
                "visited",
                "coverage",
                "not yet visited (first)",
            ],
            rows,
        );
        println!();
        println!("Seeded:");
        println!(
            "  convention {} of {}, filed (备案) by {}",
            short(&seeded.convention),
            seeded.convention_unit,
            seeded.filed_by
        );
        println!(
            "  minutes {} of a residents' council, published with a decision",
            short(&seeded.minutes)
        );
        println!(
            "  request {} reviewed and approved at the district, admitted at {} after {:.1} s",
            seeded.request,
            seeded.admitted_at,
            seeded.admitted_after_ms as f64 / 1000.0
        );
        println!(
            "  a whistle from {} answered by its street; a month of visits everywhere ({} writes in all)",
            seeded.whistle_unit, seeded.n_writes
        );
        print_next(dir, state, &seeded);
    }
    eprintln!("\nThe network keeps running. Press Ctrl-C to stop every node.");
    while !stop.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
    eprintln!();
    Ok(())
}

fn print_next(dir: &Path, state: &linli_testnet::State, seeded: &demo::Seeded) {
    let data_dir = |unit: &str| {
        state
            .nodes
            .iter()
            .find(|n| n.unit.as_str() == unit)
            .map(|n| n.data_dir.display().to_string())
            .unwrap_or_default()
    };
    let community = data_dir(&seeded.admitted_at);
    let street = data_dir(&seeded.filed_by);
    let district = state
        .nodes
        .first()
        .map(|n| n.data_dir.display().to_string())
        .unwrap_or_default();
    let d = dir.display();
    println!();
    println!("Try next (in another terminal):");
    println!("  linli --data-dir {community} status");
    println!("  linli --data-dir {community} doc list");
    println!("  linli --data-dir {community} visit coverage");
    println!(
        "  linli --data-dir {community} audit {}",
        short(&seeded.convention)
    );
    println!("  linli --data-dir {street} peers");
    println!("  linli --data-dir {district} checkpoint compare");
    println!("  linli --data-dir {district} verify");
    println!("  linli testnet status --dir {d}");
    println!(
        "  linli testnet partition --dir {d} {} --from {}",
        seeded.filed_by,
        state
            .nodes
            .first()
            .map(|n| n.unit.to_string())
            .unwrap_or_default()
    );
    println!("  linli testnet load --dir {d} --ops 200");
    println!("  linli testnet heal --dir {d}");
    println!("  linli testnet check --dir {d}");
}
