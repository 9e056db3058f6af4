//! The node processes themselves: started detached so they outlive the command that started
//! them, found again by pid, and stopped with signals.
//!
//! A pid in `testnet.json` may be stale (the machine rebooted, the pid was reused), so before
//! signalling one we check on Linux that `/proc/<pid>/cmdline` still names the node's data
//! directory: `down` must never signal an unrelated process.

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::signal::{Signal, kill};
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use crate::Error;

/// How long `stop` waits after SIGTERM before SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(10);

/// Start `binary --data-dir DIR node run` in its own process group (so a Ctrl-C meant for the
/// terminal's foreground command does not reach it), with stdout and stderr appended to
/// `DIR/node.log`. Returns the pid.
pub fn spawn(binary: &Path, unit: &str, dir: &Path) -> Result<u32, Error> {
    use std::os::unix::process::CommandExt;
    let log_path = dir.join("node.log");
    let log = File::options()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|source| Error::Io {
            path: log_path.clone(),
            source,
        })?;
    let err = log.try_clone().map_err(|source| Error::Io {
        path: log_path.clone(),
        source,
    })?;
    let child = Command::new(binary)
        .arg("--data-dir")
        .arg(dir)
        .args(["node", "run"])
        .env(
            "RUST_LOG",
            std::env::var("LINLI_TESTNET_LOG").unwrap_or_else(|_| "info,libp2p=warn".to_owned()),
        )
        // node.log is a file: no colour codes in it.
        .env("NO_COLOR", "1")
        .env_remove("LINLI_DATA_DIR")
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Spawn {
            unit: unit.to_owned(),
            binary: binary.to_owned(),
            source,
        })?;
    // The `Child` is dropped without waiting: the process must outlive this command. When this
    // process lives on (the demo, a test), `alive` reaps it once it exits.
    Ok(child.id())
}

fn pid(p: u32) -> Option<Pid> {
    i32::try_from(p).ok().filter(|p| *p > 0).map(Pid::from_raw)
}

/// Is the node process `p` of data directory `dir` running?
pub fn alive(p: u32, dir: &Path) -> bool {
    let Some(pid) = pid(p) else {
        return false;
    };
    // Our own child (the demo, a test, `up` itself) is asked directly, which also reaps it once
    // it has exited; for anyone else's (ECHILD) the pid and its command line must match.
    match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
        Ok(WaitStatus::StillAlive) => return true,
        Ok(_) => return false,
        Err(_) => {}
    }
    match kill(pid, None) {
        Ok(()) | Err(Errno::EPERM) => is_node_of(p, dir),
        Err(_) => false,
    }
}

/// On Linux, whether `/proc/<pid>/cmdline` names `dir`; elsewhere, trust the pid.
fn is_node_of(p: u32, dir: &Path) -> bool {
    let proc = Path::new("/proc");
    if !proc.exists() {
        return true;
    }
    let Ok(cmdline) = std::fs::read(proc.join(p.to_string()).join("cmdline")) else {
        return false;
    };
    let text = String::from_utf8_lossy(&cmdline);
    // A zombie has an empty command line: it is not running.
    !text.is_empty() && text.contains(&*dir.to_string_lossy())
}

/// Send `signal` to node process `p` if it is still the node of `dir`.
pub fn signal(p: u32, dir: &Path, signal: Signal) -> bool {
    match pid(p) {
        Some(pid) if alive(p, dir) => kill(pid, signal).is_ok(),
        _ => false,
    }
}

/// SIGTERM every process, wait up to [`TERM_GRACE`] for all to exit, then SIGKILL the rest.
/// Returns the pids that needed SIGKILL.
pub fn stop_all(procs: &[(u32, &Path)]) -> Vec<u32> {
    for (p, dir) in procs {
        signal(*p, dir, Signal::SIGTERM);
    }
    let start = Instant::now();
    while start.elapsed() < TERM_GRACE && procs.iter().any(|(p, d)| alive(*p, d)) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut killed = Vec::new();
    for (p, dir) in procs {
        if signal(*p, dir, Signal::SIGKILL) {
            killed.push(*p);
        }
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(2) && procs.iter().any(|(p, d)| alive(*p, d)) {
        std::thread::sleep(Duration::from_millis(20));
    }
    killed
}

/// SIGKILL, as a crash, and wait until it is gone.
pub fn kill9(p: u32, dir: &Path) -> bool {
    let sent = signal(p, dir, Signal::SIGKILL);
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(5) && alive(p, dir) {
        std::thread::sleep(Duration::from_millis(20));
    }
    sent
}

/// The last `n` lines of a node's log.
pub fn log_tail(dir: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(dir.join("node.log")).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
