//! crdt-model must stay pure: no crate that does network, disk, clock or async I/O may enter
//! its dependency graph. This reads `cargo metadata` and fails naming the crate that crept in.

use std::process::Command;

/// Crates whose presence means the model could do I/O or read the clock on its own.
const FORBIDDEN: &[&str] = &[
    "tokio",
    "async-std",
    "smol",
    "mio",
    "libp2p",
    "sled",
    "reqwest",
    "hyper",
    "axum",
    "socket2",
    "rusqlite",
    "chrono",
    "time",
    "tracing-subscriber",
];

/// Calls that read the clock or the OS's randomness. (automerge itself depends on `rand` for
/// `ActorId::random`; the model never calls it: actors come in as arguments.)
const FORBIDDEN_CALLS: &[&str] = &[
    "SystemTime::now",
    "Instant::now",
    "ActorId::random",
    "thread_rng",
    "OsRng",
    "std::fs::",
    "std::net::",
    "std::env::var",
];

#[test]
fn model_has_no_io_dependencies() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args([
            "tree",
            "-p",
            "linli-crdt-model",
            "-e",
            "normal",
            "--prefix",
            "none",
            "--format",
            "{p}",
        ])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("running cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        names.contains(&"automerge"),
        "cargo tree output looks wrong:\n{tree}"
    );
    let found: Vec<&&str> = FORBIDDEN.iter().filter(|f| names.contains(f)).collect();
    assert!(
        found.is_empty(),
        "I/O crates in crdt-model's dependency graph: {found:?}\n{tree}"
    );
}

#[test]
fn model_source_reads_no_clock_or_randomness() {
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut offending = Vec::new();
    let mut stack = vec![src];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).expect("reading crdt-model/src") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let text = std::fs::read_to_string(&path).expect("reading a source file");
            // Test modules may use the clock or randomness freely; stop at the first one.
            let body = text.split("#[cfg(test)]").next().unwrap_or("");
            for call in FORBIDDEN_CALLS {
                if body.contains(call) {
                    offending.push(format!("{}: {call}", path.display()));
                }
            }
        }
    }
    assert!(
        offending.is_empty(),
        "clock, randomness or I/O in crdt-model: {offending:?}"
    );
}
