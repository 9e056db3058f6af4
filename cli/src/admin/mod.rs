//! Commands for administrators and for everyone who reads: setting up nodes, certificates,
//! running the daemon, status, documents, attestations, audit and verification.

mod attest;
mod certs;
mod daemon;
mod init;
mod read;

use std::path::PathBuf;
use std::process::ExitCode;

use linli_node::client::Client;

use crate::Cli;

pub use attest::{AttestCmd, AuditArgs, CheckpointCmd, attest, audit, checkpoint, verify};
pub use certs::{CertCmd, PersonCmd, UnitCmd, cert, person, unit};
pub use daemon::{NodeCmd, node};
pub use init::{InitArgs, JoinArgs, init, join};
pub use read::{DocCmd, doc, kind_label, peers, status};

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
        crate::client::connect(&self.data_dir)
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
