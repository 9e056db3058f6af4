//! A small blocking client for one node's local API, as the testnet sees it: it tells "the node
//! did not answer" (down, restarting, partitioned host) apart from "the node answered no", because
//! load counts the first as an outage and the second as a refused edit.

use std::path::{Path, PathBuf};
use std::time::Duration;

use linli_node::config::Layout;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// How long one API request may take before the node counts as not answering.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// No answer: connection refused, reset or timed out, or the node never wrote `api.addr`.
    #[error("not answering at {addr}: {detail}")]
    Unreachable { addr: String, detail: String },
    /// The node answered with an error body.
    #[error("{status} {kind}: {message}")]
    Refused {
        status: u16,
        kind: String,
        message: String,
    },
    /// The node answered with something that is not the expected JSON.
    #[error("unexpected answer to {path}: {detail}")]
    Decode { path: String, detail: String },
}

impl ApiError {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, ApiError::Unreachable { .. })
    }
}

/// A node's API: its address and token, read from its data directory.
#[derive(Debug, Clone)]
pub struct Client {
    dir: PathBuf,
    addr: String,
    token: String,
    agent: ureq::Agent,
}

impl Client {
    /// Read `api.addr` and `api-token` of a data directory. A node that has not started yet
    /// gives a client whose every request is [`ApiError::Unreachable`].
    pub fn of(dir: &Path) -> Client {
        let layout = Layout::new(dir);
        let addr = std::fs::read_to_string(layout.api_addr())
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let token = std::fs::read_to_string(layout.api_token())
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT))
            .build()
            .into();
        Client {
            dir: dir.to_owned(),
            addr,
            token,
            agent,
        }
    }

    /// Read the address and token again (after a restart).
    pub fn refresh(&mut self) {
        *self = Client::of(&self.dir);
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    pub fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ApiError> {
        self.call(path, |url| {
            self.agent
                .get(url)
                .header("Authorization", format!("Bearer {}", self.token))
                .call()
        })
    }

    pub fn post<B: Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        self.call(path, |url| {
            self.agent
                .post(url)
                .header("Authorization", format!("Bearer {}", self.token))
                .send_json(body)
        })
    }

    fn call<T: DeserializeOwned>(
        &self,
        path: &str,
        send: impl FnOnce(&str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ApiError> {
        if self.addr.is_empty() {
            return Err(ApiError::Unreachable {
                addr: "(no api.addr)".to_owned(),
                detail: format!(
                    "{} has no api.addr: the node is not running",
                    self.dir.display()
                ),
            });
        }
        let url = format!("http://{}{path}", self.addr);
        let mut res = send(&url).map_err(|e| ApiError::Unreachable {
            addr: self.addr.clone(),
            detail: e.to_string(),
        })?;
        let status = res.status().as_u16();
        let text = res
            .body_mut()
            .read_to_string()
            .map_err(|e| ApiError::Unreachable {
                addr: self.addr.clone(),
                detail: format!("reading the answer to {path}: {e}"),
            })?;
        if !(200..300).contains(&status) {
            let body: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
            return Err(ApiError::Refused {
                status,
                kind: body["error"].as_str().unwrap_or("unknown").to_owned(),
                message: body["message"]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_else(|| text.chars().take(200).collect()),
            });
        }
        serde_json::from_str(&text).map_err(|e| ApiError::Decode {
            path: path.to_owned(),
            detail: e.to_string(),
        })
    }
}
