//! Crash recovery on the embedded broker (tansu): `kill -9` of `serve`
//! several times in a row, once during start-up, each restart committing
//! again within the 5 s of SPEC §4, and the final tables equal to ground
//! truth. The kill instants are drawn from a seed printed by the test
//! (`RESTART_SEED` replays one). A stand-by takes over from an instance
//! that died or froze; a frozen one that wakes finds itself fenced off.

mod harness;

use std::time::{Duration, Instant};

use harness::{check_truth, Scenario, Serve, ServeConfig, Services};
use rand::{Rng, SeedableRng};
use rand_pcg::Pcg64;

const PARTITIONS: i32 = 3;
const EVENTS: u64 = 120_000;
/// SPEC §4: a restarted single `serve` resumes within 5 s of a kill -9.
const RESUME_WITHIN: Duration = Duration::from_secs(5);

fn seed() -> u64 {
    std::env::var("RESTART_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1)
        })
}

#[test]
fn three_kills_in_a_row_each_restart_commits_within_five_seconds() {
    let seed = seed();
    println!("RESTART_SEED={seed}");
    let mut rng = Pcg64::seed_from_u64(seed);
    let services = Services::start();
    let topic = services.broker.create_topic("restarts", PARTITIONS);
    let db = services.postgres.create_database("restarts");
    let expected = Scenario::with_trouble(EVENTS).produce(&services.broker, &topic, PARTITIONS);
    let cfg = ServeConfig::new(&db, &services.broker, &topic);

    // Kill 1 lands during start-up, before or while it claims the
    // partitions; kills 2 and 3 at a random instant after it resumed.
    let mut serve = Serve::spawn(cfg);
    std::thread::sleep(Duration::from_millis(rng.random_range(20..1_500)));
    let mut recoveries = Vec::new();
    for kill in 1..=3 {
        if kill > 1 {
            std::thread::sleep(Duration::from_millis(rng.random_range(0..2_500)));
        }
        let (restarted, took) = serve.crash_and_restart(Duration::from_secs(60));
        serve = restarted;
        println!("restart after kill {kill}: committing again after {took:?}");
        recoveries.push(took);
    }
    if let Err(diff) = check_truth(&mut serve, &expected, Duration::from_secs(240)) {
        panic!("{diff}\nserve log:\n{}", serve.process.log_tail());
    }
    for (n, took) in recoveries.iter().enumerate() {
        assert!(
            *took <= RESUME_WITHIN,
            "restart {} took {took:?} to commit again (seed {seed}); all: {recoveries:?}",
            n + 1
        );
    }
    assert_eq!(serve.terminate(), Some(0));
}

#[test]
fn a_second_instance_stands_by_and_takes_over_when_the_first_dies() {
    let services = Services::start();
    let topic = services.broker.create_topic("standby", PARTITIONS);
    let db = services.postgres.create_database("standby");
    let expected = Scenario::with_trouble(40_000).produce(&services.broker, &topic, PARTITIONS);
    let active_cfg = ServeConfig::new(&db, &services.broker, &topic).with_env("OWNER_LEASE", "3s");
    let mut standby_cfg =
        ServeConfig::new(&db, &services.broker, &topic).with_env("OWNER_LEASE", "3s");
    standby_cfg.group_id = active_cfg.group_id.clone();
    let mut active = Serve::start(active_cfg);
    active.wait_first_commit(Instant::now(), Duration::from_secs(60));
    let mut standby = Serve::start(standby_cfg);
    // The stand-by answers but owns nothing while the active one refreshes its claim.
    harness::wait_for(
        "the stand-by to report its state",
        Duration::from_secs(30),
        || standby.try_metric("streamstats_partitions_assigned"),
    );
    assert_eq!(
        standby.try_metric("streamstats_partitions_assigned"),
        Some(0.0),
        "the stand-by must not own partitions while the active instance is alive"
    );
    assert_eq!(
        standby.try_metric("streamstats_checkpoints_total{outcome=\"committed\"}"),
        Some(0.0),
        "the stand-by must not commit while the active instance is alive"
    );
    active.kill9();
    let took = standby.wait_first_commit(Instant::now(), Duration::from_secs(60));
    println!("stand-by took over after {took:?}");
    if let Err(diff) = check_truth(&mut standby, &expected, Duration::from_secs(240)) {
        panic!("{diff}\nserve log:\n{}", standby.process.log_tail());
    }
    assert_eq!(standby.terminate(), Some(0));
}

/// A frozen instance (SIGSTOP) stops refreshing its claim, so the stand-by
/// takes its partitions over. Woken up (SIGCONT), with whatever it held
/// when it froze and events still to read, it must find itself fenced off,
/// stand by in turn, and never write over the new owner's results.
#[test]
fn a_frozen_instance_wakes_fenced_off_and_the_tables_stay_exact() {
    let services = Services::start();
    let topic = services.broker.create_topic("frozen", PARTITIONS);
    let db = services.postgres.create_database("frozen");
    let (messages, expected) = Scenario::with_trouble(40_000).messages();
    let (first, later) = messages.split_at(messages.len() / 2);
    services.broker.produce_messages(&topic, first);
    // Idle finalization must not close the first half's windows before the
    // second half arrives (its events would be late); the default leaves a
    // wide margin.
    let cfg = || {
        ServeConfig::new(&db, &services.broker, &topic)
            .with_env("OWNER_LEASE", "3s")
            .with_env("IDLE_FINALIZE", "30s")
    };
    let active_cfg = cfg();
    let mut standby_cfg = cfg();
    standby_cfg.group_id = active_cfg.group_id.clone();
    let mut active = Serve::start(active_cfg);
    let url = active.cfg.database_url.clone();
    harness::wait_for("the first half committed", Duration::from_secs(120), || {
        active.process.assert_running();
        (harness::committed_messages(&url) == first.len() as i64).then_some(())
    });
    let mut standby = Serve::start(standby_cfg);
    harness::wait_for(
        "the stand-by to report its state",
        Duration::from_secs(30),
        || standby.try_metric("streamstats_partitions_assigned"),
    );

    // Part of the rest arrives just before the freeze, so the frozen
    // instance is likely to hold uncommitted work or a checkpoint in flight.
    let (before, after) = later.split_at(later.len() / 4);
    services.broker.produce_messages(&topic, before);
    active.process.signal("STOP");
    services.broker.produce_messages(&topic, after);
    let took = standby.wait_first_commit(Instant::now(), Duration::from_secs(60));
    println!("stand-by took over from the frozen instance after {took:?}");
    active.process.signal("CONT");

    harness::wait_for(
        "the woken instance to give its partitions up",
        Duration::from_secs(60),
        || {
            active.process.assert_running();
            (active.try_metric("streamstats_partitions_assigned") == Some(0.0)).then_some(())
        },
    );
    if let Err(diff) = check_truth(&mut standby, &expected, Duration::from_secs(240)) {
        panic!(
            "{diff}\nstand-by log:\n{}\nwoken instance log:\n{}",
            standby.process.log_tail(),
            active.process.log_tail()
        );
    }
    assert_eq!(
        standby.try_metric("streamstats_partitions_assigned"),
        Some(PARTITIONS as f64),
        "the stand-by keeps what it took over"
    );
    assert_eq!(active.terminate(), Some(0));
    assert_eq!(standby.terminate(), Some(0));
}
