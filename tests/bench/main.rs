//! `linli-bench`: how close linli is to the limit and to its peers, as ratios measured side by
//! side in one run (issue 6). These machines are shared and noisy, so every comparison runs its
//! arms interleaved (A B A B …) on the same seeded data, drops the first repetition, and reports
//! the median ratio with its range; counts that cannot vary (bytes, messages, round trips,
//! signatures verified) are reported once.
//!
//! ```text
//! cargo run --release -p linli-tests --bin linli-bench -- [--quick] [--json FILE]
//! ```
//!
//! Results and what limits each missed target: `BENCHMARKS.md`.

mod city;
mod city_procs;
mod data;
mod measure;
mod peers;
mod scale;
mod sync;

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Context as _;
use automerge::AutoCommit;
use clap::{Parser, Subcommand};
use serde::Serialize;

use crate::data::Fixture;
use crate::measure::{Row, Target, median};

#[derive(Debug, Parser)]
#[command(
    name = "linli-bench",
    about = "Side-by-side benchmarks of linli, reported as ratios (see BENCHMARKS.md)",
    after_help = "Examples:\n  linli-bench --quick\n  linli-bench --json results.json"
)]
struct Cli {
    /// Small settings that finish in under two minutes on two cores.
    #[arg(long)]
    quick: bool,
    /// Also write every row, count and setting as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Seed of the generated workload.
    #[arg(long, default_value_t = 6)]
    seed: u64,
    /// Repetitions of each comparison, the first of which is dropped (at least 7).
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u64).range(7..))]
    reps: u64,
    /// Run only these comparisons (comma-separated: r1,r2,r3,r4,r7,scale).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Internal: the district node of the scale run, in its own process.
    #[command(hide = true)]
    ScaleChild {
        #[arg(long)]
        seed: u64,
        #[arg(long)]
        communities: usize,
        #[arg(long)]
        data: PathBuf,
        #[arg(long)]
        store: PathBuf,
    },
}

/// The sizes a run uses.
#[derive(Debug, Clone, Serialize)]
struct Settings {
    quick: bool,
    seed: u64,
    reps: usize,
    records_per_doc: usize,
    r3_docs: usize,
    r3_records_per_doc: usize,
    r7_records_1x: usize,
    r7_ingest_batch: usize,
    scale_docs: usize,
}

#[derive(Debug, Serialize)]
struct Output {
    settings: Settings,
    rows: Vec<Row>,
    counts: Vec<(String, String)>,
    scale: Option<scale::Report>,
    seconds: f64,
}

/// Whether `--quick` runs R4 on real processes too (it does when it takes under 30 s).
const R4_PROCESSES_IN_QUICK: bool = true;

/// Run every arm once per repetition, in turn, and drop the first repetition.
fn rounds(reps: usize, arms: &mut [&mut dyn FnMut() -> f64]) -> Vec<Vec<f64>> {
    let mut out = vec![Vec::new(); arms.len()];
    for _ in 0..reps {
        for (i, arm) in arms.iter_mut().enumerate() {
            out[i].push(arm());
        }
    }
    for o in &mut out {
        o.remove(0);
    }
    out
}

fn progress(what: &str, start: Instant, rows: &[Row]) {
    eprintln!("[{:6.1}s] {what}", start.elapsed().as_secs_f64());
    // Rows so far, so a long run that fails late still leaves its results in the log.
    for r in rows {
        eprintln!(
            "  {} {}: {:.4} ({:.4}–{:.4})",
            r.id, r.what, r.median, r.min, r.max
        );
    }
}

fn mib(b: f64) -> String {
    format!("{:.1} MiB", b / (1024.0 * 1024.0))
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Command::ScaleChild {
        seed,
        communities,
        data,
        store,
    }) = &cli.command
    {
        return scale::child(*seed, *communities, data, store);
    }
    let s = if cli.quick {
        Settings {
            quick: true,
            seed: cli.seed,
            reps: cli.reps as usize,
            records_per_doc: 3000,
            r3_docs: 60,
            r3_records_per_doc: 150,
            r7_records_1x: 300,
            r7_ingest_batch: 100,
            scale_docs: 20,
        }
    } else {
        Settings {
            quick: false,
            seed: cli.seed,
            reps: cli.reps as usize,
            records_per_doc: 3000,
            r3_docs: 60,
            r3_records_per_doc: 3000,
            r7_records_1x: 3000,
            r7_ingest_batch: 1000,
            scale_docs: 300,
        }
    };
    let want = |c: &str| cli.only.is_empty() || cli.only.iter().any(|o| o == c);
    let start = Instant::now();
    let reps = s.reps;
    let mut rows = Vec::new();
    let mut counts: Vec<(String, String)> = Vec::new();
    let mut count = |k: &str, v: String| counts.push((k.to_owned(), v));

    let n_communities = s.scale_docs.max(s.r3_docs);
    let fx = Fixture::new(s.seed, n_communities);
    let city = data::months(&fx, s.seed, s.scale_docs, s.records_per_doc);
    progress(
        &format!(
            "built {} community months of {} records",
            city.len(),
            s.records_per_doc
        ),
        start,
        &rows,
    );
    let community = &city[0];
    count(
        "community month: changes (signed) / change bytes",
        format!(
            "{} / {}",
            community.changes.len(),
            mib(community.change_bytes() as f64)
        ),
    );

    if want("r1") || want("r2") {
        let wire_limits = linli_crdt_model::wire::Limits::default();
        let mut linli_full = community.full(automerge::ActorId::random());
        let mut raw_full = AutoCommit::load(&community.saved()).context("saved month loads")?;
        let changes = community.decoded();
        let v = sync::Verifiable::new(&fx, community);
        let n = community.signatures.len() as f64;
        let (raw1, _) = sync::raw_sync(&mut raw_full, true);
        let (raw2, _) = sync::raw_sync(&mut raw_full, false);
        let (linli, _) = sync::linli_sync(&fx, &mut linli_full, &wire_limits, |_, _| {});
        let mut raw_full2 = raw_full.clone();
        let mut a_raw = || sync::time(|| sync::raw_sync(&mut raw_full, true)).0;
        let mut a_raw2 = || sync::time(|| sync::raw_sync(&mut raw_full2, false)).0;
        let mut a_linli =
            || sync::time(|| sync::linli_sync(&fx, &mut linli_full, &wire_limits, |_, _| {})).0;
        let mut a_many = || sync::time(|| assert!(v.linli_many())).0;
        let mut a_dalek = || sync::time(|| assert!(v.dalek_batch())).0;
        let mut a_ingest = || sync::ingest(&fx, community, &changes, changes.len());
        let mut a_ingest100 = || sync::ingest(&fx, community, &changes, 100);
        // The parts of one whole-month ingest, timed alone, to say what limits R2.
        let mut a_apply = || {
            let c = changes.clone();
            let mut am = AutoCommit::new();
            sync::time(|| am.apply_changes(c).expect("applies")).0
        };
        let validated = community.full(automerge::ActorId::random());
        let mut a_validate = || {
            sync::time(|| {
                linli_crdt_model::kinds::validate(
                    linli_crdt_model::kinds::Kind::VisitLog,
                    validated.read(),
                )
                .expect("valid")
            })
            .0
        };
        let mut a_clone = || sync::time(|| validated.clone()).0;
        let t = rounds(
            reps,
            &mut [
                &mut a_raw,
                &mut a_linli,
                &mut a_many,
                &mut a_dalek,
                &mut a_ingest,
                &mut a_ingest100,
                &mut a_raw2,
                &mut a_apply,
                &mut a_validate,
                &mut a_clone,
            ],
        );
        let (t_raw, t_linli, t_many, t_dalek, t_ingest, t_ingest100, t_raw2) =
            (&t[0], &t[1], &t[2], &t[3], &t[4], &t[5], &t[6]);
        if want("r1") {
            rows.push(Row::ratio(
                "R1",
                "time: signed sync ÷ plain Automerge sync (V1), 1 doc cold",
                Target::AtMost(1.25),
                t_linli,
                t_raw,
            ));
            rows.push(Row::fixed(
                "R1",
                "bytes: signed (Automerge + postcard signatures) ÷ plain (V1)",
                Target::AtMost(1.3),
                linli.bytes() as f64,
                raw1.message_bytes as f64,
            ));
            let (cbor_signed, cbor_bare) = sync::cbor_bytes(&fx, community);
            rows.push(Row::fixed(
                "R1",
                "bytes: node's CBOR Sync requests, signed ÷ same framing unsigned",
                Target::AtMost(1.3),
                cbor_signed as f64,
                cbor_bare as f64,
            ));
            rows.push(Row::fixed(
                "R1",
                "bytes: node's CBOR Sync requests ÷ plain Automerge (V1) bytes",
                Target::AtMost(1.3),
                cbor_signed as f64,
                raw1.message_bytes as f64,
            ));
            let diff = median(t_linli) - median(t_raw);
            rows.push(Row::fixed(
                "R1",
                "share of the time difference spent in signature checks (verify_many)",
                Target::None,
                median(t_many),
                diff,
            ));
            rows.push(Row::ratio(
                "R1",
                "time: plain Automerge default (V2 allowed) ÷ V1",
                Target::None,
                t_raw2,
                t_raw,
            ));
            count(
                "R1 plain V1: messages / round trips / bytes",
                format!(
                    "{} / {} / {}",
                    raw1.messages, raw1.round_trips, raw1.message_bytes
                ),
            );
            count(
                "R1 plain default (V2): messages / round trips / bytes",
                format!(
                    "{} / {} / {}",
                    raw2.messages, raw2.round_trips, raw2.message_bytes
                ),
            );
            count(
                "R1 signed: messages / round trips / Automerge bytes / signature bytes (postcard)",
                format!(
                    "{} / {} / {} / {}",
                    linli.messages, linli.round_trips, linli.message_bytes, linli.signature_bytes
                ),
            );
            count("R1 signatures verified", format!("{}", linli.changes));
            count(
                "R1 node CBOR bytes: signed / unsigned framing",
                format!("{cbor_signed} / {cbor_bare}"),
            );
        }
        if want("r2") {
            rows.push(Row::ratio(
                "R2",
                "ingest rate (1 batch = whole month) ÷ ed25519 batch-verify rate",
                Target::AtLeast(0.8),
                t_dalek,
                t_ingest,
            ));
            rows.push(Row::ratio(
                "R2",
                "ingest rate (batches of 100) ÷ ed25519 batch-verify rate",
                Target::AtLeast(0.8),
                t_dalek,
                t_ingest100,
            ));
            rows.push(Row::ratio(
                "R2",
                "keys::verify_many time ÷ raw verify_batch time",
                Target::None,
                t_many,
                t_dalek,
            ));
            count(
                "R2 whole-month ingest, parts timed alone (ms): ingest / verify_many / Automerge apply / schema validation (hydrate) / clone of the full document",
                format!(
                    "{:.1} / {:.1} / {:.1} / {:.1} / {:.1}",
                    median(t_ingest) * 1e3,
                    median(t_many) * 1e3,
                    median(&t[7]) * 1e3,
                    median(&t[8]) * 1e3,
                    median(&t[9]) * 1e3
                ),
            );
            count(
                "R2 verify limit (signatures/s, one core)",
                format!("{:.0}", n / median(t_dalek)),
            );
            count(
                "R2 ingest (changes/s): whole month / batches of 100",
                format!(
                    "{:.0} / {:.0}",
                    n / median(t_ingest),
                    n / median(t_ingest100)
                ),
            );
        }
        progress("R1, R2", start, &rows);
    }

    if want("r3") {
        let docs = if s.r3_records_per_doc == s.records_per_doc && city.len() >= s.r3_docs {
            city[..s.r3_docs].to_vec()
        } else {
            data::months(&fx, s.seed, s.r3_docs, s.r3_records_per_doc)
        };
        let input = peers::Input::new(&docs);
        let full = peers::full_docs(&docs);
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()?;
        let mut runs_samod = Vec::new();
        let mut runs_linli = Vec::new();
        for _ in 0..reps {
            runs_samod.push(peers::samod_run(&rt, &input));
            runs_linli.push(peers::linli_run(&fx, &docs, &full, &input));
        }
        runs_samod.remove(0);
        runs_linli.remove(0);
        let col = |runs: &[peers::Run], f: fn(&peers::Run) -> f64| -> Vec<f64> {
            runs.iter().map(f).collect()
        };
        let what = format!("{} docs × {} records", s.r3_docs, s.r3_records_per_doc);
        for (label, f, target) in [
            (
                "cold sync CPU",
                (|r: &peers::Run| r.cold_cpu) as fn(&peers::Run) -> f64,
                Target::AtMost(1.0),
            ),
            ("cold sync wall", |r| r.cold_wall, Target::None),
            (
                "one new record each, CPU",
                |r| r.update_cpu,
                Target::AtMost(1.0),
            ),
            ("one new record each, wall", |r| r.update_wall, Target::None),
            ("bytes (both phases)", |r| r.bytes as f64, Target::None),
        ] {
            rows.push(Row::ratio(
                "R3",
                &format!("{label}: linli ÷ samod, {what}"),
                target,
                &col(&runs_linli, f),
                &col(&runs_samod, f),
            ));
        }
        count(
            "R3 linli: messages / bytes (CBOR requests, both phases)",
            format!("{} / {}", runs_linli[0].messages, runs_linli[0].bytes),
        );
        count(
            "R3 samod: frames / bytes (both phases, median)",
            format!(
                "{:.0} / {:.0}",
                median(&col(&runs_samod, |r| r.messages as f64)),
                median(&col(&runs_samod, |r| r.bytes as f64))
            ),
        );
        progress("R3", start, &rows);
    }

    if want("r7") {
        let n1 = s.r7_records_1x;
        let one = if n1 == s.records_per_doc {
            community.clone()
        } else {
            data::community_month(&fx, s.seed, 0, n1)
        };
        let ten = data::community_month(&fx, s.seed, 0, 10 * n1);
        progress(
            &format!("built R7 months of {n1} and {}", 10 * n1),
            start,
            &rows,
        );
        let ch1 = one.decoded();
        let ch10 = ten.decoded();
        let mut full1 = one.full(automerge::ActorId::random());
        let mut full10 = ten.full(automerge::ActorId::random());
        let saved1 = full1.save();
        let saved10 = full10.save();
        let b = s.r7_ingest_batch;
        let load = |d: &data::DocData, bytes: &[u8]| {
            sync::time(|| {
                linli_crdt_model::document::Document::load(
                    d.header.clone(),
                    bytes,
                    d.signatures.iter().cloned(),
                    automerge::ActorId::random(),
                )
                .expect("loads")
            })
            .0
        };
        // A cold sync sends every change in one Automerge message; at 30,000 records that is
        // ≈ 9.8 MB, over the default 8 MiB `sync_message_bytes_max`, and the receiver refuses it
        // (see BENCHMARKS.md). R7 measures growth, so both sizes sync with a 64 MiB limit.
        let big = linli_crdt_model::wire::Limits {
            sync_message_bytes_max: 64 << 20,
            ..Default::default()
        };
        let mut full1b = full1.clone();
        let mut full10b = full10.clone();
        let t = rounds(
            reps,
            &mut [
                &mut || sync::ingest(&fx, &one, &ch1, b),
                &mut || sync::ingest(&fx, &ten, &ch10, b),
                &mut || sync::time(|| full1.save()).0,
                &mut || sync::time(|| full10.save()).0,
                &mut || load(&one, &saved1),
                &mut || load(&ten, &saved10),
                &mut || sync::time(|| sync::linli_sync(&fx, &mut full1b, &big, |_, _| {})).0,
                &mut || sync::time(|| sync::linli_sync(&fx, &mut full10b, &big, |_, _| {})).0,
            ],
        );
        for (i, label) in [
            format!("ingest (batches of {b})"),
            "save".to_owned(),
            "load".to_owned(),
            "signed sync, cold".to_owned(),
        ]
        .iter()
        .enumerate()
        {
            rows.push(Row::ratio(
                "R7",
                &format!("{label}: time at {} ÷ at {n1} records", 10 * n1),
                Target::AtMost(11.0),
                &t[2 * i + 1],
                &t[2 * i],
            ));
        }
        progress("R7", start, &rows);
    }

    if want("r4") {
        let reps_city = city::run(reps);
        let reps_city = &reps_city[1..];
        let heal: Vec<f64> = reps_city.iter().map(|r| r.heal).collect();
        let bound: Vec<f64> = reps_city.iter().map(|r| city::HEAL_HOPS * r.hop).collect();
        let reconnect: Vec<f64> = reps_city.iter().map(|r| r.reconnect).collect();
        rows.push(Row::ratio(
            "R4",
            "heal time ÷ (2 hops × measured one-hop time), 13 nodes, memory transport",
            Target::AtMost(2.0),
            &heal,
            &bound,
        ));
        let after: Vec<f64> = heal.iter().zip(&reconnect).map(|(h, r)| h - r).collect();
        rows.push(Row::ratio(
            "R4",
            "heal time after reconnection ÷ (2 hops × one hop)",
            Target::None,
            &after,
            &bound,
        ));
        count(
            "R4 medians: one hop / reconnect after heal / heal (ms)",
            format!(
                "{:.1} / {:.1} / {:.1}",
                median(&reps_city.iter().map(|r| r.hop).collect::<Vec<_>>()) * 1e3,
                median(&reconnect) * 1e3,
                median(&heal) * 1e3
            ),
        );
        progress("R4", start, &rows);

        // The same on real processes (the city testnet over TCP on 127.0.0.1).
        if !s.quick || R4_PROCESSES_IN_QUICK {
            let procs = city_procs::run(reps).context("R4 (processes)")?;
            let procs = &procs[1..];
            let heal: Vec<f64> = procs.iter().map(|r| r.heal).collect();
            let hops: Vec<f64> = procs.iter().map(|r| city::HEAL_HOPS * r.hop).collect();
            let rtts: Vec<f64> = procs.iter().map(|r| city::HEAL_HOPS * r.rtt).collect();
            rows.push(Row::ratio(
                "R4 (processes)",
                "heal time ÷ (2 hops × measured one-hop time), 13 `linli node run` processes, TCP",
                Target::AtMost(2.0),
                &heal,
                &hops,
            ));
            rows.push(Row::ratio(
                "R4 (processes)",
                "heal time ÷ (2 hops × request round trip, GET /v1/status)",
                Target::None,
                &heal,
                &rtts,
            ));
            count(
                "R4 (processes) medians: one hop / request round trip / heal (ms)",
                format!(
                    "{:.1} / {:.2} / {:.1}",
                    median(&procs.iter().map(|r| r.hop).collect::<Vec<_>>()) * 1e3,
                    median(&procs.iter().map(|r| r.rtt).collect::<Vec<_>>()) * 1e3,
                    median(&heal) * 1e3
                ),
            );
            progress("R4 (processes)", start, &rows);
        }
    }

    let mut scale_report = None;
    if want("scale") {
        let r = scale::run(s.seed, n_communities, &city)?;
        let rate = r.n_changes as f64 / r.ingest_seconds;
        rows.push(Row::fixed(
            "Scale",
            &format!(
                "district ingest rate ÷ verify limit, {} docs × {} records",
                r.n_docs, s.records_per_doc
            ),
            Target::AtLeast(0.5),
            rate,
            r.verify_rate,
        ));
        rows.push(Row::fixed(
            "Scale",
            "peak RSS ÷ 2 GiB",
            Target::AtMost(1.0),
            r.peak_rss_bytes as f64,
            2.0 * 1024.0 * 1024.0 * 1024.0,
        ));
        rows.push(Row::fixed(
            "Scale",
            "store size on disk ÷ raw change bytes",
            Target::None,
            r.store_bytes as f64,
            r.raw_change_bytes as f64,
        ));
        count(
            "Scale: changes ingested / seconds / changes per s / CPU s",
            format!(
                "{} / {:.1} / {:.0} / {:.1}",
                r.n_changes, r.ingest_seconds, rate, r.ingest_cpu_seconds
            ),
        );
        count(
            "Scale: peak RSS / store on disk / raw change bytes",
            format!(
                "{} / {} / {}",
                mib(r.peak_rss_bytes as f64),
                mib(r.store_bytes as f64),
                mib(r.raw_change_bytes as f64)
            ),
        );
        count(
            "Scale: restart (reopen store + load every document)",
            format!("{:.2} s", r.restart_seconds),
        );
        scale_report = Some(r);
        progress("Scale", start, &rows);
    }

    println!("{}", measure::table(&rows));
    println!("{}", measure::counts_table(&counts));
    let seconds = start.elapsed().as_secs_f64();
    println!("total {seconds:.0} s");
    if let Some(path) = &cli.json {
        let out = Output {
            settings: s,
            rows,
            counts,
            scale: scale_report,
            seconds,
        };
        std::fs::write(path, serde_json::to_string_pretty(&out)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
