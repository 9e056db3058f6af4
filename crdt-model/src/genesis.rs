//! The genesis: what a network is. Its hash is the network id every signature is bound to, so
//! a record of one network can never be accepted by another.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::keys::{self, Domain, PublicKey};
use crate::unit::Unit;

/// The id of a network: SHA-256 of its genesis. Printed as hex.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NetworkId(#[serde(with = "keys::hex32")] pub [u8; 32]);

/// A network's founding statement: its name, its top unit and the root keys that certify
/// everything below. Written once by `linli init` and handed to every node that joins.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Genesis {
    pub network_name: String,
    pub top: Unit,
    pub root_keys: Vec<PublicKey>,
    pub created_at_ms: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GenesisError {
    #[error("genesis has no root keys: nobody could certify anything")]
    NoRootKeys,
    #[error("genesis network name is empty")]
    EmptyName,
    #[error("the top unit {0} must be a single path segment")]
    TopNotTop(String),
}

impl Genesis {
    pub fn validate(&self) -> Result<(), GenesisError> {
        if self.root_keys.is_empty() {
            return Err(GenesisError::NoRootKeys);
        }
        if self.network_name.trim().is_empty() {
            return Err(GenesisError::EmptyName);
        }
        if self.top.id.depth() != 1 {
            return Err(GenesisError::TopNotTop(self.top.id.to_string()));
        }
        Ok(())
    }

    pub fn network_id(&self) -> NetworkId {
        NetworkId(keys::sha256(&[&keys::signing_bytes(Domain::Genesis, self)]))
    }

    pub fn is_root(&self, key: &PublicKey) -> bool {
        self.root_keys.contains(key)
    }
}

impl NetworkId {
    pub fn short(&self) -> String {
        hex::encode(&self.0[..6])
    }
}

impl fmt::Display for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for NetworkId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NetworkId({})", self.short())
    }
}

impl FromStr for NetworkId {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(NetworkId(out))
    }
}
