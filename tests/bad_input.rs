//! Bad input through the real pipeline: a malformed corpus interleaved with
//! valid events (and 10k distinct stream ids) ends with every bad message
//! in `dead_letters` with its reason, partition, offset and exact payload,
//! the valid ones counted exactly, and the service never stopping. Also:
//! silent streams finalize, and a producer returning days later in event
//! time does not touch older windows.

mod harness;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use diesel::prelude::*;
use harness::{wait_for_truth, Serve, ServeConfig, Services};
use streamstats_actors::store::schema::dead_letters as dl;
use streamstats_actors::truth::Truth;
use streamstats_actors::window::minute_of;

fn valid(id: usize, stream: &str, ts: &str) -> Vec<u8> {
    format!(
        r#"{{"event_id":"ok-{id}","ts":"{ts}","event_type":"chat_message","stream_id":"{stream}","user_id":"u{}","message_len":{}}}"#,
        id % 7,
        id % 50
    )
    .into_bytes()
}

/// Each bad payload with the reason it must be dead-lettered under.
fn corpus() -> Vec<(Vec<u8>, &'static str)> {
    let head = r#""event_id":"bad","ts":"2025-12-20T18:00:00Z""#;
    let donation = |amount: &str| {
        format!(r#"{{{head},"event_type":"donation","stream_id":"s","user_id":"u","amount_usd":{amount}}}"#)
            .into_bytes()
    };
    let with_ts = |ts: &str| {
        format!(r#"{{"event_id":"bad","ts":"{ts}","event_type":"stream_start","stream_id":"s"}}"#)
            .into_bytes()
    };
    let nested = format!("{}1{}", "[".repeat(20_000), "]".repeat(20_000));
    vec![
        (b"hello".to_vec(), "invalid_json"),
        (Vec::new(), "invalid_json"),
        (b"[1,2,3]".to_vec(), "invalid_json"),
        (br#"{"event_id":"x","ts":"#.to_vec(), "invalid_json"),
        (vec![0xff, 0xfe, b'{', 0x80], "invalid_utf8"),
        ([b"{\"event_id\":\"".as_slice(), &[0xc3, 0x28], b"\"}"].concat(), "invalid_utf8"),
        (br#"{"event_id":7,"ts":"2025-12-20T18:00:00Z","event_type":"stream_start","stream_id":"s"}"#.to_vec(), "wrong_type"),
        (format!(r#"{{{head},"event_type":"chat_message","stream_id":"s","user_id":"u","message_len":"5"}}"#).into_bytes(), "wrong_type"),
        (donation(r#""10.00""#), "wrong_type"),
        (format!(r#"{{"pad":"{}"}}"#, "x".repeat(100_000)).into_bytes(), "too_large"),
        (format!(r#"{{"event_id":{nested},"ts":"2025-12-20T18:00:00Z","event_type":"stream_start","stream_id":"s"}}"#).into_bytes(), "wrong_type"),
        (with_ts("0001-01-01T00:00:00Z"), "timestamp_out_of_range"),
        (with_ts("9999-12-31T23:59:59Z"), "timestamp_out_of_range"),
        (with_ts("2999-01-01T00:00:00+05:00"), "timestamp_out_of_range"),
        (with_ts("2025-02-30T00:00:00Z"), "invalid_timestamp"),
        (format!(r#"{{{head},"event_type":"stream_start","stream_id":"a\u0000b"}}"#).into_bytes(), "invalid_id"),
        (format!(r#"{{{head},"event_type":"viewer_join","stream_id":"s","user_id":"\u0000"}}"#).into_bytes(), "invalid_id"),
        (with_ts("2025-12-20T18:00:00"), "invalid_timestamp"),
        (donation("1.234"), "invalid_amount"),
        (donation("-0.01"), "invalid_amount"),
        (donation("1e30"), "invalid_amount"),
        (donation("1e400"), "invalid_amount"),
        (donation("123456789012345678901234567890.5"), "invalid_amount"),
        (format!(r#"{{{head},"event_type":"stream_start","stream_id":""}}"#).into_bytes(), "invalid_id"),
        (format!(r#"{{{head},"event_type":"stream_start","stream_id":"{}"}}"#, "s".repeat(129)).into_bytes(), "invalid_id"),
        (format!(r#"{{{head},"event_type":"raid","stream_id":"s"}}"#).into_bytes(), "unknown_event_type"),
        (format!(r#"{{{head},"event_type":"viewer_join","stream_id":"s"}}"#).into_bytes(), "missing_field"),
        (format!(r#"{{{head},"event_type":"chat_message","stream_id":"s","user_id":"u","message_len":-3}}"#).into_bytes(), "invalid_message_len"),
    ]
}

#[test]
fn malformed_corpus_is_dead_lettered_with_provenance_and_valid_events_count_exactly() {
    let services = Services::start();
    let topic = services.broker.create_topic("corpus", 1);
    let db = services.postgres.create_database("corpus");

    // Valid events between the bad ones, then 10k distinct stream ids.
    let corpus = corpus();
    let mut payloads = Vec::new();
    let mut bad_offsets = Vec::new();
    for (i, (bad, reason)) in corpus.iter().enumerate() {
        payloads.push(valid(
            i,
            "steady",
            &format!("2025-12-20T18:{:02}:00Z", i % 60),
        ));
        bad_offsets.push((payloads.len() as i64, bad.clone(), *reason));
        payloads.push(bad.clone());
    }
    for i in 0..10_000 {
        payloads.push(valid(i, &format!("s-{i}"), "2025-12-20T19:00:00Z"));
    }
    let mut truth = Truth::new(TimeDelta::minutes(10), Utc::now());
    for p in &payloads {
        truth.observe(p);
    }
    let expected = truth.finish();
    assert_eq!(expected.dead_letter_total(), corpus.len() as u64);

    services.broker.produce_events(&topic, &payloads);
    let mut serve = Serve::start(ServeConfig::new(&db, &services.broker, &topic));
    wait_for_truth(&mut serve, &expected, Duration::from_secs(240));

    let mut conn = PgConnection::establish(&db).expect("connect");
    let letters: Vec<(String, i32, i64, String, Vec<u8>)> = dl::table
        .select((
            dl::topic,
            dl::partition,
            dl::kafka_offset,
            dl::reason,
            dl::payload,
        ))
        .order(dl::kafka_offset)
        .load(&mut conn)
        .expect("dead letters");
    assert_eq!(letters.len(), bad_offsets.len());
    for ((t, partition, offset, reason, payload), (want_offset, want_payload, want_reason)) in
        letters.iter().zip(&bad_offsets)
    {
        assert_eq!(
            (t.as_str(), *partition, *offset),
            (topic.as_str(), 0, *want_offset)
        );
        assert_eq!(reason, want_reason, "offset {offset}");
        assert_eq!(
            payload, want_payload,
            "payload kept byte for byte at offset {offset}"
        );
    }
    // Every window is final, so every stream's actor leaves memory; the
    // next event of a stream restores it from Postgres.
    harness::wait_for(
        "closed streams to leave memory",
        Duration::from_secs(30),
        || (serve.metric("streamstats_window_actors") == Some(0.0)).then_some(()),
    );
    let evicted = serve
        .metric("streamstats_streams_evicted_total")
        .expect("eviction counter");
    assert!(evicted >= 10_001.0, "every stream left memory: {evicted}");
    assert_eq!(
        serve.metric("streamstats_actor_restarts_total{actor=\"consumer\"}"),
        Some(0.0)
    );
}

#[test]
fn silent_streams_finalize_and_a_producer_back_days_later_leaves_old_windows_alone() {
    let services = Services::start();
    let topic = services.broker.create_topic("silence", 1);
    let db = services.postgres.create_database("silence");
    let mut truth = Truth::new(TimeDelta::minutes(10), Utc::now());
    let mut send = |payloads: Vec<Vec<u8>>| {
        for p in &payloads {
            truth.observe(p);
        }
        services.broker.produce_events(&topic, &payloads);
        truth.clone().finish()
    };
    let stamp = |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);

    // Two streams for five minutes, three days ago; then both go silent and
    // idle finalization (watermark = wall clock − lateness) closes them.
    let start = minute_of(Utc::now() - TimeDelta::days(3));
    let first: Vec<Vec<u8>> = (0..300)
        .map(|i| {
            valid(
                i,
                if i % 2 == 0 { "a" } else { "b" },
                &stamp(start + TimeDelta::seconds(i as i64)),
            )
        })
        .collect();
    let before = send(first);
    let mut serve = Serve::start(ServeConfig::new(&db, &services.broker, &topic));
    wait_for_truth(&mut serve, &before, Duration::from_secs(120));
    assert!(
        before.rows.iter().all(|r| r.is_final),
        "silent streams finalize"
    );

    // Stream a returns now, three days later in event time, plus one event
    // for its old, final minute: that one is late; the old rows stay as they
    // were and the new minutes are open.
    let now = Utc::now();
    let later = send(vec![
        valid(1_000, "a", &stamp(now - TimeDelta::seconds(30))),
        valid(1_001, "a", &stamp(now)),
        valid(1_002, "a", &stamp(start + TimeDelta::seconds(150))),
    ]);
    assert_eq!(later.dead_letters.get("late"), Some(&1));
    let new_rows: Vec<_> = later
        .rows
        .iter()
        .filter(|r| r.window_start >= minute_of(now - TimeDelta::seconds(30)))
        .collect();
    assert!(!new_rows.is_empty());
    harness::wait_for(
        "the new minutes and the late event",
        Duration::from_secs(120),
        || {
            let got = harness::actual(&db);
            let old_same = got
                .rows
                .iter()
                .filter(|r| r.is_final)
                .cloned()
                .collect::<Vec<_>>()
                == before.rows;
            let new_open: Vec<_> = got.rows.iter().filter(|r| !r.is_final).collect();
            let new_same = new_open.len() == new_rows.len()
                && new_open.iter().zip(&new_rows).all(|(g, w)| {
                    let mut w = (*w).clone();
                    w.is_final = false;
                    **g == w
                });
            (old_same && new_same && got.dead_letters == later.dead_letters).then_some(())
        },
    );
    serve.terminate();
}

#[test]
fn a_checkpoint_the_database_refuses_halts_loudly_instead_of_retrying_forever() {
    let services = Services::start();
    let topic = services.broker.create_topic("refused", 1);
    let db = services.postgres.create_database("refused");
    let mut serve = Serve::start(ServeConfig::new(&db, &services.broker, &topic));
    // A constraint the pipeline cannot satisfy: every dead letter is refused.
    let mut conn = PgConnection::establish(&db).expect("connect");
    diesel::sql_query(
        "ALTER TABLE dead_letters ADD CONSTRAINT refuse_all CHECK (kafka_offset < 0)",
    )
    .execute(&mut conn)
    .expect("constraint added");
    services
        .broker
        .produce_events(&topic, &[b"not json".to_vec()]);
    let body = harness::wait_for("/ready to report the halt", Duration::from_secs(60), || {
        serve.process.assert_running();
        let (status, body) = serve.get("/ready");
        (status == 503 && body.contains("halted")).then_some(body)
    });
    assert!(body.contains("refuse_all"), "the cause is named: {body}");
    assert_eq!(
        serve.metric("streamstats_checkpoints_total{outcome=\"refused\"}"),
        Some(3.0)
    );
    assert_eq!(serve.get("/health").0, 200, "the API stays up");
    assert_eq!(
        serve.terminate(),
        Some(0),
        "a halted pipeline still stops cleanly"
    );
}
