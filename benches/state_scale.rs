//! Checkpoint cost against state size (issue 10), in one run:
//!
//! 1. Stream count: the same number of generated events over 25 streams,
//!    over 100,000 streams (uniform) and over 100,000 streams with Zipf
//!    sizes; each read from offset 0 into a fresh database. Events/s, WAL
//!    bytes per event and `serve` peak RSS, with the ratios to the 25-stream
//!    run.
//! 2. One stream with 300,000 viewers receiving 100 events/s: WAL bytes/s
//!    and `serve` CPU over a steady 30 s; then kill -9 and the time the
//!    restarted `serve` takes to commit again, the tables checked exact.
//!
//! Run: `cargo bench --bench state_scale` (EVENTS=n, VIEWERS=n, STEADY_SECS=n;
//! WAL_STATS=1 prints `pg_waldump --stats=record` of each stream-count run).
//! Part 1 reads tansu's `memory://` storage from offset 0 only; part 2 uses
//! `sqlite://` because it restarts mid-log.

#[path = "../tests/harness/mod.rs"]
mod harness;

use std::time::{Duration, Instant};

use chrono::{SecondsFormat, TimeDelta, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use harness::{
    check_truth, committed_messages, cpu_seconds, memory_kib, Broker, Postgres, Scenario, Serve,
    ServeConfig,
};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};
use streamstats_actors::truth::Truth;

const PARTITIONS: i32 = 3;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The cluster's current WAL position, as text.
fn wal_lsn(url: &str) -> String {
    #[derive(QueryableByName)]
    struct Lsn {
        #[diesel(sql_type = Text)]
        lsn: String,
    }
    let mut conn = PgConnection::establish(url).expect("connect");
    diesel::sql_query("SELECT pg_current_wal_lsn()::text AS lsn")
        .get_result::<Lsn>(&mut conn)
        .expect("wal position")
        .lsn
}

/// WAL bytes written between two positions.
fn wal_bytes(url: &str, from: &str, to: &str) -> i64 {
    #[derive(QueryableByName)]
    struct Diff {
        #[diesel(sql_type = BigInt)]
        bytes: i64,
    }
    let mut conn = PgConnection::establish(url).expect("connect");
    diesel::sql_query("SELECT pg_wal_lsn_diff($1::pg_lsn, $2::pg_lsn)::bigint AS bytes")
        .bind::<Text, _>(to)
        .bind::<Text, _>(from)
        .get_result::<Diff>(&mut conn)
        .expect("wal difference")
        .bytes
}

/// Rows inserted, updated (of which HOT) and deleted per table of `url`'s
/// database, and each table's size with its indexes: where a run's WAL
/// goes. Read after `serve` stopped, so its connections flushed their stats.
fn table_writes(url: &str) -> String {
    #[derive(QueryableByName)]
    struct Writes {
        #[diesel(sql_type = Text)]
        line: String,
    }
    let mut conn = PgConnection::establish(url).expect("connect");
    diesel::sql_query(
        "SELECT format('  %-22s ins %9s  upd %9s (hot %9s)  del %9s  size %6s MB', relname, \
                n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del, \
                pg_total_relation_size(relid) / 1048576) AS line \
         FROM pg_stat_user_tables \
         WHERE n_tup_ins + n_tup_upd + n_tup_del > 0 ORDER BY relname",
    )
    .load::<Writes>(&mut conn)
    .expect("table statistics")
    .into_iter()
    .map(|w| w.line + "\n")
    .collect()
}

struct Run {
    name: String,
    writes: String,
    rate: f64,
    wal_per_event: f64,
    rss_kib: u64,
}

fn stream_count_run(broker: &Broker, postgres: &Postgres, name: &str, scenario: Scenario) -> Run {
    let events = scenario.count;
    let topic = broker.create_topic("scale", PARTITIONS);
    let db = postgres.create_database("scale");
    let expected = scenario.produce(broker, &topic, PARTITIONS);
    let before = wal_lsn(&db);
    let started = Instant::now();
    let mut serve =
        Serve::start(ServeConfig::new(&db, broker, &topic).with_env("CHECKPOINT_INTERVAL", "1s"));
    harness::wait_for("every message committed", Duration::from_secs(1800), || {
        serve.process.assert_running();
        (committed_messages(&db) >= events as i64).then_some(())
    });
    let took = started.elapsed();
    let checkpoints = serve
        .metric("streamstats_checkpoint_duration_seconds_count")
        .unwrap_or(0.0);
    let writing = serve
        .metric("streamstats_checkpoint_duration_seconds_sum")
        .unwrap_or(0.0);
    println!(
        "{name}: {checkpoints} checkpoints, {writing:.1} s of {:.1} s writing them",
        took.as_secs_f64()
    );
    let after = wal_lsn(&db);
    let wal = wal_bytes(&db, &before, &after);
    if std::env::var_os("WAL_STATS").is_some() {
        println!(
            "{name}: WAL by record type\n{}",
            postgres.wal_stats(&before, &after)
        );
    }
    let rss_kib = memory_kib(serve.process.pid(), "VmHWM");
    if let Err(diff) = check_truth(&mut serve, &expected, Duration::from_secs(300)) {
        panic!("{name}: {diff}");
    }
    serve.terminate();
    let writes = table_writes(&db);
    // Autovacuum of this run's tables would otherwise write WAL (which is
    // cluster-wide) while a later run measures its own.
    postgres.drop_database(&db);
    Run {
        name: name.to_owned(),
        writes,
        rate: events as f64 / took.as_secs_f64(),
        wal_per_event: wal as f64 / events as f64,
        rss_kib,
    }
}

fn event(seq: u64, kind: &str, user: u64) -> Vec<u8> {
    let ts = Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true);
    let fields = match kind {
        "chat_message" => format!(r#","user_id":"u{user}","message_len":12"#),
        _ => format!(r#","user_id":"u{user}""#),
    };
    format!(
        r#"{{"event_id":"big-{seq}","ts":"{ts}","event_type":"{kind}","stream_id":"big"{fields}}}"#
    )
    .into_bytes()
}

fn big_stream(postgres: &Postgres) {
    // sqlite storage: the restart after kill -9 resumes mid-log, where
    // tansu's memory storage returns wrong offsets.
    let broker = &Broker::start();
    let viewers = env_or("VIEWERS", 300_000);
    let steady_secs = env_or("STEADY_SECS", 30);
    let lateness = TimeDelta::seconds(5);
    let topic = broker.create_topic("big", 1);
    let db = postgres.create_database("big");
    let mut truth = Truth::new(lateness, Utc::now());
    let mut seq = 0u64;
    let send = |payloads: Vec<Vec<u8>>, truth: &mut Truth| {
        for p in &payloads {
            truth.observe(p);
        }
        broker.produce_events(&topic, &payloads);
    };
    let joins: Vec<Vec<u8>> = (0..viewers)
        .map(|u| {
            seq += 1;
            event(seq, "viewer_join", u)
        })
        .collect();
    send(joins, &mut truth);
    let cfg = ServeConfig::new(&db, broker, &topic)
        .with_env("CHECKPOINT_INTERVAL", "1s")
        .with_env("ALLOWED_LATENESS", "5s");
    let serve = Serve::start(cfg);
    harness::wait_for("the joins committed", Duration::from_secs(600), || {
        (committed_messages(&db) >= viewers as i64).then_some(())
    });
    // The bulk load leaves 300k fresh rows that autovacuum freezes once,
    // writing WAL of its own: do that now, so that the steady state below
    // measures what the pipeline writes per event, not that one-off.
    let mut conn = PgConnection::establish(&db).expect("connect");
    diesel::sql_query("VACUUM (FREEZE, ANALYZE)")
        .execute(&mut conn)
        .expect("vacuum after the bulk load");

    // Steady state: 100 events/s (leaves and re-joins of present users,
    // chat) through one long-lived producer.
    let producer: ThreadedProducer<DefaultProducerContext> = broker
        .client_config()
        .set("linger.ms", "5")
        .create()
        .expect("producer");
    let wal_before = wal_lsn(&db);
    let cpu_before = cpu_seconds(serve.process.pid());
    let started = Instant::now();
    let mut sent = 0u64;
    while started.elapsed() < Duration::from_secs(steady_secs) {
        let batch: Vec<Vec<u8>> = (0..10)
            .map(|i| {
                seq += 1;
                let user = (seq * 7_919) % viewers;
                let kind = match i % 4 {
                    0 => "viewer_leave",
                    1 => "viewer_join",
                    _ => "chat_message",
                };
                event(seq, kind, user)
            })
            .collect();
        sent += batch.len() as u64;
        for payload in &batch {
            truth.observe(payload);
            producer
                .send(
                    BaseRecord::<[u8], [u8]>::to(&topic)
                        .key(b"big")
                        .payload(payload),
                )
                .map_err(|(e, _)| e)
                .expect("queued");
        }
        let due = Duration::from_millis(sent * 10);
        if let Some(wait) = due.checked_sub(started.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    producer.flush(Duration::from_secs(30)).expect("delivered");
    let total = viewers + sent;
    harness::wait_for(
        "the steady events committed",
        Duration::from_secs(120),
        || (committed_messages(&db) >= total as i64).then_some(()),
    );
    let secs = started.elapsed().as_secs_f64();
    let wal_after = wal_lsn(&db);
    let wal = wal_bytes(&db, &wal_before, &wal_after);
    if std::env::var_os("WAL_STATS").is_some() {
        println!(
            "big stream: WAL by record type\n{}",
            postgres.wal_stats(&wal_before, &wal_after)
        );
    }
    let cpu = cpu_seconds(serve.process.pid()) - cpu_before;
    println!(
        "300k-viewer stream: {viewers} viewers, {sent} events in {secs:.1} s ({:.0}/s)",
        sent as f64 / secs
    );
    println!(
        "  WAL {:>10.0} bytes/s   serve CPU {:>5.2}% of a core",
        wal as f64 / secs,
        cpu / secs * 100.0
    );

    // kill -9 while its windows are open, then restore.
    let (mut serve, took) = serve.crash_and_restart(Duration::from_secs(120));
    println!("  kill -9 to first commit of the restarted serve: {took:.2?}");
    let expected = truth.finish();
    if let Err(diff) = check_truth(&mut serve, &expected, Duration::from_secs(120)) {
        panic!("300k-viewer stream: {diff}");
    }
    println!("  tables equal ground truth after the restore: yes");
    serve.terminate();
}

fn main() {
    let events = env_or("EVENTS", 300_000);
    let storage = std::env::var("STORAGE").unwrap_or_else(|_| "memory://tansu/".to_owned());
    let broker = Broker::spawn_with_storage(&storage);
    let postgres = Postgres::start();
    broker.wait_ready();

    let base = Scenario::with_trouble(events);
    let uniform = Scenario {
        streams: 100_000,
        users: 100_000,
        ..base.clone()
    };
    let skewed = Scenario {
        stream_skew: 1.1,
        ..uniform.clone()
    };
    let cases = [
        ("25 streams", base),
        ("100k streams", uniform),
        ("100k streams, Zipf 1.1", skewed),
    ];
    // ONLY=<run name> runs just that case (for profiling), e.g.
    // ONLY="100k streams"; the big-stream part is then skipped, and
    // ONLY="big stream" runs only the big-stream part.
    let only = std::env::var("ONLY").ok();
    let runs: Vec<Run> = cases
        .into_iter()
        .filter(|(name, _)| only.as_deref().is_none_or(|o| *name == o))
        .map(|(name, scenario)| stream_count_run(&broker, &postgres, name, scenario))
        .collect();
    println!("{events} events each, {storage}, read from offset 0 into a fresh database");
    println!(
        "{:<24} {:>10} {:>7} {:>12} {:>12}",
        "run", "events/s", "ratio", "WAL B/event", "peak RSS MB"
    );
    for run in &runs {
        println!(
            "{:<24} {:>10.0} {:>7.2} {:>12.0} {:>12.1}",
            run.name,
            run.rate,
            run.rate / runs[0].rate,
            run.wal_per_event,
            run.rss_kib as f64 / 1024.0
        );
    }
    for run in &runs {
        print!("{}: rows written per table\n{}", run.name, run.writes);
    }
    if only.as_deref().is_none_or(|o| o == "big stream") {
        big_stream(&postgres);
    }
}
