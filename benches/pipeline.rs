//! End-to-end throughput: 1M generated events (3 partitions, with
//! out-of-order, late, malformed and duplicate events) through `serve`
//! into Postgres, against the raw rate a bare rdkafka consumer reads the
//! same topic in the same run. The ratio is the figure that matters.
//!
//! Run: `cargo bench --bench pipeline` (EVENTS=n to change the size,
//! STORAGE=sqlite://tansu.db to use the durable broker storage).

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use harness::{committed_messages, wait_for_truth, Broker, Postgres, Scenario, Serve, ServeConfig};

const PARTITIONS: i32 = 3;

fn bare_consume(broker: &Broker, topic: &str, total: u64) -> Duration {
    let consumer = broker.consumer_from_start(topic, PARTITIONS);
    let started = Instant::now();
    let mut seen = 0u64;
    while seen < total {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(_)) => seen += 1,
            Some(Err(e)) => panic!("consume error: {e}"),
            None => assert!(
                started.elapsed() < Duration::from_secs(900),
                "bare consumer stalled"
            ),
        }
    }
    started.elapsed()
}

fn main() {
    let events: u64 = std::env::var("EVENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let storage = std::env::var("STORAGE").unwrap_or_else(|_| "memory://tansu/".to_owned());
    let broker = Broker::spawn_with_storage(&storage);
    let postgres = Postgres::start();
    broker.wait_ready();
    let topic = broker.create_topic("bench", PARTITIONS);
    let db = postgres.create_database("bench");

    let scenario = Scenario::with_trouble(events);
    let produce_started = Instant::now();
    let expected = scenario.produce(&broker, &topic, PARTITIONS);
    let produce = produce_started.elapsed();

    let bare = bare_consume(&broker, &topic, events);

    let serve_started = Instant::now();
    let mut serve =
        Serve::start(ServeConfig::new(&db, &broker, &topic).with_env("CHECKPOINT_INTERVAL", "1s"));
    harness::wait_for(
        "serve to commit every message",
        Duration::from_secs(1800),
        || {
            serve.process.assert_running();
            (committed_messages(&db) >= events as i64).then_some(())
        },
    );
    let pipeline = serve_started.elapsed();
    let peak_rss = harness::memory_kib(serve.process.pid(), "VmHWM");
    wait_for_truth(&mut serve, &expected, Duration::from_secs(120));

    let rate = |d: Duration| events as f64 / d.as_secs_f64();
    println!("storage                 {storage}");
    println!(
        "events                  {events} ({} window rows, {} dead letters)",
        expected.rows.len(),
        expected.dead_letter_total()
    );
    println!(
        "produce (generate)      {:>8.1}s  {:>9.0} events/s",
        produce.as_secs_f64(),
        rate(produce)
    );
    println!(
        "bare rdkafka consumer   {:>8.1}s  {:>9.0} events/s",
        bare.as_secs_f64(),
        rate(bare)
    );
    println!(
        "serve end to end        {:>8.1}s  {:>9.0} events/s (start-up included)",
        pipeline.as_secs_f64(),
        rate(pipeline)
    );
    println!(
        "ratio serve / bare      {:>8.2}",
        rate(pipeline) / rate(bare)
    );
    println!("serve peak RSS          {:>8} KiB", peak_rss);
    println!("tables equal ground truth: yes");
    serve.terminate();
}
