//! Outages: while Postgres or the broker is away, `/ready` fails naming the
//! reason, consumption pauses at the uncommitted-work bound (memory stays
//! bounded), the metrics show the stall, and everything resumes by itself
//! with exact results when the service returns.

mod harness;

use std::time::Duration;

use harness::{committed_messages, wait_for_truth, Scenario, Serve, ServeConfig, Services};

const PARTITIONS: i32 = 3;
const EVENTS: u64 = 60_000;
const BOUND: u64 = 1_000;
/// One poll batch may land on top of the bound before the pause.
const MAX_BATCH: u64 = 5_000;

fn start(services: &Services) -> (Serve, streamstats_actors::truth::Expected) {
    let topic = services.broker.create_topic("outage", PARTITIONS);
    let db = services.postgres.create_database("outage");
    let expected = Scenario::with_trouble(EVENTS).produce(&services.broker, &topic, PARTITIONS);
    let cfg = ServeConfig::new(&db, &services.broker, &topic)
        .with_env("MAX_UNCOMMITTED_EVENTS", &BOUND.to_string());
    let mut serve = Serve::start(cfg);
    let url = serve.cfg.database_url.clone();
    harness::wait_for("some progress", Duration::from_secs(120), || {
        serve.process.assert_running();
        (committed_messages(&url) >= (EVENTS / 10) as i64).then_some(())
    });
    (serve, expected)
}

fn ready_problems(serve: &Serve) -> Option<String> {
    let (status, body) = serve.get("/ready");
    (status == 503).then_some(body)
}

#[test]
fn postgres_outage_pauses_consumption_fails_ready_and_recovers() {
    let mut services = Services::start();
    let (mut serve, expected) = start(&services);
    services.postgres.stop_immediate();

    let body = harness::wait_for(
        "/ready to fail on the database",
        Duration::from_secs(30),
        || ready_problems(&serve).filter(|b| b.contains("database unreachable")),
    );
    assert!(body.contains(r#""database":false"#), "{body}");
    harness::wait_for("consumption to pause", Duration::from_secs(60), || {
        (serve.metric("streamstats_consumer_paused") == Some(1.0)).then_some(())
    });
    let uncommitted = serve
        .metric("streamstats_uncommitted_events")
        .expect("gauge");
    assert!(
        uncommitted as u64 <= BOUND + MAX_BATCH,
        "uncommitted {uncommitted} exceeds the bound"
    );
    harness::wait_for(
        "a failed checkpoint to be counted",
        Duration::from_secs(60),
        || {
            let failed = serve.metric("streamstats_checkpoints_total{outcome=\"failed\"}");
            (failed.unwrap_or(0.0) > 0.0).then_some(())
        },
    );
    assert_eq!(serve.metric("api_db_ok"), Some(0.0));

    services.postgres.resume();
    wait_for_truth(&mut serve, &expected, Duration::from_secs(240));
    harness::wait_for("/ready to recover", Duration::from_secs(30), || {
        (serve.get("/ready").0 == 200).then_some(())
    });
    assert_eq!(serve.metric("streamstats_consumer_paused"), Some(0.0));
}

#[test]
fn broker_outage_fails_ready_and_recovers() {
    let mut services = Services::start();
    let (mut serve, expected) = start(&services);
    services.broker.kill();

    let body = harness::wait_for(
        "/ready to fail on the broker",
        Duration::from_secs(60),
        || ready_problems(&serve).filter(|b| b.contains("broker unreachable")),
    );
    assert!(body.contains(r#""broker":false"#), "{body}");

    services.broker.resume();
    wait_for_truth(&mut serve, &expected, Duration::from_secs(240));
    harness::wait_for("/ready to recover", Duration::from_secs(60), || {
        (serve.get("/ready").0 == 200).then_some(())
    });
}
