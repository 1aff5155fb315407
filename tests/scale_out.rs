//! Scale-out: two `serve` processes in one consumer group split the
//! partitions; state and offsets move through Postgres, so the tables equal
//! ground truth when one of them leaves midway and the other takes over its
//! partitions. (Taking over from a kill -9'd member relies on the broker
//! expiring its session; tansu 0.6 keeps dead members in the group, so that
//! case is not tested here.)

mod harness;

use std::time::Duration;

use harness::{committed_messages, wait_for_truth, Scenario, Serve, ServeConfig, Services};

const PARTITIONS: i32 = 4;
const EVENTS: u64 = 100_000;

#[test]
fn two_processes_split_the_partitions_and_hand_over_when_one_leaves() {
    let services = Services::start();
    let topic = services.broker.create_topic("scale", PARTITIONS);
    let db = services.postgres.create_database("scale");
    let expected = Scenario::with_trouble(EVENTS).produce(&services.broker, &topic, PARTITIONS);
    let first_cfg =
        ServeConfig::new(&db, &services.broker, &topic).with_env("KAFKA_ASSIGNMENT", "group");
    let mut second_cfg =
        ServeConfig::new(&db, &services.broker, &topic).with_env("KAFKA_ASSIGNMENT", "group");
    second_cfg.group_id = first_cfg.group_id.clone();
    let mut first = Serve::start(first_cfg);
    let mut second = Serve::start(second_cfg);

    // Both get partitions.
    harness::wait_for(
        "both processes to own partitions",
        Duration::from_secs(120),
        || {
            let a = first
                .metric("streamstats_partitions_assigned")
                .unwrap_or(0.0);
            let b = second
                .metric("streamstats_partitions_assigned")
                .unwrap_or(0.0);
            (a > 0.0 && b > 0.0).then_some(())
        },
    );
    harness::wait_for(
        "a third of the run committed",
        Duration::from_secs(240),
        || (committed_messages(&db) >= (EVENTS / 3) as i64).then_some(()),
    );
    assert_eq!(first.terminate(), Some(0));
    wait_for_truth(&mut second, &expected, Duration::from_secs(300));
}
