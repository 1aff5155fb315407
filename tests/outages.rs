//! Outages: while Postgres or the broker is away (stopped, or frozen with
//! its connections open), `/ready` fails naming the reason, consumption
//! pauses at the uncommitted-work bound or on a stream that needs a restore
//! (memory stays bounded), the metrics show the stall, and everything
//! resumes by itself with exact results when the service returns.

mod harness;

use std::time::Duration;

use harness::{committed_messages, wait_for_truth, Scenario, Serve, ServeConfig, Services};
use streamstats_actors::generator::Message;

const PARTITIONS: i32 = 3;
const EVENTS: u64 = 60_000;
const BOUND: u64 = 1_000;
/// One poll batch may land on top of the bound before the pause.
const MAX_BATCH: u64 = 5_000;

fn ready_problems(serve: &Serve) -> Option<String> {
    let (status, body) = serve.get("/ready");
    (status == 503).then_some(body)
}

/// Reading pauses at the uncommitted-work bound while checkpoints cannot
/// commit: the streams of the events produced during the outage are in
/// memory, so only the bound stops the reading.
#[test]
fn postgres_outage_pauses_consumption_fails_ready_and_recovers() {
    let mut services = Services::start();
    let (messages, expected) = Scenario::with_trouble(EVENTS).messages();
    let (first, later) = messages.split_at(messages.len() / 2);
    // Idle finalization must not close the first half's windows in the
    // moments between its end and the second half (their events would be
    // late); the product's default leaves a wide margin.
    let mut serve = first_half_then_outage(&mut services, "outage", first, later, "30s");

    harness::wait_for("consumption to pause", Duration::from_secs(60), || {
        (serve.metric("streamstats_consumer_paused") == Some(1.0)).then_some(())
    });
    assert_uncommitted_within_bound(&serve);
    wait_for_a_failed_checkpoint(&serve);
    assert_eq!(serve.metric("api_db_ok"), Some(0.0));

    services.postgres.resume();
    wait_for_truth(&mut serve, &expected, Duration::from_secs(240));
    harness::wait_for("/ready to recover", Duration::from_secs(30), || {
        (serve.get("/ready").0 == 200).then_some(())
    });
    assert_eq!(serve.metric("streamstats_consumer_paused"), Some(0.0));
}

/// Streams first seen while Postgres is down must be looked up there before
/// their events apply: reading pauses on them (the incarnation is not
/// thrown away), and everything resumes exactly when Postgres returns.
#[test]
fn streams_that_need_a_restore_during_a_postgres_outage_pause_reading() {
    let mut services = Services::start();
    let (messages, expected) = Scenario::with_trouble(EVENTS).messages();
    // Half the streams, whole (each stream's own order is all the truth
    // depends on); the other half arrives during the outage.
    let odd_stream = |m: &&Message| {
        let stream = m.key.trim_end_matches("-elsewhere");
        stream
            .rsplit('-')
            .next()
            .and_then(|n| n.parse::<u32>().ok())
            .is_some_and(|n| n % 2 == 1)
    };
    let (later, first): (Vec<&Message>, Vec<&Message>) = messages.iter().partition(odd_stream);
    let own = |ms: Vec<&Message>| ms.into_iter().cloned().collect::<Vec<Message>>();
    let (first, later) = (own(first), own(later));
    let mut serve = first_half_then_outage(&mut services, "restore_outage", &first, &later, "1s");

    harness::wait_for("reading to pause", Duration::from_secs(60), || {
        (serve.metric("streamstats_consumer_paused") == Some(1.0)).then_some(())
    });
    assert_uncommitted_within_bound(&serve);
    wait_for_a_failed_checkpoint(&serve);
    assert_eq!(
        serve.metric("streamstats_actor_restarts_total{actor=\"consumer\"}"),
        Some(0.0),
        "a restore that cannot be read pauses the consumer instead of restarting it"
    );

    services.postgres.resume();
    wait_for_truth(&mut serve, &expected, Duration::from_secs(240));
    assert_eq!(serve.metric("streamstats_consumer_paused"), Some(0.0));
}

/// A frozen Postgres (SIGSTOP: connections open, nothing answers) must not
/// hang the service: probes answer 503 within their patience, reading
/// pauses, and everything resumes exactly when it thaws.
#[test]
fn a_frozen_postgres_fails_probes_in_time_and_recovers() {
    let services = Services::start();
    let (messages, expected) = Scenario::with_trouble(EVENTS).messages();
    let (first, later) = messages.split_at(messages.len() / 2);
    let (mut serve, topic) = first_half_committed(&services, "frozen_pg", first, "30s");
    // The probes' pool holds an idle connection, whose check at checkout
    // will wait on the frozen server.
    assert_eq!(serve.get("/health").0, 200);
    services.postgres.freeze();
    services.broker.produce_messages(&topic, later);

    for route in ["/health", "/ready", "/prometheus"] {
        let asked = std::time::Instant::now();
        let (status, body) = serve.get(route);
        println!("{route} answered {status} in {:?}", asked.elapsed());
        assert!(asked.elapsed() < Duration::from_secs(5), "{route} hung");
        if route != "/prometheus" {
            assert_eq!(status, 503, "{route}: {body}");
        }
    }
    harness::wait_for("reading to pause", Duration::from_secs(60), || {
        (serve.metric("streamstats_consumer_paused") == Some(1.0)).then_some(())
    });
    assert_uncommitted_within_bound(&serve);

    services.postgres.thaw();
    wait_for_truth(&mut serve, &expected, Duration::from_secs(240));
    harness::wait_for("/ready to recover", Duration::from_secs(30), || {
        (serve.get("/ready").0 == 200).then_some(())
    });
}

/// Produces `first` to a fresh topic, starts `serve` on it (with the
/// uncommitted bound and `idle_finalize`), and waits until all of `first`
/// is committed. Returns the service and its topic.
fn first_half_committed(
    services: &Services,
    name: &str,
    first: &[Message],
    idle_finalize: &str,
) -> (Serve, String) {
    assert!(!first.is_empty());
    let topic = services.broker.create_topic(name, PARTITIONS);
    let db = services.postgres.create_database(name);
    services.broker.produce_messages(&topic, first);
    let cfg = ServeConfig::new(&db, &services.broker, &topic)
        .with_env("MAX_UNCOMMITTED_EVENTS", &BOUND.to_string())
        .with_env("IDLE_FINALIZE", idle_finalize);
    let mut serve = Serve::start(cfg);
    let url = serve.cfg.database_url.clone();
    harness::wait_for("the first half committed", Duration::from_secs(120), || {
        serve.process.assert_running();
        (committed_messages(&url) == first.len() as i64).then_some(())
    });
    (serve, topic)
}

/// [`first_half_committed`], then Postgres stops, `later` is produced, and
/// `/ready` names the database.
fn first_half_then_outage(
    services: &mut Services,
    name: &str,
    first: &[Message],
    later: &[Message],
    idle_finalize: &str,
) -> Serve {
    assert!(!later.is_empty());
    let (serve, topic) = first_half_committed(services, name, first, idle_finalize);
    services.postgres.stop_immediate();
    services.broker.produce_messages(&topic, later);
    let body = harness::wait_for(
        "/ready to fail on the database",
        Duration::from_secs(30),
        || ready_problems(&serve).filter(|b| b.contains("database unreachable")),
    );
    assert!(body.contains(r#""database":false"#), "{body}");
    serve
}

/// Memory stays bounded: at most one poll batch over the bound.
fn assert_uncommitted_within_bound(serve: &Serve) {
    let uncommitted = serve
        .metric("streamstats_uncommitted_events")
        .expect("gauge");
    assert!(
        uncommitted as u64 <= BOUND + MAX_BATCH,
        "uncommitted {uncommitted} exceeds the bound"
    );
}

/// The outage shows in the checkpoint outcomes.
fn wait_for_a_failed_checkpoint(serve: &Serve) {
    harness::wait_for(
        "a failed checkpoint to be counted",
        Duration::from_secs(60),
        || {
            let failed = serve.metric("streamstats_checkpoints_total{outcome=\"failed\"}");
            (failed.unwrap_or(0.0) > 0.0).then_some(())
        },
    );
}

#[test]
fn broker_outage_fails_ready_and_recovers() {
    let mut services = Services::start();
    let topic = services.broker.create_topic("broker_outage", PARTITIONS);
    let db = services.postgres.create_database("broker_outage");
    let expected = Scenario::with_trouble(EVENTS).produce(&services.broker, &topic, PARTITIONS);
    let mut serve = Serve::start(ServeConfig::new(&db, &services.broker, &topic));
    let url = serve.cfg.database_url.clone();
    harness::wait_for("some progress", Duration::from_secs(120), || {
        serve.process.assert_running();
        (committed_messages(&url) > 0).then_some(())
    });
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

/// How long the broker stays frozen.
const BROKER_FROZEN_FOR: Duration = Duration::from_secs(10);

/// A frozen broker (SIGSTOP: connections open, nothing answers) while the
/// consumer polls it: everything resumes exactly when it wakes.
#[test]
fn a_frozen_broker_resumes_exactly() {
    let services = Services::start();
    let (messages, expected) = Scenario::with_trouble(EVENTS).messages();
    let (first, later) = messages.split_at(messages.len() / 2);
    let (mut serve, topic) = first_half_committed(&services, "frozen_broker", first, "30s");
    // Part of the rest arrives just before the freeze, so the consumer has
    // work in hand when the broker stops answering.
    let (before, after) = later.split_at(later.len() / 4);
    services.broker.produce_messages(&topic, before);
    services.broker.signal("STOP");
    // The fault's length (shorter than IDLE_FINALIZE, whose expiry would
    // close the first half's windows before the second half arrives).
    std::thread::sleep(BROKER_FROZEN_FOR);
    services.broker.signal("CONT");
    services.broker.produce_messages(&topic, after);
    wait_for_truth(&mut serve, &expected, Duration::from_secs(240));
    assert_eq!(serve.process.try_wait(), None, "serve is still running");
}
