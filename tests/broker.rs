//! The broker itself: offsets must be exact when a consumer starts in the
//! middle of a produced batch. A regression here is a broker failure, not a
//! mystery in the pipeline.

mod harness;

use std::time::Duration;

use harness::Broker;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::{Message, Offset, TopicPartitionList};

const MESSAGES: i64 = 20_000;

fn produce_numbered(broker: &Broker, topic: &str) {
    let payloads: Vec<Vec<u8>> = (0..MESSAGES).map(|i| i.to_string().into_bytes()).collect();
    broker.produce(topic, b"k", &payloads);
}

fn first_message_from(broker: &Broker, topic: &str, offset: i64) -> (i64, String) {
    let consumer: BaseConsumer = broker
        .client_config()
        .set("group.id", "offset-check")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Offset(offset))
        .expect("valid partition");
    consumer.assign(&tpl).expect("assign");
    harness::wait_for("a message", Duration::from_secs(30), || {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => Some((
                m.offset(),
                String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
            )),
            Some(Err(e)) => panic!("consume error: {e}"),
            None => None,
        }
    })
}

#[test]
fn consumer_resuming_mid_batch_gets_the_offset_it_asked_for() {
    let broker = Broker::start();
    let topic = broker.create_topic("offsets", 1);
    produce_numbered(&broker, &topic);

    let consumer: BaseConsumer = broker.client_config().create().expect("consumer");
    let (low, high) = consumer
        .fetch_watermarks(&topic, 0, Duration::from_secs(10))
        .expect("watermarks");
    assert_eq!((low, high), (0, MESSAGES));

    for offset in [0, 3, 7_345, 12_001, MESSAGES - 1] {
        let (got, payload) = first_message_from(&broker, &topic, offset);
        assert_eq!(got, offset, "asked for offset {offset}");
        assert_eq!(payload, offset.to_string(), "payload at offset {offset}");
    }
}
