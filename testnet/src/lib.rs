//! `linli testnet`: a real local network of `linli node run` processes on 127.0.0.1, that an
//! administrator (or a test) can start from a topology file, watch, break, load and check.
//!
//! Everything here drives the nodes from outside, as an operator would: it provisions data
//! directories with [`linli_node::setup::provision`], starts the binary it is given as detached
//! child processes, and talks to each node only through its local HTTP API. What it knows about
//! a running network lives in `DIR/testnet.json` ([`state`]), so `up` can return and a later
//! `status`, `kill` or `down` — another process — finds the nodes by pid.
//!
//! `topology` reads the TOML file; `net` starts, stops, partitions and heals; `load` makes
//! realistic traffic and logs every acknowledged edit to `DIR/acked.jsonl`; `check` judges
//! convergence, loss, verification and scope; `demo` seeds sample records. Nothing here prints:
//! progress goes to the caller through [`Event`]s.

pub mod check;
pub mod client;
pub mod demo;
pub mod load;
pub mod net;
pub mod process;
pub mod state;
pub mod time;
pub mod topology;

use std::path::PathBuf;

pub use check::{CheckReport, check};
pub use load::{LoadOptions, LoadReport, load};
pub use net::{NodeStatus, Status, down, heal, kill, partition, restart, status, up};
pub use state::State;
pub use topology::Topology;

/// Why a testnet operation failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("topology {path} is not valid: {detail}")]
    Topology { path: String, detail: String },
    #[error(
        "{path} is not a testnet state file: {detail}; was `linli testnet up` run with this --dir?"
    )]
    State { path: PathBuf, detail: String },
    #[error("provisioning the data directories failed: {0}")]
    Provision(#[from] linli_node::engine::Error),
    #[error("starting {unit} ({binary}): {source}")]
    Spawn {
        unit: String,
        binary: PathBuf,
        source: std::io::Error,
    },
    #[error("node {unit} stopped while starting; the end of its log ({log}):\n{tail}")]
    Exited {
        unit: String,
        log: PathBuf,
        tail: String,
    },
    #[error("timed out after {secs} s waiting for {what}")]
    Timeout { what: String, secs: u64 },
    #[error("no unit {0} in this testnet; `linli testnet status` lists them")]
    UnknownUnit(String),
    #[error("{unit}: {source}")]
    Api {
        unit: String,
        source: client::ApiError,
    },
    #[error("{0}")]
    Invalid(String),
}

/// Progress of a long operation, for the caller to show (a progress bar) or ignore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event<'a> {
    /// A phase begins with `total` steps.
    Begin { what: &'a str, total: u64 },
    /// `n` more steps of the current phase are done.
    Step(u64),
    /// Something worth saying in passing.
    Note(&'a str),
    /// The current phase is done.
    End,
}

/// Where [`Event`]s go. `&mut |_| {}` ignores them.
pub type Progress<'a> = &'a mut dyn FnMut(Event<'_>);
