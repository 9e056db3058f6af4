//! `linli`: the one command line for community workers, street and district officers, and the
//! administrators who run nodes. Every command that reads takes `--json`; every command that
//! writes takes `--as PERSON`. Commands talk to the running node through its local API.
//!
//! Exit codes: 0 success, 1 failure, 2 usage error, 3 verification failed.

#![allow(
    unreachable_pub,
    reason = "a binary crate: `pub` here means crate-wide"
)]

mod admin;
mod client;
mod output;
mod records;
mod testnet_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

/// Exit code for "verification failed": the store or the network does not check out.
pub const EXIT_VERIFY_FAILED: u8 = 3;

#[derive(Debug, Parser)]
#[command(
    name = "linli",
    version,
    about = "linli (邻里): signed, peer-to-peer records for communities, streets and districts",
    long_about = None,
    after_help = "Examples:\n  linli demo                                  start a demo network with sample data\n  linli --data-dir ./shengli status           what this node is and holds\n  linli --data-dir ./shengli visit coverage   who has not been visited this month"
)]
pub struct Cli {
    /// The node's data directory.
    #[arg(long, global = true, env = "LINLI_DATA_DIR", value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Print JSON (stable field names) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Which certified person of this node signs a write (a handle such as `wangfang`, or a key
    /// id). Default: the node itself.
    #[arg(long = "as", global = true, value_name = "PERSON")]
    pub person: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new network: genesis, the top unit, its administrator and node keys.
    #[command(
        after_help = "Example:\n  linli --data-dir ./tiedong init --network-name 铁东区邻里网 --unit tiedong --unit-name 铁东区"
    )]
    Init(admin::InitArgs),
    /// Set up a node of an existing network from its genesis file.
    #[command(
        after_help = "Example:\n  linli --data-dir ./jiefang join --genesis genesis.json --unit tiedong/jiefang"
    )]
    Join(admin::JoinArgs),
    /// Units of the network (an administrator registers the units below theirs).
    #[command(subcommand)]
    Unit(admin::UnitCmd),
    /// People who work on this node: their keys.
    #[command(subcommand)]
    Person(admin::PersonCmd),
    /// Certificates: who acts for which unit, in which role.
    #[command(subcommand)]
    Cert(admin::CertCmd),
    /// Run the node.
    #[command(subcommand)]
    Node(admin::NodeCmd),
    /// What this node is and holds.
    #[command(after_help = "Example:\n  linli --data-dir ./shengli status --json")]
    Status,
    /// Peers of this node.
    #[command(after_help = "Example:\n  linli --data-dir ./jiefang peers")]
    Peers,
    /// Documents.
    #[command(subcommand)]
    Doc(admin::DocCmd),
    /// For street and district officers: one row per unit below.
    #[command(after_help = "Example:\n  linli --data-dir ./tiedong overview --month 2026-11")]
    Overview(records::OverviewArgs),
    /// Residents' conventions (居民公约).
    #[command(subcommand)]
    Convention(records::ConventionCmd),
    /// Consultation minutes (协商议事记录).
    #[command(subcommand)]
    Minutes(records::MinutesCmd),
    /// Tasks and admission of work outside the lists (准入).
    #[command(subcommand)]
    Task(records::TaskCmd),
    /// Whistles raised upward (吹哨) and responses (报到).
    #[command(subcommand)]
    Whistle(records::WhistleCmd),
    /// Monthly household visits (走访).
    #[command(subcommand)]
    Visit(records::VisitCmd),
    /// Sign a statement: file a convention, sign a checkpoint.
    #[command(subcommand)]
    Attest(admin::AttestCmd),
    /// Checkpoints: compare this node's view with the district's.
    #[command(subcommand)]
    Checkpoint(admin::CheckpointCmd),
    /// The signed history of a document: who, unit, role, when, verdict, approvals.
    #[command(after_help = "Example:\n  linli --data-dir ./shengli audit 3f2a9c")]
    Audit(admin::AuditArgs),
    /// Re-check the whole store; exits 3 if anything fails.
    #[command(
        after_help = "Example:\n  linli --data-dir ./tiedong verify || echo 'verification failed'"
    )]
    Verify,
    /// A real local network of node processes: start, watch, break, load, check, stop.
    #[command(subcommand)]
    Testnet(testnet_cmd::TestnetCmd),
    /// Start the demo network with sample data; Ctrl-C stops it.
    #[command(after_help = "Examples:\n  linli demo\n  linli demo --dir ./demo-net")]
    Demo(testnet_cmd::DemoArgs),
    /// Shell completions.
    #[command(after_help = "Example:\n  linli completions bash > /etc/bash_completion.d/linli")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    quiet_on_broken_pipe();
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    let ctx = admin::Ctx::new(&cli);
    match cli.command {
        Command::Init(a) => admin::init(&ctx, a),
        Command::Join(a) => admin::join(&ctx, a),
        Command::Unit(c) => admin::unit(&ctx, c),
        Command::Person(c) => admin::person(&ctx, c),
        Command::Cert(c) => admin::cert(&ctx, c),
        Command::Node(c) => admin::node(&ctx, c),
        Command::Status => admin::status(&ctx),
        Command::Peers => admin::peers(&ctx),
        Command::Doc(c) => admin::doc(&ctx, c),
        Command::Overview(a) => records::overview(&ctx, a),
        Command::Convention(c) => records::convention(&ctx, c),
        Command::Minutes(c) => records::minutes(&ctx, c),
        Command::Task(c) => records::task(&ctx, c),
        Command::Whistle(c) => records::whistle(&ctx, c),
        Command::Visit(c) => records::visit(&ctx, c),
        Command::Attest(c) => admin::attest(&ctx, c),
        Command::Checkpoint(c) => admin::checkpoint(&ctx, c),
        Command::Audit(a) => admin::audit(&ctx, a),
        Command::Verify => admin::verify(&ctx),
        Command::Testnet(c) => testnet_cmd::testnet(&ctx, c),
        Command::Demo(a) => testnet_cmd::demo(&ctx, a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "linli", &mut std::io::stdout());
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `linli doc list | head` closes our stdout early; `println!` then panics. A reader that has
/// seen enough is not an error: exit quietly, as Unix tools do.
fn quiet_on_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| info.payload().downcast_ref::<&str>().copied())
            .unwrap_or("");
        if msg.contains("Broken pipe") {
            std::process::exit(0);
        }
        default(info);
    }));
}
