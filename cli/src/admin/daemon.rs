//! Running the daemon in this process: `linli node run`, with its logging.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;
use linli_node::config::{Config, Layout};
use linli_node::run;

use super::{Ctx, ok};

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
