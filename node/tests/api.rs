//! The local HTTP API, driven in process through `tower::ServiceExt::oneshot`: authentication,
//! the shape of errors and their status codes, and a visit log's round trip from creation to
//! export. No sockets; the network loop is a channel the tests read.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use expect_test::expect;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::testkit::Net;
use linli_node::api::{self, BODY_BYTES_MAX, OPS_PER_BATCH_MAX};
use linli_node::client::{Client, Error as ClientError};
use linli_node::config::{Config, Layout};
use linli_node::contract::{CreateDoc, DocFilter, ExportFormat, Op};
use linli_node::engine::Engine;
use linli_node::keystore::Keystore;
use linli_node::shared::{NetCommand, Shared};
use linli_node::store::Store;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tower::ServiceExt;

const TOKEN: &str = "test-token-0123456789abcdef";

/// A node of 胜利社区 with 王芳 and 李强 (writers), its admin (书记), and 赵敏 of 前进社区 —
/// whose key is on this node but who may not write its documents.
struct Node {
    app: Router,
    net: mpsc::Receiver<NetCommand>,
    dir: tempfile::TempDir,
    fixture: Net,
}

impl Node {
    fn new() -> Node {
        let dir = tempfile::tempdir().expect("temp dir");
        let fixture = Net::new();
        let layout = Layout::new(dir.path());
        {
            // The node's own certificate, and the units it names, must be known before the
            // engine opens.
            let store = Store::open(&layout.store(), fixture.trust.network()).expect("store");
            for (_, r) in fixture.trust.registrations() {
                store.put_registration(r).expect("registration stored");
            }
            for (_, c) in fixture.trust.certificates() {
                store.put_certificate(c).expect("certificate stored");
            }
        }
        let people = BTreeMap::from([
            ("wangfang".to_owned(), fixture.c_wang.clone()),
            ("liqiang".to_owned(), fixture.c_li.clone()),
            ("shuji".to_owned(), fixture.c_admin.clone()),
            ("zhaomin".to_owned(), fixture.q_zhao.clone()),
        ]);
        let engine = Engine::open_with(
            layout,
            Config::new(fixture.shengli.id.clone()),
            fixture.genesis.clone(),
            Keystore::from_keys(fixture.c_node.clone(), people),
        )
        .expect("engine opens");
        let (tx, net) = mpsc::channel(64);
        let shared: Arc<Shared> = Shared::new(engine, tx, TOKEN.to_owned());
        Node {
            app: api::router(shared),
            net,
            dir,
            fixture,
        }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, Vec<u8>) {
        let res = self.app.clone().oneshot(req).await.expect("infallible");
        let status = res.status();
        let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
            .await
            .expect("body");
        (status, bytes.to_vec())
    }

    /// `method uri` with the token and an optional JSON body; the answer as JSON.
    async fn call(&self, method: &str, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"));
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .expect("request");
        let (status, bytes) = self.send(req).await;
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        (status, value)
    }

    async fn raw(&self, method: &str, uri: &str, body: &str) -> (StatusCode, Value) {
        let req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
            .body(Body::from(body.to_owned()))
            .expect("request");
        let (status, bytes) = self.send(req).await;
        (
            status,
            serde_json::from_slice(&bytes).expect("JSON error body"),
        )
    }

    /// A visit log for 2026-11 with household h1 assigned to 王芳; returns its id.
    async fn visit_log(&self) -> String {
        let (status, body) = self
            .call(
                "POST",
                "/v1/docs",
                Some(json!({"kind": "visit-log", "title": "胜利社区 2026-11 走访记录", "period": "2026-11"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        let id = body["id"].as_str().expect("id").to_owned();
        let (status, body) = self
            .call(
                "POST",
                &format!("/v1/docs/{id}/ops?as=wangfang"),
                Some(assign("h1")),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        id
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().to_owned()
    }
}

fn assign(household: &str) -> Value {
    json!({
        "op": "visit-assign",
        "household_id": household,
        "assignment": {
            "worker": "王芳",
            "household_name": "张大爷",
            "kind": "household",
            "grid": "一网格",
            "address": "胜利路1号"
        }
    })
}

fn visit(id: &str, household: &str, date: &str) -> Value {
    json!({
        "op": "visit-add",
        "id": id,
        "household_id": household,
        "worker": "王芳",
        "date": date,
        "mode": "door",
        "needs": ["独居老人需要助餐"]
    })
}

/// The error body with the data directory written as `<data-dir>`, so it snapshots.
fn redact(node: &Node, body: &Value) -> String {
    serde_json::to_string_pretty(body)
        .expect("JSON")
        .replace(&node.data_dir().display().to_string(), "<data-dir>")
}

#[tokio::test]
async fn every_route_needs_the_token() {
    let node = Node::new();
    let no_token = Request::get("/v1/status").body(Body::empty()).unwrap();
    let (status, body) = node.send(no_token).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let body: Value = serde_json::from_slice(&body).unwrap();
    expect![[r#"
        {
          "error": "unauthorized",
          "message": "missing or wrong bearer token: send `Authorization: Bearer <token>` with the token in <data-dir>/api-token"
        }"#]]
    .assert_eq(&redact(&node, &body));

    for (uri, auth) in [
        ("/v1/status", format!("Bearer {TOKEN}x")),
        ("/v1/status", format!("Basic {TOKEN}")),
        ("/metrics", "Bearer ".to_owned()),
        ("/v1/nowhere", "Bearer wrong".to_owned()),
    ] {
        let req = Request::get(uri)
            .header(header::AUTHORIZATION, auth.clone())
            .body(Body::empty())
            .unwrap();
        let res = node.app.clone().oneshot(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::UNAUTHORIZED, "{uri} with {auth}");
        assert_eq!(res.headers()[header::WWW_AUTHENTICATE], "Bearer");
    }

    let (status, body) = node.call("GET", "/v1/status", None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["unit"], "tiedong/jiefang/shengli");
    assert_eq!(body["peers"], 0);
    assert!(body["net"]["listen"].is_array(), "{body}");
}

#[tokio::test]
async fn a_visit_log_round_trip() {
    let mut node = Node::new();
    let id = node.visit_log().await;
    let (status, receipt) = node
        .call(
            "POST",
            &format!("/v1/docs/{id}/ops?as=wangfang"),
            Some(visit("v1", "h1", "2026-11-05")),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{receipt}");
    assert_eq!(receipt["record"], "v1");
    assert_eq!(
        receipt["author"],
        node.fixture.c_wang.public().to_string(),
        "signed by 王芳"
    );
    // Every acknowledged edit is announced to the network loop.
    assert!(matches!(node.net.try_recv(), Ok(NetCommand::Announce)));

    // A unique prefix names the document.
    let (status, doc) = node
        .call("GET", &format!("/v1/docs/{}", &id[..10]), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{doc}");
    assert_eq!(doc["id"], id.as_str());
    assert_eq!(doc["kind"], "visit-log");
    assert_eq!(doc["creator_holder"], "胜利社区节点");

    let (status, state) = node
        .call("GET", &format!("/v1/docs/{id}/state"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{state}");
    assert_eq!(state["month"], "2026-11");
    assert_eq!(state["entries"]["v1"]["household_id"], "h1");
    assert_eq!(state["entries"]["v1"]["date"], "2026-11-05");

    let (status, audit) = node
        .call("GET", &format!("/v1/docs/{id}/audit"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{audit}");
    let holders: Vec<&str> = audit["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter_map(|c| c["holder"].as_str())
        .collect();
    assert!(holders.contains(&"王芳"), "{holders:?}");
    assert!(audit["problems"].as_array().unwrap().is_empty(), "{audit}");

    let (status, list) = node
        .call("GET", "/v1/docs?kind=visit-log&period=2026-11", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    let (_, all) = node.call("GET", "/v1/docs", None).await;
    assert_eq!(
        all.as_array().unwrap().len(),
        3,
        "visit log, ledger, task list: {all}"
    );
    let (status, body) = node.call("GET", "/v1/docs?kind=visits", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("visit-log"),
        "{body}"
    );

    let (status, body) = node.call("GET", "/v1/verify", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"ok": true, "problems": []}));
}

#[tokio::test]
async fn export_gives_automerge_bytes_or_the_state() {
    let node = Node::new();
    let id = node.visit_log().await;
    let req = Request::get(format!("/v1/docs/{id}/export?format=automerge"))
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let res = node.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(
        res.headers()[header::CONTENT_TYPE],
        "application/octet-stream"
    );
    let bytes = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let mut doc = automerge::AutoCommit::load(&bytes).expect("export loads in Automerge");
    assert_eq!(doc.get_changes(&[]).len(), 2, "creation and assignment");

    let (status, state) = node
        .call("GET", &format!("/v1/docs/{id}/export?format=json"), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(state["assignments"]["h1"]["worker"], "王芳");

    let (status, body) = node
        .call("GET", &format!("/v1/docs/{id}/export?format=pdf"), None)
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["error"], "bad-query");
}

#[tokio::test]
async fn refusals_have_their_status() {
    let node = Node::new();
    let id = node.visit_log().await;
    let ops = format!("/v1/docs/{id}/ops");

    // 赵敏 is a writer of 前进社区: her key is here, but not her unit's authority.
    let (status, body) = node
        .call(
            "POST",
            &format!("{ops}?as=zhaomin"),
            Some(visit("v9", "h1", "2026-11-05")),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(body["error"], "denied");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("tiedong/jiefang/qianjin"),
        "{body}"
    );

    let (status, body) = node
        .call(
            "POST",
            &format!("{ops}?as=nobody"),
            Some(visit("v9", "h1", "2026-11-05")),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "unknown-person");

    let (status, body) = node
        .call(
            "POST",
            &ops,
            Some(json!({"op": "task-note", "id": "t1", "note": "x"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "wrong-kind");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("task-list") && message.contains("visit-log"),
        "{message}"
    );

    // A date outside the log's month is the model's refusal of one field.
    let (status, body) = node
        .call("POST", &ops, Some(visit("v2", "h1", "2026-12-01")))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid");
    assert!(
        body["message"].as_str().unwrap().contains("2026-12-01"),
        "{body}"
    );

    let (status, _) = node
        .call("POST", &ops, Some(visit("v1", "h1", "2026-11-05")))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = node
        .call("POST", &ops, Some(visit("v1", "h1", "2026-11-06")))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert_eq!(body["error"], "already-exists");

    let (status, body) = node.raw("POST", &ops, "{\"op\": \"visit-add\",").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "bad-json");

    let (status, body) = node.raw("POST", &ops, "{\"op\": \"visit-dance\"}").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "bad-body");
    assert!(
        body["message"].as_str().unwrap().contains("visit-add"),
        "lists the ops: {body}"
    );

    let (status, body) = node.call("GET", "/v1/docs/zz", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "bad-document-id");

    let (status, body) = node.call("GET", "/v1/nowhere", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"], "not-found");

    let (status, body) = node.call("DELETE", "/v1/docs", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["error"], "method-not-allowed");
}

#[tokio::test]
async fn an_unknown_document_is_named() {
    let node = Node::new();
    let missing = "00".repeat(32);
    let (status, body) = node
        .call("GET", &format!("/v1/docs/{missing}/state"), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    expect![[r#"
        {
          "error": "unknown-document",
          "message": "no document 0000000000000000000000000000000000000000000000000000000000000000; GET /v1/docs lists the documents this node holds"
        }"#]]
    .assert_eq(&redact(&node, &body));
}

#[tokio::test]
async fn a_batch_stops_at_the_first_failure_and_keeps_what_came_before() {
    let node = Node::new();
    let id = node.visit_log().await;
    let batch = json!([
        visit("v1", "h1", "2026-11-02"),
        visit("v2", "h1", "2026-11-03"),
        visit("v3", "nobody-lives-here", "2026-11-04"),
        visit("v4", "h1", "2026-11-05"),
    ]);
    let (status, body) = node
        .call(
            "POST",
            &format!("/v1/docs/{id}/ops/batch?as=wangfang"),
            Some(batch),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["index"], 2);
    assert_eq!(body["applied"].as_array().unwrap().len(), 2);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .starts_with("operation 2 of 4 (visit-add)"),
        "{body}"
    );
    let (_, state) = node
        .call("GET", &format!("/v1/docs/{id}/state"), None)
        .await;
    let entries: Vec<&String> = state["entries"].as_object().unwrap().keys().collect();
    assert_eq!(entries, ["v1", "v2"]);

    let batch = json!([
        visit("v5", "h1", "2026-11-06"),
        visit("v6", "h1", "2026-11-07")
    ]);
    let (status, body) = node
        .call("POST", &format!("/v1/docs/{id}/ops/batch"), Some(batch))
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body.as_array().unwrap().len(), 2);

    // The limit on operations per batch, at its boundary.
    let too_many = Value::Array(vec![json!({"op": "publish"}); OPS_PER_BATCH_MAX + 1]);
    let (status, body) = node
        .call("POST", &format!("/v1/docs/{id}/ops/batch"), Some(too_many))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
}

#[tokio::test]
async fn bodies_are_limited() {
    let node = Node::new();
    let id = node.visit_log().await;
    let uri = format!("/v1/docs/{id}/ops");
    // Exactly the limit is read (and refused for what it says); one byte more is not read.
    let body = |total: usize| {
        let (head, tail) = (r#"{"op": "publish", "pad": ""#, r#""}"#);
        format!(
            "{head}{}{tail}",
            "x".repeat(total - head.len() - tail.len())
        )
    };
    let (status, answer) = node.raw("POST", &uri, &body(BODY_BYTES_MAX)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{answer}");
    let (status, answer) = node.raw("POST", &uri, &body(BODY_BYTES_MAX + 1)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{answer}");
    assert_eq!(answer["error"], "too-large");
}

#[tokio::test]
async fn attestations_and_checkpoints() {
    let node = Node::new();
    let id = node.visit_log().await;
    let uri = format!("/v1/docs/{id}/attest");

    // Neither the community's node nor its admin may review: only the district does.
    for who in ["", "?as=shuji"] {
        let (status, body) = node
            .call(
                "POST",
                &format!("{uri}{who}"),
                Some(json!({"statement": "reviewed"})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{who}: {body}");
    }
    // Nothing was signed, so there is nothing to list (attestations made where they may be —
    // the street's filing, the district's review and approval — are followed through in
    // cli/tests/cli.rs).
    let (status, list) = node
        .call("GET", &format!("/v1/attestations?doc={}", &id[..12]), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list.as_array().map(Vec::len), Some(0), "{list}");

    let (status, body) = node
        .call("POST", &uri, Some(json!({"statement": "checkpoint"})))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    let (status, body) = node.call("POST", "/v1/checkpoint", None).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("district"),
        "{body}"
    );
    let (status, body) = node.call("GET", "/v1/checkpoint/compare", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"], "no-checkpoint");
}

#[tokio::test]
async fn certificates_are_issued_imported_and_revoked() {
    let node = Node::new();
    let (_, certs) = node.call("GET", "/v1/certs", None).await;
    assert_eq!(
        certs.as_array().unwrap().len(),
        12,
        "the fixture's certificates"
    );
    assert!(
        certs
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["chain_valid"] == true)
    );

    let newcomer = linli_crdt_model::testkit::key(99).public().to_string();
    let request = json!({
        "subject": newcomer,
        "unit": "tiedong/jiefang/shengli",
        "role": "writer",
        "holder": "刘新",
        "valid_days": 30
    });
    let (status, body) = node
        .call("POST", "/v1/certs/issue?as=wangfang", Some(request.clone()))
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "a writer does not certify: {body}"
    );
    let (status, issued) = node
        .call("POST", "/v1/certs/issue?as=shuji", Some(request))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{issued}");
    assert_eq!(issued["chain_valid"], true);
    assert_eq!(issued["certificate"]["body"]["holder"], "刘新");

    let (status, body) = node
        .call(
            "POST",
            "/v1/certs/import",
            Some(json!({"certificates": [issued["hex"]]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["ids"][0], issued["id"]);
    assert_eq!(body["n_new"], 0, "already known");
    let (status, body) = node
        .call(
            "POST",
            "/v1/certs/import",
            Some(json!({"certificates": ["beef"]})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "bad-record");

    // A unit that is not in the registered tree cannot be named.
    let elsewhere = request_for(&newcomer, "tiedong/jiefang/nosuch");
    let (status, body) = node
        .call("POST", "/v1/certs/issue?as=shuji", elsewhere)
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"], "unregistered-unit");

    // The community admin may not revoke the district's node key over the district.
    let d_node = node.fixture.d_node.public().to_string();
    let (status, body) = node
        .call(
            "POST",
            "/v1/certs/revoke?as=shuji",
            Some(json!({"key": d_node, "reason": "夺权", "unit": "tiedong"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    // A cutoff in the future is refused.
    let li = node.fixture.c_li.public().to_string();
    let (status, body) = node
        .call(
            "POST",
            "/v1/certs/revoke?as=shuji",
            Some(json!({"key": li, "reason": "调离", "cutoff_ms": i64::MAX / 2})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    let (status, body) = node
        .call(
            "POST",
            "/v1/certs/revoke?as=shuji",
            Some(json!({"key": li, "reason": "调离"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let (_, certs) = node.call("GET", "/v1/certs", None).await;
    let li_cert = certs
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["subject"] == li.as_str())
        .expect("李强's certificate");
    assert_eq!(li_cert["revoked"], true);
}

fn request_for(subject: &str, unit: &str) -> Option<Value> {
    Some(json!({
        "subject": subject,
        "unit": unit,
        "role": "writer",
        "holder": "刘新",
        "valid_days": 30
    }))
}

#[tokio::test]
async fn units_are_registered_by_the_level_above() {
    let node = Node::new();
    let (status, units) = node.call("GET", "/v1/units", None).await;
    assert_eq!(status, StatusCode::OK, "{units}");
    let ids: Vec<&str> = units
        .as_array()
        .unwrap()
        .iter()
        .map(|u| u["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "tiedong",
            "tiedong/jiefang",
            "tiedong/jiefang/qianjin",
            "tiedong/jiefang/shengli"
        ]
    );
    assert_eq!(
        units[0]["registration"],
        Value::Null,
        "the top is the genesis'"
    );

    // The community admin registers a grid of its own community …
    let grid =
        json!({"unit": {"id": "tiedong/jiefang/shengli/g1", "kind": "grid", "name": "第一网格"}});
    let (status, body) = node
        .call("POST", "/v1/units/register?as=shuji", Some(grid))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    assert_eq!(body["unit"]["name"], "第一网格");
    // … but not a street, nor a renaming of its neighbour or of its own community.
    for (unit, why) in [
        (
            json!({"id": "tiedong/fake", "kind": "street", "name": "假街道"}),
            "not an administrator",
        ),
        (
            json!({"id": "tiedong/jiefang/qianjin", "kind": "community", "name": "夺取"}),
            "not an administrator",
        ),
        (
            json!({"id": "tiedong/jiefang/shengli", "kind": "community", "name": "改名"}),
            "not an administrator",
        ),
        (
            json!({"id": "tiedong/jiefang/shengli/g2", "kind": "street", "name": "错级"}),
            "belongs under",
        ),
    ] {
        let (status, body) = node
            .call(
                "POST",
                "/v1/units/register?as=shuji",
                Some(json!({ "unit": unit })),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{unit}: {body}");
        assert!(
            body["message"].as_str().unwrap().contains(why),
            "{unit}: {body}"
        );
    }
    let (status, body) = node
        .call(
            "POST",
            "/v1/units/register?as=shuji",
            Some(json!({"unit": {"id": "tiedong", "kind": "district", "name": "夺取"}})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "the top: {body}");
}

#[tokio::test]
async fn admin_commands_reach_the_network_loop() {
    let mut node = Node::new();
    let (status, body) = node
        .call(
            "POST",
            "/v1/admin/block",
            Some(json!({"peer": "not-a-peer"})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["error"], "invalid");

    let peer = libp2p::PeerId::random();
    let (status, body) = node
        .call(
            "POST",
            "/v1/admin/block",
            Some(json!({"peer": peer.to_string()})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(matches!(node.net.try_recv(), Ok(NetCommand::Block(p)) if p == peer));
    let (status, _) = node.call("POST", "/v1/admin/unblock-all", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(matches!(node.net.try_recv(), Ok(NetCommand::UnblockAll)));
    let (status, _) = node.call("POST", "/v1/admin/sync", None).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    assert!(matches!(node.net.try_recv(), Ok(NetCommand::SyncNow)));

    // With the network loop gone, a command is refused rather than lost.
    node.net.close();
    let (status, body) = node.call("POST", "/v1/admin/sync", None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let node = Node::new();
    let req = Request::get("/metrics")
        .header(header::AUTHORIZATION, format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .unwrap();
    let res = node.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert!(
        res.headers()[header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let text = axum::body::to_bytes(res.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8(text.to_vec()).unwrap();
    assert!(
        text.contains("linli_documents 2"),
        "ledger and task list: {text}"
    );
}

// ----- the one client, over a real socket -----

impl Node {
    /// Serve the API on a loopback port; a client of it with the token.
    async fn serve(&self) -> Client {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("its address");
        let app = self.app.clone();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Client::new(&addr.to_string(), TOKEN)
    }
}

/// Run the blocking client off the runtime that serves the API.
async fn off<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("client call")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_speaks_the_routes_typed() {
    let mut node = Node::new();
    let client = node.serve().await;
    let (status, units, certs, created) = off({
        let c = client.clone();
        move || {
            let created = c
                .create_doc(
                    &CreateDoc {
                        kind: Kind::VisitLog,
                        title: "胜利社区 2026-11 走访记录".to_owned(),
                        scope: None,
                        period: Some("2026-11".to_owned()),
                        minutes: None,
                    },
                    Some("wangfang"),
                )
                .expect("created");
            (
                c.status().expect("status"),
                c.units().expect("units"),
                c.certs().expect("certs"),
                created,
            )
        }
    })
    .await;
    assert_eq!(status.status.unit, "tiedong/jiefang/shengli");
    assert!(
        units
            .iter()
            .any(|u| u.id.as_str() == "tiedong/jiefang/shengli")
    );
    assert!(!certs.is_empty());

    let id = created.id.clone();
    let (receipt, batch, log, doc, audit, json, bytes, listed) = off({
        let c = client.clone();
        move || {
            let op = |h: &str| Op::VisitAssign {
                household_id: h.to_owned(),
                assignment: kinds::visits::Assignment {
                    worker: "王芳".to_owned(),
                    household_name: format!("住户{h}"),
                    kind: kinds::visits::HouseholdKind::Household,
                    grid: None,
                    address: "胜利路".to_owned(),
                },
            };
            let receipt = c.apply(&id, &op("h1"), Some("wangfang")).expect("applied");
            let batch = c
                .apply_batch(&id, &[op("h2"), op("h3")], Some("wangfang"))
                .expect("batch");
            (
                receipt,
                batch,
                c.state::<kinds::visits::Log>(&id).expect("typed state"),
                c.doc(&id[..12]).expect("by prefix"),
                c.audit(&id).expect("audit"),
                c.export(&id, ExportFormat::Json).expect("json export"),
                c.export(&id, ExportFormat::Automerge)
                    .expect("automerge export"),
                c.docs(&DocFilter {
                    kind: Some("visit-log".to_owned()),
                    ..DocFilter::default()
                })
                .expect("listed"),
            )
        }
    })
    .await;
    assert_eq!(receipt.doc, created.id);
    assert_eq!(batch.len(), 2);
    assert_eq!(log.assignments.len(), 3);
    assert_eq!(doc.summary.id, created.id);
    assert_eq!(audit.changes.len(), 4, "creation and three edits");
    let json: Value = serde_json::from_slice(&json).expect("JSON export");
    assert_eq!(json["assignments"].as_object().map(|m| m.len()), Some(3));
    automerge::AutoCommit::load(&bytes).expect("Automerge export loads");
    assert_eq!(listed.len(), 1);

    let sent = off({
        let c = client.clone();
        move || c.sync_now().expect("accepted")
    })
    .await;
    assert_eq!(sent.accepted, "sync");
    // The edits' announcements come first.
    assert!(
        std::iter::from_fn(|| node.net.try_recv().ok()).any(|c| matches!(c, NetCommand::SyncNow))
    );
    let metrics = off(move || client.metrics().expect("metrics")).await;
    assert!(metrics.contains("linli_documents 3"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_tells_no_answer_a_refusal_and_a_misunderstanding_apart() {
    let node = Node::new();
    let client = node.serve().await;
    let id = node.visit_log().await;
    let errors = off({
        let c = client.clone();
        move || {
            [
                c.doc("ffffffff").expect_err("no such document"),
                // Whatever a person types stays one path segment: this is not /v1/status.
                c.doc("../status").expect_err("not an id"),
                c.apply(&id, &Op::Publish, Some("王 芳"))
                    .expect_err("unknown person"),
                c.state::<Vec<u8>>(&id).expect_err("not a list of bytes"),
            ]
        }
    })
    .await;
    let kinds: Vec<_> = errors.iter().map(|e| (e.status(), e.kind())).collect();
    assert_eq!(
        kinds,
        [
            (Some(404), Some("unknown-document")),
            (Some(400), Some("bad-document-id")),
            (Some(404), Some("unknown-person")),
            (None, None),
        ]
    );
    assert!(errors[0].to_string().contains("ffffffff"), "{}", errors[0]);
    assert!(
        matches!(&errors[3], ClientError::Decode { path, .. } if path.ends_with("/state")),
        "{:?}",
        errors[3]
    );
    assert!(errors.iter().all(|e| !e.is_unreachable()));

    // A data directory whose node never started, and an address nobody listens on.
    let empty = tempfile::tempdir().unwrap();
    let dir = empty.path().to_owned();
    let (never, closed) = off(move || {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        (
            Client::of_dir(&dir).status().expect_err("not running"),
            Client::new(&closed.to_string(), TOKEN)
                .status()
                .expect_err("nobody listens"),
        )
    })
    .await;
    assert!(never.is_unreachable() && closed.is_unreachable());
    let said = never.to_string();
    assert!(
        said.contains("is not running") && said.contains("node run"),
        "{said}"
    );
}
