//! Memory under a Postgres outage: a live producer at RATE events/s
//! (default 20k) while `serve` runs; Postgres is stopped for OUTAGE seconds
//! (default 60) and started again. Prints `serve`'s RSS before, at peak
//! during, and after the outage, and the events consumed while paused.
//!
//! Run: `cargo bench --bench outage` (`RATE=`, `OUTAGE=` to change).

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::process::Command;
use std::time::{Duration, Instant};

use harness::{committed_messages, Serve, ServeConfig, Services};

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let rate = env("RATE", 20_000);
    let outage = Duration::from_secs(env("OUTAGE", 60));
    let mut services = Services::start();
    let topic = services.broker.create_topic("outage", 3);
    let db = services.postgres.create_database("outage");
    let mut serve = Serve::start(ServeConfig::new(&db, &services.broker, &topic));
    let total = rate * (outage.as_secs() + 60);
    let mut producer = Command::new(env!("CARGO_BIN_EXE_streamstats"))
        .args([
            "generate",
            "--kafka-brokers",
            &services.broker.bootstrap(),
            "--kafka-topic",
            &topic,
        ])
        .args([
            "--rate",
            &rate.to_string(),
            "--count",
            &total.to_string(),
            "--streams",
            "50",
        ])
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("generator starts");
    let pid = serve.process.pid();
    let warmup = Instant::now() + Duration::from_secs(20);
    let mut before = 0;
    while Instant::now() < warmup {
        before = before.max(harness::memory_kib(pid, "VmRSS"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let consumed_before = serve
        .metric("streamstats_events_consumed_total")
        .unwrap_or(0.0);
    services.postgres.stop_immediate();
    let stopped = Instant::now();
    let mut during = 0;
    while stopped.elapsed() < outage {
        serve.process.assert_running();
        during = during.max(harness::memory_kib(pid, "VmRSS"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let consumed_during = serve
        .metric("streamstats_events_consumed_total")
        .unwrap_or(0.0)
        - consumed_before;
    let paused = serve.metric("streamstats_consumer_paused");
    services.postgres.resume();
    let resumed = Instant::now();
    let target = committed_messages(&db) + 1;
    let deadline = Instant::now() + Duration::from_secs(120);
    while committed_messages(&db) <= target {
        assert!(
            Instant::now() < deadline,
            "no checkpoint committed within 120 s of Postgres returning; serve log:\n{}",
            serve.process.log_tail()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let recovery = resumed.elapsed();
    let mut after = 0;
    for _ in 0..50 {
        after = after.max(harness::memory_kib(pid, "VmRSS"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = producer.kill();
    let _ = producer.wait();
    println!("producer rate             {rate} events/s (live clock, 50 streams)");
    println!("outage                    {:?}", outage);
    println!("serve RSS before (peak)   {before} KiB");
    println!("serve RSS during (peak)   {during} KiB");
    println!("serve RSS after (peak)    {after} KiB");
    println!("consumed during outage    {consumed_during:.0} events (then paused: {paused:?})");
    println!("first commit after return {:.1}s", recovery.as_secs_f64());
    println!("consumed before outage    {consumed_before:.0} events");
    if std::env::var("SHOW_LOG").is_ok() {
        println!("serve log:\n{}", serve.process.log_tail());
    }
    serve.terminate();
}
