//! Setting up a node's data directory: `linli init` (a new network) and `linli join`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, anyhow};
use clap::Args;
use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_node::config::{Config, Layout};
use linli_node::setup;

use crate::output::{self};

use super::{Ctx, ok};

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
