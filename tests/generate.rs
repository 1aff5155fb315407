//! The generator through the real broker: what `streamstats generate`
//! produces is byte for byte what the in-process generator produces, parses
//! back to the same events, and the ground truth computed from the consumed
//! log equals the expected tables the generator wrote.

mod harness;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use harness::{Broker, Scenario};
use rdkafka::Message;
use streamstats_actors::event::Event;
use streamstats_actors::truth::Truth;

const PARTITIONS: i32 = 3;

/// One consumed message: key, payload, log timestamp.
type Logged = (String, Vec<u8>, Option<DateTime<Utc>>);

/// Every message of `topic`, per partition, in log order.
fn consume_all(broker: &Broker, topic: &str, total: u64) -> BTreeMap<i32, Vec<Logged>> {
    let consumer = broker.consumer_from_start(topic, PARTITIONS);
    let mut log: BTreeMap<i32, Vec<Logged>> = BTreeMap::new();
    let mut seen = 0u64;
    harness::wait_for("every produced message", Duration::from_secs(120), || {
        while let Some(result) = consumer.poll(Duration::from_millis(100)) {
            let m = result.expect("consume");
            let entries = log.entry(m.partition()).or_default();
            assert_eq!(
                m.offset(),
                i64::try_from(entries.len()).expect("fits"),
                "gapless log"
            );
            let key = String::from_utf8(m.key().expect("keyed").to_vec()).expect("utf-8 key");
            let at = m
                .timestamp()
                .to_millis()
                .and_then(DateTime::<Utc>::from_timestamp_millis);
            entries.push((key, m.payload().unwrap_or_default().to_vec(), at));
            seen += 1;
        }
        (seen >= total).then_some(())
    });
    assert_eq!(seen, total, "no more messages than produced");
    log
}

#[test]
fn generated_run_round_trips_through_the_broker_to_the_same_truth() {
    let broker = Broker::start();
    let topic = broker.create_topic("roundtrip", PARTITIONS);
    let scenario = Scenario::with_trouble(100_000);
    let expected = scenario.produce(&broker, &topic, PARTITIONS);

    // The in-process generator makes the same messages and the same truth.
    let (messages, in_process) = scenario.messages();
    assert_eq!(expected, in_process, "generator binary and library agree");
    assert_eq!(expected.messages, scenario.count);
    assert!(expected.dead_letters.get("late").copied().unwrap_or(0) > 500);
    assert!(expected.dead_letter_total() > 2_000);

    let log = consume_all(&broker, &topic, scenario.count);

    // Per key, the consumed payloads are the generated payloads, in order,
    // and every key lives in exactly one partition.
    let mut produced_by_key: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
    for m in &messages {
        produced_by_key.entry(&m.key).or_default().push(&m.payload);
    }
    let mut consumed_by_key: BTreeMap<&str, Vec<&[u8]>> = BTreeMap::new();
    let mut partition_of: BTreeMap<&str, i32> = BTreeMap::new();
    for (partition, entries) in &log {
        for (key, payload, _) in entries {
            consumed_by_key.entry(key).or_default().push(payload);
            assert_eq!(*partition_of.entry(key).or_insert(*partition), *partition);
        }
    }
    assert_eq!(produced_by_key, consumed_by_key);

    // Consumed payloads parse back to the same events as the generated ones.
    let now = Utc::now();
    for (key, payloads) in &consumed_by_key {
        for (consumed, produced) in payloads.iter().zip(&produced_by_key[key]) {
            assert_eq!(Event::parse(consumed, now), Event::parse(produced, now));
        }
    }

    // Ground truth recomputed from the broker's log (keys and message
    // timestamps included) equals the generator's.
    let mut truth = Truth::new(TimeDelta::seconds(scenario.allowed_lateness_secs), now);
    for entries in log.values() {
        for (key, payload, at) in entries {
            truth.observe_message(Some(key.as_bytes()), payload, *at);
        }
    }
    assert_eq!(truth.finish(), expected);
}
