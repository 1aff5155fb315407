//! Clocks that disagree: `serve`'s wall clock far ahead of the data it
//! holds, and a partition claim stamped far in the future by another
//! instance's clock. Retention counts ages back from the newest row (or the
//! clock, if earlier), so a clock far ahead deletes nothing recent; a claim
//! from the future does not hold the partitions for ever. The tables stay
//! equal to ground truth.

mod harness;

use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use harness::{check_truth, wait_for_truth, Scenario, Serve, ServeConfig, Services};
use streamstats_actors::store;

const PARTITIONS: i32 = 3;
const DRAIN: Duration = Duration::from_secs(240);

const COMPLETED_PASSES: &str = "streamstats_retention_passes_total{outcome=\"completed\"}";

/// Window rows older than the scenario's newest rows by more than
/// `RETENTION` (30d), and a dead letter received 30 days ago by the
/// database's clock (past `DEAD_LETTER_RETENTION`, 7d; the scenario's
/// letters are stamped by that clock too, so they stay): retention must
/// still delete these.
const OLD_ROWS: &str = "
INSERT INTO stream_metrics_minute (window_start, window_end, stream_id, active_viewers,
    chat_messages, donations_cents, events, chat_chars, donations, viewer_joins,
    viewer_leaves, unique_chatters, is_final)
SELECT t, t + interval '1 minute', 'old-' || s, 1, 0, 0, 1, 0, 0, 1, 0, 0, true
FROM generate_series(0, 9) AS s,
     LATERAL (SELECT timestamptz '2025-10-01T00:00:00Z' + s * interval '1 minute' AS t) AS w;
INSERT INTO dead_letters (topic, partition, kafka_offset, reason, error, payload, received_at)
VALUES ('elsewhere', 0, 0, 'old', 'test', '\\x00', now() - interval '30 days');";

/// The scenario's events are from December 2025 (a virtual clock), so the
/// wall clock is about a year ahead of them: with `RETENTION=30d` counted
/// from the clock, every row would go.
#[test]
fn retention_with_a_clock_far_ahead_of_the_data_deletes_only_what_is_old_against_the_newest_rows() {
    let services = Services::start();
    let topic = services.broker.create_topic("clock_retention", PARTITIONS);
    let db = services.postgres.create_database("clock_retention");
    let mut conn = PgConnection::establish(&db).expect("connect");
    store::run_migrations(&mut conn).expect("migrated");
    conn.batch_execute(OLD_ROWS).expect("old rows");

    let expected = Scenario::with_trouble(20_000).produce(&services.broker, &topic, PARTITIONS);
    let mut serve = Serve::start(
        ServeConfig::new(&db, &services.broker, &topic)
            .with_env("RETENTION", "30d")
            .with_env("DEAD_LETTER_RETENTION", "7d")
            .with_env("RETENTION_INTERVAL", "200ms"),
    );
    // Equal to ground truth: the old rows are gone and the scenario's are
    // all there.
    wait_for_truth(&mut serve, &expected, DRAIN);
    // And they stay there through later passes.
    let passes = serve.metric(COMPLETED_PASSES).unwrap_or(0.0);
    harness::wait_for("two more retention passes", Duration::from_secs(60), || {
        serve.process.assert_running();
        (serve.metric(COMPLETED_PASSES).unwrap_or(0.0) >= passes + 2.0).then_some(())
    });
    if let Err(diff) = check_truth(&mut serve, &expected, Duration::ZERO) {
        panic!(
            "retention removed recent rows: {diff}\nserve log:\n{}",
            serve.process.log_tail()
        );
    }
    assert_eq!(
        serve.metric("streamstats_retention_rows_removed_total{table=\"stream_metrics_minute\"}"),
        Some(10.0)
    );
    assert_eq!(
        serve.metric("streamstats_retention_rows_removed_total{table=\"dead_letters\"}"),
        Some(1.0)
    );
    assert_eq!(serve.terminate(), Some(0));
}

/// Another instance, whose clock was a year ahead, stamped its claim on
/// every partition with that clock and died. A claim from the future has
/// no age to judge: `serve` must take the partitions, not stand by for a
/// year.
#[test]
fn a_claim_stamped_a_year_ahead_by_a_dead_instance_does_not_hold_the_partitions() {
    let services = Services::start();
    let topic = services.broker.create_topic("clock_lease", PARTITIONS);
    let db = services.postgres.create_database("clock_lease");
    let expected = Scenario::with_trouble(20_000).produce(&services.broker, &topic, PARTITIONS);
    let cfg = ServeConfig::new(&db, &services.broker, &topic).with_env("OWNER_LEASE", "3s");
    let mut conn = PgConnection::establish(&db).expect("connect");
    store::run_migrations(&mut conn).expect("migrated");
    conn.batch_execute(&format!(
        "INSERT INTO partition_owners (group_id, topic, partition, owner, generation, updated_at)
         SELECT '{}', '{topic}', p, 'elsewhere:8000#1', 1, now() + interval '365 days'
         FROM generate_series(0, {}) AS p",
        cfg.group_id,
        PARTITIONS - 1
    ))
    .expect("claims from the future");

    let started = Instant::now();
    let mut serve = Serve::start(cfg);
    let took = serve.wait_first_commit(started, Duration::from_secs(60));
    println!("serve took the partitions and committed {took:?} after start");
    wait_for_truth(&mut serve, &expected, DRAIN);
    assert_eq!(serve.terminate(), Some(0));
}
