//! Talking to a running node through its local HTTP API (address in `<data-dir>/api.addr`,
//! bearer token in `<data-dir>/api-token`).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use linli_node::config::Layout;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Largest response the CLI reads (a district's audit or export can be large).
const RESPONSE_BYTES_MAX: u64 = 512 * 1024 * 1024;

/// The error for a command that needs a node that is not running: it says how to start it.
pub fn not_running(dir: &Path) -> anyhow::Error {
    anyhow!(
        "the node at {dir} is not running (no answer at the address in {addr}).\n  Start it with: linli --data-dir {dir} node run",
        dir = dir.display(),
        addr = Layout::new(dir).api_addr().display()
    )
}

/// A client for one node's API.
#[derive(Debug, Clone)]
pub struct Client {
    base: String,
    token: String,
    agent: ureq::Agent,
    dir: PathBuf,
}

impl Client {
    /// Find the running node of `dir`.
    pub fn connect(dir: &Path) -> anyhow::Result<Client> {
        let layout = Layout::new(dir);
        if !layout.config().exists() {
            bail!(
                "{} is not a linli data directory (no config.toml).\n  Create one with `linli init` (a new network) or `linli join` (an existing one), or pass --data-dir.",
                dir.display()
            );
        }
        let addr = std::fs::read_to_string(layout.api_addr()).map_err(|_| not_running(dir))?;
        let token = linli_node::keystore::read_private(&layout.api_token())
            .with_context(|| format!("reading the API token of {}", dir.display()))?;
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(120)))
            .build()
            .into();
        Ok(Client {
            base: format!("http://{}", addr.trim()),
            token: token.trim().to_owned(),
            agent,
            dir: dir.to_owned(),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn url(&self, path: &str, person: Option<&str>) -> String {
        let mut url = format!("{}{}", self.base, path);
        if let Some(p) = person {
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str("as=");
            url.push_str(&urlencode(p));
        }
        url
    }

    fn finish(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> anyhow::Result<Vec<u8>> {
        let mut resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Io(_))
            | Err(ureq::Error::ConnectionFailed)
            | Err(ureq::Error::HostNotFound) => {
                return Err(not_running(&self.dir));
            }
            Err(e) => return Err(anyhow!("talking to the node at {}: {e}", self.base)),
        };
        let status = resp.status();
        let body = resp
            .body_mut()
            .with_config()
            .limit(RESPONSE_BYTES_MAX)
            .read_to_vec()
            .with_context(|| format!("reading the node's answer from {}", self.base))?;
        if status.is_success() {
            return Ok(body);
        }
        let message = serde_json::from_slice::<Value>(&body)
            .ok()
            .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
            .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
        Err(anyhow!("{message}"))
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> anyhow::Result<T> {
        let r = self
            .agent
            .get(self.url(path, None))
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        let body = self.finish(r)?;
        serde_json::from_slice(&body)
            .with_context(|| format!("the node's answer to {path} is not what this linli expects"))
    }

    pub fn get_bytes(&self, path: &str) -> anyhow::Result<Vec<u8>> {
        let r = self
            .agent
            .get(self.url(path, None))
            .header("Authorization", format!("Bearer {}", self.token))
            .call();
        self.finish(r)
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        person: Option<&str>,
    ) -> anyhow::Result<T> {
        let r = self
            .agent
            .post(self.url(path, person))
            .header("Authorization", format!("Bearer {}", self.token))
            .send_json(body);
        let body = self.finish(r)?;
        if body.is_empty() {
            return serde_json::from_value(Value::Null).context("the node's answer was empty");
        }
        serde_json::from_slice(&body)
            .with_context(|| format!("the node's answer to {path} is not what this linli expects"))
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
