//! The pipeline end to end on the real broker and real Postgres: a
//! generated run with out-of-order, late, malformed and duplicated events
//! ends with tables equal to the generator's ground truth, every column of
//! every row, also across a clean stop, a kill -9 and injected panics.

mod harness;

use std::time::Duration;

use harness::{committed_messages, wait_for_truth, Scenario, Serve, ServeConfig, Services};

const PARTITIONS: i32 = 3;
const EVENTS: u64 = 200_000;
const DRAIN: Duration = Duration::from_secs(240);

/// Produces the scenario, then starts `serve` with `env`.
fn setup(env: &[(&str, &str)]) -> (Services, Serve, streamstats_actors::truth::Expected) {
    let services = Services::start();
    let topic = services.broker.create_topic("events", PARTITIONS);
    let db = services.postgres.create_database("pipeline");
    let expected = Scenario::with_trouble(EVENTS).produce(&services.broker, &topic, PARTITIONS);
    let mut cfg = ServeConfig::new(&db, &services.broker, &topic);
    for (k, v) in env {
        cfg = cfg.with_env(k, v);
    }
    let serve = Serve::start(cfg);
    (services, serve, expected)
}

/// Waits until a checkpoint covering at least `fraction` of the run committed.
fn wait_for_progress(serve: &mut Serve, fraction: f64) {
    let target = (EVENTS as f64 * fraction) as i64;
    let url = serve.cfg.database_url.clone();
    harness::wait_for("a checkpoint past the midpoint", DRAIN, || {
        serve.process.assert_running();
        (committed_messages(&url) >= target).then_some(())
    });
}

#[test]
fn drains_to_exact_ground_truth_and_metrics_agree() {
    let (_services, mut serve, expected) = setup(&[]);
    wait_for_truth(&mut serve, &expected, DRAIN);
    assert_eq!(committed_messages(&serve.cfg.database_url), EVENTS as i64);

    // The pipeline's own metrics tell the same story.
    assert_eq!(
        serve.metric("streamstats_events_consumed_total"),
        Some(EVENTS as f64)
    );
    for (reason, n) in &expected.dead_letters {
        let series = format!("streamstats_events_rejected_total{{reason=\"{reason}\"}}");
        assert_eq!(serve.metric(&series), Some(*n as f64), "{series}");
    }
    assert_eq!(
        serve.metric("streamstats_events_late_total"),
        expected.dead_letters.get("late").map(|n| *n as f64)
    );
    let committed = serve
        .metric("streamstats_checkpoints_total{outcome=\"committed\"}")
        .expect("checkpoint counter");
    assert!(committed > 0.0);
    harness::wait_for("consumer lag to reach 0", Duration::from_secs(30), || {
        (0..PARTITIONS)
            .all(|p| {
                serve.metric(&format!(
                    "streamstats_consumer_lag_messages{{partition=\"{p}\"}}"
                )) == Some(0.0)
            })
            .then_some(())
    });
    assert_eq!(serve.terminate(), Some(0), "SIGTERM exits 0");
}

#[test]
fn sigterm_midway_then_restart_gives_identical_tables() {
    let (_services, mut serve, expected) = setup(&[]);
    wait_for_progress(&mut serve, 0.4);
    assert_eq!(
        serve.terminate(),
        Some(0),
        "SIGTERM exits 0 after the final checkpoint"
    );
    let mut serve = serve.restart();
    wait_for_truth(&mut serve, &expected, DRAIN);
}

#[test]
fn sigkill_midway_then_restart_gives_identical_tables() {
    let (_services, mut serve, expected) = setup(&[]);
    wait_for_progress(&mut serve, 0.4);
    serve.kill9();
    let mut serve = serve.restart();
    wait_for_truth(&mut serve, &expected, DRAIN);
}

fn injected_panic_is_rolled_back(actor: &str, at: &str) {
    let plan = format!("{actor}:{at}");
    let (_services, mut serve, expected) = setup(&[("STREAMSTATS_INJECT_PANIC", &plan)]);
    wait_for_truth(&mut serve, &expected, DRAIN);
    let restarts = serve
        .metric(&format!(
            "streamstats_actor_restarts_total{{actor=\"{actor}\"}}"
        ))
        .expect("restart counter is exported");
    assert_eq!(restarts, 1.0, "exactly one {actor} restart");
}

#[test]
fn window_actor_panic_is_rolled_back() {
    injected_panic_is_rolled_back("window", "400");
}

#[test]
fn writer_panic_is_rolled_back() {
    injected_panic_is_rolled_back("writer", "5");
}

#[test]
fn consumer_panic_is_rolled_back() {
    injected_panic_is_rolled_back("consumer", "90000");
}

#[test]
fn barriers_are_never_overtaken_by_later_batches() {
    // A checkpoint every 250 events (a quarter of the smallest bound) and
    // every 5 ms: barriers are taken from inside poll batches all the time.
    // A window actor that applied an offset at or past its barrier's copied
    // next offset refuses to answer, which restarts the pipeline (counted).
    let (_services, mut serve, expected) = setup(&[
        ("CHECKPOINT_INTERVAL", "5ms"),
        ("MAX_UNCOMMITTED_EVENTS", "1000"),
    ]);
    wait_for_truth(&mut serve, &expected, DRAIN);
    for actor in ["consumer", "window", "writer"] {
        let series = format!("streamstats_actor_restarts_total{{actor=\"{actor}\"}}");
        assert_eq!(serve.metric(&series), Some(0.0), "{series}");
    }
    let committed = serve
        .metric("streamstats_checkpoints_total{outcome=\"committed\"}")
        .expect("checkpoint counter");
    assert!(
        committed >= (EVENTS / 1_000) as f64,
        "many small checkpoints were taken: {committed}"
    );
}
