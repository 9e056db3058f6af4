//! Finding a running node's API from a data directory. The client itself is the node's own
//! (`linli_node::client::Client`), shared with the testnet and the tests.

use std::path::Path;

use anyhow::{Context, bail};
use linli_node::client::Client;
use linli_node::config::Layout;

/// The client of the node whose data directory is `dir`: refuses a directory that is not a
/// linli one and an API token others may read; a node that is not running yet gives a client
/// whose calls say how to start it.
pub fn connect(dir: &Path) -> anyhow::Result<Client> {
    let layout = Layout::new(dir);
    if !layout.config().exists() {
        bail!(
            "{} is not a linli data directory (no config.toml).\n  Create one with `linli init` (a new network) or `linli join` (an existing one), or pass --data-dir.",
            dir.display()
        );
    }
    if layout.api_addr().exists() {
        // A running node has a token: refuse one others may read before sending it anywhere.
        linli_node::keystore::read_private(&layout.api_token())
            .with_context(|| format!("reading the API token of {}", dir.display()))?;
    }
    Ok(Client::of_dir(dir))
}
