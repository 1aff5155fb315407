//! The pipeline's own ceiling (issue 12): `streamstats replay` of generated
//! JSON lines into a fresh database, the tables checked against ground
//! truth. Prints events/s, CPU seconds and peak RSS of the replay process,
//! for a plain file and for the same events gzipped.
//!
//! Run: `cargo bench --bench replay` (EVENTS=n, default 2,000,000;
//! STREAMS=n, default 25; RUNS=n replays of each file, default 3, the median
//! reported; PERF_OUT=file records a `perf` profile of each
//! replay, the CPU figures then include perf's own).

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::{TimeDelta, Utc};
use harness::{actual, cpu_seconds, memory_kib, Postgres, Scenario};
use streamstats_actors::truth::{Expected, Truth};

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Run {
    seconds: f64,
    cpu: f64,
    peak_rss_kib: u64,
}

/// Replays `path` into `db`, sampling the process until it exits.
fn replay(db: &str, path: &Path) -> Run {
    let started = Instant::now();
    // PERF_OUT=path: record a profile of the replay with linux-perf.
    let mut cmd = match std::env::var("PERF_OUT") {
        Ok(out) => {
            let mut perf = Command::new("perf");
            perf.args(["record", "-F", "499", "-g", "-o", &out, "--"])
                .arg(env!("CARGO_BIN_EXE_streamstats"));
            perf
        }
        Err(_) => Command::new(env!("CARGO_BIN_EXE_streamstats")),
    };
    let mut child = cmd
        .arg("replay")
        .arg(path)
        .env("DATABASE_URL", db)
        .env("REPLAY_PROGRESS", "never")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("replay starts");
    let pid = child.id();
    let (mut cpu, mut peak) = (0.0, 0);
    loop {
        cpu = f64::max(cpu, cpu_seconds(pid));
        peak = peak.max(memory_kib(pid, "VmHWM"));
        if let Some(status) = child.try_wait().expect("waitable") {
            assert!(status.success(), "replay failed: {status}");
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Run {
        seconds: started.elapsed().as_secs_f64(),
        cpu,
        peak_rss_kib: peak,
    }
}

fn check(db: &str, expected: &Expected, what: &str) {
    assert!(
        actual(db).same_tables(expected),
        "{what}: tables differ from ground truth"
    );
}

fn main() {
    let events = env_or("EVENTS", 2_000_000);
    let streams = u32::try_from(env_or("STREAMS", 25)).unwrap_or(25);
    let postgres = Postgres::start();
    let dir = std::env::temp_dir().join(harness::unique_name("bench-replay"));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let plain = dir.join("events.jsonl");
    let gz = dir.join("events.jsonl.gz");
    let mut scenario = Scenario::with_trouble(events);
    scenario.streams = streams;
    scenario.write_file(&plain);
    scenario.write_file(&gz);
    let mut truth = Truth::new(TimeDelta::minutes(10), Utc::now());
    truth.observe_lines(&std::fs::read(&plain).expect("readable"));
    let expected = truth.finish();
    let size = |p: &PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    println!(
        "replay bench: {events} generated events over {streams} streams ({} applied, {} dead letters), {} MB plain, {} MB gzip",
        expected.applied,
        expected.dead_letter_total(),
        size(&plain) / 1_000_000,
        size(&gz) / 1_000_000
    );
    // RUNS=n replays of each file (default 3), each into a fresh database;
    // the median run is reported (this VM's runs vary by ±15%).
    let runs = env_or("RUNS", 3).max(1);
    for (name, path) in [("plain", &plain), ("gzip", &gz)] {
        let mut all: Vec<Run> = (0..runs)
            .map(|i| {
                let db = postgres.create_database(&format!("bench_{name}_{i}"));
                let run = replay(&db, path);
                check(&db, &expected, name);
                postgres.drop_database(&db);
                run
            })
            .collect();
        all.sort_by(|a, b| a.seconds.total_cmp(&b.seconds));
        let times: Vec<String> = all.iter().map(|r| format!("{:.2}", r.seconds)).collect();
        let run = &all[all.len() / 2];
        println!(
            "{name:>5}: {:.2} s, {:.0} events/s, {:.2} s CPU ({:.0}% of one core), peak RSS {} MB; tables exact (median of {runs} runs: {} s)",
            run.seconds,
            events as f64 / run.seconds,
            run.cpu,
            100.0 * run.cpu / run.seconds,
            run.peak_rss_kib / 1024,
            times.join(", ")
        );
    }
    let _ = std::io::stdout().flush();
    let _ = std::fs::remove_dir_all(&dir);
}
