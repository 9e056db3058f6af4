//! linli's model: identities, certificates, signed document kinds, validation and attestations.
//!
//! Pure and deterministic: no clock reads, no randomness, no I/O. Time (`now_ms`, `at_ms`) and
//! seeds come in as arguments; decisions come out as values. `node` drives all I/O around it.

pub mod attest;
pub mod audit;
pub mod cert;
pub mod doc;
pub mod document;
pub mod genesis;
pub mod keys;
pub mod kinds;
pub mod sync;
#[cfg(any(test, feature = "testkit"))]
pub mod testkit;
pub mod trust;
pub mod unit;
pub mod wire;
