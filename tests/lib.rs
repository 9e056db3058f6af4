//! Helpers for tests that run real `linli` processes: find (or build) the binary, start nodes
//! from provisioned data directories, talk to their APIs, and stop them even when a test fails.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use linli_node::client::Client;
use linli_node::config::Layout;
use linli_node::contract::PeerFile;

/// The `linli` binary of this workspace, built once if it is not there yet.
pub fn linli_bin() -> PathBuf {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        // target/<profile>/deps/<test binary> → target/<profile>/linli
        let exe = std::env::current_exe().expect("the test binary has a path");
        let profile_dir = exe
            .parent()
            .and_then(Path::parent)
            .expect("test binary lives in target/<profile>/deps");
        let bin = profile_dir.join("linli");
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let status = Command::new(cargo)
            .args(["build", "-p", "linli-cli", "--bin", "linli"])
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .status()
            .expect("running cargo build for the linli binary");
        assert!(status.success(), "building the linli binary failed");
        assert!(bin.exists(), "no linli binary at {}", bin.display());
        bin
    })
    .clone()
}

/// A `linli node run` child process, killed when dropped.
#[derive(Debug)]
pub struct NodeProcess {
    pub dir: PathBuf,
    pub child: Child,
}

impl NodeProcess {
    /// Start `linli node run` on a data directory and wait until its API answers.
    pub fn start(dir: &Path) -> NodeProcess {
        let _ = std::fs::remove_file(Layout::new(dir).api_addr());
        let log = std::fs::File::create(dir.join("node.log")).expect("creating node.log");
        let child = Command::new(linli_bin())
            .args(["--data-dir", &dir.display().to_string(), "node", "run"])
            .env("RUST_LOG", "info,libp2p=warn")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawning linli node run");
        let node = NodeProcess {
            dir: dir.to_owned(),
            child,
        };
        node.wait_api(Duration::from_secs(30));
        node
    }

    fn wait_api(&self, within: Duration) {
        let start = Instant::now();
        loop {
            if Layout::new(&self.dir).peer_info().exists() && self.api().status().is_ok() {
                return;
            }
            assert!(
                start.elapsed() < within,
                "node at {} did not answer within {within:?}; its log:\n{}",
                self.dir.display(),
                std::fs::read_to_string(self.dir.join("node.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn peer_file(&self) -> PeerFile {
        let text = std::fs::read_to_string(Layout::new(&self.dir).peer_info()).expect("peer.json");
        serde_json::from_str(&text).expect("peer.json parses")
    }

    /// The node's API, through the client the CLI and the testnet use.
    pub fn api(&self) -> Client {
        Client::of_dir(&self.dir).with_timeout(Duration::from_secs(10))
    }

    /// SIGKILL, as a crash.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Poll `check` until it returns true or `within` passes.
pub fn wait_until(what: &str, within: Duration, mut check: impl FnMut() -> bool) -> Duration {
    let start = Instant::now();
    loop {
        if check() {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < within,
            "timed out after {within:?} waiting for: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}
