//! What the node tests that attack a running node measure meanwhile: the process's peak
//! resident memory, and how soon the node's HTTP API answers while the attack goes on (probed
//! with `linli_node::testkit::api_latency`).
//!
//! Each test binary that uses it says `mod common;`.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use linli_node::run::Running;
use linli_node::testkit::{API_WITHIN, api_latency};

/// Peak resident memory the test process (node included) must stay under.
pub(crate) const RSS_MAX_MIB: u64 = 512;

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
