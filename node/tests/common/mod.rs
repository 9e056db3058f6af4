//! What the node tests that attack a running node measure meanwhile: the process's peak
//! resident memory, and how soon the node's HTTP API answers while the attack goes on; and the
//! smallest city they provision.
//!
//! Each test binary that uses it says `mod common;`.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use linli_crdt_model::unit::{Unit, UnitId, UnitKind};
use linli_node::run::Running;
use linli_node::setup::PlanUnit;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[allow(dead_code, reason = "not every test binary provisions its own plan")]
pub(crate) fn unit(id: &str, kind: UnitKind, name: &str) -> Unit {
    Unit {
        id: UnitId::new(id).unwrap(),
        kind,
        name: name.to_owned(),
    }
}

/// 铁东区 → 解放街道 → 胜利社区, with no people: the district first, the community last.
#[allow(dead_code, reason = "not every test binary provisions this city")]
pub(crate) fn city_plan() -> [PlanUnit; 3] {
    [
        PlanUnit {
            unit: unit("tiedong", UnitKind::District, "铁东区"),
            people: Vec::new(),
        },
        PlanUnit {
            unit: unit("tiedong/jiefang", UnitKind::Street, "解放街道"),
            people: Vec::new(),
        },
        PlanUnit {
            unit: unit("tiedong/jiefang/shengli", UnitKind::Community, "胜利社区"),
            people: Vec::new(),
        },
    ]
}

/// Peak resident memory the test process (node included) must stay under.
pub(crate) const RSS_MAX_MIB: u64 = 512;
/// How soon the node's HTTP API must answer, whatever a peer does.
pub(crate) const API_WITHIN: Duration = Duration::from_secs(1);

/// The node's HTTP API (at `addr`, with bearer `token`) answers `GET /v1/status` with 200: how
/// long it took, if it did within a second.
pub(crate) async fn api_latency(addr: SocketAddr, token: &str) -> Option<Duration> {
    let started = Instant::now();
    let probe = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let request = format!(
            "GET /v1/status HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n",
        );
        s.write_all(request.as_bytes()).await.ok()?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer).await.ok()?;
        Some(answer.starts_with(b"HTTP/1.1 200"))
    };
    match tokio::time::timeout(API_WITHIN, probe).await {
        Ok(Some(true)) => Some(started.elapsed()),
        _ => None,
    }
}

/// The peak resident memory of this process so far (`VmHWM` in /proc/self/status), in MiB.
/// The node runs in-process, so this bounds its own from above (other tests of this file run
/// alongside in the same process).
pub(crate) fn peak_rss_mib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|v| v.trim().parse().ok())
        .expect("VmHWM in kB in /proc/self/status");
    kib / 1024
}

/// Run `attack` while probing the node's API every 100 ms; its outcome and every probe's
/// latency (`None`: no answer within a second).
///
/// The probes run on a thread and runtime of their own: the node's network loop locks the
/// engine inside its task, which holds one of this runtime's workers, and a probe driven here
/// could then be timed out late, or cut off unrecorded when the attack ends. There, every probe
/// started is finished and recorded.
pub(crate) async fn watched<T>(
    node: &Running,
    attack: impl Future<Output = T>,
) -> (T, Vec<Option<Duration>>) {
    let stop = Arc::new(AtomicBool::new(false));
    let prober = {
        let (stop, addr, token) = (stop.clone(), node.api_addr, node.shared.token.clone());
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async {
                let mut latencies = Vec::new();
                loop {
                    latencies.push(api_latency(addr, &token).await);
                    if stop.load(Ordering::Relaxed) {
                        return latencies;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            })
        })
    };
    /// Stops the prober however the attack ends, a panic included.
    struct Stop(Arc<AtomicBool>);
    impl Drop for Stop {
        fn drop(&mut self) {
            self.0.store(true, Ordering::Relaxed);
        }
    }
    let out = {
        let _stop = Stop(stop);
        attack.await
    };
    let latencies = tokio::task::spawn_blocking(move || prober.join())
        .await
        .unwrap()
        .expect("the API prober");
    (out, latencies)
}

/// Print the test's figures, then hold them to their bounds: the API answered every probe
/// within a second, and peak RSS stayed under [`RSS_MAX_MIB`].
///
/// A probe's latency is held to the second as well as its timeout, in case that timer fires
/// late.
pub(crate) fn figures(test: &str, latencies: &[Option<Duration>]) {
    let rss = peak_rss_mib();
    let missed = latencies
        .iter()
        .filter(|l| l.is_none_or(|d| d > API_WITHIN))
        .count();
    // A probe without an answer within the second is the worst of all.
    let worst = if latencies.contains(&None) {
        format!("over {API_WITHIN:?}")
    } else {
        let w = latencies
            .iter()
            .flatten()
            .max()
            .copied()
            .unwrap_or_default();
        format!("{:.1} ms", w.as_secs_f64() * 1e3)
    };
    eprintln!(
        "{test}: peak RSS {rss} MiB; worst API latency {worst} over {} probes ({missed} not answered within {API_WITHIN:?})",
        latencies.len()
    );
    assert!(!latencies.is_empty(), "{test}: the API was never probed");
    assert_eq!(
        missed, 0,
        "{test}: the API did not answer within {API_WITHIN:?}: {latencies:?}"
    );
    assert!(
        rss < RSS_MAX_MIB,
        "{test}: peak RSS {rss} MiB, over {RSS_MAX_MIB} MiB"
    );
}
