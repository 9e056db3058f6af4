//! The one client of a node's local HTTP API, for the CLI, the testnet and the tests: blocking,
//! typed by [`crate::contract`], one method per route.
//!
//! It tells the three ways a call fails apart, because its users act differently on each: the
//! node did not answer ([`Error::Unreachable`]: not running, restarting, its host partitioned —
//! the testnet's load counts it as an outage, the CLI says how to start the node); the node
//! answered no ([`Error::Refused`], with the API's typed [`ErrorBody`]: a refused edit); or the
//! node answered with something this build does not understand ([`Error::Decode`]: two
//! versions of linli).

use std::path::{Path, PathBuf};
use std::time::Duration;

use linli_crdt_model::audit::Audit;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::config::Layout;
use crate::contract::{
    Accepted, AttestRequest, AttestationFilter, AttestationView, CertView, CompareView, CreateDoc,
    Created, DocFilter, DocSummary, DocView, ErrorBody, ExportFormat, ImportRequest, Imported,
    IssueRequest, Issued, Op, PeerInfo, PeerRequest, Receipt, RegisterRequest, Registered,
    RevokeRequest, StatusView, UnitView, VerifyView,
};

/// How long a request may take unless the caller says otherwise.
pub const TIMEOUT: Duration = Duration::from_secs(120);
/// Largest answer read (a district's audit or export can be large).
pub const RESPONSE_BYTES_MAX: u64 = 512 * 1024 * 1024;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No answer: connection refused, reset or timed out, or the node never wrote `api.addr`.
    #[error("{}", unreachable(.addr, .detail, .dir.as_deref()))]
    Unreachable {
        addr: String,
        detail: String,
        /// The data directory of the node, if the client was made from one.
        dir: Option<PathBuf>,
    },
    /// The node answered with an error.
    #[error("{}", .body.message)]
    Refused { status: u16, body: ErrorBody },
    /// The node answered with something that is not what this build expects.
    #[error("the node's answer to {path} is not what this linli expects: {detail}")]
    Decode { path: String, detail: String },
}

impl Error {
    pub fn is_unreachable(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }

    /// The API's stable error kind (`unknown-document`, `denied`…), if the node answered.
    pub fn kind(&self) -> Option<&str> {
        match self {
            Error::Refused { body, .. } => Some(&body.error),
            _ => None,
        }
    }

    /// The HTTP status, if the node answered.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Refused { status, .. } => Some(*status),
            _ => None,
        }
    }
}

/// A client for one node's API.
#[derive(Debug, Clone)]
pub struct Client {
    /// The data directory it was made from, so [`Client::refresh`] can read it again.
    dir: Option<PathBuf>,
    /// `host:port`; empty if the node has not written one.
    addr: String,
    token: String,
    timeout: Duration,
    agent: ureq::Agent,
}

impl Client {
    /// A client for the API at `addr` (`host:port`) with a bearer token.
    pub fn new(addr: &str, token: &str) -> Client {
        Client::build(
            None,
            addr.trim().to_owned(),
            token.trim().to_owned(),
            TIMEOUT,
        )
    }

    /// A client for the node of a data directory, from its `api.addr` and `api-token`. A node
    /// that has not started yet gives a client whose every call is [`Error::Unreachable`].
    pub fn of_dir(dir: &Path) -> Client {
        let layout = Layout::new(dir);
        let read = |p: PathBuf| {
            std::fs::read_to_string(p)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default()
        };
        Client::build(
            Some(dir.to_owned()),
            read(layout.api_addr()),
            read(layout.api_token()),
            TIMEOUT,
        )
    }

    /// The same client with another per-request timeout.
    pub fn with_timeout(self, timeout: Duration) -> Client {
        Client::build(self.dir, self.addr, self.token, timeout)
    }

    fn build(dir: Option<PathBuf>, addr: String, token: String, timeout: Duration) -> Client {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(timeout))
            .build()
            .into();
        Client {
            dir,
            addr,
            token,
            timeout,
            agent,
        }
    }

    /// Read the address and token again (after the node restarted on another port).
    pub fn refresh(&mut self) {
        if let Some(dir) = self.dir.clone() {
            *self = Client::of_dir(&dir).with_timeout(self.timeout);
        }
    }

    /// `host:port`, empty if the node never wrote one.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The data directory this client was made from, if any.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    // ----- routes -----

    /// `GET /v1/status`.
    pub fn status(&self) -> Result<StatusView, Error> {
        self.get("/v1/status", &[])
    }

    /// `GET /v1/peers`.
    pub fn peers(&self) -> Result<Vec<PeerInfo>, Error> {
        self.get("/v1/peers", &[])
    }

    /// `GET /v1/docs`, filtered.
    pub fn docs(&self, filter: &DocFilter) -> Result<Vec<DocSummary>, Error> {
        let query: Vec<(&str, &str)> = [
            ("kind", &filter.kind),
            ("unit", &filter.unit),
            ("period", &filter.period),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_deref().map(|v| (k, v)))
        .collect();
        self.get("/v1/docs", &query)
    }

    /// `POST /v1/docs`, signed by `person` (a handle or key; the node's key if `None`).
    pub fn create_doc(&self, req: &CreateDoc, person: Option<&str>) -> Result<Created, Error> {
        self.post("/v1/docs", req, person)
    }

    /// `GET /v1/docs/{id}`.
    pub fn doc(&self, id: &str) -> Result<DocView, Error> {
        self.get(&doc_path(id, ""), &[])
    }

    /// `GET /v1/docs/{id}/state`, as the kind's own type (`kinds::tasks::List`…) or as JSON.
    pub fn state<T: DeserializeOwned>(&self, id: &str) -> Result<T, Error> {
        self.get(&doc_path(id, "/state"), &[])
    }

    /// `POST /v1/docs/{id}/ops`: one edit, acknowledged once it is on disk.
    pub fn apply(&self, id: &str, op: &Op, person: Option<&str>) -> Result<Receipt, Error> {
        self.post(&doc_path(id, "/ops"), op, person)
    }

    /// `POST /v1/docs/{id}/ops/batch`. On failure, [`ErrorBody::applied`] holds the receipts
    /// of the operations before the one that failed, which stay applied.
    pub fn apply_batch(
        &self,
        id: &str,
        ops: &[Op],
        person: Option<&str>,
    ) -> Result<Vec<Receipt>, Error> {
        self.post(&doc_path(id, "/ops/batch"), &ops, person)
    }

    /// `GET /v1/docs/{id}/audit`.
    pub fn audit(&self, id: &str) -> Result<Audit, Error> {
        self.get(&doc_path(id, "/audit"), &[])
    }

    /// `GET /v1/docs/{id}/export`: the bytes, as the format says.
    pub fn export(&self, id: &str, format: ExportFormat) -> Result<Vec<u8>, Error> {
        self.get_bytes(&doc_path(id, "/export"), &[("format", format.as_str())])
    }

    /// `POST /v1/docs/{id}/attest`.
    pub fn attest(
        &self,
        id: &str,
        req: &AttestRequest,
        person: Option<&str>,
    ) -> Result<Created, Error> {
        self.post(&doc_path(id, "/attest"), req, person)
    }

    /// `GET /v1/attestations`.
    pub fn attestations(&self, filter: &AttestationFilter) -> Result<Vec<AttestationView>, Error> {
        let query: Vec<(&str, &str)> = filter.doc.iter().map(|d| ("doc", d.as_str())).collect();
        self.get("/v1/attestations", &query)
    }

    /// `GET /v1/verify`.
    pub fn verify(&self) -> Result<VerifyView, Error> {
        self.get("/v1/verify", &[])
    }

    /// `POST /v1/checkpoint`.
    pub fn checkpoint(&self, person: Option<&str>) -> Result<Created, Error> {
        self.post("/v1/checkpoint", &serde_json::json!({}), person)
    }

    /// `GET /v1/checkpoint/compare`.
    pub fn compare_checkpoint(&self) -> Result<CompareView, Error> {
        self.get("/v1/checkpoint/compare", &[])
    }

    /// `GET /v1/certs`.
    pub fn certs(&self) -> Result<Vec<CertView>, Error> {
        self.get("/v1/certs", &[])
    }

    /// `POST /v1/certs/issue`.
    pub fn issue_cert(&self, req: &IssueRequest, person: Option<&str>) -> Result<Issued, Error> {
        self.post("/v1/certs/issue", req, person)
    }

    /// `POST /v1/certs/import`.
    pub fn import_certs(&self, req: &ImportRequest) -> Result<Imported, Error> {
        self.post("/v1/certs/import", req, None)
    }

    /// `POST /v1/certs/revoke`.
    pub fn revoke(&self, req: &RevokeRequest, person: Option<&str>) -> Result<Created, Error> {
        self.post("/v1/certs/revoke", req, person)
    }

    /// `GET /v1/units`.
    pub fn units(&self) -> Result<Vec<UnitView>, Error> {
        self.get("/v1/units", &[])
    }

    /// `POST /v1/units/register`.
    pub fn register_unit(
        &self,
        req: &RegisterRequest,
        person: Option<&str>,
    ) -> Result<Registered, Error> {
        self.post("/v1/units/register", req, person)
    }

    /// `POST /v1/admin/block`: refuse and drop a peer (a partition, in the testnet).
    pub fn block(&self, peer: &str) -> Result<Accepted, Error> {
        let req = PeerRequest {
            peer: peer.to_owned(),
        };
        self.post("/v1/admin/block", &req, None)
    }

    /// `POST /v1/admin/unblock`.
    pub fn unblock(&self, peer: &str) -> Result<Accepted, Error> {
        let req = PeerRequest {
            peer: peer.to_owned(),
        };
        self.post("/v1/admin/unblock", &req, None)
    }

    /// `POST /v1/admin/unblock-all`.
    pub fn unblock_all(&self) -> Result<Accepted, Error> {
        self.post("/v1/admin/unblock-all", &serde_json::json!({}), None)
    }

    /// `POST /v1/admin/sync`: anti-entropy with every peer now.
    pub fn sync_now(&self) -> Result<Accepted, Error> {
        self.post("/v1/admin/sync", &serde_json::json!({}), None)
    }

    /// `GET /metrics`, Prometheus text.
    pub fn metrics(&self) -> Result<String, Error> {
        let bytes = self.get_bytes("/metrics", &[])?;
        String::from_utf8(bytes).map_err(|e| Error::Decode {
            path: "/metrics".to_owned(),
            detail: e.to_string(),
        })
    }

    // ----- the three verbs under the routes -----

    /// `GET path?query`, decoded as `T`.
    pub fn get<T: DeserializeOwned>(&self, path: &str, query: &[(&str, &str)]) -> Result<T, Error> {
        let body = self.get_bytes(path, query)?;
        decode(path, &body)
    }

    /// `GET path?query`, the answer's bytes.
    pub fn get_bytes(&self, path: &str, query: &[(&str, &str)]) -> Result<Vec<u8>, Error> {
        self.call(path, |url| {
            self.agent
                .get(url)
                .header("Authorization", format!("Bearer {}", self.token))
                .query_pairs(query.iter().copied())
                .call()
        })
    }

    /// `POST path?as=person` with a JSON body, decoded as `T`.
    pub fn post<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
        person: Option<&str>,
    ) -> Result<T, Error> {
        let answer = self.call(path, |url| {
            self.agent
                .post(url)
                .header("Authorization", format!("Bearer {}", self.token))
                .query_pairs(person.map(|p| ("as", p)))
                .send_json(body)
        })?;
        decode(path, &answer)
    }

    fn call(
        &self,
        path: &str,
        send: impl FnOnce(&str) -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Vec<u8>, Error> {
        if self.addr.is_empty() {
            return Err(Error::Unreachable {
                addr: "(none)".to_owned(),
                detail: "the node has not written api.addr".to_owned(),
                dir: self.dir.clone(),
            });
        }
        let unreachable = |detail: String| Error::Unreachable {
            addr: self.addr.clone(),
            detail,
            dir: self.dir.clone(),
        };
        let url = format!("http://{}{path}", self.addr);
        let mut res = send(&url).map_err(|e| unreachable(e.to_string()))?;
        let status = res.status().as_u16();
        let body = res
            .body_mut()
            .with_config()
            .limit(RESPONSE_BYTES_MAX)
            .read_to_vec()
            .map_err(|e| unreachable(format!("reading the answer to {path}: {e}")))?;
        if (200..300).contains(&status) {
            return Ok(body);
        }
        let body = serde_json::from_slice::<ErrorBody>(&body).unwrap_or_else(|_| ErrorBody {
            error: "unknown".to_owned(),
            message: format!(
                "the node answered {status}: {}",
                String::from_utf8_lossy(&body)
                    .chars()
                    .take(200)
                    .collect::<String>()
            ),
            index: None,
            applied: None,
        });
        Err(Error::Refused { status, body })
    }
}

/// What a person reads when the node does not answer: with a data directory, how to start it.
fn unreachable(addr: &str, detail: &str, dir: Option<&Path>) -> String {
    match dir {
        Some(dir) => format!(
            "the node at {dir} is not running (no answer at {addr}: {detail}).\n  Start it with: linli --data-dir {dir} node run",
            dir = dir.display()
        ),
        None => format!("not answering at {addr}: {detail}"),
    }
}

/// `/v1/docs/{id}{rest}`, the id percent-encoded: it is whatever a person typed.
fn doc_path(id: &str, rest: &str) -> String {
    let id = percent_encoding::utf8_percent_encode(id, percent_encoding::NON_ALPHANUMERIC);
    format!("/v1/docs/{id}{rest}")
}

fn decode<T: DeserializeOwned>(path: &str, body: &[u8]) -> Result<T, Error> {
    // An empty answer is JSON `null`, for routes that answer with nothing.
    let body: &[u8] = if body.is_empty() { b"null" } else { body };
    serde_json::from_slice(body).map_err(|e| Error::Decode {
        path: path.to_owned(),
        detail: e.to_string(),
    })
}
