//! The linli node: the daemon every community, street and district runs.
//!
//! `engine` owns the documents and applies every rule of `crdt-model` around a durable `store`;
//! `net` drives libp2p and speaks `protocol`; `api` serves the local HTTP API and metrics. Only
//! `net` and `api` do network I/O, only `store` and `keystore` touch the disk.

pub mod api;
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
