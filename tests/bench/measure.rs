//! Interleaved repetitions, ratios with medians and ranges, and the process's CPU time and RSS.

use nix::sys::resource::{UsageWho, getrusage};
use nix::time::{ClockId, clock_gettime};
use serde::Serialize;

/// CPU seconds used by this process so far, every thread.
pub(crate) fn cpu_seconds() -> f64 {
    clock_gettime(ClockId::CLOCK_PROCESS_CPUTIME_ID)
        .map(|t| t.tv_sec() as f64 + t.tv_nsec() as f64 * 1e-9)
        .unwrap_or(0.0)
}

/// Peak resident set of this process's own address space, bytes: `VmHWM` of
/// `/proc/self/status`. Not `ru_maxrss`: Linux carries that across `exec` from the address space
/// the child was spawned from, so a child started by the bench after it had generated a city's
/// data reported the bench's peak, not its own (3.2 GiB for a child that peaked at ≈ 1 GiB).
pub(crate) fn peak_rss_bytes() -> u64 {
    let hwm = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        });
    match hwm {
        Some(kib) => kib * 1024,
        // Not Linux's procfs: the rusage figure, with the caveat above.
        None => getrusage(UsageWho::RUSAGE_SELF)
            .map(|u| u.max_rss() as u64 * 1024)
            .unwrap_or(0),
    }
}

pub(crate) fn median(xs: &[f64]) -> f64 {
    let mut v = xs.to_vec();
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// Which way a target points.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) enum Target {
    AtMost(f64),
    AtLeast(f64),
    None,
}

impl Target {
    fn met(self, x: f64) -> Option<bool> {
        match self {
            Target::AtMost(t) => Some(x <= t),
            Target::AtLeast(t) => Some(x >= t),
            Target::None => None,
        }
    }

    fn show(self) -> String {
        match self {
            Target::AtMost(t) => format!("≤ {t}"),
            Target::AtLeast(t) => format!("≥ {t}"),
            Target::None => "—".to_owned(),
        }
    }
}

/// One row of the results table: a ratio over the repetitions.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Row {
    pub(crate) id: String,
    pub(crate) what: String,
    pub(crate) target: Target,
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) n: usize,
    /// Median of each arm, for reading the ratio (seconds unless `what` says otherwise).
    pub(crate) arms: (f64, f64),
}

impl Row {
    /// The ratio `num[i] / den[i]` per repetition.
    pub(crate) fn ratio(id: &str, what: &str, target: Target, num: &[f64], den: &[f64]) -> Row {
        let r: Vec<f64> = num.iter().zip(den).map(|(n, d)| n / d).collect();
        Row {
            id: id.to_owned(),
            what: what.to_owned(),
            target,
            median: median(&r),
            min: r.iter().copied().fold(f64::INFINITY, f64::min),
            max: r.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            n: r.len(),
            arms: (median(num), median(den)),
        }
    }

    /// A ratio that does not vary between repetitions (bytes, counts).
    pub(crate) fn fixed(id: &str, what: &str, target: Target, num: f64, den: f64) -> Row {
        Row {
            id: id.to_owned(),
            what: what.to_owned(),
            target,
            median: num / den,
            min: num / den,
            max: num / den,
            n: 1,
            arms: (num, den),
        }
    }

    pub(crate) fn verdict(&self) -> &'static str {
        match self.target.met(self.median) {
            Some(true) => "met",
            Some(false) => "MISSED",
            None => "",
        }
    }
}

fn num(x: f64) -> String {
    if !x.is_finite() {
        return format!("{x}");
    }
    let a = x.abs();
    if a >= 1e6 {
        format!("{:.3e}", x)
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.4}")
    }
}

/// The results as a Markdown table.
pub(crate) fn table(rows: &[Row]) -> String {
    let mut s = String::from(
        "| id | ratio | target | median | min–max | reps | arms (num / den) | |\n|---|---|---|---|---|---|---|---|\n",
    );
    for r in rows {
        s += &format!(
            "| {} | {} | {} | {} | {}–{} | {} | {} / {} | {} |\n",
            r.id,
            r.what,
            r.target.show(),
            num(r.median),
            num(r.min),
            num(r.max),
            r.n,
            num(r.arms.0),
            num(r.arms.1),
            r.verdict()
        );
    }
    s
}

/// Counts that do not vary between runs, as a Markdown table.
pub(crate) fn counts_table(counts: &[(String, String)]) -> String {
    let mut s = String::from("| count | value |\n|---|---|\n");
    for (k, v) in counts {
        s += &format!("| {k} | {v} |\n");
    }
    s
}
