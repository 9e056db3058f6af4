//! The `linli` binary end to end, as its users drive it: a district, a street and a community set
//! up with `init`, `join`, `person add`, `cert issue`/`import` and `unit add`, three real
//! `linli node run` processes on loopback, and the record commands walked through what each
//! level does (DOMAIN.md): admission of a task, a convention filed and changed, minutes, visits
//! and their coverage, a whistle answered and rated, the overview, and `audit` / `verify` on
//! every node. Also snapshots of `--help`, so changes to what users read are deliberate.
//!
//! One test binary (STYLE.md 12); the network test takes about half a minute in debug.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use expect_test::expect;
use serde_json::Value;

/// How long any one wait (a node starting, a document syncing) may take before the test fails.
const WAIT: Duration = Duration::from_secs(40);

/// A month in the past, so visit dates and the coverage snapshot do not depend on today.
const MONTH: &str = "2025-11";

// ----- running linli -----

fn linli(dir: &Path) -> Command {
    let mut c = Command::cargo_bin("linli").expect("the linli binary is built for tests");
    c.arg("--data-dir")
        .arg(dir)
        .env_remove("LINLI_DATA_DIR")
        .env("NO_COLOR", "1")
        .env("COLUMNS", "100");
    c
}

/// Run `linli --data-dir DIR ARGS…`, require success, return stdout.
fn ok(dir: &Path, args: &[&str]) -> String {
    let out = linli(dir).args(args).output().expect("running linli");
    assert!(
        out.status.success(),
        "`linli --data-dir {} {}` failed ({}):\nstderr:\n{}\nstdout:\n{}",
        dir.display(),
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stdout).expect("stdout is UTF-8")
}

/// Run with `--json` and parse stdout.
fn json(dir: &Path, args: &[&str]) -> Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    let text = ok(dir, &all);
    serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("`linli {args:?}` gave no JSON ({e}):\n{text}"))
}

/// Run, require failure with `code`, return stderr.
fn fails(dir: &Path, args: &[&str], code: i32) -> String {
    let out = linli(dir).args(args).output().expect("running linli");
    assert_eq!(
        out.status.code(),
        Some(code),
        "`linli {}` should exit {code}:\nstderr:\n{}\nstdout:\n{}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8(out.stderr).expect("stderr is UTF-8")
}

/// Poll `f` until it gives a value; fail with `what` after [`WAIT`].
fn wait_for<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            start.elapsed() < WAIT,
            "timed out after {WAIT:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Like [`json`], but `None` when the command fails (the node may not hold the document yet).
fn try_json(dir: &Path, args: &[&str]) -> Option<Value> {
    let out = linli(dir).arg("--json").args(args).output().ok()?;
    if !out.status.success() {
        return None;
    }
    serde_json::from_slice(&out.stdout).ok()
}

// ----- the network -----

/// The node processes of a test, stopped when it ends, also when it panics (then their logs
/// are printed, since they usually say why).
#[derive(Debug, Default)]
struct Nodes {
    running: Vec<(PathBuf, Child)>,
}

impl Nodes {
    /// Start `linli node run` on `dir` and wait until its API answers.
    fn start(&mut self, dir: &Path) {
        let log = File::create(log_path(dir)).expect("creating the node log");
        let child = std::process::Command::new(assert_cmd::cargo::cargo_bin("linli"))
            .arg("--data-dir")
            .arg(dir)
            .args(["node", "run"])
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("starting linli node run");
        self.running.push((dir.to_owned(), child));
        wait_for(&format!("the node at {} to start", dir.display()), || {
            dir.join("peer.json").exists().then_some(())?;
            try_json(dir, &["status"])
        });
    }
}

fn log_path(dir: &Path) -> PathBuf {
    dir.with_extension("log")
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for (dir, child) in &mut self.running {
            let _ = child.kill();
            let _ = child.wait();
            if std::thread::panicking() {
                let log = std::fs::read_to_string(log_path(dir)).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(30).collect();
                eprintln!("--- last lines of the log of {} ---", dir.display());
                for l in tail.iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
    }
}

/// `/ip4/…/tcp/…/p2p/<peer id>` of a running node, from its `peer.json`.
fn dial_addr(dir: &Path) -> String {
    let text = std::fs::read_to_string(dir.join("peer.json")).expect("peer.json of a running node");
    let p: Value = serde_json::from_str(&text).expect("peer.json is JSON");
    format!(
        "{}/p2p/{}",
        p["listen"][0].as_str().expect("a listen address"),
        p["peer_id"].as_str().expect("a peer id")
    )
}

/// Anti-entropy every second instead of every 30, so the test does not wait on it.
fn sync_fast(dir: &Path) {
    let path = dir.join("config.toml");
    let text = std::fs::read_to_string(&path).expect("config.toml");
    let fast = text.replace(
        "anti_entropy_interval_ms = 30000",
        "anti_entropy_interval_ms = 1000",
    );
    assert_ne!(
        text, fast,
        "config.toml has the default anti-entropy interval"
    );
    std::fs::write(&path, fast).expect("writing config.toml");
}

fn person_key(dir: &Path, handle: &str) -> String {
    json(dir, &["person", "add", handle])["key"]
        .as_str()
        .expect("a key")
        .to_owned()
}

/// Certify `key` on the district's running node as its root, writing the certificate to a file.
fn certify(district: &Path, key: &str, unit: &str, role: &str, holder: &str) -> PathBuf {
    let out = district.with_file_name(format!("{holder}.cert"));
    ok(
        district,
        &[
            "--as",
            "root",
            "cert",
            "issue",
            "--subject",
            key,
            "--unit",
            unit,
            "--role",
            role,
            "--holder",
            holder,
            "--out",
            out.to_str().expect("UTF-8 path"),
        ],
    );
    out
}

fn n_peers(dir: &Path) -> u64 {
    try_json(dir, &["status"]).map_or(0, |s| s["peers"].as_u64().unwrap_or(0))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key} in {v}"))
}

// ----- the walk -----

#[test]
fn district_street_and_community_work_through_the_cli() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let district = tmp.path().join("tiedong");
    let street = tmp.path().join("jiefang");
    let community = tmp.path().join("shengli");
    let (d, s, c) = (district.as_path(), street.as_path(), community.as_path());
    let mut nodes = Nodes::default();
    let net = ["--listen", "/ip4/127.0.0.1/tcp/0", "--no-mdns"];

    // District: a new network; its people are made before the node starts (keys load at start).
    let mut init = vec![
        "init",
        "--network-name",
        "铁东区邻里网",
        "--unit",
        "tiedong",
        "--unit-name",
        "铁东区",
    ];
    init.extend(net);
    ok(d, &init);
    sync_fast(d);
    let reviewer = person_key(d, "reviewer");
    let approver = person_key(d, "approver");
    nodes.start(d);
    let units = json(d, &["unit", "list"]);
    assert_eq!(
        units[0]["id"], "tiedong",
        "the top unit comes from the genesis: {units}"
    );
    // A community under a street that is not registered yet is refused, and says why.
    let stderr = fails(
        d,
        &[
            "--as",
            "root",
            "unit",
            "register",
            "tiedong/jiefang/shengli",
            "--name",
            "胜利社区",
            "--kind",
            "community",
        ],
        1,
    );
    assert!(stderr.contains("register the parent first"), "{stderr}");
    ok(
        d,
        &[
            "--as",
            "root",
            "unit",
            "register",
            "tiedong/jiefang",
            "--name",
            "解放街道",
            "--kind",
            "street",
        ],
    );
    ok(
        d,
        &[
            "--as",
            "root",
            "unit",
            "add",
            "tiedong/jiefang/shengli",
            "--name",
            "胜利社区",
            "--kind",
            "community",
        ],
    );
    certify(d, &reviewer, "tiedong", "reviewer", "民政局张审");
    certify(d, &approver, "tiedong", "approver", "区政府李批");

    // Street: joins with the district as bootstrap peer.
    let genesis = district.join("genesis.json");
    let genesis = genesis.to_str().expect("UTF-8 path");
    let d_addr = dial_addr(d);
    let mut join = vec![
        "join",
        "--genesis",
        genesis,
        "--unit",
        "tiedong/jiefang",
        "--bootstrap",
        &d_addr,
    ];
    join.extend(net);
    let street_key = json(s, &join)["node_key"]
        .as_str()
        .expect("node key")
        .to_owned();
    sync_fast(s);
    let street_approver = person_key(s, "approver");
    let certs = [
        certify(d, &street_key, "tiedong/jiefang", "node", "解放街道节点"),
        certify(
            d,
            &street_approver,
            "tiedong/jiefang",
            "approver",
            "街道王审",
        ),
    ];
    let mut import = vec!["cert", "import"];
    import.extend(certs.iter().map(|p| p.to_str().expect("UTF-8 path")));
    ok(s, &import);
    nodes.start(s);

    // Community: joins under the street. It also dials the district: a document the district
    // made reaches it through the street only if it already trusts the district's node key,
    // which travels in the district's hello (reported as an engine gap).
    let s_addr = dial_addr(s);
    let mut join = vec![
        "join",
        "--genesis",
        genesis,
        "--unit",
        "tiedong/jiefang/shengli",
        "--bootstrap",
        &s_addr,
        "--bootstrap",
        &d_addr,
    ];
    join.extend(net);
    let community_key = json(c, &join)["node_key"]
        .as_str()
        .expect("node key")
        .to_owned();
    sync_fast(c);
    let wangfang = person_key(c, "wangfang");
    let liqiang = person_key(c, "liqiang");
    let community_unit = "tiedong/jiefang/shengli";
    let certs = [
        certify(d, &community_key, community_unit, "node", "胜利社区节点"),
        certify(d, &wangfang, community_unit, "writer", "王芳"),
        certify(d, &liqiang, community_unit, "writer", "李强"),
    ];
    let mut import = vec!["cert", "import"];
    import.extend(certs.iter().map(|p| p.to_str().expect("UTF-8 path")));
    ok(c, &import);
    nodes.start(c);
    for dir in [d, s, c] {
        wait_for(&format!("{} to have a peer", dir.display()), || {
            (n_peers(dir) >= 1).then_some(())
        });
    }

    admission(d, c);
    convention(s, c);
    minutes(c);
    visits(s, c);
    whistle(d, c);
    overview(d, s);

    for dir in [d, s, c] {
        let list = json(dir, &["doc", "list", "--kind", "task-list"]);
        for doc in list.as_array().expect("a list") {
            ok(dir, &["audit", str_of(doc, "id")]);
        }
        ok(dir, &["verify"]);
    }
    drop(nodes);
}

/// District request → review → approval → the community admits it → in progress → done.
fn admission(d: &Path, c: &Path) {
    let request = ok(
        d,
        &[
            "task",
            "request",
            "--title",
            "电动自行车入户充电排查",
            "--department",
            "区消防救援大队",
            "--legal-basis",
            "《消防法》第三十二条",
            "--funding",
            "区财政专项经费2万元",
            "--staffing",
            "消防网格员2名",
            "--target",
            "tiedong/jiefang/shengli",
            "--due",
            "2099-12-31",
        ],
    );
    let request = request.trim();
    let stderr = fails(d, &["--as", "approver", "task", "approve", request], 1);
    assert!(stderr.contains("has not been reviewed yet"), "{stderr}");
    let stderr = fails(d, &["task", "review", "nosuchrequest"], 1);
    assert!(stderr.contains("no request \"nosuchrequest\""), "{stderr}");
    ok(
        d,
        &[
            "--as",
            "reviewer",
            "task",
            "review",
            &request[..6],
            "--note",
            "法律依据充分",
        ],
    );
    let listed = json(d, &["task", "list"]);
    assert_eq!(
        listed["requests"][0]["state"], "waiting-for-approval",
        "{listed}"
    );
    ok(d, &["--as", "approver", "task", "approve", request]);
    let listed = json(d, &["task", "list"]);
    assert_eq!(listed["requests"][0]["state"], "approved", "{listed}");
    assert_eq!(listed["requests"][0]["reviewed"]["by"], "民政局张审");

    let task = wait_for("the approved task to be admitted at the community", || {
        let list = try_json(c, &["task", "list"])?;
        list["tasks"]
            .as_array()?
            .iter()
            .find(|t| t["admission"]["request_id"] == request)
            .cloned()
    });
    assert_eq!(task["category"], "admitted");
    assert_eq!(task["status"], "open");
    assert_eq!(task["admission"]["approved"]["by"], "区政府李批");
    let id = str_of(&task, "id");
    ok(
        c,
        &["--as", "wangfang", "task", "assign", id, "--to", "李强"],
    );
    ok(
        c,
        &[
            "--as",
            "liqiang",
            "task",
            "update",
            id,
            "--status",
            "in-progress",
        ],
    );
    assert_eq!(
        json(c, &["task", "list", "--open"])["tasks"][0]["status"],
        "in-progress"
    );
    ok(
        c,
        &[
            "--as",
            "liqiang",
            "task",
            "update",
            id,
            "--status",
            "done",
            "--note",
            "已排查3栋楼",
        ],
    );
    let list = json(c, &["task", "list"]);
    let t = &list["tasks"][0];
    assert_eq!(
        (&t["status"], &t["assignee"], &t["note"]),
        (&"done".into(), &"李强".into(), &"已排查3栋楼".into())
    );
    assert_eq!(
        json(c, &["task", "list", "--open"])["tasks"],
        Value::Array(vec![])
    );
    let table = ok(c, &["task", "list"]);
    assert!(
        table.contains("准入事项") && table.contains("民政局张审"),
        "{table}"
    );
}

/// The community drafts a convention, the street files it, an edit makes it "changed since
/// filing".
fn convention(s: &Path, c: &Path) {
    let id = ok(
        c,
        &[
            "--as",
            "wangfang",
            "convention",
            "new",
            "--title",
            "胜利社区居民公约",
        ],
    );
    let id = id.trim();
    ok(
        c,
        &[
            "--as",
            "wangfang",
            "convention",
            "edit",
            id,
            "--article",
            "1",
            "--title",
            "环境卫生",
            "--text",
            "垃圾分类投放。",
        ],
    );
    ok(
        c,
        &[
            "--as",
            "wangfang",
            "convention",
            "edit",
            id,
            "--article",
            "2",
            "--title",
            "公共设施",
            "--text",
            "爱护公共设施。",
            "--note",
            "新增第二条",
        ],
    );
    ok(
        c,
        &[
            "convention",
            "adopt",
            id,
            "--method",
            "residents-meeting",
            "--for",
            "86",
            "--against",
            "3",
            "--abstain",
            "5",
        ],
    );
    let shown = json(c, &["convention", "show", id]);
    assert_eq!(shown["filing"]["state"], "not-filed", "{shown}");
    assert_eq!(shown["articles"][1]["title"], "公共设施");
    // The street files the version the community has now: wait until it holds exactly that.
    let heads = json(c, &["doc", "show", id])["doc"]["heads"].clone();
    wait_for(
        "the street to hold the convention as the community has it",
        || (try_json(s, &["doc", "show", id])?["doc"]["heads"] == heads).then_some(()),
    );
    ok(
        s,
        &[
            "--as",
            "approver",
            "attest",
            "file",
            id,
            "--note",
            "经审查合法",
        ],
    );
    wait_for("the community to see its convention filed", || {
        (try_json(c, &["convention", "show", id])?["filing"]["state"] == "filed").then_some(())
    });
    let text = ok(c, &["convention", "show", id]);
    assert!(text.contains("filing: filed by 街道王审"), "{text}");
    ok(
        c,
        &[
            "--as",
            "wangfang",
            "convention",
            "edit",
            id,
            "--article",
            "1",
            "--text",
            "垃圾分类投放,不乱扔杂物。",
        ],
    );
    let shown = json(c, &["convention", "show", id]);
    assert_eq!(shown["filing"]["state"], "changed-since-filing", "{shown}");
    let text = ok(c, &["convention", "show", id]);
    assert!(text.contains("filing: changed since filing"), "{text}");
    assert!(text.contains("+垃圾分类投放,不乱扔杂物。"), "{text}");
}

fn minutes(c: &Path) {
    let id = ok(
        c,
        &[
            "--as",
            "wangfang",
            "minutes",
            "new",
            "--title",
            "加装电梯议事会",
            "--form",
            "council",
            "--topic",
            "3号楼加装电梯",
            "--source",
            "micro-wish",
            "--held-at",
            "2025-11-05",
            "--meeting",
            "party-residents-council",
            "--location",
            "社区活动室",
        ],
    );
    let id = id.trim();
    ok(
        c,
        &[
            "--as",
            "wangfang",
            "minutes",
            "participant",
            id,
            "--name",
            "张大爷",
            "--role",
            "居民代表",
        ],
    );
    ok(
        c,
        &[
            "--as",
            "wangfang",
            "minutes",
            "opinion",
            id,
            "--by",
            "张大爷",
            "--text",
            "一楼住户担心采光",
        ],
    );
    ok(
        c,
        &[
            "--as", "wangfang", "minutes", "stage", id, "--to", "resolve",
        ],
    );
    ok(
        c,
        &[
            "--as",
            "wangfang",
            "minutes",
            "decide",
            id,
            "--text",
            "同意加装,费用按楼层分摊",
            "--for",
            "18",
            "--against",
            "2",
            "--abstain",
            "1",
        ],
    );
    ok(c, &["--as", "wangfang", "minutes", "publish", id]);
    let stderr = fails(
        c,
        &[
            "minutes",
            "decide",
            id,
            "--text",
            "再议",
            "--for",
            "1",
            "--against",
            "0",
            "--abstain",
            "0",
        ],
        1,
    );
    assert!(stderr.contains("published"), "{stderr}");
    let shown = json(c, &["minutes", "show", id]);
    assert_eq!(shown["published"], true);
    assert_eq!(shown["stage"], "resolve");
    assert_eq!(shown["meta"]["meeting"], "party-residents-council");
    let decisions: Vec<&Value> = shown["decisions"]
        .as_object()
        .expect("decisions")
        .values()
        .collect();
    assert_eq!(decisions.len(), 1);
    assert_eq!(decisions[0]["votes_for"], 18);
    let text = ok(c, &["minutes", "show", id]);
    assert!(
        text.contains("同意加装,费用按楼层分摊") && text.contains("党群议事会"),
        "{text}"
    );
}

/// A roster of three imported from CSV, two visits by different workers: coverage 2/3.
fn visits(s: &Path, c: &Path) {
    let csv_path = c.with_file_name("roster.csv");
    std::fs::write(
        &csv_path,
        "户号,户名,负责人,类型,网格,地址\nh-0301,张大爷家,王芳,住户,3,胜利街12号301\nh-0302,李阿姨家,王芳,,3,胜利街12号302\ns-01,好邻居超市,李强,商户,3,胜利街14号\n",
    )
    .expect("writing the roster");
    let report = json(
        c,
        &[
            "--as",
            "wangfang",
            "visit",
            "import",
            csv_path.to_str().expect("UTF-8"),
            "--month",
            MONTH,
        ],
    );
    assert_eq!(
        (
            report["imported"].as_u64(),
            report["bad_rows"].as_array().map(Vec::len)
        ),
        (Some(3), Some(0))
    );
    ok(
        c,
        &[
            "--as",
            "wangfang",
            "visit",
            "add",
            "h-0301",
            "--worker",
            "王芳",
            "--date",
            "2025-11-05",
            "--need",
            "独居老人需要助餐",
            "--follow-up",
            "联系助餐点",
        ],
    );
    ok(
        c,
        &[
            "--as",
            "liqiang",
            "visit",
            "add",
            "s-01",
            "--worker",
            "李强",
            "--date",
            "2025-11-06",
            "--mode",
            "phone",
        ],
    );
    let stderr = fails(
        c,
        &[
            "visit",
            "add",
            "h-9999",
            "--worker",
            "王芳",
            "--date",
            "2025-11-06",
        ],
        1,
    );
    assert!(
        stderr.contains("household h-9999 is not assigned"),
        "{stderr}"
    );

    let cov = json(c, &["visit", "coverage", "--month", MONTH]);
    let unit = &cov["units"][0];
    assert_eq!(
        (unit["visited"].as_u64(), unit["assigned"].as_u64()),
        (Some(2), Some(3)),
        "{cov}"
    );
    assert_eq!(unit["workers"][1]["unvisited"][0]["household_id"], "h-0302");
    expect![[r#"
        Visit coverage, 2025-11
        ┌───────────────────────────────────────────────┐
        │ worker   visited   %        not visited       │
        ╞═══════════════════════════════════════════════╡
        │ 李强     1/1       100.0%   –                 │
        │ 王芳     1/2       50.0%    李阿姨家 (h-0302) │
        │ total    2/3       66.7%    1                 │
        └───────────────────────────────────────────────┘
    "#]]
    .assert_eq(&ok(c, &["visit", "coverage", "--month", MONTH]));

    let text = ok(
        c,
        &["visit", "coverage", "--month", MONTH, "--format", "csv"],
    );
    let mut reader = csv::Reader::from_reader(text.as_bytes());
    let header: Vec<String> = reader
        .headers()
        .expect("a header")
        .iter()
        .map(str::to_owned)
        .collect();
    assert_eq!(
        header,
        [
            "month",
            "unit",
            "unit_name",
            "worker",
            "assigned",
            "visited",
            "percent",
            "unvisited_ids",
            "unvisited_names"
        ]
    );
    let rows: Vec<Vec<String>> = reader
        .records()
        .map(|r| r.expect("a CSV row").iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(
        rows,
        [
            [
                "2025-11",
                "tiedong/jiefang/shengli",
                "胜利社区",
                "李强",
                "1",
                "1",
                "100.0",
                "",
                ""
            ],
            [
                "2025-11",
                "tiedong/jiefang/shengli",
                "胜利社区",
                "王芳",
                "2",
                "1",
                "50.0",
                "h-0302",
                "李阿姨家"
            ],
        ]
    );
    let listed = json(c, &["visit", "list", "--month", MONTH]);
    assert_eq!(listed.as_array().map(Vec::len), Some(2));

    // The street sees the community's month, one row per community.
    wait_for("the street to see the community's visits", || {
        let cov = try_json(s, &["visit", "coverage", "--month", MONTH])?;
        let u = &cov["units"][0];
        (u["unit"] == "tiedong/jiefang/shengli" && u["visited"] == 2).then_some(())
    });
    let table = ok(s, &["visit", "coverage", "--month", MONTH]);
    assert!(
        table.contains("胜利社区") && table.contains("66.7%"),
        "{table}"
    );
}

/// The community blows the whistle to the district, the district reports in, the community
/// rates the response.
fn whistle(d: &Path, c: &Path) {
    let id = ok(
        c,
        &[
            "--as",
            "wangfang",
            "whistle",
            "raise",
            "--title",
            "路灯损坏",
            "--description",
            "5号楼前路灯不亮",
            "--to",
            "tiedong",
        ],
    );
    let id = id.trim();
    let stderr = fails(c, &["whistle", "rate", id, "--score", "4"], 1);
    assert!(stderr.contains("no response yet"), "{stderr}");
    let row = wait_for("the district to see the whistle", || {
        let rows = try_json(d, &["whistle", "list", "--waiting"])?;
        rows.as_array()?.iter().find(|r| r["id"] == id).cloned()
    });
    assert_eq!(row["to_unit_name"], "铁东区");
    assert_eq!(row["raised_by"], "王芳");
    let doc = str_of(&row, "doc");
    ok(
        d,
        &["whistle", "respond", &doc[..12], id, "--text", "已安排维修"],
    );
    wait_for("the community to see the district's response", || {
        let rows = try_json(c, &["whistle", "list"])?;
        let r = rows.as_array()?.iter().find(|r| r["id"] == id)?.clone();
        (r["waiting"] == false).then_some(())
    });
    ok(
        c,
        &[
            "whistle",
            "rate",
            id,
            "--score",
            "4",
            "--comment",
            "响应及时",
        ],
    );
    ok(c, &["whistle", "resolve", id]);
    let rows = json(c, &["whistle", "list"]);
    let r = rows
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["id"] == id)
        .expect("the whistle");
    assert_eq!(r["rating"]["score"], 4);
    assert_eq!(r["responses"][0]["unit"], "tiedong");
}

/// The district's and the street's overview have a row for the community with what it did.
fn overview(d: &Path, s: &Path) {
    for dir in [d, s] {
        let row = wait_for("the overview to show the community's month", || {
            let rows = try_json(dir, &["overview", "--month", MONTH])?;
            let row = rows
                .as_array()?
                .iter()
                .find(|r| r["unit"] == "tiedong/jiefang/shengli")?
                .clone();
            (row["visits_visited"] == 2 && row["conventions_changed_since_filing"] == 1)
                .then_some(row)
        });
        assert_eq!(row["unit_name"], "胜利社区");
        assert_eq!(row["visits_assigned"], 3);
        assert_eq!(row["tasks_open"], 0);
        assert_eq!(row["whistles_waiting"], 0);
        assert_eq!(row["connected"], true);
    }
    let table = ok(d, &["overview", "--month", MONTH]);
    assert!(
        table.contains("解放街道") && table.contains("2/3 66.7%"),
        "{table}"
    );
}

// ----- what users read -----

fn help(args: &[&str]) -> String {
    let out = Command::cargo_bin("linli")
        .expect("the linli binary")
        .args(args)
        .env_remove("LINLI_DATA_DIR")
        .env("COLUMNS", "100")
        .output()
        .expect("running linli");
    assert!(out.status.success(), "{args:?}");
    String::from_utf8(out.stdout).expect("UTF-8")
}

#[test]
fn help_for_linli() {
    expect![[r#"
        linli (邻里): signed, peer-to-peer records for communities, streets and districts

        Usage: linli [OPTIONS] <COMMAND>

        Commands:
          init         Create a new network: genesis, the top unit, its administrator and node keys
          join         Set up a node of an existing network from its genesis file
          unit         Units of the network (an administrator registers the units below theirs)
          person       People who work on this node: their keys
          cert         Certificates: who acts for which unit, in which role
          node         Run the node
          status       What this node is and holds
          peers        Peers of this node
          doc          Documents
          overview     For street and district officers: one row per unit below
          convention   Residents' conventions (居民公约)
          minutes      Consultation minutes (协商议事记录)
          task         Tasks and admission of work outside the lists (准入)
          whistle      Whistles raised upward (吹哨) and responses (报到)
          visit        Monthly household visits (走访)
          attest       Sign a statement: file a convention, sign a checkpoint
          checkpoint   Checkpoints: compare this node's view with the district's
          audit        The signed history of a document: who, unit, role, when, verdict, approvals
          verify       Re-check the whole store; exits 3 if anything fails
          testnet      A real local network of node processes: start, watch, break, load, check, stop
          demo         Start the demo network with sample data; Ctrl-C stops it
          completions  Shell completions
          help         Print this message or the help of the given subcommand(s)

        Options:
              --data-dir <DIR>  The node's data directory [env: LINLI_DATA_DIR=]
              --json            Print JSON (stable field names) instead of tables
              --as <PERSON>     Which certified person of this node signs a write (a handle such as
                                `wangfang`, or a key id). Default: the node itself
          -h, --help            Print help
          -V, --version         Print version

        Examples:
          linli demo                                  start a demo network with sample data
          linli --data-dir ./shengli status           what this node is and holds
          linli --data-dir ./shengli visit coverage   who has not been visited this month
    "#]]
    .assert_eq(&help(&["--help"]));
}

#[test]
fn help_for_visit() {
    expect![[r#"
        Monthly household visits (走访)

        Usage: linli visit [OPTIONS] <COMMAND>

        Commands:
          assign    Assign a household or shop to a worker for the month (分包)
          add       Record a visit to an assigned household
          list      The month's visits
          coverage  Who has not been visited this month
          import    Import a household roster (CSV) with worker assignments into the month's log
          help      Print this message or the help of the given subcommand(s)

        Options:
              --data-dir <DIR>  The node's data directory [env: LINLI_DATA_DIR=]
              --json            Print JSON (stable field names) instead of tables
              --as <PERSON>     Which certified person of this node signs a write (a handle such as
                                `wangfang`, or a key id). Default: the node itself
          -h, --help            Print help
    "#]]
    .assert_eq(&help(&["visit", "--help"]));
}

#[test]
fn help_for_task() {
    expect![[r#"
        Tasks and admission of work outside the lists (准入)

        Usage: linli task [OPTIONS] <COMMAND>

        Commands:
          request  File a request to send work outside the lists down to communities (准入申请)
          review   Review a request (初审, civil affairs): sign `reviewed` over it
          approve  Approve a reviewed request (审批, party committee or government): sign `approved`
          reject   Refuse a request at review or approval: sign `rejected`
          add      Add a task from the unit's own lists (duty or assistance)
          assign   Give a task to a worker
          update   Move a task on: in-progress, done or cancelled
          list     This unit's tasks, and the requests on its list with their review and approval
          help     Print this message or the help of the given subcommand(s)

        Options:
              --data-dir <DIR>  The node's data directory [env: LINLI_DATA_DIR=]
              --json            Print JSON (stable field names) instead of tables
              --as <PERSON>     Which certified person of this node signs a write (a handle such as
                                `wangfang`, or a key id). Default: the node itself
          -h, --help            Print help
    "#]]
    .assert_eq(&help(&["task", "--help"]));
}

#[test]
fn every_record_subcommand_has_an_example() {
    for group in ["convention", "minutes", "task", "whistle", "visit"] {
        let text = help(&[group, "--help"]);
        let subcommands: Vec<&str> = text
            .lines()
            .skip_while(|l| !l.starts_with("Commands:"))
            .skip(1)
            .take_while(|l| l.starts_with("  "))
            // A wrapped description continues further in.
            .filter(|l| !l.starts_with("   "))
            .filter_map(|l| l.split_whitespace().next())
            .filter(|name| *name != "help")
            .collect();
        assert!(!subcommands.is_empty(), "{group}: {text}");
        for sub in subcommands {
            let text = help(&[group, sub, "--help"]);
            assert!(
                text.contains("Example"),
                "linli {group} {sub} --help has no example:\n{text}"
            );
        }
    }
    assert!(help(&["overview", "--help"]).contains("Example"));
}

#[test]
fn a_node_that_is_not_running_is_named_with_how_to_start_it() {
    let tmp = tempfile::tempdir().expect("a temporary directory");
    let dir = tmp.path().join("n");
    ok(
        &dir,
        &[
            "init",
            "--network-name",
            "测试网",
            "--unit",
            "test",
            "--unit-name",
            "测试区",
            "--no-mdns",
        ],
    );
    let stderr = fails(&dir, &["task", "list"], 1);
    assert!(
        stderr.contains("is not running") && stderr.contains("node run"),
        "{stderr}"
    );
    let stderr = fails(&dir, &["visit", "coverage", "--month", "2025-13"], 2);
    assert!(stderr.contains("not a month"), "{stderr}");
}
