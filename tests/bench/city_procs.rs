//! R4 (processes): the same heal measurement as [`crate::city`], on the 13-node city testnet of
//! `config/testnet/city.toml` — real `linli node run` processes (the release binary) on
//! 127.0.0.1 over TCP, started, partitioned and healed with `linli-testnet`, driven only through
//! each node's HTTP API.
//!
//! Per repetition: one hop (a visit acknowledged at 胜利社区 until 解放街道 shows the same heads),
//! the request round trip (median `GET /v1/status` at 解放街道), then 解放街道 is cut from the
//! district, both sides write (a visit at 胜利社区, a whistle in the district's task list), the
//! testnet is healed, and the time runs until every node that may hold one of the written
//! documents holds it with the same heads. Only those documents are polled, on those nodes.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use linli_crdt_model::doc::Scope;
use linli_crdt_model::kinds::{self, Kind};
use linli_crdt_model::unit::UnitId;
use linli_node::contract::{CreateDoc, DocFilter, DocSummary, Op, PeerInfo, Receipt};
use linli_testnet::client::Client;
use linli_testnet::net::par_map;
use linli_testnet::{State, Topology};

const DISTRICT: &str = "tiedong";
const STREET: &str = "tiedong/jiefang";
const COMMUNITY: &str = "tiedong/jiefang/shengli";
/// `GET /v1/status` requests per repetition for the round trip.
const RTT_SAMPLES: usize = 9;
/// Between polls of the nodes' APIs.
const POLL: Duration = Duration::from_millis(3);

/// One repetition's measurements, seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Rep {
    /// A visit acknowledged at 胜利社区 until 解放街道 shows the same heads.
    pub(crate) hop: f64,
    /// Median `GET /v1/status` round trip to 解放街道.
    pub(crate) rtt: f64,
    /// From `heal` until every holder of the written documents has the same heads.
    pub(crate) heal: f64,
    /// Where the heal time goes (seconds from the start of `heal`).
    pub(crate) parts: Parts,
}

/// The breakdown of one heal, seconds from the start of `heal`, seen through the APIs: when
/// `linli_testnet::heal` returned, when either end of the cut link (解放街道 – 铁东区) first lists
/// the other as connected, and when both list it with its unit (each end has accepted a hello).
/// A poller thread asks both ends' `GET /v1/peers` back to back while the heal runs; `None` if
/// it never saw the state before convergence.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Parts {
    pub(crate) heal_call: f64,
    pub(crate) connected: Option<f64>,
    pub(crate) hello: Option<f64>,
}

/// The release `linli` binary, built (or found up to date) in its own target directory,
/// `target/bench-linli`: building `linli-cli` in the bench's target directory would rebuild
/// libp2p with other features and ping-pong with the next build of the bench.
fn linli_release_bin() -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target").join("bench-linli");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let status = Command::new(cargo)
        .args(["build", "--release", "-p", "linli-cli", "--bin", "linli"])
        .arg("--target-dir")
        .arg(&target)
        .current_dir(&root)
        .status()
        .context("running cargo build for the linli binary")?;
    let bin = target.join("release").join("linli");
    if !status.success() || !bin.exists() {
        bail!(
            "building the release linli binary failed ({})",
            bin.display()
        );
    }
    Ok(bin)
}

/// With `LINLI_BENCH_R4_LOGS=DIR`, copy every node's `node.log` to `DIR/<unit>.log` (run with
/// `LINLI_TESTNET_LOG=info,linli_node::net=debug` to see the heal's steps with timestamps).
fn keep_logs(state: &State) {
    let Some(to) = std::env::var_os("LINLI_BENCH_R4_LOGS") else {
        return;
    };
    let to = PathBuf::from(to);
    let _ = std::fs::create_dir_all(&to);
    for n in &state.nodes {
        let name = n.unit.as_str().replace('/', "_");
        let _ = std::fs::copy(n.data_dir.join("node.log"), to.join(format!("{name}.log")));
    }
}

/// `down` the testnet when dropped, whatever happened.
struct Down<'a>(&'a Path);

impl Drop for Down<'_> {
    fn drop(&mut self) {
        if let Err(e) = linli_testnet::down(self.0) {
            eprintln!("R4 (processes): down failed: {e}");
        }
    }
}

fn api<T>(unit: &str, r: Result<T, linli_testnet::client::ApiError>) -> anyhow::Result<T> {
    r.with_context(|| format!("API of {unit}"))
}

fn heads(c: &Client, doc: &str) -> Option<Vec<String>> {
    let mut h = c.doc(doc).ok()?.summary.heads;
    h.sort();
    Some(h)
}

/// A document and the nodes (by index) that may hold it.
struct Watched {
    id: String,
    holders: Vec<usize>,
}

/// Whether every holder of every watched document has it, with the same heads.
fn converged(clients: &[Client], docs: &[Watched]) -> bool {
    let pairs: Vec<(usize, &str)> = docs
        .iter()
        .flat_map(|d| d.holders.iter().map(move |&i| (i, d.id.as_str())))
        .collect();
    let got = par_map(&pairs, |&(i, doc)| heads(&clients[i], doc));
    let mut k = 0;
    for d in docs {
        let first = &got[k];
        if first.is_none() || got[k..k + d.holders.len()].iter().any(|h| h != first) {
            return false;
        }
        k += d.holders.len();
    }
    true
}

fn wait(what: &str, within: Duration, mut done: impl FnMut() -> bool) -> anyhow::Result<f64> {
    let start = Instant::now();
    loop {
        if done() {
            return Ok(start.elapsed().as_secs_f64());
        }
        if start.elapsed() > within {
            bail!("R4 (processes): {what} not within {within:?}");
        }
        std::thread::sleep(POLL);
    }
}

fn visit(c: &Client, log: &str) -> anyhow::Result<Receipt> {
    let op = Op::VisitAdd {
        id: None,
        household_id: "h1".to_owned(),
        worker: "王芳".to_owned(),
        date: "2026-11-05".to_owned(),
        mode: kinds::visits::Mode::Door,
        needs: vec!["需要助餐".to_owned()],
        follow_up: None,
    };
    api(COMMUNITY, c.apply(log, &op, Some("wangfang")))
}

/// Up the city, run `reps` repetitions, and always take it down again.
pub(crate) fn run(reps: usize) -> anyhow::Result<Vec<Rep>> {
    let bin = linli_release_bin()?;
    let topology =
        Topology::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/testnet/city.toml"))?;
    let tmp = tempfile::tempdir().context("temp dir")?;
    let dir = tmp.path().join("city");
    let t = Instant::now();
    let started = linli_testnet::up(&topology, &dir, &bin, &mut |_| {});
    // `up` stops what it started when it fails; otherwise `down` on every way out.
    let state = started?;
    let dir = dir.canonicalize().context("testnet dir")?;
    let _down = Down(&dir);
    eprintln!(
        "R4 (processes): 13 nodes up in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    let t = Instant::now();
    let out = measure(&state, &dir, reps);
    eprintln!(
        "R4 (processes): {reps} repetitions in {:.1} s",
        t.elapsed().as_secs_f64()
    );
    if let Ok(reps) = &out {
        print_parts(&reps[1.min(reps.len())..]);
    }
    keep_logs(&state);
    out
}

fn measure(state: &State, dir: &Path, reps: usize) -> anyhow::Result<Vec<Rep>> {
    let clients: Vec<Client> = state
        .nodes
        .iter()
        .map(|n| linli_testnet::client::of(&n.data_dir))
        .collect();
    let find = |u: &str| {
        state
            .nodes
            .iter()
            .position(|n| n.unit.as_str() == u)
            .with_context(|| format!("{u} in the city"))
    };
    let (district, street, shengli) = (find(DISTRICT)?, find(STREET)?, find(COMMUNITY)?);
    let (dc, sc, cc) = (&clients[district], &clients[street], &clients[shengli]);

    // The community's visit log (created, one household assigned) and the district's task list.
    let log = api(
        COMMUNITY,
        cc.create_doc(
            &CreateDoc {
                kind: Kind::VisitLog,
                title: "胜利社区 2026-11 走访记录".to_owned(),
                scope: None,
                period: Some("2026-11".to_owned()),
                minutes: None,
            },
            Some("wangfang"),
        ),
    )?
    .id;
    let assign = Op::VisitAssign {
        household_id: "h1".to_owned(),
        assignment: kinds::visits::Assignment {
            worker: "王芳".to_owned(),
            household_name: "住户h1".to_owned(),
            kind: kinds::visits::HouseholdKind::Household,
            grid: None,
            address: "胜利路".to_owned(),
        },
    };
    api(COMMUNITY, cc.apply(&log, &assign, Some("wangfang")))?;
    let district_docs: Vec<DocSummary> = api(
        DISTRICT,
        dc.docs(&DocFilter {
            unit: Some(DISTRICT.to_owned()),
            ..DocFilter::default()
        }),
    )?;
    let tasks = district_docs
        .iter()
        .find(|d| d.kind == Kind::TaskList)
        .context("the district's task list")?
        .id
        .clone();
    let watched: Vec<Watched> = [(log.clone(), COMMUNITY), (tasks.clone(), DISTRICT)]
        .into_iter()
        .map(|(id, owner)| {
            let summary: DocSummary = api(owner, clients[find(owner)?].doc(&id))?.summary;
            let scope: Scope = summary
                .scope
                .parse()
                .map_err(|e| anyhow::anyhow!("scope {}: {e:?}", summary.scope))?;
            let owner = UnitId::new(owner).map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let holders = state
                .nodes
                .iter()
                .enumerate()
                .filter(|(_, n)| scope.may_hold(&owner, &n.unit))
                .map(|(i, _)| i)
                .collect();
            Ok(Watched { id, holders })
        })
        .collect::<anyhow::Result<_>>()?;
    wait("initial convergence", Duration::from_secs(60), || {
        converged(&clients, &watched)
    })?;

    let mut out = Vec::new();
    for rep in 0..reps {
        // One hop, connected: from the acknowledgement at the community to the street.
        let receipt = visit(cc, &log)?;
        let start = Instant::now();
        let want = vec![receipt.change.clone()];
        wait("one hop", Duration::from_secs(30), || {
            heads(sc, &log).as_ref() == Some(&want)
        })?;
        let hop = start.elapsed().as_secs_f64();
        if heads(cc, &log).as_ref() != Some(&want) {
            bail!("R4 (processes): the visit log at 胜利社区 has other heads than the edit");
        }
        wait("settle", Duration::from_secs(30), || {
            converged(&clients, &watched)
        })?;

        // The request round trip to the street.
        let mut rtt: Vec<f64> = Vec::new();
        for _ in 0..RTT_SAMPLES {
            let t = Instant::now();
            api(STREET, sc.status())?;
            rtt.push(t.elapsed().as_secs_f64());
        }
        let rtt = crate::measure::median(&rtt);

        // Cut 解放街道 from the district, write on both sides, heal.
        linli_testnet::partition(dir, &[STREET.to_owned()], &[DISTRICT.to_owned()])?;
        std::thread::sleep(Duration::from_millis(300));
        visit(cc, &log)?;
        let whistle = Op::WhistleRaise {
            id: Some(format!("w{rep}")),
            whistle: kinds::tasks::NewWhistle {
                title: "道路积水".to_owned(),
                description: "雨后积水严重".to_owned(),
                to_unit: DISTRICT.to_owned(),
                raised_by: "区".to_owned(),
            },
        };
        api(DISTRICT, dc.apply(&tasks, &whistle, None))?;
        std::thread::sleep(Duration::from_millis(500));
        if converged(&clients, &watched) {
            bail!("R4 (processes): the cut did not keep the sides apart");
        }
        let link = [
            (sc, state.nodes[district].peer_id.as_str()),
            (dc, state.nodes[street].peer_id.as_str()),
        ];
        if link.iter().any(|(c, p)| link_state(c, p).0) {
            bail!("R4 (processes): the cut link still shows as connected before heal");
        }
        let stop = AtomicBool::new(false);
        let seen = Mutex::new((None, None));
        let start = Instant::now();
        let (healed, heal_call, converged_at) = std::thread::scope(|s| {
            s.spawn(|| watch_link(&link, start, &stop, &seen));
            let result = (|| {
                let healed = linli_testnet::heal(dir)?;
                let heal_call = start.elapsed().as_secs_f64();
                wait("heal", Duration::from_secs(60), || {
                    converged(&clients, &watched)
                })?;
                Ok::<_, anyhow::Error>((healed, heal_call, start.elapsed().as_secs_f64()))
            })();
            stop.store(true, Ordering::Relaxed);
            result
        })?;
        if !healed.unreachable.is_empty() {
            bail!(
                "R4 (processes): heal: {:?} did not answer",
                healed.unreachable
            );
        }
        let (connected, hello) = *seen.lock().expect("poller does not panic");
        out.push(Rep {
            hop,
            rtt,
            heal: converged_at,
            parts: Parts {
                heal_call,
                connected,
                hello,
            },
        });
    }
    Ok(out)
}

/// Whether `c` lists `peer` as connected, and as connected with its hello accepted.
fn link_state(c: &Client, peer: &str) -> (bool, bool) {
    let peers: Vec<PeerInfo> = c.peers().unwrap_or_default();
    peers
        .iter()
        .find(|p| p.peer_id == peer)
        .map_or((false, false), |p| {
            (p.connected, p.connected && p.unit.is_some())
        })
}

/// Poll both ends of the cut link until `stop`, recording (seconds since `start`) the first time
/// either end lists the other as connected and the first time both list each other with a unit.
fn watch_link(
    link: &[(&Client, &str); 2],
    start: Instant,
    stop: &AtomicBool,
    seen: &Mutex<(Option<f64>, Option<f64>)>,
) {
    while !stop.load(Ordering::Relaxed) {
        let a = link_state(link[0].0, link[0].1);
        let b = link_state(link[1].0, link[1].1);
        let t = start.elapsed().as_secs_f64();
        let mut s = seen.lock().expect("one poller");
        if s.0.is_none() && (a.0 || b.0) {
            s.0 = Some(t);
        }
        if s.1.is_none() && a.1 && b.1 {
            s.1 = Some(t);
            return;
        }
    }
}

/// Medians of the heal breakdown, printed for BENCHMARKS.md (ms).
pub(crate) fn print_parts(reps: &[Rep]) {
    let med = |f: &dyn Fn(&Parts) -> Option<f64>| {
        let v: Vec<f64> = reps.iter().filter_map(|r| f(&r.parts)).collect();
        if v.is_empty() {
            f64::NAN
        } else {
            crate::measure::median(&v) * 1e3
        }
    };
    eprintln!(
        "R4 (processes) heal breakdown, medians of {} (ms from the start of heal): heal call returned {:.1}; cut link connected {:.1}; both hellos accepted {:.1}; converged {:.1}",
        reps.len(),
        med(&|p| Some(p.heal_call)),
        med(&|p| p.connected),
        med(&|p| p.hello),
        crate::measure::median(&reps.iter().map(|r| r.heal).collect::<Vec<_>>()) * 1e3,
    );
    for (i, r) in reps.iter().enumerate() {
        let ms = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{:.1}", v * 1e3));
        eprintln!(
            "  rep {i}: heal call {:.1}, connected {}, hellos {}, converged {:.1}",
            r.parts.heal_call * 1e3,
            ms(r.parts.connected),
            ms(r.parts.hello),
            r.heal * 1e3
        );
    }
}
