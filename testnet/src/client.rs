//! The testnet talks to its nodes through the node's own client (`linli_node::client`), which
//! tells "the node did not answer" (down, restarting, partitioned host) apart from "the node
//! answered no": load counts the first as an outage and the second as a refused edit.

use std::path::Path;
use std::time::Duration;

pub use linli_node::client::{Client, Error as ApiError};

/// How long one API request may take before the node counts as not answering.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The client of the node in `dir`, with the testnet's timeout. A node that has not started
/// yet gives a client whose every request is [`ApiError::Unreachable`].
pub fn of(dir: &Path) -> Client {
    Client::of_dir(dir).with_timeout(REQUEST_TIMEOUT)
}
