//! `linli testnet` end to end, as an administrator would run it: real `linli node run` processes
//! on 127.0.0.1, started, loaded, partitioned, killed, restarted and checked through the CLI.
//!
//! The default tests keep to about a minute of wall time; the soak (many partitions and kills
//! over minutes) runs only with `LINLI_SOAK=1` (length: `LINLI_SOAK_SECS`, default 300).

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use linli_tests::linli_bin;
use serde_json::Value;

fn city_topology() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/testnet/city.toml")
}

/// Run `linli testnet <args> --dir DIR`, returning its output whatever the exit code.
fn testnet(dir: &Path, args: &[&str]) -> Output {
    Command::new(linli_bin())
        .arg("testnet")
        .args(args)
        .arg("--dir")
        .arg(dir)
        .stdin(Stdio::null())
        .output()
        .expect("running linli testnet")
}

/// Run it and require success; its stdout as JSON if it printed JSON.
fn ok(dir: &Path, args: &[&str]) -> Value {
    let out = testnet(dir, args);
    assert!(
        out.status.success(),
        "linli testnet {args:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or(Value::Null)
}

/// A testnet that is stopped (`down`) when the test ends, passed or failed.
struct Net {
    dir: Option<tempfile::TempDir>,
    path: PathBuf,
}

impl Net {
    fn up(topology: &Path) -> (Net, Duration) {
        let dir = tempfile::Builder::new()
            .prefix("linli-testnet-")
            .tempdir()
            .expect("a temporary directory");
        let started = Instant::now();
        let net = Net {
            path: dir.path().to_owned(),
            dir: Some(dir),
        };
        ok(
            net.path(),
            &["up", "--topology", &topology.display().to_string()],
        );
        (net, started.elapsed())
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        let out = testnet(self.path(), &["down"]);
        if !out.status.success() {
            eprintln!(
                "testnet down failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        if std::thread::panicking()
            && let Some(dir) = self.dir.take()
        {
            // Keep the data directories and logs of a failed run.
            eprintln!("kept {} for inspection", dir.keep().display());
        }
    }
}

fn load(dir: &Path, ops: u32) -> Value {
    let r = ok(dir, &["load", "--ops", &ops.to_string(), "--json"]);
    eprintln!(
        "load: {} of {} acknowledged, {:.0} ops/s, {} refused, {} unreachable",
        r["acked"], r["attempted"], r["ops_per_s"], r["refused"], r["unreachable"]
    );
    assert_eq!(r["unreachable"], 0, "every node is up: {r}");
    let acked = r["acked"].as_u64().unwrap_or(0);
    assert!(
        acked >= u64::from(ops) * 95 / 100,
        "at most a few refusals: {r}"
    );
    r
}

/// The 13-node city: load, one street cut off from the district, load on both sides, heal,
/// check — converged, nothing acknowledged lost, no scope leaks.
#[test]
fn city_partition_heal_check() {
    let (net, t_up) = Net::up(&city_topology());
    let dir = net.path();
    eprintln!("up: 13 nodes in {t_up:?}");
    let status = ok(dir, &["status", "--json"]);
    let nodes = status["nodes"].as_array().expect("nodes");
    assert_eq!(nodes.len(), 13);
    for n in nodes {
        assert_eq!(n["up"], true, "{n}");
        assert!(n["peers"].as_u64().unwrap_or(0) >= 1, "{n}");
        assert!(n["documents"].as_u64().unwrap_or(0) >= 2, "{n}");
        assert!(n["data_dir"].is_string() && n["api"].is_string() && n["kind"].is_string());
    }

    load(dir, 500);
    ok(
        dir,
        &[
            "partition",
            "tiedong/jiefang",
            "--from",
            "tiedong",
            "--json",
        ],
    );
    load(dir, 200);
    // While cut, the check must see the two sides apart and say so with exit code 3.
    let out = testnet(dir, &["check", "--within", "2", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "a partitioned city is not converged"
    );
    let report: Value = serde_json::from_slice(&out.stdout).expect("check --json");
    assert_eq!(report["converged"], false);
    assert!(
        report["n_missing"].as_u64().unwrap_or(0) > 0,
        "edits on one side are missing on the other: {report}"
    );

    ok(dir, &["heal"]);
    let report = ok(dir, &["check", "--json"]);
    eprintln!(
        "after heal: converged in {} ms; {} acknowledged edits all present on {} documents",
        report["settle_ms"], report["n_acked"], report["n_documents"]
    );
    assert_eq!(report["ok"], true, "{report}");
    assert_eq!(report["n_scope_leaks"], 0);
    assert!(report["n_acked"].as_u64().unwrap_or(0) >= 665);
}

/// Kill -9 a community node during load, restart it: nothing acknowledged is lost.
#[test]
fn killed_community_loses_nothing_acknowledged() {
    let (net, _) = Net::up(&city_topology());
    let dir = net.path();
    let unit = "tiedong/zhanqian/xingfu";
    let load = Command::new(linli_bin())
        .args([
            "testnet", "load", "--ops", "400", "--rate", "80", "--json", "--dir",
        ])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting the load");
    std::thread::sleep(Duration::from_millis(1_500));
    let killed = ok(dir, &["kill", unit, "--json"]);
    assert!(killed["killed"].is_u64(), "{killed}");
    std::thread::sleep(Duration::from_millis(1_000));
    let restarted = ok(dir, &["restart", unit, "--json"]);
    eprintln!(
        "restarted {unit}: connected to its street after {} ms",
        restarted["connected_after_ms"]
    );
    let out = load.wait_with_output().expect("the load finishes");
    assert!(
        out.status.success(),
        "load: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let r: Value = serde_json::from_slice(&out.stdout).expect("load --json");
    eprintln!(
        "load: {} acknowledged, {} unreachable while {unit} was down",
        r["acked"], r["unreachable"]
    );
    assert!(r["acked"].as_u64().unwrap_or(0) > 300, "{r}");
    let report = ok(dir, &["check", "--json"]);
    eprintln!(
        "check: converged in {} ms, {} acknowledged edits present",
        report["settle_ms"], report["n_acked"]
    );
    assert_eq!(report["ok"], true, "{report}");
}

/// Many partitions and kills over minutes; set LINLI_SOAK=1 to run it.
#[test]
fn soak() {
    if std::env::var("LINLI_SOAK").as_deref() != Ok("1") {
        eprintln!(
            "soak skipped: run it with LINLI_SOAK=1 [LINLI_SOAK_SECS=300] cargo test -p linli-tests --test testnet soak -- --nocapture"
        );
        return;
    }
    let secs: u64 = std::env::var("LINLI_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    let (net, _) = Net::up(&city_topology());
    let dir = net.path();
    let streets = ["tiedong/jiefang", "tiedong/zhanqian", "tiedong/yuanlin"];
    let communities = [
        "tiedong/jiefang/shengli",
        "tiedong/jiefang/qianjin",
        "tiedong/zhanqian/yangguang",
        "tiedong/yuanlin/kangle",
        "tiedong/yuanlin/anning",
    ];
    let start = Instant::now();
    let mut round = 0usize;
    let mut settle_ms = Vec::new();
    while start.elapsed() < Duration::from_secs(secs) {
        round += 1;
        let street = streets[round % streets.len()];
        let victim = if round.is_multiple_of(2) {
            communities[round % communities.len()]
        } else {
            streets[(round + 1) % streets.len()]
        };
        eprintln!("round {round}: cut {street} from tiedong, kill {victim}");
        ok(dir, &["partition", street, "--from", "tiedong"]);
        let load = Command::new(linli_bin())
            .args([
                "testnet", "load", "--ops", "300", "--rate", "60", "--json", "--dir",
            ])
            .arg(dir)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting the load");
        std::thread::sleep(Duration::from_millis(1_000 + (round as u64 % 3) * 700));
        ok(dir, &["kill", victim]);
        std::thread::sleep(Duration::from_millis(800));
        ok(dir, &["restart", victim]);
        let out = load.wait_with_output().expect("the load finishes");
        assert!(out.status.success());
        ok(dir, &["heal"]);
        let report = ok(dir, &["check", "--json"]);
        assert_eq!(report["ok"], true, "round {round}: {report}");
        settle_ms.push(report["settle_ms"].as_u64().unwrap_or(0));
        eprintln!(
            "round {round}: ok, converged in {} ms, {} acknowledged edits present",
            report["settle_ms"], report["n_acked"]
        );
    }
    settle_ms.sort_unstable();
    eprintln!(
        "soak: {round} rounds in {:?}; convergence after heal: median {} ms, max {} ms",
        start.elapsed(),
        settle_ms.get(settle_ms.len() / 2).copied().unwrap_or(0),
        settle_ms.last().copied().unwrap_or(0)
    );
}
