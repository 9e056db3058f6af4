//! The linli node: the daemon every community, street and district runs.
//!
//! `engine` owns the documents and applies every rule of `crdt-model` around a durable `store`;
//! `net` drives libp2p and speaks `protocol`; `api` serves the local HTTP API and metrics, in the
//! types of `contract`, which `client` speaks for the programs that drive a node. Documents,
//! keys and trust reach the disk only through `store` and `keystore`; `config` and `setup` write
//! the data directory's plain files, `run` its `api.addr` and `peer.json`.

pub mod api;
pub mod client;
pub mod clock;
pub mod config;
pub mod contract;
pub mod engine;
pub mod keystore;
pub mod metrics;
pub mod net;
pub mod protocol;
pub mod run;
pub mod setup;
pub mod shared;
pub mod store;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
