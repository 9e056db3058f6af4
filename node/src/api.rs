//! The node's local HTTP/JSON API: how the CLI, the testnet and an operator's scripts drive a
//! running node, and where Prometheus scrapes its metrics (DESIGN.md, "Operating it").
//!
//! It listens on loopback only and every request, `/metrics` included, must carry
//! `Authorization: Bearer <token>` with the token kept in `<data-dir>/api-token`: on a shared
//! machine that file's permissions are the only thing between another user and the unit's keys.
//!
//! The engine sits behind a std mutex it shares with the network loop. Handlers lock it only
//! inside [`tokio::task::spawn_blocking`] closures, never across an `.await`, so a slow disk
//! flush never stalls the runtime and the lock is never held while waiting on anything else. A
//! batch of operations takes the lock once per operation, so the network loop keeps syncing
//! while a month of visits is imported.
//!
//! # Errors
//!
//! Every error is `{"error": "<kind>", "message": "<a sentence naming what and what to do>"}`;
//! `kind` is stable, `message` is for people. Engine errors map deliberately:
//!
//! | status | kind | cause |
//! |---|---|---|
//! | 400 | `bad-json` / `bad-body` / `bad-query` | body is not JSON / not the route's shape (unknown op, missing field) / bad query string |
//! | 400 | `invalid` | a field the model refuses: `EditError::Invalid`, a bad title or handle, a bad key or peer id |
//! | 400 | `unknown-record` | `EditError::UnknownRecord`: the op names a record the document lacks |
//! | 400 | `wrong-kind` | `OpError::WrongKind`: the op is for another kind of document |
//! | 400 | `bad-document-id` | `Error::BadDocId`: not hex, too short, or an ambiguous prefix |
//! | 400 | `bad-record` | `RecordError::Decode`: a certificate that is not one |
//! | 401 | `unauthorized` | missing or wrong bearer token |
//! | 403 | `denied` | `EditRefused::Denied`, `HeaderError::Denied`, or the signer lacks the role for an attestation, certificate, revocation or checkpoint |
//! | 404 | `unknown-document` / `unknown-person` / `unknown-key` | `Error::UnknownDoc`, `KeyFileError::UnknownPerson`, a key with no certificate |
//! | 404 | `no-checkpoint` / `not-found` | nothing to compare with yet / no such route |
//! | 405 | `method-not-allowed` | the route exists with other methods |
//! | 409 | `already-exists` / `published` / `unchanged` | `EditError::AlreadyExists`, `EditError::Published`, `EditRefused::Empty` |
//! | 413 | `too-large` | body over [`BODY_BYTES_MAX`], or a list over its limit |
//! | 422 | `schema` / `admission` | `EditRefused::Schema`, `EditError::Schema`, `EditRefused::Admission` |
//! | 422 | `bad-header` / `bad-record` | other `HeaderError`s, other `RecordError`s (wrong network, bad signature, validity) |
//! | 422 | `refused` | `Error::Invalid`: the engine refuses by rule (e.g. rating an unanswered whistle, a registration or revocation that would not hold) |
//! | 422 | `unregistered-unit` | `Error::Unregistered`: a certificate or revocation for a unit not in the registered tree |
//! | 500 | `store` | `Error::Store`: the disk failed; nothing was acknowledged |
//! | 500 | `misconfigured` / `key-file` / `internal` | `Error::{Config, Genesis, NotCertified}`, unreadable key files, Automerge errors, a panicked handler |
//! | 503 | `net-unavailable` | the network loop is not taking commands |

use std::collections::BTreeSet;
use std::future::Future;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{
    DefaultBodyLimit, FromRequest, FromRequestParts, MatchedPath, Path, Request, State,
};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use linli_crdt_model::attest::Statement;
use linli_crdt_model::cert::{Certificate, RecordError, Registration, Role};
use linli_crdt_model::doc::{DocId, HeaderError};
use linli_crdt_model::document::EditRefused;
use linli_crdt_model::keys::{self, PublicKey};
use linli_crdt_model::kinds::{EditError, Kind};
use linli_crdt_model::unit::UnitId;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tracing::Instrument;

use crate::contract::{
    Accepted, AttestRequest, AttestationFilter, AttestationView, CertView, CompareView, CreateDoc,
    Created, DocFilter, DocSummary, DocView, ErrorBody, ExportFormat, ExportQuery, ImportRequest,
    Imported, IssueRequest, Issued, Op, OpError, PeerInfo, PeerRequest, Receipt, RegisterRequest,
    Registered, RevokeRequest, StatusView, UnitView, VerifyProblem, VerifyView,
};
use crate::engine::{self, Engine};
use crate::keystore::KeyFileError;
use crate::shared::{NetCommand, Shared};

/// Largest request body. A month's visit log imported from a spreadsheet is a few MiB of JSON.
pub const BODY_BYTES_MAX: usize = 8 * 1024 * 1024;
/// Operations in one `POST /v1/docs/{id}/ops/batch`.
pub const OPS_PER_BATCH_MAX: usize = 10_000;
/// Certificates in one `POST /v1/certs/import`.
pub const CERTS_PER_IMPORT_MAX: usize = 10_000;
/// Longest certificate `POST /v1/certs/issue` signs.
pub const CERT_VALID_DAYS_MAX: u32 = 10 * 366;
/// How long an admin request waits for room in the network loop's command queue.
pub const NET_SEND_TIMEOUT: Duration = Duration::from_secs(5);

const DAY_MS: i64 = 86_400_000;

// ----- errors -----

/// An error response under construction.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl ApiError {
    fn new(status: StatusCode, kind: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            body: ErrorBody {
                error: kind.to_owned(),
                message: message.into(),
                index: None,
                applied: None,
            },
        }
    }

    fn bad(kind: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, kind, message)
    }

    fn denied(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "denied", message)
    }

    fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// Say what was being done when the error happened: "visit-add on document 1a2b…: …".
    fn context(mut self, what: impl std::fmt::Display) -> ApiError {
        self.body.message = format!("{what}: {}", self.body.message);
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = (self.status, Json(self.body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

fn edit_error(e: &EditError) -> (StatusCode, &'static str) {
    match e {
        EditError::Invalid { .. } => (StatusCode::BAD_REQUEST, "invalid"),
        EditError::UnknownRecord { .. } => (StatusCode::BAD_REQUEST, "unknown-record"),
        EditError::AlreadyExists { .. } => (StatusCode::CONFLICT, "already-exists"),
        EditError::Published => (StatusCode::CONFLICT, "published"),
        EditError::Schema(_) => (StatusCode::UNPROCESSABLE_ENTITY, "schema"),
        EditError::Automerge(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    }
}

fn header_error(e: &HeaderError) -> (StatusCode, &'static str) {
    match e {
        HeaderError::Title => (StatusCode::BAD_REQUEST, "invalid"),
        HeaderError::Denied(_) => (StatusCode::FORBIDDEN, "denied"),
        _ => (StatusCode::UNPROCESSABLE_ENTITY, "bad-header"),
    }
}

fn record_error(e: &RecordError) -> (StatusCode, &'static str) {
    match e {
        RecordError::Decode(_) => (StatusCode::BAD_REQUEST, "bad-record"),
        _ => (StatusCode::UNPROCESSABLE_ENTITY, "bad-record"),
    }
}

impl From<engine::Error> for ApiError {
    fn from(e: engine::Error) -> ApiError {
        use engine::Error as E;
        let (status, kind) = match &e {
            E::Config(_) | E::Genesis { .. } | E::NotCertified { .. } => {
                (StatusCode::INTERNAL_SERVER_ERROR, "misconfigured")
            }
            E::Store(_) => (StatusCode::INTERNAL_SERVER_ERROR, "store"),
            E::Key(KeyFileError::UnknownPerson(_)) => (StatusCode::NOT_FOUND, "unknown-person"),
            E::Key(KeyFileError::BadHandle(_)) => (StatusCode::BAD_REQUEST, "invalid"),
            E::Key(_) => (StatusCode::INTERNAL_SERVER_ERROR, "key-file"),
            E::UnknownDoc(_) => (StatusCode::NOT_FOUND, "unknown-document"),
            E::Unregistered(_) => (StatusCode::UNPROCESSABLE_ENTITY, "unregistered-unit"),
            E::BadDocId(_) => (StatusCode::BAD_REQUEST, "bad-document-id"),
            E::Refused(r) => match r {
                EditRefused::Edit(e) => edit_error(e),
                EditRefused::Denied(_) => (StatusCode::FORBIDDEN, "denied"),
                EditRefused::Schema(_) => (StatusCode::UNPROCESSABLE_ENTITY, "schema"),
                EditRefused::Admission { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "admission"),
                EditRefused::Header(h) => header_error(h),
                EditRefused::Empty => (StatusCode::CONFLICT, "unchanged"),
                // The node's own operations never do this: a bug here, not the caller's.
                EditRefused::NotOneChange { .. } => {
                    (StatusCode::INTERNAL_SERVER_ERROR, "not-one-change")
                }
            },
            E::Op(OpError::WrongKind { .. }) => (StatusCode::BAD_REQUEST, "wrong-kind"),
            E::Op(OpError::Edit(e)) => edit_error(e),
            E::Header(h) => header_error(h),
            E::Record(r) => record_error(r),
            E::Invalid(_) => (StatusCode::UNPROCESSABLE_ENTITY, "refused"),
        };
        let hint = match kind {
            "unknown-document" => "; GET /v1/docs lists the documents this node holds",
            "unknown-person" => "; GET /v1/status lists the people whose keys this node holds",
            "denied" => "; GET /v1/certs shows which keys act for which unit and role",
            "store" => "; nothing was acknowledged: check the disk and the node's log, then retry",
            _ => "",
        };
        ApiError::new(status, kind, format!("{e}{hint}"))
    }
}

// ----- extractors -----

/// A JSON body, parsed whatever the content type says (the CLI and `curl -d` both work), with
/// errors in the API's shape.
#[derive(Debug)]
struct Body<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // The route's pattern (`/v1/docs/{id}/ops`) reads better than a path full of hex.
        let path = req
            .extensions()
            .get::<MatchedPath>()
            .map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
        let route = format!("{} {path}", req.method());
        let bytes = Bytes::from_request(req, state).await.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too-large",
                    format!(
                        "the body of {route} is larger than {BODY_BYTES_MAX} bytes; split the work into smaller requests"
                    ),
                )
            } else {
                ApiError::bad(
                    "bad-body",
                    format!("cannot read the body of {route}: {}", r.body_text()),
                )
            }
        })?;
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            if e.is_data() {
                ApiError::bad(
                    "bad-body",
                    format!("the body of {route} is not what it takes: {e}"),
                )
            } else {
                ApiError::bad(
                    "bad-json",
                    format!("the body of {route} is not valid JSON: {e}"),
                )
            }
        })
    }
}

/// A query string, with errors in the API's shape.
#[derive(Debug)]
struct Q<T>(T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for Q<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::try_from_uri(&parts.uri)
            .map(|q| Q(q.0))
            .map_err(|r| {
                ApiError::bad(
                    "bad-query",
                    format!(
                        "bad query string for {} {}: {}",
                        parts.method,
                        parts.uri.path(),
                        r.body_text()
                    ),
                )
            })
    }
}

/// `?as=<person>`: who signs a write (a handle from `keys/people`, or a key); the node if absent.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct Signer {
    #[serde(rename = "as")]
    person: Option<String>,
}

// ----- plumbing -----

#[derive(Debug, Clone)]
struct App {
    shared: Arc<Shared>,
    /// Where the token lives, for the 401 message.
    token_file: Arc<PathBuf>,
}

/// Run `f` with the shared state on a blocking thread: the engine lock and disk flushes never
/// block the runtime.
async fn blocking<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&Shared) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let shared = Arc::clone(&app.shared);
    tokio::task::spawn_blocking(move || f(&shared))
        .await
        .map_err(|e| ApiError::internal(format!("the request's work did not finish: {e}")))?
}

/// Run `f` with the engine locked, on a blocking thread.
async fn with_engine<T: Send + 'static>(
    app: &App,
    f: impl FnOnce(&mut Engine) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    blocking(app, move |shared| f(&mut shared.engine())).await
}

/// Tell the network loop that documents changed. Never waits: if the queue is full, the next
/// anti-entropy round carries the change instead.
fn announce(shared: &Shared) {
    if let Err(e) = shared.net.try_send(NetCommand::Announce) {
        tracing::debug!(error = %e, "announcement not queued; anti-entropy will carry it");
    }
}

/// Queue an admin command for the network loop, waiting a little for room.
async fn command(app: &App, cmd: NetCommand) -> Result<(), ApiError> {
    use tokio::sync::mpsc::error::SendTimeoutError;
    app.shared
        .net
        .send_timeout(cmd, NET_SEND_TIMEOUT)
        .await
        .map_err(|e| {
            let why = match e {
                SendTimeoutError::Timeout(_) => "is busy (its command queue stayed full)",
                SendTimeoutError::Closed(_) => "is not running",
            };
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "net-unavailable",
                format!("the network loop {why}; check the node's log, then retry"),
            )
        })
}

/// Compare bearer tokens in time independent of where they differ: both are hashed first, so
/// neither length nor content leaks through timing.
fn token_matches(given: &str, expected: &str) -> bool {
    if expected.is_empty() {
        return false;
    }
    let a = keys::sha256(&[given.as_bytes()]);
    let b = keys::sha256(&[expected.as_bytes()]);
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

async fn auth(State(app): State<App>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    match given {
        Some(token) if token_matches(token, &app.shared.token) => next.run(req).await,
        _ => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!(
                "missing or wrong bearer token: send `Authorization: Bearer <token>` with the token in {}",
                app.token_file.display()
            ),
        )
        .into_response(),
    }
}

/// One span and one log line per request.
async fn trace(req: Request, next: Next) -> Response {
    let span = tracing::info_span!("api", method = %req.method(), path = %req.uri().path());
    let started = Instant::now();
    async move {
        let res = next.run(req).await;
        let status = res.status().as_u16();
        let ms = started.elapsed().as_millis() as u64;
        if res.status().is_server_error() {
            tracing::warn!(status, ms, "request failed");
        } else {
            tracing::info!(status, ms, "request");
        }
        res
    }
    .instrument(span)
    .await
}

async fn not_found(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not-found",
        format!(
            "no route {} {}; the API's routes start with /v1 (see `linli --help`)",
            req.method(),
            req.uri().path()
        ),
    )
}

async fn method_not_allowed(req: Request) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method-not-allowed",
        format!("{} does not take {}", req.uri().path(), req.method()),
    )
}

// ----- the router -----

/// The API. Every route requires the bearer token in `shared.token`.
pub fn router(shared: Arc<Shared>) -> Router {
    let token_file = Arc::new(shared.engine().layout().api_token());
    let app = App { shared, token_file };
    Router::new()
        .route("/v1/status", get(status))
        .route("/v1/peers", get(peers))
        .route("/v1/docs", get(list_docs).post(create_doc))
        .route("/v1/docs/{id}", get(doc))
        .route("/v1/docs/{id}/state", get(state))
        .route("/v1/docs/{id}/ops", post(apply_op))
        .route("/v1/docs/{id}/ops/batch", post(apply_batch))
        .route("/v1/docs/{id}/audit", get(audit))
        .route("/v1/docs/{id}/export", get(export))
        .route("/v1/docs/{id}/attest", post(attest))
        .route("/v1/attestations", get(attestations))
        .route("/v1/verify", get(verify))
        .route("/v1/checkpoint", post(checkpoint))
        .route("/v1/checkpoint/compare", get(compare_checkpoint))
        .route("/v1/certs", get(certs))
        .route("/v1/certs/issue", post(issue_cert))
        .route("/v1/certs/import", post(import_certs))
        .route("/v1/certs/revoke", post(revoke))
        .route("/v1/units", get(units))
        .route("/v1/units/register", post(register_unit))
        .route("/v1/admin/block", post(block))
        .route("/v1/admin/unblock", post(unblock))
        .route("/v1/admin/unblock-all", post(unblock_all))
        .route("/v1/admin/sync", post(sync_now))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(BODY_BYTES_MAX))
        .layer(middleware::from_fn_with_state(app.clone(), auth))
        .layer(middleware::from_fn(trace))
        .with_state(app)
}

/// Serve the API on `listener` until `shutdown` completes, then finish the requests in flight.
pub async fn serve(
    shared: Arc<Shared>,
    listener: tokio::net::TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let addr = listener.local_addr()?;
    if !addr.ip().is_loopback() {
        tracing::warn!(%addr, "the API listens beyond loopback; its bearer token is its only guard");
    }
    tracing::info!(%addr, "API listening");
    axum::serve(listener, router(shared))
        .with_graceful_shutdown(shutdown)
        .await
}

// ----- handlers: node -----

async fn status(State(app): State<App>) -> Result<Json<StatusView>, ApiError> {
    let status = with_engine(&app, |e| Ok(e.status())).await?;
    let peers = app.shared.peers().iter().filter(|p| p.connected).count();
    let net = app
        .shared
        .info
        .read()
        .map(|i| i.clone())
        .unwrap_or_default();
    Ok(Json(StatusView { status, peers, net }))
}

async fn peers(State(app): State<App>) -> Json<Vec<PeerInfo>> {
    Json(app.shared.peers())
}

async fn metrics(State(app): State<App>) -> Result<Response, ApiError> {
    let metrics = with_engine(&app, |e| Ok(e.metrics.clone())).await?;
    let text = metrics.render();
    Ok((
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn verify(State(app): State<App>) -> Result<Json<VerifyView>, ApiError> {
    let problems = with_engine(&app, |e| Ok(e.verify())).await?;
    Ok(Json(VerifyView {
        ok: problems.is_empty(),
        problems: problems
            .into_iter()
            .map(|p| VerifyProblem {
                doc: p.doc,
                what: p.what,
            })
            .collect(),
    }))
}

// ----- handlers: documents -----

async fn list_docs(
    State(app): State<App>,
    Q(filter): Q<DocFilter>,
) -> Result<Json<Vec<DocSummary>>, ApiError> {
    let kind = filter
        .kind
        .as_deref()
        .map(Kind::from_str)
        .transpose()
        .map_err(|e| ApiError::bad("bad-query", e.to_string()))?;
    let docs = with_engine(&app, |e| Ok(e.list())).await?;
    Ok(Json(
        docs.into_iter()
            .filter(|d| kind.is_none_or(|k| d.kind == k))
            .filter(|d| filter.unit.as_ref().is_none_or(|u| &d.unit == u))
            .filter(|d| {
                filter
                    .period
                    .as_ref()
                    .is_none_or(|p| d.period.as_ref() == Some(p))
            })
            .collect(),
    ))
}

async fn create_doc(
    State(app): State<App>,
    Q(signer): Q<Signer>,
    Body(req): Body<CreateDoc>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let what = format!("creating {} {:?}", req.kind, req.title);
    let id = blocking(&app, move |shared| {
        let id = shared.engine().create(req, signer.person.as_deref());
        if id.is_ok() {
            announce(shared);
        }
        id.map_err(|e| ApiError::from(e).context(what))
    })
    .await?;
    Ok((StatusCode::CREATED, Json(Created { id: id.to_string() })))
}

async fn doc(State(app): State<App>, Path(id): Path<String>) -> Result<Json<DocView>, ApiError> {
    with_engine(&app, move |e| {
        let id = e.resolve(&id)?;
        let summary = e.summary(&id)?;
        let h = e.doc(&id)?.header().header.clone();
        let creator_holder = if e.genesis().is_root(&h.creator) {
            Some("root".to_owned())
        } else {
            e.trust()
                .certificates_of(&h.creator)
                .first()
                .map(|(_, c)| c.body.holder.clone())
        };
        Ok(Json(DocView {
            summary,
            network: h.network.to_string(),
            schema_version: h.schema_version,
            creator: h.creator.to_string(),
            creator_holder,
        }))
    })
    .await
}

async fn state(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    with_engine(&app, move |e| {
        let id = e.resolve(&id)?;
        Ok(Json(e.state(&id)?))
    })
    .await
}

async fn audit(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Json<linli_crdt_model::audit::Audit>, ApiError> {
    with_engine(&app, move |e| {
        let id = e.resolve(&id)?;
        Ok(Json(e.audit(&id)?))
    })
    .await
}

async fn export(
    State(app): State<App>,
    Path(id): Path<String>,
    Q(q): Q<ExportQuery>,
) -> Result<Response, ApiError> {
    with_engine(&app, move |e| {
        let id = e.resolve(&id)?;
        Ok(match q.format {
            ExportFormat::Automerge => {
                let bytes = e.doc_mut(&id)?.save();
                let disposition = format!("attachment; filename=\"{id}.automerge\"");
                (
                    [
                        (header::CONTENT_TYPE, "application/octet-stream".to_owned()),
                        (header::CONTENT_DISPOSITION, disposition),
                    ],
                    bytes,
                )
                    .into_response()
            }
            ExportFormat::Json => Json(e.state(&id)?).into_response(),
        })
    })
    .await
}

async fn apply_op(
    State(app): State<App>,
    Path(id): Path<String>,
    Q(signer): Q<Signer>,
    Body(op): Body<Op>,
) -> Result<Json<Receipt>, ApiError> {
    blocking(&app, move |shared| {
        let receipt = {
            let mut e = shared.engine();
            let id = e.resolve(&id)?;
            e.apply(&id, &op, signer.person.as_deref()).map_err(|err| {
                ApiError::from(err).context(format!("{} on document {id}", op.name()))
            })?
        };
        announce(shared);
        Ok(Json(receipt))
    })
    .await
}

async fn apply_batch(
    State(app): State<App>,
    Path(id): Path<String>,
    Q(signer): Q<Signer>,
    Body(ops): Body<Vec<Op>>,
) -> Result<Json<Vec<Receipt>>, ApiError> {
    if ops.len() > OPS_PER_BATCH_MAX {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!(
                "a batch takes at most {OPS_PER_BATCH_MAX} operations and this one has {}; split it",
                ops.len()
            ),
        ));
    }
    blocking(&app, move |shared| {
        let id = shared.engine().resolve(&id)?;
        let n = ops.len();
        let mut receipts = Vec::with_capacity(n);
        let mut failure = None;
        for (i, op) in ops.iter().enumerate() {
            // One lock per operation, so the network loop is never kept waiting for a whole batch.
            let result = shared.engine().apply(&id, op, signer.person.as_deref());
            match result {
                Ok(r) => receipts.push(r),
                Err(e) => {
                    failure = Some((i, op.name(), e));
                    break;
                }
            }
        }
        if !receipts.is_empty() {
            announce(shared);
        }
        match failure {
            None => Ok(Json(receipts)),
            Some((i, name, e)) => {
                let kept = match i {
                    0 => "none was applied".to_owned(),
                    1 => "operation 0 was applied and stays".to_owned(),
                    _ => format!("operations 0–{} were applied and stay", i - 1),
                };
                let mut err = ApiError::from(e).context(format!(
                    "operation {i} of {n} ({name}) on document {id} failed ({kept})"
                ));
                err.body.index = Some(i);
                err.body.applied = Some(receipts);
                Err(err)
            }
        }
    })
    .await
}

// ----- handlers: attestations and checkpoints -----

/// The public key `person` signs with, as [`crate::keystore::Keystore::signer`] would pick it.
fn signer_key(e: &mut Engine, person: Option<&str>) -> Result<PublicKey, ApiError> {
    let Some(p) = person else {
        return Ok(e.node_key().public());
    };
    let node = e.node_key().public();
    if p.parse::<PublicKey>().is_ok_and(|k| k == node) {
        return Ok(node);
    }
    e.status()
        .people
        .iter()
        .find(|person| person.handle == p || person.key == p)
        .and_then(|person| person.key.parse().ok())
        .ok_or_else(|| engine::Error::Key(KeyFileError::UnknownPerson(p.to_owned())).into())
}

/// Refuse, before signing anything, a statement the signer has no role for; the engine checks
/// again, but would only say so in a sentence.
fn check_statement(
    e: &mut Engine,
    person: Option<&str>,
    statement: Statement,
    doc_unit: &linli_crdt_model::unit::UnitId,
) -> Result<(), ApiError> {
    let key = signer_key(e, person)?;
    e.trust()
        .authorize(&key, crate::clock::now_ms(), |u, role| {
            statement.permits(role, &u.id, u.kind, doc_unit)
        })
        .map(drop)
        .map_err(|d| {
            ApiError::denied(format!(
                "{} may not make a {} statement about a document of {doc_unit}: {d}",
                person.unwrap_or("this node"),
                statement.as_str()
            ))
        })
}

async fn attest(
    State(app): State<App>,
    Path(id): Path<String>,
    Q(signer): Q<Signer>,
    Body(req): Body<AttestRequest>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    if req.statement == Statement::Checkpoint {
        return Err(ApiError::bad(
            "invalid",
            "a checkpoint covers every document: POST /v1/checkpoint signs one",
        ));
    }
    let aid = blocking(&app, move |shared| {
        let aid = {
            let mut e = shared.engine();
            let id = e.resolve(&id)?;
            let doc_unit = e.doc(&id)?.header().header.unit.clone();
            let person = signer.person.as_deref();
            check_statement(&mut e, person, req.statement, &doc_unit)?;
            e.attest(
                &id,
                req.statement,
                req.subject,
                req.note.unwrap_or_default(),
                person,
            )
            .map_err(|err| {
                ApiError::from(err).context(format!(
                    "{} attestation of document {id}",
                    req.statement.as_str()
                ))
            })?
        };
        announce(shared);
        Ok(aid)
    })
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            id: aid.to_string(),
        }),
    ))
}

async fn attestations(
    State(app): State<App>,
    Q(filter): Q<AttestationFilter>,
) -> Result<Json<Vec<AttestationView>>, ApiError> {
    with_engine(&app, move |e| {
        // An attestation may be about a document this node does not hold: a full id is taken
        // as it is, a prefix must resolve.
        let doc: Option<DocId> = match filter.doc.as_deref() {
            None => None,
            Some(d) => Some(match d.parse::<DocId>() {
                Ok(full) => full,
                Err(_) => e.resolve(d)?,
            }),
        };
        let trust = e.trust();
        let mut out: Vec<AttestationView> = e
            .attestations()
            .iter()
            .filter(|(_, a)| doc.is_none_or(|d| a.body.doc == d))
            .map(|(id, a)| {
                let b = &a.body;
                // Judged against the unit the document's header names, where this node holds
                // it: the unit an attestation states is its issuer's claim.
                let owner = e.doc(&b.doc).ok().map(|d| d.header().header.unit.clone());
                let check = match owner {
                    Some(owner) if owner != b.doc_unit => Err(format!(
                        "it names {} as the document's unit, but the document belongs to {owner}",
                        b.doc_unit
                    )),
                    _ => a.check(trust).map_err(|e| e.to_string()),
                };
                let (holder, issuer_unit) = match &check {
                    Ok(g) => (Some(g.holder.clone()), Some(g.unit.to_string())),
                    Err(_) => (None, None),
                };
                AttestationView {
                    id: id.to_string(),
                    statement: b.statement,
                    issuer: b.issuer.to_string(),
                    holder,
                    issuer_unit,
                    doc: b.doc.to_string(),
                    doc_unit: b.doc_unit.to_string(),
                    heads: b.heads.iter().map(hex::encode).collect(),
                    subject: b.subject.clone(),
                    at_ms: b.at_ms,
                    note: b.note.clone(),
                    n_checkpoint_docs: b.checkpoint.len(),
                    valid: check.is_ok(),
                    reason: check.err(),
                }
            })
            .collect();
        out.sort_by(|a, b| (a.at_ms, &a.id).cmp(&(b.at_ms, &b.id)));
        Ok(Json(out))
    })
    .await
}

async fn checkpoint(State(app): State<App>) -> Result<(StatusCode, Json<Created>), ApiError> {
    let id = blocking(&app, |shared| {
        let id = {
            let mut e = shared.engine();
            let unit = e.unit().clone();
            check_statement(&mut e, None, Statement::Checkpoint, &unit.id).map_err(|_| {
                ApiError::denied(format!(
                    "only a district node signs checkpoints; this node serves {} ({})",
                    unit.id,
                    unit.kind.as_str()
                ))
            })?;
            e.checkpoint()?
        };
        announce(shared);
        Ok(id)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(Created { id: id.to_string() })))
}

async fn compare_checkpoint(State(app): State<App>) -> Result<Json<CompareView>, ApiError> {
    with_engine(&app, |e| {
        if e
            .attestations()
            .latest_checkpoint(e.trust(), crate::clock::now_ms(), e.limits().clock_skew_ms_max)
            .is_none()
        {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "no-checkpoint",
                "no valid checkpoint has reached this node yet; the district node signs one every checkpoint.interval_ms, or on POST /v1/checkpoint",
            ));
        }
        let (checkpoint, rows) = e.compare_checkpoint()?;
        Ok(Json(CompareView { checkpoint, rows }))
    })
    .await
}

// ----- handlers: certificates -----

fn parse_key(what: &str, s: &str) -> Result<PublicKey, ApiError> {
    s.parse::<PublicKey>().map_err(|e| {
        ApiError::bad(
            "invalid",
            format!("{what} {s:?} is not a key (64 hex digits): {e}"),
        )
    })
}

async fn certs(State(app): State<App>) -> Result<Json<Vec<CertView>>, ApiError> {
    with_engine(&app, |e| {
        let now = crate::clock::now_ms();
        let trust = e.trust();
        let mut out: Vec<CertView> = trust
            .certificates()
            .map(|(id, c)| {
                let b = &c.body;
                let unit = trust.unit(&b.unit);
                CertView {
                    id: id.to_string(),
                    subject: b.subject.to_string(),
                    holder: b.holder.clone(),
                    unit: b.unit.clone(),
                    unit_kind: unit.map(|u| u.kind),
                    unit_name: unit.map(|u| u.name.clone()),
                    role: b.role,
                    issuer: b.issuer.to_string(),
                    issued_at_ms: b.issued_at_ms,
                    expires_at_ms: b.expires_at_ms,
                    chain_valid: trust.is_chain_valid(id),
                    in_force: trust.in_force(id, now),
                    revoked: trust.revoked_from(id).is_some(),
                    expired: b.expires_at_ms <= now,
                }
            })
            .collect();
        out.sort_by(|a, b| {
            (&a.unit, a.role, &a.holder, &a.id).cmp(&(&b.unit, b.role, &b.holder, &b.id))
        });
        Ok(Json(out))
    })
    .await
}

async fn issue_cert(
    State(app): State<App>,
    Q(signer): Q<Signer>,
    Body(req): Body<IssueRequest>,
) -> Result<(StatusCode, Json<Issued>), ApiError> {
    let subject = parse_key("subject", &req.subject)?;
    let days = req.valid_days.unwrap_or(365);
    if !(1..=CERT_VALID_DAYS_MAX).contains(&days) {
        return Err(ApiError::bad(
            "invalid",
            format!("valid_days is {days}; a certificate lasts 1 to {CERT_VALID_DAYS_MAX} days"),
        ));
    }
    let issued = blocking(&app, move |shared| {
        let cert = {
            let mut e = shared.engine();
            let person = signer.person.as_deref();
            // Refuse before signing: a certificate without a valid chain would still be stored
            // and written to the directory, where it only confuses.
            let issuer = signer_key(&mut e, person)?;
            let unit = req.unit.clone();
            if e.trust().unit(&unit).is_none() {
                return Err(engine::Error::Unregistered(unit).into());
            }
            e.trust()
                .authorize(&issuer, crate::clock::now_ms(), |u, role| {
                    role == Role::Admin && u.id.is_at_or_above(&unit)
                })
                .map_err(|d| {
                    ApiError::denied(format!(
                        "{} may not certify keys for {unit}: only an admin of {unit} or a unit above it may ({d})",
                        person.unwrap_or("this node")
                    ))
                })?;
            let cert = e
                .issue_certificate(
                    subject,
                    req.unit,
                    req.role,
                    req.holder,
                    i64::from(days) * DAY_MS,
                    person,
                )
                .map_err(|err| ApiError::from(err).context(format!("certifying key {subject}")))?;
            let trust = e.trust();
            let chain_valid = trust.is_chain_valid(&cert.id());
            let chain: Vec<Certificate> = trust
                .chain_of(&cert.body.issuer)
                .into_iter()
                .chain([cert.clone()])
                .collect();
            let registrations = trust
                .registrations_for(&chain)
                .iter()
                .map(|r| hex::encode(r.encode()))
                .collect();
            Issued {
                id: cert.id().to_string(),
                hex: hex::encode(cert.encode()),
                chain: chain
                    .iter()
                    .filter(|c| c.id() != cert.id())
                    .map(|c| hex::encode(c.encode()))
                    .collect(),
                registrations,
                certificate: cert,
                chain_valid,
            }
        };
        announce(shared);
        Ok(cert)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(issued)))
}

async fn import_certs(
    State(app): State<App>,
    Body(req): Body<ImportRequest>,
) -> Result<Json<Imported>, ApiError> {
    if req.certificates.len() + req.registrations.len() > CERTS_PER_IMPORT_MAX {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-large",
            format!(
                "an import takes at most {CERTS_PER_IMPORT_MAX} certificates and this one has {}; split it",
                req.certificates.len()
            ),
        ));
    }
    let mut blobs = Vec::with_capacity(req.certificates.len());
    for (i, h) in req.certificates.iter().enumerate() {
        let bytes = hex::decode(h.trim()).map_err(|e| {
            ApiError::bad(
                "bad-record",
                format!("certificate {i} is not hex: {e}; send the `hex` that POST /v1/certs/issue returned"),
            )
        })?;
        blobs.push(bytes);
    }
    let mut reg_blobs = Vec::with_capacity(req.registrations.len());
    for (i, h) in req.registrations.iter().enumerate() {
        let bytes = hex::decode(h.trim()).map_err(|e| {
            ApiError::bad(
                "bad-record",
                format!("registration {i} is not hex: {e}; send the `registrations` that POST /v1/certs/issue returned"),
            )
        })?;
        reg_blobs.push(bytes);
    }
    let imported = blocking(&app, move |shared| {
        let imported = {
            let mut e = shared.engine();
            let network = e.trust().network();
            let mut certs = Vec::with_capacity(blobs.len());
            for (i, b) in blobs.iter().enumerate() {
                let cert = Certificate::decode(b, &network).map_err(|err| {
                    let (status, kind) = record_error(&err);
                    ApiError::new(status, kind, format!("certificate {i} refused: {err}"))
                })?;
                certs.push(cert);
            }
            let mut regs = Vec::with_capacity(reg_blobs.len());
            for (i, b) in reg_blobs.iter().enumerate() {
                let reg = Registration::decode(b, &network).map_err(|err| {
                    let (status, kind) = record_error(&err);
                    ApiError::new(status, kind, format!("registration {i} refused: {err}"))
                })?;
                regs.push(reg);
            }
            e.import_registrations(regs)?;
            let ids: Vec<String> = certs.iter().map(|c| c.id().to_string()).collect();
            let new = e.import_certificates(certs)?;
            Imported {
                ids,
                n_new: new.len(),
            }
        };
        if imported.n_new > 0 {
            announce(shared);
        }
        Ok(imported)
    })
    .await?;
    Ok(Json(imported))
}

async fn revoke(
    State(app): State<App>,
    Q(signer): Q<Signer>,
    Body(req): Body<RevokeRequest>,
) -> Result<(StatusCode, Json<Created>), ApiError> {
    let key = parse_key("key", &req.key)?;
    let id = blocking(&app, move |shared| {
        let id = {
            let mut e = shared.engine();
            if e.genesis().is_root(&key) {
                return Err(ApiError::bad(
                    "invalid",
                    format!("key {key} is a root key of the genesis; root keys cannot be revoked"),
                ));
            }
            let units: BTreeSet<UnitId> = e
                .trust()
                .certificates_of(&key)
                .iter()
                .map(|(_, c)| c.body.unit.clone())
                .collect();
            if units.is_empty() {
                return Err(ApiError::new(
                    StatusCode::NOT_FOUND,
                    "unknown-key",
                    format!(
                        "no certificate of key {key} is known here; import it first (POST /v1/certs/import)"
                    ),
                ));
            }
            let person = signer.person.as_deref();
            let issuer = signer_key(&mut e, person)?;
            let scope = req.unit.clone();
            e.trust()
                .authorize(&issuer, crate::clock::now_ms(), |u, role| {
                    role == Role::Admin
                        && match &scope {
                            Some(s) => u.id.is_at_or_above(s),
                            None => units.iter().any(|k| u.id.is_at_or_above(k)),
                        }
                })
                .map_err(|d| {
                    let over = scope
                        .as_ref()
                        .map_or_else(|| "its unit".to_owned(), |s| s.to_string());
                    ApiError::denied(format!(
                        "{} may not revoke key {key} over {over}: only an admin of {over} or a unit above it may ({d})",
                        person.unwrap_or("this node")
                    ))
                })?;
            e.revoke(
                key,
                req.unit,
                req.cutoff_ms,
                req.keep_issued,
                req.reason,
                person,
            )
            .map_err(|err| ApiError::from(err).context(format!("revoking key {key}")))?
            .id()
        };
        announce(shared);
        Ok(id)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(Created { id: id.to_string() })))
}

// ----- handlers: the unit tree -----

async fn units(State(app): State<App>) -> Result<Json<Vec<UnitView>>, ApiError> {
    with_engine(&app, |e| {
        let trust = e.trust();
        let out: Vec<UnitView> = trust
            .units()
            .map(|u| UnitView {
                id: u.id.clone(),
                kind: u.kind,
                name: u.name.clone(),
                parent: u.id.parent(),
                registration: trust
                    .registrations()
                    .filter(|(_, r)| r.body.unit == *u)
                    .max_by_key(|(id, r)| (r.body.at_ms, **id))
                    .map(|(id, _)| id.to_string()),
            })
            .collect();
        Ok(Json(out))
    })
    .await
}

async fn register_unit(
    State(app): State<App>,
    Q(signer): Q<Signer>,
    Body(req): Body<RegisterRequest>,
) -> Result<(StatusCode, Json<Registered>), ApiError> {
    if req.unit.id.parent().is_none() {
        return Err(ApiError::bad(
            "invalid",
            format!(
                "{} is a top unit; the top unit comes from the genesis and is not registered",
                req.unit.id
            ),
        ));
    }
    let registered = blocking(&app, move |shared| {
        let reg = {
            let mut e = shared.engine();
            let person = signer.person.as_deref();
            let unit = req.unit.clone();
            let reg = e.register_unit(req.unit, person).map_err(|err| {
                ApiError::from(err).context(format!("registering unit {}", unit.id))
            })?;
            Registered {
                id: reg.id().to_string(),
                unit: reg.body.unit.clone(),
                issuer: reg.body.issuer.to_string(),
                at_ms: reg.body.at_ms,
            }
        };
        announce(shared);
        Ok(reg)
    })
    .await?;
    Ok((StatusCode::CREATED, Json(registered)))
}

// ----- handlers: admin -----

fn parse_peer(s: &str) -> Result<libp2p::PeerId, ApiError> {
    libp2p::PeerId::from_str(s.trim()).map_err(|e| {
        ApiError::bad(
            "invalid",
            format!("{s:?} is not a libp2p peer id ({e}); GET /v1/peers lists them"),
        )
    })
}

async fn block(
    State(app): State<App>,
    Body(req): Body<PeerRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let peer = parse_peer(&req.peer)?;
    command(&app, NetCommand::Block(peer)).await?;
    Ok(accepted("block", Some(peer)))
}

async fn unblock(
    State(app): State<App>,
    Body(req): Body<PeerRequest>,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    let peer = parse_peer(&req.peer)?;
    command(&app, NetCommand::Unblock(peer)).await?;
    Ok(accepted("unblock", Some(peer)))
}

async fn unblock_all(State(app): State<App>) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    command(&app, NetCommand::UnblockAll).await?;
    Ok(accepted("unblock-all", None))
}

async fn sync_now(State(app): State<App>) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    command(&app, NetCommand::SyncNow).await?;
    Ok(accepted("sync", None))
}

fn accepted(what: &str, peer: Option<libp2p::PeerId>) -> (StatusCode, Json<Accepted>) {
    (
        StatusCode::ACCEPTED,
        Json(Accepted {
            accepted: what.to_owned(),
            peer: peer.map(|p| p.to_string()),
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_only_when_equal() {
        assert!(token_matches("abc", "abc"));
        assert!(!token_matches("abd", "abc"));
        assert!(!token_matches("abc ", "abc"));
        assert!(!token_matches("", ""));
    }
}
